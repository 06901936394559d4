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

/// `ctap-enroll test` runs the login: with two keys holding a credential of the user, one
/// touch (the quick key's 1.5 s, not a selection touch first), that key passes, the other is
/// cancelled.
#[test]
fn ctap_enroll_test_with_two_keys_takes_one_touch() {
    use ctap_core::flows::enroll::{enroll, EnrollRequest, UvPreference};
    use ctap_core::flows::session::{open_authenticators, Prompter};
    use ctap_core::store::account::{Nss, UserResolver};
    use ctap_core::store::config::Policy;

    struct Silent;
    impl Prompter for Silent {
        fn touch_cue(&mut self, _: &str) {}
        fn request_pin(&mut self, _: &str) -> Option<ctap_core::transport::ctap2::pin::Pin> {
            None
        }
        fn info(&mut self, _: &str) {}
    }

    let dir = TempDir::new("enroll-test-several");
    let (records, state) = (dir.path().join("users"), dir.path().join("state"));
    std::fs::create_dir(&records).unwrap();
    std::fs::create_dir(&state).unwrap();
    std::fs::set_permissions(&state, std::fs::Permissions::from_mode(0o700)).unwrap();
    let (sa, sb) = (dir.path().join("a"), dir.path().join("b"));
    for (path, name) in [(&sa, "key-a"), (&sb, "key-b")] {
        let key = SoftToken::start(dir.path(), path, &[]);
        let p = Policy {
            device: key.uri().parse().unwrap(),
            records_dir: records.clone(),
            state_dir: state.clone(),
            ..Policy::default()
        };
        let mut keys = open_authenticators(&p.device, p.touch_timeout()).unwrap();
        let req = EnrollRequest {
            user: Nss.by_name("daemon").unwrap().unwrap(),
            name: name.into(),
            rp_id: None,
            uv: UvPreference::Discouraged,
            pin_policy: p.pin,
        };
        enroll(&p.store(), &req, &mut keys[0], &mut Silent).unwrap();
        key.stop();
    }
    let log_a = dir.path().join("a.cancels");
    let a = SoftToken::start(
        dir.path(),
        &sa,
        &[
            "--presence",
            "delay=8000",
            "--cancel-log",
            log_a.to_str().unwrap(),
        ],
    );
    let b = SoftToken::start(dir.path(), &sb, &["--presence", "delay=1500"]);
    let config = dir.path().join("pam_ctap.toml");
    std::fs::write(
        &config,
        format!(
            "device = [{:?}, {:?}]\nrecords_dir = {records:?}\nstate_dir = {state:?}\ntimeout = 10\n",
            a.uri(),
            b.uri()
        ),
    )
    .unwrap();
    std::fs::set_permissions(&config, std::fs::Permissions::from_mode(0o644)).unwrap();
    let start = std::time::Instant::now();
    let out = Command::new(bin("ctap-enroll"))
        .arg("--config")
        .arg(&config)
        .args(["test", "--user", "daemon"])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let took = start.elapsed();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    println!("ctap-enroll test after {took:?}: {text}");
    assert!(out.status.success(), "{text}");
    assert!(
        text.contains("PASS: daemon verified with \"key-b\""),
        "{text}"
    );
    assert!(
        !text.contains("Touch the security key you want to use"),
        "{text}"
    );
    assert!(
        took < std::time::Duration::from_millis(2900),
        "{took:?}: one touch, not two"
    );
    let cancels = ctap_e2e::wait_for_cancels(&log_a);
    assert!(
        cancels.contains("busy=true"),
        "A was cancelled: {cancels:?}"
    );
}
