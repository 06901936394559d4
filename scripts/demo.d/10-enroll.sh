# Demo stage: enroll the virtual key for user "demo" with ctap-enroll, list it, and run one full
# verification (the same library call the PAM module makes).
set -euo pipefail
echo "== enroll the key with ctap-enroll (records and state in $WORK, not /etc) =="
mkdir -p "$WORK/etc" && chmod 0755 "$WORK/etc"
cat > "$WORK/etc/pam_ctap.toml" <<TOML
device = "$DEVICE"
rp_id = "pam://demo"
records_dir = "$WORK/users"
state_dir = "$WORK/state"
clone_action = "suspend"
TOML
enroll=("$BIN/ctap-enroll" --config "$WORK/etc/pam_ctap.toml")
set -x
"${enroll[@]}" enroll --user "$DEMO_USER" --name virtual-key --uv discouraged
"${enroll[@]}" list --user "$DEMO_USER"
"${enroll[@]}" test --user "$DEMO_USER" --service demo
{ set +x; } 2>/dev/null
