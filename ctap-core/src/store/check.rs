//! `ctap-enroll check-config`: root's configuration, every records file and every state file,
//! their ownership and modes, and whether they agree, as a list of located findings.
//!
//! Checking reads files exactly as login reads them (the same `read_trusted`, the same parsers),
//! so a file this check accepts is a file login accepts, and it never writes anything.

use std::fmt;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use crate::store::account::name_of_stem;
use crate::store::config::{ConfigError, Policy, UvPolicy};
use crate::store::credential::{
    home_of, load_credential_file, CredentialFile, StoreError, UvRequirement,
};
use crate::store::fs::{FileError, Ownership};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Severity {
    /// Login will misbehave or refuse: `check-config` fails.
    Problem,
    /// Worth knowing, harmless to login.
    Note,
}

/// One located finding: `FILE[:LINE]: problem: what to do`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    pub file: Option<PathBuf>,
    pub line: Option<usize>,
    pub severity: Severity,
    pub problem: String,
    pub fix: String,
}

impl fmt::Display for Finding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.location())?;
        if self.severity == Severity::Note {
            write!(f, "note: ")?;
        }
        write!(f, "{}: {}", self.problem, self.fix)
    }
}

impl Finding {
    /// `FILE[:LINE]: `, or nothing when the finding is about no file.
    pub fn location(&self) -> String {
        match (&self.file, self.line) {
            (Some(file), Some(l)) => format!("{}:{l}: ", file.display()),
            (Some(file), None) => format!("{}: ", file.display()),
            (None, _) => String::new(),
        }
    }

    /// A problem located in no file (a bad user name, a bad module argument).
    fn unlocated(problem: String, fix: &str) -> Self {
        Finding {
            file: None,
            line: None,
            severity: Severity::Problem,
            problem,
            fix: fix.into(),
        }
    }

    /// A parse error at `path[:line]`; the parser's multi-line message made one line.
    fn parse(path: &Path, line: Option<usize>, message: &str, fix: &str) -> Self {
        Finding {
            line,
            ..Finding::problem(path, message.trim().replace('\n', " "), fix)
        }
    }

    fn problem(file: &Path, problem: impl Into<String>, fix: impl Into<String>) -> Self {
        Finding {
            file: Some(file.to_path_buf()),
            line: None,
            severity: Severity::Problem,
            problem: problem.into(),
            fix: fix.into(),
        }
    }

    fn note(file: &Path, problem: impl Into<String>, fix: impl Into<String>) -> Self {
        Finding {
            severity: Severity::Note,
            ..Finding::problem(file, problem, fix)
        }
    }

    /// A file error, located, with what to do about it.
    pub(crate) fn from_file_error(e: &FileError) -> Self {
        match e {
            FileError::NotFound(p) => {
                Finding::problem(p, "no such file", "create it, or name another file")
            }
            FileError::Insecure { path, why } => {
                // Most reasons already end in the command that fixes them ("...: chmod go-w F").
                let fix = if why.contains(": ") {
                    "then retry"
                } else if why.contains("symbolic link") {
                    "replace the link with the regular file it points to"
                } else {
                    "it must be a regular file owned by root (or the user, for per-user files), not group- or world-writable, in a directory only root can write"
                };
                Finding::problem(path, format!("refused: {why}"), fix)
            }
            FileError::Io { path, source } => {
                let fix = if source.kind() == std::io::ErrorKind::PermissionDenied {
                    "run ctap-enroll as root (sudo)"
                } else {
                    "check the file system"
                };
                Finding::problem(path, source.to_string(), fix)
            }
            FileError::LockTimeout(p) => Finding::problem(
                p,
                "still locked by another process",
                "wait for the login or enrollment in progress to finish, then retry",
            ),
        }
    }

    /// A records or state error, located, with what to do about it.
    pub fn from_store_error(e: &StoreError) -> Self {
        match e {
            StoreError::File(f) => Finding::from_file_error(f),
            StoreError::Parse {
                path,
                line,
                message,
            } => Finding::parse(
                path,
                *line,
                message,
                "correct the file (or restore it from a backup)",
            ),
            StoreError::Invalid { path, problem } => Finding::problem(
                path,
                problem.to_string(),
                "correct the file, or remove the credential and enroll it again",
            ),
            StoreError::BadUserName(u) => Finding::unlocated(
                format!("invalid user name {u:?}"),
                "give the account's login name",
            ),
            StoreError::Lookup(e) => Finding::unlocated(
                e.to_string(),
                "check the name service (nsswitch.conf, sssd)",
            ),
        }
    }

