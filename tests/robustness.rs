//! Configuration life cycle and hostile input, through the `.wasm` in the test host.

use s2s_guard_host::{load_dist, Host, HostError, HostOptions, LogLevel, Request, Verdict};

fn host(config: &str, workers: usize) -> Result<Host, HostError> {
    Host::new(
        &load_dist("s2s-guard.wasm"),
        HostOptions {
            workers,
            plugin_config: config.as_bytes().to_vec(),
            ..HostOptions::default()
        },
    )
}

const SWAARM: &str = r#"{"presets": ["swaarm"], "tokens": [
  {"id": "store", "secret": "tok-1"}, {"id": "next", "secret": "tok-2", "active": false}]}"#;

fn postback(token: &str) -> Request {
    Request::get(&format!("/postback?s2s_token={token}&user_id=u&event_id=e"))
}

/// Rejections are reported word for word, through Envoy's `on_configure`: the
/// cases of `tests/fixtures/config-errors.json` (which the schema test reads too).
#[test]
fn configuration_errors_through_the_wasm() {
    let text = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/config-errors.json"
    ))
    .unwrap();
    let doc: serde_json::Value = serde_json::from_str(&text).unwrap();
    let cases: Vec<(String, String)> = doc["cases"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            (
                c["config"].as_str().unwrap().to_string(),
                c["message"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    assert!(cases.len() > 30);
    for (config, message) in &cases {
        let (config, message) = (config.as_str(), message.as_str());
        // The same words natively, from the pure core.
        match s2s_guard::config::parse(config.as_bytes()) {
            Err(e) => assert_eq!(e.to_string(), message, "native: {config}"),
            Ok(_) => panic!("native: {config}: accepted"),
        }
        match host(config, 1) {
            Err(HostError::ConfigRejected { logs, .. }) => {
                assert_eq!(
                    logs,
                    vec![format!("s2s-guard: configuration rejected: {message}")],
                    "{config}"
                );
            }
            Err(e) => panic!("{config}: unexpected {e}"),
            Ok(_) => panic!("{config}: accepted"),
        }
    }
}

/// Valid configurations that count or authenticate less than they seem to are
/// said at load, word for word: apps whose metric labels collide (with each other
/// or with `other`), and a route without `app_param` in a realm whose tokens are
/// bound to apps. A configuration without them says nothing.
#[test]
fn weakening_configurations_are_warned_about_through_the_wasm() {
    let config = r#"{"presets": ["adjust"],
      "routes": [{"path": "/custom", "profile": "adjust", "realm": "adjust", "name": "custom"},
                 {"path": "/custom2", "profile": "adjust", "realm": "adjust", "name": "custom2", "app_param": "app_token"}],
      "tokens": [{"id": "a", "secret": "tok-a", "app": "abc", "realm": "adjust"}],
      "apps": {"a.b": {}, "a_b": {}, "other": {}, "abc": {}}}"#;
    let h = host(config, 1).unwrap();
    let warnings = h.logs_at(LogLevel::Warn);
    assert_eq!(
        warnings,
        vec![
            "s2s-guard: app \"a_b\" is counted with app \"a.b\" in s2s_guard.per_app and s2s_guard.sdk (label \"a_b\"): give it a distinct name",
            "s2s-guard: app \"other\" is counted with the apps that have no series of their own in s2s_guard.per_app (label \"other\"): give it a distinct name",
            "s2s-guard: route \"custom\" has no app_param: realm \"adjust\" has tokens bound to an app, and each opens this route for every app",
        ]
    );
    // The same natively.
    let p = s2s_guard::config::parse(config.as_bytes()).unwrap();
    assert_eq!(p.warnings.len(), 3, "{:?}", p.warnings);
    // What the warning says holds: abc's token opens /custom for another app.
    let mut h = h;
    let o = h.send(Request::get("/custom?app_token=zzz").header("authorization", "Bearer tok-a"));
    assert_eq!(o.verdict, Verdict::Forwarded, "{o:?}");
    let o = h.send(Request::get("/custom2?app_token=zzz").header("authorization", "Bearer tok-a"));
    assert_ne!(o.verdict, Verdict::Forwarded, "{o:?}");
    // Without tokens bound to apps, and with distinct labels: no warning.
    let quiet = r#"{"presets": ["adjust"],
      "routes": [{"path": "/custom", "profile": "adjust", "realm": "adjust", "name": "custom"}],
      "tokens": [{"id": "a", "secret": "tok-a", "realm": "adjust"}],
      "apps": {"a.b": {}, "a-b": {}}}"#;
    let h = host(quiet, 1).unwrap();
    assert_eq!(h.logs_at(LogLevel::Warn), Vec::<String>::new());
}

