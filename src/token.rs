//! Tokens and the token store.
//!
//! Secrets are held only as SHA-256 digests. A presented credential is hashed and
//! looked up by digest; the match is then confirmed with a constant-time comparison
//! that yields a [`Verified`] value, the only way for the rest of the filter to get
//! at a token. Looking up by digest means any timing difference depends on the
//! digest of the attacker's own input, never on how much of a secret it matched.

use std::collections::HashMap;

use sha2::{Digest as _, Sha256};
use subtle::ConstantTimeEq;

/// A SHA-256 digest.
pub type Digest = [u8; 32];

/// SHA-256 of a secret.
pub fn digest(secret: &[u8]) -> Digest {
    Sha256::digest(secret).into()
}

/// A short, non-reversible fingerprint of a presented credential, for logs.
/// Domain-separated, so it cannot be matched against configured digests.
pub fn fingerprint(secret: &[u8]) -> String {
    let mut h = Sha256::new();
    h.update(b"s2s-guard/fingerprint\0");
    h.update(secret);
    hex::encode(&h.finalize()[..4])
}

/// What a token grants (Adjust scopes). An empty set is a legacy token: every scope.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Scope {
    Events,
    Sessions,
    AdRevenue,
    Gdpr,
}

impl Scope {
    pub const ALL: [Scope; 4] = [
        Scope::Events,
        Scope::Sessions,
        Scope::AdRevenue,
        Scope::Gdpr,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Scope::Events => "events",
            Scope::Sessions => "sessions",
            Scope::AdRevenue => "ad_revenue",
            Scope::Gdpr => "gdpr",
        }
    }

    pub fn parse(s: &str) -> Option<Scope> {
        Scope::ALL.into_iter().find(|x| x.name() == s)
    }

    fn bit(self) -> u8 {
        1 << (self as u8)
    }
}

/// A set of scopes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Hash)]
pub struct Scopes(u8);

impl Scopes {
    pub const NONE: Scopes = Scopes(0);
    pub const ALL: Scopes = Scopes(0b1111);

    pub fn insert(&mut self, s: Scope) {
        self.0 |= s.bit();
    }

    pub fn contains(self, s: Scope) -> bool {
        self.0 & s.bit() != 0
    }

    pub fn is_empty(self) -> bool {
        self.0 == 0
    }
}

impl FromIterator<Scope> for Scopes {
    fn from_iter<I: IntoIterator<Item = Scope>>(iter: I) -> Scopes {
        let mut s = Scopes::NONE;
        for x in iter {
            s.insert(x);
        }
        s
    }
}

/// Which endpoints a secret may call (Jitsu: server secrets for S2S endpoints,
/// client secrets for browser endpoints; Adjust and Swaarm tokens are server secrets).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Kind {
    Server,
    Client,
}

impl Kind {
    pub fn name(self) -> &'static str {
        match self {
            Kind::Server => "server",
            Kind::Client => "client",
        }
    }
}

/// An allowed request origin (Jitsu rules, plus a dot-boundary wildcard).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OriginRule {
    /// `*`: any origin.
    Any,
    /// `*.example.com`: `example.com` itself or any subdomain, at a dot boundary.
    Subdomain(String),
    /// `*abc.com` (Jitsu): any origin ending with the text.
    EndsWith(String),
    /// `abc*` (Jitsu): any origin starting with the text.
    StartsWith(String),
    Exact(String),
}

impl OriginRule {
    /// Parses a rule; `None` for an empty rule or one with a `*` elsewhere.
    pub fn parse(rule: &str) -> Option<OriginRule> {
        let rule = rule.trim().to_ascii_lowercase();
        if rule == "*" {
            return Some(OriginRule::Any);
        }
        let inner_star = |s: &str| s.is_empty() || s.contains('*');
        if let Some(rest) = rule.strip_prefix("*.") {
            return (!inner_star(rest)).then(|| OriginRule::Subdomain(rest.to_string()));
        }
        if let Some(rest) = rule.strip_prefix('*') {
            return (!inner_star(rest)).then(|| OriginRule::EndsWith(rest.to_string()));
        }
        if let Some(rest) = rule.strip_suffix('*') {
            return (!inner_star(rest)).then(|| OriginRule::StartsWith(rest.to_string()));
        }
        (!inner_star(&rule)).then_some(OriginRule::Exact(rule))
    }

    /// Matches a bare origin host (scheme and port already removed, lower-case).
    pub fn matches(&self, host: &str) -> bool {
        match self {
            OriginRule::Any => true,
            OriginRule::Subdomain(d) => {
                host == d
                    || (host.len() > d.len()
                        && host.ends_with(d.as_str())
                        && host.as_bytes()[host.len() - d.len() - 1] == b'.')
            }
            OriginRule::EndsWith(s) => host.ends_with(s.as_str()),
            OriginRule::StartsWith(s) => host.starts_with(s.as_str()),
            OriginRule::Exact(s) => host == s,
        }
    }
}

