//! Differential test of the guarantee in docs/security.md: whenever the filter
//! forwards a request on a protected route, every modelled collector reading of
//! its decision inputs (tests/common/collectors.rs: Go `FormValue`, PHP
//! `$_REQUEST`, Rack, Express `qs`/`body-parser`, Flask, legacy Python CGI) is the
//! same, equals what the filter verified, and routes to the protected path the
//! filter decided on.
//!
//! A seeded generator starts from valid and invalid requests of the shipped
//! configuration (tests/reading.rs) and applies 1–3 hostile mutations each; every
//! request runs through `dist/s2s-guard.wasm` (one `WasmRunner`) and natively.
//! `S2S_DIFF_SEED` (decimal or 0x-hex) and `S2S_DIFF_COUNT` choose the run.

mod common;

use common::collectors::{read_header, read_param, refuses, routed_path, RawRequest, Stack, Value};
use common::{run_native, Observed, WasmRunner};
use s2s_guard_host::{header_value, Headers, Request};

const TOKEN: &str = "v8s5opi0zs45607l8h8c48wak2vxb5oe";
const DIGEST: &str = "599c0d6d86efe0f5743bcd0ba688471c3ff4b0b0ed336bc9efdd3a52493c2283";
const APP: &str = "abc123kuvada7";
const SWAARM: &str = "s2sTokenForTheStoreApp";
const JITSU_SERVER: &str = "5f15eba2-db58-11ea-87d0-0242ac130003";
const FORM: &str = "application/x-www-form-urlencoded";
const DEFAULT_SEED: u64 = 0x5eed_2026_0001;
const DEFAULT_COUNT: usize = 10_000;

/// The shipped configuration of tests/reading.rs.
fn config(extra: &str) -> String {
    format!(
        r#"{{
  "presets": ["adjust", "swaarm", "jitsu"],
  "tokens": [
    {{"id": "adj-events", "realm": "adjust", "sha256": "{DIGEST}", "app": "{APP}", "scopes": ["events", "ad_revenue"]}},
    {{"id": "swaarm", "realm": "swaarm", "secret": "{SWAARM}"}},
    {{"id": "jitsu", "realm": "jitsu", "server_secret": "{JITSU_SERVER}"}}
  ],
  "apps": {{"{APP}": {{"authentication": true}}}}{extra}
}}"#
    )
}

fn bearer() -> String {
    format!("Bearer {TOKEN}")
}

// ---- the protected routes and their decision fields ------------------------------

const ADJUST_PATHS: [&str; 4] = ["/event", "/session", "/ad_revenue", "/gdpr_forget_device"];
const JITSU_PATHS: [&str; 5] = [
    "/api/v1/event",
    "/api/v1/events",
    "/api/v1/s2s/event",
    "/api/v1/s2s/events",
    "/api/v1/events/bulk",
];

fn protected(path: &[u8]) -> bool {
    ADJUST_PATHS
        .iter()
        .chain(JITSU_PATHS.iter())
        .chain(["/postback", "/s2sevent"].iter())
        .any(|p| p.as_bytes() == path)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Sys {
    Adjust,
    Swaarm,
    SwaarmEvent,
    Jitsu,
}

impl Sys {
    fn of(path: &[u8]) -> Option<Sys> {
        let p = std::str::from_utf8(path).ok()?;
        if ADJUST_PATHS.contains(&p) {
            Some(Sys::Adjust)
        } else if JITSU_PATHS.contains(&p) {
            Some(Sys::Jitsu)
        } else if p == "/postback" {
            Some(Sys::Swaarm)
        } else if p == "/s2sevent" {
            Some(Sys::SwaarmEvent)
        } else {
            None
        }
    }

    /// The parameters the route's decision depends on (docs/security.md).
    fn fields(self) -> &'static [&'static str] {
        match self {
            Sys::Adjust => &["app_token", "s2s"],
            Sys::Swaarm => &["s2s_token", "user_id", "event_id"],
            Sys::SwaarmEvent => &["token", "user_id", "event_id", "user_ip", "user_ua"],
            Sys::Jitsu => &["token"],
        }
    }

    /// Of those, the ones only whose presence the decision reads (a required
    /// parameter that may be empty: docs/security.md), in any number: every
    /// reading of a request that has one finds one.
    fn presence_only(self) -> &'static [&'static str] {
        match self {
            Sys::SwaarmEvent => &["event_id"],
            _ => &[],
        }
    }

    /// The headers the route's decision reads.
    fn headers(self) -> &'static [&'static str] {
        match self {
            Sys::Adjust | Sys::Swaarm | Sys::SwaarmEvent => &["authorization"],
            Sys::Jitsu => &["x-auth-token", "api_key", "authorization"],
        }
    }
}

fn valid_value(sys: Sys, field: &str) -> &'static str {
    match field {
        "app_token" => APP,
        "s2s" => "1",
        "s2s_token" => SWAARM,
        "token" if sys == Sys::Jitsu => JITSU_SERVER,
        "token" => SWAARM,
        "user_id" => "u",
        "event_id" => "e",
        "user_ip" => "1.2.3.4",
        "user_ua" => "ua",
        _ => "x",
    }
}

fn other_value(field: &str) -> &'static str {
    match field {
        "app_token" => "zzz",
        "s2s" => "0",
        "user_id" => "v",
        "event_id" => "f",
        _ => "other",
    }
}

// ---- a seeded generator ---------------------------------------------------------

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        // xorshift64*
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
    fn chance(&mut self, percent: u64) -> bool {
        self.next() % 100 < percent
    }
    fn pick<'a, T>(&mut self, xs: &'a [T]) -> &'a T {
        &xs[self.below(xs.len())]
    }
}

#[derive(Debug, Clone)]
enum Body {
    None,
    Form(Vec<String>),
    Raw(Vec<u8>),
}

/// A request under construction: its query and form body as raw `name=value`
/// pieces, so mutations can work on them.
#[derive(Debug, Clone)]
struct Gen {
    sys: Sys,
    method: String,
    path: String,
    query: Vec<String>,
    body: Body,
    content_type: Option<String>,
    headers: Vec<(String, String)>,
    http2: bool,
    chunk: Option<usize>,
    trailers: Vec<(String, String)>,
    hold: bool,
    log: Vec<String>,
}

