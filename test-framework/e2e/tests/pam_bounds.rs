//! A PAM login never outlives its timeout, whatever the key does: with `timeout=3`, each timing
//! fault of the virtual key ends in PAM_AUTH_ERR within 3 + 2 s (pamtester's wall time), with
//! reason `timeout`, and the key saw CANCEL where it was working on an abandoned request.
#![allow(clippy::unwrap_used)]

mod pam_common;

use std::path::Path;
use std::time::Duration;

use ctap_core::flows::enroll::UvPreference;
use pam_common::*;

const BOUND: Duration = Duration::from_secs(3 + 2);
const PIN: &str = "2468";

fn saw_cancel(log: &Path) -> bool {
    !ctap_e2e::wait_for_cancels(log).is_empty()
}

fn check(s: &mut Setup, user: &str, stdin: &str, fault: &str, must_cancel: bool) {
    let log = s.fx.path().join(format!("cancel-{user}-{fault}.log"));
    let log_arg = log.display().to_string();
    s.restart_key(None, &["--fault", fault, "--cancel-log", &log_arg]);
    let r = s.auth_with(user, stdin);
    let line = s.fx.auth_line();
    println!(
        "pam {user} fault={fault}: {:.2?}, {:?}: {line}",
        r.elapsed, r.result
    );
    assert_eq!(r.result, PamResult::AuthErr, "{fault}: {r:?}");
    assert!(r.elapsed < BOUND, "{fault}: took {:?}", r.elapsed);
    assert_contains(&line, &["auth failed: ", "reason=timeout"]);
    if must_cancel {
        assert!(saw_cancel(&log), "{user} {fault}: the key saw no CANCEL");
    }
}

#[test]
#[ignore = "needs root and pamtester (writes /etc/pam.d): scripts/test runs it as root"]
fn pam_login_ends_by_its_timeout_whatever_the_key_does() {
    require_root("pam_login_ends_by_its_timeout_whatever_the_key_does");
    let mut s = Setup::builder("pam-bounds")
        .module_args("timeout=3")
        .start();
    for (fault, must_cancel) in [
        ("slow-answer", true),
        ("trickle", false),
        ("stall-mid-message", true),
        ("busy-forever", false),
    ] {
        check(&mut s, "daemon", "", fault, must_cancel);
    }
    // One key, one credential, no PIN: no silent probe is sent (the login's getAssertion is
    // the probe), so a key that stalls only probes does not get to. (With a PIN it is probed:
    // see the next test.)
    s.restart_key(None, &["--fault", "probe-keepalive"]);
    assert_eq!(s.auth("daemon").result, PamResult::Success);
    s.restart_key(None, &[]);
    assert_eq!(s.auth("daemon").result, PamResult::Success);
}

#[test]
#[ignore = "needs root and pamtester (writes /etc/pam.d): scripts/test runs it as root"]
fn pam_login_with_a_pin_ends_by_its_timeout_against_a_slow_or_stalling_key() {
    require_root("pam_login_with_a_pin_ends_by_its_timeout_against_a_slow_or_stalling_key");
    let mut s = Setup::builder("pam-bounds-pin")
        .user("sys")
        .key_args(&["--pin", PIN])
        .uv(UvPreference::Required)
        .pin(PIN)
        .module_args("timeout=3")
        .start();
    check(&mut s, "sys", &format!("{PIN}\n"), "slow-answer", true);
    // A PIN goes only to a key that answered the silent probe: this one stalls it.
    check(&mut s, "sys", &format!("{PIN}\n"), "probe-keepalive", true);
    s.restart_key(None, &[]);
    assert_eq!(
        s.auth_with("sys", &format!("{PIN}\n")).result,
        PamResult::Success
    );
}
