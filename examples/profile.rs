//! Runs the pure core natively in a loop, for profilers (`perf`, `valgrind
//! --tool=callgrind`): the decision of the first request of a JSONL file, or the
//! load of a configuration. `scripts/profile.sh` counts instructions per
//! decision with callgrind (exact, unlike timings on a shared machine).
//!
//!   cargo run --release --example profile -- decide CONFIG.json REQUESTS.jsonl [N]
//!   cargo run --release --example profile -- load CONFIG.json [N]

use std::process::ExitCode;
use std::time::Instant;

use s2s_guard::{config, decision, request::RequestView};
use serde_json::Value;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match run(&args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("profile: {e}");
            ExitCode::from(2)
        }
    }
}

fn run(args: &[String]) -> Result<(), String> {
    let read = |p: &String| std::fs::read(p).map_err(|e| format!("{p}: {e}"));
    let count = |i: usize, default: usize| {
        args.get(i)
            .map_or(Ok(default), |s| s.parse().map_err(|e| format!("{s}: {e}")))
    };
    match (args.first().map(String::as_str), args.get(1)) {
        (Some("load"), Some(cfg)) => {
            let cfg = read(cfg)?;
            let n = count(2, 10)?;
            let t = Instant::now();
            for _ in 0..n {
                let p = config::parse(&cfg).map_err(|e| e.to_string())?;
                std::hint::black_box(p);
            }
            println!(
                "{:.3} ms per load",
                t.elapsed().as_secs_f64() * 1e3 / n as f64
            );
            Ok(())
        }
        (Some("decide"), Some(cfg)) => {
            let policy = config::parse(&read(cfg)?).map_err(|e| e.to_string())?;
            let lines = String::from_utf8_lossy(&read(args.get(2).ok_or("no requests file")?)?)
                .into_owned();
            // The first request: comment and blank lines are skipped, as the host does.
            let line = (lines.lines())
                .find(|l| !l.trim().is_empty() && !l.trim_start().starts_with('#'))
                .ok_or("no request")?;
            let v: Value = serde_json::from_str(line).map_err(|e| e.to_string())?;
            let text = |v: &Value| v.as_str().unwrap_or_default().as_bytes().to_vec();
            let mut headers = vec![
                (":method".to_string(), text(&v["method"])),
                (":path".to_string(), text(&v["path"])),
            ];
            for (k, val) in v["headers"].as_object().into_iter().flatten() {
                headers.push((k.clone(), text(val)));
            }
            let body = v["body"].as_str().map(|s| s.as_bytes().to_vec());
            let mut view = RequestView::from_headers(headers);
            view.has_body = body.is_some();
            // The freshness window of signed requests follows this clock.
            let now = count(4, 1_767_222_942)? as u64;
            let n = count(3, 100_000)?;
            let d = decision::decide(&policy, &view, body.as_deref(), now);
            if std::env::var_os("PROFILE_SHOW").is_some() {
                println!("{d:#?}");
            } else {
                println!("{:?} {:?}", d.outcome, d.signature);
            }
            let t = Instant::now();
            for _ in 0..n {
                std::hint::black_box(decision::decide(&policy, &view, body.as_deref(), now));
            }
            println!(
                "{:.3} us per decision",
                t.elapsed().as_secs_f64() * 1e6 / n as f64
            );
            Ok(())
        }
        _ => {
            Err("usage: profile decide CONFIG REQUESTS [N [NOW]] | profile load CONFIG [N]".into())
        }
    }
}
