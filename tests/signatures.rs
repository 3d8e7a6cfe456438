//! SDK signature verification: a signer written here from FACTS.md §1 (independent
//! of the verifier's code), producing requests the way the Android and iOS SDKs do,
//! and a scenario table run natively and through the `.wasm`.

mod common;

use std::collections::BTreeMap;

use common::{run_native_with, Observed, ReplayMemory, WasmRunner, START};
use s2s_guard_host::{header_value, load_dist, Host, HostOptions, LogLevel, Request};
use sha2::{Digest, Sha256};

const TEMPLATE_HASH: &str = "AA:AA:AA:AA:AA:AA:AA:AA:AA:AA:AA:AA:AA:AA:AA:AA:AA:AA:AA:AA";
const APP_HASH: &str = "BB:BB:BB:BB:BB:BB:BB:BB:BB:BB:BB:BB:BB:BB:BB:BB:BB:BB:BB:BB";

fn config(extra: &str) -> String {
    format!(
        r#"{{
  "presets": ["adjust_sdk"],
  "tokens": [{{"id": "s2s", "secret": "s2s-token", "app": "abc123", "scopes": ["events", "sessions"]}}],
  "apps": {{
    "tmpl": {{"signature": {{"enforce_signature": true, "android_signature_hash": ["{TEMPLATE_HASH}"],
      "secrets": [{{"id": 1, "info": [11, 22, 33, 44]}}, {{"id": 9, "info": [9, 9, 9, 9], "active": false}}]}}}},
    "abc123": {{"authentication": true, "template": "tmpl", "signature": {{
      "android_signature_hash": "{APP_HASH}", "max_age": "7d", "later_sdk": "reject",
      "secrets": [{{"id": 2, "info": [1234, 5678, 9012, 3456], "name": "v2.3-Play Store"}},
                  {{"id": 3, "secret": "1112223334", "active": false}}]}}}},
    "loose": {{"signature": {{"secrets": [{{"id": 1, "info": [1, 2, 3, 4]}}], "later_sdk": "pass", "signing_ids": ["sid-ok"]}}}},
    "flagger": {{"signature": {{"secrets": [{{"id": 1, "info": [1, 2, 3, 4]}}], "later_sdk": "flag"}}}},
    "strict": {{"signature": {{"secrets": [{{"id": 1, "info": [1, 2, 3, 4]}}], "require_device_id": true,
      "min_sdk": {{"android": "4.18", "ios": "4.29"}}}}}},
    "allowlisted": {{"signature": {{"enforce_signature": true, "secrets": [{{"id": 1, "info": [1, 2, 3, 4]}}],
      "later_sdk": "pass", "signing_ids": ["sid-ok"]}}}}
  }}
  {extra}
}}"#
    )
}

// ---- the signer -------------------------------------------------------------------

fn form_encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'*' => {
                (b as char).to_string()
            }
            b' ' => "+".into(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// `yyyy-MM-dd'T'HH:mm:ss.SSS'Z'Z` in UTC (+0000), as the SDKs format it.
fn created_at(unix: u64, millis: u64) -> String {
    let days = unix / 86400;
    let secs = unix % 86400;
    // Civil date from days (inverse of Howard Hinnant's algorithm, written out here).
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + if m <= 2 { 1 } else { 0 };
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{millis:03}Z+0000",
        secs / 3600,
        secs % 3600 / 60,
        secs % 60
    )
}

fn activity(path: &str) -> &'static str {
    match path {
        "/session" => "session",
        "/event" => "event",
        "/sdk_click" => "click",
        "/attribution" => "attribution",
        "/ad_revenue" => "ad_revenue",
        _ => panic!("no activity kind for {path}"),
    }
}

struct Signer {
    secret_id: u32,
    info: [u64; 4],
    client_sdk: &'static str,
}

impl Signer {
    fn android(secret_id: u32, info: [u64; 4]) -> Signer {
        Signer {
            secret_id,
            info,
            client_sdk: "android4.38.0",
        }
    }

    fn ios(secret_id: u32, info: [u64; 4]) -> Signer {
        Signer {
            secret_id,
            info,
            client_sdk: "ios4.38.4",
        }
    }

    fn app_secret(&self) -> String {
        self.info.iter().map(|n| n.to_string()).collect()
    }

    /// The Authorization value for `params`, hashing the fields in `order`.
    fn authorization(&self, path: &str, params: &[(&str, &str)], order: &[&str]) -> String {
        let mut clear = String::new();
        for name in order {
            clear.push_str(&match *name {
                "app_secret" => self.app_secret(),
                "activity_kind" => activity(path).to_string(),
                n => params
                    .iter()
                    .find(|(k, _)| *k == n)
                    .map(|(_, v)| v.to_string())
                    .unwrap_or_default(),
            });
        }
        let sig = hex::encode(Sha256::digest(clear.as_bytes()));
        format!(
            r#"Signature secret_id="{}",signature="{sig}",algorithm="sha256",headers="{}""#,
            self.secret_id,
            order.join(" ")
        )
    }

    /// A form-encoded POST (GET with a query for /attribution), as the SDK sends it.
    fn request(&self, path: &str, params: &[(&str, &str)], order: &[&str]) -> Request {
        let auth = self.authorization(path, params, order);
        let encoded: Vec<String> = params
            .iter()
            .map(|(k, v)| format!("{}={}", form_encode(k), form_encode(v)))
            .collect();
        let req = if path == "/attribution" {
            Request::get(&format!("{path}?{}", encoded.join("&")))
        } else {
            Request::post(path)
                .header("content-type", "application/x-www-form-urlencoded")
                .body(encoded.join("&"))
        };
        req.header("authorization", auth)
            .header("client-sdk", self.client_sdk)
    }
}

const GPS: &str = "38400000-8cf0-11bd-b23e-10b96e40000d";
const IDFA: &str = "EA7583CD-A667-48BC-B806-42ECB2B48606";
const ANDROID_ID: &str = "9774d56d682e549c";
const ORDER: [&str; 4] = ["created_at", "gps_adid", "app_secret", "activity_kind"];

fn app2() -> Signer {
    Signer::android(2, [1234, 5678, 9012, 3456])
}

/// Distinct `created_at` per request (so replay memory does not interfere).
fn at(n: u64) -> String {
    created_at(START - 3600, n)
}

// ---- scenarios --------------------------------------------------------------------

struct Case {
    name: &'static str,
    config: String,
    req: Request,
    forwarded: bool,
    status: u16,
    reason_header: Option<&'static str>,
    up_body_has: Option<&'static str>,
    counters: Vec<&'static str>,
}

fn case(name: &'static str, config: String, req: Request) -> Case {
    Case {
        name,
        config,
        req,
        forwarded: true,
        status: 200,
        reason_header: None,
        up_body_has: None,
        counters: Vec::new(),
    }
}

