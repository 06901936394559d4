//! Signing and enrollment of OpenSSH sk keys with a security key, over [`Ctap2`].

use sha2::{Digest, Sha256};

use super::key::{SkAlgorithm, SkKey};
use super::signature::encode_sk_signature;
use super::{BadAssertion, Refusal, SshError};
use crate::flows::uv::Verification;
use crate::flows::verify::{check_assertion, AssertionExpectation, CheckedAssertion};
use crate::store::credential::{now_rfc3339, CredentialRecord, UvRequirement};
use crate::store::credential::{EnrolledKey, RpId};
use crate::transport::ctap2::cose::Algorithm;
use crate::transport::ctap2::info::{format_aaguid, AuthenticatorInfo};
use crate::transport::ctap2::{
    Ctap2, CtapError, GetAssertionRequest, Incompatibility, KeepaliveHandler, MakeCredentialRequest,
};
use crate::transport::device::Transport;

/// Whether making an SSH credential on a key described by `info` needs user verification: for
/// `verify-required` keys, and on any key with a PIN set (which then demands one for
/// makeCredential). The planner ([`crate::flows::uv::plan`]) decides how.
pub fn ssh_enrollment_needs_uv(info: &AuthenticatorInfo, verify_required: bool) -> bool {
    verify_required || info.pin_set()
}

/// A signature in OpenSSH's encoding, with the flags and counter it carries.
#[derive(Debug, Clone)]
pub struct SkSignature {
    pub encoded: Vec<u8>,
    pub flags: u8,
    pub counter: u32,
}

/// Sign `data` with `key`: getAssertion(rpId = application, clientDataHash = SHA-256(data),
/// allowList = [key handle], up unless the key is no-touch-required), with user verification as
/// the planner ([`crate::flows::uv`]) settled it. The answer goes through the one verifier
/// ([`check_assertion`]) with the public key we hold, then OpenSSH's own rule on top (no
/// extensions or attested data in authenticatorData), before it is encoded for SSH. A key that
/// lies costs this one request: the signature is refused here, not by the server.
pub fn sign<T: Transport>(
    ctap: &mut Ctap2<T>,
    key: &SkKey,
    data: &[u8],
    verification: &Verification,
    on_keepalive: KeepaliveHandler<'_>,
) -> Result<SkSignature, SshError> {
    let client_data_hash: [u8; 32] = Sha256::digest(data).into();
    let req = GetAssertionRequest {
        rp_id: key.application.clone(),
        client_data_hash,
        allow_list: vec![key.key_handle.clone()],
        user_presence: key.touch_required(),
        user_verification: verification.uv_option(),
        hmac_secret: None,
    };
    let resp = ctap.get_assertion(&req, verification.token(), on_keepalive)?;
    let checked = check_assertion(
        &AssertionExpectation {
            rp_id: &key.application,
            client_data_hash: &client_data_hash,
            credential_id: &key.key_handle,
            public_key: key.cose_key(),
            user_presence: key.touch_required(),
            user_verification: key.verify_required(),
        },
        &resp,
    )
    .map_err(SshError::Rejected)?;
    ssh_signature(key, &checked)
}

/// OpenSSH's rules on a checked assertion, and its encoding.
fn ssh_signature(key: &SkKey, checked: &CheckedAssertion<'_>) -> Result<SkSignature, SshError> {
    let auth = checked.auth_data();
    // OpenSSH's signature has no room for authenticatorData extensions or attested data.
    if auth.raw.len() != 37 {
        return Err(SshError::BadAssertion(BadAssertion::AuthDataExtensions));
    }
    let encoded = encode_sk_signature(
        key.algorithm(),
        checked.signature(),
        auth.flags.0,
        auth.sign_count,
    )?;
    Ok(SkSignature {
        encoded,
        flags: auth.flags.0,
        counter: auth.sign_count,
    })
}

/// What to enroll.
#[derive(Debug, Clone)]
pub struct SshEnrollment {
    /// `ssh:` or `ssh:<name>`.
    pub application: String,
    pub algorithm: SkAlgorithm,
    pub no_touch_required: bool,
    pub verify_required: bool,
    /// Store the credential on the key (discoverable), as `ssh-keygen -O resident` does.
    pub resident: bool,
    /// The FIDO user name (OpenSSH's `-O user=`); empty means OpenSSH's default all-zero user id.
    pub user: String,
    /// The record's label, also the key's comment.
    pub name: String,
}

/// credProtect's userVerificationRequired (CTAP 2.1 §12.1): the key uses the credential only
/// after user verification.
pub const CRED_PROTECT_UV_REQUIRED: u8 = 3;

/// Create an SSH credential on the key and return its record (rp_id = application), with user
/// verification as the planner settled it (see [`ssh_enrollment_needs_uv`]).
pub fn enroll_ssh_credential<T: Transport>(
    ctap: &mut Ctap2<T>,
    e: &SshEnrollment,
    verification: &Verification,
    on_keepalive: KeepaliveHandler<'_>,
) -> Result<CredentialRecord, SshError> {
    let application = match RpId::parse(&e.application) {
        Ok(rp @ RpId::Ssh(_)) => rp,
        _ => {
            return Err(SshError::refused(Refusal::NotSshApplication {
                application: e.application.clone(),
            }))
        }
    };
    if e.name.trim().is_empty() {
        return Err(SshError::refused(Refusal::EmptyName));
    }
    let algorithm = match e.algorithm {
        SkAlgorithm::EcdsaP256 => Algorithm::Es256,
        SkAlgorithm::Ed25519 => Algorithm::EdDsa,
    };
    let user_id = if e.user.is_empty() {
        vec![0u8; 32]
    } else {
        e.user.as_bytes().to_vec()
    };
    let req = MakeCredentialRequest {
        client_data_hash: rand::random(),
        rp_id: e.application.clone(),
        rp_name: None,
        user_id,
        user_name: if e.user.is_empty() {
            "openssh".into()
        } else {
            e.user.clone()
        },
        user_display_name: None,
        algorithms: vec![algorithm],
        exclude_list: vec![],
        resident_key: e.resident,
        user_verification: verification.uv_option(),
        hmac_secret: false,
        // A resident key carries verify-required on the key itself, as OpenSSH does it: a
        // new machine that loads the key from it (load-resident-ssh) reads the level back.
        cred_protect: (e.resident && e.verify_required).then_some(CRED_PROTECT_UV_REQUIRED),
    };
    if req.cred_protect.is_some() && !ctap.info().supports_extension("credProtect") {
        return Err(SshError::from(CtapError::DeviceIncompatible(
            Incompatibility::NoCredProtect {
                needs: "a resident SSH key that requires verification",
            },
        )));
    }
    let made = ctap.make_credential(&req, verification.token(), on_keepalive)?;
    let cred = made.credential();
    let public_key = match EnrolledKey::new(cred.public_key.clone()) {
        Ok(k) if k.algorithm() == algorithm => k,
        _ => return Err(SshError::BadAssertion(BadAssertion::OtherAlgorithm)),
    };
    Ok(CredentialRecord {
        name: e.name.clone(),
        credential_id: cred.credential_id.clone(),
        rp_id: application,
        public_key,
        aaguid: format_aaguid(&cred.aaguid),
        user_verification: if e.verify_required {
            UvRequirement::Required
        } else {
            UvRequirement::Discouraged
        },
        hmac_secret: false,
        created: now_rfc3339(),
        no_touch_required: e.no_touch_required,
        protocol: crate::store::credential::Protocol::Fido2,
    })
}