    /// A configuration error, located.
    pub fn from_config_error(e: &ConfigError) -> Self {
        match e {
            ConfigError::File(f) => Finding::from_file_error(f),
            ConfigError::Parse {
                path,
                line,
                message,
            } => Finding::parse(
                path,
                *line,
                message,
                "correct the setting (see the example pam_ctap.toml)",
            ),
            ConfigError::Invalid { path, problem } => Finding::parse(
                path,
                None,
                &problem.to_string(),
                "correct the setting (see the example pam_ctap.toml)",
            ),
        }
    }
}

/// Everything `check-config` found, and the policy when root's config could be read.
#[derive(Debug)]
pub struct Report {
    pub policy: Option<Policy>,
    pub findings: Vec<Finding>,
}

impl Report {
    pub fn problems(&self) -> usize {
        self.count(Severity::Problem)
    }

    pub fn notes(&self) -> usize {
        self.count(Severity::Note)
    }

    fn count(&self, severity: Severity) -> usize {
        self.findings
            .iter()
            .filter(|f| f.severity == severity)
            .count()
    }
}

/// Check root's config at `config_path`, then the records and state directories it names.
pub fn check(config_path: &Path) -> Report {
    let mut findings = Vec::new();
    let exists = std::fs::symlink_metadata(config_path).is_ok();
    if !exists && config_path != Path::new(crate::store::config::DEFAULT_CONFIG) {
        findings.push(Finding::problem(
            config_path,
            "no such file: a module naming it with config= denies every login",
            "fix the path, or create the file",
        ));
        return Report {
            policy: None,
            findings,
        };
    }
    let policy = match Policy::load(config_path) {
        Ok(p) => {
            if !exists {
                findings.push(Finding::note(
                    config_path,
                    "not found, the built-in defaults apply",
                    "create it to set the device, RP ID and policy",
                ));
            }
            p
        }
        Err(e) => {
            findings.push(Finding::from_config_error(&e));
            findings.push(Finding::note(
                config_path,
                "records and state were not checked",
                "fix the configuration first: it names their directories",
            ));
            return Report {
                policy: None,
                findings,
            };
        }
    };
    check_device(&policy, &mut findings);
    check_query_helper(&policy, &mut findings);
    check_ca_file(&policy, &mut findings);
    check_store(&policy, &mut findings);
    Report {
        policy: Some(policy),
        findings,
    }
}

/// A `unix:` device socket is checked as login checks it: its owner and every directory above it.
fn check_device(policy: &Policy, findings: &mut Vec<Finding>) {
    for socket in policy.device.sockets() {
        check_socket(policy, socket, findings);
    }
}

/// With `[directory]`, the program login runs for the query is checked as login checks it.
fn check_query_helper(policy: &Policy, findings: &mut Vec<Finding>) {
    let Some(dir) = &policy.directory else {
        return;
    };
    match crate::store::fs::check_trusted_program(dir.query_helper()) {
        Ok(()) => {}
        Err(FileError::NotFound(p)) => findings.push(Finding::problem(
            &p,
            "the directory query program is missing: every login with [directory] is denied",
            "install it (package libpam-ctap or pam-ctap) or set directory.query_helper",
        )),
        Err(e) => findings.push(Finding::from_file_error(&e)),
    }
}

/// `ca_file` is read and parsed as the query program reads it: a file it refuses denies every
/// login with [directory] (`directory_error`; the system's trust store is never used instead).
fn check_ca_file(policy: &Policy, findings: &mut Vec<Finding>) {
    use crate::store::directory::{read_ca_file, CaFileError};
    let Some(path) = policy.directory.as_ref().and_then(|d| d.ca_file.as_ref()) else {
        return;
    };
    match read_ca_file(path) {
        Ok(_) => {}
        Err(CaFileError::File(FileError::NotFound(p))) => findings.push(Finding::problem(
            &p,
            "directory.ca_file: no such file: every login with [directory] is denied",
            "put the PEM certificate(s) of the CA that signs the directory's certificate there",
        )),
        Err(CaFileError::File(e)) => findings.push(Finding::from_file_error(&e)),
        Err(CaFileError::Invalid { path, why }) => findings.push(Finding::problem(
            &path,
            format!("directory.ca_file: {why}: every login with [directory] is denied"),
            "put the PEM certificate(s) of the CA that signs the directory's certificate there",
        )),
    }
}

