use std::fmt;

use super::CtapStatus;
use crate::ctaphid::CtapHidError;

/// Errors of the CTAP2 layer.
///
/// `DeviceMisbehaved` (the key sent something that breaks the protocol) is kept apart from
/// `DeviceIncompatible` (the key is fine but lacks a feature we need), as rustls keeps
/// `PeerMisbehaved` apart from `PeerIncompatible`: the first is a security event, the second a
/// configuration problem.
#[derive(Debug)]
pub enum CtapError {
    Hid(CtapHidError),
    /// The key answered with a non-zero status.
    Status(CtapStatus),
    /// The key's answer is malformed or inconsistent.
    DeviceMisbehaved(String),
    /// The key lacks something this operation needs.
    DeviceIncompatible(String),
    /// The caller's input cannot be sent (e.g. a PIN that is too short).
    InvalidInput(String),
}

impl CtapError {
    pub(crate) fn misbehaved(msg: impl Into<String>) -> Self {
        CtapError::DeviceMisbehaved(msg.into())
    }

    pub(crate) fn incompatible(msg: impl Into<String>) -> Self {
        CtapError::DeviceIncompatible(msg.into())
    }

    /// The status byte when the key answered one.
    pub fn status(&self) -> Option<CtapStatus> {
        match self {
            CtapError::Status(s) => Some(*s),
            CtapError::Hid(_)
            | CtapError::DeviceMisbehaved(_)
            | CtapError::DeviceIncompatible(_)
            | CtapError::InvalidInput(_) => None,
        }
    }
}

impl fmt::Display for CtapError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CtapError::Hid(e) => e.fmt(f),
            CtapError::Status(s) => s.fmt(f),
            CtapError::DeviceMisbehaved(m) => {
                write!(f, "the security key sent an invalid response: {m}")
            }
            CtapError::DeviceIncompatible(m) => write!(f, "the security key is not supported: {m}"),
            CtapError::InvalidInput(m) => f.write_str(m),
        }
    }
}

impl std::error::Error for CtapError {}

impl From<CtapHidError> for CtapError {
    fn from(e: CtapHidError) -> Self {
        CtapError::Hid(e)
    }
}
