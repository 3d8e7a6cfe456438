//! Requests whose framing announces no body, on hosts that report the end of the
//! stream late (nginx's ngx_wasm_module passes `end_of_stream` false with the
//! headers of every request): decided at the headers as bodiless when the framing
//! says so, and refused if bytes arrive after all. Through the compiled `.wasm`.

mod common;

use common::WasmRunner;
use s2s_guard_host::{header_value, Request};

const TOKEN: &str = "v8s5opi0zs45607l8h8c48wak2vxb5oe";
const APP: &str = "abc123kuvada7";

fn config() -> String {
    format!(
        r#"{{"presets": ["adjust"], "app_authentication_default": true,
  "tokens": [{{"id": "adj-events", "secret": "{TOKEN}", "app": "{APP}", "scopes": ["events"]}}]}}"#
    )
}

fn event(token: Option<&str>) -> Request {
    let mut r = Request::post(&format!("/event?s2s=1&app_token={APP}&event_token=xyzklm"));
    if let Some(t) = token {
        r.headers
            .push(("authorization".into(), format!("Bearer {t}").into_bytes()));
    }
    r.headers_never_end_stream = true;
    r
}

#[test]
fn late_end_of_stream_with_empty_framing_is_decided_at_the_headers() {
    let mut w = WasmRunner::new();
    let cfg = config();
    let mut rows = Vec::new();
    let cl0 = |token: Option<&str>| {
        let mut r = event(token);
        r.headers.push(("content-length".into(), b"0".to_vec()));
        r
    };
    // Content-Length: 0 announces no body: decided at the headers.
    rows.push((
        "http1, content-length 0, valid",
        cl0(Some(TOKEN)),
        true,
        200,
    ));
    // Adjust answers rejected S2S requests with 202 and a reason.
    rows.push(("http1, content-length 0, missing", cl0(None), false, 202));
    rows.push((
        "http1, content-length 0, wrong",
        cl0(Some("nope")),
        false,
        202,
    ));
    rows.push((
        "http2, content-length 0",
        cl0(Some(TOKEN)).http2(),
        true,
        200,
    ));
    // No framing header: a body may follow (Envoy removes Transfer-Encoding
    // before the filters, so a chunked body looks like this), so the form is
    // awaited; none is announced as a form: refused as unreadable.
    rows.push(("http1, no framing", event(Some(TOKEN)), false, 415));
    rows.push(("http2, no framing", event(Some(TOKEN)).http2(), false, 415));
    let mut failures = Vec::new();
    for (name, req, forwarded, status) in rows {
        let o = w.run(&cfg, &req);
        if o.forwarded != forwarded || o.status != status {
            failures.push(format!(
                "{name}: forwarded={} status={} body={:?}",
                o.forwarded,
                o.status,
                String::from_utf8_lossy(&o.body)
            ));
        }
        // One request, one outcome, counted once the request ended.
        let outcomes: i64 = (o.counters.iter())
            .filter(|(k, _)| k.starts_with("s2s_guard.requests.outcome."))
            .map(|(_, v)| v)
            .sum();
        assert_eq!(outcomes, 1, "{name}: {:?}", o.counters);
        if forwarded {
            assert_eq!(
                o.counters
                    .get("s2s_guard.requests.outcome.allowed.scope.events"),
                Some(&1),
                "{name}: {:?}",
                o.counters
            );
            if let Some(up) = &o.upstream {
                assert_eq!(
                    header_value(up, "x-s2s-guard-token-id"),
                    Some(&b"adj-events"[..]),
                    "{name}"
                );
                assert_eq!(header_value(up, "authorization"), None, "{name}");
            }
        }
    }
    assert!(failures.is_empty(), "{failures:#?}");
}

#[test]
fn bytes_after_an_announced_empty_body_are_refused() {
    let mut w = WasmRunner::new();
    // In every mode that refuses: flag mode cannot mark a request whose headers
    // went upstream already, so it answers too (found by a cold attack).
    for extra in [
        "",
        r#""mode": "flag", "#,
        r#""mode": "flag", "hold_headers_for_body": true, "#,
    ] {
        let cfg = config().replacen('{', &format!("{{{extra}"), 1);
        for (name, protected_in_body) in [
            ("valid token, other app in body", true),
            ("no token, app in body", false),
        ] {
            // Content-Length 0, then a body naming another app (a second reading).
            let mut r = if protected_in_body {
                event(Some(TOKEN))
            } else {
                let mut r = Request::post("/event?s2s=1&app_token=unprotected1");
                r.headers_never_end_stream = true;
                r
            };
            r = r.http2();
            r.headers.push(("content-length".into(), b"0".to_vec()));
            r.headers.push((
                "content-type".into(),
                b"application/x-www-form-urlencoded".to_vec(),
            ));
            r.body = if protected_in_body {
                b"app_token=otherapp1".to_vec()
            } else {
                format!("app_token={APP}").into_bytes()
            };
            let o = w.run(&cfg, &r);
            assert!(!o.forwarded, "{extra}{name}: forwarded: {o:?}");
            if !protected_in_body {
                // Refused at its headers already (every app is protected here).
                continue;
            }
            assert_eq!(
                o.status,
                400,
                "{extra}{name}: {:?}",
                String::from_utf8_lossy(&o.body)
            );
            assert_eq!(
                o.counters.get("s2s_guard.ambiguous.class.body_length"),
                Some(&1),
                "{extra}{name}: {:?}",
                o.counters
            );
            // Allowed at its headers, then refused: counted once, as refused.
            let outcomes: Vec<_> = (o.counters.iter())
                .filter(|(k, _)| k.starts_with("s2s_guard.requests.outcome."))
                .collect();
            assert_eq!(
                outcomes,
                vec![(
                    &"s2s_guard.requests.outcome.ambiguous.scope.events".to_string(),
                    &1
                )],
                "{extra}{name}"
            );
        }
    }
}

