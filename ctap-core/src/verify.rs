//! Assertion verification: the only way to obtain a [`VerifiedAssertion`].
//!
//! Nothing the key returns is trusted unverified. We check, with our own stored public key and
//! our own expectations: the credential is one we asked for, rpIdHash is SHA-256 of our RP ID,
//! the signed flags show presence (and verification where required), the signature covers
//! authenticatorData || clientDataHash, the hmac-secret output hashes to the enrolled check
//! (compared in constant time), and the counter moved forward.
//!
//! As rustls puts it in its `implvulns` notes: the *lack* of an error is a poor indicator that a
//! signature was valid. So success is a value — `VerifiedAssertion` has a private field and only
//! [`verify_assertion`] builds one — and callers (the PAM module's grant) demand that value.

use std::fmt;

use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::config::CounterPolicy;
use crate::credential::{CredentialRecord, CredentialState, UvRequirement};
use crate::ctap2::GetAssertionResponse;

/// The clientDataHash we send: SHA-256 of fresh randomness, the service and the user, so an
/// assertion answers this request and no other.
pub struct Challenge {
    client_data_hash: [u8; 32],
}

impl Challenge {
    pub fn new(service: &str, user: &str) -> Self {
        let nonce: [u8; 32] = rand::random();
        let mut h = Sha256::new();
        h.update(nonce);
        h.update((service.len() as u64).to_be_bytes());
        h.update(service.as_bytes());
        h.update((user.len() as u64).to_be_bytes());
        h.update(user.as_bytes());
        Challenge {
            client_data_hash: h.finalize().into(),
        }
    }

    pub fn client_data_hash(&self) -> [u8; 32] {
        self.client_data_hash
    }
}

/// What the counter check concluded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CounterOutcome {
    Advanced {
        from: u32,
        to: u32,
    },
    /// The key keeps no counter (always zero) and policy allows that.
    NotKept,
}

/// Proof that one assertion passed every check. Only [`verify_assertion`] constructs it.
#[derive(Debug)]
pub struct VerifiedAssertion {
    credential_id: Vec<u8>,
    credential_name: String,
    sign_count: u32,
    user_verified: bool,
    counter: CounterOutcome,
    _sealed: (),
}

impl VerifiedAssertion {
    pub fn credential_id(&self) -> &[u8] {
        &self.credential_id
    }
    pub fn credential_name(&self) -> &str {
        &self.credential_name
    }
    pub fn sign_count(&self) -> u32 {
        self.sign_count
    }
    pub fn user_verified(&self) -> bool {
        self.user_verified
    }
    pub fn counter(&self) -> CounterOutcome {
        self.counter
    }

    /// Record this use in the credential's state: the new counter and the time.
    pub fn apply_to(&self, state: &mut CredentialState) {
        state.sign_count = self.sign_count;
        state.last_used = Some(crate::credential::now_rfc3339());
    }
}

/// Why an assertion was rejected. Each is a denial.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VerifyError {
    /// The key answered with a credential we did not ask for.
    UnexpectedCredential,
    /// The stored public key does not parse: a broken records file.
    StoredKeyInvalid(String),
    RpIdHashMismatch,
    UserNotPresent,
    UserNotVerified,
    BadSignature,
    /// The credential is enrolled with hmac-secret but state has no check, or no salts were sent.
    HmacMissing,
    /// The key's hmac-secret output is absent, mistyped, undecryptable or of the wrong length.
    /// Logged as `hmac_mismatch`, like a wrong output: the key must not choose the reason.
    HmacUnusable(String),
    /// The hmac-secret check was made with a different UV state than this login's.
    HmacUvMismatch {
        enrolled_with_uv: bool,
    },
    HmacMismatch,
    CounterRegression {
        stored: u32,
        received: u32,
    },
    /// Policy requires a counter and the key keeps none.
    CounterNotKept,
    Suspended(String),
}

