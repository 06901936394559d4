//! `pam_sm_authenticate`: options, then `ctap_core::flows::login::login`, then one syslog line.
//!
//! What decides anything here: root's config file (`config=` or /etc/ctap/pam_ctap.toml, read
//! by `Policy::load` with ownership checks) and the module arguments from root's /etc/pam.d.
//! Never the environment (this module reads no environment variable) and never a file the user
//! can write (per-user records only when root opts in, with the library's ownership checks).

use std::fmt;

use ctap_core::flows::login::{
    login_in, DeviceFailure, LoginContext, LoginError, LoginGranted, Unusable,
};
use ctap_core::flows::verify::VerifyError;
use ctap_core::store::config::{ConfigError, Policy, RemotePolicy};
use ctap_core::store::fs::{FileError, TrustedWalkMemo};
use ctap_core::transport::ctap2::{CtapError, CtapStatus};
use pam::constants::PAM_SILENT;
use pam::conv::Conv;
use pam::items::{RHost, Service, User};
use pam::module::PamHandle;

use crate::arguments::{ArgumentError, ModuleArguments};
use crate::conv::PamPrompter;
use crate::ffi::Invocation;
use crate::syslog::{detail, field, quoted, Severity, SysLog};
use crate::{grant, to_pam, Verdict};

pub fn authenticate(inv: &mut Invocation<'_>) -> Verdict {
    // One authentication walks from `/` to root's config, the records and state directories
    // and the uid index: each directory on the way is checked once (fs::TrustedWalkMemo).
    let _walk = TrustedWalkMemo::begin();
    let service = item_string(inv.pamh.get_item::<Service>().ok().flatten().map(|s| s.0));
    let policy = match policy_from(&inv.args) {
        Ok(p) => p,
        Err(PolicyError { log, error }) => {
            let user = item_string(inv.pamh.get_item::<User>().ok().flatten().map(|s| s.0));
            log.send(
                Severity::Err,
                &format!(
                    "auth failed: reason={} service={} user={} {}",
                    error.reason(),
                    field(&service),
                    field(&user),
                    error.fields()
                ),
            );
            return Verdict::deny();
        }
    };
    let log = SysLog::new(&policy.log_socket);
    let user = match inv.pamh.get_user(None) {
        Ok(u) => u,
        Err(code) => {
            log.send(
                Severity::Err,
                &format!(
                    "auth failed: reason=no_user service={} detail={}",
                    field(&service),
                    detail(&format!(
                        "the application gave no user name (pam_get_user returned PAM error {})",
                        code as i32
                    ))
                ),
            );
            return Verdict::deny();
        }
    };
    let who = format!("service={} user={}", field(&service), field(&user));
    if policy.debug {
        log.send(
            Severity::Debug,
            &format!(
                "auth start: {who} device={}",
                quoted(&policy.device.to_string())
            ),
        );
    }
    let remote_host = inv
        .pamh
        .get_item::<RHost>()
        .ok()
        .flatten()
        .map(|h| h.0.to_string_lossy().into_owned());
    let silent = inv.flags & PAM_SILENT != 0;
    let pamh: &PamHandle = inv.pamh;
    let mut prompter = PamPrompter::new(pamh.get_item::<Conv>().ok().flatten(), silent);
    if let Some(verdict) = remote_verdict(&policy, remote_host.as_deref(), &who, &log) {
        if !verdict.is_ignore() {
            prompter.error("Security key logins from another host are not allowed here");
        }
        return verdict;
    }

    let context = LoginContext {
        remote_host: remote_host.as_deref().filter(|h| !h.is_empty()),
    };
    let outcome = login_in(&context, &user, &service, &policy, &mut prompter);
    let interrupted = prompter.finish();
    let verdict = verdict_of(outcome, &policy, &who, &log, &mut prompter);
    if interrupted {
        // Ctrl-C during a wait: the key's request was cancelled and the attempt logged; now
        // the application gets its SIGINT, under its own disposition (interrupt.rs).
        crate::interrupt::reraise();
    }
    verdict
}

/// The verdict of a login and its syslog line (and the user's message on a failure).
fn verdict_of(
    outcome: Result<LoginGranted, LoginError>,
    policy: &Policy,
    who: &str,
    log: &SysLog,
    prompter: &mut PamPrompter<'_>,
) -> Verdict {
    match outcome {
        Ok(granted) => {
            log.send(Severity::Info, &ok_line(who, &granted));
            grant(granted)
        }
        Err(e) => {
            let verdict = to_pam(&e, policy.nouserok);
            if verdict.is_ignore() {
                log.send(
                    Severity::Notice,
                    &format!("auth ignored: reason={} (nouserok) {who}", e.kind()),
                );
            } else {
                log.send(severity(&e), &failed_line(who, &e));
                prompter.error(&user_message(&e));
            }
            verdict
        }
    }
}

