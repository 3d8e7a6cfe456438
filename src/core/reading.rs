//! One reading of every decision input, or a refusal.
//!
//! Collectors read requests in different ways: Go's `FormValue` takes the first
//! value (form body before query), PHP and Rack the last; PHP folds `app.token`,
//! `app token` and an unclosed `app[token` onto `app_token`; old Rack and Python
//! split on `;` as well as `&`; a collector written in C stops at NUL; CGI stacks
//! merge `x_a` with `x-a`. The filter forwards a request only when every such
//! reading of every field its decision depends on agrees: each field appears at
//! most once, under its own spelling, with a clean value. Anything else is an
//! [`Ambiguity`], refused by the caller.

use crate::policy::{BodyRule, Checks, Route, Source};
use crate::request::{trim, Param, RequestView};
use std::borrow::Cow;

/// Which kind of double reading was found (counted per class).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Class {
    /// A decision field given more than once (query, form body or both).
    Repeated,
    /// A name another stack folds onto a decision field (`app.token`, `app[token`,
    /// `app_token[]`).
    Spelling,
    /// `;` inside a pair that touches a decision field (split by old Rack/Python).
    Separator,
    /// NUL, CR, LF or another control character, leading or trailing white space,
    /// or bytes that are not UTF-8 in a decision field's value.
    BadValue,
    /// A `%` escape that is not two hex digits (Go drops the pair, PHP keeps it).
    BadEscape,
    /// A header the decision reads, sent twice or under another spelling
    /// (`x_auth_token` beside `x-auth-token`).
    Header,
    /// A body on a method that must not carry one (Express and Rack read it).
    BodyOnMethod,
    /// The buffered body is not the length `Content-Length` announced.
    BodyLength,
    /// A path that cannot be made canonical safely.
    Path,
    /// A request trailer that names a header the decision reads.
    Trailer,
    /// More parameters than collectors keep (PHP's `max_input_vars`, `qs`'s
    /// `parameterLimit`: 1000): the ones past the limit are silently dropped.
    TooManyParams,
    /// A credential parameter of the realm that this route does not read: a
    /// collector with one credential reader could take it instead.
    OtherCredential,
    /// Parameters (but a flag, `s2s=1`) in the query of a request whose form body
    /// must be read before it is decided, with headers that cannot be held
    /// (`hold_headers_for_body` off): they would reach the collector before the
    /// decision, and a collector may act on the query alone (Go's `FormValue`
    /// keeps it when the body read fails, Tomcat too, a query-only handler at
    /// once).
    QueryWithBody,
    /// A cookie named like a decision field, the flag marker, or an owned header
    /// as a server variable: PHP's `$_REQUEST` (built-in `variables_order`, as the
    /// official Docker images run it) takes cookies over the query and the form
    /// body, classic ASP.NET's `Request[...]` reads them when those lack the name.
    Cookie,
    /// The flag that picks a route's checks (`s2s=1`: a token, not a signature) in
    /// the query or the form body while the other holds the request's parameters: a
    /// collector reading only the body (`$_POST`, Go's `PostFormValue`, Express's
    /// `req.body`, `request.form`, Django's `POST`, Rack's `POST`) or only the
    /// query reads the request without the flag the filter decided on.
    FlagPlace,
}

impl Class {
    pub const ALL: [Class; 15] = [
        Class::Repeated,
        Class::Spelling,
        Class::Separator,
        Class::BadValue,
        Class::BadEscape,
        Class::Header,
        Class::BodyOnMethod,
        Class::BodyLength,
        Class::Path,
        Class::Trailer,
        Class::TooManyParams,
        Class::OtherCredential,
        Class::QueryWithBody,
        Class::Cookie,
        Class::FlagPlace,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Class::Repeated => "repeated",
            Class::Spelling => "spelling",
            Class::Separator => "separator",
            Class::BadValue => "bad_value",
            Class::BadEscape => "bad_escape",
            Class::Header => "header",
            Class::BodyOnMethod => "body_on_method",
            Class::BodyLength => "body_length",
            Class::Path => "path",
            Class::Trailer => "trailer",
            Class::TooManyParams => "too_many_params",
            Class::OtherCredential => "other_credential",
            Class::QueryWithBody => "query_with_body",
            Class::Cookie => "cookie",
            Class::FlagPlace => "flag_place",
        }
    }

    pub fn index(self) -> usize {
        Class::ALL.iter().position(|c| *c == self).unwrap_or(0)
    }
}

/// A request with more than one reading: the class and the field (for logs; the
/// logger escapes it, it is attacker-chosen).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ambiguity {
    pub class: Class,
    pub field: Vec<u8>,
}

fn ambiguous<T>(class: Class, field: &[u8]) -> Result<T, Ambiguity> {
    Err(Ambiguity {
        class,
        field: field.to_vec(),
    })
}

/// Why a body cannot be read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BodyRefusal {
    /// A media type or content coding the filter does not read (415).
    Unsupported(&'static str),
    Ambiguous(Ambiguity),
}

/// What to do with the request body on a route.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyPlan {
    /// No body.
    None,
    /// Read it completely as a form before deciding.
    Form,
    /// The collector reads no parameters from it: not read.
    Ignore,
}

/// The fields a route's decision depends on, fixed when the configuration is
/// compiled.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Fields {
    /// Parameter names (query and form body).
    pub names: Vec<Vec<u8>>,
    /// Parameter name prefixes (Jitsu's `p_`).
    pub prefixes: Vec<Vec<u8>>,
    /// Header names (lower case), beside `authorization` and the body headers.
    pub headers: Vec<String>,
    /// Credential parameter names other routes of the realm read and this one
    /// does not: refused when present.
    pub foreign: Vec<Vec<u8>>,
    /// Credential names this route reads only in the query (refused in a form
    /// body: a collector reading the body would take that one) or only in the body.
    pub query_only: Vec<Vec<u8>>,
    pub form_only: Vec<Vec<u8>>,
    /// Names that may repeat: required parameters that may be empty (Swaarm's
    /// `event_id` on `/s2sevent`, which its own document sends twice). The
    /// decision reads only that one is present, true under every reading.
    pub repeatable: Vec<Vec<u8>>,
    /// The route's credential parameter names (`token`, `s2s_token`): not read in
    /// cookies (a browser sends the site's own `token` cookie to a same-site
    /// collector; the credential is stripped and the collector acts on the
    /// identity the filter sets, not on it).
    pub credentials: Vec<Vec<u8>>,
    /// `names` and `foreign` by hash, built by the constructors ([`Fields::of`],
    /// [`Fields::with_foreign`], [`Fields::indexed`]); a `Fields` built by hand
    /// without it is searched linearly.
    index: NameIndex,
    /// Some name or prefix holds an upper-case letter (set by [`Fields::indexed`]):
    /// a lower-case name is then another spelling of it, not a plain name.
    cased: bool,
}

/// An open-addressing table of the plain names of [`Fields`]: every parameter of
/// every request is looked up, most of them in no field.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
struct NameIndex {
    /// `0`: empty; `i + 1`: `names[i]`; `FOREIGN + i + 1`: `foreign[i]`.
    slots: Vec<u16>,
    /// The lengths of the lists it was built from (a stale index is not used).
    built_for: (usize, usize),
}

const FOREIGN: u16 = 0x8000;

fn name_hash(name: &[u8]) -> usize {
    // FNV-1a: short names, no adversarial cost (a collision costs one comparison).
    let mut h: u32 = 0x811c_9dc5;
    for &b in name {
        h = (h ^ u32::from(b)).wrapping_mul(0x0100_0193);
    }
    h as usize
}

