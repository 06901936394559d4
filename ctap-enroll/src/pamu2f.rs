//! Migrating from pam-u2f: its authfiles become our records (`ctap-enroll import-pam-u2f`).
//!
//! pam-u2f's documented mapping format (README "Authorization Mapping Files", pamu2fcfg(1)) is
//! one line per user:
//!
//! ```text
//! <user>:<KeyHandle1>,<UserKey1>,<CoseType1>,<Options1>:<KeyHandle2>,<UserKey2>,...
//! ```
//!
//! - current format (pamu2fcfg 1.1 and later): key handle and public key in standard base64;
//!   COSE type `es256`, `eddsa` or `rs256` (case-insensitive); options a concatenation of
//!   `+presence`, `+verification`, `+pin` (possibly empty). An es256 public key is the 64-byte
//!   x||y that libfido2 prints (a 65-byte uncompressed point is accepted too); eddsa is 32 bytes.
//!   A key handle of `*` marks a resident credential, which the file does not identify.
//! - old format (pamu2fcfg 1.0.8 and earlier, U2F registrations): `<KeyHandle>,<UserKey>` only,
//!   key handle in web-safe base64, public key as hex of the 65-byte uncompressed P-256 point;
//!   es256 and `+presence` implied; the relying party is pam-u2f's `appid`, which defaults to its
//!   `origin`.
//! - pam-u2f reads only the *last* line of a user; earlier lines for the same user are dead and
//!   are reported, not imported.
//!
//! pam-u2f's default origin is `pam://$HOSTNAME`, which is also our default RP ID, so imported
//! credentials keep working on the same machine. pam-u2f does not use hmac-secret, so an imported
//! credential has `hmac_secret = false` and starts with a state entry at counter 0: login checks
//! its signature, flags and counter, but not an hmac-secret. Re-enrolling with `ctap-enroll
//! enroll` adds that check. An old-format line is recorded as `protocol = "u2f"`: it logs in
//! through CTAP1 on a U2F-only key. Not imported, with a message: rs256 keys (we verify es256 and eddsa
//! only), resident credentials (`*`) and OpenSSH-format files (pam-u2f's `sshformat`).

use std::collections::BTreeMap;

use base64::engine::general_purpose::{GeneralPurpose, GeneralPurposeConfig};
use base64::engine::DecodePaddingMode;
use base64::Engine;

use ctap_core::store::account::{Account, UserResolver};
use ctap_core::store::credential::{
    CredentialRecord, CredentialState, CredentialStore, StoreError, UvRequirement,
};
use ctap_core::store::credential::{EnrolledKey, Protocol, RpId};
use ctap_core::transport::ctap2::cose::{Algorithm, CoseKey, ALG_ES256};

const INDIFFERENT: GeneralPurposeConfig =
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent);
const STANDARD: GeneralPurpose = GeneralPurpose::new(&base64::alphabet::STANDARD, INDIFFERENT);
const WEBSAFE: GeneralPurpose = GeneralPurpose::new(&base64::alphabet::URL_SAFE, INDIFFERENT);

/// One credential read from an authfile.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthfileCredential {
    /// 1-based line number.
    pub line: usize,
    /// 1-based position among the line's credentials.
    pub position: usize,
    pub user: String,
    pub credential_id: Vec<u8>,
    pub public_key: CoseKey,
    pub user_verification: UvRequirement,
    /// `+presence` was given (pam-u2f then asks for a touch; we always do).
    pub presence: bool,
    /// The pre-1.1 format, whose relying party is pam-u2f's appid.
    pub old_format: bool,
}

/// Something in the file that was not imported, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Skipped {
    pub line: usize,
    /// The credential's position on the line, when the problem is one credential.
    pub position: Option<usize>,
    pub user: Option<String>,
    pub reason: String,
}

/// A parsed authfile: what can be imported, and what cannot.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Authfile {
    pub credentials: Vec<AuthfileCredential>,
    pub skipped: Vec<Skipped>,
}

