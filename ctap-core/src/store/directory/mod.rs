//! The records source `directory` (issue 15, ARCHITECTURE.md §12): a user's credentials come
//! from an LDAP directory in SSSD/FreeIPA's `passkey:<id>,<spki>` format instead of root's
//! per-host records file.
//!
//! What stays per host, in the state directory as for any credential: the signature counter
//! (the first login on a host starts its baseline: trust on first use per host), suspension,
//! and the hmac-secret check, which SSSD's mapping does not carry: login records it at the
//! host's first login with the key (`flows::login::first_hmac_salt`) and enforces it after.
//!
//! Offline: every answer of the directory for a user is cached root-only (0600) in the state
//! directory with its time. An unreachable directory falls back to that cache while it is
//! younger than `offline_max_age`, and denies after; an answer without a mapping removes it.

mod cache;
pub mod filter;
#[cfg(feature = "directory")]
mod ldap;
pub mod mapping;
pub mod query;

use std::fmt;
use std::path::PathBuf;
use std::time::{Duration, SystemTime};

use serde::{Deserialize, Serialize};

use crate::store::account::Account;
use crate::store::credential::{
    CredentialFile, CredentialRecord, CredentialState, CredentialStore, RpId, StoreError,
    UvRequirement,
};

/// `[directory]` in root's policy. (Serialize: the module hands it to `ctap-directory-query`.)
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DirectoryConfig {
    /// `ldapi://%2Frun%2Fslapd%2Fldapi`, `ldaps://host`, or `ldap://host` (StartTLS).
    pub uri: String,
    /// `ldap://` without StartTLS. For tests only: the mappings would cross the network in the
    /// clear and could be changed on the way.
    #[serde(default)]
    pub insecure_plaintext: bool,
    /// PEM file of the CAs the server's certificate must chain to (`ldaps://`, StartTLS),
    /// instead of the system's trust store: root-owned, not writable by others.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_file: Option<PathBuf>,
    pub base_dn: String,
    /// The search filter; `{user}` is replaced by the RFC 4515-escaped account name.
    #[serde(default = "default_filter")]
    pub filter: String,
    /// Simple bind with this DN and the password in `bind_password_file` (root-only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bind_dn: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bind_password_file: Option<PathBuf>,
    /// SASL EXTERNAL bind (over `ldapi://`: the server maps the connecting uid).
    #[serde(default)]
    pub sasl_external: bool,
    #[serde(default)]
    pub attribute: Attribute,
    /// The RP ID the mappings were made for (FreeIPA: the domain).
    pub rp_id: String,
    /// Directory-wide user verification (FreeIPA's `ipaRequireUserVerification`).
    #[serde(default = "default_uv")]
    pub user_verification: UvRequirement,
    /// Seconds for connecting, binding and searching, each; must be less than `timeout`.
    #[serde(default = "default_query_timeout")]
    pub query_timeout: u64,
    /// Seconds an answer may be used while the directory is unreachable (0: never).
    #[serde(default = "default_offline_max_age")]
    pub offline_max_age: u64,
    /// The program that runs the query (default [`query::DEFAULT_HELPER`]): root-owned, and
    /// in root-owned directories no one else can write.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub query_helper: Option<PathBuf>,
}

fn default_filter() -> String {
    "(&(objectClass=posixAccount)(uid={user}))".into()
}
fn default_uv() -> UvRequirement {
    UvRequirement::Required
}
fn default_query_timeout() -> u64 {
    5
}
fn default_offline_max_age() -> u64 {
    86_400
}

/// Which attribute holds the mappings.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum Attribute {
    /// SSSD's plain LDAP schema.
    #[default]
    #[serde(rename = "passkey")]
    Passkey,
    /// FreeIPA (object class `ipaPasskeyUser`).
    #[serde(rename = "ipaPassKey")]
    IpaPassKey,
    /// Active Directory.
    #[serde(rename = "altSecurityIdentities")]
    AltSecurityIdentities,
}

