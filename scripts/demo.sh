#!/usr/bin/env bash
# make demo: the docker-compose demo where a Docker engine runs, else the test host's
# local HTTP demo (`serve`); then the example requests; then it stops what it started.
set -euo pipefail
cd "$(dirname "$0")/.."
command -v curl >/dev/null 2>&1 || { echo "demo: installing curl" >&2; apt-get install -y -qq curl >/dev/null 2>&1 || true; }

if command -v docker >/dev/null 2>&1 && timeout 10 docker info >/dev/null 2>&1; then
  echo "== docker-compose demo: Envoy + s2s-guard + echo collector + token service"
  chmod a+r envoy/envoy.yaml envoy/demo/* dist/s2s-guard.wasm
  docker compose -f envoy/docker-compose.yaml up -d
  trap 'docker compose -f envoy/docker-compose.yaml down' EXIT
  for _ in $(seq 60); do curl -s -o /dev/null http://127.0.0.1:10000/healthz && break; sleep 1; done
  sleep 4 # the first token set
  bash envoy/demo/requests.sh http://127.0.0.1:10000
  exit 0
fi

echo "== no Docker engine here: the local HTTP demo (test host 'serve', 2 workers)"
echo "== token set from envoy/demo/tokens.json via the built-in token service"
PORT=${S2S_DEMO_PORT:-18000}
echo "== building the test host (wasmtime; about 4 minutes the first time, seconds after)"
cargo build -q -p s2s-guard-host
target/debug/s2s-guard-host serve --wasm dist/s2s-guard.wasm --config envoy/demo/filter-config.json \
  --listen "127.0.0.1:$PORT" --tokens-file envoy/demo/tokens.json &
pid=$!
# Keep the script's own status: the server we kill ends with 143, which is not ours.
trap 'rc=$?; kill $pid 2>/dev/null; wait $pid 2>/dev/null || true; exit $rc' EXIT
for _ in $(seq 50); do curl -s -o /dev/null "http://127.0.0.1:$PORT/healthz" && break; sleep 0.2; done
sleep 1 # the first token set
bash envoy/demo/requests.sh "http://127.0.0.1:$PORT"
echo
echo "== the same requests through the filter in the test host, with counters"
target/debug/s2s-guard-host run --wasm dist/s2s-guard.wasm --config demo/config.json --requests demo/requests.jsonl --table
