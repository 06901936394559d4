//! Shared by the `pam_*` tests: a fixture with root's config, records and state in a temporary
//! directory, a syslog socket the module's lines can be read from, a unique /etc/pam.d service
//! pointing at the built module by absolute path (removed on drop), and pamtester runs.
//!
//! These tests drive real Linux-PAM, so they need root and pamtester: they are `#[ignore]`d and
//! scripts/test runs them as root with `--include-ignored`. The module is built into the same
//! target directory as ctap-softtoken: `cargo build -p pam_ctap` at the root, then
//! `cargo build -p ctap-softtoken` in test-framework/.
#![allow(clippy::unwrap_used, dead_code)]

use std::io::Write;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use ctap_core::flows::enroll::{enroll, enroll_u2f, EnrollRequest, UvPreference};
use ctap_core::flows::session::{open_keys, OpenedKey, Prompter};
use ctap_core::store::config::{PinPolicy, Policy};
use ctap_core::transport::ctap2::pin::Pin;
use ctap_e2e::{bin_dir, SoftToken, TempDir};

/// The RP ID tests enroll under.
pub const RP_ID: &str = "pam://ctap-e2e";

/// Start a virtual key and wait until it accepts connections: the harness waits for the socket
/// file, which appears at bind(), a moment before listen().
pub fn start_key(dir: &Path, state: &Path, extra: &[&str]) -> SoftToken {
    // SoftToken::start returns once the key accepts connections.
    SoftToken::start(dir, state, extra)
}

/// The PAM tests are `#[ignore]`d (they write /etc/pam.d and run pamtester as root): a plain
/// `cargo test` lists them as ignored, and scripts/test runs them as root with
/// `--include-ignored`. Run anyway without root or pamtester, they fail rather than pass.
pub fn require_root(test: &str) {
    let root = std::fs::metadata("/proc/self")
        .map(|m| m.uid() == 0)
        .unwrap_or(false);
    assert!(
        root,
        "{test}: needs root (writes /etc/pam.d and runs pamtester); run as root, as scripts/test does"
    );
    if Command::new("pamtester")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_err()
    {
        panic!("{test}: pamtester is not installed (apt-get install -y pamtester)");
    }
}

/// The built module, by absolute path.
pub fn module_path() -> PathBuf {
    let p = bin_dir().join("libpam_ctap.so");
    assert!(
        p.exists(),
        "{} is missing: run `cargo build -p pam_ctap` first",
        p.display()
    );
    std::fs::canonicalize(p).unwrap()
}

/// A PAM result as pamtester reports it (pam_strerror text).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PamResult {
    Success,
    AuthErr,
    /// Only the observing stack's pam_debug returns this: pam_ctap returned PAM_IGNORE.
    UserUnknown,
    SystemErr,
    Other,
}

#[derive(Debug)]
pub struct Run {
    pub result: PamResult,
    pub stdout: String,
    pub stderr: String,
    pub elapsed: Duration,
}

/// Rewrite of the pam.d line for pam_ctap: SUCCESS ends the stack with success, IGNORE falls
/// through to pam_debug returning PAM_USER_UNKNOWN, any failure dies with its own code. So the
/// three outcomes are three different pamtester results.
pub fn observing_stack(module_args: &str) -> String {
    format!(
        "auth [success=done ignore=ignore default=die] {} {module_args}\n\
         auth requisite pam_debug.so auth=user_unknown\n\
         account required pam_permit.so\n",
        module_path().display()
    )
}

/// A /etc/pam.d service file with a unique name, removed on drop.
pub struct ServiceFile {
    pub name: String,
    path: PathBuf,
}

impl ServiceFile {
    pub fn new(content: &str) -> Self {
        let name = format!("ctap-e2e-{:08x}", rand::random::<u32>());
        let path = Path::new("/etc/pam.d").join(&name);
        std::fs::write(&path, content).unwrap();
        ServiceFile { name, path }
    }
}

impl Drop for ServiceFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

/// Root's files for one test: config, records, state, and the syslog socket.
pub struct Fixture {
    pub dir: TempDir,
    pub log: UnixDatagram,
    pub log_path: PathBuf,
}

