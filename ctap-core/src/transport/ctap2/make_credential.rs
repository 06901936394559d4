//! authenticatorMakeCredential.

use ciborium::Value;

use super::authdata::{AttestedCredential, AuthenticatorData};
use super::cbor::{self, CborMap};
use super::cose::Algorithm;
use super::ext::hmac_secret;
use super::pin::PinUvAuthToken;
use super::{command, AuthDataProblem, Ctap2, CtapError, KeepaliveHandler, Misbehaviour};
use crate::transport::device::Transport;

/// What to create. `algorithms` is in order of preference.
pub struct MakeCredentialRequest {
    pub client_data_hash: [u8; 32],
    pub rp_id: String,
    pub rp_name: Option<String>,
    pub user_id: Vec<u8>,
    pub user_name: String,
    pub user_display_name: Option<String>,
    pub algorithms: Vec<Algorithm>,
    pub exclude_list: Vec<Vec<u8>>,
    pub resident_key: bool,
    /// Ask for built-in user verification (not needed when a PIN token is passed).
    pub user_verification: bool,
    pub hmac_secret: bool,
    /// credProtect level 1, 2 or 3.
    pub cred_protect: Option<u8>,
}

/// The key's answer. Only built from a response whose authData carries attested credential data.
pub struct MakeCredentialResponse {
    pub fmt: String,
    pub auth_data: AuthenticatorData,
    pub att_stmt: Value,
    credential: AttestedCredential,
}

impl MakeCredentialResponse {
    /// The new credential: its id, public key and the key's AAGUID.
    pub fn credential(&self) -> &AttestedCredential {
        &self.credential
    }

    /// Whether the key turned hmac-secret on for this credential.
    pub fn hmac_secret_enabled(&self) -> bool {
        self.auth_data.extension(hmac_secret::NAME) == Some(&Value::Bool(true))
    }

    fn from_value(v: &Value) -> Result<Self, CtapError> {
        let m = CborMap::new(v, "makeCredential response")?;
        let fmt = match m.get(1) {
            Some(Value::Text(t)) => t.clone(),
            Some(_) => return Err(m.wrong("fmt (1)", "text")),
            None => return Err(m.missing("fmt (1)")),
        };
        let auth_data = AuthenticatorData::parse(m.bytes(2, "authData")?)?;
        let credential = auth_data
            .attested
            .clone()
            .ok_or(AuthDataProblem::NoAttestedCredential)?;
        let att_stmt = m.get(3).cloned().unwrap_or(Value::Map(Vec::new()));
        Ok(MakeCredentialResponse {
            fmt,
            auth_data,
            att_stmt,
            credential,
        })
    }
}

impl<T: Transport> Ctap2<T> {
    pub fn make_credential(
        &mut self,
        req: &MakeCredentialRequest,
        token: Option<&PinUvAuthToken>,
        on_keepalive: KeepaliveHandler<'_>,
    ) -> Result<MakeCredentialResponse, CtapError> {
        let text = |s: &str| Value::Text(s.to_string());
        let mut user = vec![
            ("id", Value::Bytes(req.user_id.clone())),
            ("name", text(&req.user_name)),
        ];
        if let Some(d) = &req.user_display_name {
            user.push(("displayName", text(d)));
        }
        let mut rp = vec![("id", text(&req.rp_id))];
        if let Some(n) = &req.rp_name {
            rp.push(("name", text(n)));
        }
        let params: Vec<Value> = req
            .algorithms
            .iter()
            .map(|a| {
                cbor::text_map(vec![
                    ("alg", Value::Integer(a.cose_id().into())),
                    ("type", text("public-key")),
                ])
            })
            .collect();
        let mut extensions = Vec::new();
        if req.hmac_secret {
            extensions.push((hmac_secret::NAME, Value::Bool(true)));
        }
        if let Some(level) = req.cred_protect {
            extensions.push(("credProtect", Value::Integer(level.into())));
        }
        let mut options = Vec::new();
        if req.resident_key {
            options.push(("rk", Value::Bool(true)));
        }
        if req.user_verification && token.is_none() {
            options.push(("uv", Value::Bool(true)));
        }
        let params = cbor::int_map(vec![
            (1, Some(Value::Bytes(req.client_data_hash.to_vec()))),
            (2, Some(cbor::text_map(rp))),
            (3, Some(cbor::text_map(user))),
            (4, Some(Value::Array(params))),
            (
                5,
                (!req.exclude_list.is_empty()).then(|| descriptors(&req.exclude_list)),
            ),
            (
                6,
                (!extensions.is_empty()).then(|| cbor::text_map(extensions)),
            ),
            (7, (!options.is_empty()).then(|| cbor::text_map(options))),
            (
                8,
                token.map(|t| Value::Bytes(t.authenticate(&req.client_data_hash))),
            ),
            (
                9,
                token.map(|t| Value::Integer(t.protocol().version().into())),
            ),
        ]);
        let timeout = self.touch_timeout;
        let v = self
            .send_cbor(
                command::MAKE_CREDENTIAL,
                Some(&params),
                timeout,
                on_keepalive,
            )?
            .ok_or(Misbehaviour::EmptyResponse {
                response: "makeCredential response",
            })?;
        MakeCredentialResponse::from_value(&v)
    }
}

/// PublicKeyCredentialDescriptors for allow and exclude lists.
pub(crate) fn descriptors(ids: &[Vec<u8>]) -> Value {
    Value::Array(
        ids.iter()
            .map(|id| {
                cbor::text_map(vec![
                    ("id", Value::Bytes(id.clone())),
                    ("type", Value::Text("public-key".into())),
                ])
            })
            .collect(),
    )
}
