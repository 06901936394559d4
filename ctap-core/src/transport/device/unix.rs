use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::socket::{recv, send, MsgFlags};

use super::{Report, Transport, TransportError, REPORT_SIZE};

/// How much one recv(2) may take in: a key's whole answer (a few reports) in one system call.
const RECEIVE_CHUNK: usize = 16 * REPORT_SIZE;

/// A virtual or proxied key behind a unix socket.
///
/// The wire format is fixed: SOCK_STREAM, exactly 64 bytes per report in each direction, no
/// other framing. One connection is one opened device.
///
/// The socket is non-blocking and every wait is a poll(2) bounded by the caller's timeout, so
/// no socket option is set per report; a message's reports go out in one send(2)
/// ([`Transport::write_reports`]) and an answer's reports come in with as few recv(2) calls as
/// the peer allows (docs/ARCHITECTURE.md §2).
pub struct UnixTransport {
    stream: UnixStream,
    path: PathBuf,
    /// Bytes received and not yet handed out as a report (fewer than a report, or more when
    /// one recv(2) brought several).
    received: Vec<u8>,
}

impl UnixTransport {
    pub fn connect(path: &Path) -> Result<Self, TransportError> {
        let open_error = |source| TransportError::Open {
            path: path.to_path_buf(),
            source,
        };
        let stream = UnixStream::connect(path).map_err(open_error)?;
        stream.set_nonblocking(true).map_err(open_error)?;
        Ok(UnixTransport {
            stream,
            path: path.to_path_buf(),
            received: Vec::with_capacity(RECEIVE_CHUNK + REPORT_SIZE),
        })
    }

    /// Wait until the socket is ready for `flags` or `deadline` passes; `false` on the deadline.
    fn wait(&self, flags: PollFlags, deadline: Instant) -> Result<bool, TransportError> {
        Ok(wait_ready(self.stream.as_fd(), flags, deadline)?)
    }
}

/// Wait until `fd` is ready for `flags` (or hung up, or in error: the next read or write says
/// which) or `deadline` passes; `false` on the deadline. A signal does not end the wait early.
pub(crate) fn wait_ready(
    fd: BorrowedFd<'_>,
    flags: PollFlags,
    deadline: Instant,
) -> io::Result<bool> {
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Ok(false);
        }
        // Rounded up, so a wait of less than a millisecond is not a busy loop; at most
        // u16::MAX ms per poll, then the deadline is checked again.
        let ms = left.as_micros().div_ceil(1000);
        let ms = u16::try_from(ms).unwrap_or(u16::MAX);
        let mut fds = [PollFd::new(fd, flags)];
        match poll(&mut fds, PollTimeout::from(ms)) {
            Ok(0) => {}
            Ok(_) => return Ok(true),
            Err(Errno::EINTR) => {}
            Err(e) => return Err(io::Error::from(e)),
        }
    }
}

/// Write all of `data` to a connected unix stream socket within `timeout`, with MSG_NOSIGNAL.
///
/// std's `write` on a socket whose peer closed raises SIGPIPE; a Rust program ignores that
/// signal, but sudo, login and sshd, which load the PAM module, need not: the default action
/// kills the host. With MSG_NOSIGNAL the failure is an `EPIPE` error instead. The timeout bounds
/// the whole write, not each send(2). For a blocking socket (the agent's clients);
/// [`UnixTransport`] has its own non-blocking path.
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
            Err(Errno::EINTR) => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}

impl Transport for UnixTransport {
    fn write_report(&mut self, report: &Report, timeout: Duration) -> Result<(), TransportError> {
        self.write_reports(std::slice::from_ref(report), timeout)
    }