impl NameIndex {
    fn build(names: &[Vec<u8>], foreign: &[Vec<u8>]) -> NameIndex {
        let n = names.len() + foreign.len();
        if n == 0 || n >= usize::from(FOREIGN) {
            return NameIndex::default();
        }
        let size = (4 * n).next_power_of_two();
        let mut slots = vec![0u16; size];
        // Foreign names first: a name in both lists (never, from the constructors)
        // is found as foreign, as the checks always looked there first.
        let entries = (foreign.iter().enumerate())
            .map(|(i, n)| (n, FOREIGN + i as u16 + 1))
            .chain(names.iter().enumerate().map(|(i, n)| (n, i as u16 + 1)));
        for (name, v) in entries {
            let mut at = name_hash(name) & (size - 1);
            while slots[at] != 0 {
                at = (at + 1) & (size - 1);
            }
            slots[at] = v;
        }
        NameIndex {
            slots,
            built_for: (names.len(), foreign.len()),
        }
    }
}

/// Most parameters a query or a form body may hold: collectors drop the rest
/// silently (PHP `max_input_vars`, `qs` `parameterLimit`).
pub const MAX_PARAMS: usize = 1000;

/// Decision fields that are flags: only `0` and `1` read the same everywhere (PHP
/// and Go read `01`, `1.0`, `true` as true where the filter would not).
const FLAGS: [&str; 1] = ["s2s"];

/// Is `p` a flag spelt plainly (`s2s`)? Its value is `0` or `1` once the pairs
/// are checked: nothing a collector records an event from.
pub fn is_plain_flag(p: &crate::request::Param) -> bool {
    p.plain_name && !p.escaped_name && FLAGS.iter().any(|f| f.as_bytes() == &*p.name)
}

/// Signed fields holding the app's own free text (the legacy
/// `trackAdRevenue(source, payload)` JSON): the value rules for apps, ids and
/// credentials (no Unicode white space, no entity, no escape decoded again) would
/// refuse an ad network's text (`50%CashBack`, an encoded URL) whose signature
/// verifies, and what a collector reads in it decides nothing.
const FREE_TEXT: [&str; 1] = ["payload"];

/// Parameters an SDK signature decision reads, beside the device identifiers.
const SIGNATURE_FIELDS: [&str; 8] = [
    "created_at",
    "activity_kind",
    "source",
    "payload",
    "app_secret",
    "secret_id",
    "environment",
    "s2s",
];

/// Headers every decision reads or that decide how the body is read.
pub const HEADERS: [&str; 7] = [
    "authorization",
    "content-type",
    "content-encoding",
    "content-length",
    "transfer-encoding",
    "origin",
    "client-sdk",
];

impl Fields {
    /// The decision fields of a route.
    pub fn of(route: &Route) -> Fields {
        let mut f = Fields::default();
        let mut add = |n: &[u8]| {
            if !f.names.iter().any(|x| x == n) {
                f.names.push(n.to_vec());
            }
        };
        for s in &route.sources {
            match s {
                Source::Query(n) | Source::Form(n) => add(n),
                _ => {}
            }
        }
        if let Some(a) = &route.app_param {
            add(a);
        }
        for r in &route.required {
            add(&r.name);
        }
        for n in &route.single_params {
            add(n);
        }
        if route.checks != Checks::Token {
            for n in SIGNATURE_FIELDS {
                add(n.as_bytes());
            }
            for n in crate::signature::device_id_names() {
                add(n.as_bytes());
            }
        }
        for s in &route.sources {
            match s {
                Source::QueryPrefix(p) => f.prefixes.push(p.clone()),
                Source::Header(h) => f.headers.push(h.to_ascii_lowercase()),
                Source::Query(n) | Source::Form(n) => f.credentials.push(n.clone()),
                _ => {}
            }
        }
        let reads = |q: bool, n: &Vec<u8>| {
            route.sources.iter().any(|s| match s {
                Source::Query(x) => q && x == n,
                Source::Form(x) => !q && x == n,
                _ => false,
            })
        };
        for s in &route.sources {
            match s {
                Source::Query(n) if !reads(false, n) => f.query_only.push(n.clone()),
                Source::Form(n) if !reads(true, n) => f.form_only.push(n.clone()),
                _ => {}
            }
        }
        // Presence only: not a credential, the app, a flag or a signed input.
        let single = |n: &[u8]| {
            route
                .sources
                .iter()
                .any(|s| matches!(s, Source::Query(x) | Source::Form(x) if x == n))
                || route.app_param.as_deref() == Some(n)
                || route.single_params.iter().any(|x| x == n)
                || route.checks != Checks::Token
        };
        f.repeatable = (route.required.iter())
            .filter(|r| r.allow_empty && !single(&r.name))
            .map(|r| r.name.clone())
            .collect();
        f.indexed()
    }

    /// Adds the credential parameter names of the other routes of a realm.
    pub fn with_foreign(mut self, realm_names: &[Vec<u8>]) -> Fields {
        for n in realm_names {
            if !self.names.contains(n) && !self.foreign.contains(n) {
                self.foreign.push(n.clone());
            }
        }
        self.indexed()
    }

    /// Fields that are just these parameter names.
    pub fn of_names(names: Vec<Vec<u8>>) -> Fields {
        Fields {
            names,
            ..Fields::default()
        }
        .indexed()
    }

    /// Builds the lookup index (after the lists are set).
    pub fn indexed(mut self) -> Fields {
        self.index = NameIndex::build(&self.names, &self.foreign);
        self.cased = (self.names.iter().chain(&self.foreign).chain(&self.prefixes))
            .any(|n| n.iter().any(u8::is_ascii_uppercase));
        self
    }

    /// Is `name` plain (lower-case letters, digits, `_`, `-`) and so read one way
    /// by every stack, these fields' names being lower case too?
    fn plain(&self, name: &[u8]) -> bool {
        !self.cased
            && name
                .iter()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || *b == b'_' || *b == b'-')
    }

    /// A plain name (no other reading) in `names` (`foreign == false`) or in
    /// `foreign`.
    fn find_plain(&self, name: &[u8], foreign: bool) -> Option<&[u8]> {
        self.probe(name, Some(foreign)).map(|(_, n)| n)
    }

    /// A plain name in `foreign` (`true`) or else in `names` (`false`): one lookup
    /// for both.
    fn lookup_plain(&self, name: &[u8]) -> Option<(bool, &[u8])> {
        self.probe(name, None)
    }

    /// The first entry named `name` (in `list`'s list only, if given): foreign
    /// names come first, as the checks always looked there first.
    fn probe(&self, name: &[u8], list: Option<bool>) -> Option<(bool, &[u8])> {
        let wanted = |foreign: bool| list.is_none_or(|l| l == foreign);
        let ix = &self.index;
        if ix.slots.is_empty() || ix.built_for != (self.names.len(), self.foreign.len()) {
            let find = |foreign: bool| {
                let l = if foreign { &self.foreign } else { &self.names };
                (wanted(foreign).then(|| l.iter().find(|n| n.as_slice() == name)))
                    .flatten()
                    .map(|n| (foreign, n.as_slice()))
            };
            return find(true).or_else(|| find(false));
        }
        let mask = ix.slots.len() - 1;
        let mut at = name_hash(name) & mask;
        loop {
            let v = *ix.slots.get(at)?;
            if v == 0 {
                return None;
            }
            let (foreign, i) = (v & FOREIGN != 0, usize::from(v & !FOREIGN) - 1);
            let l = if foreign { &self.foreign } else { &self.names };
            if wanted(foreign) {
                if let Some(n) = l.get(i).filter(|n| n.as_slice() == name) {
                    return Some((foreign, n));
                }
            }
            at = (at + 1) & mask;
        }
    }

    pub(crate) fn touches_foreign(&self, name: &[u8]) -> Option<&[u8]> {
        if self.plain(name) {
            return self.find_plain(name, true);
        }
        let variants = variants(name);
        (variants.iter())
            .find_map(|v| self.foreign.iter().find(|n| n.eq_ignore_ascii_case(v)))
            .or_else(|| {
                (variants.iter())
                    .find_map(|v| self.foreign.iter().find(|n| folds_from_non_ascii(v, n)))
            })
            .map(Vec::as_slice)
    }

    /// The decision field (or prefix) some reading of `name` names, if any.
    fn touches(&self, name: &[u8]) -> Option<&[u8]> {
        // Fast path: a plain name (lower-case letters, digits, `_`, `-`) has no
        // other reading.
        if self.plain(name) {
            if let Some(n) = self.find_plain(name, false) {
                return Some(n);
            }
            return self
                .prefixes
                .iter()
                .find(|p| name.starts_with(p))
                .map(Vec::as_slice);
        }
        // Names in any case: ASP.NET reads them case-insensitively.
        let variants = variants(name);
        for v in &variants {
            if let Some(n) = self.names.iter().find(|n| n.eq_ignore_ascii_case(v)) {
                return Some(n);
            }
            if let Some(p) = (self.prefixes.iter())
                .find(|p| v.get(..p.len()).is_some_and(|h| h.eq_ignore_ascii_case(p)))
            {
                // A prefix field is identified by the prefix: at most one.
                return Some(p);
            }
        }
        variants.iter().find_map(|v| {
            (self.names.iter())
                .find(|n| folds_from_non_ascii(v, n))
                .or_else(|| (self.prefixes.iter()).find(|p| prefix_folds_from_non_ascii(v, p)))
                .map(Vec::as_slice)
        })
    }
}

