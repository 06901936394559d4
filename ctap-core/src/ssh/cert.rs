//! OpenSSH certificates for sk keys (PROTOCOL.certkeys): the `*-cert-v01@openssh.com` blobs an
//! agent lists beside the plain key, and the certificate form of SSH_AGENTC_ADD_IDENTITY.
//!
//! Read with our [`Reader`] rather than `ssh_key::Certificate`: ssh-key 0.6.7 refuses every
//! certificate whose `valid before` is 2^64-1 (`Error::Time`), and that is what `ssh-keygen -s`
//! writes unless given `-V` ("valid forever"; RustCrypto/SSH issues 174 and 503, fixed only in
//! the unreleased 0.7). The tests check that both readers agree on the certificates ssh-key
//! does read, and that it still refuses the "forever" one (when it stops, switch to it).
//!
//! The agent does not judge a certificate: it neither checks the CA signature nor the validity
//! period nor the principals, as OpenSSH's ssh-agent checks neither the period nor the
//! principals; sshd does all three with its `TrustedUserCAKeys`. What the agent needs is that
//! the certificate is well formed and certifies the key that will sign.

use super::key::{blob_fingerprint, public_blob, read_public_fields, SkAlgorithm, SkKey};
use super::wire::Reader;
use super::{Malformed, SshError, Unsupported};
use crate::transport::ctap2::cose::CoseKey;

/// `valid before` of a certificate that never expires.
pub const FOREVER: u64 = u64::MAX;

/// An OpenSSH certificate of an sk key, as received: its blob and the fields the agent shows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SkCertificate {
    blob: Vec<u8>,
    algorithm: SkAlgorithm,
    key: CoseKey,
    application: String,
    pub serial: u64,
    /// 1 = user certificate, 2 = host certificate.
    pub cert_type: u32,
    pub key_id: String,
    pub principals: Vec<String>,
    pub valid_after: u64,
    pub valid_before: u64,
}

/// Where a certificate stands at a given time (seconds since the epoch).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Validity {
    NotYetValid,
    Valid,
    Expired,
}

impl SkCertificate {
    /// Parse a certificate blob (the base64 part of a `-cert.pub` line, decoded). Every field is
    /// read, the certified key is checked on its curve, and nothing may follow the signature.
    pub fn from_blob(blob: &[u8]) -> Result<Self, SshError> {
        let mut r = Reader::new(blob);
        let name = r.text("certificate type")?;
        let algorithm = SkAlgorithm::from_cert_name(name).ok_or_else(|| {
            SshError::unsupported(Unsupported::KeyType {
                name: name.to_string(),
            })
        })?;
        let _nonce = r.string("nonce")?;
        let (key, application) = read_public_fields(&mut r, algorithm)?;
        let serial = r.u64("serial")?;
        let cert_type = r.u32("certificate role")?;
        let key_id = r.text("key id")?.to_string();
        let mut names = Reader::new(r.string("valid principals")?);
        let mut principals = Vec::new();
        while !names.is_empty() {
            principals.push(names.text("principal")?.to_string());
        }
        let valid_after = r.u64("valid after")?;
        let valid_before = r.u64("valid before")?;
        let _critical_options = r.string("critical options")?;
        let _extensions = r.string("extensions")?;
        let _reserved = r.string("reserved")?;
        let ca = r.string("signature key")?;
        let _signature = r.string("signature")?;
        r.finish("certificate")?;
        if ca.is_empty() {
            return Err(SshError::malformed(Malformed::CertificateNoCa));
        }
        Ok(SkCertificate {
            blob: blob.to_vec(),
            algorithm,
            key,
            application,
            serial,
            cert_type,
            key_id,
            principals,
            valid_after,
            valid_before,
        })
    }

    /// The blob, exactly as received: what `ssh-add -L` lists and sign requests name.
    pub fn blob(&self) -> &[u8] {
        &self.blob
    }

    pub fn algorithm(&self) -> SkAlgorithm {
        self.algorithm
    }