fn check_socket(policy: &Policy, socket: &Path, findings: &mut Vec<Finding>) {
    match policy.device_owners() {
        Ok(owners) => {
            if let Err(e) = crate::store::fs::check_trusted_socket(socket, &owners) {
                findings.push(Finding::from_file_error(&e));
            }
        }
        Err(why) => findings.push(Finding::problem(
            socket,
            why,
            "name an existing account in device_owner, or remove it",
        )),
    }
}

fn check_dir(
    dir: &Path,
    max_mode: u32,
    what: &str,
    findings: &mut Vec<Finding>,
) -> Option<Vec<(String, PathBuf)>> {
    let meta = match std::fs::symlink_metadata(dir) {
        Ok(m) => m,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            // Login denies everyone (even under nouserok) until it exists: a typo or an
            // unmounted volume must not read as "nobody has keys".
            findings.push(Finding::problem(
                dir,
                format!("{what} directory does not exist: every login is denied"),
                format!(
                    "fix the path, mount its volume, or create it (install -d -o root -m {max_mode:04o} {})",
                    dir.display()
                ),
            ));
            return None;
        }
        Err(e) => {
            findings.push(Finding::problem(dir, e.to_string(), "run as root (sudo)"));
            return None;
        }
    };
    if !meta.file_type().is_dir() {
        findings.push(Finding::problem(
            dir,
            format!("{what} directory is not a directory (or is a symlink)"),
            "make it a real directory owned by root",
        ));
        return None;
    }
    if meta.uid() != 0 {
        findings.push(Finding::problem(
            dir,
            format!("{what} directory is owned by uid {}", meta.uid()),
            format!("chown root:root {}", dir.display()),
        ));
    }
    if meta.mode() & 0o777 & !max_mode != 0 {
        findings.push(Finding::problem(
            dir,
            format!(
                "{what} directory has mode {:04o}, more open than {max_mode:04o}",
                meta.mode() & 0o7777
            ),
            format!("chmod {max_mode:o} {}", dir.display()),
        ));
    }
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) => {
            findings.push(Finding::problem(dir, e.to_string(), "run as root (sudo)"));
            return None;
        }
    };
    let mut names: Vec<(String, PathBuf)> = entries
        .flatten()
        .map(|e| (e.file_name().to_string_lossy().into_owned(), e.path()))
        .collect();
    names.sort();
    let mut user_files = Vec::new();
    for (name, path) in names {
        if name.starts_with('.') {
            // `.<file>.tmp` (a locked write's) or `.<file>.tmp.<pid>.<hex>` (any other's).
            if name.contains(".tmp.") || name.ends_with(".toml.tmp") {
                findings.push(Finding::note(
                    &path,
                    "temporary file left by an interrupted write (the real file is intact)",
                    format!("delete it: rm {}", path.display()),
                ));
            }
            // Lock files (.<user>.lock) belong here.
            continue;
        }
        if name.ends_with(".directory") {
            // The directory's offline copy of a user's mappings (ARCHITECTURE.md §12).
            continue;
        }
        let Some(user) = name.strip_suffix(".toml") else {
            findings.push(Finding::note(
                &path,
                "not a <user>.toml file; login ignores it",
                "remove it if it is not needed",
            ));
            continue;
        };
        let Some(user) = name_of_stem(user) else {
            findings.push(Finding::problem(
                &path,
                format!("{user:?} is not a user file name; login ignores this file"),
                "rename it to <login name>.toml (other bytes than letters, digits, . _ - @ $ as %XX) or remove it",
            ));
            continue;
        };
        user_files.push((user, path));
    }
    Some(user_files)
}

