//! authenticatorGetInfo, typed.

use std::collections::BTreeMap;

use ciborium::Value;

use super::cbor::CborMap;
use super::CtapError;

/// What a key says about itself (CTAP 2.1 section 6.4).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct AuthenticatorInfo {
    pub versions: Vec<String>,
    pub extensions: Vec<String>,
    pub aaguid: [u8; 16],
    /// Options such as "rk", "up", "uv", "clientPin", "pinUvAuthToken"; absent means unsupported.
    pub options: BTreeMap<String, bool>,
    pub max_msg_size: Option<u64>,
    pub pin_uv_auth_protocols: Vec<u64>,
    pub max_credential_count_in_list: Option<u64>,
    pub max_credential_id_length: Option<u64>,
    pub transports: Vec<String>,
    /// COSE algorithm ids the key can create credentials with.
    pub algorithms: Vec<i64>,
    pub min_pin_length: Option<u64>,
    pub firmware_version: Option<u64>,
}

impl AuthenticatorInfo {
    pub(crate) fn from_value(v: &Value) -> Result<Self, CtapError> {
        let m = CborMap::new(v, "getInfo response")?;
        let versions = m.opt_text_array(1, "versions")?;
        if versions.is_empty() {
            return Err(m.missing("versions"));
        }
        let aaguid = m.bytes(3, "aaguid")?;
        let aaguid = aaguid
            .try_into()
            .map_err(|_| m.wrong_length("aaguid", 16, aaguid.len()))?;
        let mut options = BTreeMap::new();
        if let Some(o) = m.get(4) {
            for (k, v) in CborMap::new(o, "getInfo options")?.entries() {
                match (k, v) {
                    (Value::Text(k), Value::Bool(b)) => {
                        options.insert(k.clone(), *b);
                    }
                    _ => return Err(m.wrong("options (4)", "a map of text to booleans")),
                }
            }
        }
        let mut algorithms = Vec::new();
        if let Some(Value::Array(algs)) = m.get(0x0A) {
            for a in algs {
                let am = CborMap::new(a, "getInfo algorithm")?;
                if let Some(Value::Integer(i)) = am.get_text("alg") {
                    if let Ok(i) = i64::try_from(i128::from(*i)) {
                        algorithms.push(i);
                    }
                }
            }
        }
        Ok(AuthenticatorInfo {
            versions,
            extensions: m.opt_text_array(2, "extensions")?,
            aaguid,
            options,
            max_msg_size: m.opt_uint(5, "maxMsgSize")?,
            pin_uv_auth_protocols: m.opt_uint_array(6, "pinUvAuthProtocols")?,
            max_credential_count_in_list: m.opt_uint(7, "maxCredentialCountInList")?,
            max_credential_id_length: m.opt_uint(8, "maxCredentialIdLength")?,
            transports: m.opt_text_array(9, "transports")?,
            algorithms,
            min_pin_length: m.opt_uint(0x0D, "minPINLength")?,
            firmware_version: m.opt_uint(0x0E, "firmwareVersion")?,
        })
    }

    pub fn option(&self, name: &str) -> Option<bool> {
        self.options.get(name).copied()
    }

    /// A PIN is set (clientPin option true).
    pub fn pin_set(&self) -> bool {
        self.option("clientPin") == Some(true)
    }

    /// Built-in user verification (fingerprint) is configured.
    pub(crate) fn builtin_uv(&self) -> bool {
        self.option("uv") == Some(true)
    }

    pub fn supports_extension(&self, name: &str) -> bool {
        self.extensions.iter().any(|e| e == name)
    }

    /// CTAP 2.1 keys support getPinUvAuthTokenUsingPinWithPermissions.
    pub(crate) fn supports_permissions(&self) -> bool {
        self.option("pinUvAuthToken") == Some(true)
    }

    pub fn aaguid_string(&self) -> String {
        format_aaguid(&self.aaguid)
    }
}

/// 8-4-4-4-12 hex, as AAGUIDs are usually written.
pub(crate) fn format_aaguid(a: &[u8; 16]) -> String {
    let h: String = a.iter().map(|b| format!("{b:02x}")).collect();
    format!(
        "{}-{}-{}-{}-{}",
        &h[..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..]
    )
}
