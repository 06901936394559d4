//! Ctrl-C at `ctap-enroll`'s PIN prompt (issue 16, item 2): on a real pseudo-terminal, the
//! process ends as on any Ctrl-C (SIGINT) and the terminal's echo is back on.
#![allow(clippy::unwrap_used)]

use std::os::unix::fs::PermissionsExt;
use std::process::Command;

use ctap_e2e::{bin, SoftToken, TempDir};

/// Run argv on a new pty as its controlling terminal, wait for a prompt with "PIN", type two
/// characters and Ctrl-C, then report how the process ended and the terminal's flags.
const PTY_DRIVER: &str = r#"
import os, sys, termios, time, select
argv = sys.argv[1:]
master, slave = os.openpty()
before = termios.tcgetattr(slave)
pid = os.fork()
if pid == 0:
    os.close(master)
    os.login_tty(slave)
    os.execv(argv[0], argv)
buf = b''
deadline = time.time() + 20
while b'PIN' not in buf and time.time() < deadline:
    r, _, _ = select.select([master], [], [], 0.5)
    if r:
        try:
            buf += os.read(master, 1024)
        except OSError:
            break
os.write(master, b'12')
time.sleep(0.3)
os.write(master, b'\x03')
_, status = os.waitpid(pid, 0)
after = termios.tcgetattr(slave)
print("prompt_seen", b'PIN' in buf)
print("signal", os.WTERMSIG(status) if os.WIFSIGNALED(status) else None)
print("echo_before", bool(before[3] & termios.ECHO))
print("echo_after", bool(after[3] & termios.ECHO))
print("icanon_after", bool(after[3] & termios.ICANON))
print("isig_after", bool(after[3] & termios.ISIG))
"#;

#[test]
fn ctrl_c_at_the_pin_prompt_restores_echo_and_ends_by_sigint() {
    let dir = TempDir::new("enroll-tty");
    let key = SoftToken::start(dir.path(), &dir.path().join("key.state"), &[]);
    let config = dir.path().join("pam_ctap.toml");
    std::fs::create_dir(dir.path().join("users")).unwrap();
    std::fs::create_dir(dir.path().join("state")).unwrap();
    std::fs::write(
        &config,
        format!(
            "records_dir = \"{}/users\"\nstate_dir = \"{}/state\"\n",
            dir.path().display(),
            dir.path().display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(&config, std::fs::Permissions::from_mode(0o644)).unwrap();
    let enroll = bin("ctap-enroll");
    let out = Command::new("python3")
        .arg("-c")
        .arg(PTY_DRIVER)
        .arg(&enroll)
        .arg("--config")
        .arg(&config)
        .arg("--device")
        .arg(key.uri())
        .args(["pin", "set"])
        .output()
        .unwrap();
    let report = String::from_utf8_lossy(&out.stdout);
    println!("{report}{}", String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success());
    for line in [
        "prompt_seen True",
        "signal 2",
        "echo_before True",
        "echo_after True",
        "icanon_after True",
        "isig_after True",
    ] {
        assert!(report.contains(line), "{line:?} not in:\n{report}");
    }
    // Nothing was set: the key still has no PIN.
    let d = Command::new(&enroll)
        .arg("--config")
        .arg(&config)
        .arg("--device")
        .arg(key.uri())
        .arg("devices")
        .output()
        .unwrap();
    let d = String::from_utf8_lossy(&d.stdout);
    assert!(!d.contains("retries left"), "{d}");
}
