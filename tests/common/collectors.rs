//! Pure models of how collector stacks read a request: which value application code
//! gets for a parameter (query and body merged as the stack merges them), which
//! value it gets for a header, and which path it routes on. Used by
//! `tests/differential.rs` to check that every forwarded request reads one way.
//!
//! Each rule cites where it comes from. The models are deliberately small and
//! deterministic: they cover the behaviours that make two stacks read a request
//! differently (separators, name folding, brackets, repeats, escapes, media types,
//! body-on-method, path normalisation), not every corner of each stack.

#![allow(dead_code)]

/// A request as a collector receives it.
#[derive(Debug, Clone, Copy)]
pub struct RawRequest<'a> {
    pub method: &'a [u8],
    /// The request target: path with `?query`.
    pub path: &'a [u8],
    /// Header names lower-case, in arrival order.
    pub headers: &'a [(String, Vec<u8>)],
    pub body: &'a [u8],
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Stack {
    /// Go `net/http`: `Request.FormValue`, `ServeMux`.
    GoFormValue,
    /// PHP: `$_REQUEST` (request_order "GP"), a front controller router.
    Php,
    /// Rack 2 (`Rack::Request#params`), Rails-style routing.
    Rack,
    /// Express 4: `qs` query parser, `body-parser` urlencoded (extended),
    /// `req.body.x ?? req.query.x`.
    ExpressQs,
    /// Flask / Werkzeug ≥ 2: `request.values`.
    Flask,
    /// Python `cgi.FieldStorage.getfirst` / `parse_qs` before 3.9.2.
    PythonLegacy,
}

impl Stack {
    pub const ALL: [Stack; 6] = [
        Stack::GoFormValue,
        Stack::Php,
        Stack::Rack,
        Stack::ExpressQs,
        Stack::Flask,
        Stack::PythonLegacy,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Stack::GoFormValue => "go-formvalue",
            Stack::Php => "php",
            Stack::Rack => "rack",
            Stack::ExpressQs => "express-qs",
            Stack::Flask => "flask",
            Stack::PythonLegacy => "python-legacy",
        }
    }
}

/// What application code gets.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Value {
    Str(Vec<u8>),
    /// An array, a hash, or a parse error: not a plain string.
    Other,
}

impl std::fmt::Display for Value {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Value::Str(v) => write!(f, "{:?}", String::from_utf8_lossy(v)),
            Value::Other => f.write_str("<array/hash/error>"),
        }
    }
}

// ---- shared helpers ------------------------------------------------------------

/// The first value of a header, without leading and trailing white space: every
/// HTTP parser strips it (RFC 9110 §5.5, field values exclude OWS).
fn header<'a>(req: &RawRequest<'a>, name: &str) -> Option<&'a [u8]> {
    req.headers
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| trim(v))
}

fn query<'a>(req: &RawRequest<'a>) -> &'a [u8] {
    match req.path.iter().position(|&b| b == b'?') {
        Some(i) => &req.path[i + 1..],
        None => b"",
    }
}

fn path_only<'a>(req: &RawRequest<'a>) -> &'a [u8] {
    match req.path.iter().position(|&b| b == b'?') {
        Some(i) => &req.path[..i],
        None => req.path,
    }
}

fn hex(b: u8) -> Option<u8> {
    (b as char).to_digit(16).map(|d| d as u8)
}

/// `+` → space (when `plus`), `%XX` decoded; a broken escape is an error (`strict`)
/// or kept literally.
fn unescape(s: &[u8], plus: bool, strict: bool) -> Result<Vec<u8>, ()> {
    let mut out = Vec::with_capacity(s.len());
    let mut i = 0;
    while i < s.len() {
        match s[i] {
            b'+' if plus => out.push(b' '),
            b'%' => match (
                s.get(i + 1).and_then(|&b| hex(b)),
                s.get(i + 2).and_then(|&b| hex(b)),
            ) {
                (Some(h), Some(l)) => {
                    out.push(h << 4 | l);
                    i += 2;
                }
                _ if strict => return Err(()),
                _ => out.push(b'%'),
            },
            b => out.push(b),
        }
        i += 1;
    }
    Ok(out)
}

/// Splits on any of `seps`, dropping empty pieces; each piece at its first `=`
/// (no `=`: the value is empty, `has_eq` false).
fn pairs<'a>(s: &'a [u8], seps: &[u8]) -> Vec<(&'a [u8], &'a [u8], bool)> {
    s.split(|b| seps.contains(b))
        .filter(|p| !p.is_empty())
        .map(|p| match p.iter().position(|&b| b == b'=') {
            Some(i) => (&p[..i], &p[i + 1..], true),
            None => (p, &b""[..], false),
        })
        .collect()
}