/// Parse an authfile. Never fails as a whole: each problem is a [`Skipped`] entry.
pub fn parse(text: &str) -> Authfile {
    let mut out = Authfile::default();
    if text
        .trim_start()
        .starts_with("-----BEGIN OPENSSH PRIVATE KEY-----")
    {
        out.skipped.push(Skipped {
            line: 1,
            position: None,
            user: None,
            reason: "an OpenSSH sk key file (pam-u2f's sshformat) cannot be imported: enroll the key with `ctap-enroll enroll`".into(),
        });
        return out;
    }
    for (i, raw) in text.lines().enumerate() {
        let line = i + 1;
        let content = raw.trim();
        if content.is_empty() || content.starts_with('#') {
            continue;
        }
        parse_line(line, content, &mut out);
    }
    drop_superseded(&mut out);
    drop_duplicates(&mut out);
    out.skipped
        .sort_by_key(|s| (s.line, s.position.unwrap_or(0)));
    out
}

/// pam-u2f compares the field with the name PAM was given, whatever its spelling; the import
/// resolves it through NSS. Here only what cannot be a name at all is refused.
fn plausible_user_name(user: &str) -> bool {
    !user.is_empty() && !user.chars().any(|c| c.is_control() || c.is_whitespace())
}

fn parse_line(line: usize, content: &str, out: &mut Authfile) {
    let mut fields = content.split(':');
    let user = fields.next().unwrap_or_default();
    let skip = |position, reason: String| Skipped {
        line,
        position,
        user: plausible_user_name(user).then(|| user.to_string()),
        reason,
    };
    if !plausible_user_name(user) {
        out.skipped.push(skip(
            None,
            format!("{user:?} is not a valid user name (expected user:keyhandle,publickey,type,options)"),
        ));
        return;
    }
    // pam-u2f tokenizes with strtok, which skips empty fields.
    let creds: Vec<&str> = fields.filter(|f| !f.is_empty()).collect();
    if creds.is_empty() {
        out.skipped
            .push(skip(None, "no credentials after the user name".into()));
        return;
    }
    for (j, cred) in creds.iter().enumerate() {
        let position = j + 1;
        match parse_credential(cred) {
            Ok(parsed) => out.credentials.push(AuthfileCredential {
                line,
                position,
                user: user.to_string(),
                credential_id: parsed.credential_id,
                public_key: parsed.public_key,
                user_verification: parsed.user_verification,
                presence: parsed.presence,
                old_format: parsed.old_format,
            }),
            Err(reason) => out.skipped.push(skip(Some(position), reason)),
        }
    }
}

struct ParsedCredential {
    credential_id: Vec<u8>,
    public_key: CoseKey,
    user_verification: UvRequirement,
    presence: bool,
    old_format: bool,
}

