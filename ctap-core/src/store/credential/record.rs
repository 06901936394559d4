//! Enrollment records: `/etc/ctap/users/<user>.toml`, one `[[credential]]` table per key.

use serde::{Deserialize, Serialize};

use super::b64;
use crate::transport::ctap2::cose::{Algorithm, CoseKey};

/// Whether login must verify the user (PIN or fingerprint). Stored resolved: `preferred` is
/// decided at enrollment, because the key derives a different hmac-secret with and without UV.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum UvRequirement {
    Required,
    Discouraged,
}

/// One enrolled credential.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CredentialRecord {
    /// A label the user recognises ("yubikey-blue").
    pub name: String,
    #[serde(with = "b64::serde_bytes")]
    pub credential_id: Vec<u8>,
    pub rp_id: String,
    /// The COSE public key, canonical CBOR.
    #[serde(with = "b64::serde_bytes")]
    pub public_key: Vec<u8>,
    pub algorithm: AlgorithmName,
    #[serde(default)]
    pub aaguid: String,
    pub user_verification: UvRequirement,
    pub hmac_secret: bool,
    #[serde(default)]
    pub created: String,
    /// SSH only: the key may sign without a touch (OpenSSH's no-touch-required).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub no_touch_required: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AlgorithmName {
    Es256,
    Eddsa,
}

impl From<Algorithm> for AlgorithmName {
    fn from(a: Algorithm) -> Self {
        match a {
            Algorithm::Es256 => AlgorithmName::Es256,
            Algorithm::EdDsa => AlgorithmName::Eddsa,
        }
    }
}

impl From<AlgorithmName> for Algorithm {
    fn from(a: AlgorithmName) -> Self {
        match a {
            AlgorithmName::Es256 => Algorithm::Es256,
            AlgorithmName::Eddsa => Algorithm::EdDsa,
        }
    }
}

impl CredentialRecord {
    /// The stored public key, checked to match the stored algorithm.
    pub fn cose_key(&self) -> Result<CoseKey, String> {
        let key = CoseKey::from_bytes(&self.public_key)
            .map_err(|e| format!("credential {:?}: public_key: {e}", self.name))?;
        if key.algorithm() != Some(self.algorithm.into()) {
            return Err(format!(
                "credential {:?}: public_key does not match algorithm",
                self.name
            ));
        }
        Ok(key)
    }

    pub fn id_b64(&self) -> String {
        b64::encode(&self.credential_id)
    }
}

/// The whole records file.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CredentialFile {
    /// The uid of the account the file was written for (`ctap-enroll` writes it on every write
    /// of root's records). Login refuses a file whose uid is not the account's: the name was
    /// reused for another account. Files written before releases that store it have none and
    /// are identified by their name alone until their next write.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uid: Option<u32>,
    #[serde(default, rename = "credential")]
    pub credentials: Vec<CredentialRecord>,
}

impl CredentialFile {
    /// Check what serde cannot: keys parse, ids and names are unique and non-empty.
    pub fn validate(&self) -> Result<(), String> {
        for (i, c) in self.credentials.iter().enumerate() {
            if c.name.trim().is_empty() {
                return Err(format!("credential #{}: name is empty", i + 1));
            }
            if c.credential_id.is_empty() {
                return Err(format!("credential {:?}: credential_id is empty", c.name));
            }
            if c.rp_id.is_empty() {
                return Err(format!("credential {:?}: rp_id is empty", c.name));
            }
            c.cose_key()?;
            if self.credentials[..i]
                .iter()
                .any(|o| o.credential_id == c.credential_id)
            {
                return Err(format!(
                    "credential {:?}: credential_id appears twice",
                    c.name
                ));
            }
            if self.credentials[..i].iter().any(|o| o.name == c.name) {
                return Err(format!("credential {:?}: name appears twice", c.name));
            }
        }
        Ok(())
    }

    pub fn find(&self, name_or_id: &str) -> Option<usize> {
        self.credentials
            .iter()
            .position(|c| c.name == name_or_id || c.id_b64() == name_or_id)
    }
}