fn check_store(policy: &Policy, findings: &mut Vec<Finding>) {
    let store = policy.store();
    let mut records: Vec<(String, CredentialFile)> = Vec::new();
    let mut broken_records = Vec::new();
    if let Some(user_files) = check_dir(&store.records_dir, 0o755, "records", findings) {
        for (user, path) in user_files {
            match load_credential_file(&path, Ownership::ROOT) {
                Ok(file) => {
                    check_records(policy, &user, &path, &file, findings);
                    records.push((user, file));
                }
                Err(e) => {
                    findings.push(Finding::from_store_error(&e));
                    broken_records.push(user);
                }
            }
        }
    }
    let mut state_users = Vec::new();
    if let Some(user_files) = check_dir(&store.state_dir, 0o700, "state", findings) {
        for (user, path) in user_files {
            check_state_mode(&path, findings);
            state_users.push(user.clone());
            let file = records.iter().find(|(u, _)| *u == user).map(|(_, f)| f);
            match (store.read_state(&user), file) {
                (Ok(state), Some(file)) => cross_check(&user, &path, file, &state, findings),
                (Ok(state), None) => {
                    // With [directory] the records are the directory's: state alone is normal.
                    if !state.credentials.is_empty()
                        && !broken_records.contains(&user)
                        && policy.directory.is_none()
                    {
                        findings.push(Finding::note(
                            &path,
                            format!("state for user {user}, who has no records file"),
                            "harmless; delete it if the user's keys were removed for good",
                        ));
                    }
                }
                (Err(e), _) => findings.push(Finding::from_store_error(&e)),
            }
        }
    }
    for (user, file) in &records {
        let login_creds = file
            .credentials
            .iter()
            .filter(|c| !c.rp_id.is_ssh())
            .count();
        if login_creds > 0 && !state_users.contains(user) {
            let path = store.state_path(user).unwrap_or_default();
            findings.push(Finding::problem(
                &path,
                format!("user {user} has {login_creds} credential(s) but no state file: login fails"),
                format!("enroll the keys again (`ctap-enroll remove --user {user} NAME`, then `ctap-enroll enroll --user {user}`)"),
            ));
        }
    }
}

fn check_records(
    policy: &Policy,
    user: &str,
    path: &Path,
    file: &CredentialFile,
    findings: &mut Vec<Finding>,
) {
    match (home_of(user), file.uid) {
        (None, _) => findings.push(Finding::note(
            path,
            format!("there is no user {user} on this system"),
            "remove the file if the account is gone",
        )),
        (Some((_, uid)), Some(recorded)) if uid != recorded => findings.push(Finding::problem(
            path,
            format!(
                "written for uid {recorded}, but user {user} has uid {uid}: login refuses it (uid_mismatch)"
            ),
            format!(
                "if the name was reused, remove the old keys (`ctap-enroll remove --user {user} NAME`) and enroll the new account's"
            ),
        )),
        (Some(_), Some(_)) => {}
        (Some((_, uid)), None) => findings.push(Finding::note(
            path,
            format!(
                "records of {user} do not store the account's uid ({uid}): until they do, the name alone identifies them"
            ),
            "any `ctap-enroll` write for the user adds it (e.g. `ctap-enroll rename --user USER NAME NAME`)",
        )),
    }
    if file.credentials.is_empty() {
        findings.push(Finding::note(
            path,
            "no credentials: this user cannot log in with a key",
            "enroll one with `ctap-enroll enroll`, or remove the file",
        ));
    }
    for c in &file.credentials {
        if c.rp_id.is_ssh() {
            continue;
        }
        if let Some(rp) = &policy.rp_id {
            if c.rp_id.as_str() != rp {
                findings.push(Finding::problem(
                    path,
                    format!(
                        "credential {:?} has rp_id {:?} but the config sets rp_id = {rp:?}: it cannot log in",
                        c.name, c.rp_id.as_str()
                    ),
                    "enroll the key again, or remove rp_id from the config",
                ));
            }
        }
        if policy.user_verification == UvPolicy::Required
            && c.user_verification != UvRequirement::Required
        {
            findings.push(Finding::problem(
                path,
                format!(
                    "credential {:?} was enrolled without user verification but the config requires it: it cannot log in",
                    c.name
                ),
                "enroll the key again with `--uv required`",
            ));
        }
    }
}

fn check_state_mode(path: &Path, findings: &mut Vec<Finding>) {
    if let Ok(meta) = std::fs::symlink_metadata(path) {
        if meta.file_type().is_file() && meta.mode() & 0o077 != 0 {
            findings.push(Finding::problem(
                path,
                format!(
                    "state file has mode {:04o}: others can read it",
                    meta.mode() & 0o7777
                ),
                format!("chmod 600 {}", path.display()),
            ));
        }
    }
}

