//! Tokens and the token store.
//!
//! Secrets are held only as SHA-256 digests. A presented credential is hashed and
//! looked up by digest; the match is then confirmed with a constant-time comparison
//! that yields a [`Verified`] value, the only way for the rest of the filter to get
//! at a token. Looking up by digest means any timing difference depends on the
//! digest of the attacker's own input, never on how much of a secret it matched.

use sha2::{Digest as _, Sha256};

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

    /// The set as bits (one per [`Scope`], in declaration order).
    pub fn bits(self) -> u8 {
        self.0
    }

    /// The set from [`bits`](Self::bits); unknown bits are dropped.
    pub fn from_bits(b: u8) -> Scopes {
        Scopes(b & Scopes::ALL.0)
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
        // A host name is at most 253 characters; rules are also stored with
        // 16-bit lengths, which must never cut one.
        if rule.len() > 255 {
            return None;
        }
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
/// port, lower-case. `None` for an origin that is not what browsers send,
/// `scheme://host[:port]` (`null` aside): a scheme of a letter then letters,
/// digits, `+`, `-`, `.` (`https`, `capacitor`, `chrome-extension`); a host of
/// non-empty dot-separated labels of letters, digits, `-` (not at a label's ends)
/// and `_`, or a bracketed IPv6 address; a port up to 65535. A rule is matched
/// against a host, never against text a URL parser reads another host from
/// (`https://evil.com#.a.com` is `evil.com`).
pub fn origin_host(origin: &[u8]) -> Option<String> {
    let s = std::str::from_utf8(origin).ok()?.trim();
    if s == "null" {
        return Some("null".into());
    }
    let (scheme, rest) = s.split_once("://")?;
    let scheme_ok = scheme
        .bytes()
        .next()
        .is_some_and(|b| b.is_ascii_alphabetic())
        && scheme
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'-' | b'.'));
    if !scheme_ok {
        return None;
    }
    let host = match rest.rsplit_once(':') {
        Some((h, port)) if !h.ends_with(':') && !port.contains(']') => {
            let valid = !port.is_empty()
                && port.len() <= 5
                && port.bytes().all(|b| b.is_ascii_digit())
                && port.parse::<u32>().is_ok_and(|p| (1..=65535).contains(&p));
            if !valid {
                return None;
            }
            h
        }
        _ => rest,
    };
    let label = |l: &str| {
        !l.is_empty()
            && !l.starts_with('-')
            && !l.ends_with('-')
            && l.bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_'))
    };
    let name = |h: &str| h.split('.').all(label);
    let ipv6 = |h: &str| {
        h.strip_prefix('[')
            .and_then(|h| h.strip_suffix(']'))
            .is_some_and(|a| {
                a.contains(':')
                    && a.bytes()
                        .all(|b| b.is_ascii_hexdigit() || matches!(b, b':' | b'.'))
            })
    };
    (name(host) || ipv6(host)).then(|| host.to_ascii_lowercase())
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

impl Token {
    /// The token as the decision reads it.
    pub fn as_ref(&self) -> TokenRef<'_> {
        TokenRef {
            id: &self.id,
            app: self.app.as_deref(),
            realm: &self.realm,
            scopes: self.scopes,
            active: self.active,
            all_apps: self.all_apps,
            not_before: self.not_before,
            expires_at: self.expires_at,
            origins: &self.origins,
        }
    }
}

/// A token as the decision reads it, borrowed from a store or a record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TokenRef<'a> {
    pub id: &'a str,
    pub app: Option<&'a str>,
    pub realm: &'a str,
    pub scopes: Scopes,
    pub active: bool,
    pub all_apps: bool,
    pub not_before: Option<u64>,
    pub expires_at: Option<u64>,
    pub origins: &'a [OriginRule],
}

/// A token whose secret was presented and confirmed in constant time: the only
/// way for the rest of the filter to get at a token.
#[derive(Debug, Clone)]
pub struct Verified<'a> {
    found: Found<'a>,
    /// Which of the token's secrets was presented.
    pub kind: Kind,
}

#[derive(Debug, Clone)]
enum Found<'a> {
    /// In the policy's own store.
    Stored(TokenRef<'a>),
    /// Decoded from a shared-data record (large-set mode).
    Owned(Token),
}

