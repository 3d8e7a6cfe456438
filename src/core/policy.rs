//! The compiled policy: validated configuration, immutable, shared by every request
//! of a worker through an `Rc`. Nothing in it is parsed per request.

use std::collections::HashMap;

use crate::signature::AppSecret;
use crate::token::{Kind, Scope, Scopes, TokenStore};

/// What happens to a request that fails a check.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Answer locally; the request never reaches the upstream.
    Enforce,
    /// Forward, with a header naming the reason (the collector tags the request).
    Flag,
    /// Forward untouched; only count.
    DryRun,
}

/// Every decision the filter takes. The order is the order of the counters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Outcome {
    Allowed,
    Missing,
    Wrong,
    Inactive,
    Expired,
    InsufficientScope,
    /// A client secret on a server endpoint.
    WrongKind,
    OriginDenied,
    BadRequest,
    UnknownEndpoint,
    Ambiguous,
    BodyTooLarge,
    /// A method the route does not list, on a protected path.
    MethodNotAllowed,
    /// A body the filter cannot read (media type or content coding).
    UnsupportedMediaType,
}

impl Outcome {
    pub const ALL: [Outcome; 14] = [
        Outcome::Allowed,
        Outcome::Missing,
        Outcome::Wrong,
        Outcome::Inactive,
        Outcome::Expired,
        Outcome::InsufficientScope,
        Outcome::WrongKind,
        Outcome::OriginDenied,
        Outcome::BadRequest,
        Outcome::UnknownEndpoint,
        Outcome::Ambiguous,
        Outcome::BodyTooLarge,
        Outcome::MethodNotAllowed,
        Outcome::UnsupportedMediaType,
    ];

    /// The name used in counters, logs and the flag header.
    pub fn name(self) -> &'static str {
        match self {
            Outcome::Allowed => "allowed",
            Outcome::Missing => "missing",
            Outcome::Wrong => "wrong",
            Outcome::Inactive => "inactive",
            Outcome::Expired => "expired",
            Outcome::InsufficientScope => "insufficient_scope",
            Outcome::WrongKind => "wrong_kind",
            Outcome::OriginDenied => "origin_denied",
            Outcome::BadRequest => "bad_request",
            Outcome::UnknownEndpoint => "unknown_endpoint",
            Outcome::Ambiguous => "ambiguous",
            Outcome::BodyTooLarge => "body_too_large",
            Outcome::MethodNotAllowed => "method_not_allowed",
            Outcome::UnsupportedMediaType => "unsupported_media_type",
        }
    }

    pub fn parse(s: &str) -> Option<Outcome> {
        Outcome::ALL.into_iter().find(|o| o.name() == s)
    }

    pub fn index(self) -> usize {
        self as usize
    }
}

/// How a route matches the request path (without the query).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PathMatch {
    Exact(Vec<u8>),
    Prefix(Vec<u8>),
}

impl PathMatch {
    pub fn matches(&self, path: &[u8]) -> bool {
        match self {
            PathMatch::Exact(p) => path == p.as_slice(),
            PathMatch::Prefix(p) => path.starts_with(p),
        }
    }

    /// [`PathMatch::matches`] as a stack that routes without regard to ASCII case
    /// or a trailing slash reads both paths (Express by default, ASP.NET, Spring
    /// MVC up to 5.3, Rails), whatever the configured path options say.
    pub fn matches_loosely(&self, path: &[u8]) -> bool {
        let trim = |p: &[u8]| -> usize {
            match p {
                [rest @ .., b'/'] if !rest.is_empty() => rest.len(),
                _ => p.len(),
            }
        };
        match self {
            PathMatch::Exact(p) => {
                let (a, b) = (&p[..trim(p)], &path[..trim(path)]);
                a.eq_ignore_ascii_case(b)
            }
            PathMatch::Prefix(p) => {
                let p = &p[..trim(p)];
                path.get(..p.len())
                    .is_some_and(|h| h.eq_ignore_ascii_case(p))
            }
        }
    }
}

/// Where a credential may be found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// `Authorization: Bearer <token>` (Adjust).
    Bearer,
    /// `Authorization: <token>` with no scheme (Swaarm).
    Authorization,
    /// `Authorization: Basic base64(user:pass)`: the user name is the token (Jitsu).
    Basic,
    /// A header holding only the token (`X-Auth-Token`, `api_key`).
    Header(Name),
    /// A query parameter (`s2s_token`, `token`).
    Query(Vec<u8>),
    /// The first query parameter whose name starts with this (`p_`, Jitsu).
    QueryPrefix(Vec<u8>),
    /// A field of an `application/x-www-form-urlencoded` POST body.
    Form(Vec<u8>),
}

