//! Root's policy: `/etc/ctap/pam_ctap.toml` (the PAM module applies its arguments over it:
//! pam_ctap/src/arguments.rs).
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

/// What a login from another host (PAM_RHOST set, e.g. sshd) does: docs/ARCHITECTURE.md §8.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RemotePolicy {
    /// Ask for the key as for a local login (it must be reachable, e.g. forwarded).
    Require,
    /// Do not ask: the module returns PAM_IGNORE and the rest of the stack decides.
    Skip,
    /// Refuse the login.
    Deny,
}

impl RemotePolicy {
    /// What this policy does with a login whose PAM_RHOST is `remote_host`. An empty or absent
    /// PAM_RHOST is a local login; `Require` is today's behaviour for every login.
    pub fn applies(self, remote_host: Option<&str>) -> Option<RemotePolicy> {
        match (self, remote_host) {
            (RemotePolicy::Require, _) | (_, None) | (_, Some("")) => None,
            (p, Some(_)) => Some(p),
        }
    }
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
    /// Refuse credentials without an hmac-secret check: every U2F credential (a U2F-only key's
    /// enrollment, an old-format pam-u2f line) and FIDO2 ones enrolled without hmac-secret.
    pub require_hmac_secret: bool,
    /// The PIN prompt's text.
    pub pin_prompt: String,
    /// The cue when several keys hold a credential and a touch chooses one.
    pub select_prompt: String,
    /// The cue before built-in user verification (a fingerprint) is awaited.
    pub uv_prompt: String,
    /// Logins with PAM_RHOST set (remote sessions).
    pub remote: RemotePolicy,
    /// A file that exists while a touch is awaited (`%u`: the account's uid), for desktops that
    /// watch for it as they do for pam-u2f's. Only root's file sets it.
    pub authpending_file: Option<String>,
    /// A program (absolute path, then arguments) started when a touch is awaited, with the
    /// service, the user and the remote host appended. Only root's file sets it.
    pub notify_command: Vec<String>,
    /// `[directory]`: the credentials come from LDAP, not from `records_dir` (ARCHITECTURE.md §12).
    pub directory: Option<crate::store::directory::DirectoryConfig>,
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
            require_hmac_secret: false,
            pin_prompt: crate::text::DEFAULT_PIN_PROMPT.into(),
            select_prompt: "Touch the security key you want to use".into(),
            uv_prompt: "Verify yourself on your security key (fingerprint)".into(),
            remote: RemotePolicy::Require,
            authpending_file: None,
            notify_command: Vec::new(),
            directory: None,
        }
    }
}

/// Why an `authpending_file` template is unusable.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum TemplateError {
    NotAbsolute,
    /// `%` followed by something other than `u` or `%`.
    UnknownEscape,
}

/// `template` with `%u` replaced by `uid` and `%%` by `%`.
fn expand_template(template: &str, uid: u32) -> Result<PathBuf, TemplateError> {
    let mut out = String::with_capacity(template.len() + 8);
    let mut chars = template.chars();
    while let Some(c) = chars.next() {
        if c != '%' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('u') => out.push_str(&uid.to_string()),
            Some('%') => out.push('%'),
            _ => return Err(TemplateError::UnknownEscape),
        }
    }
    let path = PathBuf::from(out);
    if path.is_absolute() {
        Ok(path)
    } else {
        Err(TemplateError::NotAbsolute)
    }
}

/// `device = "URI"`, or a list of `unix:` URIs (several virtual keys).
fn de_device<'de, D: serde::Deserializer<'de>>(d: D) -> Result<DeviceUri, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum OneOrMany {
        One(String),
        Many(Vec<String>),
    }
    match OneOrMany::deserialize(d)? {
        OneOrMany::One(s) => s.parse().map_err(serde::de::Error::custom),
        OneOrMany::Many(list) => DeviceUri::from_list(&list).map_err(serde::de::Error::custom),
    }
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
    /// A file that parses but asks for something unusable.
    Invalid {
        path: PathBuf,
        problem: PolicyInvalid,
    },
}

/// A policy that parses but cannot be used, whether from root's file or the module's arguments.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PolicyInvalid {
    /// `timeout` outside 1..=600 seconds.
    Timeout(u64),
    /// `rp_id = ""`.
    EmptyRpId,
    /// A directory or socket setting that is not an absolute path (the setting's name).
    NotAbsolute(&'static str),
    /// `authpending_file` uses a `%` escape other than `%u` and `%%`.
    TemplateEscape(&'static str),
    /// `[directory]` cannot be used (what is wrong, in words).
    Directory(String),
}

impl fmt::Display for PolicyInvalid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PolicyInvalid::Timeout(t) => {
                write!(f, "timeout = {t}: must be between 1 and 600 seconds")
            }
            PolicyInvalid::EmptyRpId => f.write_str("rp_id is empty: remove it or name the RP ID"),
            PolicyInvalid::NotAbsolute(name) => write!(f, "{name} must be an absolute path"),
            PolicyInvalid::TemplateEscape(name) => {
                write!(f, "{name}: only %u (the uid) and %% may follow a %")
            }
            PolicyInvalid::Directory(problem) => f.write_str(problem),
        }
    }
}

