use std::fmt;

use super::CtapStatus;
use crate::transport::ctap1::Ctap1Error;
use crate::transport::ctaphid::CtapHidError;

/// Errors of the CTAP2 layer.
///
/// `Misbehaved` (the key sent something that breaks the protocol) is kept apart from
/// `DeviceIncompatible` (the key is fine but lacks a feature we need), as rustls keeps
/// `PeerMisbehaved` apart from `PeerIncompatible`: the first is a security event, the second a
/// configuration problem.
#[derive(Debug)]
pub enum CtapError {
    Hid(CtapHidError),
    /// The key answered with a non-zero status.
    Status(CtapStatus),
    /// The key's answer is malformed or inconsistent.
    Misbehaved(Misbehaviour),
    /// The key lacks something this operation needs.
    DeviceIncompatible(Incompatibility),
    /// The caller's input cannot be sent (e.g. a PIN that is too short).
    InvalidInput(InputProblem),
    /// A CTAP1/U2F exchange failed (a U2F-only key). Its CTAPHID failures are [`CtapError::Hid`]
    /// (the `From` conversion moves them there), so a timeout or a cancel reads the same
    /// whichever protocol the key speaks.
    Ctap1(Ctap1Error),
}

/// What a key lacks. The key is not at fault: it is a configuration problem.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Incompatibility {
    /// It offers neither PIN/UV auth protocol 1 nor 2.
    NoPinProtocol,
    /// It does not list the PIN/UV auth protocol a caller insists on.
    PinProtocolNotListed { version: u64 },
    /// A COSE key of a type or curve we do not verify with (only P-256 and Ed25519).
    CoseKeyType { kty: i128, crv: i128 },
    /// hmac-secret was asked for and the key does not offer it.
    NoHmacSecret,
    /// credProtect was needed (`needs` says for what) and the key does not offer it.
    NoCredProtect { needs: &'static str },
    /// The key speaks only CTAP1/U2F (no CBOR capability, or getInfo refused), and this
    /// operation needs CTAP2 (`needs` says which).
    U2fOnly { needs: &'static str },
}

/// Why the caller's input cannot be sent to a key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InputProblem {
    /// Fewer than CTAP's 4 characters.
    PinTooShort,
    /// Fewer characters than this key's minPINLength.
    PinShorterThanKeyMinimum { min: u64 },
    /// More than CTAP's 63 bytes of UTF-8.
    PinTooLong,
    /// A NUL character, which CTAP's PIN encoding cannot carry.
    PinHasNul,
    /// Our own PIN protocol code: a plaintext that is not whole AES blocks.
    NotWholeBlocks { len: usize },
    /// Our own PIN protocol code: a shared secret of the wrong length for AES-256.
    AesKeyLength,
    /// Our own ephemeral key agreement key came out without coordinates.
    EphemeralKeyNoCoordinates,
}

impl fmt::Display for Incompatibility {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Incompatibility::NoPinProtocol => {
                f.write_str("the key supports no PIN/UV auth protocol we know (1 or 2)")
            }
            Incompatibility::PinProtocolNotListed { version } => {
                write!(f, "the key does not list PIN/UV auth protocol {version}")
            }
            Incompatibility::CoseKeyType { kty, crv } => write!(
                f,
                "unsupported COSE key type {kty} / curve {crv} (only P-256 and Ed25519)"
            ),
            Incompatibility::NoHmacSecret => f.write_str("the key does not support hmac-secret"),
            Incompatibility::NoCredProtect { needs } => write!(
                f,
                "the key does not support credProtect, which {needs} needs"
            ),
            Incompatibility::U2fOnly { needs } => write!(
                f,
                "the key speaks only CTAP1/U2F, and {needs} needs a FIDO2 (CTAP2) key"
            ),
        }
    }
}

impl std::error::Error for Incompatibility {}

impl fmt::Display for InputProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            InputProblem::PinTooShort => f.write_str("the PIN must have at least 4 characters"),
            InputProblem::PinShorterThanKeyMinimum { min } => write!(
                f,
                "this security key requires a PIN of at least {min} characters"
            ),
            InputProblem::PinTooLong => f.write_str("the PIN must be at most 63 bytes long"),
            InputProblem::PinHasNul => f.write_str("the PIN must not contain NUL"),
            InputProblem::NotWholeBlocks { len } => write!(
                f,
                "internal error: a {len}-byte plaintext is not a multiple of the AES block size"
            ),
            InputProblem::AesKeyLength => {
                f.write_str("internal error: the shared secret is not an AES-256 key")
            }
            InputProblem::EphemeralKeyNoCoordinates => {
                f.write_str("internal error: the ephemeral key agreement key has no coordinates")
            }
        }
    }
}

