//! Opening files we trust, and writing state so that a crash leaves the old or the new file.
//!
//! The rule (sudo-rs `secure_open`, sshd StrictModes): open first with O_NOFOLLOW, then check the
//! open descriptor (regular file, expected owner, not group- or world-writable) and its parent
//! directory; refuse rather than repair. Checking the path before opening would race.

use std::fmt;
use std::fs::{File, Metadata, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use nix::fcntl::{Flock, FlockArg};

/// Why a file was refused or could not be read or written.
#[derive(Debug)]
pub enum FileError {
    NotFound(PathBuf),
    /// The file exists but its ownership, type or mode makes it untrustworthy.
    Insecure {
        path: PathBuf,
        why: String,
    },
    Io {
        path: PathBuf,
        source: io::Error,
    },
    /// Another process holds the lock longer than we wait.
    LockTimeout(PathBuf),
}

impl FileError {
    fn io(path: &Path, source: io::Error) -> Self {
        match source.kind() {
            io::ErrorKind::NotFound => FileError::NotFound(path.to_path_buf()),
            _ if source.raw_os_error() == Some(nix::libc::ELOOP) => FileError::Insecure {
                path: path.to_path_buf(),
                why: "is a symbolic link".into(),
            },
            _ => FileError::Io {
                path: path.to_path_buf(),
                source,
            },
        }
    }

    pub fn path(&self) -> &Path {
        match self {
            FileError::NotFound(p) | FileError::LockTimeout(p) => p,
            FileError::Insecure { path, .. } | FileError::Io { path, .. } => path,
        }
    }
}

impl fmt::Display for FileError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FileError::NotFound(p) => write!(f, "{}: no such file", p.display()),
            FileError::Insecure { path, why } => write!(f, "{}: refused: {why}", path.display()),
            FileError::Io { path, source } => write!(f, "{}: {source}", path.display()),
            FileError::LockTimeout(p) => {
                write!(f, "{}: still locked by another process", p.display())
            }
        }
    }
}

impl std::error::Error for FileError {}

/// Who may own a trusted file, and whether the group may read it.
#[derive(Debug, Clone, Copy)]
pub struct Ownership {
    pub uid: u32,
}

impl Ownership {
    pub const ROOT: Ownership = Ownership { uid: 0 };
}

fn check_metadata(path: &Path, meta: &Metadata, owner: Ownership) -> Result<(), FileError> {
    let insecure = |why: String| {
        Err(FileError::Insecure {
            path: path.to_path_buf(),
            why,
        })
    };
    if !meta.file_type().is_file() {
        return insecure("is not a regular file".into());
    }
    if meta.uid() != owner.uid {
        return insecure(format!(
            "is owned by uid {} but must be owned by uid {}: chown it",
            meta.uid(),
            owner.uid
        ));
    }
    if meta.mode() & 0o022 != 0 {
        return insecure(format!(
            "is group- or world-writable (mode {:04o}): chmod go-w {}",
            meta.mode() & 0o7777,
            path.display()
        ));
    }
    Ok(())
}

fn check_parent(path: &Path, owner: Ownership) -> Result<(), FileError> {
    let Some(parent) = path.parent() else {
        return Ok(());
    };
    let parent = if parent.as_os_str().is_empty() {
        Path::new(".")
    } else {
        parent
    };
    let meta = std::fs::symlink_metadata(parent).map_err(|e| FileError::io(parent, e))?;
    let insecure = |why: String| {
        Err(FileError::Insecure {
            path: parent.to_path_buf(),
            why,
        })
    };
    if !meta.file_type().is_dir() {
        return insecure("is not a directory".into());
    }
    if meta.uid() != 0 && meta.uid() != owner.uid {
        return insecure(format!(
            "directory is owned by uid {}, neither root nor the file's owner",
            meta.uid()
        ));
    }
    // A writable directory lets others swap the file; sticky /tmp-like directories are fine
    // only for files the owner created, which is not a configuration we support.
    if meta.mode() & 0o022 != 0 {
        return insecure(format!(
            "directory is group- or world-writable (mode {:04o})",
            meta.mode() & 0o7777
        ));
    }
    Ok(())
}

