//! Shared by the proxy_* tests: the built `ctap-proxy` in front of ctap-softtoken, a recording
//! relay between them (every report the proxy sends to the key, so a test can show that a
//! refused request never reached it), and a raw report-level client.
#![allow(dead_code, clippy::unwrap_used)]

use std::io::{Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use ciborium::Value;
use ctap_core::transport::ctap2::cbor;
use ctap_e2e::bin;

pub const REPORT: usize = 64;
pub const BROADCAST: u32 = 0xFFFF_FFFF;
pub const CMD_MSG: u8 = 0x03;
pub const CMD_INIT: u8 = 0x06;
pub const CMD_CBOR: u8 = 0x10;
pub const CMD_CANCEL: u8 = 0x11;
pub const CMD_KEEPALIVE: u8 = 0x3B;
pub const CMD_ERROR: u8 = 0x3F;
pub const DENIED: u8 = 0x27;

/// A running `ctap-proxy serve`, its stderr in a file.
pub struct Proxy {
    child: Child,
    pub dir: PathBuf,
    pub log: PathBuf,
    pub policy: PathBuf,
}

impl Proxy {
    /// Serve `clients` (each `dir/NAME.sock`) for `device` under `policy` (TOML text).
    pub fn serve(dir: &Path, device: &str, policy: &str, clients: &[&str]) -> Proxy {
        let policy_path = write_policy(dir, policy);
        let log = dir.join(format!("proxy-{:08x}.log", rand::random::<u32>()));
        let mut cmd = Command::new(bin("ctap-proxy"));
        cmd.arg("serve")
            .arg("--device")
            .arg(device)
            .arg("--policy")
            .arg(&policy_path)
            .args(["--syslog-socket", "none"]);
        for c in clients {
            cmd.arg("--listen")
                .arg(format!("unix:{}", dir.join(format!("{c}.sock")).display()));
        }
        let child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap();
        let mut p = Proxy {
            child,
            dir: dir.to_path_buf(),
            log,
            policy: policy_path,
        };
        let deadline = Instant::now() + Duration::from_secs(20);
        for c in clients {
            while UnixStream::connect(p.socket(c)).is_err() {
                if let Ok(Some(status)) = p.child.try_wait() {
                    panic!("ctap-proxy exited: {status}\n{}", p.stderr());
                }
                assert!(Instant::now() < deadline, "ctap-proxy did not start");
                std::thread::sleep(Duration::from_millis(10));
            }
        }
        p
    }

    pub fn socket(&self, client: &str) -> PathBuf {
        self.dir.join(format!("{client}.sock"))
    }

    pub fn uri(&self, client: &str) -> String {
        format!("unix:{}", self.socket(client).display())
    }

    pub fn stderr(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// The audit lines so far.
    pub fn audit(&self) -> Vec<String> {
        self.stderr()
            .lines()
            .filter(|l| l.starts_with("ctap-proxy: audit "))
            .map(str::to_string)
            .collect()
    }

    /// Wait until an audit line holds every one of `parts`; returns it.
    #[track_caller]
    pub fn wait_audit(&self, parts: &[&str]) -> String {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(l) = self
                .audit()
                .into_iter()
                .find(|l| parts.iter().all(|p| l.contains(p)))
            {
                return l;
            }
            assert!(
                Instant::now() < deadline,
                "no audit line with {parts:?}:\n{}",
                self.stderr()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Write a policy file the proxy trusts (owned by whoever runs the tests, mode 0644).
pub fn write_policy(dir: &Path, text: &str) -> PathBuf {
    let path = dir.join(format!("policy-{:08x}.toml", rand::random::<u32>()));
    std::fs::write(&path, text).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
    path
}

/// A relay between the proxy and the key that keeps every byte the proxy sent to the key.
pub struct Recorder {
    pub socket: PathBuf,
    sent: Arc<Mutex<Vec<u8>>>,
}

impl Recorder {
    pub fn start(dir: &Path, key_socket: &Path) -> Recorder {
        let socket = dir.join(format!("rec-{:08x}.sock", rand::random::<u32>()));
        let listener = UnixListener::bind(&socket).unwrap();
        let sent = Arc::new(Mutex::new(Vec::new()));
        let key_socket = key_socket.to_path_buf();
        let log = Arc::clone(&sent);
        std::thread::spawn(move || {
            for client in listener.incoming() {
                let Ok(mut client) = client else { return };
                let mut key = UnixStream::connect(&key_socket).unwrap();
                let mut client_w = client.try_clone().unwrap();
                let mut key_r = key.try_clone().unwrap();
                std::thread::spawn(move || {
                    let mut buf = [0u8; 4096];
                    while let Ok(n) = key_r.read(&mut buf) {
                        if n == 0 || client_w.write_all(&buf[..n]).is_err() {
                            break;
                        }
                    }
                    let _ = client_w.shutdown(std::net::Shutdown::Both);
                });
                let log = Arc::clone(&log);
                std::thread::spawn(move || {
                    let mut buf = [0u8; 4096];
                    while let Ok(n) = client.read(&mut buf) {
                        if n == 0 {
                            break;
                        }
                        log.lock().unwrap().extend_from_slice(&buf[..n]);
                        if key.write_all(&buf[..n]).is_err() {
                            break;
                        }
                    }
                    let _ = key.shutdown(std::net::Shutdown::Both);
                });
            }
        });
        Recorder { socket, sent }
    }

    pub fn uri(&self) -> String {
        format!("unix:{}", self.socket.display())
    }

    /// Every message the proxy sent to the key: (CTAPHID command, first payload bytes).
    pub fn messages(&self) -> Vec<(u8, Vec<u8>)> {
        let bytes = self.sent.lock().unwrap().clone();
        bytes
            .chunks(REPORT)
            .filter(|r| r.len() == REPORT && r[4] & 0x80 != 0)
            .map(|r| (r[4] & 0x7F, r[7..].to_vec()))
            .collect()
    }

    /// The CTAP2 command bytes that reached the key, in order.
    pub fn cbor_commands(&self) -> Vec<u8> {
        self.messages()
            .into_iter()
            .filter(|(c, _)| *c == CMD_CBOR)
            .map(|(_, p)| p[0])
            .collect()
    }

    pub fn count(&self) -> usize {
        self.messages().len()
    }
}

/// A client at the level of reports.
pub struct Raw {
    pub stream: UnixStream,
    pub cid: u32,
}

impl Raw {
    /// Connect and allocate a channel.
    pub fn connect(socket: &Path) -> Raw {
        let stream = UnixStream::connect(socket).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(30)))
            .unwrap();
        let mut raw = Raw {
            stream,
            cid: BROADCAST,
        };
        let nonce: [u8; 8] = rand::random();
        raw.send(CMD_INIT, &nonce);
        let (cid, cmd, payload) = raw.recv();
        assert_eq!((cid, cmd), (BROADCAST, CMD_INIT));
        assert_eq!(&payload[..8], &nonce);
        raw.cid = u32::from_be_bytes(payload[8..12].try_into().unwrap());
        raw
    }

    pub fn report(&mut self, r: &[u8; REPORT]) {
        self.stream.write_all(r).unwrap();
    }

    /// Send one message on this client's channel, fragmented.
    pub fn send(&mut self, cmd: u8, payload: &[u8]) {
        for r in fragment(self.cid, cmd, payload) {
            self.report(&r);
        }
    }

    fn read_report(&mut self) -> [u8; REPORT] {
        let mut r = [0u8; REPORT];
        self.stream.read_exact(&mut r).unwrap();
        r
    }

    /// The next whole message (KEEPALIVEs skipped): (channel, command, payload).
    pub fn recv(&mut self) -> (u32, u8, Vec<u8>) {
        loop {
            let (cid, cmd, p) = self.recv_any();
            if cmd != CMD_KEEPALIVE {
                return (cid, cmd, p);
            }
        }
    }

    /// The next whole message, KEEPALIVE included.
    pub fn recv_any(&mut self) -> (u32, u8, Vec<u8>) {
        let first = self.read_report();
        let cid = u32::from_be_bytes(first[..4].try_into().unwrap());
        assert!(first[4] & 0x80 != 0, "expected an initialization packet");
        let len = usize::from(u16::from_be_bytes([first[5], first[6]]));
        let mut data = first[7..7 + len.min(57)].to_vec();
        while data.len() < len {
            let r = self.read_report();
            let take = (len - data.len()).min(59);
            data.extend_from_slice(&r[5..5 + take]);
        }
        (cid, first[4] & 0x7F, data)
    }

    /// A CTAP2 request; returns the status byte and the decoded body.
    pub fn cbor(&mut self, command: u8, params: Option<&Value>) -> (u8, Option<Value>) {
        let mut payload = vec![command];
        if let Some(p) = params {
            payload.extend(cbor::encode(p));
        }
        self.cbor_raw(&payload)
    }

    pub fn cbor_raw(&mut self, payload: &[u8]) -> (u8, Option<Value>) {
        self.send(CMD_CBOR, payload);
        let (_, cmd, resp) = self.recv();
        assert_eq!(cmd, CMD_CBOR, "answer {resp:?}");
        let body = (resp.len() > 1).then(|| cbor::decode_strict(&resp[1..]).unwrap());
        (resp[0], body)
    }
}

pub fn fragment(cid: u32, cmd: u8, payload: &[u8]) -> Vec<[u8; REPORT]> {
    let mut out = Vec::new();
    let mut first = [0u8; REPORT];
    first[..4].copy_from_slice(&cid.to_be_bytes());
    first[4] = 0x80 | cmd;
    first[5..7].copy_from_slice(&(payload.len() as u16).to_be_bytes());
    let n = payload.len().min(57);
    first[7..7 + n].copy_from_slice(&payload[..n]);
    out.push(first);
    for (seq, chunk) in payload[n..].chunks(59).enumerate() {
        let mut r = [0u8; REPORT];
        r[..4].copy_from_slice(&cid.to_be_bytes());
        r[4] = seq as u8;
        r[5..5 + chunk.len()].copy_from_slice(chunk);
        out.push(r);
    }
    out
}

fn int(i: i64) -> Value {
    Value::Integer(i.into())
}
fn text(s: &str) -> Value {
    Value::Text(s.into())
}

fn map(members: Vec<(Value, Value)>) -> Value {
    Value::Map(members)
}

/// makeCredential parameters (ES256, optional resident key).
pub fn make_credential(rp: &str, user_id: &[u8], rk: bool) -> Value {
    let mut m = vec![
        (int(1), Value::Bytes(vec![1; 32])),
        (int(2), map(vec![(text("id"), text(rp))])),
        (
            int(3),
            map(vec![
                (text("id"), Value::Bytes(user_id.to_vec())),
                (text("name"), text("user")),
            ]),
        ),
        (
            int(4),
            Value::Array(vec![map(vec![
                (text("alg"), int(-7)),
                (text("type"), text("public-key")),
            ])]),
        ),
    ];
    if rk {
        m.push((int(7), map(vec![(text("rk"), Value::Bool(true))])));
    }
    map(m)
}

/// getAssertion parameters.
pub fn get_assertion(rp: &str, allow: &[Vec<u8>]) -> Value {
    let mut m = vec![(int(1), text(rp)), (int(2), Value::Bytes(vec![2; 32]))];
    if !allow.is_empty() {
        m.push((
            int(3),
            Value::Array(
                allow
                    .iter()
                    .map(|id| {
                        map(vec![
                            (text("id"), Value::Bytes(id.clone())),
                            (text("type"), text("public-key")),
                        ])
                    })
                    .collect(),
            ),
        ));
    }
    map(m)
}

/// Member `key` of an integer-keyed map.
pub fn member(v: &Value, key: i64) -> Option<&Value> {
    match v {
        Value::Map(m) => m.iter().find_map(|(k, v)| match k {
            Value::Integer(i) if i128::from(*i) == i128::from(key) => Some(v),
            _ => None,
        }),
        _ => None,
    }
}

/// The credential id in a makeCredential answer's authenticatorData.
pub fn credential_id(mc: &Value) -> Vec<u8> {
    let Some(Value::Bytes(ad)) = member(mc, 2) else {
        panic!("no authData")
    };
    let len = usize::from(u16::from_be_bytes([ad[53], ad[54]]));
    ad[55..55 + len].to_vec()
}

/// The rpIdHash of an answer's authenticatorData.
pub fn rp_id_hash(answer: &Value) -> Vec<u8> {
    let Some(Value::Bytes(ad)) = member(answer, 2) else {
        panic!("no authData")
    };
    ad[..32].to_vec()
}

pub fn sha256(s: &str) -> Vec<u8> {
    use sha2::Digest;
    sha2::Sha256::digest(s.as_bytes()).to_vec()
}
