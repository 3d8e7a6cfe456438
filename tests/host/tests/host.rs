//! The test host's own tests, through real guests: the probe filter (an SDK guest
//! that exercises host calls on request) and small WAT modules.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use s2s_guard_host::{
    load_dist, CallReply, Compiled, Host, HostError, HostOptions, LogLevel, Protocol, Request,
    UpstreamResponse, Verdict,
};

fn probe(workers: usize, config: &str) -> Host {
    Host::new(
        &load_dist("probe-filter.wasm"),
        HostOptions {
            workers,
            plugin_config: config.as_bytes().to_vec(),
            log_level: LogLevel::Trace,
            ..HostOptions::default()
        },
    )
    .expect("probe loads")
}

fn ask(h: &mut Host, worker: usize, header: &str, value: &str) -> (u16, String) {
    let o = h.send_on(worker, Request::get("/p").header(header, value));
    (o.status, o.body_text())
}

#[test]
fn shared_data_cas_across_workers() {
    let mut h = probe(2, "");
    assert_eq!(
        ask(&mut h, 0, "x-probe-shared-get", "k"),
        (404, "missing".into())
    );
    assert_eq!(
        ask(&mut h, 0, "x-probe-shared-set", "k=v1"),
        (200, "ok".into())
    );
    let (_, got) = ask(&mut h, 1, "x-probe-shared-get", "k");
    let (value, cas) = got.split_once('|').unwrap();
    assert_eq!(value, "v1");
    // Worker 1 updates with the CAS it read; worker 0's stale CAS is refused.
    assert_eq!(
        ask(&mut h, 1, "x-probe-shared-set", &format!("k=v2;cas={cas}")),
        (200, "ok".into())
    );
    assert_eq!(
        ask(&mut h, 0, "x-probe-shared-set", &format!("k=v3;cas={cas}")),
        (200, "cas_mismatch".into())
    );
    assert_eq!(h.shared_data("k").unwrap().0, b"v2");
    // A CAS on a key that does not exist yet does not guard anything (Envoy).
    assert_eq!(
        ask(&mut h, 0, "x-probe-shared-set", "new=x;cas=77"),
        (200, "ok".into())
    );
}

#[test]
fn ticks_follow_the_virtual_clock_on_every_worker() {
    let mut h = probe(3, "tick_ms=100");
    assert_eq!(h.tick_period_ms(0), 100);
    h.advance(99);
    assert_eq!(h.metric("probe.ticks"), None);
    h.advance(1);
    assert_eq!(h.metric("wasmcustom.probe.ticks"), Some(3));
    h.advance(1000);
    assert_eq!(h.metric("probe.ticks"), Some(33));
    let start = HostOptions::default().start_time_ns;
    assert_eq!(h.now_ns(), start + 1_100 * 1_000_000);
}

#[test]
fn http_calls_are_delivered_with_delays_resets_and_timeouts() {
    let mut h = probe(1, "");
    h.set_cluster("tokens", |req| {
        let path = s2s_guard_host::header_value(&req.headers, ":path")
            .unwrap()
            .to_vec();
        assert_eq!(path, b"/tokens");
        match req.timeout_ms {
            1000 => CallReply::ok(200, "hello"),
            1001 => CallReply::Response {
                status: 304,
                headers: vec![],
                body: vec![],
                delay_ms: 500,
            },
            1002 => CallReply::Reset { delay_ms: 0 },
            _ => CallReply::Hang,
        }
    });
    let o = h.send(Request::get("/p").header("x-probe-call", "tokens"));
    assert_eq!(o.body_text(), "status=200 headers=1 body=hello");

    let id = h.start(
        0,
        Request::get("/p")
            .header("x-probe-call", "tokens")
            .header("x-probe-timeout", "1001"),
    );
    h.pump();
    assert_eq!(h.outcome(id).verdict, Verdict::Pending);
    h.advance(499);
    assert_eq!(h.outcome(id).verdict, Verdict::Pending);
    h.advance(1);
    assert_eq!(h.outcome(id).body_text(), "status=304 headers=1 body=");

    let o = h.send(
        Request::get("/p")
            .header("x-probe-call", "tokens")
            .header("x-probe-timeout", "1002"),
    );
    assert_eq!(
        o.body_text(),
        "status=none headers=0 body=",
        "a reset has no headers and no body"
    );

    let id = h.start(
        0,
        Request::get("/p")
            .header("x-probe-call", "tokens")
            .header("x-probe-timeout", "200"),
    );
    h.advance(199);
    assert_eq!(h.outcome(id).verdict, Verdict::Pending);
    h.advance(1);
    assert_eq!(
        h.outcome(id).body_text(),
        "status=504 headers=2 body=upstream request timeout"
    );

    let o = h.send(Request::get("/p").header("x-probe-call", "nowhere"));
    assert_eq!(o.body_text(), "call failed: BadArgument", "unknown cluster");
    let o = h.send(
        Request::get("/p")
            .header("x-probe-call", "tokens")
            .header("x-probe-call-bad", "1"),
    );
    assert_eq!(
        o.body_text(),
        "call failed: BadArgument",
        "missing :authority"
    );
    assert!(h.worker_failure(0).is_none());
}

