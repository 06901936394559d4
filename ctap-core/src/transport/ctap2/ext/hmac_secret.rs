//! The hmac-secret extension (CTAP 2.1 section 12.5).
//!
//! A request object holds the shared secret of its key agreement and the salts; only it can
//! decrypt the output, so the output can never be read with the wrong secret or confused with
//! another request's.

use ciborium::Value;
use zeroize::Zeroizing;

use crate::transport::ctap2::authdata::AuthenticatorData;
use crate::transport::ctap2::cbor;
use crate::transport::ctap2::pin::KeyAgreement;
use crate::transport::ctap2::{CtapError, HmacSecretProblem};

pub const NAME: &str = "hmac-secret";

/// One or two 32-byte salts.
pub struct HmacSalts {
    pub salt1: [u8; 32],
    pub salt2: Option<[u8; 32]>,
}

/// The decrypted output: HMAC-SHA-256(CredRandom, salt) for each salt. Wiped on drop, no Debug.
pub struct HmacSecretOutput {
    pub output1: Zeroizing<[u8; 32]>,
    pub output2: Option<Zeroizing<[u8; 32]>>,
}

/// An hmac-secret request in flight.
pub(crate) struct HmacSecretRequest {
    agreement: KeyAgreement,
    two_salts: bool,
    salt_enc: Vec<u8>,
}

impl HmacSecretRequest {
    pub fn new(agreement: KeyAgreement, salts: &HmacSalts) -> Result<Self, CtapError> {
        let mut plain = Zeroizing::new(salts.salt1.to_vec());
        if let Some(s2) = &salts.salt2 {
            plain.extend_from_slice(s2);
        }
        let salt_enc = agreement.shared.encrypt(&plain)?;
        Ok(HmacSecretRequest {
            agreement,
            two_salts: salts.salt2.is_some(),
            salt_enc,
        })
    }

    /// The getAssertion extension input: {1: keyAgreement, 2: saltEnc, 3: saltAuth, 4: protocol}.
    pub(crate) fn extension_input(&self) -> Value {
        let protocol = self.agreement.shared.protocol().version();
        cbor::int_map(vec![
            (1, Some(self.agreement.platform_key.to_value())),
            (2, Some(Value::Bytes(self.salt_enc.clone()))),
            (
                3,
                Some(Value::Bytes(
                    self.agreement.shared.authenticate(&self.salt_enc),
                )),
            ),
            // Protocol one is the default and some CTAP 2.0 keys reject the member.
            (4, (protocol != 1).then(|| Value::Integer(protocol.into()))),
        ])
    }

    /// Decrypt the output from a getAssertion's authenticatorData.
    pub(crate) fn decrypt_output(
        &self,
        auth_data: &AuthenticatorData,
    ) -> Result<HmacSecretOutput, CtapError> {
        let enc = match auth_data.extension(NAME) {
            Some(Value::Bytes(b)) => b,
            Some(_) => return Err(HmacSecretProblem::NotBytes.into()),
            None => return Err(HmacSecretProblem::Missing.into()),
        };
        let plain = self.agreement.shared.decrypt(enc)?;
        let expected = if self.two_salts { 64 } else { 32 };
        if plain.len() != expected {
            return Err(HmacSecretProblem::Length {
                got: plain.len(),
                expected,
            }
            .into());
        }
        let mut o1 = Zeroizing::new([0u8; 32]);
        o1.copy_from_slice(&plain[..32]);
        let output2 = self.two_salts.then(|| {
            let mut o2 = Zeroizing::new([0u8; 32]);
            o2.copy_from_slice(&plain[32..64]);
            o2
        });
        Ok(HmacSecretOutput {
            output1: o1,
            output2,
        })
    }
}
