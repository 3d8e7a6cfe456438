//! `serve`: real HTTP requests over loopback through the filter (in the test host)
//! to the built-in echo collector, and token rotation through the built-in token
//! service. Bounded: a fixed number of requests, loopback only.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc};
use std::time::Duration;

use s2s_guard_host::load_dist;
use s2s_guard_host::serve::{serve, ServeOptions};

fn config() -> String {
    r#"{"presets": ["swaarm", "jitsu"], "default_realm": "swaarm",
        "token_source": {"cluster": "token_service", "path": "/tokens.json", "period": "200ms", "timeout": "1s"}}"#
        .into()
}

/// Sends one request; returns status, headers (lower-cased) and body.
fn http(addr: SocketAddr, raw: &str) -> (u16, String, String) {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.write_all(raw.as_bytes()).unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    let (head, body) = out.split_once("\r\n\r\n").unwrap();
    let status = head.split(' ').nth(1).unwrap().parse().unwrap();
    (status, head.to_ascii_lowercase(), body.to_string())
}

fn get(addr: SocketAddr, path: &str, extra: &str) -> (u16, String, String) {
    http(
        addr,
        &format!("GET {path} HTTP/1.1\r\nhost: collector.local\r\n{extra}\r\n"),
    )
}

/// Polls until `path` answers `status` four times in a row, so on both workers (the
/// token set loads in real time); 20 s at most, every 100 ms.
fn wait_for(addr: SocketAddr, path: &str, status: u16) {
    let mut in_a_row = 0;
    for _ in 0..200 {
        if get(addr, path, "").0 == status {
            in_a_row += 1;
            if in_a_row == 4 {
                return;
            }
            continue;
        }
        in_a_row = 0;
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!("{path} never answered {status}");
}

#[test]
fn requests_over_loopback_and_token_rotation() {
    let dir = std::env::temp_dir().join(format!("s2s-guard-serve-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let tokens = dir.join("tokens.json");
    std::fs::write(
        &tokens,
        r#"{"tokens": [{"id": "store", "server_secret": "tok-1"}, {"id": "web", "realm": "jitsu", "server_secret": "tok-j"}]}"#,
    )
    .unwrap();

    let stop = Arc::new(AtomicBool::new(false));
    let (tx, rx) = mpsc::channel();
    let stop2 = stop.clone();
    let tokens2 = tokens.clone();
    let server = std::thread::spawn(move || {
        let compiled = load_dist("s2s-guard.wasm");
        serve(
            &compiled,
            ServeOptions {
                listen: "127.0.0.1:0".parse().unwrap(),
                workers: 2,
                config: config().into_bytes(),
                upstream: None,
                tokens_file: Some(tokens2),
                token_cluster: "token_service".into(),
                max_requests: Some(1000),
                admin: None,
                stats_tags: Vec::new(),
            },
            stop2,
            tx,
        )
    });
    let addr = rx.recv_timeout(Duration::from_secs(60)).expect("server up");
    // Until the first token set arrives, configured routes answer 503.
    wait_for(addr, "/postback?s2s_token=tok-1&user_id=u&event_id=e", 200);

    // Allowed: forwarded to the echo collector, credential stripped, identity set.
    let (status, _, body) = get(
        addr,
        "/postback?s2s_token=tok-1&user_id=u&event_id=e",
        "x-s2s-guard-token-id: spoofed\r\n",
    );
    assert_eq!(status, 200, "{body}");
    let echo: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(echo["path"], "/postback?user_id=u&event_id=e");
    assert_eq!(echo["headers"]["x-s2s-guard-token-id"], "store");

    // Rejected locally, never reaching the collector.
    let (status, head, body) = get(addr, "/postback?s2s_token=nope&user_id=u&event_id=e", "");
    assert_eq!((status, body.as_str()), (401, "The s2s token is invalid"));
    assert!(head.contains("x-s2s-guard-demo-verdict: local"));
    let (status, _, _) = get(addr, "/postback?s2s_token=tok-1&user_id=u", "");
    assert_eq!(status, 400);
    let (status, _, body) = http(
        addr,
        "POST /api/v1/s2s/event HTTP/1.1\r\nhost: x\r\nx-auth-token: tok-j\r\ncontent-type: application/json\r\ncontent-length: 2\r\n\r\n{}",
    );
    assert_eq!(status, 200, "{body}");
    // The Swaarm token (default realm) does not open Jitsu's routes.
    let (status, _, _) = http(
        addr,
        "POST /api/v1/s2s/event HTTP/1.1\r\nhost: x\r\nx-auth-token: tok-1\r\ncontent-type: application/json\r\ncontent-length: 2\r\n\r\n{}",
    );
    assert_eq!(status, 401);
    assert!(body.contains("\"body\":\"{}\""), "{body}");
    let (status, _, body) = get(addr, "/healthz", "");
    assert_eq!(status, 200);
    assert!(body.contains("\"collector\":\"echo\""));

    // Rotation through the token service: the new token works, the old one stops.
    std::thread::sleep(Duration::from_millis(1100)); // Last-Modified has 1 s granularity
    std::fs::write(
        &tokens,
        r#"{"tokens": [{"id": "store-2", "server_secret": "tok-2"}]}"#,
    )
    .unwrap();
    std::thread::sleep(Duration::from_millis(800));
    let (status, _, body) = get(addr, "/postback?s2s_token=tok-2&user_id=u&event_id=e", "");
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("store-2"));
    let (status, _, _) = get(addr, "/postback?s2s_token=tok-1&user_id=u&event_id=e", "");
    assert_eq!(status, 401);

    // Malformed requests get a defined answer.
    let (status, _, _) = http(addr, "GARBAGE\r\n\r\n");
    assert_eq!(status, 400);

    stop.store(true, Ordering::Relaxed);
    server.join().unwrap().unwrap();
    let _ = std::fs::remove_dir_all(&dir);
}

/// The admin listener answers `/stats` and `/stats/prometheus` as Envoy's admin does,
/// with the labels of the shipped stats_tags, outside the filter.
#[test]
fn admin_stats_in_envoys_prometheus_names() {
    let admin = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap()
    };
    let yaml = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../envoy/envoy.yaml"),
    )
    .unwrap();
    let stats_tags = s2s_guard_host::prom::parse_stats_tags(&yaml).unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let (tx, rx) = mpsc::channel();
    let stop2 = stop.clone();
    let server = std::thread::spawn(move || {
        let compiled = load_dist("s2s-guard.wasm");
        serve(
            &compiled,
            ServeOptions {
                listen: "127.0.0.1:0".parse().unwrap(),
                workers: 2,
                config: br#"{"presets": ["swaarm"], "tokens": [{"id": "store", "sha256": "599c0d6d86efe0f5743bcd0ba688471c3ff4b0b0ed336bc9efdd3a52493c2283"}]}"#.to_vec(),
                upstream: None,
                tokens_file: None,
                token_cluster: "token_service".into(),
                max_requests: Some(3),
                admin: Some(admin),
                stats_tags,
            },
            stop2,
            tx,
        )
    });
    let addr = rx.recv_timeout(Duration::from_secs(60)).expect("server up");
    let (status, _, _) = get(addr, "/postback?s2s_token=nope&user_id=u&event_id=e", "");
    assert_eq!(status, 401);
    let (status, _, _) = get(addr, "/elsewhere", "");
    assert_eq!(status, 200);
    // Admin requests are not counted in max_requests and never reach the filter.
    let (status, head, prom) = get(admin, "/stats/prometheus", "");
    assert_eq!(status, 200);
    assert!(head.contains("content-type: text/plain"));
    assert!(
        prom.contains("# TYPE s2s_guard_requests counter\n"),
        "{prom}"
    );
    assert!(
        prom.contains(
            "s2s_guard_requests{s2s_guard_outcome=\"wrong\",s2s_guard_scope=\"none\"} 1\n"
        ),
        "{prom}"
    );
    assert!(prom.contains("s2s_guard_rejected{s2s_guard_outcome=\"wrong\"} 1\n"));
    assert!(prom.contains("s2s_guard_unmatched{} 1\n"));
    assert!(prom.contains("# TYPE s2s_guard_ambiguous counter\n"));
    assert!(!prom.contains("wasmcustom"));
    let (status, _, stats) = get(admin, "/stats", "");
    assert_eq!(status, 200);
    assert!(stats.contains("wasmcustom.s2s_guard.requests.outcome.wrong.scope.none: 1\n"));
    assert_eq!(get(admin, "/nothing", "").0, 404);
    let (status, _, _) = get(addr, "/elsewhere", "");
    assert_eq!(status, 200);
    server.join().unwrap().unwrap();
    drop(stop);
}
