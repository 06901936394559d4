//! The agent's errors, one enum per layer: [`AgentError`] for a refused request (what the
//! client gets back is decided by [`AgentError::reply`]), [`AskpassError`] for the askpass
//! program, [`ServerError`] for starting and serving the socket. The words are made once, in
//! `Display`; the variants carry the data.

use std::fmt;
use std::io;
use std::path::PathBuf;
use std::process::ExitStatus;
use std::time::Duration;

use ctap_core::flows::uv::UvError;
use ctap_core::ssh::SshError;
use ctap_core::text::{printable, quoted};
use ctap_core::transport::ctap2::CtapError;
use ctap_core::transport::device::TransportError;

use crate::protocol::Response;

/// Why the agent refused a request.
#[derive(Debug)]
pub enum AgentError {
    /// The message could not be parsed.
    Protocol(SshError),
    /// A message type the agent does not implement.
    UnsupportedMessage(u8),
    /// An extension the agent does not implement (or `query` while locked).
    UnsupportedExtension(String),
    /// The agent is locked: only unlock and session-bind are served.
    Locked,
    /// No visible identity has this public key.
    NoSuchIdentity,
    /// A key whose application is not `ssh:` asked to sign data that is not SSH's.
    NotSshApplication {
        fingerprint: String,
        application: String,
    },
    /// A userauth request for another session than the one the connection is bound to.
    OtherSession,
    /// The identity needs the user's confirmation and none was given.
    NotConfirmed,
    /// The askpass program is needed but none is configured.
    NoAskpass(AskpassPurpose),
    /// The askpass program failed.
    Askpass(AskpassError),
    /// Another request holds the security key for longer than the touch timeout.
    DeviceBusy,
    /// The configured key cannot be opened (`source` is `None` when no key was found).
    Open {
        uri: String,
        source: Option<CtapError>,
    },
    /// The key refused the PIN.
    WrongPin,
    /// The PIN from askpass cannot be sent (too short, too long).
    BadPin(CtapError),
    /// User verification cannot be obtained (no PIN set, PIN blocked, the key failed).
    Uv(UvError),
    /// The key or the SSH signing layer failed.
    Key(SshError),
    /// Adding the identity would pass the agent's limits.
    Limits {
        fingerprint: String,
        comment: String,
        count: usize,
        bytes: usize,
        max_count: usize,
        max_bytes: usize,
    },
    /// A certificate for another key than the credential whose key handle it came with.
    CertificateForAnotherKey {
        key_id: String,
        certified: String,
        credential: String,
        comment: String,
    },
    /// `ssh-add -x` while locked, or with an empty passphrase.
    CannotLock,
    /// The lock passphrase could not be hashed.
    LockHash,
    /// Unlock while not locked.
    NotLocked,
    /// A wrong unlock passphrase; the next attempt waits `delay`.
    WrongPassphrase { in_a_row: u32, delay: Duration },
    /// A session-bind@openssh.com request was refused.
    Bind(BindError),
}

/// What the askpass program would have been asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AskpassPurpose {
    Confirm,
    Pin,
}

/// Why a session binding was refused (OpenSSH's rules).
#[derive(Debug)]
pub enum BindError {
    Malformed(SshError),
    SessionIdLength(usize),
    HostSignature(SshError),
    AlreadyBoundForAuthentication,
    HostKeyChanged,
    TooMany,
}

/// Why the askpass program gave no answer.
#[derive(Debug)]
pub enum AskpassError {
    Spawn { program: PathBuf, source: io::Error },
    Cancelled { program: PathBuf },
    NotUtf8 { program: PathBuf },
    Timeout { program: PathBuf, timeout: Duration },
}

/// Why the agent could not start or keep serving.
#[derive(Debug)]
pub enum ServerError {
    BadDevice(TransportError),
    NoHome,
    NoRuntimeDir,
    CurrentDir(io::Error),
    OwnExecutable(io::Error),
    Start(io::Error),
    ExitedAtStart(ExitStatus),
    StartTimeout,
    NotASocket(PathBuf),
    AlreadyListening(PathBuf),
    RemoveStale { path: PathBuf, source: io::Error },
    Listen { path: PathBuf, source: io::Error },
    Permissions { path: PathBuf, source: io::Error },
    Signals(nix::Error),
}

