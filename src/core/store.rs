//! The compact token store: a million tokens in about 60 bytes each.
//!
//! A store is one byte buffer in a fixed, documented layout (below), so the same
//! bytes serve three uses without conversion: the store a configuration compiles
//! to, the blob a fetcher publishes into shared data for every worker, and the
//! store a worker adopts from shared data (one copy out of the host, no parse, no
//! second allocation). Every read is a checked slice; [`TokenStore::from_blob`]
//! validates the structure once, so lookups never fail on a well-formed store and
//! never panic on a malformed one.
//!
//! Layout (integers little-endian):
//!
//! ```text
//! header   "S2ST" 1u8 bits:u8 0u16 entries:u32 records:u32 apps:u32 realms:u32
//!          extras_len:u32 ids_len:u32 app_bytes:u32 realm_bytes:u32 tag:[u8;32]
//! buckets  (2^bits + 1) × u32   first entry whose digest starts with each prefix
//! entries  entries × (digest [u8;32], slot u32)   sorted by digest;
//!          slot = record index | 1<<31 for a client secret
//! records  records × (id_end u32, app u32 (u32::MAX: none), realm u16, flags u8, scopes u8)
//! app_ends apps × u32, then app bytes; realm_ends realms × u32, then realm bytes
//! ids      the ids one after the other (record i's id ends at its id_end)
//! extras   validity windows and origins of the tokens that have them (flag EXTRA)
//! ```
//!
//! `tag` is the digest of the token set the store was compiled from, so a worker
//! can match a published store with the version record that announced it.

use subtle::ConstantTimeEq;

#[cfg(test)]
use crate::token::Token;
use crate::token::{digest, Digest, Kind, OriginRule, Scopes, TokenRef, Verified};

const MAGIC: &[u8; 4] = b"S2ST";
const FORMAT: u8 = 1;
const HEADER: usize = 4 + 1 + 1 + 2 + 4 * 8 + 32;
const ENTRY: usize = 36;
const RECORD: usize = 12;
const CLIENT_BIT: u32 = 1 << 31;
const NO_APP: u32 = u32::MAX;

const ACTIVE: u8 = 1;
const ALL_APPS: u8 = 2;
const EXTRA: u8 = 4;

/// Why a token could not be added; `at` is the position of the token at fault.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreError {
    DuplicateId {
        at: usize,
        id: String,
    },
    /// The secret's digest is already used by the token `other`.
    DuplicateSecret {
        at: usize,
        other: String,
    },
    /// More tokens, secrets or bytes than the layout's 31-bit indexes hold.
    TooLarge,
}

/// What a token has beyond the fixed record: rare, kept aside.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
struct Extra {
    not_before: Option<u64>,
    expires_at: Option<u64>,
    origins: Vec<OriginRule>,
}

impl Extra {
    fn of(t: &TokenRef) -> Option<Extra> {
        (t.not_before.is_some() || t.expires_at.is_some() || !t.origins.is_empty()).then(|| Extra {
            not_before: t.not_before,
            expires_at: t.expires_at,
            origins: t.origins.to_vec(),
        })
    }
}

/// All tokens of a policy, indexed by the digests of their secrets.
#[derive(Debug)]
pub struct TokenStore {
    blob: Vec<u8>,
    bits: u32,
    entries: usize,
    records: usize,
    buckets_at: usize,
    entries_at: usize,
    records_at: usize,
    app_ends_at: usize,
    app_bytes_at: usize,
    realm_ends_at: usize,
    realm_bytes_at: usize,
    ids_at: usize,
    apps: usize,
    realms: usize,
    /// Decoded from the extras section: (record index, extra), by record index.
    extras: Vec<(u32, Extra)>,
}

impl Default for TokenStore {
    fn default() -> TokenStore {
        StoreBuilder::default()
            .finish([0; 32])
            .expect("an empty store always builds")
    }
}

fn u32_at(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_le_bytes(b.get(at..at + 4)?.try_into().ok()?))
}

