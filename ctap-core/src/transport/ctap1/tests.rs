//! The U2F client against scripted devices (device/mock.rs): well-behaved and hostile answers.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use p256::ecdsa::signature::{Signer, Verifier};
use p256::ecdsa::{DerSignature, SigningKey, VerifyingKey};

use super::*;
use crate::transport::device::mock::{self, frames, MockTransport};

const CID: u32 = 0x0A0B_0C0D;
const APP: [u8; 32] = [0xA1; 32];
const CHALLENGE: [u8; 32] = [0xC4; 32];
const OK: [u8; 2] = [0x90, 0x00];

/// A self-signed P-256 attestation certificate and its private scalar (made once with
/// python-cryptography for these tests).
const ATTESTATION_SCALAR: &str = "516a301d51b91cd6aa6c97d07c240c5eb51c39bc7cd927099d6b40123b7bb4e3";
const ATTESTATION_CERT: &str = "308201413081e7a003020102020101300a06082a8648ce3d04030230293127302506035504030c1e637461702d636f7265205532462074657374206174746573746174696f6e3020170d3230303130313030303030305a180f32303530303130313030303030305a30293127302506035504030c1e637461702d636f7265205532462074657374206174746573746174696f6e3059301306072a8648ce3d020106082a8648ce3d03010703420004a2341604c827f58e6f96e67542e5e12b1fa0805be8f67a53c34a70d77f4e42461b00daf01e69b7a93ef8a7e7d9eb31d2d36db06d64419f5cc2a3832e7093c09f300a06082a8648ce3d0403020349003046022100e3cddd136978dc030af50450136e68b88f7fc7628a9dd0b628c95765ec0f54f40221009f9205f370dece996d421d293350b8f26117ac026c12a7e04fab6e9d21b0de5a";
/// A certificate whose key is P-384: not a U2F attestation key.
const P384_CERT: &str = "308201713081f8a003020102020101300a06082a8648ce3d04030230233121301f06035504030c18637461702d636f726520553246207465737420502d3338343020170d3230303130313030303030305a180f32303530303130313030303030305a30233121301f06035504030c18637461702d636f726520553246207465737420502d3338343076301006072a8648ce3d020106052b81040022036200041ee7a2c05178b47f6aa0bdfe0abecc640b339a907adf21a657bf8cea0a27341481ab3cb14f69153f437b88ed8ac95eb2e339c0c5c6be735901e82484d566ac551ffe7275660e693facd8c06d1ba32da85324b221d082eb23b7e3d9b11d608867300a06082a8648ce3d0403020368003065023100ffebfbe6ba89516a3bc1ad5e3f9638397ccd76a1ec0d54a3efff7ab53b432af90a03e3962f520572160f059d40eaea7c023060433bab2ee547d39e5cbc7aef48d676bbaaad83588f6decab7613dafa6f6f53562fa57b62ea787bc31d50015e16aa14";

fn attestation_key() -> SigningKey {
    SigningKey::from_slice(&hex::decode(ATTESTATION_SCALAR).unwrap()).unwrap()
}

fn user_key() -> SigningKey {
    SigningKey::from_slice(&[0x11; 32]).unwrap()
}

fn uncompressed(key: &SigningKey) -> Vec<u8> {
    key.verifying_key()
        .to_encoded_point(false)
        .as_bytes()
        .to_vec()
}

fn der_sign(key: &SigningKey, message: &[u8]) -> Vec<u8> {
    let signature: DerSignature = key.sign(message);
    signature.as_bytes().to_vec()
}

/// A well-formed U2F_REGISTER response body, attested by `cert`'s key over `app`.
fn registration(app: &[u8; 32], handle: &[u8], cert: &[u8]) -> Vec<u8> {
    let public_key = uncompressed(&user_key());
    let signed = [&[0x00][..], app, &CHALLENGE, handle, &public_key].concat();
    let signature = der_sign(&attestation_key(), &signed);
    [
        &[0x05][..],
        &public_key,
        &[u8::try_from(handle.len()).unwrap()],
        handle,
        cert,
        &signature,
    ]
    .concat()
}

