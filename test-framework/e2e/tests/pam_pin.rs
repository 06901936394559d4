//! pam_ctap with user verification by PIN: the PIN prompt goes through the PAM conversation
//! (echo off); pamtester answers it from stdin.
#![allow(clippy::unwrap_used)]

mod pam_common;

use ctap_core::flows::enroll::UvPreference;
use ctap_core::transport::ctap2::pin::{permission, Pin};
use pam_common::*;

// Letters as well as digits: a digits-only PIN could turn up by chance in a pid, a counter or a
// service name, and the "no secret in the log" checks would fail for nothing.
const PIN: &str = "pin-Kq2468";

fn setup(tag: &str) -> Setup {
    // "preferred" on a key with a PIN resolves to required at enrollment.
    Setup::builder(tag)
        .user("sys")
        .key_args(&["--pin", PIN])
        .uv(UvPreference::Preferred)
        .pin(PIN)
        .start()
}

#[test]
#[ignore = "needs root and pamtester (writes /etc/pam.d): scripts/test runs it as root"]
fn pam_pin_right_succeeds_with_uv() {
    require_root("pam_pin_right_succeeds_with_uv");
    let s = setup("pam-pin-ok");
    let r = s.auth_with("sys", &format!("{PIN}\n"));
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
        &[
            "auth ok: ",
            "user=sys account=sys uid=3 credential=\"virtual\"",
            "uv=yes",
        ],
    );
    assert!(!line.contains(PIN), "no secret in the log: {line}");
}

#[test]
#[ignore = "needs root and pamtester (writes /etc/pam.d): scripts/test runs it as root"]
fn pam_pin_wrong_is_auth_err() {
    require_root("pam_pin_wrong_is_auth_err");
    let s = setup("pam-pin-wrong");
    let r = s.auth_with("sys", "1357\n");
    assert_eq!(r.result, PamResult::AuthErr, "{r:?}");
    assert!(r.stdout.contains("tries left"), "{r:?}");
    assert!(r.stderr.contains("Wrong PIN"), "{r:?}");
    let line = s.fx.auth_line();
    assert_contains(&line, &["auth failed: ", "reason=pin_invalid ", "user=sys"]);
    assert!(!line.contains("1357"), "no secret in the log: {line}");

    // No answer at all (conversation gives nothing): still a failure, not a skip.
    let r = s.auth_with("sys", "");
    assert_eq!(r.result, PamResult::AuthErr, "{r:?}");
    assert_contains(
        &s.fx.auth_line(),
        &["auth failed: ", "reason=uv_unavailable ", "user=sys"],
    );
}

#[test]
#[ignore = "needs root and pamtester (writes /etc/pam.d): scripts/test runs it as root"]
fn pam_pin_blocked_is_auth_err() {
    require_root("pam_pin_blocked_is_auth_err");
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
    let r = s.auth_with("sys", &format!("{PIN}\n"));
    assert_eq!(r.result, PamResult::AuthErr, "{r:?}");
    assert!(r.stderr.contains("PIN blocked: reset the key"), "{r:?}");
    assert_contains(
        &s.fx.auth_line(),
        &["auth failed: ", "reason=pin_blocked ", "user=sys"],
    );
}

/// Wrong PINs straight to the key until it has `left` retries, restarting it (a power cycle)
/// whenever it stops taking PINs for this session.
fn burn_retries_to(s: &mut Setup, left: u64) {
    let wrong = Pin::new("0000".into()).unwrap();
    for _ in 0..10 {
        let mut k = s.key().connect();
        for _ in 0..3 {
            if k.pin_retries().unwrap().retries <= left {
                break;
            }
            let _ = k.pin_token(&wrong, permission::GET_ASSERTION, Some(RP_ID));
        }
        drop(k);
        s.restart_key(None, &[]);
        if s.key().connect().pin_retries().unwrap().retries <= left {
            break;
        }
    }
    assert_eq!(s.key().connect().pin_retries().unwrap().retries, left);
}

