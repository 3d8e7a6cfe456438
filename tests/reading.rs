//! One reading of every request, or a refusal (docs/security.md): each class of
//! double reading found by attacking the filter, as a scenario table run natively
//! against the core and through `dist/s2s-guard.wasm` in the test host.

mod common;

use common::{run_native, Observed, WasmRunner};
use s2s_guard_host::{header_value, Request};

const TOKEN: &str = "v8s5opi0zs45607l8h8c48wak2vxb5oe";
const DIGEST: &str = "599c0d6d86efe0f5743bcd0ba688471c3ff4b0b0ed336bc9efdd3a52493c2283";
const APP: &str = "abc123kuvada7";
const SWAARM: &str = "s2sTokenForTheStoreApp";
const JITSU_SERVER: &str = "5f15eba2-db58-11ea-87d0-0242ac130003";
const FORM: &str = "application/x-www-form-urlencoded";

fn config(extra: &str) -> String {
    format!(
        r#"{{
  "presets": ["adjust", "swaarm", "jitsu"],
  "tokens": [
    {{"id": "adj-events", "realm": "adjust", "sha256": "{DIGEST}", "app": "{APP}", "scopes": ["events", "ad_revenue"]}},
    {{"id": "swaarm", "realm": "swaarm", "secret": "{SWAARM}"}},
    {{"id": "jitsu", "realm": "jitsu", "server_secret": "{JITSU_SERVER}"}}
  ],
  "apps": {{"{APP}": {{"authentication": true}}}}{extra}
}}"#
    )
}

fn c() -> String {
    config("")
}

fn flag() -> String {
    config(r#", "mode": "flag""#)
}

/// Headers held while the body is read (Envoy's `allow_on_headers_stop_iteration`):
/// a query beside a form body is read with it, not refused as sent too early.
fn held() -> String {
    config(r#", "hold_headers_for_body": true"#)
}

fn flag_held() -> String {
    config(r#", "mode": "flag", "hold_headers_for_body": true"#)
}

/// Flag mode with held headers on a route that reads its credential from a header
/// only, with no App Secrets: nothing in a body can be a credential.
fn header_only_flag_held() -> String {
    r#"{"mode": "flag", "hold_headers_for_body": true,
  "routes": [{"path": "/ingest", "profile": "jitsu", "credentials": ["header:x-api-key"], "body": "form"}],
  "tokens": [{"id": "ingest", "secret": "ingest-key-0001"}]}"#
        .to_string()
}

/// Jitsu's routes only: `/event` is no route.
fn jitsu_only() -> String {
    format!(
        r#"{{"presets": ["jitsu"], "tokens": [{{"id": "jitsu", "realm": "jitsu", "server_secret": "{JITSU_SERVER}"}}]}}"#
    )
}

/// A WordPress REST route published under `/wp-json`.
fn wp_json() -> String {
    config(
        r#", "routes": [{"path": "/wp-json/collector/v1/postback", "profile": "swaarm", "realm": "swaarm",
        "credentials": ["query:s2s_token"], "name": "wp_postback"}]"#,
    )
}

/// Jitsu with browser (client) secrets and a server secret.
fn jitsu_client() -> String {
    format!(
        r#"{{"presets": ["jitsu"], "tokens": [{{"id": "jitsu", "realm": "jitsu", "server_secret": "{JITSU_SERVER}"}},
          {{"id": "browser", "realm": "jitsu", "client_secret": "js.client-1"}},
          {{"id": "browser-2", "realm": "jitsu", "client_secret": "js.client-2"}}]}}"#
    )
}

fn prefix() -> String {
    config(
        r#", "routes": [{"path": "/api/v2", "match": "prefix", "realm": "jitsu", "profile": "jitsu",
        "credentials": ["query:token"], "body": "ignore"}]"#,
    )
}

fn no_decode() -> String {
    config(
        r#", "path_normalization": {"decode_unreserved": false},
        "routes": [{"path": "/s2s", "match": "prefix", "realm": "swaarm", "profile": "swaarm", "credentials": ["query:s2s_token"]}]"#,
    )
}

/// One path step switched off (`fold_case`, `ignore_trailing_slash`): the requests
/// it no longer reads as a route are refused when another stack's reading is one.
fn paths_off(step: &str) -> String {
    config(&format!(r#", "path_normalization": {{"{step}": false}}"#))
}

/// An operator's route whose apps are numbers (session 9, round 3, F4).
fn numeric_apps() -> String {
    r#"{"routes": [{"path": "/v1/track", "profile": "swaarm", "methods": ["GET", "POST"], "app_param": "app_id",
      "per_app_enforcement": true, "credentials": ["bearer"], "scope": "events"}],
  "tokens": [{"id": "app42-events", "secret": "tok-for-app-42-aaaaaaaaaaaa", "app": "42", "scopes": ["events"]}],
  "apps": {"42": {"authentication": true}, "1000": {"authentication": true}}}"#
        .to_string()
}

/// An operator's catch-all prefix route of another realm beside the presets, and a
/// nested events-only prefix route (session 10, round 2, F1).
fn catch_all() -> String {
    config(
        r#", "routes": [{"path": "/", "match": "prefix", "profile": "swaarm", "realm": "internal",
        "credentials": ["query:key"], "name": "catchall"}]"#,
    )
    .replace(
        r#"{"id": "swaarm", "realm": "swaarm""#,
        r#"{"id": "internal-svc", "realm": "internal", "secret": "internalKey"},
    {"id": "swaarm", "realm": "swaarm""#,
    )
}

/// A low realm's prefix route around a high realm's exact route, a query credential
/// (session 10, round 3, F1).
fn nested_realms() -> String {
    r#"{"routes": [
    {"path": "/v1", "match": "prefix", "profile": "swaarm", "realm": "low", "credentials": ["query:key", "header:x-key"], "name": "low"},
    {"path": "/v1/admin", "profile": "swaarm", "realm": "high", "credentials": ["query:key", "header:x-key"], "name": "high"},
    {"path": "/pixel", "match": "prefix", "profile": "swaarm", "realm": "low", "credentials": ["query:key", "header:x-key"], "name": "pixel"},
    {"path": "/pixel/track.gif", "profile": "swaarm", "realm": "low", "credentials": ["query:key", "header:x-key"], "name": "track"},
    {"path": "/v1.2/event", "profile": "swaarm", "realm": "low", "credentials": ["query:key", "header:x-key"], "name": "v12"},
    {"path": "/event", "profile": "swaarm", "realm": "high", "credentials": ["query:key", "header:x-key"], "name": "event"}],
  "tokens": [{"id": "lowtok", "secret": "LOW", "realm": "low"}, {"id": "hightok", "secret": "HIGH", "realm": "high"}]}"#
        .to_string()
}

/// Two routes of one realm and token that differ in their body rule (session 10,
/// round 4, F4).
fn body_nested() -> String {
    r#"{"routes": [
    {"path": "/", "match": "prefix", "profile": "swaarm", "realm": "r", "credentials": ["header:x-key"], "body": "ignore", "name": "all"},
    {"path": "/event", "profile": "swaarm", "realm": "r", "credentials": ["header:x-key"], "name": "ev"}],
  "tokens": [{"id": "t", "secret": "K", "realm": "r"}]}"#
        .to_string()
}

/// Apps named by numbers in other spellings (session 9, round 4, F9).
fn numeric_apps_padded() -> String {
    r#"{"routes": [{"path": "/v1/track", "profile": "swaarm", "methods": ["GET", "POST"], "app_param": "app_id",
      "per_app_enforcement": true, "credentials": ["bearer"], "scope": "events"}],
  "tokens": [{"id": "app7-events", "secret": "tok-for-app-7-aaaaaaaaaaaa", "app": "007", "scopes": ["events"]}],
  "apps": {"007": {"authentication": true}}}"#
        .to_string()
}

/// An operator's JSON event API that does not read bodies (F6), methods listed (F7).
fn ignore_body() -> String {
    r#"{"routes": [{"path": "/v1/events", "profile": "swaarm", "methods": ["POST"], "app_param": "app_token",
      "body": "ignore", "credentials": ["bearer"], "scope": "events"}],
  "tokens": [{"id": "appA-events", "secret": "tok-for-app-A-aaaaaaaaaaaa", "app": "appA", "scopes": ["events"]}]}"#
        .to_string()
}

/// An operator's prefix route for public, events-only client tokens beside a GDPR
/// route for operations tokens (session 9, round 2, F2d).
fn track() -> String {
    r#"{"unknown_paths": "reject",
  "routes": [
    {"path": "/track", "match": "prefix", "profile": "swaarm", "credentials": ["bearer"], "scope": "events",
     "token_kinds": ["client", "server"], "body": "ignore", "methods": ["POST"]},
    {"path": "/gdpr_forget_device", "profile": "swaarm", "credentials": ["bearer"], "scope": "gdpr", "methods": ["POST"], "body": "ignore"}],
  "tokens": [{"id": "web-events", "secret": "pubclienttok", "kind": "client", "scopes": ["events"]},
             {"id": "ops-gdpr", "secret": "opsgdprtok", "scopes": ["gdpr"]}]}"#
        .to_string()
}

/// [`track`] with the events-only prefix route at the root, around the GDPR route.
fn nested() -> String {
    track().replace(r#""path": "/track""#, r#""path": "/""#)
}

fn sdk() -> String {
    format!(
        r#"{{"presets": ["adjust_sdk"],
  "apps": {{"{APP}": {{"authentication": true, "signature": {{"enforce_signature": true,
     "secrets": [{{"id": 1, "info": [1, 2, 3, 4]}}]}}}}}}}}"#
    )
}

fn flag_sdk() -> String {
    sdk().replacen('{', r#"{"mode": "flag", "#, 1)
}

fn held_sdk() -> String {
    format!(
        r#"{{"presets": ["adjust_sdk"], "hold_headers_for_body": true,
  "apps": {{"{APP}": {{"authentication": true, "signature": {{"enforce_signature": true,
     "secrets": [{{"id": 1, "info": [1, 2, 3, 4]}}]}}}}}}}}"#
    )
}

