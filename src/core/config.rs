//! Configuration: JSON bytes in, a validated [`Policy`] out, or an error naming the
//! field (`tokens[2].scopes[0]: unknown scope "event" ...`). Pure: no host calls.
//!
//! - [`model`]: the configuration and token set formats as serde types (shape);
//! - [`compile`]: validation and compilation into the immutable [`Policy`];
//! - [`presets`]: the reference systems' routes and answers, as data;
//! - here: the entry points, error paths, and the streaming token compiler.
//!
//! Every key is documented in `docs/configuration.md` and described by the JSON
//! Schema generated from [`model`] (`schema/s2s-guard.schema.json`).

use std::fmt;

use serde_json::value::RawValue;
use serde_json::{Map, Value};

use crate::policy::Policy;
use crate::token::{
    self, Digest, Kind, OriginRule, Scope, Scopes, StoreBuilder, StoreError, Token, TokenRef,
    TokenStore,
};

pub mod compile;
pub mod model;
pub mod presets;
#[cfg(feature = "schema")]
pub mod schema;

pub use compile::{
    DEFAULT_MAX_AGE, DEFAULT_MAX_BODY_BYTES, DEFAULT_MAX_FUTURE, DEFAULT_MAX_STATS_APPS,
    DEFAULT_REPLAY_CAPACITY, MAX_BODY_CEILING,
};
pub use model::MAX_DURATION_S;

/// A configuration error: where, and what is wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// JSON path of the offending value (`tokens[2].scopes[0]`), or `configuration`.
    pub path: String,
    pub message: String,
}

impl fmt::Display for ConfigError {
    /// One line whatever the document held: control characters (and Unicode's
    /// line and paragraph separators) that a key or value quoted in the message
    /// carries are escaped, so a token set cannot write lines of its own into the
    /// proxy's log.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for part in [self.path.as_str(), ": ", self.message.as_str()] {
            for c in part.chars() {
                if c.is_control() || matches!(c, '\u{2028}' | '\u{2029}') {
                    write!(f, "\\u{{{:x}}}", u32::from(c))?;
                } else {
                    fmt::Write::write_char(f, c)?;
                }
            }
        }
        Ok(())
    }
}

impl std::error::Error for ConfigError {}

pub(crate) fn err<T>(
    path: impl Into<String>,
    message: impl Into<String>,
) -> Result<T, ConfigError> {
    Err(ConfigError {
        path: path.into(),
        message: message.into(),
    })
}

/// Parses and validates a configuration.
///
/// The document is deserialized into [`model::Config`] with `tokens` kept as a raw
/// slice; `tokens` is then compiled one element at a time, so a configuration with
/// a million tokens never exists as a whole JSON tree in memory (Wasm memory, once
/// grown, is never given back).
pub fn parse(bytes: &[u8]) -> Result<Policy, ConfigError> {
    parse_with_set(bytes, None)
}

/// Parses a configuration with a token set from the token source (or shared data)
/// in place of its inline `tokens` (and of its `apps`, if the set has them).
/// The set is validated exactly as inline configuration is; its errors are
/// prefixed `token set:`.
pub fn parse_with_set(bytes: &[u8], set: Option<&[u8]>) -> Result<Policy, ConfigError> {
    parse_set_inner(bytes, set, false)
}

/// As [`parse_with_set`], without compiling the set's tokens (large-set mode: the
/// tokens are looked up in shared data; the fetcher validates them before
/// publishing).
pub fn parse_with_set_without_tokens(bytes: &[u8], set: &[u8]) -> Result<Policy, ConfigError> {
    parse_set_inner(bytes, Some(set), true)
}

/// Reads a configuration's shape only (no validation): what tools need to show it.
pub fn read(bytes: &[u8]) -> Result<model::Config<'_>, ConfigError> {
    document(bytes, "configuration")
}

fn parse_set_inner(
    bytes: &[u8],
    set: Option<&[u8]>,
    skip_tokens: bool,
) -> Result<Policy, ConfigError> {
    let config: model::Config = document(bytes, "configuration")?;
    let Some(set) = set else {
        let mut policy = compile::compile(&config, None, config.tokens)?;
        let more = compile::app_binding_warnings(&policy);
        policy.warnings.extend(more);
        return Ok(policy);
    };
    let in_set = |e: ConfigError| ConfigError {
        path: if e.path == "token set" {
            e.path
        } else {
            format!("token set: {}", e.path)
        },
        message: e.message,
    };
    let s: model::TokenSet = document(set, "token set").map_err(in_set)?;
    if s.apps.is_some() {
        // App settings switch authentication on and off: a set may change them
        // only when the plugin configuration says so.
        let allowed = config
            .token_source
            .as_ref()
            .and_then(|t| t.apps_from_set)
            .unwrap_or(false);
        if !allowed {
            return err(
                "token set: apps",
                "this configuration does not let token sets change app settings (token_source.apps_from_set)",
            );
        }
    }
    // A set cut short or half generated must not empty the set in force (`null`
    // reads as absent). Its meta, read without tokens, may lack them.
    if s.tokens.is_none() && !skip_tokens {
        return err(
            "token set: tokens",
            "is required: a set lists its tokens (`[]` for none)",
        );
    }
    let tokens = s.tokens.filter(|_| !skip_tokens);
    let mut policy =
        compile::compile(&config, s.apps.as_ref(), tokens).map_err(|e| ConfigError {
            path: format!("token set: {}", e.path),
            message: e.message,
        })?;
    policy.set_version = s.version;
    policy.set_expires = match s.expires.as_deref() {
        None => None,
        Some(t) => match crate::times::rfc3339_secs(t) {
            Some(secs) => Some(secs),
            None => {
                return err(
                    "token set: expires",
                    format!("not an RFC 3339 time (e.g. 2026-01-31T00:00:00Z): \"{t}\""),
                )
            }
        },
    };
    policy.set_epoch = match s.epoch {
        None => 0,
        Some(e) if e <= crate::distribution::MAX_SET_VERSION => e,
        Some(_) => {
            return err(
                "token set: epoch",
                "expected an integer between 0 and 9007199254740992",
            )
        }
    };
    Ok(policy)
}

