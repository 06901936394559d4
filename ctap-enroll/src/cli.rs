//! The command line: what `ctap-enroll --help` shows. Subcommands live in one enum; a new one
//! (the SSH helper's `ssh`, `export-ssh`) is a variant here, a module in `commands/` and one arm
//! in `commands::run`.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};
use ctap_core::flows::enroll::UvPreference;
use ctap_core::store::config::DEFAULT_CONFIG;
use ctap_core::transport::device::DeviceUri;

const AFTER_HELP: &str = "\
Exit status:
  0  success (test: PASS; check-config: no problems)
  1  the operation failed or was refused: test FAIL, key already enrolled, wrong PIN,
     no such credential, check-config found problems, import-pam-u2f skipped a line
  2  usage or configuration error: bad arguments; a config, records or state file that is
     missing, unreadable, insecure or malformed; permission denied (run as root)
  3  no security key found, or the --device cannot be opened (test still exits 1, with
     FAIL (no_key): its verdict is always PASS/0 or FAIL/1)

Errors go to standard error as `ctap-enroll: <what happened>: <what to do>`.

PINs are read from the terminal with echo off; Ctrl-C at the prompt puts the terminal back
(echo on) before ctap-enroll ends. With --pin-stdin every PIN prompt reads one
line from standard input instead, for scripts and tests (pin set: new, repeat; pin change:
current, new, repeat). Never pass a PIN as an argument or in the environment.

Records live in <records_dir>/<user>.toml and state in <state_dir>/<user>.toml, both named by
root's config (default /etc/ctap/users and /var/lib/ctap); editing them needs root.";

/// Enroll, list, test and manage the FIDO2 security keys pam_ctap accepts.
#[derive(Debug, Parser)]
#[command(
    name = "ctap-enroll",
    version,
    propagate_version = true,
    after_help = AFTER_HELP,
    subcommand_required = true,
    arg_required_else_help = true
)]
pub struct Cli {
    /// Root's configuration file; the records and state directories, the device and the RP ID
    /// come from it.
    #[arg(long, global = true, value_name = "PATH", default_value = DEFAULT_CONFIG)]
    pub config: PathBuf,

    /// Use this key instead of the config's device: auto, hidraw:/dev/hidrawN or
    /// unix:/path/to.sock.
    #[arg(long, global = true, value_name = "URI")]
    pub device: Option<DeviceUri>,

    /// Read PINs from standard input, one line per prompt, instead of the terminal.
    #[arg(long, global = true)]
    pub pin_stdin: bool,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Show each attached security key: path, product, AAGUID, versions, extensions, PIN.
    Devices(DevicesArgs),
    /// Create a credential on a key for a user and record it (run as root).
    ///
    /// makeCredential with hmac-secret and credProtect, refusing a key the user already has,
    /// then one getAssertion to record the hmac-secret check with the UV state login will use.
    /// Asks for the key's PIN when user verification is used, and for two touches.
    Enroll(EnrollArgs),
    /// List a user's credentials: name, created, last used, counter, suspended.
    List(ListArgs),
    /// Remove a credential from the user's records and state (run as root).
    Remove(NameArgs),
    /// Give a credential a new name (run as root).
    Rename(RenameArgs),
    /// Lift the suspension a counter regression put on a credential (run as root).
    ///
    /// Only do this once the key is known to be genuine: a suspension means a key answered with
    /// a signature counter lower than one already seen, the mark of a cloned key.
    Unsuspend(NameArgs),
    /// Run one full login verification, exactly as the PAM module does, and print a verdict.
    ///
    /// Prints `PASS: ...` and exits 0, or `FAIL (<kind>): ...` and exits 1. Updates the
    /// credential's counter like a real login (and may suspend it on a counter regression, when
    /// the config says clone_action = "suspend").
    Test(TestArgs),
    /// Import credentials from a pam-u2f authfile (run as root).
    ///
    /// Lines are `user:keyhandle,publickey,type,options[:...]` (pamu2fcfg 1.1+, es256 or eddsa)
    /// or the old `user:keyhandle,publickey` (pamu2fcfg 1.0.8 and earlier). Each line that
    /// cannot be imported is reported with the reason. Imported credentials have no
    /// hmac-secret check (pam-u2f made none) and start at counter 0; re-enroll a key with
    /// `enroll` to add the check.
    ///
    /// The file is opened like records: no symlink, not group- or world-writable, in a
    /// directory only root or its owner can write, at most 1 MiB; its owner is printed. A file
    /// not owned by root (a user's ~/.config/Yubico/u2f_keys) imports only its owner's line:
    /// pam-u2f only ever used the authenticating user's own line of such a file, so lines
    /// naming other users are refused and listed. Each line's user is resolved through the
    /// password database (NSS) and recorded under the account's canonical name.
    #[command(name = "import-pam-u2f")]
    ImportPamU2f(ImportArgs),
    /// Set or change the key's PIN.
    #[command(subcommand)]
    Pin(PinCommand),
    /// Check root's config, every records file and every state file, with their permissions.
    ///
    /// Prints each finding as `FILE[:LINE]: problem: what to do`; notes are marked `note:` and
    /// do not fail the check. Exits 0 when there are no problems, 1 otherwise.
    CheckConfig,
    /// Create an SSH key on the security key for you (not root): ~/.config/ctap/credentials.toml.
    ///
    /// The key is an OpenSSH sk key (sk-ecdsa-sha2-nistp256@openssh.com or
    /// sk-ssh-ed25519@openssh.com) that ctap-sshagent offers; its authorized_keys line is printed.
    /// With --write-key-file the OpenSSH key-handle file (and .pub) is written as well, for
    /// `ssh -i` or `ssh-add`.
    Ssh(SshArgs),
    /// Print the authorized_keys lines of your SSH credentials (what `ssh-add -L` shows).
    ///
    /// One `type base64 comment` line per credential: what goes into authorized_keys, or into a
    /// directory's sshPublicKey values for `sss_ssh_authorizedkeys`.
    ///
    /// With --name NAME --write-key-file PATH, also writes that credential's OpenSSH key-handle
    /// file (and PATH.pub), as `ssh --write-key-file` does at enrollment: an SSH CA signs
    /// PATH.pub (`ssh-keygen -s ca -I id -n user PATH.pub` writes PATH-cert.pub), and
    /// `ssh-add PATH` then gives ctap-sshagent the key and its certificate.
    #[command(name = "export-ssh")]
    ExportSsh(ExportSshArgs),
    /// Load the resident (discoverable) SSH keys stored on the security key into your
    /// credentials file, like `ssh-keygen -K`: every `ssh:` credential the key lists through
    /// credentialManagement (the key's PIN is asked), so a new machine needs only the key.
    /// Credentials already in the file are skipped; the others are named resident-<n>.
    #[command(name = "load-resident-ssh")]
    LoadResidentSsh(CredentialsArgs),
    /// Print a user's login credentials as SSSD/FreeIPA mapping strings
    /// (`passkey:<base64 credential id>,<base64 DER public key>`), one a line.
    ///
    /// With --pam-u2f FILE, a pam-u2f authfile's credentials instead, as `user:passkey:...`
    /// lines (raw x||y ES256 keys are converted to SubjectPublicKeyInfo).
    #[command(name = "export-sssd")]
    ExportSssd(ExportSssdArgs),
    /// Add SSSD/FreeIPA mapping strings (one a line, `passkey:...`) to a user's records on this
    /// host (run as root). They get no hmac-secret check and start at counter 0.
    #[command(name = "import-sssd")]
    ImportSssd(ImportSssdArgs),
}

