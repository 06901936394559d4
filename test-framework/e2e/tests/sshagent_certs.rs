//! OpenSSH certificates for sk keys through ctap-sshagent (issue 15 item 5): a CA made with
//! `ssh-keygen -t ed25519` signs the sk public key (`ssh-keygen -s`), `ssh-add` of the key file
//! gives the agent the key and its `-cert.pub`, `ssh-add -L` lists both, `ssh-keygen -Y sign`
//! signs with either, and a real sshd that trusts only the CA (`TrustedUserCAKeys`, an empty
//! authorized_keys) accepts the login. A certificate for another key is refused when added.
#![allow(clippy::unwrap_used)]

mod sshagent_common;

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use base64::Engine;
use ctap_core::ssh::wire::put_string;
use ctap_core::ssh::{SkAlgorithm, SkKey};
use ctap_e2e::SoftToken;
use sshagent_common::*;

fn text(o: &Output) -> String {
    format!(
        "status {:?}\nstdout: {}\nstderr: {}",
        o.status,
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

fn run(prog: &str, args: &[&str]) -> Output {
    let o = Command::new(prog).args(args).output().unwrap();
    assert!(o.status.success(), "{prog} {args:?}: {}", text(&o));
    o
}

/// A CA key pair made by `ssh-keygen -t ed25519`; returns its private key path.
fn make_ca(dir: &Path) -> PathBuf {
    let ca = dir.join("ca");
    run(
        "ssh-keygen",
        &[
            "-q",
            "-t",
            "ed25519",
            "-N",
            "",
            "-C",
            "test-ca",
            "-f",
            ca.to_str().unwrap(),
        ],
    );
    ca
}

/// The key-handle file `dir/tag` (as `ssh-keygen -t ecdsa-sk` writes one) and `dir/tag.pub`.
fn key_file(dir: &Path, tag: &str, sk: &SkKey) -> PathBuf {
    let file = dir.join(tag);
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&file)
        .unwrap();
    f.write_all(sk.to_openssh_private().unwrap().as_bytes())
        .unwrap();
    std::fs::write(
        dir.join(format!("{tag}.pub")),
        format!("{}\n", sk.authorized_keys_line()),
    )
    .unwrap();
    file
}

/// `ssh-keygen -s ca -I id -n principal key.pub`: writes and returns `key-cert.pub`'s line.
fn sign_cert(ca: &Path, key: &Path, id: &str, principal: &str) -> String {
    let public = format!("{}.pub", key.display());
    run(
        "ssh-keygen",
        &[
            "-q",
            "-s",
            ca.to_str().unwrap(),
            "-I",
            id,
            "-n",
            principal,
            &public,
        ],
    );
    std::fs::read_to_string(format!("{}-cert.pub", key.display()))
        .unwrap()
        .trim()
        .to_string()
}

fn blob_of(line: &str) -> Vec<u8> {
    base64::engine::general_purpose::STANDARD
        .decode(line.split_whitespace().nth(1).unwrap())
        .unwrap()
}

/// `ssh-keygen -Y sign -f PUB` through the agent, then `-Y verify` against `signers`.
fn sign_and_verify(agent: &Agent, dir: &Path, public: &Path, signers: &str, tag: &str) {
    let data = dir.join(format!("{tag}.txt"));
    std::fs::write(&data, format!("message for {tag}\n")).unwrap();
    let sign = agent.run(
        "ssh-keygen",
        &[
            "-Y",
            "sign",
            "-f",
            public.to_str().unwrap(),
            "-n",
            "file",
            data.to_str().unwrap(),
        ],
    );
    assert!(
        sign.status.success(),
        "{tag} sign: {}\nagent: {}",
        text(&sign),
        agent.log_text()
    );
    let allowed = dir.join(format!("{tag}.signers"));
    std::fs::write(&allowed, signers).unwrap();
    let verify = Command::new("ssh-keygen")
        .args([
            "-Y",
            "verify",
            "-f",
            allowed.to_str().unwrap(),
            "-I",
            "root",
            "-n",
            "file",
            "-s",
        ])
        .arg(dir.join(format!("{tag}.txt.sig")))
        .stdin(std::fs::File::open(&data).unwrap())
        .output()
        .unwrap();
    assert!(verify.status.success(), "{tag} verify: {}", text(&verify));
}

#[test]
#[ignore = "needs OpenSSH (ssh-add, ssh-keygen): scripts/test runs it as root"]
fn ssh_add_of_a_key_with_its_certificate_lists_and_signs_with_both() {
    require("ssh-add");
    let dir = temp("certs-add");
    let key = SoftToken::start(dir.path(), &dir.path().join("state"), &[]);
    let records = enroll(
        &key,
        &[
            enrollment(SkAlgorithm::EcdsaP256, "cert-ecdsa"),
            enrollment(SkAlgorithm::Ed25519, "cert-ed25519"),
        ],
        None,
    );
    let ca = make_ca(dir.path());
    let ca_pub = std::fs::read_to_string(dir.path().join("ca.pub")).unwrap();
    // No credentials file: the keys and certificates reach the agent only through ssh-add.
    let agent = Agent::start(dir.path(), &key, &dir.path().join("none.toml"), &["-v"]);
    for (r, tag) in records.iter().zip(["id_ecdsa_sk", "id_ed25519_sk"]) {
        let sk = SkKey::from_record(r).unwrap();
        let file = key_file(dir.path(), tag, &sk);
        let cert = sign_cert(&ca, &file, &format!("{tag}-id"), "root");
        let cert_type = format!(
            "{}-cert-v01@openssh.com",
            sk.algorithm().ssh_name().trim_end_matches("@openssh.com")
        );
        assert!(cert.starts_with(&format!("{cert_type} ")), "{cert}");

        let add = agent.run("ssh-add", &[file.to_str().unwrap()]);
        assert!(
            add.status.success(),
            "ssh-add: {}\nagent: {}",
            text(&add),
            agent.log_text()
        );
        let said = String::from_utf8_lossy(&add.stderr);
        println!("ssh-add {tag}: {}", said.trim());
        assert!(said.contains("Certificate added:"), "{said}");

        // Both identities, the plain key first, as OpenSSH's agent lists them.
        let listed = String::from_utf8(agent.run("ssh-add", &["-L"]).stdout).unwrap();
        println!("ssh-add -L:\n{listed}");
        let lines: Vec<&str> = listed.lines().collect();
        let plain = lines
            .iter()
            .position(|l| *l == sk.authorized_keys_line())
            .unwrap_or_else(|| panic!("plain key not listed: {listed}"));
        let certified = lines
            .iter()
            .position(|l| l.starts_with(&format!("{cert_type} ")) && blob_of(l) == blob_of(&cert))
            .unwrap_or_else(|| {
                panic!(
                    "certificate not listed: {listed}\nagent: {}",
                    agent.log_text()
                )
            });
        assert!(plain < certified);
        assert!(
            agent.log_text().contains(&format!(
                "added {cert_type} certificate \"{tag}-id\" for {}",
                sk.comment
            )),
            "{}",
            agent.log_text()
        );

        // ssh-keygen -Y sign with the plain key, and with the certificate (the agent is asked
        // to sign for the certificate's blob; the signature carries the certificate and
        // verifies against the CA as a cert-authority signer).
        sign_and_verify(
            &agent,
            dir.path(),
            &dir.path().join(format!("{tag}.pub")),
            &format!("root {}\n", sk.authorized_keys_line()),
            &format!("{tag}-plain"),
        );
        sign_and_verify(
            &agent,
            dir.path(),
            &dir.path().join(format!("{tag}-cert.pub")),
            &format!("root cert-authority {}", ca_pub),
            &format!("{tag}-cert"),
        );
    }
    // ssh-add -d of the key file removes the key and its certificate.
    let d = agent.run(
        "ssh-add",
        &["-d", dir.path().join("id_ecdsa_sk").to_str().unwrap()],
    );
    assert!(d.status.success(), "ssh-add -d: {}", text(&d));
    let left = String::from_utf8(agent.run("ssh-add", &["-L"]).stdout).unwrap();
    assert_eq!(left.lines().count(), 2, "{left}");
    assert!(
        left.lines().all(|l| l.starts_with("sk-ssh-ed25519")),
        "{left}"
    );
}

#[test]
#[ignore = "needs root and OpenSSH sshd: scripts/test runs it as root"]
fn sshd_trusting_the_ca_accepts_the_certificate_through_the_agent() {
    require_sshd();
    let dir = temp("certs-sshd");
    let key = SoftToken::start(dir.path(), &dir.path().join("state"), &[]);
    let ca = make_ca(dir.path());
    let records = enroll(
        &key,
        &[
            enrollment(SkAlgorithm::EcdsaP256, "sshd-ecdsa"),
            enrollment(SkAlgorithm::Ed25519, "sshd-ed25519"),
        ],
        None,
    );
    for (r, tag) in records.iter().zip(["id_ecdsa_sk", "id_ed25519_sk"]) {
        let sk = SkKey::from_record(r).unwrap();
        let file = key_file(dir.path(), tag, &sk);
        sign_cert(&ca, &file, &format!("{tag}-login"), "root");
        // The credential is also in the agent's file: the agent serves the plain key from
        // there, and ssh-add brings the certificate.
        let creds = write_credentials(dir.path(), std::slice::from_ref(r));
        let agent = Agent::start(dir.path(), &key, &creds, &["-v"]);
        // An empty authorized_keys: only the CA can let the key in.
        let sshd = Sshd::start_with(
            dir.path(),
            "",
            &format!("TrustedUserCAKeys {}.pub\n", ca.display()),
        );
        let refused = sshd.login(&agent);
        assert!(
            !refused.status.success(),
            "logged in without the certificate: {}",
            text(&refused)
        );

        let add = agent.run("ssh-add", &[file.to_str().unwrap()]);
        assert!(
            add.status.success(),
            "ssh-add: {}\nagent: {}",
            text(&add),
            agent.log_text()
        );
        let out = sshd.login(&agent);
        assert!(
            out.status.success(),
            "{tag} login: {}\nagent: {}\nsshd: {}",
            text(&out),
            agent.log_text(),
            sshd.log_text()
        );
        let accepted = sshd
            .log_text()
            .lines()
            .find(|l| l.contains("Accepted publickey for root"))
            .unwrap_or_default()
            .to_string();
        println!("sshd: {accepted}");
        assert!(
            accepted.contains("-CERT") && accepted.contains(&format!("ID {tag}-login")),
            "{}",
            sshd.log_text()
        );
        assert!(
            agent.log_text().contains("signed userauth for \"root\""),
            "{}",
            agent.log_text()
        );
    }
}

#[test]
#[ignore = "needs OpenSSH (ssh-keygen): scripts/test runs it as root"]
fn a_certificate_for_another_key_is_refused_when_added() {
    require("ssh-keygen");
    let dir = temp("certs-other");
    let key = SoftToken::start(dir.path(), &dir.path().join("state"), &[]);
    let records = enroll(
        &key,
        &[
            enrollment(SkAlgorithm::EcdsaP256, "mine"),
            enrollment(SkAlgorithm::EcdsaP256, "other"),
        ],
        None,
    );
    let (mine, other) = (
        SkKey::from_record(&records[0]).unwrap(),
        SkKey::from_record(&records[1]).unwrap(),
    );
    let ca = make_ca(dir.path());
    let mine_cert = sign_cert(&ca, &key_file(dir.path(), "mine", &mine), "mine-id", "root");
    let other_cert = sign_cert(
        &ca,
        &key_file(dir.path(), "other", &other),
        "other-id",
        "root",
    );
    let creds = write_credentials(dir.path(), &records[..1]);
    let agent = Agent::start(dir.path(), &key, &creds, &[]);

    // SSH2_AGENTC_ADD_IDENTITY as ssh-add sends a certificate (sshkey_private_serialize): the
    // certificate type, its blob, then the application, flags, key handle and reserved field
    // of the key file, and the comment. `ssh-add` itself checks that a -cert.pub matches its
    // key file; the agent does not rely on its client.
    let add = |cert: &str, handle_of: &SkKey| {
        let mut m = vec![17u8];
        put_string(&mut m, cert.split(' ').next().unwrap().as_bytes());
        put_string(&mut m, &blob_of(cert));
        put_string(&mut m, handle_of.application.as_bytes());
        m.push(handle_of.flags);
        put_string(&mut m, &handle_of.key_handle);
        put_string(&mut m, b"");
        put_string(&mut m, b"from a raw client");
        agent.client().call(&m)
    };
    assert_eq!(add(&other_cert, &mine), [FAILURE]);
    let log = agent.log_text();
    println!("agent: {}", log.trim());
    assert!(
        log.contains(&format!(
            "add refused: certificate \"other-id\" certifies {}, but its key handle is that of {} (mine)",
            other.fingerprint(),
            mine.fingerprint()
        )),
        "{log}"
    );
    let listed = agent.client().identities();
    assert_eq!(listed.len(), 1, "only the file key");
    assert_eq!(listed[0].0, mine.public_blob());

    // The right certificate with the same key handle is taken, listed and signs.
    assert_eq!(add(&mine_cert, &mine), [SUCCESS], "{}", agent.log_text());
    let listed = agent.client().identities();
    assert_eq!(listed.len(), 2);
    assert_eq!(listed[1].0, blob_of(&mine_cert));
    let sig = agent.client().sign(&blob_of(&mine_cert), b"data to sign");
    assert_eq!(sig[0], 14, "SIGN_RESPONSE: {}", agent.log_text());

    // A broken certificate is refused too, and the agent keeps serving.
    let mut broken = blob_of(&mine_cert);
    broken.truncate(broken.len() - 5);
    let mut m = vec![17u8];
    put_string(&mut m, b"sk-ecdsa-sha2-nistp256-cert-v01@openssh.com");
    put_string(&mut m, &broken);
    assert_eq!(agent.client().call(&m), [FAILURE]);
    assert_eq!(agent.client().identities().len(), 2);
}

/// `ctap-enroll export-ssh` prints what a directory keeps in `sshPublicKey` (one value per
/// line, `type base64 comment`) and what `sss_ssh_authorizedkeys` hands to sshd through
/// `AuthorizedKeysCommand`: here a command that prints the exported lines, and an empty
/// authorized_keys.
#[test]
#[ignore = "needs root and OpenSSH sshd: scripts/test runs it as root"]
fn export_ssh_lines_serve_as_authorized_keys_command_output() {
    require_sshd();
    let dir = temp("certs-export");
    let key = SoftToken::start(dir.path(), &dir.path().join("state"), &[]);
    let creds = dir.path().join(".config/ctap/credentials.toml");
    let enroll_cli = |args: &[&str]| {
        let o = Command::new(ctap_e2e::bin("ctap-enroll"))
            .arg("--device")
            .arg(key.uri())
            .args(args)
            .arg("--credentials")
            .arg(&creds)
            .env("HOME", dir.path())
            .stdin(std::process::Stdio::null())
            .output()
            .unwrap();
        assert!(o.status.success(), "ctap-enroll {args:?}: {}", text(&o));
        String::from_utf8(o.stdout).unwrap()
    };
    enroll_cli(&["ssh", "--name", "fleet-ecdsa"]);
    enroll_cli(&["ssh", "--name", "fleet-ed25519", "-t", "ed25519-sk"]);
    let exported = enroll_cli(&["export-ssh"]);
    println!("export-ssh:\n{exported}");
    let lines: Vec<&str> = exported.lines().collect();
    assert_eq!(lines.len(), 2, "{exported}");
    for (line, (kind, name)) in lines.iter().zip([
        ("sk-ecdsa-sha2-nistp256@openssh.com", "fleet-ecdsa"),
        ("sk-ssh-ed25519@openssh.com", "fleet-ed25519"),
    ]) {
        let fields: Vec<&str> = line.split(' ').collect();
        assert_eq!(fields.len(), 3, "{line}");
        assert_eq!((fields[0], fields[2]), (kind, name));
        assert!(fields[1].starts_with("AAAA"), "{line}");
    }

    // The values, as an LDAP sshPublicKey attribute would hold them, printed by the command.
    let values = dir.path().join("sshPublicKey.values");
    std::fs::write(&values, &exported).unwrap();
    let command = script(
        dir.path(),
        "authorized-keys-command",
        &format!("cat {}", values.display()),
    );
    let sshd = Sshd::start_with(
        dir.path(),
        "",
        &format!(
            "AuthorizedKeysCommand {} %u\nAuthorizedKeysCommandUser root\n",
            command.display()
        ),
    );
    let agent = Agent::start(dir.path(), &key, &creds, &["-v"]);
    let out = sshd.login(&agent);
    assert!(
        out.status.success(),
        "login: {}\nagent: {}\nsshd: {}",
        text(&out),
        agent.log_text(),
        sshd.log_text()
    );
    let accepted = sshd
        .log_text()
        .lines()
        .find(|l| l.contains("Accepted publickey for root"))
        .unwrap_or_default()
        .to_string();
    println!("sshd: {accepted}");
    assert!(accepted.contains("ECDSA-SK"), "{}", sshd.log_text());
}

/// A credential enrolled with `ctap-enroll ssh` and no key file: `export-ssh --name
/// --write-key-file` writes one, the CA signs its .pub, and `ssh-add` of it brings the
/// certificate to an agent that serves the key from the credentials file.
#[test]
#[ignore = "needs OpenSSH (ssh-add, ssh-keygen): scripts/test runs it as root"]
fn export_ssh_writes_the_key_file_a_certificate_is_added_with() {
    require("ssh-add");
    let dir = temp("certs-keyfile");
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
            .stdin(std::process::Stdio::null())
            .output()
            .unwrap()
    };
    let enrolled = enroll_cli(&["ssh", "--name", "laptop"]);
    assert!(enrolled.status.success(), "{}", text(&enrolled));
    let line = String::from_utf8(enrolled.stdout)
        .unwrap()
        .trim()
        .to_string();

    let file = dir.path().join("id_laptop");
    let path = file.to_str().unwrap();
    let out = enroll_cli(&["export-ssh", "--name", "laptop", "--write-key-file", path]);
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), line);
    assert_eq!(
        std::fs::read_to_string(format!("{path}.pub"))
            .unwrap()
            .trim(),
        line
    );
    // Never overwritten; an unknown name and a key file without --name are refused.
    assert!(
        !enroll_cli(&["export-ssh", "--name", "laptop", "--write-key-file", path])
            .status
            .success()
    );
    let unknown = enroll_cli(&["export-ssh", "--name", "desktop"]);
    assert!(!unknown.status.success());
    assert!(
        String::from_utf8_lossy(&unknown.stderr).contains("no SSH credential named \"desktop\""),
        "{}",
        text(&unknown)
    );
    assert!(!enroll_cli(&["export-ssh", "--write-key-file", "/tmp/x"])
        .status
        .success());

    let ca = make_ca(dir.path());
    let ca_pub = std::fs::read_to_string(dir.path().join("ca.pub")).unwrap();
    let cert = sign_cert(&ca, &file, "laptop-id", "root");
    let agent = Agent::start(dir.path(), &key, &creds, &[]);
    let add = agent.run("ssh-add", &[path]);
    assert!(
        add.status.success() && String::from_utf8_lossy(&add.stderr).contains("Certificate added:"),
        "{}\nagent: {}",
        text(&add),
        agent.log_text()
    );
    let listed = String::from_utf8(agent.run("ssh-add", &["-L"]).stdout).unwrap();
    println!("ssh-add -L:\n{listed}");
    let lines: Vec<&str> = listed.lines().collect();
    assert_eq!(
        lines.len(),
        2,
        "the key once, then its certificate: {listed}"
    );
    assert_eq!(lines[0], line);
    assert_eq!(blob_of(lines[1]), blob_of(&cert));
    sign_and_verify(
        &agent,
        dir.path(),
        &dir.path().join("id_laptop-cert.pub"),
        &format!("root cert-authority {ca_pub}"),
        "laptop-cert",
    );
}

