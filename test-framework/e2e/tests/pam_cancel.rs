//! Ctrl-C while the key waits for a touch (issue 16, item 2): SIGINT delivered to pamtester
//! mid-wait makes the module send CTAPHID_CANCEL at once (the key logs it), the attempt fails,
//! nothing is written to state, and pamtester then gets its SIGINT as it would have without the
//! module (it dies of it: its disposition is the default).
#![allow(clippy::unwrap_used)]

mod pam_common;

use std::os::unix::process::ExitStatusExt;
use std::time::{Duration, Instant};

use pam_common::*;

#[test]
#[ignore = "needs root and pamtester (writes /etc/pam.d): scripts/test runs it as root"]
fn pam_sigint_mid_wait_cancels_the_key_and_writes_nothing() {
    require_root("pam_sigint_mid_wait_cancels_the_key_and_writes_nothing");
    // The authpending file appears once the module waits for the key, after its SIGINT
    // handler is in place: the signal is sent then, not after a guessed delay.
    let pending_dir = ctap_e2e::TempDir::new("pam-sigint-pending");
    let pending = pending_dir.path().join("pending");
    let cfg = format!("authpending_file = {:?}\n", pending.display().to_string());
    let mut s = Setup::builder("pam-sigint").config(&cfg).start();
    let cancel_log = s.fx.path().join("cancels.log");
    let cancel_arg = cancel_log.display().to_string();
    s.restart_key(
        None,
        &["--presence", "delay=15000", "--cancel-log", &cancel_arg],
    );
    let state_before = std::fs::read(s.state_path("daemon")).unwrap();

    let start = Instant::now();
    let (out, after) = pamtester_interrupted(&s.service.name, "daemon", &pending);
    println!(
        "pamtester ended {after:?} after SIGINT ({:?} in all): {:?}\n{}{}",
        start.elapsed(),
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(after < Duration::from_secs(3), "prompt: {after:?}");
    assert!(!out.status.success());
    assert_eq!(out.status.signal(), Some(libc::SIGINT), "{:?}", out.status);
    let cancels = ctap_e2e::wait_for_cancels(&cancel_log);
    println!("key's cancel log: {cancels:?}");
    assert!(!cancels.trim().is_empty(), "the key saw CTAPHID_CANCEL");
    let line = s.fx.auth_line();
    println!("{line}");
    assert_contains(&line, &["auth failed: reason=cancelled"]);
    assert_eq!(
        std::fs::read(s.state_path("daemon")).unwrap(),
        state_before,
        "nothing written"
    );

    // The application's SIGINT disposition is back: a login after it works as before.
    s.restart_key(None, &[]);
    let r = s.auth("daemon");
    assert_eq!(r.result, PamResult::Success, "{r:?}");
}

/// The same with a key that sends no keepalives while it waits: the wait wakes every 50 ms to
/// look for the Ctrl-C, so the CANCEL goes out at once, not when the key answers (2.8 s).
#[test]
#[ignore = "needs root and pamtester (writes /etc/pam.d): scripts/test runs it as root"]
fn pam_sigint_cancels_a_key_that_sends_no_keepalives() {
    require_root("pam_sigint_cancels_a_key_that_sends_no_keepalives");
    let pending_dir = ctap_e2e::TempDir::new("pam-sigint-silent-pending");
    let pending = pending_dir.path().join("pending");
    let cfg = format!("authpending_file = {:?}\n", pending.display().to_string());
    let mut s = Setup::builder("pam-sigint-silent").config(&cfg).start();
    let cancel_log = s.fx.path().join("cancels.log");
    let cancel_arg = cancel_log.display().to_string();
    s.restart_key(
        None,
        &[
            "--fault",
            "no-keepalive",
            "--presence",
            "delay=2800",
            "--cancel-log",
            &cancel_arg,
        ],
    );
    let (out, after) = pamtester_interrupted(&s.service.name, "daemon", &pending);
    println!("pamtester ended {after:?} after SIGINT: {:?}", out.status);
    assert_eq!(out.status.signal(), Some(libc::SIGINT), "{:?}", out.status);
    assert!(after < Duration::from_millis(1000), "prompt: {after:?}");
    let cancels = ctap_e2e::wait_for_cancels(&cancel_log);
    println!("key's cancel log: {cancels:?}");
    assert!(cancels.contains("busy=true"), "the silent key saw CANCEL");
    let line = s.fx.auth_line();
    assert_contains(&line, &["auth failed: reason=cancelled"]);
}
