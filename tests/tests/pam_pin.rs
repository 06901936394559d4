//! pam_ctap with user verification by PIN: the PIN prompt goes through the PAM conversation
//! (echo off); pamtester answers it from stdin.
#![allow(clippy::unwrap_used)]

mod pam_common;

use ctap_core::ctap2::pin::{permission, Pin};
use ctap_core::enroll::UvPreference;
use pam_common::*;

const PIN: &str = "2468";

fn setup(tag: &str) -> Setup {
    // "preferred" on a key with a PIN resolves to required at enrollment.
    Setup::build(
        tag,
        "carol",
        &["--pin", PIN],
        UvPreference::Preferred,
        Some(PIN),
        "",
        "",
    )
}

#[test]
fn pam_pin_right_succeeds_with_uv() {
    if !can_run("pam_pin_right_succeeds_with_uv") {
        return;
    }
    let s = setup("pam-pin-ok");
    let r = s.auth_with("carol", &format!("{PIN}\n"));
    assert_eq!(r.result, PamResult::Success, "{r:?}");
    // misc_conv writes prompts to stderr.
    assert!(
        r.stderr.contains("Security key PIN: "),
        "the PIN prompt: {r:?}"
    );
    assert!(
        !r.stdout.contains(PIN) && !r.stderr.contains(PIN),
        "echo off: {r:?}"
    );
    let line = s.fx.auth_line();
    assert_contains(
        &line,
        &["auth ok: ", "user=carol credential=\"virtual\"", "uv=yes"],
    );
    assert!(!line.contains(PIN), "no secret in the log: {line}");
}

#[test]
fn pam_pin_wrong_is_auth_err() {
    if !can_run("pam_pin_wrong_is_auth_err") {
        return;
    }
    let s = setup("pam-pin-wrong");
    let r = s.auth_with("carol", "1357\n");
    assert_eq!(r.result, PamResult::AuthErr, "{r:?}");
    assert!(r.stdout.contains("tries left"), "{r:?}");
    assert!(r.stderr.contains("Wrong PIN"), "{r:?}");
    let line = s.fx.auth_line();
    assert_contains(
        &line,
        &["auth failed: ", "reason=pin_invalid ", "user=carol"],
    );
    assert!(!line.contains("1357"), "no secret in the log: {line}");

    // No answer at all (conversation gives nothing): still a failure, not a skip.
    let r = s.auth_with("carol", "");
    assert_eq!(r.result, PamResult::AuthErr, "{r:?}");
    assert_contains(
        &s.fx.auth_line(),
        &["auth failed: ", "reason=uv_unavailable ", "user=carol"],
    );
}

#[test]
fn pam_pin_blocked_is_auth_err() {
    if !can_run("pam_pin_blocked_is_auth_err") {
        return;
    }
    let mut s = setup("pam-pin-blocked");
    // Burn every retry: three wrong PINs per power cycle (then PIN_AUTH_BLOCKED), restart.
    let wrong = Pin::new("0000".into()).unwrap();
    for _ in 0..10 {
        let mut k = s.key().connect();
        if k.pin_retries().unwrap().retries == 0 {
            break;
        }
        for _ in 0..3 {
            let _ = k.pin_token(&wrong, permission::GET_ASSERTION, Some(RP_ID));
        }
        drop(k);
        s.restart_key(None, &[]);
    }
    assert_eq!(s.key().connect().pin_retries().unwrap().retries, 0);
    let r = s.auth_with("carol", &format!("{PIN}\n"));
    assert_eq!(r.result, PamResult::AuthErr, "{r:?}");
    assert!(r.stderr.contains("PIN blocked: reset the key"), "{r:?}");
    assert_contains(
        &s.fx.auth_line(),
        &["auth failed: ", "reason=pin_blocked ", "user=carol"],
    );
}