impl Attribute {
    pub fn name(self) -> &'static str {
        match self {
            Attribute::Passkey => "passkey",
            Attribute::IpaPassKey => "ipaPassKey",
            Attribute::AltSecurityIdentities => "altSecurityIdentities",
        }
    }
}

/// How the client binds (only the LDAP client, feature `directory`, binds).
#[cfg(feature = "directory")]
pub(crate) enum Bind {
    Anonymous,
    SaslExternal,
    /// `label` names where the password file was given, for the error.
    Simple {
        dn: String,
        password_file: PathBuf,
        label: &'static str,
    },
}

impl DirectoryConfig {
    /// What makes the section unusable, in words for the admin (`timeout` is the login's).
    pub fn problem(&self, timeout: u64) -> Option<String> {
        let scheme = self.uri.split("://").next().unwrap_or("");
        if !["ldapi", "ldaps", "ldap"].contains(&scheme) || !self.uri.contains("://") {
            return Some(format!(
                "directory.uri = {:?}: must start with ldapi://, ldaps:// or ldap:// (StartTLS)",
                self.uri
            ));
        }
        if self.insecure_plaintext && scheme != "ldap" {
            return Some("directory.insecure_plaintext applies to ldap:// only".into());
        }
        if let Some(ca) = &self.ca_file {
            if !ca.is_absolute() {
                return Some("directory.ca_file must be an absolute path".into());
            }
            if scheme == "ldapi" || self.insecure_plaintext {
                return Some(
                    "directory.ca_file applies to TLS only: ldaps://, or ldap:// with StartTLS \
                     (not ldapi:// nor insecure_plaintext)"
                        .into(),
                );
            }
        }
        if self.base_dn.trim().is_empty() {
            return Some("directory.base_dn is empty".into());
        }
        if !self.filter.contains(filter::PLACEHOLDER)
            || !self.filter.starts_with('(')
            || !self.filter.ends_with(')')
        {
            return Some(format!(
                "directory.filter = {:?}: must be a parenthesised filter containing {}",
                self.filter,
                filter::PLACEHOLDER
            ));
        }
        if let Err(e) = RpId::parse(&self.rp_id) {
            return Some(format!("directory.rp_id: {e}"));
        }
        if self.rp_id.starts_with(RpId::SSH_PREFIX) {
            return Some("directory.rp_id is an SSH application, not a login RP ID".into());
        }
        if self.query_timeout == 0 || self.query_timeout >= timeout {
            return Some(format!(
                "directory.query_timeout = {}: must be at least 1 and less than timeout = {timeout}",
                self.query_timeout
            ));
        }
        if self.sasl_external && (self.bind_dn.is_some() || self.bind_password_file.is_some()) {
            return Some("directory: sasl_external and bind_dn exclude each other".into());
        }
        if self.sasl_external && scheme != "ldapi" {
            return Some("directory.sasl_external needs an ldapi:// uri".into());
        }
        if self.bind_dn.is_some() != self.bind_password_file.is_some() {
            return Some("directory: bind_dn and bind_password_file go together".into());
        }
        if self
            .bind_password_file
            .as_ref()
            .is_some_and(|p| !p.is_absolute())
        {
            return Some("directory.bind_password_file must be an absolute path".into());
        }
        if self.query_helper.as_ref().is_some_and(|p| !p.is_absolute()) {
            return Some("directory.query_helper must be an absolute path".into());
        }
        None
    }

    /// The query program the module runs.
    pub fn query_helper(&self) -> &std::path::Path {
        self.query_helper
            .as_deref()
            .unwrap_or(std::path::Path::new(query::DEFAULT_HELPER))
    }

    #[cfg(feature = "directory")]
    pub(crate) fn bind(&self) -> Result<Bind, FetchError> {
        Ok(match (&self.bind_dn, &self.bind_password_file) {
            (Some(dn), Some(file)) => Bind::Simple {
                dn: dn.clone(),
                password_file: file.clone(),
                label: "bind_password_file",
            },
            _ if self.sasl_external => Bind::SaslExternal,
            (None, None) => Bind::Anonymous,
            _ => {
                return Err(FetchError::Error(
                    "bind_dn without its password file".into(),
                ))
            }
        })
    }
}

