//! CTAP1/U2F over CTAPHID_MSG: ISO 7816-4 APDUs (short and extended) to fido-authenticator's
//! CTAP1 code, the batch attestation made with the state, `--ctap1-only`, and the `u2f-*` faults.

mod common;

use std::path::Path;

use common::*;
use p256::ecdsa::signature::Verifier;
use p256::ecdsa::{DerSignature, VerifyingKey};

const APP_ID: [u8; 32] = [0xA5; 32];
const SW_OK: [u8; 2] = [0x90, 0x00];
const SW_CONDITIONS_NOT_SATISFIED: [u8; 2] = [0x69, 0x85];
const SW_WRONG_DATA: [u8; 2] = [0x6A, 0x80];

/// An extended-length command APDU (CLA INS P1 P2 00 Lc Lc data 00 00).
fn extended(ins: u8, p1: u8, data: &[u8]) -> Vec<u8> {
    let lc = u16::try_from(data.len()).expect("short data");
    let mut apdu = vec![0x00, ins, p1, 0x00, 0x00];
    apdu.extend_from_slice(&lc.to_be_bytes());
    apdu.extend_from_slice(data);
    apdu.extend_from_slice(&[0x00, 0x00]);
    apdu
}

/// A short command APDU (CLA INS P1 P2 Lc data Le).
fn short(ins: u8, p1: u8, data: &[u8]) -> Vec<u8> {
    let mut apdu = vec![
        0x00,
        ins,
        p1,
        0x00,
        u8::try_from(data.len()).expect("short"),
    ];
    apdu.extend_from_slice(data);
    apdu.push(0x00);
    apdu
}

/// Send an APDU over CTAPHID_MSG; returns (data, status word).
fn msg(hid: &mut Hid, apdu: &[u8]) -> (Vec<u8>, [u8; 2]) {
    let reply = hid.call(CMD_MSG, apdu);
    assert_eq!(
        reply.cmd, CMD_MSG,
        "expected a MSG answer, got {reply:02x?}"
    );
    let (data, sw) = reply.data.split_last_chunk::<2>().expect("a status word");
    (data.to_vec(), *sw)
}

struct Registration {
    public_key: Vec<u8>,
    key_handle: Vec<u8>,
    certificate: Vec<u8>,
    signature: Vec<u8>,
}

/// Parse a U2F_REGISTER response body (after the status word is taken off).
fn parse_registration(data: &[u8]) -> Registration {
    assert_eq!(data[0], 0x05, "reserved byte");
    let public_key = data[1..66].to_vec();
    assert_eq!(public_key[0], 0x04, "uncompressed point");
    let handle_len = usize::from(data[66]);
    let key_handle = data[67..67 + handle_len].to_vec();
    let rest = &data[67 + handle_len..];
    // The certificate is one DER SEQUENCE with a two-byte length (0x30 0x82 hi lo).
    assert_eq!(&rest[..2], &[0x30, 0x82]);
    let cert_len = 4 + usize::from(u16::from_be_bytes([rest[2], rest[3]]));
    Registration {
        public_key,
        key_handle,
        certificate: rest[..cert_len].to_vec(),
        signature: rest[cert_len..].to_vec(),
    }
}

fn register(hid: &mut Hid, challenge: [u8; 32]) -> Registration {
    let (data, sw) = msg(hid, &extended(0x01, 0x03, &[challenge, APP_ID].concat()));
    assert_eq!(sw, SW_OK);
    parse_registration(&data)
}

fn authenticate_apdu(control: u8, challenge: [u8; 32], handle: &[u8]) -> Vec<u8> {
    let len = u8::try_from(handle.len()).expect("handle length");
    extended(
        0x02,
        control,
        &[&challenge[..], &APP_ID, &[len], handle].concat(),
    )
}

fn start_u2f(dir: &Path, extra: &[&str]) -> Softtoken {
    start_token(dir, &dir.join("state"), extra)
}

