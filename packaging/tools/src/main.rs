//! `ctap-mangen OUTDIR`: write the man pages of ctap-enroll and ctap-sshagent into OUTDIR/man1.
//!
//! The pages are rendered by clap_mangen from the very `clap` definitions that print `--help`,
//! so the two cannot drift apart. ctap-enroll gets one page per subcommand as well
//! (ctap-enroll-enroll(1), ctap-enroll-pin-set(1), …), the way git does it.
//!
//! The date in the title line is taken from SOURCE_DATE_EPOCH when set (reproducible builds);
//! otherwise it is left out.

use std::io::Write;
use std::path::{Path, PathBuf};

use clap::CommandFactory;

const SOURCE: &str = concat!("ctap-login ", env!("CARGO_PKG_VERSION"));

fn main() {
    let Some(out) = std::env::args_os().nth(1).map(PathBuf::from) else {
        eprintln!("usage: ctap-mangen OUTDIR");
        std::process::exit(2);
    };
    let dir = out.join("man1");
    let result = std::fs::create_dir_all(&dir)
        .and_then(|()| {
            pages(
                ctap_enroll::cli::Cli::command(),
                &dir,
                "ctap-sshagent(1), pam_ctap(8), pam_ctap.toml(5)",
            )
        })
        .and_then(|()| {
            pages(
                ctap_sshagent::cli::Args::command(),
                &dir,
                "ssh-add(1), ssh(1), ssh-keygen(1), ctap-enroll(1), ctap-enroll-ssh(1), ctap-enroll-export-ssh(1)",
            )
        });
    if let Err(e) = result {
        eprintln!("ctap-mangen: {}: {e}", dir.display());
        std::process::exit(1);
    }
}

/// Write the page of `cmd` and, recursively, of each visible subcommand.
fn pages(cmd: clap::Command, dir: &Path, see_also: &str) -> std::io::Result<()> {
    let mut cmd = cmd.disable_help_subcommand(true);
    cmd.build();
    write_tree(&cmd, dir, see_also)
}

fn write_tree(cmd: &clap::Command, dir: &Path, see_also: &str) -> std::io::Result<()> {
    let top = cmd.get_display_name().unwrap_or(cmd.get_name()).to_string();
    for sub in cmd.get_subcommands().filter(|s| !s.is_hide_set()) {
        // A subcommand's page points back to its parent, then to the parent's relatives.
        write_tree(sub, dir, &format!("{top}(1), {see_also}"))?;
    }
    let mut man = clap_mangen::Man::new(cmd.clone())
        .source(SOURCE)
        .manual("ctap-login manual");
    if let Some(date) = source_date() {
        man = man.date(date);
    }
    let path = dir.join(man.get_filename());
    let mut file = std::fs::File::create(&path)?;
    man.render(&mut file)?;
    // clap_mangen has no SEE ALSO section; roff text appended after the page is one.
    writeln!(file, ".SH \"SEE ALSO\"\n{}", see_also.replace('-', "\\-"))?;
    file.flush()
}

/// SOURCE_DATE_EPOCH as YYYY-MM-DD (UTC), without a date library.
fn source_date() -> Option<String> {
    let secs: i64 = std::env::var("SOURCE_DATE_EPOCH")
        .ok()?
        .trim()
        .parse()
        .ok()?;
    let days = secs.div_euclid(86_400);
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    Some(format!("{year:04}-{month:02}-{day:02}"))
}