/// Deserializes a whole document, naming the JSON path of the first fault.
fn document<'a, T: serde::Deserialize<'a>>(bytes: &'a [u8], what: &str) -> Result<T, ConfigError> {
    // Read as text: the token compiler reads from text too, so serde_json's parser
    // is compiled once into the .wasm.
    let bytes = match std::str::from_utf8(bytes) {
        Ok(text) => text,
        Err(e) => return err(what, format!("not valid JSON: not UTF-8 ({e})")),
    };
    if bytes.bytes().all(|b| b.is_ascii_whitespace()) {
        return match what {
            "configuration" => err(
                what,
                "empty; s2s-guard needs a JSON object with at least one route or preset",
            ),
            _ => err(what, "empty"),
        };
    }
    if bytes.bytes().find(|b| !b.is_ascii_whitespace()) != Some(b'{') {
        // Not an object: say what it is, if it is JSON at all.
        return match serde_json::from_str::<serde::de::IgnoredAny>(bytes) {
            Ok(_) => err(what, "expected a JSON object"),
            Err(e) => err(what, format!("not valid JSON: {e}")),
        };
    }
    let mut de = serde_json::Deserializer::from_str(bytes);
    let value = T::deserialize(&mut de).and_then(|v| de.end().map(|()| v));
    value.map_err(|inner| {
        // serde_json reports a number or an object where a name is expected as
        // "expected value", a syntax error, though the document is valid JSON.
        let misplaced = inner.is_syntax()
            && inner.to_string().starts_with("expected value")
            && serde_json::from_str::<serde::de::IgnoredAny>(bytes).is_ok();
        if !misplaced && (inner.is_syntax() || inner.is_eof()) {
            return ConfigError {
                path: what.to_string(),
                message: format!("not valid JSON: {inner}"),
            };
        }
        let path = path_at(
            bytes,
            offset(bytes.as_bytes(), inner.line(), inner.column()),
        );
        let path = if path.is_empty() { what } else { &path };
        if misplaced {
            return ConfigError {
                path: path.to_string(),
                message: "expected a string".to_string(),
            };
        }
        explain(path, &inner)
    })
}

/// The byte offset of serde_json's (line, column) position.
fn offset(bytes: &[u8], line: usize, column: usize) -> usize {
    let mut start = 0;
    for _ in 1..line {
        match bytes[start..].iter().position(|&b| b == b'\n') {
            Some(i) => start += i + 1,
            None => break,
        }
    }
    (start + column).min(bytes.len())
}

/// The JSON path (`routes[0].path`) of the value being read at `end`, in a document
/// that is valid JSON up to there. serde_json reports a fault after the key it
/// concerns, at the start or the end of the value, or after the object that lacks a
/// field: a key counts until the next comma, and a container just opened at `end`
/// is the value itself. Errors are rare: this scan replaces a path-tracking
/// deserializer wrapped around every configuration read (and its code size).
fn path_at(text: &str, end: usize) -> String {
    let bytes = text.as_bytes();
    enum Frame {
        Object {
            key: Option<(usize, usize)>,
            expect_key: bool,
        },
        Array(usize),
    }
    let mut stack: Vec<Frame> = Vec::new();
    let mut i = 0;
    while i < end {
        match bytes[i] {
            b'"' => {
                let start = i;
                i += 1;
                while i < bytes.len() && bytes[i] != b'"' {
                    i += if bytes[i] == b'\\' { 2 } else { 1 };
                }
                if let Some(Frame::Object { key, expect_key }) = stack.last_mut() {
                    if *expect_key {
                        *key = Some((start, (i + 1).min(bytes.len())));
                        *expect_key = false;
                    }
                }
            }
            b'{' => stack.push(Frame::Object {
                key: None,
                expect_key: true,
            }),
            b'[' => stack.push(Frame::Array(0)),
            b'}' | b']' => {
                stack.pop();
            }
            b',' => match stack.last_mut() {
                Some(Frame::Object { key, expect_key }) => {
                    *key = None;
                    *expect_key = true;
                }
                Some(Frame::Array(n)) => *n += 1,
                None => {}
            },
            _ => {}
        }
        i += 1;
    }
    if end > 0 && matches!(bytes.get(end - 1), Some(b'{' | b'[')) {
        stack.pop();
    }
    let mut out = String::new();
    for f in &stack {
        match f {
            Frame::Object {
                key: Some((a, b)), ..
            } => {
                let key = text
                    .get(*a..*b)
                    .and_then(|k| serde_json::from_str::<String>(k).ok())
                    .unwrap_or_default();
                if !out.is_empty() {
                    out.push('.');
                }
                out.push_str(&key);
            }
            Frame::Object { key: None, .. } => {}
            Frame::Array(n) => out.push_str(&format!("[{n}]")),
        }
    }
    out
}

/// A serde error in this project's words: `path: message`, without serde's
/// type names or the line and column (the path says where).
fn explain(path: &str, e: &serde_json::Error) -> ConfigError {
    let full = e.to_string();
    let msg = match full.rfind(" at line ") {
        Some(i) if e.line() > 0 => &full[..i],
        _ => full.as_str(),
    };
    // The names serde quotes in backticks: the offending one first.
    let quoted: Vec<&str> = msg.split('`').skip(1).step_by(2).collect();
    let list = |names: &[&str]| match names {
        [] => String::new(),
        [one] => (*one).to_string(),
        [init @ .., last] => format!("{} or {last}", init.join(", ")),
    };
    let field = path
        .rsplit('.')
        .next()
        .unwrap_or(path)
        .split('[')
        .next()
        .unwrap_or("");
    let (path, message) = if msg.starts_with("unknown field ") {
        let mut known: Vec<&str> = quoted.get(1..).unwrap_or_default().to_vec();
        crate::order::by_name(&mut known, |s| s.as_bytes());
        let name = quoted.first().copied().unwrap_or("");
        // The path already ends in the unknown key.
        let _ = name;
        (
            path.to_string(),
            format!("unknown field (known fields: {})", known.join(", ")),
        )
    } else if msg.starts_with("unknown variant ") {
        // Echoed into logs: control characters escaped, long values cut.
        let value: String = quoted
            .first()
            .copied()
            .unwrap_or("")
            .chars()
            .take(64)
            .flat_map(|c| {
                if c.is_control() {
                    c.escape_default().collect::<Vec<_>>()
                } else {
                    vec![c]
                }
            })
            .collect();
        let expected = quoted.get(1..).unwrap_or_default();
        let message = match noun(field) {
            "scope" => format!(
                "unknown scope \"{value}\" (expected one of: {})",
                expected.join(", ")
            ),
            n => format!("unknown {n} \"{value}\" (expected {})", list(expected)),
        };
        (path.to_string(), message)
    } else if msg.starts_with("missing field ") {
        let name = quoted.first().copied().unwrap_or("");
        (join(path, name), "is required".to_string())
    } else if msg.starts_with("duplicate field ") {
        (path.to_string(), "is given twice".to_string())
    } else if let Some(i) = msg.find(", expected ") {
        // invalid type / invalid value / invalid length
        let expected = &msg[i + ", expected ".len()..];
        let expected = match expected {
            "a boolean" => "true or false",
            "u64" | "u32" | "u16" => "a non-negative integer",
            "a sequence" => "an array",
            "a map" => "an object",
            other => other,
        };
        (path.to_string(), format!("expected {expected}"))
    } else {
        (path.to_string(), msg.to_string())
    };
    ConfigError { path, message }
}