fn lower(s: &[u8]) -> Vec<u8> {
    s.to_ascii_lowercase()
}

fn trim(s: &[u8]) -> &[u8] {
    let s = match s.iter().position(|b| !b" \t".contains(b)) {
        Some(i) => &s[i..],
        None => return b"",
    };
    let e = s.iter().rposition(|b| !b" \t".contains(b)).unwrap_or(0);
    &s[..=e]
}

fn is_token_char(b: u8) -> bool {
    b > 0x20 && b < 0x7f && !br#"()<>@,;:\"/[]?="#.contains(&b)
}

/// `type/subtype` made only of token characters.
fn is_type_subtype(s: &[u8]) -> bool {
    let Some(i) = s.iter().position(|&b| b == b'/') else {
        return false;
    };
    let (t, st) = (&s[..i], &s[i + 1..]);
    !t.is_empty()
        && !st.is_empty()
        && t.iter().all(|&b| is_token_char(b))
        && st.iter().all(|&b| is_token_char(b))
}

/// The `boundary` parameter of a content type (quotes removed).
fn boundary(ct: &[u8]) -> Option<Vec<u8>> {
    let l = lower(ct);
    let i = l.windows(9).position(|w| w == b"boundary=")?;
    let rest = &ct[i + 9..];
    let end = rest.iter().position(|&b| b == b';').unwrap_or(rest.len());
    let b = trim(&rest[..end]);
    let b = b
        .strip_prefix(b"\"")
        .and_then(|b| b.strip_suffix(b"\""))
        .unwrap_or(b);
    (!b.is_empty()).then(|| b.to_vec())
}

/// The fields of a `multipart/form-data` body, in order: (name, value). Only what
/// matters here: split on the boundary, `name="..."` of each part.
pub fn multipart_fields(ct: &[u8], body: &[u8]) -> Vec<(Vec<u8>, Vec<u8>)> {
    let Some(b) = boundary(ct) else {
        return Vec::new();
    };
    let mut delim = b"--".to_vec();
    delim.extend_from_slice(&b);
    let mut out = Vec::new();
    let mut parts = Vec::new();
    let mut rest = body;
    while let Some(i) = find(rest, &delim) {
        parts.push(&rest[..i]);
        rest = &rest[i + delim.len()..];
    }
    for part in parts.into_iter().skip(1) {
        let part = part.strip_prefix(b"\r\n").unwrap_or(part);
        let Some(h) = find(part, b"\r\n\r\n") else {
            continue;
        };
        let (head, value) = (&part[..h], &part[h + 4..]);
        let value = value.strip_suffix(b"\r\n").unwrap_or(value);
        let lh = lower(head);
        let Some(n) = find(&lh, b"name=\"") else {
            continue;
        };
        let name = &head[n + 6..];
        let Some(e) = name.iter().position(|&b| b == b'"') else {
            continue;
        };
        out.push((name[..e].to_vec(), value.to_vec()));
    }
    out
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    if needle.is_empty() || hay.len() < needle.len() {
        return None;
    }
    hay.windows(needle.len()).position(|w| w == needle)
}

fn lossy(v: Vec<u8>) -> Vec<u8> {
    String::from_utf8_lossy(&v).into_owned().into_bytes()
}

// ---- parameters -------------------------------------------------------------------

/// Whether `stack` refuses the whole request while reading its parameters (an
/// error answer, so application code reads nothing): Rack raises
/// InvalidParameterError on any bad escape in the query or a form body (→ 400);
/// body-parser answers 415 for a charset other than utf-8 or a coding it cannot
/// inflate.
pub fn refuses(stack: Stack, req: &RawRequest) -> bool {
    match stack {
        Stack::Rack => {
            let mut v = Vec::new();
            if rack_vars(query(req), b"&;", &mut v).is_err() {
                return true;
            }
            rack_form_body(req).is_some_and(|b| rack_vars(b, b"&", &mut v).is_err())
        }
        Stack::ExpressQs => matches!(express_body(req), ExpressBody::Refused),
        _ => false,
    }
}

/// What application code of `stack` gets for the parameter `field`, query and body
/// merged as the stack merges them; `None` if it gets nothing.
pub fn read_param(stack: Stack, req: &RawRequest, field: &str) -> Option<Value> {
    let field = field.as_bytes();
    match stack {
        Stack::GoFormValue => go(req, field),
        Stack::Php => php(req, field),
        Stack::Rack => rack(req, field),
        Stack::ExpressQs => express(req, field),
        Stack::Flask => flask(req, field),
        Stack::PythonLegacy => python_legacy(req, field),
    }
}

// -- Go ------------------------------------------------------------------------

