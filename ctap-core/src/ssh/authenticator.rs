//! Signing and enrollment of OpenSSH sk keys with a security key, over [`Ctap2`].

use sha2::{Digest, Sha256};

use super::key::{SkAlgorithm, SkKey};
use super::signature::encode_sk_signature;
use super::SshError;
use crate::credential::record::AlgorithmName;
use crate::credential::{now_rfc3339, CredentialRecord, UvRequirement};
use crate::ctap2::cose::Algorithm;
use crate::ctap2::info::{format_aaguid, AuthenticatorInfo};
use crate::ctap2::pin::{permission, Pin};
use crate::ctap2::{Ctap2, GetAssertionRequest, KeepaliveHandler, MakeCredentialRequest};
use crate::device::Transport;

/// How a signature proves user verification.
#[derive(Clone, Copy)]
pub enum UserVerification<'a> {
    /// Not asked for (the key does not require it).
    None,
    /// The key's built-in UV (fingerprint): `uv = true`.
    BuiltIn,
    /// A PIN, exchanged for a pinUvAuthToken scoped to getAssertion and the key's application.
    Pin(&'a Pin),
}

/// What the agent must ask the user for before signing with `key` on this security key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VerificationNeed {
    None,
    BuiltIn,
    Pin,
}

/// Decide how to satisfy `key`'s `verify-required` flag on a key described by `info`.
pub fn verification_need(
    info: &AuthenticatorInfo,
    key: &SkKey,
) -> Result<VerificationNeed, SshError> {
    if !key.verify_required() {
        Ok(VerificationNeed::None)
    } else if info.builtin_uv() {
        Ok(VerificationNeed::BuiltIn)
    } else if info.pin_set() {
        Ok(VerificationNeed::Pin)
    } else {
        Err(SshError::refused("the key requires user verification but the security key has neither a PIN nor built-in verification"))
    }
}

/// A signature in OpenSSH's encoding, with the flags and counter it carries.
#[derive(Debug, Clone)]
pub struct SkSignature {
    pub encoded: Vec<u8>,
    pub flags: u8,
    pub counter: u32,
}

/// Sign `data` with `key`: getAssertion(rpId = application, clientDataHash = SHA-256(data),
/// allowList = [key handle], up unless the key is no-touch-required), then check the answer
/// against the public key we hold before encoding it for SSH. A key that lies costs this one
/// request: the signature is refused here, not by the server.
pub fn sign<T: Transport>(
    ctap: &mut Ctap2<T>,
    key: &SkKey,
    data: &[u8],
    uv: UserVerification<'_>,
    on_keepalive: KeepaliveHandler<'_>,
) -> Result<SkSignature, SshError> {
    let client_data_hash: [u8; 32] = Sha256::digest(data).into();
    let token = match uv {
        UserVerification::Pin(pin) => {
            Some(ctap.pin_token(pin, permission::GET_ASSERTION, Some(&key.application))?)
        }
        UserVerification::None | UserVerification::BuiltIn => None,
    };
    let req = GetAssertionRequest {
        rp_id: key.application.clone(),
        client_data_hash,
        allow_list: vec![key.key_handle.clone()],
        user_presence: key.touch_required(),
        user_verification: matches!(uv, UserVerification::BuiltIn),
        hmac_secret: None,
    };
    let resp = ctap.get_assertion(&req, token.as_ref(), on_keepalive)?;
    let bad = |m: &str| Err(SshError::BadAssertion(m.to_string()));
    if resp.credential_id != key.key_handle {
        return bad("answered for another credential");
    }
    let auth = &resp.auth_data;
    // OpenSSH's signature has no room for authenticatorData extensions or attested data.
    if auth.raw.len() != 37 {
        return bad("authenticatorData carries extensions or attested data");
    }
    if auth.rp_id_hash != <[u8; 32]>::from(Sha256::digest(key.application.as_bytes())) {
        return bad("rpIdHash is not the hash of the key's application");
    }
    if key.touch_required() && !auth.flags.user_present() {
        return bad("user presence flag not set");
    }
    if key.verify_required() && !auth.flags.user_verified() {
        return bad("user verification flag not set");
    }
    let signed = [auth.raw.as_slice(), &client_data_hash].concat();
    if !key.cose_key().verify(&signed, &resp.signature) {
        return bad("signature does not verify with the enrolled public key");
    }
    let encoded = encode_sk_signature(
        key.algorithm(),
        &resp.signature,
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

/// Create an SSH credential on the key and return its record (rp_id = application). With a
/// PIN-protected key pass a token with the makeCredential permission (`verify_required` keys on
/// keys without built-in UV need one).
pub fn enroll_ssh_credential<T: Transport>(
    ctap: &mut Ctap2<T>,
    e: &SshEnrollment,
    token: Option<&crate::ctap2::pin::PinUvAuthToken>,
    on_keepalive: KeepaliveHandler<'_>,
) -> Result<CredentialRecord, SshError> {
    if !e.application.starts_with("ssh:") {
        return Err(SshError::refused(format!(
            "application {:?} must start with \"ssh:\"",
            e.application
        )));
    }
    if e.name.trim().is_empty() {
        return Err(SshError::refused("the credential needs a name"));
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
        user_verification: e.verify_required && token.is_none() && ctap.info().builtin_uv(),
        hmac_secret: false,
        cred_protect: None,
    };
    let made = ctap.make_credential(&req, token, on_keepalive)?;
    let cred = made.credential();
    if cred.public_key.algorithm() != Some(algorithm) {
        return Err(SshError::BadAssertion(
            "the key created a credential of another algorithm".into(),
        ));
    }
    Ok(CredentialRecord {
        name: e.name.clone(),
        credential_id: cred.credential_id.clone(),
        rp_id: e.application.clone(),
        public_key: cred.public_key.to_bytes(),
        algorithm: AlgorithmName::from(algorithm),
        aaguid: format_aaguid(&cred.aaguid),
        user_verification: if e.verify_required {
            UvRequirement::Required
        } else {
            UvRequirement::Discouraged
        },
        hmac_secret: false,
        created: now_rfc3339(),
        no_touch_required: e.no_touch_required,
    })
}
