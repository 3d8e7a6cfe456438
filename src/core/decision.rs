//! The decision: given the policy, the request (and its form body when the route
//! reads it) and the time, what to answer or how to forward, and what to count.
//! Pure: the adapter applies the result.

use std::borrow::Cow;

use smallvec::{smallvec, SmallVec};

use crate::credential::{self, Extracted, Location, Locations};
use crate::metrics::{Counter, SigCounter};
use crate::path::{self, PathError};
use crate::policy::{
    Checks, LaterSdk, Mode, Name, OriginMismatch, Outcome, Policy, Route, Routing, Source, Stat,
};
use crate::reading::{self, Ambiguity, BodyPlan, BodyRefusal, Class};
use crate::replay;
use crate::request::{self, Param, RequestView};
use crate::signature::{self, Header, Reason};
use crate::token::{self, Kind, Lookup, Scope};

/// A local answer, before the upstream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Respond {
    pub status: u16,
    /// Shared with the policy's reply: no copy per answer.
    pub body: std::rc::Rc<[u8]>,
    pub content_type: Option<Name>,
    /// Other headers (CORS).
    pub headers: Vec<(String, Vec<u8>)>,
}

/// Changes to make before the request goes upstream.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Forward {
    /// Headers to remove (credentials, and the headers the filter owns).
    pub remove_headers: SmallVec<[Name; 2]>,
    /// Headers to set, replacing anything the client sent.
    pub set_headers: SmallVec<[(Name, Vec<u8>); 2]>,
    /// A new `:path` (the credential removed from the query).
    pub path: Option<Vec<u8>>,
    /// A new body (the credential removed from the form).
    pub body: Option<Vec<u8>>,
    /// Headers to add to the upstream's response (CORS).
    pub response_headers: Vec<(String, Vec<u8>)>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    Respond(Respond),
    Forward(Forward),
}

/// Why a rejected outcome did not lead to a local answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Enforcement {
    /// The outcome was acted on (allowed, or answered locally).
    Enforced,
    /// The app's authentication is off (Adjust): passed, counted as shadow.
    Shadow,
    /// `flag` mode: forwarded with the reason header.
    Flagged,
    /// `dry_run` mode: forwarded untouched.
    DryRun,
}

/// Everything the adapter needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    pub outcome: Outcome,
    pub enforcement: Enforcement,
    pub action: Action,
    pub route: Option<Name>,
    pub scope: Option<Scope>,
    /// The verified token's id, when one was verified.
    pub token_id: Option<String>,
    /// Short fingerprint of a presented but unknown credential, for logs.
    pub fingerprint: Option<String>,
    pub counters: SmallVec<[Counter; 4]>,
    /// The SDK signature result, for logs and the flag reason (worded only when
    /// one is written: [`SigNote::text`]).
    pub signature: Option<SigNote>,
    /// Series defined with the policy to increment (indexes into `Policy::stat_names`):
    /// App Secret statistics, the decision by route, a shadow decision by app.
    pub stats: SmallVec<[usize; 4]>,
    /// A verified signature still to be checked against the replay memory.
    pub replay: Option<PendingReplay>,
    /// The double reading that refused the request, for logs.
    pub ambiguity: Option<Ambiguity>,
    /// Final before the body is read (a refusal no body can change): the adapter
    /// answers at the headers.
    pub early: bool,
    /// The form body was read and no pair of it can spell the flag marker: the
    /// adapter need not look for one again in what it forwards.
    pub body_marker_free: bool,
}

/// What the adapter must check in the replay memory before the decision stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PendingReplay {
    pub check: replay::Check,
    pub full_rejects: bool,
    /// Statistics series for a rejection of this secret.
    pub reject_stat: Option<usize>,
    /// The acceptance series already in `Decision::stats`, withdrawn if the replay
    /// memory refuses the signature.
    pub accept_stat: Option<usize>,
    /// The signature covers no device id (counted apart once accepted).
    pub without_device_id: bool,
}

/// What the replay memory said.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReplayResult {
    Recorded,
    Seen,
    Full,
}

/// Where a request lands, on its canonical path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resolved<'a, 'v> {
    pub routing: Routing<'a>,
    /// The canonical path (the raw path for unknown paths), borrowed from the
    /// request when that is what it is.
    pub path: Cow<'v, [u8]>,
}

/// Resolves a request's route on its canonical path. `Err` when the path cannot be
/// made canonical safely and some reading of it could reach a protected route.
pub fn resolve<'a, 'v>(
    policy: &'a Policy,
    view: &'v RequestView,
) -> Result<Resolved<'a, 'v>, PathError> {
    // One budget for every URL of the request (`:path` and each rewrite header).
    let readings = Readings::new(policy, &view.method);
    let resolved = resolve_target(&readings, &view.path)?;
    // Old Symfony (before 2.7.49 / 3.4.14), Zend Framework 1 and IIS's URL Rewrite
    // route the URL in these headers, not `:path`: it must be the same route, or
    // neither protected. (A client never needs to send them to Envoy.)
    let rewrites = (view.headers.iter()).filter(|(n, _)| {
        (n.len() == 14 && reading::folds_onto(n, "x-original-url"))
            || (n.len() == 13 && reading::folds_onto(n, "x-rewrite-url"))
    });
    let same_as = |alt: &[u8]| match (resolve_target(&readings, alt), resolved.routing) {
        (Ok(alt), Routing::Unknown) => alt.routing == Routing::Unknown,
        (
            Ok(Resolved {
                routing: Routing::Route(x) | Routing::MethodNotAllowed(x),
                ..
            }),
            Routing::Route(r) | Routing::MethodNotAllowed(r),
        ) => std::ptr::eq(x, r),
        _ => false,
    };
    for (_, url) in rewrites {
        if !same_as(url) {
            return Err(PathError::OtherReading);
        }
    }
    // Root-path headers: the server strips the value from the front of the path
    // and routes the rest (Daphne's `Daphne-Root-Path` from any client, gunicorn's
    // `SCRIPT_NAME` from a loopback sidecar, the `X-Script-Name` and
    // `X-Forwarded-Prefix` middlewares): `/x/postback` with `/x` is `/postback`.
    let roots = (view.headers.iter()).filter(|(n, _)| {
        ROOT_PATH_HEADERS
            .iter()
            .any(|r| n.len() == r.len() && reading::folds_onto(n, r))
    });
    for (_, prefix) in roots {
        // Daphne and the `X-Script-Name` middlewares compare percent-decoded paths
        // (`/x%3Fy/postback` starts with `/x?y` there), gunicorn the raw ones.
        let decoded: Vec<u8> = percent_encoding::percent_decode(prefix).collect();
        let path_decoded: Vec<u8> = percent_encoding::percent_decode(view.url_path()).collect();
        for p in [view.url_path(), &resolved.path[..], &path_decoded[..]] {
            for prefix in [&prefix[..], &decoded[..]] {
                let Some(rest) = p.strip_prefix(prefix).filter(|_| !prefix.is_empty()) else {
                    continue;
                };
                let mut alt = Vec::with_capacity(rest.len() + 1);
                if rest.first() != Some(&b'/') {
                    alt.push(b'/');
                }
                alt.extend_from_slice(rest);
                if !same_as(&alt) {
                    return Err(PathError::OtherReading);
                }
            }
        }
    }
    Ok(resolved)
}

/// Request headers some servers take as the application's root path, stripped
/// from the front of the path before routing (names fold as CGI folds them:
/// `SCRIPT_NAME` is `script-name`).
const ROOT_PATH_HEADERS: [&str; 4] = [
    "daphne-root-path",
    "script-name",
    "x-script-name",
    "x-forwarded-prefix",
];

/// Bytes of other readings one request target may be routed in (each reading
/// routed costs its length): a path a few hundred bytes long has a few kilobytes of
/// readings; one built to make them grow (thousands of segments naming files, every
/// feature a stack reads two ways) is refused when its readings exceed this, never
/// read for seconds (`path`, `too_complex`).
const READING_BUDGET: usize = 64 * 1024;

/// The readings other stacks give one request target, routed against the policy
/// within [`READING_BUDGET`].
struct Readings<'p, 'm> {
    policy: &'p Policy,
    method: &'m [u8],
    left: std::cell::Cell<usize>,
}

impl<'p, 'm> Readings<'p, 'm> {
    fn new(policy: &'p Policy, method: &'m [u8]) -> Readings<'p, 'm> {
        Readings {
            policy,
            method,
            left: std::cell::Cell::new(READING_BUDGET),
        }
    }

    /// Charges `n` bytes of reading; `false` once the budget is spent.
    fn charge(&self, n: usize) -> bool {
        let left = self.left.get();
        self.left.set(left.saturating_sub(n));
        n <= left
    }

    fn exhausted(&self) -> bool {
        self.left.get() == 0
    }

    /// Does some [`other_readings`] of `c` reach a protected route other than
    /// `routing`'s, or lie under one ([`under_route`])? Stops at the first that
    /// does. Every reading gets both checks: a reading that can reach a route can
    /// reach under it (`/index.php/event/x;y` is `/event/x;y`, then `/event`).
    fn any_other(&self, c: &[u8], routing: Routing) -> bool {
        other_readings(c, &mut |alt| self.taken(alt, routing))
    }

    /// Does some [`other_readings`] of `c`, a path a route takes, reach another
    /// protected route? Not whether one lies under a route: `c` itself may (a
    /// route under another, Jitsu's dry-run, stays its own), and so its readings.
    fn any_other_route(&self, c: &[u8], routing: Routing) -> bool {
        other_readings(c, &mut |alt| {
            !self.charge(alt.len())
                || reaches_other(self.policy, self.method, alt, routing)
                || skeleton_reaches(self.policy, alt, routing, false)
        })
    }

    /// [`reaches_other`] or [`under_route`], charged once; a reading past the
    /// budget counts as reaching.
    fn taken(&self, alt: &[u8], routing: Routing) -> bool {
        !self.charge(alt.len())
            || reaches_other(self.policy, self.method, alt, routing)
            || under_route(self.policy, self.method, alt, routing)
            || skeleton_reaches(self.policy, alt, routing, true)
    }

    /// Every reading of `alt` a router may give it: itself, its [`other_readings`]
    /// and those of its characters' readings ([`path::character_readings`]:
    /// ThinkPHP's `|` as `/`, control characters as `_` or removed), each checked
    /// with [`Readings::taken`].
    fn touches(&self, alt: &[u8], routing: Routing) -> bool {
        let each = |a: &[u8]| self.taken(a, routing) || self.any_other(a, routing);
        each(alt)
            // Dot segments deleted, not resolved (CodeIgniter, in the path and in
            // the query it routes: `/?/event/..` is `/event` there).
            // (and empty ones: `/?/event.html/` is `/event.html`, then `/event`).
            || path::without_dot_segments(alt).is_some_and(|d| each(&d))
            || path::character_readings(alt).iter().any(|r| each(r))
    }

    /// `Err(OtherReading)`, or `Err(TooComplex)` when the budget ran out first.
    fn refusal(&self) -> PathError {
        if self.exhausted() {
            PathError::TooComplex
        } else {
            PathError::OtherReading
        }
    }
}

/// Front controllers that take the route from a query parameter: ThinkPHP's `s`,
/// Phalcon's `_url`, Drupal 7's `q`, CakePHP 1's `url` (`/?s=/event`,
/// `/index.php?_url=/event`). Read on every path, as their rewrites send every
/// path that names no file to the script (`index.php?_url=/$1 [QSA]`: the client's
/// own `_url` comes after and PHP keeps the last), with the pairs a rewrite makes
/// of the path after an `&` (`/x&_url=/event`, `/x%26_url=/event`), names as PHP
/// folds them (`.url`, ` _url`), and the value, with a leading `/`, reaching a
/// route (under the script's directory too).
fn routed_by_parameter(raw: &[u8], query: Option<&[u8]>, check: &dyn Fn(&[u8]) -> bool) -> bool {
    // The path after its first `&` (raw or escaped), decoded as a rewrite does.
    let cut = (raw.iter().enumerate()).find_map(|(i, &b)| match b {
        b'&' => Some(i + 1),
        b'%' if raw.get(i + 1..i + 3) == Some(b"26") => Some(i + 3),
        _ => None,
    });
    let tail: Vec<u8> = cut.map_or_else(Vec::new, |i| {
        percent_encoding::percent_decode(raw.get(i..).unwrap_or_default()).collect()
    });
    if query.is_none() && cut.is_none() {
        return false;
    }
    let last = raw.rsplit(|&b| b == b'/').next().unwrap_or_default();
    let dir = if names_script(last) {
        &raw[..raw.len() - last.len()]
    } else {
        &b""[..]
    };
    let dir = dir.strip_suffix(b"/").unwrap_or(dir);
    let pairs =
        || (query.unwrap_or_default().split(|&b| b == b'&')).chain(tail.split(|&b| b == b'&'));
    // CodeIgniter's directory parameter (`enable_query_strings`), decoded.
    let directory_value: Option<Vec<u8>> = pairs().find_map(|pair| {
        let (name, value) = pair.split_at(pair.iter().position(|&b| b == b'=')?);
        let value = value.get(1..).filter(|v| !v.is_empty())?;
        directory_parameter(name).then(|| percent_encoding::percent_decode(value).collect())
    });
    let directory_param = directory_value.as_deref();
    pairs().any(|pair| {
        let Some(eq) = pair.iter().position(|&b| b == b'=') else {
            return false;
        };
        let (name, value) = (&pair[..eq], &pair[eq + 1..]);
        if value.is_empty() || !routing_parameter(name) {
            return false;
        }
        let value: Vec<u8> = percent_encoding::percent_decode(value)
            .map(|b| if b == b'+' { b' ' } else { b })
            .collect();
        let routes = |v: &[u8]| {
            let route = if v.first() == Some(&b'/') {
                v.to_vec()
            } else {
                [&b"/"[..], v].concat()
            };
            check(&route)
                || (!dir.is_empty() && check(&[dir, &route].concat()))
                // WordPress's REST routes, published under `/wp-json`.
                || check(&[&b"/wp-json"[..], &route].concat())
        };
        // The value as a URL too: CakePHP 1 cuts it at `?`, Phalcon 4/5 front
        // controllers route `parse_url($_GET['_url'], PHP_URL_PATH)` (`/event?x`,
        // `//host/event`, `http://host/event`, `x:/event` are `/event`): cut at `?`
        // or `#`, and, in a value holding `:`, `//` or `\`, from each `/` on (every
        // path a scheme or authority can leave).
        let cut = &value[..value
            .iter()
            .position(|&b| b == b'?' || b == b'#')
            .unwrap_or(value.len())];
        // Each with its characters as other routers read them: ThinkPHP's `|` as
        // `/`, control characters as `_` (`parse_url`) or removed (CodeIgniter),
        // OpenCart's `route` with every character but `[A-Za-z0-9_/]` deleted.
        // CodeIgniter's `c` with every `/` and `.` removed (`c=ev.ent`), under its
        // directory parameter `d` too (`d=api/v1/s2s&c=event`).
        let read = |v: &[u8]| {
            let plain = (v.iter().any(|&b| b == b'/' || b == b'.')).then(|| {
                v.iter()
                    .copied()
                    .filter(|&b| b != b'/' && b != b'.')
                    .collect::<Vec<u8>>()
            });
            let under_d = |r: &[u8]| {
                directory_param
                    .is_some_and(|d| routes(&[d, b"/", r.strip_prefix(b"/").unwrap_or(r)].concat()))
            };
            routes(v)
                || under_d(v)
                || plain.as_deref().is_some_and(|r| routes(r) || under_d(r))
                || path::character_readings(v).iter().any(|r| routes(r))
                || path::route_characters_only(v).is_some_and(|r| routes(&r))
        };
        // Only a value a URL parser can find a scheme or an authority in has its
        // path further in (`a/postback` is `/a/postback` to every router).
        let url_like =
            value.contains(&b':') || value.contains(&b'\\') || value.windows(2).any(|w| w == b"//");
        read(&value)
            || (cut.len() != value.len() && read(cut))
            || (url_like
                && (cut.iter().enumerate())
                    .filter(|&(i, &b)| b == b'/' && i > 0)
                    .any(|(i, _)| read(&cut[i..])))
    })
}