/// The attestation certificate's public key, found as the uncompressed P-256 point in the DER.
fn certificate_key(cert: &[u8]) -> VerifyingKey {
    use x509_cert::der::Decode;
    let cert = x509_cert::Certificate::from_der(cert).expect("an X.509 certificate");
    let point = cert
        .tbs_certificate
        .subject_public_key_info
        .subject_public_key
        .raw_bytes();
    VerifyingKey::from_sec1_bytes(point).expect("a P-256 key")
}

fn verify(key: &VerifyingKey, message: &[u8], der: &[u8]) -> bool {
    DerSignature::try_from(der).is_ok_and(|sig| key.verify(message, &sig).is_ok())
}

#[test]
fn version_answers_short_and_extended() {
    let dir = tempfile::tempdir().expect("tempdir");
    let token = start_u2f(dir.path(), &[]);
    let mut hid = Hid::open(&token.socket);
    for apdu in [vec![0, 0x03, 0, 0, 0], vec![0, 0x03, 0, 0, 0, 0, 0]] {
        assert_eq!(
            msg(&mut hid, &apdu),
            (b"U2F_V2".to_vec(), SW_OK),
            "{apdu:02x?}"
        );
    }
    // An unknown instruction and a malformed APDU get a status word, not a crash.
    assert_eq!(msg(&mut hid, &[0, 0x55, 0, 0, 0]).1, [0x6D, 0x00]);
    assert_ne!(msg(&mut hid, &[0, 0x01, 0, 0, 0x40, 1]).1, SW_OK);
    assert!(token.stop().success());
}

#[test]
fn register_authenticate_check_only_and_counter() {
    let dir = tempfile::tempdir().expect("tempdir");
    let token = start_u2f(dir.path(), &[]);
    let mut hid = Hid::open(&token.socket);
    let challenge = [7; 32];
    let reg = register(&mut hid, challenge);
    let signed = [
        &[0x00][..],
        &APP_ID,
        &challenge,
        &reg.key_handle,
        &reg.public_key,
    ]
    .concat();
    let attestation = certificate_key(&reg.certificate);
    assert!(verify(&attestation, &signed, &reg.signature), "attested");
    assert!(!verify(
        &attestation,
        &[&signed[..1], &signed[2..]].concat(),
        &reg.signature
    ));

    // A short APDU registers too.
    let (data, sw) = msg(&mut hid, &short(0x01, 0x00, &[[9; 32], APP_ID].concat()));
    assert_eq!(sw, SW_OK);
    assert_eq!(parse_registration(&data).certificate, reg.certificate);

    let (_, sw) = msg(&mut hid, &authenticate_apdu(0x07, [1; 32], &reg.key_handle));
    assert_eq!(
        sw, SW_CONDITIONS_NOT_SATISFIED,
        "check-only, a handle of ours"
    );
    let mut other = reg.key_handle.clone();
    other[10] ^= 1;
    let (_, sw) = msg(&mut hid, &authenticate_apdu(0x07, [1; 32], &other));
    assert_eq!(sw, SW_WRONG_DATA, "check-only, not a handle of ours");

    let key = VerifyingKey::from_sec1_bytes(&reg.public_key).expect("P-256");
    let mut last = None;
    for round in 0..2u8 {
        let challenge = [round; 32];
        let (data, sw) = msg(
            &mut hid,
            &authenticate_apdu(0x03, challenge, &reg.key_handle),
        );
        assert_eq!(sw, SW_OK);
        assert_eq!(data[0], 0x01, "user present");
        let counter = u32::from_be_bytes(data[1..5].try_into().expect("4 bytes"));
        let signed = [&APP_ID[..], &data[..5], &challenge].concat();
        assert!(
            verify(&key, &signed, &data[5..]),
            "signed by the registered key"
        );
        assert!(last.is_none_or(|last| counter > last), "counter increases");
        last = Some(counter);
    }
    assert!(token.stop().success());
}

#[test]
fn attestation_is_kept_across_restarts() {
    let dir = tempfile::tempdir().expect("tempdir");
    let token = start_u2f(dir.path(), &[]);
    let first = register(&mut Hid::open(&token.socket), [1; 32]).certificate;
    assert!(token.stop().success());
    let token = start_u2f(dir.path(), &[]);
    let again = register(&mut Hid::open(&token.socket), [2; 32]).certificate;
    assert!(token.stop().success());
    assert_eq!(first, again);
}

