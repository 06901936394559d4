//! Where records and state live, and the only code that reads or writes them.

use std::path::{Path, PathBuf};
use std::time::Duration;

use super::record::CredentialFile;
use super::state::{StateFile, STATE_VERSION};
use super::{valid_user_name, StoreError};
use crate::fs::{self, FileError, Ownership, StateLock};

/// Which file a user's records came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RecordsSource {
    /// Root's `/etc/ctap/users/<user>.toml`.
    System(PathBuf),
    /// The user's own `~/.config/ctap/credentials.toml` (only when root's config opts in).
    PerUser(PathBuf),
}

/// A user's enrolled credentials and where they came from.
#[derive(Debug, Clone)]
pub struct UserRecords {
    pub sources: Vec<RecordsSource>,
    /// All credentials, root's file's first.
    pub file: CredentialFile,
    /// How many of `file.credentials` come from root's file.
    pub system_count: usize,
}

/// The records and state directories. Paths come from root's configuration (or tests).
#[derive(Debug, Clone)]
pub struct CredentialStore {
    pub records_dir: PathBuf,
    pub state_dir: PathBuf,
    /// Also read `~user/.config/ctap/credentials.toml`: root's explicit opt-in.
    pub per_user_records: bool,
}

/// The per-user credentials file, relative to a home directory.
pub const PER_USER_FILE: &str = ".config/ctap/credentials.toml";

impl CredentialStore {
    pub fn system() -> Self {
        CredentialStore {
            records_dir: PathBuf::from("/etc/ctap/users"),
            state_dir: PathBuf::from("/var/lib/ctap"),
            per_user_records: false,
        }
    }

    fn checked(user: &str) -> Result<&str, StoreError> {
        if valid_user_name(user) {
            Ok(user)
        } else {
            Err(StoreError::BadUserName(user.to_string()))
        }
    }

    pub fn records_path(&self, user: &str) -> Result<PathBuf, StoreError> {
        Ok(self
            .records_dir
            .join(format!("{}.toml", Self::checked(user)?)))
    }

    pub fn state_path(&self, user: &str) -> Result<PathBuf, StoreError> {
        Ok(self
            .state_dir
            .join(format!("{}.toml", Self::checked(user)?)))
    }

    fn lock_path(&self, user: &str) -> Result<PathBuf, StoreError> {
        Ok(self
            .state_dir
            .join(format!(".{}.lock", Self::checked(user)?)))
    }

    /// Both directories exist, and they and every directory above them are owned by root (or
    /// the running user) and not group- or world-writable. Login checks this before anything
    /// else: a missing directory (a typo, an unmounted volume) must not read as "no records".
    pub fn check_roots(&self) -> Result<(), FileError> {
        let me = Ownership {
            uid: nix::unistd::geteuid().as_raw(),
        };
        fs::check_trusted_dir(&self.records_dir, me)?;
        fs::check_trusted_dir(&self.state_dir, me)?;
        Ok(())
    }

    /// The user's records: root's file, plus the user's own file when opted in. A user with
    /// neither gets `StoreError` with [`StoreError::is_not_found`]; any other problem (unreadable,
    /// insecure, malformed) is a different error, so `nouserok` can never skip a broken file.
    pub fn load_records(&self, user: &str) -> Result<UserRecords, StoreError> {
        let system_path = self.records_path(user)?;
        let mut sources = Vec::new();
        let mut file = CredentialFile::default();
        let mut not_found = None;
        match load_credential_file(&system_path, Ownership::ROOT) {
            Ok(f) => {
                sources.push(RecordsSource::System(system_path));
                file.credentials.extend(f.credentials);
            }
            Err(e) if e.is_not_found() => not_found = Some(e),
            Err(e) => return Err(e),
        }
        let system_count = file.credentials.len();
        if self.per_user_records {
            if let Some((home, uid)) = home_of(user) {
                let path = home.join(PER_USER_FILE);
                match load_credential_file(&path, Ownership { uid }) {
                    Ok(f) => {
                        sources.push(RecordsSource::PerUser(path));
                        file.credentials.extend(f.credentials);
                    }
                    Err(e) if e.is_not_found() => {}
                    Err(e) => return Err(e),
                }
            }
        }
        match (sources.is_empty(), not_found) {
            (true, Some(e)) => Err(e),
            _ => Ok(UserRecords {
                sources,
                system_count,
                file,
            }),
        }
    }

    /// Root's records file for `user` alone (what `ctap-enroll` edits); empty when absent.
    pub fn load_system_records(&self, user: &str) -> Result<CredentialFile, StoreError> {
        match load_credential_file(&self.records_path(user)?, Ownership::ROOT) {
            Err(e) if e.is_not_found() => Ok(CredentialFile::default()),
            other => other,
        }
    }

