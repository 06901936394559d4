use super::*;
use crate::store::credential::{EnrolledKey, HmacCheck, RpId};
use crate::transport::ctap2::authdata::{AuthenticatorData, Flags};
use crate::transport::ctap2::cose::{CoseKey, ALG_ES256};
use crate::transport::ctap2::ext::hmac_secret::HmacSecretOutput;
use p256::ecdsa::signature::Signer;
use zeroize::Zeroizing;

const RP: &str = "pam://host";

struct Key {
    sk: p256::ecdsa::SigningKey,
    record: CredentialRecord,
    state: CredentialState,
    hmac_out: [u8; 32],
}

fn key(uv: UvRequirement) -> Key {
    let sk = p256::ecdsa::SigningKey::random(&mut rand::rngs::OsRng);
    let p = sk.verifying_key().to_encoded_point(false);
    let cose = CoseKey::Es256 {
        x: p.x().unwrap().as_slice().try_into().unwrap(),
        y: p.y().unwrap().as_slice().try_into().unwrap(),
        alg: ALG_ES256,
    };
    let record = CredentialRecord {
        name: "blue".into(),
        credential_id: vec![7; 48],
        rp_id: RpId::parse(RP).unwrap(),
        public_key: EnrolledKey::new(cose).unwrap(),
        aaguid: String::new(),
        user_verification: uv,
        hmac_secret: true,
        created: String::new(),
        no_touch_required: false,
        protocol: crate::store::credential::Protocol::Fido2,
    };
    let hmac_out = [0x42; 32];
    let mut state = CredentialState::new(record.credential_id.clone(), 10);
    state.hmac = Some(HmacCheck {
        salt: [1; 32],
        check: Sha256::digest(hmac_out).into(),
        uv: uv == UvRequirement::Required,
    });
    Key {
        sk,
        record,
        state,
        hmac_out,
    }
}

fn respond(k: &Key, ch: &Challenge, flags: u8, count: u32, rp: &str) -> GetAssertionResponse {
    let mut raw: Vec<u8> = Sha256::digest(rp.as_bytes()).to_vec();
    raw.push(flags);
    raw.extend_from_slice(&count.to_be_bytes());
    let sig: p256::ecdsa::Signature =
        k.sk.sign(&[raw.as_slice(), &ch.client_data_hash()].concat());
    GetAssertionResponse {
        credential_id: k.record.credential_id.clone(),
        auth_data: AuthenticatorData::parse(&raw).unwrap(),
        signature: sig.to_der().as_bytes().to_vec(),
        user_id: None,
        number_of_credentials: None,
        hmac_secret: Some(Ok(HmacSecretOutput {
            output1: Zeroizing::new(k.hmac_out),
            output2: None,
        })),
    }
}

fn check(
    k: &Key,
    ch: &Challenge,
    resp: &GetAssertionResponse,
) -> Result<VerifiedAssertion, VerifyError> {
    let asked = [&k.record];
    verify_assertion(
        &Expectation {
            challenge: ch,
            asked: &asked,
            counter_policy: CounterPolicy::AllowZero,
        },
        resp,
        &k.state,
    )
}

#[test]
fn a_good_assertion_verifies_and_advances_the_counter() {
    let k = key(UvRequirement::Discouraged);
    let ch = Challenge::new("sudo", "alice");
    let v = check(&k, &ch, &respond(&k, &ch, Flags::UP, 11, RP)).unwrap();
    assert_eq!(v.counter(), CounterOutcome::Advanced { from: 10, to: 11 });
    assert_eq!(v.credential_name(), "blue");
    let mut s = k.state.clone();
    v.apply_to(&mut s);
    assert_eq!(s.sign_count, 11);
    assert!(s.last_used.is_some());
}

