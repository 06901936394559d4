use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::{Report, Transport, TransportError, REPORT_SIZE};

/// A virtual or proxied key behind a unix socket.
///
/// The wire format is fixed: SOCK_STREAM, exactly 64 bytes per report in each direction, no
/// other framing. One connection is one opened device.
pub struct UnixTransport {
    stream: UnixStream,
    path: PathBuf,
}

impl UnixTransport {
    pub fn connect(path: &Path) -> Result<Self, TransportError> {
        let stream = UnixStream::connect(path).map_err(|source| TransportError::Open {
            path: path.to_path_buf(),
            source,
        })?;
        Ok(UnixTransport {
            stream,
            path: path.to_path_buf(),
        })
    }
}

impl Transport for UnixTransport {
    fn write_report(&mut self, report: &Report) -> Result<(), TransportError> {
        self.stream
            .set_write_timeout(Some(Duration::from_secs(5)))?;
        self.stream.write_all(report)?;
        Ok(())
    }

    fn read_report(&mut self, timeout: Duration) -> Result<Report, TransportError> {
        // A zero timeout means "block forever" to set_read_timeout; never ask for that.
        let timeout = timeout.max(Duration::from_millis(1));
        self.stream.set_read_timeout(Some(timeout))?;
        let mut report = [0u8; REPORT_SIZE];
        let mut filled = 0;
        while filled < REPORT_SIZE {
            match self.stream.read(&mut report[filled..]) {
                Ok(0) if filled == 0 => return Err(TransportError::Disconnected),
                Ok(0) => {
                    return Err(TransportError::ShortReport {
                        expected: REPORT_SIZE,
                        got: filled,
                    })
                }
                Ok(n) => filled += n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                // A timeout in the middle of a report means the peer sent a partial one.
                Err(e)
                    if filled > 0
                        && matches!(
                            e.kind(),
                            std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                        ) =>
                {
                    return Err(TransportError::ShortReport {
                        expected: REPORT_SIZE,
                        got: filled,
                    })
                }
                Err(e) => return Err(e.into()),
            }
        }
        Ok(report)
    }

    fn describe(&self) -> String {
        format!("unix:{}", self.path.display())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::net::UnixListener;

    fn pair() -> (UnixTransport, UnixStream, tempdir::Dir) {
        let dir = tempdir::Dir::new();
        let path = dir.0.join("k.sock");
        let listener = UnixListener::bind(&path).unwrap();
        let t = UnixTransport::connect(&path).unwrap();
        let (peer, _) = listener.accept().unwrap();
        (t, peer, dir)
    }

    mod tempdir {
        pub struct Dir(pub std::path::PathBuf);
        impl Dir {
            pub fn new() -> Self {
                let p = std::env::temp_dir().join(format!(
                    "ctap-core-unix-{}-{}",
                    std::process::id(),
                    rand::random::<u64>()
                ));
                std::fs::create_dir(&p).unwrap();
                Dir(p)
            }
        }
        impl Drop for Dir {
            fn drop(&mut self) {
                let _ = std::fs::remove_dir_all(&self.0);
            }
        }
    }

    #[test]
    fn reports_cross_whole_even_when_split_by_the_peer() {
        let (mut t, mut peer, _d) = pair();
        let mut r = [0u8; 64];
        r[0] = 0xAA;
        r[63] = 0x55;
        t.write_report(&r).unwrap();
        let mut got = [0u8; 64];
        peer.read_exact(&mut got).unwrap();
        assert_eq!(got, r);
        peer.write_all(&r[..10]).unwrap();
        peer.write_all(&r[10..]).unwrap();
        assert_eq!(t.read_report(Duration::from_secs(1)).unwrap(), r);
    }

    #[test]
    fn timeout_short_report_and_disconnect_are_distinct_errors() {
        let (mut t, mut peer, _d) = pair();
        assert!(matches!(
            t.read_report(Duration::from_millis(20)),
            Err(TransportError::Timeout)
        ));
        peer.write_all(&[1u8; 10]).unwrap();
        assert!(matches!(
            t.read_report(Duration::from_millis(50)),
            Err(TransportError::ShortReport { got: 10, .. })
        ));
        drop(peer);
        assert!(matches!(
            t.read_report(Duration::from_millis(50)),
            Err(TransportError::Disconnected)
        ));
    }

    #[test]
    fn connecting_to_a_missing_socket_names_the_path() {
        let err = UnixTransport::connect(Path::new("/nonexistent/ctap.sock"))
            .err()
            .unwrap();
        assert!(err.to_string().contains("/nonexistent/ctap.sock"), "{err}");
    }
}
