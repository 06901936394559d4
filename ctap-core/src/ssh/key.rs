//! OpenSSH security-key ("sk") keys: public key blobs, `authorized_keys` lines, the private
//! fields an agent receives, and `openssh-key-v1` key-handle files (PROTOCOL.u2f).

use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD};
use base64::Engine;
use sha2::{Digest, Sha256};
use ssh_encoding::Decode;

use super::wire::{put_string, Reader};
use super::{Malformed, SshError, Unsupported};
use crate::store::credential::CredentialRecord;
use crate::transport::ctap2::cose::{CoseKey, ALG_ES256};

pub(crate) const SK_ECDSA: &str = "sk-ecdsa-sha2-nistp256@openssh.com";
pub(crate) const SK_ED25519: &str = "sk-ssh-ed25519@openssh.com";
pub(crate) const SK_ECDSA_CERT: &str = "sk-ecdsa-sha2-nistp256-cert-v01@openssh.com";
pub(crate) const SK_ED25519_CERT: &str = "sk-ssh-ed25519-cert-v01@openssh.com";
const NISTP256: &str = "nistp256";

/// Flags OpenSSH stores with an sk key (sk-api.h).
pub mod flags {
    /// Each signature needs a touch. Cleared for `no-touch-required` keys.
    pub const USER_PRESENCE_REQD: u8 = 0x01;
    /// Each signature needs a PIN or built-in UV (`verify-required`).
    pub const USER_VERIFICATION_REQD: u8 = 0x04;
    pub const FORCE_OPERATION: u8 = 0x10;
    pub const RESIDENT_KEY: u8 = 0x20;
}

/// The two sk key types OpenSSH defines.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SkAlgorithm {
    EcdsaP256,
    Ed25519,
}

impl SkAlgorithm {
    pub fn ssh_name(self) -> &'static str {
        match self {
            SkAlgorithm::EcdsaP256 => SK_ECDSA,
            SkAlgorithm::Ed25519 => SK_ED25519,
        }
    }

    pub(crate) fn from_ssh_name(name: &str) -> Option<Self> {
        match name {
            SK_ECDSA => Some(SkAlgorithm::EcdsaP256),
            SK_ED25519 => Some(SkAlgorithm::Ed25519),
            _ => None,
        }
    }

    /// The type name of an OpenSSH certificate for a key of this type (PROTOCOL.certkeys).
    pub fn cert_name(self) -> &'static str {
        match self {
            SkAlgorithm::EcdsaP256 => SK_ECDSA_CERT,
            SkAlgorithm::Ed25519 => SK_ED25519_CERT,
        }
    }

    pub(crate) fn from_cert_name(name: &str) -> Option<Self> {
        match name {
            SK_ECDSA_CERT => Some(SkAlgorithm::EcdsaP256),
            SK_ED25519_CERT => Some(SkAlgorithm::Ed25519),
            _ => None,
        }
    }
}

/// An OpenSSH sk key: the public key, the FIDO application (the rpId), OpenSSH's flags and the
/// key handle (the FIDO credential id). Built only from a well-formed public key on its curve.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SkKey {
    key: CoseKey,
    pub application: String,
    pub flags: u8,
    pub key_handle: Vec<u8>,
    pub comment: String,
}

/// `SHA256:…` of any public key blob (a host key a session is bound to), as `ssh-keygen -l`
/// prints it.
pub fn blob_fingerprint(blob: &[u8]) -> String {
    format!("SHA256:{}", STANDARD_NO_PAD.encode(Sha256::digest(blob)))
}

impl SkKey {
    /// `key` must be an ES256 or Ed25519 COSE key (the only kinds [`CoseKey`] signs with).
    pub fn new(
        key: CoseKey,
        application: String,
        flags: u8,
        key_handle: Vec<u8>,
        comment: String,
    ) -> Result<Self, SshError> {
        if key.algorithm().is_none() {
            return Err(SshError::unsupported(Unsupported::KeyAgreementKey));
        }
        if application.is_empty() {
            return Err(SshError::malformed(Malformed::EmptyApplication));
        }
        if key_handle.is_empty() {
            return Err(SshError::malformed(Malformed::EmptyKeyHandle));
        }
        Ok(SkKey {
            key,
            application,
            flags,
            key_handle,
            comment,
        })
    }