fn good_registration() -> Vec<u8> {
    registration(&APP, &[0x4B; 64], &hex::decode(ATTESTATION_CERT).unwrap())
}

/// A well-formed U2F_AUTHENTICATE response body, signed by the user key.
fn authentication(flags: u8, counter: u32) -> Vec<u8> {
    let signed = authentication_signed_bytes(&APP, flags, counter, &CHALLENGE);
    let signature = der_sign(&user_key(), &signed);
    [&[flags][..], &counter.to_be_bytes(), &signature].concat()
}

fn with_sw(data: &[u8], sw: [u8; 2]) -> Vec<u8> {
    [data, &sw].concat()
}

/// The APDUs a scripted U2F device received (VERSION included), in order.
type Seen = Arc<Mutex<Vec<Vec<u8>>>>;

/// A device (capabilities 0x05, MSG offered) that answers U2F_VERSION "U2F_V2" in either
/// encoding and every other APDU through `answer`.
fn u2f_device(mut answer: impl FnMut(&[u8]) -> Vec<u8> + Send + 'static) -> (MockTransport, Seen) {
    let seen: Seen = Arc::default();
    let log = seen.clone();
    let dev = mock::device(CID, move |command, apdu| {
        assert_eq!(command, cmd::MSG);
        log.lock().unwrap().push(apdu.to_vec());
        let response = if apdu.get(1) == Some(&apdu::INS_VERSION) {
            with_sw(b"U2F_V2", OK)
        } else {
            answer(apdu)
        };
        frames(CID, cmd::MSG, &response)
    });
    (dev, seen)
}

fn open(dev: MockTransport) -> Ctap1<MockTransport> {
    Ctap1::open_until(dev, None).expect("a U2F key")
}

fn no_wait() -> impl FnMut(KeepaliveStatus) -> WaitDecision {
    |_| WaitDecision::Continue
}

/// A device with these INIT capabilities that answers nothing else.
fn device_with_capabilities(capabilities: u8) -> MockTransport {
    MockTransport::new(move |r| {
        if r[4] == 0x86 {
            mock::init_response(&r[7..15], CID, capabilities)
        } else {
            frames(CID, cmd::MSG, &with_sw(b"U2F_V2", OK))
        }
    })
}

#[test]
fn open_asks_the_version_in_extended_length() {
    let (dev, seen) = u2f_device(|_| Vec::new());
    let ctap1 = open(dev);
    assert_eq!(ctap1.form(), ApduForm::Extended);
    assert_eq!(seen.lock().unwrap()[0], vec![0, 3, 0, 0, 0, 0, 0]);
}

#[test]
fn a_key_that_refuses_extended_length_gets_short_apdus() {
    let seen: Seen = Arc::default();
    let log = seen.clone();
    let dev = mock::device(CID, move |_, apdu| {
        log.lock().unwrap().push(apdu.to_vec());
        let response = match apdu {
            [0, 3, 0, 0, 0] => with_sw(b"U2F_V2", OK),
            [0, 3, ..] => vec![0x67, 0x00],
            _ => vec![0x6A, 0x80],
        };
        frames(CID, cmd::MSG, &response)
    });
    let mut ctap1 = open(dev);
    assert_eq!(ctap1.form(), ApduForm::Short);
    assert!(!ctap1.check_only(&APP, &[7; 10]).unwrap());
    let last = seen.lock().unwrap().last().unwrap().clone();
    assert_eq!(&last[..5], &[0, 2, 7, 0, 32 + 32 + 1 + 10], "short Lc");
    assert_eq!(last.len(), 5 + 75 + 1, "short Le");
}

#[test]
fn version_other_than_u2f_v2_is_refused() {
    let dev = mock::device(CID, |_, _| frames(CID, cmd::MSG, &with_sw(b"U2F_V3", OK)));
    assert!(matches!(
        Ctap1::open_until(dev, None),
        Err(Ctap1Error::UnsupportedVersion(v)) if v == b"U2F_V3"
    ));
}