/// `log_level`: below `info` a rejected request writes no line (and costs no
/// formatting); at the default it writes one, naming no secret.
#[test]
fn log_level_silences_decision_lines() {
    use s2s_guard_host::LogLevel;
    let mut w = WasmRunner::new();
    let quiet = config().replacen('{', r#"{"log_level": "warn", "#, 1);
    let mut wrong = event(Some("not-the-token"));
    wrong.headers.push(("content-length".into(), b"0".to_vec()));
    for (cfg, lines) in [(config(), 1), (quiet, 0)] {
        let before = w.host(&cfg).logs_at(LogLevel::Info).len();
        let o = w.run(&cfg, &wrong);
        assert_eq!(o.status, 202);
        let logs = w.host(&cfg).logs_at(LogLevel::Info);
        let new: Vec<&String> = logs[before..]
            .iter()
            .filter(|l| l.contains("wrong_token") || l.contains("wrong"))
            .collect();
        assert_eq!(new.len(), lines, "{cfg}: {new:?}");
        assert!(new.iter().all(|l| !l.contains("not-the-token")), "{new:?}");
    }
}

/// A request forwarded at its headers whose trailers then refuse it is counted
/// once, as refused (not allowed and refused).
#[test]
fn a_request_refused_in_its_trailers_counts_once() {
    let mut w = WasmRunner::new();
    let cfg = config();
    // No body (Content-Length: 0), so decided at the headers; trailers follow.
    let bodiless = || {
        let mut r = event(Some(TOKEN));
        r.headers_never_end_stream = false;
        r.headers.push(("content-length".into(), b"0".to_vec()));
        r.http2()
    };
    let r = bodiless().trailer("authorization", "Bearer nope");
    let o = w.run(&cfg, &r);
    let outcomes: Vec<_> = (o.counters.iter())
        .filter(|(k, _)| k.starts_with("s2s_guard.requests.outcome."))
        .collect();
    assert_eq!(outcomes.len(), 1, "{:?}", o.counters);
    assert!(
        !outcomes[0].0.contains(".allowed."),
        "{:?} (forwarded={})",
        o.counters,
        o.forwarded
    );
    // Without the trailer, the same request is counted once, as allowed.
    let o = w.run(&cfg, &bodiless().trailer("x-checksum", "1"));
    assert_eq!(
        o.counters
            .get("s2s_guard.requests.outcome.allowed.scope.events"),
        Some(&1),
        "{:?}",
        o.counters
    );
}

/// Flag mode marks a refused form request in its body. A request whose trailers
/// come with no body before them has no buffered body to mark (the host refuses
/// the change, and the SDK would panic on its answer: a trap found by a cold
/// attack): it is answered as enforcement would answer it, never forwarded
/// unmarked. With a body before the trailers, the mark goes in.
#[test]
fn flag_mode_with_trailers_and_no_body_answers_instead_of_marking() {
    let mut w = WasmRunner::new();
    let cfg = config().replacen('{', r#"{"mode": "flag", "#, 1);
    // Only the flag in the query: with more, the request is refused at its headers
    // (`query_with_body`, the headers go upstream before the body decides).
    let form = |body: &[u8]| {
        let mut r = Request::post("/event?s2s=1")
            .http2()
            .header("content-type", "application/x-www-form-urlencoded")
            .trailer("x-checksum", "1");
        r.body = body.to_vec();
        r
    };
    let o = w.run(&cfg, &form(b""));
    assert!(!o.forwarded, "{o:?}");
    assert_eq!(o.status, 202, "{:?}", String::from_utf8_lossy(&o.body));
    assert_eq!(
        o.counters.get("s2s_guard.rejected.outcome.missing"),
        Some(&1),
        "{:?}",
        o.counters
    );
    assert_eq!(o.counters.get("s2s_guard.flagged.outcome.missing"), None);

    let o = w.run(&cfg, &form(b"event_token=xyzklm"));
    assert!(o.forwarded, "{o:?}");
    let body = o.upstream_body.unwrap_or_default();
    assert!(
        body.starts_with(b"s2s_guard_rejection=missing"),
        "{:?}",
        String::from_utf8_lossy(&body)
    );
    assert_eq!(
        o.counters.get("s2s_guard.flagged.outcome.missing"),
        Some(&1)
    );
}
