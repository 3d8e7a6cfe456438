//! The request as the decision core sees it: bytes, never assumed UTF-8.
//!
//! Built once per request by the adapter from one host call (the header pairs), so
//! the core never calls the host and can be tested natively with the same inputs.

use std::borrow::Cow;
/// Longest header value, path or body field the core looks at; longer values are
/// treated as malformed rather than processed (a defence against huge inputs).
pub const MAX_FIELD_LEN: usize = 16 * 1024;

/// A request's method, path and headers (names lower-case, as Envoy presents them).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RequestView {
    pub method: Vec<u8>,
    /// Path with query, as on the request line (`:path`).
    pub path: Vec<u8>,
    /// `:authority` (the Host), empty when the host gave none.
    pub authority: Vec<u8>,
    pub headers: Vec<(String, Vec<u8>)>,
    /// A body follows the headers (`end_of_stream` was false on them).
    pub has_body: bool,
    /// Request trailers, when the decision is taken after them (HTTP/2).
    pub trailers: Vec<(String, Vec<u8>)>,
}

impl RequestView {
    /// Builds a view from Envoy's header map (pseudo-headers included).
    pub fn from_headers(mut headers: Vec<(String, Vec<u8>)>) -> RequestView {
        let mut view = RequestView::default();
        // In place, in order: the host's list becomes the view's, without a copy.
        headers.retain_mut(|(name, value)| {
            match name.as_str() {
                ":method" => view.method = std::mem::take(value),
                ":path" => view.path = std::mem::take(value),
                ":authority" => view.authority = std::mem::take(value),
                _ if name.starts_with(':') => {}
                _ => return true,
            }
            false
        });
        view.headers = headers;
        view
    }

    /// Path without the query.
    pub fn url_path(&self) -> &[u8] {
        match self.path.iter().position(|&b| b == b'?') {
            Some(i) => &self.path[..i],
            None => &self.path,
        }
    }

    /// The raw query (after `?`), empty if none.
    pub fn raw_query(&self) -> &[u8] {
        match self.path.iter().position(|&b| b == b'?') {
            Some(i) => &self.path[i + 1..],
            None => &[],
        }
    }

    /// Every value of a header (names compare case-insensitively).
    pub fn header_values<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a [u8]> + 'a {
        self.headers
            .iter()
            .filter(move |(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_slice())
    }

    /// The single value of a header; `Err(())` if it is present more than once.
    pub fn header_once<'a>(&'a self, name: &'a str) -> Result<Option<&'a [u8]>, Duplicate> {
        let mut values = self.header_values(name);
        let first = values.next();
        if values.next().is_some() {
            return Err(Duplicate);
        }
        Ok(first)
    }

    /// Is the body a plain form ([`crate::reading::is_form_media_type`])?
    pub fn is_form(&self) -> bool {
        self.header_values("content-type")
            .next()
            .is_some_and(crate::reading::is_form_media_type)
    }
}

/// A value that must be single was given more than once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Duplicate;

/// Trims HTTP optional whitespace (spaces and tabs).
pub fn trim(mut s: &[u8]) -> &[u8] {
    while let [b' ' | b'\t', rest @ ..] = s {
        s = rest;
    }
    while let [rest @ .., b' ' | b'\t'] = s {
        s = rest;
    }
    s
}

/// One decoded `name=value` pair of a query or form body, borrowed from its source
/// when it has nothing to decode (most pairs: no allocation per parameter).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Param<'a> {
    pub name: Cow<'a, [u8]>,
    pub value: Cow<'a, [u8]>,
    /// Byte range of the raw pair in its source (to strip it later).
    pub span: (usize, usize),
    /// The raw name holds `%` or `+` (its decoded form differs).
    pub escaped_name: bool,
    /// The raw pair holds `;` (a separator to some stacks).
    pub semicolon: bool,
    /// The raw pair holds a `j`, plain or escaped (`%4A`, `%6a`): only such a
    /// pair can spell the flag marker (`…rejection…`), however encoded.
    pub has_j: bool,
    /// The raw name is only lower-case letters, digits, `_` and `-`: no stack
    /// reads it another way (an upper-case letter is another reading to a
    /// case-insensitive one, ASP.NET's).
    pub plain_name: bool,
    /// Length of the raw name (the pair up to its first `=`).
    pub name_len: usize,
    /// The raw pair holds a `?` (where some parsers start a pair: see
    /// [`crate::reading::check_parsed`]).
    pub question: bool,
}

