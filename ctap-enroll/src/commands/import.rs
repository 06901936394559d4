//! `import-pam-u2f`: read a pam-u2f authfile, import what can be, report the rest per line.

use std::io::Read;

use ctap_core::admin::{algorithm_name, uv_name};
use ctap_core::enroll::default_rp_id;
use ctap_core::pamu2f::{self, ImportOptions};
use ctap_core::text::{printable, quoted};

use super::{say, user_of, Context};
use crate::cli::{ImportArgs, UserArg};
use crate::{Exit, Failure};

/// Authfiles are a line per user; anything this large is not one.
const MAX_AUTHFILE: u64 = 1 << 20;

pub fn import(ctx: &Context, args: &ImportArgs) -> Result<Exit, Failure> {
    let policy = ctx.policy()?;
    let only_user = match &args.user {
        Some(u) => Some(user_of(&UserArg {
            user: Some(u.clone()),
        })?),
        None => None,
    };
    let file = &args.file;
    let unreadable = |e: std::io::Error| {
        Failure::new(
            Exit::Usage,
            format!("{}: {e}", file.display()),
            "name a readable pam-u2f authfile",
        )
    };
    let mut text = String::new();
    std::fs::File::open(file)
        .map_err(unreadable)?
        .take(MAX_AUTHFILE)
        .read_to_string(&mut text)
        .map_err(unreadable)?;
    let rp_id = args
        .rp_id
        .clone()
        .or_else(|| policy.rp_id.clone())
        .unwrap_or_else(default_rp_id);
    let opts = ImportOptions {
        appid: args.appid.clone().unwrap_or_else(|| rp_id.clone()),
        rp_id,
        only_user,
    };
    let report = pamu2f::import(&policy.store(), pamu2f::parse(&text), &opts);
    let name = file.display();
    for i in &report.imported {
        let r = &i.record;
        say(format!(
            "{name}:{}: imported credential {} of {} as {} ({}, RP ID {}, user verification {})",
            i.line,
            i.position,
            printable(&i.user),
            quoted(&r.name),
            algorithm_name(r.algorithm),
            printable(&r.rp_id),
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
