//! One audit line per request: on stderr, and to syslog (LOG_AUTHPRIV, ident `ctap-proxy`)
//! over a fresh datagram socket per line (stream as a fallback), as pam_ctap does. Fields a
//! client controls (the RP ID) are escaped and cut to 256 bytes; the rest are our own words.

use std::os::unix::net::{UnixDatagram, UnixStream};
use std::path::PathBuf;
use std::time::Duration;

use ctap_core::text::{quoted_within, MAX_FIELD};

const LOG_AUTHPRIV: u8 = 10 << 3;
const SEVERITY_NOTICE: u8 = 5;
const SEVERITY_INFO: u8 = 6;

/// Where audit lines go.
#[derive(Debug, Clone)]
pub struct Audit {
    /// The syslog socket (`/dev/log`), or none.
    pub syslog: Option<PathBuf>,
}

/// One decision.
#[derive(Debug, Clone)]
pub struct Entry<'a> {
    pub client: &'a str,
    pub connection: u64,
    pub peer_uid: Option<u32>,
    pub command: &'a str,
    pub rp_id: Option<&'a str>,
    /// `None`: allowed, forwarded; `Some(reason)`: refused.
    pub refused: Option<&'a str>,
    /// The status the client got (CTAP2 status byte, U2F status word, CTAPHID error).
    pub status: Option<String>,
}

impl Entry<'_> {
    /// `client="NAME" conn=N uid=U command=C rp_id="..." decision=allow status=0x00`.
    pub fn line(&self) -> String {
        let mut line = format!(
            "client={} conn={}",
            quoted_within(self.client, MAX_FIELD),
            self.connection
        );
        if let Some(uid) = self.peer_uid {
            line.push_str(&format!(" uid={uid}"));
        }
        line.push_str(&format!(" command={}", self.command));
        if let Some(rp) = self.rp_id {
            line.push_str(&format!(" rp_id={}", quoted_within(rp, MAX_FIELD)));
        }
        match self.refused {
            None => line.push_str(" decision=allow"),
            Some(reason) => line.push_str(&format!(" decision=refuse reason={reason}")),
        }
        if let Some(s) = &self.status {
            line.push_str(&format!(" status={s}"));
        }
        line
    }
}

impl Audit {
    pub fn record(&self, entry: &Entry<'_>) {
        let line = entry.line();
        eprintln!("ctap-proxy: audit {line}");
        if let Some(socket) = &self.syslog {
            let severity = if entry.refused.is_some() {
                SEVERITY_NOTICE
            } else {
                SEVERITY_INFO
            };
            send_syslog(socket, &format_syslog(severity, &line));
        }
    }

    /// A line that is not a decision (startup, a connection's end, a key's failure).
    pub fn note(&self, message: &str) {
        eprintln!("ctap-proxy: {message}");
    }
}

fn format_syslog(severity: u8, message: &str) -> String {
    let mut line = format!(
        "<{}>ctap-proxy[{}]: ",
        LOG_AUTHPRIV | severity,
        std::process::id()
    );
    // The fields are escaped already; this is a second line of defence.
    line.extend(
        message
            .chars()
            .map(|c| if c.is_control() { ' ' } else { c }),
    );
    line
}

fn send_syslog(socket: &std::path::Path, line: &str) {
    if let Ok(s) = UnixDatagram::unbound() {
        let _ = s.set_write_timeout(Some(Duration::from_secs(1)));
        if s.send_to(line.as_bytes(), socket).is_ok() {
            return;
        }
    }
    if let Ok(s) = UnixStream::connect(socket) {
        let mut framed = line.as_bytes().to_vec();
        framed.push(b'\n');
        let _ =
            ctap_core::transport::device::send_all_nosignal(&s, &framed, Duration::from_secs(1));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_are_escaped() {
        let e = Entry {
            client: "dev",
            connection: 3,
            peer_uid: Some(1000),
            command: "getAssertion",
            rp_id: Some("evil\" decision=allow\nx"),
            refused: Some("rp-not-allowed"),
            status: Some("0x27".into()),
        };
        assert_eq!(
            e.line(),
            "client=\"dev\" conn=3 uid=1000 command=getAssertion \
             rp_id=\"evil\\\" decision=allow\\nx\" decision=refuse reason=rp-not-allowed status=0x27"
        );
        let long = "a".repeat(1000);
        let e = Entry {
            rp_id: Some(&long),
            ..e
        };
        assert!(e.line().len() < 400);
    }

    #[test]
    fn syslog_line_reaches_the_socket() {
        let dir = std::env::temp_dir().join(format!("ctap-proxy-audit-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("log");
        let _ = std::fs::remove_file(&path);
        let sink = UnixDatagram::bind(&path).unwrap();
        let audit = Audit {
            syslog: Some(path.clone()),
        };
        audit.record(&Entry {
            client: "dev",
            connection: 1,
            peer_uid: None,
            command: "getInfo",
            rp_id: None,
            refused: None,
            status: Some("0x00".into()),
        });
        let mut buf = [0u8; 512];
        let n = sink.recv(&mut buf).unwrap();
        let got = String::from_utf8_lossy(&buf[..n]);
        assert!(got.starts_with("<86>ctap-proxy["), "{got}");
        assert!(got.ends_with("client=\"dev\" conn=1 command=getInfo decision=allow status=0x00"));
        let _ = std::fs::remove_dir_all(&dir);
    }
}
