//! Root's policy: `/etc/ctap/pam_ctap.toml`, overridden by PAM module arguments.
//!
//! The PAM module trusts nothing else: not the environment, not a file the user can write. The
//! file must be root-owned and not group/world-writable; an unknown key, a wrong type or an
//! unknown module argument is an error naming the file and line, or the argument.

use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use crate::store::credential::toml_error_line;
use crate::store::credential::CredentialStore;
use crate::store::fs::{self, FileError, Ownership};
use crate::transport::device::DeviceUri;

pub const DEFAULT_CONFIG: &str = "/etc/ctap/pam_ctap.toml";

/// What login requires of the user beyond the touch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum UvPolicy {
    /// Follow each credential's enrolled requirement.
    Enrolled,
    /// Every credential must have been enrolled with user verification; others are refused.
    Required,
}

/// How the PIN is obtained when user verification is needed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum PinPolicy {
    /// Ask through the PAM conversation (or the terminal).
    Prompt,
    /// Never ask for a PIN: only built-in user verification (fingerprint) can satisfy UV.
    UvOnly,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum CounterPolicy {
    /// Keys that keep no counter (always 0) are accepted.
    AllowZero,
    /// A key must keep a counter.
    Require,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CloneAction {
    /// Deny this login, log the regression.
    Deny,
    /// Deny and suspend the credential until `ctap-enroll unsuspend`.
    Suspend,
}

/// The whole policy, with defaults for everything.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Policy {
    #[serde(deserialize_with = "de_device")]
    pub device: DeviceUri,
    pub rp_id: Option<String>,
    pub user_verification: UvPolicy,
    pub pin: PinPolicy,
    pub counter: CounterPolicy,
    pub clone_action: CloneAction,
    /// Seconds to wait for a touch.
    pub timeout: u64,
    pub cue: bool,
    pub cue_prompt: String,
    pub nouserok: bool,
    pub records_dir: PathBuf,
    pub state_dir: PathBuf,
    pub per_user_records: bool,
    pub debug: bool,
    /// A user (besides root) trusted to own a `unix:` device socket and the directories above it,
    /// e.g. the account a virtual-key service runs as. Only root's file sets it.
    pub device_owner: Option<String>,
    /// Where the PAM module sends its syslog lines (a unix socket). Only root's file sets it.
    pub log_socket: PathBuf,
}

impl Default for Policy {
    fn default() -> Self {
        let store = CredentialStore::system();
        Policy {
            device: DeviceUri::Auto,
            rp_id: None,
            user_verification: UvPolicy::Enrolled,
            pin: PinPolicy::Prompt,
            counter: CounterPolicy::AllowZero,
            clone_action: CloneAction::Suspend,
            timeout: 30,
            cue: true,
            cue_prompt: "Touch your security key".into(),
            nouserok: false,
            records_dir: store.records_dir,
            state_dir: store.state_dir,
            per_user_records: false,
            debug: false,
            device_owner: None,
            log_socket: PathBuf::from("/dev/log"),
        }
    }
}

fn de_device<'de, D: serde::Deserializer<'de>>(d: D) -> Result<DeviceUri, D::Error> {
    let s = String::deserialize(d)?;
    s.parse().map_err(serde::de::Error::custom)
}

/// A configuration problem, located.
#[derive(Debug)]
pub enum ConfigError {
    File(FileError),
    Parse {
        path: PathBuf,
        line: Option<usize>,
        message: String,
    },
    /// A PAM module argument that is unknown or malformed.
    Argument {
        argument: String,
        message: String,
    },
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConfigError::File(e) => e.fmt(f),
            ConfigError::Parse {
                path,
                line: Some(l),
                message,
            } => write!(f, "{}:{l}: {message}", path.display()),
            ConfigError::Parse {
                path,
                line: None,
                message,
            } => write!(f, "{}: {message}", path.display()),
            ConfigError::Argument { argument, message } => {
                write!(f, "module argument {argument:?}: {message}")
            }
        }
    }
}

impl std::error::Error for ConfigError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            ConfigError::File(e) => Some(e),
            ConfigError::Parse { .. } | ConfigError::Argument { .. } => None,
        }
    }
}

impl Policy {
    /// Parse policy text; `path` is for messages only.
    pub fn parse(path: &Path, text: &str) -> Result<Self, ConfigError> {
        let policy: Policy = toml::from_str(text).map_err(|e| ConfigError::Parse {
            path: path.to_path_buf(),
            line: toml_error_line(text, &e),
            message: e.message().to_string(),
        })?;
        policy.check().map_err(|message| ConfigError::Parse {
            path: path.to_path_buf(),
            line: None,
            message,
        })?;
        Ok(policy)
    }

