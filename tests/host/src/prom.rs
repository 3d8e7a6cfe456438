//! Envoy's naming of the filter's metrics in `/stats/prometheus`, without an Envoy:
//!
//! 1. tag extraction (Envoy's `TagProducerImpl`): every extractor runs on the full stat
//!    name (`wasmcustom.<name>`); an extractor whose regex starts with `^word\.` runs only
//!    on names whose first token is `word`; one with a `substr` only on names holding it.
//!    A match's first group is cut out of the name, its second group (or the first) is
//!    the tag value; the cuts of all extractors are applied together at the end. User
//!    `stats_tags` regexes are ECMAScript `std::regex` searches (`\w`, `\d` are ASCII).
//!    Envoy's default extractors are kept where they can apply to a `wasmcustom.` name
//!    (the two unanchored response-code ones); every other default is anchored on
//!    another first token (`http`, `cluster`, `listener`, ...).
//! 2. Prometheus naming (`PrometheusStatsFormatter`): a name in the registered custom
//!    namespace `wasmcustom` loses it and gets no `envoy_` prefix; every character but
//!    `[a-zA-Z0-9_]` becomes `_`; tags become labels (names sanitized the same way); no
//!    `_total` suffix; counters, then gauges, grouped by family, sorted.

use std::collections::BTreeMap;

use regex::bytes::{Regex, RegexBuilder};

use crate::{Metric, MetricKind};

/// The namespace Envoy gives metrics a Wasm filter defines.
pub const CUSTOM_NAMESPACE: &str = "wasmcustom";

/// One `stats_config.stats_tags` entry (`tag_name` and `regex`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TagSpecifier {
    pub tag_name: String,
    pub regex: String,
}

struct Extractor {
    name: String,
    /// First token the name must have (from a `^word\.` regex), or empty.
    prefix: String,
    /// A substring the name must hold, or empty.
    substr: String,
    re: Regex,
    /// Another extractor has the same tag name: only the first match counts.
    shared_name: bool,
}

/// Envoy's tag producer for the given `stats_tags` (defaults included).
pub struct TagProducer {
    extractors: Vec<Extractor>,
}

/// Envoy's `extractRegexPrefix`: `^word\.` or `^word(?=\.)` or `^word$` gives `word`.
pub fn regex_prefix(regex: &str) -> String {
    let Some(rest) = regex.strip_prefix('^') else {
        return String::new();
    };
    let end = rest
        .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .unwrap_or(rest.len());
    if end == 0 || end == rest.len() {
        return String::new();
    }
    let tail = &rest[end..];
    let last = tail.len() == 1;
    if (!last && (tail.starts_with("\\.") || tail.starts_with("(?=\\.)"))) || (last && tail == "$")
    {
        rest[..end].to_string()
    } else {
        String::new()
    }
}

/// Envoy's default extractors that are not anchored on a first token other than
/// `wasmcustom` (`well_known_names.cc`): they can apply to the filter's metrics.
pub const UNANCHORED_DEFAULTS: [(&str, &str, &str); 2] = [
    ("envoy.response_code", r"_rq(_(\d{3}))$", "_rq_"),
    ("envoy.response_code_class", r"_rq_(\d)xx$", "_rq_"),
];

impl TagProducer {
    pub fn new(specs: &[TagSpecifier]) -> Result<TagProducer, String> {
        let mut extractors = Vec::new();
        let defaults = UNANCHORED_DEFAULTS
            .iter()
            .map(|(n, r, s)| (n.to_string(), r.to_string(), s.to_string()));
        let user = specs
            .iter()
            .map(|s| (s.tag_name.clone(), s.regex.clone(), String::new()));
        for (name, regex, substr) in defaults.chain(user) {
            if name.is_empty() || regex.is_empty() {
                return Err(format!(
                    "stats_tags: tag_name and regex must be set ({name:?})"
                ));
            }
            // ECMAScript classes are ASCII; the name is matched as bytes.
            let re = RegexBuilder::new(&regex)
                .unicode(false)
                .build()
                .map_err(|e| format!("stats_tags {name}: {e}"))?;
            extractors.push(Extractor {
                prefix: regex_prefix(&regex),
                name,
                substr,
                re,
                shared_name: false,
            });
        }
        for i in 0..extractors.len() {
            let shared = extractors
                .iter()
                .enumerate()
                .any(|(j, e)| j != i && e.name == extractors[i].name);
            extractors[i].shared_name = shared;
        }
        Ok(TagProducer { extractors })
    }

