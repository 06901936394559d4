//! sudo and su end to end, as a user would meet them: a real test user, a sudoers rule, and
//! /etc/pam.d/sudo and /etc/pam.d/su using pam_ctap with a test config.
//!
//! The system files are changed only for the test user (the new lines are gated by
//! pam_succeed_if on that user and skip to the original stack for everyone else), restored
//! when the test ends, even on panic; a backup left by a killed run is restored first.
#![allow(clippy::unwrap_used)]

mod pam_common;

use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use pam_common::*;

const PASSWORD: &str = "ctap-e2e-Pass-1";

/// Replace a file under /etc for the duration of a test; restore content and mode on drop.
struct EtcFile {
    path: PathBuf,
    backup: PathBuf,
    existed: bool,
}

impl EtcFile {
    fn replace(path: &str, content: &str, mode: u32) -> Self {
        let path = PathBuf::from(path);
        let backup = PathBuf::from(format!("{}.ctap-e2e-backup", path.display()));
        if backup.exists() {
            // A previous run was killed before it could restore: do it now.
            std::fs::rename(&backup, &path).unwrap();
        }
        let existed = path.exists();
        if existed {
            std::fs::copy(&path, &backup).unwrap();
        }
        let tmp = PathBuf::from(format!("{}.ctap-e2e-new", path.display()));
        std::fs::write(&tmp, content).unwrap();
        std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(mode)).unwrap();
        std::fs::rename(&tmp, &path).unwrap();
        EtcFile {
            path,
            backup,
            existed,
        }
    }

    fn original(path: &str) -> String {
        let backup = format!("{path}.ctap-e2e-backup");
        std::fs::read_to_string(if Path::new(&backup).exists() {
            &backup
        } else {
            path
        })
        .unwrap_or_default()
    }
}

