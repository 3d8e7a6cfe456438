//! Adjust SDK request signatures, legacy App Secret scheme (FACTS.md §1), with the
//! scheme's weaknesses closed: strict formats, device-id precedence, signed
//! `source`/`payload`, no `app_secret` in the request, freshness. Pure: replay
//! memory is applied by the adapter through shared data (`replay.rs`).

use sha2::{Digest as _, Sha256};
use subtle::ConstantTimeEq;

use crate::request::Param;

/// Why a signed (or unsigned) request is not accepted. `name()` is the reason
/// logged, counted and sent to the collector in flag mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Reason {
    MissingSignature,
    InvalidSignature,
    BadFormat(Field),
    DuplicateParam,
    WrongDeviceId,
    UnsignedField,
    AppSecretInRequest,
    Stale,
    Replayed,
    ReplayMemoryFull,
    Unverifiable,
    SigningIdNotAllowed,
    /// The app requires a signed device id and the signature covers none.
    DeviceIdRequired,
    /// `Client-SDK` is missing, unreadable or older than the app's minimum.
    SdkTooOld,
}

/// The field a `bad_format` reason names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Field {
    Authorization,
    Headers,
    Signature,
    SecretId,
    CreatedAt,
    DeviceId,
    ActivityKind,
    Source,
    Payload,
}

impl Field {
    pub const ALL: [Field; 9] = [
        Field::Authorization,
        Field::Headers,
        Field::Signature,
        Field::SecretId,
        Field::CreatedAt,
        Field::DeviceId,
        Field::ActivityKind,
        Field::Source,
        Field::Payload,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Field::Authorization => "authorization",
            Field::Headers => "headers",
            Field::Signature => "signature",
            Field::SecretId => "secret_id",
            Field::CreatedAt => "created_at",
            Field::DeviceId => "device_id",
            Field::ActivityKind => "activity_kind",
            Field::Source => "source",
            Field::Payload => "payload",
        }
    }
}

impl Reason {
    /// Every reason, in counter order.
    pub fn all() -> Vec<Reason> {
        let mut v = vec![Reason::MissingSignature, Reason::InvalidSignature];
        v.extend(Field::ALL.into_iter().map(Reason::BadFormat));
        v.extend([
            Reason::DuplicateParam,
            Reason::WrongDeviceId,
            Reason::UnsignedField,
            Reason::AppSecretInRequest,
            Reason::Stale,
            Reason::Replayed,
            Reason::ReplayMemoryFull,
            Reason::Unverifiable,
            Reason::SigningIdNotAllowed,
            Reason::DeviceIdRequired,
            Reason::SdkTooOld,
        ]);
        v
    }

    /// How many reasons there are.
    pub const COUNT: usize = 2 + Field::ALL.len() + 11;

    /// The reason's place in [`Reason::all`] (a counter index, per request: no list).
    pub fn index(self) -> usize {
        let after = 2 + Field::ALL.len();
        match self {
            Reason::MissingSignature => 0,
            Reason::InvalidSignature => 1,
            Reason::BadFormat(f) => 2 + f as usize,
            Reason::DuplicateParam => after,
            Reason::WrongDeviceId => after + 1,
            Reason::UnsignedField => after + 2,
            Reason::AppSecretInRequest => after + 3,
            Reason::Stale => after + 4,
            Reason::Replayed => after + 5,
            Reason::ReplayMemoryFull => after + 6,
            Reason::Unverifiable => after + 7,
            Reason::SigningIdNotAllowed => after + 8,
            Reason::DeviceIdRequired => after + 9,
            Reason::SdkTooOld => after + 10,
        }
    }

    /// `invalid_signature`, `bad_format:created_at`...
    pub fn name(self) -> String {
        match self {
            Reason::MissingSignature => "missing_signature".into(),
            Reason::InvalidSignature => "invalid_signature".into(),
            Reason::BadFormat(f) => format!("bad_format:{}", f.name()),
            Reason::DuplicateParam => "duplicate_param".into(),
            Reason::WrongDeviceId => "wrong_device_id".into(),
            Reason::UnsignedField => "unsigned_field".into(),
            Reason::AppSecretInRequest => "app_secret_in_request".into(),
            Reason::Stale => "stale".into(),
            Reason::Replayed => "replayed".into(),
            Reason::ReplayMemoryFull => "replay_memory_full".into(),
            Reason::Unverifiable => "unverifiable_signature".into(),
            Reason::SigningIdNotAllowed => "signing_id_not_allowed".into(),
            Reason::DeviceIdRequired => "device_id_required".into(),
            Reason::SdkTooOld => "sdk_too_old".into(),
        }
    }

    /// The name usable in a metric (no colon).
    pub fn metric_name(self) -> String {
        self.name().replace(':', "_")
    }
}

/// A parsed `Authorization: Signature ...` header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Header<'a> {
    /// The legacy scheme: verifiable here.
    Legacy {
        secret_id: u32,
        /// Lower-case hex, 64 characters.
        signature: String,
        /// Field names in the order their values were concatenated (borrowed from
        /// the header: no allocation per name).
        headers: Vec<&'a str>,
    },
    /// A later shape (closed signature library, SDK v5): not verifiable here, but
    /// complete: `signature`, `algorithm`, `headers_id` and a signing id.
    Later {
        algorithm: &'a str,
        /// `adj_signing_id`, else `secret_id`.
        signing_id: &'a str,
    },
}

