//! Tier 1, transport: everything that talks to the key, and nothing else
//! (docs/ARCHITECTURE.md §1). It knows bytes, reports and CBOR messages; it does not know users,
//! files or policy.
//!
//! - [`device`]: a [`device::Transport`] moves one 64-byte HID report at a time (hidraw or a unix
//!   socket); enumeration finds FIDO devices; [`device::DeviceUri`] names one.
//! - [`ctaphid`]: CTAPHID framing over a transport: channels, fragmentation, keepalives, one
//!   deadline per exchange, CANCEL on abandon.
//! - [`ctap1`]: CTAP1/U2F for keys without CTAP2: APDUs in CTAPHID_MSG, typed status words, the
//!   touch poll under the same deadline and CANCEL, strict registration and authentication
//!   parsing, the registration's attestation check.
//! - [`ctap2`]: strict CBOR, the CTAP2 commands (getInfo, makeCredential, getAssertion, clientPIN,
//!   selection, probes) and the hmac-secret extension.

pub mod ctap1;
pub mod ctap2;
pub mod ctaphid;
pub mod device;