impl AgentError {
    /// The answer the client gets. No wildcard: a new refusal is placed here before it compiles.
    pub fn reply(&self) -> Response {
        match self {
            AgentError::Bind(_) => Response::ExtensionFailure,
            AgentError::Protocol(_)
            | AgentError::UnsupportedMessage(_)
            | AgentError::UnsupportedExtension(_)
            | AgentError::Locked
            | AgentError::NoSuchIdentity
            | AgentError::NotSshApplication { .. }
            | AgentError::OtherSession
            | AgentError::NotConfirmed
            | AgentError::NoAskpass(_)
            | AgentError::Askpass(_)
            | AgentError::DeviceBusy
            | AgentError::Open { .. }
            | AgentError::WrongPin
            | AgentError::BadPin(_)
            | AgentError::Uv(_)
            | AgentError::Key(_)
            | AgentError::Limits { .. }
            | AgentError::CertificateForAnotherKey { .. }
            | AgentError::CannotLock
            | AgentError::LockHash
            | AgentError::NotLocked
            | AgentError::WrongPassphrase { .. } => Response::Failure,
        }
    }
}

impl fmt::Display for AgentError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AgentError::Protocol(e) => e.fmt(f),
            AgentError::UnsupportedMessage(t) => write!(f, "unsupported message type {t}"),
            AgentError::UnsupportedExtension(name) => {
                write!(f, "unsupported extension {}", quoted(name))
            }
            AgentError::Locked => f.write_str("the agent is locked"),
            AgentError::NoSuchIdentity => f.write_str("no such identity"),
            AgentError::NotSshApplication {
                fingerprint,
                application,
            } => write!(
                f,
                "key {fingerprint} has application {}, which is not ssh:, and the data is neither \
                 an SSH userauth request nor an SSHSIG blob",
                quoted(application)
            ),
            AgentError::OtherSession => f.write_str(
                "userauth request for a session other than the one this connection is bound to",
            ),
            AgentError::NotConfirmed => f.write_str("the user did not confirm"),
            AgentError::NoAskpass(AskpassPurpose::Confirm) => f.write_str(
                "the key needs confirmation but no askpass program is configured",
            ),
            AgentError::NoAskpass(AskpassPurpose::Pin) => f.write_str(
                "the key needs a PIN but no askpass program is configured (--askpass or SSH_ASKPASS)",
            ),
            AgentError::Askpass(e) => e.fmt(f),
            AgentError::DeviceBusy => f.write_str("the security key is busy with another request"),
            AgentError::Open { uri, source: Some(e) } => write!(f, "cannot open {uri}: {e}"),
            AgentError::Open { uri, source: None } => {
                write!(f, "cannot open {uri}: no security key")
            }
            AgentError::WrongPin => f.write_str("wrong PIN"),
            AgentError::BadPin(e) => e.fmt(f),
            AgentError::Uv(e) => write!(f, "user verification failed: {e}"),
            AgentError::Key(e) => e.fmt(f),
            AgentError::Limits {
                fingerprint,
                comment,
                count,
                bytes,
                max_count,
                max_bytes,
            } => write!(
                f,
                "{fingerprint} ({}) not added: the agent holds {count} added identities of \
                 {bytes} bytes, the limit is {max_count} identities and {max_bytes} bytes \
                 (remove some with `ssh-add -d` or `ssh-add -D`)",
                printable(comment)
            ),
            AgentError::CertificateForAnotherKey {
                key_id,
                certified,
                credential,
                comment,
            } => write!(
                f,
                "certificate {} certifies {certified}, but its key handle is that of {credential} \
                 ({}): add the certificate made for that key (`ssh-keygen -L -f CERT` shows which \
                 key a certificate certifies)",
                quoted(key_id),
                printable(comment)
            ),
            AgentError::CannotLock => {
                f.write_str("already locked, or an empty passphrase")
            }
            AgentError::LockHash => {
                f.write_str("cannot hash the lock passphrase: the agent stays unlocked")
            }
            AgentError::NotLocked => f.write_str("the agent is not locked"),
            AgentError::WrongPassphrase { in_a_row, delay } => write!(
                f,
                "wrong passphrase ({in_a_row} in a row; waiting {} ms before the next attempt)",
                delay.as_millis()
            ),
            AgentError::Bind(e) => e.fmt(f),
        }
    }
}

impl fmt::Display for BindError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BindError::Malformed(e) | BindError::HostSignature(e) => e.fmt(f),
            BindError::SessionIdLength(n) => write!(f, "bad session id length ({n} bytes)"),
            BindError::AlreadyBoundForAuthentication => {
                f.write_str("connection already bound for authentication")
            }
            BindError::HostKeyChanged => {
                f.write_str("session id already bound to another host key")
            }
            BindError::TooMany => f.write_str("too many session bindings"),
        }
    }
}

impl fmt::Display for AskpassError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AskpassError::Spawn { program, source } => {
                write!(f, "cannot run {}: {source}", program.display())
            }
            AskpassError::Cancelled { program } => write!(f, "{} was cancelled", program.display()),
            AskpassError::NotUtf8 { program } => write!(
                f,
                "{} printed something that is not UTF-8",
                program.display()
            ),
            AskpassError::Timeout { program, timeout } => write!(
                f,
                "{} did not answer within {}s",
                program.display(),
                timeout.as_secs()
            ),
        }
    }
}

