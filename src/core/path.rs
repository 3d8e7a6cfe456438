//! The canonical request path: routes match it, and the request goes upstream with
//! it, so the collector routes exactly what was authenticated.
//!
//! Collectors route `/event/`, `//event`, `/./event`, `/x/../event`, `/%65vent` and
//! (case-insensitive routers) `/EVENT` to the `/event` handler. The filter reads every
//! one of them as `/event`. A path that cannot be made canonical safely, because
//! stacks disagree on what it means, is refused ([`PathError`]).

use std::borrow::Cow;

/// How paths are made canonical. Every step is on by default.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PathOptions {
    /// `%XX` of an unreserved character (`A-Z a-z 0-9 - . _ ~`) is that character.
    pub decode_unreserved: bool,
    /// `.` and `..` segments are removed (RFC 3986 §5.2.4).
    pub remove_dot_segments: bool,
    /// Runs of `/` are one `/`.
    pub merge_slashes: bool,
    /// `/event/` is `/event`.
    pub ignore_trailing_slash: bool,
    /// ASCII letters are folded to lower case (Express, ASP.NET and others route
    /// case-insensitively).
    pub fold_case: bool,
}

impl Default for PathOptions {
    fn default() -> Self {
        PathOptions {
            decode_unreserved: true,
            remove_dot_segments: true,
            merge_slashes: true,
            ignore_trailing_slash: true,
            fold_case: true,
        }
    }
}

/// Why a path cannot be made canonical safely.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PathError {
    /// Does not start with `/` (`*`, an absolute URI).
    NotOriginForm,
    /// `%2F` or `%5C`: one stack sees a separator, another a character.
    EncodedSeparator,
    /// `\`: some stacks read it as `/`.
    Backslash,
    /// NUL, another control character or a space.
    Control,
    /// `#` anywhere in `:path`: a fragment is no part of a request target (Envoy
    /// rejects it unless told not to), and stacks read it two ways — Go keeps it in
    /// the path or query value, Node, Python and PHP cut it off.
    Fragment,
    /// `%` not followed by two hex digits, or `%25` (double encoding).
    BadEscape,
    /// `&`, or `%26`, `%3F` or `%23`: a rewrite that puts the decoded path in a
    /// query (Apache's `index.php?_url=/$1` without `[B]`, nginx's
    /// `?_url=$uri&$args`) ends the path there (`/event&app_token=A` and
    /// `/event%26app_token=A` are `_url=/event&app_token=A`).
    QueryDelimiter,
    /// `;` path parameters (Java stacks strip them before routing).
    Parameters,
    /// A format suffix on a protected path (`/event.json`: Rails and older Spring
    /// route it to `/event`).
    FormatSuffix,
    /// Another common reading of the path (dot segments kept, as Express, Flask
    /// and Rack mounts do; or escapes decoded where this configuration does not)
    /// reaches a protected route this one does not.
    OtherReading,
    /// Its other readings are too many to route within the filter's budget (a path
    /// built of thousands of segments naming files, or of every feature stacks
    /// read two ways).
    TooComplex,
}

impl PathError {
    pub fn name(self) -> &'static str {
        match self {
            PathError::NotOriginForm => "not_origin_form",
            PathError::EncodedSeparator => "encoded_separator",
            PathError::Backslash => "backslash",
            PathError::Control => "control",
            PathError::Fragment => "fragment",
            PathError::BadEscape => "bad_escape",
            PathError::QueryDelimiter => "query_delimiter",
            PathError::Parameters => "parameters",
            PathError::FormatSuffix => "format_suffix",
            PathError::OtherReading => "other_reading",
            PathError::TooComplex => "too_complex",
        }
    }
}

fn hex(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

fn unreserved(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~')
}

/// Makes `raw` (the path without the query) canonical.
///
/// Contract: the result starts with `/`, holds no control character, no `\`, no
/// encoded separator, and is a fixed point (`canonical(canonical(p)) == canonical(p)`).
/// `;` is refused only by [`canonical`]'s caller when it matters (see
/// [`without_parameters`]); here it is an error too, so that a protected path never
/// carries one.
pub fn canonical<'r>(raw: &'r [u8], opts: &PathOptions) -> Result<Cow<'r, [u8]>, PathError> {
    if raw.first() != Some(&b'/') {
        return Err(PathError::NotOriginForm);
    }
    if is_plain(raw) {
        // Nothing any step would change, whatever the options: the common case,
        // read without a copy.
        return Ok(Cow::Borrowed(raw));
    }
    canonical_steps(raw, opts).map(Cow::Owned)
}

/// A path every step of [`canonical`] leaves as it is: lower-case letters, digits,
/// `-`, `_`, `~` and `.` in non-empty segments that are not `.` or `..`, separated
/// by single slashes, no trailing slash (but `/` itself). No escape, no upper case,
/// no byte [`canonical`] refuses.
fn is_plain(raw: &[u8]) -> bool {
    if raw == b"/" {
        return true;
    }
    let Some(rest) = raw.strip_prefix(b"/") else {
        return false;
    };
    rest.split(|&b| b == b'/').all(|seg| {
        !seg.is_empty()
            && seg != b"."
            && seg != b".."
            && seg
                .iter()
                .all(|&b| matches!(b, b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'~' | b'.'))
    })
}

