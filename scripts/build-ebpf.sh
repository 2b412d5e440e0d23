#!/usr/bin/env bash
# Builds FiberLB's XDP programs (fiberlb/ebpf/) with the nightly toolchain and
# bpf-linker, installing both when missing (../shared/RECIPES.md, eBPF).
# The objects land in fiberlb/ebpf/target/bpfel-unknown-none/release/ where
# fiberlb/build.rs embeds them into the photon binary.
set -euo pipefail
cd "$(dirname "$0")/.."

log() { printf '\n== %s\n' "$*"; }

rustup toolchain list | grep -q '^nightly' || rustup toolchain install nightly --profile minimal
rustup component list --toolchain nightly --installed | grep -q '^rust-src' \
  || rustup component add rust-src --toolchain nightly

# bpf-linker links against the nightly's own LLVM (the llvm-NN feature must
# match it); a nightly update needs a reinstall, hence the version check.
llvm_major=$(rustc +nightly -vV | sed -n 's/^LLVM version: \([0-9]*\).*/\1/p')
stamp="$HOME/.local/bpf-llvm/nightly-llvm"
if ! command -v bpf-linker >/dev/null 2>&1 || [ "$(cat "$stamp" 2>/dev/null)" != "$(rustc +nightly -vV | md5sum)" ]; then
  log "installing bpf-linker 0.13.0 (llvm-$llvm_major, the nightly's)"
  sysroot=$(rustc +nightly --print sysroot)
  so=$(cd "$sysroot/lib" && ls libLLVM.so.*-rust-* | head -1)
  prefix="$HOME/.local/bpf-llvm"
  mkdir -p "$prefix/lib"
  ln -sf "$sysroot/lib/$so" "$prefix/lib/libLLVM.so"
  ln -sf "$sysroot/lib/$so" "$prefix/lib/$so"
  LLVM_PREFIX="$prefix" cargo install bpf-linker --version 0.13.0 --locked --force \
    --no-default-features --features "llvm-$llvm_major"
  rustc +nightly -vV | md5sum > "$stamp"
fi

log "building fiberlb/ebpf/ (bpfel-unknown-none)"
cd fiberlb/ebpf
RUSTFLAGS='-C debuginfo=2 -C link-arg=--btf' \
  cargo +nightly build -Z build-std=core --target bpfel-unknown-none --release
ls -l target/bpfel-unknown-none/release/fiberlb-lb target/bpfel-unknown-none/release/fiberlb-decap
