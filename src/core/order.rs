//! Sorting on the configuration side, with as few copies of std's sort code as
//! possible: every `sort`/`sort_unstable` call on another element type or with
//! another comparator compiles std's sort anew into the .wasm (3 to 20 KB each).
//!
//! - Everything sorted by a name (token ids, app names, realms, messages) goes
//!   through [`by_bytes`], the one instantiation of std's sort: byte-string keys,
//!   ties by position, so the order is the stable sort's;
//! - the token store's secret digests through [`digests`], an in-place radix
//!   sort on the digests' bytes (no copy of a million entries, no comparison
//!   sort's `n log n`).

use crate::token::Digest;

/// Sorts byte-string keys, ties by position (the keys' second half). std's
/// stable sort: it takes the runs already in order as they are (token ids
/// generated in sequence are mostly such runs: a million sort in a quarter of
/// the unstable sort's time).
#[inline(never)]
pub fn by_bytes(keys: &mut [(&[u8], u32)]) {
    keys.sort();
}

/// Sorts `v` by `name`, stably (equal names keep their order), as
/// `v.sort_by(|a, b| name(a).cmp(name(b)))` would.
pub fn by_name<T>(v: &mut Vec<T>, name: impl Fn(&T) -> &[u8]) {
    let order: Vec<u32> = {
        let mut keys: Vec<(&[u8], u32)> = v.iter().zip(0u32..).map(|(t, i)| (name(t), i)).collect();
        by_bytes(&mut keys);
        keys.into_iter().map(|(_, i)| i).collect()
    };
    let mut old: Vec<Option<T>> = std::mem::take(v).into_iter().map(Some).collect();
    v.extend(
        order
            .into_iter()
            .filter_map(|i| old.get_mut(i as usize).and_then(Option::take)),
    );
}

/// Sorts strings (byte order is `str`'s order).
pub fn strings(v: &mut Vec<String>) {
    by_name(v, |s| s.as_bytes());
}

/// Sorts (digest, slot) entries by digest, in place. Entries with equal digests
/// end up adjacent, in no particular order.
pub fn digests(v: &mut [(Digest, u32)]) {
    radix(v, 0);
}

/// Runs up to this long are sorted by insertion.
const SMALL: usize = 16;

/// American flag sort on byte `byte` of the digests, then each bucket on the
/// next byte: at most 32 levels whatever the digests (equal ones included).
fn radix(v: &mut [(Digest, u32)], byte: usize) {
    if v.len() <= SMALL || byte >= 32 {
        insertion(v);
        return;
    }
    let key = |e: &(Digest, u32)| usize::from(e.0.get(byte).copied().unwrap_or(0));
    let mut start = [0usize; 257];
    for e in v.iter() {
        start[key(e) + 1] += 1;
    }
    for b in 0..256 {
        start[b + 1] += start[b];
    }
    // Each bucket fills from its start: the entry at a bucket's next free
    // place is swapped to the next free place of its own bucket.
    let mut next = [0usize; 256];
    next.copy_from_slice(&start[..256]);
    for b in 0..256 {
        let end = start[b + 1];
        while next[b] < end {
            let k = key(&v[next[b]]);
            if k == b {
                next[b] += 1;
            } else {
                v.swap(next[b], next[k]);
                next[k] += 1;
            }
        }
    }
    for b in 0..256 {
        if start[b + 1] - start[b] > 1 {
            radix(&mut v[start[b]..start[b + 1]], byte + 1);
        }
    }
}

fn insertion(v: &mut [(Digest, u32)]) {
    for i in 1..v.len() {
        let mut j = i;
        while j > 0 && v[j].0 < v[j - 1].0 {
            v.swap(j, j - 1);
            j -= 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn by_name_is_stable() {
        let mut v = vec![("b", 0), ("a", 1), ("b", 2), ("a", 3), ("", 4)];
        by_name(&mut v, |t| t.0.as_bytes());
        assert_eq!(v, [("", 4), ("a", 1), ("a", 3), ("b", 0), ("b", 2)]);
        let mut s: Vec<String> = ["z", "ab", "a", "é", "Z"].map(String::from).to_vec();
        let mut want = s.clone();
        want.sort();
        strings(&mut s);
        assert_eq!(s, want);
    }

    #[test]
    fn digests_sort_as_a_comparison_sort() {
        // Pseudo-random digests, runs sharing long prefixes, and duplicates.
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut v: Vec<(Digest, u32)> = Vec::new();
        for i in 0..5000u32 {
            let mut d = [0u8; 32];
            for b in d.iter_mut() {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                *b = x as u8;
            }
            match i % 5 {
                0 => d[..20].fill(7),
                1 => d[..32].fill(3),
                _ => {}
            }
            v.push((d, i));
        }
        for n in [0, 1, 2, 25, 300, 5000] {
            let mut a = v[..n].to_vec();
            let mut b = a.clone();
            digests(&mut a);
            b.sort_by_key(|p| p.0);
            let da: Vec<Digest> = a.iter().map(|e| e.0).collect();
            let db: Vec<Digest> = b.iter().map(|e| e.0).collect();
            assert_eq!(da, db);
            let mut sa: Vec<u32> = a.iter().map(|e| e.1).collect();
            sa.sort_unstable();
            assert_eq!(sa, (0..n as u32).collect::<Vec<_>>());
        }
    }
}