impl std::error::Error for InputProblem {}

/// What exactly a key did wrong. Each variant carries the data of the fault; the words are made
/// once, in `Display`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Misbehaviour {
    /// The bytes are not strict CTAP2 CBOR.
    Cbor(CborProblem),
    /// A response the key must fill was empty (`response` names the command's answer).
    EmptyResponse { response: &'static str },
    /// A CBOR value that must be a map is not one.
    NotAMap { message: &'static str },
    /// A map holds the same key twice.
    RepeatedKey { message: &'static str },
    /// A required member is absent.
    MissingMember {
        message: &'static str,
        member: &'static str,
    },
    /// A member has the wrong CBOR type.
    WrongType {
        message: &'static str,
        member: &'static str,
        expected: &'static str,
    },
    /// A byte string member has the wrong length.
    WrongLength {
        message: &'static str,
        member: &'static str,
        expected: usize,
        got: usize,
    },
    /// The authenticatorData is malformed.
    AuthData(AuthDataProblem),
    /// A COSE public key is malformed.
    CoseKey(CoseKeyProblem),
    /// The credential descriptor in an assertion is malformed.
    Descriptor(DescriptorProblem),
    /// PIN/UV protocol data (key agreement, ciphertext, token) is malformed.
    PinProtocol(PinProtocolProblem),
    /// The hmac-secret extension output is unusable.
    HmacSecret(HmacSecretProblem),
    /// An assertion's signature does not verify under the key the key just created.
    ConfirmationSignature,
    /// User verification was required but the key's answer does not report it.
    UvNotReported,
    /// The worker thread talking to one key ended without an answer.
    KeyThreadFailed,
}

/// Why bytes are not strict CTAP2 CBOR.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CborProblem {
    /// The input ends inside an item.
    Truncated,
    /// Not well-formed at this byte offset.
    NotWellFormed { at: usize },
    /// Well-formed but not valid; `detail` is the decoder's reason (made printable).
    Invalid { at: Option<usize>, detail: String },
    /// Nesting deeper than [`super::cbor::MAX_DEPTH`].
    TooDeep,
    /// The decoder's position is past the input.
    LengthOutOfRange,
    /// Bytes follow the single item.
    TrailingBytes,
    /// Not the canonical encoding (unsorted keys, long integers, indefinite lengths).
    NotCanonical,
    /// A map repeats a key.
    RepeatedKey,
    /// A tag, which CTAP does not allow.
    Tag,
}

/// What is wrong with an authenticatorData.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AuthDataProblem {
    /// An assertion's authenticatorData has the AT flag.
    AttestedInAssertion,
    /// It ends before a field it announces.
    Truncated,
    /// The attested credential id is longer than CTAP allows.
    CredentialIdTooLong { len: usize },
    /// Bytes follow the last field the flags announce.
    TrailingBytes,
    /// A makeCredential answer without attested credential data.
    NoAttestedCredential,
}

/// What is wrong with a COSE public key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CoseKeyProblem {
    /// A P-256 key names an algorithm other than ES256 or ECDH-ES+HKDF-256.
    P256Algorithm(i64),
    /// An Ed25519 key names an algorithm other than EdDSA.
    Ed25519Algorithm(i128),
    /// The P-256 point is not on the curve.
    NotOnCurve,
    /// The Ed25519 point does not decode.
    InvalidEd25519,
    /// A P-256 key was needed and another kind came.
    ExpectedP256,
    /// An Ed25519 key was needed and another kind came.
    ExpectedEd25519,
}

/// What is wrong with the credential descriptor of an assertion.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DescriptorProblem {
    IdNotBytes,
    MissingId,
    TypeNotPublicKey,
    MissingType,
}

/// What is wrong with PIN/UV protocol data.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PinProtocolProblem {
    /// The key agreement key is not a P-256 key.
    KeyAgreementNotP256,
    /// Protocol two ciphertext shorter than its IV.
    ShorterThanIv,
    /// Ciphertext that is not a whole number of AES blocks.
    NotWholeBlocks,
    /// The shared secret gives an AES key of the wrong length.
    AesKeyLength,
    /// Decryption failed.
    Decrypt,
    /// A pinUvAuthToken of a length the protocol does not allow.
    TokenLength(usize),
}

