//! The ctap-core client against ctap-softtoken (fido-authenticator) over the unix socket: the same
//! CTAPHID/CTAP2 code that talks to a USB key.
#![allow(clippy::unwrap_used)]

use std::time::{Duration, Instant};

use ctap_core::transport::ctap2::cose::{Algorithm, CoseKey};
use ctap_core::transport::ctap2::ext::hmac_secret::HmacSalts;
use ctap_core::transport::ctap2::pin::{permission, Pin, PinUvProtocol};
use ctap_core::transport::ctap2::{
    Ctap2, CtapError, CtapStatus, GetAssertionRequest, MakeCredentialRequest,
};
use ctap_core::transport::ctaphid::{KeepaliveStatus, WaitDecision};
use ctap_core::transport::device::UnixTransport;
use ctap_e2e::{SoftToken, TempDir};
use sha2::{Digest, Sha256};

const RP: &str = "pam://testhost";

fn go() -> impl FnMut(KeepaliveStatus) -> WaitDecision {
    |_| WaitDecision::Continue
}

fn pin(s: &str) -> Pin {
    Pin::new(s.to_string()).unwrap()
}

fn make_cred(
    c: &mut Ctap2<UnixTransport>,
    alg: Algorithm,
    token: Option<&ctap_core::transport::ctap2::pin::PinUvAuthToken>,
) -> ctap_core::transport::ctap2::MakeCredentialResponse {
    let req = MakeCredentialRequest {
        client_data_hash: rand::random(),
        rp_id: RP.into(),
        rp_name: None,
        user_id: b"alice".to_vec(),
        user_name: "alice".into(),
        user_display_name: None,
        algorithms: vec![alg],
        exclude_list: vec![],
        resident_key: false,
        user_verification: false,
        hmac_secret: true,
        cred_protect: Some(2),
    };
    c.make_credential(&req, token, &mut go()).unwrap()
}

fn assertion_req(cred: &[u8], salt: Option<[u8; 32]>) -> GetAssertionRequest {
    GetAssertionRequest {
        rp_id: RP.into(),
        client_data_hash: rand::random(),
        allow_list: vec![cred.to_vec()],
        user_presence: true,
        user_verification: false,
        hmac_secret: salt.map(|s| HmacSalts {
            salt1: s,
            salt2: None,
        }),
    }
}

#[test]
fn get_info_describes_a_fido2_key_with_hmac_secret() {
    let dir = TempDir::new("info");
    let key = SoftToken::start(dir.path(), &dir.path().join("state"), &[]);
    let c = key.connect();
    let info = c.info();
    assert!(
        info.versions.iter().any(|v| v == "FIDO_2_0"),
        "{:?}",
        info.versions
    );
    assert!(
        info.supports_extension("hmac-secret"),
        "{:?}",
        info.extensions
    );
    assert!(!info.pin_set());
    assert!(!info.pin_uv_auth_protocols.is_empty());
}

#[test]
fn set_and_change_pin_and_wrong_pin_lowers_retries() {
    for protocol in [PinUvProtocol::V2, PinUvProtocol::V1] {
        let dir = TempDir::new("pin");
        let key = SoftToken::start(dir.path(), &dir.path().join("state"), &[]);
        let mut c = key.connect();
        c.force_pin_protocol(protocol).unwrap();
        c.set_pin(&pin("1234")).unwrap();
        assert!(
            c.info().pin_set(),
            "{protocol:?}: clientPin option true after setPIN"
        );
        let start = c.pin_retries().unwrap().retries;
        c.pin_token(&pin("1234"), permission::GET_ASSERTION, Some(RP))
            .unwrap();

        let err = c
            .pin_token(&pin("9999"), permission::GET_ASSERTION, Some(RP))
            .err()
            .unwrap();
        assert_eq!(
            err.status(),
            Some(CtapStatus::PinInvalid),
            "{protocol:?}: {err}"
        );
        assert_eq!(c.pin_retries().unwrap().retries, start - 1, "{protocol:?}");

        c.change_pin(&pin("1234"), &pin("567890")).unwrap();
        let err = c
            .pin_token(&pin("1234"), permission::GET_ASSERTION, Some(RP))
            .err()
            .unwrap();
        assert_eq!(err.status(), Some(CtapStatus::PinInvalid));
        c.pin_token(&pin("567890"), permission::GET_ASSERTION, Some(RP))
            .unwrap();
        // A correct PIN resets the counter.
        assert_eq!(c.pin_retries().unwrap().retries, start);
    }
}

