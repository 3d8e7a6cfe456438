#!/usr/bin/env python3
"""make check-deploy: validates the deployment files offline.

- envoy/*.yaml: parsed as a whole Envoy bootstrap by envoy-data-plane (unknown fields,
  bad enums and unknown @types are errors);
- envoy/istio/wasmplugin*.yaml: validated against the WasmPlugin CRD schema in
  ../shared/schemas (jsonschema), with unknown fields rejected;
- envoy/docker-compose.yaml: parsed by compose-spec;
- every s2s-guard configuration embedded in them (Envoy `configuration`, Istio
  `pluginConfig`) is written out for the filter's own validation, which the caller
  runs through the test host (scripts/check-deploy.sh);
- the bootstraps' `stats_tags` are the ones of docs/metrics.md, and so are those of
  envoy/istio/stats-tags.yaml (a ConfigMap whose bootstrap fragment is parsed as one);
- quotas (envoy/quotas.yaml): Envoy's rate limit filters come after s2s-guard, take
  their descriptors from its identity headers, the local one is enabled and enforced,
  and every descriptor Envoy sends has a limit in envoy/ratelimit/config.yaml, which is
  checked as envoyproxy/ratelimit loads it (keys, units, duplicates);
- envoy/prometheus: the configuration and the alert rules (with their unit tests) by
  promtool when it is installed (Debian's `prometheus` package), else as YAML in the
  rule-file structure; the rules are the ones printed in docs/metrics.md;
- envoy/grafana: the provisioning files and the dashboard (JSON, panels, data source);
  the metric and label names of its queries and of the alerts are checked against
  Envoy's naming of every counter the filter defines by tests/prometheus.rs;
- every file the compose file mounts exists.
"""
import copy
import importlib
import json
import pathlib
import pkgutil
import re
import shutil
import subprocess
import sys

import yaml

ROOT = pathlib.Path(__file__).resolve().parent.parent
OUT = ROOT / "target" / "deploy-configs"
errors = []


def fail(path, msg):
    errors.append(f"{path}: {msg}")


def load_envoy_types():
    import envoy_data_plane

    for m in pkgutil.walk_packages(envoy_data_plane.__path__, "envoy_data_plane."):
        try:
            importlib.import_module(m.name)
        except Exception:  # a few optional modules need extras; not ours
            pass


def embedded_configs(node, found):
    """Collects s2s-guard configurations: Wasm `configuration` StringValues."""
    if isinstance(node, dict):
        cfg = node.get("configuration")
        if isinstance(cfg, dict) and cfg.get("@type", "").endswith("google.protobuf.StringValue"):
            found.append(cfg.get("value", ""))
        for v in node.values():
            embedded_configs(v, found)
    elif isinstance(node, list):
        for v in node:
            embedded_configs(v, found)


def connection_managers(node, found):
    """Collects HttpConnectionManager configurations."""
    if isinstance(node, dict):
        if node.get("@type", "").endswith("http_connection_manager.v3.HttpConnectionManager"):
            found.append(node)
        for v in node.values():
            connection_managers(v, found)
    elif isinstance(node, list):
        for v in node:
            connection_managers(v, found)


def check_path_handling(path, doc):
    """Every listener in front of s2s-guard reads paths one way (docs/security.md):
    RFC 3986 normalization, merged slashes, escaped slashes refused, and an explicit
    choice for header names with underscores."""
    hcms = []
    connection_managers(doc, hcms)
    if not hcms:
        fail(path, "no HttpConnectionManager")
    for h in hcms:
        if h.get("normalize_path") is not True:
            fail(path, "HttpConnectionManager: normalize_path must be true")
        if h.get("merge_slashes") is not True:
            fail(path, "HttpConnectionManager: merge_slashes must be true")
        if h.get("path_with_escaped_slashes_action") not in ("REJECT_REQUEST", "UNESCAPE_AND_REDIRECT"):
            fail(path, "HttpConnectionManager: path_with_escaped_slashes_action must be REJECT_REQUEST")
        action = h.get("common_http_protocol_options", {}).get("headers_with_underscores_action")
        if action not in ("ALLOW", "REJECT_REQUEST", "DROP_HEADER"):
            fail(path, "HttpConnectionManager: common_http_protocol_options.headers_with_underscores_action must be set")


