use std::fmt;

use crate::flows::verify::VerifyError;
use crate::transport::ctap2::CtapError;

/// Errors of the SSH layer: formats, signing and enrollment of OpenSSH security keys.
///
/// `Malformed` (a peer or a file sent bytes that are not what the format says) is kept apart
/// from `Unsupported` (well-formed, but a key type or option we do not handle) and from
/// `Refused` (well-formed and supported, but policy says no). Each carries the facts; the words
/// are made once, in `Display`.
#[derive(Debug)]
pub enum SshError {
    Malformed(Malformed),
    Unsupported(Unsupported),
    Refused(Refusal),
    /// The security key failed or answered with an error.
    Ctap(CtapError),
    /// The key's answer failed the one verifier ([`crate::flows::verify::check_assertion`]): another
    /// credential, rpIdHash, flags, or a signature that does not verify with our public key.
    Rejected(VerifyError),
    /// The key's answer breaks what OpenSSH can encode (extensions in authenticatorData, a
    /// signature of the wrong form), or a signature does not verify.
    BadAssertion(BadAssertion),
}

/// What is wrong with SSH wire data, a key blob or a key file. `field` names what was being
/// read; `parser` fields hold the `ssh-key` crate's own words.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Malformed {
    /// `field` needs `needed` bytes and only `left` remain.
    Truncated {
        field: &'static str,
        needed: usize,
        left: usize,
    },
    /// A length that does not fit in memory.
    TooLong {
        field: &'static str,
    },
    NotUtf8 {
        field: &'static str,
    },
    /// Bytes after the end of `message`.
    TrailingBytes {
        message: &'static str,
        count: usize,
    },
    NegativeMpint {
        field: &'static str,
    },
    MpintTooLong {
        field: &'static str,
        max: usize,
    },
    EmptyApplication,
    EmptyKeyHandle,
    /// An sk-ecdsa key on another curve.
    Curve {
        curve: String,
    },
    /// Q is not an uncompressed P-256 point.
    PointNotUncompressed,
    PointNotOnCurve,
    Ed25519Length {
        len: usize,
    },
    Ed25519Invalid,
    /// A signature of another type than the key's.
    SignatureType {
        got: String,
        key: &'static str,
    },
    /// ECDSA r or s out of range.
    SignatureScalars,
    /// Not an OpenSSH private key file.
    KeyFile {
        parser: String,
    },
    /// `ssh-key` refused the key pair we built from our fields.
    KeyPair {
        parser: String,
    },
    /// `ssh-key` could not encode the key data or the file.
    Encoding {
        parser: String,
    },
    /// The host key of a session binding.
    HostKey {
        parser: String,
    },
    /// The host key signature of a session binding.
    HostKeySignature {
        parser: String,
    },
    /// A certificate with an empty signature key.
    CertificateNoCa,
    /// The private fields sent with a certificate disagree with it (OpenSSH: KEY_CERT_MISMATCH).
    CertificateMismatch {
        field: &'static str,
    },
}

/// Well-formed, but not something we handle.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Unsupported {
    /// A COSE key agreement key where a signing key belongs.
    KeyAgreementKey,
    /// A passphrase-protected key file.
    EncryptedKeyFile,
    /// A key file of a key that is not a security key.
    NotSecurityKey { algorithm: String },
    /// A public key blob of a type that is not a security-key type.
    KeyType { name: String },
    /// A host key whose signatures we do not verify (RSA, P-384, P-521).
    HostKeyAlgorithm { algorithm: String },
    /// An agent constraint extension other than sk-provider@openssh.com (once).
    ConstraintExtension { name: String },
    /// An agent constraint we do not know, or one given twice.
    Constraint { code: u8 },
}

/// Well-formed and supported, but not allowed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// An SSH credential's application must start with `ssh:`.
    NotSshApplication { application: String },
    /// An SSH credential needs a name.
    EmptyName,
    /// The host key's signature over the session id does not verify.
    HostSignature,
}

/// A key's answer OpenSSH cannot use, or a signature that does not verify.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BadAssertion {
    /// authenticatorData longer than the 37 bytes OpenSSH's signature has room for.
    AuthDataExtensions,
    /// makeCredential made a key of another algorithm than asked for.
    OtherAlgorithm,
    SignatureNotDer,
    Ed25519SignatureLength {
        len: usize,
    },
    SignatureDoesNotVerify,
}

impl SshError {
    pub(crate) fn malformed(m: Malformed) -> Self {
        SshError::Malformed(m)
    }

    pub(crate) fn unsupported(u: Unsupported) -> Self {
        SshError::Unsupported(u)
    }

    pub(crate) fn refused(r: Refusal) -> Self {
        SshError::Refused(r)
    }
}

