#!/usr/bin/env bash
# Finds or installs a toolchain that builds wasm32-wasip1, and writes the way to
# call it to target/wasm-toolchain.env (sourced by scripts/build-wasm.sh).
#
# Routes, in order (override with S2S_WASM_ROUTE=rustup|debian):
#   1. a rustup toolchain that already has wasm32-wasip1;
#   2. rustup target add wasm32-wasip1 (a machine that can reach rustup's server);
#   3. Debian's Rust (rustc-web, cargo-web, rust-web-src, lld-22, wasi-libc) with
#      RUSTC_BOOTSTRAP=1 and -Zbuild-std (machines that reach package registries only).
# No step waits more than 30 s for a download that cannot come.
set -euo pipefail
cd "$(dirname "$0")/.."
TARGET=wasm32-wasip1
OUT=target/wasm-toolchain.env
mkdir -p target
route="${S2S_WASM_ROUTE:-auto}"

say() { echo "setup: $*" >&2; }

rustup_has_target() {
  command -v rustup >/dev/null 2>&1 && rustup target list --installed 2>/dev/null | grep -qx "$TARGET"
}

debian_ready() {
  [ -x /usr/bin/cargo ] && [ -x /usr/bin/rustc ] &&
    [ -f /usr/lib/rustlib/src/rust/library/Cargo.lock ] &&
    [ -f /usr/lib/wasm32-wasi/libc.a ] && command -v wasm-ld-22 >/dev/null 2>&1
}

as_root() {
  if [ "$(id -u)" = 0 ]; then "$@"; elif command -v sudo >/dev/null 2>&1; then sudo -n "$@"; else
    say "need root to run: $*"; return 1; fi
}

write_rustup() {
  cat > "$OUT" <<ENV
WASM_ROUTE=rustup
WASM_CARGO=cargo
WASM_RUSTC=
WASM_RUSTFLAGS=
WASM_BOOTSTRAP=
WASM_EXTRA=
ENV
  say "using the rustup toolchain's $TARGET target"
}

write_debian() {
  cat > "$OUT" <<ENV
WASM_ROUTE=debian
WASM_CARGO=/usr/bin/cargo
WASM_RUSTC=/usr/bin/rustc
WASM_RUSTFLAGS="-L /usr/lib/wasm32-wasi"
WASM_BOOTSTRAP=1
WASM_EXTRA="-Zbuild-std=std,panic_abort"
ENV
  say "using Debian's Rust ($(/usr/bin/rustc --version)) with -Zbuild-std"
}

if [ "$route" != debian ]; then
  if rustup_has_target; then write_rustup; exit 0; fi
  if command -v rustup >/dev/null 2>&1; then
    say "trying: rustup target add $TARGET (30 s at most)"
    if timeout 30 rustup target add "$TARGET" >&2 && rustup_has_target; then write_rustup; exit 0; fi
    say "rustup could not add $TARGET; falling back to Debian's Rust"
  fi
  [ "$route" = rustup ] && { say "S2S_WASM_ROUTE=rustup but rustup cannot provide $TARGET"; exit 1; }
fi

if ! debian_ready; then
  pkgs="rustc-web cargo-web rust-web-src lld-22 wasi-libc"
  say "installing $pkgs from Debian"
  export DEBIAN_FRONTEND=noninteractive
  if ! apt-cache show rustc-web >/dev/null 2>&1; then
    as_root timeout 300 apt-get update -qq >&2
  fi
  as_root timeout 900 apt-get install -y -qq $pkgs >&2 || {
    as_root timeout 300 apt-get update -qq >&2
    as_root timeout 900 apt-get install -y -qq $pkgs >&2
  }
fi
debian_ready || { say "Debian's Rust for Wasm is not usable after installing it"; exit 1; }
write_debian
