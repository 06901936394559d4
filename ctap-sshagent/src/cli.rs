//! Command-line arguments.

use std::path::PathBuf;

use clap::Parser;

/// An SSH agent for FIDO2 security keys: signs with sk-ecdsa and sk-ed25519 keys enrolled with
/// `ctap-enroll ssh` or added with `ssh-add`.
///
/// Prints the shell commands that point SSH_AUTH_SOCK at it, like ssh-agent; use
/// `eval "$(ctap-sshagent)"`.
///
/// OpenSSH certificates: `ssh-add KEY` with KEY-cert.pub beside it (a CA's `ssh-keygen -s`)
/// adds the certificate as well (its type ends in -cert-v01@openssh.com); `ssh-add -L` lists it
/// after the plain key, and it signs
/// with the same security key, for sshd's TrustedUserCAKeys. A certificate whose key handle is
/// that of another key the agent knows is refused. As OpenSSH's agent, the agent does not check
/// the validity period or principals (sshd does; ssh-add skips expired certificates and limits
/// the lifetime to the validity), but logs a warning when a certificate is not valid now.
/// `ctap-enroll export-ssh --name NAME --write-key-file KEY` writes the key file of a credential
/// enrolled without one.
///
/// Limits against hostile clients: a message must arrive whole within 5 s of its first byte;
/// at most 64 connections at once; at most 1000 identities added with ssh-add, holding at most
/// 4 MiB of key handles, applications and comments (more is refused with SSH_AGENT_FAILURE and
/// a log line); wrong unlock passphrases (ssh-add -X) from all connections together make each
/// next attempt wait 100 ms longer, up to 10 s. The lock passphrase is kept only as an
/// Argon2id hash.
#[derive(Debug, Parser)]
#[command(name = "ctap-sshagent", version)]
pub struct Args {
    /// Listen on this socket (default: $XDG_RUNTIME_DIR/ctap-sshagent.sock).
    #[arg(short = 'a', value_name = "SOCKET")]
    pub socket: Option<PathBuf>,

    /// Stay in the foreground (for systemd and debugging).
    #[arg(short = 'D')]
    pub foreground: bool,

    /// The security key: auto, hidraw:/dev/hidrawN or unix:/path/to.sock.
    #[arg(long, value_name = "URI", default_value = "auto")]
    pub device: String,

    /// Program asked for the PIN and for confirmations (SSH_ASKPASS-style: the prompt is its
    /// argument, the answer its output, its exit status the confirmation). Default: $SSH_ASKPASS.
    #[arg(long, value_name = "PROG")]
    pub askpass: Option<PathBuf>,

    /// Shell command run when a key waits for a touch; the message is its $1.
    #[arg(long, value_name = "CMD")]
    pub notify: Option<String>,

    /// The SSH credentials file (default: ~/.config/ctap/credentials.toml).
    #[arg(long, value_name = "FILE")]
    pub credentials: Option<PathBuf>,

    /// Seconds one signature's whole exchange with the key may take, touch included; time in
    /// askpass (which gets 120 s) is added.
    #[arg(long, value_name = "SECONDS", default_value_t = 30, value_parser = clap::value_parser!(u64).range(1..=600))]
    pub timeout: u64,

    /// Ask for the key's PIN once per SECONDS instead of for every signature that needs it:
    /// the CTAP 2.1 pinUvAuthToken the PIN buys (getAssertion permission, the credential's RP ID)
    /// is kept in memory until it expires, the agent is locked (ssh-add -x), the key refuses it
    /// (replugged) or the agent exits; each signature still needs its touch. Off by default.
    #[arg(long, value_name = "SECONDS", value_parser = clap::value_parser!(u64).range(1..=86400))]
    pub pin_cache: Option<u64>,

    /// Also log each signature and each touch request (by default only failures, locking and
    /// added keys are logged).
    #[arg(short = 'v', long)]
    pub verbose: bool,
}