#[test]
fn a_trapping_guest_fails_its_worker_closed() {
    let mut h = probe(2, "");
    let o = h.send_on(0, Request::get("/p").header("x-probe-panic", "1"));
    assert_eq!(o.status, 503);
    assert_eq!(
        o.verdict,
        Verdict::Local {
            details: "wasm_fail_stream".into()
        }
    );
    assert!(
        h.worker_failure(0).unwrap().contains("unreachable"),
        "{:?}",
        h.worker_failure(0)
    );
    assert!(h
        .logs_at(LogLevel::Critical)
        .iter()
        .any(|l| l.contains("probe panic requested")));
    // Later requests on the failed worker get 503; the other worker still works.
    assert_eq!(h.send_on(0, Request::get("/p")).status, 503);
    let ok = h.send_on(1, Request::get("/p"));
    assert_eq!((ok.status, ok.verdict), (200, Verdict::Forwarded));
}

#[test]
fn fail_open_skips_a_failed_filter() {
    let mut h = Host::new(
        &load_dist("probe-filter.wasm"),
        HostOptions {
            fail_open: true,
            ..HostOptions::default()
        },
    )
    .unwrap();
    assert_eq!(
        h.send(Request::get("/p").header("x-probe-panic", "1"))
            .status,
        503
    );
    let o = h.send(Request::get("/p"));
    assert_eq!((o.status, o.verdict), (200, Verdict::Forwarded));
    assert!(
        o.upstream.unwrap().header("x-probe-seen").is_none(),
        "filter skipped"
    );
}

#[test]
fn configuration_rejection_is_reported_and_reconfigure_keeps_the_old_one() {
    match Host::new(
        &load_dist("probe-filter.wasm"),
        HostOptions {
            plugin_config: b"reject".to_vec(),
            ..HostOptions::default()
        },
    ) {
        Err(HostError::ConfigRejected { worker: 0, logs }) => {
            assert_eq!(
                logs,
                vec!["probe: configuration rejected on request".to_string()]
            );
        }
        Err(e) => panic!("unexpected error {e}"),
        Ok(_) => panic!("configuration accepted"),
    }
    let mut h = probe(2, "tick_ms=100");
    assert!(matches!(
        h.reconfigure(b"reject"),
        Err(HostError::ConfigRejected { .. })
    ));
    assert_eq!(h.send(Request::get("/p")).status, 200);
    h.reconfigure(b"tick_ms=50").unwrap();
    assert_eq!(h.tick_period_ms(1), 50);
    assert_eq!(h.send(Request::get("/p")).status, 200);
}