#[test]
fn assertions_verify_with_the_enrolled_key_and_counter_increases() {
    let dir = TempDir::new("sig");
    let key = SoftToken::start(dir.path(), &dir.path().join("state"), &[]);
    let mut c = key.connect();
    for alg in [Algorithm::Es256, Algorithm::EdDsa] {
        let made = make_cred(&mut c, alg, None);
        assert!(made.hmac_secret_enabled(), "{alg:?}: hmac-secret on");
        let cred = made.credential().clone();
        assert_eq!(cred.public_key.algorithm(), Some(alg));
        // The stored form round-trips: verification uses only what we keep.
        let stored = CoseKey::from_bytes(&cred.public_key.to_bytes()).unwrap();

        let mut last = None;
        for _ in 0..3 {
            let req = assertion_req(&cred.credential_id, None);
            let a = c.get_assertion(&req, None, &mut go()).unwrap();
            assert_eq!(a.credential_id, cred.credential_id);
            assert_eq!(
                a.auth_data.rp_id_hash,
                <[u8; 32]>::from(Sha256::digest(RP.as_bytes()))
            );
            assert!(a.auth_data.flags.user_present());
            let signed = [a.auth_data.raw.as_slice(), &req.client_data_hash].concat();
            assert!(
                stored.verify(&signed, &a.signature),
                "{alg:?}: signature verifies"
            );
            let mut tampered = signed.clone();
            tampered[40] ^= 1;
            assert!(
                !stored.verify(&tampered, &a.signature),
                "{alg:?}: tampered data fails"
            );
            if let Some(prev) = last {
                assert!(a.auth_data.sign_count > prev, "{alg:?}: counter increases");
            }
            last = Some(a.auth_data.sign_count);
        }
    }
}

#[test]
fn hmac_secret_is_stable_per_salt_and_differs_with_uv() {
    let dir = TempDir::new("hmac");
    let key = SoftToken::start(dir.path(), &dir.path().join("state"), &[]);
    let mut c = key.connect();
    let cred = make_cred(&mut c, Algorithm::Es256, None)
        .credential()
        .credential_id
        .clone();
    let out = |c: &mut Ctap2<UnixTransport>,
               salt: [u8; 32],
               token: Option<&ctap_core::transport::ctap2::pin::PinUvAuthToken>| {
        let a = c
            .get_assertion(&assertion_req(&cred, Some(salt)), token, &mut go())
            .unwrap();
        (
            *a.hmac_secret.unwrap().unwrap().output1,
            a.auth_data.flags.user_verified(),
        )
    };
    let (a1, uv1) = out(&mut c, [1; 32], None);
    let (a2, _) = out(&mut c, [1; 32], None);
    let (b, _) = out(&mut c, [2; 32], None);
    assert!(!uv1);
    assert_eq!(a1, a2, "same salt, same output");
    assert_ne!(a1, b, "different salt, different output");

    c.set_pin(&pin("1234")).unwrap();
    for protocol in [PinUvProtocol::V2, PinUvProtocol::V1] {
        c.force_pin_protocol(protocol).unwrap();
        let token = c
            .pin_token(&pin("1234"), permission::GET_ASSERTION, Some(RP))
            .unwrap();
        let (with_uv, uv) = out(&mut c, [1; 32], Some(&token));
        assert!(uv, "{protocol:?}: UV flag set with a PIN token");
        assert_ne!(with_uv, a1, "{protocol:?}: UV and non-UV secrets differ");
        let token = c
            .pin_token(&pin("1234"), permission::GET_ASSERTION, Some(RP))
            .unwrap();
        assert_eq!(
            out(&mut c, [1; 32], Some(&token)).0,
            with_uv,
            "{protocol:?}: UV output stable"
        );
    }
}

