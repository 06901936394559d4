//! One login: the whole of DESIGN section 4, as the PAM module and `ctap-enroll test` run it.
//!
//! The user's state lock is held from before the assertion until its result is written. Two
//! sessions of one user therefore take turns: without that, a session holding counter 6 could
//! write before one holding counter 5, and the second would look like a cloned key.

use std::fmt;
use std::time::Duration;

use crate::config::{CloneAction, PinPolicy, Policy, UvPolicy};
use crate::credential::{CredentialRecord, StoreError, UvRequirement};
use crate::ctap2::ext::hmac_secret::HmacSalts;
use crate::ctap2::pin::{permission, PinUvAuthToken};
use crate::ctap2::{CtapError, CtapStatus, GetAssertionRequest};
use crate::ctaphid::CtapHidError;
use crate::device::TransportError;
use crate::session::{keepalive_for, open_authenticators, Authenticator, Prompter};
use crate::verify::{verify_assertion, Challenge, CounterOutcome, Expectation, VerifyError};

/// A successful login. Only [`login`] builds one, and only after verification and after the new
/// state was written.
#[derive(Debug)]
pub struct LoginGranted {
    credential_name: String,
    sign_count: u32,
    counter: CounterOutcome,
    user_verified: bool,
}

impl LoginGranted {
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
}

/// Why a login failed. Every variant is a denial.
#[derive(Debug)]
pub enum LoginError {
    /// The user has no records file at all (the only case `nouserok` may skip).
    NoRecords,
    /// Records or state could not be read or written.
    Store(StoreError),
    /// The user has records, but none this policy accepts.
    NoUsableCredential(String),
    /// No attached key holds any of the user's credentials.
    WrongKey,
    /// A credential has no state (never completed enrollment, or state was lost).
    MissingState {
        credential: String,
    },
    /// User verification is needed and cannot be done (no PIN set, PIN prompts disabled, cancelled).
    UvUnavailable(String),
    Device(CtapError),
    Rejected {
        credential: String,
        reason: VerifyError,
        suspended: bool,
    },
}

impl LoginError {
    /// A short stable word for syslog lines and tests.
    pub fn kind(&self) -> &'static str {
        match self {
            LoginError::NoRecords => "no_records",
            LoginError::Store(_) => "config_error",
            LoginError::NoUsableCredential(_) => "no_usable_credential",
            LoginError::WrongKey => "wrong_key",
            LoginError::MissingState { .. } => "missing_state",
            LoginError::UvUnavailable(_) => "uv_unavailable",
            LoginError::Device(e) => device_kind(e),
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
                VerifyError::StoredKeyInvalid(_) => "config_error",
            },
        }
    }
}

fn device_kind(e: &CtapError) -> &'static str {
    match e {
        CtapError::Status(CtapStatus::PinInvalid) => "pin_invalid",
        CtapError::Status(CtapStatus::PinBlocked | CtapStatus::PinAuthBlocked) => "pin_blocked",
        CtapError::Status(CtapStatus::OperationDenied) => "presence_denied",
        CtapError::Status(CtapStatus::UserActionTimeout | CtapStatus::ActionTimeout) => "timeout",
        CtapError::Status(CtapStatus::KeepaliveCancel) => "cancelled",
        CtapError::Hid(CtapHidError::Timeout) => "timeout",
        CtapError::Hid(CtapHidError::Cancelled) => "cancelled",
        CtapError::Hid(CtapHidError::Transport(
            TransportError::NoDevice | TransportError::Open { .. },
        )) => "no_key",
        CtapError::Hid(_) | CtapError::DeviceMisbehaved(_) => "device_error",
        CtapError::Status(_) | CtapError::DeviceIncompatible(_) | CtapError::InvalidInput(_) => {
            "device_error"
        }
    }
}

impl fmt::Display for LoginError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LoginError::NoRecords => write!(f, "no security key is enrolled for this user"),
            LoginError::Store(e) => e.fmt(f),
            LoginError::NoUsableCredential(m) => f.write_str(m),
            LoginError::WrongKey => write!(f, "the attached security key is not enrolled for this user"),
            LoginError::MissingState { credential } => write!(
                f,
                "credential {credential:?} has no login state: re-enroll it with `ctap-enroll enroll`"
            ),
            LoginError::UvUnavailable(m) => f.write_str(m),
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
        }
    }
}

