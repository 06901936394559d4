#!/usr/bin/env bash
# Sign requests per second: ctap-sshagent with ctap-softtoken (presence auto) against OpenSSH's
# ssh-agent with an ordinary ecdsa key, both driven by the same client (bench/agent-client.py,
# one connection, N sign requests), then where ctap-sshagent's time goes (from its own log).
#
#   bench/agent-bench.sh [N]        (default N=300; builds release binaries if needed)
#   CTAP_BIN_DIR=target/debug bench/agent-bench.sh   to measure another build
# Needs openssh-client and python3. Everything runs in a temporary directory on this machine.
set -euo pipefail
cd "$(dirname "$0")/.."
n=${1:-300}
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$PWD/target}
export CTAP_BIN_DIR=${CTAP_BIN_DIR:-$CARGO_TARGET_DIR/release}
bin=$CTAP_BIN_DIR
if [ "$bin" = "$CARGO_TARGET_DIR/release" ]; then
    cargo build --release --quiet -p ctap-sshagent -p ctap-enroll
    (cd test-framework && cargo build --release --quiet -p ctap-softtoken)
fi
# Not under /tmp: the agent trusts a credentials file only if no one else can write a directory
# above it (sshd's StrictModes), and /tmp is world-writable.
mkdir -p "$CARGO_TARGET_DIR"
tmp=$(mktemp -d "$CARGO_TARGET_DIR/agent-bench.XXXXXX")
chmod 755 "$tmp"
pids=()
key_pid=
cleanup() {
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
    [ -n "$key_pid" ] && scripts/softtoken stop "$key_pid"
    rm -rf "$tmp"
}
trap cleanup EXIT
wait_sock() { for _ in $(seq 500); do [ -S "$1" ] && return 0; sleep 0.02; done; echo "no socket $1" >&2; exit 1; }

# ctap-sshagent + virtual key
key_pid=$(CTAP_SOFTTOKEN_LOG=/dev/null scripts/softtoken start "$tmp/key.sock" "$tmp/key.state" --presence auto)
HOME=$tmp "$bin/ctap-enroll" --device "unix:$tmp/key.sock" ssh --name bench --credentials "$tmp/creds.toml" >/dev/null 2>&1
"$bin/ctap-sshagent" -D -a "$tmp/ctap.sock" --device "unix:$tmp/key.sock" --credentials "$tmp/creds.toml" -v >/dev/null 2>"$tmp/ctap.log" &
pids+=($!)
wait_sock "$tmp/ctap.sock"

# OpenSSH ssh-agent + ordinary ecdsa key
ssh-agent -D -a "$tmp/openssh.sock" >/dev/null 2>&1 &
pids+=($!)
wait_sock "$tmp/openssh.sock"
ssh-keygen -q -t ecdsa -b 256 -N '' -f "$tmp/id_ecdsa"
SSH_AUTH_SOCK=$tmp/openssh.sock ssh-add -q "$tmp/id_ecdsa" 2>/dev/null

python3 bench/agent-client.py "$tmp/ctap.sock" 5 >/dev/null     # warm-up
python3 bench/agent-client.py "$tmp/openssh.sock" 5 >/dev/null
ours=$(python3 bench/agent-client.py "$tmp/ctap.sock" "$n")
theirs=$(python3 bench/agent-client.py "$tmp/openssh.sock" "$n")
echo "ctap-sshagent + ctap-softtoken (ecdsa-sk): $ours"
echo "OpenSSH ssh-agent (ecdsa, key in memory): $theirs"
rate() { sed -E 's/.*: ([0-9.]+) sign\/s.*/\1/' <<<"$1"; }
ms() { sed -E 's/.*, ([0-9.]+) ms each/\1/' <<<"$1"; }
awk -v a="$(rate "$ours")" -v b="$(rate "$theirs")" 'BEGIN { printf "ratio: OpenSSH ssh-agent is %.1fx faster (ours %.1f%% of its rate)\n", b / a, 100 * a / b }'
# Per request, from the agent's log of the measured run (its last n "signed" lines): device open
# (connect, CTAPHID INIT, getInfo; ~0 when the kept session is reused) and getAssertion (up to
# the key's answer, verified and encoded).
grep 'signed SSHSIG' "$tmp/ctap.log" | tail -n "$n" | sed -nE 's/.*device open ([0-9]+) us, getAssertion ([0-9]+) us.*/\1 \2/p' |
    awk -v total="$(ms "$ours")" '{ o += $1; a += $2; k++ } END {
        o /= k * 1000; a /= k * 1000; rest = total - o - a;
        printf "where a ctap-sshagent request goes (mean of %d): %.3f ms total = device open %.3f ms (%.0f%%) + getAssertion %.3f ms (%.0f%%) + agent/protocol/client %.3f ms (%.0f%%)\n",
            k, total, o, 100 * o / total, a, 100 * a / total, rest, 100 * rest / total }'
