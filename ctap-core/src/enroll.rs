//! Enrollment: create a credential on the key, compute its hmac-secret check with the UV state
//! login will use, and write state then records (state first: a crash in between leaves an
//! orphan state entry, which is harmless, rather than a record that can never log in).

use std::fmt;

use sha2::{Digest, Sha256};

use crate::config::PinPolicy;
use crate::credential::record::AlgorithmName;
use crate::credential::{
    CredentialRecord, CredentialState, CredentialStore, StoreError, UvRequirement,
};
use crate::ctap2::cose::Algorithm;
use crate::ctap2::ext::hmac_secret::HmacSalts;
use crate::ctap2::info::format_aaguid;
use crate::ctap2::pin::permission;
use crate::ctap2::{
    CtapError, CtapStatus, GetAssertionRequest, MakeCredentialRequest, Misbehaviour,
};
use crate::login::{user_verification, LoginError};
use crate::session::{keepalive_for, Authenticator, Prompter};

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
    pub user: crate::account::Account,
    pub name: String,
    /// Defaults to `pam://<hostname>`.
    pub rp_id: Option<String>,
    pub uv: UvPreference,
    pub pin_policy: PinPolicy,
}

#[derive(Debug)]
pub enum EnrollError {
    Store(StoreError),
    Device(CtapError),
    /// A precondition failed; the message says what to do.
    Refused(String),
}

impl fmt::Display for EnrollError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            EnrollError::Store(e) => e.fmt(f),
            EnrollError::Device(e) => e.fmt(f),
            EnrollError::Refused(m) => f.write_str(m),
        }
    }
}

impl std::error::Error for EnrollError {}

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