#[test]
fn capabilities_decide_what_a_key_speaks() {
    // NMSG: no U2F.
    assert!(matches!(
        Ctap1::open_until(device_with_capabilities(0x0D), None),
        Err(Ctap1Error::NotU2f)
    ));
    // No CBOR (a U2F-only key): CTAP2 refuses it, U2F opens it.
    assert!(matches!(
        CtapHidChannel::open(device_with_capabilities(0x01)),
        Err(CtapHidError::NotCtap2)
    ));
    assert!(Ctap1::open_until(device_with_capabilities(0x01), None).is_ok());
}

#[test]
fn register_parses_and_verifies_against_the_attestation_certificate() {
    let (dev, seen) = u2f_device(|_| with_sw(&good_registration(), OK));
    let mut ctap1 = open(dev);
    let response = ctap1.register(&APP, &CHALLENGE, &mut no_wait()).unwrap();
    let request = seen.lock().unwrap()[1].clone();
    assert_eq!(
        &request[..7],
        &[0, 1, 3, 0, 0, 0, 64],
        "extended U2F_REGISTER"
    );
    assert_eq!(&request[7..39], &CHALLENGE);
    assert_eq!(&request[39..71], &APP);
    assert_eq!(response.key_handle(), &[0x4B; 64]);
    assert_eq!(&response.public_key()[..], &uncompressed(&user_key())[..]);

    let verified = verify_registration(&response, &APP, &CHALLENGE).unwrap();
    assert_eq!(verified.key_handle(), response.key_handle());
    assert_eq!(verified.public_key(), response.public_key());
    assert_eq!(
        verified.certificate_der(),
        &hex::decode(ATTESTATION_CERT).unwrap()[..]
    );
    // Another appId or challenge: the signature does not cover it.
    for (app, challenge) in [([0xA2; 32], CHALLENGE), (APP, [0; 32])] {
        assert!(matches!(
            verify_registration(&response, &app, &challenge),
            Err(Ctap1Error::Registration(RegistrationProblem::Signature))
        ));
    }
}

#[test]
fn a_registration_for_another_appid_or_handle_does_not_verify() {
    // Signed over another appId (the key made the handle for someone else).
    let other = registration(
        &[0xEE; 32],
        &[0x4B; 64],
        &hex::decode(ATTESTATION_CERT).unwrap(),
    );
    let parsed = RegisterResponse::parse(&other).unwrap();
    assert!(matches!(
        verify_registration(&parsed, &APP, &CHALLENGE),
        Err(Ctap1Error::Registration(RegistrationProblem::Signature))
    ));
    // A key handle swapped after signing.
    let mut swapped = good_registration();
    swapped[67] ^= 1;
    let parsed = RegisterResponse::parse(&swapped).unwrap();
    assert!(matches!(
        verify_registration(&parsed, &APP, &CHALLENGE),
        Err(Ctap1Error::Registration(RegistrationProblem::Signature))
    ));
}

#[test]
fn an_attestation_key_that_is_not_p256_is_refused() {
    let p384 = registration(&APP, &[1; 16], &hex::decode(P384_CERT).unwrap());
    let parsed = RegisterResponse::parse(&p384).unwrap();
    assert!(matches!(
        verify_registration(&parsed, &APP, &CHALLENGE),
        Err(Ctap1Error::Registration(
            RegistrationProblem::AttestationKey
        ))
    ));
}

fn register_problem(data: &[u8]) -> U2fProblem {
    match RegisterResponse::parse(data) {
        Err(Ctap1Error::Misbehaved(p)) => p,
        other => panic!("expected a format problem, got {other:?}"),
    }
}

