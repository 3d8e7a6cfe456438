//! Configuration: JSON bytes in, a validated [`Policy`] out, or an error naming the
//! field (`tokens[2].scopes[0]: unknown scope "event" ...`). Pure: no host calls.
//!
//! Every key is documented in `docs/configuration.md`.

use std::collections::HashMap;
use std::fmt;

use serde_json::value::RawValue;
use serde_json::{Map, Value};

use crate::path::PathOptions;
use crate::policy::{
    AppPlatform, AppSettings, BodyRule, Checks, LaterSdk, Mode, OriginMismatch, Outcome, PathMatch,
    Policy, Profile, Reply, RequiredParam, Route, SignatureSettings, Source, UpstreamHeaders,
};
use crate::replay;
use crate::signature::AppSecret;
use crate::token::{
    self, Digest, Kind, OriginRule, Scope, Scopes, StoreBuilder, StoreError, Token, TokenRef,
    TokenStore,
};

/// A configuration error: where, and what is wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// JSON path of the offending value (`tokens[2].scopes[0]`), or `configuration`.
    pub path: String,
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.path, self.message)
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

/// Default limit for buffered form bodies.
pub const DEFAULT_MAX_BODY_BYTES: usize = 64 * 1024;
/// Hard ceiling for `max_body_bytes`: Envoy's default connection buffer is 1 MiB.
pub const MAX_BODY_CEILING: usize = 1024 * 1024;

/// Parses and validates a configuration.
///
/// The top level is read as raw JSON slices; `tokens` is then compiled one element
/// at a time, so a configuration with a million tokens never exists as a whole
/// JSON tree in memory (Wasm memory, once grown, is never given back).
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

fn parse_set_inner(
    bytes: &[u8],
    set: Option<&[u8]>,
    skip_tokens: bool,
) -> Result<Policy, ConfigError> {
    let mut top = top_level(bytes, "configuration")?;
    let mut tokens = top.raw_tokens.take();
    if let Some(set) = set {
        let mut s = top_level(set, "token set").map_err(|e| ConfigError {
            path: if e.path == "token set" {
                e.path
            } else {
                format!("token set: {}", e.path)
            },
            message: e.message,
        })?;
        for k in s.map.keys() {
            if !matches!(k.as_str(), "version" | "epoch" | "apps" | "tokens") {
                return err(
                    format!("token set: {k}"),
                    "unknown field (known fields: apps, epoch, tokens, version)",
                );
            }
        }
        if let Some(apps) = s.map.remove("apps") {
            // App settings switch authentication on and off: a set may change them
            // only when the plugin configuration says so.
            let allowed = top
                .map
                .get("token_source")
                .and_then(|t| t.get("apps_from_set"))
                .and_then(Value::as_bool)
                .unwrap_or(false);
            if !allowed {
                return err(
                    "token set: apps",
                    "this configuration does not let token sets change app settings (token_source.apps_from_set)",
                );
            }
            top.map.insert("apps".into(), apps);
        }
        tokens = s.raw_tokens.take().filter(|_| !skip_tokens);
        let mut policy = compile(Obj::new("", &top.map), tokens).map_err(|e| ConfigError {
            path: format!("token set: {}", e.path),
            message: e.message,
        })?;
        policy.set_version = match s.map.get("version") {
            None => None,
            Some(Value::Number(n)) if n.as_u64().is_some() => n.as_u64(),
            Some(_) => return err("token set: version", "expected a non-negative integer"),
        };
        policy.set_epoch = match s.map.get("epoch") {
            None => 0,
            Some(Value::Number(n)) if n.as_u64().is_some_and(|e| e <= 1 << 32) => {
                n.as_u64().unwrap_or(0)
            }
            Some(_) => {
                return err(
                    "token set: epoch",
                    "expected an integer between 0 and 4294967296",
                )
            }
        };
        return Ok(policy);
    }
    compile(Obj::new("", &top.map), tokens)
}

/// A set without its tokens (`version` and `apps` only): what readers need in
/// large-set mode, where tokens are looked up in shared data. `None` if the set is
/// not a JSON object.
pub fn set_meta(set: &[u8]) -> Option<Vec<u8>> {
    let top: Vec<(String, &RawValue)> = serde_json::from_slice::<RawObject>(set).ok()?.0;
    let parts: Vec<String> = top
        .into_iter()
        .filter(|(k, _)| k == "version" || k == "apps")
        .map(|(k, v)| format!("{}:{}", Value::String(k), v.get()))
        .collect();
    Some(format!("{{{}}}", parts.join(",")).into_bytes())
}

/// A document's top level: every key parsed, except `tokens`, kept raw.
struct TopLevel<'a> {
    map: Map<String, Value>,
    raw_tokens: Option<&'a RawValue>,
}

fn top_level<'a>(bytes: &'a [u8], what: &str) -> Result<TopLevel<'a>, ConfigError> {
    if bytes.iter().all(|b| b.is_ascii_whitespace()) {
        return match what {
            "configuration" => err(
                what,
                "empty; s2s-guard needs a JSON object with at least one route or preset",
            ),
            _ => err(what, "empty"),
        };
    }
    if bytes.iter().find(|b| !b.is_ascii_whitespace()) != Some(&b'{') {
        // Not an object: say what it is, if it is JSON at all.
        return match serde_json::from_slice::<Value>(bytes) {
            Ok(_) => err(what, "expected a JSON object"),
            Err(e) => err(what, format!("not valid JSON: {e}")),
        };
    }
    let top: Vec<(String, &RawValue)> = serde_json::from_slice::<RawObject>(bytes)
        .map(|o| o.0)
        .or_else(|e| err(what, format!("not valid JSON: {e}")))?;
    let mut map = Map::new();
    let mut raw_tokens: Option<&RawValue> = None;
    for (k, v) in top {
        if k == "tokens" {
            raw_tokens = Some(v);
            map.insert(k, Value::Null);
            continue;
        }
        let value: Value = serde_json::from_str(v.get())
            .or_else(|e| err(k.clone(), format!("not valid JSON: {e}")))?;
        map.insert(k, value);
    }
    Ok(TopLevel { map, raw_tokens })
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

