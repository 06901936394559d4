//! The directory query as a separate process: `ctap-directory-query`, a small root-owned
//! program the PAM module runs only when `[directory]` is configured (ARCHITECTURE.md §12).
//!
//! Why a process and not a library call: an LDAP client with TLS (ldap3, tokio, OpenSSL) linked
//! into pam_ctap.so is loaded, relocated and initialised by every process that loads the PAM
//! stack, configured or not: it cost the no-user path about 1–2 ms of CPU per sudo (issue 12).
//! Kept in its own program, the module links none of it, and only hosts that use a directory
//! pay for it, once per login, as pam_unix pays for unix_chkpwd.
//!
//! The exchange is one TOML document each way: the request (the user and root's `[directory]`
//! section, already validated by the module) on the program's stdin, the answer on its stdout.
//! The module trusts the program only at a root-owned path no one else can write (checked like
//! every file root's configuration names), runs it with an empty environment, bounds its whole
//! run by `query_timeout` and kills it after, and reads at most [`MAX_ANSWER`] bytes. Its exit
//! status is not consulted: only a complete answer counts, anything else is an error.

use std::io::Read;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use nix::poll::PollFlags;

use super::{DirectoryConfig, FetchError};
use crate::store::fs;
use crate::transport::device::{send_all_nosignal, wait_ready};

/// Where the packages install the program (`query_helper` in `[directory]` overrides it).
pub const DEFAULT_HELPER: &str = "/usr/libexec/ctap/ctap-directory-query";

/// The most the module reads of an answer: a user's mapping values are a few hundred bytes
/// each; a megabyte is far beyond any real entry and bounds what a broken program costs.
pub const MAX_ANSWER: usize = 1 << 20;

/// The most the program reads of a request (a user name and one config section).
pub const MAX_REQUEST: usize = 64 << 10;

/// What the module sends.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct QueryRequest {
    /// The account name NSS resolved (escaped per RFC 4515 by the program, as in-process).
    pub user: String,
    pub directory: DirectoryConfig,
    /// Instead of the search: add a mapping value (`ctap-enroll enroll --directory --write`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub add: Option<AddMapping>,
}

/// A mapping value to add to an entry, and the admin bind to do it with (absent: the bind
/// `[directory]` names). The password stays in its root-only file: only the path travels.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AddMapping {
    pub dn: String,
    pub value: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bind_dn: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bind_password_file: Option<PathBuf>,
}

/// What the program answers: [`super::fetch`]'s result, one-to-one.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct QueryAnswer {
    pub outcome: Outcome,
    /// The mapping values (`found` only).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub values: Vec<String>,
    /// Why (`unreachable` and `error` only).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub message: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// One entry matched; `values` are its mapping values (possibly none).
    Found,
    /// No entry matches the filter.
    NoEntry,
    Unreachable,
    Error,
    /// The mapping value was added (or was there already).
    Added,
}

impl QueryAnswer {
    pub fn from_result(result: Result<Option<Vec<String>>, FetchError>) -> QueryAnswer {
        let (outcome, values, message) = match result {
            Ok(Some(values)) => (Outcome::Found, values, String::new()),
            Ok(None) => (Outcome::NoEntry, Vec::new(), String::new()),
            Err(FetchError::Unreachable(m)) => (Outcome::Unreachable, Vec::new(), m),
            Err(FetchError::Error(m)) => (Outcome::Error, Vec::new(), m),
        };
        QueryAnswer {
            outcome,
            values,
            message,
        }
    }

    pub fn into_result(self) -> Result<Option<Vec<String>>, FetchError> {
        match self.outcome {
            Outcome::Found => Ok(Some(self.values)),
            Outcome::NoEntry => Ok(None),
            Outcome::Unreachable => Err(FetchError::Unreachable(self.message)),
            Outcome::Error => Err(FetchError::Error(self.message)),
            Outcome::Added => Err(FetchError::Error(
                "the query program answered `added` to a search".into(),
            )),
        }
    }