impl Source {
    /// The configuration spelling, also used in logs.
    pub fn describe(&self) -> String {
        let s = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
        match self {
            Source::Bearer => "bearer".into(),
            Source::Authorization => "authorization".into(),
            Source::Basic => "basic".into(),
            Source::Header(h) => format!("header:{h}"),
            Source::Query(q) => format!("query:{}", s(q)),
            Source::QueryPrefix(p) => format!("query_prefix:{}", s(p)),
            Source::Form(f) => format!("form:{}", s(f)),
        }
    }
}

/// A parameter a route requires.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequiredParam {
    pub name: Vec<u8>,
    /// Present but empty is enough (Swaarm's `event_id=` on attribution calls).
    pub allow_empty: bool,
}

/// An endpoint and what it demands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    pub name: Name,
    pub path: PathMatch,
    /// Upper-case methods; empty means any.
    pub methods: Vec<Vec<u8>>,
    pub scope: Option<Scope>,
    pub accept_server: bool,
    pub accept_client: bool,
    pub profile: usize,
    pub required: Vec<RequiredParam>,
    /// Where the request names its app (`app_token`), in the query or form body.
    pub app_param: Option<Vec<u8>>,
    pub sources: Vec<Source>,
    /// Adjust: authentication only for apps that switched it on.
    pub per_app: bool,
    /// Browser endpoint: answer CORS preflights, set `Access-Control-Allow-Origin`.
    pub cors: bool,
    /// What the route checks: a token, an SDK signature, or both.
    pub checks: Checks,
    /// What the route's body is to the collector.
    pub body: BodyRule,
    /// The system or tenant the route belongs to: only its tokens open it.
    pub realm: String,
    /// Further parameters the collector decides on (Adjust's `s2s`): like every
    /// decision field, given at most once, spelt one way, with a clean value.
    pub single_params: Vec<Vec<u8>>,
    /// The fields the decision reads, derived from the above ([`Route::finish`]).
    pub fields: crate::reading::Fields,
    /// Where this route's decision series (one per [`Outcome`]) start in
    /// [`Policy::stat_names`]; set when the policy is compiled.
    pub stats_base: usize,
    /// The route's path as MVC routers reduce a controller name
    /// ([`crate::path::skeleton`]), derived by [`Route::finish`].
    pub skeleton: Vec<u8>,
}

/// What a route's request body is to the collector behind it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyRule {
    /// The collector may read parameters from a form body: the filter reads it
    /// completely and refuses any other media type or content coding.
    Form,
    /// The collector reads no parameters from the body (a JSON event API whose
    /// credential is in headers or query): the body is not read.
    Ignore,
}

/// The checks a route makes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Checks {
    Token,
    Signature,
    TokenAndSignature,
    /// Adjust endpoints shared by S2S and SDK traffic: a token when the request
    /// says `s2s=1`, a signature otherwise.
    S2sTokenElseSignature,
}

impl Route {
    /// Derives what the decision reads; called once the route is complete.
    /// Does a request on `other` need what a request on this route needs: the same
    /// realm, token kinds, scope, app binding, checks, methods, credential places,
    /// body rule and required and single parameters? Then a reading that lands on one instead of the other opens nothing
    /// the token did not open (`/pixel/track.gif` read as the `/pixel` prefix
    /// route beside it, with the same token).
    pub fn decides_like(&self, other: &Route) -> bool {
        self.realm == other.realm
            && self.scope == other.scope
            && self.accept_server == other.accept_server
            && self.accept_client == other.accept_client
            && self.app_param == other.app_param
            && self.per_app == other.per_app
            && self.checks == other.checks
            && self.methods == other.methods
            && self.sources == other.sources
            && self.body == other.body
            && self.required == other.required
            && self.single_params == other.single_params
    }

    pub fn finish(mut self) -> Route {
        self.fields = crate::reading::Fields::of(&self);
        let path = match &self.path {
            PathMatch::Exact(p) | PathMatch::Prefix(p) => p,
        };
        self.skeleton = crate::path::skeleton(path);
        self
    }

