//! ctap-proxy's mediation against ctap-softtoken: allowed RPs pass, everything else is refused
//! and never reaches the key (a recording relay between the proxy and the key shows what did),
//! getNextAssertion is filtered per client (QSB-120), two clients with different policies at
//! once.
#![allow(clippy::unwrap_used)]

mod proxy_common;

use ciborium::Value;
use ctap_e2e::{SoftToken, TempDir};
use proxy_common::*;

const POLICY: &str = r#"
[client.dev]
rp_ids = ["example.org", "*.example.net"]

[client.a]
rp_ids = ["a.example"]

[client.b]
rp_ids = ["b.example"]
commands = ["getInfo", "getAssertion", "getNextAssertion"]
"#;

#[test]
fn allowed_rp_registers_and_asserts_refused_requests_never_reach_the_key() {
    let dir = TempDir::new("px-allow");
    let key = SoftToken::start(dir.path(), &dir.path().join("key.state"), &[]);
    let rec = Recorder::start(dir.path(), &key.socket);
    let proxy = Proxy::serve(dir.path(), &rec.uri(), POLICY, &["dev"]);
    let mut c = Raw::connect(&proxy.socket("dev"));

    let (st, mc) = c.cbor(0x01, Some(&make_credential("example.org", b"u1", false)));
    assert_eq!(st, 0, "makeCredential for an allowed RP");
    let id = credential_id(mc.as_ref().unwrap());
    let (st, ga) = c.cbor(
        0x02,
        Some(&get_assertion("example.org", std::slice::from_ref(&id))),
    );
    assert_eq!(st, 0);
    assert_eq!(rp_id_hash(ga.as_ref().unwrap()), sha256("example.org"));
    // A wildcard RP: whole labels under example.net.
    let (st, _) = c.cbor(0x01, Some(&make_credential("x.example.net", b"u2", false)));
    assert_eq!(st, 0);
    proxy.wait_audit(&[
        "client=\"dev\"",
        "command=getAssertion rp_id=\"example.org\" decision=allow status=0x00",
    ]);

    let state_before = std::fs::read(&key.state).unwrap();
    let reached_before = rec.count();
    let refused: Vec<(&str, Vec<u8>, &str)> = vec![
        (
            "makeCredential",
            request(0x01, &make_credential("evil.org", b"u3", false)),
            "rp-not-allowed",
        ),
        (
            "makeCredential",
            request(0x01, &make_credential("example.net", b"u3", false)),
            "rp-not-allowed",
        ),
        (
            "getAssertion",
            request(0x02, &get_assertion("evil.org", std::slice::from_ref(&id))),
            "rp-not-allowed",
        ),
        ("reset", vec![0x07], "command-not-allowed"),
        (
            "credentialManagement",
            request(
                0x0A,
                &Value::Map(vec![(Value::Integer(1.into()), Value::Integer(1.into()))]),
            ),
            "command-not-allowed",
        ),
        ("credentialManagement", vec![0x41], "command-not-allowed"),
        ("authenticatorConfig", vec![0x0D], "command-not-allowed"),
        ("bioEnrollment", vec![0x09], "command-not-allowed"),
        ("largeBlobs", vec![0x0C], "command-not-allowed"),
        ("vendor", vec![0x50], "command-not-allowed"),
        ("getNextAssertion", vec![0x08], "no-pending-assertion"),
    ];
    for (name, payload, reason) in &refused {
        let (st, body) = c.cbor_raw(payload);
        assert_eq!((st, body), (DENIED, None), "{name}");
        proxy.wait_audit(&[
            &format!("command={name}"),
            &format!("decision=refuse reason={reason} status=0x27"),
        ]);
    }
    // U2F register for an app ID the client may not use: refused with SW_WRONG_DATA.
    let mut apdu = vec![0, 0x01, 0, 0, 0, 0, 64];
    apdu.extend([0u8; 32]);
    apdu.extend(sha256("evil.org"));
    c.send(CMD_MSG, &apdu);
    let (_, cmd, sw) = c.recv();
    assert_eq!((cmd, sw), (CMD_MSG, vec![0x6A, 0x80]));
    proxy.wait_audit(&[
        "command=u2f-register",
        "reason=rp-not-allowed",
        "status=0x6a80",
    ]);

    assert_eq!(
        rec.count(),
        reached_before,
        "a refused request reached the key"
    );
    assert_eq!(
        std::fs::read(&key.state).unwrap(),
        state_before,
        "the key's state changed"
    );
    // The reset never happened: the credential still works, on the key itself.
    let mut direct = Raw::connect(&key.socket);
    let (st, _) = direct.cbor(0x02, Some(&get_assertion("example.org", &[id])));
    assert_eq!(st, 0);

    // U2F register for an allowed app ID reaches the key, re-encoded the same, and the key's
    // U2F answer comes back (a registration, or "touch needed" first).
    let before = rec.count();
    let mut apdu = vec![0, 0x01, 0, 0, 0, 0, 64];
    apdu.extend([0u8; 32]);
    apdu.extend(sha256("example.org"));
    c.send(CMD_MSG, &apdu);
    let (_, cmd, answer) = c.recv();
    assert_eq!(cmd, CMD_MSG);
    assert!(
        answer.ends_with(&[0x90, 0x00]) || answer == [0x69, 0x85],
        "{answer:02x?}"
    );
    let reached = rec.messages();
    assert_eq!(reached.len(), before + 1);
    assert_eq!(reached[before].0, CMD_MSG);
    assert_eq!(
        &reached[before].1[..apdu.len().min(57)],
        &apdu[..apdu.len().min(57)]
    );
    proxy.wait_audit(&[
        "command=u2f-register rp_id=\"example.org\"",
        "decision=allow",
    ]);
}