fn base(rng: &mut Rng) -> Gen {
    let mut g = Gen {
        sys: Sys::Adjust,
        method: "POST".into(),
        path: "/event".into(),
        query: Vec::new(),
        body: Body::None,
        content_type: None,
        headers: Vec::new(),
        http2: false,
        chunk: None,
        trailers: Vec::new(),
        hold: rng.chance(30),
        log: Vec::new(),
    };
    let q = |s: &str| s.split('&').map(str::to_string).collect::<Vec<_>>();
    let kind = rng.below(15);
    g.log.push(format!("base {kind}"));
    match kind {
        // Adjust, valid: query, GET or POST, or a form body; /ad_revenue too.
        0..=2 => {
            g.method = rng.pick(&["GET", "POST"]).to_string();
            g.path = rng.pick(&["/event", "/event", "/ad_revenue"]).to_string();
            g.query = q(&format!("s2s=1&app_token={APP}&event_token=e"));
            g.headers.push(("authorization".into(), bearer()));
        }
        3 => {
            g.query = q("s2s=1");
            g.body = Body::Form(q(&format!("app_token={APP}&event_token=e")));
            g.content_type = Some(FORM.into());
            g.headers.push(("authorization".into(), bearer()));
        }
        // Adjust, invalid: no token, another app, a wrong token, a scope it lacks.
        4 => g.query = q(&format!("s2s=1&app_token={APP}&event_token=e")),
        5 => {
            g.query = q("s2s=1&app_token=zzz&event_token=e");
            if rng.chance(50) {
                g.headers.push(("authorization".into(), bearer()));
            }
        }
        6 => {
            g.path = "/session".into();
            g.query = q(&format!("s2s=1&app_token={APP}"));
            g.headers.push(("authorization".into(), bearer()));
        }
        // Swaarm postback: query token or raw Authorization; missing or wrong.
        7 | 8 => {
            g.sys = Sys::Swaarm;
            g.method = rng.pick(&["GET", "POST"]).to_string();
            g.path = "/postback".into();
            g.query = q("user_id=u&event_id=e");
            match rng.below(4) {
                0 => g.query.insert(0, format!("s2s_token={SWAARM}")),
                1 => g.headers.push(("authorization".into(), SWAARM.into())),
                2 => g.query.insert(0, "s2s_token=wrong".into()),
                _ => {}
            }
        }
        // Swaarm s2sevent.
        9 | 10 => {
            g.sys = Sys::SwaarmEvent;
            g.method = rng.pick(&["GET", "POST"]).to_string();
            g.path = "/s2sevent".into();
            let t = if rng.chance(75) { SWAARM } else { "wrong" };
            g.query = q(&format!(
                "token={t}&user_id=u&event_id=&user_ip=1.2.3.4&user_ua=ua"
            ));
        }
        // A path no route matches, with owned headers spoofed.
        14 => {
            g.method = "GET".into();
            g.path = rng
                .pick(&["/healthz", "/static/app.js", "/events"])
                .to_string();
            g.query = q(&format!("app_token={APP}"));
            g.headers.push(("x-s2s-guard-app".into(), APP.into()));
            g.headers
                .push(("x_s2s_guard_token_id".into(), "admin".into()));
        }
        // Jitsu server event: header or query token, JSON body ignored.
        _ => {
            g.sys = Sys::Jitsu;
            g.path = "/api/v1/s2s/event".into();
            g.body = Body::Raw(br#"{"event_type":"x","token":"body"}"#.to_vec());
            g.content_type = Some("application/json".into());
            let t = if rng.chance(75) {
                JITSU_SERVER
            } else {
                "wrong"
            };
            if rng.chance(50) {
                g.headers.push(("x-auth-token".into(), t.into()));
            } else {
                g.query = vec![format!("token={t}")];
            }
        }
    }
    g
}

const ALL_FIELDS: [&str; 6] = [
    "app_token",
    "s2s",
    "s2s_token",
    "user_id",
    "event_id",
    "token",
];

fn pair_name(p: &str) -> &str {
    p.split('=').next().unwrap_or("")
}

impl Gen {
    fn field(&self, rng: &mut Rng) -> &'static str {
        let fields = if rng.chance(85) {
            self.sys.fields()
        } else {
            &ALL_FIELDS[..]
        };
        fields[rng.below(fields.len())]
    }

    fn value(&self, rng: &mut Rng, field: &str) -> String {
        match rng.below(3) {
            0 => other_value(field).into(),
            1 => valid_value(self.sys, field).into(),
            _ => String::new(),
        }
    }

    fn form_body(&mut self) -> &mut Vec<String> {
        if !matches!(self.body, Body::Form(_)) {
            self.body = Body::Form(Vec::new());
        }
        if self.content_type.as_deref() != Some(FORM) {
            self.content_type = Some(FORM.into());
        }
        if self.method != "POST" {
            self.method = "POST".into();
        }
        match &mut self.body {
            Body::Form(f) => f,
            _ => unreachable!(),
        }
    }

    fn insert(&mut self, rng: &mut Rng, in_body: bool, pair: String) {
        let list = if in_body {
            self.form_body()
        } else {
            &mut self.query
        };
        let at = rng.below(list.len() + 1);
        list.insert(at, pair);
    }

    /// A query or body piece naming a decision field: (in body, index).
    fn decision_piece(&self, rng: &mut Rng) -> Option<(bool, usize)> {
        let mut found = Vec::new();
        for (i, p) in self.query.iter().enumerate() {
            if ALL_FIELDS.contains(&pair_name(p)) {
                found.push((false, i));
            }
        }
        if let Body::Form(f) = &self.body {
            for (i, p) in f.iter().enumerate() {
                if ALL_FIELDS.contains(&pair_name(p)) {
                    found.push((true, i));
                }
            }
        }
        (!found.is_empty()).then(|| *rng.pick(&found))
    }

    fn piece(&mut self, in_body: bool, i: usize) -> &mut String {
        match (in_body, &mut self.body) {
            (true, Body::Form(f)) => &mut f[i],
            _ => &mut self.query[i],
        }
    }

    fn mutate(&mut self, rng: &mut Rng) {
        let m = rng.below(13);
        match m {
            // Repeat a decision field: another value, the same, or empty.
            0 | 1 => {
                let f = self.field(rng);
                let v = self.value(rng, f);
                let in_body = rng.chance(40);
                self.log.push(format!("repeat {f}={v} body={in_body}"));
                self.insert(rng, in_body, format!("{f}={v}"));
            }
            // Move a field into a form body.
            2 => {
                if let Some(i) = self
                    .query
                    .iter()
                    .position(|p| self.sys.fields().contains(&pair_name(p)))
                {
                    let p = self.query.remove(i);
                    self.log.push(format!("move {p} to body"));
                    self.insert(rng, true, p);
                }
            }
            // Another spelling of a decision name.
            3 | 4 => {
                let f = self.field(rng);
                let (a, b) = f.split_at(1);
                let mut variants = vec![
                    format!("{f}[]"),
                    format!("{f}[x]"),
                    format!("[{f}]"),
                    format!("{f}%5B%5D"),
                    format!("%{:02X}{b}", a.as_bytes()[0]),
                    format!("+{f}"),
                    format!("%20{f}"),
                    f.to_ascii_uppercase(),
                    format!("{f}%00x"),
                    format!("{f}["),
                    format!("{f}]"),
                    format!("[{f}"),
                    format!("]{f}"),
                    format!("[[{f}"),
                    format!("{f}%5D"),
                    format!("%5B{f}%5D"),
                    format!("{f}."),
                ];
                if f.contains('_') {
                    for sep in [".", "+", "%20", "[", "%5F", "%2E", "%5B"] {
                        variants.push(f.replacen('_', sep, 1));
                    }
                } else {
                    variants.push(format!("{a}.{b}"));
                }
                let in_body = rng.chance(30);
                if in_body {
                    // Raw bytes a body can carry: PHP drops leading spaces and cuts
                    // at NUL, Rack drops spaces after a separator.
                    variants.extend([format!(" {f}"), format!("  {f}"), format!("{f}\0x")]);
                }
                let name = rng.pick(&variants).clone();
                let v = self.value(rng, f);
                if rng.chance(50) {
                    if let Some((in_body, i)) = self.decision_piece(rng) {
                        let p = self.piece(in_body, i);
                        let value = p.split_once('=').map(|x| x.1).unwrap_or("").to_string();
                        *p = format!("{name}={value}");
                        self.log.push(format!("rename to {name}"));
                        return;
                    }
                }
                self.log.push(format!("add {name:?}={v} body={in_body}"));
                self.insert(rng, in_body, format!("{name}={v}"));
            }
            // `;` separators.
            5 => {
                let f = self.field(rng);
                let v = self.value(rng, f);
                match rng.below(4) {
                    0 if self.query.len() >= 2 => {
                        let i = rng.below(self.query.len() - 1);
                        let next = self.query.remove(i + 1);
                        self.query[i] = format!("{};{next}", self.query[i]);
                        self.log.push("join with ;".into());
                    }
                    1 => {
                        if let Some((in_body, i)) = self.decision_piece(rng) {
                            self.piece(in_body, i).push_str(&format!(";{f}={v}"));
                            self.log.push(format!("append ;{f}={v}"));
                        }
                    }
                    2 => {
                        let in_body = rng.chance(30);
                        self.log.push(format!("add x=1;{f}={v} body={in_body}"));
                        self.insert(rng, in_body, format!("x=1;{f}={v}"));
                    }
                    _ => {
                        let in_body = rng.chance(30);
                        self.log.push(format!("add {f}={v};x body={in_body}"));
                        self.insert(rng, in_body, format!("{f}={v};x"));
                    }
                }
            }
            // Hostile bytes in a decision value.
            6 | 7 => {
                if let Some((in_body, i)) = self.decision_piece(rng) {
                    let mut bad: Vec<&str> = vec![
                        "%00", "%0d", "%0a", "%0D%0A", "+", "%20", "%09", "%zz", "%ff", "%", "%7f",
                        "%C3%A9", "%e9", "%2B", "%2", "%3D", "%26", "%3B",
                    ];
                    if in_body {
                        bad.extend(["\0", "\r\n", "\t", " "]);
                    }
                    let b = *rng.pick(&bad);
                    let p = self.piece(in_body, i);
                    let at = match rng.below(3) {
                        0 => p.find('=').map(|x| x + 1).unwrap_or(p.len()),
                        1 => p.len(),
                        _ => p
                            .find('=')
                            .map(|x| (x + p.len()).div_ceil(2))
                            .unwrap_or(p.len()),
                    };
                    let at = (0..=at).rev().find(|&k| p.is_char_boundary(k)).unwrap_or(0);
                    p.insert_str(at, b);
                    let msg = format!("value byte {b:?} → {p:?}");
                    self.log.push(msg);
                }
            }
            // Media types and codings.
            8 => {
                if matches!(self.body, Body::None) {
                    let f = self.field(rng);
                    let v = self.value(rng, f);
                    self.body = Body::Form(vec![format!("{f}={v}")]);
                    if self.method == "GET" {
                        self.method = "POST".into();
                    }
                }
                let choice = rng.below(22);
                self.log.push(format!("media {choice}"));
                match choice {
                    0 => self.content_type = Some(format!("{FORM}, text/plain")),
                    1 => self.content_type = Some(format!("{FORM},")),
                    2 => self.content_type = Some(format!("{FORM}; charset=utf-16")),
                    3 => self.content_type = Some(format!("{FORM}; charset=UTF-8")),
                    4 => self.content_type = Some(format!("{FORM} text/plain")),
                    5 => self.content_type = None,
                    6 => self.content_type = Some("Application/X-WWW-Form-Urlencoded".into()),
                    7 => self.content_type = Some("text/plain".into()),
                    8 => {
                        // Multipart with the body's pieces as fields.
                        let pieces = match &self.body {
                            Body::Form(f) => f.clone(),
                            _ => vec![format!("app_token={APP}")],
                        };
                        let mut b = String::new();
                        for p in pieces {
                            let (n, v) = p.split_once('=').unwrap_or((&p, ""));
                            b.push_str(&format!(
                                "--XyZ\r\nContent-Disposition: form-data; name=\"{n}\"\r\n\r\n{v}\r\n"
                            ));
                        }
                        b.push_str("--XyZ--\r\n");
                        self.body = Body::Raw(b.into_bytes());
                        self.content_type = Some("multipart/form-data; boundary=XyZ".into());
                    }
                    9 => self.headers.push((
                        "content-encoding".into(),
                        rng.pick(&["gzip", "deflate", "identity", "br"]).to_string(),
                    )),
                    10 => self.content_type = Some(format!("{FORM};foo=bar")),
                    11 => self.content_type = Some(format!(" {FORM}")),
                    12 => self
                        .headers
                        .push(("content-type".into(), "text/plain".into())),
                    13 => self.content_type = Some(format!("{FORM};")),
                    14 => self.content_type = Some(format!("{FORM}; charset=utf-8;")),
                    15 => self.content_type = Some(format!("{FORM}; charset")),
                    16 => self.content_type = Some(format!("{FORM}; charset=\"utf-8\"")),
                    17 => self.content_type = Some(format!("{FORM} ; charset=utf-8")),
                    18 => self.content_type = Some(format!("{FORM};;")),
                    19 => self.content_type = Some(format!("{FORM}\t; charset=utf-8")),
                    20 => self.content_type = Some(format!("{FORM}\t;charset=UTF-8")),
                    _ => self.content_type = Some("application/json".into()),
                }
            }
            // Methods, with or without a body.
            9 => {
                let m = *rng.pick(&[
                    "GET", "POST", "DELETE", "PUT", "PATCH", "HEAD", "OPTIONS", "post", "Get",
                ]);
                self.method = m.into();
                if rng.chance(30) {
                    self.body = Body::None;
                    self.content_type = None;
                } else if rng.chance(30) && matches!(self.body, Body::None) {
                    let f = self.field(rng);
                    let v = self.value(rng, f);
                    self.body = Body::Form(vec![format!("{f}={v}")]);
                    self.content_type = Some(FORM.into());
                }
                self.log.push(format!("method {m}"));
            }
            // Path variants.
            10 => {
                let p = self.path.clone();
                let (first, rest) = p[1..].split_at(1);
                let variants = [
                    format!("{p}/"),
                    format!("/{p}"),
                    format!("/.{p}"),
                    format!("/x/..{p}"),
                    format!("/%{:02x}{rest}", first.as_bytes()[0]),
                    format!("/%{:02X}{rest}", first.as_bytes()[0]),
                    p.to_ascii_uppercase(),
                    format!("{p};a=b"),
                    format!("{p}%2F"),
                    format!("{p}%2f"),
                    format!("{p}%00"),
                    format!("{p}/."),
                    format!("{p}%2e"),
                    format!("{p}%20"),
                    format!("{p}.json"),
                    format!("/x%2F..{p}"),
                    format!("{p}%5C"),
                    format!("/%2e{p}"),
                    format!("{p}/.."),
                    format!("{p}%3F"),
                    format!("{p}%23"),
                    format!("/{first}%2{rest}"),
                ];
                self.path = rng.pick(&variants).clone();
                self.log.push(format!("path {}", self.path));
            }
            // HTTP/2, chunks, trailers.
            11 => {
                self.http2 = rng.chance(80);
                if rng.chance(60) {
                    self.chunk = Some(1 + rng.below(7));
                }
                let trailers: [(&str, String); 8] = [
                    ("x-checksum", "1".into()),
                    ("authorization", "Bearer other".into()),
                    ("authorization", bearer()),
                    ("x-auth-token", JITSU_SERVER.into()),
                    ("x-auth-token", "other".into()),
                    ("content-type", "text/plain".into()),
                    ("x-s2s-guard-app", APP.into()),
                    ("content-length", "1".into()),
                ];
                let n = rng.below(3);
                for _ in 0..n {
                    let (k, v) = rng.pick(&trailers).clone();
                    self.trailers.push((k.into(), v));
                }
                self.log.push(format!(
                    "http2={} chunk={:?} trailers={:?}",
                    self.http2, self.chunk, self.trailers
                ));
            }
            // Header spellings.
            _ => {
                let t = match self.sys {
                    Sys::Jitsu => JITSU_SERVER.to_string(),
                    Sys::Adjust => bearer(),
                    _ => SWAARM.into(),
                };
                let headers: [(&str, String); 15] = [
                    ("x_s2s_guard_token_id", "admin".into()),
                    ("x-s2s-guard_app", APP.into()),
                    ("x-s2s-guard-rejection", "none".into()),
                    ("x_auth_token", t.clone()),
                    ("x_auth_token", "other".into()),
                    ("x-auth-token", "other".into()),
                    ("x-auth-token", t.clone()),
                    ("x_s2s_guard_app", APP.into()),
                    ("x-s2s-guard-app", APP.into()),
                    ("x-s2s-guard-token-id", "adj-events".into()),
                    ("authorization", "Bearer other".into()),
                    ("authorization", t.clone()),
                    ("api_key", "other".into()),
                    ("api-key", "other".into()),
                    ("content-length", "3".into()),
                ];
                let (k, v) = rng.pick(&headers).clone();
                self.log.push(format!("header {k}: {v}"));
                self.headers.push((k.into(), v));
            }
        }
    }

    fn target(&self) -> String {
        if self.query.is_empty() {
            self.path.clone()
        } else {
            format!("{}?{}", self.path, self.query.join("&"))
        }
    }

    fn body_bytes(&self) -> Vec<u8> {
        match &self.body {
            Body::None => Vec::new(),
            Body::Form(f) => f.join("&").into_bytes(),
            Body::Raw(b) => b.clone(),
        }
    }

    fn request(&self) -> Request {
        let mut r = Request::new(&self.method, &self.target());
        if let Some(ct) = &self.content_type {
            r = r.header("content-type", ct);
        }
        for (k, v) in &self.headers {
            r = r.header(k, v);
        }
        r = r.body(self.body_bytes());
        if self.http2 {
            r = r.http2();
        }
        if let Some(n) = self.chunk {
            r = r.chunked(n);
        }
        for (k, v) in &self.trailers {
            r = r.trailer(k, v);
        }
        r
    }
}