    /// Does a path's [`crate::path::skeleton`] name this route: the same segments,
    /// or (`under`, or a prefix route) these segments and more?
    pub fn skeleton_matches(&self, skeleton: &[u8], under: bool) -> bool {
        let own = &self.skeleton;
        let cut_mid_name = match &self.path {
            // A prefix that ends inside a segment's name (Jitsu's `/api.`): its
            // skeleton (`api`) would claim every `/api/...`.
            PathMatch::Prefix(p) => p
                .last()
                .is_some_and(|&b| b != b'/' && !b.is_ascii_alphanumeric()),
            PathMatch::Exact(_) => false,
        };
        if own.is_empty() || cut_mid_name {
            // A route at the root reduces to nothing: every path would match.
            return false;
        }
        let prefix = under || matches!(self.path, PathMatch::Prefix(_));
        skeleton == own.as_slice()
            || (prefix && skeleton.starts_with(own) && skeleton.get(own.len()) == Some(&b'/'))
    }
}

/// A local answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    pub status: u16,
    pub body: std::rc::Rc<[u8]>,
    pub content_type: Name,
}

/// Per-outcome answers: how one reference system talks to its clients.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Profile {
    pub name: String,
    /// Indexed by [`Outcome::index`]; the `Allowed` entry is unused.
    pub replies: Vec<Reply>,
}

impl Profile {
    pub fn reply(&self, outcome: Outcome) -> &Reply {
        &self.replies[outcome.index()]
    }
}

/// Adjust's per-app switch and its "authentication scopes".
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AppSettings {
    pub authentication: bool,
    /// Endpoints (by scope) that require authentication; `None`: all.
    pub authentication_scopes: Option<Scopes>,
    /// The app's shadow series in [`Policy::stat_names`] (the shared `other` one
    /// beyond `max_stats_apps`); set when the policy is compiled.
    pub shadow_stat: usize,
}

/// Platforms an app ships on (App Automation `platform`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AppPlatform {
    Ios,
    Android,
    Both,
}

/// What to do with signature shapes that cannot be verified here.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LaterSdk {
    Pass,
    Flag,
    Reject,
}

/// An app's SDK signature settings, its template already applied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignatureSettings {
    pub enforce_signature: bool,
    pub platform: AppPlatform,
    pub android_signature_hashes: Vec<String>,
    pub secrets: Vec<AppSecret>,
    /// Freshness window on `created_at`, seconds.
    pub max_age: u64,
    /// Clock skew tolerated for `created_at` in the future, seconds.
    pub max_future: u64,
    pub later_sdk: LaterSdk,
    /// Allowed signing ids of later shapes. Empty: any when not enforcing, none
    /// when enforcing.
    pub signing_ids: Vec<String>,
    /// Refuse signatures that cover no device id (default: accepted when the
    /// request carries none, as iOS sends without tracking consent).
    pub require_device_id: bool,
    /// Oldest SDK accepted per platform (major, minor): older `Client-SDK`s, or
    /// none, are refused (`sdk_too_old`).
    pub min_sdk_android: Option<(u32, u32)>,
    pub min_sdk_ios: Option<(u32, u32)>,
    /// Freshness window (max age + future skew) and replay capacity of this app.
    pub replay_window: u64,
    pub replay_capacity: usize,
    /// Remember accepted signatures (off only where something downstream dedups).
    pub replay_enabled: bool,
    /// When the replay memory is full: reject (true) or accept unrecorded (false).
    pub replay_full_rejects: bool,
    /// Where this app's statistics series start in `Policy::stat_names`.
    pub stats_base: usize,
    /// False for apps beyond `max_stats_apps`: they share the "other" series.
    pub own_series: bool,
}

/// An SDK signature statistic (Adjust's App Secret statistics).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stat {
    Accepted(u32),
    Rejected(u32),
    InvalidSecret,
    NoSecret,
}

impl SignatureSettings {
    /// The series a statistic goes to.
    pub fn stat_index(&self, stat: Stat) -> usize {
        if !self.own_series {
            // The shared "other" block: accepted, rejected, invalid, none.
            return match stat {
                Stat::Accepted(_) => 0,
                Stat::Rejected(_) => 1,
                Stat::InvalidSecret => 2,
                Stat::NoSecret => 3,
            };
        }
        let n = self.secrets.len();
        let pos = |id: u32| self.secrets.iter().position(|s| s.id == id);
        self.stats_base
            + match stat {
                Stat::Accepted(id) => pos(id).map_or(2 * n, |p| 2 * p),
                Stat::Rejected(id) => pos(id).map_or(2 * n, |p| 2 * p + 1),
                Stat::InvalidSecret => 2 * n,
                Stat::NoSecret => 2 * n + 1,
            }
    }
}

