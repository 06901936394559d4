//! The key's U2F batch attestation: a P-256 key and a self-signed certificate in the trussed
//! store, where fido-authenticator looks for them.
//!
//! CTAP1/U2F registration must be attested (U2F raw message formats §4.3): without a key and
//! certificate fido-authenticator answers every U2F_REGISTER with SW_KEY_REFERENCE_NOT_FOUND.
//! A hardware key gets them at the factory; the softtoken makes its own when the state is
//! created, and for an older state file that lacks them, the first time it is served.
//!
//! The certificate carries no AAGUID extension (1.3.6.1.4.1.45724.1.1.4), on purpose:
//! fido-authenticator takes the key's AAGUID from it, and a state file that gains a certificate
//! must keep the AAGUID its credentials were enrolled with.

use std::str::FromStr;
use std::time::Duration;

use littlefs2::path;
use littlefs2::path::Path;
use p256::ecdsa::{DerSignature, SigningKey};
use rand_core::OsRng;
use trussed::key::{Flags, Key, Kind, Material};
use trussed::virt::Store;
use trussed_core::types::Location;
use x509_cert::builder::{Builder, CertificateBuilder, Profile};
use x509_cert::der::Encode;
use x509_cert::name::Name;
use x509_cert::serial_number::SerialNumber;
use x509_cert::spki::SubjectPublicKeyInfoOwned;
use x509_cert::time::Validity;
use zeroize::Zeroizing;

use crate::error::Error;

/// Where trussed keeps the secret key fido-authenticator's `ATTESTATION_KEY_ID`
/// (`KeyId::from_special(0)`) names: client `fido`, secret keys, the id's legacy hex path.
pub const KEY_PATH: &Path = path!("fido/sec/00");
/// Where trussed keeps the certificate `ATTESTATION_CERT_ID` (`CertId::from_special(0)`) names.
pub const CERT_PATH: &Path = path!("fido/x5c/00");

/// The certificate's subject (and issuer: it is self-signed). Says what it is to anyone who
/// looks at a registration made by the virtual key.
const SUBJECT: &str = "CN=ctap-softtoken U2F batch attestation,OU=Authenticator Attestation,O=ctap-login test framework,C=XX";

/// How long the certificate is valid: longer than any test run, as batch certificates are.
const VALIDITY: Duration = Duration::from_secs(20 * 365 * 24 * 3600);

/// Make sure the store holds an attestation key and certificate. Returns true if it made them.
pub fn ensure(store: Store<'_>) -> Result<bool, Error> {
    let has_key = trussed::store::exists(&store, Location::Internal, KEY_PATH);
    let has_cert = trussed::store::exists(&store, Location::Internal, CERT_PATH);
    if has_key && has_cert {
        return Ok(false);
    }
    let (key, cert) = generate()?;
    let failed = |what: &'static str| {
        move |e: trussed_core::Error| Error::Runtime {
            what,
            source: std::io::Error::other(format!("{e:?}")),
        }
    };
    // Certificate first: fido-authenticator reads the certificate whenever the key exists, so
    // a write that fails half way must leave no key without its certificate.
    trussed::store::store(&store, Location::Internal, CERT_PATH, &cert)
        .map_err(failed("storing the attestation certificate"))?;
    trussed::store::store(&store, Location::Internal, KEY_PATH, &key)
        .map_err(failed("storing the attestation key"))?;
    Ok(true)
}

/// A fresh P-256 key, serialized as trussed stores secret keys, and its self-signed certificate
/// (DER).
fn generate() -> Result<(Zeroizing<Vec<u8>>, Vec<u8>), Error> {
    let signing_key = SigningKey::random(&mut OsRng);
    let cert = certificate(&signing_key)?;
    let scalar = Zeroizing::new(signing_key.to_bytes());
    let material = Material::try_from(scalar.as_slice()).map_err(|_| Error::Runtime {
        what: "serializing the attestation key",
        source: std::io::Error::other("key material too long"),
    })?;
    let key = Key {
        flags: Flags::LOCAL | Flags::SENSITIVE,
        kind: Kind::P256,
        material,
    };
    Ok((Zeroizing::new(key.serialize().to_vec()), cert))
}

