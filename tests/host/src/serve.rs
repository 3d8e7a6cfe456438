//! `serve`: the test host as a small local proxy. It listens on 127.0.0.1, runs each
//! HTTP/1.1 request through the filter (round robin over the workers), forwards
//! what passes to an upstream (a built-in echo collector, or an address), and
//! answers locally what the filter answers. A built-in token service serves a
//! token file with `Last-Modified` to the filter's token source. The virtual clock
//! follows real time, so ticks and token reloads happen as they would in Envoy.
//!
//! One connection at a time, `Connection: close`, `Content-Length` bodies only: a
//! demo and test front end, not a production proxy.

use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crate::prom::{exposition, TagProducer, TagSpecifier};
use crate::{
    header_value, CallReply, Compiled, Headers, Host, HostOptions, Request, Upstream,
    UpstreamResponse, Verdict,
};

/// How to serve.
#[derive(Debug, Clone)]
pub struct ServeOptions {
    pub listen: SocketAddr,
    pub workers: usize,
    pub config: Vec<u8>,
    /// Forward to this address; `None`: the built-in echo collector.
    pub upstream: Option<SocketAddr>,
    /// The token file the built-in token service serves (cluster `token_cluster`).
    pub tokens_file: Option<PathBuf>,
    pub token_cluster: String,
    /// Stop after this many requests (tests); `None`: until `stop` is set.
    pub max_requests: Option<usize>,
    /// An admin listener like Envoy's: `/stats` and `/stats/prometheus` (with
    /// `stats_tags`), answered outside the filter and not counted in `max_requests`.
    pub admin: Option<SocketAddr>,
    /// The bootstrap's `stats_config.stats_tags` (see `prom`).
    pub stats_tags: Vec<TagSpecifier>,
}

const MAX_HEAD: usize = 64 * 1024;
const MAX_BODY: usize = 16 * 1024 * 1024;

fn now_ns() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64)
}

fn http_date(t: SystemTime) -> String {
    let secs = t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    let days = secs / 86400;
    let (h, m, s) = (secs % 86400 / 3600, secs % 3600 / 60, secs % 60);
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let mo = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(mo <= 2);
    let wd = ["Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"][(days % 7) as usize];
    let mon = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ][(mo - 1) as usize];
    format!("{wd}, {d:02} {mon} {y} {h:02}:{m:02}:{s:02} GMT")
}

/// The built-in echo collector: what reached it, as JSON.
pub fn echo(request: &Request, up: &Upstream) -> UpstreamResponse {
    let headers: serde_json::Map<String, serde_json::Value> = up
        .headers
        .iter()
        .map(|(k, v)| {
            (
                k.clone(),
                serde_json::Value::String(String::from_utf8_lossy(v).into_owned()),
            )
        })
        .collect();
    let path = header_value(&up.headers, ":path").map(|p| String::from_utf8_lossy(p).into_owned());
    let body = serde_json::json!({
        "collector": "echo",
        "method": request.method,
        "path": path,
        "headers": headers,
        "body": String::from_utf8_lossy(&up.body),
    });
    UpstreamResponse {
        status: 200,
        headers: vec![("content-type".into(), b"application/json".to_vec())],
        body: body.to_string().into_bytes(),
    }
}

/// Forwards to a real upstream over HTTP/1.1.
fn forward(addr: SocketAddr, request: &Request, up: &Upstream) -> UpstreamResponse {
    let fail = |why: String| UpstreamResponse {
        status: 503,
        headers: vec![("content-type".into(), b"text/plain".to_vec())],
        body: format!("upstream connect error: {why}").into_bytes(),
    };
    let Ok(mut s) = TcpStream::connect_timeout(&addr, Duration::from_secs(5)) else {
        return fail("connect".into());
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(10)));
    let path = header_value(&up.headers, ":path").unwrap_or(b"/");
    let mut out = format!("{} ", request.method).into_bytes();
    out.extend_from_slice(path);
    out.extend_from_slice(b" HTTP/1.1\r\n");
    let authority = header_value(&up.headers, ":authority").unwrap_or(b"upstream");
    out.extend_from_slice(b"host: ");
    out.extend_from_slice(authority);
    out.extend_from_slice(b"\r\n");
    write_head_and_body(&mut out, &up.headers, &up.body);
    if s.write_all(&out).is_err() {
        return fail("write".into());
    }
    match read_message(&mut BufReader::new(s), true) {
        Ok((line, headers, body)) => {
            let status = line
                .split(' ')
                .nth(1)
                .and_then(|c| c.parse().ok())
                .unwrap_or(502);
            UpstreamResponse {
                status,
                headers,
                body,
            }
        }
        Err(e) => fail(e),
    }
}

