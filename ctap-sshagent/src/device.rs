//! One signature with the security key: open it, settle user verification (built-in UV or a PIN
//! through askpass), cue the user for the touch, sign, close. Each device exchange is bounded by
//! the CTAPHID packet timeout and the touch timeout, so a stuck or hostile key costs one request.

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::{Condvar, Mutex};
use std::time::{Duration, Instant};

use ctap_core::ctap2::pin::Pin;
use ctap_core::ctap2::{Ctap2, CtapStatus};
use ctap_core::ctaphid::{CtapHidChannel, KeepaliveStatus, WaitDecision};
use ctap_core::device::{self, DeviceUri, Transport};
use ctap_core::ssh::{self, SkKey, SkSignature, SshError, UserVerification, VerificationNeed};

use crate::askpass;

/// How to reach the user and the key.
#[derive(Debug, Clone)]
pub struct DeviceConfig {
    pub uri: DeviceUri,
    pub askpass: Option<PathBuf>,
    pub notify: Option<String>,
    pub touch_timeout: Duration,
    pub askpass_timeout: Duration,
}

/// One exchange with the key at a time: a second client waits (bounded) instead of interleaving
/// CTAPHID channels on one key while the first waits for a touch.
pub struct DeviceGate {
    busy: Mutex<bool>,
    freed: Condvar,
}

pub struct GateGuard<'a>(&'a DeviceGate);

impl Drop for GateGuard<'_> {
    fn drop(&mut self) {
        if let Ok(mut b) = self.0.busy.lock() {
            *b = false;
        }
        self.0.freed.notify_one();
    }
}

impl Default for DeviceGate {
    fn default() -> Self {
        DeviceGate {
            busy: Mutex::new(false),
            freed: Condvar::new(),
        }
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

/// Sign `data` with `key` on the configured device.
pub fn sign(
    cfg: &DeviceConfig,
    gate: &DeviceGate,
    key: &SkKey,
    data: &[u8],
) -> Result<(SkSignature, SignTiming), String> {
    let _guard = gate
        .acquire(cfg.touch_timeout)
        .ok_or("the security key is busy with another request")?;
    let t0 = Instant::now();
    let transport = device::open(&cfg.uri).map_err(|e| format!("cannot open {}: {e}", cfg.uri))?;
    let mut ctap =
        Ctap2::new(CtapHidChannel::open(transport).map_err(|e| format!("{}: {e}", cfg.uri))?)
            .map_err(|e| format!("{}: {e}", cfg.uri))?;
    ctap.set_touch_timeout(cfg.touch_timeout);
    let mut timing = SignTiming {
        open: t0.elapsed(),
        ..SignTiming::default()
    };

    let mut cue = Cue::new(cfg, key);
    let need = ssh::verification_need(ctap.info(), key).map_err(|e| e.to_string())?;
    let pin = match need {
        VerificationNeed::Pin => Some(ask_pin(cfg, key)?),
        VerificationNeed::None | VerificationNeed::BuiltIn => None,
    };
    if key.touch_required() || need == VerificationNeed::BuiltIn {
        cue.show();
    }
    let t1 = Instant::now();
    let first = attempt(&mut ctap, key, data, need, pin.as_ref(), &mut cue);
    let result = match first {
        // The key wants a PIN although the credential did not say so (credProtect, alwaysUv):
        // ask once, as OpenSSH's agent does.
        Err(SshError::Ctap(e))
            if pin.is_none()
                && matches!(e.status(), Some(CtapStatus::PuatRequired))
                && ctap.info().pin_set() =>
        {
            let pin = ask_pin(cfg, key)?;
            attempt(
                &mut ctap,
                key,
                data,
                VerificationNeed::Pin,
                Some(&pin),
                &mut cue,
            )
        }
        other => other,
    };
    timing.assertion = t1.elapsed();
    match result {
        Ok(sig) => Ok((sig, timing)),
        Err(SshError::Ctap(e)) if e.status() == Some(CtapStatus::PinInvalid) => {
            Err("wrong PIN".into())
        }
        Err(e) => Err(e.to_string()),
    }
}

fn attempt<T: Transport>(
    ctap: &mut Ctap2<T>,
    key: &SkKey,
    data: &[u8],
    need: VerificationNeed,
    pin: Option<&Pin>,
    cue: &mut Cue<'_>,
) -> Result<SkSignature, SshError> {
    let uv = match (need, pin) {
        (_, Some(p)) => UserVerification::Pin(p),
        (VerificationNeed::BuiltIn, None) => UserVerification::BuiltIn,
        (VerificationNeed::None | VerificationNeed::Pin, None) => UserVerification::None,
    };
    let mut on_keepalive = |s: KeepaliveStatus| {
        if s == KeepaliveStatus::UpNeeded {
            cue.show();
        }
        WaitDecision::Continue
    };
    ssh::sign(ctap, key, data, uv, &mut on_keepalive)
}

fn ask_pin(cfg: &DeviceConfig, key: &SkKey) -> Result<Pin, String> {
    let prog = cfg.askpass.as_ref().ok_or(
        "the key needs a PIN but no askpass program is configured (--askpass or SSH_ASKPASS)",
    )?;
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
    Pin::new(answer.to_string()).map_err(|e| e.to_string())
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
            self.key.comment,
            self.key.fingerprint()
        );
        crate::log(&msg);
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