fn request(command: u8, params: &Value) -> Vec<u8> {
    let mut b = vec![command];
    b.extend(ctap_core::transport::ctap2::cbor::encode(params));
    b
}

#[test]
fn malformed_ctaphid_and_cbor_never_reach_the_key() {
    let dir = TempDir::new("px-bad");
    let key = SoftToken::start(dir.path(), &dir.path().join("key.state"), &[]);
    let rec = Recorder::start(dir.path(), &key.socket);
    let proxy = Proxy::serve(dir.path(), &rec.uri(), POLICY, &["dev"]);
    // The proxy's own start: INIT and getInfo.
    let at_start = rec.messages();
    assert_eq!(rec.cbor_commands(), vec![0x04], "{at_start:?}");

    let mut c = Raw::connect(&proxy.socket("dev"));
    let ga = request(0x02, &get_assertion("example.org", &[]));
    let body = &ga[1..];
    // Keys out of order: {2: .., 1: ..}.
    let mut unsorted = vec![0x02, 0xA2, 0x02, 0x58, 0x20];
    unsorted.extend([0; 32]);
    unsorted.extend([0x01, 0x6B]);
    unsorted.extend(b"example.org");
    // The same key twice: {1: "example.org", 1: "evil.org", 2: ..}.
    let mut repeated = vec![0x02, 0xA3, 0x01, 0x6B];
    repeated.extend(b"example.org");
    repeated.extend([0x01, 0x68]);
    repeated.extend(b"evil.org");
    repeated.extend([0x02, 0x58, 0x20]);
    repeated.extend([0; 32]);
    // 1 written as a two-byte integer.
    let mut long_int = vec![0x02, 0xA2, 0x18, 0x01, 0x6B];
    long_int.extend(b"example.org");
    long_int.extend([0x02, 0x58, 0x20]);
    long_int.extend([0; 32]);
    let mut trailing = ga.clone();
    trailing.push(0x00);
    let truncated = ga[..ga.len() - 3].to_vec();
    let mut tagged = vec![0x02, 0xC1];
    tagged.extend(body);
    let indefinite = vec![0x02, 0xBF, 0x01, 0x61, 0x78, 0xFF];
    for (what, bad) in [
        ("unsorted", unsorted),
        ("repeated", repeated),
        ("long-int", long_int),
        ("trailing", trailing),
        ("truncated", truncated),
        ("tagged", tagged),
        ("indefinite", indefinite),
    ] {
        let (st, _) = c.cbor_raw(&bad);
        assert_eq!(st, 0x12, "{what}: CTAP2_ERR_INVALID_CBOR");
    }
    proxy.wait_audit(&["command=getAssertion decision=refuse reason=malformed-cbor status=0x12"]);
    // A request with a member CTAP does not define.
    let mut extra = ga.clone();
    extra[1] = 0xA3;
    extra.extend([0x18, 0x20, 0x00]);
    let (st, _) = c.cbor_raw(&extra);
    assert_eq!(st, 0x12);
    proxy.wait_audit(&["reason=unknown-member"]);

    // CTAPHID violations: answered with CTAPHID ERROR codes by the proxy itself.
    let cid = c.cid;
    let reports = fragment(cid, CMD_CBOR, &[0x04; 200]);
    c.report(&reports[0]);
    c.report(&reports[2]);
    assert_eq!(c.recv(), (cid, CMD_ERROR, vec![0x04]), "INVALID_SEQ");
    c.report(&fragment(cid ^ 0x5555, CMD_CBOR, &[0x04])[0]);
    assert_eq!(
        c.recv(),
        (cid ^ 0x5555, CMD_ERROR, vec![0x0B]),
        "INVALID_CHANNEL"
    );
    c.report(&fragment(BROADCAST, CMD_CBOR, &[0x04])[0]);
    assert_eq!(c.recv().2, vec![0x0B]);
    let mut too_long = fragment(cid, CMD_CBOR, &[0x04])[0];
    too_long[5..7].copy_from_slice(&u16::MAX.to_be_bytes());
    c.report(&too_long);
    assert_eq!(c.recv(), (cid, CMD_ERROR, vec![0x03]), "INVALID_LEN");
    let mut bad_init = fragment(BROADCAST, CMD_INIT, &[1; 8])[0];
    bad_init[6] = 7;
    c.report(&bad_init);
    assert_eq!(c.recv().2, vec![0x03]);
    // A message whose continuation never comes.
    c.report(&fragment(cid, CMD_CBOR, &[0x04; 200])[0]);
    assert_eq!(c.recv(), (cid, CMD_ERROR, vec![0x05]), "MSG_TIMEOUT");
    // LOCK and unknown CTAPHID commands.
    c.send(0x04, &[1]);
    assert_eq!(c.recv().2, vec![0x01]);
    c.send(0x30, &[]);
    assert_eq!(c.recv().2, vec![0x01]);
    // Half a report, then gone.
    {
        use std::io::Write;
        let mut s = std::os::unix::net::UnixStream::connect(proxy.socket("dev")).unwrap();
        s.write_all(&[0xFF; 30]).unwrap();
    }

    assert_eq!(rec.messages(), at_start, "something reached the key");
    // And the proxy still serves.
    let mut d = Raw::connect(&proxy.socket("dev"));
    assert_eq!(d.cbor(0x04, None).0, 0);
}

