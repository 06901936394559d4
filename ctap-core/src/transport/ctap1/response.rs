//! The two U2F responses, parsed strictly, and what their signatures cover.
//!
//! Registration (U2F raw message formats v1.2 §4.3): 0x05 || user public key (65 bytes,
//! uncompressed P-256) || key handle length (1 byte) || key handle || attestation certificate
//! (X.509, DER) || signature (ECDSA, DER). Authentication (§5.4): flags (1 byte) || counter
//! (4 bytes, big-endian) || signature (ECDSA, DER). Every field is checked and nothing may
//! follow the signature.

use p256::ecdsa::signature::Verifier;
use p256::ecdsa::{Signature, VerifyingKey};
use x509_cert::der::asn1::ObjectIdentifier;
use x509_cert::der::{Decode, Encode, Header, SliceReader, Tag};
use x509_cert::Certificate;

use super::error::{Ctap1Error, RegistrationProblem, U2fProblem};

/// The registration's first byte, "reserved for legacy reasons".
const RESERVED: u8 = 0x05;
/// An uncompressed SEC1 P-256 point: 0x04 || x || y.
pub const PUBLIC_KEY_LEN: usize = 65;
/// The user-presence bit of the authentication flags; the other bits are reserved (zero).
pub const FLAG_USER_PRESENT: u8 = 0x01;
/// Bytes an authentication signature covers: appId hash, flags, counter, challenge hash.
pub const AUTHENTICATION_SIGNED_LEN: usize = 32 + 1 + 4 + 32;

/// id-ecPublicKey (RFC 5480).
const ID_EC_PUBLIC_KEY: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10045.2.1");
/// prime256v1 / secp256r1 (RFC 5480).
const SECP256R1: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10045.3.1.7");

/// A U2F_REGISTER answer, well-formed but not yet verified ([`verify_registration`]).
#[derive(Debug, Clone)]
pub struct RegisterResponse {
    public_key: [u8; PUBLIC_KEY_LEN],
    key_handle: Vec<u8>,
    certificate: Certificate,
    certificate_der: Vec<u8>,
    signature: Signature,
}

impl RegisterResponse {
    /// Parse the data of a successful U2F_REGISTER response (the status word taken off).
    pub fn parse(data: &[u8]) -> Result<Self, Ctap1Error> {
        let (&reserved, rest) = data.split_first().ok_or(U2fProblem::Truncated {
            what: "the reserved byte",
        })?;
        if reserved != RESERVED {
            return Err(U2fProblem::ReservedByte(reserved).into());
        }
        let (public_key, rest) =
            rest.split_first_chunk::<PUBLIC_KEY_LEN>()
                .ok_or(U2fProblem::Truncated {
                    what: "the end of the public key",
                })?;
        if public_key[0] != 0x04 || p256::PublicKey::from_sec1_bytes(public_key).is_err() {
            return Err(U2fProblem::PublicKey.into());
        }
        let (&handle_len, rest) = rest.split_first().ok_or(U2fProblem::Truncated {
            what: "the key handle length",
        })?;
        if handle_len == 0 {
            return Err(U2fProblem::EmptyKeyHandle.into());
        }
        let (key_handle, rest) =
            rest.split_at_checked(usize::from(handle_len))
                .ok_or(U2fProblem::Truncated {
                    what: "the end of the key handle",
                })?;
        let cert_len = der_length(rest)?;
        let (certificate_der, signature) =
            rest.split_at_checked(cert_len)
                .ok_or(U2fProblem::Truncated {
                    what: "the end of the attestation certificate",
                })?;
        let certificate = Certificate::from_der(certificate_der)
            .map_err(|e| U2fProblem::Certificate(e.to_string()))?;
        Ok(RegisterResponse {
            public_key: *public_key,
            key_handle: key_handle.to_vec(),
            certificate,
            certificate_der: certificate_der.to_vec(),
            signature: parse_signature(signature)?,
        })
    }

    /// The new credential's public key, an uncompressed SEC1 P-256 point.
    pub fn public_key(&self) -> &[u8; PUBLIC_KEY_LEN] {
        &self.public_key
    }

    pub fn key_handle(&self) -> &[u8] {
        &self.key_handle
    }

    /// The attestation certificate, DER, as the key sent it.
    pub fn certificate_der(&self) -> &[u8] {
        &self.certificate_der
    }
}

/// The length of the DER element (tag, length, contents) at the start of `bytes`: the
/// certificate's length is only known from its own header.
fn der_length(bytes: &[u8]) -> Result<usize, Ctap1Error> {
    let bad = |e: x509_cert::der::Error| U2fProblem::Certificate(e.to_string());
    let mut reader = SliceReader::new(bytes).map_err(bad)?;
    let header = Header::decode(&mut reader).map_err(bad)?;
    if header.tag != Tag::Sequence {
        return Err(
            U2fProblem::Certificate(format!("a {} where a SEQUENCE belongs", header.tag)).into(),
        );
    }
    let total = (header.encoded_len().map_err(bad)? + header.length).map_err(bad)?;
    Ok(usize::try_from(total).map_err(bad)?)
}

