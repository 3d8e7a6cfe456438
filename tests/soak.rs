//! The soak's short version (issue 11, item 6): 20,000 mixed requests of the demo
//! (every outcome of demo/requests.jsonl, the 642-byte signed SDK POST, signatures
//! made afresh each cycle, immediate and late replays) through dist/s2s-guard.wasm
//! with 4 workers over 120 virtual days (four freshness windows). Deterministic: a
//! seeded generator and the host's virtual clock, no timing. `make soak` runs the
//! million-request version and writes it to BENCHMARKS.md.

use s2s_guard_host::lines::read_requests;
use s2s_guard_host::load_dist;
use s2s_guard_host::soak::{run, SoakOptions};

fn path(p: &str) -> String {
    format!("{}/{p}", env!("CARGO_MANIFEST_DIR"))
}

#[test]
fn twenty_thousand_mixed_requests_keep_memory_flat_and_shared_data_bounded() {
    let config = std::fs::read(path("demo/config.json")).unwrap();
    let mut lines = read_requests(&path("demo/requests.jsonl")).unwrap();
    lines.extend(read_requests(&path("bench/signature-requests.jsonl")).unwrap());
    let opts = SoakOptions {
        count: 20_000,
        workers: 4,
        samples: 10,
        warmup: 2_000,
        virtual_days: 120.0,
        seed: 7,
    };
    let r = run(&load_dist("s2s-guard.wasm"), &config, &lines, opts).unwrap();
    let report = r.markdown("soak", "test");
    assert!(r.failures.is_empty(), "{report}");
    assert_eq!(r.requests, 20_000);

    // Guest memory does not grow after warm-up, on any worker.
    assert!(r.memory_flat(), "{report}");
    // The replay memory stays within its configured bound, and nothing else
    // accumulates in shared data.
    assert!(r.shared_within_bound(), "{report}");
    let end = r.end();
    assert!(end.replay_keys <= r.bound.keys && end.replay_bytes <= r.bound.bytes);
    assert_eq!(end.other_keys, r.warmup().other_keys, "{report}");

    // Every kind was sent, with one outcome each (checked by failures above), and
    // the replay memory was exercised: entries written, replays refused inside the
    // window, stale beyond it, entries expired.
    for (kind, outs) in &r.outcomes {
        assert!(outs.values().sum::<usize>() > 0, "{kind} never sent");
    }
    let c = |name: &str| {
        r.counters
            .get(&format!("wasmcustom.s2s_guard.signature.outcome.{name}"))
            .copied()
            .unwrap_or(0)
    };
    assert_eq!(c("verified") as usize, r.accepted_signed);
    assert!(r.accepted_signed >= 1_500, "{report}");
    assert!(c("replayed") > 0 && c("stale") > 0, "{report}");
    assert_eq!(c("replay_full_accepted") + c("replay_memory_full"), 0);
    assert!(end.replay_entries > 0, "{report}");
    assert!(
        end.replay_live < end.replay_entries && end.replay_entries < r.accepted_signed,
        "entries expire and are dropped: {report}"
    );
}
