//! Opening authenticators by URI, and the user-interaction seam.

use std::time::{Duration, Instant};

use crate::transport::ctap1::Ctap1;
use crate::transport::ctap2::pin::Pin;
use crate::transport::ctap2::{Ctap2, CtapError, CtapStatus, Incompatibility};
use crate::transport::ctaphid::{
    CtapHidChannel, CtapHidError, HidErrorCode, KeepaliveStatus, WaitDecision, CAPABILITY_CBOR,
};
use crate::transport::device::{self, DeviceUri, Transport, TransportError};

/// An authenticator on any transport.
pub type Authenticator = Ctap2<Box<dyn Transport>>;

/// A key that speaks only CTAP1/U2F, on any transport.
pub type U2fKey = Ctap1<Box<dyn Transport>>;

/// An opened key: FIDO2 (getInfo answered), or one that speaks only CTAP1/U2F (no CBOR
/// capability, or getInfo refused).
pub enum OpenedKey {
    Fido2(Box<Authenticator>),
    U2f(U2fKey),
}

/// Open every key a URI names, FIDO2 and U2F-only alike (a login and `ctap-enroll enroll`
/// serve both; everything else wants [`open_authenticators`]). Bounded by `deadline` as
/// [`open_authenticators_until`] is.
pub fn open_keys(
    uri: &DeviceUri,
    touch_timeout: Duration,
    deadline: Option<Instant>,
) -> Result<Vec<OpenedKey>, CtapError> {
    let transports = transports(uri)?;
    let open = |t: Result<Box<dyn Transport>, TransportError>| {
        t.map_err(|e| CtapError::Hid(e.into()))
            .and_then(|t| open_one(t, deadline))
    };
    // Several keys are opened at once (INIT, getInfo), a thread each: a key that hangs costs
    // its own deadline, never the others' time.
    let results: Vec<Result<OpenedKey, CtapError>> = if transports.len() <= 1 {
        transports.into_iter().map(open).collect()
    } else {
        std::thread::scope(|scope| {
            let handles: Vec<_> = transports
                .into_iter()
                .map(|t| scope.spawn(move || open(t)))
                .collect();
            handles
                .into_iter()
                .map(|h| {
                    h.join().unwrap_or(Err(
                        crate::transport::ctap2::Misbehaviour::KeyThreadFailed.into()
                    ))
                })
                .collect()
        })
    };
    let mut opened = Vec::new();
    let mut first_err = None;
    for result in results {
        match result {
            Ok(mut key) => {
                if let OpenedKey::Fido2(a) = &mut key {
                    a.set_touch_timeout(touch_timeout);
                }
                opened.push(key);
            }
            Err(e) => {
                first_err.get_or_insert(e);
            }
        }
    }
    match (opened.is_empty(), first_err) {
        (true, Some(e)) => Err(e),
        (true, None) => Err(CtapError::Hid(TransportError::NoDevice.into())),
        _ => Ok(opened),
    }
}

/// One key: CTAP2 when it offers CBOR and answers getInfo, else (no CBOR capability, or
/// getInfo refused as an unknown command) CTAP1/U2F on the same channel. A key that is neither
/// fails with the CTAP2 error when it offered CBOR, the U2F one if not.
fn open_one(t: Box<dyn Transport>, deadline: Option<Instant>) -> Result<OpenedKey, CtapError> {
    let channel = CtapHidChannel::open_any_until(t, deadline)?;
    if channel.version().capabilities & CAPABILITY_CBOR == 0 {
        return Ok(OpenedKey::U2f(Ctap1::from_channel(channel)?));
    }
    match Ctap2::new_or_return(channel) {
        Ok(a) => Ok(OpenedKey::Fido2(Box::new(a))),
        // getInfo refused (CTAPHID ERROR invalid command, or CTAP's): perhaps a U2F key that
        // announces CBOR anyway. Any other failure (a malformed answer, the deadline) stays the
        // key's error: a hostile key does not get to change protocol by breaking CTAP2.
        Err((
            e @ (CtapError::Hid(CtapHidError::Device(HidErrorCode::InvalidCmd))
            | CtapError::Status(CtapStatus::InvalidCommand)),
            channel,
        )) => Ctap1::from_channel(channel)
            .map(OpenedKey::U2f)
            .map_err(|_| e),
        Err((e, _)) => Err(e),
    }
}

/// Open every authenticator a URI names: one for `hidraw:`/`unix:`, each attached FIDO key for
/// `auto`. Keys that fail to open are skipped when others work; with none, the first error.
pub fn open_authenticators(
    uri: &DeviceUri,
    touch_timeout: Duration,
) -> Result<Vec<Authenticator>, CtapError> {
    open(uri, touch_timeout, None)
}

/// [`open_authenticators`] for one bounded operation (a login, a signature): opening (INIT,
/// getInfo) and every later request on the returned keys end by `deadline`, whatever a key does.
pub fn open_authenticators_until(
    uri: &DeviceUri,
    touch_timeout: Duration,
    deadline: Instant,
) -> Result<Vec<Authenticator>, CtapError> {
    open(uri, touch_timeout, Some(deadline))
}

/// What an OpenSSH security key needs (the agent and `ctap-enroll ssh`): the words that end
/// [`Incompatibility::U2fOnly`]'s message.
pub const FOR_OPENSSH: &str =
    "an OpenSSH security key (sk-ecdsa/sk-ed25519, made and used with CTAP2 only)";

