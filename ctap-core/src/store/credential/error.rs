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
    /// The file parsed but its content is inconsistent as a whole (a row that cannot be a
    /// record or state is a `Parse` error, at its line).
    Invalid {
        path: PathBuf,
        problem: Inconsistency,
    },
    /// The user name cannot name a file.
    BadUserName(String),
    /// The password database could not be asked (NSS error, not "no such user").
    Lookup(LookupError),
}

/// What is wrong with a records or state file as a whole.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Inconsistency {
    NotUtf8,
    /// A state file of another layout version.
    StateVersion {
        found: u32,
        expected: u32,
    },
    /// Two credentials with one credential id.
    DuplicateId {
        credential: String,
    },
    /// Two credentials with one name.
    DuplicateName {
        credential: String,
    },
    /// A per-user file repeats a credential of root's records.
    AlsoInRootRecords {
        credential: String,
        id: String,
    },
    /// The TOML writer refused the value; `toml` is its own words.
    Unwritable {
        toml: String,
    },
}

impl fmt::Display for Inconsistency {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Inconsistency::NotUtf8 => f.write_str("is not UTF-8"),
            Inconsistency::StateVersion { found, expected } => write!(
                f,
                "state version {found} is not {expected}: written by another release"
            ),
            Inconsistency::DuplicateId { credential } => {
                write!(f, "credential {credential:?}: credential_id appears twice")
            }
            Inconsistency::DuplicateName { credential } => {
                write!(f, "credential {credential:?}: name appears twice")
            }
            Inconsistency::AlsoInRootRecords { credential, id } => write!(
                f,
                "credential {credential:?} ({id}) is also in root's records: a per-user file may only add keys; remove it from this file"
            ),
            Inconsistency::Unwritable { toml } => write!(f, "cannot be written: {toml}"),
        }
    }
}

impl std::error::Error for Inconsistency {}

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
            StoreError::Invalid { path, problem } => write!(f, "{}: {problem}", path.display()),
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
            StoreError::Invalid { problem, .. } => Some(problem),
            StoreError::Parse { .. } | StoreError::BadUserName(_) => None,
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
