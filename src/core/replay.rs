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

/// Entries in a value [`insert`] wrote: all live (the expired ones were dropped),
/// the new one included.
pub fn entries(value: &[u8]) -> usize {
    value.len() / RECORD
}

/// Inserts per window of a worker's fill estimate ([`Fill`]).
pub const FILL_WINDOW: u32 = 256;

/// One worker's reading of how full the replay memories are, for the gauge
/// `s2s_guard.replay.fill_percent`: the fullest key among the worker's last
/// [`FILL_WINDOW`] inserts, in percent of its bound ([`per_key`]). 100: a key is
/// full, and signatures hashed to it are refused or accepted unremembered
/// (`replay_memory_full`, `replay_full_accepted`).
///
/// Built from what inserts already know, at no extra cost: each insert reads and
/// writes one key and so learns how many live entries it holds. Keys are chosen
/// by hash, so the keys a worker's inserts touch are a uniform sample of the keys
/// of the memories in use, and the fullest of a window of them is close to the
/// fullest key (the one that fills first). No reads of other keys, no tick; one
/// `record_metric` per window (so the reading also falls when entries expire), and
/// one each time an insert meets a full key (the gauge reads 100 while signatures
/// are refused or go unremembered, whatever other workers recorded).
///
/// Envoy keeps one gauge per name for the whole proxy, and `record_metric` sets it:
/// the worker that records last wins. Every worker samples the same shared
/// memories, so their readings agree up to sampling noise; each records its own at
/// the end of every window, never skipping a value it recorded before (another
/// worker may have changed the gauge since). Alert on the maximum over a few
/// minutes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Fill {
    /// The fullest key of the current window, percent.
    window_max: u64,
    /// Inserts in the current window.
    seen: u32,
}

impl Fill {
    /// Takes one insert's key: `live` entries (after the insert; `per_key` when the
    /// key was full) of `per_key`. Returns the value to record, if one is due.
    pub fn observe(&mut self, live: usize, per_key: usize) -> Option<u64> {
        let percent = (live.min(per_key) as u64 * 100) / per_key.max(1) as u64;
        self.window_max = self.window_max.max(percent);
        self.seen += 1;
        if self.seen >= FILL_WINDOW {
            let v = self.window_max;
            *self = Fill::default();
            return Some(v);
        }
        (percent >= 100).then_some(100)
    }
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

    #[test]
    fn a_window_reports_its_fullest_key_and_a_full_key_at_once() {
        let mut f = Fill::default();
        let window = |f: &mut Fill, live: usize| -> Vec<u64> {
            (0..FILL_WINDOW)
                .filter_map(|_| f.observe(live, 20))
                .collect()
        };
        // Within a window nothing is recorded; its end records its fullest key.
        for i in 0..FILL_WINDOW - 1 {
            assert_eq!(f.observe((i % 7) as usize, 20), None);
        }
        assert_eq!(f.observe(1, 20), Some(30), "6 of 20");
        // Every window records its reading, even unchanged (another worker may
        // have set the gauge since).
        assert_eq!(window(&mut f, 6), [30]);
        // Entries expired: the next window falls.
        assert_eq!(window(&mut f, 2), [10]);
        // A full key is recorded at once, each time it is met, and is the window's
        // reading; the next window without it falls back.
        assert_eq!(f.observe(20, 20), Some(100));
        assert_eq!(f.observe(20, 20), Some(100));
        assert_eq!(f.observe(25, 20), Some(100), "capped at 100");
        let rest: Vec<u64> = (0..FILL_WINDOW - 3)
            .filter_map(|_| f.observe(4, 20))
            .collect();
        assert_eq!(rest, [100]);
        assert_eq!(window(&mut f, 4), [20]);
        // `per_key` is never 0; were it 0, no division by zero either.
        assert_eq!(Fill::default().observe(1, 0), None);
    }

    #[test]
    fn entries_counts_what_an_insert_writes() {
        let tag = secret_tag(1, b"1234");
        let mut value: Option<Vec<u8>> = None;
        for i in 0..5u8 {
            let c = Check {
                entry: [i; 16],
                ..check(&tag, 10, 60, "x", 1000, 1000)
            };
            let Insert::Write(v) = insert(value.as_deref(), &c) else {
                panic!()
            };
            assert_eq!(entries(&v), usize::from(i) + 1);
            value = Some(v);
        }
        // Expired entries are dropped by the next insert, and not counted.
        let later = Check {
            entry: [9; 16],
            now: 1000 + 61,
            ..check(&tag, 10, 60, "x", 1061, 1061)
        };
        let Insert::Write(v) = insert(value.as_deref(), &later) else {
            panic!()
        };
        assert_eq!(entries(&v), 1);
    }

    /// What the gauge reads for a memory filled to its advertised capacity with
    /// uniformly hashed signatures: below 100 (nothing is refused yet) and high
    /// enough that an alert at 80 fires around the advertised capacity; at half the
    /// capacity, about half of that.
    #[test]
    fn the_reading_at_the_advertised_capacity() {
        let capacity = 100_000;
        let pk = per_key(capacity);
        let tag = secret_tag(2, b"1234567890123456");
        let mut memory: HashMap<String, Vec<u8>> = HashMap::new();
        let mut fill = Fill::default();
        let mut reading = 0;
        let mut at_half = 0;
        let now = 1_767_225_600;
        for i in 0..capacity {
            let c = check(&tag, pk, 86400, &format!("{i:064x}"), now as i64, now);
            let Insert::Write(v) = insert(memory.get(&c.key).map(Vec::as_slice), &c) else {
                panic!("signature {i}")
            };
            reading = fill.observe(entries(&v), pk).unwrap_or(reading);
            memory.insert(c.key, v);
            if i == capacity / 2 {
                at_half = reading;
            }
        }
        assert!((75..95).contains(&reading), "at capacity: {reading}");
        assert!((35..60).contains(&at_half), "at half: {at_half}");
    }
}
