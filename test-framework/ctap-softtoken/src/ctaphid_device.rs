//! CTAPHID framing, device side: packet layout, reassembly of requests, fragmentation of
//! responses (CTAP 2.1 §11.2). Pure functions and small state machines, no I/O, so every
//! rule can be unit-tested; the connection loop in `connection.rs` drives them.
//!
//! Wire constants the client side already defines (command bytes, the broadcast channel,
//! capability bits, report and message sizes) come from `ctap_core::transport::ctaphid`, so both ends of
//! our own tests agree by construction.

/// The most a CTAPHID message can carry at all (one init packet and 128 continuations).
pub use ctap_core::transport::ctaphid::MAX_MESSAGE as MAX_WIRE_MESSAGE;
pub use ctap_core::transport::ctaphid::{cmd, BROADCAST_CID, CAPABILITY_CBOR, CAPABILITY_WINK};
/// Every HID report is exactly this long, in both directions.
pub use ctap_core::transport::device::{Report as Packet, REPORT_SIZE as PACKET_SIZE};

/// Payload bytes in an initialization packet (after CID, CMD, BCNT).
pub const INIT_DATA: usize = PACKET_SIZE - 7;
/// Payload bytes in a continuation packet (after CID, SEQ).
pub const CONT_DATA: usize = PACKET_SIZE - 5;
/// Continuation sequence numbers run 0..=0x7F.
pub const MAX_SEQ: u8 = 0x7F;

// ERROR codes.
pub const ERR_INVALID_CMD: u8 = 0x01;
pub const ERR_INVALID_LEN: u8 = 0x03;
pub const ERR_INVALID_SEQ: u8 = 0x04;
pub const ERR_MSG_TIMEOUT: u8 = 0x05;
pub const ERR_CHANNEL_BUSY: u8 = 0x06;
pub const ERR_INVALID_CHANNEL: u8 = 0x0B;
pub const ERR_OTHER: u8 = 0x7F;

// KEEPALIVE status.
pub const KEEPALIVE_PROCESSING: u8 = 0x01;
pub const KEEPALIVE_UPNEEDED: u8 = 0x02;

// INIT response.
pub const PROTOCOL_VERSION: u8 = 2;
/// "Does not implement CTAPHID_MSG".
pub const CAPABILITY_NMSG: u8 = 0x08;

/// A received report, decoded just enough to route it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Frame<'p> {
    Init {
        cid: u32,
        cmd: u8,
        /// Total message length announced by BCNT.
        len: usize,
        /// The [`INIT_DATA`] payload bytes of the packet.
        data: &'p [u8],
    },
    Cont {
        cid: u32,
        seq: u8,
        /// The [`CONT_DATA`] payload bytes of the packet.
        data: &'p [u8],
    },
}

/// Split a report into its header fields. Any 64 bytes are a valid frame at this level.
pub fn parse(packet: &Packet) -> Frame<'_> {
    let cid = u32::from_be_bytes([packet[0], packet[1], packet[2], packet[3]]);
    if packet[4] & 0x80 != 0 {
        Frame::Init {
            cid,
            cmd: packet[4] & 0x7F,
            len: usize::from(u16::from_be_bytes([packet[5], packet[6]])),
            data: &packet[7..],
        }
    } else {
        Frame::Cont {
            cid,
            seq: packet[4],
            data: &packet[5..],
        }
    }
}

/// Why a continuation packet could not be absorbed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SeqError {
    /// Wrong sequence number: the message is lost, answer ERR_INVALID_SEQ.
    OutOfOrder { expected: u8, got: u8 },
}

/// A request being reassembled from an init packet and its continuations.
#[derive(Debug)]
pub struct Reassembly {
    pub cid: u32,
    pub cmd: u8,
    len: usize,
    data: Vec<u8>,
    next_seq: u8,
}

impl Reassembly {
    /// Start from an init packet. The caller has checked `len` against the size limit.
    pub fn start(cid: u32, cmd: u8, len: usize, init: &[u8]) -> Reassembly {
        let mut data = Vec::with_capacity(len);
        data.extend_from_slice(&init[..len.min(init.len())]);
        Reassembly {
            cid,
            cmd,
            len,
            data,
            next_seq: 0,
        }
    }

    pub fn is_complete(&self) -> bool {
        self.data.len() >= self.len
    }

    /// Absorb a continuation packet for this channel.
    pub fn push(&mut self, seq: u8, cont: &[u8]) -> Result<(), SeqError> {
        if seq != self.next_seq || seq > MAX_SEQ {
            return Err(SeqError::OutOfOrder {
                expected: self.next_seq,
                got: seq,
            });
        }
        let missing = self.len.saturating_sub(self.data.len());
        self.data
            .extend_from_slice(&cont[..missing.min(cont.len())]);
        self.next_seq = self.next_seq.wrapping_add(1);
        Ok(())
    }

