//! ctap-core: everything the PAM module, the SSH agent and the enrollment CLI share.
//!
//! Tiers, each a folder, each importing only from the tiers above it in this list
//! (docs/ARCHITECTURE.md §1):
//! - [`transport`]: talking to the key: [`transport::device`] (hidraw or a unix socket, one
//!   64-byte report at a time), [`transport::ctaphid`] (framing, channels, deadlines, cancel),
//!   [`transport::ctap2`] (strict CBOR, commands, hmac-secret).
//! - [`store`]: what is on disk: [`store::fs`] (trusted reads, atomic locked writes),
//!   [`store::config`], [`store::account`], [`store::credential`] (records and state),
//!   [`store::admin`] (record edits), [`store::check`] (config and record findings).
//! - [`flows`]: [`flows::session`] (keys and the prompter), [`flows::uv`] (how user
//!   verification is obtained), [`flows::verify`] (the one verifier), [`flows::login`],
//!   [`flows::enroll`].
//! - [`ssh`] (feature `ssh`, off in the PAM module): SSH key, signature and agent-request formats
//!   and the signing flow on top of the verifier.
//! - [`text`]: the user-facing wording of errors, shared by every binary.
#![forbid(unsafe_code)]
// clippy.toml forbids reading the environment (std::env::var and friends) in this crate; the
// rule covers what ships, and test builds may use temp_dir and child-process variables.
#![cfg_attr(test, allow(clippy::disallowed_methods))]

pub mod flows;
#[cfg(any(test, feature = "fuzzing"))]
#[doc(hidden)]
pub mod fuzz_api;
#[cfg(feature = "ssh")]
pub mod ssh;
pub mod store;
pub mod text;
pub mod transport;
