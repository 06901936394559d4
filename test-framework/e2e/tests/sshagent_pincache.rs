//! `ctap-sshagent --pin-cache SECONDS` (issue 16, item 6): N signatures with a verify-required
//! key ask askpass for the PIN once; again after the cache expires and after ssh-add -x; each
//! signature still carries the key's user-presence flag (a touch per signature). Without the
//! option, every signature asks.
#![allow(clippy::unwrap_used)]

mod sshagent_common;

use std::path::Path;
use std::time::Duration;

use ctap_core::ssh::wire::put_string;
use ctap_core::ssh::{SkAlgorithm, SkKey};
use ctap_e2e::SoftToken;
use sshagent_common::*;

const SIGN_RESPONSE: u8 = 14;

fn sshsig_blob() -> Vec<u8> {
    let mut s = b"SSHSIG".to_vec();
    put_string(&mut s, b"file");
    put_string(&mut s, b"");
    put_string(&mut s, b"sha512");
    put_string(&mut s, &[7; 64]);
    s
}

/// An askpass that counts its invocations (one line each in `count`) and answers the PIN.
fn counting_askpass(dir: &Path, count: &Path) -> std::path::PathBuf {
    script(
        dir,
        "askpass",
        &format!("echo asked >> {}\necho {PIN}", count.display()),
    )
}

fn asked(count: &Path) -> usize {
    std::fs::read_to_string(count)
        .map(|t| t.lines().count())
        .unwrap_or(0)
}

fn setup(tag: &str) -> (ctap_e2e::TempDir, SoftToken, SkKey, std::path::PathBuf) {
    let dir = temp(tag);
    let key = SoftToken::start(dir.path(), &dir.path().join("state"), &["--pin", PIN]);
    let mut uv = enrollment(SkAlgorithm::Ed25519, "uv");
    uv.verify_required = true;
    let records = enroll(&key, &[uv], Some(PIN));
    let sk = SkKey::from_record(&records[0]).unwrap();
    let creds = write_credentials(dir.path(), &records);
    (dir, key, sk, creds)
}

fn lock_message(kind: u8, pass: &[u8]) -> Vec<u8> {
    let mut m = vec![kind];
    put_string(&mut m, pass);
    m
}

#[test]
fn pin_cache_asks_once_for_many_signatures_then_after_expiry_and_lock() {
    let (dir, key, sk, creds) = setup("pincache");
    let count = dir.path().join("asked");
    let askpass = counting_askpass(dir.path(), &count);
    let agent = Agent::start(
        dir.path(),
        &key,
        &creds,
        &[
            "-v",
            "--askpass",
            askpass.to_str().unwrap(),
            "--pin-cache",
            "3",
        ],
    );
    let blob = sk.public_blob();
    let mut c = agent.client();
    for _ in 0..4 {
        let r = c.sign(&blob, &sshsig_blob());
        assert_eq!(r[0], SIGN_RESPONSE, "{}", agent.log_text());
    }
    println!("4 signatures: askpass asked {} time(s)", asked(&count));
    assert_eq!(asked(&count), 1, "{}", agent.log_text());
    let log = agent.log_text();
    assert_eq!(
        log.matches("flags 0x05").count(),
        4,
        "each signature has UP and UV: {log}"
    );

    // Expired: asked again, then kept again.
    std::thread::sleep(Duration::from_millis(3300));
    for _ in 0..2 {
        assert_eq!(c.sign(&blob, &sshsig_blob())[0], SIGN_RESPONSE);
    }
    println!("after expiry: askpass asked {} time(s)", asked(&count));
    assert_eq!(asked(&count), 2);

    // Locked and unlocked: the token is gone.
    assert_eq!(c.call(&lock_message(22, b"pass"))[0], SUCCESS);
    assert_eq!(c.call(&lock_message(23, b"pass"))[0], SUCCESS);
    for _ in 0..2 {
        assert_eq!(c.sign(&blob, &sshsig_blob())[0], SIGN_RESPONSE);
    }
    println!("after lock: askpass asked {} time(s)", asked(&count));
    assert_eq!(asked(&count), 3);
}

#[test]
fn pin_cache_is_off_by_default_and_a_restarted_key_is_asked_again() {
    let (dir, key, sk, creds) = setup("pincache-off");
    let count = dir.path().join("asked");
    let askpass = counting_askpass(dir.path(), &count);
    let blob = sk.public_blob();
    {
        let agent = Agent::start(
            dir.path(),
            &key,
            &creds,
            &["--askpass", askpass.to_str().unwrap()],
        );
        let mut c = agent.client();
        for _ in 0..3 {
            assert_eq!(c.sign(&blob, &sshsig_blob())[0], SIGN_RESPONSE);
        }
        println!("no cache, 3 signatures: asked {}", asked(&count));
        assert_eq!(asked(&count), 3);
    }

    // With the cache, a key that restarts (replugged: a new power cycle) forgets the token:
    // the agent asks again instead of failing.
    std::fs::remove_file(&count).unwrap();
    let uri = key.uri();
    let socket = uri.strip_prefix("unix:").unwrap().to_string();
    let agent = Agent::start(
        dir.path(),
        &key,
        &creds,
        &["--askpass", askpass.to_str().unwrap(), "--pin-cache", "600"],
    );
    let mut c = agent.client();
    assert_eq!(c.sign(&blob, &sshsig_blob())[0], SIGN_RESPONSE);
    key.stop();
    let key = SoftToken::start_on(
        &ctap_e2e::bin("ctap-softtoken"),
        Path::new(&socket),
        &dir.path().join("state"),
        &[],
    );
    assert_eq!(
        c.sign(&blob, &sshsig_blob())[0],
        SIGN_RESPONSE,
        "{}",
        agent.log_text()
    );
    println!("cache, key restarted: asked {}", asked(&count));
    assert_eq!(asked(&count), 2);
    drop(key);
}
