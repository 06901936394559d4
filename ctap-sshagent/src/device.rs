//! One signature with the security key: open it, settle user verification through the shared
//! planner (`ctap_core::flows::uv`: built-in UV, or a PIN through this agent's askpass [`Prompter`]),
//! cue the user for the touch, sign (the answer checked by the shared verifier), close. The whole signature (opening the
//! key, every exchange, the touch) ends within the touch timeout, plus the time the user spends
//! in askpass, whatever the key does: a stuck or hostile key costs one bounded request.

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use ctap_core::flows::session::{open_authenticators_for, Authenticator, Prompter, FOR_OPENSSH};
use ctap_core::flows::uv::{self, UvError, UvPlan, UvRefusal, Verification};
use ctap_core::ssh::{self, SkKey, SkSignature, SshError};
use ctap_core::store::config::PinPolicy;
use ctap_core::transport::ctap2::pin::{permission, Pin};
use ctap_core::transport::ctap2::{CtapError, CtapStatus};
use ctap_core::transport::ctaphid::{CtapHidError, KeepaliveStatus, WaitDecision};
use ctap_core::transport::device::DeviceUri;

use crate::askpass;
use crate::error::{AgentError, AskpassPurpose};

/// How to reach the user and the key.
#[derive(Debug, Clone)]
pub struct DeviceConfig {
    pub uri: DeviceUri,
    pub askpass: Option<PathBuf>,
    pub notify: Option<String>,
    pub touch_timeout: Duration,
    pub askpass_timeout: Duration,
    /// Log each signature and touch request (`-v`). Off by default: a busy user's journal
    /// would grow by lines per signature (ssh itself tells the user to touch the key).
    pub verbose: bool,
    /// `--pin-cache SECONDS`: keep the pinUvAuthToken a PIN bought for this long ([`TokenCache`]).
    /// `None` (the default): a PIN for every signature that needs one.
    pub pin_cache: Option<Duration>,
}

/// The pinUvAuthToken kept between signatures with `--pin-cache` (docs/ARCHITECTURE.md §6):
/// one token (getAssertion permission, for the RP ID of the credential it was asked for), until
/// it expires (counted from the PIN), the agent is locked, the key refuses it (replugged: a new
/// power cycle invalidates every token) or the agent exits. Every way out drops it, and the
/// token wipes itself on drop. A touch is still asked for each signature: the token stands for
/// the PIN, not for presence.
#[derive(Clone, Default)]
pub struct TokenCache(Arc<Mutex<TokenSlot>>);

#[derive(Default)]
struct TokenSlot {
    kept: Option<KeptToken>,
    /// Bumped by every new token and every [`TokenCache::forget`]: a token taken out for a
    /// signature goes back only if nothing happened meanwhile, and an expiry timer forgets only
    /// its own token.
    generation: u64,
}

struct KeptToken {
    verification: Verification,
    rp_id: String,
    expires: Instant,
}

/// A token taken out of the cache for one signature.
struct Borrowed {
    verification: Verification,
    expires: Instant,
    generation: u64,
}

impl TokenCache {
    fn slot(&self) -> std::sync::MutexGuard<'_, TokenSlot> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The kept token if it is for `rp_id` and unexpired; any other is dropped (wiped).
    fn take(&self, rp_id: &str) -> Option<Borrowed> {
        let mut slot = self.slot();
        let kept = slot.kept.take()?;
        if kept.rp_id != rp_id || Instant::now() >= kept.expires {
            return None;
        }
        Some(Borrowed {
            verification: kept.verification,
            expires: kept.expires,
            generation: slot.generation,
        })
    }

    /// Put a borrowed token back, unless the cache was forgotten or refilled meanwhile.
    fn put_back(&self, b: Borrowed, rp_id: &str) {
        let mut slot = self.slot();
        if slot.generation == b.generation && Instant::now() < b.expires {
            slot.kept = Some(KeptToken {
                verification: b.verification,
                rp_id: rp_id.to_string(),
                expires: b.expires,
            });
        }
    }

