use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::os::fd::AsFd;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use nix::poll::{poll, PollFd, PollFlags, PollTimeout};

use super::{Report, Transport, TransportError, REPORT_SIZE};

/// A USB security key through the kernel's hidraw interface.
///
/// Writes carry a leading report-id byte 0 (FIDO keys use unnumbered reports), so 65 bytes go
/// out; reads return the 64-byte report. Timeouts use poll(2), so no ioctl and no unsafe code.
pub(crate) struct HidrawTransport {
    file: File,
    path: PathBuf,
}

impl HidrawTransport {
    pub fn open(path: &Path) -> Result<Self, TransportError> {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .custom_flags(nix::libc::O_CLOEXEC | nix::libc::O_NOFOLLOW | nix::libc::O_NONBLOCK)
            .open(path)
            .map_err(|source| TransportError::Open {
                path: path.to_path_buf(),
                source,
            })?;
        Ok(HidrawTransport {
            file,
            path: path.to_path_buf(),
        })
    }
}

impl Transport for HidrawTransport {
    fn write_report(&mut self, report: &Report, timeout: Duration) -> Result<(), TransportError> {
        let mut out = [0u8; REPORT_SIZE + 1];
        out[1..].copy_from_slice(report);
        // The file is non-blocking: wait (bounded) until the device takes a report.
        let ms = u16::try_from(timeout.as_millis()).unwrap_or(u16::MAX);
        let mut fds = [PollFd::new(self.file.as_fd(), PollFlags::POLLOUT)];
        if poll(&mut fds, PollTimeout::from(ms)).map_err(std::io::Error::from)? == 0 {
            return Err(TransportError::Timeout);
        }
        let written = self.file.write(&out)?;
        if written != out.len() {
            return Err(TransportError::ShortReport {
                expected: out.len(),
                got: written,
            });
        }
        Ok(())
    }

    fn read_report(&mut self, timeout: Duration) -> Result<Report, TransportError> {
        let ms = u16::try_from(timeout.as_millis()).unwrap_or(u16::MAX);
        let mut fds = [PollFd::new(self.file.as_fd(), PollFlags::POLLIN)];
        let ready = poll(&mut fds, PollTimeout::from(ms)).map_err(std::io::Error::from)?;
        if ready == 0 {
            return Err(TransportError::Timeout);
        }
        let revents = fds[0].revents().unwrap_or(PollFlags::empty());
        if revents.intersects(PollFlags::POLLHUP | PollFlags::POLLERR | PollFlags::POLLNVAL) {
            return Err(TransportError::Disconnected);
        }
        let mut report = [0u8; REPORT_SIZE];
        let n = self.file.read(&mut report)?;
        if n == 0 {
            return Err(TransportError::Disconnected);
        }
        if n != REPORT_SIZE {
            return Err(TransportError::ShortReport {
                expected: REPORT_SIZE,
                got: n,
            });
        }
        Ok(report)
    }

    fn wait_readable(&mut self, timeout: Duration) -> Result<bool, TransportError> {
        let ms = u16::try_from(timeout.as_millis()).unwrap_or(u16::MAX);
        let mut fds = [PollFd::new(self.file.as_fd(), PollFlags::POLLIN)];
        match poll(&mut fds, PollTimeout::from(ms)) {
            Ok(ready) => Ok(ready != 0),
            // A signal (SIGINT at sudo's prompt): nothing read yet; the caller looks again.
            Err(nix::errno::Errno::EINTR) => Ok(false),
            Err(e) => Err(std::io::Error::from(e).into()),
        }
    }

    fn describe(&self) -> String {
        format!("hidraw:{}", self.path.display())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A FIFO opened read-write loops writes back to reads, which is enough to see the bytes the
    /// transport puts on the wire and to exercise its poll timeout without a USB key.
    fn fifo() -> (HidrawTransport, PathBuf) {
        let p = std::env::temp_dir().join(format!("ctap-hidraw-{}", rand::random::<u64>()));
        nix::unistd::mkfifo(&p, nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
        (HidrawTransport::open(&p).unwrap(), p)
    }

    #[test]
    fn writes_prefix_report_id_zero_and_reads_time_out() {
        let (mut t, p) = fifo();
        assert!(matches!(
            t.read_report(Duration::from_millis(30)),
            Err(TransportError::Timeout)
        ));
        let mut report = [0u8; REPORT_SIZE];
        for (i, b) in report.iter_mut().enumerate() {
            *b = u8::try_from(i).unwrap() + 1;
        }
        t.write_report(&report, Duration::from_millis(100)).unwrap();
        // The first 64 of the 65 bytes written: report id 0, then the report's first 63 bytes.
        let got = t.read_report(Duration::from_millis(100)).unwrap();
        assert_eq!(got[0], 0);
        assert_eq!(&got[1..], &report[..63]);
        assert_eq!(t.describe(), format!("hidraw:{}", p.display()));
        std::fs::remove_file(p).unwrap();
    }

    #[test]
    fn symlinked_device_path_is_refused() {
        let (_t, p) = fifo();
        let link = p.with_extension("link");
        std::os::unix::fs::symlink(&p, &link).unwrap();
        assert!(HidrawTransport::open(&link).is_err());
        std::fs::remove_file(link).unwrap();
        std::fs::remove_file(p).unwrap();
    }
}
