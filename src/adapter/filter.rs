//! The proxy-wasm adapter: the only code that talks to the host. It reads the
//! request once, asks the pure core for a decision and applies it.
//!
//! Envoy constraints it is written around (FACTS.md §5):
//! - request headers can only be read or changed in `on_http_request_headers`; after
//!   the headers are continued, header calls fail (and the SDK would panic), so
//!   everything from the headers is captured there;
//! - pausing in the headers also holds the body back, so a route that reads the
//!   form body continues the headers (after the changes it can already make) and
//!   decides at the end of the body, answering locally if it must.

use std::cell::Cell;
use std::rc::Rc;
use std::time::UNIX_EPOCH;

use log::{error, info, warn};
use proxy_wasm::hostcalls;
use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{Action, ContextType, MetricType};

use crate::config;
use crate::decision::{self, Action as Act, Clock, Decision, Enforcement, Forward, ReplayResult};
use crate::fetcher::{Distribution, Gate};
use crate::metrics::Counter;
use crate::policy::{Mode, Policy};
use crate::replay;
use crate::request::RequestView;
use crate::token::{self, Lookup, Verified};

/// Metric ids, defined once per VM (Envoy's stats are process-wide by name).
#[derive(Default)]
struct Metrics {
    ids: Vec<u32>,
    /// The replay fill gauge, and this worker's reading behind it.
    replay_fill: u32,
    fill: Cell<replay::Fill>,
}

impl Metrics {
    fn define() -> Metrics {
        let ids = Counter::all()
            .into_iter()
            .map(|c| hostcalls::define_metric(MetricType::Counter, &c.name()).unwrap_or(0))
            .collect();
        let replay_fill =
            hostcalls::define_metric(MetricType::Gauge, crate::metrics::REPLAY_FILL_PERCENT)
                .unwrap_or(0);
        Metrics {
            ids,
            replay_fill,
            fill: Cell::default(),
        }
    }

    /// An insert into the replay memory found its key with `live` of `per_key`
    /// entries: records the fill gauge when this worker has a reading due.
    fn replay_observed(&self, live: usize, per_key: usize) {
        let mut f = self.fill.get();
        let changed = f.observe(live, per_key);
        self.fill.set(f);
        if let (Some(v), true) = (changed, self.replay_fill != 0) {
            let _ = hostcalls::record_metric(self.replay_fill, v);
        }
    }

    fn increment(&self, c: Counter) {
        if let Some(&id) = self.ids.get(c.index()) {
            if id != 0 {
                // A failed increment is not worth failing a request for.
                let _ = hostcalls::increment_metric(id, 1);
            }
        }
    }
}

/// A compiled policy with the ids of its per-app statistics series.
struct Loaded {
    policy: Policy,
    stat_ids: Vec<u32>,
}

impl Loaded {
    fn new(policy: Policy) -> Rc<Loaded> {
        let stat_ids = policy
            .stat_names
            .iter()
            .map(|n| hostcalls::define_metric(MetricType::Counter, n).unwrap_or(0))
            .collect();
        Rc::new(Loaded { policy, stat_ids })
    }
}

/// Per plugin configuration: the compiled policy, shared by every request.
pub struct Root {
    /// The plugin configuration, kept to rebuild the policy with each new token set.
    config: Vec<u8>,
    /// The policy from the configuration alone (routes, inline tokens).
    inline: Option<Rc<Loaded>>,
    /// The policy in force; swapped in one step when a new token set is loaded.
    loaded: Option<Rc<Loaded>>,
    metrics: Rc<Metrics>,
    distribution: Option<Distribution>,
}

impl Root {
    pub fn new() -> Root {
        Root {
            config: Vec::new(),
            inline: None,
            loaded: None,
            metrics: Rc::new(Metrics::default()),
            distribution: None,
        }
    }
}

impl Default for Root {
    fn default() -> Self {
        Root::new()
    }
}

impl Context for Root {
    fn on_http_call_response(
        &mut self,
        token: u32,
        _headers: usize,
        body_size: usize,
        _trailers: usize,
    ) {
        let metrics = self.metrics.clone();
        let count = move |c: Counter| metrics.increment(c);
        let current = self.loaded.as_ref().map(|l| &l.policy);
        let Some(d) = self.distribution.as_mut() else {
            return;
        };
        if !d.owns(token) {
            return;
        }
        if let Some(p) = d.on_response(body_size, &self.config, current, &count) {
            self.loaded = Some(Loaded::new(p));
        }
    }
}

