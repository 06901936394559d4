//! The ctap-core CTAP1/U2F client (`transport::ctap1`) against ctap-softtoken: a U2F-only key
//! (`--ctap1-only`), the touch poll with its cue, deadline and cancel, and the `u2f-*` faults.
#![allow(clippy::unwrap_used)]

use std::path::Path;
use std::time::{Duration, Instant};

use ctap_core::transport::ctap1::{
    authentication_signed_bytes, verify_registration, AuthenticateResponse, Ctap1, Ctap1Error,
    RegistrationProblem, StatusWord, U2fProblem, VerifiedRegistration,
};
use ctap_core::transport::ctaphid::{CtapHidChannel, CtapHidError, KeepaliveStatus, WaitDecision};
use ctap_core::transport::device::UnixTransport;
use ctap_e2e::{SoftToken, TempDir};
use p256::ecdsa::signature::Verifier;
use p256::ecdsa::{DerSignature, VerifyingKey};
use sha2::{Digest, Sha256};

fn app_id() -> [u8; 32] {
    Sha256::digest(b"pam://u2f-host").into()
}

fn go() -> impl FnMut(KeepaliveStatus) -> WaitDecision {
    |_| WaitDecision::Continue
}

fn start(dir: &Path, extra: &[&str]) -> SoftToken {
    SoftToken::start(dir, &dir.join("state"), extra)
}

fn open(token: &SoftToken) -> Ctap1<UnixTransport> {
    Ctap1::open_until(UnixTransport::connect(&token.socket).unwrap(), None).unwrap()
}

fn register(ctap1: &mut Ctap1<UnixTransport>) -> VerifiedRegistration {
    let challenge: [u8; 32] = rand::random();
    let response = ctap1.register(&app_id(), &challenge, &mut go()).unwrap();
    verify_registration(&response, &app_id(), &challenge).unwrap()
}

/// What the one verifier will do: the signature over appId || flags || counter || challenge,
/// with the registered key.
fn signature_verifies(
    reg: &VerifiedRegistration,
    challenge: &[u8; 32],
    response: &AuthenticateResponse,
) -> bool {
    let key = VerifyingKey::from_sec1_bytes(reg.public_key()).unwrap();
    let signed =
        authentication_signed_bytes(&app_id(), response.flags, response.counter, challenge);
    let signature = DerSignature::try_from(&response.signature[..]).unwrap();
    key.verify(&signed, &signature).is_ok()
}

#[test]
fn register_probe_and_authenticate_on_a_u2f_only_key() {
    let dir = TempDir::new("u2f");
    let token = start(dir.path(), &["--ctap1-only"]);
    // The CTAP2 path refuses this key: no CBOR capability.
    let transport = UnixTransport::connect(&token.socket).unwrap();
    assert!(matches!(
        CtapHidChannel::open(transport),
        Err(CtapHidError::NotCtap2)
    ));

    let mut ctap1 = open(&token);
    let reg = register(&mut ctap1);
    assert!(ctap1.check_only(&app_id(), reg.key_handle()).unwrap());
    let mut other = reg.key_handle().to_vec();
    other[0] ^= 1;
    assert!(!ctap1.check_only(&app_id(), &other).unwrap());
    let other_app: [u8; 32] = Sha256::digest(b"pam://elsewhere").into();
    assert!(!ctap1.check_only(&other_app, reg.key_handle()).unwrap());

    let mut counters = Vec::new();
    for _ in 0..2 {
        let challenge: [u8; 32] = rand::random();
        let response = ctap1
            .authenticate(&app_id(), &challenge, reg.key_handle(), &mut go())
            .unwrap();
        assert!(response.user_present());
        assert!(signature_verifies(&reg, &challenge, &response));
        assert!(!signature_verifies(&reg, &rand::random(), &response));
        counters.push(response.counter);
    }
    assert!(counters[1] > counters[0], "{counters:?}");

    // A handle this key does not hold: WrongData, at once (no touch poll).
    let started = Instant::now();
    assert!(matches!(
        ctap1.authenticate(&app_id(), &[0; 32], &other, &mut go()),
        Err(Ctap1Error::Status(StatusWord::WrongData))
    ));
    assert!(started.elapsed() < Duration::from_secs(2));
    assert!(token.stop().success());
}

#[test]
fn a_ctap2_key_speaks_u2f_too() {
    let dir = TempDir::new("u2f");
    let token = start(dir.path(), &[]);
    let mut ctap1 = open(&token);
    let reg = register(&mut ctap1);
    let challenge: [u8; 32] = rand::random();
    let response = ctap1
        .authenticate(&app_id(), &challenge, reg.key_handle(), &mut go())
        .unwrap();
    assert!(signature_verifies(&reg, &challenge, &response));
    assert!(token.stop().success());
}

