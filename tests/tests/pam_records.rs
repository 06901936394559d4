//! Who has records decides the result: no records, nouserok (only for a truly absent file,
//! CVE-2020-24612), broken files, per-user files that root did not opt into.
#![allow(clippy::unwrap_used)]

mod pam_common;

use std::os::unix::fs::{chown, symlink, PermissionsExt};

use pam_common::*;

#[test]
fn pam_user_without_records_is_auth_err() {
    if !can_run("pam_user_without_records_is_auth_err") {
        return;
    }
    let s = Setup::new("pam-norec", "alice", "", "");
    let r = s.auth("bob");
    assert_eq!(r.result, PamResult::AuthErr, "{r:?}");
    assert!(
        r.stderr.contains("No security key is registered for you"),
        "{r:?}"
    );
    assert_contains(
        &s.fx.auth_line(),
        &["auth failed: ", "reason=no_records ", "user=bob"],
    );
}

#[test]
fn pam_nouserok_ignores_only_an_absent_records_file() {
    if !can_run("pam_nouserok_ignores_only_an_absent_records_file") {
        return;
    }
    let s = Setup::new("pam-nouserok", "alice", "", "nouserok");
    // Absent: PAM_IGNORE, which the observing stack turns into pam_debug's USER_UNKNOWN.
    let r = s.auth("bob");
    assert_eq!(r.result, PamResult::UserUnknown, "IGNORE expected: {r:?}");
    let line = s.fx.auth_line();
    assert!(line.starts_with("<85>"), "LOG_NOTICE: {line}");
    assert_contains(
        &line,
        &[
            "auth ignored: ",
            "reason=no_records (nouserok) ",
            "user=bob",
        ],
    );
    // An enrolled user is still checked under nouserok.
    assert_eq!(s.auth("alice").result, PamResult::Success);
    s.fx.log_lines();

    let bob = s.records_path("bob");
    let good = std::fs::read_to_string(s.records_path("alice")).unwrap();
    type Make<'a> = Box<dyn Fn() + 'a>;
    let cases: Vec<(&str, Make)> = vec![
        (
            "malformed",
            Box::new(|| std::fs::write(&bob, "[[credential]]\nname = 3\n").unwrap()),
        ),
        (
            "not UTF-8",
            Box::new(|| std::fs::write(&bob, b"\xff\xfe\x00").unwrap()),
        ),
        (
            "owned by another user",
            Box::new(|| {
                std::fs::write(&bob, &good).unwrap();
                chown(&bob, Some(4242), None).unwrap();
            }),
        ),
        (
            "group-writable",
            Box::new(|| {
                std::fs::write(&bob, &good).unwrap();
                std::fs::set_permissions(&bob, std::fs::Permissions::from_mode(0o664)).unwrap();
            }),
        ),
        (
            "a symlink",
            Box::new(|| symlink(s.records_path("alice"), &bob).unwrap()),
        ),
        (
            "a directory",
            Box::new(|| std::fs::create_dir(&bob).unwrap()),
        ),
    ];
    for (what, make) in cases {
        let _ = std::fs::remove_file(&bob);
        let _ = std::fs::remove_dir(&bob);
        make();
        let r = s.auth("bob");
        assert_eq!(r.result, PamResult::AuthErr, "records file {what}: {r:?}");
        assert_contains(
            &s.fx.auth_line(),
            &["auth failed: ", "reason=config_error ", "user=bob"],
        );
    }
}

#[test]
fn pam_malformed_state_is_a_denial_not_a_reset() {
    if !can_run("pam_malformed_state_is_a_denial_not_a_reset") {
        return;
    }
    let s = Setup::new("pam-badstate", "alice", "", "nouserok");
    std::fs::write(s.state_path("alice"), "version = \"x\"\n").unwrap();
    let r = s.auth("alice");
    assert_eq!(r.result, PamResult::AuthErr, "{r:?}");
    assert_contains(&s.fx.auth_line(), &["auth failed: ", "reason=config_error"]);
    assert_eq!(
        std::fs::read_to_string(s.state_path("alice")).unwrap(),
        "version = \"x\"\n",
        "state is never repaired"
    );
}

#[test]
fn pam_per_user_records_are_ignored_unless_root_opts_in() {
    if !can_run("pam_per_user_records_are_ignored_unless_root_opts_in") {
        return;
    }
    let user = TestUser::new();
    let s = Setup::new("pam-peruser", &user.name, "", "");
    // Move the user's records into their own ~/.config/ctap/credentials.toml, owned by them.
    let dir = user.home.join(".config/ctap");
    std::fs::create_dir_all(&dir).unwrap();
    for d in [user.home.join(".config"), dir.clone()] {
        chown(&d, Some(user.uid), None).unwrap();
        std::fs::set_permissions(&d, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    let own = dir.join("credentials.toml");
    std::fs::rename(s.records_path(&user.name), &own).unwrap();
    chown(&own, Some(user.uid), None).unwrap();
    std::fs::set_permissions(&own, std::fs::Permissions::from_mode(0o644)).unwrap();

    // Not opted in: the file is not read at all, as if the user had no records.
    let r = s.auth(&user.name);
    assert_eq!(r.result, PamResult::AuthErr, "{r:?}");
    assert_contains(&s.fx.auth_line(), &["reason=no_records"]);

    // Root opts in: now the same file works (so the refusal above was the policy).
    let opted =
        s.fx.config("opted.toml", &s.key().uri(), "per_user_records = true");
    let svc = ServiceFile::new(&observing_stack(&format!("config={}", opted.display())));
    let r = pamtester(&svc.name, &user.name, "", &[]);
    assert_eq!(r.result, PamResult::Success, "{r:?}");
    s.fx.log_lines();

    // Opted in, but the file is group-writable: refused, even with nouserok.
    std::fs::set_permissions(&own, std::fs::Permissions::from_mode(0o664)).unwrap();
    let svc = ServiceFile::new(&observing_stack(&format!(
        "config={} nouserok",
        opted.display()
    )));
    let r = pamtester(&svc.name, &user.name, "", &[]);
    assert_eq!(r.result, PamResult::AuthErr, "{r:?}");
    assert_contains(&s.fx.auth_line(), &["reason=config_error"]);
}

#[test]
fn pam_missing_state_or_unusable_credentials_are_auth_err() {
    if !can_run("pam_missing_state_or_unusable_credentials_are_auth_err") {
        return;
    }
    let s = Setup::new("pam-nostate", "alice", "", "");
    // Root's policy accepts another relying party only: alice's credential is not usable here.
    let svc = ServiceFile::new(&observing_stack(&format!(
        "config={} rp_id=pam://elsewhere nouserok",
        s.config.display()
    )));
    let r = pamtester(&svc.name, "alice", "", &[]);
    assert_eq!(r.result, PamResult::AuthErr, "{r:?}");
    assert_contains(&s.fx.auth_line(), &["reason=no_usable_credential"]);

    // State lost (counter, hmac check): a denial that names the credential, never a fresh start.
    std::fs::remove_file(s.state_path("alice")).unwrap();
    let r = s.auth("alice");
    assert_eq!(r.result, PamResult::AuthErr, "{r:?}");
    assert_contains(
        &s.fx.auth_line(),
        &["reason=missing_state ", "credential=\"virtual\""],
    );
}