#[test]
fn headers_body_and_response_changes_reach_the_right_side() {
    let mut h = probe(1, "");
    let o = h.send(
        Request::post("/p")
            .header("x-probe-remove-me", "secret")
            .header("x-bin", b"\xff\x00\x01")
            .body("abc"),
    );
    let up = o.upstream.clone().unwrap();
    assert_eq!(up.header("x-probe-seen"), Some(&b"1"[..]));
    assert_eq!(up.header("x-probe-remove-me"), None);
    assert_eq!(up.header("x-bin"), Some(&b"\xff\x00\x01"[..]));
    assert_eq!(up.body, b"abc");
    assert_eq!(o.response_header("x-probe-resp"), Some(&b"1"[..]));

    // Paused in the body until the end of stream, then rewritten.
    let o = h.send(
        Request::post("/p")
            .header("x-probe-body", "1")
            .body("hello world")
            .chunked(3),
    );
    assert_eq!(o.upstream.unwrap().body, b"HELLO WORLD!");
}

#[test]
fn buffering_beyond_the_limit_gets_413() {
    let mut h = Host::new(
        &load_dist("probe-filter.wasm"),
        HostOptions {
            request_body_limit: 10,
            ..HostOptions::default()
        },
    )
    .unwrap();
    let o = h.send(
        Request::post("/p")
            .header("x-probe-body", "1")
            .body("0123456789ABC")
            .chunked(4),
    );
    assert_eq!(o.status, 413);
    assert_eq!(
        o.verdict,
        Verdict::Local {
            details: "request_payload_too_large".into()
        }
    );
    // Paused in the headers, Envoy holds the body back; past the limit, 413 too.
    let o = h.send(
        Request::post("/p")
            .header("x-probe-pause", "1")
            .body("0123456789ABC"),
    );
    assert_eq!(o.status, 413);
    let o = h.send(
        Request::post("/p")
            .header("x-probe-pause", "1")
            .body("short"),
    );
    assert_eq!(o.verdict, Verdict::Pending);
}

#[test]
fn header_map_pairs_and_envoy_coalescing() {
    let mut h = probe(1, "");
    let o = h.send(
        Request::get("/p?q=1")
            .header("x-probe-headers", "1")
            .header("Authorization", "Bearer a")
            .header("authorization", "Bearer b")
            .header("x-dup", "1")
            .header("x-dup", "2"),
    );
    let body = o.body_text();
    assert!(body.contains(":path=/p?q=1"), "{body}");
    // Authorization is an Envoy inline header: repeated, it is joined with a comma.
    assert!(body.contains("authorization=Bearer a,Bearer b"), "{body}");
    assert!(body.contains("x-dup=1\nx-dup=2"), "{body}");
}

#[test]
fn properties_follow_envoy_names() {
    let mut h = probe(1, "");
    let mut req = Request::get("/a/b?x=1&y=2");
    req.source_address = "198.51.100.4:5555".into();
    let prop = |h: &mut Host, name: &str| {
        let r = req.clone().header("x-probe-property", name);
        h.send(r).body_text()
    };
    assert_eq!(prop(&mut h, "request.path"), "/a/b?x=1&y=2");
    assert_eq!(prop(&mut h, "request.url_path"), "/a/b");
    assert_eq!(prop(&mut h, "request.query"), "x=1&y=2");
    assert_eq!(prop(&mut h, "request.method"), "GET");
    assert_eq!(prop(&mut h, "source.address"), "198.51.100.4:5555");
    assert_eq!(prop(&mut h, "plugin_name"), "s2s-guard");
    assert_eq!(prop(&mut h, "xds.route_name"), "collector");
    assert_eq!(
        prop(&mut h, "route_name"),
        "no property",
        "removed in Envoy 1.33"
    );
}

#[test]
fn shared_queues_notify_the_registering_root() {
    let mut h = probe(2, "");
    let o = h.send_on(
        1,
        Request::get("/p").header("x-probe-queue", "probe_queue=hello"),
    );
    assert_eq!(o.body_text(), "enqueued");
    assert!(h
        .logs_at(LogLevel::Info)
        .contains(&"queue: hello".to_string()));
    let o = h.send_on(1, Request::get("/p").header("x-probe-queue", "nope=1"));
    assert_eq!(o.status, 404);
    assert!(h.enqueue("s2s-guard", "probe_queue", b"from outside"));
    assert!(h
        .logs_at(LogLevel::Info)
        .contains(&"queue: from outside".to_string()));
}

