//! Opening files we trust, and writing state so that a crash leaves the old or the new file.
//!
//! The rule (sudo-rs `secure_open`, sshd StrictModes): open first with O_NOFOLLOW, then check the
//! open descriptor (regular file, expected owner, not group- or world-writable) and its parent
//! directory; refuse rather than repair. Checking the path before opening would race.

use std::fmt;
use std::fs::{File, Metadata, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, MetadataExt, OpenOptionsExt};
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

impl std::error::Error for FileError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            FileError::Io { source, .. } => Some(source),
            FileError::NotFound(_) | FileError::Insecure { .. } | FileError::LockTimeout(_) => None,
        }
    }
}

/// Who may own a trusted file, and whether the group may read it.
#[derive(Debug, Clone, Copy)]
pub struct Ownership {
    pub uid: u32,
}

impl Ownership {
    pub const ROOT: Ownership = Ownership { uid: 0 };

    /// This process's effective uid: the owner of the files it writes for itself (root's state
    /// when it runs as root, the user's own in a per-user agent).
    pub fn effective() -> Ownership {
        Ownership {
            uid: nix::unistd::geteuid().as_raw(),
        }
    }
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

/// Check one directory on the way to a trusted file: a directory, owned by root or by one of
/// `owners`, and not group- or world-writable. A sticky world-writable directory such as /tmp is
/// refused too: anyone can create a name there before the owner does.
fn check_dir(dir: &Path, meta: &Metadata, owners: &[u32]) -> Result<(), FileError> {
    let insecure = |why: String| {
        Err(FileError::Insecure {
            path: dir.to_path_buf(),
            why,
        })
    };
    if !meta.file_type().is_dir() {
        return insecure("is not a directory".into());
    }
    if meta.uid() != 0 && !owners.contains(&meta.uid()) {
        return insecure(format!(
            "directory is owned by uid {}, neither root nor the file's owner: chown root {}",
            meta.uid(),
            dir.display()
        ));
    }
    if meta.mode() & 0o022 != 0 {
        return insecure(format!(
            "directory is group- or world-writable (mode {:04o}): chmod go-w {}",
            meta.mode() & 0o7777,
            dir.display()
        ));
    }
    Ok(())
}

/// The names a path walks through, `..` kept (resolved against the walk so far, after links).
fn walk_parts(path: &Path) -> Vec<std::ffi::OsString> {
    use std::path::Component;
    path.components()
        .filter_map(|c| match c {
            Component::Normal(n) => Some(n.to_os_string()),
            Component::ParentDir => Some("..".into()),
            _ => None,
        })
        .collect()
}

/// Directories that passed the walk, each with the owners it passed for.
type Passed = Vec<(PathBuf, Vec<u32>)>;

thread_local! {
    /// What [`check_ancestors`] passed while a [`TrustedWalkMemo`] is alive on this thread;
    /// `None` outside one.
    static WALK_MEMO: std::cell::RefCell<Option<Passed>> = const { std::cell::RefCell::new(None) };
}

/// While alive, each directory the trusted walk passes is checked once on this thread, not
/// once per file below it.
///
/// Why: one authentication reads root's config, then checks the records and state directories
/// and reads the uid index: four walks from `/` that share most of their directories (seven
/// `statx` each in the benchmark's tree, a third of the no-user path's system calls). Only
/// directories owned by root are remembered: one that passed (root's, not writable by group or
/// others) can be changed by root alone, so checking it again within one authentication proves
/// nothing new. A directory the user owns (on the way to a per-user file) could be changed by
/// the user between two reads, so it is checked every time. The memo never outlives the guard
/// (the PAM module holds it for one `pam_sm_authenticate`; a process that lives on, such as
/// sshd, starts afresh next time), a directory is remembered only for the exact owners it
/// passed for, and the file checks (owner, mode, the opened inode at the checked place) are
/// never skipped.
#[must_use = "the memo lasts as long as the guard"]
pub struct TrustedWalkMemo {
    previous: Option<Passed>,
    // Thread-local state: the guard must be dropped on the thread that made it.
    _not_send: std::marker::PhantomData<*const ()>,
}

impl TrustedWalkMemo {
    pub fn begin() -> Self {
        let previous = WALK_MEMO.with(|m| m.replace(Some(Vec::new())));
        TrustedWalkMemo {
            previous,
            _not_send: std::marker::PhantomData,
        }
    }
}

impl Drop for TrustedWalkMemo {
    fn drop(&mut self) {
        let previous = self.previous.take();
        WALK_MEMO.with(|m| m.replace(previous));
    }
}

/// Whether `dir` passed the walk for exactly `owners` in the current memo. The walk builds
/// every path it remembers or asks about the same way (`/` joined with one name at a time), so
/// equal directories are equal bytes: compared as bytes, not as `Path`s (whose `==` parses
/// both into components, most of the walk's CPU). A spelling that differed would only miss.
fn walk_remembers(dir: &Path, owners: &[u32]) -> bool {
    let dir = dir.as_os_str().as_bytes();
    WALK_MEMO.with(|m| {
        m.borrow().as_ref().is_some_and(|v| {
            v.iter()
                .any(|(d, o)| d.as_os_str().as_bytes() == dir && o == owners)
        })
    })
}

/// Remember `dir`, which just passed, if root owns it ([`TrustedWalkMemo`]).
fn walk_remember(dir: &Path, meta: &Metadata, owners: &[u32]) {
    if meta.uid() != 0 {
        return;
    }
    WALK_MEMO.with(|m| {
        if let Some(v) = m.borrow_mut().as_mut() {
            v.push((dir.to_path_buf(), owners.to_vec()));
        }
    });
}

/// Check `dir` and every directory on the way to it from `/` (sshd's StrictModes walk).
/// Symbolic links are followed by hand, so that the directory holding each link is checked as
/// well as the directories its target leads through: a link is only as trustworthy as the
/// directory it sits in. Returns the resolved path. Directories a live [`TrustedWalkMemo`]
/// remembers for the same owners are not checked again.
fn check_ancestors(dir: &Path, owners: &[u32]) -> Result<PathBuf, FileError> {
    use std::collections::VecDeque;
    let absolute = if dir.is_absolute() {
        dir.to_path_buf()
    } else {
        std::env::current_dir()
            .map_err(|e| FileError::io(dir, e))?
            .join(dir)
    };
    let mut resolved = PathBuf::from("/");
    if !walk_remembers(&resolved, owners) {
        let root = std::fs::symlink_metadata(&resolved).map_err(|e| FileError::io(&resolved, e))?;
        check_dir(&resolved, &root, owners)?;
        walk_remember(&resolved, &root, owners);
    }
    let mut pending: VecDeque<std::ffi::OsString> = walk_parts(&absolute).into();
    let mut links = 0;
    while let Some(name) = pending.pop_front() {
        if name == ".." {
            resolved.pop();
            continue;
        }
        let next = resolved.join(&name);
        if walk_remembers(&next, owners) {
            // A directory (never a link) that passed for these owners in this memo.
            resolved = next;
            continue;
        }
        let meta = std::fs::symlink_metadata(&next).map_err(|e| FileError::io(&next, e))?;
        if meta.file_type().is_symlink() {
            links += 1;
            if links > 40 {
                return Err(FileError::Insecure {
                    path: dir.to_path_buf(),
                    why: "too many symbolic links on the way".into(),
                });
            }
            let target = std::fs::read_link(&next).map_err(|e| FileError::io(&next, e))?;
            if target.is_absolute() {
                resolved = PathBuf::from("/");
            }
            let mut parts = walk_parts(&target);
            while let Some(p) = parts.pop() {
                pending.push_front(p);
            }
            continue;
        }
        check_dir(&next, &meta, owners)?;
        walk_remember(&next, &meta, owners);
        resolved = next;
    }
    Ok(resolved)
}

/// The directories above `path` are trusted, and `path` in its canonical directory is the very
/// file `meta` describes (the file was opened before the walk; the same inode at the checked
/// place means no one swapped it in between).
fn check_location(path: &Path, meta: &Metadata, owner: Ownership) -> Result<(), FileError> {
    let parent = path.parent().unwrap_or(Path::new("."));
    let canonical = check_ancestors(parent, &[owner.uid])?;
    let name = path.file_name().ok_or_else(|| FileError::Insecure {
        path: path.to_path_buf(),
        why: "has no file name".into(),
    })?;
    let here =
        std::fs::symlink_metadata(canonical.join(name)).map_err(|e| FileError::io(path, e))?;
    if (here.dev(), here.ino()) != (meta.dev(), meta.ino()) {
        return Err(FileError::Insecure {
            path: path.to_path_buf(),
            why: "was replaced while it was being checked".into(),
        });
    }
    Ok(())
}

/// A directory the configuration names (records or state): it must exist, and it and every
/// directory above it must be owned by root (or `owner`) and not group- or world-writable.
pub(crate) fn check_trusted_dir(dir: &Path, owner: Ownership) -> Result<(), FileError> {
    check_ancestors(dir, &[owner.uid]).map(drop)
}

/// `path`'s own metadata (a final symbolic link is not followed), once every directory above
/// it has passed [`check_ancestors`] for `owners`; looked up in the canonical directory the
/// walk resolved, so a link on the way cannot lead elsewhere. Absent: `FileError::NotFound`.
fn metadata_in_trusted_dir(path: &Path, owners: &[u32]) -> Result<Metadata, FileError> {
    let parent = path.parent().unwrap_or(Path::new("."));
    let canonical = check_ancestors(parent, owners)?;
    let Some(name) = path.file_name() else {
        return Err(FileError::Insecure {
            path: path.to_path_buf(),
            why: "has no file name".into(),
        });
    };
    std::fs::symlink_metadata(canonical.join(name)).map_err(|e| FileError::io(path, e))
}

/// A unix socket root's configuration names as the key: the socket and every directory above
/// it are owned by root or one of `owners`, and none of them is writable by others. Otherwise
/// any local user could put their own fake key in its place. A socket that is simply absent is
/// not an error here (connecting to it reports that the key is missing).
pub(crate) fn check_trusted_socket(path: &Path, owners: &[u32]) -> Result<(), FileError> {
    let meta = match metadata_in_trusted_dir(path, owners) {
        Ok(m) => m,
        Err(FileError::NotFound(_)) => return Ok(()),
        Err(e) => return Err(e),
    };
    let insecure = |why: String| {
        Err(FileError::Insecure {
            path: path.to_path_buf(),
            why,
        })
    };
    if !meta.file_type().is_socket() {
        return insecure("is not a unix socket".into());
    }
    if meta.uid() != 0 && !owners.contains(&meta.uid()) {
        return insecure(format!(
            "socket is owned by uid {}, neither root nor a device owner named in the configuration",
            meta.uid()
        ));
    }
    if meta.mode() & 0o022 != 0 {
        return insecure(format!(
            "socket is group- or world-writable (mode {:04o}): anyone could use it",
            meta.mode() & 0o7777
        ));
    }
    Ok(())
}

/// A program root's configuration names for the module to run: a regular file (not a link),
/// owned by root, not group- or world-writable, executable, in directories that pass the same
/// walk as every other trusted path. Otherwise whoever could write it would run code in every
/// process that loads the PAM stack.
pub(crate) fn check_trusted_program(path: &Path) -> Result<(), FileError> {
    let insecure = |why: String| {
        Err(FileError::Insecure {
            path: path.to_path_buf(),
            why,
        })
    };
    if !path.is_absolute() {
        return insecure("is not an absolute path".into());
    }
    let meta = metadata_in_trusted_dir(path, &[0])?;
    if !meta.file_type().is_file() {
        return insecure("is not a regular file (a symbolic link is refused)".into());
    }
    if meta.uid() != 0 {
        return insecure(format!("is owned by uid {}, not root", meta.uid()));
    }
    if meta.mode() & 0o022 != 0 {
        return insecure(format!(
            "is group- or world-writable (mode {:04o})",
            meta.mode() & 0o7777
        ));
    }
    if meta.mode() & 0o100 == 0 {
        return insecure(format!(
            "is not executable (mode {:04o})",
            meta.mode() & 0o7777
        ));
    }
    Ok(())
}

/// Read a whole file after checking it as the module doc says.
pub fn read_trusted(path: &Path, owner: Ownership) -> Result<Vec<u8>, FileError> {
    read_checked(path, owner, false)
}

/// [`read_trusted`], and the file must not be readable by group or others either (login state:
/// counters and hmac-secret checks are nobody else's business). Refused, not repaired: the next
/// write (0600) repairs it, once an administrator has looked at why it changed.
pub fn read_private(path: &Path, owner: Ownership) -> Result<Vec<u8>, FileError> {
    read_checked(path, owner, true)
}

fn read_checked(path: &Path, owner: Ownership, private: bool) -> Result<Vec<u8>, FileError> {
    let file = open_nofollow(path).map_err(|e| FileError::io(path, e))?;
    check_and_read(path, file, owner, private)
}

/// Open for reading without following a final symbolic link, and without blocking on a FIFO
/// someone put in the file's place.
fn open_nofollow(path: &Path) -> io::Result<File> {
    OpenOptions::new()
        .read(true)
        .custom_flags(nix::libc::O_NOFOLLOW | nix::libc::O_CLOEXEC | nix::libc::O_NONBLOCK)
        .open(path)
}

/// What every trusted read checks on the file it opened: the file itself (regular, `owner`'s,
/// not group/world-writable; with `private` not readable by others either), every directory
/// above it, that it is still the file at the checked place, and its size while reading.
fn check_and_read(
    path: &Path,
    mut file: File,
    owner: Ownership,
    private: bool,
) -> Result<Vec<u8>, FileError> {
    let meta = check_opened(path, &file, owner, private)?;
    read_bounded(path, &mut file, &meta)
}

/// [`read_private`]'s checks without the read: the opened, checked file and its metadata, for a
/// reader that needs only parts of a large file (the uid index binary-searches its own). The
/// caller bounds what it reads.
pub(crate) fn open_private(path: &Path, owner: Ownership) -> Result<(File, Metadata), FileError> {
    let file = open_nofollow(path).map_err(|e| FileError::io(path, e))?;
    let meta = check_opened(path, &file, owner, true)?;
    Ok((file, meta))
}

/// The checks of [`check_and_read`] before the read.
fn check_opened(
    path: &Path,
    file: &File,
    owner: Ownership,
    private: bool,
) -> Result<Metadata, FileError> {
    let meta = file.metadata().map_err(|e| FileError::io(path, e))?;
    check_metadata(path, &meta, owner)?;
    if private && meta.mode() & 0o044 != 0 {
        return Err(FileError::Insecure {
            path: path.to_path_buf(),
            why: format!(
                "is readable by group or others (mode {:04o}): chmod 600 {}",
                meta.mode() & 0o7777,
                path.display()
            ),
        });
    }
    check_location(path, &meta, owner)?;
    Ok(meta)
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
    let opened = open_nofollow(path);
    setfsuid(old_uid);
    setfsgid(old_gid);
    let file = opened.map_err(|e| FileError::io(path, e))?;
    check_and_read(path, file, owner, false)
}

/// Open a file whose owner is not known in advance (an authfile to import): no symlink, a
/// regular file not group- or world-writable, in a directory owned by root or the file's owner
/// and writable by nobody else, at most [`MAX_FILE`] bytes. Returns the contents and the owner's
/// uid, so the caller can decide what that owner may vouch for.
pub fn read_trusted_any_owner(path: &Path) -> Result<(Vec<u8>, u32), FileError> {
    let file = open_nofollow(path).map_err(|e| FileError::io(path, e))?;
    let owner = Ownership {
        uid: file.metadata().map_err(|e| FileError::io(path, e))?.uid(),
    };
    Ok((check_and_read(path, file, owner, false)?, owner.uid))
}

/// The temporary files [`write_atomic`] makes for `path`: `.<name>.tmp.<pid>.<8 hex digits>`
/// (and, before locked writes had their own name, every writer of records and state).
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
pub(crate) fn remove_stale_temps(path: &Path) -> usize {
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
    let (dir, name) = dir_and_name(path);
    let tmp = dir.join(format!(
        ".{name}.tmp.{}.{:08x}",
        std::process::id(),
        rand::random::<u32>()
    ));
    write_through(&tmp, dir, path, contents, mode)
}

/// [`write_atomic`] for a file every writer of which holds its lock (state, root's records):
/// one temporary name, `.<name>.tmp`. A write killed before its rename leaves at most that one
/// file, and the next writer, under the same lock, removes it first: no directory scan on
/// each login, whatever the directory holds (ARCHITECTURE.md §3).
pub(crate) fn write_atomic_locked(
    path: &Path,
    contents: &[u8],
    mode: u32,
) -> Result<(), FileError> {
    let (dir, name) = dir_and_name(path);
    let tmp = dir.join(format!(".{name}.tmp"));
    match std::fs::remove_file(&tmp) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(FileError::io(path, e)),
    }
    write_through(&tmp, dir, path, contents, mode)
}