impl RootContext for Root {
    fn on_tick(&mut self) {
        let metrics = self.metrics.clone();
        let count = move |c: Counter| metrics.increment(c);
        let current = self.loaded.as_ref().map(|l| &l.policy);
        let Some(d) = self.distribution.as_mut() else {
            return;
        };
        if let Some(p) = d.tick(&self.config, current, &count) {
            self.loaded = Some(Loaded::new(p));
        }
    }

    fn on_configure(&mut self, _size: usize) -> bool {
        if self.metrics.ids.is_empty() {
            self.metrics = Rc::new(Metrics::define());
        }
        let bytes = self.get_plugin_configuration().unwrap_or_default();
        match config::parse(&bytes) {
            Ok(policy) => {
                // Lines below the configured level are neither formatted nor sent.
                log::set_max_level(policy.log_level);
                info!(
                    "s2s-guard: configuration loaded: {} routes, {} tokens, mode {:?}",
                    policy.routes.len(),
                    policy.tokens.len(),
                    policy.mode
                );
                for w in &policy.warnings {
                    warn!("s2s-guard: {w}");
                }
                let source = policy.source.clone();
                let inline = Loaded::new(policy);
                self.config = bytes;
                self.distribution = source.map(Distribution::new);
                self.loaded = match &self.distribution {
                    // A token source: the inline tokens serve only as a bootstrap set.
                    Some(_)
                        if !inline
                            .policy
                            .source
                            .as_ref()
                            .is_some_and(|s| s.before_first_inline) =>
                    {
                        None
                    }
                    _ => Some(inline.clone()),
                };
                self.inline = Some(inline);
                if let Some(d) = &self.distribution {
                    self.set_tick_period(d.tick_period());
                    // Load what another worker or a singleton already published, and
                    // start fetching if this VM is the fetcher.
                    self.on_tick();
                }
                self.metrics.increment(Counter::ConfigLoaded);
                true
            }
            Err(e) => {
                // The message names a field, never a secret value.
                error!("s2s-guard: configuration rejected: {e}");
                self.metrics.increment(Counter::ConfigRejected);
                false
            }
        }
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }

    fn create_http_context(&self, _context_id: u32) -> Option<Box<dyn HttpContext>> {
        let gate = self
            .distribution
            .as_ref()
            .map_or(Gate::Open, Distribution::gate);
        // Large-set mode, once a set is in force: tokens are in shared data.
        let shared_lookup = self
            .distribution
            .as_ref()
            .filter(|d| d.set_in_force())
            .and_then(|d| {
                d.shared_prefix()
                    .map(|p| (p.to_string(), d.publish_key(), d.in_force_order()))
            });
        Some(Box::new(Stream {
            loaded: self.loaded.clone(),
            inline: self.inline.clone(),
            gate,
            shared_lookup,
            metrics: self.metrics.clone(),
            view: None,
            decided: None,
            body_size: 0,
            announced_empty: false,
            uncounted: None,
            body_held: false,
            response_headers: Vec::new(),
        }))
    }
}

/// One HTTP request. It keeps the policy in force when it started: a swap during
/// the request never changes how it is decided.
struct Stream {
    loaded: Option<Rc<Loaded>>,
    /// Routes, for requests that arrive while no token set can be used.
    inline: Option<Rc<Loaded>>,
    gate: Gate,
    /// Large-set mode: look tokens up in shared data under this prefix (records
    /// sealed with this key when the source signs).
    /// Only records of the set in force or a newer one count.
    shared_lookup: Option<SharedTokens>,
    metrics: Rc<Metrics>,
    /// Kept when the decision waits for the body.
    view: Option<RequestView>,
    /// A request with a body decided at its headers, kept for its trailers.
    decided: Option<RequestView>,
    /// Bytes of body buffered so far (Envoy reports the buffered total).
    body_size: usize,
    /// Decided at its headers as bodiless from its framing, before the host said
    /// the stream ended: a body with bytes is refused.
    announced_empty: bool,
    /// A request forwarded at its headers whose body or trailers are still to
    /// come: counted when it ends, unless they refuse it (one request, one outcome).
    uncounted: Option<Decision>,
    /// The last body callback paused (buffered the body): in the trailers the
    /// body can still be changed (Envoy's `buffering_request_body_`).
    body_held: bool,
    /// Headers to add to the response (CORS).
    response_headers: Vec<(String, Vec<u8>)>,
}

