//! Token distribution: the HTTP token source's configuration, and the pure parts of
//! fetching, publishing and electing a fetcher. The adapter does the host calls.
//!
//! Shared data layout (namespace `s2s-guard/<name>/`, no secret in clear: token
//! secrets travel only as digests or inside the set, which Istio's shared namespace
//! sees anyway; source credentials never enter shared data):
//! - `version`: a 57-byte record: set version, time the source last confirmed the
//!   set (200 or 304), the set's SHA-256, its epoch; with a bundle key followed by
//!   its tag under the publish key. Workers read this small key on every tick to
//!   notice a new set cheaply.
//! - `store` (copy mode) or `t/<digest>` records (shared mode), and `meta`: what
//!   workers load, tagged with a bundle key; token records carry the order of the
//!   set they were published for, so a revoked token's old record is refused.
//! - `set`: the set's bytes, written only by operator tools (a fetcher publishes
//!   the compiled store and the meta, never the secrets of a set in clear).
//! - `lease`: which VM fetches (holder id and expiry), taken by compare-and-swap.

use hmac::{Hmac, Mac};
use sha2::{Digest as _, Sha256};

use crate::token::TokenStore;

/// The `token_source` configuration (compiled in `config`, held by the policy).
pub use crate::policy::{Role, TokenSource as Source};

/// Shared data keys of a source.
pub struct Keys {
    pub version: String,
    pub set: String,
    pub lease: String,
    /// Large-set mode: the set without its tokens.
    pub meta: String,
    /// Prefix of per-token records in large-set mode: `<prefix><hex digest>`.
    pub token_prefix: String,
    /// With a bundle key: the set's bundle signature, and the meta's tag.
    pub sig: String,
    pub meta_sig: String,
    /// Copy mode: the compiled token store every worker adopts as it is (no
    /// parse, one copy), and its tag with a bundle key.
    pub store: String,
    pub store_sig: String,
    /// The [`content_digest`] of the set in force, written by the fetcher that
    /// published it: the same set served in other bytes confirms it.
    pub content: String,
}

pub fn keys(name: &str) -> Keys {
    Keys {
        version: format!("s2s-guard/{name}/version"),
        set: format!("s2s-guard/{name}/set"),
        lease: format!("s2s-guard/{name}/lease"),
        meta: format!("s2s-guard/{name}/meta"),
        token_prefix: format!("s2s-guard/{name}/t/"),
        sig: format!("s2s-guard/{name}/sig"),
        meta_sig: format!("s2s-guard/{name}/meta-sig"),
        store: format!("s2s-guard/{name}/store"),
        store_sig: format!("s2s-guard/{name}/store-sig"),
        content: format!("s2s-guard/{name}/content"),
    }
}

/// The small record every worker polls.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VersionRecord {
    pub version: SetVersion,
    /// When the source last confirmed the set (200 or 304), ns.
    pub confirmed_ns: u64,
    pub digest: [u8; 32],
}

impl VersionRecord {
    /// The record as published: with a publish key, followed by its tag (so the
    /// confirmation time and the version cannot be forged by another plugin).
    pub fn seal(&self, key: Option<&[u8]>) -> Vec<u8> {
        let mut v = self.encode();
        if let Some(k) = key {
            let t = tag(k, &[&b"s2s-guard/version\0"[..], &v].concat());
            v.extend_from_slice(&t);
        }
        v
    }

    /// A published record: with a publish key, only one whose tag verifies
    /// (constant time); `None` for anything else.
    pub fn open(key: Option<&[u8]>, v: &[u8]) -> Option<VersionRecord> {
        let Some(k) = key else {
            return VersionRecord::decode(v);
        };
        let (record, t) = (v.get(..RECORD_LEN)?, v.get(RECORD_LEN..)?);
        let want = tag(k, &[&b"s2s-guard/version\0"[..], record].concat());
        if t.len() != want.len() || !bool::from(subtle::ConstantTimeEq::ct_eq(t, &want[..])) {
            return None;
        }
        VersionRecord::decode(record)
    }

    pub fn encode(&self) -> Vec<u8> {
        let mut v = Vec::with_capacity(RECORD_LEN);
        v.extend_from_slice(&self.version.version.to_le_bytes());
        v.extend_from_slice(&self.confirmed_ns.to_le_bytes());
        v.extend_from_slice(&self.digest);
        v.extend_from_slice(&self.version.epoch.to_le_bytes());
        v.push(u8::from(self.version.explicit));
        v
    }