/// A cursor over one JSON object that remembers which keys were read, so unknown
/// keys can be reported.
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

    pub(crate) fn array(
        &mut self,
        key: &'static str,
    ) -> Result<Option<&'a Vec<Value>>, ConfigError> {
        match self.get(key) {
            None => Ok(None),
            Some(Value::Array(a)) => Ok(Some(a)),
            Some(_) => err(self.at(key), "expected an array"),
        }
    }

    pub(crate) fn strings(
        &mut self,
        key: &'static str,
    ) -> Result<Option<Vec<(String, &'a str)>>, ConfigError> {
        let Some(items) = self.array(key)? else {
            return Ok(None);
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

    pub(crate) fn object(&mut self, key: &'static str) -> Result<Option<Obj<'a>>, ConfigError> {
        let path = self.at(key);
        match self.get(key) {
            None => Ok(None),
            Some(Value::Object(m)) => Ok(Some(Obj::new(&path, m))),
            Some(_) => err(path, "expected an object"),
        }
    }

    /// An integer in `lo..=hi`, checked before any narrowing (the filter runs on
    /// wasm32, where `usize` is 32 bits: 4294967297 must not become 1).
    pub(crate) fn int(
        &mut self,
        key: &'static str,
        lo: u64,
        hi: u64,
        what: &str,
    ) -> Result<Option<u64>, ConfigError> {
        let range = || format!("{what} between {lo} and {hi}");
        match self.get(key) {
            None => Ok(None),
            Some(Value::Number(n)) => match n.as_u64() {
                Some(v) if (lo..=hi).contains(&v) => Ok(Some(v)),
                _ => err(self.at(key), format!("must be {}", range())),
            },
            Some(_) => err(self.at(key), format!("expected {}", range())),
        }
    }

    /// [`Obj::int`] narrowed to `usize` (the range fits 32 bits).
    pub(crate) fn size(
        &mut self,
        key: &'static str,
        lo: u32,
        hi: u32,
        what: &str,
    ) -> Result<Option<usize>, ConfigError> {
        Ok(self
            .int(key, lo.into(), hi.into(), what)?
            .and_then(|v| usize::try_from(v).ok()))
    }

    /// Reports the first key that was never read.
    /// The object's entries (for objects whose keys are names, not fields).
    pub(crate) fn map_iter(&self) -> impl Iterator<Item = (&'a String, &'a Value)> {
        self.map.iter()
    }

    pub(crate) fn finish(&self) -> Result<(), ConfigError> {
        for key in self.map.keys() {
            if !self.seen.contains(&key.as_str()) {
                let mut known: Vec<&str> = self.seen.clone();
                known.sort_unstable();
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

fn compile(mut root: Obj, raw_tokens: Option<&RawValue>) -> Result<Policy, ConfigError> {
    let root = &mut root;
    let mode = match root.str("mode")? {
        None | Some("enforce") => Mode::Enforce,
        Some("flag") => Mode::Flag,
        Some("dry_run") => Mode::DryRun,
        Some(other) => {
            return err(
                "mode",
                format!("unknown mode \"{other}\" (expected enforce, flag or dry_run)"),
            )
        }
    };

    // Profiles: built-in ones, then custom ones.
    let mut profiles = builtin_profiles();
    if let Some(mut custom) = root.object("profiles")? {
        let map = custom.map;
        for (name, v) in map.iter() {
            let path = custom.at(name);
            if profiles.iter().any(|p| p.name == *name) {
                return err(path, "redefines a built-in profile (adjust, swaarm, jitsu)");
            }
            profiles.push(custom_profile(&path, name, v)?);
        }
        // Every key is a profile name: mark them read.
        custom.seen.extend(map.keys().map(String::as_str));
        custom.finish()?;
    }
    let profile_index = |path: &str, name: &str| -> Result<usize, ConfigError> {
        match profiles.iter().position(|p| p.name == name) {
            Some(i) => Ok(i),
            None => err(path, format!("unknown profile \"{name}\"")),
        }
    };

    let paths = compile_paths(root)?;

    // Routes: presets first; a user route with the same path and match replaces one.
    let mut routes: Vec<Route> = Vec::new();
    if let Some(presets) = root.strings("presets")? {
        for (path, name) in presets {
            let preset = match name {
                "adjust" => adjust_routes(),
                "adjust_sdk" => adjust_sdk_routes(),
                "swaarm" => swaarm_routes(),
                "jitsu" => jitsu_routes(),
                other => {
                    return err(
                        path,
                        format!(
                        "unknown preset \"{other}\" (expected adjust, adjust_sdk, swaarm or jitsu)"
                    ),
                    )
                }
            };
            for r in preset {
                if routes.iter().any(|e| e.path == r.path) {
                    return err(path, format!("preset \"{name}\" repeats route {}", r.name));
                }
                let profile = profile_index(&path, preset_profile(name))?;
                // Each system's routes are its own realm: its tokens open only them.
                let realm = preset_profile(name).to_string();
                routes.push(Route {
                    profile,
                    realm,
                    ..r
                });
            }
        }
    }
    let preset_count = routes.len();
    if let Some(items) = root.array("routes")? {
        for (i, v) in items.iter().enumerate() {
            let path = format!("routes[{i}]");
            let mut o = element(&path, v)?;
            let route = compile_route(&mut o, &profile_index, &paths)?;
            o.finish()?;
            if let Some(dup) = routes[preset_count..]
                .iter()
                .position(|r| r.path == route.path && r.methods == route.methods)
            {
                return err(path, format!("same path and methods as routes[{dup}]"));
            }
            match routes[..preset_count]
                .iter()
                .position(|r| r.path == route.path)
            {
                Some(p) => routes[p] = route,
                None => routes.push(route),
            }
        }
    }
    if routes.is_empty() {
        return err("routes", "no routes: configure routes or name a preset");
    }
    let mut routes: Vec<Route> = routes.into_iter().map(Route::finish).collect();
    // A credential parameter another route of the realm reads is a decision field
    // everywhere in the realm: a collector with one credential reader may take it.
    let realm_names: Vec<(String, Vec<u8>)> = routes
        .iter()
        .flat_map(|r| {
            r.sources.iter().filter_map(move |s| match s {
                Source::Query(n) | Source::Form(n) => Some((r.realm.clone(), n.clone())),
                _ => None,
            })
        })
        .collect();
    for r in &mut routes {
        let names: Vec<Vec<u8>> = realm_names
            .iter()
            .filter(|(realm, _)| *realm == r.realm)
            .map(|(_, n)| n.clone())
            .collect();
        r.fields = std::mem::take(&mut r.fields).with_foreign(&names);
    }

    let reject_unknown_paths = match root.str("unknown_paths")? {
        None | Some("pass") => false,
        Some("reject") => true,
        Some(other) => {
            return err(
                "unknown_paths",
                format!("unknown value \"{other}\" (expected pass or reject)"),
            )
        }
    };
    let unknown_profile = match root.str("unknown_paths_profile")? {
        Some(name) => profile_index("unknown_paths_profile", name)?,
        None => routes[0].profile,
    };

    // Realms: every route's; tokens name theirs, or take the default.
    let mut realms: Vec<String> = Vec::new();
    for r in &routes {
        if !realms.contains(&r.realm) {
            realms.push(r.realm.clone());
        }
    }
    realms.sort();
    let default_realm = match root.str("default_realm")? {
        Some(r) if realms.iter().any(|x| x == r) => Some(r.to_string()),
        Some(r) => {
            return err(
                "default_realm",
                format!(
                    "unknown realm \"{r}\" (the routes' realms: {})",
                    realms.join(", ")
                ),
            )
        }
        None if realms.len() == 1 => Some(realms[0].clone()),
        None => None,
    };
    let realm_ctx = Realms {
        interned: realms
            .iter()
            .map(|r| std::rc::Rc::from(r.as_str()))
            .collect(),
        known: realms.clone(),
        default: default_realm,
    };
    root.seen.push("tokens");
    let tokens = compile_tokens(raw_tokens, &realm_ctx)?;
    let apps = compile_apps(root)?;
    let signature_reply = match root.object("signature_reply")? {
        None => text(401, "Request signature rejected"),
        Some(mut r) => {
            // A rejection never answers 2xx or 3xx.
            let status = match r.int("status", 400, 599, "an HTTP error status")? {
                Some(s) => s as u16,
                None => return err(r.at("status"), "is required"),
            };
            let reply = Reply {
                status,
                body: r.str("body")?.unwrap_or("").as_bytes().to_vec(),
                content_type: r
                    .str("content_type")?
                    .unwrap_or("text/plain; charset=utf-8")
                    .to_string(),
            };
            r.finish()?;
            reply
        }
    };

    let headers = match root.object("upstream_headers")? {
        None => default_headers(),
        Some(mut o) => {
            let d = default_headers();
            let h = UpstreamHeaders {
                token_id: header_name(&mut o, "token_id", d.token_id)?,
                app: header_name(&mut o, "app", d.app)?,
                reason: header_name(&mut o, "reason", d.reason)?,
            };
            o.finish()?;
            h
        }
    };
    let strip_credential = root.bool("strip_credential", true)?;
    let hold_headers_for_body = root.bool("hold_headers_for_body", false)?;
    let origin_mismatch = match root.str("origin_mismatch")? {
        None | Some("reject") => OriginMismatch::Reject,
        Some("omit_cors") => OriginMismatch::OmitCors,
        Some(other) => {
            return err(
                "origin_mismatch",
                format!("unknown value \"{other}\" (expected reject or omit_cors)"),
            )
        }
    };
    let max_body_bytes = root
        .size(
            "max_body_bytes",
            1,
            MAX_BODY_CEILING as u32,
            "a size in bytes (at most Envoy's default buffer limit)",
        )?
        .unwrap_or(DEFAULT_MAX_BODY_BYTES);
    let source = match root.object("token_source")? {
        None => None,
        Some(mut o) => {
            let src = crate::distribution::compile_source(&mut o)?;
            o.finish()?;
            Some(src)
        }
    };
    root.seen.push("$schema");
    root.finish()?;
    let app_names_folded = apps
        .settings
        .keys()
        .chain(apps.signatures.keys())
        .map(|a| a.to_ascii_lowercase())
        .collect();

    Ok(Policy {
        mode,
        paths,
        reject_unknown_paths,
        unknown_profile,
        routes,
        tokens,
        apps: apps.settings,
        app_authentication_default: apps.default,
        profiles,
        headers,
        strip_credential,
        origin_mismatch,
        max_body_bytes,
        hold_headers_for_body,
        warnings: signature_warnings(&apps.signatures),
        app_names_folded,
        signatures: apps.signatures,
        signature_reply,
        stat_names: apps.stat_names,
        source,
        set_version: None,
        set_epoch: 0,
    })
}

/// `path_normalization`: each step of [`PathOptions`], on unless switched off.
fn compile_paths(root: &mut Obj) -> Result<PathOptions, ConfigError> {
    let d = PathOptions::default();
    let Some(mut o) = root.object("path_normalization")? else {
        return Ok(d);
    };
    let p = PathOptions {
        decode_unreserved: o.bool("decode_unreserved", d.decode_unreserved)?,
        remove_dot_segments: o.bool("remove_dot_segments", d.remove_dot_segments)?,
        merge_slashes: o.bool("merge_slashes", d.merge_slashes)?,
        ignore_trailing_slash: o.bool("ignore_trailing_slash", d.ignore_trailing_slash)?,
        fold_case: o.bool("fold_case", d.fold_case)?,
    };
    o.finish()?;
    Ok(p)
}

fn default_headers() -> UpstreamHeaders {
    UpstreamHeaders {
        token_id: "x-s2s-guard-token-id".into(),
        app: "x-s2s-guard-app".into(),
        reason: "x-s2s-guard-rejection".into(),
    }
}

fn header_name(o: &mut Obj, key: &'static str, default: String) -> Result<String, ConfigError> {
    match o.str(key)? {
        None => Ok(default),
        Some(h) if is_header_name(h) => Ok(h.to_ascii_lowercase()),
        Some(_) => err(o.at(key), "not a valid HTTP header name"),
    }
}

pub(crate) fn is_header_name(h: &str) -> bool {
    !h.is_empty()
        && h.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}

fn compile_route(
    o: &mut Obj,
    profile_index: &dyn Fn(&str, &str) -> Result<usize, ConfigError>,
    paths: &PathOptions,
) -> Result<Route, ConfigError> {
    let path_text = o.required_str("path")?;
    if !path_text.starts_with('/') {
        return err(o.at("path"), "must start with /");
    }
    if path_text.contains('?') {
        return err(o.at("path"), "must not contain a query");
    }
    // Requests are routed by their canonical path: a route path must be one.
    match crate::path::canonical(path_text.as_bytes(), paths) {
        Ok(c) if c == path_text.as_bytes() => {}
        Ok(c) => {
            return err(
                o.at("path"),
                format!(
                    "not canonical: requests for it are read as \"{}\" (write that)",
                    String::from_utf8_lossy(&c)
                ),
            )
        }
        Err(e) => {
            return err(
                o.at("path"),
                format!("cannot be made canonical ({})", e.name()),
            )
        }
    }
    let path = match o.str("match")? {
        None | Some("exact") => PathMatch::Exact(path_text.as_bytes().to_vec()),
        Some("prefix") => PathMatch::Prefix(path_text.as_bytes().to_vec()),
        Some(other) => {
            return err(
                o.at("match"),
                format!("unknown match \"{other}\" (expected exact or prefix)"),
            )
        }
    };
    let name = o.str("name")?.unwrap_or(path_text).to_string();
    let mut methods = Vec::new();
    for (p, m) in o.strings("methods")?.unwrap_or_default() {
        if m.is_empty() || !m.bytes().all(|b| b.is_ascii_alphabetic()) {
            return err(p, format!("not an HTTP method: \"{m}\""));
        }
        methods.push(m.to_ascii_uppercase().into_bytes());
    }
    let scope = match o.str("scope")? {
        None => None,
        Some(s) => Some(parse_scope(&o.at("scope"), s)?),
    };
    let (mut accept_server, mut accept_client) = (true, false);
    if let Some(kinds) = o.strings("token_kinds")? {
        if kinds.is_empty() {
            return err(o.at("token_kinds"), "must name at least one kind");
        }
        (accept_server, accept_client) = (false, false);
        for (p, k) in kinds {
            match k {
                "server" => accept_server = true,
                "client" => accept_client = true,
                other => {
                    return err(
                        p,
                        format!("unknown token kind \"{other}\" (expected server or client)"),
                    )
                }
            }
        }
    }
    let profile_name = match o.str("profile")? {
        Some(p) => p,
        None => {
            return err(
                o.at("profile"),
                "is required (adjust, swaarm, jitsu or a custom profile)",
            )
        }
    };
    let profile = profile_index(&o.at("profile"), profile_name)?;
    let mut required = Vec::new();
    if let Some(items) = o.array("required_params")? {
        let base = o.at("required_params");
        for (i, v) in items.iter().enumerate() {
            let p = format!("{base}[{i}]");
            required.push(match v {
                Value::String(s) if !s.is_empty() => RequiredParam {
                    name: s.as_bytes().to_vec(),
                    allow_empty: false,
                },
                Value::Object(m) => {
                    let mut r = Obj::new(&p, m);
                    let name = r.required_str("name")?.as_bytes().to_vec();
                    let allow_empty = r.bool("allow_empty", false)?;
                    r.finish()?;
                    RequiredParam { name, allow_empty }
                }
                _ => {
                    return err(
                        p,
                        "expected a parameter name or {\"name\", \"allow_empty\"}",
                    )
                }
            });
        }
    }
    let app_param = o.str("app_param")?.map(|s| s.as_bytes().to_vec());
    let sources = match o.strings("credentials")? {
        None => vec![Source::Bearer],
        Some(list) if list.is_empty() => {
            return err(o.at("credentials"), "must name at least one source")
        }
        Some(list) => list
            .into_iter()
            .map(|(p, s)| parse_source(&p, s))
            .collect::<Result<Vec<_>, _>>()?,
    };
    let per_app = o.bool("per_app_enforcement", false)?;
    if per_app && app_param.is_none() {
        return err(
            o.at("per_app_enforcement"),
            "needs app_param (where the request names its app)",
        );
    }
    let cors = o.bool("cors", false)?;
    let checks = match o.str("checks")? {
        None | Some("token") => Checks::Token,
        Some("signature") => Checks::Signature,
        Some("token_and_signature") => Checks::TokenAndSignature,
        Some("s2s_token_else_signature") => Checks::S2sTokenElseSignature,
        Some(other) => {
            return err(
                o.at("checks"),
                format!(
                    "unknown checks \"{other}\" (expected token, signature, token_and_signature \
                     or s2s_token_else_signature)"
                ),
            )
        }
    };
    if checks != Checks::Token && app_param.is_none() {
        return err(
            o.at("checks"),
            "signature checks need app_param (where the request names its app)",
        );
    }
    let body = match o.str("body")? {
        None | Some("form") => BodyRule::Form,
        Some("ignore") => BodyRule::Ignore,
        Some(other) => {
            return err(
                o.at("body"),
                format!("unknown body \"{other}\" (expected form or ignore)"),
            )
        }
    };
    let mut single_params = Vec::new();
    for (p, n) in o.strings("single_params")?.unwrap_or_default() {
        if n.is_empty() {
            return err(p, "must not be empty");
        }
        single_params.push(n.as_bytes().to_vec());
    }
    let realm = match o.str("realm")? {
        None => "default".to_string(),
        Some(r) if valid_realm(r) => r.to_string(),
        Some(r) => {
            return err(
                o.at("realm"),
                format!("not a realm name: \"{r}\" (letters, digits, - and _)"),
            )
        }
    };
    Ok(Route {
        checks,
        body,
        single_params,
        realm,
        fields: Default::default(),
        name,
        path,
        methods,
        scope,
        accept_server,
        accept_client,
        profile,
        required,
        app_param,
        sources,
        per_app,
        cors,
    })
}

fn valid_realm(r: &str) -> bool {
    !r.is_empty()
        && r.len() <= 64
        && r.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
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

fn parse_source(path: &str, s: &str) -> Result<Source, ConfigError> {
    let (kind, arg) = match s.split_once(':') {
        Some((k, a)) => (k, Some(a)),
        None => (s, None),
    };
    let arg_ok = |a: Option<&str>| -> Result<String, ConfigError> {
        match a {
            Some(a) if !a.is_empty() => Ok(a.to_string()),
            _ => err(path, format!("\"{kind}:\" needs a name after the colon")),
        }
    };
    Ok(match (kind, arg) {
        ("bearer", None) => Source::Bearer,
        ("authorization", None) => Source::Authorization,
        ("basic", None) => Source::Basic,
        ("header", a) => {
            let h = arg_ok(a)?;
            if !is_header_name(&h) {
                return err(path, format!("not a valid HTTP header name: \"{h}\""));
            }
            let h = h.to_ascii_lowercase();
            if h == "authorization" {
                return err(
                    path,
                    "use bearer, authorization or basic for the Authorization header",
                );
            }
            Source::Header(h)
        }
        ("query", a) => Source::Query(arg_ok(a)?.into_bytes()),
        ("query_prefix", a) => Source::QueryPrefix(arg_ok(a)?.into_bytes()),
        ("form", a) => Source::Form(arg_ok(a)?.into_bytes()),
        _ => {
            return err(
                path,
                format!(
                    "unknown credential source \"{s}\" (expected bearer, authorization, basic, \
                     header:<name>, query:<name>, query_prefix:<prefix> or form:<name>)"
                ),
            )
        }
    })
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

fn parse_time(o: &mut Obj, key: &'static str) -> Result<Option<u64>, ConfigError> {
    match o.get(key) {
        None => Ok(None),
        Some(Value::Number(n)) => match n.as_u64() {
            Some(v) => Ok(Some(v)),
            None => err(o.at(key), "expected Unix seconds or an RFC 3339 time"),
        },
        Some(Value::String(s)) => match humantime::parse_rfc3339(s) {
            Ok(t) => Ok(Some(
                t.duration_since(std::time::UNIX_EPOCH)
                    .map_or(0, |d| d.as_secs()),
            )),
            Err(_) => err(
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
        let v = serde_json::json!([secret]);
        compile_token(0, &v[0], &mut store, realms)?;
        return store.finish(tag).map_err(store_error);
    }
    // One token object per `{` (a cheap count, exact for the usual shapes): a
    // million tokens without doubling vectors past what they need.
    let estimate = raw.get().bytes().filter(|&b| b == b'{').count();
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
        (Some(c), None) if !c.is_empty() => Some(Some(token::digest(c.as_bytes()))),
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
    if f.id.is_empty() || f.all_apps == Some(true) && f.app.is_some() {
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
    let mut scopes = Scopes::NONE;
    for s in f.scopes.iter().flatten() {
        scopes.insert(Scope::parse(s)?);
    }
    if let (Some(a), Some(b)) = (f.not_before, f.expires_at) {
        if b <= a {
            return None;
        }
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
        let mut scopes = Scopes::NONE;
        for (p, s) in o.strings("scopes")?.unwrap_or_default() {
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

/// Apps: the per-app S2S switch, and SDK signature settings with templates.
struct Apps {
    settings: HashMap<String, AppSettings>,
    default: bool,
    signatures: HashMap<String, SignatureSettings>,
    stat_names: Vec<String>,
}

/// What an operator should hear about a configuration that is valid but weakens
/// enforcement: an app that enforces signatures yet passes shapes the filter
/// cannot verify. Sorted by app.
fn signature_warnings(sigs: &HashMap<String, SignatureSettings>) -> Vec<String> {
    let mut out: Vec<String> = sigs
        .iter()
        .filter(|(_, s)| {
            s.enforce_signature && s.later_sdk != LaterSdk::Reject && !s.signing_ids.is_empty()
        })
        .map(|(app, s)| {
            format!(
                "apps.{app}.signature: enforce_signature is on, but unverifiable signatures of signing ids {} are {} (later_sdk)",
                s.signing_ids.join(", "),
                if s.later_sdk == LaterSdk::Pass { "passed" } else { "flagged and forwarded" }
            )
        })
        .collect();
    out.sort();
    out
}

/// Apps beyond this many get no statistics series of their own.
pub const DEFAULT_MAX_STATS_APPS: usize = 100;

fn compile_apps(root: &mut Obj) -> Result<Apps, ConfigError> {
    let default = root.bool("app_authentication_default", false)?;
    let max_stats_apps = root
        .size("max_stats_apps", 0, 100_000, "a number of apps")?
        .unwrap_or(DEFAULT_MAX_STATS_APPS);
    let mut apps = HashMap::new();
    let mut raw_sigs: Vec<(String, String, Option<String>, &Value)> = Vec::new();
    if let Some(mut o) = root.object("apps")? {
        let map = o.map;
        for (app, v) in map.iter() {
            let path = o.at(app);
            let mut a = element(&path, v)?;
            let template = a.str("template")?.map(str::to_string);
            if let Some(sig) = a.get("signature") {
                raw_sigs.push((app.clone(), a.at("signature"), template.clone(), sig));
            } else if let Some(t) = &template {
                raw_sigs.push((
                    app.clone(),
                    a.at("signature"),
                    Some(t.clone()),
                    &Value::Null,
                ));
            }
            let authentication = a.bool("authentication", false)?;
            let authentication_scopes = match a.strings("authentication_scopes")? {
                None => None,
                Some(list) => {
                    let mut s = Scopes::NONE;
                    for (p, name) in list {
                        s.insert(parse_scope(&p, name)?);
                    }
                    Some(s)
                }
            };
            a.finish()?;
            apps.insert(
                app.clone(),
                AppSettings {
                    authentication,
                    authentication_scopes,
                },
            );
        }
        o.seen.extend(map.keys().map(String::as_str));
        o.finish()?;
    }
    let (signatures, stat_names) = compile_signatures(&raw_sigs, max_stats_apps)?;
    Ok(Apps {
        settings: apps,
        default,
        signatures,
        stat_names,
    })
}

/// One app's `signature` object, before its template is applied.
/// Oldest SDK versions accepted: (android, ios), each (major, minor).
type MinSdk = (Option<(u32, u32)>, Option<(u32, u32)>);

fn sdk_version(m: &mut Obj, key: &'static str) -> Result<Option<(u32, u32)>, ConfigError> {
    let Some(v) = m.str(key)? else {
        return Ok(None);
    };
    let ok = |s: &str| !s.is_empty() && s.len() <= 4 && s.bytes().all(|c| c.is_ascii_digit());
    match v.split_once('.') {
        Some((a, b)) if ok(a) && ok(b) => match (a.parse(), b.parse()) {
            (Ok(a), Ok(b)) => Ok(Some((a, b))),
            _ => err(
                m.at(key),
                format!("expected a version like \"4.18\", not \"{v}\""),
            ),
        },
        _ => err(
            m.at(key),
            format!("expected a version like \"4.18\", not \"{v}\""),
        ),
    }
}

#[derive(Default)]
struct RawSignature {
    enforce_signature: Option<bool>,
    platform: Option<AppPlatform>,
    hashes: Vec<String>,
    secrets: Vec<AppSecret>,
    max_age: Option<u64>,
    max_future: Option<u64>,
    later_sdk: Option<LaterSdk>,
    signing_ids: Option<Vec<String>>,
    require_device_id: Option<bool>,
    min_sdk: Option<MinSdk>,
    replay_capacity: Option<usize>,
    replay_full_rejects: Option<bool>,
    replay_enabled: Option<bool>,
}

/// Longest duration accepted anywhere (ten years): beyond it, arithmetic on
/// times could overflow and no window is meaningful.
pub const MAX_DURATION_S: u64 = 10 * 365 * 86_400;

pub(crate) fn duration(o: &mut Obj, key: &'static str) -> Result<Option<u64>, ConfigError> {
    let too_long = |o: &Obj| {
        err(
            o.at(key),
            format!("must be at most {MAX_DURATION_S} seconds (ten years)"),
        )
    };
    match o.get(key) {
        None => Ok(None),
        Some(Value::Number(n)) => match n.as_u64() {
            Some(v) if v > MAX_DURATION_S => too_long(o),
            Some(v) => Ok(Some(v)),
            None => err(o.at(key), "expected seconds or a duration like \"7d\""),
        },
        Some(Value::String(s)) => match humantime::parse_duration(s) {
            Ok(d) if d.as_secs() > MAX_DURATION_S => too_long(o),
            Ok(d) => Ok(Some(d.as_secs())),
            Err(_) => err(
                o.at(key),
                format!("not a duration (e.g. 30d, 12h, 300s): \"{s}\""),
            ),
        },
        Some(_) => err(o.at(key), "expected seconds or a duration like \"7d\""),
    }
}

/// `AA:BB:...` with 20 (SHA-1) or 32 (SHA-256) bytes.
fn valid_cert_hash(h: &str) -> bool {
    let parts: Vec<&str> = h.split(':').collect();
    (parts.len() == 20 || parts.len() == 32)
        && parts
            .iter()
            .all(|p| p.len() == 2 && p.bytes().all(|b| b.is_ascii_hexdigit()))
}

fn parse_signature(path: &str, v: &Value) -> Result<RawSignature, ConfigError> {
    let mut r = RawSignature::default();
    if v.is_null() {
        return Ok(r);
    }
    let mut o = element(path, v)?;
    r.enforce_signature = match o.get("enforce_signature") {
        None => None,
        Some(Value::Bool(b)) => Some(*b),
        Some(_) => return err(o.at("enforce_signature"), "expected true or false"),
    };
    r.platform = match o.str("platform")? {
        None => None,
        Some("ios") => Some(AppPlatform::Ios),
        Some("android") => Some(AppPlatform::Android),
        Some("both") => Some(AppPlatform::Both),
        Some(other) => {
            return err(
                o.at("platform"),
                format!("unknown platform \"{other}\" (expected ios, android or both)"),
            )
        }
    };
    let hashes: Vec<(String, String)> = match o.get("android_signature_hash") {
        None => Vec::new(),
        // A comma-separated string, as the App Automation API accepts.
        Some(Value::String(s)) => s
            .split(',')
            .map(|h| (o.at("android_signature_hash"), h.trim().to_string()))
            .collect(),
        Some(Value::Array(_)) => o
            .strings("android_signature_hash")?
            .unwrap_or_default()
            .into_iter()
            .map(|(p, h)| (p, h.trim().to_string()))
            .collect(),
        Some(_) => {
            return err(
                o.at("android_signature_hash"),
                "expected a list or a comma-separated string",
            )
        }
    };
    for (p, h) in hashes {
        if !valid_cert_hash(&h) {
            return err(
                p,
                format!("not a certificate fingerprint (AA:BB:... with 20 or 32 bytes): \"{h}\""),
            );
        }
        let h = h.to_ascii_uppercase();
        if !r.hashes.contains(&h) {
            r.hashes.push(h);
        }
    }
    if let Some(items) = o.array("secrets")? {
        let base = o.at("secrets");
        for (i, v) in items.iter().enumerate() {
            let p = format!("{base}[{i}]");
            let mut s = element(&p, v)?;
            let id = match s.int("id", 1, u32::MAX.into(), "a Secret ID")? {
                Some(n) => n as u32,
                None => return err(s.at("id"), "is required"),
            };
            let info = s.array("info")?;
            let joined = s.str("secret")?;
            let secret = match (info, joined) {
                (Some(_), Some(_)) => return err(p, "give either info or secret, not both"),
                (Some(list), None) => {
                    if list.len() != 4 {
                        return err(s.at("info"), "expected the four integers info1..info4");
                    }
                    let mut joined = String::new();
                    for (j, n) in list.iter().enumerate() {
                        match n.as_u64() {
                            Some(n) => joined.push_str(&n.to_string()),
                            None => {
                                return err(
                                    format!("{}[{j}]", s.at("info")),
                                    "expected a non-negative integer",
                                )
                            }
                        }
                    }
                    joined.into_bytes()
                }
                (None, Some(j)) if !j.is_empty() && j.bytes().all(|b| b.is_ascii_digit()) => {
                    j.as_bytes().to_vec()
                }
                (None, Some(_)) => {
                    return err(
                        s.at("secret"),
                        "expected the joined decimal digits of info1..info4",
                    )
                }
                (None, None) => return err(p, "has no secret (give info or secret)"),
            };
            let name = s.str("name")?.map(str::to_string);
            let active = s.bool("active", true)?;
            s.finish()?;
            if r.secrets.iter().any(|x| x.id == id) {
                return err(format!("{p}.id"), format!("duplicate Secret ID {id}"));
            }
            r.secrets.push(AppSecret {
                id,
                replay_tag: replay::secret_tag(id, &secret),
                secret,
                active,
                name,
                // Set once every app using the secret is known.
                replay_window: 0,
                replay_per_key: 1,
            });
        }
    }
    r.max_age = duration(&mut o, "max_age")?;
    r.max_future = duration(&mut o, "max_future")?;
    r.later_sdk = match o.str("later_sdk")? {
        None => None,
        Some("pass") => Some(LaterSdk::Pass),
        Some("flag") => Some(LaterSdk::Flag),
        Some("reject") => Some(LaterSdk::Reject),
        Some(other) => {
            return err(
                o.at("later_sdk"),
                format!("unknown policy \"{other}\" (expected pass, flag or reject)"),
            )
        }
    };
    r.signing_ids = o
        .strings("signing_ids")?
        .map(|l| l.into_iter().map(|(_, s)| s.to_string()).collect());
    r.require_device_id = match o.get("require_device_id") {
        None => None,
        Some(Value::Bool(b)) => Some(*b),
        Some(_) => return err(o.at("require_device_id"), "expected true or false"),
    };
    if let Some(mut m) = o.object("min_sdk")? {
        let android = sdk_version(&mut m, "android")?;
        let ios = sdk_version(&mut m, "ios")?;
        m.finish()?;
        r.min_sdk = Some((android, ios));
    }
    if let Some(mut rp) = o.object("replay")? {
        r.replay_enabled = match rp.get("enabled") {
            None => None,
            Some(Value::Bool(b)) => Some(*b),
            Some(_) => return err(rp.at("enabled"), "expected true or false"),
        };
        r.replay_capacity = rp.size("capacity", 1, 10_000_000, "a number of signatures")?;
        r.replay_full_rejects = match rp.str("when_full")? {
            None => None,
            Some("reject") => Some(true),
            Some("accept") => Some(false),
            Some(other) => {
                return err(
                    rp.at("when_full"),
                    format!("unknown value \"{other}\" (expected reject or accept)"),
                )
            }
        };
        rp.finish()?;
    }
    o.finish()?;
    Ok(r)
}

/// Default freshness window: offline queues hold events for days.
pub const DEFAULT_MAX_AGE: u64 = 30 * 86400;
pub const DEFAULT_MAX_FUTURE: u64 = 300;
pub const DEFAULT_REPLAY_CAPACITY: usize = 100_000;

fn metric_safe(s: &str) -> String {
    s.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' || c == '-' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

fn compile_signatures(
    raw: &[(String, String, Option<String>, &Value)],
    max_stats_apps: usize,
) -> Result<(HashMap<String, SignatureSettings>, Vec<String>), ConfigError> {
    let parsed: HashMap<&str, (RawSignature, Option<&String>)> = raw
        .iter()
        .map(|(app, path, t, v)| Ok((app.as_str(), (parse_signature(path, v)?, t.as_ref()))))
        .collect::<Result<_, ConfigError>>()?;
    let mut apps: Vec<&(String, String, Option<String>, &Value)> = raw.iter().collect();
    apps.sort_by(|a, b| a.0.cmp(&b.0));
    let mut out = HashMap::new();
    // The shared "other" block comes first.
    let mut names: Vec<String> = ["accepted", "rejected", "invalid_secret", "no_secret"]
        .iter()
        .map(|s| format!("s2s_guard.sdk.app.other.{s}"))
        .collect();
    for (n, (app, path, template, _)) in apps.into_iter().enumerate() {
        let (own, _) = &parsed[app.as_str()];
        let base: Option<&RawSignature> = match template {
            None => None,
            Some(t) => match parsed.get(t.as_str()) {
                Some((_, Some(_))) => {
                    return err(
                        path.replace(".signature", ".template"),
                        format!("template \"{t}\" has a template itself"),
                    )
                }
                Some((r, None)) => Some(r),
                None => {
                    return err(
                        path.replace(".signature", ".template"),
                        format!(
                            "unknown template app \"{t}\" (it needs a signature object in apps)"
                        ),
                    )
                }
            },
        };
        // Overrides replace, except hashes (added) and secrets (the template's active
        // ones are added; the app's own Secret IDs win).
        let pick =
            |f: fn(&RawSignature) -> Option<u64>, d: u64| f(own).or(base.and_then(f)).unwrap_or(d);
        let mut secrets = own.secrets.clone();
        let mut hashes = base.map(|b| b.hashes.clone()).unwrap_or_default();
        for h in &own.hashes {
            if !hashes.contains(h) {
                hashes.push(h.clone());
            }
        }
        if let Some(b) = base {
            for s in b.secrets.iter().filter(|s| s.active) {
                if !secrets.iter().any(|x| x.id == s.id) {
                    secrets.push(s.clone());
                }
            }
        }
        let capacity = own
            .replay_capacity
            .or(base.and_then(|b| b.replay_capacity))
            .unwrap_or(DEFAULT_REPLAY_CAPACITY);
        let max_age = pick(|r| r.max_age, DEFAULT_MAX_AGE);
        let own_series = n < max_stats_apps;
        let stats_base = names.len();
        if own_series {
            let a = metric_safe(app);
            for s in &secrets {
                names.push(format!("s2s_guard.sdk.app.{a}.secret.{}.accepted", s.id));
                names.push(format!("s2s_guard.sdk.app.{a}.secret.{}.rejected", s.id));
            }
            names.push(format!("s2s_guard.sdk.app.{a}.invalid_secret"));
            names.push(format!("s2s_guard.sdk.app.{a}.no_secret"));
        }
        out.insert(
            app.clone(),
            SignatureSettings {
                enforce_signature: own
                    .enforce_signature
                    .or(base.and_then(|b| b.enforce_signature))
                    .unwrap_or(false),
                platform: own
                    .platform
                    .or(base.and_then(|b| b.platform))
                    .unwrap_or(AppPlatform::Both),
                android_signature_hashes: hashes,
                secrets,
                max_age,
                max_future: pick(|r| r.max_future, DEFAULT_MAX_FUTURE),
                later_sdk: own
                    .later_sdk
                    .or(base.and_then(|b| b.later_sdk))
                    .unwrap_or(LaterSdk::Pass),
                signing_ids: own
                    .signing_ids
                    .clone()
                    .or(base.and_then(|b| b.signing_ids.clone()))
                    .unwrap_or_default(),
                require_device_id: own
                    .require_device_id
                    .or(base.and_then(|b| b.require_device_id))
                    .unwrap_or(false),
                min_sdk_android: own
                    .min_sdk
                    .or(base.and_then(|b| b.min_sdk))
                    .and_then(|m| m.0),
                min_sdk_ios: own
                    .min_sdk
                    .or(base.and_then(|b| b.min_sdk))
                    .and_then(|m| m.1),
                replay_window: max_age + pick(|r| r.max_future, DEFAULT_MAX_FUTURE),
                replay_capacity: capacity,
                replay_enabled: own
                    .replay_enabled
                    .or(base.and_then(|b| b.replay_enabled))
                    .unwrap_or(true),
                // Accept (counted) when full: only genuine traffic or the holder of
                // the secret fills it, and neither may deny genuine signatures.
                replay_full_rejects: own
                    .replay_full_rejects
                    .or(base.and_then(|b| b.replay_full_rejects))
                    .unwrap_or(false),
                stats_base,
                own_series,
            },
        );
    }
    // The replay memory is per App Secret: every app using one secret shares it,
    // with the longest window and the largest capacity among them.
    let mut shared: HashMap<String, (u64, usize)> = HashMap::new();
    for s in out.values().filter(|s| s.replay_enabled) {
        for sec in &s.secrets {
            let e = shared.entry(sec.replay_tag.clone()).or_insert((0, 0));
            e.0 = e.0.max(s.replay_window);
            e.1 = e.1.max(s.replay_capacity);
        }
    }
    for s in out.values_mut() {
        for sec in &mut s.secrets {
            let (window, capacity) = shared
                .get(&sec.replay_tag)
                .copied()
                .unwrap_or((s.replay_window, s.replay_capacity));
            sec.replay_window = window;
            sec.replay_per_key = replay::per_key(capacity);
        }
    }
    Ok((out, names))
}

// ---- profiles -------------------------------------------------------------------

fn text(status: u16, body: &str) -> Reply {
    Reply {
        status,
        body: body.as_bytes().to_vec(),
        content_type: "text/plain; charset=utf-8".into(),
    }
}

fn json(status: u16, message: &str) -> Reply {
    Reply {
        status,
        body: serde_json::json!({ "message": message })
            .to_string()
            .into_bytes(),
        content_type: "application/json".into(),
    }
}

fn profile(name: &str, f: impl Fn(Outcome) -> Reply) -> Profile {
    Profile {
        name: name.into(),
        replies: Outcome::ALL.into_iter().map(f).collect(),
    }
}

/// The three reference systems' answers.
fn builtin_profiles() -> Vec<Profile> {
    use Outcome::*;
    let adjust = profile("adjust", |o| match o {
        Missing => text(202, "Missing authentication token"),
        Wrong | Inactive | Expired | WrongKind | OriginDenied => {
            text(202, "Wrong authentication token")
        }
        Ambiguous => text(400, "Ambiguous request"),
        MethodNotAllowed => text(405, "Method not allowed"),
        UnsupportedMediaType => text(415, "Unsupported request body"),
        InsufficientScope => text(401, "Session failed"),
        BadRequest => text(400, "Bad request"),
        UnknownEndpoint => text(404, "Not found"),
        BodyTooLarge => text(413, "Request body too large"),
        Allowed => text(200, "OK"),
    });
    let swaarm = profile("swaarm", |o| match o {
        BadRequest => text(400, "The request is missing a required parameter"),
        Ambiguous => text(400, "Ambiguous request"),
        MethodNotAllowed => text(405, "Method not allowed"),
        UnsupportedMediaType => text(415, "Unsupported request body"),
        UnknownEndpoint => text(404, "The endpoint being called is incorrect"),
        BodyTooLarge => text(413, "Request body too large"),
        OriginDenied => text(403, "Origin not allowed"),
        Allowed => text(200, "OK"),
        _ => text(401, "The s2s token is invalid"),
    });
    let jitsu = profile("jitsu", |o| match o {
        Missing => json(401, "The token is not found"),
        WrongKind => json(
            401,
            "The token is a client secret: server endpoints require a server secret",
        ),
        InsufficientScope => json(401, "The token is not allowed on this endpoint"),
        OriginDenied => json(403, "The request origin is not allowed for this token"),
        BadRequest => json(400, "The request is missing a required parameter"),
        Ambiguous => json(400, "Ambiguous request"),
        MethodNotAllowed => json(405, "Method not allowed"),
        UnsupportedMediaType => json(415, "Unsupported request body"),
        UnknownEndpoint => json(404, "Not found"),
        BodyTooLarge => json(413, "Request body too large"),
        Allowed => json(200, "ok"),
        _ => json(401, "The token isn't valid"),
    });
    vec![adjust, swaarm, jitsu]
}

fn custom_profile(path: &str, name: &str, v: &Value) -> Result<Profile, ConfigError> {
    let Value::Object(m) = v else {
        return err(path, "expected an object of outcome: {status, body}");
    };
    let mut replies: Vec<Option<Reply>> = vec![None; Outcome::ALL.len()];
    let mut default: Option<Reply> = None;
    for (key, rv) in m {
        let p = format!("{path}.{key}");
        let outcome =
            if key == "default" {
                None
            } else {
                match Outcome::parse(key) {
                    Some(Outcome::Allowed) | None => return err(
                        p,
                        "unknown outcome (expected default, missing, wrong, inactive, expired, \
                         insufficient_scope, wrong_kind, origin_denied, bad_request, \
                         unknown_endpoint, ambiguous, body_too_large, method_not_allowed or \
                         unsupported_media_type)",
                    ),
                    Some(o) => Some(o),
                }
            };
        let mut r = element(&p, rv)?;
        let status = match r.int("status", 200, 599, "an HTTP status")? {
            Some(s) => s as u16,
            None => return err(r.at("status"), "is required"),
        };
        let body = r.str("body")?.unwrap_or("").as_bytes().to_vec();
        let content_type = r
            .str("content_type")?
            .unwrap_or("text/plain; charset=utf-8")
            .to_string();
        r.finish()?;
        let reply = Reply {
            status,
            body,
            content_type,
        };
        match outcome {
            None => default = Some(reply),
            Some(o) => replies[o.index()] = Some(reply),
        }
    }
    let mut out = Vec::with_capacity(replies.len());
    for (i, r) in replies.into_iter().enumerate() {
        let o = Outcome::ALL[i];
        out.push(match (r, &default) {
            (Some(r), _) => r,
            (None, _) if o == Outcome::Allowed => text(200, "OK"),
            (None, Some(d)) => d.clone(),
            // Outcomes added after custom profiles existed answer in HTTP's words.
            (None, None) if o == Outcome::MethodNotAllowed => text(405, "Method not allowed"),
            (None, None) if o == Outcome::UnsupportedMediaType => {
                text(415, "Unsupported request body")
            }
            (None, None) => {
                return err(
                    path,
                    format!(
                        "no reply for outcome \"{}\" (give it or a \"default\")",
                        o.name()
                    ),
                )
            }
        });
    }
    Ok(Profile {
        name: name.into(),
        replies: out,
    })
}

// ---- presets ----------------------------------------------------------------------

fn preset_profile(preset: &str) -> &'static str {
    match preset {
        "adjust" | "adjust_sdk" => "adjust",
        "swaarm" => "swaarm",
        _ => "jitsu",
    }
}

fn route(name: &str, path: &str) -> Route {
    Route {
        name: name.into(),
        path: PathMatch::Exact(path.as_bytes().to_vec()),
        methods: Vec::new(),
        scope: None,
        accept_server: true,
        accept_client: false,
        profile: 0,
        required: Vec::new(),
        app_param: None,
        sources: vec![Source::Bearer],
        per_app: false,
        cors: false,
        checks: Checks::Token,
        body: BodyRule::Form,
        single_params: Vec::new(),
        realm: "default".into(),
        fields: Default::default(),
    }
}

fn methods(list: &[&str]) -> Vec<Vec<u8>> {
    list.iter().map(|m| m.as_bytes().to_vec()).collect()
}

/// Adjust S2S: Bearer tokens, scoped endpoints, per-app enforcement by `app_token`.
fn adjust_routes() -> Vec<Route> {
    [
        ("adjust_event", "/event", Scope::Events),
        ("adjust_session", "/session", Scope::Sessions),
        ("adjust_ad_revenue", "/ad_revenue", Scope::AdRevenue),
        (
            "adjust_gdpr_forget_device",
            "/gdpr_forget_device",
            Scope::Gdpr,
        ),
    ]
    .into_iter()
    .map(|(name, path, scope)| Route {
        methods: methods(&["GET", "POST"]),
        scope: Some(scope),
        app_param: Some(b"app_token".to_vec()),
        // The collector tells S2S from SDK traffic by `s2s=1`.
        single_params: vec![b"s2s".to_vec()],
        per_app: true,
        ..route(name, path)
    })
    .collect()
}

/// Adjust with SDK traffic: the S2S endpoints take a token when `s2s=1` and a
/// signature otherwise; the SDK-only endpoints take a signature.
fn adjust_sdk_routes() -> Vec<Route> {
    let mut routes: Vec<Route> = adjust_routes()
        .into_iter()
        .map(|r| Route {
            checks: Checks::S2sTokenElseSignature,
            ..r
        })
        .collect();
    for (name, path, methods_) in [
        ("adjust_sdk_click", "/sdk_click", &["POST"][..]),
        ("adjust_sdk_info", "/sdk_info", &["POST"]),
        ("adjust_attribution", "/attribution", &["GET"]),
        (
            "adjust_third_party_sharing",
            "/third_party_sharing",
            &["POST"],
        ),
        (
            "adjust_measurement_consent",
            "/measurement_consent",
            &["POST"],
        ),
        (
            "adjust_disable_third_party_sharing",
            "/disable_third_party_sharing",
            &["POST"],
        ),
        ("adjust_purchase", "/v2/purchase", &["POST"]),
        ("adjust_verify", "/verify", &["POST"]),
    ] {
        routes.push(Route {
            methods: methods(methods_),
            app_param: Some(b"app_token".to_vec()),
            checks: Checks::Signature,
            ..route(name, path)
        });
    }
    routes
}

fn required(names: &[(&str, bool)]) -> Vec<RequiredParam> {
    names
        .iter()
        .map(|(n, allow_empty)| RequiredParam {
            name: n.as_bytes().to_vec(),
            allow_empty: *allow_empty,
        })
        .collect()
}

/// Swaarm S2S: raw `Authorization` or `s2s_token`; `/s2sevent` takes `token`.
fn swaarm_routes() -> Vec<Route> {
    vec![
        Route {
            methods: methods(&["GET", "POST"]),
            sources: vec![Source::Authorization, Source::Query(b"s2s_token".to_vec())],
            required: required(&[("user_id", false), ("event_id", false)]),
            ..route("swaarm_postback", "/postback")
        },
        Route {
            methods: methods(&["GET", "POST"]),
            sources: vec![Source::Query(b"token".to_vec()), Source::Authorization],
            // The attribution call sends `event_id=` empty.
            required: required(&[
                ("user_id", false),
                ("event_id", true),
                ("user_ip", false),
                ("user_ua", false),
            ]),
            ..route("swaarm_s2sevent", "/s2sevent")
        },
    ]
}

/// Jitsu: client secrets on browser endpoints, server secrets on S2S endpoints;
/// its token locations in its order.
fn jitsu_routes() -> Vec<Route> {
    let sources = vec![
        Source::Query(b"token".to_vec()),
        Source::Header("x-auth-token".into()),
        Source::Header("api_key".into()),
        Source::QueryPrefix(b"p_".to_vec()),
        Source::Basic,
    ];
    // Jitsu reads events as JSON and its token from query and headers only.
    let client = |name: &str, path: &str| Route {
        methods: methods(&["POST", "GET", "OPTIONS"]),
        sources: sources.clone(),
        body: BodyRule::Ignore,
        accept_server: false,
        accept_client: true,
        cors: true,
        ..route(name, path)
    };
    let server = |name: &str, path: &str| Route {
        methods: methods(&["POST"]),
        sources: sources.clone(),
        body: BodyRule::Ignore,
        ..route(name, path)
    };
    vec![
        client("jitsu_event", "/api/v1/event"),
        client("jitsu_events", "/api/v1/events"),
        // Jitsu's `/api.*` client endpoints (FACTS.md §4).
        Route {
            path: PathMatch::Prefix(b"/api.".to_vec()),
            ..client("jitsu_api_any", "/api.")
        },
        server("jitsu_s2s_event", "/api/v1/s2s/event"),
        server("jitsu_s2s_events", "/api/v1/s2s/events"),
        server("jitsu_events_bulk", "/api/v1/events/bulk"),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn e(json: &str) -> String {
        parse(json.as_bytes()).unwrap_err().to_string()
    }

    #[test]
    fn presets_compile() {
        let p = parse(br#"{"presets": ["adjust", "swaarm", "jitsu"]}"#).unwrap();
        assert_eq!(p.routes.len(), 12);
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
        assert_eq!(e(r#"{"presets":["adjust"],"bogus":1}"#), "bogus: unknown field (known fields: $schema, app_authentication_default, apps, default_realm, hold_headers_for_body, max_body_bytes, max_stats_apps, mode, origin_mismatch, path_normalization, presets, profiles, routes, signature_reply, strip_credential, token_source, tokens, unknown_paths, unknown_paths_profile, upstream_headers)");
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
            "routes[0].profile: is required (adjust, swaarm, jitsu or a custom profile)"
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
        assert_eq!(p.routes.len(), 2);
        assert_eq!(
            p.route(b"GET", b"/postback").unwrap().sources,
            vec![Source::Authorization]
        );
    }
}
