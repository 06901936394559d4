//! The LDAP search, with ldap3's sync API (BER, StartTLS and TLS are the crate's).

use std::collections::HashSet;
use std::path::Path;
use std::time::Duration;

use ldap3::{LdapConn, LdapConnSettings, LdapError, Mod, Scope, SearchEntry};
use native_tls::{Certificate, TlsConnector};
use zeroize::Zeroizing;

use super::query::AddMapping;
use super::{filter, Bind, DirectoryConfig, FetchError};
use crate::store::fs::{self, Ownership};

/// The mapping values of `user`'s entry (`None`: no entry matches the filter).
pub(super) fn fetch(cfg: &DirectoryConfig, user: &str) -> Result<Option<Vec<String>>, FetchError> {
    let timeout = Duration::from_secs(cfg.query_timeout);
    let mut conn = connect(cfg, timeout)?;
    let outcome = query(&mut conn, cfg, user, timeout);
    let _ = conn.unbind();
    outcome
}

/// The connection, TLS established (`ldaps://`, or StartTLS on `ldap://` unless
/// `insecure_plaintext`): the server's certificate must chain to `ca_file`'s CAs when it is set,
/// to the system's trust store otherwise, and name the URI's host (native-tls always checks
/// the name; nothing here turns that off).
fn connect(cfg: &DirectoryConfig, timeout: Duration) -> Result<LdapConn, FetchError> {
    let mut settings = LdapConnSettings::new()
        .set_conn_timeout(timeout)
        .set_starttls(cfg.uri.starts_with("ldap://") && !cfg.insecure_plaintext);
    if let Some(path) = &cfg.ca_file {
        settings = settings.set_connector(pinned_connector(path)?);
    }
    LdapConn::with_settings(settings, &cfg.uri).map_err(classify)
}

/// A TLS connector that trusts `ca_file`'s certificates and nothing else. Any problem with the
/// file is an error: never a fallback to the system's store.
fn pinned_connector(path: &Path) -> Result<TlsConnector, FetchError> {
    let certs = super::read_ca_file(path).map_err(|e| FetchError::Error(e.to_string()))?;
    let mut builder = TlsConnector::builder();
    builder.disable_built_in_roots(true);
    for (i, der) in certs.iter().enumerate() {
        let cert = Certificate::from_der(der).map_err(|e| {
            FetchError::Error(format!(
                "ca_file: {}: certificate {}: {e}",
                path.display(),
                i + 1
            ))
        })?;
        builder.add_root_certificate(cert);
    }
    builder
        .build()
        .map_err(|e| FetchError::Error(format!("ca_file: {}: {e}", path.display())))
}

fn query(
    conn: &mut LdapConn,
    cfg: &DirectoryConfig,
    user: &str,
    timeout: Duration,
) -> Result<Option<Vec<String>>, FetchError> {
    bind(conn, cfg.bind()?, timeout)?;
    let filter = filter::for_user(&cfg.filter, user);
    let attribute = cfg.attribute.name();
    let (entries, _) = conn
        .with_timeout(timeout)
        .search(&cfg.base_dn, Scope::Subtree, &filter, vec![attribute])
        .map_err(classify)?
        .success()
        .map_err(classify)?;
    match entries.len() {
        0 => Ok(None),
        1 => {
            let mut values = Vec::new();
            for entry in entries {
                let entry = SearchEntry::construct(entry);
                for (name, vals) in entry.attrs {
                    if name.eq_ignore_ascii_case(attribute) {
                        values.extend(vals);
                    }
                }
                // A value that is not UTF-8 arrives here, not in `attrs`: it is a malformed
                // mapping, counted as such.
                for (name, vals) in entry.bin_attrs {
                    if name.eq_ignore_ascii_case(attribute) {
                        values.extend(vals.iter().map(|_| String::from("\u{fffd}")));
                    }
                }
            }
            Ok(Some(values))
        }
        n => Err(FetchError::Error(format!(
            "{n} entries match the filter for this user: the filter must name one entry"
        ))),
    }
}

fn bind(conn: &mut LdapConn, how: Bind, timeout: Duration) -> Result<(), FetchError> {
    match how {
        Bind::Anonymous => {}
        Bind::SaslExternal => {
            conn.with_timeout(timeout)
                .sasl_external_bind()
                .map_err(classify)?
                .success()
                .map_err(classify)?;
        }
        Bind::Simple {
            dn,
            password_file,
            label,
        } => {
            let bytes = Zeroizing::new(
                fs::read_private(&password_file, Ownership::ROOT)
                    .map_err(|e| FetchError::Error(format!("{label}: {e}")))?,
            );
            let text = std::str::from_utf8(&bytes).map_err(|_| {
                FetchError::Error(format!("{label}: {} is not UTF-8", password_file.display()))
            })?;
            let password = Zeroizing::new(text.trim_end_matches(['\n', '\r']).to_owned());
            conn.with_timeout(timeout)
                .simple_bind(&dn, &password)
                .map_err(classify)?
                .success()
                .map_err(classify)?;
        }
    }
    Ok(())
}

/// Add `change.value` to the mapping attribute of `change.dn` (`ctap-enroll enroll --directory
/// --write`), bound as `change`'s admin DN or as `[directory]` binds. A value already there is
/// success: enrolling twice leaves one value.
pub(super) fn add_mapping(cfg: &DirectoryConfig, change: &AddMapping) -> Result<(), FetchError> {
    let timeout = Duration::from_secs(cfg.query_timeout);
    let mut conn = connect(cfg, timeout)?;
    let how = match (&change.bind_dn, &change.bind_password_file) {
        (Some(dn), Some(file)) => Bind::Simple {
            dn: dn.clone(),
            password_file: file.clone(),
            label: "--admin-password-file",
        },
        (None, None) => cfg.bind()?,
        _ => {
            return Err(FetchError::Error(
                "an admin bind DN needs its password file, and the other way round".into(),
            ))
        }
    };
    let outcome = bind(&mut conn, how, timeout).and_then(|()| {
        let attribute = cfg.attribute.name();
        let values = HashSet::from([change.value.as_str()]);
        let result = conn
            .with_timeout(timeout)
            .modify(&change.dn, vec![Mod::Add(attribute, values)])
            .map_err(classify)?;
        match result.rc {
            0 | ATTRIBUTE_OR_VALUE_EXISTS => Ok(()),
            _ => Err(FetchError::Error(format!(
                "modifying {}: {}",
                change.dn,
                LdapError::from(result)
            ))),
        }
    });
    let _ = conn.unbind();
    outcome
}

/// RFC 4511 resultCode attributeOrValueExists.
const ATTRIBUTE_OR_VALUE_EXISTS: u32 = 20;

/// Transport failures and timeouts are an unreachable directory (the offline cache may
/// answer); an answer that is an error (bind refused, no such base) is the directory's error.
/// So is a TLS failure: a certificate that does not verify is a server that answered and is
/// not the directory (or a misconfiguration), never a reason to use the offline copy, which
/// would let whoever can cut the connection choose the outcome. A bad URI is an error too.
fn classify(e: LdapError) -> FetchError {
    match e {
        LdapError::Io { .. }
        | LdapError::Timeout { .. }
        | LdapError::EndOfStream
        | LdapError::OpSend { .. }
        | LdapError::ResultRecv { .. } => FetchError::Unreachable(e.to_string()),
        LdapError::NativeTLS { source } => FetchError::Error(format!(
            "TLS: {source}: the server's certificate must chain to ca_file's CAs (or the \
             system's, without ca_file) and name the host in uri"
        )),
        other => FetchError::Error(other.to_string()),
    }
}