/// Read a whole file after checking it as the module doc says.
pub fn read_trusted(path: &Path, owner: Ownership) -> Result<Vec<u8>, FileError> {
    let mut file = OpenOptions::new()
        .read(true)
        .custom_flags(nix::libc::O_NOFOLLOW | nix::libc::O_CLOEXEC | nix::libc::O_NONBLOCK)
        .open(path)
        .map_err(|e| FileError::io(path, e))?;
    let meta = file.metadata().map_err(|e| FileError::io(path, e))?;
    check_metadata(path, &meta, owner)?;
    check_parent(path, owner)?;
    read_bounded(path, &mut file, &meta)
}

/// Configuration and state are small; a huge file is a mistake or an attack.
pub const MAX_FILE: u64 = 1 << 20;

/// Read at most [`MAX_FILE`] bytes: the size is checked before and, since a file its owner can
/// write may grow after the fstat, again while reading.
fn read_bounded(path: &Path, file: &mut File, meta: &Metadata) -> Result<Vec<u8>, FileError> {
    let too_large = || FileError::Insecure {
        path: path.to_path_buf(),
        why: "is larger than 1 MiB".into(),
    };
    if meta.len() > MAX_FILE {
        return Err(too_large());
    }
    let mut buf = Vec::with_capacity(usize::try_from(meta.len()).unwrap_or(0));
    file.take(MAX_FILE + 1)
        .read_to_end(&mut buf)
        .map_err(|e| FileError::io(path, e))?;
    if buf.len() as u64 > MAX_FILE {
        return Err(too_large());
    }
    Ok(buf)
}

/// Like [`read_trusted`] for a file in a user's home directory, opened with the user's
/// filesystem identity (setfsuid/setfsgid on this thread, restored before returning), so that
/// root follows no path the user could not follow: a symlinked `~/.config` pointing at a file
/// only root may read is refused by the kernel, not read. The file itself must then pass the
/// usual checks (no symlink, owned by `owner`, not group- or world-writable, parent directory
/// owned by root or `owner`), and is read through a bounded reader.
///
/// Only the fsuid and fsgid change; supplementary groups stay root's (root normally has none
/// beyond gid 0). When the caller is not root the calls change nothing and the caller's own
/// permissions apply.
pub fn read_trusted_as_user(path: &Path, owner: Ownership, gid: u32) -> Result<Vec<u8>, FileError> {
    use nix::unistd::{setfsgid, setfsuid, Gid, Uid};
    let old_gid = setfsgid(Gid::from_raw(gid));
    let old_uid = setfsuid(Uid::from_raw(owner.uid));
    let opened = OpenOptions::new()
        .read(true)
        .custom_flags(nix::libc::O_NOFOLLOW | nix::libc::O_CLOEXEC | nix::libc::O_NONBLOCK)
        .open(path);
    setfsuid(old_uid);
    setfsgid(old_gid);
    let mut file = opened.map_err(|e| FileError::io(path, e))?;
    let meta = file.metadata().map_err(|e| FileError::io(path, e))?;
    check_metadata(path, &meta, owner)?;
    check_parent(path, owner)?;
    read_bounded(path, &mut file, &meta)
}

/// Open a file whose owner is not known in advance (an authfile to import): no symlink, a
/// regular file not group- or world-writable, in a directory owned by root or the file's owner
/// and writable by nobody else, at most [`MAX_FILE`] bytes. Returns the contents and the owner's
/// uid, so the caller can decide what that owner may vouch for.
pub fn read_trusted_any_owner(path: &Path) -> Result<(Vec<u8>, u32), FileError> {
    let mut file = OpenOptions::new()
        .read(true)
        .custom_flags(nix::libc::O_NOFOLLOW | nix::libc::O_CLOEXEC | nix::libc::O_NONBLOCK)
        .open(path)
        .map_err(|e| FileError::io(path, e))?;
    let meta = file.metadata().map_err(|e| FileError::io(path, e))?;
    let owner = Ownership { uid: meta.uid() };
    check_metadata(path, &meta, owner)?;
    check_parent(path, owner)?;
    Ok((read_bounded(path, &mut file, &meta)?, owner.uid))
}

/// The temporary files [`write_atomic`] makes for `path`: `.<name>.tmp.<pid>.<8 hex digits>`.
fn is_temp_of(candidate: &str, name: &str) -> bool {
    let Some(rest) = candidate
        .strip_prefix('.')
        .and_then(|c| c.strip_prefix(name))
        .and_then(|c| c.strip_prefix(".tmp."))
    else {
        return false;
    };
    match rest.split_once('.') {
        Some((pid, hex)) => {
            !pid.is_empty()
                && pid.bytes().all(|b| b.is_ascii_digit())
                && hex.len() == 8
                && hex.bytes().all(|b| b.is_ascii_hexdigit())
        }
        None => false,
    }
}

