//! One scenario suite, run twice: natively against the pure core and through the
//! compiled `.wasm` in the test host (the coraza-proxy-wasm way).

#![allow(dead_code)]

pub mod collectors;

use std::collections::BTreeMap;

use s2s_guard::decision::{self, Action, Forward};
use s2s_guard::request::RequestView;
use s2s_guard_host::{load_dist, Compiled, Headers, Host, HostOptions, Request, Verdict};

/// What a run observed, in a form both runners produce.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Observed {
    pub forwarded: bool,
    pub status: u16,
    pub body: Vec<u8>,
    pub response_headers: Headers,
    /// Request headers as they reached the upstream (None if answered locally).
    pub upstream: Option<Headers>,
    pub upstream_body: Option<Vec<u8>>,
    /// Request headers sent upstream before the request was refused (headers not
    /// held while the body is read): what a collector acting early has seen.
    pub early_upstream: Option<Headers>,
    /// Counters incremented by this request (name → delta), without `wasmcustom.`.
    pub counters: BTreeMap<String, i64>,
}

/// The virtual clock's start (2026-01-01T00:00:00Z), seconds.
pub const START: u64 = 1_767_225_600;

fn apply(headers: &mut Headers, f: &Forward) {
    for h in &f.remove_headers {
        headers.retain(|(k, _)| **k != **h);
    }
    for (h, v) in &f.set_headers {
        headers.retain(|(k, _)| **k != **h);
        headers.push((h.to_string(), v.clone()));
    }
    if let Some(p) = &f.path {
        for (k, v) in headers.iter_mut() {
            if k == ":path" {
                *v = p.clone();
            }
        }
    }
}

/// The adapter's flow (src/adapter/filter.rs), natively: decide in the headers, or decide
/// at the end of the body after making the header changes known.
pub fn run_native(config: &str, req: &Request) -> Observed {
    run_native_with(config, req, &mut ReplayMemory::default(), START)
}

/// The replay memory natively: a map standing in for Envoy shared data.
#[derive(Default)]
pub struct ReplayMemory(pub BTreeMap<String, Vec<u8>>);

impl ReplayMemory {
    fn settle(
        &mut self,
        policy: &s2s_guard::policy::Policy,
        d: decision::Decision,
    ) -> decision::Decision {
        let Some(p) = d.replay.clone() else { return d };
        let r = match s2s_guard::replay::insert(
            self.0.get(&p.check.key).map(|v| v.as_slice()),
            &p.check,
        ) {
            s2s_guard::replay::Insert::Write(v) => {
                self.0.insert(p.check.key.clone(), v);
                decision::ReplayResult::Recorded
            }
            s2s_guard::replay::Insert::Seen => decision::ReplayResult::Seen,
            s2s_guard::replay::Insert::Full => decision::ReplayResult::Full,
        };
        decision::settle_replay(policy, d, r)
    }
}

