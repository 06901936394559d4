//! Administration of enrolled credentials: what `ctap-enroll list`, `remove`, `rename`,
//! `unsuspend` and `devices` do, so that the CLI only parses arguments and prints.
//!
//! Every edit runs under the user's state lock (the same lock a login holds while it waits for
//! the key), reads everything it needs before writing anything, and writes with the store's
//! atomic writes: a file that cannot be read or is insecure stops the edit with no file changed.

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use serde::Serialize;

use crate::store::account::Account;
pub use crate::store::credential::record::algorithm_name;
use crate::store::credential::Suspension;
use crate::store::credential::{
    CredentialFile, CredentialRecord, CredentialStore, RecordsSource, StoreError, UvRequirement,
};

/// How long an edit waits for the user's state lock (a login holds it up to its touch timeout).
pub const EDIT_LOCK_WAIT: Duration = Duration::from_secs(40);

/// Why an administrative edit did not happen.
#[derive(Debug)]
pub enum AdminError {
    Store(StoreError),
    /// No credential of that name (or id) in root's records for the user.
    NotFound {
        user: String,
        name: String,
        path: PathBuf,
        known: Vec<String>,
    },
    /// The edit would break an invariant; the message says what to do instead.
    Refused(AdminRefusal),
}

/// Which invariant an edit would break.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AdminRefusal {
    /// `rename` to an empty or blank name.
    EmptyName,
    /// `rename` to a name the user already has.
    NameTaken { user: String, name: String },
    /// `unsuspend` of a credential without login state.
    NoState { credential: String, path: PathBuf },
}

impl fmt::Display for AdminRefusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AdminRefusal::EmptyName => f.write_str("the new name must not be empty"),
            AdminRefusal::NameTaken { user, name } => write!(
                f,
                "user {user} already has a credential named {name:?}: choose another name"
            ),
            AdminRefusal::NoState { credential, path } => write!(
                f,
                "credential {credential:?} has no login state in {}: re-enroll it",
                path.display()
            ),
        }
    }
}

impl std::error::Error for AdminRefusal {}

impl fmt::Display for AdminError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AdminError::Store(e) => e.fmt(f),
            AdminError::NotFound {
                user,
                name,
                path,
                known,
            } => {
                write!(
                    f,
                    "{}: user {user} has no credential named {name:?}",
                    path.display()
                )?;
                if known.is_empty() {
                    write!(f, " (no credentials at all)")
                } else {
                    write!(f, " (known: {})", known.join(", "))
                }
            }
            AdminError::Refused(r) => r.fmt(f),
        }
    }
}

impl std::error::Error for AdminError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            AdminError::Store(e) => Some(e),
            AdminError::Refused(r) => Some(r),
            AdminError::NotFound { .. } => None,
        }
    }
}

impl From<StoreError> for AdminError {
    fn from(e: StoreError) -> Self {
        AdminError::Store(e)
    }
}

/// One credential as `list` shows it: the record joined with its state.
#[derive(Debug, Clone, Serialize)]
pub struct CredentialSummary {
    pub name: String,
    /// base64url.
    pub credential_id: String,
    /// The records file it came from.
    pub source: PathBuf,
    pub rp_id: String,
    pub algorithm: &'static str,
    pub aaguid: String,
    pub user_verification: &'static str,
    pub hmac_secret: bool,
    /// `fido2` or `u2f` (a U2F credential has no hmac-secret and no UV).
    pub protocol: &'static str,
    pub created: String,
    /// `None` when the state file has no entry for the credential (login would fail).
    pub sign_count: Option<u32>,
    pub last_used: Option<String>,
    pub suspended: bool,
    pub suspended_reason: Option<String>,
}

pub fn uv_name(u: UvRequirement) -> &'static str {
    match u {
        UvRequirement::Required => "required",
        UvRequirement::Discouraged => "discouraged",
    }
}