/// The query parameters front controllers route by (Phalcon's `_url`, ThinkPHP's
/// `s`, Drupal's `q`, CakePHP's `url`, Craft's `p`, Yii's `r`, OpenCart's `route`
/// and `_route_`, ProcessWire's `it`, Elgg's `__elgg_uri`, CodeIgniter's `c` with
/// `enable_query_strings`, WordPress's `rest_route` (its REST API, also under
/// `/wp-json`) and `pagename`).
const ROUTER_PARAMETERS: [&[u8]; 13] = [
    b"rest_route",
    b"pagename",
    b"s",
    b"c",
    b"_url",
    b"q",
    b"url",
    b"p",
    b"r",
    b"route",
    b"_route_",
    b"it",
    b"__elgg_uri",
];

/// Is a raw parameter name, under any reading of it (PHP's: decoded, leading
/// spaces dropped, `.` and spaces as `_`, cut at NUL, `?`s of the built-in server
/// dropped; and every other reading the decision fields get), a front
/// controller's route parameter? Any case, to be safe.
fn routing_parameter(raw: &[u8]) -> bool {
    static ROUTER: std::sync::OnceLock<reading::Fields> = std::sync::OnceLock::new();
    names_one_of(raw, &ROUTER_PARAMETERS, &ROUTER)
}

/// Is a raw parameter name, under any reading of it (as [`routing_parameter`]),
/// CodeIgniter's directory parameter `d` (`%64`, ` d`, `D` too)?
fn directory_parameter(raw: &[u8]) -> bool {
    static DIRECTORY: std::sync::OnceLock<reading::Fields> = std::sync::OnceLock::new();
    names_one_of(raw, &[b"d"], &DIRECTORY)
}

/// [`names_one_of`] for a split parameter: a name the parser found plain (lower
/// case, digits, `_`, `-`: no other reading) is compared as it is, at once (this
/// runs for every parameter of every form body).
fn param_names_one_of(
    p: &Param,
    names: &[&[u8]],
    bloom: u64,
    fields: &std::sync::OnceLock<reading::Fields>,
) -> bool {
    if p.plain_name && !p.escaped_name {
        // Most names are none of `names` by their length and ends alone.
        let n: &[u8] = &p.name;
        return bloom & (1 << name_bit(n)) != 0 && names.contains(&n);
    }
    names_one_of(&p.name, names, fields)
}

/// A name's bit in a [`names_bloom`]: from its length and its first and last bytes.
const fn name_bit(n: &[u8]) -> u32 {
    match n {
        [] => 0,
        [first, .., last] => (n.len() as u32 * 31 + *first as u32 + *last as u32 * 7) % 64,
        [only] => (31 + *only as u32 * 8) % 64,
    }
}

/// The bits of `names` ([`name_bit`]): a plain name whose bit is clear is none of
/// them.
const fn names_bloom(names: &[&[u8]]) -> u64 {
    let mut m = 0u64;
    let mut i = 0;
    while i < names.len() {
        m |= 1 << name_bit(names[i]);
        i += 1;
    }
    m
}

const WORDPRESS_BLOOM: u64 = names_bloom(&WORDPRESS_ROUTES);
const ROUTER_BLOOM: u64 = names_bloom(&ROUTER_PARAMETERS);