impl TokenStore {
    /// Number of tokens.
    pub fn len(&self) -> usize {
        self.records
    }

    pub fn is_empty(&self) -> bool {
        self.records == 0
    }

    /// Bytes held (the blob plus the decoded extras' share).
    pub fn size(&self) -> usize {
        self.blob.len()
    }

    /// The digest of the set this store was compiled from.
    pub fn tag(&self) -> Option<Digest> {
        self.blob.get(HEADER - 32..HEADER)?.try_into().ok()
    }

    /// Marks the store as compiled from the set with this digest.
    pub fn set_tag(&mut self, tag: Digest) {
        if let Some(t) = self.blob.get_mut(HEADER - 32..HEADER) {
            t.copy_from_slice(&tag);
        }
    }

    /// The store as bytes around its tag: what it holds, whatever set bytes it
    /// was compiled from.
    pub fn untagged(&self) -> (&[u8], &[u8]) {
        let cut = |r: std::ops::Range<usize>| self.blob.get(r).unwrap_or_default();
        (cut(0..HEADER - 32), cut(HEADER..self.blob.len()))
    }

    /// The store as bytes, for publishing into shared data.
    pub fn blob(&self) -> &[u8] {
        &self.blob
    }

    /// Adopts a published store, checking its whole structure first: `None` for
    /// anything that is not a well-formed store (the lookups then never fail).
    pub fn from_blob(blob: Vec<u8>) -> Option<TokenStore> {
        let (store, lens) = TokenStore::layout(blob)?;
        store.check(lens.0, lens.1, lens.2).then_some(store)
    }

    /// Reads the header and places the sections (every offset checked); the
    /// sections' contents are left to [`check`](Self::check). Also returns the
    /// lengths of the ids, app and realm arenas.
    fn layout(blob: Vec<u8>) -> Option<(TokenStore, (usize, usize, usize))> {
        let h = blob.get(..HEADER)?;
        if &h[..4] != MAGIC || h[4] != FORMAT {
            return None;
        }
        let bits = u32::from(h[5]);
        if bits > 24 {
            return None;
        }
        let field = |i: usize| u32_at(h, 8 + 4 * i).map(|v| v as usize);
        let (entries, records, apps, realms) = (field(0)?, field(1)?, field(2)?, field(3)?);
        let (extras_len, ids_len, app_bytes, realm_bytes) =
            (field(4)?, field(5)?, field(6)?, field(7)?);
        let buckets_at = HEADER;
        let entries_at = buckets_at.checked_add(((1usize << bits) + 1).checked_mul(4)?)?;
        let records_at = entries_at.checked_add(entries.checked_mul(ENTRY)?)?;
        let app_ends_at = records_at.checked_add(records.checked_mul(RECORD)?)?;
        let app_bytes_at = app_ends_at.checked_add(apps.checked_mul(4)?)?;
        let realm_ends_at = app_bytes_at.checked_add(app_bytes)?;
        let realm_bytes_at = realm_ends_at.checked_add(realms.checked_mul(4)?)?;
        let ids_at = realm_bytes_at.checked_add(realm_bytes)?;
        let extras_at = ids_at.checked_add(ids_len)?;
        if extras_at.checked_add(extras_len)? != blob.len() {
            return None;
        }
        let extras = decode_extras(blob.get(extras_at..)?, records)?;
        let store = TokenStore {
            blob,
            bits,
            entries,
            records,
            buckets_at,
            entries_at,
            records_at,
            app_ends_at,
            app_bytes_at,
            realm_ends_at,
            realm_bytes_at,
            ids_at,
            apps,
            realms,
            extras,
        };
        Some((store, (ids_len, app_bytes, realm_bytes)))
    }

