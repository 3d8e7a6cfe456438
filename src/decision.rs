//! The decision: given the policy, the request (and its form body when the route
//! reads it) and the time, what to answer or how to forward, and what to count.
//! Pure: the adapter applies the result.

use crate::credential::{self, Extracted, Location};
use crate::metrics::{Counter, SigCounter};
use crate::policy::{Checks, LaterSdk, Mode, OriginMismatch, Outcome, Policy, Route, Stat};
use crate::replay;
use crate::request::{self, Param, RequestView};
use crate::signature::{self, Header, Reason};
use crate::token::{self, Kind, Lookup, Scope};

/// A local answer, before the upstream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Respond {
    pub status: u16,
    pub body: Vec<u8>,
    pub headers: Vec<(String, Vec<u8>)>,
    /// Envoy's response-code details (`s2s_guard_<outcome>`).
    pub details: String,
}

/// Changes to make before the request goes upstream.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Forward {
    /// Headers to remove (credentials, and the headers the filter owns).
    pub remove_headers: Vec<String>,
    /// Headers to set, replacing anything the client sent.
    pub set_headers: Vec<(String, Vec<u8>)>,
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
    pub route: Option<String>,
    pub scope: Option<Scope>,
    /// The verified token's id, when one was verified.
    pub token_id: Option<String>,
    /// Short fingerprint of a presented but unknown credential, for logs.
    pub fingerprint: Option<String>,
    pub counters: Vec<Counter>,
    /// The SDK signature result, for logs (`verified secret_id=1`, a reason...).
    pub signature: Option<String>,
    /// Per-app signature statistics to increment (indexes into `Policy::stat_names`).
    pub stats: Vec<usize>,
    /// A verified signature still to be checked against the replay memory.
    pub replay: Option<PendingReplay>,
}

/// What the adapter must check in the replay memory before the decision stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PendingReplay {
    pub check: replay::Check,
    pub full_rejects: bool,
    /// Statistics series for a rejection of this secret.
    pub reject_stat: Option<usize>,
}

/// What the replay memory said.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReplayResult {
    Recorded,
    Seen,
    Full,
}

/// Does deciding this request need its form body? Only POSTs with a form content
/// type on routes that read form fields.
pub fn needs_body(policy: &Policy, view: &RequestView) -> bool {
    view.method == b"POST"
        && view.is_form()
        && policy
            .route(&view.method, view.url_path())
            .is_some_and(Route::reads_form)
}

/// Decides a request. `body` is the complete form body when [`needs_body`] said so.
pub fn decide(policy: &Policy, view: &RequestView, body: Option<&[u8]>, now: u64) -> Decision {
    decide_inner(policy, &policy.tokens, view, body, false, now)
}

/// [`decide`] with tokens looked up elsewhere (shared data, for very large sets).
pub fn decide_with(
    policy: &Policy,
    tokens: &dyn Lookup,
    view: &RequestView,
    body: Option<&[u8]>,
    now: u64,
) -> Decision {
    decide_inner(policy, tokens, view, body, false, now)
}

/// The header-phase view of a request whose body is still to come: what can be
/// decided from headers and query alone. A credential, app or parameter that may be
/// in the body is not held against the request yet. Used only for the header
/// changes; the decision that counts is [`decide`] with the body.
pub fn decide_partial(
    policy: &Policy,
    tokens: &dyn Lookup,
    view: &RequestView,
    now: u64,
) -> Decision {
    decide_inner(policy, tokens, view, None, true, now)
}