#[derive(Debug, Args)]
pub struct ExportSssdArgs {
    #[command(flatten)]
    pub user: UserArg,
    /// Convert this pam-u2f authfile instead of the user's records.
    #[arg(long, value_name = "FILE")]
    pub pam_u2f: Option<PathBuf>,
}

/// The user verification a directory mapping is imported with.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum MappingUv {
    Required,
    Discouraged,
}

impl From<MappingUv> for ctap_core::store::credential::UvRequirement {
    fn from(u: MappingUv) -> Self {
        match u {
            MappingUv::Required => Self::Required,
            MappingUv::Discouraged => Self::Discouraged,
        }
    }
}

#[derive(Debug, Args)]
pub struct ImportSssdArgs {
    /// The file of mapping strings.
    pub file: PathBuf,
    #[command(flatten)]
    pub user: UserArg,
    /// The RP ID the keys were registered for (default: [directory] rp_id, else rp_id).
    #[arg(long, value_name = "ID")]
    pub rp_id: Option<String>,
    /// Whether login must verify the user (FreeIPA: ipaRequireUserVerification).
    #[arg(long, value_enum, default_value = "required")]
    pub uv: MappingUv,
}

#[derive(Debug, Args)]
pub struct UserArg {
    /// The user (default: $SUDO_USER, else the current user).
    #[arg(long, short, value_name = "USER")]
    pub user: Option<String>,
}

#[derive(Debug, Args)]
pub struct DevicesArgs {
    /// Print JSON instead of text.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum Uv {
    /// Login always needs the PIN (or built-in UV); the key must have one.
    Required,
    /// Required if the key has a PIN or built-in UV, else discouraged (decided now, stored).
    Preferred,
    /// Login needs only a touch.
    Discouraged,
}

impl From<Uv> for UvPreference {
    fn from(u: Uv) -> Self {
        match u {
            Uv::Required => UvPreference::Required,
            Uv::Preferred => UvPreference::Preferred,
            Uv::Discouraged => UvPreference::Discouraged,
        }
    }
}