#[test]
fn each_check_rejects_its_own_failure() {
    let k = key(UvRequirement::Discouraged);
    let ch = Challenge::new("sudo", "alice");
    assert_eq!(
        check(&k, &ch, &respond(&k, &ch, 0, 11, RP)).unwrap_err(),
        VerifyError::UserNotPresent
    );
    assert_eq!(
        check(&k, &ch, &respond(&k, &ch, Flags::UP, 11, "pam://other")).unwrap_err(),
        VerifyError::RpIdHashMismatch
    );
    assert_eq!(
        check(&k, &ch, &respond(&k, &ch, Flags::UP, 10, RP)).unwrap_err(),
        VerifyError::CounterRegression {
            stored: 10,
            received: 10
        }
    );
    assert_eq!(
        check(&k, &ch, &respond(&k, &ch, Flags::UP, 3, RP)).unwrap_err(),
        VerifyError::CounterRegression {
            stored: 10,
            received: 3
        }
    );

    let other = Challenge::new("sudo", "alice");
    assert_eq!(
        check(&k, &other, &respond(&k, &ch, Flags::UP, 11, RP)).unwrap_err(),
        VerifyError::BadSignature,
        "signature over another challenge"
    );

    let mut r = respond(&k, &ch, Flags::UP, 11, RP);
    r.signature[10] ^= 1;
    assert_eq!(check(&k, &ch, &r).unwrap_err(), VerifyError::BadSignature);

    let mut r = respond(&k, &ch, Flags::UP, 11, RP);
    r.credential_id = vec![8; 48];
    assert_eq!(
        check(&k, &ch, &r).unwrap_err(),
        VerifyError::UnexpectedCredential
    );

    let mut r = respond(&k, &ch, Flags::UP, 11, RP);
    r.hmac_secret = Some(Ok(HmacSecretOutput {
        output1: Zeroizing::new([0x43; 32]),
        output2: None,
    }));
    assert_eq!(check(&k, &ch, &r).unwrap_err(), VerifyError::HmacMismatch);

    let mut r = respond(&k, &ch, Flags::UP, 11, RP);
    r.hmac_secret = None;
    assert_eq!(check(&k, &ch, &r).unwrap_err(), VerifyError::HmacMissing);
}

/// Whatever is wrong with the key's hmac-secret output (absent, mistyped, undecryptable, wrong
/// length, or simply wrong), the audit log gets one reason word: the key cannot pick a
/// `device_error` instead of an `hmac_mismatch`.
#[test]
fn every_unusable_hmac_output_has_the_reason_of_a_wrong_one() {
    use crate::flows::login::LoginError;
    use crate::transport::ctap2::{HmacSecretProblem, Misbehaviour, PinProtocolProblem};
    let k = key(UvRequirement::Discouraged);
    let ch = Challenge::new("login", "bob");
    let kind = |r: &GetAssertionResponse| {
        let reason = check(&k, &ch, r).unwrap_err();
        LoginError::Rejected {
            credential: "blue".into(),
            reason,
            suspended: false,
        }
        .kind()
    };
    let mut wrong = respond(&k, &ch, Flags::UP, 11, RP);
    wrong.hmac_secret = Some(Ok(HmacSecretOutput {
        output1: Zeroizing::new([0x43; 32]),
        output2: None,
    }));
    assert_eq!(kind(&wrong), "hmac_mismatch");
    for problem in [
        Misbehaviour::HmacSecret(HmacSecretProblem::Missing),
        Misbehaviour::HmacSecret(HmacSecretProblem::NotBytes),
        Misbehaviour::HmacSecret(HmacSecretProblem::Length {
            got: 64,
            expected: 32,
        }),
        Misbehaviour::PinProtocol(PinProtocolProblem::NotWholeBlocks),
    ] {
        let mut r = respond(&k, &ch, Flags::UP, 11, RP);
        r.hmac_secret = Some(Err(problem.clone().into()));
        assert!(matches!(
            check(&k, &ch, &r),
            Err(VerifyError::HmacUnusable(_))
        ));
        assert_eq!(kind(&r), "hmac_mismatch", "{problem}");
    }
    // The signature still comes first: an unsigned answer is a bad signature whatever it holds.
    let mut r = respond(&k, &ch, Flags::UP, 11, RP);
    r.hmac_secret = Some(Err(HmacSecretProblem::Missing.into()));
    r.signature[10] ^= 1;
    assert_eq!(check(&k, &ch, &r).unwrap_err(), VerifyError::BadSignature);
}