struct Case {
    name: String,
    config: String,
    req: Request,
    forwarded: bool,
    status: u16,
    body: Option<&'static str>,
    up: Vec<(&'static str, Option<String>)>,
    up_body: Option<String>,
    /// Counters that must have moved (others may too).
    counts: Vec<&'static str>,
}

fn case(name: impl Into<String>, config: String, req: Request) -> Case {
    Case {
        name: name.into(),
        config,
        req,
        forwarded: true,
        status: 200,
        body: None,
        up: Vec::new(),
        up_body: None,
        counts: Vec::new(),
    }
}

impl Case {
    fn local(mut self, status: u16, body: &'static str) -> Case {
        self.forwarded = false;
        self.status = status;
        self.body = Some(body);
        self
    }
    fn ambiguous(self, class: &'static str) -> Case {
        let class = Box::leak(format!("s2s_guard.ambiguous.class.{class}").into_boxed_str());
        self.local(400, "Ambiguous request")
            .counts(&["s2s_guard.rejected.outcome.ambiguous", class])
    }
    fn up(mut self, name: &'static str, v: Option<&str>) -> Case {
        self.up.push((name, v.map(str::to_string)));
        self
    }
    fn up_body(mut self, b: &str) -> Case {
        self.up_body = Some(b.to_string());
        self
    }
    fn counts(mut self, c: &[&'static str]) -> Case {
        self.counts.extend_from_slice(c);
        self
    }
}

fn bearer() -> String {
    format!("Bearer {TOKEN}")
}

fn form_post(path: &str, body: impl AsRef<[u8]>) -> Request {
    Request::post(path).header("content-type", FORM).body(body)
}

fn cases() -> Vec<Case> {
    let mut out = vec![
        // ---- A. decision inputs with more than one reading -------------------------
        case("A: control: one app, one token", c(),
             Request::post(&format!("/event?s2s=1&app_token={APP}&event_token=e")).header("authorization", bearer()))
            .up("x-s2s-guard-token-id", Some("adj-events")),
        case("A: the reported request: a protected app then another, no token", c(),
             Request::post(&format!("/event?s2s=1&app_token={APP}&app_token=zzz")))
            .ambiguous("repeated"),
        case("A: reverse order", c(), Request::post(&format!("/event?s2s=1&app_token=zzz&app_token={APP}")))
            .ambiguous("repeated"),
        case("A: an empty second value", c(), Request::post(&format!("/event?s2s=1&app_token={APP}&app_token=")))
            .ambiguous("repeated"),
        case("A: one in the query, one in the form body", held(),
             form_post(&format!("/event?s2s=1&app_token={APP}"), "app_token=zzz"))
            .ambiguous("repeated"),
        case("A: a name that decodes to the same name", c(),
             Request::post(&format!("/event?s2s=1&app%5Ftoken={APP}&app_token=zzz")))
            .ambiguous("repeated"),
        case("A: PHP folds a dot", c(), Request::post(&format!("/event?s2s=1&app.token={APP}&app_token=zzz")))
            .ambiguous("spelling"),
        case("A: PHP folds a space", c(), Request::post(&format!("/event?s2s=1&app+token={APP}")))
            .ambiguous("spelling"),
        case("A: PHP folds an open bracket", c(), Request::post(&format!("/event?s2s=1&app[token={APP}")))
            .ambiguous("spelling"),
        case("A: an array spelling", c(), Request::post(&format!("/event?s2s=1&app_token[]={APP}")))
            .ambiguous("spelling"),
        case("A: ';' as a separator (old Rack, Python)", c(),
             Request::post(&format!("/event?s2s=1&x=1;app_token={APP}&app_token=zzz")))
            .ambiguous("separator"),
        case("A: s2s itself twice", c(), Request::post(&format!("/event?s2s=1&s2s=0&app_token={APP}")))
            .ambiguous("repeated"),
        case("A: NUL in the app (a C collector stops there)", c(),
             Request::post(&format!("/event?s2s=1&app_token={APP}%00zzz")))
            .ambiguous("bad_value"),
        case("A: CR LF in a value", c(), Request::post(&format!("/event?s2s=1&app_token=zzz%0d%0a{APP}")))
            .ambiguous("bad_value"),
        case("A: trailing white space", c(), Request::post(&format!("/event?s2s=1&app_token={APP}+")))
            .ambiguous("bad_value"),
        case("A: a broken escape (Go drops the pair, PHP keeps it)", c(),
             Request::post(&format!("/event?s2s=1&app_token={APP}%zz")))
            .ambiguous("bad_escape"),
        case("A: a repeated credential parameter, same value", c(),
             Request::get(&format!("/postback?s2s_token={SWAARM}&s2s_token={SWAARM}&user_id=u&event_id=e")))
            .local(400, "Ambiguous request"),
        case("A: a required parameter given twice", c(),
             Request::get(&format!("/postback?s2s_token={SWAARM}&user_id=u&user_id=v&event_id=e")))
            .local(400, "Ambiguous request"),
        case("A: the shadow pass needs an unambiguous app", c(),
             Request::post(&format!("/event?s2s=1&app_token=unlisted&app_token={APP}")))
            .ambiguous("repeated"),
        case("A: an app that is not protected, named once, is shadow-passed", c(),
             Request::post("/event?s2s=1&app_token=unlisted"))
            .counts(&["s2s_guard.shadow.outcome.missing"]),
        case("A: signature route: the app twice", sdk(),
             Request::post(&format!("/session?app_token={APP}&app_token=zzz")))
            .ambiguous("repeated"),
        case("A: signature route: a device id in query and body", held_sdk(),
             form_post("/session?gps_adid=38400000-8cf0-11bd-b23e-10b96e40000d", format!("app_token={APP}&gps_adid=38400000-8cf0-11bd-b23e-10b96e40000e")))
            .ambiguous("repeated"),
        case("A: a credential header under a second spelling", c(),
             Request::post("/api/v1/s2s/event").header("x-auth-token", JITSU_SERVER).header("x_auth_token", "other"))
            .local(400, r#"{"message":"Ambiguous request"}"#),
        case("A: s2s is 0 or 1, nothing a collector could read as true", c(),
             Request::get(&format!("/event?s2s=true&app_token={APP}&event_token=e")))
            .ambiguous("bad_value"),
        case("A: another route's credential parameter of the realm", c(),
             Request::get("/postback?user_id=u&event_id=e&token=revoked").header("authorization", SWAARM))
            .ambiguous("other_credential"),
        case("A: more parameters than collectors keep", c(),
             form_post("/event?s2s=1", format!("{}&app_token={APP}", vec!["k="; 1000].join("&"))))
            .ambiguous("too_many_params"),
        case("A: flag mode: the marker comes first (PHP keeps the first 1000 fields)", flag(),
             form_post("/event?s2s=1", format!("app_token={APP}&event_token=x")))
            .up_body(&format!("s2s_guard_rejection=missing&app_token={APP}&event_token=x")),
        case("A: Unicode white space a trimming collector removes (NBSP)", c(),
             Request::get(&format!("/event?s2s=1&app_token={APP}%C2%A0&event_token=x")))
            .ambiguous("bad_value"),
        case("A: ... (BOM, leading, in a form body)", c(),
             form_post("/event?s2s=1", format!("app_token=%EF%BB%BF{APP}&event_token=x")))
            .ambiguous("bad_value"),
        case("A: an app named in another case (case-insensitive lookups)", c(),
             Request::get(&format!("/event?s2s=1&app_token={}&event_token=x", APP.to_uppercase())))
            .ambiguous("spelling"),
        case("A: the route's query credential sent in the form body", held(),
             form_post("/postback?user_id=u&event_id=e", "s2s_token=revoked").header("authorization", SWAARM))
            .ambiguous("other_credential"),
        case("A: flag mode: a refusal known at the headers is marked first in the body, client copies removed", flag(),
             form_post("/event?s2s=2", format!("app_token={APP}&event_token=x&s2s_guard_rejection=")))
            .up_body(&format!("s2s_guard_rejection=ambiguous&app_token={APP}&event_token=x")),
        case("A: flag mode: an unreadable body cannot be marked: refused", flag(),
             Request::post("/event?s2s=1").header("content-type", "multipart/form-data; boundary=x")
                .body("--x\r\nContent-Disposition: form-data; name=\"s2s_guard_rejection\"\r\n\r\n\r\n--x--\r\n"))
            .local(415, "Unsupported request body"),
        // ---- B. bodies the filter does not read --------------------------------------
        case("B: multipart/form-data", c(),
             Request::post("/event?s2s=1").header("content-type", "multipart/form-data; boundary=x")
                .body(format!("--x\r\nContent-Disposition: form-data; name=\"app_token\"\r\n\r\n{APP}\r\n--x--\r\n")))
            .local(415, "Unsupported request body")
            .counts(&["s2s_guard.rejected.outcome.unsupported_media_type"]),
        case("B: a media type list", c(),
             Request::post("/event?s2s=1").header("content-type", "application/x-www-form-urlencoded, text/plain").body(format!("app_token={APP}")))
            .local(415, "Unsupported request body"),
        case("B: a trailing comma", c(),
             Request::post("/event?s2s=1").header("content-type", "application/x-www-form-urlencoded,").body(format!("app_token={APP}")))
            .local(415, "Unsupported request body"),
        case("B: a space-separated list", c(),
             Request::post("/event?s2s=1").header("content-type", "application/x-www-form-urlencoded text/plain").body(format!("app_token={APP}")))
            .local(415, "Unsupported request body"),
        case("B: a body without Content-Type (Rack reads it as a form)", c(),
             Request::post("/event?s2s=1").body(format!("app_token={APP}")))
            .local(415, "Unsupported request body"),
        case("B: another charset", c(),
             Request::post("/event?s2s=1").header("content-type", "application/x-www-form-urlencoded; charset=utf-16").body(format!("app_token={APP}")))
            .local(415, "Unsupported request body"),
        case("B: a gzip form body (Express inflates it)", c(),
             form_post("/event?s2s=1", b"\x1f\x8b\x08\0").header("content-encoding", "gzip"))
            .local(415, "Unsupported request body"),
        // Round 10b (helper-49, N1): a transfer coding but chunked, which Envoy's
        // HTTP/1 codec refuses first; refused here whatever the proxy.
        case("B: a transfer coding but chunked (gzip, chunked)", c(),
             form_post("/event?s2s=1", format!("app_token={APP}")).header("transfer-encoding", "gzip, chunked"))
            .local(415, "Unsupported request body"),
        case("B: ... chunked alone is read", c(),
             form_post("/event?s2s=1", format!("app_token={APP}")).header("transfer-encoding", "Chunked"))
            .local(202, "Missing authentication token"),
        case("B: a GET with a form body (Express and Rack read it)", c(),
             Request::get("/event?s2s=1").header("content-type", FORM).body(format!("app_token={APP}")))
            .ambiguous("body_on_method"),
        case("B: a form body is read and decided", c(),
             form_post("/event?s2s=1", format!("app_token={APP}")))
            .local(202, "Missing authentication token"),
        case("B: a JSON API route ignores its body (Jitsu)", c(),
             Request::post("/api/v1/s2s/event").header("x-auth-token", JITSU_SERVER)
                .header("content-type", "application/json").header("content-encoding", "gzip").body("{\"token\":\"x\"}"))
            .up("x-s2s-guard-token-id", Some("jitsu"))
            .up_body("{\"token\":\"x\"}"),
        case("B: a body shorter than its Content-Length is not decided", c(),
             form_post("/event?s2s=1", format!("app_token={APP}")).header("content-length", "99").header("authorization", bearer()))
            .ambiguous("body_length"),
        // ---- C. the end of the request -------------------------------------------------
        case("C: HTTP/2 form POST with trailers and no token is decided, not forwarded", c(),
             form_post("/event?s2s=1", format!("app_token={APP}")).http2().trailer("x-checksum", "1"))
            .local(202, "Missing authentication token")
            .counts(&["s2s_guard.rejected.outcome.missing"]),
        case("C: ... in several chunks", c(),
             form_post("/event?s2s=1", format!("app_token={APP}&event_token=e")).http2().chunked(3).trailer("x-checksum", "1"))
            .local(202, "Missing authentication token"),
        case("C: ... with a valid token it is forwarded whole", c(),
             form_post("/event?s2s=1", format!("app_token={APP}&event_token=e")).http2().chunked(4)
                .trailer("x-checksum", "1").header("authorization", bearer()))
            .up_body(&format!("app_token={APP}&event_token=e")),
        case("C: a second app in the body is found at the true end", held(),
             form_post(&format!("/event?s2s=1&app_token={APP}"), "app_token=zzz").http2().trailer("x-checksum", "1")
                .header("authorization", bearer()))
            .ambiguous("repeated"),
        case("C: a trailer naming a header the decision reads", c(),
             form_post("/event?s2s=1", format!("app_token={APP}")).http2().header("authorization", bearer())
                .trailer("authorization", "Bearer other"))
            .ambiguous("trailer"),
        case("C: HTTP/1.1 trailers never reach filters or the collector", c(),
             form_post("/event?s2s=1", format!("app_token={APP}")).trailer("authorization", "Bearer other"))
            .local(202, "Missing authentication token"),
        // ---- D. paths and methods ----------------------------------------------------
        case("D: PUT", c(), Request::new("PUT", &format!("/event?s2s=1&app_token={APP}")))
            .local(405, "Method not allowed"),
        case("D: PATCH", c(), Request::new("PATCH", &format!("/event?s2s=1&app_token={APP}")))
            .local(405, "Method not allowed"),
        case("D: lower-case post", c(), Request::new("post", &format!("/event?s2s=1&app_token={APP}")))
            .local(405, "Method not allowed"),
        case("D: method on a path variant", c(), Request::new("DELETE", &format!("/EVENT/?s2s=1&app_token={APP}")))
            .local(405, "Method not allowed"),
        case("D: ';' parameters on a protected path", c(), Request::post(&format!("/event;a=b?s2s=1&app_token={APP}")))
            .ambiguous("path"),
        case("D: an encoded slash", c(), Request::post(&format!("/event%2F?s2s=1&app_token={APP}")))
            .ambiguous("path"),
        case("D: an encoded backslash", c(), Request::post(&format!("/x%5C..%5Cevent?s2s=1&app_token={APP}")))
            .ambiguous("path"),
        case("D: NUL in the path", c(), Request::post(&format!("/event%00.css?s2s=1&app_token={APP}")))
            .ambiguous("path"),
        case("D: double encoding", c(), Request::post(&format!("/%2565vent?s2s=1&app_token={APP}")))
            .ambiguous("path"),
        // A fragment: Go keeps `#...` in the query value or path, Node, Python and PHP
        // cut it off (Envoy rejects it unless its unsafe runtime guards are set).
        case("D: '#' inside a query value", c(),
             Request::post(&format!("/event?s2s=1&app_token={APP}#x")).header("authorization", bearer()))
            .ambiguous("path"),
        case("D: '#' before the query", c(),
             Request::post(&format!("/event#?s2s=1&app_token={APP}")).header("authorization", bearer()))
            .ambiguous("path"),
        case("D: '#' on an unknown path that reads as a protected one when kept", c(),
             Request::post(&format!("/x#/../event?s2s=1&app_token={APP}")))
            .ambiguous("path"),
        case("D: '#' on an unknown path", c(), Request::get("/health?check=1#top"))
            .ambiguous("path"),
        // Absolute form: Go and Express route its path part (Envoy rewrites or
        // rejects it first).
        case("D: an absolute-form path naming a protected route", c(),
             Request::post(&format!("http://s2s.adjust.com/event?s2s=1&app_token={APP}")))
            .ambiguous("path"),
        case("D: an absolute-form path", c(), Request::get("http://collector/health"))
            .ambiguous("path"),
        case("P: OPTIONS *", c(), Request::new("OPTIONS", "*")),
        // A UTF-8 BOM before a form body: Express (iconv-lite) drops it, every other
        // stack keeps it in the first name.
        case("D: a BOM before a form body's app_token", c(),
             form_post("/event", format!("\u{feff}app_token={APP}&s2s=1&event_token=x")))
            .ambiguous("spelling"),
        case("D: a BOM before a second app in the body of a verified request", held(),
             form_post(&format!("/event?s2s=1&app_token={APP}"), "\u{feff}app_token=victimapp99")
                 .header("authorization", bearer()))
            .ambiguous("spelling"),
        case("D: a BOM before a later field's name (JavaScript's trim drops it)", held(),
             form_post(&format!("/event?s2s=1&app_token={APP}"), "event_token=x&\u{feff}app_token=otherapp123")
                 .header("authorization", bearer()))
            .ambiguous("spelling"),
        case("D: an NBSP after a field's name", held(),
             form_post(&format!("/event?s2s=1&app_token={APP}"), "event_token=x&app_token%C2%A0=otherapp123")
                 .header("authorization", bearer()))
            .ambiguous("spelling"),
        case("D: a BOM before an unrelated field", held(),
             form_post(&format!("/event?s2s=1&app_token={APP}"), "\u{feff}event_token=x")
                 .header("authorization", bearer()))
            .ambiguous("spelling"),
        // The SDK path verifies signatures, never a Bearer or raw token: one sent
        // there is not passed on (a collector's logs, one reading Bearer whatever
        // `s2s` says).
        case("P: a Bearer on the SDK path is not passed on", sdk(),
             Request::get("/event?app_token=otherapp1234&event_token=x").header("authorization", bearer()))
            .up("authorization", None),
        case("P: a raw token on the SDK path of a signing app is not passed on",
             sdk().replace("\"enforce_signature\": true", "\"enforce_signature\": false"),
             Request::get(&format!("/event?app_token={APP}&event_token=x")).header("authorization", TOKEN))
            .up("authorization", None),
        // An app name only Unicode folding or collation matches to a configured one
        // (Python casefold, JavaScript localeCompare, SQL _ci/_ai collations).
        // Refused at the headers, whatever the body holds: an early refusal is never
        // turned into "wait for the body" (the body then went on undecided).
        case("D: the app in another case, before a form body", held(),
             form_post("/event?s2s=1&app_token=ABC123KUVADA7", "event_token=x"))
            .ambiguous("spelling"),
        case("D: a non-ASCII app, before a form body", held(),
             form_post("/event?s2s=1&app_token=abc123kuvada7%C3%A9", "s2s="))
            .ambiguous("spelling"),
        case("D: KELVIN SIGN for k in the app", c(),
             Request::get("/event?s2s=1&app_token=abc123%E2%84%AAuvada7&event_token=x"))
            .ambiguous("spelling"),
        case("D: a fullwidth letter in the app", c(),
             Request::get("/event?s2s=1&app_token=%EF%BD%81bc123kuvada7&event_token=x"))
            .ambiguous("spelling"),
        case("D: a soft hyphen after the app", c(),
             Request::get("/event?s2s=1&app_token=abc123kuvada7%C2%AD&event_token=x"))
            .ambiguous("spelling"),
        case("D: a format suffix on a protected path (Rails, older Spring)", c(),
             Request::get(&format!("/event.json?s2s=1&app_token={APP}")))
            .ambiguous("path"),
        case("D: a format suffix with dots (Spring suffix patterns)", c(),
             Request::get(&format!("/event..json?s2s=1&app_token={APP}")))
            .ambiguous("path"),
        case("D: a format suffix with two extensions", c(),
             Request::get(&format!("/event.json.gz?s2s=1&app_token={APP}")))
            .ambiguous("path"),
        case("D: a trailing encoded space (older Spring trims it)", c(),
             Request::get(&format!("/event%20?s2s=1&app_token={APP}")))
            .ambiguous("path"),
        case("D: dot segments out of a prefix route (Express, Flask, Rack mounts keep them)", prefix(),
             Request::post("/api/v2/.."))
            .ambiguous("path"),
        case("D: ... encoded", prefix(), Request::post("/api/v2/x/%2e%2e/.."))
            .ambiguous("path"),
        // Cold attack, session 9 (F1, F2): what one stack decodes or strips (`;`,
        // `%u`, `%25`, `\\`) another keeps in its segment, and the dots after it
        // stay under the prefix (Express mounts, Flask `<path:>`, Go's ServeMux,
        // gin's `/api.:ignored`).
        case("D: ';' hides dot segments from a prefix (Tomcat climbs out, Express stays)", prefix(),
             Request::post("/api/v2/..;/x"))
            .ambiguous("path"),
        case("D: ... several, upper case", prefix(), Request::post("/API/V2/x/..;/..;/y"))
            .ambiguous("path"),
        case("D: ... with a suffix", prefix(), Request::post("/api/v2/..;.json/x"))
            .ambiguous("path"),
        case("D: ... %u dots (IIS climbs out, Flask stays)", prefix(), Request::post("/api/v2/%u002e%u002e/x"))
            .ambiguous("path"),
        case("D: ... one dot escaped with %u", prefix(), Request::post("/api/v2/.%U002E/x"))
            .ambiguous("path"),
        case("D: ... double-encoded dots", prefix(), Request::post("/api/v2/%252e%252e/x"))
            .ambiguous("path"),
        case("D: ... %u then ';'", prefix(), Request::post("/api/v2/..%u003b/x"))
            .ambiguous("path"),
        case("D: ... a backslash before the dots (gin, Flask, Go read it literally)", prefix(),
             Request::post("/api/v2/web\\..\\.."))
            .ambiguous("path"),
        case("D: Jitsu's /api. route: a backslash before dots in its segment", c(),
             Request::post("/api.x\\..").header("content-type", "application/json").body("{}"))
            .ambiguous("path"),
        case("D: ... escaped", c(),
             Request::post("/api.x%5C%2E%2E").header("content-type", "application/json").body("{}"))
            .ambiguous("path"),
        case("D: ... with %u (passes Envoy's normalisation unchanged)", c(),
             Request::post("/api.x%u005c..").header("content-type", "application/json").body("{}"))
            .ambiguous("path"),
        case("D: %u decoded, ';' kept (IIS reads /api/v2/..;/x)", prefix(), Request::post("/%u0061pi/v2/..;/x"))
            .ambiguous("path"),
        // Reading a path every other way has a budget: a path built to multiply its
        // readings (thousands of segments naming files, every feature stacks read
        // two ways) is refused at once, never read for seconds.
        case("D: thousands of script segments in an unknown path", prefix(),
             Request::get(&format!("/zzz{}", "/a.php".repeat(10_000))))
            .ambiguous("path"),
        case("D: ... with every feature read two ways", prefix(),
             Request::get(&format!("/zzz{}", "/s\\x;y%u0061b%2Fc%2541d%zz..e/f.json/(S(x))/index.php".repeat(1_000))))
            .ambiguous("path"),
        case("D: ... a long unknown path naming a file is still not ours", prefix(),
             Request::get(&format!("/static{}/app.min.js", "/abcdefgh".repeat(1_000))))
            .up(":path", Some(&format!("/static{}/app.min.js", "/abcdefgh".repeat(1_000)))),
        case("D: a raw white-space segment, where a host lets one through (older Spring trims it)", c(),
             Request::get(&format!("/ /event?s2s=1&app_token={APP}&event_token=x")))
            .ambiguous("path"),
        case("D: ... IIS's escaped space as a segment", c(),
             Request::get(&format!("/%u0020/event?s2s=1&app_token={APP}&event_token=x")))
            .ambiguous("path"),
        // Session 9, round 2 (helper-30). F1: two slashes start an authority to
        // a URL parser (Node's WHATWG `URL`, Java's `URI`): `//host/postback` is
        // `/postback` there, with `merge_slashes` off in Envoy.
        case("D: //host/route: the first segment read as an authority", c(),
             Request::get("//collector/postback?user_id=u1&event_id=purchase"))
            .ambiguous("path"),
        case("D: ... with userinfo and port", c(), Request::get("//u@x:80/postback?user_id=u1&event_id=purchase"))
            .ambiguous("path"),
        case("D: ... three slashes", c(), Request::get("///x/postback?user_id=u1&event_id=purchase"))
            .ambiguous("path"),
        case("D: ... a backslash for the second slash", c(), Request::get("/\\x/postback?user_id=u1&event_id=purchase"))
            .ambiguous("path"),
        case("D: ... onto a prefix route", prefix(), Request::post("//host/api/v2/x"))
            .ambiguous("path"),
        case("D: //event is still /event (no route behind its authority)", c(),
             Request::post(&format!("//event?s2s=1&app_token={APP}")).header("authorization", bearer()))
            .up(":path", Some(&format!("/event?s2s=1&app_token={APP}")))
            .up("x-s2s-guard-token-id", Some("adj-events")),
        // F2: root-path headers move the collector's route (Daphne from any
        // client, gunicorn's SCRIPT_NAME from a loopback sidecar, middlewares).
        case("D: Daphne-Root-Path strips /x from /x/postback (Django on Daphne)", c(),
             Request::get("/x/postback?user_id=u1&event_id=purchase").header("daphne-root-path", "/x"))
            .ambiguous("path"),
        case("D: ... SCRIPT_NAME (gunicorn)", c(),
             Request::get("/x/postback?user_id=u1&event_id=purchase").header("script_name", "/x"))
            .ambiguous("path"),
        case("D: ... X-Script-Name (a Flask middleware)", c(),
             Request::post("/x/api/v1/s2s/event").header("x-script-name", "/x/"))
            .ambiguous("path"),
        case("D: ... X-Forwarded-Prefix (a Starlette middleware), escaped", c(),
             Request::get(&format!("/x/event?s2s=1&app_token={APP}")).header("x-forwarded-prefix", "%2Fx"))
            .ambiguous("path"),
        case("D: ... a root path naming no protected route is not ours", c(),
             Request::get("/app/static/a.js").header("daphne-root-path", "/app"))
            .up(":path", Some("/app/static/a.js")),
        case("D: ... nor one that is no prefix of the path", c(),
             Request::post(&format!("/event?s2s=1&app_token={APP}")).header("authorization", bearer()).header("x-forwarded-prefix", "/v1"))
            .up("x-s2s-guard-token-id", Some("adj-events")),
        case("D: F2d: a root path turns an events-only prefix route into the GDPR route", track(),
             Request::post("/track/gdpr_forget_device").header("authorization", "Bearer pubclienttok")
                 .header("daphne-root-path", "/track"))
            .ambiguous("path"),
        case("D: ... the prefix route itself still takes the client token", track(),
             Request::post("/track/web").header("authorization", "Bearer pubclienttok"))
            .up("x-s2s-guard-token-id", Some("web-events")),
        // Session 10 (helper-34) F1: Daphne and the X-Script-Name middlewares
        // strip the decoded root path from the decoded path: `/x?y` is a prefix of
        // `/x%3Fy/postback` there (Daphne + Django, gunicorn + Flask, run).
        case("D: a root path matching the percent-decoded path (Daphne)", c(),
             Request::get("/x%3Fy/postback?user_id=u1&event_id=purchase").header("daphne-root-path", "/x?y"))
            .ambiguous("path"),
        case("D: ... an escaped space (X-Script-Name, Flask)", c(),
             Request::get("/x%20y/postback?user_id=u1&event_id=purchase").header("x-script-name", "/x y"))
            .ambiguous("path"),
        case("D: ... onto an Adjust route", c(),
             Request::get(&format!("/x%3Ay/session?s2s=1&app_token={APP}")).header("daphne-root-path", "/x:y"))
            .ambiguous("path"),
        case("D: ... an escaped slash ending the root path (Daphne decodes it)", c(),
             Request::post("/x%2Fapi/v1/s2s/event").header("daphne-root-path", "/x"))
            .ambiguous("path"),
        case("D: ... a decoded root path naming no protected route is not ours", c(),
             Request::get("/x%3Fy/static/a.js").header("daphne-root-path", "/x?y"))
            .up(":path", Some("/x%3Fy/static/a.js")),
        // Session 10, round 2 (helper-35) F1: a format suffix under a prefix route
        // is another protected route to Rails (`/event.json` is `/event`, run on
        // ActionDispatch 6.1) and older Spring: the prefix route's token opened it.
        case("D: a format suffix under a catch-all prefix route reaches /event", catch_all(),
             Request::get(&format!("/event.json?s2s=1&app_token={APP}&event_token=x&key=internalKey")))
            .ambiguous("path"),
        case("D: ... the SDK route, unsigned", catch_all(),
             Request::get(&format!("/session.json?s2s=1&app_token={APP}&key=internalKey")))
            .ambiguous("path"),
        case("D: ... Jitsu's server route", catch_all(), Request::post("/api/v1/s2s/event.json?key=internalKey"))
            .ambiguous("path"),
        case("D: ... an events-only catch-all's client token on the GDPR route", nested(),
             Request::post("/gdpr_forget_device.json").header("authorization", "Bearer pubclienttok"))
            .ambiguous("path"),
        case("D: ... that token on its own route's paths with a suffix", nested(),
             Request::post("/web/x.json").header("authorization", "Bearer pubclienttok"))
            .up("x-s2s-guard-token-id", Some("web-events")),
        case("D: ... the catch-all's own paths with a suffix stay its own", catch_all(),
             Request::get("/static/app.json?key=internalKey"))
            .up("x-s2s-guard-token-id", Some("internal-svc")),
        case("D: ... the literal route itself is the route's", catch_all(),
             Request::get(&format!("/event?s2s=1&app_token={APP}&event_token=x&key=internalKey")))
            .local(202, "Missing authentication token"),
        // F2: a front controller in a directory serves that directory's paths:
        // `/api/index.php/v1/s2s/event` is `/api/v1/s2s/event` (PHP 8.2, run).
        case("D: a script in a directory: the path without it (PHP front controller at /api)", c(),
             Request::post("/api/index.php/v1/s2s/event").header("content-type", "application/json").body("{}"))
            .ambiguous("path"),
        case("D: ... deeper in the path", c(),
             Request::post("/api/v1/index.php/s2s/event").header("content-type", "application/json").body("{}"))
            .ambiguous("path"),
        case("D: ... under a prefix route of another realm", catch_all(),
             Request::post("/api/index.php/v1/events/bulk?key=internalKey").header("content-type", "application/json").body("[]"))
            .ambiguous("path"),
        case("D: ... CodeIgniter's /?/ in a directory", c(),
             Request::post("/api/?/v1/s2s/event").header("content-type", "application/json").body("{}"))
            .ambiguous("path"),
        case("D: ... and after a script in a directory", c(),
             Request::post("/api/index.php?/v1/s2s/event").header("content-type", "application/json").body("{}"))
            .ambiguous("path"),
        case("D: ... a script whose path without it is no route is not ours", c(),
             Request::get("/app/index.php/static/a.js"))
            .up(":path", Some("/app/index.php/static/a.js")),
        // Session 10, round 3 (helper-36) F1: the target is read as it goes
        // upstream: taking the credential (or a client copy of the marker) out of
        // the query made `/v1/index.php?/admin&key=LOW` CodeIgniter's `/v1/admin`
        // (run on CodeIgniter 4.1.3).
        case("D: a query reading made by stripping the credential (CodeIgniter)", nested_realms(),
             Request::get("/v1/index.php?/admin&key=LOW"))
            .ambiguous("path"),
        case("D: ... the credential first", nested_realms(), Request::get("/v1/index.php?key=LOW&/admin"))
            .ambiguous("path"),
        case("D: ... by taking out a client copy of the marker", nested_realms(),
             Request::get("/v1/index.php?/admin&s2s_guard_rejection=1").header("x-key", "LOW"))
            .ambiguous("path"),
        case("D: ... a catch-all's key onto /event", catch_all(), Request::get("/?/event&key=internalKey"))
            .ambiguous("path"),
        case("D: ... a query credential taken out of an ordinary query goes on", nested_realms(),
             Request::get("/v1/things?a=1&key=LOW"))
            .up(":path", Some("/v1/things?a=1"))
            .up("x-s2s-guard-token-id", Some("lowtok")),
        // F2: a controller's default action (`/postback/index`) under MVC routers.
        case("D: /route/index is the route to an MVC router (CodeIgniter auto-routing)", c(),
             Request::get("/postback/index?user_id=u1&event_id=purchase"))
            .ambiguous("path"),
        case("D: ... with an argument, any case", c(), Request::get("/Postback/Index/x?user_id=u1&event_id=purchase"))
            .ambiguous("path"),
        case("D: ... under a prefix route of another realm", nested_realms(), Request::get("/v1/admin/index?key=LOW"))
            .ambiguous("path"),
        // N1: CodeIgniter's translate_uri_dashes.
        case("D: dashes for underscores (CodeIgniter translate_uri_dashes)", c(),
             Request::post(&format!("/gdpr-forget-device?s2s=1&app_token={APP}")))
            .ambiguous("path"),
        // F3: no false positives from dotted segments that are no scripts, or
        // readings onto a route that asks the same of a request.
        case("D: an exact dotted route inside a prefix route with the same token", nested_realms(),
             Request::get("/pixel/track.gif?key=LOW"))
            .up("x-s2s-guard-token-id", Some("lowtok")),
        case("D: a version segment is no script", nested_realms(), Request::get("/v1.2/event?key=LOW"))
            .up("x-s2s-guard-token-id", Some("lowtok")),
        case("D: a domain segment is no script", catch_all(), Request::get("/tenants/acme.com/event?key=internalKey"))
            .up("x-s2s-guard-token-id", Some("internal-svc")),
        case("D: ... but a script is, whatever its case and extensions", catch_all(),
             Request::get("/tenants/run.PHP.bak/event?key=internalKey"))
            .ambiguous("path"),
        // Session 10, round 4 (helper-37) F1: readings combined (a script's tail,
        // then a default action; run on CodeIgniter 4.1.3).
        case("D: a script's tail, then a default action (/index.php/event/index)", c(),
             Request::get(&format!("/index.php/event/index?s2s=1&app_token={APP}&event_token=x")))
            .ambiguous("path"),
        case("D: ... then a format suffix too", c(),
             Request::get(&format!("/index.php/event/index.json?s2s=1&app_token={APP}&event_token=x")))
            .ambiguous("path"),
        case("D: ... onto Jitsu's server route", c(),
             Request::post("/api.php/api/v1/s2s/event/index").header("content-type", "application/json").body("{}"))
            .ambiguous("path"),
        // F2: a script last serves its directory (Apache's DirectoryIndex, run).
        case("D: a script last is its directory (/event/index.php)", c(),
             Request::get(&format!("/event/index.php?s2s=1&app_token={APP}&event_token=x")))
            .ambiguous("path"),
        case("D: ... IIS's default document", c(),
             Request::get(&format!("/event/Default.aspx?s2s=1&app_token={APP}&event_token=x")))
            .ambiguous("path"),
        // F3: CGI scripts without an extension (Apache's ScriptAlias /cgi-bin/, run).
        case("D: a CGI script under /cgi-bin/ without an extension", c(),
             Request::get(&format!("/cgi-bin/collect/event?s2s=1&app_token={APP}&event_token=x")))
            .ambiguous("path"),
        // F4: routes that differ in their body rule do not ask the same.
        case("D: a reading onto a route with another body rule", body_nested(),
             Request::post("/index.php/event").header("x-key", "K").header("content-type", "application/json").body("{}"))
            .ambiguous("path"),
        // Session 10, round 5 (helper-38) F1: a script's name glued to the route
        // (Symfony, so Laravel, strips the script as a plain prefix: run on
        // Symfony 5.4 with Laravel's rewrite rules).
        case("D: /index.phpevent is /event to Symfony", c(),
             Request::get(&format!("/index.phpevent?s2s=1&app_token={APP}&event_token=x")))
            .ambiguous("path"),
        case("D: ... in a directory, onto Jitsu's server route", c(),
             Request::post("/x/index.phpapi/v1/s2s/event").header("content-type", "application/json").body("{}"))
            .ambiguous("path"),
        // F2: front controllers routing a query parameter (ThinkPHP, Phalcon, Drupal 7).
        case("D: ThinkPHP's s= on the root", c(), Request::get("/?s=/postback&user_id=u1&event_id=purchase"))
            .ambiguous("path"),
        case("D: ... Phalcon's _url on index.php", c(), Request::get("/index.php?_url=/postback&user_id=u1&event_id=purchase"))
            .ambiguous("path"),
        case("D: ... Drupal's q without a slash", c(), Request::get("/index.php?q=postback&user_id=u1&event_id=purchase"))
            .ambiguous("path"),
        case("D: ... on any path (the rewrites send every path to the script)", c(), Request::get("/search?q=postback"))
            .ambiguous("path"),
        case("D: ... a search parameter naming no route is not ours", c(), Request::get("/search?q=shoes"))
            .up(":path", Some("/search?q=shoes")),
        // F3: two scripts, each read.
        case("D: two scripts: the first's tail, then the second in its directory", c(),
             Request::post("/index.php/api/index.php/v1/s2s/event").header("content-type", "application/json").body("{}"))
            .ambiguous("path"),
        // F3: CodeIgniter routes a query starting with `/` on its front controller.
        case("D: /?/route (CodeIgniter reads the query as the path)", c(),
             Request::get("/?/postback?user_id=u1&event_id=purchase"))
            .ambiguous("path"),
        case("D: ... /index.php?/route with a form body", c(),
             form_post("/index.php?/event", format!("s2s=1&app_token={APP}&event_token=x")))
            .ambiguous("path"),
        case("D: ... a query naming no route is not ours", c(), Request::get("/?/static/a.js"))
            .up(":path", Some("/?/static/a.js")),
        // N1: Java's equalsIgnoreCase reads ſ, ı and the Kelvin sign as s, i, k.
        case("D: ſ for s in a route (Spring with case-insensitive matching)", c(),
             Request::get("/po%C5%BFtback?user_id=u1&event_id=purchase"))
            .ambiguous("path"),
        case("D: ... the Kelvin sign for k", c(), Request::get("/clic%E2%84%AA?s2stoken=x"))
            .ambiguous("path"),
        case("D: ... ı for i, onto a prefix route", prefix(), Request::post("/ap%C4%B1/v2/x"))
            .ambiguous("path"),
        case("D: ... a letter outside ASCII elsewhere is not ours", c(), Request::get("/caf%C3%A9/menu"))
            .up(":path", Some("/caf%C3%A9/menu")),
        // Session 11, round 1 (helper-39) F1: `new URLSearchParams(string)` drops a
        // leading `?` (Node's `Request.formData()`, Hono, h3/Nuxt `readBody`, Koa 3's
        // query), PHP's built-in server every leading `?` of the query (verified).
        case("A: ?app_token first in a form body (URLSearchParams reads app_token)", c(),
             form_post("/event", format!("?app_token={APP}&s2s=1&event_token=xyzklm")))
            .ambiguous("spelling"),
        case("A: ... first in the query (/event??app_token: Koa 3, php -S)", c(),
             Request::get(&format!("/event??app_token={APP}&s2s=1&event_token=xyzklm")))
            .ambiguous("spelling"),
        case("A: ... every leading ? (php -S drops them all), on the GDPR route", c(),
             form_post("/gdpr_forget_device", format!("???app_token={APP}&s2s=1&gps_adid=11110111-2345-6789-1122-000000005678")))
            .ambiguous("spelling"),
        case("A: ... on a signed route: an unsigned request for an enforcing app", sdk(),
             form_post("/session", format!("?app_token={APP}&created_at=2025-12-31T23%3A40%3A00.000Z%2B0000&gps_adid=38400000-8cf0-11bd-b23e-10b96e40000d"))
                 .header("client-sdk", "android4.38.0"))
            .ambiguous("spelling"),
        case("A: ... a device id hidden so (?gps_adid)", sdk(),
             form_post("/session", format!("?gps_adid=38400000-8cf0-11bd-b23e-10b96e40000d&app_token={APP}"))
                 .header("client-sdk", "android4.38.0"))
            .ambiguous("spelling"),
        case("A: ... ?_method names another method", ignore_body(),
             Request::post("/v1/events??_method=DELETE&app_token=appA").header("authorization", "Bearer tok-for-app-A-aaaaaaaaaaaa"))
            .ambiguous("spelling"),
        case("A: flag mode: a client's marker behind a ? is removed", flag(),
             form_post("/event?s2s=1", format!("?s2s_guard_rejection=none&app_token={APP}")))
            .up_body(&format!("s2s_guard_rejection=missing&app_token={APP}")),
        case("A: a leading ? before a name no route reads passes", c(),
             Request::post(&format!("/event??partner=1&s2s=1&app_token={APP}&event_token=x")).header("authorization", bearer()))
            .up("x-s2s-guard-token-id", Some("adj-events")),
        // F2: Go's `mime.ParseMediaType` fails on a repeated parameter, and
        // `net/http` then reads no body (verified on Go 1.19).
        case("B: a repeated charset (Go parses no body)", held_sdk(),
             Request::post(&format!("/session?app_token={APP}&android_id=9774d56d682e549c"))
                 .header("content-type", "application/x-www-form-urlencoded; charset=utf-8; charset=utf-8")
                 .header("client-sdk", "android4.38.0")
                 .body("created_at=2025-12-31T20%3A22%3A00.000Z%2B0000&gps_adid=38400000-8cf0-11bd-b23e-10b96e40000d"))
            .local(415, "Unsupported request body"),
        case("B: ... two charsets, each accepted alone", held(),
             Request::post("/event?s2s=1").header("content-type", "application/x-www-form-urlencoded; charset=us-ascii; charset=UTF-8")
                 .header("authorization", bearer()).body(format!("app_token={APP}&event_token=x")))
            .local(415, "Unsupported request body"),
        // Session 11, round 2 (helper-40) F1: Hono before 4.10.5 looked for
        // `?app_token` / `&app_token` anywhere in the URL it built from the Host
        // (verified on Hono 4.10.4).
        case("A: ?app_token inside a value (old Hono's query(name))", c(),
             Request::get(&format!("/event?s2s=1&event_token=xyzklm&x=?app_token={APP}")))
            .ambiguous("spelling"),
        case("A: ... beside another app, inside a field's own value", c(),
             Request::get(&format!("/event?s2s=1&app_token=otherapp123&event_token=xyzklm?app_token={APP}")))
            .ambiguous("spelling"),
        case("A: ... a device id hidden so on a signed route", sdk(),
             Request::get(&format!("/session?app_token={APP}&android_id=9774d56d682e549c&x?gps_adid=11110111-2345-6789-1122-000000005678"))
                 .header("client-sdk", "android4.38.0"))
            .ambiguous("spelling"),
        case("A: ... in a form body too", c(),
             form_post("/event", format!("s2s=1&event_token=x&note=a?app_token={APP}")))
            .ambiguous("spelling"),
        case("A: ... a ? before a name no route reads passes", c(),
             Request::post(&format!("/event?s2s=1&app_token={APP}&event_token=x&ref=a?b=c")).header("authorization", bearer()))
            .up("x-s2s-guard-token-id", Some("adj-events")),
        case("A: &app_token in the Host (old Hono searched the URL from the host on)", c(),
             Request::get("/event?s2s=1&event_token=xyzklm").authority(&format!("collector&app_token={APP}&")))
            .ambiguous("header"),
        case("A: ... any Host but a plain name, address and port", c(),
             Request::get(&format!("/event?s2s=1&app_token={APP}&event_token=x")).header("authorization", bearer()).authority("collector?x"))
            .ambiguous("header"),
        case("A: ... a Host with a port and an IPv6 address passes", c(),
             Request::get(&format!("/event?s2s=1&app_token={APP}&event_token=x")).header("authorization", bearer()).authority("[::1]:8080"))
            .up("x-s2s-guard-token-id", Some("adj-events")),
        case("A: ... an odd Host on an unprotected path is not ours", c(),
             Request::get("/static/a.js").authority("collector&x=1"))
            .up(":path", Some("/static/a.js")),
        case("A: &app_token in the path under a prefix route", prefix(),
             Request::post("/api/v2/x&token=abc").header("content-type", "application/json").body("{}"))
            .ambiguous("path"),
        // F2: a pair with an empty name: ufo (h3/Nuxt `getQuery`) and Spring's query
        // regex skip the `=` (verified on h3 1.15 / ufo 1.6.4 and Spring Web 4.3).
        case("A: =app_token=... (h3's getQuery reads app_token)", c(),
             Request::get(&format!("/event?s2s=1&=app_token={APP}&event_token=xyzklm")))
            .ambiguous("spelling"),
        case("A: ... ==app_token on a signed route, unsigned", sdk(),
             Request::get(&format!("/attribution?==app_token={APP}&created_at=2025-12-31T23%3A40%3A00.000Z%2B0000&gps_adid=38400000-8cf0-11bd-b23e-10b96e40000d"))
                 .header("client-sdk", "android4.38.0"))
            .ambiguous("spelling"),
        case("A: ... a second credential so, beside a valid one", c(),
             Request::get(&format!("/postback?s2s_token={SWAARM}&user_id=u&event_id=e&=s2s_token=other-store-token")))
            .ambiguous("spelling"),
        case("A: flag mode: a client's marker behind an empty name is removed", flag(),
             form_post("/event?s2s=1", format!("=s2s_guard_rejection=none&app_token={APP}&x=?s2s_guard_rejection=none")))
            .up_body(&format!("s2s_guard_rejection=missing&app_token={APP}")),
        case("A: ... an empty name with a plain value passes", c(),
             Request::post(&format!("/event?s2s=1&app_token={APP}&event_token=x&=1")).header("authorization", bearer()))
            .up("x-s2s-guard-token-id", Some("adj-events")),
        // Session 11, round 3 (helper-41) F2: a value or name that decodes again
        // (uWebSockets' repeated getQuery, an application's own urldecode).
        case("A: a double-encoded app (%2561: a collector decoding twice reads a)", c(),
             Request::get("/event?s2s=1&app_token=%2561bc123kuvada7&event_token=xyzklm"))
            .ambiguous("bad_value"),
        case("A: ... on a signed route, unsigned", sdk(),
             Request::get("/attribution?app_token=abc123kuvada%2537&created_at=2025-12-31T23%3A40%3A00.000Z%2B0000&gps_adid=38400000-8cf0-11bd-b23e-10b96e40000d")
                 .header("client-sdk", "android4.38.0"))
            .ambiguous("bad_value"),
        case("A: ... a double-encoded name", c(),
             Request::get(&format!("/event?s2s=1&app%255Ftoken={APP}&event_token=xyzklm")))
            .ambiguous("spelling"),
        case("A: ... a % that starts no escape passes", c(),
             Request::post(&format!("/event?s2s=1&app_token={APP}&event_token=x&note=50%25off")).header("authorization", bearer()))
            .up("x-s2s-guard-token-id", Some("adj-events")),
        // F3: Elysia picks its body parser by the 13th character of Content-Type
        // (`x`: a form, `r`: multipart or form; verified on Elysia 1.4.30).
        case("B: body: ignore: application/xml (a form to Elysia)", ignore_body(),
             Request::post("/v1/events?app_token=appA").header("authorization", "Bearer tok-for-app-A-aaaaaaaaaaaa")
                 .header("content-type", "application/xml").body("app_token=appB&event=purchase"))
            .local(415, "Unsupported request body"),
        case("B: ... text/plain; x=1", ignore_body(),
             Request::post("/v1/events?app_token=appA").header("authorization", "Bearer tok-for-app-A-aaaaaaaaaaaa")
                 .header("content-type", "text/plain; x=1").body("app_token=appB&event=purchase"))
            .local(415, "Unsupported request body"),
        case("B: ... application/reports+json (r: Elysia's multipart branch)", ignore_body(),
             Request::post("/v1/events?app_token=appA").header("authorization", "Bearer tok-for-app-A-aaaaaaaaaaaa")
                 .header("content-type", "application/reports+json").body("{}"))
            .local(415, "Unsupported request body"),
        case("B: ... a beacon's text/plain;charset=UTF-8 passes", ignore_body(),
             Request::post("/v1/events?app_token=appA").header("authorization", "Bearer tok-for-app-A-aaaaaaaaaaaa")
                 .header("content-type", "text/plain;charset=UTF-8").body("{}"))
            .up("x-s2s-guard-token-id", Some("appA-events")),
        // Session 11, round 4 (helper-42) F1: rewrites that put the decoded path
        // in a query parameter (Apache's `index.php?_url=/$1 [QSA]` without `[B]`,
        // nginx's `try_files ... /index.php?_url=$uri&$args`) end it at an escaped
        // `&` (verified on Apache 2.4 and nginx 1.22).
        case("D: /event%26 (a rewrite reads _url=/event)", c(),
             Request::get(&format!("/event%26?s2s=1&app_token={APP}&event_token=xyzklm")))
            .ambiguous("path"),
        case("D: ... the whole request in the path", c(),
             Request::get(&format!("/event%26s2s%3D1%26app_token%3D{APP}%26event_token%3Dx")))
            .ambiguous("path"),
        case("D: ... an escaped ? onto Swaarm's postback", c(),
             Request::get("/postback%3Fuser_id=u1&event_id=purchase"))
            .ambiguous("path"),
        case("D: ... an escaped #, and a double-encoded &", c(),
             Request::get("/session%23x?app_token=abc123kuvada7"))
            .ambiguous("path"),
        case("D: ... %2526", c(),
             Request::get(&format!("/event%2526?s2s=1&app_token={APP}&event_token=xyzklm")))
            .ambiguous("path"),
        case("D: ... an escaped & on a path no route reads is not ours", c(),
             Request::get("/static/a%26b.js"))
            .up(":path", Some("/static/a%26b.js")),
        // Session 11, round 5 (helper-43) F1: a literal `&` ends the path for the
        // same rewrites (verified on Apache 2.4 and nginx 1.22).
        case("D: /event& (a rewrite reads _url=/event&&...)", c(),
             Request::get(&format!("/event&?s2s=1&app_token={APP}&event_token=xyzklm")))
            .ambiguous("path"),
        case("D: ... onto Swaarm's postback over HTTP/2", c(),
             Request::get("/postback&?user_id=u1&event_id=purchase").http2())
            .ambiguous("path"),
        case("D: ... onto Jitsu's server route", c(),
             Request::post("/api/v1/s2s/event&").header("content-type", "application/json").body("{}"))
            .ambiguous("path"),
        // F2: the client's own router parameter on any path (the rewrite's comes
        // first, PHP keeps the last), or made of the path after an `&`.
        case("D: /x?_url=/event (index.php?_url=/x&_url=/event to PHP)", c(),
             Request::get(&format!("/x?_url=/event&s2s=1&app_token={APP}&event_token=xyzklm")))
            .ambiguous("path"),
        case("D: ... /x&_url=/event", c(),
             Request::get(&format!("/x&_url=/event?s2s=1&app_token={APP}&event_token=xyzklm")))
            .ambiguous("path"),
        case("D: ... /x%26_url=%2Fevent", c(),
             Request::get(&format!("/x%26_url=%2Fevent?s2s=1&app_token={APP}&event_token=xyzklm")))
            .ambiguous("path"),
        // F3: router parameters as PHP folds names.
        case("D: /?.url=/event (PHP reads _url)", c(),
             Request::get(&format!("/?.url=/event&s2s=1&app_token={APP}&event_token=xyzklm")))
            .ambiguous("path"),
        case("D: ... leading spaces (%20_url, +s, +q)", c(),
             Request::get("/?%20%20_url=/postback&user_id=u1&event_id=purchase"))
            .ambiguous("path"),
        case("D: ... +q without a slash", c(), Request::get("/?+q=postback&user_id=u1&event_id=purchase"))
            .ambiguous("path"),
        case("D: ... on index.php", c(),
             Request::get(&format!("/index.php?.url=/event&s2s=1&app_token={APP}")))
            .ambiguous("path"),
        // Session 12 (found while replacing the name check): PHP cuts a name at
        // NUL (`php_register_variable_ex` copies it with `strlen`): `s%00y` is
        // `s` (verified with PHP 8.2's `parse_str`); and the built-in server's
        // leading `?`s.
        case("D: /x?s%00y=/event (PHP reads s)", c(),
             Request::get(&format!("/x?s%00y=/event&s2s=1&app_token={APP}&event_token=xyzklm")))
            .ambiguous("path"),
        case("D: ... _url%00 on index.php", c(),
             Request::get(&format!("/index.php?_url%00=/event&s2s=1&app_token={APP}")))
            .ambiguous("path"),
        case("D: ... ??q=postback", c(), Request::get("/x??q=postback&user_id=u1&event_id=purchase"))
            .ambiguous("path"),
        // Session 12, round 7 (helper-45) F1: the value read as a URL (Phalcon
        // 4/5 route `parse_url($_GET['_url'], PHP_URL_PATH)`, CakePHP 1 cuts `url`
        // at `?`; PHP 8.2 behind the rewrites, the routing step from their source).
        case("D: /x?_url=/event%3Fx (parse_url: /event)", c(),
             Request::get(&format!("/x?_url=/event%3Fx&s2s=1&app_token={APP}&event_token=xyzklm")))
            .ambiguous("path"),
        case("D: ... /?_url=/event?", c(),
             Request::get(&format!("/?_url=/event?&s2s=1&app_token={APP}&event_token=xyzklm")))
            .ambiguous("path"),
        case("D: ... //host/event", c(),
             Request::get(&format!("/x?_url=//x/event&s2s=1&app_token={APP}&event_token=xyzklm")))
            .ambiguous("path"),
        case("D: ... http://host/event", c(),
             Request::get(&format!("/x?_url=http://x/event&s2s=1&app_token={APP}&event_token=xyzklm")))
            .ambiguous("path"),
        case("D: ... x:/gdpr_forget_device", c(),
             Request::get(&format!("/x?_url=x:/gdpr_forget_device&s2s=1&app_token={APP}")))
            .ambiguous("path"),
        case("D: ... CakePHP 1: url=event?", c(),
             Request::get(&format!("/x?url=event?&s2s=1&app_token={APP}&event_token=xyzklm")))
            .ambiguous("path"),
        case("D: ... url=/postback%3F", c(), Request::get("/x?url=/postback%3F&user_id=u1&event_id=purchase"))
            .ambiguous("path"),
        // N1: other front controllers' route parameters.
        case("D: ... Craft's p, Yii's r, OpenCart's route/_route_, ProcessWire's it, Elgg's __elgg_uri", c(),
             Request::get("/index.php?p=postback&user_id=u1&event_id=purchase"))
            .ambiguous("path"),
        case("D: ... r=event", c(), Request::get(&format!("/x?r=event&s2s=1&app_token={APP}&event_token=x")))
            .ambiguous("path"),
        case("D: ... _route_=gdpr_forget_device", c(), Request::get(&format!("/x?_route_=gdpr_forget_device&app_token={APP}")))
            .ambiguous("path"),
        case("D: ... __elgg_uri=/postback", c(), Request::get("/x?__elgg_uri=/postback&user_id=u1&event_id=purchase"))
            .ambiguous("path"),
        case("D: ... a page number passes (p=2)", c(), Request::get("/blog?p=2&r=1"))
            .up(":path", Some("/blog?p=2&r=1")),
        // Session 12, round 8 (helper-46). F1: ThinkPHP routes `|` as `/` and
        // drops trailing ones (verified on ThinkPHP 5.0.20 behind Apache).
        case("D: /event%7C (ThinkPHP: /event)", c(),
             Request::get(&format!("/event%7C?s2s=1&app_token={APP}&event_token=xyzklm")))
            .ambiguous("path"),
        case("D: ... /event|", c(), Request::get(&format!("/event|?s2s=1&app_token={APP}&event_token=xyzklm")))
            .ambiguous("path"),
        case("D: ... Jitsu's server route spelt with |", c(),
             Request::post("/api%7Cv1%7Cs2s%7Cevent").header("content-type", "application/json").body("{}"))
            .ambiguous("path"),
        case("D: ... s=/event%7C", c(),
             Request::get(&format!("/x?s=/event%7C&s2s=1&app_token={APP}&event_token=xyzklm")))
            .ambiguous("path"),
        // F2, F4: control characters as `_` (PHP's `parse_url`, Phalcon's route)
        // or removed (CodeIgniter 3's `remove_invisible_characters`).
        case("D: /gdpr%01forget_device (parse_url: /gdpr_forget_device)", c(),
             Request::get(&format!("/gdpr%01forget_device?s2s=1&app_token={APP}")))
            .ambiguous("path"),
        case("D: ... _url=/ad%1Frevenue", c(),
             Request::get(&format!("/x?_url=/ad%1Frevenue&s2s=1&app_token={APP}")))
            .ambiguous("path"),
        case("D: ... /index.php/ev%01ent (CodeIgniter: /event)", c(),
             Request::get(&format!("/index.php/ev%01ent?s2s=1&app_token={APP}&event_token=x")))
            .ambiguous("path"),
        // F3: OpenCart deletes every character of `route` outside [A-Za-z0-9_/].
        case("D: route=/eve.nt (OpenCart: /event)", c(),
             Request::get(&format!("/index.php?route=/eve.nt&s2s=1&app_token={APP}&event_token=x")))
            .ambiguous("path"),
        case("D: ... route=/post~back", c(), Request::get("/index.php?route=/post~back&user_id=u1&event_id=e"))
            .ambiguous("path"),
        // F5: a path under a protected route is that route to routers matching
        // routes as prefixes (ThinkPHP's default, verified; Drupal 7's menu router).
        case("D: /event/x (ThinkPHP: /event)", c(),
             Request::get(&format!("/event/x?s2s=1&app_token={APP}&event_token=xyzklm")))
            .ambiguous("path"),
        case("D: ... /index.php/postback/x", c(), Request::get("/index.php/postback/x?user_id=u1&event_id=e"))
            .ambiguous("path"),
        case("D: ... s=/gdpr_forget_device/1", c(),
             Request::get(&format!("/?s=/gdpr_forget_device/1&app_token={APP}")))
            .ambiguous("path"),
        // Round 9 (helper-47): the same through readings the path's other
        // characters get (verified on ThinkPHP 5.0.20 behind Apache and nginx).
        case("D: ... /event/x;y", c(), Request::post(&format!("/event/x;y?s2s=1&app_token={APP}&event_token=xyzklm")))
            .ambiguous("path"),
        case("D: ... /event/x\\y", c(), Request::get(&format!("/event/x\\y?s2s=1&app_token={APP}&event_token=xyzklm")))
            .ambiguous("path"),
        case("D: ... /event/x%3Fy", c(), Request::get(&format!("/event/x%3Fy?s2s=1&app_token={APP}&event_token=xyzklm")))
            .ambiguous("path"),
        case("D: ... /session/x%2Fy", c(), Request::get(&format!("/session/x%2Fy?app_token={APP}")))
            .ambiguous("path"),
        case("D: ... /event%2Fx (nginx decodes it)", c(), Request::get(&format!("/event%2Fx?s2s=1&app_token={APP}&event_token=xyzklm")))
            .ambiguous("path"),
        case("D: ... /event%257C (Apache's rewrite decodes twice)", c(),
             Request::get(&format!("/event%257C?s2s=1&app_token={APP}&event_token=xyzklm")))
            .ambiguous("path"),
        case("D: ... /postback%252Fx", c(), Request::get("/postback%252Fx?user_id=u1&event_id=e"))
            .ambiguous("path"),
        case("D: /sess%C4%B0on (Java's toLowerCase: İ is i)", c(), Request::get(&format!("/sess%C4%B0on?app_token={APP}")))
            .ambiguous("path"),
        // Session 13, round 10 (helper-48): the prefix reading behind every other
        // reading of the path (verified on ThinkPHP 5.0.20 behind Apache, whose
        // `index.php` is a file: no rewrite needed).
        case("D: ... /index.php/event/x;y", c(),
             Request::post(&format!("/index.php/event/x;y?s2s=1&app_token={APP}&event_token=xyzklm")))
            .ambiguous("path"),
        case("D: ... /index.php/event|x", c(),
             Request::post(&format!("/index.php/event|x?s2s=1&app_token={APP}&event_token=xyzklm")))
            .ambiguous("path"),
        case("D: ... /index.php/event/x%01", c(),
             Request::post(&format!("/index.php/event/x%01?s2s=1&app_token={APP}&event_token=xyzklm")))
            .ambiguous("path"),
        case("D: ... /index.php/event%2Fx", c(),
             Request::post(&format!("/index.php/event%2Fx?s2s=1&app_token={APP}&event_token=xyzklm")))
            .ambiguous("path"),
        case("D: ... /INDEX.PHP/session/x\\y", c(), Request::get(&format!("/INDEX.PHP/session/x\\y?app_token={APP}")))
            .ambiguous("path"),
        case("D: ... /cgi-bin/c.cgi/postback/x%3Fy", c(), Request::get("/cgi-bin/c.cgi/postback/x%3Fy?user_id=u1&event_id=e"))
            .ambiguous("path"),
        case("D: ... /(S(x))/event/x;y (ASP.NET's session segment)", c(),
             Request::get(&format!("/(S(x))/event/x;y?s2s=1&app_token={APP}&event_token=xyzklm")))
            .ambiguous("path"),
        case("D: ... /gdpr-forget-device/x;y (CodeIgniter's dashes)", c(),
             Request::get(&format!("/gdpr-forget-device/x;y?s2s=1&app_token={APP}")))
            .ambiguous("path"),
        case("D: ... /sess%C4%B0on/x;y", c(), Request::get(&format!("/sess%C4%B0on/x;y?app_token={APP}")))
            .ambiguous("path"),
        case("D: ... /?/event|x (CodeIgniter's query route)", c(),
             Request::get(&format!("/?/event|x&s2s=1&app_token={APP}&event_token=xyzklm")))
            .ambiguous("path"),
        // Round 11 (helper-50). F1 (verified on CodeIgniter 3 behind Apache and
        // php -S): with `uri_protocol = QUERY_STRING` a query of no pairs is the path.
        case("D: /?event (CodeIgniter's QUERY_STRING protocol)", c(),
             form_post("/?event", format!("s2s=1&app_token={APP}&event_token=x")))
            .ambiguous("path"),
        case("D: ... /index.php?gdpr_forget_device", c(), Request::get("/index.php?gdpr_forget_device"))
            .ambiguous("path"),
        case("D: ... /?api/v1/s2s/event", c(), Request::post("/?api/v1/s2s/event"))
            .ambiguous("path"),
        case("D: ... a query of pairs is not a path (/?event=1)", c(), Request::get("/x?event=1"))
            .up(":path", Some("/x?event=1")),
        // F2 (verified on ThinkPHP 5.0.20 behind Apache with MultiViews): `/index`
        // is `index.php`, the rest its PATH_INFO.
        case("D: /index/event (Apache's MultiViews)", c(),
             Request::post(&format!("/index/event?s2s=1&app_token={APP}&event_token=x")))
            .ambiguous("path"),
        case("D: ... /index/postback/x;y", c(), Request::post("/index/postback/x;y?user_id=u&event_id=e"))
            .ambiguous("path"),
        // F3 (verified on CodeIgniter 3): dot segments deleted, not resolved.
        case("D: /event/.. (CodeIgniter: /event)", c(),
             Request::post(&format!("/event/..?s2s=1&app_token={APP}&event_token=x")))
            .ambiguous("path"),
        case("D: ... /index.php/session/%2e%2e", c(), Request::post("/index.php/session/%2e%2e"))
            .ambiguous("path"),
        // Round 12 (helper-52, verified on CodeIgniter 3 behind Apache and php -S).
        // F1: the query CodeIgniter routes, with its dot segments deleted (stock
        // `uri_protocol = REQUEST_URI`; Envoy's normalize_path leaves the query be).
        case("D: /?/event/.. (CodeIgniter deletes ..)", c(),
             form_post("/?/event/..", format!("s2s=1&app_token={APP}&event_token=x")))
            .ambiguous("path"),
        case("D: ... /index.php?/postback/%2e%2e", c(), Request::post("/index.php?/postback/%2e%2e"))
            .ambiguous("path"),
        case("D: ... /?event/.. (QUERY_STRING protocol)", c(), Request::post("/?event/.."))
            .ambiguous("path"),
        case("D: ... /?event/..%00 (routed as event, method ..%00)", c(), Request::post("/?event/..%00"))
            .ambiguous("path"),
        // F2: CodeIgniter's `enable_query_strings`: `c` names the controller (every
        // `/` and `.` removed), under the directory `d`.
        case("D: ?c=event (CodeIgniter's controller trigger)", c(),
             form_post("/x?c=event", format!("s2s=1&app_token={APP}&event_token=x")))
            .ambiguous("path"),
        case("D: ... c=e/v/e/n.t", c(), Request::post("/?c=e/v/e/n.t"))
            .ambiguous("path"),
        case("D: ... d=api/v1/s2s&c=event", jitsu_only(), Request::post("/?d=api/v1/s2s&c=event"))
            .local(400, r#"{"message":"Ambiguous request"}"#),
        // The directory parameter under PHP's readings of its name (escaped, a
        // leading space dropped).
        case("D: ... %64=api/v1/s2s&c=event", jitsu_only(), Request::post("/?%64=api/v1/s2s&c=event"))
            .local(400, r#"{"message":"Ambiguous request"}"#),
        case("D: ... %20d=api/v1/s2s&c=event", jitsu_only(), Request::post("/?%20d=api/v1/s2s&c=event"))
            .local(400, r#"{"message":"Ambiguous request"}"#),
        case("D: ... on a protected route, another route's controller (realm crossing)", c(),
             Request::get("/postback?c=gdpr_forget_device&user_id=u&event_id=e").header("authorization", SWAARM))
            .ambiguous("path"),
        // Round 13 (helper-54, verified on CodeIgniter 3 with `url_suffix`): empty
        // segments go before the suffix (`/?/event.html/` is `event`).
        case("D: /?/event.html/ (CodeIgniter: empty segments, then url_suffix)", c(),
             form_post("/?/event.html/", format!("s2s=1&app_token={APP}&event_token=x")))
            .ambiguous("path"),
        case("D: ... /?/event.html/../", c(), Request::post("/?/event.html/../"))
            .ambiguous("path"),
        case("D: ... /x?gdpr_forget_device.html/ (QUERY_STRING)", c(), Request::post("/x?gdpr_forget_device.html/"))
            .ambiguous("path"),
        // Round 14 (helper-55, verified on CodeIgniter 4): its router decodes the path
        // a second time with PHP's `urldecode` (`+`, `%2B` are spaces) and trims
        // spaces and `/` at its ends: `/postback+` is `postback`.
        case("D: /postback+ (CodeIgniter 4: urldecode, then trim)", c(),
             Request::get("/postback+?user_id=u&event_id=e"))
            .ambiguous("path"),
        case("D: ... /+/postback", c(), Request::get("/+/postback?user_id=u&event_id=e"))
            .ambiguous("path"),
        case("D: ... /postback%2B (decoded twice)", c(), Request::get("/postback%2B?user_id=u&event_id=e"))
            .ambiguous("path"),
        case("D: ... /%2b%2Bgdpr_forget_device", c(),
             form_post("/%2b%2Bgdpr_forget_device", format!("s2s=1&app_token={APP}&gps_adid=x")))
            .ambiguous("path"),
        case("D: ... /index.php/event+ (behind the front controller)", c(),
             Request::get(&format!("/index.php/event+?s2s=1&app_token={APP}&event_token=x")))
            .ambiguous("path"),
        case("D: ... /?/postback+ (query-string form)", c(), Request::get("/?/postback+"))
            .ambiguous("path"),
        case("D: ... /api/v1/s2s/event+ (Jitsu)", c(),
             Request::post("/api/v1/s2s/event+").header("content-type", "application/json").body("{}"))
            .ambiguous("path"),
        // N1: Unicode white space around a segment (Java's isWhitespace, Python's strip).
        case("D: ... /postback%E2%80%80 (U+2000)", c(), Request::get("/postback%E2%80%80"))
            .ambiguous("path"),
        case("D: ... /%E3%80%80/postback (U+3000)", c(), Request::get("/%E3%80%80/postback"))
            .ambiguous("path"),
        case("D: ... /postback%C2%A0", c(), Request::get("/postback%C2%A0"))
            .ambiguous("path"),
        // Inside a segment, `+` and a character that is not white space are still
        // deleted from a controller's name by Zend Framework 1 and CakePHP 2
        // (round 15, below).
        case("D: ... /post+back (CakePHP 2: a space, then camelized away)", c(), Request::get("/post+back"))
            .ambiguous("path"),
        case("D: ... /postback%E2%80%8B (Zend Framework 1 deletes it)", c(), Request::get("/postback%E2%80%8B"))
            .ambiguous("path"),
        case("D: ... /search/shoes+red passes", c(), Request::get("/search/shoes+red+"))
            .up(":path", Some("/search/shoes+red+")),
        // Round 15 (helper-57, each verified on the real framework):
        // F1 CodeIgniter 4 decodes the `?/` query route twice (`%2520`, `%2%30`,
        // `%%36%32` are a space and `b` there); F5 php -S drops leading `?`s.
        case("D: /?/postback%2520 (CodeIgniter 4's query route, decoded twice)", c(),
             Request::get("/?/postback%2520"))
            .ambiguous("path"),
        case("D: ... /?/postback%2%30", c(), Request::get("/?/postback%2%30"))
            .ambiguous("path"),
        case("D: ... /?/post%%36%32ack", c(), Request::get("/?/post%%36%32ack"))
            .ambiguous("path"),
        case("D: ... /?/gdpr%%35%46forget_device (form POST, no token)", c(),
             form_post("/?/gdpr%%35%46forget_device", format!("s2s=1&app_token={APP}&gps_adid=x")))
            .ambiguous("path"),
        case("D: ... /??postback (php -S drops the leading ?s)", c(), Request::get("/??postback"))
            .ambiguous("path"),
        // F1c/F4c: on a protected path, the query route another route (a Swaarm
        // token into Adjust's GDPR controller).
        case("D: ... /postback?/gdpr_forget_device%2520?x=1 (realm crossing)", c(),
             Request::get("/postback?/gdpr_forget_device%2520?x=1&user_id=u&event_id=e").header("authorization", SWAARM))
            .ambiguous("path"),
        case("D: ... /postback?/gdpr_forget_devi.ce?x=1 (CodeIgniter 3's dots)", c(),
             Request::get("/postback?/gdpr_forget_devi.ce?x=1&user_id=u&event_id=e").header("authorization", SWAARM))
            .ambiguous("path"),
        // F4 CodeIgniter 3 deletes `.` from a controller's name; F6 Zend Framework 1
        // every character but `[a-z0-9]`; F7 CakePHP 2 camelizes (`_`, spaces gone).
        case("D: /post.back (CodeIgniter 3)", c(), Request::get("/post.back?user_id=u&event_id=e"))
            .ambiguous("path"),
        case("D: ... /gdpr_forget_devi.ce (form POST)", c(),
             form_post("/gdpr_forget_devi.ce", format!("s2s=1&app_token={APP}&gps_adid=x")))
            .ambiguous("path"),
        case("D: ... /api/v1/s2s/ev.ent (Jitsu)", c(),
             Request::post("/api/v1/s2s/ev.ent").header("content-type", "application/json").body("{}"))
            .ambiguous("path"),
        case("D: ... /po!stback (Zend Framework 1)", c(), Request::get("/po!stback"))
            .ambiguous("path"),
        case("D: ... /postback~", c(), Request::get("/postback~"))
            .ambiguous("path"),
        case("D: ... /(postback)", c(), Request::get("/(postback)"))
            .ambiguous("path"),
        case("D: ... /-postback/index", c(), Request::get("/-postback/index"))
            .ambiguous("path"),
        case("D: ... /_postback (CakePHP 2)", c(), Request::get("/_postback"))
            .ambiguous("path"),
        case("D: ... /gdprForgetDevice", c(),
             form_post("/gdprForgetDevice", format!("s2s=1&app_token={APP}&gps_adid=x")))
            .ambiguous("path"),
        case("D: ... /gdpr__forget__device", c(), Request::post("/gdpr__forget__device"))
            .ambiguous("path"),
        // Round 16 (helper-59, verified on Zend Framework 1): every application has
        // the module `default`: `/default/postback` is `PostbackController`.
        case("D: ... /default/postback (Zend Framework 1's default module)", c(), Request::get("/default/postback"))
            .ambiguous("path"),
        case("D: ... /index.php/default/gdpr_forget_device", c(),
             form_post("/index.php/default/gdpr_forget_device", format!("s2s=1&app_token={APP}&gps_adid=x")))
            .ambiguous("path"),
        case("D: ... /Default/postback/index", c(), Request::get("/Default/postback/index"))
            .ambiguous("path"),
        // Round 17 (helper-61, verified on Zend Framework 1): its module route reads
        // the rest of the path as key/value pairs once a segment is `0`.
        case("D: ... /0/x/controller/postback (ZF1's path parameters)", c(), Request::get("/0/x/controller/postback?user_id=u&event_id=e"))
            .ambiguous("path"),
        case("D: ... /0/a/module/default/controller/gdpr_forget_device/action/index", c(),
             form_post("/0/a/module/default/controller/gdpr_forget_device/action/index", format!("s2s=1&app_token={APP}&gps_adid=x")))
            .ambiguous("path"),
        case("D: ... /index.php/0/0/controller/event", c(), Request::get("/index.php/0/0/controller/event"))
            .ambiguous("path"),
        case("D: ... /shop/controller/x passes", c(), Request::get("/shop/controller/x"))
            .up(":path", Some("/shop/controller/x")),
        // Controls: other names and other segments pass.
        case("D: ... /post/back passes", c(), Request::get("/post/back"))
            .up(":path", Some("/post/back")),
        case("D: ... /postbacks passes", c(), Request::get("/postbacks"))
            .up(":path", Some("/postbacks")),
        case("D: ... /static/event.png passes", c(), Request::get("/static/event.png"))
            .up(":path", Some("/static/event.png")),
        // F2/F3: WordPress routes on `rest_route` (REST, published under /wp-json)
        // and `pagename`, from the body first.
        case("D: /?rest_route=/postback (WordPress)", c(), Request::get("/?rest_route=/postback&user_id=u&event_id=e"))
            .ambiguous("path"),
        case("D: ... /blog/x?rest.route=/api/v1/s2s/event (PHP's folding)", c(),
             Request::post("/blog/x?rest.route=/api/v1/s2s/event").header("content-type", "application/json").body("{}"))
            .ambiguous("path"),
        case("D: ... under /wp-json", wp_json(), Request::get("/?rest_route=/collector/v1/postback"))
            .ambiguous("path"),
        case("D: ... /?pagename=postback", c(), Request::get("/?pagename=postback"))
            .ambiguous("path"),
        case("D: ... on a protected route, whatever it names (a site's rewrite may map it)", c(),
             Request::get("/postback?user_id=u&event_id=e&rest_route=/collector/v1/gdpr_forget_device").header("authorization", SWAARM))
            .ambiguous("path"),
        // Round 16 (helper-59, F2): a page or post by number, on a protected route.
        case("D: ... page_id on a protected route (WordPress's page 6)", c(),
             Request::get("/postback?user_id=u&event_id=e&page_id=6").header("authorization", SWAARM))
            .ambiguous("path"),
        case("D: ... p=6", c(),
             Request::get("/postback?user_id=u&event_id=e&p=6").header("authorization", SWAARM))
            .ambiguous("path"),
        case("D: ... in a protected route's form body", c(),
             form_post("/event", format!("s2s=1&app_token={APP}&event_token=x&pagename=gdpr_forget_device")).header("authorization", bearer()))
            .ambiguous("path"),
        case("D: ... a front controller's parameter in the form body naming another route", c(),
             form_post("/event", format!("s2s=1&app_token={APP}&event_token=x&_url=/gdpr_forget_device")).header("authorization", bearer()))
            .ambiguous("path"),
        // L1: a router parameter's value is read from each `/` on only where a URL
        // parser can find a scheme or an authority in it.
        case("D: ... q=a/postback passes (a path no route takes)", c(), Request::get("/x?q=a/postback"))
            .up(":path", Some("/x?q=a/postback")),
        case("D: ... url=/story/click passes", c(), Request::get("/share?url=/story/click"))
            .up(":path", Some("/share?url=/story/click")),
        case("D: ... _url=//host/event is still /event", c(),
             Request::get(&format!("/x?_url=//host/event&s2s=1&app_token={APP}&event_token=xyzklm")))
            .ambiguous("path"),
        case("D: ... a route under another route is that route (Jitsu's dry-run)", c(),
             Request::post("/api/v1/events/dry-run").header("content-type", "application/json").body("{}"))
            .local(401, r#"{"message":"The token is not found"}"#),
        case("D: ... paths elsewhere pass (/static/event/x)", c(), Request::get("/static/event/x"))
            .up(":path", Some("/static/event/x")),
        case("D: ... a URL to another page passes (q=https://example.com/shoes)", c(),
             Request::get("/search?q=https://example.com/shoes"))
            .up(":path", Some("/search?q=https://example.com/shoes")),
        case("D: ... a name that only holds s passes (sx=/event)", c(),
             Request::get("/x?sx=/event&s%00=shoes"))
            .up(":path", Some("/x?sx=/event&s%00=shoes")),
        // Session 9, round 3 (helper-31). F1: PHP's `$_REQUEST` (built-in
        // `variables_order`) takes cookies over the query and the body; classic
        // ASP.NET's `Request[...]` reads them when those lack the name.
        case("A: a decision field as a cookie (another app beside the verified one)", c(),
             Request::post(&format!("/event?s2s=1&app_token={APP}&event_token=x")).header("authorization", bearer())
                 .header("cookie", "sid=1; app_token=otherapp0000001"))
            .ambiguous("cookie"),
        case("A: ... the app as a cookie, none in the query", c(),
             Request::post("/event?s2s=1&event_token=x").header("cookie", format!("app_token={APP}")))
            .ambiguous("cookie"),
        case("A: ... the s2s flag as a cookie", c(),
             Request::get(&format!("/event?app_token={APP}&event_token=x")).header("cookie", "s2s=1"))
            .ambiguous("cookie"),
        case("A: ... spelt as PHP folds it (app.token)", c(),
             Request::get(&format!("/event?s2s=1&app_token={APP}")).header("cookie", "app.token=otherapp0000001"))
            .ambiguous("cookie"),
        // Round 12 (helper-53, I2): the method override as a cookie.
        case("A: ... _method as a cookie", c(),
             Request::post(&format!("/event?s2s=1&app_token={APP}&event_token=x")).header("authorization", bearer())
                 .header("cookie", "sid=1; _method=DELETE"))
            .ambiguous("cookie"),
        case("A: ... _method as a cookie naming the request's own method goes on", c(),
             Request::post(&format!("/event?s2s=1&app_token={APP}&event_token=x")).header("authorization", bearer())
                 .header("cookie", "_method=POST"))
            .up("x-s2s-guard-token-id", Some("adj-events")),
        case("A: ... the flag marker as a cookie", c(),
             Request::post(&format!("/event?s2s=1&app_token={APP}&event_token=x")).header("authorization", bearer())
                 .header("cookie", "s2s_guard_rejection="))
            .ambiguous("cookie"),
        // Round 14 (helper-56, verified on PHP 8 without a php.ini): a cookie named
        // like the credential is what `$_REQUEST` reads once the verified copy is
        // stripped (cookies come last in `EGPCS` and win): a second credential.
        // Server-to-server routes refuse any; browser routes (round 5: a site's
        // own `token` cookie reaches a same-site collector) refuse one holding a
        // credential the filter knows, other than the one verified.
        case("A: a cookie named like the credential on a server route (Swaarm, another store's token)", c(),
             Request::get(&format!("/postback?s2s_token={SWAARM}&user_id=u&event_id=e")).header("cookie", "s2s_token=tokenForStoreB"))
            .ambiguous("cookie"),
        case("A: ... folded by PHP (s2s.token), the credential in Authorization", c(),
             Request::get("/postback?user_id=u&event_id=e").header("authorization", SWAARM).header("cookie", "sid=1; s2s.token=B"))
            .ambiguous("cookie"),
        case("A: ... Jitsu's server route, a site's token cookie", c(),
             Request::post("/api/v1/s2s/event").header("x-auth-token", JITSU_SERVER).header("cookie", "token=session-abc")
                 .header("content-type", "application/json").body("{}"))
            .local(400, r#"{"message":"Ambiguous request"}"#)
            .counts(&["s2s_guard.ambiguous.class.cookie"]),
        // Round 15 (helper-58): PHP before 7.4.11 and HHVM read `+` in a cookie's
        // name as a space (then a leading space goes, the others are `_`).
        case("A: ... +s2s_token (older PHP's cookie names)", c(),
             Request::get(&format!("/postback?s2s_token={SWAARM}&user_id=u&event_id=e")).header("cookie", "+s2s_token=B"))
            .ambiguous("cookie"),
        case("A: ... s2s+token", c(),
             Request::get(&format!("/postback?s2s_token={SWAARM}&user_id=u&event_id=e")).header("cookie", "a=1; s2s+token=B"))
            .ambiguous("cookie"),
        case("A: ... +app_token (another app)", c(),
             Request::post(&format!("/event?s2s=1&app_token={APP}&event_token=x")).header("authorization", bearer())
                 .header("cookie", "+app_token=otherapp0000001"))
            .ambiguous("cookie"),
        case("A: ... +_method", c(),
             Request::post(&format!("/event?s2s=1&app_token={APP}&event_token=x")).header("authorization", bearer())
                 .header("cookie", "+_method=DELETE"))
            .ambiguous("cookie"),
        case("A: ... a browser route, +token holding a server secret", jitsu_client(),
             Request::post("/api/v1/event?token=js.client-1").header("cookie", format!("+token={JITSU_SERVER}"))
                 .header("content-type", "application/json").body("{}"))
            .local(400, r#"{"message":"Ambiguous request"}"#)
            .counts(&["s2s_guard.ambiguous.class.cookie"]),
        case("A: ... a cookie with + elsewhere goes on", c(),
             Request::get(&format!("/postback?s2s_token={SWAARM}&user_id=u&event_id=e")).header("cookie", "ab+c=1"))
            .up("cookie", Some("ab+c=1")),
        // Round 16 (helper-60, verified on PHP 8.2 without a php.ini): another
        // route's credential name of the realm, as a cookie (refused in the query
        // as `other_credential`); a known credential padded with white space PHP's
        // `trim` removes; credential headers as ASP.NET server variables.
        case("A: ... another route's credential name as a cookie (Swaarm /click, token)", c(),
             Request::get(&format!("/postback?s2s_token={SWAARM}&user_id=u&event_id=e")).header("cookie", "token=tokenForStoreB"))
            .ambiguous("cookie"),
        case("A: ... a browser route, a server secret padded with white space", jitsu_client(),
             Request::post("/api/v1/event?token=js.client-1").header("cookie", format!("token=%20{JITSU_SERVER}%0B"))
                 .header("content-type", "application/json").body("{}"))
            .local(400, r#"{"message":"Ambiguous request"}"#)
            .counts(&["s2s_guard.ambiguous.class.cookie"]),
        case("A: ... a browser route, quoted with a tab inside", jitsu_client(),
             Request::post("/api/v1/event?token=js.client-1").header("cookie", format!("token=\"\t{JITSU_SERVER}\""))
                 .header("content-type", "application/json").body("{}"))
            .local(400, r#"{"message":"Ambiguous request"}"#)
            .counts(&["s2s_guard.ambiguous.class.cookie"]),
        case("A: ... HTTP_AUTHORIZATION as a query parameter beside a Bearer", c(),
             Request::get(&format!("/event?s2s=1&app_token={APP}&event_token=x&HTTP_AUTHORIZATION=Bearer%20other")).header("authorization", bearer()))
            .ambiguous("spelling"),
        case("A: ... HTTP_X_AUTH_TOKEN as a cookie (Jitsu)", c(),
             Request::post("/api/v1/s2s/event").header("x-auth-token", JITSU_SERVER).header("cookie", "HTTP_X_AUTH_TOKEN=other")
                 .header("content-type", "application/json").body("{}"))
            .local(400, r#"{"message":"Ambiguous request"}"#)
            .counts(&["s2s_guard.ambiguous.class.cookie"]),
        // Flag mode (F2, F2b): a flagged request goes on without the client's
        // marker cookie (PHP's `$_REQUEST` would read it over the filter's
        // reason) and without credential cookies; the others stay.
        case("F: flag mode: the marker cookie is removed, other cookies stay", flag(),
             Request::get(&format!("/event?s2s=1&app_token={APP}&event_token=x")).header("cookie", "a=b; s2s_guard_rejection="))
            .up("x-s2s-guard-rejection", Some("ambiguous"))
            .up("cookie", Some("a=b")),
        case("F: ... +s2s_guard_rejection too, the request refused for its token", flag(),
             Request::get(&format!("/event?s2s=1&app_token={APP}&event_token=x")).header("cookie", "+s2s_guard_rejection=; c=d"))
            .up("x-s2s-guard-rejection", Some("missing"))
            .up("cookie", Some("c=d")),
        case("F: ... a credential cookie is removed", flag(),
             Request::get("/postback?s2s_token=nope&user_id=u&event_id=e").header("cookie", "s2s_token=tokenForStoreB"))
            .up("x-s2s-guard-rejection", Some("ambiguous"))
            .up("cookie", None),
        case("A: ... a browser route, a site's token cookie goes on", jitsu_client(),
             Request::post("/api/v1/event?token=js.client-1").header("cookie", "token=session-abc; p_x=1")
                 .header("content-type", "application/json").body("{}"))
            .up("cookie", Some("token=session-abc; p_x=1"))
            .up("x-s2s-guard-token-id", Some("browser")),
        case("A: ... a browser route, the same credential as a cookie goes on", jitsu_client(),
             Request::post("/api/v1/event?token=js.client-1").header("cookie", "token=js.client-1")
                 .header("content-type", "application/json").body("{}"))
            .up("x-s2s-guard-token-id", Some("browser")),
        case("A: ... a browser route, a server secret as the cookie", jitsu_client(),
             Request::post("/api/v1/event?token=js.client-1").header("cookie", format!("token={JITSU_SERVER}"))
                 .header("content-type", "application/json").body("{}"))
            .local(400, r#"{"message":"Ambiguous request"}"#)
            .counts(&["s2s_guard.ambiguous.class.cookie"]),
        case("A: ... quoted, as Go unquotes it", jitsu_client(),
             Request::post("/api/v1/event").header("x-auth-token", "js.client-1").header("cookie", format!("a=1, TOKEN=\"{JITSU_SERVER}\""))
                 .header("content-type", "application/json").body("{}"))
            .local(400, r#"{"message":"Ambiguous request"}"#)
            .counts(&["s2s_guard.ambiguous.class.cookie"]),
        case("A: ... escaped, as PHP decodes it", jitsu_client(),
             Request::post("/api/v1/event?token=js.client-1").header("cookie", "p.x=js%2Eclient%2D2")
                 .header("content-type", "application/json").body("{}"))
            .local(400, r#"{"message":"Ambiguous request"}"#)
            .counts(&["s2s_guard.ambiguous.class.cookie"]),
        case("A: other cookies go on", c(),
             Request::post(&format!("/event?s2s=1&app_token={APP}&event_token=x")).header("authorization", bearer())
                 .header("cookie", "sid=1; theme=dark"))
            .up("cookie", Some("sid=1; theme=dark"))
            .up("x-s2s-guard-token-id", Some("adj-events")),
        // F8: owned headers as server variables (ASP.NET's `Request["HTTP_…"]`
        // looks in the query, the form body and cookies first).
        case("A: an owned header as a server-variable query field", c(),
             Request::get("/event?s2s=1&app_token=zzz&event_token=x&HTTP_X_S2S_GUARD_TOKEN_ID=adj-events"))
            .ambiguous("spelling"),
        case("A: ... as a form field", c(),
             form_post("/event", format!("s2s=1&app_token={APP}&event_token=x&http_x_s2s_guard_app=other")).header("authorization", bearer()))
            .ambiguous("spelling"),
        case("A: ... as a cookie", c(),
             Request::get("/event?s2s=1&app_token=zzz&event_token=x").header("cookie", "HTTP_X_S2S_GUARD_APP=abc"))
            .ambiguous("cookie"),
        // F4: numeric app ids read as numbers by PHP, JavaScript, Python, Go, SQL.
        case("A: a numeric app in another spelling (042)", numeric_apps(), Request::get("/v1/track?app_id=042&event=purchase"))
            .ambiguous("spelling"),
        case("A: ... 4.2e1", numeric_apps(), Request::get("/v1/track?app_id=4.2e1&event=purchase"))
            .ambiguous("spelling"),
        case("A: ... 0x2A", numeric_apps(), Request::get("/v1/track?app_id=0x2A&event=purchase"))
            .ambiguous("spelling"),
        case("A: ... 42abc", numeric_apps(), Request::get("/v1/track?app_id=42abc&event=purchase"))
            .ambiguous("spelling"),
        case("A: ... 4_2", numeric_apps(), Request::get("/v1/track?app_id=4_2&event=purchase"))
            .ambiguous("spelling"),
        case("A: ... the app itself is asked for its token", numeric_apps(), Request::get("/v1/track?app_id=42&event=purchase"))
            .local(401, "The s2s token is invalid"),
        case("A: ... another number is another app", numeric_apps(), Request::get("/v1/track?app_id=43&event=purchase"))
            .up(":path", Some("/v1/track?app_id=43&event=purchase")),
        // Round 4 (helper-32): every numeric spelling, not only those read as a
        // configured number by a few parsers; no length limit.
        case("A: ... 0o52 (Python's int(v, 0), JavaScript's Number)", numeric_apps(), Request::get("/v1/track?app_id=0o52&event=purchase"))
            .ambiguous("spelling"),
        case("A: ... 0b101010", numeric_apps(), Request::get("/v1/track?app_id=0b101010&event=purchase"))
            .ambiguous("spelling"),
        case("A: ... 41.9999999999999999 (a float)", numeric_apps(), Request::get("/v1/track?app_id=41.9999999999999999&event=purchase"))
            .ambiguous("spelling"),
        case("A: ... 0x1.5p5 (Go's ParseFloat)", numeric_apps(), Request::get("/v1/track?app_id=0x1.5p5&event=purchase"))
            .ambiguous("spelling"),
        case("A: ... 42xyz (PHP's (int), MySQL)", numeric_apps(), Request::get("/v1/track?app_id=42xyz&event=purchase"))
            .ambiguous("spelling"),
        case("A: ... sixty-three zeros and 42", numeric_apps(),
             Request::get(&format!("/v1/track?app_id={}42&event=purchase", "0".repeat(63))))
            .ambiguous("spelling"),
        case("A: ... 2^32 + 42 (32-bit code reads 42)", numeric_apps(), Request::get("/v1/track?app_id=4294967338&event=purchase"))
            .ambiguous("spelling"),
        case("A: ... 2^64 + 42", numeric_apps(), Request::get("/v1/track?app_id=18446744073709551658&event=purchase"))
            .ambiguous("spelling"),
        // Session 10 (helper-34) F2: JavaScript rounds to a double before `|0`:
        // 36028801313932265 is 2^55 + 2^32 + 1001 exactly, 1000 to `Number(v)|0`.
        case("A: ... rounded to a double, then cut to 32 bits (JavaScript reads 1000)", numeric_apps(),
             Request::get("/v1/track?app_id=36028801313932265&event=purchase"))
            .ambiguous("spelling"),
        case("A: ... any plain decimal from 2^32 on that is no configured app", numeric_apps(),
             Request::get("/v1/track?app_id=4294967296&event=purchase"))
            .ambiguous("spelling"),
        case("A: ... more digits than 64 bits hold", numeric_apps(),
             Request::get(&format!("/v1/track?app_id=1{}&event=purchase", "0".repeat(40))))
            .ambiguous("spelling"),
        case("A: ... below 2^32 a plain decimal is its value: another app", numeric_apps(),
             Request::get("/v1/track?app_id=4294967295&event=purchase"))
            .up(":path", Some("/v1/track?app_id=4294967295&event=purchase")),
        // Round 3 (helper-36) N2: text that is no number is 0 to `v|0`, `atoi`,
        // PHP's `(int)`: with an app 0, any unknown app that is not a plain decimal
        // (a request naming no app is shadow-passed, as everywhere: docs).
        case("A: ... NaN is app 0 to v|0", numeric_apps().replace(r#""1000": {"#, r#""0": {"#),
             Request::get("/v1/track?app_id=NaN&event=purchase"))
            .ambiguous("spelling"),
        case("A: ... any text likewise (PHP's (int) reads it as 0)", numeric_apps().replace(r#""1000": {"#, r#""0": {"#),
             Request::get("/v1/track?app_id=abc&event=purchase"))
            .ambiguous("spelling"),
        case("A: ... without an app 0, NaN is another app", numeric_apps(),
             Request::get("/v1/track?app_id=NaN&event=purchase"))
            .up(":path", Some("/v1/track?app_id=NaN&event=purchase")),
        case("A: ... 7 beside a configured 007", numeric_apps_padded(), Request::get("/v1/track?app_id=7&event=purchase"))
            .ambiguous("spelling"),
        case("A: ... 007 itself is asked for its token", numeric_apps_padded(), Request::get("/v1/track?app_id=007&event=purchase"))
            .local(401, "The s2s token is invalid"),
        // F5: an HTML numeric entity (qs's `interpretNumericEntities`).
        case("A: an HTML numeric entity in a decision field", c(),
             form_post("/event", "utf8=%26%2310003%3B&s2s=1&app_token=%26%2397%3Bbc123kuvada7&event_token=x"))
            .ambiguous("bad_value"),
        // F6: a form body on a route that does not read bodies.
        case("A: a form body on a body: ignore route", ignore_body(),
             form_post("/v1/events?app_token=appA", "app_token=appB&event=purchase").header("authorization", "Bearer tok-for-app-A-aaaaaaaaaaaa"))
            .local(415, "Unsupported request body"),
        case("A: ... a multipart body", ignore_body(),
             Request::post("/v1/events?app_token=appA").header("authorization", "Bearer tok-for-app-A-aaaaaaaaaaaa")
                 .header("content-type", "multipart/form-data; boundary=x").body("--x--"))
            .local(415, "Unsupported request body"),
        case("A: ... a JSON body is the route's", ignore_body(),
             Request::post("/v1/events?app_token=appA").header("authorization", "Bearer tok-for-app-A-aaaaaaaaaaaa")
                 .header("content-type", "application/json").body("{}"))
            .up("x-s2s-guard-token-id", Some("appA-events")),
        case("A: ... a body without a media type (PHP and Python's cgi parse it as a form)", ignore_body(),
             Request::post("/v1/events?app_token=appA").header("authorization", "Bearer tok-for-app-A-aaaaaaaaaaaa")
                 .body("app_token=appB&event=purchase"))
            .local(415, "Unsupported request body"),
        case("A: ... a form media type with something after it", ignore_body(),
             Request::post("/v1/events?app_token=appA").header("authorization", "Bearer tok-for-app-A-aaaaaaaaaaaa")
                 .header("content-type", "application/x-www-form-urlencoded x").body("app_token=appB"))
            .local(415, "Unsupported request body"),
        case("A: ... an empty media type", ignore_body(),
             Request::post("/v1/events?app_token=appA").header("authorization", "Bearer tok-for-app-A-aaaaaaaaaaaa")
                 .header("content-type", "").body("app_token=appB"))
            .local(415, "Unsupported request body"),
        case("A: ... two media types", ignore_body(),
             Request::post("/v1/events?app_token=appA").header("authorization", "Bearer tok-for-app-A-aaaaaaaaaaaa")
                 .header("content-type", "application/json").header("content-type", "text/plain").body("{}"))
            .local(415, "Unsupported request body"),
        case("A: ... text/plain (a beacon) is the route's", ignore_body(),
             Request::post("/v1/events?app_token=appA").header("authorization", "Bearer tok-for-app-A-aaaaaaaaaaaa")
                 .header("content-type", "text/plain").body("{}"))
            .up("x-s2s-guard-token-id", Some("appA-events")),
        case("A: an owned header as a server variable spelt with %u (IIS)", c(),
             Request::get("/event?s2s=1&app_token=zzz&event_token=x&HTTP_X_S2S_GUARD_TOKEN_%u0049D=adj-events"))
            .ambiguous("spelling"),
        case("A: ... as IIS's HEADER_ variable", c(),
             Request::get("/event?s2s=1&app_token=zzz&event_token=x&HEADER_X-S2S-GUARD-APP=abc"))
            .ambiguous("spelling"),
        // F7: a second reading of the method.
        case("A: X-HTTP-Method-Override names another method", ignore_body(),
             Request::post("/v1/events?app_token=appA").header("authorization", "Bearer tok-for-app-A-aaaaaaaaaaaa")
                 .header("x-http-method-override", "DELETE"))
            .ambiguous("header"),
        case("A: ... X_HTTP_METHOD", ignore_body(),
             Request::post("/v1/events?app_token=appA").header("authorization", "Bearer tok-for-app-A-aaaaaaaaaaaa")
                 .header("x_http_method", "PUT"))
            .ambiguous("header"),
        case("A: ... _method in the query", ignore_body(),
             Request::post("/v1/events?app_token=appA&_method=DELETE").header("authorization", "Bearer tok-for-app-A-aaaaaaaaaaaa"))
            .ambiguous("spelling"),
        case("A: ... _method in a form body", c(),
             form_post("/event", format!("s2s=1&app_token={APP}&event_token=x&_method=DELETE")).header("authorization", bearer()))
            .ambiguous("spelling"),
        case("A: ... _method as PHP folds .method", ignore_body(),
             Request::post("/v1/events?app_token=appA&.method=DELETE").header("authorization", "Bearer tok-for-app-A-aaaaaaaaaaaa"))
            .ambiguous("spelling"),
        case("A: ... _method[]", ignore_body(),
             Request::post("/v1/events?app_token=appA&_method%5B%5D=DELETE").header("authorization", "Bearer tok-for-app-A-aaaaaaaaaaaa"))
            .ambiguous("spelling"),
        case("A: ... a leading space (+_method)", ignore_body(),
             Request::post("/v1/events?app_token=appA&+_method=DELETE").header("authorization", "Bearer tok-for-app-A-aaaaaaaaaaaa"))
            .ambiguous("spelling"),
        case("A: ... [_method] (Rack 2 and qs drop the brackets)", ignore_body(),
             Request::post("/v1/events?app_token=appA&%5B_method%5D=DELETE").header("authorization", "Bearer tok-for-app-A-aaaaaaaaaaaa"))
            .ambiguous("spelling"),
        case("A: ... ]_method", ignore_body(),
             Request::post("/v1/events?app_token=appA&]_method=DELETE").header("authorization", "Bearer tok-for-app-A-aaaaaaaaaaaa"))
            .ambiguous("spelling"),
        case("A: ... a URL header as an HTTP/2 trailer", c(),
             form_post("/event?s2s=1", format!("app_token={APP}&event_token=e")).http2().header("authorization", bearer())
                 .trailer("x-original-url", "/session"))
            .ambiguous("trailer"),
        case("A: ... the override header's name as a parameter (ASP.NET MVC)", ignore_body(),
             Request::post("/v1/events?app_token=appA&X-HTTP-Method-Override=DELETE").header("authorization", "Bearer tok-for-app-A-aaaaaaaaaaaa"))
            .ambiguous("spelling"),
        case("A: ... an override header as an HTTP/2 trailer", c(),
             form_post("/event?s2s=1", format!("app_token={APP}&event_token=e")).http2().header("authorization", bearer())
                 .trailer("x-http-method-override", "DELETE"))
            .ambiguous("trailer"),
        case("A: ... a cookie as an HTTP/2 trailer", c(),
             form_post("/event?s2s=1", format!("app_token={APP}&event_token=e")).http2().header("authorization", bearer())
                 .trailer("cookie", "app_token=other"))
            .ambiguous("trailer"),
        case("A: ... naming the request's own method is no other reading", ignore_body(),
             Request::post("/v1/events?app_token=appA").header("authorization", "Bearer tok-for-app-A-aaaaaaaaaaaa")
                 .header("x-http-method-override", "post"))
            .up("x-s2s-guard-token-id", Some("appA-events")),
        // I5: Tomcat reads no form whose media type is not in lower case.
        case("A: a form media type in upper case", c(),
             Request::post("/event").header("content-type", "APPLICATION/X-WWW-FORM-URLENCODED")
                 .body(format!("s2s=1&app_token={APP}&event_token=x")))
            .local(415, "Unsupported request body"),
        // F2: Jitsu's Segment-compatible and dry-run endpoints are Jitsu routes.
        case("A: Jitsu's /api/v1/segment/compat takes a server secret", c(),
             Request::post("/api/v1/segment/compat").header("content-type", "application/json").body("{}"))
            .local(401, r#"{"message":"The token is not found"}"#),
        case("A: ... /api/v1/segment/v1/batch with one", c(),
             Request::post(&format!("/api/v1/segment/v1/batch?token={JITSU_SERVER}")).header("content-type", "application/json").body("{}"))
            .up("x-s2s-guard-token-id", Some("jitsu")),
        case("A: ... /api/v1/events/dry-run", c(),
             Request::post("/api/v1/events/dry-run").header("content-type", "application/json").body("{}"))
            .local(401, r#"{"message":"The token is not found"}"#),
        case("D: ';' elsewhere in an unknown path is not ours", prefix(), Request::get("/static/a;b/..;/c"))
            .up(":path", Some("/static/a;b/..;/c")),
        case("D: ... nor a backslash", prefix(), Request::get("/static/a\\..\\b"))
            .up(":path", Some("/static/a\\..\\b")),
        case("D: Jitsu's /api.* client endpoints are protected", c(),
             Request::post("/api.dcvw").header("content-type", "application/json").body("{}"))
            .local(401, r#"{"message":"The token is not found"}"#),
        case("D: escapes decoded by another stack reach another route", no_decode(),
             Request::get("/s2s/%2e%2e/event?s2s_token=s2sTokenForTheStoreApp"))
            .ambiguous("path"),
        // Cold attack, session 8 (F2): a step switched off is still another
        // stack's reading (Express and ASP.NET route without regard to case;
        // Express, Spring MVC <= 5.3, Rails ignore a trailing slash).
        case("D: fold_case off: /EVENT is still /event to Express", paths_off("fold_case"),
             Request::get(&format!("/EVENT?s2s=1&app_token={APP}&event_token=x")))
            .ambiguous("path"),
        case("D: ... /Postback", paths_off("fold_case"), Request::get("/Postback?user_id=u&event_id=e"))
            .ambiguous("path"),
        case("D: ... /api/v1/S2S/event", paths_off("fold_case"),
             Request::post("/api/v1/S2S/event").header("content-type", "application/json").body("{}"))
            .ambiguous("path"),
        case("D: ... /EvEnT;x", paths_off("fold_case"), Request::get(&format!("/EvEnT;x?s2s=1&app_token={APP}")))
            .ambiguous("path"),
        case("D: ... the route itself is read as configured", paths_off("fold_case"),
             Request::post(&format!("/event?s2s=1&app_token={APP}")).header("authorization", bearer()))
            .up("x-s2s-guard-token-id", Some("adj-events")),
        case("D: ... an unknown path in upper case still passes", paths_off("fold_case"), Request::get("/Static/Logo.PNG"))
            .up(":path", Some("/Static/Logo.PNG")),
        case("D: ignore_trailing_slash off: /event/ is still /event to Spring", paths_off("ignore_trailing_slash"),
             Request::get(&format!("/event/?s2s=1&app_token={APP}&event_token=x")))
            .ambiguous("path"),
        case("D: ... /session/", paths_off("ignore_trailing_slash"),
             form_post("/session/", format!("app_token={APP}&gps_adid=38400000-8cf0-11bd-b23e-10b96e40000d")))
            .ambiguous("path"),
        case("D: ... /event/.", paths_off("ignore_trailing_slash"), Request::get(&format!("/event/.?s2s=1&app_token={APP}")))
            .ambiguous("path"),
        case("D: ... the route itself is read as configured", paths_off("ignore_trailing_slash"),
             Request::post(&format!("/event?s2s=1&app_token={APP}")).header("authorization", bearer()))
            .up("x-s2s-guard-token-id", Some("adj-events")),
        case("D: ... an unknown path with a trailing slash still passes", paths_off("ignore_trailing_slash"), Request::get("/static/"))
            .up(":path", Some("/static/")),
        // Cold attack, session 8, round 2 (F1, F2): older Spring trims each segment;
        // with decoding off, a suffix is still a suffix once decoded.
        case("D: a segment of escaped white space (older Spring trims it away)", c(),
             Request::get(&format!("/event/%20?s2s=1&app_token={APP}&event_token=x")))
            .ambiguous("path"),
        case("D: ... before the route", c(), Request::get(&format!("/%20/event?s2s=1&app_token={APP}&event_token=x")))
            .ambiguous("path"),
        case("D: ... a tab", c(), Request::get(&format!("/%09/event?s2s=1&app_token={APP}&event_token=x")))
            .ambiguous("path"),
        case("D: ... on Swaarm's route", c(), Request::get("/postback/%20?user_id=u&event_id=e"))
            .ambiguous("path"),
        // Round 3: trimmed, then read with a format suffix.
        case("D: ... then a format suffix", c(), Request::get(&format!("/%20/event.json?s2s=1&app_token={APP}&event_token=x")))
            .ambiguous("path"),
        case("D: ... leading white space in the segment", c(), Request::get(&format!("/%20event.json?s2s=1&app_token={APP}&event_token=x")))
            .ambiguous("path"),
        case("D: ... a white-space segment after the suffix", c(), Request::get(&format!("/event.json/%20?s2s=1&app_token={APP}&event_token=x")))
            .ambiguous("path"),
        case("D: ... a tab segment before Swaarm's route with a suffix", c(), Request::get("/%09/postback.json?user_id=u&event_id=e"))
            .ambiguous("path"),
        // Round 4: a control character (which a C stack stops at) trimmed, then
        // an escaped suffix; `;` parameters dropped first.
        case("D: ... a tab segment, then an escaped suffix", c(), Request::get(&format!("/%09/event%2ejson?s2s=1&app_token={APP}&event_token=x")))
            .ambiguous("path"),
        case("D: ... a control character before the name, an escaped dot alone", c(), Request::get(&format!("/%0bevent%2e?s2s=1&app_token={APP}")))
            .ambiguous("path"),
        case("D: ... a session", sdk(),
             form_post("/%09/session%2ejson", format!("app_token={APP}&gps_adid=38400000-8cf0-11bd-b23e-10b96e40000d")))
            .ambiguous("path"),
        case("D: ... a ';' segment after the trimmed one", c(), Request::get(&format!("/%20/;x/event%2ejson?s2s=1&app_token={APP}")))
            .ambiguous("path"),
        case("D: ... ';' on the trimmed segment", c(), Request::get(&format!("/%20;x/event%2ejson?s2s=1&app_token={APP}")))
            .ambiguous("path"),
        // Round 5: the most permissive reading takes every step whatever the
        // switches say (Rails merges and drops the slash, then takes the format);
        // an escaped space (IIS's %u0020 too) is kept in its segment.
        case("D: trailing slash kept: a suffix with ';' before the slash (Rails)", paths_off("ignore_trailing_slash"),
             Request::get(&format!("/event.json;x/?s2s=1&app_token={APP}")))
            .ambiguous("path"),
        case("D: ... a blank segment with ';' after a suffix (older Spring)", paths_off("ignore_trailing_slash"),
             Request::get(&format!("/event.json/%20;?s2s=1&app_token={APP}")))
            .ambiguous("path"),
        case("D: slashes not merged: a suffix with ';' before two slashes", paths_off("merge_slashes"),
             Request::get(&format!("/event.json;x//?s2s=1&app_token={APP}")))
            .ambiguous("path"),
        case("D: IIS's escaped space before a script's name", c(),
             Request::get(&format!("/%u0020/index.php/event?s2s=1&app_token={APP}")))
            .ambiguous("path"),
        case("D: ... inside a segment", c(), Request::get(&format!("/a%u0020b/index.php/event?s2s=1&app_token={APP}")))
            .ambiguous("path"),
        case("D: ... after the script's name", c(), Request::get(&format!("/index.php/%u0020/event?s2s=1&app_token={APP}")))
            .ambiguous("path"),
        case("D: ... white space inside a segment is no other reading", c(), Request::get("/a%20b/event"))
            .up(":path", Some("/a%20b/event")),
        case("D: decoding off: an escaped format suffix", paths_off("decode_unreserved"),
             Request::get(&format!("/event%2ejson?s2s=1&app_token={APP}&event_token=x")))
            .ambiguous("path"),
        case("D: ... an escaped dot alone", paths_off("decode_unreserved"),
             Request::get(&format!("/event%2e?s2s=1&app_token={APP}&event_token=x")))
            .ambiguous("path"),
        case("D: an unknown path with an encoded slash is not ours", c(), Request::get("/static/a%2Fb"))
            .up(":path", Some("/static/a%2Fb"))
            .counts(&["s2s_guard.unmatched"]),
        case("D: an unknown path keeps its spelling", c(), Request::get("/Static/Logo.PNG"))
            .up(":path", Some("/Static/Logo.PNG")),
        case("D: the canonical path goes upstream", c(),
             Request::post(&format!("/x/../EVENT/?s2s=1&app_token={APP}")).header("authorization", bearer()))
            .up(":path", Some(&format!("/event?s2s=1&app_token={APP}")))
            .up("x-s2s-guard-token-id", Some("adj-events")),
        // Cold attack, session 7 (F1): PHP front controllers and CGI route what
        // follows a script's name.
        case("D: /index.php/event is /event to Laravel and Symfony", c(),
             Request::get(&format!("/index.php/event?s2s=1&app_token={APP}&event_token=x")))
            .ambiguous("path"),
        case("D: ... any script, any case, extra slashes", c(),
             Request::get(&format!("/x/App.PHP//event?s2s=1&app_token={APP}&event_token=x")))
            .ambiguous("path"),
        case("D: ... a CGI script, on the SDK's path", sdk(),
             form_post("/cgi-bin/collect.cgi/session", format!("app_token={APP}")))
            .ambiguous("path"),
        case("D: ... when the path cannot be made canonical either", c(),
             Request::get(&format!("/index.php/event;x?s2s=1&app_token={APP}")))
            .ambiguous("path"),
        case("D: ... a script's tail reaching another protected route", prefix(),
             Request::get("/api/v2/x.php/postback?token=t"))
            .ambiguous("path"),
        case("D: a file's name before an unprotected tail is not ours", c(), Request::get("/static/app.js/map"))
            .up(":path", Some("/static/app.js/map")),
        case("D: X-Original-URL naming a protected route (old Symfony, ZF1, IIS)", c(),
             Request::get("/healthz").header("x-original-url", format!("/event?s2s=1&app_token={APP}")))
            .ambiguous("path"),
        case("D: ... X-Rewrite-URL, under another spelling", c(),
             Request::get("/healthz").header("X_Rewrite_URL", "/postback"))
            .ambiguous("path"),
        case("D: ... naming another route than the request's", c(),
             Request::post(&format!("/event?s2s=1&app_token={APP}")).header("authorization", bearer())
                .header("x-original-url", "/session"))
            .ambiguous("path"),
        case("D: ... naming the request's own route", c(),
             Request::post(&format!("/event?s2s=1&app_token={APP}")).header("authorization", bearer())
                .header("x-original-url", "/event"))
            .up("x-s2s-guard-token-id", Some("adj-events")),
        case("D: ... between unknown paths", c(),
             Request::get("/healthz").header("x-original-url", "/status"))
            .up(":path", Some("/healthz")),
        // Cold attack, session 7, round 2: readings combined, IIS and ASP.NET.
        case("D: a format suffix and a ';' (Rails' (.:format), Spring)", c(),
             Request::get(&format!("/event.json;?s2s=1&app_token={APP}&event_token=x")))
            .ambiguous("path"),
        case("D: ... on the SDK's path", sdk(), form_post("/session.json;", format!("app_token={APP}")))
            .ambiguous("path"),
        case("D: ... a bare dot", c(), Request::get("/postback.;?user_id=u&event_id=e"))
            .ambiguous("path"),
        case("D: %u escapes in the path (IIS)", c(),
             Request::get(&format!("/%u0065vent?s2s=1&app_token={APP}&event_token=x")))
            .ambiguous("path"),
        case("D: ASP.NET's cookieless-session segment", c(),
             Request::get(&format!("/(S(x))/event?s2s=1&app_token={APP}&event_token=x")))
            .ambiguous("path"),
        case("D: ... with a script and a format suffix", c(),
             Request::get(&format!("/(S(x))/index.php/event.json?s2s=1&app_token={APP}")))
            .ambiguous("path"),
        case("D: a parenthesised segment before an unknown path is not ours", c(), Request::get("/(S(x))/static"))
            .up(":path", Some("/(S(x))/static")),
        case("A: a %u escape in a name (classic ASP.NET decodes it)", c(),
             Request::get(&format!("/event?s2s=1&app_token=unlisted&app_%u0074oken={APP}&event_token=x")))
            .ambiguous("bad_escape"),
        case("A: ... a device id's name on a signed route", sdk(),
             form_post("/session", format!("app_token={APP}&%u0069dfa=EA7583CD-A667-48BC-B806-42ECB2B48606")))
            .ambiguous("bad_escape"),
        // Cold attack, session 7, round 3.
        case("D: ... encoded, as IIS decodes the path before ASP.NET removes it", c(),
             Request::get(&format!("/%28S%28x%29%29/event?s2s=1&app_token={APP}&event_token=x")))
            .ambiguous("path"),
        case("D: ... half encoded, %u, or after the route", c(),
             Request::get(&format!("/event/%u0028S(x)%29/?s2s=1&app_token={APP}&event_token=x")))
            .ambiguous("path"),
        case("A: flag mode: a client's marker spelt with %u in the body is removed", flag(),
             form_post("/event?s2s=1", format!("app_token={APP}&s2s_guard_%u0072ejection=none")))
            .up_body(&format!("s2s_guard_rejection=missing&app_token={APP}")),
        // Cold attack, session 7, round 4: model binding.
        case("A: a dotted prefix (ASP.NET MVC binds request.app_token first)", c(),
             Request::get(&format!("/event?s2s=1&app_token=unlisted&event_token=x&request.app_token={APP}")))
            .ambiguous("spelling"),
        case("A: ... bracketed (ASP.NET, Rails' nested params)", c(),
             Request::get(&format!("/event?s2s=1&event_token=x&model[app_token]={APP}")))
            .ambiguous("spelling"),
        case("A: Spring's field default and marker (!app_token, _app_token)", c(),
             Request::get(&format!("/event?s2s=1&event_token=x&!app_token={APP}")))
            .ambiguous("spelling"),
        case("A: ... a device id's name on a signed route", sdk(),
             form_post("/session", format!("app_token={APP}&request.gps_adid=38400000-8cf0-11bd-b23e-10b96e40000d")))
            .ambiguous("spelling"),
        case("A: a dotted name with no field in it passes", c(),
             Request::post(&format!("/event?s2s=1&app_token={APP}&partner.value=1")).header("authorization", bearer()))
            .up("x-s2s-guard-token-id", Some("adj-events")),
        // Cold attack, session 7, round 5.
        case("A: a model-binding prefix spelt with %u (System.Web decodes it first)", c(),
             Request::get(&format!("/event?s2s=1&event_token=x&request%u002eapp_token={APP}")))
            .ambiguous("bad_escape"),
        case("A: Spring's map-key spelling", c(),
             Request::get(&format!("/event?s2s=1&event_token=x&request['app_token']={APP}")))
            .ambiguous("spelling"),
        case("A: more pairs than Tomcat keeps, query and body together", held(),
             form_post(&format!("/event?s2s=1&{}", vec!["k=1"; 600].join("&")),
                       format!("{}&app_token={APP}", vec!["k=1"; 400].join("&"))))
            .ambiguous("too_many_params"),
        case("A: flag mode: too many pairs to be sure the marker is read is answered, not marked", flag_held(),
             form_post(&format!("/event?s2s=1&app_token={APP}&{}", vec!["k=1"; 998].join("&")), "x=1"))
            .ambiguous("too_many_params"),
        // Round 6 (no bypass; an inconsistency closed): a prefix and a control
        // character together.
        case("A: a model-binding prefix with U+001F after the field", c(),
             Request::get(&format!("/event?s2s=1&event_token=x&request.app_token%1F={APP}")))
            .ambiguous("spelling"),
        case("A: flag mode: a prefixed client marker with a NUL is removed", flag(),
             form_post("/event?s2s=1", format!("app_token={APP}&request.s2s_guard_rejection%00=none")))
            .up_body(&format!("s2s_guard_rejection=missing&app_token={APP}")),
        // Cold attack, session 7 (F3, F4): names other stacks read as a field.
        case("A: U+001F after a name (Python's strip drops it)", c(),
             Request::get(&format!("/event?s2s=1&app_token=unlisted&app_token%1F={APP}&event_token=x")))
            .ambiguous("spelling"),
        case("A: U+001C before a name", c(),
             Request::get(&format!("/event?s2s=1&%1Capp_token={APP}&event_token=x")))
            .ambiguous("spelling"),
        case("A: a name in another case (ASP.NET reads names case-insensitively)", c(),
             Request::get(&format!("/event?s2s=1&app_token=unlisted&APP_TOKEN={APP}&event_token=x")))
            .ambiguous("spelling"),
        case("A: ... a credential name in another case on a route that does not read it", c(),
             Request::get("/postback?user_id=u&event_id=e&TOKEN=revoked").header("authorization", SWAARM))
            .ambiguous("other_credential"),
        case("A: a fullwidth letter in a name (NFKC reads it as ASCII)", c(),
             Request::get(&format!("/event?s2s=1&app_token=unlisted&%EF%BD%81pp_token={APP}&event_token=x")))
            .ambiguous("spelling"),
        case("A: KELVIN SIGN in a name (case folding reads it as k)", c(),
             Request::get(&format!("/event?s2s=1&app_token=unlisted&app_to%E2%84%AAen={APP}&event_token=x")))
            .ambiguous("spelling"),
        case("A: a non-ASCII name that cannot fold onto a field passes", c(),
             Request::post(&format!("/event?s2s=1&app_token={APP}&%C3%A9xyz=1")).header("authorization", bearer()))
            .up("x-s2s-guard-token-id", Some("adj-events")),
        case("A: flag mode: a client's marker with U+001F after its name is removed", flag(),
             form_post("/event?s2s=1", format!("app_token={APP}&s2s_guard_rejection%1F=none")))
            .up_body(&format!("s2s_guard_rejection=missing&app_token={APP}")),
        // ---- E. headers and fields the filter owns ------------------------------------
        case("E: owned headers under any spelling are removed (allowed)", c(),
             Request::post(&format!("/event?s2s=1&app_token={APP}")).header("authorization", bearer())
                .header("x_s2s_guard_app", "spoof").header("X_S2S_GUARD_TOKEN_ID", "admin").header("x-s2s-guard_rejection", "none"))
            .up("x_s2s_guard_app", None)
            .up("x_s2s_guard_token_id", None)
            .up("x-s2s-guard_rejection", None)
            .up("x-s2s-guard-app", Some(APP)),
        case("E: a dotted spelling (Apache 2.2 CGI folds it) is removed too", c(),
             Request::post(&format!("/event?s2s=1&app_token={APP}")).header("authorization", bearer())
                .header("x.s2s.guard.token.id", "admin"))
            .up("x.s2s.guard.token.id", None)
            .up("x-s2s-guard-token-id", Some("adj-events")),
        case("E: ... on a shadow-passed request", c(),
             Request::post("/event?s2s=1&app_token=unlisted").header("x_s2s_guard_token_id", "admin"))
            .up("x_s2s_guard_token_id", None),
        case("E: ... on an unknown path", c(), Request::get("/healthz").header("x_s2s_guard_token_id", "admin"))
            .up("x_s2s_guard_token_id", None),
        case("E: a client-sent flag marker is removed from the body", c(),
             form_post("/event?s2s=1", format!("app_token={APP}&s2s_guard_rejection=none&s2s_guard.rejection=none")).header("authorization", bearer()))
            .up_body(&format!("app_token={APP}")),
        case("E: ... and from the query", c(),
             Request::post(&format!("/event?s2s=1&app_token={APP}&s2s_guard_rejection=none")).header("authorization", bearer()))
            .up(":path", Some(&format!("/event?s2s=1&app_token={APP}"))),
        case("E: flag mode: the filter's marker, never the client's", flag(),
             form_post("/event?s2s=1", format!("app_token={APP}&s2s_guard_rejection=none")))
            .up_body(&format!("s2s_guard_rejection=missing&app_token={APP}")),
        // ---- F. what goes upstream before the decision --------------------------------
        case("F: flag mode: an unread body is refused, not forwarded unmarked", flag(),
             form_post("/event?s2s=1", format!("app_token={APP}&pad={}", "p".repeat(70_000))).header("authorization", "Bearer other"))
            .local(413, "Request body too large"),
        // Cold attack, session 13, round 10b (helper-49, F2): with the headers held a
        // body too large was forwarded marked, credentials and all (a Bearer token,
        // a query `s2s_token`, a Jitsu `X-Auth-Token`). Refused wherever the unread
        // body can hold a credential (some route reads one from a parameter)...
        case("F: flag mode, headers held: a body too large is refused where a body can hold a credential", flag_held(),
             form_post("/event?s2s=1", format!("app_token={APP}&pad={}", "p".repeat(70_000))).header("authorization", bearer()))
            .local(413, "Request body too large"),
        case("F: ... a query token too", flag_held(),
             form_post(&format!("/postback?s2s_token={SWAARM}"), format!("user_id=u&event_id=e&pad={}", "p".repeat(70_000))))
            .local(413, "Request body too large"),
        // Round 11 (helper-51, F1): ... and where none can, as the unread body may
        // hold a client's copy of the marker (`s2s_guard_rejection=`), which PHP's
        // `$_POST` and Flask's `form` read.
        case("F: ... header credentials only: refused too (a marker copy in the body)", header_only_flag_held(),
             form_post("/ingest?x=1", format!("s2s_guard_rejection=&pad={}", "p".repeat(70_000))).header("x-api-key", "ingest-key-0001"))
            .local(413, r#"{"message":"Request body too large"}"#),
        // Cold attack, session 8 (F1): without held headers, a query goes upstream
        // before the body decides, and Go's FormValue (query kept when the body read
        // fails), Tomcat or a query-only handler act on it.
        case("F: a query beside a form body, headers not held: refused at the headers", c(),
             form_post(&format!("/event?s2s=1&app_token={APP}&event_token=x&gps_adid=11110111-2345-6789-1122-000000005678"), "foo=bar"))
            .ambiguous("query_with_body"),
        case("F: ... even with a valid token (the body could still refuse it)", c(),
             form_post(&format!("/event?s2s=1&app_token={APP}&event_token=x"), "foo=bar").header("authorization", bearer()))
            .ambiguous("query_with_body"),
        case("F: ... an SDK session with its fields in the query", sdk(),
             form_post(&format!("/session?app_token={APP}&created_at=2025-12-31T23%3A40%3A00.000Z%2B0000&gps_adid=38400000-8cf0-11bd-b23e-10b96e40000e"), "foo=bar")
                .header("client-sdk", "android4.38.0"))
            .ambiguous("query_with_body"),
        case("F: ... a Swaarm postback", c(),
             form_post("/postback?user_id=u&event_id=purchase&sale_amount=42", "foo=bar").header("authorization", SWAARM))
            .ambiguous("query_with_body"),
        case("F: ... HTTP/2, the body in chunks", c(),
             form_post(&format!("/event?s2s=1&app_token={APP}&event_token=x"), "foo=bar").http2().chunked(2))
            .ambiguous("query_with_body"),
        case("F: ... flag mode answers it (its marker would come after the query)", flag(),
             form_post(&format!("/event?s2s=1&app_token={APP}&event_token=x"), "foo=bar"))
            .ambiguous("query_with_body"),
        case("F: ... a flag spelt otherwise is not the flag", c(),
             form_post("/event?s2s=1&%73%32s_x=1", format!("app_token={APP}")).header("authorization", bearer()))
            .ambiguous("query_with_body"),
        case("F: the flag alone may go first (it names no event)", c(),
             form_post("/event?s2s=1&", format!("app_token={APP}&event_token=x")).header("authorization", bearer()))
            .up_body(&format!("app_token={APP}&event_token=x")),
        case("F: ... and a refusal then resets a request whose query named nothing", c(),
             form_post("/event?s2s=1", format!("app_token={APP}&event_token=x")))
            .local(202, "Missing authentication token"),
        case("F: headers held: a query beside the body is read with it", held(),
             form_post(&format!("/event?s2s=1&app_token={APP}&event_token=x"), "foo=bar").header("authorization", bearer()))
            .up("x-s2s-guard-token-id", Some("adj-events"))
            .up_body("foo=bar"),
        case("F: ... and without a token nothing goes upstream", held(),
             form_post(&format!("/event?s2s=1&app_token={APP}&event_token=x"), "foo=bar"))
            .local(202, "Missing authentication token"),
        // Cold attack, session 8, round 2 (F3): Swaarm's document, as it sends it.
        case("F: Swaarm's click-id call needs its token", c(),
             Request::get("/click?no_redirect=true&user_ip=203.0.113.9&user_ua=Mozilla&s2stoken=guessed"))
            .local(401, "The s2s token is invalid"),
        case("F: ... and with it, it is forwarded", c(),
             Request::get(&format!("/click?no_redirect=true&user_ip=203.0.113.9&user_ua=Mozilla&s2stoken={SWAARM}")))
            .up("x-s2s-guard-token-id", Some("swaarm"))
            .up(":path", Some("/click?no_redirect=true&user_ip=203.0.113.9&user_ua=Mozilla")),
        case("F: Swaarm's event call sends event_id twice: only its presence is read", c(),
             Request::get(&format!("/s2sevent?event_id=registration&token={SWAARM}&user_id=u1&event_id=&user_ip=203.0.113.9&user_ua=Mozilla%2F5.0")))
            .up("x-s2s-guard-token-id", Some("swaarm")),
        case("F: ... but the token may not repeat", c(),
             Request::get(&format!("/s2sevent?event_id=registration&token={SWAARM}&user_id=u1&token=other&user_ip=203.0.113.9&user_ua=Mozilla")))
            .ambiguous("repeated"),
        case("F: ... nor user_id, which may not be empty", c(),
             Request::get(&format!("/s2sevent?event_id=e&token={SWAARM}&user_id=u1&user_id=u2&user_ip=203.0.113.9&user_ua=Mozilla")))
            .ambiguous("repeated"),
        // Cold attack, session 8 (F3, F4): flag mode forwards no unverified secret.
        case("F: flag mode: a credential in the trailers is answered, not forwarded", flag(),
             form_post("/event", format!("s2s=1&app_token={APP}")).http2()
                .header("authorization", bearer()).trailer("authorization", "Bearer legacy-token"))
            .ambiguous("trailer"),
        case("F: flag mode: an App Secret in the query is not forwarded", flag_sdk(),
             Request::get(&format!("/attribution?app_token={APP}&created_at=2025-12-31T23%3A59%3A00.000Z%2B0000&gps_adid=38400000-8cf0-11bd-b23e-10b96e40000d&app_secret=1234567890123456"))
                .header("client-sdk", "android4.38.0"))
            .up(":path", Some(&format!("/attribution?app_token={APP}&created_at=2025-12-31T23%3A59%3A00.000Z%2B0000&gps_adid=38400000-8cf0-11bd-b23e-10b96e40000d")))
            .up("x-s2s-guard-rejection", Some("app_secret_in_request")),
        case("F: ... nor in the body", flag_sdk(),
             form_post("/session", format!("app_token={APP}&app_secret=1234567890123456&gps_adid=38400000-8cf0-11bd-b23e-10b96e40000d"))
                .header("client-sdk", "android4.38.0"))
            .up_body(&format!("s2s_guard_rejection=app_secret_in_request&app_token={APP}&gps_adid=38400000-8cf0-11bd-b23e-10b96e40000d")),
        case("F: identity headers come only from the final decision", c(),
             form_post("/event?s2s=1", format!("app_token={APP}")).header("authorization", bearer()))
            .up("x-s2s-guard-token-id", None)
            .up_body(&format!("app_token={APP}")),
    ];
    // Every path variant of a protected path is that path: no token, not forwarded.
    for p in [
        "/event/",
        "//event",
        "/./event",
        "/x/../event",
        "/%65vent",
        "/EVENT",
        "/Event//",
    ] {
        out.push(
            case(
                format!("D: {p} is /event"),
                c(),
                Request::post(&format!("{p}?s2s=1&app_token={APP}")),
            )
            .local(202, "Missing authentication token"),
        );
    }
    out
}

fn check(c: &Case, o: &Observed, runner: &str) -> Result<(), String> {
    let ctx = format!("[{runner}] {}", c.name);
    let err = |what: String| Err(format!("{ctx}: {what}"));
    if o.forwarded != c.forwarded || o.status != c.status {
        return err(format!(
            "forwarded={} status={} body={:?}, want forwarded={} status={}",
            o.forwarded,
            o.status,
            String::from_utf8_lossy(&o.body),
            c.forwarded,
            c.status
        ));
    }
    if let Some(b) = c.body {
        if String::from_utf8_lossy(&o.body) != b {
            return err(format!("body {:?}", String::from_utf8_lossy(&o.body)));
        }
    }
    for (name, want) in &c.up {
        let Some(up) = &o.upstream else {
            return err("not forwarded".into());
        };
        let got = header_value(up, name).map(|v| String::from_utf8_lossy(v).into_owned());
        if got != *want {
            return err(format!("upstream {name}: {got:?}, want {want:?}"));
        }
    }
    if let Some(b) = &c.up_body {
        let got = o
            .upstream_body
            .as_ref()
            .map(|b| String::from_utf8_lossy(b).into_owned());
        if got.as_deref() != Some(b.as_str()) {
            return err(format!("upstream body {got:?}"));
        }
    }
    if let Some(e) = common::early_query_problem(o) {
        return err(e);
    }
    if let Err(e) = common::without_breakdowns(&o.counters) {
        return err(e);
    }
    for name in &c.counts {
        if o.counters.get(*name).copied().unwrap_or(0) != 1 {
            return err(format!("counter {name} not moved: {:?}", o.counters));
        }
    }
    if !o.forwarded
        && !o
            .counters
            .keys()
            .any(|k| k.starts_with("s2s_guard.rejected."))
    {
        return err(format!(
            "refused without a rejection counter: {:?}",
            o.counters
        ));
    }
    Ok(())
}

fn check_all(mut run: impl FnMut(&Case) -> Observed, runner: &str) {
    let failures: Vec<String> = cases()
        .iter()
        .filter_map(|c| check(c, &run(c), runner).err())
        .collect();
    assert!(
        failures.is_empty(),
        "{} failing:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

#[test]
fn reading_scenarios_native() {
    check_all(|c| run_native(&c.config, &c.req), "native");
}

#[test]
fn reading_scenarios_through_the_wasm() {
    let mut runner = WasmRunner::new();
    check_all(|c| runner.run(&c.config, &c.req), "wasm");
}

/// An attacker-chosen signing id cannot forge a field of the log line.
#[test]
fn logged_values_are_escaped_and_capped() {
    let cfg = format!(
        r#"{{"presets": ["adjust_sdk"],
  "apps": {{"{APP}": {{"signature": {{"secrets": [{{"id": 1, "info": [1, 2, 3, 4]}}], "later_sdk": "pass"}}}}}}}}"#
    );
    let mut runner = WasmRunner::new();
    let forged = format!("x token_id=admin {}", "A".repeat(300));
    let req = form_post("/session", format!("app_token={APP}")).header(
        "authorization",
        format!(
            r#"Signature signature="abc",adj_signing_id="{forged}",algorithm="adj2",headers_id="1""#
        ),
    );
    let o = runner.run(&cfg, &req);
    assert!(o.forwarded, "{o:?}");
    let all: Vec<String> = runner
        .host(&cfg)
        .logs()
        .into_iter()
        .map(|l| l.message)
        .collect();
    let line = all
        .iter()
        .find(|l| l.contains("unverifiable_passed"))
        .unwrap_or_else(|| panic!("no log line: {all:?}"));
    assert!(!line.contains("token_id=admin"), "{line}");
    assert!(line.contains("token_id=-"), "{line}");
    assert!(line.contains("\\x3d") && line.contains("..."), "{line}");
    assert!(line.len() < 400, "{line}");
}

/// Trailers (HTTP/2): the decision waits for them, trailers named like an owned
/// header never reach the collector, and with held headers a spoofed identity is
/// replaced by the verified one.
#[test]
fn trailers_end_the_request_through_the_wasm() {
    let mut runner = WasmRunner::new();
    let cfg = c();
    let host = runner.host(&cfg);
    let req = form_post("/event?s2s=1", format!("app_token={APP}"))
        .http2()
        .chunked(5)
        .header("authorization", bearer())
        .trailer("x-s2s-guard-token-id", "admin")
        .trailer("x_s2s_guard_app", "spoof")
        .trailer("x-checksum", "1");
    let o = host.send(req);
    let up = o.upstream.expect("forwarded");
    assert_eq!(up.body, format!("app_token={APP}").into_bytes());
    let names: Vec<&str> = up.trailers.iter().map(|(k, _)| k.as_str()).collect();
    assert_eq!(names, vec!["x-checksum"], "owned trailers removed");

    // Held headers: decided in the trailers, identity from the decision only.
    let hold = config(r#", "hold_headers_for_body": true"#);
    let host = runner.host(&hold);
    let spoof = |token: Option<String>| {
        let r = form_post("/event?s2s=1", format!("app_token={APP}"))
            .http2()
            .header("x-s2s-guard-token-id", "admin")
            .trailer("x-checksum", "1");
        match token {
            Some(t) => r.header("authorization", t),
            None => r,
        }
    };
    let o = host.send(spoof(None));
    assert!(o.upstream.is_none(), "no token: never upstream");
    assert_eq!(o.status, 202);
    let o = host.send(spoof(Some(bearer())));
    let up = o.upstream.expect("forwarded");
    assert_eq!(up.header("x-s2s-guard-token-id"), Some(&b"adj-events"[..]));
    assert_eq!(up.trailers.len(), 1);
}
