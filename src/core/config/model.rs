//! The configuration as it is written: serde types, one per JSON object, with
//! unknown keys refused at every level. Only the shape is checked here (types,
//! names, enumerations); [`super::compile`] checks meaning and ranges and builds the
//! [`crate::policy::Policy`].
//!
//! Strings borrow from the document where they can (`Cow`), the `tokens` array is
//! kept raw and streamed by [`super::compile_tokens`], and nothing here builds a
//! `serde_json::Value` tree. With the `schema` feature the same types generate the
//! JSON Schema (`schema/s2s-guard.schema.json`): the doc comments below are its
//! descriptions.

use std::borrow::Cow;
use std::fmt;
use std::marker::PhantomData;

use serde::de::{self, Deserialize, Deserializer, MapAccess, Visitor};
use serde_json::value::RawValue;

#[cfg(feature = "schema")]
use schemars::JsonSchema;

/// A string borrowed from the document when it has no escapes.
pub type Str<'a> = Cow<'a, str>;

/// A name among `names` (an enumeration's spelling): one lookup shared by every
/// enumeration, instead of serde's derived variant machinery for each (a smaller
/// .wasm). Errors are serde's own (`unknown variant`, `invalid type`).
fn name_index<'de, D: Deserializer<'de>>(
    d: D,
    names: &'static [&'static str],
) -> Result<usize, D::Error> {
    // A visitor, so that serde_json places the error at the string (its path).
    struct V(&'static [&'static str]);
    impl Visitor<'_> for V {
        type Value = usize;
        fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
            f.write_str("a string")
        }
        fn visit_str<E: de::Error>(self, s: &str) -> Result<usize, E> {
            self.0
                .iter()
                .position(|n| *n == s)
                .ok_or_else(|| E::unknown_variant(s, self.0))
        }
    }
    d.deserialize_str(V(names))
}

/// Implements `Deserialize` for a fieldless enum from its names.
macro_rules! names {
    ($t:ident: $($v:ident = $n:literal),+ $(,)?) => {
        impl $t {
            /// The configuration's spellings, in declaration order.
            pub const NAMES: &'static [&'static str] = &[$($n),+];
        }
        impl<'de> Deserialize<'de> for $t {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                const ALL: &[$t] = &[$($t::$v),+];
                let i = name_index(d, $t::NAMES)?;
                ALL.get(i)
                    .copied()
                    .ok_or_else(|| de::Error::custom("no such value"))
            }
        }
    };
}

/// s2s-guard plugin configuration (Envoy `configuration`, Istio `pluginConfig`).
/// Unknown keys are errors, at every level. See docs/configuration.md.
#[derive(Debug, Default, serde::Deserialize)]
#[cfg_attr(feature = "schema", derive(JsonSchema))]
#[cfg_attr(feature = "schema", schemars(title = "s2s-guard configuration"))]
#[serde(deny_unknown_fields, expecting = "a JSON object")]
pub struct Config<'a> {
    /// The JSON Schema this document follows (for editors; ignored by the filter).
    #[serde(rename = "$schema", borrow)]
    pub schema: Option<Str<'a>>,
    /// Routes of the reference systems. At least one route or preset is required.
    pub presets: Option<Vec<Preset>>,
    /// Your own routes. A route with the same `path` as a preset route replaces it.
    #[serde(borrow)]
    pub routes: Option<Vec<RouteConfig<'a>>>,
    /// The token set: token objects, or Jitsu's shorthands (a client secret, or a
    /// list of client secrets).
    #[serde(borrow)]
    #[cfg_attr(feature = "schema", schemars(with = "Option<Tokens>"))]
    pub tokens: Option<&'a RawValue>,
    /// Per-app settings by app token: Adjust's "Enable S2S authentication" switch
    /// and SDK signature settings.
    #[serde(borrow)]
    #[cfg_attr(
        feature = "schema",
        schemars(with = "Option<std::collections::BTreeMap<String, AppConfig<'a>>>")
    )]
    pub apps: Option<Named<'a, AppConfig<'a>>>,
    /// Authentication for apps not listed in `apps` on `per_app_enforcement`
    /// routes (default false: Adjust's apps are off until switched on).
    pub app_authentication_default: Option<bool>,
    /// What happens to a request that fails a check (default `enforce`).
    pub mode: Option<Mode>,
    /// The most detailed log lines the filter writes (default `info`: a line per
    /// rejected, flagged or shadowed request). Below the level a line costs
    /// nothing: it is not even formatted. The host's own level filters too.
    pub log_level: Option<LogLevel>,
    /// Requests whose canonical path no route matches (default `pass`).
    pub unknown_paths: Option<UnknownPaths>,
    /// How request paths are made canonical before routing (every step on by
    /// default).
    pub path_normalization: Option<PathNormalization>,
    /// The profile that answers rejected unknown paths (default: the first route's).
    #[serde(borrow)]
    pub unknown_paths_profile: Option<Str<'a>>,
    /// Your own answers per outcome, by profile name.
    #[serde(borrow)]
    #[cfg_attr(
        feature = "schema",
        schemars(with = "Option<std::collections::BTreeMap<String, CustomProfile<'a>>>")
    )]
    pub profiles: Option<Named<'a, Named<'a, ReplyConfig<'a>>>>,
    /// Headers s2s-guard owns: removed from every client request, set only from
    /// verified data.
    #[serde(borrow)]
    pub upstream_headers: Option<UpstreamHeadersConfig<'a>>,
    /// Remove the credential from where it came before forwarding (default true).
    pub strip_credential: Option<bool>,
    /// A client secret used from an origin it does not allow (default `reject`).
    pub origin_mismatch: Option<OriginMismatch>,
    /// Largest form body buffered on routes that read it (default 65536).
    #[cfg_attr(feature = "schema", schemars(range(min = 1, max = 1048576)))]
    pub max_body_bytes: Option<u64>,
    /// Envoy runs the plugin with `allow_on_headers_stop_iteration: true`: hold the
    /// request headers while a form body is read (default false).
    pub hold_headers_for_body: Option<bool>,
    /// The answer to every rejected SDK signature (default 401 "Request signature
    /// rejected").
    #[serde(borrow)]
    #[cfg_attr(feature = "schema", schemars(with = "Option<ErrorReply>"))]
    pub signature_reply: Option<ReplyConfig<'a>>,
    /// Apps (in name order) with their own App Secret statistics and shadow series
    /// (default 100); the rest share the `other` series.
    #[cfg_attr(feature = "schema", schemars(range(max = 100000)))]
    pub max_stats_apps: Option<u64>,
    /// Live token sets from an HTTP token source or from shared data.
    #[serde(borrow)]
    pub token_source: Option<TokenSourceConfig<'a>>,
    /// The realm of tokens that name none (default: the routes' realm when there
    /// is only one).
    #[serde(borrow)]
    #[cfg_attr(feature = "schema", schemars(with = "Option<RealmName>"))]
    pub default_realm: Option<Str<'a>>,
}