/// The form body is larger than `max_body_bytes`.
pub fn body_too_large(policy: &Policy, view: &RequestView) -> Decision {
    let route = policy.route(&view.method, view.url_path());
    let d = Decision {
        outcome: Outcome::BodyTooLarge,
        enforcement: Enforcement::Enforced,
        action: Action::Forward(Forward::default()),
        route: route.map(|r| r.name.clone()),
        scope: route.and_then(|r| r.scope),
        token_id: None,
        fingerprint: None,
        counters: vec![Counter::Requests(
            Outcome::BodyTooLarge,
            route.and_then(|r| r.scope),
        )],
        signature: None,
        stats: Vec::new(),
        replay: None,
    };
    let profile = route.map_or(policy.unknown_profile, |r| r.profile);
    let forward = Forward {
        remove_headers: owned_headers(policy),
        ..Forward::default()
    };
    apply_mode(policy, profile, Outcome::BodyTooLarge, forward, None, d)
}

fn decide_inner(
    policy: &Policy,
    tokens: &dyn Lookup,
    view: &RequestView,
    body: Option<&[u8]>,
    pending: bool,
    now: u64,
) -> Decision {
    let owned = owned_headers(policy);
    let Some(route) = policy.route(&view.method, view.url_path()) else {
        return unknown_path(policy, owned);
    };
    if route.cors && view.method == b"OPTIONS" {
        return preflight(route, view);
    }
    let query = request::parse_params(view.raw_query());
    let form = body.filter(|_| view.is_form()).map(request::parse_params);
    let form = form.as_deref();
    let s2s = || {
        query
            .iter()
            .chain(form.unwrap_or_default())
            .any(|p| p.name == b"s2s" && p.value == b"1")
    };
    let (want_token, want_signature) = match route.checks {
        Checks::Token => (true, false),
        Checks::Signature => (false, true),
        Checks::TokenAndSignature => (true, true),
        // Before the body, `s2s=1` may still come: look for a token meanwhile.
        Checks::S2sTokenElseSignature if pending => (true, false),
        Checks::S2sTokenElseSignature => (s2s(), !s2s()),
    };
    let d = if want_token {
        token_decision(
            policy, tokens, route, view, body, pending, now, &query, form,
        )
    } else {
        passed(policy, route)
    };
    if !want_signature || pending || d.outcome != Outcome::Allowed {
        return d;
    }
    signature_decision(policy, route, view, &query, form, now, d)
}

