//! The cue before a wait for the key's own user verification (issue 16, item 3): when the
//! planner picks built-in UV on a key that issues pinUvAuthTokens, the key waits for the finger
//! at the token request (clientPIN getPinUvAuthTokenUsingUvWithPermissions), not at the
//! assertion; `policy.uv_prompt` must reach the conversation before that request is sent. A
//! scripted key with built-in UV (the virtual key has none) timestamps the requests it gets,
//! the prompter its messages, on one clock.

use std::sync::{Arc, Mutex};
use std::time::Instant;

use ciborium::Value;

use super::*;
use crate::store::credential::{EnrolledKey, RpId};
use crate::transport::ctap2::cose::CoseKey;
use crate::transport::ctap2::{cbor, Ctap2};
use crate::transport::ctaphid::{cmd, CtapHidChannel};
use crate::transport::device::mock::{self, frames};
use crate::transport::device::Transport;

const CID: u32 = 0x7172_7374;

type Timeline = Arc<Mutex<Vec<(Instant, String)>>>;

fn info() -> Value {
    cbor::int_map(vec![
        (1, Some(Value::Array(vec![Value::Text("FIDO_2_1".into())]))),
        (3, Some(Value::Bytes(vec![0xAB; 16]))),
        (
            4,
            Some(cbor::text_map(vec![
                ("uv", Value::Bool(true)),
                ("pinUvAuthToken", Value::Bool(true)),
            ])),
        ),
        (6, Some(Value::Array(vec![Value::Integer(2.into())]))),
    ])
}

/// A key with built-in UV: getInfo, a real P-256 key agreement key, and a UV token request
/// that it logs and refuses (OPERATION_DENIED: the finger did not come).
fn key(timeline: Timeline) -> Authenticator {
    let secret = p256::SecretKey::random(&mut rand::thread_rng());
    let point =
        p256::elliptic_curve::sec1::ToEncodedPoint::to_encoded_point(&secret.public_key(), false);
    let mut x = [0u8; 32];
    let mut y = [0u8; 32];
    x.copy_from_slice(point.x().unwrap());
    y.copy_from_slice(point.y().unwrap());
    let agreement = CoseKey::Es256 { x, y, alg: -25 }.to_value();
    let dev = mock::device(CID, move |_, data| {
        let body = match data.first() {
            Some(0x04) => [vec![0], cbor::encode(&info())].concat(),
            Some(0x06) => {
                let params = cbor::decode_strict(&data[1..]).unwrap();
                let sub = params
                    .as_map()
                    .and_then(|m| m.iter().find(|(k, _)| k.as_integer() == Some(2.into())))
                    .and_then(|(_, v)| v.as_integer())
                    .map(i128::from);
                match sub {
                    Some(2) => [
                        vec![0],
                        cbor::encode(&cbor::int_map(vec![(1, Some(agreement.clone()))])),
                    ]
                    .concat(),
                    Some(6) => {
                        timeline
                            .lock()
                            .unwrap()
                            .push((Instant::now(), "key: uv token request".into()));
                        vec![0x27]
                    }
                    _ => vec![0x01],
                }
            }
            _ => vec![0x01],
        };
        frames(CID, cmd::CBOR, &body)
    });
    let transport: Box<dyn Transport> = Box::new(dev);
    Ctap2::new(CtapHidChannel::open(transport).unwrap()).unwrap()
}

struct Conversation(Timeline);

impl Prompter for Conversation {
    fn touch_cue(&mut self, m: &str) {
        self.0
            .lock()
            .unwrap()
            .push((Instant::now(), format!("cue: {m}")));
    }
    fn request_pin(&mut self, prompt: &str) -> Option<crate::transport::ctap2::pin::Pin> {
        self.0
            .lock()
            .unwrap()
            .push((Instant::now(), format!("pin: {prompt}")));
        None
    }
    fn info(&mut self, _: &str) {}
}

fn uv_record() -> CredentialRecord {
    CredentialRecord {
        name: "finger".into(),
        credential_id: vec![7; 16],
        rp_id: RpId::parse("pam://test").unwrap(),
        public_key: EnrolledKey::new(CoseKey::EdDsa { x: [0; 32] }).unwrap(),
        aaguid: String::new(),
        user_verification: UvRequirement::Required,
        hmac_secret: false,
        created: String::new(),
        no_touch_required: false,
        protocol: crate::store::credential::Protocol::Fido2,
    }
}

#[test]
fn the_uv_cue_reaches_the_conversation_before_the_key_waits_for_the_finger() {
    let timeline = Timeline::default();
    let mut key = key(timeline.clone());
    let policy = Policy {
        uv_prompt: "Put your finger on the key for sudo".into(),
        ..Policy::default()
    };
    let mut conversation = Conversation(timeline.clone());
    let result = verify_user(&mut key, &uv_record(), &policy, &mut conversation);
    let line = timeline.lock().unwrap().clone();
    for (t, e) in &line {
        println!("{:?}  {e}", t.duration_since(line[0].0));
    }
    assert!(
        matches!(
            result,
            Err(LoginError::Device(CtapError::Status(
                CtapStatus::OperationDenied
            )))
        ),
        "the key's refusal: {:?}",
        result.err()
    );
    let events: Vec<&str> = line.iter().map(|(_, e)| e.as_str()).collect();
    assert_eq!(
        events,
        vec![
            "cue: Put your finger on the key for sudo",
            "key: uv token request"
        ],
        "root's UV cue, then the wait; no PIN prompt"
    );
    assert!(line[0].0 <= line[1].0);

    // With the cue off (`cue = false`), nothing is shown and the wait still happens.
    timeline.lock().unwrap().clear();
    let quiet = Policy {
        cue: false,
        ..policy
    };
    let mut key = self::key(timeline.clone());
    let _ = verify_user(&mut key, &uv_record(), &quiet, &mut conversation);
    let events: Vec<String> = timeline
        .lock()
        .unwrap()
        .iter()
        .map(|(_, e)| e.clone())
        .collect();
    assert_eq!(events, vec!["key: uv token request".to_string()]);
}