fn join(path: &str, key: &str) -> String {
    if path == "configuration" || path == "token set" || path.is_empty() {
        key.to_string()
    } else {
        format!("{path}.{key}")
    }
}

/// What the values of a field are called in messages.
fn noun(field: &str) -> &'static str {
    match field {
        "mode" => "mode",
        "log_level" => "log level",
        "presets" => "preset",
        "match" => "match",
        "scope" | "scopes" | "authentication_scopes" => "scope",
        "token_kinds" => "token kind",
        "checks" => "checks",
        "body" => "body",
        "platform" => "platform",
        "later_sdk" => "policy",
        "role" => "role",
        _ => "value",
    }
}

/// A set without its tokens (`version`, `epoch`, `expires` and `apps` only): what readers need in
/// large-set mode, where tokens are looked up in shared data. `None` if the set is
/// not a JSON object.
pub fn set_meta(set: &[u8]) -> Option<Vec<u8>> {
    // Read as text, as every other document: serde_json's parser is compiled
    // into the .wasm for one reader (from_slice would add a second copy).
    let text = std::str::from_utf8(set).ok()?;
    let top: Vec<(String, &RawValue)> = serde_json::from_str::<RawObject>(text).ok()?.0;
    let parts: Vec<String> = top
        .into_iter()
        .filter(|(k, _)| matches!(k.as_str(), "version" | "epoch" | "expires" | "apps"))
        .map(|(k, v)| {
            format!(
                "{}:{}",
                serde_json::to_string(&k).unwrap_or_default(),
                v.get()
            )
        })
        .collect();
    Some(format!("{{{}}}", parts.join(",")).into_bytes())
}

/// A JSON object as (key, raw value) pairs, borrowing from the input.
struct RawObject<'a>(Vec<(String, &'a RawValue)>);

impl<'de: 'a, 'a> serde::Deserialize<'de> for RawObject<'a> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V<'a>(std::marker::PhantomData<&'a ()>);
        impl<'de: 'a, 'a> serde::de::Visitor<'de> for V<'a> {
            type Value = RawObject<'a>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<M: serde::de::MapAccess<'de>>(
                self,
                mut m: M,
            ) -> Result<Self::Value, M::Error> {
                let mut out = Vec::new();
                while let Some((k, v)) = m.next_entry::<String, &'de RawValue>()? {
                    out.push((k, v));
                }
                Ok(RawObject(out))
            }
        }
        d.deserialize_map(V(std::marker::PhantomData))
    }
}

/// A cursor over one token object (the token compiler's; the rest of the
/// configuration is read through [`model`]), remembering which keys were read so
/// unknown keys can be reported.
pub(crate) struct Obj<'a> {
    path: String,
    map: &'a Map<String, Value>,
    seen: Vec<&'a str>,
}