/// A guest that passes a pointer outside its memory: the host refuses, records the
/// misuse, and the guest's own reaction (a trap here) is what the test sees.
#[test]
fn bad_guest_pointers_are_refused_not_followed() {
    let wat = r#"
      (module
        (import "env" "proxy_log" (func $log (param i32 i32 i32) (result i32)))
        (memory (export "memory") 1)
        (func (export "proxy_abi_version_0_2_1"))
        (func (export "proxy_on_memory_allocate") (param i32) (result i32) (i32.const 1024))
        (func (export "proxy_on_context_create") (param i32 i32))
        (func (export "proxy_on_vm_start") (param i32 i32) (result i32) (i32.const 1))
        (func (export "proxy_on_configure") (param i32 i32) (result i32) (i32.const 1))
        (func (export "proxy_on_tick") (param i32))
        (func (export "proxy_on_queue_ready") (param i32 i32))
        (func (export "proxy_on_request_headers") (param i32 i32 i32) (result i32)
          (if (i32.eq (call $log (i32.const 2) (i32.const 65500) (i32.const 1000)) (i32.const 6))
            (then unreachable))
          (i32.const 0))
        (func (export "proxy_on_request_body") (param i32 i32 i32) (result i32) (i32.const 0))
        (func (export "proxy_on_request_trailers") (param i32 i32) (result i32) (i32.const 0))
        (func (export "proxy_on_response_headers") (param i32 i32 i32) (result i32) (i32.const 0))
        (func (export "proxy_on_response_body") (param i32 i32 i32) (result i32) (i32.const 0))
        (func (export "proxy_on_http_call_response") (param i32 i32 i32 i32 i32))
        (func (export "proxy_on_log") (param i32))
        (func (export "proxy_on_done") (param i32) (result i32) (i32.const 1))
        (func (export "proxy_on_delete") (param i32)))
    "#;
    let compiled = Compiled::from_bytes(wat.as_bytes()).unwrap();
    let mut h = Host::new(&compiled, HostOptions::default()).unwrap();
    let o = h.send(Request::get("/"));
    assert_eq!(o.status, 503);
    assert_eq!(
        h.misuse(0),
        vec!["read of 1000 bytes at 65500 outside memory of 65536 bytes".to_string()]
    );
    assert!(h.worker_failure(0).is_some());
}

#[test]
fn a_module_without_the_abi_export_is_refused() {
    let compiled = Compiled::from_bytes(b"(module (memory (export \"memory\") 1))").unwrap();
    match Host::new(&compiled, HostOptions::default()) {
        Err(HostError::Load(m)) => assert!(m.contains("proxy_on_context_create"), "{m}"),
        other => panic!("{:?}", other.err()),
    }
}

// ---- request bodies in chunks, and request trailers -------------------------------

/// A probe whose `tokens` cluster answers after 100 ms, and whose upstream counts
/// the requests that reach it.
fn trailers_probe(allow_on_headers_stop_iteration: bool) -> (Host, Arc<AtomicUsize>) {
    let mut h = Host::new(
        &load_dist("probe-filter.wasm"),
        HostOptions {
            allow_on_headers_stop_iteration,
            ..HostOptions::default()
        },
    )
    .expect("probe loads");
    h.set_cluster("tokens", |_| CallReply::Response {
        status: 200,
        headers: vec![],
        body: b"ok".to_vec(),
        delay_ms: 100,
    });
    let reached = Arc::new(AtomicUsize::new(0));
    let seen = reached.clone();
    h.set_upstream(move |_, _| {
        seen.fetch_add(1, Ordering::SeqCst);
        UpstreamResponse {
            status: 200,
            headers: vec![],
            body: b"OK".to_vec(),
        }
    });
    (h, reached)
}

/// What the probe logged about body and trailer callbacks since the last call.
fn callbacks(h: &Host) -> Vec<String> {
    let lines = h
        .logs_at(LogLevel::Info)
        .into_iter()
        .filter(|l| l.starts_with("body ") || l.starts_with("trailers ") || l == "call answered")
        .collect();
    h.clear_logs();
    lines
}