/// A token set, as a token source serves it (s2s-guard's format; Jitsu's
/// `{"tokens": [...]}` is one too).
#[derive(Debug, serde::Deserialize)]
#[cfg_attr(feature = "schema", derive(JsonSchema))]
#[serde(deny_unknown_fields, expecting = "a JSON object")]
pub struct TokenSet<'a> {
    /// The JSON Schema this document follows (ignored).
    #[serde(rename = "$schema", borrow)]
    pub schema: Option<Str<'a>>,
    /// The set's version: sets are ordered by (epoch, version); required when the
    /// source signs its sets.
    #[cfg_attr(feature = "schema", schemars(range(max = 9007199254740992u64)))]
    pub version: Option<u64>,
    /// A higher epoch starts the version order anew (default 0); at most 2^32
    /// above the epoch in force (or 0), so no set can end the order.
    #[cfg_attr(feature = "schema", schemars(range(max = 9007199254740992u64)))]
    pub epoch: Option<u64>,
    /// When the set stops being valid (RFC 3339): from then on every worker
    /// refuses requests on its routes (503) until a newer set arrives, whatever
    /// the source answers. With a bundle key it is signed: whoever answers for the
    /// source cannot keep an old set in force past it.
    #[serde(borrow)]
    pub expires: Option<Str<'a>>,
    /// App settings; accepted only with `token_source.apps_from_set`.
    #[serde(borrow)]
    #[cfg_attr(
        feature = "schema",
        schemars(with = "Option<std::collections::BTreeMap<String, AppConfig<'a>>>")
    )]
    pub apps: Option<Named<'a, AppConfig<'a>>>,
    /// The tokens, as in the plugin configuration; required (`[]` for none): a set
    /// cut short or half generated must not empty the set in force.
    #[serde(borrow)]
    #[cfg_attr(feature = "schema", schemars(required, with = "Tokens"))]
    pub tokens: Option<&'a RawValue>,
}

/// A reference system's routes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "schema", derive(JsonSchema))]
#[cfg_attr(feature = "schema", serde(rename_all = "snake_case"))]
pub enum Preset {
    /// Adjust S2S: `/event`, `/session`, `/ad_revenue`, `/gdpr_forget_device`.
    Adjust,
    /// Adjust S2S and SDK traffic: the `adjust` routes (a token when `s2s=1`, a
    /// signature otherwise) and the SDK-only endpoints. Use it instead of `adjust`.
    AdjustSdk,
    /// Swaarm: `/postback`, `/s2sevent`.
    Swaarm,
    /// Jitsu: client and server event endpoints.
    Jitsu,
}

names!(Preset: Adjust = "adjust", AdjustSdk = "adjust_sdk", Swaarm = "swaarm", Jitsu = "jitsu");

/// What happens to a request that fails a check.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "schema", derive(JsonSchema))]
#[cfg_attr(feature = "schema", serde(rename_all = "snake_case"))]
pub enum Mode {
    /// Answer locally; the request never reaches the collector.
    Enforce,
    /// Forward with the reason (`upstream_headers.reason`).
    Flag,
    /// Forward untouched; only count.
    DryRun,
}

names!(Mode: Enforce = "enforce", Flag = "flag", DryRun = "dry_run");

/// How much the filter logs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "schema", derive(JsonSchema))]
#[cfg_attr(feature = "schema", serde(rename_all = "snake_case"))]
pub enum LogLevel {
    /// Nothing.
    Off,
    /// Failures of the filter itself (token source, configuration).
    Error,
    /// And warnings (set refusals, weakened enforcement, 503s).
    Warn,
    /// And a line per rejected, flagged or shadowed request (the default).
    Info,
    /// Everything.
    Debug,
}

names!(LogLevel: Off = "off", Error = "error", Warn = "warn", Info = "info", Debug = "debug");

/// Requests whose canonical path no route matches.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "schema", derive(JsonSchema))]
#[cfg_attr(feature = "schema", serde(rename_all = "snake_case"))]
pub enum UnknownPaths {
    /// Forward them.
    Pass,
    /// Answer the profile's `unknown_endpoint` reply.
    Reject,
}

names!(UnknownPaths: Pass = "pass", Reject = "reject");

