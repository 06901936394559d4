//! Resident SSH keys (issue 16, item 7): `ctap-enroll ssh --resident` stores one on the key;
//! `ctap-enroll load-resident-ssh` lists it through credentialManagement (PIN) into a fresh
//! credentials file (a new machine); a fresh agent serving that file signs with it.
#![allow(clippy::unwrap_used)]

mod sshagent_common;

use std::process::{Command, Stdio};

use ctap_core::ssh::wire::put_string;
use ctap_core::ssh::SkKey;
use ctap_core::store::credential::load_credential_file;
use ctap_core::store::fs::Ownership;
use ctap_e2e::{bin, SoftToken};
use sshagent_common::*;

fn enroll_cmd(key: &SoftToken, args: &[&str], input: &str) -> (bool, String) {
    use std::io::Write;
    let mut child = Command::new(bin("ctap-enroll"))
        .arg("--device")
        .arg(key.uri())
        .arg("--pin-stdin")
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
}

#[test]
#[ignore = "needs OpenSSH (ssh-keygen): scripts/test runs it as root"]
fn resident_keys_are_created_listed_and_used_by_a_fresh_agent() {
    require("ssh-keygen");
    let dir = temp("resident");
    let key = SoftToken::start(dir.path(), &dir.path().join("state"), &["--pin", PIN]);
    let first = dir.path().join("first.toml");
    let fresh = dir.path().join("fresh.toml");
    let pin = format!("{PIN}\n");
    let (ok, made) = enroll_cmd(
        &key,
        &[
            "ssh",
            "--resident",
            "-t",
            "ed25519-sk",
            "--name",
            "mine",
            "--credentials",
            first.to_str().unwrap(),
        ],
        &pin,
    );
    assert!(ok, "{made}");
    // A non-resident one is not listed by the key.
    let (ok, other) = enroll_cmd(
        &key,
        &["ssh", "--credentials", first.to_str().unwrap()],
        &pin,
    );
    assert!(ok, "{other}");

    let (ok, loaded) = enroll_cmd(
        &key,
        &[
            "load-resident-ssh",
            "--credentials",
            fresh.to_str().unwrap(),
        ],
        &pin,
    );
    println!("load-resident-ssh: {loaded}");
    assert!(ok, "{loaded}");
    assert!(loaded.contains("1 resident SSH key(s) loaded"), "{loaded}");
    let owner = Ownership { uid: nix_uid() };
    let a = load_credential_file(&first, owner).unwrap();
    let b = load_credential_file(&fresh, owner).unwrap();
    assert_eq!(b.credentials.len(), 1);
    let original = &a.credentials[a.find("mine").unwrap()];
    assert_eq!(b.credentials[0].credential_id, original.credential_id);
    assert_eq!(b.credentials[0].public_key, original.public_key);
    // Loading again adds nothing.
    let (ok, again) = enroll_cmd(
        &key,
        &[
            "load-resident-ssh",
            "--credentials",
            fresh.to_str().unwrap(),
        ],
        &pin,
    );
    assert!(
        ok && again.contains("0 resident SSH key(s) loaded"),
        "{again}"
    );
    // A wrong PIN loads nothing.
    let (ok, wrong) = enroll_cmd(
        &key,
        &[
            "load-resident-ssh",
            "--credentials",
            fresh.to_str().unwrap(),
        ],
        "99999999\n",
    );
    assert!(!ok, "{wrong}");

    // A fresh agent on the fresh file signs with it.
    let agent = Agent::start(dir.path(), &key, &fresh, &[]);
    let sk = SkKey::from_record(&b.credentials[0]).unwrap();
    let mut data = b"SSHSIG".to_vec();
    put_string(&mut data, b"file");
    put_string(&mut data, b"");
    put_string(&mut data, b"sha512");
    put_string(&mut data, &[7; 64]);
    let r = agent.client().sign(&sk.public_blob(), &data);
    assert_eq!(r[0], 14, "{}", agent.log_text());
    // And through OpenSSH: ssh-keygen -Y sign with the loaded key's public half, then verify.
    let pubfile = dir.path().join("loaded.pub");
    std::fs::write(&pubfile, format!("{}\n", sk.authorized_keys_line())).unwrap();
    let msg = dir.path().join("msg");
    std::fs::write(&msg, b"hello").unwrap();
    let signed = agent.run(
        "ssh-keygen",
        &[
            "-Y",
            "sign",
            "-f",
            pubfile.to_str().unwrap(),
            "-n",
            "file",
            msg.to_str().unwrap(),
        ],
    );
    assert!(signed.status.success(), "{signed:?}\n{}", agent.log_text());
    let allowed = dir.path().join("allowed");
    std::fs::write(&allowed, format!("me {}\n", sk.authorized_keys_line())).unwrap();
    let verify = Command::new("ssh-keygen")
        .args(["-Y", "verify", "-f"])
        .arg(&allowed)
        .args(["-I", "me", "-n", "file", "-s"])
        .arg(dir.path().join("msg.sig"))
        .stdin(std::fs::File::open(&msg).unwrap())
        .output()
        .unwrap();
    println!(
        "ssh-keygen -Y verify: {}",
        String::from_utf8_lossy(&verify.stdout).trim()
    );
    assert!(verify.status.success(), "{verify:?}");
}