/// Large-set mode: the records' prefix, the key that seals them (with a bundle
/// key) and the order of the set in force.
type SharedTokens = (String, Option<Rc<Vec<u8>>>, (u64, u64));

/// Tokens looked up in shared data by digest (large-set mode).
struct SharedLookup<'a> {
    prefix: &'a str,
    /// With a bundle key: records must carry the fetcher's tag.
    key: Option<&'a [u8]>,
    /// The order of the set in force: a record published for an older set (a
    /// revoked token's, written back) is not a token.
    in_force: (u64, u64),
}

impl Lookup for SharedLookup<'_> {
    fn verify(&self, presented: &[u8]) -> Option<Verified<'_>> {
        let key = format!("{}{}", self.prefix, hex::encode(token::digest(presented)));
        let (value, _) = hostcalls::get_shared_data(&key).ok()?;
        let value = value?;
        // A record another plugin wrote into the shared namespace is not ours.
        let record = crate::distribution::open_record(self.key, &key, &value)?;
        let record = crate::distribution::record_since(self.in_force, record)?;
        // The key is the digest of the presented secret: finding a record is the
        // match (the lookup's timing depends only on that digest).
        let (t, kind) = token::decode_record(record)?;
        Some(Verified::owned(t, kind))
    }
}

/// Compare-and-swap attempts on a replay key before giving up (counted as full).
const REPLAY_ATTEMPTS: usize = 8;

/// The CAS a replay key is first written with. Envoy ignores a CAS on a key that
/// does not exist and writes any value over one that does when the CAS is 0: two
/// workers that both read a key as missing would both write it, each accepting
/// the same signature. With a CAS no existing key has (Envoy hands CAS values out
/// from one counter), the write creates a missing key and fails on one another
/// worker created meanwhile (then read again, and the signature found).
const CREATE_ONLY_CAS: u32 = u32::MAX;

impl Context for Stream {}

impl Stream {
    /// Runs `f` with the token lookup in force: shared data in large-set mode, the
    /// policy's own store otherwise.
    fn with_tokens<R>(&self, policy: &Policy, f: impl FnOnce(&dyn Lookup) -> R) -> R {
        match &self.shared_lookup {
            Some((prefix, key, in_force)) => f(&SharedLookup {
                prefix,
                key: key.as_deref().map(Vec::as_slice),
                in_force: *in_force,
            }),
            None => f(&policy.tokens),
        }
    }