/// A client secret used from an origin it does not allow.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "schema", derive(JsonSchema))]
#[cfg_attr(feature = "schema", serde(rename_all = "snake_case"))]
pub enum OriginMismatch {
    /// Answer 403 (the profile's `origin_denied` reply).
    Reject,
    /// Jitsu's behaviour: pass, without `Access-Control-Allow-Origin`.
    OmitCors,
}

names!(OriginMismatch: Reject = "reject", OmitCors = "omit_cors");

/// Steps that make a request path canonical; each is on unless set to false.
#[derive(Debug, Default, serde::Deserialize)]
#[cfg_attr(feature = "schema", derive(JsonSchema))]
#[serde(deny_unknown_fields, expecting = "an object")]
pub struct PathNormalization {
    /// Decode percent-escapes of unreserved characters.
    pub decode_unreserved: Option<bool>,
    /// Remove `.` and `..` segments.
    pub remove_dot_segments: Option<bool>,
    /// Merge repeated slashes.
    pub merge_slashes: Option<bool>,
    /// A trailing slash routes as the path without it.
    pub ignore_trailing_slash: Option<bool>,
    /// Route paths case-insensitively (ASCII).
    pub fold_case: Option<bool>,
}

/// An endpoint and what it demands.
#[derive(Debug, serde::Deserialize)]
#[cfg_attr(feature = "schema", derive(JsonSchema))]
#[serde(deny_unknown_fields, expecting = "an object")]
pub struct RouteConfig<'a> {
    /// Path without query, canonical under `path_normalization`.
    #[serde(borrow)]
    #[cfg_attr(feature = "schema", schemars(regex(pattern = r"^/[^?]*$")))]
    pub path: Str<'a>,
    /// How the path matches (default `exact`). Exact routes are tried first, then
    /// the longest prefix.
    #[serde(rename = "match")]
    pub match_: Option<PathMatchKind>,
    /// Used in logs (default: the path).
    #[serde(borrow)]
    pub name: Option<Str<'a>>,
    /// HTTP methods (default any); others get `method_not_allowed` (405).
    #[serde(borrow)]
    #[cfg_attr(feature = "schema", schemars(with = "Option<Vec<Method>>"))]
    pub methods: Option<Vec<Str<'a>>>,
    /// The scope a token needs here.
    pub scope: Option<ScopeName>,
    /// Which secrets the route accepts (default `["server"]`).
    #[cfg_attr(feature = "schema", schemars(length(min = 1)))]
    pub token_kinds: Option<Vec<TokenKind>>,
    /// How the route answers: `adjust`, `swaarm`, `jitsu` or a custom profile.
    #[serde(borrow)]
    pub profile: Str<'a>,
    /// Where the token may be, in order (default `["bearer"]`).
    #[serde(borrow)]
    #[cfg_attr(feature = "schema", schemars(with = "Option<Vec<CredentialSource>>"))]
    #[cfg_attr(feature = "schema", schemars(length(min = 1)))]
    pub credentials: Option<Vec<Str<'a>>>,
    /// Parameters that must be present, in the query or the form body.
    #[serde(borrow)]
    #[cfg_attr(
        feature = "schema",
        schemars(with = "Option<Vec<RequiredParamSchema<'a>>>")
    )]
    pub required_params: Option<Vec<RequiredParamConfig<'a>>>,
    /// Where the request names its app (`app_token`), query or form.
    #[serde(borrow)]
    pub app_param: Option<Str<'a>>,
    /// Adjust: enforce only for apps whose authentication is on. Needs `app_param`.
    pub per_app_enforcement: Option<bool>,
    /// Browser endpoint: answer CORS preflights and allow origins.
    pub cors: Option<bool>,
    /// What the route verifies (default `token`). Signature checks need
    /// `app_param`.
    pub checks: Option<ChecksName>,
    /// Whose tokens the route accepts (default `default`).
    #[serde(borrow)]
    #[cfg_attr(feature = "schema", schemars(with = "Option<RealmName>"))]
    pub realm: Option<Str<'a>>,
    /// What the request body is to the collector (default `form`).
    pub body: Option<BodyName>,
    /// Further parameters the collector decides on: each at most once, spelt one
    /// way, with a clean value.
    #[serde(borrow)]
    pub single_params: Option<Vec<Str<'a>>>,
}

/// How a route's path matches.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "schema", derive(JsonSchema))]
#[cfg_attr(feature = "schema", serde(rename_all = "snake_case"))]
pub enum PathMatchKind {
    /// The whole canonical path.
    Exact,
    /// Paths that start with it.
    Prefix,
}

names!(PathMatchKind: Exact = "exact", Prefix = "prefix");

/// A token scope.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "schema", derive(JsonSchema))]
#[cfg_attr(feature = "schema", serde(rename_all = "snake_case"))]
pub enum ScopeName {
    Events,
    Sessions,
    AdRevenue,
    Gdpr,
}

names!(ScopeName: Events = "events", Sessions = "sessions", AdRevenue = "ad_revenue", Gdpr = "gdpr");

/// A kind of secret.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "schema", derive(JsonSchema))]
#[cfg_attr(feature = "schema", serde(rename_all = "snake_case"))]
pub enum TokenKind {
    Server,
    Client,
}

names!(TokenKind: Server = "server", Client = "client");

/// The checks a route makes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "schema", derive(JsonSchema))]
#[cfg_attr(feature = "schema", serde(rename_all = "snake_case"))]
pub enum ChecksName {
    /// A token.
    Token,
    /// An Adjust SDK signature.
    Signature,
    /// Both.
    TokenAndSignature,
    /// A token when the request says `s2s=1`, a signature otherwise.
    S2sTokenElseSignature,
}

names!(ChecksName: Token = "token", Signature = "signature", TokenAndSignature = "token_and_signature", S2sTokenElseSignature = "s2s_token_else_signature");

