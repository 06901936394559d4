//! Client connections: the 64-byte-report socket protocol (SOCK_STREAM, one HID report per 64
//! bytes, no other framing) on a unix socket or on stdin/stdout. Each connection is one client
//! with its own CTAPHID channels ([`Frontend`]) and mediation state ([`Session`]); requests go
//! to the key one at a time, under the backend's mutex.
//!
//! While a request waits (for the key, or for another client's request to finish) the client
//! gets KEEPALIVE packets, the key's status passed through; a CANCEL from the client, an INIT
//! on its channel or its disconnection cancels the key's request (CTAPHID_CANCEL).

use std::io::{self, Read, Write};
use std::os::fd::AsFd;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, TryLockError};
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};

use ctap_core::transport::ctaphid::{CtapHidError, HidErrorCode, KeepaliveStatus, WaitDecision};

use crate::audit::{Audit, Entry};
use crate::backend::Backend;
use crate::hid::{
    self, cmd, Event, Frontend, Report, ERR_CHANNEL_BUSY, ERR_INVALID_CMD, ERR_OTHER,
    KEEPALIVE_PROCESSING, KEEPALIVE_UPNEEDED, REPORT_SIZE,
};
use crate::mediate::{self, status, Expect, Session};
use crate::policy::{ClientPolicy, Command};
use crate::u2f;

/// Requests that may wait for a touch: the key's own user-action timeout comes first.
const TOUCH_TIMEOUT: Duration = Duration::from_secs(120);
const QUICK_TIMEOUT: Duration = Duration::from_secs(15);
/// KEEPALIVE to a client waiting for another client's request.
const KEEPALIVE_INTERVAL: Duration = Duration::from_millis(100);
/// CTAP2_ERR_KEEPALIVE_CANCEL: the answer to a request the client cancelled.
const STATUS_KEEPALIVE_CANCEL: u8 = 0x2D;

/// What all connections share: the key and the audit.
pub struct Shared {
    pub backend: Mutex<Backend>,
    /// What INIT answers say about the key, as it was at start: taken without the key's mutex,
    /// so a client can open its channel while another waits for a touch.
    identity: crate::hid::Identity,
    pub audit: Audit,
    next_cid: AtomicU32,
}

impl Shared {
    pub fn new(backend: Backend, audit: Audit) -> Self {
        Shared {
            identity: backend.identity(),
            backend: Mutex::new(backend),
            audit,
            next_cid: AtomicU32::new(rand_start()),
        }
    }

    /// Channel ids are unique across every client of this proxy.
    fn allocate_cid(&self) -> u32 {
        loop {
            let cid = self.next_cid.fetch_add(1, Ordering::Relaxed);
            if cid != 0 && cid != hid::BROADCAST_CID {
                return cid;
            }
        }
    }

    fn lock(&self) -> MutexGuard<'_, Backend> {
        self.backend
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

fn rand_start() -> u32 {
    // Not a secret: channel ids only need to differ between clients.
    std::process::id().wrapping_mul(0x9E37_79B9) | 1
}

/// Who is on the other end.
#[derive(Debug, Clone)]
pub struct Client {
    pub policy: ClientPolicy,
    pub connection: u64,
    pub peer_uid: Option<u32>,
}

/// Why a forwarded request did not come back with an answer.
enum Stop {
    /// The client cancelled (CANCEL or INIT on the channel).
    Cancelled,
    /// The client went away or cannot be written to.
    Gone,
    /// The key failed: answer this CTAPHID error.
    Key(u8),
}

enum ReadOutcome {
    Report(Report),
    Partial,
    Eof,
}

pub struct Connection<R: Read + AsFd, W: Write> {
    input: R,
    output: W,
    buf: Report,
    filled: usize,
    frontend: Frontend,
    session: Session,
    client: Client,
    shared: Arc<Shared>,
}

impl<R: Read + AsFd, W: Write> Connection<R, W> {
    pub fn new(input: R, output: W, client: Client, shared: Arc<Shared>) -> Self {
        let mut identity = shared.identity;
        if !client.policy.allows(Command::U2f) {
            identity.capabilities |= hid::CAPABILITY_NMSG;
        }
        if !client.policy.allows(Command::Wink) {
            identity.capabilities &= !hid::CAPABILITY_WINK;
        }
        Connection {
            input,
            output,
            buf: [0; REPORT_SIZE],
            filled: 0,
            frontend: Frontend::new(identity),
            session: Session::default(),
            client,
            shared,
        }
    }