    pub fn decode(v: &[u8]) -> Option<VersionRecord> {
        if v.len() != RECORD_LEN {
            return None;
        }
        Some(VersionRecord {
            version: SetVersion {
                version: u64::from_le_bytes(v[0..8].try_into().ok()?),
                epoch: u64::from_le_bytes(v[48..56].try_into().ok()?),
                explicit: v[56] == 1,
            },
            confirmed_ns: u64::from_le_bytes(v[8..16].try_into().ok()?),
            digest: v[16..48].try_into().ok()?,
        })
    }
}

const RECORD_LEN: usize = 57;

/// Where a set stands in the order of sets: `(epoch, version)`, compared in that
/// order. `explicit`: the version came from the set's body (signed, if the source
/// signs); otherwise it was derived from `Last-Modified` or arrival.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct SetVersion {
    pub epoch: u64,
    pub version: u64,
    pub explicit: bool,
}

impl SetVersion {
    /// `(epoch, version)`: the order of sets (later is greater).
    pub fn order(&self) -> (u64, u64) {
        (self.epoch, self.version)
    }
}

/// Largest version (and epoch) a set may carry (JSON's exact integers).
pub const MAX_SET_VERSION: u64 = 1 << 53;
/// Largest step between the epoch in force (0 before any set) and a set's: with
/// no limit one set at the largest epoch and version would end the order for good
/// (every later set refused). To reach the end takes two million sets in a row.
pub const MAX_EPOCH_JUMP: u64 = 1 << 32;
/// Largest step between two versions of one epoch: beyond it a version could pin
/// the order for good (recovery: a set with a higher `epoch`).
pub const MAX_VERSION_JUMP: u64 = 1 << 32;

/// Why a fetched set is not put in force.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VersionRefusal {
    /// A signed source's set without `version`: its order would come from an
    /// unsigned header.
    Unversioned,
    /// Older than the set in force (a rollback).
    Older { version: u64, in_force: u64 },
    /// A set without a version while a versioned one is in force: ordered by
    /// `Last-Modified`, it could bring back any older set (an old unversioned
    /// copy, then an old versioned one); refused as a rollback.
    UnversionedAfterVersioned { in_force: u64 },
    /// The version in force, with other content.
    SameVersion { version: u64 },
    /// Beyond `MAX_SET_VERSION`, or more than `MAX_VERSION_JUMP` ahead.
    Absurd { version: u64, in_force: u64 },
    /// An epoch more than `MAX_EPOCH_JUMP` above the one in force (or 0).
    AbsurdEpoch { epoch: u64, in_force: u64 },
}

impl std::fmt::Display for VersionRefusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            VersionRefusal::Unversioned => write!(f, "a signed set must carry its version"),
            VersionRefusal::UnversionedAfterVersioned { in_force } => write!(
                f,
                "a set without a version after set version {in_force} (once versioned, a source must keep publishing versions)"
            ),
            VersionRefusal::Older { version, in_force } => {
                write!(f, "set version {version} is older than {in_force} in force")
            }
            VersionRefusal::SameVersion { version } => {
                write!(f, "set version {version} is in force with other content")
            }
            VersionRefusal::AbsurdEpoch { epoch, in_force } => write!(
                f,
                "set epoch {epoch} is an absurd jump from epoch {in_force} (at most {MAX_EPOCH_JUMP} ahead)"
            ),
            VersionRefusal::Absurd { version, in_force } => write!(
                f,
                "set version {version} is an absurd jump from {in_force} (at most {MAX_VERSION_JUMP} ahead; publish a higher epoch to reset)"
            ),
        }
    }
}

/// A `Last-Modified` value in Unix seconds (any of HTTP's three date forms).
pub fn last_modified_secs(v: &[u8]) -> Option<u64> {
    crate::times::http_date_secs(std::str::from_utf8(v).ok()?)
}

