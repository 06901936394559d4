//! ctap-proxy's life: touch cue and cancel pass through, a client killed mid-request gets its
//! request cancelled on the key while the proxy keeps serving, stdio mode, the syslog line,
//! `--help` and exit statuses.
#![allow(clippy::unwrap_used)]

mod proxy_common;

use std::io::{Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixDatagram;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use ctap_e2e::{bin, SoftToken, TempDir};
use proxy_common::*;

const POLICY: &str = "[client.dev]\nrp_ids = [\"example.org\"]\n";

/// A key with one credential for example.org whose user answers touches after `delay_ms`,
/// logging every CANCEL it receives.
fn slow_key(dir: &std::path::Path, delay_ms: u32) -> (SoftToken, Vec<u8>, std::path::PathBuf) {
    let state = dir.join("key.state");
    let key = SoftToken::start(dir, &state, &[]);
    let (st, mc) =
        Raw::connect(&key.socket).cbor(0x01, Some(&make_credential("example.org", b"u", false)));
    assert_eq!(st, 0);
    let id = credential_id(&mc.unwrap());
    key.stop();
    let cancel_log = dir.join("cancel.log");
    let delay = format!("delay={delay_ms}");
    let key = SoftToken::start(
        dir,
        &state,
        &[
            "--presence",
            &delay,
            "--cancel-log",
            cancel_log.to_str().unwrap(),
        ],
    );
    (key, id, cancel_log)
}

fn wait_for_file_line(path: &std::path::Path) -> String {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Ok(s) = std::fs::read_to_string(path) {
            if !s.is_empty() {
                return s;
            }
        }
        assert!(Instant::now() < deadline, "{} stayed empty", path.display());
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn touch_cue_and_cancel_pass_through() {
    let dir = TempDir::new("px-cancel");
    let (key, id, cancel_log) = slow_key(dir.path(), 5000);
    let proxy = Proxy::serve(dir.path(), &key.uri(), POLICY, &["dev"]);
    let mut c = Raw::connect(&proxy.socket("dev"));
    let ga = {
        let mut b = vec![0x02];
        b.extend(ctap_core::transport::ctap2::cbor::encode(&get_assertion(
            "example.org",
            &[id],
        )));
        b
    };
    let started = Instant::now();
    c.send(CMD_CBOR, &ga);
    // The key's UPNEEDED reaches the client on its own channel.
    loop {
        let (cid, cmd, p) = c.recv_any();
        assert_eq!((cid, cmd), (c.cid, CMD_KEEPALIVE), "{p:?}");
        if p == [0x02] {
            break;
        }
    }
    c.send(CMD_CANCEL, &[]);
    let (_, cmd, p) = c.recv();
    assert_eq!(
        (cmd, p),
        (CMD_CBOR, vec![0x2D]),
        "CTAP2_ERR_KEEPALIVE_CANCEL"
    );
    assert!(
        started.elapsed() < Duration::from_secs(4),
        "cancelled, not touched"
    );
    let log = wait_for_file_line(&cancel_log);
    assert!(log.contains("busy=true"), "{log}");
    proxy.wait_audit(&["command=getAssertion", "reason=client-cancelled"]);
}

#[test]
fn a_client_killed_mid_request_is_cancelled_on_the_key_and_the_proxy_serves_on() {
    let dir = TempDir::new("px-kill");
    let (key, id, cancel_log) = slow_key(dir.path(), 8000);
    let proxy = Proxy::serve(dir.path(), &key.uri(), POLICY, &["dev"]);
    let mut ga = vec![0x02];
    ga.extend(ctap_core::transport::ctap2::cbor::encode(&get_assertion(
        "example.org",
        std::slice::from_ref(&id),
    )));
    // A separate process: INIT, getAssertion, then it waits for the touch until killed.
    let script = r#"
import os, socket, sys
s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
s.connect(sys.argv[1])
def send(cid, cmd, data):
    first = cid.to_bytes(4, "big") + bytes([0x80 | cmd]) + len(data).to_bytes(2, "big") + data[:57]
    s.sendall(first.ljust(64, b"\0"))
    rest, seq = data[57:], 0
    while rest:
        s.sendall((cid.to_bytes(4, "big") + bytes([seq]) + rest[:59]).ljust(64, b"\0"))
        rest, seq = rest[59:], seq + 1
def recv():
    b = b""
    while len(b) < 64:
        b += s.recv(64 - len(b))
    return b
send(0xFFFFFFFF, 0x06, os.urandom(8))
cid = int.from_bytes(recv()[15:19], "big")
send(cid, 0x10, bytes.fromhex(sys.argv[2]))
while True:
    r = recv()
    if r[4] == 0x80 | 0x3B and r[7] == 2:
        print("upneeded", flush=True)
"#;
    let hex: String = ga.iter().map(|b| format!("{b:02x}")).collect();
    let mut child = Command::new("python3")
        .args(["-c", script, proxy.socket("dev").to_str().unwrap(), &hex])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = [0u8; 9];
    child.stdout.take().unwrap().read_exact(&mut line).unwrap();
    assert_eq!(&line, b"upneeded\n");
    child.kill().unwrap();
    child.wait().unwrap();
    let log = wait_for_file_line(&cancel_log);
    assert!(
        log.contains("busy=true"),
        "the key saw CANCEL for the pending request: {log}"
    );
    proxy.wait_audit(&["command=getAssertion", "decision=refuse reason=client-gone"]);
    // The proxy serves on, and the key's channel is clean for the next client.
    let mut c = Raw::connect(&proxy.socket("dev"));
    assert_eq!(c.cbor(0x04, None).0, 0);
}

#[test]
fn a_waiting_client_gets_keepalives_while_another_holds_the_key() {
    let dir = TempDir::new("px-queue");
    let (key, id, _) = slow_key(dir.path(), 1500);
    let proxy = Proxy::serve(dir.path(), &key.uri(), POLICY, &["dev"]);
    let ga = get_assertion("example.org", &[id]);
    let socket = proxy.socket("dev");
    let first = std::thread::spawn({
        let ga = ga.clone();
        let socket = socket.clone();
        move || {
            let t = Instant::now();
            let st = Raw::connect(&socket).cbor(0x02, Some(&ga)).0;
            (st, t.elapsed())
        }
    });
    std::thread::sleep(Duration::from_millis(300));
    // Our own library gives up after 3 s without a packet: the proxy's keepalives keep it
    // waiting while the first client's touch takes 1.5 s, then its own touch.
    let mut c = Raw::connect(&socket);
    c.send(CMD_CBOR, &[0x04]);
    let (_, cmd, first_packet) = c.recv_any();
    assert_eq!(
        (cmd, first_packet),
        (CMD_KEEPALIVE, vec![0x01]),
        "{}{:?}",
        proxy.stderr(),
        first.join()
    );
    let (_, cmd, p) = c.recv();
    assert_eq!((cmd, p[0]), (CMD_CBOR, 0));
    let (st, took) = first.join().unwrap();
    assert_eq!(st, 0);
    assert!(took >= Duration::from_millis(1400), "{took:?}");
}

#[test]
fn stdio_serves_one_client_until_end_of_input() {
    let dir = TempDir::new("px-stdio");
    let key = SoftToken::start(dir.path(), &dir.path().join("key.state"), &[]);
    let policy = write_policy(dir.path(), POLICY);
    let mut child = Command::new(bin("ctap-proxy"))
        .args([
            "stdio",
            "--client",
            "dev",
            "--syslog-socket",
            "none",
            "--device",
        ])
        .arg(key.uri())
        .arg("--policy")
        .arg(&policy)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut input = child.stdin.take().unwrap();
    let mut output = child.stdout.take().unwrap();
    let read = |out: &mut std::process::ChildStdout| {
        let mut r = [0u8; REPORT];
        out.read_exact(&mut r).unwrap();
        r
    };
    input
        .write_all(&fragment(BROADCAST, CMD_INIT, &[9; 8])[0])
        .unwrap();
    let init = read(&mut output);
    assert_eq!(&init[7..15], &[9; 8]);
    let cid = u32::from_be_bytes(init[15..19].try_into().unwrap());
    let mut ga = vec![0x02];
    ga.extend(ctap_core::transport::ctap2::cbor::encode(&get_assertion(
        "evil.org",
        &[],
    )));
    for r in fragment(cid, CMD_CBOR, &ga) {
        input.write_all(&r).unwrap();
    }
    let answer = read(&mut output);
    assert_eq!(&answer[4..8], &[0x80 | CMD_CBOR, 0, 1, DENIED]);
    input
        .write_all(&fragment(cid, CMD_CBOR, &[0x04])[0])
        .unwrap();
    let answer = read(&mut output);
    assert_eq!(answer[4], 0x80 | CMD_CBOR);
    assert_eq!(answer[7], 0, "getInfo allowed");
    drop(input);
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "{out:?}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("audit client=\"dev\" conn=1 command=getAssertion rp_id=\"evil.org\" decision=refuse reason=rp-not-allowed status=0x27"),
        "{stderr}"
    );
}