impl<'a> Obj<'a> {
    fn new(path: &str, map: &'a Map<String, Value>) -> Obj<'a> {
        Obj {
            path: path.to_string(),
            map,
            seen: Vec::new(),
        }
    }

    pub(crate) fn at(&self, key: &str) -> String {
        if self.path.is_empty() {
            key.to_string()
        } else {
            format!("{}.{key}", self.path)
        }
    }

    pub(crate) fn get(&mut self, key: &'static str) -> Option<&'a Value> {
        self.seen.push(key);
        self.map.get(key).filter(|v| !v.is_null())
    }

    pub(crate) fn str(&mut self, key: &'static str) -> Result<Option<&'a str>, ConfigError> {
        match self.get(key) {
            None => Ok(None),
            Some(Value::String(s)) => Ok(Some(s)),
            Some(_) => err(self.at(key), "expected a string"),
        }
    }

    pub(crate) fn required_str(&mut self, key: &'static str) -> Result<&'a str, ConfigError> {
        match self.str(key)? {
            Some(s) if !s.is_empty() => Ok(s),
            Some(_) => err(self.at(key), "must not be empty"),
            None => err(self.at(key), "is required"),
        }
    }

    pub(crate) fn bool(&mut self, key: &'static str, default: bool) -> Result<bool, ConfigError> {
        match self.get(key) {
            None => Ok(default),
            Some(Value::Bool(b)) => Ok(*b),
            Some(_) => err(self.at(key), "expected true or false"),
        }
    }

    pub(crate) fn strings(
        &mut self,
        key: &'static str,
    ) -> Result<Option<Vec<(String, &'a str)>>, ConfigError> {
        let items = match self.get(key) {
            None => return Ok(None),
            Some(Value::Array(a)) => a,
            Some(_) => return err(self.at(key), "expected an array"),
        };
        let base = self.at(key);
        items
            .iter()
            .enumerate()
            .map(|(i, v)| match v {
                Value::String(s) => Ok((format!("{base}[{i}]"), s.as_str())),
                _ => err(format!("{base}[{i}]"), "expected a string"),
            })
            .collect::<Result<Vec<_>, _>>()
            .map(Some)
    }

    pub(crate) fn finish(&self) -> Result<(), ConfigError> {
        for key in self.map.keys() {
            if !self.seen.contains(&key.as_str()) {
                let mut known: Vec<&str> = self.seen.clone();
                crate::order::by_name(&mut known, |s| s.as_bytes());
                known.dedup();
                return err(
                    self.at(key),
                    format!("unknown field (known fields: {})", known.join(", ")),
                );
            }
        }
        Ok(())
    }
}

fn element<'a>(path: &str, v: &'a Value) -> Result<Obj<'a>, ConfigError> {
    match v {
        Value::Object(m) => Ok(Obj::new(path, m)),
        _ => err(path, "expected an object"),
    }
}

fn parse_scope(path: &str, s: &str) -> Result<Scope, ConfigError> {
    Scope::parse(s).map_or_else(
        || {
            err(
                path,
                format!(
                    "unknown scope \"{s}\" (expected one of: events, sessions, ad_revenue, gdpr)"
                ),
            )
        },
        Ok,
    )
}

/// A secret given in the configuration: clear text or a SHA-256 digest in hex.
fn secret(
    o: &mut Obj,
    clear: &'static str,
    hashed: &'static str,
) -> Result<Option<Digest>, ConfigError> {
    let c = o.str(clear)?;
    let h = o.str(hashed)?;
    match (c, h) {
        (Some(_), Some(_)) => err(
            o.at(hashed),
            format!("give either {clear} or {hashed}, not both"),
        ),
        (Some(""), None) => err(o.at(clear), "must not be empty"),
        // A longer credential is refused before any lookup: it could never match.
        (Some(s), None) if s.len() > crate::credential::MAX_CREDENTIAL_LEN => err(
            o.at(clear),
            format!(
                "longer than {} bytes (credentials that long are refused)",
                crate::credential::MAX_CREDENTIAL_LEN
            ),
        ),
        (Some(s), None) => Ok(Some(token::digest(s.as_bytes()))),
        (None, Some(hex_digest)) => {
            let mut d = [0u8; 32];
            if hex_digest.len() != 64 || hex::decode_to_slice(hex_digest, &mut d).is_err() {
                return err(
                    o.at(hashed),
                    "expected 64 hexadecimal characters (a SHA-256 digest)",
                );
            }
            Ok(Some(d))
        }
        (None, None) => Ok(None),
    }
}

/// The last second a token time may name (9999-12-31T23:59:59Z, as far as RFC 3339
/// goes).
const MAX_UNIX_SECS: u64 = 253_402_300_799;

fn parse_time(o: &mut Obj, key: &'static str) -> Result<Option<u64>, ConfigError> {
    match o.get(key) {
        None => Ok(None),
        Some(Value::Number(n)) => match n.as_u64() {
            Some(v) if v <= MAX_UNIX_SECS => Ok(Some(v)),
            // Milliseconds (`Date.now()`, `currentTimeMillis()`) would be a time
            // thousands of years away: an expiry that never comes.
            Some(v) => err(
                o.at(key),
                format!(
                    "{v} is after 9999-12-31T23:59:59Z: expected Unix seconds{}",
                    if v / 1000 <= MAX_UNIX_SECS {
                        " (this looks like milliseconds)"
                    } else {
                        ""
                    }
                ),
            ),
            None => err(o.at(key), "expected Unix seconds or an RFC 3339 time"),
        },
        Some(Value::String(s)) => match crate::times::rfc3339_secs(s) {
            Some(t) => Ok(Some(t)),
            None => err(
                o.at(key),
                format!("not an RFC 3339 time (e.g. 2026-01-31T00:00:00Z): \"{s}\""),
            ),
        },
        Some(_) => err(o.at(key), "expected Unix seconds or an RFC 3339 time"),
    }
}

/// The realms tokens may name, and the one a token that names none belongs to.
struct Realms {
    known: Vec<String>,
    default: Option<String>,
    /// The realm names, allocated once, shared by the tokens.
    interned: Vec<std::rc::Rc<str>>,
}

impl Realms {
    fn intern(&self, r: &str) -> std::rc::Rc<str> {
        self.interned
            .iter()
            .find(|i| &***i == r)
            .cloned()
            .unwrap_or_else(|| std::rc::Rc::from(r))
    }

    /// The realm a token belongs to when it is valid; `None` when [`resolve`]
    /// must word an error.
    fn resolve_known(&self, named: Option<&str>) -> Option<&str> {
        match (named, &self.default) {
            (Some(r), _) => self.known.iter().find(|k| *k == r).map(String::as_str),
            (None, Some(d)) => Some(d),
            (None, None) => None,
        }
    }

    fn resolve(&self, path: &str, named: Option<&str>) -> Result<std::rc::Rc<str>, ConfigError> {
        match (named, &self.default) {
            (Some(r), _) if self.known.iter().any(|k| k == r) => Ok(self.intern(r)),
            (Some(r), _) => err(
                format!("{path}.realm"),
                format!(
                    "unknown realm \"{r}\" (the routes' realms: {})",
                    self.known.join(", ")
                ),
            ),
            (None, Some(d)) => Ok(self.intern(d)),
            (None, None) => err(
                format!("{path}.realm"),
                format!(
                    "is required: the routes belong to several realms ({}); or set default_realm",
                    self.known.join(", ")
                ),
            ),
        }
    }
}

fn compile_tokens(raw: Option<&RawValue>, realms: &Realms) -> Result<TokenStore, ConfigError> {
    let Some(raw) = raw.filter(|r| r.get().trim() != "null") else {
        return Ok(TokenStore::default());
    };
    // The set's digest is known to the fetcher (it tags what it publishes);
    // hashing a large set twice would cost more than parsing it.
    let tag = [0; 32];
    // Jitsu's shorthand: a plain string is one client secret.
    if let Ok(secret) = serde_json::from_str::<String>(raw.get()) {
        let mut store = StoreBuilder::default();
        compile_token(0, &Value::String(secret), &mut store, realms)?;
        return store.finish(tag).map_err(store_error);
    }
    // One token object per `{` (a cheap count, exact for the usual shapes): a
    // million tokens without doubling vectors past what they need.
    let estimate = raw.get().bytes().filter(|&b| b == b'{').count();
    // First, one pass reading every token in the common shape straight from the
    // array; at the first one that is not, the general pass below reads them all
    // again (and words the errors).
    let mut store = StoreBuilder::with_capacity(estimate);
    let fast = FastSeq {
        store: &mut store,
        realms,
    };
    let mut de = serde_json::Deserializer::from_str(raw.get());
    if serde::de::DeserializeSeed::deserialize(fast, &mut de).is_ok() {
        return store.finish(tag).map_err(store_error);
    }
    drop(store);
    let mut store = StoreBuilder::with_capacity(estimate);
    let mut failure: Option<ConfigError> = None;
    let seed = TokenSeq {
        store: &mut store,
        failure: &mut failure,
        realms,
    };
    let mut de = serde_json::Deserializer::from_str(raw.get());
    let result = serde::de::DeserializeSeed::deserialize(seed, &mut de);
    if let Some(e) = failure {
        return Err(e);
    }
    result.or_else(|e| {
        err(
            "tokens",
            format!("expected an array of token objects ({e})"),
        )
    })?;
    store.finish(tag).map_err(store_error)
}

fn store_error(e: StoreError) -> ConfigError {
    match e {
        StoreError::DuplicateId { at, id } => ConfigError {
            path: format!("tokens[{at}].id"),
            message: format!("duplicate token id \"{id}\""),
        },
        StoreError::DuplicateSecret { at, other } => ConfigError {
            path: format!("tokens[{at}]"),
            message: format!(
                "secret already used by token \"{other}\" (every secret must be unique)"
            ),
        },
        StoreError::TooLarge => ConfigError {
            path: "tokens".into(),
            message: "too many tokens (the store holds up to 2^31 secrets and 4 GiB of ids)".into(),
        },
    }
}

/// The `tokens` array read as common-shape tokens only, each compiled as it is
/// read: fails at the first token of another shape (or one the common reading
/// refuses), for the general pass to take over.
struct FastSeq<'s> {
    store: &'s mut StoreBuilder,
    realms: &'s Realms,
}

impl<'de> serde::de::DeserializeSeed<'de> for FastSeq<'_> {
    type Value = ();
    fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_seq(self)
    }
}