/// Orders a fetched set against the one in force. `set_version`/`set_epoch` come
/// from the set's body; `last_modified_s` from the response header.
pub fn order(
    signed: bool,
    set_version: Option<u64>,
    set_epoch: u64,
    in_force: Option<SetVersion>,
    last_modified_s: Option<u64>,
) -> Result<SetVersion, VersionRefusal> {
    let Some(v) = set_version else {
        if signed {
            return Err(VersionRefusal::Unversioned);
        }
        // Jitsu's format: order by Last-Modified, else by arrival; never backwards.
        let f = in_force.unwrap_or_default();
        if f.explicit {
            // Not comparable with the version in force: it could be any old copy.
            return Err(VersionRefusal::UnversionedAfterVersioned {
                in_force: f.version,
            });
        }
        // An older date than the set in force's: an old copy (a stale CDN copy, a
        // restored object version) that would bring back a revoked token.
        if let (Some(lm), Some(_)) = (last_modified_s, in_force) {
            if lm < f.version {
                return Err(VersionRefusal::Older {
                    version: lm,
                    in_force: f.version,
                });
            }
        }
        let next = f.version.saturating_add(1);
        return Ok(SetVersion {
            epoch: f.epoch,
            version: last_modified_s.unwrap_or(next).max(next),
            explicit: false,
        });
    };
    let f = in_force.unwrap_or_default();
    // The epoch in force is 0 before any set: a first set cannot end the order
    // either (an older proxy's sets never went past 2^32).
    if set_epoch > f.epoch && set_epoch - f.epoch > MAX_EPOCH_JUMP {
        return Err(VersionRefusal::AbsurdEpoch {
            epoch: set_epoch,
            in_force: f.epoch,
        });
    }
    if v > MAX_SET_VERSION {
        return Err(VersionRefusal::Absurd {
            version: v,
            in_force: f.version,
        });
    }
    let new = SetVersion {
        epoch: set_epoch,
        version: v,
        explicit: true,
    };
    let Some(f) = in_force else {
        return Ok(new);
    };
    if set_epoch > f.epoch {
        return Ok(new);
    }
    if set_epoch < f.epoch {
        return Err(VersionRefusal::Older {
            version: v,
            in_force: f.version,
        });
    }
    if !f.explicit {
        // From derived versions (Last-Modified) to the set's own: not comparable.
        return Ok(new);
    }
    if v < f.version {
        return Err(VersionRefusal::Older {
            version: v,
            in_force: f.version,
        });
    }
    if v == f.version {
        return Err(VersionRefusal::SameVersion { version: v });
    }
    if v - f.version > MAX_VERSION_JUMP {
        return Err(VersionRefusal::Absurd {
            version: v,
            in_force: f.version,
        });
    }
    Ok(new)
}

/// Apps whose authentication a new policy switches off (Adjust's per-app switch, or
/// signature enforcement), sorted.
pub fn switched_off(old: &crate::policy::Policy, new: &crate::policy::Policy) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for (app, s) in &old.apps {
        let now_on = new
            .apps
            .get(app)
            .map_or(new.app_authentication_default, |n| n.authentication);
        if s.authentication && !now_on {
            out.push(app.clone());
        }
    }
    for (app, s) in &old.signatures {
        let now_on = new.signatures.get(app).is_some_and(|n| n.enforce_signature);
        if s.enforce_signature && !now_on && !out.contains(app) {
            out.push(app.clone());
        }
    }
    if old.app_authentication_default && !new.app_authentication_default {
        out.push("(default)".into());
    }
    crate::order::strings(&mut out);
    out
}

/// Apps whose signature checks a new policy loosens without switching them off
/// (`apps_from_set`): each with what loosened (replay memory off, a longer
/// `max_age` or `max_future`, unverifiable shapes passed, device ids no longer
/// required, minimum SDK versions dropped), sorted by app.
pub fn loosened(old: &crate::policy::Policy, new: &crate::policy::Policy) -> Vec<String> {
    use crate::policy::LaterSdk;
    let strictness = |l: LaterSdk| match l {
        LaterSdk::Pass => 0,
        LaterSdk::Flag => 1,
        LaterSdk::Reject => 2,
    };
    let mut out: Vec<String> = Vec::new();
    for (app, o) in &old.signatures {
        let Some(n) = new.signatures.get(app) else {
            continue;
        };
        let what: Vec<&str> = [
            (o.replay_enabled && !n.replay_enabled, "replay off"),
            (n.max_age > o.max_age, "longer max_age"),
            (n.max_future > o.max_future, "longer max_future"),
            (
                strictness(n.later_sdk) < strictness(o.later_sdk),
                "later_sdk looser",
            ),
            (
                o.require_device_id && !n.require_device_id,
                "device id not required",
            ),
            (
                o.min_sdk_android.is_some() && n.min_sdk_android.is_none()
                    || o.min_sdk_ios.is_some() && n.min_sdk_ios.is_none(),
                "min_sdk dropped",
            ),
        ]
        .into_iter()
        .filter_map(|(hit, w)| hit.then_some(w))
        .collect();
        if !what.is_empty() {
            out.push(format!("{app} ({})", what.join(", ")));
        }
    }
    crate::order::strings(&mut out);
    out
}