#[test]
fn uv_required_needs_the_signed_uv_flag() {
    let k = key(UvRequirement::Required);
    let ch = Challenge::new("login", "bob");
    assert_eq!(
        check(&k, &ch, &respond(&k, &ch, Flags::UP, 11, RP)).unwrap_err(),
        VerifyError::UserNotVerified
    );
    assert!(
        check(&k, &ch, &respond(&k, &ch, Flags::UP | Flags::UV, 11, RP))
            .unwrap()
            .user_verified()
    );
}

#[test]
fn hmac_checked_with_the_enrolled_uv_state() {
    let k = key(UvRequirement::Discouraged);
    let ch = Challenge::new("login", "bob");
    assert_eq!(
        check(&k, &ch, &respond(&k, &ch, Flags::UP | Flags::UV, 11, RP)).unwrap_err(),
        VerifyError::HmacUvMismatch {
            enrolled_with_uv: false
        }
    );
}

#[test]
fn zero_counters_follow_policy_and_suspension_denies() {
    let mut k = key(UvRequirement::Discouraged);
    k.state.sign_count = 0;
    let ch = Challenge::new("sudo", "alice");
    let r = respond(&k, &ch, Flags::UP, 0, RP);
    assert_eq!(
        check(&k, &ch, &r).unwrap().counter(),
        CounterOutcome::NotKept
    );
    let asked = [&k.record];
    let strict = Expectation {
        challenge: &ch,
        asked: &asked,
        counter_policy: CounterPolicy::Require,
    };
    assert_eq!(
        verify_assertion(&strict, &r, &k.state).unwrap_err(),
        VerifyError::CounterNotKept
    );

    k.state.suspension = Some(Suspension::new(
        "counter regression".into(),
        std::time::SystemTime::now(),
    ));
    assert!(matches!(
        check(&k, &ch, &r).unwrap_err(),
        VerifyError::Suspended(_)
    ));
}

#[test]
fn challenges_are_fresh() {
    assert_ne!(
        Challenge::new("s", "u").client_data_hash(),
        Challenge::new("s", "u").client_data_hash()
    );
}

/// The shared verifier alone, as enrollment and the agent use it: one test per rule, each on
/// an answer that is right in every other respect.
mod shared_verifier {
    use super::*;

    struct Case {
        k: Key,
        cose: CoseKey,
        cdh: [u8; 32],
    }

    fn case() -> Case {
        let k = key(UvRequirement::Discouraged);
        let cose = k.record.public_key.cose().clone();
        Case {
            k,
            cose,
            cdh: [9; 32],
        }
    }

    fn answer(c: &Case, flags: u8, rp: &str, cdh: &[u8; 32]) -> GetAssertionResponse {
        let mut raw: Vec<u8> = Sha256::digest(rp.as_bytes()).to_vec();
        raw.push(flags);
        raw.extend_from_slice(&5u32.to_be_bytes());
        let sig: p256::ecdsa::Signature = c.k.sk.sign(&[raw.as_slice(), cdh].concat());
        GetAssertionResponse {
            credential_id: c.k.record.credential_id.clone(),
            auth_data: AuthenticatorData::parse(&raw).unwrap(),
            signature: sig.to_der().as_bytes().to_vec(),
            user_id: None,
            number_of_credentials: None,
            hmac_secret: None,
        }
    }

