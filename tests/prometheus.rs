//! The Prometheus names of s2s-guard's metrics, without an Envoy: every metric the
//! `.wasm` defines for the shipped configurations (and every counter and the replay
//! fill gauge of `src/core/metrics.rs`) goes through Envoy's tag extraction with the shipped `stats_tags`
//! and Envoy's Prometheus naming (`s2s_guard_host::prom`); then every metric, label and
//! label value used by the Grafana dashboard's queries and by the alert rules must exist.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use s2s_guard::metrics::{Counter, REPLAY_FILL_PERCENT};
use s2s_guard_host::prom::{parse_stats_tags, series, Series, TagProducer};
use s2s_guard_host::{load_dist, Compiled, Host, HostOptions, Metric, MetricKind};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn read(rel: &str) -> String {
    std::fs::read_to_string(root().join(rel)).unwrap_or_else(|e| panic!("{rel}: {e}"))
}

/// The s2s-guard configurations embedded in an Envoy YAML file (single-quoted
/// `value: '{...}'` lines of the Wasm `configuration`s).
fn embedded_configs(yaml: &str) -> Vec<String> {
    yaml.lines()
        .filter_map(|l| l.trim().strip_prefix("value: '{"))
        .map(|v| format!("{{{}", v.strip_suffix('\'').expect("one-line value")).replace("''", "'"))
        .collect()
}

/// Every metric the `.wasm` defines when loaded with `config`.
fn defined(compiled: &Compiled, config: &str) -> Vec<Metric> {
    let host = Host::new(
        compiled,
        HostOptions {
            plugin_config: config.as_bytes().to_vec(),
            clusters: vec!["token_service".into()],
            ..HostOptions::default()
        },
    )
    .unwrap_or_else(|e| panic!("configuration refused: {e}\n{config}"));
    host.metric_records()
}

/// What exists in `/stats/prometheus`: family → kind, label → values.
#[derive(Default, Debug)]
struct Family {
    kinds: BTreeSet<&'static str>,
    labels: BTreeMap<String, BTreeSet<String>>,
    label_sets: BTreeSet<Vec<String>>,
}

fn families(all: &[Series]) -> BTreeMap<String, Family> {
    let mut out: BTreeMap<String, Family> = BTreeMap::new();
    for s in all {
        let f = out.entry(s.family.clone()).or_default();
        f.kinds.insert(match s.kind {
            MetricKind::Counter => "counter",
            MetricKind::Gauge => "gauge",
            MetricKind::Histogram => "histogram",
        });
        for (n, v) in &s.labels {
            f.labels.entry(n.clone()).or_default().insert(v.clone());
        }
        // The shared series of apps beyond max_stats_apps have no Secret ID.
        if !s.labels.iter().any(|(_, v)| v == "other") {
            f.label_sets
                .insert(s.labels.iter().map(|(n, _)| n.clone()).collect());
        }
    }
    out
}

/// Shipped metrics: the configurations of envoy/*.yaml, the demos', and one with an
/// app beyond `max_stats_apps`; each must define every counter of `src/metrics.rs`.
fn shipped_series() -> (Vec<Series>, Vec<Metric>) {
    static ONCE: std::sync::OnceLock<(Vec<Series>, Vec<Metric>)> = std::sync::OnceLock::new();
    ONCE.get_or_init(compute_shipped_series).clone()
}

fn compute_shipped_series() -> (Vec<Series>, Vec<Metric>) {
    let compiled = load_dist("s2s-guard.wasm");
    let tags = parse_stats_tags(&read("envoy/envoy.yaml")).unwrap();
    let producer = TagProducer::new(&tags).unwrap();
    let mut configs: Vec<String> = Vec::new();
    for f in ["envoy/envoy.yaml", "envoy/edge.yaml", "envoy/quotas.yaml"] {
        let found = embedded_configs(&read(f));
        assert!(!found.is_empty(), "{f}: no embedded configuration");
        configs.extend(found);
    }
    configs.push(read("demo/config.json"));
    configs.push(read("envoy/demo/filter-config.json"));
    configs.push(
        r#"{"presets": ["adjust_sdk"], "max_stats_apps": 1, "apps": {
            "app-one": {"signature": {"secrets": [{"id": 7, "info": [1, 2, 3, 4]}]}},
            "app-two": {"signature": {"secrets": [{"id": 8, "info": [1, 2, 3, 4]}]}}}}"#
            .into(),
    );
    let counters: BTreeSet<String> = Counter::all().iter().map(|c| c.name()).collect();
    let mut all_metrics: BTreeMap<String, Metric> = BTreeMap::new();
    for c in &configs {
        let defined = defined(&compiled, c);
        let names: BTreeSet<String> = defined
            .iter()
            .filter(|m| m.kind == MetricKind::Counter)
            .map(|m| m.name.clone())
            .collect();
        let missing: Vec<_> = counters.difference(&names).collect();
        assert!(
            missing.is_empty(),
            "the .wasm does not define {missing:?} for {c}"
        );
        assert!(
            defined
                .iter()
                .any(|m| m.name == REPLAY_FILL_PERCENT && m.kind == MetricKind::Gauge),
            "the .wasm does not define the gauge {REPLAY_FILL_PERCENT} for {c}"
        );
        for m in defined {
            all_metrics.insert(m.name.clone(), m);
        }
    }
    let metrics: Vec<Metric> = all_metrics.into_values().collect();
    (series(&producer, &metrics), metrics)
}

