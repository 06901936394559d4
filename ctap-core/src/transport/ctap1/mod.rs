//! CTAP1/U2F: register and authenticate with keys that speak only U2F (older YubiKeys, early
//! Feitian and HyperFIDO keys, keys whose FIDO2 applet is off), over the same CTAPHID channel,
//! deadline and CANCEL as CTAP2 (docs/ARCHITECTURE.md §2).
//!
//! Requests are ISO 7816-4 command APDUs in CTAPHID_MSG ([`apdu`]: extended length as U2F over
//! HID specifies, short length for keys that refuse it); every answer ends in a typed
//! [`StatusWord`]. A key that needs a touch answers [`StatusWord::ConditionsNotSatisfied`] at
//! once instead of waiting: [`Ctap1::register`] and [`Ctap1::authenticate`] then show the cue
//! (the keepalive handler gets [`KeepaliveStatus::UpNeeded`], as from a CTAP2 key) and ask
//! again until the touch, the channel's deadline or the handler's cancel. The check-only control
//! byte (0x07) is the silent probe ([`Ctap1::check_only`]): it never needs or uses a touch.
//!
//! Responses are parsed strictly ([`response`]); a registration is checked against its
//! attestation certificate's key by [`verify_registration`]; the bytes an authentication signs
//! are [`authentication_signed_bytes`], for the one verifier.

pub mod apdu;
mod error;
pub mod response;
mod status;

#[cfg(test)]
mod tests;

use std::time::{Duration, Instant};

pub use apdu::ApduForm;
pub use error::{Ctap1Error, RegistrationProblem, U2fProblem};
pub use response::{
    authentication_signed_bytes, verify_registration, AuthenticateResponse, RegisterResponse,
    VerifiedRegistration,
};
pub use status::StatusWord;

use crate::transport::ctaphid::{
    cmd, CtapHidChannel, CtapHidError, KeepaliveStatus, WaitDecision, MAX_MESSAGE,
};
use crate::transport::device::Transport;

/// CTAPHID INIT capability bit: the device does not implement CTAPHID_MSG (one definition,
/// with the other capability bits).
pub use crate::transport::ctaphid::CAPABILITY_NMSG;
/// What U2F_VERSION answers on every key we speak to.
pub const U2F_V2: &[u8] = b"U2F_V2";
/// U2F_REGISTER P1: enforce user presence (U2F raw message formats v1.2 §4.1).
const P1_REGISTER: u8 = 0x03;
/// U2F_AUTHENTICATE control bytes (§5.1).
const P1_CHECK_ONLY: u8 = 0x07;
const P1_ENFORCE_USER_PRESENCE: u8 = 0x03;

/// One U2F request's own limit, when the channel has no deadline of its own. A key answers a
/// U2F request at once (it never waits for the touch), so this is generous.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(3);
/// How long the touch may take when the channel has no deadline: CTAP2's usual 30 s.
const TOUCH_TIMEOUT: Duration = Duration::from_secs(30);
/// Pause between two asks while the key waits for a touch (libfido2 and python-fido2 use 100
/// and 250 ms).
const TOUCH_POLL: Duration = Duration::from_millis(100);

/// A U2F session on one CTAPHID channel.
pub struct Ctap1<T: Transport> {
    channel: CtapHidChannel<T>,
    form: ApduForm,
}

impl<T: Transport> Ctap1<T> {
    /// Allocate a channel and check that the device speaks U2F_V2. `deadline` bounds this and
    /// every later request, as [`CtapHidChannel::set_deadline`] does.
    pub fn open_until(transport: T, deadline: Option<Instant>) -> Result<Self, Ctap1Error> {
        let channel = CtapHidChannel::open_any_until(transport, deadline)?;
        Self::from_channel(channel)
    }