/// Deactivating a token takes effect with the next configuration, on every worker;
/// reactivating restores it; a rejected update leaves the running one in force.
#[test]
fn deactivate_and_reactivate_with_the_next_configuration() {
    let mut h = host(SWAARM, 3).unwrap();
    for w in 0..3 {
        assert_eq!(h.send_on(w, postback("tok-1")).status, 200);
        assert_eq!(h.send_on(w, postback("tok-2")).status, 401);
    }
    // Rotate: activate the new token, deactivate the old one.
    let rotated = SWAARM
        .replace(
            r#""secret": "tok-1"}"#,
            r#""secret": "tok-1", "active": false}"#,
        )
        .replace(r#""active": false}]}"#, r#""active": true}]}"#);
    h.reconfigure(rotated.as_bytes()).unwrap();
    for w in 0..3 {
        assert_eq!(h.send_on(w, postback("tok-1")).status, 401, "worker {w}");
        assert_eq!(h.send_on(w, postback("tok-2")).status, 200, "worker {w}");
    }
    assert!(matches!(
        h.reconfigure(b"{\"presets\": 1}"),
        Err(HostError::ConfigRejected { .. })
    ));
    assert_eq!(
        h.send(postback("tok-2")).status,
        200,
        "old configuration still in force"
    );
    h.reconfigure(SWAARM.as_bytes()).unwrap();
    assert_eq!(h.send(postback("tok-1")).status, 200);
    // The first VM to see the update rejects it and the update goes no further (in
    // Envoy the main thread validates it before any worker sees it).
    assert_eq!(h.metric("s2s_guard.config.rejected"), Some(1));
}

/// Deterministic pseudo-random hostile requests: none may trap the VM, and every one
/// gets a defined answer.
#[test]
fn no_input_traps_the_vm() {
    let config = r#"{"presets": ["adjust", "swaarm", "jitsu"],
      "routes": [{"path": "/form", "profile": "swaarm", "credentials": ["form:t", "query:t", "bearer", "basic"],
                  "required_params": ["a"], "app_param": "app"}],
      "tokens": [{"id": "t", "realm": "default", "secret": "tok", "app": "app1"}, {"id": "j", "realm": "jitsu", "client_secret": "c", "origins": ["*.x.com"]}]}"#;
    let mut h = host(config, 2).unwrap();
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let paths = [
        "/event",
        "/postback",
        "/s2sevent",
        "/api/v1/event",
        "/api/v1/s2s/event",
        "/form",
        "/x",
    ];
    for i in 0..600 {
        let r = rng.next();
        let path_bytes = rng.blob();
        let query: String =
            String::from_utf8_lossy(&path_bytes).replace(['\u{fffd}', ' ', '\t', '\0'], "");
        let mut req = Request::new(
            ["GET", "POST", "OPTIONS", "PUT"][(r % 4) as usize],
            &format!("{}?{}", paths[(r >> 8) as usize % paths.len()], query),
        )
        .header("authorization", rng.blob())
        .header("origin", rng.blob())
        .header("x-auth-token", rng.blob());
        if i % 3 == 0 {
            req = req.header("authorization", rng.blob());
        }
        if i % 2 == 0 {
            let chunk = 1 + (rng.next() % 7) as usize;
            req = req
                .header("content-type", "application/x-www-form-urlencoded")
                .body(rng.blob())
                .chunked(chunk);
        }
        let o = h.send(req);
        assert_ne!(o.verdict, Verdict::Pending, "request {i} left pending");
        assert!(o.status > 0, "request {i}: no status");
    }
    for w in 0..2 {
        assert!(
            h.worker_failure(w).is_none(),
            "worker {w} trapped: {:?}",
            h.worker_failure(w)
        );
    }
    assert!(h.logs_at(LogLevel::Critical).is_empty());
}

/// xorshift64: deterministic, so a failure repeats exactly.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    /// Up to 11 pieces of hostile syntax, concatenated.
    fn blob(&mut self) -> Vec<u8> {
        const PIECES: [&[u8]; 16] = [
            b"Bearer ",
            b"Basic ",
            b"Signature ",
            b"tok",
            b",",
            b"%",
            b"%zz",
            b"=",
            b"&",
            b"+",
            b"\xff",
            b"\x00",
            b" ",
            b"\t",
            b"t=",
            b"app=app1",
        ];
        let n = self.next() % 12;
        let mut v = Vec::new();
        for _ in 0..n {
            v.extend_from_slice(PIECES[(self.next() % PIECES.len() as u64) as usize]);
        }
        v
    }
}

/// A form body that grows past `max_body_bytes` while arriving in chunks.
#[test]
fn chunked_form_body_over_the_limit() {
    let config = r#"{"max_body_bytes": 100, "routes": [{"path": "/form", "profile": "swaarm", "credentials": ["form:t"]}],
      "tokens": [{"id": "t", "secret": "tok"}]}"#;
    let mut h = host(config, 1).unwrap();
    let body = format!("t=tok&pad={}", "x".repeat(200));
    let o = h.send(
        Request::post("/form")
            .header("content-type", "application/x-www-form-urlencoded")
            .body(&body)
            .chunked(32),
    );
    assert_eq!(
        (o.status, o.body_text().as_str()),
        (413, "Request body too large")
    );
    let o = h.send(
        Request::post("/form")
            .header("content-type", "application/x-www-form-urlencoded")
            .body("t=tok&a=1")
            .chunked(2),
    );
    assert_eq!(o.status, 200);
    assert_eq!(o.upstream.unwrap().body, b"a=1");
}

/// ngx_wasm_module (the real host of `scripts/bench-nginx.sh`) declares
/// `proxy_get_log_level` as `(i32 i32) -> i32` where the Rust SDK imports
/// `(i32) -> i32`: a module that imports it (the SDK's `get_log_level()`) does not
/// load there. The log level must come from the plugin configuration instead.
#[test]
fn the_filter_does_not_import_proxy_get_log_level() {
    let imports = load_dist("s2s-guard.wasm").imports();
    assert!(
        imports.iter().any(|i| i == "env::proxy_log"),
        "the import list is read: {imports:?}"
    );
    assert!(
        !imports.iter().any(|i| i == "env::proxy_get_log_level"),
        "s2s-guard imports proxy_get_log_level: it would not load in ngx_wasm_module"
    );
}