/// Remove the temporary files an interrupted [`write_atomic`] of `path` left behind (a write
/// killed between creating its temporary file and the rename). Call it only while holding the
/// lock every writer of `path` takes, so that no live write's temporary file can be removed.
/// Only regular files with exactly the temporary-name pattern go; returns how many. Failures
/// are ignored: the next write tries again and `check-config` reports what remains.
pub fn remove_stale_temps(path: &Path) -> usize {
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let Some(name) = path.file_name().and_then(|n| n.to_str()) else {
        return 0;
    };
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    let mut removed = 0;
    for entry in entries.flatten() {
        let file_name = entry.file_name();
        let Some(candidate) = file_name.to_str() else {
            continue;
        };
        // file_type() does not follow symlinks.
        if is_temp_of(candidate, name)
            && entry.file_type().is_ok_and(|t| t.is_file())
            && std::fs::remove_file(entry.path()).is_ok()
        {
            removed += 1;
        }
    }
    removed
}

/// Replace `path` with `contents` atomically: a temporary file in the same directory, fsync,
/// rename over the target, fsync of the directory. A crash at any instant leaves either the old
/// or the new file, never a mix.
pub fn write_atomic(path: &Path, contents: &[u8], mode: u32) -> Result<(), FileError> {
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = dir.join(format!(
        ".{name}.tmp.{}.{:08x}",
        std::process::id(),
        rand::random::<u32>()
    ));
    let result = (|| {
        let mut f = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(mode)
            .custom_flags(nix::libc::O_NOFOLLOW | nix::libc::O_CLOEXEC)
            .open(&tmp)?;
        f.write_all(contents)?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)?;
        File::open(dir)?.sync_all()
    })();
    if let Err(e) = result {
        let _ = std::fs::remove_file(&tmp);
        return Err(FileError::io(path, e));
    }
    Ok(())
}

/// An exclusive lock on a per-user lock file, released on drop.
///
/// The lock lives on its own file, not on the state file: the state file is replaced by rename,
/// and a lock on the old inode would not exclude a process that opened the new one.
pub struct StateLock {
    _lock: Flock<File>,
}