    /// Serve until the client disconnects or cannot be written to.
    pub fn run(mut self) {
        loop {
            let timeout = self
                .frontend
                .next_deadline()
                .map(|d| d.saturating_duration_since(Instant::now()));
            let readable = match wait_readable(&self.input, timeout) {
                Ok(r) => r,
                Err(e) => {
                    self.note(&format!("poll failed: {e}"));
                    return;
                }
            };
            if readable {
                match self.read() {
                    Ok(ReadOutcome::Report(report)) => {
                        let shared = Arc::clone(&self.shared);
                        let ev = self
                            .frontend
                            .on_report(&report, Instant::now(), &mut || shared.allocate_cid());
                        if self.handle(ev).is_err() {
                            return;
                        }
                    }
                    Ok(ReadOutcome::Partial) => {}
                    Ok(ReadOutcome::Eof) => return,
                    Err(e) => {
                        self.note(&format!("read failed: {e}"));
                        return;
                    }
                }
            }
            let ev = self.frontend.on_timer(Instant::now());
            if self.handle(ev).is_err() {
                return;
            }
        }
    }

    fn note(&self, message: &str) {
        self.shared.audit.note(&format!(
            "client {} conn {}: {message}",
            ctap_core::text::quoted(&self.client.policy.name),
            self.client.connection
        ));
    }