impl<'a> Verified<'a> {
    pub fn stored(token: TokenRef<'a>, kind: Kind) -> Verified<'a> {
        Verified {
            found: Found::Stored(token),
            kind,
        }
    }

    pub fn owned(token: Token, kind: Kind) -> Verified<'static> {
        Verified {
            found: Found::Owned(token),
            kind,
        }
    }

    pub fn token(&self) -> TokenRef<'_> {
        match &self.found {
            Found::Stored(t) => *t,
            Found::Owned(t) => t.as_ref(),
        }
    }
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

const RECORD_FORMAT: u8 = 1;
const R_ACTIVE: u8 = 1;
const R_ALL_APPS: u8 = 2;
const R_CLIENT: u8 = 4;
const R_APP: u8 = 8;

/// Appends the fields of binary records.
pub(crate) struct RecordWriter<'a>(pub &'a mut Vec<u8>);

impl RecordWriter<'_> {
    fn str(&mut self, s: &str) {
        // Lengths are capped by the configuration's own limits; a longer value is
        // cut at a character boundary rather than wrapping the length.
        let mut n = s.len().min(u16::MAX as usize);
        while !s.is_char_boundary(n) {
            n -= 1;
        }
        self.0.extend_from_slice(&(n as u16).to_le_bytes());
        self.0.extend_from_slice(&s.as_bytes()[..n]);
    }

    pub(crate) fn opt_u64(&mut self, v: Option<u64>) {
        match v {
            None => self.0.push(0),
            Some(v) => {
                self.0.push(1);
                self.0.extend_from_slice(&v.to_le_bytes());
            }
        }
    }

    pub(crate) fn origins(&mut self, origins: &[OriginRule]) {
        self.0
            .extend_from_slice(&(origins.len().min(u16::MAX as usize) as u16).to_le_bytes());
        for o in origins.iter().take(u16::MAX as usize) {
            let (tag, s) = match o {
                OriginRule::Any => (0, ""),
                OriginRule::Subdomain(d) => (1, d.as_str()),
                OriginRule::EndsWith(d) => (2, d.as_str()),
                OriginRule::StartsWith(d) => (3, d.as_str()),
                OriginRule::Exact(d) => (4, d.as_str()),
            };
            self.0.push(tag);
            self.str(s);
        }
    }
}

/// Reads binary records: checked slicing, `None` on anything short or malformed.
pub(crate) struct Cursor<'a>(pub &'a [u8]);

impl<'a> Cursor<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        let (head, rest) = self.0.split_at_checked(n)?;
        self.0 = rest;
        Some(head)
    }

    fn u8(&mut self) -> Option<u8> {
        Some(self.take(1)?[0])
    }

    fn u16(&mut self) -> Option<u16> {
        Some(u16::from_le_bytes(self.take(2)?.try_into().ok()?))
    }

    pub(crate) fn u32(&mut self) -> Option<u32> {
        Some(u32::from_le_bytes(self.take(4)?.try_into().ok()?))
    }

    pub(crate) fn opt_u64(&mut self) -> Option<Option<u64>> {
        match self.u8()? {
            0 => Some(None),
            1 => Some(Some(u64::from_le_bytes(self.take(8)?.try_into().ok()?))),
            _ => None,
        }
    }

    fn str(&mut self) -> Option<&'a str> {
        let n = self.u16()? as usize;
        std::str::from_utf8(self.take(n)?).ok()
    }

    pub(crate) fn origins(&mut self) -> Option<Vec<OriginRule>> {
        let n = self.u16()? as usize;
        let mut out = Vec::with_capacity(n.min(64));
        for _ in 0..n {
            let tag = self.u8()?;
            let s = self.str()?.to_string();
            out.push(match tag {
                0 if s.is_empty() => OriginRule::Any,
                1 => OriginRule::Subdomain(s),
                2 => OriginRule::EndsWith(s),
                3 => OriginRule::StartsWith(s),
                4 => OriginRule::Exact(s),
                _ => return None,
            });
        }
        Some(out)
    }
}

