//! A scripted transport for unit tests: records every report written and answers through a
//! responder closure, so tests can play a well-behaved or a hostile device.

use std::collections::VecDeque;
use std::time::Duration;

use super::{Report, Transport, TransportError, REPORT_SIZE};

type Responder = Box<dyn FnMut(&Report) -> Vec<Report> + Send>;

pub(crate) struct MockTransport {
    responder: Responder,
    pending: VecDeque<Report>,
    pub written: Vec<Report>,
    /// When set, an empty queue reads as a closed connection instead of a timeout.
    pub closed_when_empty: bool,
    /// When set, an empty queue waits out the read's timeout (as a silent device does) before
    /// reporting it, and every report read costs this long (a slow device).
    pub real_time: Option<Duration>,
}

impl MockTransport {
    pub fn new(responder: impl FnMut(&Report) -> Vec<Report> + Send + 'static) -> Self {
        MockTransport {
            responder: Box::new(responder),
            pending: VecDeque::new(),
            written: Vec::new(),
            closed_when_empty: false,
            real_time: None,
        }
    }
}

impl Transport for MockTransport {
    fn write_report(&mut self, report: &Report, _timeout: Duration) -> Result<(), TransportError> {
        self.written.push(*report);
        let replies = (self.responder)(report);
        self.pending.extend(replies);
        Ok(())
    }

    fn read_report(&mut self, timeout: Duration) -> Result<Report, TransportError> {
        if let Some(per_report) = self.real_time {
            let wait = if self.pending.is_empty() {
                timeout
            } else {
                per_report.min(timeout)
            };
            std::thread::sleep(wait);
            if per_report > timeout {
                return Err(TransportError::Timeout);
            }
        }
        match self.pending.pop_front() {
            Some(r) => Ok(r),
            None if self.closed_when_empty => Err(TransportError::Disconnected),
            None => Err(TransportError::Timeout),
        }
    }

    /// With `real_time`, an empty queue is a silent device: the wait is slept out.
    fn wait_readable(&mut self, timeout: Duration) -> Result<bool, TransportError> {
        if self.pending.is_empty() && !self.closed_when_empty && self.real_time.is_some() {
            std::thread::sleep(timeout);
            return Ok(false);
        }
        Ok(true)
    }

    fn describe(&self) -> String {
        "mock".into()
    }
}

/// Build the reports of one message (initialization + continuation packets).
pub fn frames(cid: u32, command: u8, payload: &[u8]) -> Vec<Report> {
    let mut out = Vec::new();
    let mut r = [0u8; REPORT_SIZE];
    r[..4].copy_from_slice(&cid.to_be_bytes());
    r[4] = 0x80 | command;
    r[5..7].copy_from_slice(&u16::try_from(payload.len()).unwrap().to_be_bytes());
    let first = payload.len().min(57);
    r[7..7 + first].copy_from_slice(&payload[..first]);
    out.push(r);
    for (seq, chunk) in payload[first..].chunks(59).enumerate() {
        let mut r = [0u8; REPORT_SIZE];
        r[..4].copy_from_slice(&cid.to_be_bytes());
        r[4] = u8::try_from(seq).unwrap();
        r[5..5 + chunk.len()].copy_from_slice(chunk);
        out.push(r);
    }
    out
}

/// The INIT response a well-behaved device sends for `nonce`, allocating `cid`.
pub fn init_response(nonce: &[u8], cid: u32, capabilities: u8) -> Vec<Report> {
    let mut payload = nonce[..8].to_vec();
    payload.extend_from_slice(&cid.to_be_bytes());
    payload.extend_from_slice(&[2, 5, 4, 3, capabilities]);
    frames(0xFFFF_FFFF, 0x06, &payload)
}

/// A device that allocates `cid` on INIT and hands every other request to `on_request`
/// (already reassembled: command and payload).
pub fn device(
    cid: u32,
    mut on_request: impl FnMut(u8, &[u8]) -> Vec<Report> + Send + 'static,
) -> MockTransport {
    let mut partial: Option<(u8, usize, Vec<u8>)> = None;
    MockTransport::new(move |r| {
        if r[..4] == [0xFF; 4] && r[4] == 0x86 {
            return init_response(&r[7..15], cid, 0x05);
        }
        if r[4] & 0x80 != 0 {
            let len = usize::from(u16::from_be_bytes([r[5], r[6]]));
            let mut data = r[7..7 + len.min(57)].to_vec();
            data.truncate(len);
            partial = Some((r[4] & 0x7F, len, data));
        } else if let Some((_, _, data)) = partial.as_mut() {
            data.extend_from_slice(&r[5..]);
        }
        match partial.take() {
            Some((c, len, mut data)) if data.len() >= len => {
                data.truncate(len);
                if c == 0x11 {
                    return Vec::new(); // CANCEL has no answer
                }
                on_request(c, &data)
            }
            other => {
                partial = other;
                Vec::new()
            }
        }
    })
}
