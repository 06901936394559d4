//! Enrollment records: `/etc/ctap/users/<user>.toml`, one `[[credential]]` table per key.
//!
//! [`CredentialRecord`] is the working type: its RP ID is already sorted into PAM or SSH and its
//! public key is parsed. The file format is the private [`RecordRow`]; serde converts at the
//! edge (`try_from`/`into`, ARCHITECTURE.md §3), so a record that cannot be used is an error
//! when its file is read, never at login.

use std::fmt;

use serde::{Deserialize, Serialize};

use super::b64;
use super::Inconsistency;
use crate::transport::ctap2::cose::{Algorithm, CoseKey};

/// Whether login must verify the user (PIN or fingerprint). Stored resolved: `preferred` is
/// decided at enrollment, because the key derives a different hmac-secret with and without UV.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum UvRequirement {
    Required,
    Discouraged,
}

/// The protocol a credential was made with, and so the one it logs in with on a key that
/// speaks only that. Stored as `protocol = "u2f"`; absent means FIDO2, so files written before
/// the key existed read (and are written back) unchanged.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Protocol {
    /// CTAP2 makeCredential (a FIDO2 key).
    #[default]
    Fido2,
    /// CTAP1/U2F register (a U2F-only key, or a pam-u2f line of the old format): a P-256 key,
    /// the key handle as credential id, appId = the RP ID; no hmac-secret, no PIN/UV.
    U2f,
}

impl Protocol {
    pub fn is_fido2(&self) -> bool {
        *self == Protocol::Fido2
    }

    /// The word records and listings use.
    pub fn name(self) -> &'static str {
        match self {
            Protocol::Fido2 => "fido2",
            Protocol::U2f => "u2f",
        }
    }
}

/// The relying party a credential was made for: a PAM login's RP ID, or an OpenSSH application
/// (`ssh:...`). Only the login flow uses the first and only the agent the second.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum RpId {
    /// A PAM login's RP ID (`pam://host`, a domain, ...).
    Pam(String),
    /// An OpenSSH application, `ssh:` included.
    Ssh(String),
}

/// Why a string is not an RP ID.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RpIdError {
    Empty,
    /// A control character at this byte offset.
    BadCharacter {
        at: usize,
    },
}

impl fmt::Display for RpIdError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RpIdError::Empty => f.write_str("rp_id is empty"),
            RpIdError::BadCharacter { at } => {
                write!(f, "rp_id has a control character at byte {at}")
            }
        }
    }
}

impl std::error::Error for RpIdError {}

impl RpId {
    /// The prefix of OpenSSH application strings.
    pub const SSH_PREFIX: &'static str = "ssh:";

    pub fn parse(s: &str) -> Result<RpId, RpIdError> {
        if s.is_empty() {
            return Err(RpIdError::Empty);
        }
        if let Some(at) = s.find(char::is_control) {
            return Err(RpIdError::BadCharacter { at });
        }
        Ok(if s.starts_with(Self::SSH_PREFIX) {
            RpId::Ssh(s.to_string())
        } else {
            RpId::Pam(s.to_string())
        })
    }

    pub fn as_str(&self) -> &str {
        match self {
            RpId::Pam(s) | RpId::Ssh(s) => s,
        }
    }

    pub fn is_ssh(&self) -> bool {
        matches!(self, RpId::Ssh(_))
    }
}

impl fmt::Display for RpId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for RpId {
    type Err = RpIdError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        RpId::parse(s)
    }
}

/// An enrolled credential's public key: parsed once, with the algorithm it signs with, and the
/// bytes it was stored as (written back unchanged).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EnrolledKey {
    key: CoseKey,
    algorithm: Algorithm,
    bytes: Vec<u8>,
}

/// Why a stored public key cannot be used.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyError {
    /// Not a COSE key we can verify with; `parser` is the COSE parser's own words.
    Unparsable { parser: String },
    /// A key agreement key, not a signature key.
    NotASigningKey,
    /// The key's algorithm is not the record's `algorithm`.
    AlgorithmMismatch { stored: Algorithm, key: Algorithm },
}

