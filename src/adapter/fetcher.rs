//! The host side of token distribution (Wasm only): fetch from the HTTP token
//! source when this VM is the fetcher, publish into shared data, and notice and
//! load new sets on every worker. The decisions are in `distribution.rs`.

use std::rc::Rc;
use std::time::{Duration, UNIX_EPOCH};

use log::{info, warn};
use proxy_wasm::hostcalls;
use proxy_wasm::types::{BufferType, MapType, MetricType};

use crate::config;
use crate::distribution::{self, Failure, Keys, Response, Role, Source, VersionRecord};
use crate::metrics::Counter;
use crate::policy::Policy;

/// Whether requests can be decided now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Gate {
    Open,
    /// No token set yet (and no inline bootstrap set): 503.
    NotReady {
        retry_after_s: u64,
    },
    /// The set is older than the staleness budget: 503.
    Stale {
        retry_after_s: u64,
    },
    /// The set is past its own `expires`: 503 (counted as stale).
    Expired {
        retry_after_s: u64,
    },
}

/// A token source and this VM's view of it.
pub struct Distribution {
    src: Source,
    keys: Keys,
    /// This VM's id for the lease.
    me: u64,
    holder: bool,
    /// The set this VM has loaded.
    in_force: Option<VersionRecord>,
    /// The newest record seen in shared data (its confirmation time is the set's age).
    seen: Option<VersionRecord>,
    pending: Option<u32>,
    next_fetch_ns: u64,
    failures: u32,
    last_modified: Option<Vec<u8>>,
    etag: Option<Vec<u8>>,
    gauges: [u32; 3],
    /// The set in force's `expires` (Unix seconds): past it, requests on its routes
    /// are refused whatever the source answers.
    expires_s: Option<u64>,
    /// Large-set mode, fetcher only: digests this VM published as token records
    /// (32 bytes a token, no map: the fetcher's peak stays within twice the set).
    published: Option<Vec<[u8; 32]>>,
    /// Tokens in the set in force (readers in large-set mode do not hold them).
    token_count: u64,
    /// With a bundle key: the key that signs what this source publishes.
    publish_key: Option<Rc<Vec<u8>>>,
    /// The digest of a published set this VM refused: not re-read every tick, and
    /// never taken for a set in force.
    refused: Option<[u8; 32]>,
}

fn constant_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && bool::from(subtle::ConstantTimeEq::ct_eq(a, b))
}

fn now_ns() -> u64 {
    hostcalls::get_current_time()
        .ok()
        .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
        .map_or(0, |d| d.as_nanos() as u64)
}

/// This VM's id for the fetcher lease: one per VM, shared by its root contexts, so
/// a configuration update (a new root context in the same VM) keeps the lease.
fn vm_id() -> u64 {
    static ID: std::sync::OnceLock<u64> = std::sync::OnceLock::new();
    *ID.get_or_init(|| {
        // Seeded from the host's randomness (WASI random_get): distinct per VM.
        use std::hash::{BuildHasher, Hasher};
        let mut h = std::collections::hash_map::RandomState::new().build_hasher();
        h.write_u64(now_ns());
        h.finish() | 1
    })
}

impl Distribution {
    pub fn new(src: Source) -> Distribution {
        let keys = distribution::keys(&src.name);
        let src_publish_key = src
            .bundle_key
            .as_deref()
            .map(|k| Rc::new(distribution::publish_key(k, &src.name)));
        let gauges = ["version", "age_seconds", "tokens"].map(|g| {
            hostcalls::define_metric(MetricType::Gauge, &format!("s2s_guard.source.{g}"))
                .unwrap_or(0)
        });
        Distribution {
            src,
            keys,
            me: vm_id(),
            holder: false,
            in_force: None,
            seen: None,
            pending: None,
            next_fetch_ns: 0,
            failures: 0,
            last_modified: None,
            etag: None,
            gauges,
            expires_s: None,
            published: None,
            token_count: 0,
            publish_key: src_publish_key,
            refused: None,
        }
    }

