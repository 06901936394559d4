//! `--pin`: give a fresh key its PIN at start.
//!
//! Setting a PIN is client-side crypto (ECDH key agreement, AES, HMAC) that ctap-core already
//! implements for the PAM module and the CLI; we use it rather than write a second copy. The
//! client talks to our own CTAPHID layer over a socket pair, exactly as a socket client would.

use std::io::Read;
use std::os::unix::net::UnixStream;
use std::time::Duration;

use ctap_core::transport::ctap2::pin::Pin;
use ctap_core::transport::ctap2::Ctap2;
use ctap_core::transport::ctaphid::CtapHidChannel;
use ctap_core::transport::device::{Report, Transport, TransportError};

use crate::engine::EngineHandle;
use crate::error::Error;

/// Check `--pin` before anything else happens (CTAP: 4 to 63 bytes, at least 4 characters).
pub fn parse(pin: &str) -> Result<Pin, Error> {
    Pin::new(pin.to_owned()).map_err(|e| Error::Pin {
        detail: e.to_string(),
    })
}

/// Set `pin` unless the key has a PIN already. Returns whether it set one.
pub fn set_if_unset(engine: &EngineHandle, pin: &Pin) -> Result<bool, Error> {
    let failed = |detail: String| Error::Pin { detail };
    let (ours, theirs) = UnixStream::pair().map_err(|e| failed(e.to_string()))?;
    let engine = engine.clone();
    std::thread::Builder::new()
        .name("pin-setup".to_owned())
        .spawn(move || crate::connection::serve(theirs, engine, None, 0))
        .map_err(|e| failed(e.to_string()))?;

    let hid = CtapHidChannel::open(PairTransport(ours)).map_err(|e| failed(e.to_string()))?;
    let mut ctap = Ctap2::new(hid).map_err(|e| failed(e.to_string()))?;
    if ctap.info().option("clientPin") == Some(true) {
        return Ok(false);
    }
    ctap.set_pin(pin).map_err(|e| failed(e.to_string()))?;
    Ok(true)
}

/// A ctap-core transport over our end of an in-process socket pair.
struct PairTransport(UnixStream);

impl Transport for PairTransport {
    fn write_report(&mut self, report: &Report, timeout: Duration) -> Result<(), TransportError> {
        ctap_core::transport::device::send_all_nosignal(&self.0, report, timeout)
            .map_err(TransportError::from)
    }

    fn read_report(&mut self, timeout: Duration) -> Result<Report, TransportError> {
        self.0
            .set_read_timeout(Some(timeout.max(Duration::from_millis(1))))
            .map_err(TransportError::from)?;
        let mut report = [0u8; 64];
        self.0
            .read_exact(&mut report)
            .map_err(TransportError::from)?;
        Ok(report)
    }

    fn describe(&self) -> String {
        "ctap-softtoken (in-process)".to_owned()
    }
}
