//! COSE public keys (RFC 8152) as authenticators send them, and signature verification with them.

use ciborium::Value;
use p256::ecdsa::signature::Verifier;
use p256::elliptic_curve::sec1::FromEncodedPoint;

use super::cbor::{self, CborMap};
use super::{CoseKeyProblem, CtapError, Incompatibility};

pub const ALG_ES256: i64 = -7;
pub(crate) const ALG_EDDSA: i64 = -8;
/// ECDH-ES+HKDF-256: the algorithm the PIN protocols' key agreement keys carry.
pub(crate) const ALG_ECDH_ES_HKDF_256: i64 = -25;

const KTY_OKP: i64 = 1;
const KTY_EC2: i64 = 2;
const CRV_P256: i64 = 1;
const CRV_ED25519: i64 = 6;

/// Signature algorithms we enroll and verify.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Algorithm {
    Es256,
    EdDsa,
}

impl Algorithm {
    pub(crate) fn cose_id(self) -> i64 {
        match self {
            Algorithm::Es256 => ALG_ES256,
            Algorithm::EdDsa => ALG_EDDSA,
        }
    }
}

/// A credential public key. Only well-formed keys on the expected curve can be built.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CoseKey {
    /// P-256 ECDSA with SHA-256; `alg` is -7 (or -25 for a key agreement key).
    Es256 { x: [u8; 32], y: [u8; 32], alg: i64 },
    /// Ed25519.
    EdDsa { x: [u8; 32] },
}

impl CoseKey {
    pub fn algorithm(&self) -> Option<Algorithm> {
        match self {
            CoseKey::Es256 { alg: ALG_ES256, .. } => Some(Algorithm::Es256),
            CoseKey::Es256 { .. } => None,
            CoseKey::EdDsa { .. } => Some(Algorithm::EdDsa),
        }
    }