    /// Large-set mode: the key that seals token records, if the source signs.
    pub fn publish_key(&self) -> Option<Rc<Vec<u8>>> {
        self.publish_key.clone()
    }

    pub fn set_in_force(&self) -> bool {
        self.in_force.is_some()
    }

    /// The order `(epoch, version)` of the set in force here: token records of an
    /// older set are refused.
    pub fn in_force_order(&self) -> (u64, u64) {
        self.in_force.map_or((0, 0), |r| r.version.order())
    }

    fn key(&self) -> Option<&[u8]> {
        self.publish_key.as_deref().map(Vec::as_slice)
    }

    /// Large-set mode: the shared-data prefix of token records.
    pub fn shared_prefix(&self) -> Option<&str> {
        self.src
            .shared_lookup
            .then_some(self.keys.token_prefix.as_str())
    }

    /// Large-set mode: writes a record per secret digest, bound to the set's order
    /// (`order`), and empties the records of digests this VM published before that
    /// are no longer in the set (shared data has no delete). Records another
    /// fetcher published for an older set stay, refused by their order.
    fn publish_records(&mut self, policy: &Policy, order: (u64, u64)) {
        let previous = self.published.take().unwrap_or_default();
        let mut now_published = Vec::with_capacity(policy.tokens.len());
        for (digest, token, kind) in policy.tokens.entries() {
            let key = format!("{}{}", self.keys.token_prefix, hex::encode(digest));
            let sealed = distribution::seal_record(
                self.key(),
                &key,
                &distribution::record_at(order, &crate::token::encode_record(&token, kind)),
            );
            let _ = hostcalls::set_shared_data(&key, Some(&sealed), None);
            now_published.push(digest);
        }
        // Records of digests no longer in the set are emptied (shared data has no
        // delete), looked up in the new store's index.
        for gone in previous
            .iter()
            .filter(|d| !policy.tokens.contains_digest(d))
        {
            let key = format!("{}{}", self.keys.token_prefix, hex::encode(gone));
            let _ = hostcalls::set_shared_data(&key, Some(b""), None);
        }
        self.published = Some(now_published);
    }

    /// How often `tick` should run: a quarter of the period, so a new set reaches
    /// every worker well within one period.
    pub fn tick_period(&self) -> Duration {
        Duration::from_millis((self.src.period_ms / 4).max(50))
    }

    pub fn gate(&self) -> Gate {
        let retry_after_s = self.src.retry_after_s;
        if self.in_force.is_none() && !self.src.before_first_inline {
            return Gate::NotReady { retry_after_s };
        }
        // The set's own end (signed with a bundle key): no answer of the source, a
        // 304 included, keeps it in force past it.
        if self
            .expires_s
            .is_some_and(|e| now_ns() / 1_000_000_000 >= e)
        {
            return Gate::Expired { retry_after_s };
        }
        if let (Some(budget), true) = (self.src.stale_after_ms, self.src.stale_rejects) {
            let confirmed = self.seen.map_or(0, |r| r.confirmed_ns);
            if self.in_force.is_some() && now_ns().saturating_sub(confirmed) > budget * 1_000_000 {
                return Gate::Stale { retry_after_s };
            }
        }
        Gate::Open
    }

