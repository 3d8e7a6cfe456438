//! The series the configuration names (decisions by route, shadow decisions by app)
//! and the replay memory's fill gauge, through the compiled `.wasm` in the test host:
//! their names as Envoy shows them, their values after real requests, several
//! workers writing to one process-wide stat.

use s2s_guard_host::{load_dist, CallReply, Host, HostOptions, MetricKind, Request};

const TOKEN: &str = "s2s-secret-1";

fn host(config: &str, workers: usize) -> Host {
    Host::new(
        &load_dist("s2s-guard.wasm"),
        HostOptions {
            workers,
            plugin_config: config.as_bytes().to_vec(),
            clusters: vec!["token_service".into()],
            ..HostOptions::default()
        },
    )
    .unwrap_or_else(|e| panic!("{e}"))
}

fn adjust() -> String {
    format!(
        r#"{{"presets": ["adjust"], "unknown_paths": "reject",
          "apps": {{"abc123": {{"authentication": true}}, "offapp": {{}}, "sessions-only": {{"authentication": true, "authentication_scopes": ["sessions"]}}}},
          "tokens": [{{"id": "t1", "secret": "{TOKEN}", "app": "abc123", "scopes": ["events"]}}],
          "routes": [{{"path": "/partner/v1/event", "profile": "swaarm", "credentials": ["header:x-api-key"], "realm": "adjust"}}]}}"#
    )
}

fn by_route(route: &str, outcome: &str) -> String {
    format!("s2s_guard.requests_by_route.route.{route}.outcome.{outcome}")
}

#[test]
fn decisions_are_counted_by_route_and_outcome() {
    let mut h = host(&adjust(), 2);
    let event = |q: &str| Request::post(&format!("/event?s2s=1&app_token=abc123&event_token=e{q}"));
    assert_eq!(
        h.send(event("").header("authorization", format!("Bearer {TOKEN}")))
            .status,
        200
    );
    assert_eq!(h.send(event("")).status, 202, "missing");
    assert_eq!(
        h.send(event("").header("authorization", "Bearer nope"))
            .status,
        202,
        "wrong"
    );
    let session = Request::post("/session?s2s=1&app_token=abc123")
        .header("authorization", format!("Bearer {TOKEN}"));
    assert_eq!(h.send(session).status, 401, "insufficient scope");
    assert_eq!(h.send(Request::new("DELETE", "/event")).status, 405);
    assert_eq!(h.send(Request::get("/nope")).status, 404, "unknown path");
    assert_eq!(
        h.send(Request::get("/partner/v1/event").header("x-api-key", TOKEN))
            .status,
        200,
        "a route named by its path"
    );
    for (route, outcome, n) in [
        ("adjust_event", "allowed", 1),
        ("adjust_event", "missing", 1),
        ("adjust_event", "wrong", 1),
        ("adjust_event", "method_not_allowed", 1),
        ("adjust_session", "insufficient_scope", 1),
        ("none", "unknown_endpoint", 1),
        ("_partner_v1_event", "allowed", 1),
        ("adjust_session", "allowed", 0),
        ("adjust_ad_revenue", "wrong", 0),
    ] {
        assert_eq!(
            h.metric(&by_route(route, outcome)),
            Some(n),
            "{route} {outcome}"
        );
    }
    // The same decisions as by scope, per outcome.
    let total = |prefix: &str| -> i64 {
        h.metrics()
            .iter()
            .filter(|(k, _)| k.starts_with(prefix))
            .map(|(_, v)| v)
            .sum()
    };
    assert_eq!(
        total("wasmcustom.s2s_guard.requests_by_route."),
        total("wasmcustom.s2s_guard.requests.outcome.")
    );
    assert_eq!(total("wasmcustom.s2s_guard.requests_by_route."), 7);
    // Defined at load, for every route and outcome, as counters.
    let m = h
        .metric_record(&by_route("adjust_gdpr_forget_device", "expired"))
        .expect("defined before any request");
    assert_eq!((m.kind, m.value), (MetricKind::Counter, 0));
}

/// While no token set is in force, the configuration's own policy decides requests
/// on no route; they are counted by route all the same.
#[test]
fn decisions_before_the_first_token_set_are_counted_by_route() {
    let cfg = r#"{"presets": ["swaarm"], "unknown_paths": "reject",
      "token_source": {"cluster": "token_service", "path": "/tokens.json", "period": "3s"}}"#;
    let mut h = host(cfg, 1);
    h.set_cluster("token_service", |_| CallReply::ok(503, "down"));
    assert_eq!(h.send(Request::get("/postback")).status, 503, "no set yet");
    assert_eq!(h.send(Request::get("/nope")).status, 404, "unknown path");
    assert_eq!(h.metric(&by_route("none", "unknown_endpoint")), Some(1));
    assert_eq!(
        h.metric("s2s_guard.requests.outcome.unknown_endpoint.scope.none"),
        Some(1)
    );
}

fn per_app(app: &str) -> String {
    format!("s2s_guard.per_app.app.{app}.shadow")
}

/// What enforcement would reject, per app: apps whose authentication is off (or
/// off for the endpoint's scope) are counted under their name, requests naming no
/// configured app under `other`.
#[test]
fn shadow_decisions_are_counted_by_app() {
    let mut h = host(&adjust(), 2);
    let event = |app: &str| Request::get(&format!("/event?s2s=1&event_token=e&app_token={app}"));
    for (req, status) in [
        (event("offapp"), 200),
        (event("offapp").header("authorization", "Bearer nope"), 200),
        (event("sessions-only"), 200),
        (event("unlisted"), 200),
        (Request::get("/event?s2s=1&event_token=e"), 200),
        (event("abc123"), 202),
    ] {
        assert_eq!(h.send(req).status, status);
    }
    assert_eq!(h.metric(&per_app("offapp")), Some(2));
    assert_eq!(h.metric(&per_app("sessions-only")), Some(1));
    assert_eq!(
        h.metric(&per_app("other")),
        Some(2),
        "unlisted and none named"
    );
    assert_eq!(
        h.metric(&per_app("abc123")),
        Some(0),
        "enforced: not shadow"
    );
    assert_eq!(h.metric("s2s_guard.shadow.outcome.missing"), Some(4));
    assert_eq!(h.metric("s2s_guard.shadow.outcome.wrong"), Some(1));
    assert_eq!(h.metric("s2s_guard.rejected.outcome.missing"), Some(1));
}

/// Apps beyond `max_stats_apps` (in name order) share `other`, as the App Secret
/// statistics do.
#[test]
fn shadow_series_are_bounded_by_max_stats_apps() {
    let cfg = r#"{"presets": ["adjust"], "max_stats_apps": 1, "apps": {"b-app": {}, "a-app": {}}}"#;
    let mut h = host(cfg, 1);
    for app in ["a-app", "b-app"] {
        let r = Request::get(&format!("/event?s2s=1&event_token=e&app_token={app}"));
        assert_eq!(h.send(r).status, 200);
    }
    assert_eq!(h.metric(&per_app("a-app")), Some(1));
    assert_eq!(h.metric(&per_app("b-app")), None, "never defined");
    assert_eq!(h.metric(&per_app("other")), Some(1));
    let defined = h
        .metric_records()
        .into_iter()
        .filter(|m| m.name.starts_with("s2s_guard.per_app."))
        .count();
    assert_eq!(defined, 2);
}