/// Byte classes for [`parse_params`]' one scan.
const EQ: u8 = 1;
const ESCAPE: u8 = 2;
const SEMICOLON: u8 = 4;
const J: u8 = 8;
const NOT_PLAIN: u8 = 16;
const AMP: u8 = 32;
const QUESTION: u8 = 64;
const CLASS: [u8; 256] = {
    let mut t = [NOT_PLAIN; 256];
    let mut b = 0;
    while b < 256 {
        let c = b as u8;
        if c.is_ascii_lowercase() || c.is_ascii_digit() || c == b'_' || c == b'-' {
            t[b] = 0;
        }
        b += 1;
    }
    t[b'=' as usize] |= EQ;
    t[b'%' as usize] |= ESCAPE;
    t[b'+' as usize] |= ESCAPE;
    t[b';' as usize] |= SEMICOLON;
    t[b'j' as usize] |= J;
    t[b'J' as usize] |= J;
    t[b'&' as usize] |= AMP;
    t[b'?' as usize] |= QUESTION;
    t
};

impl Param<'_> {
    /// The raw pair in its source.
    pub fn raw<'s>(&self, source: &'s [u8]) -> &'s [u8] {
        source.get(self.span.0..self.span.1).unwrap_or_default()
    }

    /// The raw name and value (before `=`; the value empty when there is none).
    pub fn raw_parts<'s>(&self, source: &'s [u8]) -> (&'s [u8], &'s [u8]) {
        let seg = self.raw(source);
        let name = seg.get(..self.name_len).unwrap_or(seg);
        (name, seg.get(self.name_len + 1..).unwrap_or_default())
    }
}

/// Splits and form-decodes `a=b&c=d` (`+` is a space, `%XX` a byte; a malformed
/// escape stays literal, as browsers do). Empty segments are skipped. One scan of
/// each pair finds its `=` and what it needs decoding.
pub fn parse_params(raw: &[u8]) -> Vec<Param<'_>> {
    let mut out = Vec::with_capacity(raw.len() / 16 + 1);
    let mut start = 0;
    while start <= raw.len() {
        // One look at each byte: the name's classes up to the first `=`, then the
        // value's, up to the `&` that ends the pair.
        let mut i = start;
        let mut in_name = 0u8;
        while let Some(&b) = raw.get(i) {
            let c = CLASS[b as usize];
            if c & (EQ | AMP) != 0 {
                break;
            }
            in_name |= c;
            i += 1;
        }
        let name_len = i - start;
        let mut in_value = 0u8;
        if raw.get(i) == Some(&b'=') {
            i += 1;
            while let Some(&b) = raw.get(i) {
                let c = CLASS[b as usize];
                if c & AMP != 0 {
                    break;
                }
                in_value |= c;
                i += 1;
            }
        }
        let span = (start, i);
        start = i + 1;
        let seg = raw.get(span.0..span.1).unwrap_or_default();
        if seg.is_empty() {
            continue;
        }
        let has_j =
            (in_name | in_value) & J != 0 || (in_name | in_value) & ESCAPE != 0 && escapes_j(seg);
        let name = &seg[..name_len];
        let value = seg.get(name_len + 1..).unwrap_or_default();
        let escaped_name = in_name & ESCAPE != 0;
        out.push(Param {
            name: decoded(name, escaped_name),
            value: decoded(value, in_value & ESCAPE != 0),
            span,
            escaped_name,
            semicolon: (in_name | in_value) & SEMICOLON != 0,
            has_j,
            plain_name: in_name & NOT_PLAIN == 0,
            name_len,
            question: (in_name | in_value) & QUESTION != 0,
        });
    }
    out
}