    /// Runs on every tick: lease, fetch, and load a newer set. Returns a policy to
    /// swap in when a new set was loaded.
    pub fn tick(
        &mut self,
        config: &[u8],
        current: Option<&Policy>,
        count: &dyn Fn(Counter),
    ) -> Option<Policy> {
        let now = now_ns();
        self.holder = match self.src.role {
            Role::Fetcher => true,
            Role::Reader => false,
            Role::Auto => {
                let was = self.holder;
                let ttl = self.src.period_ms * 3 * 1_000_000;
                let (held, taken_over) = match hostcalls::get_shared_data(&self.keys.lease) {
                    Ok((value, cas)) => {
                        // A takeover: the lease was free or another VM's (not a renewal,
                        // nor a new root context of this VM after a configuration update).
                        let mine = value.as_deref().and_then(|v| v.get(0..8))
                            == Some(&self.me.to_le_bytes()[..]);
                        match distribution::lease_claim(
                            self.key(),
                            value.as_deref(),
                            self.me,
                            now,
                            ttl,
                        ) {
                            Some(v) => (
                                hostcalls::set_shared_data(&self.keys.lease, Some(&v), cas).is_ok(),
                                !mine,
                            ),
                            None => (false, false),
                        }
                    }
                    Err(_) => (false, false),
                };
                if held && taken_over {
                    count(Counter::SourceLeaseAcquired);
                    info!(
                        "s2s-guard: token source {}: this worker is now the fetcher",
                        self.src.name
                    );
                } else if was && !held {
                    info!(
                        "s2s-guard: token source {}: this worker is no longer the fetcher",
                        self.src.name
                    );
                }
                held
            }
        };
        if self.holder && self.pending.is_none() && now >= self.next_fetch_ns {
            self.fetch(now, count);
        }
        let loaded = self.load(config, current, count);
        self.record_gauges(current, loaded.as_ref());
        loaded
    }

    fn fetch(&mut self, now: u64, count: &dyn Fn(Counter)) {
        let mut headers: Vec<(&str, &str)> = vec![
            (":method", "GET"),
            (":path", &self.src.path),
            (":authority", &self.src.authority),
        ];
        let lm = self
            .last_modified
            .as_deref()
            .and_then(|v| std::str::from_utf8(v).ok());
        let et = self
            .etag
            .as_deref()
            .and_then(|v| std::str::from_utf8(v).ok());
        if let (Some(lm), true) = (lm, self.in_force.is_some()) {
            headers.push(("if-modified-since", lm));
        }
        if let (Some(et), true) = (et, self.in_force.is_some()) {
            headers.push(("if-none-match", et));
        }
        for (k, v) in &self.src.headers {
            headers.push((k, v));
        }
        let timeout = Duration::from_millis(self.src.timeout_ms);
        match hostcalls::dispatch_http_call(&self.src.cluster, headers, None, vec![], timeout) {
            Ok(token) => {
                self.pending = Some(token);
                // Periods count from the fetch, so fetches keep their rhythm.
                self.next_fetch_ns = now + self.src.period_ms * 1_000_000;
            }
            Err(_) => {
                warn!(
                    "s2s-guard: token source {}: cannot call cluster {}",
                    self.src.name, self.src.cluster
                );
                self.failed(now, Failure::Dispatch, count);
            }
        }
    }

    fn failed(&mut self, now: u64, f: Failure, count: &dyn Fn(Counter)) {
        count(Counter::SourceFailed(f));
        let delay = distribution::backoff_ms(self.src.period_ms, self.failures);
        self.failures = self.failures.saturating_add(1);
        self.next_fetch_ns = now + delay * 1_000_000;
        warn!(
            "s2s-guard: token source {}: fetch failed ({}); keeping the set in force, retry in {} ms",
            self.src.name,
            f.name(),
            delay
        );
    }

    /// Is this the answer to our fetch?
    pub fn owns(&self, token: u32) -> bool {
        self.pending == Some(token)
    }