IDENTITY_HEADERS = {"x-s2s-guard-token-id", "x-s2s-guard-app"}


def http_filters(hcm):
    return [f.get("name", "") for f in hcm.get("http_filters", [])]


def route_rate_limits(hcm):
    """(descriptor_key, header_name) of every request_headers action of the HCM's routes."""
    out = []
    for vh in hcm.get("route_config", {}).get("virtual_hosts", []):
        for rl in vh.get("rate_limits", []):
            for a in rl.get("actions", []):
                rh = a.get("request_headers")
                if rh:
                    out.append((rh.get("descriptor_key"), rh.get("header_name")))
        for r in vh.get("routes", []):
            for rl in r.get("route", {}).get("rate_limits", []):
                for a in rl.get("actions", []):
                    if "request_headers" not in a:
                        out.append((None, f"action {sorted(a)}"))
                        continue
                    rh = a["request_headers"]
                    out.append((rh.get("descriptor_key"), rh.get("header_name")))
    return out


RL_KEYS = {"domain", "key", "value", "descriptors", "rate_limit", "unit", "requests_per_unit", "shadow_mode"}
RL_UNITS = {"SECOND", "MINUTE", "HOUR", "DAY"}


def check_ratelimit_config(path, doc):
    """As envoyproxy/ratelimit loads a file: known keys, a domain, keys set, units known,
    no duplicate composite key. Returns (domain, {descriptor key: has a limit})."""

    def keys(n):
        if isinstance(n, dict):
            for k, v in n.items():
                if k not in RL_KEYS:
                    fail(path, f"unknown key '{k}'")
                keys(v)
        elif isinstance(n, list):
            for v in n:
                if not isinstance(v, dict):
                    fail(path, "a list holds something other than a map")
                keys(v)

    keys(doc)
    domain = doc.get("domain") if isinstance(doc, dict) else None
    if not domain:
        fail(path, "empty domain")
    top = {}

    def load(descs, parent, level):
        seen = set()
        for d in descs or []:
            k = d.get("key")
            if not k:
                fail(path, f"{parent}: descriptor has empty key")
                continue
            final = k + ("_" + str(d["value"]) if d.get("value") else "")
            if final in seen:
                fail(path, f"duplicate descriptor composite key '{parent}{final}'")
            seen.add(final)
            rl = d.get("rate_limit")
            if rl is not None:
                if str(rl.get("unit", "")).upper() not in RL_UNITS:
                    fail(path, f"{parent}{final}: invalid rate limit unit '{rl.get('unit')}'")
                if not isinstance(rl.get("requests_per_unit"), int) or rl["requests_per_unit"] < 0:
                    fail(path, f"{parent}{final}: requests_per_unit must be a non-negative integer")
            if level == 0 and not d.get("value"):
                top[k] = rl is not None
            load(d.get("descriptors"), parent + final + ".", level + 1)

    load(doc.get("descriptors") if isinstance(doc, dict) else None, f"{domain}.", 0)
    return domain, top


