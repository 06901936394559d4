//! pam_ctap through real Linux-PAM (pamtester): the everyday outcomes and their syslog lines.
#![allow(clippy::unwrap_used)]

mod pam_common;

use std::time::Duration;

use pam_common::*;

#[test]
#[ignore = "needs root and pamtester (writes /etc/pam.d): scripts/test runs it as root"]
fn pam_success_logs_credential_and_counter() {
    require_root("pam_success_logs_credential_and_counter");
    let s = Setup::builder("pam-ok").start();
    let r = s.auth("daemon");
    assert_eq!(r.result, PamResult::Success, "{r:?}");
    assert!(r.stdout.contains("Touch your security key"), "cue: {r:?}");
    let line = s.fx.auth_line();
    assert!(line.starts_with("<86>"), "LOG_AUTHPRIV|LOG_INFO: {line}");
    assert_contains(
        &line,
        &[
            "auth ok: service=ctap-e2e-",
            "user=daemon account=daemon uid=1 credential=\"virtual\" counter=",
        ],
    );
    // The counter in the line is the one now in root's state file.
    let counter: u32 = line
        .split("counter=")
        .nth(1)
        .unwrap()
        .split(' ')
        .next()
        .unwrap()
        .parse()
        .unwrap();
    let state = std::fs::read_to_string(s.fx.state_dir().join("daemon.toml")).unwrap();
    assert!(
        state.contains(&format!("sign_count = {counter}")),
        "{state}"
    );
    let r2 = s.auth("daemon");
    assert_eq!(r2.result, PamResult::Success, "{r2:?}");
    assert!(!s.fx.auth_line().contains(&format!("counter={counter} ")));
}

#[test]
#[ignore = "needs root and pamtester (writes /etc/pam.d): scripts/test runs it as root"]
fn pam_cue_is_configurable() {
    require_root("pam_cue_is_configurable");
    let s = Setup::builder("pam-cue")
        .module_args("cue_prompt=Tap-the-key")
        .start();
    let r = s.auth("daemon");
    assert_eq!(r.result, PamResult::Success, "{r:?}");
    assert!(r.stdout.contains("Tap-the-key"), "{r:?}");
    assert!(!r.stdout.contains("Touch your security key"), "{r:?}");
}

#[test]
#[ignore = "needs root and pamtester (writes /etc/pam.d): scripts/test runs it as root"]
fn pam_wrong_key_is_auth_err() {
    require_root("pam_wrong_key_is_auth_err");
    let mut s = Setup::builder("pam-wrongkey").start();
    // Another key entirely (fresh state): it holds none of daemon's credentials.
    let other = s.fx.path().join("other.state");
    s.restart_key(Some(&other), &[]);
    let r = s.auth("daemon");
    assert_eq!(r.result, PamResult::AuthErr, "{r:?}");
    assert!(r.stderr.contains("not registered for you"), "{r:?}");
    assert_contains(
        &s.fx.auth_line(),
        &["auth failed: ", "reason=wrong_key ", "user=daemon"],
    );
}

#[test]
#[ignore = "needs root and pamtester (writes /etc/pam.d): scripts/test runs it as root"]
fn pam_presence_denied_is_auth_err() {
    require_root("pam_presence_denied_is_auth_err");
    let mut s = Setup::builder("pam-deny").start();
    s.restart_key(None, &["--presence", "deny"]);
    let state_before = std::fs::read(s.fx.state_dir().join("daemon.toml")).unwrap();
    let r = s.auth("daemon");
    assert_eq!(r.result, PamResult::AuthErr, "{r:?}");
    // The virtual key answers a refused touch with CTAP2_ERR_USER_ACTION_TIMEOUT (as real keys
    // do when nobody touches), which the library classifies as `timeout`.
    let line = s.fx.auth_line();
    assert!(
        line.contains("reason=timeout") || line.contains("reason=presence_denied"),
        "{line}"
    );
    assert_eq!(
        std::fs::read(s.fx.state_dir().join("daemon.toml")).unwrap(),
        state_before,
        "a denied login leaves state alone"
    );
}