    fn expect(c: &Case, up: bool, uv: bool) -> AssertionExpectation<'_> {
        AssertionExpectation {
            rp_id: RP,
            client_data_hash: &c.cdh,
            credential_id: &c.k.record.credential_id,
            public_key: &c.cose,
            user_presence: up,
            user_verification: uv,
        }
    }

    fn rule(c: &Case, up: bool, uv: bool, r: &GetAssertionResponse) -> Option<VerifyError> {
        check_assertion(&expect(c, up, uv), r).err()
    }

    #[test]
    fn a_right_answer_is_checked_and_exposes_what_was_signed() {
        let c = case();
        let r = answer(&c, Flags::UP | Flags::UV, RP, &c.cdh);
        let checked = check_assertion(&expect(&c, true, true), &r).unwrap();
        assert_eq!(checked.credential_id(), c.k.record.credential_id.as_slice());
        assert_eq!(checked.auth_data().sign_count, 5);
        assert!(checked.user_verified());
        assert_eq!(checked.signature(), r.signature.as_slice());
        assert!(checked.hmac_secret().is_none());
    }

    #[test]
    fn rule_credential_id_was_asked_for() {
        let c = case();
        let mut r = answer(&c, Flags::UP, RP, &c.cdh);
        r.credential_id = vec![8; 48];
        assert_eq!(
            rule(&c, true, false, &r),
            Some(VerifyError::UnexpectedCredential)
        );
        // A prefix of the asked id is another id.
        r.credential_id = c.k.record.credential_id[..47].to_vec();
        assert_eq!(
            rule(&c, true, false, &r),
            Some(VerifyError::UnexpectedCredential)
        );
    }

    #[test]
    fn rule_rp_id_hash_is_sha256_of_the_rp_id() {
        let c = case();
        let r = answer(&c, Flags::UP, "pam://other", &c.cdh);
        assert_eq!(
            rule(&c, true, false, &r),
            Some(VerifyError::RpIdHashMismatch)
        );
    }

    #[test]
    fn rule_up_when_required_only() {
        let c = case();
        let r = answer(&c, 0, RP, &c.cdh);
        assert_eq!(rule(&c, true, false, &r), Some(VerifyError::UserNotPresent));
        // A no-touch-required SSH key asks for no presence: the same answer passes.
        assert_eq!(rule(&c, false, false, &r), None);
    }

    #[test]
    fn rule_uv_when_required_only() {
        let c = case();
        let r = answer(&c, Flags::UP, RP, &c.cdh);
        assert_eq!(rule(&c, true, true, &r), Some(VerifyError::UserNotVerified));
        assert_eq!(rule(&c, true, false, &r), None);
    }

    #[test]
    fn rule_signature_with_our_key_over_auth_data_and_client_data_hash() {
        let c = case();
        // Signed over another clientDataHash.
        let r = answer(&c, Flags::UP, RP, &[8; 32]);
        assert_eq!(rule(&c, true, false, &r), Some(VerifyError::BadSignature));
        // One bit of the signature.
        let mut r = answer(&c, Flags::UP, RP, &c.cdh);
        r.signature[12] ^= 1;
        assert_eq!(rule(&c, true, false, &r), Some(VerifyError::BadSignature));
        // Flags changed after signing (a UV bit added).
        let mut r = answer(&c, Flags::UP, RP, &c.cdh);
        let mut raw = r.auth_data.raw.clone();
        raw[32] |= Flags::UV;
        r.auth_data = AuthenticatorData::parse(&raw).unwrap();
        assert_eq!(rule(&c, true, true, &r), Some(VerifyError::BadSignature));
        // Signed by another key.
        let other = key(UvRequirement::Discouraged);
        let mut r = answer(&c, Flags::UP, RP, &c.cdh);
        let sig: p256::ecdsa::Signature = other
            .sk
            .sign(&[r.auth_data.raw.as_slice(), &c.cdh].concat());
        r.signature = sig.to_der().as_bytes().to_vec();
        assert_eq!(rule(&c, true, false, &r), Some(VerifyError::BadSignature));
    }
}

/// A U2F record (no hmac-secret, no UV) and a key's answer for `app_id`.
fn u2f_key() -> Key {
    let mut k = key(UvRequirement::Discouraged);
    k.record.hmac_secret = false;
    k.record.protocol = crate::store::credential::Protocol::U2f;
    k.state.hmac = None;
    k
}

fn u2f_respond(
    k: &Key,
    ch: &Challenge,
    flags: u8,
    count: u32,
    app_id: &str,
) -> AuthenticateResponse {
    let app: [u8; 32] = Sha256::digest(app_id.as_bytes()).into();
    let signed = authentication_signed_bytes(&app, flags, count, &ch.client_data_hash());
    let sig: p256::ecdsa::Signature = k.sk.sign(&signed);
    AuthenticateResponse {
        flags,
        counter: count,
        signature: sig.to_der().as_bytes().to_vec(),
    }
}

