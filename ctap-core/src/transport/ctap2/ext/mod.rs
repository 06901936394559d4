//! CTAP2 extensions, each in its own module with its own secrets.

pub mod hmac_secret;
