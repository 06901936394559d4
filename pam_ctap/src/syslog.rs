//! Syslog lines (LOG_AUTHPRIV, ident `pam_ctap`) sent over a fresh unix socket per line.
//!
//! Not `openlog(3)`: that is process-wide state of the host (sudo, sshd, login), which we must
//! not change. Each line opens its own socket to root's `log_socket` (default `/dev/log`),
//! datagram first, then stream for syslog daemons that listen that way (the datagram send
//! says so with EPROTOTYPE; after any other failure a stream would fare no better). Any
//! failure is silent: a module must never write to the host's stdout or stderr, and a missing
//! syslog must not change the result of an authentication. The stream is written with MSG_NOSIGNAL: a syslog
//! daemon closing its end must not raise SIGPIPE, whose default action kills sudo, login or sshd.

use std::os::unix::net::{UnixDatagram, UnixStream};
use std::path::{Path, PathBuf};
use std::time::Duration;

use ctap_core::text::{self, MAX_FIELD};

const LOG_AUTHPRIV: u8 = 10 << 3;

/// Longest `detail=` value (escaped), so that with the bounded fields before it a line stays
/// under [`MAX_LINE`].
const MAX_DETAIL: usize = 640;

/// Syslog severities we use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Severity {
    Err = 3,
    Warning = 4,
    Notice = 5,
    Info = 6,
    Debug = 7,
}

/// Where lines go.
#[derive(Debug, Clone)]
pub struct SysLog {
    socket: PathBuf,
}

/// Longest line sent; syslog daemons truncate around here anyway.
const MAX_LINE: usize = 1900;

impl SysLog {
    pub fn new(socket: &Path) -> Self {
        SysLog {
            socket: socket.to_path_buf(),
        }
    }

    /// Format one line as `<PRI>pam_ctap[PID]: message`.
    pub fn format(severity: Severity, message: &str) -> String {
        let mut line = format!(
            "<{}>pam_ctap[{}]: ",
            LOG_AUTHPRIV | severity as u8,
            std::process::id()
        );
        for c in message.chars() {
            if line.len() >= MAX_LINE {
                break;
            }
            // The message is built from escaped fields; this is a second line of defence
            // against a user name that would forge a log line.
            if c.is_control() {
                line.push(' ');
            } else {
                line.push(c);
            }
        }
        line
    }

    pub fn send(&self, severity: Severity, message: &str) {
        let line = Self::format(severity, message);
        if let Ok(s) = UnixDatagram::unbound() {
            let _ = s.set_write_timeout(Some(Duration::from_secs(1)));
            match s.send_to(line.as_bytes(), &self.socket) {
                Ok(_) => return,
                // A stream socket at that path: the daemon listens that way.
                Err(e) if e.raw_os_error() == Some(nix::libc::EPROTOTYPE) => {}
                // No socket, nobody listening, or a full queue: a stream would fare no better.
                Err(_) => return,
            }
        }
        if let Ok(s) = UnixStream::connect(&self.socket) {
            let mut framed = line.into_bytes();
            framed.push(b'\n');
            let _ = write_stream(&s, &framed);
        }
    }
}

/// Write a framed line to a stream syslog socket, within a second, never raising SIGPIPE.
fn write_stream(s: &UnixStream, framed: &[u8]) -> std::io::Result<()> {
    ctap_core::transport::device::send_all_nosignal(s, framed, Duration::from_secs(1))
}

/// A field value safe to put in a line: bare when it is plain (`alice`, `sudo`), else quoted
/// and escaped (`ctap_core::text`), so a name with spaces, quotes or newlines cannot forge
/// fields or lines. At most [`MAX_FIELD`] bytes: a long user name cannot push the fields after
/// it off the end of a line the syslog daemon truncates.
pub fn field(value: &str) -> String {
    let plain = !value.is_empty()
        && value.len() <= MAX_FIELD
        && value
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "._-@+:/".contains(c));
    if plain {
        value.to_string()
    } else {
        quoted(value)
    }
}

/// Always quoted (credential names), at most [`MAX_FIELD`] bytes.
pub fn quoted(value: &str) -> String {
    text::quoted_within(value, MAX_FIELD)
}

