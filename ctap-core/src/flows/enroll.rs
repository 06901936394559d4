//! Enrollment: create a credential on the key, compute its hmac-secret check with the UV state
//! login will use, and write state then records (state first: a crash in between leaves an
//! orphan state entry, which is harmless, rather than a record that can never log in).
//!
//! In steps: `check_request` (no touch), `uv_requirement` and the planner ([`crate::flows::uv`]),
//! `make_credential`, then `confirm`: one assertion, checked by the same verifier as a
//! login's ([`crate::flows::verify::check_assertion`]), whose hmac-secret output becomes the check.

use std::fmt;

use sha2::{Digest, Sha256};

use crate::flows::session::{keepalive_for, Authenticator, Prompter};
use crate::flows::uv::{self, UvError, UvRefusal, Verification};
use crate::flows::verify::{check_assertion, AssertionExpectation, VerifyError};
use crate::store::config::PinPolicy;
use crate::store::credential::record::{EnrolledKey, RpId, RpIdError};
use crate::store::credential::{
    CredentialFile, CredentialRecord, CredentialState, CredentialStore, HmacCheck, StoreError,
    UvRequirement,
};
use crate::transport::ctap2::authdata::AttestedCredential;
use crate::transport::ctap2::cose::Algorithm;
use crate::transport::ctap2::ext::hmac_secret::HmacSalts;
use crate::transport::ctap2::info::{format_aaguid, AuthenticatorInfo};
use crate::transport::ctap2::pin::permission;
use crate::transport::ctap2::{CtapError, CtapStatus, GetAssertionRequest, MakeCredentialRequest};

/// The user-verification choice at enrollment. `Preferred` is resolved here, once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UvPreference {
    Required,
    Preferred,
    Discouraged,
}

impl std::str::FromStr for UvPreference {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "required" => Ok(UvPreference::Required),
            "preferred" => Ok(UvPreference::Preferred),
            "discouraged" => Ok(UvPreference::Discouraged),
            _ => Err(format!(
                "{s:?}: expected required, preferred or discouraged"
            )),
        }
    }
}

pub struct EnrollRequest {
    /// The account, resolved through NSS: records are named by its canonical name and carry its uid.
    pub user: crate::store::account::Account,
    pub name: String,
    /// Defaults to `pam://<hostname>`.
    pub rp_id: Option<String>,
    pub uv: UvPreference,
    pub pin_policy: PinPolicy,
}

/// Why an enrollment was refused before or after talking to the key. Each carries the facts;
/// [`EnrollError`]'s `Display` makes the one message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EnrollRefusal {
    /// The user's records were written for another uid (a reused name?).
    UidMismatch {
        user: String,
        recorded: u32,
        actual: u32,
    },
    /// `--name` is empty or blank.
    EmptyName,
    /// The user already has a credential of this name.
    NameTaken { user: String, name: String },
    /// The key does not offer hmac-secret, which login requires.
    NoHmacSecret,
    /// User verification cannot be had on this key under this policy.
    Uv(UvRefusal),
    /// The key refused to make the credential: it already holds one for this user (excludeList).
    AlreadyEnrolled { user: String, rp_id: String },
    /// The key made the credential without enabling hmac-secret.
    HmacNotEnabled,
    /// The key made a credential with an algorithm we cannot use.
    UnusableAlgorithm,
    /// The confirmation assertion carried no hmac-secret output.
    NoHmacOutput,
    /// `--rp-id` (or the configured `rp_id`) is not an RP ID.
    BadRpId(RpIdError),
    /// User verification was required of a key that speaks only U2F, which has none.
    U2fNoUv,
}

#[derive(Debug)]
pub enum EnrollError {
    Store(StoreError),
    Device(CtapError),
    /// A precondition failed, or the key did not do what enrollment needs.
    Refused(EnrollRefusal),
    /// The confirming assertion failed the verifier ([`crate::flows::verify::check_assertion`]).
    Rejected(VerifyError),
}