const KEYS: [&str; 7] = [
    "secret_id",
    "signature",
    "algorithm",
    "headers",
    "headers_id",
    "adj_signing_id",
    "native_version",
];

/// Does an `Authorization` value use the `Signature` scheme (whatever follows)?
pub fn names_signature(value: &[u8]) -> bool {
    (crate::request::trim(value).get(..10)).is_some_and(|p| p.eq_ignore_ascii_case(b"signature "))
}

/// Parses the value of an `Authorization` header whose scheme is `Signature`.
/// `None` if the scheme is not `Signature` (not a signature at all).
pub fn parse_header(value: &[u8]) -> Option<Result<Header<'_>, Reason>> {
    let bad = Err(Reason::BadFormat(Field::Authorization));
    let v = crate::request::trim(value);
    let rest = v.get(10..).filter(|_| names_signature(v))?;
    let mut found: [Option<&str>; 7] = [None; 7];
    // Items `key="value"` split at `,`. Every byte that is not ASCII is in a key
    // (no key matches) or a value (which must be UTF-8): the header is refused
    // unless it is UTF-8 text.
    for item in rest.split(|&b| b == b',') {
        let item = crate::request::trim(item);
        let Some(eq) = item.iter().position(|&b| b == b'=') else {
            return Some(bad);
        };
        let (k, v) = (&item[..eq], &item[eq + 1..]);
        let Some(slot) = KEYS.iter().position(|x| x.as_bytes() == k) else {
            return Some(bad);
        };
        let [b'"', v @ .., b'"'] = v else {
            return Some(bad);
        };
        if v.contains(&b'"') || found[slot].is_some() {
            return Some(bad);
        }
        let Ok(v) = std::str::from_utf8(v) else {
            return Some(bad);
        };
        found[slot] = Some(v);
    }
    let [secret_id, signature, algorithm, headers, headers_id, adj_signing_id, native_version] =
        found;
    let Some(algorithm) = algorithm else {
        return Some(bad);
    };
    let later = headers_id.is_some() || adj_signing_id.is_some() || native_version.is_some();
    // `SHA256` is the legacy scheme spelt otherwise, never a later shape.
    let legacy = algorithm.eq_ignore_ascii_case("sha256");
    if legacy && (later || algorithm != "sha256") {
        return Some(bad);
    }
    if !legacy {
        // A later shape must be complete to be recognised at all.
        let signing_id = adj_signing_id.or(secret_id).filter(|s| !s.is_empty());
        let complete = signature.is_some_and(|s| !s.is_empty())
            && headers_id.is_some_and(|h| !h.is_empty())
            && headers.is_none()
            && !algorithm.is_empty()
            && algorithm.bytes().all(|b| b.is_ascii_alphanumeric());
        return Some(match (signing_id, complete) {
            (Some(id), true) => Ok(Header::Later {
                algorithm,
                signing_id: id,
            }),
            _ => bad,
        });
    }
    let (Some(secret_id), Some(signature), Some(headers)) = (secret_id, signature, headers) else {
        return Some(bad);
    };
    // Digits only: `+2` is not Secret ID 2.
    let secret_id = match secret_id.parse::<u32>() {
        Ok(n)
            if n >= 1
                && !secret_id.starts_with('0')
                && secret_id.bytes().all(|b| b.is_ascii_digit()) =>
        {
            n
        }
        _ => return Some(Err(Reason::BadFormat(Field::SecretId))),
    };
    if signature.len() != 64 || !signature.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Some(Err(Reason::BadFormat(Field::Signature)));
    }
    let names: Vec<&str> = headers.split(' ').collect();
    if names.iter().any(|n| n.is_empty()) {
        return Some(Err(Reason::BadFormat(Field::Headers)));
    }
    Some(Ok(Header::Legacy {
        secret_id,
        signature: signature.to_ascii_lowercase(),
        headers: names,
    }))
}

/// `activity_kind` as the server derives it from the path.
pub fn activity_kind(path: &[u8]) -> Option<&'static str> {
    Some(match path {
        b"/session" => "session",
        b"/event" => "event",
        b"/sdk_click" => "click",
        b"/sdk_info" => "info",
        b"/attribution" => "attribution",
        b"/gdpr_forget_device" => "gdpr",
        b"/ad_revenue" => "ad_revenue",
        b"/third_party_sharing" => "third_party_sharing",
        b"/disable_third_party_sharing" => "disable_third_party_sharing",
        b"/measurement_consent" => "measurement_consent",
        b"/v2/purchase" => "subscription",
        b"/verify" => "purchase_verification",
        _ => return None,
    })
}

/// The device identifiers a signature may cover, with their strict formats.
const DEVICE_IDS: [(&str, IdFormat); 10] = [
    ("gps_adid", IdFormat::Uuid),
    ("fire_adid", IdFormat::Uuid),
    ("android_id", IdFormat::Hex(1, 16)),
    ("mac_sha1", IdFormat::Hex(40, 40)),
    ("mac_md5", IdFormat::Hex(32, 32)),
    ("android_uuid", IdFormat::Uuid),
    ("idfa", IdFormat::Uuid),
    ("persistent_ios_uuid", IdFormat::Uuid),
    ("ios_uuid", IdFormat::Uuid),
    ("random_token", IdFormat::Uuid),
];

