#!/usr/bin/env bash
# Instructions per decision (or per configuration load) of the pure core, natively,
# or per request through a whole filter in the test host, counted by callgrind:
# exact and repeatable where timings on a shared machine are not. Runs N and 2N
# iterations and prints the difference per iteration, so set-up cost cancels out.
# Needs valgrind.
#
#   scripts/profile.sh decide CONFIG REQUESTS   # the first request of the file
#   scripts/profile.sh load CONFIG
#   scripts/profile.sh host WASM CONFIG REQUESTS
#
# `host` runs the first request of REQUESTS 500 and 1000 times through WASM (any
# proxy-wasm filter: s2s-guard, the no-op, ../shared/realhost's mintoken) in the
# release test host with one worker: host and guest instructions per request, a
# side-by-side comparison of filters in one host (the host's part, the same for
# every filter, is in each figure; about +-3k from run to run).
#
# The callgrind output of the 2N run is kept in target/profile.callgrind for
# callgrind_annotate.
set -euo pipefail
cd "$(dirname "$0")/.."
command -v valgrind >/dev/null || { echo "profile: valgrind is not installed" >&2; exit 2; }
mode=${1:-}; shift || true
refs() {
  valgrind --tool=callgrind --callgrind-out-file="$1" "${@:2}" 2>&1 >/dev/null \
    | awk '/refs:/ { gsub(",", "", $4); print $4 }'
}
case "$mode" in
  decide | load)
    CARGO_PROFILE_RELEASE_STRIP=false CARGO_PROFILE_RELEASE_DEBUG=1 \
      cargo build -q --release --example profile
    bin=target/release/examples/profile
    n=1000; [ "$mode" = load ] && n=2
    a=$(refs /dev/null "$bin" "$mode" "$@" "$n")
    b=$(refs target/profile.callgrind "$bin" "$mode" "$@" $((2 * n)))
    echo "$(( (b - a) / n )) instructions per $mode ($*)"
    ;;
  host)
    [ $# -eq 3 ] || { echo "usage: scripts/profile.sh host WASM CONFIG REQUESTS" >&2; exit 2; }
    cargo build -q --release -p s2s-guard-host
    tmp=$(mktemp -d)
    trap 'rm -rf "$tmp"' EXIT
    line=$(grep -v '^\s*\(#\|$\)' "$3" | head -n 1)
    for n in 500 1000; do
      for _ in $(seq "$n"); do echo "$line"; done > "$tmp/$n.jsonl"
    done
    run() { refs "$1" target/release/s2s-guard-host run --wasm "$2" --config "$3" \
      --requests "$4" --workers 1; }
    a=$(run /dev/null "$1" "$2" "$tmp/500.jsonl")
    b=$(run target/profile.callgrind "$1" "$2" "$tmp/1000.jsonl")
    echo "$(( (b - a) / 500 )) instructions per request, host and guest ($(basename "$1"), $2, $3)"
    ;;
  *)
    echo "usage: scripts/profile.sh decide CONFIG REQUESTS | load CONFIG | host WASM CONFIG REQUESTS" >&2
    exit 2
    ;;
esac
