//! The policy file: one `[client.NAME]` section per client (a listening socket or a named stdio
//! client), root-owned, read through ctap-core's trusted open, every error with file:line.
//!
//! ```toml
//! [client.devbox]
//! rp_ids = ["example.org", "*.example.org"]
//! make_credential = true        # default true
//! user_verification = true      # PIN/UV tokens and uv=true requests; default true
//! commands = ["getInfo", "getAssertion", "getNextAssertion", "selection"]  # default: see DEFAULT_COMMANDS
//! ```

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use sha2::{Digest, Sha256};

use ctap_core::store::fs::{read_trusted, Ownership};

/// What a client may ask for, by name in the policy file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Deserialize)]
pub enum Command {
    #[serde(rename = "getInfo")]
    GetInfo,
    #[serde(rename = "makeCredential")]
    MakeCredential,
    #[serde(rename = "getAssertion")]
    GetAssertion,
    #[serde(rename = "getNextAssertion")]
    GetNextAssertion,
    #[serde(rename = "clientPIN")]
    ClientPin,
    #[serde(rename = "selection")]
    Selection,
    #[serde(rename = "reset")]
    Reset,
    #[serde(rename = "credentialManagement")]
    CredentialManagement,
    #[serde(rename = "authenticatorConfig")]
    AuthenticatorConfig,
    #[serde(rename = "bioEnrollment")]
    BioEnrollment,
    #[serde(rename = "largeBlobs")]
    LargeBlobs,
    /// Vendor commands (CTAP2 0x40..=0xBF other than the preview commands).
    #[serde(rename = "vendor")]
    Vendor,
    /// CTAP1/U2F over CTAPHID_MSG: version, and register/authenticate for allowed app IDs.
    #[serde(rename = "u2f")]
    U2f,
    /// CTAPHID_WINK.
    #[serde(rename = "wink")]
    Wink,
}

impl Command {
    pub fn name(self) -> &'static str {
        match self {
            Command::GetInfo => "getInfo",
            Command::MakeCredential => "makeCredential",
            Command::GetAssertion => "getAssertion",
            Command::GetNextAssertion => "getNextAssertion",
            Command::ClientPin => "clientPIN",
            Command::Selection => "selection",
            Command::Reset => "reset",
            Command::CredentialManagement => "credentialManagement",
            Command::AuthenticatorConfig => "authenticatorConfig",
            Command::BioEnrollment => "bioEnrollment",
            Command::LargeBlobs => "largeBlobs",
            Command::Vendor => "vendor",
            Command::U2f => "u2f",
            Command::Wink => "wink",
        }
    }
}

/// The commands a client section without `commands` allows.
pub const DEFAULT_COMMANDS: &[Command] = &[
    Command::GetInfo,
    Command::MakeCredential,
    Command::GetAssertion,
    Command::GetNextAssertion,
    Command::ClientPin,
    Command::Selection,
    Command::U2f,
    Command::Wink,
];

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct PolicyFile {
    #[serde(default)]
    client: BTreeMap<String, toml::Spanned<ClientSection>>,
}

fn yes() -> bool {
    true
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ClientSection {
    rp_ids: Vec<toml::Spanned<String>>,
    #[serde(default = "yes")]
    make_credential: bool,
    #[serde(default = "yes")]
    user_verification: bool,
    #[serde(default)]
    commands: Option<Vec<Command>>,
}

/// One allowed RP ID: exact, or `*.suffix` matching one or more whole labels before the suffix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RpPattern {
    Exact(String),
    Suffix(String),
}

impl RpPattern {
    fn parse(s: &str) -> Result<Self, String> {
        if s.is_empty() {
            return Err("an empty RP ID".into());
        }
        if s.chars().any(|c| c.is_control() || c.is_whitespace()) {
            return Err(format!(
                "RP ID {} holds whitespace or control characters",
                ctap_core::text::quoted(s)
            ));
        }
        match s.strip_prefix("*.") {
            Some(suffix) => {
                let labels: Vec<&str> = suffix.split('.').collect();
                let dns_label = |l: &&str| {
                    !l.is_empty()
                        && l.len() <= 63
                        && l.bytes()
                            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
                };
                if !labels.iter().all(dns_label) {
                    return Err(format!(
                        "wildcard {}: after `*.` must come a lowercase DNS name",
                        ctap_core::text::quoted(s)
                    ));
                }
                if labels.len() < 2 {
                    return Err(format!(
                        "wildcard {} covers a whole top-level domain: name at least two labels \
                         after `*.`",
                        ctap_core::text::quoted(s)
                    ));
                }
                Ok(RpPattern::Suffix(suffix.to_string()))
            }
            None if s.contains('*') => Err(format!(
                "RP ID {}: `*` is allowed only as a whole first label (`*.example.org`)",
                ctap_core::text::quoted(s)
            )),
            None => Ok(RpPattern::Exact(s.to_string())),
        }
    }

