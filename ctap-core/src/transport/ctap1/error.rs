//! Errors of the CTAP1/U2F client: one enum, data not text; the words are made once, here.

use std::fmt;

use super::status::StatusWord;
use crate::transport::ctaphid::CtapHidError;

/// Why a U2F exchange failed.
#[derive(Debug)]
pub enum Ctap1Error {
    /// The CTAPHID layer failed (transport, framing, CTAPHID ERROR, the deadline, a cancel).
    Hid(CtapHidError),
    /// The device does not implement CTAPHID_MSG (its INIT capabilities say NMSG).
    NotU2f,
    /// U2F_VERSION did not answer "U2F_V2".
    UnsupportedVersion(Vec<u8>),
    /// The key answered a status word that does not complete this request.
    Status(StatusWord),
    /// The key broke the U2F message format; nothing it sent can be trusted.
    Misbehaved(U2fProblem),
    /// A registration did not verify against its attestation certificate.
    Registration(RegistrationProblem),
    /// A request's data does not fit its APDU encoding.
    RequestTooLong { len: usize },
}

/// How a U2F response broke the message format.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum U2fProblem {
    /// Shorter than a status word.
    NoStatusWord { len: usize },
    /// An error status word with data before it (ISO 7816-4 error responses carry none).
    DataWithError { sw: u16, len: usize },
    /// A response ended before `what`.
    Truncated { what: &'static str },
    /// The registration's first byte is not the reserved value 0x05.
    ReservedByte(u8),
    /// The user public key is not an uncompressed P-256 point on the curve.
    PublicKey,
    /// A key handle of length zero.
    EmptyKeyHandle,
    /// The attestation certificate is not one DER-encoded X.509 certificate.
    Certificate(String),
    /// The signature is not one DER-encoded ECDSA signature filling the rest of the response.
    Signature,
    /// Authentication flags with reserved bits set (only bit 0, user presence, is defined).
    ReservedFlags(u8),
    /// A check-only request answered success (it must answer 0x6985 or 0x6A80).
    CheckOnlySucceeded,
}

/// Why a registration did not verify.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RegistrationProblem {
    /// The attestation certificate's key is not a P-256 (id-ecPublicKey, prime256v1) key.
    AttestationKey,
    /// The signature does not verify with the attestation certificate's key over
    /// 0x00 || appId hash || challenge hash || key handle || public key.
    Signature,
}

impl fmt::Display for Ctap1Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Ctap1Error::Hid(e) => e.fmt(f),
            Ctap1Error::NotU2f => write!(
                f,
                "this device speaks neither CTAP2 nor CTAP1/U2F (its CTAPHID capabilities say \
                 it does not implement MSG)"
            ),
            Ctap1Error::UnsupportedVersion(v) => write!(
                f,
                "the security key's U2F version is not U2F_V2 (it answered {} bytes): this \
                 key is not supported",
                v.len()
            ),
            Ctap1Error::Status(sw) => write!(f, "the security key refused the U2F request: {sw}"),
            Ctap1Error::Misbehaved(p) => {
                write!(f, "the security key broke the U2F message format: {p}")
            }
            Ctap1Error::Registration(p) => write!(f, "the U2F registration does not verify: {p}"),
            Ctap1Error::RequestTooLong { len } => write!(
                f,
                "a U2F request of {len} bytes does not fit the security key's APDU encoding"
            ),
        }
    }
}

impl fmt::Display for U2fProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            U2fProblem::NoStatusWord { len } => {
                write!(f, "a response of {len} bytes has no status word")
            }
            U2fProblem::DataWithError { sw, len } => {
                write!(f, "status word 0x{sw:04x} came with {len} bytes of data")
            }
            U2fProblem::Truncated { what } => write!(f, "the response ends before {what}"),
            U2fProblem::ReservedByte(b) => {
                write!(f, "the registration starts with 0x{b:02x}, not 0x05")
            }
            U2fProblem::PublicKey => {
                write!(f, "the public key is not an uncompressed P-256 point")
            }
            U2fProblem::EmptyKeyHandle => write!(f, "the key handle is empty"),
            U2fProblem::Certificate(e) => {
                write!(f, "the attestation certificate is not DER X.509 ({e})")
            }
            U2fProblem::Signature => write!(
                f,
                "the signature is not one DER ECDSA signature ending the response"
            ),
            U2fProblem::ReservedFlags(b) => {
                write!(f, "the flags 0x{b:02x} have reserved bits set")
            }
            U2fProblem::CheckOnlySucceeded => {
                write!(f, "a check-only request answered success")
            }
        }
    }
}

impl fmt::Display for RegistrationProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RegistrationProblem::AttestationKey => {
                write!(f, "the attestation certificate's key is not a P-256 key")
            }
            RegistrationProblem::Signature => write!(
                f,
                "the attestation signature does not match (a key handle or appId mismatch, or a \
                 forged registration)"
            ),
        }
    }
}

impl std::error::Error for Ctap1Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Ctap1Error::Hid(e) => Some(e),
            Ctap1Error::NotU2f
            | Ctap1Error::UnsupportedVersion(_)
            | Ctap1Error::Status(_)
            | Ctap1Error::Misbehaved(_)
            | Ctap1Error::Registration(_)
            | Ctap1Error::RequestTooLong { .. } => None,
        }
    }
}

impl From<CtapHidError> for Ctap1Error {
    fn from(e: CtapHidError) -> Self {
        Ctap1Error::Hid(e)
    }
}

impl From<U2fProblem> for Ctap1Error {
    fn from(p: U2fProblem) -> Self {
        Ctap1Error::Misbehaved(p)
    }
}

impl From<RegistrationProblem> for Ctap1Error {
    fn from(p: RegistrationProblem) -> Self {
        Ctap1Error::Registration(p)
    }
}
