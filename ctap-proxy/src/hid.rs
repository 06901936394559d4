//! CTAPHID, device side: what the proxy shows its clients (CTAP 2.1 §11.2). It allocates
//! channels with INIT, reassembles requests from an initialization packet and its continuation
//! packets, fragments responses, and answers every framing violation with a CTAPHID ERROR.
//! No I/O here: [`Frontend`] turns reports into [`Event`]s, so each rule is unit-tested.
//!
//! Wire constants come from ctap-core's client side, so both ends agree by construction.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

pub use ctap_core::transport::ctaphid::{
    cmd, BROADCAST_CID, CAPABILITY_CBOR, CAPABILITY_NMSG, CAPABILITY_WINK, CONT_DATA, INIT_DATA,
    MAX_MESSAGE,
};
pub use ctap_core::transport::device::{Report, REPORT_SIZE};

// CTAPHID_ERROR codes.
pub const ERR_INVALID_CMD: u8 = 0x01;
pub const ERR_INVALID_LEN: u8 = 0x03;
pub const ERR_INVALID_SEQ: u8 = 0x04;
pub const ERR_MSG_TIMEOUT: u8 = 0x05;
pub const ERR_CHANNEL_BUSY: u8 = 0x06;
pub const ERR_INVALID_CHANNEL: u8 = 0x0B;
pub const ERR_OTHER: u8 = 0x7F;

// KEEPALIVE status bytes.
pub const KEEPALIVE_PROCESSING: u8 = 0x01;
pub const KEEPALIVE_UPNEEDED: u8 = 0x02;

/// CTAPHID protocol version in the INIT answer.
pub const PROTOCOL_VERSION: u8 = 2;

/// A message whose continuation packets stop coming is dropped with ERR_MSG_TIMEOUT.
pub const REASSEMBLY_TIMEOUT: Duration = Duration::from_secs(1);
/// Channels one client may hold; the oldest is forgotten when it allocates more.
const MAX_CHANNELS: usize = 16;

/// Split a response into reports (at most [`MAX_MESSAGE`] bytes; longer is cut, and the proxy
/// never sends longer: the key's answers came through the same limit).
pub fn fragment(cid: u32, command: u8, payload: &[u8]) -> Vec<Report> {
    let payload = &payload[..payload.len().min(MAX_MESSAGE)];
    let len = u16::try_from(payload.len()).unwrap_or(u16::MAX);
    let mut out = Vec::with_capacity(1 + payload.len() / CONT_DATA);
    let mut first = [0u8; REPORT_SIZE];
    first[..4].copy_from_slice(&cid.to_be_bytes());
    first[4] = 0x80 | command;
    first[5..7].copy_from_slice(&len.to_be_bytes());
    let (head, rest) = payload.split_at(payload.len().min(INIT_DATA));
    first[7..7 + head.len()].copy_from_slice(head);
    out.push(first);
    for (seq, chunk) in rest.chunks(CONT_DATA).enumerate() {
        let mut r = [0u8; REPORT_SIZE];
        r[..4].copy_from_slice(&cid.to_be_bytes());
        // At most 128 chunks fit in MAX_MESSAGE: seq stays within 0..=127.
        r[4] = u8::try_from(seq).unwrap_or(0x7F) & 0x7F;
        r[5..5 + chunk.len()].copy_from_slice(chunk);
        out.push(r);
    }
    out
}

/// A CTAPHID ERROR message.
pub fn error(cid: u32, code: u8) -> Vec<Report> {
    fragment(cid, cmd::ERROR, &[code])
}

/// What the key is, as the client's INIT answer says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Identity {
    pub major: u8,
    pub minor: u8,
    pub build: u8,
    pub capabilities: u8,
}

/// What a report from the client means.
#[derive(Debug, PartialEq, Eq)]
pub enum Event {
    /// Nothing to do yet (a continuation packet, an ignored packet).
    Nothing,
    /// Send these reports back (INIT answers, framing errors).
    Reply(Vec<Report>),
    /// A whole request on an allocated channel.
    Request {
        cid: u32,
        command: u8,
        payload: Vec<u8>,
    },
    /// CTAPHID_CANCEL on an allocated channel (no answer of its own).
    Cancel { cid: u32 },
    /// INIT on an allocated channel: it resynchronises; whatever was in progress there is
    /// abandoned. The reply is the INIT answer.
    Resync { cid: u32, reply: Vec<Report> },
}

struct Reassembly {
    cid: u32,
    command: u8,
    len: usize,
    data: Vec<u8>,
    next_seq: u8,
    deadline: Instant,
}