fn dir_and_name(path: &Path) -> (&Path, String) {
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    (dir, name)
}

/// Write `contents` to the new file `tmp`, fsync it, rename it over `path`, fsync `dir`.
fn write_through(
    tmp: &Path,
    dir: &Path,
    path: &Path,
    contents: &[u8],
    mode: u32,
) -> Result<(), FileError> {
    let result = (|| {
        let mut f = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(mode)
            .custom_flags(nix::libc::O_NOFOLLOW | nix::libc::O_CLOEXEC)
            .open(tmp)?;
        f.write_all(contents)?;
        f.sync_all()?;
        std::fs::rename(tmp, path)?;
        File::open(dir)?.sync_all()
    })();
    if let Err(e) = result {
        let _ = std::fs::remove_file(tmp);
        return Err(FileError::io(path, e));
    }
    Ok(())
}

/// An exclusive lock on a per-user lock file, released on drop.
///
/// The lock lives on its own file, not on the state file: the state file is replaced by rename,
/// and a lock on the old inode would not exclude a process that opened the new one.
pub(crate) struct StateLock {
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

/// A fresh directory for a test, `<prefix>-<random>` (mode 0755), under the target directory:
/// /tmp is world-writable and the ancestor walk refuses it, as it should. The path is short and
/// canonical: some tests make a socket in it, and a socket path has at most 107 bytes wherever
/// the checkout is.
#[cfg(test)]
pub(crate) fn test_dir(prefix: &str) -> PathBuf {
    use std::os::unix::fs::PermissionsExt;
    let base = Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/ctap-core-tests");
    std::fs::create_dir_all(&base).unwrap();
    let d = base
        .canonicalize()
        .unwrap()
        .join(format!("{prefix}-{:08x}", rand::random::<u32>()));
    std::fs::create_dir_all(&d).unwrap();
    std::fs::set_permissions(&d, std::fs::Permissions::from_mode(0o755)).unwrap();
    d
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn tmpdir() -> PathBuf {
        test_dir("fs")
    }

    fn me() -> Ownership {
        Ownership {
            uid: nix::unistd::geteuid().as_raw(),
        }
    }

    /// The memo skips directories already passed, for the same owners only, and only while
    /// its guard lives: after it, a directory made writable is refused again.
    #[test]
    fn the_walk_memo_lasts_one_scope_and_one_set_of_owners() {
        let d = tmpdir();
        let sub = d.join("sub");
        std::fs::create_dir(&sub).unwrap();
        std::fs::set_permissions(&sub, std::fs::Permissions::from_mode(0o755)).unwrap();
        let root_owned = me().uid == 0;
        {
            let _memo = TrustedWalkMemo::begin();
            check_trusted_dir(&sub, me()).unwrap();
            assert!(walk_remembers(Path::new("/"), &[me().uid]));
            // Only root's directories are remembered (the test's own are root's when it runs
            // as root, as CI does).
            assert_eq!(walk_remembers(&sub, &[me().uid]), root_owned);
            assert!(!walk_remembers(&sub, &[me().uid, 12345]), "other owners");
            std::fs::set_permissions(&sub, std::fs::Permissions::from_mode(0o777)).unwrap();
            // A remembered directory is not looked at again within the scope (only root could
            // have changed it); one the user owns is.
            assert_eq!(check_trusted_dir(&sub, me()).is_ok(), root_owned);
        }
        assert!(
            !walk_remembers(&sub, &[me().uid]),
            "the memo ended with its guard"
        );
        let err = check_trusted_dir(&sub, me()).unwrap_err();
        assert!(err.to_string().contains("writable"), "{err}");
        std::fs::remove_dir_all(&d).unwrap();
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
    fn every_ancestor_is_checked_not_only_the_parent() {
        let d = tmpdir();
        let deep = d.join("a/b/c");
        std::fs::create_dir_all(&deep).unwrap();
        for p in ["a", "a/b", "a/b/c"] {
            std::fs::set_permissions(d.join(p), std::fs::Permissions::from_mode(0o755)).unwrap();
        }
        let f = deep.join("records.toml");
        std::fs::write(&f, "x").unwrap();
        std::fs::set_permissions(&f, std::fs::Permissions::from_mode(0o644)).unwrap();
        assert_eq!(read_trusted(&f, me()).unwrap(), b"x");
        check_trusted_dir(&deep, me()).unwrap();

        // A grandparent writable by others (sticky or not, as /tmp) lets them rename `b` away.
        for mode in [0o777, 0o1777, 0o775] {
            std::fs::set_permissions(d.join("a"), std::fs::Permissions::from_mode(mode)).unwrap();
            let err = read_trusted(&f, me()).unwrap_err().to_string();
            assert!(
                err.contains("/a: refused: directory is group- or world-writable"),
                "{err}"
            );
            let err = check_trusted_dir(&deep, me()).unwrap_err().to_string();
            assert!(err.contains("group- or world-writable"), "{err}");
        }
        std::fs::set_permissions(d.join("a"), std::fs::Permissions::from_mode(0o755)).unwrap();

        // A grandparent owned by someone else.
        let other = Ownership {
            uid: me().uid + 4242,
        };
        nix::unistd::chown(
            &d.join("a"),
            Some(nix::unistd::Uid::from_raw(other.uid)),
            None,
        )
        .ok();
        if std::fs::metadata(d.join("a")).unwrap().uid() == other.uid {
            let err = read_trusted(&f, me()).unwrap_err().to_string();
            assert!(err.contains("neither root nor the file's owner"), "{err}");
        }
        std::fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn a_symlink_is_only_as_good_as_the_directory_holding_it() {
        let d = tmpdir();
        let real = d.join("real");
        std::fs::create_dir(&real).unwrap();
        std::fs::set_permissions(&real, std::fs::Permissions::from_mode(0o755)).unwrap();
        std::fs::write(real.join("f"), "x").unwrap();
        let open = d.join("open");
        std::fs::create_dir(&open).unwrap();
        std::os::unix::fs::symlink(&real, d.join("link")).unwrap();
        std::os::unix::fs::symlink(&real, open.join("link")).unwrap();
        // A link in a trusted directory to a trusted one is followed.
        assert_eq!(read_trusted(&d.join("link/f"), me()).unwrap(), b"x");
        // The same link in a world-writable directory is refused, though its target is fine.
        std::fs::set_permissions(&open, std::fs::Permissions::from_mode(0o1777)).unwrap();
        let err = check_trusted_dir(&open.join("link"), me())
            .unwrap_err()
            .to_string();
        assert!(err.contains("/open: refused"), "{err}");
        assert!(read_trusted(&open.join("link/f"), me()).is_err());
        // A missing directory is NotFound, not "empty".
        assert!(matches!(
            check_trusted_dir(&d.join("nope"), me()),
            Err(FileError::NotFound(_))
        ));
        std::fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn private_files_must_not_be_readable_by_others() {
        let d = tmpdir();
        let f = d.join("alice.toml");
        std::fs::write(&f, "x").unwrap();
        std::fs::set_permissions(&f, std::fs::Permissions::from_mode(0o600)).unwrap();
        assert_eq!(read_private(&f, me()).unwrap(), b"x");
        for mode in [0o604, 0o640, 0o644] {
            std::fs::set_permissions(&f, std::fs::Permissions::from_mode(mode)).unwrap();
            let err = read_private(&f, me()).unwrap_err().to_string();
            assert!(err.contains("readable by group or others"), "{err}");
            assert_eq!(read_trusted(&f, me()).unwrap(), b"x");
        }
        std::fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn sockets_in_writable_or_foreign_places_are_refused() {
        let d = tmpdir();
        let sock = d.join("key.sock");
        let _l = std::os::unix::net::UnixListener::bind(&sock).unwrap();
        std::fs::set_permissions(&sock, std::fs::Permissions::from_mode(0o600)).unwrap();
        let owners = [me().uid];
        check_trusted_socket(&sock, &owners).unwrap();
        // Absent: left to the connection to report.
        check_trusted_socket(&d.join("none.sock"), &owners).unwrap();

        std::fs::set_permissions(&sock, std::fs::Permissions::from_mode(0o666)).unwrap();
        let err = check_trusted_socket(&sock, &owners)
            .unwrap_err()
            .to_string();
        assert!(err.contains("socket is group- or world-writable"), "{err}");
        std::fs::set_permissions(&sock, std::fs::Permissions::from_mode(0o600)).unwrap();

        std::fs::set_permissions(&d, std::fs::Permissions::from_mode(0o1777)).unwrap();
        let err = check_trusted_socket(&sock, &owners)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("directory is group- or world-writable"),
            "{err}"
        );
        std::fs::set_permissions(&d, std::fs::Permissions::from_mode(0o755)).unwrap();

        let f = d.join("plain");
        std::fs::write(&f, "").unwrap();
        let err = check_trusted_socket(&f, &owners).unwrap_err().to_string();
        assert!(err.contains("not a unix socket"), "{err}");
        if me().uid != 0 {
            // Owned by us, but only root is named.
            assert!(check_trusted_socket(&sock, &[]).is_err());
        }
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

    /// A locked write uses one temporary name: what a killed write left there is replaced,
    /// nothing else in the directory is read or touched, and no temporary file remains.
    #[test]
    fn a_locked_write_replaces_its_own_leftover_only() {
        let d = tmpdir();
        let f = d.join("alice.toml");
        std::fs::write(d.join(".alice.toml.tmp"), "partial").unwrap();
        std::fs::write(d.join(".bob.toml.tmp"), "partial").unwrap();
        write_atomic_locked(&f, b"new", 0o600).unwrap();
        assert_eq!(std::fs::read(&f).unwrap(), b"new");
        assert!(!d.join(".alice.toml.tmp").exists());
        assert!(d.join(".bob.toml.tmp").exists());
        // A symlink planted at the temporary name is removed, never written through.
        let target = d.join("target");
        std::fs::write(&target, "keep").unwrap();
        std::os::unix::fs::symlink(&target, d.join(".alice.toml.tmp")).unwrap();
        write_atomic_locked(&f, b"newer", 0o600).unwrap();
        assert_eq!(std::fs::read(&target).unwrap(), b"keep");
        assert_eq!(std::fs::read(&f).unwrap(), b"newer");
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