fn trailed(mode: &str) -> Request {
    Request::post("/p")
        .header("x-probe-trailers", mode)
        .body("hello world")
        .chunked(4)
        .trailer("x-sum", "42")
        .trailer("x-probe-remove-me", "secret")
}

fn pairs(list: &[(&str, &str)]) -> Vec<(String, Vec<u8>)> {
    list.iter()
        .map(|(k, v)| (k.to_string(), v.as_bytes().to_vec()))
        .collect()
}

/// Envoy's HTTP/1 codec (enable_trailers false by default) ignores the trailers; each
/// read is a body callback with end_of_stream false, the end of the message one more,
/// empty, body callback with end_of_stream true.
#[test]
fn http11_drops_trailers_and_ends_the_body_with_an_empty_callback() {
    let (mut h, _) = trailers_probe(false);
    let o = h.send(trailed("log"));
    assert_eq!(o.verdict, Verdict::Forwarded);
    assert_eq!(
        callbacks(&h),
        [
            "body size=4 eos=false",
            "body size=4 eos=false",
            "body size=3 eos=false",
            "body size=0 eos=true"
        ]
    );
    let up = o.upstream.unwrap();
    assert_eq!(up.body, b"hello world");
    assert!(up.trailers.is_empty(), "{:?}", up.trailers);

    // Buffered (Pause until the end of stream), the last callback sees the whole body.
    let o = h.send(trailed("read-body"));
    assert_eq!(
        callbacks(&h),
        [
            "body size=4 eos=false",
            "body size=8 eos=false",
            "body size=11 eos=false",
            "body size=11 eos=true"
        ]
    );
    assert_eq!(o.upstream.unwrap().body, b"hello world");

    // Without a body, the headers end the stream: no body callback at all.
    let o = h.send(Request::get("/p").header("x-probe-trailers", "log"));
    assert_eq!(o.verdict, Verdict::Forwarded);
    assert!(callbacks(&h).is_empty());
}

/// Over HTTP/2 each DATA frame is a body callback; with trailers the last one does
/// not end the stream, the trailers callback does, and its changes go upstream.
#[test]
fn http2_delivers_the_body_then_the_trailers() {
    let (mut h, _) = trailers_probe(false);
    let o = h.send(trailed("log").http2());
    assert_eq!(o.verdict, Verdict::Forwarded);
    assert_eq!(
        callbacks(&h),
        [
            "body size=4 eos=false",
            "body size=4 eos=false",
            "body size=3 eos=false",
            "trailers n=2 x-sum=42,x-probe-remove-me=secret",
            // The body was not buffered: the trailers callback sees no body.
            "trailers body=none"
        ]
    );
    let up = o.upstream.unwrap();
    assert_eq!(up.body, b"hello world");
    assert_eq!(
        up.trailers,
        pairs(&[("x-sum", "42"), ("x-probe-trailer-seen", "1")])
    );

    // Without trailers the last DATA frame ends the stream.
    let o = h.send(
        Request::post("/p")
            .header("x-probe-trailers", "log")
            .body("hello world")
            .chunked(4)
            .http2(),
    );
    assert_eq!(
        callbacks(&h),
        [
            "body size=4 eos=false",
            "body size=4 eos=false",
            "body size=3 eos=true"
        ]
    );
    assert!(o.upstream.unwrap().trailers.is_empty());

    // Trailers without a body: no body callback, the trailers end the stream.
    let o = h.send(
        Request::post("/p")
            .header("x-probe-trailers", "log")
            .trailer("x-sum", "0")
            .http2(),
    );
    assert_eq!(
        callbacks(&h),
        ["trailers n=1 x-sum=0", "trailers body=none"]
    );
    assert_eq!(
        o.upstream.unwrap().trailers,
        pairs(&[("x-sum", "0"), ("x-probe-trailer-seen", "1")])
    );
}