/// [`canonical`]'s steps, on a path that starts with `/`.
fn canonical_steps(raw: &[u8], opts: &PathOptions) -> Result<Vec<u8>, PathError> {
    // Pass 1: escapes and forbidden bytes.
    let mut decoded = Vec::with_capacity(raw.len());
    let mut i = 0;
    while i < raw.len() {
        let b = raw[i];
        match b {
            b'%' => {
                let (Some(h), Some(l)) = (
                    raw.get(i + 1).copied().and_then(hex),
                    raw.get(i + 2).copied().and_then(hex),
                ) else {
                    return Err(PathError::BadEscape);
                };
                let c = h << 4 | l;
                match c {
                    b'/' | b'\\' => return Err(PathError::EncodedSeparator),
                    b'%' => return Err(PathError::BadEscape),
                    0..=0x1f | 0x7f => return Err(PathError::Control),
                    b'&' | b'?' | b'#' => return Err(PathError::QueryDelimiter),
                    _ if opts.decode_unreserved && unreserved(c) => decoded.push(c),
                    _ => {
                        // Kept encoded, hex upper-cased (RFC 3986 §6.2.2.1).
                        decoded.push(b'%');
                        decoded.extend_from_slice(&[
                            b"0123456789ABCDEF"[(c >> 4) as usize],
                            b"0123456789ABCDEF"[(c & 15) as usize],
                        ]);
                    }
                }
                i += 3;
                continue;
            }
            b'\\' => return Err(PathError::Backslash),
            b'&' => return Err(PathError::QueryDelimiter),
            0..=0x20 | 0x7f => return Err(PathError::Control),
            b'#' => return Err(PathError::Fragment),
            b';' => return Err(PathError::Parameters),
            _ => decoded.push(b),
        }
        i += 1;
    }
    if opts.fold_case {
        // Only letters outside escapes: escapes are upper-case hex already, and
        // lower-casing them would change nothing a stack reads.
        let mut j = 0;
        while j < decoded.len() {
            if decoded[j] == b'%' {
                j += 3;
                continue;
            }
            decoded[j] = decoded[j].to_ascii_lowercase();
            j += 1;
        }
    }
    // Pass 2: segments.
    let mut segments: Vec<&[u8]> = Vec::new();
    let parts: Vec<&[u8]> = decoded[1..].split(|&b| b == b'/').collect();
    let last = parts.len() - 1;
    let mut trailing = false;
    for (k, seg) in parts.iter().enumerate() {
        match *seg {
            b"." if opts.remove_dot_segments => trailing = k == last,
            b".." if opts.remove_dot_segments => {
                segments.pop();
                trailing = k == last;
            }
            b"" if opts.merge_slashes || k == last => trailing = k == last,
            s => {
                segments.push(s);
                trailing = false;
            }
        }
    }
    let mut out = Vec::with_capacity(decoded.len());
    for s in &segments {
        out.push(b'/');
        out.extend_from_slice(s);
    }
    if out.is_empty() || (trailing && !opts.ignore_trailing_slash) {
        out.push(b'/');
    }
    Ok(out)
}

/// The path without a format suffix on its last segment, from its first `.`
/// (`/event.json`, `/event.json.gz`, `/event..json` → `/event`: Rails and Spring's
/// suffix patterns), or without trailing encoded spaces (`/event%20`: older Spring
/// trims tokens); `None` when there is neither.
pub fn without_format_suffix(canonical: &[u8]) -> Option<Vec<u8>> {
    let start = canonical.iter().rposition(|&b| b == b'/')? + 1;
    let mut end = canonical.len();
    while end >= start + 3 && &canonical[end - 3..end] == b"%20" {
        end -= 3;
    }
    let dot = canonical[start..end]
        .iter()
        .position(|&b| b == b'.')
        .map_or(end, |d| d + start);
    (dot > start && dot < canonical.len()).then(|| canonical[..dot].to_vec())
}

/// The path as stacks that trim white space around it read it: older Spring MVC
/// (`AntPathMatcher` with `trimTokens`, the default before 4.3, after decoding)
/// trims each segment with Java's `Character.isWhitespace` (Unicode spaces too);
/// CodeIgniter 4 decodes the path twice, the second time with PHP's `urldecode`
/// (`+` and `%2B` are spaces there), then trims spaces and `/` at its ends. So:
/// each segment without leading and trailing white space, control characters,
/// `+` and `%2B`, raw or escaped (`%20`, `%09`, `%00`.., `%u0020`, `%E3%80%80`),
/// and empty segments dropped (`/event/%20`, `/%09/event`, `/postback+`,
/// `/+/postback`, `/event%E2%80%80` → `/event`); `None` when that changes nothing.
pub fn trimmed_segments(p: &[u8]) -> Option<Vec<u8>> {
    if !p
        .iter()
        .any(|&b| b == b'%' || b == b'+' || b <= 0x20 || b >= 0x80)
    {
        return None;
    }
    let mut out = Vec::with_capacity(p.len());
    let mut changed = false;
    for seg in p.split(|&b| b == b'/').skip(1) {
        let mut t = seg;
        loop {
            match blank(t) {
                0 => break,
                n => t = t.get(n..).unwrap_or_default(),
            }
        }
        loop {
            // The longest blank is three escaped bytes (`%E3%80%80`).
            let n = (1..=9.min(t.len()))
                .rev()
                .find(|&n| blank(&t[t.len() - n..]) == n)
                .unwrap_or(0);
            if n == 0 {
                break;
            }
            t = &t[..t.len() - n];
        }
        changed |= t.len() != seg.len();
        if !t.is_empty() {
            out.push(b'/');
            out.extend_from_slice(t);
        }
    }
    if out.is_empty() {
        out.push(b'/');
    }
    changed.then_some(out)
}