impl std::error::Error for PolicyInvalid {}

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
            ConfigError::Invalid { path, problem } => write!(f, "{}: {problem}", path.display()),
        }
    }
}

impl std::error::Error for ConfigError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            ConfigError::File(e) => Some(e),
            ConfigError::Invalid { problem, .. } => Some(problem),
            ConfigError::Parse { .. } => None,
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
        policy.validate().map_err(|problem| ConfigError::Invalid {
            path: path.to_path_buf(),
            problem,
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

    /// What no setting may be, whoever set it: root's file, or the PAM module's arguments over
    /// it (which the module checks again after applying them).
    pub fn validate(&self) -> Result<(), PolicyInvalid> {
        if self.timeout == 0 || self.timeout > 600 {
            return Err(PolicyInvalid::Timeout(self.timeout));
        }
        if self.rp_id.as_deref() == Some("") {
            return Err(PolicyInvalid::EmptyRpId);
        }
        for (name, dir) in [
            ("records_dir", &self.records_dir),
            ("state_dir", &self.state_dir),
            ("log_socket", &self.log_socket),
        ] {
            if !dir.is_absolute() {
                return Err(PolicyInvalid::NotAbsolute(name));
            }
        }
        if let Some(t) = &self.authpending_file {
            match expand_template(t, 0) {
                Ok(_) => {}
                Err(TemplateError::NotAbsolute) => {
                    return Err(PolicyInvalid::NotAbsolute("authpending_file"))
                }
                Err(TemplateError::UnknownEscape) => {
                    return Err(PolicyInvalid::TemplateEscape("authpending_file"))
                }
            }
        }
        if let Some(program) = self.notify_command.first() {
            if !Path::new(program).is_absolute() {
                return Err(PolicyInvalid::NotAbsolute("notify_command's program"));
            }
        }
        if let Some(problem) = self
            .directory
            .as_ref()
            .and_then(|d| d.problem(self.timeout))
        {
            return Err(PolicyInvalid::Directory(problem));
        }
        if self.directory.is_some() && self.per_user_records {
            // The directory replaces the records files, the user's own included.
            return Err(PolicyInvalid::Directory(
                "[directory] and per_user_records = true exclude each other: the directory replaces every records file".into(),
            ));
        }
        Ok(())
    }

    /// The `authpending_file` for the account with `uid`, if root set one.
    pub fn authpending_path(&self, uid: u32) -> Option<PathBuf> {
        expand_template(self.authpending_file.as_deref()?, uid).ok()
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
    fn notification_settings_are_checked_at_load() {
        let parse = |t: &str| Policy::parse(Path::new("/etc/x.toml"), t);
        let p = parse(
            "authpending_file = \"/run/user/%u/ctap-authpending\"\n\
             notify_command = [\"/usr/local/bin/key-wanted\", \"--urgent\"]\n",
        )
        .unwrap();
        assert_eq!(
            p.authpending_path(1000),
            Some(PathBuf::from("/run/user/1000/ctap-authpending"))
        );
        assert_eq!(p.notify_command.len(), 2);
        assert_eq!(Policy::default().authpending_path(0), None);
        for (text, word) in [
            ("authpending_file = \"run/%u\"", "absolute"),
            ("authpending_file = \"/run/%n\"", "only %u"),
            ("notify_command = [\"notify-send\"]", "absolute"),
        ] {
            let err = parse(text).unwrap_err().to_string();
            assert!(err.contains(word), "{text}: {err}");
        }
        assert_eq!(
            parse("remote = \"skip\"")
                .unwrap()
                .remote
                .applies(Some("h")),
            Some(RemotePolicy::Skip)
        );
        assert_eq!(RemotePolicy::Deny.applies(Some("")), None);
        assert_eq!(RemotePolicy::Deny.applies(None), None);
        assert_eq!(RemotePolicy::Require.applies(Some("h")), None);
    }

    #[test]
    fn directory_section_parses_and_its_timeout_must_fit() {
        let text = "timeout = 10\n[directory]\nuri = \"ldapi://%2Frun%2Fldapi\"\nbase_dn = \"dc=x\"\nrp_id = \"x.org\"\nquery_timeout = 3\n";
        let p = Policy::parse(Path::new("/etc/x.toml"), text).unwrap();
        assert_eq!(p.directory.unwrap().query_timeout, 3);
        let err = Policy::parse(Path::new("/etc/x.toml"), &text.replace("= 3", "= 10"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("query_timeout"), "{err}");
        let err = Policy::parse(Path::new("/etc/x.toml"), &format!("{text}bogus = 1\n"))
            .unwrap_err()
            .to_string();
        assert!(err.starts_with("/etc/x.toml:7:"), "{err}");
        let err = Policy::parse(
            Path::new("/etc/x.toml"),
            &format!("per_user_records = true\n{text}"),
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("per_user_records"), "{err}");
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
}
