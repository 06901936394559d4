//! Assertion verification: the one verifier every assertion goes through.
//!
//! Nothing the key returns is trusted unverified. Whatever asked for an assertion (a login, the
//! confirmation at `ctap-enroll enroll`, an SSH signature in the agent), [`check_assertion`]
//! checks it with our own stored public key and our own expectations: the credential is the one
//! we asked for, rpIdHash is SHA-256 of our RP ID, the signed flags show presence and
//! verification where required, and the signature covers authenticatorData || clientDataHash.
//! It returns a [`CheckedAssertion`], which nothing else can build. On top of that value:
//! - a login ([`verify_assertion`]) adds the hmac-secret check (the output hashes to the enrolled
//!   check, compared in constant time) and the counter, and builds a [`VerifiedAssertion`];
//! - enrollment takes the hmac-secret output of a checked assertion to make the check;
//! - the agent (`ssh::sign`) adds OpenSSH's rules (no extensions in authenticatorData).
//!
//! A U2F-only key's authentication goes through [`verify_u2f_assertion`]: the same record, the
//! same checks where U2F has them (signature with the enrolled key over what U2F signs, presence,
//! the counter through the same [`counter_outcome`]), the same [`VerifiedAssertion`].
//!
//! As rustls puts it in its `implvulns` notes: the *lack* of an error is a poor indicator that a
//! signature was valid. So success is a value — [`CheckedAssertion`] and [`VerifiedAssertion`]
//! have private fields and only this module builds them — and callers (the PAM module's grant,
//! enrollment's state, the agent's SSH signature) demand that value. Neither can be built
//! outside this module:
//!
//! ```compile_fail
//! # fn forge(r: &ctap_core::transport::ctap2::GetAssertionResponse) {
//! let _ = ctap_core::flows::verify::CheckedAssertion { response: r, _sealed: () };
//! # }
//! ```
//!
//! ```compile_fail
//! let _ = ctap_core::flows::verify::VerifiedAssertion {
//!     credential_id: vec![],
//!     credential_name: String::new(),
//!     sign_count: 1,
//!     user_verified: true,
//!     counter: ctap_core::flows::verify::CounterOutcome::NotKept,
//!     _sealed: (),
//! };
//! ```

use std::fmt;

use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::store::config::CounterPolicy;
use crate::store::credential::{CredentialRecord, CredentialState, Suspension, UvRequirement};
use crate::transport::ctap1::{authentication_signed_bytes, AuthenticateResponse};
use crate::transport::ctap2::authdata::AuthenticatorData;
use crate::transport::ctap2::cose::CoseKey;
use crate::transport::ctap2::ext::hmac_secret::HmacSecretOutput;
use crate::transport::ctap2::{CtapError, GetAssertionResponse, HmacSecretProblem, Misbehaviour};

/// What one assertion must answer to: the request we sent and the key we hold for it.
#[derive(Clone, Copy)]
pub struct AssertionExpectation<'a> {
    /// The RP ID the request named: rpIdHash must be its SHA-256.
    pub rp_id: &'a str,
    /// The clientDataHash the request carried: the signature must cover it.
    pub client_data_hash: &'a [u8; 32],
    /// The one credential the request allowed.
    pub credential_id: &'a [u8],
    /// Our own stored public key of that credential (never one the key sends).
    pub public_key: &'a CoseKey,
    /// The UP flag must be set (every request that asked for a touch).
    pub user_presence: bool,
    /// The UV flag must be set (every request that asked for verification).
    pub user_verification: bool,
}

/// An assertion that passed [`check_assertion`]: the credential, rpIdHash, flags and signature
/// are what was asked for. Only [`check_assertion`] builds one. (No `Debug`: it holds the
/// hmac-secret output.)
pub struct CheckedAssertion<'r> {
    response: &'r GetAssertionResponse,
    _sealed: (),
}

impl<'r> CheckedAssertion<'r> {
    pub fn credential_id(&self) -> &'r [u8] {
        &self.response.credential_id
    }
    /// The signed authenticatorData (flags and counter as the key signed them).
    pub fn auth_data(&self) -> &'r AuthenticatorData {
        &self.response.auth_data
    }
    /// The signature, as the key encoded it (DER ECDSA or raw Ed25519), already verified.
    pub fn signature(&self) -> &'r [u8] {
        &self.response.signature
    }
    pub fn user_verified(&self) -> bool {
        self.response.auth_data.flags.user_verified()
    }
    /// The hmac-secret output, if salts were sent (the key's output is not signed: whoever
    /// uses it compares it with a check of its own).
    pub fn hmac_secret(&self) -> Option<&'r Result<HmacSecretOutput, CtapError>> {
        self.response.hmac_secret.as_ref()
    }
}

