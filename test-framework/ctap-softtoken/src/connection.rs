//! One client connection = one opened device: the CTAPHID state machine over a unix stream.
//!
//! Nothing a client sends can crash the server: every malformed frame is answered with a
//! CTAPHID ERROR, and I/O failures end this connection only (logged to stderr).

use std::collections::VecDeque;
use std::io::{self, Read, Write};
use std::os::fd::AsFd;
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::eventfd::{EfdFlags, EventFd};

use crate::ctaphid_device::*;
use crate::engine::{
    EngineHandle, Kind, Reply, Ticket, Wake, MAX_MESSAGE_SIZE, STATUS_KEEPALIVE_CANCEL,
};
use crate::fault::{Delivery, Fault, Plan};

/// Keepalives go out this often while a request is in progress (CTAP 2.1 §11.2.9.2.1).
const KEEPALIVE_INTERVAL: Duration = Duration::from_millis(100);
/// A message whose continuation packets stop coming is dropped with ERR_MSG_TIMEOUT.
const REASSEMBLY_TIMEOUT: Duration = Duration::from_secs(1);
/// A client that stops reading its responses is dropped rather than blocking us forever.
const WRITE_TIMEOUT: Duration = Duration::from_secs(5);
/// Channel ids a connection may hold at once; older ones are forgotten.
const MAX_CHANNELS: usize = 32;

/// Capabilities in the INIT response: WINK and CBOR; NMSG clear, since CTAPHID_MSG carries
/// CTAP1/U2F (the attestation it needs is made with the state, see `attestation`).
const CAPABILITIES: u8 = CAPABILITY_WINK | CAPABILITY_CBOR;
/// Under `--ctap1-only`: a U2F-only key, as older keys are: no CBOR capability, and
/// CTAPHID_CBOR (getInfo included) answered ERR_INVALID_CMD.
const CAPABILITIES_CTAP1_ONLY: u8 = CAPABILITY_WINK;

/// Set once at start by `--ctap1-only`.
static CTAP1_ONLY: AtomicBool = AtomicBool::new(false);

/// Serve CTAP1/U2F only (`--ctap1-only`): every connection from now on.
pub fn set_ctap1_only() {
    CTAP1_ONLY.store(true, Ordering::SeqCst);
}

fn ctap1_only() -> bool {
    CTAP1_ONLY.load(Ordering::SeqCst)
}

/// Where every CTAPHID_CANCEL received is recorded (`--cancel-log`), for tests to read.
static CANCEL_LOG: OnceLock<PathBuf> = OnceLock::new();

/// Record every CANCEL received in `path` (one line each), as well as on stderr.
pub fn set_cancel_log(path: PathBuf) {
    let _ = CANCEL_LOG.set(path);
}

/// Channel ids are unique across all connections of this process.
static NEXT_CID: AtomicU32 = AtomicU32::new(1);

fn allocate_cid() -> u32 {
    loop {
        let cid = NEXT_CID.fetch_add(1, Ordering::Relaxed);
        if cid != 0 && cid != BROADCAST_CID {
            return cid;
        }
    }
}

/// A request in progress on this connection: keepalives go out on `cid` until it is answered.
struct Busy {
    cid: u32,
    /// The command the answer goes out as: CBOR or MSG.
    command: u8,
    next_keepalive: Instant,
    /// Queued or running in the authenticator, with the fault that mangles the reply. `None`
    /// under `--fault stall-keepalive`: keepalives forever, no answer.
    job: Option<(Ticket, Option<Fault>)>,
    /// Under `--fault slow-answer`: the request, handed to the authenticator at this instant.
    held: Option<(Instant, Vec<u8>, Option<Fault>)>,
}

/// What the connection loop does after handling an event.
#[derive(Debug, PartialEq, Eq)]
enum Flow {
    Continue,
    Close,
}

/// Collects whole 64-byte reports from a stream that may deliver them in pieces.
struct ReportReader {
    buf: Packet,
    filled: usize,
}

enum ReadOutcome {
    Report(Packet),
    /// Part of a report came; the rest is still on its way.
    Partial,
    Eof {
        partial: usize,
    },
}