fn parse_credential(s: &str) -> Result<ParsedCredential, String> {
    let parts: Vec<&str> = s.split(',').collect();
    let (kh, pk, cose_type, options, old_format) = match parts.as_slice() {
        [kh, pk] => (*kh, *pk, "es256", "+presence", true),
        [kh, pk, t] => (*kh, *pk, *t, "", false),
        [kh, pk, t, o] => (*kh, *pk, *t, *o, false),
        [_] => return Err("missing public key (expected keyhandle,publickey,type,options)".into()),
        _ => {
            return Err(format!(
                "{} comma-separated fields; expected keyhandle,publickey,type,options",
                parts.len()
            ))
        }
    };
    if kh == "*" {
        return Err(
            "resident credential (key handle \"*\"): the file does not identify it; enroll the key with `ctap-enroll enroll`".into(),
        );
    }
    if kh.is_empty() {
        return Err("empty key handle".into());
    }
    let credential_id = if old_format {
        WEBSAFE.decode(kh)
    } else {
        STANDARD.decode(kh)
    }
    .map_err(|e| format!("key handle is not valid base64: {e}"))?;
    if credential_id.is_empty() {
        return Err("empty key handle".into());
    }
    let algorithm = match cose_type.to_ascii_lowercase().as_str() {
        "es256" => Algorithm::Es256,
        "eddsa" => Algorithm::EdDsa,
        "rs256" => {
            return Err(
                "rs256 keys are not supported (es256 and eddsa only): enroll the key again with `ctap-enroll enroll`".into(),
            )
        }
        other => return Err(format!("unknown COSE type {other:?} (expected es256 or eddsa)")),
    };
    let key_bytes = if old_format {
        decode_hex(pk).ok_or("public key is not valid hex (old format)")?
    } else {
        STANDARD
            .decode(pk)
            .map_err(|e| format!("public key is not valid base64: {e}"))?
    };
    let public_key = public_key(algorithm, &key_bytes)?;
    let uv = options.contains("+verification") || options.contains("+pin");
    Ok(ParsedCredential {
        credential_id,
        public_key,
        user_verification: if uv {
            UvRequirement::Required
        } else {
            UvRequirement::Discouraged
        },
        presence: options.contains("+presence"),
        old_format,
    })
}

fn public_key(algorithm: Algorithm, bytes: &[u8]) -> Result<CoseKey, String> {
    let key = match algorithm {
        Algorithm::Es256 => {
            let xy = match bytes {
                [0x04, rest @ ..] if rest.len() == 64 => rest,
                _ if bytes.len() == 64 => bytes,
                _ => {
                    return Err(format!(
                    "es256 public key is {} bytes; expected 64 (x||y) or 65 (uncompressed point)",
                    bytes.len()
                ))
                }
            };
            let (x, y) = xy.split_at(32);
            CoseKey::Es256 {
                x: x.try_into().map_err(|_| "bad x coordinate")?,
                y: y.try_into().map_err(|_| "bad y coordinate")?,
                alg: ALG_ES256,
            }
        }
        Algorithm::EdDsa => CoseKey::EdDsa {
            x: bytes
                .try_into()
                .map_err(|_| format!("eddsa public key is {} bytes; expected 32", bytes.len()))?,
        },
    };
    // Round-trip through the strict parser: points off the curve and bad Ed25519 keys fail here.
    CoseKey::from_bytes(&key.to_bytes()).map_err(|e| format!("public key is invalid: {e}"))
}

fn decode_hex(s: &str) -> Option<Vec<u8>> {
    if s.len() % 2 != 0 || !s.is_ascii() {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).ok())
        .collect()
}

/// pam-u2f uses only the last line of each user.
fn drop_superseded(out: &mut Authfile) {
    let mut last_line: BTreeMap<String, usize> = BTreeMap::new();
    for c in &out.credentials {
        let e = last_line.entry(c.user.clone()).or_insert(c.line);
        *e = (*e).max(c.line);
    }
    for s in &out.skipped {
        if let Some(u) = &s.user {
            let e = last_line.entry(u.clone()).or_insert(s.line);
            *e = (*e).max(s.line);
        }
    }
    let (keep, dead): (Vec<_>, Vec<_>) = std::mem::take(&mut out.credentials)
        .into_iter()
        .partition(|c| last_line.get(&c.user) == Some(&c.line));
    out.credentials = keep;
    for c in dead {
        let last = last_line.get(&c.user).copied().unwrap_or(c.line);
        out.skipped.push(Skipped {
            line: c.line,
            position: Some(c.position),
            user: Some(c.user.clone()),
            reason: format!(
                "superseded by line {last}: pam-u2f reads only the last line of user {}",
                c.user
            ),
        });
    }
}