fn cross_check(
    user: &str,
    path: &Path,
    file: &CredentialFile,
    state: &crate::store::credential::StateFile,
    findings: &mut Vec<Finding>,
) {
    for c in &file.credentials {
        if c.rp_id.is_ssh() {
            continue;
        }
        match state.get(&c.credential_id) {
            None => findings.push(Finding::problem(
                path,
                format!(
                    "credential {:?} of user {user} has no state entry: it cannot log in",
                    c.name
                ),
                format!(
                    "remove it and enroll the key again (`ctap-enroll remove --user {user} {}`)",
                    c.name
                ),
            )),
            Some(s) => {
                if c.hmac_secret && s.hmac.is_none() {
                    findings.push(Finding::problem(
                        path,
                        format!("credential {:?} of user {user} has no hmac-secret check in its state: it cannot log in", c.name),
                        "remove it and enroll the key again",
                    ));
                }
                if let Some(suspension) = &s.suspension {
                    findings.push(Finding::note(
                        path,
                        format!(
                            "credential {:?} of user {user} is suspended ({suspension})",
                            c.name
                        ),
                        format!("once the key is known to be genuine: ctap-enroll unsuspend --user {user} {}", c.name),
                    ));
                }
            }
        }
    }
    for s in &state.credentials {
        if !file
            .credentials
            .iter()
            .any(|c| c.credential_id == s.credential_id)
        {
            findings.push(Finding::note(
                path,
                format!(
                    "state entry for credential id {} has no record",
                    crate::store::credential::b64_encode(&s.credential_id)
                ),
                "harmless (left by a removal or an interrupted enrollment)",
            ));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn findings_read_file_line_problem_fix() {
        let e = StoreError::Parse {
            path: PathBuf::from("/etc/ctap/users/alice.toml"),
            line: Some(3),
            message: "unknown field `colour`\n".into(),
        };
        assert_eq!(
            Finding::from_store_error(&e).to_string(),
            "/etc/ctap/users/alice.toml:3: unknown field `colour`: correct the file (or restore it from a backup)"
        );
        let n = Finding::note(
            Path::new("/var/lib/ctap/.a.toml.tmp.1.2"),
            "left over",
            "delete it",
        );
        assert_eq!(
            n.to_string(),
            "/var/lib/ctap/.a.toml.tmp.1.2: note: left over: delete it"
        );
        let link = FileError::Insecure {
            path: PathBuf::from("/x.toml"),
            why: "is a symbolic link".into(),
        };
        assert!(Finding::from_file_error(&link)
            .to_string()
            .contains("refused: is a symbolic link: replace the link"));
    }

    #[test]
    fn a_key_socket_others_could_replace_is_a_problem() {
        use std::os::unix::fs::PermissionsExt;
        let dir = crate::store::fs::test_dir("sock");
        let sock = dir.join("key.sock");
        let _l = std::os::unix::net::UnixListener::bind(&sock).unwrap();
        let policy = Policy {
            device: crate::transport::device::DeviceUri::Unix(sock.clone()),
            ..Policy::default()
        };
        let mut findings = Vec::new();
        check_device(&policy, &mut findings);
        assert!(findings.is_empty(), "{findings:?}");
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o1777)).unwrap();
        check_device(&policy, &mut findings);
        std::fs::remove_dir_all(&dir).unwrap();
        assert_eq!(findings.len(), 1, "{findings:?}");
        assert!(findings[0].severity == Severity::Problem, "{findings:?}");
        assert!(
            findings[0].to_string().contains("group- or world-writable"),
            "{}",
            findings[0]
        );
    }

    #[test]
    fn a_missing_explicit_config_and_a_broken_one_stop_the_check() {
        let dir = crate::store::fs::test_dir("ctap-check");
        // Only the built-in default path may be absent; a named one is an error (a typo).
        let missing = check(&dir.join("absent.toml"));
        assert!(missing.policy.is_none());
        assert_eq!(missing.problems(), 1, "{:?}", missing.findings);
        let bad = dir.join("bad.toml");
        std::fs::write(&bad, "timeout = \"soon\"\n").unwrap();
        let r = check(&bad);
        std::fs::remove_dir_all(&dir).unwrap();
        assert!(r.policy.is_none());
        assert_eq!(r.problems(), 1);
        assert_eq!(r.findings[0].line, Some(1));
    }
}