/// Does a raw parameter name, under any reading of it, name one of `names`? (Any
/// case; `fields` caches `names` as decision fields.)
fn names_one_of(
    raw: &[u8],
    names: &[&[u8]],
    fields: &std::sync::OnceLock<reading::Fields>,
) -> bool {
    // A plain name (most names) is read one way: compared at once.
    if raw
        .iter()
        .all(|&b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
    {
        return names
            .iter()
            .any(|r| r.len() == raw.len() && raw.eq_ignore_ascii_case(r));
    }
    let fields = fields
        .get_or_init(|| reading::Fields::of_names(names.iter().map(|n| n.to_vec()).collect()));
    reading::names_field(fields, raw)
}

/// [`resolve`] for a request target (`:path`, or a URL a header names).
fn resolve_target<'a, 'v>(
    readings: &Readings<'a, '_>,
    target: &'v [u8],
) -> Result<Resolved<'a, 'v>, PathError> {
    let (policy, method) = (readings.policy, readings.method);
    // Refused on every path: no reading of the rest is the collector's for sure.
    if target.contains(&b'#') {
        return Err(PathError::Fragment);
    }
    let raw = match target.iter().position(|&b| b == b'?') {
        Some(i) => &target[..i],
        None => target,
    };
    // Readings of the target beside its path:
    // - `//host/event`: a URL parser (Node's WHATWG `URL`, Java's `URI`) reads the
    //   first segment after two slashes as an authority, and routes the rest;
    // - `/?/event`, `/index.php?/event`: CodeIgniter routes a query that starts
    //   with `/` (up to its next `?`) when the path is its front controller.
    //   CodeIgniter in a directory routes it under that directory
    //   (`/api/?/v1/s2s/event` is `/api/v1/s2s/event`): read under each.
    let beside = |routing: Routing| {
        let authority = path::without_authority(raw);
        // CodeIgniter with `uri_protocol = QUERY_STRING` routes a query that is no
        // pairs (`/?event`, `/index.php?event`) as its path: a query without `=`
        // (a pair's `=` is a character its default `permitted_uri_chars` refuses).
        let query_path: Option<Cow<[u8]>> = (target.get(raw.len() + 1..)).and_then(|q| {
            if q.first() == Some(&b'/') {
                Some(Cow::Borrowed(
                    &q[..q.iter().position(|&b| b == b'?').unwrap_or(q.len())],
                ))
            } else {
                (!q.is_empty() && !q.contains(&b'=')).then(|| Cow::Owned([&b"/"[..], q].concat()))
            }
        });
        // Paths a router takes from elsewhere than the path: under a protected route
        // too (a router reading them matches routes as prefixes: ThinkPHP's `s`).
        let check = |alt: &[u8]| readings.touches(alt, routing);
        if authority.iter().any(|a| check(a)) {
            return true;
        }
        // The path's characters as other routers read them (ThinkPHP's `|` as `/`:
        // `/event%7C` is `/event`; control characters as `_` or removed:
        // `/gdpr%01forget_device` is `/gdpr_forget_device` to `parse_url`).
        // Decoded once and, as Apache's rewrite step does, twice (`/event%257C`,
        // `/event%252Fx`); under a protected route too (`/event%2Fx` is
        // `/event/x` behind nginx).
        if raw
            .iter()
            .any(|&b| b == b'|' || b == b'%' || b < 0x20 || b == 0x7f)
        {
            let once: Vec<u8> = percent_encoding::percent_decode(raw).collect();
            let twice: Option<Vec<u8>> = once
                .contains(&b'%')
                .then(|| percent_encoding::percent_decode(&once).collect())
                .filter(|t: &Vec<u8>| *t != once);
            if std::iter::once(&once)
                .chain(twice.as_ref())
                .any(|d| check(d))
            {
                return true;
            }
        }
        // Dot segments deleted, not resolved (CodeIgniter: `/event/..` is `/event`).
        if path::without_dot_segments(raw).is_some_and(|d| check(&d)) {
            return true;
        }
        if routed_by_parameter(raw, target.get(raw.len() + 1..), &check) {
            return true;
        }
        let Some(q) = query_path else {
            return false;
        };
        // Each directory of the path, the root first (made only when read: a
        // budget spent stops a path of many segments early).
        let dirs = (raw.iter().enumerate())
            .filter(|&(i, &b)| b == b'/' && i > 0)
            .map(|(i, _)| i)
            .chain(std::iter::once(raw.len()).filter(|&n| n > 0 && raw[n - 1] != b'/'));
        check(&q)
            || dirs
                .into_iter()
                .any(|i| check(&[&raw[..i], &q[..]].concat()))
    };
    match path::canonical(raw, &policy.paths) {
        Ok(c) => {
            let routing = policy.routing(method, &c);
            // Decoding, dot segments, slashes, case and a trailing slash as every
            // stack may apply them, whatever `path_normalization` switches off.
            let strict = path::PathOptions::default();
            let protected = |p: &[u8]| policy.routing_loose(method, p) != Routing::Unknown;
            // Readings other stacks give the path (a script's tail, without
            // ASP.NET's session segments, without a format suffix): none may reach
            // a protected route this one is not (under a prefix route too:
            // `/event.json` below a catch-all `/` is `/event` to Rails).
            // The same readings of the path every step reads (escapes decoded
            // where `path_normalization` switches decoding off: `/event%2ejson`).
            let every_step = (policy.paths != strict)
                .then(|| path::canonical(raw, &strict).ok())
                .flatten()
                .filter(|alt| **alt != *c);
            // Under a protected route too (`/event/x`, `/index.php/event/x`): that
            // route to routers matching routes as prefixes.
            let other = |p: &[u8]| match routing {
                Routing::Unknown => readings.touches(p, routing),
                _ => readings.any_other_route(p, routing),
            };
            if std::iter::once(&c)
                .chain(every_step.as_ref())
                .any(|p| other(p))
                || beside(routing)
            {
                return Err(readings.refusal());
            }
            match routing {
                Routing::Unknown => {
                    // Passed unchanged: no other reading of the raw path may reach a
                    // protected route (`/api/v1/..` under a prefix route, to a stack
                    // that keeps dot segments).
                    let keep_dots = path::PathOptions {
                        remove_dot_segments: false,
                        ..strict
                    };
                    for opts in [strict, keep_dots] {
                        if path::canonical(raw, &opts).is_ok_and(|alt| protected(&alt)) {
                            return Err(PathError::OtherReading);
                        }
                    }
                    // `/event.json` is `/event` to Rails and older Spring.
                    if let Some(stem) = path::without_format_suffix(&c) {
                        if protected(&stem) {
                            return Err(PathError::FormatSuffix);
                        }
                    }
                }
                Routing::Route(r) | Routing::MethodNotAllowed(r) if strict != policy.paths => {
                    // Forwarded as `c`: read with every decoding step, it must still
                    // be this route (`/s2s/%2e%2e/event` is `/event` behind Apache).
                    let same = path::canonical(&c, &strict).is_ok_and(|alt| {
                        matches!(policy.routing_loose(method, &alt),
                            Routing::Route(x) | Routing::MethodNotAllowed(x) if std::ptr::eq(x, r))
                    });
                    if !same {
                        return Err(PathError::OtherReading);
                    }
                }
                _ => {}
            }
            Ok(Resolved { routing, path: c })
        }
        // Absolute form (`http://host/event`): Go and Express route its path part;
        // Envoy rewrites or rejects it before any filter, so it is refused here
        // whatever it names (`*` and a CONNECT's empty path are not paths).
        Err(PathError::NotOriginForm) if !raw.is_empty() && raw != b"*" => {
            Err(PathError::NotOriginForm)
        }
        Err(e) => {
            // Refused only if some reading could be protected: the filter may front
            // other traffic whose paths are not its business.
            let unknown = Routing::Unknown;
            // The most permissive reading: every step, whatever the switches say.
            // (Its other readings included: `/index.php/event;x`, `/event.json;`.)
            let Some(l) = path::lenient(raw, &path::PathOptions::default()) else {
                return Err(e);
            };
            if readings.touches(&l, unknown) || beside(unknown) {
                return Err(e);
            }
            // Trimmed first, then read leniently (Tomcat drops `;x` and decodes,
            // then older Spring trims each segment, stopping at an escaped control
            // character, and matches suffixes: `/%09/event%2ejson`).
            let trimmed = path::trimmed_segments(raw);
            let trimmed_lenient = trimmed
                .as_deref()
                .and_then(|t| path::lenient(t, &path::PathOptions::default()));
            // Under a protected route too (`/event/x;y`, `/event/x%3Fy`).
            for t in trimmed.iter().chain(trimmed_lenient.iter()) {
                if readings.touches(t, unknown) {
                    return Err(e);
                }
            }
            // Between the literal reading and the most permissive one: what one
            // stack decodes another takes as a character of its segment, and the
            // dots after it stay under a prefix (`/ingest/..;/x` is `/x` to
            // Tomcat, under `/ingest` to Express; `/api.x\..` likewise).
            let keep_dots = path::PathOptions {
                remove_dot_segments: false,
                ..path::PathOptions::default()
            };
            let present = path::partial_features(raw);
            let mut mask = present;
            loop {
                if !readings.charge(raw.len()) {
                    return Err(PathError::TooComplex);
                }
                let r = path::partial_reading(raw, mask);
                let kept = || {
                    path::canonical(&r, &keep_dots)
                        .is_ok_and(|k| policy.routing_loose(method, &k) != unknown)
                };
                if kept() || readings.touches(&r, unknown) {
                    return Err(readings.refusal());
                }
                if mask == 0 {
                    break;
                }
                mask = (mask - 1) & present;
            }
            Ok(Resolved {
                routing: Routing::Unknown,
                path: Cow::Borrowed(raw),
            })
        }
    }
}

/// Other stacks' readings of a canonical path (none for most paths), each handed
/// to `visit` until it returns `true` (then `true`):
/// - ASP.NET Framework removes cookieless-session segments (`/(S(x))/event`);
/// - PHP front controllers (Symfony's `getPathInfo`, so Laravel) and CGI route
///   what follows a script's name (`/index.php/event` is `/event`), and a front
///   controller in a directory serves that directory (`/api/index.php/v1/x` is
///   `/api/v1/x`);
/// - Rails and older Spring drop a format suffix
///   (`/event.json`, and `/index.php/event.json`);
/// - Java's case-insensitive matching (`equalsIgnoreCase`) reads `ſ`, `ı` and the
///   Kelvin sign as `s`, `i`, `k` (`/po%C5%BFtback` is `/postback`).
fn other_readings(c: &[u8], visit: &mut dyn FnMut(&[u8]) -> bool) -> bool {
    readings_once(c, &mut |t| {
        visit(t)
            || light_readings(t, 2, &mut *visit)
            // Two scripts: the first's tail, then the second's (`/index.php/api/
            // index.php/v1/s2s/event`); each visit charges the caller's budget.
            || (t != c
                && script_readings(t, &mut |u| {
                    visit(u) || light_readings(u, 2, &mut *visit)
                }))
    })
}

/// The readings that combine with every other, applied to one, `depth` deep: a
/// format suffix dropped, a default action's `index` cut, dashes as underscores
/// (`/index.php/event/index.json` is a script's tail, `/event/index.json`, then
/// `/event/index`, then `/event`). A few for any path: composing them costs no
/// more than reading the path once per combination (script tails are not
/// composed: a path of many scripts would have too many).
fn light_readings(t: &[u8], depth: u32, visit: &mut dyn FnMut(&[u8]) -> bool) -> bool {
    let mut step = |u: &[u8]| visit(u) || (depth > 1 && light_readings(u, depth - 1, &mut *visit));
    if let Some(stem) = path::without_format_suffix(t) {
        if step(&stem) {
            return true;
        }
    }
    if t.contains(&b'-') {
        let underscored: Vec<u8> = t
            .iter()
            .map(|&b| if b == b'-' { b'_' } else { b })
            .collect();
        if step(&underscored) {
            return true;
        }
    }
    index_cuts(t, &mut step)
}

/// One step of [`other_readings`].
fn readings_once(c: &[u8], visit: &mut dyn FnMut(&[u8]) -> bool) -> bool {
    let dashes = c.contains(&b'-');
    if !dashes
        && !c
            .iter()
            .any(|&b| b == b'.' || b == b'(' || b == b'%' || b == b'+' || b >= 0x80)
        && !index_cuts(c, &mut |_| true)
    {
        return false;
    }
    let mut bases: Vec<Cow<[u8]>> = std::iter::once(Cow::Borrowed(c))
        .chain(path::without_cookieless(c).map(Cow::Owned))
        .chain(path::ascii_case_folded(c).map(Cow::Owned))
        .collect();
    // CodeIgniter's `translate_uri_dashes`: `/gdpr-forget-device` is
    // `/gdpr_forget_device` there.
    if dashes {
        let underscored = c
            .iter()
            .map(|&b| if b == b'-' { b'_' } else { b })
            .collect();
        bases.push(Cow::Owned(underscored));
    }
    // Older Spring trims each segment (`/event/%20`, `/%09/event`), then reads
    // the rest as every other reading does (`/%20/event.json`).
    let trimmed: Vec<Cow<[u8]>> = bases
        .iter()
        .filter_map(|b| path::trimmed_segments(b).map(Cow::Owned))
        .collect();
    bases.extend(trimmed);
    for (k, base) in bases.iter().enumerate() {
        let mut one = |t: &[u8], other: bool| {
            if let Some(stem) = path::without_format_suffix(t) {
                if visit(&stem) {
                    return true;
                }
            }
            (k > 0 || other) && visit(t)
        };
        if one(base, false)
            || script_readings(base, &mut |t| one(t, true))
            || index_cuts(base, &mut |t| one(t, true))
        {
            return true;
        }
    }
    false
}

/// Does `alt`, read with every decoding step, reach a protected route other than
/// `routing`'s (any protected route, for an unknown path) that asks more or other
/// of a request ([`Route::decides_like`])? An `alt` no step can read is read
/// leniently.
fn reaches_other(policy: &Policy, method: &[u8], alt: &[u8], routing: Routing) -> bool {
    let Some(read) = read_any(alt) else {
        return false;
    };
    [
        policy.routing(method, alt),
        policy.routing_loose(method, &read),
    ]
    .into_iter()
    .any(|r| other_route(r, routing))
}

/// WordPress's query variables that pick the one handler a request runs: its REST
/// route, a page or post by name or by number, an attachment.
const WORDPRESS_ROUTES: [&[u8]; 9] = [
    b"rest_route",
    b"pagename",
    b"page_id",
    b"p",
    b"name",
    b"attachment",
    b"attachment_id",
    b"subpost",
    b"subpost_id",
];

/// On a protected route, WordPress's own route parameters ([`WORDPRESS_ROUTES`],
/// under any reading of their names) with any value: WordPress takes them over
/// the path (from the body first), and what a value names there is up to the
/// site (`/gdpr_forget_device` published as
/// `rest_route=/collector/v1/gdpr_forget_device`, a handler on page 6), which the
/// filter cannot see.
fn wordpress_route(query: &[Param], form: Option<&[Param]>) -> Option<Ambiguity> {
    static WORDPRESS: std::sync::OnceLock<reading::Fields> = std::sync::OnceLock::new();
    (query.iter().chain(form.unwrap_or_default()))
        .find(|p| {
            !p.value.is_empty()
                && param_names_one_of(p, &WORDPRESS_ROUTES, WORDPRESS_BLOOM, &WORDPRESS)
        })
        .map(|p| Ambiguity {
            class: Class::Path,
            field: p.name.to_vec(),
        })
}

/// A form field named like a front controller's route parameter whose value, as
/// a path (under `/wp-json` too), reaches or lies under another protected route
/// than `route`: WordPress takes `rest_route` (and its other public query
/// variables) from `$_POST` before the query and the path.
fn body_route_parameter(
    policy: &Policy,
    method: &[u8],
    route: &Route,
    form: &[Param],
) -> Option<Ambiguity> {
    let here = Routing::Route(route);
    form.iter()
        .filter(|p| {
            static ROUTER: std::sync::OnceLock<reading::Fields> = std::sync::OnceLock::new();
            !p.value.is_empty() && param_names_one_of(p, &ROUTER_PARAMETERS, ROUTER_BLOOM, &ROUTER)
        })
        .find(|p| {
            let v: &[u8] = &p.value;
            let rooted = if v.first() == Some(&b'/') {
                v.to_vec()
            } else {
                [&b"/"[..], v].concat()
            };
            let wp = [&b"/wp-json"[..], &rooted].concat();
            [rooted, wp].iter().any(|r| {
                read_any(r).is_some_and(|c| other_route(policy.routing_loose(method, &c), here))
                    || skeleton_reaches(policy, r, here, true)
            })
        })
        .map(|p| Ambiguity {
            class: Class::Path,
            field: p.name.to_vec(),
        })
}

/// Does `alt`, reduced as MVC routers reduce controller names
/// ([`path::skeleton`]: CodeIgniter 3's dots, Zend Framework 1's punctuation,
/// CakePHP 2's underscores and camel case deleted), name a protected route other
/// than `routing`'s, or (`under`) lie under one?
fn skeleton_reaches(policy: &Policy, alt: &[u8], routing: Routing, under: bool) -> bool {
    let skeleton = path::skeleton(alt);
    // Zend Framework 1 routes `/default/postback` to the module-less controller:
    // every application has the module `default`.
    let module_less = skeleton.strip_prefix(b"default/");
    // Its module route also reads the rest of a path as `key/value` pairs once a
    // segment is `0` (PHP's `empty("0")`): `/0/x/controller/postback` is the
    // postback controller. Whatever follows a `controller` segment, anywhere.
    let named = skeleton
        .windows(b"controller/".len())
        .enumerate()
        .filter(|&(i, w)| w == b"controller/" && (i == 0 || skeleton[i - 1] == b'/'))
        .map(|(i, w)| &skeleton[i + w.len()..]);
    std::iter::once(&skeleton[..])
        .chain(module_less)
        .chain(named)
        .any(|k| {
            policy
                .routes
                .iter()
                .any(|r| r.skeleton_matches(k, under) && other_route(Routing::Route(r), routing))
        })
}

/// Is `r` a protected route other than `routing`'s that decides otherwise?
fn other_route(r: Routing, routing: Routing) -> bool {
    match (r, routing) {
        (Routing::Unknown, _) => false,
        (
            Routing::Route(x) | Routing::MethodNotAllowed(x),
            Routing::Route(r) | Routing::MethodNotAllowed(r),
        ) => !std::ptr::eq(x, r) && !x.decides_like(r),
        _ => true,
    }
}

/// Is `alt`, a path no route takes, under a protected route (other than
/// `routing`'s)? Routers that match a route as a prefix of the path (ThinkPHP's
/// default, Drupal 7's menu router) take `/event/x` for `/event`.
/// A path read with every decoding step, or leniently where no step can read it;
/// `None` when neither can.
fn read_any(alt: &[u8]) -> Option<Vec<u8>> {
    let strict = path::PathOptions::default();
    match path::canonical(alt, &strict) {
        Ok(p) => Some(p.into_owned()),
        Err(_) => path::lenient(alt, &strict),
    }
}

fn under_route(policy: &Policy, method: &[u8], alt: &[u8], routing: Routing) -> bool {
    let Some(read) = read_any(alt) else {
        return false;
    };
    let under = |p: &[u8]| {
        segments(p)
            .filter(|&(start, _)| start > 0)
            .any(|(start, _)| other_route(policy.routing_loose(method, &p[..start]), routing))
    };
    // Its prefixes as sent too, before dot segments go (`/event/..%00` is `/` once
    // read, but CodeIgniter routes `event/..%00` to `event`); each read as a path.
    let as_sent = || {
        segments(alt)
            .filter(|&(start, _)| start > 0)
            .any(|(start, _)| {
                read_any(&alt[..start])
                    .is_some_and(|read| other_route(policy.routing_loose(method, &read), routing))
            })
    };
    matches!(policy.routing_loose(method, &read), Routing::Unknown)
        && (under(&read) || (read != alt && as_sent()))
}

/// The path before the segment starting at `start` (its `/`): the root for the
/// first segment.
fn directory(path: &[u8], start: usize) -> &[u8] {
    match path.get(..start) {
        Some(dir) if !dir.is_empty() => dir,
        _ => b"/",
    }
}

/// A controller's default action as MVC routers spell it (CodeIgniter's
/// auto-routing, ASP.NET MVC's `{controller}/{action=Index}`, CakePHP, Yii):
/// `/postback/index` and `/postback/index/x` are `/postback` there. Hands `visit`
/// the path before each `index` segment (any case) until it returns `true`.
fn index_cuts(path: &[u8], visit: &mut dyn FnMut(&[u8]) -> bool) -> bool {
    segments(path)
        .any(|(start, seg)| seg.eq_ignore_ascii_case(b"index") && visit(directory(path, start)))
}

/// A path's segments: where each starts (its `/`) and its bytes.
fn segments(path: &[u8]) -> impl Iterator<Item = (usize, &[u8])> {
    let mut start = 0;
    std::iter::from_fn(move || {
        if start >= path.len() {
            return None;
        }
        let rest = path.get(start + 1..).unwrap_or_default();
        let end = rest
            .iter()
            .position(|&b| b == b'/')
            .map_or(path.len(), |i| start + 1 + i);
        let seg = (start, path.get(start + 1..end).unwrap_or_default());
        start = end;
        Some(seg)
    })
}

/// What follows a PHP script's name glued in one segment (`index.phpevent`:
/// `event`; `App.PHP5x`: `x`); `None` for a segment that is a script's name or has
/// none.
fn glued_to_php(seg: &[u8]) -> Option<&[u8]> {
    let dot = seg.iter().position(|&b| b == b'.')?;
    let ext = &seg[dot + 1..];
    let after = (ext
        .get(..3)
        .filter(|e| e.eq_ignore_ascii_case(b"php"))
        .map(|_| 3))
    .or_else(|| {
        ext.get(..5)
            .filter(|e| e.eq_ignore_ascii_case(b"phtml"))
            .map(|_| 5)
    })?;
    let rest = ext.get(after..)?;
    let rest = &rest[rest.iter().take_while(|b| b.is_ascii_digit()).count()..];
    (!rest.is_empty() && rest[0] != b'.').then_some(rest)
}

/// Does a path segment name a script a server may run with the rest of the path
/// as its `PATH_INFO`? Any of its extensions (Apache's `mod_mime` runs
/// `index.php.bak` as PHP) one of PHP's, CGI's, ASP.NET's, Java's, ColdFusion's
/// and the like, or `.html` (hosts map it to PHP), in any case. `acme.com`,
/// `v1.2` or `john.doe` name none.
fn names_script(seg: &[u8]) -> bool {
    const SCRIPTS: [&[u8]; 44] = [
        b"php", b"phtml", b"pht", b"phar", b"phps", b"inc", b"cgi", b"fcgi", b"fcg", b"pl", b"pm",
        b"py", b"wsgi", b"psgi", b"rb", b"lua", b"sh", b"exe", b"dll", b"asp", b"aspx", b"ashx",
        b"asmx", b"axd", b"svc", b"cshtml", b"vbhtml", b"xamlx", b"rem", b"soap", b"jws", b"jsp",
        b"jspx", b"jsf", b"do", b"action", b"cfm", b"cfc", b"cfml", b"nsf", b"hh", b"html", b"htm",
        b"shtml",
    ];
    let mut parts = seg.split(|&b| b == b'.');
    parts.next();
    parts.any(|ext| {
        // `php5`, `php74`: PHP's extensions with a version.
        let ext = match ext.iter().rposition(|b| !b.is_ascii_digit()) {
            Some(i) if ext[..=i].eq_ignore_ascii_case(b"php") => &ext[..=i],
            _ => ext,
        };
        SCRIPTS.iter().any(|s| ext.eq_ignore_ascii_case(s))
    })
}

/// The readings of a path a front controller gives it, for each segment that
/// names a script ([`names_script`]), each handed to `visit`
/// until it returns `true` (then `true`): the tail after it (`/index.php/event`
/// is `/event` to CGI's `PATH_INFO`), and the path without it (a front controller
/// in a directory: `/api/index.php/v1/s2s/event` is `/api/v1/s2s/event` to an
/// application served at `/api`). None for most paths (no `.`). Each reading is
/// made only when visited: `visit` stops a path of many such segments early.
fn script_readings(path: &[u8], visit: &mut dyn FnMut(&[u8]) -> bool) -> bool {
    let cgi = |seg: &[u8]| seg.eq_ignore_ascii_case(b"cgi-bin");
    // Apache's `MultiViews` serves `/index/event` from `index.php` with
    // `PATH_INFO` `/event`: `index`, the usual front controller's name, is a
    // script too.
    let multiviews = |seg: &[u8]| seg.eq_ignore_ascii_case(b"index");
    if !path.contains(&b'.')
        && !path.windows(7).any(cgi)
        && !path.windows(4).any(|w| w.eq_ignore_ascii_case(b"nph-"))
        && !segments(path).any(|(_, seg)| multiviews(seg))
    {
        return false;
    }
    let mut after_cgi_bin = false;
    for (start, seg) in segments(path) {
        let end = start + 1 + seg.len();
        let tail = path.get(end..).unwrap_or_default();
        // Under `/cgi-bin/` any name is a script (Apache's `ScriptAlias`), and
        // `nph-` names are CGI's.
        let script = names_script(seg)
            || multiviews(seg)
            || after_cgi_bin
            || seg
                .get(..4)
                .is_some_and(|p| p.eq_ignore_ascii_case(b"nph-"));
        // A front controller's name glued to the route (`/index.phpevent`):
        // Symfony (so Laravel) strips the script's path as a plain prefix of the
        // request URI and routes the rest as `/event`.
        if let Some(rest) = glued_to_php(seg) {
            let reading = [&b"/"[..], rest, tail].concat();
            if visit(&reading) {
                return true;
            }
            if start > 0 && visit(&[directory(path, start), &reading[..]].concat()) {
                return true;
            }
        }
        if script {
            if end == path.len() {
                // A script last serves its directory (`DirectoryIndex`, IIS's
                // default documents, Tomcat's welcome files): `/event/index.php`
                // is `/event`.
                if visit(directory(path, start)) {
                    return true;
                }
            } else {
                if visit(tail) {
                    return true;
                }
                if start > 0 {
                    let without = [directory(path, start), tail].concat();
                    if visit(&without) {
                        return true;
                    }
                }
            }
        }
        after_cgi_bin = cgi(seg);
    }
    false
}

/// Does deciding this request need its body? Only when it has one and its route
/// reads form bodies (and the body is one the filter can read: otherwise the
/// decision is taken, as a refusal, at the headers).
pub fn needs_body(policy: &Policy, view: &RequestView) -> bool {
    // A method the route does not take is refused whatever the body holds, but in
    // flag mode it is forwarded: its body must then lose any client copy of the
    // marker and carry the filter's.
    let Ok(Resolved {
        routing: Routing::Route(route) | Routing::MethodNotAllowed(route),
        ..
    }) = resolve(policy, view)
    else {
        return false;
    };
    !(route.cors && view.method == b"OPTIONS")
        && matches!(reading::body_plan(route, view), Ok(BodyPlan::Form))
}

/// Decides a request. `body` is the complete body when [`needs_body`] said so.
pub fn decide(policy: &Policy, view: &RequestView, body: Option<&[u8]>, now: u64) -> Decision {
    let at = move || now;
    decide_inner(policy, &policy.tokens, view, body, false, &Clock::new(&at))
}

/// The time of a decision, Unix seconds, read only when a check needs it (a
/// token's validity window, a signature's freshness, the replay memory) and then
/// once: most decisions never ask, and asking the host is a call per request.
pub struct Clock<'c> {
    read: &'c dyn Fn() -> u64,
    seen: std::cell::Cell<Option<u64>>,
}

