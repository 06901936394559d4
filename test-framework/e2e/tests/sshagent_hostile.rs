//! ctap-sshagent against hostile clients (issue 10, item 6): parallel passphrase guessing,
//! trickled messages, unbounded ssh-add, and a log that grows with every signature.
#![allow(clippy::unwrap_used)]

mod sshagent_common;

use std::io::{Read, Write};
use std::time::{Duration, Instant};

use ctap_core::ssh::wire::put_string;
use ctap_core::ssh::{SkAlgorithm, SkKey};
use ctap_e2e::SoftToken;
use sshagent_common::*;

struct Setup {
    _key: SoftToken,
    agent: Agent,
    keys: Vec<SkKey>,
    _dir: ctap_e2e::TempDir,
}

fn setup(tag: &str, extra: &[&str]) -> Setup {
    let dir = temp(tag);
    let key = SoftToken::start(dir.path(), &dir.path().join("state"), &[]);
    let records = enroll(&key, &[enrollment(SkAlgorithm::EcdsaP256, "e")], None);
    let creds = write_credentials(dir.path(), &records);
    let agent = Agent::start(dir.path(), &key, &creds, extra);
    let keys = records
        .iter()
        .map(|r| SkKey::from_record(r).unwrap())
        .collect();
    Setup {
        _key: key,
        agent,
        keys,
        _dir: dir,
    }
}

fn with_passphrase(kind: u8, p: &[u8]) -> Vec<u8> {
    let mut m = vec![kind];
    put_string(&mut m, p);
    m
}

fn sshsig(data: &[u8]) -> Vec<u8> {
    let mut s = b"SSHSIG".to_vec();
    put_string(&mut s, b"file");
    put_string(&mut s, b"");
    put_string(&mut s, b"sha512");
    put_string(&mut s, data);
    s
}

/// An ssh-add message for `key` under another application (so each has its own blob).
fn add_message(key: &SkKey, i: usize, handle_len: usize) -> Vec<u8> {
    let mut k = key.clone();
    k.application = format!("ssh:hostile{i}");
    k.key_handle = vec![(i % 251) as u8; handle_len];
    let mut m = vec![17];
    m.extend_from_slice(&k.private_fields());
    put_string(&mut m, format!("added {i}").as_bytes());
    m
}

#[test]
fn parallel_wrong_unlocks_share_one_back_off() {
    let s = setup("backoff", &[]);
    assert_eq!(
        s.agent.client().call(&with_passphrase(22, b"hunter2")),
        [SUCCESS]
    );
    // Five guesses at once from five connections. With one shared failure count and the
    // guesses taking turns, they wait 100 + 200 + 300 + 400 + 500 ms in all; with a sleep per
    // connection they would all be answered after about 500 ms.
    let n = 5u32;
    let clients: Vec<Client> = (0..n).map(|_| s.agent.client()).collect();
    let start = Instant::now();
    let threads: Vec<_> = clients
        .into_iter()
        .enumerate()
        .map(|(i, mut c)| {
            std::thread::spawn(move || c.call(&with_passphrase(23, format!("guess{i}").as_bytes())))
        })
        .collect();
    for t in threads {
        assert_eq!(t.join().unwrap(), [FAILURE]);
    }
    let took = start.elapsed();
    let sum: u64 = (1..=u64::from(n)).map(|k| 100 * k).sum();
    println!(
        "{n} parallel wrong unlocks took {} ms (sum of delays {sum} ms)",
        took.as_millis()
    );
    assert!(
        took >= Duration::from_millis(sum),
        "{n} parallel guesses took {took:?}, less than the {sum} ms of back-off"
    );
    assert_eq!(
        s.agent.log_text().matches("unlock failed").count(),
        n as usize
    );
    assert!(
        s.agent.log_text().contains("5 in a row; waiting 500 ms"),
        "{}",
        s.agent.log_text()
    );
    // The right passphrase still unlocks, and resets the count.
    let mut c = s.agent.client();
    assert_eq!(c.call(&with_passphrase(23, b"hunter2")), [SUCCESS]);
    assert_eq!(c.identities().len(), 1);
}

#[test]
fn a_trickling_client_is_cut_off_at_the_whole_message_deadline() {
    let s = setup("trickle", &[]);
    // A lock request of 12 bytes, sent one byte every 800 ms: whole after about 13 s, each
    // single read well inside the 5 s message timeout.
    let body = with_passphrase(22, b"trickle");
    let mut framed = (body.len() as u32).to_be_bytes().to_vec();
    framed.extend_from_slice(&body);
    let mut c = s.agent.client();
    let mut writer = c.0.try_clone().unwrap();
    let start = Instant::now();
    let trickler = std::thread::spawn(move || {
        for b in framed {
            if writer.write_all(&[b]).is_err() {
                return;
            }
            std::thread::sleep(Duration::from_millis(800));
        }
    });
    let reply = c.read_reply();
    let took = start.elapsed();
    println!(
        "trickling client answered {reply:?} after {} ms",
        took.as_millis()
    );
    assert_eq!(reply, [FAILURE]);
    assert!(took < Duration::from_secs(7), "held for {took:?}");
    let mut rest = Vec::new();
    assert_eq!(c.0.read_to_end(&mut rest).unwrap(), 0, "disconnected");
    assert!(
        s.agent.log_text().contains("not received whole within 5 s"),
        "{}",
        s.agent.log_text()
    );
    trickler.join().unwrap();
    // Nothing was locked, and the agent serves others.
    assert_eq!(s.agent.client().identities().len(), 1);
}

