//! The module's arguments, from root's /etc/pam.d line: `config=` names root's file, every other
//! `key=value` (or bare flag) overrides that file's value. Only the PAM module has arguments, so
//! only it parses them (docs/ARCHITECTURE.md §8); the library knows the file and the policy.

use std::ffi::CStr;
use std::fmt;
use std::path::PathBuf;

use ctap_core::store::config::{
    CloneAction, CounterPolicy, PinPolicy, Policy, PolicyInvalid, RemotePolicy, UvPolicy,
    DEFAULT_CONFIG,
};
use ctap_core::transport::device::{DeviceUri, TransportError};

/// A module argument the module refuses. Each is a denial (`bad_argument`): a typo on root's
/// pam.d line must never silently drop what it asked for.
#[derive(Debug)]
pub(crate) enum ArgumentError {
    /// Not UTF-8 (kept lossily, for the log).
    NotUtf8 { argument: String },
    /// `config=` names a relative path.
    ConfigNotAbsolute { path: PathBuf },
    /// No such argument.
    Unknown { argument: String },
    /// A `key=value` argument given without its value.
    NeedsValue { argument: String },
    /// A value outside the argument's choices.
    Expected {
        argument: String,
        expected: &'static str,
    },
    /// `device=` that is not a device URI.
    Device {
        argument: String,
        source: TransportError,
    },
    /// The arguments together with root's file make a policy that cannot be used.
    Invalid(PolicyInvalid),
}

impl ArgumentError {
    /// The argument as root wrote it, for the log's `argument=` field.
    pub(crate) fn argument(&self) -> Option<String> {
        match self {
            ArgumentError::NotUtf8 { argument }
            | ArgumentError::Unknown { argument }
            | ArgumentError::NeedsValue { argument }
            | ArgumentError::Expected { argument, .. }
            | ArgumentError::Device { argument, .. } => Some(argument.clone()),
            ArgumentError::ConfigNotAbsolute { path } => Some(format!("config={}", path.display())),
            ArgumentError::Invalid(_) => None,
        }
    }
}

impl fmt::Display for ArgumentError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ArgumentError::NotUtf8 { .. } => f.write_str("not UTF-8"),
            ArgumentError::ConfigNotAbsolute { .. } => {
                f.write_str("config= needs an absolute path")
            }
            ArgumentError::Unknown { argument } => {
                write!(
                    f,
                    "module argument {argument:?}: unknown argument (see pam_ctap(8))"
                )
            }
            ArgumentError::NeedsValue { argument } => {
                write!(f, "module argument {argument:?}: needs a value (key=value)")
            }
            ArgumentError::Expected { argument, expected } => {
                write!(f, "module argument {argument:?}: expected {expected}")
            }
            ArgumentError::Device { argument, source } => {
                write!(f, "module argument {argument:?}: {source}")
            }
            ArgumentError::Invalid(problem) => write!(f, "module arguments: {problem}"),
        }
    }
}

impl std::error::Error for ArgumentError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            ArgumentError::Device { source, .. } => Some(source),
            ArgumentError::Invalid(p) => Some(p),
            ArgumentError::NotUtf8 { .. }
            | ArgumentError::ConfigNotAbsolute { .. }
            | ArgumentError::Unknown { .. }
            | ArgumentError::NeedsValue { .. }
            | ArgumentError::Expected { .. } => None,
        }
    }
}

/// The arguments PAM passed, checked to be UTF-8.
pub(crate) struct ModuleArguments<'a> {
    args: Vec<&'a str>,
}

impl<'a> ModuleArguments<'a> {
    pub(crate) fn from_c(args: &[&'a CStr]) -> Result<Self, ArgumentError> {
        let mut text = Vec::with_capacity(args.len());
        for a in args {
            match a.to_str() {
                Ok(s) => text.push(s),
                Err(_) => {
                    return Err(ArgumentError::NotUtf8 {
                        argument: a.to_string_lossy().into_owned(),
                    })
                }
            }
        }
        Ok(ModuleArguments { args: text })
    }

    /// Arguments already as text (the tests, and the shipped pam.d snippets' check).
    #[cfg(test)]
    pub(crate) fn new(args: Vec<&'a str>) -> Self {
        ModuleArguments { args }
    }

    /// Root's file: the last `config=`, else [`DEFAULT_CONFIG`]. The only argument read before
    /// the file.
    pub(crate) fn config_path(&self) -> Result<PathBuf, ArgumentError> {
        let path = self
            .args
            .iter()
            .rev()
            .find_map(|a| a.strip_prefix("config="))
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from(DEFAULT_CONFIG));
        if path.is_absolute() {
            Ok(path)
        } else {
            Err(ArgumentError::ConfigNotAbsolute { path })
        }
    }

    /// Apply every argument but `config=` over `policy` (root's file), then check the result.
    pub(crate) fn apply(&self, policy: &mut Policy) -> Result<(), ArgumentError> {
        for arg in &self.args {
            apply_one(policy, arg)?;
        }
        policy.validate().map_err(ArgumentError::Invalid)
    }
}