    /// The SSH view of an enrolled credential: application = rp_id, key handle = credential id,
    /// flags from `no_touch_required` and `user_verification`, comment = the record's name.
    pub fn from_record(r: &CredentialRecord) -> Result<Self, SshError> {
        let mut f = 0;
        if !r.no_touch_required {
            f |= flags::USER_PRESENCE_REQD;
        }
        if r.user_verification == crate::store::credential::UvRequirement::Required {
            f |= flags::USER_VERIFICATION_REQD;
        }
        SkKey::new(
            r.public_key.cose().clone(),
            r.rp_id.to_string(),
            f,
            r.credential_id.clone(),
            r.name.clone(),
        )
    }

    pub fn algorithm(&self) -> SkAlgorithm {
        match self.key {
            CoseKey::Es256 { .. } => SkAlgorithm::EcdsaP256,
            CoseKey::EdDsa { .. } => SkAlgorithm::Ed25519,
        }
    }

    pub fn cose_key(&self) -> &CoseKey {
        &self.key
    }

    pub fn touch_required(&self) -> bool {
        self.flags & flags::USER_PRESENCE_REQD != 0
    }

    pub fn verify_required(&self) -> bool {
        self.flags & flags::USER_VERIFICATION_REQD != 0
    }

    /// Whether the application is an SSH one ("ssh:" or "ssh:name"), as opposed to a web origin
    /// whose challenges the agent must not sign blindly.
    pub fn is_ssh_application(&self) -> bool {
        self.application
            .starts_with(crate::store::credential::RpId::SSH_PREFIX)
    }

    /// The public key blob: what `authorized_keys`, agent identity lists and userauth carry.
    pub fn public_blob(&self) -> Vec<u8> {
        public_blob(&self.key, &self.application)
    }

    /// `type base64(blob) comment`, as `authorized_keys`, `ssh-add -L` and `*.pub` files have it.
    pub fn authorized_keys_line(&self) -> String {
        let mut line = format!(
            "{} {}",
            self.algorithm().ssh_name(),
            STANDARD.encode(self.public_blob())
        );
        let comment = self.comment.trim();
        if !comment.is_empty() {
            line.push(' ');
            line.push_str(comment);
        }
        line
    }

    /// `SHA256:…` as `ssh-keygen -l` and `ssh-add -l` print it.
    pub fn fingerprint(&self) -> String {
        blob_fingerprint(&self.public_blob())
    }

    /// Parse a public key blob (the type and the public fields only). Only the tests and the
    /// fuzz targets need it: the agent reads keys through [`SkKey::read_private`].
    #[cfg(any(test, feature = "fuzzing"))]
    pub(crate) fn parse_public_blob(blob: &[u8]) -> Result<(CoseKey, String), SshError> {
        let mut r = Reader::new(blob);
        let parsed = read_public(&mut r)?;
        r.finish("public key blob")?;
        Ok(parsed)
    }

    /// Parse the private fields of an sk key (public fields, flags, key handle, reserved) as
    /// SSH_AGENTC_ADD_IDENTITY and openssh-key-v1 files carry them. The comment is not part of it.
    pub fn read_private(r: &mut Reader<'_>) -> Result<Self, SshError> {
        let (key, application) = read_public(r)?;
        let flags = r.u8("flags")?;
        let key_handle = r.string("key handle")?.to_vec();
        let _reserved = r.string("reserved")?;
        SkKey::new(key, application, flags, key_handle, String::new())
    }

    /// The private fields in the same layout [`SkKey::read_private`] reads.
    pub fn private_fields(&self) -> Vec<u8> {
        let mut out = self.public_blob();
        out.push(self.flags);
        put_string(&mut out, &self.key_handle);
        put_string(&mut out, &[]);
        out
    }