impl fmt::Display for VerifyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            VerifyError::UnexpectedCredential => write!(f, "the key answered with a credential that was not requested"),
            VerifyError::StoredKeyInvalid(m) => write!(f, "stored public key is invalid: {m}"),
            VerifyError::RpIdHashMismatch => write!(f, "rpIdHash does not match the relying party"),
            VerifyError::UserNotPresent => write!(f, "the key did not confirm user presence"),
            VerifyError::UserNotVerified => write!(f, "user verification required but the key did not verify the user"),
            VerifyError::BadSignature => write!(f, "signature does not verify with the enrolled public key"),
            VerifyError::HmacMissing => write!(f, "hmac-secret check unavailable (no stored check or no output from the key)"),
            VerifyError::HmacUvMismatch { enrolled_with_uv } => write!(
                f,
                "hmac-secret was enrolled {} user verification but this login was {}: re-enroll the key",
                if *enrolled_with_uv { "with" } else { "without" },
                if *enrolled_with_uv { "not verified" } else { "verified" }
            ),
            VerifyError::HmacUnusable(m) => write!(f, "hmac-secret output does not match the enrolled check ({m})"),
            VerifyError::HmacMismatch => write!(f, "hmac-secret output does not match the enrolled check"),
            VerifyError::CounterRegression { stored, received } => write!(
                f,
                "signature counter went from {stored} to {received}: possible cloned key"
            ),
            VerifyError::CounterNotKept => write!(f, "the key keeps no signature counter and policy requires one"),
            VerifyError::Suspended(reason) => write!(f, "credential is suspended ({reason}): run `ctap-enroll unsuspend`"),
        }
    }
}

impl std::error::Error for VerifyError {}

/// What this login expects, beyond the record itself.
pub struct Expectation<'a> {
    pub challenge: &'a Challenge,
    /// The credentials we put in the allow list.
    pub asked: &'a [&'a CredentialRecord],
    pub counter_policy: CounterPolicy,
}

/// Check `resp` against the record it names and the state we hold for it.
pub fn verify_assertion(
    expect: &Expectation<'_>,
    resp: &GetAssertionResponse,
    state: &CredentialState,
) -> Result<VerifiedAssertion, VerifyError> {
    let record = expect
        .asked
        .iter()
        .find(|r| r.credential_id.ct_eq(&resp.credential_id).into())
        .ok_or(VerifyError::UnexpectedCredential)?;
    if state.credential_id != record.credential_id {
        return Err(VerifyError::UnexpectedCredential);
    }
    if state.suspended {
        return Err(VerifyError::Suspended(
            state
                .suspended_reason
                .clone()
                .unwrap_or_else(|| "no reason recorded".into()),
        ));
    }
    let key = record.cose_key().map_err(VerifyError::StoredKeyInvalid)?;
    let ad = &resp.auth_data;

    let rp_hash: [u8; 32] = Sha256::digest(record.rp_id.as_bytes()).into();
    if !bool::from(ad.rp_id_hash.ct_eq(&rp_hash)) {
        return Err(VerifyError::RpIdHashMismatch);
    }
    if !ad.flags.user_present() {
        return Err(VerifyError::UserNotPresent);
    }
    if record.user_verification == UvRequirement::Required && !ad.flags.user_verified() {
        return Err(VerifyError::UserNotVerified);
    }
    let signed = [ad.raw.as_slice(), &expect.challenge.client_data_hash].concat();
    if !key.verify(&signed, &resp.signature) {
        return Err(VerifyError::BadSignature);
    }

    if record.hmac_secret {
        let (Some(check), Some(output)) = (state.hmac_check.as_ref(), resp.hmac_secret.as_ref())
        else {
            return Err(VerifyError::HmacMissing);
        };
        let output = output
            .as_ref()
            .map_err(|e| VerifyError::HmacUnusable(e.to_string()))?;
        if state.hmac_uv != ad.flags.user_verified() {
            return Err(VerifyError::HmacUvMismatch {
                enrolled_with_uv: state.hmac_uv,
            });
        }
        let digest: [u8; 32] = Sha256::digest(&output.output1[..]).into();
        if !bool::from(digest.ct_eq(check)) {
            return Err(VerifyError::HmacMismatch);
        }
    }

    let received = ad.sign_count;
    let counter = match (state.sign_count, received) {
        (0, 0) => match expect.counter_policy {
            CounterPolicy::AllowZero => CounterOutcome::NotKept,
            CounterPolicy::Require => return Err(VerifyError::CounterNotKept),
        },
        (stored, received) if received > stored => CounterOutcome::Advanced {
            from: stored,
            to: received,
        },
        (stored, received) => return Err(VerifyError::CounterRegression { stored, received }),
    };

    Ok(VerifiedAssertion {
        credential_id: record.credential_id.clone(),
        credential_name: record.name.clone(),
        sign_count: received,
        user_verified: ad.flags.user_verified(),
        counter,
        _sealed: (),
    })
}

#[cfg(test)]
mod tests;