    /// The answer as the program prints it.
    pub fn to_toml(&self) -> String {
        toml::to_string(self).unwrap_or_else(|e| {
            // Only a value TOML cannot carry could fail; say so in a form that always encodes.
            format!("outcome = \"error\"\nmessage = {:?}\n", e.to_string())
        })
    }
}

/// The program's whole job: one request in, one answer out (the LDAP search is
/// [`super::fetch`], this build's in-process client). `Err`: the request could not be read.
#[cfg(feature = "directory")]
pub fn answer(request: &[u8]) -> Result<QueryAnswer, String> {
    let text = std::str::from_utf8(request).map_err(|_| "the request is not UTF-8".to_string())?;
    let req: QueryRequest = toml::from_str(text).map_err(|e| e.message().to_string())?;
    Ok(match &req.add {
        None => QueryAnswer::from_result(super::fetch(&req.directory, &req.user)),
        Some(change) => match super::ldap::add_mapping(&req.directory, change) {
            Ok(()) => QueryAnswer {
                outcome: Outcome::Added,
                values: Vec::new(),
                message: String::new(),
            },
            Err(e) => QueryAnswer::from_result(Err(e)),
        },
    })
}

/// Run the query program for `user` and return its answer, within `query_timeout` seconds.
pub(super) fn run(cfg: &DirectoryConfig, user: &str) -> Result<Option<Vec<String>>, FetchError> {
    let request = QueryRequest {
        user: user.to_owned(),
        directory: cfg.clone(),
        add: None,
    };
    exchange_with_program(cfg, &request)?.into_result()
}

/// Add a mapping value to the directory through the query program (the one program that
/// links the LDAP client), within `query_timeout` seconds.
pub fn add_mapping(
    cfg: &DirectoryConfig,
    user: &str,
    change: AddMapping,
) -> Result<(), FetchError> {
    let request = QueryRequest {
        user: user.to_owned(),
        directory: cfg.clone(),
        add: Some(change),
    };
    let answer = exchange_with_program(cfg, &request)?;
    match answer.outcome {
        Outcome::Added => Ok(()),
        _ => match answer.into_result() {
            Err(e) => Err(e),
            Ok(_) => Err(FetchError::Error(
                "the query program answered a search to an addition".into(),
            )),
        },
    }
}

/// One run of the program: `request` in, its parsed answer out.
fn exchange_with_program(
    cfg: &DirectoryConfig,
    request: &QueryRequest,
) -> Result<QueryAnswer, FetchError> {
    let helper = cfg.query_helper();
    fs::check_trusted_program(helper).map_err(|e| {
        FetchError::Error(format!(
            "query_helper: {e}: install ctap-directory-query (package libpam-ctap/pam-ctap) \
             or set directory.query_helper to a root-owned copy"
        ))
    })?;
    let request = toml::to_string(request)
        .map_err(|e| FetchError::Error(format!("cannot encode the query: {e}")))?;
    // The request goes through a socket, not a pipe: a send with MSG_NOSIGNAL to a program that
    // exited early fails with EPIPE, where a write to a pipe would raise SIGPIPE in the
    // application that loaded the module (and kill sudo or login).
    let (ours, theirs) = UnixStream::pair()
        .map_err(|e| FetchError::Error(format!("cannot make a socket for the query: {e}")))?;
    let mut child = {
        let mut command = Command::new(helper);
        command
            .env_clear()
            .stdin(Stdio::from(OwnedFd::from(theirs)))
            .stdout(Stdio::piped())
            .stderr(Stdio::null());
        command.spawn()
        // `command` and with it the program's end of the socket are closed here.
    }
    .map_err(|e| FetchError::Error(format!("cannot run {}: {e}", helper.display())))?;
    let deadline = Instant::now() + Duration::from_secs(cfg.query_timeout);
    // A request is a few hundred bytes, far below a socket's buffer. A program that exited
    // already (EPIPE) or does not read shows in its answer, which is then missing or an error.
    let left = deadline.saturating_duration_since(Instant::now());
    let _ = send_all_nosignal(&ours, request.as_bytes(), left);
    let _ = ours.shutdown(std::net::Shutdown::Write);
    drop(ours);
    let outcome = exchange(&mut child, deadline, helper);
    // Always reaped, killed first unless it already ended: no zombie and no straggler is left
    // in the application that loaded the module. `wait` may fail if the application reaps its
    // children itself (SIGCHLD ignored): the answer read decides, not the exit status.
    if !matches!(child.try_wait(), Ok(Some(_))) {
        let _ = child.kill();
    }
    let _ = child.wait();
    outcome
}