impl<'de> serde::de::Visitor<'de> for FastSeq<'_> {
    type Value = ();
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("an array of tokens in the common shape")
    }
    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        while let Some(f) = seq.next_element::<FastToken<'de>>()? {
            let pushed = fast_token(&f, self.realms)
                .is_some_and(|(t, secrets, n)| self.store.push(&t, &secrets[..n]).is_ok());
            if !pushed {
                return Err(serde::de::Error::custom("not the common shape"));
            }
        }
        Ok(())
    }
}

/// Streams the `tokens` array: each element is parsed, compiled and dropped before
/// the next is read.
struct TokenSeq<'s> {
    store: &'s mut StoreBuilder,
    failure: &'s mut Option<ConfigError>,
    realms: &'s Realms,
}

impl<'de> serde::de::DeserializeSeed<'de> for TokenSeq<'_> {
    type Value = ();
    fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_seq(self)
    }
}

impl<'de> serde::de::Visitor<'de> for TokenSeq<'_> {
    type Value = ();
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("an array")
    }
    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        let mut i = 0;
        while let Some(raw) = seq.next_element::<&'de RawValue>()? {
            // The common shape goes through a borrowed, allocation-free reading;
            // anything else (and every error) through the general one, which
            // words the errors.
            let done = match serde_json::from_str::<FastToken>(raw.get()) {
                Ok(f) => fast_token(&f, self.realms)
                    .is_some_and(|(t, secrets, n)| self.store.push(&t, &secrets[..n]).is_ok()),
                Err(_) => false,
            };
            if !done {
                // A key given twice: JSON parsers disagree on which copy wins
                // (serde_json's map keeps the last).
                if let Ok(RawObject(pairs)) = serde_json::from_str::<RawObject>(raw.get()) {
                    if let Some((k, _)) = (pairs.iter().enumerate())
                        .find(|(j, (k, _))| pairs[..*j].iter().any(|(p, _)| p == k))
                        .map(|(_, kv)| kv)
                    {
                        *self.failure = Some(ConfigError {
                            path: format!("tokens[{i}].{k}"),
                            message: "is given twice".into(),
                        });
                        return Err(serde::de::Error::custom("invalid token"));
                    }
                }
                let compiled = serde_json::from_str::<Value>(raw.get())
                    .map_err(|e| ConfigError {
                        path: format!("tokens[{i}]"),
                        message: format!("not valid JSON ({e})"),
                    })
                    .and_then(|v| compile_token(i, &v, self.store, self.realms));
                if let Err(e) = compiled {
                    *self.failure = Some(e);
                    return Err(serde::de::Error::custom("invalid token"));
                }
            }
            i += 1;
        }
        Ok(())
    }
}

/// Token ids and apps go upstream as header values and into log lines: visible
/// ASCII and inner spaces only, and short (records keep 16-bit lengths).
fn header_safe(s: &str) -> bool {
    (1..=MAX_LABEL).contains(&s.len())
        && s.bytes().all(|b| (0x20..0x7f).contains(&b))
        && !s.starts_with(' ')
        && !s.ends_with(' ')
}

const MAX_LABEL: usize = 256;
const EMPTY_SCOPES: &str = "an empty list would grant every scope (a legacy token): leave scopes out for that, or list the scopes the token grants";
const HEADER_SAFE: &str = "must be 1 to 256 visible ASCII characters (no control characters, no outer spaces): it is sent upstream as a header value";

/// A token entry in its common shape, borrowed from the set: every string
/// without escapes, times as Unix seconds. Anything else fails to deserialize
/// here and takes the general path.
#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct FastToken<'a> {
    id: &'a str,
    /// Accepted and not used (a label for people).
    #[serde(default, rename = "name")]
    _name: Option<&'a str>,
    #[serde(default)]
    secret: Option<&'a str>,
    #[serde(default)]
    sha256: Option<&'a str>,
    #[serde(default)]
    server_secret: Option<&'a str>,
    #[serde(default)]
    server_secret_sha256: Option<&'a str>,
    #[serde(default)]
    client_secret: Option<&'a str>,
    #[serde(default)]
    client_secret_sha256: Option<&'a str>,
    #[serde(default)]
    kind: Option<&'a str>,
    #[serde(default)]
    app: Option<&'a str>,
    #[serde(default, borrow)]
    scopes: Option<Vec<&'a str>>,
    #[serde(default)]
    active: Option<bool>,
    #[serde(default)]
    not_before: Option<u64>,
    #[serde(default)]
    expires_at: Option<u64>,
    #[serde(default, borrow)]
    origins: Option<Vec<&'a str>>,
    #[serde(default)]
    realm: Option<&'a str>,
    #[serde(default)]
    all_apps: Option<bool>,
}

/// A token's secrets: the first `n` of two.
type Secrets = [(Digest, Kind); 2];