#[test]
fn added_identities_are_bounded_in_bytes() {
    let s = setup("addbytes", &[]);
    let mut c = s.agent.client();
    // 200 KB key handles: 4 MiB holds 20 of them.
    let mut accepted = 0;
    for i in 0..40 {
        match c.call(&add_message(&s.keys[0], i, 200_000))[..] {
            [SUCCESS] => accepted += 1,
            [FAILURE] => {}
            ref other => panic!("add {i}: {other:?}"),
        }
    }
    println!("accepted {accepted} of 40 adds with 200 KB key handles");
    assert_eq!(accepted, 20);
    assert_eq!(c.identities().len(), 1 + 20);
    assert!(
        s.agent
            .log_text()
            .contains("the limit is 1000 identities and 4194304 bytes"),
        "{}",
        s.agent.log_text()
    );
    // Removing all makes room again.
    assert_eq!(c.call(&[19]), [SUCCESS]);
    assert_eq!(c.call(&add_message(&s.keys[0], 99, 200_000)), [SUCCESS]);
}

#[test]
fn added_identities_are_bounded_in_count() {
    let s = setup("addcount", &[]);
    let mut c = s.agent.client();
    for i in 0..1000 {
        assert_eq!(
            c.call(&add_message(&s.keys[0], i, 64)),
            [SUCCESS],
            "add {i}"
        );
    }
    assert_eq!(c.call(&add_message(&s.keys[0], 1000, 64)), [FAILURE]);
    // Re-adding a key already held replaces it, so it is not refused.
    assert_eq!(c.call(&add_message(&s.keys[0], 5, 64)), [SUCCESS]);
    assert_eq!(c.identities().len(), 1 + 1000);
}

#[test]
fn signatures_are_not_logged_by_default() {
    let s = setup("quiet", &[]);
    let blob = s.keys[0].public_blob();
    let mut c = s.agent.client();
    assert_eq!(c.sign(&blob, &sshsig(b"warm-up"))[0], 14);
    let before = s.agent.log_text().len();
    for i in 0..10 {
        let reply = c.sign(&blob, &sshsig(format!("signature {i}").as_bytes()));
        assert_eq!(reply[0], 14, "{}", s.agent.log_text());
    }
    let after = s.agent.log_text().len();
    println!("log before {before} bytes, after 10 signatures {after} bytes");
    assert_eq!(before, after, "{}", s.agent.log_text());

    // -v logs them.
    let v = setup("verbose", &["-v"]);
    let blob = v.keys[0].public_blob();
    assert_eq!(v.agent.client().sign(&blob, &sshsig(b"v"))[0], 14);
    assert!(
        v.agent.log_text().contains("signed SSHSIG"),
        "{}",
        v.agent.log_text()
    );
}

#[test]
fn key_comments_reach_the_log_escaped() {
    let s = setup("comment", &[]);
    let mut k = s.keys[0].clone();
    k.application = "ssh:comment".into();
    let mut m = vec![17];
    m.extend_from_slice(&k.private_fields());
    put_string(&mut m, b"evil\x1b[31m\nctap-sshagent: forged line");
    assert_eq!(s.agent.client().call(&m), [SUCCESS]);
    let log = s.agent.log_text();
    println!("{log}");
    assert!(!log.contains('\x1b'), "{log:?}");
    assert!(!log.contains("\nctap-sshagent: forged"), "{log:?}");
    assert!(
        log.contains("evil\\u{1b}[31m\\nctap-sshagent: forged line"),
        "{log:?}"
    );
}

/// A key whose signature does not verify with the public key we hold gets no SSH signature
/// out of the agent: its answer goes through the shared verifier (`verify::check_assertion`),
/// which rejects it, and the agent answers SSH_AGENT_FAILURE and keeps serving.
#[test]
fn a_tampered_assertion_is_rejected_by_the_shared_verifier() {
    let dir = temp("tampered");
    let state = dir.path().join("state");
    let key = SoftToken::start(dir.path(), &state, &[]);
    let records = enroll(&key, &[enrollment(SkAlgorithm::EcdsaP256, "t")], None);
    key.stop();
    let key = SoftToken::start(dir.path(), &state, &["--fault", "corrupt-signature"]);
    let creds = write_credentials(dir.path(), &records);
    let agent = Agent::start(dir.path(), &key, &creds, &[]);
    let blob = SkKey::from_record(&records[0]).unwrap().public_blob();
    let mut c = agent.client();
    for i in 0..2 {
        let reply = c.sign(&blob, &sshsig(format!("tampered {i}").as_bytes()));
        assert_eq!(reply, [5], "SSH_AGENT_FAILURE: {}", agent.log_text());
    }
    let log = agent.log_text();
    println!("{log}");
    assert!(
        log.contains(
            "assertion is rejected: signature does not verify with the enrolled public key"
        ),
        "{log}"
    );
    // Still serving.
    assert_eq!(c.identities().len(), 1);
}