    /// One read from an input poll(2) found readable.
    fn read(&mut self) -> io::Result<ReadOutcome> {
        loop {
            match self.input.read(&mut self.buf[self.filled..]) {
                Ok(0) => {
                    if self.filled != 0 {
                        self.note("client closed the stream in the middle of a report");
                    }
                    return Ok(ReadOutcome::Eof);
                }
                Ok(n) => {
                    self.filled += n;
                    if self.filled < REPORT_SIZE {
                        return Ok(ReadOutcome::Partial);
                    }
                    self.filled = 0;
                    return Ok(ReadOutcome::Report(self.buf));
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(ReadOutcome::Partial),
                Err(e) => return Err(e),
            }
        }
    }

    fn write(&mut self, reports: &[Report]) -> io::Result<()> {
        self.output.write_all(reports.as_flattened())?;
        self.output.flush()
    }

    fn send(&mut self, cid: u32, command: u8, payload: &[u8]) -> io::Result<()> {
        self.write(&hid::fragment(cid, command, payload))
    }

    fn handle(&mut self, ev: Event) -> io::Result<()> {
        match ev {
            Event::Nothing | Event::Cancel { .. } => Ok(()),
            Event::Reply(reports) | Event::Resync { reply: reports, .. } => self.write(&reports),
            Event::Request {
                cid,
                command,
                payload,
            } => self.dispatch(cid, command, payload),
        }
    }

    fn audit(&self, command: &str, rp_id: Option<&str>, refused: Option<&str>, status: String) {
        self.shared.audit.record(&Entry {
            client: &self.client.policy.name,
            connection: self.client.connection,
            peer_uid: self.client.peer_uid,
            command,
            rp_id,
            refused,
            status: Some(status),
        });
    }

    fn dispatch(&mut self, cid: u32, command: u8, payload: Vec<u8>) -> io::Result<()> {
        match command {
            // Answered here: nothing reaches the key.
            cmd::PING => self.send(cid, cmd::PING, &payload),
            cmd::CBOR => self.cbor(cid, &payload),
            cmd::MSG => self.msg(cid, &payload),
            cmd::WINK if self.client.policy.allows(Command::Wink) && payload.is_empty() => {
                match self.forward(cid, cmd::WINK, &[], QUICK_TIMEOUT, |_| Ok(())) {
                    Ok(_) => {
                        self.audit("wink", None, None, "ok".into());
                        self.send(cid, cmd::WINK, &[])
                    }
                    Err(stop) => self.stopped(cid, "wink", None, stop, None),
                }
            }
            other => {
                let name = match other {
                    cmd::WINK => "wink",
                    0x04 => "lock",
                    _ => "unknown-hid-command",
                };
                self.audit(
                    name,
                    None,
                    Some("command-not-allowed"),
                    "ERR_INVALID_CMD".into(),
                );
                self.write(&hid::error(cid, ERR_INVALID_CMD))
            }
        }
    }

    /// A forwarded request ended without an answer.
    fn stopped(
        &mut self,
        cid: u32,
        command: &str,
        rp_id: Option<&str>,
        stop: Stop,
        cbor: Option<()>,
    ) -> io::Result<()> {
        self.session.clear();
        match stop {
            Stop::Gone => {
                self.audit(command, rp_id, Some("client-gone"), "cancelled".into());
                Err(io::Error::from(io::ErrorKind::BrokenPipe))
            }
            Stop::Cancelled => {
                self.audit(command, rp_id, Some("client-cancelled"), "0x2d".into());
                match cbor {
                    Some(()) => self.send(cid, cmd::CBOR, &[STATUS_KEEPALIVE_CANCEL]),
                    None => Ok(()),
                }
            }
            Stop::Key(code) => {
                self.audit(
                    command,
                    rp_id,
                    Some("key-failed"),
                    format!("hid-error-0x{code:02x}"),
                );
                self.write(&hid::error(cid, code))
            }
        }
    }

    fn cbor(&mut self, cid: u32, payload: &[u8]) -> io::Result<()> {
        let policy = self.client.policy.clone();
        let f = match mediate::check_request(&policy, &self.session, payload) {
            Ok(f) => f,
            Err(refused) => {
                self.session.clear();
                self.audit(
                    refused.command,
                    refused.rp_id.as_deref(),
                    Some(refused.refusal.reason),
                    format!("0x{:02x}", refused.refusal.status),
                );
                return self.send(cid, cmd::CBOR, &[refused.refusal.status]);
            }
        };
        self.session.begin(&f);
        let me = self.client.connection;
        let next = matches!(f.expect, Expect::NextAssertion { .. });
        let timeout = if f.may_wait_for_touch {
            TOUCH_TIMEOUT
        } else {
            QUICK_TIMEOUT
        };
        // getNextAssertion only right after this client's own getAssertion on the key: another
        // client's request in between ended the key's assertion state or, worse, left another
        // client's credentials queued.
        // The owner is set under the key's mutex, before the request goes: no other client's
        // getAssertion can come between this one and its owner.
        let get_assertion = matches!(f.expect, Expect::Assertion { .. });
        let result = self.forward(cid, cmd::CBOR, &f.bytes, timeout, |backend| {
            if next && backend.assertion_owner != Some(me) {
                return Err("not-last-get-assertion");
            }
            if get_assertion {
                backend.assertion_owner = Some(me);
            } else if !next {
                backend.assertion_owner = None;
            }
            Ok(())
        });
        let response = match result {
            Ok(r) => r,
            Err(Stop::Key(0)) => {
                // Refused before it was sent (the precondition above).
                self.session.clear();
                self.audit(
                    f.command,
                    f.rp_id.as_deref(),
                    Some("not-last-get-assertion"),
                    format!("0x{:02x}", status::OPERATION_DENIED),
                );
                return self.send(cid, cmd::CBOR, &[status::OPERATION_DENIED]);
            }
            Err(stop) => return self.stopped(cid, f.command, f.rp_id.as_deref(), stop, Some(())),
        };
        match mediate::check_response(&f, &mut self.session, &response) {
            Ok(out) => {
                self.audit(
                    f.command,
                    f.rp_id.as_deref(),
                    None,
                    format!("0x{:02x}", out[0]),
                );
                self.send(cid, cmd::CBOR, &out)
            }
            Err(r) => {
                // A refused answer leaves nothing for this client's getNextAssertion.
                let mut backend = self.shared.lock();
                if backend.assertion_owner == Some(me) {
                    backend.assertion_owner = None;
                }
                drop(backend);
                self.audit(
                    f.command,
                    f.rp_id.as_deref(),
                    Some(r.reason),
                    format!("0x{:02x}", r.status),
                );
                self.send(cid, cmd::CBOR, &[r.status])
            }
        }
    }

    fn msg(&mut self, cid: u32, payload: &[u8]) -> io::Result<()> {
        match u2f::check(&self.client.policy, payload) {
            u2f::Decision::Refuse {
                command,
                sw,
                reason,
            } => {
                self.audit(command, None, Some(reason), format!("0x{sw:04x}"));
                self.send(cid, cmd::MSG, &u2f::status_word(sw))
            }
            u2f::Decision::Forward {
                command,
                rp_id,
                apdu,
            } => {
                self.session.clear();
                let result = self.forward(cid, cmd::MSG, &apdu, TOUCH_TIMEOUT, |b| {
                    b.assertion_owner = None;
                    Ok(())
                });
                let response = match result {
                    Ok(r) => r,
                    Err(stop) => return self.stopped(cid, command, rp_id.as_deref(), stop, None),
                };
                match u2f::check_response(&response) {
                    Some(r) => {
                        let sw = &r[r.len() - 2..];
                        self.audit(
                            command,
                            rp_id.as_deref(),
                            None,
                            format!("0x{:02x}{:02x}", sw[0], sw[1]),
                        );
                        self.send(cid, cmd::MSG, r)
                    }
                    None => {
                        self.audit(
                            command,
                            rp_id.as_deref(),
                            Some("key-bad-response"),
                            "ERR_OTHER".into(),
                        );
                        self.write(&hid::error(cid, ERR_OTHER))
                    }
                }
            }
        }
    }

    /// Send one request to the key, waiting for the key's mutex first, with KEEPALIVE to the
    /// client meanwhile and its CANCEL honoured. `check` runs under the mutex before sending
    /// (an `Err` stops with `Stop::Key(0)`: the caller answers).
    fn forward(
        &mut self,
        cid: u32,
        command: u8,
        bytes: &[u8],
        timeout: Duration,
        check: impl FnOnce(&mut Backend) -> Result<(), &'static str>,
    ) -> Result<Vec<u8>, Stop> {
        let shared = Arc::clone(&self.shared);
        let mut backend = self.lock_backend(cid, &shared)?;
        if check(&mut backend).is_err() {
            return Err(Stop::Key(0));
        }
        let mut stop: Option<Stop> = None;
        let result = backend.call(command, bytes, timeout, &mut |status| {
            let byte = match status {
                KeepaliveStatus::Processing => Some(KEEPALIVE_PROCESSING),
                KeepaliveStatus::UpNeeded => Some(KEEPALIVE_UPNEEDED),
                KeepaliveStatus::Unknown(b) => Some(b),
                // The key sent nothing: nothing to pass on, but the client is still heard.
                KeepaliveStatus::Quiet => None,
            };
            if byte.is_some_and(|b| self.send(cid, cmd::KEEPALIVE, &[b]).is_err()) {
                stop = Some(Stop::Gone);
                return WaitDecision::Cancel;
            }
            match self.poll_client(cid) {
                None => WaitDecision::Continue,
                Some(s) => {
                    stop = Some(s);
                    WaitDecision::Cancel
                }
            }
        });
        match result {
            Ok(r) => Ok(r),
            Err(CtapHidError::Cancelled) => Err(stop.unwrap_or(Stop::Cancelled)),
            Err(e) => {
                self.note(&format!("the key failed: {e}"));
                Err(Stop::Key(match e {
                    // The key's own CTAPHID error passes through (INVALID_CMD for MSG on a key
                    // without U2F, BUSY for another program on a shared hidraw node).
                    CtapHidError::Device(code) => hid_error_byte(code),
                    // Longer than the key's maxMsgSize.
                    CtapHidError::RequestTooLong { .. } => crate::hid::ERR_INVALID_LEN,
                    _ => ERR_OTHER,
                }))
            }
        }
    }

    /// Wait for the key's mutex, sending KEEPALIVE (processing) to the client meanwhile.
    fn lock_backend<'s>(
        &mut self,
        cid: u32,
        shared: &'s Shared,
    ) -> Result<MutexGuard<'s, Backend>, Stop> {
        let mut next_keepalive = Instant::now();
        loop {
            match shared.backend.try_lock() {
                Ok(g) => return Ok(g),
                Err(TryLockError::Poisoned(p)) => return Ok(p.into_inner()),
                Err(TryLockError::WouldBlock) => {}
            }
            if Instant::now() >= next_keepalive {
                if self
                    .send(cid, cmd::KEEPALIVE, &[KEEPALIVE_PROCESSING])
                    .is_err()
                {
                    return Err(Stop::Gone);
                }
                next_keepalive = Instant::now() + KEEPALIVE_INTERVAL;
            }
            match wait_readable(&self.input, Some(Duration::from_millis(20))) {
                Ok(true) => {
                    if let Some(stop) = self.poll_client(cid) {
                        return Err(stop);
                    }
                }
                Ok(false) => {}
                Err(_) => return Err(Stop::Gone),
            }
        }
    }