/// The user's credentials (root's file, plus the user's own when the store opts in) with their
/// state. A user with no records file at all has an empty list.
pub fn list(
    store: &CredentialStore,
    account: &Account,
) -> Result<Vec<CredentialSummary>, StoreError> {
    let user = account.name();
    let records = match store.load_records(account) {
        Ok(r) => r,
        Err(e) if e.is_not_found() => return Ok(Vec::new()),
        Err(e) => return Err(e),
    };
    let state = store.read_state(user)?;
    let system_path = store.records_path(user)?;
    let system_count = records.system_count;
    let per_user_path = records.sources.iter().find_map(|s| match s {
        RecordsSource::PerUser(p) => Some(p.clone()),
        RecordsSource::System(_) => None,
    });
    let mut summaries = Vec::new();
    for (i, r) in records.file.credentials.iter().enumerate() {
        let source = match (&per_user_path, i < system_count) {
            (Some(p), false) => p.clone(),
            (Some(_), true) | (None, _) => system_path.clone(),
        };
        let s = state.get(&r.credential_id);
        summaries.push(CredentialSummary {
            name: r.name.clone(),
            credential_id: r.id_b64(),
            source,
            rp_id: r.rp_id.to_string(),
            algorithm: algorithm_name(r.public_key.algorithm()),
            aaguid: r.aaguid.clone(),
            user_verification: uv_name(r.user_verification),
            hmac_secret: r.hmac_secret,
            protocol: r.protocol.name(),
            created: r.created.clone(),
            sign_count: s.map(|s| s.sign_count),
            last_used: s.and_then(|s| s.last_used.clone()),
            suspended: s.is_some_and(|s| s.suspension.is_some()),
            suspended_reason: s.and_then(|s| s.suspension.as_ref()?.to_text()),
        });
    }
    Ok(summaries)
}

fn not_found(
    store: &CredentialStore,
    user: &str,
    name: &str,
    records: &[CredentialRecord],
) -> AdminError {
    AdminError::NotFound {
        user: user.to_string(),
        name: name.to_string(),
        path: store.records_path(user).unwrap_or_default(),
        known: records.iter().map(|c| c.name.clone()).collect(),
    }
}

/// Remove a credential (by name or base64url id) from root's records and its state.
/// Records go first: a crash in between leaves an orphan state entry, which is harmless.
pub fn remove(
    store: &CredentialStore,
    account: &Account,
    name: &str,
) -> Result<CredentialRecord, AdminError> {
    let user = account.name();
    let mut guard = store.lock_state(user, EDIT_LOCK_WAIT)?;
    let mut records = store.load_system_records(user)?;
    let index = records
        .find(name)
        .ok_or_else(|| not_found(store, user, name, &records.credentials))?;
    let removed = records.credentials.remove(index);
    store.save_system_records(account, &records)?;
    if guard.state.get(&removed.credential_id).is_some() {
        guard.state.remove(&removed.credential_id);
        guard.commit()?;
    }
    Ok(removed)
}

/// Give a credential a new label.
pub fn rename(
    store: &CredentialStore,
    account: &Account,
    old: &str,
    new: &str,
) -> Result<(), AdminError> {
    let user = account.name();
    if new.trim().is_empty() {
        return Err(AdminError::Refused(AdminRefusal::EmptyName));
    }
    let _guard = store.lock_state(user, EDIT_LOCK_WAIT)?;
    let mut records = store.load_system_records(user)?;
    let index = records
        .find(old)
        .ok_or_else(|| not_found(store, user, old, &records.credentials))?;
    if records
        .credentials
        .iter()
        .enumerate()
        .any(|(i, c)| i != index && c.name == new)
    {
        return Err(AdminError::Refused(AdminRefusal::NameTaken {
            user: user.to_string(),
            name: new.to_string(),
        }));
    }
    records.credentials[index].name = new.to_string();
    store.save_system_records(account, &records)?;
    Ok(())
}

/// What `unsuspend` found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Unsuspended {
    /// It was suspended (this suspension); now it is not.
    Lifted(Suspension),
    /// It was not suspended; nothing was written.
    WasNotSuspended,
}

/// Lift a suspension (after a counter regression). The stored counter stays: the genuine key's
/// next counter is above it, a clone's still is not.
pub fn unsuspend(
    store: &CredentialStore,
    account: &Account,
    name: &str,
) -> Result<Unsuspended, AdminError> {
    let user = account.name();
    let mut guard = store.lock_state(user, EDIT_LOCK_WAIT)?;
    let records = store.load_system_records(user)?;
    let record = records
        .find(name)
        .map(|i| &records.credentials[i])
        .ok_or_else(|| not_found(store, user, name, &records.credentials))?;
    let Some(state) = guard.state.get_mut(&record.credential_id) else {
        return Err(AdminError::Refused(AdminRefusal::NoState {
            credential: record.name.clone(),
            path: guard.path().to_path_buf(),
        }));
    };
    let Some(suspension) = state.suspension.take() else {
        return Ok(Unsuspended::WasNotSuspended);
    };
    guard.commit()?;
    Ok(Unsuspended::Lifted(suspension))
}

/// The first name of the form `key-<n>` that `records` does not have yet.
pub fn default_credential_name(records: &CredentialFile) -> String {
    let taken = |name: &str| records.credentials.iter().any(|c| c.name == name);
    let n = (1..=records.credentials.len() + 1)
        .find(|n| !taken(&format!("key-{n}")))
        .unwrap_or(records.credentials.len() + 1);
    format!("key-{n}")
}
