#!/usr/bin/env python3
"""make check-deploy: validates the deployment files offline.

- envoy/*.yaml: parsed as a whole Envoy bootstrap by envoy-data-plane (unknown fields,
  bad enums and unknown @types are errors);
- envoy/istio/wasmplugin*.yaml: validated against the WasmPlugin CRD schema in
  ../shared/schemas (jsonschema), with unknown fields rejected;
- envoy/docker-compose.yaml: parsed by compose-spec;
- every s2s-guard configuration embedded in them (Envoy `configuration`, Istio
  `pluginConfig`) is written out for the filter's own validation, which the caller
  runs through the test host (scripts/check-deploy.sh).
"""
import copy
import importlib
import json
import pathlib
import pkgutil
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


def main():
    OUT.mkdir(parents=True, exist_ok=True)
    for old in OUT.glob("*.json"):
        old.unlink()
    n_cfg = 0

    load_envoy_types()
    from envoy_data_plane.envoy.config.bootstrap.v3 import Bootstrap

    for path in sorted((ROOT / "envoy").glob("*.yaml")):
        if path.name.startswith("docker-compose"):
            continue
        doc = yaml.safe_load(path.read_text())
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
        print(f"ok  {compose.relative_to(ROOT)}: compose specification")
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
