# Use ctap-sshagent for SSH in login shells: source this from ~/.profile, or install it as
# /etc/profile.d/ctap-sshagent.sh. It points SSH_AUTH_SOCK at the agent's socket when the
# systemd user socket (ctap-sshagent.socket) or a running agent provides one.
# Set CTAP_SSHAGENT_KEEP=1 to keep an SSH_AUTH_SOCK that is already set (e.g. a forwarded agent).
if [ -n "${XDG_RUNTIME_DIR:-}" ] && [ -S "$XDG_RUNTIME_DIR/ctap-sshagent.sock" ]; then
    if [ -z "${SSH_AUTH_SOCK:-}" ] || [ "${CTAP_SSHAGENT_KEEP:-0}" != 1 ]; then
        SSH_AUTH_SOCK=$XDG_RUNTIME_DIR/ctap-sshagent.sock
        export SSH_AUTH_SOCK
    fi
fi