impl StateLock {
    /// Wait up to `wait` for the lock (another login of the same user holds it while its key is
    /// touched).
    pub fn acquire(path: &Path, wait: Duration) -> Result<Self, FileError> {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .custom_flags(nix::libc::O_NOFOLLOW | nix::libc::O_CLOEXEC)
            .open(path)
            .map_err(|e| FileError::io(path, e))?;
        let deadline = Instant::now() + wait;
        let mut file = file;
        loop {
            match Flock::lock(file, FlockArg::LockExclusiveNonblock) {
                Ok(lock) => return Ok(StateLock { _lock: lock }),
                Err((f, nix::errno::Errno::EWOULDBLOCK)) if Instant::now() < deadline => {
                    file = f;
                    std::thread::sleep(Duration::from_millis(20));
                }
                Err((_, nix::errno::Errno::EWOULDBLOCK)) => {
                    return Err(FileError::LockTimeout(path.to_path_buf()))
                }
                Err((_, e)) => return Err(FileError::io(path, io::Error::from(e))),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn tmpdir() -> PathBuf {
        let d = std::env::temp_dir().join(format!("ctap-fs-{}", rand::random::<u64>()));
        std::fs::create_dir(&d).unwrap();
        std::fs::set_permissions(&d, std::fs::Permissions::from_mode(0o755)).unwrap();
        d
    }

    fn me() -> Ownership {
        Ownership {
            uid: nix::unistd::geteuid().as_raw(),
        }
    }

    #[test]
    fn symlinks_writable_and_foreign_files_are_refused() {
        let d = tmpdir();
        let f = d.join("records.toml");
        std::fs::write(&f, "x").unwrap();
        std::fs::set_permissions(&f, std::fs::Permissions::from_mode(0o644)).unwrap();
        assert_eq!(read_trusted(&f, me()).unwrap(), b"x");

        std::os::unix::fs::symlink(&f, d.join("link.toml")).unwrap();
        let err = read_trusted(&d.join("link.toml"), me()).unwrap_err();
        assert!(err.to_string().contains("symbolic link"), "{err}");

        std::fs::set_permissions(&f, std::fs::Permissions::from_mode(0o666)).unwrap();
        let err = read_trusted(&f, me()).unwrap_err();
        assert!(err.to_string().contains("world-writable"), "{err}");
        std::fs::set_permissions(&f, std::fs::Permissions::from_mode(0o644)).unwrap();

        let other = Ownership {
            uid: me().uid + 4242,
        };
        let err = read_trusted(&f, other).unwrap_err();
        assert!(err.to_string().contains("must be owned by uid"), "{err}");

        assert!(matches!(
            read_trusted(&d.join("missing"), me()),
            Err(FileError::NotFound(_))
        ));
        std::fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn writable_parent_directory_is_refused() {
        let d = tmpdir();
        let f = d.join("s");
        std::fs::write(&f, "x").unwrap();
        std::fs::set_permissions(&d, std::fs::Permissions::from_mode(0o777)).unwrap();
        let err = read_trusted(&f, me()).unwrap_err();
        assert!(
            err.to_string()
                .contains("directory is group- or world-writable"),
            "{err}"
        );
        std::fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn atomic_write_replaces_and_leaves_no_temp_files() {
        let d = tmpdir();
        let f = d.join("state.toml");
        write_atomic(&f, b"one", 0o600).unwrap();
        write_atomic(&f, b"two", 0o600).unwrap();
        assert_eq!(std::fs::read(&f).unwrap(), b"two");
        assert_eq!(std::fs::metadata(&f).unwrap().mode() & 0o777, 0o600);
        assert_eq!(std::fs::read_dir(&d).unwrap().count(), 1);
        std::fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn stale_temp_files_of_one_file_are_removed_and_nothing_else() {
        let d = tmpdir();
        let f = d.join("alice.toml");
        write_atomic(&f, b"one", 0o600).unwrap();
        let stale = [
            ".alice.toml.tmp.4242.0badcafe",
            ".alice.toml.tmp.1.00000000",
        ];
        let keep = [
            ".alice.toml.toml.tmp.1.00000000", // another user's (alice.toml)
            ".bob.toml.tmp.1.00000000",
            ".alice.toml.tmp.x.00000000",
            ".alice.lock",
            "alice.toml",
        ];
        for n in stale.iter().chain(&keep[..4]) {
            std::fs::write(d.join(n), "partial").unwrap();
        }
        std::os::unix::fs::symlink(&f, d.join(".alice.toml.tmp.7.0000000a")).unwrap();
        assert_eq!(remove_stale_temps(&f), 2);
        for n in stale {
            assert!(!d.join(n).exists(), "{n}");
        }
        for n in keep {
            assert!(d.join(n).exists(), "{n}");
        }
        assert!(d
            .join(".alice.toml.tmp.7.0000000a")
            .symlink_metadata()
            .is_ok());
        std::fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn a_file_growing_past_the_cap_is_refused_and_owner_is_reported() {
        let d = tmpdir();
        let f = d.join("big");
        std::fs::write(&f, vec![b'x'; (MAX_FILE + 1) as usize]).unwrap();
        let err = read_trusted_any_owner(&f).unwrap_err();
        assert!(err.to_string().contains("larger than 1 MiB"), "{err}");
        std::fs::write(&f, "small").unwrap();
        let (bytes, uid) = read_trusted_any_owner(&f).unwrap();
        assert_eq!((bytes.as_slice(), uid), (&b"small"[..], me().uid));
        std::os::unix::fs::symlink(&f, d.join("link")).unwrap();
        assert!(read_trusted_any_owner(&d.join("link")).is_err());
        std::fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn lock_excludes_a_second_holder_until_dropped() {
        let d = tmpdir();
        let l = d.join("alice.lock");
        let first = StateLock::acquire(&l, Duration::from_millis(10)).unwrap();
        assert!(matches!(
            StateLock::acquire(&l, Duration::from_millis(50)),
            Err(FileError::LockTimeout(_))
        ));
        drop(first);
        StateLock::acquire(&l, Duration::from_millis(10)).unwrap();
        std::fs::remove_dir_all(&d).unwrap();
    }
}
