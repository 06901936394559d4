//! Our own tools through ctap-proxy's socket: ctap-enroll enrolls and tests, and pam_ctap (real
//! Linux-PAM via pamtester) logs in, for the RP the proxy allows; for another RP they fail and
//! the proxy's audit says why.
#![allow(clippy::unwrap_used)]

mod pam_common;
mod proxy_common;

use std::os::unix::fs::PermissionsExt;
use std::process::{Command, Stdio};

use ctap_core::flows::enroll::UvPreference;
use ctap_e2e::{bin, SoftToken, TempDir};
use pam_common::*;
use proxy_common::Proxy;

#[test]
#[ignore = "needs root (records must be root-owned): scripts/test runs it as root"]
fn ctap_enroll_through_the_proxy() {
    let root = std::fs::metadata("/proc/self")
        .map(|m| std::os::unix::fs::MetadataExt::uid(&m) == 0)
        .unwrap_or(false);
    assert!(root, "ctap_enroll_through_the_proxy: needs root");
    let dir = TempDir::new("px-enroll");
    for d in ["users", "state"] {
        std::fs::create_dir(dir.path().join(d)).unwrap();
    }
    std::fs::set_permissions(
        dir.path().join("state"),
        std::fs::Permissions::from_mode(0o700),
    )
    .unwrap();
    let config = dir.path().join("pam_ctap.toml");
    std::fs::write(
        &config,
        format!(
            "records_dir = {:?}\nstate_dir = {:?}\ntimeout = 20\n",
            dir.path().join("users"),
            dir.path().join("state")
        ),
    )
    .unwrap();
    let key = SoftToken::start(dir.path(), &dir.path().join("key.state"), &[]);
    let proxy = Proxy::serve(
        dir.path(),
        &key.uri(),
        "[client.host]\nrp_ids = [\"pam://test\"]\n",
        &["host"],
    );
    let run = |args: &[&str]| {
        let out = Command::new(bin("ctap-enroll"))
            .arg("--config")
            .arg(&config)
            .arg("--device")
            .arg(proxy.uri("host"))
            .args(args)
            .env_remove("SUDO_USER")
            .stdin(Stdio::null())
            .output()
            .unwrap();
        (
            out.status.code().unwrap_or(-1),
            format!(
                "{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ),
        )
    };
    let (code, out) = run(&["enroll", "--user", "daemon", "--rp-id", "pam://test"]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("Enrolled \"key-1\" for daemon."), "{out}");
    let (code, out) = run(&["test", "--user", "daemon"]);
    assert_eq!(code, 0, "{out}");
    assert!(
        out.starts_with("PASS: daemon verified with \"key-1\""),
        "{out}"
    );
    proxy.wait_audit(&["command=makeCredential rp_id=\"pam://test\" decision=allow"]);
    proxy.wait_audit(&["command=getAssertion rp_id=\"pam://test\" decision=allow"]);
    // Another RP: the proxy refuses, ctap-enroll says the key refused.
    let (code, out) = run(&["enroll", "--user", "bin", "--rp-id", "pam://other"]);
    assert_ne!(code, 0, "{out}");
    proxy.wait_audit(&["rp_id=\"pam://other\" decision=refuse reason=rp-not-allowed status=0x27"]);
}

#[test]
#[ignore = "needs root and pamtester (writes /etc/pam.d): scripts/test runs it as root"]
fn pam_login_through_the_proxy() {
    require_root("pam_login_through_the_proxy");
    let fx = Fixture::new("px-pam");
    let key = start_key(fx.path(), &fx.path().join("key.state"), &[]);
    fx.enroll(&key, "daemon", UvPreference::Discouraged, None);
    let allowed = Proxy::serve(
        fx.path(),
        &key.uri(),
        &format!("[client.login]\nrp_ids = [{RP_ID:?}]\n[client.other]\nrp_ids = [\"pam://elsewhere\"]\n"),
        &["login", "other"],
    );
    let config = fx.config("pam_ctap.toml", &allowed.uri("login"), "");
    let service = ServiceFile::new(&observing_stack(&format!("config={}", config.display())));
    let r = pamtester(&service.name, "daemon", "", &[]);
    assert_eq!(r.result, PamResult::Success, "{r:?}\n{}", allowed.stderr());
    assert_contains(&fx.auth_line(), &["auth ok:", "user=daemon"]);
    allowed.wait_audit(&[
        "client=\"login\"",
        &format!("command=getAssertion rp_id=\"{RP_ID}\" decision=allow status=0x00"),
    ]);

    // The same key through a socket whose client may not use pam_ctap's RP ID: denied.
    let config = fx.config("pam_other.toml", &allowed.uri("other"), "");
    let service = ServiceFile::new(&observing_stack(&format!("config={}", config.display())));
    let r = pamtester(&service.name, "daemon", "", &[]);
    assert_eq!(r.result, PamResult::AuthErr, "{r:?}");
    allowed.wait_audit(&[
        "client=\"other\"",
        &format!("rp_id=\"{RP_ID}\" decision=refuse reason=rp-not-allowed"),
    ]);
}