impl<'c> Clock<'c> {
    pub fn new(read: &'c dyn Fn() -> u64) -> Clock<'c> {
        Clock {
            read,
            seen: std::cell::Cell::new(None),
        }
    }

    /// The time, read on the first call.
    pub fn now(&self) -> u64 {
        match self.seen.get() {
            Some(t) => t,
            None => {
                let t = (self.read)();
                self.seen.set(Some(t));
                t
            }
        }
    }
}

/// [`decide`] with tokens looked up elsewhere (shared data, for very large sets).
pub fn decide_with(
    policy: &Policy,
    tokens: &dyn Lookup,
    view: &RequestView,
    body: Option<&[u8]>,
    clock: &Clock,
) -> Decision {
    decide_inner(policy, tokens, view, body, false, clock)
}

/// The header-phase view of a request whose body is still to come: what can be
/// decided from headers and query alone. A credential, app or parameter that may be
/// in the body is not held against the request yet, and no identity header is set
/// (they come only from the final decision). Its changes (owned headers removed,
/// canonical path, credential stripped) apply to the headers; the decision that
/// counts is [`decide`] with the body, unless this one is [`Decision::early`].
pub fn decide_partial(
    policy: &Policy,
    tokens: &dyn Lookup,
    view: &RequestView,
    clock: &Clock,
) -> Decision {
    decide_inner(policy, tokens, view, None, true, clock)
}

/// A request decided at its headers as bodiless (its framing announced no body)
/// whose body has bytes after all: refused on a protected route, even now (the
/// upstream request is then reset before it completes).
pub fn unannounced_body(policy: &Policy, view: &RequestView) -> Option<Decision> {
    let Ok(Resolved {
        routing: Routing::Route(route),
        ..
    }) = resolve(policy, view)
    else {
        return None;
    };
    let a = Ambiguity {
        class: Class::BodyLength,
        field: b"body".to_vec(),
    };
    let d = refuse(policy, view, Some(route), Outcome::Ambiguous, Some(a), None);
    Some(late_refusal(policy, view, route, d))
}

/// A refusal found after the headers went upstream (a body after an empty one
/// announced, trailers a decision field is named in): in flag mode a marker can no
/// longer be added, so the request is answered, never forwarded unmarked.
fn late_refusal(policy: &Policy, view: &RequestView, route: &Route, d: Decision) -> Decision {
    if policy.mode != Mode::Flag || matches!(d.action, Action::Respond(_)) {
        // Enforced, or answered already (a trailer refusal is answered in flag
        // mode wherever it is found).
        return d;
    }
    let origin = route.cors.then(|| reflected_origin(view)).flatten();
    answered(policy, route.profile, origin, d)
}

/// A decision flagged for forwarding, answered instead as enforcement would answer
/// it: counted rejected, not flagged.
fn answered(policy: &Policy, profile: usize, origin: Option<&[u8]>, mut d: Decision) -> Decision {
    d.counters.retain(|c| !matches!(c, Counter::Flagged(_)));
    let outcome = d.outcome;
    respond(policy, profile, outcome, origin, d)
}

/// Request trailers of a request decided (and forwarded) at its headers: a trailer
/// naming a header the route's decision reads refuses it, even now (the upstream
/// request is then reset before it completes). `view.trailers` holds them.
pub fn trailers_refusal(policy: &Policy, view: &RequestView) -> Option<Decision> {
    let Ok(Resolved {
        routing: Routing::Route(route),
        ..
    }) = resolve(policy, view)
    else {
        return None;
    };
    let a = reading::check_trailers(&route.fields, &view.trailers).err()?;
    let d = refuse(policy, view, Some(route), Outcome::Ambiguous, Some(a), None);
    Some(late_refusal(policy, view, route, d))
}

/// The body is larger than `max_body_bytes`. A body the filter cannot read is
/// never forwarded as if read: refused, except in `dry_run`.
pub fn body_too_large(policy: &Policy, view: &RequestView) -> Decision {
    let route = match resolve(policy, view) {
        Ok(Resolved {
            routing: Routing::Route(r),
            ..
        }) => Some(r),
        _ => None,
    };
    let mut d = Decision {
        route: route.map(|r| r.name.clone()),
        scope: route.and_then(|r| r.scope),
        ..Decision::new(Outcome::BodyTooLarge)
    };
    count_decision(policy, &mut d, route, Outcome::BodyTooLarge);
    let profile = route.map_or(policy.unknown_profile, |r| r.profile);
    let forward = Forward {
        remove_headers: owned_headers_in(policy, view),
        ..Forward::default()
    };
    // Flag mode too: the unread body may hold a credential or a client's copy of
    // the marker (`s2s_guard_rejection=`), which a collector reading the body
    // would take for the filter's; only `dry_run` forwards it, untouched.
    if policy.mode == Mode::Flag {
        return respond(policy, profile, Outcome::BodyTooLarge, None, d);
    }
    apply_mode(policy, profile, Outcome::BodyTooLarge, forward, None, d)
}

/// Counts a decision with `outcome`: by the route's scope (`Counter::Requests`) and
/// by route (the route's series, defined with the policy: an index, nothing
/// formatted per request). `route`: `None` for requests on no route.
fn count_decision(policy: &Policy, d: &mut Decision, route: Option<&Route>, outcome: Outcome) {
    d.counters
        .push(Counter::Requests(outcome, route.and_then(|r| r.scope)));
    d.stats.push(policy.route_stat(route, outcome));
}

impl Decision {
    fn new(outcome: Outcome) -> Decision {
        Decision {
            outcome,
            enforcement: Enforcement::Enforced,
            action: Action::Forward(Forward::default()),
            route: None,
            scope: None,
            token_id: None,
            fingerprint: None,
            counters: SmallVec::new(),
            signature: None,
            stats: SmallVec::new(),
            replay: None,
            ambiguity: None,
            early: false,
            body_marker_free: false,
        }
    }
}

/// A forwarded decision whose body change (the flag marker, a stripped
/// credential) the host cannot apply, because no body is buffered to change
/// (trailers that came with no data before them). Never forwarded unchanged:
/// answered as enforcement would answer it.
pub fn body_unchangeable(policy: &Policy, view: &RequestView, mut d: Decision) -> Decision {
    let route = match resolve(policy, view) {
        Ok(Resolved {
            routing: Routing::Route(r) | Routing::MethodNotAllowed(r),
            ..
        }) => Some(r),
        _ => None,
    };
    let profile = route.map_or(policy.unknown_profile, |r| r.profile);
    let origin = route
        .filter(|r| r.cors)
        .and_then(|_| reflected_origin(view));
    // Only a refusal carries a marker; a change to an allowed request's body
    // needs a body. Either way the request is refused, counted as refused.
    let outcome = match d.outcome {
        Outcome::Allowed => Outcome::Ambiguous,
        o => o,
    };
    d.outcome = outcome;
    for c in &mut d.counters {
        if let Counter::Requests(o, _) = c {
            *o = outcome;
        }
    }
    answered(policy, profile, origin, d)
}

/// Refuses a request that cannot be read one way (ambiguity, method, media type):
/// never shadow-passed, final even before the body.
fn refuse(
    policy: &Policy,
    view: &RequestView,
    route: Option<&Route>,
    outcome: Outcome,
    ambiguity: Option<Ambiguity>,
    body: Option<&[u8]>,
) -> Decision {
    let mut d = Decision {
        route: route.map(|r| r.name.clone()),
        scope: route.and_then(|r| r.scope),
        early: true,
        ..Decision::new(outcome)
    };
    count_decision(policy, &mut d, route, outcome);
    if let Some(a) = &ambiguity {
        d.counters.push(Counter::Ambiguity(a.class));
    }
    d.ambiguity = ambiguity;
    let profile = route.map_or(policy.unknown_profile, |r| r.profile);
    let forward = Forward {
        remove_headers: owned_headers_in(policy, view),
        ..Forward::default()
    };
    let origin = route
        .filter(|r| r.cors)
        .and_then(|_| reflected_origin(view));
    // More pairs than collectors keep: wherever the marker goes, some stack may
    // drop it (Tomcat drops the body after 1000 pairs in the query). Answered as
    // enforce answers it, not forwarded unmarked.
    // A query sent upstream before the body decides: the marker, in the body,
    // would come after a collector acted on the query. A trailer naming a header
    // the decision reads goes upstream after the body, the marker with it: a
    // collector reading it (a second credential) was never told.
    if policy.mode == Mode::Flag
        && (d.ambiguity.as_ref()).is_some_and(|a| {
            matches!(
                a.class,
                Class::TooManyParams | Class::QueryWithBody | Class::Trailer
            )
        })
    {
        return respond(policy, profile, outcome, origin, d);
    }
    if policy.mode == Mode::Flag && view.has_body {
        let readable = route.is_some_and(|r| {
            matches!(
                reading::body_plan(r, view),
                Ok(BodyPlan::Form | BodyPlan::Ignore)
            )
        });
        if !readable {
            // A body the filter cannot read cannot carry the marker, and may carry
            // a client's copy of it: refused, not forwarded unmarked.
            return respond(policy, profile, outcome, origin, d);
        }
        if route.is_some_and(|r| matches!(reading::body_plan(r, view), Ok(BodyPlan::Form))) {
            // Decided again at the end of the body, where the marker goes first and
            // every client copy is removed.
            d.early = false;
        }
    }
    let mut d = apply_mode(policy, profile, outcome, forward, origin, d);
    if let (Action::Forward(f), Mode::Flag) = (&mut d.action, policy.mode) {
        if policy.strip_credential {
            let form = body.filter(|_| {
                route.is_some_and(|r| matches!(reading::body_plan(r, view), Ok(BodyPlan::Form)))
            });
            strip_every_credential(f, policy, view, form);
        }
        // No client copy of the marker in the query, nor in a cookie.
        strip_credential_cookies(f, policy, view, false);
        let raw = view.path.clone();
        finish_forward(f, &raw, view, None, None);
    }
    d
}

/// Every check that the request reads one way, before any credential is looked at,
/// but the parameters' (they are split once, by the caller). Returns the form body
/// to read, when there is one.
fn reading_check<'b>(
    route: &Route,
    view: &RequestView,
    body: Option<&'b [u8]>,
    pending: bool,
) -> Result<Option<&'b [u8]>, (Outcome, Option<Ambiguity>)> {
    let amb = |a: Ambiguity| (Outcome::Ambiguous, Some(a));
    reading::check_headers(&route.fields, &view.headers).map_err(amb)?;
    reading::check_trailers(&route.fields, &view.trailers).map_err(amb)?;
    reading::check_cookies(&route.fields, &view.headers, route.accept_client).map_err(amb)?;
    reading::check_authority(view).map_err(amb)?;
    if let Some(f) = reading::field_in_path(&route.fields, view.url_path()) {
        return Err(amb(Ambiguity {
            class: Class::Spelling,
            field: f.to_vec(),
        }));
    }
    let plan = match reading::body_plan(route, view) {
        Ok(p) => p,
        Err(BodyRefusal::Unsupported(_)) => return Err((Outcome::UnsupportedMediaType, None)),
        Err(BodyRefusal::Ambiguous(a)) => return Err(amb(a)),
    };
    let form = match (plan, pending) {
        (BodyPlan::Form, false) => {
            let Some(b) = body else {
                // The adapter decides a form only with its whole body.
                return Err(amb(Ambiguity {
                    class: Class::BodyLength,
                    field: b"body".to_vec(),
                }));
            };
            match reading::content_length(view) {
                Err(a) => return Err(amb(a)),
                // Envoy has handed Wasm filters incomplete buffers (envoy#35884).
                Ok(Some(n)) if n != b.len() => {
                    return Err(amb(Ambiguity {
                        class: Class::BodyLength,
                        field: b"body".to_vec(),
                    }))
                }
                Ok(_) => {}
            }
            Some(b)
        }
        _ => None,
    };
    Ok(form)
}

fn decide_inner(
    policy: &Policy,
    tokens: &dyn Lookup,
    view: &RequestView,
    body: Option<&[u8]>,
    pending: bool,
    clock: &Clock,
) -> Decision {
    let resolved = match resolve(policy, view) {
        Ok(r) => r,
        Err(e) => {
            let a = Ambiguity {
                class: Class::Path,
                field: e.name().as_bytes().to_vec(),
            };
            return refuse(policy, view, None, Outcome::Ambiguous, Some(a), None);
        }
    };
    let route = match resolved.routing {
        Routing::Unknown => return unknown_path(policy, view),
        Routing::MethodNotAllowed(r) => {
            return refuse(policy, view, Some(r), Outcome::MethodNotAllowed, None, body)
        }
        Routing::Route(r) => r,
    };
    if route.cors && view.method == b"OPTIONS" {
        return preflight(route, view);
    }
    let form_raw = match reading_check(route, view, body, pending) {
        Ok(form) => form,
        Err((outcome, a)) => return refuse(policy, view, Some(route), outcome, a, body),
    };
    // Query and form body split once, for every check below.
    let query = request::parse_params(view.raw_query());
    let form = form_raw.map(request::parse_params);
    let checked = reading::check_parsed(
        &route.fields,
        (view.raw_query(), &query),
        form_raw.zip(form.as_deref()),
    );
    if let Err(a) = checked {
        return refuse(policy, view, Some(route), Outcome::Ambiguous, Some(a), body);
    }
    if let Some(a) = forged_name(policy, view, &query, form.as_deref())
        .or_else(|| method_override(view, &query, form.as_deref()))
        .or_else(|| {
            form.as_deref()
                .and_then(|f| body_route_parameter(policy, &view.method, route, f))
        })
        .or_else(|| wordpress_route(&query, form.as_deref()))
    {
        return refuse(policy, view, Some(route), Outcome::Ambiguous, Some(a), body);
    }
    if pending && !policy.hold_headers_for_body && !query.iter().all(reading::is_plain_flag) {
        // The headers go upstream now, query and all, and the body decides later:
        // a collector acting on the query alone would act on an unverified request
        // (a flag alone, `s2s=1`, names no event).
        let a = Ambiguity {
            class: Class::QueryWithBody,
            field: b"query".to_vec(),
        };
        return refuse(policy, view, Some(route), Outcome::Ambiguous, Some(a), body);
    }
    // From here on, the request as the collector will route it.
    let sent = view;
    let raw_path: &[u8] = &view.path;
    let canonical_view;
    let view = if *resolved.path == *view.url_path() {
        view
    } else {
        let mut path = resolved.path.into_owned();
        if view.path.contains(&b'?') {
            path.push(b'?');
            path.extend_from_slice(view.raw_query());
        }
        canonical_view = RequestView {
            path,
            ..view.clone()
        };
        &canonical_view
    };
    let params = Params {
        query: &query,
        form: form.as_deref(),
    };
    let mut d = decide_route(
        policy, tokens, route, view, form_raw, params, pending, clock,
    );
    d.body_marker_free = form.as_ref().is_some_and(|f| !f.iter().any(|p| p.has_j));
    if let (Action::Forward(f), Mode::Flag, true, Enforcement::Flagged) = (
        &mut d.action,
        policy.mode,
        policy.strip_credential,
        d.enforcement,
    ) {
        // Refused, forwarded marked: two credentials, a malformed one, another
        // route's, a signature refused: whatever was found, none of it goes on.
        strip_every_credential(f, policy, view, form_raw);
    }
    if pending && !d.early && matches!(d.action, Action::Respond(_)) {
        // Not final: the body may change it. Only the header changes apply now.
        // (An early refusal, one no body can change, is answered at the headers.)
        d.action = Action::Forward(Forward {
            remove_headers: owned_headers_in(policy, view),
            ..Forward::default()
        });
    }
    if let (Action::Forward(f), false) = (&mut d.action, d.enforcement == Enforcement::DryRun) {
        if pending {
            // Identity headers come only from the final decision.
            f.set_headers.clear();
            if policy.mode == Mode::Flag && policy.strip_credential {
                // The headers go now; if the body then refuses the request, it is
                // forwarded flagged, and a flagged request carries no credential.
                strip_credential_headers(f, policy, view);
            }
        }
        if policy.mode == Mode::Flag {
            strip_credential_cookies(f, policy, view, false);
        }
        finish_forward(f, raw_path, view, form_raw, Some(params));
    }
    if !pending && !matches!(d.enforcement, Enforcement::DryRun | Enforcement::Flagged) {
        if let Action::Forward(Forward { path: Some(p), .. }) = &d.action {
            // The target goes upstream rewritten (a credential or a client copy of
            // the marker taken out of the query): read as sent upstream, it must
            // still be this route (`/v1/index.php?/admin&key=x` is CodeIgniter's
            // `/v1/admin` once `key` is gone).
            if !same_route_upstream(policy, &sent.method, p, route) {
                let a = Ambiguity {
                    class: Class::Path,
                    field: PathError::OtherReading.name().as_bytes().to_vec(),
                };
                let mut r = refuse(policy, sent, Some(route), Outcome::Ambiguous, Some(a), body);
                if matches!(r.action, Action::Forward(_)) {
                    // Flag mode: no marker can follow a reading the filter did not
                    // make; answered as enforce answers it.
                    r = answered(policy, route.profile, reflected_origin(sent), r);
                }
                return r;
            }
        }
    }
    d
}

/// Is `target`, the request target as it goes upstream, read (every reading of it)
/// as `route` and nothing else?
fn same_route_upstream(policy: &Policy, method: &[u8], target: &[u8], route: &Route) -> bool {
    let readings = Readings::new(policy, method);
    matches!(
        resolve_target(&readings, target),
        Ok(Resolved { routing: Routing::Route(r) | Routing::MethodNotAllowed(r), .. })
            if std::ptr::eq(r, route)
    )
}