#[derive(Debug, Clone, Copy)]
enum IdFormat {
    Uuid,
    Hex(usize, usize),
}

/// Which signing SDKs send a never-signed id: bits for Android's and iOS's, none
/// for an id no signing SDK sends.
const ANDROID_SDK: u8 = 1;
const IOS_SDK: u8 = 2;

/// Device identifiers a signature never covers, with the SDKs that send them
/// (`oaid`, `imei`, `meid`, `google_app_set_id`: Android's, some through plugins;
/// `idfv`, `fb_anon_id`: iOS's; `external_device_id`, `primary_dedupe_token`: both,
/// set by the app), or none for ids no signing SDK sends (Adjust's `adid`, the
/// web and Windows SDKs' ids). The SDKs send the first kinds unsigned: they read
/// one way (once, clean) but cannot be proven; the others are refused beside a
/// signature.
const UNSIGNED_IDS: [(&str, u8); 17] = [
    ("oaid", ANDROID_SDK),
    ("imei", ANDROID_SDK),
    ("meid", ANDROID_SDK),
    ("imeis", ANDROID_SDK),
    ("meids", ANDROID_SDK),
    ("google_app_set_id", ANDROID_SDK),
    ("idfv", IOS_SDK),
    ("fb_anon_id", IOS_SDK),
    ("external_device_id", ANDROID_SDK | IOS_SDK),
    ("primary_dedupe_token", ANDROID_SDK | IOS_SDK),
    ("adid", 0),
    ("web_uuid", 0),
    ("win_udid", 0),
    ("win_hwid", 0),
    ("win_naid", 0),
    ("win_adid", 0),
    ("device_id", 0),
];

/// The names of every device identifier a signature decision reads: those a
/// signature may cover and those it never does.
pub fn device_id_names() -> impl Iterator<Item = &'static str> {
    (DEVICE_IDS.iter().map(|(n, _)| *n)).chain(UNSIGNED_IDS.iter().map(|(n, _)| *n))
}

/// Sets of device ids as bits: bit `i` for `DEVICE_IDS[i]`, bit `10 + j` for
/// `UNSIGNED_IDS[j]` (tested against [`precedence`] in
/// `id_sets_agree_with_their_definitions`).
type IdSet = u32;
/// Every id an SDK may sign.
const SIGNABLE: IdSet = (1 << DEVICE_IDS.len()) - 1;

/// The never-signed ids whose senders are exactly `sdks` (`exact`) or include one
/// of them.
const fn unsigned_sent_by(sdks: u8, exact: bool) -> IdSet {
    let mut set = 0;
    let mut j = 0;
    while j < UNSIGNED_IDS.len() {
        let f = UNSIGNED_IDS[j].1;
        if (exact && f == sdks) || (!exact && f & sdks != 0) {
            set |= 1 << (DEVICE_IDS.len() + j);
        }
        j += 1;
    }
    set
}
/// The never-signed ids each platform's SDKs send (some both platforms' do)...
const ANDROID_UNSIGNED: IdSet = unsigned_sent_by(ANDROID_SDK, false);
const IOS_UNSIGNED: IdSet = unsigned_sent_by(IOS_SDK, false);
/// ... those only one platform's send...
const ANDROID_ONLY: IdSet = unsigned_sent_by(ANDROID_SDK, true);
const IOS_ONLY: IdSet = unsigned_sent_by(IOS_SDK, true);
/// ... and those no signing SDK sends.
const NO_PLATFORM: IdSet = unsigned_sent_by(0, true);
/// Per signable id: the ids some SDK version of its platform ranks after it (an
/// SDK that signed it may have sent them too).
const RANKED_AFTER: [IdSet; 10] = [0x3E, 0x3C, 0x38, 0x30, 0x20, 0, 0x380, 0x100, 0, 0];

/// The index of a never-signed device id in [`UNSIGNED_IDS`].
fn unsigned_index(name: &[u8]) -> Option<usize> {
    Some(match name {
        b"oaid" => 0,
        b"imei" => 1,
        b"meid" => 2,
        b"imeis" => 3,
        b"meids" => 4,
        b"google_app_set_id" => 5,
        b"idfv" => 6,
        b"fb_anon_id" => 7,
        b"external_device_id" => 8,
        b"primary_dedupe_token" => 9,
        b"adid" => 10,
        b"web_uuid" => 11,
        b"win_udid" => 12,
        b"win_hwid" => 13,
        b"win_naid" => 14,
        b"win_adid" => 15,
        b"device_id" => 16,
        _ => return None,
    })
}

fn is_device_id(name: &str) -> bool {
    DEVICE_IDS.iter().any(|(n, _)| *n == name)
}