/// What an origin mismatch does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OriginMismatch {
    /// Answer 403 (the profile's `origin_denied` reply).
    Reject,
    /// Jitsu's behaviour: pass, but withhold `Access-Control-Allow-Origin`.
    OmitCors,
}

/// Upstream headers the filter owns: always removed from the client's request,
/// set only from verified data.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UpstreamHeaders {
    pub token_id: Name,
    pub app: Name,
    pub reason: Name,
    /// `authorization`, the credential header several sources read (stripped).
    pub authorization: Name,
}

/// A header or route name the policy hands to every decision: shared, so that a
/// decision names it without a copy.
pub type Name = std::rc::Rc<str>;

/// Who fetches from the token source.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// The filter's root contexts elect one fetcher per proxy with a lease (Istio).
    Auto,
    /// This VM fetches (an Envoy singleton bootstrap service with the same `vm_id`).
    Fetcher,
    /// This VM only reads what a singleton publishes.
    Reader,
}

/// The `token_source` configuration: where live token sets come from.
#[derive(Clone, PartialEq, Eq)]
pub struct TokenSource {
    /// Shared data namespace, so several plugins in one proxy (Istio) do not collide.
    pub name: String,
    pub cluster: String,
    pub path: String,
    pub authority: String,
    /// Extra request headers (an auth token for the source). Never logged.
    pub headers: Vec<(String, String)>,
    pub period_ms: u64,
    pub timeout_ms: u64,
    pub max_bytes: usize,
    /// HMAC-SHA256 key for bundle signatures (`x-s2s-guard-bundle-signature`).
    pub bundle_key: Option<Vec<u8>>,
    /// Age of the last confirmed set after which the set is stale.
    pub stale_after_ms: Option<u64>,
    /// Stale: answer 503 (true) or keep serving the last set (false).
    pub stale_rejects: bool,
    /// Before the first set: serve the inline tokens (true) or answer 503 (false).
    pub before_first_inline: bool,
    pub role: Role,
    /// `Retry-After` seconds on a 503.
    pub retry_after_s: u64,
    /// Large sets: workers look tokens up in shared data by digest instead of each
    /// holding a copy.
    pub shared_lookup: bool,
    /// Sets may carry `apps` (app settings, authentication switches). Off: a set
    /// with `apps` is refused.
    pub apps_from_set: bool,
}

impl std::fmt::Debug for TokenSource {
    // Headers and the bundle key are secrets.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenSource")
            .field("name", &self.name)
            .field("cluster", &self.cluster)
            .field("path", &self.path)
            .field("period_ms", &self.period_ms)
            .field("role", &self.role)
            .finish_non_exhaustive()
    }
}

/// The whole compiled configuration.
#[derive(Debug)]
pub struct Policy {
    pub mode: Mode,
    /// The most detailed log lines written (`log_level`).
    pub log_level: log::LevelFilter,
    /// How request paths are made canonical before routing.
    pub paths: crate::path::PathOptions,
    pub reject_unknown_paths: bool,
    /// Profile answering unknown paths when they are rejected.
    pub unknown_profile: usize,
    pub routes: Vec<Route>,
    pub tokens: TokenStore,
    pub apps: HashMap<String, AppSettings>,
    /// Authentication for apps not listed in `apps` (Adjust: off until switched on).
    pub app_authentication_default: bool,
    pub profiles: Vec<Profile>,
    pub headers: UpstreamHeaders,
    pub strip_credential: bool,
    pub origin_mismatch: OriginMismatch,
    /// Largest form body the filter buffers; above it the request is refused.
    pub max_body_bytes: usize,
    /// Envoy runs the plugin with `allow_on_headers_stop_iteration`: hold request
    /// headers while reading a form body, and decide before anything goes upstream.
    pub hold_headers_for_body: bool,
    /// SDK signature settings per app.
    pub signatures: HashMap<String, SignatureSettings>,
    /// The answer to a rejected signature (the same for every reason).
    pub signature_reply: Reply,
    /// The series defined from the configuration (never per request): the App
    /// Secret statistics of each app, the decisions of each route by outcome
    /// ([`Policy::route_stat`]), the shadow decisions of each app
    /// ([`Policy::shadow_stat`]). Decisions name them by index (`Decision::stats`).
    pub stat_names: Vec<String>,
    /// Where the decision series of requests on no route start in `stat_names`
    /// (`route="none"`: unknown paths rejected, paths that cannot be made canonical).
    pub unrouted_stats_base: usize,
    /// The shadow series of requests naming no configured app, or one beyond
    /// `max_stats_apps` (`app="other"`), in `stat_names`.
    pub shadow_other_stat: usize,
    /// Where live token sets come from, if not only from this configuration.
    pub source: Option<TokenSource>,
    /// The version of the token set this policy was built with (`None`: inline).
    pub set_version: Option<u64>,
    /// The set's `epoch` (0 if none): a higher epoch resets the version order.
    pub set_epoch: u64,
    /// The set's `expires` (Unix seconds), if it says.
    pub set_expires: Option<u64>,
    /// Valid but weakening settings, logged when the configuration loads.
    pub warnings: Vec<String>,
    /// Every configured app name (`apps`, signature settings), ASCII lower-cased: a
    /// request naming one in another case is refused (a collector may look apps up
    /// case-insensitively).
    pub app_names_folded: std::collections::HashSet<String>,
    /// Some configured app is named by a number (`42`, `007`, `1e3`): then a
    /// request naming an unknown app in another spelling of a number is refused (a
    /// numeric lookup may read it as a configured one: `042`, `0x2A`, `4.2e1`).
    /// Holds the values of the apps named by decimal digits (`007` is 7).
    pub numeric_apps: Option<std::collections::HashSet<u64>>,
}

