//! ctap-sshagent against real OpenSSH: ssh-add, ssh-keygen -Y sign/verify and sshd, with
//! ctap-softtoken as the security key. Needs the openssh-client and openssh-server packages;
//! the sshd tests run sshd as root on 127.0.0.1.
#![allow(clippy::unwrap_used)]

mod sshagent_common;

use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use ctap_core::ssh::{export_ssh_lines, SkAlgorithm, SkKey};
use ctap_core::store::credential::CredentialFile;
use ctap_e2e::{wait_for_path, SoftToken};
use sshagent_common::*;

fn text(o: &std::process::Output) -> String {
    format!(
        "status {:?}\nstdout: {}\nstderr: {}",
        o.status,
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

#[test]
#[ignore = "needs OpenSSH (ssh-add, ssh-keygen): scripts/test runs it as root"]
fn ssh_add_lists_the_enrolled_keys_as_export_ssh_prints_them() {
    require("ssh-add");
    let dir = temp("sshadd");
    let key = SoftToken::start(dir.path(), &dir.path().join("state"), &[]);
    let records = enroll(
        &key,
        &[
            enrollment(SkAlgorithm::EcdsaP256, "laptop-ecdsa"),
            enrollment(SkAlgorithm::Ed25519, "laptop-ed25519"),
        ],
        None,
    );
    let creds = write_credentials(dir.path(), &records);
    let agent = Agent::start(dir.path(), &key, &creds, &[]);

    let out = agent.run("ssh-add", &["-L"]);
    assert!(out.status.success(), "{}", text(&out));
    let listed: Vec<String> = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(str::to_string)
        .collect();
    let exported = export_ssh_lines(&CredentialFile {
        credentials: records,
        uid: None,
    })
    .unwrap();
    assert_eq!(listed, exported);
    assert!(exported[0].starts_with("sk-ecdsa-sha2-nistp256@openssh.com "));
    assert!(exported[1].starts_with("sk-ssh-ed25519@openssh.com "));

    // ssh-add -l fingerprints agree with ssh-keygen's of the exported lines.
    let pubs = dir.path().join("keys.pub");
    std::fs::write(&pubs, exported.join("\n") + "\n").unwrap();
    let kg = Command::new("ssh-keygen")
        .arg("-l")
        .arg("-f")
        .arg(&pubs)
        .output()
        .unwrap();
    let fps = |o: &[u8]| {
        String::from_utf8_lossy(o)
            .lines()
            .map(|l| l.split_whitespace().nth(1).unwrap_or("").to_string())
            .collect::<Vec<_>>()
    };
    assert_eq!(fps(&agent.run("ssh-add", &["-l"]).stdout), fps(&kg.stdout));
}

/// `ssh-keygen -Y sign` through the agent, `ssh-keygen -Y verify` of the result.
fn sign_and_verify(
    dir: &Path,
    agent: &Agent,
    line: &str,
    tag: &str,
) -> (std::process::Output, std::process::Output) {
    let pubkey = dir.join(format!("{tag}.pub"));
    std::fs::write(&pubkey, format!("{line}\n")).unwrap();
    let data = dir.join(format!("{tag}.txt"));
    std::fs::write(&data, format!("message for {tag}\n")).unwrap();
    let _ = std::fs::remove_file(dir.join(format!("{tag}.txt.sig")));
    let sign = agent.run(
        "ssh-keygen",
        &[
            "-Y",
            "sign",
            "-f",
            pubkey.to_str().unwrap(),
            "-n",
            "file",
            data.to_str().unwrap(),
        ],
    );
    let signers = dir.join(format!("{tag}.signers"));
    std::fs::write(&signers, format!("tester {line}\n")).unwrap();
    let verify = Command::new("ssh-keygen")
        .args([
            "-Y",
            "verify",
            "-f",
            signers.to_str().unwrap(),
            "-I",
            "tester",
            "-n",
            "file",
            "-s",
        ])
        .arg(dir.join(format!("{tag}.txt.sig")))
        .stdin(std::fs::File::open(&data).unwrap())
        .output()
        .unwrap();
    (sign, verify)
}

#[test]
#[ignore = "needs OpenSSH (ssh-add, ssh-keygen): scripts/test runs it as root"]
fn ssh_keygen_signatures_made_through_the_agent_verify() {
    require("ssh-keygen");
    let dir = temp("sshsig");
    let key = SoftToken::start(dir.path(), &dir.path().join("state"), &[]);
    let records = enroll(
        &key,
        &[
            enrollment(SkAlgorithm::EcdsaP256, "e"),
            enrollment(SkAlgorithm::Ed25519, "d"),
        ],
        None,
    );
    let creds = write_credentials(dir.path(), &records);
    let agent = Agent::start(dir.path(), &key, &creds, &["-v"]);
    for (r, tag) in records.iter().zip(["ecdsa-sk", "ed25519-sk"]) {
        let line = SkKey::from_record(r).unwrap().authorized_keys_line();
        let (sign, verify) = sign_and_verify(dir.path(), &agent, &line, tag);
        assert!(
            sign.status.success(),
            "{tag} sign: {}\nagent: {}",
            text(&sign),
            agent.log_text()
        );
        assert!(verify.status.success(), "{tag} verify: {}", text(&verify));
        assert!(
            String::from_utf8_lossy(&verify.stdout).contains("Good \"file\" signature for tester"),
            "{}",
            text(&verify)
        );
    }
    assert!(
        agent.log_text().contains("Touch your security key"),
        "touch cue logged: {}",
        agent.log_text()
    );
}

#[test]
#[ignore = "needs OpenSSH (ssh-add, ssh-keygen): scripts/test runs it as root"]
fn notify_command_runs_while_waiting_for_the_touch() {
    require("ssh-keygen");
    let dir = temp("notify");
    let key = SoftToken::start(dir.path(), &dir.path().join("state"), &[]);
    let records = enroll(&key, &[enrollment(SkAlgorithm::Ed25519, "n")], None);
    let creds = write_credentials(dir.path(), &records);
    let marker = dir.path().join("notified");
    // Written whole, then renamed: the test never reads a half-written file.
    let cmd = format!(
        "printf '%s' \"$1\" > {m}.tmp && mv {m}.tmp {m}",
        m = marker.display()
    );
    let agent = Agent::start(dir.path(), &key, &creds, &["--notify", &cmd]);
    let line = SkKey::from_record(&records[0])
        .unwrap()
        .authorized_keys_line();
    let (sign, _) = sign_and_verify(dir.path(), &agent, &line, "n");
    assert!(sign.status.success(), "{}", text(&sign));
    wait_for_path(&marker, Duration::from_secs(5));
    assert!(std::fs::read_to_string(&marker)
        .unwrap()
        .starts_with("Touch your security key"));
}

#[test]
#[ignore = "needs OpenSSH (ssh-add, ssh-keygen): scripts/test runs it as root"]
fn ssh_add_of_a_written_key_file_adds_a_key_that_signs() {
    require("ssh-add");
    let dir = temp("keyfile");
    let key = SoftToken::start(dir.path(), &dir.path().join("state"), &[]);
    let records = enroll(
        &key,
        &[
            enrollment(SkAlgorithm::EcdsaP256, "file-ecdsa"),
            enrollment(SkAlgorithm::Ed25519, "file-ed25519"),
        ],
        None,
    );
    // No credentials file: the keys reach the agent only through ssh-add.
    let agent = Agent::start(dir.path(), &key, &dir.path().join("none.toml"), &[]);
    assert_eq!(agent.client().identities().len(), 0);
    for (r, tag) in records.iter().zip(["id_ecdsa_sk", "id_ed25519_sk"]) {
        let sk = SkKey::from_record(r).unwrap();
        let file = dir.path().join(tag);
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&file)
            .unwrap();
        f.write_all(sk.to_openssh_private().unwrap().as_bytes())
            .unwrap();
        drop(f);
        let y = Command::new("ssh-keygen")
            .arg("-y")
            .arg("-f")
            .arg(&file)
            .output()
            .unwrap();
        assert!(y.status.success(), "ssh-keygen -y: {}", text(&y));
        assert_eq!(
            String::from_utf8_lossy(&y.stdout).trim(),
            sk.authorized_keys_line()
        );

        let add = agent.run("ssh-add", &[file.to_str().unwrap()]);
        assert!(
            add.status.success(),
            "ssh-add: {}\nagent: {}",
            text(&add),
            agent.log_text()
        );
        let listed = String::from_utf8(agent.run("ssh-add", &["-L"]).stdout).unwrap();
        assert!(
            listed.lines().any(|l| l == sk.authorized_keys_line()),
            "{listed}"
        );
        let (sign, verify) = sign_and_verify(dir.path(), &agent, &sk.authorized_keys_line(), tag);
        assert!(
            sign.status.success(),
            "{}\nagent: {}",
            text(&sign),
            agent.log_text()
        );
        assert!(verify.status.success(), "{}", text(&verify));
    }
    let d = agent.run(
        "ssh-add",
        &["-d", dir.path().join("id_ecdsa_sk").to_str().unwrap()],
    );
    assert!(d.status.success(), "ssh-add -d: {}", text(&d));
    assert_eq!(agent.client().identities().len(), 1);
    let all = agent.run("ssh-add", &["-D"]);
    assert!(all.status.success(), "{}", text(&all));
    assert_eq!(agent.client().identities().len(), 0);
}

use std::os::unix::fs::OpenOptionsExt;

#[test]
#[ignore = "needs root and OpenSSH sshd: scripts/test runs it as root"]
fn sshd_accepts_logins_signed_through_the_agent() {
    require_sshd();
    let dir = temp("sshd");
    let key = SoftToken::start(dir.path(), &dir.path().join("state"), &[]);
    let records = enroll(
        &key,
        &[
            enrollment(SkAlgorithm::EcdsaP256, "e"),
            enrollment(SkAlgorithm::Ed25519, "d"),
        ],
        None,
    );
    for r in &records {
        let creds = write_credentials(dir.path(), std::slice::from_ref(r));
        let agent = Agent::start(dir.path(), &key, &creds, &["-v"]);
        let sshd = Sshd::start(
            dir.path(),
            &format!(
                "{}\n",
                SkKey::from_record(r).unwrap().authorized_keys_line()
            ),
        );
        let out = sshd.login(&agent);
        assert!(
            out.status.success(),
            "{:?} login: {}\nagent: {}\nsshd: {}",
            r.public_key.algorithm(),
            text(&out),
            agent.log_text(),
            sshd.log_text()
        );
        assert!(
            agent
                .log_text()
                .contains("connection bound to a session (authentication)"),
            "session-bind recorded: {}",
            agent.log_text()
        );
        assert!(
            agent.log_text().contains("signed userauth for \"root\""),
            "{}",
            agent.log_text()
        );
    }
}

#[test]
#[ignore = "needs root and OpenSSH sshd: scripts/test runs it as root"]
fn sshd_refuses_when_presence_is_denied() {
    require_sshd();
    let dir = temp("sshd-deny");
    let state = dir.path().join("state");
    let key = SoftToken::start(dir.path(), &state, &[]);
    let records = enroll(&key, &[enrollment(SkAlgorithm::EcdsaP256, "e")], None);
    key.stop();
    let key = SoftToken::start(dir.path(), &state, &["--presence", "deny"]);
    let creds = write_credentials(dir.path(), &records);
    let agent = Agent::start(dir.path(), &key, &creds, &["--timeout", "5"]);
    let sshd = Sshd::start(
        dir.path(),
        &format!(
            "{}\n",
            SkKey::from_record(&records[0])
                .unwrap()
                .authorized_keys_line()
        ),
    );
    let out = sshd.login(&agent);
    assert!(
        !out.status.success(),
        "login must fail without a touch: {}",
        text(&out)
    );
    assert!(
        agent.log_text().contains("sign request refused"),
        "{}",
        agent.log_text()
    );
    // The agent still serves.
    assert_eq!(agent.client().identities().len(), 1);
}

#[test]
#[ignore = "needs root and OpenSSH sshd: scripts/test runs it as root"]
fn verify_required_needs_the_pin_through_askpass() {
    require_sshd();
    let dir = temp("sshd-uv");
    let key = SoftToken::start(dir.path(), &dir.path().join("state"), &["--pin", PIN]);
    let mut uv = enrollment(SkAlgorithm::EcdsaP256, "uv");
    uv.verify_required = true;
    let records = enroll(
        &key,
        &[uv, enrollment(SkAlgorithm::Ed25519, "plain")],
        Some(PIN),
    );
    let uv_line = SkKey::from_record(&records[0])
        .unwrap()
        .authorized_keys_line();
    let plain_line = SkKey::from_record(&records[1])
        .unwrap()
        .authorized_keys_line();
    let askpass = script(dir.path(), "askpass", &format!("echo {PIN}"));
    let wrong = script(dir.path(), "wrong-askpass", "echo 0000");

    // verify-required key, PIN from askpass: accepted, and the signature carries UV.
    let creds = write_credentials(dir.path(), &records[..1]);
    let agent = Agent::start(
        dir.path(),
        &key,
        &creds,
        &["-v", "--askpass", askpass.to_str().unwrap()],
    );
    let sshd = Sshd::start(dir.path(), &format!("verify-required {uv_line}\n"));
    let out = sshd.login(&agent);
    assert!(
        out.status.success(),
        "{}\nagent: {}\nsshd: {}",
        text(&out),
        agent.log_text(),
        sshd.log_text()
    );
    assert!(
        agent.log_text().contains("flags 0x05"),
        "UP and UV set: {}",
        agent.log_text()
    );
    drop(agent);

    // Without askpass the agent cannot get the PIN: refused.
    let agent = Agent::start(dir.path(), &key, &creds, &[]);
    let out = sshd.login(&agent);
    assert!(!out.status.success(), "{}", text(&out));
    assert!(
        agent.log_text().contains("no askpass program"),
        "{}",
        agent.log_text()
    );
    drop(agent);

    // A wrong PIN: refused (once, not retried). The PIN went through the shared planner
    // (ctap_core::flows::uv) and the agent's askpass Prompter, which logs its report under -v.
    let agent = Agent::start(
        dir.path(),
        &key,
        &creds,
        &["-v", "--askpass", wrong.to_str().unwrap()],
    );
    let out = sshd.login(&agent);
    assert!(!out.status.success(), "{}", text(&out));
    assert!(
        agent.log_text().contains("wrong PIN"),
        "{}",
        agent.log_text()
    );
    assert!(
        agent.log_text().contains("Wrong PIN (") && agent.log_text().contains("tries left)"),
        "{}",
        agent.log_text()
    );
    drop(agent);
    drop(sshd);

    // A key enrolled without verification does not satisfy verify-required in authorized_keys.
    let creds = write_credentials(dir.path(), &records[1..]);
    let agent = Agent::start(
        dir.path(),
        &key,
        &creds,
        &["--askpass", askpass.to_str().unwrap()],
    );
    let sshd = Sshd::start(dir.path(), &format!("verify-required {plain_line}\n"));
    let out = sshd.login(&agent);
    assert!(!out.status.success(), "{}", text(&out));
    assert!(
        sshd.log_text()
            .contains("user verification requirement not met"),
        "{}",
        sshd.log_text()
    );
}

#[test]
#[ignore = "needs OpenSSH (ssh-add, ssh-keygen): scripts/test runs it as root"]
fn ctap_enroll_ssh_key_file_is_added_by_ssh_add_and_export_ssh_matches_ssh_add_l() {
    require("ssh-add");
    let dir = temp("enroll-cli");
    let key = SoftToken::start(dir.path(), &dir.path().join("state"), &[]);
    let creds = dir.path().join(".config/ctap/credentials.toml");
    let enroll_cli = |args: &[&str]| {
        Command::new(ctap_e2e::bin("ctap-enroll"))
            .arg("--device")
            .arg(key.uri())
            .args(args)
            .arg("--credentials")
            .arg(&creds)
            .env("HOME", dir.path())
            .stdin(Stdio::null())
            .output()
            .unwrap()
    };
    let keyfile = dir.path().join("id_ed25519_sk");
    let out = enroll_cli(&[
        "ssh",
        "--name",
        "cli-ed",
        "-t",
        "ed25519-sk",
        "--write-key-file",
        keyfile.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", text(&out));
    let printed = String::from_utf8(out.stdout).unwrap();
    assert!(
        printed.starts_with("sk-ssh-ed25519@openssh.com "),
        "{printed}"
    );
    let out = enroll_cli(&["ssh", "--name", "cli-ecdsa"]);
    assert!(out.status.success(), "{}", text(&out));
    // The same name twice is refused before the key is touched.
    assert!(!enroll_cli(&["ssh", "--name", "cli-ecdsa"]).status.success());

    let y = Command::new("ssh-keygen")
        .arg("-y")
        .arg("-f")
        .arg(&keyfile)
        .output()
        .unwrap();
    assert!(y.status.success(), "{}", text(&y));
    assert_eq!(String::from_utf8_lossy(&y.stdout).trim(), printed.trim());

    // The agent lists both from the credentials file, as export-ssh prints them.
    let agent = Agent::start(dir.path(), &key, &creds, &[]);
    let export = enroll_cli(&["export-ssh"]);
    assert!(export.status.success(), "{}", text(&export));
    let listed = agent.run("ssh-add", &["-L"]);
    assert_eq!(
        String::from_utf8_lossy(&listed.stdout),
        String::from_utf8_lossy(&export.stdout)
    );

    // ssh-add of the written key file into an agent without the credentials file, then sign.
    let bare = Agent::start(dir.path(), &key, &dir.path().join("none.toml"), &[]);
    let add = bare.run("ssh-add", &[keyfile.to_str().unwrap()]);
    assert!(add.status.success(), "{}", text(&add));
    let (sign, verify) = sign_and_verify(dir.path(), &bare, printed.trim(), "cli");
    assert!(sign.status.success(), "{}", text(&sign));
    assert!(verify.status.success(), "{}", text(&verify));
}

#[test]
#[ignore = "needs root and OpenSSH sshd: scripts/test runs it as root"]
fn no_touch_required_keys_sign_without_presence_where_sshd_allows_it() {
    require_sshd();
    let dir = temp("sshd-notouch");
    let state = dir.path().join("state");
    let key = SoftToken::start(dir.path(), &state, &[]);
    let mut e = enrollment(SkAlgorithm::Ed25519, "notouch");
    e.no_touch_required = true;
    let records = enroll(&key, &[e], None);
    key.stop();
    // A key that never sees a touch.
    let key = SoftToken::start(dir.path(), &state, &["--presence", "deny"]);
    let creds = write_credentials(dir.path(), &records);
    let agent = Agent::start(dir.path(), &key, &creds, &["-v", "--timeout", "5"]);
    let line = SkKey::from_record(&records[0])
        .unwrap()
        .authorized_keys_line();

    let sshd = Sshd::start(dir.path(), &format!("no-touch-required {line}\n"));
    let out = sshd.login(&agent);
    assert!(
        out.status.success(),
        "{}\nagent: {}\nsshd: {}",
        text(&out),
        agent.log_text(),
        sshd.log_text()
    );
    assert!(
        agent.log_text().contains("flags 0x00"),
        "no UP flag: {}",
        agent.log_text()
    );
    assert!(
        !agent.log_text().contains("Touch your security key"),
        "no touch cue"
    );
    drop(sshd);

    // Without the option in authorized_keys, sshd insists on user presence.
    let sshd = Sshd::start(dir.path(), &format!("{line}\n"));
    let out = sshd.login(&agent);
    assert!(!out.status.success(), "{}", text(&out));
    assert!(
        sshd.log_text().contains("user presence"),
        "{}",
        sshd.log_text()
    );
}

/// An `ssh-add -c` confirmation names what is being signed for (issue 16, item 8): the host
/// key of the session (its SHA256 fingerprint, as ssh-keygen -l prints it) and that the request
/// came from this machine's ssh, not through forwarding.
#[test]
#[ignore = "needs root and OpenSSH sshd: scripts/test runs it as root"]
fn confirmation_shows_the_host_key_and_where_the_request_came_from() {
    require_sshd();
    let dir = temp("sshd-confirm");
    let key = SoftToken::start(dir.path(), &dir.path().join("state"), &[]);
    let records = enroll(&key, &[enrollment(SkAlgorithm::Ed25519, "c")], None);
    let sk = SkKey::from_record(&records[0]).unwrap();
    let file = dir.path().join("id_ed25519_sk");
    std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&file)
        .unwrap()
        .write_all(sk.to_openssh_private().unwrap().as_bytes())
        .unwrap();
    let asked = dir.path().join("asked");
    let askpass = script(
        dir.path(),
        "confirm",
        &format!("printf '%s' \"$1\" > {}; exit 0", asked.display()),
    );
    let agent = Agent::start(
        dir.path(),
        &key,
        &dir.path().join("none.toml"),
        &["--askpass", askpass.to_str().unwrap()],
    );
    let add = agent.run("ssh-add", &["-c", file.to_str().unwrap()]);
    assert!(add.status.success(), "{}", text(&add));
    let sshd = Sshd::start(dir.path(), &format!("{}\n", sk.authorized_keys_line()));
    let out = sshd.login(&agent);
    assert!(
        out.status.success(),
        "{}\nagent: {}",
        text(&out),
        agent.log_text()
    );
    let prompt = std::fs::read_to_string(&asked).unwrap();
    println!("confirmation: {prompt}");
    let fp = Command::new("ssh-keygen")
        .arg("-lf")
        .arg(dir.path().join("host_ed25519.pub"))
        .output()
        .unwrap();
    let fp = String::from_utf8_lossy(&fp.stdout);
    let fp = fp.split_whitespace().nth(1).unwrap().to_string();
    assert!(prompt.starts_with("Allow use of key c?"), "{prompt}");
    assert!(prompt.contains("Log in as \"root\""), "{prompt}");
    assert!(
        prompt.contains(&format!("to the host with key {fp}.")),
        "{fp} in {prompt}"
    );
    assert!(prompt.contains("came from this machine's ssh"), "{prompt}");
}