/// A SHA-256 digest from 64 hexadecimal characters (either case); `None` for
/// anything else. A lookup table: a million digests decode in milliseconds.
fn hex_digest(h: &[u8]) -> Option<Digest> {
    const fn table() -> [u8; 256] {
        let mut t = [0xffu8; 256];
        let mut i = 0;
        while i < 10 {
            t[b'0' as usize + i] = i as u8;
            i += 1;
        }
        let mut i = 0;
        while i < 6 {
            t[b'a' as usize + i] = 10 + i as u8;
            t[b'A' as usize + i] = 10 + i as u8;
            i += 1;
        }
        t
    }
    static HEX: [u8; 256] = table();
    let h: &[u8; 64] = h.try_into().ok()?;
    let mut d = [0u8; 32];
    let mut bad = 0u8;
    for (o, pair) in d.iter_mut().zip(h.chunks_exact(2)) {
        let (hi, lo) = (HEX[usize::from(pair[0])], HEX[usize::from(pair[1])]);
        bad |= (hi | lo) & 0xf0;
        *o = (hi << 4) | (lo & 0x0f);
    }
    (bad == 0).then_some(d)
}

/// One secret from its clear or hashed form; `None` when the general path must
/// word an error.
fn fast_secret(clear: Option<&str>, hashed: Option<&str>) -> Option<Option<Digest>> {
    match (clear, hashed) {
        (None, None) => Some(None),
        (Some(c), None) if !c.is_empty() && c.len() <= crate::credential::MAX_CREDENTIAL_LEN => {
            Some(Some(token::digest(c.as_bytes())))
        }
        (None, Some(h)) => Some(Some(hex_digest(h.as_bytes())?)),
        _ => None,
    }
}

/// The token and its secrets (second one optional) when the entry is valid as
/// [`compile_token`] reads it; `None` otherwise, so that it words the error.
fn fast_token<'a>(
    f: &'a FastToken<'a>,
    realms: &'a Realms,
) -> Option<(TokenRef<'a>, Secrets, usize)> {
    if !header_safe(f.id)
        || f.app.is_some_and(|a| !header_safe(a))
        || f.all_apps == Some(true) && f.app.is_some()
    {
        return None;
    }
    let main = fast_secret(f.secret, f.sha256)?;
    let server = fast_secret(f.server_secret, f.server_secret_sha256)?;
    let client = fast_secret(f.client_secret, f.client_secret_sha256)?;
    let none = ([0; 32], Kind::Server);
    let (secrets, n) = match (main, server, client) {
        (Some(d), None, None) => {
            let kind = match f.kind {
                None | Some("server") => Kind::Server,
                Some("client") => Kind::Client,
                Some(_) => return None,
            };
            ([(d, kind), none], 1)
        }
        (None, Some(s), Some(c)) if f.kind.is_none() => ([(s, Kind::Server), (c, Kind::Client)], 2),
        (None, Some(s), None) if f.kind.is_none() => ([(s, Kind::Server), none], 1),
        (None, None, Some(c)) if f.kind.is_none() => ([(c, Kind::Client), none], 1),
        _ => return None,
    };
    if f.scopes.as_ref().is_some_and(|s| s.is_empty()) {
        return None;
    }
    let mut scopes = Scopes::NONE;
    for s in f.scopes.iter().flatten() {
        scopes.insert(Scope::parse(s)?);
    }
    if let (Some(a), Some(b)) = (f.not_before, f.expires_at) {
        if b <= a {
            return None;
        }
    }
    if f.not_before
        .max(f.expires_at)
        .is_some_and(|t| t > MAX_UNIX_SECS)
    {
        return None;
    }
    // Origins need owned rules; the general path builds them.
    if f.origins.as_ref().is_some_and(|o| !o.is_empty()) {
        return None;
    }
    Some((
        TokenRef {
            id: f.id,
            app: f.app,
            realm: realms.resolve_known(f.realm)?,
            scopes,
            active: f.active.unwrap_or(true),
            all_apps: f.all_apps.unwrap_or(false),
            not_before: f.not_before,
            expires_at: f.expires_at,
            origins: &[],
        },
        secrets,
        n,
    ))
}

