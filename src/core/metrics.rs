//! The fixed set of counters, defined once at start. Names are designed for Envoy
//! `stats_tags`: `s2s_guard.<family>.outcome.<outcome>[.scope.<scope>]`, so the
//! regexes in `docs/metrics.md` turn outcome and scope into Prometheus labels.

use crate::policy::Outcome;
use crate::signature::Reason;
use crate::token::Scope;

/// The replay memory's fill gauge: percent of the per-key bound of the fullest key
/// a worker's recent inserts touched ([`crate::replay::Fill`]).
pub const REPLAY_FILL_PERCENT: &str = "s2s_guard.replay.fill_percent";

/// SDK signature results.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SigCounter {
    Verified,
    /// Verified, and the signature covers no device id (counted beside `Verified`).
    VerifiedWithoutDeviceId,
    /// No signature, accepted because the app does not enforce signatures.
    NoSignature,
    /// A later signature shape passed by the app's policy.
    UnverifiablePassed,
    /// The app has no signature settings: nothing checked.
    UnconfiguredApp,
    /// Accepted without being remembered: the replay memory was full.
    ReplayFullAccepted,
    Reason(Reason),
}

impl SigCounter {
    fn all() -> Vec<SigCounter> {
        let mut v = vec![
            SigCounter::Verified,
            SigCounter::VerifiedWithoutDeviceId,
            SigCounter::NoSignature,
            SigCounter::UnverifiablePassed,
            SigCounter::UnconfiguredApp,
            SigCounter::ReplayFullAccepted,
        ];
        v.extend(Reason::all().into_iter().map(SigCounter::Reason));
        v
    }

    /// How many there are.
    const COUNT: usize = 6 + Reason::COUNT;

    /// The counter's place in [`SigCounter::all`], without building the list.
    fn index(self) -> usize {
        match self {
            SigCounter::Verified => 0,
            SigCounter::VerifiedWithoutDeviceId => 1,
            SigCounter::NoSignature => 2,
            SigCounter::UnverifiablePassed => 3,
            SigCounter::UnconfiguredApp => 4,
            SigCounter::ReplayFullAccepted => 5,
            SigCounter::Reason(r) => 6 + r.index(),
        }
    }

    fn name(self) -> String {
        let o = match self {
            SigCounter::Verified => "verified".to_string(),
            SigCounter::VerifiedWithoutDeviceId => "verified_without_device_id".into(),
            SigCounter::NoSignature => "no_signature".into(),
            SigCounter::UnverifiablePassed => "unverifiable_passed".into(),
            SigCounter::UnconfiguredApp => "unconfigured_app".into(),
            SigCounter::ReplayFullAccepted => "replay_full_accepted".into(),
            SigCounter::Reason(r) => r.metric_name(),
        };
        format!("s2s_guard.signature.outcome.{o}")
    }
}

/// A counter the filter increments.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Counter {
    /// Every decision on a configured route, by outcome and by the route's scope.
    Requests(Outcome, Option<Scope>),
    /// Answered locally (enforce mode).
    Rejected(Outcome),
    /// Would have been rejected, passed because the app's authentication is off.
    Shadow(Outcome),
    /// Would have been rejected, forwarded because of `flag` or `dry_run` mode.
    Flagged(Outcome),
    /// Requests refused because they can be read more than one way, by class.
    Ambiguity(crate::reading::Class),
    /// Requests on paths no route matches, passed through.
    Unmatched,
    /// CORS preflights answered.
    Preflight,
    /// Client-secret requests passed without `Access-Control-Allow-Origin`.
    CorsWithheld,
    ConfigLoaded,
    ConfigRejected,
    Signature(SigCounter),
    /// Signature rejections answered locally.
    SignatureRejected,
    /// Signature rejections forwarded (flag, dry run, or the app's later-SDK policy).
    SignatureFlagged,
    /// Token sets fetched and published.
    SourceLoaded,
    SourceNotModified,
    /// A 200 whose content was the set already in force.
    SourceUnchanged,
    SourceFailed(crate::distribution::Failure),
    /// A set older than the one in force, ignored.
    SourceRollbackRefused,
    /// A loaded set switched authentication off for at least one app.
    SourceAppsSwitchedOff,
    /// This VM took the fetcher lease.
    SourceLeaseAcquired,
    /// Requests answered 503: no set yet / the set is stale.
    SourceNotReady,
    SourceStale,
}

const OUTCOMES: usize = Outcome::ALL.len();

/// The token-source counters other than failures, in index order.
const SOURCE_COUNTERS: [Counter; 8] = [
    Counter::SourceLoaded,
    Counter::SourceAppsSwitchedOff,
    Counter::SourceNotModified,
    Counter::SourceUnchanged,
    Counter::SourceRollbackRefused,
    Counter::SourceLeaseAcquired,
    Counter::SourceNotReady,
    Counter::SourceStale,
];
const SCOPES: usize = Scope::ALL.len() + 1;

/// Number of counters.
pub const COUNT: usize = OUTCOMES * SCOPES
    + 3 * OUTCOMES
    + 7
    + 6
    + REASONS
    + SOURCE_COUNTERS.len()
    + crate::distribution::Failure::ALL.len()
    + crate::reading::Class::ALL.len();

const REASONS: usize = 2 + crate::signature::Field::ALL.len() + 11;

fn scope_index(s: Option<Scope>) -> usize {
    match s {
        None => 0,
        Some(s) => 1 + Scope::ALL.iter().position(|x| *x == s).unwrap_or(0),
    }
}

fn scope_name(s: Option<Scope>) -> &'static str {
    s.map_or("none", Scope::name)
}