/// What a route's request body is to the collector.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "schema", derive(JsonSchema))]
#[cfg_attr(feature = "schema", serde(rename_all = "snake_case"))]
pub enum BodyName {
    /// The collector may read form parameters: the body is read completely.
    Form,
    /// The collector reads no parameters from the body: it is not read.
    Ignore,
}

names!(BodyName: Form = "form", Ignore = "ignore");

/// A required parameter: its name, or `{"name", "allow_empty"}`.
#[derive(Debug)]
pub enum RequiredParamConfig<'a> {
    Name(Str<'a>),
    Object(RequiredParamObject<'a>),
}

/// A required parameter that may be present but empty.
#[derive(Debug, serde::Deserialize)]
#[cfg_attr(feature = "schema", derive(JsonSchema))]
#[serde(deny_unknown_fields, expecting = "an object")]
pub struct RequiredParamObject<'a> {
    /// The parameter's name.
    #[serde(borrow)]
    #[cfg_attr(feature = "schema", schemars(length(min = 1)))]
    pub name: Str<'a>,
    /// Present but empty is enough (default false).
    pub allow_empty: Option<bool>,
}

impl<'de: 'a, 'a> Deserialize<'de> for RequiredParamConfig<'a> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V<'a>(PhantomData<&'a ()>);
        impl<'de: 'a, 'a> Visitor<'de> for V<'a> {
            type Value = RequiredParamConfig<'a>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a parameter name or {\"name\", \"allow_empty\"}")
            }
            fn visit_borrowed_str<E: de::Error>(self, s: &'de str) -> Result<Self::Value, E> {
                Ok(RequiredParamConfig::Name(Cow::Borrowed(s)))
            }
            fn visit_str<E: de::Error>(self, s: &str) -> Result<Self::Value, E> {
                Ok(RequiredParamConfig::Name(Cow::Owned(s.to_string())))
            }
            fn visit_map<M: MapAccess<'de>>(self, m: M) -> Result<Self::Value, M::Error> {
                RequiredParamObject::deserialize(de::value::MapAccessDeserializer::new(m))
                    .map(RequiredParamConfig::Object)
            }
        }
        d.deserialize_any(V(PhantomData))
    }
}

/// Per-app settings.
#[derive(Debug, serde::Deserialize)]
#[cfg_attr(feature = "schema", derive(JsonSchema))]
#[serde(deny_unknown_fields, expecting = "an object")]
pub struct AppConfig<'a> {
    /// Adjust's "Enable S2S authentication" switch (default false).
    pub authentication: Option<bool>,
    /// The endpoints (by scope) that require authentication (default: all). Not
    /// empty: that would require it nowhere (`authentication: false` says so).
    #[cfg_attr(feature = "schema", schemars(length(min = 1)))]
    pub authentication_scopes: Option<Vec<ScopeName>>,
    /// An app whose signature settings this app inherits.
    #[serde(borrow)]
    pub template: Option<Str<'a>>,
    /// SDK signature settings (the legacy Adjust App Secret scheme).
    #[serde(borrow)]
    pub signature: Option<SignatureConfig<'a>>,
}

/// An app's SDK signature settings; with a template, its own keys override the
/// template's.
#[derive(Debug, Default, serde::Deserialize)]
#[cfg_attr(feature = "schema", derive(JsonSchema))]
#[serde(deny_unknown_fields, expecting = "an object")]
pub struct SignatureConfig<'a> {
    /// Reject requests without a signature (default false).
    pub enforce_signature: Option<bool>,
    /// The app's platforms (informational; default `both`).
    pub platform: Option<Platform>,
    /// Allowed signing-certificate fingerprints (`AA:BB:...`, 20 or 32 bytes): a
    /// list, or one comma-separated string.
    #[serde(borrow)]
    #[cfg_attr(feature = "schema", schemars(with = "Option<CertificateHashes>"))]
    pub android_signature_hash: Option<OneOrList<'a>>,
    /// App Secrets.
    #[serde(borrow)]
    pub secrets: Option<Vec<AppSecretConfig<'a>>>,
    /// Freshness window on `created_at`: seconds or a duration like "30d"
    /// (default 30d).
    pub max_age: Option<Duration>,
    /// Clock skew tolerated for `created_at` ahead of now (default 300 s).
    pub max_future: Option<Duration>,
    /// Signature shapes not verifiable here (default `pass`).
    pub later_sdk: Option<LaterSdkName>,
    /// Signing ids of later shapes that `later_sdk` may pass or flag.
    #[serde(borrow)]
    pub signing_ids: Option<Vec<Str<'a>>>,
    /// Refuse signatures that cover no device id (default false).
    pub require_device_id: Option<bool>,
    /// Oldest SDK accepted per platform.
    #[serde(borrow)]
    pub min_sdk: Option<MinSdkConfig<'a>>,
    /// Memory of accepted signatures.
    pub replay: Option<ReplayConfig>,
}

/// An app's platforms.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "schema", derive(JsonSchema))]
#[cfg_attr(feature = "schema", serde(rename_all = "snake_case"))]
pub enum Platform {
    Ios,
    Android,
    Both,
}

names!(Platform: Ios = "ios", Android = "android", Both = "both");

/// What to do with signature shapes this filter cannot verify.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "schema", derive(JsonSchema))]
#[cfg_attr(feature = "schema", serde(rename_all = "snake_case"))]
pub enum LaterSdkName {
    Pass,
    Flag,
    Reject,
}

names!(LaterSdkName: Pass = "pass", Flag = "flag", Reject = "reject");