    /// Speak U2F on a channel already open (a CTAP2 key whose getInfo was refused, say):
    /// the device must offer CTAPHID_MSG and answer U2F_VERSION with "U2F_V2". The version is
    /// asked in extended length first, then in short length for keys that refuse that.
    pub fn from_channel(mut channel: CtapHidChannel<T>) -> Result<Self, Ctap1Error> {
        if channel.version().capabilities & CAPABILITY_NMSG != 0 {
            return Err(Ctap1Error::NotU2f);
        }
        // U2F answers are not bounded by CTAP2's maxMsgSize: a registration carries a
        // certificate. Allow what CTAPHID can carry.
        channel.set_max_msg_size(MAX_MESSAGE);
        let mut ctap1 = Ctap1 {
            channel,
            form: ApduForm::Extended,
        };
        let version = match ctap1.version() {
            Err(Ctap1Error::Status(StatusWord::WrongLength)) => {
                ctap1.form = ApduForm::Short;
                ctap1.version()?
            }
            other => other?,
        };
        if version != U2F_V2 {
            return Err(Ctap1Error::UnsupportedVersion(version));
        }
        Ok(ctap1)
    }

    /// The channel underneath (for its deadline, description and version).
    pub fn channel(&mut self) -> &mut CtapHidChannel<T> {
        &mut self.channel
    }

    /// How this key gets its APDUs: extended length, or short for keys that refuse extended.
    pub fn form(&self) -> ApduForm {
        self.form
    }

    /// U2F_VERSION: the protocol version string (the status word taken off).
    pub fn version(&mut self) -> Result<Vec<u8>, Ctap1Error> {
        let (data, sw) =
            self.exchange(apdu::INS_VERSION, 0, &[], &mut |_| WaitDecision::Continue)?;
        match sw {
            StatusWord::NoError => Ok(data),
            other => Err(Ctap1Error::Status(other)),
        }
    }

    /// U2F_REGISTER for `app_id_hash` (SHA-256 of the appId) and `challenge_hash`, with a
    /// touch. The response is parsed, not verified: see [`verify_registration`].
    pub fn register(
        &mut self,
        app_id_hash: &[u8; 32],
        challenge_hash: &[u8; 32],
        on_keepalive: &mut dyn FnMut(KeepaliveStatus) -> WaitDecision,
    ) -> Result<RegisterResponse, Ctap1Error> {
        let data = [&challenge_hash[..], app_id_hash].concat();
        let answer = self.until_touched(apdu::INS_REGISTER, P1_REGISTER, &data, on_keepalive)?;
        RegisterResponse::parse(&answer)
    }

    /// U2F_AUTHENTICATE with a touch (control byte 0x03). The response is parsed; its
    /// signature (over [`authentication_signed_bytes`]) is the verifier's to check.
    /// [`StatusWord::WrongData`]: the key does not hold this key handle for this appId.
    pub fn authenticate(
        &mut self,
        app_id_hash: &[u8; 32],
        challenge_hash: &[u8; 32],
        key_handle: &[u8],
        on_keepalive: &mut dyn FnMut(KeepaliveStatus) -> WaitDecision,
    ) -> Result<AuthenticateResponse, Ctap1Error> {
        let data = authenticate_data(app_id_hash, challenge_hash, key_handle)?;
        let answer = self.until_touched(
            apdu::INS_AUTHENTICATE,
            P1_ENFORCE_USER_PRESENCE,
            &data,
            on_keepalive,
        )?;
        AuthenticateResponse::parse(&answer)
    }

    /// The silent probe: does this key hold `key_handle` for `app_id_hash`? U2F_AUTHENTICATE
    /// with the check-only control byte (0x07), asked once, no touch: 0x6985 means yes, 0x6A80
    /// means no; anything else is an error.
    pub fn check_only(
        &mut self,
        app_id_hash: &[u8; 32],
        key_handle: &[u8],
    ) -> Result<bool, Ctap1Error> {
        // The challenge is not signed by a check-only request; any 32 bytes do.
        let data = authenticate_data(app_id_hash, &[0; 32], key_handle)?;
        let (_, sw) = self.exchange(apdu::INS_AUTHENTICATE, P1_CHECK_ONLY, &data, &mut |_| {
            WaitDecision::Continue
        })?;
        match sw {
            StatusWord::ConditionsNotSatisfied => Ok(true),
            StatusWord::WrongData => Ok(false),
            StatusWord::NoError => Err(U2fProblem::CheckOnlySucceeded.into()),
            other => Err(Ctap1Error::Status(other)),
        }
    }

