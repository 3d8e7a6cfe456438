//! Credential extraction: where a route allows a token, find it, and refuse to
//! choose when there is more than one.

use std::borrow::Cow;

use base64::Engine as _;
use smallvec::{smallvec, SmallVec};

use crate::policy::{Route, Source};
use crate::request::{trim, Param, RequestView};

/// Longest credential considered; a longer one is refused without hashing it.
pub const MAX_CREDENTIAL_LEN: usize = 4096;

/// Where a credential was found, so it can be stripped before forwarding.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Location {
    /// `Authorization`, to remove entirely.
    Authorization,
    /// Another header to remove entirely (`x-auth-token`...).
    Header(crate::policy::Name),
    /// A query pair (byte span in the raw query).
    Query((usize, usize)),
    /// A form-body pair (byte span in the raw body).
    Form((usize, usize)),
}

/// The result of looking for a credential.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Extracted<'a> {
    /// Nothing usable (including `Bearer` with no token, or an empty parameter).
    Missing,
    /// One value, possibly found in several places (all to be stripped); borrowed
    /// from the request unless it had to be decoded (Basic, escapes).
    One {
        value: Cow<'a, [u8]>,
        locations: Locations,
    },
    /// Two different values, or a header sent twice: never pick one.
    Ambiguous,
    /// A credential was presented but cannot be a token (undecodable Basic, too long).
    Malformed { locations: Locations },
}

/// Where a credential was found: almost always one place, kept inline.
pub type Locations = SmallVec<[Location; 2]>;

/// What one source yielded.
enum Hit<'a> {
    None,
    /// The value and every place it was found.
    Value(Cow<'a, [u8]>, Locations),
    Ambiguous,
    Malformed(Location),
}

/// The parts of `Authorization` a token source reads.
enum AuthValue<'a> {
    Bearer(&'a [u8]),
    Basic(&'a [u8]),
    /// `Signature ...`: for signature verification, never a token.
    Signature,
    /// No scheme, or an unknown one: the whole value (Swaarm's raw token).
    Raw(&'a [u8]),
}

/// Is an `Authorization` value an SDK signature (`Signature ...`)? Never a token
/// to any source: not a credential to strip.
pub fn is_signature(value: &[u8]) -> bool {
    matches!(parse_authorization(value), AuthValue::Signature)
}

fn parse_authorization(value: &[u8]) -> AuthValue<'_> {
    let v = trim(value);
    let split = v.iter().position(|&b| b == b' ' || b == b'\t');
    let (scheme, rest) = match split {
        Some(i) => (&v[..i], trim(&v[i..])),
        None => (v, &[][..]),
    };
    if scheme.eq_ignore_ascii_case(b"bearer") {
        AuthValue::Bearer(rest)
    } else if scheme.eq_ignore_ascii_case(b"basic") {
        AuthValue::Basic(rest)
    } else if scheme.eq_ignore_ascii_case(b"signature") {
        AuthValue::Signature
    } else {
        AuthValue::Raw(v)
    }
}

/// The single `Authorization` value, or `Err` when it is ambiguous: sent twice, or
/// (as Envoy coalesces a repeated Authorization into one value joined by `,`) a
/// token value containing a comma, which no token scheme allows.
fn authorization(view: &RequestView) -> Result<Option<&[u8]>, ()> {
    let value = view.header_once("authorization").map_err(|_| ())?;
    match value {
        Some(v) if v.contains(&b',') && !matches!(parse_authorization(v), AuthValue::Signature) => {
            Err(())
        }
        other => Ok(other),
    }
}

fn from_source<'a>(
    source: &'a Source,
    view: &'a RequestView,
    query: &'a [Param<'a>],
    form: Option<&'a [Param<'a>]>,
) -> Hit<'a> {
    let auth_loc = || Location::Authorization;
    match source {
        Source::Bearer | Source::Authorization | Source::Basic => {
            let Ok(auth) = authorization(view) else {
                return Hit::Ambiguous;
            };
            let Some(auth) = auth else { return Hit::None };
            match (source, parse_authorization(auth)) {
                (Source::Bearer, AuthValue::Bearer(t))
                | (Source::Authorization, AuthValue::Raw(t)) => {
                    if t.is_empty() {
                        Hit::None
                    } else {
                        Hit::Value(Cow::Borrowed(t), smallvec![auth_loc()])
                    }
                }
                (Source::Basic, AuthValue::Basic(b64)) => match decode_basic_user(b64) {
                    Some(user) if user.is_empty() => Hit::None,
                    Some(user) => Hit::Value(Cow::Owned(user), smallvec![auth_loc()]),
                    None => Hit::Malformed(auth_loc()),
                },
                _ => Hit::None,
            }
        }
        Source::Header(name) => match view.header_once(name) {
            Err(_) => {
                // The same value twice is one credential; different values are not.
                let mut values = view.header_values(name).map(trim).filter(|v| !v.is_empty());
                let first = values.next();
                match first {
                    Some(f) if values.all(|v| v == f) => {
                        Hit::Value(Cow::Borrowed(f), smallvec![Location::Header(name.clone())])
                    }
                    Some(_) => Hit::Ambiguous,
                    None => Hit::None,
                }
            }
            Ok(Some(v)) if !trim(v).is_empty() => Hit::Value(
                Cow::Borrowed(trim(v)),
                smallvec![Location::Header(name.clone())],
            ),
            Ok(_) => Hit::None,
        },
        Source::Query(name) => {
            params_hit(query.iter().filter(|p| p.name == *name), Location::Query)
        }
        Source::QueryPrefix(prefix) => params_hit(
            query.iter().filter(|p| p.name.starts_with(prefix)),
            Location::Query,
        ),
        Source::Form(name) => match form {
            Some(form) => params_hit(form.iter().filter(|p| p.name == *name), Location::Form),
            None => Hit::None,
        },
    }
}

