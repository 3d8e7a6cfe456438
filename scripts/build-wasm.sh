#!/usr/bin/env bash
# Builds the filter and the no-op baseline filters (plain, and one that buffers the
# request body) to wasm32-wasip1 (release) and copies them to dist/. Run
# scripts/wasm-toolchain.sh first (make setup does).
set -euo pipefail
cd "$(dirname "$0")/.."
ENV=target/wasm-toolchain.env
[ -f "$ENV" ] || bash scripts/wasm-toolchain.sh
# shellcheck disable=SC1090
source "$ENV"
TARGET=wasm32-wasip1
run() {
  env ${WASM_RUSTC:+RUSTC=$WASM_RUSTC} ${WASM_BOOTSTRAP:+RUSTC_BOOTSTRAP=1} \
    ${WASM_RUSTFLAGS:+RUSTFLAGS="$WASM_RUSTFLAGS"} \
    "$WASM_CARGO" build --release --target "$TARGET" $WASM_EXTRA "$@"
}
echo "build: compiling the filter to $TARGET (release, LTO; a minute or two the first time, seconds after)" >&2
run -p s2s-guard -p noop-filter -p bodynoop-filter -p probe-filter
mkdir -p dist
# Binaryen's wasm-opt (Debian package binaryen), where installed: -O3 keeps the
# per-request speed and drops about a tenth of the size (-Oz would drop a third
# and cost 1.7x per request: BENCHMARKS.md). The whole test suite runs on what
# lands in dist/. Without wasm-opt, or if it fails, the module is used as built.
WASM_OPT_FEATURES=(--enable-bulk-memory --enable-sign-ext --enable-nontrapping-float-to-int
  --enable-mutable-globals)
if [ "${S2S_WASM_OPT:-1}" != 0 ] && command -v wasm-opt >/dev/null 2>&1 \
  && wasm-opt -O3 "${WASM_OPT_FEATURES[@]}" --strip-debug --strip-producers \
    "target/$TARGET/release/s2s_guard.wasm" -o dist/s2s-guard.wasm.tmp; then
  mv dist/s2s-guard.wasm.tmp dist/s2s-guard.wasm
  echo "build: dist/s2s-guard.wasm optimised by $(wasm-opt --version) (-O3)" >&2
else
  rm -f dist/s2s-guard.wasm.tmp
  cp "target/$TARGET/release/s2s_guard.wasm" dist/s2s-guard.wasm
  echo "build: dist/s2s-guard.wasm as built (wasm-opt not installed: apt-get install binaryen)" >&2
fi
cp "target/$TARGET/release/noop_filter.wasm" dist/noop-filter.wasm
cp "target/$TARGET/release/bodynoop_filter.wasm" dist/bodynoop-filter.wasm
cp "target/$TARGET/release/probe_filter.wasm" dist/probe-filter.wasm
ls -l dist/*.wasm >&2