    /// The token source answered: classify, validate, publish.
    pub fn on_response(
        &mut self,
        body_size: usize,
        config: &[u8],
        current: Option<&Policy>,
        count: &dyn Fn(Counter),
    ) -> Option<Policy> {
        self.pending = None;
        let now = now_ns();
        let headers =
            hostcalls::get_map_bytes(MapType::HttpCallResponseHeaders).unwrap_or_default();
        // An oversized body is never copied into the VM.
        let body = if body_size > self.src.max_bytes {
            None
        } else {
            hostcalls::get_buffer(BufferType::HttpCallResponseBody, 0, body_size)
                .unwrap_or_default()
        };
        let header = |name: &str| {
            headers
                .iter()
                .find(|(k, _)| k == name)
                .map(|(_, v)| v.clone())
        };
        let stored = self.stored();
        match distribution::classify(&self.src, &headers, body_size, body) {
            Response::Failed(f) => {
                self.failed(now, f, count);
                None
            }
            Response::NotModified => {
                count(Counter::SourceNotModified);
                self.confirmed(now, stored);
                None
            }
            Response::Body(body) => {
                let digest = distribution::digest(&body);
                // The set in force here, while shared data holds another publication
                // (written back by another plugin): published again, as it is.
                let republish = self.in_force.filter(|r| r.digest == digest);
                if stored.is_some_and(|r| r.digest == digest) {
                    count(Counter::SourceUnchanged);
                    self.confirmed(now, stored);
                    return None;
                }
                let mut policy = match config::parse_with_set(config, Some(&body)) {
                    Ok(p) => p,
                    Err(e) => {
                        let kind = if e.message.starts_with("not valid JSON")
                            || e.message.contains("expected a JSON object")
                        {
                            Failure::Malformed
                        } else {
                            Failure::Invalid
                        };
                        warn!(
                            "s2s-guard: token source {}: set refused: {e}",
                            self.src.name
                        );
                        self.failed(now, kind, count);
                        return None;
                    }
                };
                let last_modified =
                    header("last-modified").and_then(|v| distribution::last_modified_secs(&v));
                // The order comes from the signed body when the source signs.
                // Ordered after the published set and after the one in force here
                // (what shared data says may have been written back by another plugin).
                let after = [stored, self.in_force]
                    .into_iter()
                    .flatten()
                    .map(|r| r.version)
                    .max_by_key(distribution::SetVersion::order);
                let ordered = match republish {
                    Some(r) => {
                        warn!(
                            "s2s-guard: token source {}: shared data held another publication than the set in force (version {}): published again",
                            self.src.name, r.version.version
                        );
                        Ok(r.version)
                    }
                    None => distribution::order(
                        self.src.bundle_key.is_some(),
                        policy.set_version,
                        policy.set_epoch,
                        after,
                        last_modified,
                    ),
                };
                let version = match ordered {
                    Ok(v) => v,
                    Err(refusal) => {
                        warn!(
                            "s2s-guard: token source {}: set refused: {refusal}",
                            self.src.name
                        );
                        if matches!(
                            refusal,
                            distribution::VersionRefusal::Older { .. }
                                | distribution::VersionRefusal::UnversionedAfterVersioned { .. }
                        ) {
                            count(Counter::SourceRollbackRefused);
                            self.confirmed(now, stored);
                        } else if matches!(
                            refusal,
                            distribution::VersionRefusal::SameVersion { .. }
                        ) && self.same_content(&policy, &body)
                        {
                            // The set in force in other bytes (re-indented, keys in
                            // another order): a confirmation, not a failure.
                            count(Counter::SourceUnchanged);
                            self.last_modified = header("last-modified");
                            self.etag = header("etag");
                            self.confirmed(now, stored);
                        } else {
                            self.failed(now, Failure::Version, count);
                        }
                        return None;
                    }
                };
                self.last_modified = header("last-modified");
                self.etag = header("etag");
                let record = VersionRecord {
                    version,
                    confirmed_ns: now,
                    digest,
                };
                if self.src.shared_lookup {
                    // Records first: a reader that sees the new version finds them.
                    self.publish_records(&policy, version.order());
                } else {
                    // Copy mode: workers adopt the compiled store as it is.
                    policy.tokens.set_tag(digest);
                    self.publish_sealed(
                        &self.keys.store,
                        &self.keys.store_sig,
                        policy.tokens.blob(),
                    );
                }
                let meta = config::set_meta(&body).unwrap_or_default();
                self.publish_sealed(&self.keys.meta, &self.keys.meta_sig, &meta);
                let content = distribution::content_digest(&policy.tokens, policy.set_epoch, &meta)
                    .map_or_else(Vec::new, |c| c.to_vec());
                let _ = hostcalls::set_shared_data(&self.keys.content, Some(&content), None);
                if self.src.bundle_key.is_some() {
                    // Workers verify what they load: in Istio every plugin of the
                    // proxy shares the shared-data namespace.
                    let sig = header("x-s2s-guard-bundle-signature").unwrap_or_default();
                    let _ = hostcalls::set_shared_data(&self.keys.sig, Some(&sig), None);
                }
                // The set itself is not published: its secrets would be in clear in a
                // namespace every plugin of an Istio proxy reads.
                let published = hostcalls::set_shared_data(
                    &self.keys.version,
                    Some(&record.seal(self.key())),
                    None,
                )
                .is_ok();
                if !published {
                    warn!(
                        "s2s-guard: token source {}: cannot publish into shared data",
                        self.src.name
                    );
                }
                self.failures = 0;
                count(Counter::SourceLoaded);
                Some(self.swap_in(record, policy, current, count))
            }
        }
    }

