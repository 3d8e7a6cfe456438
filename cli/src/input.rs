//! Reading configurations as operators keep them: a JSON or YAML file, or the
//! configurations embedded in an Envoy bootstrap (a Wasm filter's `configuration`
//! StringValue) or an Istio `WasmPlugin` (`spec.pluginConfig`); and `check`.

use std::process::ExitCode;

use serde_json::Value;

use crate::{Args, Fail};

/// A configuration found in a file: where, and its JSON text.
pub struct Found {
    pub label: String,
    pub json: String,
}

pub fn read_file(path: &str) -> Result<String, Fail> {
    std::fs::read_to_string(path).map_err(|e| Fail(format!("{path}: {e}")))
}

/// The documents of a JSON or (multi-document) YAML text.
fn documents(text: &str) -> Result<Vec<Value>, Fail> {
    if let Ok(v) = serde_json::from_str::<Value>(text) {
        return Ok(vec![v]);
    }
    let mut out = Vec::new();
    for doc in serde_norway::Deserializer::from_str(text) {
        let v: Value = serde::Deserialize::deserialize(doc)
            .map_err(|e| Fail(format!("neither JSON nor YAML: {e}")))?;
        if !v.is_null() {
            out.push(v);
        }
    }
    Ok(out)
}

/// Wasm `configuration` StringValues anywhere in an Envoy bootstrap.
fn envoy_configs(node: &Value, out: &mut Vec<String>) {
    match node {
        Value::Object(m) => {
            if let Some(Value::Object(cfg)) = m.get("configuration") {
                let string_value = cfg
                    .get("@type")
                    .and_then(Value::as_str)
                    .is_some_and(|t| t.ends_with("google.protobuf.StringValue"));
                if string_value {
                    if let Some(Value::String(s)) = cfg.get("value") {
                        out.push(s.clone());
                    }
                }
            }
            m.values().for_each(|v| envoy_configs(v, out));
        }
        Value::Array(a) => a.iter().for_each(|v| envoy_configs(v, out)),
        _ => {}
    }
}

/// The s2s-guard configurations in a file's text: embedded ones if it is an Envoy
/// bootstrap or Istio resources, else the document itself.
pub fn configurations(text: &str) -> Result<Vec<Found>, Fail> {
    let docs = documents(text)?;
    let mut found = Vec::new();
    let mut plain = Vec::new();
    for (d, doc) in docs.iter().enumerate() {
        let kind = doc.get("kind").and_then(Value::as_str);
        if kind == Some("WasmPlugin") {
            let name = doc
                .pointer("/metadata/name")
                .and_then(Value::as_str)
                .unwrap_or("?");
            match doc.pointer("/spec/pluginConfig") {
                // Istio hands pluginConfig to the filter as a JSON string.
                Some(pc) => found.push(Found {
                    label: format!("WasmPlugin {name}"),
                    json: pc.to_string(),
                }),
                None => return Err(Fail(format!("WasmPlugin {name} has no pluginConfig"))),
            }
            continue;
        }
        if kind.is_some() {
            // Another Kubernetes resource (ServiceEntry...).
            continue;
        }
        let mut embedded = Vec::new();
        envoy_configs(doc, &mut embedded);
        if embedded.is_empty() {
            plain.push((d, doc));
        }
        for (i, json) in embedded.into_iter().enumerate() {
            found.push(Found {
                label: format!("Envoy Wasm configuration #{}", i + 1),
                json,
            });
        }
    }
    if found.is_empty() {
        for (d, doc) in plain {
            found.push(Found {
                label: if docs.len() > 1 {
                    format!("document {}", d + 1)
                } else {
                    String::new()
                },
                json: doc.to_string(),
            });
        }
    }
    if found.is_empty() {
        return Err(Fail("no s2s-guard configuration found".into()));
    }
    Ok(found)
}

/// A token set file (JSON or YAML) as JSON text.
pub fn token_set(path: &str) -> Result<String, Fail> {
    let text = read_file(path)?;
    match documents(&text)?.as_slice() {
        [one] => Ok(one.to_string()),
        _ => Err(Fail(format!("{path}: expected one token set document"))),
    }
}

pub fn name(path: &str, f: &Found) -> String {
    if f.label.is_empty() {
        path.to_string()
    } else {
        format!("{path} ({})", f.label)
    }
}

pub fn mode(m: s2s_guard::policy::Mode) -> &'static str {
    match m {
        s2s_guard::policy::Mode::Enforce => "enforce",
        s2s_guard::policy::Mode::Flag => "flag",
        s2s_guard::policy::Mode::DryRun => "dry_run",
    }
}

pub fn check(mut args: Args) -> Result<ExitCode, Fail> {
    let set = args.opt("set")?;
    let path = args.one("configuration file")?;
    let set = set.map(|s| token_set(&s)).transpose()?;
    let text = read_file(&path)?;
    let found = configurations(&text).map_err(|Fail(m)| Fail(format!("{path}: {m}")))?;
    let mut ok = true;
    for f in &found {
        let parsed =
            s2s_guard::config::parse_with_set(f.json.as_bytes(), set.as_deref().map(str::as_bytes));
        match parsed {
            Ok(p) => {
                println!(
                    "ok   {}: {} routes, {} tokens, mode {}",
                    name(&path, f),
                    p.routes.len(),
                    p.tokens.len(),
                    mode(p.mode)
                );
                for w in &p.warnings {
                    println!("     warning: {w}");
                }
            }
            Err(e) => {
                ok = false;
                println!("FAIL {}: {e}", name(&path, f));
            }
        }
    }
    Ok(if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}