/// The length of the white space (or control character, or `+`) `e` starts with,
/// raw or escaped, for [`trimmed_segments`]; 0 if none.
fn blank(e: &[u8]) -> usize {
    // One byte, escaped (`%09`, `%u0009`) or raw: returns (byte, length).
    let byte = |e: &[u8]| -> Option<(u8, usize)> {
        match e {
            [b'%', b'u' | b'U', b'0', b'0', h, l, ..] => Some((hex(*h)? << 4 | hex(*l)?, 6)),
            [b'%', h, l, ..] => Some((hex(*h)? << 4 | hex(*l)?, 3)),
            [b, ..] => Some((*b, 1)),
            [] => None,
        }
    };
    let Some((b0, n0)) = byte(e) else {
        return 0;
    };
    // ASCII: controls and space (Java, PHP's trim after urldecode), `+`.
    if b0 <= 0x20 || b0 == 0x7f || b0 == b'+' {
        return n0;
    }
    if !(0xc2..=0xef).contains(&b0) {
        return 0;
    }
    // A UTF-8 sequence written the same way throughout (all escaped or all raw).
    let Some((b1, n1)) = byte(e.get(n0..).unwrap_or_default())
        .filter(|&(b, n)| n == n0 && n0 != 6 && b & 0xc0 == 0x80)
    else {
        return 0;
    };
    let c = if b0 < 0xe0 {
        u32::from(b0 & 0x1f) << 6 | u32::from(b1 & 0x3f)
    } else {
        let Some((b2, _)) = byte(e.get(n0 + n1..).unwrap_or_default())
            .filter(|&(b, n)| n == n0 && b & 0xc0 == 0x80)
        else {
            return 0;
        };
        u32::from(b0 & 0x0f) << 12 | u32::from(b1 & 0x3f) << 6 | u32::from(b2 & 0x3f)
    };
    let len = if b0 < 0xe0 { 2 * n0 } else { 3 * n0 };
    // Unicode white space as Java's `isWhitespace`, Python's `strip` and
    // JavaScript's `trim` see it (the union), and the byte order mark.
    let white = matches!(
        c,
        0x85 | 0xa0 | 0x1680 | 0x2000
            ..=0x200a | 0x2028 | 0x2029 | 0x202f | 0x205f | 0x3000 | 0xfeff
    );
    if white {
        len
    } else {
        0
    }
}

/// The path without ASP.NET's cookieless-session segments (`/(S(x))/event`,
/// `/(A(x)F(y))/event`: ASP.NET Framework removes any `(...)` segment before
/// routing, after IIS decoded the path: `%28S%28x%29%29`, `%u0028` too); `None`
/// when it has none.
pub fn without_cookieless(p: &[u8]) -> Option<Vec<u8>> {
    let decoded;
    let p = if p.contains(&b'%') {
        decoded = decode_parentheses(p);
        &decoded[..]
    } else {
        p
    };
    if !p.contains(&b'(') {
        return None;
    }
    let session = |s: &[u8]| s.len() >= 2 && s[0] == b'(' && s[s.len() - 1] == b')';
    let mut out = Vec::with_capacity(p.len());
    let mut removed = false;
    for (k, seg) in p.split(|&b| b == b'/').enumerate() {
        if k > 0 && session(seg) {
            removed = true;
            continue;
        }
        if k > 0 {
            out.push(b'/');
        }
        out.extend_from_slice(seg);
    }
    if out.is_empty() {
        out.push(b'/');
    }
    removed.then_some(out)
}

/// `raw` with its `%uXXXX` escapes of ASCII characters decoded, as IIS decodes
/// them (anything else kept as it is).
pub fn lenient_u_decoded(raw: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(raw.len());
    let mut i = 0;
    while i < raw.len() {
        let esc = raw
            .get(i..i + 6)
            .filter(|e| e[0] == b'%' && e[1] | 0x20 == b'u');
        let ch = esc.and_then(|e| {
            let v = e[2..]
                .iter()
                .try_fold(0u32, |a, &b| Some(a << 4 | u32::from(hex(b)?)))?;
            u8::try_from(v).ok().filter(u8::is_ascii)
        });
        match ch {
            Some(c) => {
                out.push(c);
                i += 6;
            }
            None => {
                out.push(raw[i]);
                i += 1;
            }
        }
    }
    out
}

/// Readings of a decoded path (or a router parameter's value) by stacks that take
/// characters of a segment for others: ThinkPHP routes `|` as `/` (and drops
/// trailing ones), PHP's `parse_url` (Phalcon 4/5's route) turns control
/// characters into `_`, CodeIgniter 3 removes them. Only readings that differ from
/// `p`; none for most paths.
pub fn character_readings(p: &[u8]) -> Vec<Vec<u8>> {
    let ctrl = |b: u8| b < 0x20 || b == 0x7f;
    let pipes = p.contains(&b'|');
    let ctrls = p.iter().any(|&b| ctrl(b));
    let mut out = Vec::new();
    for pipe in [false, true].into_iter().filter(|&x| !x || pipes) {
        // 0: control characters kept, 1: as `_`, 2: removed.
        for c in [0u8, 1, 2].into_iter().filter(|&c| c == 0 || ctrls) {
            if !pipe && c == 0 {
                continue;
            }
            out.push(
                p.iter()
                    .filter_map(|&b| match b {
                        b'|' if pipe => Some(b'/'),
                        b if ctrl(b) && c == 1 => Some(b'_'),
                        b if ctrl(b) && c == 2 => None,
                        b => Some(b),
                    })
                    .collect(),
            );
        }
    }
    out
}