/// Could a name holding characters that are not ASCII read as `field` once
/// normalised (NFKC maps fullwidth letters and ligatures to ASCII, case folding
/// KELVIN SIGN to `k` and LONG S to `s`; collations ignore soft hyphens and
/// accents)? Yes when its ASCII characters, in any case, are in order a part of
/// `field`: the others may have become the rest. Names a collector could read
/// as a field this way are spellings of it (over-approximated: no real client
/// sends non-ASCII parameter names).
fn folds_from_non_ascii(name: &[u8], field: &[u8]) -> bool {
    if name.is_ascii() {
        return false;
    }
    let mut rest = field.iter();
    name.iter()
        .filter(|b| b.is_ascii())
        .all(|b| rest.any(|f| f.eq_ignore_ascii_case(b)))
}

/// [`folds_from_non_ascii`] for a prefix field (`p_`): the ASCII characters
/// before the name's first other one agree with the prefix as far as both go.
fn prefix_folds_from_non_ascii(name: &[u8], prefix: &[u8]) -> bool {
    if name.is_ascii() {
        return false;
    }
    let head = &name[..name
        .iter()
        .position(|b| !b.is_ascii())
        .unwrap_or(name.len())];
    let n = head.len().min(prefix.len());
    head[..n].eq_ignore_ascii_case(&prefix[..n])
}

/// Strict form decoding: `+` is a space, `%XX` a byte; `Err` on a broken escape.
fn decode(raw: &[u8]) -> Result<Vec<u8>, ()> {
    let mut out = Vec::with_capacity(raw.len());
    let mut i = 0;
    while i < raw.len() {
        match raw[i] {
            b'+' => out.push(b' '),
            b'%' => {
                let h = raw.get(i + 1).and_then(|b| (*b as char).to_digit(16));
                let l = raw.get(i + 2).and_then(|b| (*b as char).to_digit(16));
                match (h, l) {
                    (Some(h), Some(l)) => out.push((h * 16 + l) as u8),
                    _ => return Err(()),
                }
                i += 2;
            }
            b => out.push(b),
        }
        i += 1;
    }
    Ok(out)
}

/// [`decode`], without copying a name or value that has nothing to decode (most do not).
fn decode_name(raw: &[u8]) -> Result<std::borrow::Cow<'_, [u8]>, ()> {
    if raw.iter().any(|&b| b == b'%' || b == b'+') {
        decode(raw).map(std::borrow::Cow::Owned)
    } else {
        Ok(std::borrow::Cow::Borrowed(raw))
    }
}

/// `v` percent-decoded once more (`%XX` and `%uXXXX`; malformed escapes kept);
/// `None` when it holds no escape, so reads the same decoded again.
pub fn decoded_again(v: &[u8]) -> Option<Vec<u8>> {
    // Most values hold no `%` at all: one word-at-a-time search.
    if !v.contains(&b'%') {
        return None;
    }
    // `%XX` as every URL decoder reads it (the crate keeps malformed escapes as
    // they are); only without one, `%uXXXX` as IIS and legacy `unescape` read it.
    match percent_encoding::percent_decode(v).into() {
        std::borrow::Cow::Owned(out) => Some(out),
        std::borrow::Cow::Borrowed(_) => decode_percent_u(v),
    }
}

/// `%uXXXX` escapes decoded (as UTF-8); `None` when there are none.
pub fn decode_percent_u(name: &[u8]) -> Option<Vec<u8>> {
    let hex4 = |h: &[u8]| {
        (h.len() == 4 && h.iter().all(u8::is_ascii_hexdigit)).then(|| {
            h.iter()
                .fold(0u32, |a, &b| a << 4 | (b as char).to_digit(16).unwrap_or(0))
        })
    };
    let mut out = Vec::with_capacity(name.len());
    let mut found = false;
    let mut i = 0;
    while i < name.len() {
        let escape = (name[i] == b'%' && matches!(name.get(i + 1), Some(b'u' | b'U')))
            .then(|| name.get(i + 2..i + 6).and_then(hex4))
            .flatten()
            .and_then(char::from_u32);
        match escape {
            Some(c) => {
                out.extend_from_slice(c.encode_utf8(&mut [0; 4]).as_bytes());
                found = true;
                i += 6;
            }
            None => {
                out.push(name[i]);
                i += 1;
            }
        }
    }
    found.then_some(out)
}

/// Every name a stack may read a (decoded) parameter name as.
fn variants(name: &[u8]) -> Vec<Vec<u8>> {
    let mut out = variants_of(name);
    // A name that decodes again (`app%255Ftoken` is `app%5Ftoken` once,
    // `app_token` to a collector decoding twice): every reading of that too.
    if let Some(again) = decoded_again(name).filter(|a| *a != name) {
        for v in variants_of(&again) {
            if !out.contains(&v) {
                out.push(v);
            }
        }
    }
    // `new URLSearchParams(string)` drops one leading `?` of what it parses (Node's
    // `Request.formData()`, Hono, h3/Nuxt `readBody`, Koa 3's query), PHP's
    // built-in server every leading `?` of the query: `?app_token` is `app_token`
    // there. Stripped from any pair, not only the first: one spelling more refused.
    let unquestioned = {
        let start = name.iter().position(|&b| b != b'?').unwrap_or(name.len());
        &name[start..]
    };
    if unquestioned.len() != name.len() {
        for v in variants_of(unquestioned) {
            if !out.contains(&v) {
                out.push(v);
            }
        }
    }
    // IIS and classic ASP.NET decode `%uXXXX` (`app_%u0074oken`), which the form
    // decoding leaves as it is: every reading of the decoded name too
    // (`request%u002eapp_token` is `request.app_token`).
    if let Some(u) = decode_percent_u(name) {
        for v in variants_of(&u) {
            if !out.contains(&v) {
                out.push(v);
            }
        }
    }
    out
}

/// A name as C stacks cut it (at NUL) and as collectors tidying names trim it
/// (JavaScript's `trim` and Python's `strip` drop Unicode white space and,
/// JavaScript's, a BOM; Python's also the four separators U+001C..U+001F,
/// `str.isspace`); only the readings that differ from `name`.
fn tidied(name: &[u8]) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    let cut = match name.iter().position(|&b| b == 0) {
        Some(i) => {
            out.push(name[..i].to_vec());
            &name[..i]
        }
        None => name,
    };
    if let Ok(s) = std::str::from_utf8(cut) {
        let t = s.trim_matches(|c: char| {
            c.is_whitespace() || c == '\u{feff}' || ('\u{1c}'..='\u{1f}').contains(&c)
        });
        if t.len() != s.len() {
            out.push(t.as_bytes().to_vec());
        }
    }
    out
}

