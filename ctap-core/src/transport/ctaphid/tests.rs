use super::*;
use crate::transport::device::mock::{self, frames, MockTransport};
use proptest::prelude::*;

const CID: u32 = 0x0102_0304;

fn open(dev: MockTransport) -> CtapHidChannel<MockTransport> {
    CtapHidChannel::open(dev).expect("INIT succeeds")
}

fn no_wait() -> impl FnMut(KeepaliveStatus) -> WaitDecision {
    |_| WaitDecision::Continue
}

#[test]
fn init_allocates_channel_and_reads_version() {
    let ch = open(mock::device(CID, |_, _| Vec::new()));
    assert_eq!(ch.channel_id(), CID);
    assert_eq!(ch.version().capabilities, 0x05);
    assert_eq!((ch.version().major, ch.version().minor), (5, 4));
}

#[test]
fn init_nonce_mismatch_is_a_typed_error() {
    let dev = MockTransport::new(|r| {
        mock::init_response(&[0xEE; 8], CID, 0x05)
            .into_iter()
            .filter(|_| r[4] == 0x86)
            .collect()
    });
    match CtapHidChannel::open(dev) {
        Err(CtapHidError::Misbehaved(FramingViolation::InitNonceMismatch)) => {}
        other => panic!("expected InitNonceMismatch, got {:?}", other.err()),
    }
}

#[test]
fn init_ignores_other_clients_answers_before_ours() {
    let dev = MockTransport::new(|r| {
        let mut out = mock::init_response(&[0xEE; 8], 0x0909_0909, 0x05);
        out.extend(mock::init_response(&r[7..15], CID, 0x05));
        out
    });
    assert_eq!(open(dev).channel_id(), CID);
}

#[test]
fn device_without_cbor_is_refused() {
    let dev = MockTransport::new(|r| mock::init_response(&r[7..15], CID, 0x01));
    assert!(matches!(
        CtapHidChannel::open(dev),
        Err(CtapHidError::NotCtap2)
    ));
}

#[test]
fn broadcast_channel_allocation_is_refused() {
    let dev = MockTransport::new(|r| mock::init_response(&r[7..15], BROADCAST_CID, 0x05));
    assert!(matches!(
        CtapHidChannel::open(dev),
        Err(CtapHidError::Misbehaved(
            FramingViolation::BadChannelAllocated(_)
        ))
    ));
}

#[test]
fn multi_packet_ping_round_trips_and_fragments_correctly() {
    let mut ch = open(mock::device(CID, |c, data| frames(CID, c, data)));
    let payload: Vec<u8> = (0..1000u32).map(|i| (i % 251) as u8).collect();
    ch.ping(&payload).unwrap();
    // INIT + 1 init packet + ceil((1000-57)/59) = 16 continuation packets.
    assert_eq!(ch.transport.written.len(), 1 + 1 + 16);
    let seqs: Vec<u8> = ch.transport.written[2..].iter().map(|r| r[4]).collect();
    assert_eq!(seqs, (0..16).collect::<Vec<u8>>());
}

#[test]
fn packets_for_other_channels_are_ignored() {
    let mut ch = open(mock::device(CID, |c, data| {
        let mut out = frames(0x0A0B_0C0D, c, b"someone else's");
        out.extend(frames(CID, c, data));
        out
    }));
    ch.ping(b"mine").unwrap();
}

#[test]
fn keepalives_reach_the_caller_and_cancel_stops_the_wait() {
    let mut ch = open(mock::device(CID, |c, _| {
        let mut out = frames(CID, cmd::KEEPALIVE, &[1]);
        out.extend(frames(CID, cmd::KEEPALIVE, &[2]));
        out.extend(frames(CID, c, &[0]));
        out
    }));
    let mut seen = Vec::new();
    let resp = ch
        .call(cmd::CBOR, &[4], Duration::from_secs(1), &mut |s| {
            seen.push(s);
            WaitDecision::Continue
        })
        .unwrap();
    assert_eq!(resp, vec![0]);
    assert_eq!(
        seen,
        vec![KeepaliveStatus::Processing, KeepaliveStatus::UpNeeded]
    );

    let err = ch
        .call(cmd::CBOR, &[4], Duration::from_secs(1), &mut |s| {
            if s == KeepaliveStatus::UpNeeded {
                WaitDecision::Cancel
            } else {
                WaitDecision::Continue
            }
        })
        .unwrap_err();
    assert!(matches!(err, CtapHidError::Cancelled));
    let last = ch.transport.written.last().unwrap();
    assert_eq!(last[4], 0x80 | cmd::CANCEL, "CANCEL was sent");
}

/// A cancelled request's late answer (the key answers it with CTAP2_ERR_KEEPALIVE_CANCEL) is
/// read away before the next request, not returned as that request's answer.
#[test]
fn a_cancelled_requests_late_answer_is_not_taken_for_the_next_ones() {
    let mut requests = 0;
    let mut ch = open(mock::device(CID, move |c, _| {
        requests += 1;
        if requests == 1 {
            // Waits for a touch; its answer to the CANCEL is already on the way.
            let mut out = frames(CID, cmd::KEEPALIVE, &[2]);
            out.extend(frames(CID, c, &[0x2D]));
            out
        } else {
            frames(CID, c, &[0x00, 0xA0])
        }
    }));
    let err = ch
        .call(cmd::CBOR, &[4], Duration::from_secs(1), &mut |_| {
            WaitDecision::Cancel
        })
        .unwrap_err();
    assert!(matches!(err, CtapHidError::Cancelled), "{err}");
    let resp = ch
        .call(cmd::CBOR, &[4], Duration::from_secs(1), &mut no_wait())
        .unwrap();
    assert_eq!(
        resp,
        vec![0x00, 0xA0],
        "the second request got its own answer"
    );
}

