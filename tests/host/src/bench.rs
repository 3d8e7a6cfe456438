//! `s2s-guard-host bench`: host-side cost per request of s2s-guard against a no-op
//! proxy-wasm filter, measured in the same run, plus configuration load time and
//! guest memory. Writes a section of BENCHMARKS.md.
//!
//! Timing is wall-clock on whatever machine runs it; the no-op filter in the same
//! run is the yardstick, so the difference is what s2s-guard itself costs.

use std::process::ExitCode;
use std::time::{Duration, Instant};

use s2s_guard_host::{Compiled, Host, HostOptions, Request};
use serde_json::Value;

use crate::Args;
use s2s_guard_host::lines::read_requests;

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    if v.is_empty() {
        0.0
    } else {
        v[v.len() / 2]
    }
}

/// Adds `n` generated tokens (SHA-256 digests of `bench-token-<i>`) to the config.
fn with_tokens(config: &[u8], n: usize) -> Result<Vec<u8>, String> {
    if n == 0 {
        return Ok(config.to_vec());
    }
    let mut v: Value = serde_json::from_slice(config).map_err(|e| format!("config: {e}"))?;
    let tokens = v
        .as_object_mut()
        .ok_or("config: not an object")?
        .entry("tokens")
        .or_insert(Value::Array(Vec::new()))
        .as_array_mut()
        .ok_or("config: tokens is not an array")?;
    let have = tokens.len();
    for i in have..n {
        let secret = format!("bench-token-{i}");
        tokens.push(serde_json::json!({
            "id": format!("bench-{i}"),
            "sha256": sha256_hex(secret.as_bytes()),
            "scopes": ["events"],
        }));
    }
    serde_json::to_vec(&v).map_err(|e| e.to_string())
}

/// SHA-256 of a secret, hex: how tokens are written in a configuration.
pub fn sha256_hex(data: &[u8]) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(data))
}

/// One filter under measurement: its host, and what the rounds measured.
struct Variant {
    label: &'static str,
    host: Host,
    load: Duration,
    /// ns per request, one value per round.
    rounds: Vec<f64>,
    /// Passes over the requests per round.
    iterations: usize,
}

impl Variant {
    fn start(
        label: &'static str,
        compiled: &Compiled,
        config: &[u8],
        lines: &[s2s_guard_host::lines::Line],
    ) -> Result<Variant, String> {
        let start = Instant::now();
        let mut host = Host::new(
            compiled,
            HostOptions {
                workers: 1,
                plugin_config: config.to_vec(),
                ..HostOptions::default()
            },
        )
        .map_err(|e| format!("{label}: {e}"))?;
        let load = start.elapsed();
        // Warm up: every request once.
        for l in lines {
            host.send(l.request.clone());
        }
        Ok(Variant {
            label,
            host,
            load,
            rounds: Vec::new(),
            iterations: 0,
        })
    }

    /// Sets the passes per round: at least `iterations`, and enough for a round to
    /// last `min_round` (measured once), so that a fast filter's round is not a
    /// millisecond that one preemption of a shared machine decides.
    fn calibrate(
        &mut self,
        lines: &[s2s_guard_host::lines::Line],
        iterations: usize,
        min_round: Duration,
    ) {
        let t = Instant::now();
        for _ in 0..iterations {
            for l in lines {
                self.host.send(l.request.clone());
            }
        }
        let per_pass = t.elapsed().as_secs_f64() / iterations as f64;
        let needed = (min_round.as_secs_f64() / per_pass.max(1e-9)).ceil() as usize;
        self.iterations = iterations.max(needed);
    }

    fn round(&mut self, lines: &[s2s_guard_host::lines::Line]) {
        let t = Instant::now();
        for _ in 0..self.iterations {
            for l in lines {
                self.host.send(l.request.clone());
            }
        }
        self.rounds
            .push(t.elapsed().as_nanos() as f64 / (self.iterations * lines.len()) as f64);
    }

    fn median_ns(&self) -> f64 {
        median(self.rounds.clone())
    }
}