#[test]
fn ctap1_only_has_no_cbor() {
    let dir = tempfile::tempdir().expect("tempdir");
    let token = start_u2f(dir.path(), &["--ctap1-only"]);
    let mut hid = Hid::connect(&token.socket);
    let init = hid.init();
    assert_eq!(init[16] & 0x04, 0, "no CBOR capability");
    assert_eq!(init[16] & 0x08, 0, "MSG offered");
    let reply = hid.call(CMD_CBOR, &[0x04]);
    assert_eq!((reply.cmd, reply.data), (CMD_ERROR, vec![ERR_INVALID_CMD]));
    let reg = register(&mut hid, [3; 32]);
    let (_, sw) = msg(&mut hid, &authenticate_apdu(0x03, [4; 32], &reg.key_handle));
    assert_eq!(sw, SW_OK);
    assert!(token.stop().success());
}

/// Register normally, then authenticate (enforce presence) under `fault`: (data, status word).
fn authenticate_under(fault: &str) -> (Registration, [u8; 32], Vec<u8>, [u8; 2]) {
    let dir = tempfile::tempdir().expect("tempdir");
    let token = start_u2f(dir.path(), &["--ctap1-only", "--fault", fault]);
    let mut hid = Hid::open(&token.socket);
    let reg = register(&mut hid, [5; 32]);
    // The check-only probe is not hit.
    let (_, sw) = msg(&mut hid, &authenticate_apdu(0x07, [6; 32], &reg.key_handle));
    assert_eq!(sw, SW_CONDITIONS_NOT_SATISFIED, "{fault}");
    let challenge = [8; 32];
    let (data, sw) = msg(
        &mut hid,
        &authenticate_apdu(0x03, challenge, &reg.key_handle),
    );
    assert!(token.stop().success());
    (reg, challenge, data, sw)
}

#[test]
fn u2f_faults_break_what_they_name() {
    let (_, _, data, sw) = authenticate_under("u2f-short-response");
    assert_eq!((data.len(), sw), (5, SW_OK), "flags and counter only");

    let (_, _, data, sw) = authenticate_under("u2f-wrong-status");
    assert_eq!(sw, [0x90, 0x01]);
    assert!(data.len() > 5);

    let (_, _, data, sw) = authenticate_under("u2f-bad-der-signature");
    assert_eq!(sw, SW_OK);
    assert_eq!(data[5], 0x31, "SEQUENCE tag flipped");
    assert!(DerSignature::try_from(&data[5..]).is_err());

    let (reg, challenge, data, sw) = authenticate_under("u2f-other-challenge");
    assert_eq!(sw, SW_OK);
    let key = VerifyingKey::from_sec1_bytes(&reg.public_key).expect("P-256");
    let ours = [&APP_ID[..], &data[..5], &challenge].concat();
    assert!(!verify(&key, &ours, &data[5..]));
    let mut theirs = ours.clone();
    theirs[37] ^= 1;
    assert!(
        verify(&key, &theirs, &data[5..]),
        "signed, over another challenge"
    );
}

#[test]
fn other_appid_fault_registers_for_another_appid() {
    let dir = tempfile::tempdir().expect("tempdir");
    let token = start_u2f(dir.path(), &["--fault", "u2f-other-appid"]);
    let mut hid = Hid::open(&token.socket);
    let challenge = [5; 32];
    let reg = register(&mut hid, challenge);
    let attestation = certificate_key(&reg.certificate);
    let signed = |app: &[u8]| {
        [
            &[0x00][..],
            app,
            &challenge,
            &reg.key_handle,
            &reg.public_key,
        ]
        .concat()
    };
    assert!(!verify(&attestation, &signed(&APP_ID), &reg.signature));
    let mut other = APP_ID;
    other[0] ^= 1;
    assert!(verify(&attestation, &signed(&other), &reg.signature));
    let (_, sw) = msg(&mut hid, &authenticate_apdu(0x07, [6; 32], &reg.key_handle));
    assert_eq!(sw, SW_WRONG_DATA, "not a handle for our appId");
    assert!(token.stop().success());
}
