//! The authenticator behind the socket: secrets, persistence, presence, process behaviour.

mod common;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::*;

const CTAP2_ERR_KEEPALIVE_CANCEL: u8 = 0x2D;
const CTAP2_ERR_USER_ACTION_TIMEOUT: u8 = 0x2F;

#[test]
fn two_state_files_are_two_different_keys() {
    let dir = tempfile::tempdir().expect("tempdir");
    let a = start_token(dir.path(), &dir.path().join("a"), &[]);
    let b = start_token(dir.path(), &dir.path().join("b"), &[]);
    let cred_a = enroll(&a);
    let cred_b = enroll(&b);
    assert_ne!(cred_a.id, cred_b.id);
    assert_ne!(cred_a.public_key, cred_b.public_key);

    // The credential of one key is unknown to the other: the "wrong key" case.
    let (status, _) = assert_with(&b, &cred_a);
    assert_eq!(status, 0x2E, "CTAP2_ERR_NO_CREDENTIALS");
    let (status, _) = assert_with(&a, &cred_a);
    assert_eq!(status, 0);
}

#[test]
fn restart_keeps_credential_and_counter() {
    let dir = tempfile::tempdir().expect("tempdir");
    let state = dir.path().join("state");
    let token = start_token(dir.path(), &state, &[]);
    let credential = enroll(&token);
    let (status, body) = assert_with(&token, &credential);
    assert_eq!(status, 0);
    let before = assertion_counter(&body);
    assert!(token.stop().success());

    let token = start_token(dir.path(), &state, &[]);
    let (status, body) = assert_with(&token, &credential);
    assert_eq!(status, 0, "credential survives a restart");
    let after = assertion_counter(&body);
    assert!(
        after > before,
        "counter survives a restart: {before} then {after}"
    );
}

#[test]
fn copied_state_file_is_a_cloned_key() {
    let dir = tempfile::tempdir().expect("tempdir");
    let state = dir.path().join("state");
    let token = start_token(dir.path(), &state, &[]);
    let credential = enroll(&token);
    let (_, body) = assert_with(&token, &credential);
    let at_copy = assertion_counter(&body);
    assert!(token.stop().success());

    let clone_state = dir.path().join("clone");
    std::fs::copy(&state, &clone_state).expect("copy");

    // The original moves on...
    let original = start_token(dir.path(), &state, &[]);
    for _ in 0..3 {
        assert_eq!(assert_with(&original, &credential).0, 0);
    }
    let (_, body) = assert_with(&original, &credential);
    let original_counter = assertion_counter(&body);
    drop(original);

    // ...the clone knows the same credential but continues from the copy's counter.
    let clone = start_token(dir.path(), &clone_state, &[]);
    let (status, body) = assert_with(&clone, &credential);
    assert_eq!(status, 0);
    let clone_counter = assertion_counter(&body);
    assert!(clone_counter > at_copy);
    assert!(
        clone_counter < original_counter,
        "clone {clone_counter} must lag the original {original_counter}"
    );
}

#[test]
fn presence_deny_fails_quickly() {
    let dir = tempfile::tempdir().expect("tempdir");
    let token = start_token(
        dir.path(),
        &dir.path().join("state"),
        &["--presence", "deny"],
    );
    let mut hid = Hid::open(&token.socket);
    let started = Instant::now();
    let (status, _) = hid.cbor(0x01, Some(&make_credential_request([1; 32])));
    assert_eq!(status, CTAP2_ERR_USER_ACTION_TIMEOUT);
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
}

#[test]
fn presence_delay_sends_upneeded_keepalives() {
    let dir = tempfile::tempdir().expect("tempdir");
    let token = start_token(
        dir.path(),
        &dir.path().join("state"),
        &["--presence", "delay=600"],
    );
    let mut hid = Hid::open(&token.socket);
    let started = Instant::now();
    let (status, _) = hid.cbor(0x01, Some(&make_credential_request([1; 32])));
    assert_eq!(status, 0);
    assert!(started.elapsed() >= Duration::from_millis(600));
    assert!(
        hid.keepalives.contains(&2),
        "UPNEEDED keepalives expected, got {:?}",
        hid.keepalives
    );
}

#[test]
fn cancel_during_presence_wait_gives_keepalive_cancel() {
    let dir = tempfile::tempdir().expect("tempdir");
    let token = start_token(
        dir.path(),
        &dir.path().join("state"),
        &["--presence", "delay=20000"],
    );
    let mut hid = Hid::open(&token.socket);
    let mut request = vec![0x01];
    ciborium::into_writer(&make_credential_request([1; 32]), &mut request).expect("encode");
    let cid = hid.cid;
    hid.send(cid, CMD_CBOR, &request);
    // Wait until the key asks for a touch, then cancel.
    loop {
        let message = hid.recv_message();
        assert_eq!(message.cmd, CMD_KEEPALIVE, "{message:?}");
        if message.data[0] == 2 {
            break;
        }
    }
    let started = Instant::now();
    hid.send(cid, CMD_CANCEL, &[]);
    let reply = loop {
        let message = hid.recv_message();
        if message.cmd != CMD_KEEPALIVE {
            break message;
        }
    };
    assert_eq!(reply.cmd, CMD_CBOR);
    assert_eq!(reply.data, vec![CTAP2_ERR_KEEPALIVE_CANCEL]);
    assert!(started.elapsed() < Duration::from_secs(2));
}

