use std::fmt;
use std::io;
use std::path::PathBuf;

/// Errors moving reports to and from a device.
#[derive(Debug)]
pub enum TransportError {
    /// No FIDO device is attached (enumeration found none).
    NoDevice,
    /// Opening the device or socket failed.
    Open { path: PathBuf, source: io::Error },
    /// The device URI could not be parsed.
    BadUri { uri: String, reason: &'static str },
    /// Nothing arrived within the timeout.
    Timeout,
    /// The peer closed the connection (unplugged key, socket closed).
    Disconnected,
    /// A read or write returned fewer bytes than a whole report.
    ShortReport { expected: usize, got: usize },
    /// Any other I/O failure.
    Io(io::Error),
}

impl fmt::Display for TransportError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TransportError::NoDevice => {
                write!(f, "no security key found: insert your key and try again")
            }
            TransportError::Open { path, source } => {
                if source.kind() == io::ErrorKind::PermissionDenied {
                    write!(
                        f,
                        "cannot open {}: permission denied (run as root, or check the udev rules for hidraw devices)",
                        path.display()
                    )
                } else {
                    write!(f, "cannot open {}: {}", path.display(), source)
                }
            }
            TransportError::BadUri { uri, reason } => write!(
                f,
                "invalid device \"{uri}\": {reason} (expected auto, hidraw:/dev/hidrawN or unix:/path/to.sock)"
            ),
            TransportError::Timeout => write!(f, "the security key did not answer in time"),
            TransportError::Disconnected => {
                write!(f, "the security key was disconnected or the connection closed")
            }
            TransportError::ShortReport { expected, got } => write!(
                f,
                "the security key sent an incomplete report ({got} of {expected} bytes)"
            ),
            TransportError::Io(e) => write!(f, "device I/O error: {e}"),
        }
    }
}

impl std::error::Error for TransportError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            TransportError::Open { source, .. } => Some(source),
            TransportError::Io(e) => Some(e),
            TransportError::NoDevice
            | TransportError::BadUri { .. }
            | TransportError::Timeout
            | TransportError::Disconnected
            | TransportError::ShortReport { .. } => None,
        }
    }
}

impl From<io::Error> for TransportError {
    fn from(e: io::Error) -> Self {
        match e.kind() {
            io::ErrorKind::UnexpectedEof
            | io::ErrorKind::BrokenPipe
            | io::ErrorKind::ConnectionReset => TransportError::Disconnected,
            io::ErrorKind::TimedOut | io::ErrorKind::WouldBlock => TransportError::Timeout,
            _ => TransportError::Io(e),
        }
    }
}
