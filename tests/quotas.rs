//! Quotas with Envoy's rate limit filters (envoy/quotas.yaml, docs/quotas.md) count
//! what s2s-guard's identity headers say. Through the `.wasm` with the shipped
//! configurations: every decided request carries the verified token id and app to the
//! filters after it (form-body routes too, with hold_headers_for_body and Envoy's
//! allow_on_headers_stop_iteration), and no client can put its own values there.

use std::path::PathBuf;

use s2s_guard_host::{load_dist, Host, HostOptions, Request, Verdict};

const TOKEN: &str = "v8s5opi0zs45607l8h8c48wak2vxb5oe";
const EVENT: &str =
    "s2s=1&app_token=abc123kuvada7&event_token=xyzklm&gps_adid=11110111-2345-6789-1122-000000005678";

/// The HTTP filter's s2s-guard configuration in an Envoy file (role "reader").
fn filter_config(file: &str) -> String {
    let yaml =
        std::fs::read_to_string(PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(file)).unwrap();
    yaml.lines()
        .filter_map(|l| l.trim().strip_prefix("value: '{"))
        .map(|v| format!("{{{}", v.strip_suffix('\'').unwrap()).replace("''", "'"))
        .find(|c| c.contains("\"role\": \"reader\""))
        .unwrap_or_else(|| panic!("{file}: no reader configuration"))
}

fn host(file: &str, allow_on_headers_stop_iteration: bool) -> Host {
    Host::new(
        &load_dist("s2s-guard.wasm"),
        HostOptions {
            workers: 2,
            plugin_config: filter_config(file).into_bytes(),
            clusters: vec!["token_service".into()],
            allow_on_headers_stop_iteration,
            ..HostOptions::default()
        },
    )
    .unwrap()
}

fn form_event() -> Request {
    Request::post("/event")
        .header("authorization", format!("Bearer {TOKEN}"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(EVENT)
}

fn identity(h: &mut Host, r: Request) -> (Verdict, Option<String>, Option<String>) {
    let o = h.send(r);
    let up = o.upstream.unwrap_or_default();
    let get = |n: &str| {
        up.header(n)
            .map(|v| String::from_utf8_lossy(v).into_owned())
    };
    (
        o.verdict,
        get("x-s2s-guard-token-id"),
        get("x-s2s-guard-app"),
    )
}

#[test]
fn decided_requests_carry_the_verified_identity_to_the_quota_filters() {
    let mut h = host("envoy/quotas.yaml", true);
    // Token in a header, event in the query: decided at the headers.
    let (v, token, app) = identity(
        &mut h,
        Request::post(&format!("/event?{EVENT}"))
            .header("authorization", format!("Bearer {TOKEN}")),
    );
    assert_eq!(v, Verdict::Forwarded);
    assert_eq!(token.as_deref(), Some("bootstrap-adjust"));
    assert_eq!(app.as_deref(), Some("abc123kuvada7"));
    // Event in a form body: decided at the end of the body, headers held until then.
    let (v, token, app) = identity(&mut h, form_event());
    assert_eq!(v, Verdict::Forwarded);
    assert_eq!(token.as_deref(), Some("bootstrap-adjust"));
    assert_eq!(app.as_deref(), Some("abc123kuvada7"));
}

#[test]
fn without_held_headers_form_body_requests_carry_no_identity() {
    // envoy.yaml: no hold_headers_for_body. The headers go on before the body is read,
    // so the quota filters would see no identity: docs/quotas.md says so.
    let mut h = host("envoy/envoy.yaml", false);
    let (v, token, _) = identity(&mut h, form_event());
    assert_eq!(v, Verdict::Forwarded);
    assert_eq!(token, None);
}

#[test]
fn clients_cannot_charge_or_spare_a_quota() {
    let mut h = host("envoy/quotas.yaml", true);
    // A path no route matches passes, without the client's identity headers.
    for (name, value) in [
        ("x-s2s-guard-token-id", "bootstrap-adjust"),
        ("x-s2s-guard-app", "abc123kuvada7"),
    ] {
        let (v, token, app) = identity(&mut h, Request::get("/healthz").header(name, value));
        assert_eq!(v, Verdict::Forwarded);
        assert_eq!((token, app), (None, None), "{name} passed through");
    }
    // A verified request carries the verified values, not the client's.
    let (_, token, app) = identity(
        &mut h,
        Request::post(&format!("/event?{EVENT}"))
            .header("authorization", format!("Bearer {TOKEN}"))
            .header("x-s2s-guard-token-id", "someone-else")
            .header("x-s2s-guard-app", "other-app"),
    );
    assert_eq!(token.as_deref(), Some("bootstrap-adjust"));
    assert_eq!(app.as_deref(), Some("abc123kuvada7"));
    // A refused request never reaches the filters after s2s-guard.
    let o = h.send(
        Request::post(&format!("/event?{EVENT}"))
            .header("authorization", "Bearer nope")
            .header("x-s2s-guard-token-id", "bootstrap-adjust"),
    );
    assert!(o.is_local());
    assert!(o.upstream.is_none());
}
