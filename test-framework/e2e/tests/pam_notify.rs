//! Touch notifications (issue 16, item 4): root's `authpending_file` exists while the key waits
//! for a touch and is gone after, whatever the outcome; root's `notify_command` receives the
//! service, the user and the remote host as its arguments.
#![allow(clippy::unwrap_used)]

mod pam_common;

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use ctap_e2e::wait_for_path;
use pam_common::*;

/// A notify script that writes its arguments, one a line, to `out`.
fn notify_script(dir: &Path, out: &Path) -> PathBuf {
    let script = dir.join("notify.sh");
    std::fs::write(
        &script,
        format!(
            "#!/bin/sh\nfor a in \"$@\"; do printf '%s\\n' \"$a\"; done > {}.tmp\nmv {}.tmp {}\n",
            out.display(),
            out.display(),
            out.display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
    script
}

fn config(dir: &Path, script: &Path) -> String {
    format!(
        "authpending_file = \"{}/pending-%u\"\nnotify_command = [{:?}, \"--from-ctap\"]\n",
        dir.display(),
        script.display().to_string()
    )
}

/// Run `auth` on a thread and watch `pending` meanwhile: when it appeared (after the start)
/// and whether it is still there at the end.
fn watch(pending: &Path, auth: impl FnOnce() -> Run + Send) -> (Run, Option<Duration>) {
    std::thread::scope(|scope| {
        let start = Instant::now();
        let h = scope.spawn(auth);
        let mut seen = None;
        while !h.is_finished() {
            if seen.is_none() && pending.exists() {
                seen = Some(start.elapsed());
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        (h.join().unwrap(), seen)
    })
}

#[test]
#[ignore = "needs root and pamtester (writes /etc/pam.d): scripts/test runs it as root"]
fn pam_authpending_file_exists_during_the_wait_and_notify_gets_its_arguments() {
    require_root("pam_authpending_file_exists_during_the_wait_and_notify_gets_its_arguments");
    let tmp = ctap_e2e::TempDir::new("pam-notify-out");
    let out = tmp.path().join("argv");
    let script = notify_script(tmp.path(), &out);
    let cfg = config(tmp.path(), &script);
    let mut s = Setup::builder("pam-notify").config(&cfg).start();
    s.restart_key(None, &["--presence", "delay=1500"]);
    let uid = account("daemon").uid();
    let pending = tmp.path().join(format!("pending-{uid}"));

    let (r, seen) = watch(&pending, || {
        s.auth_items("daemon", &["rhost=laptop.example"])
    });
    println!(
        "result {:?} after {:?}; pending file seen at {seen:?}",
        r.result, r.elapsed
    );
    assert_eq!(r.result, PamResult::Success, "{r:?}");
    assert!(seen.is_some(), "the pending file appeared during the wait");
    assert!(
        !pending.exists(),
        "the pending file is gone after the login"
    );
    // The command ran with root's argv, then the service, the user and the remote host.
    wait_for_path(&out, Duration::from_secs(5));
    let argv = std::fs::read_to_string(&out).unwrap();
    println!("notify argv: {argv:?}");
    let lines: Vec<&str> = argv.lines().collect();
    assert_eq!(lines.len(), 4, "{argv:?}");
    assert_eq!(lines[0], "--from-ctap");
    assert!(lines[1].starts_with("ctap-e2e-"), "service: {argv:?}");
    assert_eq!(&lines[2..], ["daemon", "laptop.example"]);
    s.fx.auth_line();

    // A local login: the remote host argument is empty.
    std::fs::remove_file(&out).unwrap();
    let r = s.auth("daemon");
    assert_eq!(r.result, PamResult::Success, "{r:?}");
    wait_for_path(&out, Duration::from_secs(5));
    let argv = std::fs::read_to_string(&out).unwrap();
    assert_eq!(argv.lines().last(), Some(""), "{argv:?}");
}

#[test]
#[ignore = "needs root and pamtester (writes /etc/pam.d): scripts/test runs it as root"]
fn pam_authpending_file_is_removed_after_a_timeout_and_a_denial() {
    require_root("pam_authpending_file_is_removed_after_a_timeout_and_a_denial");
    let tmp = ctap_e2e::TempDir::new("pam-notify-to");
    let script = notify_script(tmp.path(), &tmp.path().join("argv"));
    let cfg = config(tmp.path(), &script);
    let mut s = Setup::builder("pam-notify-to")
        .config(&cfg)
        .module_args("timeout=2")
        .start();
    let pending = tmp
        .path()
        .join(format!("pending-{}", account("daemon").uid()));

    // Nobody touches in time.
    s.restart_key(None, &["--presence", "delay=10000"]);
    let (r, seen) = watch(&pending, || s.auth("daemon"));
    println!(
        "timeout: {:?} after {:?}, seen {seen:?}",
        r.result, r.elapsed
    );
    assert_eq!(r.result, PamResult::AuthErr, "{r:?}");
    assert!(seen.is_some());
    assert!(!pending.exists(), "removed after the timeout");
    assert_contains(&s.fx.auth_line(), &["reason=timeout"]);

    // The key says no at once.
    s.restart_key(None, &["--presence", "deny"]);
    let r = s.auth("daemon");
    assert_eq!(r.result, PamResult::AuthErr, "{r:?}");
    assert!(!pending.exists(), "removed after the denial");
    // (The virtual key's denial reads as the CTAP user-action timeout.)
    assert_contains(&s.fx.auth_line(), &["auth failed: reason="]);
}

/// The same notification on the CTAP1/U2F path: a U2F-only key's touch is announced and the
/// file is gone after.
#[test]
#[ignore = "needs root and pamtester (writes /etc/pam.d): scripts/test runs it as root"]
fn pam_authpending_file_and_notify_on_a_u2f_only_key() {
    require_root("pam_authpending_file_and_notify_on_a_u2f_only_key");
    let tmp = ctap_e2e::TempDir::new("pam-notify-u2f-out");
    let out = tmp.path().join("argv");
    let script = notify_script(tmp.path(), &out);
    let cfg = config(tmp.path(), &script);
    let mut s = Setup::builder("pam-notify-u2f")
        .key_args(&["--ctap1-only"])
        .config(&cfg)
        .start();
    s.restart_key(None, &["--ctap1-only", "--presence", "delay=1500"]);
    let uid = account("daemon").uid();
    let pending = tmp.path().join(format!("pending-{uid}"));
    let (r, seen) = watch(&pending, || s.auth_items("daemon", &["rhost=u2f.example"]));
    println!(
        "result {:?} after {:?}; pending file seen at {seen:?}",
        r.result, r.elapsed
    );
    assert_eq!(r.result, PamResult::Success, "{r:?}");
    assert!(
        seen.is_some(),
        "the pending file appeared during the U2F wait"
    );
    assert!(
        !pending.exists(),
        "the pending file is gone after the login"
    );
    wait_for_path(&out, Duration::from_secs(3));
    let argv = std::fs::read_to_string(&out).unwrap();
    assert!(argv.ends_with("daemon\nu2f.example\n"), "{argv:?}");
}