/// s2s-guard's throughput relative to a baseline, per round: baseline time ÷
/// s2s-guard time (1.0: as fast; 0.5: half the requests per second). Median and
/// the range over the rounds.
pub(crate) struct Ratio {
    pub median: f64,
    pub min: f64,
    pub max: f64,
}

pub(crate) fn ratio(baseline_ns: &[f64], guard_ns: &[f64]) -> Ratio {
    let per_round: Vec<f64> = baseline_ns
        .iter()
        .zip(guard_ns)
        .map(|(b, g)| b / g)
        .collect();
    Ratio {
        median: median(per_round.clone()),
        min: per_round.iter().copied().fold(f64::INFINITY, f64::min),
        max: per_round.iter().copied().fold(f64::NEG_INFINITY, f64::max),
    }
}

/// `bench`: s2s-guard against the no-op filter (and, with `--noop-body`, against a
/// no-op filter that buffers the request body) over the same requests, in
/// interleaved rounds (each round runs every filter once, in an order that rotates),
/// so that a slow patch of a shared machine hits all of them alike.
pub fn run(args: &Args) -> Result<ExitCode, String> {
    let wasm = args.need("wasm")?;
    let noop = args.need("noop")?;
    let noop_body = args.get("noop-body");
    let config = std::fs::read(args.need("config")?).map_err(|e| format!("config: {e}"))?;
    let lines = read_requests(args.need("requests")?)?;
    if lines.is_empty() {
        return Err("no requests to measure".into());
    }
    let iterations: usize = args
        .get("iterations")
        .unwrap_or("200")
        .parse()
        .map_err(|_| "bad --iterations")?;
    let rounds: usize = args
        .get("rounds")
        .unwrap_or("7")
        .parse()
        .ok()
        .filter(|r| *r > 0)
        .ok_or("bad --rounds")?;
    let tokens: usize = args
        .get("tokens")
        .unwrap_or("0")
        .parse()
        .map_err(|_| "bad --tokens")?;
    let section = args.get("section").unwrap_or("requests").to_string();
    let title = args.get("title").unwrap_or("Per-request cost").to_string();
    let config = with_tokens(&config, tokens)?;

    let load = |p: &str| Compiled::from_file(std::path::Path::new(p)).map_err(|e| e.to_string());
    let mut variants = vec![Variant::start(
        "no-op proxy-wasm filter",
        &load(noop)?,
        b"",
        &lines,
    )?];
    if let Some(nb) = noop_body {
        variants.push(Variant::start(
            "no-op filter that buffers the body",
            &load(nb)?,
            b"",
            &lines,
        )?);
    }
    variants.push(Variant::start("s2s-guard", &load(wasm)?, &config, &lines)?);
    let min_round_ms: u64 = args
        .get("min-round-ms")
        .unwrap_or("100")
        .parse()
        .map_err(|_| "bad --min-round-ms")?;
    for v in variants.iter_mut() {
        v.calibrate(&lines, iterations, Duration::from_millis(min_round_ms));
    }
    let n = variants.len();
    for r in 0..rounds {
        for i in 0..n {
            variants[(r + i) % n].round(&lines);
        }
    }
    let guard = variants.last().expect("s2s-guard is measured");
    for w in 0..guard.host.workers() {
        if let Some(f) = guard.host.worker_failure(w) {
            return Err(format!("s2s-guard trapped during the benchmark: {f}"));
        }
    }

    let mut md = String::new();
    md.push_str(&format!("### {title}\n\n"));
    md.push_str(&format!(
        "{} request kinds × {rounds} interleaved rounds (median) of at least {iterations} passes \
         and {min_round_ms} ms per filter ({}), 1 worker, tokens configured: {}. Ratio: s2s-guard's throughput ÷ the baseline's \
         (baseline µs ÷ s2s-guard µs, median of the per-round ratios, min–max over the rounds).\n\n",
        lines.len(),
        variants
            .iter()
            .map(|v| format!("{}: {} passes", v.label, v.iterations))
            .collect::<Vec<_>>()
            .join(", "),
        host_token_count(&config)
    ));
    md.push_str(
        "| filter | µs per request (host side) | s2s-guard ÷ this (throughput) | config load | guest memory |\n\
         |---|---:|---:|---:|---:|\n",
    );
    let guard_rounds = guard.rounds.clone();
    let guard_ns = guard.median_ns();
    let mut summary = Vec::new();
    for v in &variants {
        let cell = if v.label == "s2s-guard" {
            "1".to_string()
        } else {
            let r = ratio(&v.rounds, &guard_rounds);
            summary.push(format!("{:.2} vs {}", r.median, v.label));
            format!("**{:.2}** ({:.2}–{:.2})", r.median, r.min, r.max)
        };
        md.push_str(&format!(
            "| {} | {:.2} | {cell} | {:.1} ms | {} KiB |\n",
            v.label,
            v.median_ns() / 1000.0,
            v.load.as_secs_f64() * 1000.0,
            v.host.memory_bytes(0) / 1024
        ));
    }
    for v in &variants[..n - 1] {
        md.push_str(&format!(
            "| **s2s-guard − {}** | **{:.2}** | | | |\n",
            v.label,
            (guard_ns - v.median_ns()) / 1000.0
        ));
    }
    md.push_str("\nRequests measured:\n\n");
    for l in &lines {
        md.push_str(&format!(
            "- {} (`{} {}`)\n",
            l.name, l.request.method, l.request.path
        ));
    }
    print!("{md}");
    eprintln!(
        "bench {section}: s2s-guard {:.2} µs, throughput ratio {}",
        guard_ns / 1000.0,
        summary.join(", ")
    );
    if let Some(out) = args.get("out") {
        write_section(out, &section, &md)?;
    }
    Ok(ExitCode::SUCCESS)
}

