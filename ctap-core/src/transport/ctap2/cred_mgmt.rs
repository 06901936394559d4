//! authenticatorCredentialManagement (CTAP 2.1 §6.8), read-only: the discoverable credentials a
//! key holds, with their RP ID, credential id and public key. Every answer goes through the
//! strict decoder; the public key must parse as a COSE key we support.

use ciborium::Value;

use super::cbor::{self, CborMap};
use super::cose::CoseKey;
use super::get_assertion::descriptor_id;
use super::pin::PinUvAuthToken;
use super::{Ctap2, CtapError, CtapStatus, Misbehaviour, QUICK_TIMEOUT};
use crate::transport::ctaphid::WaitDecision;
use crate::transport::device::Transport;

/// authenticatorCredentialManagement, and its CTAP 2.1-PRE spelling.
const CREDENTIAL_MANAGEMENT: u8 = 0x0A;
const CREDENTIAL_MANAGEMENT_PREVIEW: u8 = 0x41;

const ENUMERATE_RPS_BEGIN: u8 = 0x02;
const ENUMERATE_RPS_NEXT: u8 = 0x03;
const ENUMERATE_CREDENTIALS_BEGIN: u8 = 0x04;
const ENUMERATE_CREDENTIALS_NEXT: u8 = 0x05;

/// At most this many relying parties and credentials per relying party are read: a key cannot
/// keep the client enumerating for ever.
const MAX_LISTED: u64 = 1000;

/// One discoverable credential.
#[derive(Debug, Clone)]
pub struct ResidentCredential {
    pub rp_id: String,
    pub credential_id: Vec<u8>,
    pub public_key: CoseKey,
    /// The user name stored with it, if any (OpenSSH stores the `-O user=` value).
    pub user_name: Option<String>,
    /// Its credProtect level (1, 2 or 3), if the key says: 3 (userVerificationRequired) is how
    /// a resident SSH key made with verify-required keeps that flag on the key itself.
    pub cred_protect: Option<u8>,
}

impl<T: Transport> Ctap2<T> {
    /// Every discoverable credential whose RP ID `keep` accepts. `token` needs the
    /// credentialManagement permission (`permission::CREDENTIAL_MANAGEMENT`), no RP ID.
    pub fn resident_credentials(
        &mut self,
        token: &PinUvAuthToken,
        keep: &dyn Fn(&str) -> bool,
    ) -> Result<Vec<ResidentCredential>, CtapError> {
        let mut command = CREDENTIAL_MANAGEMENT;
        let first = match self.cred_mgmt(command, ENUMERATE_RPS_BEGIN, None, Some(token)) {
            Err(CtapError::Status(CtapStatus::InvalidCommand)) => {
                command = CREDENTIAL_MANAGEMENT_PREVIEW;
                self.cred_mgmt(command, ENUMERATE_RPS_BEGIN, None, Some(token))
            }
            other => other,
        };
        let first = match first {
            // No discoverable credential at all.
            Err(CtapError::Status(CtapStatus::NoCredentials)) => return Ok(Vec::new()),
            other => other?,
        };
        let m = CborMap::new(&first, "enumerateRPs response")?;
        let total = m.opt_uint(5, "totalRPs")?.unwrap_or(0).min(MAX_LISTED);
        let mut rps = vec![rp_of(&first)?];
        for _ in 1..total {
            let next = self.cred_mgmt(command, ENUMERATE_RPS_NEXT, None, None)?;
            rps.push(rp_of(&next)?);
        }
        let mut out = Vec::new();
        for (rp_id, rp_hash) in rps {
            if !keep(&rp_id) {
                continue;
            }
            let params = cbor::int_map(vec![(1, Some(Value::Bytes(rp_hash)))]);
            let first = self.cred_mgmt(
                command,
                ENUMERATE_CREDENTIALS_BEGIN,
                Some(params),
                Some(token),
            )?;
            let m = CborMap::new(&first, "enumerateCredentials response")?;
            let total = m
                .opt_uint(9, "totalCredentials")?
                .unwrap_or(1)
                .min(MAX_LISTED);
            out.push(credential_of(&rp_id, &first)?);
            for _ in 1..total {
                let next = self.cred_mgmt(command, ENUMERATE_CREDENTIALS_NEXT, None, None)?;
                out.push(credential_of(&rp_id, &next)?);
            }
        }
        Ok(out)
    }

    fn cred_mgmt(
        &mut self,
        command: u8,
        sub: u8,
        params: Option<Value>,
        token: Option<&PinUvAuthToken>,
    ) -> Result<Value, CtapError> {
        let mut members = vec![(1, Some(Value::Integer(sub.into())))];
        let encoded_params = params.as_ref().map(cbor::encode);
        members.push((2, params));
        if let Some(t) = token {
            let mut message = vec![sub];
            message.extend_from_slice(encoded_params.as_deref().unwrap_or(&[]));
            members.push((3, Some(Value::Integer(t.protocol().version().into()))));
            members.push((4, Some(Value::Bytes(t.authenticate(&message)))));
        }
        let request = cbor::int_map(members);
        self.send_cbor(command, Some(&request), QUICK_TIMEOUT, &mut |_| {
            WaitDecision::Continue
        })?
        .ok_or_else(|| {
            Misbehaviour::EmptyResponse {
                response: "credentialManagement response",
            }
            .into()
        })
    }
}

/// The RP ID and its hash from an enumerateRPs answer.
fn rp_of(v: &Value) -> Result<(String, Vec<u8>), CtapError> {
    let m = CborMap::new(v, "enumerateRPs response")?;
    let rp = m.get(3).ok_or_else(|| m.missing("rp (3)"))?;
    let rp = CborMap::new(rp, "rp")?;
    let id = match rp.get_text("id") {
        Some(Value::Text(t)) => t.clone(),
        _ => return Err(m.wrong("rp (3)", "a map with a text id")),
    };
    let hash = m.bytes(4, "rpIDHash")?.to_vec();
    if hash.len() != 32 {
        return Err(m.wrong("rpIDHash (4)", "32 bytes"));
    }
    Ok((id, hash))
}

fn credential_of(rp_id: &str, v: &Value) -> Result<ResidentCredential, CtapError> {
    let m = CborMap::new(v, "enumerateCredentials response")?;
    let id = descriptor_id(m.get(7).ok_or_else(|| m.missing("credentialID (7)"))?)?;
    let key = CoseKey::from_value(m.get(8).ok_or_else(|| m.missing("publicKey (8)"))?)?;
    let user_name = m
        .get(6)
        .and_then(|u| CborMap::new(u, "user").ok())
        .and_then(|u| match u.get_text("name") {
            Some(Value::Text(t)) => Some(t.clone()),
            _ => None,
        });
    let cred_protect = match m.opt_uint(10, "credProtect")? {
        None => None,
        Some(level @ 1..=3) => Some(level as u8),
        Some(_) => return Err(m.wrong("credProtect (10)", "1, 2 or 3")),
    };
    Ok(ResidentCredential {
        rp_id: rp_id.to_string(),
        credential_id: id,
        public_key: key,
        user_name,
        cred_protect,
    })
}
