//! `s2s-guard-host`: the command-line front end of the test host.
//!
//! ```text
//! s2s-guard-host run   --wasm F --config C.json --requests R.jsonl [--workers N] [--table]
//!                      [--allow-on-headers-stop-iteration]
//! s2s-guard-host bench --wasm F --noop N.wasm [--noop-body B.wasm] --config C.json
//!                      --requests R.jsonl [--iterations K] [--rounds 7] [--tokens N]
//!                      [--out BENCHMARKS.md --section NAME --title T]
//! s2s-guard-host bench-reload --wasm F --tokens N [--mode copy|shared] [--workers 2]
//!                      [--noop N.wasm]
//! s2s-guard-host soak  --wasm F --config C.json --requests R.jsonl[,R2.jsonl]
//!                      [--count 1000000] [--workers 4] [--samples 20] [--warmup N]
//!                      [--virtual-days 120] [--seed 1] [--out BENCHMARKS.md --section soak]
//! s2s-guard-host serve | check-config | write-section ...
//! ```
//!
//! Request lines are JSON objects (see [`s2s_guard_host::lines`]).

use std::process::ExitCode;

use s2s_guard_host::lines::read_requests;
use s2s_guard_host::{Compiled, Host, HostOptions, Outcome, Request, Verdict};
use serde_json::{json, Map, Value};

mod bench;

fn usage() -> ExitCode {
    eprintln!(
        "usage:\n  s2s-guard-host run --wasm F --config C.json --requests R.jsonl [--workers N] [--table] [--allow-on-headers-stop-iteration]\n  \
         s2s-guard-host bench --wasm F --noop N.wasm [--noop-body B.wasm] --config C.json --requests R.jsonl [--iterations K] [--rounds R] [--out FILE]\n  \
         s2s-guard-host soak --wasm F --config C.json --requests R.jsonl[,R2.jsonl] [--count N] [--workers W] [--out FILE]"
    );
    ExitCode::from(2)
}

/// Parsed `--flag value` arguments.
pub(crate) struct Args {
    pairs: Vec<(String, String)>,
    flags: Vec<String>,
}

impl Args {
    fn parse(args: &[String]) -> Result<Args, String> {
        let mut pairs = Vec::new();
        let mut flags = Vec::new();
        let mut i = 0;
        while i < args.len() {
            let a = &args[i];
            let Some(name) = a.strip_prefix("--") else {
                return Err(format!("unexpected argument {a}"));
            };
            if name == "table" || name == "allow-on-headers-stop-iteration" {
                flags.push(name.to_string());
                i += 1;
                continue;
            }
            let v = args.get(i + 1).ok_or(format!("--{name} needs a value"))?;
            pairs.push((name.to_string(), v.clone()));
            i += 2;
        }
        Ok(Args { pairs, flags })
    }