    /// Read an OpenSSH private key file holding an sk key. Only unencrypted files: an sk key
    /// file holds no secret, only the handle the security key needs.
    ///
    /// `ssh-key` parses the armour, check integers and padding; the sk fields are then read by
    /// [`SkKey::read_private`], the same code that reads keys added through the agent.
    #[cfg(any(test, feature = "fuzzing"))]
    pub(crate) fn from_openssh_private(text: &str) -> Result<Self, SshError> {
        let pk = ssh_key::PrivateKey::from_openssh(text).map_err(|e| {
            SshError::malformed(Malformed::KeyFile {
                parser: e.to_string(),
            })
        })?;
        if pk.is_encrypted() {
            return Err(SshError::unsupported(Unsupported::EncryptedKeyFile));
        }
        let data = pk.key_data();
        if !(data.is_sk_ecdsa_p256() || data.is_sk_ed25519()) {
            return Err(SshError::unsupported(Unsupported::NotSecurityKey {
                algorithm: pk.algorithm().to_string(),
            }));
        }
        use ssh_encoding::Encode;
        let mut bytes = Vec::new();
        data.encode(&mut bytes).map_err(|e| {
            SshError::malformed(Malformed::Encoding {
                parser: e.to_string(),
            })
        })?;
        let mut r = Reader::new(&bytes);
        let mut key = SkKey::read_private(&mut r)?;
        r.finish("private key")?;
        key.comment = pk.comment().to_string();
        Ok(key)
    }

    /// Write an unencrypted `openssh-key-v1` file for this key, as `ssh-keygen -t ecdsa-sk`
    /// writes one: `ssh-keygen -y -f` and `ssh-add` accept it.
    ///
    /// The key pair is decoded by `ssh-key` from our own encoding of the fields rather than built
    /// with its constructors: those refuse key handles longer than 255 bytes, which CTAP2
    /// credential ids may exceed (CTAP2 allows up to 1023 bytes; the virtual key's are 156).
    pub fn to_openssh_private(&self) -> Result<String, SshError> {
        let fields = self.private_fields();
        let key_pair = |e: ssh_key::Error| {
            SshError::malformed(Malformed::KeyPair {
                parser: e.to_string(),
            })
        };
        let data =
            ssh_key::private::KeypairData::decode(&mut fields.as_slice()).map_err(key_pair)?;
        let pk = ssh_key::PrivateKey::new(data, self.comment.clone()).map_err(key_pair)?;
        let text = pk.to_openssh(ssh_key::LineEnding::LF).map_err(|e| {
            SshError::malformed(Malformed::Encoding {
                parser: e.to_string(),
            })
        })?;
        Ok(text.to_string())
    }
}

/// The public key blob of an sk key with this public key and application.
pub(crate) fn public_blob(key: &CoseKey, application: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(128);
    match key {
        CoseKey::Es256 { .. } => {
            put_string(&mut out, SK_ECDSA.as_bytes());
            put_string(&mut out, NISTP256.as_bytes());
        }
        CoseKey::EdDsa { .. } => put_string(&mut out, SK_ED25519.as_bytes()),
    }
    put_string(&mut out, &key.raw_public());
    put_string(&mut out, application.as_bytes());
    out
}

fn read_public(r: &mut Reader<'_>) -> Result<(CoseKey, String), SshError> {
    let name = r.text("key type")?;
    let alg = SkAlgorithm::from_ssh_name(name).ok_or_else(|| {
        SshError::unsupported(Unsupported::KeyType {
            name: name.to_string(),
        })
    })?;
    read_public_fields(r, alg)
}