fn generate(rng: &mut Rng) -> Gen {
    let mut g = base(rng);
    let n = 1 + rng.below(3);
    for _ in 0..n {
        g.mutate(rng);
    }
    g
}

// ---- the invariant -------------------------------------------------------------------

fn describe(req: &Request) -> String {
    let mut s = format!(
        "{} {} ({:?}, chunk {:?})\n",
        req.method, req.path, req.protocol, req.chunk_size
    );
    for (k, v) in &req.headers {
        s.push_str(&format!("  {k}: {}\n", String::from_utf8_lossy(v)));
    }
    s.push_str(&format!(
        "  body: {:?}\n",
        String::from_utf8_lossy(&req.body)
    ));
    for (k, v) in &req.trailers {
        s.push_str(&format!("  trailer {k}: {}\n", String::from_utf8_lossy(v)));
    }
    s
}

fn show(readings: &[(Stack, Option<Value>)]) -> String {
    readings
        .iter()
        .map(|(s, v)| match v {
            Some(v) => format!("{}={v}", s.name()),
            None => format!("{}=none", s.name()),
        })
        .collect::<Vec<_>>()
        .join(", ")
}

fn blank(v: &Option<Value>) -> Option<Value> {
    match v {
        Some(Value::Str(s)) if s.is_empty() => None,
        v => v.clone(),
    }
}