    /// Writes a value and, when the source signs, its tag (tag first: a reader
    /// that sees the value finds the tag that goes with it).
    fn publish_sealed(&self, key: &str, sig_key: &str, value: &[u8]) {
        if let Some(k) = &self.publish_key {
            let _ = hostcalls::set_shared_data(sig_key, Some(&distribution::tag(k, value)), None);
        }
        let _ = hostcalls::set_shared_data(key, Some(value), None);
    }

    /// Reads a value written by [`publish_sealed`](Self::publish_sealed), checking
    /// its tag when the source signs: `Err` for a value that does not verify.
    fn read_sealed(&self, key: &str, sig_key: &str) -> Result<Option<Vec<u8>>, ()> {
        let Ok((Some(value), _)) = hostcalls::get_shared_data(key) else {
            return Ok(None);
        };
        if let Some(k) = &self.publish_key {
            let sig = hostcalls::get_shared_data(sig_key)
                .ok()
                .and_then(|(v, _)| v)
                .unwrap_or_default();
            if !constant_eq(&sig, &distribution::tag(k, &value)) {
                return Err(());
            }
        }
        Ok(Some(value))
    }

    /// Does this set say what the set in force says (its [`content_digest`] is
    /// the one published with it)?
    ///
    /// [`content_digest`]: distribution::content_digest
    fn same_content(&self, policy: &Policy, body: &[u8]) -> bool {
        let Some(meta) = config::set_meta(body) else {
            return false;
        };
        let Some(new) = distribution::content_digest(&policy.tokens, policy.set_epoch, &meta)
        else {
            return false;
        };
        hostcalls::get_shared_data(&self.keys.content)
            .ok()
            .and_then(|(v, _)| v)
            .is_some_and(|published| published == new)
    }

    /// The published version record, if it verifies (with a bundle key, its tag).
    fn stored(&self) -> Option<VersionRecord> {
        self.stored_raw()
            .and_then(|v| VersionRecord::open(self.key(), &v))
    }

    fn stored_raw(&self) -> Option<Vec<u8>> {
        hostcalls::get_shared_data(&self.keys.version)
            .ok()
            .and_then(|(v, _)| v)
    }

    /// The source confirmed the set in force: refresh its age for every worker.
    fn confirmed(&mut self, now: u64, stored: Option<VersionRecord>) {
        self.failures = 0;
        // Shared data holds another publication than the set this fetcher has in
        // force (written back by another plugin): not confirmed; the next fetch,
        // unconditional and now, publishes the source's set again.
        if let Some(f) = self.in_force.filter(|_| self.holder) {
            if stored.is_none_or(|s| s.digest != f.digest) {
                warn!(
                    "s2s-guard: token source {}: shared data does not hold the set in force (version {}): fetching it again to publish it",
                    self.src.name, f.version.version
                );
                self.etag = None;
                self.last_modified = None;
                self.next_fetch_ns = now;
                return;
            }
        }
        if let Some(mut r) = stored {
            r.confirmed_ns = now;
            let _ = hostcalls::set_shared_data(&self.keys.version, Some(&r.seal(self.key())), None);
            self.seen = Some(r);
        }
    }

