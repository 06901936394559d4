//! CTAP2 over CTAPHID: `send_cbor` plus one method per authenticator command.
//!
//! Responses are decoded strictly (canonical CBOR, every member type-checked) and returned with
//! their raw authenticatorData and signature: this layer does not decide whether an assertion is
//! good. That is [`crate::flows::verify`]'s job, with our own stored public key.

pub mod authdata;
pub mod cbor;
mod client_pin;
pub mod cose;
pub mod cred_mgmt;
mod error;
pub mod ext;
mod get_assertion;
pub mod info;
mod make_credential;
pub mod pin;
pub mod probe;
mod status;

use std::time::Duration;

use ciborium::Value;

pub use error::{
    AuthDataProblem, CborProblem, CoseKeyProblem, CtapError, DescriptorProblem, HmacSecretProblem,
    Incompatibility, InputProblem, Misbehaviour, PinProtocolProblem,
};
pub use get_assertion::{GetAssertionRequest, GetAssertionResponse};
pub use make_credential::{MakeCredentialRequest, MakeCredentialResponse};
pub use status::CtapStatus;

use crate::transport::ctaphid::{cmd, CtapHidChannel, KeepaliveStatus, WaitDecision};
use crate::transport::device::Transport;
use info::AuthenticatorInfo;

/// CTAP2 command bytes.
pub mod command {
    pub const MAKE_CREDENTIAL: u8 = 0x01;
    pub const GET_ASSERTION: u8 = 0x02;
    pub(crate) const GET_INFO: u8 = 0x04;
    pub(crate) const CLIENT_PIN: u8 = 0x06;
    pub(crate) const RESET: u8 = 0x07;
    pub(crate) const GET_NEXT_ASSERTION: u8 = 0x08;
    pub(crate) const SELECTION: u8 = 0x0B;
}

/// How long commands that need no touch may take (clientPIN does slow ECDH on small keys).
const QUICK_TIMEOUT: Duration = Duration::from_secs(10);
/// How long to wait for a touch unless the caller says otherwise.
pub const DEFAULT_TOUCH_TIMEOUT: Duration = Duration::from_secs(30);

/// Called with every keepalive; answers whether to keep waiting.
pub(crate) type KeepaliveHandler<'a> = &'a mut dyn FnMut(KeepaliveStatus) -> WaitDecision;

/// An authenticator that answered getInfo.
pub struct Ctap2<T: Transport> {
    hid: CtapHidChannel<T>,
    info: AuthenticatorInfo,
    touch_timeout: Duration,
    forced_protocol: Option<pin::PinUvProtocol>,
}

impl<T: Transport> Ctap2<T> {
    /// Ask the key for getInfo and size messages by its maxMsgSize.
    pub fn new(hid: CtapHidChannel<T>) -> Result<Self, CtapError> {
        Self::new_or_return(hid).map_err(|(e, _)| e)
    }

    /// [`Self::new`], handing the channel back when getInfo fails: a key that refuses getInfo
    /// may still speak CTAP1/U2F on it (`transport::ctap1::Ctap1::from_channel`).
    pub fn new_or_return(
        mut hid: CtapHidChannel<T>,
    ) -> Result<Self, (CtapError, CtapHidChannel<T>)> {
        let info = match fetch_info(&mut hid) {
            Ok(info) => info,
            Err(e) => return Err((e, hid)),
        };
        if let Some(n) = info.max_msg_size {
            hid.set_max_msg_size(usize::try_from(n).unwrap_or(usize::MAX));
        }
        Ok(Ctap2 {
            hid,
            info,
            touch_timeout: DEFAULT_TOUCH_TIMEOUT,
            forced_protocol: None,
        })
    }

    pub fn info(&self) -> &AuthenticatorInfo {
        &self.info
    }

    /// Refresh getInfo (after setting a PIN the clientPin option changes).
    pub fn refresh_info(&mut self) -> Result<&AuthenticatorInfo, CtapError> {
        self.info = fetch_info(&mut self.hid)?;
        Ok(&self.info)
    }

    /// How long operations that wait for a touch may take in all.
    pub(crate) fn set_touch_timeout(&mut self, t: Duration) {
        self.touch_timeout = t;
    }

    /// Use this PIN/UV auth protocol instead of negotiating (tests exercise both protocols).
    pub fn force_pin_protocol(&mut self, p: pin::PinUvProtocol) -> Result<(), CtapError> {
        if !self.info.pin_uv_auth_protocols.contains(&p.version()) {
            return Err(CtapError::DeviceIncompatible(
                Incompatibility::PinProtocolNotListed {
                    version: p.version(),
                },
            ));
        }
        self.forced_protocol = Some(p);
        Ok(())
    }

    pub fn touch_timeout(&self) -> Duration {
        self.touch_timeout
    }

    /// Send a command and decode its response. A non-zero status becomes [`CtapError::Status`];
    /// an empty success body is `None`.
    pub fn send_cbor(
        &mut self,
        command: u8,
        params: Option<&Value>,
        timeout: Duration,
        on_keepalive: KeepaliveHandler<'_>,
    ) -> Result<Option<Value>, CtapError> {
        send_cbor(&mut self.hid, command, params, timeout, on_keepalive)
    }

    /// authenticatorSelection: blink and wait for a touch, to pick one of several keys.
    pub fn selection(&mut self, on_keepalive: KeepaliveHandler<'_>) -> Result<(), CtapError> {
        let t = self.touch_timeout;
        self.send_cbor(command::SELECTION, None, t, on_keepalive)
            .map(|_| ())
    }

    /// authenticatorReset: wipes every credential and the PIN. Keys allow it only within seconds of
    /// being plugged in, and ask for a touch.
    pub fn reset(&mut self, on_keepalive: KeepaliveHandler<'_>) -> Result<(), CtapError> {
        let t = self.touch_timeout;
        self.send_cbor(command::RESET, None, t, on_keepalive)?;
        self.refresh_info().map(|_| ())
    }
}

fn fetch_info<T: Transport>(hid: &mut CtapHidChannel<T>) -> Result<AuthenticatorInfo, CtapError> {
    let v = send_cbor(hid, command::GET_INFO, None, QUICK_TIMEOUT, &mut |_| {
        WaitDecision::Continue
    })?
    .ok_or(Misbehaviour::EmptyResponse {
        response: "getInfo response",
    })?;
    AuthenticatorInfo::from_value(&v)
}

fn send_cbor<T: Transport>(
    hid: &mut CtapHidChannel<T>,
    command: u8,
    params: Option<&Value>,
    timeout: Duration,
    on_keepalive: KeepaliveHandler<'_>,
) -> Result<Option<Value>, CtapError> {
    let mut request = vec![command];
    if let Some(p) = params {
        request.extend(cbor::encode(p));
    }
    let response = hid.call(cmd::CBOR, &request, timeout, on_keepalive)?;
    let (&status, body) = response.split_first().ok_or(Misbehaviour::EmptyResponse {
        response: "CTAP2 response",
    })?;
    match CtapStatus::from_u8(status) {
        CtapStatus::Ok if body.is_empty() => Ok(None),
        CtapStatus::Ok => cbor::decode_strict(body).map(Some),
        other => Err(CtapError::Status(other)),
    }
}

#[cfg(test)]
mod tests;