/// Why `ca_file` cannot pin the directory's CAs. Every case fails the query closed: the
/// system's trust store is never used instead.
#[derive(Debug)]
pub enum CaFileError {
    /// Missing, unreadable, or not trusted (owner, mode, a directory above it).
    File(crate::store::fs::FileError),
    /// Read, but not PEM certificates.
    Invalid { path: PathBuf, why: String },
}

impl fmt::Display for CaFileError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CaFileError::File(e) => write!(f, "ca_file: {e}"),
            CaFileError::Invalid { path, why } => {
                write!(f, "ca_file: {}: {why}", path.display())
            }
        }
    }
}

impl std::error::Error for CaFileError {}

/// The certificates (DER) of the PEM file `path` names as `ca_file`, read as every root file
/// is (`fs::read_trusted`, owner root). At least one, each a well-formed X.509 certificate;
/// text around the blocks (as `openssl x509 -text` leaves it) is ignored.
pub fn read_ca_file(path: &std::path::Path) -> Result<Vec<Vec<u8>>, CaFileError> {
    use crate::store::fs::{self, Ownership};
    let bytes = fs::read_trusted(path, Ownership::ROOT).map_err(CaFileError::File)?;
    parse_ca_pem(&bytes).map_err(|why| CaFileError::Invalid {
        path: path.to_path_buf(),
        why,
    })
}

fn parse_ca_pem(bytes: &[u8]) -> Result<Vec<Vec<u8>>, String> {
    use x509_cert::der::{DecodePem, Encode};
    const BEGIN: &str = "-----BEGIN CERTIFICATE-----";
    const END: &str = "-----END CERTIFICATE-----";
    let text = std::str::from_utf8(bytes).map_err(|_| "not a PEM file (not text)".to_string())?;
    let mut certs = Vec::new();
    let mut rest = text;
    while let Some(start) = rest.find(BEGIN) {
        let block = &rest[start..];
        let end = block
            .find(END)
            .ok_or_else(|| format!("certificate {} has no {END} line", certs.len() + 1))?
            + END.len();
        let cert = x509_cert::Certificate::from_pem(&block[..end])
            .and_then(|c| c.to_der())
            .map_err(|e| format!("certificate {} is not valid: {e}", certs.len() + 1))?;
        certs.push(cert);
        rest = &block[end..];
    }
    if certs.is_empty() {
        return Err(format!(
            "no certificate in it (PEM blocks starting {BEGIN} expected)"
        ));
    }
    Ok(certs)
}

/// How a query failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FetchError {
    /// No answer: connection refused, timed out, cut.
    Unreachable(String),
    /// An answer that is an error (bind refused, bad base DN, several entries) or a local
    /// problem (the password file).
    Error(String),
}

/// What the offline cache held when the directory did not answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CacheStatus {
    None,
    Expired { age: u64, max_age: u64 },
    Unreadable(String),
}

/// Why the directory gave no credentials. Every variant is a denial.
#[derive(Debug)]
pub enum DirectoryError {
    /// No answer and no usable cache (`directory_unreachable`).
    Unreachable { why: String, cache: CacheStatus },
    /// The directory answered with an error, or is misconfigured (`directory_error`).
    Error(String),
    /// The user's only mapping values are malformed (`bad_mapping`).
    BadMapping {
        skipped: usize,
        first: mapping::MappingError,
    },
    /// The state directory (cache, counters) could not be used.
    Store(StoreError),
}

impl DirectoryError {
    /// The syslog reason word (pam_ctap(8), REASONS).
    pub fn kind(&self) -> &'static str {
        match self {
            DirectoryError::Unreachable { .. } => "directory_unreachable",
            DirectoryError::Error(_) | DirectoryError::Store(_) => "directory_error",
            DirectoryError::BadMapping { .. } => "bad_mapping",
        }
    }
}

