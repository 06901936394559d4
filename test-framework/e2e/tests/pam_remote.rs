//! Remote sessions (issue 16, item 5): `remote = "require" | "skip" | "deny"` for a login whose
//! PAM_RHOST is set, through real Linux-PAM (pamtester `-I rhost=...`).
#![allow(clippy::unwrap_used)]

mod pam_common;

use pam_common::*;

const REMOTE: &[&str] = &["rhost=client.example"];

#[test]
#[ignore = "needs root and pamtester (writes /etc/pam.d): scripts/test runs it as root"]
fn pam_remote_require_is_the_default_and_asks_the_key() {
    require_root("pam_remote_require_is_the_default_and_asks_the_key");
    let s = Setup::builder("pam-remote-req").start();
    let r = s.auth_items("daemon", REMOTE);
    println!("default, remote: {:?}", r.result);
    assert_eq!(r.result, PamResult::Success, "{r:?}");
    let line = s.fx.auth_line();
    println!("{line}");
    assert_contains(&line, &["auth ok:"]);
}

#[test]
#[ignore = "needs root and pamtester (writes /etc/pam.d): scripts/test runs it as root"]
fn pam_remote_skip_ignores_remote_logins_only() {
    require_root("pam_remote_skip_ignores_remote_logins_only");
    // No key at all would fail a local login: the skip happens before any key is opened.
    let mut s = Setup::builder("pam-remote-skip")
        .config("remote = \"skip\"")
        .start();
    let r = s.auth_items("daemon", REMOTE);
    println!("skip, remote: {:?}", r.result);
    assert_eq!(r.result, PamResult::UserUnknown, "PAM_IGNORE: {r:?}");
    let line = s.fx.auth_line();
    println!("{line}");
    assert_contains(
        &line,
        &[
            "auth ignored: reason=remote_skip",
            "user=daemon",
            "rhost=client.example",
        ],
    );
    // A local login (no PAM_RHOST) still asks the key.
    let r = s.auth("daemon");
    assert_eq!(r.result, PamResult::Success, "{r:?}");
    assert_contains(&s.fx.auth_line(), &["auth ok:"]);
    // Skipped without the key: nothing is opened.
    s.stop_key();
    let r = s.auth_items("daemon", REMOTE);
    assert_eq!(r.result, PamResult::UserUnknown, "{r:?}");
    assert_contains(&s.fx.auth_line(), &["reason=remote_skip"]);
}

#[test]
#[ignore = "needs root and pamtester (writes /etc/pam.d): scripts/test runs it as root"]
fn pam_remote_deny_refuses_remote_logins_only() {
    require_root("pam_remote_deny_refuses_remote_logins_only");
    let s = Setup::builder("pam-remote-deny")
        .config("remote = \"deny\"")
        .start();
    let state_before = std::fs::read(s.state_path("daemon")).unwrap();
    let r = s.auth_items("daemon", REMOTE);
    println!("deny, remote: {:?} {}", r.result, r.stderr.trim());
    assert_eq!(r.result, PamResult::AuthErr, "{r:?}");
    assert!(
        r.stderr.contains("not allowed here") || r.stdout.contains("not allowed here"),
        "{r:?}"
    );
    let line = s.fx.auth_line();
    println!("{line}");
    assert_contains(
        &line,
        &["auth failed: reason=remote_denied", "rhost=client.example"],
    );
    assert_eq!(std::fs::read(s.state_path("daemon")).unwrap(), state_before);
    // An empty PAM_RHOST is a local login.
    let r = s.auth_items("daemon", &["rhost="]);
    assert_eq!(r.result, PamResult::Success, "{r:?}");
    let r = s.auth("daemon");
    assert_eq!(r.result, PamResult::Success, "{r:?}");
}

#[test]
#[ignore = "needs root and pamtester (writes /etc/pam.d): scripts/test runs it as root"]
fn pam_remote_module_argument_overrides_the_file() {
    require_root("pam_remote_module_argument_overrides_the_file");
    let s = Setup::builder("pam-remote-arg")
        .config("remote = \"skip\"")
        .module_args("remote=deny")
        .start();
    let r = s.auth_items("daemon", REMOTE);
    assert_eq!(r.result, PamResult::AuthErr, "{r:?}");
    assert_contains(&s.fx.auth_line(), &["reason=remote_denied"]);
}