/// The key that signs what a fetcher publishes in shared data (version record,
/// store, meta and token records) under the namespace `name`: HMAC-SHA256 of
/// `s2s-guard/publish/<name>` under the bundle key. Derived from the bundle key so
/// that a plugin sharing the namespace (Istio) cannot forge what workers load, and
/// from the name so that one namespace's publication is no other's (two plugins
/// with one bundle key).
pub fn publish_key(bundle_key: &[u8], name: &str) -> Vec<u8> {
    // HMAC accepts keys of any length: the error case cannot happen.
    let Ok(mut mac) = <Hmac<Sha256> as Mac>::new_from_slice(bundle_key) else {
        return Vec::new();
    };
    mac.update(b"s2s-guard/publish/");
    mac.update(name.as_bytes());
    mac.finalize().into_bytes().to_vec()
}

/// A token record bound to the order of the set it is published for: readers
/// refuse records of a set older than the one in force (a revoked token's old
/// record written back into shared data).
pub fn record_at(order: (u64, u64), record: &[u8]) -> Vec<u8> {
    let mut v = Vec::with_capacity(16 + record.len());
    v.extend_from_slice(&order.0.to_le_bytes());
    v.extend_from_slice(&order.1.to_le_bytes());
    v.extend_from_slice(record);
    v
}

/// The record inside [`record_at`]'s value if it was published for a set at least
/// as new as `in_force`.
pub fn record_since(in_force: (u64, u64), v: &[u8]) -> Option<&[u8]> {
    let epoch = u64::from_le_bytes(v.get(0..8)?.try_into().ok()?);
    let version = u64::from_le_bytes(v.get(8..16)?.try_into().ok()?);
    ((epoch, version) >= in_force)
        .then(|| v.get(16..))
        .flatten()
}

/// A token record as published in shared data: with a publish key, prefixed by
/// its tag over the key name and the record, and a NUL.
pub fn seal_record(key: Option<&[u8]>, name: &str, record: &[u8]) -> Vec<u8> {
    let Some(k) = key else {
        return record.to_vec();
    };
    let mut data = name.as_bytes().to_vec();
    data.push(0);
    data.extend_from_slice(record);
    let mut out = tag(k, &data);
    out.push(0);
    out.extend_from_slice(record);
    out
}

/// The record inside a published value, if its tag verifies (constant time).
pub fn open_record<'a>(key: Option<&[u8]>, name: &str, value: &'a [u8]) -> Option<&'a [u8]> {
    let Some(k) = key else {
        return Some(value);
    };
    let i = value.iter().position(|&b| b == 0)?;
    let (t, record) = (&value[..i], &value[i + 1..]);
    let mut data = name.as_bytes().to_vec();
    data.push(0);
    data.extend_from_slice(record);
    let want = tag(k, &data);
    (t.len() == want.len() && bool::from(subtle::ConstantTimeEq::ct_eq(t, &want[..])))
        .then_some(record)
}

/// `sha256=<hex>` HMAC of `data` under `key`.
pub fn tag(key: &[u8], data: &[u8]) -> Vec<u8> {
    let Ok(mut mac) = <Hmac<Sha256> as Mac>::new_from_slice(key) else {
        return Vec::new();
    };
    mac.update(data);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes())).into_bytes()
}

pub fn digest(body: &[u8]) -> [u8; 32] {
    Sha256::digest(body).into()
}

/// What a set says, whatever its bytes: its compiled tokens (the store, without
/// the tag naming the bytes it came from), its `epoch`, and its `version` and
/// `apps` (`meta`, [`crate::config::set_meta`]) as canonical JSON (keys sorted, no
/// white space). Two serialisations of one set (indented, keys in another order)
/// have one content digest; any change of a token, an app setting, the version or
/// the epoch gives another. `None` if `meta` is not JSON.
pub fn content_digest(store: &TokenStore, epoch: u64, meta: &[u8]) -> Option<[u8; 32]> {
    let meta: serde_json::Value = serde_json::from_str(std::str::from_utf8(meta).ok()?).ok()?;
    let (before, after) = store.untagged();
    let mut h = Sha256::new();
    h.update(b"s2s-guard set content 1\0");
    h.update((before.len() as u64).to_le_bytes());
    h.update(before);
    h.update((after.len() as u64).to_le_bytes());
    h.update(after);
    h.update(epoch.to_le_bytes());
    h.update(serde_json::to_string(&meta).ok()?.as_bytes());
    Some(h.finalize().into())
}

