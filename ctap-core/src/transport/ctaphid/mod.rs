//! CTAPHID: messages over 64-byte HID reports (CTAP 2.1 section 11.2).
//!
//! A [`CtapHidChannel`] owns a transport and one channel id allocated by INIT. [`CtapHidChannel::call`]
//! sends one request (fragmented into an initialization packet and continuation packets) and
//! reassembles the response, surfacing KEEPALIVE packets to the caller as [`KeepaliveStatus`]
//! events so a UI can say "touch your key". Packets for other channels are ignored (hidraw delivers
//! every input report to every opener). Every framing violation is an error, never a panic.

mod error;

use std::time::{Duration, Instant};

pub use error::{CtapHidError, FramingViolation, HidErrorCode};

use crate::transport::device::{Report, Transport, TransportError, REPORT_SIZE};

/// CTAPHID command bytes (without the 0x80 initialization-packet bit).
pub mod cmd {
    pub const PING: u8 = 0x01;
    pub const MSG: u8 = 0x03;
    pub const INIT: u8 = 0x06;
    pub const WINK: u8 = 0x08;
    pub const CBOR: u8 = 0x10;
    pub const CANCEL: u8 = 0x11;
    pub const KEEPALIVE: u8 = 0x3B;
    pub const ERROR: u8 = 0x3F;
}

pub const BROADCAST_CID: u32 = 0xFFFF_FFFF;
/// How long the next request waits for the late answer to a cancelled one.
const ABANDONED_ANSWER_WAIT: Duration = Duration::from_millis(300);
/// Payload bytes in an initialization packet (after CID, CMD, BCNT).
pub const INIT_DATA: usize = REPORT_SIZE - 7;
/// Payload bytes in a continuation packet (after CID, SEQ).
pub const CONT_DATA: usize = REPORT_SIZE - 5;
/// The most a message can carry: one initialization packet and 128 continuation packets.
pub const MAX_MESSAGE: usize = INIT_DATA + 128 * CONT_DATA;
/// Capability bit: the device implements CTAPHID_CBOR.
pub const CAPABILITY_CBOR: u8 = 0x04;
pub const CAPABILITY_WINK: u8 = 0x01;
/// Capability bit: the device does not implement CTAPHID_MSG (no CTAP1/U2F).
pub const CAPABILITY_NMSG: u8 = 0x08;

/// How long to wait for any packet (response or keepalive) before giving up. Devices send
/// keepalives every 100 ms while busy, so silence this long means the device is gone.
const PACKET_TIMEOUT: Duration = Duration::from_secs(3);
/// The longest one report may take to write (the key or socket peer is not reading).
const WRITE_TIMEOUT: Duration = Duration::from_secs(5);
/// CANCEL is sent after we gave up, often after the deadline: best effort, but bounded.
const CANCEL_WRITE_TIMEOUT: Duration = Duration::from_millis(250);
/// Pause between retries of a request the key answered CHANNEL_BUSY.
const BUSY_RETRY: Duration = Duration::from_millis(100);

/// Why the device asks us to keep waiting.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeepaliveStatus {
    Processing,
    /// The device waits for a touch: this is when to show "Touch your security key".
    UpNeeded,
    Unknown(u8),
    /// Not from the device: nothing arrived for [`QUIET_SLICE`]. The handler is asked anyway,
    /// so a cancel (another key won, Ctrl-C) reaches a key that sends no keepalives at once.
    Quiet,
}

/// How long a wait for the device's answer sleeps before asking the keepalive handler again
/// when the device is silent ([`KeepaliveStatus::Quiet`]).
pub const QUIET_SLICE: Duration = Duration::from_millis(50);

/// What the caller wants after a keepalive.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WaitDecision {
    Continue,
    Cancel,
}

/// What INIT told us about the device.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DeviceVersion {
    pub protocol: u8,
    pub major: u8,
    pub minor: u8,
    pub build: u8,
    pub capabilities: u8,
}

/// An open CTAPHID channel to one device.
pub struct CtapHidChannel<T: Transport> {
    transport: T,
    cid: u32,
    version: DeviceVersion,
    max_msg_size: usize,
    /// The end of the whole operation (a login, a signature): no request outlives it.
    deadline: Option<Instant>,
    /// The command of a request this channel gave up on and cancelled. The key still owes it an
    /// answer (CTAP2_ERR_KEEPALIVE_CANCEL, or the result if it was about to finish), which must
    /// not be taken for the answer to the next request: [`Self::call`] reads it away first.
    abandoned: Option<u8>,
}

