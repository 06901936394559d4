//! `import-pam-u2f`: read a pam-u2f authfile, import what can be, report the rest per line.

use crate::pamu2f::{self, ImportOptions};
use ctap_core::flows::enroll::default_rp_id;
use ctap_core::store::account::{Nss, UserResolver};
use ctap_core::store::admin::{algorithm_name, uv_name};
use ctap_core::store::fs::read_trusted_any_owner;
use ctap_core::text::{printable, quoted};

use super::{account_named, say, Context};
use crate::cli::ImportArgs;
use crate::{Exit, Failure};

pub fn import(ctx: &Context, args: &ImportArgs) -> Result<Exit, Failure> {
    let policy = ctx.policy()?;
    let only_user = match &args.user {
        Some(u) => Some(account_named(u)?),
        None => None,
    };
    let file = &args.file;
    // The rules records are read by: no symlink, a regular file not writable by others, in a
    // directory only root or its owner can write, at most 1 MiB. The owner decides whose keys
    // the file can vouch for.
    let (bytes, owner) = read_trusted_any_owner(file).map_err(|e| {
        Failure::new(
            Exit::Usage,
            e.to_string(),
            "name a pam-u2f authfile that is a regular file (no symlink), not group- or world-writable",
        )
    })?;
    let text = String::from_utf8(bytes).map_err(|_| {
        Failure::new(
            Exit::Usage,
            format!("{}: is not UTF-8", file.display()),
            "name a pam-u2f authfile",
        )
    })?;
    let owner_name = Nss
        .by_uid(owner)
        .ok()
        .flatten()
        .map(|a| a.name().to_string())
        .unwrap_or_else(|| "?".into());
    if owner == 0 {
        say(format!("{}: owned by root", file.display()));
    } else {
        say(format!(
            "{}: owned by {owner_name} (uid {owner}), not root: only {owner_name}'s keys are imported",
            file.display()
        ));
    }
    let rp_id = args
        .rp_id
        .clone()
        .or_else(|| policy.rp_id.clone())
        .unwrap_or_else(default_rp_id);
    let opts = ImportOptions {
        appid: args.appid.clone().unwrap_or_else(|| rp_id.clone()),
        rp_id,
        only_user,
        file_owner: owner,
    };
    let report = pamu2f::import(&policy.store(), &Nss, pamu2f::parse(&text), &opts);
    let name = file.display();
    for i in &report.imported {
        let r = &i.record;
        say(format!(
            "{name}:{}: imported credential {} of {} as {} ({}, RP ID {}, user verification {})",
            i.line,
            i.position,
            printable(&i.user),
            quoted(&r.name),
            algorithm_name(r.public_key.algorithm()),
            printable(r.rp_id.as_str()),
            uv_name(r.user_verification)
        ));
        for n in &i.notes {
            say(format!("    note: {n}"));
        }
    }
    for s in &report.skipped {
        let what = match (&s.user, s.position) {
            (Some(u), Some(p)) => format!("credential {p} of {}", printable(u)),
            (Some(u), None) => format!("line of {}", printable(u)),
            (None, Some(p)) => format!("credential {p}"),
            (None, None) => "line".to_string(),
        };
        say(format!(
            "{name}:{}: {what} not imported: {}",
            s.line, s.reason
        ));
    }
    say(format!(
        "{} imported, {} not imported.",
        report.imported.len(),
        report.skipped.len()
    ));
    if !report.imported.is_empty() {
        say("Check each user with: ctap-enroll test --user USER");
    }
    Ok(if report.skipped.is_empty() {
        Exit::Ok
    } else {
        Exit::Failed
    })
}