    /// `sk-ecdsa-sha2-nistp256-cert-v01@openssh.com` or `sk-ssh-ed25519-cert-v01@openssh.com`:
    /// the algorithm name of a userauth request made with this certificate.
    pub fn type_name(&self) -> &'static str {
        self.algorithm.cert_name()
    }

    /// The plain public key blob of the certified key.
    pub fn key_blob(&self) -> Vec<u8> {
        public_blob(&self.key, &self.application)
    }

    /// Whether this certificate certifies `key` (same public key and application).
    pub fn certifies(&self, key: &SkKey) -> bool {
        *key.cose_key() == self.key && key.application == self.application
    }

    /// `SHA256:…` of the certified key, as `ssh-keygen -L` prints it under "Public key".
    pub fn key_fingerprint(&self) -> String {
        blob_fingerprint(&self.key_blob())
    }

    pub fn validity_at(&self, unix_secs: u64) -> Validity {
        if unix_secs < self.valid_after {
            Validity::NotYetValid
        } else if self.valid_before != FOREVER && unix_secs >= self.valid_before {
            Validity::Expired
        } else {
            Validity::Valid
        }
    }

    /// SSH_AGENTC_ADD_IDENTITY with a certificate (sshkey_private_serialize): the certificate
    /// type name, the certificate blob, then the key's private fields without the public ones
    /// the certificate carries, except that an Ed25519 key repeats its public key. The repeated
    /// public key and the application must equal the certificate's, as OpenSSH's
    /// sshkey_private_deserialize requires. Returns the key (its public part from the
    /// certificate) and the certificate. The comment is not part of it.
    pub fn read_private(r: &mut Reader<'_>) -> Result<(SkKey, Self), SshError> {
        let name = r.text("key type")?;
        let algorithm = SkAlgorithm::from_cert_name(name).ok_or_else(|| {
            SshError::unsupported(Unsupported::KeyType {
                name: name.to_string(),
            })
        })?;
        let cert = SkCertificate::from_blob(r.string("certificate")?)?;
        if cert.algorithm != algorithm {
            return Err(SshError::malformed(Malformed::CertificateMismatch {
                field: "key type",
            }));
        }
        if algorithm == SkAlgorithm::Ed25519 {
            let pk = r.string("public key")?;
            if pk != cert.key.raw_public().as_slice() {
                return Err(SshError::malformed(Malformed::CertificateMismatch {
                    field: "public key",
                }));
            }
        }
        let application = r.text("application")?;
        if application != cert.application {
            return Err(SshError::malformed(Malformed::CertificateMismatch {
                field: "application",
            }));
        }
        let flags = r.u8("flags")?;
        let key_handle = r.string("key handle")?.to_vec();
        let _reserved = r.string("reserved")?;
        let key = SkKey::new(
            cert.key.clone(),
            cert.application.clone(),
            flags,
            key_handle,
            String::new(),
        )?;
        Ok((key, cert))
    }
}

