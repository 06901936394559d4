//! Shared by the sshagent_* tests: a virtual key with enrolled SSH credentials, a running
//! ctap-sshagent in front of it, and a raw agent-protocol client.
#![allow(dead_code)]

use std::io::{Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use ctap_core::flows::uv::Verification;
use ctap_core::ssh::{enroll_ssh_credential, SkAlgorithm, SshEnrollment};
use ctap_core::store::credential::{save_credential_file, CredentialFile, CredentialRecord};
use ctap_core::transport::ctap2::pin::{permission, Pin};
use ctap_core::transport::ctaphid::WaitDecision;
use ctap_e2e::{bin, SoftToken, TempDir};

pub const PIN: &str = "4321";

/// Whether a program from openssh-client/-server is installed.
pub fn have(prog: &str) -> bool {
    ["/usr/bin", "/usr/sbin", "/bin", "/sbin"]
        .iter()
        .any(|d| Path::new(d).join(prog).exists())
}

/// Tests that run OpenSSH programs are `#[ignore]`d with the reason (scripts/test runs them with
/// `--include-ignored`); run without the program, they fail rather than pass.
pub fn require(prog: &str) {
    assert!(
        have(prog),
        "{prog} is missing: apt-get install openssh-client openssh-server"
    );
}

pub fn enrollment(alg: SkAlgorithm, name: &str) -> SshEnrollment {
    SshEnrollment {
        application: "ssh:".into(),
        algorithm: alg,
        no_touch_required: false,
        verify_required: false,
        resident: false,
        user: String::new(),
        name: name.into(),
    }
}

/// Enroll SSH credentials on the key (with the PIN when one is set).
pub fn enroll(key: &SoftToken, what: &[SshEnrollment], pin: Option<&str>) -> Vec<CredentialRecord> {
    let mut c = key.connect();
    what.iter()
        .map(|e| {
            let verification = match pin {
                Some(p) => Verification::ByToken(
                    c.pin_token(
                        &Pin::new(p.into()).unwrap(),
                        permission::MAKE_CREDENTIAL,
                        Some(&e.application),
                    )
                    .unwrap(),
                ),
                None => Verification::NotRequired,
            };
            enroll_ssh_credential(&mut c, e, &verification, &mut |_| WaitDecision::Continue)
                .unwrap()
        })
        .collect()
}

/// `home/.config/ctap/credentials.toml` with these records; returns its path.
pub fn write_credentials(home: &Path, records: &[CredentialRecord]) -> PathBuf {
    std::fs::set_permissions(home, std::fs::Permissions::from_mode(0o755)).unwrap();
    let path = home.join(".config/ctap/credentials.toml");
    save_credential_file(
        &path,
        &CredentialFile {
            credentials: records.to_vec(),
            uid: None,
        },
        0o600,
    )
    .unwrap();
    path
}

pub fn script(dir: &Path, name: &str, body: &str) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, format!("#!/bin/sh\n{body}\n")).unwrap();
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
    p
}

/// A running `ctap-sshagent -D`.
pub struct Agent {
    child: Child,
    pub socket: PathBuf,
    pub log: PathBuf,
}

impl Agent {
    pub fn start(dir: &Path, key: &SoftToken, credentials: &Path, extra: &[&str]) -> Agent {
        Self::start_on(dir, &key.uri(), credentials, extra)
    }