    /// Loads the published set if it is newer than the one in force here.
    fn load(
        &mut self,
        config: &[u8],
        current: Option<&Policy>,
        count: &dyn Fn(Counter),
    ) -> Option<Policy> {
        let raw = self.stored_raw()?;
        let Some(record) = VersionRecord::open(self.key(), &raw) else {
            // Not the fetcher's (with a bundle key, its tag does not verify): never
            // loaded, never a confirmation of the set in force.
            let d = distribution::digest(&raw);
            if self.refused != Some(d) {
                warn!(
                    "s2s-guard: token source {}: published version record refused: its signature does not verify",
                    self.src.name
                );
                count(Counter::SourceFailed(Failure::PublishedSignature));
                self.refused = Some(d);
            }
            return None;
        };
        if self.in_force.is_some_and(|r| r.digest == record.digest)
            || self.refused == Some(record.digest)
        {
            self.seen = Some(record);
            return None;
        }
        // Never backwards here, whatever shared data says (an old publication,
        // genuinely signed, written back by another plugin of the proxy).
        if let Some(f) = self.in_force {
            if record.version.order() <= f.version.order() {
                warn!(
                    "s2s-guard: token source {}: published set refused: version {} (epoch {}) is not after version {} (epoch {}) in force here",
                    self.src.name,
                    record.version.version,
                    record.version.epoch,
                    f.version.version,
                    f.version.epoch
                );
                count(Counter::SourceRollbackRefused);
                self.refused = Some(record.digest);
                return None;
            }
        }
        self.seen = Some(record);
        if self.src.shared_lookup {
            // Large-set mode: never copy the whole set into a reader.
            let meta = match self.read_sealed(&self.keys.meta, &self.keys.meta_sig) {
                Ok(Some(m)) => m,
                Ok(None) => return None,
                Err(()) => {
                    return self.refuse_published(record, "meta signature does not verify", count)
                }
            };
            let parsed = config::parse_with_set_without_tokens(config, &meta);
            return self.accept_published(record, parsed, current, count);
        }
        // Copy mode: the compiled store the fetcher published for this version,
        // adopted as it is (one copy, no parse) ...
        match self.read_sealed(&self.keys.store, &self.keys.store_sig) {
            Err(()) => {
                return self.refuse_published(record, "store signature does not verify", count)
            }
            Ok(Some(blob)) => match crate::token::TokenStore::from_blob(blob) {
                None => return self.refuse_published(record, "store is malformed", count),
                Some(store) if store.tag() == Some(record.digest) => {
                    let meta = match self.read_sealed(&self.keys.meta, &self.keys.meta_sig) {
                        Ok(Some(m)) => m,
                        Ok(None) => return None,
                        Err(()) => {
                            return self.refuse_published(
                                record,
                                "meta signature does not verify",
                                count,
                            )
                        }
                    };
                    let parsed =
                        config::parse_with_set_without_tokens(config, &meta).map(|mut p| {
                            p.tokens = store;
                            p
                        });
                    return self.accept_published(record, parsed, current, count);
                }
                // Another version's store: the set itself, below, if it is this one.
                Some(_) => {}
            },
            Ok(None) => {}
        }
        // ... or the set as published (by an operator tool, or a fetcher of an
        // earlier release), parsed here.
        let Ok((Some(set), _)) = hostcalls::get_shared_data(&self.keys.set) else {
            return None;
        };
        if distribution::digest(&set) != record.digest {
            // The set and its record are written one after the other: next tick.
            return None;
        }
        if let Some(key) = &self.src.bundle_key {
            let sig = hostcalls::get_shared_data(&self.keys.sig)
                .ok()
                .and_then(|(v, _)| v);
            if !distribution::bundle_ok(key, &set, sig.as_deref()) {
                return self.refuse_published(record, "set signature does not verify", count);
            }
        }
        let parsed = config::parse_with_set(config, Some(&set));
        self.accept_published(record, parsed, current, count)
    }

