//! Tier 2, store: what is on disk and who may have written it (docs/ARCHITECTURE.md §1, §4).
//! It knows files, owners and formats; it never talks to a key.
//!
//! - [`fs`]: the one way trusted files are opened (ancestor trust walk, O_NOFOLLOW, bounded) and
//!   state is written (lock, temp, fsync, rename).
//! - [`config`]: root's policy file, validated with file and line.
//! - [`account`]: the canonical account NSS resolves behind the name PAM was given, and the file
//!   names derived from it.
//! - [`credential`]: enrollment records and login state, their formats and their store.
//! - [`admin`]: the edits `ctap-enroll` makes to records (add, remove, suspend, rename).
//! - [`check`]: `ctap-enroll check-config`: every finding about config, records and state.
//! - [`directory`]: the records source `directory` (LDAP, SSSD/FreeIPA mappings, offline cache).

pub mod account;
pub mod admin;
pub mod check;
pub mod config;
pub mod credential;
pub mod directory;
pub mod fs;
