//! Soak: a long run of mixed requests through the `.wasm` with several workers,
//! sampling every worker's guest memory and the shared data (issue 11, item 6).
//!
//! The requests are the lines of request files, sent over and over in cycles.
//! Lines that carry an Adjust SDK signature (`Authorization: Signature …`) or a
//! `Client-SDK` header and a `created_at` parameter are generated afresh for every
//! cycle: `created_at` becomes the virtual clock's now (a minute back, strictly
//! increasing, so each signature is new) and the signature is recomputed with the
//! App Secret the configuration gives for the line's `secret_id` and app. So the
//! line signed with an active secret is accepted and remembered, the one signed
//! with a deactivated secret is still refused as invalid, the injected parameter is
//! still refused, and so on: every outcome of the demo requests, in every cycle. A
//! line identical to the line before it repeats the request just generated (a
//! replay). Each cycle also replays one earlier accepted signed request drawn at
//! random from the whole run so far (reservoir sampling): refused as replayed
//! while it is inside its freshness window, as stale beyond it. The virtual clock
//! advances every cycle so that the run spans several freshness windows and the
//! replay memory's entries expire. Workers are drawn at random per request.
//!
//! Everything is deterministic (a seeded generator, the virtual clock): a run's
//! outcomes, memory and shared data do not depend on timing.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::lines::Line;
use crate::{Compiled, Host, HostOptions, Request, Verdict};

/// The replay memory's layout (src/replay.rs): keys per App Secret, bytes per
/// entry (8-byte expiry + 16-byte hash), key prefix, and the entries one key may
/// hold for a capacity (the mean plus 5·√mean + 8).
pub const REPLAY_SHARDS: usize = 1024;
pub const REPLAY_RECORD: usize = 24;
pub const REPLAY_PREFIX: &str = "s2s-guard/replay/";
const DEFAULT_CAPACITY: usize = 100_000;
const DEFAULT_MAX_AGE: u64 = 30 * 86_400;
const DEFAULT_MAX_FUTURE: u64 = 300;

pub fn replay_per_key(capacity: usize) -> usize {
    let mean = capacity.div_ceil(REPLAY_SHARDS).max(1);
    mean + 5 * (mean as f64).sqrt().ceil() as usize + 8
}

/// How a soak runs.
#[derive(Debug, Clone)]
pub struct SoakOptions {
    /// Requests in all.
    pub count: usize,
    pub workers: usize,
    /// Samples of memory and shared data over the run (besides the start).
    pub samples: usize,
    /// Requests after which memory must no longer grow (0: a tenth of `count`).
    pub warmup: usize,
    /// Virtual time the run spans.
    pub virtual_days: f64,
    pub seed: u64,
}

impl Default for SoakOptions {
    fn default() -> Self {
        SoakOptions {
            count: 1_000_000,
            workers: 4,
            samples: 20,
            warmup: 0,
            virtual_days: 120.0,
            seed: 1,
        }
    }
}

/// One sample of the state.
#[derive(Debug, Clone)]
pub struct Sample {
    pub requests: usize,
    /// Virtual seconds since the start.
    pub virtual_secs: u64,
    /// Guest linear memory per worker, bytes.
    pub memory: Vec<usize>,
    pub replay_keys: usize,
    /// Bytes of the replay memory's values.
    pub replay_bytes: usize,
    /// Bytes of the replay memory's key names.
    pub replay_key_bytes: usize,
    /// Entries stored, and how many of them have not expired.
    pub replay_entries: usize,
    pub replay_live: usize,
    pub other_keys: usize,
    /// Keys and values of everything else in shared data.
    pub other_bytes: usize,
}

/// The configured bound of the replay memory: per App Secret (active, replay
/// enabled), 1024 keys of at most `per_key` entries.
#[derive(Debug, Clone)]
pub struct ReplayBound {
    pub secrets: usize,
    pub capacity: usize,
    pub per_key: usize,
    pub keys: usize,
    /// Value bytes.
    pub bytes: usize,
    /// The longest freshness window (max_age + max_future), seconds.
    pub window_secs: u64,
}