    /// A published set that does not verify: never loaded, remembered so it is not
    /// re-read on every tick, logged and counted.
    fn refuse_published(
        &mut self,
        record: VersionRecord,
        why: &str,
        count: &dyn Fn(Counter),
    ) -> Option<Policy> {
        warn!(
            "s2s-guard: token source {}: published set refused: {why}",
            self.src.name
        );
        count(Counter::SourceFailed(Failure::PublishedSignature));
        self.refused = Some(record.digest);
        None
    }

    /// Swaps in a published set, or remembers a refused one so it is not re-read
    /// on every tick.
    fn accept_published(
        &mut self,
        record: VersionRecord,
        parsed: Result<Policy, config::ConfigError>,
        current: Option<&Policy>,
        count: &dyn Fn(Counter),
    ) -> Option<Policy> {
        match parsed {
            // Signed: the version record must name the set's own signed order (a
            // record paired with another set's meta is not this set).
            Ok(policy)
                if self.publish_key.is_some()
                    && (policy.set_version != Some(record.version.version)
                        || policy.set_epoch != record.version.epoch) =>
            {
                self.refuse_published(record, "version record does not match the set", count)
            }
            Ok(policy) => Some(self.swap_in(record, policy, current, count)),
            Err(e) => {
                warn!(
                    "s2s-guard: token source {}: published set refused: {e}",
                    self.src.name
                );
                self.refused = Some(record.digest);
                None
            }
        }
    }

    fn swap_in(
        &mut self,
        record: VersionRecord,
        policy: Policy,
        current: Option<&Policy>,
        count: &dyn Fn(Counter),
    ) -> Policy {
        let d = current
            .map(|c| distribution::diff(&c.tokens, &policy.tokens))
            .unwrap_or_default();
        let off = current
            .map(|c| distribution::switched_off(c, &policy))
            .unwrap_or_default();
        if !off.is_empty() {
            warn!(
                "s2s-guard: token set {} version {} switches authentication OFF for apps [{}]",
                self.src.name,
                record.version.version,
                off.join(", ")
            );
            count(Counter::SourceAppsSwitchedOff);
        }
        let loosened = current
            .map(|c| distribution::loosened(c, &policy))
            .unwrap_or_default();
        if !loosened.is_empty() {
            warn!(
                "s2s-guard: token set {} version {} loosens signature checks for apps [{}]",
                self.src.name,
                record.version.version,
                loosened.join(", ")
            );
        }
        // Readers in large-set mode hold no tokens: the fetcher's count stands.
        if !(self.src.shared_lookup && policy.tokens.is_empty()) {
            self.token_count = policy.tokens.len() as u64;
        }
        if current.is_some() {
            info!(
                "s2s-guard: token set {} version {} loaded: {} tokens (+{} added, -{} removed, {} deactivated) ids [{}]",
                self.src.name,
                record.version.version,
                self.token_count,
                d.added,
                d.removed,
                d.deactivated,
                d.ids.join(", ")
            );
        } else {
            // Nothing to compare with: a diff would say "+0 added".
            info!(
                "s2s-guard: token set {} version {} loaded: {} tokens (first set)",
                self.src.name, record.version.version, self.token_count
            );
        }
        self.in_force = Some(record);
        self.seen = Some(record);
        self.expires_s = policy.set_expires;
        policy
    }

    fn record_gauges(&self, _current: Option<&Policy>, _loaded: Option<&Policy>) {
        let tokens = self.token_count;
        let version = self.in_force.map_or(0, |r| r.version.version);
        let age = self.seen.map_or(0, |r| {
            now_ns().saturating_sub(r.confirmed_ns) / 1_000_000_000
        });
        // In large-set mode only the fetcher knows the count.
        let skip_tokens = self.src.shared_lookup && !self.holder;
        for (i, (id, v)) in self.gauges.iter().zip([version, age, tokens]).enumerate() {
            if *id != 0 && !(i == 2 && skip_tokens) {
                let _ = hostcalls::record_metric(*id, v);
            }
        }
    }
}
