//! The directory side (issue 15): `export-sssd`, `import-sssd`, and the LDIF `enroll
//! --directory` prints. The mapping format is SSSD's and FreeIPA's:
//! `passkey:<base64 credential id>,<base64 DER SubjectPublicKeyInfo>`.

use ctap_core::store::account::Account;
use ctap_core::store::config::Policy;
use ctap_core::store::credential::{CredentialRecord, CredentialState, EnrolledKey, RpId};
use ctap_core::store::directory::query::{self, AddMapping};
use ctap_core::store::directory::{mapping, DirectoryConfig, FetchError};
use ctap_core::store::fs::{read_private, read_trusted_any_owner, Ownership};
use ctap_core::text::printable;
use zeroize::Zeroizing;

use super::{account_named, say, user_of, Context};
use crate::cli::{EnrollArgs, ExportSssdArgs, ImportSssdArgs};
use crate::pamu2f;
use crate::{Exit, Failure};

fn mapping_of(r: &CredentialRecord) -> Result<String, Failure> {
    mapping::format(&r.credential_id, r.public_key.cose()).map_err(|e| {
        Failure::new(
            Exit::Failed,
            format!("credential {:?}: {e}", r.name),
            "re-enroll the key",
        )
    })
}

/// Where `enroll --directory` puts a credential's mapping: root's `[directory]` and the user's
/// entry. Made once, before the key is touched ([`mapping_target`]).
pub struct MappingTarget<'a> {
    dir: &'a DirectoryConfig,
    dn: String,
}

/// The target of `enroll --directory` (default entry `uid=USER,<base_dn>`), checked before the
/// key is touched: a `[directory]` section, and for `--write` an admin password file login
/// would trust (root-owned, 0600, in root-owned directories), so a mistake costs no touch.
pub fn mapping_target<'a>(
    policy: &'a Policy,
    account: &Account,
    args: &EnrollArgs,
) -> Result<MappingTarget<'a>, Failure> {
    let Some(dir) = &policy.directory else {
        return Err(Failure::new(
            Exit::Usage,
            "--directory needs a [directory] section in the configuration",
            "add [directory] to pam_ctap.toml (see pam_ctap.toml(5))",
        ));
    };
    if let Some(file) = &args.admin_password_file {
        let contents = read_private(file, Ownership::ROOT).map_err(|e| {
            Failure::new(
                Exit::Usage,
                format!("--admin-password-file: {e}"),
                "keep the password in a root-owned file only root can read (chmod 600)",
            )
        })?;
        drop(Zeroizing::new(contents));
    }
    let dn = args
        .dn
        .clone()
        .unwrap_or_else(|| format!("uid={},{}", account.name(), dir.base_dn));
    Ok(MappingTarget { dir, dn })
}

impl MappingTarget<'_> {
    /// The LDIF that adds `r`'s mapping to the entry.
    pub fn ldif(&self, r: &CredentialRecord) -> Result<String, Failure> {
        let attribute = self.dir.attribute.name();
        Ok(format!(
            "# Apply with: ldapmodify -f FILE (the entry needs the attribute's object class:\n\
             # passkeyUser for SSSD's schema, ipaPasskeyUser for FreeIPA)\n\
             dn: {}\nchangetype: modify\nadd: {attribute}\n{attribute}: {}\n-\n",
            self.dn,
            mapping_of(r)?
        ))
    }

    /// `--write`: add `r`'s mapping to the entry through `ctap-directory-query` (the one
    /// program that links the LDAP client). The key is enrolled locally already; if the
    /// directory refuses, the failure carries the LDIF to apply by hand.
    pub fn write(
        &self,
        account: &Account,
        args: &EnrollArgs,
        r: &CredentialRecord,
    ) -> Result<(), Failure> {
        let dn = &self.dn;
        let change = AddMapping {
            dn: dn.clone(),
            value: mapping_of(r)?,
            bind_dn: args.admin_dn.clone(),
            bind_password_file: args.admin_password_file.clone(),
        };
        say(format!("Adding the mapping to {dn} ..."));
        match query::add_mapping(self.dir, account.name(), change) {
            Ok(()) => {
                say(format!(
                    "Added to {dn}: every host reading this directory accepts the key from its \
                     next login (each keeps its own counter)."
                ));
                Ok(())
            }
            Err(e) => Err(Failure::new(
                Exit::Failed,
                format!(
                    "the key is enrolled on this host, but the directory refused the mapping: {}",
                    match e {
                        FetchError::Unreachable(m) => format!("unreachable: {m}"),
                        FetchError::Error(m) => m,
                    }
                ),
                format!(
                    "apply this LDIF with ldapmodify (with the right bind; the key is enrolled \
                     here already):\n{}",
                    self.ldif(r)?
                ),
            )),
        }
    }
}

