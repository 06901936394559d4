//! Syslog lines (LOG_AUTHPRIV, ident `pam_ctap`) sent over a fresh unix socket per line.
//!
//! Not `openlog(3)`: that is process-wide state of the host (sudo, sshd, login), which we must
//! not change. Each line opens its own socket to root's `log_socket` (default `/dev/log`),
//! datagram first, then stream for syslog daemons that listen that way. Any failure is silent:
//! a module must never write to the host's stdout or stderr, and a missing syslog must not
//! change the result of an authentication.

use std::io::Write as _;
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
            if s.send_to(line.as_bytes(), &self.socket).is_ok() {
                return;
            }
        }
        if let Ok(mut s) = UnixStream::connect(&self.socket) {
            let _ = s.set_write_timeout(Some(Duration::from_secs(1)));
            let mut framed = line.into_bytes();
            framed.push(b'\n');
            let _ = s.write_all(&framed);
        }
    }
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
}