impl fmt::Display for EnrollError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            EnrollError::Store(e) => e.fmt(f),
            EnrollError::Device(e) => e.fmt(f),
            EnrollError::Rejected(e) => write!(
                f,
                "the key's confirming assertion was rejected ({e}); nothing was enrolled"
            ),
            EnrollError::Refused(r) => match r {
                EnrollRefusal::UidMismatch { user, recorded, actual } => write!(
                    f,
                    "the records of {user} were written for uid {recorded}, but the account has uid {actual}: check the account; if the name was reused, remove the old keys first (ctap-enroll remove --user {user} NAME)"
                ),
                EnrollRefusal::EmptyName => {
                    write!(f, "the credential name must not be empty (--name)")
                }
                EnrollRefusal::NameTaken { user, name } => write!(
                    f,
                    "user {user} already has a credential named {name:?}: choose another --name or remove it first"
                ),
                EnrollRefusal::NoHmacSecret => write!(
                    f,
                    "this security key does not support hmac-secret, which login requires"
                ),
                EnrollRefusal::Uv(u) => u.fmt(f),
                EnrollRefusal::AlreadyEnrolled { user, rp_id } => write!(
                    f,
                    "this security key is already enrolled for {user} (RP {rp_id}): nothing to do"
                ),
                EnrollRefusal::HmacNotEnabled => write!(
                    f,
                    "the key did not enable hmac-secret for the new credential"
                ),
                EnrollRefusal::UnusableAlgorithm => write!(
                    f,
                    "the key returned a credential with an unusable algorithm"
                ),
                EnrollRefusal::NoHmacOutput => {
                    write!(f, "the key returned no hmac-secret output")
                }
                EnrollRefusal::BadRpId(e) => write!(f, "{e}: give another --rp-id"),
                EnrollRefusal::U2fNoUv => write!(
                    f,
                    "this security key speaks only U2F, which has no PIN or user verification: \
                     enroll it with --uv discouraged or preferred, or use a FIDO2 key"
                ),
            },
        }
    }
}

impl std::error::Error for EnrollError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            EnrollError::Store(e) => Some(e),
            EnrollError::Device(e) => Some(e),
            EnrollError::Rejected(e) => Some(e),
            EnrollError::Refused(_) => None,
        }
    }
}

impl From<StoreError> for EnrollError {
    fn from(e: StoreError) -> Self {
        EnrollError::Store(e)
    }
}

impl From<CtapError> for EnrollError {
    fn from(e: CtapError) -> Self {
        EnrollError::Device(e)
    }
}

impl From<EnrollRefusal> for EnrollError {
    fn from(r: EnrollRefusal) -> Self {
        EnrollError::Refused(r)
    }
}

impl From<UvError> for EnrollError {
    fn from(e: UvError) -> Self {
        match e {
            UvError::Refused(r) => EnrollError::Refused(EnrollRefusal::Uv(r)),
            UvError::Device(d) => EnrollError::Device(d),
        }
    }
}

/// The default PAM relying party for this machine.
pub fn default_rp_id() -> String {
    let host = nix::unistd::gethostname()
        .ok()
        .and_then(|h| h.into_string().ok())
        .unwrap_or_else(|| "localhost".into());
    format!("pam://{host}")
}

/// The RP ID an enrollment registers under: `--rp-id`, else `pam://<hostname>`.
fn request_rp_id(req: &EnrollRequest) -> Result<RpId, EnrollRefusal> {
    match &req.rp_id {
        Some(rp) => RpId::parse(rp).map_err(EnrollRefusal::BadRpId),
        None => RpId::parse(&default_rp_id()).map_err(EnrollRefusal::BadRpId),
    }
}

