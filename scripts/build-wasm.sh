#!/usr/bin/env bash
# Builds the filter and the no-op baseline filter to wasm32-wasip1 (release) and
# copies them to dist/. Run scripts/wasm-toolchain.sh first (make setup does).
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
run -p s2s-guard -p noop-filter -p probe-filter
mkdir -p dist
cp "target/$TARGET/release/s2s_guard.wasm" dist/s2s-guard.wasm
cp "target/$TARGET/release/noop_filter.wasm" dist/noop-filter.wasm
cp "target/$TARGET/release/probe_filter.wasm" dist/probe-filter.wasm
ls -l dist/*.wasm >&2
