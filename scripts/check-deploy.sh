#!/usr/bin/env bash
# make check-deploy: validates envoy/ offline (see scripts/check-deploy.py), then
# loads every embedded s2s-guard configuration into the filter through the test host.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=target/venv-deploy
if [ ! -x "$VENV/bin/python" ] || ! "$VENV/bin/python" -c "import envoy_data_plane, jsonschema, yaml, compose_spec" 2>/dev/null; then
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install -q --disable-pip-version-check \
    "envoy-data-plane==2.2.0" "jsonschema>=4.20" "pyyaml>=6" "compose-spec==0.2.1"
fi
"$VENV/bin/python" scripts/check-deploy.py
status=0
for cfg in target/deploy-configs/*.json envoy/demo/filter-config.json; do
  cargo run -q -p s2s-guard-host -- check-config --wasm dist/s2s-guard.wasm --config "$cfg" || status=1
done
exit $status