impl std::error::Error for LoginError {}

impl From<StoreError> for LoginError {
    fn from(e: StoreError) -> Self {
        LoginError::Store(e)
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
        .filter(|r| !r.rp_id.starts_with("ssh:"))
        .filter(|r| policy.rp_id.as_ref().is_none_or(|rp| &r.rp_id == rp))
        .filter(|r| {
            policy.user_verification != UvPolicy::Required
                || r.user_verification == UvRequirement::Required
        })
        .collect();
    if usable.is_empty() {
        return Err(LoginError::NoUsableCredential(format!(
            "none of the user's {total} enrolled credential(s) is usable here (RP ID{} or user verification policy)",
            policy.rp_id.as_ref().map(|r| format!(" {r}")).unwrap_or_default()
        )));
    }
    Ok(usable)
}

/// Find which attached key holds which credential, with silent (up=false) probes.
fn find_credential<'r>(
    keys: &mut [Authenticator],
    creds: &'r [CredentialRecord],
) -> Result<(usize, &'r CredentialRecord), LoginError> {
    let mut last_err = None;
    for (i, key) in keys.iter_mut().enumerate() {
        // One probe per relying party, in enrollment order (dedup alone misses non-adjacent ones).
        let mut rp_ids: Vec<&str> = Vec::new();
        for c in creds {
            if !rp_ids.contains(&c.rp_id.as_str()) {
                rp_ids.push(c.rp_id.as_str());
            }
        }
        for rp in rp_ids {
            let group: Vec<&CredentialRecord> = creds.iter().filter(|c| c.rp_id == rp).collect();
            let probe = GetAssertionRequest {
                rp_id: rp.to_string(),
                client_data_hash: rand::random(),
                allow_list: group.iter().map(|c| c.credential_id.clone()).collect(),
                user_presence: false,
                user_verification: false,
                hmac_secret: None,
            };
            match key.get_assertion(&probe, None, &mut |_| {
                crate::ctaphid::WaitDecision::Continue
            }) {
                Ok(resp) => {
                    if let Some(c) = group.iter().find(|c| c.credential_id == resp.credential_id) {
                        return Ok((i, c));
                    }
                    return Err(LoginError::Rejected {
                        credential: "(unknown)".into(),
                        reason: VerifyError::UnexpectedCredential,
                        suspended: false,
                    });
                }
                Err(CtapError::Status(
                    CtapStatus::NoCredentials | CtapStatus::InvalidCredential,
                )) => {}
                Err(e) => last_err = Some(e),
            }
        }
    }
    match last_err {
        Some(e) => Err(LoginError::Device(e)),
        None => Err(LoginError::WrongKey),
    }
}

/// Obtain user verification for `rp_id`: built-in UV if the key has it, else the PIN.
/// Returns the token, or `None` when the key will verify through the `uv` option.
pub fn user_verification(
    key: &mut Authenticator,
    rp_id: &str,
    permissions: u8,
    pin_policy: PinPolicy,
    prompter: &mut dyn Prompter,
) -> Result<Option<PinUvAuthToken>, LoginError> {
    if key.info().builtin_uv() {
        if key.info().supports_permissions() {
            let mut ka = keepalive_for(prompter);
            return Ok(Some(key.uv_token(permissions, Some(rp_id), &mut ka)?));
        }
        return Ok(None);
    }
    if !key.info().pin_set() {
        return Err(LoginError::UvUnavailable(
            "user verification is required but the security key has no PIN: set one with `ctap-enroll pin set`".into(),
        ));
    }
    if pin_policy == PinPolicy::UvOnly {
        return Err(LoginError::UvUnavailable(
            "user verification is required and PIN entry is disabled (pin = uv-only)".into(),
        ));
    }
    let retries = key.pin_retries()?;
    if retries.retries == 0 {
        return Err(LoginError::Device(CtapError::Status(
            CtapStatus::PinBlocked,
        )));
    }
    let pin = prompter
        .request_pin("Security key PIN: ")
        .ok_or_else(|| LoginError::UvUnavailable("no PIN was entered".into()))?;
    match key.pin_token(&pin, permissions, Some(rp_id)) {
        Ok(t) => Ok(Some(t)),
        Err(CtapError::Status(CtapStatus::PinInvalid)) => {
            let left = key.pin_retries().map(|r| r.retries).unwrap_or(0);
            prompter.info(&format!("Wrong PIN ({left} tries left)"));
            Err(LoginError::Device(CtapError::Status(
                CtapStatus::PinInvalid,
            )))
        }
        Err(e) => Err(e.into()),
    }
}

