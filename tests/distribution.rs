//! Token distribution through the `.wasm` with several workers and a token source
//! served by the host's call handlers: first load, rotation, 304s, every failure
//! kind, staleness, the lease moving, rollback, bundle signatures, and requests
//! decided during many swaps.

use std::sync::{Arc, Mutex};

use hmac::{Hmac, Mac};
use s2s_guard_host::{header_value, load_dist, CallReply, Host, HostOptions, LogLevel, Request};
use sha2::Sha256;

#[derive(Clone)]
enum Mode {
    Serve,
    Status(u16),
    Reset,
    Hang,
    Raw(Vec<u8>),
}

/// A token service: serves `body` with `Last-Modified`, answers 304 to a matching
/// `If-Modified-Since`, records what it was asked.
struct Service {
    body: Vec<u8>,
    last_modified: String,
    mode: Mode,
    calls: usize,
    conditional: usize,
    bundle_key: Option<Vec<u8>>,
    tamper: bool,
}

type Shared = Arc<Mutex<Service>>;

fn service(body: &str) -> Shared {
    Arc::new(Mutex::new(Service {
        body: body.as_bytes().to_vec(),
        last_modified: "Thu, 01 Jan 2026 00:00:00 GMT".into(),
        mode: Mode::Serve,
        calls: 0,
        conditional: 0,
        bundle_key: None,
        tamper: false,
    }))
}

fn serve(s: &Shared, body: &str, last_modified: &str) {
    let mut s = s.lock().unwrap();
    s.body = body.as_bytes().to_vec();
    s.last_modified = last_modified.into();
    s.mode = Mode::Serve;
}

fn set_mode(s: &Shared, m: Mode) {
    s.lock().unwrap().mode = m;
}

fn host_with(config: &str, workers: usize, svc: &Shared) -> Host {
    let mut h = Host::new(
        &load_dist("s2s-guard.wasm"),
        HostOptions {
            workers,
            plugin_config: config.as_bytes().to_vec(),
            log_level: LogLevel::Debug,
            clusters: vec!["token_service".into()],
            ..HostOptions::default()
        },
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let svc = svc.clone();
    h.set_cluster("token_service", move |req| {
        let mut s = svc.lock().unwrap();
        s.calls += 1;
        assert_eq!(
            header_value(&req.headers, ":path"),
            Some(&b"/tokens.json"[..])
        );
        assert_eq!(
            header_value(&req.headers, "authorization"),
            Some(&b"Bearer source-credential"[..])
        );
        let ims = header_value(&req.headers, "if-modified-since").map(|v| v.to_vec());
        if ims.is_some() {
            s.conditional += 1;
        }
        match s.mode.clone() {
            Mode::Status(code) => CallReply::ok(code, "unavailable"),
            Mode::Reset => CallReply::Reset { delay_ms: 5 },
            Mode::Hang => CallReply::Hang,
            Mode::Raw(b) => CallReply::ok(200, b),
            Mode::Serve => {
                if ims.as_deref() == Some(s.last_modified.as_bytes()) {
                    return CallReply::Response {
                        status: 304,
                        headers: vec![],
                        body: vec![],
                        delay_ms: 5,
                    };
                }
                let mut headers = vec![(
                    "last-modified".to_string(),
                    s.last_modified.clone().into_bytes(),
                )];
                if let Some(k) = &s.bundle_key {
                    let mut mac = Hmac::<Sha256>::new_from_slice(k).unwrap();
                    mac.update(&s.body);
                    let mut sig = mac.finalize().into_bytes().to_vec();
                    if s.tamper {
                        sig[0] ^= 1;
                    }
                    headers.push((
                        "x-s2s-guard-bundle-signature".into(),
                        format!("sha256={}", hex::encode(sig)).into_bytes(),
                    ));
                }
                CallReply::Response {
                    status: 200,
                    headers,
                    body: s.body.clone(),
                    delay_ms: 5,
                }
            }
        }
    });
    h
}

fn config(extra: &str) -> String {
    format!(
        r#"{{"presets": ["swaarm"],
  "tokens": [{{"id": "bootstrap", "secret": "boot-token"}}],
  "token_source": {{"cluster": "token_service", "path": "/tokens.json", "period": "3s", "timeout": "1s",
                   "headers": {{"authorization": "Bearer source-credential"}} {extra}}}}}"#
    )
}