/// One client's CTAPHID state: its channels and the message being reassembled.
pub struct Frontend {
    identity: Identity,
    channels: VecDeque<u32>,
    reassembly: Option<Reassembly>,
}

impl Frontend {
    pub fn new(identity: Identity) -> Self {
        Frontend {
            identity,
            channels: VecDeque::new(),
            reassembly: None,
        }
    }

    pub fn owns(&self, cid: u32) -> bool {
        self.channels.contains(&cid)
    }

    /// When [`Self::on_timer`] is due.
    pub fn next_deadline(&self) -> Option<Instant> {
        self.reassembly.as_ref().map(|r| r.deadline)
    }

    /// A message whose continuation packets stopped coming is dropped with ERR_MSG_TIMEOUT.
    pub fn on_timer(&mut self, now: Instant) -> Event {
        match &self.reassembly {
            Some(r) if now >= r.deadline => {
                let cid = r.cid;
                self.reassembly = None;
                Event::Reply(error(cid, ERR_MSG_TIMEOUT))
            }
            _ => Event::Nothing,
        }
    }

    /// Handle one report from the client. `allocate` gives a fresh channel id.
    pub fn on_report(
        &mut self,
        report: &Report,
        now: Instant,
        allocate: &mut dyn FnMut() -> u32,
    ) -> Event {
        let cid = u32::from_be_bytes([report[0], report[1], report[2], report[3]]);
        if report[4] & 0x80 == 0 {
            return self.on_continuation(cid, report, now);
        }
        let command = report[4] & 0x7F;
        let len = usize::from(u16::from_be_bytes([report[5], report[6]]));
        if command == cmd::INIT {
            return self.on_init(cid, len, report, allocate);
        }
        if cid == BROADCAST_CID || cid == 0 || !self.owns(cid) {
            return Event::Reply(error(cid, ERR_INVALID_CHANNEL));
        }
        if command == cmd::CANCEL {
            if self.reassembly.as_ref().is_some_and(|r| r.cid == cid) {
                self.reassembly = None;
            }
            return Event::Cancel { cid };
        }
        if let Some(r) = &self.reassembly {
            if r.cid == cid {
                // A new message before the last one was complete: the old one is lost.
                self.reassembly = None;
                return Event::Reply(error(cid, ERR_INVALID_SEQ));
            }
            return Event::Reply(error(cid, ERR_CHANNEL_BUSY));
        }
        if len > MAX_MESSAGE {
            return Event::Reply(error(cid, ERR_INVALID_LEN));
        }
        let mut data = Vec::with_capacity(len);
        data.extend_from_slice(&report[7..7 + len.min(INIT_DATA)]);
        let r = Reassembly {
            cid,
            command,
            len,
            data,
            next_seq: 0,
            deadline: now + REASSEMBLY_TIMEOUT,
        };
        self.complete_or_wait(r)
    }

    fn on_continuation(&mut self, cid: u32, report: &Report, now: Instant) -> Event {
        // A continuation without a message in progress on its channel is ignored (§11.2.4).
        let Some(mut r) = self.reassembly.take() else {
            return Event::Nothing;
        };
        if r.cid != cid {
            self.reassembly = Some(r);
            return Event::Nothing;
        }
        let seq = report[4];
        if seq != r.next_seq {
            return Event::Reply(error(cid, ERR_INVALID_SEQ));
        }
        r.next_seq = r.next_seq.wrapping_add(1);
        let take = (r.len - r.data.len()).min(CONT_DATA);
        r.data.extend_from_slice(&report[5..5 + take]);
        r.deadline = now + REASSEMBLY_TIMEOUT;
        self.complete_or_wait(r)
    }

    fn complete_or_wait(&mut self, r: Reassembly) -> Event {
        if r.data.len() >= r.len {
            Event::Request {
                cid: r.cid,
                command: r.command,
                payload: r.data,
            }
        } else {
            self.reassembly = Some(r);
            Event::Nothing
        }
    }

    fn on_init(
        &mut self,
        cid: u32,
        len: usize,
        report: &Report,
        allocate: &mut dyn FnMut() -> u32,
    ) -> Event {
        if len != 8 {
            return Event::Reply(error(cid, ERR_INVALID_LEN));
        }
        let mut nonce = [0u8; 8];
        nonce.copy_from_slice(&report[7..15]);
        if cid == BROADCAST_CID {
            let new = allocate();
            if self.channels.len() >= MAX_CHANNELS {
                let old = self.channels.pop_front();
                if self.reassembly.as_ref().map(|r| r.cid) == old {
                    self.reassembly = None;
                }
            }
            self.channels.push_back(new);
            return Event::Reply(fragment(cid, cmd::INIT, &self.init_answer(&nonce, new)));
        }
        if !self.owns(cid) {
            return Event::Reply(error(cid, ERR_INVALID_CHANNEL));
        }
        if self.reassembly.as_ref().is_some_and(|r| r.cid == cid) {
            self.reassembly = None;
        }
        Event::Resync {
            cid,
            reply: fragment(cid, cmd::INIT, &self.init_answer(&nonce, cid)),
        }
    }

