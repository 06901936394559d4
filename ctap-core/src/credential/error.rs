use std::fmt;
use std::path::PathBuf;

use crate::fs::FileError;

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
}

impl StoreError {
    pub(crate) fn parse(path: &std::path::Path, text: &str, err: &toml::de::Error) -> Self {
        let line = err
            .span()
            .map(|s| text[..s.start.min(text.len())].matches('\n').count() + 1);
        StoreError::Parse {
            path: path.to_path_buf(),
            line,
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
        }
    }
}

impl std::error::Error for StoreError {}

impl From<FileError> for StoreError {
    fn from(e: FileError) -> Self {
        StoreError::File(e)
    }
}
