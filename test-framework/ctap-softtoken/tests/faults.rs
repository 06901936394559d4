//! `--fault`: enroll normally, restart with a fault, and see getAssertion misbehave.

mod common;

use std::path::Path;
use std::time::Duration;

use ciborium::Value;
use common::*;

/// Enroll on a fresh state, stop, and return the state path with the credential.
fn enrolled(dir: &Path) -> (std::path::PathBuf, Credential) {
    let state = dir.join("state");
    let token = start_token(dir, &state, &[]);
    let credential = enroll(&token);
    assert!(token.stop().success());
    (state, credential)
}

fn with_fault(dir: &Path, state: &Path, kind: &str) -> Softtoken {
    start_token(dir, state, &["--fault", kind])
}

fn send_get_assertion(hid: &mut Hid, credential: &Credential) {
    let mut request = vec![0x02];
    ciborium::into_writer(
        &get_assertion_request([2; 32], &credential.id),
        &mut request,
    )
    .expect("encode");
    let cid = hid.cid;
    hid.send(cid, CMD_CBOR, &request);
}

/// Other commands are untouched by a fault.
fn get_info_still_works(token: &Softtoken) {
    let mut hid = Hid::open(&token.socket);
    assert_eq!(hid.cbor(0x04, None).0, 0);
}

#[test]
fn corrupt_signature_flips_one_signature_byte() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (state, credential) = enrolled(dir.path());
    let token = with_fault(dir.path(), &state, "corrupt-signature");
    get_info_still_works(&token);
    let (status, body) = assert_with(&token, &credential);
    assert_eq!(status, 0);
    // Still canonical, well-formed CBOR with a signature of the usual DER shape...
    let response = decode(&body);
    let signature = member(&response, 3).as_bytes().expect("signature");
    assert_eq!(signature[0], 0x31, "first DER byte 0x30 flipped to 0x31");
    let mut reencoded = Vec::new();
    ciborium::into_writer(&response, &mut reencoded).expect("encode");
    assert_eq!(reencoded, body, "canonical encoding");
}

#[test]
fn bad_status_answers_an_unknown_status() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (state, credential) = enrolled(dir.path());
    let token = with_fault(dir.path(), &state, "bad-status");
    get_info_still_works(&token);
    let (status, body) = assert_with(&token, &credential);
    assert_eq!(status, 0xF3);
    assert!(body.is_empty());
}

#[test]
fn malformed_cbor_is_not_cbor() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (state, credential) = enrolled(dir.path());
    let token = with_fault(dir.path(), &state, "malformed-cbor");
    let (status, body) = assert_with(&token, &credential);
    assert_eq!(status, 0);
    assert!(ciborium::from_reader::<Value, _>(body.as_slice()).is_err());
}

#[test]
fn drop_connection_closes_without_answer() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (state, credential) = enrolled(dir.path());
    let token = with_fault(dir.path(), &state, "drop-connection");
    let mut hid = Hid::open(&token.socket);
    send_get_assertion(&mut hid, &credential);
    let err = hid.read_packet().expect_err("connection must close");
    assert_eq!(err.kind(), std::io::ErrorKind::UnexpectedEof);
    get_info_still_works(&token);
}

#[test]
fn truncate_report_sends_a_short_report_then_closes() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (state, credential) = enrolled(dir.path());
    let token = with_fault(dir.path(), &state, "truncate-report");
    let mut hid = Hid::open(&token.socket);
    send_get_assertion(&mut hid, &credential);
    let mut received = Vec::new();
    loop {
        let mut buf = [0u8; 64];
        let n = std::io::Read::read(&mut hid.stream, &mut buf).expect("read");
        if n == 0 {
            break;
        }
        received.extend_from_slice(&buf[..n]);
    }
    // Keepalives are whole reports; the answer is not.
    assert_ne!(
        received.len() % 64,
        0,
        "a short report: {} bytes",
        received.len()
    );
}

#[test]
fn wrong_channel_answers_on_another_channel() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (state, credential) = enrolled(dir.path());
    let token = with_fault(dir.path(), &state, "wrong-channel");
    let mut hid = Hid::open(&token.socket);
    send_get_assertion(&mut hid, &credential);
    let reply = loop {
        let message = hid.recv_message();
        if message.cmd != CMD_KEEPALIVE {
            break message;
        }
    };
    assert_eq!(reply.cmd, CMD_CBOR);
    assert_ne!(reply.cid, hid.cid);
    assert_eq!(reply.data[0], 0, "a real, successful assertion");
}

#[test]
fn stall_keepalive_never_answers() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (state, credential) = enrolled(dir.path());
    let token = with_fault(dir.path(), &state, "stall-keepalive");
    let mut hid = Hid::open(&token.socket);
    hid.stream
        .set_read_timeout(Some(Duration::from_secs(2)))
        .expect("timeout");
    send_get_assertion(&mut hid, &credential);
    let started = std::time::Instant::now();
    let mut keepalives = 0;
    while started.elapsed() < Duration::from_millis(800) {
        let message = hid.recv_message();
        assert_eq!(message.cmd, CMD_KEEPALIVE);
        assert_eq!(message.data, vec![1], "PROCESSING");
        keepalives += 1;
    }
    assert!(keepalives >= 5, "{keepalives}");
    // Other connections are not blocked by the stalled one.
    get_info_still_works(&token);
}
