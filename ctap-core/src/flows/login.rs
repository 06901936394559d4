//! One login: the whole of docs/ARCHITECTURE.md §4, as the PAM module and `ctap-enroll test` run it.
//!
//! The user's state lock is held from before the assertion until its result is written. Two
//! sessions of one user therefore take turns: without that, a session holding counter 6 could
//! write before one holding counter 5, and the second would look like a cloned key. The lock is
//! taken only after user verification (the PIN prompt), and the state is read again under it:
//! someone sitting at a PIN prompt, perhaps another local user running `su alice`, must not hold
//! up alice's other logins.
//!
//! A PIN goes only to a key that answered the silent probe for the credential and whose AAGUID
//! is the one recorded at enrollment, and never when the key has a single retry left: losing that
//! one blocks the PIN for good, and only a reset that wipes every credential recovers.

use std::fmt;
use std::time::Instant;

use crate::flows::session::{keepalive_for, open_keys, Authenticator, OpenedKey, Prompter};
use crate::flows::uv::{self, UvError, UvRefusal, Verification};
use crate::flows::verify::{verify_assertion, Challenge, CounterOutcome, Expectation, VerifyError};
use crate::store::account::{Account, LookupError, Nss, UserResolver};
use crate::store::config::{CloneAction, Policy, UvPolicy};
use crate::store::credential::{CredentialRecord, StateFile, StoreError, UvRequirement};
use crate::store::directory::{self, DirectoryError, DirectoryNote};
use crate::store::fs::FileError;
use crate::transport::ctap1::{Ctap1Error, StatusWord};
use crate::transport::ctap2::ext::hmac_secret::HmacSalts;
use crate::transport::ctap2::pin::permission;
use crate::transport::ctap2::{CtapError, CtapStatus, GetAssertionRequest, Misbehaviour};
use crate::transport::ctaphid::CtapHidError;
use crate::transport::device::{DeviceUri, TransportError};

mod race;
mod u2f;
#[cfg(test)]
mod uv_cue_tests;

/// A successful login. Only [`login`] builds one, and only after verification and after the new
/// state was written.
#[derive(Debug)]
pub struct LoginGranted {
    /// The account NSS resolved the name to (the audit log names it, not only the spelling).
    account: Account,
    credential_name: String,
    sign_count: u32,
    counter: CounterOutcome,
    user_verified: bool,
    /// Credentials from `[directory]`: whether from its offline cache, values skipped.
    directory: Option<DirectoryNote>,
}

impl LoginGranted {
    /// The account that was authenticated: NSS's canonical name and uid.
    pub fn account(&self) -> &Account {
        &self.account
    }
    pub fn credential_name(&self) -> &str {
        &self.credential_name
    }
    pub fn sign_count(&self) -> u32 {
        self.sign_count
    }
    pub fn counter(&self) -> CounterOutcome {
        self.counter
    }
    pub fn user_verified(&self) -> bool {
        self.user_verified
    }
    /// Where directory credentials came from (`None`: root's records).
    pub fn directory(&self) -> Option<&DirectoryNote> {
        self.directory.as_ref()
    }
}

/// Why a login failed. Every variant is a denial.
#[derive(Debug)]
pub enum LoginError {
    /// The name PAM was given is not an account the name service knows.
    UnknownUser(String),
    /// The name service could not be asked.
    Lookup(LookupError),
    /// Root's records were written for another uid than the account's (the name was reused).
    UidMismatch {
        recorded: u32,
        actual: u32,
    },
    /// The account has no records, but root-written state for it names credentials: the records
    /// were lost or removed by hand. Never skipped.
    RecordsMissing,
    /// The canonical name has nothing, but another name of the same uid is enrolled.
    EnrolledAsOtherName {
        other: String,
        uid: u32,
    },
    /// The account has no records and no state, nor does any other name of its uid (the only
    /// case `nouserok` may skip).
    NoRecords,
    /// Records or state could not be read or written.
    Store(StoreError),
    /// The user has records, but none this policy accepts (or the one chosen changed).
    NoUsableCredential(Unusable),
    /// No attached key holds any of the user's credentials.
    WrongKey,
    /// A credential has no state (never completed enrollment, or state was lost).
    MissingState {
        credential: String,
    },
    /// User verification is needed and cannot be done (no PIN set, PIN prompts disabled, cancelled).
    UvUnavailable(UvRefusal),
    Device(CtapError),
    Rejected {
        credential: String,
        reason: VerifyError,
        suspended: bool,
    },
    /// A place root's configuration names (records or state directory, the `unix:` device
    /// socket) is missing, or it or a directory above it is not safe to trust.
    Place(FileError),
    /// The key has one PIN retry left: the PIN is not sent (module doc).
    PinLastRetry,
    /// The key that holds the credential is not the one enrolled (another AAGUID, or none
    /// recorded while `device = "auto"`): it gets no PIN.
    DeviceNotEnrolled {
        credential: String,
        why: String,
    },
    /// `[directory]` gave no credentials: unreachable without a usable offline copy, an error
    /// answer, or only malformed mappings.
    Directory(DirectoryError),
}

impl LoginError {
    /// A short stable word for syslog lines and tests.
    pub fn kind(&self) -> &'static str {
        match self {
            LoginError::UnknownUser(_) => "unknown_user",
            LoginError::Lookup(_) => "nss_error",
            LoginError::UidMismatch { .. } => "uid_mismatch",
            LoginError::RecordsMissing => "records_missing",
            LoginError::EnrolledAsOtherName { .. } => "alias_enrolled",
            LoginError::NoRecords => "no_records",
            LoginError::Store(e) if is_busy(e) => "busy",
            LoginError::Store(_) => "config_error",
            LoginError::NoUsableCredential(Unusable::HmacSecretRequired { .. }) => {
                "hmac_secret_required"
            }
            LoginError::NoUsableCredential(_) => "no_usable_credential",
            LoginError::WrongKey => "wrong_key",
            LoginError::MissingState { .. } => "missing_state",
            LoginError::UvUnavailable(_) => "uv_unavailable",
            // A U2F key that does not hold the key handle: as a CTAP2 key's NO_CREDENTIALS.
            LoginError::Device(CtapError::Ctap1(Ctap1Error::Status(StatusWord::WrongData))) => {
                "wrong_key"
            }
            LoginError::Device(e) => DeviceFailure::of(e).word(),
            LoginError::Rejected { reason, .. } => match reason {
                VerifyError::CounterRegression { .. } => "counter_regression",
                VerifyError::Suspended(_) => "suspended",
                VerifyError::BadSignature => "bad_signature",
                VerifyError::HmacMismatch
                | VerifyError::HmacMissing
                | VerifyError::HmacUnusable(_)
                | VerifyError::HmacUvMismatch { .. } => "hmac_mismatch",
                VerifyError::UserNotPresent | VerifyError::UserNotVerified => "flags",
                VerifyError::RpIdHashMismatch | VerifyError::UnexpectedCredential => {
                    "bad_assertion"
                }
                VerifyError::CounterNotKept => "no_counter",
            },
            LoginError::Place(FileError::NotFound(_)) => "config_missing",
            LoginError::Place(_) => "untrusted_path",
            LoginError::PinLastRetry => "pin_last_retry",
            LoginError::DeviceNotEnrolled { .. } => "device_not_enrolled",
            LoginError::Directory(e) => e.kind(),
        }
    }
}