impl fmt::Display for KeyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            KeyError::Unparsable { parser } => write!(f, "public_key: {parser}"),
            KeyError::NotASigningKey => f.write_str("public_key is not a signature key"),
            KeyError::AlgorithmMismatch { stored, key } => write!(
                f,
                "public_key is a {} key but algorithm says {}",
                algorithm_word(*key),
                algorithm_word(*stored)
            ),
        }
    }
}

impl std::error::Error for KeyError {}

fn algorithm_word(a: Algorithm) -> &'static str {
    match a {
        Algorithm::Es256 => "es256",
        Algorithm::EdDsa => "eddsa",
    }
}

impl EnrolledKey {
    /// A key as a key returned it at enrollment.
    pub fn new(key: CoseKey) -> Result<EnrolledKey, KeyError> {
        let algorithm = key.algorithm().ok_or(KeyError::NotASigningKey)?;
        Ok(EnrolledKey {
            bytes: key.to_bytes(),
            key,
            algorithm,
        })
    }

    /// A stored key, which must be a signature key of `algorithm`.
    pub fn from_stored(bytes: Vec<u8>, algorithm: Algorithm) -> Result<EnrolledKey, KeyError> {
        let key = CoseKey::from_bytes(&bytes).map_err(|e| KeyError::Unparsable {
            parser: e.to_string(),
        })?;
        let found = key.algorithm().ok_or(KeyError::NotASigningKey)?;
        if found != algorithm {
            return Err(KeyError::AlgorithmMismatch {
                stored: algorithm,
                key: found,
            });
        }
        Ok(EnrolledKey {
            key,
            algorithm,
            bytes,
        })
    }

    pub fn cose(&self) -> &CoseKey {
        &self.key
    }

    pub fn algorithm(&self) -> Algorithm {
        self.algorithm
    }

    /// The COSE key as stored (canonical CBOR).
    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes
    }
}

/// One enrolled credential.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "RecordRow", into = "RecordRow")]
pub struct CredentialRecord {
    /// A label the user recognises ("yubikey-blue").
    pub name: String,
    pub credential_id: Vec<u8>,
    pub rp_id: RpId,
    pub public_key: EnrolledKey,
    pub aaguid: String,
    pub user_verification: UvRequirement,
    pub hmac_secret: bool,
    pub created: String,
    /// SSH only: the key may sign without a touch (OpenSSH's no-touch-required).
    pub no_touch_required: bool,
    /// FIDO2 or U2F (a U2F record has no hmac-secret and no UV: refused at load otherwise).
    pub protocol: Protocol,
}

/// A `[[credential]]` table as the file spells it.
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct RecordRow {
    name: String,
    #[serde(with = "b64::serde_bytes")]
    credential_id: Vec<u8>,
    rp_id: String,
    /// The COSE public key, canonical CBOR.
    #[serde(with = "b64::serde_bytes")]
    public_key: Vec<u8>,
    algorithm: AlgorithmName,
    #[serde(default)]
    aaguid: String,
    user_verification: UvRequirement,
    hmac_secret: bool,
    #[serde(default)]
    created: String,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    no_touch_required: bool,
    #[serde(default, skip_serializing_if = "Protocol::is_fido2")]
    protocol: Protocol,
}

/// Why a `[[credential]]` table is not a usable record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RecordError {
    EmptyName,
    EmptyCredentialId {
        name: String,
    },
    RpId {
        name: String,
        error: RpIdError,
    },
    Key {
        name: String,
        error: KeyError,
    },
    /// A `protocol = "u2f"` record claims what U2F cannot give (`claim` names the field).
    U2fClaims {
        name: String,
        claim: &'static str,
    },
}

impl fmt::Display for RecordError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RecordError::EmptyName => f.write_str("a credential's name is empty"),
            RecordError::EmptyCredentialId { name } => {
                write!(f, "credential {name:?}: credential_id is empty")
            }
            RecordError::RpId { name, error } => write!(f, "credential {name:?}: {error}"),
            RecordError::Key { name, error } => write!(
                f,
                "credential {name:?}: {error}; remove the credential and enroll the key again"
            ),
            RecordError::U2fClaims { name, claim } => write!(
                f,
                "credential {name:?}: a protocol = \"u2f\" credential cannot have {claim} (U2F \
                 has no hmac-secret, no user verification and only P-256 keys for a PAM RP ID); \
                 fix the line or enroll the key again"
            ),
        }
    }
}

