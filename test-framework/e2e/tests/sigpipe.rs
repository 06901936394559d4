//! The unix transport never raises SIGPIPE: sudo, login and sshd load the PAM module and may
//! keep SIGPIPE's default action (terminate). A child process restores that action, writes a
//! report to a virtual key that closed its end, and must get an error, not die by the signal.
#![allow(clippy::unwrap_used)]

use std::os::unix::net::UnixListener;
use std::os::unix::process::ExitStatusExt;
use std::process::{Command, Stdio};
use std::time::Duration;

use ctap_core::transport::device::{Transport, TransportError, UnixTransport};

const CHILD: &str = "CTAP_E2E_SIGPIPE_CHILD";

fn child() -> ! {
    // SAFETY: sets SIGPIPE's disposition to its default before the write; no handler installed.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
    let dir = ctap_e2e::TempDir::new("sigpipe");
    let path = dir.path().join("k.sock");
    let listener = UnixListener::bind(&path).unwrap();
    let mut t = UnixTransport::connect(&path).unwrap();
    let (peer, _) = listener.accept().unwrap();
    drop(peer);
    let r = t.write_report(&[0u8; 64], Duration::from_secs(1));
    std::process::exit(match r {
        Err(TransportError::Disconnected) => 42,
        _ => 3,
    });
}

#[test]
fn transport_write_to_a_closed_key_is_an_error_not_sigpipe() {
    if std::env::var_os(CHILD).is_some() {
        child();
    }
    let status = Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "transport_write_to_a_closed_key_is_an_error_not_sigpipe",
            "--test-threads=1",
        ])
        .env(CHILD, "1")
        .stdout(Stdio::null())
        .status()
        .unwrap();
    assert_eq!(status.signal(), None, "killed by a signal: {status:?}");
    assert_eq!(status.code(), Some(42), "{status:?}");
}
