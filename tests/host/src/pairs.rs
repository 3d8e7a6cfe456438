//! The proxy-wasm "pairs" encoding of header maps, as Envoy writes and reads it:
//! a little-endian `u32` count, then per pair the `u32` key and value lengths,
//! then the keys and values, each followed by a NUL byte.

/// A header map: lower-case names, byte values (values need not be UTF-8).
pub type Headers = Vec<(String, Vec<u8>)>;

/// Why a guest-supplied pairs buffer could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PairsError {
    Truncated,
    MissingNul,
    NonUtf8Name,
}

impl std::fmt::Display for PairsError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            PairsError::Truncated => f.write_str("header pairs buffer is truncated"),
            PairsError::MissingNul => f.write_str("header pairs buffer lacks a NUL terminator"),
            PairsError::NonUtf8Name => f.write_str("header name is not UTF-8"),
        }
    }
}

/// Encodes a header map.
pub fn encode(map: &[(String, Vec<u8>)]) -> Vec<u8> {
    let size = 4 + map
        .iter()
        .map(|(k, v)| 10 + k.len() + v.len())
        .sum::<usize>();
    let mut out = Vec::with_capacity(size);
    out.extend_from_slice(&(map.len() as u32).to_le_bytes());
    for (k, v) in map {
        out.extend_from_slice(&(k.len() as u32).to_le_bytes());
        out.extend_from_slice(&(v.len() as u32).to_le_bytes());
    }
    for (k, v) in map {
        out.extend_from_slice(k.as_bytes());
        out.push(0);
        out.extend_from_slice(v);
        out.push(0);
    }
    out
}

fn read_u32(buf: &[u8], at: usize) -> Result<usize, PairsError> {
    let bytes = buf.get(at..at + 4).ok_or(PairsError::Truncated)?;
    Ok(u32::from_le_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]) as usize)
}

/// Decodes a header map; an empty buffer is an empty map (as Envoy treats it).
pub fn decode(buf: &[u8]) -> Result<Headers, PairsError> {
    if buf.is_empty() {
        return Ok(Vec::new());
    }
    let count = read_u32(buf, 0)?;
    let header_len = count
        .checked_mul(8)
        .and_then(|n| n.checked_add(4))
        .ok_or(PairsError::Truncated)?;
    if header_len > buf.len() {
        return Err(PairsError::Truncated);
    }
    let mut pos = header_len;
    let mut out = Vec::with_capacity(count);
    for i in 0..count {
        let klen = read_u32(buf, 4 + i * 8)?;
        let vlen = read_u32(buf, 8 + i * 8)?;
        let key = take(buf, &mut pos, klen)?;
        let value = take(buf, &mut pos, vlen)?;
        let key = String::from_utf8(key.to_vec()).map_err(|_| PairsError::NonUtf8Name)?;
        out.push((key, value.to_vec()));
    }
    Ok(out)
}

fn take<'a>(buf: &'a [u8], pos: &mut usize, len: usize) -> Result<&'a [u8], PairsError> {
    let end = pos.checked_add(len).ok_or(PairsError::Truncated)?;
    let slice = buf.get(*pos..end).ok_or(PairsError::Truncated)?;
    match buf.get(end) {
        Some(0) => {}
        Some(_) => return Err(PairsError::MissingNul),
        None => return Err(PairsError::Truncated),
    }
    *pos = end + 1;
    Ok(slice)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_including_binary_values() {
        let map: Headers = vec![
            (":path".into(), b"/event?x=1".to_vec()),
            ("authorization".into(), b"Bearer \xff\x00abc".to_vec()),
            ("empty".into(), Vec::new()),
        ];
        let enc = encode(&map);
        assert_eq!(decode(&enc).unwrap(), map);
    }

    #[test]
    fn layout_matches_the_abi() {
        let enc = encode(&[("a".into(), b"bc".to_vec())]);
        assert_eq!(
            enc,
            [1, 0, 0, 0, 1, 0, 0, 0, 2, 0, 0, 0, b'a', 0, b'b', b'c', 0]
        );
    }

    #[test]
    fn malformed_buffers_are_errors_not_panics() {
        assert_eq!(decode(&[]).unwrap(), Vec::new());
        assert_eq!(decode(&[1, 0, 0]), Err(PairsError::Truncated));
        assert_eq!(decode(&[255, 255, 255, 255]), Err(PairsError::Truncated));
        let mut enc = encode(&[("a".into(), b"b".to_vec())]);
        let last = enc.len() - 1;
        enc[last] = b'x';
        assert_eq!(decode(&enc), Err(PairsError::MissingNul));
        enc.truncate(last);
        assert_eq!(decode(&enc), Err(PairsError::Truncated));
    }
}
