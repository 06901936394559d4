//! The user-verification planner: the one place that decides how user verification is obtained
//! (the key's built-in UV, a PIN through the [`Prompter`], or refusal), for a login, an
//! enrollment, `ctap-enroll ssh` and each of the agent's signatures.
//!
//! [`plan`] decides from the key's getInfo and the caller's policy alone; [`obtain`] carries a
//! plan out (asks the prompter for the PIN, exchanges it for a pinUvAuthToken) and returns the
//! [`Verification`] the request is then made with.

use std::fmt;
use std::time::Instant;

use crate::flows::session::{keepalive_for, Prompter};
use crate::store::config::PinPolicy;
use crate::transport::ctap2::info::AuthenticatorInfo;
use crate::transport::ctap2::pin::PinUvAuthToken;
use crate::transport::ctap2::{Ctap2, CtapError, CtapStatus};
use crate::transport::device::Transport;

/// How user verification will be obtained for one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UvPlan {
    /// The request does not ask for user verification.
    NotRequired,
    /// The key's built-in verification (a fingerprint): a token from it when the key supports
    /// permissions, else the request's `uv` option.
    BuiltIn,
    /// The key's PIN, asked through the prompter and exchanged for a token.
    Pin,
}

/// Why user verification cannot be obtained. Each is a refusal before anything is sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UvRefusal {
    /// Verification is required and the key has neither a PIN nor built-in verification.
    NoPin,
    /// Verification is required, the key has only a PIN, and policy forbids PIN entry.
    PinEntryDisabled,
    /// The prompter gave no PIN (cancelled, or nothing to ask with).
    NoPinEntered,
    /// The key has one PIN retry left: a wrong PIN now would block it for good, and only a reset
    /// that wipes every credential recovers. No caller spends it; the right PIN through
    /// `ctap-enroll pin change` at the user's own terminal restores the count.
    LastRetry,
}

impl fmt::Display for UvRefusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            UvRefusal::NoPin => write!(
                f,
                "user verification is required but the security key has no PIN: set one with `ctap-enroll pin set`"
            ),
            UvRefusal::PinEntryDisabled => write!(
                f,
                "user verification is required and PIN entry is disabled (pin = uv-only)"
            ),
            UvRefusal::NoPinEntered => write!(f, "no PIN was entered"),
            UvRefusal::LastRetry => write!(
                f,
                "the security key has one PIN try left, so no PIN was sent: enter the right PIN \
                 with `ctap-enroll pin change` at your own terminal to restore the tries"
            ),
        }
    }
}

impl std::error::Error for UvRefusal {}

/// Why [`obtain`] failed: a refusal, or the key's answer (a wrong or blocked PIN, a device error).
#[derive(Debug)]
pub enum UvError {
    Refused(UvRefusal),
    Device(CtapError),
}

impl fmt::Display for UvError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            UvError::Refused(r) => r.fmt(f),
            UvError::Device(e) => e.fmt(f),
        }
    }
}

impl std::error::Error for UvError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            UvError::Refused(r) => Some(r),
            UvError::Device(e) => Some(e),
        }
    }
}

impl From<CtapError> for UvError {
    fn from(e: CtapError) -> Self {
        UvError::Device(e)
    }
}

impl From<UvRefusal> for UvError {
    fn from(r: UvRefusal) -> Self {
        UvError::Refused(r)
    }
}

/// How a request proves user verification, as [`obtain`] settled it.
pub enum Verification {
    /// Not asked for.
    NotRequired,
    /// The key verifies the user itself: the request carries `uv = true`.
    ByOption,
    /// A pinUvAuthToken (from the PIN or built-in UV) scoped to the request's permissions.
    ByToken(PinUvAuthToken),
}

impl Verification {
    /// The token to authenticate the request with, if any.
    pub fn token(&self) -> Option<&PinUvAuthToken> {
        match self {
            Verification::ByToken(t) => Some(t),
            Verification::NotRequired | Verification::ByOption => None,
        }
    }

    /// Whether the request sets the `uv` option.
    pub fn uv_option(&self) -> bool {
        matches!(self, Verification::ByOption)
    }

    /// Whether the request asks for verification at all (so the answer must carry UV).
    pub fn required(&self) -> bool {
        !matches!(self, Verification::NotRequired)
    }
}