/// The path as CodeIgniter 3's `_remove_relative_directory` leaves it: its dot
/// segments (`.`, `..`, escaped or not) and empty segments deleted, not resolved
/// (`/event/..` is `/event` there, `/` everywhere else; `/event.html/` is
/// `/event.html`, then its `url_suffix` goes). `None` when the path has none.
pub fn without_dot_segments(raw: &[u8]) -> Option<Vec<u8>> {
    // `.` or `..`, each dot plain or escaped (`%2e`, `%2E`): without decoding.
    let dot = |seg: &[u8]| {
        let (mut dots, mut rest) = (0, seg);
        while !rest.is_empty() {
            rest = match rest {
                [b'.', tail @ ..] => tail,
                [b'%', b'2', e, tail @ ..] if *e | 0x20 == b'e' => tail,
                _ => return false,
            };
            dots += 1;
        }
        (1..=2).contains(&dots)
    };
    // One pass, no allocation, for the paths with nothing to delete (most).
    let mut segments = raw.split(|&b| b == b'/').skip(1);
    if !segments.any(|seg| seg.is_empty() || dot(seg)) {
        return None;
    }
    let mut out = Vec::with_capacity(raw.len());
    let mut removed = false;
    for (k, seg) in raw.split(|&b| b == b'/').enumerate() {
        if k == 0 {
            out.extend_from_slice(seg);
            continue;
        }
        if seg.is_empty() || dot(seg) {
            removed = true;
            continue;
        }
        out.push(b'/');
        out.extend_from_slice(seg);
    }
    if out.is_empty() {
        out.push(b'/');
    }
    (removed && out != raw).then_some(out)
}

/// A path as MVC routers reduce a controller's (and action's) name to a class:
/// escapes decoded until none is left (CodeIgniter 4 decodes twice, `+` a space
/// the second time), then each segment lower-cased with every character but a
/// letter or digit deleted, and the segments left empty dropped. CodeIgniter 3
/// deletes `.` from the controller, Zend Framework 1 every character but
/// `[a-z0-9]` (`-` and `.` as word breaks), CakePHP 2 `_` and spaces
/// (`camelize`): `/po!stback`, `/post.back`, `/_postback`, `/gdprForgetDevice`
/// are `postback` and `gdprforgetdevice` there, as `/postback` and
/// `/gdpr_forget_device` are. Segments joined by `/`, without a leading one.
pub fn skeleton(p: &[u8]) -> Vec<u8> {
    let mut decoded: Cow<[u8]> = Cow::Borrowed(p);
    for _ in 0..3 {
        if !decoded.contains(&b'%') {
            break;
        }
        let next: Vec<u8> = percent_encoding::percent_decode(&decoded).collect();
        if next == *decoded {
            break;
        }
        decoded = Cow::Owned(next);
    }
    let mut out = Vec::with_capacity(decoded.len());
    for seg in decoded.split(|&b| b == b'/' || b == b'\\') {
        let start = out.len();
        if start > 0 {
            out.push(b'/');
        }
        let kept = out.len();
        out.extend(
            seg.iter()
                .filter(|b| b.is_ascii_alphanumeric())
                .map(u8::to_ascii_lowercase),
        );
        if out.len() == kept {
            out.truncate(start);
        }
    }
    out
}

/// A route as OpenCart reads its `route` parameter: every character but letters,
/// digits, `_` and `/` deleted; `None` when that changes nothing.
pub fn route_characters_only(p: &[u8]) -> Option<Vec<u8>> {
    let keep = |b: &u8| b.is_ascii_alphanumeric() || *b == b'_' || *b == b'/';
    (!p.iter().all(keep)).then(|| p.iter().copied().filter(keep).collect())
}

/// The path as a URL parser reads a request target that starts with two slashes
/// (`//host/event`, `/\\host/event`, `///x/event`): a network-path reference whose
/// first segment is an authority (Node's WHATWG `URL`, Java's `URI`), the rest its
/// path (`/` when there is none); `None` for any other target.
pub fn without_authority(raw: &[u8]) -> Option<Cow<'_, [u8]>> {
    let sep = |b: &u8| *b == b'/' || *b == b'\\';
    if !(raw.len() >= 2 && sep(&raw[0]) && sep(&raw[1])) {
        return None;
    }
    let host = raw.iter().position(|b| !sep(b))?;
    let rest = &raw[host..];
    match rest.iter().position(sep) {
        Some(end) => Some(Cow::Borrowed(&rest[end..])),
        None => Some(Cow::Borrowed(b"/")),
    }
}

/// The path with the letters outside ASCII that Java's `equalsIgnoreCase` takes
/// for ASCII ones (`ſ` U+017F for `s`, `ı` U+0131 for `i`, the Kelvin sign U+212A
/// for `k`), raw or escaped, read as those; `None` when it has none.
pub fn ascii_case_folded(p: &[u8]) -> Option<Vec<u8>> {
    if !p.iter().any(|&b| b == b'%' || b >= 0x80) {
        return None;
    }
    const LETTERS: [(&[u8], u8); 4] = [
        (b"\xC5\xBF", b's'),
        (b"\xC4\xB1", b'i'),
        // `İ` (U+0130): Java's `toLowerCase` makes it `i`.
        (b"\xC4\xB0", b'i'),
        (b"\xE2\x84\xAA", b'k'),
    ];
    let mut out = Vec::with_capacity(p.len());
    let mut changed = false;
    let mut i = 0;
    'scan: while i < p.len() {
        for (utf8, ascii) in LETTERS {
            // Raw, or each byte escaped (`%C5%BF`, any case).
            let escaped = utf8.len() * 3;
            let matches_escaped = p.get(i..i + escaped).is_some_and(|e| {
                e.chunks(3).zip(utf8).all(|(c, &b)| {
                    c[0] == b'%'
                        && matches!((hex(c[1]), hex(c[2])), (Some(h), Some(l)) if h << 4 | l == b)
                })
            });
            let n = if p[i..].starts_with(utf8) {
                utf8.len()
            } else if matches_escaped {
                escaped
            } else {
                continue;
            };
            out.push(ascii);
            changed = true;
            i += n;
            continue 'scan;
        }
        out.push(p[i]);
        i += 1;
    }
    changed.then_some(out)
}

