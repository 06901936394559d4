//! SSSD/FreeIPA passkey mapping strings: `passkey:<base64 credential id>,<base64 DER
//! SubjectPublicKeyInfo>` (SSSD 2.9+, FreeIPA `ipaPassKey`, AD `altSecurityIdentities`), and
//! the conversions to and from our records' COSE keys.
//!
//! The DER is decoded and encoded by the `spki` crate; the point or the Ed25519 key inside it is
//! checked by p256 / ed25519-dalek exactly as a COSE key is: a value that does not parse names
//! no key and can never grant a login.

use std::fmt;

use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD};
use base64::Engine;
use p256::elliptic_curve::sec1::ToEncodedPoint;
use spki::der::asn1::BitString;
use spki::der::{Any, Decode, Encode};
use spki::{AlgorithmIdentifierOwned, ObjectIdentifier, SubjectPublicKeyInfoOwned};

use crate::store::credential::{CredentialRecord, EnrolledKey, RpId, UvRequirement};
use crate::transport::ctap2::cose::CoseKey;

/// The prefix SSSD writes before every mapping value.
pub const PREFIX: &str = "passkey:";

/// id-ecPublicKey (RFC 5480).
const ID_EC_PUBLIC_KEY: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10045.2.1");
/// secp256r1 / prime256v1.
const PRIME256V1: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10045.3.1.7");
/// id-Ed25519 (RFC 8410).
const ID_ED25519: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.101.112");
/// COSE ES256.
const ALG_ES256: i64 = -7;

/// Why a mapping value names no usable key. Such a value is skipped and logged (`bad_mapping`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MappingError {
    /// Not `passkey:<id>,<key>`.
    Shape,
    /// The credential id is not base64, or empty.
    CredentialId,
    /// The key part is not base64.
    KeyEncoding,
    /// The key is not a DER SubjectPublicKeyInfo (`der` is the decoder's words).
    Spki { der: String },
    /// A SubjectPublicKeyInfo of an algorithm or curve we do not verify with.
    Algorithm(String),
    /// The point is not on P-256, or the Ed25519 key is invalid.
    BadKey,
}

impl fmt::Display for MappingError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            MappingError::Shape => {
                f.write_str("not of the form passkey:<base64 credential id>,<base64 public key>")
            }
            MappingError::CredentialId => {
                f.write_str("the credential id is not base64 or is empty")
            }
            MappingError::KeyEncoding => f.write_str("the public key is not base64"),
            MappingError::Spki { der } => {
                write!(
                    f,
                    "the public key is not a DER SubjectPublicKeyInfo ({der})"
                )
            }
            MappingError::Algorithm(oid) => write!(
                f,
                "the public key's algorithm {oid} is neither P-256 ECDSA nor Ed25519"
            ),
            MappingError::BadKey => {
                f.write_str("the public key is not a valid P-256 or Ed25519 key")
            }
        }
    }
}

impl std::error::Error for MappingError {}

/// One parsed mapping: a credential id and its public key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mapping {
    pub credential_id: Vec<u8>,
    pub key: EnrolledKey,
}

fn b64(s: &str) -> Option<Vec<u8>> {
    let s = s.trim();
    STANDARD
        .decode(s)
        .or_else(|_| STANDARD_NO_PAD.decode(s.trim_end_matches('=')))
        .ok()
}

/// Parse one attribute value. Values of other kinds that share the attribute (AD's
/// `altSecurityIdentities` also holds `X509:` mappings) are `Ok(None)`: not ours, not an error.
pub fn parse(value: &str) -> Result<Option<Mapping>, MappingError> {
    let value = value.trim();
    let Some(rest) = strip_prefix_ignore_case(value, PREFIX) else {
        if value.contains(':') && !value.to_ascii_lowercase().starts_with("passkey") {
            return Ok(None);
        }
        return Err(MappingError::Shape);
    };
    let (id, key) = rest.split_once(',').ok_or(MappingError::Shape)?;
    if key.contains(',') {
        return Err(MappingError::Shape);
    }
    let credential_id = b64(id)
        .filter(|i| !i.is_empty())
        .ok_or(MappingError::CredentialId)?;
    let der = b64(key).ok_or(MappingError::KeyEncoding)?;
    Ok(Some(Mapping {
        credential_id,
        key: key_from_spki(&der)?,
    }))
}

