//! The offline copy of the directory's last answer for one account:
//! `<state_dir>/<account stem>.directory`, root-only (0600), written under the account's lock.
//! It keeps the raw mapping values (parsed again on use, like a live answer), the uid they were
//! fetched for (a reused name never inherits them) and the time.

use std::path::PathBuf;
use std::time::SystemTime;

use serde::{Deserialize, Serialize};

use crate::store::account::{file_stem, Account};
use crate::store::credential::{CredentialStore, Inconsistency, StoreError};
use crate::store::fs::{self, FileError, Ownership};

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct CacheFile {
    version: u32,
    uid: u32,
    /// Seconds since the epoch when the directory gave this answer.
    fetched: u64,
    values: Vec<String>,
}

pub(super) struct Cached {
    pub values: Vec<String>,
    /// Seconds since it was fetched.
    pub age: u64,
}

fn path(store: &CredentialStore, user: &str) -> Result<PathBuf, StoreError> {
    let stem = file_stem(user).map_err(|_| StoreError::BadUserName(user.to_string()))?;
    Ok(store.state_dir.join(format!("{stem}.directory")))
}

fn owner() -> Ownership {
    Ownership::effective()
}

fn epoch(t: SystemTime) -> u64 {
    t.duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// The cached answer for `account`, if any and if it was fetched for its uid.
pub(super) fn read(
    store: &CredentialStore,
    account: &Account,
    now: SystemTime,
) -> Result<Option<Cached>, StoreError> {
    let p = path(store, account.name())?;
    let bytes = match fs::read_private(&p, owner()) {
        Ok(b) => b,
        Err(FileError::NotFound(_)) => return Ok(None),
        Err(e) => return Err(e.into()),
    };
    let text = String::from_utf8(bytes).map_err(|_| StoreError::Invalid {
        path: p.clone(),
        problem: Inconsistency::NotUtf8,
    })?;
    let file: CacheFile = toml::from_str(&text).map_err(|e| StoreError::Parse {
        path: p.clone(),
        line: None,
        message: e.message().to_string(),
    })?;
    if file.uid != account.uid() || file.version != 1 {
        return Ok(None);
    }
    // A time in the future (a clock set back) counts as fetched now: never older than it is.
    let age = epoch(now).saturating_sub(file.fetched);
    Ok(Some(Cached {
        values: file.values,
        age,
    }))
}

/// Write the answer; the caller holds the account's lock.
pub(super) fn write(
    store: &CredentialStore,
    account: &Account,
    values: &[String],
    now: SystemTime,
) -> Result<(), StoreError> {
    let p = path(store, account.name())?;
    let text = toml::to_string(&CacheFile {
        version: 1,
        uid: account.uid(),
        fetched: epoch(now),
        values: values.to_vec(),
    })
    .map_err(|e| StoreError::Invalid {
        path: p.clone(),
        problem: Inconsistency::Unwritable {
            toml: e.to_string(),
        },
    })?;
    fs::write_atomic_locked(&p, text.as_bytes(), 0o600)?;
    Ok(())
}

/// Remove the cached answer (the directory has no mapping for the user); the caller holds the
/// account's lock.
pub(super) fn remove(store: &CredentialStore, user: &str) -> Result<(), StoreError> {
    let p = path(store, user)?;
    match std::fs::remove_file(&p) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(StoreError::File(FileError::Io { path: p, source: e })),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;
    use std::time::Duration;

    fn store() -> CredentialStore {
        let d = crate::store::fs::test_dir("dircache");
        std::fs::set_permissions(&d, std::fs::Permissions::from_mode(0o700)).unwrap();
        CredentialStore {
            records_dir: d.clone(),
            state_dir: d,
            per_user_records: false,
        }
    }

    fn alice(uid: u32) -> Account {
        Account::from_passwd("alice".into(), uid, uid, "/home/alice".into())
    }

    #[test]
    fn written_root_only_read_back_with_its_age_and_only_for_its_uid() {
        let s = store();
        let me = nix::unistd::geteuid().as_raw();
        let t0 = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000);
        write(&s, &alice(me), &["passkey:a,b".into()], t0).unwrap();
        let p = path(&s, "alice").unwrap();
        let mode = std::fs::metadata(&p).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        let c = read(&s, &alice(me), t0 + Duration::from_secs(90))
            .unwrap()
            .unwrap();
        assert_eq!(c.values, vec!["passkey:a,b".to_string()]);
        assert_eq!(c.age, 90);
        // A clock set back never makes the copy younger than fetched-now.
        let c = read(&s, &alice(me), t0 - Duration::from_secs(50))
            .unwrap()
            .unwrap();
        assert_eq!(c.age, 0);
        // The name reused by another uid inherits nothing.
        assert!(read(&s, &alice(me + 1), t0).unwrap().is_none());
        remove(&s, "alice").unwrap();
        assert!(read(&s, &alice(me), t0).unwrap().is_none());
        remove(&s, "alice").unwrap();
        let _ = std::fs::remove_dir_all(&s.state_dir);
    }

    #[test]
    fn a_copy_others_can_read_is_refused() {
        let s = store();
        let me = nix::unistd::geteuid().as_raw();
        write(&s, &alice(me), &[], SystemTime::now()).unwrap();
        let p = path(&s, "alice").unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o644)).unwrap();
        assert!(read(&s, &alice(me), SystemTime::now()).is_err());
        let _ = std::fs::remove_dir_all(&s.state_dir);
    }
}