    fn init_answer(&self, nonce: &[u8; 8], new_cid: u32) -> [u8; 17] {
        let mut out = [0u8; 17];
        out[..8].copy_from_slice(nonce);
        out[8..12].copy_from_slice(&new_cid.to_be_bytes());
        out[12] = PROTOCOL_VERSION;
        out[13] = self.identity.major;
        out[14] = self.identity.minor;
        out[15] = self.identity.build;
        out[16] = self.identity.capabilities;
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ID: Identity = Identity {
        major: 1,
        minor: 2,
        build: 3,
        capabilities: CAPABILITY_CBOR | CAPABILITY_NMSG,
    };

    fn init_report(cid: u32, nonce: [u8; 8]) -> Report {
        fragment(cid, cmd::INIT, &nonce)[0]
    }

    fn open(f: &mut Frontend, now: Instant) -> u32 {
        static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0x1000);
        let ev = f.on_report(&init_report(BROADCAST_CID, [7; 8]), now, &mut || {
            NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
        });
        let Event::Reply(r) = ev else {
            panic!("INIT answered with {ev:?}")
        };
        assert_eq!(&r[0][..4], &BROADCAST_CID.to_be_bytes());
        assert_eq!(r[0][4], 0x80 | cmd::INIT);
        assert_eq!(&r[0][7..15], &[7; 8]);
        assert_eq!(r[0][19], 2);
        assert_eq!(r[0][23], CAPABILITY_CBOR | CAPABILITY_NMSG);
        u32::from_be_bytes([r[0][15], r[0][16], r[0][17], r[0][18]])
    }

    fn no_alloc() -> u32 {
        panic!("no allocation expected")
    }

    fn error_code(ev: &Event) -> Option<u8> {
        match ev {
            Event::Reply(r) if r[0][4] == 0x80 | cmd::ERROR => Some(r[0][7]),
            _ => None,
        }
    }

    #[test]
    fn requests_round_trip_at_every_size() {
        let now = Instant::now();
        for len in [0, 1, INIT_DATA, INIT_DATA + 1, 1000, MAX_MESSAGE] {
            let mut f = Frontend::new(ID);
            let cid = open(&mut f, now);
            let payload: Vec<u8> = (0..len).map(|i| (i % 251) as u8).collect();
            let reports = fragment(cid, cmd::CBOR, &payload);
            let mut last = Event::Nothing;
            for (i, r) in reports.iter().enumerate() {
                last = f.on_report(r, now, &mut no_alloc);
                if i + 1 < reports.len() {
                    assert_eq!(last, Event::Nothing);
                }
            }
            assert_eq!(
                last,
                Event::Request {
                    cid,
                    command: cmd::CBOR,
                    payload
                }
            );
        }
    }

    #[test]
    fn unknown_and_broadcast_channels_are_refused() {
        let now = Instant::now();
        let mut f = Frontend::new(ID);
        let cid = open(&mut f, now);
        let other = fragment(cid + 1, cmd::CBOR, &[4])[0];
        assert_eq!(
            error_code(&f.on_report(&other, now, &mut no_alloc)),
            Some(ERR_INVALID_CHANNEL)
        );
        let broadcast = fragment(BROADCAST_CID, cmd::CBOR, &[4])[0];
        assert_eq!(
            error_code(&f.on_report(&broadcast, now, &mut no_alloc)),
            Some(ERR_INVALID_CHANNEL)
        );
        // Another client's channel is not ours either.
        let mut g = Frontend::new(ID);
        assert_eq!(
            error_code(&g.on_report(&fragment(cid, cmd::CBOR, &[4])[0], now, &mut no_alloc)),
            Some(ERR_INVALID_CHANNEL)
        );
    }