fn nix_uid() -> u32 {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata("/proc/self").unwrap().uid()
}

/// verify-required survives the trip through the key: `ssh --resident --verify-required`
/// makes the credential with credProtect level 3 (as OpenSSH does), and `load-resident-ssh`
/// on a new machine reads the level back, so the loaded key still demands the PIN. A resident
/// key made without it loads without it.
#[test]
#[ignore = "needs OpenSSH (ssh-keygen): scripts/test runs it as root"]
fn a_resident_key_keeps_verify_required_through_the_key() {
    use ctap_core::store::credential::UvRequirement;
    require("ssh-keygen");
    let dir = temp("resident-uv");
    let key = SoftToken::start(dir.path(), &dir.path().join("state"), &["--pin", PIN]);
    let first = dir.path().join("first.toml");
    let fresh = dir.path().join("fresh.toml");
    let pin = format!("{PIN}\n");
    // Two applications: a key keeps one resident credential per application and user.
    for (name, app, extra) in [
        ("strict", "ssh:strict", Some("--verify-required")),
        ("plain", "ssh:plain", None),
    ] {
        let mut args = vec![
            "ssh",
            "--resident",
            "-t",
            "ecdsa-sk",
            "--application",
            app,
            "--name",
            name,
            "--credentials",
            first.to_str().unwrap(),
        ];
        args.extend(extra);
        let (ok, made) = enroll_cmd(&key, &args, &pin);
        assert!(ok, "{made}");
    }
    let (ok, loaded) = enroll_cmd(
        &key,
        &[
            "load-resident-ssh",
            "--credentials",
            fresh.to_str().unwrap(),
        ],
        &pin,
    );
    assert!(
        ok && loaded.contains("2 resident SSH key(s) loaded"),
        "{loaded}"
    );
    let owner = Ownership { uid: nix_uid() };
    let a = load_credential_file(&first, owner).unwrap();
    let b = load_credential_file(&fresh, owner).unwrap();
    for name in ["strict", "plain"] {
        let original = &a.credentials[a.find(name).unwrap()];
        let back = b
            .credentials
            .iter()
            .find(|c| c.credential_id == original.credential_id)
            .unwrap();
        println!(
            "{name}: enrolled {:?}, loaded {:?}",
            original.user_verification, back.user_verification
        );
        assert_eq!(back.user_verification, original.user_verification, "{name}");
    }
    assert_eq!(
        a.credentials[a.find("strict").unwrap()].user_verification,
        UvRequirement::Required
    );
}