#[test]
#[ignore = "needs root and pamtester (writes /etc/pam.d): scripts/test runs it as root"]
fn pam_touch_timeout_cancels_and_is_auth_err() {
    require_root("pam_touch_timeout_cancels_and_is_auth_err");
    let mut s = Setup::builder("pam-timeout")
        .module_args("timeout=2")
        .start();
    s.restart_key(None, &["--presence", "delay=30000"]);
    let r = s.auth("daemon");
    assert_eq!(r.result, PamResult::AuthErr, "{r:?}");
    assert!(
        r.elapsed < Duration::from_secs(15),
        "timeout=2 must end the wait long before the 30 s touch: {:?}",
        r.elapsed
    );
    assert!(r.stderr.contains("Timed out"), "{r:?}");
    assert_contains(&s.fx.auth_line(), &["auth failed: ", "reason=timeout"]);
}

#[test]
#[ignore = "needs root and pamtester (writes /etc/pam.d): scripts/test runs it as root"]
fn pam_no_key_reachable_is_auth_err() {
    require_root("pam_no_key_reachable_is_auth_err");
    let s = Setup::builder("pam-nokey").start();
    let missing = s.fx.path().join("no-such-key.sock");
    let svc = ServiceFile::new(&observing_stack(&format!(
        "config={} device=unix:{}",
        s.config.display(),
        missing.display()
    )));
    let r = pamtester(&svc.name, "daemon", "", &[]);
    assert_eq!(r.result, PamResult::AuthErr, "{r:?}");
    assert!(r.stderr.contains("No security key found"), "{r:?}");
    assert_contains(
        &s.fx.auth_line(),
        &["auth failed: ", "reason=no_key ", "user=daemon"],
    );
}

#[test]
#[ignore = "needs root and pamtester (writes /etc/pam.d): scripts/test runs it as root"]
fn pam_unknown_or_malformed_argument_fails_and_is_named() {
    require_root("pam_unknown_or_malformed_argument_fails_and_is_named");
    let s = Setup::builder("pam-badarg").start();
    for (arg, named) in [
        ("nosuchoption", "argument=\"nosuchoption\""),
        ("timeout=soon", "argument=\"timeout=soon\""),
        ("nouserok=maybe", "argument=\"nouserok=maybe\""),
    ] {
        let svc = ServiceFile::new(&observing_stack(&format!(
            "config={} {arg}",
            s.config.display()
        )));
        let r = pamtester(&svc.name, "daemon", "", &[]);
        assert_eq!(r.result, PamResult::AuthErr, "{arg}: {r:?}");
        let lines = s.fx.log_lines();
        let line = lines
            .iter()
            .find(|l| l.contains("reason=bad_argument"))
            .unwrap_or_else(|| panic!("{arg}: {lines:#?}"));
        assert!(line.starts_with("<83>"), "LOG_ERR: {line}");
        assert_contains(line, &["auth failed: ", named]);
    }
    // A relative config= (it would depend on the host's cwd) fails; the line goes to the default
    // /dev/log since no root file chose another socket.
    let svc = ServiceFile::new(&observing_stack("config=relative.toml"));
    assert_eq!(
        pamtester(&svc.name, "daemon", "", &[]).result,
        PamResult::AuthErr
    );
    // A malformed config file is a failure too, never the defaults.
    let bad = s.fx.path().join("bad.toml");
    std::fs::write(&bad, "timeout = \"soon\"\n").unwrap();
    let svc = ServiceFile::new(&observing_stack(&format!("config={}", bad.display())));
    assert_eq!(
        pamtester(&svc.name, "daemon", "", &[]).result,
        PamResult::AuthErr
    );
}

#[test]
#[ignore = "needs root and pamtester (writes /etc/pam.d): scripts/test runs it as root"]
fn pam_setcred_succeeds() {
    require_root("pam_setcred_succeeds");
    let s = Setup::builder("pam-setcred").start();
    let out = std::process::Command::new("pamtester")
        .args([&s.service.name, "daemon", "authenticate", "setcred"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
}