/// Appends headers (without pseudo-headers and framing ones), our framing, the body.
fn write_head_and_body(out: &mut Vec<u8>, headers: &Headers, body: &[u8]) {
    for (k, v) in headers {
        if k.starts_with(':')
            || k == "content-length"
            || k == "connection"
            || k == "transfer-encoding"
        {
            continue;
        }
        out.extend_from_slice(k.as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(v);
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(
        format!(
            "content-length: {}\r\nconnection: close\r\n\r\n",
            body.len()
        )
        .as_bytes(),
    );
    out.extend_from_slice(body);
}

/// Reads a request or response: start line, headers (lower-cased), body.
fn read_message(
    r: &mut impl BufRead,
    response: bool,
) -> Result<(String, Headers, Vec<u8>), String> {
    let mut line = String::new();
    r.read_line(&mut line).map_err(|e| e.to_string())?;
    let start = line.trim_end().to_string();
    if start.is_empty() {
        return Err("empty request".into());
    }
    let mut headers: Headers = Vec::new();
    let mut head = start.len();
    loop {
        let mut raw = Vec::new();
        r.read_until(b'\n', &mut raw).map_err(|e| e.to_string())?;
        head += raw.len();
        if head > MAX_HEAD {
            return Err("headers too large".into());
        }
        let raw = raw.strip_suffix(b"\n").unwrap_or(&raw);
        let raw = raw.strip_suffix(b"\r").unwrap_or(raw);
        if raw.is_empty() {
            break;
        }
        let Some(colon) = raw.iter().position(|b| *b == b':') else {
            return Err("malformed header".into());
        };
        let name = String::from_utf8(raw[..colon].to_vec()).map_err(|_| "non-UTF-8 header name")?;
        let value = crate_trim(&raw[colon + 1..]).to_vec();
        headers.push((name.to_ascii_lowercase(), value));
    }
    if header_value(&headers, "transfer-encoding").is_some() {
        return Err("chunked bodies are not supported here; send Content-Length".into());
    }
    let len = match header_value(&headers, "content-length") {
        Some(v) => std::str::from_utf8(v)
            .ok()
            .and_then(|v| v.parse::<usize>().ok())
            .ok_or("bad content-length")?,
        None => 0,
    };
    if len > MAX_BODY {
        return Err("body too large".into());
    }
    let mut body = vec![0; len];
    r.read_exact(&mut body).map_err(|e| e.to_string())?;
    if response && len == 0 {
        let _ = r.read_to_end(&mut body);
    }
    Ok((start, headers, body))
}

fn crate_trim(mut s: &[u8]) -> &[u8] {
    while let [b' ' | b'\t', rest @ ..] = s {
        s = rest;
    }
    while let [rest @ .., b' ' | b'\t'] = s {
        s = rest;
    }
    s
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        202 => "Accepted",
        204 => "No Content",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        413 => "Payload Too Large",
        503 => "Service Unavailable",
        _ => "",
    }
}

fn respond(s: &mut TcpStream, status: u16, headers: &Headers, body: &[u8]) {
    let mut out = format!("HTTP/1.1 {status} {}\r\n", reason(status)).into_bytes();
    write_head_and_body(&mut out, headers, body);
    let _ = s.write_all(&out);
}

/// Binds, then serves until `stop` is set or `max_requests` were answered. The
/// bound address is sent on `bound` once listening.
pub fn serve(
    compiled: &Compiled,
    opts: ServeOptions,
    stop: Arc<AtomicBool>,
    bound: std::sync::mpsc::Sender<SocketAddr>,
) -> Result<usize, String> {
    let listener = TcpListener::bind(opts.listen)
        .map_err(|e| format!("cannot listen on {}: {e}", opts.listen))?;
    listener.set_nonblocking(true).map_err(|e| e.to_string())?;
    let mut host = Host::new(
        compiled,
        HostOptions {
            workers: opts.workers,
            plugin_config: opts.config.clone(),
            start_time_ns: now_ns(),
            clusters: vec![opts.token_cluster.clone()],
            ..HostOptions::default()
        },
    )
    .map_err(|e| e.to_string())?;
    if let Some(file) = opts.tokens_file.clone() {
        host.set_cluster(&opts.token_cluster, move |req| {
            let Ok(meta) = std::fs::metadata(&file) else {
                return CallReply::ok(503, "token file missing");
            };
            let lm = http_date(meta.modified().unwrap_or(UNIX_EPOCH));
            if header_value(&req.headers, "if-modified-since") == Some(lm.as_bytes()) {
                return CallReply::Response {
                    status: 304,
                    headers: vec![],
                    body: vec![],
                    delay_ms: 0,
                };
            }
            match std::fs::read(&file) {
                Ok(body) => CallReply::Response {
                    status: 200,
                    headers: vec![
                        ("content-type".into(), b"application/json".to_vec()),
                        ("last-modified".into(), lm.into_bytes()),
                    ],
                    body,
                    delay_ms: 0,
                },
                Err(_) => CallReply::ok(503, "token file unreadable"),
            }
        });
    }
    match opts.upstream {
        Some(addr) => host.set_upstream(move |req, up| forward(addr, req, up)),
        None => host.set_upstream(echo),
    }
    let producer = TagProducer::new(&opts.stats_tags)?;
    let admin = match opts.admin {
        Some(a) => {
            let l = TcpListener::bind(a).map_err(|e| format!("cannot listen on {a}: {e}"))?;
            l.set_nonblocking(true).map_err(|e| e.to_string())?;
            Some(l)
        }
        None => None,
    };
    let addr = listener.local_addr().map_err(|e| e.to_string())?;
    let _ = bound.send(addr);
    let start = Instant::now();
    let start_ns = host.now_ns();
    let mut served = 0usize;
    let sync_clock = |host: &mut Host| {
        let target = start_ns + start.elapsed().as_nanos() as u64;
        let now = host.now_ns();
        if target > now {
            host.advance((target - now) / 1_000_000);
        }
    };
    while !stop.load(Ordering::Relaxed) && opts.max_requests.is_none_or(|m| served < m) {
        sync_clock(&mut host);
        if let Some(a) = &admin {
            if let Ok((s, _)) = a.accept() {
                answer_admin(s, &host, &producer);
                continue;
            }
        }
        let (mut stream, _) = match listener.accept() {
            Ok(c) => c,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                std::thread::sleep(Duration::from_millis(20));
                continue;
            }
            Err(e) => return Err(e.to_string()),
        };
        let _ = stream.set_nonblocking(false);
        let _ = stream.set_read_timeout(Some(Duration::from_secs(10)));
        let parsed = read_message(&mut BufReader::new(&mut stream), false);
        served += 1;
        let (start_line, headers, body) = match parsed {
            Ok(m) => m,
            Err(e) => {
                respond(
                    &mut stream,
                    400,
                    &vec![("content-type".into(), b"text/plain".to_vec())],
                    e.as_bytes(),
                );
                continue;
            }
        };
        let mut parts = start_line.split(' ');
        let (Some(method), Some(target)) = (parts.next(), parts.next()) else {
            respond(&mut stream, 400, &Vec::new(), b"bad request line");
            continue;
        };
        let mut req = Request::new(method, target);
        req.source_address = stream
            .peer_addr()
            .map_or_else(|_| "127.0.0.1:0".into(), |a| a.to_string());
        for (k, v) in headers {
            if k == "host" {
                req.authority = String::from_utf8_lossy(&v).into_owned();
            } else if k != "connection" && k != "content-length" {
                req = req.header(&k, v);
            }
        }
        req = req.body(body);
        let o = host.send(req);
        let status = if o.verdict == Verdict::Pending {
            504
        } else {
            o.status
        };
        let mut headers = o.response_headers.clone();
        let verdict = match &o.verdict {
            Verdict::Forwarded => "forwarded".to_string(),
            Verdict::Local { details } if details.is_empty() => "local".into(),
            Verdict::Local { details } => format!("local ({details})"),
            Verdict::Pending => "pending".into(),
        };
        headers.push(("x-s2s-guard-demo-verdict".into(), verdict.into_bytes()));
        respond(&mut stream, status, &headers, &o.response_body);
    }
    Ok(served)
}