#[test]
fn two_salts_give_two_outputs() {
    let dir = TempDir::new("salts");
    let key = SoftToken::start(dir.path(), &dir.path().join("state"), &[]);
    let mut c = key.connect();
    let cred = make_cred(&mut c, Algorithm::Es256, None)
        .credential()
        .credential_id
        .clone();
    let mut req = assertion_req(&cred, None);
    req.hmac_secret = Some(HmacSalts {
        salt1: [1; 32],
        salt2: Some([2; 32]),
    });
    let both = c
        .get_assertion(&req, None, &mut go())
        .unwrap()
        .hmac_secret
        .unwrap()
        .unwrap();
    let one = c
        .get_assertion(&assertion_req(&cred, Some([2; 32])), None, &mut go())
        .unwrap()
        .hmac_secret
        .unwrap()
        .unwrap();
    assert_eq!(*both.output2.unwrap(), *one.output1);
}

#[test]
fn presence_denied_is_a_ctap_error_not_a_hang() {
    let dir = TempDir::new("deny");
    let state = dir.path().join("state");
    let key = SoftToken::start(dir.path(), &state, &[]);
    let cred = make_cred(&mut key.connect(), Algorithm::Es256, None)
        .credential()
        .credential_id
        .clone();
    key.stop();
    let key = SoftToken::start(dir.path(), &state, &["--presence", "deny"]);
    let mut c = key.connect();
    let start = Instant::now();
    let err = c
        .get_assertion(&assertion_req(&cred, None), None, &mut go())
        .err()
        .unwrap();
    assert!(start.elapsed() < Duration::from_secs(20));
    match err {
        CtapError::Status(s) => assert!(
            matches!(
                s,
                CtapStatus::OperationDenied
                    | CtapStatus::UserActionTimeout
                    | CtapStatus::ActionTimeout
            ),
            "{s}"
        ),
        other => panic!("expected a CTAP status, got {other}"),
    }
}

#[test]
fn credential_from_another_key_is_not_recognised() {
    let dir = TempDir::new("wrongkey");
    let a = SoftToken::start(dir.path(), &dir.path().join("a"), &[]);
    let b = SoftToken::start(dir.path(), &dir.path().join("b"), &[]);
    let cred = make_cred(&mut a.connect(), Algorithm::Es256, None)
        .credential()
        .credential_id
        .clone();
    let mut probe = assertion_req(&cred, None);
    probe.user_presence = false;
    let err = b
        .connect()
        .get_assertion(&probe, None, &mut go())
        .err()
        .unwrap();
    assert_eq!(err.status(), Some(CtapStatus::NoCredentials), "{err}");
}

#[test]
fn wink_ping_selection_and_next_assertion() {
    let dir = TempDir::new("misc");
    let key = SoftToken::start(dir.path(), &dir.path().join("state"), &[]);
    let mut hid = ctap_core::transport::ctaphid::CtapHidChannel::open(
        UnixTransport::connect(&key.socket).unwrap(),
    )
    .unwrap();
    hid.wink().unwrap();
    hid.ping(&[0x5A; 300]).unwrap();
    let mut c = Ctap2::new(hid).unwrap();
    c.selection(&mut go()).unwrap();

    // Two discoverable credentials for one RP: getAssertion without an allow list reports both,
    // getNextAssertion returns the second.
    let mut ids = Vec::new();
    for user in [&b"u1"[..], b"u2"] {
        let req = MakeCredentialRequest {
            client_data_hash: rand::random(),
            rp_id: "rk.example".into(),
            rp_name: None,
            user_id: user.to_vec(),
            user_name: String::from_utf8(user.to_vec()).unwrap(),
            user_display_name: None,
            algorithms: vec![Algorithm::Es256],
            exclude_list: vec![],
            resident_key: true,
            user_verification: false,
            hmac_secret: false,
            cred_protect: None,
        };
        ids.push(
            c.make_credential(&req, None, &mut go())
                .unwrap()
                .credential()
                .credential_id
                .clone(),
        );
    }
    let req = GetAssertionRequest {
        rp_id: "rk.example".into(),
        client_data_hash: rand::random(),
        allow_list: vec![],
        user_presence: true,
        user_verification: false,
        hmac_secret: None,
    };
    let first = c.get_assertion(&req, None, &mut go()).unwrap();
    assert_eq!(first.number_of_credentials, Some(2));
    let second = c.get_next_assertion().unwrap();
    let mut got = vec![first.credential_id, second.credential_id];
    got.sort();
    ids.sort();
    assert_eq!(got, ids);
    assert!(second.user_id.is_some());
}