/// Resident credentials for two RPs on one key; clients for each.
#[test]
fn get_next_assertion_is_filtered_per_client() {
    let dir = TempDir::new("px-next");
    let key = SoftToken::start(dir.path(), &dir.path().join("key.state"), &[]);
    let mut direct = Raw::connect(&key.socket);
    for (rp, user) in [
        ("a.example", b"a1"),
        ("a.example", b"a2"),
        ("b.example", b"b1"),
        ("b.example", b"b2"),
    ] {
        let (st, _) = direct.cbor(0x01, Some(&make_credential(rp, user, true)));
        assert_eq!(st, 0, "resident credential {rp}");
    }
    drop(direct);
    let rec = Recorder::start(dir.path(), &key.socket);
    let proxy = Proxy::serve(dir.path(), &rec.uri(), POLICY, &["a", "b"]);
    let mut a = Raw::connect(&proxy.socket("a"));
    let mut b = Raw::connect(&proxy.socket("b"));

    let (st, first) = a.cbor(0x02, Some(&get_assertion("a.example", &[])));
    assert_eq!(st, 0);
    let first = first.unwrap();
    assert_eq!(rp_id_hash(&first), sha256("a.example"));
    assert_eq!(member(&first, 5), Some(&Value::Integer(2.into())));
    let (st, next) = a.cbor(0x08, None);
    assert_eq!(st, 0);
    assert_eq!(rp_id_hash(&next.unwrap()), sha256("a.example"));
    // Both of a.example's credentials are out: the proxy refuses a third.
    let reached = rec.count();
    assert_eq!(a.cbor(0x08, None).0, DENIED);
    assert_eq!(rec.count(), reached);
    // b.example is not a's.
    assert_eq!(
        a.cbor(0x02, Some(&get_assertion("b.example", &[]))).0,
        DENIED
    );
    // b never asked: nothing pending for b, whatever a left on the key.
    assert_eq!(a.cbor(0x02, Some(&get_assertion("a.example", &[]))).0, 0);
    assert_eq!(b.cbor(0x08, None).0, DENIED);
    proxy.wait_audit(&[
        "client=\"b\"",
        "command=getNextAssertion decision=refuse reason=no-pending-assertion",
    ]);
    // Interleaved: a's getAssertion, then b's, then a's getNextAssertion would get b's queue on
    // the key: refused by the proxy, before the key.
    assert_eq!(a.cbor(0x02, Some(&get_assertion("a.example", &[]))).0, 0);
    let (st, bs) = b.cbor(0x02, Some(&get_assertion("b.example", &[])));
    assert_eq!(st, 0);
    assert_eq!(rp_id_hash(&bs.unwrap()), sha256("b.example"));
    let reached = rec.count();
    assert_eq!(a.cbor(0x08, None).0, DENIED);
    assert_eq!(rec.count(), reached, "a's getNextAssertion reached the key");
    proxy.wait_audit(&["client=\"a\"", "command=getNextAssertion rp_id=\"a.example\" decision=refuse reason=not-last-get-assertion"]);
    // b's own getNextAssertion is b.example's.
    let (st, bn) = b.cbor(0x08, None);
    assert_eq!(st, 0);
    assert_eq!(rp_id_hash(&bn.unwrap()), sha256("b.example"));
    // b's policy has no makeCredential.
    assert_eq!(
        b.cbor(0x01, Some(&make_credential("b.example", b"b3", false)))
            .0,
        DENIED
    );
}