/// Another login or `ctap-enroll` of the same user held the user's lock for the whole wait:
/// not a configuration problem, and worth its own word and message.
fn is_busy(e: &StoreError) -> bool {
    matches!(
        e,
        StoreError::File(crate::store::fs::FileError::LockTimeout(_))
    )
}

impl LoginError {
    /// Another login of the same user held the user's lock for the whole wait.
    pub fn is_busy(&self) -> bool {
        matches!(self, LoginError::Store(e) if is_busy(e))
    }
}

/// How a device failure reads to the person and the log, decided once from the error's
/// structure: the PAM module's message and the reason word both come from it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeviceFailure {
    /// No key attached, or none that can be opened.
    NoKey,
    /// The key refused the PIN.
    PinInvalid,
    /// The key's PIN is blocked (for good, or until it is reinserted).
    PinBlocked,
    /// The person declined the request on the key.
    PresenceDenied,
    /// Nobody touched the key, or it did not answer, in time.
    Timeout,
    /// The request was cancelled.
    Cancelled,
    /// Anything else: a broken answer, an unsupported key, a transport fault.
    Other,
}

impl DeviceFailure {
    pub fn of(e: &CtapError) -> Self {
        match e {
            CtapError::Status(CtapStatus::PinInvalid) => DeviceFailure::PinInvalid,
            CtapError::Status(CtapStatus::PinBlocked | CtapStatus::PinAuthBlocked) => {
                DeviceFailure::PinBlocked
            }
            CtapError::Status(CtapStatus::OperationDenied) => DeviceFailure::PresenceDenied,
            CtapError::Status(CtapStatus::UserActionTimeout | CtapStatus::ActionTimeout) => {
                DeviceFailure::Timeout
            }
            CtapError::Status(CtapStatus::KeepaliveCancel) => DeviceFailure::Cancelled,
            CtapError::Hid(CtapHidError::Timeout) => DeviceFailure::Timeout,
            CtapError::Hid(CtapHidError::Cancelled) => DeviceFailure::Cancelled,
            CtapError::Hid(CtapHidError::Transport(
                TransportError::NoDevice | TransportError::Open { .. },
            )) => DeviceFailure::NoKey,
            // A U2F key broke the message format or sent a registration that does not verify:
            // the same word as a CTAP2 key's misbehaviour.
            CtapError::Hid(_) | CtapError::Misbehaved(_) => DeviceFailure::Other,
            CtapError::Ctap1(_) => DeviceFailure::Other,
            CtapError::Status(_)
            | CtapError::DeviceIncompatible(_)
            | CtapError::InvalidInput(_) => DeviceFailure::Other,
        }
    }

    /// The syslog reason word.
    pub fn word(self) -> &'static str {
        match self {
            DeviceFailure::NoKey => "no_key",
            DeviceFailure::PinInvalid => "pin_invalid",
            DeviceFailure::PinBlocked => "pin_blocked",
            DeviceFailure::PresenceDenied => "presence_denied",
            DeviceFailure::Timeout => "timeout",
            DeviceFailure::Cancelled => "cancelled",
            DeviceFailure::Other => "device_error",
        }
    }
}

impl fmt::Display for LoginError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LoginError::UnknownUser(name) => write!(
                f,
                "user {name:?} is not known to the password database (NSS): check the name, or the name service"
            ),
            LoginError::Lookup(m) => write!(f, "{m}: check the name service (nsswitch.conf, sssd)"),
            LoginError::UidMismatch { recorded, actual } => write!(
                f,
                "the user's records were written for uid {recorded}, but the account now has uid {actual} (a reused name?): check the account, then remove and re-enroll its keys with ctap-enroll"
            ),
            LoginError::RecordsMissing => write!(
                f,
                "the user has login state but no records file: restore the records file from a backup, or remove the state file to un-enroll the user"
            ),
            LoginError::EnrolledAsOtherName { other, uid } => write!(
                f,
                "keys of uid {uid} are enrolled under the name {other:?}, not this one: log in as {other:?}, or enroll this name with ctap-enroll"
            ),
            LoginError::NoRecords => write!(f, "no security key is enrolled for this user"),
            LoginError::Store(e) if is_busy(e) => write!(
                f,
                "another login or ctap-enroll of this user held the lock too long ({e}): \
                 try again; if it persists, look for a stuck login or ctap-enroll process"
            ),
            LoginError::Store(e) => e.fmt(f),
            LoginError::NoUsableCredential(u) => u.fmt(f),
            LoginError::WrongKey => write!(f, "the attached security key is not enrolled for this user"),
            LoginError::MissingState { credential } => write!(
                f,
                "credential {credential:?} has no login state: re-enroll it with `ctap-enroll enroll`"
            ),
            LoginError::UvUnavailable(r) => r.fmt(f),
            LoginError::Device(CtapError::Hid(CtapHidError::Transport(TransportError::NoDevice))) => {
                write!(f, "No security key found: insert your key and try again")
            }
            LoginError::Device(e) => e.fmt(f),
            LoginError::Rejected { credential, reason, suspended } => {
                write!(f, "credential {credential:?} rejected: {reason}")?;
                // An already suspended credential says so in `reason`; only a new suspension is news.
                if *suspended && !matches!(reason, VerifyError::Suspended(_)) {
                    write!(f, "; the credential is now suspended until `ctap-enroll unsuspend`")?;
                }
                Ok(())
            }
            LoginError::Place(FileError::NotFound(p)) => write!(
                f,
                "{} does not exist: fix the path in the configuration or mount the volume",
                p.display()
            ),
            LoginError::Place(e) => e.fmt(f),
            LoginError::PinLastRetry => write!(
                f,
                "the security key has one PIN retry left, and a wrong PIN now would block it for good \
                 (only a reset that erases every credential recovers): enter the right PIN with \
                 `ctap-enroll pin change` at your own terminal, which restores the retries"
            ),
            LoginError::DeviceNotEnrolled { credential, why } => write!(
                f,
                "the key answering for credential {credential:?} is not the enrolled key ({why}); \
                 no PIN was sent to it"
            ),
            LoginError::Directory(e) => e.fmt(f),
        }
    }
}