/// Reduces an `Origin` header to its host, as Jitsu compares it: no scheme, no
/// port, lower-case. `None` for an origin that is not valid text.
pub fn origin_host(origin: &[u8]) -> Option<String> {
    let s = std::str::from_utf8(origin).ok()?.trim();
    let s = s.split_once("://").map_or(s, |(_, rest)| rest);
    let s = s.split('/').next().unwrap_or_default();
    let host = match s.rsplit_once(':') {
        Some((h, port)) if port.bytes().all(|b| b.is_ascii_digit()) => h,
        _ => s,
    };
    (!host.is_empty()).then(|| host.to_ascii_lowercase())
}

/// A token: a non-secret id and everything the decision needs; never the secret.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Token {
    pub id: String,
    /// The app the token belongs to (Adjust `app_token`, Swaarm store app).
    pub app: Option<String>,
    pub scopes: Scopes,
    pub active: bool,
    /// Validity window, Unix seconds (inclusive start, exclusive end).
    pub not_before: Option<u64>,
    pub expires_at: Option<u64>,
    /// Allowed origins for client secrets; empty means any.
    pub origins: Vec<OriginRule>,
    /// The system (or tenant) the token belongs to: it opens only routes of this
    /// realm. Resolved when the configuration is compiled; shared by every token of
    /// the realm (one allocation per realm, not per token).
    pub realm: std::rc::Rc<str>,
    /// A token with no app is valid on routes that check the app only if it says
    /// it is valid for every app of its realm.
    pub all_apps: bool,
}

impl Token {
    /// An active token with no app, scopes (legacy), window or origins.
    pub fn new(id: impl Into<String>) -> Token {
        Token {
            id: id.into(),
            app: None,
            scopes: Scopes::NONE,
            active: true,
            not_before: None,
            expires_at: None,
            origins: Vec::new(),
            realm: std::rc::Rc::from(""),
            all_apps: false,
        }
    }
}

/// A token whose secret was presented and confirmed in constant time.
#[derive(Debug, Clone)]
pub struct Verified<'a> {
    /// Borrowed from a token store, or owned when read from shared data.
    pub token: std::borrow::Cow<'a, Token>,
    /// Which of the token's secrets was presented.
    pub kind: Kind,
}

/// Where tokens are looked up: the policy's own store, or (for very large sets)
/// shared data by digest.
pub trait Lookup {
    fn verify(&self, presented: &[u8]) -> Option<Verified<'_>>;
}

impl Lookup for TokenStore {
    fn verify(&self, presented: &[u8]) -> Option<Verified<'_>> {
        TokenStore::verify(self, presented)
    }
}

/// A token's record in shared data (large-set mode): everything but the secret,
/// which is the key (its digest).
pub fn encode_record(t: &Token, kind: Kind) -> Vec<u8> {
    let origins: Vec<String> = t
        .origins
        .iter()
        .map(|o| match o {
            OriginRule::Any => "*".to_string(),
            OriginRule::Subdomain(d) => format!("*.{d}"),
            OriginRule::EndsWith(s) => format!("*{s}"),
            OriginRule::StartsWith(s) => format!("{s}*"),
            OriginRule::Exact(s) => s.clone(),
        })
        .collect();
    let scopes: Vec<&str> = Scope::ALL
        .into_iter()
        .filter(|s| t.scopes.contains(*s))
        .map(Scope::name)
        .collect();
    serde_json::json!({
        "id": t.id, "app": t.app, "scopes": scopes, "active": t.active,
        "not_before": t.not_before, "expires_at": t.expires_at,
        "kind": kind.name(), "origins": origins,
        "realm": &*t.realm, "all_apps": t.all_apps,
    })
    .to_string()
    .into_bytes()
}

/// Reads a record written by [`encode_record`]; `None` for anything else.
pub fn decode_record(v: &[u8]) -> Option<(Token, Kind)> {
    let j: serde_json::Value = serde_json::from_slice(v).ok()?;
    let kind = match j.get("kind")?.as_str()? {
        "client" => Kind::Client,
        _ => Kind::Server,
    };
    let scopes = j
        .get("scopes")?
        .as_array()?
        .iter()
        .filter_map(|s| s.as_str().and_then(Scope::parse))
        .collect();
    let origins = j
        .get("origins")?
        .as_array()?
        .iter()
        .filter_map(|o| o.as_str().and_then(OriginRule::parse))
        .collect();
    Some((
        Token {
            id: j.get("id")?.as_str()?.to_string(),
            app: j.get("app").and_then(|a| a.as_str()).map(str::to_string),
            scopes,
            active: j.get("active")?.as_bool()?,
            not_before: j.get("not_before").and_then(|v| v.as_u64()),
            expires_at: j.get("expires_at").and_then(|v| v.as_u64()),
            origins,
            realm: std::rc::Rc::from(j.get("realm")?.as_str()?),
            all_apps: j.get("all_apps")?.as_bool()?,
        },
        kind,
    ))
}

