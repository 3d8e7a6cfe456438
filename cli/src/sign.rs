//! `sign`: an SDK request signed as the Adjust SDK signs it (the legacy App Secret
//! scheme, FACTS.md §1), printed as a `curl` command to test an endpoint end to end.

use std::process::ExitCode;
use std::time::{SystemTime, UNIX_EPOCH};

use sha2::{Digest, Sha256};

use crate::{Args, Fail};

/// The endpoint of each activity kind (the server derives the kind from the path).
const ACTIVITIES: [(&str, &str); 12] = [
    ("session", "/session"),
    ("event", "/event"),
    ("click", "/sdk_click"),
    ("info", "/sdk_info"),
    ("attribution", "/attribution"),
    ("gdpr", "/gdpr_forget_device"),
    ("ad_revenue", "/ad_revenue"),
    ("third_party_sharing", "/third_party_sharing"),
    (
        "disable_third_party_sharing",
        "/disable_third_party_sharing",
    ),
    ("measurement_consent", "/measurement_consent"),
    ("subscription", "/v2/purchase"),
    ("purchase_verification", "/verify"),
];

/// Device ids the SDKs sign, in no particular order.
const DEVICE_IDS: [&str; 9] = [
    "gps_adid",
    "fire_adid",
    "android_id",
    "android_uuid",
    "mac_sha1",
    "mac_md5",
    "idfa",
    "ios_uuid",
    "random_token",
];

pub fn form_encode(s: &str) -> String {
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

/// `yyyy-MM-dd'T'HH:mm:ss.SSS'Z'Z` in UTC, as the SDKs format `created_at`.
pub fn created_at(unix_ms: u64) -> String {
    let (unix, millis) = (unix_ms / 1000, unix_ms % 1000);
    let days = (unix / 86400) as i64;
    let secs = unix % 86400;
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{millis:03}Z+0000",
        secs / 3600,
        secs % 3600 / 60,
        secs % 60
    )
}

/// A random version-4 UUID, as the SDKs make `android_uuid` and friends.
fn uuid() -> Result<String, Fail> {
    let mut b = crate::secrets::random_bytes::<16>()?;
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    let h = hex::encode(b);
    Ok(format!(
        "{}-{}-{}-{}-{}",
        &h[..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..]
    ))
}

fn quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

pub fn sign(mut args: Args) -> Result<ExitCode, Fail> {
    let app = args.required("app")?;
    let secret_id: u32 = args
        .required("secret-id")?
        .parse()
        .map_err(|_| Fail("--secret-id: expected a number".into()))?;
    let app_secret = match (args.opt("info")?, args.opt("secret")?) {
        (Some(info), None) => {
            let parts: Vec<&str> = info.split([',', ' ']).filter(|s| !s.is_empty()).collect();
            if parts.len() != 4 || parts.iter().any(|p| p.parse::<u64>().is_err()) {
                return Err(Fail("--info: expected four integers, a,b,c,d".into()));
            }
            // Decimal strings joined with no separator (leading zeros dropped).
            parts
                .iter()
                .map(|p| p.parse::<u64>().unwrap_or_default().to_string())
                .collect::<String>()
        }
        (None, Some(s)) if !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) => s,
        (None, Some(_)) => return Err(Fail("--secret: expected decimal digits".into())),
        _ => return Err(Fail("give --info or --secret".into())),
    };
    let activity = args.required("activity")?;
    let path = ACTIVITIES
        .iter()
        .find(|(a, _)| *a == activity)
        .map(|(_, p)| *p)
        .ok_or_else(|| {
            let names: Vec<&str> = ACTIVITIES.iter().map(|(a, _)| *a).collect();
            Fail(format!(
                "--activity: unknown {activity:?} (expected {})",
                names.join(", ")
            ))
        })?;
    let url = args
        .opt("url")?
        .unwrap_or_else(|| "http://localhost:10000".into());
    let sdk = args.opt("sdk")?.unwrap_or_else(|| "android4.38.0".into());
    let device = match args.opt("device")? {
        Some(d) => {
            let (k, v) = d
                .split_once('=')
                .ok_or_else(|| Fail("--device: expected NAME=VALUE".into()))?;
            if !DEVICE_IDS.contains(&k) {
                return Err(Fail(format!(
                    "--device: {k:?} is not a device id the SDK signs ({})",
                    DEVICE_IDS.join(", ")
                )));
            }
            (k.to_string(), v.to_string())
        }
        None if sdk.starts_with("ios") => ("idfa".to_string(), uuid()?.to_uppercase()),
        None => ("gps_adid".to_string(), uuid()?),
    };
    let created = match args.opt("created-at")? {
        Some(c) => c,
        None => {
            let now = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_err(|e| Fail(e.to_string()))?;
            created_at(now.as_millis() as u64)
        }
    };
    let mut params: Vec<(String, String)> = vec![
        ("app_token".into(), app),
        ("created_at".into(), created),
        device,
    ];
    for p in args.rest()? {
        let (k, v) = p
            .split_once('=')
            .ok_or_else(|| Fail(format!("{p:?}: expected NAME=VALUE")))?;
        if params.iter().any(|(n, _)| n == k) {
            return Err(Fail(format!("{k} is given twice")));
        }
        params.push((k.to_string(), v.to_string()));
    }
    // Signed: app_secret, created_at, activity_kind, the device id, and from SDK
    // 4.18 on `source` and `payload` when present. Any order works: the verifier
    // follows `headers`.
    let mut order: Vec<&str> = vec![
        "created_at",
        params[2].0.as_str(),
        "app_secret",
        "activity_kind",
    ];
    for extra in ["source", "payload"] {
        if params.iter().any(|(k, _)| k == extra) {
            order.push(extra);
        }
    }
    let mut clear = String::new();
    for name in &order {
        match *name {
            "app_secret" => clear.push_str(&app_secret),
            "activity_kind" => clear.push_str(&activity),
            n => clear.push_str(
                params
                    .iter()
                    .find(|(k, _)| k == n)
                    .map_or("", |(_, v)| v.as_str()),
            ),
        }
    }
    let signature = hex::encode(Sha256::digest(clear.as_bytes()));
    let authorization = format!(
        r#"Signature secret_id="{secret_id}",signature="{signature}",algorithm="sha256",headers="{}""#,
        order.join(" ")
    );
    let encoded: Vec<String> = params
        .iter()
        .map(|(k, v)| format!("{}={}", form_encode(k), form_encode(v)))
        .collect();
    let base = url.trim_end_matches('/');
    let headers = format!(
        "-H {} -H {}",
        quote(&format!("Authorization: {authorization}")),
        quote(&format!("Client-SDK: {sdk}"))
    );
    if path == "/attribution" {
        // The one GET: the values travel in the query.
        println!(
            "curl -sS {} {headers}",
            quote(&format!("{base}{path}?{}", encoded.join("&")))
        );
    } else {
        println!(
            "curl -sS -X POST {} {headers} -H {} --data-raw {}",
            quote(&format!("{base}{path}")),
            quote("Content-Type: application/x-www-form-urlencoded"),
            quote(&encoded.join("&"))
        );
    }
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn created_at_is_the_sdk_format() {
        assert_eq!(
            created_at(1_767_225_600_123),
            "2026-01-01T00:00:00.123Z+0000"
        );
        assert_eq!(created_at(951_782_400_000), "2000-02-29T00:00:00.000Z+0000");
    }

    #[test]
    fn shell_quoting_survives_quotes() {
        assert_eq!(quote("a'b"), r"'a'\''b'");
    }
}
