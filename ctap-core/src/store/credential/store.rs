//! Where records and state live, and the only code that reads or writes them.

use std::path::{Path, PathBuf};
use std::time::Duration;

use super::record::CredentialFile;
use super::state::{StateFile, STATE_VERSION};
use super::uid_index::{DirStamp, NewStateLog, RecordsEntry, RecordsHalf, UidIndex};
use super::{Inconsistency, StoreError};
use crate::store::account::{file_stem, name_of_stem, Account, UserResolver};
use crate::store::fs::{self, FileError, Ownership, StateLock};

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
pub(crate) const PER_USER_FILE: &str = ".config/ctap/credentials.toml";

impl CredentialStore {
    pub fn system() -> Self {
        CredentialStore {
            records_dir: PathBuf::from("/etc/ctap/users"),
            state_dir: PathBuf::from("/var/lib/ctap"),
            per_user_records: false,
        }
    }

    /// The file-name stem of the canonical account name `user` ([`file_stem`]): every name NSS
    /// can return names a file inside the records and state directories.
    fn checked(user: &str) -> Result<String, StoreError> {
        file_stem(user).map_err(|_| StoreError::BadUserName(user.to_string()))
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
    pub(crate) fn check_roots(&self) -> Result<(), FileError> {
        let me = Ownership::effective();
        fs::check_trusted_dir(&self.records_dir, me)?;
        fs::check_trusted_dir(&self.state_dir, me)?;
        Ok(())
    }

    /// The account's records: root's file, plus the user's own file when opted in. An account
    /// with neither gets `StoreError` with [`StoreError::is_not_found`]; any other problem
    /// (unreadable, insecure, malformed) is a different error, so `nouserok` can never skip a
    /// broken file.
    ///
    /// The per-user file is opened with the user's filesystem identity and read through a
    /// bounded reader ([`fs::read_trusted_as_user`]). It may only add credentials: one whose id
    /// is also in root's file is refused (the user's copy could claim weaker settings), and
    /// login takes user verification and the hmac-secret requirement from root-written state.
    pub fn load_records(&self, account: &Account) -> Result<UserRecords, StoreError> {
        let system_path = self.records_path(account.name())?;
        let mut sources = Vec::new();
        let mut file = CredentialFile::default();
        let mut not_found = None;
        match load_credential_file(&system_path, Ownership::ROOT) {
            Ok(f) => {
                sources.push(RecordsSource::System(system_path));
                file = f;
            }
            Err(e) if e.is_not_found() => not_found = Some(e),
            Err(e) => return Err(e),
        }
        let system_count = file.credentials.len();
        if self.per_user_records {
            let path = account.home().join(PER_USER_FILE);
            let owner = Ownership { uid: account.uid() };
            match read_credential_bytes(
                &path,
                fs::read_trusted_as_user(&path, owner, account.gid()),
            ) {
                Ok(f) => {
                    if let Some(dup) = f.credentials.iter().find(|c| {
                        file.credentials
                            .iter()
                            .any(|r| r.credential_id == c.credential_id)
                    }) {
                        return Err(StoreError::Invalid {
                            path,
                            problem: Inconsistency::AlsoInRootRecords {
                                credential: dup.name.clone(),
                                id: dup.id_b64(),
                            },
                        });
                    }
                    sources.push(RecordsSource::PerUser(path));
                    file.credentials.extend(f.credentials);
                }
                Err(e) if e.is_not_found() => {}
                Err(e) => return Err(e),
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

    /// Whether root-written state for `user` names any credential: such a user was enrolled,
    /// so a login is never skipped (`nouserok`), whatever happened to the records files.
    pub(crate) fn has_state(&self, user: &str) -> Result<bool, StoreError> {
        Ok(!self.read_state(user)?.credentials.is_empty())
    }

    /// Another name of the same account (same uid: `useradd -o`, a renamed account, records
    /// written under another spelling) that has records or state, if any. Login asks only when
    /// the canonical name has neither and `nouserok` would otherwise skip the factor.
    ///
    /// Why this is sound: records and state are named by an account name, so the enrolled
    /// names of uid U are exactly the files whose name NSS resolves to U, plus files written
    /// for U (records store the uid) whose name NSS no longer resolves to U. We find them as:
    /// 1. `getpwuid(U)`'s name (one lookup; the primary entry, where the enrolled name usually is);
    /// 2. every records file whose stored `uid` is U;
    /// 3. every records file without a stored uid (written before uids were stored) and every
    ///    state file without a records file, by an NSS lookup of its name.
    ///
    /// Enumerating the password database (getpwent) instead is not sound (SSSD and LDAP
    /// normally do not enumerate) and costs a scan of every account. Steps 2 and 3 take their
    /// file lists from the [`UidIndex`] (a cache of the stored uids and of the state-only
    /// names, used while the records directory is unchanged, plus the state files created
    /// since; never of NSS answers), so a skipped login costs the same with ten or ten thousand
    /// enrolled users; after the records directory changed, both directories are scanned again
    /// (one small read per records file, one listing of the state directory). A file that
    /// cannot be read counts as naming U (fail closed) when its name resolves to U.
    pub(crate) fn other_enrolled_name(
        &self,
        account: &Account,
        resolver: &dyn UserResolver,
    ) -> Result<Option<String>, StoreError> {
        let same_uid = |name: &str| -> Result<bool, StoreError> {
            match resolver.by_name(name) {
                Ok(Some(a)) => Ok(a.uid() == account.uid()),
                Ok(None) => Ok(false),
                Err(e) => Err(StoreError::Lookup(e)),
            }
        };
        let enrolled = |name: &str| -> Result<bool, StoreError> {
            match self.load_system_records_opt(name) {
                Ok(Some(_)) => return Ok(true),
                Ok(None) => {}
                Err(_) => return Ok(true),
            }
            Ok(self.has_state(name).unwrap_or(true))
        };
        let primary = resolver.by_uid(account.uid()).map_err(StoreError::Lookup)?;
        if let Some(primary) = primary {
            if primary.name() != account.name() && enrolled(primary.name())? {
                return Ok(Some(primary.name().to_string()));
            }
        }
        let (mut index, mut new_state) = self.uid_index()?;
        let others = |n: &&str| *n != account.name();
        let stamped = match index.records.stamped_with(account.uid()) {
            Some(names) => names,
            // Not well formed where it was read: that file is not trusted for the other steps
            // either. Scan, replace it, and answer from the scan alone (its lines are in memory).
            None => {
                (index, new_state) = self.uid_index_rebuilt()?;
                index
                    .records
                    .stamped_with(account.uid())
                    .unwrap_or_default()
            }
        };
        if let Some(name) = stamped.iter().map(String::as_str).find(others) {
            return Ok(Some(name.to_string()));
        }
        for name in index
            .records
            .unstamped
            .iter()
            .map(String::as_str)
            .filter(others)
        {
            let hit = match self.load_system_records_opt(name) {
                Ok(Some(f)) => match f.uid {
                    Some(uid) => uid == account.uid(),
                    None => same_uid(name)?,
                },
                Ok(None) => false,
                Err(_) => same_uid(name)?,
            };
            if hit {
                return Ok(Some(name.to_string()));
            }
        }
        // State-only names, and state files created since the index was built (their names
        // may have records too: then this asks NSS once more, harmlessly).
        let state_names = index.state_only.iter().chain(new_state.iter());
        for name in state_names.map(String::as_str).filter(others) {
            if same_uid(name)? && self.has_state(name).unwrap_or(true) {
                return Ok(Some(name.to_string()));
            }
        }
        Ok(None)
    }

    /// The [`UidIndex`] and the state files created since it was built: from its file while
    /// the records directory's stamp is the one it was built with, else rebuilt.
    fn uid_index(&self) -> Result<(UidIndex, Vec<String>), StoreError> {
        if let Some(cached) = UidIndex::load(&self.state_dir) {
            let current = DirStamp::of(&self.records_dir);
            if cached.records.stamp.is_some() && cached.records.stamp == current {
                if let Some(new) = NewStateLog::read_from(&self.state_dir, cached.log_offset) {
                    return Ok((cached, new));
                }
            }
        }
        self.uid_index_rebuilt()
    }

    /// Scan both directories; write the index when the records directory had settled and no
    /// one else is writing it (uid_index module docs).
    fn uid_index_rebuilt(&self) -> Result<(UidIndex, Vec<String>), StoreError> {
        // Whoever can make `.index` in the state directory (root, for root's) writes it.
        let lock = if UidIndex::prepare(&self.state_dir) {
            UidIndex::lock(&self.state_dir)
        } else {
            None
        };
        // The stamp and the log's offset before the listings: a change after them is seen
        // next time (a stale stamp, or a name past the offset).
        let records_stamp = DirStamp::of(&self.records_dir);
        let log_offset = match &lock {
            Some(l) => NewStateLog::position_for_rebuild(&self.state_dir, l),
            None => NewStateLog::end(&self.state_dir),
        };
        let started = std::time::SystemTime::now();
        let mut files = Vec::new();
        for name in names_in(&self.records_dir)? {
            let entry = match stored_uid_prefix(&self.records_path(&name)?) {
                Some(uid) => RecordsEntry::Stamped(uid),
                None => RecordsEntry::Unstamped,
            };
            files.push((name, entry));
        }
        let records =
            RecordsHalf::from_scan(UidIndex::settled_stamp(records_stamp, started), files);
        let with_records = records.names().unwrap_or_default();
        let mut state_only: Vec<String> = names_in(&self.state_dir)?
            .into_iter()
            .filter(|n| !with_records.contains(n))
            .collect();
        state_only.sort();
        let index = UidIndex {
            records,
            state_only,
            log_offset,
        };
        // Until the directory settles, a written index could not be used: do not pay for it.
        if let (Some(lock), Some(_)) = (&lock, index.records.stamp) {
            index.store(&self.state_dir, lock);
        }
        Ok((index, Vec::new()))
    }

    fn load_system_records_opt(&self, user: &str) -> Result<Option<CredentialFile>, StoreError> {
        match load_credential_file(&self.records_path(user)?, Ownership::ROOT) {
            Ok(f) => Ok(Some(f)),
            Err(e) if e.is_not_found() => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Root's records file for `user` alone (what `ctap-enroll` edits); empty when absent.
    pub fn load_system_records(&self, user: &str) -> Result<CredentialFile, StoreError> {
        match load_credential_file(&self.records_path(user)?, Ownership::ROOT) {
            Err(e) if e.is_not_found() => Ok(CredentialFile::default()),
            other => other,
        }
    }

    /// Write root's records file atomically (0644: the PAM module and `list` read it), stamped
    /// with the account's uid. Callers hold the account's state lock (every writer of records
    /// does), so temporary files an interrupted earlier write left are removed first.
    pub fn save_system_records(
        &self,
        account: &Account,
        file: &CredentialFile,
    ) -> Result<(), StoreError> {
        let path = self.records_path(account.name())?;
        fs::remove_stale_temps(&path);
        let mut file = file.clone();
        file.uid = Some(account.uid());
        save_credential_file(&path, &file, 0o644)
    }

    /// Take the user's state lock and read the state under it. Missing state is empty state; a
    /// malformed state file is an error, never a reset (a reset would forget counters).
    pub fn lock_state(&self, user: &str, wait: Duration) -> Result<StateGuard, StoreError> {
        ensure_dir(&self.state_dir, 0o700)?;
        let lock = StateLock::acquire(&self.lock_path(user)?, wait)?;
        let path = self.state_path(user)?;
        let found = read_state_file_opt(&path)?;
        Ok(StateGuard {
            _lock: lock,
            path,
            new_name: found.is_none().then(|| user.to_string()),
            state: found.unwrap_or_default(),
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
    /// The account's name when its state file was not there when the lock was taken: a commit
    /// then adds that name to the state directory, which the uid index must learn.
    new_name: Option<String>,
    pub state: StateFile,
}

impl StateGuard {
    /// Write the state atomically (temp file, fsync, rename, fsync dir), still under the lock.
    pub fn commit(&self) -> Result<(), StoreError> {
        let text = toml::to_string(&self.state).map_err(|e| StoreError::Invalid {
            path: self.path.clone(),
            problem: Inconsistency::Unwritable {
                toml: e.to_string(),
            },
        })?;
        // Still under the lock every state writer takes: the one temporary name is ours.
        fs::write_atomic_locked(&self.path, text.as_bytes(), 0o600)?;
        // After the rename (uid_index module docs): the uid index learns of the name.
        if let (Some(name), Some(dir)) = (&self.new_name, self.path.parent()) {
            NewStateLog::append(dir, name);
        }
        Ok(())
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

/// The state file; missing state is empty state.
fn read_state_file(path: &Path) -> Result<StateFile, StoreError> {
    Ok(read_state_file_opt(path)?.unwrap_or_default())
}

/// The state file, `None` when there is none.
fn read_state_file_opt(path: &Path) -> Result<Option<StateFile>, StoreError> {
    let bytes = match fs::read_private(path, Ownership::effective()) {
        Ok(b) => b,
        Err(FileError::NotFound(_)) => return Ok(None),
        Err(e) => return Err(e.into()),
    };
    let text = String::from_utf8(bytes).map_err(|_| StoreError::Invalid {
        path: path.to_path_buf(),
        problem: Inconsistency::NotUtf8,
    })?;
    let state: StateFile = toml::from_str(&text).map_err(|e| StoreError::parse(path, &text, &e))?;
    if state.version != STATE_VERSION {
        return Err(StoreError::Invalid {
            path: path.to_path_buf(),
            problem: Inconsistency::StateVersion {
                found: state.version,
                expected: STATE_VERSION,
            },
        });
    }
    Ok(Some(state))
}

/// The uid a records file stores, read from its first line alone (`uid = N`, as
/// [`CredentialStore::save_system_records`] writes it first), so that the alias scan costs one
/// small read per file rather than a parse. `None` when the first line is anything else: the
/// caller then parses the whole file. Only used to find *more* reasons to deny, so the file's
/// trust checks (which login applies when it reads the file for its own account) are not needed
/// here; O_NOFOLLOW still keeps it from following a link.
fn stored_uid_prefix(path: &Path) -> Option<u32> {
    use std::io::Read;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(nix::libc::O_NOFOLLOW | nix::libc::O_CLOEXEC | nix::libc::O_NONBLOCK)
        .open(path)
        .ok()?;
    let mut buf = [0u8; 32];
    let mut len = 0;
    while len < buf.len() {
        match f.read(&mut buf[len..]) {
            Ok(0) => break,
            Ok(n) => len += n,
            Err(_) => return None,
        }
    }
    let line = buf[..len].split(|b| *b == b'\n').next()?;
    if line.len() == len {
        return None; // no complete first line
    }
    let digits = std::str::from_utf8(line).ok()?.strip_prefix("uid = ")?;
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

/// The account names of the `<stem>.toml` files in `dir` (none if it does not exist).
fn names_in(dir: &Path) -> Result<Vec<String>, StoreError> {
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(source) => {
            return Err(StoreError::File(FileError::Io {
                path: dir.to_path_buf(),
                source,
            }))
        }
    };
    Ok(entries
        .flatten()
        .filter_map(|e| {
            let n = e.file_name();
            name_of_stem(n.to_str()?.strip_suffix(".toml")?)
        })
        .collect())
}

/// Read and validate a credentials file owned by `owner`.
pub fn load_credential_file(path: &Path, owner: Ownership) -> Result<CredentialFile, StoreError> {
    read_credential_bytes(path, fs::read_trusted(path, owner))
}

fn read_credential_bytes(
    path: &Path,
    bytes: Result<Vec<u8>, FileError>,
) -> Result<CredentialFile, StoreError> {
    let bytes = bytes?;
    let text = String::from_utf8(bytes).map_err(|_| StoreError::Invalid {
        path: path.to_path_buf(),
        problem: Inconsistency::NotUtf8,
    })?;
    let file: CredentialFile =
        toml::from_str(&text).map_err(|e| StoreError::parse(path, &text, &e))?;
    file.validate().map_err(|problem| StoreError::Invalid {
        path: path.to_path_buf(),
        problem,
    })?;
    Ok(file)
}

/// Write a credentials file atomically, creating its directory if needed.
pub fn save_credential_file(
    path: &Path,
    file: &CredentialFile,
    mode: u32,
) -> Result<(), StoreError> {
    file.validate().map_err(|problem| StoreError::Invalid {
        path: path.to_path_buf(),
        problem,
    })?;
    if let Some(dir) = path.parent() {
        ensure_dir(dir, 0o755)?;
    }
    let text = toml::to_string(file).map_err(|e| StoreError::Invalid {
        path: path.to_path_buf(),
        problem: Inconsistency::Unwritable {
            toml: e.to_string(),
        },
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
pub(crate) fn home_of(user: &str) -> Option<(PathBuf, u32)> {
    let u = nix::unistd::User::from_name(user).ok()??;
    Some((u.dir, u.uid.as_raw()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::account::LookupError;

    struct Table(Vec<Account>);
    impl UserResolver for Table {
        fn by_name(&self, name: &str) -> Result<Option<Account>, LookupError> {
            Ok(self.0.iter().find(|a| a.name() == name).cloned())
        }
        fn by_uid(&self, uid: u32) -> Result<Option<Account>, LookupError> {
            Ok(self.0.iter().find(|a| a.uid() == uid).cloned())
        }
    }

    fn account(name: &str, uid: u32) -> Account {
        Account::from_passwd(name.into(), uid, uid, "/nonexistent".into())
    }

    fn store() -> CredentialStore {
        let d = fs::test_dir("ctap-store");
        let store = CredentialStore {
            records_dir: d.join("users"),
            state_dir: d.join("state"),
            per_user_records: false,
        };
        std::fs::create_dir_all(&store.records_dir).unwrap();
        std::fs::create_dir_all(&store.state_dir).unwrap();
        store
    }

    #[test]
    fn the_stored_uid_is_read_from_the_first_line_only() {
        let s = store();
        let p = s.records_dir.join("x.toml");
        for (text, want) in [
            ("uid = 1001\n\n[[credential]]\n", Some(1001)),
            ("uid = 1001", None),
            ("uid = -1\n", None),
            ("uid = 99999999999\n", None),
            ("[[credential]]\nuid = 5\n", None),
            ("", None),
        ] {
            std::fs::write(&p, text).unwrap();
            assert_eq!(stored_uid_prefix(&p), want, "{text:?}");
        }
        std::fs::remove_dir_all(s.records_dir.parent().unwrap()).unwrap();
    }

    /// Set a directory's mtime `secs` into the past, as if it had settled that long ago.
    fn age(dir: &Path, secs: i64) {
        use nix::sys::stat::{utimensat, UtimensatFlags};
        use nix::sys::time::TimeSpec;
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs() as i64;
        let t = TimeSpec::new(now - secs, 0);
        utimensat(None, dir, &t, &t, UtimensatFlags::FollowSymlink).unwrap();
    }

    #[test]
    fn the_uid_index_answers_while_the_directories_are_unchanged_and_is_rebuilt_after() {
        let alice = account("alice", 1001);
        let nss = Table(vec![account("bob", 1002), alice.clone()]);
        let s = store();
        let write = |dir: &Path, name: &str, text: &str| {
            use std::os::unix::fs::PermissionsExt;
            let p = dir.join(format!("{name}.toml"));
            std::fs::write(&p, text).unwrap();
            std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o600)).unwrap();
        };
        for i in 0..50 {
            write(
                &s.records_dir,
                &format!("user{i}"),
                &format!("uid = {}\n", 2000 + i),
            );
        }
        write(&s.records_dir, "bob", "uid = 1002\n");
        // A settled directory: the first lookup scans and writes the index with its stamp.
        age(&s.records_dir, 60);
        assert_eq!(s.other_enrolled_name(&alice, &nss).unwrap(), None);
        let index = UidIndex::load(&s.state_dir).expect("the index was written");
        assert!(index.records.stamp.is_some());
        assert_eq!(index.records.names().unwrap().len(), 51);
        assert_eq!(index.records.stamped_with(1002).unwrap(), ["bob"]);

        // The index is what answers now: a file edited in place (what the stamp cannot see,
        // module docs of uid_index) is not read again while the directory is unchanged.
        write(&s.records_dir, "bob", "uid = 1001\n");
        age(&s.records_dir, 60);
        assert_eq!(s.other_enrolled_name(&alice, &nss).unwrap(), None);

        // A file added (the directory's mtime moves): the records are scanned again.
        write(&s.records_dir, "old-alice", "uid = 1001\n");
        assert_eq!(
            s.other_enrolled_name(&alice, &nss).unwrap().as_deref(),
            Some("bob"),
            "bob's file, rescanned, now claims 1001 too (the first match by name)"
        );
        std::fs::remove_file(s.records_dir.join("bob.toml")).unwrap();
        assert_eq!(
            s.other_enrolled_name(&alice, &nss).unwrap().as_deref(),
            Some("old-alice")
        );
        // Not settled yet: nothing is written, and the index on disk, stamped before the
        // change, is not used: every lookup scans until the directory settles.
        let index = UidIndex::load(&s.state_dir).unwrap();
        assert_ne!(index.records.stamp, DirStamp::of(&s.records_dir));

        std::fs::remove_file(s.records_dir.join("old-alice.toml")).unwrap();
        // (Each state of the directory gets an mtime of its own, as real changes do.)
        age(&s.records_dir, 90);
        assert_eq!(s.other_enrolled_name(&alice, &nss).unwrap(), None);
        assert_eq!(
            UidIndex::load(&s.state_dir).unwrap().records.stamp,
            DirStamp::of(&s.records_dir)
        );
        let nss = Table(vec![
            account("bob", 1002),
            alice.clone(),
            account("alias", 1001),
        ]);
        let with_credential =
            "version = 1\n[[credential]]\ncredential_id = \"AAAA\"\nsign_count = 0\n";
        // A state file put there by hand is what the index cannot see while the records are
        // unchanged (uid_index module docs)...
        write(&s.state_dir, "alias", with_credential);
        assert_eq!(s.other_enrolled_name(&alice, &nss).unwrap(), None);
        std::fs::remove_file(s.state_path("alias").unwrap()).unwrap();
        // ...but one our writers create is logged, and found (the index is not rebuilt).
        let mut guard = s.lock_state("alias", Duration::from_secs(1)).unwrap();
        guard.state = toml::from_str(with_credential).unwrap();
        guard.commit().unwrap();
        drop(guard);
        assert_eq!(
            s.other_enrolled_name(&alice, &nss).unwrap().as_deref(),
            Some("alias")
        );
        assert_eq!(
            UidIndex::load(&s.state_dir).unwrap().records.stamp,
            DirStamp::of(&s.records_dir),
            "answered from the index and the log"
        );
        // A rebuild (the records changed) lists it among the state-only names.
        write(&s.records_dir, "carol", "uid = 1003\n");
        age(&s.records_dir, 120);
        assert_eq!(
            s.other_enrolled_name(&alice, &nss).unwrap().as_deref(),
            Some("alias")
        );
        assert_eq!(UidIndex::load(&s.state_dir).unwrap().state_only, ["alias"]);
        // An index whose stamped lines do not parse where the search reads them is not
        // trusted for anything: here its head also lost the state-only name (a torn write),
        // and the answer still comes from a scan.
        let text = std::fs::read_to_string(UidIndex::path(&s.state_dir)).unwrap();
        let (head, _) = text.split_once("\nstamped\n").unwrap();
        assert!(head.contains("\ns alias"), "{head}");
        let torn = format!("{}\nstamped\nx broken\n", head.replace("\ns alias", ""));
        std::fs::write(UidIndex::path(&s.state_dir), torn).unwrap();
        assert_eq!(
            UidIndex::load(&s.state_dir).unwrap().state_only,
            Vec::<String>::new()
        );
        assert_eq!(
            s.other_enrolled_name(&alice, &nss).unwrap().as_deref(),
            Some("alias")
        );
        // A broken index is a miss, never an error.
        std::fs::write(UidIndex::path(&s.state_dir), "garbage").unwrap();
        assert_eq!(
            s.other_enrolled_name(&alice, &nss).unwrap().as_deref(),
            Some("alias")
        );
        std::fs::remove_dir_all(s.records_dir.parent().unwrap()).unwrap();
    }

    #[test]
    fn other_names_of_the_uid_are_found_by_stored_uid_nss_and_state() {
        let alice = account("alice", 1001);
        let nss = Table(vec![
            account("bob", 1002),
            alice.clone(),
            account("alias", 1001),
        ]);
        let s = store();
        // 0600: a state file readable by others is refused (and would count as enrolled).
        let write = |dir: &Path, name: &str, text: &str| {
            use std::os::unix::fs::PermissionsExt;
            let p = dir.join(format!("{name}.toml"));
            std::fs::write(&p, text).unwrap();
            std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o600)).unwrap();
        };
        // Nothing anywhere; bob's records are bob's.
        write(&s.records_dir, "bob", "uid = 1002\n");
        assert_eq!(s.other_enrolled_name(&alice, &nss).unwrap(), None);
        // Records stored for uid 1001 under a name NSS no longer knows (a renamed account).
        write(&s.records_dir, "old-alice", "uid = 1001\n");
        assert_eq!(
            s.other_enrolled_name(&alice, &nss).unwrap().as_deref(),
            Some("old-alice")
        );
        std::fs::remove_file(s.records_dir.join("old-alice.toml")).unwrap();
        // A legacy file (no uid) of a name that resolves to 1001 (useradd -o).
        write(&s.records_dir, "alias", "");
        assert_eq!(
            s.other_enrolled_name(&alice, &nss).unwrap().as_deref(),
            Some("alias")
        );
        std::fs::remove_file(s.records_dir.join("alias.toml")).unwrap();
        // State alone, of a name that resolves to 1001; an empty state does not count.
        write(&s.state_dir, "alias", "version = 1\n");
        assert_eq!(s.other_enrolled_name(&alice, &nss).unwrap(), None);
        write(
            &s.state_dir,
            "alias",
            "version = 1\n[[credential]]\ncredential_id = \"AAAA\"\nsign_count = 0\n",
        );
        assert_eq!(
            s.other_enrolled_name(&alice, &nss).unwrap().as_deref(),
            Some("alias")
        );
        std::fs::remove_dir_all(s.records_dir.parent().unwrap()).unwrap();
    }
}