/// A token's record in shared data (large-set mode): everything but the secret,
/// which is the key (its digest). Binary, so a lookup costs a few slices rather
/// than a JSON parse.
pub fn encode_record(t: &TokenRef, kind: Kind) -> Vec<u8> {
    let mut b = Vec::with_capacity(32 + t.id.len() + t.app.map_or(0, str::len) + t.realm.len());
    b.push(RECORD_FORMAT);
    b.push(
        if t.active { R_ACTIVE } else { 0 }
            | if t.all_apps { R_ALL_APPS } else { 0 }
            | if kind == Kind::Client { R_CLIENT } else { 0 }
            | if t.app.is_some() { R_APP } else { 0 },
    );
    b.push(t.scopes.bits());
    let mut w = RecordWriter(&mut b);
    w.opt_u64(t.not_before);
    w.opt_u64(t.expires_at);
    w.str(t.id);
    if let Some(a) = t.app {
        w.str(a);
    }
    w.str(t.realm);
    w.origins(t.origins);
    b
}

/// Reads a record written by [`encode_record`]; `None` for anything else.
pub fn decode_record(v: &[u8]) -> Option<(Token, Kind)> {
    let mut c = Cursor(v);
    if c.u8()? != RECORD_FORMAT {
        return None;
    }
    let flags = c.u8()?;
    let scopes = Scopes::from_bits(c.u8()?);
    let not_before = c.opt_u64()?;
    let expires_at = c.opt_u64()?;
    let id = c.str()?.to_string();
    let app = if flags & R_APP != 0 {
        Some(c.str()?.to_string())
    } else {
        None
    };
    let realm = std::rc::Rc::from(c.str()?);
    let origins = c.origins()?;
    if !c.0.is_empty() {
        return None;
    }
    let kind = if flags & R_CLIENT != 0 {
        Kind::Client
    } else {
        Kind::Server
    };
    Some((
        Token {
            id,
            app,
            scopes,
            active: flags & R_ACTIVE != 0,
            not_before,
            expires_at,
            origins,
            realm,
            all_apps: flags & R_ALL_APPS != 0,
        },
        kind,
    ))
}

pub use crate::store::{StoreBuilder, StoreError, TokenStore};

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_round_trip_and_refuse_junk() {
        let t = Token {
            app: Some("app".into()),
            scopes: [Scope::Events].into_iter().collect(),
            expires_at: Some(99),
            origins: vec![OriginRule::Any, OriginRule::Exact("a.b".into())],
            realm: std::rc::Rc::from("jitsu"),
            ..Token::new("id-1")
        };
        let r = encode_record(&t.as_ref(), Kind::Client);
        assert_eq!(decode_record(&r), Some((t, Kind::Client)));
        for cut in 0..r.len() {
            assert_eq!(decode_record(&r[..cut]), None);
        }
        assert_eq!(decode_record(b"{\"id\":\"x\"}"), None);
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
        assert_eq!(origin_host(b"http://[::1]:8080").as_deref(), Some("[::1]"));
        assert_eq!(origin_host(b"http://[::1]").as_deref(), Some("[::1]"));
        assert_eq!(
            origin_host(b"capacitor://localhost").as_deref(),
            Some("localhost")
        );
        assert_eq!(
            origin_host(b"https://a_b.x.com:65535").as_deref(),
            Some("a_b.x.com")
        );
        // Not a host: what a URL parser reads another host from (round 14).
        for o in [
            "https://evil.com#.a.com",
            "https://evil.com?x=.a.com",
            "https://evil.com:.a.com",
            "https://evil.com\\.a.com",
            "https://evil.com%2e.a.com",
            "https://evil.com .a.com",
            "https://[::1].a.com",
            "https://x@evil.com",
            "https://shop.a.com/path",
            "ht tps://shop.a.com",
            "https://.a.com",
            "https://a.com:123456",
            // Round 15 (helper-58): what no browser sends.
            "shop.a.com",
            "efg.com:1",
            "https://a.com:99999",
            "https://a.com:0",
            "https://shop..a.com",
            "https://-.a.com",
            "https://shop-.a.com",
            "https://a.com.",
            "1https://a.com",
            "https://[a.com]",
            "https://a.com:",
        ] {
            assert_eq!(origin_host(o.as_bytes()), None, "{o}");
        }
    }

    #[test]
    fn fingerprint_is_short_and_not_the_digest() {
        let f = fingerprint(b"secret");
        assert_eq!(f.len(), 8);
        assert!(!hex::encode(digest(b"secret")).starts_with(&f));
    }
}