/// The request as the upstream got it, without pseudo-headers.
struct Upstream {
    method: Vec<u8>,
    path: Vec<u8>,
    headers: Headers,
    body: Vec<u8>,
}

impl Upstream {
    fn of(o: &Observed) -> Upstream {
        let up = o.upstream.clone().expect("forwarded");
        Upstream {
            method: header_value(&up, ":method").unwrap_or_default().to_vec(),
            path: header_value(&up, ":path").unwrap_or_default().to_vec(),
            headers: up
                .into_iter()
                .filter(|(k, _)| !k.starts_with(':'))
                .collect(),
            body: o.upstream_body.clone().unwrap_or_default(),
        }
    }

    fn raw(&self) -> RawRequest<'_> {
        RawRequest {
            method: &self.method,
            path: &self.path,
            headers: &self.headers,
            body: &self.body,
        }
    }
}

/// The headers the filter owns (the collector trusts them from the proxy only).
const OWNED: [&str; 3] = [
    "x-s2s-guard-app",
    "x-s2s-guard-token-id",
    "x-s2s-guard-rejection",
];

/// Checks the invariant on one forwarded request; `Err` says which reading broke it.
fn check_readings(o: &Observed) -> Result<(), String> {
    if !o.forwarded {
        // Refused, but its headers may have gone upstream before the body decided.
        return common::early_query_problem(o).map_or(Ok(()), Err);
    }
    let up = Upstream::of(o);
    let raw = up.raw();
    let unmatched = o.counters.contains_key("s2s_guard.unmatched");
    let up_path: Vec<u8> = up
        .path
        .split(|&b| b == b'?')
        .next()
        .unwrap_or_default()
        .to_vec();

    // Owned headers: one reading in every stack (CGI stacks merge `_` and `-`
    // spellings), and none at all on a path the filter passed as unknown.
    for name in OWNED {
        let readings: Vec<(Stack, Option<Value>)> = Stack::ALL
            .iter()
            .map(|&s| (s, read_header(s, &raw, name)))
            .collect();
        if readings.iter().any(|(_, v)| *v != readings[0].1) {
            return Err(format!(
                "owned header {name} read differently: {}",
                show(&readings)
            ));
        }
        if unmatched && readings[0].1.is_some() {
            return Err(format!(
                "owned header {name} reaches the collector on an unknown path: {}",
                show(&readings)
            ));
        }
    }

    // Routing: a path some stack routes to a protected route was decided as that route.
    let routes: Vec<(Stack, Vec<u8>)> = Stack::ALL
        .iter()
        .map(|&s| (s, routed_path(s, &raw)))
        .collect();
    let any_protected = routes.iter().any(|(_, p)| protected(p));
    if !any_protected && !protected(&up_path) {
        return Ok(());
    }
    if unmatched {
        return Err(format!(
            "passed as an unknown path, but routed to a protected route: {}",
            routes
                .iter()
                .map(|(s, p)| format!("{}→{}", s.name(), String::from_utf8_lossy(p)))
                .collect::<Vec<_>>()
                .join(", ")
        ));
    }
    let sys = Sys::of(&up_path).ok_or_else(|| {
        format!(
            "decided on a route but forwarded with a non-canonical path {:?}",
            String::from_utf8_lossy(&up.path)
        )
    })?;
    for (s, p) in &routes {
        if *p != up_path {
            return Err(format!(
                "{} routes {:?} to {:?}, the filter decided on {:?}",
                s.name(),
                String::from_utf8_lossy(&up.path),
                String::from_utf8_lossy(p),
                String::from_utf8_lossy(&up_path)
            ));
        }
    }

    // Parameters: Jitsu reads its token from the query only (`body: ignore`).
    let query_only_headers: Headers = Vec::new();
    let query_only = RawRequest {
        method: b"GET",
        path: &up.path,
        headers: &query_only_headers,
        body: b"",
    };
    let view = if sys == Sys::Jitsu { query_only } else { raw };
    let shadow = o
        .counters
        .keys()
        .any(|k| k.starts_with("s2s_guard.shadow."));
    let allowed = o
        .counters
        .keys()
        .any(|k| k.starts_with("s2s_guard.requests.outcome.allowed."));
    let verified_app = header_value(&up.headers, "x-s2s-guard-app").map(<[u8]>::to_vec);
    for field in sys.fields() {
        // A stack that refuses the whole request (Rack's 400 on a bad escape,
        // body-parser's 415) reads nothing: it cannot disagree.
        let readings: Vec<(Stack, Option<Value>)> = Stack::ALL
            .iter()
            .filter(|&&s| !refuses(s, &view))
            .map(|&s| (s, read_param(s, &view, field)))
            .collect();
        if readings.is_empty() || sys.presence_only().contains(field) {
            continue;
        }
        // An empty value and no value are the same reading (legacy Python drops
        // blank values): both are "not given".
        if readings
            .iter()
            .any(|(_, v)| blank(v) != blank(&readings[0].1))
        {
            return Err(format!("{field} read differently: {}", show(&readings)));
        }
        if sys == Sys::Adjust && *field == "app_token" {
            let read = blank(&readings[0].1);
            if let Some(app) = &verified_app {
                if read != Some(Value::Str(app.clone())) {
                    return Err(format!(
                        "verified app {:?}, collectors read {}",
                        String::from_utf8_lossy(app),
                        show(&readings)
                    ));
                }
            }
            if allowed && read != Some(Value::Str(APP.into())) {
                return Err(format!(
                    "a token for {APP} allowed, collectors read {}",
                    show(&readings)
                ));
            }
            if shadow && read == Some(Value::Str(APP.into())) {
                return Err(format!(
                    "shadow-passed (authentication off), collectors read the enforced app: {}",
                    show(&readings)
                ));
            }
        }
    }
    for name in sys.headers() {
        let readings: Vec<(Stack, Option<Value>)> = Stack::ALL
            .iter()
            .map(|&s| (s, read_header(s, &raw, name)))
            .collect();
        if readings.iter().any(|(_, v)| *v != readings[0].1) {
            return Err(format!(
                "header {name} read differently: {}",
                show(&readings)
            ));
        }
    }
    Ok(())
}

