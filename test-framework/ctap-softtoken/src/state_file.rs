//! The key's persistent memory: a littlefs image in one file, opened once and locked.
//!
//! trussed's own `virt::StorageConfig::filesystem` asserts on a file of the wrong size and
//! unwraps every I/O error, reopening the file by path for each block access. We need a clear
//! error instead of a panic, an exclusive lock held for the whole run, and I/O on one open
//! descriptor, so this module brings its own littlefs [`Storage`] over a held, locked file.

use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use littlefs2::consts::{U512, U8};
use littlefs2::driver::Storage;
use littlefs2::io::{Error as LfsError, Result as LfsResult};
use nix::errno::Errno;
use nix::fcntl::{Flock, FlockArg};
use trussed::virt::StorageConfig;

use crate::error::Error;

const BLOCK_SIZE: usize = 512;
const BLOCK_COUNT: usize = 256;

/// Size of every state file: 128 KiB of littlefs, room for dozens of resident credentials.
pub const STATE_FILE_SIZE: u64 = (BLOCK_SIZE * BLOCK_COUNT) as u64;

/// An open, exclusively locked state file.
pub struct StateFile {
    path: PathBuf,
    file: Flock<File>,
    fresh: bool,
}

impl StateFile {
    /// Open (or create) the state file, lock it, and check that it is one of ours.
    ///
    /// A missing or empty file becomes a fresh key. Any other size is refused: it is not our
    /// file, and littlefs would misread it.
    pub fn open(path: &Path) -> Result<StateFile, Error> {
        let open_error = |source| Error::StateOpen {
            path: path.to_owned(),
            source,
        };
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .custom_flags(nix::libc::O_CLOEXEC | nix::libc::O_NOFOLLOW)
            .open(path)
            .map_err(open_error)?;
        let file = match Flock::lock(file, FlockArg::LockExclusiveNonblock) {
            Ok(locked) => locked,
            Err((_, Errno::EWOULDBLOCK)) => {
                return Err(Error::StateLocked {
                    path: path.to_owned(),
                })
            }
            Err((_, errno)) => return Err(open_error(io::Error::from(errno))),
        };
        let len = file.metadata().map_err(open_error)?.len();
        let fresh = match len {
            0 => {
                file.set_len(STATE_FILE_SIZE).map_err(open_error)?;
                true
            }
            STATE_FILE_SIZE => false,
            actual => {
                return Err(Error::StateSize {
                    path: path.to_owned(),
                    actual,
                    expected: STATE_FILE_SIZE,
                })
            }
        };
        Ok(StateFile {
            path: path.to_owned(),
            file,
            fresh,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// True if the file was just created: the key has no state yet.
    pub fn is_fresh(&self) -> bool {
        self.fresh
    }

    /// A trussed storage configuration backed by this file (formatted first if fresh).
    ///
    /// The storage gets its own descriptor for the same open file description, so the lock
    /// held by `self` covers it; `self` must outlive the mounted filesystem.
    pub fn storage_config(&self) -> Result<StorageConfig<'static>, Error> {
        let file = self.file.try_clone().map_err(|source| Error::StateOpen {
            path: self.path.clone(),
            source,
        })?;
        Ok(StorageConfig {
            storage: Box::new(FileStorage { file }),
            format: self.fresh,
        })
    }
}

/// littlefs block device on a file. I/O errors become littlefs `IO` errors, never panics.
struct FileStorage {
    file: File,
}

fn in_bounds(offset: usize, len: usize) -> LfsResult<u64> {
    match offset.checked_add(len) {
        Some(end) if end <= BLOCK_SIZE * BLOCK_COUNT => Ok(offset as u64),
        _ => Err(LfsError::NO_SPACE),
    }
}

impl Storage for FileStorage {
    const READ_SIZE: usize = 16;
    const WRITE_SIZE: usize = 16;
    const BLOCK_SIZE: usize = BLOCK_SIZE;
    const BLOCK_COUNT: usize = BLOCK_COUNT;
    const BLOCK_CYCLES: isize = -1;

    type CACHE_SIZE = U512;
    type LOOKAHEAD_SIZE = U8;

    fn read(&mut self, offset: usize, buffer: &mut [u8]) -> LfsResult<usize> {
        let at = in_bounds(offset, buffer.len())?;
        self.file
            .read_exact_at(buffer, at)
            .map_err(|_| LfsError::IO)?;
        Ok(buffer.len())
    }

    fn write(&mut self, offset: usize, data: &[u8]) -> LfsResult<usize> {
        let at = in_bounds(offset, data.len())?;
        self.file.write_all_at(data, at).map_err(|_| LfsError::IO)?;
        Ok(data.len())
    }

    fn erase(&mut self, offset: usize, len: usize) -> LfsResult<usize> {
        let at = in_bounds(offset, len)?;
        let erased = vec![0xFF; len];
        self.file
            .write_all_at(&erased, at)
            .map_err(|_| LfsError::IO)?;
        Ok(len)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn new_file_is_fresh_and_sized() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("state");
        let state = StateFile::open(&path).expect("open");
        assert!(state.is_fresh());
        assert_eq!(
            std::fs::metadata(&path).expect("stat").len(),
            STATE_FILE_SIZE
        );
    }

    #[test]
    fn wrong_size_is_refused() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("state");
        std::fs::write(&path, b"not a key").expect("write");
        let err = StateFile::open(&path).err().expect("must fail");
        let message = err.to_string();
        assert!(message.contains("has 9 bytes"), "{message}");
        assert!(
            message.contains("not a ctap-softtoken state file"),
            "{message}"
        );
    }

    #[test]
    fn second_open_is_locked_out() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("state");
        let _first = StateFile::open(&path).expect("open");
        let err = StateFile::open(&path).err().expect("must fail");
        assert!(matches!(err, Error::StateLocked { .. }), "{err}");
    }

    #[test]
    fn out_of_bounds_access_is_an_error() {
        assert!(in_bounds(BLOCK_SIZE * BLOCK_COUNT, 1).is_err());
        assert!(in_bounds(usize::MAX, 2).is_err());
        assert!(in_bounds(0, BLOCK_SIZE).is_ok());
    }
}
