//! Flag mode against the cold attack of this session's reading changes: a request
//! flag mode cannot mark is answered, never forwarded looking verified or carrying
//! a client's copy of the marker; one request counts one outcome. Through the
//! compiled `.wasm`.

mod common;

use common::WasmRunner;
use s2s_guard_host::{header_value, Request};

const JITSU_SERVER: &str = "5f15eba2-db58-11ea-87d0-0242ac130003";
const JITSU_CLIENT: &str = "bd33c5fa-d69f-11ea-87d0-0242ac130003";
const APP: &str = "abc123kuvada7";

fn config(mode: &str) -> String {
    format!(
        r#"{{"presets": ["adjust", "jitsu"], "mode": "{mode}", "app_authentication_default": true,
  "tokens": [
    {{"id": "adj", "realm": "adjust", "secret": "adjust-token-0123456789", "app": "{APP}", "scopes": ["events"]}},
    {{"id": "jitsu-web", "realm": "jitsu", "client_secret": "{JITSU_CLIENT}",
      "server_secret": "{JITSU_SERVER}", "origins": ["*.abc.com"]}}]}}"#
    )
}

fn outcomes(o: &common::Observed) -> Vec<(String, i64)> {
    (o.counters.iter())
        .filter(|(k, _)| {
            k.starts_with("s2s_guard.requests.outcome.")
                || k.starts_with("s2s_guard.rejected.")
                || k.starts_with("s2s_guard.flagged.")
        })
        .map(|(k, v)| (k.clone(), *v))
        .collect()
}

/// A Jitsu request allowed at its headers whose trailers name a header the
/// decision reads: in flag mode the marker header can no longer be added (the
/// headers went upstream with the identity headers), so it is answered.
#[test]
fn a_trailer_refusal_in_flag_mode_is_answered() {
    let mut w = WasmRunner::new();
    for mode in ["enforce", "flag"] {
        let mut r = Request::post("/api/v1/s2s/event")
            .http2()
            .header("content-type", "application/json")
            .header("x-auth-token", JITSU_SERVER)
            .trailer("x-auth-token", "other");
        r.body = b"{}".to_vec();
        let o = w.run(&config(mode), &r);
        assert!(!o.forwarded, "{mode}: forwarded: {o:?}");
        assert_eq!(o.status, 400, "{mode}");
        assert_eq!(
            outcomes(&o),
            vec![
                ("s2s_guard.rejected.outcome.ambiguous".to_string(), 1),
                (
                    "s2s_guard.requests.outcome.ambiguous.scope.none".to_string(),
                    1
                ),
            ],
            "{mode}"
        );
    }
}

/// A method the route does not take, with a form body holding a client's copy of
/// the marker: flag mode forwards it with its own marker first and no client copy.
#[test]
fn a_wrong_method_in_flag_mode_loses_the_clients_marker() {
    let mut w = WasmRunner::new();
    for method in ["PUT", "PATCH"] {
        let mut r = Request::post(&format!("/event?s2s=1&app_token={APP}"))
            .header("content-type", "application/x-www-form-urlencoded");
        r.method = method.into();
        r.body = b"s2s_guard_rejection=none&event_token=x".to_vec();
        let o = w.run(&config("flag"), &r);
        assert!(o.forwarded, "{method}: {o:?}");
        let body = String::from_utf8(o.upstream_body.clone().unwrap_or_default()).unwrap();
        assert_eq!(
            body, "s2s_guard_rejection=method_not_allowed&event_token=x",
            "{method}"
        );
        let up = o.upstream.as_ref().expect("forwarded");
        assert_eq!(
            header_value(up, "x-s2s-guard-rejection"),
            Some(&b"method_not_allowed"[..]),
            "{method}"
        );
        // Enforce mode answers at the headers.
        let o = w.run(&config("enforce"), &r);
        assert!(!o.forwarded, "{method}: enforce: {o:?}");
    }
}