/// Why the user's enrolled credentials do not serve this login.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Unusable {
    /// The policy's RP ID and user-verification rules leave none of `enrolled`.
    FilteredOut {
        enrolled: usize,
        rp_id: Option<String>,
    },
    /// The credential was re-enrolled between the unlocked read of its state and the lock.
    ChangedWhileWaiting { credential: String },
    /// `require_hmac_secret = true`, and the `refused` credentials the rest of the policy
    /// accepts have no hmac-secret check (U2F ones never do).
    HmacSecretRequired { refused: usize },
}

impl fmt::Display for Unusable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Unusable::FilteredOut { enrolled, rp_id } => {
                write!(
                    f,
                    "none of the user's {enrolled} enrolled credential(s) is usable here (RP ID"
                )?;
                if let Some(rp) = rp_id {
                    write!(f, " {rp}")?;
                }
                f.write_str(" or user verification policy)")
            }
            Unusable::ChangedWhileWaiting { credential } => write!(
                f,
                "credential {credential:?} was changed while this login waited: try again"
            ),
            Unusable::HmacSecretRequired { refused } => write!(
                f,
                "the policy requires hmac-secret (require_hmac_secret = true) and the user's \
                 {refused} credential(s) have none (U2F-only keys cannot give one): enroll a \
                 FIDO2 key with hmac-secret with `ctap-enroll enroll`"
            ),
        }
    }
}

impl std::error::Error for Unusable {}

impl std::error::Error for LoginError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            LoginError::Store(e) => Some(e),
            LoginError::Device(e) => Some(e),
            LoginError::Rejected { reason, .. } => Some(reason),
            LoginError::Place(e) => Some(e),
            LoginError::NoUsableCredential(u) => Some(u),
            LoginError::Lookup(e) => Some(e),
            LoginError::Directory(e) => Some(e),
            LoginError::UnknownUser(_)
            | LoginError::UidMismatch { .. }
            | LoginError::RecordsMissing
            | LoginError::EnrolledAsOtherName { .. }
            | LoginError::NoRecords
            | LoginError::WrongKey
            | LoginError::MissingState { .. }
            | LoginError::UvUnavailable(_)
            | LoginError::PinLastRetry
            | LoginError::DeviceNotEnrolled { .. } => None,
        }
    }
}

impl From<StoreError> for LoginError {
    fn from(e: StoreError) -> Self {
        LoginError::Store(e)
    }
}

impl From<UvError> for LoginError {
    fn from(e: UvError) -> Self {
        match e {
            UvError::Refused(UvRefusal::LastRetry) => LoginError::PinLastRetry,
            UvError::Refused(r) => LoginError::UvUnavailable(r),
            UvError::Device(d) => LoginError::Device(d),
        }
    }
}

impl From<CtapError> for LoginError {
    fn from(e: CtapError) -> Self {
        LoginError::Device(e)
    }
}

/// The credentials of `user` that this policy lets log in.
fn usable_credentials(
    policy: &Policy,
    records: Vec<CredentialRecord>,
) -> Result<Vec<CredentialRecord>, LoginError> {
    let total = records.len();
    let usable: Vec<CredentialRecord> = records
        .into_iter()
        .filter(|r| !r.rp_id.is_ssh())
        .filter(|r| {
            policy
                .rp_id
                .as_ref()
                .is_none_or(|rp| r.rp_id.as_str() == rp)
        })
        .filter(|r| {
            policy.user_verification != UvPolicy::Required
                || r.user_verification == UvRequirement::Required
        })
        .collect();
    if usable.is_empty() {
        return Err(LoginError::NoUsableCredential(Unusable::FilteredOut {
            enrolled: total,
            rp_id: policy.rp_id.clone(),
        }));
    }
    if policy.require_hmac_secret {
        let (with, without): (Vec<_>, Vec<_>) = usable.into_iter().partition(|r| r.hmac_secret);
        if with.is_empty() {
            return Err(LoginError::NoUsableCredential(
                Unusable::HmacSecretRequired {
                    refused: without.len(),
                },
            ));
        }
        return Ok(with);
    }
    Ok(usable)
}

/// The order to probe credentials in: the most recently used first, then the others with login
/// state, then the rest, each in enrollment order. Only the order changes (every credential is
/// still probed), so the key a user logs in with is found by the first probe even among
/// hundreds of RP IDs, well within the timeout.
fn probe_order(creds: &[CredentialRecord], state: &StateFile) -> Vec<CredentialRecord> {
    let by_id: std::collections::HashMap<&[u8], &crate::store::credential::CredentialState> = state
        .credentials
        .iter()
        .map(|s| (s.credential_id.as_slice(), s))
        .collect();
    let mut ranked: Vec<(bool, Option<&str>, &CredentialRecord)> = creds
        .iter()
        .map(|c| {
            let s = by_id.get(c.credential_id.as_slice());
            (s.is_some(), s.and_then(|s| s.last_used.as_deref()), c)
        })
        .collect();
    // Stable: equals keep enrollment order. RFC 3339 UTC times sort as text.
    ranked.sort_by(|a, b| b.0.cmp(&a.0).then_with(|| b.1.cmp(&a.1)));
    ranked.into_iter().map(|(_, _, c)| c.clone()).collect()
}

