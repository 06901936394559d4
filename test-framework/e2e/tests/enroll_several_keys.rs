//! `ctap-enroll` with several keys attached (issue 16, item 1): instead of refusing, it lets a
//! touch choose (authenticatorSelection): the first touched key is used, the other is cancelled.
#![allow(clippy::unwrap_used)]

use std::os::unix::fs::PermissionsExt;
use std::process::{Command, Stdio};

use ctap_e2e::{bin, SoftToken, TempDir};

#[test]
fn ctap_enroll_uses_the_key_touched_first() {
    let dir = TempDir::new("enroll-several");
    let config = dir.path().join("pam_ctap.toml");
    std::fs::write(&config, "").unwrap();
    std::fs::set_permissions(&config, std::fs::Permissions::from_mode(0o644)).unwrap();
    let log_a = dir.path().join("a.cancels");
    let a = SoftToken::start(
        dir.path(),
        &dir.path().join("a"),
        &[
            "--presence",
            "delay=8000",
            "--cancel-log",
            log_a.to_str().unwrap(),
        ],
    );
    let b = SoftToken::start(
        dir.path(),
        &dir.path().join("b"),
        &["--presence", "delay=300"],
    );
    let both = format!("{},{}", a.uri(), b.uri());
    let run = |device: &str, args: &[&str], input: &str| {
        use std::io::Write;
        let mut child = Command::new(bin("ctap-enroll"))
            .arg("--config")
            .arg(&config)
            .arg("--device")
            .arg(device)
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        child
            .stdin
            .take()
            .unwrap()
            .write_all(input.as_bytes())
            .unwrap();
        let out = child.wait_with_output().unwrap();
        (
            out.status.success(),
            format!(
                "{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ),
        )
    };
    let start = std::time::Instant::now();
    let (ok, text) = run(&both, &["--pin-stdin", "pin", "set"], "123456\n123456\n");
    println!("pin set on two keys after {:?}: {text}", start.elapsed());
    assert!(ok, "{text}");
    assert!(
        text.contains("2 security keys are attached: touch the one to use"),
        "{text}"
    );
    assert!(start.elapsed() < std::time::Duration::from_secs(5));
    let (_, on_b) = run(&b.uri(), &["devices"], "");
    let (_, on_a) = run(&a.uri(), &["devices"], "");
    assert!(on_b.contains("retries left"), "B got the PIN: {on_b}");
    assert!(!on_a.contains("retries left"), "A did not: {on_a}");
    let cancels = ctap_e2e::wait_for_cancels(&log_a);
    assert!(!cancels.trim().is_empty(), "A was cancelled");
}
