//! Ctrl-C while the key waits (docs/ARCHITECTURE.md §8, "Ctrl-C"): a SIGINT handler installed
//! only for the waits, never left behind.
//!
//! A PAM module lives in someone else's process (sudo, su, login, sshd), so it must not keep a
//! signal handler. [`SigintScope`] installs one when a wait for the key begins (the touch cue)
//! and puts the application's own disposition back when it drops; the handler only counts
//! (an atomic increment, async-signal-safe), and the key's keepalive handler asks the count
//! whether to send CTAPHID_CANCEL ([`crate::conv::PamPrompter`]'s `cancelled`). Nothing blocks
//! or masks signals. A SIGINT the application ignores (SIG_IGN) stays ignored: no scope is
//! installed then. After the login, a caught SIGINT is raised again ([`reraise`]) under the
//! application's own disposition, so the application sees the Ctrl-C as it would have without
//! the module, only after the key's request was cancelled and the attempt logged.
//!
//! Scopes nest and may overlap across threads (the disposition is per process): the first
//! installs, the last restores, under one mutex.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

use nix::sys::signal::{self, SaFlags, SigAction, SigHandler, SigSet, Signal};

/// SIGINTs caught while a scope was installed, ever.
static CAUGHT: AtomicU64 = AtomicU64::new(0);

/// The open scopes and the application's disposition to restore after the last.
struct Installed {
    depth: usize,
    saved: Option<SigAction>,
}

static INSTALLED: Mutex<Installed> = Mutex::new(Installed {
    depth: 0,
    saved: None,
});

extern "C" fn on_sigint(_: nix::libc::c_int) {
    CAUGHT.fetch_add(1, Ordering::SeqCst);
}

/// While it lives, SIGINT is counted instead of acted on (unless the application ignores it).
pub(crate) struct SigintScope {
    start: u64,
    installed: bool,
}

impl SigintScope {
    pub(crate) fn enter() -> Self {
        let start = CAUGHT.load(Ordering::SeqCst);
        let Ok(mut state) = INSTALLED.lock() else {
            return SigintScope {
                start,
                installed: false,
            };
        };
        if state.depth == 0 {
            let ours = SigAction::new(
                SigHandler::Handler(on_sigint),
                SaFlags::empty(),
                SigSet::empty(),
            );
            // SAFETY: the handler only increments an atomic (async-signal-safe); the previous
            // disposition is kept and restored by the last scope to drop.
            match unsafe { signal::sigaction(Signal::SIGINT, &ours) } {
                Ok(previous) if previous.handler() == SigHandler::SigIgn => {
                    // The application ignores SIGINT: leave it so.
                    // SAFETY: restoring exactly what was there.
                    let _ = unsafe { signal::sigaction(Signal::SIGINT, &previous) };
                    return SigintScope {
                        start,
                        installed: false,
                    };
                }
                Ok(previous) => state.saved = Some(previous),
                Err(_) => {
                    return SigintScope {
                        start,
                        installed: false,
                    }
                }
            }
        }
        state.depth += 1;
        SigintScope {
            start,
            installed: true,
        }
    }

    /// Whether a SIGINT arrived since this scope began.
    pub(crate) fn caught(&self) -> bool {
        self.installed && CAUGHT.load(Ordering::SeqCst) != self.start
    }
}

impl Drop for SigintScope {
    fn drop(&mut self) {
        if !self.installed {
            return;
        }
        let Ok(mut state) = INSTALLED.lock() else {
            return;
        };
        state.depth = state.depth.saturating_sub(1);
        if state.depth == 0 {
            if let Some(previous) = state.saved.take() {
                // SAFETY: the application's own disposition, as sigaction returned it.
                let _ = unsafe { signal::sigaction(Signal::SIGINT, &previous) };
            }
        }
    }
}

/// Hand a caught Ctrl-C to the application, under its own disposition (its handler, or the
/// default action), once no scope is left.
pub(crate) fn reraise() {
    let _ = signal::raise(Signal::SIGINT);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_scope_counts_sigint_and_restores_the_previous_handler() {
        // Start from the default disposition whatever the harness inherited (a test run started
        // in the background by a non-interactive shell has SIGINT ignored, and then, rightly,
        // no scope is installed). With the scope, a SIGINT is only counted.
        let dfl = SigAction::new(SigHandler::SigDfl, SaFlags::empty(), SigSet::empty());
        // SAFETY: the default disposition; the inherited one is put back at the end.
        let inherited = unsafe { signal::sigaction(Signal::SIGINT, &dfl) }.unwrap();
        let scope = SigintScope::enter();
        assert!(!scope.caught());
        signal::raise(Signal::SIGINT).unwrap();
        assert!(scope.caught(), "counted, and the process is still here");
        let inner = SigintScope::enter();
        drop(inner);
        // Still ours while the outer scope lives.
        signal::raise(Signal::SIGINT).unwrap();
        drop(scope);
        // Restored: the default action again (checked without raising it).
        // SAFETY: reading the disposition back by swapping it with itself.
        let now = unsafe {
            signal::sigaction(
                Signal::SIGINT,
                &SigAction::new(SigHandler::SigDfl, SaFlags::empty(), SigSet::empty()),
            )
        }
        .unwrap();
        assert_eq!(now.handler(), SigHandler::SigDfl);
        // SAFETY: the disposition the harness had.
        unsafe { signal::sigaction(Signal::SIGINT, &inherited) }.unwrap();
    }
}