impl fmt::Display for ServerError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ServerError::BadDevice(e) => write!(f, "--device: {e}"),
            ServerError::NoHome => {
                f.write_str("cannot find the home directory: set HOME or pass --credentials")
            }
            ServerError::NoRuntimeDir => {
                f.write_str("XDG_RUNTIME_DIR is not set: name a socket with -a SOCKET")
            }
            ServerError::CurrentDir(e) => write!(f, "current directory: {e}"),
            ServerError::OwnExecutable(e) => write!(f, "cannot find my own executable: {e}"),
            ServerError::Start(e) => write!(f, "cannot start the agent: {e}"),
            ServerError::ExitedAtStart(status) => {
                write!(f, "the agent exited at start ({status})")
            }
            ServerError::StartTimeout => {
                f.write_str("the agent did not start listening within 10 s")
            }
            ServerError::NotASocket(p) => write!(f, "{} exists and is not a socket", p.display()),
            ServerError::AlreadyListening(p) => {
                write!(f, "another agent is listening on {}", p.display())
            }
            ServerError::RemoveStale { path, source } => {
                write!(f, "cannot remove stale {}: {source}", path.display())
            }
            ServerError::Listen { path, source } => {
                write!(f, "cannot listen on {}: {source}", path.display())
            }
            ServerError::Permissions { path, source } => {
                write!(f, "{}: {source}", path.display())
            }
            ServerError::Signals(e) => write!(f, "cannot block signals: {e}"),
        }
    }
}

impl std::error::Error for AgentError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            AgentError::Protocol(e) | AgentError::Key(e) => Some(e),
            AgentError::Askpass(e) => Some(e),
            AgentError::Open {
                source: Some(e), ..
            }
            | AgentError::BadPin(e) => Some(e),
            AgentError::Bind(e) => Some(e),
            AgentError::Uv(e) => Some(e),
            AgentError::Open { source: None, .. }
            | AgentError::UnsupportedMessage(_)
            | AgentError::UnsupportedExtension(_)
            | AgentError::Locked
            | AgentError::NoSuchIdentity
            | AgentError::NotSshApplication { .. }
            | AgentError::OtherSession
            | AgentError::NotConfirmed
            | AgentError::NoAskpass(_)
            | AgentError::DeviceBusy
            | AgentError::WrongPin
            | AgentError::Limits { .. }
            | AgentError::CertificateForAnotherKey { .. }
            | AgentError::CannotLock
            | AgentError::LockHash
            | AgentError::NotLocked
            | AgentError::WrongPassphrase { .. } => None,
        }
    }
}

impl std::error::Error for BindError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            BindError::Malformed(e) | BindError::HostSignature(e) => Some(e),
            BindError::SessionIdLength(_)
            | BindError::AlreadyBoundForAuthentication
            | BindError::HostKeyChanged
            | BindError::TooMany => None,
        }
    }
}

impl std::error::Error for AskpassError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            AskpassError::Spawn { source, .. } => Some(source),
            AskpassError::Cancelled { .. }
            | AskpassError::NotUtf8 { .. }
            | AskpassError::Timeout { .. } => None,
        }
    }
}

impl std::error::Error for ServerError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            ServerError::BadDevice(e) => Some(e),
            ServerError::CurrentDir(e) | ServerError::OwnExecutable(e) | ServerError::Start(e) => {
                Some(e)
            }
            ServerError::RemoveStale { source, .. }
            | ServerError::Listen { source, .. }
            | ServerError::Permissions { source, .. } => Some(source),
            ServerError::Signals(e) => Some(e),
            ServerError::NoHome
            | ServerError::NoRuntimeDir
            | ServerError::ExitedAtStart(_)
            | ServerError::StartTimeout
            | ServerError::NotASocket(_)
            | ServerError::AlreadyListening(_) => None,
        }
    }
}

impl From<AskpassError> for AgentError {
    fn from(e: AskpassError) -> Self {
        AgentError::Askpass(e)
    }
}

