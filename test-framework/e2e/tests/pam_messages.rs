//! What the module's syslog lines and messages say (issue 10, item 5): human text and no Rust
//! `Debug` output even when a hostile key breaks the protocol, the reason word before any
//! user-controlled field, bounded fields, and `busy` for a user whose lock is held.
#![allow(clippy::unwrap_used)]

mod pam_common;

use std::time::{Duration, Instant};

use pam_common::*;

/// Text that only Rust's `Debug` output would contain.
fn assert_no_debug_text(line: &str) {
    for bad in [
        "{ ",
        " }",
        "Some(",
        "None",
        "Semantic(",
        "Misbehaved(",
        "Hid(",
        "Status(",
    ] {
        assert!(!line.contains(bad), "Debug text {bad:?} in: {line}");
    }
}

#[test]
#[ignore = "needs root and pamtester (writes /etc/pam.d): scripts/test runs it as root"]
fn pam_a_4kb_user_name_cannot_push_the_reason_off_the_line() {
    require_root("pam_a_4kb_user_name_cannot_push_the_reason_off_the_line");
    let s = Setup::builder("pam-longuser").start();
    let user = format!("\x1b[31m{}", "u".repeat(4096));
    let r = s.auth(&user);
    assert_eq!(r.result, PamResult::AuthErr, "{r:?}");
    let line = s.fx.auth_line();
    println!("{} bytes: {}", line.len(), &line[..line.len().min(200)]);
    assert!(line.len() < 2000, "bounded line: {} bytes", line.len());
    let reason = line.find("reason=").expect("reason= in the line");
    let user_at = line.find(" user=").expect("user= in the line");
    assert!(reason < user_at, "reason before the user name: {line}");
    assert!(line.contains("…"), "the cut is marked: {line}");
    assert!(!line.contains('\x1b'), "no raw ESC: {line}");
    assert!(line.contains("\\u{1b}[31m"), "ESC escaped: {line}");
    // The user field holds at most 256 bytes of the name.
    let field = &line[user_at + 6..];
    let field = &field[..field.find(' ').unwrap_or(field.len())];
    assert!(
        field.len() <= 256 + 2 + "…".len(),
        "{} bytes: {field}",
        field.len()
    );
}

#[test]
#[ignore = "needs root and pamtester (writes /etc/pam.d): scripts/test runs it as root"]
fn pam_a_held_user_lock_is_busy_not_config_error() {
    require_root("pam_a_held_user_lock_is_busy_not_config_error");
    // timeout=1: the module waits timeout + 5 s for the user's lock.
    let s = Setup::builder("pam-busy").module_args("timeout=1").start();
    let held =
        s.fx.policy(s.key())
            .store()
            .lock_state("daemon", Duration::from_secs(5))
            .unwrap();
    let start = Instant::now();
    let r = s.auth("daemon");
    println!("busy after {:?}: {}", start.elapsed(), r.stderr.trim());
    drop(held);
    assert_eq!(r.result, PamResult::AuthErr, "{r:?}");
    assert!(
        r.stderr
            .contains("Another login of yours is using your security key: try again"),
        "{r:?}"
    );
    let line = s.fx.auth_line();
    println!("{line}");
    assert!(line.starts_with("<85>"), "LOG_NOTICE, not an error: {line}");
    assert_contains(
        &line,
        &[
            "auth failed: reason=busy ",
            "user=daemon",
            "held the lock too long",
            "try again",
        ],
    );
    // Free again: the login goes through.
    assert_eq!(s.auth("daemon").result, PamResult::Success);
}

#[test]
#[ignore = "needs root and pamtester (writes /etc/pam.d): scripts/test runs it as root"]
fn pam_a_hostile_key_gets_human_text_in_the_log() {
    require_root("pam_a_hostile_key_gets_human_text_in_the_log");
    let mut s = Setup::builder("pam-hostile").start();
    for (fault, says) in [
        ("malformed-cbor", "CBOR that is not"),
        ("truncate-report", "security key"),
        ("bad-status", "unknown status"),
        ("wrong-channel", "security key"),
    ] {
        s.restart_key(None, &["--fault", fault]);
        let r = s.auth("daemon");
        assert_eq!(r.result, PamResult::AuthErr, "{fault}: {r:?}");
        let line = s.fx.auth_line();
        println!("{fault}: {line}");
        assert_contains(&line, &["auth failed: reason=", says]);
        assert_no_debug_text(&line);
        assert_no_debug_text(&r.stderr);
        assert!(r.stderr.contains("try again"), "{fault}: what to do: {r:?}");
    }
}