/// What a soak found.
#[derive(Debug, Clone)]
pub struct SoakReport {
    pub options: SoakOptions,
    pub requests: usize,
    pub cycles: usize,
    pub kinds_per_cycle: usize,
    pub step_ms: u64,
    pub elapsed: Duration,
    pub samples: Vec<Sample>,
    /// Index in `samples` of the first sample at or after the warm-up.
    pub warmup_sample: usize,
    /// Per request kind, in order: outcome → count.
    pub outcomes: Vec<(String, BTreeMap<String, usize>)>,
    pub counters: BTreeMap<String, i64>,
    pub bound: ReplayBound,
    /// Signed requests accepted (each one a replay-memory entry).
    pub accepted_signed: usize,
    /// What went wrong: kinds with more than one outcome, replays forwarded,
    /// streams left pending, traps.
    pub failures: Vec<String>,
}

impl SoakReport {
    pub fn warmup(&self) -> &Sample {
        &self.samples[self.warmup_sample]
    }

    pub fn end(&self) -> &Sample {
        self.samples.last().expect("at least one sample")
    }

    /// Guest memory of every worker at the end equals what it was after warm-up.
    pub fn memory_flat(&self) -> bool {
        self.warmup().memory == self.end().memory
    }

    /// Shared data within the replay memory's bound at every sample, and nothing
    /// else in shared data growing after warm-up.
    pub fn shared_within_bound(&self) -> bool {
        let w = self.warmup();
        self.samples
            .iter()
            .all(|s| s.replay_keys <= self.bound.keys && s.replay_bytes <= self.bound.bytes)
            && self.samples[self.warmup_sample..]
                .iter()
                .all(|s| s.other_keys <= w.other_keys && s.other_bytes <= w.other_bytes)
    }

    pub fn ok(&self) -> bool {
        self.failures.is_empty() && self.memory_flat() && self.shared_within_bound()
    }