/// Decide how to verify the user on a key described by `info`, when `required`.
pub fn plan(
    info: &AuthenticatorInfo,
    required: bool,
    pin_policy: PinPolicy,
) -> Result<UvPlan, UvRefusal> {
    if !required {
        Ok(UvPlan::NotRequired)
    } else if info.builtin_uv() {
        Ok(UvPlan::BuiltIn)
    } else if !info.pin_set() {
        Err(UvRefusal::NoPin)
    } else if pin_policy == PinPolicy::UvOnly {
        Err(UvRefusal::PinEntryDisabled)
    } else {
        Ok(UvPlan::Pin)
    }
}

/// Carry out `plan` on `key` for a request under `rp_id` needing `permissions`.
///
/// A PIN goes only to a key with more than one retry left; a wrong one is reported through the prompter
/// with the retries that remain. When the prompter says so
/// ([`Prompter::pin_time_is_the_users`]), the time spent asking is added to the key's deadline.
pub fn obtain<T: Transport>(
    key: &mut Ctap2<T>,
    plan: UvPlan,
    rp_id: &str,
    permissions: u8,
    prompter: &mut dyn Prompter,
) -> Result<Verification, UvError> {
    obtain_prompting(key, plan, rp_id, permissions, DEFAULT_PIN_PROMPT, prompter)
}

pub use crate::text::DEFAULT_PIN_PROMPT;

/// [`obtain`], asking for the PIN with `pin_prompt`.
pub fn obtain_prompting<T: Transport>(
    key: &mut Ctap2<T>,
    plan: UvPlan,
    rp_id: &str,
    permissions: u8,
    pin_prompt: &str,
    prompter: &mut dyn Prompter,
) -> Result<Verification, UvError> {
    match plan {
        UvPlan::NotRequired => Ok(Verification::NotRequired),
        UvPlan::BuiltIn if key.info().supports_permissions() => {
            let mut ka = keepalive_for(prompter);
            Ok(Verification::ByToken(key.uv_token(
                permissions,
                Some(rp_id),
                &mut ka,
            )?))
        }
        UvPlan::BuiltIn => Ok(Verification::ByOption),
        UvPlan::Pin => {
            // One getRetries decides both: blocked, or a last try no caller may spend.
            match key.pin_retries()?.retries {
                0 => return Err(CtapError::Status(CtapStatus::PinBlocked).into()),
                1 => return Err(UvRefusal::LastRetry.into()),
                _ => {}
            }
            let asked = Instant::now();
            let pin = prompter.request_pin(pin_prompt);
            if prompter.pin_time_is_the_users() {
                if let Some(deadline) = key.deadline() {
                    key.set_deadline(Some(deadline + asked.elapsed()));
                }
            }
            let pin = pin.ok_or(UvRefusal::NoPinEntered)?;
            match key.pin_token(&pin, permissions, Some(rp_id)) {
                Ok(t) => Ok(Verification::ByToken(t)),
                Err(CtapError::Status(CtapStatus::PinInvalid)) => {
                    let left = key.pin_retries().map(|r| r.retries).unwrap_or(0);
                    prompter.info(&format!("Wrong PIN ({left} tries left)"));
                    Err(CtapError::Status(CtapStatus::PinInvalid).into())
                }
                Err(e) => Err(e.into()),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info(pin_set: Option<bool>, uv: Option<bool>) -> AuthenticatorInfo {
        let mut i = AuthenticatorInfo::default();
        if let Some(p) = pin_set {
            i.options.insert("clientPin".into(), p);
        }
        if let Some(u) = uv {
            i.options.insert("uv".into(), u);
        }
        i
    }

    #[test]
    fn one_plan_for_every_key_and_policy() {
        let no_pin = info(Some(false), None);
        let pin = info(Some(true), None);
        let builtin = info(Some(true), Some(true));
        for p in [PinPolicy::Prompt, PinPolicy::UvOnly] {
            assert_eq!(plan(&no_pin, false, p), Ok(UvPlan::NotRequired));
            assert_eq!(plan(&no_pin, true, p), Err(UvRefusal::NoPin));
            assert_eq!(plan(&builtin, true, p), Ok(UvPlan::BuiltIn));
        }
        assert_eq!(plan(&pin, true, PinPolicy::Prompt), Ok(UvPlan::Pin));
        assert_eq!(
            plan(&pin, true, PinPolicy::UvOnly),
            Err(UvRefusal::PinEntryDisabled)
        );
        assert_eq!(
            plan(&info(None, None), true, PinPolicy::Prompt),
            Err(UvRefusal::NoPin)
        );
    }
}
