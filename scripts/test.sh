#!/usr/bin/env bash
# Runs every PhotonCloud test on a fresh Debian 12 machine of this project's
# kind: installs what the tests need (system packages, rustup components,
# cargo-nextest), then formatting, lints, the flake's syntax, and the whole
# test suite. Safe to run again: each install step is skipped when done.
set -euo pipefail
cd "$(dirname "$0")/.."

log() { printf '\n== %s\n' "$*"; }
SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"

need_apt=()
command -v nix-instantiate >/dev/null 2>&1 || need_apt+=(nix-bin)
command -v curl >/dev/null 2>&1 || need_apt+=(curl)
# The docs walkthrough (tests/docs_walkthrough.rs) reads endpoints.json with jq
# and makes cluster keys with openssl.
command -v jq >/dev/null 2>&1 || need_apt+=(jq)
command -v openssl >/dev/null 2>&1 || need_apt+=(openssl)
# etcd-client (the etcd peer of `photon bench kv`) compiles etcd's protobufs.
command -v protoc >/dev/null 2>&1 || need_apt+=(protobuf-compiler)
# The S3 tests check our SigV4 and XML against botocore (python3.11, as the
# machine image has it with the aws CLI and boto3).
command -v python3.11 >/dev/null 2>&1 || need_apt+=(python3.11 python3-pip)
# The NBD codec is checked against qemu-io and qemu-img.
command -v qemu-io >/dev/null 2>&1 || need_apt+=(qemu-utils)
# CoronaFS volumes (tests/volume_clients.rs) are driven by fio's nbd engine,
# nbdinfo and nbdcopy; nbdkit is the disk-free NBD peer of `photon bench volume`.
command -v fio >/dev/null 2>&1 || need_apt+=(fio)
command -v nbdinfo >/dev/null 2>&1 || need_apt+=(libnbd-bin)
command -v nbdkit >/dev/null 2>&1 || need_apt+=(nbdkit)
# FiberLB's namespace test (tests/lb/netns_e2e.sh) builds its topology with
# iproute2, turns off the client's checksum offload with ethtool, curls /metrics.
command -v ip >/dev/null 2>&1 || need_apt+=(iproute2)
command -v ethtool >/dev/null 2>&1 || need_apt+=(ethtool)
# NightLight's real peers (tests/metrics.rs, tests/promql_diff.rs): a
# Prometheus that scrapes and remote-writes to photon, and promtool to
# backfill the differential PromQL test's samples.
command -v prometheus >/dev/null 2>&1 || need_apt+=(prometheus)
if [ "${#need_apt[@]}" -gt 0 ]; then
  log "installing system packages: ${need_apt[*]}"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need_apt[@]}" >/dev/null
fi

# PlasmaVMC's agent (vmm/) drives QEMU over QMP (vmm/tests/qmp_qemu.rs). The
# system emulator comes from bookworm-backports, like qemu-utils 10: bookworm's
# own qemu-system-x86 (7.2) would replace qemu-utils (../shared/RECIPES.md).
if ! command -v qemu-system-x86_64 >/dev/null 2>&1; then
  log "installing qemu-system-x86 from bookworm-backports"
  src=/etc/apt/sources.list.d/debian.sources
  if [ -f "$src" ] && ! grep -rqs bookworm-backports /etc/apt/sources.list "$src" /etc/apt/sources.list.d/; then
    $SUDO sed -i -E '0,/^Suites: bookworm( |$)/s/^(Suites: bookworm.*)$/\1 bookworm-backports/' "$src"
  fi
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq -t bookworm-backports \
    --no-install-recommends qemu-system-x86 >/dev/null
fi

# The VM tests (tests/vm_qemu.rs) boot a Debian kernel with a busybox
# initramfs, built once and cached (scripts/build-test-guest.sh).
log "test guest"
PHOTON_TEST_GUEST="$(./scripts/build-test-guest.sh | tail -1)"
export PHOTON_TEST_GUEST

# The S3 client tests (tests/s3_clients.rs) drive photon with boto3 under
# pytest and with the aws CLI.
py_need=()
python3.11 -c 'import botocore, boto3' >/dev/null 2>&1 || py_need+=(boto3)
python3.11 -c 'import pytest' >/dev/null 2>&1 || py_need+=(pytest)
# The Python example client of docs/api.md (tests/api_python.rs) speaks
# Cap'n Proto with pycapnp (a binary wheel: no compiler needed).
python3.11 -c 'import capnp' >/dev/null 2>&1 || py_need+=(pycapnp)
command -v aws >/dev/null 2>&1 || py_need+=(awscli)
if [ "${#py_need[@]}" -gt 0 ]; then
  log "installing for python3.11: ${py_need[*]}"
  python3.11 -m pip install --quiet "${py_need[@]}" || python3.11 -m pip install --quiet --break-system-packages "${py_need[@]}"
fi

if command -v rustup >/dev/null 2>&1; then
  rustup component list --installed 2>/dev/null | grep -q '^rustfmt' || rustup component add rustfmt
  rustup component list --installed 2>/dev/null | grep -q '^clippy' || rustup component add clippy
fi
if ! cargo nextest --version >/dev/null 2>&1; then
  log "installing cargo-nextest"
  cargo install cargo-nextest --locked
fi

# FiberLB's XDP objects (nightly + bpf-linker), embedded by fiberlb/build.rs.
./scripts/build-ebpf.sh

log "cargo fmt --check"
cargo fmt --all -- --check
(cd fiberlb/ebpf && cargo fmt --all -- --check)

log "flake.nix syntax (nix-instantiate --parse)"
nix-instantiate --parse flake.nix >/dev/null

log "cargo clippy -D warnings"
cargo clippy --workspace --all-targets --all-features --release -- -D warnings

log "tests"
cargo nextest run --workspace --all-features --release --no-fail-fast "$@"

# Every fuzz target, coverage-guided, for a short time on its corpus
# (FUZZ_SECONDS=0 skips it, e.g. while iterating on one test).
if [ "${FUZZ_SECONDS:-20}" != 0 ]; then
  ./scripts/fuzz-smoke.sh
fi