    /// The BENCHMARKS.md section.
    pub fn markdown(&self, title: &str, inputs: &str) -> String {
        let o = &self.options;
        let kib = |m: &[usize]| {
            let v: Vec<String> = m.iter().map(|b| (b / 1024).to_string()).collect();
            v.join(" / ")
        };
        let mut md = format!("### {title}\n\n");
        md.push_str(&format!(
            "{} requests ({} cycles of {} request kinds) through {} workers (drawn at random per \
             request), {inputs}; the virtual clock advanced {:.0} s per cycle, {:.0} days in all \
             (the freshness window is {:.2} days). Wall time {:.1} s ({:.0} requests/s, this host). \
             Signed requests are signed afresh every cycle; replays are the demo's immediate repeat \
             and, every cycle, one earlier accepted request drawn from the whole run.\n\n",
            self.requests,
            self.cycles,
            self.kinds_per_cycle,
            o.workers,
            self.step_ms as f64 / 1000.0,
            self.end().virtual_secs as f64 / 86_400.0,
            self.bound.window_secs as f64 / 86_400.0,
            self.elapsed.as_secs_f64(),
            self.requests as f64 / self.elapsed.as_secs_f64().max(1e-9),
        ));
        let (w, e) = (self.warmup(), self.end());
        md.push_str("| | after warm-up | end |\n|---|---:|---:|\n");
        md.push_str(&format!(
            "| requests | {} | {} |\n| guest memory per worker (KiB) | {} | {} |\n",
            w.requests,
            e.requests,
            kib(&w.memory),
            kib(&e.memory)
        ));
        md.push_str(&format!(
            "| replay memory: keys | {} | {} |\n| replay memory: value bytes | {} | {} |\n\
             | replay memory: entries stored (not expired) | {} ({}) | {} ({}) |\n\
             | other shared data: keys, bytes | {}, {} | {}, {} |\n\n",
            w.replay_keys,
            e.replay_keys,
            w.replay_bytes,
            e.replay_bytes,
            w.replay_entries,
            w.replay_live,
            e.replay_entries,
            e.replay_live,
            w.other_keys,
            w.other_bytes,
            e.other_keys,
            e.other_bytes
        ));
        let b = &self.bound;
        md.push_str(&format!(
            "Replay memory bound (configuration): {} active App Secret(s) × {} keys × {} entries \
             (capacity {}) × {} bytes = {} value bytes ({:.1} MiB), at most {} keys; largest seen: \
             {} bytes in {} keys ({:.1} % of the bound). Signed requests accepted over the run: {} \
             (each one an entry until it expires).\n\n",
            b.secrets,
            REPLAY_SHARDS,
            b.per_key,
            b.capacity,
            REPLAY_RECORD,
            b.bytes,
            b.bytes as f64 / (1 << 20) as f64,
            b.keys,
            self.samples
                .iter()
                .map(|s| s.replay_bytes)
                .max()
                .unwrap_or(0),
            self.samples
                .iter()
                .map(|s| s.replay_keys)
                .max()
                .unwrap_or(0),
            100.0
                * self
                    .samples
                    .iter()
                    .map(|s| s.replay_bytes)
                    .max()
                    .unwrap_or(0) as f64
                / b.bytes.max(1) as f64,
            self.accepted_signed
        ));
        md.push_str(&format!(
            "Result: guest memory flat after warm-up: **{}**; shared data within the bound: **{}**; \
             every request kind kept one outcome and no replay was forwarded: **{}**.\n\n",
            yes(self.memory_flat()),
            yes(self.shared_within_bound()),
            yes(self.failures.is_empty())
        ));
        md.push_str(
            "Samples:\n\n| requests | virtual day | guest memory per worker (KiB) | replay keys | \
             replay bytes | entries stored (not expired) | other shared data (keys, bytes) |\n\
             |---:|---:|---|---:|---:|---:|---:|\n",
        );
        for s in &self.samples {
            md.push_str(&format!(
                "| {} | {:.1} | {} | {} | {} | {} ({}) | {}, {} |\n",
                s.requests,
                s.virtual_secs as f64 / 86_400.0,
                kib(&s.memory),
                s.replay_keys,
                s.replay_bytes,
                s.replay_entries,
                s.replay_live,
                s.other_keys,
                s.other_bytes
            ));
        }
        md.push_str(
            "\nOutcomes per request kind:\n\n| request kind | count | outcome |\n|---|---:|---|\n",
        );
        for (kind, outs) in &self.outcomes {
            let total: usize = outs.values().sum();
            let text: Vec<String> = outs
                .iter()
                .map(|(k, n)| {
                    if outs.len() == 1 {
                        k.clone()
                    } else {
                        format!("{k} ×{n}")
                    }
                })
                .collect();
            md.push_str(&format!(
                "| {} | {total} | {} |\n",
                kind.replace('|', "\\|"),
                text.join("; ").replace('|', "\\|")
            ));
        }
        md.push_str("\nThe filter's signature counters at the end (non-zero):\n\n");
        for (k, v) in &self.counters {
            if let Some(name) = k
                .strip_prefix("wasmcustom.s2s_guard.signature.")
                .filter(|_| *v != 0)
            {
                md.push_str(&format!("- `{name}`: {v}\n"));
            }
        }
        if !self.failures.is_empty() {
            md.push_str("\nFailures:\n\n");
            for f in &self.failures {
                md.push_str(&format!("- {f}\n"));
            }
        }
        md
    }
}

fn yes(b: bool) -> &'static str {
    if b {
        "yes"
    } else {
        "NO"
    }
}

/// A deterministic generator (xorshift64*).
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

/// How one request kind is produced each cycle.
enum Template {
    Verbatim(Request),
    /// An SDK request generated afresh (new `created_at`, and the signature
    /// recomputed when it has one).
    Sdk(SdkTemplate),
    /// The request generated for the kind before this one, again.
    Repeat,
}

struct SdkTemplate {
    request: Request,
    in_body: bool,
    /// `created_at`'s value as it appears (form-encoded).
    created_raw: String,
    signing: Option<Signing>,
}

