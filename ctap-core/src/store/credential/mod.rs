//! The credential mapping: which keys may log in as which user (records, configuration written by
//! root) and what we remember between logins (state: counters, hmac-secret checks). The two live
//! apart: records change when an admin enrolls a key, state on every login.

mod b64;
mod error;
pub mod record;
mod state;
mod store;
mod uid_index;

pub use b64::{decode as b64_decode, encode as b64_encode};
pub(crate) use error::toml_error_line;
pub use error::{Inconsistency, StoreError};
pub use record::{CredentialFile, CredentialRecord, EnrolledKey, Protocol, RpId, UvRequirement};
pub use state::{CredentialState, HmacCheck, StateFile, Suspension};
#[cfg(feature = "ssh")]
pub(crate) use store::PER_USER_FILE;
pub(crate) use store::{home_of, RecordsSource, StateGuard};
pub use store::{load_credential_file, save_credential_file, CredentialStore};

/// Now, as RFC 3339 UTC seconds: the timestamps records and state carry.
pub fn now_rfc3339() -> String {
    humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string()
}