/// Enroll the key `key` for `req.user`, writing state and records into `store`.
pub fn enroll(
    store: &CredentialStore,
    req: &EnrollRequest,
    key: &mut Authenticator,
    prompter: &mut dyn Prompter,
) -> Result<CredentialRecord, EnrollError> {
    let user = req.user.name();
    let rp_id = request_rp_id(req)?;
    // The user's lock covers the whole read-modify-write of records and state, so a concurrent
    // `remove` or second `enroll` cannot interleave with this one (admin edits take it too).
    let mut guard = store.lock_state(user, crate::store::admin::EDIT_LOCK_WAIT)?;
    let mut records = store.load_system_records(user)?;
    check_request(req, &records, key)?;
    let uv = uv_requirement(req.uv, key.info())?;
    let plan = uv::plan(key.info(), uv == UvRequirement::Required, req.pin_policy)
        .map_err(EnrollRefusal::Uv)?;
    let verification = uv::obtain(
        key,
        plan,
        rp_id.as_str(),
        permission::MAKE_CREDENTIAL | permission::GET_ASSERTION,
        prompter,
    )?;
    let (cred, public_key) = make_credential(key, req, &rp_id, &records, &verification, prompter)?;
    let state = confirm(key, rp_id.as_str(), &cred, &verification, prompter)?;

    let record = CredentialRecord {
        name: req.name.clone(),
        credential_id: cred.credential_id.clone(),
        rp_id,
        public_key,
        aaguid: format_aaguid(&cred.aaguid),
        user_verification: uv,
        hmac_secret: true,
        created: crate::store::credential::now_rfc3339(),
        no_touch_required: false,
        protocol: crate::store::credential::Protocol::Fido2,
    };
    guard.state.put(state);
    guard.commit()?;
    records.credentials.push(record.clone());
    store.save_system_records(&req.user, &records)?;
    Ok(record)
}

/// The preconditions that need no touch: the records are this account's, the name is new,
/// and the key offers hmac-secret.
fn check_request(
    req: &EnrollRequest,
    records: &CredentialFile,
    key: &Authenticator,
) -> Result<(), EnrollRefusal> {
    check_account(req, records)?;
    if !key.info().supports_extension("hmac-secret") {
        return Err(EnrollRefusal::NoHmacSecret);
    }
    Ok(())
}

/// The records are this account's and the name is new.
fn check_account(req: &EnrollRequest, records: &CredentialFile) -> Result<(), EnrollRefusal> {
    let user = req.user.name();
    if let Some(recorded) = records.uid.filter(|u| *u != req.user.uid()) {
        return Err(EnrollRefusal::UidMismatch {
            user: user.to_string(),
            recorded,
            actual: req.user.uid(),
        });
    }
    if req.name.trim().is_empty() {
        return Err(EnrollRefusal::EmptyName);
    }
    if records.credentials.iter().any(|c| c.name == req.name) {
        return Err(EnrollRefusal::NameTaken {
            user: user.to_string(),
            name: req.name.clone(),
        });
    }
    Ok(())
}

/// Resolve the preference once: `Preferred` means required on a key that can verify.
fn uv_requirement(
    pref: UvPreference,
    info: &AuthenticatorInfo,
) -> Result<UvRequirement, EnrollRefusal> {
    let can_verify = info.pin_set() || info.builtin_uv();
    match pref {
        UvPreference::Required if !can_verify => Err(EnrollRefusal::Uv(UvRefusal::NoPin)),
        UvPreference::Required => Ok(UvRequirement::Required),
        UvPreference::Preferred if can_verify => Ok(UvRequirement::Required),
        UvPreference::Preferred | UvPreference::Discouraged => Ok(UvRequirement::Discouraged),
    }
}