fn strip_prefix_ignore_case<'a>(s: &'a str, prefix: &str) -> Option<&'a str> {
    let head = s.get(..prefix.len())?;
    head.eq_ignore_ascii_case(prefix)
        .then(|| s.get(prefix.len()..))
        .flatten()
}

/// A DER SubjectPublicKeyInfo (P-256 or Ed25519) as the COSE key our verifier uses.
pub fn key_from_spki(der: &[u8]) -> Result<EnrolledKey, MappingError> {
    let info = SubjectPublicKeyInfoOwned::from_der(der)
        .map_err(|e| MappingError::Spki { der: e.to_string() })?;
    let bits = info.subject_public_key.raw_bytes();
    let cose = if info.algorithm.oid == ID_EC_PUBLIC_KEY {
        let curve = info
            .algorithm
            .parameters
            .as_ref()
            .and_then(|p| p.decode_as::<ObjectIdentifier>().ok());
        if curve != Some(PRIME256V1) {
            return Err(MappingError::Algorithm(format!(
                "id-ecPublicKey on {}",
                curve.map_or("an unnamed curve".into(), |c| c.to_string())
            )));
        }
        let public = p256::PublicKey::from_sec1_bytes(bits).map_err(|_| MappingError::BadKey)?;
        let point = public.to_encoded_point(false);
        let (Some(x), Some(y)) = (point.x(), point.y()) else {
            return Err(MappingError::BadKey);
        };
        let (Ok(x), Ok(y)) = (
            <[u8; 32]>::try_from(x.as_slice()),
            <[u8; 32]>::try_from(y.as_slice()),
        ) else {
            return Err(MappingError::BadKey);
        };
        CoseKey::Es256 {
            x,
            y,
            alg: ALG_ES256,
        }
    } else if info.algorithm.oid == ID_ED25519 {
        if info.algorithm.parameters.is_some() {
            return Err(MappingError::Algorithm("Ed25519 with parameters".into()));
        }
        let x: [u8; 32] = bits.try_into().map_err(|_| MappingError::BadKey)?;
        ed25519_dalek::VerifyingKey::from_bytes(&x).map_err(|_| MappingError::BadKey)?;
        CoseKey::EdDsa { x }
    } else {
        return Err(MappingError::Algorithm(info.algorithm.oid.to_string()));
    };
    EnrolledKey::new(cose).map_err(|_| MappingError::BadKey)
}

/// The DER SubjectPublicKeyInfo of a COSE key (what SSSD stores).
pub fn spki_of(key: &CoseKey) -> Result<Vec<u8>, MappingError> {
    let encode_err = |e: spki::der::Error| MappingError::Spki { der: e.to_string() };
    let (algorithm, bits) = match key {
        CoseKey::Es256 { x, y, .. } => (
            AlgorithmIdentifierOwned {
                oid: ID_EC_PUBLIC_KEY,
                parameters: Some(Any::encode_from(&PRIME256V1).map_err(encode_err)?),
            },
            [&[0x04u8][..], x, y].concat(),
        ),
        CoseKey::EdDsa { x } => (
            AlgorithmIdentifierOwned {
                oid: ID_ED25519,
                parameters: None,
            },
            x.to_vec(),
        ),
    };
    SubjectPublicKeyInfoOwned {
        algorithm,
        subject_public_key: BitString::from_bytes(&bits).map_err(encode_err)?,
    }
    .to_der()
    .map_err(encode_err)
}

/// The SSSD mapping string of a credential: `passkey:<id>,<spki>`, standard base64.
pub fn format(credential_id: &[u8], key: &CoseKey) -> Result<String, MappingError> {
    Ok(format!(
        "{PREFIX}{},{}",
        STANDARD.encode(credential_id),
        STANDARD.encode(spki_of(key)?)
    ))
}

/// pam-u2f's ES256 key (base64 of the raw x‖y, 64 bytes, or the 65-byte SEC1 point) as SPKI.
pub fn spki_from_raw_es256(raw: &[u8]) -> Result<Vec<u8>, MappingError> {
    let point = match raw.len() {
        64 => [&[0x04u8][..], raw].concat(),
        _ => raw.to_vec(),
    };
    let public = p256::PublicKey::from_sec1_bytes(&point).map_err(|_| MappingError::BadKey)?;
    let p = public.to_encoded_point(false);
    let (Some(x), Some(y)) = (p.x(), p.y()) else {
        return Err(MappingError::BadKey);
    };
    let (Ok(x), Ok(y)) = (
        <[u8; 32]>::try_from(x.as_slice()),
        <[u8; 32]>::try_from(y.as_slice()),
    ) else {
        return Err(MappingError::BadKey);
    };
    spki_of(&CoseKey::Es256 {
        x,
        y,
        alg: ALG_ES256,
    })
}