impl From<LoginError> for EnrollError {
    fn from(e: LoginError) -> Self {
        match e {
            LoginError::Store(s) => EnrollError::Store(s),
            LoginError::Device(d) => EnrollError::Device(d),
            other => EnrollError::Refused(other.to_string()),
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

/// Enroll the key `key` for `req.user`, writing state and records into `store`.
pub fn enroll(
    store: &CredentialStore,
    req: &EnrollRequest,
    key: &mut Authenticator,
    prompter: &mut dyn Prompter,
) -> Result<CredentialRecord, EnrollError> {
    let user = req.user.name();
    let rp_id = req.rp_id.clone().unwrap_or_else(default_rp_id);
    // The user's lock covers the whole read-modify-write of records and state, so a concurrent
    // `remove` or second `enroll` cannot interleave with this one (admin edits take it too).
    let mut guard = store.lock_state(user, crate::admin::EDIT_LOCK_WAIT)?;
    let mut records = store.load_system_records(user)?;
    if let Some(recorded) = records.uid.filter(|u| *u != req.user.uid()) {
        return Err(EnrollError::Refused(format!(
            "the records of {user} were written for uid {recorded}, but the account has uid {}: check the account; if the name was reused, remove the old keys first (ctap-enroll remove --user {user} NAME)",
            req.user.uid()
        )));
    }
    if req.name.trim().is_empty() {
        return Err(EnrollError::Refused(
            "the credential name must not be empty (--name)".into(),
        ));
    }
    if records.credentials.iter().any(|c| c.name == req.name) {
        return Err(EnrollError::Refused(format!(
            "user {user} already has a credential named {:?}: choose another --name or remove it first",
            req.name
        )));
    }
    if !key.info().supports_extension("hmac-secret") {
        return Err(EnrollError::Refused(
            "this security key does not support hmac-secret, which login requires".into(),
        ));
    }

    let info = key.info().clone();
    let can_verify = info.pin_set() || info.builtin_uv();
    let uv = match req.uv {
        UvPreference::Required if !can_verify => {
            return Err(EnrollError::Refused(
                "user verification is required but the key has no PIN: set one first with `ctap-enroll pin set`".into(),
            ))
        }
        UvPreference::Required => UvRequirement::Required,
        UvPreference::Preferred if can_verify => UvRequirement::Required,
        UvPreference::Preferred | UvPreference::Discouraged => UvRequirement::Discouraged,
    };
    let token = match uv {
        UvRequirement::Required => user_verification(
            key,
            &rp_id,
            permission::MAKE_CREDENTIAL | permission::GET_ASSERTION,
            req.pin_policy,
            prompter,
        )?,
        UvRequirement::Discouraged => None,
    };
    let uv_option = uv == UvRequirement::Required && token.is_none();

    let algorithms: Vec<Algorithm> = [Algorithm::Es256, Algorithm::EdDsa]
        .into_iter()
        .filter(|a| info.algorithms.is_empty() || info.algorithms.contains(&a.cose_id()))
        .collect();
    let make = MakeCredentialRequest {
        client_data_hash: rand::random(),
        rp_id: rp_id.clone(),
        rp_name: Some("ctap login".into()),
        user_id: Sha256::digest(user.as_bytes()).to_vec(),
        user_name: user.to_string(),
        user_display_name: None,
        algorithms,
        // The key refuses to make a second credential for the same user: one key, one record.
        exclude_list: records
            .credentials
            .iter()
            .filter(|c| c.rp_id == rp_id)
            .map(|c| c.credential_id.clone())
            .collect(),
        resident_key: false,
        user_verification: uv_option,
        hmac_secret: true,
        // userVerificationOptionalWithCredentialIDList: the key won't reveal the credential to
        // someone who does not know its id.
        cred_protect: Some(2),
    };
    prompter.touch_cue("Touch your security key to create the credential");
    let made = {
        let mut ka = keepalive_for(prompter);
        match key.make_credential(&make, token.as_ref(), &mut ka) {
            Err(CtapError::Status(CtapStatus::CredentialExcluded)) => {
                return Err(EnrollError::Refused(format!(
                    "this security key is already enrolled for {user} (RP {rp_id}): nothing to do"
                )))
            }
            other => other?,
        }
    };
    if !made.hmac_secret_enabled() {
        return Err(EnrollError::Refused(
            "the key did not enable hmac-secret for the new credential".into(),
        ));
    }
    let cred = made.credential().clone();
    let algorithm: Algorithm = cred.public_key.algorithm().ok_or_else(|| {
        EnrollError::Refused("the key returned a credential with an unusable algorithm".into())
    })?;

    // One assertion now, with login's UV state, gives the hmac-secret check.
    let salt: [u8; 32] = rand::random();
    let challenge: [u8; 32] = rand::random();
    let assert = GetAssertionRequest {
        rp_id: rp_id.clone(),
        client_data_hash: challenge,
        allow_list: vec![cred.credential_id.clone()],
        user_presence: true,
        user_verification: uv_option,
        hmac_secret: Some(HmacSalts {
            salt1: salt,
            salt2: None,
        }),
    };
    prompter.touch_cue("Touch your security key again to confirm");
    let resp = {
        let mut ka = keepalive_for(prompter);
        key.get_assertion(&assert, token.as_ref(), &mut ka)?
    };
    if !cred.public_key.verify(
        &[resp.auth_data.raw.as_slice(), &challenge].concat(),
        &resp.signature,
    ) {
        return Err(EnrollError::Device(
            Misbehaviour::ConfirmationSignature.into(),
        ));
    }
    let output = match resp.hmac_secret {
        Some(Ok(ref o)) => o,
        Some(Err(e)) => return Err(EnrollError::Device(e)),
        None => {
            return Err(EnrollError::Refused(
                "the key returned no hmac-secret output".into(),
            ))
        }
    };

    let mut state = CredentialState::new(cred.credential_id.clone(), resp.auth_data.sign_count);
    state.hmac_salt = Some(salt);
    state.hmac_check = Some(Sha256::digest(&output.output1[..]).into());
    state.hmac_uv = resp.auth_data.flags.user_verified();
    if uv == UvRequirement::Required && !state.hmac_uv {
        return Err(EnrollError::Device(Misbehaviour::UvNotReported.into()));
    }

    let record = CredentialRecord {
        name: req.name.clone(),
        credential_id: cred.credential_id.clone(),
        rp_id,
        public_key: cred.public_key.to_bytes(),
        algorithm: AlgorithmName::from(algorithm),
        aaguid: format_aaguid(&cred.aaguid),
        user_verification: uv,
        hmac_secret: true,
        created: crate::credential::now_rfc3339(),
        no_touch_required: false,
    };
    guard.state.put(state);
    guard.commit()?;
    records.credentials.push(record.clone());
    store.save_system_records(&req.user, &records)?;
    Ok(record)
}
