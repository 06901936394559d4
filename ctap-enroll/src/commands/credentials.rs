//! Subcommands over a user's enrolled credentials: `list`, `remove`, `rename`, `unsuspend`,
//! and `test`, which runs the very login the PAM module runs.

use ctap_core::flows::login::login;
use ctap_core::flows::verify::CounterOutcome;
use ctap_core::store::admin::{self, CredentialSummary, Unsuspended};
use ctap_core::text::{printable, quoted};
use serde::Serialize;

use super::{json, say, user_name_of, user_of, Context};
use crate::cli::{ListArgs, NameArgs, RenameArgs, TestArgs};
use crate::{Exit, Failure};

#[derive(Serialize)]
struct ListJson<'a> {
    user: &'a str,
    credentials: &'a [CredentialSummary],
}

pub fn list(ctx: &Context, args: &ListArgs) -> Result<Exit, Failure> {
    let policy = ctx.policy()?;
    let account = user_of(&args.user)?;
    let user = account.name();
    let creds = admin::list(&policy.store(), &account)?;
    if args.json {
        json(&ListJson {
            user,
            credentials: &creds,
        })?;
        return Ok(Exit::Ok);
    }
    if creds.is_empty() {
        say(format!("No credentials enrolled for {user}."));
        return Ok(Exit::Ok);
    }
    let rows: Vec<[String; 8]> = creds
        .iter()
        .map(|c| {
            let status = match (c.sign_count, c.suspended) {
                (None, _) => "NO STATE (re-enroll)".to_string(),
                (Some(_), true) => format!(
                    "SUSPENDED: {}",
                    printable(
                        c.suspended_reason
                            .as_deref()
                            .unwrap_or("no reason recorded")
                    )
                ),
                (Some(_), false) => "ok".to_string(),
            };
            // Names and RP IDs come from per-user files: escaped, one row per credential.
            [
                printable(&c.name),
                printable(&c.rp_id),
                printable(&c.created),
                c.last_used
                    .as_deref()
                    .map(printable)
                    .unwrap_or_else(|| "never".into()),
                c.sign_count
                    .map(|n| n.to_string())
                    .unwrap_or_else(|| "-".into()),
                c.user_verification.to_string(),
                c.protocol.to_string(),
                status,
            ]
        })
        .collect();
    let header = [
        "NAME",
        "RP ID",
        "CREATED",
        "LAST USED",
        "COUNTER",
        "UV",
        "PROTOCOL",
        "STATUS",
    ]
    .map(String::from);
    let mut widths = header.clone().map(|h| h.len());
    for r in &rows {
        for (w, cell) in widths.iter_mut().zip(r) {
            *w = (*w).max(cell.len());
        }
    }
    let line = |r: &[String; 8]| {
        let cells: Vec<String> = r
            .iter()
            .zip(widths)
            .enumerate()
            .map(|(i, (c, w))| {
                if i == 7 {
                    c.clone()
                } else {
                    format!("{c:<w$}")
                }
            })
            .collect();
        say(cells.join("  ").trim_end())
    };
    line(&header);
    for r in &rows {
        line(r);
    }
    Ok(Exit::Ok)
}

pub fn remove(ctx: &Context, args: &NameArgs) -> Result<Exit, Failure> {
    let policy = ctx.policy()?;
    let account = user_of(&args.user)?;
    let user = account.name();
    let removed = admin::remove(&policy.store(), &account, &args.name)?;
    say(format!(
        "Removed {} (credential id {}) for {user}.",
        quoted(&removed.name),
        removed.id_b64()
    ));
    Ok(Exit::Ok)
}

pub fn rename(ctx: &Context, args: &RenameArgs) -> Result<Exit, Failure> {
    let policy = ctx.policy()?;
    let account = user_of(&args.user)?;
    let user = account.name();
    admin::rename(&policy.store(), &account, &args.old, &args.new)?;
    say(format!(
        "Renamed {} to {} for {user}.",
        quoted(&args.old),
        quoted(&args.new)
    ));
    Ok(Exit::Ok)
}

pub fn unsuspend(ctx: &Context, args: &NameArgs) -> Result<Exit, Failure> {
    let policy = ctx.policy()?;
    let account = user_of(&args.user)?;
    let user = account.name();
    match admin::unsuspend(&policy.store(), &account, &args.name)? {
        Unsuspended::Lifted(reason) => say(format!(
            "Unsuspended {} for {user} (it was suspended: {}).",
            quoted(&args.name),
            printable(&reason.to_string())
        )),
        Unsuspended::WasNotSuspended => say(format!(
            "{} of {user} is not suspended; nothing changed.",
            quoted(&args.name)
        )),
    }
    Ok(Exit::Ok)
}

pub fn test(ctx: &mut Context, args: &TestArgs) -> Result<Exit, Failure> {
    let policy = ctx.policy()?;
    // The name as given: login resolves it through NSS, as the PAM module does.
    let user = user_name_of(&args.user)?;
    match login(&user, &args.service, &policy, &mut ctx.prompter) {
        Ok(granted) => {
            let counter = match granted.counter() {
                CounterOutcome::Advanced { from, to } => format!("counter {from} -> {to}"),
                CounterOutcome::NotKept => "the key keeps no counter".to_string(),
            };
            say(format!(
                "PASS: {user} verified with {} ({counter}, user verified: {})",
                quoted(granted.credential_name()),
                if granted.user_verified() { "yes" } else { "no" }
            ));
            Ok(Exit::Ok)
        }
        Err(e) => {
            let fix = match e.kind() {
                "device_error" => {
                    "; re-insert the key and try again; if it persists, check it with `ctap-enroll devices`"
                }
                "busy" => "; try again when the other login or ctap-enroll has finished",
                "config_error" => "; run `ctap-enroll check-config`",
                _ => "",
            };
            say(format!("FAIL ({}): {e}{fix}", e.kind()));
            Ok(Exit::Failed)
        }
    }
}
