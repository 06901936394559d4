//! Harness for end-to-end tests: runs the built binaries (ctap-softtoken first) in a temporary
//! directory and tears them down on drop.
//!
//! Binaries are found in `$CTAP_BIN_DIR`, else the workspace's `target/debug`; build them with
//! `cargo build --workspace --bins` in the root workspace (the shipped binaries) and in
//! test-framework/ (ctap-softtoken, the examples) before `cargo test`; scripts/test does.
#![allow(clippy::unwrap_used)]

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use ctap_core::transport::ctap2::Ctap2;
use ctap_core::transport::ctaphid::CtapHidChannel;
use ctap_core::transport::device::UnixTransport;

/// Where the workspace's binaries are.
pub fn bin_dir() -> PathBuf {
    if let Some(d) = std::env::var_os("CTAP_BIN_DIR") {
        return PathBuf::from(d);
    }
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target"));
    target.join("debug")
}

pub fn bin(name: &str) -> PathBuf {
    let p = bin_dir().join(name);
    assert!(
        p.exists(),
        "{} is missing: run `cargo build --workspace --bins` at the root and in test-framework/",
        p.display()
    );
    p
}

/// Where test directories are made: `ctap-e2e-tmp` in the target directory, not /tmp. The PAM
/// module trusts records, state and key sockets only if every directory above them is owned by
/// root (or the running user) and writable by no one else, as sshd's StrictModes; /tmp is
/// world-writable, so a fixture there would rightly be refused. The target directory's
/// ancestors are the workspace's, owned by whoever builds, and that is who runs the tests.
pub fn temp_base() -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target"));
    let base = target.join("ctap-e2e-tmp");
    std::fs::create_dir_all(&base).unwrap();
    // Whatever the umask, not group- or world-writable.
    std::fs::set_permissions(&base, std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::canonicalize(base).unwrap()
}

/// A temporary directory removed on drop. Its name is short on purpose: key sockets live in it
/// and a Unix socket path has at most 107 bytes (`sun_path`), wherever the checkout is.
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new(tag: &str) -> Self {
        let p = temp_base().join(format!(
            "{tag}-{}-{:08x}",
            std::process::id(),
            rand::random::<u32>()
        ));
        std::fs::create_dir_all(&p).unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
        TempDir(p)
    }
    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A running ctap-softtoken: the one launcher of the virtual key for Rust tests (the end-to-end
/// tests, the benchmarks' examples and ctap-softtoken's own tests). Shell scripts and the
/// python-fido2 tests use its twin, `scripts/softtoken`, which takes the same steps.
pub struct SoftToken {
    child: Child,
    pub socket: PathBuf,
    pub state: PathBuf,
}

impl SoftToken {
    /// Start a virtual key on `dir/key.sock` with state `state` and extra arguments such as
    /// `--presence deny` or `--fault corrupt-signature`.
    pub fn start(dir: &Path, state: &Path, extra: &[&str]) -> Self {
        Self::start_bin(&bin("ctap-softtoken"), dir, state, extra)
    }

    /// [`SoftToken::start`] with a given binary (ctap-softtoken's own tests pass
    /// `env!("CARGO_BIN_EXE_ctap-softtoken")`, the build under test).
    pub fn start_bin(program: &Path, dir: &Path, state: &Path, extra: &[&str]) -> Self {
        let socket = dir.join(format!("key-{:08x}.sock", rand::random::<u32>()));
        Self::start_on(program, &socket, state, extra)
    }

    /// [`SoftToken::start_bin`] on a given socket path: a key restarted on the same socket, or a
    /// stale socket file left where the new one goes.
    pub fn start_on(program: &Path, socket: &Path, state: &Path, extra: &[&str]) -> Self {
        let socket = socket.to_path_buf();
        assert!(
            socket.as_os_str().len() < 108,
            "socket path {} is {} bytes, longer than a Unix socket path may be (107): \
             use a shorter checkout or CARGO_TARGET_DIR",
            socket.display(),
            socket.as_os_str().len()
        );
        let child = Command::new(program)
            .arg("serve")
            .arg("--socket")
            .arg(&socket)
            .arg("--state")
            .arg(state)
            .args(extra)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        let t = SoftToken {
            child,
            socket,
            state: state.to_path_buf(),
        };
        // The socket file appears at bind(), a moment before listen(): wait for a connection
        // to be accepted, not just for the file.
        let mut t = t;
        let deadline = Instant::now() + Duration::from_secs(20);
        while std::os::unix::net::UnixStream::connect(&t.socket).is_err() {
            if let Ok(Some(status)) = t.child.try_wait() {
                panic!("ctap-softtoken exited before accepting connections: {status}");
            }
            assert!(
                Instant::now() < deadline,
                "ctap-softtoken did not start accepting connections"
            );
            std::thread::sleep(Duration::from_millis(10));
        }
        t
    }

    pub fn uri(&self) -> String {
        format!("unix:{}", self.socket.display())
    }

    /// Open a CTAP2 session to this key through the library.
    pub fn connect(&self) -> Ctap2<UnixTransport> {
        let t = UnixTransport::connect(&self.socket).unwrap();
        Ctap2::new(CtapHidChannel::open(t).unwrap()).unwrap()
    }

    /// Stop the server (SIGTERM) and wait, so its state file is free for the next one. The exit
    /// status says whether it shut down cleanly (SIGKILL after 5 s otherwise).
    pub fn stop(mut self) -> std::process::ExitStatus {
        self.terminate()
    }

    fn terminate(&mut self) -> std::process::ExitStatus {
        if let Ok(Some(status)) = self.child.try_wait() {
            return status;
        }
        let _ = Command::new("kill")
            .arg(self.child.id().to_string())
            .status();
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                return status;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        let _ = self.child.kill();
        self.child.wait().unwrap()
    }
}

impl Drop for SoftToken {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            self.terminate();
        }
    }
}