impl Case {
    fn rejected(mut self) -> Case {
        self.forwarded = false;
        self.status = 401;
        self
    }
    /// Refused before any signature check: the request reads more than one way.
    fn ambiguous(mut self) -> Case {
        self.forwarded = false;
        self.status = 400;
        self
    }
    fn counts(mut self, c: &[&'static str]) -> Case {
        self.counters = c.to_vec();
        self
    }
    fn flagged(mut self, reason: &'static str) -> Case {
        self.reason_header = Some(reason);
        self
    }
    fn body_has(mut self, s: &'static str) -> Case {
        self.up_body_has = Some(s);
        self
    }
}

const V: &str = "s2s_guard.signature.outcome.verified";
const REJ: &str = "s2s_guard.signature.rejected";
const A2: &str = "s2s_guard.sdk.app.abc123.secret.2.accepted";
const R2: &str = "s2s_guard.sdk.app.abc123.secret.2.rejected";
const INVALID: &str = "s2s_guard.sdk.app.abc123.invalid_secret";

fn refs(v: &[(String, String)]) -> Vec<(&str, &str)> {
    v.iter().map(|(a, b)| (a.as_str(), b.as_str())).collect()
}

fn cases() -> Vec<Case> {
    let c = || config("");
    let flag = || config(r#","mode": "flag""#);
    let base = |n: u64| at(n);
    let p = |created: &str| -> Vec<(String, String)> {
        vec![
            ("app_token".into(), "abc123".into()),
            ("created_at".into(), created.into()),
            ("gps_adid".into(), GPS.into()),
            ("event_token".into(), "xyz".into()),
        ]
    };
    let mut out = Vec::new();

    // Valid signatures in several `headers` orders, both platforms.
    for (i, order) in [
        ORDER,
        ["app_secret", "activity_kind", "created_at", "gps_adid"],
        ["gps_adid", "activity_kind", "app_secret", "created_at"],
    ]
    .iter()
    .enumerate()
    {
        let params = p(&base(i as u64));
        out.push(
            case(
                "android: valid signature, any headers order",
                c(),
                app2().request("/session", &refs(&params), order),
            )
            .counts(&[V, A2]),
        );
    }
    let ios_params = vec![
        ("app_token", "abc123"),
        ("created_at", "2025-12-31T22:00:00.123Z-0100"),
        ("idfa", IDFA),
    ];
    out.push(
        case(
            "ios: valid signature",
            c(),
            Signer::ios(2, [1234, 5678, 9012, 3456]).request(
                "/session",
                &ios_params,
                &["idfa", "created_at", "activity_kind", "app_secret"],
            ),
        )
        .counts(&[V, A2]),
    );
    let params = p(&base(10));
    out.push(
        case(
            "template secret 1 is inherited",
            c(),
            Signer::android(1, [11, 22, 33, 44]).request("/session", &refs(&params), &ORDER),
        )
        .counts(&[V, "s2s_guard.sdk.app.abc123.secret.1.accepted"]),
    );
    // The SDK removes `secret_id` from the body; one naming another Secret ID than
    // the signature's is a second reading of which secret signed (cold attack F5).
    for (i, (named, ok)) in [("1", false), ("2", true)].into_iter().enumerate() {
        let mut params = p(&base(600 + i as u64));
        params.push(("secret_id".into(), named.into()));
        let c = case(
            if ok {
                "secret_id in the body, the signature's"
            } else {
                "secret_id in the body, another Secret ID"
            },
            c(),
            app2().request("/session", &refs(&params), &ORDER),
        );
        out.push(if ok {
            c.counts(&[V, A2])
        } else {
            c.rejected().counts(&[
                "s2s_guard.signature.outcome.bad_format_secret_id",
                REJ,
                INVALID,
            ])
        });
    }

    // Boundary shift: the last character of created_at moved into gps_adid.
    let created = base(11);
    let (head, last) = created.split_at(created.len() - 1);
    let shifted = vec![
        ("app_token", "abc123"),
        ("created_at", head),
        (
            "gps_adid",
            &*Box::leak(format!("{last}{GPS}").into_boxed_str()),
        ),
    ];
    let mut r = app2().request("/session", &shifted, &ORDER);
    // The signature is over the same clear string as the genuine request.
    let genuine = app2().authorization(
        "/session",
        &[("created_at", &created), ("gps_adid", GPS)],
        &ORDER,
    );
    r.headers.retain(|(k, _)| k != "authorization");
    r = r.header("authorization", genuine);
    out.push(
        case("boundary shift between created_at and gps_adid", c(), r)
            .rejected()
            .counts(&["s2s_guard.signature.outcome.bad_format_created_at", REJ, R2]),
    );

    // Swapped values with headers reordered: same clear string.
    let created = base(12);
    let swapped = vec![
        ("app_token", "abc123"),
        ("created_at", GPS),
        ("gps_adid", &*Box::leak(created.clone().into_boxed_str())),
    ];
    out.push(
        case(
            "swapped values, headers reordered",
            c(),
            app2().request(
                "/session",
                &swapped,
                &["gps_adid", "created_at", "app_secret", "activity_kind"],
            ),
        )
        .rejected()
        .counts(&["s2s_guard.signature.outcome.bad_format_created_at", REJ, R2]),
    );

    // An unsigned higher-precedence id injected next to the signed android_id.
    let created = base(13);
    let injected = vec![
        ("app_token", "abc123"),
        ("created_at", created.as_str()),
        ("android_id", ANDROID_ID),
        ("gps_adid", GPS),
    ];
    out.push(
        case(
            "injected higher-precedence device id",
            c(),
            app2().request(
                "/session",
                &injected,
                &["created_at", "android_id", "app_secret", "activity_kind"],
            ),
        )
        .rejected()
        .counts(&["s2s_guard.signature.outcome.wrong_device_id", REJ, R2]),
    );
    let created = base(14);
    let only_android = vec![
        ("app_token", "abc123"),
        ("created_at", created.as_str()),
        ("android_id", ANDROID_ID),
    ];
    out.push(
        case(
            "android_id alone is the signed id",
            c(),
            app2().request(
                "/session",
                &only_android,
                &["created_at", "android_id", "app_secret", "activity_kind"],
            ),
        )
        .counts(&[V, A2]),
    );
    // Client-SDK is unsigned: an id of the other platform, or one an older SDK of
    // the platform ranks first, reads another way to a collector looking devices up
    // by any id it knows (cold attack, session 7: F2).
    let android_signed = |n: u64,
                          sdk: &'static str,
                          signed: (&'static str, &'static str),
                          extra: &[(&'static str, &'static str)]| {
        let created = base(600 + n);
        let mut params: Vec<(String, String)> = vec![
            ("app_token".into(), "abc123".into()),
            ("created_at".into(), created),
            (signed.0.into(), signed.1.into()),
        ];
        params.extend(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())));
        Signer {
            client_sdk: sdk,
            ..app2()
        }
        .request(
            "/session",
            &refs(&params),
            &["created_at", signed.0, "app_secret", "activity_kind"],
        )
    };
    const UUID: &str = "7a3b1f0e-44c2-4a1e-9d8c-2f5b6e7d8c9a";
    const MAC_SHA1: &str = "0123456789abcdef0123456789abcdef01234567";
    for (n, name, sdk, signed, extra) in [
        (
            0,
            "an unsigned idfa beside a signed android_id",
            "android4.38.0",
            ("android_id", ANDROID_ID),
            ("idfa", IDFA),
        ),
        (
            1,
            "... with no Client-SDK",
            "",
            ("android_id", ANDROID_ID),
            ("idfa", IDFA),
        ),
        (
            2,
            "... with Client-SDK claiming both platforms",
            "android4.38.0,ios4.38.0",
            ("android_id", ANDROID_ID),
            ("idfa", IDFA),
        ),
        (
            3,
            "an idfv (iOS, never signed) beside a signed android_id",
            "android4.38.0",
            ("android_id", ANDROID_ID),
            ("idfv", IDFA),
        ),
        (
            4,
            "a MAC id (first before 4.29) beside a 4.38 SDK's signed android_uuid",
            "android4.38.0",
            ("android_uuid", UUID),
            ("mac_sha1", MAC_SHA1),
        ),
        (
            7,
            "Adjust's adid (no signing SDK sends it) beside a signed android_id",
            "android4.38.0",
            ("android_id", ANDROID_ID),
            ("adid", "8d3ee1e3eb3ea7dcdf4e5c9d8d5c2a3e"),
        ),
        (
            8,
            "the web SDK's web_uuid beside a signed gps_adid",
            "android4.38.0",
            ("gps_adid", GPS),
            ("web_uuid", "7a3b1f0e-44c2-4a1e-9d8c-2f5b6e7d8c9a"),
        ),
        (
            9,
            "a Windows id beside a signed gps_adid",
            "android4.38.0",
            ("gps_adid", GPS),
            ("win_adid", "7a3b1f0e-44c2-4a1e-9d8c-2f5b6e7d8c9a"),
        ),
        (
            10,
            "an id no signing SDK sends (device_id) beside a signed gps_adid",
            "android4.38.0",
            ("gps_adid", GPS),
            ("device_id", "7a3b1f0e-44c2-4a1e-9d8c-2f5b6e7d8c9a"),
        ),
        (
            11,
            "an iOS-only never-signed id (fb_anon_id) beside a signed gps_adid",
            "android4.38.0",
            ("gps_adid", GPS),
            ("fb_anon_id", "7a3b1f0e-44c2-4a1e-9d8c-2f5b6e7d8c9a"),
        ),
    ] {
        let extra = [extra];
        let req = android_signed(n, sdk, signed, &extra);
        let req = if sdk.is_empty() {
            Request {
                headers: req
                    .headers
                    .into_iter()
                    .filter(|(k, _)| k != "client-sdk")
                    .collect(),
                ..req
            }
        } else {
            req
        };
        out.push(case(name, c(), req).rejected().counts(&[
            "s2s_guard.signature.outcome.wrong_device_id",
            REJ,
            R2,
        ]));
    }
    let ios_signed = |n: u64, extra: &[(&'static str, &'static str)]| {
        let created = base(620 + n);
        let mut params: Vec<(String, String)> = vec![
            ("app_token".into(), "abc123".into()),
            ("created_at".into(), created),
            (
                "random_token".into(),
                "0f8a3c2e-1b4d-4e6f-8a9b-7c6d5e4f3a2b".into(),
            ),
        ];
        params.extend(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())));
        Signer::ios(2, [1234, 5678, 9012, 3456]).request(
            "/session",
            &refs(&params),
            &["created_at", "random_token", "app_secret", "activity_kind"],
        )
    };
    out.push(
        case(
            "an ios_uuid (an older SDK's id, never beside random_token) beside a signed random_token",
            c(),
            ios_signed(0, &[("ios_uuid", "7a3b1f0e-44c2-4a1e-9d8c-2f5b6e7d8c9a")]),
        )
        .rejected()
        .counts(&["s2s_guard.signature.outcome.wrong_device_id", REJ, R2]),
    );
    out.push(
        case(
            "an idfv (iOS, never signed) beside a signed random_token passes",
            c(),
            ios_signed(1, &[("idfv", IDFA)]),
        )
        .counts(&[V, A2]),
    );
    out.push(
        case(
            "an oaid (Android, never signed) beside a signed android_id passes",
            c(),
            android_signed(
                5,
                "android4.38.0",
                ("android_id", ANDROID_ID),
                &[("oaid", UUID)],
            ),
        )
        .counts(&[V, A2]),
    );
    out.push(
        case(
            "Android's google_app_set_id and an app's external_device_id (sent, never signed) pass",
            c(),
            android_signed(
                12,
                "android4.38.0",
                ("gps_adid", GPS),
                &[
                    ("google_app_set_id", UUID),
                    ("external_device_id", "user-42"),
                ],
            ),
        )
        .counts(&[V, A2]),
    );
    out.push(
        case(
            "an android_uuid after a signed android_id passes",
            c(),
            android_signed(
                6,
                "android4.38.0",
                ("android_id", ANDROID_ID),
                &[("android_uuid", UUID)],
            ),
        )
        .counts(&[V, A2]),
    );

    // Replay: the same signed request twice.
    let params = p(&base(15));
    let once = app2().request("/session", &refs(&params), &ORDER);
    out.push(case("first of a replayed pair", c(), once.clone()).counts(&[V, A2]));
    out.push(
        case("replay of an accepted request", c(), once)
            .rejected()
            .counts(&["s2s_guard.signature.outcome.replayed", REJ, R2]),
    );

    // Stale: 10 days old with a 7-day window.
    let params = p(&created_at(START - 10 * 86400, 1));
    out.push(
        case(
            "stale created_at",
            c(),
            app2().request("/session", &refs(&params), &ORDER),
        )
        .rejected()
        .counts(&["s2s_guard.signature.outcome.stale", REJ, R2]),
    );
    let params = p(&created_at(START + 3600, 1));
    out.push(
        case(
            "created_at in the future",
            c(),
            app2().request("/session", &refs(&params), &ORDER),
        )
        .rejected()
        .counts(&["s2s_guard.signature.outcome.stale", REJ, R2]),
    );

    // app_secret leaked into the body.
    let mut params = p(&base(16));
    params.push(("app_secret".into(), "123456789012".into()));
    out.push(
        case(
            "app_secret in the body",
            c(),
            app2().request("/session", &refs(&params), &ORDER),
        )
        .rejected()
        .counts(&[
            "s2s_guard.signature.outcome.app_secret_in_request",
            REJ,
            INVALID,
        ]),
    );

    // Deactivated and unknown secrets.
    let params = p(&base(17));
    out.push(
        case(
            "deactivated secret 3",
            c(),
            Signer::android(3, [111, 222, 333, 4]).request("/session", &refs(&params), &ORDER),
        )
        .rejected()
        .counts(&[
            "s2s_guard.signature.outcome.invalid_signature",
            REJ,
            "s2s_guard.sdk.app.abc123.secret.3.rejected",
        ]),
    );
    out.push(
        case(
            "template's deactivated secret 9 is not inherited",
            c(),
            Signer::android(9, [9, 9, 9, 9]).request("/session", &refs(&params), &ORDER),
        )
        .rejected()
        .counts(&[
            "s2s_guard.signature.outcome.invalid_signature",
            REJ,
            INVALID,
        ]),
    );
    out.push(
        case(
            "unknown Secret ID",
            c(),
            Signer::android(77, [1, 1, 1, 1]).request("/session", &refs(&params), &ORDER),
        )
        .rejected()
        .counts(&[
            "s2s_guard.signature.outcome.invalid_signature",
            REJ,
            INVALID,
        ]),
    );
    out.push(
        case(
            "wrong secret for the Secret ID",
            c(),
            Signer::android(2, [1, 1, 1, 1]).request("/session", &refs(&params), &ORDER),
        )
        .rejected()
        .counts(&["s2s_guard.signature.outcome.invalid_signature", REJ, R2]),
    );

    // Enforcement.
    let unsigned = format!(
        "app_token=abc123&created_at={}&gps_adid={GPS}",
        form_encode(&base(18))
    );
    out.push(
        case(
            "enforced (inherited from the template): no signature",
            c(),
            Request::post("/session")
                .header("content-type", "application/x-www-form-urlencoded")
                .body(&unsigned),
        )
        .rejected()
        .counts(&[
            "s2s_guard.signature.outcome.missing_signature",
            REJ,
            "s2s_guard.sdk.app.abc123.no_secret",
        ]),
    );
    let loose_unsigned = unsigned.replace("abc123", "loose");
    out.push(
        case(
            "not enforced: no signature passes",
            c(),
            Request::post("/session")
                .header("content-type", "application/x-www-form-urlencoded")
                .body(&loose_unsigned),
        )
        .counts(&[
            "s2s_guard.signature.outcome.no_signature",
            "s2s_guard.sdk.app.loose.no_secret",
        ]),
    );
    let bad_loose = Signer::android(1, [9, 9, 9, 9]).request(
        "/session",
        &[
            ("app_token", "loose"),
            ("created_at", &base(19)),
            ("gps_adid", GPS),
        ],
        &ORDER,
    );
    out.push(
        case(
            "not enforced: an invalid signature is still rejected",
            c(),
            bad_loose,
        )
        .rejected()
        .counts(&[
            "s2s_guard.signature.outcome.invalid_signature",
            REJ,
            "s2s_guard.sdk.app.loose.secret.1.rejected",
        ]),
    );

    // Later SDK shapes under each policy.
    let later = |app: &str, id: &str| {
        Request::post("/session")
            .header("content-type", "application/x-www-form-urlencoded")
            .body(format!("app_token={app}&gps_adid={GPS}"))
            .header("authorization", format!(r#"Signature signature="abc",adj_signing_id="{id}",algorithm="adj2",headers_id="1",native_version="3.1""#))
    };
    out.push(
        case("later shape, policy reject", c(), later("abc123", "x"))
            .rejected()
            .counts(&["s2s_guard.signature.outcome.unverifiable_signature", REJ]),
    );
    out.push(
        case(
            "later shape, policy pass, allowed signing id",
            c(),
            later("loose", "sid-ok"),
        )
        .counts(&["s2s_guard.signature.outcome.unverifiable_passed"]),
    );
    out.push(
        case(
            "later shape, signing id not allowed",
            c(),
            later("loose", "sid-bad"),
        )
        .rejected()
        .counts(&["s2s_guard.signature.outcome.signing_id_not_allowed", REJ]),
    );
    out.push(
        case(
            "later shape, policy flag (decided after the body)",
            c(),
            later("flagger", "x"),
        )
        .body_has("s2s_guard_rejection=unverifiable_signature")
        .counts(&[
            "s2s_guard.signature.outcome.unverifiable_signature",
            "s2s_guard.signature.flagged",
        ]),
    );
    let attribution = Request::get(&format!("/attribution?app_token=flagger&gps_adid={GPS}"))
        .header(
            "authorization",
            r#"Signature signature="abc",secret_id="4",algorithm="adj1",headers_id="1""#,
        );
    out.push(
        case(
            "later shape, policy flag on a GET (header)",
            c(),
            attribution,
        )
        .flagged("unverifiable_signature")
        .counts(&[
            "s2s_guard.signature.outcome.unverifiable_signature",
            "s2s_guard.signature.flagged",
        ]),
    );

    // Sandbox: verified, not in the statistics.
    let mut params = p(&base(20));
    params.push(("environment".into(), "sandbox".into()));
    out.push(
        case(
            "sandbox traffic is verified but not counted in statistics",
            c(),
            app2().request("/session", &refs(&params), &ORDER),
        )
        .counts(&[V]),
    );
    let mut params = p(&base(21));
    params.push(("environment".into(), "sandbox".into()));
    out.push(
        case(
            "sandbox traffic with a bad signature is rejected",
            c(),
            Signer::android(2, [0, 0, 0, 0]).request("/session", &refs(&params), &ORDER),
        )
        .rejected()
        .counts(&["s2s_guard.signature.outcome.invalid_signature", REJ]),
    );

    // source/payload must be signed on 4.18+.
    let mut params = p(&base(22));
    params.push(("source".into(), "deeplink".into()));
    out.push(
        case(
            "unsigned source on SDK 4.38",
            c(),
            app2().request("/session", &refs(&params), &ORDER),
        )
        .rejected()
        .counts(&["s2s_guard.signature.outcome.unsigned_field", REJ, R2]),
    );
    let mut old = app2();
    old.client_sdk = "android4.17.0";
    out.push(
        case(
            "unsigned source on SDK 4.17 is fine",
            c(),
            old.request("/session", &refs(&params), &ORDER),
        )
        .counts(&[V, A2]),
    );
    let mut params = p(&base(23));
    params.push(("source".into(), "deeplink".into()));
    out.push(
        case(
            "signed source",
            c(),
            app2().request(
                "/session",
                &refs(&params),
                &[
                    "source",
                    "created_at",
                    "gps_adid",
                    "app_secret",
                    "activity_kind",
                ],
            ),
        )
        .counts(&[V, A2]),
    );

    // A signed free-text payload (the legacy trackAdRevenue(source, payload)):
    // the app's own JSON, read once; the value rules for ids and apps do not apply
    // (session 11, helper-42 F2: `50%CashBack`, an encoded URL, a no-break space
    // and `&#39;` in it were refused although the signature verified).
    let mut params = p(&base(25));
    params.push(("source".into(), "applovin_max_sdk".into()));
    params.push((
        "payload".into(),
        "{\"note\":\"50%CashBack\",\"url\":\"https%3A%2F%2Fx.example\",\"name\":\"a\u{a0}b &#39;\"}".into(),
    ));
    out.push(
        case(
            "a signed payload holding free text",
            c(),
            app2().request(
                "/ad_revenue",
                &refs(&params),
                &[
                    "source",
                    "payload",
                    "created_at",
                    "gps_adid",
                    "app_secret",
                    "activity_kind",
                ],
            ),
        )
        .counts(&[V, A2]),
    );

    // Malformed headers and bodies.
    let params = p(&base(24));
    let mut r = app2().request("/session", &refs(&params), &ORDER);
    r.headers.retain(|(k, _)| k != "authorization");
    let zeros = "0".repeat(64);
    let unknown_field = format!(
        r#"Signature secret_id="2",signature="{zeros}",algorithm="sha256",headers="created_at gps_adid app_secret activity_kind event_token""#
    );
    for (auth, counter, stat) in [
        ("Signature !!!".to_string(), "s2s_guard.signature.outcome.bad_format_authorization", INVALID),
        (r#"Signature secret_id="2",secret_id="2",signature="00",algorithm="sha256",headers="created_at""#.to_string(), "s2s_guard.signature.outcome.bad_format_authorization", INVALID),
        (r#"Signature secret_id="2",signature="zz",algorithm="sha256",headers="created_at gps_adid app_secret activity_kind""#.to_string(), "s2s_guard.signature.outcome.bad_format_signature", INVALID),
        (unknown_field, "s2s_guard.signature.outcome.bad_format_headers", R2),
        ("Signature \u{fffd}".to_string(), "s2s_guard.signature.outcome.bad_format_authorization", INVALID),
    ] {
        out.push(case("malformed signature header", c(), r.clone().header("authorization", auth)).rejected()
            .counts(&[counter, REJ, stat]));
    }
    let params = p(&base(25));
    let mut dup = app2().request("/session", &refs(&params), &ORDER);
    dup.path = format!("/session?gps_adid={GPS}");
    out.push(
        case(
            "a parameter in both query and body (headers held)",
            config(r#","hold_headers_for_body": true"#),
            dup.clone(),
        )
        .ambiguous()
        .counts(&[
            "s2s_guard.requests.outcome.ambiguous.scope.sessions",
            "s2s_guard.rejected.outcome.ambiguous",
            "s2s_guard.ambiguous.class.repeated",
        ]),
    );
    // Headers not held: the query would reach the collector before the body decides.
    out.push(
        case("a parameter in the query beside a form body", c(), dup)
            .ambiguous()
            .counts(&[
                "s2s_guard.requests.outcome.ambiguous.scope.sessions",
                "s2s_guard.rejected.outcome.ambiguous",
                "s2s_guard.ambiguous.class.query_with_body",
            ]),
    );

    // S2S traffic on the shared endpoints takes the token path.
    out.push(
        case(
            "s2s=1 with a Bearer token takes the token path",
            c(),
            Request::post("/event?s2s=1&app_token=abc123&event_token=x")
                .header("authorization", "Bearer s2s-token"),
        )
        .counts(&["s2s_guard.requests.outcome.allowed.scope.events"]),
    );

    // Cold attack, session 13, round 10b (helper-49, F1): `s2s=1` in the query
    // beside an SDK form body took the token path, shadow-passed for an app whose
    // S2S authentication is off (Adjust's common set-up), while a collector reading
    // only the body ($_POST, Go's PostFormValue, req.body, request.form, Django's
    // POST, Rack's POST: run on each) reads an SDK request with no flag, unsigned.
    let sig_only = |extra: &str| {
        config(extra).replacen(
            r#""apps": {"#,
            r#""apps": {"sigonly": {"authentication": false, "signature": {"enforce_signature": true,
      "secrets": [{"id": 2, "info": [1234, 5678, 9012, 3456]}]}},"#,
            1,
        )
    };
    let sdk_body = format!(
        "app_token=sigonly&created_at={}&gps_adid={GPS}",
        form_encode(&base(27))
    );
    let flag_place = [
        "s2s_guard.requests.outcome.ambiguous.scope.sessions",
        "s2s_guard.rejected.outcome.ambiguous",
        "s2s_guard.ambiguous.class.flag_place",
    ];
    for (name, cfg) in [
        (
            "s2s=1 in the query, an SDK form body: read two ways",
            sig_only(""),
        ),
        (
            "... headers held",
            sig_only(r#","hold_headers_for_body": true"#),
        ),
    ] {
        out.push(
            case(
                name,
                cfg,
                Request::post("/session?s2s=1")
                    .header("content-type", "application/x-www-form-urlencoded")
                    .header("client-sdk", "android4.38.0")
                    .body(&sdk_body),
            )
            .ambiguous()
            .counts(&flag_place),
        );
    }
    out.push(
        case(
            "... the flag in the body, the request in the query (headers held)",
            sig_only(r#","hold_headers_for_body": true"#),
            Request::post(&format!(
                "/event?app_token=sigonly&event_token=x&gps_adid={GPS}"
            ))
            .header("content-type", "application/x-www-form-urlencoded")
            .body("s2s=1"),
        )
        .ambiguous()
        .counts(&[
            "s2s_guard.requests.outcome.ambiguous.scope.events",
            "s2s_guard.rejected.outcome.ambiguous",
            "s2s_guard.ambiguous.class.flag_place",
        ]),
    );
    out.push(
        case(
            "... the flag with the request, in the body: the token path (shadow-passed)",
            sig_only(""),
            Request::post("/event")
                .header("content-type", "application/x-www-form-urlencoded")
                .body(format!(
                    "s2s=1&app_token=sigonly&event_token=x&gps_adid={GPS}"
                )),
        )
        .counts(&[
            "s2s_guard.requests.outcome.missing.scope.events",
            "s2s_guard.shadow.outcome.missing",
        ]),
    );
    // F3: a signature decision is counted as the request's outcome (allowed,
    // missing, wrong), as every decision on a route is.
    let params = p(&base(28));
    out.push(
        case(
            "a verified signature counts as allowed",
            c(),
            app2().request("/session", &refs(&params), &ORDER),
        )
        .counts(&[V, A2, "s2s_guard.requests.outcome.allowed.scope.sessions"]),
    );
    let params = p(&base(29));
    out.push(
        case(
            "an invalid signature counts as wrong",
            c(),
            Signer::android(2, [0, 0, 0, 0]).request("/session", &refs(&params), &ORDER),
        )
        .rejected()
        .counts(&[
            "s2s_guard.signature.outcome.invalid_signature",
            REJ,
            R2,
            "s2s_guard.requests.outcome.wrong.scope.sessions",
            "s2s_guard.rejected.outcome.wrong",
        ]),
    );
    out.push(
        case(
            "no signature counts as missing",
            c(),
            Request::post("/session")
                .header("content-type", "application/x-www-form-urlencoded")
                .body(format!(
                    "app_token=abc123&created_at={}&gps_adid={GPS}",
                    form_encode(&base(30))
                )),
        )
        .rejected()
        .counts(&[
            "s2s_guard.signature.outcome.missing_signature",
            REJ,
            "s2s_guard.sdk.app.abc123.no_secret",
            "s2s_guard.requests.outcome.missing.scope.sessions",
            "s2s_guard.rejected.outcome.missing",
        ]),
    );

    // Global flag mode: invalid signatures forwarded with the reason in the body.
    let params = p(&base(26));
    out.push(
        case(
            "flag mode: invalid signature forwarded with the reason",
            flag(),
            Signer::android(2, [0, 0, 0, 0]).request("/session", &refs(&params), &ORDER),
        )
        .body_has("s2s_guard_rejection=invalid_signature")
        .counts(&[
            "s2s_guard.signature.outcome.invalid_signature",
            "s2s_guard.signature.flagged",
            R2,
            "s2s_guard.flagged.outcome.wrong",
        ]),
    );
    // iOS 4.29+ without tracking consent: no idfa, no random_token, nothing signed
    // but created_at, app_secret and activity_kind (FACTS.md §1).
    let ios_att = |n: u64, extra: &[(&'static str, &'static str)]| {
        let created = base(500 + n);
        let mut params: Vec<(String, String)> = vec![
            ("app_token".into(), "abc123".into()),
            ("created_at".into(), created),
        ];
        params.extend(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())));
        Signer::ios(2, [1234, 5678, 9012, 3456]).request(
            "/session",
            &refs(&params),
            &["created_at", "app_secret", "activity_kind"],
        )
    };
    out.push(
        case(
            "ios without tracking consent: no device id signed",
            c(),
            ios_att(0, &[]),
        )
        .counts(&[
            V,
            "s2s_guard.signature.outcome.verified_without_device_id",
            A2,
        ]),
    );
    out.push(
        case(
            "ios without tracking consent: idfv is never the signed id",
            c(),
            ios_att(1, &[("idfv", "EA7583CD-A667-48BC-B806-42ECB2B48607")]),
        )
        .counts(&[
            V,
            "s2s_guard.signature.outcome.verified_without_device_id",
            A2,
        ]),
    );
    out.push(
        case(
            "no device id signed, an Android id present, iOS claimed",
            c(),
            ios_att(3, &[("gps_adid", GPS)]),
        )
        .rejected()
        .counts(&["s2s_guard.signature.outcome.wrong_device_id", REJ, R2]),
    );
    out.push(
        case(
            "no device id signed, ids of both platforms that are never signed",
            c(),
            ios_att(
                4,
                &[
                    ("idfv", IDFA),
                    ("oaid", "7a3b1f0e-44c2-4a1e-9d8c-2f5b6e7d8c9a"),
                ],
            ),
        )
        .rejected()
        .counts(&["s2s_guard.signature.outcome.wrong_device_id", REJ, R2]),
    );
    out.push(
        case(
            "no device id signed, but an idfa present unsigned",
            c(),
            ios_att(2, &[("idfa", IDFA)]),
        )
        .rejected()
        .counts(&["s2s_guard.signature.outcome.wrong_device_id", REJ, R2]),
    );
    out.push(
        case(
            "an unsigned activity_kind that disagrees with the path",
            c(),
            {
                let params = p(&base(510));
                let mut params = params;
                params.push(("activity_kind".into(), "event".into()));
                app2().request("/session", &refs(&params), &ORDER)
            },
        )
        .rejected()
        .counts(&[
            "s2s_guard.signature.outcome.bad_format_activity_kind",
            REJ,
            R2,
        ]),
    );
    let strict = |n: u64, sdk: &'static str, device: bool| {
        let mut params: Vec<(String, String)> = vec![
            ("app_token".into(), "strict".into()),
            ("created_at".into(), base(520 + n)),
        ];
        let mut order = vec!["created_at", "app_secret", "activity_kind"];
        if device {
            params.push(("gps_adid".into(), GPS.into()));
            order.push("gps_adid");
        }
        let signer = Signer {
            secret_id: 1,
            info: [1, 2, 3, 4],
            client_sdk: sdk,
        };
        signer.request("/session", &refs(&params), &order)
    };
    const S1R: &str = "s2s_guard.sdk.app.strict.secret.1.rejected";
    const S1A: &str = "s2s_guard.sdk.app.strict.secret.1.accepted";
    out.push(
        case(
            "require_device_id: none signed is refused",
            c(),
            strict(0, "ios4.33.0", false),
        )
        .rejected()
        .counts(&["s2s_guard.signature.outcome.device_id_required", REJ, S1R]),
    );
    out.push(
        case(
            "min_sdk: a current SDK passes",
            c(),
            strict(1, "android4.38.0", true),
        )
        .counts(&[V, S1A]),
    );
    out.push(
        case(
            "min_sdk: an older Client-SDK is refused",
            c(),
            strict(2, "android4.17.0", true),
        )
        .rejected()
        .counts(&["s2s_guard.signature.outcome.sdk_too_old", REJ, S1R]),
    );
    out.push(
        case(
            "min_sdk: an older native SDK inside a wrapper is refused",
            c(),
            strict(3, "unity4.38.0@android4.17.0", true),
        )
        .rejected()
        .counts(&["s2s_guard.signature.outcome.sdk_too_old", REJ, S1R]),
    );
    out.push(
        case(
            "min_sdk: no Client-SDK at all is refused",
            c(),
            strict(4, "", true),
        )
        .rejected()
        .counts(&["s2s_guard.signature.outcome.sdk_too_old", REJ, S1R]),
    );
    // Enforcing apps: shapes that cannot be verified are refused unless allow-listed.
    let shape = |app: &str, header: &str| {
        Request::post("/session")
            .header("content-type", "application/x-www-form-urlencoded")
            .body(format!(
                "app_token={app}&created_at={}&gps_adid={GPS}",
                form_encode(&base(540))
            ))
            .header("authorization", header)
    };
    const BAD_AUTH: &str = "s2s_guard.signature.outcome.bad_format_authorization";
    for (name, header) in [
        (
            "enforcing: algorithm adj1 and nothing else",
            r#"Signature algorithm="adj1""#,
        ),
        (
            "enforcing: a bare adj_signing_id",
            r#"Signature adj_signing_id="7",algorithm="adj1""#,
        ),
        (
            "enforcing: SHA256 is the legacy scheme, verified",
            r#"Signature secret_id="2",signature="0000000000000000000000000000000000000000000000000000000000000000",algorithm="SHA256",headers="created_at gps_adid app_secret activity_kind""#,
        ),
    ] {
        out.push(
            case(name, c(), shape("abc123", header))
                .rejected()
                .counts(&[BAD_AUTH, REJ, INVALID]),
        );
    }
    out.push(
        case(
            "enforcing: a GET to /attribution with a later shape",
            c(),
            Request::get(&format!("/attribution?app_token=abc123&gps_adid={GPS}")).header(
                "authorization",
                r#"Signature signature="abc",adj_signing_id="x",algorithm="adj2",headers_id="1""#,
            ),
        )
        .rejected()
        .counts(&["s2s_guard.signature.outcome.unverifiable_signature", REJ]),
    );
    let later_for = |app: &str, id: &str| {
        shape(
            app,
            &format!(
                r#"Signature signature="abc",adj_signing_id="{id}",algorithm="adj2",headers_id="1""#
            ),
        )
    };
    out.push(
        case(
            "enforcing with an allow-list: a listed signing id passes",
            c(),
            later_for("allowlisted", "sid-ok"),
        )
        .counts(&["s2s_guard.signature.outcome.unverifiable_passed"]),
    );
    out.push(
        case(
            "enforcing with an allow-list: another signing id is refused",
            c(),
            later_for("allowlisted", "sid-x"),
        )
        .rejected()
        .counts(&["s2s_guard.signature.outcome.signing_id_not_allowed", REJ]),
    );

    out
}

fn check(c: &Case, o: &Observed, runner: &str) {
    let ctx = format!("[{runner}] {}", c.name);
    assert_eq!(o.forwarded, c.forwarded, "{ctx}: forwarded? {o:?}");
    assert_eq!(o.status, c.status, "{ctx}: status; {o:?}");
    if !c.forwarded {
        let want = if c.status == 400 {
            "Ambiguous request"
        } else {
            "Request signature rejected"
        };
        assert_eq!(
            String::from_utf8_lossy(&o.body),
            want,
            "{ctx}: the body never says which check failed"
        );
    }
    if let Some(want) = c.reason_header {
        let up = o.upstream.as_ref().unwrap();
        assert_eq!(
            header_value(up, "x-s2s-guard-rejection"),
            Some(want.as_bytes()),
            "{ctx}"
        );
    }
    if let Some(want) = c.up_body_has {
        let body = String::from_utf8_lossy(o.upstream_body.as_ref().unwrap()).into_owned();
        assert!(body.contains(want), "{ctx}: upstream body {body}");
    }
    let mut want: Vec<String> = c.counters.iter().map(|s| s.to_string()).collect();
    want.sort();
    let counters = common::without_breakdowns(&o.counters).unwrap_or_else(|e| panic!("{ctx}: {e}"));
    // The decision's own series (`requests`, `rejected`, `flagged`) are compared
    // where a case names one of that family; the signature's series always.
    let families = [
        "s2s_guard.requests.outcome.",
        "s2s_guard.rejected.outcome.",
        "s2s_guard.flagged.outcome.",
    ];
    let family = |k: &str| families.iter().find(|f| k.starts_with(*f));
    let got: Vec<String> = counters
        .keys()
        .filter(|k| match family(k) {
            Some(f) => c.counters.iter().any(|w| w.starts_with(f)),
            None => true,
        })
        .cloned()
        .collect();
    assert_eq!(got, want, "{ctx}: counters");
}

#[test]
fn signatures_native() {
    let mut memory = ReplayMemory::default();
    check_all(
        |c| run_native_with(&c.config, &c.req, &mut memory, START),
        "native",
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
            failures.push(msg.chars().take(400).collect::<String>());
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
fn signatures_through_the_wasm() {
    let mut runner = WasmRunner::new();
    check_all(|c| runner.run(&c.config, &c.req), "wasm");
    // Nothing secret in logs, and the reason (not the secret) is logged.
    let logs: Vec<String> = runner
        .host(&config(""))
        .logs()
        .into_iter()
        .map(|l| l.message)
        .collect();
    let all = logs.join("\n");
    for secret in ["1234567890123456", "11223344", "1112223334"] {
        assert!(!all.contains(secret), "secret in logs: {secret}");
    }
    assert!(all.contains("signature=wrong_device_id"), "{all}");
}

fn host(config: &str, workers: usize) -> Host {
    Host::new(
        &load_dist("s2s-guard.wasm"),
        HostOptions {
            workers,
            plugin_config: config.as_bytes().to_vec(),
            allow_on_headers_stop_iteration: config.contains(r#""hold_headers_for_body": true"#),
            ..HostOptions::default()
        },
    )
    .unwrap()
}

/// The replay memory is shared by every worker (Envoy shared data).
#[test]
fn replay_is_refused_on_another_worker() {
    let mut h = host(&config(""), 4);
    let params = [
        ("app_token", "abc123"),
        ("created_at", &*at(500)),
        ("gps_adid", GPS),
    ];
    let r = app2().request("/session", &params, &ORDER);
    assert_eq!(h.send_on(0, r.clone()).status, 200);
    for w in 1..4 {
        assert_eq!(h.send_on(w, r.clone()).status, 401, "worker {w}");
    }
    assert_eq!(h.metric("s2s_guard.signature.outcome.replayed"), Some(3));
}

/// A full replay memory does what the app says, and it is counted.
#[test]
fn replay_memory_full() {
    for (when_full, third_status, counter) in [
        (
            "reject",
            401,
            "s2s_guard.signature.outcome.replay_memory_full",
        ),
        (
            "accept",
            200,
            "s2s_guard.signature.outcome.replay_full_accepted",
        ),
    ] {
        let cfg = format!(
            r#"{{"presets": ["adjust_sdk"], "apps": {{"abc123": {{"signature": {{"max_age": 3600,
              "secrets": [{{"id": 2, "info": [1234, 5678, 9012, 3456]}}], "replay": {{"capacity": 1, "when_full": "{when_full}"}}}}}}}}}}"#
        );
        let mut h = host(&cfg, 1);
        let mut statuses = Vec::new();
        // The memory of a secret is per key: craft genuine requests until one key
        // gets one more than it holds, then send them.
        let per_key = s2s_guard::replay::per_key(1);
        let tag = s2s_guard::replay::secret_tag(2, b"1234567890123456");
        let mut by_key: BTreeMap<String, Vec<Request>> = BTreeMap::new();
        let mut same = None;
        for n in 0..200_000u64 {
            let created = created_at(START - 60 - n / 1000, n % 1000);
            let params = [
                ("app_token", "abc123"),
                ("created_at", created.as_str()),
                ("gps_adid", GPS),
            ];
            let auth = app2().authorization("/session", &params, &ORDER);
            let sig = auth
                .split("signature=\"")
                .nth(1)
                .unwrap()
                .split('"')
                .next()
                .unwrap();
            let k = s2s_guard::replay::check(&tag, per_key, 3900, sig, 0, 0).key;
            let list = by_key.entry(k).or_default();
            list.push(app2().request("/session", &params, &ORDER));
            if list.len() > per_key {
                same = Some(list.clone());
                break;
            }
        }
        let same = same.expect("a key filled");
        for r in &same {
            statuses.push(h.send(r.clone()).status);
        }
        let third_status = std::iter::repeat_n(200, per_key)
            .chain([third_status])
            .collect::<Vec<_>>();
        assert_eq!(statuses, third_status, "{when_full}");
        assert_eq!(h.metric(counter), Some(1), "{when_full}");
    }
}