impl std::error::Error for RecordError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            RecordError::RpId { error, .. } => Some(error),
            RecordError::Key { error, .. } => Some(error),
            RecordError::EmptyName
            | RecordError::EmptyCredentialId { .. }
            | RecordError::U2fClaims { .. } => None,
        }
    }
}

impl TryFrom<RecordRow> for CredentialRecord {
    type Error = RecordError;
    fn try_from(r: RecordRow) -> Result<Self, RecordError> {
        if r.name.trim().is_empty() {
            return Err(RecordError::EmptyName);
        }
        if r.credential_id.is_empty() {
            return Err(RecordError::EmptyCredentialId { name: r.name });
        }
        let rp_id = match RpId::parse(&r.rp_id) {
            Ok(rp) => rp,
            Err(error) => {
                return Err(RecordError::RpId {
                    name: r.name,
                    error,
                })
            }
        };
        let public_key = match EnrolledKey::from_stored(r.public_key, r.algorithm.into()) {
            Ok(k) => k,
            Err(error) => {
                return Err(RecordError::Key {
                    name: r.name,
                    error,
                })
            }
        };
        if r.protocol == Protocol::U2f {
            let claim = if r.hmac_secret {
                Some("hmac_secret = true")
            } else if r.user_verification == UvRequirement::Required {
                Some("user_verification = \"required\"")
            } else if public_key.algorithm() != Algorithm::Es256 {
                Some("a key other than es256")
            } else if rp_id.is_ssh() {
                Some("an ssh: rp_id")
            } else {
                None
            };
            if let Some(claim) = claim {
                return Err(RecordError::U2fClaims {
                    name: r.name,
                    claim,
                });
            }
        }
        Ok(CredentialRecord {
            name: r.name,
            credential_id: r.credential_id,
            rp_id,
            public_key,
            aaguid: r.aaguid,
            user_verification: r.user_verification,
            hmac_secret: r.hmac_secret,
            created: r.created,
            no_touch_required: r.no_touch_required,
            protocol: r.protocol,
        })
    }
}

impl From<CredentialRecord> for RecordRow {
    fn from(r: CredentialRecord) -> Self {
        RecordRow {
            name: r.name,
            credential_id: r.credential_id,
            rp_id: r.rp_id.as_str().to_string(),
            algorithm: r.public_key.algorithm().into(),
            public_key: r.public_key.bytes,
            aaguid: r.aaguid,
            user_verification: r.user_verification,
            hmac_secret: r.hmac_secret,
            created: r.created,
            no_touch_required: r.no_touch_required,
            protocol: r.protocol,
        }
    }
}

/// The `algorithm` key's spelling.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
enum AlgorithmName {
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

/// The name records and listings use for an algorithm (`es256`, `eddsa`).
pub fn algorithm_name(a: Algorithm) -> &'static str {
    algorithm_word(a)
}