def check_quotas(path, doc, embedded):
    """Rate limit filters: after s2s-guard, descriptors from its identity headers."""
    hcms = []
    connection_managers(doc, hcms)
    n = 0
    for h in hcms:
        names = http_filters(h)
        rl = [i for i, f in enumerate(names) if f in ("envoy.filters.http.local_ratelimit", "envoy.filters.http.ratelimit")]
        if not rl:
            continue
        n += 1
        if "envoy.filters.http.wasm" not in names or min(rl) < names.index("envoy.filters.http.wasm"):
            fail(path, "rate limit filters must come after the s2s-guard Wasm filter")
        if names[-1] != "envoy.filters.http.router":
            fail(path, "the router must be the last HTTP filter")
        actions = route_rate_limits(h)
        if not actions:
            fail(path, "rate limit filters without route rate_limits: no descriptor is ever made")
        for key, header in actions:
            if header not in IDENTITY_HEADERS:
                fail(path, f"quota descriptor {key!r} from {header!r}: only s2s-guard's identity headers {sorted(IDENTITY_HEADERS)} are verified")
        keys = {k for k, _ in actions}
        for f in h.get("http_filters", []):
            tc = f.get("typed_config", {})
            if f.get("name") == "envoy.filters.http.wasm":
                cfg = tc.get("config", {})
                value = cfg.get("configuration", {}).get("value", "{}")
                hold = json.loads(value).get("hold_headers_for_body") is True
                if hold != (cfg.get("allow_on_headers_stop_iteration") is True):
                    fail(path, "hold_headers_for_body and allow_on_headers_stop_iteration go together")
                if not hold:
                    fail(path, "without hold_headers_for_body, form-body routes carry no identity to the quota filters")
            if f.get("name") == "envoy.filters.http.local_ratelimit":
                for k in ("filter_enabled", "filter_enforced"):
                    if tc.get(k, {}).get("default_value", {}).get("numerator") != 100:
                        fail(path, f"local_ratelimit: {k} must default to 100% (unset: the filter does nothing)")
                for d in tc.get("descriptors", []):
                    for e in d.get("entries", []):
                        if e.get("key") not in keys:
                            fail(path, f"local_ratelimit descriptor key {e.get('key')!r} is never sent by the route's rate_limits")
            if f.get("name") == "envoy.filters.http.ratelimit":
                rl_path = ROOT / "envoy" / "ratelimit" / "config.yaml"
                rl_doc = yaml.safe_load(rl_path.read_text())
                domain, top = check_ratelimit_config(rl_path.relative_to(ROOT), rl_doc)
                if tc.get("domain") != domain:
                    fail(path, f"ratelimit domain {tc.get('domain')!r} is not {rl_path.relative_to(ROOT)}'s {domain!r}")
                for k in keys:
                    if not top.get(k):
                        fail(path, f"descriptor {k!r} has no limit in {rl_path.relative_to(ROOT)}")
                cluster = tc.get("rate_limit_service", {}).get("grpc_service", {}).get("envoy_grpc", {}).get("cluster_name")
                clusters = {c.get("name"): c for c in doc.get("static_resources", {}).get("clusters", [])}
                if cluster not in clusters:
                    fail(path, f"rate limit service cluster {cluster!r} not defined")
                elif "http2_protocol_options" not in json.dumps(clusters[cluster]):
                    fail(path, f"cluster {cluster!r} must speak HTTP/2 (gRPC)")
    return n


def stats_tags(doc):
    return doc.get("stats_config", {}).get("stats_tags")


def docs_yaml_blocks(md):
    return re.findall(r"```yaml\n(.*?)```", md, re.S)


def check_stats_tags(bootstraps):
    md = (ROOT / "docs" / "metrics.md").read_text()
    documented = None
    for block in docs_yaml_blocks(md):
        d = yaml.safe_load(block)
        if isinstance(d, dict) and "stats_config" in d:
            documented = stats_tags(d)
    if not documented:
        fail("docs/metrics.md", "no stats_config block")
        return
    for path, doc in bootstraps:
        if stats_tags(doc) != documented:
            fail(path, "stats_config.stats_tags differ from docs/metrics.md")
    print(f"ok  stats_tags: {len(documented)} tags, the same in docs/metrics.md and {len(bootstraps)} bootstraps (Istio's included)")