impl ReportReader {
    /// One read from a socket that poll(2) found readable (so it does not block).
    fn read(&mut self, stream: &mut UnixStream) -> io::Result<ReadOutcome> {
        loop {
            match stream.read(&mut self.buf[self.filled..]) {
                Ok(0) => {
                    return Ok(ReadOutcome::Eof {
                        partial: self.filled,
                    })
                }
                Ok(n) => {
                    self.filled += n;
                    if self.filled < PACKET_SIZE {
                        return Ok(ReadOutcome::Partial);
                    }
                    self.filled = 0;
                    return Ok(ReadOutcome::Report(self.buf));
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(ReadOutcome::Partial),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
    }
}

/// What woke the connection up.
struct Ready {
    socket: bool,
    engine: bool,
}

/// The connection's doorbell: the engine rings it when a reply is ready (see
/// [`crate::engine::Wake`]), and the connection sleeps in poll(2) on it and its socket.
struct Doorbell(Arc<EventFd>);

impl Doorbell {
    fn new() -> io::Result<Self> {
        let fd = EventFd::from_flags(EfdFlags::EFD_NONBLOCK | EfdFlags::EFD_CLOEXEC)?;
        Ok(Self(Arc::new(fd)))
    }

    fn wake(&self) -> Wake {
        let fd = self.0.clone();
        // Cannot fail short of the counter overflowing, which a 64-bit counter read after
        // every wake-up does not.
        Arc::new(move || {
            let _ = fd.write(1);
        })
    }

    /// Reset after a wake-up (non-blocking: nothing to read is fine).
    fn clear(&self) {
        let _ = self.0.read();
    }
}

/// Sleep until the socket has data (or hung up), the engine rang, or `timeout` passed.
fn wait(stream: &UnixStream, doorbell: &Doorbell, timeout: Option<Duration>) -> io::Result<Ready> {
    let timeout = match timeout {
        None => PollTimeout::NONE,
        // Round up: rounding a sub-millisecond wait down to 0 would spin until the deadline.
        Some(t) => {
            PollTimeout::try_from(t.as_nanos().div_ceil(1_000_000)).unwrap_or(PollTimeout::MAX)
        }
    };
    let mut fds = [
        PollFd::new(stream.as_fd(), PollFlags::POLLIN),
        PollFd::new(doorbell.0.as_fd(), PollFlags::POLLIN),
    ];
    loop {
        match poll(&mut fds, timeout) {
            Ok(_) => break,
            Err(Errno::EINTR) => {}
            Err(e) => return Err(e.into()),
        }
    }
    // POLLHUP/POLLERR count as readable: the read then reports the end or the error.
    let fired = |fd: &PollFd| fd.revents().is_some_and(|r| !r.is_empty());
    Ok(Ready {
        socket: fired(&fds[0]),
        engine: fired(&fds[1]),
    })
}

/// Serve one client until it disconnects or misbehaves at the I/O level.
pub fn serve(stream: UnixStream, engine: EngineHandle, fault: Option<Fault>, id: u64) {
    let doorbell = match Doorbell::new() {
        Ok(doorbell) => doorbell,
        Err(e) => {
            eprintln!("ctap-softtoken: connection {id}: cannot create its eventfd: {e}");
            return;
        }
    };
    let mut connection = Connection {
        stream,
        engine,
        fault,
        id,
        reader: ReportReader {
            buf: [0; PACKET_SIZE],
            filled: 0,
        },
        doorbell,
        channels: VecDeque::new(),
        reassembly: None,
        busy: None,
    };
    if let Err(e) = connection.stream.set_write_timeout(Some(WRITE_TIMEOUT)) {
        connection.log(&format!("cannot set write timeout: {e}"));
        return;
    }
    connection.run();
}

struct Connection {
    stream: UnixStream,
    engine: EngineHandle,
    fault: Option<Fault>,
    id: u64,
    reader: ReportReader,
    doorbell: Doorbell,
    channels: VecDeque<u32>,
    reassembly: Option<(Reassembly, Instant)>,
    busy: Option<Busy>,
}

impl Connection {
    fn log(&self, message: &str) {
        eprintln!("ctap-softtoken: connection {}: {message}", self.id);
    }

    fn run(&mut self) {
        loop {
            let ready = match wait(&self.stream, &self.doorbell, self.next_timeout()) {
                Ok(ready) => ready,
                Err(e) => {
                    self.log(&format!("poll failed, dropping connection: {e}"));
                    return;
                }
            };
            if ready.engine {
                self.doorbell.clear();
            }
            if ready.socket {
                match self.reader.read(&mut self.stream) {
                    Ok(ReadOutcome::Report(packet)) => {
                        if self.handle_packet(&packet) == Flow::Close {
                            return;
                        }
                    }
                    Ok(ReadOutcome::Partial) => {}
                    Ok(ReadOutcome::Eof { partial }) => {
                        if partial != 0 || self.reassembly.is_some() {
                            self.log("client disconnected in the middle of a message");
                        }
                        return;
                    }
                    Err(e) => {
                        self.log(&format!("read failed, dropping connection: {e}"));
                        return;
                    }
                }
            }
            if self.tick() == Flow::Close {
                return;
            }
        }
    }

    /// How long to sleep before a timer is due (the engine's reply and the client's reports
    /// wake us sooner); `None` when no timer runs.
    fn next_timeout(&self) -> Option<Duration> {
        let reassembly = self.reassembly.as_ref().map(|(_, deadline)| *deadline);
        let busy = self.busy.as_ref().map(|busy| match &busy.held {
            Some((at, _, _)) => busy.next_keepalive.min(*at),
            None => busy.next_keepalive,
        });
        let due = match (reassembly, busy) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        due.map(|at| at.saturating_duration_since(Instant::now()))
    }

    /// Timers: reassembly timeout, the authenticator's reply, keepalives.
    fn tick(&mut self) -> Flow {
        let now = Instant::now();
        if let Some((reassembly, deadline)) = &self.reassembly {
            if now >= *deadline {
                let cid = reassembly.cid;
                self.reassembly = None;
                return self.send_error(cid, ERR_MSG_TIMEOUT);
            }
        }
        let Some(busy) = &mut self.busy else {
            return Flow::Continue;
        };
        let cid = busy.cid;
        if busy.held.as_ref().is_some_and(|(at, _, _)| now >= *at) {
            if let Some((_, payload, fault)) = busy.held.take() {
                // A delayed message goes to the engine as what it came in as.
                let kind = if busy.command == cmd::MSG {
                    Kind::Msg
                } else {
                    Kind::Cbor
                };
                match self.engine.submit_kind(kind, payload, self.doorbell.wake()) {
                    Ok(ticket) => busy.job = Some((ticket, fault)),
                    Err(_) => {
                        self.log("the authenticator stopped; closing");
                        return Flow::Close;
                    }
                }
            }
        }
        let mut status = KEEPALIVE_PROCESSING;
        if let Some((ticket, fault)) = &busy.job {
            match ticket.try_reply() {
                Ok(Some(reply)) => {
                    let (fault, command) = (*fault, busy.command);
                    self.busy = None;
                    return self.deliver(cid, command, reply, fault);
                }
                Ok(None) if ticket.waiting_for_presence() => status = KEEPALIVE_UPNEEDED,
                Ok(None) => {}
                Err(_) => {
                    self.log("the authenticator stopped; closing");
                    return Flow::Close;
                }
            }
        }
        if now < busy.next_keepalive || self.fault == Some(Fault::NoKeepalive) {
            return Flow::Continue;
        }
        busy.next_keepalive = now + KEEPALIVE_INTERVAL;
        self.send(cid, cmd::KEEPALIVE, &[status])
    }

    fn deliver(&mut self, cid: u32, command: u8, reply: Reply, fault: Option<Fault>) -> Flow {
        let data = match reply {
            Reply::HidError(code) => return self.send_error(cid, code),
            Reply::Data(data) => data,
        };
        let delivery = match fault {
            Some(fault) => fault.mangle(data),
            None => Delivery::Normal(data),
        };
        match delivery {
            Delivery::Normal(data) => self.send(cid, command, &data),
            Delivery::OtherChannel(data) => {
                let other = match cid.wrapping_add(0x0100) {
                    0 | BROADCAST_CID => 0x0100,
                    other => other,
                };
                self.send(other, command, &data)
            }
            Delivery::Trickle(data, interval) => {
                for byte in fragment(cid, command, &data).as_flattened() {
                    if self.stream.write_all(&[*byte]).is_err() {
                        self.log("fault trickle: the client went away");
                        return Flow::Close;
                    }
                    std::thread::sleep(interval);
                }
                Flow::Continue
            }
            Delivery::FirstReportOnly(data) => {
                if let Some(first) = fragment(cid, command, &data).first() {
                    if self.stream.write_all(first).is_err() {
                        return Flow::Close;
                    }
                }
                self.log("fault stall-mid-message: sent the first report only");
                Flow::Continue
            }
            Delivery::TruncatedThenClose(data, len) => {
                if let Some(first) = fragment(cid, command, &data).first() {
                    let _ = self.stream.write_all(&first[..len.min(PACKET_SIZE)]);
                }
                self.log("fault truncate-report: sent a short report, closing");
                Flow::Close
            }
        }
    }

    fn handle_packet(&mut self, packet: &Packet) -> Flow {
        match parse(packet) {
            Frame::Init {
                cid,
                cmd: cmd::INIT,
                len,
                data,
            } => self.handle_init(cid, len, data),
            Frame::Init {
                cid,
                cmd,
                len,
                data,
            } => {
                if cid == BROADCAST_CID || !self.channels.contains(&cid) {
                    return self.send_error(cid, ERR_INVALID_CHANNEL);
                }
                if cmd == cmd::CANCEL {
                    self.record_cancel(cid);
                }
                if let Some(busy) = &self.busy {
                    if busy.cid == cid && cmd == cmd::CANCEL {
                        if let Some((ticket, _)) = &busy.job {
                            ticket.cancel();
                        }
                        if busy.held.is_some() {
                            // Held back by slow-answer, never started: answer as a key does.
                            self.busy = None;
                            return self.send(cid, cmd::CBOR, &[STATUS_KEEPALIVE_CANCEL]);
                        }
                        return Flow::Continue;
                    }
                    return self.send_error(cid, ERR_CHANNEL_BUSY);
                }
                if cmd == cmd::CANCEL {
                    // Nothing to cancel: CANCEL gets no response.
                    return Flow::Continue;
                }
                if let Some((reassembly, _)) = &self.reassembly {
                    let code = if reassembly.cid == cid {
                        self.reassembly = None;
                        ERR_INVALID_SEQ
                    } else {
                        ERR_CHANNEL_BUSY
                    };
                    return self.send_error(cid, code);
                }
                if len > MAX_MESSAGE_SIZE {
                    return self.send_error(cid, ERR_INVALID_LEN);
                }
                self.dispatch_or_wait(Reassembly::start(cid, cmd, len, data))
            }
            Frame::Cont { cid, seq, data } => {
                // A continuation without a message in progress on its channel is ignored
                // (§11.2.4), and does not extend another channel's reassembly deadline.
                let Some((mut reassembly, deadline)) = self.reassembly.take() else {
                    return Flow::Continue;
                };
                if reassembly.cid != cid {
                    self.reassembly = Some((reassembly, deadline));
                    return Flow::Continue;
                }
                if reassembly.push(seq, data).is_err() {
                    return self.send_error(cid, ERR_INVALID_SEQ);
                }
                self.dispatch_or_wait(reassembly)
            }
        }
    }

    /// Run a complete message, or wait (with a fresh deadline) for its next continuation.
    fn dispatch_or_wait(&mut self, reassembly: Reassembly) -> Flow {
        if reassembly.is_complete() {
            self.dispatch(reassembly)
        } else {
            self.reassembly = Some((reassembly, Instant::now() + REASSEMBLY_TIMEOUT));
            Flow::Continue
        }
    }

    fn handle_init(&mut self, cid: u32, len: usize, data: &[u8]) -> Flow {
        if len != 8 {
            return self.send_error(cid, ERR_INVALID_LEN);
        }
        let Some(nonce) = data.first_chunk::<8>() else {
            return self.send_error(cid, ERR_INVALID_LEN);
        };
        let new_cid = if cid == BROADCAST_CID {
            let new_cid = allocate_cid();
            if self.channels.len() >= MAX_CHANNELS {
                self.channels.pop_front();
            }
            self.channels.push_back(new_cid);
            new_cid
        } else if self.channels.contains(&cid) {
            // INIT on an allocated channel resynchronises it: abandon what was in progress.
            if self.busy.as_ref().is_some_and(|busy| busy.cid == cid) {
                self.busy = None; // dropping the ticket cancels the job
            }
            if self.reassembly.as_ref().is_some_and(|(r, _)| r.cid == cid) {
                self.reassembly = None;
            }
            cid
        } else {
            return self.send_error(cid, ERR_INVALID_CHANNEL);
        };
        let capabilities = if ctap1_only() {
            CAPABILITIES_CTAP1_ONLY
        } else {
            CAPABILITIES
        };
        self.send(cid, cmd::INIT, &init_response(nonce, new_cid, capabilities))
    }

    fn dispatch(&mut self, reassembly: Reassembly) -> Flow {
        let (cid, cmd) = (reassembly.cid, reassembly.cmd);
        let payload = reassembly.into_payload();
        match cmd {
            cmd::PING => self.send(cid, cmd::PING, &payload),
            cmd::WINK => {
                if !payload.is_empty() {
                    return self.send_error(cid, ERR_INVALID_LEN);
                }
                eprintln!("ctap-softtoken: connection {}: wink", self.id);
                self.send(cid, cmd::WINK, &[])
            }
            cmd::CBOR if ctap1_only() => self.send_error(cid, ERR_INVALID_CMD),
            cmd::CBOR | cmd::MSG => {
                if payload.is_empty() {
                    return self.send_error(cid, ERR_INVALID_LEN);
                }
                let (kind, fault) = if cmd == cmd::MSG {
                    (Kind::Msg, self.fault.filter(|f| f.hits_u2f(&payload)))
                } else {
                    (Kind::Cbor, self.fault.filter(|f| f.hits(&payload)))
                };
                let mut held = None;
                let job = match fault.map(Fault::plan) {
                    Some(Plan::Drop) => {
                        self.log("fault drop-connection: closing after the request");
                        return Flow::Close;
                    }
                    Some(Plan::Busy) => return self.send_error(cid, ERR_CHANNEL_BUSY),
                    Some(Plan::Delay(delay)) => {
                        held = Some((Instant::now() + delay, payload, fault));
                        None
                    }
                    Some(Plan::Stall) => None,
                    Some(Plan::Process) | None => match self.engine.submit_kind(
                        kind,
                        match fault {
                            Some(f) => f.mangle_request(payload),
                            None => payload,
                        },
                        self.doorbell.wake(),
                    ) {
                        Ok(ticket) => Some((ticket, fault)),
                        Err(_) => {
                            self.log("the authenticator stopped; closing");
                            return Flow::Close;
                        }
                    },
                };
                self.busy = Some(Busy {
                    cid,
                    command: cmd,
                    next_keepalive: Instant::now() + KEEPALIVE_INTERVAL,
                    job,
                    held,
                });
                Flow::Continue
            }
            // LOCK (optional, not implemented), and anything a host should never send
            // (KEEPALIVE, ERROR) or we do not know.
            _ => self.send_error(cid, ERR_INVALID_CMD),
        }
    }

    fn record_cancel(&self, cid: u32) {
        let busy = self.busy.as_ref().is_some_and(|b| b.cid == cid);
        let line = format!("cancel connection={} cid={cid:08x} busy={busy}\n", self.id);
        self.log(line.trim_end());
        if let Some(path) = CANCEL_LOG.get() {
            let appended = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(path)
                .and_then(|mut f| f.write_all(line.as_bytes()));
            if let Err(e) = appended {
                self.log(&format!("cannot append to {}: {e}", path.display()));
            }
        }
    }

    fn send_error(&mut self, cid: u32, code: u8) -> Flow {
        self.send(cid, cmd::ERROR, &[code])
    }

    /// Send a whole message in one write: the stream carries reports back to back anyway, and a
    /// large response is one syscall instead of up to 129.
    fn send(&mut self, cid: u32, cmd: u8, payload: &[u8]) -> Flow {
        let packets = fragment(cid, cmd, payload);
        if let Err(e) = self.stream.write_all(packets.as_flattened()) {
            self.log(&format!("write failed, dropping connection: {e}"));
            return Flow::Close;
        }
        Flow::Continue
    }
}