    /// The structural checks [`from_blob`](Self::from_blob) relies on.
    fn check(&self, ids_len: usize, app_bytes: usize, realm_bytes: usize) -> bool {
        let b = &self.blob;
        // Arenas: ends non-decreasing, within their bytes, each piece UTF-8.
        let arena = |ends_at: usize, n: usize, bytes_at: usize, len: usize| {
            let mut prev = 0usize;
            (0..n).all(|i| match u32_at(b, ends_at + 4 * i) {
                Some(end) => {
                    let end = end as usize;
                    let ok = end >= prev
                        && end <= len
                        && b.get(bytes_at + prev..bytes_at + end)
                            .is_some_and(|p| std::str::from_utf8(p).is_ok());
                    prev = end;
                    ok
                }
                None => false,
            })
        };
        if !arena(self.app_ends_at, self.apps, self.app_bytes_at, app_bytes)
            || !arena(
                self.realm_ends_at,
                self.realms,
                self.realm_bytes_at,
                realm_bytes,
            )
        {
            return false;
        }
        let mut prev = 0usize;
        for i in 0..self.records {
            let Some(r) = self.raw_record(i) else {
                return false;
            };
            let end = r.id_end as usize;
            if end < prev
                || end > ids_len
                || b.get(self.ids_at + prev..self.ids_at + end)
                    .is_none_or(|p| std::str::from_utf8(p).is_err())
                || (r.app != NO_APP && r.app as usize >= self.apps)
                || usize::from(r.realm) >= self.realms
                || (r.flags & EXTRA != 0) != self.extra(i).is_some()
            {
                return false;
            }
            prev = end;
        }
        // Buckets: non-decreasing, ending at the entry count, each entry in its
        // bucket; entries sorted and pointing at records.
        let n_buckets = 1usize << self.bits;
        let mut prev = 0usize;
        for k in 0..=n_buckets {
            let Some(v) = u32_at(b, self.buckets_at + 4 * k) else {
                return false;
            };
            let v = v as usize;
            if v < prev
                || v > self.entries
                || (k == 0 && v != 0)
                || (k == n_buckets && v != self.entries)
            {
                return false;
            }
            for e in prev..v {
                if self.bucket_of(self.digest_at(e)) != k - 1 {
                    return false;
                }
            }
            prev = v;
        }
        (0..self.entries).all(|e| {
            (e == 0 || self.digest_at(e - 1) < self.digest_at(e))
                && u32_at(b, self.entries_at + e * ENTRY + 32)
                    .is_some_and(|s| ((s & !CLIENT_BIT) as usize) < self.records)
        })
    }

    fn bucket_of(&self, d: &[u8]) -> usize {
        let top = d
            .get(..4)
            .and_then(|p| p.try_into().ok())
            .map_or(0, u32::from_be_bytes);
        (u64::from(top) >> (32 - self.bits)) as usize
    }

    fn digest_at(&self, e: usize) -> &[u8] {
        let at = self.entries_at + e * ENTRY;
        self.blob.get(at..at + 32).unwrap_or(&[])
    }

    fn raw_record(&self, i: usize) -> Option<RawRecord> {
        let at = self.records_at + i * RECORD;
        let r = self.blob.get(at..at + RECORD)?;
        Some(RawRecord {
            id_end: u32::from_le_bytes(r[0..4].try_into().ok()?),
            app: u32::from_le_bytes(r[4..8].try_into().ok()?),
            realm: u16::from_le_bytes(r[8..10].try_into().ok()?),
            flags: r[10],
            scopes: r[11],
        })
    }

    fn extra(&self, i: usize) -> Option<&Extra> {
        let at = self
            .extras
            .binary_search_by_key(&(i as u32), |e| e.0)
            .ok()?;
        Some(&self.extras[at].1)
    }

    fn piece(&self, ends_at: usize, bytes_at: usize, i: usize) -> Option<&str> {
        let start = if i == 0 {
            0
        } else {
            u32_at(&self.blob, ends_at + 4 * (i - 1))? as usize
        };
        let end = u32_at(&self.blob, ends_at + 4 * i)? as usize;
        std::str::from_utf8(self.blob.get(bytes_at + start..bytes_at + end)?).ok()
    }

