//! The account, not the spelling (issue 9 item 1): the module resolves PAM_USER through NSS and
//! finds records by the canonical account. Another name of an enrolled uid, or a name spelt with
//! `@`, `\` or upper case, must need the key or be denied: never PAM_IGNORE under `nouserok`.
#![allow(clippy::unwrap_used)]

mod pam_common;

use pam_common::*;

#[test]
#[ignore = "needs root and pamtester (writes /etc/pam.d): scripts/test runs it as root"]
fn pam_alias_of_an_enrolled_uid_is_never_ignored() {
    require_root("pam_alias_of_an_enrolled_uid_is_never_ignored");
    let user = TestUser::new();
    // `useradd -o`: another passwd entry, another name, the same uid.
    let alias = TestUser::named(
        &format!("ctapa{}", TestUser::tag()),
        &["-o", "-u", &user.uid.to_string()],
    );
    assert_eq!(alias.uid, user.uid);
    let s = Setup::builder("pam-alias")
        .user(&user.name)
        .module_args("nouserok")
        .start();

    let r = s.auth(&user.name);
    assert_eq!(r.result, PamResult::Success, "{r:?}");
    s.fx.log_lines();

    // The alias has no records of its own; before, nouserok skipped the factor for it.
    let r = s.auth(&alias.name);
    assert_eq!(r.result, PamResult::AuthErr, "{r:?}");
    let line = s.fx.auth_line();
    assert_contains(
        &line,
        &[
            "reason=alias_enrolled ",
            &format!("user={}", alias.name),
            &format!("under the name \\\"{}\\\"", user.name)[..],
        ],
    );
    assert!(
        r.stderr.contains("registered under another user name"),
        "{r:?}"
    );

    // Even with the enrolled name's records gone, its root-written state keeps the alias out.
    std::fs::remove_file(s.records_path(&user.name)).unwrap();
    let r = s.auth(&alias.name);
    assert_eq!(r.result, PamResult::AuthErr, "{r:?}");
    assert_contains(&s.fx.auth_line(), &["reason=alias_enrolled"]);
    let r = s.auth(&user.name);
    assert_eq!(r.result, PamResult::AuthErr, "{r:?}");
    assert_contains(&s.fx.auth_line(), &["reason=records_missing"]);
}

#[test]
#[ignore = "needs root and pamtester (writes /etc/pam.d): scripts/test runs it as root"]
fn pam_names_with_at_backslash_and_upper_case_need_the_key() {
    require_root("pam_names_with_at_backslash_and_upper_case_need_the_key");
    let tag = TestUser::tag();
    for name in [
        format!("Ctap{tag}@corp.example"),
        format!("CORP\\ctap{tag}"),
        format!("CTAPU{tag}"),
    ] {
        let user = TestUser::named(&name, &[]);
        let mut s = Setup::builder("pam-names")
            .user(&user.name)
            .module_args("nouserok")
            .start();
        // The files stay inside their directories, whatever the name.
        let records = s.records_path(&user.name);
        assert_eq!(records.parent().unwrap(), s.fx.records_dir(), "{name}");
        assert!(records.exists(), "{}", records.display());
        assert!(s.state_path(&user.name).exists(), "{name}");

        let r = s.auth(&user.name);
        assert_eq!(r.result, PamResult::Success, "{name}: {r:?}");
        s.fx.log_lines();

        // Without the key: denied, not ignored.
        s.stop_key();
        let r = s.auth(&user.name);
        assert_eq!(r.result, PamResult::AuthErr, "{name}: {r:?}");
        assert_contains(&s.fx.auth_line(), &["reason=no_key"]);
    }
}

