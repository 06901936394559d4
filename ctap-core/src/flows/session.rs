//! Opening authenticators by URI, and the user-interaction seam.

use std::time::{Duration, Instant};

use crate::transport::ctap2::pin::Pin;
use crate::transport::ctap2::{Ctap2, CtapError};
use crate::transport::ctaphid::{CtapHidChannel, KeepaliveStatus, WaitDecision};
use crate::transport::device::{self, DeviceUri, Transport, TransportError};

/// An authenticator on any transport.
pub type Authenticator = Ctap2<Box<dyn Transport>>;

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

fn open(
    uri: &DeviceUri,
    touch_timeout: Duration,
    deadline: Option<Instant>,
) -> Result<Vec<Authenticator>, CtapError> {
    let transports: Vec<Result<Box<dyn Transport>, TransportError>> = match uri {
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
    };
    let open_one = |t: Result<Box<dyn Transport>, TransportError>| {
        t.map_err(|e| CtapError::Hid(e.into()))
            .and_then(|t| Ok(CtapHidChannel::open_until(t, deadline)?))
            .and_then(Ctap2::new)
    };
    // Several keys are opened at once (INIT, getInfo), a thread each: a key that hangs costs
    // its own deadline, never the others' time.
    let results: Vec<Result<Authenticator, CtapError>> = if transports.len() <= 1 {
        transports.into_iter().map(open_one).collect()
    } else {
        std::thread::scope(|scope| {
            let handles: Vec<_> = transports
                .into_iter()
                .map(|t| scope.spawn(move || open_one(t)))
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
            Ok(mut a) => {
                a.set_touch_timeout(touch_timeout);
                opened.push(a);
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
