//! Command line: `ctap-softtoken serve --socket PATH --state FILE [options]`.

use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

use clap::{Parser, Subcommand, ValueEnum};

use crate::fault::Fault;

/// A virtual FIDO2 security key behind a unix socket.
///
/// The authenticator is the SoloKeys/Nitrokey `fido-authenticator` running on trussed's software
/// platform. Clients speak CTAPHID over the socket: SOCK_STREAM, exactly 64 bytes per HID report
/// in each direction, no other framing; one connection is one opened device.
#[derive(Debug, Parser)]
#[command(name = "ctap-softtoken", version, about, long_about)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Serve the virtual key on a unix socket until SIGTERM or SIGINT.
    ///
    /// When the socket is ready, one line `ctap-softtoken: listening on PATH` goes to stderr.
    Serve(ServeArgs),
}

#[derive(Debug, clap::Args)]
pub struct ServeArgs {
    /// Path of the unix socket to listen on (a stale socket there is replaced; mode 0600).
    #[arg(long, value_name = "PATH")]
    pub socket: PathBuf,

    /// The key's persistent memory: credentials' secrets, PIN, signature counter.
    ///
    /// Created if missing (or empty). A byte copy of this file is a cloned key: same
    /// credentials, counter continuing from the copy's value. Locked while in use.
    #[arg(long, value_name = "FILE")]
    pub state: PathBuf,

    /// Set this PIN at start if the key has none yet (prints that it did).
    #[arg(long, value_name = "PIN")]
    pub pin: Option<String>,

    /// How the simulated user answers touch requests: `auto` (touches at once), `deny` (never
    /// touches: the request fails quickly with USER_ACTION_TIMEOUT), `delay=MS` (touches after
    /// MS milliseconds, with UPNEEDED keepalives meanwhile).
    #[arg(long, value_name = "MODE", default_value = "auto")]
    pub presence: Presence,

    /// Misbehave on purpose, for tests. Applies to getAssertion (0x02) only (slow-answer: to
    /// every CTAP2 command; u2f-*: to U2F_AUTHENTICATE, u2f-other-appid to U2F_REGISTER), so a
    /// key can be enrolled normally and fail at login after a restart with the same state.
    #[arg(long, value_enum, value_name = "KIND")]
    pub fault: Option<Fault>,

    /// Be a U2F-only key, as older keys are: INIT announces no CBOR capability, CTAPHID_CBOR
    /// (getInfo too) is answered ERR_INVALID_CMD, CTAP1/U2F over CTAPHID_MSG is served. A PIN
    /// is CTAP2 (clientPIN), so not with --pin.
    #[arg(long, conflicts_with = "pin")]
    pub ctap1_only: bool,

    /// Append a line to FILE for every CTAPHID_CANCEL received (tests check that clients
    /// cancel what they abandon). CANCELs are logged to stderr either way.
    #[arg(long, value_name = "FILE")]
    pub cancel_log: Option<PathBuf>,
}

/// The simulated user's answer to a user-presence check.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Presence {
    /// Present at once.
    Auto,
    /// Never present.
    Deny,
    /// Present after this long.
    Delay(Duration),
}

impl FromStr for Presence {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "auto" => Ok(Presence::Auto),
            "deny" => Ok(Presence::Deny),
            other => match other.strip_prefix("delay=") {
                Some(ms) => ms
                    .parse::<u64>()
                    .map(|ms| Presence::Delay(Duration::from_millis(ms)))
                    .map_err(|_| {
                        format!("bad delay {ms:?}: expected milliseconds, e.g. delay=500")
                    }),
                None => Err(format!(
                    "unknown presence mode {other:?}: expected auto, deny or delay=MS"
                )),
            },
        }
    }
}

// `ValueEnum` gives `--fault` its list of kinds and per-kind help in `--help`.
impl ValueEnum for Fault {
    fn value_variants<'a>() -> &'a [Self] {
        Fault::ALL
    }

    fn to_possible_value(&self) -> Option<clap::builder::PossibleValue> {
        Some(clap::builder::PossibleValue::new(self.name()).help(self.help()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn cli_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn presence_parses() {
        assert_eq!("auto".parse(), Ok(Presence::Auto));
        assert_eq!("deny".parse(), Ok(Presence::Deny));
        assert_eq!(
            "delay=250".parse(),
            Ok(Presence::Delay(Duration::from_millis(250)))
        );
        assert!("delay=x".parse::<Presence>().is_err());
        assert!("sometimes".parse::<Presence>().is_err());
    }
}