    /// Load root's file. Only the built-in [`DEFAULT_CONFIG`] may be absent (the defaults then
    /// apply): a file named explicitly (`config=`) that does not exist is an error, because a
    /// typo there would silently drop what the file requires (`user_verification = "required"`,
    /// `counter = "require"`, `rp_id`). Anything else wrong is an error too.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        match fs::read_trusted(path, Ownership::ROOT) {
            Ok(bytes) => {
                let text = String::from_utf8(bytes).map_err(|_| ConfigError::Parse {
                    path: path.to_path_buf(),
                    line: None,
                    message: "is not UTF-8".into(),
                })?;
                Self::parse(path, &text)
            }
            Err(FileError::NotFound(_)) if path == Path::new(DEFAULT_CONFIG) => {
                Ok(Policy::default())
            }
            Err(e) => Err(ConfigError::File(e)),
        }
    }

    fn check(&self) -> Result<(), String> {
        if self.timeout == 0 || self.timeout > 600 {
            return Err(format!(
                "timeout = {}: must be between 1 and 600 seconds",
                self.timeout
            ));
        }
        if let Some(rp) = &self.rp_id {
            if rp.is_empty() {
                return Err("rp_id is empty".into());
            }
        }
        for (name, dir) in [
            ("records_dir", &self.records_dir),
            ("state_dir", &self.state_dir),
            ("log_socket", &self.log_socket),
        ] {
            if !dir.is_absolute() {
                return Err(format!("{name} must be an absolute path"));
            }
        }
        Ok(())
    }

    /// Apply PAM module arguments (`key=value` or a bare flag) over the file's values. `config=`
    /// is handled by the caller, before loading the file.
    pub fn apply_arguments<'a>(
        &mut self,
        args: impl IntoIterator<Item = &'a str>,
    ) -> Result<(), ConfigError> {
        for arg in args {
            let (key, value) = match arg.split_once('=') {
                Some((k, v)) => (k, Some(v)),
                None => (arg, None),
            };
            let bad = |message: &str| ConfigError::Argument {
                argument: arg.to_string(),
                message: message.to_string(),
            };
            let need = || value.ok_or_else(|| bad("needs a value (key=value)"));
            match key {
                "config" => {}
                "nouserok" | "cue" | "debug" => {
                    let on = match value {
                        None | Some("true") | Some("yes") | Some("1") => true,
                        Some("false") | Some("no") | Some("0") => false,
                        Some(_) => return Err(bad("expected true or false")),
                    };
                    match key {
                        "nouserok" => self.nouserok = on,
                        "cue" => self.cue = on,
                        _ => self.debug = on,
                    }
                }
                "cue_prompt" => self.cue_prompt = need()?.to_string(),
                "timeout" => {
                    self.timeout = need()?.parse().map_err(|_| bad("expected seconds"))?;
                }
                "user_verification" => {
                    self.user_verification = match need()? {
                        "enrolled" => UvPolicy::Enrolled,
                        "required" => UvPolicy::Required,
                        _ => return Err(bad("expected enrolled or required")),
                    }
                }
                "pin" => {
                    self.pin = match need()? {
                        "prompt" => PinPolicy::Prompt,
                        "uv-only" => PinPolicy::UvOnly,
                        _ => return Err(bad("expected prompt or uv-only")),
                    }
                }
                "counter" => {
                    self.counter = match need()? {
                        "allow-zero" => CounterPolicy::AllowZero,
                        "require" => CounterPolicy::Require,
                        _ => return Err(bad("expected allow-zero or require")),
                    }
                }
                "clone_action" => {
                    self.clone_action = match need()? {
                        "deny" => CloneAction::Deny,
                        "suspend" => CloneAction::Suspend,
                        _ => return Err(bad("expected deny or suspend")),
                    }
                }
                "device" => {
                    self.device =
                        need()?
                            .parse()
                            .map_err(|e: crate::transport::device::TransportError| {
                                bad(&e.to_string())
                            })?
                }
                "rp_id" => self.rp_id = Some(need()?.to_string()),
                _ => return Err(bad("unknown argument")),
            }
        }
        self.check().map_err(|message| ConfigError::Argument {
            argument: "(combined)".into(),
            message,
        })
    }

    /// Who may own the `unix:` device socket and its directories: root, the `device_owner`
    /// (resolved now; an unknown name is an error, never "anyone") and the running user, who
    /// is root in the PAM module.
    pub(crate) fn device_owners(&self) -> Result<Vec<u32>, String> {
        let mut owners = vec![0, nix::unistd::geteuid().as_raw()];
        if let Some(name) = &self.device_owner {
            match nix::unistd::User::from_name(name) {
                Ok(Some(u)) => owners.push(u.uid.as_raw()),
                Ok(None) => return Err(format!("device_owner = {name:?}: no such user")),
                Err(e) => return Err(format!("device_owner = {name:?}: {e}")),
            }
        }
        Ok(owners)
    }

    pub fn touch_timeout(&self) -> Duration {
        Duration::from_secs(self.timeout)
    }

    pub fn store(&self) -> CredentialStore {
        CredentialStore {
            records_dir: self.records_dir.clone(),
            state_dir: self.state_dir.clone(),
            per_user_records: self.per_user_records,
        }
    }
}