/// `%28`, `%29`, `%u0028` and `%u0029` (any case) decoded.
fn decode_parentheses(p: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(p.len());
    let mut i = 0;
    while i < p.len() {
        let rest = &p[i..];
        let paren = |d: u8| match d {
            b'8' => Some(b'('),
            b'9' => Some(b')'),
            _ => None,
        };
        let decoded = if rest.len() >= 3 && rest[0] == b'%' && rest[1] == b'2' {
            paren(rest[2]).map(|c| (c, 3))
        } else if rest.len() >= 6
            && rest[0] == b'%'
            && rest[1] | 0x20 == b'u'
            && &rest[2..4] == b"00"
            && rest[4] == b'2'
        {
            paren(rest[5]).map(|c| (c, 6))
        } else {
            None
        };
        match decoded {
            Some((c, n)) => {
                out.push(c);
                i += n;
            }
            None => {
                out.push(p[i]);
                i += 1;
            }
        }
    }
    out
}

/// The path with `;` parameters removed from every segment, as Java stacks route
/// it; `None` when there are none.
pub fn without_parameters(raw: &[u8]) -> Option<Vec<u8>> {
    if !raw.contains(&b';') {
        return None;
    }
    let mut out = Vec::with_capacity(raw.len());
    for (k, seg) in raw.split(|&b| b == b'/').enumerate() {
        if k > 0 {
            out.push(b'/');
        }
        let end = seg.iter().position(|&b| b == b';').unwrap_or(seg.len());
        out.extend_from_slice(&seg[..end]);
    }
    Some(out)
}

/// A lenient reading of a path that [`canonical`] refuses: what the most
/// permissive stack could route it as (encoded and back slashes as separators, cut
/// at a control character, `;` parameters and broken escapes dropped). Used to tell
/// whether a refused path could reach a protected route.
pub fn lenient(raw: &[u8], opts: &PathOptions) -> Option<Vec<u8>> {
    let read = partial_reading(raw, PART_ALL);
    canonical(&read, opts).ok().map(Cow::into_owned)
}

/// What [`lenient`] reads in a path that other stacks take as ordinary characters
/// of a segment: each is one bit of [`partial_features`].
const PART_U: u8 = 1; // `%uXXXX` decoded (IIS, classic ASP.NET)
const PART_SEPARATOR: u8 = 2; // `%2F`, `%5C` as `/`
const PART_BACKSLASH: u8 = 4; // `\` as `/` (IIS, and Envoy's normalize_path)
const PART_SEMICOLON: u8 = 8; // `;` parameters dropped (Tomcat, Jetty)
const PART_DOUBLE: u8 = 16; // `%25XX` read as the escape it encodes
const PART_CUT: u8 = 32; // the path ends at a control character, a space, `#`, or an
                         // escaped `&`, `?` or `#` (a rewrite into a query parameter)
const PART_BROKEN: u8 = 64; // a `%` that starts no escape dropped
const PART_ALL: u8 = 127;

/// Stands for a byte a reading takes as an ordinary character of its segment
/// (`\`, `;`, the `%` of `%u0065` or `%25`): never a separator, never part of a
/// dot segment, never in a route.
const OPAQUE: u8 = 0xFF;

/// The features of a path [`canonical`] refuses that [`lenient`] reads and other
/// stacks take as ordinary characters of a segment (a mask of `PART_*`): the
/// readings between the literal one and [`lenient`]'s are [`partial_reading`] of
/// each subset of them. Express, Flask and Go take `/ingest/..;/x` and `/api.x\\..`
/// literally (under `/ingest`, under `/api.`), Tomcat and IIS climb out;
/// `/%u0069ngest/..;/x` is `/ingest/..;/x` to IIS, which keeps `;`.
pub fn partial_features(raw: &[u8]) -> u8 {
    let mut present = 0u8;
    let mut i = 0;
    while i < raw.len() {
        match raw[i] {
            b'%' => match (raw.get(i + 1).copied(), raw.get(i + 2).copied()) {
                (Some(b'u' | b'U'), _) => present |= PART_U | PART_BROKEN,
                (Some(h), Some(l)) => match (hex(h), hex(l)) {
                    (Some(h), Some(l)) => match h << 4 | l {
                        b'/' | b'\\' => present |= PART_SEPARATOR,
                        b'%' => present |= PART_DOUBLE,
                        0..=0x1f | 0x7f | b'&' | b'?' | b'#' => present |= PART_CUT,
                        _ => {}
                    },
                    _ => present |= PART_BROKEN,
                },
                _ => present |= PART_BROKEN,
            },
            b'\\' => present |= PART_BACKSLASH,
            b';' => present |= PART_SEMICOLON,
            0..=0x20 | 0x7f | b'#' | b'&' => present |= PART_CUT,
            _ => {}
        }
        i += 1;
    }
    present
}

