//! `make demo`'s script, as a new user runs it where no Docker engine runs: it must
//! exit 0, answer the example requests as documented, and print the counters before
//! and after under the names Envoy's /stats/prometheus gives them.

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::Command;

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

#[test]
fn the_local_demo_exits_zero_and_shows_what_the_filter_did() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..");
    assert!(
        root.join("dist/s2s-guard.wasm").exists(),
        "dist/s2s-guard.wasm is missing: run `make build` first"
    );
    let out = Command::new("bash")
        .arg("scripts/demo.sh")
        .current_dir(&root)
        .env("S2S_DEMO_NO_DOCKER", "1")
        .env("S2S_HOST_BIN", env!("CARGO_BIN_EXE_s2s-guard-host"))
        .env("S2S_DEMO_PORT", free_port().to_string())
        .env("S2S_DEMO_ADMIN_PORT", free_port().to_string())
        .output()
        .expect("bash runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "demo exited with {:?}\n{stdout}\n{stderr}",
        out.status
    );
    let line = |start: &str| {
        stdout
            .lines()
            .find(|l| l.starts_with(start))
            .unwrap_or_else(|| panic!("no line {start:?} in\n{stdout}"))
            .split_whitespace()
            .collect::<Vec<_>>()
            .join(" ")
    };
    // The example requests, through the filter over HTTP.
    assert!(line("Adjust event, Bearer token").ends_with("200 forwarded token_id=adjust-main"));
    assert!(line("Adjust event, wrong token").contains("202 local Wrong authentication token"));
    assert!(line("Swaarm postback, two tokens").contains("400 local Ambiguous request"));
    assert!(line("Jitsu s2s event, server secret").ends_with("200 forwarded token_id=jitsu-web"));
    assert!(line("Unknown path").ends_with("200 forwarded token_id=-"));
    // The before/after summary, in Prometheus names and labels.
    assert!(stdout.contains("before -> after the requests"), "{stdout}");
    let summary = |series: &str, after: &str| {
        assert!(
            stdout.lines().any(|l| {
                let w: Vec<&str> = l.split_whitespace().collect();
                w.len() == 4 && w[0] == series && w[1] == "0" && w[3] == after
            }),
            "no `{series} 0 -> {after}` in\n{stdout}"
        );
    };
    summary(
        r#"s2s_guard_requests{s2s_guard_outcome="allowed",s2s_guard_scope="events"}"#,
        "1",
    );
    summary(r#"s2s_guard_rejected{s2s_guard_outcome="wrong"}"#, "1");
    summary(r#"s2s_guard_rejected{s2s_guard_outcome="ambiguous"}"#, "1");
    summary("s2s_guard_unmatched{}", "1");
    // Then the reference documents' requests, as a table with counters.
    assert!(stdout.contains("REQUEST"), "{stdout}");
    assert!(
        stdout.contains("wasmcustom.s2s_guard.signature.outcome.verified = 1"),
        "{stdout}"
    );
}
