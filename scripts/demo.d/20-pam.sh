# Demo stage: authenticate "demo" through the real Linux-PAM stack (pamtester) with pam_ctap.
set -euo pipefail
echo "== log in through Linux-PAM: pamtester with pam_ctap as the only auth module =="
if [ "$(id -u)" -ne 0 ] || ! command -v pamtester >/dev/null; then
    echo "(skipped: needs root and pamtester to install a PAM service file)"
    exit 0
fi
service="ctap-demo-$$"
trap 'rm -f "/etc/pam.d/$service"' EXIT
module=$(readlink -f "$BIN/libpam_ctap.so")
echo "auth required $module config=$WORK/etc/pam_ctap.toml" > "/etc/pam.d/$service"
echo "+ /etc/pam.d/$service: $(cat "/etc/pam.d/$service")"
echo "+ pamtester $service $DEMO_USER authenticate"
pamtester "$service" "$DEMO_USER" authenticate
echo "+ the same against another virtual key, which holds no credential for $DEMO_USER:"
other=$(CTAP_SOFTTOKEN_LOG=/dev/null scripts/softtoken start "$WORK/other.sock" "$WORK/other.state")
echo "auth required $module config=$WORK/etc/pam_ctap.toml device=unix:$WORK/other.sock" > "/etc/pam.d/$service"
if pamtester "$service" "$DEMO_USER" authenticate; then
    echo "unexpected: another key was accepted" >&2
    scripts/softtoken stop "$other"; exit 1
fi
scripts/softtoken stop "$other"
echo "(refused, as it must be)"