def check_prometheus():
    prom = ROOT / "envoy" / "prometheus"
    rules_path = prom / "alerts.yaml"
    rules_text = rules_path.read_text()
    md = (ROOT / "docs" / "metrics.md").read_text()
    if rules_text not in [b for b in docs_yaml_blocks(md)]:
        fail("docs/metrics.md", f"the alert rules block is not {rules_path.relative_to(ROOT)}")
    promtool = shutil.which("promtool")
    if promtool:
        for args in (["check", "config", "prometheus.yml"], ["check", "rules", "alerts.yaml"], ["test", "rules", "alerts.test.yaml"]):
            r = subprocess.run([promtool, *args], cwd=prom, capture_output=True, text=True)
            if r.returncode != 0:
                fail(f"envoy/prometheus: promtool {' '.join(args)}", (r.stdout + r.stderr).strip())
        print("ok  envoy/prometheus: promtool check config, check rules, test rules")
        return
    # No promtool: the rule-file structure, as YAML.
    doc = yaml.safe_load(rules_text)
    cfg = yaml.safe_load((prom / "prometheus.yml").read_text())
    if "alerts.yaml" not in cfg.get("rule_files", []):
        fail("envoy/prometheus/prometheus.yml", "does not load alerts.yaml")
    for job in cfg.get("scrape_configs", []):
        if job.get("metrics_path") != "/stats/prometheus":
            fail("envoy/prometheus/prometheus.yml", f"job {job.get('job_name')}: metrics_path must be /stats/prometheus")
    groups = doc.get("groups") if isinstance(doc, dict) else None
    if not groups:
        fail(rules_path.relative_to(ROOT), "no groups")
    names = set()
    for g in groups or []:
        if not g.get("name") or g["name"] in names:
            fail(rules_path.relative_to(ROOT), "groups need unique names")
        names.add(g.get("name"))
        for r in g.get("rules", []):
            unknown = set(r) - {"alert", "expr", "for", "labels", "annotations", "keep_firing_for"}
            if unknown or not r.get("alert") or not isinstance(r.get("expr"), str):
                fail(rules_path.relative_to(ROOT), f"rule {r.get('alert')!r}: alert and expr required, unknown {sorted(unknown)}")
            if "for" in r and not re.fullmatch(r"(\d+[smhdwy])+", str(r["for"])):
                fail(rules_path.relative_to(ROOT), f"rule {r.get('alert')}: bad duration {r['for']!r}")
            if r.get("expr", "").count("(") != r.get("expr", "").count(")"):
                fail(rules_path.relative_to(ROOT), f"rule {r.get('alert')}: unbalanced parentheses")
    print("ok  envoy/prometheus: YAML rule structure (promtool not installed: apt-get install prometheus to run it)")


def check_grafana():
    g = ROOT / "envoy" / "grafana"
    ds = yaml.safe_load((g / "provisioning" / "datasources" / "prometheus.yaml").read_text())
    uids = {d.get("uid") for d in ds.get("datasources", []) if d.get("type") == "prometheus"}
    if ds.get("apiVersion") != 1 or not uids:
        fail("envoy/grafana/provisioning/datasources", "apiVersion 1 and a prometheus data source with a uid")
    prov = yaml.safe_load((g / "provisioning" / "dashboards" / "s2s-guard.yaml").read_text())
    if prov.get("apiVersion") != 1 or not prov.get("providers"):
        fail("envoy/grafana/provisioning/dashboards", "apiVersion 1 and a provider")
    for path in sorted((g / "dashboards").glob("*.json")):
        rel = path.relative_to(ROOT)
        try:
            d = json.loads(path.read_text())
        except ValueError as e:
            fail(rel, f"not JSON: {e}")
            continue
        if not d.get("uid") or not d.get("title") or not d.get("panels"):
            fail(rel, "uid, title and panels required")
        ids = set()
        n = 0
        for p in d.get("panels", []):
            if p.get("id") in ids:
                fail(rel, f"duplicate panel id {p.get('id')}")
            ids.add(p.get("id"))
            if p.get("type") == "row":
                continue
            if not all(k in p.get("gridPos", {}) for k in ("h", "w", "x", "y")):
                fail(rel, f"panel {p.get('title')!r}: gridPos")
            if p.get("datasource", {}).get("uid") not in uids:
                fail(rel, f"panel {p.get('title')!r}: data source uid not provisioned")
            for t in p.get("targets", []):
                if not t.get("expr"):
                    fail(rel, f"panel {p.get('title')!r}: a target without expr")
                n += 1
        print(f"ok  {rel}: {len(ids)} panels, {n} queries")


def check_compose_mounts(compose_doc):
    base = ROOT / "envoy"
    for name, svc in compose_doc.get("services", {}).items():
        for v in svc.get("volumes", []):
            src = v.split(":")[0] if isinstance(v, str) else v.get("source", "")
            if src.startswith("."):
                if not (base / src).exists():
                    fail("envoy/docker-compose.yaml", f"service {name}: mounts {src}, which does not exist")