    fn now(&self) -> u64 {
        self.get_current_time()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs())
    }

    /// A refusal found after the request was forwarded at its headers (its body
    /// or trailers): it replaces the uncounted decision, and answers if it says so.
    fn refused_late(&mut self, d: &Decision) -> Option<Action> {
        self.uncounted = None;
        self.count(d);
        self.log(d);
        match &d.action {
            Act::Respond(r) => {
                self.respond(r);
                Some(Action::Pause)
            }
            Act::Forward(_) => None,
        }
    }

    fn count_uncounted(&mut self) {
        if let Some(d) = self.uncounted.take() {
            self.count(&d);
        }
    }

    fn count(&self, d: &Decision) {
        for c in &d.counters {
            self.metrics.increment(*c);
        }
        // The policy that decided: the inline one while no token set is in force.
        if let Some(l) = self.loaded.as_ref().or(self.inline.as_ref()) {
            for i in &d.stats {
                if let Some(&id) = l.stat_ids.get(*i) {
                    let _ = hostcalls::increment_metric(id, 1);
                }
            }
        }
    }

    /// Checks a verified signature against the replay memory shared by all workers
    /// (get, then set with the CAS read, or [`CREATE_ONLY_CAS`] on a key nobody
    /// wrote yet; retried when another worker wrote first).
    fn settle(&self, policy: &Policy, d: Decision) -> Decision {
        let Some(pending) = &d.replay else { return d };
        let mut result = ReplayResult::Full;
        // A host with strict CAS (Kong's ngx_wasm_module: a missing key's CAS is
        // 0, and a write with 0 only creates) refuses the create-only CAS on a key
        // that is still missing: then 0 is its create-only write.
        let mut strict_host = false;
        for _ in 0..REPLAY_ATTEMPTS {
            let (value, cas) = match hostcalls::get_shared_data(&pending.check.key) {
                Ok(v) => v,
                Err(_) => break,
            };
            match replay::insert(value.as_deref(), &pending.check) {
                replay::Insert::Seen => {
                    result = ReplayResult::Seen;
                    break;
                }
                replay::Insert::Full => {
                    let per_key = pending.check.per_key;
                    self.metrics.replay_observed(per_key, per_key);
                    break;
                }
                replay::Insert::Write(v) => {
                    let missing = cas.is_none();
                    let cas = match cas {
                        Some(c) => Some(c),
                        None if strict_host => None,
                        None => Some(CREATE_ONLY_CAS),
                    };
                    match hostcalls::set_shared_data(&pending.check.key, Some(&v), cas) {
                        Ok(()) => {
                            let per_key = pending.check.per_key;
                            self.metrics.replay_observed(replay::entries(&v), per_key);
                            result = ReplayResult::Recorded;
                            break;
                        }
                        Err(_) => {
                            // Still missing on the next read: a strict-CAS host.
                            if missing
                                && matches!(
                                    hostcalls::get_shared_data(&pending.check.key),
                                    Ok((None, _))
                                )
                            {
                                strict_host = true;
                            }
                            continue;
                        }
                    }
                }
            }
        }
        decision::settle_replay(policy, d, result)
    }

    /// Logs a decision line, formatted only when the level lets it through.
    fn log(&self, d: &Decision) {
        if log::log_enabled!(log::Level::Info) {
            if let Some(line) = decision::log_line(d) {
                info!("{line}");
            }
        }
    }

    /// Applies header-side changes (only valid in `on_http_request_headers`).
    fn apply_headers(&self, f: &Forward) {
        for h in &f.remove_headers {
            self.set_http_request_header(h, None);
        }
        for (h, v) in &f.set_headers {
            self.set_http_request_header_bytes(h, Some(v));
        }
        if let Some(p) = &f.path {
            self.set_http_request_header_bytes(":path", Some(p));
        }
    }

    fn respond(&self, r: &decision::Respond) {
        let headers: Vec<(&str, &str)> = (r.content_type.as_deref())
            .map(|t| ("content-type", t))
            .into_iter()
            .chain(
                (r.headers.iter())
                    .filter_map(|(k, v)| std::str::from_utf8(v).ok().map(|v| (k.as_str(), v))),
            )
            .collect();
        let body = (!r.body.is_empty()).then_some(&r.body[..]);
        self.send_http_response(r.status as u32, headers, body);
    }

    /// No usable token set (none yet, or stale): requests on configured routes get
    /// 503 with `Retry-After` ("cannot verify now", not a bad credential); others pass.
    fn closed_gate(&self) -> Option<Action> {
        let inline = self.inline.as_ref()?;
        let view = RequestView::from_headers(self.get_http_request_headers_bytes());
        if let Ok(r) = decision::resolve(&inline.policy, &view) {
            if r.routing == crate::policy::Routing::Unknown {
                return None;
            }
        }
        let (retry, counter, why) = match self.gate {
            Gate::NotReady { retry_after_s } => (
                retry_after_s,
                Counter::SourceNotReady,
                "no token set loaded yet",
            ),
            Gate::Stale { retry_after_s } => {
                (retry_after_s, Counter::SourceStale, "token set is stale")
            }
            Gate::Expired { retry_after_s } => {
                (retry_after_s, Counter::SourceStale, "token set has expired")
            }
            Gate::Open => return None,
        };
        self.metrics.increment(counter);
        warn!("s2s-guard: 503: {why}");
        let retry = retry.to_string();
        self.send_http_response(
            503,
            vec![
                ("content-type", "text/plain; charset=utf-8"),
                ("retry-after", &retry),
            ],
            Some(b"Cannot verify credentials now; retry later"),
        );
        Some(Action::Pause)
    }

    fn fail_unconfigured(&self) -> Action {
        warn!("s2s-guard: no configuration in force; failing closed");
        self.send_http_response(
            503,
            vec![("content-type", "text/plain")],
            Some(b"s2s-guard: not configured"),
        );
        Action::Pause
    }
}