/// A parameter or cookie named like an owned header as a server variable
/// (`HTTP_X_S2S_GUARD_TOKEN_ID`: classic ASP.NET's `Request[...]` and
/// `Request.Params` look in the query, the form body and cookies before the server
/// variables), or a cookie named like the flag marker (PHP's `$_REQUEST` takes
/// cookies over the query and the body, where the filter writes it).
fn forged_name(
    policy: &Policy,
    view: &RequestView,
    query: &[Param],
    form: Option<&[Param]>,
) -> Option<Ambiguity> {
    // Names compare as those stacks fold them: case ignored, any other character
    // than a letter or digit as `_`.
    let fold = |b: u8| {
        if b.is_ascii_alphanumeric() {
            b.to_ascii_lowercase()
        } else {
            b'_'
        }
    };
    let same = |a: &[u8], b: &[u8]| {
        a.len() == b.len() && a.iter().zip(b).all(|(&x, &y)| fold(x) == fold(y))
    };
    // `escaped`: may the name hold a `%` (a parameter's only if its raw name did)?
    let server_variable = |name: &[u8], escaped: bool| {
        // IIS decodes `%uXXXX` in names, and names headers `HEADER_X-...` too.
        // Most names start with neither and hold no `%`: those are done at once.
        if name.first().is_none_or(|&b| b | 0x20 != b'h') && !escaped {
            return None;
        }
        let decoded;
        let name = if name.windows(2).any(|w| w[0] == b'%' && w[1] | 0x20 == b'u') {
            decoded = path::lenient_u_decoded(name);
            &decoded[..]
        } else {
            name
        };
        let rest = (name.get(5..).filter(|_| same(&name[..5], b"http_")))
            .or_else(|| name.get(7..).filter(|_| same(&name[..7], b"header_")))?;
        let owned = &policy.headers;
        [&owned.token_id, &owned.app, &owned.reason]
            .into_iter()
            .find(|h| same(rest, h.as_bytes()))
            .map(|h| h.as_bytes().to_vec())
            // A credential header too (`HTTP_AUTHORIZATION`, `HTTP_X_AUTH_TOKEN`):
            // a second credential beside the verified one to `Request[...]`.
            .or_else(|| {
                std::str::from_utf8(rest)
                    .ok()
                    .filter(|r| credential_header(policy, r))
                    .map(|r| r.as_bytes().to_vec())
            })
    };
    let field = (query.iter().chain(form.unwrap_or_default()))
        .find_map(|p| server_variable(&p.name, p.escaped_name))
        .map(|f| (Class::Spelling, f))
        .or_else(|| {
            reading::cookie_names(&view.headers, |name| {
                server_variable(name, name.contains(&b'%')).or_else(|| {
                    same(name, FLAG_FIELD.as_bytes()).then(|| FLAG_FIELD.as_bytes().to_vec())
                })
            })
            .map(|f| (Class::Cookie, f))
        })?;
    Some(Ambiguity {
        class: field.0,
        field: field.1,
    })
}

/// A second reading of the method: `X-HTTP-Method-Override`, `X-HTTP-Method`,
/// `X-Method-Override` (Symfony, ASP.NET, Express's `method-override`) or a
/// `_method` parameter (Laravel, Rails' `Rack::MethodOverride`) naming another
/// method than the request's: the collector would run another handler than the
/// route's `methods` allowed.
fn method_override(
    view: &RequestView,
    query: &[Param],
    form: Option<&[Param]>,
) -> Option<Ambiguity> {
    const HEADERS: [&str; 3] = [
        "x-http-method-override",
        "x-http-method",
        "x-method-override",
    ];
    let other = |v: &[u8]| !request::trim(v).eq_ignore_ascii_case(&view.method);
    let header = (view.headers.iter()).find(|(n, v)| {
        HEADERS
            .iter()
            .any(|h| n.len() == h.len() && reading::folds_onto(n, h))
            && other(v)
    });
    if let Some((name, _)) = header {
        return Some(Ambiguity {
            class: Class::Header,
            field: name.as_bytes().to_vec(),
        });
    }
    // `_method` as PHP folds names (leading spaces dropped, `.` and spaces as `_`,
    // cut at `[` or NUL), any case; the override headers' names as parameters
    // (ASP.NET MVC reads `X-HTTP-Method-Override` from the form and query too).
    // (Rack 2 and `qs` also drop brackets before the name: `[_method]`, `]_method`;
    // `URLSearchParams` a leading `?`: `?_method`.)
    // Compared in place: this runs for every parameter of every request.
    let overriding = |name: &[u8]| {
        let start = (name
            .iter()
            .position(|&b| !matches!(b, b' ' | b'[' | b']' | b'?')))
        .unwrap_or(name.len());
        let core = name.get(start..).unwrap_or_default();
        // Every name below starts with `_` (or what folds onto it) or `x`: most
        // parameters are done here, before their names are scanned.
        if !core
            .first()
            .is_some_and(|&b| matches!(b, b'_' | b'.' | b'-' | b'x' | b'X'))
        {
            return false;
        }
        let end = (core.iter().position(|&b| matches!(b, b'[' | b']' | 0))).unwrap_or(core.len());
        let core = &core[..end];
        // Only the lengths of the names below can match.
        if !matches!(core.len(), 7 | 13 | 17 | 22) {
            return false;
        }
        let is = |want: &str| {
            core.len() == want.len()
                && core.iter().zip(want.bytes()).all(|(&a, w)| {
                    let a = match a {
                        b'.' | b' ' | b'-' => b'_',
                        a => a.to_ascii_lowercase(),
                    };
                    a == if w == b'-' { b'_' } else { w }
                })
        };
        is("_method") || HEADERS.iter().any(|h| is(h))
    };
    if (query.iter().chain(form.unwrap_or_default()))
        .any(|p| overriding(&p.name) && other(&p.value))
    {
        return Some(Ambiguity {
            class: Class::Spelling,
            field: b"_method".to_vec(),
        });
    }
    // As a cookie too: PHP's `$_REQUEST` (no php.ini) takes cookies over the query
    // and the body, for code that reads the override there.
    reading::cookies(&view.headers, |name, value| {
        (overriding(name) && other(value)).then(|| Ambiguity {
            class: Class::Cookie,
            field: b"_method".to_vec(),
        })
    })
}

/// Every forwarded request: the canonical path, and no client-sent copy of the
/// flag marker in the query or body.
///
/// `params`, when the request's pairs were split already: the marker is looked for
/// only where a pair could spell it (what is forwarded is the request's pairs, or
/// fewer of them).
fn finish_forward(
    f: &mut Forward,
    raw_path: &[u8],
    view: &RequestView,
    body: Option<&[u8]>,
    params: Option<Params<'_>>,
) {
    let may_mark = |list: Option<&[Param]>| list.is_none_or(|l| l.iter().any(|p| p.has_j));
    let base: &[u8] = f.path.as_deref().unwrap_or(&view.path);
    let (p, q) = match base.iter().position(|&b| b == b'?') {
        Some(i) => (&base[..i], Some(&base[i + 1..])),
        None => (base, None),
    };
    let spans = match q {
        Some(q) if may_mark(params.map(|p| p.query)) => flag_field_spans(q),
        _ => Vec::new(),
    };
    // The path as forwarded: without client copies of the marker, and without an
    // empty query's `?`.
    let path = match q {
        Some(q) if spans.is_empty() && !q.is_empty() => None,
        None => None,
        Some(q) => {
            let q = request::remove_spans(q, &spans);
            let mut path = p.to_vec();
            if !q.is_empty() {
                path.push(b'?');
                path.extend_from_slice(&q);
            }
            Some(path)
        }
    };
    match path {
        Some(path) if path != raw_path || f.path.is_some() => f.path = Some(path),
        Some(_) => {}
        // Unchanged: only a canonical path differs from the one the client sent.
        // (Most often `base` is the very bytes of `raw_path`: no byte compare then.)
        None if f.path.is_none() && !std::ptr::eq(base, raw_path) && base != raw_path => {
            f.path = Some(base.to_vec())
        }
        None => {}
    }
    if let Some(b) = body.filter(|_| may_mark(params.and_then(|p| p.form))) {
        let base: &[u8] = f.body.as_deref().unwrap_or(b);
        let spans = flag_field_spans(base);
        if !spans.is_empty() {
            f.body = Some(request::remove_spans(base, &spans));
        }
    }
}

/// The pairs of a raw query or form that any stack reads as the flag marker.
fn flag_field_spans(raw: &[u8]) -> Vec<(usize, usize)> {
    if !might_hold_marker(raw) {
        return Vec::new();
    }
    let marker = reading::Fields::of_names(vec![FLAG_FIELD.as_bytes().to_vec()]);
    // Every spelling of the marker, however encoded, holds these letters.
    spans_where(raw, |seg| {
        might_name_marker(seg) && reading::touches(&marker, seg)
    })
}

/// The byte ranges of the non-empty `&`-separated pairs of `raw` that `pick` takes.
fn spans_where(raw: &[u8], pick: impl Fn(&[u8]) -> bool) -> Vec<(usize, usize)> {
    let mut spans = Vec::new();
    let mut start = 0;
    for seg in raw.split(|&b| b == b'&') {
        let span = (start, start + seg.len());
        start += seg.len() + 1;
        if !seg.is_empty() && pick(seg) {
            spans.push(span);
        }
    }
    spans
}

/// A refused request forwarded in flag mode whose credential was not verified
/// (the request reads more than one way, takes another method or path, carries
/// two credentials or another route's): every place any route reads a credential
/// from is emptied, under any spelling a stack reads as it: no secret reaches the
/// collector or its logs.
fn strip_every_credential(
    f: &mut Forward,
    policy: &Policy,
    view: &RequestView,
    body: Option<&[u8]>,
) {
    strip_credential_headers(f, policy, view);
    let fields = credential_places(policy, true, None);
    let credential = |seg: &[u8]| reading::touches(&fields, seg);
    let query = view.raw_query();
    let spans = spans_where(query, credential);
    if !spans.is_empty() {
        let kept = request::remove_spans(query, &spans);
        let mut path = view.url_path().to_vec();
        if !kept.is_empty() {
            path.push(b'?');
            path.extend_from_slice(&kept);
        }
        f.path = Some(path);
    }
    if let Some(b) = body {
        let spans = spans_where(b, credential);
        if !spans.is_empty() {
            f.body = Some(request::remove_spans(b, &spans));
        }
    }
}

/// Is `name`, under any folded spelling, a header some route reads a credential
/// from (`authorization` where a route reads one there)?
pub fn credential_header(policy: &Policy, name: &str) -> bool {
    let sources = || policy.routes.iter().flat_map(|r| r.sources.iter());
    let authorization =
        sources().any(|s| matches!(s, Source::Bearer | Source::Authorization | Source::Basic));
    authorization && reading::folds_onto(name, "authorization")
        || sources().any(|s| {
            matches!(s, Source::Header(h) if reading::folds_onto(name, &h.to_ascii_lowercase()))
        })
}

/// Removes every header of the request that some route reads a credential from
/// (an SDK's `Authorization: Signature ...` stays: no source reads a token there,
/// and the collector may verify it again).
fn strip_credential_headers(f: &mut Forward, policy: &Policy, view: &RequestView) {
    strip_credential_cookies(f, policy, view, true);
    for (name, value) in &view.headers {
        if credential_header(policy, name)
            && !(name.eq_ignore_ascii_case("authorization") && credential::is_signature(value))
            && !f.remove_headers.iter().any(|h| **h == **name)
        {
            f.remove_headers.push(name.as_str().into());
        }
    }
}

/// The parameter names and prefixes some route reads a credential from, with an
/// App Secret (`app_secret_in_request`: the secret of every install of the app,
/// never forwarded) where apps have signatures (none of them without
/// `credentials`), and `extra`; indexed, so that names in any case count too
/// (`S2S_TOKEN`, [`reading::touches`]: ASP.NET reads names case-insensitively).
fn credential_places(policy: &Policy, credentials: bool, extra: Option<&[u8]>) -> reading::Fields {
    let sources = || {
        (policy.routes.iter())
            .flat_map(|r| r.sources.iter())
            .filter(|_| credentials)
    };
    let app_secret = (credentials && !policy.signatures.is_empty()).then(|| b"app_secret".to_vec());
    let mut fields = reading::Fields::of_names(
        sources()
            .filter_map(|s| match s {
                Source::Query(n) | Source::Form(n) => Some(n.clone()),
                _ => None,
            })
            .chain(app_secret)
            .chain(extra.map(<[u8]>::to_vec))
            .collect(),
    );
    fields.prefixes = sources()
        .filter_map(|s| match s {
            Source::QueryPrefix(p) => Some(p.clone()),
            _ => None,
        })
        .collect();
    fields.indexed()
}

/// Removes from a flagged request's `Cookie` header every cookie named, under any
/// reading of its name (`+` as a space too), like the flag marker (PHP's
/// `$_REQUEST` takes cookies over the query and the body: a client's empty
/// `s2s_guard_rejection` would hide the filter's reason) and, with `credentials`,
/// like a parameter some route reads a credential from or an App Secret. The other
/// cookies go on, in one header. Done once per forward (the first call decides).
fn strip_credential_cookies(
    f: &mut Forward,
    policy: &Policy,
    view: &RequestView,
    credentials: bool,
) {
    let cookie = |h: &str| h.eq_ignore_ascii_case("cookie");
    if !view.headers.iter().any(|(n, _)| cookie(n))
        || f.remove_headers.iter().any(|h| cookie(h))
        || f.set_headers.iter().any(|(h, _)| cookie(h))
    {
        return;
    }
    let fields = credential_places(policy, credentials, Some(FLAG_FIELD.as_bytes()));
    let mut kept: Vec<&[u8]> = Vec::new();
    let mut removed = false;
    for (name, value) in &view.headers {
        if !name.eq_ignore_ascii_case("cookie") {
            continue;
        }
        for pair in value.split(|&b| b == b';' || b == b',') {
            let pair = request::trim(pair);
            if pair.is_empty() {
                continue;
            }
            let n = request::trim(pair.split(|&b| b == b'=').next().unwrap_or_default());
            let spaced: Vec<u8> = n
                .iter()
                .map(|&b| if b == b'+' { b' ' } else { b })
                .collect();
            if reading::touches(&fields, n) || reading::touches(&fields, &spaced) {
                removed = true;
            } else {
                kept.push(pair);
            }
        }
    }
    if removed {
        if !f.remove_headers.iter().any(|h| &**h == "cookie") {
            f.remove_headers.push("cookie".into());
        }
        if !kept.is_empty() {
            f.set_headers.push(("cookie".into(), kept.join(&b"; "[..])));
        }
    }
}

/// The cheap filter for a whole query or body, without allocating: does its
/// form-decoded text hold `rejection` in any case? Escapes never span an `&`, so
/// every pair's decoded text is a part of the whole's.
fn might_hold_marker(raw: &[u8]) -> bool {
    const WORD: &[u8] = b"rejection";
    // Quick: the word needs a `j`, plain or escaped (`%4A`, `%6a`, `%u006A`, ...).
    let plain = raw.iter().fold(false, |acc, &b| acc | (b | 0x20 == b'j'));
    if !plain && !request::escapes_j(raw) {
        return false;
    }
    let hex = |b: Option<&u8>| b.and_then(|b| (*b as char).to_digit(16));
    // No proper prefix of WORD is also its suffix: after a mismatch, a match can
    // only restart at the current byte.
    let mut k = 0;
    let mut i = 0;
    while let Some(&b) = raw.get(i) {
        // `%uXXXX` (IIS, classic ASP.NET): its ASCII character, or none.
        let u = (b == b'%' && raw.get(i + 1).is_some_and(|&u| u | 0x20 == b'u'))
            .then(|| (2..6).try_fold(0u32, |a, k| hex(raw.get(i + k)).map(|d| a << 4 | d)))
            .flatten();
        let (b, len) = match (u, b, hex(raw.get(i + 1)), hex(raw.get(i + 2))) {
            (Some(c), ..) => (u8::try_from(c).unwrap_or(0), 6),
            (None, b'%', Some(h), Some(l)) => ((h * 16 + l) as u8, 3),
            (None, b'+', ..) => (b' ', 1),
            (None, b, ..) => (b, 1),
        };
        i += len;
        let b = b.to_ascii_lowercase();
        if b == WORD[k] {
            k += 1;
            if k == WORD.len() {
                return true;
            }
        } else {
            k = usize::from(b == WORD[0]);
        }
    }
    false
}

/// A cheap filter: can this raw pair (or one of its `;` parts) name the marker?
/// Decoded, it must contain `rejection`.
fn might_name_marker(seg: &[u8]) -> bool {
    let has = |b: &[u8]| b.windows(9).any(|w| w.eq_ignore_ascii_case(b"rejection"));
    if seg.contains(&b'%') || seg.contains(&b'+') {
        let decoded = request::form_decode(seg);
        return has(&decoded) || reading::decode_percent_u(&decoded).is_some_and(|d| has(&d));
    }
    has(seg)
}

/// A request's parameters, split once: the query's and the form body's (when read).
#[derive(Clone, Copy)]
struct Params<'p> {
    query: &'p [Param<'p>],
    form: Option<&'p [Param<'p>]>,
}

