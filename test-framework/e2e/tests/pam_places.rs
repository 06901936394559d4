//! Issue 9, items 2 and 3: an explicit config file must exist; records, state and the key
//! socket must exist and sit in places no one but root (or their owner) can change. Each of
//! these is a denial with its own reason word, never "no records" (which `nouserok` skips).
#![allow(clippy::unwrap_used)]

mod pam_common;

use std::os::unix::fs::PermissionsExt;

use pam_common::*;

fn chmod(p: &std::path::Path, mode: u32) {
    std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode)).unwrap();
}

#[test]
#[ignore = "needs root and pamtester (writes /etc/pam.d): scripts/test runs it as root"]
fn pam_explicit_config_that_does_not_exist_is_a_denial() {
    require_root("pam_explicit_config_that_does_not_exist_is_a_denial");
    let s = Setup::builder("places-config")
        .module_args("nouserok")
        .start();
    // A typo in config= would otherwise give the defaults (and, under nouserok, IGNORE).
    let typo = s.fx.path().join("strict.tmol");
    let service = ServiceFile::new(&observing_stack(&format!(
        "config={} nouserok",
        typo.display()
    )));
    for user in ["daemon", "games"] {
        let r = pamtester(&service.name, user, "", &[]);
        assert_eq!(r.result, PamResult::AuthErr, "{user}: {r:?}");
    }
    // The right path still works.
    assert_eq!(s.auth("daemon").result, PamResult::Success);
}

#[test]
#[ignore = "needs root and pamtester (writes /etc/pam.d): scripts/test runs it as root"]
fn pam_missing_records_or_state_dir_is_a_denial_even_with_nouserok() {
    require_root("pam_missing_records_or_state_dir_is_a_denial_even_with_nouserok");
    let s = Setup::builder("places-dirs")
        .module_args("nouserok")
        .start();
    // An unenrolled user is skipped while the directories are there.
    assert_eq!(s.auth("games").result, PamResult::UserUnknown);
    s.fx.log_lines();
    let text = std::fs::read_to_string(&s.config).unwrap();
    for (key, dir) in [
        ("records_dir", s.fx.records_dir()),
        ("state_dir", s.fx.state_dir()),
    ] {
        let typo = format!("{}-typo", dir.display());
        let bad = text.replace(
            &format!("{key} = {:?}", dir.display().to_string()),
            &format!("{key} = {typo:?}"),
        );
        assert_ne!(bad, text);
        std::fs::write(&s.config, &bad).unwrap();
        for user in ["daemon", "games"] {
            let r = s.auth(user);
            assert_eq!(r.result, PamResult::AuthErr, "{key} {user}: {r:?}");
            assert_contains(
                &s.fx.auth_line(),
                &["reason=config_missing ", &format!("user={user}"), "-typo"],
            );
        }
        assert!(
            !std::path::Path::new(&typo).exists(),
            "login creates nothing"
        );
    }
    std::fs::write(&s.config, &text).unwrap();
    assert_eq!(s.auth("daemon").result, PamResult::Success);
}

#[test]
#[ignore = "needs root and pamtester (writes /etc/pam.d): scripts/test runs it as root"]
fn pam_records_under_a_writable_ancestor_are_refused() {
    require_root("pam_records_under_a_writable_ancestor_are_refused");
    let s = Setup::builder("places-ancestor")
        .module_args("nouserok")
        .start();
    // Move records and state one level down, under a directory others can write (sticky, as
    // /tmp): anyone could rename `users` away and put their own in its place.
    let open = s.fx.path().join("open");
    std::fs::create_dir(&open).unwrap();
    for d in ["users", "state"] {
        std::fs::rename(s.fx.path().join(d), open.join(d)).unwrap();
    }
    let text = std::fs::read_to_string(&s.config).unwrap();
    let moved = text
        .replace(
            &format!("{:?}", s.fx.records_dir().display().to_string()),
            &format!("{:?}", open.join("users").display().to_string()),
        )
        .replace(
            &format!("{:?}", s.fx.state_dir().display().to_string()),
            &format!("{:?}", open.join("state").display().to_string()),
        );
    std::fs::write(&s.config, &moved).unwrap();
    assert_eq!(s.auth("daemon").result, PamResult::Success);
    s.fx.log_lines();

    for mode in [0o1777, 0o777, 0o775] {
        chmod(&open, mode);
        for user in ["daemon", "games"] {
            let r = s.auth(user);
            assert_eq!(r.result, PamResult::AuthErr, "{mode:o} {user}: {r:?}");
            assert_contains(
                &s.fx.auth_line(),
                &[
                    "reason=untrusted_path ",
                    &format!("user={user}"),
                    "group- or world-writable",
                ],
            );
        }
    }
    chmod(&open, 0o755);
    assert_eq!(s.auth("daemon").result, PamResult::Success);
}