/// A reading of `raw` between the literal one and [`lenient`]'s: the features in
/// `read` (a subset of [`partial_features`]) read as [`lenient`] reads them, the
/// others kept as [`OPAQUE`] characters of their segment. Dot segments are resolved
/// (or kept) by the caller's canonical reading of the result.
pub fn partial_reading(raw: &[u8], read: u8) -> Vec<u8> {
    let on = |f: u8| read & f != 0;
    let mut out = Vec::with_capacity(raw.len() + 1);
    if raw.first() != Some(&b'/') {
        out.push(b'/');
    }
    let mut i = 0;
    while i < raw.len() {
        let b = raw[i];
        let escape = (raw.get(i + 1).copied().and_then(hex))
            .zip(raw.get(i + 2).copied().and_then(hex))
            .map(|(h, l)| h << 4 | l);
        let u = raw
            .get(i + 2..i + 6)
            .is_some_and(|h| h.iter().all(|&b| hex(b).is_some()));
        match b {
            b'%' if matches!(raw.get(i + 1), Some(b'u' | b'U')) && u && on(PART_U) => {
                let c = raw[i + 2..i + 6]
                    .iter()
                    .fold(0u32, |a, &b| a << 4 | u32::from(hex(b).unwrap_or(0)));
                match u8::try_from(c) {
                    Ok(b'/' | b'\\') if on(PART_BACKSLASH) || on(PART_SEPARATOR) => out.push(b'/'),
                    // An escaped space is a space in a segment (IIS keeps it):
                    // only a control character ends the path here.
                    Ok(b' ') => out.extend_from_slice(b"%20"),
                    Ok(0..=0x1f | 0x7f | b'&' | b'?' | b'#') if on(PART_CUT) => break,
                    Ok(b'/' | b'\\' | 0..=0x1f | 0x7f) => out.push(OPAQUE),
                    // Unreserved, and the sub-delimiters a path holds as they are
                    // (ASP.NET's session segments are `(...)`).
                    Ok(c) if unreserved(c) || b"!$&'()*+,=:@".contains(&c) => out.push(c),
                    // Anything else as the UTF-8 escapes a path would carry.
                    _ => {
                        let ch = char::from_u32(c).unwrap_or(char::REPLACEMENT_CHARACTER);
                        for b in ch.encode_utf8(&mut [0; 4]).bytes() {
                            out.extend_from_slice(format!("%{b:02X}").as_bytes());
                        }
                    }
                }
                i += 6;
                continue;
            }
            b'%' => match escape {
                Some(b'/' | b'\\') if on(PART_SEPARATOR) => {
                    out.push(b'/');
                    i += 3;
                }
                Some(b'%') if on(PART_DOUBLE) => {
                    out.push(b'%');
                    i += 3;
                }
                Some(0..=0x1f | 0x7f | b'&' | b'?' | b'#') if on(PART_CUT) => break,
                Some(b'/' | b'\\' | b'%' | 0..=0x1f | 0x7f) => {
                    out.push(OPAQUE);
                    i += 3;
                }
                Some(_) => {
                    out.extend_from_slice(&raw[i..i + 3]);
                    i += 3;
                }
                None if on(PART_BROKEN) => i += 1,
                None => {
                    out.push(OPAQUE);
                    i += 1;
                }
            },
            b'\\' if on(PART_BACKSLASH) => {
                out.push(b'/');
                i += 1;
            }
            0..=0x20 | 0x7f | b'#' | b'&' if on(PART_CUT) => break,
            b'\\' | 0..=0x20 | 0x7f | b'#' => {
                out.push(OPAQUE);
                i += 1;
            }
            b';' if !on(PART_SEMICOLON) => {
                out.push(OPAQUE);
                i += 1;
            }
            _ => {
                out.push(b);
                i += 1;
            }
        }
    }
    let out = if on(PART_SEMICOLON) {
        without_parameters(&out).unwrap_or(out)
    } else {
        out
    };
    if on(PART_DOUBLE) {
        lenient_once_more(&out)
    } else {
        out
    }
}