struct Signing {
    secret: String,
    order: Vec<String>,
    activity: String,
}

struct Kind {
    name: String,
    worker: Option<usize>,
    advance_ms: u64,
    template: Template,
}

/// `yyyy-MM-dd'T'HH:mm:ss.SSS'Z'+0000`, as the SDKs format `created_at` (UTC).
pub fn created_at(unix_ms: u64) -> String {
    let unix = unix_ms / 1000;
    let days = unix / 86_400;
    let secs = unix % 86_400;
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + if m <= 2 { 1 } else { 0 };
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{:03}Z+0000",
        secs / 3600,
        secs % 3600 / 60,
        secs % 60,
        unix_ms % 1000
    )
}

fn form_encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'*' => {
                (b as char).to_string()
            }
            b' ' => "+".into(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

fn form_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < b.len() => {
                let hex = |c: u8| (c as char).to_digit(16);
                match (hex(b[i + 1]), hex(b[i + 2])) {
                    (Some(h), Some(l)) => {
                        out.push((h * 16 + l) as u8);
                        i += 2;
                    }
                    _ => out.push(b'%'),
                }
            }
            c => out.push(c),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn form_params(s: &str) -> Vec<(String, String)> {
    s.split('&')
        .filter(|p| !p.is_empty())
        .map(|p| match p.split_once('=') {
            Some((k, v)) => (form_decode(k), form_decode(v)),
            None => (form_decode(p), String::new()),
        })
        .collect()
}

fn header<'a>(r: &'a Request, name: &str) -> Option<&'a str> {
    r.headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(name))
        .and_then(|(_, v)| std::str::from_utf8(v).ok())
}

/// `key="value"` parameters of an `Authorization: Signature …` value.
fn signature_params(auth: &str) -> Option<Vec<(String, String)>> {
    let rest = auth.trim().strip_prefix("Signature")?;
    Some(
        rest.split(',')
            .filter_map(|p| p.split_once('='))
            .map(|(k, v)| (k.trim().to_string(), v.trim().trim_matches('"').to_string()))
            .collect(),
    )
}

fn activity(path: &str) -> &'static str {
    match path.split('?').next().unwrap_or("") {
        "/session" => "session",
        "/event" => "event",
        "/sdk_click" => "click",
        "/attribution" => "attribution",
        "/ad_revenue" => "ad_revenue",
        _ => "",
    }
}

/// Seconds from a configuration duration: a number, or a string `30d`, `12h`, `5m`, `10s`.
fn duration_secs(v: Option<&Value>, default: u64) -> u64 {
    match v {
        Some(Value::Number(n)) => n.as_u64().unwrap_or(default),
        Some(Value::String(s)) => {
            let s = s.trim();
            let (num, unit) = s.split_at(s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len()));
            let n: u64 = num.parse().unwrap_or(0);
            match unit.trim() {
                "" | "s" => n,
                "m" => n * 60,
                "h" => n * 3600,
                "d" => n * 86_400,
                _ => default,
            }
        }
        _ => default,
    }
}

/// An app's signature settings, its template's under it.
fn signature_settings<'a>(config: &'a Value, app: &str) -> Vec<&'a Value> {
    let apps = config.get("apps");
    let mut out = Vec::new();
    let mut name = Some(app.to_string());
    for _ in 0..4 {
        let Some(n) = name.take() else { break };
        let Some(a) = apps.and_then(|a| a.get(&n)) else {
            break;
        };
        if let Some(s) = a.get("signature") {
            out.push(s);
        }
        name = a
            .get("template")
            .and_then(Value::as_str)
            .map(str::to_string);
    }
    out
}

fn secret_value(s: &Value) -> Option<String> {
    if let Some(v) = s.get("secret").and_then(Value::as_str) {
        return Some(v.to_string());
    }
    let info = s.get("info")?.as_array()?;
    Some(info.iter().map(|n| n.to_string()).collect())
}