/// The checks every assertion passes, in this order: the credential is the one asked for,
/// rpIdHash = SHA-256(RP ID), UP and UV set where required, and the signature verifies with
/// our stored public key over authenticatorData || clientDataHash. (The strict shape of the
/// answer, canonical CBOR and authenticatorData without stray bytes, is the decoder's.)
pub fn check_assertion<'r>(
    expect: &AssertionExpectation<'_>,
    resp: &'r GetAssertionResponse,
) -> Result<CheckedAssertion<'r>, VerifyError> {
    if !bool::from(resp.credential_id.as_slice().ct_eq(expect.credential_id)) {
        return Err(VerifyError::UnexpectedCredential);
    }
    let ad = &resp.auth_data;
    let rp_hash: [u8; 32] = Sha256::digest(expect.rp_id.as_bytes()).into();
    if !bool::from(ad.rp_id_hash.ct_eq(&rp_hash)) {
        return Err(VerifyError::RpIdHashMismatch);
    }
    if expect.user_presence && !ad.flags.user_present() {
        return Err(VerifyError::UserNotPresent);
    }
    if expect.user_verification && !ad.flags.user_verified() {
        return Err(VerifyError::UserNotVerified);
    }
    let signed = [ad.raw.as_slice(), expect.client_data_hash].concat();
    if !expect.public_key.verify(&signed, &resp.signature) {
        return Err(VerifyError::BadSignature);
    }
    Ok(CheckedAssertion {
        response: resp,
        _sealed: (),
    })
}

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

/// Proof that one login's assertion passed every check: those of [`check_assertion`], the
/// hmac-secret check and the counter. Only [`verify_assertion`] constructs it.
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
    pub(crate) fn apply_to(&self, state: &mut CredentialState) {
        state.sign_count = self.sign_count;
        state.last_used = Some(crate::store::credential::now_rfc3339());
    }
}

/// Why an assertion was rejected. Each is a denial.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VerifyError {
    /// The key answered with a credential we did not ask for.
    UnexpectedCredential,
    RpIdHashMismatch,
    UserNotPresent,
    UserNotVerified,
    BadSignature,
    /// The credential is enrolled with hmac-secret but state has no check, or no salts were sent.
    HmacMissing,
    /// The key's hmac-secret output is absent, mistyped, undecryptable or of the wrong length.
    /// Logged as `hmac_mismatch`, like a wrong output: the key must not choose the reason.
    HmacUnusable(Misbehaviour),
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
    /// The credential is suspended (since a counter regression, or by an admin).
    Suspended(Suspension),
}

impl fmt::Display for VerifyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            VerifyError::UnexpectedCredential => write!(f, "the key answered with a credential that was not requested"),
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
            VerifyError::Suspended(s) => write!(f, "credential is suspended ({s}): run `ctap-enroll unsuspend`"),
        }
    }
}

impl std::error::Error for VerifyError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            VerifyError::HmacUnusable(m) => Some(m),
            _ => None,
        }
    }
}

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
    if let Some(s) = &state.suspension {
        return Err(VerifyError::Suspended(s.clone()));
    }
    let checked = check_assertion(
        &AssertionExpectation {
            rp_id: record.rp_id.as_str(),
            client_data_hash: &expect.challenge.client_data_hash,
            credential_id: &record.credential_id,
            public_key: record.public_key.cose(),
            // Every login asks for a touch.
            user_presence: true,
            user_verification: record.user_verification == UvRequirement::Required,
        },
        resp,
    )?;
    let ad = checked.auth_data();

    if record.hmac_secret {
        check_hmac_secret(&checked, state)?;
    }
    let received = ad.sign_count;
    let counter = counter_outcome(state.sign_count, received, expect.counter_policy)?;

    Ok(VerifiedAssertion {
        credential_id: record.credential_id.clone(),
        credential_name: record.name.clone(),
        sign_count: received,
        user_verified: ad.flags.user_verified(),
        counter,
        _sealed: (),
    })
}

