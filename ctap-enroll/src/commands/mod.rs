//! One module per group of subcommands; [`run`] dispatches.

mod check;
mod credentials;
mod import;
mod keys;
mod ssh;
mod sssd;

use std::io::Write;
use std::path::PathBuf;
use std::time::Duration;

use ctap_core::flows::session::{
    open_authenticators, open_authenticators_for, open_keys, Authenticator, OpenedKey, FOR_OPENSSH,
};
use ctap_core::store::account::{Account, Nss, UserResolver};
use ctap_core::store::config::Policy;
use ctap_core::transport::device::DeviceUri;

use crate::cli::{Cli, Command, UserArg};
use crate::prompt::TerminalPrompter;
use crate::{Exit, Failure};

/// What every subcommand may need: the global options, and root's policy once loaded.
pub struct Context {
    pub config: PathBuf,
    pub device: Option<DeviceUri>,
    pub prompter: TerminalPrompter,
}

impl Context {
    /// Root's policy, with `--device` applied over the file's device.
    pub fn policy(&self) -> Result<Policy, Failure> {
        let mut policy = Policy::load(&self.config)?;
        if let Some(d) = &self.device {
            policy.device = d.clone();
        }
        Ok(policy)
    }
}

/// The one key `device` names; with several attached, the one the user touches
/// (authenticatorSelection: all blink, the first touched is chosen, the others are cancelled).
pub fn single_key(device: &DeviceUri, touch_timeout: Duration) -> Result<Authenticator, Failure> {
    only_key(open_authenticators(device, touch_timeout)?)
}

/// [`single_key`], a U2F-only key included (`enroll` serves both).
pub fn single_opened_key(
    device: &DeviceUri,
    touch_timeout: Duration,
) -> Result<OpenedKey, Failure> {
    let mut keys = open_keys(device, touch_timeout, None)?;
    if keys.len() <= 1 {
        return keys
            .pop()
            .ok_or_else(|| Failure::new(Exit::NoKey, "no security key found", "insert your key"));
    }
    // Several: a touch chooses among the FIDO2 keys (U2F has no authenticatorSelection).
    let fido2: Vec<Authenticator> = keys
        .into_iter()
        .filter_map(|k| match k {
            OpenedKey::Fido2(a) => Some(*a),
            OpenedKey::U2f(_) => None,
        })
        .collect();
    if fido2.is_empty() {
        return Err(Failure::new(
            Exit::Usage,
            "several U2F-only security keys are attached",
            "name one with --device hidraw:/dev/hidrawN (see `ctap-enroll devices`)",
        ));
    }
    only_key(fido2).map(|a| OpenedKey::Fido2(Box::new(a)))
}

/// [`single_key`] for an OpenSSH security key: a U2F-only key is refused with what it lacks.
pub fn single_ssh_key(
    device: &DeviceUri,
    touch_timeout: Duration,
) -> Result<Authenticator, Failure> {
    only_key(open_authenticators_for(
        device,
        touch_timeout,
        None,
        FOR_OPENSSH,
    )?)
}

fn only_key(keys: Vec<Authenticator>) -> Result<Authenticator, Failure> {
    let count = keys.len();
    if count == 0 {
        return Err(Failure::new(
            Exit::NoKey,
            "no security key found",
            "insert your key",
        ));
    }
    if count > 1 {
        eprintln!("{count} security keys are attached: touch the one to use");
    }
    ctap_core::flows::login::one_key_by_touch(keys).map_err(|e| {
        Failure::new(
            Exit::Usage,
            format!("{count} security keys are attached and none was chosen by a touch ({e})"),
            "touch one, or name one with --device hidraw:/dev/hidrawN (see `ctap-enroll devices`)",
        )
    })
}

/// `--user`, else `$SUDO_USER` (the admin who ran `sudo ctap-enroll`), else the current user:
/// the name as given, for `test`, which resolves it the way the PAM module does.
pub fn user_name_of(arg: &UserArg) -> Result<String, Failure> {
    match &arg.user {
        Some(u) => Ok(u.clone()),
        None => match std::env::var("SUDO_USER") {
            Ok(u) if !u.is_empty() => Ok(u),
            Ok(_) | Err(_) => nix::unistd::User::from_uid(nix::unistd::getuid())
                .ok()
                .flatten()
                .map(|u| u.name)
                .ok_or_else(|| {
                    Failure::new(Exit::Usage, "cannot tell who you are", "pass --user USER")
                }),
        },
    }
}

/// The account [`user_name_of`] names, resolved through NSS as login resolves it: records are
/// written under its canonical name and carry its uid.
pub fn user_of(arg: &UserArg) -> Result<Account, Failure> {
    let user = user_name_of(arg)?;
    account_named(&user)
}

/// The account `user` names in the password database.
pub fn account_named(user: &str) -> Result<Account, Failure> {
    match Nss.by_name(user) {
        Ok(Some(a)) => Ok(a),
        Ok(None) => Err(Failure::new(
            Exit::Usage,
            format!("{user:?} is not a user the password database (NSS) knows"),
            "pass an existing login name with --user",
        )),
        Err(e) => Err(Failure::new(
            Exit::Failed,
            e.to_string(),
            "check the name service (nsswitch.conf, sssd)",
        )),
    }
}

/// Print to standard output; a closed pipe is not worth a panic. No control character other
/// than the newlines and tabs we wrote reaches root's terminal (user-controlled fields are also
/// escaped where they are formatted, with `ctap_core::text::printable`).
pub fn say(text: impl AsRef<str>) {
    let text = ctap_core::text::terminal_safe(text.as_ref());
    let _ = writeln!(std::io::stdout().lock(), "{text}");
}

pub fn json(value: &impl serde::Serialize) -> Result<(), Failure> {
    let text = serde_json::to_string_pretty(value)
        .map_err(|e| Failure::new(Exit::Failed, format!("cannot format JSON: {e}"), ""))?;
    say(text);
    Ok(())
}

pub fn run(cli: Cli) -> Result<Exit, Failure> {
    let mut ctx = Context {
        config: cli.config,
        device: cli.device,
        prompter: TerminalPrompter::new(cli.pin_stdin),
    };
    match cli.command {
        Command::Devices(a) => keys::devices(&ctx, &a),
        Command::Enroll(a) => keys::enroll(&mut ctx, &a),
        Command::Pin(p) => keys::pin(&mut ctx, &p),
        Command::List(a) => credentials::list(&ctx, &a),
        Command::Remove(a) => credentials::remove(&ctx, &a),
        Command::Rename(a) => credentials::rename(&ctx, &a),
        Command::Unsuspend(a) => credentials::unsuspend(&ctx, &a),
        Command::Test(a) => credentials::test(&mut ctx, &a),
        Command::ImportPamU2f(a) => import::import(&ctx, &a),
        Command::CheckConfig => check::check(&ctx),
        Command::Ssh(a) => ssh::enroll(&mut ctx, &a),
        Command::ExportSsh(a) => ssh::export(&a),
        Command::LoadResidentSsh(a) => ssh::load_resident(&mut ctx, &a),
        Command::ExportSssd(a) => sssd::export(&ctx, &a),
        Command::ImportSssd(a) => sssd::import(&ctx, &a),
    }
}