fn valid_id(name: &str, value: &[u8]) -> bool {
    let Some((_, fmt)) = DEVICE_IDS.iter().find(|(n, _)| *n == name) else {
        return false;
    };
    match fmt {
        IdFormat::Uuid => {
            value.len() == 36
                && value.iter().enumerate().all(|(i, b)| match i {
                    8 | 13 | 18 | 23 => *b == b'-',
                    _ => b.is_ascii_hexdigit(),
                })
        }
        IdFormat::Hex(min, max) => {
            (*min..=*max).contains(&value.len()) && value.iter().all(u8::is_ascii_hexdigit)
        }
    }
}

/// Platform and version from `Client-SDK` (`android4.12.0`, `ios4.38.4`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Sdk {
    pub platform: Platform,
    /// (major, minor), if the version could be read.
    pub version: Option<(u32, u32)>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Platform {
    Android,
    Ios,
}

pub fn parse_client_sdk(v: &[u8]) -> Option<Sdk> {
    let s = std::str::from_utf8(v).ok()?.trim();
    // Wrapper SDKs name the native SDK after '@' (`unity4.38.0@android4.38.1`).
    let s = s.rsplit('@').next().unwrap_or(s);
    let (platform, rest) = if let Some(r) = s.strip_prefix("android") {
        (Platform::Android, r)
    } else if let Some(r) = s.strip_prefix("ios") {
        (Platform::Ios, r)
    } else {
        return None;
    };
    let mut parts = rest.split('.');
    let major = parts.next().and_then(|p| p.parse().ok());
    let minor = parts.next().and_then(|p| {
        let digits: String = p.chars().take_while(char::is_ascii_digit).collect();
        digits.parse().ok()
    });
    Some(Sdk {
        platform,
        version: major.zip(minor),
    })
}

/// The SDK's device-id precedence for a platform and version (newest when unknown).
fn precedence(sdk: Sdk) -> &'static [&'static str] {
    let v = sdk.version.unwrap_or((u32::MAX, 0));
    match sdk.platform {
        Platform::Android if v <= (4, 28) => &[
            "gps_adid",
            "fire_adid",
            "android_id",
            "mac_sha1",
            "mac_md5",
            "android_uuid",
        ],
        Platform::Android => &["gps_adid", "fire_adid", "android_id", "android_uuid"],
        Platform::Ios if v <= (4, 27) => &["idfa", "persistent_ios_uuid", "ios_uuid"],
        Platform::Ios if v == (4, 28) => &["idfa", "ios_uuid"],
        Platform::Ios => &["idfa", "random_token"],
    }
}

fn platform_of(device_id: &str) -> Platform {
    match device_id {
        "idfa" | "persistent_ios_uuid" | "ios_uuid" | "random_token" => Platform::Ios,
        _ => Platform::Android,
    }
}

/// Parses `yyyy-MM-dd'T'HH:mm:ss.SSS'Z'Z` (e.g. `2019-01-31T23:59:59.999Z-0500`)
/// strictly, to Unix seconds.
pub fn parse_created_at(v: &[u8]) -> Option<i64> {
    if v.len() != 29 {
        return None;
    }
    // At most four ASCII digits each: no sign, no overflow.
    let digits = |r: std::ops::Range<usize>| -> Option<i64> {
        v.get(r)?.iter().try_fold(0i64, |n, &b| {
            b.is_ascii_digit().then(|| n * 10 + i64::from(b - b'0'))
        })
    };
    let lit = |i: usize, c: u8| v.get(i) == Some(&c);
    if !(lit(4, b'-') && lit(7, b'-') && lit(10, b'T') && lit(13, b':') && lit(16, b':'))
        || !(lit(19, b'.') && lit(23, b'Z'))
    {
        return None;
    }
    let (y, mo, d) = (digits(0..4)?, digits(5..7)?, digits(8..10)?);
    let (h, mi, s) = (digits(11..13)?, digits(14..16)?, digits(17..19)?);
    digits(20..23)?;
    let sign = match v[24] {
        b'+' => 1,
        b'-' => -1,
        _ => return None,
    };
    let (oh, om) = (digits(25..27)?, digits(27..29)?);
    let dim = [
        31,
        if y % 4 == 0 && (y % 100 != 0 || y % 400 == 0) {
            29
        } else {
            28
        },
        31,
        30,
        31,
        30,
        31,
        31,
        30,
        31,
        30,
        31,
    ];
    if !(1..=12).contains(&mo)
        || d < 1
        || d > dim[(mo - 1) as usize]
        || h > 23
        || mi > 59
        || s > 59
        || oh > 14
        || om > 59
    {
        return None;
    }
    // Days from the civil date (Howard Hinnant's algorithm).
    let (yy, m) = if mo <= 2 {
        (y - 1, mo + 9)
    } else {
        (y, mo - 3)
    };
    let era = yy.div_euclid(400);
    let yoe = yy - era * 400;
    let doy = (153 * m + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    let local = days * 86_400 + h * 3600 + mi * 60 + s;
    Some(local - sign * (oh * 3600 + om * 60))
}

/// One App Secret: its Secret ID and the joined secret.
#[derive(Clone, PartialEq, Eq)]
pub struct AppSecret {
    pub id: u32,
    pub secret: Vec<u8>,
    pub active: bool,
    pub name: Option<String>,
    /// The secret's name in the replay memory ([`crate::replay::secret_tag`]).
    pub replay_tag: String,
    /// Longest freshness window (max age + future skew) of the apps using this
    /// secret: how long its accepted signatures are remembered.
    pub replay_window: u64,
    /// Entries per replay key, from the largest capacity of the apps using it.
    pub replay_per_key: usize,
}

impl std::fmt::Debug for AppSecret {
    // Never print the secret.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AppSecret")
            .field("id", &self.id)
            .field("active", &self.active)
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

/// What verification needs of the request.
pub struct Input<'a> {
    pub path: &'a [u8],
    pub client_sdk: Option<&'a [u8]>,
    /// Query and form parameters together (duplicates already refused).
    pub params: &'a [&'a Param<'a>],
    pub now: u64,
    pub max_age: u64,
    pub max_future: u64,
    /// Refuse a signature that covers no device id.
    pub require_device_id: bool,
    /// Oldest SDK accepted per platform, (major, minor).
    pub min_sdk_android: Option<(u32, u32)>,
    pub min_sdk_ios: Option<(u32, u32)>,
}

/// A verified legacy signature.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verified {
    pub secret_id: u32,
    pub created_at: i64,
    pub signature: String,
    /// The signature covers no device id (iOS without tracking consent).
    pub without_device_id: bool,
}