/// What is wrong with the hmac-secret output.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HmacSecretProblem {
    /// The key returned no output.
    Missing,
    /// The output is not a byte string.
    NotBytes,
    /// The decrypted output has the wrong length.
    Length { got: usize, expected: usize },
}

impl CtapError {
    /// The status byte when the key answered one.
    pub fn status(&self) -> Option<CtapStatus> {
        match self {
            CtapError::Status(s) => Some(*s),
            CtapError::Hid(_)
            | CtapError::Misbehaved(_)
            | CtapError::DeviceIncompatible(_)
            | CtapError::InvalidInput(_)
            | CtapError::Ctap1(_) => None,
        }
    }
}

impl fmt::Display for CtapError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CtapError::Hid(e) => e.fmt(f),
            CtapError::Status(s) => s.fmt(f),
            CtapError::Misbehaved(m) => {
                write!(f, "the security key sent an invalid response: {m}")
            }
            CtapError::DeviceIncompatible(m) => write!(f, "the security key is not supported: {m}"),
            CtapError::InvalidInput(m) => m.fmt(f),
            CtapError::Ctap1(e) => e.fmt(f),
        }
    }
}

impl fmt::Display for Misbehaviour {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Misbehaviour::Cbor(p) => p.fmt(f),
            Misbehaviour::EmptyResponse { response } => write!(f, "empty {response}"),
            Misbehaviour::NotAMap { message } => write!(f, "{message} is not a CBOR map"),
            Misbehaviour::RepeatedKey { message } => write!(f, "{message} repeats a key"),
            Misbehaviour::MissingMember { message, member } => {
                write!(f, "{message} lacks {member}")
            }
            Misbehaviour::WrongType {
                message,
                member,
                expected,
            } => write!(f, "{message} member {member} is not {expected}"),
            Misbehaviour::WrongLength {
                message,
                member,
                expected,
                got,
            } => write!(
                f,
                "{message} member {member} is {got} bytes, not {expected}"
            ),
            Misbehaviour::AuthData(p) => p.fmt(f),
            Misbehaviour::CoseKey(p) => p.fmt(f),
            Misbehaviour::Descriptor(p) => p.fmt(f),
            Misbehaviour::PinProtocol(p) => p.fmt(f),
            Misbehaviour::HmacSecret(p) => p.fmt(f),
            Misbehaviour::ConfirmationSignature => {
                f.write_str("the confirmation assertion's signature does not verify")
            }
            Misbehaviour::UvNotReported => {
                f.write_str("user verification was required but the key did not report it")
            }
            Misbehaviour::KeyThreadFailed => {
                f.write_str("the thread asking one of several keys failed")
            }
        }
    }
}

impl fmt::Display for CborProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CborProblem::Truncated => f.write_str("CBOR that ends in the middle of an item"),
            CborProblem::NotWellFormed { at } => {
                write!(f, "CBOR that is not well-formed (at byte {at})")
            }
            CborProblem::Invalid {
                at: Some(at),
                detail,
            } => write!(f, "CBOR that is not valid (at byte {at}: {detail})"),
            CborProblem::Invalid { at: None, detail } => {
                write!(f, "CBOR that is not valid ({detail})")
            }
            CborProblem::TooDeep => f.write_str("CBOR nested too deeply"),
            CborProblem::LengthOutOfRange => f.write_str("invalid CBOR: length out of range"),
            CborProblem::TrailingBytes => f.write_str("trailing bytes after CBOR"),
            CborProblem::NotCanonical => f.write_str("CBOR is not in canonical form"),
            CborProblem::RepeatedKey => f.write_str("CBOR map repeats a key"),
            CborProblem::Tag => f.write_str("CBOR tags are not allowed in CTAP"),
        }
    }
}

impl fmt::Display for AuthDataProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AuthDataProblem::AttestedInAssertion => f.write_str(
                "assertion authenticatorData has the AT flag (attested credential data)",
            ),
            AuthDataProblem::Truncated => f.write_str("authenticatorData is truncated"),
            AuthDataProblem::CredentialIdTooLong { len } => {
                write!(f, "credential id of {len} bytes, longer than 1023")
            }
            AuthDataProblem::TrailingBytes => f.write_str("trailing bytes after authenticatorData"),
            AuthDataProblem::NoAttestedCredential => {
                f.write_str("makeCredential authData has no attested credential")
            }
        }
    }
}