#[test]
fn every_metric_gets_a_clean_prometheus_name() {
    let (all, metrics) = shipped_series();
    assert_eq!(all.len(), metrics.len(), "Envoy would drop a metric");
    let mut seen = BTreeSet::new();
    for s in &all {
        assert!(s.family.starts_with("s2s_guard_"), "{s:?}");
        assert!(
            s.family
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_'),
            "{s:?}"
        );
        assert!(
            s.labels.iter().all(|(n, _)| n.starts_with("s2s_guard_")),
            "a label not from the shipped stats_tags (an Envoy default extractor?): {s:?}"
        );
        assert!(
            s.labels
                .iter()
                .all(|(_, v)| !v.is_empty() && !v.contains('.')),
            "{s:?}"
        );
        // Two stats on one series would be one sample twice in the scrape.
        assert!(
            seen.insert((s.family.clone(), s.labels.clone())),
            "two stats make the same series: {s:?}"
        );
    }
    let fams = families(&all);
    for (name, f) in &fams {
        assert_eq!(f.kinds.len(), 1, "{name}: counter and gauge in one family");
        assert_eq!(
            f.label_sets.len(),
            1,
            "{name}: series with different label names {:?}",
            f.label_sets
        );
    }
    // The documented names (docs/metrics.md).
    let expect = |family: &str, labels: &[&str]| {
        let f = fams
            .get(family)
            .unwrap_or_else(|| panic!("no {family}: {:?}", fams.keys()));
        let have: Vec<&str> = f.labels.keys().map(String::as_str).collect();
        let mut want = labels.to_vec();
        want.sort();
        assert_eq!(have, want, "{family}");
    };
    expect(
        "s2s_guard_requests",
        &["s2s_guard_outcome", "s2s_guard_scope"],
    );
    expect(
        "s2s_guard_requests_by_route",
        &["s2s_guard_outcome", "s2s_guard_route"],
    );
    let routes = &fams["s2s_guard_requests_by_route"].labels["s2s_guard_route"];
    for r in [
        "none",
        "adjust_event",
        "adjust_sdk_click",
        "swaarm_postback",
        "jitsu_event",
    ] {
        assert!(routes.contains(r), "no route {r}: {routes:?}");
    }
    assert_eq!(
        fams["s2s_guard_requests_by_route"].labels["s2s_guard_outcome"],
        fams["s2s_guard_requests"].labels["s2s_guard_outcome"]
    );
    expect("s2s_guard_rejected", &["s2s_guard_outcome"]);
    expect("s2s_guard_shadow", &["s2s_guard_outcome"]);
    expect("s2s_guard_flagged", &["s2s_guard_outcome"]);
    expect("s2s_guard_signature", &["s2s_guard_outcome"]);
    expect("s2s_guard_ambiguous", &["s2s_guard_ambiguity"]);
    expect("s2s_guard_source_failure", &["s2s_guard_source_failure"]);
    expect("s2s_guard_signature_rejected", &[]);
    expect("s2s_guard_config_rejected", &[]);
    expect("s2s_guard_unmatched", &[]);
    expect("s2s_guard_source_version", &[]);
    expect("s2s_guard_source_age_seconds", &[]);
    expect("s2s_guard_source_tokens", &[]);
    expect("s2s_guard_sdk_no_secret", &["s2s_guard_app"]);
    expect("s2s_guard_per_app_shadow", &["s2s_guard_app"]);
    let apps = &fams["s2s_guard_per_app_shadow"].labels["s2s_guard_app"];
    assert!(
        apps.contains("other") && apps.contains("abc123kuvada7"),
        "{apps:?}"
    );
    expect("s2s_guard_sdk_invalid_secret", &["s2s_guard_app"]);
    // App Secret series: per app and Secret ID; "other" (beyond max_stats_apps) has
    // no Secret ID, so its series have the app label only.
    let acc: Vec<&Series> = all
        .iter()
        .filter(|s| s.family == "s2s_guard_sdk_accepted")
        .collect();
    assert!(acc.iter().any(|s| s.labels
        == vec![
            ("s2s_guard_app".to_string(), "abc123kuvada7".to_string()),
            ("s2s_guard_secret_id".to_string(), "2".to_string())
        ]));
    assert!(acc
        .iter()
        .any(|s| s.labels == vec![("s2s_guard_app".to_string(), "other".to_string())]));
    assert_eq!(
        fams["s2s_guard_source_version"].kinds.first(),
        Some(&"gauge")
    );
    expect("s2s_guard_replay_fill_percent", &[]);
    assert_eq!(
        fams["s2s_guard_replay_fill_percent"].kinds.first(),
        Some(&"gauge")
    );
    let outcomes = &fams["s2s_guard_requests"].labels["s2s_guard_outcome"];
    assert!(outcomes.contains("allowed") && outcomes.contains("wrong"));
}