/// net/url ParseQuery: split on `&`; a piece holding `;` is dropped (Go ≥ 1.17,
/// golang/go#25192); a piece whose name or value has a bad escape is dropped
/// (url.QueryUnescape error → `continue`).
fn go_parse_query(s: &[u8]) -> Vec<(Vec<u8>, Vec<u8>)> {
    s.split(|&b| b == b'&')
        .filter(|p| !p.is_empty() && !p.contains(&b';'))
        .filter_map(|p| {
            let (k, v) = match p.iter().position(|&b| b == b'=') {
                Some(i) => (&p[..i], &p[i + 1..]),
                None => (p, &b""[..]),
            };
            Some((unescape(k, true, true).ok()?, unescape(v, true, true).ok()?))
        })
        .collect()
}

/// mime.ParseMediaType: the type before `;`, trimmed, lower-cased, must be exactly
/// `token/token` (a list or a trailing `,` is an error: "unexpected content after
/// media subtype"). Parameter errors still return the type (ErrInvalidMediaParameter).
fn go_media_type(ct: &[u8]) -> Option<Vec<u8>> {
    let end = ct.iter().position(|&b| b == b';').unwrap_or(ct.len());
    let t = lower(trim(&ct[..end]));
    is_type_subtype(&t).then_some(t)
}

/// Request.FormValue: ParseMultipartForm → ParseForm. PostForm (body, for POST, PUT,
/// PATCH with `application/x-www-form-urlencoded`; an empty Content-Type is
/// `application/octet-stream`, RFC 7231 §3.1.1.5) comes first in `Form`, then the
/// query, then multipart values (net/http/request.go parsePostForm, ParseForm,
/// ParseMultipartForm); `Form[key][0]`.
fn go(req: &RawRequest, field: &[u8]) -> Option<Value> {
    let mut form = Vec::new();
    let ct = header(req, "content-type").unwrap_or(b"application/octet-stream");
    let mt = go_media_type(ct);
    if matches!(req.method, b"POST" | b"PUT" | b"PATCH")
        && mt.as_deref() == Some(b"application/x-www-form-urlencoded")
    {
        form.extend(go_parse_query(req.body));
    }
    form.extend(go_parse_query(query(req)));
    // multipartReader: no method check, media type must be multipart/form-data.
    if mt.as_deref() == Some(b"multipart/form-data") {
        form.extend(multipart_fields(ct, req.body));
    }
    form.into_iter()
        .find(|(k, _)| k == field)
        .map(|(_, v)| Value::Str(v))
}

// -- PHP -----------------------------------------------------------------------

/// php_register_variable_ex: the name is cut at NUL (strlen), leading spaces are
/// dropped, ` ` and `.` become `_` up to the first `[`; `[` with a closing `]` makes
/// an array of the part before it (an empty part: the variable is ignored); an
/// unmatched `[` becomes `_` and the rest is kept literally (main/php_variables.c).
/// Returns (name, is_array).
fn php_name(raw: &[u8]) -> Option<(Vec<u8>, bool)> {
    let raw = &raw[..raw.iter().position(|&b| b == 0).unwrap_or(raw.len())];
    let start = raw.iter().position(|&b| b != b' ').unwrap_or(raw.len());
    let mut name = raw[start..].to_vec();
    let mut i = 0;
    while i < name.len() {
        match name[i] {
            b' ' | b'.' => name[i] = b'_',
            b'[' => {
                if name[i + 1..].contains(&b']') {
                    name.truncate(i);
                    return (!name.is_empty()).then_some((name, true));
                }
                name[i] = b'_';
                break;
            }
            _ => {}
        }
        i += 1;
    }
    (!name.is_empty()).then_some((name, false))
}

/// php_default_treat_data: split on arg_separator.input (`&`), php_url_decode (`+`
/// → space, a bad escape kept literally), then php_register_variable_ex.
fn php_vars(pairs_: impl IntoIterator<Item = (Vec<u8>, Vec<u8>)>, out: &mut Vec<(Vec<u8>, Value)>) {
    for (k, v) in pairs_ {
        if let Some((name, array)) = php_name(&k) {
            out.push((name, if array { Value::Other } else { Value::Str(v) }));
        }
    }
}

fn php_decode_pairs(s: &[u8]) -> Vec<(Vec<u8>, Vec<u8>)> {
    pairs(s, b"&")
        .into_iter()
        .map(|(k, v, _)| {
            (
                unescape(k, true, false).unwrap(),
                unescape(v, true, false).unwrap(),
            )
        })
        .collect()
}