/// The `config=` argument, if any: the only argument read before the file.
pub fn config_path_from_arguments<'a>(args: impl IntoIterator<Item = &'a str>) -> PathBuf {
    args.into_iter()
        .filter_map(|a| a.strip_prefix("config="))
        .last()
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(DEFAULT_CONFIG))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn full_file_parses_and_defaults_fill_the_rest() {
        let p = Policy::parse(
            Path::new("/etc/ctap/pam_ctap.toml"),
            "device = \"unix:/run/k.sock\"\ncounter = \"require\"\ntimeout = 12\n",
        )
        .unwrap();
        assert_eq!(p.device, DeviceUri::Unix("/run/k.sock".into()));
        assert_eq!(p.counter, CounterPolicy::Require);
        assert_eq!(p.timeout, 12);
        assert_eq!(p.clone_action, CloneAction::Suspend);
        assert!(!p.nouserok);
    }

    #[test]
    fn errors_name_file_and_line() {
        let err = Policy::parse(Path::new("/etc/x.toml"), "timeout = 5\nbogus = 1\n")
            .unwrap_err()
            .to_string();
        assert!(err.starts_with("/etc/x.toml:2:"), "{err}");
        assert!(err.contains("bogus"), "{err}");
        let err = Policy::parse(Path::new("/etc/x.toml"), "\n\ntimeout = \"soon\"\n")
            .unwrap_err()
            .to_string();
        assert!(err.starts_with("/etc/x.toml:3:"), "{err}");
        let err = Policy::parse(Path::new("/etc/x.toml"), "device = \"usb:/x\"\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("unknown scheme"), "{err}");
        let err = Policy::parse(
            Path::new("/etc/x.toml"),
            "cue_prompt = \"Touchez la clé ✓\"\nbogus = 1\n",
        )
        .unwrap_err()
        .to_string();
        assert!(
            err.starts_with("/etc/x.toml:2:"),
            "non-ASCII before the error: {err}"
        );
        let err = Policy::parse(Path::new("/etc/x.toml"), "timeout = 0\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("between 1 and 600"), "{err}");
    }

    #[test]
    fn only_the_default_config_may_be_missing() {
        let missing = Path::new("/etc/ctap/strict.tmol-does-not-exist");
        match Policy::load(missing) {
            Err(ConfigError::File(FileError::NotFound(p))) => assert_eq!(p, missing),
            other => panic!("an explicit missing config must be an error: {other:?}"),
        }
        if !Path::new(DEFAULT_CONFIG).exists() {
            assert_eq!(
                Policy::load(Path::new(DEFAULT_CONFIG)).unwrap(),
                Policy::default()
            );
        }
    }

    #[test]
    fn module_arguments_override_and_unknown_ones_fail() {
        let mut p = Policy::default();
        p.apply_arguments([
            "nouserok",
            "timeout=5",
            "device=unix:/tmp/k",
            "cue_prompt=Tap it",
            "config=/x",
        ])
        .unwrap();
        assert!(p.nouserok);
        assert_eq!(p.timeout, 5);
        assert_eq!(p.cue_prompt, "Tap it");
        let err = Policy::default()
            .apply_arguments(["nosuchopt"])
            .unwrap_err()
            .to_string();
        assert!(err.contains("\"nosuchopt\": unknown argument"), "{err}");
        assert!(Policy::default().apply_arguments(["timeout=abc"]).is_err());
        assert!(Policy::default()
            .apply_arguments(["counter=maybe"])
            .is_err());
        assert!(Policy::default().apply_arguments(["timeout"]).is_err());
        assert_eq!(
            config_path_from_arguments(["debug", "config=/etc/other.toml"]),
            PathBuf::from("/etc/other.toml")
        );
    }
}