/// A recording relay between clients and a key: it listens on its own socket, forwards every
/// 64-byte report both ways unchanged, and records each request message a client starts (its
/// CTAPHID command and, for CBOR, the CTAP2 command byte). Tests count round trips with it
/// (issue 12: the fewest exchanges per login), as a USB sniffer would on a real key.
pub struct Relay {
    pub socket: PathBuf,
    requests: std::sync::Arc<std::sync::Mutex<Vec<(std::time::Instant, String)>>>,
}

impl Relay {
    /// Relay `key` on `dir/relay-<random>.sock`.
    pub fn start(dir: &Path, key: &SoftToken) -> Self {
        use std::io::{Read, Write};
        use std::os::unix::net::{UnixListener, UnixStream};
        use std::sync::{Arc, Mutex};
        let socket = dir.join(format!("relay-{:08x}.sock", rand::random::<u32>()));
        let listener = UnixListener::bind(&socket).unwrap();
        let requests = Arc::new(Mutex::new(Vec::new()));
        let (log, target) = (requests.clone(), key.socket.clone());
        std::thread::spawn(move || {
            for client in listener.incoming() {
                let Ok(mut client) = client else { return };
                let Ok(mut device) = UnixStream::connect(&target) else {
                    return;
                };
                let (mut client_r, mut device_w) =
                    (client.try_clone().unwrap(), device.try_clone().unwrap());
                let log = log.clone();
                std::thread::spawn(move || {
                    let mut report = [0u8; 64];
                    while client_r.read_exact(&mut report).is_ok() {
                        if report[4] & 0x80 != 0 {
                            let cmd = report[4] & 0x7f;
                            let name = match cmd {
                                0x06 => "INIT".to_string(),
                                0x10 => format!("CBOR {:#04x}", report[7]),
                                0x11 => "CANCEL".to_string(),
                                0x03 => "MSG".to_string(),
                                other => format!("HID {other:#04x}"),
                            };
                            log.lock().unwrap().push((std::time::Instant::now(), name));
                        }
                        if device_w.write_all(&report).is_err() {
                            return;
                        }
                    }
                    let _ = device_w.shutdown(std::net::Shutdown::Write);
                });
                std::thread::spawn(move || {
                    let mut buf = [0u8; 4096];
                    while let Ok(n) = device.read(&mut buf) {
                        if n == 0 || client.write_all(&buf[..n]).is_err() {
                            return;
                        }
                    }
                });
            }
        });
        Relay { socket, requests }
    }

    pub fn uri(&self) -> String {
        format!("unix:{}", self.socket.display())
    }

    /// The requests recorded so far, emptied.
    pub fn take(&self) -> Vec<String> {
        self.take_timed().into_iter().map(|(_, r)| r).collect()
    }

    /// [`Relay::take`] with the time each request's first report reached the relay.
    pub fn take_timed(&self) -> Vec<(std::time::Instant, String)> {
        std::mem::take(&mut self.requests.lock().unwrap())
    }
}

/// Wait up to `within` for `path` to exist (a socket a daemon binds, a file a child process
/// writes); whether it does. Callers assert on the answer with their own message.
pub fn wait_for_path(path: &Path, within: Duration) -> bool {
    let deadline = Instant::now() + within;
    while !path.exists() {
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    true
}

/// The CANCEL lines a key started with `--cancel-log PATH` recorded, waiting up to 5 s for the
/// first: the key appends its line after reading the CTAPHID_CANCEL, which may be after the
/// client that sent it has already exited, so reading the file at once races the key.
/// Returns what the file holds (empty if nothing came in time).
pub fn wait_for_cancels(log: &Path) -> String {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let text = std::fs::read_to_string(log).unwrap_or_default();
        if text.lines().any(|l| l.starts_with("cancel ")) || Instant::now() >= deadline {
            return text;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}