#[allow(clippy::too_many_arguments)]
fn decide_route(
    policy: &Policy,
    tokens: &dyn Lookup,
    route: &Route,
    view: &RequestView,
    body: Option<&[u8]>,
    params: Params<'_>,
    pending: bool,
    clock: &Clock,
) -> Decision {
    let Params { query, form } = params;
    // An app named in another case than configured: protected to a collector that
    // looks apps up case-insensitively, unknown (unprotected) here. Configured
    // apps are ASCII: a name with any other character (`K` KELVIN SIGN for `k`,
    // fullwidth letters, a soft hyphen, a combining accent) is one only Unicode
    // folding or collation (Python's casefold, JavaScript's localeCompare, SQL
    // `_ci`/`_ai`) can match, so it is refused too.
    if let Some(app) = single_param(&route.app_param, query, form) {
        let exact = std::str::from_utf8(app)
            .is_ok_and(|a| policy.apps.contains_key(a) || policy.signatures.contains_key(a));
        if !exact
            && (!app.is_ascii()
                || policy
                    .app_names_folded
                    .contains(&String::from_utf8_lossy(app).to_ascii_lowercase())
                || numeric_alias(policy, app))
        {
            let a = Ambiguity {
                class: Class::Spelling,
                field: route.app_param.clone().unwrap_or_default(),
            };
            return refuse(policy, view, Some(route), Outcome::Ambiguous, Some(a), body);
        }
    }
    // One pass over each place: (has `s2s=1`, has anything but a plain flag).
    let scan = |ps: &[Param]| {
        ps.iter().fold((false, false), |(flag, other), p| {
            (
                flag || (*p.name == *b"s2s" && *p.value == *b"1"),
                other || !reading::is_plain_flag(p),
            )
        })
    };
    let (want_token, want_signature) = match route.checks {
        Checks::Token => (true, false),
        Checks::Signature => (false, true),
        Checks::TokenAndSignature => (true, true),
        // Before the body, `s2s=1` may still come: look for a token meanwhile.
        Checks::S2sTokenElseSignature if pending => (true, false),
        Checks::S2sTokenElseSignature => {
            let (q_flag, q_other) = scan(query);
            let (f_flag, f_other) = form.map_or((false, false), scan);
            // The flag where only one of the places a collector reads parameters
            // from has it, the request's parameters in the other: read two ways.
            if form.is_some() && ((q_flag && f_other) || (f_flag && q_other)) {
                let a = Ambiguity {
                    class: Class::FlagPlace,
                    field: b"s2s".to_vec(),
                };
                return refuse(policy, view, Some(route), Outcome::Ambiguous, Some(a), body);
            }
            let s2s = q_flag || f_flag;
            (s2s, !s2s)
        }
    };
    let d = if want_token {
        token_decision(
            policy, tokens, route, view, body, pending, clock, query, form,
        )
    } else {
        let mut d = passed(policy, route, view);
        if !pending {
            // Counted like a token decision: allowed, until the signature says
            // otherwise ([`signature_rejected`]).
            count_decision(policy, &mut d, Some(route), Outcome::Allowed);
        }
        d
    };
    if !want_signature || pending || d.outcome != Outcome::Allowed {
        return d;
    }
    signature_decision(policy, route, view, query, form, clock, d)
}

/// A route's decision before any check: forward, without the headers the filter owns.
fn passed(policy: &Policy, route: &Route, view: &RequestView) -> Decision {
    Decision {
        action: Action::Forward(Forward {
            remove_headers: owned_headers_in(policy, view),
            ..Forward::default()
        }),
        route: Some(route.name.clone()),
        scope: route.scope,
        ..Decision::new(Outcome::Allowed)
    }
}

#[allow(clippy::too_many_arguments)]
fn token_decision(
    policy: &Policy,
    tokens: &dyn Lookup,
    route: &Route,
    view: &RequestView,
    body: Option<&[u8]>,
    pending: bool,
    clock: &Clock,
    query: &[Param],
    form: Option<&[Param]>,
) -> Decision {
    let extracted = credential::extract(route, view, query, form);
    // A browser route: a cookie named like the credential may be the site's own,
    // but not another credential than the one verified ([`reading::cookie_credential`]).
    if route.accept_client && !route.fields.credentials.is_empty() {
        let presented = match &extracted {
            Extracted::One { value, .. } => Some(&**value),
            _ => None,
        };
        if let Some(field) = reading::cookie_credential(&route.fields, &view.headers, |v| {
            presented != Some(v) && tokens.verify(v).is_some()
        }) {
            let a = Ambiguity {
                class: Class::Cookie,
                field,
            };
            return refuse(policy, view, Some(route), Outcome::Ambiguous, Some(a), body);
        }
    }
    // The decision's action is set below, from `forward` or a reply.
    let mut d = passed(policy, route, view);
    let mut forward = match &mut d.action {
        Action::Forward(f) => std::mem::take(f),
        Action::Respond(_) => Forward::default(),
    };
    let origin = view.header_values("origin").next();
    let app = single_param(&route.app_param, query, form);

    let (outcome, locations) = match extracted {
        // The credential may be in the body still to come.
        Extracted::Missing if pending => (Outcome::Allowed, Locations::new()),
        Extracted::Missing => (Outcome::Missing, Locations::new()),
        Extracted::Ambiguous => (Outcome::Ambiguous, Locations::new()),
        Extracted::Malformed { locations } => (Outcome::Wrong, locations),
        Extracted::One {
            value, locations, ..
        } => match tokens.verify(&value) {
            None => {
                // Only for the log line: not computed when no line is written.
                if policy.log_level >= log::LevelFilter::Info {
                    d.fingerprint = Some(token::fingerprint(&value));
                }
                (Outcome::Wrong, locations)
            }
            Some(v) => {
                let t = v.token();
                // As the fingerprint: for the log line only.
                if policy.log_level >= log::LevelFilter::Info {
                    d.token_id = Some(t.id.to_string());
                }
                let outcome = if *t.realm != *route.realm {
                    // Another system's token is unknown here, whatever it grants there.
                    Outcome::Wrong
                } else if !t.active {
                    Outcome::Inactive
                } else if t.not_before.is_some_and(|nb| clock.now() < nb)
                    || t.expires_at.is_some_and(|ea| clock.now() >= ea)
                {
                    Outcome::Expired
                } else if !Policy::accepts(route, v.kind) {
                    // A client secret on a server endpoint has its own answer (Jitsu);
                    // a server secret where only client secrets count is unknown there.
                    match v.kind {
                        Kind::Client => Outcome::WrongKind,
                        Kind::Server => Outcome::Wrong,
                    }
                } else if route.app_param.is_some()
                    && !(pending && app.is_none())
                    && match &t.app {
                        // A token belongs to one app: another app's token is wrong.
                        Some(a) => app != Some(a.as_bytes()),
                        // A token with no app opens an app-checked route only if it
                        // says it is valid for every app of its realm.
                        None => !t.all_apps,
                    }
                {
                    Outcome::Wrong
                } else if route
                    .scope
                    .is_some_and(|s| !t.scopes.is_empty() && !t.scopes.contains(s))
                {
                    Outcome::InsufficientScope
                } else if v.kind == Kind::Client
                    && !t.origins.is_empty()
                    && !origin_allowed(t, origin)
                {
                    match policy.origin_mismatch {
                        OriginMismatch::Reject => Outcome::OriginDenied,
                        OriginMismatch::OmitCors => {
                            d.counters.push(Counter::CorsWithheld);
                            Outcome::Allowed
                        }
                    }
                } else {
                    if route.cors {
                        if let Some(o) = origin {
                            forward
                                .response_headers
                                .push(("access-control-allow-origin".into(), o.to_vec()));
                            forward
                                .response_headers
                                .push(("vary".into(), b"origin".to_vec()));
                        }
                    }
                    Outcome::Allowed
                };
                if outcome == Outcome::Allowed {
                    forward
                        .set_headers
                        .push((policy.headers.token_id.clone(), t.id.as_bytes().to_vec()));
                    if let Some(a) = &t.app {
                        forward
                            .set_headers
                            .push((policy.headers.app.clone(), a.as_bytes().to_vec()));
                    }
                }
                (outcome, locations)
            }
        },
    };
    let outcome =
        if outcome == Outcome::Allowed && !pending && !required_present(route, query, form) {
            Outcome::BadRequest
        } else {
            outcome
        };
    d.outcome = outcome;
    if policy.strip_credential {
        strip(policy, &mut forward, view, body, &locations);
    }
    count_decision(policy, &mut d, Some(route), outcome);

    if outcome == Outcome::Allowed {
        d.action = Action::Forward(forward);
        return d;
    }
    // Identity headers are only for allowed requests.
    forward.set_headers.clear();
    forward.response_headers.clear();
    if route.per_app && !app_enforced(policy, route, app) {
        d.enforcement = Enforcement::Shadow;
        d.counters.push(Counter::Shadow(outcome));
        d.stats.push(policy.shadow_stat(app));
        d.action = Action::Forward(forward);
        return d;
    }
    // A refused origin is not told it may read the answer.
    let cors_origin =
        reflected_origin(view).filter(|_| route.cors && outcome != Outcome::OriginDenied);
    apply_mode(policy, route.profile, outcome, forward, cors_origin, d)
}

/// The headers the filter owns: removed from every client request.
pub fn owned_headers(policy: &Policy) -> Vec<Name> {
    vec![
        policy.headers.token_id.clone(),
        policy.headers.app.clone(),
        policy.headers.reason.clone(),
    ]
}

/// The headers to remove from this request: every client header named like
/// one the filter owns, under any spelling that folds onto it (case, `_` for
/// `-`: CGI stacks merge them). Only names the request carries: removing an
/// absent header is a host call for nothing, on every request.
pub fn owned_headers_in(policy: &Policy, view: &RequestView) -> SmallVec<[Name; 2]> {
    let h = &policy.headers;
    let mut out: SmallVec<[Name; 2]> = SmallVec::new();
    for (name, _) in &view.headers {
        if !out.iter().any(|o| **o == **name)
            && [&h.token_id, &h.app, &h.reason]
                .iter()
                .any(|o| reading::folds_onto(name, o))
        {
            out.push(name.as_str().into());
        }
    }
    out
}

/// The SDK signature check, after any token check passed.
fn signature_decision(
    policy: &Policy,
    route: &Route,
    view: &RequestView,
    query: &[Param],
    form: Option<&[Param]>,
    clock: &Clock,
    mut d: Decision,
) -> Decision {
    // An Authorization the SDK never sends (a Bearer or raw token): nothing on this
    // path verifies it, so it does not reach the collector or its logs.
    let foreign = (view.header_values("authorization")).any(|v| !signature::names_signature(v));
    if let (Action::Forward(f), true, true) = (&mut d.action, policy.strip_credential, foreign) {
        if !f.remove_headers.contains(&policy.headers.authorization) {
            f.remove_headers.push(policy.headers.authorization.clone());
        }
    }
    let app = single_param(&route.app_param, query, form);
    let app = app.and_then(|a| std::str::from_utf8(a).ok());
    let Some(settings) = app.and_then(|a| policy.signatures.get(a)) else {
        // No signature settings for this app: nothing to verify against.
        d.counters
            .push(Counter::Signature(SigCounter::UnconfiguredApp));
        d.signature = Some(SigNote::UnconfiguredApp);
        return d;
    };
    let params: Vec<&Param> = query.iter().chain(form.unwrap_or_default()).collect();
    // Sandbox traffic is verified but not counted in the App Secret statistics.
    let sandbox = params
        .iter()
        .any(|p| *p.name == *b"environment" && *p.value == *b"sandbox");
    let stat = |s: Stat| (!sandbox).then(|| settings.stat_index(s));
    let duplicate = has_duplicate_name(&params);
    let header = match view.header_once("authorization") {
        Err(_) => Some(Err(Reason::BadFormat(signature::Field::Authorization))),
        Ok(None) => None,
        Ok(Some(v)) => signature::parse_header(v),
    };
    let reject = |d: Decision, reason: Reason, st: Option<usize>| {
        signature_rejected(policy, d, reason, st, false)
    };
    if params.iter().any(|p| *p.name == *b"app_secret") {
        return reject(d, Reason::AppSecretInRequest, stat(Stat::InvalidSecret));
    }
    if duplicate {
        return reject(d, Reason::DuplicateParam, stat(Stat::InvalidSecret));
    }
    match header {
        None => {
            d.stats.extend(stat(Stat::NoSecret));
            if settings.enforce_signature {
                return reject(d, Reason::MissingSignature, None);
            }
            d.counters.push(Counter::Signature(SigCounter::NoSignature));
            d.signature = Some(SigNote::NoSignature);
            d
        }
        Some(Err(reason)) => reject(d, reason, stat(Stat::InvalidSecret)),
        Some(Ok(Header::Later { signing_id, .. })) => {
            // Enforcing: a shape the filter cannot verify passes only when the app
            // allows its signing id explicitly. Not enforcing: any, unless listed.
            let listed = settings.signing_ids.iter().any(|s| s == signing_id);
            let allowed =
                listed || (settings.signing_ids.is_empty() && !settings.enforce_signature);
            if !allowed {
                // Enforcing with no allow-list: nothing unverifiable is accepted.
                let reason = if settings.signing_ids.is_empty() {
                    Reason::Unverifiable
                } else {
                    Reason::SigningIdNotAllowed
                };
                return reject(d, reason, None);
            }
            match settings.later_sdk {
                LaterSdk::Pass => {
                    d.counters
                        .push(Counter::Signature(SigCounter::UnverifiablePassed));
                    d.signature =
                        Some(SigNote::UnverifiablePassed(log_safe(signing_id.as_bytes())));
                    d
                }
                LaterSdk::Flag => signature_rejected(policy, d, Reason::Unverifiable, None, true),
                LaterSdk::Reject => reject(d, Reason::Unverifiable, None),
            }
        }
        Some(Ok(Header::Legacy {
            secret_id,
            signature: sig,
            headers,
        })) => {
            // The SDK removes `secret_id` from what it sends; one that names another
            // Secret ID than the signature's is a second reading of which secret
            // signed (a collector's statistics would take it).
            let named = params.iter().find(|p| *p.name == *b"secret_id");
            if named.is_some_and(|p| !is_decimal_of(&p.value, secret_id)) {
                return reject(
                    d,
                    Reason::BadFormat(signature::Field::SecretId),
                    stat(Stat::InvalidSecret),
                );
            }
            let input = signature::Input {
                path: view.url_path(),
                client_sdk: view.header_values("client-sdk").next(),
                params: &params,
                now: clock.now(),
                max_age: settings.max_age,
                max_future: settings.max_future,
                require_device_id: settings.require_device_id,
                min_sdk_android: settings.min_sdk_android,
                min_sdk_ios: settings.min_sdk_ios,
            };
            let known = settings.secrets.iter().any(|s| s.id == secret_id);
            // A request naming an unknown Secret ID is an "Invalid Secret"; any other
            // failure counts against the secret it names.
            let failed_stat = |_: Reason| {
                if known {
                    stat(Stat::Rejected(secret_id))
                } else {
                    stat(Stat::InvalidSecret)
                }
            };
            match signature::verify(&settings.secrets, secret_id, &sig, &headers, &input) {
                Err(f) => reject(d, f.reason, failed_stat(f.reason)),
                Ok(v) => {
                    let accept_stat = stat(Stat::Accepted(secret_id));
                    d.stats.extend(accept_stat);
                    d.signature = Some(SigNote::Verified(secret_id));
                    if !settings.replay_enabled {
                        d.counters.push(Counter::Signature(SigCounter::Verified));
                        if v.without_device_id {
                            d.counters
                                .push(Counter::Signature(SigCounter::VerifiedWithoutDeviceId));
                        }
                        return d;
                    }
                    // Verified against this secret: it exists.
                    let Some(secret) = settings.secrets.iter().find(|s| s.id == v.secret_id) else {
                        return reject(
                            d,
                            Reason::InvalidSignature,
                            failed_stat(Reason::InvalidSignature),
                        );
                    };
                    d.replay = Some(PendingReplay {
                        check: replay::check(
                            &secret.replay_tag,
                            secret.replay_per_key,
                            secret.replay_window,
                            &v.signature,
                            v.created_at,
                            clock.now(),
                        ),
                        full_rejects: settings.replay_full_rejects,
                        reject_stat: stat(Stat::Rejected(secret_id)),
                        accept_stat,
                        without_device_id: v.without_device_id,
                    });
                    d
                }
            }
        }
    }
}

