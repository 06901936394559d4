//! The channel's deadline against hostile timing: keepalives forever, BUSY forever, a response
//! that stops mid-message; and CANCEL whenever a request is abandoned.

use super::*;
use crate::transport::device::mock::{self, frames, MockTransport};

const CID: u32 = 0x0A0B_0C0D;

fn no_wait() -> impl FnMut(KeepaliveStatus) -> WaitDecision {
    |_| WaitDecision::Continue
}

fn cancels_sent(ch: &CtapHidChannel<MockTransport>) -> usize {
    ch.transport
        .written
        .iter()
        .filter(|r| r[..4] == CID.to_be_bytes() && r[4] == 0x80 | cmd::CANCEL)
        .count()
}

#[test]
fn keepalives_forever_end_at_the_channel_deadline_with_cancel() {
    let mut dev = mock::device(CID, |_, _| {
        (0..10_000)
            .flat_map(|_| frames(CID, cmd::KEEPALIVE, &[1]))
            .collect()
    });
    // Each keepalive takes 20 ms to arrive, as a real key's would.
    dev.real_time = Some(Duration::from_millis(20));
    let mut ch = CtapHidChannel::open(dev).unwrap();
    ch.set_deadline(Some(Instant::now() + Duration::from_millis(300)));
    let start = Instant::now();
    // The request's own limit (10 s, as for a quick command) is far beyond the deadline.
    let err = ch
        .call(cmd::CBOR, &[4], Duration::from_secs(10), &mut no_wait())
        .unwrap_err();
    let took = start.elapsed();
    assert!(matches!(err, CtapHidError::Timeout), "{err:?}");
    assert!(took < Duration::from_millis(800), "took {took:?}");
    assert_eq!(cancels_sent(&ch), 1, "CANCEL after giving up");
}

#[test]
fn busy_forever_ends_at_the_deadline_without_hammering() {
    let mut ch =
        CtapHidChannel::open(mock::device(CID, |_, _| frames(CID, cmd::ERROR, &[0x06]))).unwrap();
    ch.set_deadline(Some(Instant::now() + Duration::from_millis(350)));
    let start = Instant::now();
    let err = ch
        .call(cmd::CBOR, &[4], Duration::from_secs(30), &mut no_wait())
        .unwrap_err();
    let took = start.elapsed();
    assert!(
        matches!(
            err,
            CtapHidError::Timeout | CtapHidError::Device(HidErrorCode::ChannelBusy)
        ),
        "{err:?}"
    );
    assert!(took < Duration::from_millis(800), "took {took:?}");
    let requests = ch
        .transport
        .written
        .iter()
        .filter(|r| r[4] == 0x80 | cmd::CBOR)
        .count();
    assert!((2..=6).contains(&requests), "{requests} attempts");
    // The key never took the request: nothing to cancel.
    assert_eq!(cancels_sent(&ch), 0);
}

#[test]
fn a_response_that_stalls_mid_message_is_cancelled() {
    let mut ch = CtapHidChannel::open(mock::device(CID, |c, _| {
        let mut out = frames(CID, c, &[1u8; 300]);
        out.truncate(2);
        out
    }))
    .unwrap();
    let err = ch
        .call(cmd::CBOR, &[4], Duration::from_secs(1), &mut no_wait())
        .unwrap_err();
    assert!(
        matches!(err, CtapHidError::Transport(TransportError::Timeout)),
        "{err:?}"
    );
    assert_eq!(cancels_sent(&ch), 1, "CANCEL after a stalled message");
}

#[test]
fn a_device_error_or_a_vanished_device_gets_no_cancel() {
    let mut ch =
        CtapHidChannel::open(mock::device(CID, |_, _| frames(CID, cmd::ERROR, &[0x01]))).unwrap();
    assert!(ch
        .call(cmd::CBOR, &[4], Duration::from_secs(1), &mut no_wait())
        .is_err());
    assert_eq!(cancels_sent(&ch), 0);
}

#[test]
fn nothing_is_sent_once_the_deadline_has_passed() {
    let mut ch = CtapHidChannel::open(mock::device(CID, |c, _| frames(CID, c, &[0]))).unwrap();
    ch.set_deadline(Some(Instant::now()));
    let before = ch.transport.written.len();
    assert!(matches!(
        ch.call(cmd::CBOR, &[4], Duration::from_secs(5), &mut no_wait()),
        Err(CtapHidError::Timeout)
    ));
    assert_eq!(ch.transport.written.len(), before);
}

#[test]
fn init_is_bounded_by_the_deadline() {
    let mut dev = mock::device(CID, |_, _| Vec::new());
    dev.real_time = Some(Duration::from_millis(500));
    let start = Instant::now();
    let r = CtapHidChannel::open_until(dev, Some(Instant::now() + Duration::from_millis(100)));
    assert!(matches!(r, Err(CtapHidError::Timeout)), "{:?}", r.err());
    assert!(
        start.elapsed() < Duration::from_millis(400),
        "{:?}",
        start.elapsed()
    );
}

/// A key that sends nothing while it waits (no keepalives) still hears a cancel at once: the
/// wait wakes every [`QUIET_SLICE`] and asks the handler ([`KeepaliveStatus::Quiet`]), instead
/// of sleeping until the key answers, the silence limit or the deadline.
#[test]
fn a_silent_key_is_cancelled_within_a_slice() {
    let mut dev = mock::device(CID, |_, _| Vec::new());
    dev.real_time = Some(Duration::from_millis(1));
    let mut ch = CtapHidChannel::open(dev).unwrap();
    ch.set_deadline(Some(Instant::now() + Duration::from_secs(2)));
    let start = Instant::now();
    let mut asked = Vec::new();
    let err = ch
        .call(cmd::CBOR, &[2], Duration::from_secs(10), &mut |s| {
            asked.push(s);
            if start.elapsed() >= Duration::from_millis(150) {
                WaitDecision::Cancel
            } else {
                WaitDecision::Continue
            }
        })
        .unwrap_err();
    let took = start.elapsed();
    assert!(matches!(err, CtapHidError::Cancelled), "{err:?}");
    assert!(took < Duration::from_millis(400), "took {took:?}");
    assert!(
        asked.iter().all(|s| *s == KeepaliveStatus::Quiet),
        "{asked:?}"
    );
    assert_eq!(cancels_sent(&ch), 1, "CANCEL sent to the silent key");
}