    /// Read what the client sent while `busy_cid` waits: CANCEL or INIT on it stops the
    /// request; other requests are answered CHANNEL_BUSY; end of stream stops it.
    fn poll_client(&mut self, busy_cid: u32) -> Option<Stop> {
        loop {
            match wait_readable(&self.input, Some(Duration::ZERO)) {
                Ok(true) => {}
                Ok(false) => return None,
                Err(_) => return Some(Stop::Gone),
            }
            let report = match self.read() {
                Ok(ReadOutcome::Report(r)) => r,
                Ok(ReadOutcome::Partial) => continue,
                Ok(ReadOutcome::Eof) | Err(_) => return Some(Stop::Gone),
            };
            let shared = Arc::clone(&self.shared);
            let ev = self
                .frontend
                .on_report(&report, Instant::now(), &mut || shared.allocate_cid());
            let written = match ev {
                Event::Cancel { cid } if cid == busy_cid => return Some(Stop::Cancelled),
                Event::Resync { cid, reply } if cid == busy_cid => {
                    if self.write(&reply).is_err() {
                        return Some(Stop::Gone);
                    }
                    return Some(Stop::Cancelled);
                }
                Event::Request { cid, .. } => self.write(&hid::error(cid, ERR_CHANNEL_BUSY)),
                Event::Reply(r) | Event::Resync { reply: r, .. } => self.write(&r),
                Event::Nothing | Event::Cancel { .. } => Ok(()),
            };
            if written.is_err() {
                return Some(Stop::Gone);
            }
        }
    }
}