    pub fn matches(&self, rp_id: &str) -> bool {
        match self {
            RpPattern::Exact(e) => e == rp_id,
            RpPattern::Suffix(suffix) => rp_id
                .strip_suffix(suffix.as_str())
                .and_then(|head| head.strip_suffix('.'))
                .is_some_and(|head| !head.is_empty() && head.split('.').all(|l| !l.is_empty())),
        }
    }
}

/// What one client may do.
#[derive(Debug, Clone)]
pub struct ClientPolicy {
    pub name: String,
    pub rp_ids: Vec<RpPattern>,
    pub make_credential: bool,
    pub user_verification: bool,
    pub commands: Vec<Command>,
    /// SHA-256 of every exact RP ID: the U2F app IDs this client may use.
    app_id_hashes: Vec<[u8; 32]>,
}

impl ClientPolicy {
    pub fn new(
        name: &str,
        rp_ids: Vec<RpPattern>,
        make_credential: bool,
        user_verification: bool,
        commands: Vec<Command>,
    ) -> Self {
        let app_id_hashes = rp_ids
            .iter()
            .filter_map(|p| match p {
                RpPattern::Exact(e) => Some(Sha256::digest(e.as_bytes()).into()),
                RpPattern::Suffix(_) => None,
            })
            .collect();
        ClientPolicy {
            name: name.to_string(),
            rp_ids,
            make_credential,
            user_verification,
            commands,
            app_id_hashes,
        }
    }

    pub fn allows(&self, command: Command) -> bool {
        self.commands.contains(&command)
    }

    pub fn rp_allowed(&self, rp_id: &str) -> bool {
        self.rp_ids.iter().any(|p| p.matches(rp_id))
    }

    /// The exact RP ID whose SHA-256 is `hash`, if the client may use it (U2F app IDs).
    pub fn rp_for_app_id_hash(&self, hash: &[u8]) -> Option<&str> {
        self.app_id_hashes
            .iter()
            .position(|h| h.as_slice() == hash)
            .and_then(|i| {
                self.rp_ids
                    .iter()
                    .filter_map(|p| match p {
                        RpPattern::Exact(e) => Some(e.as_str()),
                        RpPattern::Suffix(_) => None,
                    })
                    .nth(i)
            })
    }
}

/// The whole policy file.
#[derive(Debug, Clone)]
pub struct Policy {
    pub path: PathBuf,
    clients: BTreeMap<String, ClientPolicy>,
}

/// Why the policy cannot be used.
#[derive(Debug)]
pub enum PolicyError {
    /// Missing, unreadable or not trustworthy (owner, mode, a directory above it).
    File(String),
    /// Not valid: `path:line: message`.
    Invalid {
        path: PathBuf,
        line: Option<usize>,
        message: String,
    },
    /// A client the command line names has no section.
    NoSection { path: PathBuf, client: String },
}

impl fmt::Display for PolicyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PolicyError::File(e) => write!(f, "policy file {e}"),
            PolicyError::Invalid {
                path,
                line: Some(line),
                message,
            } => write!(f, "{}:{line}: {message}", path.display()),
            PolicyError::Invalid {
                path,
                line: None,
                message,
            } => write!(f, "{}: {message}", path.display()),
            PolicyError::NoSection { path, client } => write!(
                f,
                "{}: no [client.{}] section: add one naming the RP IDs this client may use",
                path.display(),
                client
            ),
        }
    }
}

fn line_of(text: &str, offset: usize) -> usize {
    text.as_bytes()[..offset.min(text.len())]
        .iter()
        .filter(|&&b| b == b'\n')
        .count()
        + 1
}

fn valid_client_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.')
}

impl Policy {
    /// Read the policy file: it must be owned by root, or by the user running the proxy (a
    /// user's own proxy for a rootless container), and writable by no one else, and so must
    /// every directory above it (ctap-core's trusted open).
    pub fn load(path: &Path) -> Result<Self, PolicyError> {
        let uid = nix::unistd::geteuid().as_raw();
        let bytes = read_trusted(path, Ownership { uid: 0 })
            .or_else(|e| match uid {
                0 => Err(e),
                _ => read_trusted(path, Ownership { uid }).map_err(|_| e),
            })
            .map_err(|e| PolicyError::File(e.to_string()))?;
        let text = String::from_utf8(bytes).map_err(|_| PolicyError::Invalid {
            path: path.to_path_buf(),
            line: None,
            message: "not UTF-8 text".into(),
        })?;
        Self::parse(path, &text)
    }

