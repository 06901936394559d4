//! authenticatorClientPIN subcommands.

use ciborium::Value;
use zeroize::Zeroizing;

use super::cbor::{self, CborMap};
use super::cose::CoseKey;
use super::pin::{KeyAgreement, Pin, PinUvAuthToken, PinUvProtocol};
use super::{
    command, Ctap2, CtapError, InputProblem, KeepaliveHandler, Misbehaviour, QUICK_TIMEOUT,
};
use crate::transport::ctaphid::WaitDecision;
use crate::transport::device::Transport;

mod sub {
    pub(crate) const GET_PIN_RETRIES: u8 = 0x01;
    pub(crate) const GET_KEY_AGREEMENT: u8 = 0x02;
    pub(crate) const SET_PIN: u8 = 0x03;
    pub(crate) const CHANGE_PIN: u8 = 0x04;
    pub(crate) const GET_PIN_TOKEN: u8 = 0x05;
    pub(crate) const GET_UV_TOKEN_WITH_PERMISSIONS: u8 = 0x06;
    pub(crate) const GET_PIN_TOKEN_WITH_PERMISSIONS: u8 = 0x09;
}

/// PIN retries left, and whether the key must be power-cycled before the next try.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PinRetries {
    pub retries: u64,
    pub power_cycle_required: bool,
}

#[derive(Default)]
struct PinParams {
    key_agreement: Option<Value>,
    pin_uv_auth_param: Option<Vec<u8>>,
    new_pin_enc: Option<Vec<u8>>,
    pin_hash_enc: Option<Vec<u8>>,
    permissions: Option<u8>,
    rp_id: Option<String>,
}

impl<T: Transport> Ctap2<T> {
    fn client_pin(
        &mut self,
        protocol: PinUvProtocol,
        subcommand: u8,
        p: PinParams,
        on_keepalive: KeepaliveHandler<'_>,
    ) -> Result<Option<Value>, CtapError> {
        let params = cbor::int_map(vec![
            (1, Some(Value::Integer(protocol.version().into()))),
            (2, Some(Value::Integer(subcommand.into()))),
            (3, p.key_agreement),
            (4, p.pin_uv_auth_param.map(Value::Bytes)),
            (5, p.new_pin_enc.map(Value::Bytes)),
            (6, p.pin_hash_enc.map(Value::Bytes)),
            (9, p.permissions.map(|x| Value::Integer(x.into()))),
            (0x0A, p.rp_id.map(Value::Text)),
        ]);
        let timeout = if subcommand == sub::GET_UV_TOKEN_WITH_PERMISSIONS {
            self.touch_timeout
        } else {
            QUICK_TIMEOUT
        };
        self.send_cbor(command::CLIENT_PIN, Some(&params), timeout, on_keepalive)
    }

    fn quick_pin(
        &mut self,
        protocol: PinUvProtocol,
        subcommand: u8,
        p: PinParams,
    ) -> Result<Option<Value>, CtapError> {
        self.client_pin(protocol, subcommand, p, &mut |_| WaitDecision::Continue)
    }

    /// The protocol this key and we will use for PIN and hmac-secret.
    pub(crate) fn pin_protocol(&self) -> Result<PinUvProtocol, CtapError> {
        match self.forced_protocol {
            Some(p) => Ok(p),
            None => PinUvProtocol::negotiate(self.info()),
        }
    }

    /// getKeyAgreement, then ECDH with a fresh key of ours.
    pub(crate) fn key_agreement(
        &mut self,
        protocol: PinUvProtocol,
    ) -> Result<KeyAgreement, CtapError> {
        let v = self
            .quick_pin(protocol, sub::GET_KEY_AGREEMENT, PinParams::default())?
            .ok_or(Misbehaviour::EmptyResponse {
                response: "getKeyAgreement response",
            })?;
        let m = CborMap::new(&v, "getKeyAgreement response")?;
        let peer = CoseKey::from_value(m.get(1).ok_or_else(|| m.missing("keyAgreement"))?)?;
        KeyAgreement::new(protocol, &peer)
    }

    pub fn pin_retries(&mut self) -> Result<PinRetries, CtapError> {
        let protocol = self.pin_protocol()?;
        let v = self
            .quick_pin(protocol, sub::GET_PIN_RETRIES, PinParams::default())?
            .ok_or(Misbehaviour::EmptyResponse {
                response: "getPINRetries response",
            })?;
        let m = CborMap::new(&v, "getPINRetries response")?;
        Ok(PinRetries {
            retries: m
                .opt_uint(3, "pinRetries")?
                .ok_or_else(|| m.missing("pinRetries"))?,
            power_cycle_required: m.opt_bool(4, "powerCycleState")?.unwrap_or(false),
        })
    }

