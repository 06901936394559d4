//! Telling the desktop that a touch is awaited (docs/ARCHITECTURE.md §4, issue 16 item 4): root's
//! `authpending_file` exists while the key waits for a touch, and root's `notify_command` is
//! started when the wait begins. Neither ever changes a login's result: a file that cannot be
//! made or a command that cannot start is simply not there.
//!
//! The file is created the way pam-u2f's `authpending_file` is, for the same watchers (a desktop
//! shell watching `/run/user/UID/…` with inotify), but without following a symlink at its last
//! component and without touching a file that is already there (O_CREAT|O_EXCL|O_NOFOLLOW, mode
//! 0600, nothing written): it may sit in a directory the user owns. Only a file this login made
//! is removed, when the [`TouchPending`] guard drops: after the answer, an error, a timeout or a
//! cancel alike.
//!
//! The command runs without a shell, with an empty environment (PATH only), stdin, stdout and
//! stderr on /dev/null, and the service, the user and the remote host (empty for a local login)
//! appended to root's argv. It is never waited on beyond [`NOTIFY_GRACE`] after the wait ends:
//! then it is killed and reaped, so the program calling PAM keeps no child and no zombie.

use std::fs::OpenOptions;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::store::config::Policy;

/// How long the notify command may still run once the wait for the touch is over.
pub const NOTIFY_GRACE: Duration = Duration::from_millis(500);

/// Who is asked to touch, for the notification's arguments and the file's `%u`.
#[derive(Debug, Clone, Copy)]
pub struct Waiting<'a> {
    pub service: &'a str,
    pub user: &'a str,
    pub uid: u32,
    pub remote_host: Option<&'a str>,
}

/// While it lives, a touch is awaited: the file exists (if this login made it) and the command
/// runs. Dropping it removes the file and ends the command.
#[derive(Debug, Default)]
pub struct TouchPending {
    file: Option<PathBuf>,
    child: Option<Child>,
}

impl TouchPending {
    /// Announce the wait described by `who` through root's `authpending_file` and
    /// `notify_command` ([`Policy::authpending_path`]; argv, empty: none).
    pub fn start(policy: &Policy, who: &Waiting<'_>) -> Self {
        let file = policy.authpending_path(who.uid).filter(|p| create_new(p));
        let notify_command = &policy.notify_command;
        let child = notify_command
            .split_first()
            .and_then(|(program, args)| spawn(program, args, who));
        TouchPending { file, child }
    }
}

fn create_new(path: &Path) -> bool {
    OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .custom_flags(nix::libc::O_NOFOLLOW | nix::libc::O_CLOEXEC | nix::libc::O_NONBLOCK)
        .open(path)
        .is_ok()
}

fn spawn(program: &str, args: &[String], who: &Waiting<'_>) -> Option<Child> {
    Command::new(program)
        .args(args)
        .args([who.service, who.user, who.remote_host.unwrap_or("")])
        .env_clear()
        .env(
            "PATH",
            "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
        )
        .current_dir("/")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .ok()
}

impl Drop for TouchPending {
    fn drop(&mut self) {
        if let Some(path) = self.file.take() {
            let _ = std::fs::remove_file(path);
        }
        if let Some(mut child) = self.child.take() {
            let until = Instant::now() + NOTIFY_GRACE;
            loop {
                match child.try_wait() {
                    Ok(None) if Instant::now() < until => {
                        std::thread::sleep(Duration::from_millis(10))
                    }
                    Ok(None) => {
                        let _ = child.kill();
                        let _ = child.wait();
                        break;
                    }
                    Ok(Some(_)) | Err(_) => break,
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(file: Option<String>, command: &[&str]) -> Policy {
        Policy {
            authpending_file: file,
            notify_command: command.iter().map(|s| s.to_string()).collect(),
            ..Policy::default()
        }
    }

    fn who() -> Waiting<'static> {
        Waiting {
            service: "sudo",
            user: "alice",
            uid: 4242,
            remote_host: Some("host.example"),
        }
    }

    #[test]
    fn the_file_lives_as_long_as_the_guard_and_a_foreign_file_is_left_alone() {
        let dir = std::env::temp_dir().join(format!("ctap-notify-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let template = format!("{}/pending-%u", dir.display());
        let path = dir.join("pending-4242");
        let _ = std::fs::remove_file(&path);
        {
            let _p = TouchPending::start(&policy(Some(template.clone()), &[]), &who());
            let meta = std::fs::symlink_metadata(&path).unwrap();
            use std::os::unix::fs::PermissionsExt;
            assert_eq!(meta.permissions().mode() & 0o777, 0o600);
        }
        assert!(!path.exists());
        // Already there (another login's, or planted): not ours to remove.
        std::fs::write(&path, b"x").unwrap();
        drop(TouchPending::start(
            &policy(Some(template.clone()), &[]),
            &who(),
        ));
        assert_eq!(std::fs::read(&path).unwrap(), b"x");
        std::fs::remove_file(&path).unwrap();
        // A symlink is not followed.
        let target = dir.join("target");
        std::os::unix::fs::symlink(&target, &path).unwrap();
        drop(TouchPending::start(
            &policy(Some(template.clone()), &[]),
            &who(),
        ));
        assert!(!target.exists());
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_command_that_hangs_is_killed_after_the_grace() {
        let start = Instant::now();
        let p = TouchPending::start(&policy(None, &["/bin/sh", "-c", "sleep 30"]), &who());
        assert!(p.child.is_some());
        drop(p);
        assert!(
            start.elapsed() < Duration::from_secs(3),
            "{:?}",
            start.elapsed()
        );
        // A command that does not exist changes nothing.
        drop(TouchPending::start(
            &policy(None, &["/nonexistent/notify"]),
            &who(),
        ));
    }
}