/// Content-Length: 0 and then a body, in flag mode: answered, counted once as
/// rejected (not also as flagged).
#[test]
fn a_late_body_in_flag_mode_counts_rejected_only() {
    let mut w = WasmRunner::new();
    let mut r = Request::post(&format!("/event?s2s=1&app_token={APP}"))
        .http2()
        .header("content-length", "0")
        .header("content-type", "application/x-www-form-urlencoded");
    r.headers_never_end_stream = true;
    r.body = b"event_token=x".to_vec();
    let o = w.run(&config("flag"), &r);
    assert!(!o.forwarded, "{o:?}");
    let got = outcomes(&o);
    assert!(
        got.iter()
            .all(|(k, _)| !k.starts_with("s2s_guard.flagged.")),
        "{got:?}"
    );
    assert_eq!(
        got.iter()
            .filter(|(k, _)| k.starts_with("s2s_guard.requests.outcome."))
            .count(),
        1,
        "{got:?}"
    );
}

/// A client secret from an origin its token does not allow: the 403 does not tell
/// that origin it may read the answer.
#[test]
fn an_origin_refusal_carries_no_cors_permission() {
    let mut w = WasmRunner::new();
    let mut r = Request::post(&format!("/api/v1/event?token={JITSU_CLIENT}"))
        .header("content-type", "application/json")
        .header("origin", "https://evilabc.com");
    r.body = b"{}".to_vec();
    let o = w.run(&config("enforce"), &r);
    assert_eq!(o.status, 403, "{o:?}");
    assert!(
        !o.response_headers
            .iter()
            .any(|(k, _)| k.eq_ignore_ascii_case("access-control-allow-origin")),
        "{:?}",
        o.response_headers
    );
    // An allowed origin still gets it.
    let mut ok = r.clone();
    ok.headers.retain(|(k, _)| k != "origin");
    ok.headers
        .push(("origin".into(), b"https://www.abc.com".to_vec()));
    let o = w.run(&config("enforce"), &ok);
    assert!(o.forwarded, "{o:?}");
}

/// A request refused before its credential is read (it reads two ways), forwarded
/// in flag mode: every place the route reads a credential from is emptied, so no
/// secret reaches the collector or its logs (cold-attack finding 7).
#[test]
fn a_refused_request_forwarded_in_flag_mode_carries_no_credential() {
    let mut w = WasmRunner::new();
    let cfg = r#"{"mode": "flag", "app_authentication_default": true,
      "routes": [{"name": "collect", "path": "/collect", "methods": ["GET", "POST"],
                  "profile": "swaarm", "realm": "swaarm",
                  "credentials": ["authorization", "header:x-api-key", "query:s2s_token", "form:token"],
                  "single_params": ["user_id"]}],
      "tokens": [{"id": "t", "realm": "swaarm", "secret": "the-secret-0123456789"}]}"#;
    // Query: a repeated decision field; the token in the query, a header and
    // Authorization (under another spelling too).
    let r = Request::get("/collect?s2s_token=the-secret-0123456789&user_id=u&user_id=v&x=1")
        .header("authorization", "the-secret-0123456789")
        .header("x_api_key", "the-secret-0123456789");
    let o = w.run(cfg, &r);
    assert!(o.forwarded, "{o:?}");
    let up = o.upstream.as_ref().expect("forwarded");
    assert_eq!(
        header_value(up, ":path"),
        Some(&b"/collect?user_id=u&user_id=v&x=1"[..])
    );
    for h in ["authorization", "x_api_key", "x-api-key"] {
        assert_eq!(header_value(up, h), None, "{h}");
    }
    assert_eq!(
        header_value(up, "x-s2s-guard-rejection"),
        Some(&b"ambiguous"[..])
    );
    // Form body: the token field, also as an array, as PHP and Rack read `token[]`, is removed; the
    // marker goes first.
    let mut r =
        Request::post("/collect").header("content-type", "application/x-www-form-urlencoded");
    r.body = b"token=the-secret-0123456789&user_id=u&user_id=v&token%5B%5D=x".to_vec();
    let o = w.run(cfg, &r);
    assert!(o.forwarded, "{o:?}");
    let body = String::from_utf8(o.upstream_body.clone().unwrap_or_default()).unwrap();
    assert_eq!(body, "s2s_guard_rejection=ambiguous&user_id=u&user_id=v");
}