/// `remote = "skip"` or `"deny"` for a login with PAM_RHOST set (docs/ARCHITECTURE.md §8): the
/// verdict and its log line, before anything else happens. `None`: go on with the login.
fn remote_verdict(
    policy: &Policy,
    remote_host: Option<&str>,
    who: &str,
    log: &SysLog,
) -> Option<Verdict> {
    let rhost = || field(remote_host.unwrap_or(""));
    match policy.remote.applies(remote_host)? {
        RemotePolicy::Skip => {
            log.send(
                Severity::Notice,
                &format!("auth ignored: reason=remote_skip {who} rhost={}", rhost()),
            );
            Some(Verdict::ignore_remote())
        }
        RemotePolicy::Deny => {
            log.send(
                Severity::Notice,
                &format!(
                    "auth failed: reason=remote_denied {who} rhost={} detail={}",
                    rhost(),
                    detail("security key logins from another host are refused (remote = \"deny\")")
                ),
            );
            Some(Verdict::deny())
        }
        // `applies` returns only Skip or Deny.
        RemotePolicy::Require => None,
    }
}

/// Why the module could not build its policy (before there is a user or a `LoginError`). Every
/// variant is a denial.
#[derive(Debug)]
pub(crate) enum ModuleError {
    /// Root's config file does not exist: a typo in `config=` must not fall back to defaults.
    ConfigMissing(ConfigError),
    /// Root's config file cannot be read, trusted or parsed.
    Config(ConfigError),
    /// A module argument that is not UTF-8, unknown or malformed, or that makes the policy
    /// unusable.
    BadArgument(ArgumentError),
}

impl ModuleError {
    /// The syslog reason word (pam_ctap(8), REASONS).
    pub(crate) fn reason(&self) -> &'static str {
        match self {
            ModuleError::BadArgument(_) => "bad_argument",
            ModuleError::ConfigMissing(_) => "config_missing",
            ModuleError::Config(_) => "config_error",
        }
    }

    /// The syslog fields that name the problem: the argument when there is one, then the detail.
    pub(crate) fn fields(&self) -> String {
        let argument = match self {
            ModuleError::BadArgument(e) => e.argument(),
            ModuleError::ConfigMissing(_) | ModuleError::Config(_) => None,
        };
        let detail = detail(&self.to_string());
        match argument {
            Some(a) => format!("argument={} detail={detail}", quoted(&a)),
            None => format!("detail={detail}"),
        }
    }

    /// A missing file is its own reason (a typo in `config=`); anything else wrong with it is
    /// `config_error`.
    fn from_config(e: ConfigError) -> Self {
        match e {
            ConfigError::File(FileError::NotFound(_)) => ModuleError::ConfigMissing(e),
            ConfigError::File(_) | ConfigError::Parse { .. } | ConfigError::Invalid { .. } => {
                ModuleError::Config(e)
            }
        }
    }
}

impl fmt::Display for ModuleError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ModuleError::ConfigMissing(e) | ModuleError::Config(e) => e.fmt(f),
            ModuleError::BadArgument(e) => e.fmt(f),
        }
    }
}

impl std::error::Error for ModuleError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            ModuleError::ConfigMissing(e) | ModuleError::Config(e) => Some(e),
            ModuleError::BadArgument(e) => Some(e),
        }
    }
}

/// A [`ModuleError`] and the syslog to report it to: root's configured socket once the file was
/// read, the default before.
pub(crate) struct PolicyError {
    pub(crate) log: SysLog,
    pub(crate) error: ModuleError,
}

/// Root's file, then the module arguments over it.
pub(crate) fn policy_from(args: &[&std::ffi::CStr]) -> Result<Policy, PolicyError> {
    let default_log = || SysLog::new(&Policy::default().log_socket);
    let bad_argument = |error| PolicyError {
        log: default_log(),
        error: ModuleError::BadArgument(error),
    };
    let args = ModuleArguments::from_c(args).map_err(bad_argument)?;
    let path = args.config_path().map_err(bad_argument)?;
    let mut policy = Policy::load(&path).map_err(|e| PolicyError {
        log: default_log(),
        error: ModuleError::from_config(e),
    })?;
    let log = SysLog::new(&policy.log_socket);
    args.apply(&mut policy).map_err(|e| PolicyError {
        log,
        error: ModuleError::BadArgument(e),
    })?;
    Ok(policy)
}

fn item_string(item: Option<&std::ffi::CStr>) -> String {
    item.map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| "?".into())
}

fn ok_line(who: &str, g: &LoginGranted) -> String {
    let mut line = format!(
        "auth ok: {who} account={} uid={} credential={} counter={} uv={}",
        field(g.account().name()),
        g.account().uid(),
        quoted(g.credential_name()),
        g.sign_count(),
        if g.user_verified() { "yes" } else { "no" }
    );
    // Directory credentials: a grant from the offline copy says so (reason word
    // `offline_cache`), and malformed mapping values that were skipped are counted.
    if let Some(note) = g.directory() {
        match note.offline_age {
            Some(age) => line.push_str(&format!(" records=offline_cache cache_age={age}")),
            None => line.push_str(" records=directory"),
        }
        if note.skipped > 0 {
            line.push_str(&format!(" bad_mapping={}", note.skipped));
        }
    }
    line
}