/// `bench-reload`: a token source serving N tokens to a proxy of `workers` VMs,
/// in `copy` or `shared` lookup mode: time until every worker has loaded it,
/// guest memory per worker, and the per-request cost with a valid token.
pub fn run_reload(args: &Args) -> Result<ExitCode, String> {
    let wasm = args.need("wasm")?;
    let n: usize = args.need("tokens")?.parse().map_err(|_| "bad --tokens")?;
    let mode = args.get("mode").unwrap_or("copy").to_string();
    let workers: usize = args
        .get("workers")
        .unwrap_or("2")
        .parse()
        .map_err(|_| "bad --workers")?;
    let mut set = String::with_capacity(n * 110 + 16);
    set.push_str("{\"version\": 1, \"tokens\": [");
    for i in 0..n {
        if i > 0 {
            set.push(',');
        }
        set.push_str(&format!(
            "{{\"id\":\"t{i}\",\"sha256\":\"{}\",\"scopes\":[\"events\"],\"all_apps\":true}}",
            sha256_hex(format!("bench-token-{i}").as_bytes())
        ));
    }
    set.push_str("]}");
    let config = format!(
        r#"{{"presets": ["adjust"], "app_authentication_default": true,
            "token_source": {{"cluster": "tokens", "path": "/t", "period": "60s", "timeout": "60s",
                             "max_bytes": 2147483648, "lookup": "{mode}"}}}}"#
    );
    let compiled = Compiled::from_file(std::path::Path::new(wasm)).map_err(|e| e.to_string())?;
    let mut host = Host::new(
        &compiled,
        HostOptions {
            workers,
            plugin_config: config.into_bytes(),
            clusters: vec!["tokens".into()],
            ..HostOptions::default()
        },
    )
    .map_err(|e| e.to_string())?;
    let body = set.into_bytes();
    let size = body.len();
    host.set_cluster("tokens", move |_| s2s_guard_host::CallReply::ok(200, &body));
    let t = Instant::now();
    // The fetch went out at configuration: deliver it, then one tick for the readers.
    host.advance(15_000);
    let reload = t.elapsed();
    let req = Request::post("/event?s2s=1&app_token=a&event_token=e")
        .header("authorization", format!("Bearer bench-token-{}", n / 2));
    let o = host.send(req.clone());
    if o.status != 200 {
        return Err(format!(
            "token not accepted after the reload: {} {}",
            o.status,
            o.body_text()
        ));
    }
    // The per-request cost, against the no-op filter (same workers, same request)
    // in interleaved blocks when `--noop` is given.
    let mut noop_host = match args.get("noop") {
        Some(p) => Some(
            Host::new(
                &Compiled::from_file(std::path::Path::new(p)).map_err(|e| e.to_string())?,
                HostOptions {
                    workers,
                    ..HostOptions::default()
                },
            )
            .map_err(|e| e.to_string())?,
        ),
        None => None,
    };
    let (blocks, per_block) = (7, 2000);
    let mut guard_ns = Vec::new();
    let mut noop_ns = Vec::new();
    let block = |h: &mut Host| {
        let t = Instant::now();
        for w in 0..per_block {
            h.send_on(w % workers, req.clone());
        }
        t.elapsed().as_nanos() as f64 / per_block as f64
    };
    for _ in 0..blocks {
        guard_ns.push(block(&mut host));
        if let Some(h) = noop_host.as_mut() {
            noop_ns.push(block(h));
        }
    }
    let per_request = median(guard_ns.clone()) / 1000.0;
    let vs_noop = if noop_ns.is_empty() {
        "— | —".to_string()
    } else {
        let r = ratio(&noop_ns, &guard_ns);
        format!(
            "{:.2} | **{:.2}** ({:.2}–{:.2})",
            median(noop_ns.clone()) / 1000.0,
            r.median,
            r.min,
            r.max
        )
    };
    let memory: Vec<String> = (0..workers)
        .map(|w| format!("{} MiB", host.memory_bytes(w) / (1 << 20)))
        .collect();
    let md = format!(
        "| {mode} | {n} | {:.1} MB | {:.2} s | {} | {:.2} | {vs_noop} |\n",
        size as f64 / 1e6,
        reload.as_secs_f64(),
        memory.join(" / "),
        per_request
    );
    print!("{md}");
    if let Some(out) = args.get("out") {
        let section = format!("reload-{mode}-{n}");
        write_section(out, &section, &md)?;
    }
    Ok(ExitCode::SUCCESS)
}