fn compile_token(
    i: usize,
    v: &Value,
    store: &mut StoreBuilder,
    realms: &Realms,
) -> Result<(), ConfigError> {
    // Jitsu's shorthand: a string in the list is a client secret; its id is its
    // position (never the secret).
    if let Value::String(secret) = v {
        if secret.is_empty() {
            return err(format!("tokens[{i}]"), "must not be empty");
        }
        let token = Token {
            realm: realms.resolve(&format!("tokens[{i}]"), None)?,
            ..Token::new(format!("client-secret-{i}"))
        };
        return store
            .push(
                &token.as_ref(),
                &[(token::digest(secret.as_bytes()), Kind::Client)],
            )
            .map_err(store_error);
    }
    {
        let path = format!("tokens[{i}]");
        let mut o = element(&path, v)?;
        let id = o.required_str("id")?.to_string();
        if !header_safe(&id) {
            return err(o.at("id"), HEADER_SAFE);
        }
        o.str("name")?;
        let mut secrets: Vec<(Digest, Kind)> = Vec::new();
        let main = secret(&mut o, "secret", "sha256")?;
        let server = secret(&mut o, "server_secret", "server_secret_sha256")?;
        let client = secret(&mut o, "client_secret", "client_secret_sha256")?;
        let kind = match o.str("kind")? {
            None | Some("server") => Kind::Server,
            Some("client") => Kind::Client,
            Some(other) => {
                return err(
                    o.at("kind"),
                    format!("unknown token kind \"{other}\" (expected server or client)"),
                )
            }
        };
        match (main, server.is_some() || client.is_some()) {
            (Some(_), true) => {
                return err(
                    path,
                    "give either secret/sha256 or server_secret/client_secret, not both",
                )
            }
            (Some(d), false) => secrets.push((d, kind)),
            (None, true) => {
                if o.map.contains_key("kind") {
                    return err(o.at("kind"), "only applies to secret/sha256");
                }
                secrets.extend(server.map(|d| (d, Kind::Server)));
                secrets.extend(client.map(|d| (d, Kind::Client)));
            }
            (None, false) => {
                return err(
                    path,
                    "has no secret (give secret, sha256, server_secret or client_secret)",
                )
            }
        }
        let app = o.str("app")?.map(str::to_string);
        if app.as_deref().is_some_and(|a| !header_safe(a)) {
            return err(o.at("app"), HEADER_SAFE);
        }
        let mut scopes = Scopes::NONE;
        let listed = o.strings("scopes")?;
        if listed.as_ref().is_some_and(Vec::is_empty) {
            // An empty set is a legacy token's, every scope: an operator emptying
            // the list to take scopes away would grant them all.
            return err(o.at("scopes"), EMPTY_SCOPES);
        }
        for (p, s) in listed.unwrap_or_default() {
            scopes.insert(parse_scope(&p, s)?);
        }
        let active = o.bool("active", true)?;
        let not_before = parse_time(&mut o, "not_before")?;
        let expires_at = parse_time(&mut o, "expires_at")?;
        if let (Some(a), Some(b)) = (not_before, expires_at) {
            if b <= a {
                return err(o.at("expires_at"), "must be after not_before");
            }
        }
        let mut origins = Vec::new();
        for (p, s) in o.strings("origins")?.unwrap_or_default() {
            match OriginRule::parse(s) {
                Some(r) => origins.push(r),
                None => {
                    return err(
                        p,
                        format!("not an origin rule: \"{s}\" (use *, *.domain, *suffix, prefix* or an exact host)"),
                    )
                }
            }
        }
        let realm = realms.resolve(&path, o.str("realm")?)?;
        let all_apps = o.bool("all_apps", false)?;
        if all_apps && app.is_some() {
            return err(o.at("all_apps"), "contradicts app (a token of one app)");
        }
        o.finish()?;
        let token = Token {
            id,
            app,
            scopes,
            active,
            not_before,
            expires_at,
            origins,
            realm,
            all_apps,
        };
        store.push(&token.as_ref(), &secrets).map_err(store_error)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::Source;

    fn e(json: &str) -> String {
        parse(json.as_bytes()).unwrap_err().to_string()
    }

    #[test]
    fn presets_compile() {
        let p = parse(br#"{"presets": ["adjust", "swaarm", "jitsu"]}"#).unwrap();
        assert_eq!(p.routes.len(), 15);
        let r = p.route(b"POST", b"/event").unwrap();
        assert_eq!(r.scope, Some(Scope::Events));
        assert!(p.route(b"DELETE", b"/event").is_none());
        assert!(p.route(b"GET", b"/nope").is_none());
    }

    #[test]
    fn errors_name_the_field() {
        assert_eq!(
            e(""),
            "configuration: empty; s2s-guard needs a JSON object with at least one route or preset"
        );
        assert_eq!(e("[]"), "configuration: expected a JSON object");
        assert_eq!(e(r#"{"presets":["adjust"],"bogus":1}"#), "bogus: unknown field (known fields: $schema, app_authentication_default, apps, default_realm, hold_headers_for_body, log_level, max_body_bytes, max_stats_apps, mode, origin_mismatch, path_normalization, presets, profiles, routes, signature_reply, strip_credential, token_source, tokens, unknown_paths, unknown_paths_profile, upstream_headers)");
        assert_eq!(
            e(r#"{"presets":["adjust"],"tokens":[{"id":"a","secret":"s","scopes":["event"]}]}"#),
            "tokens[0].scopes[0]: unknown scope \"event\" (expected one of: events, sessions, ad_revenue, gdpr)"
        );
        assert_eq!(
            e(
                r#"{"presets":["adjust"],"tokens":[{"id":"a","secret":"s"},{"id":"a","secret":"t"}]}"#
            ),
            "tokens[1].id: duplicate token id \"a\""
        );
        assert_eq!(
            e(
                r#"{"presets":["adjust"],"tokens":[{"id":"a","secret":"s"},{"id":"b","secret":"s"}]}"#
            ),
            "tokens[1]: secret already used by token \"a\" (every secret must be unique)"
        );
        assert_eq!(
            e(r#"{"routes":[{"path":"/x"}]}"#),
            "routes[0].profile: is required"
        );
        assert_eq!(
            e(r#"{"routes":[{"path":"/x","profile":"nope"}]}"#),
            "routes[0].profile: unknown profile \"nope\""
        );
        assert_eq!(
            e(r#"{"presets":["adjust"],"tokens":[{"id":"a","sha256":"abc"}]}"#),
            "tokens[0].sha256: expected 64 hexadecimal characters (a SHA-256 digest)"
        );
        assert_eq!(
            e(r#"{"mode":"loud","presets":["adjust"]}"#),
            "mode: unknown mode \"loud\" (expected enforce, flag or dry_run)"
        );
        assert_eq!(
            e(r#"{}"#),
            "routes: no routes: configure routes or name a preset"
        );
    }

    /// Shape errors come from the serde types, named by the JSON path of the fault
    /// (found from serde_json's position), in this project's words.
    #[test]
    fn shape_errors_name_the_path() {
        for (json, want) in [
            (r#"{"presets":["adjustx"]}"#, "presets[0]: unknown preset \"adjustx\" (expected adjust, adjust_sdk, swaarm or jitsu)"),
            (r#"{"presets":[1]}"#, "presets[0]: expected a string"),
            (r#"{"mode":{},"presets":["adjust"]}"#, "mode: expected a string"),
            (r#"{"routes":[{"path":"/x"}]}"#, "routes[0].profile: is required"),
            (r#"{"routes":[{"path":"/x","profile":"adjust","bogus":1}]}"#, "routes[0].bogus: unknown field (known fields: app_param, body, checks, cors, credentials, match, methods, name, path, per_app_enforcement, profile, realm, required_params, scope, single_params, token_kinds)"),
            (r#"{"routes":[{"path":"/x","profile":"adjust","scope":"event"}]}"#, "routes[0].scope: unknown scope \"event\" (expected one of: events, sessions, ad_revenue, gdpr)"),
            (r#"{"routes":[{"path":"/x","profile":"adjust","required_params":[{"allow_empty":true}]}]}"#, "routes[0].required_params[0].name: is required"),
            (r#"{"routes":[{"path":"/a","profile":"adjust"},{"path":"/b","profile":"adjust","methods":["GET",{}]}]}"#, "routes[1].methods[1]: expected a string"),
            (r#"{"presets":["adjust"],"apps":{"x":{},"y":{},"x":{}}}"#, "apps.x: is given twice"),
            (r#"{"presets":["adjust"],"presets":["swaarm"]}"#, "presets: is given twice"),
            // Session 12, round 7 (helper-45) F5: inside a token too.
            (
                r#"{"presets":["swaarm"],"tokens":[{"id":"a","secret":"s1","secret":"s2"}]}"#,
                "tokens[0].secret: is given twice",
            ),
            (
                r#"{"presets":["swaarm"],"tokens":[{"id":"a","secret":"s1"},{"id":"b","active":false,"secret":"s3","active":true}]}"#,
                "tokens[1].active: is given twice",
            ),
            (r#"{"presets":["adjust"],"max_body_bytes":-1}"#, "max_body_bytes: expected a non-negative integer"),
            (r#"{"presets":["adjust_sdk"],"apps":{"a":{"signature":{"max_age":"7x"}}}}"#, "apps.a.signature.max_age: not a duration (e.g. 30d, 12h, 300s): \"7x\""),
            (r#"{"presets":["adjust_sdk"],"apps":{"a":{"signature":{"secrets":[{"id":1,"info":[1,2,"3",4]}]}}}}"#, "apps.a.signature.secrets[0].info[2]: expected a non-negative integer"),
            (r#"{"presets":["adjust"],"token_source":{"cluster":"c","path":"/t","headers":{"a":1}}}"#, "token_source.headers.a: expected a string"),
            (r#"{"presets":["adjust"],"path_normalization":[true]}"#, "path_normalization: expected an object"),
            (r#"{"presets":["adjust"]} x"#, "configuration: not valid JSON: trailing characters at line 1 column 24"),
            // Escaped keys, several lines.
            ("{ \"presets\" : [ \"adjust\" ] ,\n  \"apps\" : { \"a\\\"b\" : {\n \"authentication\" : \"yes\" } } }", "apps.a\"b.authentication: expected true or false"),
        ] {
            assert_eq!(e(json), want, "{json}");
        }
    }

    #[test]
    fn token_set_errors_are_prefixed() {
        let c = br#"{"presets":["swaarm"]}"#;
        let e = |set: &str| {
            parse_with_set(c, Some(set.as_bytes()))
                .unwrap_err()
                .to_string()
        };
        assert_eq!(e("[]"), "token set: expected a JSON object");
        assert_eq!(
            e(r#"{"version":-1}"#),
            "token set: version: expected a non-negative integer"
        );
        assert_eq!(
            e(r#"{"epoch":9007199254740993,"tokens":[]}"#),
            "token set: epoch: expected an integer between 0 and 9007199254740992"
        );
        assert_eq!(
            e(r#"{"bogus":1}"#),
            "token set: bogus: unknown field (known fields: $schema, apps, epoch, expires, tokens, version)"
        );
        // Session 12, round 8 (helper-46) N1: one log line whatever the set holds.
        assert_eq!(
            e("{\"version\":2,\"expires\":\"x\\n[warn] forged\\u001b[0m\",\"tokens\":[]}"),
            "token set: expires: not an RFC 3339 time (e.g. 2026-01-31T00:00:00Z): \"x\\u{a}[warn] forged\\u{1b}[0m\""
        );
        assert_eq!(
            e(r#"{"version":2,"expires":"next week","tokens":[]}"#),
            "token set: expires: not an RFC 3339 time (e.g. 2026-01-31T00:00:00Z): \"next week\""
        );
        assert_eq!(
            e(r#"{"version":2}"#),
            "token set: tokens: is required: a set lists its tokens (`[]` for none)"
        );
        assert_eq!(
            e(r#"{"version":2,"tokens":null}"#),
            "token set: tokens: is required: a set lists its tokens (`[]` for none)"
        );
        assert_eq!(e(r#"{"apps":{},"tokens":[]}"#), "token set: apps: this configuration does not let token sets change app settings (token_source.apps_from_set)");
        assert_eq!(e(r#"{"tokens":[{"id":"a"}]}"#), "token set: tokens[0]: has no secret (give secret, sha256, server_secret or client_secret)");
        assert_eq!(
            e(&format!(r#"{{"tokens":[{{"id":"a","secret":"{}"}}]}}"#, "s".repeat(4097))),
            "token set: tokens[0].secret: longer than 4096 bytes (credentials that long are refused)"
        );
    }

    #[test]
    fn realm_errors_name_the_field() {
        assert_eq!(
            e(r#"{"presets":["adjust","swaarm"],"tokens":[{"id":"a","secret":"s"}]}"#),
            "tokens[0].realm: is required: the routes belong to several realms (adjust, swaarm); or set default_realm"
        );
        assert_eq!(
            e(
                r#"{"presets":["adjust","swaarm"],"tokens":[{"id":"a","secret":"s","realm":"jitsu"}]}"#
            ),
            "tokens[0].realm: unknown realm \"jitsu\" (the routes' realms: adjust, swaarm)"
        );
        assert_eq!(
            e(r#"{"presets":["adjust","swaarm"],"default_realm":"x"}"#),
            "default_realm: unknown realm \"x\" (the routes' realms: adjust, swaarm)"
        );
        assert_eq!(
            e(
                r#"{"presets":["adjust"],"tokens":[{"id":"a","secret":"s","app":"x","all_apps":true}]}"#
            ),
            "tokens[0].all_apps: contradicts app (a token of one app)"
        );
        assert_eq!(
            e(r#"{"routes":[{"path":"/a","profile":"swaarm","realm":"a b"}]}"#),
            "routes[0].realm: not a realm name: \"a b\" (letters, digits, - and _)"
        );
        let p = parse(br#"{"presets":["adjust","swaarm"],"default_realm":"swaarm","tokens":[{"id":"a","secret":"s"}]}"#).unwrap();
        assert_eq!(p.routes.iter().filter(|r| r.realm == "adjust").count(), 4);
    }

    #[test]
    fn set_meta_keeps_version_and_apps_only() {
        let meta = set_meta(
            br#"{"tokens": [{"id": "a", "secret": "s"}], "version": 3, "apps": {"x": {}}}"#,
        )
        .unwrap();
        let v: Value = serde_json::from_slice(&meta).unwrap();
        assert_eq!(v, serde_json::json!({"version": 3, "apps": {"x": {}}}));
        assert_eq!(set_meta(b"[]"), None);
    }

    #[test]
    fn user_route_replaces_preset_route() {
        let p = parse(br#"{"presets":["swaarm"],"routes":[{"path":"/postback","profile":"swaarm","credentials":["authorization"]}]}"#).unwrap();
        assert_eq!(p.routes.len(), 3);
        assert_eq!(
            p.route(b"GET", b"/postback").unwrap().sources,
            vec![Source::Authorization]
        );
    }
}