/// An App Secret: Secret ID and the four integers, or the joined decimal digits.
#[derive(Debug, serde::Deserialize)]
#[cfg_attr(feature = "schema", derive(JsonSchema))]
#[serde(deny_unknown_fields, expecting = "an object")]
pub struct AppSecretConfig<'a> {
    /// The Secret ID (from 1, unique per app).
    #[cfg_attr(feature = "schema", schemars(range(min = 1, max = 4294967295u64)))]
    pub id: u64,
    /// The four integers info1..info4.
    #[cfg_attr(feature = "schema", schemars(length(min = 4, max = 4)))]
    pub info: Option<Vec<u64>>,
    /// The joined decimal digits of info1..info4 (instead of `info`).
    #[serde(borrow)]
    #[cfg_attr(feature = "schema", schemars(regex(pattern = r"^[0-9]+$")))]
    pub secret: Option<Str<'a>>,
    /// Free text (the dashboard's name for the secret).
    #[serde(borrow)]
    pub name: Option<Str<'a>>,
    /// A deactivated secret keeps its ID; its signatures are refused (default
    /// true).
    pub active: Option<bool>,
}

/// Oldest SDK versions accepted.
#[derive(Debug, serde::Deserialize)]
#[cfg_attr(feature = "schema", derive(JsonSchema))]
#[serde(deny_unknown_fields, expecting = "an object")]
pub struct MinSdkConfig<'a> {
    /// Android SDK version, like "4.18".
    #[serde(borrow)]
    #[cfg_attr(
        feature = "schema",
        schemars(regex(pattern = r"^[0-9]{1,4}\.[0-9]{1,4}$"))
    )]
    pub android: Option<Str<'a>>,
    /// iOS SDK version, like "4.29".
    #[serde(borrow)]
    #[cfg_attr(
        feature = "schema",
        schemars(regex(pattern = r"^[0-9]{1,4}\.[0-9]{1,4}$"))
    )]
    pub ios: Option<Str<'a>>,
}

/// The replay memory of an App Secret.
#[derive(Debug, serde::Deserialize)]
#[cfg_attr(feature = "schema", derive(JsonSchema))]
#[serde(deny_unknown_fields, expecting = "an object")]
pub struct ReplayConfig {
    /// Remember accepted signatures (default true).
    pub enabled: Option<bool>,
    /// Signatures held per freshness window (default 100000).
    #[cfg_attr(feature = "schema", schemars(range(min = 1, max = 10000000)))]
    pub capacity: Option<u64>,
    /// When the memory is full (default `accept`).
    pub when_full: Option<WhenFull>,
}

/// What a full replay memory does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "schema", derive(JsonSchema))]
#[cfg_attr(feature = "schema", serde(rename_all = "snake_case"))]
pub enum WhenFull {
    /// Accept the signature unrecorded (counted).
    Accept,
    /// Refuse it (`replay_memory_full`).
    Reject,
}

names!(WhenFull: Accept = "accept", Reject = "reject");

/// A local answer.
#[derive(Debug, serde::Deserialize)]
#[cfg_attr(feature = "schema", derive(JsonSchema))]
#[serde(deny_unknown_fields, expecting = "an object")]
pub struct ReplyConfig<'a> {
    /// HTTP status.
    #[cfg_attr(feature = "schema", schemars(range(min = 200, max = 599)))]
    pub status: u64,
    /// Response body (default empty).
    #[serde(borrow)]
    pub body: Option<Str<'a>>,
    /// Content type (default `text/plain; charset=utf-8`).
    #[serde(borrow)]
    pub content_type: Option<Str<'a>>,
}

/// Names of the headers s2s-guard owns.
#[derive(Debug, serde::Deserialize)]
#[cfg_attr(feature = "schema", derive(JsonSchema))]
#[serde(deny_unknown_fields, expecting = "an object")]
pub struct UpstreamHeadersConfig<'a> {
    /// The verified token's id (default `x-s2s-guard-token-id`).
    #[serde(borrow)]
    #[cfg_attr(feature = "schema", schemars(with = "Option<HeaderName>"))]
    pub token_id: Option<Str<'a>>,
    /// The verified token's app (default `x-s2s-guard-app`).
    #[serde(borrow)]
    #[cfg_attr(feature = "schema", schemars(with = "Option<HeaderName>"))]
    pub app: Option<Str<'a>>,
    /// The rejection reason in `flag` mode (default `x-s2s-guard-rejection`).
    #[serde(borrow)]
    #[cfg_attr(feature = "schema", schemars(with = "Option<HeaderName>"))]
    pub reason: Option<Str<'a>>,
}

