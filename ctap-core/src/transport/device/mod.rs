//! The device layer: moving 64-byte CTAPHID reports to and from one authenticator.
//!
//! Everything above this layer (CTAPHID framing, CTAP2) is the same for a USB key and for the
//! virtual key behind a unix socket; only [`Transport`] implementations differ.

mod enumerate;
mod error;
mod hidraw;
mod unix;
mod uri;

#[cfg(test)]
pub(crate) mod mock;

use std::time::Duration;

pub use enumerate::enumerate;
pub use error::TransportError;
pub(crate) use hidraw::HidrawTransport;
pub(crate) use unix::wait_ready;
pub use unix::{send_all_nosignal, UnixTransport};
pub use uri::DeviceUri;

/// Size of one CTAPHID report, without the hidraw report-id byte.
pub const REPORT_SIZE: usize = 64;

/// One HID report as CTAPHID sees it.
pub type Report = [u8; REPORT_SIZE];

/// A connection to one authenticator that exchanges whole 64-byte reports.
///
/// Implementations never split, join or interpret reports: framing is [`crate::transport::ctaphid`]'s job.
pub trait Transport: Send {
    /// Send one report, taking at most `timeout`. A short write is an error, never a partial
    /// report. Never raises SIGPIPE (the PAM module runs inside sudo, login and sshd).
    fn write_report(&mut self, report: &Report, timeout: Duration) -> Result<(), TransportError>;

    /// Send a message's reports in order, all within `timeout`. A HID device takes one report
    /// per write (the default); a stream transport sends them together, in one system call.
    fn write_reports(
        &mut self,
        reports: &[Report],
        timeout: Duration,
    ) -> Result<(), TransportError> {
        let deadline = std::time::Instant::now() + timeout;
        for report in reports {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            if left.is_zero() {
                return Err(TransportError::Timeout);
            }
            self.write_report(report, left)?;
        }
        Ok(())
    }

    /// Receive one report, waiting at most `timeout` for the whole of it (not per byte).
    ///
    /// Returns [`TransportError::Timeout`] when nothing arrived in time, so the caller can decide
    /// between waiting longer (keepalive) and cancelling; part of a report by then is
    /// [`TransportError::ShortReport`].
    fn read_report(&mut self, timeout: Duration) -> Result<Report, TransportError>;

    /// Wait at most `timeout` for something to read (a report, the end, an error): `false` if
    /// nothing came. Lets a reader wake up while a key is silent (one that sends no
    /// keepalives) to see whether it should cancel, without cutting a report in two. The
    /// default says "readable" at once, so [`Self::read_report`] waits as before.
    fn wait_readable(&mut self, _timeout: Duration) -> Result<bool, TransportError> {
        Ok(true)
    }

    /// A human-readable name for messages and logs (the device path or socket).
    fn describe(&self) -> String;
}

impl<T: Transport + ?Sized> Transport for Box<T> {
    fn write_report(&mut self, report: &Report, timeout: Duration) -> Result<(), TransportError> {
        (**self).write_report(report, timeout)
    }
    fn write_reports(
        &mut self,
        reports: &[Report],
        timeout: Duration,
    ) -> Result<(), TransportError> {
        (**self).write_reports(reports, timeout)
    }
    fn read_report(&mut self, timeout: Duration) -> Result<Report, TransportError> {
        (**self).read_report(timeout)
    }
    fn wait_readable(&mut self, timeout: Duration) -> Result<bool, TransportError> {
        (**self).wait_readable(timeout)
    }
    fn describe(&self) -> String {
        (**self).describe()
    }
}

/// Open the device a URI names. `auto` opens the first FIDO device enumeration finds.
pub fn open(uri: &DeviceUri) -> Result<Box<dyn Transport>, TransportError> {
    match uri {
        DeviceUri::Unix(path) => Ok(Box::new(UnixTransport::connect(path)?)),
        // One transport: the first of the list (opening every key is the session's job).
        DeviceUri::UnixList(paths) => {
            let first = paths.first().ok_or(TransportError::NoDevice)?;
            Ok(Box::new(UnixTransport::connect(first)?))
        }
        DeviceUri::Hidraw(path) => Ok(Box::new(HidrawTransport::open(path)?)),
        DeviceUri::Auto => {
            let devices = enumerate()?;
            let first = devices.into_iter().next().ok_or(TransportError::NoDevice)?;
            Ok(Box::new(HidrawTransport::open(&first.path)?))
        }
    }
}