impl Stream {
    /// Decides a request whose body (and trailers, if any) are complete: at the end
    /// of the body, or in the trailers. `size` is the buffered body's length.
    fn decide_buffered(&mut self, size: usize, trailers_phase: bool) -> Action {
        let (Some(loaded), Some(view)) = (self.loaded.clone(), self.view.take()) else {
            return Action::Continue;
        };
        let policy = &loaded.policy;
        let body = self.get_http_request_body(0, size).unwrap_or_default();
        let read = || self.now();
        let clock = Clock::new(&read);
        let d = self.with_tokens(policy, |t| {
            decision::decide_with(policy, t, &view, Some(&body), &clock)
        });
        let d = self.settle(policy, d);
        let held = policy.hold_headers_for_body;
        let new_body = match &d.action {
            Act::Forward(_) if held || policy.mode != Mode::DryRun => {
                decision::final_body(&d, &body, held)
            }
            _ => None,
        };
        // In the trailers, a body can be changed only if one is buffered (Envoy:
        // the last body callback paused); else the host refuses, and the SDK
        // would panic on its answer.
        let (d, new_body) = if new_body.is_some() && trailers_phase && !self.body_held {
            (decision::body_unchangeable(policy, &view, d), None)
        } else {
            (d, new_body)
        };
        self.count(&d);
        self.log(&d);
        match &d.action {
            Act::Respond(r) => {
                self.respond(r);
                Action::Pause
            }
            Act::Forward(f) => {
                if held {
                    // The headers were held: every change, headers included, applies now.
                    self.apply_headers(f);
                }
                if let Some(b) = new_body {
                    self.set_http_request_body(0, size, &b);
                    if held {
                        self.set_http_request_header("content-length", Some(&b.len().to_string()));
                    }
                }
                if trailers_phase {
                    self.strip_owned_trailers(policy);
                    if d.enforcement == Enforcement::Flagged && policy.strip_credential {
                        // A flagged request carries no credential, trailers included.
                        for (name, _) in self.get_http_request_trailers_bytes() {
                            if decision::credential_header(policy, &name) {
                                self.set_http_request_trailer(&name, None);
                            }
                        }
                    }
                }
                self.response_headers = f.response_headers.clone();
                Action::Continue
            }
        }
    }

    /// Request trailers named like a header the filter owns never reach the collector.
    fn strip_owned_trailers(&self, policy: &Policy) {
        for (name, _) in self.get_http_request_trailers_bytes() {
            if decision::owned_headers(policy)
                .iter()
                .any(|o| crate::reading::folds_onto(&name, o))
            {
                self.set_http_request_trailer(&name, None);
            }
        }
    }
}