/// Bypasses found by this suite and not fixed yet: (name, minimal request, a
/// recogniser for generated requests of the same class). The main test asserts on
/// every other failure; `known_bypasses_still_reproduce` keeps each one honest.
type Recogniser = fn(&Request) -> bool;
#[allow(clippy::type_complexity)]
/// Fixed so far: B1, a Content-Type with a tab before its parameters
/// (`application/x-www-form-urlencoded<TAB>;charset=utf-8`), read as a form by the
/// filter, Go, Rack, Express, Werkzeug and cgi but not by PHP (SAPI.c cuts the type
/// only at `;`, `,` or space): now refused with 415 (src/core/reading.rs).
const KNOWN_BYPASSES: &[(&str, fn() -> Request, Recogniser)] = &[];

/// Requests on which the native runner (tests/common/mod.rs `run_native`) and the
/// `.wasm` in the host disagree, for reasons of the native runner's model rather
/// than of readings: (name, minimal request, recogniser over (request, wasm,
/// native)). Every other disagreement fails the main test.
///
/// Found and fixed so far (488b633): a body-ignore route forwarding HTTP/2 trailers
/// naming decision headers; trailers with an empty body framed as a body by the host
/// but not by `run_native`; the order of two refusals with trailers.
type Divergence = fn(&Request, &Observed, &Observed) -> bool;
#[allow(clippy::type_complexity)]
const KNOWN_DIVERGENCES: &[(&str, fn() -> Request, Divergence)] = &[];

