//! Who has records decides the result: no records, nouserok (only for a truly absent file,
//! CVE-2020-24612), broken files, per-user files that root did not opt into.
#![allow(clippy::unwrap_used)]

mod pam_common;

use std::os::unix::fs::{chown, symlink, PermissionsExt};

use pam_common::*;

#[test]
#[ignore = "needs root and pamtester (writes /etc/pam.d): scripts/test runs it as root"]
fn pam_user_without_records_is_auth_err() {
    require_root("pam_user_without_records_is_auth_err");
    let s = Setup::builder("pam-norec").start();
    let r = s.auth("bin");
    assert_eq!(r.result, PamResult::AuthErr, "{r:?}");
    assert!(
        r.stderr.contains("No security key is registered for you"),
        "{r:?}"
    );
    assert_contains(
        &s.fx.auth_line(),
        &["auth failed: ", "reason=no_records ", "user=bin"],
    );
}

#[test]
#[ignore = "needs root and pamtester (writes /etc/pam.d): scripts/test runs it as root"]
fn pam_nouserok_ignores_only_an_absent_records_file() {
    require_root("pam_nouserok_ignores_only_an_absent_records_file");
    let s = Setup::builder("pam-nouserok")
        .module_args("nouserok")
        .start();
    // Absent: PAM_IGNORE, which the observing stack turns into pam_debug's USER_UNKNOWN.
    let r = s.auth("bin");
    assert_eq!(r.result, PamResult::UserUnknown, "IGNORE expected: {r:?}");
    let line = s.fx.auth_line();
    assert!(line.starts_with("<85>"), "LOG_NOTICE: {line}");
    assert_contains(
        &line,
        &[
            "auth ignored: ",
            "reason=no_records (nouserok) ",
            "user=bin",
        ],
    );
    // An enrolled user is still checked under nouserok.
    assert_eq!(s.auth("daemon").result, PamResult::Success);
    s.fx.log_lines();

    let bin = s.records_path("bin");
    let good = std::fs::read_to_string(s.records_path("daemon")).unwrap();
    type Make<'a> = Box<dyn Fn() + 'a>;
    let cases: Vec<(&str, Make)> = vec![
        (
            "malformed",
            Box::new(|| std::fs::write(&bin, "[[credential]]\nname = 3\n").unwrap()),
        ),
        (
            "not UTF-8",
            Box::new(|| std::fs::write(&bin, b"\xff\xfe\x00").unwrap()),
        ),
        (
            "owned by another user",
            Box::new(|| {
                std::fs::write(&bin, &good).unwrap();
                chown(&bin, Some(4242), None).unwrap();
            }),
        ),
        (
            "group-writable",
            Box::new(|| {
                std::fs::write(&bin, &good).unwrap();
                std::fs::set_permissions(&bin, std::fs::Permissions::from_mode(0o664)).unwrap();
            }),
        ),
        (
            "a symlink",
            Box::new(|| symlink(s.records_path("daemon"), &bin).unwrap()),
        ),
        (
            "a directory",
            Box::new(|| std::fs::create_dir(&bin).unwrap()),
        ),
    ];
    for (what, make) in cases {
        let _ = std::fs::remove_file(&bin);
        let _ = std::fs::remove_dir(&bin);
        make();
        let r = s.auth("bin");
        assert_eq!(r.result, PamResult::AuthErr, "records file {what}: {r:?}");
        assert_contains(
            &s.fx.auth_line(),
            &["auth failed: ", "reason=config_error ", "user=bin"],
        );
    }
}

#[test]
#[ignore = "needs root and pamtester (writes /etc/pam.d): scripts/test runs it as root"]
fn pam_malformed_state_is_a_denial_not_a_reset() {
    require_root("pam_malformed_state_is_a_denial_not_a_reset");
    let s = Setup::builder("pam-badstate")
        .module_args("nouserok")
        .start();
    std::fs::write(s.state_path("daemon"), "version = \"x\"\n").unwrap();
    let r = s.auth("daemon");
    assert_eq!(r.result, PamResult::AuthErr, "{r:?}");
    assert_contains(&s.fx.auth_line(), &["auth failed: ", "reason=config_error"]);
    assert_eq!(
        std::fs::read_to_string(s.state_path("daemon")).unwrap(),
        "version = \"x\"\n",
        "state is never repaired"
    );
}