#[test]
fn malformed_registrations_are_refused() {
    let good = good_registration();
    let handle_end = 1 + 65 + 1 + 64;
    let cert_len = hex::decode(ATTESTATION_CERT).unwrap().len();
    let sig_start = handle_end + cert_len;

    // Every truncation is an error (never a panic, never a success).
    for len in 0..good.len() {
        assert!(
            RegisterResponse::parse(&good[..len]).is_err(),
            "prefix {len}"
        );
    }
    let edit = |f: &dyn Fn(&mut Vec<u8>)| {
        let mut data = good.clone();
        f(&mut data);
        data
    };
    assert_eq!(
        register_problem(&edit(&|d| d[0] = 0x04)),
        U2fProblem::ReservedByte(0x04)
    );
    assert_eq!(
        register_problem(&edit(&|d| d[1] = 0x02)),
        U2fProblem::PublicKey
    );
    // A point off the curve.
    assert_eq!(
        register_problem(&edit(&|d| d[65] ^= 1)),
        U2fProblem::PublicKey
    );
    assert_eq!(
        register_problem(&[&good[..66], &[0]].concat()),
        U2fProblem::EmptyKeyHandle
    );
    // A key handle length running past the end.
    assert!(matches!(
        register_problem(&[&good[..66], &[255], &[1; 10]].concat()),
        U2fProblem::Truncated { .. }
    ));
    // The certificate is not a SEQUENCE, or its length runs past the end.
    assert!(matches!(
        register_problem(&edit(&|d| d[handle_end] = 0x31)),
        U2fProblem::Certificate(_)
    ));
    assert!(matches!(
        register_problem(&edit(&|d| d[handle_end + 2] = 0x7F)),
        U2fProblem::Certificate(_) | U2fProblem::Truncated { .. }
    ));
    // A broken certificate inside a well-formed outer length.
    assert!(matches!(
        register_problem(&edit(&|d| d[handle_end + 4] = 0x04)),
        U2fProblem::Certificate(_)
    ));
    // The signature: not DER, trailing bytes, a non-canonical encoding, missing.
    assert_eq!(
        register_problem(&edit(&|d| d[sig_start] = 0x31)),
        U2fProblem::Signature
    );
    assert_eq!(
        register_problem(&edit(&|d| d.push(0))),
        U2fProblem::Signature
    );
    assert_eq!(register_problem(&good[..sig_start]), U2fProblem::Signature);
    let mut long_form = good[..sig_start].to_vec();
    let sig = &good[sig_start..];
    // 0x30 len → 0x30 0x81 len: the same signature, not in DER's shortest length form.
    long_form.extend_from_slice(&[0x30, 0x81, sig[1]]);
    long_form.extend_from_slice(&sig[2..]);
    assert_eq!(register_problem(&long_form), U2fProblem::Signature);
}

#[test]
fn authenticate_sends_the_request_and_the_signature_covers_the_documented_bytes() {
    let (dev, seen) = u2f_device(|_| with_sw(&authentication(0x01, 41), OK));
    let mut ctap1 = open(dev);
    let handle = [0x4B; 64];
    let response = ctap1
        .authenticate(&APP, &CHALLENGE, &handle, &mut no_wait())
        .unwrap();
    let request = seen.lock().unwrap()[1].clone();
    assert_eq!(&request[..7], &[0, 2, 3, 0, 0, 0, 32 + 32 + 1 + 64]);
    assert_eq!(&request[7..39], &CHALLENGE);
    assert_eq!(&request[39..71], &APP);
    assert_eq!(request[71], 64);
    assert_eq!(&request[72..136], &handle);
    assert_eq!(&request[136..], &[0, 0], "extended Le");

    assert_eq!((response.flags, response.counter), (0x01, 41));
    assert!(response.user_present());
    // The pure function is what a key signs: appId hash || flags || counter || challenge hash.
    let signed = authentication_signed_bytes(&APP, 0x01, 41, &CHALLENGE);
    assert_eq!(&signed[..32], &APP);
    assert_eq!(&signed[32..37], &[0x01, 0, 0, 0, 41]);
    assert_eq!(&signed[37..], &CHALLENGE);
    let signature = DerSignature::try_from(&response.signature[..]).unwrap();
    VerifyingKey::from(&user_key())
        .verify(&signed, &signature)
        .unwrap();
}

fn authenticate_against(answer: Vec<u8>) -> Result<AuthenticateResponse, Ctap1Error> {
    let (dev, _) = u2f_device(move |_| answer.clone());
    open(dev).authenticate(&APP, &CHALLENGE, &[1; 16], &mut no_wait())
}