/// The secret an app signs with under `secret_id`.
fn find_secret(config: &Value, app: &str, id: &str) -> Option<String> {
    for sig in signature_settings(config, app) {
        for s in sig.get("secrets")?.as_array()? {
            if s.get("id")
                .map(|v| v.to_string().trim_matches('"').to_string())
                == Some(id.into())
            {
                return secret_value(s);
            }
        }
    }
    None
}

/// The replay memory's bound and window from the configuration.
pub fn replay_bound(config: &Value) -> ReplayBound {
    let mut secrets = std::collections::BTreeSet::new();
    let mut capacity = 0;
    let mut window = 0;
    if let Some(apps) = config.get("apps").and_then(Value::as_object) {
        for name in apps.keys() {
            let settings = signature_settings(config, name);
            if settings.is_empty() {
                continue;
            }
            let pick = |k: &str| settings.iter().find_map(|s| s.get(k));
            let replay = pick("replay");
            if replay
                .and_then(|r| r.get("enabled"))
                .and_then(Value::as_bool)
                == Some(false)
            {
                continue;
            }
            let cap = replay
                .and_then(|r| r.get("capacity"))
                .and_then(Value::as_u64)
                .map_or(DEFAULT_CAPACITY, |c| c as usize);
            capacity = capacity.max(cap);
            window = window.max(
                duration_secs(pick("max_age"), DEFAULT_MAX_AGE)
                    + duration_secs(pick("max_future"), DEFAULT_MAX_FUTURE),
            );
            for s in settings {
                for sec in s
                    .get("secrets")
                    .and_then(Value::as_array)
                    .into_iter()
                    .flatten()
                {
                    if sec.get("active").and_then(Value::as_bool) != Some(false) {
                        if let Some(v) = secret_value(sec) {
                            secrets.insert(v);
                        }
                    }
                }
            }
        }
    }
    let per_key = replay_per_key(capacity.max(1));
    ReplayBound {
        secrets: secrets.len(),
        capacity,
        per_key,
        keys: secrets.len() * REPLAY_SHARDS,
        bytes: secrets.len() * REPLAY_SHARDS * per_key * REPLAY_RECORD,
        window_secs: if window == 0 {
            DEFAULT_MAX_AGE + DEFAULT_MAX_FUTURE
        } else {
            window
        },
    }
}

fn sdk_template(config: &Value, line: &Line) -> Result<Option<SdkTemplate>, String> {
    let r = &line.request;
    let auth = header(r, "authorization").filter(|a| a.trim_start().starts_with("Signature"));
    if auth.is_none() && header(r, "client-sdk").is_none() {
        return Ok(None);
    }
    let (query, body) = (
        r.path.split_once('?').map_or("", |(_, q)| q),
        std::str::from_utf8(&r.body).unwrap_or(""),
    );
    let find = |s: &str| {
        s.split('&')
            .find_map(|p| p.strip_prefix("created_at="))
            .map(str::to_string)
    };
    let (in_body, created_raw) = match (find(body), find(query)) {
        (Some(c), _) => (true, c),
        (None, Some(c)) => (false, c),
        (None, None) => return Ok(None),
    };
    let signing = match auth {
        None => None,
        Some(a) => {
            let params = signature_params(a).ok_or(format!("{}: bad Authorization", line.name))?;
            let get = |k: &str| params.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone());
            let id = get("secret_id").ok_or(format!("{}: no secret_id", line.name))?;
            let order: Vec<String> = get("headers")
                .ok_or(format!("{}: no headers= in the signature", line.name))?
                .split_whitespace()
                .map(str::to_string)
                .collect();
            let all: Vec<(String, String)> = form_params(query)
                .into_iter()
                .chain(form_params(body))
                .collect();
            let app = all
                .iter()
                .find(|(k, _)| k == "app_token")
                .map(|(_, v)| v.clone())
                .ok_or(format!("{}: no app_token", line.name))?;
            let secret = find_secret(config, &app, &id).ok_or(format!(
                "{}: the configuration has no secret {id} for app {app}: cannot sign it afresh",
                line.name
            ))?;
            Some(Signing {
                secret,
                order,
                activity: activity(&r.path).to_string(),
            })
        }
    };
    Ok(Some(SdkTemplate {
        request: r.clone(),
        in_body,
        created_raw,
        signing,
    }))
}