impl<T: Transport> CtapHidChannel<T> {
    /// Allocate a channel with CTAPHID_INIT on the broadcast channel. Refuses devices without
    /// CBOR capability ([`CtapHidError::NotCtap2`]): a U2F-only key is `transport::ctap1`'s.
    pub fn open(transport: T) -> Result<Self, CtapHidError> {
        Self::open_until(transport, None)
    }

    /// [`Self::open`], giving up at `deadline` when that comes before INIT's own limit; the
    /// channel keeps the deadline for every later request (see [`Self::set_deadline`]).
    pub(crate) fn open_until(
        transport: T,
        deadline: Option<Instant>,
    ) -> Result<Self, CtapHidError> {
        let channel = Self::open_any_until(transport, deadline)?;
        if channel.version.capabilities & CAPABILITY_CBOR == 0 {
            return Err(CtapHidError::NotCtap2);
        }
        Ok(channel)
    }

    /// [`Self::open_until`] without requiring the CBOR capability: for CTAP1/U2F keys
    /// (`transport::ctap1`), which check the capabilities they need themselves.
    pub(crate) fn open_any_until(
        mut transport: T,
        deadline: Option<Instant>,
    ) -> Result<Self, CtapHidError> {
        let nonce: [u8; 8] = rand::random();
        let overall = deadline;
        let deadline = earliest(Instant::now() + PACKET_TIMEOUT, overall);
        if Instant::now() >= deadline {
            return Err(CtapHidError::Timeout);
        }
        write_message(&mut transport, BROADCAST_CID, cmd::INIT, &nonce, deadline)?;
        let mut saw_foreign_nonce = false;
        let resp = loop {
            let remaining = deadline.saturating_duration_since(Instant::now());
            if remaining.is_zero() {
                return Err(if saw_foreign_nonce {
                    CtapHidError::Misbehaved(FramingViolation::InitNonceMismatch)
                } else {
                    CtapHidError::Timeout
                });
            }
            let resp = match read_message(
                &mut transport,
                BROADCAST_CID,
                cmd::INIT,
                MAX_MESSAGE,
                deadline,
                &mut |_| WaitDecision::Continue,
            ) {
                Ok(resp) => resp,
                Err(CtapHidError::Timeout | CtapHidError::Transport(TransportError::Timeout))
                    if saw_foreign_nonce =>
                {
                    return Err(CtapHidError::Misbehaved(
                        FramingViolation::InitNonceMismatch,
                    ))
                }
                Err(CtapHidError::Transport(
                    TransportError::Timeout | TransportError::ShortReport { .. },
                )) if Instant::now() >= deadline => return Err(CtapHidError::Timeout),
                Err(CtapHidError::Transport(TransportError::Timeout)) => {
                    return Err(CtapHidError::Timeout)
                }
                Err(e) => return Err(e),
            };
            if resp.len() < 17 {
                return Err(CtapHidError::Misbehaved(
                    FramingViolation::ShortInitResponse,
                ));
            }
            if resp[..8] == nonce {
                break resp;
            }
            // Another client's INIT answer on a shared hidraw node: not ours.
            saw_foreign_nonce = true;
        };
        let cid = u32::from_be_bytes([resp[8], resp[9], resp[10], resp[11]]);
        if cid == BROADCAST_CID || cid == 0 {
            return Err(CtapHidError::Misbehaved(
                FramingViolation::BadChannelAllocated(cid),
            ));
        }
        let version = DeviceVersion {
            protocol: resp[12],
            major: resp[13],
            minor: resp[14],
            build: resp[15],
            capabilities: resp[16],
        };
        Ok(CtapHidChannel {
            transport,
            cid,
            version,
            // CTAP2's default until getInfo says otherwise.
            max_msg_size: 1024,
            deadline: overall,
            abandoned: None,
        })
    }

    pub fn version(&self) -> DeviceVersion {
        self.version
    }

    #[cfg(test)]
    pub(crate) fn channel_id(&self) -> u32 {
        self.cid
    }

    pub fn describe(&self) -> String {
        self.transport.describe()
    }

