#!/usr/bin/env bash
# Instructions per decision (or per configuration load) of the pure core, natively,
# counted by callgrind: exact and repeatable where timings on a shared machine are
# not. Runs N and 2N iterations and prints the difference per iteration, so set-up
# cost cancels out. Needs valgrind.
#
#   scripts/profile.sh decide CONFIG REQUESTS   # the first request of the file
#   scripts/profile.sh load CONFIG
#
# The callgrind output of the 2N run is kept in target/profile.callgrind for
# callgrind_annotate.
set -euo pipefail
cd "$(dirname "$0")/.."
command -v valgrind >/dev/null || { echo "profile: valgrind is not installed" >&2; exit 2; }
CARGO_PROFILE_RELEASE_STRIP=false CARGO_PROFILE_RELEASE_DEBUG=1 \
  cargo build -q --release --example profile
bin=target/release/examples/profile
mode=$1; shift
case "$mode" in
  decide) n=1000 ;;
  load) n=2 ;;
  *) echo "usage: scripts/profile.sh decide CONFIG REQUESTS | load CONFIG" >&2; exit 2 ;;
esac
refs() {
  valgrind --tool=callgrind --callgrind-out-file="$1" "$bin" "$mode" "${@:2}" 2>&1 \
    | awk '/refs:/ { gsub(",", "", $4); print $4 }'
}
a=$(refs /dev/null "$@" "$n")
b=$(refs target/profile.callgrind "$@" $((2 * n)))
echo "$(( (b - a) / n )) instructions per $mode ($*)"
