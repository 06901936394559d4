use std::fmt;

use crate::flows::verify::VerifyError;
use crate::transport::ctap2::CtapError;

/// Errors of the SSH layer: formats, signing and enrollment of OpenSSH security keys.
///
/// `Malformed` (a peer or a file sent bytes that are not what the format says) is kept apart
/// from `Unsupported` (well-formed, but a key type or option we do not handle) and from
/// `Refused` (well-formed and supported, but policy says no).
#[derive(Debug)]
pub enum SshError {
    Malformed(String),
    Unsupported(String),
    Refused(String),
    /// The security key failed or answered with an error.
    Ctap(CtapError),
    /// The key's answer failed the one verifier ([`crate::flows::verify::check_assertion`]): another
    /// credential, rpIdHash, flags, or a signature that does not verify with our public key.
    Rejected(VerifyError),
    /// The key's answer breaks what OpenSSH can encode (extensions in authenticatorData, a
    /// signature of the wrong form).
    BadAssertion(String),
}

impl SshError {
    pub(crate) fn malformed(msg: impl Into<String>) -> Self {
        SshError::Malformed(msg.into())
    }

    pub(crate) fn unsupported(msg: impl Into<String>) -> Self {
        SshError::Unsupported(msg.into())
    }

    pub(crate) fn refused(msg: impl Into<String>) -> Self {
        SshError::Refused(msg.into())
    }
}

impl fmt::Display for SshError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SshError::Malformed(m) => write!(f, "malformed: {m}"),
            SshError::Unsupported(m) => write!(f, "unsupported: {m}"),
            SshError::Refused(m) => write!(f, "refused: {m}"),
            SshError::Ctap(e) => e.fmt(f),
            SshError::Rejected(e) => write!(f, "the security key's assertion is rejected: {e}"),
            SshError::BadAssertion(m) => write!(f, "the security key's assertion is unusable: {m}"),
        }
    }
}

impl std::error::Error for SshError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            SshError::Ctap(e) => Some(e),
            SshError::Rejected(e) => Some(e),
            SshError::Malformed(_)
            | SshError::Unsupported(_)
            | SshError::Refused(_)
            | SshError::BadAssertion(_) => None,
        }
    }
}

impl From<CtapError> for SshError {
    fn from(e: CtapError) -> Self {
        SshError::Ctap(e)
    }
}