/// The HTTP token source.
#[derive(Debug, serde::Deserialize)]
#[cfg_attr(feature = "schema", derive(JsonSchema))]
#[serde(deny_unknown_fields, expecting = "an object")]
pub struct TokenSourceConfig<'a> {
    /// The Envoy cluster of the source.
    #[serde(borrow)]
    #[cfg_attr(feature = "schema", schemars(length(min = 1)))]
    pub cluster: Str<'a>,
    /// The path of the set at the source.
    #[serde(borrow)]
    #[cfg_attr(feature = "schema", schemars(regex(pattern = r"^/")))]
    pub path: Str<'a>,
    /// `:authority` of the request (default: the cluster name).
    #[serde(borrow)]
    pub authority: Option<Str<'a>>,
    /// Shared-data namespace, unique per plugin in a proxy (default `default`).
    #[serde(borrow)]
    #[cfg_attr(feature = "schema", schemars(regex(pattern = r"^[A-Za-z0-9_-]*$")))]
    pub name: Option<Str<'a>>,
    /// Extra request headers (a credential for the source; never logged).
    #[serde(borrow)]
    #[cfg_attr(
        feature = "schema",
        schemars(with = "Option<std::collections::BTreeMap<String, String>>")
    )]
    pub headers: Option<Named<'a, Str<'a>>>,
    /// Reload period: seconds, or a duration like "3s" or "500ms" (at least 100ms;
    /// default 3s).
    pub period: Option<Millis>,
    /// Per fetch (default 2s).
    pub timeout: Option<Millis>,
    /// Largest set accepted, bytes (default 64 MiB).
    #[cfg_attr(feature = "schema", schemars(range(min = 1, max = 2147483648u64)))]
    pub max_bytes: Option<u64>,
    /// Hex HMAC-SHA256 key (16 bytes at least): sets must carry a bundle signature.
    #[serde(borrow)]
    #[cfg_attr(
        feature = "schema",
        schemars(regex(pattern = r"^([0-9a-fA-F]{2}){16,}$"))
    )]
    pub bundle_key: Option<Str<'a>>,
    /// Age of the last confirmed set after which it is stale.
    pub stale_after: Option<Millis>,
    /// A stale set: keep serving it, or answer 503 (needs `stale_after`; default
    /// `serve`).
    pub when_stale: Option<WhenStale>,
    /// Until the first set: 503, or serve the inline tokens (default `reject`).
    pub before_first: Option<BeforeFirst>,
    /// Who fetches (default `auto`).
    pub role: Option<RoleName>,
    /// `Retry-After` on 503s, seconds or a duration (default: the period).
    pub retry_after: Option<Duration>,
    /// Sets may carry `apps` (default false).
    pub apps_from_set: Option<bool>,
    /// Every worker compiles the set (`copy`), or looks tokens up in shared data
    /// (`shared`, for very large sets). Default `copy`.
    pub lookup: Option<Lookup>,
}

/// A stale token set.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "schema", derive(JsonSchema))]
#[cfg_attr(feature = "schema", serde(rename_all = "snake_case"))]
pub enum WhenStale {
    Serve,
    Reject,
}

names!(WhenStale: Serve = "serve", Reject = "reject");

/// Before the first token set.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "schema", derive(JsonSchema))]
#[cfg_attr(feature = "schema", serde(rename_all = "snake_case"))]
pub enum BeforeFirst {
    Reject,
    Inline,
}

names!(BeforeFirst: Reject = "reject", Inline = "inline");

/// Who fetches from the token source.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "schema", derive(JsonSchema))]
#[cfg_attr(feature = "schema", serde(rename_all = "snake_case"))]
pub enum RoleName {
    /// The filter's workers elect one fetcher per proxy (a lease).
    Auto,
    /// This VM fetches (an Envoy singleton with the same `vm_id`).
    Fetcher,
    /// This VM only reads what another publishes.
    Reader,
}

names!(RoleName: Auto = "auto", Fetcher = "fetcher", Reader = "reader");

/// How workers find tokens of a live set.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "schema", derive(JsonSchema))]
#[cfg_attr(feature = "schema", serde(rename_all = "snake_case"))]
pub enum Lookup {
    Copy,
    Shared,
}

names!(Lookup: Copy = "copy", Shared = "shared");

/// Longest duration accepted anywhere (ten years): beyond it, arithmetic on
/// times could overflow and no window is meaningful.
pub const MAX_DURATION_S: u64 = 10 * 365 * 86_400;

/// Whole seconds: a number, or a duration like "7d" (at most ten years).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Duration(pub u64);

fn too_long<E: de::Error>() -> E {
    E::custom(format!(
        "must be at most {MAX_DURATION_S} seconds (ten years)"
    ))
}

impl<'de> Deserialize<'de> for Duration {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = Duration;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("seconds or a duration like \"7d\"")
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Duration, E> {
                if v > MAX_DURATION_S {
                    return Err(too_long());
                }
                Ok(Duration(v))
            }
            fn visit_str<E: de::Error>(self, s: &str) -> Result<Duration, E> {
                match crate::times::duration_secs(s) {
                    Some(d) if d > MAX_DURATION_S => Err(too_long()),
                    Some(d) => Ok(Duration(d)),
                    None => Err(E::custom(format!(
                        "not a duration (e.g. 30d, 12h, 300s): \"{s}\""
                    ))),
                }
            }
        }
        d.deserialize_any(V)
    }
}

/// Milliseconds: seconds as a number, a duration like "3s", or "500ms".
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Millis(pub u64);

impl<'de> Deserialize<'de> for Millis {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = u64;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("seconds or a duration like \"7d\"")
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<u64, E> {
                Duration::deserialize(de::value::U64Deserializer::<E>::new(v)).map(|d| d.0 * 1000)
            }
            fn visit_str<E: de::Error>(self, s: &str) -> Result<u64, E> {
                // Whole seconds through `Duration`; sub-second values end in "ms".
                let Some(n) = s.strip_suffix("ms") else {
                    return Duration::deserialize(de::value::StrDeserializer::<E>::new(s))
                        .map(|d| d.0 * 1000);
                };
                match n.trim().parse::<u64>() {
                    Ok(v) if v <= MAX_DURATION_S * 1000 => Ok(v),
                    _ => Err(E::custom(format!("not a duration: \"{s}\""))),
                }
            }
        }
        d.deserialize_any(V).map(Millis)
    }
}