    #[test]
    fn malformed_reports_get_errors_never_requests() {
        let now = Instant::now();
        let mut f = Frontend::new(ID);
        let cid = open(&mut f, now);
        // INIT with a length other than 8.
        let mut bad_init = init_report(BROADCAST_CID, [1; 8]);
        bad_init[6] = 9;
        assert_eq!(
            error_code(&f.on_report(&bad_init, now, &mut no_alloc)),
            Some(ERR_INVALID_LEN)
        );
        // Announcing more than CTAPHID can carry.
        let mut long = fragment(cid, cmd::CBOR, &[4])[0];
        long[5..7].copy_from_slice(&u16::MAX.to_be_bytes());
        assert_eq!(
            error_code(&f.on_report(&long, now, &mut no_alloc)),
            Some(ERR_INVALID_LEN)
        );
        // Continuations out of order.
        let reports = fragment(cid, cmd::CBOR, &[9; 200]);
        assert_eq!(f.on_report(&reports[0], now, &mut no_alloc), Event::Nothing);
        assert_eq!(
            error_code(&f.on_report(&reports[2], now, &mut no_alloc)),
            Some(ERR_INVALID_SEQ)
        );
        // The broken message is gone: its remaining continuations are ignored.
        assert_eq!(f.on_report(&reports[1], now, &mut no_alloc), Event::Nothing);
        assert_eq!(f.on_report(&reports[3], now, &mut no_alloc), Event::Nothing);
        // A continuation with its top bit pattern looking like seq 0 but no message: ignored.
        let stray = fragment(cid, cmd::CBOR, &[0; 100])[1];
        assert_eq!(f.on_report(&stray, now, &mut no_alloc), Event::Nothing);
        // A new init packet in the middle of a message on the same channel.
        assert_eq!(f.on_report(&reports[0], now, &mut no_alloc), Event::Nothing);
        assert_eq!(
            error_code(&f.on_report(&fragment(cid, cmd::CBOR, &[4])[0], now, &mut no_alloc)),
            Some(ERR_INVALID_SEQ)
        );
    }

    #[test]
    fn truncated_message_times_out() {
        let now = Instant::now();
        let mut f = Frontend::new(ID);
        let cid = open(&mut f, now);
        let reports = fragment(cid, cmd::CBOR, &[1; 100]);
        assert_eq!(f.on_report(&reports[0], now, &mut no_alloc), Event::Nothing);
        assert_eq!(f.next_deadline(), Some(now + REASSEMBLY_TIMEOUT));
        assert_eq!(f.on_timer(now), Event::Nothing);
        assert_eq!(
            error_code(&f.on_timer(now + REASSEMBLY_TIMEOUT)),
            Some(ERR_MSG_TIMEOUT)
        );
        // The late continuation completes nothing.
        assert_eq!(f.on_report(&reports[1], now, &mut no_alloc), Event::Nothing);
    }

    #[test]
    fn another_channel_is_busy_while_one_reassembles() {
        let now = Instant::now();
        let mut f = Frontend::new(ID);
        let a = open(&mut f, now);
        let b = open(&mut f, now);
        assert_ne!(a, b);
        let reports = fragment(a, cmd::CBOR, &[1; 100]);
        assert_eq!(f.on_report(&reports[0], now, &mut no_alloc), Event::Nothing);
        assert_eq!(
            error_code(&f.on_report(&fragment(b, cmd::CBOR, &[4])[0], now, &mut no_alloc)),
            Some(ERR_CHANNEL_BUSY)
        );
        // b's continuations do not feed a's message.
        let mut foreign = reports[1];
        foreign[..4].copy_from_slice(&b.to_be_bytes());
        assert_eq!(f.on_report(&foreign, now, &mut no_alloc), Event::Nothing);
        assert!(matches!(
            f.on_report(&reports[1], now, &mut no_alloc),
            Event::Request { cid, .. } if cid == a
        ));
    }

    #[test]
    fn cancel_and_resync() {
        let now = Instant::now();
        let mut f = Frontend::new(ID);
        let cid = open(&mut f, now);
        assert_eq!(
            f.on_report(&fragment(cid, cmd::CANCEL, &[])[0], now, &mut no_alloc),
            Event::Cancel { cid }
        );
        let ev = f.on_report(&init_report(cid, [3; 8]), now, &mut no_alloc);
        assert!(matches!(ev, Event::Resync { cid: c, .. } if c == cid));
    }

    #[test]
    fn oldest_channel_is_forgotten() {
        let now = Instant::now();
        let mut f = Frontend::new(ID);
        let first = open(&mut f, now);
        for _ in 0..MAX_CHANNELS {
            open(&mut f, now);
        }
        assert!(!f.owns(first));
    }

    #[test]
    fn fragment_uses_every_sequence_number() {
        let r = fragment(1, cmd::CBOR, &vec![0; MAX_MESSAGE]);
        assert_eq!(r.len(), 129);
        assert_eq!(r[128][4], 0x7F);
    }
}