/// All non-empty values of matching parameters must agree; every pair carrying the
/// value is reported so that all copies are stripped.
fn params_hit<'a>(
    params: impl Iterator<Item = &'a Param<'a>>,
    loc: fn((usize, usize)) -> Location,
) -> Hit<'a> {
    let mut found: Option<&'a [u8]> = None;
    let mut spans = Locations::new();
    for p in params {
        if p.value.is_empty() {
            continue;
        }
        match found {
            None => found = Some(&p.value),
            Some(v) if v == &*p.value => {}
            Some(_) => return Hit::Ambiguous,
        }
        spans.push(loc(p.span));
    }
    match found {
        Some(v) => Hit::Value(Cow::Borrowed(v), spans),
        None => Hit::None,
    }
}

fn decode_basic_user(b64: &[u8]) -> Option<Vec<u8>> {
    let engines = [
        base64::engine::general_purpose::STANDARD,
        base64::engine::general_purpose::STANDARD_NO_PAD,
    ];
    let raw = engines.iter().find_map(|e| e.decode(b64).ok())?;
    let user = match raw.iter().position(|&b| b == b':') {
        Some(i) => &raw[..i],
        None => &raw[..],
    };
    Some(user.to_vec())
}

/// Looks for the credential in every source the route allows. Every location of
/// the chosen value is reported, so that all copies can be stripped; the same value
/// in several places is one credential, different values are [`Extracted::Ambiguous`].
pub fn extract<'a>(
    route: &'a Route,
    view: &'a RequestView,
    query: &'a [Param<'a>],
    form: Option<&'a [Param<'a>]>,
) -> Extracted<'a> {
    let mut value: Option<Cow<'a, [u8]>> = None;
    let mut locations = Locations::new();
    let mut malformed = Locations::new();
    for source in &route.sources {
        match from_source(source, view, query, form) {
            Hit::None => {}
            Hit::Ambiguous => return Extracted::Ambiguous,
            Hit::Malformed(loc) => malformed.push(loc),
            Hit::Value(v, locs) => {
                match &value {
                    None => value = Some(v),
                    Some(existing) if *existing == v => {}
                    Some(_) => return Extracted::Ambiguous,
                }
                for loc in locs {
                    if !locations.contains(&loc) {
                        locations.push(loc);
                    }
                }
            }
        }
    }
    match value {
        Some(_) if !malformed.is_empty() => Extracted::Ambiguous,
        Some(v) if v.len() > MAX_CREDENTIAL_LEN => Extracted::Malformed { locations },
        Some(v) => Extracted::One {
            value: v,
            locations,
        },
        None if !malformed.is_empty() => Extracted::Malformed {
            locations: malformed,
        },
        None => Extracted::Missing,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::request::parse_params;

    fn view(headers: &[(&str, &[u8])], path: &str) -> RequestView {
        RequestView {
            has_body: false,
            trailers: Vec::new(),
            method: b"GET".to_vec(),
            path: path.as_bytes().to_vec(),
            authority: Vec::new(),
            headers: headers
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_vec()))
                .collect(),
        }
    }

    fn route(sources: Vec<Source>) -> Route {
        let p = crate::config::parse(br#"{"routes":[{"path":"/x","profile":"adjust"}]}"#).unwrap();
        Route {
            sources,
            ..p.routes[0].clone()
        }
    }

    fn run(r: &Route, v: &RequestView) -> Extracted<'static> {
        let q = parse_params(v.raw_query());
        match extract(r, v, &q, None) {
            Extracted::One { value, locations } => Extracted::One {
                value: Cow::Owned(value.into_owned()),
                locations,
            },
            Extracted::Missing => Extracted::Missing,
            Extracted::Ambiguous => Extracted::Ambiguous,
            Extracted::Malformed { locations } => Extracted::Malformed { locations },
        }
    }

    fn one(value: &[u8]) -> Cow<'static, [u8]> {
        Cow::Owned(value.to_vec())
    }

    #[test]
    fn bearer_casing_and_spacing() {
        let r = route(vec![Source::Bearer]);
        for h in [
            &b"Bearer abc"[..],
            b"bearer abc",
            b"BEARER   abc  ",
            b"\tBearer\tabc",
        ] {
            match run(&r, &view(&[("authorization", h)], "/x")) {
                Extracted::One { value, .. } => assert_eq!(value, one(b"abc")),
                other => panic!("{h:?}: {other:?}"),
            }
        }
        assert_eq!(
            run(&r, &view(&[("authorization", b"Bearer")], "/x")),
            Extracted::Missing
        );
        assert_eq!(
            run(&r, &view(&[("authorization", b"Bearer ")], "/x")),
            Extracted::Missing
        );
        assert_eq!(
            run(&r, &view(&[("authorization", b"abc")], "/x")),
            Extracted::Missing
        );
        assert_eq!(
            run(&r, &view(&[("authorization", b"Bearer a,Bearer b")], "/x")),
            Extracted::Ambiguous
        );
        assert_eq!(
            run(
                &r,
                &view(
                    &[
                        ("authorization", b"Bearer a"),
                        ("authorization", b"Bearer a")
                    ],
                    "/x"
                )
            ),
            Extracted::Ambiguous
        );
    }

    #[test]
    fn signature_is_never_a_token() {
        let r = route(vec![Source::Bearer, Source::Authorization]);
        let sig = br#"Signature secret_id="1",signature="ab",algorithm="sha256",headers="a b""#;
        assert_eq!(
            run(&r, &view(&[("authorization", sig)], "/x")),
            Extracted::Missing
        );
    }

    #[test]
    fn basic_user_is_the_token() {
        let r = route(vec![Source::Basic]);
        // "tok:" and "tok" (no colon)
        for h in [&b"Basic dG9rOg=="[..], b"Basic dG9r", b"basic dG9rOnB3"] {
            match run(&r, &view(&[("authorization", h)], "/x")) {
                Extracted::One { value, .. } => assert_eq!(value, one(b"tok")),
                other => panic!("{other:?}"),
            }
        }
        assert!(matches!(
            run(&r, &view(&[("authorization", b"Basic !!!")], "/x")),
            Extracted::Malformed { .. }
        ));
    }

    #[test]
    fn same_value_twice_is_one_different_is_ambiguous() {
        let r = route(vec![
            Source::Authorization,
            Source::Query(b"s2s_token".to_vec()),
        ]);
        match run(&r, &view(&[("authorization", b"t1")], "/x?s2s_token=t1")) {
            Extracted::One { locations, .. } => assert_eq!(locations.len(), 2),
            other => panic!("{other:?}"),
        }
        assert_eq!(
            run(&r, &view(&[("authorization", b"t1")], "/x?s2s_token=t2")),
            Extracted::Ambiguous
        );
        assert_eq!(
            run(&r, &view(&[], "/x?s2s_token=a&s2s_token=b")),
            Extracted::Ambiguous
        );
        assert!(
            matches!(run(&r, &view(&[], "/x?s2s_token=%61")), Extracted::One { value, .. } if *value == *b"a")
        );
        assert_eq!(run(&r, &view(&[], "/x?s2s_token=")), Extracted::Missing);
    }

    #[test]
    fn query_prefix_and_headers() {
        let r = route(vec![
            Source::QueryPrefix(b"p_".to_vec()),
            Source::Header("x-auth-token".into()),
        ]);
        assert!(
            matches!(run(&r, &view(&[], "/x?a=1&p_abc=k"), ), Extracted::One { value, .. } if *value == *b"k")
        );
        assert_eq!(run(&r, &view(&[], "/x?p_a=k&p_b=j")), Extracted::Ambiguous);
        assert!(
            matches!(run(&r, &view(&[("x-auth-token", b" k ")], "/x")), Extracted::One { value, .. } if *value == *b"k")
        );
        assert_eq!(
            run(
                &r,
                &view(&[("x-auth-token", b"k"), ("x-auth-token", b"j")], "/x")
            ),
            Extracted::Ambiguous
        );
    }

    #[test]
    fn huge_credentials_are_malformed() {
        let r = route(vec![Source::Bearer]);
        let mut h = b"Bearer ".to_vec();
        h.extend(std::iter::repeat_n(b'a', MAX_CREDENTIAL_LEN + 1));
        assert!(matches!(
            run(&r, &view(&[("authorization", &h)], "/x")),
            Extracted::Malformed { .. }
        ));
    }
}
