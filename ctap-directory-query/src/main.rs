//! `ctap-directory-query`: one LDAP search for pam_ctap, in a process of its own.
//!
//! The module writes a request (the user and root's `[directory]` section, as TOML) to this
//! program's stdin and reads the answer (TOML) from its stdout; the exchange and why it is a
//! process are in ctap-core's `store::directory::query`. The program holds no state, writes
//! nothing but its answer, and exits 0 when it answered (whatever the directory said), 2 when
//! it could not read its request.

use std::io::{Read, Write};
use std::process::ExitCode;

use clap::Parser;
use ctap_core::store::directory::query::{self, QueryAnswer};
use ctap_core::store::directory::FetchError;

/// Look up a user's passkey mappings in the directory, for pam_ctap.
///
/// pam_ctap runs this program when /etc/ctap/pam_ctap.toml has a [directory] section: it
/// writes the request to stdin and reads the answer from stdout, both TOML. People do not
/// need to run it; `ctap-enroll test USER` goes the same way and says what the directory
/// answered.
#[derive(Parser)]
#[command(version, about, long_about)]
struct Cli {}

fn main() -> ExitCode {
    let _ = Cli::parse();
    let mut request = Vec::new();
    let read = std::io::stdin()
        .take(query::MAX_REQUEST as u64 + 1)
        .read_to_end(&mut request);
    let (answer, code) = match read {
        Ok(n) if n > query::MAX_REQUEST => (
            unreadable(&format!("the request is over {} bytes", query::MAX_REQUEST)),
            2,
        ),
        Ok(_) => match query::answer(&request) {
            Ok(answer) => (answer, 0),
            Err(e) => (unreadable(&e), 2),
        },
        Err(e) => (unreadable(&format!("cannot read stdin: {e}")), 2),
    };
    let mut out = std::io::stdout().lock();
    if out
        .write_all(answer.to_toml().as_bytes())
        .and_then(|()| out.flush())
        .is_err()
    {
        return ExitCode::from(1);
    }
    ExitCode::from(code)
}

/// A request this program cannot read: said on stderr for a person, and as an `error` answer
/// for the module (which reports it as `directory_error`).
fn unreadable(why: &str) -> QueryAnswer {
    eprintln!("ctap-directory-query: {why}");
    QueryAnswer::from_result(Err(FetchError::Error(format!(
        "ctap-directory-query could not read its request: {why}"
    ))))
}