/// A route's decision before any check: forward, without the headers the filter owns.
fn passed(policy: &Policy, route: &Route) -> Decision {
    Decision {
        outcome: Outcome::Allowed,
        enforcement: Enforcement::Enforced,
        action: Action::Forward(Forward {
            remove_headers: owned_headers(policy),
            ..Forward::default()
        }),
        route: Some(route.name.clone()),
        scope: route.scope,
        token_id: None,
        fingerprint: None,
        counters: Vec::new(),
        signature: None,
        stats: Vec::new(),
        replay: None,
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
    now: u64,
    query: &[Param],
    form: Option<&[Param]>,
) -> Decision {
    let extracted = credential::extract(route, view, query, form);
    // The decision's action is set below, from `forward` or a reply.
    let mut d = passed(policy, route);
    let mut forward = Forward {
        remove_headers: owned_headers(policy),
        ..Forward::default()
    };
    let origin = view.header_values("origin").next();
    let app = single_param(&route.app_param, query, form);

    let (outcome, locations) = match extracted {
        // The credential may be in the body still to come.
        Extracted::Missing if pending => (Outcome::Allowed, Vec::new()),
        Extracted::Missing => (Outcome::Missing, Vec::new()),
        Extracted::Ambiguous => (Outcome::Ambiguous, Vec::new()),
        Extracted::Malformed { locations } => (Outcome::Wrong, locations),
        Extracted::One {
            value, locations, ..
        } => match tokens.verify(&value) {
            None => {
                d.fingerprint = Some(token::fingerprint(&value));
                (Outcome::Wrong, locations)
            }
            Some(v) => {
                let t = v.token.as_ref();
                d.token_id = Some(t.id.clone());
                let outcome = if !t.active {
                    Outcome::Inactive
                } else if t.not_before.is_some_and(|nb| now < nb)
                    || t.expires_at.is_some_and(|ea| now >= ea)
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
                    && t.app.is_some()
                    && !(pending && app.is_none())
                    && app.as_deref() != t.app.as_ref().map(|a| a.as_bytes())
                {
                    // A token belongs to one app: another app's token is a wrong token.
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
                        .push((policy.headers.token_id.clone(), t.id.clone().into_bytes()));
                    if let Some(a) = &t.app {
                        forward
                            .set_headers
                            .push((policy.headers.app.clone(), a.clone().into_bytes()));
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
        strip(&mut forward, view, body, &locations);
    }
    d.counters.push(Counter::Requests(outcome, route.scope));

    if outcome == Outcome::Allowed {
        d.action = Action::Forward(forward);
        return d;
    }
    // Identity headers are only for allowed requests.
    forward.set_headers.clear();
    forward.response_headers.clear();
    if route.per_app && !app_enforced(policy, route, app.as_deref()) {
        d.enforcement = Enforcement::Shadow;
        d.counters.push(Counter::Shadow(outcome));
        d.action = Action::Forward(forward);
        return d;
    }
    apply_mode(
        policy,
        route.profile,
        outcome,
        forward,
        origin.filter(|_| route.cors),
        d,
    )
}

/// The headers the filter owns: removed from every client request.
pub fn owned_headers(policy: &Policy) -> Vec<String> {
    vec![
        policy.headers.token_id.clone(),
        policy.headers.app.clone(),
        policy.headers.reason.clone(),
    ]
}

/// The SDK signature check, after any token check passed.
fn signature_decision(
    policy: &Policy,
    route: &Route,
    view: &RequestView,
    query: &[Param],
    form: Option<&[Param]>,
    now: u64,
    mut d: Decision,
) -> Decision {
    let app = single_param(&route.app_param, query, form);
    let app = app.as_deref().and_then(|a| std::str::from_utf8(a).ok());
    let Some((app, settings)) = app.and_then(|a| policy.signatures.get_key_value(a)) else {
        // No signature settings for this app: nothing to verify against.
        d.counters
            .push(Counter::Signature(SigCounter::UnconfiguredApp));
        d.signature = Some("unconfigured_app".into());
        return d;
    };
    let params: Vec<&Param> = query.iter().chain(form.unwrap_or_default()).collect();
    // Sandbox traffic is verified but not counted in the App Secret statistics.
    let sandbox = params
        .iter()
        .any(|p| p.name == b"environment" && p.value == b"sandbox");
    let stat = |s: Stat| (!sandbox).then(|| settings.stat_index(s));
    let duplicate = params
        .iter()
        .enumerate()
        .any(|(i, p)| params[..i].iter().any(|q| q.name == p.name));
    let header = match view.header_once("authorization") {
        Err(_) => Some(Err(Reason::BadFormat(signature::Field::Authorization))),
        Ok(None) => None,
        Ok(Some(v)) => signature::parse_header(v),
    };
    let reject = |d: Decision, reason: Reason, st: Option<usize>| {
        signature_rejected(policy, d, reason, st, false)
    };
    if params.iter().any(|p| p.name == b"app_secret") {
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
            d.signature = Some("no_signature".into());
            d
        }
        Some(Err(reason)) => reject(d, reason, stat(Stat::InvalidSecret)),
        Some(Ok(Header::Later { signing_id, .. })) => {
            let allowed = settings.signing_ids.is_empty()
                || signing_id
                    .as_ref()
                    .is_some_and(|id| settings.signing_ids.contains(id));
            if !allowed {
                return reject(d, Reason::SigningIdNotAllowed, None);
            }
            match settings.later_sdk {
                LaterSdk::Pass => {
                    d.counters
                        .push(Counter::Signature(SigCounter::UnverifiablePassed));
                    d.signature = Some(format!(
                        "unverifiable_passed signing_id={}",
                        signing_id.as_deref().unwrap_or("-")
                    ));
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
            let input = signature::Input {
                path: view.url_path(),
                client_sdk: view.header_values("client-sdk").next(),
                params: &params,
                now,
                max_age: settings.max_age,
                max_future: settings.max_future,
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
                    d.stats.extend(stat(Stat::Accepted(secret_id)));
                    d.signature = Some(format!("verified secret_id={secret_id}"));
                    if !settings.replay_enabled {
                        d.counters.push(Counter::Signature(SigCounter::Verified));
                        return d;
                    }
                    d.replay = Some(PendingReplay {
                        check: replay::check(
                            settings.replay,
                            app,
                            v.secret_id,
                            &v.signature,
                            v.created_at,
                        ),
                        full_rejects: settings.replay_full_rejects,
                        reject_stat: stat(Stat::Rejected(secret_id)),
                    });
                    d
                }
            }
        }
    }
}

/// Completes a decision that verified a signature, with the replay memory's answer.
pub fn settle_replay(policy: &Policy, mut d: Decision, result: ReplayResult) -> Decision {
    let Some(pending) = d.replay.take() else {
        return d;
    };
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
            d.stats.clear();
            let reason = if result == ReplayResult::Seen {
                Reason::Replayed
            } else {
                Reason::ReplayMemoryFull
            };
            signature_rejected(policy, d, reason, pending.reject_stat, false)
        }
    }
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
    d.signature = Some(reason.name());
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
            d.enforcement = Enforcement::Enforced;
            d.action = Action::Respond(Respond {
                status: r.status,
                body: r.body.clone(),
                headers: vec![("content-type".into(), r.content_type.clone().into_bytes())],
                details: format!("s2s_guard_{}", reason.metric_name()),
            });
        }
        (Mode::DryRun, _) => {
            d.counters.push(Counter::SignatureFlagged);
            d.enforcement = Enforcement::DryRun;
            d.action = Action::Forward(forward);
        }
        _ => {
            d.counters.push(Counter::SignatureFlagged);
            d.enforcement = Enforcement::Flagged;
            forward
                .set_headers
                .push((policy.headers.reason.clone(), reason.name().into_bytes()));
            d.action = Action::Forward(forward);
        }
    }
    d
}

/// The reason a forwarded request was flagged with, if it was.
pub fn flag_reason(d: &Decision) -> Option<String> {
    match d.enforcement {
        Enforcement::Flagged => Some(
            d.signature
                .clone()
                .filter(|_| d.outcome == Outcome::Allowed)
                .unwrap_or_else(|| d.outcome.name().to_string()),
        ),
        _ => None,
    }
}

/// The body to forward after a decision taken at the end of a form body: the
/// credential removed, any client-sent `s2s_guard_rejection` field removed, and the
/// flag reason appended (headers can no longer change at that point).
pub fn final_body(d: &Decision, body: &[u8]) -> Option<Vec<u8>> {
    let Action::Forward(f) = &d.action else {
        return None;
    };
    let base = f.body.clone().unwrap_or_else(|| body.to_vec());
    let params = request::parse_params(&base);
    let spans: Vec<(usize, usize)> = params
        .iter()
        .filter(|p| p.name == FLAG_FIELD.as_bytes())
        .map(|p| p.span)
        .collect();
    let reason = flag_reason(d);
    if spans.is_empty() && reason.is_none() {
        return f.body.clone();
    }
    let mut out = request::remove_spans(&base, &spans);
    if let Some(r) = reason {
        if !out.is_empty() {
            out.push(b'&');
        }
        out.extend_from_slice(FLAG_FIELD.as_bytes());
        out.push(b'=');
        out.extend_from_slice(r.as_bytes());
    }
    Some(out)
}

/// The form field that carries the flag reason when headers cannot.
pub const FLAG_FIELD: &str = "s2s_guard_rejection";

fn apply_mode(
    policy: &Policy,
    profile: usize,
    outcome: Outcome,
    mut forward: Forward,
    cors_origin: Option<&[u8]>,
    mut d: Decision,
) -> Decision {
    match policy.mode {
        Mode::Enforce => {
            let reply = policy.profiles[profile].reply(outcome);
            let mut headers = vec![(
                "content-type".to_string(),
                reply.content_type.clone().into_bytes(),
            )];
            if let Some(o) = cors_origin {
                headers.push(("access-control-allow-origin".into(), o.to_vec()));
                headers.push(("vary".into(), b"origin".to_vec()));
            }
            d.counters.push(Counter::Rejected(outcome));
            d.action = Action::Respond(Respond {
                status: reply.status,
                body: reply.body.clone(),
                headers,
                details: format!("s2s_guard_{}", outcome.name()),
            });
        }
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
                    .filter(|h| owned_headers(policy).contains(h))
                    .collect(),
                ..Forward::default()
            });
        }
    }
    d
}

