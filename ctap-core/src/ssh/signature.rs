//! The OpenSSH sk signature (PROTOCOL.u2f, "SSH U2F signatures").
//!
//! What the security key signs is `authenticatorData || clientDataHash`. With rpId = the key's
//! application and clientDataHash = SHA-256(data), and no extensions, that is byte for byte what
//! OpenSSH verifies: SHA256(application) || flags || counter || SHA256(message). So the key's
//! signature is usable as it is; only its encoding changes:
//!
//! ```text
//! string  "sk-ecdsa-sha2-nistp256@openssh.com"     string  "sk-ssh-ed25519@openssh.com"
//! string  (mpint r, mpint s)                       string  signature (64 bytes)
//! byte    flags                                    byte    flags
//! uint32  counter                                  uint32  counter
//! ```
//!
//! Written by hand, not with `ssh-key`: `ssh_key::Signature` 0.6 encodes sk-ecdsa signatures as
//! one string holding r, s, flags and counter, so the flags and counter end up inside the
//! signature string instead of after it, and sshd rejects the result (its sk-ed25519 path is
//! right, the sk-ecdsa one is not). Both layouts here are checked by the end-to-end tests
//! against `ssh-keygen -Y verify` and a real sshd.

use sha2::{Digest, Sha256};

use super::key::{SkAlgorithm, SkKey};
use super::wire::{put_mpint, put_string, put_u32, read_unsigned_mpint, Reader};
use super::{BadAssertion, Malformed, SshError};
use crate::transport::ctap2::cose::CoseKey;

/// The flags and counter a signature carries, as sshd reads them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SkSignatureInfo {
    pub flags: u8,
    pub counter: u32,
}

/// Encode the key's signature (DER ECDSA or raw Ed25519, as CTAP2 returns it) for SSH.
pub(crate) fn encode_sk_signature(
    alg: SkAlgorithm,
    key_signature: &[u8],
    flags: u8,
    counter: u32,
) -> Result<Vec<u8>, SshError> {
    let mut inner = Vec::with_capacity(72);
    match alg {
        SkAlgorithm::EcdsaP256 => {
            let sig = p256::ecdsa::Signature::from_der(key_signature)
                .map_err(|_| SshError::BadAssertion(BadAssertion::SignatureNotDer))?;
            let (r, s) = sig.split_bytes();
            put_mpint(&mut inner, &r);
            put_mpint(&mut inner, &s);
        }
        SkAlgorithm::Ed25519 => {
            if key_signature.len() != 64 {
                return Err(SshError::BadAssertion(
                    BadAssertion::Ed25519SignatureLength {
                        len: key_signature.len(),
                    },
                ));
            }
            inner.extend_from_slice(key_signature);
        }
    }
    let mut out = Vec::with_capacity(inner.len() + 50);
    put_string(&mut out, alg.ssh_name().as_bytes());
    put_string(&mut out, &inner);
    out.push(flags);
    put_u32(&mut out, counter);
    Ok(out)
}

