//! The one error type of the softtoken. Every variant says what went wrong and what to do.

use std::fmt;
use std::io;
use std::path::PathBuf;

/// Why the softtoken could not start or had to stop.
#[derive(Debug)]
pub enum Error {
    /// The state file could not be opened or created.
    StateOpen { path: PathBuf, source: io::Error },
    /// The state file exists but is not one of ours (wrong size).
    StateSize {
        path: PathBuf,
        actual: u64,
        expected: u64,
    },
    /// Another process holds the lock on the state file.
    StateLocked { path: PathBuf },
    /// The littlefs filesystem inside the state file could not be formatted or mounted.
    StateCorrupt { path: PathBuf, detail: String },
    /// Binding or configuring the listening socket failed.
    Socket { path: PathBuf, source: io::Error },
    /// The path exists and is not a socket, so we refuse to delete it.
    SocketPathOccupied { path: PathBuf },
    /// Setting up signal handling or spawning a thread failed.
    Runtime {
        what: &'static str,
        source: io::Error,
    },
    /// Setting the PIN at first start failed.
    Pin { detail: String },
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::StateOpen { path, source } => {
                write!(f, "cannot open state file {}: {source}", path.display())
            }
            Error::StateSize {
                path,
                actual,
                expected,
            } => write!(
                f,
                "state file {} has {actual} bytes, expected {expected}: not a ctap-softtoken state \
                 file (give a new path, or an empty file, to create a fresh key)",
                path.display()
            ),
            Error::StateLocked { path } => write!(
                f,
                "state file {} is locked by another ctap-softtoken: one key, one server (copy the \
                 file to run a clone)",
                path.display()
            ),
            Error::StateCorrupt { path, detail } => write!(
                f,
                "state file {} could not be mounted ({detail}): it is damaged or not a \
                 ctap-softtoken state file; delete it to start a fresh key",
                path.display()
            ),
            Error::Socket { path, source } => {
                write!(f, "cannot listen on socket {}: {source}", path.display())
            }
            Error::SocketPathOccupied { path } => write!(
                f,
                "{} exists and is not a socket: refusing to replace it",
                path.display()
            ),
            Error::Runtime { what, source } => write!(f, "{what}: {source}"),
            Error::Pin { detail } => write!(f, "cannot set the PIN: {detail}"),
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Error::StateOpen { source, .. }
            | Error::Socket { source, .. }
            | Error::Runtime { source, .. } => Some(source),
            Error::StateSize { .. }
            | Error::StateLocked { .. }
            | Error::StateCorrupt { .. }
            | Error::SocketPathOccupied { .. }
            | Error::Pin { .. } => None,
        }
    }
}