/// While the body is buffered, the trailers callback reads the whole of it and may
/// replace it: what it leaves is what goes upstream.
#[test]
fn the_trailers_callback_reads_and_replaces_the_buffered_body() {
    let (mut h, _) = trailers_probe(false);
    let o = h.send(trailed("read-body").http2());
    assert_eq!(
        callbacks(&h),
        [
            "body size=4 eos=false",
            "body size=8 eos=false",
            "body size=11 eos=false",
            "trailers n=2 x-sum=42,x-probe-remove-me=secret",
            "trailers body=hello world"
        ]
    );
    let up = o.upstream.unwrap();
    assert_eq!(up.body, b"hello world");
    assert_eq!(
        up.trailers,
        pairs(&[
            ("x-sum", "42"),
            ("x-probe-trailer-seen", "1"),
            ("x-probe-body-len", "11")
        ])
    );

    let o = h.send(trailed("replace-body").http2());
    let up = o.upstream.unwrap();
    assert_eq!(up.body, b"HELLO WORLD!");
    assert_eq!(
        up.trailers,
        pairs(&[("x-sum", "42"), ("x-probe-trailer-seen", "1")])
    );
}

/// A pause in the trailers holds the buffered body and the trailers: nothing goes
/// upstream until the filter continues, or a local reply ends the stream.
#[test]
fn a_pause_in_the_trailers_holds_the_request() {
    let (mut h, reached) = trailers_probe(false);
    let id = h.start(0, trailed("pause-then-reply").http2());
    h.pump();
    assert_eq!(h.outcome(id).verdict, Verdict::Pending);
    h.advance(99);
    assert_eq!(h.outcome(id).verdict, Verdict::Pending);
    assert_eq!(reached.load(Ordering::SeqCst), 0);
    h.advance(1);
    let o = h.take_outcome(id);
    assert_eq!(
        (o.status, o.body_text().as_str()),
        (403, "denied in trailers")
    );
    assert!(o.is_local());
    assert_eq!(o.upstream, None);
    assert_eq!(reached.load(Ordering::SeqCst), 0, "nothing went upstream");

    h.clear_logs();
    let id = h.start(0, trailed("pause-then-continue").http2());
    h.advance(99);
    assert_eq!(h.outcome(id).verdict, Verdict::Pending);
    assert_eq!(reached.load(Ordering::SeqCst), 0);
    h.advance(1);
    let o = h.take_outcome(id);
    assert_eq!(o.verdict, Verdict::Forwarded);
    assert_eq!(reached.load(Ordering::SeqCst), 1);
    let up = o.upstream.unwrap();
    assert_eq!(up.body, b"hello world");
    assert_eq!(
        up.trailers,
        pairs(&[("x-sum", "42"), ("x-probe-trailer-seen", "1")])
    );
    assert_eq!(
        callbacks(&h).last().map(String::as_str),
        Some("call answered"),
        "no callback after the continue"
    );
}

/// Paused in the headers (StopAllIterationAndWatermark, the default), the filter gets
/// neither body nor trailers until it continues; then the held body comes as one
/// callback (not ending the stream) and the trailers follow.
#[test]
fn paused_headers_hold_the_body_and_the_trailers_back() {
    let (mut h, reached) = trailers_probe(false);
    let id = h.start(0, trailed("pause-headers").http2());
    h.advance(99);
    assert_eq!(h.outcome(id).verdict, Verdict::Pending);
    assert!(callbacks(&h).is_empty());
    h.advance(1);
    assert_eq!(
        callbacks(&h),
        [
            "call answered",
            "body size=11 eos=false",
            "trailers n=2 x-sum=42,x-probe-remove-me=secret",
            "trailers body=hello world"
        ]
    );
    let o = h.take_outcome(id);
    assert_eq!(o.verdict, Verdict::Forwarded);
    assert_eq!(reached.load(Ordering::SeqCst), 1);
    let up = o.upstream.unwrap();
    assert_eq!(up.header("x-probe-trailers"), Some(&b"pause-headers"[..]));
    assert_eq!(up.body, b"hello world");
    assert_eq!(
        up.trailers,
        pairs(&[("x-sum", "42"), ("x-probe-trailer-seen", "1")])
    );
}