fn exchange(
    child: &mut Child,
    deadline: Instant,
    helper: &Path,
) -> Result<QueryAnswer, FetchError> {
    let program = || helper.display().to_string();
    let Some(mut stdout) = child.stdout.take() else {
        return Err(FetchError::Error(format!("{}: no output pipe", program())));
    };
    let mut answer = Vec::new();
    let mut buf = [0u8; 8192];
    loop {
        let ready = wait_ready(stdout.as_fd(), PollFlags::POLLIN, deadline)
            .map_err(|e| FetchError::Error(format!("waiting for {}: {e}", program())))?;
        if !ready {
            return Err(FetchError::Unreachable(format!(
                "no answer within query_timeout ({} stopped)",
                program()
            )));
        }
        match stdout.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => {
                answer.extend_from_slice(&buf[..n]);
                if answer.len() > MAX_ANSWER {
                    return Err(FetchError::Error(format!(
                        "{} answered more than {MAX_ANSWER} bytes",
                        program()
                    )));
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(FetchError::Error(format!("reading {}: {e}", program()))),
        }
    }
    let text = std::str::from_utf8(&answer)
        .map_err(|_| FetchError::Error(format!("{} answered non-UTF-8", program())))?;
    toml::from_str(text).map_err(|e| {
        FetchError::Error(format!(
            "{} gave no valid answer (did it crash?): {}",
            program(),
            e.message()
        ))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_round_trip_every_outcome() {
        for r in [
            Ok(Some(vec!["passkey:a,b".to_string(), "x\ny\"z".to_string()])),
            Ok(Some(vec![])),
            Ok(None),
            Err(FetchError::Unreachable("connection refused".into())),
            Err(FetchError::Error("bind: invalid credentials".into())),
        ] {
            let text = QueryAnswer::from_result(r.clone()).to_toml();
            let back: QueryAnswer = toml::from_str(&text).unwrap();
            assert_eq!(back.into_result(), r, "{text}");
        }
    }

    #[test]
    fn requests_round_trip_with_and_without_an_addition() {
        let directory: DirectoryConfig = toml::from_str(
            "uri = \"ldaps://dc\"\nbase_dn = \"dc=x\"\nrp_id = \"x\"\nbind_dn = \"cn=pam\"\n\
             bind_password_file = \"/etc/ctap/ldap.secret\"\n",
        )
        .unwrap();
        for add in [
            None,
            Some(AddMapping {
                dn: "uid=a\\,b,dc=x".into(),
                value: "passkey:AAAA,BBBB".into(),
                bind_dn: Some("cn=admin".into()),
                bind_password_file: Some("/root/admin.secret".into()),
            }),
        ] {
            let req = QueryRequest {
                user: "ALICE@corp\\x \"é\"".into(),
                directory: directory.clone(),
                add,
            };
            let text = toml::to_string(&req).unwrap();
            assert_eq!(
                toml::from_str::<QueryRequest>(&text).unwrap(),
                req,
                "{text}"
            );
        }
    }

    #[test]
    fn an_answer_with_unknown_fields_or_outcome_is_refused() {
        assert!(toml::from_str::<QueryAnswer>("outcome = \"granted\"\n").is_err());
        assert!(toml::from_str::<QueryAnswer>("outcome = \"found\"\nextra = 1\n").is_err());
        assert!(toml::from_str::<QueryAnswer>("values = [\"a\"]\n").is_err());
    }
}