/// `$_REQUEST` with request_order "GP" (php.ini-production): `$_GET` then `$_POST`,
/// a later key overwrites (php_auto_globals_create_request). `$_POST` is filled for
/// the method `POST` only (sapi_activate), when the Content-Type cut at the first
/// `;`, `,` or space and lower-cased is `application/x-www-form-urlencoded` or
/// `multipart/form-data` (sapi_read_post_data, rfc1867). Last value wins.
fn php(req: &RawRequest, field: &[u8]) -> Option<Value> {
    let mut vars = Vec::new();
    php_vars(php_decode_pairs(query(req)), &mut vars);
    if req.method == b"POST" {
        if let Some(ct) = header(req, "content-type") {
            let end = ct
                .iter()
                .position(|b| b";, ".contains(b))
                .unwrap_or(ct.len());
            match lower(&ct[..end]).as_slice() {
                b"application/x-www-form-urlencoded" => {
                    php_vars(php_decode_pairs(req.body), &mut vars)
                }
                b"multipart/form-data" => php_vars(multipart_fields(ct, req.body), &mut vars),
                _ => {}
            }
        }
    }
    vars.into_iter()
        .rev()
        .find(|(k, _)| k == field)
        .map(|(_, v)| v)
}

// -- Rack ------------------------------------------------------------------------

/// Rack 2 normalize_params: `\A[\[\]]*([^\[\]]+)\]*` gives the key, what follows
/// decides: nothing → a string; `[` → the whole name as a string; anything else → a
/// hash or an array (rack/query_parser.rb).
fn rack_name(name: &[u8]) -> Option<(Vec<u8>, bool)> {
    let s = name.iter().position(|&b| b != b'[' && b != b']')?;
    let e = s + name[s..]
        .iter()
        .position(|&b| b == b'[' || b == b']')
        .unwrap_or(name.len() - s);
    let key = name[s..e].to_vec();
    let mut after = &name[e..];
    while let Some(a) = after.strip_prefix(b"]") {
        after = a;
    }
    match after {
        b"" => Some((key, false)),
        b"[" => Some((name.to_vec(), false)),
        _ => Some((key, true)),
    }
}

/// Rack 2 parse_nested_query: split on the separators followed by optional spaces
/// (`/[&;] */n`, `/[&] */n`), each piece at `=`, unescape =
/// URI.decode_www_form_component, which raises on a bad escape (→ 400
/// InvalidParameterError: every reading is an error). Last value wins.
fn rack_vars(s: &[u8], seps: &[u8], out: &mut Vec<(Vec<u8>, Value)>) -> Result<(), ()> {
    for piece in s.split(|b| seps.contains(b)) {
        let start = piece.iter().position(|&b| b != b' ').unwrap_or(piece.len());
        let piece = &piece[start..];
        if piece.is_empty() {
            continue;
        }
        let (k, v) = match piece.iter().position(|&b| b == b'=') {
            Some(i) => (&piece[..i], &piece[i + 1..]),
            None => (piece, &b""[..]),
        };
        let k = unescape(k, true, true)?;
        let v = unescape(v, true, true)?;
        if let Some((name, nested)) = rack_name(&k) {
            out.push((name, if nested { Value::Other } else { Value::Str(v) }));
        }
    }
    Ok(())
}

/// Rack::Request: media_type is the part before `;` or `,` (`/\s*[;,]\s*/`),
/// lower-cased; POST is parsed for any method when it is a form type, and for a
/// `POST` without Content-Type (form_data?); the body is split on `&` only, a
/// trailing NUL removed (Safari fix).
fn rack_media_type(req: &RawRequest) -> Option<Vec<u8>> {
    header(req, "content-type").map(|ct| {
        let end = ct
            .iter()
            .position(|b| b";,".contains(b))
            .unwrap_or(ct.len());
        lower(trim(&ct[..end]))
    })
}

/// The urlencoded body Rack parses, if it parses one.
fn rack_form_body<'a>(req: &RawRequest<'a>) -> Option<&'a [u8]> {
    let form = match rack_media_type(req).as_deref() {
        None => req.method == b"POST",
        Some(t) => t == b"application/x-www-form-urlencoded",
    };
    form.then(|| req.body.strip_suffix(b"\0").unwrap_or(req.body))
}

/// params = GET.merge(POST): the body's keys override the query's; a bad escape
/// anywhere is an error (see [`refuses`]), read here as Other.
fn rack(req: &RawRequest, field: &[u8]) -> Option<Value> {
    let mut vars = Vec::new();
    let mut err = rack_vars(query(req), b"&;", &mut vars).is_err();
    if let Some(body) = rack_form_body(req) {
        err |= rack_vars(body, b"&", &mut vars).is_err();
    } else if rack_media_type(req).as_deref() == Some(b"multipart/form-data") {
        for (k, v) in multipart_fields(header(req, "content-type").unwrap_or_default(), req.body) {
            if let Some((name, nested)) = rack_name(&k) {
                vars.push((name, if nested { Value::Other } else { Value::Str(v) }));
            }
        }
    }
    if err {
        return Some(Value::Other);
    }
    vars.into_iter()
        .rev()
        .find(|(k, _)| k == field)
        .map(|(_, v)| v)
}

