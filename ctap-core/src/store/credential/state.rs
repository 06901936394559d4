//! Login state: `/var/lib/ctap/<user>.toml`, root-owned 0600, one `[[credential]]` per key.

use std::fmt;
use std::time::SystemTime;

use serde::{Deserialize, Serialize};

use super::b64;

/// Bumped when the layout changes; an unknown version is refused, never guessed at.
pub(crate) const STATE_VERSION: u32 = 1;

/// The hmac-secret check of a credential: the salt sent at every login, the SHA-256 of the
/// output the key gave at enrollment, and which of the key's two secrets (with or without user
/// verification) that output came from. The three exist together or not at all.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HmacCheck {
    pub salt: [u8; 32],
    pub check: [u8; 32],
    /// The output came from the key's WithUV secret: login must verify the user.
    pub uv: bool,
}

/// A credential login refuses until an admin runs `ctap-enroll unsuspend`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Suspension {
    /// Why (login writes "counter regression from N to M"); `None` when whoever suspended it
    /// (an admin editing the file) gave none.
    pub reason: Option<String>,
    /// When, if recorded.
    pub at: Option<SystemTime>,
}

impl Suspension {
    pub fn new(reason: String, at: SystemTime) -> Self {
        Suspension {
            reason: Some(reason),
            at: Some(at),
        }
    }

    /// The file's `suspended_reason`: the reason, then ` at <RFC 3339 time>`.
    pub fn to_text(&self) -> Option<String> {
        let at = self
            .at
            .map(|t| humantime::format_rfc3339_seconds(t).to_string());
        match (&self.reason, at) {
            (Some(r), Some(at)) => Some(format!("{r} at {at}")),
            (Some(r), None) => Some(r.clone()),
            (None, Some(at)) => Some(format!("at {at}")),
            (None, None) => None,
        }
    }

    /// Read `suspended_reason` back. The time is split off only when it reads back exactly as it
    /// would be written, so every text round-trips unchanged.
    fn from_text(text: Option<String>) -> Self {
        let Some(text) = text else {
            return Suspension {
                reason: None,
                at: None,
            };
        };
        let time = |tail: &str| {
            let t = humantime::parse_rfc3339(tail).ok()?;
            (humantime::format_rfc3339_seconds(t).to_string() == tail).then_some(t)
        };
        if let Some(at) = text.strip_prefix("at ").and_then(time) {
            return Suspension {
                reason: None,
                at: Some(at),
            };
        }
        match text
            .rsplit_once(" at ")
            .and_then(|(h, t)| Some((h, time(t)?)))
        {
            Some((head, at)) => Suspension {
                reason: Some(head.to_string()),
                at: Some(at),
            },
            None => Suspension {
                reason: Some(text),
                at: None,
            },
        }
    }
}

impl fmt::Display for Suspension {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.to_text() {
            Some(t) => f.write_str(&t),
            None => f.write_str("no reason recorded"),
        }
    }
}

/// What we remember about one credential between logins.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "StateRow", into = "StateRow")]
pub struct CredentialState {
    pub credential_id: Vec<u8>,
    pub sign_count: u32,
    pub hmac: Option<HmacCheck>,
    pub last_used: Option<String>,
    pub suspension: Option<Suspension>,
}

impl CredentialState {
    pub fn new(credential_id: Vec<u8>, sign_count: u32) -> Self {
        CredentialState {
            credential_id,
            sign_count,
            hmac: None,
            last_used: None,
            suspension: None,
        }
    }
}

/// A state `[[credential]]` table as the file spells it.
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct StateRow {
    #[serde(with = "b64::serde_bytes")]
    credential_id: Vec<u8>,
    sign_count: u32,
    /// The hmac-secret salt sent at every login.
    #[serde(default, skip_serializing_if = "Option::is_none", with = "opt32")]
    hmac_salt: Option<[u8; 32]>,
    /// SHA-256 of the hmac-secret output at enrollment.
    #[serde(default, skip_serializing_if = "Option::is_none", with = "opt32")]
    hmac_check: Option<[u8; 32]>,
    /// Whether `hmac_check` was computed with user verification (the key's WithUV secret).
    #[serde(default)]
    hmac_uv: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    last_used: Option<String>,
    #[serde(default)]
    suspended: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    suspended_reason: Option<String>,
}

/// Why a state `[[credential]]` table is inconsistent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StateRowError {
    /// One of `hmac_salt` and `hmac_check` without the other.
    HmacHalf { has_salt: bool },
    /// `hmac_uv = true` without an hmac-secret check.
    HmacUvAlone,
    /// `suspended_reason` on a credential that is not suspended.
    ReasonWithoutSuspension,
}