    /// Keep a token a PIN just bought, for `ttl`; a timer wipes it at expiry even if no
    /// signature comes.
    fn keep(&self, verification: Verification, rp_id: &str, ttl: Duration) {
        let generation = {
            let mut slot = self.slot();
            slot.generation += 1;
            slot.kept = Some(KeptToken {
                verification,
                rp_id: rp_id.to_string(),
                expires: Instant::now() + ttl,
            });
            slot.generation
        };
        let cache = self.clone();
        let timer = std::thread::Builder::new()
            .name("pin-cache-expiry".into())
            .spawn(move || {
                std::thread::sleep(ttl);
                let mut slot = cache.slot();
                if slot.generation == generation {
                    slot.kept = None;
                }
            });
        if timer.is_err() {
            // No timer, no cache: never keep a token longer than promised.
            self.forget();
        }
    }

    /// Drop (wipe) the kept token: on lock, at exit.
    pub fn forget(&self) {
        let mut slot = self.slot();
        slot.kept = None;
        slot.generation += 1;
    }

    /// Whether a token is kept (tests and the log).
    pub fn holds_token(&self) -> bool {
        self.slot().kept.is_some()
    }
}

/// One exchange with the key at a time: a second client waits (bounded) instead of interleaving
/// CTAPHID channels on one key while the first waits for a touch.
#[derive(Default)]
pub struct DeviceGate {
    busy: Mutex<bool>,
    freed: Condvar,
    /// The open session, kept between requests: opening (connect, CTAPHID INIT, getInfo) costs
    /// as much as the signature itself. Used only by the gate's holder; dropped after any
    /// framing or transport error and when idle, so a replugged or misbehaving key starts afresh.
    session: Mutex<Option<(Authenticator, Instant)>>,
    /// `--pin-cache`: the token a PIN bought, shared with the lock and the exit path.
    pub tokens: TokenCache,
}

/// A session unused this long is closed and reopened on the next request.
const SESSION_IDLE: Duration = Duration::from_secs(60);

pub struct GateGuard<'a>(&'a DeviceGate);

impl Drop for GateGuard<'_> {
    fn drop(&mut self) {
        if let Ok(mut b) = self.0.busy.lock() {
            *b = false;
        }
        self.0.freed.notify_one();
    }
}

impl DeviceGate {
    pub fn acquire(&self, wait: Duration) -> Option<GateGuard<'_>> {
        let deadline = Instant::now() + wait;
        let mut busy = self.busy.lock().ok()?;
        while *busy {
            let left = deadline.checked_duration_since(Instant::now())?;
            busy = self.freed.wait_timeout(busy, left).ok()?.0;
        }
        *busy = true;
        Some(GateGuard(self))
    }
}

/// Time spent on one signature, for the log and the benchmark.
#[derive(Debug, Clone, Copy, Default)]
pub struct SignTiming {
    pub open: Duration,
    pub assertion: Duration,
}

/// The configured key, opened as the PAM module opens it; with several keys (`auto`, or a list
/// of `unix:` sockets), the one the user touches. Opening and every request on it end by
/// `deadline`.
fn open(cfg: &DeviceConfig, deadline: Instant) -> Result<Authenticator, AgentError> {
    let failed = |source| AgentError::Open {
        uri: cfg.uri.to_string(),
        source,
    };
    // A U2F-only key is refused with what it lacks: OpenSSH's sk keys are CTAP2 only.
    let keys = open_authenticators_for(&cfg.uri, cfg.touch_timeout, Some(deadline), FOR_OPENSSH)
        .map_err(|e| failed(Some(e)))?;
    if keys.len() > 1 {
        crate::log(format!(
            "{} security keys are attached: touch the one to use",
            keys.len()
        ));
    }
    // Several keys: the one the user touches, kept as the session like any other.
    ctap_core::flows::login::one_key_by_touch(keys).map_err(|e| {
        crate::log(format!("no key was chosen: {e}"));
        failed(None)
    })
}

