//! PIN/UV auth protocols one and two (CTAP 2.1 section 6.5): key agreement, encryption,
//! authentication, and the clientPIN subcommands built on them.

use aes::cipher::{block_padding::NoPadding, BlockDecryptMut, BlockEncryptMut, KeyIvInit};
use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};
use zeroize::{Zeroize, Zeroizing};

use super::cose::{CoseKey, ALG_ECDH_ES_HKDF_256};
use super::info::AuthenticatorInfo;
use super::{CtapError, Incompatibility, InputProblem, PinProtocolProblem};

type Aes256CbcEnc = cbc::Encryptor<aes::Aes256>;
type Aes256CbcDec = cbc::Decryptor<aes::Aes256>;

/// A PIN/UV auth protocol. Both are interchangeable behind the same four operations; tests run
/// against both.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PinUvProtocol {
    V1,
    V2,
}

impl PinUvProtocol {
    pub fn version(self) -> u64 {
        match self {
            PinUvProtocol::V1 => 1,
            PinUvProtocol::V2 => 2,
        }
    }

    /// Prefer protocol two, fall back to one; a key that lists neither cannot do PIN or hmac-secret.
    pub(crate) fn negotiate(info: &AuthenticatorInfo) -> Result<Self, CtapError> {
        let listed = &info.pin_uv_auth_protocols;
        if listed.contains(&2) {
            Ok(PinUvProtocol::V2)
        } else if listed.contains(&1) || (listed.is_empty() && info.option("clientPin").is_some()) {
            Ok(PinUvProtocol::V1)
        } else {
            Err(CtapError::DeviceIncompatible(
                Incompatibility::NoPinProtocol,
            ))
        }
    }

    /// Derive the shared secret from the ECDH x-coordinate Z.
    fn kdf(self, z: &[u8]) -> SharedSecret {
        match self {
            PinUvProtocol::V1 => SharedSecret {
                protocol: self,
                bytes: Zeroizing::new(Sha256::digest(z).to_vec()),
            },
            PinUvProtocol::V2 => {
                let hk = hkdf::Hkdf::<Sha256>::new(Some(&[0u8; 32]), z);
                let mut bytes = Zeroizing::new(vec![0u8; 64]);
                // 32-byte outputs are always within HKDF-SHA-256's limit.
                let _ = hk.expand(b"CTAP2 HMAC key", &mut bytes[..32]);
                let _ = hk.expand(b"CTAP2 AES key", &mut bytes[32..]);
                SharedSecret {
                    protocol: self,
                    bytes,
                }
            }
        }
    }

    fn authenticate(self, key: &[u8], message: &[u8]) -> Vec<u8> {
        // HMAC accepts keys of any length.
        let Ok(mut mac) = <Hmac<Sha256> as Mac>::new_from_slice(key) else {
            return Vec::new();
        };
        mac.update(message);
        let tag = mac.finalize().into_bytes();
        match self {
            PinUvProtocol::V1 => tag[..16].to_vec(),
            PinUvProtocol::V2 => tag.to_vec(),
        }
    }
}

/// The secret both sides derive from key agreement. Wiped on drop, never printed.
pub(crate) struct SharedSecret {
    protocol: PinUvProtocol,
    bytes: Zeroizing<Vec<u8>>,
}

impl SharedSecret {
    pub fn protocol(&self) -> PinUvProtocol {
        self.protocol
    }

    fn hmac_key(&self) -> &[u8] {
        &self.bytes[..32]
    }

    fn aes_key(&self) -> &[u8] {
        match self.protocol {
            PinUvProtocol::V1 => &self.bytes[..32],
            PinUvProtocol::V2 => &self.bytes[32..64],
        }
    }

    /// AES-256-CBC without padding: V1 with a zero IV, V2 with a random IV prepended.
    pub(crate) fn encrypt(&self, plaintext: &[u8]) -> Result<Vec<u8>, CtapError> {
        if plaintext.len() % 16 != 0 {
            return Err(CtapError::InvalidInput(InputProblem::NotWholeBlocks {
                len: plaintext.len(),
            }));
        }
        let iv: [u8; 16] = match self.protocol {
            PinUvProtocol::V1 => [0; 16],
            PinUvProtocol::V2 => rand::random(),
        };
        let enc = Aes256CbcEnc::new_from_slices(self.aes_key(), &iv)
            .map_err(|_| CtapError::InvalidInput(InputProblem::AesKeyLength))?;
        let ct = enc.encrypt_padded_vec_mut::<NoPadding>(plaintext);
        Ok(match self.protocol {
            PinUvProtocol::V1 => ct,
            PinUvProtocol::V2 => [&iv[..], &ct].concat(),
        })
    }

