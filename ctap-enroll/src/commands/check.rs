//! `check-config`: print every finding, fail when one is a problem.

use ctap_core::store::check;

use super::{say, Context};
use crate::{Exit, Failure};

pub fn check(ctx: &Context) -> Result<Exit, Failure> {
    let report = check::check(&ctx.config);
    for f in &report.findings {
        say(f.to_string());
    }
    let problems = report.problems();
    let notes = report.notes();
    let scope = match &report.policy {
        Some(p) => format!(
            "{}, {}, {}",
            ctx.config.display(),
            p.records_dir.display(),
            p.state_dir.display()
        ),
        None => ctx.config.display().to_string(),
    };
    if problems == 0 {
        say(format!("OK: no problems in {scope} ({notes} note(s))."));
        Ok(Exit::Ok)
    } else {
        say(format!(
            "{problems} problem(s), {notes} note(s) in {scope}."
        ));
        Ok(Exit::Failed)
    }
}
