//! The JSON Schemas of the configuration and of a token set, generated from the
//! types in [`super::model`] (their doc comments are the descriptions). Built only
//! with the `schema` feature (the CLI, the tests): never in the `.wasm`.

use serde_json::Value;

/// The plugin configuration's schema (`schema/s2s-guard.schema.json`).
pub fn configuration() -> Value {
    document::<super::model::Config>("s2s-guard.schema.json")
}

/// A token set's schema (`schema/s2s-guard-token-set.schema.json`).
pub fn token_set() -> Value {
    document::<super::model::TokenSet>("s2s-guard-token-set.schema.json")
}

fn document<T: schemars::JsonSchema>(id: &str) -> Value {
    let schema = schemars::generate::SchemaSettings::draft2020_12()
        .into_generator()
        .into_root_schema_for::<T>();
    let mut v = schema.to_value();
    if let Value::Object(m) = &mut v {
        m.insert("$id".into(), Value::String(id.into()));
    }
    v
}

/// A schema as committed: pretty-printed, with a final newline.
pub fn to_text(schema: &Value) -> String {
    let mut s = serde_json::to_string_pretty(schema).unwrap_or_default();
    s.push('\n');
    s
}
