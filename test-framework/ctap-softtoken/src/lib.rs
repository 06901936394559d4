//! ctap-softtoken: a virtual FIDO2 security key behind a unix socket, for tests, demos and CI.
//!
//! The authenticator is the real SoloKeys/Nitrokey `fido-authenticator` on trussed
//! (docs/ARCHITECTURE.md §9); this crate adds what a USB key's firmware would: a platform with
//! real randomness and file-backed flash ([`platform`], [`state_file`]), the device side of
//! CTAPHID ([`ctaphid_device`], [`connection`]), a transaction queue ([`engine`]), the socket
//! server ([`server`]) and, for tests, deliberate misbehaviour ([`fault`]).
#![forbid(unsafe_code)]

pub mod attestation;
pub mod cli;
pub mod connection;
pub mod ctaphid_device;
pub mod engine;
pub mod error;
pub mod fault;
pub mod pin;
pub mod platform;
pub mod server;
pub mod state_file;

use std::process::ExitCode;

use clap::Parser;

/// Entry point of the `ctap-softtoken` binary.
pub fn main() -> ExitCode {
    let cli = cli::Cli::parse();
    let result = match cli.command {
        cli::Command::Serve(args) => server::serve(args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("ctap-softtoken: {e}");
            ExitCode::FAILURE
        }
    }
}