/// [`variants`] but the `%uXXXX` decoding.
fn variants_of(name: &[u8]) -> Vec<Vec<u8>> {
    let mut out = vec![name.to_vec()];
    let mut push = |v: Vec<u8>| {
        if !out.contains(&v) {
            out.push(v);
        }
    };
    // Model binding reads the parts of a dotted or bracketed name as fields of a
    // bound object: ASP.NET (Core) MVC fills a parameter `request` from
    // `request.app_token` or `request[app_token]` before `app_token`, Rails from
    // `request[app_token]`, Spring from `request['app_token']`. Spring's binder
    // sets a field from `!app_token` (its default; its `_app_token` marker
    // carries no value). Each part is tidied as a whole name is, below.
    let separator = |b: &u8| matches!(b, b'.' | b'[' | b']' | b'\'' | b'"');
    if name.iter().any(separator) {
        for part in name.split(separator) {
            if !part.is_empty() && part.len() != name.len() {
                push(part.to_vec());
                for t in tidied(part) {
                    push(t);
                }
            }
        }
    }
    if let Some(rest) = name.strip_prefix(b"!") {
        push(rest.to_vec());
    }
    for t in tidied(name) {
        push(t);
    }
    let name = match name.iter().position(|&b| b == 0) {
        Some(i) => &name[..i],
        None => name,
    };
    // Rack and qs: leading brackets dropped, `a[...]` is (a hash or array under) `a`.
    let unbracketed: &[u8] = {
        let start = name
            .iter()
            .position(|&b| b != b'[' && b != b']')
            .unwrap_or(name.len());
        &name[start..]
    };
    if let Some(i) = unbracketed.iter().position(|&b| b == b'[' || b == b']') {
        push(unbracketed[..i].to_vec());
    } else if unbracketed.len() != name.len() {
        push(unbracketed.to_vec());
    }
    // PHP (php_register_variable_ex): leading spaces dropped; ' ' and '.' become
    // '_'; `a[..]` is an array under `a`; an unclosed '[' becomes '_' and the rest
    // is kept as it is (both readings kept, as versions differ).
    let php = {
        let start = name.iter().position(|&b| b != b' ').unwrap_or(name.len());
        &name[start..]
    };
    let mut folded = Vec::with_capacity(php.len());
    let mut i = 0;
    while i < php.len() {
        match php[i] {
            b' ' | b'.' => folded.push(b'_'),
            b'[' => {
                if php[i + 1..].contains(&b']') {
                    push(folded.clone());
                } else {
                    let mut a = folded.clone();
                    a.push(b'_');
                    a.extend_from_slice(&php[i + 1..]);
                    push(a);
                    let mut b = folded.clone();
                    b.push(b'_');
                    b.extend(php[i + 1..].iter().map(|&c| match c {
                        b' ' | b'.' | b'[' => b'_',
                        c => c,
                    }));
                    push(b);
                }
                break;
            }
            c => folded.push(c),
        }
        i += 1;
    }
    if i == php.len() {
        push(folded);
    }
    out
}

/// A value every stack reads the same: UTF-8, no control character (C0, DEL, C1),
/// no leading or trailing ASCII white space, and no Unicode white space or BOM
/// anywhere (Go's `strings.TrimSpace`, JS `trim`, Python `strip` remove them).
fn clean_value(v: &[u8]) -> bool {
    // Fast path: printable ASCII, spaces only inside.
    if v.iter().all(|&b| (0x20..0x7f).contains(&b)) {
        return v.first() != Some(&b' ') && v.last() != Some(&b' ');
    }
    let Ok(s) = std::str::from_utf8(v) else {
        return false;
    };
    trim(v).len() == v.len()
        && !s.chars().any(|c| {
            c.is_control() || c.is_whitespace() && c != ' ' || matches!(c, '\u{feff}' | '\u{200b}')
        })
}

/// Checks the decision fields of a query and (when read) a form body: each at most
/// once across both, under its own spelling, with a clean value.
pub fn check_params(fields: &Fields, query: &[u8], form: Option<&[u8]>) -> Result<(), Ambiguity> {
    let q = crate::request::parse_params(query);
    let f = form.map(|f| (f, crate::request::parse_params(f)));
    check_parsed(
        fields,
        (query, &q),
        f.as_ref().map(|(raw, p)| (*raw, p.as_slice())),
    )
}

/// [`check_params`] on pairs already split by [`crate::request::parse_params`]
/// (each with its raw source), so a request's query and body are split once.
pub fn check_parsed(
    fields: &Fields,
    query: (&[u8], &[Param<'_>]),
    form: Option<(&[u8], &[Param<'_>])>,
) -> Result<(), Ambiguity> {
    // Collectors keep at most MAX_PARAMS pairs and drop the rest silently, Tomcat
    // counting query and body together (`maxParameterCount`, 1000 in Tomcat 10.1
    // and 11): more than that in all is refused. (More pairs than MAX_PARAMS need
    // at least MAX_PARAMS - 1 bytes.)
    let total = query.0.len() + form.map_or(0, |f| f.0.len());
    if total + 1 >= MAX_PARAMS {
        let pairs = |raw: &[u8]| match raw {
            [] => 0,
            _ => raw.iter().filter(|&&b| b == b'&').count() + 1,
        };
        if pairs(query.0) + form.map_or(0, |f| pairs(f.0)) > MAX_PARAMS {
            return ambiguous(Class::TooManyParams, b"params");
        }
    }
    let mut seen: Vec<&[u8]> = Vec::new();
    for (in_form, (raw, params)) in std::iter::once((false, query)).chain(form.map(|f| (true, f))) {
        let elsewhere = if in_form {
            &fields.query_only
        } else {
            &fields.form_only
        };
        // Express's body parser (iconv-lite) drops a leading UTF-8 BOM, Go, PHP,
        // Rack and Python keep it in the first name: that pair reads two ways.
        if in_form && raw.starts_with(b"\xEF\xBB\xBF") {
            let first = params.first().map_or(&[][..], |p| p.raw_parts(raw).0);
            return ambiguous(Class::Spelling, first.get(3..).unwrap_or_default());
        }
        for p in params {
            let seg = p.raw(raw);
            if p.question || seg.first() == Some(&b'=') {
                if let Some(f) = embedded_field(fields, seg) {
                    return ambiguous(Class::Spelling, f);
                }
            }
            let (raw_name, raw_value) = p.raw_parts(raw);
            if p.plain_name && !p.semicolon && !fields.cased {
                // The common case, one lookup: a name with no other reading.
                let field = match fields.lookup_plain(raw_name) {
                    Some((true, f)) => return ambiguous(Class::OtherCredential, f),
                    Some((false, f)) => f,
                    None => match fields.prefixes.iter().find(|p| raw_name.starts_with(p)) {
                        Some(f) => f,
                        None => continue,
                    },
                };
                check_value(field, raw_value, elsewhere, &fields.repeatable, &mut seen)?;
                continue;
            }
            // The strict reading of the name: a broken escape is an error here.
            let strict = if p.escaped_name {
                decode(raw_name).map(Cow::Owned)
            } else {
                Ok(Cow::Borrowed(raw_name))
            };
            if !fields.foreign.is_empty() {
                let decoded = strict.clone().unwrap_or(Cow::Borrowed(raw_name));
                if let Some(f) = fields.touches_foreign(&decoded) {
                    return ambiguous(Class::OtherCredential, f);
                }
            }
            if p.semicolon {
                // Old Rack and Python split here too: no decision field may be in
                // a pair that one stack splits and another does not.
                for sub in seg.split(|&b| b == b';').chain(std::iter::once(seg)) {
                    let name = sub.split(|&b| b == b'=').next().unwrap_or_default();
                    let decoded = decode(name).unwrap_or_else(|_| name.to_vec());
                    if let Some(f) = fields
                        .touches(&decoded)
                        .or_else(|| fields.touches_foreign(&decoded))
                    {
                        return ambiguous(Class::Separator, f);
                    }
                }
                continue;
            }
            let (name, bad_name) = match strict {
                Ok(n) => (n, false),
                Err(()) => (p.name.clone(), true),
            };
            let Some(field) = fields.touches(&name) else {
                continue;
            };
            if elsewhere.iter().any(|e| e.as_slice() == field) {
                // The credential where this route does not read it.
                return ambiguous(Class::OtherCredential, field);
            }
            if bad_name {
                return ambiguous(Class::BadEscape, field);
            }
            let exact = *name == *field || fields.prefixes.iter().any(|p| name.starts_with(p));
            if !exact || name.iter().any(|&b| b == b'[' || b == 0) {
                return ambiguous(Class::Spelling, field);
            }
            check_value(field, raw_value, elsewhere, &fields.repeatable, &mut seen)?;
        }
    }
    Ok(())
}

/// The decision field (or another route's credential) named by a pair that some
/// parser finds inside the pair `seg`: after its leading `=`s (an empty name: ufo's
/// `parseQuery`, which h3/Nuxt's `getQuery` uses, and Spring's query regex read
/// `=app_token=A` as `app_token=A`) or after any `?` in it (Hono before 4.10.5
/// looked for `?app_token` anywhere in the URL: `x=?app_token=A` is `app_token=A`).
fn embedded_field<'f>(fields: &'f Fields, seg: &[u8]) -> Option<&'f [u8]> {
    let unequalled = (seg.first() == Some(&b'='))
        .then(|| seg.iter().position(|&b| b != b'=').map(|i| &seg[i..]))
        .flatten();
    let after_question = (seg.iter().enumerate())
        .filter(|&(_, &b)| b == b'?')
        .map(|(i, _)| seg.get(i + 1..).unwrap_or_default());
    unequalled
        .into_iter()
        .chain(after_question)
        .find_map(|pair| {
            let name = pair.split(|&b| b == b'=').next().unwrap_or_default();
            named_field(fields, name)
        })
}

/// The decision field (or another route's credential) a raw name names under any
/// reading.
fn named_field<'f>(fields: &'f Fields, raw_name: &[u8]) -> Option<&'f [u8]> {
    let decoded = decode(raw_name).unwrap_or_else(|_| crate::request::form_decode(raw_name));
    (fields.touches(&decoded)).or_else(|| fields.touches_foreign(&decoded))
}