/// Failure with the Secret ID it concerned, if one was read (for statistics).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    pub reason: Reason,
    pub secret_id: Option<u32>,
}

/// The parameters a signature decision reads, found in one pass over the request's
/// (which holds each name once: duplicates are refused before).
#[derive(Default)]
struct Read<'a> {
    /// By index in [`DEVICE_IDS`].
    ids: [Option<&'a [u8]>; DEVICE_IDS.len()],
    /// By index in [`UNSIGNED_IDS`].
    unsigned: [Option<&'a [u8]>; UNSIGNED_IDS.len()],
    created_at: Option<&'a [u8]>,
    activity_kind: Option<&'a [u8]>,
    source: Option<&'a [u8]>,
    payload: Option<&'a [u8]>,
}

impl<'a> Read<'a> {
    fn of(params: &[&'a Param<'a>]) -> Read<'a> {
        let mut r = Read::default();
        for p in params {
            let v = Some(&*p.value);
            let slot = match &*p.name {
                b"created_at" => &mut r.created_at,
                b"activity_kind" => &mut r.activity_kind,
                b"source" => &mut r.source,
                b"payload" => &mut r.payload,
                name => match id_index(name) {
                    Some(i) => &mut r.ids[i],
                    None => match unsigned_index(name) {
                        Some(i) => &mut r.unsigned[i],
                        None => continue,
                    },
                },
            };
            if slot.is_none() {
                *slot = v;
            }
        }
        r
    }

    /// A signable parameter's value by name.
    fn get(&self, name: &str) -> Option<&'a [u8]> {
        match name {
            "created_at" => self.created_at,
            "activity_kind" => self.activity_kind,
            "source" => self.source,
            "payload" => self.payload,
            n => match id_index(n.as_bytes()) {
                Some(i) => self.ids[i],
                None => unsigned_index(n.as_bytes()).and_then(|i| self.unsigned[i]),
            },
        }
    }

    /// The device ids present with a value.
    fn ids_present(&self) -> IdSet {
        let bit = |(i, v): (usize, &Option<&[u8]>)| match v {
            Some(v) if !v.is_empty() => 1 << i,
            _ => 0,
        };
        (self.ids.iter().enumerate().map(bit)).fold(0, |a, b| a | b)
            | (self.unsigned.iter().enumerate().map(bit)).fold(0, |a, b| a | b) << DEVICE_IDS.len()
    }
}

/// 64 lower-case hex digits as 32 bytes.
fn lower_hex_32(v: &[u8]) -> Option<[u8; 32]> {
    let digit = |b: u8| match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        _ => None,
    };
    if v.len() != 64 {
        return None;
    }
    let mut out = [0u8; 32];
    for (o, pair) in out.iter_mut().zip(v.chunks_exact(2)) {
        *o = digit(pair[0])? << 4 | digit(pair[1])?;
    }
    Some(out)
}

fn id_index(name: &[u8]) -> Option<usize> {
    Some(match name {
        b"gps_adid" => 0,
        b"fire_adid" => 1,
        b"android_id" => 2,
        b"mac_sha1" => 3,
        b"mac_md5" => 4,
        b"android_uuid" => 5,
        b"idfa" => 6,
        b"persistent_ios_uuid" => 7,
        b"ios_uuid" => 8,
        b"random_token" => 9,
        _ => return None,
    })
}