#[test]
fn waiting_clients_get_processing_keepalives_then_their_turn() {
    let dir = tempfile::tempdir().expect("tempdir");
    let token = start_token(
        dir.path(),
        &dir.path().join("state"),
        &["--presence", "delay=700"],
    );
    let socket = token.socket.clone();
    let toucher = std::thread::spawn(move || {
        let mut hid = Hid::open(&socket);
        hid.cbor(0x01, Some(&make_credential_request([1; 32]))).0
    });
    std::thread::sleep(Duration::from_millis(200));
    let mut hid = Hid::open(&token.socket);
    let (status, _) = hid.cbor(0x04, None);
    assert_eq!(status, 0);
    assert!(
        hid.keepalives.contains(&1),
        "PROCESSING keepalives while queued, got {:?}",
        hid.keepalives
    );
    assert_eq!(toucher.join().expect("toucher"), 0);
}

#[test]
fn state_file_of_the_wrong_size_is_refused_clearly() {
    let dir = tempfile::tempdir().expect("tempdir");
    let state = dir.path().join("state");
    std::fs::write(&state, b"definitely not littlefs").expect("write");
    let output = Command::new(env!("CARGO_BIN_EXE_ctap-softtoken"))
        .args(["serve", "--socket"])
        .arg(dir.path().join("sock"))
        .arg("--state")
        .arg(&state)
        .stdin(Stdio::null())
        .output()
        .expect("run");
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("has 23 bytes, expected 131072: not a ctap-softtoken state file"),
        "{stderr}"
    );
    assert!(!stderr.contains("panicked"), "{stderr}");
}

#[test]
fn a_state_file_serves_one_process_only() {
    let dir = tempfile::tempdir().expect("tempdir");
    let state = dir.path().join("state");
    let _token = start_token(dir.path(), &state, &[]);
    let output = Command::new(env!("CARGO_BIN_EXE_ctap-softtoken"))
        .args(["serve", "--socket"])
        .arg(dir.path().join("other-sock"))
        .arg("--state")
        .arg(&state)
        .stdin(Stdio::null())
        .output()
        .expect("run");
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("is locked by another ctap-softtoken"),
        "{stderr}"
    );
}

#[test]
fn sigterm_removes_the_socket_and_exits_cleanly() {
    let dir = tempfile::tempdir().expect("tempdir");
    let token = start_token(dir.path(), &dir.path().join("state"), &[]);
    let socket = token.socket.clone();
    let mode = std::os::unix::fs::PermissionsExt::mode(
        &std::fs::metadata(&socket).expect("stat").permissions(),
    );
    assert_eq!(mode & 0o777, 0o600);
    let status = token.stop();
    assert!(status.success(), "{status:?}");
    assert!(!socket.exists());
}

#[test]
fn stale_socket_is_replaced() {
    let dir = tempfile::tempdir().expect("tempdir");
    let socket = dir.path().join("sock");
    let stale = std::os::unix::net::UnixListener::bind(&socket).expect("bind");
    drop(stale); // the file stays behind, like after a crash
    let token = Softtoken::start_on(
        std::path::Path::new(env!("CARGO_BIN_EXE_ctap-softtoken")),
        &socket,
        &dir.path().join("state"),
        &[],
    );
    let mut hid = Hid::open(&token.socket);
    assert_eq!(hid.call(CMD_PING, b"hi").data, b"hi");
}

fn client_pin_option(token: &Softtoken) -> Option<bool> {
    let mut hid = Hid::open(&token.socket);
    let (status, body) = hid.cbor(0x04, None);
    assert_eq!(status, 0);
    let info = decode(&body);
    member(&info, 4)
        .as_map()
        .expect("options")
        .iter()
        .find(|(k, _)| k.as_text() == Some("clientPin"))
        .and_then(|(_, v)| v.as_bool())
}

#[test]
fn pin_flag_sets_a_pin_before_listening() {
    let dir = tempfile::tempdir().expect("tempdir");
    let plain = start_token(dir.path(), &dir.path().join("plain"), &[]);
    assert_eq!(client_pin_option(&plain), Some(false));
    let token = start_token(dir.path(), &dir.path().join("state"), &["--pin", "123456"]);
    assert_eq!(
        client_pin_option(&token),
        Some(true),
        "PIN set before the socket appeared"
    );
}

#[test]
fn pin_flag_rejects_a_short_pin_before_touching_the_state() {
    let dir = tempfile::tempdir().expect("tempdir");
    let state = dir.path().join("state");
    let output = Command::new(env!("CARGO_BIN_EXE_ctap-softtoken"))
        .args(["serve", "--pin", "12", "--socket"])
        .arg(dir.path().join("sock"))
        .arg("--state")
        .arg(&state)
        .stdin(Stdio::null())
        .output()
        .expect("run");
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("cannot set the PIN"), "{stderr}");
    assert!(!state.exists());
}