/// What one key answered to the silent probes.
enum ProbeAnswer<'r> {
    /// It holds this credential (the first group, in probe order, it answered for).
    Holds(&'r CredentialRecord),
    /// It answered with a credential it was not asked about.
    Unexpected,
    /// It holds none of them.
    HoldsNone,
    /// It failed; `Timeout` means the login's time is up.
    Failed(CtapError),
}

/// The credentials grouped by relying party, in order of first appearance: one probe (or one
/// chunked allow list) per group and key.
fn rp_groups<'r>(creds: &'r [CredentialRecord]) -> Vec<(&'r str, Vec<&'r CredentialRecord>)> {
    let mut groups: Vec<(&str, Vec<&'r CredentialRecord>)> = Vec::new();
    let mut index: std::collections::HashMap<&str, usize> = std::collections::HashMap::new();
    for c in creds {
        let at = *index.entry(c.rp_id.as_str()).or_insert_with(|| {
            groups.push((c.rp_id.as_str(), Vec::new()));
            groups.len() - 1
        });
        if let Some((_, g)) = groups.get_mut(at) {
            g.push(c);
        }
    }
    groups
}

/// Once one key has answered a probe with a credential, how long the others still get before
/// their probes are cancelled (at their next keepalive): a key that keeps a probe waiting (a
/// hung or hostile device) must not hold up the login until the deadline (issue 16).
const PROBE_GRACE: std::time::Duration = std::time::Duration::from_millis(300);

/// When the first key answered a probe with a credential, shared by the probe threads.
type FirstAnswer = std::sync::OnceLock<Instant>;

/// Probe one key group by group until it answers with a credential.
fn probe_key<'r>(
    key: &mut Authenticator,
    groups: &[(&str, Vec<&'r CredentialRecord>)],
) -> ProbeAnswer<'r> {
    probe_key_racing(key, groups, &FirstAnswer::new())
}

/// [`probe_key`] among several keys: gives up [`PROBE_GRACE`] after another key answered.
fn probe_key_racing<'r>(
    key: &mut Authenticator,
    groups: &[(&str, Vec<&'r CredentialRecord>)],
    first: &FirstAnswer,
) -> ProbeAnswer<'r> {
    let mut failure = None;
    for (rp, group) in groups {
        let ids: Vec<Vec<u8>> = group.iter().map(|c| c.credential_id.clone()).collect();
        let mut late = |_| match first.get() {
            Some(at) if at.elapsed() >= PROBE_GRACE => {
                crate::transport::ctaphid::WaitDecision::Cancel
            }
            _ => crate::transport::ctaphid::WaitDecision::Continue,
        };
        let answer = key.probe_credentials_with(rp, &ids, &mut late);
        if matches!(answer, Ok(Some(_))) {
            let _ = first.set(Instant::now());
        }
        match answer {
            Ok(Some(id)) => {
                return match group.iter().find(|c| c.credential_id == id) {
                    Some(c) => ProbeAnswer::Holds(c),
                    None => ProbeAnswer::Unexpected,
                }
            }
            Ok(None) => {}
            // The login's time is up: no further probe could be answered.
            Err(e @ CtapError::Hid(CtapHidError::Timeout)) => return ProbeAnswer::Failed(e),
            Err(e) => failure = Some(e),
        }
    }
    failure.map_or(ProbeAnswer::HoldsNone, ProbeAnswer::Failed)
}

/// Find which attached keys hold which credential, with silent (up=false) probes: one per
/// relying party per key, in the order of `creds`, each allow list split to fit the key's getInfo
/// limits. Several keys are probed at once, each on its own thread, so a slow or hung key
/// costs no more than its own deadline and delays none of the others. For each key that
/// answers, the credential it holds; a key that answers with a credential it was not asked
/// about is set aside (and is the error if no other key answers).
fn find_credentials<'r>(
    keys: &mut [Authenticator],
    creds: &'r [CredentialRecord],
) -> Result<Vec<(usize, &'r CredentialRecord)>, LoginError> {
    let groups = rp_groups(creds);
    let first_answer = FirstAnswer::new();
    let answers: Vec<ProbeAnswer<'r>> = match keys {
        [key] => vec![probe_key(key, &groups)],
        _ => std::thread::scope(|scope| {
            let groups = &groups;
            let first = &first_answer;
            let handles: Vec<_> = keys
                .iter_mut()
                .map(|key| scope.spawn(move || probe_key_racing(key, groups, first)))
                .collect();
            handles
                .into_iter()
                .map(|h| {
                    h.join()
                        .unwrap_or(ProbeAnswer::Failed(Misbehaviour::KeyThreadFailed.into()))
                })
                .collect()
        }),
    };
    let mut found = Vec::new();
    let mut timed_out = None;
    let mut last_err = None;
    for (i, answer) in answers.into_iter().enumerate() {
        match answer {
            ProbeAnswer::Holds(c) => found.push((i, c)),
            ProbeAnswer::HoldsNone => {}
            ProbeAnswer::Unexpected => {
                last_err = Some(LoginError::Rejected {
                    credential: "(unknown)".into(),
                    reason: VerifyError::UnexpectedCredential,
                    suspended: false,
                })
            }
            ProbeAnswer::Failed(e @ CtapError::Hid(CtapHidError::Timeout)) => {
                timed_out = Some(LoginError::Device(e))
            }
            ProbeAnswer::Failed(e) => last_err = Some(LoginError::Device(e)),
        }
    }
    match (found.is_empty(), timed_out.or(last_err)) {
        (false, _) => Ok(found),
        (true, Some(e)) => Err(e),
        (true, None) => Err(LoginError::WrongKey),
    }
}

/// One key of those opened: the only one, or with several the one the user touches
/// (authenticatorSelection; the others are cancelled). What `ctap-enroll` and the agent do when
/// the device names several keys; each says "touch the one to use" its own way first.
pub fn one_key_by_touch(mut keys: Vec<Authenticator>) -> Result<Authenticator, LoginError> {
    if keys.len() > 1 {
        let all: Vec<usize> = (0..keys.len()).collect();
        let chosen = select_by_touch(&mut keys, &all)?;
        return Ok(keys.swap_remove(chosen));
    }
    keys.pop().ok_or(LoginError::Device(CtapError::Hid(
        crate::transport::device::TransportError::NoDevice.into(),
    )))
}