fn seed() -> u64 {
    match std::env::var("S2S_DIFF_SEED") {
        Ok(s) => {
            let s = s.trim();
            match s.strip_prefix("0x") {
                Some(h) => u64::from_str_radix(h, 16),
                None => s.parse(),
            }
            .expect("S2S_DIFF_SEED: a number")
        }
        Err(_) => DEFAULT_SEED,
    }
}

fn count() -> usize {
    std::env::var("S2S_DIFF_COUNT")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(DEFAULT_COUNT)
}

#[test]
fn forwarded_requests_read_one_way_in_every_stack() {
    let seed = seed();
    let n = count();
    eprintln!(
        "differential: seed {seed:#x} ({seed}), {n} requests (S2S_DIFF_SEED, S2S_DIFF_COUNT)"
    );
    // splitmix64 of the seed: every seed gives its own (non-zero) xorshift state.
    let mut z = seed.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    let mut rng = Rng((z ^ (z >> 31)) | 1);
    let plain = config("");
    let hold = config(r#", "hold_headers_for_body": true"#);
    let mut runner = WasmRunner::new();
    let start = std::time::Instant::now();
    let mut failures = Vec::new();
    let mut known = 0usize;
    let (mut forwarded, mut checked) = (0usize, 0usize);
    let mut kinds = std::collections::BTreeMap::new();
    for i in 0..n {
        let g = generate(&mut rng);
        let req = g.request();
        let cfg = if g.hold { &hold } else { &plain };
        let w = runner.run(cfg, &req);
        let nat = run_native(cfg, &req);
        let mut problems = Vec::new();
        if (w.forwarded, w.status) != (nat.forwarded, nat.status)
            && !KNOWN_DIVERGENCES.iter().any(|(_, _, d)| d(&req, &w, &nat))
        {
            problems.push(format!(
                "native and wasm disagree: wasm forwarded={} status={}, native forwarded={} status={}",
                w.forwarded, w.status, nat.forwarded, nat.status
            ));
        }
        for (runner_name, o) in [("wasm", &w), ("native", &nat)] {
            if let Err(e) = check_readings(o) {
                problems.push(format!("[{runner_name}] {e}"));
            }
        }
        if w.forwarded {
            forwarded += 1;
            if w.upstream.as_ref().is_some_and(|u| {
                let p = header_value(u, ":path").unwrap_or_default();
                protected(p.split(|&b| b == b'?').next().unwrap_or_default())
            }) {
                checked += 1;
                for m in g.log.iter().skip(1) {
                    let kind = m.split(' ').next().unwrap_or_default().to_string();
                    *kinds.entry(kind).or_insert(0usize) += 1;
                }
            }
        }
        if problems.is_empty() {
            continue;
        }
        if KNOWN_BYPASSES.iter().any(|(_, _, r)| r(&req)) {
            known += 1;
            continue;
        }
        failures.push(format!(
            "#{i} (seed {seed:#x}, hold={}) mutations {:?}\n{}  → wasm forwarded={} status={}\n  {}",
            g.hold,
            g.log,
            describe(&req),
            w.forwarded,
            w.status,
            problems.join("\n  ")
        ));
    }
    eprintln!(
        "differential: {n} requests in {:?}: {forwarded} forwarded, {checked} forwarded on protected routes and checked, {known} known bypasses, {} failures",
        start.elapsed(),
        failures.len()
    );
    eprintln!("differential: mutations among the checked requests: {kinds:?}");
    if !failures.is_empty() {
        let dump = std::env::temp_dir().join("s2s-differential-failures.txt");
        let _ = std::fs::write(&dump, failures.join("\n"));
        eprintln!("differential: all failures in {}", dump.display());
    }
    assert!(
        failures.is_empty(),
        "seed {seed:#x}: {} failing requests; the first:\n{}",
        failures.len(),
        failures
            .iter()
            .take(8)
            .cloned()
            .collect::<Vec<_>>()
            .join("\n")
    );
}

/// Each known native/wasm divergence still reproduces (remove it once fixed).
#[test]
fn known_divergences_still_reproduce() {
    let cfg = config("");
    let mut runner = WasmRunner::new();
    let mut gone = Vec::new();
    for (name, req, recognise) in KNOWN_DIVERGENCES {
        let req = req();
        let (w, n) = (runner.run(&cfg, &req), run_native(&cfg, &req));
        if (w.forwarded, w.status) == (n.forwarded, n.status) || !recognise(&req, &w, &n) {
            gone.push(format!(
                "{name} (wasm {} {}, native {} {})",
                w.forwarded, w.status, n.forwarded, n.status
            ));
        }
    }
    assert!(
        gone.is_empty(),
        "no longer diverging, remove from KNOWN_DIVERGENCES:\n{}",
        gone.join("\n")
    );
}

/// B1's worst case (KNOWN_BYPASSES): with `adjust_sdk` and an app enforcing
/// signatures, `s2s=1` in a body PHP does not parse makes a token-checked S2S
/// request that a PHP collector reads as SDK traffic (no `s2s`), unsigned.
#[test]
fn b1_sdk_traffic_without_signature_for_php() {
    let sdk = format!(
        r#"{{"presets": ["adjust_sdk"],
  "tokens": [{{"id": "adj-events", "realm": "adjust", "sha256": "{DIGEST}", "app": "{APP}", "scopes": ["events"]}}],
  "apps": {{"{APP}": {{"authentication": true, "signature": {{"enforce_signature": true,
     "secrets": [{{"id": 1, "info": [1, 2, 3, 4]}}]}}}}}}}}"#
    );
    let mut runner = WasmRunner::new();
    let unsigned_sdk =
        Request::post(&format!("/event?app_token={APP}")).header("authorization", bearer());
    assert!(
        !runner.run(&sdk, &unsigned_sdk).forwarded,
        "unsigned SDK traffic is refused"
    );
    let req = unsigned_sdk
        .header("content-type", format!("{FORM}\t;charset=utf-8"))
        .body("s2s=1");
    let o = runner.run(&sdk, &req);
    if !o.forwarded {
        eprintln!("B1 (adjust_sdk) no longer forwarded: fixed?");
        return;
    }
    let up = Upstream::of(&o);
    let s2s = |s| read_param(s, &up.raw(), "s2s");
    assert_eq!(s2s(Stack::GoFormValue), Some(Value::Str(b"1".to_vec())));
    assert_eq!(s2s(Stack::Php), None, "PHP reads no s2s: SDK traffic");
}