    /// The tag-extracted name and the tags of a full stat name.
    pub fn produce(&self, name: &str) -> (String, Vec<(String, String)>) {
        let first = name.split_once('.').map(|(t, _)| t);
        // Extractors without a prefix first, then those of the name's first token
        // (Envoy's forEachExtractorMatching order).
        let order = self
            .extractors
            .iter()
            .filter(|e| e.prefix.is_empty())
            .chain(
                self.extractors
                    .iter()
                    .filter(|e| !e.prefix.is_empty() && Some(e.prefix.as_str()) == first),
            );
        let mut remove = vec![false; name.len()];
        let mut tags: Vec<(String, String)> = Vec::new();
        for e in order {
            if e.shared_name && tags.iter().any(|(n, _)| *n == e.name) {
                continue;
            }
            if !e.substr.is_empty() && !name.contains(&e.substr) {
                continue;
            }
            let Some(c) = e.re.captures(name.as_bytes()) else {
                continue;
            };
            let Some(cut) = c.get(1) else {
                continue;
            };
            let value = c.get(2).unwrap_or(cut);
            tags.push((
                e.name.clone(),
                String::from_utf8_lossy(value.as_bytes()).into_owned(),
            ));
            for r in &mut remove[cut.start()..cut.end()] {
                *r = true;
            }
        }
        let extracted: String = name
            .char_indices()
            .filter(|(i, _)| !remove[*i])
            .map(|(_, c)| c)
            .collect();
        (extracted, tags)
    }
}

/// Prometheus sanitizing: every character but `[a-zA-Z0-9_]` becomes `_`.
pub fn sanitize(name: &str) -> String {
    name.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

/// The Prometheus family of a tag-extracted name; `None` when Envoy leaves it out (a
/// custom name that is empty or starts with a digit).
pub fn metric_name(extracted: &str) -> Option<String> {
    match extracted
        .strip_prefix(CUSTOM_NAMESPACE)
        .and_then(|r| r.strip_prefix('.'))
    {
        Some(custom) => {
            let s = sanitize(custom);
            if s.is_empty() || s.starts_with(|c: char| c.is_ascii_digit()) {
                None
            } else {
                Some(s)
            }
        }
        None => Some(format!("envoy_{}", sanitize(extracted))),
    }
}

/// One series of `/stats/prometheus`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Series {
    pub family: String,
    pub kind: MetricKind,
    /// Label name (sanitized) and value, in extraction order.
    pub labels: Vec<(String, String)>,
    /// The full stat name it comes from (`wasmcustom.<name>`).
    pub stat: String,
    pub value: i64,
}

/// The series Envoy exposes for metrics a Wasm filter defined (`name` as defined,
/// without the namespace).
pub fn series(producer: &TagProducer, metrics: &[Metric]) -> Vec<Series> {
    let mut out = Vec::new();
    for m in metrics {
        let stat = format!("{CUSTOM_NAMESPACE}.{}", m.name);
        let (extracted, tags) = producer.produce(&stat);
        let Some(family) = metric_name(&extracted) else {
            continue;
        };
        out.push(Series {
            family,
            kind: m.kind,
            labels: tags.into_iter().map(|(n, v)| (sanitize(&n), v)).collect(),
            stat,
            value: m.value,
        });
    }
    out
}

/// The text `/stats/prometheus` answers for these metrics: `# TYPE` per family,
/// counters then gauges, families and series sorted, a blank line after each family.
pub fn exposition(producer: &TagProducer, metrics: &[Metric]) -> String {
    let all = series(producer, metrics);
    let mut text = String::new();
    for (kind, word) in [
        (MetricKind::Counter, "counter"),
        (MetricKind::Gauge, "gauge"),
    ] {
        let mut families: BTreeMap<&str, Vec<&Series>> = BTreeMap::new();
        for s in all.iter().filter(|s| s.kind == kind) {
            families.entry(&s.family).or_default().push(s);
        }
        for (family, mut members) in families {
            members.sort_by(|a, b| a.stat.cmp(&b.stat));
            text.push_str(&format!("# TYPE {family} {word}\n"));
            for s in members {
                let labels: Vec<String> = s
                    .labels
                    .iter()
                    .map(|(n, v)| format!("{n}=\"{v}\""))
                    .collect();
                text.push_str(&format!("{family}{{{}}} {}\n", labels.join(","), s.value));
            }
            text.push('\n');
        }
    }
    text
}