#[test]
#[ignore = "needs root and pamtester (writes /etc/pam.d): scripts/test runs it as root"]
fn pam_a_name_nss_does_not_know_is_denied_even_with_nouserok() {
    require_root("pam_a_name_nss_does_not_know_is_denied_even_with_nouserok");
    let s = Setup::builder("pam-unknown")
        .module_args("nouserok")
        .start();
    let typed = format!("DAEMON-{}", TestUser::tag());
    let r = s.auth(&typed);
    assert_eq!(r.result, PamResult::AuthErr, "{r:?}");
    assert_contains(
        &s.fx.auth_line(),
        &["reason=unknown_user ", &format!("user={typed}")],
    );
    // A known account without records (or state) is still the one nouserok skips.
    let r = s.auth("bin");
    assert_eq!(r.result, PamResult::UserUnknown, "{r:?}");
}

/// Set `dir`'s mtime a minute back: a directory that has settled (the uid index trusts a stamp
/// only then, ctap-core `store/credential/uid_index.rs`).
fn settle(dir: &std::path::Path) {
    let st = std::process::Command::new("touch")
        .args(["-m", "-d", "1 minute ago"])
        .arg(dir)
        .status()
        .unwrap();
    assert!(st.success());
}

#[test]
#[ignore = "needs root and pamtester (writes /etc/pam.d): scripts/test runs it as root"]
fn pam_an_alias_is_found_through_the_uid_index_of_a_large_records_directory() {
    require_root("pam_an_alias_is_found_through_the_uid_index_of_a_large_records_directory");
    let enrolled = TestUser::new();
    let other = TestUser::new();
    let s = Setup::builder("pam-uid-index")
        .user(&enrolled.name)
        .module_args("nouserok")
        .start();
    let (records, state) = (s.fx.records_dir(), s.fx.state_dir());
    // Two thousand other enrolled accounts, each records file stamped with its uid.
    for i in 0..2000u32 {
        std::fs::write(
            records.join(format!("bulk{i}.toml")),
            format!("uid = {}\n", 3_000_000 + i),
        )
        .unwrap();
    }
    settle(&records);
    // Skipped (nouserok), and the scan leaves an index stamped with the records directory.
    let r = s.auth(&other.name);
    assert_eq!(r.result, PamResult::UserUnknown, "{r:?}");
    let index = std::fs::read_to_string(state.join(".index/uids")).unwrap();
    let mut lines = index.lines();
    assert_eq!(lines.next(), Some("ctap-uid-index 1"));
    assert!(lines.next().unwrap().starts_with("records ") && !index.contains("records -\n"));
    assert!(
        index.contains(&format!("\n{} bulk1999\n", 3_001_999)),
        "{index:.300}"
    );
    let r = s.auth(&other.name);
    assert_eq!(r.result, PamResult::UserUnknown, "{r:?}");
    s.fx.log_lines();

    // Records written for `other`'s uid under a name NSS does not know (a renamed account):
    // the directory changed, so the next login scans again and finds them.
    std::fs::write(
        records.join("renamed-away.toml"),
        format!("uid = {}\n", other.uid),
    )
    .unwrap();
    let r = s.auth(&other.name);
    assert_eq!(r.result, PamResult::AuthErr, "{r:?}");
    assert_contains(
        &s.fx.auth_line(),
        &[
            "reason=alias_enrolled ",
            "under the name \\\"renamed-away\\\"",
        ],
    );
    // Once settled, the index holds them and answers alone.
    settle(&records);
    let r = s.auth(&other.name);
    assert_eq!(r.result, PamResult::AuthErr, "{r:?}");
    s.fx.log_lines();
    let index = std::fs::read_to_string(state.join(".index/uids")).unwrap();
    assert!(
        index.contains(&format!("\n{} renamed-away\n", other.uid)),
        "{index:.300}"
    );
    let r = s.auth(&other.name);
    assert_eq!(r.result, PamResult::AuthErr, "{r:?}");
    assert_contains(&s.fx.auth_line(), &["reason=alias_enrolled "]);
    // The enrolled user still logs in with the key.
    let r = s.auth(&enrolled.name);
    assert_eq!(r.result, PamResult::Success, "{r:?}");
}