    /// [`Agent::start`] with `--device URI` (several keys: `unix:/a,unix:/b`).
    pub fn start_on(dir: &Path, device: &str, credentials: &Path, extra: &[&str]) -> Agent {
        let socket = dir.join(format!("agent-{:08x}.sock", rand::random::<u32>()));
        let log = dir.join(format!("agent-{:08x}.log", rand::random::<u32>()));
        let child = Command::new(bin("ctap-sshagent"))
            .arg("-D")
            .arg("-a")
            .arg(&socket)
            .arg("--device")
            .arg(device)
            .arg("--credentials")
            .arg(credentials)
            .args(extra)
            .env_remove("SSH_ASKPASS")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(20);
        while UnixStream::connect(&socket).is_err() {
            assert!(
                Instant::now() < deadline,
                "ctap-sshagent did not start: {}",
                std::fs::read_to_string(&log).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        Agent { child, socket, log }
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Run an OpenSSH client program with SSH_AUTH_SOCK pointing at this agent.
    pub fn run(&self, prog: &str, args: &[&str]) -> Output {
        self.run_env(prog, args, &[])
    }

    pub fn run_env(&self, prog: &str, args: &[&str], env: &[(&str, &str)]) -> Output {
        let mut c = Command::new(prog);
        c.args(args)
            .env("SSH_AUTH_SOCK", &self.socket)
            .env_remove("SSH_ASKPASS")
            .stdin(Stdio::null());
        for (k, v) in env {
            c.env(k, v);
        }
        c.output().unwrap()
    }

    pub fn client(&self) -> Client {
        Client(UnixStream::connect(&self.socket).unwrap())
    }

    /// SIGTERM and wait; returns whether it exited within 5 s.
    pub fn terminate(&mut self) -> bool {
        let _ = Command::new("kill")
            .arg(self.child.id().to_string())
            .stderr(Stdio::null())
            .status();
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return true;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        false
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        if !self.terminate() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// A raw agent-protocol client.
pub struct Client(pub UnixStream);

impl Client {
    pub fn send_raw(&mut self, bytes: &[u8]) {
        self.0.write_all(bytes).unwrap();
    }

    /// Send one framed message and read the framed reply's body.
    pub fn call(&mut self, body: &[u8]) -> Vec<u8> {
        let mut m = (body.len() as u32).to_be_bytes().to_vec();
        m.extend_from_slice(body);
        self.send_raw(&m);
        self.read_reply()
    }

    pub fn read_reply(&mut self) -> Vec<u8> {
        self.0
            .set_read_timeout(Some(Duration::from_secs(60)))
            .unwrap();
        let mut len = [0u8; 4];
        self.0.read_exact(&mut len).unwrap();
        let mut body = vec![0u8; u32::from_be_bytes(len) as usize];
        self.0.read_exact(&mut body).unwrap();
        body
    }

    /// The identities the agent lists: (blob, comment).
    pub fn identities(&mut self) -> Vec<(Vec<u8>, String)> {
        let r = self.call(&[11]);
        assert_eq!(r[0], 12, "IDENTITIES_ANSWER");
        let mut rd = ctap_core::ssh::wire::Reader::new(&r[1..]);
        let n = rd.u32("n").unwrap();
        (0..n)
            .map(|_| {
                (
                    rd.string("blob").unwrap().to_vec(),
                    rd.text("comment").unwrap().to_string(),
                )
            })
            .collect()
    }

    pub fn sign(&mut self, blob: &[u8], data: &[u8]) -> Vec<u8> {
        let mut m = vec![13];
        ctap_core::ssh::wire::put_string(&mut m, blob);
        ctap_core::ssh::wire::put_string(&mut m, data);
        m.extend_from_slice(&0u32.to_be_bytes());
        self.call(&m)
    }
}

/// A real sshd on 127.0.0.1 with its own configuration, host key and authorized_keys.
pub struct Sshd {
    child: Child,
    pub port: u16,
    log: PathBuf,
}

impl Sshd {
    pub fn start(dir: &Path, authorized_keys: &str) -> Sshd {
        Self::start_with(dir, authorized_keys, "")
    }

    /// [`Sshd::start`] with more configuration lines (`TrustedUserCAKeys ...`).
    pub fn start_with(dir: &Path, authorized_keys: &str, extra_config: &str) -> Sshd {
        let _ = std::fs::create_dir_all("/run/sshd");
        let host_key = dir.join("host_ed25519");
        if !host_key.exists() {
            let k = Command::new("ssh-keygen")
                .args(["-q", "-t", "ed25519", "-N", "", "-f"])
                .arg(&host_key)
                .output()
                .unwrap();
            assert!(k.status.success(), "ssh-keygen: {k:?}");
        }
        let ak = dir.join("authorized_keys");
        std::fs::write(&ak, authorized_keys).unwrap();
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let cfg = dir.join("sshd_config");
        std::fs::write(
            &cfg,
            format!(
                "Port {port}\nListenAddress 127.0.0.1\nHostKey {}\nPidFile none\nUsePAM no\nStrictModes no\n\
                 AuthorizedKeysFile {}\nPubkeyAuthentication yes\nPasswordAuthentication no\n\
                 KbdInteractiveAuthentication no\nPermitRootLogin prohibit-password\nLogLevel VERBOSE\n\
                 {extra_config}",
                host_key.display(),
                ak.display()
            ),
        )
        .unwrap();
        let log = dir.join(format!("sshd-{port}.log"));
        let child = Command::new("/usr/sbin/sshd")
            .arg("-D")
            .arg("-e")
            .arg("-f")
            .arg(&cfg)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "sshd did not start: {}",
                std::fs::read_to_string(&log).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        Sshd { child, port, log }
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    pub fn login(&self, agent: &Agent) -> std::process::Output {
        let port = self.port.to_string();
        let sock = format!("IdentityAgent={}", agent.socket.display());
        let mut c = Command::new("ssh");
        c.args([
            "-F",
            "/dev/null",
            "-o",
            &sock,
            "-o",
            "BatchMode=yes",
            "-o",
            "StrictHostKeyChecking=no",
            "-o",
            "UserKnownHostsFile=/dev/null",
        ])
        .args([
            "-o",
            "PreferredAuthentications=publickey",
            "-o",
            "ConnectTimeout=20",
            "-p",
            &port,
            "root@127.0.0.1",
            "true",
        ])
        .env_remove("SSH_AUTH_SOCK")
        .stdin(Stdio::null());
        c.output().unwrap()
    }
}

impl Drop for Sshd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The sshd tests are `#[ignore]`d (sshd runs as root); run anyway without root or sshd, they
/// fail rather than pass.
pub fn require_sshd() {
    require("sshd");
    let root = Command::new("id")
        .arg("-u")
        .output()
        .map(|o| o.stdout == b"0\n")
        .unwrap_or(false);
    assert!(root, "the sshd tests run sshd as root");
}

pub const FAILURE: u8 = 5;
pub const SUCCESS: u8 = 6;

pub fn temp(tag: &str) -> TempDir {
    let d = TempDir::new(tag);
    std::fs::set_permissions(d.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    d
}