    /// Set the limit getInfo's maxMsgSize reports (clamped to what CTAPHID can carry).
    pub fn set_max_msg_size(&mut self, n: usize) {
        self.max_msg_size = n.clamp(1024, MAX_MESSAGE);
    }

    /// The largest request payload this channel sends (maxMsgSize, or CTAP2's 1024).
    pub(crate) fn max_msg_size(&self) -> usize {
        self.max_msg_size
    }

    /// Bound every later request by `deadline` as well as by its own timeout: a login or a
    /// signature ends by its deadline whatever the key does (slow answers, keepalives forever,
    /// BUSY forever, trickled or stalled messages). `None` leaves each request its own timeout.
    pub fn set_deadline(&mut self, deadline: Option<Instant>) {
        self.deadline = deadline;
    }

    pub fn deadline(&self) -> Option<Instant> {
        self.deadline
    }

    /// Send one request and return the response payload.
    ///
    /// `timeout` bounds the whole exchange including waiting for a touch, and so does the
    /// channel's deadline ([`Self::set_deadline`]) when it comes first. Whenever the call gives
    /// up on a request the key may still be working on (the time is up, `on_keepalive` answered
    /// [`WaitDecision::Cancel`], the response stalled or broke off mid-message), CTAPHID_CANCEL
    /// is sent before the call fails. A CHANNEL_BUSY answer (another program is using the key)
    /// is retried until the deadline.
    pub fn call(
        &mut self,
        command: u8,
        payload: &[u8],
        timeout: Duration,
        on_keepalive: &mut dyn FnMut(KeepaliveStatus) -> WaitDecision,
    ) -> Result<Vec<u8>, CtapHidError> {
        if payload.len() > self.max_msg_size {
            return Err(CtapHidError::RequestTooLong {
                len: payload.len(),
                max: self.max_msg_size,
            });
        }
        let deadline = earliest(Instant::now() + timeout, self.deadline);
        if let Some(abandoned) = self.abandoned.take() {
            self.read_abandoned_answer(abandoned, deadline);
        }
        loop {
            if Instant::now() >= deadline {
                // Nothing outstanding: the time ran out before (another) attempt.
                return Err(CtapHidError::Timeout);
            }
            write_message(&mut self.transport, self.cid, command, payload, deadline).map_err(
                |e| match e {
                    CtapHidError::Transport(TransportError::Timeout)
                        if Instant::now() >= deadline =>
                    {
                        CtapHidError::Timeout
                    }
                    other => other,
                },
            )?;
            match read_message(
                &mut self.transport,
                self.cid,
                command,
                self.max_msg_size,
                deadline,
                on_keepalive,
            ) {
                Err(CtapHidError::Device(HidErrorCode::ChannelBusy))
                    if Instant::now() < deadline =>
                {
                    let left = deadline.saturating_duration_since(Instant::now());
                    std::thread::sleep(BUSY_RETRY.min(left));
                }
                Err(e) => {
                    if may_still_be_processing(&e) {
                        // Best effort: the device may be gone, and the error we return matters
                        // more.
                        let _ = self.cancel();
                        self.abandoned = Some(command);
                    }
                    return Err(e);
                }
                ok => return ok,
            }
        }
    }

    /// Read away the late answer to a cancelled `command`, waiting at most
    /// [`ABANDONED_ANSWER_WAIT`] (a key that never answers a cancelled request costs that once).
    /// Whatever arrives, or nothing, the next request starts clean.
    fn read_abandoned_answer(&mut self, command: u8, deadline: Instant) {
        let until = earliest(Instant::now() + ABANDONED_ANSWER_WAIT, Some(deadline));
        let _ = read_message(
            &mut self.transport,
            self.cid,
            command,
            self.max_msg_size,
            until,
            &mut |_| WaitDecision::Continue,
        );
    }

    /// Ask the device to abort the pending request on this channel. CANCEL has no response.
    pub fn cancel(&mut self) -> Result<(), CtapHidError> {
        let deadline = Instant::now() + CANCEL_WRITE_TIMEOUT;
        write_message(&mut self.transport, self.cid, cmd::CANCEL, &[], deadline)
    }