/// Verify an OpenSSH sk signature over `data` with `key`, as sshd does (without its policy on
/// flags). Used to check our own encoding and in tests; returns the flags and counter.
pub fn verify_sk_signature(
    key: &SkKey,
    data: &[u8],
    signature: &[u8],
) -> Result<SkSignatureInfo, SshError> {
    let mut r = Reader::new(signature);
    let name = r.text("signature type")?;
    if name != key.algorithm().ssh_name() {
        return Err(SshError::malformed(Malformed::SignatureType {
            got: name.to_string(),
            key: key.algorithm().ssh_name(),
        }));
    }
    let inner = r.string("signature")?;
    let flags = r.u8("flags")?;
    let counter = r.u32("counter")?;
    r.finish("signature")?;
    let mut signed = Vec::with_capacity(69);
    signed.extend_from_slice(&Sha256::digest(key.application.as_bytes()));
    signed.push(flags);
    signed.extend_from_slice(&counter.to_be_bytes());
    signed.extend_from_slice(&Sha256::digest(data));
    let ok = match key.cose_key() {
        CoseKey::Es256 { .. } => {
            let mut ir = Reader::new(inner);
            let rr: [u8; 32] = read_unsigned_mpint(&mut ir, "r")?;
            let ss: [u8; 32] = read_unsigned_mpint(&mut ir, "s")?;
            ir.finish("ecdsa signature")?;
            let sig = p256::ecdsa::Signature::from_scalars(rr, ss)
                .map_err(|_| SshError::malformed(Malformed::SignatureScalars))?;
            // The key's own check, which takes the DER form a security key answers with.
            key.cose_key().verify(&signed, sig.to_der().as_bytes())
        }
        CoseKey::EdDsa { .. } => key.cose_key().verify(&signed, inner),
    };
    if ok {
        Ok(SkSignatureInfo { flags, counter })
    } else {
        Err(SshError::BadAssertion(BadAssertion::SignatureDoesNotVerify))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ssh::key::flags;
    use p256::ecdsa::signature::Signer;

    #[test]
    fn ecdsa_signature_layout_is_string_string_byte_uint32() {
        let (sk, key) = crate::ssh::key::tests::ecdsa_key();
        let data = b"to be signed";
        let mut auth_data = Sha256::digest(b"ssh:").to_vec();
        auth_data.push(0x01);
        auth_data.extend_from_slice(&7u32.to_be_bytes());
        let signed = [auth_data.as_slice(), &Sha256::digest(data)].concat();
        let der: p256::ecdsa::DerSignature = sk.sign(&signed);
        let enc = encode_sk_signature(SkAlgorithm::EcdsaP256, der.as_bytes(), 0x01, 7).unwrap();
        // Trailer after the two strings, not inside the second one.
        assert_eq!(&enc[enc.len() - 5..], &[0x01, 0, 0, 0, 7]);
        let mut r = Reader::new(&enc);
        r.string("t").unwrap();
        let inner = r.string("s").unwrap();
        assert_eq!(r.rest().len(), 5);
        let mut ir = Reader::new(inner);
        ir.string("r").unwrap();
        ir.string("s").unwrap();
        ir.finish("inner").unwrap();
        assert_eq!(
            verify_sk_signature(&key, data, &enc).unwrap(),
            SkSignatureInfo {
                flags: 1,
                counter: 7
            }
        );
        assert!(verify_sk_signature(&key, b"other", &enc).is_err());
        for cut in 0..enc.len() {
            assert!(verify_sk_signature(&key, data, &enc[..cut]).is_err());
        }
        // ssh-key's decoder (which is right) reads our encoding back.
        let theirs = ssh_key::Signature::try_from(enc.as_slice()).unwrap();
        assert_eq!(theirs.algorithm().as_str(), crate::ssh::key::SK_ECDSA);
        // ...but its encoder does not write it back the same way: it puts flags and counter
        // inside the signature string. This is why the encoding above is written by hand; if
        // this assertion fails, ssh-key was fixed and could be used instead.
        let mut theirs_encoded = Vec::new();
        ssh_encoding::Encode::encode(&theirs, &mut theirs_encoded).unwrap();
        assert_ne!(theirs_encoded, enc);
        let mut tr = Reader::new(&theirs_encoded);
        tr.string("type").unwrap();
        assert_eq!(tr.string("sig").unwrap().len(), inner.len() + 5);
        let _ = flags::USER_PRESENCE_REQD;
    }

    #[test]
    fn bad_key_signatures_are_refused() {
        assert!(encode_sk_signature(SkAlgorithm::EcdsaP256, &[0x30, 0x01], 1, 1).is_err());
        assert!(encode_sk_signature(SkAlgorithm::Ed25519, &[0; 63], 1, 1).is_err());
    }
}