fn lenient_once_more(p: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(p.len());
    let mut i = 0;
    while i < p.len() {
        if p[i] == b'%' {
            if let (Some(h), Some(l)) = (
                p.get(i + 1).copied().and_then(hex),
                p.get(i + 2).copied().and_then(hex),
            ) {
                let c = h << 4 | l;
                if c == b'/' || c == b'\\' {
                    out.push(b'/');
                    i += 3;
                    continue;
                }
                if unreserved(c) {
                    out.push(c);
                    i += 3;
                    continue;
                }
                // (An escaped space stays in its segment, as the first pass keeps it.)
                if c < 0x20 || matches!(c, 0x7f | b'%' | b';' | b'#' | b'&' | b'?') {
                    break;
                }
            } else {
                i += 1;
                continue;
            }
        }
        if p[i] == b';' {
            // Parameters introduced by the second decoding.
            while i < p.len() && p[i] != b'/' {
                i += 1;
            }
            continue;
        }
        out.push(p[i]);
        i += 1;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn c(p: &str) -> Result<String, PathError> {
        canonical(p.as_bytes(), &PathOptions::default())
            .map(|v| String::from_utf8(v.into_owned()).unwrap())
    }

    #[test]
    fn partial_readings_keep_what_they_do_not_read_in_its_segment() {
        let r = |p: &str, read: u8| {
            String::from_utf8_lossy(&partial_reading(p.as_bytes(), read)).into_owned()
        };
        let f = |p: &str| partial_features(p.as_bytes());
        assert_eq!(f("/event"), 0);
        assert_eq!(f("/a;b\\c"), PART_SEMICOLON | PART_BACKSLASH);
        assert_eq!(
            f("/%u0065%2F%25%09%zz"),
            PART_U | PART_BROKEN | PART_SEPARATOR | PART_DOUBLE | PART_CUT
        );
        // Nothing read: every feature is a character of its segment.
        assert_eq!(r("/ingest/..;/x", 0), "/ingest/..\u{FFFD}/x");
        assert_eq!(r("/api.x\\..", 0), "/api.x\u{FFFD}..");
        assert_eq!(r("/a/%u0065vent", 0), "/a/\u{FFFD}u0065vent");
        // Each read as the most permissive stack reads it.
        assert_eq!(r("/ingest/..;/x", PART_SEMICOLON), "/ingest/../x");
        assert_eq!(r("/api.x\\..", PART_BACKSLASH), "/api.x/..");
        assert_eq!(r("/%u0069ngest/..;/x", PART_U), "/ingest/..\u{FFFD}/x");
        assert_eq!(r("/a%252e%252e/x", PART_DOUBLE), "/a../x");
        assert_eq!(r("/a/%09/event", PART_CUT), "/a/");
        assert_eq!(r("/a/%zzb", PART_BROKEN), "/a/zzb");
        let s = |v: Vec<Vec<u8>>| -> Vec<String> {
            v.into_iter()
                .map(|x| String::from_utf8(x).unwrap())
                .collect()
        };
        assert!(character_readings(b"/event").is_empty());
        assert_eq!(s(character_readings(b"/event|")), ["/event/"]);
        assert_eq!(
            s(character_readings(b"/gdpr\x01forget_device")),
            ["/gdpr_forget_device", "/gdprforget_device"]
        );
        assert_eq!(route_characters_only(b"/eve.nt"), Some(b"/event".to_vec()));
        assert_eq!(route_characters_only(b"api/v1/s2s/event"), None);
    }

    #[test]
    fn variants_of_one_path_are_one_path() {
        for p in [
            "/event",
            "/event/",
            "//event",
            "/./event",
            "/x/../event",
            "/%65vent",
            "/EVENT",
            "/Event//",
            "/../event",
            "/event/.",
            "/a/b/../../event",
            "/%45%56ENT",
        ] {
            assert_eq!(c(p), Ok("/event".into()), "{p}");
        }
        assert_eq!(c("/"), Ok("/".into()));
        assert_eq!(c("//"), Ok("/".into()));
        assert_eq!(c("/.."), Ok("/".into()));
        assert_eq!(c("/api/v1/s2s/event"), Ok("/api/v1/s2s/event".into()));
        assert_eq!(c("/a%20b"), Ok("/a%20b".into()));
        assert_eq!(c("/a%c3%a9"), Ok("/a%C3%A9".into()));
    }

    #[test]
    fn unsafe_paths_are_refused() {
        assert_eq!(c("/event%2F"), Err(PathError::EncodedSeparator));
        assert_eq!(c("/event%26"), Err(PathError::QueryDelimiter));
        assert_eq!(c("/event%3fx"), Err(PathError::QueryDelimiter));
        assert_eq!(c("/event%23"), Err(PathError::QueryDelimiter));
        assert_eq!(c("/event&x"), Err(PathError::QueryDelimiter));
        assert_eq!(c("/event%2f"), Err(PathError::EncodedSeparator));
        assert_eq!(c("/x%5C..%5Cevent"), Err(PathError::EncodedSeparator));
        assert_eq!(c("/x\\event"), Err(PathError::Backslash));
        assert_eq!(c("/event%00"), Err(PathError::Control));
        assert_eq!(c("/event\0"), Err(PathError::Control));
        assert_eq!(c("/event#x"), Err(PathError::Fragment));
        assert_eq!(c("/event%0a"), Err(PathError::Control));
        assert_eq!(c("/event%"), Err(PathError::BadEscape));
        assert_eq!(c("/event%zz"), Err(PathError::BadEscape));
        assert_eq!(c("/%2565vent"), Err(PathError::BadEscape));
        assert_eq!(c("/event;a=b"), Err(PathError::Parameters));
        assert_eq!(c("event"), Err(PathError::NotOriginForm));
        assert_eq!(c("*"), Err(PathError::NotOriginForm));
    }

    #[test]
    fn options_switch_steps_off() {
        let none = PathOptions {
            decode_unreserved: false,
            remove_dot_segments: false,
            merge_slashes: false,
            ignore_trailing_slash: false,
            fold_case: false,
        };
        let c = |p: &str| {
            String::from_utf8(canonical(p.as_bytes(), &none).unwrap().into_owned()).unwrap()
        };
        assert_eq!(c("/EVENT/"), "/EVENT/");
        assert_eq!(c("/%65vent"), "/%65vent");
        assert_eq!(c("/./x"), "/./x");
    }

    #[test]
    fn canonical_is_a_fixed_point() {
        for p in ["/a/./b/../c//d/", "/%7e%41", "/X/Y/..", "/a%2d"] {
            let once = canonical(p.as_bytes(), &PathOptions::default()).unwrap();
            assert_eq!(canonical(&once, &PathOptions::default()).unwrap(), once);
        }
    }

    #[test]
    fn plain_paths_are_read_without_a_copy_and_as_the_steps_read_them() {
        let paths = [
            "/",
            "/event",
            "/sdk_click",
            "/a/b-c/d_e~f",
            "/event.json",
            "/a.b/c",
            "/.well-known",
            // Not plain: each some step may change.
            "//",
            "/event/",
            "//event",
            "/a//b",
            "/./a",
            "/a/..",
            "/a/../b",
            "/EVENT",
            "/a%41",
            "/a%2e",
            "/a b",
            "/a+b",
            "/a@b",
            "/a:b",
            "/a!b",
        ];
        for p in paths {
            for bits in 0..32u8 {
                let opts = PathOptions {
                    decode_unreserved: bits & 1 != 0,
                    remove_dot_segments: bits & 2 != 0,
                    merge_slashes: bits & 4 != 0,
                    ignore_trailing_slash: bits & 8 != 0,
                    fold_case: bits & 16 != 0,
                };
                let fast = canonical(p.as_bytes(), &opts);
                let steps = canonical_steps(p.as_bytes(), &opts);
                assert_eq!(fast.clone().map(Cow::into_owned), steps, "{p} {opts:?}");
                assert_eq!(
                    matches!(fast, Ok(Cow::Borrowed(_))),
                    is_plain(p.as_bytes()),
                    "{p}"
                );
            }
        }
    }

    #[test]
    fn lenient_readings_find_the_protected_path() {
        let l = |p: &str| {
            lenient(p.as_bytes(), &PathOptions::default()).map(|v| String::from_utf8(v).unwrap())
        };
        for p in [
            "/event%2F",
            "/x%2F..%2Fevent",
            "/x\\..\\event",
            "/event%00.css",
            "/event;a=b",
            "/event#frag",
            "/%2565vent",
            "/x%252F..%252Fevent",
            "/event%",
            "event",
        ] {
            assert_eq!(l(p).as_deref(), Some("/event"), "{p}");
        }
        assert_eq!(l("/static/a%2Fb").as_deref(), Some("/static/a/b"));
    }

    #[test]
    fn skeletons_reduce_names_as_mvc_routers_do() {
        let k = |p: &str| String::from_utf8(skeleton(p.as_bytes())).unwrap();
        for p in [
            "/postback",
            "/post.back",
            "/po!stback",
            "/_postback_",
            "/(postback)",
            "/POSTBACK/",
            "//postback",
            "/post%2562ack",
            "/post%%36%32ack",
            "/postback%2520",
            "/postback%E2%80%8B",
            "/-/postback",
        ] {
            assert_eq!(k(p), "postback", "{p}");
        }
        assert_eq!(k("/gdpr_forget_device"), "gdprforgetdevice");
        assert_eq!(k("/gdprForgetDevice"), "gdprforgetdevice");
        assert_eq!(k("/api/v1/s2s/ev.ent"), "api/v1/s2s/event");
        assert_eq!(k("/post/back"), "post/back");
        assert_eq!(k("/"), "");
        assert_eq!(k("/%2F"), "");
    }

    #[test]
    fn dot_and_empty_segments_deleted_as_codeigniter_3_does() {
        let d = |p: &str| without_dot_segments(p.as_bytes()).map(|v| String::from_utf8(v).unwrap());
        for (p, want) in [
            ("/event/..", "/event"),
            ("/event/%2e%2E/", "/event"),
            ("/./event/.%2e", "/event"),
            ("//event.html/", "/event.html"),
            ("/a//b/", "/a/b"),
            ("/..", "/"),
        ] {
            assert_eq!(d(p).as_deref(), Some(want), "{p}");
        }
        // Nothing to delete: a dot inside a segment, three dots, a double escape.
        for p in [
            "/event",
            "/event.json",
            "/a/.../b",
            "/a/%252e/b",
            "/a/%2/b",
            "/",
            "/a.b/c",
        ] {
            assert_eq!(d(p), None, "{p}");
        }
    }

    #[test]
    fn trimmed_segments_read_as_older_spring_does() {
        let t = |p: &str| trimmed_segments(p.as_bytes()).map(|v| String::from_utf8(v).unwrap());
        assert_eq!(t("/event/%20").as_deref(), Some("/event"));
        assert_eq!(t("/%20/event").as_deref(), Some("/event"));
        assert_eq!(t("/%09/event").as_deref(), Some("/event"));
        assert_eq!(t("/%00%20event%0A").as_deref(), Some("/event"));
        assert_eq!(
            t("/api/%20v1/s2s/event%20").as_deref(),
            Some("/api/v1/s2s/event")
        );
        assert_eq!(t("/%20").as_deref(), Some("/"));
        assert_eq!(
            t("/%u0020/index.php/event").as_deref(),
            Some("/index.php/event")
        );
        assert_eq!(t("/event%U0009").as_deref(), Some("/event"));
        // CodeIgniter 4: `+` and `%2B` are spaces after its second decoding.
        for p in [
            "/postback+",
            "/+postback",
            "/+/postback",
            "/postback%2B",
            "/%2b%2Bpostback/+",
        ] {
            assert_eq!(t(p).as_deref(), Some("/postback"), "{p}");
        }
        // Unicode white space, escaped or raw (Java's isWhitespace, Python's strip).
        for p in [
            "/event%E2%80%80",
            "/event%e3%80%80",
            "/%C2%A0event",
            "/event%C2%85",
            "/event%E2%80%A8%20",
            "/event%EF%BB%BF",
            "/event\u{3000}",
            "/\u{2009}event",
        ] {
            assert_eq!(t(p).as_deref(), Some("/event"), "{p}");
        }
        // Not white space, mixed escaping, broken sequences: unchanged.
        for p in [
            "/event%E2%80%8B",
            "/event%E2%80",
            "/event%E2%80\u{80}",
            "/event%E3%80%C0",
            "/event%C3%A9",
            "/event\u{e9}",
            "/a+b",
        ] {
            assert_eq!(t(p), None, "{p}");
        }
        // Inside a segment, or not white space: unchanged.
        assert_eq!(t("/a%20b/event"), None);
        assert_eq!(t("/%21event"), None);
        assert_eq!(t("/event"), None);
        assert_eq!(t("/%2"), None);
    }

    #[test]
    fn format_suffixes_are_found() {
        assert_eq!(
            without_format_suffix(b"/event.json"),
            Some(b"/event".to_vec())
        );
        assert_eq!(
            without_format_suffix(b"/a/event.x.y"),
            Some(b"/a/event".to_vec())
        );
        assert_eq!(
            without_format_suffix(b"/event..json"),
            Some(b"/event".to_vec())
        );
        assert_eq!(
            without_format_suffix(b"/event%20"),
            Some(b"/event".to_vec())
        );
        assert_eq!(
            without_format_suffix(b"/event%20%20"),
            Some(b"/event".to_vec())
        );
        assert_eq!(without_format_suffix(b"/event."), Some(b"/event".to_vec()));
        assert_eq!(without_format_suffix(b"/event"), None);
        assert_eq!(without_format_suffix(b"/.well-known"), None);
        assert_eq!(without_format_suffix(b"/a.b/event"), None);
    }

    #[test]
    fn java_parameters_are_removed() {
        assert_eq!(without_parameters(b"/event;a=b"), Some(b"/event".to_vec()));
        assert_eq!(
            without_parameters(b"/ev;x/ent;y"),
            Some(b"/ev/ent".to_vec())
        );
        assert_eq!(without_parameters(b"/event"), None);
    }
}