#[test]
fn audit_lines_go_to_syslog() {
    let dir = TempDir::new("px-syslog");
    let key = SoftToken::start(dir.path(), &dir.path().join("key.state"), &[]);
    let log_path = dir.path().join("log.sock");
    let log = UnixDatagram::bind(&log_path).unwrap();
    log.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let policy = write_policy(dir.path(), POLICY);
    let sock = dir.path().join("dev.sock");
    let mut child = Command::new(bin("ctap-proxy"))
        .args(["serve", "--device"])
        .arg(key.uri())
        .arg("--policy")
        .arg(&policy)
        .arg("--syslog-socket")
        .arg(&log_path)
        .arg("--listen")
        .arg(format!("unix:{}", sock.display()))
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::os::unix::net::UnixStream::connect(&sock).is_err() {
        assert!(Instant::now() < deadline);
        std::thread::sleep(Duration::from_millis(10));
    }
    assert_eq!(
        std::fs::metadata(&sock).unwrap().permissions().mode() & 0o777,
        0o600
    );
    let mut c = Raw::connect(&sock);
    assert_eq!(c.cbor(0x07, None).0, DENIED);
    let mut buf = [0u8; 1024];
    let n = log.recv(&mut buf).unwrap();
    let line = String::from_utf8_lossy(&buf[..n]).into_owned();
    let _ = child.kill();
    let _ = child.wait();
    assert!(
        line.starts_with("<85>ctap-proxy["),
        "LOG_AUTHPRIV|LOG_NOTICE: {line}"
    );
    assert!(
        line.ends_with("command=reset decision=refuse reason=command-not-allowed status=0x27"),
        "{line}"
    );
}