/// Does `raw` hold an escaped `j` (`%4A`, `%6a`, `%u006A`: IIS and classic
/// ASP.NET decode `%uXXXX`)?
pub fn escapes_j(raw: &[u8]) -> bool {
    let j = |w: &[u8]| w[0] | 2 == b'6' && w[1] | 0x20 == b'a';
    raw.windows(3).any(|w| w[0] == b'%' && j(&w[1..]))
        || raw
            .windows(6)
            .any(|w| w[0] == b'%' && w[1] | 0x20 == b'u' && &w[2..4] == b"00" && j(&w[4..]))
}

fn decoded(raw: &[u8], escaped: bool) -> Cow<'_, [u8]> {
    if escaped {
        Cow::Owned(form_decode(raw))
    } else {
        Cow::Borrowed(raw)
    }
}

/// Form-decodes one component: `+` is a space, `%XX` a byte, a malformed escape
/// stays literal. One pass and one exact allocation (this runs for every
/// parameter of every request).
pub fn form_decode(raw: &[u8]) -> Vec<u8> {
    let hex = |b: u8| match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    };
    let mut out = Vec::with_capacity(raw.len());
    let mut i = 0;
    while let Some(&b) = raw.get(i) {
        match b {
            b'+' => out.push(b' '),
            b'%' => match (
                raw.get(i + 1).copied().and_then(hex),
                raw.get(i + 2).copied().and_then(hex),
            ) {
                (Some(h), Some(l)) => {
                    out.push(h << 4 | l);
                    i += 2;
                }
                _ => out.push(b'%'),
            },
            _ => out.push(b),
        }
        i += 1;
    }
    out
}