const FILL: &str = "s2s_guard.replay.fill_percent";

/// The replay fill gauge through the `.wasm`, with two workers: one process-wide
/// gauge (Envoy: one stat per name, `record_metric` sets it); a full key is recorded
/// at once by the worker that meets it; a worker records its window's reading at
/// the window's end, replacing whatever another worker recorded.
#[test]
fn replay_fill_gauge() {
    let cfg = r#"{"presets": ["adjust_sdk"], "apps": {"abc123": {"signature": {"max_age": 3600,
      "secrets": [{"id": 2, "info": [1234, 5678, 9012, 3456]}], "replay": {"capacity": 1, "when_full": "reject"}}}}}"#;
    let mut h = host(cfg, 2);
    let gauge = h.metric_record(FILL).expect("defined at load");
    assert_eq!(
        (gauge.kind, gauge.value),
        (s2s_guard_host::MetricKind::Gauge, 0)
    );
    // Genuine requests by key: one key's worth and one more, and a window's worth
    // of requests to other keys.
    let per_key = s2s_guard::replay::per_key(1);
    let window = s2s_guard::replay::FILL_WINDOW as usize;
    let tag = s2s_guard::replay::secret_tag(2, b"1234567890123456");
    let mut by_key: BTreeMap<String, Vec<Request>> = BTreeMap::new();
    let mut full_key = None;
    for n in 0..200_000u64 {
        let created = created_at(START - 60 - n / 1000, n % 1000);
        let params = [
            ("app_token", "abc123"),
            ("created_at", created.as_str()),
            ("gps_adid", GPS),
        ];
        let auth = app2().authorization("/session", &params, &ORDER);
        let sig = auth.split("signature=\"").nth(1).unwrap();
        let sig = sig.split('"').next().unwrap();
        let k = s2s_guard::replay::check(&tag, per_key, 3900, sig, 0, 0).key;
        let list = by_key.entry(k.clone()).or_default();
        list.push(app2().request("/session", &params, &ORDER));
        if list.len() > per_key {
            full_key = Some(k);
            break;
        }
    }
    let full_key = full_key.expect("a key filled");
    let same = by_key.remove(&full_key).unwrap();
    // One request per other key, so none of them is full.
    let others: Vec<Request> = by_key
        .into_values()
        .map(|mut l| l.remove(0))
        .take(window)
        .collect();
    assert_eq!(others.len(), window);
    // Worker 1 fills the key: nothing recorded before it is full (no window ended).
    for r in &same[..per_key - 1] {
        assert_eq!(h.send_on(1, r.clone()).status, 200);
    }
    assert_eq!(h.metric(FILL), Some(0));
    assert_eq!(h.send_on(1, same[per_key - 1].clone()).status, 200);
    assert_eq!(h.metric(FILL), Some(100), "the key is full: at once");
    // Worker 0's window touches other keys only: its reading replaces the gauge.
    for r in &others[..window - 1] {
        assert_eq!(h.send_on(0, r.clone()).status, 200);
    }
    assert_eq!(h.metric(FILL), Some(100), "worker 0's window not ended");
    assert_eq!(h.send_on(0, others[window - 1].clone()).status, 200);
    let reading = h.metric(FILL).unwrap();
    assert!((1..100).contains(&reading), "worker 0's window: {reading}");
    // Worker 1 meets the full key again (refused): recorded at once again.
    assert_eq!(h.send_on(1, same[per_key].clone()).status, 401);
    assert_eq!(
        h.metric("s2s_guard.signature.outcome.replay_memory_full"),
        Some(1)
    );
    assert_eq!(h.metric(FILL), Some(100));
    let gauges: Vec<_> = h
        .metric_records()
        .into_iter()
        .filter(|m| m.name == FILL)
        .collect();
    assert_eq!(gauges.len(), 1, "one stat for every worker");
}

