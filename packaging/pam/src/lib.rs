//! Nothing to build: this crate is the definition of the `libpam-ctap` Debian package and the
//! `pam-ctap` RPM, in its Cargo.toml (cargo-deb and cargo-generate-rpm read the package's
//! metadata, and take its one-line description from `description`). `scripts/build-packages`
//! builds them.
#![forbid(unsafe_code)]