/// Does any reading of a raw (undecoded) parameter name name one of the fields?
pub fn names_field(fields: &Fields, raw_name: &[u8]) -> bool {
    named_field(fields, raw_name).is_some()
}

/// Where a URL that a collector searches as one string (Hono before 4.10.5 looked
/// for `&app_token` from the host on) holds a pair outside its query: a `&` in the
/// path followed by a decision field's name. The field, if any.
pub fn field_in_path<'f>(fields: &'f Fields, path: &[u8]) -> Option<&'f [u8]> {
    (path.iter().enumerate())
        .filter(|&(_, &b)| b == b'&')
        .find_map(|(i, _)| {
            let rest = path.get(i + 1..).unwrap_or_default();
            let name = rest
                .split(|&b| matches!(b, b'=' | b'&' | b'/' | b';'))
                .next();
            named_field(fields, name.unwrap_or_default())
        })
}

/// Is the `:authority` (and any `Host`) a plain host name, IP address and port?
/// Envoy lets RFC 3986's sub-delimiters through (`&`, `=`, `;`...), and a
/// collector that builds its URL from the Host and searches it as one string
/// (Hono before 4.10.5) reads `Host: x&app_token=A&` as a parameter. Only letters,
/// digits, `.`, `-`, `_`, `~`, `:` and IPv6 brackets pass.
pub fn check_authority(view: &crate::request::RequestView) -> Result<(), Ambiguity> {
    const HOST: [bool; 256] = {
        let mut t = [false; 256];
        let mut b = 0;
        while b < 256 {
            let c = b as u8;
            t[b] = c.is_ascii_alphanumeric()
                || matches!(c, b'.' | b'-' | b'_' | b'~' | b':' | b'[' | b']');
            b += 1;
        }
        t
    };
    let plain = |v: &[u8]| v.iter().all(|&b| HOST[b as usize]);
    if plain(&view.authority) && view.header_values("host").all(plain) {
        Ok(())
    } else {
        ambiguous(Class::Header, b"host")
    }
}

/// A decision field's pair under its own spelling: read where the route reads it,
/// once, with a clean value.
fn check_value<'f>(
    field: &'f [u8],
    raw_value: &[u8],
    elsewhere: &[Vec<u8>],
    repeatable: &[Vec<u8>],
    seen: &mut Vec<&'f [u8]>,
) -> Result<(), Ambiguity> {
    if elsewhere.iter().any(|e| e.as_slice() == field) {
        // The credential where this route does not read it.
        return ambiguous(Class::OtherCredential, field);
    }
    if seen.contains(&field) && !repeatable.iter().any(|r| r.as_slice() == field) {
        return ambiguous(Class::Repeated, field);
    }
    seen.push(field);
    if FREE_TEXT.iter().any(|f| f.as_bytes() == field) {
        // Read once and with well-formed escapes, like every field; its text is
        // the app's own and decides nothing but the signature over it.
        return match decode_name(raw_value) {
            Err(()) => ambiguous(Class::BadEscape, field),
            Ok(_) => Ok(()),
        };
    }
    match decode_name(raw_value) {
        Err(()) => ambiguous(Class::BadEscape, field),
        Ok(v) if !clean_value(&v) => ambiguous(Class::BadValue, field),
        // An HTML numeric entity (`&#97;`): `qs` with `interpretNumericEntities`
        // (Express's body parser, opt-in) reads it as the character.
        Ok(v) if has_numeric_entity(&v) => ambiguous(Class::BadValue, field),
        // A value that decodes again (`%2561bc` is `%61bc` once, `abc` twice): a
        // collector decoding twice (uWebSockets' repeated `getQuery`, an
        // application's own `urldecode`) reads another value.
        Ok(v) if decoded_again(&v).is_some() => ambiguous(Class::BadValue, field),
        Ok(v) if FLAGS.iter().any(|f| f.as_bytes() == field) && *v != *b"0" && *v != *b"1" => {
            ambiguous(Class::BadValue, field)
        }
        Ok(_) => Ok(()),
    }
}

/// Does `v` hold an HTML numeric entity's start (`&#9`, `&#x`)?
fn has_numeric_entity(v: &[u8]) -> bool {
    v.windows(3)
        .any(|w| w[0] == b'&' && w[1] == b'#' && (w[2].is_ascii_digit() || w[2] | 0x20 == b'x'))
}

/// The cookies of a request (`name=value` pairs of every `Cookie` header), each
/// handed to `visit` by name until it returns something ([`cookies`]).
pub fn cookie_names<T>(
    headers: &[(String, Vec<u8>)],
    mut visit: impl FnMut(&[u8]) -> Option<T>,
) -> Option<T> {
    cookies(headers, |name, _| visit(name))
}

/// The cookies of a request as `(name, value)`, both trimmed, the value as sent
/// (quotes and escapes kept), each handed to `visit` until it returns something.
/// A name holding `+` is handed over twice: as sent, and with each `+` a space, as
/// PHP before 7.4.11 (CVE-2020-7070) and HHVM decode cookie names (then drop a
/// leading space and read the others as `_`: `+s2s+token` is `s2s_token` there).
pub fn cookies<'h, T>(
    headers: &'h [(String, Vec<u8>)],
    mut visit: impl FnMut(&[u8], &'h [u8]) -> Option<T>,
) -> Option<T> {
    for (name, value) in headers {
        if !name.eq_ignore_ascii_case("cookie") {
            continue;
        }
        for pair in value.split(|&b| b == b';' || b == b',') {
            let mut kv = pair.splitn(2, |&b| b == b'=');
            let name = trim(kv.next().unwrap_or_default());
            if name.is_empty() {
                continue;
            }
            let value = trim(kv.next().unwrap_or_default());
            if let Some(t) = visit(name, value) {
                return Some(t);
            }
            if name.contains(&b'+') {
                let spaced: Vec<u8> = name
                    .iter()
                    .map(|&b| if b == b'+' { b' ' } else { b })
                    .collect();
                if let Some(t) = visit(&spaced, value) {
                    return Some(t);
                }
            }
        }
    }
    None
}

