//! CTAP2 layer against a scripted device: response decoding and hostile answers.

use super::*;
use crate::transport::ctaphid::CtapHidChannel;
use crate::transport::device::mock::{self, frames, MockTransport};

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
        frames(CID, crate::transport::ctaphid::cmd::CBOR, &body)
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
    c.get_assertion(&req, None, &mut |_| {
        crate::transport::ctaphid::WaitDecision::Continue
    })
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
            Err(CtapError::Misbehaved(_)) => {}
            other => panic!("expected Misbehaved, got {:?}", other.err()),
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

/// authenticatorData with the given flags and tail (attested data, extensions, anything).
fn auth_data(flags: u8, tail: &[u8]) -> Vec<u8> {
    let mut ad = vec![0u8; 32];
    ad.push(flags);
    ad.extend_from_slice(&5u32.to_be_bytes());
    ad.extend_from_slice(tail);
    ad
}

fn descriptor(id: Value, kind: &str) -> Value {
    cbor::text_map(vec![("id", id), ("type", Value::Text(kind.into()))])
}

/// A getAssertion body (status byte first) from explicit members, in the order given: `encode`
/// sorts keys but keeps repeated ones, which is how a hostile key would send them.
fn assertion_body(members: Vec<(i64, Value)>) -> Vec<u8> {
    let map = Value::Map(
        members
            .into_iter()
            .map(|(k, v)| (Value::Integer(k.into()), v))
            .collect(),
    );
    [vec![0], cbor::encode(&map)].concat()
}

fn probe_with(body: Vec<u8>) -> Result<GetAssertionResponse, CtapError> {
    let mut c = ctap(device(move |_| body.clone()));
    probe(&mut c)
}

fn expect_misbehaved(r: Result<GetAssertionResponse, CtapError>, words: &str) {
    match r {
        Err(CtapError::Misbehaved(m)) => assert!(m.to_string().contains(words), "{m}"),
        Err(e) => panic!("expected Misbehaved({words}), got {e}"),
        Ok(_) => panic!("expected Misbehaved({words}), got an accepted response"),
    }
}

fn ed25519_cose() -> Vec<u8> {
    let sk = ed25519_dalek::SigningKey::from_bytes(&[9; 32]);
    cose::CoseKey::EdDsa {
        x: sk.verifying_key().to_bytes(),
    }
    .to_bytes()
}

#[test]
fn a_response_repeating_a_member_is_refused() {
    let good_ad = auth_data(0x01, &[]);
    // Old decoding kept both members 3 and read the first; now the whole answer is refused.
    let body = assertion_body(vec![
        (1, descriptor(Value::Bytes(vec![9; 16]), "public-key")),
        (2, Value::Bytes(good_ad.clone())),
        (3, Value::Bytes(vec![1, 2, 3])),
        (3, Value::Bytes(vec![4, 5, 6])),
    ]);
    expect_misbehaved(probe_with(body), "repeats a key");
    // A repeated key one level down: the descriptor says "id" twice.
    let twice = Value::Map(vec![
        (Value::Text("id".into()), Value::Bytes(vec![9; 16])),
        (Value::Text("id".into()), Value::Bytes(vec![8; 16])),
        (Value::Text("type".into()), Value::Text("public-key".into())),
    ]);
    let body = assertion_body(vec![
        (1, twice),
        (2, Value::Bytes(good_ad)),
        (3, Value::Bytes(vec![1])),
    ]);
    expect_misbehaved(probe_with(body), "repeats a key");
}

#[test]
fn an_assertion_with_the_at_flag_is_refused() {
    // With well-formed attested credential data (the old parser accepted this) ...
    let mut attested = vec![0x11; 16];
    attested.extend_from_slice(&3u16.to_be_bytes());
    attested.extend_from_slice(&[1, 2, 3]);
    attested.extend(ed25519_cose());
    assert!(authdata::AuthenticatorData::parse(&auth_data(0x41, &attested)).is_ok());
    for ad in [auth_data(0x41, &attested), auth_data(0x41, &[])] {
        let body = assertion_body(vec![
            (2, Value::Bytes(ad)),
            (3, Value::Bytes(vec![1, 2, 3])),
        ]);
        expect_misbehaved(probe_with(body), "AT flag");
    }
}