fn hid_error_byte(code: HidErrorCode) -> u8 {
    match code {
        HidErrorCode::InvalidCmd => 0x01,
        HidErrorCode::InvalidPar => 0x02,
        HidErrorCode::InvalidLen => 0x03,
        HidErrorCode::InvalidSeq => 0x04,
        HidErrorCode::MsgTimeout => 0x05,
        HidErrorCode::ChannelBusy => ERR_CHANNEL_BUSY,
        HidErrorCode::LockRequired => 0x0A,
        HidErrorCode::InvalidChannel => 0x0B,
        HidErrorCode::Other => ERR_OTHER,
        HidErrorCode::Unknown(b) => b,
    }
}

/// Whether `fd` has data (or hung up) within `timeout` (`None`: wait for ever).
fn wait_readable(fd: &impl AsFd, timeout: Option<Duration>) -> io::Result<bool> {
    let timeout = match timeout {
        None => PollTimeout::NONE,
        Some(t) => {
            PollTimeout::try_from(t.as_nanos().div_ceil(1_000_000)).unwrap_or(PollTimeout::MAX)
        }
    };
    let mut fds = [PollFd::new(fd.as_fd(), PollFlags::POLLIN)];
    loop {
        match poll(&mut fds, timeout) {
            Ok(0) => return Ok(false),
            Ok(_) => return Ok(fds[0].revents().is_some_and(|r| !r.is_empty())),
            Err(Errno::EINTR) => {}
            Err(e) => return Err(e.into()),
        }
    }
}
