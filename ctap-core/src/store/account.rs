//! Who is logging in: the account the name service knows, not the spelling the person typed.
//!
//! sshd, login(1) and display managers hand PAM the name as typed. With SSSD/AD, LDAP with
//! case-insensitive matching or winbind, `ALICE`, `alice@corp.example` and `CORP\alice` all open
//! alice's account through the password module. Records and state are therefore found by the
//! canonical `pw_name` that NSS returns, never by the typed spelling, and a name NSS does not
//! know is a denial (pam_unix would refuse it too): an unknown name can never be skipped with
//! `nouserok`.
//!
//! An [`Account`] is what a [`UserResolver`] answers: [`Nss`] in production (getpwnam_r and
//! getpwuid_r through `nix`), a table in tests (see `tests` below: a resolver that answers
//! case-insensitively, as SSSD does).

use std::fmt;
use std::path::{Path, PathBuf};

/// One account as the password database describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Account {
    name: String,
    uid: u32,
    gid: u32,
    home: PathBuf,
}

impl Account {
    /// For [`UserResolver`] implementations: the fields of one passwd entry.
    pub fn from_passwd(name: String, uid: u32, gid: u32, home: PathBuf) -> Self {
        Account {
            name,
            uid,
            gid,
            home,
        }
    }

    /// The canonical name (`pw_name`): what records and state are named by.
    pub fn name(&self) -> &str {
        &self.name
    }
    pub fn uid(&self) -> u32 {
        self.uid
    }
    pub fn gid(&self) -> u32 {
        self.gid
    }
    pub fn home(&self) -> &Path {
        &self.home
    }
}

/// The name service could not answer (as opposed to answering "no such user").
#[derive(Debug)]
pub struct LookupError {
    pub what: String,
    pub errno: nix::errno::Errno,
}

impl fmt::Display for LookupError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "looking up {} in the password database: {}",
            self.what, self.errno
        )
    }
}

impl std::error::Error for LookupError {}

/// Turns a name (as typed) or a uid into an account. `Ok(None)` means the name service answered
/// that there is no such account.
pub trait UserResolver {
    fn by_name(&self, name: &str) -> Result<Option<Account>, LookupError>;
    fn by_uid(&self, uid: u32) -> Result<Option<Account>, LookupError>;
}

/// The system's name service switch: files, SSSD, LDAP, winbind, whatever nsswitch.conf says.
#[derive(Debug, Clone, Copy, Default)]
pub struct Nss;

fn from_nix(u: nix::unistd::User) -> Account {
    Account {
        name: u.name,
        uid: u.uid.as_raw(),
        gid: u.gid.as_raw(),
        home: u.dir,
    }
}

impl UserResolver for Nss {
    fn by_name(&self, name: &str) -> Result<Option<Account>, LookupError> {
        // A name with a NUL byte cannot be in any passwd database: nix answers None.
        nix::unistd::User::from_name(name)
            .map(|u| u.map(from_nix))
            .map_err(|errno| LookupError {
                what: format!("user {name:?}"),
                errno,
            })
    }

    fn by_uid(&self, uid: u32) -> Result<Option<Account>, LookupError> {
        nix::unistd::User::from_uid(nix::unistd::Uid::from_raw(uid))
            .map(|u| u.map(from_nix))
            .map_err(|errno| LookupError {
                what: format!("uid {uid}"),
                errno,
            })
    }
}

/// Longest file-name stem we derive from a name: NAME_MAX (255) less room for the `.` prefix,
/// `.toml`, `.lock` and the `.tmp.<pid>.<random>` suffix of atomic writes.
pub(crate) const MAX_STEM: usize = 200;

/// The file-name stem for an account name: records are `<stem>.toml`, state `<stem>.toml`, the
/// lock `.<stem>.lock`.
///
/// Every name NSS can return maps to a stem that names a file inside its directory: bytes other
/// than ASCII letters, digits and `_ - . $ @` (so `/`, `\`, `%`, NUL, spaces and every non-ASCII
/// byte) become `%XX`, and so does a leading `.` or `-`. The stem therefore never contains `/`,
/// is never `.` or `..`, never starts with `.` (the lock and temporary files do) and never
/// contains NUL. Names useradd accepts (the only names earlier releases could store) map to
/// themselves, so existing files keep their names. The mapping is injective (`%` is always
/// encoded), so two accounts never share a file; [`name_of_stem`] inverts it.
pub fn file_stem(name: &str) -> Result<String, String> {
    if name.is_empty() {
        return Err("an empty user name cannot name a file".into());
    }
    let mut stem = String::with_capacity(name.len());
    for (i, b) in name.bytes().enumerate() {
        let plain = b.is_ascii_alphanumeric()
            || matches!(b, b'_' | b'$' | b'@')
            || (matches!(b, b'.' | b'-') && i > 0);
        if plain {
            stem.push(char::from(b));
        } else {
            stem.push_str(&format!("%{b:02X}"));
        }
    }
    if stem.len() > MAX_STEM {
        return Err(format!(
            "user name {name:?} is too long to name a file ({} bytes encoded, at most {MAX_STEM})",
            stem.len()
        ));
    }
    Ok(stem)
}

/// The account name a stem stands for; `None` if `stem` is not what [`file_stem`] writes.
pub fn name_of_stem(stem: &str) -> Option<String> {
    let bytes = stem.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = stem.get(i + 1..i + 3)?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    let name = String::from_utf8(out).ok()?;
    // Only the canonical spelling: `%61lice` is not alice's file.
    (file_stem(&name).ok()? == stem).then_some(name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stems_stay_inside_their_directory_and_round_trip() {
        for name in [
            "alice",
            "ALICE",
            "alice@corp.example",
            "CORP\\alice",
            "j.doe",
            "müller",
            "a/b",
            "..",
            ".",
            "-rf",
            "50%",
            "a b",
            "x\u{0}y",
            "machine$",
        ] {
            let stem = file_stem(name).unwrap();
            assert!(!stem.contains('/') && !stem.contains('\0'), "{stem}");
            assert!(
                !stem.starts_with('.') && stem != ".." && stem != ".",
                "{stem}"
            );
            assert_eq!(Path::new(&stem).components().count(), 1, "{stem}");
            assert_eq!(name_of_stem(&stem).as_deref(), Some(name), "{stem}");
        }
        // Names useradd accepts keep the file names earlier releases wrote.
        for name in ["alice", "Bob_2", "j.doe", "svc-x", "a@b.c", "host$"] {
            assert_eq!(file_stem(name).unwrap(), name);
        }
        assert_eq!(file_stem("CORP\\alice").unwrap(), "CORP%5Calice");
        assert_eq!(file_stem("..").unwrap(), "%2E.");
        assert!(file_stem("").is_err());
        assert!(file_stem(&"é".repeat(100)).is_err());
        // Only the canonical encoding decodes.
        assert_eq!(name_of_stem("%61lice"), None);
        assert_eq!(name_of_stem("50%"), None);
        assert_eq!(name_of_stem("%zz"), None);
    }

    #[test]
    fn nss_knows_root_and_not_a_nonsense_name() {
        let root = Nss.by_name("root").unwrap().unwrap();
        assert_eq!((root.name(), root.uid()), ("root", 0));
        assert_eq!(Nss.by_uid(0).unwrap().unwrap().name(), "root");
        assert!(Nss.by_name("no-such-user-ctap-e2e").unwrap().is_none());
        assert!(Nss.by_name("ro\u{0}ot").unwrap().is_none());
    }
}