/// The `detail=` field, the last of a line: a sentence, so it may be longer than a name.
pub fn detail(value: &str) -> String {
    text::quoted_within(value, MAX_DETAIL)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_have_priority_ident_and_no_control_characters() {
        let l = SysLog::format(Severity::Info, "auth ok: user=alice");
        assert_eq!(
            l,
            format!("<86>pam_ctap[{}]: auth ok: user=alice", std::process::id())
        );
        let l = SysLog::format(Severity::Warning, "a\nb");
        assert!(l.starts_with("<84>") && l.ends_with("a b"), "{l}");
        assert!(SysLog::format(Severity::Err, &"x".repeat(5000)).len() <= MAX_LINE + 4);
    }

    #[test]
    fn fields_cannot_forge_other_fields() {
        assert_eq!(field("alice"), "alice");
        assert_eq!(field("a b reason=ok"), "\"a b reason=ok\"");
        assert_eq!(field("x\ny"), "\"x\\ny\"");
        assert_eq!(field(""), "\"\"");
        assert_eq!(quoted("virtual"), "\"virtual\"");
        assert_eq!(field("a\x1b[31m"), "\"a\\u{1b}[31m\"");
    }

    #[test]
    fn fields_are_bounded() {
        let long = "u".repeat(4096);
        let f = field(&long);
        assert!(f.starts_with('"') && f.ends_with("…\""), "{f}");
        assert!(f.len() <= MAX_FIELD + 2 + text::ELLIPSIS.len());
        let esc = quoted(&"\n".repeat(4096));
        assert!(esc.len() <= MAX_FIELD + 2 + text::ELLIPSIS.len());
        assert!(detail(&"d".repeat(4096)).len() <= MAX_DETAIL + 2 + text::ELLIPSIS.len());
    }

    /// The host (sudo, login, sshd) may have SIGPIPE at its default action, which kills: a
    /// child process restores that, writes to a stream whose peer closed, and must get an error
    /// and exit normally rather than die by the signal. A control child writing with plain
    /// write(2) must die by SIGPIPE, which shows the check can fail (std's own `UnixStream`
    /// write passes MSG_NOSIGNAL only in recent Rust releases, not at our MSRV 1.85).
    #[test]
    fn stream_write_to_a_closed_peer_does_not_raise_sigpipe() {
        use std::os::unix::process::ExitStatusExt;
        const CHILD: &str = "PAM_CTAP_SIGPIPE_CHILD";
        const NAME: &str = "syslog::tests::stream_write_to_a_closed_peer_does_not_raise_sigpipe";
        if let Some(mode) = std::env::var_os(CHILD) {
            // SAFETY: sets SIGPIPE's disposition to its default; no handler is installed.
            unsafe {
                libc::signal(libc::SIGPIPE, libc::SIG_DFL);
            }
            let (ours, peer) = UnixStream::pair().unwrap();
            drop(peer);
            let line = b"<86>pam_ctap[1]: x\n";
            let failed = if mode == "raw" {
                use std::os::fd::AsRawFd;
                // SAFETY: writes `line.len()` bytes from a live buffer to an open descriptor.
                unsafe { libc::write(ours.as_raw_fd(), line.as_ptr().cast(), line.len()) < 0 }
            } else {
                write_stream(&ours, line).is_err()
            };
            std::process::exit(if failed { 42 } else { 3 });
        }
        let run = |mode: &str| {
            std::process::Command::new(std::env::current_exe().unwrap())
                .args(["--exact", NAME, "--test-threads=1"])
                .env(CHILD, mode)
                .stdout(std::process::Stdio::null())
                .status()
                .unwrap()
        };
        let status = run("ours");
        assert_eq!(status.signal(), None, "killed by a signal: {status:?}");
        assert_eq!(status.code(), Some(42), "{status:?}");
        let control = run("raw");
        assert_eq!(
            control.signal(),
            Some(libc::SIGPIPE),
            "control: {control:?}"
        );
    }

    #[test]
    fn missing_socket_is_silent() {
        SysLog::new(Path::new("/nonexistent/log")).send(Severity::Info, "x");
    }

    #[test]
    fn datagram_socket_receives_the_line() {
        let p = std::env::temp_dir().join(format!("pam-ctap-log-{}", std::process::id()));
        let _ = std::fs::remove_file(&p);
        let rx = UnixDatagram::bind(&p).unwrap();
        SysLog::new(&p).send(Severity::Notice, "hello");
        let mut buf = [0u8; 256];
        let n = rx.recv(&mut buf).unwrap();
        assert!(String::from_utf8_lossy(&buf[..n]).ends_with("]: hello"));
        let _ = std::fs::remove_file(&p);
    }

    /// A daemon listening on a stream socket gets the line framed with a newline: the datagram
    /// send fails with EPROTOTYPE, the one failure after which the stream is tried.
    #[test]
    fn stream_socket_receives_the_line() {
        use std::io::Read;
        let p = std::env::temp_dir().join(format!("pam-ctap-slog-{}", std::process::id()));
        let _ = std::fs::remove_file(&p);
        let listener = std::os::unix::net::UnixListener::bind(&p).unwrap();
        SysLog::new(&p).send(Severity::Notice, "hello");
        let (mut conn, _) = listener.accept().unwrap();
        let mut got = String::new();
        conn.read_to_string(&mut got).unwrap();
        assert!(got.ends_with("]: hello\n"), "{got:?}");
        let _ = std::fs::remove_file(&p);
    }
}