#[test]
fn malformed_authentications_are_refused() {
    let good = authentication(0x01, 7);
    for len in 0..good.len() {
        assert!(
            authenticate_against(with_sw(&good[..len], OK)).is_err(),
            "prefix {len}"
        );
    }
    // Flags and counter only (the short response).
    assert!(matches!(
        authenticate_against(with_sw(&good[..5], OK)),
        Err(Ctap1Error::Misbehaved(U2fProblem::Signature))
    ));
    // A status word that is not success, with data.
    assert!(matches!(
        authenticate_against(with_sw(&good, [0x90, 0x01])),
        Err(Ctap1Error::Misbehaved(U2fProblem::DataWithError {
            sw: 0x9001,
            ..
        }))
    ));
    // An unknown status word alone.
    assert!(matches!(
        authenticate_against(vec![0x90, 0x01]),
        Err(Ctap1Error::Status(StatusWord::Unknown(0x9001)))
    ));
    // No status word at all.
    assert!(matches!(
        authenticate_against(vec![0x90]),
        Err(Ctap1Error::Misbehaved(U2fProblem::NoStatusWord { len: 1 }))
    ));
    // A signature that is not DER.
    let mut bad_der = good.clone();
    bad_der[5] = 0x31;
    assert!(matches!(
        authenticate_against(with_sw(&bad_der, OK)),
        Err(Ctap1Error::Misbehaved(U2fProblem::Signature))
    ));
    // Reserved flag bits.
    assert!(matches!(
        authenticate_against(with_sw(&authentication(0x81, 7), OK)),
        Err(Ctap1Error::Misbehaved(U2fProblem::ReservedFlags(0x81)))
    ));
    // Not this key's handle.
    assert!(matches!(
        authenticate_against(vec![0x6A, 0x80]),
        Err(Ctap1Error::Status(StatusWord::WrongData))
    ));
}

#[test]
fn touch_needed_is_asked_again_with_the_cue_until_touched() {
    let mut untouched = 3;
    let (dev, seen) = u2f_device(move |_| {
        if untouched > 0 {
            untouched -= 1;
            vec![0x69, 0x85]
        } else {
            with_sw(&authentication(0x01, 9), OK)
        }
    });
    let mut ctap1 = open(dev);
    let mut cues = 0;
    let response = ctap1
        .authenticate(&APP, &CHALLENGE, &[1; 16], &mut |status| {
            assert_eq!(status, KeepaliveStatus::UpNeeded);
            cues += 1;
            WaitDecision::Continue
        })
        .unwrap();
    assert_eq!(response.counter, 9);
    assert_eq!(cues, 3);
    assert_eq!(seen.lock().unwrap().len(), 1 + 4, "VERSION, then four asks");
}

#[test]
fn cancel_while_waiting_for_the_touch_stops_asking() {
    let (dev, seen) = u2f_device(|_| vec![0x69, 0x85]);
    let mut ctap1 = open(dev);
    let result = ctap1.register(&APP, &CHALLENGE, &mut |_| WaitDecision::Cancel);
    assert!(matches!(
        result,
        Err(Ctap1Error::Hid(CtapHidError::Cancelled))
    ));
    assert_eq!(seen.lock().unwrap().len(), 2, "VERSION and one ask");
}

#[test]
fn an_untouched_key_ends_at_the_channel_deadline() {
    let (dev, _) = u2f_device(|_| vec![0x69, 0x85]);
    let mut ctap1 = open(dev);
    let started = Instant::now();
    ctap1
        .channel()
        .set_deadline(Some(started + Duration::from_millis(300)));
    let result = ctap1.authenticate(&APP, &CHALLENGE, &[1; 16], &mut no_wait());
    assert!(matches!(
        result,
        Err(Ctap1Error::Hid(CtapHidError::Timeout))
    ));
    let took = started.elapsed();
    assert!(took >= Duration::from_millis(290), "{took:?}");
    assert!(took < Duration::from_millis(800), "{took:?}");
}

