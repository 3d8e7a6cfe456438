//! S2S token authentication: the scenario table, run natively against the core and
//! through `dist/s2s-guard.wasm` in the test host. Each row: request,
//! configuration, expected status, body, upstream headers and counters.

mod common;

use common::{run_native, Observed, WasmRunner, START};
use s2s_guard_host::{header_value, Request};

/// SHA-256 of "v8s5opi0zs45607l8h8c48wak2vxb5oe" (the Adjust document's token).
const ADJUST_DIGEST: &str = "599c0d6d86efe0f5743bcd0ba688471c3ff4b0b0ed336bc9efdd3a52493c2283";
const ADJUST_TOKEN: &str = "v8s5opi0zs45607l8h8c48wak2vxb5oe";
const APP: &str = "abc123kuvada7";
const SWAARM: &str = "s2sTokenForTheStoreApp";
const JITSU_CLIENT: &str = "bd33c5fa-d69f-11ea-87d0-0242ac130003";
const JITSU_SERVER: &str = "5f15eba2-db58-11ea-87d0-0242ac130003";

fn config(extra: &str) -> String {
    format!(
        r#"{{
  "presets": ["adjust", "swaarm", "jitsu"],
  "tokens": [
    {{"id": "adj-events", "realm": "adjust", "sha256": "{ADJUST_DIGEST}", "app": "{APP}", "scopes": ["events", "ad_revenue"]}},
    {{"id": "adj-legacy", "realm": "adjust", "secret": "legacy-token", "app": "{APP}"}},
    {{"id": "adj-off", "realm": "adjust", "secret": "inactive-token", "app": "{APP}", "active": false}},
    {{"id": "adj-old", "realm": "adjust", "secret": "expired-token", "app": "{APP}", "expires_at": {expired}}},
    {{"id": "adj-next", "realm": "adjust", "secret": "future-token", "app": "{APP}", "not_before": "2026-06-01T00:00:00Z"}},
    {{"id": "adj-gdpr", "realm": "adjust", "secret": "gdpr-token", "app": "{APP}", "scopes": ["gdpr"]}},
    {{"id": "adj-other-app", "realm": "adjust", "secret": "other-app-token", "app": "otherapp1", "scopes": ["events"]}},
    {{"id": "swaarm", "realm": "swaarm", "secret": "{SWAARM}"}},
    {{"id": "jitsu", "realm": "jitsu", "client_secret": "{JITSU_CLIENT}", "server_secret": "{JITSU_SERVER}", "origins": ["*.abc.com", "efg.com"]}},
    {{"id": "jitsu-any-origin", "realm": "jitsu", "client_secret": "open-client"}}
  ],
  "apps": {{"{APP}": {{"authentication": true}}, "otherapp1": {{"authentication": true}},
           "eventsonly": {{"authentication": true, "authentication_scopes": ["events"]}}}}
  {extra}
}}"#,
        expired = START - 1
    )
}

struct Case {
    name: &'static str,
    config: String,
    req: Request,
    forwarded: bool,
    status: u16,
    body: Option<&'static str>,
    up: Vec<(&'static str, Option<&'static str>)>,
    up_body: Option<&'static str>,
    resp: Vec<(&'static str, Option<&'static str>)>,
    counters: Vec<&'static str>,
}

fn case(name: &'static str, config: String, req: Request) -> Case {
    Case {
        name,
        config,
        req,
        forwarded: true,
        status: 200,
        body: None,
        up: Vec::new(),
        up_body: None,
        resp: Vec::new(),
        counters: Vec::new(),
    }
}

