#!/usr/bin/env bash
# make check-deploy: validates envoy/ offline (see scripts/check-deploy.py), then
# loads every embedded s2s-guard configuration into the filter through the test host.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=target/venv-deploy
if [ ! -x "$VENV/bin/python" ] || ! "$VENV/bin/python" -c "import envoy_data_plane, jsonschema, yaml, compose_spec" 2>/dev/null; then
  echo "check-deploy: installing the Python validators into $VENV from PyPI (envoy-data-plane, jsonschema, compose-spec; about a minute the first time)" >&2
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install -q --disable-pip-version-check \
    "envoy-data-plane==2.2.0" "jsonschema>=4.20" "pyyaml>=6" "compose-spec==0.2.1"
fi
# promtool (Debian's `prometheus` package) checks the alert rules; without it they are
# checked as YAML. CI (CI=true) or S2S_INSTALL_PROMTOOL=1 installs it when apt can,
# within 3 minutes; elsewhere it is left to you (the package also ships the server).
if ! command -v promtool >/dev/null 2>&1 && { [ "${CI:-}" = true ] || [ "${S2S_INSTALL_PROMTOOL:-}" = 1 ]; } \
  && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
  echo "check-deploy: installing promtool (Debian package prometheus; a minute or two)" >&2
  { timeout 60 apt-get update -qq && DEBIAN_FRONTEND=noninteractive timeout 120 \
      apt-get install -y -qq --no-install-recommends prometheus; } >/dev/null 2>&1 \
    || echo "check-deploy: promtool not installed; the alert rules are checked as YAML" >&2
fi
"$VENV/bin/python" scripts/check-deploy.py
HOST_BIN=${S2S_HOST_BIN:-}
if [ -z "$HOST_BIN" ]; then
  echo "check-deploy: building the test host (wasmtime; about 4 minutes the first time, seconds after)" >&2
  cargo build -q -p s2s-guard-host
  HOST_BIN=target/debug/s2s-guard-host
fi
status=0
for cfg in target/deploy-configs/*.json envoy/demo/filter-config.json; do
  "$HOST_BIN" check-config --wasm dist/s2s-guard.wasm --config "$cfg" || status=1
done
exit $status