#[test]
fn cancel_on_a_keepalive_sends_ctaphid_cancel() {
    // A key that sends an UPNEEDED keepalive while it waits, and never answers.
    let commands: Arc<Mutex<Vec<u8>>> = Arc::default();
    let log = commands.clone();
    let dev = MockTransport::new(move |r| {
        log.lock().unwrap().push(r[4]);
        match r[4] {
            0x86 => mock::init_response(&r[7..15], CID, 0x05),
            0x83 if r[8] == apdu::INS_VERSION => frames(CID, cmd::MSG, &with_sw(b"U2F_V2", OK)),
            // The last packet of the register request.
            0x00 => frames(CID, cmd::KEEPALIVE, &[2]),
            _ => Vec::new(),
        }
    });
    let mut ctap1 = open(dev);
    let result = ctap1.register(&APP, &CHALLENGE, &mut |_| WaitDecision::Cancel);
    assert!(matches!(
        result,
        Err(Ctap1Error::Hid(CtapHidError::Cancelled))
    ));
    assert_eq!(
        commands.lock().unwrap().last(),
        Some(&(0x80 | cmd::CANCEL)),
        "CTAPHID_CANCEL sent"
    );
}

#[test]
fn check_only_is_one_silent_ask() {
    for (answer, expected) in [
        (vec![0x69, 0x85], Some(true)),
        (vec![0x6A, 0x80], Some(false)),
    ] {
        let (dev, seen) = u2f_device(move |_| answer.clone());
        let mut ctap1 = open(dev);
        assert_eq!(ctap1.check_only(&APP, &[3; 20]).ok(), expected);
        let seen = seen.lock().unwrap();
        assert_eq!(seen.len(), 2, "one ask, no polling");
        assert_eq!(seen[1][2], 0x07, "check-only control byte");
    }
    let (dev, _) = u2f_device(|_| with_sw(&authentication(1, 1), OK));
    assert!(matches!(
        open(dev).check_only(&APP, &[3; 20]),
        Err(Ctap1Error::Misbehaved(_))
    ));
    let (dev, _) = u2f_device(|_| vec![0x90, 0x00]);
    assert!(matches!(
        open(dev).check_only(&APP, &[3; 20]),
        Err(Ctap1Error::Misbehaved(U2fProblem::CheckOnlySucceeded))
    ));
    let (dev, _) = u2f_device(|_| vec![0x67, 0x00]);
    assert!(matches!(
        open(dev).check_only(&APP, &[3; 20]),
        Err(Ctap1Error::Status(StatusWord::WrongLength))
    ));
}

#[test]
fn key_handles_longer_than_255_bytes_are_not_sent() {
    let (dev, _) = u2f_device(|_| vec![0x6A, 0x80]);
    assert!(matches!(
        open(dev).check_only(&APP, &[0; 256]),
        Err(Ctap1Error::RequestTooLong { len: 256 })
    ));
}

mod properties {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        /// Whatever a key sends, parsing ends in a value or an error, never a panic.
        #[test]
        fn parsers_never_panic(data in proptest::collection::vec(any::<u8>(), 0..1200)) {
            let _ = RegisterResponse::parse(&data);
            let _ = AuthenticateResponse::parse(&data);
            let _ = apdu::split(&data);
        }

        /// A registration with one byte changed outside the certificate either fails to parse,
        /// fails to verify, or is the same registration (a byte changed to itself). (The
        /// attestation signature covers the certificate's key, not the rest of the certificate:
        /// whose certificate to trust is policy, not this check.)
        #[test]
        fn a_changed_registration_does_not_verify(at in 0usize..1000, byte in any::<u8>()) {
            let good = good_registration();
            let mut data = good.clone();
            let cert = 1 + 65 + 1 + 64..1 + 65 + 1 + 64 + ATTESTATION_CERT.len() / 2;
            let outside: Vec<usize> = (0..data.len()).filter(|i| !cert.contains(i)).collect();
            let at = outside[at % outside.len()];
            data[at] = byte;
            let verified = RegisterResponse::parse(&data)
                .ok()
                .and_then(|r| verify_registration(&r, &APP, &CHALLENGE).ok());
            prop_assert!(verified.is_none() || data == good);
        }
    }
}
