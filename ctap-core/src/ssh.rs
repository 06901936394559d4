//! OpenSSH security keys: formats shared by the agent and the CLI, and signing/enrollment with a
//! FIDO2 key (PROTOCOL.u2f).
//!
//! - [`key`]: public key blobs, `authorized_keys` lines, agent private fields, key-handle files.
//! - [`signature`]: the sk signature encoding (written by hand: see its module doc).
//! - [`request`]: recognising userauth and SSHSIG data for keys with a non-`ssh:` application.
//! - [`authenticator`]: getAssertion/makeCredential for SSH keys.
//!
//! SSH credentials use the same [`CredentialRecord`] as PAM, with `rp_id = "ssh:"` (or
//! `ssh:<name>`), in the user's own `~/.config/ctap/credentials.toml`.

pub mod authenticator;
mod error;
pub mod key;
pub mod request;
pub mod signature;
pub mod wire;

pub use authenticator::{
    enroll_ssh_credential, sign, verification_need, SkSignature, SshEnrollment, UserVerification,
    VerificationNeed,
};
pub use error::SshError;
pub use key::{flags, SkAlgorithm, SkKey, SK_ECDSA, SK_ED25519};
pub use signature::{encode_sk_signature, verify_sk_signature};

use crate::credential::{CredentialFile, CredentialRecord};

/// Whether a record is an SSH credential (its rp_id is `ssh:` or `ssh:<name>`).
pub fn is_ssh_record(r: &CredentialRecord) -> bool {
    r.rp_id.starts_with("ssh:")
}

/// The SSH keys of a credentials file, in file order; records that are not SSH credentials are
/// skipped, and a record that cannot be an SSH key is an error naming it.
pub fn ssh_keys(file: &CredentialFile) -> Result<Vec<SkKey>, SshError> {
    file.credentials
        .iter()
        .filter(|r| is_ssh_record(r))
        .map(SkKey::from_record)
        .collect()
}

/// What `ctap-enroll export-ssh` prints: one `authorized_keys` line per SSH credential, the same
/// lines `ssh-add -L` shows through the agent.
pub fn export_ssh_lines(file: &CredentialFile) -> Result<Vec<String>, SshError> {
    Ok(ssh_keys(file)?
        .iter()
        .map(SkKey::authorized_keys_line)
        .collect())
}

/// Check `signature` (SSH encoding) by the host key `host_key` (a public key blob) over
/// `session_id`, as session-bind@openssh.com requires. Ed25519 and ECDSA P-256 host keys are
/// verified (`ssh-key`); other types (RSA, P-384/521) are reported unsupported, and the agent
/// then refuses the binding: the client carries on without it.
pub fn verify_host_signature(
    host_key: &[u8],
    session_id: &[u8],
    signature: &[u8],
) -> Result<(), SshError> {
    use p256::ecdsa::signature::Verifier;
    let key = ssh_key::PublicKey::from_bytes(host_key)
        .map_err(|e| SshError::malformed(format!("host key: {e}")))?;
    let sig = ssh_key::Signature::try_from(signature)
        .map_err(|e| SshError::malformed(format!("host key signature: {e}")))?;
    match key.algorithm() {
        ssh_key::Algorithm::Ed25519
        | ssh_key::Algorithm::Ecdsa {
            curve: ssh_key::EcdsaCurve::NistP256,
        } => {}
        other => {
            return Err(SshError::unsupported(format!(
                "cannot verify {other} host key signatures"
            )))
        }
    }
    key.key_data()
        .verify(session_id, &sig)
        .map_err(|_| SshError::refused("host key signature over the session id does not verify"))
}