impl From<BindError> for AgentError {
    fn from(e: BindError) -> Self {
        AgentError::Bind(e)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::error::Error;

    use ctap_core::transport::ctap2::{CborProblem, CtapStatus, InputProblem, Misbehaviour};

    fn every_agent_error() -> Vec<AgentError> {
        let program = || PathBuf::from("/usr/bin/ssh-askpass");
        vec![
            AgentError::Protocol(SshError::Malformed(ctap_core::ssh::Malformed::Truncated {
                field: "key type",
                needed: 4,
                left: 1,
            })),
            AgentError::UnsupportedMessage(99),
            AgentError::UnsupportedExtension("x@example.com".into()),
            AgentError::Locked,
            AgentError::NoSuchIdentity,
            AgentError::NotSshApplication {
                fingerprint: "SHA256:abc".into(),
                application: "pam://host".into(),
            },
            AgentError::OtherSession,
            AgentError::NotConfirmed,
            AgentError::NoAskpass(AskpassPurpose::Confirm),
            AgentError::NoAskpass(AskpassPurpose::Pin),
            AgentError::Askpass(AskpassError::Spawn {
                program: program(),
                source: io::Error::from(io::ErrorKind::NotFound),
            }),
            AgentError::Askpass(AskpassError::Cancelled { program: program() }),
            AgentError::Askpass(AskpassError::NotUtf8 { program: program() }),
            AgentError::Askpass(AskpassError::Timeout {
                program: program(),
                timeout: Duration::from_secs(120),
            }),
            AgentError::DeviceBusy,
            AgentError::Open {
                uri: "auto".into(),
                source: None,
            },
            AgentError::Open {
                uri: "auto".into(),
                source: Some(CtapError::Misbehaved(Misbehaviour::Cbor(
                    CborProblem::Truncated,
                ))),
            },
            AgentError::WrongPin,
            AgentError::BadPin(CtapError::InvalidInput(InputProblem::PinTooShort)),
            AgentError::Uv(UvError::Refused(ctap_core::flows::uv::UvRefusal::NoPin)),
            AgentError::Key(SshError::Ctap(CtapError::Status(
                CtapStatus::OperationDenied,
            ))),
            AgentError::Limits {
                fingerprint: "SHA256:abc".into(),
                comment: "laptop".into(),
                count: 1000,
                bytes: 10,
                max_count: 1000,
                max_bytes: 4096,
            },
            AgentError::CertificateForAnotherKey {
                key_id: "alice".into(),
                certified: "SHA256:abc".into(),
                credential: "SHA256:def".into(),
                comment: "laptop".into(),
            },
            AgentError::CannotLock,
            AgentError::LockHash,
            AgentError::NotLocked,
            AgentError::WrongPassphrase {
                in_a_row: 5,
                delay: Duration::from_millis(500),
            },
            AgentError::Bind(BindError::Malformed(SshError::Malformed(
                ctap_core::ssh::Malformed::TooLong {
                    field: "session id",
                },
            ))),
            AgentError::Bind(BindError::SessionIdLength(0)),
            AgentError::Bind(BindError::HostSignature(SshError::Refused(
                ctap_core::ssh::Refusal::HostSignature,
            ))),
            AgentError::Bind(BindError::AlreadyBoundForAuthentication),
            AgentError::Bind(BindError::HostKeyChanged),
            AgentError::Bind(BindError::TooMany),
        ]
    }

    /// Only a refused session binding is answered with the extension failure; everything
    /// else is SSH_AGENT_FAILURE. Decided by the variant, not by the message.
    #[test]
    fn the_reply_follows_the_variant() {
        let failure = Response::Failure.encode();
        let ext_failure = Response::ExtensionFailure.encode();
        for e in every_agent_error() {
            let want = if matches!(e, AgentError::Bind(_)) {
                &ext_failure
            } else {
                &failure
            };
            assert_eq!(&e.reply().encode(), want, "{e}");
        }
    }

    /// Every refusal reads as a sentence (no Debug output), and wrapped errors are `source()`.
    #[test]
    fn agent_errors_read_as_text_and_expose_their_cause() {
        for e in every_agent_error() {
            let text = e.to_string();
            assert!(!text.is_empty());
            for mark in [
                "{ ",
                " }",
                "Some(",
                "None",
                "Malformed(",
                "Ctap(",
                "Status(",
            ] {
                assert!(!text.contains(mark), "Debug text {mark:?} in {text:?}");
            }
        }
        let spawn = AgentError::Askpass(AskpassError::Spawn {
            program: PathBuf::from("/nonexistent"),
            source: io::Error::from(io::ErrorKind::NotFound),
        });
        let askpass = spawn.source().expect("the askpass error");
        assert!(askpass.source().is_some(), "the io::Error under it");
        assert!(AgentError::WrongPin.source().is_none());
        // The words tests and admins grep for stay.
        assert_eq!(AgentError::WrongPin.to_string(), "wrong PIN");
        assert!(AgentError::NoAskpass(AskpassPurpose::Pin)
            .to_string()
            .contains("no askpass program"));
        assert!(AgentError::WrongPassphrase {
            in_a_row: 5,
            delay: Duration::from_millis(500)
        }
        .to_string()
        .contains("5 in a row; waiting 500 ms"));
        let server = ServerError::Listen {
            path: "/run/user/1/a.sock".into(),
            source: io::Error::from(io::ErrorKind::AddrInUse),
        };
        assert!(server.source().is_some());
        assert!(server
            .to_string()
            .starts_with("cannot listen on /run/user/1/a.sock: "));
    }
}
