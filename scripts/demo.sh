#!/usr/bin/env bash
# make demo: the docker-compose demo where a Docker engine runs, else the test host's
# local HTTP demo (`serve`); then the example requests, with the counters before and
# after as Envoy's /stats/prometheus names them; then it stops what it started.
#
# S2S_DEMO_NO_DOCKER=1 forces the local demo; S2S_DEMO_PORT / S2S_DEMO_ADMIN_PORT
# choose its ports (18000 / 19901); S2S_HOST_BIN names a built test host (tests).
set -euo pipefail
cd "$(dirname "$0")/.."
command -v curl >/dev/null 2>&1 || { echo "demo: installing curl" >&2; apt-get install -y -qq curl >/dev/null 2>&1 || true; }

# The series of /stats/prometheus, one "name{labels} value" per line.
snapshot() { curl -s -m 10 "$1" | grep -v '^#' | grep -v '^$' || true; }
# The series that changed between two snapshots.
changes() {
  awk 'NR == FNR { before[$1] = $2; next }
       { b = ($1 in before) ? before[$1] : 0; if ($2 != b) { printf "  %-96s %6s -> %s\n", $1, b, $2; n++ } }
       END { if (!n) print "  (none)" }' "$1" "$2"
}
TMP=$(mktemp -d)

if [ "${S2S_DEMO_NO_DOCKER:-}" != 1 ] && command -v docker >/dev/null 2>&1 && timeout 10 docker info >/dev/null 2>&1; then
  echo "== docker-compose demo: Envoy + s2s-guard + quotas (ratelimit, Redis) + echo collector + token service + Prometheus + Grafana"
  echo "== (the first run pulls the images: a few minutes)"
  chmod -R a+rX envoy/envoy.yaml envoy/quotas.yaml envoy/demo envoy/ratelimit envoy/prometheus envoy/grafana dist/s2s-guard.wasm
  docker compose -f envoy/docker-compose.yaml up -d
  trap 'rc=$?; docker compose -f envoy/docker-compose.yaml down; rm -rf "$TMP"; exit $rc' EXIT
  for _ in $(seq 60); do curl -s -o /dev/null http://127.0.0.1:10000/healthz && break; sleep 1; done
  sleep 4 # the first token set
  snapshot http://127.0.0.1:9901/stats/prometheus | grep '^s2s_guard_' > "$TMP/before" || true
  bash envoy/demo/requests.sh http://127.0.0.1:10000
  snapshot http://127.0.0.1:9901/stats/prometheus | grep '^s2s_guard_' > "$TMP/after" || true
  echo
  echo "== s2s-guard counters in Envoy's /stats/prometheus, before -> after the requests"
  changes "$TMP/before" "$TMP/after"
  echo
  echo "== Prometheus: http://127.0.0.1:9090 (alerts: /alerts); Grafana: http://127.0.0.1:3000 (dashboard s2s-guard)"
  echo "== Leave them running with: docker compose -f envoy/docker-compose.yaml up -d"
  exit 0
fi

echo "== no Docker engine here: the local HTTP demo (test host 'serve', 2 workers)"
echo "== token set from envoy/demo/tokens.json via the built-in token service"
PORT=${S2S_DEMO_PORT:-18000}
ADMIN=${S2S_DEMO_ADMIN_PORT:-19901}
HOST_BIN=${S2S_HOST_BIN:-}
if [ -z "$HOST_BIN" ]; then
  echo "== building the test host (wasmtime; about 4 minutes the first time, seconds after)"
  cargo build -q -p s2s-guard-host
  HOST_BIN=target/debug/s2s-guard-host
fi
"$HOST_BIN" serve --wasm dist/s2s-guard.wasm --config envoy/demo/filter-config.json \
  --listen "127.0.0.1:$PORT" --tokens-file envoy/demo/tokens.json \
  --admin "127.0.0.1:$ADMIN" --stats-tags envoy/envoy.yaml &
pid=$!
# Keep the script's own status: the server we kill ends with 143, which is not ours.
trap 'rc=$?; kill $pid 2>/dev/null; wait $pid 2>/dev/null || true; rm -rf "$TMP"; exit $rc' EXIT
for _ in $(seq 50); do curl -s -o /dev/null "http://127.0.0.1:$ADMIN/stats" && break; sleep 0.2; done
kill -0 $pid 2>/dev/null || { echo "demo: the test host did not start (ports $PORT, $ADMIN in use?)" >&2; exit 1; }
sleep 1 # the first token set
snapshot "http://127.0.0.1:$ADMIN/stats/prometheus" > "$TMP/before"
bash envoy/demo/requests.sh "http://127.0.0.1:$PORT"
snapshot "http://127.0.0.1:$ADMIN/stats/prometheus" > "$TMP/after"
echo
echo "== counters as Envoy's /stats/prometheus names them (stats_tags of envoy/envoy.yaml), before -> after the requests"
echo "== (all of them: curl http://127.0.0.1:$ADMIN/stats/prometheus while the demo runs)"
changes "$TMP/before" "$TMP/after"
echo
echo "== the same requests through the filter in the test host, with counters"
"$HOST_BIN" run --wasm dist/s2s-guard.wasm --config demo/config.json --requests demo/requests.jsonl --table
