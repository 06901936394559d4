//! Exit codes and the one error line: `ctap-enroll: <what happened>: <what to do>`.

use std::fmt;
use std::io::Write;
use std::process::ExitCode;

use ctap_core::flows::enroll::EnrollError;
use ctap_core::store::admin::AdminError;
use ctap_core::store::check::Finding;
use ctap_core::store::config::ConfigError;
use ctap_core::store::credential::StoreError;
use ctap_core::store::fs::FileError;
use ctap_core::transport::ctap1::Ctap1Error;
use ctap_core::transport::ctap2::{CtapError, CtapStatus, Incompatibility};
use ctap_core::transport::ctaphid::CtapHidError;
use ctap_core::transport::device::TransportError;

/// The documented exit codes (see `ctap-enroll --help`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    Ok = 0,
    Failed = 1,
    Usage = 2,
    NoKey = 3,
}

impl From<Exit> for ExitCode {
    fn from(e: Exit) -> Self {
        ExitCode::from(e as u8)
    }
}

/// A command that did not succeed: why, what to do, and the exit code.
#[derive(Debug)]
pub struct Failure {
    pub code: Exit,
    pub what: String,
    /// Empty when `what` already says what to do.
    pub fix: String,
}

impl Failure {
    pub fn new(code: Exit, what: impl Into<String>, fix: impl Into<String>) -> Self {
        Failure {
            code,
            what: what.into(),
            fix: fix.into(),
        }
    }

    pub fn print(&self) {
        let line = self.to_string();
        let line = ctap_core::text::terminal_safe(&line);
        let _ = writeln!(std::io::stderr().lock(), "ctap-enroll: {line}");
    }
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.fix.is_empty() {
            f.write_str(&self.what)
        } else {
            write!(f, "{}: {}", self.what, self.fix)
        }
    }
}

impl From<Finding> for Failure {
    fn from(f: Finding) -> Self {
        Failure::new(Exit::Usage, f.location() + &f.problem, f.fix)
    }
}

impl From<StoreError> for Failure {
    fn from(e: StoreError) -> Self {
        let mut f: Failure = Finding::from_store_error(&e).into();
        // These are found while reading, before anything is written.
        let read_time = match &e {
            StoreError::Parse { .. }
            | StoreError::Invalid { .. }
            | StoreError::File(FileError::Insecure { .. }) => true,
            StoreError::File(
                FileError::NotFound(_) | FileError::Io { .. } | FileError::LockTimeout(_),
            )
            | StoreError::BadUserName(_)
            | StoreError::Lookup(_) => false,
        };
        if read_time {
            f.fix.push_str("; nothing was changed");
        }
        f
    }
}

impl From<ConfigError> for Failure {
    fn from(e: ConfigError) -> Self {
        Finding::from_config_error(&e).into()
    }
}

/// The key is absent or its URI names nothing.
pub fn is_no_key(e: &CtapError) -> bool {
    matches!(
        e,
        CtapError::Hid(CtapHidError::Transport(
            TransportError::NoDevice | TransportError::Open { .. }
        ))
    )
}

impl From<CtapError> for Failure {
    fn from(e: CtapError) -> Self {
        if is_no_key(&e) {
            let fix = match &e {
                CtapError::Hid(CtapHidError::Transport(TransportError::NoDevice)) => "",
                _ => "check --device or the device in the config (see `ctap-enroll devices`)",
            };
            return Failure::new(Exit::NoKey, e.to_string(), fix);
        }
        let fix = match &e {
            CtapError::Status(CtapStatus::PinInvalid) => "try again with the right PIN",
            CtapError::Status(CtapStatus::PinBlocked | CtapStatus::PinAuthBlocked) => {
                "remove and re-insert the key; if the PIN is blocked for good, reset the key"
            }
            CtapError::Status(
                CtapStatus::UserActionTimeout
                | CtapStatus::ActionTimeout
                | CtapStatus::OperationDenied,
            ) => "run the command again and touch the key when asked",
            CtapError::InvalidInput(_) => "",
            CtapError::DeviceIncompatible(Incompatibility::U2fOnly { .. }) => {
                "use a FIDO2 (CTAP2) security key for this"
            }
            CtapError::Ctap1(Ctap1Error::Registration(_) | Ctap1Error::Misbehaved(_)) => {
                "try again; if it persists, the key is faulty or not genuine"
            }
            _ => "try again; if it persists, check the key with `ctap-enroll devices`",
        };
        Failure::new(Exit::Failed, e.to_string(), fix)
    }
}

impl From<EnrollError> for Failure {
    fn from(e: EnrollError) -> Self {
        let what = e.to_string();
        match e {
            EnrollError::Store(s) => s.into(),
            EnrollError::Device(d) => d.into(),
            EnrollError::Refused(_) => Failure::new(Exit::Failed, what, ""),
            EnrollError::Rejected(_) => Failure::new(
                Exit::Failed,
                what,
                "try again; if it persists, the key is faulty or not genuine",
            ),
        }
    }
}

impl From<AdminError> for Failure {
    fn from(e: AdminError) -> Self {
        match e {
            AdminError::Store(s) => s.into(),
            AdminError::NotFound { ref user, .. } => {
                let fix = format!("see `ctap-enroll list --user {user}`");
                Failure::new(Exit::Failed, e.to_string(), fix)
            }
            AdminError::Refused(r) => Failure::new(Exit::Failed, r.to_string(), ""),
        }
    }
}
