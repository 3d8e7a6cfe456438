#!/usr/bin/env bash
# make bench: host-side cost per request of s2s-guard against the no-op filters
# (plain, and buffering the body for the signed POSTs), in interleaved rounds of
# one run, with the throughput ratio s2s-guard / no-op; configuration load time
# and guest memory for growing token sets. The test host runs in the release
# profile (its first release build takes several minutes: wasmtime, LTO). Writes
# the sections of BENCHMARKS.md it owns.
set -euo pipefail
cd "$(dirname "$0")/.."
HOST=(cargo run --release -q -p s2s-guard-host --)
OUT=BENCHMARKS.md
common=(--wasm dist/s2s-guard.wasm --noop dist/noop-filter.wasm --out "$OUT")
# Build the release host once, up front (not inside the first measurement).
cargo build --release -q -p s2s-guard-host

"${HOST[@]}" bench "${common[@]}" --config demo/config.json --requests demo/requests.jsonl \
  --iterations 200 --section mixed --title "Reference requests (demo/requests.jsonl, all three presets)"

for n in 10 10000 1000000; do
  iters=200; [ "$n" -ge 1000000 ] && iters=50
  "${HOST[@]}" bench "${common[@]}" --config bench/tokens.json --requests bench/tokens-requests.jsonl \
    --tokens "$n" --iterations "$iters" --section "tokens-$n" \
    --title "Adjust token check with $n tokens configured"
done

"${HOST[@]}" bench "${common[@]}" --noop-body dist/bodynoop-filter.wasm \
  --config bench/signature.json --requests bench/signature-requests.jsonl --iterations 300 --section signature \
  --title "Signed SDK POST (642-byte form body), verification without the replay memory"
"${HOST[@]}" bench "${common[@]}" --noop-body dist/bodynoop-filter.wasm \
  --config bench/signature-replay.json --requests bench/signature-requests.jsonl --iterations 300 --section signature-replay \
  --title "Signed SDK POST with the replay memory (the repeated request is refused as replayed: verification + one shared-data read)"
# Token distribution: reload and per-request cost in each lookup mode.
rows=$(mktemp)
{
  echo "### Token set reload (HTTP token source, 2 workers) and per-request cost, by lookup mode"
  echo
  echo "Reload: wall time for the fetch, validation and publication by the fetcher and the"
  echo "load by the other worker. Memory: guest linear memory per worker (fetcher / reader)."
  echo "Per request: a valid token, against the no-op filter with the same workers in 7"
  echo "interleaved blocks; ratio: s2s-guard's throughput ÷ the no-op's (median, min–max)."
  echo
  echo "| lookup | tokens | set size | reload | guest memory per worker | µs per request (host side) | no-op µs | ratio s2s-guard / no-op |"
  echo "|---|---:|---:|---:|---|---:|---:|---:|"
  for n in 10000 1000000; do
    for mode in copy shared; do
      "${HOST[@]}" bench-reload --wasm dist/s2s-guard.wasm --noop dist/noop-filter.wasm \
        --tokens "$n" --mode "$mode"
    done
  done
  echo
} > "$rows"
"${HOST[@]}" write-section --out "$OUT" --section reload --file "$rows"
rm -f "$rows"
echo "bench: wrote $OUT" >&2