/// What a U2F authentication answered, with the key handle it was asked for (a U2F response
/// does not name its credential: the request did).
pub struct U2fAssertion<'a> {
    pub key_handle: &'a [u8],
    pub response: &'a AuthenticateResponse,
}

/// The one verifier, for a U2F authentication (a U2F-only key): the same checks and the same
/// [`VerifiedAssertion`] as [`verify_assertion`], so the login settles it the same way. The
/// signature must verify with our stored P-256 key over
/// `SHA-256(RP ID) || flags || counter || challenge` (U2F's appId hash is the RP ID's, so an
/// answer for another appId fails here), the signed flags must show presence, and the counter
/// goes through the same check, clone detection and suspension as CTAP2's. U2F has neither
/// user verification nor hmac-secret: a record that asks for either is refused (records
/// loaded from disk cannot; a per-user record combined with root's state can).
pub fn verify_u2f_assertion(
    expect: &Expectation<'_>,
    answer: &U2fAssertion<'_>,
    state: &CredentialState,
) -> Result<VerifiedAssertion, VerifyError> {
    let record = expect
        .asked
        .iter()
        .find(|r| r.credential_id.ct_eq(answer.key_handle).into())
        .ok_or(VerifyError::UnexpectedCredential)?;
    if state.credential_id != record.credential_id {
        return Err(VerifyError::UnexpectedCredential);
    }
    if let Some(s) = &state.suspension {
        return Err(VerifyError::Suspended(s.clone()));
    }
    let resp = answer.response;
    let app_id_hash: [u8; 32] = Sha256::digest(record.rp_id.as_str().as_bytes()).into();
    let signed = authentication_signed_bytes(
        &app_id_hash,
        resp.flags,
        resp.counter,
        &expect.challenge.client_data_hash,
    );
    if !record.public_key.cose().verify(&signed, &resp.signature) {
        return Err(VerifyError::BadSignature);
    }
    if !resp.user_present() {
        return Err(VerifyError::UserNotPresent);
    }
    if record.user_verification == UvRequirement::Required {
        return Err(VerifyError::UserNotVerified);
    }
    if record.hmac_secret || state.hmac.is_some() {
        return Err(VerifyError::HmacMissing);
    }
    let counter = counter_outcome(state.sign_count, resp.counter, expect.counter_policy)?;
    Ok(VerifiedAssertion {
        credential_id: record.credential_id.clone(),
        credential_name: record.name.clone(),
        sign_count: resp.counter,
        user_verified: false,
        counter,
        _sealed: (),
    })
}

/// The hmac-secret output of a checked assertion hashes to the enrolled check (in constant
/// time), made with this login's UV state. Whatever is wrong with the output, the reason is an
/// hmac reason: the key must not choose it.
fn check_hmac_secret(
    checked: &CheckedAssertion<'_>,
    state: &CredentialState,
) -> Result<(), VerifyError> {
    let (Some(enrolled), Some(output)) = (state.hmac.as_ref(), checked.hmac_secret()) else {
        return Err(VerifyError::HmacMissing);
    };
    let output = output.as_ref().map_err(|e| {
        VerifyError::HmacUnusable(match e {
            CtapError::Misbehaved(m) => m.clone(),
            // decrypt_output fails only with a misbehaviour; anything else still is no output.
            _ => Misbehaviour::HmacSecret(HmacSecretProblem::Missing),
        })
    })?;
    if enrolled.uv != checked.user_verified() {
        return Err(VerifyError::HmacUvMismatch {
            enrolled_with_uv: enrolled.uv,
        });
    }
    let digest: [u8; 32] = Sha256::digest(&output.output1[..]).into();
    if !bool::from(digest.ct_eq(&enrolled.check)) {
        return Err(VerifyError::HmacMismatch);
    }
    Ok(())
}

/// The counter moved forward, or (both zero) the key keeps none and policy allows that.
fn counter_outcome(
    stored: u32,
    received: u32,
    policy: CounterPolicy,
) -> Result<CounterOutcome, VerifyError> {
    match (stored, received) {
        (0, 0) => match policy {
            CounterPolicy::AllowZero => Ok(CounterOutcome::NotKept),
            CounterPolicy::Require => Err(VerifyError::CounterNotKept),
        },
        (stored, received) if received > stored => Ok(CounterOutcome::Advanced {
            from: stored,
            to: received,
        }),
        (stored, received) => Err(VerifyError::CounterRegression { stored, received }),
    }
}

#[cfg(test)]
mod tests;