/// The metric names, label names and matchers a PromQL expression uses.
#[derive(Debug, Default)]
struct Uses {
    metrics: Vec<String>,
    /// Labels in `by (...)`, `without (...)`, `on (...)`, ...
    grouping: Vec<String>,
    /// (label, operator, value) of selectors, with their metric.
    matchers: Vec<(String, String, String, String)>,
}

/// Keywords and aggregation operators (`sum by (x) (...)`: not followed by `(`).
const KEYWORDS: [&str; 20] = [
    "and",
    "or",
    "unless",
    "offset",
    "bool",
    "by",
    "without",
    "on",
    "sum",
    "min",
    "max",
    "avg",
    "group",
    "stddev",
    "stdvar",
    "count",
    "count_values",
    "bottomk",
    "topk",
    "quantile",
];
const GROUPING: [&str; 6] = [
    "by",
    "without",
    "on",
    "ignoring",
    "group_left",
    "group_right",
];

fn promql_uses(expr: &str) -> Uses {
    let b: Vec<char> = expr.chars().collect();
    let mut toks: Vec<(char, String)> = Vec::new(); // kind: i ident, s string, p punct, n number, v variable
    let mut i = 0;
    while i < b.len() {
        let c = b[i];
        if c.is_whitespace() {
            i += 1;
        } else if c == '"' || c == '\'' {
            let mut j = i + 1;
            let mut s = String::new();
            while j < b.len() && b[j] != c {
                if b[j] == '\\' {
                    j += 1;
                }
                s.push(b[j]);
                j += 1;
            }
            toks.push(('s', s));
            i = j + 1;
        } else if c == '[' {
            while i < b.len() && b[i] != ']' {
                i += 1;
            }
            i += 1;
        } else if c == '$' {
            let mut j = i + 1;
            while j < b.len() && (b[j].is_ascii_alphanumeric() || b[j] == '_') {
                j += 1;
            }
            toks.push(('v', b[i..j].iter().collect()));
            i = j;
        } else if c.is_ascii_digit() || (c == '.' && b.get(i + 1).is_some_and(char::is_ascii_digit))
        {
            let mut j = i;
            while j < b.len() && (b[j].is_ascii_alphanumeric() || b[j] == '.') {
                j += 1;
            }
            toks.push(('n', b[i..j].iter().collect()));
            i = j;
        } else if c.is_ascii_alphabetic() || c == '_' || c == ':' {
            let mut j = i;
            while j < b.len() && (b[j].is_ascii_alphanumeric() || b[j] == '_' || b[j] == ':') {
                j += 1;
            }
            toks.push(('i', b[i..j].iter().collect()));
            i = j;
        } else {
            let two: String = b[i..(i + 2).min(b.len())].iter().collect();
            if ["=~", "!=", "!~", "==", ">=", "<="].contains(&two.as_str()) {
                toks.push(('p', two));
                i += 2;
            } else {
                toks.push(('p', c.to_string()));
                i += 1;
            }
        }
    }
    let mut u = Uses::default();
    let mut k = 0;
    let next_is = |k: usize, s: &str| toks.get(k).is_some_and(|t| t.0 == 'p' && t.1 == s);
    while k < toks.len() {
        let (kind, t) = &toks[k];
        if *kind != 'i' {
            k += 1;
            continue;
        }
        if GROUPING.contains(&t.as_str()) && next_is(k + 1, "(") {
            k += 2;
            while k < toks.len() && !next_is(k, ")") {
                if toks[k].0 == 'i' {
                    u.grouping.push(toks[k].1.clone());
                }
                k += 1;
            }
            continue;
        }
        if next_is(k + 1, "(") || KEYWORDS.contains(&t.as_str()) {
            k += 1;
            continue;
        }
        let metric = t.clone();
        u.metrics.push(metric.clone());
        k += 1;
        if next_is(k, "{") {
            k += 1;
            while k < toks.len() && !next_is(k, "}") {
                if toks[k].0 == 'i' {
                    let label = toks[k].1.clone();
                    let op = toks.get(k + 1).map(|t| t.1.clone()).unwrap_or_default();
                    let value = toks.get(k + 2).map(|t| t.1.clone()).unwrap_or_default();
                    u.matchers.push((metric.clone(), label, op, value));
                    k += 3;
                } else {
                    k += 1;
                }
            }
        }
    }
    u
}