fn drop_duplicates(out: &mut Authfile) {
    let mut seen: Vec<(Vec<u8>, usize)> = Vec::new();
    let mut keep = Vec::new();
    for c in std::mem::take(&mut out.credentials) {
        if let Some((_, first)) = seen.iter().find(|(id, _)| *id == c.credential_id) {
            out.skipped.push(Skipped {
                line: c.line,
                position: Some(c.position),
                user: Some(c.user.clone()),
                reason: format!("the same key handle already appears on line {first}"),
            });
        } else {
            seen.push((c.credential_id.clone(), c.line));
            keep.push(c);
        }
    }
    out.credentials = keep;
}

/// Where imported credentials point.
#[derive(Debug, Clone)]
pub struct ImportOptions {
    pub rp_id: String,
    pub appid: String,
    /// `--user`: import only this account's line (resolved through NSS like the lines).
    pub only_user: Option<Account>,
    /// The uid owning the authfile (from [`ctap_core::store::fs::read_trusted_any_owner`]). pam-u2f only
    /// ever used the authenticating user's own line of a home-directory authfile, so a file not
    /// owned by root vouches for its owner alone: every other user's line is refused.
    pub file_owner: u32,
}

#[derive(Debug, Clone)]
pub struct Imported {
    pub line: usize,
    pub position: usize,
    pub user: String,
    pub record: CredentialRecord,
    pub notes: Vec<String>,
}

#[derive(Debug, Clone, Default)]
pub struct ImportReport {
    pub imported: Vec<Imported>,
    pub skipped: Vec<Skipped>,
}

/// Import `file` into root's records. Each line's user is resolved through `resolver` and the
/// credentials are recorded under the canonical account name (with its uid); a line naming a
/// user the name service does not know, or (for a file not owned by root) anyone but the file's
/// owner, is skipped with its reason.
pub fn import(
    store: &CredentialStore,
    resolver: &dyn UserResolver,
    file: Authfile,
    opts: &ImportOptions,
) -> ImportReport {
    let mut report = ImportReport {
        imported: Vec::new(),
        skipped: file.skipped,
    };
    let mut by_user: BTreeMap<String, (Account, Vec<AuthfileCredential>)> = BTreeMap::new();
    for c in file.credentials {
        let skip = |reason: String| Skipped {
            line: c.line,
            position: Some(c.position),
            user: Some(c.user.clone()),
            reason,
        };
        let account = match resolver.by_name(&c.user) {
            Ok(Some(a)) => a,
            Ok(None) => {
                report.skipped.push(skip(format!(
                    "{:?} is not a user the password database (NSS) knows",
                    c.user
                )));
                continue;
            }
            Err(e) => {
                report.skipped.push(skip(e.to_string()));
                continue;
            }
        };
        if opts.file_owner != 0 && account.uid() != opts.file_owner {
            report.skipped.push(skip(format!(
                "the file is owned by uid {}, not root: it may only hold its owner's keys, not {}'s (uid {})",
                opts.file_owner,
                account.name(),
                account.uid()
            )));
            continue;
        }
        match &opts.only_user {
            Some(u) if u.name() != account.name() => report.skipped.push(skip(format!(
                "belongs to user {}, and --user {} was given",
                account.name(),
                u.name()
            ))),
            Some(_) | None => by_user
                .entry(account.name().to_string())
                .or_insert_with(|| (account.clone(), Vec::new()))
                .1
                .push(c),
        }
    }
    for (user, (account, creds)) in by_user {
        if let Err(e) = import_user(store, &account, &creds, opts, &mut report) {
            for c in &creds {
                report.skipped.push(Skipped {
                    line: c.line,
                    position: Some(c.position),
                    user: Some(user.clone()),
                    reason: format!("not written: {e}"),
                });
            }
        }
    }
    report
        .skipped
        .sort_by_key(|s| (s.line, s.position.unwrap_or(0)));
    report.imported.sort_by_key(|i| (i.line, i.position));
    report
}

