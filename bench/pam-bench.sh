#!/usr/bin/env bash
# Benchmark pam_ctap: median and p99 wall time of a pamtester authentication through pam_ctap
# with the virtual key (presence auto), the same through a pam_permit-only stack (the process
# and libpam baseline), their difference (our overhead), and the in-process login and
# verify_assertion paths. Not a test: it prints figures.
#
# Needs root (writes a temporary /etc/pam.d/ctap-bench-* service, removed at the end) and
# pamtester (bench/install-deps). The side-by-side table with pam_u2f, pam_permit and the agents
# is bench/run; this script adds the in-process paths.
#
#   bench/pam-bench.sh [ITERATIONS]        # default 50; PROFILE=debug for a debug build
set -euo pipefail
cd "$(dirname "$0")/.."
profile="${PROFILE:-release}"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$PWD/target}"
target=$CARGO_TARGET_DIR
flag=()
[ "$profile" = release ] && flag=(--release)
if [ "$(id -u)" != 0 ]; then
    echo "pam-bench: run as root (it installs a temporary /etc/pam.d service)" >&2
    exit 1
fi
cargo build -q "${flag[@]}" -p pam_ctap
(cd test-framework && cargo build -q "${flag[@]}" -p ctap-softtoken && cargo build -q "${flag[@]}" -p ctap-e2e --example pam_bench)
CTAP_BIN_DIR="$target/$profile" "$target/$profile/examples/pam_bench" "${1:-50}"
