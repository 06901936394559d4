//! CTAPHID framing, seen from a client speaking raw 64-byte reports over the socket.

mod common;

use std::io::Write;
use std::time::{Duration, Instant};

use common::*;

fn start() -> (tempfile::TempDir, Softtoken) {
    let dir = tempfile::tempdir().expect("tempdir");
    let token = start_token(dir.path(), &dir.path().join("state"), &[]);
    (dir, token)
}

#[test]
fn init_echoes_nonce_and_allocates_a_channel() {
    let (_dir, token) = start();
    let mut hid = Hid::connect(&token.socket);
    let response = hid.init();
    assert_ne!(hid.cid, 0);
    assert_ne!(hid.cid, BROADCAST);
    assert_eq!(response[12], 2, "CTAPHID protocol version");
    let capabilities = response[16];
    assert_ne!(capabilities & 0x01, 0, "WINK");
    assert_ne!(capabilities & 0x04, 0, "CBOR");
    assert_eq!(
        capabilities & 0x08,
        0,
        "NMSG clear: MSG (CTAP1/U2F) is offered"
    );

    // A second INIT on the broadcast channel gives another channel.
    let first = hid.cid;
    hid.init();
    assert_ne!(hid.cid, first);

    // INIT on an allocated channel keeps it.
    let nonce = rand_nonce();
    let cid = hid.cid;
    hid.send(cid, CMD_INIT, &nonce);
    let reply = hid.recv_message();
    assert_eq!((reply.cid, reply.cmd), (cid, CMD_INIT));
    assert_eq!(&reply.data[..8], &nonce);
    assert_eq!(&reply.data[8..12], &cid.to_be_bytes());
}

#[test]
fn ping_echoes_a_multi_packet_payload() {
    let (_dir, token) = start();
    let mut hid = Hid::open(&token.socket);
    let payload: Vec<u8> = (0..1000u32).map(|i| (i * 7 % 256) as u8).collect();
    let reply = hid.call(CMD_PING, &payload);
    assert_eq!((reply.cid, reply.cmd), (hid.cid, CMD_PING));
    assert_eq!(reply.data, payload);
}

#[test]
fn wink_is_answered() {
    let (_dir, token) = start();
    let mut hid = Hid::open(&token.socket);
    let reply = hid.call(CMD_WINK, &[]);
    assert_eq!(reply.cmd, CMD_WINK);
}

#[test]
fn get_info_advertises_fido_2_0_and_2_1() {
    let (_dir, token) = start();
    let mut hid = Hid::open(&token.socket);
    let (status, body) = hid.cbor(0x04, None);
    assert_eq!(status, 0);
    let info = decode(&body);
    let versions: Vec<&str> = member(&info, 1)
        .as_array()
        .expect("versions")
        .iter()
        .filter_map(|v| v.as_text())
        .collect();
    assert!(versions.contains(&"FIDO_2_0"), "{versions:?}");
    assert!(versions.contains(&"FIDO_2_1"), "{versions:?}");
    // maxMsgSize matches what the framing layer accepts.
    assert_eq!(member(&info, 5).as_integer(), Some(3072.into()));
}

#[test]
fn unknown_command_is_invalid_cmd() {
    let (_dir, token) = start();
    let mut hid = Hid::open(&token.socket);
    for cmd in [0x55, CMD_KEEPALIVE] {
        let reply = hid.call(cmd, &[1, 2, 3]);
        assert_eq!(reply.cmd, CMD_ERROR, "command {cmd:#x}");
        assert_eq!(reply.data, vec![ERR_INVALID_CMD], "command {cmd:#x}");
    }
}

#[test]
fn command_on_an_unallocated_channel_is_invalid_channel() {
    let (_dir, token) = start();
    let mut hid = Hid::open(&token.socket);
    hid.send(0x1234_5678, CMD_PING, b"x");
    let reply = hid.recv_message();
    assert_eq!(reply.cmd, CMD_ERROR);
    assert_eq!(reply.data, vec![ERR_INVALID_CHANNEL]);
    hid.send(BROADCAST, CMD_PING, b"x");
    assert_eq!(hid.recv_message().data, vec![ERR_INVALID_CHANNEL]);
}

#[test]
fn bad_continuation_sequence_is_invalid_seq() {
    let (_dir, token) = start();
    let mut hid = Hid::open(&token.socket);
    let cid = hid.cid.to_be_bytes();
    // PING of 100 bytes: init packet, then a continuation with seq 1 instead of 0.
    let mut init = [0u8; 64];
    init[..4].copy_from_slice(&cid);
    init[4] = 0x80 | CMD_PING;
    init[5..7].copy_from_slice(&100u16.to_be_bytes());
    hid.write_packet(&init);
    let mut cont = [0u8; 64];
    cont[..4].copy_from_slice(&cid);
    cont[4] = 1;
    hid.write_packet(&cont);
    let reply = hid.recv_message();
    assert_eq!(reply.cmd, CMD_ERROR);
    assert_eq!(reply.data, vec![ERR_INVALID_SEQ]);

    // The channel still works afterwards.
    assert_eq!(hid.call(CMD_PING, b"again").data, b"again");
}