fn host_token_count(config: &[u8]) -> usize {
    serde_json::from_slice::<Value>(config)
        .ok()
        .and_then(|v| v.get("tokens").and_then(Value::as_array).map(Vec::len))
        .unwrap_or(0)
}

/// `write-section --out F --section NAME --file BODY`: puts a file into a section.
pub fn write_section_cmd(args: &Args) -> Result<ExitCode, String> {
    let body = std::fs::read_to_string(args.need("file")?).map_err(|e| e.to_string())?;
    write_section(args.need("out")?, args.need("section")?, &body)?;
    Ok(ExitCode::SUCCESS)
}

/// Replaces (or appends) `<!-- bench:NAME -->...<!-- /bench:NAME -->` in `path`.
pub(crate) fn write_section(path: &str, name: &str, body: &str) -> Result<(), String> {
    let old = std::fs::read_to_string(path).unwrap_or_else(|_| "# Benchmarks\n\n".into());
    let (open, close) = (
        format!("<!-- bench:{name} -->"),
        format!("<!-- /bench:{name} -->"),
    );
    let block = format!("{open}\n{body}{close}");
    let new = match (old.find(&open), old.find(&close)) {
        (Some(a), Some(b)) if b > a => format!("{}{}{}", &old[..a], block, &old[b + close.len()..]),
        _ => format!("{}\n{}\n", old.trim_end(), block),
    };
    std::fs::write(path, new).map_err(|e| format!("cannot write {path}: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sha256_known_answers() {
        assert_eq!(
            sha256_hex(b""),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
        assert_eq!(
            sha256_hex(b"abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }
}