/// Flagged without a verified credential, each forwarded in flag mode: two
/// credentials (Authorization joined by Envoy, query beside header), another
/// route's credential, a refused path, a malformed one. Every credential place of
/// every route is emptied (cold attack, session 5, finding 2).
#[test]
fn no_credential_reaches_the_collector_from_a_flagged_request() {
    let mut w = WasmRunner::new();
    let cfg = r#"{"presets": ["adjust", "swaarm", "jitsu"], "mode": "flag",
      "app_authentication_default": true,
      "tokens": [{"id": "adj", "realm": "adjust", "secret": "adjust-token-0123456789",
                  "app": "abc123kuvada7", "scopes": ["events"]},
                 {"id": "sw", "realm": "swaarm", "secret": "swaarm-token-0123456789"},
                 {"id": "jitsu", "realm": "jitsu", "server_secret": "5f15eba2-db58-11ea-87d0-0242ac130003"}]}"#;
    let secrets = [
        "adjust-token-0123456789",
        "swaarm-token-0123456789",
        "5f15eba2",
        "second-one",
    ];
    let cases = [
        Request::get("/event?s2s=1&app_token=abc123kuvada7&event_token=x").header(
            "authorization",
            "Bearer adjust-token-0123456789,Bearer second-one",
        ),
        Request::get("/postback?s2s_token=swaarm-token-0123456789&user_id=u&event_id=e")
            .header("authorization", "second-one"),
        Request::get("/postback?token=swaarm-token-0123456789&user_id=u&event_id=e"),
        Request::get("/s2sevent?s2s_token=swaarm-token-0123456789&user_id=u&user_ip=1.2.3.4"),
        Request::get("/api/v1/s2s/event?token=second-one")
            .header("x-auth-token", "5f15eba2-db58-11ea-87d0-0242ac130003"),
        Request::get("/postback;x?token=swaarm-token-0123456789")
            .header("authorization", "swaarm-token-0123456789"),
        Request::get("/event.json?s2s=1&app_token=abc123kuvada7&s2s_token=second-one")
            .header("authorization", "Bearer adjust-token-0123456789"),
        Request::post("/api/v1/s2s/event")
            .header("content-type", "application/json")
            .header(
                "authorization",
                "Basic NWYxNWViYTItZGI1OC0xMWVhLTg3ZDAtMDI0MmFjMTMwMDAzOg==",
            )
            .header("x-auth-token", "second-one")
            .body("{}"),
    ];
    for r in cases {
        let o = w.run(cfg, &r);
        assert!(o.forwarded, "{} {}: {o:?}", r.method, r.path);
        let up = o.upstream.as_ref().expect("forwarded");
        let rejection = header_value(up, "x-s2s-guard-rejection").or_else(|| {
            o.upstream_body
                .as_ref()
                .filter(|b| b.starts_with(b"s2s_guard_rejection="))
                .map(|b| &b[..])
        });
        assert!(rejection.is_some(), "{}: not marked: {up:?}", r.path);
        let mut seen: String = (up.iter())
            .map(|(k, v)| format!("{k}: {}\n", String::from_utf8_lossy(v)))
            .collect();
        seen.push_str(&String::from_utf8_lossy(
            o.upstream_body.as_deref().unwrap_or_default(),
        ));
        for s in secrets {
            assert!(
                !seen.contains(s),
                "{} {}: {s} reached the collector: {seen}",
                r.method,
                r.path
            );
        }
    }
}