impl SdkTemplate {
    fn generate(&self, created_ms: u64) -> Request {
        let mut r = self.request.clone();
        let old = format!("created_at={}", self.created_raw);
        let new = format!("created_at={}", form_encode(&created_at(created_ms)));
        if self.in_body {
            let body = String::from_utf8_lossy(&r.body).replacen(&old, &new, 1);
            r.body = body.into_bytes();
        } else {
            r.path = r.path.replacen(&old, &new, 1);
        }
        if let Some(s) = &self.signing {
            let query = r.path.split_once('?').map_or("", |(_, q)| q).to_string();
            let params: Vec<(String, String)> = form_params(&query)
                .into_iter()
                .chain(form_params(&String::from_utf8_lossy(&r.body)))
                .collect();
            let mut clear = String::new();
            for name in &s.order {
                match name.as_str() {
                    "app_secret" => clear.push_str(&s.secret),
                    "activity_kind" => clear.push_str(&s.activity),
                    n => {
                        if let Some((_, v)) = params.iter().find(|(k, _)| k == n) {
                            clear.push_str(v);
                        }
                    }
                }
            }
            let sig = hex::encode(Sha256::digest(clear.as_bytes()));
            for (k, v) in r.headers.iter_mut() {
                if !k.eq_ignore_ascii_case("authorization") {
                    continue;
                }
                let text = String::from_utf8_lossy(v).into_owned();
                if let Some(a) = text.find("signature=\"") {
                    let start = a + "signature=\"".len();
                    if let Some(len) = text[start..].find('"') {
                        *v =
                            format!("{}{sig}{}", &text[..start], &text[start + len..]).into_bytes();
                    }
                }
            }
        }
        r
    }
}

fn outcome_key(o: &crate::Outcome) -> String {
    match &o.verdict {
        Verdict::Forwarded => format!("forwarded, {}", o.status),
        Verdict::Local { .. } => format!("local reply {} \"{}\"", o.status, o.body_text()),
        Verdict::Pending => "pending (never resumed)".into(),
    }
}

fn sample(host: &Host, requests: usize, start_ns: u64) -> Sample {
    let now_secs = host.now_ns() / 1_000_000_000;
    let mut s = Sample {
        requests,
        virtual_secs: (host.now_ns() - start_ns) / 1_000_000_000,
        memory: (0..host.workers()).map(|w| host.memory_bytes(w)).collect(),
        replay_keys: 0,
        replay_bytes: 0,
        replay_key_bytes: 0,
        replay_entries: 0,
        replay_live: 0,
        other_keys: 0,
        other_bytes: 0,
    };
    host.shared_data_visit(|k, v| {
        if k.starts_with(REPLAY_PREFIX) {
            s.replay_keys += 1;
            s.replay_bytes += v.len();
            s.replay_key_bytes += k.len();
            if v.len() % REPLAY_RECORD == 0 {
                for r in v.chunks_exact(REPLAY_RECORD) {
                    s.replay_entries += 1;
                    let exp = u64::from_le_bytes(r[..8].try_into().unwrap_or_default());
                    if exp >= now_secs {
                        s.replay_live += 1;
                    }
                }
            }
        } else {
            s.other_keys += 1;
            s.other_bytes += k.len() + v.len();
        }
    });
    s
}