/// One DER ECDSA P-256 signature filling `bytes` exactly, in its one canonical encoding.
fn parse_signature(bytes: &[u8]) -> Result<Signature, Ctap1Error> {
    let signature = Signature::from_der(bytes).map_err(|_| U2fProblem::Signature)?;
    if signature.to_der().as_bytes() != bytes {
        return Err(U2fProblem::Signature.into());
    }
    Ok(signature)
}

/// A registration whose signature verified with its attestation certificate's key. Only
/// [`verify_registration`] makes one: what enrollment stores comes from here.
///
/// ```compile_fail
/// let _ = ctap_core::transport::ctap1::VerifiedRegistration {
///     public_key: [4; 65],
///     key_handle: vec![1],
///     certificate_der: vec![],
/// };
/// ```
#[derive(Debug, Clone)]
pub struct VerifiedRegistration {
    public_key: [u8; PUBLIC_KEY_LEN],
    key_handle: Vec<u8>,
    certificate_der: Vec<u8>,
}

impl VerifiedRegistration {
    /// The credential's public key, an uncompressed SEC1 P-256 point.
    pub fn public_key(&self) -> &[u8; PUBLIC_KEY_LEN] {
        &self.public_key
    }

    pub fn key_handle(&self) -> &[u8] {
        &self.key_handle
    }

    /// The attestation certificate that vouched for it, DER.
    pub fn certificate_der(&self) -> &[u8] {
        &self.certificate_der
    }
}

/// Check a registration: the attestation certificate's P-256 key signed
/// `0x00 || app_id_hash || challenge_hash || key handle || public key`.
///
/// This proves the key handle and public key came from the key holding the attestation key,
/// for this appId and this request; it says nothing about who made the certificate (a
/// self-signed batch certificate passes; attestation trust is a policy question).
pub fn verify_registration(
    response: &RegisterResponse,
    app_id_hash: &[u8; 32],
    challenge_hash: &[u8; 32],
) -> Result<VerifiedRegistration, Ctap1Error> {
    let spki = &response.certificate.tbs_certificate.subject_public_key_info;
    let curve = spki
        .algorithm
        .parameters
        .as_ref()
        .and_then(|p| p.decode_as::<ObjectIdentifier>().ok());
    if spki.algorithm.oid != ID_EC_PUBLIC_KEY || curve != Some(SECP256R1) {
        return Err(RegistrationProblem::AttestationKey.into());
    }
    let key = VerifyingKey::from_sec1_bytes(spki.subject_public_key.raw_bytes())
        .map_err(|_| RegistrationProblem::AttestationKey)?;
    let signed = [
        &[0x00][..],
        app_id_hash,
        challenge_hash,
        &response.key_handle,
        &response.public_key,
    ]
    .concat();
    key.verify(&signed, &response.signature)
        .map_err(|_| RegistrationProblem::Signature)?;
    Ok(VerifiedRegistration {
        public_key: response.public_key,
        key_handle: response.key_handle.clone(),
        certificate_der: response.certificate_der.clone(),
    })
}

/// A U2F_AUTHENTICATE answer, well-formed; its signature is the verifier's to check, over
/// [`authentication_signed_bytes`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthenticateResponse {
    pub flags: u8,
    pub counter: u32,
    /// The ECDSA P-256 signature, DER (checked to be one canonical DER signature).
    pub signature: Vec<u8>,
}

impl AuthenticateResponse {
    /// Parse the data of a successful U2F_AUTHENTICATE response (the status word taken off).
    pub fn parse(data: &[u8]) -> Result<Self, Ctap1Error> {
        let (&flags, rest) = data
            .split_first()
            .ok_or(U2fProblem::Truncated { what: "the flags" })?;
        if flags & !FLAG_USER_PRESENT != 0 {
            return Err(U2fProblem::ReservedFlags(flags).into());
        }
        let (counter, signature) = rest.split_first_chunk::<4>().ok_or(U2fProblem::Truncated {
            what: "the end of the counter",
        })?;
        parse_signature(signature)?;
        Ok(AuthenticateResponse {
            flags,
            counter: u32::from_be_bytes(*counter),
            signature: signature.to_vec(),
        })
    }

    /// The key says the user touched it (the flag is signed: trust it only once verified).
    pub fn user_present(&self) -> bool {
        self.flags & FLAG_USER_PRESENT != 0
    }
}

/// What a U2F authentication signature covers: `app_id_hash || flags || counter (big-endian)
/// || challenge_hash`. For the one verifier, which checks it with the enrolled P-256 key.
pub fn authentication_signed_bytes(
    app_id_hash: &[u8; 32],
    flags: u8,
    counter: u32,
    challenge_hash: &[u8; 32],
) -> [u8; AUTHENTICATION_SIGNED_LEN] {
    let mut out = [0u8; AUTHENTICATION_SIGNED_LEN];
    out[..32].copy_from_slice(app_id_hash);
    out[32] = flags;
    out[33..37].copy_from_slice(&counter.to_be_bytes());
    out[37..].copy_from_slice(challenge_hash);
    out
}