/// The admin listener: Envoy's `/stats` (text, `wasmcustom.<name>: value`) and
/// `/stats/prometheus` for the metrics the filter defined.
fn answer_admin(mut stream: TcpStream, host: &Host, producer: &TagProducer) {
    let _ = stream.set_nonblocking(false);
    let _ = stream.set_read_timeout(Some(Duration::from_secs(10)));
    let text: Headers = vec![("content-type".into(), b"text/plain; charset=UTF-8".to_vec())];
    let parsed = read_message(&mut BufReader::new(&mut stream), false);
    let Ok((line, _, _)) = parsed else {
        respond(&mut stream, 400, &Vec::new(), b"bad request");
        return;
    };
    let target = line.split(' ').nth(1).unwrap_or("/");
    let path = target.split('?').next().unwrap_or(target);
    match path {
        "/stats/prometheus" => {
            let body = exposition(producer, &host.metric_records());
            respond(&mut stream, 200, &text, body.as_bytes());
        }
        "/stats" => {
            let body: String = host
                .metrics()
                .iter()
                .map(|(k, v)| format!("{k}: {v}\n"))
                .collect();
            respond(&mut stream, 200, &text, body.as_bytes());
        }
        _ => respond(&mut stream, 404, &text, b"not found\n"),
    }
}