/// The self-signed batch certificate of `signing_key`, DER-encoded.
pub fn certificate(signing_key: &SigningKey) -> Result<Vec<u8>, Error> {
    let x509 = |e: &dyn std::fmt::Display| Error::Runtime {
        what: "making the attestation certificate",
        source: std::io::Error::other(e.to_string()),
    };
    let subject = Name::from_str(SUBJECT).map_err(|e| x509(&e))?;
    let serial: [u8; 8] = rand_core::RngCore::next_u64(&mut OsRng).to_be_bytes();
    // A positive INTEGER: clear the top bit (RFC 5280 §4.1.2.2).
    let serial = [&[serial[0] & 0x7F], &serial[1..]].concat();
    let serial = SerialNumber::new(&serial).map_err(|e| x509(&e))?;
    let validity = Validity::from_now(VALIDITY).map_err(|e| x509(&e))?;
    let spki =
        SubjectPublicKeyInfoOwned::from_key(*signing_key.verifying_key()).map_err(|e| x509(&e))?;
    let profile = Profile::Leaf {
        issuer: subject.clone(),
        enable_key_agreement: false,
        enable_key_encipherment: false,
    };
    let builder = CertificateBuilder::new(profile, serial, validity, subject, spki, signing_key)
        .map_err(|e| x509(&e))?;
    let cert = builder.build::<DerSignature>().map_err(|e| x509(&e))?;
    cert.to_der().map_err(|e| x509(&e))
}

#[cfg(test)]
mod tests {
    use super::*;
    use p256::ecdsa::signature::Verifier;
    use x509_cert::der::Decode;
    use x509_cert::Certificate;

    #[test]
    fn certificate_is_self_signed_by_the_key() {
        let key = SigningKey::random(&mut OsRng);
        let der = certificate(&key).expect("certificate");
        assert!(der.len() < 1024, "fits a trussed message: {}", der.len());
        let cert = Certificate::from_der(&der).expect("parses");
        let spki = cert
            .tbs_certificate
            .subject_public_key_info
            .subject_public_key
            .raw_bytes();
        assert_eq!(
            spki,
            key.verifying_key().to_encoded_point(false).as_bytes(),
            "the certificate's key is ours, uncompressed"
        );
        let tbs = cert.tbs_certificate.to_der().expect("tbs");
        let sig = p256::ecdsa::DerSignature::try_from(cert.signature.raw_bytes()).expect("sig");
        key.verifying_key()
            .verify(&tbs, &sig)
            .expect("self-signed by the attestation key");
        // No AAGUID extension: the key's AAGUID must not change when a certificate is added.
        let aaguid_oid = [
            0x06u8, 0x0B, 0x2B, 0x06, 0x01, 0x04, 0x01, 0x82, 0xE5, 0x1C, 0x01, 0x01, 0x04,
        ];
        assert!(!der.windows(aaguid_oid.len()).any(|w| w == aaguid_oid));
    }

    #[test]
    fn ensure_makes_them_once_and_repairs_a_state_without_them() {
        use trussed::virt::StorageConfig;
        let (mut internal, mut external, mut volatile) = (
            StorageConfig::ram(),
            StorageConfig::ram(),
            StorageConfig::ram(),
        );
        let read_key = |store: &Store<'_>| {
            trussed::store::read::<512>(store, Location::Internal, KEY_PATH).expect("key")
        };
        internal
            .with_fs(|internal| {
                external.with_fs(|external| {
                    volatile.with_fs(|volatile| {
                        let store = Store {
                            internal,
                            external,
                            volatile,
                        };
                        assert!(ensure(store).expect("a fresh state gets them"));
                        let key = read_key(&store);
                        assert!(!ensure(store).expect("kept"), "made once");
                        assert_eq!(read_key(&store), key);
                        // A state without a certificate (say, an older one) gets a new pair.
                        assert!(trussed::store::delete(
                            &store,
                            Location::Internal,
                            CERT_PATH
                        ));
                        assert!(ensure(store).expect("repaired"));
                        assert_ne!(read_key(&store), key);
                        assert!(trussed::store::exists(
                            &store,
                            Location::Internal,
                            CERT_PATH
                        ));
                    })
                })
            })
            .expect("internal")
            .expect("external")
            .expect("volatile");
    }

    #[test]
    fn key_serialization_is_what_trussed_reads() {
        let (key, _) = generate().expect("generate");
        let parsed = Key::try_deserialize(&key).expect("trussed reads it");
        assert_eq!(parsed.kind, Kind::P256);
        assert_eq!(parsed.material.len(), 32);
        assert!(parsed.flags.contains(Flags::SENSITIVE));
    }
}
