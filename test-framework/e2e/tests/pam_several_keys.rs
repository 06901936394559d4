//! Several keys through real Linux-PAM (issue 16, item 1): pamtester against pam_ctap.so with a
//! `device` list of two virtual keys that both hold a credential of the user. One touch logs in
//! with the key touched first; the other key gets CTAPHID_CANCEL.
#![allow(clippy::unwrap_used)]

mod pam_common;

use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::time::Duration;

use ctap_core::flows::enroll::{enroll, EnrollRequest, UvPreference};
use ctap_core::flows::session::{open_authenticators, Prompter};
use ctap_core::store::config::PinPolicy;
use ctap_core::transport::ctap2::pin::Pin;
use ctap_e2e::SoftToken;
use pam_common::*;

struct Silent;

impl Prompter for Silent {
    fn touch_cue(&mut self, _: &str) {}
    fn request_pin(&mut self, _: &str) -> Option<Pin> {
        None
    }
    fn info(&mut self, _: &str) {}
}

/// Enroll `key` for `user` under `name` (the fixture's own helper names every credential
/// "virtual"; here the name tells the keys apart in the auth line).
fn enroll_named(fx: &Fixture, key: &SoftToken, user: &str, name: &str) {
    let p = fx.policy(key);
    let mut keys = open_authenticators(&p.device, p.touch_timeout()).unwrap();
    let req = EnrollRequest {
        user: account(user),
        name: name.into(),
        rp_id: Some(RP_ID.into()),
        uv: UvPreference::Discouraged,
        pin_policy: PinPolicy::Prompt,
    };
    enroll(&p.store(), &req, &mut keys[0], &mut Silent).unwrap();
}

fn start(fx: &Fixture, state: &Path, extra: &[&str]) -> SoftToken {
    start_key(fx.path(), state, extra)
}

#[test]
#[ignore = "needs root and pamtester (writes /etc/pam.d); scripts/test runs it"]
fn pam_two_keys_one_touch_the_first_touched_wins() {
    require_root("pam_two_keys_one_touch_the_first_touched_wins");
    let fx = Fixture::new("pam-several");
    let (sa, sb) = (fx.path().join("a.state"), fx.path().join("b.state"));
    let a = start(&fx, &sa, &[]);
    let b = start(&fx, &sb, &[]);
    enroll_named(&fx, &a, "daemon", "key-a");
    enroll_named(&fx, &b, "daemon", "key-b");
    a.stop();
    b.stop();

    let log_a = fx.path().join("a.cancels");
    let a = start(
        &fx,
        &sa,
        &[
            "--presence",
            "delay=8000",
            "--cancel-log",
            log_a.to_str().unwrap(),
        ],
    );
    let b = start(&fx, &sb, &["--presence", "delay=1500"]);
    let config = fx.config("pam_ctap.toml", &format!("{},{}", a.uri(), b.uri()), "");
    let service = ServiceFile::new(&observing_stack(&format!("config={}", config.display())));
    let r = pamtester(&service.name, "daemon", "", &[]);
    println!("{r:?}");
    assert_eq!(r.result, PamResult::Success, "{r:?}");
    let line = fx.auth_line();
    println!("{line}");
    assert_contains(&line, &["auth ok: ", "credential=\"key-b\""]);
    assert_eq!(
        r.stdout.matches("Touch your security key").count(),
        1,
        "one cue: {r:?}"
    );
    assert!(
        !r.stdout.contains("Touch the security key you want to use"),
        "no selection touch: {r:?}"
    );
    assert!(
        r.elapsed < Duration::from_millis(2900),
        "{:?}: one 1.5 s touch, not two",
        r.elapsed
    );
    let cancels = ctap_e2e::wait_for_cancels(&log_a);
    println!("A's cancels: {cancels:?}");
    assert!(
        cancels.contains("busy=true"),
        "the untouched key got CANCEL"
    );
}

/// Ctrl-C while two keys wait for the one touch, one of them sending no keepalives: both get
/// CTAPHID_CANCEL at once, the attempt fails with `cancelled`, nothing is written.
#[test]
#[ignore = "needs root and pamtester (writes /etc/pam.d); scripts/test runs it"]
fn pam_sigint_cancels_every_waiting_key_even_a_silent_one() {
    require_root("pam_sigint_cancels_every_waiting_key_even_a_silent_one");
    let fx = Fixture::new("pam-several-sigint");
    let (sa, sb) = (fx.path().join("a.state"), fx.path().join("b.state"));
    let a = start(&fx, &sa, &[]);
    let b = start(&fx, &sb, &[]);
    enroll_named(&fx, &a, "daemon", "key-a");
    enroll_named(&fx, &b, "daemon", "key-b");
    a.stop();
    b.stop();
    let (log_a, log_b) = (fx.path().join("a.cancels"), fx.path().join("b.cancels"));
    let a = start(
        &fx,
        &sa,
        &[
            "--presence",
            "delay=15000",
            "--cancel-log",
            log_a.to_str().unwrap(),
        ],
    );
    let b = start(
        &fx,
        &sb,
        &[
            "--fault",
            "no-keepalive",
            "--presence",
            "delay=2800",
            "--cancel-log",
            log_b.to_str().unwrap(),
        ],
    );
    // The module creates it when the keys start waiting (its SIGINT handler in place).
    let pending = fx.path().join("pending");
    let config = fx.config(
        "pam_ctap.toml",
        &format!("{},{}", a.uri(), b.uri()),
        &format!("authpending_file = {:?}\n", pending.display().to_string()),
    );
    let service = ServiceFile::new(&observing_stack(&format!("config={}", config.display())));
    let state_path = fx.state_dir().join("daemon.toml");
    let state_before = std::fs::read(&state_path).unwrap();

    let (out, after) = pamtester_interrupted(&service.name, "daemon", &pending);
    println!(
        "pamtester ended {after:?} after SIGINT: {:?}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout)
    );
    assert_eq!(out.status.signal(), Some(libc::SIGINT), "{:?}", out.status);
    // The silent key would have answered 1.6 s after the SIGINT.
    assert!(after < Duration::from_millis(1000), "prompt: {after:?}");
    let (ca, cb) = (
        ctap_e2e::wait_for_cancels(&log_a),
        ctap_e2e::wait_for_cancels(&log_b),
    );
    println!("A's cancels {ca:?}; the silent B's {cb:?}");
    assert!(ca.contains("busy=true") && cb.contains("busy=true"));
    let line = fx.auth_line();
    println!("{line}");
    assert_contains(&line, &["auth failed: reason=cancelled"]);
    assert_eq!(
        std::fs::read(&state_path).unwrap(),
        state_before,
        "nothing written"
    );
}
