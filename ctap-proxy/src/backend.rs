//! The key side: the proxy owns one CTAPHID channel to the key (ctap-core's `CtapHidChannel`)
//! and clients take turns on it (a mutex in [`crate::server`]). A channel that failed at the
//! transport level is dropped and opened again for the next request (the key was replugged,
//! the virtual key restarted).

use std::time::Duration;

use ctap_core::transport::ctaphid::{
    cmd, CtapHidChannel, CtapHidError, KeepaliveStatus, WaitDecision,
};
use ctap_core::transport::device::{self, DeviceUri, Transport};

use crate::hid::{Identity, CAPABILITY_CBOR, CAPABILITY_NMSG, CAPABILITY_WINK};

const GET_INFO_TIMEOUT: Duration = Duration::from_secs(10);

pub struct Backend {
    uri: DeviceUri,
    channel: Option<CtapHidChannel<Box<dyn Transport>>>,
    identity: Identity,
    /// The client connection whose getAssertion the key's getNextAssertion state belongs to.
    pub assertion_owner: Option<u64>,
}

impl Backend {
    /// Open the key now, so a wrong `--device` is an error at start, not at the first request.
    pub fn open(uri: DeviceUri) -> Result<Self, CtapHidError> {
        let channel = open_channel(&uri)?;
        let identity = identity_of(&channel);
        Ok(Backend {
            uri,
            channel: Some(channel),
            identity,
            assertion_owner: None,
        })
    }

    /// What INIT tells clients: the key's version, and of its capabilities WINK, CBOR and
    /// NMSG only (no LOCK).
    pub fn identity(&self) -> Identity {
        self.identity
    }

    pub fn describe(&self) -> String {
        self.uri.to_string()
    }

    /// One request on the key's channel. The channel is reopened when the last one failed;
    /// transport failures drop it.
    pub fn call(
        &mut self,
        command: u8,
        payload: &[u8],
        timeout: Duration,
        on_keepalive: &mut dyn FnMut(KeepaliveStatus) -> WaitDecision,
    ) -> Result<Vec<u8>, CtapHidError> {
        if self.channel.is_none() {
            let channel = open_channel(&self.uri)?;
            self.identity = identity_of(&channel);
            self.assertion_owner = None;
            self.channel = Some(channel);
        }
        let Some(channel) = self.channel.as_mut() else {
            return Err(CtapHidError::Timeout);
        };
        let result = channel.call(command, payload, timeout, on_keepalive);
        if let Err(e) = &result {
            if matches!(e, CtapHidError::Transport(_) | CtapHidError::Misbehaved(_)) {
                self.channel = None;
            }
        }
        result
    }
}

fn identity_of(channel: &CtapHidChannel<Box<dyn Transport>>) -> Identity {
    let v = channel.version();
    Identity {
        major: v.major,
        minor: v.minor,
        build: v.build,
        capabilities: v.capabilities & (CAPABILITY_WINK | CAPABILITY_CBOR | CAPABILITY_NMSG),
    }
}

fn open_channel(uri: &DeviceUri) -> Result<CtapHidChannel<Box<dyn Transport>>, CtapHidError> {
    let transport = device::open(uri).map_err(CtapHidError::Transport)?;
    let mut channel = CtapHidChannel::open(transport)?;
    // Requests as large as the key takes (getInfo's maxMsgSize) may pass.
    let info = channel.call(cmd::CBOR, &[0x04], GET_INFO_TIMEOUT, &mut |_| {
        WaitDecision::Continue
    })?;
    if let Some(n) = max_msg_size(&info) {
        channel.set_max_msg_size(n);
    }
    Ok(channel)
}

fn max_msg_size(info: &[u8]) -> Option<usize> {
    let (&status, body) = info.split_first()?;
    if status != 0 {
        return None;
    }
    let v = ctap_core::transport::ctap2::cbor::decode_strict(body).ok()?;
    let m = ctap_core::transport::ctap2::cbor::CborMap::new(&v, "getInfo").ok()?;
    match m.get(5) {
        Some(ciborium::Value::Integer(i)) => usize::try_from(i128::from(*i)).ok(),
        _ => None,
    }
}
