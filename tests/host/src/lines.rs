//! Request lines (JSON Lines) as the host's commands read them: `name`, `method`,
//! `path` (with query), `headers` (an object, or an array of `[name, value]` pairs
//! for repeated headers), `body` (text) or `body_base64`, optional `worker`,
//! optional `advance_ms` (virtual time to pass before the request), optional
//! `protocol` (`"http1.1"`, the default, or `"http2"`), optional `trailers` (like
//! `headers`; Envoy's HTTP/1.1 codec drops them), optional `chunk_size` (deliver the
//! body in pieces of this many bytes), optional `authority`.

use serde_json::Value;

use crate::{Headers, Protocol, Request};

/// One request line, with its name and options.
pub struct Line {
    pub name: String,
    pub request: Request,
    pub worker: Option<usize>,
    pub advance_ms: u64,
}

pub fn read_requests(path: &str) -> Result<Vec<Line>, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("cannot read {path}: {e}"))?;
    let mut out = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let v: Value =
            serde_json::from_str(line).map_err(|e| format!("{path}:{}: not JSON: {e}", n + 1))?;
        out.push(parse_line(&v).map_err(|e| format!("{path}:{}: {e}", n + 1))?);
    }
    Ok(out)
}

pub fn parse_line(v: &Value) -> Result<Line, String> {
    let s = |k: &str| v.get(k).and_then(Value::as_str);
    let method = s("method").unwrap_or("GET");
    let path = s("path").ok_or("missing \"path\"")?;
    let mut req = Request::new(method, path);
    for (k, val) in parse_headers(v, "headers")? {
        req = req.header(&k, val);
    }
    for (k, val) in parse_headers(v, "trailers")? {
        req = req.trailer(&k, val);
    }
    match v.get("protocol") {
        None | Some(Value::Null) => {}
        Some(Value::String(p)) => {
            req.protocol = match p.to_ascii_lowercase().as_str() {
                "http1.1" | "http/1.1" | "http11" => Protocol::Http11,
                "http2" | "http/2" | "h2" => Protocol::Http2,
                _ => return Err(format!("unknown \"protocol\" {p:?} (http1.1 or http2)")),
            }
        }
        Some(_) => return Err("\"protocol\" must be a string".into()),
    }
    match v.get("chunk_size") {
        None | Some(Value::Null) => {}
        Some(n) => {
            let n = n
                .as_u64()
                .filter(|n| *n > 0)
                .ok_or("\"chunk_size\" must be a positive number")?;
            req = req.chunked(n as usize);
        }
    }
    if let Some(b) = s("body") {
        req = req.body(b);
    }
    if let Some(b) = s("body_base64") {
        req = req.body(decode_base64(b).ok_or("body_base64 is not base64")?);
    }
    if let Some(a) = s("authority") {
        req.authority = a.to_string();
    }
    Ok(Line {
        name: s("name").unwrap_or(path).to_string(),
        request: req,
        worker: v.get("worker").and_then(Value::as_u64).map(|w| w as usize),
        advance_ms: v.get("advance_ms").and_then(Value::as_u64).unwrap_or(0),
    })
}

/// A header or trailer list: an object, or an array of `[name, value]` pairs (for
/// repeated names).
fn parse_headers(v: &Value, field: &str) -> Result<Headers, String> {
    let mut out = Vec::new();
    match v.get(field) {
        None | Some(Value::Null) => {}
        Some(Value::Object(m)) => {
            for (k, val) in m {
                let val = val
                    .as_str()
                    .ok_or(format!("{field} values must be strings"))?;
                out.push((k.clone(), val.as_bytes().to_vec()));
            }
        }
        Some(Value::Array(a)) => {
            for pair in a {
                let (Some(k), Some(val)) = (
                    pair.get(0).and_then(Value::as_str),
                    pair.get(1).and_then(Value::as_str),
                ) else {
                    return Err(format!("{field} pairs must be [name, value] strings"));
                };
                out.push((k.to_string(), val.as_bytes().to_vec()));
            }
        }
        Some(_) => {
            return Err(format!(
                "\"{field}\" must be an object or an array of pairs"
            ))
        }
    }
    Ok(out)
}

fn decode_base64(s: &str) -> Option<Vec<u8>> {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD
        .decode(s.trim())
        .ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_lines_carry_protocol_trailers_and_chunks() {
        let v: Value = serde_json::from_str(
            r#"{"method": "POST", "path": "/p", "body": "abcdef", "protocol": "http2",
                "chunk_size": 4, "trailers": [["x-sum", "1"], ["x-sum", "2"]]}"#,
        )
        .unwrap();
        let line = parse_line(&v).unwrap();
        let r = &line.request;
        assert_eq!(r.protocol, Protocol::Http2);
        assert_eq!(r.chunk_size, Some(4));
        assert_eq!(
            r.trailers,
            vec![
                ("x-sum".to_string(), b"1".to_vec()),
                ("x-sum".to_string(), b"2".to_vec())
            ]
        );
        let v: Value = serde_json::from_str(r#"{"path": "/p", "trailers": {"a": "b"}}"#).unwrap();
        let r = parse_line(&v).unwrap().request;
        assert_eq!(r.protocol, Protocol::Http11, "HTTP/1.1 unless told");
        assert_eq!(r.delivered_trailers(), Vec::new(), "dropped by the codec");
        for bad in [
            r#"{"path": "/p", "protocol": "spdy"}"#,
            r#"{"path": "/p", "chunk_size": 0}"#,
            r#"{"path": "/p", "trailers": "x"}"#,
        ] {
            let v: Value = serde_json::from_str(bad).unwrap();
            assert!(parse_line(&v).is_err(), "{bad}");
        }
    }
}
