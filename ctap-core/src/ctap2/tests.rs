//! CTAP2 layer against a scripted device: response decoding and hostile answers.

use super::*;
use crate::ctaphid::CtapHidChannel;
use crate::device::mock::{self, frames, MockTransport};

const CID: u32 = 0x5566_7788;

fn info_value() -> Value {
    cbor::int_map(vec![
        (
            1,
            Some(Value::Array(vec![
                Value::Text("FIDO_2_0".into()),
                Value::Text("FIDO_2_1".into()),
            ])),
        ),
        (
            2,
            Some(Value::Array(vec![
                Value::Text("hmac-secret".into()),
                Value::Text("credProtect".into()),
            ])),
        ),
        (3, Some(Value::Bytes(vec![0xAA; 16]))),
        (
            4,
            Some(cbor::text_map(vec![
                ("clientPin", Value::Bool(false)),
                ("rk", Value::Bool(true)),
            ])),
        ),
        (5, Some(Value::Integer(2048.into()))),
        (
            6,
            Some(Value::Array(vec![
                Value::Integer(2.into()),
                Value::Integer(1.into()),
            ])),
        ),
    ])
}

/// A device that answers getInfo properly and everything else with `reply(command byte)`.
fn device(reply: impl Fn(u8) -> Vec<u8> + Send + 'static) -> MockTransport {
    mock::device(CID, move |_, data| {
        let body = if data.first() == Some(&command::GET_INFO) {
            [vec![0], cbor::encode(&info_value())].concat()
        } else {
            reply(data.first().copied().unwrap_or(0))
        };
        frames(CID, crate::ctaphid::cmd::CBOR, &body)
    })
}

fn ctap(dev: MockTransport) -> Ctap2<MockTransport> {
    Ctap2::new(CtapHidChannel::open(dev).unwrap()).unwrap()
}

fn probe(c: &mut Ctap2<MockTransport>) -> Result<GetAssertionResponse, CtapError> {
    let req = GetAssertionRequest {
        rp_id: "pam://host".into(),
        client_data_hash: [1; 32],
        allow_list: vec![vec![9; 16]],
        user_presence: false,
        user_verification: false,
        hmac_secret: None,
    };
    c.get_assertion(&req, None, &mut |_| crate::ctaphid::WaitDecision::Continue)
}

#[test]
fn get_info_is_typed() {
    let c = ctap(device(|_| vec![0x01]));
    let info = c.info();
    assert_eq!(info.versions, vec!["FIDO_2_0", "FIDO_2_1"]);
    assert!(info.supports_extension("hmac-secret"));
    assert_eq!(info.max_msg_size, Some(2048));
    assert!(!info.pin_set());
    assert_eq!(info.option("rk"), Some(true));
    assert_eq!(
        pin::PinUvProtocol::negotiate(info).unwrap(),
        pin::PinUvProtocol::V2
    );
    assert_eq!(info.aaguid_string(), "aaaaaaaa-aaaa-aaaa-aaaa-aaaaaaaaaaaa");
}

#[test]
fn error_status_is_typed() {
    let mut c = ctap(device(|_| vec![0x2E]));
    assert!(matches!(
        probe(&mut c),
        Err(CtapError::Status(CtapStatus::NoCredentials))
    ));
    let mut c = ctap(device(|_| vec![0xF3]));
    let err = probe(&mut c).err().unwrap();
    assert!(matches!(err, CtapError::Status(CtapStatus::Unknown(0xF3))));
    assert!(err.to_string().contains("0xf3"), "{err}");
}

#[test]
fn malformed_responses_are_misbehaviour() {
    for body in [
        vec![0x00, 0xA1],             // truncated map
        vec![0x00, 0xFF, 0x00],       // not CBOR
        vec![0x00, 0x01],             // an integer, not a map
        vec![],                       // no status byte
        vec![0x00, 0xA1, 0x02, 0x01], // authData is not bytes
    ] {
        let mut c = ctap(device(move |_| body.clone()));
        match probe(&mut c) {
            Err(CtapError::DeviceMisbehaved(_)) => {}
            other => panic!("expected DeviceMisbehaved, got {:?}", other.err()),
        }
    }
}

#[test]
fn signature_and_auth_data_members_are_required() {
    let mut ad = vec![0u8; 32];
    ad.extend_from_slice(&[0x01, 0, 0, 0, 5]);
    let without_sig = cbor::int_map(vec![(2, Some(Value::Bytes(ad.clone())))]);
    let mut c = ctap(device(move |_| {
        [vec![0], cbor::encode(&without_sig)].concat()
    }));
    let err = probe(&mut c).err().unwrap();
    assert!(err.to_string().contains("signature"), "{err}");

    let full = cbor::int_map(vec![
        (2, Some(Value::Bytes(ad))),
        (3, Some(Value::Bytes(vec![1, 2, 3]))),
    ]);
    let mut c = ctap(device(move |_| [vec![0], cbor::encode(&full)].concat()));
    let ok = probe(&mut c).unwrap();
    // The single allow-list entry stands in for an omitted credential.
    assert_eq!(ok.credential_id, vec![9; 16]);
    assert_eq!(ok.auth_data.sign_count, 5);
    assert_eq!(ok.signature, vec![1, 2, 3]);
}

proptest::proptest! {
    /// Whatever a key answers, decoding gives a value or a typed error, never a panic.
    #[test]
    fn response_decoders_never_panic(body in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..300)) {
        if let Ok(v) = cbor::decode_strict(&body) {
            let _ = info::AuthenticatorInfo::from_value(&v);
            let _ = GetAssertionResponse::from_value_for_tests(&v);
            let _ = cose::CoseKey::from_value(&v);
        }
    }
}