impl Counter {
    /// Every counter, in index order.
    pub fn all() -> Vec<Counter> {
        let scopes = std::iter::once(None).chain(Scope::ALL.into_iter().map(Some));
        let mut v: Vec<Counter> = Vec::with_capacity(COUNT);
        for o in Outcome::ALL {
            for s in scopes.clone() {
                v.push(Counter::Requests(o, s));
            }
        }
        v.extend(Outcome::ALL.into_iter().map(Counter::Rejected));
        v.extend(Outcome::ALL.into_iter().map(Counter::Shadow));
        v.extend(Outcome::ALL.into_iter().map(Counter::Flagged));
        v.extend([
            Counter::Unmatched,
            Counter::Preflight,
            Counter::CorsWithheld,
            Counter::ConfigLoaded,
            Counter::ConfigRejected,
            Counter::SignatureRejected,
            Counter::SignatureFlagged,
        ]);
        v.extend(SigCounter::all().into_iter().map(Counter::Signature));
        v.extend(SOURCE_COUNTERS);
        v.extend(
            crate::distribution::Failure::ALL
                .into_iter()
                .map(Counter::SourceFailed),
        );
        v.extend(
            crate::reading::Class::ALL
                .into_iter()
                .map(Counter::Ambiguity),
        );
        v
    }

    /// Dense index, for an array of metric ids.
    pub fn index(self) -> usize {
        let fam = OUTCOMES * SCOPES;
        match self {
            Counter::Requests(o, s) => o.index() * SCOPES + scope_index(s),
            Counter::Rejected(o) => fam + o.index(),
            Counter::Shadow(o) => fam + OUTCOMES + o.index(),
            Counter::Flagged(o) => fam + 2 * OUTCOMES + o.index(),
            Counter::Unmatched => fam + 3 * OUTCOMES,
            Counter::Preflight => fam + 3 * OUTCOMES + 1,
            Counter::CorsWithheld => fam + 3 * OUTCOMES + 2,
            Counter::ConfigLoaded => fam + 3 * OUTCOMES + 3,
            Counter::ConfigRejected => fam + 3 * OUTCOMES + 4,
            Counter::SignatureRejected => fam + 3 * OUTCOMES + 5,
            Counter::SignatureFlagged => fam + 3 * OUTCOMES + 6,
            Counter::Signature(s) => {
                let base = fam + 3 * OUTCOMES + 7;
                base + s.index()
            }
            other => {
                // The source counters follow, in `all()` order.
                let base = fam + 3 * OUTCOMES + 7 + SigCounter::COUNT;
                let list = SOURCE_COUNTERS;
                match other {
                    Counter::Ambiguity(c) => {
                        base + list.len() + crate::distribution::Failure::ALL.len() + c.index()
                    }
                    Counter::SourceFailed(f) => {
                        base + list.len()
                            + crate::distribution::Failure::ALL
                                .iter()
                                .position(|x| *x == f)
                                .unwrap_or(0)
                    }
                    o => base + list.iter().position(|x| *x == o).unwrap_or(0),
                }
            }
        }
    }

    /// The name the filter defines (Envoy shows it as `wasmcustom.<name>`).
    pub fn name(self) -> String {
        match self {
            Counter::Requests(o, s) => {
                format!(
                    "s2s_guard.requests.outcome.{}.scope.{}",
                    o.name(),
                    scope_name(s)
                )
            }
            Counter::Rejected(o) => format!("s2s_guard.rejected.outcome.{}", o.name()),
            Counter::Shadow(o) => format!("s2s_guard.shadow.outcome.{}", o.name()),
            Counter::Flagged(o) => format!("s2s_guard.flagged.outcome.{}", o.name()),
            Counter::Unmatched => "s2s_guard.unmatched".into(),
            Counter::Preflight => "s2s_guard.preflight".into(),
            Counter::CorsWithheld => "s2s_guard.cors_withheld".into(),
            Counter::ConfigLoaded => "s2s_guard.config.loaded".into(),
            Counter::ConfigRejected => "s2s_guard.config.rejected".into(),
            Counter::SignatureRejected => "s2s_guard.signature.rejected".into(),
            Counter::SignatureFlagged => "s2s_guard.signature.flagged".into(),
            Counter::Signature(s) => s.name(),
            Counter::SourceLoaded => "s2s_guard.source.loaded".into(),
            Counter::SourceNotModified => "s2s_guard.source.not_modified".into(),
            Counter::SourceUnchanged => "s2s_guard.source.unchanged".into(),
            Counter::SourceFailed(f) => format!("s2s_guard.source.failure.{}", f.name()),
            Counter::SourceRollbackRefused => "s2s_guard.source.rollback_refused".into(),
            Counter::SourceAppsSwitchedOff => "s2s_guard.source.apps_switched_off".into(),
            Counter::SourceLeaseAcquired => "s2s_guard.source.lease_acquired".into(),
            Counter::SourceNotReady => "s2s_guard.source.not_ready_rejected".into(),
            Counter::SourceStale => "s2s_guard.source.stale_rejected".into(),
            Counter::Ambiguity(c) => format!("s2s_guard.ambiguous.class.{}", c.name()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn indexes_are_dense_and_names_unique() {
        let all = Counter::all();
        assert_eq!(all.len(), COUNT);
        for (i, c) in all.iter().enumerate() {
            assert_eq!(c.index(), i, "{c:?}");
        }
        let mut names: Vec<String> = all.iter().map(|c| c.name()).collect();
        names.sort();
        names.dedup();
        assert_eq!(names.len(), COUNT);
    }
}