def strict(schema):
    """The CRD schema with additionalProperties: false wherever properties are listed."""
    s = copy.deepcopy(schema)

    def walk(n):
        if isinstance(n, dict):
            if "properties" in n and "additionalProperties" not in n and not n.get("x-kubernetes-preserve-unknown-fields"):
                n["additionalProperties"] = False
            for v in n.values():
                walk(v)
        elif isinstance(n, list):
            for v in n:
                walk(v)

    walk(s)
    return s


def self_test():
    """The checks above must catch what they are for: each mutation of the shipped
    files below has to produce at least one error (and the shipped files none)."""
    global errors
    quotas = yaml.safe_load((ROOT / "envoy" / "quotas.yaml").read_text())

    def hcm(doc):
        found = []
        connection_managers(doc, found)
        return found[0]

    def local_rl(doc):
        return next(f for f in hcm(doc)["http_filters"] if f["name"] == "envoy.filters.http.local_ratelimit")

    def wasm(doc):
        return next(f for f in hcm(doc)["http_filters"] if f["name"] == "envoy.filters.http.wasm")

    def swap_order(d):
        fs = hcm(d)["http_filters"]
        fs.insert(0, fs.pop(1))

    def client_header(d):
        a = hcm(d)["route_config"]["virtual_hosts"][0]["routes"][0]["route"]["rate_limits"][0]["actions"][0]
        a["request_headers"]["header_name"] = "x-api-key"

    def not_enforced(d):
        del local_rl(d)["typed_config"]["filter_enforced"]

    def unknown_local_key(d):
        local_rl(d)["typed_config"]["descriptors"][0]["entries"][0]["key"] = "user"

    def no_hold(d):
        del wasm(d)["typed_config"]["config"]["allow_on_headers_stop_iteration"]

    def no_limit_for_app(d):
        a = hcm(d)["route_config"]["virtual_hosts"][0]["routes"][0]["route"]["rate_limits"][1]["actions"][0]
        a["request_headers"]["descriptor_key"] = "tenant"
        local_rl(d)["typed_config"]["descriptors"].pop()

    def http1_cluster(d):
        c = next(c for c in d["static_resources"]["clusters"] if c["name"] == "ratelimit")
        del c["typed_extension_protocol_options"]

    cases = [swap_order, client_header, not_enforced, unknown_local_key, no_hold, no_limit_for_app, http1_cluster]
    errors = []
    check_quotas("quotas.yaml", quotas, None)
    assert not errors, errors
    for mutate in cases:
        doc = copy.deepcopy(quotas)
        mutate(doc)
        errors = []
        check_quotas("quotas.yaml", doc, None)
        assert errors, f"check_quotas missed {mutate.__name__}"
    rl = yaml.safe_load((ROOT / "envoy" / "ratelimit" / "config.yaml").read_text())
    for bad in (
        {**rl, "domian": "x"},
        {**rl, "domain": ""},
        {**rl, "descriptors": rl["descriptors"] + [rl["descriptors"][0]]},
        {**rl, "descriptors": [{"key": "token_id", "rate_limit": {"unit": "fortnight", "requests_per_unit": 1}}]},
        {**rl, "descriptors": [{"value": "x", "rate_limit": {"unit": "second", "requests_per_unit": 1}}]},
    ):
        errors = []
        check_ratelimit_config("config.yaml", bad)
        assert errors, f"check_ratelimit_config missed {bad}"
    errors = []
    print("ok  check-deploy self-test: quota and rate limit service checks catch 12 mutations")