/// The public fields after the type name (and, in a certificate, after the nonce): the point
/// (checked on its curve) and the application.
pub(crate) fn read_public_fields(
    r: &mut Reader<'_>,
    alg: SkAlgorithm,
) -> Result<(CoseKey, String), SshError> {
    let key = match alg {
        SkAlgorithm::EcdsaP256 => {
            let curve = r.text("curve")?;
            if curve != NISTP256 {
                return Err(SshError::malformed(Malformed::Curve {
                    curve: curve.to_string(),
                }));
            }
            let q = r.string("Q")?;
            let (x, y) = match q {
                [0x04, rest @ ..] if rest.len() == 64 => (&rest[..32], &rest[32..]),
                _ => return Err(SshError::malformed(Malformed::PointNotUncompressed)),
            };
            let mut xa = [0u8; 32];
            let mut ya = [0u8; 32];
            xa.copy_from_slice(x);
            ya.copy_from_slice(y);
            let key = CoseKey::Es256 {
                x: xa,
                y: ya,
                alg: ALG_ES256,
            };
            key.p256_public()
                .map_err(|_| SshError::malformed(Malformed::PointNotOnCurve))?;
            key
        }
        SkAlgorithm::Ed25519 => {
            let pk = r.string("public key")?;
            let x: [u8; 32] = pk
                .try_into()
                .map_err(|_| SshError::malformed(Malformed::Ed25519Length { len: pk.len() }))?;
            let key = CoseKey::EdDsa { x };
            // Round-trip through COSE: the same decompression check enrollment applies.
            CoseKey::from_bytes(&key.to_bytes())
                .map_err(|_| SshError::malformed(Malformed::Ed25519Invalid))?
        }
    };
    let application = r.text("application")?.to_string();
    Ok((key, application))
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub(crate) fn ecdsa_key() -> (p256::ecdsa::SigningKey, SkKey) {
        let sk = p256::ecdsa::SigningKey::random(&mut rand::rngs::OsRng);
        let p = sk.verifying_key().to_encoded_point(false);
        let key = CoseKey::Es256 {
            x: p.x().unwrap().as_slice().try_into().unwrap(),
            y: p.y().unwrap().as_slice().try_into().unwrap(),
            alg: ALG_ES256,
        };
        (
            sk,
            SkKey::new(
                key,
                "ssh:".into(),
                flags::USER_PRESENCE_REQD,
                vec![7; 300],
                "alice@host".into(),
            )
            .unwrap(),
        )
    }

    #[test]
    fn blob_matches_ssh_key_crate_and_round_trips() {
        let (_, k) = ecdsa_key();
        let blob = k.public_blob();
        let theirs = ssh_key::PublicKey::from_bytes(&blob).unwrap();
        assert_eq!(theirs.algorithm().as_str(), SK_ECDSA);
        assert_eq!(theirs.to_bytes().unwrap(), blob);
        let (cose, app) = SkKey::parse_public_blob(&blob).unwrap();
        assert_eq!((cose, app.as_str()), (k.key.clone(), "ssh:"));
        assert!(k
            .authorized_keys_line()
            .starts_with("sk-ecdsa-sha2-nistp256@openssh.com AAAAInNr"));
        assert!(k.authorized_keys_line().ends_with(" alice@host"));
    }

    #[test]
    fn key_file_round_trips_with_a_long_handle() {
        let (_, k) = ecdsa_key();
        let text = k.to_openssh_private().unwrap();
        assert!(text.starts_with("-----BEGIN OPENSSH PRIVATE KEY-----"));
        assert_eq!(SkKey::from_openssh_private(&text).unwrap(), k);
        let ed = SkKey::new(
            CoseKey::EdDsa {
                x: ed25519_dalek::SigningKey::from_bytes(&[3; 32])
                    .verifying_key()
                    .to_bytes(),
            },
            "ssh:work".into(),
            0x05,
            vec![1, 2, 3],
            "c".into(),
        )
        .unwrap();
        assert_eq!(
            SkKey::from_openssh_private(&ed.to_openssh_private().unwrap()).unwrap(),
            ed
        );
    }

    #[test]
    fn malformed_blobs_are_errors_not_panics() {
        let (_, k) = ecdsa_key();
        let blob = k.private_fields();
        for cut in 0..blob.len() {
            let mut r = Reader::new(&blob[..cut]);
            assert!(SkKey::read_private(&mut r).is_err(), "cut at {cut}");
        }
        let mut bad = k.public_blob();
        bad[40] ^= 0xff; // inside Q
        assert!(SkKey::parse_public_blob(&bad).is_err());
        let mut other = Vec::new();
        put_string(&mut other, b"ssh-ed25519");
        put_string(&mut other, &[0; 32]);
        assert!(matches!(
            SkKey::parse_public_blob(&other),
            Err(SshError::Unsupported(_))
        ));
    }
}