/// Reads `stats_config.stats_tags` from an Envoy bootstrap in YAML, as the shipped
/// files write it (`- tag_name: X` then `regex: '...'`, single-quoted or plain). Strict:
/// a `tag_name` it did not read as such is an error, so a reformatted file is noticed.
pub fn parse_stats_tags(yaml: &str) -> Result<Vec<TagSpecifier>, String> {
    let mut lines = yaml.lines().peekable();
    for l in lines.by_ref() {
        if l.trim_end() == "  stats_tags:" || l.trim() == "stats_tags:" {
            break;
        }
    }
    let mut out = Vec::new();
    while let Some(l) = lines.peek().copied() {
        let t = l.trim();
        let Some(name) = t.strip_prefix("- tag_name:") else {
            break;
        };
        lines.next();
        let regex_line = lines
            .next()
            .ok_or("stats_tags: tag_name without regex")?
            .trim();
        let raw = regex_line
            .strip_prefix("regex:")
            .ok_or_else(|| {
                format!("stats_tags: expected `regex:` after tag_name, got {regex_line:?}")
            })?
            .trim();
        let regex = match raw.strip_prefix('\'').and_then(|r| r.strip_suffix('\'')) {
            Some(q) => q.replace("''", "'"),
            None if raw.starts_with('"') => {
                return Err("stats_tags: write regexes single-quoted".into())
            }
            None => raw.to_string(),
        };
        out.push(TagSpecifier {
            tag_name: name.trim().to_string(),
            regex,
        });
    }
    if out.is_empty() {
        return Err("no stats_config.stats_tags found".into());
    }
    if yaml.matches("tag_name:").count() != out.len() {
        return Err("stats_tags: write each as `- tag_name: X` then `regex: '...'`".into());
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(name: &str, kind: MetricKind) -> Metric {
        Metric {
            name: name.into(),
            kind,
            value: 1,
            samples: vec![],
        }
    }

    #[test]
    fn prefixes_as_envoy_extracts_them() {
        assert_eq!(regex_prefix(r"^wasmcustom\.s2s_guard"), "wasmcustom");
        assert_eq!(regex_prefix(r"^http(?=\.).*"), "http");
        assert_eq!(regex_prefix(r"^(?:cluster\.)?grpc"), "");
        assert_eq!(regex_prefix(r"_rq(_(\d{3}))$"), "");
        assert_eq!(regex_prefix("^abc$"), "abc");
    }

    #[test]
    fn cuts_of_all_extractors_apply_to_the_original_name() {
        let p = TagProducer::new(&[
            TagSpecifier {
                tag_name: "a".into(),
                regex: r"^wasmcustom\.x(\.a\.(\w+))".into(),
            },
            TagSpecifier {
                tag_name: "b".into(),
                regex: r"^wasmcustom\.x(?:\.a\.\w+)?(\.b\.(\w+))".into(),
            },
        ])
        .unwrap();
        let (name, tags) = p.produce("wasmcustom.x.a.one.b.two");
        assert_eq!(name, "wasmcustom.x");
        assert_eq!(
            tags,
            vec![("a".into(), "one".into()), ("b".into(), "two".into())]
        );
        // Extractors of another first token do not run.
        assert_eq!(p.produce("other.x.a.one").0, "other.x.a.one");
        // The unanchored defaults do.
        let (name, tags) = p.produce("wasmcustom.up_rq_503");
        assert_eq!(name, "wasmcustom.up_rq");
        assert_eq!(tags, vec![("envoy.response_code".into(), "503".into())]);
        let text = exposition(&p, &[m("x.a.one.b.two", MetricKind::Counter)]);
        assert_eq!(text, "# TYPE x counter\nx{a=\"one\",b=\"two\"} 1\n\n");
        assert_eq!(
            metric_name("cluster.c.upstream_rq"),
            Some("envoy_cluster_c_upstream_rq".into())
        );
        assert_eq!(metric_name("wasmcustom.1x"), None);
    }

    #[test]
    fn reads_stats_tags_from_yaml() {
        let y = "a: 1\nstats_config:\n  stats_tags:\n  - tag_name: t\n    regex: '^x(\\.y\\.(\\w+))'\n  - tag_name: u\n    regex: 'it''s'\n\nnext: 2\n";
        let t = parse_stats_tags(y).unwrap();
        assert_eq!(t.len(), 2);
        assert_eq!(t[0].regex, r"^x(\.y\.(\w+))");
        assert_eq!(t[1].regex, "it's");
        assert!(parse_stats_tags("a: 1\n").is_err());
        let reordered =
            "stats_tags:\n  - tag_name: t\n    regex: 'x'\n  - regex: 'y'\n    tag_name: u\n";
        assert!(parse_stats_tags(reordered).is_err());
    }
}
