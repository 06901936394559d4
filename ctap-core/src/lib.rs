//! ctap-core: everything the PAM module, the SSH agent and the enrollment CLI share.
//!
//! Layers, each with one seam (docs/ARCHITECTURE.md §1):
//! - [`device`]: a [`device::Transport`] moves one 64-byte HID report at a time (hidraw or a unix
//!   socket); enumeration finds FIDO devices; [`device::DeviceUri`] names one.
//! - [`ctaphid`]: CTAPHID framing over a transport: channels, fragmentation, keepalives.
//! - [`ctap2`]: CBOR commands (getInfo, makeCredential, getAssertion, clientPIN, …) and the
//!   hmac-secret extension.
//! - [`credential`]: enrollment records and login state on disk; [`fs`] opens and writes them safely.
//! - [`verify`]: the one verifier of every assertion ([`verify::check_assertion`]) and the only
//!   constructor of a [`verify::VerifiedAssertion`].
//! - [`uv`]: the one place that decides how user verification is obtained (built-in UV, a PIN
//!   through a [`session::Prompter`], or refusal).
//! - [`login`]: the whole login as PAM, `ctap-enroll test` and the demo run it.
//! - [`config`]: root's policy file.
//! - [`account`]: the canonical account behind the name PAM was given.
#![forbid(unsafe_code)]
// clippy.toml forbids reading the environment (std::env::var and friends) in this crate; the
// rule covers what ships, and test builds may use temp_dir and child-process variables.
#![cfg_attr(test, allow(clippy::disallowed_methods))]

pub mod account;
pub mod admin;
pub mod check;
pub mod config;
pub mod credential;
pub mod ctap2;
pub mod ctaphid;
pub mod device;
pub mod enroll;
pub mod fs;
#[cfg(any(test, feature = "fuzzing"))]
#[doc(hidden)]
pub mod fuzz_api;
pub mod login;
pub mod session;
#[cfg(feature = "ssh")]
pub mod ssh;
pub mod text;
pub mod uv;
pub mod verify;