#[test]
#[ignore = "needs root and pamtester (writes /etc/pam.d): scripts/test runs it as root"]
fn pam_per_user_records_are_ignored_unless_root_opts_in() {
    require_root("pam_per_user_records_are_ignored_unless_root_opts_in");
    let user = TestUser::new();
    let s = Setup::builder("pam-peruser").user(&user.name).start();
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

    // Not opted in: the file is not read at all, as if the user had no records; root-written
    // state for the user remains, so the login is denied as "records missing".
    let r = s.auth(&user.name);
    assert_eq!(r.result, PamResult::AuthErr, "{r:?}");
    assert_contains(&s.fx.auth_line(), &["reason=records_missing"]);

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
#[ignore = "needs root and pamtester (writes /etc/pam.d): scripts/test runs it as root"]
fn pam_missing_state_or_unusable_credentials_are_auth_err() {
    require_root("pam_missing_state_or_unusable_credentials_are_auth_err");
    let s = Setup::builder("pam-nostate").start();
    // Root's policy accepts another relying party only: daemon's credential is not usable here.
    let svc = ServiceFile::new(&observing_stack(&format!(
        "config={} rp_id=pam://elsewhere nouserok",
        s.config.display()
    )));
    let r = pamtester(&svc.name, "daemon", "", &[]);
    assert_eq!(r.result, PamResult::AuthErr, "{r:?}");
    assert_contains(&s.fx.auth_line(), &["reason=no_usable_credential"]);

    // State lost (counter, hmac check): a denial that names the credential, never a fresh start.
    std::fs::remove_file(s.state_path("daemon")).unwrap();
    let r = s.auth("daemon");
    assert_eq!(r.result, PamResult::AuthErr, "{r:?}");
    assert_contains(
        &s.fx.auth_line(),
        &["reason=missing_state ", "credential=\"virtual\""],
    );
}

/// Issue 9 item 4: with `per_user_records = true`, the user's own file can add keys, never
/// weaken or switch off what root enrolled.
#[test]
#[ignore = "needs root and pamtester (writes /etc/pam.d): scripts/test runs it as root"]
fn pam_per_user_file_cannot_weaken_or_skip_what_root_enrolled() {
    require_root("pam_per_user_file_cannot_weaken_or_skip_what_root_enrolled");
    let user = TestUser::new();
    let s = Setup::builder("pam-peruser-weak").user(&user.name).start();
    let opted =
        s.fx.config("opted.toml", &s.key().uri(), "per_user_records = true");
    let svc = ServiceFile::new(&observing_stack(&format!(
        "config={} nouserok",
        opted.display()
    )));
    let auth = || pamtester(&svc.name, &user.name, "", &[]);
    let dir = user.home.join(".config/ctap");
    std::fs::create_dir_all(&dir).unwrap();
    for d in [user.home.join(".config"), dir.clone()] {
        chown(&d, Some(user.uid), None).unwrap();
        std::fs::set_permissions(&d, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    let own = dir.join("credentials.toml");
    let write_own = |text: &str| {
        std::fs::write(&own, text).unwrap();
        chown(&own, Some(user.uid), None).unwrap();
        std::fs::set_permissions(&own, std::fs::Permissions::from_mode(0o644)).unwrap();
    };
    let root_records = std::fs::read_to_string(s.records_path(&user.name)).unwrap();
    let credential = &root_records[root_records.find("[[credential]]").unwrap()..];

    // 1. The same credential in root's records and the user's file: refused.
    write_own(credential);
    let r = auth();
    assert_eq!(r.result, PamResult::AuthErr, "{r:?}");
    assert_contains(
        &s.fx.auth_line(),
        &["reason=config_error", "also in root's records"],
    );

    // 2. The user's copy switches hmac-secret off: root's state still demands the check (here
    //    a check the key cannot meet), so the login fails on it.
    std::fs::remove_file(s.records_path(&user.name)).unwrap();
    write_own(&credential.replace("hmac_secret = true", "hmac_secret = false"));
    let state_path = s.state_path(&user.name);
    let good_state = std::fs::read_to_string(&state_path).unwrap();
    let mut state: toml::Value = toml::from_str(&good_state).unwrap();
    state["credential"][0]["hmac_check"] =
        toml::Value::String(ctap_core::store::credential::b64_encode(&[0u8; 32]));
    std::fs::write(&state_path, toml::to_string(&state).unwrap()).unwrap();
    let r = auth();
    assert_eq!(r.result, PamResult::AuthErr, "{r:?}");
    assert_contains(&s.fx.auth_line(), &["reason=hmac_mismatch"]);
    std::fs::write(&state_path, &good_state).unwrap();
    let r = auth();
    assert_eq!(r.result, PamResult::Success, "{r:?}");
    s.fx.log_lines();

    // 3. The user deletes their file: root-written state remains, so never IGNORE.
    std::fs::remove_file(&own).unwrap();
    let r = auth();
    assert_eq!(r.result, PamResult::AuthErr, "{r:?}");
    assert_contains(&s.fx.auth_line(), &["reason=records_missing"]);

    // 4. ~/.config points into a directory only root may enter: root does not follow the
    //    user's symlink there (the file is opened with the user's filesystem identity).
    let hidden = s.fx.path().join("root-only");
    std::fs::create_dir_all(hidden.join("ctap")).unwrap();
    std::fs::set_permissions(&hidden, std::fs::Permissions::from_mode(0o700)).unwrap();
    let planted = hidden.join("ctap/credentials.toml");
    std::fs::write(&planted, credential).unwrap();
    chown(&planted, Some(user.uid), None).unwrap();
    std::fs::remove_dir_all(user.home.join(".config")).unwrap();
    symlink(&hidden, user.home.join(".config")).unwrap();
    let r = auth();
    assert_eq!(r.result, PamResult::AuthErr, "{r:?}");
    assert_contains(
        &s.fx.auth_line(),
        &["reason=config_error", "Permission denied"],
    );
}