/// The agent keeps a certificate that is not valid now (sshd judges it, as with OpenSSH's
/// agent) and says so in its log. `ssh-add` skips an expired one by itself, so a raw client
/// sends it here, as any other client may.
#[test]
#[ignore = "needs OpenSSH (ssh-keygen): scripts/test runs it as root"]
fn a_certificate_not_valid_now_is_kept_with_a_warning() {
    require("ssh-keygen");
    let dir = temp("certs-expired");
    let key = SoftToken::start(dir.path(), &dir.path().join("state"), &[]);
    let records = enroll(&key, &[enrollment(SkAlgorithm::Ed25519, "old")], None);
    let sk = SkKey::from_record(&records[0]).unwrap();
    let file = key_file(dir.path(), "old", &sk);
    let ca = make_ca(dir.path());
    let agent = Agent::start(dir.path(), &key, &dir.path().join("none.toml"), &[]);
    for (validity, id, warning) in [
        ("20200101:20210101", "expired-id", "warning: expired"),
        ("+3650d:+3660d", "future-id", "warning: not valid yet"),
    ] {
        let public = format!("{}.pub", file.display());
        run(
            "ssh-keygen",
            &[
                "-q",
                "-s",
                ca.to_str().unwrap(),
                "-I",
                id,
                "-n",
                "root",
                "-V",
                validity,
                &public,
            ],
        );
        let cert = std::fs::read_to_string(format!("{}-cert.pub", file.display())).unwrap();
        let mut m = vec![17u8];
        put_string(&mut m, b"sk-ssh-ed25519-cert-v01@openssh.com");
        put_string(&mut m, &blob_of(&cert));
        // An Ed25519 key repeats its public key after the certificate.
        put_string(&mut m, &sk.public_blob()[4 + 26 + 4..4 + 26 + 4 + 32]);
        put_string(&mut m, sk.application.as_bytes());
        m.push(sk.flags);
        put_string(&mut m, &sk.key_handle);
        put_string(&mut m, b"");
        put_string(&mut m, b"old");
        assert_eq!(agent.client().call(&m), [SUCCESS], "{}", agent.log_text());
        let log = agent.log_text();
        let line = log
            .lines()
            .find(|l| l.contains(&format!("certificate \"{id}\"")))
            .unwrap_or_else(|| panic!("{log}"));
        println!("{line}");
        assert!(line.contains(warning), "{line}");
        std::fs::remove_file(format!("{}-cert.pub", file.display())).unwrap();
    }
    assert_eq!(agent.client().identities().len(), 2);
}
