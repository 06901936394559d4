use std::io::{self, Read};
use std::os::fd::AsRawFd;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use nix::sys::socket::{send, MsgFlags};

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

/// Write all of `data` to a connected unix stream socket within `timeout`, with MSG_NOSIGNAL.
///
/// std's `write` on a socket whose peer closed raises SIGPIPE; a Rust program ignores that
/// signal, but sudo, login and sshd, which load the PAM module, need not: the default action
/// kills the host. With MSG_NOSIGNAL the failure is an `EPIPE` error instead. The timeout bounds
/// the whole write, not each send(2).
pub fn send_all_nosignal(stream: &UnixStream, data: &[u8], timeout: Duration) -> io::Result<()> {
    let deadline = Instant::now() + timeout;
    let mut sent = 0;
    while sent < data.len() {
        let remaining = deadline.saturating_duration_since(Instant::now());
        if remaining.is_zero() {
            return Err(io::ErrorKind::TimedOut.into());
        }
        // SO_SNDTIMEO bounds a blocking send(2); never zero (that means "block forever").
        stream.set_write_timeout(Some(remaining.max(Duration::from_millis(1))))?;
        match send(stream.as_raw_fd(), &data[sent..], MsgFlags::MSG_NOSIGNAL) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => sent += n,
            Err(nix::errno::Errno::EINTR) => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}

impl Transport for UnixTransport {
    fn write_report(&mut self, report: &Report, timeout: Duration) -> Result<(), TransportError> {
        send_all_nosignal(&self.stream, report, timeout)?;
        Ok(())
    }

    fn read_report(&mut self, timeout: Duration) -> Result<Report, TransportError> {
        // The timeout bounds the whole report: a peer trickling one byte at a time must not get
        // a fresh timeout for every byte.
        let deadline = Instant::now() + timeout;
        let mut report = [0u8; REPORT_SIZE];
        let mut filled = 0;
        while filled < REPORT_SIZE {
            let remaining = deadline.saturating_duration_since(Instant::now());
            if remaining.is_zero() {
                return Err(partial_or_timeout(filled));
            }
            // A zero timeout means "block forever" to set_read_timeout; never ask for that.
            self.stream
                .set_read_timeout(Some(remaining.max(Duration::from_millis(1))))?;
            match self.stream.read(&mut report[filled..]) {
                Ok(0) if filled == 0 => return Err(TransportError::Disconnected),
                Ok(0) => {
                    return Err(TransportError::ShortReport {
                        expected: REPORT_SIZE,
                        got: filled,
                    })
                }
                Ok(n) => filled += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                    ) =>
                {
                    return Err(partial_or_timeout(filled))
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

/// A timeout with nothing received is [`TransportError::Timeout`]; in the middle of a report it
/// means the peer sent a partial one.
fn partial_or_timeout(filled: usize) -> TransportError {
    if filled == 0 {
        TransportError::Timeout
    } else {
        TransportError::ShortReport {
            expected: REPORT_SIZE,
            got: filled,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;
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
        pub(crate) struct Dir(pub std::path::PathBuf);
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
        t.write_report(&r, Duration::from_secs(1)).unwrap();
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

    #[test]
    fn a_trickled_report_is_bounded_by_the_timeout_not_per_byte() {
        let (mut t, mut peer, _d) = pair();
        let feeder = std::thread::spawn(move || {
            // One byte every 40 ms: each read sees data well within any per-read timeout.
            for _ in 0..64 {
                if peer.write_all(&[0u8]).is_err() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(40));
            }
        });
        let start = Instant::now();
        let r = t.read_report(Duration::from_millis(300));
        let elapsed = start.elapsed();
        assert!(
            matches!(r, Err(TransportError::ShortReport { .. })),
            "{:?}",
            r.err()
        );
        assert!(elapsed < Duration::from_millis(600), "took {elapsed:?}");
        drop(t);
        feeder.join().unwrap();
    }

    /// A peer answering INIT one byte at a time (each byte well inside any per-read timeout)
    /// cannot hold INIT past its 3 s limit (before, every byte restarted the read timeout:
    /// 64 bytes at 2.5 s each held it for 160 s).
    #[test]
    fn a_trickling_peer_cannot_hold_init_past_its_limit() {
        let (t, mut peer, _d) = pair();
        let feeder = std::thread::spawn(move || {
            let mut request = [0u8; 64];
            if peer.read_exact(&mut request).is_err() {
                return;
            }
            for _ in 0..64 {
                if peer.write_all(&[0xFF]).is_err() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(100));
            }
        });
        let start = Instant::now();
        let r = crate::transport::ctaphid::CtapHidChannel::open(t);
        let took = start.elapsed();
        assert!(r.is_err());
        assert!(took < Duration::from_millis(3500), "took {took:?}");
        feeder.join().unwrap();
    }

    #[test]
    fn writing_to_a_closed_peer_is_an_error() {
        let (mut t, peer, _d) = pair();
        drop(peer);
        let r = t.write_report(&[0u8; 64], Duration::from_secs(1));
        assert!(
            matches!(r, Err(TransportError::Disconnected)),
            "{:?}",
            r.err()
        );
    }

    #[test]
    fn a_peer_that_never_reads_cannot_block_a_write_past_its_timeout() {
        let (t, _peer, _d) = pair();
        let start = Instant::now();
        let big = vec![0u8; 16 << 20];
        let r = send_all_nosignal(&t.stream, &big, Duration::from_millis(200));
        assert!(r.is_err());
        assert!(
            start.elapsed() < Duration::from_secs(1),
            "{:?}",
            start.elapsed()
        );
    }
}