/// A prompter that takes `delay` to answer the PIN prompt, as a person in askpass does.
struct SlowPin {
    delay: Duration,
    users_time: bool,
    infos: Vec<String>,
}

impl ctap_core::flows::session::Prompter for SlowPin {
    fn touch_cue(&mut self, _: &str) {}
    fn request_pin(&mut self, _: &str) -> Option<Pin> {
        std::thread::sleep(self.delay);
        Some(pin("1234"))
    }
    fn info(&mut self, m: &str) {
        self.infos.push(m.to_string());
    }
    fn pin_time_is_the_users(&self) -> bool {
        self.users_time
    }
}

/// The planner's PIN path: the time the user spends at the prompt counts against the key's
/// deadline for a login, and moves it on for the agent (askpass has its own timeout); a wrong
/// PIN is reported through the prompter with the retries left.
#[test]
fn the_planner_asks_the_prompter_and_honours_whose_time_the_prompt_is() {
    use ctap_core::flows::uv::{self, UvError, UvPlan};
    use ctap_core::store::config::PinPolicy;
    let dir = TempDir::new("planner");
    let key = SoftToken::start(dir.path(), &dir.path().join("key"), &["--pin", "1234"]);
    let plan = |c: &Ctap2<UnixTransport>| uv::plan(c.info(), true, PinPolicy::Prompt).unwrap();

    // The agent: 1.5 s in askpass, 1 s left on the deadline: the deadline moves on.
    let mut c = key.connect();
    assert_eq!(plan(&c), UvPlan::Pin);
    let mut agent = SlowPin {
        delay: Duration::from_millis(1500),
        users_time: true,
        infos: vec![],
    };
    c.set_deadline(Some(Instant::now() + Duration::from_secs(1)));
    let v = uv::obtain(
        &mut c,
        UvPlan::Pin,
        RP,
        permission::GET_ASSERTION,
        &mut agent,
    )
    .unwrap();
    assert!(v.token().is_some() && !v.uv_option() && v.required());

    // A login: the same wait spends the deadline, and the PIN never reaches the key.
    let mut c = key.connect();
    let mut login = SlowPin {
        delay: Duration::from_millis(1500),
        users_time: false,
        infos: vec![],
    };
    c.set_deadline(Some(Instant::now() + Duration::from_secs(1)));
    let err = uv::obtain(
        &mut c,
        UvPlan::Pin,
        RP,
        permission::GET_ASSERTION,
        &mut login,
    )
    .err()
    .unwrap();
    println!("login past its deadline: {err}");
    assert!(matches!(err, UvError::Device(_)), "{err:?}");
    c.set_deadline(None);
    assert_eq!(c.pin_retries().unwrap().retries, 8, "no PIN was tried");

    // A wrong PIN: the key's answer, and the prompter is told the retries left.
    struct Wrong(Vec<String>);
    impl ctap_core::flows::session::Prompter for Wrong {
        fn touch_cue(&mut self, _: &str) {}
        fn request_pin(&mut self, _: &str) -> Option<Pin> {
            Some(pin("9999"))
        }
        fn info(&mut self, m: &str) {
            self.0.push(m.to_string());
        }
    }
    let mut w = Wrong(vec![]);
    let err = uv::obtain(&mut c, UvPlan::Pin, RP, permission::GET_ASSERTION, &mut w)
        .err()
        .unwrap();
    assert!(
        matches!(
            err,
            UvError::Device(CtapError::Status(CtapStatus::PinInvalid))
        ),
        "{err:?}"
    );
    assert_eq!(w.0, ["Wrong PIN (7 tries left)"]);
}
