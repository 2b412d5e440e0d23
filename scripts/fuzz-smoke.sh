#!/usr/bin/env bash
# Runs every cargo-fuzz target for a short time on its committed corpus
# (coverage-guided libFuzzer, nightly), as CI does after the tests: a crash,
# a leak of the input limits or a timeout fails the run and leaves the input
# in fuzz/artifacts/<target>/. New inputs go to a scratch directory, so the
# committed corpus only grows by hand (docs/fuzzing.md).
#
#   FUZZ_SECONDS   seconds per target (default 20)
#   FUZZ_SANITIZER none (default: the build takes minutes, not a quarter hour)
#                  or address, as in the long runs
set -euo pipefail
cd "$(dirname "$0")/.."

seconds="${FUZZ_SECONDS:-20}"
sanitizer="${FUZZ_SANITIZER:-none}"
log() { printf '\n== %s\n' "$*"; }

rustup toolchain list | grep -q '^nightly' || rustup toolchain install nightly --profile minimal
if ! cargo fuzz --version >/dev/null 2>&1; then
  log "installing cargo-fuzz"
  cargo install cargo-fuzz --locked
fi

cd fuzz
targets=$(cargo +nightly fuzz list)
log "building the fuzz targets (sanitizer: $sanitizer)"
cargo +nightly fuzz build -O -s "$sanitizer"

scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT
for target in $targets; do
  log "fuzz $target for ${seconds}s on fuzz/corpus/$target"
  mkdir -p "$scratch/$target"
  dict=()
  [ -f "dict/$target.dict" ] && dict=("-dict=dict/$target.dict")
  if ! cargo +nightly fuzz run -O -s "$sanitizer" "$target" "$scratch/$target" "corpus/$target" -- \
    -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 "${dict[@]}" >"$scratch/$target.log" 2>&1; then
    tail -n 60 "$scratch/$target.log"
    echo "fuzz target $target found a problem (input in fuzz/artifacts/$target/)" >&2
    exit 1
  fi
  tail -n 2 "$scratch/$target.log"
done
log "every fuzz target ran ${seconds}s without a finding"
