//! Asking the user through an SSH_ASKPASS-style program: the prompt is its only argument; for a
//! PIN its standard output is the answer; for a confirmation (SSH_ASKPASS_PROMPT=confirm) its
//! exit status is. The program gets a deadline and is killed past it.

use std::io::Read;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use zeroize::Zeroizing;

use crate::error::AskpassError;

/// Run the program and return its first output line, wiped on drop.
pub fn read_secret(
    prog: &Path,
    prompt: &str,
    timeout: Duration,
) -> Result<Zeroizing<String>, AskpassError> {
    let (ok, out) = run(prog, prompt, false, timeout)?;
    if !ok {
        return Err(AskpassError::Cancelled {
            program: prog.to_path_buf(),
        });
    }
    let text = std::str::from_utf8(&out).map_err(|_| AskpassError::NotUtf8 {
        program: prog.to_path_buf(),
    })?;
    let line = text.lines().next().unwrap_or("");
    Ok(Zeroizing::new(line.to_string()))
}

/// Ask for a yes/no confirmation: true only if the program exits 0 in time.
pub fn confirm(prog: &Path, prompt: &str, timeout: Duration) -> bool {
    matches!(run(prog, prompt, true, timeout), Ok((true, _)))
}

fn run(
    prog: &Path,
    prompt: &str,
    confirm: bool,
    timeout: Duration,
) -> Result<(bool, Zeroizing<Vec<u8>>), AskpassError> {
    let mut cmd = Command::new(prog);
    cmd.arg(prompt)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit());
    if confirm {
        cmd.env("SSH_ASKPASS_PROMPT", "confirm");
    } else {
        cmd.env_remove("SSH_ASKPASS_PROMPT");
    }
    let mut child = cmd.spawn().map_err(|source| AskpassError::Spawn {
        program: prog.to_path_buf(),
        source,
    })?;
    let stdout = child.stdout.take();
    let reader = std::thread::spawn(move || {
        let mut buf = Zeroizing::new(Vec::new());
        if let Some(out) = stdout {
            // A PIN is at most 63 bytes; more is a misconfigured program.
            let _ = out.take(4096).read_to_end(&mut buf);
        }
        buf
    });
    let deadline = Instant::now() + timeout;
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break Some(status),
            Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(20)),
            Ok(None) | Err(_) => {
                let _ = child.kill();
                let _ = child.wait();
                break None;
            }
        }
    };
    let out = reader.join().unwrap_or_default();
    match status {
        Some(s) => Ok((s.success(), out)),
        None => Err(AskpassError::Timeout {
            program: prog.to_path_buf(),
            timeout,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_first_line_and_honours_exit_status_and_deadline() {
        // Each answer comes from a small script: the prompt is its argument, as for ssh-askpass.
        let dir = std::env::temp_dir().join(format!("askpass-{}", rand::random::<u32>()));
        std::fs::create_dir(&dir).unwrap();
        let script = |name: &str, body: &str| {
            use std::os::unix::fs::PermissionsExt;
            let p = dir.join(name);
            std::fs::write(&p, format!("#!/bin/sh\n{body}\n")).unwrap();
            std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
            p
        };
        let pin = script("pin", "echo 1234; echo ignored");
        assert_eq!(
            read_secret(&pin, "PIN?", Duration::from_secs(5))
                .unwrap()
                .as_str(),
            "1234"
        );
        let yes = script("yes", "[ \"$SSH_ASKPASS_PROMPT\" = confirm ]");
        assert!(confirm(&yes, "ok?", Duration::from_secs(5)));
        let no = script("no", "exit 1");
        assert!(!confirm(&no, "ok?", Duration::from_secs(5)));
        assert!(read_secret(&no, "PIN?", Duration::from_secs(5)).is_err());
        let slow = script("slow", "exec sleep 10");
        let start = Instant::now();
        assert!(read_secret(&slow, "PIN?", Duration::from_millis(300)).is_err());
        assert!(start.elapsed() < Duration::from_secs(5));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