impl CredentialRecord {
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
    /// Check what the record type cannot: ids and names are unique.
    pub fn validate(&self) -> Result<(), Inconsistency> {
        for (i, c) in self.credentials.iter().enumerate() {
            if self.credentials[..i]
                .iter()
                .any(|o| o.credential_id == c.credential_id)
            {
                return Err(Inconsistency::DuplicateId {
                    credential: c.name.clone(),
                });
            }
            if self.credentials[..i].iter().any(|o| o.name == c.name) {
                return Err(Inconsistency::DuplicateName {
                    credential: c.name.clone(),
                });
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

#[cfg(test)]
mod tests {
    use super::*;

    fn es256() -> CoseKey {
        let sk = p256::SecretKey::from_slice(&[7; 32]).unwrap();
        let p =
            p256::elliptic_curve::sec1::ToEncodedPoint::to_encoded_point(&sk.public_key(), false);
        CoseKey::Es256 {
            x: p.x().unwrap().as_slice().try_into().unwrap(),
            y: p.y().unwrap().as_slice().try_into().unwrap(),
            alg: crate::transport::ctap2::cose::ALG_ES256,
        }
    }

    fn file_text(rp: &str, key: &[u8], alg: &str) -> String {
        format!(
            "uid = 1000\n\n[[credential]]\nname = \"k\"\ncredential_id = \"AAAA\"\nrp_id = \"{rp}\"\npublic_key = \"{}\"\nalgorithm = \"{alg}\"\naaguid = \"\"\nuser_verification = \"required\"\nhmac_secret = true\ncreated = \"2026-01-01T00:00:00Z\"\n",
            b64::encode(key)
        )
    }

    #[test]
    fn a_records_file_round_trips_byte_for_byte() {
        let text = file_text("pam://host", &es256().to_bytes(), "es256");
        let f: CredentialFile = toml::from_str(&text).unwrap();
        assert_eq!(f.credentials[0].rp_id, RpId::Pam("pam://host".into()));
        assert_eq!(f.credentials[0].public_key.cose(), &es256());
        assert_eq!(toml::to_string(&f).unwrap(), text);
        let ssh = file_text("ssh:", &es256().to_bytes(), "es256");
        let f: CredentialFile = toml::from_str(&ssh).unwrap();
        assert!(f.credentials[0].rp_id.is_ssh());
        assert_eq!(toml::to_string(&f).unwrap(), ssh);
    }

    fn u2f_text(hmac: bool, uv: &str, alg_key: (&str, &[u8]), rp: &str) -> String {
        format!(
            "[[credential]]\nname = \"k\"\ncredential_id = \"AAAA\"\nrp_id = \"{rp}\"\npublic_key = \"{}\"\nalgorithm = \"{}\"\naaguid = \"\"\nuser_verification = \"{uv}\"\nhmac_secret = {hmac}\ncreated = \"\"\nprotocol = \"u2f\"\n",
            b64::encode(alg_key.1),
            alg_key.0
        )
    }

    #[test]
    fn a_u2f_record_round_trips_and_a_fido2_record_has_no_protocol_key() {
        let key = es256().to_bytes();
        let text = u2f_text(false, "discouraged", ("es256", &key), "pam://h");
        let f: CredentialFile = toml::from_str(&text).unwrap();
        assert_eq!(f.credentials[0].protocol, Protocol::U2f);
        assert_eq!(toml::to_string(&f).unwrap(), text);
        let fido2: CredentialFile = toml::from_str(&file_text("pam://h", &key, "es256")).unwrap();
        assert_eq!(fido2.credentials[0].protocol, Protocol::Fido2);
        assert!(!toml::to_string(&fido2).unwrap().contains("protocol"));
    }

    #[test]
    fn a_u2f_record_that_claims_hmac_secret_or_uv_is_a_load_error() {
        let key = es256().to_bytes();
        let ed = CoseKey::EdDsa { x: [9; 32] }.to_bytes();
        for (text, want) in [
            (
                u2f_text(true, "discouraged", ("es256", &key), "pam://h"),
                "hmac_secret = true",
            ),
            (
                u2f_text(false, "required", ("es256", &key), "pam://h"),
                "user_verification",
            ),
            (
                u2f_text(false, "discouraged", ("eddsa", &ed), "pam://h"),
                "other than es256",
            ),
            (
                u2f_text(false, "discouraged", ("es256", &key), "ssh:"),
                "ssh: rp_id",
            ),
        ] {
            let err = toml::from_str::<CredentialFile>(&text).unwrap_err();
            let msg = err.message();
            assert!(
                msg.contains("protocol = \"u2f\"") && msg.contains(want),
                "{msg}"
            );
        }
    }

    #[test]
    fn an_unusable_record_is_a_load_error_that_names_it() {
        for (text, want) in [
            (
                file_text("", &es256().to_bytes(), "es256"),
                "rp_id is empty",
            ),
            (
                file_text("a\\u0007b", &es256().to_bytes(), "es256"),
                "control character",
            ),
            (file_text("pam://h", &[0xa0], "es256"), "public_key:"),
            (
                file_text("pam://h", &es256().to_bytes(), "eddsa"),
                "algorithm says eddsa",
            ),
        ] {
            let err = toml::from_str::<CredentialFile>(&text).unwrap_err();
            let msg = err.message();
            assert!(
                msg.contains("credential \"k\"") && msg.contains(want),
                "{msg}"
            );
            // The position points into the credential's table (line 3 on), so the message
            // says file:line.
            let line = super::super::toml_error_line(&text, &err);
            assert!(line.is_some_and(|l| l >= 3), "{msg}: at line {line:?}");
        }
    }
}
