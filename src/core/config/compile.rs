//! Validation and compilation: a deserialized [`Config`] (shape already checked by
//! serde) becomes the immutable [`Policy`], or an error naming the field. Meaning is
//! checked here: ranges, references between parts (profiles, realms, templates),
//! canonical paths, credential sources.

use std::collections::HashMap;

use serde_json::value::RawValue;

use super::model::{
    self, AppConfig, ChecksName, Config, Named, OneOrList, ReplyConfig, RequiredParamConfig,
    RouteConfig, ScopeName, SignatureConfig, TokenSourceConfig,
};
use super::presets::{self, text};
use super::{compile_tokens, err, ConfigError, Realms};
use crate::path::PathOptions;
use crate::policy::{
    AppPlatform, AppSettings, BodyRule, Checks, LaterSdk, Mode, Name, OriginMismatch, Outcome,
    PathMatch, Policy, Profile, Reply, RequiredParam, Role, Route, SignatureSettings, Source,
    TokenSource, UpstreamHeaders,
};
use crate::replay;
use crate::signature::AppSecret;
use crate::token::{Scope, Scopes};

/// Default limit for buffered form bodies.
pub const DEFAULT_MAX_BODY_BYTES: usize = 64 * 1024;
/// Hard ceiling for `max_body_bytes`: Envoy's default connection buffer is 1 MiB.
pub const MAX_BODY_CEILING: usize = 1024 * 1024;
/// Apps beyond this many get no statistics series of their own.
pub const DEFAULT_MAX_STATS_APPS: usize = 100;
/// Default freshness window: offline queues hold events for days.
pub const DEFAULT_MAX_AGE: u64 = 30 * 86400;
pub const DEFAULT_MAX_FUTURE: u64 = 300;
pub const DEFAULT_REPLAY_CAPACITY: usize = 100_000;
pub const DEFAULT_PERIOD_MS: u64 = 3000;
pub const DEFAULT_TIMEOUT_MS: u64 = 2000;
pub const DEFAULT_MAX_BYTES: usize = 64 * 1024 * 1024;

/// `value` if it lies in `lo..=hi` (checked before any narrowing: the filter runs
/// on wasm32, where `usize` is 32 bits and 4294967297 must not become 1).
fn in_range(path: &str, value: u64, lo: u64, hi: u64, what: &str) -> Result<u64, ConfigError> {
    if (lo..=hi).contains(&value) {
        Ok(value)
    } else {
        err(path, format!("must be {what} between {lo} and {hi}"))
    }
}

fn size(path: &str, value: u64, lo: u64, hi: u64, what: &str) -> Result<usize, ConfigError> {
    let v = in_range(path, value, lo, hi, what)?;
    usize::try_from(v).or_else(|_| err(path, format!("must be {what} between {lo} and {hi}")))
}

fn scope(s: ScopeName) -> Scope {
    match s {
        ScopeName::Events => Scope::Events,
        ScopeName::Sessions => Scope::Sessions,
        ScopeName::AdRevenue => Scope::AdRevenue,
        ScopeName::Gdpr => Scope::Gdpr,
    }
}