def main():
    OUT.mkdir(parents=True, exist_ok=True)
    for old in OUT.glob("*.json"):
        old.unlink()
    n_cfg = 0

    self_test()
    load_envoy_types()
    from envoy_data_plane.envoy.config.bootstrap.v3 import Bootstrap

    bootstraps = []
    n_quota = 0
    for path in sorted((ROOT / "envoy").glob("*.yaml")):
        if path.name.startswith("docker-compose"):
            continue
        doc = yaml.safe_load(path.read_text())
        bootstraps.append((path.relative_to(ROOT), doc))
        n_quota += check_quotas(path.relative_to(ROOT), doc, None)
        try:
            Bootstrap.from_dict(doc)
        except Exception as e:  # noqa: BLE001 - report whatever the parser says
            fail(path.relative_to(ROOT), f"not a valid Envoy bootstrap: {type(e).__name__}: {e}")
        check_path_handling(path.relative_to(ROOT), doc)
        found = []
        embedded_configs(doc, found)
        if not found:
            fail(path.relative_to(ROOT), "no s2s-guard configuration found")
        for i, cfg in enumerate(found):
            (OUT / f"{path.stem}-{i}.json").write_text(cfg)
            n_cfg += 1
        print(f"ok  {path.relative_to(ROOT)}: Envoy bootstrap, {len(found)} s2s-guard configuration(s)")

    # Istio: the stats_tags ConfigMap for sidecar.istio.io/bootstrapOverride, a
    # bootstrap fragment that Envoy merges into the one Istio generates.
    for path in sorted((ROOT / "envoy" / "istio").glob("*.yaml")):
        for doc in yaml.safe_load_all(path.read_text()):
            if not doc or doc.get("kind") != "ConfigMap":
                continue
            rel = path.relative_to(ROOT)
            frag = yaml.safe_load((doc.get("data") or {}).get("custom_bootstrap.json", "") or "null")
            if not isinstance(frag, dict):
                fail(rel, "ConfigMap without a custom_bootstrap.json bootstrap fragment")
                continue
            try:
                Bootstrap.from_dict(frag)
            except Exception as e:  # noqa: BLE001
                fail(rel, f"custom_bootstrap.json is not a valid Envoy bootstrap: {type(e).__name__}: {e}")
            bootstraps.append((rel, frag))
            print(f"ok  {rel}: ConfigMap {doc['metadata']['name']}, an Envoy bootstrap fragment")
    check_stats_tags(bootstraps)
    if not n_quota:
        fail("envoy/", "no bootstrap with quotas (rate limit filters)")
    else:
        print(f"ok  quotas: {n_quota} listener(s) with rate limit filters after s2s-guard; envoy/ratelimit/config.yaml")
    check_prometheus()
    check_grafana()

    import jsonschema

    # The project's shared schemas sit beside the checkout; a copy is vendored for
    # checkouts without them (keep it in sync: the shared one wins when present).
    shared = ROOT.parent / "shared" / "schemas" / "istio-wasmplugin-crd-schema.json"
    vendored = ROOT / "envoy" / "istio" / "wasmplugin-crd-schema.json"
    crd_path = shared if shared.exists() else vendored
    crd = json.loads(crd_path.read_text())
    print(f"    WasmPlugin CRD schema: {crd_path}")
    spec_schema = strict(crd["openAPIV3Schema"])
    for path in sorted((ROOT / "envoy" / "istio").glob("*.yaml")):
        for doc in yaml.safe_load_all(path.read_text()):
            if not doc or doc.get("kind") != "WasmPlugin":
                continue
            if doc.get("apiVersion") not in ("extensions.istio.io/v1alpha1",):
                fail(path.relative_to(ROOT), f"unexpected apiVersion {doc.get('apiVersion')}")
            body = {k: v for k, v in doc.items() if k in ("spec",)}
            try:
                jsonschema.validate(body, spec_schema)
            except jsonschema.ValidationError as e:
                fail(path.relative_to(ROOT), f"WasmPlugin schema: {e.message} at {list(e.absolute_path)}")
            pc = doc.get("spec", {}).get("pluginConfig")
            if pc is None:
                fail(path.relative_to(ROOT), "WasmPlugin without pluginConfig")
            else:
                (OUT / f"istio-{path.stem}.json").write_text(json.dumps(pc))
                n_cfg += 1
            print(f"ok  {path.relative_to(ROOT)}: WasmPlugin {doc['metadata']['name']}")

    compose = ROOT / "envoy" / "docker-compose.yaml"
    try:
        from compose_spec import PyCompose

        PyCompose.from_yaml(compose.read_text())
        check_compose_mounts(yaml.safe_load(compose.read_text()))
        print(f"ok  {compose.relative_to(ROOT)}: compose specification, mounted files exist")
    except Exception as e:  # noqa: BLE001
        fail(compose.relative_to(ROOT), f"not a valid compose file: {e}")

    if errors:
        for e in errors:
            print("FAIL", e, file=sys.stderr)
        return 1
    print(f"{n_cfg} embedded configurations written to {OUT.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