/// With several keys attached, let the user's touch pick one (authenticatorSelection) before
/// any PIN is sent: each of `candidates` (indices into `keys`) blinks, the first one touched
/// wins and the others are cancelled.
pub fn select_by_touch(
    keys: &mut [Authenticator],
    candidates: &[usize],
) -> Result<usize, LoginError> {
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
    const NONE: usize = usize::MAX;
    let winner = AtomicUsize::new(NONE);
    let done = AtomicBool::new(false);
    let results: Vec<Result<(), CtapError>> = std::thread::scope(|scope| {
        let handles: Vec<_> = keys
            .iter_mut()
            .enumerate()
            .filter(|(i, _)| candidates.contains(i))
            .map(|(i, key)| {
                let (winner, done) = (&winner, &done);
                scope.spawn(move || {
                    let r = key.selection(&mut |_| {
                        if done.load(Ordering::SeqCst) {
                            crate::transport::ctaphid::WaitDecision::Cancel
                        } else {
                            crate::transport::ctaphid::WaitDecision::Continue
                        }
                    });
                    if r.is_ok() {
                        let _ =
                            winner.compare_exchange(NONE, i, Ordering::SeqCst, Ordering::SeqCst);
                        done.store(true, Ordering::SeqCst);
                    }
                    r
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| {
                h.join()
                    .unwrap_or(Err(Misbehaviour::KeyThreadFailed.into()))
            })
            .collect()
    });
    match winner.load(Ordering::SeqCst) {
        NONE => Err(results
            .into_iter()
            .find_map(Result::err)
            .map(LoginError::Device)
            .unwrap_or(LoginError::WrongKey)),
        i => Ok(i),
    }
}

/// The account behind the name PAM was given (see [`crate::store::account`]). A name the name
/// service does not know is a denial, never "no records".
pub(crate) fn resolve(resolver: &dyn UserResolver, typed: &str) -> Result<Account, LoginError> {
    match resolver.by_name(typed) {
        Ok(Some(a)) => Ok(a),
        Ok(None) => Err(LoginError::UnknownUser(typed.to_string())),
        Err(e) => Err(LoginError::Lookup(e)),
    }
}

/// Why an account without records of its own is, or is not, simply not enrolled.
fn no_records(
    store: &crate::store::credential::CredentialStore,
    account: &Account,
    resolver: &dyn UserResolver,
) -> LoginError {
    match store.has_state(account.name()) {
        Ok(false) => {}
        Ok(true) => return LoginError::RecordsMissing,
        Err(e) => return e.into(),
    }
    match store.other_enrolled_name(account, resolver) {
        Ok(None) => LoginError::NoRecords,
        Ok(Some(other)) => LoginError::EnrolledAsOtherName {
            other,
            uid: account.uid(),
        },
        Err(e) => e.into(),
    }
}

/// May the PIN go to `key`, which answered the probe for `record`? Only when the key's AAGUID
/// is the enrolled one (a record without one, from an import, is accepted only when root named
/// the device). That the key has more than one retry left is the planner's rule (`uv::obtain`).
fn pin_gate(
    key: &Authenticator,
    record: &CredentialRecord,
    device: &DeviceUri,
) -> Result<(), LoginError> {
    if key.info().builtin_uv() {
        return Ok(());
    }
    enrolled_model(key, record, device)
}

/// Whether a PIN would go to `key` for `record` (UV by PIN, not built in).
fn needs_pin(key: &Authenticator, record: &CredentialRecord) -> bool {
    record.user_verification == UvRequirement::Required && !key.info().builtin_uv()
}

/// The key's AAGUID is the one recorded at enrollment (see [`pin_gate`]).
fn enrolled_model(
    key: &Authenticator,
    record: &CredentialRecord,
    device: &DeviceUri,
) -> Result<(), LoginError> {
    let actual = key.info().aaguid_string();
    let refuse = |why: String| {
        Err(LoginError::DeviceNotEnrolled {
            credential: record.name.clone(),
            why,
        })
    };
    if record.aaguid.is_empty() {
        if *device == DeviceUri::Auto {
            return refuse(format!(
                "no AAGUID was recorded at enrollment and device = \"auto\"; re-enroll the key \
                 with `ctap-enroll enroll`, or name it with device = (key AAGUID {actual})"
            ));
        }
    } else if !record.aaguid.eq_ignore_ascii_case(&actual) {
        return refuse(format!(
            "its AAGUID is {actual}, the enrolled key's is {}",
            record.aaguid
        ));
    }
    Ok(())
}

/// The state of `record`, if it may log in at all: present, not suspended, and holding the
/// hmac-secret check when the record asks for one (so the request always has its salt).
fn usable_state(
    record: &CredentialRecord,
    state: &crate::store::credential::StateFile,
) -> Result<crate::store::credential::CredentialState, LoginError> {
    let state =
        state
            .get(&record.credential_id)
            .cloned()
            .ok_or_else(|| LoginError::MissingState {
                credential: record.name.clone(),
            })?;
    if let Some(s) = &state.suspension {
        return Err(LoginError::Rejected {
            credential: record.name.clone(),
            reason: VerifyError::Suspended(s.clone()),
            suspended: true,
        });
    }
    if record.hmac_secret && state.hmac.is_none() {
        return Err(LoginError::MissingState {
            credential: record.name.clone(),
        });
    }
    Ok(state)
}

/// Authenticate `user` (as PAM was given it: resolved through NSS) for `service` under `policy`.
pub fn login(
    user: &str,
    service: &str,
    policy: &Policy,
    prompter: &mut dyn Prompter,
) -> Result<LoginGranted, LoginError> {
    login_with(&Nss, user, service, policy, prompter)
}

/// Where a login comes from, beyond the user's name: what PAM knows of the session.
#[derive(Debug, Clone, Copy, Default)]
pub struct LoginContext<'a> {
    /// PAM_RHOST: the host a remote session (sshd) comes from; `None` for a local one.
    pub remote_host: Option<&'a str>,
}

/// [`login`] from the session `context` (the PAM module's: PAM_RHOST).
pub fn login_in(
    context: &LoginContext<'_>,
    user: &str,
    service: &str,
    policy: &Policy,
    prompter: &mut dyn Prompter,
) -> Result<LoginGranted, LoginError> {
    login_from(&Nss, context, user, service, policy, prompter)
}

/// [`login`] with the name service injected.
pub fn login_with(
    resolver: &dyn UserResolver,
    user: &str,
    service: &str,
    policy: &Policy,
    prompter: &mut dyn Prompter,
) -> Result<LoginGranted, LoginError> {
    let local = LoginContext::default();
    login_from(resolver, &local, user, service, policy, prompter)
}

/// [`login_in`] with the name service injected.
pub fn login_from(
    resolver: &dyn UserResolver,
    context: &LoginContext<'_>,
    user: &str,
    service: &str,
    policy: &Policy,
    prompter: &mut dyn Prompter,
) -> Result<LoginGranted, LoginError> {
    let (account, creds, from_directory) = enrolled_credentials(resolver, user, policy)?;
    let user = account.name();
    let store = policy.store();
    // Read unlocked: it orders the probes and turns away a credential that cannot log in before
    // any PIN is asked; it is read again under the lock before anything is decided from it.
    let unlocked_state = store.read_state(user)?;

    // Everything with the keys (opening, probes, PIN, the touch) and the wait for the user's
    // lock ends by this instant.
    let deadline = Instant::now() + policy.touch_timeout();
    let (mut keys, u2f_keys) = split_keys(open_keys(
        &policy.device,
        policy.touch_timeout(),
        Some(deadline),
    )?);
    let ordered = probe_order(&creds, &unlocked_state);
    let chosen = if keys.is_empty() {
        Err(LoginError::WrongKey)
    } else {
        // With a U2F-only key attached too, the FIDO2 key must be probed: if it lacks the
        // credential, the U2F key gets its turn (a NO_CREDENTIALS later would end the login).
        let unprobed_ok = u2f_keys.is_empty();
        choose_key(&mut keys, &ordered, unprobed_ok, policy, prompter)
    };
    let (index, record) = match chosen {
        // Several keys hold a credential: one touch, all asked at once (login/race.rs).
        Ok(Choice::Several(found)) if race::raceable(&found, &unlocked_state) => {
            let race = race::Race {
                account: &account,
                service,
                policy,
                context,
                from_directory,
                deadline,
            };
            return race::login(&mut keys, &found, race, prompter);
        }
        Ok(Choice::Several(found)) => select_among(&mut keys, found, policy, prompter)?,
        Ok(Choice::One(index, record)) => (index, record),
        // No FIDO2 key holds a credential: the U2F-only keys may (login/u2f.rs).
        Err(LoginError::WrongKey) if !u2f_keys.is_empty() => {
            let login = u2f::Login {
                account: &account,
                ordered: &ordered,
                unlocked_state: &unlocked_state,
                service,
                policy,
                deadline,
                context,
            };
            return u2f::login(u2f_keys, login, prompter);
        }
        Err(e) => return Err(e),
    };
    let key = &mut keys[index];

    // Unlocked, before any PIN: a credential that cannot log in gets no PIN prompt.
    let state = usable_state(record, &unlocked_state)?;
    let record = &effective_record(record, &state);
    let verification = verify_user(key, record, policy, prompter)?;

    // Held until the new state is on disk, taken after the PIN (module doc); the state is read
    // again under it.
    let mut guard = store.lock_state(user, deadline.saturating_duration_since(Instant::now()))?;
    let state = usable_state(record, &guard.state)?;
    let challenge = Challenge::new(service, user);
    let mut request = assertion_request(record, &state, &verification, &challenge)?;
    // A directory credential's first login on this host records its hmac-secret check (§12).
    let first_check = first_hmac_salt(&from_directory, &state, key, &mut request);
    if policy.cue {
        prompter.touch_cue(&policy.cue_prompt);
    }
    let response = {
        // The file and the command announce the wait; the guard ends both in every outcome.
        let _pending = touch_pending(policy, context, service, &account);
        let mut ka = keepalive_for(prompter);
        match key.get_assertion(&request, verification.token(), &mut ka) {
            Ok(r) => r,
            // Asked without a probe first (one key, one credential): this key does not hold it.
            Err(CtapError::Status(CtapStatus::NoCredentials | CtapStatus::InvalidCredential)) => {
                return Err(LoginError::WrongKey)
            }
            Err(e) => return Err(e.into()),
        }
    };

    let asked = [record];
    let expect = Expectation {
        challenge: &challenge,
        asked: &asked,
        counter_policy: policy.counter,
    };
    let verified = verify_assertion(&expect, &response, &state);
    if let (Some(salt), Ok(v)) = (first_check, &verified) {
        record_hmac_check(&mut guard.state, v, salt, &response);
    }
    settle(&mut guard, &account, record, policy, verified).map(|mut granted| {
        granted.directory = from_directory;
        granted
    })
}

/// The FIDO2 keys and the U2F-only keys among those opened.
fn split_keys(keys: Vec<OpenedKey>) -> (Vec<Authenticator>, Vec<crate::flows::session::U2fKey>) {
    let mut fido2 = Vec::new();
    let mut u2f = Vec::new();
    for key in keys {
        match key {
            OpenedKey::Fido2(a) => fido2.push(*a),
            OpenedKey::U2f(k) => u2f.push(k),
        }
    }
    (fido2, u2f)
}

/// Root's `authpending_file` and `notify_command` for the touch `account` is asked for.
fn touch_pending(
    policy: &Policy,
    context: &LoginContext<'_>,
    service: &str,
    account: &Account,
) -> crate::flows::notify::TouchPending {
    crate::flows::notify::TouchPending::start(
        policy,
        &crate::flows::notify::Waiting {
            service,
            user: account.name(),
            uid: account.uid(),
            remote_host: context.remote_host,
        },
    )
}

/// The account behind `user` and its credentials this policy accepts, after checking the
/// places root's configuration names (records, state, the device socket).
fn enrolled_credentials(
    resolver: &dyn UserResolver,
    user: &str,
    policy: &Policy,
) -> Result<(Account, Vec<CredentialRecord>, Option<DirectoryNote>), LoginError> {
    let account = resolve(resolver, user)?;
    let store = policy.store();
    store.check_roots().map_err(LoginError::Place)?;
    let mut note = None;
    let records = match &policy.directory {
        // The directory replaces root's records file (ARCHITECTURE.md §12).
        Some(dir) => match directory::load(dir, &store, &account) {
            Ok(Some((file, n))) => {
                note = Some(n);
                file
            }
            Ok(None) => return Err(LoginError::NoRecords),
            Err(e) => return Err(LoginError::Directory(e)),
        },
        None => match store.load_records(&account) {
            Ok(r) => r.file,
            Err(e) if e.is_not_found() => return Err(no_records(&store, &account, resolver)),
            Err(e) => return Err(e.into()),
        },
    };
    if let Some(recorded) = records.uid.filter(|u| *u != account.uid()) {
        return Err(LoginError::UidMismatch {
            recorded,
            actual: account.uid(),
        });
    }
    let creds = usable_credentials(policy, records.credentials)?;
    for socket in policy.device.sockets() {
        let owners = policy.device_owners().map_err(|why| {
            LoginError::Place(FileError::Insecure {
                path: socket.to_path_buf(),
                why,
            })
        })?;
        crate::store::fs::check_trusted_socket(socket, &owners).map_err(LoginError::Place)?;
    }
    Ok((account, creds, note))
}

/// Which attached key logs in, with which credential: with one key (and no U2F-only key besides,
/// `unprobed_ok`) and one credential and no PIN to send, that pair without a probe (the fewest round trips: INIT, getInfo, then the
/// assertion); else the one key that holds one; with several keys holding one and no PIN to
/// send, all of them ([`Choice::Several`]); with a PIN to send, the one the user touches among
/// keys of the enrolled model.
fn choose_key<'r>(
    keys: &mut [Authenticator],
    ordered: &'r [CredentialRecord],
    unprobed_ok: bool,
    policy: &Policy,
    prompter: &mut dyn Prompter,
) -> Result<Choice<'r>, LoginError> {
    if let ([key], [record], true) = (&*keys, ordered, unprobed_ok) {
        if !needs_pin(key, record) {
            // One key, one credential, no PIN to protect: the login's own getAssertion is the
            // probe. A key without the credential answers it with NO_CREDENTIALS (wrong_key);
            // CTAP 2.1 §6.2.2 looks the allow list up before it asks for the touch.
            return Ok(Choice::One(0, record));
        }
    }
    let found = find_credentials(keys, ordered)?;
    if keys.len() <= 1 || found.len() <= 1 {
        let (i, r) = found.first().copied().ok_or(LoginError::WrongKey)?;
        return Ok(Choice::One(i, r));
    }
    if !found.iter().any(|(i, r)| needs_pin(&keys[*i], r)) {
        return Ok(Choice::Several(found));
    }
    // Several keys attached and a PIN to send: the user's touch picks the key first, and
    // only keys of the enrolled model may be picked.
    let candidates: Vec<(usize, &CredentialRecord)> = found
        .iter()
        .copied()
        .filter(|(i, r)| {
            !needs_pin(&keys[*i], r) || enrolled_model(&keys[*i], r, &policy.device).is_ok()
        })
        .collect();
    let Some(&(first, first_record)) = found.first() else {
        return Err(LoginError::WrongKey);
    };
    if candidates.is_empty() {
        enrolled_model(&keys[first], first_record, &policy.device)?;
    }
    prompter.touch_cue(&policy.select_prompt);
    let indices: Vec<usize> = candidates.iter().map(|(i, _)| *i).collect();
    let chosen = select_by_touch(keys, &indices)?;
    candidates
        .into_iter()
        .find(|(i, _)| *i == chosen)
        .map(|(i, r)| Choice::One(i, r))
        .ok_or(LoginError::WrongKey)
}

