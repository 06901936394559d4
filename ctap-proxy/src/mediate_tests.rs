use super::*;
use crate::policy::{RpPattern, DEFAULT_COMMANDS};
use ctap_core::transport::ctap2::cbor::{int_map, text_map};

fn policy() -> ClientPolicy {
    ClientPolicy::new(
        "t",
        vec![
            RpPattern::Exact("example.org".into()),
            RpPattern::Suffix("example.net".into()),
        ],
        true,
        false,
        DEFAULT_COMMANDS.to_vec(),
    )
}

fn request(command: u8, params: Value) -> Vec<u8> {
    let mut b = vec![command];
    b.extend(cbor::encode(&params));
    b
}

fn get_assertion(rp: &str, allow: &[&[u8]]) -> Vec<u8> {
    let allow = (!allow.is_empty()).then(|| {
        Value::Array(
            allow
                .iter()
                .map(|id| {
                    text_map(vec![
                        ("id", Value::Bytes(id.to_vec())),
                        ("type", Value::Text("public-key".into())),
                    ])
                })
                .collect(),
        )
    });
    request(
        command::GET_ASSERTION,
        int_map(vec![
            (1, Some(Value::Text(rp.into()))),
            (2, Some(Value::Bytes(vec![0; 32]))),
            (3, allow),
        ]),
    )
}

fn auth_data(rp: &str) -> Vec<u8> {
    let mut a = Sha256::digest(rp.as_bytes()).to_vec();
    a.push(Flags::UP);
    a.extend([0, 0, 0, 1]);
    a
}

fn assertion(rp: &str, id: &[u8], n: Option<u64>) -> Vec<u8> {
    let mut out = vec![0];
    out.extend(cbor::encode(&int_map(vec![
        (
            1,
            Some(text_map(vec![
                ("id", Value::Bytes(id.to_vec())),
                ("type", Value::Text("public-key".into())),
            ])),
        ),
        (2, Some(Value::Bytes(auth_data(rp)))),
        (3, Some(Value::Bytes(vec![1; 70]))),
        (5, n.map(|n| Value::Integer(n.into()))),
    ])));
    out
}

fn refused(r: Result<Forward, Refused>) -> &'static str {
    match r {
        Err(r) => r.refusal.reason,
        Ok(f) => panic!("forwarded {f:?}"),
    }
}

#[test]
fn rp_ids_are_checked() {
    let s = Session::default();
    assert!(check_request(&policy(), &s, &get_assertion("example.org", &[])).is_ok());
    assert!(check_request(&policy(), &s, &get_assertion("a.example.net", &[])).is_ok());
    assert_eq!(
        refused(check_request(
            &policy(),
            &s,
            &get_assertion("example.net", &[])
        )),
        "rp-not-allowed"
    );
    assert_eq!(
        refused(check_request(
            &policy(),
            &s,
            &get_assertion("evil.org", &[])
        )),
        "rp-not-allowed"
    );
}

#[test]
fn dangerous_commands_never_pass_by_default() {
    let s = Session::default();
    for c in [0x07u8, 0x09, 0x0A, 0x0C, 0x0D, 0x40, 0x41, 0x50, 0xBF] {
        let r = check_request(&policy(), &s, &[c]).unwrap_err();
        assert_eq!(r.refusal.status, status::OPERATION_DENIED, "{c:#x}");
    }
    assert_eq!(
        check_request(&policy(), &s, &[0x03])
            .unwrap_err()
            .refusal
            .status,
        status::INVALID_COMMAND
    );
    let mut p = policy();
    p.commands.push(Command::Reset);
    assert!(check_request(&p, &s, &[0x07]).is_ok());
}

#[test]
fn non_canonical_and_repeated_keys_never_pass() {
    let s = Session::default();
    let good = get_assertion("example.org", &[]);
    // Keys out of order: {2: .., 1: ..}.
    let mut swapped = vec![command::GET_ASSERTION, 0xA2, 0x02, 0x58, 0x20];
    swapped.extend([0; 32]);
    swapped.extend([0x01, 0x6B]);
    swapped.extend(b"example.org");
    // {1: "example.org", 1: "evil.org", 2: ..}.
    let mut repeated = vec![command::GET_ASSERTION, 0xA3, 0x01, 0x6B];
    repeated.extend(b"example.org");
    repeated.extend([0x01, 0x68]);
    repeated.extend(b"evil.org");
    repeated.extend([0x02, 0x58, 0x20]);
    repeated.extend([0; 32]);
    let mut trailing = good.clone();
    trailing.push(0);
    for bad in [swapped, repeated, trailing, good[..good.len() - 1].to_vec()] {
        assert_eq!(
            refused(check_request(&policy(), &s, &bad)),
            "malformed-cbor"
        );
    }
    // Re-encoding keeps a canonical request byte for byte.
    assert_eq!(check_request(&policy(), &s, &good).unwrap().bytes, good);
}