/// With `allow_on_headers_stop_iteration`, a pause in the headers is a plain
/// StopIteration: the body and the trailers still reach the filter, and nothing goes
/// upstream until it continues.
#[test]
fn stopped_headers_still_deliver_the_body_and_the_trailers() {
    let (mut h, reached) = trailers_probe(true);
    let id = h.start(0, trailed("pause-headers").http2());
    h.pump();
    assert_eq!(
        callbacks(&h),
        [
            "body size=4 eos=false",
            "body size=8 eos=false",
            "body size=11 eos=false",
            "trailers n=2 x-sum=42,x-probe-remove-me=secret",
            "trailers body=hello world"
        ]
    );
    h.advance(99);
    assert_eq!(h.outcome(id).verdict, Verdict::Pending);
    assert_eq!(reached.load(Ordering::SeqCst), 0);
    h.advance(1);
    assert_eq!(callbacks(&h), ["call answered"]);
    let o = h.take_outcome(id);
    assert_eq!(o.verdict, Verdict::Forwarded);
    let up = o.upstream.unwrap();
    assert_eq!(up.header("x-probe-trailers"), Some(&b"pause-headers"[..]));
    assert_eq!(up.body, b"hello world");
    assert_eq!(
        up.trailers,
        pairs(&[("x-sum", "42"), ("x-probe-trailer-seen", "1")])
    );
}

#[test]
fn the_protocol_shows_in_the_request_attributes() {
    let mut h = probe(1, "");
    let ask = |h: &mut Host, r: Request| {
        h.send(r.header("x-probe-property", "request.protocol"))
            .body_text()
    };
    assert_eq!(ask(&mut h, Request::get("/p")), "HTTP/1.1");
    assert_eq!(ask(&mut h, Request::get("/p").http2()), "HTTP/2");
    assert_eq!(Request::get("/p").protocol, Protocol::Http11);
}

/// Envoy's getHeaderMapPairs reads a map that is not available (request headers
/// already continued, trailers outside their callback) as empty, where the single
/// value calls answer BadArgument.
#[test]
fn maps_not_available_read_as_empty_pairs() {
    let (mut h, _) = trailers_probe(false);
    let o = h.send(
        Request::post("/p")
            .header("x-probe-trailers", "maps")
            .body("abc")
            .trailer("x-sum", "1")
            .http2(),
    );
    assert_eq!(o.verdict, Verdict::Forwarded);
    assert_eq!(
        callbacks(&h),
        [
            "body size=3 eos=false",
            "body maps headers=0 trailers=0",
            "trailers n=1 x-sum=1",
            "trailers body=none"
        ]
    );
    assert!(h.worker_failure(0).is_none());
}

/// The body-buffering baseline of the benchmarks: it pauses until the end of the
/// body and forwards it whole, so it pays the buffering a form-reading filter pays
/// (and a body beyond the buffer limit gets Envoy's 413).
#[test]
fn the_body_buffering_baseline_forwards_the_whole_body() {
    let compiled = load_dist("bodynoop-filter.wasm");
    let mut h = Host::new(&compiled, HostOptions::default()).unwrap();
    let body = "app_token=abc&created_at=x&".repeat(25);
    for chunk in [None, Some(7), Some(100)] {
        let mut req = Request::post("/session")
            .header("content-type", "application/x-www-form-urlencoded")
            .body(&body);
        if let Some(n) = chunk {
            req = req.chunked(n);
        }
        let o = h.send(req);
        assert_eq!(o.verdict, Verdict::Forwarded, "chunks {chunk:?}");
        assert_eq!(o.upstream.unwrap().body, body.as_bytes());
    }
    let o = h.send(Request::get("/healthz"));
    assert_eq!(o.verdict, Verdict::Forwarded);
    let mut small = Host::new(
        &compiled,
        HostOptions {
            request_body_limit: 10,
            ..HostOptions::default()
        },
    )
    .unwrap();
    let o = small.send(Request::post("/p").body("0123456789ABC").chunked(4));
    assert_eq!(o.status, 413, "buffered beyond the limit");
}