    /// Write root's records file atomically (0644: the PAM module and `list` read it).
    pub fn save_system_records(&self, user: &str, file: &CredentialFile) -> Result<(), StoreError> {
        let path = self.records_path(user)?;
        save_credential_file(&path, file, 0o644)
    }

    /// Take the user's state lock and read the state under it. Missing state is empty state; a
    /// malformed state file is an error, never a reset (a reset would forget counters).
    pub fn lock_state(&self, user: &str, wait: Duration) -> Result<StateGuard, StoreError> {
        ensure_dir(&self.state_dir, 0o700)?;
        let lock = StateLock::acquire(&self.lock_path(user)?, wait)?;
        let path = self.state_path(user)?;
        let state = read_state_file(&path)?;
        Ok(StateGuard {
            _lock: lock,
            path,
            state,
        })
    }

    /// Read the state without locking, for display (`list`).
    pub fn read_state(&self, user: &str) -> Result<StateFile, StoreError> {
        read_state_file(&self.state_path(user)?)
    }
}

/// The state of one user, held under that user's exclusive lock.
pub struct StateGuard {
    _lock: StateLock,
    path: PathBuf,
    pub state: StateFile,
}

impl StateGuard {
    /// Write the state atomically (temp file, fsync, rename, fsync dir), still under the lock.
    pub fn commit(&self) -> Result<(), StoreError> {
        let text = toml::to_string(&self.state).map_err(|e| StoreError::Invalid {
            path: self.path.clone(),
            message: e.to_string(),
        })?;
        fs::write_atomic(&self.path, text.as_bytes(), 0o600)?;
        Ok(())
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

fn read_state_file(path: &Path) -> Result<StateFile, StoreError> {
    let bytes = match fs::read_private(
        path,
        Ownership {
            uid: nix::unistd::geteuid().as_raw(),
        },
    ) {
        Ok(b) => b,
        Err(FileError::NotFound(_)) => return Ok(StateFile::default()),
        Err(e) => return Err(e.into()),
    };
    let text = String::from_utf8(bytes).map_err(|_| StoreError::Invalid {
        path: path.to_path_buf(),
        message: "is not UTF-8".into(),
    })?;
    let state: StateFile = toml::from_str(&text).map_err(|e| StoreError::parse(path, &text, &e))?;
    if state.version != STATE_VERSION {
        return Err(StoreError::Invalid {
            path: path.to_path_buf(),
            message: format!(
                "state version {} is not {STATE_VERSION}: written by another release",
                state.version
            ),
        });
    }
    Ok(state)
}

/// Read and validate a credentials file owned by `owner`.
pub fn load_credential_file(path: &Path, owner: Ownership) -> Result<CredentialFile, StoreError> {
    let bytes = fs::read_trusted(path, owner)?;
    let text = String::from_utf8(bytes).map_err(|_| StoreError::Invalid {
        path: path.to_path_buf(),
        message: "is not UTF-8".into(),
    })?;
    let file: CredentialFile =
        toml::from_str(&text).map_err(|e| StoreError::parse(path, &text, &e))?;
    file.validate().map_err(|message| StoreError::Invalid {
        path: path.to_path_buf(),
        message,
    })?;
    Ok(file)
}

/// Write a credentials file atomically, creating its directory if needed.
pub fn save_credential_file(
    path: &Path,
    file: &CredentialFile,
    mode: u32,
) -> Result<(), StoreError> {
    file.validate().map_err(|message| StoreError::Invalid {
        path: path.to_path_buf(),
        message,
    })?;
    if let Some(dir) = path.parent() {
        ensure_dir(dir, 0o755)?;
    }
    let text = toml::to_string(file).map_err(|e| StoreError::Invalid {
        path: path.to_path_buf(),
        message: e.to_string(),
    })?;
    fs::write_atomic(path, text.as_bytes(), mode)?;
    Ok(())
}

fn ensure_dir(dir: &Path, mode: u32) -> Result<(), StoreError> {
    use std::os::unix::fs::DirBuilderExt;
    if dir.is_dir() {
        return Ok(());
    }
    let io = |source| {
        StoreError::File(FileError::Io {
            path: dir.to_path_buf(),
            source,
        })
    };
    // Missing parents get the usual 0755; only the directory itself gets `mode` (0700 for state).
    if let Some(parent) = dir
        .parent()
        .filter(|p| !p.as_os_str().is_empty() && !p.is_dir())
    {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o755)
            .create(parent)
            .map_err(io)?;
    }
    match std::fs::DirBuilder::new().mode(mode).create(dir) {
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
        other => other.map_err(io),
    }
}

/// A user's home directory and uid, from the password database.
pub fn home_of(user: &str) -> Option<(PathBuf, u32)> {
    let u = nix::unistd::User::from_name(user).ok()??;
    Some((u.dir, u.uid.as_raw()))
}