/// Deactivating a secret takes effect with the next configuration; reactivating
/// keeps its Secret ID.
#[test]
fn deactivate_and_reactivate_a_secret() {
    let on = r#"{"presets": ["adjust_sdk"], "apps": {"abc123": {"signature": {"secrets": [{"id": 2, "info": [1234, 5678, 9012, 3456]}]}}}}"#;
    let off = on.replace(r#"3456]}"#, r#"3456], "active": false}"#);
    let mut h = host(on, 2);
    let req = |n: u64| {
        app2().request(
            "/session",
            &[
                ("app_token", "abc123"),
                ("created_at", &*at(900 + n)),
                ("gps_adid", GPS),
            ],
            &ORDER,
        )
    };
    assert_eq!(h.send(req(1)).status, 200);
    h.reconfigure(off.as_bytes()).unwrap();
    assert_eq!(h.send(req(2)).status, 401);
    h.reconfigure(on.as_bytes()).unwrap();
    assert_eq!(h.send(req(3)).status, 200);
    assert_eq!(
        h.metric("s2s_guard.sdk.app.abc123.secret.2.accepted"),
        Some(2)
    );
    assert_eq!(
        h.metric("s2s_guard.sdk.app.abc123.secret.2.rejected"),
        Some(1)
    );
}

/// Signature configuration errors, word for word.
#[test]
fn signature_configuration_errors() {
    let cases = [
        (r#"{"presets": ["adjust_sdk"], "apps": {"a": {"template": "nope"}}}"#, "apps.a.template: unknown template app \"nope\" (it needs a signature object in apps)"),
        (r#"{"presets": ["adjust_sdk"], "apps": {"a": {"signature": {"secrets": [{"id": 1, "info": [1, 2, 3, 4]}, {"id": 1, "secret": "5"}]}}}}"#, "apps.a.signature.secrets[1].id: duplicate Secret ID 1"),
        (r#"{"presets": ["adjust_sdk"], "apps": {"a": {"signature": {"android_signature_hash": "AA:BB"}}}}"#, "apps.a.signature.android_signature_hash: not a certificate fingerprint (AA:BB:... with 20 or 32 bytes): \"AA:BB\""),
        (r#"{"presets": ["adjust_sdk"], "apps": {"a": {"signature": {"secrets": [{"id": 0, "info": [1, 2, 3, 4]}]}}}}"#, "apps.a.signature.secrets[0].id: must be a Secret ID between 1 and 4294967295"),
        (r#"{"presets": ["adjust_sdk"], "apps": {"a": {"signature": {"later_sdk": "maybe"}}}}"#, "apps.a.signature.later_sdk: unknown policy \"maybe\" (expected pass, flag or reject)"),
        (r#"{"routes": [{"path": "/session", "profile": "adjust", "checks": "signature"}]}"#, "routes[0].checks: signature checks need app_param (where the request names its app)"),
    ];
    for (cfg, msg) in cases {
        match s2s_guard::config::parse(cfg.as_bytes()) {
            Err(e) => assert_eq!(e.to_string(), msg, "{cfg}"),
            Ok(_) => panic!("accepted: {cfg}"),
        }
    }
}

/// A route may require a token and a signature together: both are checked, the
/// token first (with the route's profile), then the signature.
#[test]
fn token_and_signature_compose() {
    // Headers held while the body is read, so the verified identity can be set.
    let cfg = r#"{"hold_headers_for_body": true, "routes": [{"path": "/session", "profile": "swaarm", "credentials": ["header:x-api-key"],
                   "app_param": "app_token", "checks": "token_and_signature"}],
       "tokens": [{"id": "partner", "secret": "partner-key", "all_apps": true}],
       "apps": {"abc123": {"signature": {"enforce_signature": true, "secrets": [{"id": 2, "info": [1234, 5678, 9012, 3456]}]}}}}"#;
    let mut h = host(cfg, 2);
    let signed = |n: u64| {
        app2().request(
            "/session",
            &[
                ("app_token", "abc123"),
                ("created_at", &*at(700 + n)),
                ("gps_adid", GPS),
            ],
            &ORDER,
        )
    };
    let o = h.send(signed(1).header("x-api-key", "partner-key"));
    assert_eq!(o.status, 200, "{}", o.body_text());
    assert_eq!(
        o.upstream.unwrap().header("x-s2s-guard-token-id"),
        Some(&b"partner"[..])
    );
    let o = h.send(signed(2));
    assert_eq!(
        (o.status, o.body_text().as_str()),
        (401, "The s2s token is invalid"),
        "token missing: the route's profile answers"
    );
    let unsigned = Request::post("/session")
        .header("content-type", "application/x-www-form-urlencoded")
        .header("x-api-key", "partner-key")
        .body(format!(
            "app_token=abc123&created_at={}&gps_adid={GPS}",
            form_encode(&at(703))
        ));
    let o = h.send(unsigned);
    assert_eq!(
        (o.status, o.body_text().as_str()),
        (401, "Request signature rejected")
    );
    assert_eq!(
        h.metric("s2s_guard.signature.outcome.missing_signature"),
        Some(1)
    );
}

/// Cold attack, session 13, round 10b (helper-49, F3): a refused signature was
/// logged `allowed` and missing from the route's series. Through the `.wasm`: the
/// log line and `requests_by_route` say what happened.
#[test]
fn refused_signatures_are_logged_and_counted_as_refused() {
    let mut h = Host::new(
        &load_dist("s2s-guard.wasm"),
        HostOptions {
            plugin_config: config("").into_bytes(),
            log_level: LogLevel::Info,
            ..HostOptions::default()
        },
    )
    .unwrap();
    let params = [
        ("app_token", "abc123"),
        ("created_at", &*at(900)),
        ("gps_adid", GPS),
    ];
    let o = h.send(Signer::android(2, [0, 0, 0, 0]).request("/session", &params, &ORDER));
    assert_eq!(o.status, 401);
    let params = [
        ("app_token", "abc123"),
        ("created_at", &*at(901)),
        ("gps_adid", GPS),
    ];
    let o = h.send(app2().request("/session", &params, &ORDER));
    assert_eq!(o.status, 200);
    let logs = h.logs_at(LogLevel::Info).join("\n");
    assert!(
        logs.contains("s2s-guard: wrong route=adjust_session ")
            && logs.contains("signature=invalid_signature"),
        "{logs}"
    );
    assert!(!logs.contains("allowed route=adjust_session"), "{logs}");
    for (outcome, n) in [("wrong", 1), ("allowed", 1)] {
        assert_eq!(
            h.metric(&format!(
                "s2s_guard.requests_by_route.route.adjust_session.outcome.{outcome}"
            )),
            Some(n),
            "{outcome}"
        );
    }
}

/// With Envoy's allow_on_headers_stop_iteration (`hold_headers_for_body`), a signed
/// form POST is decided before anything goes upstream, and a flag reason travels as
/// a header, not a body field.
#[test]
fn held_headers_for_signed_posts() {
    let cfg = config(r#","hold_headers_for_body": true, "mode": "flag""#);
    let mut h = Host::new(
        &load_dist("s2s-guard.wasm"),
        HostOptions {
            workers: 2,
            plugin_config: cfg.into_bytes(),
            allow_on_headers_stop_iteration: true,
            ..HostOptions::default()
        },
    )
    .unwrap();
    let params = [
        ("app_token", "abc123"),
        ("created_at", &*at(800)),
        ("gps_adid", GPS),
    ];
    let good = app2().request("/session", &params, &ORDER);
    let o = h.send(good);
    assert_eq!(o.status, 200);
    let up = o.upstream.unwrap();
    assert_eq!(up.header("x-s2s-guard-rejection"), None);
    let bad = Signer::android(2, [0, 0, 0, 0]).request(
        "/session",
        &[
            ("app_token", "abc123"),
            ("created_at", &*at(801)),
            ("gps_adid", GPS),
        ],
        &ORDER,
    );
    let o = h.send(bad);
    let up = o.upstream.unwrap();
    assert_eq!(
        up.header("x-s2s-guard-rejection"),
        Some(&b"invalid_signature"[..])
    );
    assert!(!String::from_utf8_lossy(&up.body).contains("s2s_guard_rejection"));
}

/// The replay memory is per App Secret: a signature accepted for one app is refused
/// for another app, and for the template, that sign with the template's secret.
#[test]
fn apps_sharing_a_template_secret_share_its_replay_memory() {
    let mut h = host(&config(""), 2);
    let created = at(950);
    let params = [
        ("app_token", "abc123"),
        ("created_at", created.as_str()),
        ("gps_adid", GPS),
    ];
    let signed = Signer::android(1, [11, 22, 33, 44]).request("/session", &params, &ORDER);
    assert_eq!(h.send_on(0, signed.clone()).status, 200);
    // The same signature, the app_token (unsigned) changed to the template app.
    let body = String::from_utf8(signed.body.clone())
        .unwrap()
        .replace("app_token=abc123", "app_token=tmpl");
    let replayed = signed.clone().body(body);
    let o = h.send_on(1, replayed);
    assert_eq!(o.status, 401, "{}", o.body_text());
    assert_eq!(h.metric("s2s_guard.signature.outcome.replayed"), Some(1));
}

/// The memory holds the number it advertises: `capacity` genuine signatures of one
/// secret inside one window are all accepted, through the .wasm.
#[test]
fn the_replay_memory_holds_its_capacity() {
    let capacity = 3000;
    let cfg = format!(
        r#"{{"presets": ["adjust_sdk"], "apps": {{"abc123": {{"signature": {{"max_age": "1d",
          "secrets": [{{"id": 2, "info": [1234, 5678, 9012, 3456]}}], "replay": {{"capacity": {capacity}, "when_full": "reject"}}}}}}}}}}"#
    );
    let mut h = host(&cfg, 1);
    for n in 0..capacity as u64 {
        let created = created_at(START - 600 - n / 1000, n % 1000);
        let params = [
            ("app_token", "abc123"),
            ("created_at", created.as_str()),
            ("gps_adid", GPS),
        ];
        let o = h.send(app2().request("/session", &params, &ORDER));
        assert_eq!(
            o.status,
            200,
            "signature {n} of {capacity}: {}",
            o.body_text()
        );
    }
    assert_eq!(
        h.metric("s2s_guard.signature.outcome.verified"),
        Some(capacity)
    );
    assert_eq!(
        h.metric("s2s_guard.signature.outcome.replay_memory_full"),
        Some(0)
    );
    // Its fill gauge: a window's fullest key, under the bound.
    let reading = h.metric(FILL).unwrap();
    assert!((1..100).contains(&reading), "fill {reading}");
}

