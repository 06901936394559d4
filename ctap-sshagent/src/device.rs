//! One signature with the security key: open it, settle user verification through the shared
//! planner (`ctap_core::flows::uv`: built-in UV, or a PIN through this agent's askpass [`Prompter`]),
//! cue the user for the touch, sign (the answer checked by the shared verifier), close. The whole signature (opening the
//! key, every exchange, the touch) ends within the touch timeout, plus the time the user spends
//! in askpass, whatever the key does: a stuck or hostile key costs one bounded request.

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::{Condvar, Mutex};
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

/// The configured key, opened as the PAM module opens it; with `auto` and several keys, the
/// first one that opens. Opening and every request on it end by `deadline`.
fn open(cfg: &DeviceConfig, deadline: Instant) -> Result<Authenticator, AgentError> {
    let failed = |source| AgentError::Open {
        uri: cfg.uri.to_string(),
        source,
    };
    // A U2F-only key is refused with what it lacks: OpenSSH's sk keys are CTAP2 only.
    open_authenticators_for(&cfg.uri, cfg.touch_timeout, Some(deadline), FOR_OPENSSH)
        .map_err(|e| failed(Some(e)))?
        .into_iter()
        .next()
        .ok_or_else(|| failed(None))
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
    let mut verification = obtain(&mut ctap, plan, key, &mut prompter)?;
    if key.touch_required() || plan == UvPlan::BuiltIn {
        prompter.cue.show();
    }
    let t1 = Instant::now();
    let mut result = attempt(&mut ctap, key, data, &verification, &mut prompter);
    if reused && is_transport_failure(&result) {
        let t = Instant::now();
        // The askpass time already moved the deadline on: the fresh session keeps it.
        let deadline = ctap.deadline().unwrap_or(deadline);
        ctap = open(cfg, deadline)?;
        timing.open += t.elapsed();
        // A token belongs to the session it was obtained on.
        verification = obtain(&mut ctap, plan, key, &mut prompter)?;
        result = attempt(&mut ctap, key, data, &verification, &mut prompter);
    }
    let result = match result {
        // The key wants a PIN although the credential did not say so (credProtect, alwaysUv):
        // ask once, as OpenSSH's agent does.
        Err(SshError::Ctap(e))
            if verification.token().is_none()
                && e.status() == Some(CtapStatus::PuatRequired)
                && ctap.refresh_info().is_ok_and(|i| i.pin_set()) =>
        {
            let verification = obtain(&mut ctap, UvPlan::Pin, key, &mut prompter)?;
            attempt(&mut ctap, key, data, &verification, &mut prompter)
        }
        other => other,
    };
    timing.assertion = t1.elapsed();
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