fn run(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(bin("ctap-proxy"))
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn help_and_exit_statuses() {
    let (code, out, _) = run(&["--help"]);
    assert_eq!(code, 0);
    for part in ["serve", "stdio", "Exit status", "3 policy file"] {
        assert!(out.contains(part), "{part}: {out}");
    }
    assert_eq!(run(&["serve", "--help"]).0, 0);
    assert_eq!(run(&["stdio", "--help"]).0, 0);
    assert_eq!(run(&["serve"]).0, 2, "usage");
    assert_eq!(
        run(&["stdio", "--device", "nonsense", "--client", "x"]).0,
        2
    );

    let dir = TempDir::new("px-cli");
    let key = SoftToken::start(dir.path(), &dir.path().join("key.state"), &[]);
    let uri = key.uri();
    let sock = format!("unix:{}", dir.path().join("dev.sock").display());
    let serve = |policy: &str, device: &str| {
        run(&[
            "serve",
            "--device",
            device,
            "--policy",
            policy,
            "--listen",
            &sock,
            "--syslog-socket",
            "none",
        ])
    };
    // Invalid: file and line.
    let bad = write_policy(
        dir.path(),
        "[client.dev]\nrp_ids = [\"example.org\"]\nrp_id = \"x\"\n",
    );
    let (code, _, err) = serve(bad.to_str().unwrap(), &uri);
    assert_eq!(code, 3, "{err}");
    assert!(err.contains(&format!("{}:3:", bad.display())), "{err}");
    // No section for the socket's client.
    let other = write_policy(dir.path(), "[client.other]\nrp_ids = [\"example.org\"]\n");
    let (code, _, err) = serve(other.to_str().unwrap(), &uri);
    assert_eq!(code, 3);
    assert!(err.contains("no [client.dev] section"), "{err}");
    // Writable by others: refused.
    let loose = write_policy(dir.path(), POLICY);
    std::fs::set_permissions(&loose, std::fs::Permissions::from_mode(0o666)).unwrap();
    let (code, _, err) = serve(loose.to_str().unwrap(), &uri);
    assert_eq!(code, 3);
    assert!(err.contains("writable"), "{err}");
    let (code, _, err) = serve(dir.path().join("missing.toml").to_str().unwrap(), &uri);
    assert_eq!(code, 3, "{err}");
    // No key there.
    let good = write_policy(dir.path(), POLICY);
    let nokey = format!("unix:{}", dir.path().join("nokey.sock").display());
    let (code, _, err) = serve(good.to_str().unwrap(), &nokey);
    assert_eq!(code, 4, "{err}");
    assert!(err.contains("cannot open the key"), "{err}");
    // uhid: a device that cannot be opened is an error at start (no machine here has
    // /dev/uhid; the event encoding is tested against a socketpair in ctap-proxy's unit tests).
    let (code, _, err) = run(&[
        "serve",
        "--device",
        &uri,
        "--policy",
        good.to_str().unwrap(),
        "--syslog-socket",
        "none",
        "--uhid",
        "dev=/nonexistent/uhid",
    ]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("/nonexistent/uhid: cannot open uhid"), "{err}");
    assert_eq!(run(&["serve", "--device", &uri, "--uhid", "relative"]).0, 2);
    // A file that is not a socket where the socket goes.
    std::fs::write(dir.path().join("dev.sock"), "x").unwrap();
    let (code, _, err) = serve(good.to_str().unwrap(), &uri);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("not a socket"), "{err}");
}