/// Runs a soak of `lines` (in order, once per cycle) through `compiled` configured
/// with `config`.
pub fn run(
    compiled: &Compiled,
    config: &[u8],
    lines: &[Line],
    opts: SoakOptions,
) -> Result<SoakReport, String> {
    if lines.is_empty() {
        return Err("no requests".into());
    }
    let cfg: Value = serde_json::from_slice(config).map_err(|e| format!("config: {e}"))?;
    let bound = replay_bound(&cfg);
    let mut kinds = Vec::new();
    for (i, l) in lines.iter().enumerate() {
        let template = if i > 0 && l.request == lines[i - 1].request {
            Template::Repeat
        } else if let Some(t) = sdk_template(&cfg, l)? {
            Template::Sdk(t)
        } else {
            Template::Verbatim(l.request.clone())
        };
        kinds.push(Kind {
            name: l.name.clone(),
            worker: l.worker,
            advance_ms: l.advance_ms,
            template,
        });
    }
    let signed = kinds
        .iter()
        .any(|k| matches!(&k.template, Template::Sdk(t) if t.signing.is_some()));
    const WITHIN: &str =
        "replay of an earlier accepted signed request, inside its freshness window";
    const BEYOND: &str = "replay of an earlier accepted signed request, past its freshness window";
    let kinds_per_cycle = kinds.len() + usize::from(signed);
    let cycles = opts.count.div_ceil(kinds_per_cycle).max(1);
    let step_ms = (opts.virtual_days * 86_400_000.0 / cycles as f64) as u64;
    let generated_per_cycle = kinds
        .iter()
        .filter(|k| matches!(k.template, Template::Sdk(_)))
        .count() as u64;
    if step_ms < 2 * generated_per_cycle.max(1) {
        return Err(format!(
            "{cycles} cycles over {} days leave {step_ms} ms per cycle: too little virtual time \
             for fresh created_at values; give more --virtual-days",
            opts.virtual_days
        ));
    }
    let warmup = if opts.warmup == 0 {
        opts.count / 10
    } else {
        opts.warmup
    };
    let workers = opts.workers.max(1);
    let mut host = Host::new(
        compiled,
        HostOptions {
            workers,
            plugin_config: config.to_vec(),
            ..HostOptions::default()
        },
    )
    .map_err(|e| e.to_string())?;
    let start_ns = host.now_ns();
    let mut rng = Rng(opts.seed.max(1).wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1);
    let mut outcomes: Vec<(String, BTreeMap<String, usize>)> = kinds
        .iter()
        .map(|k| (k.name.clone(), BTreeMap::new()))
        .collect();
    if signed {
        outcomes.push((WITHIN.into(), BTreeMap::new()));
        outcomes.push((BEYOND.into(), BTreeMap::new()));
    }
    let mut failures = Vec::new();
    // Accepted signed requests: a uniform sample of the whole run (Algorithm R).
    const RESERVOIR: usize = 512;
    let mut reservoir: Vec<(Request, u64)> = Vec::new();
    let mut accepted_signed = 0usize;
    let mut last_created_ms = 0u64;
    let mut samples = vec![sample(&host, 0, start_ns)];
    let mut next_sample = 1usize;
    let sample_every = opts.count.div_ceil(opts.samples.max(1)).max(1);
    let mut warmup_sample = None;
    let mut sent = 0usize;
    let t = Instant::now();
    let mut cycles_run = 0;
    'run: while sent < opts.count {
        cycles_run += 1;
        let mut previous: Option<Request> = None;
        for (i, k) in kinds.iter().enumerate() {
            if sent >= opts.count {
                break 'run;
            }
            if k.advance_ms > 0 {
                host.advance(k.advance_ms);
            }
            let now_ms = host.now_ns() / 1_000_000;
            let (req, fresh_signed) = match &k.template {
                Template::Verbatim(r) => (r.clone(), false),
                Template::Repeat => match &previous {
                    Some(p) => (p.clone(), false),
                    None => continue,
                },
                Template::Sdk(t) => {
                    let created = (last_created_ms + 1).max(now_ms.saturating_sub(60_000));
                    last_created_ms = created;
                    (t.generate(created), t.signing.is_some())
                }
            };
            let worker = k
                .worker
                .filter(|w| *w < workers)
                .unwrap_or_else(|| rng.below(workers));
            let o = host.send_on(worker, req.clone());
            sent += 1;
            if o.verdict == Verdict::Pending {
                failures.push(format!("{}: the stream was left pending", k.name));
            }
            *outcomes[i].1.entry(outcome_key(&o)).or_default() += 1;
            if fresh_signed && o.verdict == Verdict::Forwarded {
                accepted_signed += 1;
                let item = (req.clone(), last_created_ms);
                if reservoir.len() < RESERVOIR {
                    reservoir.push(item);
                } else {
                    let j = rng.below(accepted_signed);
                    if j < RESERVOIR {
                        reservoir[j] = item;
                    }
                }
            }
            previous = Some(req);
        }
        if signed && !reservoir.is_empty() && sent < opts.count {
            let (req, created_ms) = reservoir[rng.below(reservoir.len())].clone();
            let now_ms = host.now_ns() / 1_000_000;
            let age_secs = now_ms.saturating_sub(created_ms) / 1000;
            // Keep a margin around the window's edge (max_future, clock rounding).
            let kind = if age_secs + 600 < bound.window_secs {
                Some(kinds.len())
            } else if age_secs > bound.window_secs + 600 {
                Some(kinds.len() + 1)
            } else {
                None
            };
            if let Some(kind) = kind {
                let o = host.send_on(rng.below(workers), req);
                sent += 1;
                if !o.is_local() {
                    failures.push(format!("{}: forwarded", outcomes[kind].0));
                }
                *outcomes[kind].1.entry(outcome_key(&o)).or_default() += 1;
            }
        }
        if sent >= next_sample * sample_every || sent >= opts.count {
            samples.push(sample(&host, sent, start_ns));
            next_sample = sent / sample_every + 1;
            if warmup_sample.is_none() && sent >= warmup {
                warmup_sample = Some(samples.len() - 1);
            }
        }
        host.advance(step_ms);
    }
    let elapsed = t.elapsed();
    if samples.last().map(|s| s.requests) != Some(sent) {
        samples.push(sample(&host, sent, start_ns));
    }
    for w in 0..host.workers() {
        if let Some(f) = host.worker_failure(w) {
            failures.push(format!("worker {w} trapped: {f}"));
        }
    }
    for (kind, outs) in &outcomes {
        if outs.len() > 1 {
            failures.push(format!("{kind}: {} different outcomes", outs.len()));
        }
    }
    let warmup_sample = warmup_sample.unwrap_or(samples.len() - 1);
    Ok(SoakReport {
        options: opts,
        requests: sent,
        cycles: cycles_run,
        kinds_per_cycle,
        step_ms,
        elapsed,
        samples,
        warmup_sample,
        outcomes,
        counters: host.metrics(),
        bound,
        accepted_signed,
        failures,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn created_at_is_formatted_as_the_sdks_do() {
        assert_eq!(
            created_at(1_767_225_600_000),
            "2026-01-01T00:00:00.000Z+0000"
        );
        assert_eq!(
            created_at(1_767_225_599_999),
            "2025-12-31T23:59:59.999Z+0000"
        );
        assert_eq!(
            form_decode("2025-12-31T23%3A40%3A00.000Z%2B0000"),
            "2025-12-31T23:40:00.000Z+0000"
        );
        assert_eq!(form_decode("a+b%"), "a b%");
    }

    #[test]
    fn the_bound_follows_the_replay_layout() {
        assert_eq!(replay_per_key(100_000), 98 + 50 + 8);
        let cfg: Value = serde_json::from_str(
            r#"{"apps": {"a": {"signature": {"max_age": "7d", "secrets": [
                {"id": 1, "info": [1, 2, 3, 4], "active": false}, {"id": 2, "secret": "99"}]}},
                "b": {"signature": {"replay": {"enabled": false}, "secrets": [{"id": 1, "secret": "5"}]}}}}"#,
        )
        .unwrap();
        let b = replay_bound(&cfg);
        assert_eq!((b.secrets, b.keys), (1, 1024));
        assert_eq!(b.bytes, 1024 * 156 * 24);
        assert_eq!(b.window_secs, 7 * 86_400 + 300);
        assert_eq!(find_secret(&cfg, "a", "1").as_deref(), Some("1234"));
    }
}