#[test]
fn two_clients_with_different_policies_at_once() {
    let dir = TempDir::new("px-two");
    let key = SoftToken::start(dir.path(), &dir.path().join("key.state"), &[]);
    let mut direct = Raw::connect(&key.socket);
    let mut ids = Vec::new();
    for rp in ["a.example", "b.example"] {
        let (st, mc) = direct.cbor(0x01, Some(&make_credential(rp, b"u", false)));
        assert_eq!(st, 0);
        ids.push(credential_id(&mc.unwrap()));
    }
    drop(direct);
    let proxy = Proxy::serve(dir.path(), &key.uri(), POLICY, &["a", "b"]);
    let threads: Vec<_> = [
        ("a", "a.example", "b.example", 0),
        ("b", "b.example", "a.example", 1),
    ]
    .into_iter()
    .map(|(client, mine, theirs, i)| {
        let socket = proxy.socket(client);
        let id = ids[i].clone();
        let other = ids[1 - i].clone();
        std::thread::spawn(move || {
            let mut c = Raw::connect(&socket);
            for _ in 0..8 {
                let (st, ga) = c.cbor(0x02, Some(&get_assertion(mine, std::slice::from_ref(&id))));
                assert_eq!(st, 0, "{client}");
                assert_eq!(rp_id_hash(&ga.unwrap()), sha256(mine));
                assert_eq!(
                    c.cbor(
                        0x02,
                        Some(&get_assertion(theirs, std::slice::from_ref(&other)))
                    )
                    .0,
                    DENIED,
                    "{client} asked for {theirs}"
                );
            }
        })
    })
    .collect();
    for t in threads {
        t.join().unwrap();
    }
    let audit = proxy.audit();
    let count = |parts: &[&str]| {
        audit
            .iter()
            .filter(|l| parts.iter().all(|p| l.contains(p)))
            .count()
    };
    assert_eq!(
        count(&["client=\"a\"", "rp_id=\"a.example\" decision=allow"]),
        8
    );
    assert_eq!(
        count(&["client=\"a\"", "rp_id=\"b.example\" decision=refuse"]),
        8
    );
    assert_eq!(
        count(&["client=\"b\"", "rp_id=\"b.example\" decision=allow"]),
        8
    );
    assert_eq!(
        count(&["client=\"b\"", "rp_id=\"a.example\" decision=refuse"]),
        8
    );
}

/// A proxy in front of a proxy (the frontend half of the Qubes design, minus uhid): the inner
/// proxy's client may ask for more than the outer one allows; the outer one decides.
#[test]
fn the_outer_proxy_decides_when_proxies_are_chained() {
    let dir = TempDir::new("px-chain");
    let key = SoftToken::start(dir.path(), &dir.path().join("key.state"), &[]);
    let outer = Proxy::serve(dir.path(), &key.uri(), POLICY, &["dev"]);
    let inner_dir = dir.path().join("inner");
    std::fs::create_dir(&inner_dir).unwrap();
    let inner = Proxy::serve(
        &inner_dir,
        &outer.uri("dev"),
        "[client.vm]\nrp_ids = [\"example.org\", \"evil.org\"]\n",
        &["vm"],
    );
    let mut c = Raw::connect(&inner.socket("vm"));
    let (st, mc) = c.cbor(0x01, Some(&make_credential("example.org", b"u", false)));
    assert_eq!(st, 0);
    let id = credential_id(&mc.unwrap());
    assert_eq!(
        c.cbor(0x02, Some(&get_assertion("example.org", &[id]))).0,
        0
    );
    assert_eq!(
        c.cbor(0x02, Some(&get_assertion("evil.org", &[]))).0,
        DENIED
    );
    inner.wait_audit(&[
        "client=\"vm\"",
        "rp_id=\"evil.org\" decision=allow status=0x27",
    ]);
    outer.wait_audit(&[
        "client=\"dev\"",
        "rp_id=\"evil.org\" decision=refuse reason=rp-not-allowed",
    ]);
}
