//! Replay memory for accepted signatures, kept in Envoy shared data so that every
//! worker sees it. Pure: this module computes keys and new values; the adapter does
//! the get / compare-and-swap set.
//!
//! Layout: the freshness window is cut into `SLOTS_PER_WINDOW` time buckets by the
//! request's `created_at` (not arrival time), each split into `SHARDS` keys by the
//! entry's first byte. A ring of `slots` keys per shard is reused as buckets age out,
//! so memory is bounded by the window: an entry is forgotten only when its bucket is
//! older than the window, and a request that old is already refused as stale.
//! Entries are 16-byte hashes of (app, Secret ID, signature): no secret in clear.

use sha2::{Digest as _, Sha256};

pub const SHARDS: u64 = 16;
pub const SLOTS_PER_WINDOW: u64 = 32;
const ENTRY: usize = 16;

/// The memory's shape for one app.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shape {
    /// Seconds per bucket.
    pub bucket_secs: u64,
    /// Buckets in the ring (the window plus two, for the edges).
    pub slots: u64,
    /// Entries one key holds.
    pub per_key: usize,
}

impl Shape {
    /// A shape for a freshness window and a total capacity per window.
    pub fn new(window_secs: u64, capacity: usize) -> Shape {
        let bucket_secs = window_secs.div_ceil(SLOTS_PER_WINDOW).max(1);
        let slots = window_secs.div_ceil(bucket_secs) + 2;
        let per_key = capacity
            .div_ceil((SLOTS_PER_WINDOW * SHARDS) as usize)
            .max(1);
        Shape {
            bucket_secs,
            slots,
            per_key,
        }
    }
}

/// What to remember for one accepted request, and where.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Check {
    pub key: String,
    pub bucket: u64,
    pub entry: [u8; ENTRY],
    pub per_key: usize,
}

/// Builds the check for an accepted signature.
pub fn check(shape: Shape, app: &str, secret_id: u32, signature: &str, created_at: i64) -> Check {
    let mut h = Sha256::new();
    h.update(b"s2s-guard/replay\0");
    h.update(app.as_bytes());
    h.update([0]);
    h.update(secret_id.to_le_bytes());
    h.update(signature.as_bytes());
    let d = h.finalize();
    let mut entry = [0u8; ENTRY];
    entry.copy_from_slice(&d[..ENTRY]);
    let bucket = (created_at.max(0) as u64) / shape.bucket_secs;
    let shard = u64::from(entry[0]) % SHARDS;
    Check {
        key: format!(
            "s2s-guard/replay/v1/{}/{}/{shard}",
            hex::encode(&Sha256::digest(app.as_bytes())[..8]),
            bucket % shape.slots
        ),
        bucket,
        entry,
        per_key: shape.per_key,
    }
}

/// The result of adding an entry to a key's current value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Insert {
    /// Not seen: write this value (with the CAS that was read).
    Write(Vec<u8>),
    /// Already accepted once.
    Seen,
    /// The key holds its maximum.
    Full,
}

/// Adds `c.entry` to a key's value (`None`: the key does not exist yet). A value
/// from an older bucket of the ring is discarded; one from a newer bucket means the
/// request is older than the window, which the freshness check already refuses, so
/// it is treated as seen.
pub fn insert(value: Option<&[u8]>, c: &Check) -> Insert {
    let current = value.and_then(|v| {
        let stamp = u64::from_le_bytes(v.get(..8)?.try_into().ok()?);
        Some((stamp, &v[8..]))
    });
    let entries: &[u8] = match current {
        Some((stamp, rest)) if stamp == c.bucket => rest,
        Some((stamp, _)) if stamp > c.bucket => return Insert::Seen,
        _ => &[],
    };
    if entries.chunks_exact(ENTRY).any(|e| e == c.entry) {
        return Insert::Seen;
    }
    if entries.len() / ENTRY >= c.per_key {
        return Insert::Full;
    }
    let mut out = Vec::with_capacity(8 + entries.len() + ENTRY);
    out.extend_from_slice(&c.bucket.to_le_bytes());
    out.extend_from_slice(entries);
    out.extend_from_slice(&c.entry);
    Insert::Write(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn remembers_within_the_bucket_and_refuses_repeats() {
        let shape = Shape::new(3600, 32 * 16 * 2);
        assert_eq!(shape.per_key, 2);
        let a = check(shape, "app", 1, "aa", 1000);
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
        // The same key reused by a later bucket starts empty.
        let later = Check {
            bucket: a.bucket + shape.slots,
            ..c.clone()
        };
        assert!(matches!(insert(Some(&v2), &later), Insert::Write(_)));
        // An older bucket than the one stored: beyond the window.
        let older = Check {
            bucket: a.bucket - 1,
            ..c
        };
        assert_eq!(insert(Some(&v2), &older), Insert::Seen);
    }

    #[test]
    fn keys_hold_no_secret_and_spread_over_shards() {
        let shape = Shape::new(7 * 86400, 100_000);
        let k = check(shape, "abc123", 1, "deadbeef", 1_767_225_600);
        assert!(k.key.starts_with("s2s-guard/replay/v1/"));
        assert!(!k.key.contains("abc123"));
        let shards: std::collections::HashSet<String> = (0..200)
            .map(|i| check(shape, "abc123", 1, &format!("sig{i}"), 1_767_225_600).key)
            .collect();
        assert_eq!(shards.len(), SHARDS as usize);
    }
}