#[test]
fn extensions_must_match_the_ed_flag_and_end_the_auth_data() {
    let ext = cbor::encode(&cbor::text_map(vec![(
        "hmac-secret",
        Value::Bytes(vec![0; 32]),
    )]));
    let cases: Vec<(Vec<u8>, &str)> = vec![
        // ED set, nothing follows.
        (auth_data(0x81, &[]), "CBOR that ends in the middle"),
        // Extensions follow without ED.
        (auth_data(0x01, &ext), "trailing bytes"),
        // ED and extensions, then one byte more.
        (
            auth_data(0x81, &[ext.clone(), vec![0]].concat()),
            "trailing",
        ),
        // ED and something that is not a map.
        (auth_data(0x81, &[0x01]), "not a CBOR map"),
        // ED and a map that repeats a key (old: accepted, and `extension()` read the first).
        (
            auth_data(
                0x81,
                &cbor::encode(&Value::Map(vec![
                    (Value::Text("hmac-secret".into()), Value::Bytes(vec![0; 32])),
                    (Value::Text("hmac-secret".into()), Value::Bytes(vec![1; 32])),
                ])),
            ),
            "repeats a key",
        ),
        // ED and a map in non-canonical order (old: accepted, the prefix decoder did not check).
        (
            auth_data(
                0x81,
                &hex::decode("a2627a7a01616102").unwrap(), // {"zz": 1, "a": 2}
            ),
            "canonical",
        ),
        // ED and an integer written in two bytes.
        (
            auth_data(0x81, &hex::decode("a161611801").unwrap()),
            "canonical",
        ),
    ];
    for (ad, words) in cases {
        let body = assertion_body(vec![
            (2, Value::Bytes(ad.clone())),
            (3, Value::Bytes(vec![1, 2, 3])),
        ]);
        expect_misbehaved(probe_with(body), words);
    }
    // ED with a proper map is fine.
    let body = assertion_body(vec![
        (2, Value::Bytes(auth_data(0x81, &ext))),
        (3, Value::Bytes(vec![1, 2, 3])),
    ]);
    assert!(probe_with(body).is_ok());
}

#[test]
fn an_attested_cose_key_is_decoded_strictly() {
    let mut attested = vec![0x11; 16];
    attested.extend_from_slice(&3u16.to_be_bytes());
    attested.extend_from_slice(&[1, 2, 3]);
    let key = ed25519_cose();
    assert!(
        authdata::AuthenticatorData::parse(&auth_data(0x41, &[&attested[..], &key].concat()))
            .is_ok()
    );
    // The same key with kty (1) repeated at the end: old code read the first kty and accepted it.
    let mut v = cbor::decode_strict(&key).unwrap();
    if let Value::Map(entries) = &mut v {
        entries.push((Value::Integer(1.into()), Value::Integer(2.into())));
    }
    let dup = cbor::encode(&v);
    let err = authdata::AuthenticatorData::parse(&auth_data(0x41, &[&attested[..], &dup].concat()))
        .unwrap_err();
    assert!(err.to_string().contains("repeats a key"), "{err}");
}

#[test]
fn a_credential_descriptor_must_be_a_real_one() {
    let ad = auth_data(0x01, &[]);
    for (desc, words) in [
        // The id as text: old code fell back to the single allow-list entry.
        (
            descriptor(Value::Text("abc".into()), "public-key"),
            "not a byte string",
        ),
        (descriptor(Value::Bytes(vec![9; 16]), "secret-key"), "type"),
        (
            cbor::text_map(vec![("id", Value::Bytes(vec![9; 16]))]),
            "lacks its type",
        ),
        (
            cbor::text_map(vec![("type", Value::Text("public-key".into()))]),
            "lacks its id",
        ),
        (Value::Bytes(vec![9; 16]), "not a CBOR map"),
    ] {
        let body = assertion_body(vec![
            (1, desc),
            (2, Value::Bytes(ad.clone())),
            (3, Value::Bytes(vec![1])),
        ]);
        expect_misbehaved(probe_with(body), words);
    }
    let body = assertion_body(vec![
        (1, descriptor(Value::Bytes(vec![9; 16]), "public-key")),
        (2, Value::Bytes(ad)),
        (3, Value::Bytes(vec![1])),
    ]);
    assert_eq!(probe_with(body).unwrap().credential_id, vec![9; 16]);
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