    pub fn decrypt(&self, ciphertext: &[u8]) -> Result<Zeroizing<Vec<u8>>, CtapError> {
        let (iv, ct): ([u8; 16], &[u8]) = match self.protocol {
            PinUvProtocol::V1 => ([0; 16], ciphertext),
            PinUvProtocol::V2 => {
                let iv = ciphertext
                    .get(..16)
                    .ok_or(PinProtocolProblem::ShorterThanIv)?;
                let mut a = [0u8; 16];
                a.copy_from_slice(iv);
                (a, &ciphertext[16..])
            }
        };
        if ct.is_empty() || ct.len() % 16 != 0 {
            return Err(PinProtocolProblem::NotWholeBlocks.into());
        }
        let dec = Aes256CbcDec::new_from_slices(self.aes_key(), &iv)
            .map_err(|_| PinProtocolProblem::AesKeyLength)?;
        dec.decrypt_padded_vec_mut::<NoPadding>(ct)
            .map(Zeroizing::new)
            .map_err(|_| PinProtocolProblem::Decrypt.into())
    }

    pub fn authenticate(&self, message: &[u8]) -> Vec<u8> {
        self.protocol.authenticate(self.hmac_key(), message)
    }
}

/// Our half of a key agreement: the key to send and the secret it yields.
pub(crate) struct KeyAgreement {
    pub platform_key: CoseKey,
    pub shared: SharedSecret,
}

impl KeyAgreement {
    /// ECDH with the authenticator's key agreement key, using a fresh ephemeral key.
    pub fn new(protocol: PinUvProtocol, peer: &CoseKey) -> Result<Self, CtapError> {
        let peer_pk = match peer {
            CoseKey::Es256 { .. } => peer.p256_public()?,
            CoseKey::EdDsa { .. } => return Err(PinProtocolProblem::KeyAgreementNotP256.into()),
        };
        let eph = p256::ecdh::EphemeralSecret::random(&mut rand::rngs::OsRng);
        let point = p256::EncodedPoint::from(eph.public_key());
        let z = eph.diffie_hellman(&peer_pk);
        let shared = protocol.kdf(z.raw_secret_bytes());
        let (Some(x), Some(y)) = (point.x(), point.y()) else {
            return Err(CtapError::InvalidInput(
                InputProblem::EphemeralKeyNoCoordinates,
            ));
        };
        let mut xa = [0u8; 32];
        let mut ya = [0u8; 32];
        xa.copy_from_slice(x);
        ya.copy_from_slice(y);
        Ok(KeyAgreement {
            platform_key: CoseKey::Es256 {
                x: xa,
                y: ya,
                alg: ALG_ECDH_ES_HKDF_256,
            },
            shared,
        })
    }
}

/// A pinUvAuthToken from the key. Wiped on drop, never printed.
pub struct PinUvAuthToken {
    protocol: PinUvProtocol,
    token: Zeroizing<Vec<u8>>,
}

impl PinUvAuthToken {
    pub(crate) fn new(
        protocol: PinUvProtocol,
        token: Zeroizing<Vec<u8>>,
    ) -> Result<Self, CtapError> {
        let ok = match protocol {
            PinUvProtocol::V1 => token.len() == 16 || token.len() == 32,
            PinUvProtocol::V2 => token.len() == 32,
        };
        if !ok {
            return Err(PinProtocolProblem::TokenLength(token.len()).into());
        }
        Ok(PinUvAuthToken { protocol, token })
    }

    pub fn protocol(&self) -> PinUvProtocol {
        self.protocol
    }

    /// pinUvAuthParam over `message` (the clientDataHash for makeCredential/getAssertion).
    pub fn authenticate(&self, message: &[u8]) -> Vec<u8> {
        self.protocol.authenticate(&self.token, message)
    }
}

/// A PIN as typed. Wiped on drop, never printed.
pub struct Pin(Zeroizing<String>);

impl Pin {
    /// CTAP requires at least 4 Unicode code points and at most 63 bytes of UTF-8.
    pub fn new(mut pin: String) -> Result<Self, CtapError> {
        let result = if pin.chars().count() < 4 {
            Err(InputProblem::PinTooShort)
        } else if pin.len() > 63 {
            Err(InputProblem::PinTooLong)
        } else if pin.contains('\0') {
            Err(InputProblem::PinHasNul)
        } else {
            Ok(())
        };
        match result {
            Ok(()) => Ok(Pin(Zeroizing::new(pin))),
            Err(problem) => {
                pin.zeroize();
                Err(CtapError::InvalidInput(problem))
            }
        }
    }

