//! authenticatorData (WebAuthn section 6.1): parsed for reading, kept raw for verification.

use ciborium::Value;

use super::cbor::{self, CborMap};
use super::cose::CoseKey;
use super::{AuthDataProblem, CtapError};

/// The flags byte of authenticatorData.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Flags(pub u8);

impl Flags {
    pub const UP: u8 = 0x01;
    pub const UV: u8 = 0x04;
    pub const AT: u8 = 0x40;
    pub const ED: u8 = 0x80;

    pub fn user_present(self) -> bool {
        self.0 & Self::UP != 0
    }
    pub fn user_verified(self) -> bool {
        self.0 & Self::UV != 0
    }
    fn attested(self) -> bool {
        self.0 & Self::AT != 0
    }
    fn has_extensions(self) -> bool {
        self.0 & Self::ED != 0
    }
}

/// Attested credential data: present in makeCredential responses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AttestedCredential {
    pub aaguid: [u8; 16],
    pub credential_id: Vec<u8>,
    pub public_key: CoseKey,
}

/// A parsed authenticatorData. `raw` is what the signature covers; the other fields are read
/// from it and nothing else.
#[derive(Debug, Clone, PartialEq)]
pub struct AuthenticatorData {
    pub raw: Vec<u8>,
    pub rp_id_hash: [u8; 32],
    pub flags: Flags,
    pub sign_count: u32,
    pub attested: Option<AttestedCredential>,
    pub extensions: Option<Value>,
}

impl AuthenticatorData {
    /// Parse the authenticatorData of an assertion, which never carries attested credential
    /// data: the AT flag is refused whether or not the data follows (WebAuthn section 6.1; a key
    /// that attaches a credential public key to a login answer is not following the protocol).
    pub(crate) fn parse_assertion(raw: &[u8]) -> Result<Self, CtapError> {
        match raw.get(32) {
            Some(&flags) if Flags(flags).attested() => {
                Err(AuthDataProblem::AttestedInAssertion.into())
            }
            _ => Self::parse(raw),
        }
    }

    /// Parse authenticatorData as makeCredential returns it (or any, for tests). The embedded
    /// COSE key and extensions are decoded as strictly as a whole response; the ED flag must match
    /// an extensions map that runs exactly to the end, and nothing may follow.
    pub fn parse(raw: &[u8]) -> Result<Self, CtapError> {
        let short = || CtapError::from(AuthDataProblem::Truncated);
        let head = raw.get(..37).ok_or_else(short)?;
        let mut rp_id_hash = [0u8; 32];
        rp_id_hash.copy_from_slice(&head[..32]);
        let flags = Flags(head[32]);
        let sign_count = u32::from_be_bytes([head[33], head[34], head[35], head[36]]);
        let mut rest = &raw[37..];

        let attested = if flags.attested() {
            let fixed = rest.get(..18).ok_or_else(short)?;
            let mut aaguid = [0u8; 16];
            aaguid.copy_from_slice(&fixed[..16]);
            let id_len = usize::from(u16::from_be_bytes([fixed[16], fixed[17]]));
            if id_len > 1023 {
                return Err(AuthDataProblem::CredentialIdTooLong { len: id_len }.into());
            }
            let credential_id = rest.get(18..18 + id_len).ok_or_else(short)?.to_vec();
            rest = &rest[18 + id_len..];
            let (key_value, used) = cbor::decode_strict_prefix(rest)?;
            let public_key = CoseKey::from_value(&key_value)?;
            rest = &rest[used..];
            Some(AttestedCredential {
                aaguid,
                credential_id,
                public_key,
            })
        } else {
            None
        };

        let extensions = if flags.has_extensions() {
            let (ext, used) = cbor::decode_strict_prefix(rest)?;
            CborMap::new(&ext, "authenticatorData extensions")?;
            rest = &rest[used..];
            Some(ext)
        } else {
            None
        };
        if !rest.is_empty() {
            return Err(AuthDataProblem::TrailingBytes.into());
        }
        Ok(AuthenticatorData {
            raw: raw.to_vec(),
            rp_id_hash,
            flags,
            sign_count,
            attested,
            extensions,
        })
    }

    /// An extension output by name (e.g. "hmac-secret").
    pub fn extension(&self, name: &str) -> Option<&Value> {
        let ext = self.extensions.as_ref()?;
        CborMap::new(ext, "extensions").ok()?.get_text(name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::transport::ctap2::cose::ALG_EDDSA;
    use proptest::prelude::*;

    fn sample(with_ext: bool) -> Vec<u8> {
        let mut raw = vec![0xAB; 32];
        raw.push(Flags::UP | Flags::UV | Flags::AT | if with_ext { Flags::ED } else { 0 });
        raw.extend_from_slice(&7u32.to_be_bytes());
        raw.extend_from_slice(&[0x11; 16]);
        raw.extend_from_slice(&3u16.to_be_bytes());
        raw.extend_from_slice(&[1, 2, 3]);
        let sk = ed25519_dalek::SigningKey::from_bytes(&[9; 32]);
        raw.extend(
            CoseKey::EdDsa {
                x: sk.verifying_key().to_bytes(),
            }
            .to_bytes(),
        );
        if with_ext {
            raw.extend(cbor::encode(&cbor::text_map(vec![(
                "hmac-secret",
                Value::Bool(true),
            )])));
        }
        raw
    }

    #[test]
    fn parses_attested_credential_and_extensions() {
        let ad = AuthenticatorData::parse(&sample(true)).unwrap();
        assert_eq!(ad.sign_count, 7);
        assert!(ad.flags.user_present() && ad.flags.user_verified());
        let att = ad.attested.as_ref().unwrap();
        assert_eq!(att.credential_id, vec![1, 2, 3]);
        assert_eq!(
            att.public_key.algorithm().map(|a| a.cose_id()),
            Some(ALG_EDDSA)
        );
        assert_eq!(ad.extension("hmac-secret"), Some(&Value::Bool(true)));
    }

    #[test]
    fn every_truncation_is_an_error() {
        for with_ext in [false, true] {
            let raw = sample(with_ext);
            for cut in 0..raw.len() {
                assert!(AuthenticatorData::parse(&raw[..cut]).is_err(), "cut {cut}");
            }
            let mut extra = raw.clone();
            extra.push(0);
            assert!(AuthenticatorData::parse(&extra).is_err());
        }
    }

    proptest! {
        #[test]
        fn parser_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
            let _ = AuthenticatorData::parse(&bytes);
        }
    }
}
