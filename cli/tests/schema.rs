//! The JSON Schema: committed as generated, agreeing with the filter's own
//! validation on every shipped configuration and on the error fixtures, and with
//! docs/configuration.md.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use s2s_guard::config::schema;
use s2s_guard_cli::input;
use serde_json::Value;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn read(rel: &str) -> String {
    std::fs::read_to_string(root().join(rel)).unwrap_or_else(|e| panic!("{rel}: {e}"))
}

/// Regenerates the committed schemas; a difference fails (set
/// `S2S_GUARD_BLESS=1` to rewrite them after changing the types).
#[test]
fn committed_schemas_are_generated() {
    for (rel, generated) in [
        ("schema/s2s-guard.schema.json", schema::configuration()),
        (
            "schema/s2s-guard-token-set.schema.json",
            schema::token_set(),
        ),
    ] {
        let text = schema::to_text(&generated);
        if std::env::var_os("S2S_GUARD_BLESS").is_some() {
            std::fs::write(root().join(rel), &text).unwrap();
        }
        assert!(
            read(rel) == text,
            "{rel} differs from the schema generated from src/core/config/model.rs \
             (regenerate: S2S_GUARD_BLESS=1 cargo test -p s2s-guard-cli --test schema)"
        );
    }
}

fn validator(schema: &Value) -> jsonschema::Validator {
    jsonschema::validator_for(schema).expect("the schema compiles")
}

fn schema_errors(v: &jsonschema::Validator, doc: &Value) -> Vec<String> {
    v.iter_errors(doc)
        .map(|e| format!("{} at {}", e, e.instance_path()))
        .collect()
}

/// Every configuration the project ships (deployment files with embedded ones
/// included) and every token set: valid for the schema and for the filter.
#[test]
fn shipped_configurations_are_valid_in_both() {
    let config_schema = validator(&schema::configuration());
    let set_schema = validator(&schema::token_set());
    let mut files: Vec<String> = Vec::new();
    for dir in ["envoy", "envoy/demo", "envoy/istio", "demo", "bench"] {
        for e in std::fs::read_dir(root().join(dir)).unwrap() {
            let p = e.unwrap().path();
            let name = p.file_name().unwrap().to_string_lossy().into_owned();
            if name.ends_with(".json") || name.ends_with(".yaml") {
                files.push(format!("{dir}/{name}"));
            }
        }
    }
    files.sort();
    let mut configs = 0;
    let mut sets = 0;
    for rel in &files {
        let text = read(rel);
        // Token sets: a `tokens` list and no routes or presets.
        let doc: Option<Value> = serde_json::from_str(&text).ok();
        let is_set = doc.as_ref().is_some_and(|d| {
            d.get("tokens").is_some() && d.get("presets").is_none() && d.get("routes").is_none()
        });
        if is_set {
            let doc = doc.unwrap();
            assert_eq!(
                schema_errors(&set_schema, &doc),
                Vec::<String>::new(),
                "{rel}"
            );
            let config =
                r#"{"presets": ["adjust_sdk", "swaarm", "jitsu"], "default_realm": "jitsu"}"#;
            if let Err(e) =
                s2s_guard::config::parse_with_set(config.as_bytes(), Some(text.as_bytes()))
            {
                panic!("{rel}: the filter refuses the token set: {e}");
            }
            sets += 1;
            continue;
        }
        if rel.ends_with("wasmplugin-crd-schema.json") {
            continue;
        }
        let found = match input::configurations(&text) {
            Ok(f) => f,
            // Deployment files without a configuration (docker compose, Istio
            // ServiceEntry...).
            Err(_) => continue,
        };
        for f in found {
            // Deployment YAML holds configurations embedded (docker compose mounts
            // its JSON files, checked on their own).
            let embedded = f.label.starts_with("Envoy") || f.label.starts_with("WasmPlugin");
            if rel.ends_with(".yaml") && !embedded {
                continue;
            }
            let doc: Value = serde_json::from_str(&f.json).unwrap();
            assert_eq!(
                schema_errors(&config_schema, &doc),
                Vec::<String>::new(),
                "{rel} {}",
                f.label
            );
            if let Err(e) = s2s_guard::config::parse(f.json.as_bytes()) {
                panic!("{rel} {}: the filter refuses it: {e}", f.label);
            }
            configs += 1;
        }
    }
    assert!(
        configs >= 8,
        "only {configs} configurations found in {files:?}"
    );
    assert!(sets >= 1, "no token set found");
}

/// The error fixtures: the filter refuses each; the schema refuses each whose fault
/// is of shape (`structural`).
#[test]
fn the_schema_refuses_what_the_filter_refuses_for_its_shape() {
    let v = validator(&schema::configuration());
    let doc: Value = serde_json::from_str(&read("tests/fixtures/config-errors.json")).unwrap();
    let mut structural = 0;
    for case in doc["cases"].as_array().unwrap() {
        let config = case["config"].as_str().unwrap();
        let message = case["message"].as_str().unwrap();
        match s2s_guard::config::parse(config.as_bytes()) {
            Ok(_) => panic!("{config}: the filter accepts it"),
            Err(e) => assert_eq!(e.to_string(), message, "{config}"),
        }
        let Some(is_structural) = case.get("structural").and_then(Value::as_bool) else {
            continue;
        };
        // JSON parsers keep one of two repeated keys: the schema sees one.
        let parsed: Value = serde_json::from_str(config).unwrap();
        let valid = v.is_valid(&parsed);
        if is_structural {
            structural += 1;
            assert!(!valid, "the schema accepts {config} ({message})");
        } else {
            assert!(
                valid,
                "the schema refuses {config}: mark it structural ({:?})",
                schema_errors(&v, &parsed)
            );
        }
    }
    assert!(structural >= 20);
}