// -- Express ---------------------------------------------------------------------

/// qs utils.decode: `+` → space, then decodeURIComponent; on a URIError (a bad
/// escape, or escapes that are not UTF-8) the string is kept as it is.
fn qs_decode(s: &[u8]) -> Vec<u8> {
    let plus: Vec<u8> = s
        .iter()
        .map(|&b| if b == b'+' { b' ' } else { b })
        .collect();
    match unescape(&plus, false, true) {
        Ok(d) if std::str::from_utf8(&d).is_ok() => d,
        _ => lossy(plus),
    }
}

/// qs.parse: `%5B`/`%5D` become brackets before anything else; split on `&`; each
/// piece at `]=` or `=`; a repeated key becomes an array; a key with a `[...]`
/// segment is an object/array of its parent; with an empty parent the first
/// segment names the key (`[a]=1` is `a`); several contributions to a key are
/// merged into an array (qs/lib/parse.js parseValues, parseKeys; utils.merge).
fn qs_parse(s: &[u8]) -> Vec<(Vec<u8>, Value)> {
    let lower_s = lower(s);
    let mut clean = Vec::with_capacity(s.len());
    let mut i = 0;
    while i < s.len() {
        if lower_s[i..].starts_with(b"%5b") {
            clean.push(b'[');
            i += 3;
        } else if lower_s[i..].starts_with(b"%5d") {
            clean.push(b']');
            i += 3;
        } else {
            clean.push(s[i]);
            i += 1;
        }
    }
    // parseValues
    let mut flat: Vec<(Vec<u8>, Value)> = Vec::new();
    for part in clean.split(|&b| b == b'&').filter(|p| !p.is_empty()) {
        let pos = match find(part, b"]=") {
            Some(i) => Some(i + 1),
            None => part.iter().position(|&b| b == b'='),
        };
        let (k, v) = match pos {
            Some(i) => (qs_decode(&part[..i]), qs_decode(&part[i + 1..])),
            None => (qs_decode(part), Vec::new()),
        };
        match flat.iter_mut().find(|(fk, _)| *fk == k) {
            Some(e) => e.1 = Value::Other,
            None => flat.push((k, Value::Str(v))),
        }
    }
    // parseKeys, merged into the top level
    let mut top: Vec<(Vec<u8>, Value)> = Vec::new();
    for (k, v) in flat {
        if k.is_empty() {
            continue;
        }
        let seg = (0..k.len()).find_map(|i| {
            if k[i] != b'[' {
                return None;
            }
            let j = k[i + 1..].iter().position(|&b| b == b'[' || b == b']')?;
            (k[i + 1 + j] == b']').then_some((i, i + 1 + j))
        });
        let (name, v) = match seg {
            None => (k.clone(), v),
            Some((0, close)) => {
                let inner = k[1..close].to_vec();
                (
                    inner,
                    if close + 1 == k.len() {
                        v
                    } else {
                        Value::Other
                    },
                )
            }
            Some((open, _)) => (k[..open].to_vec(), Value::Other),
        };
        match top.iter_mut().find(|(tk, _)| *tk == name) {
            Some(e) => e.1 = Value::Other,
            None => top.push((name, v)),
        }
    }
    top
}