/// Which key (index into the keys) logs in with which credential.
enum Choice<'r> {
    /// This one.
    One(usize, &'r CredentialRecord),
    /// Several keys hold a credential and none needs a PIN: raced with the login's own
    /// getAssertion (login/race.rs) when no user verification is needed, else chosen by touch.
    Several(Vec<(usize, &'r CredentialRecord)>),
}

/// Several attached keys hold one of the user's credentials, none needs a PIN, but one needs
/// built-in UV first (or has no usable state): all of them are asked at once
/// (authenticatorSelection), the first touched is the one that logs in, the others get
/// CTAPHID_CANCEL (issue 16). A key that hangs costs only its own deadline. Without UV to
/// obtain, the login's own getAssertion is raced instead (login/race.rs): one touch.
fn select_among<'r>(
    keys: &mut [Authenticator],
    found: Vec<(usize, &'r CredentialRecord)>,
    policy: &Policy,
    prompter: &mut dyn Prompter,
) -> Result<(usize, &'r CredentialRecord), LoginError> {
    prompter.touch_cue(&policy.select_prompt);
    let indices: Vec<usize> = found.iter().map(|(i, _)| *i).collect();
    let chosen = select_by_touch(keys, &indices)?;
    found
        .into_iter()
        .find(|(i, _)| *i == chosen)
        .ok_or(LoginError::WrongKey)
}

/// User verification and hmac-secret come from root-written state as well as the record: a
/// record (a per-user file's, say) can ask for more than state, never for less.
fn effective_record(
    record: &CredentialRecord,
    state: &crate::store::credential::CredentialState,
) -> CredentialRecord {
    let mut effective = record.clone();
    if let Some(hmac) = &state.hmac {
        effective.hmac_secret = true;
        if hmac.uv {
            effective.user_verification = UvRequirement::Required;
        }
    }
    effective
}

/// Verify the user where `record` requires it, through the planner ([`crate::flows::uv`]: built-in
/// UV, else the PIN unless policy forbids it), once the PIN may go to this key ([`pin_gate`]).
fn verify_user(
    key: &mut Authenticator,
    record: &CredentialRecord,
    policy: &Policy,
    prompter: &mut dyn Prompter,
) -> Result<Verification, LoginError> {
    if record.user_verification != UvRequirement::Required {
        return Ok(Verification::NotRequired);
    }
    pin_gate(key, record, &policy.device)?;
    let plan = uv::plan(key.info(), true, policy.pin).map_err(LoginError::UvUnavailable)?;
    if policy.cue && plan == uv::UvPlan::BuiltIn && key.info().supports_permissions() {
        // The key waits for the finger now, not at the assertion: the cue comes first.
        prompter.touch_cue(&policy.uv_prompt);
    }
    Ok(uv::obtain_prompting(
        key,
        plan,
        record.rp_id.as_str(),
        permission::GET_ASSERTION,
        &policy.pin_prompt,
        prompter,
    )?)
}

/// The login's getAssertion, from the record and the state read under the lock.
fn assertion_request(
    record: &CredentialRecord,
    state: &crate::store::credential::CredentialState,
    verification: &Verification,
    challenge: &Challenge,
) -> Result<GetAssertionRequest, LoginError> {
    let hmac = state.hmac.as_ref();
    if hmac.is_some_and(|h| (h.uv && !verification.required()) || !record.hmac_secret) {
        // Re-enrolled between the unlocked read and the lock: what was asked of the key no
        // longer matches what the state demands.
        return Err(LoginError::NoUsableCredential(
            Unusable::ChangedWhileWaiting {
                credential: record.name.clone(),
            },
        ));
    }
    // `usable_state` saw to it that a record with hmac-secret has its check.
    let hmac_secret = hmac.map(|h| HmacSalts {
        salt1: h.salt,
        salt2: None,
    });
    Ok(GetAssertionRequest {
        rp_id: record.rp_id.as_str().to_string(),
        client_data_hash: challenge.client_data_hash(),
        allow_list: vec![record.credential_id.clone()],
        user_presence: true,
        user_verification: verification.uv_option(),
        hmac_secret,
    })
}

/// Directory credentials carry no hmac-secret check (SSSD's mapping has none): on this host's
/// first login with one, if the key offers hmac-secret, ask for it with a fresh salt so the
/// output becomes this host's check (trust on first use per host, ARCHITECTURE.md §12). From
/// then on root-written state asks for it and the verifier enforces it (`effective_record`).
fn first_hmac_salt(
    from_directory: &Option<DirectoryNote>,
    state: &crate::store::credential::CredentialState,
    key: &Authenticator,
    request: &mut GetAssertionRequest,
) -> Option<[u8; 32]> {
    if from_directory.is_none()
        || state.hmac.is_some()
        || request.hmac_secret.is_some()
        || !key.info().supports_extension("hmac-secret")
    {
        return None;
    }
    let salt: [u8; 32] = rand::random();
    request.hmac_secret = Some(HmacSalts {
        salt1: salt,
        salt2: None,
    });
    Some(salt)
}

/// The verified assertion's hmac-secret output (not signed; this checked answer's) becomes the
/// credential's check in the state `settle` writes. No usable output: no check yet.
fn record_hmac_check(
    state: &mut StateFile,
    verified: &crate::flows::verify::VerifiedAssertion,
    salt: [u8; 32],
    response: &crate::transport::ctap2::GetAssertionResponse,
) {
    use sha2::{Digest, Sha256};
    if let (Some(Ok(output)), Some(s)) = (
        response.hmac_secret.as_ref(),
        state.get_mut(verified.credential_id()),
    ) {
        s.hmac = Some(crate::store::credential::HmacCheck {
            salt,
            check: Sha256::digest(&output.output1[..]).into(),
            uv: verified.user_verified(),
        });
    }
}

/// Write the verifier's verdict: a verified assertion's counter (then the grant), or, for a
/// counter regression under `clone_action = suspend`, the suspension (then the denial).
fn settle(
    guard: &mut crate::store::credential::StateGuard,
    account: &Account,
    record: &CredentialRecord,
    policy: &Policy,
    verified: Result<crate::flows::verify::VerifiedAssertion, VerifyError>,
) -> Result<LoginGranted, LoginError> {
    match verified {
        Ok(verified) => {
            if let Some(s) = guard.state.get_mut(verified.credential_id()) {
                verified.apply_to(s);
            }
            guard.commit()?;
            Ok(LoginGranted {
                account: account.clone(),
                credential_name: verified.credential_name().to_string(),
                sign_count: verified.sign_count(),
                counter: verified.counter(),
                user_verified: verified.user_verified(),
                directory: None,
            })
        }
        Err(reason) => {
            let mut suspended = false;
            if let VerifyError::CounterRegression { stored, received } = reason {
                if policy.clone_action == CloneAction::Suspend {
                    if let Some(s) = guard.state.get_mut(&record.credential_id) {
                        s.suspension = Some(crate::store::credential::Suspension::new(
                            format!("counter regression from {stored} to {received}"),
                            std::time::SystemTime::now(),
                        ));
                        suspended = guard.commit().is_ok();
                    }
                }
            }
            Err(LoginError::Rejected {
                credential: record.name.clone(),
                reason,
                suspended,
            })
        }
    }
}

#[cfg(test)]
mod probe_order_tests {
    use super::*;
    use crate::store::credential::{CredentialState, EnrolledKey, RpId};
    use crate::transport::ctap2::cose::CoseKey;

    fn record(id: u8, rp: &str) -> CredentialRecord {
        CredentialRecord {
            name: format!("c{id}"),
            credential_id: vec![id; 16],
            rp_id: RpId::parse(rp).unwrap(),
            public_key: EnrolledKey::new(CoseKey::EdDsa { x: [0; 32] }).unwrap(),
            aaguid: String::new(),
            user_verification: UvRequirement::Discouraged,
            hmac_secret: false,
            created: String::new(),
            no_touch_required: false,
            protocol: crate::store::credential::Protocol::Fido2,
        }
    }

    #[test]
    fn most_recently_used_first_then_with_state_then_enrollment_order() {
        let creds: Vec<CredentialRecord> = (1..=5).map(|i| record(i, &format!("rp{i}"))).collect();
        let mut state = StateFile::default();
        let mut used = |id: u8, when: Option<&str>| {
            let mut s = CredentialState::new(vec![id; 16], 0);
            s.last_used = when.map(str::to_string);
            state.credentials.push(s);
        };
        used(2, Some("2026-01-01T00:00:00Z"));
        used(4, Some("2026-03-01T00:00:00Z"));
        used(5, None);
        let order: Vec<u8> = probe_order(&creds, &state)
            .iter()
            .map(|c| c.credential_id[0])
            .collect();
        assert_eq!(order, vec![4, 2, 5, 1, 3]);
    }
}