/// A signed SDK route's refusal forwarded marked (no signature, Swaarm secrets in
/// the body and the query): every credential place of every route is emptied
/// there too (cold attack, session 5, second round, finding 1).
#[test]
fn a_flagged_signature_refusal_carries_no_credential() {
    let mut w = WasmRunner::new();
    let cfg = r#"{"presets": ["adjust_sdk", "swaarm"], "mode": "flag",
      "tokens": [{"id": "sw", "realm": "swaarm", "secret": "swaarm-token-0123456789"}],
      "apps": {"abc123kuvada7": {"authentication": true, "signature": {"enforce_signature": true,
               "secrets": [{"id": 1, "info": [1, 2, 3, 4]}]}}}}"#;
    // (Its fields in the body: beside a form body, a query would be refused at the
    // headers, `query_with_body`.)
    let form = Request::post("/session")
        .header("content-type", "application/x-www-form-urlencoded")
        .header("authorization", "Bearer nope")
        .body("app_token=abc123kuvada7&created_at=x&s2s_token=swaarm-token-0123456789&token=swaarm-token-0123456789&x=1");
    let query = Request::get(
        "/session?app_token=abc123kuvada7&s2s_token=swaarm-token-0123456789&TOKEN=swaarm-token-0123456789",
    );
    for r in [form, query] {
        let o = w.run(cfg, &r);
        assert!(o.forwarded, "{}: {o:?}", r.path);
        let up = o.upstream.as_ref().expect("forwarded");
        let mut seen: String = (up.iter())
            .map(|(k, v)| format!("{k}: {}\n", String::from_utf8_lossy(v)))
            .collect();
        let body = String::from_utf8_lossy(o.upstream_body.as_deref().unwrap_or_default());
        seen.push_str(&body);
        assert!(
            seen.contains("missing_signature"),
            "{}: not marked: {seen}",
            r.path
        );
        for s in ["swaarm-token-0123456789", "nope"] {
            assert!(
                !seen.contains(s),
                "{}: {s} reached the collector: {seen}",
                r.path
            );
        }
    }
}

/// Flag mode, refused and forwarded flagged: another realm's credential header
/// (Jitsu's `x-auth-token`, `api_key`) reaches the collector neither in the
/// headers sent before the body decides nor in HTTP/2 trailers (cold attack,
/// session 8, round 2, F5).
#[test]
fn a_flagged_request_carries_no_credential_of_any_route() {
    let mut w = WasmRunner::new();
    let cfg = format!(
        r#"{{"presets": ["adjust", "swaarm", "jitsu"], "mode": "flag", "app_authentication_default": true,
  "tokens": [{{"id": "jitsu-web", "realm": "jitsu", "server_secret": "{JITSU_SERVER}"}}]}}"#
    );
    let form = |path: &str, body: &str| {
        Request::post(path)
            .header("content-type", "application/x-www-form-urlencoded")
            .body(body)
    };
    let cases = [
        form("/postback", "user_id=u&event_id=e")
            .http2()
            .trailer("x-auth-token", JITSU_SERVER),
        form("/event", &format!("s2s=1&app_token={APP}&event_token=x"))
            .http2()
            .trailer("api_key", JITSU_SERVER),
        form("/postback", "user_id=u&event_id=e").header("x-auth-token", JITSU_SERVER),
        form("/postback", "user_id=u&event_id=e").header("X_Auth_Token", JITSU_SERVER),
    ];
    for r in cases {
        let o = w.host(&cfg).send(r.clone());
        let up = o
            .upstream
            .as_ref()
            .unwrap_or_else(|| panic!("{}: not forwarded: {o:?}", r.path));
        let text = |h: &[(String, Vec<u8>)]| -> String {
            h.iter()
                .map(|(k, v)| format!("{k}: {}\n", String::from_utf8_lossy(v)))
                .collect()
        };
        let seen = format!(
            "{}{}{}",
            text(&up.headers),
            text(&up.trailers),
            String::from_utf8_lossy(&up.body)
        );
        assert!(seen.contains("missing"), "{}: not flagged: {seen}", r.path);
        assert!(
            !seen.contains(JITSU_SERVER),
            "{}: a credential reached the collector: {seen}",
            r.path
        );
    }
}