#[derive(Debug, Args)]
pub struct EnrollArgs {
    #[command(flatten)]
    pub user: UserArg,
    /// A label for the key (default: key-<n>).
    #[arg(long, short, value_name = "LABEL")]
    pub name: Option<String>,
    /// The relying party ID (default: the config's rp_id, else pam://<hostname>).
    #[arg(long, value_name = "ID")]
    pub rp_id: Option<String>,
    /// Whether login must verify the user with the key's PIN or fingerprint.
    #[arg(long, value_enum, default_value = "preferred")]
    pub uv: Uv,
    /// Also print the LDIF that adds the credential to the user's directory entry
    /// ([directory] in the configuration: its attribute and base DN).
    #[arg(long)]
    pub directory: bool,
    /// The user's entry for --directory (default: uid=USER,<base_dn>).
    #[arg(long, value_name = "DN", requires = "directory")]
    pub dn: Option<String>,
    /// With --directory: add the mapping to the entry yourself instead of printing the LDIF,
    /// bound as --admin-dn (or as [directory] binds, if it may write).
    #[arg(long, requires = "directory")]
    pub write: bool,
    /// The DN to bind as for --write (with --admin-password-file).
    #[arg(
        long,
        value_name = "DN",
        requires = "write",
        requires = "admin_password_file"
    )]
    pub admin_dn: Option<String>,
    /// A root-only (0600) file holding --admin-dn's password on its first line.
    #[arg(long, value_name = "FILE", requires = "admin_dn")]
    pub admin_password_file: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct ListArgs {
    #[command(flatten)]
    pub user: UserArg,
    /// Print JSON instead of a table.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct NameArgs {
    /// The credential's name (or its base64url credential id).
    pub name: String,
    #[command(flatten)]
    pub user: UserArg,
}

#[derive(Debug, Args)]
pub struct RenameArgs {
    /// The credential's current name (or its base64url credential id).
    pub old: String,
    /// The new name.
    pub new: String,
    #[command(flatten)]
    pub user: UserArg,
}

#[derive(Debug, Args)]
pub struct TestArgs {
    #[command(flatten)]
    pub user: UserArg,
    /// The PAM service name mixed into the challenge.
    #[arg(long, short, value_name = "SERVICE", default_value = "ctap-enroll")]
    pub service: String,
}

#[derive(Debug, Args)]
pub struct ImportArgs {
    /// The pam-u2f authfile (e.g. /etc/u2f_mappings or ~/.config/Yubico/u2f_keys).
    pub file: PathBuf,
    /// Import only this user's line (default: every user in the file).
    #[arg(long, short, value_name = "USER")]
    pub user: Option<String>,
    /// pam-u2f's origin, the RP ID of the credentials (default: the config's rp_id, else
    /// pam://<hostname>, pam-u2f's own default).
    #[arg(long, value_name = "ID")]
    pub rp_id: Option<String>,
    /// pam-u2f's appid, the RP ID of old-format (U2F) credentials (default: the RP ID).
    #[arg(long, value_name = "ID")]
    pub appid: Option<String>,
}

#[derive(Debug, Subcommand)]
pub enum PinCommand {
    /// Give a key without a PIN its first PIN (asked twice).
    Set,
    /// Change the key's PIN (the current one, then the new one twice).
    Change,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum SshKeyType {
    #[value(name = "ecdsa-sk")]
    EcdsaSk,
    #[value(name = "ed25519-sk")]
    Ed25519Sk,
}

#[derive(Debug, Args)]
pub struct SshArgs {
    /// A label for the key, also its comment (default: ssh-<n>).
    #[arg(long, short, value_name = "LABEL")]
    pub name: Option<String>,
    /// The key type.
    #[arg(long = "type", short = 't', value_enum, default_value = "ecdsa-sk")]
    pub key_type: SshKeyType,
    /// The FIDO application: "ssh:" or "ssh:<name>".
    #[arg(long, value_name = "APP", default_value = "ssh:")]
    pub application: String,
    /// Sign without a touch (the server must allow it: no-touch-required in authorized_keys).
    #[arg(long)]
    pub no_touch_required: bool,
    /// Require the PIN or built-in UV for every signature (verify-required).
    #[arg(long)]
    pub verify_required: bool,
    /// Store the credential on the key (discoverable), like `ssh-keygen -O resident`.
    #[arg(long)]
    pub resident: bool,
    /// Also write the OpenSSH key-handle file here (and PATH.pub); never overwrites.
    #[arg(long, value_name = "PATH")]
    pub write_key_file: Option<PathBuf>,
    /// The credentials file (default: ~/.config/ctap/credentials.toml).
    #[arg(long, value_name = "FILE")]
    pub credentials: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct ExportSshArgs {
    /// Only the SSH credential with this name.
    #[arg(long)]
    pub name: Option<String>,
    /// Also write the credential's OpenSSH key-handle file here (and PATH.pub); never
    /// overwrites. Needs --name.
    #[arg(long, value_name = "PATH", requires = "name")]
    pub write_key_file: Option<PathBuf>,
    /// The credentials file (default: ~/.config/ctap/credentials.toml).
    #[arg(long, value_name = "FILE")]
    pub credentials: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct CredentialsArgs {
    /// The credentials file (default: ~/.config/ctap/credentials.toml).
    #[arg(long, value_name = "FILE")]
    pub credentials: Option<PathBuf>,
}