/// A list of strings, or one comma-separated string (the App Automation API's
/// form).
#[derive(Debug)]
pub enum OneOrList<'a> {
    Joined(Str<'a>),
    List(Vec<Str<'a>>),
}

impl<'de: 'a, 'a> Deserialize<'de> for OneOrList<'a> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V<'a>(PhantomData<&'a ()>);
        impl<'de: 'a, 'a> Visitor<'de> for V<'a> {
            type Value = OneOrList<'a>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a list or a comma-separated string")
            }
            fn visit_borrowed_str<E: de::Error>(self, s: &'de str) -> Result<Self::Value, E> {
                Ok(OneOrList::Joined(Cow::Borrowed(s)))
            }
            fn visit_str<E: de::Error>(self, s: &str) -> Result<Self::Value, E> {
                Ok(OneOrList::Joined(Cow::Owned(s.to_string())))
            }
            fn visit_seq<S: de::SeqAccess<'de>>(self, mut s: S) -> Result<Self::Value, S::Error> {
                let mut out = Vec::new();
                while let Some(v) = s.next_element::<Str<'a>>()? {
                    out.push(v);
                }
                Ok(OneOrList::List(out))
            }
        }
        d.deserialize_any(V(PhantomData))
    }
}

/// A JSON object whose keys are names (apps, profiles, headers), in document
/// order; a name given twice is an error (JSON parsers disagree on which wins).
#[derive(Debug)]
pub struct Named<'a, T>(pub Vec<(Str<'a>, T)>);

impl<'a, T> Named<'a, T> {
    pub fn iter(&self) -> impl Iterator<Item = (&str, &T)> {
        self.0.iter().map(|(k, v)| (k.as_ref(), v))
    }
}

impl<'de: 'a, 'a, T: Deserialize<'de>> Deserialize<'de> for Named<'a, T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V<'a, T>(PhantomData<(&'a (), T)>);
        impl<'de: 'a, 'a, T: Deserialize<'de>> Visitor<'de> for V<'a, T> {
            type Value = Named<'a, T>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("an object")
            }
            fn visit_map<M: MapAccess<'de>>(self, mut m: M) -> Result<Self::Value, M::Error> {
                let mut out: Vec<(Str<'a>, T)> = Vec::new();
                while let Some(k) = m.next_key::<Str<'a>>()? {
                    if out.iter().any(|(e, _)| *e == k) {
                        return Err(de::Error::custom("is given twice"));
                    }
                    let v = m.next_value::<T>()?;
                    out.push((k, v));
                }
                Ok(Named(out))
            }
        }
        d.deserialize_map(V(PhantomData))
    }
}

#[cfg(feature = "schema")]
impl JsonSchema for Duration {
    fn schema_name() -> Cow<'static, str> {
        "Duration".into()
    }
    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({
            "description": "Whole seconds, or a duration like \"30d\", \"12h\", \"300s\" (at most ten years).",
            "anyOf": [
                {"type": "integer", "minimum": 0, "maximum": MAX_DURATION_S},
                {"type": "string", "pattern": "^[0-9]+ ?[a-zA-Z]+( ?[0-9]+ ?[a-zA-Z]+)*$"}
            ]
        })
    }
}

#[cfg(feature = "schema")]
impl JsonSchema for Millis {
    fn schema_name() -> Cow<'static, str> {
        "DurationMs".into()
    }
    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({
            "description": "Whole seconds, a duration like \"3s\" or \"5m\", or milliseconds like \"500ms\".",
            "anyOf": [
                {"type": "integer", "minimum": 0, "maximum": MAX_DURATION_S},
                {"type": "string", "pattern": "^[0-9]+ ?[a-zA-Z]+( ?[0-9]+ ?[a-zA-Z]+)*$"}
            ]
        })
    }
}

// ---- schema-only types ------------------------------------------------------------
//
// Shapes that the filter reads with its own code (the token store's streaming
// parser, string forms checked in compilation) described for the JSON Schema.

/// The token set: token objects; or Jitsu's shorthands, a client secret or a list
/// of client secrets (ids `client-secret-0`, `client-secret-1`...).
#[cfg(feature = "schema")]
#[derive(JsonSchema)]
#[serde(untagged)]
#[allow(dead_code)]
pub enum Tokens {
    /// Token objects or client secrets.
    List(Vec<TokenEntry>),
    /// One client secret.
    Secret(NonEmpty),
}

/// A required parameter: its name, or `{"name", "allow_empty"}`.
#[cfg(feature = "schema")]
#[derive(JsonSchema)]
#[serde(untagged)]
#[allow(dead_code)]
pub enum RequiredParamSchema<'a> {
    Name(NonEmpty),
    Object(RequiredParamObject<'a>),
}

/// A token, or (Jitsu's shorthand) a client secret.
#[cfg(feature = "schema")]
#[derive(JsonSchema)]
#[serde(untagged)]
#[allow(dead_code)]
pub enum TokenEntry {
    Token(Box<Token>),
    Secret(NonEmpty),
}