/// All tokens of a policy, indexed by the digests of their secrets.
#[derive(Debug, Default)]
pub struct TokenStore {
    tokens: Vec<Token>,
    index: HashMap<Digest, (usize, Kind)>,
    ids: HashMap<String, usize>,
}

/// Why a token could not be added.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreError {
    DuplicateId(String),
    /// The secret's digest is already used by the token with this id.
    DuplicateSecret(String),
}

impl TokenStore {
    pub fn len(&self) -> usize {
        self.tokens.len()
    }

    pub fn is_empty(&self) -> bool {
        self.tokens.is_empty()
    }

    pub fn tokens(&self) -> &[Token] {
        &self.tokens
    }

    /// Every secret digest with its token and kind (for publishing to shared data).
    pub fn entries(&self) -> impl Iterator<Item = (&Digest, &Token, Kind)> {
        self.index
            .iter()
            .map(|(d, (at, k))| (d, &self.tokens[*at], *k))
    }

    /// Adds a token with its secrets (digests and kinds).
    pub fn insert(&mut self, token: Token, secrets: &[(Digest, Kind)]) -> Result<(), StoreError> {
        if self.ids.contains_key(&token.id) {
            return Err(StoreError::DuplicateId(token.id));
        }
        for (i, (d, _)) in secrets.iter().enumerate() {
            let dup_in_self = secrets[..i].iter().any(|(e, _)| e == d);
            if let Some((other, _)) = self.index.get(d) {
                return Err(StoreError::DuplicateSecret(self.tokens[*other].id.clone()));
            }
            if dup_in_self {
                return Err(StoreError::DuplicateSecret(token.id));
            }
        }
        let at = self.tokens.len();
        for (d, kind) in secrets {
            self.index.insert(*d, (at, *kind));
        }
        self.ids.insert(token.id.clone(), at);
        self.tokens.push(token);
        Ok(())
    }

    /// Finds the token whose secret is `presented`.
    pub fn verify(&self, presented: &[u8]) -> Option<Verified<'_>> {
        let d = digest(presented);
        let (at, kind) = *self.index.get(&d)?;
        // The map compared digests already; confirm in constant time so the proof
        // value exists only after a constant-time equality on the full digest.
        let stored = self.index.get_key_value(&d).map(|(k, _)| k)?;
        if bool::from(stored.ct_eq(&d)) {
            Some(Verified {
                token: std::borrow::Cow::Borrowed(&self.tokens[at]),
                kind,
            })
        } else {
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn token(id: &str) -> Token {
        Token::new(id)
    }

    #[test]
    fn verify_finds_by_secret_and_kind() {
        let mut s = TokenStore::default();
        s.insert(
            token("a"),
            &[
                (digest(b"srv"), Kind::Server),
                (digest(b"cli"), Kind::Client),
            ],
        )
        .unwrap();
        assert_eq!(s.verify(b"srv").unwrap().token.id, "a");
        assert_eq!(s.verify(b"cli").unwrap().kind, Kind::Client);
        assert!(s.verify(b"other").is_none());
        assert!(s.verify(b"").is_none());
    }

    #[test]
    fn duplicates_are_refused() {
        let mut s = TokenStore::default();
        s.insert(token("a"), &[(digest(b"x"), Kind::Server)])
            .unwrap();
        assert_eq!(
            s.insert(token("a"), &[(digest(b"y"), Kind::Server)]),
            Err(StoreError::DuplicateId("a".into()))
        );
        assert_eq!(
            s.insert(token("b"), &[(digest(b"x"), Kind::Server)]),
            Err(StoreError::DuplicateSecret("a".into()))
        );
    }

    #[test]
    fn origin_rules() {
        let sub = OriginRule::parse("*.example.com").unwrap();
        assert!(sub.matches("example.com"));
        assert!(sub.matches("a.example.com"));
        assert!(!sub.matches("evilexample.com"));
        let ends = OriginRule::parse("*abc.com").unwrap();
        assert!(ends.matches("evilabc.com"));
        let starts = OriginRule::parse("abc*").unwrap();
        assert!(starts.matches("abcd.com"));
        assert!(OriginRule::parse("*").unwrap().matches("x"));
        assert!(OriginRule::parse("a*b").is_none());
        assert!(OriginRule::parse("").is_none());
        assert_eq!(
            origin_host(b"https://App.Example.com:8443").as_deref(),
            Some("app.example.com")
        );
        assert_eq!(origin_host(b"null").as_deref(), Some("null"));
        assert_eq!(origin_host(b"\xff"), None);
    }

    #[test]
    fn fingerprint_is_short_and_not_the_digest() {
        let f = fingerprint(b"secret");
        assert_eq!(f.len(), 8);
        assert!(!hex::encode(digest(b"secret")).starts_with(&f));
    }
}