pub fn run_native_with(
    config: &str,
    req: &Request,
    memory: &mut ReplayMemory,
    now: u64,
) -> Observed {
    let policy = s2s_guard::config::parse(config.as_bytes()).expect("config");
    let mut headers = req.envoy_headers();
    let mut view = RequestView::from_headers(headers.clone());
    // HTTP/1.1 (the host's default): Envoy's codec drops request trailers.
    let trailers = delivered_trailers(req);
    // Envoy raises the headers without end_of_stream when a body or trailers follow
    // (trailers dropped by the HTTP/1.1 codec still make a chunked request).
    view.has_body = !req.body.is_empty() || !req.trailers.is_empty();
    let mut body_phase = view.has_body && decision::needs_body(&policy, &view);
    let hold = body_phase && policy.hold_headers_for_body;
    let mut early = None;
    let mut sent_early = None;
    if body_phase {
        let partial = decision::decide_partial(
            &policy,
            &policy.tokens,
            &view,
            &decision::Clock::new(&|| now),
        );
        if partial.early {
            body_phase = false;
            early = Some(partial);
        } else if !hold {
            if let Action::Forward(f) = &partial.action {
                apply(&mut headers, f);
            }
            if policy.strip_credential || policy.mode != s2s_guard::policy::Mode::DryRun {
                headers.retain(|(k, _)| k != "content-length");
            }
            sent_early = Some(headers.clone());
        }
    }
    let d = if let Some(d) = early {
        d
    } else if body_phase {
        if req.body.len() > policy.max_body_bytes {
            decision::body_too_large(&policy, &view)
        } else {
            // Decided at the true end of the request: the trailers are known.
            view.trailers = trailers;
            decision::decide(&policy, &view, Some(&req.body), now)
        }
    } else {
        let d = decision::decide(&policy, &view, None, now);
        // Decided at the headers; trailers, if any, are checked when they come.
        view.trailers = trailers;
        match (&d.action, view.trailers.is_empty()) {
            (Action::Forward(_), false) => {
                let settled = memory.settle(&policy, d);
                match decision::trailers_refusal(&policy, &view) {
                    // The adapter counted the header decision, then the refusal.
                    Some(mut r) => {
                        let mut counters = settled.counters.clone();
                        counters.append(&mut r.counters);
                        r.counters = counters;
                        let mut stats = settled.stats.clone();
                        stats.append(&mut r.stats);
                        r.stats = stats;
                        r
                    }
                    None => settled,
                }
            }
            _ => d,
        }
    };
    let d = memory.settle(&policy, d);
    let mut counters: BTreeMap<String, i64> = d.counters.iter().map(|c| (c.name(), 1)).collect();
    for i in &d.stats {
        *counters.entry(policy.stat_names[*i].clone()).or_default() += 1;
    }
    match d.action.clone() {
        Action::Respond(r) => {
            // As the adapter sends it: the content type first, then the others.
            let mut rh: Vec<(String, Vec<u8>)> = (r.content_type.iter())
                .map(|t| ("content-type".to_string(), t.as_bytes().to_vec()))
                .chain(r.headers.clone())
                .collect();
            if !r.body.is_empty() {
                rh.push((
                    "content-length".into(),
                    r.body.len().to_string().into_bytes(),
                ));
            }
            Observed {
                forwarded: false,
                status: r.status,
                body: r.body.to_vec(),
                response_headers: rh,
                upstream: None,
                upstream_body: None,
                early_upstream: sent_early,
                counters,
            }
        }
        Action::Forward(f) => {
            let mut body = req.body.clone();
            if hold {
                apply(&mut headers, &f);
                if let Some(b) = decision::final_body(&d, &req.body, true) {
                    body = b;
                    headers.retain(|(k, _)| k != "content-length");
                    headers.push(("content-length".into(), body.len().to_string().into_bytes()));
                }
            } else if body_phase {
                if policy.mode != s2s_guard::policy::Mode::DryRun {
                    if let Some(b) = decision::final_body(&d, &req.body, false) {
                        body = b;
                    }
                }
            } else {
                apply(&mut headers, &f);
            }
            let mut rh = vec![("content-type".to_string(), b"text/plain".to_vec())];
            rh.extend(f.response_headers.iter().cloned());
            Observed {
                forwarded: true,
                status: 200,
                body: b"OK".to_vec(),
                response_headers: rh,
                upstream: Some(headers),
                upstream_body: Some(body),
                early_upstream: None,
                counters,
            }
        }
    }
}

/// Counter families that break down another family by a configured name (route,
/// app): the scenario tables do not list them; every case checks instead that they
/// add up to what they break down ([`without_breakdowns`]).
pub const BREAKDOWNS: [&str; 2] = ["s2s_guard.requests_by_route.", "s2s_guard.per_app."];

/// `counters` without the [`BREAKDOWNS`] families, once they are checked against
/// the families they break down: for every outcome, the decisions by route add up
/// to the decisions by scope (`requests_by_route` and `requests` count the same
/// decisions), and the shadow decisions by app to those by outcome.
pub fn without_breakdowns(
    counters: &BTreeMap<String, i64>,
) -> Result<BTreeMap<String, i64>, String> {
    let sum = |prefix: &str, outcome: &str, suffix: &str| -> i64 {
        counters
            .iter()
            .filter(|(k, _)| {
                k.strip_prefix(prefix).is_some_and(|rest| match suffix {
                    // requests.outcome.<o>.scope.<s>
                    "" => rest.split('.').next() == Some(outcome),
                    // requests_by_route.route.<r>.outcome.<o>
                    _ => rest.ends_with(&format!("{suffix}{outcome}")),
                })
            })
            .map(|(_, v)| *v)
            .sum()
    };
    for o in s2s_guard::policy::Outcome::ALL {
        let by_scope = sum("s2s_guard.requests.outcome.", o.name(), "");
        let by_route = sum("s2s_guard.requests_by_route.route.", o.name(), ".outcome.");
        if by_scope != by_route {
            return Err(format!(
                "decisions {}: {by_scope} by scope, {by_route} by route: {counters:?}",
                o.name()
            ));
        }
    }
    let total = |prefix: &str, suffix: &str| -> i64 {
        counters
            .iter()
            .filter(|(k, _)| k.starts_with(prefix) && k.ends_with(suffix))
            .map(|(_, v)| *v)
            .sum()
    };
    let (shadow, by_app) = (
        total("s2s_guard.shadow.outcome.", ""),
        total("s2s_guard.per_app.app.", ".shadow"),
    );
    if shadow != by_app {
        return Err(format!(
            "shadow decisions: {shadow} by outcome, {by_app} by app: {counters:?}"
        ));
    }
    Ok(counters
        .iter()
        .filter(|(k, _)| !BREAKDOWNS.iter().any(|b| k.starts_with(b)))
        .map(|(k, v)| (k.clone(), *v))
        .collect())
}