/// [`open_authenticators_until`] for an operation that needs CTAP2, named in the error a
/// U2F-only key gets (`needs`, e.g. [`FOR_OPENSSH`]). `deadline` as
/// [`open_authenticators_until`]'s, `None` for none.
pub fn open_authenticators_for(
    uri: &DeviceUri,
    touch_timeout: Duration,
    deadline: Option<Instant>,
    needs: &'static str,
) -> Result<Vec<Authenticator>, CtapError> {
    open(uri, touch_timeout, deadline).map_err(|e| match e {
        CtapError::DeviceIncompatible(Incompatibility::U2fOnly { .. }) => {
            CtapError::DeviceIncompatible(Incompatibility::U2fOnly { needs })
        }
        other => other,
    })
}

/// The FIDO2 keys of [`open_keys`]. With only U2F-only keys attached, the error says so
/// ([`Incompatibility::U2fOnly`]): what the caller wants needs CTAP2.
fn open(
    uri: &DeviceUri,
    touch_timeout: Duration,
    deadline: Option<Instant>,
) -> Result<Vec<Authenticator>, CtapError> {
    let keys = open_keys(uri, touch_timeout, deadline)?;
    let mut u2f_only = false;
    let fido2: Vec<Authenticator> = keys
        .into_iter()
        .filter_map(|k| match k {
            OpenedKey::Fido2(a) => Some(*a),
            OpenedKey::U2f(_) => {
                u2f_only = true;
                None
            }
        })
        .collect();
    if fido2.is_empty() && u2f_only {
        return Err(CtapError::DeviceIncompatible(Incompatibility::U2fOnly {
            needs: "this command",
        }));
    }
    Ok(fido2)
}

type Transports = Vec<Result<Box<dyn Transport>, TransportError>>;

/// The transports a URI names: one for `hidraw:`/`unix:`, each attached FIDO key for `auto`.
fn transports(uri: &DeviceUri) -> Result<Transports, CtapError> {
    Ok(match uri {
        DeviceUri::Auto => {
            let found = device::enumerate().map_err(|e| CtapError::Hid(e.into()))?;
            if found.is_empty() {
                return Err(CtapError::Hid(TransportError::NoDevice.into()));
            }
            found
                .iter()
                .map(|d| {
                    device::HidrawTransport::open(&d.path)
                        .map(|t| Box::new(t) as Box<dyn Transport>)
                })
                .collect()
        }
        DeviceUri::UnixList(_) => uri.each().iter().map(device::open).collect(),
        other => vec![device::open(other)],
    })
}

/// How the library talks to the person at the keyboard. The PAM module implements it with the
/// PAM conversation, `ctap-enroll` with the terminal, the agent with askpass.
pub trait Prompter {
    /// Tell the user to touch the key. Called once before each operation that needs a touch.
    fn touch_cue(&mut self, message: &str);
    /// Ask for the key's PIN; `None` means the user gave none (cancelled).
    fn request_pin(&mut self, prompt: &str) -> Option<Pin>;
    /// An informational message ("wrong PIN, 7 tries left").
    fn info(&mut self, message: &str);
    /// Whether the time the user spends in [`Prompter::request_pin`] is theirs, not the key's:
    /// `true` moves the key's deadline on by as much (the agent, whose askpass has its own
    /// timeout); `false` counts it in the deadline (a login: one deadline bounds it all).
    fn pin_time_is_the_users(&self) -> bool {
        false
    }
    /// Polled while waiting for the key; `true` sends CANCEL.
    fn cancelled(&mut self) -> bool {
        false
    }
}

/// A keepalive handler that asks the prompter whether to go on.
pub fn keepalive_for<'a>(
    p: &'a mut dyn Prompter,
) -> impl FnMut(KeepaliveStatus) -> WaitDecision + 'a {
    move |_| {
        if p.cancelled() {
            WaitDecision::Cancel
        } else {
            WaitDecision::Continue
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::transport::ctaphid::cmd;
    use crate::transport::device::mock::{device, frames};

    const CID: u32 = 0x0102_0304;

    /// A key that announces CBOR, answers CTAPHID_CBOR with `cbor_answer`, and speaks U2F.
    fn key(cbor_answer: fn() -> Vec<crate::transport::device::Report>) -> Box<dyn Transport> {
        Box::new(device(CID, move |command, _| match command {
            cmd::CBOR => cbor_answer(),
            cmd::MSG => frames(CID, cmd::MSG, b"U2F_V2\x90\x00"),
            _ => frames(CID, cmd::ERROR, &[0x01]),
        }))
    }

    #[test]
    fn a_key_that_refuses_get_info_is_spoken_to_in_u2f() {
        let refused = key(|| frames(CID, cmd::ERROR, &[0x01]));
        assert!(matches!(open_one(refused, None), Ok(OpenedKey::U2f(_))));
        let ctap_refused = key(|| frames(CID, cmd::CBOR, &[0x01]));
        assert!(matches!(
            open_one(ctap_refused, None),
            Ok(OpenedKey::U2f(_))
        ));
    }

    /// A broken getInfo is the key's error: breaking CTAP2 does not buy another protocol.
    #[test]
    fn a_key_whose_get_info_is_malformed_stays_an_error() {
        let malformed = key(|| frames(CID, cmd::CBOR, &[0x00, 0xA1, 0xFF, 0x01]));
        assert!(matches!(
            open_one(malformed, None),
            Err(CtapError::Misbehaved(_))
        ));
    }
}