#[test]
fn touch_needed_polls_with_the_cue_until_touched() {
    let dir = TempDir::new("u2f");
    let token = start(dir.path(), &["--ctap1-only", "--presence", "delay=800"]);
    let mut ctap1 = open(&token);
    let started = Instant::now();
    let mut cues = 0;
    let challenge: [u8; 32] = rand::random();
    let response = ctap1.register(&app_id(), &challenge, &mut |status| {
        if status == KeepaliveStatus::UpNeeded {
            cues += 1;
        }
        WaitDecision::Continue
    });
    let reg = verify_registration(&response.unwrap(), &app_id(), &challenge).unwrap();
    assert!(started.elapsed() >= Duration::from_millis(700));
    assert!(cues >= 2, "the cue, while the key waited: {cues}");
    assert!(ctap1.check_only(&app_id(), reg.key_handle()).unwrap());
    assert!(token.stop().success());
}

#[test]
fn an_untouched_key_ends_at_the_deadline() {
    let dir = TempDir::new("u2f");
    let token = start(dir.path(), &["--ctap1-only", "--presence", "deny"]);
    let started = Instant::now();
    let deadline = started + Duration::from_millis(1500);
    let transport = UnixTransport::connect(&token.socket).unwrap();
    let mut ctap1 = Ctap1::open_until(transport, Some(deadline)).unwrap();
    let result = ctap1.register(&app_id(), &[1; 32], &mut go());
    assert!(
        matches!(result, Err(Ctap1Error::Hid(CtapHidError::Timeout))),
        "{result:?}"
    );
    let took = started.elapsed();
    assert!(took >= Duration::from_millis(1400), "{took:?}");
    assert!(took < Duration::from_millis(3000), "{took:?}");
    assert!(token.stop().success());
}

#[test]
fn cancel_while_the_key_waits_sends_ctaphid_cancel() {
    let dir = TempDir::new("u2f");
    let log = dir.path().join("cancels");
    let log_arg = log.to_str().unwrap().to_owned();
    let token = start(
        dir.path(),
        &[
            "--ctap1-only",
            "--presence",
            "deny",
            "--cancel-log",
            &log_arg,
        ],
    );
    let mut ctap1 = open(&token);
    let result = ctap1.register(&app_id(), &[1; 32], &mut |_| WaitDecision::Cancel);
    assert!(
        matches!(result, Err(Ctap1Error::Hid(CtapHidError::Cancelled))),
        "{result:?}"
    );
    // The key sends UPNEEDED keepalives while it waits; the cancel came during the request, so
    // the key was told.
    let cancels = ctap_e2e::wait_for_cancels(&log);
    assert!(cancels.contains("cancel"), "no CANCEL logged: {cancels:?}");
    // The channel is usable afterwards.
    assert_eq!(ctap1.version().unwrap(), b"U2F_V2");
    assert!(token.stop().success());
}

/// Register on a key under `fault` and authenticate once.
fn authenticate_under(
    fault: &str,
) -> (
    VerifiedRegistration,
    [u8; 32],
    Result<AuthenticateResponse, Ctap1Error>,
) {
    let dir = TempDir::new("u2f");
    let token = start(dir.path(), &["--ctap1-only", "--fault", fault]);
    let mut ctap1 = open(&token);
    let reg = register(&mut ctap1);
    // The silent probe is not hit.
    assert!(ctap1.check_only(&app_id(), reg.key_handle()).unwrap());
    let challenge: [u8; 32] = rand::random();
    let result = ctap1.authenticate(&app_id(), &challenge, reg.key_handle(), &mut go());
    assert!(token.stop().success());
    (reg, challenge, result)
}

#[test]
fn malformed_u2f_answers_are_refused() {
    let (_, _, short) = authenticate_under("u2f-short-response");
    assert!(
        matches!(short, Err(Ctap1Error::Misbehaved(U2fProblem::Signature))),
        "{short:?}"
    );
    let (_, _, wrong) = authenticate_under("u2f-wrong-status");
    assert!(
        matches!(
            wrong,
            Err(Ctap1Error::Misbehaved(U2fProblem::DataWithError {
                sw: 0x9001,
                ..
            }))
        ),
        "{wrong:?}"
    );
    let (_, _, bad_der) = authenticate_under("u2f-bad-der-signature");
    assert!(
        matches!(bad_der, Err(Ctap1Error::Misbehaved(U2fProblem::Signature))),
        "{bad_der:?}"
    );
    // Well-formed, signed by the right key, over another challenge: the verifier's check fails.
    let (reg, challenge, other) = authenticate_under("u2f-other-challenge");
    let other = other.unwrap();
    assert!(!signature_verifies(&reg, &challenge, &other));
    let mut theirs = challenge;
    theirs[0] ^= 1;
    assert!(signature_verifies(&reg, &theirs, &other));
}

#[test]
fn a_registration_for_another_appid_does_not_verify() {
    let dir = TempDir::new("u2f");
    let token = start(dir.path(), &["--ctap1-only", "--fault", "u2f-other-appid"]);
    let mut ctap1 = open(&token);
    let challenge: [u8; 32] = rand::random();
    let response = ctap1.register(&app_id(), &challenge, &mut go()).unwrap();
    assert!(matches!(
        verify_registration(&response, &app_id(), &challenge),
        Err(Ctap1Error::Registration(RegistrationProblem::Signature))
    ));
    assert!(!ctap1.check_only(&app_id(), response.key_handle()).unwrap());
    assert!(token.stop().success());
}