/// Checks cookies: none may be named like a decision field of the route, under
/// any spelling a stack folds onto it (PHP turns `.` and spaces into `_`,
/// ASP.NET ignores case): see [`Class::Cookie`]. On a route that takes client
/// secrets (browsers, which send the site's own cookies: a session cookie named
/// `token`), a cookie named like the credential is left to
/// [`cookie_credential`]; on server-to-server routes it is refused too.
pub fn check_cookies(
    fields: &Fields,
    headers: &[(String, Vec<u8>)],
    browsers: bool,
) -> Result<(), Ambiguity> {
    let credential = |f: &[u8]| {
        browsers
            && (fields.credentials.iter().any(|c| c.as_slice() == f)
                || fields.prefixes.iter().any(|p| p.as_slice() == f))
    };
    // Another route's credential name (of the realm) too, as in the query
    // (`other_credential`): on a browser route, only holding a known credential.
    match cookie_names(headers, |name| {
        (fields.touches(name).filter(|f| !credential(f)))
            .or_else(|| (!browsers).then(|| fields.touches_foreign(name)).flatten())
            .map(<[u8]>::to_vec)
    }) {
        Some(f) => ambiguous(Class::Cookie, &f),
        None => Ok(()),
    }
}

/// On a route browsers use: a cookie named like the route's credential (under any
/// folding) whose value, as any stack reads it (as sent, unquoted as Go does,
/// form-decoded as PHP does), is a credential `is_credential` knows and not the
/// one verified: PHP's `$_REQUEST` takes cookies over the query and the body, so
/// a collector there would act on that second credential. Returns the field.
pub fn cookie_credential(
    fields: &Fields,
    headers: &[(String, Vec<u8>)],
    mut is_credential: impl FnMut(&[u8]) -> bool,
) -> Option<Vec<u8>> {
    let credential = |f: &[u8]| {
        fields.credentials.iter().any(|c| c.as_slice() == f)
            || fields.prefixes.iter().any(|p| p.as_slice() == f)
    };
    cookies(headers, |name, value| {
        let f = (fields.touches(name).filter(|f| credential(f)))
            .or_else(|| fields.touches_foreign(name))?;
        let unquoted = value
            .strip_prefix(b"\"")
            .and_then(|v| v.strip_suffix(b"\""))
            .unwrap_or(value);
        let decoded = crate::request::form_decode(unquoted);
        // And as PHP's `trim` leaves it (space, tab, CR, LF, NUL, vertical tab;
        // form feed as other languages' `trim` do).
        let php_trim = |v: &[u8]| -> Vec<u8> {
            let blank = |b: &u8| matches!(b, b' ' | b'\t' | b'\r' | b'\n' | 0 | 0x0b | 0x0c);
            let start = v.iter().position(|b| !blank(b)).unwrap_or(v.len());
            let end = v.iter().rposition(|b| !blank(b)).map_or(start, |e| e + 1);
            v.get(start..end).unwrap_or_default().to_vec()
        };
        let (t_unquoted, t_decoded) = (php_trim(unquoted), php_trim(&decoded));
        let t_inner = php_trim(
            t_decoded
                .strip_prefix(b"\"")
                .and_then(|v| v.strip_suffix(b"\""))
                .unwrap_or(&t_decoded),
        );
        let known = [value, unquoted, &decoded, &t_unquoted, &t_decoded, &t_inner]
            .into_iter()
            .any(|v| !v.is_empty() && is_credential(v));
        known.then(|| f.to_vec())
    })
}

/// Does any reading of one raw `name=value` pair (or of its `;` parts) name one
/// of the fields?
pub fn touches(fields: &Fields, seg: &[u8]) -> bool {
    seg.split(|&b| b == b';')
        .chain(std::iter::once(seg))
        .any(|sub| {
            let name = sub.split(|&b| b == b'=').next().unwrap_or_default();
            let decoded = decode(name).unwrap_or_else(|_| crate::request::form_decode(name));
            fields.touches(&decoded).is_some()
        })
        || embedded_field(fields, seg).is_some()
}

/// A header name byte as CGI stacks fold it: case ignored, and every character
/// that is not a letter or digit read as one separator (PHP and Puma fold `_`;
/// Apache 2.2 folds any other character too).
fn fold_byte(b: u8) -> u8 {
    if b.is_ascii_alphanumeric() {
        b.to_ascii_lowercase()
    } else {
        b'-'
    }
}

/// Do two header names fold to the same name? (No allocation: this runs for every
/// header of every request.)
fn fold_eq(a: &str, b: &str) -> bool {
    a.len() == b.len()
        && a.bytes()
            .zip(b.bytes())
            .all(|(x, y)| fold_byte(x) == fold_byte(y))
}

/// Checks the headers the decision reads: each at most once, under its own
/// spelling (CGI stacks merge `x_auth_token` with `x-auth-token`).
pub fn check_headers(fields: &Fields, headers: &[(String, Vec<u8>)]) -> Result<(), Ambiguity> {
    let wanted = HEADERS
        .iter()
        .copied()
        .chain(fields.headers.iter().map(String::as_str));
    for h in wanted {
        let mut count = 0;
        for (name, _) in headers {
            // Envoy's own spelling (lower case) first: the common case, one compare.
            if name != h {
                if !fold_eq(name, h) {
                    continue;
                }
                if !name.eq_ignore_ascii_case(h) {
                    return ambiguous(Class::Header, h.as_bytes());
                }
            }
            count += 1;
        }
        if count > 1 {
            return ambiguous(Class::Header, h.as_bytes());
        }
    }
    Ok(())
}

/// Headers the decision reads beside [`HEADERS`] (cookies, method overrides, the
/// URL and root-path headers), refused as trailers too.
pub const TRAILER_ONLY: [&str; 10] = [
    "cookie",
    "x-http-method-override",
    "x-http-method",
    "x-method-override",
    "x-original-url",
    "x-rewrite-url",
    "daphne-root-path",
    "script-name",
    "x-script-name",
    "x-forwarded-prefix",
];

/// Checks request trailers: none may name a header the decision reads.
pub fn check_trailers(fields: &Fields, trailers: &[(String, Vec<u8>)]) -> Result<(), Ambiguity> {
    for (name, _) in trailers {
        let hit = HEADERS
            .iter()
            .copied()
            .chain(fields.headers.iter().map(String::as_str))
            .chain(TRAILER_ONLY)
            .find(|h| fold_eq(name, h));
        if let Some(h) = hit {
            return ambiguous(Class::Trailer, h.as_bytes());
        }
    }
    Ok(())
}

/// Does a header name fold (case, any non-alphanumeric as `-`) onto `owned`?
pub fn folds_onto(name: &str, owned: &str) -> bool {
    fold_eq(name, owned)
}

/// Methods that carry a body a form may be read from.
fn body_method(m: &[u8]) -> bool {
    matches!(m, b"POST" | b"PUT" | b"PATCH")
}

