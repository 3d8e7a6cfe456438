//! Presets and built-in profiles as data: the reference systems' endpoints and
//! answers (Adjust, Swaarm, Jitsu), which a configuration names instead of writing
//! them out. Pure data builders: no parsing, no validation.

use crate::policy::{
    BodyRule, Checks, Outcome, PathMatch, Profile, Reply, RequiredParam, Route, Source,
    UpstreamHeaders,
};
use crate::token::Scope;

use super::model::Preset;

/// A preset's routes, with their realm and profile names (the profile index is
/// set by the compiler).
pub fn routes(preset: Preset) -> Vec<Route> {
    let routes = match preset {
        Preset::Adjust => adjust_routes(),
        Preset::AdjustSdk => adjust_sdk_routes(),
        Preset::Swaarm => swaarm_routes(),
        Preset::Jitsu => jitsu_routes(),
    };
    // Each system's routes are its own realm: its tokens open only them.
    let realm = profile_of(preset);
    routes
        .into_iter()
        .map(|r| Route {
            realm: realm.to_string(),
            ..r
        })
        .collect()
}

/// The configuration spelling of a preset.
pub fn name(preset: Preset) -> &'static str {
    match preset {
        Preset::Adjust => "adjust",
        Preset::AdjustSdk => "adjust_sdk",
        Preset::Swaarm => "swaarm",
        Preset::Jitsu => "jitsu",
    }
}

/// The built-in profile (and realm) of a preset's routes.
pub fn profile_of(preset: Preset) -> &'static str {
    match preset {
        Preset::Adjust | Preset::AdjustSdk => "adjust",
        Preset::Swaarm => "swaarm",
        Preset::Jitsu => "jitsu",
    }
}

/// The upstream headers s2s-guard owns unless configured otherwise.
pub fn default_headers() -> UpstreamHeaders {
    UpstreamHeaders {
        token_id: "x-s2s-guard-token-id".into(),
        app: "x-s2s-guard-app".into(),
        reason: "x-s2s-guard-rejection".into(),
        authorization: "authorization".into(),
    }
}

// ---- profiles -------------------------------------------------------------------

pub fn text(status: u16, body: &str) -> Reply {
    Reply {
        status,
        body: body.as_bytes().into(),
        content_type: "text/plain; charset=utf-8".into(),
    }
}

fn json(status: u16, message: &str) -> Reply {
    Reply {
        status,
        // As `json!({"message": message})` writes it, without building a Value.
        body: format!(
            "{{\"message\":{}}}",
            serde_json::to_string(message).unwrap_or_default()
        )
        .as_bytes()
        .into(),
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
pub fn builtin_profiles() -> Vec<Profile> {
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

// ---- presets ----------------------------------------------------------------------

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
        stats_base: 0,
        skeleton: Vec::new(),
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

/// Swaarm S2S: raw `Authorization` or `s2s_token`; `/s2sevent` takes `token`,
/// `/click` `s2stoken`.
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
        Route {
            // "Attribution Advanced": the S2S call that creates a click id, its
            // token in `s2stoken` (GET in the document).
            methods: methods(&["GET", "POST"]),
            sources: vec![Source::Query(b"s2stoken".to_vec()), Source::Authorization],
            required: required(&[("user_ip", false), ("user_ua", false)]),
            ..route("swaarm_click", "/click")
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
        // Jitsu's Segment-compatible endpoints (`/api/v1/segment`, `/v1/batch`,
        // `/compat`, `/compat/v1/batch`) take server secrets; its dry run either
        // kind. (Its tracking pixel, `/api/v1/p.gif`, has no token check in Jitsu:
        // the key inside its `data` only picks destinations.)
        Route {
            path: PathMatch::Prefix(b"/api/v1/segment".to_vec()),
            ..server("jitsu_segment", "/api/v1/segment")
        },
        Route {
            accept_client: true,
            ..server("jitsu_events_dry_run", "/api/v1/events/dry-run")
        },
    ]
}