/// Whether an agent message's key starts with a certificate type name (the agent then reads it
/// with [`SkCertificate::read_private`]).
pub fn is_certificate_type(name: &str) -> bool {
    name.ends_with("-cert-v01@openssh.com")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ssh::wire::put_string;
    use base64::engine::general_purpose::STANDARD;
    use base64::Engine;

    // The keys are OpenSSH's regress/unittests/sshkey/testdata ecdsa_sk1.pub and ecdsa_sk2.pub
    // and an sk-ssh-ed25519 key (application "ssh:work"); the certificates were made for them
    // with `ssh-keygen -s` (OpenSSH 9, an Ed25519 CA): "forever" without -V, "bounded" with
    // -V 20200101:20300101 -n alice,bob, the Ed25519 one with the same -V and -n carol.
    const KEY1: &str = "sk-ecdsa-sha2-nistp256@openssh.com AAAAInNrLWVjZHNhLXNoYTItbmlzdHAyNTZAb3BlbnNzaC5jb20AAAAIbmlzdHAyNTYAAABBBGdVPkKOLUMZ7b6rZfS8BOHotic4NX4MmuyEmiuvkaeKlbb1F+5oNezRYHpcF6P104trNVEONCu1XX1CA7px+QUAAAAEc3NoOg== ECDSA-SK test key #1";
    const KEY2: &str = "sk-ecdsa-sha2-nistp256@openssh.com AAAAInNrLWVjZHNhLXNoYTItbmlzdHAyNTZAb3BlbnNzaC5jb20AAAAIbmlzdHAyNTYAAABBBJOX5JHqtOCU5mZxCQK0nc936VaKd7Oj+AeTihl1lxNCyYRizvroGVYa4HYHPepBEtrpxew/7gr2QCMAnvN2gVQAAAAEc3NoOg== ECDSA-SK test key #2";
    const FOREVER_CERT1: &str = "sk-ecdsa-sha2-nistp256-cert-v01@openssh.com AAAAK3NrLWVjZHNhLXNoYTItbmlzdHAyNTYtY2VydC12MDFAb3BlbnNzaC5jb20AAAAgjTtfv3ykaTLzYsb6xT328kzBqbI16w+viwNtH/uWbsYAAAAIbmlzdHAyNTYAAABBBGdVPkKOLUMZ7b6rZfS8BOHotic4NX4MmuyEmiuvkaeKlbb1F+5oNezRYHpcF6P104trNVEONCu1XX1CA7px+QUAAAAEc3NoOgAAAAAAAAAAAAAAAQAAAApmb3JldmVyLWlkAAAACQAAAAVhbGljZQAAAAAAAAAA//////////8AAAAAAAAAggAAABVwZXJtaXQtWDExLWZvcndhcmRpbmcAAAAAAAAAF3Blcm1pdC1hZ2VudC1mb3J3YXJkaW5nAAAAAAAAABZwZXJtaXQtcG9ydC1mb3J3YXJkaW5nAAAAAAAAAApwZXJtaXQtcHR5AAAAAAAAAA5wZXJtaXQtdXNlci1yYwAAAAAAAAAAAAAAMwAAAAtzc2gtZWQyNTUxOQAAACDzv7+80J5COEQJRwZo35y8JxkE+Y3/dyBiJa2PD6R0nAAAAFMAAAALc3NoLWVkMjU1MTkAAABAU+PUz9iPTcHpKmRzIvGchOzF7OtyGdujvyDuJW8jfFatF3YiTS2nX2vMOArrQab/LCrcTK14nkTS9JnsNlLhCQ== ECDSA-SK test key #1";
    const BOUNDED_CERT2: &str = "sk-ecdsa-sha2-nistp256-cert-v01@openssh.com AAAAK3NrLWVjZHNhLXNoYTItbmlzdHAyNTYtY2VydC12MDFAb3BlbnNzaC5jb20AAAAgg4W3YP9GSdQ2GpAlD5GoeisiYodEG7nkPSSmXOUB0w4AAAAIbmlzdHAyNTYAAABBBJOX5JHqtOCU5mZxCQK0nc936VaKd7Oj+AeTihl1lxNCyYRizvroGVYa4HYHPepBEtrpxew/7gr2QCMAnvN2gVQAAAAEc3NoOgAAAAAAAAAAAAAAAQAAAAdib3VuZGVkAAAAEAAAAAVhbGljZQAAAANib2IAAAAAXgvhAAAAAABw29iAAAAAAAAAAIIAAAAVcGVybWl0LVgxMS1mb3J3YXJkaW5nAAAAAAAAABdwZXJtaXQtYWdlbnQtZm9yd2FyZGluZwAAAAAAAAAWcGVybWl0LXBvcnQtZm9yd2FyZGluZwAAAAAAAAAKcGVybWl0LXB0eQAAAAAAAAAOcGVybWl0LXVzZXItcmMAAAAAAAAAAAAAADMAAAALc3NoLWVkMjU1MTkAAAAg87+/vNCeQjhECUcGaN+cvCcZBPmN/3cgYiWtjw+kdJwAAABTAAAAC3NzaC1lZDI1NTE5AAAAQBeSgArSNRLFVUXk8l1cRNS4uuW1lHqbYP/fNwAR6gLr7dSWM4kUvZMlLfh1pH5xCU+rJtUy31stDXhpTC3ARA8= ECDSA-SK test key #2";
    const ED_CERT: &str = "sk-ssh-ed25519-cert-v01@openssh.com AAAAI3NrLXNzaC1lZDI1NTE5LWNlcnQtdjAxQG9wZW5zc2guY29tAAAAIFAMDJJsQYO06AbwQG3KOb0i0dv0CoQMxD0K6AVjXoVoAAAAIDhCniHjDmI0pnRsCWz1KedtAhEqAeorlC91tKLTlUoPAAAACHNzaDp3b3JrAAAAAAAAAAAAAAABAAAABWVkLWlkAAAACQAAAAVjYXJvbAAAAABeC+EAAAAAAHDb2IAAAAAAAAAAggAAABVwZXJtaXQtWDExLWZvcndhcmRpbmcAAAAAAAAAF3Blcm1pdC1hZ2VudC1mb3J3YXJkaW5nAAAAAAAAABZwZXJtaXQtcG9ydC1mb3J3YXJkaW5nAAAAAAAAAApwZXJtaXQtcHR5AAAAAAAAAA5wZXJtaXQtdXNlci1yYwAAAAAAAAAAAAAAMwAAAAtzc2gtZWQyNTUxOQAAACDzv7+80J5COEQJRwZo35y8JxkE+Y3/dyBiJa2PD6R0nAAAAFMAAAALc3NoLWVkMjU1MTkAAABAFpajpece7xAb6OM68iOVaeQe6tFFZaRMUVupzEw5ijlV9WfaQSAegTVC+1q7tKxav2jlAVmRhy9qT5E0ao90DA== ed-sk test";

    fn blob(line: &str) -> Vec<u8> {
        STANDARD.decode(line.split(' ').nth(1).unwrap()).unwrap()
    }

    fn plain(line: &str) -> SkKey {
        let (key, app) = SkKey::parse_public_blob(&blob(line)).unwrap();
        SkKey::new(key, app, 1, vec![1], String::new()).unwrap()
    }

    #[test]
    fn reads_ssh_keygen_certificates_and_knows_their_key() {
        let c = SkCertificate::from_blob(&blob(FOREVER_CERT1)).unwrap();
        assert_eq!(c.type_name(), SK_ECDSA_CERT_NAME);
        assert_eq!(c.key_id, "forever-id");
        assert_eq!(c.principals, ["alice"]);
        assert_eq!((c.valid_after, c.valid_before), (0, FOREVER));
        assert_eq!(c.validity_at(u64::MAX - 1), Validity::Valid);
        assert_eq!(c.key_blob(), blob(KEY1));
        assert!(c.certifies(&plain(KEY1)));
        assert!(!c.certifies(&plain(KEY2)));
        assert_eq!(c.blob(), blob(FOREVER_CERT1));

        let b = SkCertificate::from_blob(&blob(BOUNDED_CERT2)).unwrap();
        assert_eq!(b.principals, ["alice", "bob"]);
        assert_eq!(b.validity_at(1_500_000_000), Validity::NotYetValid);
        assert_eq!(b.validity_at(1_700_000_000), Validity::Valid);
        assert_eq!(b.validity_at(1_900_000_000), Validity::Expired);
        assert!(b.certifies(&plain(KEY2)));

        let e = SkCertificate::from_blob(&blob(ED_CERT)).unwrap();
        assert_eq!(e.algorithm(), SkAlgorithm::Ed25519);
        assert_eq!((e.cert_type, e.key_id.as_str()), (1, "ed-id"));
        assert_eq!(e.principals, ["carol"]);
    }

    /// ssh-key reads the bounded certificates the same way, and still refuses "forever" ones:
    /// the reason this module reads them itself. Fails (on purpose) once ssh-key reads them.
    #[test]
    fn agrees_with_ssh_key_where_ssh_key_can_read() {
        for line in [BOUNDED_CERT2, ED_CERT] {
            let ours = SkCertificate::from_blob(&blob(line)).unwrap();
            let theirs = ssh_key::Certificate::from_openssh(line).unwrap();
            assert_eq!(ours.key_id, theirs.key_id());
            assert_eq!(ours.serial, theirs.serial());
            assert_eq!(ours.principals, theirs.valid_principals());
            assert_eq!(ours.valid_after, theirs.valid_after());
            assert_eq!(ours.valid_before, theirs.valid_before());
            assert_eq!(
                ours.key_blob(),
                ssh_key::PublicKey::from(theirs.public_key().clone())
                    .to_bytes()
                    .unwrap()
            );
            assert_eq!(ours.blob(), theirs.to_bytes().unwrap());
        }
        assert!(matches!(
            ssh_key::Certificate::from_openssh(FOREVER_CERT1),
            Err(ssh_key::Error::Time)
        ));
    }

    #[test]
    fn malformed_certificates_are_errors_not_panics() {
        let good = blob(FOREVER_CERT1);
        for cut in 0..good.len() {
            assert!(SkCertificate::from_blob(&good[..cut]).is_err(), "cut {cut}");
        }
        let mut trailing = good.clone();
        trailing.push(0);
        assert!(SkCertificate::from_blob(&trailing).is_err());
        // A plain key is not a certificate; neither is a certificate of another key type.
        assert!(SkCertificate::from_blob(&blob(KEY1)).is_err());
        let mut other = Vec::new();
        put_string(&mut other, b"ssh-ed25519-cert-v01@openssh.com");
        other.extend_from_slice(&good[4 + SK_ECDSA_CERT_NAME.len()..]);
        assert!(matches!(
            SkCertificate::from_blob(&other),
            Err(SshError::Unsupported(_))
        ));
    }

    fn add_message(cert: &[u8], app: &str, ed_pk: Option<&[u8]>) -> Vec<u8> {
        let c = SkCertificate::from_blob(cert).unwrap();
        let mut m = Vec::new();
        put_string(&mut m, c.type_name().as_bytes());
        put_string(&mut m, cert);
        if let Some(pk) = ed_pk {
            put_string(&mut m, pk);
        }
        put_string(&mut m, app.as_bytes());
        m.push(0x01);
        put_string(&mut m, &[9; 40]);
        put_string(&mut m, &[]);
        m
    }

    #[test]
    fn agent_add_message_with_a_certificate() {
        let cert = blob(FOREVER_CERT1);
        let m = add_message(&cert, "ssh:", None);
        let mut r = Reader::new(&m);
        let (key, c) = SkCertificate::read_private(&mut r).unwrap();
        r.finish("message").unwrap();
        assert_eq!(key.public_blob(), blob(KEY1));
        assert_eq!(key.key_handle, [9; 40]);
        assert!(c.certifies(&key));
        // The application repeated in the private part must be the certificate's.
        let bad = add_message(&cert, "ssh:other", None);
        assert!(matches!(
            SkCertificate::read_private(&mut Reader::new(&bad)),
            Err(SshError::Malformed(Malformed::CertificateMismatch { .. }))
        ));

        let ed = blob(ED_CERT);
        let e = SkCertificate::from_blob(&ed).unwrap();
        let pk = e.key.raw_public();
        let m = add_message(&ed, "ssh:work", Some(&pk));
        let (key, _) = SkCertificate::read_private(&mut Reader::new(&m)).unwrap();
        assert!(e.certifies(&key));
        let m = add_message(&ed, "ssh:work", Some(&[0; 32]));
        assert!(SkCertificate::read_private(&mut Reader::new(&m)).is_err());
        for cut in 0..m.len() {
            assert!(SkCertificate::read_private(&mut Reader::new(&m[..cut])).is_err());
        }
    }

    const SK_ECDSA_CERT_NAME: &str = "sk-ecdsa-sha2-nistp256-cert-v01@openssh.com";

    proptest::proptest! {
        /// A real certificate with one byte changed and a cut: deeper than random bytes reach.
        #[test]
        fn corrupted_certificates_never_panic(at in 0usize..700, flip in 1u8..=255, cut in 0usize..700) {
            let mut b = blob(FOREVER_CERT1);
            let at = at % b.len();
            b[at] ^= flip;
            b.truncate(b.len() - cut % b.len());
            let _ = SkCertificate::from_blob(&b);
            let m = add_message(&blob(ED_CERT), "ssh:work", Some(&[0; 32]));
            let _ = SkCertificate::read_private(&mut Reader::new(&m[..m.len() - cut % m.len()]));
        }
    }
}