impl fmt::Display for CoseKeyProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CoseKeyProblem::P256Algorithm(alg) => {
                write!(f, "P-256 COSE key with algorithm {alg}")
            }
            CoseKeyProblem::Ed25519Algorithm(alg) => {
                write!(f, "Ed25519 COSE key with algorithm {alg}")
            }
            CoseKeyProblem::NotOnCurve => f.write_str("P-256 public key is not on the curve"),
            CoseKeyProblem::InvalidEd25519 => f.write_str("Ed25519 public key is invalid"),
            CoseKeyProblem::ExpectedP256 => f.write_str("expected a P-256 key"),
            CoseKeyProblem::ExpectedEd25519 => f.write_str("expected an Ed25519 key"),
        }
    }
}

impl fmt::Display for DescriptorProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            DescriptorProblem::IdNotBytes => "credential descriptor id is not a byte string",
            DescriptorProblem::MissingId => "credential descriptor lacks its id",
            DescriptorProblem::TypeNotPublicKey => {
                "credential descriptor type is not \"public-key\""
            }
            DescriptorProblem::MissingType => "credential descriptor lacks its type",
        })
    }
}

impl fmt::Display for PinProtocolProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PinProtocolProblem::KeyAgreementNotP256 => {
                f.write_str("key agreement key is not P-256")
            }
            PinProtocolProblem::ShorterThanIv => f.write_str("encrypted data shorter than its IV"),
            PinProtocolProblem::NotWholeBlocks => {
                f.write_str("encrypted data is not a whole number of AES blocks")
            }
            PinProtocolProblem::AesKeyLength => f.write_str("bad AES key length"),
            PinProtocolProblem::Decrypt => f.write_str("cannot decrypt"),
            PinProtocolProblem::TokenLength(n) => write!(f, "pinUvAuthToken of {n} bytes"),
        }
    }
}

impl fmt::Display for HmacSecretProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HmacSecretProblem::Missing => f.write_str("the key returned no hmac-secret output"),
            HmacSecretProblem::NotBytes => f.write_str("hmac-secret output is not a byte string"),
            HmacSecretProblem::Length { got, expected } => {
                write!(f, "hmac-secret output of {got} bytes, expected {expected}")
            }
        }
    }
}

impl std::error::Error for CtapError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            CtapError::Hid(e) => Some(e),
            CtapError::Misbehaved(m) => Some(m),
            CtapError::DeviceIncompatible(i) => Some(i),
            CtapError::InvalidInput(i) => Some(i),
            CtapError::Ctap1(e) => Some(e),
            CtapError::Status(_) => None,
        }
    }
}

impl std::error::Error for Misbehaviour {}

impl From<Ctap1Error> for CtapError {
    fn from(e: Ctap1Error) -> Self {
        match e {
            Ctap1Error::Hid(h) => CtapError::Hid(h),
            other => CtapError::Ctap1(other),
        }
    }
}

impl From<CtapHidError> for CtapError {
    fn from(e: CtapHidError) -> Self {
        CtapError::Hid(e)
    }
}

impl From<Misbehaviour> for CtapError {
    fn from(m: Misbehaviour) -> Self {
        CtapError::Misbehaved(m)
    }
}

impl From<CborProblem> for CtapError {
    fn from(p: CborProblem) -> Self {
        CtapError::Misbehaved(Misbehaviour::Cbor(p))
    }
}

impl From<AuthDataProblem> for CtapError {
    fn from(p: AuthDataProblem) -> Self {
        CtapError::Misbehaved(Misbehaviour::AuthData(p))
    }
}

impl From<CoseKeyProblem> for CtapError {
    fn from(p: CoseKeyProblem) -> Self {
        CtapError::Misbehaved(Misbehaviour::CoseKey(p))
    }
}

impl From<DescriptorProblem> for CtapError {
    fn from(p: DescriptorProblem) -> Self {
        CtapError::Misbehaved(Misbehaviour::Descriptor(p))
    }
}

impl From<PinProtocolProblem> for CtapError {
    fn from(p: PinProtocolProblem) -> Self {
        CtapError::Misbehaved(Misbehaviour::PinProtocol(p))
    }
}

impl From<HmacSecretProblem> for CtapError {
    fn from(p: HmacSecretProblem) -> Self {
        CtapError::Misbehaved(Misbehaviour::HmacSecret(p))
    }
}