/// Verifies a legacy signature against an app's secrets.
pub fn verify(
    secrets: &[AppSecret],
    secret_id: u32,
    signature: &str,
    headers: &[&str],
    input: &Input,
) -> Result<Verified, Failure> {
    let fail = |reason| Failure {
        reason,
        secret_id: Some(secret_id),
    };
    // The names: each once, from the signable set, with the mandatory ones.
    let mut device: Option<&str> = None;
    for (i, &n) in headers.iter().enumerate() {
        let known = matches!(
            n,
            "app_secret" | "created_at" | "activity_kind" | "source" | "payload"
        ) || is_device_id(n);
        if !known || headers[..i].contains(&n) {
            return Err(fail(Reason::BadFormat(Field::Headers)));
        }
        if is_device_id(n) {
            if device.is_some() {
                return Err(fail(Reason::BadFormat(Field::Headers)));
            }
            device = Some(n);
        }
    }
    for must in ["app_secret", "created_at", "activity_kind"] {
        if !headers.contains(&must) {
            return Err(fail(Reason::BadFormat(Field::Headers)));
        }
    }
    if device.is_none() && input.require_device_id {
        return Err(fail(Reason::DeviceIdRequired));
    }

    let read = Read::of(input.params);
    // Strict formats close the missing delimiters.
    let created_raw = read
        .get("created_at")
        .ok_or(fail(Reason::BadFormat(Field::CreatedAt)))?;
    let created_at =
        parse_created_at(created_raw).ok_or(fail(Reason::BadFormat(Field::CreatedAt)))?;
    if let Some(device) = device {
        let device_value = read
            .get(device)
            .ok_or(fail(Reason::BadFormat(Field::DeviceId)))?;
        if !valid_id(device, device_value) {
            return Err(fail(Reason::BadFormat(Field::DeviceId)));
        }
    }
    // Every device id present must be well-formed, or precedence could be dodged.
    for ((name, _), v) in DEVICE_IDS.iter().zip(read.ids) {
        if v.is_some_and(|v| !valid_id(name, v)) {
            return Err(fail(Reason::BadFormat(Field::DeviceId)));
        }
    }
    let activity = activity_kind(input.path).ok_or(fail(Reason::BadFormat(Field::ActivityKind)))?;
    // The kind comes from the path; an unsigned parameter saying otherwise is refused.
    if read
        .get("activity_kind")
        .is_some_and(|v| v != activity.as_bytes())
    {
        return Err(fail(Reason::BadFormat(Field::ActivityKind)));
    }

    // The signed id must be the one the SDK would have picked; with none signed,
    // the request must carry none the SDK would have signed.
    let parsed_sdk = input.client_sdk.and_then(parse_client_sdk);
    let min = |p: Platform| match p {
        Platform::Android => input.min_sdk_android,
        Platform::Ios => input.min_sdk_ios,
    };
    let first_present = |sdk: Sdk| {
        precedence(sdk)
            .iter()
            .find(|n| read.get(n).is_some_and(|v| !v.is_empty()))
            .copied()
    };
    match device {
        Some(device) => {
            let sdk = parsed_sdk.unwrap_or(Sdk {
                platform: platform_of(device),
                version: None,
            });
            if first_present(sdk) != Some(device) {
                return Err(fail(Reason::WrongDeviceId));
            }
        }
        None => {
            // Unknown platform: no id of either platform may be present.
            let platforms: &[Platform] = match parsed_sdk {
                Some(s) => &[s.platform][..],
                None => &[Platform::Android, Platform::Ios][..],
            };
            for p in platforms {
                let version = parsed_sdk.and_then(|s| s.version);
                let sdk = Sdk {
                    platform: *p,
                    version,
                };
                if first_present(sdk).is_some() {
                    return Err(fail(Reason::WrongDeviceId));
                }
            }
        }
    }
    // Client-SDK is unsigned: whatever platform and version it claims, the ids
    // must read one way (a collector serving every platform may look a device up
    // by any id it knows, and an attacker with their own build signs fresh
    // requests). With a signed id: beside it only ids some SDK version of its
    // platform ranks after it, and its platform's never-signed ones. With none:
    // no id any SDK signs, and never-signed ids of one platform only.
    let present = read.ids_present();
    let injected = match device.and_then(|d| id_index(d.as_bytes())) {
        Some(d) => {
            let own = match platform_of(DEVICE_IDS[d].0) {
                Platform::Android => ANDROID_UNSIGNED,
                Platform::Ios => IOS_UNSIGNED,
            };
            present & !(1 << d | RANKED_AFTER[d] | own) != 0
        }
        None => {
            present & (SIGNABLE | NO_PLATFORM) != 0
                || present & ANDROID_ONLY != 0 && present & IOS_ONLY != 0
        }
    };
    if injected {
        return Err(fail(Reason::WrongDeviceId));
    }
    // The app's minimum SDK: Client-SDK is unsigned, so an old version could be
    // claimed to use the old rules; once installs moved on, refuse them.
    let platform = parsed_sdk.map(|s| s.platform).or(device.map(platform_of));
    let needs_min = match platform {
        Some(p) => min(p),
        None => input.min_sdk_android.or(input.min_sdk_ios),
    };
    if let Some(m) = needs_min {
        if parsed_sdk.and_then(|s| s.version).is_none_or(|v| v < m) {
            return Err(fail(Reason::SdkTooOld));
        }
    }
    let sdk = parsed_sdk.unwrap_or(Sdk {
        platform: platform.unwrap_or(Platform::Ios),
        version: None,
    });
    // SDK 4.18+ signs source and payload when present; unknown version: same.
    let signs_extra = sdk.version.is_none_or(|v| v >= (4, 18));
    for (name, field) in [("source", Field::Source), ("payload", Field::Payload)] {
        let present = read.get(name).is_some_and(|v| !v.is_empty());
        let signed = headers.contains(&name);
        if signed && !present {
            return Err(fail(Reason::BadFormat(field)));
        }
        if present && !signed && signs_extra {
            return Err(fail(Reason::UnsignedField));
        }
    }

    // The secret: unknown or deactivated is an invalid signature.
    let Some(secret) = secrets.iter().find(|s| s.id == secret_id && s.active) else {
        return Err(fail(Reason::InvalidSignature));
    };
    let mut h = Sha256::new();
    for &n in headers {
        match n {
            "app_secret" => h.update(&secret.secret),
            "activity_kind" => h.update(activity.as_bytes()),
            other => h.update(read.get(other).unwrap_or_default()),
        }
    }
    // The SDK sends the digest in lower-case hex: compared as bytes, in constant
    // time (any other spelling cannot match).
    let computed = h.finalize();
    let matches = lower_hex_32(signature.as_bytes())
        .is_some_and(|sent| bool::from(computed.as_slice().ct_eq(&sent)));
    if !matches {
        return Err(fail(Reason::InvalidSignature));
    }
    // Freshness, after the signature: a stale but genuine request is reported so.
    let now = input.now as i64;
    if created_at > now + input.max_future as i64 || now - created_at > input.max_age as i64 {
        return Err(fail(Reason::Stale));
    }
    Ok(Verified {
        secret_id,
        created_at,
        signature: signature.to_string(),
        without_device_id: device.is_none(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn id_sets_agree_with_their_definitions() {
        let bit = |n: &str| -> IdSet {
            let i = (DEVICE_IDS.iter().position(|(x, _)| *x == n))
                .or_else(|| (UNSIGNED_IDS.iter().position(|(x, _)| *x == n)).map(|j| 10 + j))
                .unwrap();
            1 << i
        };
        assert_eq!(DEVICE_IDS.len(), 10);
        assert!(DEVICE_IDS.len() + UNSIGNED_IDS.len() <= IdSet::BITS as usize);
        for (i, (n, _)) in DEVICE_IDS.iter().enumerate() {
            assert_eq!(id_index(n.as_bytes()), Some(i));
        }
        for (i, (n, _)) in UNSIGNED_IDS.iter().enumerate() {
            assert_eq!(unsigned_index(n.as_bytes()), Some(i));
        }
        assert_eq!(DEVICE_IDS.iter().fold(0, |a, (n, _)| a | bit(n)), SIGNABLE);
        let sent_by = |f: u8| {
            (UNSIGNED_IDS.iter().filter(|(_, g)| *g & f != 0)).fold(0, |a, (n, _)| a | bit(n))
        };
        let only =
            |f: u8| (UNSIGNED_IDS.iter().filter(|(_, g)| *g == f)).fold(0, |a, (n, _)| a | bit(n));
        assert_eq!(sent_by(ANDROID_SDK), ANDROID_UNSIGNED);
        assert_eq!(sent_by(IOS_SDK), IOS_UNSIGNED);
        assert_eq!(only(ANDROID_SDK), ANDROID_ONLY);
        assert_eq!(only(IOS_SDK), IOS_ONLY);
        assert_eq!(only(0), NO_PLATFORM);
        assert_eq!(ANDROID_ONLY & IOS_UNSIGNED, 0);
        assert_eq!(
            SIGNABLE & (ANDROID_UNSIGNED | IOS_UNSIGNED | NO_PLATFORM),
            0
        );
        assert_eq!(ANDROID_UNSIGNED & IOS_UNSIGNED, only(ANDROID_SDK | IOS_SDK));
        // Every precedence an SDK version has had (versions on both sides of each
        // change, and none).
        let versions = [
            None,
            Some((4, 12)),
            Some((4, 27)),
            Some((4, 28)),
            Some((4, 29)),
            Some((5, 0)),
        ];
        for (d, (name, _)) in DEVICE_IDS.iter().enumerate() {
            let mut after = 0;
            for version in versions {
                let list = precedence(Sdk {
                    platform: platform_of(name),
                    version,
                });
                if let Some(i) = list.iter().position(|n| n == name) {
                    after |= list[i + 1..].iter().fold(0, |a, n| a | bit(n));
                }
            }
            assert_eq!(after, RANKED_AFTER[d], "{name}");
        }
    }

    #[test]
    fn lower_hex_reads_exactly_what_hex_encode_writes() {
        let d: [u8; 32] = std::array::from_fn(|i| (i * 37 + 5) as u8);
        assert_eq!(lower_hex_32(hex::encode(d).as_bytes()), Some(d));
        assert_eq!(lower_hex_32(hex::encode_upper(d).as_bytes()), None);
        assert_eq!(lower_hex_32(&hex::encode(d).as_bytes()[1..]), None);
        assert_eq!(
            lower_hex_32(format!("{}0", hex::encode(d)).as_bytes()),
            None
        );
        assert_eq!(lower_hex_32(&[b'g'; 64]), None);
    }

    #[test]
    fn header_shapes() {
        let legacy = br#"Signature secret_id="1",signature="ABCDEF0123456789abcdef0123456789abcdef0123456789abcdef0123456789",algorithm="sha256",headers="created_at gps_adid app_secret activity_kind""#;
        match parse_header(legacy) {
            Some(Ok(Header::Legacy {
                secret_id,
                signature,
                headers,
            })) => {
                assert_eq!(secret_id, 1);
                assert!(signature.starts_with("abcdef"));
                assert_eq!(headers.len(), 4);
            }
            other => panic!("{other:?}"),
        }
        let later = br#"Signature signature="x",secret_id="3",algorithm="adj1",headers_id="1",native_version="2.1""#;
        assert_eq!(
            parse_header(later),
            Some(Ok(Header::Later {
                algorithm: "adj1",
                signing_id: "3"
            }))
        );
        // Later shapes must be complete; SHA256 is the legacy scheme, never later.
        for incomplete in [
            &br#"Signature algorithm="adj1""#[..],
            br#"Signature adj_signing_id="7",algorithm="adj1""#,
            br#"Signature signature="x",algorithm="adj1",headers_id="1""#,
            br#"Signature signature="",adj_signing_id="7",algorithm="adj1",headers_id="1""#,
            br#"Signature signature="x",adj_signing_id="7",algorithm="a-b",headers_id="1""#,
            br#"Signature secret_id="1",signature="x",algorithm="SHA256",headers="created_at""#,
            br#"Signature secret_id="1",signature="x",algorithm="sha256",headers_id="1""#,
        ] {
            assert_eq!(
                parse_header(incomplete),
                Some(Err(Reason::BadFormat(Field::Authorization))),
                "{}",
                String::from_utf8_lossy(incomplete)
            );
        }
        let bad = Some(Err(Reason::BadFormat(Field::Authorization)));
        assert_eq!(
            parse_header(br#"Signature secret_id="1",secret_id="2",algorithm="sha256""#),
            bad
        );
        assert_eq!(parse_header(br#"Signature secret_id="1""#), bad);
        assert_eq!(
            parse_header(br#"Signature foo="1",algorithm="sha256""#),
            bad
        );
        assert_eq!(parse_header(b"Signature \xff"), bad);
        // Bytes that are not UTF-8 in a value, or in a key.
        assert_eq!(
            parse_header(b"Signature secret_id=\"1\xff\",algorithm=\"sha256\""),
            bad
        );
        assert_eq!(
            parse_header(b"Signature secret_id\xff=\"1\",algorithm=\"sha256\""),
            bad
        );
        assert_eq!(parse_header(b"Bearer x"), None);
        assert_eq!(
            parse_header(
                br#"Signature secret_id="01",signature="aa",algorithm="sha256",headers="a""#
            ),
            Some(Err(Reason::BadFormat(Field::SecretId)))
        );
        for id in ["+2", "-2", " 2", "2 ", "0x2"] {
            let h = format!(
                r#"Signature secret_id="{id}",signature="{}",algorithm="sha256",headers="created_at""#,
                "a".repeat(64)
            );
            assert_eq!(
                parse_header(h.as_bytes()),
                Some(Err(Reason::BadFormat(Field::SecretId))),
                "{id}"
            );
        }
    }

    #[test]
    fn created_at_is_strict() {
        assert_eq!(parse_created_at(b"1970-01-01T00:00:00.000Z+0000"), Some(0));
        assert_eq!(
            parse_created_at(b"2019-01-31T23:59:59.999Z-0500"),
            Some(1_548_997_199)
        );
        assert_eq!(
            parse_created_at(b"2019-01-31T23:59:59.999Z+0100"),
            Some(1_548_975_599)
        );
        assert_eq!(parse_created_at(b"2019-02-29T00:00:00.000Z+0000"), None);
        assert_eq!(parse_created_at(b"2019-01-31T23:59:59.99Z-05000"), None);
        assert_eq!(parse_created_at(b"2019-01-31 23:59:59.999Z-0500"), None);
        assert_eq!(parse_created_at(b"2019-01-31T23:59:59.999Z-05:0"), None);
    }

    #[test]
    fn device_id_formats() {
        assert!(valid_id(
            "gps_adid",
            b"11110111-2345-6789-1122-000000005678"
        ));
        assert!(!valid_id(
            "gps_adid",
            b"11110111-2345-6789-1122-00000000567"
        ));
        assert!(valid_id("android_id", b"9774d56d682e549c"));
        assert!(!valid_id("android_id", b"9774d56d682e549c0"));
        assert!(!valid_id("android_id", b""));
        assert!(valid_id("mac_md5", &[b'a'; 32]));
        assert!(!valid_id("idfv", b"11110111-2345-6789-1122-000000005678"));
    }

    #[test]
    fn client_sdk_versions() {
        assert_eq!(
            parse_client_sdk(b"android4.12.0"),
            Some(Sdk {
                platform: Platform::Android,
                version: Some((4, 12))
            })
        );
        assert_eq!(
            parse_client_sdk(b"ios4.38.4"),
            Some(Sdk {
                platform: Platform::Ios,
                version: Some((4, 38))
            })
        );
        assert_eq!(
            parse_client_sdk(b"unity4.38.0@android4.38.1"),
            Some(Sdk {
                platform: Platform::Android,
                version: Some((4, 38))
            })
        );
        assert_eq!(parse_client_sdk(b"flutter1.0"), None);
        assert_eq!(
            precedence(parse_client_sdk(b"ios4.28.0").unwrap()),
            &["idfa", "ios_uuid"]
        );
    }
}