/// Outcome and reason first, then the user-controlled fields (each bounded): a syslog daemon
/// that cuts a long line never cuts the reason.
fn failed_line(who: &str, e: &LoginError) -> String {
    let mut line = format!("auth failed: reason={} {who}", e.kind());
    match e {
        LoginError::Rejected {
            credential,
            suspended,
            ..
        } => {
            line.push_str(&format!(" credential={}", quoted(credential)));
            if *suspended {
                line.push_str(" suspended=yes");
            }
        }
        LoginError::MissingState { credential } => {
            line.push_str(&format!(" credential={}", quoted(credential)));
        }
        _ => {}
    }
    line.push_str(&format!(" detail={}", detail(&e.to_string())));
    line
}

/// Security events (a key that lies, a clone) at warning; the everyday failures at notice.
fn severity(e: &LoginError) -> Severity {
    match e {
        LoginError::Rejected { .. } => Severity::Warning,
        LoginError::Store(_) if e.is_busy() => Severity::Notice,
        LoginError::Store(_)
        | LoginError::MissingState { .. }
        | LoginError::Place(_)
        | LoginError::Lookup(_)
        | LoginError::UidMismatch { .. }
        | LoginError::RecordsMissing
        | LoginError::EnrolledAsOtherName { .. } => Severity::Err,
        LoginError::DeviceNotEnrolled { .. } => Severity::Warning,
        LoginError::Directory(_) => Severity::Err,
        LoginError::UnknownUser(_)
        | LoginError::NoRecords
        | LoginError::NoUsableCredential(_)
        | LoginError::WrongKey
        | LoginError::UvUnavailable(_)
        | LoginError::Device(_)
        | LoginError::PinLastRetry => Severity::Notice,
    }
}

/// What the person at the keyboard reads. Short, actionable, no internals.
fn user_message(e: &LoginError) -> String {
    let text = match e {
        LoginError::NoRecords => "No security key is registered for you",
        // No "unknown user": that would tell whoever types names which accounts exist.
        LoginError::UnknownUser(_) => "Security key authentication failed",
        LoginError::EnrolledAsOtherName { .. } => {
            "Your security key is registered under another user name: ask your administrator"
        }
        LoginError::Store(_) if e.is_busy() => {
            "Another login of yours is using your security key: try again"
        }
        LoginError::WrongKey => "This security key is not registered for you",
        LoginError::NoUsableCredential(Unusable::HmacSecretRequired { .. }) => {
            "This login requires a FIDO2 security key with hmac-secret; your enrolled key (U2F) \
             cannot be used here: ask your administrator"
        }
        LoginError::UvUnavailable(m) => return format!("Security key: {m}"),
        LoginError::PinLastRetry => {
            "Your security key has one PIN try left, so no PIN was sent: enter the right PIN with \
             `ctap-enroll pin change` at your own terminal to restore the tries"
        }
        LoginError::DeviceNotEnrolled { .. } => {
            "This security key is not the one registered for you: no PIN was sent to it"
        }
        LoginError::Place(_) => {
            "Security key login is misconfigured: ask your administrator (see the system log)"
        }
        LoginError::Directory(_) => {
            "Your security key registration could not be read from the directory: ask your \
             administrator (see the system log)"
        }
        LoginError::Rejected {
            reason: VerifyError::Suspended(_),
            ..
        }
        | LoginError::Rejected {
            suspended: true, ..
        } => "This security key is suspended: ask your administrator",
        LoginError::Device(CtapError::Status(CtapStatus::PinAuthBlocked)) => {
            "Too many wrong PINs: remove and reinsert the key"
        }
        LoginError::Device(d) => match DeviceFailure::of(d) {
            DeviceFailure::NoKey => "No security key found",
            DeviceFailure::PinBlocked => "PIN blocked: reset the key",
            DeviceFailure::PinInvalid => "Wrong PIN",
            DeviceFailure::Timeout => "Timed out waiting for your security key",
            DeviceFailure::PresenceDenied => "The security key request was denied",
            DeviceFailure::Cancelled => "Security key request cancelled",
            DeviceFailure::Other => {
                "The security key did not answer correctly: re-insert it and try again"
            }
        },
        LoginError::Rejected { .. }
        | LoginError::Lookup(_)
        | LoginError::UidMismatch { .. }
        | LoginError::RecordsMissing
        | LoginError::Store(_)
        | LoginError::NoUsableCredential(_)
        | LoginError::MissingState { .. } => "Security key authentication failed",
    };
    text.to_string()
}

#[cfg(test)]
pub(crate) fn user_message_for_test(e: &LoginError) -> String {
    user_message(e)
}

#[cfg(test)]
pub(crate) fn failed_line_for_test(e: &LoginError) -> String {
    failed_line("service=sudo user=alice", e)
}