/// A directory credential as the record login works with. Its name is `directory:` and the
/// start of its id (there is no label in the mapping); no AAGUID is known, so a PIN goes to it
/// only when root names the device (login's PIN gate); no hmac-secret check (login records one
/// per host at the first login there).
pub fn to_record(m: Mapping, rp_id: &RpId, uv: UvRequirement) -> CredentialRecord {
    let id = STANDARD_NO_PAD.encode(&m.credential_id);
    let short: String = id.chars().take(12).collect();
    CredentialRecord {
        name: format!("directory:{short}"),
        credential_id: m.credential_id,
        rp_id: rp_id.clone(),
        public_key: m.key,
        aaguid: String::new(),
        user_verification: uv,
        hmac_secret: false,
        created: String::new(),
        no_touch_required: false,
        // SSSD/FreeIPA mappings are WebAuthn (FIDO2) credentials.
        protocol: crate::store::credential::Protocol::Fido2,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p256_key() -> CoseKey {
        let sk = p256::SecretKey::from_slice(&[7u8; 32]).unwrap();
        let p = sk.public_key().to_encoded_point(false);
        CoseKey::Es256 {
            x: p.x().unwrap().as_slice().try_into().unwrap(),
            y: p.y().unwrap().as_slice().try_into().unwrap(),
            alg: ALG_ES256,
        }
    }

    fn ed_key() -> CoseKey {
        let sk = ed25519_dalek::SigningKey::from_bytes(&[9u8; 32]);
        CoseKey::EdDsa {
            x: sk.verifying_key().to_bytes(),
        }
    }

    #[test]
    fn round_trip_both_algorithms() {
        for key in [p256_key(), ed_key()] {
            let s = format(b"cred-id-bytes", &key).unwrap();
            assert!(s.starts_with("passkey:"), "{s}");
            let m = parse(&s).unwrap().unwrap();
            assert_eq!(m.credential_id, b"cred-id-bytes");
            assert_eq!(m.key.cose(), &key);
        }
    }

    #[test]
    fn p256_spki_matches_openssl_layout() {
        // RFC 5480 SPKI of a P-256 key: 91 bytes, starting with this fixed header.
        let der = spki_of(&p256_key()).unwrap();
        assert_eq!(der.len(), 91);
        assert_eq!(
            hex::encode(&der[..27]),
            "3059301306072a8648ce3d020106082a8648ce3d03010703420004"
        );
        let der = spki_of(&ed_key()).unwrap();
        assert_eq!(hex::encode(&der[..12]), "302a300506032b6570032100");
    }

    #[test]
    fn malformed_values_are_errors_and_foreign_ones_are_skipped() {
        assert_eq!(parse("passkey:AAAA").unwrap_err(), MappingError::Shape);
        assert_eq!(
            parse("passkey:,AAAA").unwrap_err(),
            MappingError::CredentialId
        );
        assert_eq!(
            parse("passkey:AAAA,!!!").unwrap_err(),
            MappingError::KeyEncoding
        );
        assert!(matches!(
            parse("passkey:AAAA,AAAA").unwrap_err(),
            MappingError::Spki { .. }
        ));
        // A point that is not on the curve.
        let mut der = spki_of(&p256_key()).unwrap();
        let last = der.len() - 1;
        der[last] ^= 1;
        let s = format!("passkey:AAAA,{}", STANDARD.encode(&der));
        assert_eq!(parse(&s).unwrap_err(), MappingError::BadKey);
        assert_eq!(parse("garbage").unwrap_err(), MappingError::Shape);
        // AD keeps certificate mappings in the same attribute.
        assert_eq!(parse("X509:<I>CN=ca<S>CN=alice").unwrap(), None);
    }

    #[test]
    fn pam_u2f_raw_key_converts() {
        let CoseKey::Es256 { x, y, .. } = p256_key() else {
            unreachable!()
        };
        let raw = [x, y].concat();
        assert_eq!(
            spki_from_raw_es256(&raw).unwrap(),
            spki_of(&p256_key()).unwrap()
        );
        assert_eq!(
            spki_from_raw_es256(&[1u8; 64]).unwrap_err(),
            MappingError::BadKey
        );
    }
}