/// A non-empty string.
#[cfg(feature = "schema")]
#[derive(JsonSchema)]
#[schemars(transparent)]
#[allow(dead_code)]
pub struct NonEmpty(#[schemars(length(min = 1))] String);

/// A token: exactly one of `secret`/`sha256`, or one or both of the server and
/// client pairs. Every secret must be unique across tokens.
#[cfg(feature = "schema")]
#[derive(JsonSchema)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)]
pub struct Token {
    /// Non-secret identifier: logs, the `token_id` upstream header. Unique.
    #[schemars(length(min = 1))]
    id: String,
    /// Free text.
    name: Option<String>,
    /// The clear secret (hashed at load and not kept).
    #[schemars(length(min = 1))]
    secret: Option<String>,
    /// SHA-256 of the secret, hex (preferred: no clear secret in the configuration).
    sha256: Option<Sha256Hex>,
    /// Kind of `secret`/`sha256` (default `server`).
    kind: Option<TokenKind>,
    /// Jitsu: a server secret of this token.
    #[schemars(length(min = 1))]
    server_secret: Option<String>,
    /// Jitsu: SHA-256 of a server secret, hex.
    server_secret_sha256: Option<Sha256Hex>,
    /// Jitsu: a client secret of this token.
    #[schemars(length(min = 1))]
    client_secret: Option<String>,
    /// Jitsu: SHA-256 of a client secret, hex.
    client_secret_sha256: Option<Sha256Hex>,
    /// The realm the token belongs to (default `default_realm`, or the routes' only
    /// realm).
    realm: Option<RealmName>,
    /// The app the token belongs to (Adjust `app_token`, Swaarm store app).
    app: Option<String>,
    /// Valid for every app of its realm on routes that check the app. Contradicts
    /// `app`.
    all_apps: Option<bool>,
    /// What the token grants (default: every scope of its realm). Not empty: an
    /// empty list would grant every scope; leave it out for a legacy token.
    #[schemars(length(min = 1))]
    scopes: Option<Vec<ScopeName>>,
    /// Deactivated tokens are answered as `inactive` (default true).
    active: Option<bool>,
    /// Start of validity: Unix seconds or RFC 3339.
    not_before: Option<Time>,
    /// End of validity: Unix seconds or RFC 3339.
    expires_at: Option<Time>,
    /// For client secrets: allowed origins (`*`, `*.example.com`, `*suffix`,
    /// `prefix*` or an exact host; default any).
    origins: Option<Vec<String>>,
}

/// SHA-256 digest, 64 hexadecimal characters.
#[cfg(feature = "schema")]
#[derive(JsonSchema)]
#[schemars(transparent)]
#[allow(dead_code)]
pub struct Sha256Hex(#[schemars(regex(pattern = r"^[0-9a-fA-F]{64}$"))] String);

/// Unix seconds, or an RFC 3339 time (`2026-01-31T00:00:00Z`).
#[cfg(feature = "schema")]
#[derive(JsonSchema)]
#[serde(untagged)]
#[allow(dead_code)]
pub enum Time {
    Unix(u64),
    Rfc3339(String),
}

/// A realm name: letters, digits, `-` and `_`, at most 64.
#[cfg(feature = "schema")]
#[derive(JsonSchema)]
#[schemars(transparent)]
#[allow(dead_code)]
pub struct RealmName(#[schemars(regex(pattern = r"^[A-Za-z0-9_-]{1,64}$"))] String);

/// An HTTP method (letters).
#[cfg(feature = "schema")]
#[derive(JsonSchema)]
#[schemars(transparent)]
#[allow(dead_code)]
pub struct Method(#[schemars(regex(pattern = r"^[A-Za-z]+$"))] String);

/// An HTTP header name.
#[cfg(feature = "schema")]
#[derive(JsonSchema)]
#[schemars(transparent)]
#[allow(dead_code)]
pub struct HeaderName(#[schemars(regex(pattern = r"^[!#$%&'*+.^_`|~0-9A-Za-z-]+$"))] String);

/// Where a credential may be: `bearer` (`Authorization: Bearer t`),
/// `authorization` (raw `Authorization: t`), `basic` (Basic user name),
/// `header:<name>`, `query:<name>`, `query_prefix:<prefix>`, `form:<name>`.
#[cfg(feature = "schema")]
#[derive(JsonSchema)]
#[schemars(transparent)]
#[allow(dead_code)]
pub struct CredentialSource(
    #[schemars(regex(
        pattern = r"^(bearer|authorization|basic|header:[!#$%&'*+.^_`|~0-9A-Za-z-]+|query:.+|query_prefix:.+|form:.+)$"
    ))]
    String,
);

/// Certificate fingerprints: a list, or one comma-separated string.
#[cfg(feature = "schema")]
#[derive(JsonSchema)]
#[serde(untagged)]
#[allow(dead_code)]
pub enum CertificateHashes {
    List(Vec<String>),
    Joined(String),
}

/// A custom profile: replies by outcome (`missing`, `wrong`, `inactive`,
/// `expired`, `insufficient_scope`, `wrong_kind`, `origin_denied`, `bad_request`,
/// `unknown_endpoint`, `ambiguous`, `body_too_large`, `method_not_allowed`,
/// `unsupported_media_type`) or `default`; every outcome needs a reply or a
/// `default`, except `method_not_allowed` (405) and `unsupported_media_type` (415).
#[cfg(feature = "schema")]
#[derive(JsonSchema)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)]
pub struct CustomProfile<'a> {
    default: Option<ReplyConfig<'a>>,
    missing: Option<ReplyConfig<'a>>,
    wrong: Option<ReplyConfig<'a>>,
    inactive: Option<ReplyConfig<'a>>,
    expired: Option<ReplyConfig<'a>>,
    insufficient_scope: Option<ReplyConfig<'a>>,
    wrong_kind: Option<ReplyConfig<'a>>,
    origin_denied: Option<ReplyConfig<'a>>,
    bad_request: Option<ReplyConfig<'a>>,
    unknown_endpoint: Option<ReplyConfig<'a>>,
    ambiguous: Option<ReplyConfig<'a>>,
    body_too_large: Option<ReplyConfig<'a>>,
    method_not_allowed: Option<ReplyConfig<'a>>,
    unsupported_media_type: Option<ReplyConfig<'a>>,
}

/// The answer to a rejected signature: an error status.
#[cfg(feature = "schema")]
#[derive(JsonSchema)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)]
pub struct ErrorReply {
    /// HTTP error status.
    #[schemars(range(min = 400, max = 599))]
    status: u64,
    /// Response body (default empty).
    body: Option<String>,
    /// Content type (default `text/plain; charset=utf-8`).
    content_type: Option<String>,
}