/// How a request's body is to be read on a route, or why it cannot be.
pub fn body_plan(route: &Route, view: &RequestView) -> Result<BodyPlan, BodyRefusal> {
    if !view.has_body {
        return Ok(BodyPlan::None);
    }
    if route.body == BodyRule::Ignore {
        // Not read, so not a body every collector parses into parameters (a form
        // or a multipart body): its fields would contradict the decision's.
        // Nor one without a media type: PHP, Python's `cgi` and classic ASP.NET
        // parse such a POST body as a form.
        // An empty one is none (Envoy trims white space), and two are two readings.
        let (mut types, mut parsed) = (0, false);
        for v in view.header_values("content-type") {
            types += 1;
            // (Envoy joins a repeated `Content-Type` with `,`.)
            parsed |= trim(v).is_empty() || v.contains(&b',') || names_parameters(v);
        }
        if types != 1 || parsed {
            return Err(BodyRefusal::Unsupported("content-type"));
        }
        return Ok(BodyPlan::Ignore);
    }
    if !body_method(&view.method) {
        return Err(BodyRefusal::Ambiguous(Ambiguity {
            class: Class::BodyOnMethod,
            field: view.method.clone(),
        }));
    }
    for v in view.header_values("content-encoding") {
        if !trim(v).eq_ignore_ascii_case(b"identity") {
            return Err(BodyRefusal::Unsupported("content-encoding"));
        }
    }
    // A transfer coding but `chunked` (`gzip, chunked`) is a body the filter reads
    // as bytes a collector decodes first. Envoy's HTTP/1 codec refuses such
    // requests before any filter; refused here whatever the proxy does.
    for v in view.header_values("transfer-encoding") {
        if (v.split(|&b| b == b',')).any(|c| !trim(c).eq_ignore_ascii_case(b"chunked")) {
            return Err(BodyRefusal::Unsupported("transfer-encoding"));
        }
    }
    let ct = match view.header_once("content-type") {
        Err(_) => {
            return Err(BodyRefusal::Ambiguous(Ambiguity {
                class: Class::Header,
                field: b"content-type".to_vec(),
            }))
        }
        Ok(None) => return Err(BodyRefusal::Unsupported("no content-type")),
        Ok(Some(ct)) => ct,
    };
    if is_form_media_type(ct) {
        Ok(BodyPlan::Form)
    } else {
        Err(BodyRefusal::Unsupported("content-type"))
    }
}