/// `export-sssd`: the user's login credentials as SSSD mapping strings, one a line; or, with
/// `--pam-u2f FILE`, a pam-u2f authfile's credentials as `user:passkey:...` lines.
pub fn export(ctx: &Context, args: &ExportSssdArgs) -> Result<Exit, Failure> {
    if let Some(file) = &args.pam_u2f {
        let (bytes, _) = read_trusted_any_owner(file)
            .map_err(|e| Failure::new(Exit::Usage, e.to_string(), "name a pam-u2f authfile"))?;
        let text = String::from_utf8(bytes).map_err(|_| {
            Failure::new(Exit::Usage, format!("{}: is not UTF-8", file.display()), "")
        })?;
        let parsed = pamu2f::parse(&text);
        for c in &parsed.credentials {
            let m = mapping::format(&c.credential_id, &c.public_key)
                .map_err(|e| Failure::new(Exit::Failed, e.to_string(), ""))?;
            say(format!("{}:{m}", printable(&c.user)));
        }
        for s in &parsed.skipped {
            eprintln!(
                "ctap-enroll: {}:{}: not exported: {}",
                file.display(),
                s.line,
                s.reason
            );
        }
        return Ok(if parsed.skipped.is_empty() {
            Exit::Ok
        } else {
            Exit::Failed
        });
    }
    let policy = ctx.policy()?;
    let account = user_of(&args.user)?;
    let records = policy.store().load_system_records(account.name())?;
    for r in records.credentials.iter().filter(|r| !r.rp_id.is_ssh()) {
        say(mapping_of(r)?);
    }
    Ok(Exit::Ok)
}

/// `import-sssd`: SSSD mapping strings (one a line) into the user's records on this host.
pub fn import(ctx: &Context, args: &ImportSssdArgs) -> Result<Exit, Failure> {
    let policy = ctx.policy()?;
    let account = match &args.user.user {
        Some(u) => account_named(u)?,
        None => user_of(&args.user)?,
    };
    let rp_text = args
        .rp_id
        .clone()
        .or_else(|| policy.directory.as_ref().map(|d| d.rp_id.clone()))
        .or_else(|| policy.rp_id.clone())
        .ok_or_else(|| {
            Failure::new(
                Exit::Usage,
                "no RP ID for the mappings",
                "pass --rp-id (the domain the keys were registered for)",
            )
        })?;
    let rp_id = RpId::parse(&rp_text)
        .map_err(|e| Failure::new(Exit::Usage, e.to_string(), "pass another --rp-id"))?;
    let (bytes, _) = read_trusted_any_owner(&args.file)
        .map_err(|e| Failure::new(Exit::Usage, e.to_string(), "name a file of passkey: lines"))?;
    let text = String::from_utf8(bytes).map_err(|_| {
        Failure::new(
            Exit::Usage,
            format!("{}: is not UTF-8", args.file.display()),
            "",
        )
    })?;
    let store = policy.store();
    let user = account.name();
    let mut guard = store.lock_state(user, ctap_core::store::admin::EDIT_LOCK_WAIT)?;
    let mut records = store.load_system_records(user)?;
    let (mut added, mut skipped) = (0usize, 0usize);
    for (n, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let m = match mapping::parse(line) {
            Ok(Some(m)) => m,
            Ok(None) => continue,
            Err(e) => {
                say(format!(
                    "{}:{}: not imported: {e}",
                    args.file.display(),
                    n + 1
                ));
                skipped += 1;
                continue;
            }
        };
        if records
            .credentials
            .iter()
            .any(|r| r.credential_id == m.credential_id)
        {
            say(format!(
                "{}:{}: already enrolled",
                args.file.display(),
                n + 1
            ));
            skipped += 1;
            continue;
        }
        let name = (1..)
            .map(|i| format!("sssd-{i}"))
            .find(|c| !records.credentials.iter().any(|r| &r.name == c))
            .unwrap_or_else(|| format!("sssd-line{}", n + 1));
        let key: EnrolledKey = m.key;
        let mut record = mapping::to_record(
            mapping::Mapping {
                credential_id: m.credential_id,
                key,
            },
            &rp_id,
            args.uv.into(),
        );
        record.name = name;
        record.created = ctap_core::store::credential::now_rfc3339();
        if guard.state.get(&record.credential_id).is_none() {
            guard
                .state
                .put(CredentialState::new(record.credential_id.clone(), 0));
        }
        say(format!("imported {} for {user}", record.name));
        records.credentials.push(record);
        added += 1;
    }
    if added > 0 {
        guard.commit()?;
        store.save_system_records(&account, &records)?;
    }
    say(format!("{added} imported, {skipped} not imported."));
    Ok(if skipped == 0 { Exit::Ok } else { Exit::Failed })
}