#[test]
#[ignore = "needs root and pamtester (writes /etc/pam.d): scripts/test runs it as root"]
fn pam_state_file_readable_by_others_is_refused() {
    require_root("pam_state_file_readable_by_others_is_refused");
    let s = Setup::builder("places-state-mode").start();
    chmod(&s.state_path("daemon"), 0o644);
    let r = s.auth("daemon");
    assert_eq!(r.result, PamResult::AuthErr, "{r:?}");
    assert_contains(
        &s.fx.auth_line(),
        &["reason=config_error", "readable by group or others"],
    );
    chmod(&s.state_path("daemon"), 0o600);
    assert_eq!(s.auth("daemon").result, PamResult::Success);
}

#[test]
#[ignore = "needs root and pamtester (writes /etc/pam.d): scripts/test runs it as root"]
fn pam_key_socket_in_an_untrusted_place_is_refused() {
    require_root("pam_key_socket_in_an_untrusted_place_is_refused");
    let mut s = Setup::builder("places-socket").start();
    assert_eq!(s.auth("daemon").result, PamResult::Success);
    s.fx.log_lines();

    // The key's socket in a directory anyone may create names in: a local user could bind
    // their own fake key there first.
    let open = s.fx.path().join("open");
    std::fs::create_dir(&open).unwrap();
    chmod(&open, 0o1777);
    let state = s.key_state.clone();
    s.stop_key();
    let key = start_key(&open, &state, &[]);
    let text = std::fs::read_to_string(&s.config).unwrap();
    let config: String = text
        .lines()
        .map(|l| {
            if l.starts_with("device =") {
                format!("device = {:?}", key.uri())
            } else {
                l.to_string()
            }
        })
        .collect::<Vec<_>>()
        .join("\n");
    std::fs::write(&s.config, &config).unwrap();
    let r = s.auth("daemon");
    assert_eq!(r.result, PamResult::AuthErr, "{r:?}");
    assert_contains(
        &s.fx.auth_line(),
        &["reason=untrusted_path", "/open: refused"],
    );

    // In a root-only directory but owned by another account: refused unless root's config
    // names that account as device_owner.
    chmod(&open, 0o755);
    assert_eq!(s.auth("daemon").result, PamResult::Success);
    s.fx.log_lines();
    std::os::unix::fs::chown(&key.socket, Some(65534), None).unwrap();
    let r = s.auth("daemon");
    assert_eq!(r.result, PamResult::AuthErr, "{r:?}");
    assert_contains(
        &s.fx.auth_line(),
        &["reason=untrusted_path", "socket is owned by uid 65534"],
    );
    let out = std::process::Command::new("id")
        .args(["-nu", "65534"])
        .output()
        .unwrap();
    let nobody = String::from_utf8_lossy(&out.stdout).trim().to_string();
    if out.status.success() && !nobody.is_empty() {
        let name = nobody;
        std::fs::write(&s.config, format!("{config}\ndevice_owner = {name:?}\n")).unwrap();
        let r = s.auth("daemon");
        assert_eq!(r.result, PamResult::Success, "{r:?}");
    }
}