/// The transport failed: on a kept session this means the key went away since (replugged,
/// the virtual key restarted), and one fresh session is worth a try.
fn is_transport_failure(r: &Result<SkSignature, SshError>) -> bool {
    matches!(
        r,
        Err(SshError::Ctap(CtapError::Hid(CtapHidError::Transport(_))))
    )
}

/// Whether the session is still trustworthy after this result: the key answered within the
/// protocol (a signature, or a CTAP status such as "denied").
fn keep_session(r: &Result<SkSignature, SshError>) -> bool {
    match r {
        Ok(_) | Err(SshError::Ctap(CtapError::Status(_))) => true,
        Err(
            SshError::Ctap(_)
            | SshError::BadAssertion(_)
            | SshError::Rejected(_)
            | SshError::Malformed(_)
            | SshError::Unsupported(_)
            | SshError::Refused(_),
        ) => false,
    }
}

/// Sign `data` with `key` on the configured device.
pub fn sign(
    cfg: &DeviceConfig,
    gate: &DeviceGate,
    key: &SkKey,
    data: &[u8],
) -> Result<(SkSignature, SignTiming), AgentError> {
    let _guard = gate
        .acquire(cfg.touch_timeout)
        .ok_or(AgentError::DeviceBusy)?;
    let mut slot = gate.session.lock().unwrap_or_else(|p| p.into_inner());
    let t0 = Instant::now();
    // Everything with the key ends by this instant (moved on by the time spent in askpass).
    let deadline = t0 + cfg.touch_timeout;
    let kept = slot
        .take()
        .filter(|(_, used)| used.elapsed() < SESSION_IDLE)
        .map(|(mut c, _)| {
            c.set_deadline(Some(deadline));
            c
        });
    let (mut ctap, mut reused) = match kept {
        Some(c) => (c, true),
        None => (open(cfg, deadline)?, false),
    };
    // PIN and UV state may have changed since the session was opened: ask again when it matters.
    if reused && key.verify_required() && ctap.refresh_info().is_err() {
        ctap = open(cfg, deadline)?;
        reused = false;
    }
    let mut timing = SignTiming {
        open: t0.elapsed(),
        ..SignTiming::default()
    };

    let mut prompter = AskpassPrompter::new(cfg, key);
    // The planner decides, as for a login: built-in UV, the PIN through askpass, or refusal.
    let plan = uv::plan(ctap.info(), key.verify_required(), PinPolicy::Prompt)
        .map_err(|r| AgentError::Uv(UvError::Refused(r)))?;
    // With --pin-cache, a PIN bought earlier stands in for asking again.
    let cacheable = cfg.pin_cache.filter(|_| plan == UvPlan::Pin);
    let borrowed = cacheable.and_then(|_| gate.tokens.take(&key.application));
    let (mut verification, mut borrowed) = match borrowed {
        Some(b) => (None, Some(b)),
        None => (Some(obtain(&mut ctap, plan, key, &mut prompter)?), None),
    };
    if key.touch_required() || plan == UvPlan::BuiltIn {
        prompter.cue.show();
    }
    let t1 = Instant::now();
    let mut result = match (&verification, &borrowed) {
        (Some(v), _) => attempt(&mut ctap, key, data, v, &mut prompter),
        (None, Some(b)) => attempt(&mut ctap, key, data, &b.verification, &mut prompter),
        (None, None) => return Err(AgentError::Uv(UvError::Refused(UvRefusal::NoPinEntered))),
    };
    if borrowed.is_some() && refuses_token(&result) {
        // The key no longer knows the kept token (replugged, or its own timer ran out): drop
        // it and ask for the PIN, once.
        borrowed = None;
        let fresh = obtain(&mut ctap, plan, key, &mut prompter)?;
        result = attempt(&mut ctap, key, data, &fresh, &mut prompter);
        verification = Some(fresh);
    }
    if reused && is_transport_failure(&result) {
        let t = Instant::now();
        // The askpass time already moved the deadline on: the fresh session keeps it.
        let deadline = ctap.deadline().unwrap_or(deadline);
        ctap = open(cfg, deadline)?;
        timing.open += t.elapsed();
        // A token belongs to the session it was obtained on: a kept one is dropped too.
        borrowed = None;
        let fresh = obtain(&mut ctap, plan, key, &mut prompter)?;
        result = attempt(&mut ctap, key, data, &fresh, &mut prompter);
        verification = Some(fresh);
    }
    let has_token =
        borrowed.is_some() || verification.as_ref().is_some_and(|v| v.token().is_some());
    let result = match result {
        // The key wants a PIN although the credential did not say so (credProtect, alwaysUv):
        // ask once, as OpenSSH's agent does.
        Err(SshError::Ctap(e))
            if !has_token
                && e.status() == Some(CtapStatus::PuatRequired)
                && ctap.refresh_info().is_ok_and(|i| i.pin_set()) =>
        {
            let verification = obtain(&mut ctap, UvPlan::Pin, key, &mut prompter)?;
            attempt(&mut ctap, key, data, &verification, &mut prompter)
        }
        other => other,
    };
    timing.assertion = t1.elapsed();
    if let (Some(ttl), true) = (cacheable, result.is_ok()) {
        match (borrowed, verification) {
            (Some(b), _) => gate.tokens.put_back(b, &key.application),
            (None, Some(v)) if v.token().is_some() => gate.tokens.keep(v, &key.application, ttl),
            _ => {}
        }
    }
    if keep_session(&result) {
        ctap.set_deadline(None);
        *slot = Some((ctap, Instant::now()));
    }
    match result {
        Ok(sig) => Ok((sig, timing)),
        Err(SshError::Ctap(e)) if e.status() == Some(CtapStatus::PinInvalid) => {
            Err(AgentError::WrongPin)
        }
        Err(e) => Err(AgentError::Key(e)),
    }
}