    /// CTAPHID_PING: the device must echo the payload.
    pub fn ping(&mut self, payload: &[u8]) -> Result<(), CtapHidError> {
        let echo = self.call(cmd::PING, payload, PACKET_TIMEOUT, &mut |_| {
            WaitDecision::Continue
        })?;
        if echo != payload {
            return Err(CtapHidError::Misbehaved(FramingViolation::EchoMismatch));
        }
        Ok(())
    }

    /// CTAPHID_WINK: make the key blink, to tell several keys apart.
    pub fn wink(&mut self) -> Result<(), CtapHidError> {
        self.call(cmd::WINK, &[], PACKET_TIMEOUT, &mut |_| {
            WaitDecision::Continue
        })?;
        Ok(())
    }
}

/// The earlier of a request's own limit and the operation's deadline.
fn earliest(limit: Instant, deadline: Option<Instant>) -> Instant {
    deadline.map_or(limit, |d| d.min(limit))
}

/// Whether the key may still be working on a request the call gave up on with `e`, so that it
/// deserves a CANCEL. Not when the key answered (a CTAPHID ERROR ends the request) or is gone.
fn may_still_be_processing(e: &CtapHidError) -> bool {
    !matches!(
        e,
        CtapHidError::Device(_)
            | CtapHidError::Transport(
                TransportError::Disconnected
                    | TransportError::NoDevice
                    | TransportError::Open { .. }
            )
    )
}

/// How long the next write may take: a report's own limit, or what is left before `deadline`.
fn write_timeout(deadline: Instant) -> Result<Duration, CtapHidError> {
    let left = deadline.saturating_duration_since(Instant::now());
    if left.is_zero() {
        return Err(CtapHidError::Transport(TransportError::Timeout));
    }
    Ok(left.min(WRITE_TIMEOUT))
}

/// Split a message into an initialization packet and continuation packets, all written before
/// `deadline`.
pub fn write_message<T: Transport + ?Sized>(
    transport: &mut T,
    cid: u32,
    command: u8,
    payload: &[u8],
    deadline: Instant,
) -> Result<(), CtapHidError> {
    let len = u16::try_from(payload.len())
        .ok()
        .filter(|&l| usize::from(l) <= MAX_MESSAGE)
        .ok_or(CtapHidError::RequestTooLong {
            len: payload.len(),
            max: MAX_MESSAGE,
        })?;
    let mut reports: Vec<Report> = Vec::with_capacity(1 + payload.len() / CONT_DATA);
    let mut report: Report = [0; REPORT_SIZE];
    report[..4].copy_from_slice(&cid.to_be_bytes());
    report[4] = 0x80 | command;
    report[5..7].copy_from_slice(&len.to_be_bytes());
    let first = payload.len().min(INIT_DATA);
    report[7..7 + first].copy_from_slice(&payload[..first]);
    reports.push(report);
    for (seq, chunk) in payload[first..].chunks(CONT_DATA).enumerate() {
        let mut report: Report = [0; REPORT_SIZE];
        report[..4].copy_from_slice(&cid.to_be_bytes());
        // At most 128 chunks fit in MAX_MESSAGE, so seq stays within 0..=127.
        report[4] = u8::try_from(seq).map_err(|_| CtapHidError::RequestTooLong {
            len: payload.len(),
            max: MAX_MESSAGE,
        })?;
        report[5..5 + chunk.len()].copy_from_slice(chunk);
        reports.push(report);
    }
    // One write for the whole message where the transport can (a stream socket); a HID
    // device takes them one by one. Bounded by the message's deadline.
    transport.write_reports(&reports, write_timeout(deadline)?)?;
    Ok(())
}

