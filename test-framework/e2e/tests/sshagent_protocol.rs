//! ctap-sshagent's protocol handling with a raw client: malformed input, concurrency,
//! lock/unlock, constraints, web-origin keys, session binding, and the daemon's life.
#![allow(clippy::unwrap_used)]

mod sshagent_common;

use std::io::{Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixStream;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use ctap_core::ssh::wire::put_string;
use ctap_core::ssh::{flags, verify_sk_signature, SkAlgorithm, SkKey};
use ctap_core::transport::ctap2::cose::Algorithm;
use ctap_core::transport::ctap2::MakeCredentialRequest;
use ctap_core::transport::ctaphid::WaitDecision;
use ctap_e2e::{bin, wait_for_path, SoftToken};
use sshagent_common::*;

fn sshsig_blob() -> Vec<u8> {
    let mut s = b"SSHSIG".to_vec();
    put_string(&mut s, b"file");
    put_string(&mut s, b"");
    put_string(&mut s, b"sha512");
    put_string(&mut s, &[7; 64]);
    s
}

struct Setup {
    _key: SoftToken,
    agent: Agent,
    keys: Vec<SkKey>,
    dir: ctap_e2e::TempDir,
}

fn setup(tag: &str, extra: &[&str]) -> Setup {
    let dir = temp(tag);
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
    let agent = Agent::start(dir.path(), &key, &creds, extra);
    let keys = records
        .iter()
        .map(|r| SkKey::from_record(r).unwrap())
        .collect();
    Setup {
        _key: key,
        agent,
        keys,
        dir,
    }
}

#[test]
fn malformed_requests_get_failure_and_the_agent_keeps_serving() {
    let s = setup("badinput", &[]);
    let blob = s.keys[0].public_blob();
    let mut c = s.agent.client();

    // Unknown message type.
    assert_eq!(c.call(&[200]), [FAILURE]);
    // Empty message.
    assert_eq!(c.call(&[]), [FAILURE]);
    // Truncated sign request (no flags), at every cut.
    let mut sign = vec![13];
    put_string(&mut sign, &blob);
    put_string(&mut sign, b"data");
    sign.extend_from_slice(&0u32.to_be_bytes());
    for cut in 1..sign.len() {
        assert_eq!(c.call(&sign[..cut]), [FAILURE], "cut at {cut}");
    }
    // A string length larger than the message.
    let mut lying = vec![13];
    lying.extend_from_slice(&10_000u32.to_be_bytes());
    lying.extend_from_slice(&blob);
    assert_eq!(c.call(&lying), [FAILURE]);
    // Trailing garbage after a complete request.
    assert_eq!(c.call(&[11, 0]), [FAILURE]);
    // A sign request for a key the agent does not have.
    let mut other = blob.clone();
    let n = other.len();
    other[n - 1] ^= 1; // application "ssh:" -> another application
    assert_eq!(c.sign(&other, b"data")[0], FAILURE);
    // A truncated add-identity and an add of a non-sk key type.
    assert_eq!(c.call(&[17, 0, 0, 0, 3, b's', b's', b'h']), [FAILURE]);
    let mut rsa = vec![17];
    put_string(&mut rsa, b"ssh-rsa");
    put_string(&mut rsa, &[1, 0, 1]);
    assert_eq!(c.call(&rsa), [FAILURE]);
    // After all that, on the same connection: a real listing and a real signature.
    assert_eq!(c.identities().len(), 2);
    let sig = c.sign(&blob, &sshsig_blob());
    assert_eq!(sig[0], 14, "{}", s.agent.log_text());

    // The outer length says more than the client sends: after the message timeout the client
    // gets SSH_AGENT_FAILURE and is disconnected; other clients are unaffected meanwhile.
    let mut short = s.agent.client();
    short.send_raw(&[0, 0, 0, 100, 11]);
    assert_eq!(s.agent.client().identities().len(), 2);
    assert_eq!(short.read_reply(), [FAILURE]);
    let mut rest = Vec::new();
    assert_eq!(short.0.read_to_end(&mut rest).unwrap(), 0, "disconnected");
    // A length over the limit: failure and disconnect at once.
    let mut huge = s.agent.client();
    huge.send_raw(&[0x7f, 0xff, 0xff, 0xff]);
    assert_eq!(huge.read_reply(), [FAILURE]);
    // A client that sends half a length and hangs up.
    let mut half = UnixStream::connect(&s.agent.socket).unwrap();
    half.write_all(&[0, 0]).unwrap();
    half.shutdown(std::net::Shutdown::Write).unwrap();
    let _ = half.read_to_end(&mut Vec::new());
    assert_eq!(s.agent.client().identities().len(), 2);
}

#[test]
fn eight_concurrent_clients_are_served() {
    // -v: the per-signature lines counted below are logged only when verbose.
    let s = setup("concurrent", &["-v"]);
    let blobs: Vec<Vec<u8>> = s.keys.iter().map(SkKey::public_blob).collect();
    let threads: Vec<_> = (0..8)
        .map(|i| {
            let mut c = s.agent.client();
            let key = s.keys[i % 2].clone();
            let blob = blobs[i % 2].clone();
            std::thread::spawn(move || {
                for round in 0..3 {
                    assert_eq!(c.identities().len(), 2);
                    let data = format!("client {i} round {round}");
                    let data = {
                        let mut s = b"SSHSIG".to_vec();
                        put_string(&mut s, b"file");
                        put_string(&mut s, b"");
                        put_string(&mut s, b"sha512");
                        put_string(&mut s, data.as_bytes());
                        s
                    };
                    let reply = c.sign(&blob, &data);
                    assert_eq!(reply[0], 14, "client {i}");
                    let mut r = ctap_core::ssh::wire::Reader::new(&reply[1..]);
                    let sig = r.string("sig").unwrap();
                    verify_sk_signature(&key, &data, sig).unwrap();
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    assert_eq!(s.agent.log_text().matches("signed SSHSIG").count(), 24);
}

#[test]
fn lock_hides_keys_until_unlocked_with_the_same_passphrase() {
    let s = setup("lock", &[]);
    let mut c = s.agent.client();
    let blob = s.keys[0].public_blob();
    let lock = |k: u8, p: &[u8]| {
        let mut m = vec![k];
        put_string(&mut m, p);
        m
    };
    assert_eq!(
        c.call(&lock(22, b"")),
        [FAILURE],
        "empty passphrase refused"
    );
    assert_eq!(c.call(&lock(22, b"hunter2")), [SUCCESS]);
    assert_eq!(c.call(&lock(22, b"again")), [FAILURE], "already locked");
    assert_eq!(c.identities().len(), 0);
    assert_eq!(c.sign(&blob, &sshsig_blob())[0], FAILURE);
    assert_eq!(c.call(&[19]), [FAILURE], "remove-all refused while locked");
    assert_eq!(c.call(&lock(23, b"hunter3")), [FAILURE]);
    assert_eq!(c.identities().len(), 0);
    assert_eq!(c.call(&lock(23, b"hunter2")), [SUCCESS]);
    assert_eq!(c.identities().len(), 2);
    assert_eq!(c.sign(&blob, &sshsig_blob())[0], 14);
    assert_eq!(c.call(&lock(23, b"hunter2")), [FAILURE], "not locked");

    // ssh-add -x / -X, with the passphrase from SSH_ASKPASS.
    let pass = script(s.dir.path(), "pass", "echo hunter2");
    let env = [
        ("SSH_ASKPASS", pass.to_str().unwrap()),
        ("SSH_ASKPASS_REQUIRE", "force"),
        ("DISPLAY", ":0"),
    ];
    // OpenSSH's client is a dependency of this test file (CI installs it): missing, it fails.
    {
        require("ssh-add");
        let x = s.agent.run_env("ssh-add", &["-x"], &env);
        assert!(x.status.success(), "{:?}", x);
        assert!(
            !s.agent.run("ssh-add", &["-l"]).status.success(),
            "no identities while locked"
        );
        let x = s.agent.run_env("ssh-add", &["-X"], &env);
        assert!(x.status.success(), "{:?}", x);
        assert!(s.agent.run("ssh-add", &["-l"]).status.success());
    }
}

#[test]
#[ignore = "needs OpenSSH (ssh-add, ssh-keygen): scripts/test runs it as root"]
fn confirm_constraint_asks_through_askpass() {
    require("ssh-add");
    let dir = temp("confirm");
    let key = SoftToken::start(dir.path(), &dir.path().join("state"), &[]);
    let records = enroll(&key, &[enrollment(SkAlgorithm::Ed25519, "c")], None);
    let sk = SkKey::from_record(&records[0]).unwrap();
    let file = dir.path().join("id_ed25519_sk");
    std::fs::write(&file, sk.to_openssh_private().unwrap()).unwrap();
    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o600)).unwrap();
    let answers = dir.path().join("answer");
    let asked = dir.path().join("asked");
    let askpass = script(
        dir.path(),
        "confirm",
        &format!(
            "printf '%s|%s' \"$SSH_ASKPASS_PROMPT\" \"$1\" > {}; exit $(cat {})",
            asked.display(),
            answers.display()
        ),
    );
    let agent = Agent::start(
        dir.path(),
        &key,
        &dir.path().join("none.toml"),
        &["--askpass", askpass.to_str().unwrap()],
    );
    let add = agent.run("ssh-add", &["-c", file.to_str().unwrap()]);
    assert!(add.status.success(), "{:?}\n{}", add, agent.log_text());
    let blob = sk.public_blob();

    std::fs::write(&answers, "1").unwrap();
    assert_eq!(agent.client().sign(&blob, &sshsig_blob())[0], FAILURE);
    assert!(agent.log_text().contains("the user did not confirm"));
    let prompt = std::fs::read_to_string(&asked).unwrap();
    assert!(
        prompt.starts_with("confirm|Allow use of key c?"),
        "{prompt}"
    );

    std::fs::write(&answers, "0").unwrap();
    assert_eq!(agent.client().sign(&blob, &sshsig_blob())[0], 14);
}

#[test]
fn keys_with_a_web_application_sign_only_ssh_data() {
    let dir = temp("websafe");
    let key = SoftToken::start(dir.path(), &dir.path().join("state"), &[]);
    let mut c = key.connect();
    let made = c
        .make_credential(
            &MakeCredentialRequest {
                client_data_hash: [1; 32],
                rp_id: "example.com".into(),
                rp_name: None,
                user_id: vec![0; 32],
                user_name: "u".into(),
                user_display_name: None,
                algorithms: vec![Algorithm::Es256],
                exclude_list: vec![],
                resident_key: false,
                user_verification: false,
                hmac_secret: false,
                cred_protect: None,
            },
            None,
            &mut |_| WaitDecision::Continue,
        )
        .unwrap();
    let cred = made.credential().clone();
    let web = SkKey::new(
        cred.public_key,
        "example.com".into(),
        flags::USER_PRESENCE_REQD,
        cred.credential_id,
        "web".into(),
    )
    .unwrap();
    drop(c);
    let agent = Agent::start(dir.path(), &key, &dir.path().join("none.toml"), &[]);
    let mut add = vec![17];
    add.extend_from_slice(&web.private_fields());
    put_string(&mut add, b"web");
    let mut client = agent.client();
    assert_eq!(client.call(&add), [SUCCESS]);
    let blob = web.public_blob();
    // A 32-byte web challenge: refused.
    assert_eq!(client.sign(&blob, &[0x42; 32])[0], FAILURE);
    assert!(
        agent.log_text().contains("not ssh:"),
        "{}",
        agent.log_text()
    );
    // SSHSIG data: signed.
    let reply = client.sign(&blob, &sshsig_blob());
    assert_eq!(reply[0], 14, "{}", agent.log_text());
}

#[test]
fn session_bind_is_checked_and_query_lists_it() {
    let s = setup("bind", &[]);
    let mut c = s.agent.client();
    let mut q = vec![27];
    put_string(&mut q, b"query");
    let reply = c.call(&q);
    assert_eq!(reply[0], 29);
    assert!(reply.windows(24).any(|w| w == b"session-bind@openssh.com"));

    // A bind whose host-key signature does not verify: extension failure.
    let hk = ed25519_dalek::SigningKey::from_bytes(&[5; 32]);
    let mut host_blob = Vec::new();
    put_string(&mut host_blob, b"ssh-ed25519");
    put_string(&mut host_blob, hk.verifying_key().as_bytes());
    let sid = [9u8; 32];
    let sig_over = |msg: &[u8]| {
        use ed25519_dalek::Signer;
        let mut s = Vec::new();
        put_string(&mut s, b"ssh-ed25519");
        put_string(&mut s, &hk.sign(msg).to_bytes());
        s
    };
    let bind = |sig: &[u8]| {
        let mut m = vec![27];
        put_string(&mut m, b"session-bind@openssh.com");
        put_string(&mut m, &host_blob);
        put_string(&mut m, &sid);
        put_string(&mut m, sig);
        m.push(0);
        m
    };
    assert_eq!(c.call(&bind(&sig_over(b"another session"))), [28]);
    assert_eq!(c.call(&bind(&sig_over(&sid))), [SUCCESS]);
    // Bound for authentication: a second binding is refused.
    assert_eq!(c.call(&bind(&sig_over(&sid))), [28]);

    // A userauth request for another session on this connection: refused; for this one: signed.
    let blob = s.keys[1].public_blob();
    let userauth = |session: &[u8]| {
        let mut d = Vec::new();
        put_string(&mut d, session);
        d.push(50);
        put_string(&mut d, b"root");
        put_string(&mut d, b"ssh-connection");
        put_string(&mut d, b"publickey");
        d.push(1);
        put_string(&mut d, b"sk-ssh-ed25519@openssh.com");
        put_string(&mut d, &blob);
        d
    };
    assert_eq!(c.sign(&blob, &userauth(&[8; 32]))[0], FAILURE);
    assert_eq!(c.sign(&blob, &userauth(&sid))[0], 14);
    // Unknown extensions: failure.
    let mut unknown = vec![27];
    put_string(&mut unknown, b"nonsense@example.com");
    assert_eq!(c.call(&unknown), [FAILURE]);
}

#[test]
fn sigterm_removes_the_socket_and_daemon_mode_prints_the_environment() {
    let s = setup("life", &[]);
    let mut agent = s.agent;
    let socket = agent.socket.clone();
    let mode = std::fs::metadata(&socket).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    assert!(agent.terminate(), "exits on SIGTERM");
    assert!(!socket.exists(), "socket removed");

    // Without -D: the foreground process prints the environment and returns; the agent lives on
    // in the background at the default path under XDG_RUNTIME_DIR.
    let runtime = s.dir.path().join("run");
    std::fs::create_dir(&runtime).unwrap();
    std::fs::set_permissions(&runtime, std::fs::Permissions::from_mode(0o700)).unwrap();
    let out = Command::new(bin("ctap-sshagent"))
        .args(["--device", "unix:/nonexistent", "--credentials"])
        .arg(s.dir.path().join(".config/ctap/credentials.toml"))
        .env("XDG_RUNTIME_DIR", &runtime)
        .stdin(Stdio::null())
        .stderr(Stdio::null())
        .output()
        .unwrap();
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    let sock = runtime.join("ctap-sshagent.sock");
    assert!(
        text.starts_with(&format!(
            "SSH_AUTH_SOCK={}; export SSH_AUTH_SOCK;\nSSH_AGENT_PID=",
            sock.display()
        )),
        "{text}"
    );
    let pid: u32 = text
        .split("SSH_AGENT_PID=")
        .nth(1)
        .unwrap()
        .split(';')
        .next()
        .unwrap()
        .parse()
        .unwrap();
    let listed = Command::new("ssh-add")
        .arg("-L")
        .env("SSH_AUTH_SOCK", &sock)
        .output();
    if let Ok(l) = listed {
        assert_eq!(String::from_utf8_lossy(&l.stdout).lines().count(), 2);
    }
    // A second agent on the same socket refuses to start.
    let second = Command::new(bin("ctap-sshagent"))
        .args(["-D", "--device", "auto"])
        .env("XDG_RUNTIME_DIR", &runtime)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(!second.status.success());
    assert!(String::from_utf8_lossy(&second.stderr).contains("another agent is listening"));
    Command::new("kill").arg(pid.to_string()).status().unwrap();
    let deadline = Instant::now() + Duration::from_secs(5);
    while sock.exists() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(
        !sock.exists(),
        "background agent removed its socket on SIGTERM"
    );
}

#[test]
fn socket_activation_and_the_shell_snippet() {
    let activate = std::path::Path::new("/usr/bin/systemd-socket-activate");
    let s = setup("activate", &[]);
    let runtime = s.dir.path().join("rt");
    std::fs::create_dir(&runtime).unwrap();
    let sock = runtime.join("ctap-sshagent.sock");
    // The shell snippet exports the socket when it exists.
    let _listener = std::os::unix::net::UnixListener::bind(&sock).unwrap();
    let snippet = concat!(env!("CARGO_MANIFEST_DIR"), "/../../config/ctap-sshagent.sh");
    let out = Command::new("sh")
        .arg("-c")
        .arg(format!(". {snippet}; echo \"$SSH_AUTH_SOCK\""))
        .env("XDG_RUNTIME_DIR", &runtime)
        .env_remove("SSH_AUTH_SOCK")
        .output()
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        sock.to_str().unwrap()
    );
    drop(_listener);
    std::fs::remove_file(&sock).unwrap();

    assert!(
        activate.exists(),
        "systemd-socket-activate (package systemd) is missing"
    );
    // systemd-socket-activate listens and starts the agent with LISTEN_FDS on first use, as the
    // user unit does.
    let device = format!("unix:{}", s._key.socket.display());
    let mut child = Command::new(activate)
        .arg("-l")
        .arg(&sock)
        .arg(bin("ctap-sshagent"))
        .args(["-D", "--device", &device, "--credentials"])
        .arg(s.dir.path().join(".config/ctap/credentials.toml"))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    assert!(
        wait_for_path(&sock, Duration::from_secs(10)),
        "systemd-socket-activate did not listen"
    );
    let mut c = Client(UnixStream::connect(&sock).unwrap());
    assert_eq!(c.identities().len(), 2);
    let _ = child.kill();
    let _ = child.wait();
    let mut err = String::new();
    let _ = child.stderr.take().unwrap().read_to_string(&mut err);
    assert!(
        err.contains("listening on the socket systemd passed"),
        "{err}"
    );
}

#[test]
fn the_agent_reopens_the_key_after_it_restarts() {
    let dir = temp("restart");
    let sock = dir.path().join("key.sock");
    let state = dir.path().join("state");
    let start = || SoftToken::start_on(&bin("ctap-softtoken"), &sock, &state, &[]);
    let mut token = start();
    let t = ctap_core::transport::device::UnixTransport::connect(&sock).unwrap();
    let mut c = ctap_core::transport::ctap2::Ctap2::new(
        ctap_core::transport::ctaphid::CtapHidChannel::open(t).unwrap(),
    )
    .unwrap();
    let record = ctap_core::ssh::enroll_ssh_credential(
        &mut c,
        &enrollment(SkAlgorithm::EcdsaP256, "r"),
        &ctap_core::flows::uv::Verification::NotRequired,
        &mut |_| WaitDecision::Continue,
    )
    .unwrap();
    drop(c);
    let creds = write_credentials(dir.path(), std::slice::from_ref(&record));
    let socket = dir.path().join("agent.sock");
    let mut agent = Command::new(bin("ctap-sshagent"))
        .arg("-D")
        .arg("-a")
        .arg(&socket)
        .arg("--device")
        .arg(format!("unix:{}", sock.display()))
        .arg("--credentials")
        .arg(&creds)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    while UnixStream::connect(&socket).is_err() {
        assert!(Instant::now() < deadline, "agent did not start");
        std::thread::sleep(Duration::from_millis(20));
    }
    let blob = SkKey::from_record(&record).unwrap().public_blob();
    let mut client = Client(UnixStream::connect(&socket).unwrap());
    assert_eq!(client.sign(&blob, &sshsig_blob())[0], 14);
    // The key goes away and comes back: the kept session is dead, the agent opens a new one.
    assert!(token.stop().success());
    token = start();
    assert_eq!(client.sign(&blob, &sshsig_blob())[0], 14);
    drop(token);
    let _ = agent.kill();
    let _ = agent.wait();
}

/// The agent keeps the parsed credentials file between requests (issue 12: re-reading it was a
/// tenth of a signature's cost), but any change to the file is seen at the next request: a new
/// enrollment appears, and a file made writable by others is refused again, without a restart.
#[test]
fn a_changed_credentials_file_is_read_again_and_checked_again() {
    let dir = temp("creds-cache");
    let key = SoftToken::start(dir.path(), &dir.path().join("key.state"), &[]);
    let records = enroll(
        &key,
        &[
            enrollment(SkAlgorithm::EcdsaP256, "one"),
            enrollment(SkAlgorithm::Ed25519, "two"),
        ],
        None,
    );
    let creds = write_credentials(dir.path(), &records[..1]);
    let agent = Agent::start(dir.path(), &key, &creds, &[]);
    let mut c = agent.client();
    let ids = c.identities();
    assert_eq!(ids.len(), 1);
    assert!(!c.sign(&ids[0].0, b"data").is_empty());
    assert_eq!(
        c.identities().len(),
        1,
        "an unchanged file is served from memory"
    );

    write_credentials(dir.path(), &records);
    assert_eq!(c.identities().len(), 2, "a new enrollment appears at once");

    std::fs::set_permissions(&creds, std::fs::Permissions::from_mode(0o666)).unwrap();
    assert_eq!(
        c.identities().len(),
        0,
        "a file others may write is refused again"
    );
    assert!(
        agent.log_text().contains("credentials not used"),
        "{}",
        agent.log_text()
    );
    std::fs::set_permissions(&creds, std::fs::Permissions::from_mode(0o600)).unwrap();
    assert_eq!(c.identities().len(), 2);
}
