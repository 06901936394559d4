//! A login on a key that speaks only CTAP1/U2F (no CBOR capability, or getInfo refused): the
//! steps of [`super::login_with`] that U2F has, with the same state lock, verifier and settling.
//!
//! Only `protocol = "u2f"` credentials are tried (a U2F registration, or an old-format pam-u2f
//! line): each is probed silently with check-only (appId hash = SHA-256 of the RP ID), in the
//! login's probe order; the first one a key holds is authenticated with the touch cue, bounded
//! by the login's deadline (the channel's), verified by
//! [`crate::flows::verify::verify_u2f_assertion`] and settled like a CTAP2 assertion (counter,
//! clone detection, suspension). U2F has no PIN, no user verification and no hmac-secret: such
//! credentials never get here (the record loader refuses a U2F record that claims them).

use sha2::{Digest, Sha256};

use super::{settle, usable_state, LoginError, LoginGranted, Unusable};
use crate::flows::session::{keepalive_for, Prompter, U2fKey};
use crate::flows::verify::{verify_u2f_assertion, Challenge, Expectation, U2fAssertion};
use crate::store::account::Account;
use crate::store::config::Policy;
use crate::store::credential::{CredentialRecord, Protocol, StateFile};
use crate::transport::ctap1::{Ctap1Error, StatusWord};
use crate::transport::ctap2::CtapError;
use crate::transport::ctaphid::CtapHidError;

/// What [`super::login_with`] knows when it hands a login over to the U2F-only keys.
pub(super) struct Login<'a> {
    pub account: &'a Account,
    /// The user's credentials in probe order.
    pub ordered: &'a [CredentialRecord],
    /// The state read before the lock (it turns away a suspended credential before any touch).
    pub unlocked_state: &'a StateFile,
    pub service: &'a str,
    pub policy: &'a Policy,
    /// The login's one deadline.
    pub deadline: std::time::Instant,
    /// Where the login comes from (the remote host the notification names).
    pub context: &'a super::LoginContext<'a>,
}

/// Log the user in with one of `keys` (all U2F-only) and one of its U2F credentials. The lock is
/// taken before the touch and held until the verdict is written.
pub(super) fn login(
    mut keys: Vec<U2fKey>,
    login: Login<'_>,
    prompter: &mut dyn Prompter,
) -> Result<LoginGranted, LoginError> {
    let Login {
        account,
        ordered,
        unlocked_state,
        service,
        policy,
        deadline,
        context,
    } = login;
    let creds: Vec<&CredentialRecord> = ordered
        .iter()
        .filter(|r| r.protocol == Protocol::U2f)
        .collect();
    let (index, record) = find_credential(&mut keys, &creds)?;
    let key = keys.get_mut(index).ok_or(LoginError::WrongKey)?;
    usable_state(record, unlocked_state)?;

    let user = account.name();
    let store = policy.store();
    let mut guard = store.lock_state(
        user,
        deadline.saturating_duration_since(std::time::Instant::now()),
    )?;
    let state = usable_state(record, &guard.state)?;
    if state.hmac.is_some() {
        // Re-enrolled with hmac-secret (on a FIDO2 key) while this login waited.
        return Err(LoginError::NoUsableCredential(
            Unusable::ChangedWhileWaiting {
                credential: record.name.clone(),
            },
        ));
    }
    let challenge = Challenge::new(service, user);
    if policy.cue {
        prompter.touch_cue(&policy.cue_prompt);
    }
    let response = {
        // Root's authpending file and notify command, as for a FIDO2 key's wait.
        let _pending = super::touch_pending(policy, context, service, account);
        let mut ka = keepalive_for(prompter);
        key.authenticate(
            &app_id_hash(record),
            &challenge.client_data_hash(),
            &record.credential_id,
            &mut ka,
        )
        .map_err(device_error)?
    };
    let asked = [record];
    let expect = Expectation {
        challenge: &challenge,
        asked: &asked,
        counter_policy: policy.counter,
    };
    let verified = verify_u2f_assertion(
        &expect,
        &U2fAssertion {
            key_handle: &record.credential_id,
            response: &response,
        },
        &state,
    );
    settle(&mut guard, account, record, policy, verified)
}

/// U2F's appId hash for a credential: SHA-256 of its RP ID (enrollment registers with appId =
/// the RP ID; pam-u2f's old format with its appid, which the import made the RP ID).
fn app_id_hash(record: &CredentialRecord) -> [u8; 32] {
    Sha256::digest(record.rp_id.as_str().as_bytes()).into()
}

/// The first key and credential, in that order, that answer check-only with "held". A key that
/// fails is passed over for the others (its error is the answer if none holds one); once the
/// login's time is up, the search ends.
fn find_credential<'r>(
    keys: &mut [U2fKey],
    creds: &[&'r CredentialRecord],
) -> Result<(usize, &'r CredentialRecord), LoginError> {
    let mut last_err = None;
    'keys: for (i, key) in keys.iter_mut().enumerate() {
        for record in creds {
            match key.check_only(&app_id_hash(record), &record.credential_id) {
                Ok(true) => return Ok((i, record)),
                Ok(false) => {}
                Err(e) => match device_error(e) {
                    e @ LoginError::Device(CtapError::Hid(CtapHidError::Timeout)) => return Err(e),
                    e => {
                        last_err = Some(e);
                        continue 'keys;
                    }
                },
            }
        }
    }
    Err(last_err.unwrap_or(LoginError::WrongKey))
}

/// A U2F failure as a login error: "wrong data" (the key does not hold this key handle for
/// this appId) is CTAP2's no-credentials, the wrong key; everything else is the device's.
fn device_error(e: Ctap1Error) -> LoginError {
    match e {
        Ctap1Error::Status(StatusWord::WrongData) => LoginError::WrongKey,
        other => LoginError::Device(other.into()),
    }
}
