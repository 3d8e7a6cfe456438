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
#   scripts/profile.sh guest WASM CONFIG REQUESTS [TOP]
#   scripts/profile.sh nginx WASM CONFIG REQUEST.json [REQUESTS]
#
# `host` runs the first request of REQUESTS 500 and 1000 times through WASM (any
# proxy-wasm filter: s2s-guard, the no-op, ../shared/realhost's mintoken) in the
# release test host with one worker: host and guest instructions per request, a
# side-by-side comparison of filters in one host (the host's part, the same for
# every filter, is in each figure; about +-3k from run to run).
#
# `guest` does what `host` does with wasmtime's perf map on and names the guest's
# JIT-compiled functions (scripts/callgrind-guest.py): the instructions per
# request of each Wasm function, self and inclusive. WASM `names` builds
# s2s-guard with its function names (target/profile-names/s2s-guard.wasm, the
# release build through wasm-opt -O3 as `make build` does, names kept).
#
# `nginx` runs one request (realhost.py's JSON) through WASM in the real host,
# nginx + ngx_wasm_module on Wasmtime (../shared/realhost/build.sh; NGINX or
# $REALHOST_PREFIX/nginx/sbin/nginx), one process under callgrind
# (scripts/profile-nginx.py): the worker's instructions per request, the
# filter's callbacks and each host function they call.
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
  guest)
    [ $# -eq 3 ] || [ $# -eq 4 ] \
      || { echo "usage: scripts/profile.sh guest WASM|names CONFIG REQUESTS [TOP]" >&2; exit 2; }
    wasm=$1
    if [ "$wasm" = names ]; then
      # shellcheck disable=SC1091
      source target/wasm-toolchain.env 2>/dev/null || bash scripts/wasm-toolchain.sh
      # shellcheck disable=SC1091
      source target/wasm-toolchain.env
      env ${WASM_RUSTC:+RUSTC=$WASM_RUSTC} ${WASM_BOOTSTRAP:+RUSTC_BOOTSTRAP=1} \
        ${WASM_RUSTFLAGS:+RUSTFLAGS="$WASM_RUSTFLAGS"} CARGO_PROFILE_RELEASE_STRIP=false \
        CARGO_TARGET_DIR=target/profile-names "$WASM_CARGO" build -q --release \
        --target wasm32-wasip1 $WASM_EXTRA -p s2s-guard
      wasm=target/profile-names/s2s-guard.wasm
      built=target/profile-names/wasm32-wasip1/release/s2s_guard.wasm
      if command -v wasm-opt >/dev/null 2>&1; then
        wasm-opt -O3 --enable-bulk-memory --enable-sign-ext --enable-nontrapping-float-to-int \
          --enable-mutable-globals --debuginfo "$built" -o "$wasm"
      else
        cp "$built" "$wasm"
      fi
    fi
    cargo build -q --release -p s2s-guard-host
    tmp=$(mktemp -d)
    trap 'rm -rf "$tmp"' EXIT
    line=$(grep -v '^\s*\(#\|$\)' "$3" | head -n 1)
    for n in 200 400; do
      for _ in $(seq "$n"); do echo "$line"; done > "$tmp/$n.jsonl"
      S2S_HOST_PERFMAP=1 valgrind --tool=callgrind --callgrind-out-file="$tmp/$n.out" \
        target/release/s2s-guard-host run --wasm "$wasm" --config "$2" \
        --requests "$tmp/$n.jsonl" --workers 1 >/dev/null 2>"$tmp/$n.err" &
      pid=$!
      wait "$pid"
      cp "/tmp/perf-$pid.map" "$tmp/$n.map" && rm -f "/tmp/perf-$pid.map"
    done
    cp "$tmp/400.out" target/profile.callgrind
    python3 scripts/callgrind-guest.py "$tmp/200.out" "$tmp/200.map" "$tmp/400.out" \
      "$tmp/400.map" 200 "${4:-30}"
    ;;
  nginx)
    [ $# -eq 3 ] || [ $# -eq 4 ] \
      || { echo "usage: scripts/profile.sh nginx WASM CONFIG REQUEST.json [REQUESTS]" >&2; exit 2; }
    prefix=${REALHOST_PREFIX:-${XDG_CACHE_HOME:-$HOME/.cache}/s2s-realhost}
    nginx=${NGINX:-$prefix/nginx/sbin/nginx}
    [ -x "$nginx" ] || { echo "profile: $nginx is missing (bash ../shared/realhost/build.sh)" >&2; exit 2; }
    python3 scripts/profile-nginx.py "$nginx" "$1" "$2" "$3" "${4:-1000}"
    ;;
  *)
    echo "usage: scripts/profile.sh decide CONFIG REQUESTS | load CONFIG | host WASM CONFIG REQUESTS" \
      "| guest WASM|names CONFIG REQUESTS [TOP] | nginx WASM CONFIG REQUEST.json [REQUESTS]" >&2
    exit 2
    ;;
esac