    /// The token at record `i`.
    pub fn token(&self, i: usize) -> Option<TokenRef<'_>> {
        let r = self.raw_record(i)?;
        let start = match i {
            0 => 0,
            _ => self.raw_record(i - 1)?.id_end as usize,
        };
        let id = self
            .blob
            .get(self.ids_at + start..self.ids_at + r.id_end as usize)?;
        let extra = if r.flags & EXTRA != 0 {
            self.extra(i)
        } else {
            None
        };
        Some(TokenRef {
            id: std::str::from_utf8(id).ok()?,
            app: match r.app {
                NO_APP => None,
                a => Some(self.piece(self.app_ends_at, self.app_bytes_at, a as usize)?),
            },
            realm: self.piece(
                self.realm_ends_at,
                self.realm_bytes_at,
                usize::from(r.realm),
            )?,
            scopes: Scopes::from_bits(r.scopes),
            active: r.flags & ACTIVE != 0,
            all_apps: r.flags & ALL_APPS != 0,
            not_before: extra.and_then(|e| e.not_before),
            expires_at: extra.and_then(|e| e.expires_at),
            origins: extra.map_or(&[], |e| e.origins.as_slice()),
        })
    }

    /// Every token, in configuration order.
    pub fn tokens(&self) -> impl Iterator<Item = TokenRef<'_>> {
        (0..self.records).filter_map(|i| self.token(i))
    }

    /// Every secret digest with its token and kind (for publishing to shared data).
    pub fn entries(&self) -> impl Iterator<Item = (Digest, TokenRef<'_>, Kind)> {
        (0..self.entries).filter_map(|e| {
            let d: Digest = self.digest_at(e).try_into().ok()?;
            let (rec, kind) = self.slot(e)?;
            Some((d, self.token(rec)?, kind))
        })
    }

    fn slot(&self, e: usize) -> Option<(usize, Kind)> {
        let s = u32_at(&self.blob, self.entries_at + e * ENTRY + 32)?;
        let kind = if s & CLIENT_BIT != 0 {
            Kind::Client
        } else {
            Kind::Server
        };
        Some(((s & !CLIENT_BIT) as usize, kind))
    }

    /// Finds the token whose secret is `presented`.
    ///
    /// The search runs on the digest of the presented value, so its timing depends
    /// only on that digest, never on how much of a stored secret it matched; the
    /// match is then confirmed with a constant-time comparison of the full digest,
    /// the only way to obtain a [`Verified`].
    pub fn verify(&self, presented: &[u8]) -> Option<Verified<'_>> {
        let d = digest(presented);
        let at = self.find(&d)?;
        if !bool::from(self.digest_at(at).ct_eq(&d[..])) {
            return None;
        }
        let (rec, kind) = self.slot(at)?;
        Some(Verified::stored(self.token(rec)?, kind))
    }

    /// Does the store hold a token with this secret digest? (Bookkeeping of
    /// published digests: no secret is presented.)
    pub fn contains_digest(&self, d: &Digest) -> bool {
        self.find(d).is_some()
    }

    /// The entry of a digest: its bucket, then a binary search in it.
    fn find(&self, d: &Digest) -> Option<usize> {
        let k = self.bucket_of(d);
        let lo = u32_at(&self.blob, self.buckets_at + 4 * k)? as usize;
        let hi = u32_at(&self.blob, self.buckets_at + 4 * k + 4)? as usize;
        let (mut lo, mut hi) = (lo, hi.min(self.entries));
        while lo < hi {
            let mid = lo + (hi - lo) / 2;
            match self.digest_at(mid).cmp(&d[..]) {
                std::cmp::Ordering::Less => lo = mid + 1,
                std::cmp::Ordering::Greater => hi = mid,
                std::cmp::Ordering::Equal => return Some(mid),
            }
        }
        None
    }
}

struct RawRecord {
    id_end: u32,
    app: u32,
    realm: u16,
    flags: u8,
    scopes: u8,
}