/// Target labels Prometheus adds to every scraped series.
const TARGET_LABELS: [&str; 2] = ["instance", "job"];

fn check_expr(where_: &str, expr: &str, fams: &BTreeMap<String, Family>) -> Vec<String> {
    let u = promql_uses(expr);
    let mut errors = Vec::new();
    if !u.metrics.iter().any(|m| m.starts_with("s2s_guard_")) {
        errors.push(format!("{where_}: no s2s-guard metric in {expr}"));
    }
    for m in &u.metrics {
        if !fams.contains_key(m) {
            errors.push(format!(
                "{where_}: no metric {m} in /stats/prometheus ({expr})"
            ));
        }
    }
    let has_label = |l: &str| {
        TARGET_LABELS.contains(&l)
            || u.metrics
                .iter()
                .any(|m| fams.get(m).is_some_and(|f| f.labels.contains_key(l)))
    };
    for l in &u.grouping {
        if !has_label(l) {
            errors.push(format!("{where_}: no label {l} on {:?}", u.metrics));
        }
    }
    for (m, l, op, v) in &u.matchers {
        if TARGET_LABELS.contains(&l.as_str()) {
            continue;
        }
        let Some(values) = fams.get(m).and_then(|f| f.labels.get(l)) else {
            errors.push(format!("{where_}: no label {l} on {m}"));
            continue;
        };
        if v.contains('$') {
            continue;
        }
        let wanted: Vec<&str> = match op.as_str() {
            "=" | "!=" => vec![v.as_str()],
            "=~" | "!~"
                if v.chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '|') =>
            {
                v.split('|').collect()
            }
            _ => vec![],
        };
        for w in wanted {
            if !values.contains(w) {
                errors.push(format!("{where_}: {m} has no {l}=\"{w}\""));
            }
        }
    }
    errors
}

#[test]
fn dashboard_queries_use_existing_metrics_and_labels() {
    let (all, _) = shipped_series();
    let fams = families(&all);
    let dash: serde_json::Value =
        serde_json::from_str(&read("envoy/grafana/dashboards/s2s-guard.json")).unwrap();
    let mut errors = Vec::new();
    let mut n = 0;
    for p in dash["panels"].as_array().unwrap() {
        for t in p["targets"].as_array().into_iter().flatten() {
            let expr = t["expr"].as_str().unwrap();
            errors.extend(check_expr(&format!("panel {:?}", p["title"]), expr, &fams));
            n += 1;
        }
    }
    assert!(n >= 20, "{n} queries");
    for v in dash["templating"]["list"].as_array().unwrap() {
        let q = v["definition"].as_str().unwrap();
        let inner = q
            .strip_prefix("label_values(")
            .and_then(|r| r.strip_suffix(')'))
            .unwrap_or_else(|| panic!("variable query {q}"));
        let (metric, label) = inner.split_once(',').unwrap();
        let (metric, label) = (metric.trim(), label.trim());
        match fams.get(metric) {
            None => errors.push(format!("variable {q}: no metric {metric}")),
            Some(f) if !f.labels.contains_key(label) && !TARGET_LABELS.contains(&label) => {
                errors.push(format!("variable {q}: no label {label}"))
            }
            _ => {}
        }
    }
    // Every family the dashboard should show is used somewhere.
    let used: BTreeSet<String> = dash["panels"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|p| p["targets"].as_array().cloned().unwrap_or_default())
        .flat_map(|t| promql_uses(t["expr"].as_str().unwrap()).metrics)
        .collect();
    for f in [
        "s2s_guard_requests",
        "s2s_guard_rejected",
        "s2s_guard_shadow",
        "s2s_guard_signature",
        "s2s_guard_sdk_accepted",
        "s2s_guard_sdk_rejected",
        "s2s_guard_source_version",
        "s2s_guard_source_age_seconds",
        "s2s_guard_source_failure",
        "s2s_guard_requests_by_route",
        "s2s_guard_per_app_shadow",
        "s2s_guard_replay_fill_percent",
    ] {
        if !used.contains(f) {
            errors.push(format!("the dashboard does not show {f}"));
        }
    }
    assert!(errors.is_empty(), "{}", errors.join("\n"));
}