#[test]
#[ignore = "needs root and pamtester (writes /etc/pam.d): scripts/test runs it as root"]
fn pam_pin_is_not_sent_with_one_retry_left() {
    require_root("pam_pin_is_not_sent_with_one_retry_left");
    let mut s = setup("pam-pin-last");
    burn_retries_to(&mut s, 1);
    // Even the right PIN is not sent: a wrong one now would block the key for good, and another
    // local user running `su sys` could otherwise spend that last try.
    let r = s.auth_with("sys", "1357\n");
    assert_eq!(r.result, PamResult::AuthErr, "{r:?}");
    assert!(
        !r.stderr.contains("Security key PIN: "),
        "no PIN prompt: {r:?}"
    );
    assert!(r.stderr.contains("ctap-enroll pin change"), "{r:?}");
    assert_contains(
        &s.fx.auth_line(),
        &["auth failed: ", "reason=pin_last_retry ", "user=sys"],
    );
    assert_eq!(s.key().connect().pin_retries().unwrap().retries, 1);

    // The way back the message names: the right PIN at the user's own terminal (what
    // `ctap-enroll pin change` sends) restores the count, and logins work again.
    let right = Pin::new(PIN.into()).unwrap();
    s.key()
        .connect()
        .pin_token(&right, permission::GET_ASSERTION, Some(RP_ID))
        .unwrap();
    assert_eq!(s.key().connect().pin_retries().unwrap().retries, 8);
    let r = s.auth_with("sys", &format!("{PIN}\n"));
    assert_eq!(r.result, PamResult::Success, "{r:?}");
}

#[test]
#[ignore = "needs root and pamtester (writes /etc/pam.d): scripts/test runs it as root"]
fn pam_pin_is_not_sent_to_a_key_with_another_aaguid() {
    require_root("pam_pin_is_not_sent_to_a_key_with_another_aaguid");
    let s = setup("pam-pin-aaguid");
    // The key answering for the credential is not the model that was enrolled: a rogue device
    // that copied the credential id from the world-readable records.
    let path = s.records_path("sys");
    let text = std::fs::read_to_string(&path).unwrap();
    let mut records: toml::Value = toml::from_str(&text).unwrap();
    let enrolled = records["credential"][0]["aaguid"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(!enrolled.is_empty(), "enrollment records the AAGUID");
    records["credential"][0]["aaguid"] =
        toml::Value::String("0badc0de-0000-4000-8000-000000000001".into());
    std::fs::write(&path, toml::to_string(&records).unwrap()).unwrap();

    let r = s.auth_with("sys", "1357\n");
    assert_eq!(r.result, PamResult::AuthErr, "{r:?}");
    assert!(!r.stderr.contains("Security key PIN: "), "{r:?}");
    assert_contains(
        &s.fx.auth_line(),
        &["auth failed: ", "reason=device_not_enrolled ", "user=sys"],
    );
    // The (wrong) PIN never reached the key.
    assert_eq!(s.key().connect().pin_retries().unwrap().retries, 8);
}

#[test]
#[ignore = "needs root and pamtester (writes /etc/pam.d): scripts/test runs it as root"]
fn pam_pin_prompt_does_not_hold_the_users_other_logins() {
    require_root("pam_pin_prompt_does_not_hold_the_users_other_logins");
    let s = setup("pam-pin-lock");
    // Someone (perhaps another local user running `su sys`) sits at the PIN prompt.
    let mut waiting = std::process::Command::new("pamtester")
        .args([s.service.name.as_str(), "sys", "authenticate"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut err = waiting.stderr.take().unwrap();
    let mut seen = Vec::new();
    let mut buf = [0u8; 256];
    while !String::from_utf8_lossy(&seen).contains("Security key PIN: ") {
        use std::io::Read;
        let n = err.read(&mut buf).unwrap();
        assert!(n > 0, "no PIN prompt: {}", String::from_utf8_lossy(&seen));
        seen.extend_from_slice(&buf[..n]);
    }
    // Carol's own login goes through at once, not after the other one's timeout.
    let r = s.auth_with("sys", &format!("{PIN}\n"));
    assert_eq!(r.result, PamResult::Success, "{r:?}");
    assert!(
        r.elapsed < std::time::Duration::from_secs(5),
        "took {:?}",
        r.elapsed
    );
    drop(waiting.stdin.take());
    let _ = waiting.wait();
}