/// Collects tokens, then lays the store out in one buffer ([`finish`](Self::finish)).
/// Duplicate ids and secrets are found at the end, by sorting, rather than with
/// maps kept while a million tokens stream in.
#[derive(Debug, Default)]
pub struct StoreBuilder {
    entries: Vec<(Digest, u32)>,
    records: Vec<RawRecordBuf>,
    ids: Vec<u8>,
    /// App name -> its index (below `NO_APP`); `String -> usize` as the
    /// configuration compiler's maps, so hashbrown's code is compiled once for
    /// them all.
    apps: std::collections::HashMap<String, usize>,
    app_list: Vec<Box<str>>,
    realms: Vec<Box<str>>,
    extras: Vec<(u32, Extra)>,
}

#[derive(Debug, Clone, Copy)]
struct RawRecordBuf {
    id_end: u32,
    app: u32,
    realm: u16,
    flags: u8,
    scopes: u8,
}

impl StoreBuilder {
    /// A builder for about `tokens` tokens.
    pub fn with_capacity(tokens: usize) -> StoreBuilder {
        StoreBuilder {
            entries: Vec::with_capacity(tokens),
            records: Vec::with_capacity(tokens),
            ids: Vec::with_capacity(tokens * 6),
            ..StoreBuilder::default()
        }
    }

    pub fn len(&self) -> usize {
        self.records.len()
    }

    pub fn is_empty(&self) -> bool {
        self.records.is_empty()
    }

    /// Adds a token with its secrets (digests and kinds). Its position is the
    /// number of tokens added before it.
    pub fn push(&mut self, token: &TokenRef, secrets: &[(Digest, Kind)]) -> Result<(), StoreError> {
        let at = self.records.len();
        let rec = u32::try_from(at)
            .ok()
            .filter(|r| r & CLIENT_BIT == 0)
            .ok_or(StoreError::TooLarge)?;
        self.ids.extend_from_slice(token.id.as_bytes());
        let id_end = u32::try_from(self.ids.len()).map_err(|_| StoreError::TooLarge)?;
        let app = match token.app {
            None => NO_APP,
            Some(a) => match self.apps.get(a) {
                Some(&i) => i as u32,
                None => {
                    let i = u32::try_from(self.app_list.len())
                        .ok()
                        .filter(|&i| i != NO_APP)
                        .ok_or(StoreError::TooLarge)?;
                    self.apps.insert(a.into(), i as usize);
                    self.app_list.push(a.into());
                    i
                }
            },
        };
        let realm = match self.realms.iter().position(|r| &**r == token.realm) {
            Some(i) => i,
            None => {
                self.realms.push(token.realm.into());
                self.realms.len() - 1
            }
        };
        let realm = u16::try_from(realm).map_err(|_| StoreError::TooLarge)?;
        let extra = Extra::of(token);
        let flags = if token.active { ACTIVE } else { 0 }
            | if token.all_apps { ALL_APPS } else { 0 }
            | if extra.is_some() { EXTRA } else { 0 };
        if let Some(e) = extra {
            self.extras.push((rec, e));
        }
        self.records.push(RawRecordBuf {
            id_end,
            app,
            realm,
            flags,
            scopes: token.scopes.bits(),
        });
        for (d, kind) in secrets {
            let slot = match kind {
                Kind::Server => rec,
                Kind::Client => rec | CLIENT_BIT,
            };
            self.entries.push((*d, slot));
        }
        Ok(())
    }

    fn id(&self, i: usize) -> String {
        let start = if i == 0 {
            0
        } else {
            self.records[i - 1].id_end as usize
        };
        String::from_utf8_lossy(&self.ids[start..self.records[i].id_end as usize]).into_owned()
    }