    fn check_min_length(&self, pin: &Pin) -> Result<(), CtapError> {
        let min = self.info().min_pin_length.unwrap_or(4);
        if (pin.char_count() as u64) < min {
            return Err(CtapError::InvalidInput(
                InputProblem::PinShorterThanKeyMinimum { min },
            ));
        }
        Ok(())
    }

    /// Set the first PIN of a key that has none.
    pub fn set_pin(&mut self, new: &Pin) -> Result<(), CtapError> {
        self.check_min_length(new)?;
        let protocol = self.pin_protocol()?;
        let ka = self.key_agreement(protocol)?;
        let new_pin_enc = ka.shared.encrypt(&new.padded())?;
        let params = PinParams {
            key_agreement: Some(ka.platform_key.to_value()),
            pin_uv_auth_param: Some(ka.shared.authenticate(&new_pin_enc)),
            new_pin_enc: Some(new_pin_enc),
            ..Default::default()
        };
        self.quick_pin(protocol, sub::SET_PIN, params)?;
        self.refresh_info().map(|_| ())
    }

    pub fn change_pin(&mut self, current: &Pin, new: &Pin) -> Result<(), CtapError> {
        self.check_min_length(new)?;
        let protocol = self.pin_protocol()?;
        let ka = self.key_agreement(protocol)?;
        let new_pin_enc = ka.shared.encrypt(&new.padded())?;
        let pin_hash_enc = ka.shared.encrypt(&current.hash16())?;
        let mut authenticated = Zeroizing::new(new_pin_enc.clone());
        authenticated.extend_from_slice(&pin_hash_enc);
        let params = PinParams {
            key_agreement: Some(ka.platform_key.to_value()),
            pin_uv_auth_param: Some(ka.shared.authenticate(&authenticated)),
            new_pin_enc: Some(new_pin_enc),
            pin_hash_enc: Some(pin_hash_enc),
            ..Default::default()
        };
        self.quick_pin(protocol, sub::CHANGE_PIN, params)
            .map(|_| ())
    }

    /// A pinUvAuthToken from the PIN: with permissions and rpId on CTAP 2.1 keys
    /// (getPinUvAuthTokenUsingPinWithPermissions), the legacy getPinToken otherwise.
    pub fn pin_token(
        &mut self,
        pin: &Pin,
        permissions: u8,
        rp_id: Option<&str>,
    ) -> Result<PinUvAuthToken, CtapError> {
        let protocol = self.pin_protocol()?;
        let ka = self.key_agreement(protocol)?;
        let with_permissions = self.info().supports_permissions();
        let params = PinParams {
            key_agreement: Some(ka.platform_key.to_value()),
            pin_hash_enc: Some(ka.shared.encrypt(&pin.hash16())?),
            permissions: with_permissions.then_some(permissions),
            rp_id: if with_permissions {
                rp_id.map(str::to_string)
            } else {
                None
            },
            ..Default::default()
        };
        let subcommand = if with_permissions {
            sub::GET_PIN_TOKEN_WITH_PERMISSIONS
        } else {
            sub::GET_PIN_TOKEN
        };
        let v = self.quick_pin(protocol, subcommand, params)?;
        decrypt_token(protocol, &ka, v)
    }

    /// A pinUvAuthToken from built-in user verification (fingerprint): the key asks for it.
    pub(crate) fn uv_token(
        &mut self,
        permissions: u8,
        rp_id: Option<&str>,
        on_keepalive: KeepaliveHandler<'_>,
    ) -> Result<PinUvAuthToken, CtapError> {
        let protocol = self.pin_protocol()?;
        let ka = self.key_agreement(protocol)?;
        let params = PinParams {
            key_agreement: Some(ka.platform_key.to_value()),
            permissions: Some(permissions),
            rp_id: rp_id.map(str::to_string),
            ..Default::default()
        };
        let v = self.client_pin(
            protocol,
            sub::GET_UV_TOKEN_WITH_PERMISSIONS,
            params,
            on_keepalive,
        )?;
        decrypt_token(protocol, &ka, v)
    }
}

fn decrypt_token(
    protocol: PinUvProtocol,
    ka: &KeyAgreement,
    v: Option<Value>,
) -> Result<PinUvAuthToken, CtapError> {
    let v = v.ok_or(Misbehaviour::EmptyResponse {
        response: "pinUvAuthToken response",
    })?;
    let m = CborMap::new(&v, "pinUvAuthToken response")?;
    let token = ka.shared.decrypt(m.bytes(2, "pinUvAuthToken")?)?;
    PinUvAuthToken::new(protocol, token)
}
