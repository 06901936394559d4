//! Tier 3, flows: the sequences of steps that use a key and the store together
//! (docs/ARCHITECTURE.md §2, §3). The binaries call these, never the tiers below directly for
//! the same job.
//!
//! - [`session`]: opening the configured keys and the [`session::Prompter`] through which every
//!   flow speaks to the person (cue, PIN).
//! - [`uv`]: the one place that decides how user verification is obtained (built-in UV, a PIN
//!   through the prompter, or refusal).
//! - [`verify`]: the one verifier of every assertion ([`verify::check_assertion`]) and the only
//!   constructor of a [`verify::VerifiedAssertion`].
//! - [`login`]: the whole login as PAM, `ctap-enroll test` and the demo run it.
//! - [`notify`]: the `authpending_file` and `notify_command` while a touch is awaited.
//! - [`enroll`]: making a credential and writing its record.
//! - [`devices`]: what `ctap-enroll devices` reports about each attached key.

pub mod devices;
pub mod enroll;
pub mod login;
pub mod notify;
pub mod session;
pub mod uv;
pub mod verify;