    /// The first duplicate, in the order a streaming check would have met it:
    /// the smallest position that repeats an earlier id or secret.
    fn first_duplicate(&mut self) -> Option<StoreError> {
        let mut worst: Option<StoreError> = None;
        let at_of = |e: &StoreError| match e {
            StoreError::DuplicateId { at, .. } | StoreError::DuplicateSecret { at, .. } => *at,
            StoreError::TooLarge => 0,
        };
        let keep = |e: StoreError, worst: &mut Option<StoreError>| {
            if worst.as_ref().is_none_or(|w| at_of(&e) < at_of(w)) {
                *worst = Some(e);
            }
        };
        // Entries are sorted by digest already (equal ones in no particular
        // order): in each run of equal digests, the second token to use it
        // repeats the first's.
        let rec = |e: &(Digest, u32)| (e.1 & !CLIENT_BIT) as usize;
        for run in self.entries.chunk_by(|a, b| a.0 == b.0) {
            let Some((head, rest)) = run.split_first() else {
                continue;
            };
            let (mut first, mut second) = (rec(head), usize::MAX);
            for r in rest.iter().map(rec) {
                if r < first {
                    (first, second) = (r, first);
                } else if r < second {
                    second = r;
                }
            }
            if second != usize::MAX {
                keep(
                    StoreError::DuplicateSecret {
                        at: second,
                        other: self.id(first),
                    },
                    &mut worst,
                );
            }
        }
        let id_of = |i: usize, recs: &[RawRecordBuf]| -> std::ops::Range<usize> {
            let start = if i == 0 {
                0
            } else {
                recs[i - 1].id_end as usize
            };
            start..recs[i].id_end as usize
        };
        // By id, ties by position.
        let mut order: Vec<(&[u8], u32)> = (0..self.records.len())
            .zip(0u32..)
            .map(|(i, at)| (&self.ids[id_of(i, &self.records)], at))
            .collect();
        crate::order::by_bytes(&mut order);
        for w in order.windows(2) {
            let b = w[1].1 as usize;
            if w[0].0 == w[1].0 {
                keep(
                    StoreError::DuplicateId {
                        at: b,
                        id: self.id(b),
                    },
                    &mut worst,
                );
            }
        }
        worst
    }

    /// Lays the store out. `tag` identifies the set it comes from.
    pub fn finish(mut self, tag: Digest) -> Result<TokenStore, StoreError> {
        // By digest (equal digests are duplicates, refused below).
        crate::order::digests(&mut self.entries);
        if let Some(e) = self.first_duplicate() {
            return Err(e);
        }
        let n = self.entries.len();
        // About four entries per bucket: a short binary search after one index.
        let bits = (usize::BITS - (n / 4).leading_zeros()).min(20);
        let n_buckets = 1usize << bits;
        let app_bytes: usize = self.app_list.iter().map(|a| a.len()).sum();
        let realm_bytes: usize = self.realms.iter().map(|r| r.len()).sum();
        let extras = encode_extras(&self.extras);
        let size = HEADER
            + (n_buckets + 1) * 4
            + n * ENTRY
            + self.records.len() * RECORD
            + self.app_list.len() * 4
            + app_bytes
            + self.realms.len() * 4
            + realm_bytes
            + self.ids.len()
            + extras.len();
        let u = |v: usize| u32::try_from(v).map_err(|_| StoreError::TooLarge);
        if size > i32::MAX as usize {
            return Err(StoreError::TooLarge);
        }
        let mut b = Vec::with_capacity(size);
        b.extend_from_slice(MAGIC);
        b.push(FORMAT);
        b.push(bits as u8);
        b.extend_from_slice(&[0, 0]);
        for v in [
            n,
            self.records.len(),
            self.app_list.len(),
            self.realms.len(),
            extras.len(),
            self.ids.len(),
            app_bytes,
            realm_bytes,
        ] {
            b.extend_from_slice(&u(v)?.to_le_bytes());
        }
        b.extend_from_slice(&tag);
        // Buckets by the digests' leading bits (entries are sorted, so each
        // bucket is a run).
        let mut at = 0usize;
        for k in 0..n_buckets {
            b.extend_from_slice(&u(at)?.to_le_bytes());
            while at < n && {
                let d = &self.entries[at].0;
                let top = u32::from_be_bytes([d[0], d[1], d[2], d[3]]);
                ((u64::from(top) >> (32 - bits)) as usize) == k
            } {
                at += 1;
            }
        }
        b.extend_from_slice(&u(n)?.to_le_bytes());
        for (d, slot) in &self.entries {
            b.extend_from_slice(d);
            b.extend_from_slice(&slot.to_le_bytes());
        }
        drop(std::mem::take(&mut self.entries));
        for r in &self.records {
            b.extend_from_slice(&r.id_end.to_le_bytes());
            b.extend_from_slice(&r.app.to_le_bytes());
            b.extend_from_slice(&r.realm.to_le_bytes());
            b.push(r.flags);
            b.push(r.scopes);
        }
        let mut end = 0usize;
        for a in &self.app_list {
            end += a.len();
            b.extend_from_slice(&u(end)?.to_le_bytes());
        }
        for a in &self.app_list {
            b.extend_from_slice(a.as_bytes());
        }
        let mut end = 0usize;
        for r in &self.realms {
            end += r.len();
            b.extend_from_slice(&u(end)?.to_le_bytes());
        }
        for r in &self.realms {
            b.extend_from_slice(r.as_bytes());
        }
        b.extend_from_slice(&self.ids);
        b.extend_from_slice(&extras);
        debug_assert_eq!(b.len(), size);
        // Written by the layout it is read with: one place computes the offsets.
        TokenStore::layout(b)
            .map(|(store, _)| store)
            .ok_or(StoreError::TooLarge)
    }
}