/// The keys of an object schema, following `$ref`s and `anyOf` (Option).
fn properties<'a>(root: &'a Value, s: &'a Value) -> BTreeSet<String> {
    let resolve = |s: &'a Value| -> &'a Value {
        match s.get("$ref").and_then(Value::as_str) {
            Some(r) => root
                .pointer(r.trim_start_matches('#'))
                .unwrap_or_else(|| panic!("unresolved {r}")),
            None => s,
        }
    };
    let s = resolve(s);
    if let Some(p) = s.get("properties").and_then(Value::as_object) {
        return p.keys().cloned().collect();
    }
    for key in ["anyOf", "oneOf"] {
        if let Some(list) = s.get(key).and_then(Value::as_array) {
            return list.iter().flat_map(|x| properties(root, x)).collect();
        }
    }
    BTreeSet::new()
}

fn def<'a>(root: &'a Value, name: &str) -> &'a Value {
    &root["$defs"][name]
}

/// The first-column keys (`` `key` ``, `` `a`, `b` ``) of the table under a
/// heading of docs/configuration.md.
fn documented(doc: &str, heading: &str) -> BTreeSet<String> {
    let start = doc
        .find(&format!("\n{heading}\n"))
        .unwrap_or_else(|| panic!("no heading {heading}"));
    let mut out = BTreeSet::new();
    let mut in_table = false;
    for line in doc[start + heading.len() + 2..].lines() {
        if line.starts_with("## ") {
            break;
        }
        if let Some(cell) = line.strip_prefix('|') {
            in_table = true;
            let first = cell.split('|').next().unwrap_or("");
            for part in first.split('`').skip(1).step_by(2) {
                out.insert(part.to_string());
            }
        } else if in_table {
            break;
        }
    }
    out.remove("key");
    out
}

/// Every key of the schema is documented, and every documented key is in the
/// schema: the tables of docs/configuration.md against the schema's objects, and
/// the keys of the smaller objects somewhere in the page.
#[test]
fn docs_document_the_schema() {
    let s = schema::configuration();
    let doc = read("docs/configuration.md");
    for (heading, props) in [
        ("## Top-level keys", properties(&s, &s)),
        ("## Routes", properties(&s, def(&s, "RouteConfig"))),
        ("## Tokens", properties(&s, def(&s, "Token"))),
        (
            "## Token distribution (`token_source`)",
            properties(&s, def(&s, "TokenSourceConfig")),
        ),
        (
            "## SDK signatures (`apps.<app_token>.signature`)",
            properties(&s, def(&s, "SignatureConfig")),
        ),
    ] {
        assert_eq!(documented(&doc, heading), props, "{heading}");
    }
    for name in [
        "AppConfig",
        "PathNormalization",
        "UpstreamHeadersConfig",
        "ReplayConfig",
        "MinSdkConfig",
        "AppSecretConfig",
        "RequiredParamObject",
        "ReplyConfig",
    ] {
        for key in properties(&s, def(&s, name)) {
            assert!(
                doc.contains(&format!("`{key}`")) || doc.contains(&format!("\"{key}\"")),
                "{name}.{key} is not documented in docs/configuration.md"
            );
        }
    }
}

/// The configurations written out in the test suite (raw string literals that are
/// whole JSON documents with `presets` or `routes`): every one the filter accepts,
/// the schema accepts too.
#[test]
fn test_suite_configurations_the_filter_accepts_are_valid_for_the_schema() {
    let v = validator(&schema::configuration());
    let mut sources: Vec<PathBuf> = Vec::new();
    for dir in ["tests", "tests/common", "src/core", "src/core/config"] {
        for e in std::fs::read_dir(root().join(dir)).unwrap() {
            let p = e.unwrap().path();
            if p.extension().is_some_and(|x| x == "rs") {
                sources.push(p);
            }
        }
    }
    let (mut accepted, mut checked) = (0, 0);
    for p in sources {
        let text = std::fs::read_to_string(&p).unwrap();
        for (i, _) in text.match_indices("r#\"{") {
            let start = i + 3;
            let Some(len) = text[start..].find("\"#") else {
                continue;
            };
            let literal = &text[start..start + len];
            let Ok(doc) = serde_json::from_str::<Value>(literal) else {
                continue; // a format! template, or deliberately broken
            };
            if doc.get("presets").is_none() && doc.get("routes").is_none() {
                continue;
            }
            checked += 1;
            if s2s_guard::config::parse(literal.as_bytes()).is_err() {
                continue;
            }
            accepted += 1;
            assert_eq!(
                schema_errors(&v, &doc),
                Vec::<String>::new(),
                "{}: {literal}",
                p.display()
            );
        }
    }
    assert!(accepted >= 10, "only {accepted} of {checked} found");
}