fn unknown_path(policy: &Policy, owned: Vec<String>) -> Decision {
    let forward = Forward {
        remove_headers: owned,
        ..Forward::default()
    };
    let d = Decision {
        outcome: Outcome::UnknownEndpoint,
        enforcement: Enforcement::Enforced,
        action: Action::Forward(Forward::default()),
        route: None,
        scope: None,
        token_id: None,
        fingerprint: None,
        counters: Vec::new(),
        signature: None,
        stats: Vec::new(),
        replay: None,
    };
    if !policy.reject_unknown_paths {
        return Decision {
            outcome: Outcome::Allowed,
            action: Action::Forward(forward),
            counters: vec![Counter::Unmatched],
            ..d
        };
    }
    let mut d = d;
    d.counters
        .push(Counter::Requests(Outcome::UnknownEndpoint, None));
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
    let origin = view.header_values("origin").next().unwrap_or(b"*").to_vec();
    Decision {
        outcome: Outcome::Allowed,
        enforcement: Enforcement::Enforced,
        action: Action::Respond(Respond {
            status: 204,
            body: Vec::new(),
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
            details: "s2s_guard_preflight".into(),
        }),
        route: Some(route.name.clone()),
        scope: route.scope,
        token_id: None,
        fingerprint: None,
        counters: vec![Counter::Preflight],
        signature: None,
        stats: Vec::new(),
        replay: None,
    }
}