/// Read reports until a whole response for `cid` has arrived.
pub fn read_message<T: Transport + ?Sized>(
    transport: &mut T,
    cid: u32,
    command: u8,
    max_len: usize,
    deadline: Instant,
    on_keepalive: &mut dyn FnMut(KeepaliveStatus) -> WaitDecision,
) -> Result<Vec<u8>, CtapHidError> {
    let mut reassembler: Option<Reassembler> = None;
    // Silence this long (no report at all) means the device is gone.
    let mut last_report = Instant::now();
    loop {
        let remaining = deadline.saturating_duration_since(Instant::now());
        if remaining.is_zero() {
            return Err(CtapHidError::Timeout);
        }
        // Between messages the wait is sliced, so the handler can cancel a silent key; inside
        // a message, the report's own bound applies.
        if reassembler.is_none() && !transport.wait_readable(remaining.min(QUIET_SLICE))? {
            if Instant::now() >= deadline {
                return Err(CtapHidError::Timeout);
            }
            if last_report.elapsed() >= PACKET_TIMEOUT {
                return Err(CtapHidError::Transport(TransportError::Timeout));
            }
            if on_keepalive(KeepaliveStatus::Quiet) == WaitDecision::Cancel {
                return Err(CtapHidError::Cancelled);
            }
            continue;
        }
        let report = transport
            .read_report(remaining.min(PACKET_TIMEOUT))
            .map_err(|e| match e {
                // The deadline passed with nothing, or part of a report, received.
                TransportError::Timeout | TransportError::ShortReport { .. }
                    if Instant::now() >= deadline =>
                {
                    CtapHidError::Timeout
                }
                other => CtapHidError::Transport(other),
            })?;
        last_report = Instant::now();
        if report[..4] != cid.to_be_bytes() {
            continue;
        }
        match reassembler.as_mut() {
            None => {
                if report[4] & 0x80 == 0 {
                    return Err(CtapHidError::Misbehaved(FramingViolation::UnexpectedPacket));
                }
                let got = report[4] & 0x7F;
                match got {
                    cmd::KEEPALIVE => {
                        let status = match report[7] {
                            1 => KeepaliveStatus::Processing,
                            2 => KeepaliveStatus::UpNeeded,
                            other => KeepaliveStatus::Unknown(other),
                        };
                        if on_keepalive(status) == WaitDecision::Cancel {
                            return Err(CtapHidError::Cancelled);
                        }
                        continue;
                    }
                    cmd::ERROR => {
                        return Err(CtapHidError::Device(HidErrorCode::from_u8(report[7])))
                    }
                    c if c != command => {
                        return Err(CtapHidError::Misbehaved(
                            FramingViolation::UnexpectedCommand {
                                sent: command,
                                got: c,
                            },
                        ))
                    }
                    _ => {}
                }
                let r = Reassembler::start(&report, max_len)?;
                if r.is_complete() {
                    return Ok(r.finish());
                }
                reassembler = Some(r);
            }
            Some(r) => {
                r.push(&report)?;
                if r.is_complete() {
                    return Ok(reassembler
                        .take()
                        .map(Reassembler::finish)
                        .unwrap_or_default());
                }
            }
        }
    }
}

/// Collects one message from an initialization packet and its continuation packets.
pub(crate) struct Reassembler {
    expected: usize,
    next_seq: u8,
    data: Vec<u8>,
}

impl Reassembler {
    /// Begin with an initialization packet (the caller has checked the channel and command).
    pub fn start(report: &Report, max_len: usize) -> Result<Self, CtapHidError> {
        let expected = usize::from(u16::from_be_bytes([report[5], report[6]]));
        if expected > max_len.min(MAX_MESSAGE) {
            return Err(CtapHidError::Misbehaved(FramingViolation::MessageTooLong {
                announced: expected,
                max: max_len.min(MAX_MESSAGE),
            }));
        }
        let mut data = Vec::with_capacity(expected);
        data.extend_from_slice(&report[7..7 + expected.min(INIT_DATA)]);
        Ok(Reassembler {
            expected,
            next_seq: 0,
            data,
        })
    }

    /// Add a continuation packet.
    pub fn push(&mut self, report: &Report) -> Result<(), CtapHidError> {
        let seq = report[4];
        if seq & 0x80 != 0 {
            return Err(CtapHidError::Misbehaved(FramingViolation::UnexpectedPacket));
        }
        if seq != self.next_seq {
            return Err(CtapHidError::Misbehaved(
                FramingViolation::OutOfOrderSequence {
                    expected: self.next_seq,
                    got: seq,
                },
            ));
        }
        self.next_seq = self.next_seq.wrapping_add(1);
        let take = (self.expected - self.data.len()).min(CONT_DATA);
        self.data.extend_from_slice(&report[5..5 + take]);
        Ok(())
    }

    pub fn is_complete(&self) -> bool {
        self.data.len() >= self.expected
    }

    pub fn finish(self) -> Vec<u8> {
        self.data
    }
}

#[cfg(test)]
mod tests;

#[cfg(test)]
mod deadline_tests;
