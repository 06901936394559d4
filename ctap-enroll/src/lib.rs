//! `ctap-enroll`: the administrator's and user's command line over ctap-core.
//!
//! Thin by design (docs/ARCHITECTURE.md §1): parse arguments ([`cli`]), talk to the terminal
//! ([`prompt`]), call ctap-core, print. Every file and protocol decision is the library's, but
//! one: the pam-u2f authfile importer ([`pamu2f`]) lives here, because only this CLI uses it
//! and the PAM module and the agent need not carry it.
#![forbid(unsafe_code)]

pub mod cli;
mod commands;
mod failure;
pub mod pamu2f;
mod prompt;

use std::process::ExitCode;

use clap::Parser;

pub use failure::{Exit, Failure};

/// Parse the command line, run it, report: the whole program.
pub fn main() -> ExitCode {
    let cli = cli::Cli::parse();
    match commands::run(cli) {
        Ok(exit) => exit.into(),
        Err(failure) => {
            failure.print();
            failure.code.into()
        }
    }
}