/// Where a request lands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Routing<'a> {
    /// No route has this (canonical) path.
    Unknown,
    /// A protected path, but no route for this method there.
    MethodNotAllowed(&'a Route),
    Route(&'a Route),
}

impl Policy {
    /// The route for a canonical path and a method: exact matches first, then the
    /// longest prefix. A protected path with another method is
    /// [`Routing::MethodNotAllowed`], never unknown.
    pub fn routing(&self, method: &[u8], path: &[u8]) -> Routing<'_> {
        self.routing_by(method, |m| m.matches(path))
    }

    /// [`Policy::routing`] as a stack reads it that routes without regard to ASCII
    /// case or a trailing slash ([`PathMatch::matches_loosely`]): for the readings
    /// other stacks give a path, whatever `path_normalization` says.
    pub fn routing_loose(&self, method: &[u8], path: &[u8]) -> Routing<'_> {
        self.routing_by(method, |m| m.matches_loosely(path))
    }

    fn routing_by(&self, method: &[u8], matches: impl Fn(&PathMatch) -> bool) -> Routing<'_> {
        let method_ok = |r: &Route| r.methods.is_empty() || r.methods.iter().any(|m| m == method);
        let exact = |want_method: bool| {
            self.routes.iter().find(|r| {
                matches!(r.path, PathMatch::Exact(_))
                    && matches(&r.path)
                    && (!want_method || method_ok(r))
            })
        };
        let prefix = |want_method: bool| {
            self.routes
                .iter()
                .filter(|r| {
                    matches!(r.path, PathMatch::Prefix(_))
                        && matches(&r.path)
                        && (!want_method || method_ok(r))
                })
                .max_by_key(|r| match &r.path {
                    PathMatch::Prefix(p) => p.len(),
                    PathMatch::Exact(_) => 0,
                })
        };
        if let Some(r) = exact(true).or_else(|| prefix(true)) {
            return Routing::Route(r);
        }
        match exact(false).or_else(|| prefix(false)) {
            Some(r) => Routing::MethodNotAllowed(r),
            None => Routing::Unknown,
        }
    }

    /// The series of a decision with `outcome` on `route` (`None`: on no route),
    /// beside `Counter::Requests`: an index into `stat_names`.
    pub fn route_stat(&self, route: Option<&Route>, outcome: Outcome) -> usize {
        route.map_or(self.unrouted_stats_base, |r| r.stats_base) + outcome.index()
    }

    /// The shadow series of a request naming `app` (by its `app_param`): the app's
    /// own if it is configured and within `max_stats_apps`, `other` otherwise.
    pub fn shadow_stat(&self, app: Option<&[u8]>) -> usize {
        app.and_then(|a| std::str::from_utf8(a).ok())
            .and_then(|a| self.apps.get(a))
            .map_or(self.shadow_other_stat, |s| s.shadow_stat)
    }

    /// The route for a canonical path and a method, if there is one.
    pub fn route(&self, method: &[u8], path: &[u8]) -> Option<&Route> {
        match self.routing(method, path) {
            Routing::Route(r) => Some(r),
            _ => None,
        }
    }

    /// Does the route accept a secret of this kind?
    pub fn accepts(route: &Route, kind: Kind) -> bool {
        match kind {
            Kind::Server => route.accept_server,
            Kind::Client => route.accept_client,
        }
    }
}