/// An enforcing app that passes (or flags) unverifiable shapes is valid, but said at
/// load, naming the app and its signing ids.
#[test]
fn enforcing_apps_passing_unverifiable_shapes_are_warned_about() {
    let h = host(&config(""), 1);
    let warnings = h.logs_at(s2s_guard_host::LogLevel::Warn).join("\n");
    assert!(
        warnings.contains(
            "apps.allowlisted.signature: enforce_signature is on, but unverifiable signatures of signing ids sid-ok are passed (later_sdk)"
        ),
        "{warnings}"
    );
    assert!(
        !warnings.contains("apps.loose"),
        "not enforcing: {warnings}"
    );
}

/// The Secret ID is not signed: a signature accepted under one ID verifies under any
/// other ID with the same value, and is refused there as a replay.
#[test]
fn one_secret_value_under_two_ids_is_one_replay_memory() {
    let cfg = r#"{"presets": ["adjust_sdk"], "apps": {
        "t7": {"signature": {"secrets": [{"id": 7, "info": [1234, 5678, 9012, 3456]}]}},
        "abc123": {"template": "t7", "signature": {"secrets": [{"id": 2, "info": [1234, 5678, 9012, 3456]}]}}}}"#;
    let mut h = host(cfg, 2);
    let created = at(970);
    let params = [
        ("app_token", "abc123"),
        ("created_at", created.as_str()),
        ("gps_adid", GPS),
    ];
    let signed = Signer::android(7, [1234, 5678, 9012, 3456]).request("/session", &params, &ORDER);
    assert_eq!(h.send_on(0, signed.clone()).status, 200);
    let auth = String::from_utf8(
        header_value(&signed.headers, "authorization")
            .unwrap()
            .to_vec(),
    )
    .unwrap()
    .replace(r#"secret_id="7""#, r#"secret_id="2""#);
    let mut replayed = signed.clone();
    replayed.headers.retain(|(k, _)| k != "authorization");
    let replayed = replayed.header("authorization", auth);
    let o = h.send_on(1, replayed);
    assert_eq!(o.status, 401, "{}", o.body_text());
    assert_eq!(h.metric("s2s_guard.signature.outcome.replayed"), Some(1));
}