/// The request's value of a parameter from query or form; `None` if absent, empty
/// or given with two different values.
fn single_param(
    name: &Option<Vec<u8>>,
    query: &[Param],
    form: Option<&[Param]>,
) -> Option<Vec<u8>> {
    let name = name.as_ref()?;
    let mut values = query
        .iter()
        .chain(form.unwrap_or_default())
        .filter(|p| p.name == *name)
        .map(|p| p.value.as_slice());
    let first = values.next()?;
    if first.is_empty() || values.any(|v| v != first) {
        return None;
    }
    Some(first.to_vec())
}

fn required_present(route: &Route, query: &[Param], form: Option<&[Param]>) -> bool {
    route.required.iter().all(|r| {
        query
            .iter()
            .chain(form.unwrap_or_default())
            .any(|p| p.name == r.name && (r.allow_empty || !p.value.is_empty()))
    })
}

fn origin_allowed(t: &token::Token, origin: Option<&[u8]>) -> bool {
    // No Origin header: not a browser request; origins restrict browsers only.
    let Some(origin) = origin else { return true };
    match token::origin_host(origin) {
        Some(host) => t.origins.iter().any(|r| r.matches(&host)),
        None => false,
    }
}

/// Is authentication switched on for the request's app on this endpoint?
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
fn strip(forward: &mut Forward, view: &RequestView, body: Option<&[u8]>, locations: &[Location]) {
    let mut query_spans = Vec::new();
    let mut form_spans = Vec::new();
    for loc in locations {
        match loc {
            Location::Header(h) => {
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
