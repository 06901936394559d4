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