impl Drop for EtcFile {
    fn drop(&mut self) {
        if self.existed {
            let _ = std::fs::rename(&self.backup, &self.path);
        } else {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

fn set_password(user: &str) {
    let mut c = Command::new("chpasswd")
        .stdin(Stdio::piped())
        .spawn()
        .unwrap();
    c.stdin
        .take()
        .unwrap()
        .write_all(format!("{user}:{PASSWORD}\n").as_bytes())
        .unwrap();
    assert!(c.wait().unwrap().success());
}

/// Run `cmd` as `user` (runuser: root needs no authentication for that) with `stdin`.
fn as_user(user: &str, cmd: &[&str], stdin: &str) -> Output {
    let mut c = Command::new("runuser")
        .args(["-u", user, "--"])
        .args(cmd)
        .current_dir("/")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    c.stdin.take().unwrap().write_all(stdin.as_bytes()).unwrap();
    c.wait_with_output().unwrap()
}

fn show(o: &Output) -> String {
    format!(
        "status {:?}\nstdout: {}\nstderr: {}",
        o.status,
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// The auth lines the module logged for `service`.
fn auth_lines(s: &Setup, service: &str) -> Vec<String> {
    s.fx.log_lines()
        .into_iter()
        .filter(|l| l.contains("]: auth ") && l.contains(&format!("service={service} ")))
        .collect()
}

#[test]
#[ignore = "needs root and pamtester (writes /etc/pam.d): scripts/test runs it as root"]
fn pam_sudo_needs_the_key_and_the_password() {
    require_root("pam_sudo_needs_the_key_and_the_password");
    let user = TestUser::new();
    set_password(&user.name);
    let mut s = Setup::builder("pam-sudo").user(&user.name).start();
    let _sudoers = EtcFile::replace(
        &format!("/etc/sudoers.d/ctap-e2e-{}", user.name),
        &format!(
            "Defaults:{u} passwd_tries=1, !lecture\n{u} ALL=(ALL:ALL) ALL\n",
            u = user.name
        ),
        0o440,
    );
    // The key first (requisite: no key, no password prompt), then the usual password; for the
    // test user only, everyone else falls through to the distribution's stack untouched.
    let stack = format!(
        "#%PAM-1.0\n\
         auth [success=ignore default=2] pam_succeed_if.so quiet user = {u}\n\
         auth requisite {m} config={c}\n\
         auth [success=done default=die] pam_unix.so\n\
         {orig}",
        u = user.name,
        m = module_path().display(),
        c = s.config.display(),
        orig = EtcFile::original("/etc/pam.d/sudo"),
    );
    let _pam = EtcFile::replace("/etc/pam.d/sudo", &stack, 0o644);
    let sudo = ["sudo", "-S", "-k", "-p", "password:", "id", "-u"];

    let ok = as_user(&user.name, &sudo, &format!("{PASSWORD}\n"));
    assert!(ok.status.success(), "{}", show(&ok));
    assert_eq!(
        String::from_utf8_lossy(&ok.stdout).lines().last(),
        Some("0"),
        "{}",
        show(&ok)
    );
    // sudo passes PAM_SILENT (its pam_silent default); the cue is shown anyway.
    assert!(
        String::from_utf8_lossy(&ok.stdout).contains("Touch your security key")
            || String::from_utf8_lossy(&ok.stderr).contains("Touch your security key"),
        "{}",
        show(&ok)
    );
    let lines = auth_lines(&s, "sudo");
    assert_eq!(lines.len(), 1, "{lines:#?}");
    assert_contains(
        &lines[0],
        &[&format!(
            "auth ok: service=sudo user={} account={} uid={} credential=\"virtual\" counter=",
            user.name, user.name, user.uid
        )],
    );

    // The key without the password is not enough.
    let r = as_user(&user.name, &sudo, "wrong-password\n");
    assert!(!r.status.success(), "{}", show(&r));
    let lines = auth_lines(&s, "sudo");
    assert!(
        lines.len() == 1 && lines[0].contains("auth ok"),
        "the key part passed: {lines:#?}"
    );

    // The password without a touch is not enough.
    s.restart_key(None, &["--presence", "deny"]);
    let r = as_user(&user.name, &sudo, &format!("{PASSWORD}\n"));
    assert!(!r.status.success(), "{}", show(&r));
    assert!(
        !String::from_utf8_lossy(&r.stdout).contains("\n0"),
        "{}",
        show(&r)
    );
    let lines = auth_lines(&s, "sudo");
    assert!(
        lines.iter().any(|l| l.contains("auth failed: reason=")
            && l.contains(&format!(" service=sudo user={} ", user.name))),
        "{lines:#?}"
    );
    assert!(!lines.iter().any(|l| l.contains("auth ok")), "{lines:#?}");
}

#[test]
#[ignore = "needs root and pamtester (writes /etc/pam.d): scripts/test runs it as root"]
fn pam_su_to_root_needs_the_key() {
    require_root("pam_su_to_root_needs_the_key");
    let user = TestUser::new();
    let mut s = Setup::builder("pam-su").user(&user.name).start();
    // su authenticates the target: root's credential, in this test's records.
    s.fx.enroll(
        s.key(),
        "root",
        ctap_core::flows::enroll::UvPreference::Discouraged,
        None,
    );
    // For su started by the test user only: the key alone decides.
    let stack = format!(
        "#%PAM-1.0\n\
         auth [success=ignore default=1] pam_succeed_if.so quiet ruser = {u}\n\
         auth [success=done default=die] {m} config={c}\n\
         {orig}",
        u = user.name,
        m = module_path().display(),
        c = s.config.display(),
        orig = EtcFile::original("/etc/pam.d/su"),
    );
    let _pam = EtcFile::replace("/etc/pam.d/su", &stack, 0o644);
    let su = ["su", "-c", "id -u", "root"];

    let ok = as_user(&user.name, &su, "");
    assert!(ok.status.success(), "{}", show(&ok));
    let out = String::from_utf8_lossy(&ok.stdout);
    assert!(out.contains("Touch your security key"), "{}", show(&ok));
    assert_eq!(out.lines().last(), Some("0"), "{}", show(&ok));
    let lines = auth_lines(&s, "su");
    assert_eq!(lines.len(), 1, "{lines:#?}");
    assert_contains(
        &lines[0],
        &["auth ok: service=su user=root account=root uid=0 credential=\"virtual\""],
    );

    s.restart_key(None, &["--presence", "deny"]);
    let r = as_user(&user.name, &su, "");
    assert!(!r.status.success(), "{}", show(&r));
    let lines = auth_lines(&s, "su");
    assert_eq!(lines.len(), 1, "{lines:#?}");
    assert_contains(
        &lines[0],
        &["auth failed: reason=", " service=su user=root "],
    );
}
