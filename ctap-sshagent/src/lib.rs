//! ctap-sshagent: an SSH agent for FIDO2 security keys (docs/ARCHITECTURE.md §6).
//!
//! - [`protocol`]: agent messages, parsed and encoded; no I/O, no policy.
//! - [`agent`]: identities, constraints, lock, session binding: the answer to each message.
//! - [`device`]: one signature with the security key (PIN via askpass, touch cue, timeouts).
//! - [`server`]: the socket, daemonising, signals, a thread per connection.
//! - [`error`]: why a request, the askpass program or the server failed.
//!
//! Formats, signing and enrollment live in `ctap_core::ssh`, shared with `ctap-enroll`.
#![forbid(unsafe_code)]

pub mod agent;
pub mod askpass;
pub mod cli;
pub mod device;
pub mod error;
pub mod lock;
pub mod protocol;
pub mod server;

/// Run the agent with the process's arguments; returns the exit status.
pub fn main() -> i32 {
    use clap::Parser;
    server::run(cli::Args::parse())
}

/// A log line on stderr (the journal under systemd). One line, whatever the message holds:
/// key comments and applications come from clients and files (they are also escaped where
/// they are formatted).
pub(crate) fn log(msg: impl std::fmt::Display) {
    let msg = msg.to_string();
    let msg = ctap_core::text::terminal_safe(&msg).replace(['\n', '\t'], " ");
    eprintln!("ctap-sshagent: {msg}");
}