    /// Ask until the key stops answering "touch needed": each such answer is passed to
    /// `on_keepalive` as [`KeepaliveStatus::UpNeeded`] (the cue), which may cancel. Ends at
    /// the channel's deadline (or [`TOUCH_TIMEOUT`] without one) with
    /// [`CtapHidError::Timeout`]; a cancel between two asks is [`CtapHidError::Cancelled`]
    /// (nothing is outstanding then, so no CTAPHID_CANCEL is needed; one during an ask is sent
    /// by the channel, as for CTAP2).
    fn until_touched(
        &mut self,
        ins: u8,
        p1: u8,
        data: &[u8],
        on_keepalive: &mut dyn FnMut(KeepaliveStatus) -> WaitDecision,
    ) -> Result<Vec<u8>, Ctap1Error> {
        let deadline = self
            .channel
            .deadline()
            .unwrap_or_else(|| Instant::now() + TOUCH_TIMEOUT);
        loop {
            let (answer, sw) = self.exchange_until(ins, p1, data, deadline, on_keepalive)?;
            match sw {
                StatusWord::NoError => return Ok(answer),
                StatusWord::ConditionsNotSatisfied => {
                    if on_keepalive(KeepaliveStatus::UpNeeded) == WaitDecision::Cancel {
                        return Err(CtapHidError::Cancelled.into());
                    }
                    let left = deadline.saturating_duration_since(Instant::now());
                    if left.is_zero() {
                        return Err(CtapHidError::Timeout.into());
                    }
                    std::thread::sleep(TOUCH_POLL.min(left));
                }
                other => return Err(Ctap1Error::Status(other)),
            }
        }
    }

    /// One request, bounded by [`REQUEST_TIMEOUT`] and the channel's deadline.
    fn exchange(
        &mut self,
        ins: u8,
        p1: u8,
        data: &[u8],
        on_keepalive: &mut dyn FnMut(KeepaliveStatus) -> WaitDecision,
    ) -> Result<(Vec<u8>, StatusWord), Ctap1Error> {
        let deadline = Instant::now() + REQUEST_TIMEOUT;
        self.exchange_until(ins, p1, data, deadline, on_keepalive)
    }

    /// One request, answered by `deadline` (and the channel's own): the data and status word.
    fn exchange_until(
        &mut self,
        ins: u8,
        p1: u8,
        data: &[u8],
        deadline: Instant,
        on_keepalive: &mut dyn FnMut(KeepaliveStatus) -> WaitDecision,
    ) -> Result<(Vec<u8>, StatusWord), Ctap1Error> {
        let request = apdu::encode(self.form, ins, p1, data)?;
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(CtapHidError::Timeout.into());
        }
        let response =
            self.channel
                .call(cmd::MSG, &request, left.min(REQUEST_TIMEOUT), on_keepalive)?;
        let (data, sw) = apdu::split(&response)?;
        Ok((data.to_vec(), sw))
    }
}

/// U2F_AUTHENTICATE's data: challenge hash, appId hash, key handle length, key handle.
fn authenticate_data(
    app_id_hash: &[u8; 32],
    challenge_hash: &[u8; 32],
    key_handle: &[u8],
) -> Result<Vec<u8>, Ctap1Error> {
    let len = u8::try_from(key_handle.len()).map_err(|_| Ctap1Error::RequestTooLong {
        len: key_handle.len(),
    })?;
    Ok([&challenge_hash[..], app_id_hash, &[len], key_handle].concat())
}