/// makeCredential with hmac-secret, excluding the user's credentials under `rp_id` (one key,
/// one record), and the public key of the credential made.
fn make_credential(
    key: &mut Authenticator,
    req: &EnrollRequest,
    rp_id: &RpId,
    records: &CredentialFile,
    verification: &Verification,
    prompter: &mut dyn Prompter,
) -> Result<(AttestedCredential, EnrolledKey), EnrollError> {
    let user = req.user.name();
    let info = key.info();
    let algorithms: Vec<Algorithm> = [Algorithm::Es256, Algorithm::EdDsa]
        .into_iter()
        .filter(|a| info.algorithms.is_empty() || info.algorithms.contains(&a.cose_id()))
        .collect();
    let make = MakeCredentialRequest {
        client_data_hash: rand::random(),
        rp_id: rp_id.as_str().to_string(),
        rp_name: Some("ctap login".into()),
        user_id: Sha256::digest(user.as_bytes()).to_vec(),
        user_name: user.to_string(),
        user_display_name: None,
        algorithms,
        // The key refuses to make a second credential for the same user: one key, one record.
        exclude_list: records
            .credentials
            .iter()
            .filter(|c| &c.rp_id == rp_id)
            .map(|c| c.credential_id.clone())
            .collect(),
        resident_key: false,
        user_verification: verification.uv_option(),
        hmac_secret: true,
        // userVerificationOptionalWithCredentialIDList: the key won't reveal the credential to
        // someone who does not know its id.
        cred_protect: Some(2),
    };
    prompter.touch_cue("Touch your security key to create the credential");
    let made = {
        let mut ka = keepalive_for(prompter);
        match key.make_credential(&make, verification.token(), &mut ka) {
            Err(CtapError::Status(CtapStatus::CredentialExcluded)) => {
                return Err(EnrollRefusal::AlreadyEnrolled {
                    user: user.to_string(),
                    rp_id: rp_id.as_str().to_string(),
                }
                .into())
            }
            other => other?,
        }
    };
    if !made.hmac_secret_enabled() {
        return Err(EnrollRefusal::HmacNotEnabled.into());
    }
    let cred = made.credential().clone();
    let public_key =
        EnrolledKey::new(cred.public_key.clone()).map_err(|_| EnrollRefusal::UnusableAlgorithm)?;
    Ok((cred, public_key))
}

/// One assertion now, with login's UV state, checked by the verifier against the public key
/// just made, gives the hmac-secret check and the first counter.
fn confirm(
    key: &mut Authenticator,
    rp_id: &str,
    cred: &AttestedCredential,
    verification: &Verification,
    prompter: &mut dyn Prompter,
) -> Result<CredentialState, EnrollError> {
    let salt: [u8; 32] = rand::random();
    let challenge: [u8; 32] = rand::random();
    let assert = GetAssertionRequest {
        rp_id: rp_id.to_string(),
        client_data_hash: challenge,
        allow_list: vec![cred.credential_id.clone()],
        user_presence: true,
        user_verification: verification.uv_option(),
        hmac_secret: Some(HmacSalts {
            salt1: salt,
            salt2: None,
        }),
    };
    prompter.touch_cue("Touch your security key again to confirm");
    let resp = {
        let mut ka = keepalive_for(prompter);
        key.get_assertion(&assert, verification.token(), &mut ka)?
    };
    let checked = check_assertion(
        &AssertionExpectation {
            rp_id,
            client_data_hash: &challenge,
            credential_id: &cred.credential_id,
            public_key: &cred.public_key,
            user_presence: true,
            user_verification: verification.required(),
        },
        &resp,
    )
    .map_err(EnrollError::Rejected)?;
    let (sign_count, user_verified) = (checked.auth_data().sign_count, checked.user_verified());
    // The output is not signed; it is this checked answer's, and becomes the check.
    let output = match resp.hmac_secret {
        Some(Ok(o)) => o,
        Some(Err(e)) => return Err(EnrollError::Device(e)),
        None => return Err(EnrollRefusal::NoHmacOutput.into()),
    };
    let mut state = CredentialState::new(cred.credential_id.clone(), sign_count);
    state.hmac = Some(HmacCheck {
        salt,
        check: Sha256::digest(&output.output1[..]).into(),
        uv: user_verified,
    });
    Ok(state)
}

mod u2f;
pub use u2f::enroll_u2f;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_refusal_says_what_to_do() {
        let uid = EnrollError::from(EnrollRefusal::UidMismatch {
            user: "alice".into(),
            recorded: 1000,
            actual: 1001,
        })
        .to_string();
        assert!(
            uid.contains("uid 1000") && uid.contains("uid 1001"),
            "{uid}"
        );
        assert!(uid.contains("ctap-enroll remove --user alice"), "{uid}");
        let uv = EnrollError::from(UvError::Refused(UvRefusal::NoPin)).to_string();
        assert!(uv.contains("ctap-enroll pin set"), "{uv}");
        let rejected = EnrollError::Rejected(VerifyError::BadSignature).to_string();
        assert!(rejected.contains("nothing was enrolled"), "{rejected}");
        assert!(
            std::error::Error::source(&EnrollError::Rejected(VerifyError::BadSignature)).is_some()
        );
    }
}