impl Case {
    fn local(mut self, status: u16, body: &'static str) -> Case {
        self.forwarded = false;
        self.status = status;
        self.body = Some(body);
        self
    }
    fn up(mut self, name: &'static str, value: Option<&'static str>) -> Case {
        self.up.push((name, value));
        self
    }
    fn up_body(mut self, body: &'static str) -> Case {
        self.up_body = Some(body);
        self
    }
    fn resp(mut self, name: &'static str, value: Option<&'static str>) -> Case {
        self.resp.push((name, value));
        self
    }
    fn counts(mut self, c: &[&'static str]) -> Case {
        self.counters = c.to_vec();
        self
    }
    fn allowed_as(self, id: &'static str) -> Case {
        self.up("x-s2s-guard-token-id", Some(id))
    }
}

fn adjust_event(q: &str) -> Request {
    Request::post(&format!(
        "/event?s2s=1&app_token={APP}&event_token=xyzklm{q}"
    ))
}

fn bearer(t: &str) -> String {
    format!("Bearer {t}")
}

fn cases() -> Vec<Case> {
    let c = || config("");
    let flag = || config(r#","mode": "flag""#);
    let dry = || config(r#","mode": "dry_run""#);
    let reject_unknown =
        || config(r#","unknown_paths": "reject", "unknown_paths_profile": "swaarm""#);
    let omit = || config(r#","origin_mismatch": "omit_cors""#);
    let keep = || config(r#","strip_credential": false"#);
    let custom = || {
        config(
            r#","profiles": {"mine": {"missing": {"status": 401, "body": "need a token"},
               "default": {"status": 403, "body": "{\"error\":\"denied\"}", "content_type": "application/json"}}},
               "routes": [{"path": "/custom", "realm": "adjust", "profile": "mine", "credentials": ["header:x-api-key"], "scope": "events"}]"#,
        )
    };
    let form = || {
        config(
            r#","routes": [{"path": "/form", "realm": "swaarm", "profile": "swaarm", "credentials": ["form:s2s_token", "query:s2s_token"],
                "required_params": ["user_id"]}]"#,
        )
    };
    let hold_form = || {
        config(
            r#","hold_headers_for_body": true, "routes": [{"path": "/form", "realm": "swaarm", "profile": "swaarm", "credentials": ["form:s2s_token", "query:s2s_token"],
                "required_params": ["user_id"]}]"#,
        )
    };
    let hold_flag = || config(r#","hold_headers_for_body": true, "mode": "flag""#);
    let hold_flag_off = || config(r#","hold_headers_for_body": true"#);
    let json_route = || {
        config(
            r#","routes": [{"path": "/json", "realm": "swaarm", "profile": "swaarm", "credentials": ["query:s2s_token"],
                "required_params": ["user_id"], "body": "ignore"}]"#,
        )
    };
    let big = "x".repeat(5000);
    vec![
        // ---- Adjust profile --------------------------------------------------------
        case("adjust: Bearer token from the document", c(), adjust_event("").header("authorization", bearer(ADJUST_TOKEN)))
            .allowed_as("adj-events")
            .up("x-s2s-guard-app", Some(APP))
            .up("authorization", None)
            .counts(&["s2s_guard.requests.outcome.allowed.scope.events"]),
        case("adjust: missing token", c(), adjust_event(""))
            .local(202, "Missing authentication token")
            .counts(&["s2s_guard.requests.outcome.missing.scope.events", "s2s_guard.rejected.outcome.missing"]),
        case("adjust: Bearer with no token", c(), adjust_event("").header("authorization", "Bearer   "))
            .local(202, "Missing authentication token")
            .counts(&["s2s_guard.requests.outcome.missing.scope.events", "s2s_guard.rejected.outcome.missing"]),
        case("adjust: wrong token", c(), adjust_event("").header("authorization", "Bearer nope"))
            .local(202, "Wrong authentication token")
            .counts(&["s2s_guard.requests.outcome.wrong.scope.events", "s2s_guard.rejected.outcome.wrong"]),
        case("adjust: inactive token", c(), adjust_event("").header("authorization", "Bearer inactive-token"))
            .local(202, "Wrong authentication token")
            .counts(&["s2s_guard.requests.outcome.inactive.scope.events", "s2s_guard.rejected.outcome.inactive"]),
        case("adjust: expired token", c(), adjust_event("").header("authorization", "Bearer expired-token"))
            .local(202, "Wrong authentication token")
            .counts(&["s2s_guard.requests.outcome.expired.scope.events", "s2s_guard.rejected.outcome.expired"]),
        case("adjust: token not valid yet", c(), adjust_event("").header("authorization", "Bearer future-token"))
            .local(202, "Wrong authentication token")
            .counts(&["s2s_guard.requests.outcome.expired.scope.events", "s2s_guard.rejected.outcome.expired"]),
        case("adjust: insufficient scope", c(),
             Request::post(&format!("/session?s2s=1&app_token={APP}")).header("authorization", bearer(ADJUST_TOKEN)))
            .local(401, "Session failed")
            .counts(&["s2s_guard.requests.outcome.insufficient_scope.scope.sessions", "s2s_guard.rejected.outcome.insufficient_scope"]),
        case("adjust: legacy token works for every endpoint", c(),
             Request::get(&format!("/gdpr_forget_device?s2s=1&app_token={APP}")).header("authorization", "Bearer legacy-token"))
            .allowed_as("adj-legacy")
            .counts(&["s2s_guard.requests.outcome.allowed.scope.gdpr"]),
        case("adjust: gdpr scope", c(),
             Request::get(&format!("/gdpr_forget_device?s2s=1&app_token={APP}")).header("authorization", "Bearer gdpr-token"))
            .allowed_as("adj-gdpr")
            .counts(&["s2s_guard.requests.outcome.allowed.scope.gdpr"]),
        case("adjust: another app's token is a wrong token", c(), adjust_event("").header("authorization", "Bearer other-app-token"))
            .local(202, "Wrong authentication token")
            .counts(&["s2s_guard.requests.outcome.wrong.scope.events", "s2s_guard.rejected.outcome.wrong"]),
        case("adjust: odd casing and spacing of the scheme", c(), adjust_event("").header("authorization", format!("  bEaReR \t{ADJUST_TOKEN} ")))
            .allowed_as("adj-events")
            .counts(&["s2s_guard.requests.outcome.allowed.scope.events"]),
        case("adjust: two Authorization headers are ambiguous", c(),
             adjust_event("").header("authorization", bearer(ADJUST_TOKEN)).header("authorization", "Bearer legacy-token"))
            .local(400, "Ambiguous request")
            .counts(&["s2s_guard.requests.outcome.ambiguous.scope.events", "s2s_guard.rejected.outcome.ambiguous"]),
        case("adjust: app with authentication off passes (shadow)", c(),
             Request::get("/event?s2s=1&app_token=notlisted&event_token=x"))
            .up("x-s2s-guard-token-id", None)
            .counts(&["s2s_guard.requests.outcome.missing.scope.events", "s2s_guard.shadow.outcome.missing"]),
        case("adjust: authentication scopes exclude sessions (shadow)", c(),
             Request::get("/session?s2s=1&app_token=eventsonly"))
            .counts(&["s2s_guard.requests.outcome.missing.scope.sessions", "s2s_guard.shadow.outcome.missing"]),
        case("adjust: authentication scopes include events (enforced)", c(),
             Request::get("/event?s2s=1&app_token=eventsonly"))
            .local(202, "Missing authentication token")
            .counts(&["s2s_guard.requests.outcome.missing.scope.events", "s2s_guard.rejected.outcome.missing"]),
        case("adjust: form POST, token in header, app in body", c(),
             Request::post("/event").header("authorization", bearer(ADJUST_TOKEN))
                .header("content-type", "application/x-www-form-urlencoded")
                .body(format!("s2s=1&app_token={APP}&event_token=abc")))
            // Decided after the headers went upstream: identity headers come only
            // from a final decision, so none (hold mode sets them, below).
            .up("x-s2s-guard-token-id", None)
            .up("authorization", None)
            .up("content-length", None)
            .up_body("s2s=1&app_token=abc123kuvada7&event_token=abc")
            .counts(&["s2s_guard.requests.outcome.allowed.scope.events"]),
        case("adjust: form POST, app in body belongs to another token", c(),
             Request::post("/event").header("authorization", "Bearer other-app-token")
                .header("content-type", "application/x-www-form-urlencoded")
                .body(format!("s2s=1&app_token={APP}")))
            .local(202, "Wrong authentication token")
            .counts(&["s2s_guard.requests.outcome.wrong.scope.events", "s2s_guard.rejected.outcome.wrong"]),
        case("adjust: client cannot spoof identity headers", c(),
             adjust_event("").header("authorization", bearer(ADJUST_TOKEN))
                .header("x-s2s-guard-token-id", "admin").header("x-s2s-guard-rejection", "none"))
            .allowed_as("adj-events")
            .up("x-s2s-guard-rejection", None)
            .counts(&["s2s_guard.requests.outcome.allowed.scope.events"]),
        case("adjust: non-UTF-8 token bytes", c(), adjust_event("").header("authorization", b"Bearer \xff\xfe\x00"))
            .local(202, "Wrong authentication token")
            .counts(&["s2s_guard.requests.outcome.wrong.scope.events", "s2s_guard.rejected.outcome.wrong"]),
        case("adjust: enormous token", c(), adjust_event("").header("authorization", format!("Bearer {big}")))
            .local(202, "Wrong authentication token")
            .counts(&["s2s_guard.requests.outcome.wrong.scope.events", "s2s_guard.rejected.outcome.wrong"]),
        case("adjust: Signature header is not a token", c(),
             adjust_event("").header("authorization", r#"Signature secret_id="1",signature="ab",algorithm="sha256",headers="created_at""#))
            .local(202, "Missing authentication token")
            .counts(&["s2s_guard.requests.outcome.missing.scope.events", "s2s_guard.rejected.outcome.missing"]),
        case("adjust: a method the route does not list is refused (405)", c(), Request::new("DELETE", "/event"))
            .local(405, "Method not allowed")
            .counts(&["s2s_guard.requests.outcome.method_not_allowed.scope.events", "s2s_guard.rejected.outcome.method_not_allowed"]),
        case("adjust: a lower-case method is not POST (405)", c(), Request::new("post", &format!("/event?s2s=1&app_token={APP}")))
            .local(405, "Method not allowed")
            .counts(&["s2s_guard.requests.outcome.method_not_allowed.scope.events", "s2s_guard.rejected.outcome.method_not_allowed"]),
        // ---- modes -----------------------------------------------------------------
        case("flag mode: wrong token forwarded with the reason", flag(), adjust_event("").header("authorization", "Bearer nope"))
            .up("x-s2s-guard-rejection", Some("wrong"))
            .up("x-s2s-guard-token-id", None)
            .up("authorization", None)
            .counts(&["s2s_guard.requests.outcome.wrong.scope.events", "s2s_guard.flagged.outcome.wrong"]),
        case("flag mode: allowed requests carry no reason", flag(), adjust_event("").header("authorization", bearer(ADJUST_TOKEN)))
            .allowed_as("adj-events")
            .up("x-s2s-guard-rejection", None)
            .counts(&["s2s_guard.requests.outcome.allowed.scope.events"]),
        case("flag mode: form POST decided after the body carries the reason as a field", flag(),
             Request::post("/event").header("authorization", "Bearer other-app-token")
                .header("content-type", "application/x-www-form-urlencoded")
                .body(format!("app_token={APP}")))
            .up_body("s2s_guard_rejection=wrong&app_token=abc123kuvada7")
            .counts(&["s2s_guard.requests.outcome.wrong.scope.events", "s2s_guard.flagged.outcome.wrong"]),
        case("dry run: forwarded untouched", dry(), adjust_event("").header("authorization", "Bearer nope"))
            .up("authorization", Some("Bearer nope"))
            .up("x-s2s-guard-rejection", None)
            .counts(&["s2s_guard.requests.outcome.wrong.scope.events", "s2s_guard.flagged.outcome.wrong"]),
        case("dry run: spoofed identity still removed", dry(), adjust_event("").header("x-s2s-guard-token-id", "admin"))
            .up("x-s2s-guard-token-id", None)
            .counts(&["s2s_guard.requests.outcome.missing.scope.events", "s2s_guard.flagged.outcome.missing"]),
        // ---- Swaarm profile --------------------------------------------------------
        case("swaarm: s2s_token from the document", c(),
             Request::get(&format!("/postback?s2s_token={SWAARM}&user_id=0000-AAAA-BBBB-CCCC&event_id=register")))
            .allowed_as("swaarm")
            .up(":path", Some("/postback?user_id=0000-AAAA-BBBB-CCCC&event_id=register"))
            .counts(&["s2s_guard.requests.outcome.allowed.scope.none"]),
        case("swaarm: raw Authorization from the document", c(),
             Request::post("/postback?user_id=0000-AAAA-BBBB-CCCC&event_id=purchase&sale_amout=42").header("authorization", SWAARM))
            .allowed_as("swaarm")
            .up("authorization", None)
            .counts(&["s2s_guard.requests.outcome.allowed.scope.none"]),
        case("swaarm: keep the credential when stripping is off", keep(),
             Request::get(&format!("/postback?s2s_token={SWAARM}&user_id=u&event_id=e")))
            .up(":path", Some("/postback?s2s_token=s2sTokenForTheStoreApp&user_id=u&event_id=e"))
            .counts(&["s2s_guard.requests.outcome.allowed.scope.none"]),
        case("swaarm: percent-encoded token", c(),
             Request::get("/postback?s2s_token=s2sTokenFor%54he%53toreApp&user_id=u&event_id=e"))
            .allowed_as("swaarm")
            .counts(&["s2s_guard.requests.outcome.allowed.scope.none"]),
        case("swaarm: a decision field given twice is ambiguous, even with one value", c(),
             Request::get(&format!("/postback?s2s_token={SWAARM}&user_id=u&event_id=e&s2s_token={SWAARM}")))
            .local(400, "Ambiguous request")
            .counts(&["s2s_guard.requests.outcome.ambiguous.scope.none", "s2s_guard.rejected.outcome.ambiguous", "s2s_guard.ambiguous.class.repeated"]),
        case("swaarm: two different s2s_token values are ambiguous", c(),
             Request::get(&format!("/postback?s2s_token={SWAARM}&user_id=u&event_id=e&s2s_token=x")))
            .local(400, "Ambiguous request")
            .counts(&["s2s_guard.requests.outcome.ambiguous.scope.none", "s2s_guard.rejected.outcome.ambiguous", "s2s_guard.ambiguous.class.repeated"]),
        case("swaarm: header and query disagree", c(),
             Request::get(&format!("/postback?s2s_token={SWAARM}&user_id=u&event_id=e")).header("authorization", "other"))
            .local(400, "Ambiguous request")
            .counts(&["s2s_guard.requests.outcome.ambiguous.scope.none", "s2s_guard.rejected.outcome.ambiguous"]),
        case("swaarm: missing event_id is a 400", c(), Request::get(&format!("/postback?s2s_token={SWAARM}&user_id=u")))
            .local(400, "The request is missing a required parameter")
            .counts(&["s2s_guard.requests.outcome.bad_request.scope.none", "s2s_guard.rejected.outcome.bad_request"]),
        case("swaarm: invalid token is a 401", c(), Request::get("/postback?s2s_token=guess&user_id=u&event_id=e"))
            .local(401, "The s2s token is invalid")
            .counts(&["s2s_guard.requests.outcome.wrong.scope.none", "s2s_guard.rejected.outcome.wrong"]),
        case("swaarm: s2sevent needs user_ip and user_ua", c(),
             Request::get(&format!("/s2sevent?token={SWAARM}&user_id=u&event_id=")))
            .local(400, "The request is missing a required parameter")
            .counts(&["s2s_guard.requests.outcome.bad_request.scope.none", "s2s_guard.rejected.outcome.bad_request"]),
        case("swaarm: s2sevent attribution call with empty event_id", c(),
             Request::get(&format!("/s2sevent?token={SWAARM}&user_id=u&event_id=&user_ip=1.2.3.4&user_ua=UA")))
            .allowed_as("swaarm")
            .counts(&["s2s_guard.requests.outcome.allowed.scope.none"]),
        case("swaarm: unknown endpoint is a 404 when configured", reject_unknown(), Request::get("/clicks"))
            .local(404, "The endpoint being called is incorrect")
            .counts(&["s2s_guard.requests.outcome.unknown_endpoint.scope.none", "s2s_guard.rejected.outcome.unknown_endpoint"]),
        case("unknown path passes by default", c(), Request::get("/healthz").header("x-s2s-guard-token-id", "spoof"))
            .up("x-s2s-guard-token-id", None)
            .counts(&["s2s_guard.unmatched"]),
        // ---- form bodies -----------------------------------------------------------
        case("form: token in the body is stripped from it", form(),
             Request::post("/form").header("content-type", "application/x-www-form-urlencoded")
                .body(format!("user_id=u&s2s_token={SWAARM}&x=1")))
            .up_body("user_id=u&x=1")
            .counts(&["s2s_guard.requests.outcome.allowed.scope.none"]),
        case("form: body and query disagree", hold_form(),
             Request::post("/form?s2s_token=other").header("content-type", "application/x-www-form-urlencoded")
                .body(format!("user_id=u&s2s_token={SWAARM}")))
            .local(400, "Ambiguous request")
            .counts(&["s2s_guard.requests.outcome.ambiguous.scope.none", "s2s_guard.rejected.outcome.ambiguous", "s2s_guard.ambiguous.class.repeated"]),
        case("form: body over the limit", form(),
             Request::post("/form").header("content-type", "application/x-www-form-urlencoded")
                .body(format!("user_id=u&s2s_token={SWAARM}&pad={}", "p".repeat(70_000))))
            .local(413, "Request body too large")
            .counts(&["s2s_guard.requests.outcome.body_too_large.scope.none", "s2s_guard.rejected.outcome.body_too_large"]),
        case("form: a body the filter cannot read is refused (415)", form(),
             Request::post(&format!("/form?s2s_token={SWAARM}&user_id=u")).header("content-type", "application/json").body("{\"s2s_token\":\"x\"}"))
            .local(415, "Unsupported request body")
            .counts(&["s2s_guard.requests.outcome.unsupported_media_type.scope.none", "s2s_guard.rejected.outcome.unsupported_media_type"]),
        case("form: a route whose body is ignored forwards JSON unread", json_route(),
             Request::post(&format!("/json?s2s_token={SWAARM}&user_id=u")).header("content-type", "application/json").body("{\"s2s_token\":\"x\"}"))
            .allowed_as("swaarm")
            .up_body("{\"s2s_token\":\"x\"}")
            .counts(&["s2s_guard.requests.outcome.allowed.scope.none"]),
        case("hold: form POST, token in header, app in body: identity from the final decision", hold_flag_off(),
             Request::post("/event").header("authorization", bearer(ADJUST_TOKEN))
                .header("content-type", "application/x-www-form-urlencoded")
                .body(format!("s2s=1&app_token={APP}&event_token=abc")))
            .allowed_as("adj-events")
            .up("x-s2s-guard-app", Some(APP))
            .up_body("s2s=1&app_token=abc123kuvada7&event_token=abc")
            .counts(&["s2s_guard.requests.outcome.allowed.scope.events"]),
        // ---- headers held while the body is read (allow_on_headers_stop_iteration) --
        case("hold: a token in the form body names the token upstream", hold_form(),
             Request::post("/form").header("content-type", "application/x-www-form-urlencoded")
                .body(format!("user_id=u&s2s_token={SWAARM}&x=1")))
            .allowed_as("swaarm")
            .up("content-length", Some("13"))
            .up_body("user_id=u&x=1")
            .counts(&["s2s_guard.requests.outcome.allowed.scope.none"]),
        case("hold: flag mode puts the reason in a header, not the body", hold_flag(),
             Request::post("/event").header("authorization", "Bearer other-app-token")
                .header("content-type", "application/x-www-form-urlencoded")
                .body(format!("app_token={APP}")))
            .up("x-s2s-guard-rejection", Some("wrong"))
            .up_body("app_token=abc123kuvada7")
            .counts(&["s2s_guard.requests.outcome.wrong.scope.events", "s2s_guard.flagged.outcome.wrong"]),
        case("hold: a rejected form POST never reaches the upstream", hold_form(),
             Request::post("/form").header("content-type", "application/x-www-form-urlencoded")
                .body("user_id=u&s2s_token=nope"))
            .local(401, "The s2s token is invalid")
            .counts(&["s2s_guard.requests.outcome.wrong.scope.none", "s2s_guard.rejected.outcome.wrong"]),
        // ---- Jitsu profile ---------------------------------------------------------
        case("jitsu: client secret, allowed origin gets CORS", c(),
             Request::post(&format!("/api/v1/event?token={JITSU_CLIENT}")).header("origin", "https://shop.abc.com"))
            .allowed_as("jitsu")
            .resp("access-control-allow-origin", Some("https://shop.abc.com"))
            .counts(&["s2s_guard.requests.outcome.allowed.scope.none"]),
        case("jitsu: *.abc.com does not match evilabc.com", c(),
             Request::post(&format!("/api/v1/event?token={JITSU_CLIENT}")).header("origin", "https://evilabc.com"))
            .local(403, r#"{"message":"The request origin is not allowed for this token"}"#)
            .counts(&["s2s_guard.requests.outcome.origin_denied.scope.none", "s2s_guard.rejected.outcome.origin_denied"]),
        // Round 14 (helper-56, F4): an Origin that is not `scheme://host[:port]` is no
        // host a rule can match (a URL parser reads `evil.com` from these).
        case("jitsu: *.abc.com does not match https://evil.com#.abc.com", c(),
             Request::post(&format!("/api/v1/event?token={JITSU_CLIENT}")).header("origin", "https://evil.com#.shop.abc.com"))
            .local(403, r#"{"message":"The request origin is not allowed for this token"}"#)
            .resp("access-control-allow-origin", None)
            .counts(&["s2s_guard.rejected.outcome.origin_denied", "s2s_guard.requests.outcome.origin_denied.scope.none"]),
        case("jitsu: ... nor https://evil.com:.abc.com", c(),
             Request::post(&format!("/api/v1/event?token={JITSU_CLIENT}")).header("origin", "https://evil.com:.shop.abc.com"))
            .local(403, r#"{"message":"The request origin is not allowed for this token"}"#)
            .counts(&["s2s_guard.rejected.outcome.origin_denied", "s2s_guard.requests.outcome.origin_denied.scope.none"]),
        case("jitsu: ... nor https://evil.com\\.abc.com", c(),
             Request::post(&format!("/api/v1/event?token={JITSU_CLIENT}")).header("origin", "https://evil.com\\.shop.abc.com"))
            .local(403, r#"{"message":"The request origin is not allowed for this token"}"#)
            .counts(&["s2s_guard.rejected.outcome.origin_denied", "s2s_guard.requests.outcome.origin_denied.scope.none"]),
        // Round 15 (helper-58, F2): what no browser sends: no scheme, a port past
        // 65535, an empty label.
        case("jitsu: ... nor shop.abc.com without a scheme", c(),
             Request::post(&format!("/api/v1/event?token={JITSU_CLIENT}")).header("origin", "shop.abc.com"))
            .local(403, r#"{"message":"The request origin is not allowed for this token"}"#)
            .counts(&["s2s_guard.rejected.outcome.origin_denied", "s2s_guard.requests.outcome.origin_denied.scope.none"]),
        case("jitsu: ... nor https://shop.abc.com:99999", c(),
             Request::post(&format!("/api/v1/event?token={JITSU_CLIENT}")).header("origin", "https://shop.abc.com:99999"))
            .local(403, r#"{"message":"The request origin is not allowed for this token"}"#)
            .counts(&["s2s_guard.rejected.outcome.origin_denied", "s2s_guard.requests.outcome.origin_denied.scope.none"]),
        case("jitsu: ... nor https://shop..abc.com", c(),
             Request::post(&format!("/api/v1/event?token={JITSU_CLIENT}")).header("origin", "https://shop..abc.com"))
            .local(403, r#"{"message":"The request origin is not allowed for this token"}"#)
            .counts(&["s2s_guard.rejected.outcome.origin_denied", "s2s_guard.requests.outcome.origin_denied.scope.none"]),
        // Session 10, round 2 (helper-35) N1: two Origin headers are refused, and
        // the answer names neither (the first was one the token does not allow).
        case("jitsu: two origins: refused, no CORS for either", c(),
             Request::post(&format!("/api/v1/event?token={JITSU_CLIENT}")).header("origin", "https://evil.com")
                 .header("origin", "https://shop.abc.com"))
            .local(400, r#"{"message":"Ambiguous request"}"#)
            .resp("access-control-allow-origin", None)
            .counts(&["s2s_guard.ambiguous.class.header", "s2s_guard.rejected.outcome.ambiguous", "s2s_guard.requests.outcome.ambiguous.scope.none"]),
        case("jitsu: a refused request's answer names its one origin", c(),
             Request::post("/api/v1/event").header("origin", "https://shop.abc.com"))
            .local(401, r#"{"message":"The token is not found"}"#)
            .resp("access-control-allow-origin", Some("https://shop.abc.com"))
            .counts(&["s2s_guard.rejected.outcome.missing", "s2s_guard.requests.outcome.missing.scope.none"]),
        case("jitsu: origin mismatch with omit_cors passes without CORS", omit(),
             Request::post(&format!("/api/v1/event?token={JITSU_CLIENT}")).header("origin", "https://evil.com"))
            .allowed_as("jitsu")
            .resp("access-control-allow-origin", None)
            .counts(&["s2s_guard.requests.outcome.allowed.scope.none", "s2s_guard.cors_withheld"]),
        case("jitsu: exact origin with a port", c(),
             Request::post("/api/v1/events").header("x-auth-token", JITSU_CLIENT).header("origin", "http://efg.com:8080"))
            .allowed_as("jitsu")
            .up("x-auth-token", None)
            .counts(&["s2s_guard.requests.outcome.allowed.scope.none"]),
        case("jitsu: server secret in api_key", c(),
             Request::post("/api/v1/s2s/event").header("api_key", JITSU_SERVER))
            .allowed_as("jitsu")
            .counts(&["s2s_guard.requests.outcome.allowed.scope.none"]),
        case("jitsu: client secret on a server endpoint", c(),
             Request::post("/api/v1/s2s/events").header("x-auth-token", JITSU_CLIENT))
            .local(401, r#"{"message":"The token is a client secret: server endpoints require a server secret"}"#)
            .counts(&["s2s_guard.requests.outcome.wrong_kind.scope.none", "s2s_guard.rejected.outcome.wrong_kind"]),
        case("jitsu: server secret on a client endpoint", c(),
             Request::post("/api/v1/event").header("x-auth-token", JITSU_SERVER))
            .local(401, r#"{"message":"The token isn't valid"}"#)
            .counts(&["s2s_guard.requests.outcome.wrong.scope.none", "s2s_guard.rejected.outcome.wrong"]),
        case("jitsu: first p_ query parameter", c(), Request::post("/api/v1/events/bulk?p_x=5f15eba2-db58-11ea-87d0-0242ac130003"))
            .allowed_as("jitsu")
            .up(":path", Some("/api/v1/events/bulk"))
            .counts(&["s2s_guard.requests.outcome.allowed.scope.none"]),
        case("jitsu: Basic user name", c(),
             Request::post("/api/v1/s2s/event").header("authorization", "Basic NWYxNWViYTItZGI1OC0xMWVhLTg3ZDAtMDI0MmFjMTMwMDAzOg=="))
            .allowed_as("jitsu")
            .up("authorization", None)
            .counts(&["s2s_guard.requests.outcome.allowed.scope.none"]),
        case("jitsu: undecodable Basic", c(), Request::post("/api/v1/s2s/event").header("authorization", "Basic %%%"))
            .local(401, r#"{"message":"The token isn't valid"}"#)
            .counts(&["s2s_guard.requests.outcome.wrong.scope.none", "s2s_guard.rejected.outcome.wrong"]),
        case("jitsu: missing token", c(), Request::post("/api/v1/s2s/event"))
            .local(401, r#"{"message":"The token is not found"}"#)
            .counts(&["s2s_guard.requests.outcome.missing.scope.none", "s2s_guard.rejected.outcome.missing"]),
        case("jitsu: CORS preflight", c(), Request::new("OPTIONS", "/api/v1/event").header("origin", "https://a.abc.com"))
            .local(204, "")
            .resp("access-control-allow-origin", Some("https://a.abc.com"))
            .counts(&["s2s_guard.preflight"]),
        case("jitsu: client secret without origins allows any origin", c(),
             Request::post("/api/v1/event?token=open-client").header("origin", "https://anything.example"))
            .allowed_as("jitsu-any-origin")
            .counts(&["s2s_guard.requests.outcome.allowed.scope.none"]),
        // ---- custom profile --------------------------------------------------------
        case("custom: missing", custom(), Request::get("/custom"))
            .local(401, "need a token")
            .counts(&["s2s_guard.requests.outcome.missing.scope.events", "s2s_guard.rejected.outcome.missing"]),
        case("custom: default reply for a wrong token", custom(), Request::get("/custom").header("x-api-key", "nope"))
            .local(403, r#"{"error":"denied"}"#)
            .resp("content-type", Some("application/json"))
            .counts(&["s2s_guard.requests.outcome.wrong.scope.events", "s2s_guard.rejected.outcome.wrong"]),
        case("custom: header source", custom(), Request::get("/custom").header("x-api-key", ADJUST_TOKEN))
            .allowed_as("adj-events")
            .up("x-api-key", None)
            .counts(&["s2s_guard.requests.outcome.allowed.scope.events"]),
    ]
}

fn check(case: &Case, o: &Observed, runner: &str) {
    let ctx = format!("[{runner}] {}", case.name);
    assert_eq!(o.forwarded, case.forwarded, "{ctx}: forwarded? {o:?}");
    assert_eq!(o.status, case.status, "{ctx}: status; {o:?}");
    if let Some(b) = case.body {
        assert_eq!(String::from_utf8_lossy(&o.body), b, "{ctx}: body");
    }
    for (name, want) in &case.up {
        let up = o
            .upstream
            .as_ref()
            .unwrap_or_else(|| panic!("{ctx}: not forwarded"));
        let got = header_value(up, name).map(|v| String::from_utf8_lossy(v).into_owned());
        assert_eq!(got.as_deref(), *want, "{ctx}: upstream header {name}");
    }
    if let Some(b) = case.up_body {
        let got = o
            .upstream_body
            .as_ref()
            .map(|b| String::from_utf8_lossy(b).into_owned());
        assert_eq!(got.as_deref(), Some(b), "{ctx}: upstream body");
    }
    for (name, want) in &case.resp {
        let got = header_value(&o.response_headers, name)
            .map(|v| String::from_utf8_lossy(v).into_owned());
        assert_eq!(got.as_deref(), *want, "{ctx}: response header {name}");
    }
    let mut want: Vec<String> = case.counters.iter().map(|s| s.to_string()).collect();
    want.sort();
    let counters = common::without_breakdowns(&o.counters).unwrap_or_else(|e| panic!("{ctx}: {e}"));
    let got: Vec<String> = counters.keys().cloned().collect();
    assert_eq!(got, want, "{ctx}: counters");
    assert!(
        o.counters.values().all(|v| *v == 1),
        "{ctx}: each counter once: {:?}",
        o.counters
    );
}

/// Runs every case and reports every failing one, not only the first.
fn check_all(mut run: impl FnMut(&Case) -> Observed, runner: &str) {
    let mut failures = Vec::new();
    for c in cases() {
        let o = run(&c);
        let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| check(&c, &o, runner)));
        if let Err(e) = r {
            let msg = e
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| e.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_default();
            failures.push(msg);
        }
    }
    assert!(
        failures.is_empty(),
        "{} failing cases:\n{}",
        failures.len(),
        failures.join("\n\n")
    );
}

#[test]
fn scenarios_native() {
    check_all(|c| run_native(&c.config, &c.req), "native");
}

#[test]
fn scenarios_through_the_wasm() {
    let mut runner = WasmRunner::new();
    check_all(|c| runner.run(&c.config, &c.req), "wasm");
}

/// Logs name the token id, and a wrong credential by fingerprint only.
#[test]
fn logs_never_contain_secrets() {
    let mut runner = WasmRunner::new();
    let cfg = config("");
    runner.host(&cfg).clear_logs();
    for c in cases() {
        if c.config == cfg {
            runner.run(&cfg, &c.req);
        }
    }
    let logs: Vec<String> = runner
        .host(&cfg)
        .logs()
        .into_iter()
        .map(|l| l.message)
        .collect();
    let all = logs.join("\n");
    for secret in [
        ADJUST_TOKEN,
        SWAARM,
        JITSU_CLIENT,
        JITSU_SERVER,
        "legacy-token",
        "other-app-token",
        "nope",
        "guess",
    ] {
        assert!(
            !all.contains(secret),
            "a secret reached the logs: {secret}\n{all}"
        );
    }
    assert!(all.contains("token_id=adj-other-app"), "{all}");
    assert!(all.contains("credential_fp="), "{all}");
}