fn jitsu_set(tokens: &[&str]) -> String {
    let t: Vec<String> = tokens
        .iter()
        .map(|t| format!(r#"{{"id": "id-{t}", "server_secret": "{t}"}}"#))
        .collect();
    format!(r#"{{"tokens": [{}]}}"#, t.join(","))
}

fn postback(token: &str) -> Request {
    Request::get(&format!("/postback?s2s_token={token}&user_id=u&event_id=e"))
}

fn status_on_all(h: &mut Host, token: &str) -> Vec<u16> {
    (0..h.workers())
        .map(|w| h.send_on(w, postback(token)).status)
        .collect()
}

#[test]
fn first_load_then_one_fetch_per_period() {
    let svc = service(&jitsu_set(&["tok-a"]));
    let mut h = host_with(&config(""), 4, &svc);
    // The first fetch went out at configuration; until it answers, no set: 503.
    let o = h.send_on(2, postback("tok-a"));
    assert_eq!(o.status, 503);
    assert_eq!(o.response_header("retry-after"), Some(&b"3"[..]));
    assert_eq!(
        h.send_on(2, Request::get("/healthz")).status,
        200,
        "unknown paths still pass"
    );
    h.advance(800);
    assert_eq!(status_on_all(&mut h, "tok-a"), vec![200; 4]);
    assert_eq!(
        status_on_all(&mut h, "boot-token"),
        vec![401; 4],
        "inline tokens were only a bootstrap"
    );
    assert_eq!(h.metric("s2s_guard.source.loaded"), Some(1));
    assert_eq!(h.metric("s2s_guard.source.lease_acquired"), Some(1));
    // The first set has nothing to be compared with: no "+0 added" diff.
    let logs = h.logs_at(LogLevel::Info).join("\n");
    assert!(logs.contains(" loaded: 1 tokens (first set)"), "{logs}");
    assert!(!logs.contains("added"), "{logs}");
    // Thirty seconds: about ten fetches for the proxy, not forty.
    h.advance(30_000);
    let calls = svc.lock().unwrap().calls;
    assert!((10..=12).contains(&calls), "{calls} fetches");
    assert!(
        svc.lock().unwrap().conditional >= 9,
        "conditional requests after the first"
    );
    assert!(h.metric("s2s_guard.source.not_modified").unwrap() >= 9);
    assert_eq!(h.metric_record("s2s_guard.source.tokens").unwrap().value, 1);
}

#[test]
fn rotation_reaches_every_worker_within_one_period() {
    let svc = service(&jitsu_set(&["old"]));
    let mut h = host_with(&config(""), 4, &svc);
    h.advance(1000);
    assert_eq!(status_on_all(&mut h, "old"), vec![200; 4]);
    serve(&svc, &jitsu_set(&["new"]), "Thu, 01 Jan 2026 00:00:05 GMT");
    h.advance(3000);
    assert_eq!(status_on_all(&mut h, "new"), vec![200; 4]);
    assert_eq!(status_on_all(&mut h, "old"), vec![401; 4]);
    let logs = h.logs_at(LogLevel::Info).join("\n");
    assert!(
        logs.contains(
            "loaded: 1 tokens (+1 added, -1 removed, 0 deactivated) ids [id-new, id-old]"
        ),
        "{logs}"
    );
    assert!(!logs.contains("Bearer source-credential") && !logs.contains("new\""));
}

#[test]
fn failures_keep_the_last_good_set() {
    let svc = service(&jitsu_set(&["good"]));
    let mut h = host_with(&config(r#", "max_bytes": 2000"#), 2, &svc);
    h.advance(1000);
    let big = format!(
        r#"{{"tokens": [{{"id": "x", "secret": "{}"}}]}}"#,
        "y".repeat(3000)
    );
    let cases: Vec<(Mode, &str)> = vec![
        (Mode::Status(503), "status_5xx"),
        (Mode::Status(404), "status_other"),
        (Mode::Reset, "reset"),
        (Mode::Hang, "timeout"),
        (Mode::Raw(b"{not json".to_vec()), "malformed"),
        (
            Mode::Raw(br#"{"tokens": [{"id": "a", "secret": "s", "scopes": ["nope"]}]}"#.to_vec()),
            "invalid",
        ),
        (Mode::Raw(b"   ".to_vec()), "empty"),
        (Mode::Raw(big.into_bytes()), "too_large"),
    ];
    for (mode, kind) in cases {
        set_mode(&svc, mode);
        let before = svc.lock().unwrap().calls;
        h.advance(200_000);
        let after = svc.lock().unwrap().calls;
        assert!(
            h.metric(&format!("s2s_guard.source.failure.{kind}"))
                .unwrap_or(0)
                >= 1,
            "{kind}"
        );
        assert_eq!(
            status_on_all(&mut h, "good"),
            vec![200; 2],
            "{kind}: last good set kept"
        );
        // Backoff: far fewer than 200 s / 3 s fetches.
        assert!(
            after - before <= 10,
            "{kind}: {} fetches in 200 s",
            after - before
        );
        set_mode(&svc, Mode::Serve);
        h.advance(61_000);
    }
    let warns = h.logs_at(LogLevel::Warn).join("\n");
    assert!(
        warns.contains("set refused: token set: tokens[0].scopes[0]: unknown scope \"nope\""),
        "{warns}"
    );
}

#[test]
fn staleness_budget_answers_503() {
    let svc = service(&jitsu_set(&["t1"]));
    let mut h = host_with(
        &config(r#", "stale_after": "10s", "when_stale": "reject", "retry_after": 7"#),
        2,
        &svc,
    );
    h.advance(1000);
    assert_eq!(status_on_all(&mut h, "t1"), vec![200; 2]);
    set_mode(&svc, Mode::Status(500));
    h.advance(8000);
    assert_eq!(
        status_on_all(&mut h, "t1"),
        vec![200; 2],
        "within the budget"
    );
    h.advance(5000);
    let o = h.send(postback("t1"));
    assert_eq!(
        (o.status, o.response_header("retry-after")),
        (503, Some(&b"7"[..]))
    );
    assert_eq!(o.body_text(), "Cannot verify credentials now; retry later");
    assert!(h.metric("s2s_guard.source.stale_rejected").unwrap() >= 1);
    set_mode(&svc, Mode::Serve);
    h.advance(70_000);
    assert_eq!(status_on_all(&mut h, "t1"), vec![200; 2], "fresh again");
}

#[test]
fn serving_a_stale_set_when_configured() {
    let svc = service(&jitsu_set(&["t1"]));
    let mut h = host_with(&config(r#", "stale_after": "10s""#), 1, &svc);
    h.advance(1000);
    set_mode(&svc, Mode::Reset);
    h.advance(60_000);
    assert_eq!(status_on_all(&mut h, "t1"), vec![200]);
    assert!(
        h.metric_record("s2s_guard.source.age_seconds")
            .unwrap()
            .value
            >= 55
    );
}

#[test]
fn the_lease_moves_when_the_fetcher_stops() {
    let svc = service(&jitsu_set(&["t1"]));
    let mut h = host_with(&config(""), 3, &svc);
    h.advance(1000);
    assert_eq!(h.metric("s2s_guard.source.lease_acquired"), Some(1));
    // Which worker fetches? The one whose lease is in shared data; stall each in
    // turn until fetching moves.
    let holder = (0..3)
        .find(|w| {
            h.pause_worker(*w);
            let before = svc.lock().unwrap().calls;
            h.advance(3000);
            let moved = svc.lock().unwrap().calls == before;
            h.resume_worker(*w);
            moved
        })
        .expect("a holder");
    h.pause_worker(holder);
    serve(&svc, &jitsu_set(&["t2"]), "Thu, 01 Jan 2026 00:01:00 GMT");
    h.advance(15_000);
    assert_eq!(
        h.metric("s2s_guard.source.lease_acquired"),
        Some(2),
        "another worker took over"
    );
    for w in (0..3).filter(|w| *w != holder) {
        assert_eq!(h.send_on(w, postback("t2")).status, 200, "worker {w}");
    }
}

/// Once a versioned set is in force, a set without a version (ordered only by its
/// date) is a rollback: an old unversioned copy, then an old versioned one, would
/// bring back a revoked token (cold attack, session 8, round 3).
#[test]
fn an_unversioned_set_after_a_versioned_one_is_a_rollback() {
    let svc = service(r#"{"version": 6, "tokens": [{"id": "v6", "secret": "six"}]}"#);
    let mut h = host_with(&config(""), 2, &svc);
    h.advance(1000);
    assert_eq!(status_on_all(&mut h, "six"), vec![200; 2]);
    serve(&svc, &jitsu_set(&["old"]), "Wed, 01 Jan 2020 00:00:00 GMT");
    h.advance(4000);
    assert!(h.metric("s2s_guard.source.rollback_refused").unwrap_or(0) >= 1);
    assert_eq!(status_on_all(&mut h, "six"), vec![200; 2]);
    assert_eq!(status_on_all(&mut h, "old"), vec![401; 2]);
    serve(
        &svc,
        r#"{"version": 1, "tokens": [{"id": "v1", "secret": "one"}]}"#,
        "Thu, 01 Jan 2026 00:02:00 GMT",
    );
    h.advance(4000);
    assert_eq!(status_on_all(&mut h, "six"), vec![200; 2]);
    assert_eq!(status_on_all(&mut h, "one"), vec![401; 2]);
    assert_eq!(
        h.metric_record("s2s_guard.source.version").unwrap().value,
        6
    );
}

#[test]
fn rollback_is_refused() {
    let svc = service(r#"{"version": 5, "tokens": [{"id": "v5", "secret": "five"}]}"#);
    let mut h = host_with(&config(""), 2, &svc);
    h.advance(1000);
    assert_eq!(status_on_all(&mut h, "five"), vec![200; 2]);
    serve(
        &svc,
        r#"{"version": 3, "tokens": [{"id": "v3", "secret": "three"}]}"#,
        "Thu, 01 Jan 2026 00:02:00 GMT",
    );
    h.advance(4000);
    assert_eq!(h.metric("s2s_guard.source.rollback_refused"), Some(1));
    assert_eq!(status_on_all(&mut h, "five"), vec![200; 2]);
    assert_eq!(status_on_all(&mut h, "three"), vec![401; 2]);
    assert_eq!(
        h.metric_record("s2s_guard.source.version").unwrap().value,
        5
    );
}

/// A set with a version, in the set's body.
fn versioned_set(version: u64, tokens: &[&str]) -> String {
    let t: Vec<String> = tokens
        .iter()
        .map(|t| format!(r#"{{"id": "id-{t}", "server_secret": "{t}"}}"#))
        .collect();
    format!(r#"{{"version": {version}, "tokens": [{}]}}"#, t.join(","))
}

const BUNDLE_KEY: &str = "000102030405060708090a0b0c0d0e0f";

fn signed_source(body: &str) -> (Shared, Host) {
    let svc = service(body);
    svc.lock().unwrap().bundle_key = Some(hex::decode(BUNDLE_KEY).unwrap());
    let h = host_with(
        &config(&format!(r#", "bundle_key": "{BUNDLE_KEY}""#)),
        2,
        &svc,
    );
    (svc, h)
}

#[test]
fn bundle_signatures() {
    let (svc, mut h) = signed_source(&versioned_set(1, &["signed"]));
    h.advance(1000);
    assert_eq!(status_on_all(&mut h, "signed"), vec![200; 2]);
    svc.lock().unwrap().tamper = true;
    serve(
        &svc,
        &versioned_set(2, &["injected"]),
        "Thu, 01 Jan 2026 00:03:00 GMT",
    );
    h.advance(4000);
    assert!(h.metric("s2s_guard.source.failure.bad_signature").unwrap() >= 1);
    assert_eq!(status_on_all(&mut h, "injected"), vec![401; 2]);
    assert_eq!(status_on_all(&mut h, "signed"), vec![200; 2]);
}

/// A signed source orders sets by the version in the signed body: an old signed set
/// replayed with a newer date is refused (the revoked token stays revoked), and a
/// signed set without a version is refused.
#[test]
fn signed_sets_are_ordered_by_their_signed_version() {
    let (svc, mut h) = signed_source(&versioned_set(1, &["old", "revoked"]));
    h.advance(1000);
    assert_eq!(status_on_all(&mut h, "revoked"), vec![200; 2]);
    serve(
        &svc,
        &versioned_set(2, &["new"]),
        "Thu, 01 Jan 2026 00:05:00 GMT",
    );
    h.advance(4000);
    assert_eq!(status_on_all(&mut h, "revoked"), vec![401; 2]);
    assert_eq!(status_on_all(&mut h, "new"), vec![200; 2]);
    // The attacker replays version 1, signed, with a fresher Last-Modified.
    serve(
        &svc,
        &versioned_set(1, &["old", "revoked"]),
        "Thu, 01 Jan 2026 09:00:00 GMT",
    );
    h.advance(4000);
    assert!(h.metric("s2s_guard.source.rollback_refused").unwrap() >= 1);
    assert_eq!(status_on_all(&mut h, "revoked"), vec![401; 2]);
    assert_eq!(status_on_all(&mut h, "new"), vec![200; 2]);
    // A signed set without a version: its order would come from an unsigned header.
    serve(
        &svc,
        &jitsu_set(&["unversioned"]),
        "Thu, 01 Jan 2026 10:00:00 GMT",
    );
    h.advance(4000);
    assert!(h.metric("s2s_guard.source.failure.version").unwrap() >= 1);
    assert_eq!(status_on_all(&mut h, "unversioned"), vec![401; 2]);
    // An absurd version cannot pin the order; a higher epoch resets it.
    serve(
        &svc,
        &versioned_set(u64::MAX >> 1, &["pin"]),
        "Thu, 01 Jan 2026 11:00:00 GMT",
    );
    h.advance(4000);
    assert_eq!(status_on_all(&mut h, "pin"), vec![401; 2]);
    serve(
        &svc,
        r#"{"epoch": 1, "version": 1, "tokens": [{"id": "id-reset", "server_secret": "reset"}]}"#,
        "Thu, 01 Jan 2026 12:00:00 GMT",
    );
    // Two refusals in a row: the fetcher backs off (period × 4).
    h.advance(15_000);
    assert_eq!(status_on_all(&mut h, "reset"), vec![200; 2]);
    assert_eq!(status_on_all(&mut h, "new"), vec![401; 2]);
}

/// No set ends the order (session 11, helper-41 F1: a set at epoch 2^32 and version
/// 2^53 from an unsigned source refused every later set, so its tokens stayed in
/// force after the source was repaired): an epoch more than 2^32 above the one in
/// force (0 before any set) is refused, and a set at the largest version still has
/// a successor in the next epoch.
#[test]
fn no_set_ends_the_order() {
    let svc = service(&versioned_set(1, &["good"]));
    let mut h = host_with(&config(""), 2, &svc);
    h.advance(1000);
    assert_eq!(status_on_all(&mut h, "good"), vec![200; 2]);
    serve(
        &svc,
        r#"{"epoch": 4294967297, "version": 9007199254740992, "tokens": [{"id": "id-pin", "server_secret": "pin"}]}"#,
        "Thu, 01 Jan 2026 01:00:00 GMT",
    );
    h.advance(4000);
    assert!(h.metric("s2s_guard.source.failure.version").unwrap() >= 1);
    assert_eq!(status_on_all(&mut h, "pin"), vec![401; 2]);
    assert_eq!(status_on_all(&mut h, "good"), vec![200; 2]);
    // The largest epoch a set may jump to, at the largest version: in force...
    serve(
        &svc,
        r#"{"epoch": 4294967296, "version": 9007199254740992, "tokens": [{"id": "id-top", "server_secret": "top"}]}"#,
        "Thu, 01 Jan 2026 02:00:00 GMT",
    );
    h.advance(15_000);
    assert_eq!(status_on_all(&mut h, "top"), vec![200; 2]);
    // ... and still followed by the repaired source's next epoch.
    serve(
        &svc,
        r#"{"epoch": 4294967297, "version": 1, "tokens": [{"id": "id-repaired", "server_secret": "repaired"}]}"#,
        "Thu, 01 Jan 2026 03:00:00 GMT",
    );
    h.advance(15_000);
    assert_eq!(status_on_all(&mut h, "repaired"), vec![200; 2]);
    assert_eq!(status_on_all(&mut h, "top"), vec![401; 2]);
}

/// A set may change app settings only when the configuration allows it; a set that
/// switches an app's authentication off is logged as such and counted.
#[test]
fn sets_change_app_settings_only_when_allowed() {
    let cfg = |extra: &str| {
        format!(
            r#"{{"presets": ["adjust"], "apps": {{"app1": {{"authentication": true}}}},
  "tokens": [{{"id": "boot", "secret": "boot-token", "app": "app1"}}],
  "token_source": {{"cluster": "token_service", "path": "/tokens.json", "period": "3s",
                   "headers": {{"authorization": "Bearer source-credential"}} {extra}}}}}"#
        )
    };
    let event = || Request::get("/event?s2s=1&app_token=app1&event_token=e");
    let off = r#"{"version": 99, "tokens": [], "apps": {}}"#;
    // Not allowed: the set is refused, app1 stays protected.
    let svc = service(off);
    let mut h = host_with(&cfg(""), 2, &svc);
    h.advance(1000);
    assert!(h.metric("s2s_guard.source.failure.invalid").unwrap() >= 1);
    assert_eq!(
        h.send(event()).status,
        503,
        "no set in force yet: cannot verify"
    );
    // Allowed: loaded, and the switch-off is logged and counted.
    let svc = service(off);
    let mut h = host_with(
        &cfg(r#", "apps_from_set": true, "before_first": "inline""#),
        2,
        &svc,
    );
    assert_eq!(h.send(event()).status, 202, "inline: app1 is protected");
    h.advance(1000);
    assert!(h.metric("s2s_guard.source.apps_switched_off").unwrap() >= 1);
    let logs = h.logs_at(s2s_guard_host::LogLevel::Warn).join("\n");
    assert!(
        logs.contains("switches authentication OFF for apps [app1]"),
        "{logs}"
    );
}

/// Round 15 (helper-58, F4): a set that keeps an app's signatures enforced but
/// loosens how (replay memory off, ten-year freshness, later shapes passed) is
/// logged, naming the app and what loosened.
#[test]
fn sets_loosening_signature_checks_are_logged() {
    let cfg = r#"{"presets": ["adjust_sdk"], "apps": {"app1": {"signature": {"enforce_signature": true,
      "later_sdk": "reject", "secrets": [{"id": 1, "info": [1, 2, 3, 4]}]}}},
      "token_source": {"cluster": "token_service", "path": "/tokens.json", "period": "3s",
                       "headers": {"authorization": "Bearer source-credential"},
                       "apps_from_set": true, "before_first": "inline"}}"#;
    let set = r#"{"version": 5, "tokens": [], "apps": {"app1": {"signature": {"enforce_signature": true,
      "later_sdk": "pass", "max_age": "3650d", "replay": {"enabled": false},
      "secrets": [{"id": 1, "info": [1, 2, 3, 4]}]}}}}"#;
    let svc = service(set);
    let mut h = host_with(cfg, 1, &svc);
    h.advance(1000);
    let logs = h.logs_at(LogLevel::Warn).join("\n");
    assert!(
        logs.contains(
            "version 5 loosens signature checks for apps [app1 (replay off, longer max_age, later_sdk looser)]"
        ),
        "{logs}"
    );
    assert!(!logs.contains("switches authentication OFF"), "{logs}");
}

/// With a bundle key, workers verify what they load from shared data: a set written
/// there by another plugin of the proxy (Istio shares one namespace) is refused.
#[test]
fn forged_shared_data_is_refused_with_a_bundle_key() {
    let cfg = format!(
        r#"{{"presets": ["swaarm"], "token_source": {{"cluster": "token_service", "path": "/tokens.json", "role": "reader", "name": "ops", "bundle_key": "{BUNDLE_KEY}"}}}}"#
    );
    let mut h = Host::new(
        &load_dist("s2s-guard.wasm"),
        HostOptions {
            workers: 2,
            plugin_config: cfg.as_bytes().to_vec(),
            ..HostOptions::default()
        },
    )
    .unwrap();
    let set = versioned_set(7, &["forged"]);
    h.set_shared_data("s2s-guard/ops/set", set.as_bytes());
    h.set_shared_data(
        "s2s-guard/ops/version",
        &version_record(&h, 7, set.as_bytes()),
    );
    h.set_shared_data("s2s-guard/ops/sig", b"sha256=00");
    h.advance(1000);
    assert_eq!(status_on_all(&mut h, "forged"), vec![503; 2]);
    assert!(
        h.metric("s2s_guard.source.failure.published_signature")
            .unwrap()
            >= 1
    );
}

/// The version record a fetcher publishes (see src/core/distribution.rs).
fn version_record(h: &Host, version: u64, set: &[u8]) -> Vec<u8> {
    let digest: [u8; 32] = {
        use sha2::Digest;
        Sha256::digest(set).into()
    };
    let mut record = version.to_le_bytes().to_vec();
    record.extend_from_slice(&h.now_ns().to_le_bytes());
    record.extend_from_slice(&digest);
    record.extend_from_slice(&0u64.to_le_bytes());
    record.push(1);
    record
}

/// Requests keep flowing on every worker while the set changes every period; each
/// is decided by a whole set, old or new: a token in every set always passes, one in
/// none always fails.
#[test]
fn requests_during_many_swaps() {
    let svc = service(&jitsu_set(&["stable", "v0"]));
    // Keys are given once: a second "period" would be refused.
    let config = config("").replace(r#""period": "3s""#, r#""period": "400ms""#);
    let mut h = host_with(&config, 4, &svc);
    h.advance(500);
    for i in 1..=40u32 {
        serve(
            &svc,
            &jitsu_set(&["stable", &format!("v{i}")]),
            &format!("Thu, 01 Jan 2026 00:10:{:02} GMT", i),
        );
        // One period for the fetch, one tick (period / 4) for every worker to load it.
        for step in 0..10 {
            h.advance(50);
            for w in 0..4 {
                assert_eq!(
                    h.send_on(w, postback("stable")).status,
                    200,
                    "swap {i} step {step} worker {w}"
                );
                assert_eq!(h.send_on(w, postback("never")).status, 401);
            }
        }
        // Within a period and a tick, the newest token works everywhere, the one before
        // it does not.
        for w in 0..4 {
            assert_eq!(
                h.send_on(w, postback(&format!("v{i}"))).status,
                200,
                "swap {i} worker {w}"
            );
            assert_eq!(
                h.send_on(w, postback(&format!("v{}", i - 1))).status,
                401,
                "swap {i} worker {w}"
            );
        }
    }
    assert!(h.metric("s2s_guard.source.loaded").unwrap() >= 40);
}

/// Shared data written by another filter or an operator tool, read by readers.
#[test]
fn readers_load_what_someone_else_published() {
    let cfg = r#"{"presets": ["swaarm"], "token_source": {"cluster": "token_service", "path": "/tokens.json", "role": "reader", "name": "ops"}}"#;
    let mut h = Host::new(
        &load_dist("s2s-guard.wasm"),
        HostOptions {
            workers: 2,
            plugin_config: cfg.as_bytes().to_vec(),
            ..HostOptions::default()
        },
    )
    .unwrap();
    assert_eq!(h.send(postback("from-ops")).status, 503);
    let set = jitsu_set(&["from-ops"]);
    h.set_shared_data("s2s-guard/ops/set", set.as_bytes());
    let record = version_record(&h, 1, set.as_bytes());
    h.set_shared_data("s2s-guard/ops/version", &record);
    h.advance(1000);
    assert_eq!(status_on_all(&mut h, "from-ops"), vec![200; 2]);
}

/// Jitsu's inline shorthands: a plain string, or a list of strings, are client secrets.
#[test]
fn jitsu_inline_shorthands() {
    for tokens in [
        r#""plain-client-secret""#,
        r#"["plain-client-secret", "another"]"#,
    ] {
        let cfg = format!(r#"{{"presets": ["jitsu"], "tokens": {tokens}}}"#);
        let mut h = Host::new(
            &load_dist("s2s-guard.wasm"),
            HostOptions {
                plugin_config: cfg.into_bytes(),
                ..HostOptions::default()
            },
        )
        .unwrap();
        let o = h.send(Request::post("/api/v1/event?token=plain-client-secret"));
        assert_eq!(o.status, 200);
        assert_eq!(
            o.upstream.unwrap().header("x-s2s-guard-token-id"),
            Some(&b"client-secret-0"[..])
        );
        assert_eq!(
            h.send(Request::post("/api/v1/s2s/event?token=plain-client-secret"))
                .status,
            401
        );
    }
}

/// Large sets: workers look tokens up in shared data by digest; removed tokens'
/// records are emptied, so they stop working everywhere.
#[test]
fn shared_lookup_mode() {
    let svc = service(&jitsu_set(&["a1", "a2"]));
    let mut h = host_with(&config(r#", "lookup": "shared""#), 3, &svc);
    h.advance(1000);
    assert_eq!(status_on_all(&mut h, "a1"), vec![200; 3]);
    assert_eq!(status_on_all(&mut h, "nope"), vec![401; 3]);
    let o = h.send(postback("a2"));
    assert_eq!(
        o.upstream.unwrap().header("x-s2s-guard-token-id"),
        Some(&b"id-a2"[..])
    );
    serve(
        &svc,
        &jitsu_set(&["a2", "b1"]),
        "Thu, 01 Jan 2026 00:05:00 GMT",
    );
    h.advance(4000);
    assert_eq!(status_on_all(&mut h, "b1"), vec![200; 3]);
    assert_eq!(
        status_on_all(&mut h, "a1"),
        vec![401; 3],
        "removed token's record emptied"
    );
    assert_eq!(status_on_all(&mut h, "a2"), vec![200; 3]);
    assert_eq!(h.metric_record("s2s_guard.source.tokens").unwrap().value, 2);
}

/// An Envoy singleton bootstrap service (same `.wasm`, `role: fetcher`) fetches and
/// publishes; the HTTP filter's workers (`role: reader`) only read.
#[test]
fn singleton_fetcher_and_reader_workers() {
    let svc = service(&jitsu_set(&["from-singleton"]));
    let singleton = host_with(&config(r#", "role": "fetcher""#), 1, &svc);
    let compiled = load_dist("s2s-guard.wasm");
    let mut filters = Host::join(
        &compiled,
        HostOptions {
            workers: 3,
            plugin_config: config(r#", "role": "reader""#).into_bytes(),
            ..HostOptions::default()
        },
        &singleton,
    )
    .unwrap();
    let mut singleton = singleton;
    for _ in 0..4 {
        singleton.advance(250);
        filters.advance(0);
    }
    assert_eq!(status_on_all(&mut filters, "from-singleton"), vec![200; 3]);
    assert_eq!(svc.lock().unwrap().calls, 1, "only the singleton fetched");
    singleton.advance(30_000);
    filters.advance(0);
    assert!((10..=12).contains(&svc.lock().unwrap().calls));
}

/// A configuration update (a new root context in each VM) keeps fetching without
/// waiting for the old lease to expire.
#[test]
fn reconfiguration_keeps_the_lease() {
    let svc = service(&jitsu_set(&["t1"]));
    let mut h = host_with(&config(""), 2, &svc);
    h.advance(1000);
    let before = svc.lock().unwrap().calls;
    h.reconfigure(config(r#", "stale_after": "1h""#).as_bytes())
        .unwrap();
    h.advance(3500);
    assert!(
        svc.lock().unwrap().calls > before,
        "fetching went on after the update"
    );
    assert_eq!(h.metric("s2s_guard.source.lease_acquired"), Some(1));
    assert_eq!(status_on_all(&mut h, "t1"), vec![200; 2]);
}

/// Large-set mode with a bundle key: token records in shared data carry the
/// fetcher's tag; a record written there by anything else is not a token.
#[test]
fn shared_lookup_records_are_sealed_with_a_bundle_key() {
    let svc = service(&versioned_set(1, &["a1"]));
    svc.lock().unwrap().bundle_key = Some(hex::decode(BUNDLE_KEY).unwrap());
    let mut h = host_with(
        &config(&format!(
            r#", "lookup": "shared", "bundle_key": "{BUNDLE_KEY}""#
        )),
        2,
        &svc,
    );
    h.advance(1000);
    assert_eq!(status_on_all(&mut h, "a1"), vec![200; 2]);
    // Another plugin of the proxy writes a record for a secret of its choosing.
    let digest = {
        use sha2::Digest;
        hex::encode(Sha256::digest(b"forged"))
    };
    h.set_shared_data(
        &format!("s2s-guard/default/t/{digest}"),
        br#"{"id":"admin","app":null,"scopes":[],"active":true,"not_before":null,"expires_at":null,"kind":"server","origins":[],"realm":"swaarm","all_apps":true}"#,
    );
    assert_eq!(status_on_all(&mut h, "forged"), vec![401; 2]);
    assert_eq!(status_on_all(&mut h, "a1"), vec![200; 2]);
}

/// Copy mode: readers adopt the compiled store a fetcher published for the
/// version in force (no parse of the set); a store of another version is not
/// taken for this one, and with a bundle key a store whose tag does not verify is
/// refused.
#[test]
fn readers_adopt_the_published_store_and_refuse_a_forged_one() {
    let compiled = |tokens: &[&str], set: &str| {
        let policy = s2s_guard::config::parse_with_set(
            br#"{"presets": ["swaarm"]}"#,
            Some(jitsu_set(tokens).as_bytes()),
        )
        .unwrap();
        let mut store = policy.tokens;
        use sha2::Digest;
        store.set_tag(sha2::Sha256::digest(set.as_bytes()).into());
        store.blob().to_vec()
    };
    for signed in [false, true] {
        let key = if signed {
            format!(r#", "bundle_key": "{BUNDLE_KEY}""#)
        } else {
            String::new()
        };
        let cfg = format!(
            r#"{{"presets": ["swaarm"], "token_source": {{"cluster": "token_service", "path": "/tokens.json", "role": "reader", "name": "ops"{key}}}}}"#
        );
        let mut h = Host::new(
            &load_dist("s2s-guard.wasm"),
            HostOptions {
                workers: 2,
                plugin_config: cfg.as_bytes().to_vec(),
                ..HostOptions::default()
            },
        )
        .unwrap();
        // The version names a set nobody published as such: only the store holds it.
        let set = jitsu_set(&["stored"]);
        h.set_shared_data("s2s-guard/ops/meta", b"{}");
        h.set_shared_data("s2s-guard/ops/store", &compiled(&["stored"], &set));
        h.set_shared_data(
            "s2s-guard/ops/version",
            &version_record(&h, 1, set.as_bytes()),
        );
        h.advance(1000);
        if signed {
            // No tags: refused, never loaded.
            assert_eq!(status_on_all(&mut h, "stored"), vec![503; 2]);
            assert!(
                h.metric("s2s_guard.source.failure.published_signature")
                    .unwrap()
                    >= 1
            );
        } else {
            assert_eq!(status_on_all(&mut h, "stored"), vec![200; 2]);
            assert_eq!(status_on_all(&mut h, "other"), vec![401; 2]);
            // A store of another version is not this version's: with no set
            // published either, nothing changes.
            let next = jitsu_set(&["next"]);
            h.set_shared_data("s2s-guard/ops/store", &compiled(&["next"], &set));
            h.set_shared_data(
                "s2s-guard/ops/version",
                &version_record(&h, 2, next.as_bytes()),
            );
            h.advance(1000);
            assert_eq!(status_on_all(&mut h, "next"), vec![401; 2]);
            assert_eq!(status_on_all(&mut h, "stored"), vec![200; 2]);
        }
    }
}

/// Session 10, round 2 (helper-35) F3: a source serving the version in force in
/// other bytes (re-indented, keys in another order) confirms it; before, each fetch
/// was a `version` failure and, with `when_stale: reject`, every protected route
/// answered 503 while the source was up and serving the right set. A change of
/// content under the same version is still refused, and does not confirm the set.
#[test]
fn the_same_set_in_other_bytes_confirms_the_set_in_force() {
    for lookup in ["", r#", "lookup": "shared""#] {
        let stale = format!(r#", "stale_after": "10s", "when_stale": "reject"{lookup}"#);
        let svc = service(
            r#"{"version": 3, "tokens": [{"id": "id-a", "secret": "tok-a", "scopes": ["events"]}]}"#,
        );
        let mut h = host_with(&config(&stale), 2, &svc);
        h.advance(1000);
        assert_eq!(status_on_all(&mut h, "tok-a"), vec![200; 2], "{lookup}");
        // Re-indented, and the keys of the set and of its token in another order.
        let other_bytes = "{\n  \"tokens\": [\n    {\"scopes\": [\"events\"], \"secret\": \"tok-a\", \"id\": \"id-a\"}\n  ],\n  \"version\": 3\n}\n";
        serve(&svc, other_bytes, "Thu, 01 Jan 2026 01:00:00 GMT");
        h.advance(30_000);
        assert_eq!(
            h.metric("s2s_guard.source.failure.version").unwrap_or(0),
            0,
            "{lookup}"
        );
        assert!(
            h.metric("s2s_guard.source.unchanged").unwrap() >= 1,
            "{lookup}"
        );
        assert_eq!(
            status_on_all(&mut h, "tok-a"),
            vec![200; 2],
            "still fresh {lookup}"
        );
        // Other content under version 3: refused, and no confirmation.
        serve(
            &svc,
            r#"{"version": 3, "tokens": [{"id": "id-a", "secret": "tok-b", "scopes": ["events"]}]}"#,
            "Thu, 01 Jan 2026 02:00:00 GMT",
        );
        h.advance(4000);
        assert!(
            h.metric("s2s_guard.source.failure.version").unwrap() >= 1,
            "{lookup}"
        );
        assert_eq!(status_on_all(&mut h, "tok-b"), vec![401; 2], "{lookup}");
        // A scope changed, the version not: other content too.
        serve(
            &svc,
            r#"{"version": 3, "tokens": [{"id": "id-a", "secret": "tok-a", "scopes": ["events", "gdpr"]}]}"#,
            "Thu, 01 Jan 2026 03:00:00 GMT",
        );
        h.advance(20_000);
        let o = h.send(postback("tok-a"));
        assert_eq!(o.status, 503, "stale once nothing confirms it {lookup}");
    }
}

/// Session 10, round 2 (helper-35) N2: a set without its `tokens` (cut short, half
/// generated), or with `"tokens": null`, is refused and the set in force kept; an
/// explicit `[]` still empties it.
#[test]
fn a_set_must_list_its_tokens() {
    let svc = service(&versioned_set(1, &["tok-a"]));
    let mut h = host_with(&config(""), 2, &svc);
    h.advance(1000);
    assert_eq!(status_on_all(&mut h, "tok-a"), vec![200; 2]);
    for (i, bad) in [r#"{"version": 2}"#, r#"{"version": 3, "tokens": null}"#]
        .iter()
        .enumerate()
    {
        serve(&svc, bad, &format!("Thu, 01 Jan 2026 0{}:00:00 GMT", i + 1));
        h.advance(70_000);
        assert!(
            h.metric("s2s_guard.source.failure.invalid").unwrap() > i as i64,
            "{bad}"
        );
        assert_eq!(status_on_all(&mut h, "tok-a"), vec![200; 2], "{bad}");
    }
    serve(
        &svc,
        r#"{"version": 4, "tokens": []}"#,
        "Thu, 01 Jan 2026 05:00:00 GMT",
    );
    h.advance(70_000);
    assert_eq!(status_on_all(&mut h, "tok-a"), vec![401; 2]);
}

/// Every shared-data entry of a namespace but its lease: what another plugin of
/// the proxy can read and write back later.
fn snapshot(h: &Host, name: &str) -> Vec<(String, Vec<u8>)> {
    let prefix = format!("s2s-guard/{name}/");
    let mut out = Vec::new();
    h.shared_data_visit(|k, v| {
        if k.starts_with(&prefix) && !k.ends_with("/lease") {
            out.push((k.to_string(), v.to_vec()));
        }
    });
    out
}

fn write_back(h: &Host, entries: &[(String, Vec<u8>)]) {
    for (k, v) in entries {
        h.set_shared_data(k, v);
    }
}

/// Session 12, round 6 (helper-44) F1: another plugin sharing the namespace wrote
/// back an old, genuinely signed publication (set, store, meta, version record and
/// their tags) while the source answered 304: every worker loaded version 1 over
/// version 2 and a revoked token worked again. Now no worker goes back from the
/// set in force (`rollback_refused`), the fetcher notices that shared data does not
/// hold its set and publishes it again, and a worker that starts afterwards loads
/// the source's set.
#[test]
fn an_old_signed_publication_written_back_is_refused() {
    for lookup in ["copy", "shared"] {
        let svc = service(&versioned_set(1, &["revoked", "kept"]));
        svc.lock().unwrap().bundle_key = Some(hex::decode(BUNDLE_KEY).unwrap());
        let mut h = host_with(
            &config(&format!(
                r#", "bundle_key": "{BUNDLE_KEY}", "lookup": "{lookup}""#
            )),
            3,
            &svc,
        );
        h.advance(1000);
        assert_eq!(status_on_all(&mut h, "revoked"), vec![200; 3], "{lookup}");
        let old = snapshot(&h, "default");
        serve(
            &svc,
            &versioned_set(2, &["new", "kept"]),
            "Thu, 01 Jan 2026 00:05:00 GMT",
        );
        h.advance(4000);
        assert_eq!(status_on_all(&mut h, "revoked"), vec![401; 3], "{lookup}");
        assert_eq!(status_on_all(&mut h, "new"), vec![200; 3], "{lookup}");
        // The attacker writes version 1's publication back; the source answers
        // the fetcher's conditional request with 304.
        write_back(&h, &old);
        h.advance(1000);
        assert_eq!(status_on_all(&mut h, "revoked"), vec![401; 3], "{lookup}");
        assert_eq!(status_on_all(&mut h, "new"), vec![200; 3], "{lookup}");
        assert!(h.metric("s2s_guard.source.rollback_refused").unwrap() >= 1);
        // The fetcher publishes the source's set again within a period (until
        // then, in `lookup: shared`, a token whose old record was written back is
        // refused: the record is version 1's).
        h.advance(4000);
        assert_eq!(status_on_all(&mut h, "kept"), vec![200; 3], "{lookup}");
        assert!(h
            .logs_at(LogLevel::Warn)
            .iter()
            .any(|l| l.contains("published again")));
        let compiled = load_dist("s2s-guard.wasm");
        let mut late = Host::join(
            &compiled,
            HostOptions {
                workers: 1,
                plugin_config: config(&format!(
                    r#", "bundle_key": "{BUNDLE_KEY}", "lookup": "{lookup}", "role": "reader""#
                ))
                .into_bytes(),
                ..HostOptions::default()
            },
            &h,
        )
        .unwrap();
        late.advance(1000);
        assert_eq!(status_on_all(&mut late, "revoked"), vec![401], "{lookup}");
        assert_eq!(status_on_all(&mut late, "new"), vec![200], "{lookup}");
    }
}

/// F1, across namespaces: two plugins with one bundle key and other names; one
/// namespace's publication copied into the other's is not that namespace's.
#[test]
fn a_publication_copied_from_another_namespace_is_refused() {
    let svc = service(&versioned_set(1, &["tenant-x"]));
    svc.lock().unwrap().bundle_key = Some(hex::decode(BUNDLE_KEY).unwrap());
    let x = host_with(
        &config(&format!(
            r#", "bundle_key": "{BUNDLE_KEY}", "name": "tenantx""#
        )),
        1,
        &svc,
    );
    let mut x = x;
    x.advance(1000);
    assert_eq!(status_on_all(&mut x, "tenant-x"), vec![200]);
    let compiled = load_dist("s2s-guard.wasm");
    let mut y = Host::join(
        &compiled,
        HostOptions {
            workers: 2,
            plugin_config: config(&format!(
                r#", "bundle_key": "{BUNDLE_KEY}", "name": "tenanty", "role": "reader""#
            ))
            .into_bytes(),
            ..HostOptions::default()
        },
        &x,
    )
    .unwrap();
    for (k, v) in snapshot(&x, "tenantx") {
        y.set_shared_data(&k.replace("/tenantx/", "/tenanty/"), &v);
    }
    y.advance(1000);
    assert_eq!(status_on_all(&mut y, "tenant-x"), vec![503; 2]);
    assert!(
        y.metric("s2s_guard.source.failure.published_signature")
            .unwrap()
            >= 1
    );
}

/// F2: in `lookup: shared`, a revoked token's record (sealed, bound to its digest)
/// written back after its revocation opened routes under every later set. Records
/// are now bound to the order of their set: one of an older set is no token.
#[test]
fn a_revoked_token_record_written_back_is_refused() {
    for signed in [true, false] {
        let svc = service(&versioned_set(1, &["revoked", "kept"]));
        let key = if signed {
            svc.lock().unwrap().bundle_key = Some(hex::decode(BUNDLE_KEY).unwrap());
            format!(r#", "bundle_key": "{BUNDLE_KEY}""#)
        } else {
            String::new()
        };
        let mut h = host_with(&config(&format!(r#", "lookup": "shared"{key}"#)), 2, &svc);
        h.advance(1000);
        assert_eq!(status_on_all(&mut h, "revoked"), vec![200; 2]);
        let record_key = {
            use sha2::Digest;
            format!(
                "s2s-guard/default/t/{}",
                hex::encode(Sha256::digest(b"revoked"))
            )
        };
        let (old_record, _) = h.shared_data(&record_key).unwrap();
        serve(
            &svc,
            &versioned_set(2, &["kept"]),
            "Thu, 01 Jan 2026 00:05:00 GMT",
        );
        h.advance(4000);
        assert_eq!(
            status_on_all(&mut h, "revoked"),
            vec![401; 2],
            "signed {signed}"
        );
        h.set_shared_data(&record_key, &old_record);
        assert_eq!(
            status_on_all(&mut h, "revoked"),
            vec![401; 2],
            "signed {signed}"
        );
        serve(
            &svc,
            &versioned_set(3, &["kept", "added"]),
            "Thu, 01 Jan 2026 00:10:00 GMT",
        );
        h.advance(4000);
        h.set_shared_data(&record_key, &old_record);
        assert_eq!(status_on_all(&mut h, "added"), vec![200; 2]);
        assert_eq!(status_on_all(&mut h, "kept"), vec![200; 2]);
        assert_eq!(
            status_on_all(&mut h, "revoked"),
            vec![401; 2],
            "signed {signed}"
        );
    }
}

/// F3: a lease written to expire in 2554 stopped every fetch for good, and a
/// version record with a later confirmation time kept a set fresh for ever. A
/// lease expiring beyond one lease from now is taken over; with a bundle key the
/// version record carries the fetcher's tag, so its time cannot be forged.
#[test]
fn a_forged_lease_or_confirmation_does_not_freeze_the_set() {
    let svc = service(&versioned_set(1, &["v1"]));
    svc.lock().unwrap().bundle_key = Some(hex::decode(BUNDLE_KEY).unwrap());
    let mut h = host_with(
        &config(&format!(
            r#", "bundle_key": "{BUNDLE_KEY}", "stale_after": "10s", "when_stale": "reject""#
        )),
        2,
        &svc,
    );
    h.advance(1000);
    assert_eq!(status_on_all(&mut h, "v1"), vec![200; 2]);
    let mut lease = 0x4141_4141_4141_4141u64.to_le_bytes().to_vec();
    lease.extend_from_slice(&u64::MAX.to_le_bytes());
    h.set_shared_data("s2s-guard/default/lease", &lease);
    serve(
        &svc,
        &versioned_set(2, &["v2"]),
        "Thu, 01 Jan 2026 00:05:00 GMT",
    );
    h.advance(4000);
    assert_eq!(
        status_on_all(&mut h, "v2"),
        vec![200; 2],
        "fetching went on"
    );
    // Round 7 (helper-45) F3: a lease renewed within its bounds on every tick by
    // something else is not a VM's either (with a bundle key, a lease is tagged).
    serve(
        &svc,
        &versioned_set(3, &["v3"]),
        "Thu, 01 Jan 2026 00:10:00 GMT",
    );
    for _ in 0..20 {
        let mut lease = 0x4141_4141_4141_4141u64.to_le_bytes().to_vec();
        lease.extend_from_slice(&(h.now_ns() + 1_000_000_000).to_le_bytes());
        h.set_shared_data("s2s-guard/default/lease", &lease);
        h.advance(250);
    }
    assert_eq!(
        status_on_all(&mut h, "v3"),
        vec![200; 2],
        "fetching went on"
    );
    // The version record's confirmation time pushed far ahead, its tag kept.
    let (mut record, _) = h.shared_data("s2s-guard/default/version").unwrap();
    record[8..16].copy_from_slice(&(u64::MAX >> 1).to_le_bytes());
    set_mode(&svc, Mode::Status(503));
    h.set_shared_data("s2s-guard/default/version", &record);
    h.advance(15_000);
    assert_eq!(
        status_on_all(&mut h, "v2"),
        vec![503; 2],
        "stale, not frozen"
    );
    assert!(h.metric("s2s_guard.source.stale_rejected").unwrap() >= 1);
    assert!(
        h.metric("s2s_guard.source.failure.published_signature")
            .unwrap()
            >= 1
    );
}

/// F5: a versionless set with an older `Last-Modified` than the set in force (a
/// stale CDN copy) came back as "version in force + 1" with a revoked token.
#[test]
fn an_older_unversioned_copy_is_a_rollback() {
    let svc = service(&jitsu_set(&["old", "keep"]));
    serve(
        &svc,
        &jitsu_set(&["old", "keep"]),
        "Mon, 01 Jan 2024 00:00:00 GMT",
    );
    let mut h = host_with(&config(""), 2, &svc);
    h.advance(1000);
    assert_eq!(status_on_all(&mut h, "old"), vec![200; 2]);
    serve(&svc, &jitsu_set(&["keep"]), "Wed, 01 Jan 2025 00:00:00 GMT");
    h.advance(4000);
    assert_eq!(status_on_all(&mut h, "old"), vec![401; 2]);
    serve(
        &svc,
        &jitsu_set(&["old", "keep"]),
        "Mon, 01 Jan 2024 00:00:00 GMT",
    );
    h.advance(4000);
    assert_eq!(status_on_all(&mut h, "old"), vec![401; 2]);
    assert_eq!(status_on_all(&mut h, "keep"), vec![200; 2]);
    assert!(h.metric("s2s_guard.source.rollback_refused").unwrap() >= 1);
    // Round 7 (helper-45) F4: dated in the two older forms HTTP recipients must
    // accept (RFC 850, asctime), the old copy was ordered by arrival.
    for date in ["Monday, 01-Jan-24 00:00:00 GMT", "Mon Jan  1 00:00:00 2024"] {
        serve(&svc, &jitsu_set(&["old", "keep", "x"]), date);
        h.advance(4000);
        assert_eq!(status_on_all(&mut h, "old"), vec![401; 2], "{date}");
    }
    assert!(h.metric("s2s_guard.source.rollback_refused").unwrap() >= 3);
}

/// F6: the fetcher published the set as fetched, secrets in clear (Jitsu's format
/// has nothing else), in a namespace every plugin of an Istio proxy reads. It now
/// publishes the compiled store (digests) or token records, and the meta.
#[test]
fn no_token_secret_in_clear_in_shared_data() {
    for lookup in ["copy", "shared"] {
        let svc =
            service(r#"{"tokens": [{"id": "jitsu-server", "server_secret": "SERVERSECRET456"}]}"#);
        let mut h = host_with(&config(&format!(r#", "lookup": "{lookup}""#)), 2, &svc);
        h.advance(1000);
        assert_eq!(status_on_all(&mut h, "SERVERSECRET456"), vec![200; 2]);
        let mut keys = 0;
        h.shared_data_visit(|k, v| {
            keys += 1;
            assert!(
                !v.windows(15).any(|w| w == b"SERVERSECRET456"),
                "{lookup}: {k} holds the secret"
            );
        });
        assert!(keys >= 3, "{lookup}");
    }
}

/// Session 12, round 6 (helper-44) F4: a bundle key proves who made a set, not that
/// it is the source's latest: whoever answers for the source can answer 304 to
/// every fetch and hold a revocation back for ever. A set's signed `expires` bounds
/// that: past it every worker refuses requests on the set's routes (503), whatever
/// the source answers, until a newer set arrives.
#[test]
fn a_set_past_its_expiry_is_refused_whatever_the_source_answers() {
    let rfc3339 = |ns: u64| {
        humantime::format_rfc3339_seconds(
            std::time::UNIX_EPOCH + std::time::Duration::from_nanos(ns),
        )
        .to_string()
    };
    for lookup in ["copy", "shared"] {
        let svc = service("{}");
        svc.lock().unwrap().bundle_key = Some(hex::decode(BUNDLE_KEY).unwrap());
        let mut h = host_with(
            &config(&format!(
                r#", "bundle_key": "{BUNDLE_KEY}", "lookup": "{lookup}""#
            )),
            2,
            &svc,
        );
        let expires = rfc3339(h.now_ns() + 20_000_000_000);
        serve(
            &svc,
            &format!(
                r#"{{"version": 1, "expires": "{expires}", "tokens": [{{"id": "t", "server_secret": "tok-1"}}]}}"#
            ),
            "Thu, 01 Jan 2026 00:00:00 GMT",
        );
        h.advance(1000);
        assert_eq!(status_on_all(&mut h, "tok-1"), vec![200; 2], "{lookup}");
        // The source (or whoever answers for it) says 304 from now on.
        h.advance(12_000);
        assert_eq!(status_on_all(&mut h, "tok-1"), vec![200; 2], "{lookup}");
        assert!(svc.lock().unwrap().conditional >= 2);
        h.advance(10_000);
        let o = h.send(postback("tok-1"));
        assert_eq!(o.status, 503, "{lookup}");
        assert!(o.upstream.is_none());
        assert_eq!(status_on_all(&mut h, "tok-1"), vec![503; 2], "{lookup}");
        assert!(h.metric("s2s_guard.source.stale_rejected").unwrap() >= 1);
        assert!(h
            .logs_at(LogLevel::Warn)
            .iter()
            .any(|l| l.contains("token set has expired")));
        // A newer set with a later end puts the routes back.
        let later = rfc3339(h.now_ns() + 3_600_000_000_000);
        serve(
            &svc,
            &format!(
                r#"{{"version": 2, "expires": "{later}", "tokens": [{{"id": "t", "server_secret": "tok-2"}}]}}"#
            ),
            "Thu, 01 Jan 2026 00:05:00 GMT",
        );
        h.advance(4000);
        assert_eq!(status_on_all(&mut h, "tok-2"), vec![200; 2], "{lookup}");
        assert_eq!(status_on_all(&mut h, "tok-1"), vec![401; 2], "{lookup}");
    }
}
