//! ctap-proxy: hands a FIDO2 security key to a VM, container or sandbox. Clients speak
//! CTAPHID over 64-byte reports (a unix socket, or stdin/stdout); every request is decoded
//! strictly, checked against the client's policy and re-encoded before it reaches the key, and
//! every answer is checked and re-encoded before it reaches the client (docs/ARCHITECTURE.md §11).
#![forbid(unsafe_code)]

pub mod audit;
pub mod backend;
pub mod cli;
pub mod hid;
pub mod mediate;
pub mod policy;
pub mod server;
pub mod u2f;
pub mod uhid;