    /// Parse policy text (`path` only names it in errors).
    pub fn parse(path: &Path, text: &str) -> Result<Self, PolicyError> {
        let invalid = |offset: Option<usize>, message: String| PolicyError::Invalid {
            path: path.to_path_buf(),
            line: offset.map(|o| line_of(text, o)),
            message,
        };
        let file: PolicyFile = toml::from_str(text).map_err(|e| {
            invalid(
                e.span().map(|s| s.start),
                e.message().trim_end().replace('\n', " "),
            )
        })?;
        let mut clients = BTreeMap::new();
        for (name, section) in file.client {
            let at = section.span().start;
            let section = section.into_inner();
            if !valid_client_name(&name) {
                return Err(invalid(
                    Some(at),
                    format!(
                        "client name {} may hold only letters, digits, `-`, `_` and `.`",
                        ctap_core::text::quoted(&name)
                    ),
                ));
            }
            if section.rp_ids.is_empty() {
                return Err(invalid(
                    Some(at),
                    format!("[client.{name}]: rp_ids is empty: name at least one RP ID"),
                ));
            }
            let mut rp_ids = Vec::new();
            for rp in &section.rp_ids {
                rp_ids.push(
                    RpPattern::parse(rp.get_ref())
                        .map_err(|m| invalid(Some(rp.span().start), m))?,
                );
            }
            let commands = section
                .commands
                .unwrap_or_else(|| DEFAULT_COMMANDS.to_vec());
            let policy = ClientPolicy::new(
                &name,
                rp_ids,
                section.make_credential,
                section.user_verification,
                commands,
            );
            clients.insert(name, policy);
        }
        Ok(Policy {
            path: path.to_path_buf(),
            clients,
        })
    }

    pub fn client(&self, name: &str) -> Result<&ClientPolicy, PolicyError> {
        self.clients
            .get(name)
            .ok_or_else(|| PolicyError::NoSection {
                path: self.path.clone(),
                client: name.to_string(),
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Policy, PolicyError> {
        Policy::parse(Path::new("/etc/ctap/ctap-proxy.toml"), text)
    }

    #[test]
    fn wildcards_match_whole_labels_only() {
        let p = RpPattern::parse("*.example.org").unwrap();
        assert!(p.matches("a.example.org"));
        assert!(p.matches("a.b.example.org"));
        assert!(!p.matches("example.org"));
        assert!(!p.matches("badexample.org"));
        assert!(!p.matches(".example.org"));
        assert!(!p.matches("a..example.org"));
        assert!(!p.matches("a.example.org.evil"));
        let e = RpPattern::parse("example.org").unwrap();
        assert!(e.matches("example.org"));
        assert!(!e.matches("Example.org"));
        assert!(!e.matches("a.example.org"));
        for bad in [
            "",
            "*",
            "*.org",
            "a.*.org",
            "*.Example.org",
            "ex ample",
            "*..",
        ] {
            assert!(RpPattern::parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn defaults_and_sections() {
        let p = parse("[client.dev]\nrp_ids = [\"example.org\"]\n").unwrap();
        let c = p.client("dev").unwrap();
        assert!(c.make_credential && c.user_verification);
        assert_eq!(c.commands, DEFAULT_COMMANDS);
        assert!(!c.allows(Command::Reset));
        assert!(!c.allows(Command::CredentialManagement));
        assert!(c.rp_allowed("example.org"));
        let h: [u8; 32] = Sha256::digest(b"example.org").into();
        assert_eq!(c.rp_for_app_id_hash(&h), Some("example.org"));
        assert!(matches!(
            p.client("other"),
            Err(PolicyError::NoSection { .. })
        ));
    }

    #[test]
    fn errors_carry_file_and_line() {
        let cases = [
            (
                "[client.dev]\nrp_ids = [\"ok.org\"]\nbogus = 1\n",
                3,
                "bogus",
            ),
            (
                "[client.dev]\nrp_ids = [\"ok.org\",\n  \"*.org\"]\n",
                3,
                "top-level",
            ),
            (
                "[client.dev]\nrp_ids = [\"ok.org\"]\ncommands = [\"getInfo\", \"format\"]\n",
                3,
                "format",
            ),
            ("[client.dev]\nmake_credential = false\n", 1, "rp_ids"),
            ("[client.dev]\nrp_ids = []\n", 1, "empty"),
            ("[clients.dev]\n", 1, "clients"),
            ("[client.dev\n", 1, ""),
        ];
        for (text, line, word) in cases {
            let e = parse(text).unwrap_err().to_string();
            assert!(
                e.starts_with(&format!("/etc/ctap/ctap-proxy.toml:{line}:")),
                "{text:?}: {e}"
            );
            assert!(e.contains(word), "{text:?}: {e}");
        }
    }

    #[test]
    fn the_shipped_example_is_valid() {
        let p = parse(include_str!("../../config/ctap-proxy.toml")).unwrap();
        let dev = p.client("dev").unwrap();
        assert!(dev.rp_allowed("example.org") && dev.rp_allowed("a.example.org"));
        assert_eq!(dev.commands, DEFAULT_COMMANDS);
        let vm = p.client("vm-work").unwrap();
        assert!(!vm.make_credential && !vm.allows(Command::U2f));
    }

    #[test]
    fn untrusted_file_is_refused() {
        let dir = std::env::temp_dir().join(format!("ctap-proxy-policy-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("p.toml");
        std::fs::write(&path, "[client.a]\nrp_ids = [\"x.org\"]\n").unwrap();
        // /tmp is world-writable: a policy there is anyone's.
        let e = Policy::load(&path).unwrap_err();
        assert!(matches!(e, PolicyError::File(_)), "{e}");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