#[test]
fn alert_rules_use_existing_metrics_and_labels() {
    let (all, _) = shipped_series();
    let fams = families(&all);
    let rules = read("envoy/prometheus/alerts.yaml");
    assert!(
        read("docs/metrics.md").contains(&rules),
        "docs/metrics.md does not show envoy/prometheus/alerts.yaml as it is"
    );
    let mut errors = Vec::new();
    let chunks: Vec<&str> = rules.split("- alert: ").skip(1).collect();
    assert!(chunks.len() >= 6, "{} rules", chunks.len());
    // The replay memory is alerted on before it is full, not only once it is.
    assert!(
        chunks
            .iter()
            .any(|c| c.starts_with("S2SGuardReplayMemoryNearFull")
                && c.contains("s2s_guard_replay_fill_percent")),
        "no alert on the replay fill gauge"
    );
    for chunk in chunks {
        let name = chunk.lines().next().unwrap().trim();
        let expr = chunk
            .lines()
            .find_map(|l| l.trim().strip_prefix("expr: "))
            .unwrap_or_else(|| panic!("{name}: a one-line expr"));
        errors.extend(check_expr(name, expr, &fams));
        // An annotation's {{ $labels.x }} must survive the aggregation.
        let u = promql_uses(expr);
        for part in chunk.split("$labels.").skip(1) {
            let label: String = part
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect();
            if !u.grouping.contains(&label) {
                errors.push(format!("{name}: $labels.{label} is not kept by {expr}"));
            }
        }
    }
    assert!(errors.is_empty(), "{}", errors.join("\n"));
}

#[test]
fn the_checker_catches_wrong_names() {
    let (all, _) = shipped_series();
    let fams = families(&all);
    for bad in [
        "rate(s2s_guard_requests_total[5m])",
        "sum by (outcome) (rate(s2s_guard_requests[5m]))",
        r#"rate(s2s_guard_signature{s2s_guard_outcome="replay_full"}[5m])"#,
        r#"rate(s2s_guard_signature{s2s_guard_outcome=~"replayed|nope"}[5m])"#,
        r#"rate(s2s_guard_rejected{s2s_guard_app="x"}[5m])"#,
        "rate(s2s_guard_source[5m])",
    ] {
        assert!(!check_expr("t", bad, &fams).is_empty(), "{bad} passed");
    }
    let good = r#"sum by (s2s_guard_app, s2s_guard_secret_id) (rate(s2s_guard_sdk_accepted{s2s_guard_app=~"$app",instance=~"$instance"}[$__rate_interval])) / clamp_min(1, 1e-9)"#;
    assert_eq!(check_expr("t", good, &fams), Vec::<String>::new());
}

#[test]
fn the_stats_tags_of_every_shipped_bootstrap_are_those_of_the_docs() {
    let docs = read("docs/metrics.md");
    let block = docs
        .split("```yaml\n")
        .find(|b| b.starts_with("stats_config:"))
        .expect("a stats_config block in docs/metrics.md");
    let documented = parse_stats_tags(block).unwrap();
    // The Istio sidecars' (a bootstrap fragment in a ConfigMap).
    assert_eq!(
        parse_stats_tags(&read("envoy/istio/stats-tags.yaml")).unwrap(),
        documented,
        "envoy/istio/stats-tags.yaml"
    );
    for f in std::fs::read_dir(root().join("envoy")).unwrap() {
        let p = f.unwrap().path();
        let name = p.file_name().unwrap().to_string_lossy().into_owned();
        if p.extension().is_some_and(|e| e == "yaml") && !name.starts_with("docker-compose") {
            let text = std::fs::read_to_string(&p).unwrap();
            assert_eq!(
                parse_stats_tags(&text).unwrap(),
                documented,
                "{}",
                Path::new(&name).display()
            );
        }
    }
}