impl fmt::Display for DirectoryError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DirectoryError::Unreachable { why, cache } => {
                write!(f, "the directory is unreachable ({why}) and ")?;
                match cache {
                    CacheStatus::None => {
                        f.write_str("no offline copy of this user's mapping exists")
                    }
                    CacheStatus::Expired { age, max_age } => write!(
                        f,
                        "the offline copy is {age} s old, older than offline_max_age = {max_age}"
                    ),
                    CacheStatus::Unreadable(e) => write!(f, "the offline copy is unusable: {e}"),
                }?;
                f.write_str(": bring the directory back or check the network")
            }
            DirectoryError::Error(e) => write!(
                f,
                "the directory query failed: {e}: check [directory] in the configuration"
            ),
            DirectoryError::BadMapping { skipped, first } => write!(
                f,
                "{skipped} malformed mapping value(s) and none usable ({first}): re-enroll the \
                 key with `ctap-enroll enroll --directory`"
            ),
            DirectoryError::Store(e) => e.fmt(f),
        }
    }
}

impl std::error::Error for DirectoryError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            DirectoryError::Store(e) => Some(e),
            DirectoryError::BadMapping { first, .. } => Some(first),
            _ => None,
        }
    }
}

impl From<StoreError> for DirectoryError {
    fn from(e: StoreError) -> Self {
        DirectoryError::Store(e)
    }
}

/// Where a login's directory credentials came from, for the grant's log line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DirectoryNote {
    /// From the offline cache (the directory was unreachable), this many seconds old.
    pub offline_age: Option<u64>,
    /// Malformed values skipped (each never grants).
    pub skipped: usize,
}

/// The user's credentials from the directory (or its offline copy). `Ok(None)`: the directory
/// has no mapping for the user (the cache is removed).
pub fn load(
    cfg: &DirectoryConfig,
    store: &CredentialStore,
    account: &Account,
) -> Result<Option<(CredentialFile, DirectoryNote)>, DirectoryError> {
    let wait = Duration::from_secs(cfg.query_timeout);
    let now = SystemTime::now();
    let (values, offline_age) = match query::run(cfg, account.name()) {
        Ok(Some(values)) if !values.is_empty() => (values, None),
        Ok(_) => {
            let guard = store.lock_state(account.name(), wait)?;
            cache::remove(store, account.name())?;
            drop(guard);
            return Ok(None);
        }
        Err(FetchError::Error(e)) => return Err(DirectoryError::Error(e)),
        Err(FetchError::Unreachable(why)) => match cache::read(store, account, now) {
            Ok(Some(c)) if cfg.offline_max_age > 0 && c.age <= cfg.offline_max_age => {
                (c.values, Some(c.age))
            }
            Ok(Some(c)) => {
                return Err(DirectoryError::Unreachable {
                    why,
                    cache: CacheStatus::Expired {
                        age: c.age,
                        max_age: cfg.offline_max_age,
                    },
                })
            }
            Ok(None) => {
                return Err(DirectoryError::Unreachable {
                    why,
                    cache: CacheStatus::None,
                })
            }
            Err(e) => {
                return Err(DirectoryError::Unreachable {
                    why,
                    cache: CacheStatus::Unreadable(e.to_string()),
                })
            }
        },
    };
    let (records, skipped, first_bad) = records_of(cfg, &values)?;
    let mut guard = store.lock_state(account.name(), wait)?;
    if offline_age.is_none() {
        cache::write(store, account, &values, now)?;
    }
    let Some(records) = records else {
        cache::remove(store, account.name())?;
        return Err(DirectoryError::BadMapping {
            skipped,
            first: first_bad.unwrap_or(mapping::MappingError::Shape),
        });
    };
    // Per host: the first login here starts the counter (trust on first use per host).
    let mut changed = false;
    for r in &records {
        if guard.state.get(&r.credential_id).is_none() {
            guard
                .state
                .put(CredentialState::new(r.credential_id.clone(), 0));
            changed = true;
        }
    }
    if changed {
        guard.commit()?;
    }
    drop(guard);
    Ok(Some((
        CredentialFile {
            uid: Some(account.uid()),
            credentials: records,
        },
        DirectoryNote {
            offline_age,
            skipped,
        },
    )))
}

