//! Enrollment on a key that speaks only CTAP1/U2F: U2F_REGISTER with appId = the RP ID, the
//! registration checked against its attestation certificate's key
//! ([`verify_registration`]), then one authentication through the login verifier
//! ([`verify_u2f_assertion`]) for the first counter, as a FIDO2 enrollment confirms with one
//! assertion. The record is `protocol = "u2f"`: the 65-byte point as a COSE ES256 key, the key
//! handle as credential id, no hmac-secret, no user verification, no AAGUID (U2F has none).

use sha2::{Digest, Sha256};

use super::{
    check_account, request_rp_id, EnrollError, EnrollRefusal, EnrollRequest, UvPreference,
};
use crate::flows::session::{keepalive_for, Prompter, U2fKey};
use crate::flows::verify::{verify_u2f_assertion, Challenge, Expectation, U2fAssertion};
use crate::store::config::CounterPolicy;
use crate::store::credential::record::EnrolledKey;
use crate::store::credential::{
    CredentialRecord, CredentialState, CredentialStore, Protocol, UvRequirement,
};
use crate::transport::ctap1::{verify_registration, Ctap1Error};
use crate::transport::ctap2::cose::{CoseKey, ALG_ES256};
use crate::transport::ctap2::CtapError;

/// Enroll the U2F-only key `key` for `req.user`, writing state and records into `store`.
pub fn enroll_u2f(
    store: &CredentialStore,
    req: &EnrollRequest,
    key: &mut U2fKey,
    prompter: &mut dyn Prompter,
) -> Result<CredentialRecord, EnrollError> {
    let user = req.user.name();
    let rp_id = request_rp_id(req)?;
    if req.uv == UvPreference::Required {
        return Err(EnrollRefusal::U2fNoUv.into());
    }
    let mut guard = store.lock_state(user, crate::store::admin::EDIT_LOCK_WAIT)?;
    let mut records = store.load_system_records(user)?;
    check_account(req, &records)?;
    let app_id_hash: [u8; 32] = Sha256::digest(rp_id.as_str().as_bytes()).into();

    // U2F has no exclude list: ask the key about each of the user's U2F credentials under this
    // RP ID instead (one key, one record).
    for existing in records
        .credentials
        .iter()
        .filter(|c| c.rp_id == rp_id && c.protocol == Protocol::U2f)
    {
        if key
            .check_only(&app_id_hash, &existing.credential_id)
            .map_err(device)?
        {
            return Err(EnrollRefusal::AlreadyEnrolled {
                user: user.to_string(),
                rp_id: rp_id.as_str().to_string(),
            }
            .into());
        }
    }

    let challenge: [u8; 32] = rand::random();
    prompter.touch_cue("Touch your security key to create the credential");
    let registration = {
        let mut ka = keepalive_for(prompter);
        key.register(&app_id_hash, &challenge, &mut ka)
            .map_err(device)?
    };
    let registered =
        verify_registration(&registration, &app_id_hash, &challenge).map_err(device)?;
    let point = registered.public_key();
    let (x, y) = (&point[1..33], &point[33..65]);
    let cose = CoseKey::Es256 {
        x: x.try_into().map_err(|_| EnrollRefusal::UnusableAlgorithm)?,
        y: y.try_into().map_err(|_| EnrollRefusal::UnusableAlgorithm)?,
        alg: ALG_ES256,
    };
    let public_key = EnrolledKey::new(cose).map_err(|_| EnrollRefusal::UnusableAlgorithm)?;
    let record = CredentialRecord {
        name: req.name.clone(),
        credential_id: registered.key_handle().to_vec(),
        rp_id,
        public_key,
        aaguid: String::new(),
        user_verification: UvRequirement::Discouraged,
        hmac_secret: false,
        created: crate::store::credential::now_rfc3339(),
        no_touch_required: false,
        protocol: Protocol::U2f,
    };
    let state = confirm(key, &record, prompter)?;
    guard.state.put(state);
    guard.commit()?;
    records.credentials.push(record.clone());
    store.save_system_records(&req.user, &records)?;
    Ok(record)
}

/// One authentication now, checked by the login's verifier against the key just registered,
/// gives the first counter.
fn confirm(
    key: &mut U2fKey,
    record: &CredentialRecord,
    prompter: &mut dyn Prompter,
) -> Result<CredentialState, EnrollError> {
    let challenge = Challenge::new("ctap-enroll", &record.name);
    let app_id_hash: [u8; 32] = Sha256::digest(record.rp_id.as_str().as_bytes()).into();
    prompter.touch_cue("Touch your security key again to confirm");
    let response = {
        let mut ka = keepalive_for(prompter);
        key.authenticate(
            &app_id_hash,
            &challenge.client_data_hash(),
            &record.credential_id,
            &mut ka,
        )
        .map_err(device)?
    };
    let asked = [record];
    let verified = verify_u2f_assertion(
        &Expectation {
            challenge: &challenge,
            asked: &asked,
            // A new credential: any counter, zero included, is its first.
            counter_policy: CounterPolicy::AllowZero,
        },
        &U2fAssertion {
            key_handle: &record.credential_id,
            response: &response,
        },
        &CredentialState::new(record.credential_id.clone(), 0),
    )
    .map_err(EnrollError::Rejected)?;
    Ok(CredentialState::new(
        record.credential_id.clone(),
        verified.sign_count(),
    ))
}

/// A U2F failure as an enrollment error.
fn device(e: Ctap1Error) -> EnrollError {
    EnrollError::Device(CtapError::from(e))
}