/// A host per configuration, reused across cases (configuration once, as in Envoy).
pub struct WasmRunner {
    compiled: Compiled,
    hosts: BTreeMap<String, Host>,
}

impl WasmRunner {
    pub fn new() -> WasmRunner {
        WasmRunner {
            compiled: load_dist("s2s-guard.wasm"),
            hosts: BTreeMap::new(),
        }
    }

    pub fn host(&mut self, config: &str) -> &mut Host {
        let compiled = &self.compiled;
        self.hosts.entry(config.to_string()).or_insert_with(|| {
            Host::new(
                compiled,
                HostOptions {
                    workers: 2,
                    plugin_config: config.as_bytes().to_vec(),
                    allow_on_headers_stop_iteration: config
                        .contains(r#""hold_headers_for_body": true"#),
                    ..HostOptions::default()
                },
            )
            .unwrap_or_else(|e| panic!("configuration rejected: {e}"))
        })
    }

    pub fn run(&mut self, config: &str, req: &Request) -> Observed {
        let host = self.host(config);
        let before = host.metrics();
        let o = host.send(req.clone());
        for w in 0..host.workers() {
            assert!(
                host.worker_failure(w).is_none(),
                "worker {w} trapped: {:?}",
                host.worker_failure(w)
            );
        }
        let after = host.metrics();
        let counters = after
            .iter()
            .filter_map(|(k, v)| {
                let d = v - before.get(k).copied().unwrap_or(0);
                (d != 0).then(|| (k.trim_start_matches("wasmcustom.").to_string(), d))
            })
            .collect();
        Observed {
            forwarded: o.verdict == Verdict::Forwarded,
            status: o.status,
            body: o.response_body.clone(),
            response_headers: o.response_headers.clone(),
            upstream: o.upstream.as_ref().map(|u| u.headers.clone()),
            upstream_body: o.upstream.as_ref().map(|u| u.body.clone()),
            early_upstream: o.early_upstream.clone(),
            counters,
        }
    }
}

impl Default for WasmRunner {
    fn default() -> Self {
        WasmRunner::new()
    }
}

/// The request trailers Envoy hands the filter: none over HTTP/1.1 (the codec drops
/// them), all of them over HTTP/2.
pub fn delivered_trailers(req: &Request) -> Headers {
    req.delivered_trailers()
}

/// A refused request's headers that went upstream before the refusal (headers not
/// held while the body is read) must carry no query a collector could act on: at
/// most the flag `s2s=0|1` (docs/security.md, `query_with_body`), unless they were
/// verified (an identity header: decided at the headers, refused by a later
/// trailer). `None` if so.
pub fn early_query_problem(o: &Observed) -> Option<String> {
    let early = o.early_upstream.as_ref()?;
    if s2s_guard_host::header_value(early, "x-s2s-guard-token-id").is_some() {
        // Verified at its headers and forwarded, refused only later (a trailer
        // naming a credential header): what went early was authenticated.
        return None;
    }
    let path = s2s_guard_host::header_value(early, ":path").unwrap_or_default();
    let query = path.splitn(2, |&b| b == b'?').nth(1).unwrap_or_default();
    let actionable = query
        .split(|&b| b == b'&')
        .any(|pair| !pair.is_empty() && pair != b"s2s=1" && pair != b"s2s=0");
    actionable.then(|| {
        format!(
            "refused after its headers went upstream with the query of {:?}",
            String::from_utf8_lossy(path)
        )
    })
}