/// The adjust_sdk preset covers every SDK endpoint FACTS.md §1 lists: unsigned
/// requests of an enforcing app are refused on each.
#[test]
fn every_sdk_endpoint_is_protected() {
    let mut h = host(&config(""), 1);
    for path in [
        "/sdk_click",
        "/sdk_info",
        "/third_party_sharing",
        "/disable_third_party_sharing",
        "/measurement_consent",
        "/v2/purchase",
        "/verify",
    ] {
        let o = h.send(
            Request::post(path)
                .header("content-type", "application/x-www-form-urlencoded")
                .body(format!(
                    "app_token=abc123&created_at={}&gps_adid={GPS}",
                    form_encode(&at(990))
                )),
        );
        assert_eq!(o.status, 401, "{path}: {}", o.body_text());
    }
}

/// Two workers on a host with strict compare-and-swap (Kong's ngx_wasm_module).
fn strict_cas_host() -> Host {
    Host::new(
        &load_dist("s2s-guard.wasm"),
        HostOptions {
            workers: 2,
            plugin_config: config("").into_bytes(),
            strict_cas: true,
            ..HostOptions::default()
        },
    )
    .unwrap()
}

/// Session 12, round 6 (helper-44) F7: two workers handling one signature at the
/// same instant, on a replay key nobody had written yet, both accepted it: Envoy
/// takes any write on a missing key whatever its CAS, so both writes landed. The
/// first write of a key now creates it only if it is still missing: the worker
/// that comes second reads the other's entry and refuses the replay.
#[test]
fn a_replay_racing_the_first_write_of_its_key_is_refused() {
    let params = [
        ("app_token", "abc123"),
        ("created_at", &*at(500)),
        ("gps_adid", GPS),
    ];
    let r = app2().request("/session", &params, &ORDER);
    // What the other worker writes: the entry this signature makes in a fresh memory.
    let entry = {
        let mut other = host(&config(""), 1);
        let mut before = Vec::new();
        other.shared_data_visit(|k, _| before.push(k.to_string()));
        assert_eq!(other.send(r.clone()).status, 200);
        let mut written = Vec::new();
        other.shared_data_visit(|k, v| {
            if !before.iter().any(|b| b == k) {
                written.push((k.to_string(), v.to_vec()));
            }
        });
        assert_eq!(written.len(), 1, "one replay key written");
        written.remove(0)
    };
    let mut h = host(&config(""), 2);
    h.write_after_next_read(&entry.0, &entry.1);
    let o = h.send_on(0, r.clone());
    assert_eq!(o.status, 401, "accepted twice");
    assert_eq!(h.metric("s2s_guard.signature.outcome.replayed"), Some(1));
    // Hosts with strict compare-and-swap (Kong's ngx_wasm_module) keep the memory.
    let mut strict = strict_cas_host();
    assert_eq!(strict.send_on(0, r.clone()).status, 200);
    assert_eq!(strict.send_on(1, r.clone()).status, 401);
    let mut strict_race = strict_cas_host();
    strict_race.write_after_next_read(&entry.0, &entry.1);
    assert_eq!(strict_race.send_on(0, r).status, 401);
}