impl Fixture {
    pub fn new(tag: &str) -> Self {
        let dir = TempDir::new(tag);
        // The records and state directories exist, as the packages make them: the module
        // refuses a directory that does not.
        std::fs::create_dir(dir.path().join("users")).unwrap();
        std::fs::create_dir(dir.path().join("state")).unwrap();
        std::fs::set_permissions(
            dir.path().join("state"),
            std::fs::Permissions::from_mode(0o700),
        )
        .unwrap();
        let log_path = dir.path().join("log.sock");
        let log = UnixDatagram::bind(&log_path).unwrap();
        log.set_nonblocking(true).unwrap();
        Fixture { dir, log, log_path }
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    pub fn records_dir(&self) -> PathBuf {
        self.path().join("users")
    }

    pub fn state_dir(&self) -> PathBuf {
        self.path().join("state")
    }

    /// Write a root config naming `device` (a URI), with `extra` TOML lines; returns its path.
    pub fn config(&self, name: &str, device: &str, extra: &str) -> PathBuf {
        let path = self.path().join(name);
        let text = format!(
            "device = {device:?}\nrecords_dir = {:?}\nstate_dir = {:?}\nlog_socket = {:?}\ntimeout = 10\n{extra}\n",
            self.records_dir(),
            self.state_dir(),
            self.log_path,
        );
        std::fs::write(&path, text).unwrap();
        path
    }

    /// The policy the library would build from this fixture (for enrolling from the test).
    pub fn policy(&self, key: &SoftToken) -> Policy {
        Policy {
            device: key.uri().parse().unwrap(),
            timeout: 10,
            records_dir: self.records_dir(),
            state_dir: self.state_dir(),
            ..Policy::default()
        }
    }

    /// Enroll `key` for `user` through ctap-core, as `ctap-enroll` would. `user` must be an
    /// account NSS knows (the module resolves names): tests use system accounts such as
    /// `daemon`, `bin` and `sys`, whose records live only in this fixture's directory.
    pub fn enroll(&self, key: &SoftToken, user: &str, uv: UvPreference, pin: Option<&str>) {
        let p = self.policy(key);
        // A U2F-only key (`--ctap1-only`) enrolls through U2F, as `ctap-enroll enroll` does.
        let mut keys = open_keys(&p.device, p.touch_timeout(), None).unwrap();
        let req = EnrollRequest {
            user: account(user),
            name: "virtual".into(),
            rp_id: Some(RP_ID.into()),
            uv,
            pin_policy: PinPolicy::Prompt,
        };
        let mut prompter = Quiet(pin.map(str::to_string));
        match &mut keys[0] {
            OpenedKey::Fido2(k) => enroll(&p.store(), &req, k, &mut prompter),
            OpenedKey::U2f(k) => enroll_u2f(&p.store(), &req, k, &mut prompter),
        }
        .unwrap();
    }

    /// Everything the module logged so far (drains the socket).
    pub fn log_lines(&self) -> Vec<String> {
        let mut out = Vec::new();
        let mut buf = vec![0u8; 4096];
        let deadline = Instant::now() + Duration::from_millis(200);
        loop {
            match self.log.recv(&mut buf) {
                Ok(n) => out.push(String::from_utf8_lossy(&buf[..n]).into_owned()),
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                    if !out.is_empty() || Instant::now() > deadline {
                        return out;
                    }
                    std::thread::sleep(Duration::from_millis(10));
                }
                Err(e) => panic!("log socket: {e}"),
            }
        }
    }

    /// The one `auth …` line of the attempt just made; asserts there is exactly one.
    pub fn auth_line(&self) -> String {
        let lines: Vec<String> = self
            .log_lines()
            .into_iter()
            .filter(|l| l.contains("]: auth "))
            .collect();
        assert_eq!(lines.len(), 1, "expected one auth line, got {lines:#?}");
        let line = lines.into_iter().next().unwrap();
        assert!(line.starts_with("<8"), "LOG_AUTHPRIV priority: {line}");
        assert!(line.contains("pam_ctap["), "ident: {line}");
        line
    }
}

/// A prompter for enrollment from tests: gives the PIN if any, ignores messages.
struct Quiet(Option<String>);

impl Prompter for Quiet {
    fn touch_cue(&mut self, _: &str) {}
    fn request_pin(&mut self, _: &str) -> Option<Pin> {
        self.0.clone().map(|p| Pin::new(p).unwrap())
    }
    fn info(&mut self, _: &str) {}
}

/// `pamtester SERVICE USER authenticate`, with `stdin` as the conversation's answers and extra
/// environment variables.
pub fn pamtester(service: &str, user: &str, stdin: &str, env: &[(&str, &str)]) -> Run {
    pamtester_items(service, user, stdin, env, &[])
}