impl fmt::Display for StateRowError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StateRowError::HmacHalf { has_salt: true } => f.write_str(
                "hmac_salt without hmac_check: the key's hmac-secret cannot be checked; enroll the key again",
            ),
            StateRowError::HmacHalf { has_salt: false } => f.write_str(
                "hmac_check without hmac_salt: the key's hmac-secret cannot be checked; enroll the key again",
            ),
            StateRowError::HmacUvAlone => f.write_str(
                "hmac_uv without hmac_check and hmac_salt: enroll the key again",
            ),
            StateRowError::ReasonWithoutSuspension => f.write_str(
                "suspended_reason on a credential that is not suspended: remove it, or set suspended = true",
            ),
        }
    }
}

impl std::error::Error for StateRowError {}

impl TryFrom<StateRow> for CredentialState {
    type Error = StateRowError;
    fn try_from(r: StateRow) -> Result<Self, StateRowError> {
        let hmac = match (r.hmac_salt, r.hmac_check, r.hmac_uv) {
            (Some(salt), Some(check), uv) => Some(HmacCheck { salt, check, uv }),
            (None, None, false) => None,
            (None, None, true) => return Err(StateRowError::HmacUvAlone),
            (salt, _, _) => {
                return Err(StateRowError::HmacHalf {
                    has_salt: salt.is_some(),
                })
            }
        };
        let suspension = match (r.suspended, r.suspended_reason) {
            (true, reason) => Some(Suspension::from_text(reason)),
            (false, None) => None,
            (false, Some(_)) => return Err(StateRowError::ReasonWithoutSuspension),
        };
        Ok(CredentialState {
            credential_id: r.credential_id,
            sign_count: r.sign_count,
            hmac,
            last_used: r.last_used,
            suspension,
        })
    }
}

impl From<CredentialState> for StateRow {
    fn from(s: CredentialState) -> Self {
        StateRow {
            credential_id: s.credential_id,
            sign_count: s.sign_count,
            hmac_salt: s.hmac.as_ref().map(|h| h.salt),
            hmac_check: s.hmac.as_ref().map(|h| h.check),
            hmac_uv: s.hmac.as_ref().is_some_and(|h| h.uv),
            last_used: s.last_used,
            suspended: s.suspension.is_some(),
            suspended_reason: s.suspension.and_then(|x| x.to_text()),
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

#[cfg(test)]
mod tests {
    use super::*;

    const FULL: &str = "version = 1\n\n[[credential]]\ncredential_id = \"AAAA\"\nsign_count = 7\nhmac_salt = \"AQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQE\"\nhmac_check = \"AgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgI\"\nhmac_uv = true\nlast_used = \"2026-01-01T00:00:00Z\"\nsuspended = true\nsuspended_reason = \"counter regression from 7 to 3 at 2026-01-02T03:04:05Z\"\n";

    #[test]
    fn a_state_file_round_trips_byte_for_byte() {
        let f: StateFile = toml::from_str(FULL).unwrap();
        let c = &f.credentials[0];
        assert_eq!(
            c.hmac,
            Some(HmacCheck {
                salt: [1; 32],
                check: [2; 32],
                uv: true
            })
        );
        let s = c.suspension.as_ref().unwrap();
        assert_eq!(s.reason.as_deref(), Some("counter regression from 7 to 3"));
        assert_eq!(s.at, humantime::parse_rfc3339("2026-01-02T03:04:05Z").ok());
        assert_eq!(toml::to_string(&f).unwrap(), FULL);
        for reason in [
            "",
            "stolen at the airport",
            "by hand at 2026-13-01T00:00:00Z",
            "at 2026-01-02T03:04:05Z",
        ] {
            let text = FULL.replace(
                "counter regression from 7 to 3 at 2026-01-02T03:04:05Z",
                reason,
            );
            let f: StateFile = toml::from_str(&text).unwrap();
            assert_eq!(toml::to_string(&f).unwrap(), text, "{reason:?}");
        }
        let bare = "version = 1\n\n[[credential]]\ncredential_id = \"AAAA\"\nsign_count = 0\nhmac_uv = false\nsuspended = false\n";
        let f: StateFile = toml::from_str(bare).unwrap();
        assert_eq!(f.credentials[0], CredentialState::new(vec![0; 3], 0));
        assert_eq!(toml::to_string(&f).unwrap(), bare);
    }

    #[test]
    fn half_an_hmac_check_or_a_stray_reason_is_a_load_error() {
        for (cut, want) in [
            (
                "hmac_salt = \"AQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQE\"\n",
                "hmac_check without hmac_salt",
            ),
            (
                "hmac_check = \"AgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgI\"\n",
                "hmac_salt without hmac_check",
            ),
            ("suspended = true\n", "not suspended"),
        ] {
            let err = toml::from_str::<StateFile>(&FULL.replace(cut, "")).unwrap_err();
            assert!(err.message().contains(want), "{}", err.message());
            assert!(err.span().is_some());
        }
        let both = FULL
            .replace(
                "hmac_salt = \"AQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQE\"\n",
                "",
            )
            .replace(
                "hmac_check = \"AgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgI\"\n",
                "",
            );
        let err = toml::from_str::<StateFile>(&both).unwrap_err();
        assert!(
            err.message().contains("hmac_uv without"),
            "{}",
            err.message()
        );
    }
}