/// Longest attacker-influenced value copied into a log line.
pub const LOG_VALUE_MAX: usize = 64;

/// A value for a log line: printable ASCII kept, anything else (control characters,
/// quotes, backslash, `=`, space, bytes beyond ASCII) as `\xNN`, cut at
/// [`LOG_VALUE_MAX`] bytes with `...`. An attacker cannot forge a field or a line.
pub fn log_safe(v: &[u8]) -> String {
    escape(v, LOG_VALUE_MAX, false)
}

fn escape(v: &[u8], max: usize, space_and_eq: bool) -> String {
    let mut out = String::with_capacity(v.len().min(max) + 3);
    for &b in v.iter().take(max) {
        let plain = b.is_ascii_graphic() && !matches!(b, b'"' | b'\\' | b'=' | b'\'');
        // The second pass over a string built from escaped values keeps their
        // escapes (backslashes) and the words' spaces and `=`.
        if plain || (space_and_eq && matches!(b, b' ' | b'=' | b'\\')) {
            out.push(b as char);
        } else {
            out.push_str(&format!("\\x{b:02x}"));
        }
    }
    if v.len() > max {
        out.push_str("...");
    }
    out
}

/// What the SDK signature check found: kept as data on every signed request and
/// worded only for a log line or a flag reason.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SigNote {
    /// Verified with this Secret ID.
    Verified(u32),
    /// The app has no signature settings.
    UnconfiguredApp,
    /// No signature, and the app does not enforce them.
    NoSignature,
    /// A later signature shape passed unverified (the signing id, escaped for logs).
    UnverifiablePassed(String),
    /// Refused (or flagged) for this reason.
    Rejected(Reason),
}

impl SigNote {
    /// `verified secret_id=1`, `unconfigured_app`, a reason's name...
    pub fn text(&self) -> String {
        match self {
            SigNote::Verified(id) => format!("verified secret_id={id}"),
            SigNote::UnconfiguredApp => "unconfigured_app".into(),
            SigNote::NoSignature => "no_signature".into(),
            SigNote::UnverifiablePassed(id) => format!("unverifiable_passed signing_id={id}"),
            SigNote::Rejected(r) => r.name(),
        }
    }
}

/// The log line for a decision; `None` for a plain allowed request (not logged).
pub fn log_line(d: &Decision) -> Option<String> {
    let plain = matches!(d.signature, None | Some(SigNote::Verified(_)));
    if d.outcome == Outcome::Allowed && d.enforcement == Enforcement::Enforced && plain {
        return None;
    }
    let field = |v: Option<&str>| v.map_or("-".to_string(), |s| log_safe(s.as_bytes()));
    // A refused signature logs the outcome it is counted as, not the token's.
    let outcome = match (d.outcome, &d.signature) {
        (Outcome::Allowed, Some(SigNote::Rejected(r))) => signature_outcome(*r),
        (o, _) => o,
    };
    let mut line = format!(
        "s2s-guard: {} route={} token_id={} credential_fp={} signature={} enforcement={:?}",
        outcome.name(),
        field(d.route.as_deref()),
        field(d.token_id.as_deref()),
        field(d.fingerprint.as_deref()),
        // Built from fixed words and escaped values; escaped again, keeping its spaces.
        d.signature.as_ref().map_or("-".to_string(), |s| escape(
            s.text().as_bytes(),
            2 * LOG_VALUE_MAX,
            true
        )),
        d.enforcement
    );
    if let Some(a) = &d.ambiguity {
        line.push_str(&format!(
            " reading={} field={}",
            a.class.name(),
            log_safe(&a.field)
        ));
    }
    Some(line)
}

/// Completes a decision that verified a signature, with the replay memory's answer.
pub fn settle_replay(policy: &Policy, mut d: Decision, result: ReplayResult) -> Decision {
    let Some(pending) = d.replay.take() else {
        return d;
    };
    if pending.without_device_id
        && (result == ReplayResult::Recorded
            || !pending.full_rejects && result == ReplayResult::Full)
    {
        d.counters
            .push(Counter::Signature(SigCounter::VerifiedWithoutDeviceId));
    }
    match result {
        ReplayResult::Recorded => {
            d.counters.push(Counter::Signature(SigCounter::Verified));
            d
        }
        ReplayResult::Full if !pending.full_rejects => {
            d.counters.push(Counter::Signature(SigCounter::Verified));
            d.counters
                .push(Counter::Signature(SigCounter::ReplayFullAccepted));
            d
        }
        ReplayResult::Seen | ReplayResult::Full => {
            // Not accepted after all (the decision's other series stay).
            if let Some(i) = pending
                .accept_stat
                .and_then(|a| d.stats.iter().rposition(|s| *s == a))
            {
                d.stats.remove(i);
            }
            let reason = if result == ReplayResult::Seen {
                Reason::Replayed
            } else {
                Reason::ReplayMemoryFull
            };
            signature_rejected(policy, d, reason, pending.reject_stat, false)
        }
    }
}

/// Is any parameter name given twice? Names are compared only when a cheap
/// fingerprint (length, first and last byte) repeats: an SDK body has two dozen
/// parameters, and comparing every pair cost more than verifying the signature.
fn has_duplicate_name(params: &[&Param]) -> bool {
    let mut seen = 0u64;
    params.iter().enumerate().any(|(i, p)| {
        let n: &[u8] = &p.name;
        let print = n.len()
            ^ (usize::from(n.first().copied().unwrap_or(0)) << 1)
            ^ (usize::from(n.last().copied().unwrap_or(0)) << 3);
        let bit = 1u64 << (print % 64);
        let again = seen & bit != 0 && params[..i].iter().any(|q| q.name == p.name);
        seen |= bit;
        again
    })
}

/// Is `value` the decimal spelling of `n` (no sign, no leading zero)?
fn is_decimal_of(value: &[u8], n: u32) -> bool {
    let mut digits = [0u8; 10];
    let mut at = digits.len();
    let mut rest = n;
    loop {
        at -= 1;
        digits[at] = b'0' + (rest % 10) as u8;
        rest /= 10;
        if rest == 0 {
            break;
        }
    }
    digits.get(at..) == Some(value)
}

/// A signature rejection: the configured answer (which never says which check
/// failed), or forwarded with the reason in `flag` mode (or when the app's policy
/// flags), or untouched in `dry_run`.
fn signature_rejected(
    policy: &Policy,
    mut d: Decision,
    reason: Reason,
    stat: Option<usize>,
    flag_only: bool,
) -> Decision {
    d.stats.extend(stat);
    d.signature = Some(SigNote::Rejected(reason));
    recount(policy, &mut d, signature_outcome(reason));
    d.counters
        .push(Counter::Signature(SigCounter::Reason(reason)));
    let Action::Forward(mut forward) =
        std::mem::replace(&mut d.action, Action::Forward(Forward::default()))
    else {
        return d;
    };
    forward
        .set_headers
        .retain(|(h, _)| *h != policy.headers.reason);
    match (policy.mode, flag_only) {
        (Mode::Enforce, false) => {
            let r = &policy.signature_reply;
            d.counters.push(Counter::SignatureRejected);
            d.counters
                .push(Counter::Rejected(signature_outcome(reason)));
            d.enforcement = Enforcement::Enforced;
            d.action = Action::Respond(Respond {
                status: r.status,
                body: r.body.clone(),
                content_type: Some(r.content_type.clone()),
                headers: Vec::new(),
            });
        }
        (Mode::DryRun, _) => {
            d.counters.push(Counter::SignatureFlagged);
            d.counters.push(Counter::Flagged(signature_outcome(reason)));
            d.enforcement = Enforcement::DryRun;
            d.action = Action::Forward(forward);
        }
        _ => {
            d.counters.push(Counter::SignatureFlagged);
            d.counters.push(Counter::Flagged(signature_outcome(reason)));
            d.enforcement = Enforcement::Flagged;
            forward
                .set_headers
                .push((policy.headers.reason.clone(), reason.name().into_bytes()));
            d.action = Action::Forward(forward);
        }
    }
    d
}

/// The outcome a refused signature counts as in `requests` and
/// `requests_by_route`, and logs as: `missing` without one, `wrong` for any other
/// reason (the reason itself is in `signature.outcome.*` and the log line).
pub fn signature_outcome(reason: Reason) -> Outcome {
    match reason {
        Reason::MissingSignature => Outcome::Missing,
        _ => Outcome::Wrong,
    }
}

/// Moves a decision counted `allowed` (its credential passed) to `to`, in both
/// the scope and the route series.
fn recount(policy: &Policy, d: &mut Decision, to: Outcome) {
    for c in d.counters.iter_mut() {
        if let Counter::Requests(o @ Outcome::Allowed, _) = c {
            *o = to;
        }
    }
    let route = (d.route.as_ref()).and_then(|n| policy.routes.iter().find(|r| r.name == *n));
    let (from, to) = (
        policy.route_stat(route, Outcome::Allowed),
        policy.route_stat(route, to),
    );
    if let Some(s) = d.stats.iter_mut().find(|s| **s == from) {
        *s = to;
    }
}

/// The reason a forwarded request was flagged with, if it was.
pub fn flag_reason(d: &Decision) -> Option<String> {
    match d.enforcement {
        Enforcement::Flagged => Some(
            (d.signature.as_ref())
                .filter(|_| d.outcome == Outcome::Allowed)
                .map_or_else(|| d.outcome.name().to_string(), SigNote::text),
        ),
        _ => None,
    }
}

/// The body to forward after a decision taken at the end of a form body: the
/// credential removed, every client-sent copy of the `s2s_guard_rejection` field
/// removed (any spelling a stack reads as it), and, when the headers already went
/// upstream (`headers_held` false), the flag reason as that field, first.
/// `None`: the body is unchanged.
pub fn final_body(d: &Decision, body: &[u8], headers_held: bool) -> Option<Vec<u8>> {
    let Action::Forward(f) = &d.action else {
        return None;
    };
    // What the decision forwards: the body less any credential it stripped.
    let base: &[u8] = f.body.as_deref().unwrap_or(body);
    let spans = if d.body_marker_free {
        Vec::new()
    } else {
        flag_field_spans(base)
    };
    let reason = flag_reason(d).filter(|_| !headers_held);
    if spans.is_empty() && reason.is_none() {
        return f.body.clone();
    }
    let rest = request::remove_spans(base, &spans);
    let Some(r) = reason else {
        return Some(rest);
    };
    // First, so that a collector that keeps only the first N fields (PHP's
    // max_input_vars) still sees it.
    let mut out = Vec::with_capacity(FLAG_FIELD.len() + r.len() + 2 + rest.len());
    out.extend_from_slice(FLAG_FIELD.as_bytes());
    out.push(b'=');
    out.extend_from_slice(r.as_bytes());
    if !rest.is_empty() {
        out.push(b'&');
        out.extend_from_slice(&rest);
    }
    Some(out)
}

/// The form field that carries the flag reason when headers cannot.
pub const FLAG_FIELD: &str = "s2s_guard_rejection";

/// The origin a CORS answer may name: the request's only `Origin` (two are no
/// browser's, and the first may be one the token does not allow).
fn reflected_origin(view: &RequestView) -> Option<&[u8]> {
    let mut all = view.header_values("origin");
    all.next().filter(|_| all.next().is_none())
}

/// The profile's local answer to an outcome.
fn respond(
    policy: &Policy,
    profile: usize,
    outcome: Outcome,
    cors_origin: Option<&[u8]>,
    mut d: Decision,
) -> Decision {
    let reply = policy.profiles[profile].reply(outcome);
    let mut headers = Vec::new();
    if let Some(o) = cors_origin {
        headers.push(("access-control-allow-origin".into(), o.to_vec()));
        headers.push(("vary".into(), b"origin".to_vec()));
    }
    d.enforcement = Enforcement::Enforced;
    d.counters.push(Counter::Rejected(outcome));
    d.action = Action::Respond(Respond {
        status: reply.status,
        body: reply.body.clone(),
        content_type: Some(reply.content_type.clone()),
        headers,
    });
    d
}

fn apply_mode(
    policy: &Policy,
    profile: usize,
    outcome: Outcome,
    mut forward: Forward,
    cors_origin: Option<&[u8]>,
    mut d: Decision,
) -> Decision {
    match policy.mode {
        Mode::Enforce => return respond(policy, profile, outcome, cors_origin, d),
        Mode::Flag => {
            d.enforcement = Enforcement::Flagged;
            d.counters.push(Counter::Flagged(outcome));
            forward.set_headers.push((
                policy.headers.reason.clone(),
                outcome.name().as_bytes().to_vec(),
            ));
            d.action = Action::Forward(forward);
        }
        Mode::DryRun => {
            d.enforcement = Enforcement::DryRun;
            d.counters.push(Counter::Flagged(outcome));
            // Untouched, except that headers only the filter may set are never
            // passed on from a client.
            d.action = Action::Forward(Forward {
                remove_headers: forward
                    .remove_headers
                    .into_iter()
                    .filter(|h| {
                        owned_headers(policy)
                            .iter()
                            .any(|o| reading::folds_onto(h, o))
                    })
                    .collect(),
                ..Forward::default()
            });
        }
    }
    d
}

fn unknown_path(policy: &Policy, view: &RequestView) -> Decision {
    let forward = Forward {
        remove_headers: owned_headers_in(policy, view),
        ..Forward::default()
    };
    let d = Decision::new(Outcome::UnknownEndpoint);
    if !policy.reject_unknown_paths {
        return Decision {
            outcome: Outcome::Allowed,
            action: Action::Forward(forward),
            counters: smallvec![Counter::Unmatched],
            ..d
        };
    }
    let mut d = d;
    count_decision(policy, &mut d, None, Outcome::UnknownEndpoint);
    apply_mode(
        policy,
        policy.unknown_profile,
        Outcome::UnknownEndpoint,
        forward,
        None,
        d,
    )
}

fn preflight(route: &Route, view: &RequestView) -> Decision {
    let origin = reflected_origin(view).unwrap_or(b"*").to_vec();
    Decision {
        action: Action::Respond(Respond {
            status: 204,
            body: std::rc::Rc::from(&[][..]),
            content_type: None,
            headers: vec![
                ("access-control-allow-origin".into(), origin),
                (
                    "access-control-allow-methods".into(),
                    b"GET, POST, OPTIONS".to_vec(),
                ),
                (
                    "access-control-allow-headers".into(),
                    b"content-type, x-auth-token, api_key, authorization".to_vec(),
                ),
                ("access-control-max-age".into(), b"86400".to_vec()),
                ("vary".into(), b"origin".to_vec()),
            ],
        }),
        route: Some(route.name.clone()),
        scope: route.scope,
        counters: smallvec![Counter::Preflight],
        ..Decision::new(Outcome::Allowed)
    }
}

/// The request's value of a parameter from query or form; `None` if absent, empty
/// or given with two different values.
fn single_param<'p>(
    name: &Option<Vec<u8>>,
    query: &'p [Param<'p>],
    form: Option<&'p [Param<'p>]>,
) -> Option<&'p [u8]> {
    let name = name.as_deref()?;
    let mut values = query
        .iter()
        .chain(form.unwrap_or_default())
        .filter(|p| *p.name == *name)
        .map(|p| &*p.value);
    let first = values.next()?;
    if first.is_empty() || values.any(|v| v != first) {
        return None;
    }
    Some(first)
}

fn required_present(route: &Route, query: &[Param], form: Option<&[Param]>) -> bool {
    route.required.iter().all(|r| {
        query
            .iter()
            .chain(form.unwrap_or_default())
            .any(|p| *p.name == *r.name && (r.allow_empty || !p.value.is_empty()))
    })
}

fn origin_allowed(t: token::TokenRef, origin: Option<&[u8]>) -> bool {
    // No Origin header: not a browser request; origins restrict browsers only.
    let Some(origin) = origin else { return true };
    match token::origin_host(origin) {
        Some(host) => t.origins.iter().any(|r| r.matches(&host)),
        None => false,
    }
}

