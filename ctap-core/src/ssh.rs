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
pub mod cert;
mod error;
pub mod key;
pub mod request;
pub mod signature;
pub mod wire;

pub use authenticator::{
    enroll_ssh_credential, sign, ssh_enrollment_needs_uv, SkSignature, SshEnrollment,
    CRED_PROTECT_UV_REQUIRED,
};
pub use cert::{SkCertificate, Validity};
pub use error::{BadAssertion, KeyFileError, Malformed, Refusal, SshError, Unsupported};
pub use key::{flags, SkAlgorithm, SkKey};
pub use signature::verify_sk_signature;

use crate::store::credential::{CredentialFile, CredentialRecord};

/// Whether a record is an SSH credential (its rp_id is `ssh:` or `ssh:<name>`).
pub fn is_ssh_record(r: &CredentialRecord) -> bool {
    r.rp_id.is_ssh()
}

/// The SSH keys of a credentials file, in file order; records that are not SSH credentials are
/// skipped, and a record that cannot be an SSH key is an error naming it.
pub(crate) fn ssh_keys(file: &CredentialFile) -> Result<Vec<SkKey>, SshError> {
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
    let key = ssh_key::PublicKey::from_bytes(host_key).map_err(|e| {
        SshError::malformed(Malformed::HostKey {
            parser: e.to_string(),
        })
    })?;
    let sig = ssh_key::Signature::try_from(signature).map_err(|e| {
        SshError::malformed(Malformed::HostKeySignature {
            parser: e.to_string(),
        })
    })?;
    match key.algorithm() {
        ssh_key::Algorithm::Ed25519
        | ssh_key::Algorithm::Ecdsa {
            curve: ssh_key::EcdsaCurve::NistP256,
        } => {}
        other => {
            return Err(SshError::unsupported(Unsupported::HostKeyAlgorithm {
                algorithm: other.to_string(),
            }))
        }
    }
    key.key_data()
        .verify(session_id, &sig)
        .map_err(|_| SshError::refused(Refusal::HostSignature))
}

/// `$HOME/.config/ctap/credentials.toml` of the user running us: where `ctap-enroll ssh` records
/// SSH credentials and the agent reads them.
#[allow(
    clippy::disallowed_methods,
    reason = "feature `ssh` only (the agent and the CLI, never pam_ctap): the user's own HOME"
)]
pub fn user_credentials_path() -> Option<std::path::PathBuf> {
    let home = std::env::var_os("HOME")
        .filter(|h| !h.is_empty())
        .map(std::path::PathBuf::from)
        .or_else(|| {
            nix::unistd::User::from_uid(nix::unistd::geteuid())
                .ok()
                .flatten()
                .map(|u| u.dir)
        })?;
    Some(home.join(crate::store::credential::PER_USER_FILE))
}

/// Add an SSH record to the user's credentials file (created 0600 if absent; an existing one
/// must pass the usual ownership and mode checks). Fails if the name or credential exists.
pub fn record_ssh_credential(
    path: &std::path::Path,
    record: CredentialRecord,
) -> Result<(), crate::store::credential::StoreError> {
    use crate::store::credential::{load_credential_file, save_credential_file};
    let owner = crate::store::fs::Ownership::effective();
    let mut file = match load_credential_file(path, owner) {
        Ok(f) => f,
        Err(e) if e.is_not_found() => CredentialFile::default(),
        Err(e) => return Err(e),
    };
    file.credentials.push(record);
    save_credential_file(path, &file, 0o600)
}

/// Write `path` (the key-handle file, 0600, never overwriting) and `path.pub` (its
/// `authorized_keys` line, 0644), as `ssh-keygen -t ecdsa-sk -f path` would.
pub fn write_key_files(path: &std::path::Path, key: &SkKey) -> Result<(), KeyFileError> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let text = key.to_openssh_private().map_err(KeyFileError::Encode)?;
    let mut pub_path = path.as_os_str().to_owned();
    pub_path.push(".pub");
    let create = |p: &std::path::Path, mode: u32, body: &[u8]| -> Result<(), KeyFileError> {
        let io = |source| KeyFileError::Io {
            path: p.to_path_buf(),
            source,
        };
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(mode)
            .custom_flags(nix::libc::O_NOFOLLOW)
            .open(p)
            .map_err(io)?;
        f.write_all(body).and_then(|()| f.sync_all()).map_err(io)
    };
    create(path, 0o600, text.as_bytes())?;
    create(
        std::path::Path::new(&pub_path),
        0o644,
        format!("{}\n", key.authorized_keys_line()).as_bytes(),
    )
}

#[cfg(test)]
mod fuzz {
    use proptest::prelude::*;

    use super::key::SK_ECDSA;
    use super::request::classify;
    use super::signature::encode_sk_signature;
    use super::wire::Reader;
    use super::*;

    proptest! {
        /// Every parser that reads peer or file input answers arbitrary bytes with a value or an
        /// error, never a panic.
        #[test]
        fn parsers_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..600)) {
            let _ = SkKey::read_private(&mut Reader::new(&bytes));
            let _ = SkKey::parse_public_blob(&bytes);
            let _ = SkCertificate::from_blob(&bytes);
            let _ = SkCertificate::read_private(&mut Reader::new(&bytes));
            let _ = classify(&bytes, SK_ECDSA, &bytes);
            let _ = verify_host_signature(&bytes, &bytes, &bytes);
            let _ = SkKey::from_openssh_private(&String::from_utf8_lossy(&bytes));
            let _ = encode_sk_signature(SkAlgorithm::EcdsaP256, &bytes, 1, 1);
        }

        /// Valid prefixes with a corrupted tail: deeper paths than random bytes reach.
        #[test]
        fn corrupted_private_fields_never_panic(cut in 0usize..200, flip in any::<u8>(), at in 0usize..200) {
            let (_, k) = key::tests::ecdsa_key();
            let mut f = k.private_fields();
            if let Some(b) = f.get_mut(at) {
                *b ^= flip;
            }
            f.truncate(cut.min(f.len()));
            let _ = SkKey::read_private(&mut Reader::new(&f));
            let _ = verify_sk_signature(&k, b"data", &f);
        }
    }
}
