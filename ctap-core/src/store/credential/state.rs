//! Login state: `/var/lib/ctap/<user>.toml`, root-owned 0600, one `[[credential]]` per key.

use serde::{Deserialize, Serialize};

use super::b64;

/// Bumped when the layout changes; an unknown version is refused, never guessed at.
pub(crate) const STATE_VERSION: u32 = 1;

/// What we remember about one credential between logins.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CredentialState {
    #[serde(with = "b64::serde_bytes")]
    pub credential_id: Vec<u8>,
    pub sign_count: u32,
    /// The hmac-secret salt sent at every login.
    #[serde(default, skip_serializing_if = "Option::is_none", with = "opt32")]
    pub hmac_salt: Option<[u8; 32]>,
    /// SHA-256 of the hmac-secret output at enrollment.
    #[serde(default, skip_serializing_if = "Option::is_none", with = "opt32")]
    pub hmac_check: Option<[u8; 32]>,
    /// Whether `hmac_check` was computed with user verification (the key's WithUV secret).
    #[serde(default)]
    pub hmac_uv: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_used: Option<String>,
    #[serde(default)]
    pub suspended: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub suspended_reason: Option<String>,
}

impl CredentialState {
    pub fn new(credential_id: Vec<u8>, sign_count: u32) -> Self {
        CredentialState {
            credential_id,
            sign_count,
            hmac_salt: None,
            hmac_check: None,
            hmac_uv: false,
            last_used: None,
            suspended: false,
            suspended_reason: None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StateFile {
    pub version: u32,
    #[serde(default, rename = "credential")]
    pub credentials: Vec<CredentialState>,
}

impl Default for StateFile {
    fn default() -> Self {
        StateFile {
            version: STATE_VERSION,
            credentials: Vec::new(),
        }
    }
}

impl StateFile {
    pub fn get(&self, id: &[u8]) -> Option<&CredentialState> {
        self.credentials.iter().find(|c| c.credential_id == id)
    }

    pub fn get_mut(&mut self, id: &[u8]) -> Option<&mut CredentialState> {
        self.credentials.iter_mut().find(|c| c.credential_id == id)
    }

    /// Insert or replace the state of one credential.
    pub fn put(&mut self, s: CredentialState) {
        match self.get_mut(&s.credential_id) {
            Some(slot) => *slot = s,
            None => self.credentials.push(s),
        }
    }

    pub fn remove(&mut self, id: &[u8]) {
        self.credentials.retain(|c| c.credential_id != id);
    }
}

mod opt32 {
    use serde::{Deserialize, Deserializer, Serializer};

    pub(crate) fn serialize<S: Serializer>(v: &Option<[u8; 32]>, s: S) -> Result<S::Ok, S::Error> {
        match v {
            Some(b) => s.serialize_str(&super::b64::encode(b)),
            None => s.serialize_none(),
        }
    }

    pub(crate) fn deserialize<'de, D: Deserializer<'de>>(
        d: D,
    ) -> Result<Option<[u8; 32]>, D::Error> {
        let s = String::deserialize(d)?;
        super::b64::decode(&s)
            .and_then(|v| <[u8; 32]>::try_from(v).ok())
            .map(Some)
            .ok_or_else(|| serde::de::Error::custom("not 32 bytes of base64url"))
    }
}