/// Removes the pairs at `spans` from a raw query or form body, keeping the rest
/// byte for byte.
pub fn remove_spans(raw: &[u8], spans: &[(usize, usize)]) -> Vec<u8> {
    let mut kept: Vec<&[u8]> = Vec::new();
    let mut start = 0;
    for seg in raw.split(|&b| b == b'&') {
        let span = (start, start + seg.len());
        start += seg.len() + 1;
        if !seg.is_empty() && !spans.contains(&span) {
            kept.push(seg);
        }
    }
    kept.join(&b'&')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn form_decode_matches_plus_then_percent_decoding() {
        let reference = |raw: &[u8]| -> Vec<u8> {
            let plus: Vec<u8> = raw
                .iter()
                .map(|&b| if b == b'+' { b' ' } else { b })
                .collect();
            percent_encoding::percent_decode(&plus).collect()
        };
        let alphabet = b"%+2bBfgG0a=&\xff";
        let mut cases: Vec<Vec<u8>> = vec![b"".to_vec(), b"%".to_vec(), b"%2".to_vec()];
        for a in alphabet {
            for b in alphabet {
                for c in alphabet {
                    for d in [b'%', b'1', b'+'] {
                        cases.push(vec![*a, *b, *c, d]);
                    }
                }
            }
        }
        for c in cases {
            assert_eq!(form_decode(&c), reference(&c), "{c:?}");
        }
    }

    #[test]
    fn one_scan_flags_agree_with_their_definitions() {
        let alphabet = b"a_-=%+;jJ&4A6a.[ '$*:kK\x80\xff";
        let mut x: u32 = 7;
        for round in 0..40000 {
            // Short inputs, and longer ones with several pairs.
            let len = if round % 2 == 0 { x % 9 } else { x % 41 } as usize;
            let raw: Vec<u8> = (0..len)
                .map(|_| {
                    x = x.wrapping_mul(1_103_515_245).wrapping_add(12345);
                    alphabet[(x >> 16) as usize % alphabet.len()]
                })
                .collect();
            x = x.wrapping_add(1);
            // The pairs are the non-empty `&`-separated segments, in order.
            let mut want = Vec::new();
            let mut at = 0;
            for seg in raw.split(|&b| b == b'&') {
                if !seg.is_empty() {
                    want.push((at, at + seg.len()));
                }
                at += seg.len() + 1;
            }
            let spans: Vec<(usize, usize)> = parse_params(&raw).iter().map(|p| p.span).collect();
            assert_eq!(spans, want, "{raw:?}");
            for p in parse_params(&raw) {
                let seg = p.raw(&raw);
                let (name, value) = match seg.iter().position(|&b| b == b'=') {
                    Some(i) => (&seg[..i], &seg[i + 1..]),
                    None => (seg, &[][..]),
                };
                let esc = |v: &[u8]| v.iter().any(|&b| b == b'%' || b == b'+');
                assert_eq!(p.raw_parts(&raw), (name, value), "{raw:?}");
                assert_eq!(&*p.name, &form_decode(name)[..], "{raw:?}");
                assert_eq!(&*p.value, &form_decode(value)[..], "{raw:?}");
                assert_eq!(p.escaped_name, esc(name), "{raw:?}");
                assert_eq!(p.semicolon, seg.contains(&b';'), "{raw:?}");
                assert_eq!(
                    p.plain_name,
                    name.iter().all(|b| b.is_ascii_lowercase()
                        || b.is_ascii_digit()
                        || *b == b'_'
                        || *b == b'-'),
                    "{raw:?}"
                );
                let decoded = form_decode(seg);
                if decoded.iter().any(|b| b.eq_ignore_ascii_case(&b'j')) {
                    assert!(p.has_j, "{raw:?}");
                }
                let plain_j = seg.iter().any(|b| b.eq_ignore_ascii_case(&b'j'));
                assert_eq!(p.has_j, plain_j || esc(seg) && escapes_j(seg), "{raw:?}");
            }
        }
    }

    #[test]
    fn params_are_form_decoded_as_bytes() {
        let p = parse_params(b"a=1&b=x+y%20z&&c&d=%ff%zz&e=%2");
        let pairs: Vec<(&[u8], &[u8])> = p.iter().map(|p| (&*p.name, &*p.value)).collect();
        assert_eq!(
            pairs,
            vec![
                (&b"a"[..], &b"1"[..]),
                (b"b", b"x y z"),
                (b"c", b""),
                (b"d", b"\xff%zz"),
                (b"e", b"%2"),
            ]
        );
    }

    #[test]
    fn spans_strip_exactly_the_pairs() {
        let raw = b"s2s=1&s2s_token=abc&app_token=x";
        let p = parse_params(raw);
        assert_eq!(remove_spans(raw, &[p[1].span]), b"s2s=1&app_token=x");
        assert_eq!(remove_spans(raw, &[p[0].span, p[2].span]), b"s2s_token=abc");
        assert_eq!(remove_spans(b"t=1", &[(0, 3)]), b"");
    }

    #[test]
    fn view_splits_path_and_headers() {
        let v = RequestView::from_headers(vec![
            (":method".into(), b"POST".to_vec()),
            (":path".into(), b"/event?x=1".to_vec()),
            (
                "content-type".into(),
                b"application/x-www-form-urlencoded; charset=UTF-8".to_vec(),
            ),
            ("x".into(), b"1".to_vec()),
            ("x".into(), b"2".to_vec()),
        ]);
        assert_eq!(v.url_path(), b"/event");
        assert_eq!(v.raw_query(), b"x=1");
        assert!(v.is_form());
        assert_eq!(v.header_once("x"), Err(Duplicate));
        assert_eq!(v.header_once("X-Missing"), Ok(None));
        assert_eq!(trim(b" \t a b\t "), b"a b");
    }
}