/// Each known bypass still reproduces (remove it from the list once fixed).
#[test]
fn known_bypasses_still_reproduce() {
    let cfg = config("");
    let mut runner = WasmRunner::new();
    for (name, req, _) in KNOWN_BYPASSES {
        let o = runner.run(&cfg, &req());
        assert!(
            check_readings(&o).is_err(),
            "{name}: no longer a bypass; remove it from KNOWN_BYPASSES"
        );
    }
}

/// The oracle is not vacuous: a "filter" that forwards every request unchanged as
/// allowed is caught on each documented double reading.
#[test]
fn the_check_catches_a_filter_that_forwards_everything() {
    let forward = |req: &Request, counter: &str| Observed {
        forwarded: true,
        status: 200,
        body: Vec::new(),
        response_headers: Vec::new(),
        upstream: Some(req.envoy_headers()),
        upstream_body: Some(req.body.clone()),
        early_upstream: None,
        counters: [(counter.to_string(), 1)].into_iter().collect(),
    };
    let allowed = "s2s_guard.requests.outcome.allowed.scope.events";
    let e = |q: &str| Request::post(&format!("/event?s2s=1&{q}")).header("authorization", bearer());
    let form = |q: &str, ct: Option<&str>, method: &str, body: &str| {
        let mut r = Request::new(method, &format!("/event?s2s=1&{q}")).body(body);
        if let Some(ct) = ct {
            r = r.header("content-type", ct);
        }
        r
    };
    let flagged = [
        (e(&format!("app_token={APP}&app_token=zzz")), allowed),
        (e(&format!("app_token={APP}&app.token=zzz")), allowed),
        (e(&format!("app_token={APP}&app_token]=zzz")), allowed),
        (e(&format!("[app_token]=zzz&app_token={APP}")), allowed),
        (e(&format!("x=1;app_token=zzz&app_token={APP}")), allowed),
        (e(&format!("app_token={APP}%zz")), allowed),
        (e(&format!("app_token={APP}%ff")), allowed),
        (e("app_token=zzz"), allowed),
        (
            e(&format!("app_token={APP}")),
            "s2s_guard.shadow.outcome.missing",
        ),
        (
            form(
                &format!("app_token={APP}"),
                Some(FORM),
                "POST",
                "app_token=zzz",
            ),
            allowed,
        ),
        (
            form(
                "",
                Some(&format!("{FORM}, text/plain")),
                "POST",
                &format!("app_token={APP}"),
            ),
            allowed,
        ),
        (form("", None, "POST", &format!("app_token={APP}")), allowed),
        (
            form(
                &format!("app_token={APP}"),
                Some(FORM),
                "GET",
                "app_token=zzz",
            ),
            allowed,
        ),
        (
            form(
                &format!("app_token={APP}"),
                Some(FORM),
                "POST",
                "x=1& app_token=zzz",
            ),
            allowed,
        ),
        (
            Request::post(&format!("/EVENT?s2s=1&app_token={APP}")),
            allowed,
        ),
        (
            Request::get("/healthz").header("x_s2s_guard_app", APP),
            "s2s_guard.unmatched",
        ),
        (
            Request::post("/api/v1/s2s/event?token=a&token=b").header("x-auth-token", JITSU_SERVER),
            allowed,
        ),
        (
            Request::post("/api/v1/s2s/event")
                .header("x-auth-token", JITSU_SERVER)
                .header("x_auth_token", "other"),
            allowed,
        ),
    ];
    for (req, counter) in &flagged {
        assert!(
            check_readings(&forward(req, counter)).is_err(),
            "not caught:\n{}",
            describe(req)
        );
    }
    // Unchanged valid requests pass.
    for req in [
        e(&format!("app_token={APP}&event_token=e")),
        Request::get(&format!(
            "/postback?s2s_token={SWAARM}&user_id=u&event_id=e"
        )),
        Request::post("/api/v1/s2s/event").header("x-auth-token", JITSU_SERVER),
    ] {
        let r = check_readings(&forward(&req, allowed));
        assert!(r.is_ok(), "{r:?}\n{}", describe(&req));
    }
    // And most generated requests, forwarded as they are, would be caught.
    let mut rng = Rng(0x1234_5678_9abc_def1);
    let caught = (0..2000)
        .filter(|_| check_readings(&forward(&generate(&mut rng).request(), allowed)).is_err())
        .count();
    eprintln!("a forward-everything filter: {caught}/2000 generated requests caught");
    assert!(caught > 1000, "{caught}/2000");
}

// ---- the models themselves -------------------------------------------------------

fn raw_of<'a>(
    method: &'a str,
    path: &'a str,
    headers: &'a Headers,
    body: &'a str,
) -> RawRequest<'a> {
    RawRequest {
        method: method.as_bytes(),
        path: path.as_bytes(),
        headers,
        body: body.as_bytes(),
    }
}

fn s(v: &str) -> Option<Value> {
    Some(Value::Str(v.as_bytes().to_vec()))
}