/// Run `pamtester -v SERVICE USER authenticate` and send it SIGINT (Ctrl-C) once `pending`
/// exists: root's `authpending_file`, which the module creates when it starts waiting for the
/// key, after its SIGINT handler is in place (never after a guessed delay). Returns pamtester's
/// output and the time from the signal to its end.
pub fn pamtester_interrupted(
    service: &str,
    user: &str,
    pending: &std::path::Path,
) -> (std::process::Output, Duration) {
    let child = Command::new("pamtester")
        .args(["-v", service, user, "authenticate"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    assert!(
        ctap_e2e::wait_for_path(pending, Duration::from_secs(10)),
        "the module never started waiting"
    );
    let sent = Instant::now();
    // SAFETY: kill(2) with our own child's pid; no memory is involved.
    let killed = unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGINT) };
    assert_eq!(killed, 0);
    let out = child.wait_with_output().unwrap();
    (out, sent.elapsed())
}

/// [`pamtester`] with PAM items set first (`-I rhost=host`, `-I tty=...`).
pub fn pamtester_items(
    service: &str,
    user: &str,
    stdin: &str,
    env: &[(&str, &str)],
    items: &[&str],
) -> Run {
    let start = Instant::now();
    let mut args: Vec<&str> = vec!["-v"];
    for item in items {
        args.extend(["-I", item]);
    }
    args.extend([service, user, "authenticate"]);
    let mut child = Command::new("pamtester")
        .args(&args)
        .envs(env.iter().copied())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(stdin.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    let all = format!("{stdout}{stderr}");
    let result = if all.contains("successfully authenticated") {
        assert!(out.status.success(), "{all}");
        PamResult::Success
    } else if all.contains("Authentication failure") {
        PamResult::AuthErr
    } else if all.contains("User not known to the underlying authentication module") {
        PamResult::UserUnknown
    } else if all.contains("System error") {
        PamResult::SystemErr
    } else {
        PamResult::Other
    };
    Run {
        result,
        stdout,
        stderr,
        elapsed: start.elapsed(),
    }
}

/// What a [`Setup`] is made of, by name: `Setup::builder("pam-ok").user("sys").module_args("timeout=2").start()`.
pub struct SetupBuilder<'a> {
    tag: &'a str,
    user: &'a str,
    key_args: &'a [&'a str],
    uv: UvPreference,
    pin: Option<&'a str>,
    config: &'a str,
    module_args: &'a str,
}

impl<'a> SetupBuilder<'a> {
    /// The user enrolled on the key (default `daemon`, an account NSS knows).
    pub fn user(mut self, user: &'a str) -> Self {
        self.user = user;
        self
    }
    /// ctap-softtoken's start options, e.g. `&["--pin", PIN]` (default none, presence auto).
    pub fn key_args(mut self, key_args: &'a [&'a str]) -> Self {
        self.key_args = key_args;
        self
    }
    /// The enrollment's UV choice (default discouraged).
    pub fn uv(mut self, uv: UvPreference) -> Self {
        self.uv = uv;
        self
    }
    /// The PIN the enrollment gives the key (default none).
    pub fn pin(mut self, pin: &'a str) -> Self {
        self.pin = Some(pin);
        self
    }
    /// Extra lines of root's pam_ctap.toml (default none).
    pub fn config(mut self, config: &'a str) -> Self {
        self.config = config;
        self
    }
    /// Module arguments after `config=...` in the service file (default none).
    pub fn module_args(mut self, module_args: &'a str) -> Self {
        self.module_args = module_args;
        self
    }

    /// Start the key, enroll the user, write the config and the service file.
    pub fn start(self) -> Setup {
        let fx = Fixture::new(self.tag);
        let key_state = fx.path().join("key.state");
        let key = start_key(fx.path(), &key_state, self.key_args);
        fx.enroll(&key, self.user, self.uv, self.pin);
        let config = fx.config("pam_ctap.toml", &key.uri(), self.config);
        let service = ServiceFile::new(&observing_stack(&format!(
            "config={} {}",
            config.display(),
            self.module_args
        )));
        Setup {
            fx,
            key: Some(key),
            key_state,
            config,
            service,
        }
    }
}

/// A key, a fixture and an enrolled user with a service file using `config`.
pub struct Setup {
    pub fx: Fixture,
    key: Option<SoftToken>,
    pub key_state: PathBuf,
    pub config: PathBuf,
    pub service: ServiceFile,
}

