//! Every command of the `s2s-guard` binary, run as an operator runs it; `sign`'s
//! output is sent through the `.wasm` in the test host.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use s2s_guard_host::{load_dist, Host, HostOptions, Request, Verdict};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

struct Run {
    code: i32,
    stdout: String,
    stderr: String,
}

fn run_in(args: &[&str], stdin: &str) -> Run {
    let mut child = Command::new(env!("CARGO_BIN_EXE_s2s-guard"))
        .args(args)
        .current_dir(root())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(stdin.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    Run {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8(out.stdout).unwrap(),
        stderr: String::from_utf8(out.stderr).unwrap(),
    }
}

fn run(args: &[&str]) -> Run {
    run_in(args, "")
}

fn temp(name: &str, content: &str) -> String {
    let dir = std::env::temp_dir().join(format!("s2s-guard-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let p = dir.join(name);
    std::fs::write(&p, content).unwrap();
    p.to_string_lossy().into_owned()
}

fn sha256_hex(s: &str) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(s.as_bytes()))
}

#[test]
fn check_reads_json_yaml_envoy_and_istio() {
    let r = run(&["check", "demo/config.json"]);
    assert_eq!(r.code, 0, "{} {}", r.stdout, r.stderr);
    assert!(
        r.stdout.starts_with("ok   demo/config.json: "),
        "{}",
        r.stdout
    );

    let r = run(&["check", "envoy/envoy.yaml"]);
    assert_eq!(r.code, 0, "{}", r.stdout);
    assert_eq!(
        r.stdout
            .matches("ok   envoy/envoy.yaml (Envoy Wasm configuration #")
            .count(),
        2,
        "{}",
        r.stdout
    );

    let r = run(&["check", "envoy/istio/wasmplugin.yaml"]);
    assert_eq!(r.code, 0, "{}", r.stdout);
    assert!(r.stdout.contains("(WasmPlugin "), "{}", r.stdout);

    let yaml = temp(
        "config.yaml",
        "presets: [swaarm]\ntokens:\n  - id: store\n    sha256: 599c0d6d86efe0f5743bcd0ba688471c3ff4b0b0ed336bc9efdd3a52493c2283\n",
    );
    let r = run(&["check", &yaml]);
    assert_eq!(r.code, 0, "{} {}", r.stdout, r.stderr);
    assert!(
        r.stdout.contains(": 3 routes, 1 tokens, mode enforce"),
        "{}",
        r.stdout
    );
}

#[test]
fn check_gives_the_filters_words_and_exit_1() {
    let bad = temp(
        "bad.json",
        r#"{"presets": ["adjust"], "apps": {"x": {"authentication": "yes"}}}"#,
    );
    let r = run(&["check", &bad]);
    assert_eq!(r.code, 1);
    assert_eq!(
        r.stdout,
        format!("FAIL {bad}: apps.x.authentication: expected true or false\n")
    );
    // A token set is checked with the configuration it will be used with.
    let config = temp(
        "with-source.json",
        r#"{"presets": ["swaarm"], "token_source": {"cluster": "c", "path": "/t"}}"#,
    );
    let set = temp(
        "set.json",
        r#"{"version": 3, "tokens": [{"id": "a", "secret": "x"}, {"id": "a", "secret": "y"}]}"#,
    );
    let r = run(&["check", &config, "--set", &set]);
    assert_eq!(r.code, 1);
    assert_eq!(
        r.stdout,
        format!("FAIL {config}: token set: tokens[1].id: duplicate token id \"a\"\n")
    );
    let r = run(&["check"]);
    assert_eq!(
        (r.code, r.stderr.as_str()),
        (2, "s2s-guard: expected one configuration file\n")
    );
}

#[test]
fn explain_shows_routes_apps_tokens_and_source() {
    let r = run(&["explain", "envoy/envoy.yaml"]);
    assert_eq!(r.code, 0, "{}", r.stdout);
    let out = r.stdout;
    for line in [
        "mode: enforce    unknown paths: pass    form bodies up to 65536 bytes",
        "/event",
        "token if s2s=1, else signature (apps that switch it on)",
        "/api.*",
        "abc123kuvada7",
        "token source \"demo\": cluster token_service path /tokens.json every 3s (timeout 2s), role fetcher",
    ] {
        assert!(out.contains(line), "missing {line:?} in\n{out}");
    }
    let row = out
        .lines()
        .find(|l| l.trim_start().starts_with("/postback "))
        .unwrap();
    let cols: Vec<&str> = row.split_whitespace().collect();
    assert_eq!(
        cols,
        [
            "/postback",
            "GET,POST",
            "token",
            "-",
            "server",
            "swaarm",
            "swaarm",
            "form",
            "authorization,",
            "query:s2s_token"
        ]
    );
    let tokens = out
        .lines()
        .skip_while(|l| !l.starts_with("tokens ("))
        .nth(2)
        .unwrap();
    assert_eq!(
        tokens.split_whitespace().collect::<Vec<_>>(),
        ["adjust", "1", "0", "0"]
    );
}

#[test]
fn token_new_prints_the_token_once_and_a_digest_entry() {
    let r = run(&[
        "token",
        "new",
        "--id",
        "store-1",
        "--app",
        "abc",
        "--scopes",
        "events,sessions",
        "--realm",
        "adjust",
    ]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let mut lines = r.stdout.lines();
    let token = lines
        .next()
        .unwrap()
        .strip_prefix("token: ")
        .unwrap()
        .to_string();
    assert_eq!(token.len(), 64);
    let entry = lines.next().unwrap().strip_prefix("entry: ").unwrap();
    let v: serde_json::Value = serde_json::from_str(entry).unwrap();
    assert_eq!(v["sha256"], sha256_hex(&token));
    assert_eq!(v["id"], "store-1");
    assert!(!entry.contains(&token), "the entry holds only the digest");
    // The entry is a valid token of a configuration that routes its realm.
    let config = format!(r#"{{"presets": ["adjust"], "tokens": [{entry}]}}"#);
    s2s_guard::config::parse(config.as_bytes()).unwrap();
    // Two tokens are never the same.
    let again = run(&["token", "new"]);
    assert!(!again.stdout.contains(&token));
    let r = run(&["token", "new", "--scopes", "installs"]);
    assert_eq!(r.code, 2);
    assert!(
        r.stderr.contains("unknown scope \"installs\""),
        "{}",
        r.stderr
    );
    // An empty list would grant every scope: the filter refuses it, so does this.
    let r = run(&["token", "new", "--scopes", " , "]);
    assert_eq!(r.code, 2);
    assert!(
        r.stderr.contains("--scopes: no scope given"),
        "{}",
        r.stderr
    );
}

#[test]
fn hash_prints_one_digest_per_line() {
    let r = run_in(&["hash"], "tok-1\nsecret two\r\n\n");
    assert_eq!(r.code, 0);
    assert_eq!(
        r.stdout,
        format!("{}\n{}\n", sha256_hex("tok-1"), sha256_hex("secret two"))
    );
}

#[test]
fn app_secret_new_is_ready_for_the_sdk_and_the_configuration() {
    let r = run(&["app-secret", "new", "--app", "abc123", "--id", "3"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let lines: Vec<&str> = r.stdout.lines().collect();
    assert_eq!(lines[0], "secret_id: 3");
    let info: Vec<u64> = lines[1]
        .strip_prefix("info: ")
        .unwrap()
        .split(' ')
        .map(|n| n.parse().unwrap())
        .collect();
    assert_eq!(info.len(), 4);
    assert!(info
        .iter()
        .all(|n| (1_000_000_000..=u32::MAX as u64).contains(n)));
    assert!(lines[2].starts_with("sdk: adjustConfig.setAppSecret(3, "));
    let config: serde_json::Value =
        serde_json::from_str(lines[3].strip_prefix("config: ").unwrap()).unwrap();
    let mut full = config.clone();
    full["presets"] = serde_json::json!(["adjust_sdk"]);
    let p = s2s_guard::config::parse(full.to_string().as_bytes()).unwrap();
    assert_eq!(p.signatures["abc123"].secrets[0].id, 3);
}

/// Splits a shell command line of single-quoted words.
fn words(line: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut quoted = false;
    let mut any = false;
    for c in line.chars() {
        match c {
            '\'' => {
                quoted = !quoted;
                any = true;
            }
            ' ' if !quoted => {
                if any || !cur.is_empty() {
                    out.push(std::mem::take(&mut cur));
                }
                any = false;
            }
            '\\' if !quoted => {}
            c => cur.push(c),
        }
    }
    if any || !cur.is_empty() {
        out.push(cur);
    }
    out
}

/// The request a `curl` line describes, for the test host.
fn request(curl: &str) -> Request {
    let w = words(curl);
    assert_eq!(w[0], "curl");
    let mut method = "GET";
    let mut url = String::new();
    let mut headers = Vec::new();
    let mut body = None;
    let mut i = 1;
    while i < w.len() {
        match w[i].as_str() {
            "-sS" => {}
            "-X" => {
                i += 1;
                method = if w[i] == "POST" { "POST" } else { "GET" };
            }
            "-H" => {
                i += 1;
                let (k, v) = w[i].split_once(": ").unwrap();
                headers.push((k.to_ascii_lowercase(), v.to_string()));
            }
            "--data-raw" => {
                i += 1;
                body = Some(w[i].clone());
            }
            u => url = u.to_string(),
        }
        i += 1;
    }
    let path = url.strip_prefix("http://localhost:10000").unwrap();
    let mut r = Request::new(method, path);
    for (k, v) in headers {
        r = r.header(&k, v);
    }
    if let Some(b) = body {
        r = r.body(b);
    }
    r
}

#[test]
fn sign_output_is_accepted_by_the_filter_and_an_altered_copy_refused() {
    let config = r#"{"presets": ["adjust_sdk"], "apps": {"abc123": {"signature": {"enforce_signature": true,
      "secrets": [{"id": 2, "info": [1234, 5678, 9012, 3456]}]}}}}"#;
    let now_ns = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64;
    let mut host = Host::new(
        &load_dist("s2s-guard.wasm"),
        HostOptions {
            plugin_config: config.as_bytes().to_vec(),
            start_time_ns: now_ns,
            ..HostOptions::default()
        },
    )
    .unwrap();
    for (activity, extra) in [
        ("session", vec![]),
        ("event", vec!["event_token=abc", "revenue=1.5"]),
        ("attribution", vec![]),
    ] {
        let mut args = vec![
            "sign",
            "--app",
            "abc123",
            "--secret-id",
            "2",
            "--info",
            "1234,5678,9012,3456",
            "--activity",
            activity,
        ];
        args.extend(extra);
        let r = run(&args);
        assert_eq!(r.code, 0, "{}", r.stderr);
        let curl = r.stdout.trim_end();
        let o = host.send(request(curl));
        assert_eq!(
            o.verdict,
            Verdict::Forwarded,
            "{activity}: {curl}: {} {}",
            o.status,
            o.body_text()
        );

        // The same request with the signed device id changed by one character.
        let i = curl.find("gps_adid=").unwrap() + "gps_adid=".len();
        let mut altered = curl.to_string();
        let c = if &curl[i..i + 1] == "0" { "1" } else { "0" };
        altered.replace_range(i..i + 1, c);
        let o = host.send(request(&altered));
        assert!(
            o.is_local() && o.status == 401,
            "{activity}: altered {altered}: {}",
            o.status
        );
    }
    // A wrong App Secret is refused too.
    let r = run(&[
        "sign",
        "--app",
        "abc123",
        "--secret-id",
        "2",
        "--info",
        "1,2,3,4",
        "--activity",
        "session",
    ]);
    let o = host.send(request(r.stdout.trim_end()));
    assert!(o.is_local() && o.status == 401, "{}", o.status);
}

#[test]
fn tokens_convert_from_jitsu_and_lines() {
    let yaml = temp(
        "jitsu.yaml",
        "server:\n  api_keys:\n  - id: unique_tokenId\n    client_secret: bd33c5fa-d69f-11ea-87d0-0242ac130003\n    server_secret: 5f15eba2-db58-11ea-87d0-0242ac130003\n    origins:\n    - '*abc.com'\n    - 'efg.com'\n  - id: unique_tokenId2\n    client_secret: 123jsy213c5fa-c20765a0-d69f003\n  - id: unique_tokenId3\n    server_secret: 231dasds-3211kb3rdf-412dkjnabf\n",
    );
    let r = run(&["tokens", "convert", "--from", "jitsu", &yaml]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(!r.stdout.contains("bd33c5fa"), "no secret in clear");
    let set: serde_json::Value = serde_json::from_str(&r.stdout).unwrap();
    assert_eq!(
        set["tokens"][0],
        serde_json::json!({"id": "unique_tokenId",
            "client_secret_sha256": sha256_hex("bd33c5fa-d69f-11ea-87d0-0242ac130003"),
            "server_secret_sha256": sha256_hex("5f15eba2-db58-11ea-87d0-0242ac130003"),
            "origins": ["*abc.com", "efg.com"]})
    );
    let config = br#"{"presets": ["jitsu"]}"#;
    let p = s2s_guard::config::parse_with_set(config, Some(r.stdout.as_bytes())).unwrap();
    assert_eq!(p.tokens.len(), 3);

    // Jitsu's plain string form (one client secret), and its JSON payload.
    let plain = temp(
        "plain.yaml",
        "api_keys: 193b6281-f211-47a9-b384-102cf4cd2d55 #client secret\n",
    );
    let r = run(&["tokens", "convert", "--from", "jitsu", &plain]);
    let set: serde_json::Value = serde_json::from_str(&r.stdout).unwrap();
    assert_eq!(
        set["tokens"][0]["client_secret_sha256"],
        sha256_hex("193b6281-f211-47a9-b384-102cf4cd2d55")
    );
    let payload = temp(
        "payload.json",
        r#"{"tokens": [{"id": "uniq_id_1", "client_secret": "123dasbc", "server_secret": "abcc22", "origins": ["abc.com", "*.yourdomain.com"]}]}"#,
    );
    let r = run(&["tokens", "convert", "--from", "jitsu", &payload]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    s2s_guard::config::parse_with_set(config, Some(r.stdout.as_bytes())).unwrap();

    let lines = temp("lines.txt", "# tokens\ntok-1\ntok-2\r\n\n");
    let r = run(&[
        "tokens", "convert", "--from", "lines", "--realm", "swaarm", &lines,
    ]);
    let set: serde_json::Value = serde_json::from_str(&r.stdout).unwrap();
    assert_eq!(
        set,
        serde_json::json!({"tokens": [
            {"id": "token-1", "realm": "swaarm", "sha256": sha256_hex("tok-1")},
            {"id": "token-2", "realm": "swaarm", "sha256": sha256_hex("tok-2")}]})
    );
    let bad = temp("bad-jitsu.yaml", "api_keys:\n- id: x\n  clientsecret: y\n");
    let r = run(&["tokens", "convert", "--from", "jitsu", &bad]);
    assert_eq!(r.code, 2);
    assert!(
        r.stderr
            .contains("api_keys[0]: unknown field \"clientsecret\""),
        "{}",
        r.stderr
    );
}

#[test]
fn schema_prints_the_committed_schema() {
    let r = run(&["schema"]);
    assert_eq!(r.code, 0);
    assert_eq!(
        r.stdout,
        std::fs::read_to_string(root().join("schema/s2s-guard.schema.json")).unwrap()
    );
    let r = run(&["schema", "--token-set"]);
    assert_eq!(
        r.stdout,
        std::fs::read_to_string(root().join("schema/s2s-guard-token-set.schema.json")).unwrap()
    );
}
