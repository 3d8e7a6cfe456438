//! Secrets: new tokens (printed once, configured by digest), digests of existing
//! ones, App Secrets as Adjust's dashboard makes them, and token lists converted
//! into s2s-guard token sets with digests only.

use std::io::BufRead;
use std::process::ExitCode;

use serde_json::{json, Map, Value};
use sha2::{Digest, Sha256};

use crate::{input, Args, Fail};

pub fn sha256_hex(secret: &str) -> String {
    hex::encode(Sha256::digest(secret.as_bytes()))
}

pub fn random_bytes<const N: usize>() -> Result<[u8; N], Fail> {
    let mut b = [0u8; N];
    getrandom::getrandom(&mut b).map_err(|e| Fail(format!("no system randomness: {e}")))?;
    Ok(b)
}

const SCOPES: [&str; 4] = ["events", "sessions", "ad_revenue", "gdpr"];

/// `token new`: 32 random bytes as hex, and the configuration entry that holds
/// only its digest.
pub fn token_new(mut args: Args) -> Result<ExitCode, Fail> {
    let id = args.opt("id")?;
    let app = args.opt("app")?;
    let scopes = args.opt("scopes")?;
    let realm = args.opt("realm")?;
    let kind = args.opt("kind")?;
    args.rest()?;
    let token = hex::encode(random_bytes::<32>()?);
    let digest = sha256_hex(&token);
    let mut entry = Map::new();
    entry.insert(
        "id".into(),
        json!(id.unwrap_or_else(|| format!("token-{}", &digest[..8]))),
    );
    if let Some(r) = realm {
        entry.insert("realm".into(), json!(r));
    }
    match kind.as_deref() {
        None | Some("server") => {}
        Some("client") => {
            entry.insert("kind".into(), json!("client"));
        }
        Some(k) => {
            return Err(Fail(format!(
                "--kind: expected server or client, not {k:?}"
            )))
        }
    }
    entry.insert("sha256".into(), json!(digest));
    if let Some(a) = app {
        entry.insert("app".into(), json!(a));
    }
    if let Some(s) = scopes {
        let list: Vec<&str> = s
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .collect();
        if list.is_empty() {
            // The filter refuses an empty list: it would grant every scope.
            return Err(Fail(
                "--scopes: no scope given (leave --scopes out for a legacy token, valid for every scope)".into(),
            ));
        }
        if let Some(bad) = list.iter().find(|s| !SCOPES.contains(s)) {
            return Err(Fail(format!(
                "--scopes: unknown scope {bad:?} (expected {})",
                SCOPES.join(", ")
            )));
        }
        entry.insert("scopes".into(), json!(list));
    }
    println!("token: {token}");
    println!("entry: {}", Value::Object(entry));
    eprintln!(
        "The token is shown once: hand it to the client. The configuration needs only the entry."
    );
    Ok(ExitCode::SUCCESS)
}

/// `hash`: one digest per line of stdin (line ends removed, nothing else).
pub fn hash(args: Args) -> Result<ExitCode, Fail> {
    args.rest()?;
    for line in std::io::stdin().lock().lines() {
        let line = line?;
        let secret = line.strip_suffix('\r').unwrap_or(&line);
        if secret.is_empty() {
            continue;
        }
        println!("{}", sha256_hex(secret));
    }
    Ok(ExitCode::SUCCESS)
}

/// `app-secret new`: a Secret ID and four integers. Each integer has ten digits,
/// so the joined secret (what the SDK hashes) is 40 digits whatever the values.
pub fn app_secret_new(mut args: Args) -> Result<ExitCode, Fail> {
    let app = args.required("app")?;
    let id: u32 = match args.opt("id")? {
        None => 1,
        Some(s) => s
            .parse()
            .ok()
            .filter(|n| *n >= 1)
            .ok_or_else(|| Fail(format!("--id: expected a Secret ID from 1, not {s:?}")))?,
    };
    args.rest()?;
    let raw = random_bytes::<16>()?;
    let info: Vec<u64> = raw
        .chunks(4)
        .map(|c| {
            let n = u32::from_le_bytes([c[0], c[1], c[2], c[3]]);
            1_000_000_000 + u64::from(n) % 3_294_967_296
        })
        .collect();
    println!("secret_id: {id}");
    println!(
        "info: {}",
        info.iter()
            .map(u64::to_string)
            .collect::<Vec<_>>()
            .join(" ")
    );
    println!(
        "sdk: adjustConfig.setAppSecret({id}, {})",
        info.iter()
            .map(|n| format!("{n}L"))
            .collect::<Vec<_>>()
            .join(", ")
    );
    println!(
        "config: {}",
        json!({"apps": {app: {"signature": {"secrets": [{"id": id, "info": info}]}}}})
    );
    Ok(ExitCode::SUCCESS)
}