/// content-type (jshttp) parse, used by type-is: the type before `;` must match
/// `^[!#$%&'*+.^_`|~0-9A-Za-z-]+/[...]+$` (a list throws → not matched), then
/// PARAM_REGEXP `; *token *= *(token|quoted) *` must match contiguously to the end
/// (a lone or trailing `;`, a parameter without `=` throw "invalid parameter
/// format"). Returns the lower-cased type and the charset parameter.
fn express_type(ct: &[u8]) -> Option<(Vec<u8>, Option<Vec<u8>>)> {
    let end = ct.iter().position(|&b| b == b';').unwrap_or(ct.len());
    let t = trim(&ct[..end]);
    let ok = |b: &u8| b.is_ascii_alphanumeric() || b"!#$%&'*+.^_`|~-".contains(b);
    let slash = t.iter().position(|&b| b == b'/')?;
    if slash == 0
        || slash + 1 == t.len()
        || !t[..slash].iter().all(ok)
        || !t[slash + 1..].iter().all(ok)
    {
        return None;
    }
    let mut charset = None;
    let mut i = end;
    let spaces = |i: &mut usize| {
        while ct.get(*i) == Some(&b' ') {
            *i += 1;
        }
    };
    let token = |i: &mut usize| -> Option<Vec<u8>> {
        let start = *i;
        while ct.get(*i).is_some_and(ok) {
            *i += 1;
        }
        (*i > start).then(|| ct[start..*i].to_vec())
    };
    while i < ct.len() {
        if ct[i] != b';' {
            return None;
        }
        i += 1;
        spaces(&mut i);
        let key = lower(&token(&mut i)?);
        spaces(&mut i);
        if ct.get(i) != Some(&b'=') {
            return None;
        }
        i += 1;
        spaces(&mut i);
        let value = if ct.get(i) == Some(&b'"') {
            i += 1;
            let mut v = Vec::new();
            loop {
                match *ct.get(i)? {
                    b'"' => break,
                    b'\\' => {
                        v.push(*ct.get(i + 1)?);
                        i += 2;
                    }
                    b if b == 0x0b || b >= 0x20 && b != 0x7f => {
                        v.push(b);
                        i += 1;
                    }
                    _ => return None,
                }
            }
            i += 1;
            v
        } else {
            token(&mut i)?
        };
        spaces(&mut i);
        if key == b"charset" {
            charset = Some(lower(&value));
        }
    }
    Some((lower(t), charset))
}

enum ExpressBody<'a> {
    /// No body parsed (`req.body` is `{}`).
    None,
    Parsed(&'a [u8]),
    /// Inflated (gzip, deflate): the model does not read it.
    Inflated,
    /// 415: a charset other than utf-8, or a coding it cannot inflate.
    Refused,
}

/// body-parser urlencoded ({extended: true}): the body is read for any method with
/// a body (type-is hasBody: Content-Length or Transfer-Encoding; a body without
/// Content-Length goes upstream chunked) whose Content-Type parses strictly as
/// `application/x-www-form-urlencoded`; a charset other than utf-8 is a 415; a
/// gzip/deflate body is inflated, another coding is a 415 (read.js); multipart is
/// not parsed (needs multer).
fn express_body<'a>(req: &RawRequest<'a>) -> ExpressBody<'a> {
    let has_body = !req.body.is_empty()
        || header(req, "content-length").is_some()
        || header(req, "transfer-encoding").is_some();
    let Some((t, charset)) = header(req, "content-type").and_then(express_type) else {
        return ExpressBody::None;
    };
    if !has_body || t != b"application/x-www-form-urlencoded" {
        return ExpressBody::None;
    }
    if charset.is_some_and(|c| c != b"utf-8") {
        return ExpressBody::Refused;
    }
    match header(req, "content-encoding").map(lower).as_deref() {
        None | Some(b"identity") => ExpressBody::Parsed(req.body),
        Some(b"gzip") | Some(b"deflate") => ExpressBody::Inflated,
        Some(_) => ExpressBody::Refused,
    }
}

/// Express 4 (`query parser` "extended" = qs) and body-parser; code reads
/// `req.body.x ?? req.query.x`.
fn express(req: &RawRequest, field: &[u8]) -> Option<Value> {
    match express_body(req) {
        ExpressBody::Parsed(b) => {
            if let Some((_, v)) = qs_parse(b).into_iter().find(|(k, _)| k == field) {
                return Some(v);
            }
        }
        ExpressBody::Inflated | ExpressBody::Refused => return Some(Value::Other),
        ExpressBody::None => {}
    }
    qs_parse(query(req))
        .into_iter()
        .find(|(k, _)| k == field)
        .map(|(_, v)| v)
}

// -- Flask / Werkzeug ------------------------------------------------------------

/// urllib.parse.parse_qsl(keep_blank_values=True, errors="werkzeug.url_quote"):
/// split on `&` (3.9.2+), `+` → space, bad escapes kept literally, bytes that are
/// not UTF-8 written back as `%XX` (werkzeug/urls.py, sansio/request.py).
fn flask_pairs(s: &[u8]) -> Vec<(Vec<u8>, Vec<u8>)> {
    let requote = |v: Vec<u8>| -> Vec<u8> {
        let mut out = Vec::new();
        let mut rest = v.as_slice();
        loop {
            match std::str::from_utf8(rest) {
                Ok(s) => {
                    out.extend_from_slice(s.as_bytes());
                    break;
                }
                Err(e) => {
                    let good = e.valid_up_to();
                    out.extend_from_slice(&rest[..good]);
                    let bad = e.error_len().unwrap_or(rest.len() - good);
                    for &b in &rest[good..good + bad] {
                        out.extend_from_slice(format!("%{b:02X}").as_bytes());
                    }
                    rest = &rest[good + bad..];
                }
            }
        }
        out
    };
    pairs(s, b"&")
        .into_iter()
        .map(|(k, v, _)| {
            (
                requote(unescape(k, true, false).unwrap()),
                requote(unescape(v, true, false).unwrap()),
            )
        })
        .collect()
}