    /// The complete message payload.
    pub fn into_payload(self) -> Vec<u8> {
        self.data
    }
}

/// Split a response into reports. `payload` must be at most [`MAX_WIRE_MESSAGE`] bytes; longer
/// payloads are cut there (the engine never produces them).
pub fn fragment(cid: u32, cmd: u8, payload: &[u8]) -> Vec<Packet> {
    let payload = &payload[..payload.len().min(MAX_WIRE_MESSAGE)];
    let len = u16::try_from(payload.len()).unwrap_or(u16::MAX);
    let mut packets = Vec::with_capacity(1 + payload.len().saturating_sub(INIT_DATA) / CONT_DATA);

    let mut first = [0u8; PACKET_SIZE];
    first[..4].copy_from_slice(&cid.to_be_bytes());
    first[4] = 0x80 | cmd;
    first[5..7].copy_from_slice(&len.to_be_bytes());
    let (head, mut rest) = payload.split_at(payload.len().min(INIT_DATA));
    first[7..7 + head.len()].copy_from_slice(head);
    packets.push(first);

    let mut seq = 0u8;
    while !rest.is_empty() {
        let (chunk, tail) = rest.split_at(rest.len().min(CONT_DATA));
        let mut packet = [0u8; PACKET_SIZE];
        packet[..4].copy_from_slice(&cid.to_be_bytes());
        packet[4] = seq;
        packet[5..5 + chunk.len()].copy_from_slice(chunk);
        packets.push(packet);
        seq = seq.wrapping_add(1);
        rest = tail;
    }
    packets
}

/// The INIT response payload: nonce, new channel id, versions, capabilities.
pub fn init_response(nonce: &[u8; 8], new_cid: u32, capabilities: u8) -> [u8; 17] {
    let mut out = [0u8; 17];
    out[..8].copy_from_slice(nonce);
    out[8..12].copy_from_slice(&new_cid.to_be_bytes());
    out[12] = PROTOCOL_VERSION;
    let version = |s: &str| s.parse::<u8>().unwrap_or(0);
    out[13] = version(env!("CARGO_PKG_VERSION_MAJOR"));
    out[14] = version(env!("CARGO_PKG_VERSION_MINOR"));
    out[15] = version(env!("CARGO_PKG_VERSION_PATCH"));
    out[16] = capabilities;
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fragment_and_reassemble_round_trip() {
        for len in [0, 1, INIT_DATA, INIT_DATA + 1, 1000, MAX_WIRE_MESSAGE] {
            let payload: Vec<u8> = (0..len).map(|i| (i % 251) as u8).collect();
            let packets = fragment(0x0102_0304, cmd::PING, &payload);
            let Frame::Init {
                cid,
                cmd,
                len: announced,
                data,
            } = parse(&packets[0])
            else {
                panic!("first packet must be an init packet");
            };
            assert_eq!((cid, cmd, announced), (0x0102_0304, cmd::PING, len));
            let mut r = Reassembly::start(cid, cmd, announced, data);
            for packet in &packets[1..] {
                let Frame::Cont { seq, data, .. } = parse(packet) else {
                    panic!("continuation expected");
                };
                r.push(seq, data).expect("in order");
            }
            assert!(r.is_complete());
            assert_eq!(r.into_payload(), payload);
        }
    }

    #[test]
    fn max_message_uses_all_sequence_numbers() {
        let packets = fragment(1, cmd::CBOR, &vec![0; MAX_WIRE_MESSAGE]);
        assert_eq!(packets.len(), 129);
        assert_eq!(packets[128][4], MAX_SEQ);
    }

    #[test]
    fn out_of_order_continuation_is_rejected() {
        let mut r = Reassembly::start(1, cmd::PING, 200, &[0; INIT_DATA]);
        assert_eq!(
            r.push(1, &[0; CONT_DATA]),
            Err(SeqError::OutOfOrder {
                expected: 0,
                got: 1
            })
        );
    }

    #[test]
    fn init_response_layout() {
        let r = init_response(&[1, 2, 3, 4, 5, 6, 7, 8], 0xAABB_CCDD, CAPABILITY_CBOR);
        assert_eq!(&r[..8], &[1, 2, 3, 4, 5, 6, 7, 8]);
        assert_eq!(&r[8..12], &[0xAA, 0xBB, 0xCC, 0xDD]);
        assert_eq!(r[12], PROTOCOL_VERSION);
        assert_eq!(r[16], CAPABILITY_CBOR);
    }
}