/// Flag mode with the headers not held (round 12, helper-53): the credential
/// headers go before the body decides, but an SDK's `Authorization: Signature`
/// is no token to any source: it reaches the collector (which may verify it
/// again), verified or flagged; a Bearer token beside a form body still goes.
#[test]
fn flag_mode_keeps_the_sdk_signature_header() {
    let mut h = host(&config(r#","mode": "flag""#), 1);
    let created = at(900);
    let params = [
        ("app_token", "abc123"),
        ("created_at", created.as_str()),
        ("gps_adid", GPS),
    ];
    let o = h.send(app2().request("/session", &params, &ORDER));
    assert_eq!(o.status, 200, "{}", o.body_text());
    let up = o.upstream.as_ref().expect("forwarded");
    assert!(
        up.header("authorization")
            .is_some_and(|a| a.starts_with(b"Signature ")),
        "{:?}",
        up.headers
    );
    assert!(up.header("x-s2s-guard-rejection").is_none());
    // A signature that does not verify: flagged, the header still there.
    let created = at(901);
    let params = [
        ("app_token", "abc123"),
        ("created_at", created.as_str()),
        ("gps_adid", GPS),
    ];
    let o = h.send(Signer::android(2, [0, 0, 0, 0]).request("/session", &params, &ORDER));
    let up = o.upstream.as_ref().expect("forwarded flagged");
    assert!(String::from_utf8_lossy(&up.body).contains("s2s_guard_rejection=invalid_signature"));
    assert!(up
        .header("authorization")
        .is_some_and(|a| a.starts_with(b"Signature ")));
    // A Bearer token on the same route before its body: stripped as before.
    let o = h.send(
        Request::post("/session")
            .header("content-type", "application/x-www-form-urlencoded")
            .header("authorization", "Bearer not-a-token")
            .body("app_token=abc123&s2s=1"),
    );
    let up = o.upstream.as_ref().expect("forwarded flagged");
    assert_eq!(up.header("authorization"), None, "{:?}", up.headers);
}

/// Round 15 (helper-58, F3): the legacy signature does not sign the app, so an
/// App Secret value is one key whatever app or ID carries it. A value an app
/// deactivated under its own ID stays refused when its template holds it under
/// another; an app with its replay memory off beside apps sharing its secret with
/// the memory on is said at load.
#[test]
fn template_secrets_do_not_undo_an_app_s_own_settings() {
    let cfg = r#"{"presets": ["adjust_sdk"], "apps": {
        "t7": {"signature": {"secrets": [{"id": 7, "info": [1234, 5678, 9012, 3456]}]}},
        "abc123": {"template": "t7", "signature": {"enforce_signature": true,
            "secrets": [{"id": 2, "info": [1234, 5678, 9012, 3456], "active": false}]}},
        "loose": {"template": "t7", "signature": {"replay": {"enabled": false}}}}}"#;
    let mut h = host(cfg, 1);
    let warnings = h.logs_at(s2s_guard_host::LogLevel::Warn).join("\n");
    assert!(
        warnings.contains(
            "apps.loose.signature: replay is off, but an App Secret of it is also one of [t7], whose signatures (the app is not signed) can then be replayed as loose without limit"
        ),
        "{warnings}"
    );
    for (n, id) in [(0, 7), (1, 2)] {
        let created = at(980 + n);
        let params = [
            ("app_token", "abc123"),
            ("created_at", created.as_str()),
            ("gps_adid", GPS),
        ];
        let o = h.send(
            Signer::android(id, [1234, 5678, 9012, 3456]).request("/session", &params, &ORDER),
        );
        assert_eq!(o.status, 401, "secret id {id}: {}", o.body_text());
    }
    // The template's other apps keep it.
    let created = at(990);
    let params = [
        ("app_token", "loose"),
        ("created_at", created.as_str()),
        ("gps_adid", GPS),
    ];
    let o =
        h.send(Signer::android(7, [1234, 5678, 9012, 3456]).request("/session", &params, &ORDER));
    assert_eq!(o.status, 200, "{}", o.body_text());
}