type Parsed = (
    Option<Vec<CredentialRecord>>,
    usize,
    Option<mapping::MappingError>,
);

/// The usable records among `values` (`None` when there is none), how many values were
/// malformed, and the first reason.
fn records_of(cfg: &DirectoryConfig, values: &[String]) -> Result<Parsed, DirectoryError> {
    let rp = RpId::parse(&cfg.rp_id).map_err(|e| DirectoryError::Error(e.to_string()))?;
    let mut records: Vec<CredentialRecord> = Vec::new();
    let mut skipped = 0;
    let mut first = None;
    for v in values {
        match mapping::parse(v) {
            Ok(Some(m)) => {
                if !records.iter().any(|r| r.credential_id == m.credential_id) {
                    records.push(mapping::to_record(m, &rp, cfg.user_verification));
                }
            }
            Ok(None) => {}
            Err(e) => {
                skipped += 1;
                first.get_or_insert(e);
            }
        }
    }
    Ok(((!records.is_empty()).then_some(records), skipped, first))
}

/// One query in this process: the mapping values of `user`'s entry (`None`: no entry matches
/// the filter, the name escaped per RFC 4515). Only `ctap-directory-query` (and the tests
/// against a real slapd) link the LDAP client; login reaches it through [`load`], which runs
/// that program ([`query`]).
#[cfg(feature = "directory")]
pub fn fetch(cfg: &DirectoryConfig, user: &str) -> Result<Option<Vec<String>>, FetchError> {
    ldap::fetch(cfg, user)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg() -> DirectoryConfig {
        toml::from_str(
            "uri = \"ldapi://%2Frun%2Fslapd%2Fldapi\"\nbase_dn = \"dc=example,dc=org\"\nrp_id = \"example.org\"\n",
        )
        .unwrap()
    }

    #[test]
    fn defaults_and_validation() {
        let c = cfg();
        assert_eq!(c.attribute, Attribute::Passkey);
        assert_eq!(c.user_verification, UvRequirement::Required);
        assert_eq!(c.problem(30), None);
        assert!(c.problem(5).unwrap().contains("query_timeout"));
        let mut bad = cfg();
        bad.uri = "http://x".into();
        assert!(bad.problem(30).unwrap().contains("ldapi://"));
        let mut bad = cfg();
        bad.filter = "(uid=alice)".into();
        assert!(bad.problem(30).unwrap().contains("{user}"));
        let mut bad = cfg();
        bad.sasl_external = true;
        bad.uri = "ldaps://x".into();
        assert!(bad.problem(30).unwrap().contains("ldapi"));
        let mut bad = cfg();
        bad.bind_dn = Some("cn=x".into());
        assert!(bad.problem(30).unwrap().contains("go together"));
        let mut bad = cfg();
        bad.insecure_plaintext = true;
        assert!(bad.problem(30).is_some());
        assert!(toml::from_str::<DirectoryConfig>(
            "uri = \"ldap://x\"\nbase_dn = \"dc=x\"\nrp_id = \"x\"\nbogus = 1\n"
        )
        .is_err());
        let ad: DirectoryConfig = toml::from_str(
            "uri = \"ldaps://dc\"\nbase_dn = \"dc=x\"\nrp_id = \"x\"\nattribute = \"altSecurityIdentities\"\n",
        )
        .unwrap();
        assert_eq!(ad.attribute.name(), "altSecurityIdentities");
    }

    #[test]
    fn ca_file_is_absolute_and_for_tls_only() {
        let tls = |uri: &str, ca: &str| {
            let mut c = cfg();
            c.uri = uri.into();
            c.ca_file = Some(ca.into());
            c
        };
        assert_eq!(
            tls("ldaps://dc.example.org", "/etc/ctap/ca.pem").problem(30),
            None
        );
        assert_eq!(
            tls("ldap://dc.example.org", "/etc/ctap/ca.pem").problem(30),
            None
        );
        assert!(tls("ldaps://dc", "ca.pem")
            .problem(30)
            .unwrap()
            .contains("absolute"));
        assert!(tls("ldapi://%2Fx", "/etc/ctap/ca.pem")
            .problem(30)
            .unwrap()
            .contains("TLS only"));
        let mut plain = tls("ldap://dc", "/etc/ctap/ca.pem");
        plain.insecure_plaintext = true;
        assert!(plain.problem(30).unwrap().contains("TLS only"));
        // It travels to the query program with the rest of the section.
        let c: DirectoryConfig = toml::from_str(
            "uri = \"ldaps://dc\"\nbase_dn = \"dc=x\"\nrp_id = \"x\"\nca_file = \"/etc/ctap/ca.pem\"\n",
        )
        .unwrap();
        let back: DirectoryConfig = toml::from_str(&toml::to_string(&c).unwrap()).unwrap();
        assert_eq!(
            back.ca_file.as_deref(),
            Some(std::path::Path::new("/etc/ctap/ca.pem"))
        );
    }

    /// A self-signed P-256 CA certificate (openssl req -x509), for the parser only.
    const CA_PEM: &str = "\
-----BEGIN CERTIFICATE-----
MIIBjTCCATOgAwIBAgIUROyFyBk5JnX69i6xqwZz1xOM3NEwCgYIKoZIzj0EAwIw
HDEaMBgGA1UEAwwRY3RhcCB1bml0IHRlc3QgQ0EwHhcNMjYxMjAxMTc1ODE2WhcN
MzYxMTI4MTc1ODE2WjAcMRowGAYDVQQDDBFjdGFwIHVuaXQgdGVzdCBDQTBZMBMG
ByqGSM49AgEGCCqGSM49AwEHA0IABHtb8qTqTocKz3xEJ7cprZvmHNCShQr84LGs
2APUhV+UgsXttpZ/BIfIOt+TYUNOGkiQXCixot8caiC+0iRv0nujUzBRMB0GA1Ud
DgQWBBRTldZv5PMwpxND4C5znZ5mBAATWzAfBgNVHSMEGDAWgBRTldZv5PMwpxND
4C5znZ5mBAATWzAPBgNVHRMBAf8EBTADAQH/MAoGCCqGSM49BAMCA0gAMEUCIFBX
iowD1F3BJoqNrvJRwRAHTUT60nLwalr3xNyBMJY0AiEAkSCmr/ZdyXN1UpqGHTst
oJ2JAaw0zow4eqErIEed7KA=
-----END CERTIFICATE-----
";

    #[test]
    fn ca_pem_holds_one_or_more_certificates_and_nothing_else() {
        let one = parse_ca_pem(CA_PEM.as_bytes()).unwrap();
        assert_eq!(one.len(), 1);
        assert_eq!(one[0][0], 0x30, "DER");
        // Text around the blocks (openssl x509 -text, a bundle's comments) is ignored.
        let two = format!("# our CAs\nsubject=CN = a\n{CA_PEM}\n\n{CA_PEM}trailing words\n");
        assert_eq!(parse_ca_pem(two.as_bytes()).unwrap().len(), 2);
        for (bad, why) in [
            ("".to_string(), "no certificate"),
            ("hello\n".to_string(), "no certificate"),
            (
                CA_PEM.replace("-----END CERTIFICATE-----", ""),
                "no -----END",
            ),
            (CA_PEM.replace("MIIB", "MIIC"), "not valid"),
            (
                CA_PEM.replace("CERTIFICATE", "PRIVATE KEY"),
                "no certificate",
            ),
        ] {
            let e = parse_ca_pem(bad.as_bytes()).unwrap_err();
            assert!(e.contains(why), "{bad:?}: {e}");
        }
        assert!(parse_ca_pem(&[0xff, 0xfe])
            .unwrap_err()
            .contains("not text"));
    }

    #[test]
    fn malformed_values_never_make_records() {
        let (records, skipped, first) =
            records_of(&cfg(), &["passkey:AAAA,AAAA".into(), "junk".into()]).unwrap();
        assert!(records.is_none());
        assert_eq!(skipped, 2);
        assert!(first.is_some());
    }
}