/// Compiles a configuration. `set_apps` replaces the configuration's `apps` (a
/// token set's), `tokens` its inline tokens.
pub(super) fn compile(
    c: &Config<'_>,
    set_apps: Option<&Named<'_, AppConfig<'_>>>,
    tokens: Option<&RawValue>,
) -> Result<Policy, ConfigError> {
    let mode = match c.mode {
        None | Some(model::Mode::Enforce) => Mode::Enforce,
        Some(model::Mode::Flag) => Mode::Flag,
        Some(model::Mode::DryRun) => Mode::DryRun,
    };
    let log_level = match c.log_level {
        Some(model::LogLevel::Off) => log::LevelFilter::Off,
        Some(model::LogLevel::Error) => log::LevelFilter::Error,
        Some(model::LogLevel::Warn) => log::LevelFilter::Warn,
        None | Some(model::LogLevel::Info) => log::LevelFilter::Info,
        Some(model::LogLevel::Debug) => log::LevelFilter::Debug,
    };

    // Profiles: built-in ones, then custom ones.
    let mut profiles = presets::builtin_profiles();
    if let Some(custom) = &c.profiles {
        for (name, replies) in custom.iter() {
            let path = format!("profiles.{name}");
            if profiles.iter().any(|p| p.name == name) {
                return err(path, "redefines a built-in profile (adjust, swaarm, jitsu)");
            }
            profiles.push(custom_profile(&path, name, replies)?);
        }
    }
    let profile_index = |path: &str, name: &str| -> Result<usize, ConfigError> {
        match profiles.iter().position(|p| p.name == name) {
            Some(i) => Ok(i),
            None => err(path, format!("unknown profile \"{name}\"")),
        }
    };

    let paths = compile_paths(c);

    // Routes: presets first; a user route with the same path and match replaces one.
    let mut routes: Vec<Route> = Vec::new();
    for (i, &preset) in c.presets.iter().flatten().enumerate() {
        let path = format!("presets[{i}]");
        let profile = profile_index(&path, presets::profile_of(preset))?;
        for r in presets::routes(preset) {
            if routes.iter().any(|e| e.path == r.path) {
                return err(
                    path,
                    format!(
                        "preset \"{}\" repeats route {}",
                        presets::name(preset),
                        r.name
                    ),
                );
            }
            routes.push(Route { profile, ..r });
        }
    }
    let preset_count = routes.len();
    let mut replaced = Vec::new();
    for (i, r) in c.routes.iter().flatten().enumerate() {
        let path = format!("routes[{i}]");
        let route = compile_route(&path, r, &profile_index, &paths)?;
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
            Some(p) => {
                // Replacing is allowed; losing what protected the path silently is
                // not what an operator adding a method list expects.
                let old = &routes[p];
                let lost: Vec<&str> = [
                    ("realm", old.realm != route.realm),
                    (
                        "app_param",
                        old.app_param.is_some() && old.app_param != route.app_param,
                    ),
                    ("scope", old.scope.is_some() && old.scope != route.scope),
                    ("per_app_enforcement", old.per_app && !route.per_app),
                    ("checks", old.checks != route.checks),
                ]
                .into_iter()
                .filter_map(|(name, differs)| differs.then_some(name))
                .collect();
                if !lost.is_empty() {
                    replaced.push(format!(
                        "{path} replaces preset route {} with another {}: the route is only what routes[{i}] says",
                        old.name,
                        lost.join(", ")
                    ));
                }
                routes[p] = route;
            }
            None => routes.push(route),
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

    let reject_unknown_paths = c.unknown_paths == Some(model::UnknownPaths::Reject);
    let unknown_profile = match &c.unknown_paths_profile {
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
    crate::order::strings(&mut realms);
    let default_realm = match c.default_realm.as_deref() {
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
    let tokens = compile_tokens(tokens, &realm_ctx)?;
    let apps = compile_apps(c, set_apps.or(c.apps.as_ref()))?;
    let signature_reply = match &c.signature_reply {
        None => text(401, "Request signature rejected"),
        // A rejection never answers 2xx or 3xx.
        Some(r) => reply(
            "signature_reply",
            r,
            400,
            "an HTTP error status between 400 and 599",
        )?,
    };

    let headers = match &c.upstream_headers {
        None => {
            let h = presets::default_headers();
            owned_header_names(&h, [false; 3], &routes)?;
            h
        }
        Some(o) => {
            let d = presets::default_headers();
            let p = "upstream_headers";
            let h = UpstreamHeaders {
                token_id: header_name(p, "token_id", o.token_id.as_deref(), d.token_id)?,
                app: header_name(p, "app", o.app.as_deref(), d.app)?,
                reason: header_name(p, "reason", o.reason.as_deref(), d.reason)?,
                authorization: d.authorization,
            };
            let configured = [o.token_id.is_some(), o.app.is_some(), o.reason.is_some()];
            owned_header_names(&h, configured, &routes)?;
            h
        }
    };
    let origin_mismatch = match c.origin_mismatch {
        None | Some(model::OriginMismatch::Reject) => OriginMismatch::Reject,
        Some(model::OriginMismatch::OmitCors) => OriginMismatch::OmitCors,
    };
    let max_body_bytes = match c.max_body_bytes {
        None => DEFAULT_MAX_BODY_BYTES,
        Some(v) => size(
            "max_body_bytes",
            v,
            1,
            MAX_BODY_CEILING as u64,
            "a size in bytes (at most Envoy's default buffer limit)",
        )?,
    };
    let source = match &c.token_source {
        None => None,
        Some(o) => Some(compile_source(o)?),
    };
    let mut stat_names = apps.stat_names;
    let mut warnings = signature_warnings(&apps.signatures);
    warnings.extend(replaced);
    let unrouted_stats_base = route_series(&mut routes, &mut stat_names, &mut warnings);
    let mut app_settings = apps.settings;
    let shadow_other_stat = shadow_series(&mut app_settings, apps.max_stats_apps, &mut stat_names);
    warnings.extend(app_label_warnings(
        app_settings.keys().chain(apps.signatures.keys()),
    ));
    let app_names_folded = app_settings
        .keys()
        .chain(apps.signatures.keys())
        .map(|a| a.to_ascii_lowercase())
        .collect();
    let names = || app_settings.keys().chain(apps.signatures.keys());
    let numeric_apps = names()
        .any(|a| {
            a.bytes().any(|b| b.is_ascii_digit())
                && a.bytes()
                    .all(|b| b.is_ascii_digit() || b"+-.eE".contains(&b))
        })
        .then(|| {
            names()
                .filter(|a| a.len() <= 19 && a.bytes().all(|b| b.is_ascii_digit()))
                .filter_map(|a| a.parse::<u64>().ok())
                .collect()
        });

    Ok(Policy {
        mode,
        log_level,
        paths,
        reject_unknown_paths,
        unknown_profile,
        routes,
        tokens,
        apps: app_settings,
        app_authentication_default: apps.default,
        profiles,
        headers,
        strip_credential: c.strip_credential.unwrap_or(true),
        origin_mismatch,
        max_body_bytes,
        hold_headers_for_body: c.hold_headers_for_body.unwrap_or(false),
        warnings,
        app_names_folded,
        numeric_apps,
        signatures: apps.signatures,
        signature_reply,
        stat_names,
        unrouted_stats_base,
        shadow_other_stat,
        source,
        set_version: None,
        set_epoch: 0,
        set_expires: None,
    })
}

/// `path_normalization`: each step of [`PathOptions`], on unless switched off.
fn compile_paths(c: &Config) -> PathOptions {
    let d = PathOptions::default();
    let Some(o) = &c.path_normalization else {
        return d;
    };
    PathOptions {
        decode_unreserved: o.decode_unreserved.unwrap_or(d.decode_unreserved),
        remove_dot_segments: o.remove_dot_segments.unwrap_or(d.remove_dot_segments),
        merge_slashes: o.merge_slashes.unwrap_or(d.merge_slashes),
        ignore_trailing_slash: o.ignore_trailing_slash.unwrap_or(d.ignore_trailing_slash),
        fold_case: o.fold_case.unwrap_or(d.fold_case),
    }
}

fn header_name(
    base: &str,
    key: &str,
    value: Option<&str>,
    default: Name,
) -> Result<Name, ConfigError> {
    match value {
        None => Ok(default),
        Some(h) if is_header_name(h) => Ok(h.to_ascii_lowercase().into()),
        Some(_) => err(format!("{base}.{key}"), "not a valid HTTP header name"),
    }
}

/// Headers a request needs (beside the ones every decision reads,
/// [`crate::reading::HEADERS`]): never owned by the filter, which removes every
/// client copy of the headers it owns (under any folded spelling).
/// Nor headers collectors act on (round 14, helper-56): the method overrides and
/// root-path headers the decision reads ([`crate::reading::TRAILER_ONLY`]), and
/// those that name the client, the host, the scheme or the original request.
const NOT_OWNABLE: [&str; 39] = [
    // Round 16 (helper-60): more that name the client, the host or the user.
    "client-ip",
    "x-cluster-client-ip",
    "x-forwarded",
    "forwarded-for",
    "x-forwarded-uri",
    "x-host",
    "x-envoy-internal",
    "remote-user",
    "x-remote-user",
    "x-forwarded-user",
    // Old Symfony, ZF1 and IIS route on these.
    "x-original-url",
    "x-rewrite-url",
    "x-original-uri",
    "x-original-method",
    "x-forwarded-method",
    "x-envoy-original-path",
    "forwarded",
    "x-forwarded-host",
    "x-forwarded-proto",
    "x-forwarded-port",
    "x-forwarded-scheme",
    "x-forwarded-ssl",
    "x-forwarded-server",
    "x-original-host",
    "x-url-scheme",
    "front-end-https",
    "x-real-ip",
    "x-client-ip",
    "true-client-ip",
    "cf-connecting-ip",
    "host",
    "connection",
    "te",
    "upgrade",
    "expect",
    "cookie",
    "keep-alive",
    "proxy-authorization",
    "x-forwarded-for",
];

/// The owned headers are headers of their own: none a request needs, no
/// credential header of a route, no two read as one (case and non-alphanumeric
/// characters folded, as stacks do).
fn owned_header_names(
    h: &UpstreamHeaders,
    configured: [bool; 3],
    routes: &[Route],
) -> Result<(), ConfigError> {
    let named = [
        ("token_id", &h.token_id),
        ("app", &h.app),
        ("reason", &h.reason),
    ];
    let credential = |name: &str| {
        routes
            .iter()
            .flat_map(|r| r.sources.iter())
            .any(|s| matches!(s, Source::Header(c) if crate::reading::folds_onto(name, c)))
    };
    for (k, (key, name)) in named.iter().enumerate() {
        let path = format!("upstream_headers.{key}");
        if name.starts_with(':')
            || (NOT_OWNABLE.iter().chain(crate::reading::HEADERS.iter()))
                .chain(crate::reading::TRAILER_ONLY.iter())
                .any(|n| crate::reading::folds_onto(name, n))
            || configured[k] && credential(name)
        {
            return err(
                path,
                format!(
                    "\"{name}\" is a header requests need, the filter reads or collectors \
                     act on (the filter removes every client copy of the headers it owns)"
                ),
            );
        }
        if let Some((other, _)) = named[..k]
            .iter()
            .find(|(_, o)| crate::reading::folds_onto(name, o))
        {
            return err(path, format!("the same header as upstream_headers.{other}"));
        }
    }
    for r in routes {
        for s in &r.sources {
            let Source::Header(c) = s else { continue };
            if let Some((key, _)) = named.iter().find(|(_, n)| crate::reading::folds_onto(c, n)) {
                // Removed from every request, it could never be read.
                return err(
                    "routes",
                    format!(
                        "route \"{}\" reads its credential from \"{c}\", a header the filter \
                         owns (upstream_headers.{key})",
                        r.name
                    ),
                );
            }
        }
    }
    Ok(())
}

pub(crate) fn is_header_name(h: &str) -> bool {
    !h.is_empty()
        && h.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}

fn reply(path: &str, r: &ReplyConfig, lo: u64, what: &str) -> Result<Reply, ConfigError> {
    let status = in_range(&format!("{path}.status"), r.status, lo, 599, "")
        .or_else(|_| err(format!("{path}.status"), format!("must be {what}")))?;
    if let Some(t) = r.content_type.as_deref() {
        // Sent as a header value: a CR or LF would split it (Envoy refuses it).
        if t.is_empty() || t.bytes().any(|b| b < 0x20 && b != b'\t' || b == 0x7f) {
            return err(
                format!("{path}.content_type"),
                "not a valid header value (empty, or control characters)",
            );
        }
    }
    Ok(Reply {
        status: status as u16,
        body: r.body.as_deref().unwrap_or("").as_bytes().into(),
        content_type: r
            .content_type
            .as_deref()
            .unwrap_or("text/plain; charset=utf-8")
            .into(),
    })
}

fn compile_route(
    at: &str,
    o: &RouteConfig,
    profile_index: &dyn Fn(&str, &str) -> Result<usize, ConfigError>,
    paths: &PathOptions,
) -> Result<Route, ConfigError> {
    let f = |key: &str| format!("{at}.{key}");
    let path_text: &str = &o.path;
    if path_text.is_empty() {
        return err(f("path"), "must not be empty");
    }
    if !path_text.starts_with('/') {
        return err(f("path"), "must start with /");
    }
    if path_text.contains('?') {
        return err(f("path"), "must not contain a query");
    }
    // Requests are routed by their canonical path: a route path must be one.
    match crate::path::canonical(path_text.as_bytes(), paths) {
        Ok(c) if c == path_text.as_bytes() => {}
        Ok(c) => {
            return err(
                f("path"),
                format!(
                    "not canonical: requests for it are read as \"{}\" (write that)",
                    String::from_utf8_lossy(&c)
                ),
            )
        }
        Err(e) => {
            return err(
                f("path"),
                format!("cannot be made canonical ({})", e.name()),
            )
        }
    }
    let path = match o.match_ {
        None | Some(model::PathMatchKind::Exact) => PathMatch::Exact(path_text.as_bytes().to_vec()),
        Some(model::PathMatchKind::Prefix) => PathMatch::Prefix(path_text.as_bytes().to_vec()),
    };
    let name = o.name.as_deref().unwrap_or(path_text).to_string();
    if o.methods.as_ref().is_some_and(|m| m.is_empty()) {
        // Read as "every method" it would open what the operator meant to close.
        return err(
            f("methods"),
            "must name at least one method (leave it out for every method)",
        );
    }
    let mut methods = Vec::new();
    for (i, m) in o.methods.iter().flatten().enumerate() {
        if m.is_empty() || !m.bytes().all(|b| b.is_ascii_alphabetic()) {
            return err(
                format!("{at}.methods[{i}]"),
                format!("not an HTTP method: \"{m}\""),
            );
        }
        methods.push(m.to_ascii_uppercase().into_bytes());
    }
    let (mut accept_server, mut accept_client) = (true, false);
    if let Some(kinds) = &o.token_kinds {
        if kinds.is_empty() {
            return err(f("token_kinds"), "must name at least one kind");
        }
        accept_server = kinds.contains(&model::TokenKind::Server);
        accept_client = kinds.contains(&model::TokenKind::Client);
    }
    let profile = profile_index(&f("profile"), &o.profile)?;
    let mut required = Vec::new();
    for (i, r) in o.required_params.iter().flatten().enumerate() {
        let p = format!("{at}.required_params[{i}]");
        required.push(match r {
            RequiredParamConfig::Name(s) if !s.is_empty() => RequiredParam {
                name: param_name(&p, s)?,
                allow_empty: false,
            },
            RequiredParamConfig::Name(_) => {
                return err(
                    p,
                    "expected a parameter name or {\"name\", \"allow_empty\"}",
                )
            }
            RequiredParamConfig::Object(r) if r.name.is_empty() => {
                return err(format!("{p}.name"), "must not be empty")
            }
            RequiredParamConfig::Object(r) => RequiredParam {
                name: param_name(&format!("{p}.name"), &r.name)?,
                allow_empty: r.allow_empty.unwrap_or(false),
            },
        });
    }
    let app_param = match o.app_param.as_deref() {
        Some(s) => Some(param_name(&f("app_param"), s)?),
        None => None,
    };
    let sources = match &o.credentials {
        None => vec![Source::Bearer],
        Some(list) if list.is_empty() => {
            return err(f("credentials"), "must name at least one source")
        }
        Some(list) => list
            .iter()
            .enumerate()
            .map(|(i, s)| parse_source(&format!("{at}.credentials[{i}]"), s))
            .collect::<Result<Vec<_>, _>>()?,
    };
    let per_app = o.per_app_enforcement.unwrap_or(false);
    if per_app && app_param.is_none() {
        return err(
            f("per_app_enforcement"),
            "needs app_param (where the request names its app)",
        );
    }
    let checks = match o.checks {
        None | Some(ChecksName::Token) => Checks::Token,
        Some(ChecksName::Signature) => Checks::Signature,
        Some(ChecksName::TokenAndSignature) => Checks::TokenAndSignature,
        Some(ChecksName::S2sTokenElseSignature) => Checks::S2sTokenElseSignature,
    };
    if checks != Checks::Token && app_param.is_none() {
        return err(
            f("checks"),
            "signature checks need app_param (where the request names its app)",
        );
    }
    let body = match o.body {
        None | Some(model::BodyName::Form) => BodyRule::Form,
        Some(model::BodyName::Ignore) => BodyRule::Ignore,
    };
    if body == BodyRule::Ignore {
        if let Some(i) = sources.iter().position(|s| matches!(s, Source::Form(_))) {
            // Never read, the credential would always be missing.
            return err(
                format!("{at}.credentials[{i}]"),
                "a form credential needs \"body\": \"form\" (this route ignores its body)",
            );
        }
    }
    let mut single_params = Vec::new();
    for (i, n) in o.single_params.iter().flatten().enumerate() {
        single_params.push(param_name(&format!("{at}.single_params[{i}]"), n)?);
    }
    let realm = match o.realm.as_deref() {
        None => "default".to_string(),
        Some(r) if valid_realm(r) => r.to_string(),
        Some(r) => {
            return err(
                f("realm"),
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
        stats_base: 0,
        skeleton: Vec::new(),
        name: name.into(),
        path,
        methods,
        scope: o.scope.map(scope),
        accept_server,
        accept_client,
        profile,
        required,
        app_param,
        sources,
        per_app,
        cors: o.cors.unwrap_or(false),
    })
}

fn valid_realm(r: &str) -> bool {
    !r.is_empty()
        && r.len() <= 64
        && r.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// A parameter name the configuration names (`app_param`, `required_params`,
/// `single_params`, `query:`/`form:`/`query_prefix:` credentials): only letters,
/// digits, `_` and `-`, which every stack reads as written. PHP reads `.`, a space
/// and `[` in a name as `_` (`app.id` is `app_id`, which the filter would not be
/// reading), and `&`, `=`, `;`, `+`, `%` or `#` split or decode it.
fn param_name(path: &str, name: &str) -> Result<Vec<u8>, ConfigError> {
    if name.is_empty() {
        return err(path, "must not be empty");
    }
    if !name
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
    {
        return err(
            path,
            format!(
                "\"{}\": a parameter name must be letters, digits, \"_\" and \"-\" only \
                 (PHP reads \".\", \" \" and \"[\" in a name as \"_\": app.id is app_id)",
                name.escape_debug()
            ),
        );
    }
    Ok(name.as_bytes().to_vec())
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
            Source::Header(h.into())
        }
        ("query", a) => Source::Query(param_name(path, &arg_ok(a)?)?),
        ("query_prefix", a) => Source::QueryPrefix(param_name(path, &arg_ok(a)?)?),
        ("form", a) => Source::Form(param_name(path, &arg_ok(a)?)?),
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

/// Apps: the per-app S2S switch, and SDK signature settings with templates.
struct Apps {
    settings: HashMap<String, AppSettings>,
    default: bool,
    signatures: HashMap<String, SignatureSettings>,
    stat_names: Vec<String>,
    max_stats_apps: usize,
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
    // The legacy signature does not sign the app: an app with its replay memory
    // off that shares an App Secret value (a template's, or the same value) with
    // apps whose memory is on takes their devices' signatures again and again.
    for (app, s) in sigs.iter().filter(|(_, s)| !s.replay_enabled) {
        let mut others: Vec<String> = sigs
            .iter()
            .filter(|(other, o)| {
                *other != app
                    && o.replay_enabled
                    && o.secrets.iter().any(|x| {
                        x.active
                            && s.secrets
                                .iter()
                                .any(|y| y.active && y.replay_tag == x.replay_tag)
                    })
            })
            .map(|(other, _)| other.clone())
            .collect();
        if !others.is_empty() {
            crate::order::strings(&mut others);
            out.push(format!(
                "apps.{app}.signature: replay is off, but an App Secret of it is also one of [{}], whose signatures (the app is not signed) can then be replayed as {app} without limit",
                others.join(", ")
            ));
        }
    }
    crate::order::strings(&mut out);
    out
}

fn compile_apps(c: &Config, apps_in: Option<&Named<AppConfig>>) -> Result<Apps, ConfigError> {
    let default = c.app_authentication_default.unwrap_or(false);
    let max_stats_apps = match c.max_stats_apps {
        None => DEFAULT_MAX_STATS_APPS,
        Some(v) => size("max_stats_apps", v, 0, 100_000, "a number of apps")?,
    };
    let mut apps = HashMap::new();
    // (app, path of its signature, template, signature settings)
    let mut raw_sigs: Vec<(String, String, Option<String>, Option<&SignatureConfig>)> = Vec::new();
    for (app, a) in apps_in.iter().flat_map(|m| m.iter()) {
        let path = format!("apps.{app}");
        let template = a.template.as_deref().map(str::to_string);
        if a.signature.is_some() || template.is_some() {
            raw_sigs.push((
                app.to_string(),
                format!("{path}.signature"),
                template,
                a.signature.as_ref(),
            ));
        }
        if !super::header_safe(app) {
            // Requests name the app in a parameter; ` abc` or `abc\t` is a typo
            // that would leave the app itself unconfigured.
            return err(
                &path,
                "an app must be 1 to 256 visible ASCII characters (no control characters, no outer spaces)",
            );
        }
        if a.authentication_scopes
            .as_ref()
            .is_some_and(|l| l.is_empty())
        {
            return err(
                format!("{path}.authentication_scopes"),
                "an empty list would require authentication nowhere: set authentication to false for that, or leave authentication_scopes out (every scope)",
            );
        }
        let authentication_scopes = a.authentication_scopes.as_ref().map(|list| {
            let mut s = Scopes::NONE;
            for &name in list {
                s.insert(scope(name));
            }
            s
        });
        apps.insert(
            app.to_string(),
            AppSettings {
                authentication: a.authentication.unwrap_or(false),
                authentication_scopes,
                shadow_stat: 0,
            },
        );
    }
    let (signatures, stat_names) = compile_signatures(&raw_sigs, max_stats_apps)?;
    Ok(Apps {
        settings: apps,
        default,
        signatures,
        stat_names,
        max_stats_apps,
    })
}

/// Oldest SDK versions accepted: (android, ios), each (major, minor).
type MinSdk = (Option<(u32, u32)>, Option<(u32, u32)>);

fn sdk_version(path: &str, v: Option<&str>) -> Result<Option<(u32, u32)>, ConfigError> {
    let Some(v) = v else {
        return Ok(None);
    };
    let ok = |s: &str| !s.is_empty() && s.len() <= 4 && s.bytes().all(|c| c.is_ascii_digit());
    let bad = || {
        err(
            path,
            format!("expected a version like \"4.18\", not \"{v}\""),
        )
    };
    match v.split_once('.') {
        Some((a, b)) if ok(a) && ok(b) => match (a.parse(), b.parse()) {
            (Ok(a), Ok(b)) => Ok(Some((a, b))),
            _ => bad(),
        },
        _ => bad(),
    }
}

/// One app's `signature` object, before its template is applied.
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

/// `AA:BB:...` with 20 (SHA-1) or 32 (SHA-256) bytes.
fn valid_cert_hash(h: &str) -> bool {
    let parts: Vec<&str> = h.split(':').collect();
    (parts.len() == 20 || parts.len() == 32)
        && parts
            .iter()
            .all(|p| p.len() == 2 && p.bytes().all(|b| b.is_ascii_hexdigit()))
}

fn parse_signature(path: &str, o: Option<&SignatureConfig>) -> Result<RawSignature, ConfigError> {
    let mut r = RawSignature::default();
    let Some(o) = o else {
        return Ok(r);
    };
    let f = |key: &str| format!("{path}.{key}");
    r.enforce_signature = o.enforce_signature;
    r.platform = o.platform.map(|p| match p {
        model::Platform::Ios => AppPlatform::Ios,
        model::Platform::Android => AppPlatform::Android,
        model::Platform::Both => AppPlatform::Both,
    });
    let hashes: Vec<(String, &str)> = match &o.android_signature_hash {
        None => Vec::new(),
        // A comma-separated string, as the App Automation API accepts.
        Some(OneOrList::Joined(s)) => s
            .split(',')
            .map(|h| (f("android_signature_hash"), h))
            .collect(),
        Some(OneOrList::List(l)) => l
            .iter()
            .enumerate()
            .map(|(i, h)| (format!("{path}.android_signature_hash[{i}]"), h.as_ref()))
            .collect(),
    };
    for (p, h) in hashes {
        let h = h.trim();
        if !valid_cert_hash(h) {
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
    for (i, s) in o.secrets.iter().flatten().enumerate() {
        let p = format!("{path}.secrets[{i}]");
        let id = in_range(&format!("{p}.id"), s.id, 1, u32::MAX.into(), "a Secret ID")? as u32;
        let secret = match (&s.info, s.secret.as_deref()) {
            (Some(_), Some(_)) => return err(p, "give either info or secret, not both"),
            (Some(list), None) => {
                if list.len() != 4 {
                    return err(
                        format!("{p}.info"),
                        "expected the four integers info1..info4",
                    );
                }
                list.iter()
                    .map(u64::to_string)
                    .collect::<String>()
                    .into_bytes()
            }
            (None, Some(j)) if !j.is_empty() && j.bytes().all(|b| b.is_ascii_digit()) => {
                j.as_bytes().to_vec()
            }
            (None, Some(_)) => {
                return err(
                    format!("{p}.secret"),
                    "expected the joined decimal digits of info1..info4",
                )
            }
            (None, None) => return err(p, "has no secret (give info or secret)"),
        };
        if r.secrets.iter().any(|x| x.id == id) {
            return err(format!("{p}.id"), format!("duplicate Secret ID {id}"));
        }
        r.secrets.push(AppSecret {
            id,
            replay_tag: replay::secret_tag(id, &secret),
            secret,
            active: s.active.unwrap_or(true),
            name: s.name.as_deref().map(str::to_string),
            // Set once every app using the secret is known.
            replay_window: 0,
            replay_per_key: 1,
        });
    }
    r.max_age = o.max_age.map(|d| d.0);
    r.max_future = o.max_future.map(|d| d.0);
    r.later_sdk = o.later_sdk.map(|l| match l {
        model::LaterSdkName::Pass => LaterSdk::Pass,
        model::LaterSdkName::Flag => LaterSdk::Flag,
        model::LaterSdkName::Reject => LaterSdk::Reject,
    });
    r.signing_ids = o
        .signing_ids
        .as_ref()
        .map(|l| l.iter().map(|s| s.to_string()).collect());
    r.require_device_id = o.require_device_id;
    if let Some(m) = &o.min_sdk {
        let android = sdk_version(&f("min_sdk.android"), m.android.as_deref())?;
        let ios = sdk_version(&f("min_sdk.ios"), m.ios.as_deref())?;
        r.min_sdk = Some((android, ios));
    }
    if let Some(rp) = &o.replay {
        r.replay_enabled = rp.enabled;
        r.replay_capacity = match rp.capacity {
            None => None,
            Some(v) => Some(size(
                &f("replay.capacity"),
                v,
                1,
                10_000_000,
                "a number of signatures",
            )?),
        };
        r.replay_full_rejects = rp.when_full.map(|w| w == model::WhenFull::Reject);
    }
    Ok(r)
}

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

/// The `route` label of a route's decision series: its name with every character
/// but `[A-Za-z0-9_-]` as `_` (a path-like default name `/api/v1/event` becomes
/// `_api_v1_event`); an empty name is labelled by its path.
pub fn route_label(route: &Route) -> String {
    if route.name.is_empty() {
        let path = match &route.path {
            PathMatch::Exact(p) | PathMatch::Prefix(p) => p,
        };
        return metric_safe(&String::from_utf8_lossy(path));
    }
    metric_safe(&route.name)
}

/// The label of the decisions on no route (unknown paths rejected, paths that
/// cannot be made canonical).
pub const UNROUTED_LABEL: &str = "none";

/// Appends the decision series by route to `names`:
/// `s2s_guard.requests_by_route.route.<label>.outcome.<outcome>`, one block of every
/// outcome per label (the decisions on no route first, labelled `none`), and tells
/// each route where its block starts. Routes with one label share a block (the same
/// stat name would be one counter in Envoy anyway); different names that become one
/// label are warned about. Returns the start of the `none` block. Bounded by the
/// configuration: (routes + 1) x outcomes series, routes coming only from it.
fn route_series(
    routes: &mut [Route],
    names: &mut Vec<String>,
    warnings: &mut Vec<String>,
) -> usize {
    let block = |names: &mut Vec<String>, label: &str| {
        let base = names.len();
        names.extend(Outcome::ALL.iter().map(|o| {
            format!(
                "s2s_guard.requests_by_route.route.{label}.outcome.{}",
                o.name()
            )
        }));
        base
    };
    let unrouted = block(names, UNROUTED_LABEL);
    // label -> (block, the first route name that took it), through an index
    // (one map type, String -> usize, for the compiler's maps: each map type
    // compiles hashbrown's code again into the .wasm).
    let mut seen: HashMap<String, usize> = HashMap::new();
    let mut firsts: Vec<(usize, String)> = vec![(unrouted, String::new())];
    seen.insert(UNROUTED_LABEL.into(), 0);
    for r in routes.iter_mut() {
        let label = route_label(r);
        match seen.get(&label).and_then(|&i| firsts.get(i)) {
            Some((base, first)) => {
                if **first != *r.name {
                    let other = if first.is_empty() {
                        "the decisions on no route".to_string()
                    } else {
                        format!("route \"{first}\"")
                    };
                    let msg = format!(
                        "route \"{}\" is counted with {other} in s2s_guard.requests_by_route (label \"{label}\"): give it a distinct name",
                        r.name
                    );
                    if !warnings.contains(&msg) {
                        warnings.push(msg);
                    }
                }
                r.stats_base = *base;
            }
            None => {
                let base = block(names, &label);
                seen.insert(label, firsts.len());
                firsts.push((base, r.name.to_string()));
                r.stats_base = base;
            }
        }
    }
    unrouted
}

/// Appends the shadow series by app to `names`: `s2s_guard.per_app.app.<app>.shadow`
/// for the first `max_stats_apps` apps of `apps` in name order (the same bound as
/// the App Secret statistics), `s2s_guard.per_app.app.other.shadow` shared by the
/// rest and by requests naming no configured app; tells each app its series.
/// Apps whose names give one label share it. Returns the `other` series.
fn shadow_series(
    apps: &mut HashMap<String, AppSettings>,
    max_stats_apps: usize,
    names: &mut Vec<String>,
) -> usize {
    let series = |label: &str| format!("s2s_guard.per_app.app.{label}.shadow");
    let other = names.len();
    names.push(series("other"));
    let mut seen: HashMap<String, usize> = HashMap::new();
    seen.insert("other".into(), other);
    let mut sorted: Vec<(&String, &mut AppSettings)> = apps.iter_mut().collect();
    crate::order::by_name(&mut sorted, |a| a.0.as_bytes());
    for (n, (app, settings)) in sorted.into_iter().enumerate() {
        settings.shadow_stat = if n < max_stats_apps {
            let label = metric_safe(app);
            *seen.entry(label).or_insert_with_key(|label| {
                names.push(series(label));
                names.len() - 1
            })
        } else {
            other
        };
    }
    other
}

/// Apps whose names give one metric label (`a.b` and `a_b`, or an app named
/// `other`, the label of the apps without series of their own) are counted together
/// in `s2s_guard.per_app` and `s2s_guard.sdk`: said at load, as for routes. Sorted.
fn app_label_warnings<'a>(apps: impl Iterator<Item = &'a String>) -> Vec<String> {
    let mut names: Vec<&String> = apps.collect();
    crate::order::by_name(&mut names, |a| a.as_bytes());
    names.dedup();
    let mut seen: HashMap<String, usize> = HashMap::new();
    let mut out = Vec::new();
    for (i, app) in names.iter().enumerate() {
        let label = metric_safe(app);
        if label == "other" {
            out.push(format!(
                "app \"{app}\" is counted with the apps that have no series of their own in s2s_guard.per_app (label \"other\"): give it a distinct name"
            ));
        } else if let Some(&first) = seen.get(&label) {
            out.push(format!(
                "app \"{app}\" is counted with app \"{}\" in s2s_guard.per_app and s2s_guard.sdk (label \"{label}\"): give it a distinct name",
                names[first]
            ));
        } else {
            seen.insert(label, i);
        }
    }
    out
}

/// Routes without `app_param` whose realm has tokens bound to an app: such a route
/// cannot tell which app a request is for, so every app's token opens it for
/// every app (preset routes name theirs). Said at load for the plugin
/// configuration's own tokens (a token set's are not known until it loads).
pub(super) fn app_binding_warnings(p: &Policy) -> Vec<String> {
    let mut bound: Vec<&str> = Vec::new();
    for t in p.tokens.tokens().filter(|t| t.app.is_some()) {
        if !bound.contains(&t.realm) {
            bound.push(t.realm);
        }
    }
    let mut out: Vec<String> = Vec::new();
    for r in p.routes.iter().filter(|r| r.app_param.is_none()) {
        if bound.contains(&r.realm.as_str()) {
            let msg = format!(
                "route \"{}\" has no app_param: realm \"{}\" has tokens bound to an app, and each opens this route for every app",
                r.name, r.realm
            );
            if !out.contains(&msg) {
                out.push(msg);
            }
        }
    }
    out
}

type RawSig<'c> = (
    String,
    String,
    Option<String>,
    Option<&'c SignatureConfig<'c>>,
);

fn compile_signatures(
    raw: &[RawSig],
    max_stats_apps: usize,
) -> Result<(HashMap<String, SignatureSettings>, Vec<String>), ConfigError> {
    let parsed: HashMap<&str, (RawSignature, Option<&String>)> = raw
        .iter()
        .map(|(app, path, t, v)| Ok((app.as_str(), (parse_signature(path, *v)?, t.as_ref()))))
        .collect::<Result<_, ConfigError>>()?;
    let mut apps: Vec<&RawSig> = raw.iter().collect();
    crate::order::by_name(&mut apps, |a| a.0.as_bytes());
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
            // Not under another ID a value the app deactivated: the Secret ID is
            // not signed, so the value would verify there all the same.
            for s in b.secrets.iter().filter(|s| s.active) {
                if !secrets
                    .iter()
                    .any(|x| x.id == s.id || (!x.active && x.replay_tag == s.replay_tag))
                {
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
        let min_sdk = own.min_sdk.or(base.and_then(|b| b.min_sdk));
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
                min_sdk_android: min_sdk.and_then(|m| m.0),
                min_sdk_ios: min_sdk.and_then(|m| m.1),
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
    // (Tag -> index of its (window, capacity).)
    let mut shared: HashMap<String, usize> = HashMap::new();
    let mut bounds: Vec<(u64, usize)> = Vec::new();
    for s in out.values().filter(|s| s.replay_enabled) {
        for sec in &s.secrets {
            let i = *shared.entry(sec.replay_tag.clone()).or_insert_with(|| {
                bounds.push((0, 0));
                bounds.len() - 1
            });
            if let Some(e) = bounds.get_mut(i) {
                e.0 = e.0.max(s.replay_window);
                e.1 = e.1.max(s.replay_capacity);
            }
        }
    }
    for s in out.values_mut() {
        for sec in &mut s.secrets {
            let (window, capacity) = shared
                .get(&sec.replay_tag)
                .and_then(|&i| bounds.get(i))
                .copied()
                .unwrap_or((s.replay_window, s.replay_capacity));
            sec.replay_window = window;
            sec.replay_per_key = replay::per_key(capacity);
        }
    }
    Ok((out, names))
}

const OUTCOMES_EXPECTED: &str = "unknown outcome (expected default, missing, wrong, inactive, \
     expired, insufficient_scope, wrong_kind, origin_denied, bad_request, unknown_endpoint, \
     ambiguous, body_too_large, method_not_allowed or unsupported_media_type)";

fn custom_profile(path: &str, name: &str, m: &Named<ReplyConfig>) -> Result<Profile, ConfigError> {
    let mut replies: Vec<Option<Reply>> = vec![None; Outcome::ALL.len()];
    let mut default: Option<Reply> = None;
    for (key, rv) in m.iter() {
        let p = format!("{path}.{key}");
        let outcome = if key == "default" {
            None
        } else {
            match Outcome::parse(key) {
                Some(Outcome::Allowed) | None => return err(p, OUTCOMES_EXPECTED),
                Some(o) => Some(o),
            }
        };
        let r = reply(&p, rv, 200, "an HTTP status between 200 and 599")?;
        match outcome {
            None => default = Some(r),
            Some(o) => replies[o.index()] = Some(r),
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

/// `token_source`.
fn compile_source(o: &TokenSourceConfig) -> Result<TokenSource, ConfigError> {
    let f = |key: &str| format!("token_source.{key}");
    if o.cluster.is_empty() {
        return err(f("cluster"), "must not be empty");
    }
    if o.path.is_empty() {
        return err(f("path"), "must not be empty");
    }
    if !o.path.starts_with('/') {
        return err(f("path"), "must start with /");
    }
    let name = o.name.as_deref().unwrap_or("default");
    if !name
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    {
        return err(f("name"), "use letters, digits, - and _ only");
    }
    let mut headers = Vec::new();
    for (k, v) in o.headers.iter().flat_map(|h| h.iter()) {
        if !is_header_name(k) || k.starts_with(':') {
            return err(
                format!("token_source.headers.{k}"),
                "not a valid HTTP header name",
            );
        }
        // A value is sent as written: CR or LF would split it into headers of its
        // own (or be refused by the host at every fetch), NUL ends it early.
        if v.bytes().any(|b| matches!(b, b'\r' | b'\n' | 0)) {
            return err(
                format!("token_source.headers.{k}"),
                "the value must not hold CR, LF or NUL",
            );
        }
        headers.push((k.to_ascii_lowercase(), v.to_string()));
    }
    let period_ms = o.period.map_or(DEFAULT_PERIOD_MS, |m| m.0);
    if period_ms < 100 {
        return err(f("period"), "must be at least 100ms");
    }
    let timeout_ms = o.timeout.map_or(DEFAULT_TIMEOUT_MS, |m| m.0);
    if timeout_ms == 0 {
        return err(f("timeout"), "must be more than 0");
    }
    // A set is confirmed once a period, the answer coming up to `timeout` later: a
    // shorter budget makes every set stale between two fetches (503s, with
    // `when_stale: reject`, for a source that answers every time).
    if let Some(stale) = o.stale_after {
        if stale.0 <= period_ms.saturating_add(timeout_ms) {
            return err(
                f("stale_after"),
                format!(
                    "must be longer than period plus timeout ({}ms): a set is confirmed once a period",
                    period_ms.saturating_add(timeout_ms)
                ),
            );
        }
    }
    let max_bytes = match o.max_bytes {
        None => DEFAULT_MAX_BYTES,
        Some(v) => size(&f("max_bytes"), v, 1, 1 << 31, "a size in bytes")?,
    };
    let bundle_key = match o.bundle_key.as_deref() {
        None => None,
        Some(k) => match hex::decode(k) {
            // One byte repeated (all zeros: a placeholder left in) is no key.
            Ok(k) if k.len() >= 16 && k.iter().any(|&b| b != k[0]) => Some(k),
            Ok(k) if k.len() >= 16 => {
                return err(
                    f("bundle_key"),
                    "one byte repeated is no key (a placeholder?)",
                )
            }
            _ => return err(f("bundle_key"), "expected at least 16 bytes as hexadecimal"),
        },
    };
    let stale_rejects = o.when_stale == Some(model::WhenStale::Reject);
    if stale_rejects && o.stale_after.is_none() {
        return err(f("when_stale"), "needs stale_after");
    }
    Ok(TokenSource {
        apps_from_set: o.apps_from_set.unwrap_or(false),
        name: name.to_string(),
        cluster: o.cluster.to_string(),
        path: o.path.to_string(),
        authority: o.authority.as_deref().unwrap_or(&o.cluster).to_string(),
        headers,
        period_ms,
        timeout_ms,
        max_bytes,
        bundle_key,
        stale_after_ms: o.stale_after.map(|m| m.0),
        stale_rejects,
        before_first_inline: o.before_first == Some(model::BeforeFirst::Inline),
        role: match o.role {
            None | Some(model::RoleName::Auto) => Role::Auto,
            Some(model::RoleName::Fetcher) => Role::Fetcher,
            Some(model::RoleName::Reader) => Role::Reader,
        },
        retry_after_s: o.retry_after.map_or(period_ms.div_ceil(1000), |d| d.0),
        shared_lookup: o.lookup == Some(model::Lookup::Shared),
    })
}

#[cfg(test)]
mod tests {
    use crate::config::parse;
    use crate::decision;
    use crate::metrics::Counter;
    use crate::policy::{Outcome, Policy};
    use crate::request::RequestView;

    fn view(method: &str, path: &str) -> RequestView {
        RequestView::from_headers(vec![
            (":method".into(), method.as_bytes().to_vec()),
            (":path".into(), path.as_bytes().to_vec()),
            (":authority".into(), b"collector".to_vec()),
        ])
    }

    /// The names a decision's series resolve to.
    fn series(p: &Policy, d: &decision::Decision) -> Vec<String> {
        d.stats.iter().map(|i| p.stat_names[*i].clone()).collect()
    }

    #[test]
    fn decision_series_by_route_are_defined_once_per_label() {
        let p = parse(
            br#"{"presets": ["adjust"], "routes": [
                {"path": "/api/v1/event", "profile": "jitsu"},
                {"path": "/x", "profile": "swaarm", "name": "partner x"}]}"#,
        )
        .unwrap();
        let name = |route: &str, o: Outcome| {
            format!(
                "s2s_guard.requests_by_route.route.{route}.outcome.{}",
                o.name()
            )
        };
        for r in &p.routes {
            for o in Outcome::ALL {
                let want = name(&super::route_label(r), o);
                assert_eq!(p.stat_names[p.route_stat(Some(r), o)], want);
            }
        }
        for o in Outcome::ALL {
            assert_eq!(p.stat_names[p.route_stat(None, o)], name("none", o));
        }
        let labels: Vec<String> = p.routes.iter().map(super::route_label).collect();
        assert!(labels.contains(&"adjust_event".to_string()));
        // A path-like default name and a name with a space: metric-safe labels.
        assert!(labels.contains(&"_api_v1_event".to_string()), "{labels:?}");
        assert!(labels.contains(&"partner_x".to_string()));
        // Every series once: the App Secret and shadow `other` series (no apps here),
        // (routes + none) x outcomes.
        let mut names = p.stat_names.clone();
        names.sort();
        names.dedup();
        assert_eq!(names.len(), p.stat_names.len());
        assert_eq!(
            p.stat_names.len(),
            4 + (p.routes.len() + 1) * Outcome::ALL.len() + 1
        );
        assert!(p.warnings.is_empty(), "{:?}", p.warnings);
    }

    #[test]
    fn routes_sharing_a_label_share_a_series_and_different_names_are_warned() {
        // One name for the GET and the POST route of a path: one series, intended.
        let same = parse(
            br#"{"routes": [
                {"path": "/e", "profile": "adjust", "name": "e", "methods": ["GET"]},
                {"path": "/e", "profile": "adjust", "name": "e", "methods": ["POST"]}]}"#,
        )
        .unwrap();
        assert_eq!(same.routes[0].stats_base, same.routes[1].stats_base);
        assert!(same.warnings.is_empty(), "{:?}", same.warnings);
        // Two names that become one label, and a route named like the no-route label.
        let clash = parse(
            br#"{"routes": [
                {"path": "/a", "profile": "adjust", "name": "a.b"},
                {"path": "/b", "profile": "adjust", "name": "a_b"},
                {"path": "/c", "profile": "adjust", "name": "none"}]}"#,
        )
        .unwrap();
        assert_eq!(clash.routes[0].stats_base, clash.routes[1].stats_base);
        assert_eq!(
            clash.routes[2].stats_base, clash.unrouted_stats_base,
            "counted with the decisions on no route"
        );
        assert_eq!(
            clash.warnings,
            vec![
                "route \"a_b\" is counted with route \"a.b\" in s2s_guard.requests_by_route (label \"a_b\"): give it a distinct name".to_string(),
                "route \"none\" is counted with the decisions on no route in s2s_guard.requests_by_route (label \"none\"): give it a distinct name".to_string(),
            ]
        );
    }

    #[test]
    fn shadow_series_by_app_are_bounded_like_the_app_secret_statistics() {
        let p = parse(
            br#"{"presets": ["adjust"], "max_stats_apps": 2,
                "apps": {"c": {}, "a.x": {}, "b": {"authentication": true}}}"#,
        )
        .unwrap();
        let name = |app: Option<&[u8]>| p.stat_names[p.shadow_stat(app)].clone();
        // In name order: "a.x" and "b" get their own series, "c" shares "other".
        assert_eq!(name(Some(b"a.x")), "s2s_guard.per_app.app.a_x.shadow");
        assert_eq!(name(Some(b"b")), "s2s_guard.per_app.app.b.shadow");
        for app in [Some(&b"c"[..]), Some(b"unlisted"), Some(b"\xff"), None] {
            assert_eq!(name(app), "s2s_guard.per_app.app.other.shadow", "{app:?}");
        }
        let shadow: Vec<&String> = p
            .stat_names
            .iter()
            .filter(|n| n.starts_with("s2s_guard.per_app."))
            .collect();
        assert_eq!(shadow.len(), 3, "{shadow:?}");
        // A shadow decision counts the app's series beside `shadow.outcome.*`; an
        // enforcing app's refusal does not.
        let d = decision::decide(&p, &view("GET", "/event?s2s=1&app_token=a.x"), None, 0);
        assert_eq!(d.enforcement, decision::Enforcement::Shadow);
        assert_eq!(
            series(&p, &d),
            [
                "s2s_guard.requests_by_route.route.adjust_event.outcome.missing",
                "s2s_guard.per_app.app.a_x.shadow"
            ]
        );
        let d = decision::decide(&p, &view("GET", "/event?s2s=1&app_token=b"), None, 0);
        assert_eq!(d.enforcement, decision::Enforcement::Enforced);
        assert_eq!(series(&p, &d).len(), 1);
        let d = decision::decide(&p, &view("GET", "/event?s2s=1"), None, 0);
        assert_eq!(series(&p, &d)[1], "s2s_guard.per_app.app.other.shadow");
        // The default bound.
        let p = parse(br#"{"presets": ["adjust"]}"#).unwrap();
        assert_eq!(
            p.stat_names[p.shadow_stat(Some(b"x"))],
            "s2s_guard.per_app.app.other.shadow"
        );
    }

    #[test]
    fn every_decision_counts_once_by_scope_and_once_by_route() {
        let p = parse(
            br#"{"presets": ["adjust"], "unknown_paths": "reject", "app_authentication_default": true}"#,
        )
        .unwrap();
        let d = decision::decide(&p, &view("POST", "/event?s2s=1&app_token=abc"), None, 0);
        assert_eq!(d.outcome, Outcome::Missing);
        assert_eq!(
            series(&p, &d),
            ["s2s_guard.requests_by_route.route.adjust_event.outcome.missing"]
        );
        // Rejected on no route.
        let d = decision::decide(&p, &view("GET", "/nope"), None, 0);
        assert_eq!(
            series(&p, &d),
            ["s2s_guard.requests_by_route.route.none.outcome.unknown_endpoint"]
        );
        // A method the route does not list: refused, on that route.
        let d = decision::decide(&p, &view("DELETE", "/session"), None, 0);
        assert_eq!(
            series(&p, &d),
            ["s2s_guard.requests_by_route.route.adjust_session.outcome.method_not_allowed"]
        );
        // The by-route series mirror `Counter::Requests`, one for one.
        for d in [
            decision::decide(&p, &view("POST", "/event?s2s=1"), None, 0),
            decision::decide(&p, &view("GET", "/%2e%2e/event"), None, 0),
        ] {
            let by_scope = d
                .counters
                .iter()
                .filter(|c| matches!(c, Counter::Requests(..)))
                .count();
            assert_eq!(by_scope, 1, "{d:?}");
            assert_eq!(d.stats.len(), 1, "{d:?}");
        }
        // Passed through unknown paths count in neither.
        let p = parse(br#"{"presets": ["adjust"]}"#).unwrap();
        let d = decision::decide(&p, &view("GET", "/nope"), None, 0);
        assert!(d.stats.is_empty() && d.counters[..] == [Counter::Unmatched]);
    }
}
