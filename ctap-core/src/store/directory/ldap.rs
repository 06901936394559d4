//! The LDAP search, with ldap3's sync API (BER, StartTLS and TLS are the crate's).

use std::time::Duration;

use ldap3::{LdapConn, LdapConnSettings, LdapError, Scope, SearchEntry};
use zeroize::Zeroizing;

use super::{filter, Bind, DirectoryConfig, FetchError};
use crate::store::fs::{self, Ownership};

/// The mapping values of `user`'s entry (`None`: no entry matches the filter).
pub(super) fn fetch(cfg: &DirectoryConfig, user: &str) -> Result<Option<Vec<String>>, FetchError> {
    let timeout = Duration::from_secs(cfg.query_timeout);
    let settings = LdapConnSettings::new()
        .set_conn_timeout(timeout)
        .set_starttls(cfg.uri.starts_with("ldap://") && !cfg.insecure_plaintext);
    let mut conn = LdapConn::with_settings(settings, &cfg.uri).map_err(unreachable)?;
    let outcome = query(&mut conn, cfg, user, timeout);
    let _ = conn.unbind();
    outcome
}

fn query(
    conn: &mut LdapConn,
    cfg: &DirectoryConfig,
    user: &str,
    timeout: Duration,
) -> Result<Option<Vec<String>>, FetchError> {
    match cfg.bind()? {
        Bind::Anonymous => {}
        Bind::SaslExternal => {
            conn.with_timeout(timeout)
                .sasl_external_bind()
                .map_err(classify)?
                .success()
                .map_err(classify)?;
        }
        Bind::Simple { dn, password_file } => {
            let bytes = Zeroizing::new(
                fs::read_private(&password_file, Ownership::ROOT)
                    .map_err(|e| FetchError::Error(format!("bind_password_file: {e}")))?,
            );
            let text = std::str::from_utf8(&bytes)
                .map_err(|_| FetchError::Error("bind_password_file is not UTF-8".into()))?;
            let password = text.trim_end_matches(['\n', '\r']);
            conn.with_timeout(timeout)
                .simple_bind(&dn, password)
                .map_err(classify)?
                .success()
                .map_err(classify)?;
        }
    }
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

fn unreachable(e: LdapError) -> FetchError {
    FetchError::Unreachable(e.to_string())
}

/// Transport failures and timeouts are an unreachable directory (the offline cache may
/// answer); an answer that is an error (bind refused, no such base) is the directory's error.
fn classify(e: LdapError) -> FetchError {
    match e {
        LdapError::Io { .. }
        | LdapError::Timeout { .. }
        | LdapError::EndOfStream
        | LdapError::OpSend { .. }
        | LdapError::ResultRecv { .. } => FetchError::Unreachable(e.to_string()),
        other => FetchError::Error(other.to_string()),
    }
}