/// The lease value to write if `me` should hold the lease now (it is free,
/// expired, or already mine), or `None` if another VM holds it. With a publish key
/// (`key`) a lease carries its tag, and one whose tag does not verify is no VM's
/// (another plugin of the proxy writing leases could stop fetching).
pub fn lease_claim(
    key: Option<&[u8]>,
    current: Option<&[u8]>,
    me: u64,
    now_ns: u64,
    ttl_ns: u64,
) -> Option<Vec<u8>> {
    let lease_tag = |k: &[u8], v: &[u8]| tag(k, &[&b"s2s-guard/lease\0"[..], v].concat());
    let held = current.and_then(|v| {
        let holder = u64::from_le_bytes(v.get(0..8)?.try_into().ok()?);
        let expires = u64::from_le_bytes(v.get(8..16)?.try_into().ok()?);
        if let Some(k) = key {
            let want = lease_tag(k, &v[..16]);
            let t = v.get(16..)?;
            if t.len() != want.len() || !bool::from(subtle::ConstantTimeEq::ct_eq(t, &want[..])) {
                return None;
            }
        }
        Some((holder, expires))
    });
    match held {
        // An expiry further than one lease ahead is no fetcher's (a forged lease
        // would stop fetching for good): taken over.
        Some((holder, expires))
            if holder != me && expires > now_ns && expires <= now_ns.saturating_add(ttl_ns) =>
        {
            None
        }
        _ => {
            let mut v = me.to_le_bytes().to_vec();
            v.extend_from_slice(&(now_ns + ttl_ns).to_le_bytes());
            if let Some(k) = key {
                let t = lease_tag(k, &v);
                v.extend_from_slice(&t);
            }
            Some(v)
        }
    }
}

/// Why a fetch did not produce a new set.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Failure {
    /// `dispatch_http_call` refused (unknown cluster...).
    Dispatch,
    /// Connection reset: no headers, no body.
    Reset,
    /// Envoy's 504 for a call past its timeout.
    Timeout,
    Status5xx,
    StatusOther,
    Empty,
    TooLarge,
    BadSignature,
    Malformed,
    Invalid,
    /// The set's version is refused (unversioned signed set, same version with
    /// other content, absurd jump).
    Version,
    /// What a worker found in shared data does not carry the fetcher's signature.
    PublishedSignature,
}

impl Failure {
    pub const ALL: [Failure; 12] = [
        Failure::Dispatch,
        Failure::Reset,
        Failure::Timeout,
        Failure::Status5xx,
        Failure::StatusOther,
        Failure::Empty,
        Failure::TooLarge,
        Failure::BadSignature,
        Failure::Malformed,
        Failure::Invalid,
        Failure::Version,
        Failure::PublishedSignature,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Failure::Dispatch => "dispatch",
            Failure::Reset => "reset",
            Failure::Timeout => "timeout",
            Failure::Status5xx => "status_5xx",
            Failure::StatusOther => "status_other",
            Failure::Empty => "empty",
            Failure::TooLarge => "too_large",
            Failure::BadSignature => "bad_signature",
            Failure::Malformed => "malformed",
            Failure::Version => "version",
            Failure::PublishedSignature => "published_signature",
            Failure::Invalid => "invalid",
        }
    }
}

/// What a token source response means, before parsing the set.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Response {
    NotModified,
    Body(Vec<u8>),
    Failed(Failure),
}

/// Classifies a response: status, size limit, bundle signature.
/// `body_size` is the size the host reports; an oversized body is refused before
/// it is read.
pub fn classify(
    source: &Source,
    headers: &[(String, Vec<u8>)],
    body_size: usize,
    body: Option<Vec<u8>>,
) -> Response {
    let status = headers
        .iter()
        .find(|(k, _)| k == ":status")
        .and_then(|(_, v)| std::str::from_utf8(v).ok())
        .and_then(|v| v.parse::<u16>().ok());
    let Some(status) = status else {
        return Response::Failed(Failure::Reset);
    };
    match status {
        304 => return Response::NotModified,
        200 => {}
        504 => return Response::Failed(Failure::Timeout),
        500..=599 => return Response::Failed(Failure::Status5xx),
        _ => return Response::Failed(Failure::StatusOther),
    }
    if body_size > source.max_bytes {
        return Response::Failed(Failure::TooLarge);
    }
    let body = body.unwrap_or_default();
    if body.iter().all(u8::is_ascii_whitespace) {
        return Response::Failed(Failure::Empty);
    }
    if let Some(key) = &source.bundle_key {
        let sig = headers
            .iter()
            .find(|(k, _)| k == "x-s2s-guard-bundle-signature")
            .map(|(_, v)| v.as_slice());
        if !bundle_ok(key, &body, sig) {
            return Response::Failed(Failure::BadSignature);
        }
    }
    Response::Body(body)
}

