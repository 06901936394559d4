# Demo stage: an SSH key on the same security key, served by ctap-sshagent, used by OpenSSH's
# ssh-add and ssh-keygen -Y sign/verify.
set -euo pipefail
echo "== SSH: ctap-enroll ssh, ctap-sshagent, ssh-add -L, ssh-keygen -Y sign / verify =="
if ! command -v ssh-keygen >/dev/null; then
    echo "(skipped: OpenSSH client not installed)"
    exit 0
fi
creds="$WORK/ssh-credentials.toml"
set -x
"$BIN/ctap-enroll" ssh --device "$DEVICE" --name demo-ssh --credentials "$creds" > "$WORK/demo-ssh.pub"
{ set +x; } 2>/dev/null
"$BIN/ctap-sshagent" -D -a "$WORK/agent.sock" --device "$DEVICE" --credentials "$creds" 2>"$WORK/agent.log" &
agent=$!
trap 'kill $agent 2>/dev/null || true' EXIT
for _ in $(seq 100); do [ -S "$WORK/agent.sock" ] && break; sleep 0.05; done
export SSH_AUTH_SOCK="$WORK/agent.sock"
set -x
ssh-add -L | tee "$WORK/agent.pub"
echo "hello from the demo" > "$WORK/message"
ssh-keygen -Y sign -f "$WORK/agent.pub" -n file "$WORK/message"
{ set +x; } 2>/dev/null
echo "demo $(cat "$WORK/agent.pub")" > "$WORK/allowed_signers"
set -x
ssh-keygen -Y verify -f "$WORK/allowed_signers" -I demo -n file -s "$WORK/message.sig" < "$WORK/message"
{ set +x; } 2>/dev/null