fn import_user(
    store: &CredentialStore,
    account: &Account,
    creds: &[AuthfileCredential],
    opts: &ImportOptions,
    report: &mut ImportReport,
) -> Result<(), StoreError> {
    let user = account.name();
    let mut guard = store.lock_state(user, ctap_core::store::admin::EDIT_LOCK_WAIT)?;
    let mut records = store.load_system_records(user)?;
    let mut added = Vec::new();
    for c in creds {
        if let Some(existing) = records
            .credentials
            .iter()
            .find(|r| r.credential_id == c.credential_id)
        {
            report.skipped.push(Skipped {
                line: c.line,
                position: Some(c.position),
                user: Some(user.to_string()),
                reason: format!("already enrolled for {user} as {:?}", existing.name),
            });
            continue;
        }
        let name = (1..)
            .map(|n| format!("pam-u2f-{n}"))
            .find(|n| !records.credentials.iter().any(|r| &r.name == n))
            .unwrap_or_else(|| format!("pam-u2f-line{}-{}", c.line, c.position));
        let rp_id = RpId::parse(if c.old_format {
            &opts.appid
        } else {
            &opts.rp_id
        });
        let (rp_id, public_key) = match (rp_id, EnrolledKey::new(c.public_key.clone())) {
            (Ok(rp), Ok(key)) => (rp, key),
            (Err(e), _) => {
                report.skipped.push(Skipped {
                    line: c.line,
                    position: Some(c.position),
                    user: Some(user.to_string()),
                    reason: format!("{e}: give another --rp-id or --appid"),
                });
                continue;
            }
            (_, Err(e)) => {
                report.skipped.push(Skipped {
                    line: c.line,
                    position: Some(c.position),
                    user: Some(user.to_string()),
                    reason: e.to_string(),
                });
                continue;
            }
        };
        let record = CredentialRecord {
            name,
            credential_id: c.credential_id.clone(),
            rp_id,
            public_key,
            aaguid: String::new(),
            user_verification: c.user_verification,
            hmac_secret: false,
            created: ctap_core::store::credential::now_rfc3339(),
            no_touch_required: false,
            // An old-format line is a U2F registration: it logs in through CTAP1 on a
            // U2F-only key (and through CTAP2 on a FIDO2 key, which accepts U2F key handles).
            protocol: if c.old_format {
                Protocol::U2f
            } else {
                Protocol::Fido2
            },
        };
        let mut notes = vec!["no hmac-secret check (pam-u2f credentials have none): re-enroll with `ctap-enroll enroll` to add one".to_string()];
        if !c.presence {
            notes.push(
                "pam-u2f allowed it without a touch (no +presence); login here always asks for one"
                    .into(),
            );
        }
        if c.old_format {
            notes.push(format!(
                "old (U2F) format: RP ID is the appid {}",
                opts.appid
            ));
        }
        if guard.state.get(&c.credential_id).is_none() {
            guard
                .state
                .put(CredentialState::new(c.credential_id.clone(), 0));
        }
        records.credentials.push(record.clone());
        added.push(Imported {
            line: c.line,
            position: c.position,
            user: user.to_string(),
            record,
            notes,
        });
    }
    if added.is_empty() {
        return Ok(());
    }
    guard.commit()?;
    store.save_system_records(account, &records)?;
    report.imported.extend(added);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn es256_key() -> (Vec<u8>, CoseKey) {
        let sk = p256::SecretKey::from_slice(&[7u8; 32]).unwrap();
        let pt =
            p256::elliptic_curve::sec1::ToEncodedPoint::to_encoded_point(&sk.public_key(), false);
        let raw = pt.as_bytes().to_vec();
        let key = CoseKey::Es256 {
            x: raw[1..33].try_into().unwrap(),
            y: raw[33..].try_into().unwrap(),
            alg: ALG_ES256,
        };
        (raw, key)
    }

    #[test]
    fn current_old_and_eddsa_formats_parse() {
        let (raw, key) = es256_key();
        let ed = ed25519_dalek::SigningKey::from_bytes(&[9u8; 32]).verifying_key();
        let text = format!(
            "alice:{},{},es256,+presence+pin:{},{},EdDSA,\nbob:{},{}\n",
            STANDARD.encode([1u8; 48]),
            STANDARD.encode(&raw[1..]),
            STANDARD.encode([2u8; 40]),
            STANDARD.encode(ed.as_bytes()),
            WEBSAFE.encode([0xfbu8; 64]),
            raw.iter().map(|b| format!("{b:02x}")).collect::<String>(),
        );
        let f = parse(&text);
        assert!(f.skipped.is_empty(), "{:?}", f.skipped);
        assert_eq!(f.credentials.len(), 3);
        let a = &f.credentials[0];
        assert_eq!((a.user.as_str(), a.line, a.position), ("alice", 1, 1));
        assert_eq!(a.public_key, key);
        assert_eq!(a.user_verification, UvRequirement::Required);
        assert!(a.presence && !a.old_format);
        let e = &f.credentials[1];
        assert_eq!(e.public_key.algorithm(), Some(Algorithm::EdDsa));
        assert_eq!(e.user_verification, UvRequirement::Discouraged);
        assert!(!e.presence);
        let b = &f.credentials[2];
        assert!(b.old_format && b.presence);
        assert_eq!(b.credential_id, vec![0xfb; 64]);
        assert_eq!(b.public_key, key);
    }

    #[test]
    fn malformed_lines_are_reported_with_their_reason() {
        let (raw, _) = es256_key();
        let pk = STANDARD.encode(&raw[1..]);
        let text = format!(
            "carol\n\
             dave:*,{pk},es256,+presence\n\
             erin:AAAA,{pk},rs256,+presence\n\
             frank:!!!,{pk},es256,\n\
             grace:AAAA,AAAA,es256,\n\
             heidi:AAAA\n\
             ivan:AAAA,{pk},es999,\n\
             x\ty:AAAA,{pk},es256,\n\
             # a comment\n\
             judy:AAAA,{pk},es256,:BBBB,{pk},es256,\n\
             judy:CCCC,{pk},es256,\n"
        );
        let f = parse(&text);
        let reasons: Vec<(usize, String)> = f
            .skipped
            .iter()
            .map(|s| (s.line, s.reason.clone()))
            .collect();
        let has = |line: usize, what: &str| {
            assert!(
                reasons.iter().any(|(l, r)| *l == line && r.contains(what)),
                "line {line} should say {what:?}: {reasons:?}"
            )
        };
        has(1, "no credentials");
        has(2, "resident");
        has(3, "rs256");
        has(4, "not valid base64");
        has(5, "es256 public key is 3 bytes");
        has(6, "missing public key");
        has(7, "unknown COSE type");
        has(8, "not a valid user name");
        has(10, "superseded by line 11");
        assert_eq!(f.credentials.len(), 1);
        assert_eq!(f.credentials[0].line, 11);
    }

    #[test]
    fn off_curve_keys_duplicates_and_ssh_files_are_refused() {
        let f = parse(&format!(
            "alice:AAAA,{},es256,\n",
            STANDARD.encode([1u8; 64])
        ));
        assert!(f.skipped[0].reason.contains("invalid"), "{:?}", f.skipped);
        let (raw, _) = es256_key();
        let pk = STANDARD.encode(&raw[1..]);
        let f = parse(&format!("alice:AAAA,{pk},es256,\nbob:AAAA,{pk},es256,\n"));
        assert_eq!(f.credentials.len(), 1);
        assert!(f.skipped[0].reason.contains("already appears on line 1"));
        let f =
            parse("-----BEGIN OPENSSH PRIVATE KEY-----\nb3Bl\n-----END OPENSSH PRIVATE KEY-----\n");
        assert!(f.skipped[0].reason.contains("sshformat"));
    }
}