/// Checks `x-s2s-guard-bundle-signature: sha256=<hex HMAC-SHA256 of the body>`,
/// in constant time.
pub fn bundle_ok(key: &[u8], body: &[u8], header: Option<&[u8]>) -> bool {
    let Some(h) = header.and_then(|h| h.strip_prefix(b"sha256=")) else {
        return false;
    };
    let Ok(sig) = hex::decode(h) else {
        return false;
    };
    let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(key) else {
        return false;
    };
    mac.update(body);
    mac.verify_slice(&sig).is_ok()
}

/// The next fetch delay after `failures` consecutive failures: the period, doubled
/// per failure, at most a minute (or the period, if longer).
pub fn backoff_ms(period_ms: u64, failures: u32) -> u64 {
    let cap = period_ms.max(60_000);
    period_ms.saturating_mul(1u64 << failures.min(16)).min(cap)
}

/// What changed between two token sets (for the reload log line).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Diff {
    pub added: usize,
    pub removed: usize,
    pub deactivated: usize,
    /// Up to ten changed ids.
    pub ids: Vec<String>,
}

/// Compares two sets by id: a merge of the two sets' ids in sorted order, so a
/// million-token reload costs two index arrays (4 bytes a token), not two maps.
pub fn diff(old: &TokenStore, new: &TokenStore) -> Diff {
    // (id, active), by id (a store's ids are unique).
    fn sorted(s: &TokenStore) -> Vec<(&[u8], u32)> {
        let mut v: Vec<(&[u8], u32)> = s
            .tokens()
            .map(|t| (t.id.as_bytes(), u32::from(t.active)))
            .collect();
        crate::order::by_bytes(&mut v);
        v
    }
    let (before, after) = (sorted(old), sorted(new));
    let mut d = Diff::default();
    let note = |d: &mut Diff, id: &[u8]| {
        if d.ids.len() < 10 {
            d.ids.push(String::from_utf8_lossy(id).into_owned());
        }
    };
    let (mut i, mut j) = (0, 0);
    while i < before.len() || j < after.len() {
        match (before.get(i), after.get(j)) {
            (Some(b), Some(a)) if b.0 == a.0 => {
                if b.1 != 0 && a.1 == 0 {
                    d.deactivated += 1;
                    note(&mut d, a.0);
                }
                i += 1;
                j += 1;
            }
            (Some(b), Some(a)) if b.0 < a.0 => {
                d.removed += 1;
                note(&mut d, b.0);
                i += 1;
            }
            (Some(b), None) => {
                d.removed += 1;
                note(&mut d, b.0);
                i += 1;
            }
            (_, Some(a)) => {
                d.added += 1;
                note(&mut d, a.0);
                j += 1;
            }
            (None, None) => break,
        }
    }
    crate::order::strings(&mut d.ids);
    d
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_digest_is_the_set_not_its_bytes() {
        let config = br#"{"presets": ["adjust"], "token_source": {"cluster": "c", "path": "/t", "apps_from_set": true}}"#;
        let content = |set: &str| {
            let p = crate::config::parse_with_set(config, Some(set.as_bytes())).unwrap();
            let meta = crate::config::set_meta(set.as_bytes()).unwrap();
            content_digest(&p.tokens, p.set_epoch, &meta).unwrap()
        };
        let base = content(
            r#"{"version": 2, "apps": {"a1": {"authentication": true}},
               "tokens": [{"id": "t", "secret": "s1", "app": "a1", "scopes": ["events"]}]}"#,
        );
        let same = content(
            "{\"tokens\":[{\"scopes\":[\"events\"],\"app\":\"a1\",\"secret\":\"s1\",\"id\":\"t\"}],\n \"apps\" : { \"a1\" : {\"authentication\":true}},\"version\":2}",
        );
        assert_eq!(base, same);
        for other in [
            r#"{"version": 2, "apps": {"a1": {"authentication": true}},
               "tokens": [{"id": "t", "secret": "s2", "app": "a1", "scopes": ["events"]}]}"#,
            r#"{"version": 2, "apps": {"a1": {"authentication": false}},
               "tokens": [{"id": "t", "secret": "s1", "app": "a1", "scopes": ["events"]}]}"#,
            r#"{"version": 2, "apps": {"a1": {"authentication": true}},
               "tokens": [{"id": "t", "secret": "s1", "app": "a1", "scopes": ["events", "gdpr"]}]}"#,
            r#"{"version": 3, "apps": {"a1": {"authentication": true}},
               "tokens": [{"id": "t", "secret": "s1", "app": "a1", "scopes": ["events"]}]}"#,
            r#"{"version": 2, "epoch": 1, "apps": {"a1": {"authentication": true}},
               "tokens": [{"id": "t", "secret": "s1", "app": "a1", "scopes": ["events"]}]}"#,
        ] {
            assert_ne!(content(other), base, "{other}");
        }
    }

    #[test]
    fn lease_is_taken_when_free_or_expired() {
        let v = lease_claim(None, None, 1, 100, 50).unwrap();
        assert_eq!(lease_claim(None, Some(&v), 2, 120, 50), None);
        assert!(lease_claim(None, Some(&v), 1, 120, 50).is_some(), "renewal");
        assert!(lease_claim(None, Some(&v), 2, 150, 50).is_some(), "expired");
        assert!(lease_claim(None, Some(b"junk"), 2, 0, 50).is_some());
        // A lease expiring beyond one lease from now was forged: taken.
        let mut forged = 9u64.to_le_bytes().to_vec();
        forged.extend_from_slice(&u64::MAX.to_le_bytes());
        assert!(lease_claim(None, Some(&forged), 2, 120, 50).is_some());
        // With a publish key, only a lease with its tag is a VM's.
        let k = publish_key(b"0123456789abcdef", "x");
        let signed = lease_claim(Some(&k), None, 1, 100, 50).unwrap();
        assert_eq!(lease_claim(Some(&k), Some(&signed), 2, 120, 50), None);
        let mut untagged = 9u64.to_le_bytes().to_vec();
        untagged.extend_from_slice(&140u64.to_le_bytes());
        assert!(lease_claim(Some(&k), Some(&untagged), 2, 120, 50).is_some());
    }

    #[test]
    fn records_are_bound_to_their_set() {
        let v = record_at((1, 7), b"rec");
        assert_eq!(record_since((1, 7), &v), Some(&b"rec"[..]));
        assert_eq!(record_since((1, 6), &v), Some(&b"rec"[..]), "a newer set's");
        assert_eq!(record_since((1, 8), &v), None, "an older set's");
        assert_eq!(record_since((2, 0), &v), None, "an older epoch's");
        assert_eq!(record_since((0, 0), b"short"), None);
    }

    #[test]
    fn version_record_round_trip() {
        let r = VersionRecord {
            version: SetVersion {
                epoch: 2,
                version: 7,
                explicit: true,
            },
            confirmed_ns: 9,
            digest: [3; 32],
        };
        assert_eq!(VersionRecord::decode(&r.encode()), Some(r));
        assert_eq!(VersionRecord::decode(b"short"), None);
        // Sealed: only with its tag under the same key.
        let k = publish_key(b"0123456789abcdef", "x");
        let sealed = r.seal(Some(&k));
        assert_eq!(VersionRecord::open(Some(&k), &sealed), Some(r));
        assert_eq!(VersionRecord::open(None, &r.encode()), Some(r));
        assert_eq!(VersionRecord::open(Some(&k), &r.encode()), None, "untagged");
        let mut forged = sealed.clone();
        forged[8] ^= 1;
        assert_eq!(
            VersionRecord::open(Some(&k), &forged),
            None,
            "confirmation time changed"
        );
        let other = publish_key(b"0123456789abcdef", "y");
        assert_eq!(VersionRecord::open(Some(&other), &sealed), None);
    }

    #[test]
    fn published_records_carry_a_tag_that_binds_their_key() {
        let k = publish_key(b"0123456789abcdef", "x");
        let sealed = seal_record(Some(&k), "s2s-guard/x/t/aa", b"{\"id\":\"a\"}");
        assert_eq!(
            open_record(Some(&k), "s2s-guard/x/t/aa", &sealed),
            Some(&b"{\"id\":\"a\"}"[..])
        );
        // Moved under another digest, forged, or unsealed: refused.
        assert_eq!(open_record(Some(&k), "s2s-guard/x/t/bb", &sealed), None);
        assert_eq!(
            open_record(Some(&k), "s2s-guard/x/t/aa", b"{\"id\":\"a\"}"),
            None
        );
        let other = publish_key(b"another key 0123", "x");
        assert_eq!(
            open_record(
                Some(&publish_key(b"0123456789abcdef", "y")),
                "s2s-guard/x/t/aa",
                &sealed
            ),
            None,
            "another namespace's key"
        );
        assert_eq!(open_record(Some(&other), "s2s-guard/x/t/aa", &sealed), None);
        assert_eq!(open_record(None, "n", b"raw"), Some(&b"raw"[..]));
    }

    #[test]
    fn sets_are_ordered_by_their_signed_version() {
        let v = |epoch, version, explicit| SetVersion {
            epoch,
            version,
            explicit,
        };
        use VersionRefusal::*;
        // A signed source: the version must be in the body.
        assert_eq!(
            order(true, None, 0, None, Some(1_700_000_000)),
            Err(Unversioned)
        );
        // Replaying an old signed set with its old date: refused.
        let f = Some(v(0, 10, true));
        assert_eq!(
            order(true, Some(9), 0, f, Some(u64::MAX)),
            Err(Older {
                version: 9,
                in_force: 10
            })
        );
        assert_eq!(
            order(true, Some(10), 0, f, None),
            Err(SameVersion { version: 10 })
        );
        assert_eq!(order(true, Some(11), 0, f, None), Ok(v(0, 11, true)));
        // Absurd versions cannot pin the order.
        assert!(matches!(
            order(true, Some(u64::MAX), 0, f, None),
            Err(Absurd { .. })
        ));
        assert!(matches!(
            order(true, Some(10 + (1 << 32) + 1), 0, f, None),
            Err(Absurd { .. })
        ));
        // Recovery: a higher epoch resets the order; a lower one is a rollback.
        let pinned = Some(v(0, 1 << 40, true));
        assert_eq!(order(true, Some(1), 1, pinned, None), Ok(v(1, 1, true)));
        assert!(matches!(
            order(true, Some(5), 0, Some(v(1, 1, true)), None),
            Err(Older { .. })
        ));
        // No set ends the order: an epoch at most 2^32 above the one in force (0
        // before any), so a set at the largest version always has a successor.
        let far = 1 << 32;
        let top = Some(v(far, MAX_SET_VERSION, true));
        assert_eq!(
            order(false, Some(MAX_SET_VERSION), far + 1, None, None),
            Err(AbsurdEpoch {
                epoch: far + 1,
                in_force: 0
            })
        );
        assert_eq!(
            order(false, Some(MAX_SET_VERSION), far, None, None),
            Ok(v(far, MAX_SET_VERSION, true))
        );
        assert_eq!(
            order(false, Some(1), far + 1, top, None),
            Ok(v(far + 1, 1, true))
        );
        assert_eq!(
            order(false, Some(1), 2 * far + 1, top, None),
            Err(AbsurdEpoch {
                epoch: 2 * far + 1,
                in_force: far
            })
        );
        // Unsigned, versionless (Jitsu): Last-Modified, never backwards.
        let derived = Some(v(0, 10, false));
        // An older date is an old copy (session 12, helper-44 F5: a stale CDN copy
        // brought a revoked token back as "in force + 1").
        assert_eq!(
            order(false, None, 0, derived, Some(5)),
            Err(Older {
                version: 5,
                in_force: 10
            })
        );
        // The same date (a second set within one second), or none: by arrival.
        assert_eq!(
            order(false, None, 0, derived, Some(10)),
            Ok(v(0, 11, false))
        );
        assert_eq!(order(false, None, 0, derived, None), Ok(v(0, 11, false)));
        assert_eq!(
            order(false, None, 0, derived, Some(50)),
            Ok(v(0, 50, false))
        );
        assert_eq!(order(false, None, 0, None, Some(50)), Ok(v(0, 50, false)));
        // ... but never after a versioned set: an old unversioned copy, then an old
        // versioned one, would bring back a revoked token (cold attack, session 8).
        assert_eq!(
            order(false, None, 0, f, Some(u64::MAX)),
            Err(UnversionedAfterVersioned { in_force: 10 })
        );
        // From derived versions to explicit ones: the set's own version counts.
        assert_eq!(
            order(false, Some(2), 0, Some(v(0, 1_700_000_000, false)), None),
            Ok(v(0, 2, true))
        );
    }

    #[test]
    fn bundle_signature() {
        let key = b"0123456789abcdef";
        let mut mac = Hmac::<Sha256>::new_from_slice(key).unwrap();
        mac.update(b"{}");
        let good = format!("sha256={}", hex::encode(mac.finalize().into_bytes()));
        assert!(bundle_ok(key, b"{}", Some(good.as_bytes())));
        assert!(!bundle_ok(key, b"{ }", Some(good.as_bytes())));
        assert!(!bundle_ok(key, b"{}", None));
        assert!(!bundle_ok(key, b"{}", Some(b"sha256=zz")));
    }

    #[test]
    fn backoff_doubles_to_a_cap() {
        assert_eq!(backoff_ms(3000, 0), 3000);
        assert_eq!(backoff_ms(3000, 2), 12000);
        assert_eq!(backoff_ms(3000, 10), 60000);
        assert_eq!(backoff_ms(120_000, 3), 120_000);
    }
}