impl Setup {
    /// Start describing a setup; every field has a default (see [`SetupBuilder`]).
    pub fn builder(tag: &str) -> SetupBuilder<'_> {
        SetupBuilder {
            tag,
            user: "daemon",
            key_args: &[],
            uv: UvPreference::Discouraged,
            pin: None,
            config: "",
            module_args: "",
        }
    }

    pub fn state_path(&self, user: &str) -> PathBuf {
        let stem = ctap_core::store::account::file_stem(user).unwrap();
        self.fx.state_dir().join(format!("{stem}.toml"))
    }

    pub fn records_path(&self, user: &str) -> PathBuf {
        let stem = ctap_core::store::account::file_stem(user).unwrap();
        self.fx.records_dir().join(format!("{stem}.toml"))
    }

    pub fn auth_with(&self, user: &str, stdin: &str) -> Run {
        pamtester(&self.service.name, user, stdin, &[])
    }

    pub fn auth(&self, user: &str) -> Run {
        pamtester(&self.service.name, user, "", &[])
    }

    /// [`Setup::auth`] with PAM items (`rhost=host`).
    pub fn auth_items(&self, user: &str, items: &[&str]) -> Run {
        pamtester_items(&self.service.name, user, "", &[], items)
    }

    pub fn key(&self) -> &SoftToken {
        self.key.as_ref().unwrap()
    }

    /// Stop the key (its state file is free to copy).
    pub fn stop_key(&mut self) {
        if let Some(k) = self.key.take() {
            k.stop();
        }
    }

    /// Restart the key with other options, from `state` (default: its own state file: the
    /// same key; another file: a clone), and point the config at it.
    pub fn restart_key(&mut self, state: Option<&Path>, extra: &[&str]) {
        self.stop_key();
        let state = state
            .map(Path::to_path_buf)
            .unwrap_or_else(|| self.key_state.clone());
        self.key = Some(start_key(self.fx.path(), &state, extra));
        // Point the config at the restarted key's socket.
        let text = std::fs::read_to_string(&self.config).unwrap();
        let text = text
            .lines()
            .map(|l| {
                if l.starts_with("device =") {
                    format!("device = {:?}", self.key().uri())
                } else {
                    l.to_string()
                }
            })
            .collect::<Vec<_>>()
            .join("\n");
        std::fs::write(&self.config, text).unwrap();
    }
}

pub fn assert_contains(line: &str, parts: &[&str]) {
    for p in parts {
        assert!(line.contains(p), "{p:?} not in {line}");
    }
}

/// The account NSS knows by `name`.
pub fn account(name: &str) -> ctap_core::store::account::Account {
    use ctap_core::store::account::{Nss, UserResolver};
    Nss.by_name(name)
        .unwrap()
        .unwrap_or_else(|| panic!("no account {name:?}"))
}

/// A throwaway local user (with a home), deleted on drop.
pub struct TestUser {
    pub name: String,
    pub uid: u32,
    pub home: PathBuf,
}

impl TestUser {
    pub fn new() -> Self {
        let name = format!("ctapt{:06x}", rand::random::<u32>() & 0xff_ffff);
        Self::create(&name, &["--create-home", "--shell", "/bin/sh"])
    }

    /// A user named `name` (any spelling: `--badname` lets `@`, `\` and upper case through),
    /// without a home, with useradd's `extra` arguments (`-o -u UID` makes an alias).
    pub fn named(name: &str, extra: &[&str]) -> Self {
        let mut args = vec!["--badname", "--no-create-home", "--shell", "/bin/sh"];
        args.extend_from_slice(extra);
        Self::create(name, &args)
    }

    fn create(name: &str, args: &[&str]) -> Self {
        let st = Command::new("useradd")
            .args(args)
            .arg(name)
            .status()
            .unwrap();
        assert!(st.success(), "useradd {name}");
        let a = account(name);
        TestUser {
            name: name.to_string(),
            uid: a.uid(),
            home: a.home().to_path_buf(),
        }
    }

    /// A unique suffix for test user names.
    pub fn tag() -> String {
        format!("{:06x}", rand::random::<u32>() & 0xff_ffff)
    }
}

impl Drop for TestUser {
    fn drop(&mut self) {
        let _ = Command::new("userdel")
            .args(["--remove", &self.name])
            .stderr(Stdio::null())
            .status();
    }
}