    /// Parse a COSE_Key map. Rejects missing members, wrong lengths, unknown curves and EC points
    /// that are not on the curve.
    pub(crate) fn from_value(value: &Value) -> Result<Self, CtapError> {
        let m = CborMap::new(value, "COSE key")?;
        let kty = m.int(1, "kty (1)")?;
        let alg = m.int(3, "alg (3)")?;
        let crv = m.int(-1, "crv (-1)")?;
        let coord = |key: i64, name: &'static str| -> Result<[u8; 32], CtapError> {
            let b = m.bytes(key, name)?;
            b.try_into().map_err(|_| m.wrong_length(name, 32, b.len()))
        };
        match (kty, crv) {
            (k, c) if k == i128::from(KTY_EC2) && c == i128::from(CRV_P256) => {
                let alg = i64::try_from(alg).unwrap_or(0);
                if alg != ALG_ES256 && alg != ALG_ECDH_ES_HKDF_256 {
                    return Err(CoseKeyProblem::P256Algorithm(alg).into());
                }
                let key = CoseKey::Es256 {
                    x: coord(-2, "x (-2)")?,
                    y: coord(-3, "y (-3)")?,
                    alg,
                };
                key.p256_public()?;
                Ok(key)
            }
            (k, c) if k == i128::from(KTY_OKP) && c == i128::from(CRV_ED25519) => {
                if alg != i128::from(ALG_EDDSA) {
                    return Err(CoseKeyProblem::Ed25519Algorithm(alg).into());
                }
                let key = CoseKey::EdDsa {
                    x: coord(-2, "x (-2)")?,
                };
                key.ed25519_public()?;
                Ok(key)
            }
            _ => Err(CtapError::DeviceIncompatible(
                Incompatibility::CoseKeyType { kty, crv },
            )),
        }
    }

    /// Parse from canonical CBOR bytes (as stored in a credential record).
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, CtapError> {
        Self::from_value(&cbor::decode_strict(bytes)?)
    }

    pub(crate) fn to_value(&self) -> Value {
        let i = |n: i64| Value::Integer(n.into());
        match self {
            CoseKey::Es256 { x, y, alg } => cbor::int_map(vec![
                (1, Some(i(KTY_EC2))),
                (3, Some(i(*alg))),
                (-1, Some(i(CRV_P256))),
                (-2, Some(Value::Bytes(x.to_vec()))),
                (-3, Some(Value::Bytes(y.to_vec()))),
            ]),
            CoseKey::EdDsa { x } => cbor::int_map(vec![
                (1, Some(i(KTY_OKP))),
                (3, Some(i(ALG_EDDSA))),
                (-1, Some(i(CRV_ED25519))),
                (-2, Some(Value::Bytes(x.to_vec()))),
            ]),
        }
    }

    /// Canonical CBOR encoding, the form we store.
    pub fn to_bytes(&self) -> Vec<u8> {
        cbor::encode(&self.to_value())
    }

    pub(crate) fn p256_public(&self) -> Result<p256::PublicKey, CtapError> {
        match self {
            CoseKey::Es256 { x, y, .. } => {
                let point = p256::EncodedPoint::from_affine_coordinates(x.into(), y.into(), false);
                Option::from(p256::PublicKey::from_encoded_point(&point))
                    .ok_or_else(|| CoseKeyProblem::NotOnCurve.into())
            }
            CoseKey::EdDsa { .. } => Err(CoseKeyProblem::ExpectedP256.into()),
        }
    }

    fn ed25519_public(&self) -> Result<ed25519_dalek::VerifyingKey, CtapError> {
        match self {
            CoseKey::EdDsa { x } => ed25519_dalek::VerifyingKey::from_bytes(x)
                .map_err(|_| CoseKeyProblem::InvalidEd25519.into()),
            CoseKey::Es256 { .. } => Err(CoseKeyProblem::ExpectedEd25519.into()),
        }
    }

    /// The uncompressed SEC1 point (0x04 || x || y) for P-256, or the 32 raw bytes for Ed25519:
    /// the forms OpenSSH's wire format uses.
    #[cfg(feature = "ssh")]
    pub(crate) fn raw_public(&self) -> Vec<u8> {
        match self {
            CoseKey::Es256 { x, y, .. } => [&[0x04u8][..], x, y].concat(),
            CoseKey::EdDsa { x } => x.to_vec(),
        }
    }

    /// Verify `signature` over `message`: DER ECDSA-SHA256 for P-256 (what CTAP2 returns),
    /// plain Ed25519 otherwise. Returns whether it verified; never panics on hostile input.
    pub fn verify(&self, message: &[u8], signature: &[u8]) -> bool {
        match self {
            CoseKey::Es256 { alg: ALG_ES256, .. } => {
                let Ok(pk) = self.p256_public() else {
                    return false;
                };
                let Ok(sig) = p256::ecdsa::Signature::from_der(signature) else {
                    return false;
                };
                p256::ecdsa::VerifyingKey::from(pk)
                    .verify(message, &sig)
                    .is_ok()
            }
            CoseKey::Es256 { .. } => false,
            CoseKey::EdDsa { .. } => {
                let Ok(vk) = self.ed25519_public() else {
                    return false;
                };
                let Ok(sig) = ed25519_dalek::Signature::from_slice(signature) else {
                    return false;
                };
                vk.verify_strict(message, &sig).is_ok()
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use p256::ecdsa::signature::Signer;

    fn es256_pair() -> (p256::ecdsa::SigningKey, CoseKey) {
        let sk = p256::ecdsa::SigningKey::random(&mut rand::rngs::OsRng);
        let point = sk.verifying_key().to_encoded_point(false);
        let key = CoseKey::Es256 {
            x: point.x().unwrap().as_slice().try_into().unwrap(),
            y: point.y().unwrap().as_slice().try_into().unwrap(),
            alg: ALG_ES256,
        };
        (sk, key)
    }

    #[test]
    fn es256_round_trips_and_verifies() {
        let (sk, key) = es256_pair();
        let parsed = CoseKey::from_bytes(&key.to_bytes()).unwrap();
        assert_eq!(parsed, key);
        let sig: p256::ecdsa::Signature = sk.sign(b"message");
        let der = sig.to_der();
        assert!(key.verify(b"message", der.as_bytes()));
        assert!(!key.verify(b"messagE", der.as_bytes()));
        assert!(!key.verify(b"message", &der.as_bytes()[1..]));
    }

    #[test]
    fn eddsa_round_trips_and_verifies() {
        use ed25519_dalek::Signer as _;
        let sk = ed25519_dalek::SigningKey::from_bytes(&rand::random());
        let key = CoseKey::EdDsa {
            x: sk.verifying_key().to_bytes(),
        };
        assert_eq!(CoseKey::from_bytes(&key.to_bytes()).unwrap(), key);
        let sig = sk.sign(b"m");
        assert!(key.verify(b"m", &sig.to_bytes()));
        assert!(!key.verify(b"n", &sig.to_bytes()));
        assert_eq!(key.algorithm(), Some(Algorithm::EdDsa));
    }

    #[test]
    fn truncated_and_off_curve_keys_are_rejected() {
        let (_, key) = es256_pair();
        let bytes = key.to_bytes();
        for cut in 0..bytes.len() {
            assert!(CoseKey::from_bytes(&bytes[..cut]).is_err(), "cut at {cut}");
        }
        let off_curve = CoseKey::Es256 {
            x: [1; 32],
            y: [2; 32],
            alg: ALG_ES256,
        };
        let err = CoseKey::from_bytes(&off_curve.to_bytes()).unwrap_err();
        assert!(err.to_string().contains("not on the curve"), "{err}");
        // Wrong algorithm for the curve.
        let v = cbor::int_map(vec![
            (1, Some(Value::Integer(2.into()))),
            (3, Some(Value::Integer((-8).into()))),
            (-1, Some(Value::Integer(1.into()))),
            (-2, Some(Value::Bytes(vec![0; 32]))),
            (-3, Some(Value::Bytes(vec![0; 32]))),
        ]);
        assert!(CoseKey::from_value(&v).is_err());
        // RSA (kty 3) is incompatible, not misbehaving.
        let rsa = cbor::int_map(vec![
            (1, Some(Value::Integer(3.into()))),
            (3, Some(Value::Integer((-257).into()))),
            (-1, Some(Value::Integer(0.into()))),
        ]);
        assert!(matches!(
            CoseKey::from_value(&rsa),
            Err(CtapError::DeviceIncompatible(
                Incompatibility::CoseKeyType { kty: 3, crv: 0 }
            ))
        ));
    }
}