/// Authenticate `user` for `service` under `policy`.
pub fn login(
    user: &str,
    service: &str,
    policy: &Policy,
    prompter: &mut dyn Prompter,
) -> Result<LoginGranted, LoginError> {
    let store = policy.store();
    let records = match store.load_records(user) {
        Ok(r) => r.file.credentials,
        Err(e) if e.is_not_found() => return Err(LoginError::NoRecords),
        Err(e) => return Err(e.into()),
    };
    let creds = usable_credentials(policy, records)?;

    // Held until the new state is on disk (module doc).
    let mut guard = store.lock_state(user, policy.touch_timeout() + Duration::from_secs(5))?;

    let mut keys = open_authenticators(&policy.device, policy.touch_timeout())?;
    let (index, record) = find_credential(&mut keys, &creds)?;
    let key = &mut keys[index];

    let state = guard
        .state
        .get(&record.credential_id)
        .cloned()
        .ok_or_else(|| LoginError::MissingState {
            credential: record.name.clone(),
        })?;
    if state.suspended {
        return Err(LoginError::Rejected {
            credential: record.name.clone(),
            reason: VerifyError::Suspended(state.suspended_reason.clone().unwrap_or_default()),
            suspended: true,
        });
    }

    let uv_required = record.user_verification == UvRequirement::Required;
    let token = if uv_required {
        user_verification(
            key,
            &record.rp_id,
            permission::GET_ASSERTION,
            policy.pin,
            prompter,
        )?
    } else {
        None
    };
    let hmac_secret = match (record.hmac_secret, state.hmac_salt) {
        (true, Some(salt1)) => Some(HmacSalts { salt1, salt2: None }),
        (true, None) => {
            return Err(LoginError::MissingState {
                credential: record.name.clone(),
            })
        }
        (false, _) => None,
    };
    let challenge = Challenge::new(service, user);
    let request = GetAssertionRequest {
        rp_id: record.rp_id.clone(),
        client_data_hash: challenge.client_data_hash(),
        allow_list: vec![record.credential_id.clone()],
        user_presence: true,
        user_verification: uv_required && token.is_none(),
        hmac_secret,
    };
    if policy.cue {
        prompter.touch_cue(&policy.cue_prompt);
    }
    let response = {
        let mut ka = keepalive_for(prompter);
        key.get_assertion(&request, token.as_ref(), &mut ka)?
    };

    let asked = [record];
    let expect = Expectation {
        challenge: &challenge,
        asked: &asked,
        counter_policy: policy.counter,
    };
    match verify_assertion(&expect, &response, &state) {
        Ok(verified) => {
            if let Some(s) = guard.state.get_mut(verified.credential_id()) {
                verified.apply_to(s);
            }
            guard.commit()?;
            Ok(LoginGranted {
                credential_name: verified.credential_name().to_string(),
                sign_count: verified.sign_count(),
                counter: verified.counter(),
                user_verified: verified.user_verified(),
            })
        }
        Err(reason) => {
            let mut suspended = false;
            if let VerifyError::CounterRegression { stored, received } = reason {
                if policy.clone_action == CloneAction::Suspend {
                    if let Some(s) = guard.state.get_mut(&record.credential_id) {
                        s.suspended = true;
                        s.suspended_reason = Some(format!(
                            "counter regression from {stored} to {received} at {}",
                            crate::credential::now_rfc3339()
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