/// The key refused a kept token: it does not know it any more (a new power cycle) or will not
/// take it again.
fn refuses_token(r: &Result<SkSignature, SshError>) -> bool {
    matches!(
        r,
        Err(SshError::Ctap(e)) if matches!(
            e.status(),
            Some(CtapStatus::PinAuthInvalid | CtapStatus::PuatRequired)
        )
    )
}

/// Carry out the planner's `plan` with the askpass prompter; its failures as the agent logs them.
fn obtain(
    ctap: &mut Authenticator,
    plan: UvPlan,
    key: &SkKey,
    prompter: &mut AskpassPrompter<'_>,
) -> Result<Verification, AgentError> {
    match uv::obtain(
        ctap,
        plan,
        &key.application,
        permission::GET_ASSERTION,
        prompter,
    ) {
        Ok(v) => Ok(v),
        Err(UvError::Refused(UvRefusal::NoPinEntered)) => Err(prompter
            .failure
            .take()
            .unwrap_or(AgentError::Uv(UvError::Refused(UvRefusal::NoPinEntered)))),
        Err(UvError::Device(e)) if e.status() == Some(CtapStatus::PinInvalid) => {
            Err(AgentError::WrongPin)
        }
        Err(e) => Err(AgentError::Uv(e)),
    }
}

fn attempt(
    ctap: &mut Authenticator,
    key: &SkKey,
    data: &[u8],
    verification: &Verification,
    prompter: &mut AskpassPrompter<'_>,
) -> Result<SkSignature, SshError> {
    let mut on_keepalive = |s: KeepaliveStatus| {
        if s == KeepaliveStatus::UpNeeded {
            prompter.cue.show();
        }
        WaitDecision::Continue
    };
    ssh::sign(ctap, key, data, verification, &mut on_keepalive)
}

/// The agent's [`Prompter`]: the PIN through askpass, the touch cue as a log line and the
/// notify command. The time the user takes in askpass (bounded by the askpass timeout) is not
/// the key's: the signature's deadline moves on by as much.
struct AskpassPrompter<'a> {
    cfg: &'a DeviceConfig,
    key: &'a SkKey,
    cue: Cue<'a>,
    /// Why askpass gave no PIN, for the agent's log.
    failure: Option<AgentError>,
}