    pub(crate) fn char_count(&self) -> usize {
        self.0.chars().count()
    }

    /// LEFT(SHA-256(pin), 16): what pinHashEnc encrypts.
    pub(crate) fn hash16(&self) -> Zeroizing<Vec<u8>> {
        Zeroizing::new(Sha256::digest(self.0.as_bytes())[..16].to_vec())
    }

    /// The PIN padded with zeros to 64 bytes: what newPinEnc encrypts.
    pub(crate) fn padded(&self) -> Zeroizing<Vec<u8>> {
        let mut p = Zeroizing::new(vec![0u8; 64]);
        p[..self.0.len()].copy_from_slice(self.0.as_bytes());
        p
    }
}

/// Permissions a pinUvAuthToken can carry (CTAP 2.1 section 6.5.5.7).
pub mod permission {
    pub const MAKE_CREDENTIAL: u8 = 0x01;
    pub const GET_ASSERTION: u8 = 0x02;
    pub const CREDENTIAL_MANAGEMENT: u8 = 0x04;
}

#[cfg(test)]
mod tests {
    use super::*;
    use p256::elliptic_curve::sec1::ToEncodedPoint;

    fn agree(protocol: PinUvProtocol) -> (SharedSecret, SharedSecret) {
        // Play both sides: the "authenticator" key and our ephemeral key must derive the same secret.
        let auth_sk = p256::SecretKey::random(&mut rand::rngs::OsRng);
        let p = auth_sk.public_key().to_encoded_point(false);
        let auth_cose = CoseKey::Es256 {
            x: p.x().unwrap().as_slice().try_into().unwrap(),
            y: p.y().unwrap().as_slice().try_into().unwrap(),
            alg: ALG_ECDH_ES_HKDF_256,
        };
        let ka = KeyAgreement::new(protocol, &auth_cose).unwrap();
        let ours_pk = ka.platform_key.p256_public().unwrap();
        let z = p256::ecdh::diffie_hellman(auth_sk.to_nonzero_scalar(), ours_pk.as_affine());
        (ka.shared, protocol.kdf(z.raw_secret_bytes()))
    }

    #[test]
    fn both_protocols_agree_encrypt_and_authenticate() {
        for protocol in [PinUvProtocol::V1, PinUvProtocol::V2] {
            let (ours, theirs) = agree(protocol);
            let ct = ours.encrypt(&[7u8; 64]).unwrap();
            assert_eq!(
                ct.len(),
                if protocol == PinUvProtocol::V2 {
                    80
                } else {
                    64
                }
            );
            assert_eq!(&theirs.decrypt(&ct).unwrap()[..], &[7u8; 64][..]);
            assert_eq!(ours.authenticate(b"x"), theirs.authenticate(b"x"));
            assert_eq!(
                ours.authenticate(b"x").len(),
                if protocol == PinUvProtocol::V2 {
                    32
                } else {
                    16
                }
            );
            assert!(ours.encrypt(&[0u8; 15]).is_err());
            assert!(theirs.decrypt(&ct[..ct.len() - 1]).is_err());
        }
    }

    #[test]
    fn v2_uses_a_fresh_iv() {
        let (ours, _) = agree(PinUvProtocol::V2);
        assert_ne!(
            ours.encrypt(&[0u8; 32]).unwrap(),
            ours.encrypt(&[0u8; 32]).unwrap()
        );
    }

    #[test]
    fn pin_rules() {
        assert!(Pin::new("123".into()).is_err());
        assert!(Pin::new("1234".into()).is_ok());
        assert!(Pin::new("ääää".into()).is_ok());
        assert!(Pin::new("x".repeat(64)).is_err());
        assert!(Pin::new("12\u{0}34".into()).is_err());
        let p = Pin::new("1234".into()).unwrap();
        assert_eq!(&p.padded()[..5], b"1234\0");
        assert_eq!(p.hash16().len(), 16);
    }

    #[test]
    fn negotiation_prefers_v2() {
        let mut info = AuthenticatorInfo {
            pin_uv_auth_protocols: vec![1, 2],
            ..Default::default()
        };
        assert_eq!(PinUvProtocol::negotiate(&info).unwrap(), PinUvProtocol::V2);
        info.pin_uv_auth_protocols = vec![1];
        assert_eq!(PinUvProtocol::negotiate(&info).unwrap(), PinUvProtocol::V1);
        info.pin_uv_auth_protocols = vec![3];
        assert!(PinUvProtocol::negotiate(&info).is_err());
    }
}