/// The documented double readings (docs/security.md) are what the models read.
#[test]
fn models_read_the_documented_double_readings() {
    let none: Headers = Vec::new();
    let form: Headers = vec![
        ("content-type".into(), FORM.as_bytes().to_vec()),
        ("content-length".into(), b"1".to_vec()),
    ];
    let r = |s_: Stack, m, p, h, b, f| read_param(s_, &raw_of(m, p, h, b), f);
    // Repeats: Go reads the first, PHP and Rack the last.
    assert_eq!(
        r(Stack::GoFormValue, "GET", "/e?a=A&a=B", &none, "", "a"),
        s("A")
    );
    assert_eq!(r(Stack::Php, "GET", "/e?a=A&a=B", &none, "", "a"), s("B"));
    assert_eq!(r(Stack::Rack, "GET", "/e?a=A&a=B", &none, "", "a"), s("B"));
    assert_eq!(
        r(Stack::ExpressQs, "GET", "/e?a=A&a=B", &none, "", "a"),
        Some(Value::Other)
    );
    assert_eq!(r(Stack::Flask, "GET", "/e?a=A&a=B", &none, "", "a"), s("A"));
    // Form body before the query in Go, after it in PHP's $_REQUEST (POST wins).
    assert_eq!(
        r(Stack::GoFormValue, "POST", "/e?a=Q", &form, "a=B", "a"),
        s("B")
    );
    assert_eq!(r(Stack::Php, "POST", "/e?a=Q", &form, "a=B", "a"), s("B"));
    assert_eq!(r(Stack::Flask, "POST", "/e?a=Q", &form, "a=B", "a"), s("Q"));
    // PHP folds names.
    assert_eq!(
        r(Stack::Php, "GET", "/e?app.token=A", &none, "", "app_token"),
        s("A")
    );
    assert_eq!(
        r(Stack::Php, "GET", "/e?+app+token=A", &none, "", "app_token"),
        s("A")
    );
    assert_eq!(
        r(Stack::Php, "GET", "/e?app[token=A", &none, "", "app_token"),
        s("A")
    );
    assert_eq!(
        r(
            Stack::Php,
            "GET",
            "/e?app_token[]=A",
            &none,
            "",
            "app_token"
        ),
        Some(Value::Other)
    );
    assert_eq!(
        r(
            Stack::Php,
            "GET",
            "/e?app_token%00x=A",
            &none,
            "",
            "app_token"
        ),
        s("A")
    );
    // Rack and qs read `[a]` as `a`.
    assert_eq!(r(Stack::Rack, "GET", "/e?[a]=A", &none, "", "a"), s("A"));
    assert_eq!(
        r(Stack::ExpressQs, "GET", "/e?[a]=A", &none, "", "a"),
        s("A")
    );
    // `;`: Go drops the pair, old Rack and legacy Python split on it.
    assert_eq!(
        r(Stack::GoFormValue, "GET", "/e?x=1;a=A", &none, "", "a"),
        None
    );
    assert_eq!(r(Stack::Rack, "GET", "/e?x=1;a=A", &none, "", "a"), s("A"));
    assert_eq!(
        r(Stack::PythonLegacy, "GET", "/e?x=1;a=A", &none, "", "a"),
        s("A")
    );
    // Bad escapes: Go drops, PHP and Werkzeug keep, Rack errors.
    assert_eq!(
        r(Stack::GoFormValue, "GET", "/e?a=A%zz", &none, "", "a"),
        None
    );
    assert_eq!(r(Stack::Php, "GET", "/e?a=A%zz", &none, "", "a"), s("A%zz"));
    assert_eq!(
        r(Stack::Flask, "GET", "/e?a=A%zz", &none, "", "a"),
        s("A%zz")
    );
    assert_eq!(
        r(Stack::Rack, "GET", "/e?a=A%zz", &none, "", "a"),
        Some(Value::Other)
    );
    // A media-type list: PHP and Rack cut at `,`, Go and Express refuse it.
    let list: Headers = vec![(
        "content-type".into(),
        format!("{FORM}, text/plain").into_bytes(),
    )];
    assert_eq!(r(Stack::Php, "POST", "/e", &list, "a=A", "a"), s("A"));
    assert_eq!(r(Stack::Rack, "POST", "/e", &list, "a=A", "a"), s("A"));
    assert_eq!(r(Stack::GoFormValue, "POST", "/e", &list, "a=A", "a"), None);
    // No Content-Type: Rack and legacy Python read a POST body as a form.
    assert_eq!(r(Stack::Rack, "POST", "/e", &none, "a=A", "a"), s("A"));
    assert_eq!(
        r(Stack::PythonLegacy, "POST", "/e", &none, "a=A", "a"),
        s("A")
    );
    assert_eq!(r(Stack::GoFormValue, "POST", "/e", &none, "a=A", "a"), None);
    // A body on GET: Express and Rack read it.
    assert_eq!(r(Stack::ExpressQs, "GET", "/e", &form, "a=A", "a"), s("A"));
    assert_eq!(r(Stack::Rack, "GET", "/e", &form, "a=A", "a"), s("A"));
    assert_eq!(r(Stack::Php, "GET", "/e", &form, "a=A", "a"), None);
    // Multipart fields.
    let mp: Headers = vec![(
        "content-type".into(),
        b"multipart/form-data; boundary=x".to_vec(),
    )];
    let body = "--x\r\nContent-Disposition: form-data; name=\"a\"\r\n\r\nA\r\n--x--\r\n";
    assert_eq!(r(Stack::GoFormValue, "POST", "/e", &mp, body, "a"), s("A"));
    assert_eq!(r(Stack::Php, "POST", "/e", &mp, body, "a"), s("A"));
    assert_eq!(r(Stack::ExpressQs, "POST", "/e", &mp, body, "a"), None);
    // Paths.
    let p = |st, path| String::from_utf8(routed_path(st, &raw_of("GET", path, &none, ""))).unwrap();
    assert_eq!(p(Stack::GoFormValue, "/x/../event"), "/event");
    assert_eq!(p(Stack::GoFormValue, "//event"), "/event");
    assert_eq!(p(Stack::GoFormValue, "/event/"), "/event/");
    assert_eq!(p(Stack::ExpressQs, "/EVENT/"), "/event");
    assert_eq!(p(Stack::Rack, "/%65vent/"), "/event");
    assert_eq!(p(Stack::Flask, "/event/"), "/event/");
    // Headers: CGI stacks merge `_` and `-`.
    let h: Headers = vec![
        ("x-auth-token".into(), b"A".to_vec()),
        ("x_auth_token".into(), b"B".to_vec()),
    ];
    let rh = |st| read_header(st, &raw_of("GET", "/", &h, ""), "x-auth-token");
    assert_eq!(rh(Stack::GoFormValue), s("A"));
    assert_eq!(rh(Stack::Php), Some(Value::Other));
}