fn encode_extras(extras: &[(u32, Extra)]) -> Vec<u8> {
    let mut b = Vec::new();
    for (rec, e) in extras {
        b.extend_from_slice(&rec.to_le_bytes());
        let mut w = crate::token::RecordWriter(&mut b);
        w.opt_u64(e.not_before);
        w.opt_u64(e.expires_at);
        w.origins(&e.origins);
    }
    b
}

fn decode_extras(mut b: &[u8], records: usize) -> Option<Vec<(u32, Extra)>> {
    let mut out: Vec<(u32, Extra)> = Vec::new();
    while !b.is_empty() {
        let mut c = crate::token::Cursor(b);
        let rec = c.u32()?;
        if rec as usize >= records || out.last().is_some_and(|l| l.0 >= rec) {
            return None;
        }
        let extra = Extra {
            not_before: c.opt_u64()?,
            expires_at: c.opt_u64()?,
            origins: c.origins()?,
        };
        out.push((rec, extra));
        b = c.0;
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::token::Scope;

    fn token(id: &str, app: Option<&str>) -> Token {
        Token {
            app: app.map(str::to_string),
            realm: std::rc::Rc::from("adjust"),
            ..Token::new(id)
        }
    }

    fn build(tokens: &[(Token, Vec<(Digest, Kind)>)]) -> Result<TokenStore, StoreError> {
        let mut b = StoreBuilder::default();
        for (t, s) in tokens {
            b.push(&t.as_ref(), s)?;
        }
        b.finish([7; 32])
    }

    #[test]
    fn verify_finds_by_secret_and_kind() {
        let s = build(&[(
            token("a", Some("app1")),
            vec![
                (digest(b"srv"), Kind::Server),
                (digest(b"cli"), Kind::Client),
            ],
        )])
        .unwrap();
        let v = s.verify(b"srv").unwrap();
        assert_eq!(v.token().id, "a");
        assert_eq!(v.token().app, Some("app1"));
        assert_eq!(v.token().realm, "adjust");
        assert_eq!(s.verify(b"cli").unwrap().kind, Kind::Client);
        assert!(s.verify(b"other").is_none());
        assert!(s.verify(b"").is_none());
        assert_eq!(s.tag(), Some([7; 32]));
    }

    #[test]
    fn every_field_round_trips_through_the_blob() {
        let mut many = Vec::new();
        for i in 0..5000 {
            let mut t = token(&format!("tok-{i}"), (i % 3 != 0).then_some("app"));
            t.scopes = [Scope::Events, Scope::Gdpr].into_iter().collect();
            t.active = i % 7 != 0;
            t.all_apps = i % 3 == 0;
            if i % 100 == 0 {
                t.not_before = Some(10);
                t.expires_at = Some(20 + i as u64);
                t.origins = vec![OriginRule::parse("*.example.com").unwrap()];
            }
            many.push((t, vec![(digest(format!("s{i}").as_bytes()), Kind::Server)]));
        }
        let s = build(&many).unwrap();
        let adopted = TokenStore::from_blob(s.blob().to_vec()).expect("well-formed");
        for store in [&s, &adopted] {
            assert_eq!(store.len(), 5000);
            for (i, (t, _)) in many.iter().enumerate() {
                let v = store.verify(format!("s{i}").as_bytes()).unwrap();
                assert_eq!(v.token(), t.as_ref(), "token {i}");
                assert_eq!(store.token(i).unwrap(), t.as_ref());
            }
        }
        assert_eq!(adopted.entries().count(), 5000);
        // The fetcher's bookkeeping: every listed digest is found, no other.
        for (d, _, _) in adopted.entries() {
            assert!(s.contains_digest(&d));
        }
        for i in 5000..6000 {
            assert!(!s.contains_digest(&digest(format!("s{i}").as_bytes())));
        }
    }

    #[test]
    fn duplicates_are_found_in_stream_order() {
        let secret = |s: &[u8]| vec![(digest(s), Kind::Server)];
        assert_eq!(
            build(&[
                (token("a", None), secret(b"x")),
                (token("b", None), secret(b"y")),
                (token("a", None), secret(b"z")),
                (token("c", None), secret(b"x")),
            ])
            .unwrap_err(),
            StoreError::DuplicateId {
                at: 2,
                id: "a".into()
            }
        );
        assert_eq!(
            build(&[
                (token("a", None), secret(b"x")),
                (token("b", None), secret(b"x")),
            ])
            .unwrap_err(),
            StoreError::DuplicateSecret {
                at: 1,
                other: "a".into()
            }
        );
        assert_eq!(
            build(&[(
                token("a", None),
                vec![(digest(b"x"), Kind::Server), (digest(b"x"), Kind::Client)]
            )])
            .unwrap_err(),
            StoreError::DuplicateSecret {
                at: 0,
                other: "a".into()
            }
        );
        // Many tokens sharing one secret (in any order after the sort): the
        // second is reported, against the first; ids are distinct.
        let many: Vec<(Token, Vec<(Digest, Kind)>)> = (0..40)
            .map(|i| {
                let s: &[u8] = if i % 3 == 1 { b"shared" } else { b"own" };
                let own = format!("{s:?}{i}");
                let d = if i % 3 == 1 {
                    secret(s)
                } else {
                    secret(own.as_bytes())
                };
                (token(&format!("t{i}"), None), d)
            })
            .collect();
        assert_eq!(
            build(&many).unwrap_err(),
            StoreError::DuplicateSecret {
                at: 4,
                other: "t1".into()
            }
        );
    }

    #[test]
    fn malformed_blobs_are_refused_without_panic() {
        let s = build(&[(token("a", Some("x")), vec![(digest(b"k"), Kind::Server)])]).unwrap();
        let good = s.blob().to_vec();
        assert!(TokenStore::from_blob(good.clone()).is_some());
        for cut in 0..good.len() {
            assert!(
                TokenStore::from_blob(good[..cut].to_vec()).is_none(),
                "cut {cut}"
            );
        }
        for at in 0..good.len() {
            for x in [0x01u8, 0x80, 0xff] {
                let mut bad = good.clone();
                bad[at] ^= x;
                // Either refused, or a store that still answers without panicking.
                if let Some(st) = TokenStore::from_blob(bad) {
                    let _ = st.verify(b"k");
                    let _ = st.tokens().count();
                }
            }
        }
        assert!(TokenStore::from_blob(b"junk".to_vec()).is_none());
    }

    #[test]
    fn an_empty_store_answers_nothing() {
        let s = TokenStore::default();
        assert!(s.is_empty());
        assert!(s.verify(b"x").is_none());
        assert!(TokenStore::from_blob(s.blob().to_vec()).is_some());
    }
}
