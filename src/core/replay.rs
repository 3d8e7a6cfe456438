//! Replay memory for accepted signatures, kept in Envoy shared data so that every
//! worker sees it. Pure: this module computes keys and new values; the adapter does
//! the get / compare-and-swap set.
//!
//! Keyed by the **App Secret** (a digest of its value; the Secret ID is not signed), not by the
//! app: every app that signs with one secret (a template's) shares its protection, so
//! a signature accepted for one app is refused for another. A secret's memory is
//! [`SHARDS`] keys, chosen by the entry's hash (so load spreads evenly whatever the
//! traffic's timing); each key holds entries `(expires_at, hash)`. An entry is dropped
//! once expired: by then a replay of it is refused as stale by the freshness check
//! (`expires_at` is `created_at` plus the longest freshness window of any app using
//! the secret). Entries are 16-byte hashes: no secret or signature in clear.

use sha2::{Digest as _, Sha256};

/// Keys per App Secret.
pub const SHARDS: u64 = 1024;
const HASH: usize = 16;
const RECORD: usize = 8 + HASH;

/// Entries one key may hold for a memory that must hold `capacity` entries: the
/// mean per key plus a margin for the uneven spread of hashes (binomial: the
/// largest of [`SHARDS`] keys stays below mean + 5·√mean + 8 with overwhelming
/// probability), so the memory holds at least the advertised number.
pub fn per_key(capacity: usize) -> usize {
    let mean = capacity.div_ceil(SHARDS as usize).max(1);
    mean + 5 * (mean as f64).sqrt().ceil() as usize + 8
}

/// The tag of an App Secret in key names: a domain-separated digest of its value,
/// so no secret appears in shared data. Not of its Secret ID: the signature does
/// not cover the ID, so a signature accepted under one ID verifies under any other
/// ID holding the same value, and must be remembered for both.
pub fn secret_tag(_secret_id: u32, secret: &[u8]) -> String {
    let mut h = Sha256::new();
    h.update(b"s2s-guard/replay-secret\0");
    h.update(secret);
    hex::encode(&h.finalize()[..8])
}

/// What to remember for one accepted request, and where.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Check {
    pub key: String,
    pub entry: [u8; HASH],
    /// When the entry may be forgotten (Unix seconds).
    pub expires_at: u64,
    /// The time of the check: expired entries are dropped.
    pub now: u64,
    pub per_key: usize,
}

/// Builds the check for a signature accepted under the secret `tag`.
pub fn check(
    tag: &str,
    per_key: usize,
    window_secs: u64,
    signature: &str,
    created_at: i64,
    now: u64,
) -> Check {
    let mut h = Sha256::new();
    h.update(b"s2s-guard/replay\0");
    h.update(tag.as_bytes());
    h.update([0]);
    h.update(signature.as_bytes());
    let d = h.finalize();
    let mut entry = [0u8; HASH];
    entry.copy_from_slice(&d[..HASH]);
    let shard =
        u64::from_le_bytes([d[16], d[17], d[18], d[19], d[20], d[21], d[22], d[23]]) % SHARDS;
    Check {
        key: format!("s2s-guard/replay/v2/{tag}/{shard}"),
        entry,
        expires_at: (created_at.max(0) as u64).saturating_add(window_secs),
        now,
        per_key,
    }
}

/// The result of adding an entry to a key's current value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Insert {
    /// Not seen: write this value (with the CAS that was read).
    Write(Vec<u8>),
    /// Already accepted once.
    Seen,
    /// The key holds its maximum of live entries.
    Full,
}

/// Adds `c.entry` to a key's value (`None`: the key does not exist yet), dropping
/// expired entries. A malformed value is treated as empty.
pub fn insert(value: Option<&[u8]>, c: &Check) -> Insert {
    let value = value.filter(|v| v.len() % RECORD == 0).unwrap_or_default();
    let mut out = Vec::with_capacity(value.len() + RECORD);
    let mut live = 0;
    for r in value.chunks_exact(RECORD) {
        let expires = u64::from_le_bytes(r[..8].try_into().unwrap_or_default());
        if r[8..] == c.entry {
            return Insert::Seen;
        }
        if expires >= c.now {
            out.extend_from_slice(r);
            live += 1;
        }
    }
    if live >= c.per_key {
        return Insert::Full;
    }
    out.extend_from_slice(&c.expires_at.to_le_bytes());
    out.extend_from_slice(&c.entry);
    Insert::Write(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    #[test]
    fn remembers_refuses_repeats_and_forgets_when_expired() {
        let tag = secret_tag(1, b"1234");
        let a = check(&tag, 2, 3600, "aa", 1000, 1000);
        let Insert::Write(v) = insert(None, &a) else {
            panic!()
        };
        assert_eq!(insert(Some(&v), &a), Insert::Seen);
        let b = Check {
            entry: [7; 16],
            ..a.clone()
        };
        let Insert::Write(v2) = insert(Some(&v), &b) else {
            panic!()
        };
        let c = Check {
            entry: [9; 16],
            ..a.clone()
        };
        assert_eq!(insert(Some(&v2), &c), Insert::Full);
        // Once the window has passed, the old entries make room.
        let later = Check {
            now: 1000 + 3601,
            ..c.clone()
        };
        let Insert::Write(v3) = insert(Some(&v2), &later) else {
            panic!()
        };
        assert_eq!(v3.len(), RECORD);
        assert_eq!(insert(Some(b"garbage"), &a), insert(None, &a));
    }

    #[test]
    fn keys_name_the_secret_not_the_app_and_hold_no_secret() {
        let t1 = secret_tag(1, b"11223344");
        // One value under two Secret IDs is one memory (the ID is not signed).
        assert_eq!(t1, secret_tag(2, b"11223344"));
        assert_ne!(t1, secret_tag(1, b"11223345"));
        let k = check(&t1, 10, 60, "deadbeef", 1_767_225_600, 1_767_225_600);
        assert!(k.key.starts_with("s2s-guard/replay/v2/"));
        assert!(!k.key.contains("11223344") && !k.key.contains("deadbeef"));
    }

    /// The documented capacity holds: 100,000 distinct signatures of one secret,
    /// all created in the same second, are all remembered.
    #[test]
    fn the_advertised_capacity_is_held() {
        let capacity = 100_000;
        let pk = per_key(capacity);
        let tag = secret_tag(2, b"1234567890123456");
        let mut memory: HashMap<String, Vec<u8>> = HashMap::new();
        let now = 1_767_225_600;
        for i in 0..capacity {
            let c = check(&tag, pk, 30 * 86400, &format!("{i:064x}"), now as i64, now);
            match insert(memory.get(&c.key).map(Vec::as_slice), &c) {
                Insert::Write(v) => {
                    memory.insert(c.key, v);
                }
                other => panic!("signature {i} of {capacity}: {other:?}"),
            }
        }
        let largest = memory.values().map(|v| v.len() / RECORD).max().unwrap_or(0);
        assert!(largest < pk, "largest key {largest} of {pk}");
        assert_eq!(memory.len(), SHARDS as usize);
    }
}