/// Werkzeug Request.values: CombinedMultiDict([args, form]), form left out for GET
/// (Werkzeug ≥ 2.0); form parsed for any method when the mimetype (before `;`,
/// stripped, lower-cased: parse_options_header) is urlencoded or multipart; the
/// first dict holding the key, its first value.
fn flask(req: &RawRequest, field: &[u8]) -> Option<Value> {
    let mut vals = flask_pairs(query(req));
    if req.method != b"GET" {
        if let Some(ct) = header(req, "content-type") {
            let end = ct.iter().position(|&b| b == b';').unwrap_or(ct.len());
            match lower(trim(&ct[..end])).as_slice() {
                b"application/x-www-form-urlencoded" => vals.extend(flask_pairs(req.body)),
                b"multipart/form-data" => vals.extend(multipart_fields(ct, req.body)),
                _ => {}
            }
        }
    }
    vals.into_iter()
        .find(|(k, _)| k == field)
        .map(|(_, v)| Value::Str(v))
}

// -- legacy Python ---------------------------------------------------------------

/// parse_qsl before 3.9.2 (bpo-42967): split on `&` and `;`, keep_blank_values
/// false (FieldStorage's default: `a=` and `a` are dropped), unquote with
/// errors="replace".
fn py_legacy_pairs(s: &[u8]) -> Vec<(Vec<u8>, Vec<u8>)> {
    pairs(s, b"&;")
        .into_iter()
        .filter(|(_, v, has_eq)| *has_eq && !v.is_empty())
        .map(|(k, v, _)| {
            (
                lossy(unescape(k, true, false).unwrap()),
                lossy(unescape(v, true, false).unwrap()),
            )
        })
        .filter(|(_, v)| !v.is_empty())
        .collect()
}

/// cgi.FieldStorage: GET/HEAD read the query only; other methods read the body by
/// its Content-Type (a POST without one is a form): urlencoded → body then
/// `&` + query (qs_on_post), multipart → query then parts (read_multi), anything
/// else → read_single, no fields at all. getfirst: the first value.
fn python_legacy(req: &RawRequest, field: &[u8]) -> Option<Value> {
    let vals = if matches!(req.method, b"GET" | b"HEAD") {
        py_legacy_pairs(query(req))
    } else {
        let ct = header(req, "content-type")
            .or((req.method == b"POST").then_some(&b"application/x-www-form-urlencoded"[..]));
        let ct = ct.unwrap_or(b"text/plain");
        let end = ct.iter().position(|&b| b == b';').unwrap_or(ct.len());
        let t = lower(trim(&ct[..end]));
        if t == b"application/x-www-form-urlencoded" {
            let mut v = py_legacy_pairs(req.body);
            v.extend(py_legacy_pairs(query(req)));
            v
        } else if t.starts_with(b"multipart/") {
            let mut v = py_legacy_pairs(query(req));
            v.extend(
                multipart_fields(ct, req.body)
                    .into_iter()
                    .map(|(k, v)| (k, lossy(v))),
            );
            v
        } else {
            Vec::new()
        }
    };
    vals.into_iter()
        .find(|(k, _)| k == field)
        .map(|(_, v)| Value::Str(v))
}

// ---- headers ----------------------------------------------------------------------

/// What `stack` gets for the request header `name` (lower-case, with `-`).
/// Go: the exact name (canonicalised), the first value (Header.Get). Node: the exact
/// name; repeats joined with ", " except the headers Node discards (authorization,
/// content-type, …: the first). CGI-environment stacks (PHP, Rack/Puma, legacy
/// Python CGI): `HTTP_X_AUTH_TOKEN` is made from `x-auth-token` and `x_auth_token`
/// alike; two sources are two readings (→ Other). Werkzeug under gunicorn ≥ 22
/// drops names with `_` (header_map "drop"); repeats joined with ",".
pub fn read_header(stack: Stack, req: &RawRequest, name: &str) -> Option<Value> {
    let exact: Vec<&[u8]> = req
        .headers
        .iter()
        .filter(|(k, _)| k == name)
        .map(|(_, v)| v.as_slice())
        .collect();
    let cgi_name = name.replace('_', "-");
    let cgi: Vec<&[u8]> = req
        .headers
        .iter()
        .filter(|(k, _)| k.replace('_', "-") == cgi_name)
        .map(|(_, v)| v.as_slice())
        .collect();
    let join = |vs: &[&[u8]], sep: &[u8]| -> Option<Value> {
        if vs.is_empty() {
            return None;
        }
        Some(Value::Str(vs.join(sep)))
    };
    match stack {
        Stack::GoFormValue => exact.first().map(|v| Value::Str(v.to_vec())),
        Stack::ExpressQs => {
            const DISCARDED: &[&str] = &[
                "authorization",
                "content-type",
                "content-length",
                "user-agent",
                "host",
            ];
            if DISCARDED.contains(&name) {
                exact.first().map(|v| Value::Str(v.to_vec()))
            } else {
                join(&exact, b", ")
            }
        }
        Stack::Flask => {
            if name.contains('_') {
                None
            } else {
                join(&exact, b",")
            }
        }
        Stack::Php | Stack::Rack | Stack::PythonLegacy => match cgi.len() {
            0 => None,
            1 => Some(Value::Str(cgi[0].to_vec())),
            _ => Some(Value::Other),
        },
    }
}

