use std::fmt;
use std::path::PathBuf;

use crate::store::account::LookupError;
use crate::store::fs::FileError;

/// Errors reading or writing records and state. Every message names the file.
#[derive(Debug)]
pub enum StoreError {
    File(FileError),
    /// The file is not valid TOML for its schema. `line` is 1-based when known.
    Parse {
        path: PathBuf,
        line: Option<usize>,
        message: String,
    },
    /// The file parsed but its content is inconsistent (e.g. a key that is not a valid COSE key).
    Invalid {
        path: PathBuf,
        message: String,
    },
    /// The user name cannot name a file.
    BadUserName(String),
    /// The password database could not be asked (NSS error, not "no such user").
    Lookup(LookupError),
}

impl StoreError {
    pub(crate) fn parse(path: &std::path::Path, text: &str, err: &toml::de::Error) -> Self {
        StoreError::Parse {
            path: path.to_path_buf(),
            line: toml_error_line(text, err),
            message: err.message().to_string(),
        }
    }

    /// The file is simply absent (as opposed to unreadable, insecure or malformed).
    pub fn is_not_found(&self) -> bool {
        matches!(self, StoreError::File(FileError::NotFound(_)))
    }
}

impl fmt::Display for StoreError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StoreError::File(e) => e.fmt(f),
            StoreError::Parse {
                path,
                line: Some(l),
                message,
            } => write!(f, "{}:{l}: {message}", path.display()),
            StoreError::Parse {
                path,
                line: None,
                message,
            } => write!(f, "{}: {message}", path.display()),
            StoreError::Invalid { path, message } => write!(f, "{}: {message}", path.display()),
            StoreError::BadUserName(u) => write!(f, "invalid user name {u:?}"),
            StoreError::Lookup(e) => e.fmt(f),
        }
    }
}

impl std::error::Error for StoreError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            StoreError::File(e) => Some(e),
            StoreError::Lookup(e) => Some(e),
            StoreError::Parse { .. } | StoreError::Invalid { .. } | StoreError::BadUserName(_) => {
                None
            }
        }
    }
}

impl From<FileError> for StoreError {
    fn from(e: FileError) -> Self {
        StoreError::File(e)
    }
}

/// The 1-based line a TOML error points at. Counts bytes, so an offset that is not on a
/// character boundary cannot make it panic.
pub(crate) fn toml_error_line(text: &str, err: &toml::de::Error) -> Option<usize> {
    let start = err.span()?.start.min(text.len());
    Some(
        text.as_bytes()[..start]
            .iter()
            .filter(|&&b| b == b'\n')
            .count()
            + 1,
    )
}