/// Is authentication switched on for the request's app on this endpoint?
/// Is `app` (not a configured app) one a numeric lookup may read as a configured
/// app named by a number? PHP's `==`, `(int)` and `intval($v, 0)`, JavaScript's
/// `Number`, Python's `int(v, 0)` and `float`, Go's `ParseInt(v, 0, 64)` and
/// `ParseFloat`, SQLite and MySQL read `042`, `+42`, `42.0`, `4.2e1`, `0x2A`,
/// `0o52`, `0b101010`, `0x1.5p5`, `41.9999999999999999`, `4_2`, `42abc`, `42xyz`
/// or sixty zeros and `42` as 42. So, with any app named by a number, an unknown
/// app is refused unless it is a plain decimal (`43`: another app) that is no
/// configured app's value (`7` beside a configured `007`).
fn numeric_alias(policy: &Policy, app: &[u8]) -> bool {
    let Some(values) = &policy.numeric_apps else {
        return false;
    };
    let plain_decimal =
        !app.is_empty() && app.iter().all(u8::is_ascii_digit) && (app[0] != b'0' || app.len() == 1);
    if plain_decimal {
        // Below 2^32 every reading of a plain decimal is its value. From 2^32 on,
        // code cuts it to 32 or 64 bits (`v|0` in JavaScript, C's `atoi`, Java's
        // `(int)`, Go's `int32()`: 4294967338 is 42), rounds it to a double first
        // (JavaScript: 36028801313932265 is 1000 after `|0`) or saturates it: too
        // many readings to follow, and no app a route counts on to be another is
        // that large beside apps named by small numbers. Refused unless it is one
        // of the configured apps' values.
        let mut value = 0u64;
        for &d in app {
            let Some(v) = value
                .checked_mul(10)
                .and_then(|v| v.checked_add(u64::from(d - b'0')))
            else {
                return true;
            };
            value = v;
        }
        return values.contains(&value) || value >= 1 << 32;
    }
    // Text that is no number is 0 to `v|0`, C's `atoi`, PHP's `(int)` and SQL
    // casts (`NaN`, `Infinity`, `abc`, an empty value): with an app 0, any.
    if values.contains(&0) {
        return true;
    }
    // In the characters of a numeric literal, or starting as a number (`(int)`
    // and SQL casts read the leading number of any text).
    let literal = app.iter().any(u8::is_ascii_digit)
        && app
            .iter()
            .all(|&b| b.is_ascii_hexdigit() || b"xXoObBpP.+-_ \t".contains(&b));
    let lead = app
        .iter()
        .find(|&&b| !b" \t+-.".contains(&b))
        .is_some_and(u8::is_ascii_digit);
    literal || lead
}

fn app_enforced(policy: &Policy, route: &Route, app: Option<&[u8]>) -> bool {
    let settings = app
        .and_then(|a| std::str::from_utf8(a).ok())
        .and_then(|a| policy.apps.get(a));
    match settings {
        None => policy.app_authentication_default,
        Some(s) => {
            s.authentication
                && match (s.authentication_scopes, route.scope) {
                    (Some(scopes), Some(scope)) => scopes.contains(scope),
                    _ => true,
                }
        }
    }
}

/// Removes the credential from every place it was found.
fn strip(
    policy: &Policy,
    forward: &mut Forward,
    view: &RequestView,
    body: Option<&[u8]>,
    locations: &[Location],
) {
    let mut query_spans = Vec::new();
    let mut form_spans = Vec::new();
    for loc in locations {
        match loc {
            Location::Authorization | Location::Header(_) => {
                let h = match loc {
                    Location::Header(h) => h,
                    _ => &policy.headers.authorization,
                };
                if !forward.remove_headers.contains(h) {
                    forward.remove_headers.push(h.clone());
                }
            }
            Location::Query(span) => query_spans.push(*span),
            Location::Form(span) => form_spans.push(*span),
        }
    }
    if !query_spans.is_empty() {
        let query = request::remove_spans(view.raw_query(), &query_spans);
        let mut path = view.url_path().to_vec();
        if !query.is_empty() {
            path.push(b'?');
            path.extend_from_slice(&query);
        }
        forward.path = Some(path);
    }
    if let (false, Some(body)) = (form_spans.is_empty(), body) {
        forward.body = Some(request::remove_spans(body, &form_spans));
    }
}

#[cfg(test)]
mod clock_tests {
    use super::*;
    use std::cell::Cell;

    fn bearer(token: &str) -> RequestView {
        RequestView::from_headers(vec![
            (":method".into(), b"POST".to_vec()),
            (
                ":path".into(),
                b"/event?s2s=1&app_token=abc123abc123".to_vec(),
            ),
            (
                "authorization".into(),
                format!("Bearer {token}").into_bytes(),
            ),
        ])
    }

    #[test]
    fn the_clock_is_read_only_by_a_check_that_needs_it_and_then_once() {
        let digest = |t: &str| {
            use sha2::Digest;
            hex::encode(sha2::Sha256::digest(t.as_bytes()))
        };
        let config = format!(
            r#"{{"presets": ["adjust"], "tokens": [
                {{"id": "plain", "realm": "adjust", "app": "abc123abc123", "sha256": "{}", "scopes": ["events"]}},
                {{"id": "windowed", "realm": "adjust", "app": "abc123abc123", "sha256": "{}", "scopes": ["events"],
                  "not_before": "2020-01-01T00:00:00Z", "expires_at": "2040-01-01T00:00:00Z"}}]}}"#,
            digest("plain-token"),
            digest("windowed-token"),
        );
        let policy = crate::config::parse(config.as_bytes()).expect("config");
        let reads = Cell::new(0);
        let read = || {
            reads.set(reads.get() + 1);
            1_900_000_000
        };
        for (token, want_reads, outcome) in [
            ("plain-token", 0, Outcome::Allowed),
            ("nobody", 0, Outcome::Wrong),
            ("windowed-token", 1, Outcome::Allowed),
        ] {
            reads.set(0);
            let clock = Clock::new(&read);
            let d = decide_with(&policy, &policy.tokens, &bearer(token), None, &clock);
            assert_eq!((d.outcome, reads.get()), (outcome, want_reads), "{token}");
        }
    }
}

#[cfg(test)]
mod reading_budget_tests {
    use super::*;

    fn policy() -> Policy {
        crate::config::parse(
            br#"{"presets": ["adjust", "jitsu"], "routes": [{"path": "/ingest", "match": "prefix",
                "realm": "jitsu", "profile": "jitsu", "credentials": ["query:token"], "body": "ignore"}]}"#,
        )
        .expect("config")
    }

    /// `Ok(true)`: an unknown path, passed as it is.
    fn target(policy: &Policy, path: &str) -> Result<bool, PathError> {
        let readings = Readings::new(policy, b"GET");
        resolve_target(&readings, path.as_bytes()).map(|r| r.routing == Routing::Unknown)
    }

    #[test]
    fn a_path_whose_readings_exceed_the_budget_is_too_complex() {
        let p = policy();
        let tails = format!("/zzz{}", "/a.php".repeat(20_000));
        assert_eq!(target(&p, &tails), Err(PathError::TooComplex));
        let features = format!(
            "/zzz{}",
            "/s\\x;y%u0061b%2Fc%2541d%zz..e/f.json".repeat(2_000)
        );
        assert!(target(&p, &features).is_err());
        // Within the budget, the same shapes are unknown paths (two scripts'
        // readings are combined: a few scripts, not twenty).
        assert_eq!(target(&p, &format!("/zzz{}", "/a.php".repeat(6))), Ok(true));
        assert_eq!(
            target(&p, &format!("/zzz{}", "/a.php".repeat(20))),
            Err(PathError::TooComplex)
        );
        assert_eq!(
            target(&p, "/zzz/s\\x;y%u0061b%2Fc%2541d%zz..e/f.json"),
            Ok(true)
        );
    }

    #[test]
    fn every_reading_between_the_literal_and_the_lenient_one_is_routed() {
        let p = policy();
        for path in [
            "/ingest/..;/x",
            "/ingest/x/..;/..;/y",
            "/ingest/%u002e%u002e/x",
            "/ingest/%252e%252e/x",
            "/ingest/web\\..\\..",
            "/%u0069ngest/..;/x",
            "/api.x\\..",
            "/api.x%u005c..",
        ] {
            // Refused by a reading (or, decoded twice as Apache's rewrite does, as
            // the escape it is).
            assert!(
                matches!(
                    target(&p, path),
                    Err(PathError::OtherReading | PathError::BadEscape)
                ),
                "{path}: {:?}",
                target(&p, path)
            );
        }
    }
}

#[cfg(test)]
mod signature_param_tests {
    use super::*;

    #[test]
    fn a_secret_id_parameter_names_the_signature_s_only_in_its_own_spelling() {
        for (value, n, same) in [
            ("2", 2, true),
            ("02", 2, false),
            ("+2", 2, false),
            ("2 ", 2, false),
            ("", 2, false),
            ("0", 0, true),
            ("10", 10, true),
            ("1", 10, false),
            ("4294967295", u32::MAX, true),
            ("4294967296", u32::MAX, false),
        ] {
            assert_eq!(is_decimal_of(value.as_bytes(), n), same, "{value} {n}");
            assert_eq!(n.to_string() == value, same);
        }
    }

    #[test]
    fn duplicate_names_are_found_as_by_comparing_every_pair() {
        let names = [
            "a",
            "b",
            "ab",
            "ba",
            "aa",
            "created_at",
            "cxeated_at",
            "gps_adid",
            "gps%5Fadid",
            "x",
            "",
            "source",
            "s2s",
            "app_token",
            "environment",
            "zz",
            "dz",
        ];
        let mut x = 0x2545_f491_4f6c_dd1du64;
        let mut next = move || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        for _ in 0..20_000 {
            let n = (next() % 12) as usize;
            let raw: Vec<String> = (0..n)
                .map(|_| format!("{}=1", names[(next() % names.len() as u64) as usize]))
                .collect();
            let raw = raw.join("&");
            let parsed = crate::request::parse_params(raw.as_bytes());
            let params: Vec<&Param> = parsed.iter().collect();
            let naive = params
                .iter()
                .enumerate()
                .any(|(i, p)| params[..i].iter().any(|q| q.name == p.name));
            assert_eq!(has_duplicate_name(&params), naive, "{raw}");
        }
    }
}

#[cfg(test)]
mod log_tests {
    use super::*;

    #[test]
    fn script_readings_follow_each_segment_naming_a_file() {
        let readings = |p: &str| -> Vec<String> {
            let mut out = Vec::new();
            script_readings(p.as_bytes(), &mut |t| {
                out.push(String::from_utf8_lossy(t).into_owned());
                false
            });
            out
        };
        assert_eq!(readings("/a.php/b.cgi/c"), ["/b.cgi/c", "/c", "/a.php/c"]);
        assert_eq!(readings("/index.php//event"), ["//event"]);
        assert_eq!(readings("/index.php/"), ["/"]);
        assert_eq!(
            readings("/api/index.php/v1/event"),
            ["/v1/event", "/api/v1/event"]
        );
        assert_eq!(readings("/api/index.php"), ["/api"]);
        assert_eq!(readings("/event/Default.aspx"), ["/event"]);
        assert_eq!(
            readings("/cgi-bin/collect/event"),
            ["/event", "/cgi-bin/event"]
        );
        assert_eq!(readings("/x/nph-run/session"), ["/session", "/x/session"]);
        assert!(readings("/event").is_empty());
        assert!(readings("/api.dcvw").is_empty());
        assert!(readings("/x/../y/./z").is_empty());
        assert!(readings("").is_empty());
        // Stopped at the first reading `visit` accepts.
        let mut seen = 0;
        assert!(script_readings(b"/a.php/b.php/c.php/d", &mut |_| {
            seen += 1;
            seen == 2
        }));
        assert_eq!(seen, 2);
    }

    #[test]
    fn scripts_and_default_actions() {
        for seg in [
            "index.php",
            "App.PHP",
            "a.php5",
            "x.php.bak",
            "run.cgi",
            "Svc.svc",
            "index.cfm",
            "a.HTML",
        ] {
            assert!(names_script(seg.as_bytes()), "{seg}");
        }
        for seg in [
            "acme.com",
            "v1.2",
            "john.doe",
            "track.gif",
            "app.min.js",
            "php",
            ".",
            "..",
            "a.phpx",
        ] {
            assert!(!names_script(seg.as_bytes()), "{seg}");
        }
        assert_eq!(glued_to_php(b"index.phpevent"), Some(&b"event"[..]));
        assert_eq!(glued_to_php(b"App.PHP5x"), Some(&b"x"[..]));
        assert_eq!(glued_to_php(b"index.php"), None);
        assert_eq!(glued_to_php(b"index.php.bak"), None);
        assert_eq!(glued_to_php(b"acme.com"), None);
        let cuts = |p: &str| {
            let mut out = Vec::new();
            index_cuts(p.as_bytes(), &mut |t| {
                out.push(String::from_utf8_lossy(t).into_owned());
                false
            });
            out
        };
        assert_eq!(cuts("/postback/index"), ["/postback"]);
        assert_eq!(
            cuts("/v1/Ops/INDEX/x/index"),
            ["/v1/Ops", "/v1/Ops/INDEX/x"]
        );
        assert_eq!(cuts("/index"), ["/"]);
        assert!(cuts("/indexes/a").is_empty());
        assert!(cuts("/event").is_empty());
    }

    #[test]
    fn logged_values_cannot_forge_fields_or_lines() {
        assert_eq!(log_safe(b"abc-1_2"), "abc-1_2");
        assert_eq!(
            log_safe(b"a b=c\"\n\\'"),
            "a\\x20b\\x3dc\\x22\\x0a\\x5c\\x27"
        );
        assert_eq!(log_safe("é".as_bytes()), "\\xc3\\xa9");
        let long = log_safe(&[b'A'; 100]);
        assert_eq!(long.len(), LOG_VALUE_MAX + 3);
        assert!(long.ends_with("..."));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_marker_prefilter_agrees_with_decoding_the_whole_text() {
        // Decoded in one pass as classic ASP.NET does: `%uXXXX` (to its ASCII
        // character, or none), `%XX`, `+`.
        let reference = |raw: &[u8]| {
            let mut d = Vec::new();
            let mut i = 0;
            let hex = |s: &[u8]| {
                std::str::from_utf8(s)
                    .ok()
                    .filter(|t| t.bytes().all(|b| b.is_ascii_hexdigit()))
                    .and_then(|t| u32::from_str_radix(t, 16).ok())
            };
            while i < raw.len() {
                if raw[i] == b'%' && raw.get(i + 1).is_some_and(|u| u | 0x20 == b'u') {
                    if let Some(c) = raw.get(i + 2..i + 6).and_then(hex) {
                        d.push(u8::try_from(c).unwrap_or(0));
                        i += 6;
                        continue;
                    }
                }
                if raw[i] == b'%' {
                    if let Some(c) = raw.get(i + 1..i + 3).and_then(hex) {
                        d.push(c as u8);
                        i += 3;
                        continue;
                    }
                }
                d.push(if raw[i] == b'+' { b' ' } else { raw[i] });
                i += 1;
            }
            d.to_ascii_lowercase().windows(9).any(|w| w == b"rejection")
        };
        let mut cases: Vec<Vec<u8>> = vec![
            b"".to_vec(),
            b"s2s_guard_rejection=1".to_vec(),
            b"a=1&S2S_GUARD_REJECTION=x".to_vec(),
            b"%72ejection".to_vec(),
            b"%2572ejection".to_vec(),
            b"rrejection".to_vec(),
            b"rejectio".to_vec(),
            b"reje%63tion%".to_vec(),
            b"reje%6".to_vec(),
            b"rej+ection".to_vec(),
            b"x=%52%45%4a%45%43%54%49%4f%4e".to_vec(),
            b"s2s_guard_%u0072ejection=".to_vec(),
            b"s2s_guard_reje%U0063tion=".to_vec(),
            b"s2s_guard_re%u006Aection=".to_vec(),
            b"s2s_guard_re%u016Aection=".to_vec(),
            b"s2s_guard_re%u00".to_vec(),
            b"%u%u0072ejection".to_vec(),
        ];
        // Every spelling of the word with each byte plain, escaped in either case.
        for mask in 0..512u32 {
            let mut c = b"a=1&".to_vec();
            for (i, b) in b"rejection".iter().enumerate() {
                if mask >> i & 1 == 1 {
                    c.extend_from_slice(format!("%{b:02X}").as_bytes());
                } else if mask == 511 - (1 << i) {
                    c.extend_from_slice(format!("%u00{b:02x}").as_bytes());
                } else {
                    c.push(b.to_ascii_uppercase());
                }
            }
            cases.push(c);
        }
        for c in cases {
            assert_eq!(might_hold_marker(&c), reference(&c), "{c:?}");
        }
    }
}