// ---- routing ---------------------------------------------------------------------

/// Removes `.` and `..` segments (RFC 3986 §5.2.4 style, as Go's path.Clean).
fn remove_dots(p: &[u8]) -> Vec<u8> {
    let trailing = p.ends_with(b"/") || p.ends_with(b"/.") || p.ends_with(b"/..");
    let mut segs: Vec<&[u8]> = Vec::new();
    for s in p.split(|&b| b == b'/') {
        match s {
            b"" | b"." => {}
            b".." => {
                segs.pop();
            }
            s => segs.push(s),
        }
    }
    let mut out = Vec::new();
    for s in &segs {
        out.push(b'/');
        out.extend_from_slice(s);
    }
    if out.is_empty() || trailing {
        out.push(b'/');
    }
    out
}

fn merge_slashes(p: &[u8]) -> Vec<u8> {
    let mut out: Vec<u8> = Vec::with_capacity(p.len());
    for &b in p {
        if b == b'/' && out.last() == Some(&b'/') {
            continue;
        }
        out.push(b);
    }
    out
}

fn strip_trailing_slash(mut p: Vec<u8>) -> Vec<u8> {
    while p.len() > 1 && p.ends_with(b"/") {
        p.pop();
    }
    p
}

/// Decodes only escapes of unreserved characters (RFC 3986 §2.3).
fn decode_unreserved(p: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(p.len());
    let mut i = 0;
    while i < p.len() {
        if p[i] == b'%' {
            if let (Some(h), Some(l)) = (
                p.get(i + 1).and_then(|&b| hex(b)),
                p.get(i + 2).and_then(|&b| hex(b)),
            ) {
                let c = h << 4 | l;
                if c.is_ascii_alphanumeric() || b"-._~".contains(&c) {
                    out.push(c);
                    i += 3;
                    continue;
                }
            }
        }
        out.push(p[i]);
        i += 1;
    }
    out
}

/// The path `stack` routes on, in the form its router compares with a route's
/// pattern (so a stack that ignores case returns it lower-cased, one that ignores a
/// trailing slash returns it without). A path the stack refuses gives an empty path.
pub fn routed_path(stack: Stack, req: &RawRequest) -> Vec<u8> {
    let raw = path_only(req);
    match stack {
        // ServeMux: URL.Path (decoded; a bad escape is a 400), cleanPath (dot
        // segments, repeated slashes: a redirect to the same handler), case and a
        // trailing slash significant (net/http/server.go).
        Stack::GoFormValue => match unescape(raw, false, true) {
            Ok(p) => remove_dots(&merge_slashes(&p)),
            Err(()) => Vec::new(),
        },
        // Express: routes are case-insensitive and strict: false (a trailing slash
        // ignored); modelled as decoding escapes before matching (generous).
        Stack::ExpressQs => strip_trailing_slash(lower(&unescape(raw, false, false).unwrap())),
        // PHP front controllers route on REQUEST_URI, rawurldecode'd by most routers;
        // case and trailing slash significant.
        Stack::Php => unescape(raw, false, false).unwrap(),
        // Rails Journey normalize_path: escapes of unreserved characters decoded,
        // slashes squeezed, trailing slash removed; case-sensitive.
        Stack::Rack => strip_trailing_slash(merge_slashes(&decode_unreserved(raw))),
        // Werkzeug: PATH_INFO decoded by the WSGI server, merge_slashes (a redirect),
        // strict slashes, case-sensitive.
        Stack::Flask => merge_slashes(&unescape(raw, false, false).unwrap()),
        // CGI: PATH_INFO decoded by the server.
        Stack::PythonLegacy => unescape(raw, false, false).unwrap(),
    }
}