#[test]
fn device_error_is_typed() {
    let mut ch = open(mock::device(CID, |_, _| frames(CID, cmd::ERROR, &[0x01])));
    assert!(matches!(
        ch.call(cmd::CBOR, &[4], Duration::from_secs(1), &mut no_wait()),
        Err(CtapHidError::Device(HidErrorCode::InvalidCmd))
    ));
}

#[test]
fn out_of_order_sequence_is_rejected() {
    let mut ch = open(mock::device(CID, |c, _| {
        let mut out = frames(CID, c, &[7u8; 200]);
        out[1][4] = 1; // first continuation claims seq 1
        out
    }));
    assert!(matches!(
        ch.call(cmd::CBOR, &[4], Duration::from_secs(1), &mut no_wait()),
        Err(CtapHidError::Misbehaved(
            FramingViolation::OutOfOrderSequence {
                expected: 0,
                got: 1
            }
        ))
    ));
}

#[test]
fn announced_length_beyond_max_msg_size_is_rejected() {
    let mut ch = open(mock::device(CID, |c, _| {
        let mut out = frames(CID, c, &[0u8; 10]);
        out[0][5..7].copy_from_slice(&5000u16.to_be_bytes());
        out
    }));
    assert!(matches!(
        ch.call(cmd::CBOR, &[4], Duration::from_secs(1), &mut no_wait()),
        Err(CtapHidError::Misbehaved(FramingViolation::MessageTooLong {
            announced: 5000,
            max: 1024
        }))
    ));
}

#[test]
fn wrong_response_command_and_stray_continuation_are_rejected() {
    let mut ch = open(mock::device(CID, |_, _| frames(CID, cmd::MSG, &[0])));
    assert!(matches!(
        ch.call(cmd::CBOR, &[4], Duration::from_secs(1), &mut no_wait()),
        Err(CtapHidError::Misbehaved(
            FramingViolation::UnexpectedCommand {
                sent: cmd::CBOR,
                got: cmd::MSG
            }
        ))
    ));
    let mut ch = open(mock::device(CID, |c, _| {
        frames(CID, c, &[0u8; 100]).split_off(1)
    }));
    assert!(matches!(
        ch.call(cmd::CBOR, &[4], Duration::from_secs(1), &mut no_wait()),
        Err(CtapHidError::Misbehaved(FramingViolation::UnexpectedPacket))
    ));
}

#[test]
fn peer_closing_mid_message_is_a_transport_error() {
    let mut dev = mock::device(CID, |c, _| {
        let mut out = frames(CID, c, &[1u8; 300]);
        out.truncate(2);
        out
    });
    dev.closed_when_empty = true;
    let mut ch = open(dev);
    assert!(matches!(
        ch.call(cmd::CBOR, &[4], Duration::from_secs(1), &mut no_wait()),
        Err(CtapHidError::Transport(
            crate::transport::device::TransportError::Disconnected
        ))
    ));
}

#[test]
fn silent_device_times_out() {
    let mut ch = open(mock::device(CID, |_, _| Vec::new()));
    assert!(ch
        .call(cmd::CBOR, &[4], Duration::from_millis(50), &mut no_wait())
        .is_err());
}

#[test]
fn request_larger_than_max_msg_size_is_refused_before_sending() {
    let mut ch = open(mock::device(CID, |_, _| Vec::new()));
    let before = ch.transport.written.len();
    assert!(matches!(
        ch.call(
            cmd::CBOR,
            &[0u8; 2000],
            Duration::from_secs(1),
            &mut no_wait()
        ),
        Err(CtapHidError::RequestTooLong {
            len: 2000,
            max: 1024
        })
    ));
    assert_eq!(ch.transport.written.len(), before);
}

proptest! {
    /// Any message survives fragmentation and reassembly unchanged.
    #[test]
    fn fragmentation_round_trips(payload in proptest::collection::vec(any::<u8>(), 0..MAX_MESSAGE)) {
        let reports = frames(CID, cmd::CBOR, &payload);
        let mut r = Reassembler::start(&reports[0], MAX_MESSAGE).unwrap();
        for rep in &reports[1..] {
            prop_assert!(!r.is_complete());
            r.push(rep).unwrap();
        }
        prop_assert!(r.is_complete());
        prop_assert_eq!(r.finish(), payload);
    }

    /// Arbitrary reports never panic the reassembler; they give data or a typed error.
    #[test]
    fn reassembler_never_panics(first in proptest::array::uniform32(any::<u8>()), rest in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 64), 0..8), max in 0usize..8000) {
        let mut init = [0u8; 64];
        init[..32].copy_from_slice(&first);
        if let Ok(mut r) = Reassembler::start(&init, max) {
            for v in rest {
                let mut rep = [0u8; 64];
                rep.copy_from_slice(&v);
                if r.is_complete() || r.push(&rep).is_err() { break; }
            }
        }
    }
}