/// Jitsu's `api_keys`: a list of `{id, client_secret, server_secret, origins}`, a
/// plain string (one client secret), `{"tokens": [...]}` (its HTTP and file
/// payload), or any of these under `api_keys` or `server.api_keys`.
fn jitsu_keys(doc: &Value) -> Result<Vec<Value>, Fail> {
    let v = doc
        .pointer("/server/api_keys")
        .or_else(|| doc.get("api_keys"))
        .or_else(|| doc.get("tokens"))
        .unwrap_or(doc);
    match v {
        Value::Array(a) => Ok(a.clone()),
        Value::String(s) => Ok(vec![json!({"client_secret": s})]),
        _ => Err(Fail(
            "no Jitsu api_keys found (a list, a string, or {\"tokens\": [...]})".into(),
        )),
    }
}

fn convert_jitsu(text: &str, realm: Option<&str>) -> Result<Vec<Value>, Fail> {
    let docs: Vec<Value> = match serde_json::from_str::<Value>(text) {
        Ok(v) => vec![v],
        Err(_) => serde_norway::Deserializer::from_str(text)
            .map(serde::Deserialize::deserialize)
            .collect::<Result<_, _>>()
            .map_err(|e| Fail(format!("neither JSON nor YAML: {e}")))?,
    };
    let [doc] = docs.as_slice() else {
        return Err(Fail("expected one document".into()));
    };
    let mut out = Vec::new();
    for (i, k) in jitsu_keys(doc)?.iter().enumerate() {
        let at = |m: &str| Fail(format!("api_keys[{i}]: {m}"));
        let (id, client, server, origins) = match k {
            Value::String(s) => (None, Some(s.as_str()), None, None),
            Value::Object(m) => {
                for key in m.keys() {
                    if !["id", "client_secret", "server_secret", "origins"].contains(&key.as_str())
                    {
                        return Err(at(&format!(
                            "unknown field {key:?} (known fields: client_secret, id, origins, server_secret)"
                        )));
                    }
                }
                let s = |name: &str| -> Result<Option<&str>, Fail> {
                    match m.get(name) {
                        None | Some(Value::Null) => Ok(None),
                        Some(Value::String(s)) if !s.is_empty() => Ok(Some(s)),
                        Some(_) => Err(at(&format!("{name}: expected a non-empty string"))),
                    }
                };
                (
                    s("id")?,
                    s("client_secret")?,
                    s("server_secret")?,
                    m.get("origins"),
                )
            }
            _ => return Err(at("expected an object or a client secret")),
        };
        if client.is_none() && server.is_none() {
            return Err(at("has no client_secret or server_secret"));
        }
        let mut t = Map::new();
        t.insert(
            "id".into(),
            json!(id.map_or(format!("jitsu-{i}"), str::to_string)),
        );
        if let Some(r) = realm {
            t.insert("realm".into(), json!(r));
        }
        if let Some(c) = client {
            t.insert("client_secret_sha256".into(), json!(sha256_hex(c)));
        }
        if let Some(s) = server {
            t.insert("server_secret_sha256".into(), json!(sha256_hex(s)));
        }
        match origins {
            None | Some(Value::Null) => {}
            Some(Value::Array(o)) if o.iter().all(Value::is_string) => {
                t.insert("origins".into(), Value::Array(o.clone()));
            }
            Some(_) => return Err(at("origins: expected a list of strings")),
        }
        out.push(Value::Object(t));
    }
    Ok(out)
}

fn convert_lines(text: &str, realm: Option<&str>) -> Vec<Value> {
    text.lines()
        .map(|l| l.strip_suffix('\r').unwrap_or(l))
        .filter(|l| !l.trim().is_empty() && !l.starts_with('#'))
        .enumerate()
        .map(|(i, secret)| {
            let mut t = Map::new();
            t.insert("id".into(), json!(format!("token-{}", i + 1)));
            if let Some(r) = realm {
                t.insert("realm".into(), json!(r));
            }
            t.insert("sha256".into(), json!(sha256_hex(secret)));
            Value::Object(t)
        })
        .collect()
}

/// `tokens convert`: a token set (`{"tokens": [...]}`) with digests only.
pub fn convert(mut args: Args) -> Result<ExitCode, Fail> {
    let from = args.required("from")?;
    let realm = args.opt("realm")?;
    let path = args.one("input file")?;
    let text = input::read_file(&path)?;
    let tokens = match from.as_str() {
        "jitsu" => convert_jitsu(&text, realm.as_deref())
            .map_err(|Fail(m)| Fail(format!("{path}: {m}")))?,
        "lines" => convert_lines(&text, realm.as_deref()),
        other => {
            return Err(Fail(format!(
                "--from: expected jitsu or lines, not {other:?}"
            )))
        }
    };
    if tokens.is_empty() {
        return Err(Fail(format!("{path}: no tokens")));
    }
    let set = json!({ "tokens": tokens });
    println!(
        "{}",
        serde_json::to_string_pretty(&set).map_err(|e| Fail(e.to_string()))?
    );
    Ok(ExitCode::SUCCESS)
}