#[test]
fn uv_and_pin_need_the_policy() {
    let s = Session::default();
    let uv = request(
        command::GET_ASSERTION,
        int_map(vec![
            (1, Some(Value::Text("example.org".into()))),
            (2, Some(Value::Bytes(vec![0; 32]))),
            (6, Some(Value::Bytes(vec![1; 16]))),
            (7, Some(Value::Integer(2.into()))),
        ]),
    );
    assert_eq!(refused(check_request(&policy(), &s, &uv)), "uv-not-allowed");
    let mut p = policy();
    p.user_verification = true;
    assert!(check_request(&p, &s, &uv).is_ok());
    let token = |perm: u64, rp: Option<&str>| {
        request(
            command::CLIENT_PIN,
            int_map(vec![
                (1, Some(Value::Integer(2.into()))),
                (2, Some(Value::Integer(9.into()))),
                (9, Some(Value::Integer(perm.into()))),
                (0x0A, rp.map(|r| Value::Text(r.into()))),
            ]),
        )
    };
    assert!(check_request(&p, &s, &token(0x02, Some("example.org"))).is_ok());
    assert!(check_request(&p, &s, &token(0x03, Some("example.org"))).is_ok());
    assert_eq!(
        refused(check_request(&p, &s, &token(0x04, Some("example.org")))),
        "permissions"
    );
    assert_eq!(
        refused(check_request(&p, &s, &token(0x22, Some("example.org")))),
        "permissions"
    );
    assert_eq!(
        refused(check_request(&p, &s, &token(0x02, Some("evil.org")))),
        "rp-not-allowed"
    );
    assert_eq!(
        refused(check_request(&p, &s, &token(0x02, None))),
        "permissions-without-rp-id"
    );
    let set_pin = request(
        command::CLIENT_PIN,
        int_map(vec![(2, Some(Value::Integer(3.into())))]),
    );
    assert_eq!(refused(check_request(&p, &s, &set_pin)), "pin-change");
}

#[test]
fn get_next_assertion_follows_only_this_clients_get_assertion() {
    let p = policy();
    let mut s = Session::default();
    assert_eq!(
        refused(check_request(&p, &s, &[command::GET_NEXT_ASSERTION])),
        "no-pending-assertion"
    );
    let f = check_request(&p, &s, &get_assertion("example.org", &[])).unwrap();
    s.begin(&f);
    check_response(&f, &mut s, &assertion("example.org", b"c1", Some(3))).unwrap();
    let next = check_request(&p, &s, &[command::GET_NEXT_ASSERTION]).unwrap();
    assert_eq!(next.rp_id.as_deref(), Some("example.org"));
    s.begin(&next);
    // The QSB-120 case: a queued answer for another RP is refused, and nothing stays pending.
    let r = check_response(&next, &mut s, &assertion("other.org", b"x", None)).unwrap_err();
    assert_eq!(r.reason, "key-rp-mismatch");
    assert_eq!(
        refused(check_request(&p, &s, &[command::GET_NEXT_ASSERTION])),
        "no-pending-assertion"
    );
    // Two credentials: exactly one getNextAssertion.
    let f = check_request(&p, &s, &get_assertion("example.org", &[])).unwrap();
    s.begin(&f);
    check_response(&f, &mut s, &assertion("example.org", b"c1", Some(2))).unwrap();
    let next = check_request(&p, &s, &[command::GET_NEXT_ASSERTION]).unwrap();
    s.begin(&next);
    check_response(&next, &mut s, &assertion("example.org", b"c2", None)).unwrap();
    assert!(check_request(&p, &s, &[command::GET_NEXT_ASSERTION]).is_err());
}

#[test]
fn assertion_answers_are_checked() {
    let p = policy();
    let mut s = Session::default();
    let f = check_request(&p, &s, &get_assertion("example.org", &[b"mine"])).unwrap();
    // Another credential than the one asked for.
    assert_eq!(
        check_response(&f, &mut s, &assertion("example.org", b"other", None))
            .unwrap_err()
            .reason,
        "key-credential-not-asked-for"
    );
    assert_eq!(
        check_response(&f, &mut s, &assertion("example.net", b"mine", None))
            .unwrap_err()
            .reason,
        "key-rp-mismatch"
    );
    // Non-canonical answer.
    let mut bad = assertion("example.org", b"mine", None);
    bad.push(0);
    assert_eq!(
        check_response(&f, &mut s, &bad).unwrap_err().reason,
        "key-malformed-cbor"
    );
    let ok = assertion("example.org", b"mine", None);
    assert_eq!(check_response(&f, &mut s, &ok).unwrap(), ok);
    // An error status passes alone.
    assert_eq!(
        check_response(&f, &mut s, &[0x2E, 1, 2]).unwrap(),
        vec![0x2E]
    );
}

#[test]
fn make_credential_is_checked() {
    let mc = |rp: &str, extra: Option<Value>| {
        request(
            command::MAKE_CREDENTIAL,
            int_map(vec![
                (1, Some(Value::Bytes(vec![0; 32]))),
                (2, Some(text_map(vec![("id", Value::Text(rp.into()))]))),
                (
                    3,
                    Some(text_map(vec![
                        ("id", Value::Bytes(vec![1])),
                        ("name", Value::Text("u".into())),
                    ])),
                ),
                (
                    4,
                    Some(Value::Array(vec![text_map(vec![
                        ("alg", Value::Integer((-7).into())),
                        ("type", Value::Text("public-key".into())),
                    ])])),
                ),
                (0x0A, extra),
            ]),
        )
    };
    let s = Session::default();
    assert!(check_request(&policy(), &s, &mc("example.org", None)).is_ok());
    assert_eq!(
        refused(check_request(&policy(), &s, &mc("evil.org", None))),
        "rp-not-allowed"
    );
    assert_eq!(
        refused(check_request(
            &policy(),
            &s,
            &mc("example.org", Some(Value::Integer(1.into())))
        )),
        "enterprise-attestation"
    );
    let mut p = policy();
    p.make_credential = false;
    assert_eq!(
        refused(check_request(&p, &s, &mc("example.org", None))),
        "make-credential-not-allowed"
    );
}
