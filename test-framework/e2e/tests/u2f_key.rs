//! A U2F-only key (`ctap-softtoken --ctap1-only`) end to end: `ctap-enroll enroll/test/list`,
//! pamtester logins through the CTAP1 path, clone detection and suspension on that path, an
//! old-format pam-u2f line imported and used, malformed U2F answers refused without a state
//! change, `require_hmac_secret`, and the agent and `ctap-enroll ssh` refusing the key by name.
//!
//! The `pam_*` tests drive real Linux-PAM (root, pamtester): `#[ignore]`d, run with
//! `--include-ignored` as root. The others run `ctap-enroll` and the agent, as root (records
//! must be root-owned), like enroll_cli.
#![allow(clippy::unwrap_used)]

mod pam_common;
mod sshagent_common;

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use ctap_core::store::credential::b64_encode;
use ctap_core::transport::ctap1::{verify_registration, Ctap1};
use ctap_core::transport::ctaphid::WaitDecision;
use ctap_core::transport::device::UnixTransport;
use ctap_e2e::{bin, SoftToken, TempDir};
use pam_common::*;
use sha2::{Digest, Sha256};

const U2F_ONLY: &[&str] = &["--ctap1-only"];

/// `ctap-enroll --config CONFIG --device URI ARGS...`.
fn ctap_enroll(config: &Path, uri: &str, args: &[&str]) -> Output {
    Command::new(bin("ctap-enroll"))
        .arg("--config")
        .arg(config)
        .arg("--device")
        .arg(uri)
        .args(args)
        .env_remove("SUDO_USER")
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// A root config for `ctap-enroll` in `dir`, with its records and state directories.
fn cli_config(dir: &Path, extra: &str) -> PathBuf {
    for d in ["users", "state"] {
        std::fs::create_dir_all(dir.join(d)).unwrap();
    }
    std::fs::set_permissions(dir.join("state"), std::fs::Permissions::from_mode(0o700)).unwrap();
    let config = dir.join("pam_ctap.toml");
    std::fs::write(
        &config,
        format!(
            "records_dir = \"{}\"\nstate_dir = \"{}\"\ntimeout = 20\n{extra}",
            dir.join("users").display(),
            dir.join("state").display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(&config, std::fs::Permissions::from_mode(0o644)).unwrap();
    config
}

fn state_value(path: &Path) -> toml::Value {
    toml::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

/// The first credential's counter and whether it is suspended.
fn sign_count(path: &Path) -> (i64, bool) {
    let v = state_value(path);
    let c = &v["credential"][0];
    (
        c["sign_count"].as_integer().unwrap(),
        c.get("suspended")
            .and_then(|x| x.as_bool())
            .unwrap_or(false),
    )
}

#[test]
fn ctap_enroll_enrolls_lists_and_tests_a_u2f_only_key() {
    let dir = TempDir::new("u2f-cli");
    let key = SoftToken::start(dir.path(), &dir.path().join("key.state"), U2F_ONLY);
    let config = cli_config(dir.path(), "");
    let run = |args: &[&str]| ctap_enroll(&config, &key.uri(), args);

    let devices = run(&["devices"]);
    let shown = text(&devices);
    assert!(devices.status.success(), "{shown}");
    println!("{shown}");
    assert!(
        shown.contains("versions        U2F_V2") && shown.contains("U2F only"),
        "{shown}"
    );

    // UV cannot be had from a U2F key: refused before any touch, saying what to do.
    let uv = run(&[
        "enroll",
        "--user",
        "daemon",
        "--rp-id",
        "pam://u2f",
        "--uv",
        "required",
    ]);
    assert!(!uv.status.success(), "{}", text(&uv));
    assert!(text(&uv).contains("speaks only U2F"), "{}", text(&uv));

    let enrolled = run(&["enroll", "--user", "daemon", "--rp-id", "pam://u2f"]);
    let out = text(&enrolled);
    assert!(enrolled.status.success(), "{out}");
    println!("{out}");
    for want in [
        "protocol           u2f",
        "hmac-secret        no",
        "speaks only U2F",
    ] {
        assert!(out.contains(want), "{want:?} in {out}");
    }
    let records = std::fs::read_to_string(dir.path().join("users/daemon.toml")).unwrap();
    assert!(records.contains("protocol = \"u2f\""), "{records}");
    assert!(records.contains("hmac_secret = false"), "{records}");
    assert!(
        records.contains("user_verification = \"discouraged\""),
        "{records}"
    );

    let list = run(&["list", "--user", "daemon"]);
    let listed = text(&list);
    assert!(list.status.success(), "{listed}");
    println!("{listed}");
    assert!(
        listed.contains("PROTOCOL") && listed.contains(" u2f "),
        "{listed}"
    );

    // `test` goes through the login, the CTAP1 path, and the counter advances.
    let before = sign_count(&dir.path().join("state/daemon.toml")).0;
    let tested = run(&["test", "--user", "daemon"]);
    let out = text(&tested);
    assert!(tested.status.success(), "{out}");
    println!("{out}");
    assert!(out.contains("PASS"), "{out}");
    assert!(sign_count(&dir.path().join("state/daemon.toml")).0 > before);

    // The same key again for the same RP: check-only finds it; nothing is added.
    let again = run(&[
        "enroll",
        "--user",
        "daemon",
        "--rp-id",
        "pam://u2f",
        "--name",
        "b",
    ]);
    assert!(!again.status.success(), "{}", text(&again));
    assert!(
        text(&again).contains("already enrolled"),
        "{}",
        text(&again)
    );
}

#[test]
fn a_registration_for_another_appid_is_refused_and_nothing_is_written() {
    let dir = TempDir::new("u2f-appid");
    let key = SoftToken::start(
        dir.path(),
        &dir.path().join("key.state"),
        &["--ctap1-only", "--fault", "u2f-other-appid"],
    );
    let config = cli_config(dir.path(), "");
    let r = ctap_enroll(
        &config,
        &key.uri(),
        &["enroll", "--user", "daemon", "--rp-id", "pam://u2f"],
    );
    let out = text(&r);
    println!("{out}");
    assert!(!r.status.success(), "{out}");
    assert!(
        out.contains("the U2F registration does not verify"),
        "{out}"
    );
    assert!(!dir.path().join("users/daemon.toml").exists());
}

#[test]
fn ctap_enroll_ssh_refuses_a_u2f_only_key_by_name() {
    let dir = TempDir::new("u2f-ssh");
    let key = SoftToken::start(dir.path(), &dir.path().join("key.state"), U2F_ONLY);
    let config = cli_config(dir.path(), "");
    let creds = dir.path().join("ssh.toml");
    let r = ctap_enroll(
        &config,
        &key.uri(),
        &[
            "ssh",
            "--name",
            "x",
            "--credentials",
            creds.to_str().unwrap(),
        ],
    );
    let out = text(&r);
    println!("{out}");
    assert!(!r.status.success(), "{out}");
    assert!(
        out.contains("speaks only CTAP1/U2F") && out.contains("OpenSSH security key"),
        "{out}"
    );
    assert!(!creds.exists());
}

#[test]
fn the_agent_refuses_a_u2f_only_key_by_name() {
    use ctap_core::ssh::{SkAlgorithm, SkKey};
    use sshagent_common::{enrollment, write_credentials, Agent, FAILURE};

    let dir = sshagent_common::temp("u2f-agent");
    let state = dir.path().join("state");
    // The SSH credential is made on the key while it speaks CTAP2; then it speaks only U2F.
    let key = SoftToken::start(dir.path(), &state, &[]);
    let records = sshagent_common::enroll(&key, &[enrollment(SkAlgorithm::EcdsaP256, "e")], None);
    key.stop();
    let key = SoftToken::start(dir.path(), &state, U2F_ONLY);
    let creds = write_credentials(dir.path(), &records);
    let agent = Agent::start(dir.path(), &key, &creds, &[]);
    let blob = SkKey::from_record(&records[0]).unwrap().public_blob();
    let mut c = agent.client();
    assert_eq!(c.sign(&blob, b"data"), [FAILURE]);
    let log = agent.log_text();
    println!("{log}");
    assert!(
        log.contains("speaks only CTAP1/U2F") && log.contains("OpenSSH security key"),
        "{log}"
    );
}

/// Register on a U2F-only key for `app_id`, as pamu2fcfg 1.0 did: the old-format line's key
/// handle (web-safe base64) and public key (hex of the uncompressed point).
fn old_format_registration(key: &SoftToken, app_id: &str) -> (String, String) {
    let mut ctap1 = Ctap1::open_until(UnixTransport::connect(&key.socket).unwrap(), None).unwrap();
    let app: [u8; 32] = Sha256::digest(app_id.as_bytes()).into();
    let challenge: [u8; 32] = rand::random();
    let response = ctap1
        .register(&app, &challenge, &mut |_| WaitDecision::Continue)
        .unwrap();
    let reg = verify_registration(&response, &app, &challenge).unwrap();
    let hex: String = reg
        .public_key()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    (b64_encode(reg.key_handle()), hex)
}

#[test]
#[ignore = "needs root and pamtester (writes /etc/pam.d): scripts/test runs it as root"]
fn pam_u2f_only_key_logs_in_through_ctap1() {
    require_root("pam_u2f_only_key_logs_in_through_ctap1");
    let s = Setup::builder("pam-u2f").key_args(U2F_ONLY).start();
    let records = std::fs::read_to_string(s.records_path("daemon")).unwrap();
    assert!(records.contains("protocol = \"u2f\""), "{records}");
    let mut counters = Vec::new();
    for _ in 0..2 {
        let r = s.auth("daemon");
        assert_eq!(r.result, PamResult::Success, "{r:?}");
        let line = s.fx.auth_line();
        println!("{line}");
        assert_contains(&line, &["auth ok: ", "credential=\"virtual\"", "uv=no"]);
        counters.push(sign_count(&s.state_path("daemon")).0);
    }
    assert!(counters[1] > counters[0], "{counters:?}");
}

#[test]
#[ignore = "needs root and pamtester (writes /etc/pam.d): scripts/test runs it as root"]
fn pam_cloned_u2f_key_is_refused_and_suspended() {
    require_root("pam_cloned_u2f_key_is_refused_and_suspended");
    let mut s = Setup::builder("pam-u2f-clone")
        .key_args(U2F_ONLY)
        .config("clone_action = \"suspend\"")
        .start();
    s.stop_key();
    let clone = s.fx.path().join("clone.state");
    std::fs::copy(&s.key_state, &clone).unwrap();
    s.restart_key(None, U2F_ONLY);
    // Past anything the clone reaches in one login (the key steps by a random 1..=256).
    let copied = sign_count(&s.state_path("daemon")).0;
    while sign_count(&s.state_path("daemon")).0 <= copied + 512 {
        assert_eq!(s.auth("daemon").result, PamResult::Success);
    }
    s.fx.log_lines();
    let stored = sign_count(&s.state_path("daemon")).0;

    s.restart_key(Some(&clone), U2F_ONLY);
    let r = s.auth("daemon");
    assert_eq!(r.result, PamResult::AuthErr, "{r:?}");
    let line = s.fx.auth_line();
    println!("{line}");
    assert_contains(
        &line,
        &[
            "reason=counter_regression ",
            "suspended=yes",
            &format!("from {stored} to "),
        ],
    );
    assert!(sign_count(&s.state_path("daemon")).1, "suspended in state");
    s.restart_key(None, U2F_ONLY);
    let r = s.auth("daemon");
    assert_eq!(r.result, PamResult::AuthErr, "{r:?}");
    assert_contains(&s.fx.auth_line(), &["reason=suspended"]);
}

#[test]
#[ignore = "needs root and pamtester (writes /etc/pam.d): scripts/test runs it as root"]
fn pam_require_hmac_secret_refuses_a_u2f_credential() {
    require_root("pam_require_hmac_secret_refuses_a_u2f_credential");
    let s = Setup::builder("pam-u2f-hmac")
        .key_args(U2F_ONLY)
        .config("require_hmac_secret = true")
        .start();
    let before = std::fs::read(s.state_path("daemon")).unwrap();
    let r = s.auth("daemon");
    assert_eq!(r.result, PamResult::AuthErr, "{r:?}");
    assert!(r.stderr.contains("hmac-secret"), "{r:?}");
    let line = s.fx.auth_line();
    println!("{line}");
    assert_contains(&line, &["reason=hmac_secret_required "]);
    assert_eq!(std::fs::read(s.state_path("daemon")).unwrap(), before);
}

#[test]
#[ignore = "needs root and pamtester (writes /etc/pam.d): scripts/test runs it as root"]
fn pam_malformed_u2f_answers_are_refused_without_a_state_change() {
    require_root("pam_malformed_u2f_answers_are_refused_without_a_state_change");
    let mut s = Setup::builder("pam-u2f-faults").key_args(U2F_ONLY).start();
    let before = std::fs::read(s.state_path("daemon")).unwrap();
    for (fault, reason, detail) in [
        ("u2f-short-response", "device_error", "U2F message format"),
        ("u2f-wrong-status", "device_error", "0x9001"),
        ("u2f-bad-der-signature", "device_error", "not one DER ECDSA"),
        (
            "u2f-other-challenge",
            "bad_signature",
            "signature does not verify",
        ),
    ] {
        s.restart_key(None, &["--ctap1-only", "--fault", fault]);
        s.fx.log_lines();
        let r = s.auth("daemon");
        assert_eq!(r.result, PamResult::AuthErr, "{fault}: {r:?}");
        let line = s.fx.auth_line();
        println!("{fault}: {line}");
        assert_contains(&line, &[&format!("reason={reason} "), detail]);
        assert_eq!(
            std::fs::read(s.state_path("daemon")).unwrap(),
            before,
            "{fault} changed the state"
        );
    }
    // The same key without the fault still logs in: nothing was suspended or spent.
    s.restart_key(None, U2F_ONLY);
    assert_eq!(s.auth("daemon").result, PamResult::Success);
}

#[test]
#[ignore = "needs root and pamtester (writes /etc/pam.d): scripts/test runs it as root"]
fn pam_old_format_pam_u2f_line_is_imported_and_logs_in_through_ctap1() {
    require_root("pam_old_format_pam_u2f_line_is_imported_and_logs_in_through_ctap1");
    let fx = Fixture::new("pam-u2f-import");
    let key = start_key(fx.path(), &fx.path().join("key.state"), U2F_ONLY);
    let (handle, public_key) = old_format_registration(&key, RP_ID);
    let authfile = fx.path().join("u2f_mappings");
    std::fs::write(&authfile, format!("daemon:{handle},{public_key}\n")).unwrap();
    let config = fx.config("pam_ctap.toml", &key.uri(), "");
    let import = ctap_enroll(
        &config,
        &key.uri(),
        &[
            "import-pam-u2f",
            authfile.to_str().unwrap(),
            "--appid",
            RP_ID,
        ],
    );
    let out = text(&import);
    println!("{out}");
    assert!(import.status.success(), "{out}");
    let records = std::fs::read_to_string(fx.records_dir().join("daemon.toml")).unwrap();
    assert!(records.contains("protocol = \"u2f\""), "{records}");

    let service = ServiceFile::new(&observing_stack(&format!("config={}", config.display())));
    let r = pamtester(&service.name, "daemon", "", &[]);
    assert_eq!(r.result, PamResult::Success, "{r:?}");
    let line = fx.auth_line();
    println!("{line}");
    assert_contains(&line, &["auth ok: ", "credential=\"pam-u2f-1\""]);
}

#[test]
#[ignore = "needs root and pamtester (writes /etc/pam.d): scripts/test runs it as root"]
fn pam_u2f_key_without_a_touch_times_out_like_a_fido2_key() {
    require_root("pam_u2f_key_without_a_touch_times_out_like_a_fido2_key");
    let mut s = Setup::builder("pam-u2f-timeout")
        .key_args(U2F_ONLY)
        .module_args("timeout=2")
        .start();
    let before = std::fs::read(s.state_path("daemon")).unwrap();
    s.restart_key(None, &["--ctap1-only", "--presence", "deny"]);
    s.fx.log_lines();
    let r = s.auth("daemon");
    assert_eq!(r.result, PamResult::AuthErr, "{r:?}");
    assert!(
        r.elapsed < std::time::Duration::from_secs(4),
        "{:?}",
        r.elapsed
    );
    assert!(r.stderr.contains("Timed out"), "{r:?}");
    let line = s.fx.auth_line();
    println!("{line} ({:?})", r.elapsed);
    assert_contains(&line, &["reason=timeout "]);
    assert_eq!(std::fs::read(s.state_path("daemon")).unwrap(), before);
}