fn is_token(s: &[u8]) -> bool {
    !s.is_empty()
        && s.iter()
            .all(|&b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}

/// `application/x-www-form-urlencoded`, optionally with a UTF-8 (or US-ASCII)
/// `charset` given once, and nothing else: no list (`,`, which PHP and Rack cut
/// at), no other or repeated parameter, no other charset, no tab or other control character (PHP cuts the
/// type only at `;`, `,` or space: with a tab it parses no body at all).
pub fn is_form_media_type(ct: &[u8]) -> bool {
    // The SDKs' spelling, decided without splitting (several times per request).
    // In lower case only: Tomcat parses a form only when its media type is spelt
    // so (`Request.parseParameters` compares with `equals`), other stacks in any
    // case, so `Application/X-WWW-Form-Urlencoded` is a body two stacks read two
    // ways.
    if ct == FORM {
        return true;
    }
    if ct.contains(&b',') || ct.iter().any(|&b| b < 0x20 || b == 0x7f) {
        return false;
    }
    let mut parts = ct.split(|&b| b == b';');
    let media = trim(parts.next().unwrap_or_default());
    if media != FORM {
        return false;
    }
    let mut seen_charset = false;
    for p in parts {
        let p = trim(p);
        let Some(eq) = p.iter().position(|&b| b == b'=') else {
            return false;
        };
        let (name, value) = (&p[..eq], &p[eq + 1..]);
        if !is_token(name) || !name.eq_ignore_ascii_case(b"charset") {
            return false;
        }
        let value = value
            .strip_prefix(b"\"")
            .and_then(|v| v.strip_suffix(b"\""))
            .unwrap_or(value);
        if !(value.eq_ignore_ascii_case(b"utf-8") || value.eq_ignore_ascii_case(b"us-ascii")) {
            return false;
        }
        // One parameter at most: Go's `mime.ParseMediaType` fails on a repeated
        // one (`charset=utf-8; charset=utf-8`) and `net/http` then parses no body.
        if seen_charset {
            return false;
        }
        seen_charset = true;
    }
    true
}

const FORM: &[u8] = b"application/x-www-form-urlencoded";

/// Might a content type name a body some stack parses into parameters (a form or a
/// multipart body, in any case, with anything around it: PHP and Python's `cgi`
/// match `application/x-www-form-urlencoded x`, `...urlencodedx` too; Elysia
/// picks its parser by the thirteenth character alone: `x` as in
/// `application/x-www-form-urlencoded` is a form to it (`application/xml`,
/// `application/x-ndjson`, `text/plain; x=1`), `r` as in `multipart/form-data`
/// a multipart or form body)?
fn names_parameters(ct: &[u8]) -> bool {
    let has = |needle: &[u8]| {
        ct.windows(needle.len())
            .any(|w| w.eq_ignore_ascii_case(needle))
    };
    has(b"urlencoded")
        || has(b"url-encoded")
        || has(b"multipart")
        || has(b"form-data")
        || ct.get(12).is_some_and(|&b| matches!(b | 0x20, b'x' | b'r'))
}

/// Whether the request announces an empty body (`Content-Length: 0`, no
/// `Transfer-Encoding`) although the host has not said the stream ended. Some
/// hosts (nginx's ngx_wasm_module) never report the end of the stream with the
/// headers. Nothing else counts: Envoy removes `Transfer-Encoding` before the
/// filters, so a chunked HTTP/1.1 body looks like no framing at all. Bytes that
/// arrive after all are refused by the adapter.
pub fn announced_empty(view: &RequestView) -> bool {
    view.header_values("transfer-encoding").next().is_none()
        && matches!(content_length(view), Ok(Some(0)))
}

/// The announced body length: `Ok(None)` when not given; an ambiguity when it is
/// given twice or cannot be read as one number.
pub fn content_length(view: &RequestView) -> Result<Option<usize>, Ambiguity> {
    let bad = || Ambiguity {
        class: Class::Header,
        field: b"content-length".to_vec(),
    };
    match view.header_once("content-length") {
        Err(_) => Err(bad()),
        Ok(None) => Ok(None),
        Ok(Some(v)) => {
            let v = trim(v);
            if v.is_empty() || v.len() > 15 || !v.iter().all(u8::is_ascii_digit) {
                return Err(bad());
            }
            std::str::from_utf8(v)
                .ok()
                .and_then(|s| s.parse().ok())
                .map(Some)
                .ok_or_else(bad)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fields(names: &[&str]) -> Fields {
        Fields {
            names: names.iter().map(|n| n.as_bytes().to_vec()).collect(),
            prefixes: vec![b"p_".to_vec()],
            headers: vec!["x-auth-token".into(), "api_key".into()],
            foreign: vec![b"token".to_vec()],
            query_only: vec![b"qtok".to_vec()],
            form_only: vec![b"ftok".to_vec()],
            ..Fields::default()
        }
        .indexed()
    }

    #[test]
    fn names_in_another_case_or_with_non_ascii_characters_touch_the_field() {
        let f = Fields::of_names(vec![b"app_token".to_vec(), b"s2s".to_vec()]);
        let t = |n: &[u8]| {
            f.touches(n)
                .map(|x| String::from_utf8_lossy(x).into_owned())
        };
        assert_eq!(t(b"APP_TOKEN").as_deref(), Some("app_token"));
        assert_eq!(t(b"App_Token[]").as_deref(), Some("app_token"));
        assert_eq!(
            t("\u{ff41}pp_token".as_bytes()).as_deref(),
            Some("app_token")
        );
        assert_eq!(
            t("app_to\u{212a}en".as_bytes()).as_deref(),
            Some("app_token")
        );
        assert_eq!(
            t("app_token\u{1f}".as_bytes()).as_deref(),
            Some("app_token")
        );
        assert_eq!(t("\u{17f}2\u{17f}".as_bytes()).as_deref(), Some("s2s"));
        assert_eq!(t("\u{e9}xyz".as_bytes()), None);
        assert_eq!(t(b"app_tokens"), None);
        // A prefix field: any name whose non-ASCII part starts where the prefix may.
        let p = fields(&[]);
        assert_eq!(p.touches("\u{ff50}_x".as_bytes()), Some(&b"p_"[..]));
        assert_eq!(p.touches("p_\u{e9}".as_bytes()), Some(&b"p_"[..]));
        assert_eq!(p.touches("q\u{e9}".as_bytes()), None);
        let cased = Fields::of_names(vec![b"Token".to_vec()]);
        assert!(!cased.plain(b"token"));
        assert_eq!(cased.touches(b"token"), Some(&b"Token"[..]));
    }

    #[test]
    fn the_name_index_finds_what_a_linear_search_finds() {
        let names: Vec<Vec<u8>> = (0..300).map(|i| format!("n{i}").into_bytes()).collect();
        let foreign: Vec<Vec<u8>> = (0..50).map(|i| format!("f{i}").into_bytes()).collect();
        let indexed = Fields {
            names: names.clone(),
            foreign: foreign.clone(),
            ..Fields::default()
        }
        .indexed();
        let linear = Fields {
            names,
            foreign,
            ..Fields::default()
        };
        assert!(!indexed.index.slots.is_empty() && linear.index.slots.is_empty());
        for probe in (0..400)
            .flat_map(|i| [format!("n{i}"), format!("f{i}"), format!("x{i}")])
            .chain(["".to_string(), "n".to_string()])
        {
            for foreign in [false, true] {
                assert_eq!(
                    indexed.find_plain(probe.as_bytes(), foreign),
                    linear.find_plain(probe.as_bytes(), foreign),
                    "{probe} {foreign}"
                );
            }
        }
        // A name in both lists (never, from the constructors) is found as foreign
        // first, and in each list when asked for it.
        let both = Fields {
            names: vec![b"dup".to_vec()],
            foreign: vec![b"dup".to_vec()],
            ..Fields::default()
        };
        for f in [both.clone().indexed(), both] {
            assert_eq!(f.lookup_plain(b"dup"), Some((true, &b"dup"[..])));
            assert_eq!(f.find_plain(b"dup", false), Some(&b"dup"[..]));
            assert_eq!(f.find_plain(b"dup", true), Some(&b"dup"[..]));
        }
        // An index built before the lists changed is not trusted.
        let mut stale = indexed.clone();
        stale.names.push(b"late".to_vec());
        assert_eq!(stale.find_plain(b"late", false), Some(&b"late"[..]));
    }

    fn class(q: &str, form: Option<&str>) -> Option<Class> {
        check_params(
            &fields(&["app_token", "s2s", "qtok", "ftok"]),
            q.as_bytes(),
            form.map(str::as_bytes),
        )
        .err()
        .map(|a| a.class)
    }

    #[test]
    fn one_clean_value_passes() {
        assert_eq!(class("s2s=1&app_token=abc&x=1&x=2", None), None);
        assert_eq!(class("s2s=0", None), None);
        let many = vec!["k=v"; MAX_PARAMS].join("&");
        assert_eq!(class(&many, None), None);
        assert_eq!(
            class(&format!("{many}&k=v"), None),
            Some(Class::TooManyParams)
        );
        assert_eq!(
            class("a=1", Some(&format!("{many}&app_token=x"))),
            Some(Class::TooManyParams)
        );
        assert_eq!(class("app%5Ftoken=abc", Some("s2s=1")), None);
        assert_eq!(class("app_token=a%20b", None), None);
        assert_eq!(class("p_x=1&other=%zz&q=a;b", None), None);
    }

    #[test]
    fn every_second_reading_is_refused() {
        use Class::*;
        let cases = [
            ("app_token=a&app_token=b", None, Repeated),
            ("app_token=a&app_token=", None, Repeated),
            ("app_token=a&app_token=a", None, Repeated),
            ("app_token=a", Some("app_token=b"), Repeated),
            ("app_token=a&app%5Ftoken=b", None, Repeated),
            // (`token` of a bound `app` to ASP.NET MVC, a route's foreign credential here.)
            ("app.token=a", None, OtherCredential),
            ("app+token=a", None, Spelling),
            ("app%20token=a", None, Spelling),
            ("app[token=a", None, OtherCredential),
            ("app_token[]=a", None, Spelling),
            ("app_token[x]=a", None, Spelling),
            ("[app_token]=a", None, Spelling),
            ("+app_token=a", None, Spelling),
            ("app_token%00x=a", None, Spelling),
            ("x=1;app_token=a", None, Separator),
            ("app_token=a;b", None, Separator),
            ("app_token=a%00b", None, BadValue),
            ("app_token=a%0d%0a", None, BadValue),
            ("app_token=+a", None, BadValue),
            ("app_token=a%09", None, BadValue),
            ("app_token=%ff", None, BadValue),
            ("app_token=%zz", None, BadEscape),
            ("app_token=%2", None, BadEscape),
            ("app%5Ftoken=a%zz", None, BadEscape),
            ("p_a=1&p_b=2", None, Repeated),
            ("p.a=1", None, Spelling),
            ("s2s=01&app_token=a", None, BadValue),
            ("s2s=true", None, BadValue),
            ("s2s=", None, BadValue),
            ("x=1&token=other", None, OtherCredential),
            ("x=1", Some("to%6Ben=other"), OtherCredential),
            ("x=1", Some("qtok=a"), OtherCredential),
            ("ftok=1", None, OtherCredential),
            ("app_token=a%C2%A0", None, BadValue),
            ("app_token=%E2%80%80a", None, BadValue),
            ("app_token=a%EF%BB%BF", None, BadValue),
            ("app_token=a%C2%85", None, BadValue),
        ];
        for (q, f, c) in cases {
            assert_eq!(class(q, f), Some(c), "{q} {f:?}");
        }
    }

    #[test]
    fn headers_are_single_and_spelt_one_way() {
        let f = fields(&[]);
        let h = |pairs: &[(&str, &str)]| {
            let v: Vec<(String, Vec<u8>)> = pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.as_bytes().to_vec()))
                .collect();
            check_headers(&f, &v).err().map(|a| a.class)
        };
        assert_eq!(h(&[("x-auth-token", "a"), ("api_key", "b")]), None);
        assert_eq!(h(&[("x_auth_token", "a")]), Some(Class::Header));
        assert_eq!(h(&[("api-key", "a")]), Some(Class::Header));
        assert_eq!(h(&[("content_type", "a")]), Some(Class::Header));
        assert_eq!(h(&[("origin", "a"), ("origin", "b")]), Some(Class::Header));
        assert_eq!(
            h(&[("client-sdk", "a"), ("client_sdk", "b")]),
            Some(Class::Header)
        );
        assert!(folds_onto("X_S2S_Guard_App", "x-s2s-guard-app"));
        assert!(folds_onto("x.s2s.guard.app", "x-s2s-guard-app"));
        assert_eq!(h(&[("x.auth.token", "a")]), Some(Class::Header));
    }

    #[test]
    fn only_plain_forms_are_read() {
        for ok in [
            "application/x-www-form-urlencoded",
            "application/x-www-form-urlencoded; charset=UTF-8",
            "application/x-www-form-urlencoded;charset=\"utf-8\"",
        ] {
            assert!(is_form_media_type(ok.as_bytes()), "{ok}");
        }
        for bad in [
            "application/x-www-form-urlencoded, text/plain",
            "application/x-www-form-urlencoded,",
            "application/x-www-form-urlencoded text/plain",
            "application/x-www-form-urlencoded; charset=utf-16",
            "application/x-www-form-urlencoded; boundary=x",
            "application/x-www-form-urlencoded; charset",
            "application/x-www-form-urlencoded\t;charset=utf-8",
            "application/x-www-form-urlencoded;\tcharset=utf-8",
            // Go's mime.ParseMediaType fails on a repeated parameter: no body read.
            "application/x-www-form-urlencoded; charset=utf-8; charset=utf-8",
            "application/x-www-form-urlencoded; charset=us-ascii; charset=UTF-8",
            "multipart/form-data; boundary=x",
            // Tomcat reads no form in another case.
            "Application/X-WWW-Form-Urlencoded; charset=UTF-8",
            "APPLICATION/X-WWW-FORM-URLENCODED",
            "text/plain",
            "",
        ] {
            assert!(!is_form_media_type(bad.as_bytes()), "{bad}");
        }
    }
}