impl fmt::Display for Malformed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Malformed::Truncated {
                field,
                needed,
                left,
            } => write!(f, "{field}: needs {needed} bytes, {left} left"),
            Malformed::TooLong { field } => write!(f, "{field}: too long"),
            Malformed::NotUtf8 { field } => write!(f, "{field}: not UTF-8"),
            Malformed::TrailingBytes { message, count } => {
                write!(f, "{message}: {count} unexpected trailing bytes")
            }
            Malformed::NegativeMpint { field } => write!(f, "{field}: negative mpint"),
            Malformed::MpintTooLong { field, max } => {
                write!(f, "{field}: mpint longer than {max} bytes")
            }
            Malformed::EmptyApplication => f.write_str("empty application"),
            Malformed::EmptyKeyHandle => f.write_str("empty key handle"),
            Malformed::Curve { curve } => {
                write!(f, "curve {curve:?} for {}", super::key::SK_ECDSA)
            }
            Malformed::PointNotUncompressed => f.write_str("Q is not an uncompressed P-256 point"),
            Malformed::PointNotOnCurve => f.write_str("Q is not on the P-256 curve"),
            Malformed::Ed25519Length { len } => {
                write!(f, "Ed25519 public key is {len} bytes, not 32")
            }
            Malformed::Ed25519Invalid => f.write_str("invalid Ed25519 public key"),
            Malformed::SignatureType { got, key } => {
                write!(f, "signature type {got:?} for a {key} key")
            }
            Malformed::SignatureScalars => f.write_str("r or s out of range"),
            Malformed::KeyFile { parser } => write!(f, "not an OpenSSH private key: {parser}"),
            Malformed::KeyPair { parser } => write!(f, "key pair: {parser}"),
            Malformed::Encoding { parser } => write!(f, "encoding: {parser}"),
            Malformed::HostKey { parser } => write!(f, "host key: {parser}"),
            Malformed::HostKeySignature { parser } => write!(f, "host key signature: {parser}"),
            Malformed::CertificateNoCa => f.write_str("certificate without a CA key"),
            Malformed::CertificateMismatch { field } => {
                write!(f, "the key's {field} is not the certificate's")
            }
        }
    }
}

impl fmt::Display for Unsupported {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Unsupported::KeyAgreementKey => {
                f.write_str("the public key is a key-agreement key, not a signing key")
            }
            Unsupported::EncryptedKeyFile => f.write_str("passphrase-protected key files are not supported (ssh-keygen -p -N '' removes the passphrase; an sk key file holds no secret)"),
            Unsupported::NotSecurityKey { algorithm } => {
                write!(f, "{algorithm} is not a security-key key")
            }
            Unsupported::KeyType { name } => {
                write!(f, "key type {name:?} is not a security-key type")
            }
            Unsupported::HostKeyAlgorithm { algorithm } => {
                write!(f, "cannot verify {algorithm} host key signatures")
            }
            Unsupported::ConstraintExtension { name } => {
                write!(f, "constraint extension {name:?}")
            }
            Unsupported::Constraint { code } => write!(f, "constraint {code} (or given twice)"),
        }
    }
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Refusal::NotSshApplication { application } => {
                write!(f, "application {application:?} must start with \"ssh:\"")
            }
            Refusal::EmptyName => f.write_str("the credential needs a name"),
            Refusal::HostSignature => {
                f.write_str("host key signature over the session id does not verify")
            }
        }
    }
}

impl fmt::Display for BadAssertion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BadAssertion::AuthDataExtensions => {
                f.write_str("authenticatorData carries extensions or attested data")
            }
            BadAssertion::OtherAlgorithm => {
                f.write_str("the key created a credential of another algorithm")
            }
            BadAssertion::SignatureNotDer => f.write_str("ECDSA signature is not DER"),
            BadAssertion::Ed25519SignatureLength { len } => {
                write!(f, "Ed25519 signature is {len} bytes, not 64")
            }
            BadAssertion::SignatureDoesNotVerify => f.write_str("signature does not verify"),
        }
    }
}

impl std::error::Error for Malformed {}
impl std::error::Error for Unsupported {}
impl std::error::Error for Refusal {}
impl std::error::Error for BadAssertion {}

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
            SshError::Malformed(e) => Some(e),
            SshError::Unsupported(e) => Some(e),
            SshError::Refused(e) => Some(e),
            SshError::BadAssertion(e) => Some(e),
        }
    }
}

impl From<CtapError> for SshError {
    fn from(e: CtapError) -> Self {
        SshError::Ctap(e)
    }
}

/// Why `write_key_files` wrote no key files.
#[derive(Debug)]
pub enum KeyFileError {
    /// The key could not be put in OpenSSH's private key format.
    Encode(SshError),
    /// Creating or writing `path` failed (it exists already, say: it is never overwritten).
    Io {
        path: std::path::PathBuf,
        source: std::io::Error,
    },
}

impl fmt::Display for KeyFileError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            KeyFileError::Encode(e) => e.fmt(f),
            KeyFileError::Io { path, source } => write!(f, "{}: {source}", path.display()),
        }
    }
}

impl std::error::Error for KeyFileError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            KeyFileError::Encode(e) => Some(e),
            KeyFileError::Io { source, .. } => Some(source),
        }
    }
}