impl<'a> AskpassPrompter<'a> {
    fn new(cfg: &'a DeviceConfig, key: &'a SkKey) -> Self {
        AskpassPrompter {
            cfg,
            key,
            cue: Cue::new(cfg, key),
            failure: None,
        }
    }
}

impl Prompter for AskpassPrompter<'_> {
    fn touch_cue(&mut self, _message: &str) {
        self.cue.show();
    }

    fn request_pin(&mut self, _prompt: &str) -> Option<Pin> {
        match ask_pin_now(self.cfg, self.key) {
            Ok(pin) => Some(pin),
            Err(why) => {
                self.failure = Some(why);
                None
            }
        }
    }

    fn info(&mut self, message: &str) {
        if self.cfg.verbose {
            crate::log(message);
        }
    }

    fn pin_time_is_the_users(&self) -> bool {
        true
    }
}

fn ask_pin_now(cfg: &DeviceConfig, key: &SkKey) -> Result<Pin, AgentError> {
    let prog = cfg
        .askpass
        .as_ref()
        .ok_or(AgentError::NoAskpass(AskpassPurpose::Pin))?;
    let touch = if key.touch_required() {
        " and confirm user presence"
    } else {
        ""
    };
    let prompt = format!(
        "Enter PIN{touch} for {} key {}: ",
        key.algorithm().ssh_name(),
        key.fingerprint()
    );
    let answer = askpass::read_secret(prog, &prompt, cfg.askpass_timeout)?;
    Pin::new(answer.to_string()).map_err(AgentError::BadPin)
}

/// "Touch your security key", once per request: a log line and the optional notify command.
struct Cue<'a> {
    cfg: &'a DeviceConfig,
    key: &'a SkKey,
    shown: bool,
}

impl<'a> Cue<'a> {
    fn new(cfg: &'a DeviceConfig, key: &'a SkKey) -> Self {
        Cue {
            cfg,
            key,
            shown: false,
        }
    }

    fn show(&mut self) {
        if self.shown {
            return;
        }
        self.shown = true;
        let msg = format!(
            "Touch your security key to sign with {} ({})",
            ctap_core::text::printable(&self.key.comment),
            self.key.fingerprint()
        );
        if self.cfg.verbose {
            crate::log(&msg);
        }
        if let Some(cmd) = &self.cfg.notify {
            match Command::new("/bin/sh")
                .arg("-c")
                .arg(cmd)
                .arg("ctap-sshagent")
                .arg(&msg)
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .spawn()
            {
                // Reap it without waiting here: the touch must not wait for the notification.
                Ok(mut child) => {
                    std::thread::spawn(move || child.wait());
                }
                Err(e) => crate::log(format!("notify command failed: {e}")),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_token_is_kept_per_rp_until_expiry_or_forget() {
        let cache = TokenCache::default();
        cache.keep(
            Verification::NotRequired,
            "ssh:",
            Duration::from_millis(300),
        );
        assert!(
            cache.take("ssh:other").is_none(),
            "another RP's use drops it"
        );
        assert!(!cache.holds_token());

        cache.keep(
            Verification::NotRequired,
            "ssh:",
            Duration::from_millis(300),
        );
        let b = cache.take("ssh:").unwrap();
        cache.put_back(b, "ssh:");
        assert!(cache.holds_token());
        // Locked while a signature had it out: it does not come back.
        let b = cache.take("ssh:").unwrap();
        cache.forget();
        cache.put_back(b, "ssh:");
        assert!(!cache.holds_token());

        // The expiry timer wipes it with no signature coming.
        cache.keep(
            Verification::NotRequired,
            "ssh:",
            Duration::from_millis(100),
        );
        std::thread::sleep(Duration::from_millis(400));
        assert!(!cache.holds_token());
    }
}