fn u2f_check(
    k: &Key,
    ch: &Challenge,
    handle: &[u8],
    resp: &AuthenticateResponse,
) -> Result<VerifiedAssertion, VerifyError> {
    let asked = [&k.record];
    verify_u2f_assertion(
        &Expectation {
            challenge: ch,
            asked: &asked,
            counter_policy: CounterPolicy::AllowZero,
        },
        &U2fAssertion {
            key_handle: handle,
            response: resp,
        },
        &k.state,
    )
}

#[test]
fn a_u2f_authentication_verifies_through_the_same_checks() {
    let k = u2f_key();
    let ch = Challenge::new("sudo", "alice");
    let id = k.record.credential_id.clone();
    let ok = u2f_check(&k, &ch, &id, &u2f_respond(&k, &ch, 0x01, 11, RP)).unwrap();
    assert_eq!(ok.sign_count(), 11);
    assert!(!ok.user_verified());
    assert_eq!(ok.counter(), CounterOutcome::Advanced { from: 10, to: 11 });
    // Another appId, another challenge, a tampered counter: the signature does not cover it.
    let other_app = u2f_respond(&k, &ch, 0x01, 11, "pam://other");
    assert_eq!(
        u2f_check(&k, &ch, &id, &other_app).unwrap_err(),
        VerifyError::BadSignature
    );
    let other_ch = Challenge::new("sudo", "alice");
    assert_eq!(
        u2f_check(&k, &other_ch, &id, &u2f_respond(&k, &ch, 0x01, 11, RP)).unwrap_err(),
        VerifyError::BadSignature
    );
    let mut bumped = u2f_respond(&k, &ch, 0x01, 11, RP);
    bumped.counter = 12;
    assert_eq!(
        u2f_check(&k, &ch, &id, &bumped).unwrap_err(),
        VerifyError::BadSignature
    );
    // Presence comes from the signed flags.
    assert_eq!(
        u2f_check(&k, &ch, &id, &u2f_respond(&k, &ch, 0x00, 11, RP)).unwrap_err(),
        VerifyError::UserNotPresent
    );
    // A key handle we did not ask for.
    assert_eq!(
        u2f_check(&k, &ch, &[8; 48], &u2f_respond(&k, &ch, 0x01, 11, RP)).unwrap_err(),
        VerifyError::UnexpectedCredential
    );
}

#[test]
fn a_u2f_counter_goes_through_the_shared_counter_check() {
    let k = u2f_key();
    let ch = Challenge::new("sudo", "alice");
    let id = k.record.credential_id.clone();
    assert_eq!(
        u2f_check(&k, &ch, &id, &u2f_respond(&k, &ch, 0x01, 10, RP)).unwrap_err(),
        VerifyError::CounterRegression {
            stored: 10,
            received: 10
        }
    );
    let mut suspended = u2f_key();
    suspended.state.suspension = Some(Suspension::new("test".into(), std::time::SystemTime::now()));
    let id = suspended.record.credential_id.clone();
    assert!(matches!(
        u2f_check(
            &suspended,
            &ch,
            &id,
            &u2f_respond(&suspended, &ch, 0x01, 99, RP)
        ),
        Err(VerifyError::Suspended(_))
    ));
}

#[test]
fn a_u2f_authentication_cannot_satisfy_uv_or_hmac_secret() {
    let ch = Challenge::new("sudo", "alice");
    let mut uv = u2f_key();
    uv.record.user_verification = UvRequirement::Required;
    let id = uv.record.credential_id.clone();
    assert_eq!(
        u2f_check(&uv, &ch, &id, &u2f_respond(&uv, &ch, 0x01, 11, RP)).unwrap_err(),
        VerifyError::UserNotVerified
    );
    let hmac = key(UvRequirement::Discouraged);
    assert_eq!(
        u2f_check(&hmac, &ch, &id, &u2f_respond(&hmac, &ch, 0x01, 11, RP)).unwrap_err(),
        VerifyError::HmacMissing
    );
}