fn apply_one(policy: &mut Policy, arg: &str) -> Result<(), ArgumentError> {
    let (key, value) = match arg.split_once('=') {
        Some((k, v)) => (k, Some(v)),
        None => (arg, None),
    };
    let argument = || arg.to_string();
    let need = || {
        value.ok_or_else(|| ArgumentError::NeedsValue {
            argument: argument(),
        })
    };
    let expected = |expected: &'static str| ArgumentError::Expected {
        argument: argument(),
        expected,
    };
    match key {
        "config" => {}
        "nouserok" | "cue" | "debug" => {
            let on = match value {
                None | Some("true") | Some("yes") | Some("1") => true,
                Some("false") | Some("no") | Some("0") => false,
                Some(_) => return Err(expected("true or false")),
            };
            match key {
                "nouserok" => policy.nouserok = on,
                "cue" => policy.cue = on,
                _ => policy.debug = on,
            }
        }
        "cue_prompt" => policy.cue_prompt = need()?.to_string(),
        "timeout" => {
            policy.timeout = need()?
                .parse()
                .map_err(|_| expected("a number of seconds"))?;
        }
        "user_verification" => {
            policy.user_verification = match need()? {
                "enrolled" => UvPolicy::Enrolled,
                "required" => UvPolicy::Required,
                _ => return Err(expected("enrolled or required")),
            }
        }
        "pin" => {
            policy.pin = match need()? {
                "prompt" => PinPolicy::Prompt,
                "uv-only" => PinPolicy::UvOnly,
                _ => return Err(expected("prompt or uv-only")),
            }
        }
        "counter" => {
            policy.counter = match need()? {
                "allow-zero" => CounterPolicy::AllowZero,
                "require" => CounterPolicy::Require,
                _ => return Err(expected("allow-zero or require")),
            }
        }
        "clone_action" => {
            policy.clone_action = match need()? {
                "deny" => CloneAction::Deny,
                "suspend" => CloneAction::Suspend,
                _ => return Err(expected("deny or suspend")),
            }
        }
        "device" => {
            policy.device =
                need()?
                    .parse::<DeviceUri>()
                    .map_err(|source| ArgumentError::Device {
                        argument: argument(),
                        source,
                    })?
        }
        "rp_id" => policy.rp_id = Some(need()?.to_string()),
        "remote" => {
            policy.remote = match need()? {
                "require" => RemotePolicy::Require,
                "skip" => RemotePolicy::Skip,
                "deny" => RemotePolicy::Deny,
                _ => return Err(expected("require, skip or deny")),
            }
        }
        _ => {
            return Err(ArgumentError::Unknown {
                argument: argument(),
            })
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn apply(args: &[&str]) -> Result<Policy, ArgumentError> {
        let mut p = Policy::default();
        ModuleArguments::new(args.to_vec()).apply(&mut p)?;
        Ok(p)
    }

    #[test]
    fn arguments_override_the_file_and_bad_ones_are_typed() {
        let p = apply(&[
            "nouserok",
            "timeout=5",
            "device=unix:/run/k",
            "cue_prompt=Tap it",
            "remote=skip",
            "config=/x",
        ])
        .unwrap();
        assert_eq!(p.remote, RemotePolicy::Skip);
        assert!(matches!(
            apply(&["remote=maybe"]).unwrap_err(),
            ArgumentError::Expected { .. }
        ));
        assert!(p.nouserok);
        assert_eq!(p.timeout, 5);
        assert_eq!(p.cue_prompt, "Tap it");
        assert_eq!(p.device, DeviceUri::Unix("/run/k".into()));

        let e = apply(&["nosuchopt"]).unwrap_err();
        assert!(matches!(e, ArgumentError::Unknown { .. }), "{e:?}");
        assert!(
            e.to_string().contains("\"nosuchopt\": unknown argument"),
            "{e}"
        );
        assert!(matches!(
            apply(&["timeout=abc"]).unwrap_err(),
            ArgumentError::Expected { .. }
        ));
        assert!(matches!(
            apply(&["counter=maybe"]).unwrap_err(),
            ArgumentError::Expected { .. }
        ));
        assert!(matches!(
            apply(&["timeout"]).unwrap_err(),
            ArgumentError::NeedsValue { .. }
        ));
        assert!(matches!(
            apply(&["device=usb:whatever"]).unwrap_err(),
            ArgumentError::Device { .. }
        ));
        // Each fine alone, unusable together with the file: the combined check runs last.
        assert!(matches!(
            apply(&["timeout=0"]).unwrap_err(),
            ArgumentError::Invalid(PolicyInvalid::Timeout(0))
        ));
    }

    #[test]
    fn config_path_is_the_last_config_argument_and_absolute() {
        let args = ModuleArguments::new(vec!["debug", "config=/etc/a.toml", "config=/etc/b.toml"]);
        assert_eq!(args.config_path().unwrap(), PathBuf::from("/etc/b.toml"));
        assert_eq!(
            ModuleArguments::new(vec!["debug"]).config_path().unwrap(),
            PathBuf::from(DEFAULT_CONFIG)
        );
        assert!(matches!(
            ModuleArguments::new(vec!["config=etc/x.toml"]).config_path(),
            Err(ArgumentError::ConfigNotAbsolute { .. })
        ));
    }

    /// The pam.d lines the project ships use only arguments the module accepts.
    #[test]
    fn shipped_pam_d_snippets_use_valid_arguments() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../config/pam.d");
        for name in ["sudo-ctap", "login-ctap"] {
            let text = std::fs::read_to_string(dir.join(name)).unwrap();
            let lines: Vec<&str> = text
                .lines()
                .filter(|l| !l.trim_start().starts_with('#') && l.contains("pam_ctap.so"))
                .collect();
            assert!(!lines.is_empty(), "{name} has no pam_ctap line");
            for l in lines {
                assert!(l.trim_start().starts_with("auth"), "{name}: auth only: {l}");
                let args: Vec<&str> = l
                    .split_whitespace()
                    .skip_while(|w| !w.ends_with("pam_ctap.so"))
                    .skip(1)
                    .collect();
                apply(&args).unwrap_or_else(|e| panic!("{name}: {e}"));
            }
        }
    }
}