impl HttpContext for Stream {
    fn on_http_request_headers(&mut self, _n: usize, end_of_stream: bool) -> Action {
        if self.gate != Gate::Open {
            if let Some(a) = self.closed_gate() {
                return a;
            }
        }
        // No token set in force (only possible with a closed gate): the inline policy
        // decides requests outside the routes (they pass).
        let Some(loaded) = self.loaded.clone().or_else(|| self.inline.clone()) else {
            return self.fail_unconfigured();
        };
        let policy = &loaded.policy;
        let mut view = RequestView::from_headers(self.get_http_request_headers_bytes());
        view.has_body = !end_of_stream && !crate::reading::announced_empty(&view);
        self.announced_empty = !end_of_stream && !view.has_body;
        let read = || self.now();
        let clock = Clock::new(&read);
        if view.has_body && decision::needs_body(policy, &view) {
            let partial = self.with_tokens(policy, |t| {
                decision::decide_partial(policy, t, &view, &clock)
            });
            if partial.early {
                // Refused whatever the body holds: answer before anything goes upstream.
                self.count(&partial);
                self.log(&partial);
                if let Act::Respond(r) = &partial.action {
                    self.respond(r);
                    return Action::Pause;
                }
                if let Act::Forward(f) = &partial.action {
                    self.apply_headers(f);
                }
                return Action::Continue;
            }
            self.view = Some(view);
            if policy.hold_headers_for_body {
                // Envoy runs with allow_on_headers_stop_iteration: hold the headers,
                // read the body, then decide and change everything at once.
                return Action::Pause;
            }
            // Make the header changes known now (never identity headers: those come
            // only from the final decision); decide when the body is complete.
            if let Act::Forward(f) = &partial.action {
                self.apply_headers(f);
            }
            if policy.strip_credential || policy.mode != Mode::DryRun {
                // The body may change length; Envoy then re-frames it.
                self.set_http_request_header("content-length", None);
            }
            return Action::Continue;
        }
        let d = self.with_tokens(policy, |t| {
            decision::decide_with(policy, t, &view, None, &clock)
        });
        let d = self.settle(policy, d);
        self.log(&d);
        match &d.action {
            Act::Respond(r) => {
                self.count(&d);
                self.respond(r);
                Action::Pause
            }
            Act::Forward(f) => {
                self.apply_headers(f);
                self.response_headers = f.response_headers.clone();
                if end_of_stream {
                    self.count(&d);
                } else {
                    // A body or trailers may still come: they are checked then,
                    // and the request counted once its outcome is known.
                    self.decided = Some(view);
                    self.uncounted = Some(d);
                }
                Action::Continue
            }
        }
    }

    fn on_http_request_body(&mut self, size: usize, end_of_stream: bool) -> Action {
        // Set again only when this callback buffers (pauses), as Envoy does.
        self.body_held = false;
        if self.announced_empty && size > 0 {
            // Decided as bodiless from its framing: bytes now are a second reading.
            self.announced_empty = false;
            let refusal = self
                .loaded
                .clone()
                .or_else(|| self.inline.clone())
                .zip(self.decided.as_ref())
                .and_then(|(l, v)| decision::unannounced_body(&l.policy, v).map(|d| (l, d)));
            if let Some((_, d)) = refusal {
                self.decided = None;
                if let Some(a) = self.refused_late(&d) {
                    return a;
                }
            }
        }
        if end_of_stream {
            self.count_uncounted();
        }
        let (Some(loaded), Some(view)) = (self.loaded.clone(), self.view.as_ref()) else {
            return Action::Continue;
        };
        let policy = &loaded.policy;
        self.body_size = size;
        if size > policy.max_body_bytes {
            let d = decision::body_too_large(policy, view);
            self.view = None;
            self.count(&d);
            self.log(&d);
            return match &d.action {
                Act::Respond(r) => {
                    self.respond(r);
                    Action::Pause
                }
                Act::Forward(f) => {
                    if policy.hold_headers_for_body {
                        self.apply_headers(f);
                    }
                    Action::Continue
                }
            };
        }
        if !end_of_stream {
            // Trailers may follow the last chunk (HTTP/2): the decision waits for
            // the true end of the request.
            self.body_held = true;
            return Action::Pause;
        }
        self.decide_buffered(size, false)
    }

    fn on_http_request_trailers(&mut self, _n: usize) -> Action {
        let Some(loaded) = self.loaded.clone().or_else(|| self.inline.clone()) else {
            return Action::Continue;
        };
        if let Some(mut view) = self.decided.take() {
            view.trailers = self.get_http_request_trailers_bytes();
            if let Some(d) = decision::trailers_refusal(&loaded.policy, &view) {
                if let Some(a) = self.refused_late(&d) {
                    return a;
                }
            }
        }
        self.count_uncounted();
        if self.view.is_some() {
            let trailers = self.get_http_request_trailers_bytes();
            if let Some(view) = self.view.as_mut() {
                view.trailers = trailers;
            }
            let size = self.body_size;
            return self.decide_buffered(size, true);
        }
        self.strip_owned_trailers(&loaded.policy);
        Action::Continue
    }

    fn on_log(&mut self) {
        // The stream ended without the host reporting the request's end (a reset):
        // its headers went upstream, so it counts as decided then.
        self.count_uncounted();
    }

    fn on_http_response_headers(&mut self, _n: usize, _end_of_stream: bool) -> Action {
        for (k, v) in &self.response_headers {
            self.set_http_response_header_bytes(k, Some(v));
        }
        Action::Continue
    }
}