#[test]
fn oversized_message_is_invalid_len() {
    let (_dir, token) = start();
    let mut hid = Hid::open(&token.socket);
    let mut init = [0u8; 64];
    init[..4].copy_from_slice(&hid.cid.to_be_bytes());
    init[4] = 0x80 | CMD_CBOR;
    init[5..7].copy_from_slice(&4000u16.to_be_bytes());
    hid.write_packet(&init);
    let reply = hid.recv_message();
    assert_eq!(reply.cmd, CMD_ERROR);
    assert_eq!(reply.data, vec![0x03]);
}

#[test]
fn stalled_message_times_out() {
    let (_dir, token) = start();
    let mut hid = Hid::open(&token.socket);
    let mut init = [0u8; 64];
    init[..4].copy_from_slice(&hid.cid.to_be_bytes());
    init[4] = 0x80 | CMD_PING;
    init[5..7].copy_from_slice(&200u16.to_be_bytes());
    hid.write_packet(&init);
    let started = Instant::now();
    let reply = hid.recv_message();
    assert_eq!(reply.cmd, CMD_ERROR);
    assert_eq!(reply.data, vec![0x05], "MSG_TIMEOUT");
    assert!(started.elapsed() < Duration::from_secs(5));
}

#[test]
fn garbage_then_disconnect_does_not_kill_the_server() {
    let (_dir, token) = start();
    {
        let mut hid = Hid::connect(&token.socket);
        // Random-looking reports, including init packets with huge lengths and bogus channels.
        for i in 0..50u32 {
            let mut packet = [0u8; 64];
            for (j, byte) in packet.iter_mut().enumerate() {
                *byte = (i.wrapping_mul(2_654_435_761).wrapping_add(j as u32 * 97) >> 7) as u8;
            }
            hid.write_packet(&packet);
        }
        // Half a report, then hang up mid-message.
        hid.stream.write_all(&[0xFF; 30]).expect("write");
    }
    {
        // Start a multi-packet CBOR message and vanish.
        let mut hid = Hid::open(&token.socket);
        let mut init = [0u8; 64];
        init[..4].copy_from_slice(&hid.cid.to_be_bytes());
        init[4] = 0x80 | CMD_CBOR;
        init[5..7].copy_from_slice(&500u16.to_be_bytes());
        hid.write_packet(&init);
    }
    std::thread::sleep(Duration::from_millis(100));
    let mut hid = Hid::open(&token.socket);
    assert_eq!(hid.call(CMD_PING, b"alive").data, b"alive");
    let (status, _) = hid.cbor(0x04, None);
    assert_eq!(status, 0);
}

#[test]
fn sixteen_concurrent_clients() {
    let (_dir, token) = start();
    let socket = token.socket.clone();
    let workers: Vec<_> = (0..16)
        .map(|i| {
            let socket = socket.clone();
            std::thread::spawn(move || {
                let mut hid = Hid::open(&socket);
                for round in 0..3 {
                    let payload = vec![i as u8; 100 + round];
                    assert_eq!(hid.call(CMD_PING, &payload).data, payload);
                    let (status, _) = hid.cbor(0x04, None);
                    assert_eq!(status, 0);
                }
                let (status, body) = hid.cbor(0x01, Some(&make_credential_request([i as u8; 32])));
                assert_eq!(status, 0);
                parse_credential(&body).id
            })
        })
        .collect();
    let mut ids: Vec<Vec<u8>> = workers
        .into_iter()
        .map(|w| w.join().expect("client thread"))
        .collect();
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), 16, "every client got its own credential");
}

#[test]
fn garbage_cbor_requests_get_ctap_errors_not_a_crash() {
    let (_dir, token) = start();
    let mut hid = Hid::open(&token.socket);
    let mut seed = 0x2545_F491_4F6C_DD1Du64;
    let mut next = || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    for command in 0x00..=0x20u8 {
        for len in [0usize, 1, 7, 64, 300] {
            let mut request = vec![command];
            request.extend((0..len).map(|_| next() as u8));
            let reply = hid.call(CMD_CBOR, &request);
            assert_eq!(reply.cmd, CMD_CBOR, "command {command:#x}: {reply:02x?}");
            // Commands whose parameters are mandatory must refuse garbage. (getInfo, reset,
            // getNextAssertion and selection take none and may ignore what follows.)
            if len > 0 && [0x01, 0x02, 0x06, 0x09, 0x0A, 0x0C, 0x0D].contains(&command) {
                assert_ne!(reply.data[0], 0, "garbage accepted for {command:#x}");
            }
        }
    }
    assert_eq!(hid.call(CMD_PING, b"still here").data, b"still here");
}