    pub(crate) fn get(&self, name: &str) -> Option<&str> {
        self.pairs
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    pub(crate) fn need(&self, name: &str) -> Result<&str, String> {
        self.get(name).ok_or(format!("--{name} is required"))
    }

    fn flag(&self, name: &str) -> bool {
        self.flags.iter().any(|f| f == name)
    }
}

fn main() -> ExitCode {
    let argv: Vec<String> = std::env::args().skip(1).collect();
    let Some(cmd) = argv.first() else {
        return usage();
    };
    let args = match Args::parse(&argv[1..]) {
        Ok(a) => a,
        Err(e) => {
            eprintln!("s2s-guard-host: {e}");
            return usage();
        }
    };
    let result = match cmd.as_str() {
        "run" => run(&args),
        "bench" => bench::run(&args),
        "bench-reload" => bench::run_reload(&args),
        "write-section" => bench::write_section_cmd(&args),
        "soak" => soak(&args),
        "check-config" => check_config(&args),
        "serve" => serve(&args),
        _ => return usage(),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("s2s-guard-host: {e}");
            ExitCode::from(1)
        }
    }
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn headers_json(h: &[(String, Vec<u8>)]) -> Value {
    Value::Array(h.iter().map(|(k, v)| json!([k, text(v)])).collect())
}

pub(crate) fn outcome_json(name: &str, req: &Request, o: &Outcome) -> Value {
    let (verdict, details) = match &o.verdict {
        Verdict::Forwarded => ("forwarded", String::new()),
        Verdict::Local { details } => ("local", details.clone()),
        Verdict::Pending => ("pending", String::new()),
    };
    let mut m = Map::new();
    m.insert("name".into(), json!(name));
    m.insert("method".into(), json!(req.method));
    m.insert("path".into(), json!(req.path));
    m.insert("verdict".into(), json!(verdict));
    if !details.is_empty() {
        m.insert("details".into(), json!(details));
    }
    m.insert("status".into(), json!(o.status));
    m.insert("response_headers".into(), headers_json(&o.response_headers));
    m.insert("body".into(), json!(text(&o.response_body)));
    if let Some(u) = &o.upstream {
        m.insert("upstream_headers".into(), headers_json(&u.headers));
        if !u.body.is_empty() {
            m.insert("upstream_body".into(), json!(text(&u.body)));
        }
        if !u.trailers.is_empty() {
            m.insert("upstream_trailers".into(), headers_json(&u.trailers));
        }
    }
    if let Some(h) = &o.early_upstream {
        // Headers the upstream got before the request was refused (and reset).
        m.insert("early_upstream_headers".into(), headers_json(h));
    }
    Value::Object(m)
}

/// `serve --wasm F --config C.json [--listen 127.0.0.1:10000] [--workers N]
/// [--upstream ADDR] [--tokens-file F] [--token-cluster NAME] [--max-requests N]
/// [--admin 127.0.0.1:19901] [--stats-tags envoy/envoy.yaml]`
fn serve(args: &Args) -> Result<ExitCode, String> {
    use s2s_guard_host::serve::{serve, ServeOptions};
    let compiled =
        Compiled::from_file(std::path::Path::new(args.need("wasm")?)).map_err(|e| e.to_string())?;
    let config = std::fs::read(args.need("config")?).map_err(|e| format!("config: {e}"))?;
    let listen = args.get("listen").unwrap_or("127.0.0.1:10000");
    let listen: std::net::SocketAddr = listen
        .parse()
        .map_err(|_| format!("bad --listen {listen}"))?;
    if !listen.ip().is_loopback() {
        return Err("serve listens on loopback addresses only".into());
    }
    let upstream = match args.get("upstream") {
        None | Some("builtin") => None,
        Some(a) => Some(a.parse().map_err(|_| format!("bad --upstream {a}"))?),
    };
    let admin: Option<std::net::SocketAddr> = match args.get("admin") {
        None => None,
        Some(a) => Some(a.parse().map_err(|_| format!("bad --admin {a}"))?),
    };
    if admin.is_some_and(|a| !a.ip().is_loopback()) {
        return Err("serve listens on loopback addresses only".into());
    }
    // Envoy makes Prometheus labels from the bootstrap's stats_tags: read them from
    // the Envoy file the deployment uses.
    let stats_tags = match args.get("stats-tags") {
        None => Vec::new(),
        Some(f) => {
            let y = std::fs::read_to_string(f).map_err(|e| format!("stats-tags {f}: {e}"))?;
            s2s_guard_host::prom::parse_stats_tags(&y).map_err(|e| format!("{f}: {e}"))?
        }
    };
    let opts = ServeOptions {
        listen,
        workers: args
            .get("workers")
            .unwrap_or("2")
            .parse()
            .map_err(|_| "bad --workers")?,
        config,
        upstream,
        tokens_file: args.get("tokens-file").map(Into::into),
        token_cluster: args
            .get("token-cluster")
            .unwrap_or("token_service")
            .to_string(),
        max_requests: args
            .get("max-requests")
            .map(|m| m.parse())
            .transpose()
            .map_err(|_| "bad --max-requests")?,
        admin,
        stats_tags,
    };
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let (tx2, rx) = std::sync::mpsc::channel();
    let admin_note = opts
        .admin
        .map(|a| format!("; admin http://{a}/stats/prometheus"));
    std::thread::spawn(move || {
        if let Ok(addr) = rx.recv() {
            eprintln!(
                "s2s-guard-host: serving on http://{addr} (echo collector built in){}",
                admin_note.unwrap_or_default()
            );
        }
    });
    let served = serve(&compiled, opts, stop, tx2)?;
    eprintln!("s2s-guard-host: served {served} requests");
    Ok(ExitCode::SUCCESS)
}

/// `soak`: a long run of mixed requests (the request files' lines in cycles, signed
/// requests signed afresh and replayed) with several workers, sampling guest memory
/// and shared data; fails when memory grows after warm-up, shared data leaves the
/// replay memory's bound, or a request kind changes outcome (s2s_guard_host::soak).
fn soak(args: &Args) -> Result<ExitCode, String> {
    use s2s_guard_host::soak::{run, SoakOptions};
    let num = |name: &str, default: &str| -> Result<f64, String> {
        args.get(name)
            .unwrap_or(default)
            .replace('_', "")
            .parse::<f64>()
            .ok()
            .filter(|n| *n >= 0.0)
            .ok_or(format!("bad --{name}"))
    };
    let opts = SoakOptions {
        count: num("count", "1000000")? as usize,
        workers: num("workers", "4")? as usize,
        samples: num("samples", "20")? as usize,
        warmup: num("warmup", "0")? as usize,
        virtual_days: num("virtual-days", "120")?,
        seed: num("seed", "1")? as u64,
    };
    let wasm = args.need("wasm")?;
    let config_path = args.need("config")?;
    let config =
        std::fs::read(config_path).map_err(|e| format!("cannot read {config_path}: {e}"))?;
    let requests = args.need("requests")?;
    let mut lines = Vec::new();
    for path in requests.split(',') {
        lines.extend(read_requests(path)?);
    }
    let compiled = Compiled::from_file(std::path::Path::new(wasm)).map_err(|e| e.to_string())?;
    let report = run(&compiled, &config, &lines, opts)?;
    let inputs = format!(
        "configuration `{config_path}`, requests `{}`",
        requests.replace(',', "` and `")
    );
    let title = args
        .get("title")
        .unwrap_or("Soak: mixed requests, guest memory and shared data over time");
    let md = report.markdown(title, &inputs);
    print!("{md}");
    if let Some(out) = args.get("out") {
        bench::write_section(out, args.get("section").unwrap_or("soak"), &md)?;
    }
    if report.ok() {
        Ok(ExitCode::SUCCESS)
    } else {
        eprintln!("s2s-guard-host: soak failed (see the report)");
        Ok(ExitCode::from(1))
    }
}

/// `check-config --wasm F --config C.json`: loads a configuration into the filter,
/// as Envoy's `on_configure` would, and reports whether it was accepted.
fn check_config(args: &Args) -> Result<ExitCode, String> {
    let wasm = args.need("wasm")?;
    let path = args.need("config")?;
    let config = std::fs::read(path).map_err(|e| format!("cannot read {path}: {e}"))?;
    let compiled = Compiled::from_file(std::path::Path::new(wasm)).map_err(|e| e.to_string())?;
    match Host::new(
        &compiled,
        HostOptions {
            plugin_config: config,
            ..HostOptions::default()
        },
    ) {
        Ok(_) => {
            println!("ok  {path}: accepted by s2s-guard");
            Ok(ExitCode::SUCCESS)
        }
        Err(e) => {
            eprintln!("FAIL {path}: {e}");
            Ok(ExitCode::from(1))
        }
    }
}

fn run(args: &Args) -> Result<ExitCode, String> {
    let wasm = args.need("wasm")?;
    let config = std::fs::read(args.need("config")?)
        .map_err(|e| format!("cannot read {}: {e}", args.need("config").unwrap_or("")))?;
    let lines = read_requests(args.need("requests")?)?;
    let workers: usize = args
        .get("workers")
        .map(|w| {
            w.parse()
                .map_err(|_| "--workers must be a number".to_string())
        })
        .transpose()?
        .unwrap_or(2);
    let compiled = Compiled::from_file(std::path::Path::new(wasm)).map_err(|e| e.to_string())?;
    let mut host = Host::new(
        &compiled,
        HostOptions {
            workers,
            plugin_config: config,
            // Envoy's PluginConfig option (`hold_headers_for_body: true` needs it).
            allow_on_headers_stop_iteration: args.flag("allow-on-headers-stop-iteration"),
            ..HostOptions::default()
        },
    )
    .map_err(|e| e.to_string())?;
    let table = args.flag("table");
    if table {
        println!(
            "{:<52} {:<10} {:>6}  ANSWER / UPSTREAM",
            "REQUEST", "VERDICT", "STATUS"
        );
        println!("{}", "-".repeat(110));
    }
    for line in lines {
        if line.advance_ms > 0 {
            host.advance(line.advance_ms);
        }
        let o = match line.worker {
            Some(w) if w < host.workers() => host.send_on(w, line.request.clone()),
            _ => host.send(line.request.clone()),
        };
        if table {
            let verdict = match &o.verdict {
                Verdict::Forwarded => "forwarded",
                Verdict::Local { .. } => "local",
                Verdict::Pending => "pending",
            };
            let answer = match &o.upstream {
                Some(u) => {
                    let ids: Vec<String> = u
                        .headers
                        .iter()
                        .filter(|(k, _)| k.starts_with("x-s2s-guard"))
                        .map(|(k, v)| format!("{k}: {}", text(v)))
                        .collect();
                    let path = u.header(":path").map(text).unwrap_or_default();
                    format!("upstream {path} {}", ids.join(", "))
                }
                None => format!("\"{}\"", text(&o.response_body)),
            };
            let name: String = line.name.chars().take(52).collect();
            println!("{name:<52} {verdict:<10} {:>6}  {answer}", o.status);
        } else {
            println!("{}", outcome_json(&line.name, &line.request, &o));
        }
    }
    let counters: Map<String, Value> = host
        .metrics()
        .into_iter()
        .filter(|(_, v)| *v != 0)
        .map(|(k, v)| (k, json!(v)))
        .collect();
    if table {
        println!("{}", "-".repeat(110));
        println!("counters (non-zero):");
        for (k, v) in &counters {
            println!("  {k} = {v}");
        }
    } else {
        println!("{}", json!({ "counters": counters }));
    }
    for w in 0..host.workers() {
        if let Some(f) = host.worker_failure(w) {
            return Err(format!("worker {w} trapped: {f}"));
        }
    }
    Ok(ExitCode::SUCCESS)
}
