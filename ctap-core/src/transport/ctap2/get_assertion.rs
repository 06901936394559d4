//! authenticatorGetAssertion and authenticatorGetNextAssertion.

use ciborium::Value;

use super::authdata::AuthenticatorData;
use super::cbor::{self, CborMap};
use super::ext::hmac_secret::{
    HmacSalts, HmacSecretOutput, HmacSecretRequest, NAME as HMAC_SECRET,
};
use super::make_credential::descriptors;
use super::pin::PinUvAuthToken;
use super::{
    command, Ctap2, CtapError, DescriptorProblem, Incompatibility, KeepaliveHandler, Misbehaviour,
    QUICK_TIMEOUT,
};
use crate::transport::device::Transport;

pub struct GetAssertionRequest {
    pub rp_id: String,
    pub client_data_hash: [u8; 32],
    pub allow_list: Vec<Vec<u8>>,
    /// Require a touch. `false` is a silent probe: does the key hold one of these credentials?
    pub user_presence: bool,
    /// Ask for built-in user verification (not needed when a PIN token is passed).
    pub user_verification: bool,
    pub hmac_secret: Option<HmacSalts>,
}

/// The key's answer, unverified. The signature covers `auth_data.raw || client_data_hash`.
pub struct GetAssertionResponse {
    pub credential_id: Vec<u8>,
    pub auth_data: AuthenticatorData,
    pub signature: Vec<u8>,
    pub user_id: Option<Vec<u8>>,
    pub number_of_credentials: Option<u64>,
    /// The hmac-secret output when salts were sent: decrypted, or why it cannot be used (absent,
    /// not a byte string, undecryptable, wrong length). An unusable output is not an error here:
    /// the verifier reports it exactly as it reports a wrong one, so the key cannot choose between
    /// a device error and an hmac mismatch in the audit log.
    pub hmac_secret: Option<Result<HmacSecretOutput, CtapError>>,
}

impl GetAssertionResponse {
    #[cfg(test)]
    pub(crate) fn from_value_for_tests(v: &Value) -> Result<Self, CtapError> {
        Self::from_value(v, &[vec![0; 16]])
    }

    fn from_value(v: &Value, allow_list: &[Vec<u8>]) -> Result<Self, CtapError> {
        let m = CborMap::new(v, "getAssertion response")?;
        let credential_id = match m.get(1) {
            Some(c) => Some(descriptor_id(c)?),
            None => None,
        };
        // The key may omit the credential when the allow list had exactly one entry.
        let credential_id = match (credential_id, allow_list) {
            (Some(id), _) => id,
            (None, [only]) => only.clone(),
            (None, _) => return Err(m.missing("the credential (1)")),
        };
        let user_id = match m.get(4) {
            Some(u) => CborMap::new(u, "user")?
                .get_text("id")
                .and_then(|id| match id {
                    Value::Bytes(b) => Some(b.clone()),
                    _ => None,
                }),
            None => None,
        };
        Ok(GetAssertionResponse {
            credential_id,
            auth_data: AuthenticatorData::parse_assertion(m.bytes(2, "authData")?)?,
            signature: m.bytes(3, "signature")?.to_vec(),
            user_id,
            number_of_credentials: m.opt_uint(5, "numberOfCredentials")?,
            hmac_secret: None,
        })
    }
}

/// The id of the credential descriptor a key answers with (member 1). A descriptor that is there
/// must be a real one, `{"id": bytes, "type": "public-key"}`: one with a mistyped id or another
/// type is refused, not replaced by the allow list's entry.
pub(super) fn descriptor_id(value: &Value) -> Result<Vec<u8>, CtapError> {
    let d = CborMap::new(value, "credential descriptor")?;
    let id = match d.get_text("id") {
        Some(Value::Bytes(b)) => b.clone(),
        Some(_) => return Err(DescriptorProblem::IdNotBytes.into()),
        None => return Err(DescriptorProblem::MissingId.into()),
    };
    match d.get_text("type") {
        Some(Value::Text(t)) if t == "public-key" => Ok(id),
        Some(_) => Err(DescriptorProblem::TypeNotPublicKey.into()),
        None => Err(DescriptorProblem::MissingType.into()),
    }
}

impl<T: Transport> Ctap2<T> {
    /// Ask for an assertion. With `token`, pinUvAuthParam proves the PIN was entered; with
    /// `req.hmac_secret`, a fresh key agreement encrypts the salts and decrypts the output.
    pub fn get_assertion(
        &mut self,
        req: &GetAssertionRequest,
        token: Option<&PinUvAuthToken>,
        on_keepalive: KeepaliveHandler<'_>,
    ) -> Result<GetAssertionResponse, CtapError> {
        let hmac = match &req.hmac_secret {
            Some(salts) => {
                if !self.info().supports_extension(HMAC_SECRET) {
                    return Err(CtapError::DeviceIncompatible(Incompatibility::NoHmacSecret));
                }
                let protocol = match token {
                    Some(t) => t.protocol(),
                    None => self.pin_protocol()?,
                };
                let agreement = self.key_agreement(protocol)?;
                Some(HmacSecretRequest::new(agreement, salts)?)
            }
            None => None,
        };
        let mut options = Vec::new();
        if !req.user_presence {
            options.push(("up", Value::Bool(false)));
        }
        if req.user_verification && token.is_none() {
            options.push(("uv", Value::Bool(true)));
        }
        let params = cbor::int_map(vec![
            (1, Some(Value::Text(req.rp_id.clone()))),
            (2, Some(Value::Bytes(req.client_data_hash.to_vec()))),
            (
                3,
                (!req.allow_list.is_empty()).then(|| descriptors(&req.allow_list)),
            ),
            (
                4,
                hmac.as_ref()
                    .map(|h| cbor::text_map(vec![(HMAC_SECRET, h.extension_input())])),
            ),
            (5, (!options.is_empty()).then(|| cbor::text_map(options))),
            (
                6,
                token.map(|t| Value::Bytes(t.authenticate(&req.client_data_hash))),
            ),
            (
                7,
                token.map(|t| Value::Integer(t.protocol().version().into())),
            ),
        ]);
        let timeout = if req.user_presence {
            self.touch_timeout
        } else {
            QUICK_TIMEOUT
        };
        let v = self
            .send_cbor(command::GET_ASSERTION, Some(&params), timeout, on_keepalive)?
            .ok_or(Misbehaviour::EmptyResponse {
                response: "getAssertion response",
            })?;
        let mut resp = GetAssertionResponse::from_value(&v, &req.allow_list)?;
        if let Some(h) = &hmac {
            resp.hmac_secret = Some(h.decrypt_output(&resp.auth_data));
        }
        Ok(resp)
    }

    /// The next of several assertions (after a getAssertion that reported numberOfCredentials > 1).
    pub fn get_next_assertion(&mut self) -> Result<GetAssertionResponse, CtapError> {
        let v = self
            .send_cbor(
                command::GET_NEXT_ASSERTION,
                None,
                QUICK_TIMEOUT,
                &mut |_| crate::transport::ctaphid::WaitDecision::Continue,
            )?
            .ok_or(Misbehaviour::EmptyResponse {
                response: "getNextAssertion response",
            })?;
        GetAssertionResponse::from_value(&v, &[])
    }
}