    /// All of a message's reports in one send(2) when the socket buffer takes them (it does:
    /// a CTAPHID message is at most 129 reports, 8 KiB), with MSG_NOSIGNAL (see
    /// [`send_all_nosignal`]); `timeout` bounds the whole write.
    fn write_reports(
        &mut self,
        reports: &[Report],
        timeout: Duration,
    ) -> Result<(), TransportError> {
        let deadline = Instant::now() + timeout;
        let data = reports.concat();
        let mut sent = 0;
        while sent < data.len() {
            match send(
                self.stream.as_raw_fd(),
                &data[sent..],
                MsgFlags::MSG_NOSIGNAL,
            ) {
                Ok(0) => return Err(io::Error::from(io::ErrorKind::WriteZero).into()),
                Ok(n) => sent += n,
                Err(Errno::EINTR) => {}
                Err(Errno::EAGAIN) => {
                    if !self.wait(PollFlags::POLLOUT, deadline)? {
                        return Err(TransportError::Timeout);
                    }
                }
                Err(e) => return Err(io::Error::from(e).into()),
            }
        }
        Ok(())
    }

    fn read_report(&mut self, timeout: Duration) -> Result<Report, TransportError> {
        // The timeout bounds the whole report: a peer trickling one byte at a time must not get
        // a fresh timeout for every byte.
        let deadline = Instant::now() + timeout;
        let mut chunk = [0u8; RECEIVE_CHUNK];
        while self.received.len() < REPORT_SIZE {
            match recv(self.stream.as_raw_fd(), &mut chunk, MsgFlags::empty()) {
                Ok(0) => {
                    let got = std::mem::take(&mut self.received).len();
                    return Err(if got == 0 {
                        TransportError::Disconnected
                    } else {
                        TransportError::ShortReport {
                            expected: REPORT_SIZE,
                            got,
                        }
                    });
                }
                Ok(n) => self.received.extend_from_slice(&chunk[..n]),
                Err(Errno::EINTR) => {}
                Err(Errno::EAGAIN) => {
                    if !self.wait(PollFlags::POLLIN, deadline)? {
                        // A partial report is dropped with the error, as a short read would be.
                        let got = std::mem::take(&mut self.received).len();
                        return Err(partial_or_timeout(got));
                    }
                }
                Err(e) => return Err(io::Error::from(e).into()),
            }
        }
        let mut report = [0u8; REPORT_SIZE];
        report.copy_from_slice(&self.received[..REPORT_SIZE]);
        self.received.drain(..REPORT_SIZE);
        Ok(report)
    }

    fn wait_readable(&mut self, timeout: Duration) -> Result<bool, TransportError> {
        if !self.received.is_empty() {
            return Ok(true);
        }
        self.wait(PollFlags::POLLIN, Instant::now() + timeout)
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
    use std::io::{Read, Write};
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

    /// Several reports in one segment (as one recv takes them) are handed out one by one, in
    /// order, and a message's reports go out together, in order.
    #[test]
    fn reports_received_together_are_handed_out_in_order() {
        let (mut t, mut peer, _d) = pair();
        let reports: Vec<Report> = (0..3u8).map(|i| [i; REPORT_SIZE]).collect();
        peer.write_all(&reports.concat()).unwrap();
        for r in &reports {
            assert_eq!(&t.read_report(Duration::from_secs(1)).unwrap(), r);
        }
        assert!(matches!(
            t.read_report(Duration::from_millis(20)),
            Err(TransportError::Timeout)
        ));
        t.write_reports(&reports, Duration::from_secs(1)).unwrap();
        let mut got = vec![0u8; 3 * REPORT_SIZE];
        peer.read_exact(&mut got).unwrap();
        assert_eq!(got, reports.concat());
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
        let reports = vec![[0u8; 64]; (16 << 20) / 64];
        let mut t = t;
        let r = t.write_reports(&reports, Duration::from_millis(200));
        assert!(matches!(r, Err(TransportError::Timeout)), "{:?}", r.err());
        assert!(
            start.elapsed() < Duration::from_secs(1),
            "{:?}",
            start.elapsed()
        );
    }
}
