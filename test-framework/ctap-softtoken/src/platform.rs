//! Our trussed platform: OS-seeded randomness, the store, and a simulated user.
//!
//! `trussed::virt::with_platform` seeds its RNG with a constant (`[42; 32]`), for reproducible
//! tests. trussed mixes the platform RNG into the seed it keeps in the store, so with a constant
//! platform RNG every fresh softtoken would derive the same device secrets: a credential made
//! on one virtual key would then work on another, and every "wrong key" test would pass for
//! the wrong reason. So we bring our own [`Platform`] with a ChaCha8 seeded from the OS.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use rand_chacha::ChaCha8Rng;
use rand_core::{OsRng, SeedableRng};
use trussed::platform::{Platform, UserInterface};
use trussed::types::ui::Status;
use trussed::virt::Store;
use trussed_core::types::consent::Level;
use trussed_core::types::reboot::To;

use crate::cli::Presence;

/// How long the simulated user takes between two looks at a pending touch request. trussed
/// polls `check_user_presence` in a tight loop; sleeping here keeps that loop off the CPU.
const PRESENCE_POLL: Duration = Duration::from_millis(5);
/// A touch request that follows another within this long continues it: the simulated user's
/// finger is already on its way. CTAP1/U2F keys answer "touch needed" at once and the host asks
/// again (U2F raw message formats v1.2 §5.1), so under `--presence delay=MS` each ask must not
/// start the delay afresh; CTAP2 waits in one request and is unaffected.
const TOUCH_LATCH: Duration = Duration::from_secs(1);

/// State the connections read to choose a keepalive status.
#[derive(Debug, Default)]
pub struct UiState {
    waiting_for_presence: AtomicBool,
}

impl UiState {
    /// True while the authenticator waits for a touch (keepalive status UPNEEDED).
    pub fn waiting_for_presence(&self) -> bool {
        self.waiting_for_presence.load(Ordering::Relaxed)
    }

    /// Called between transactions: a timed-out or cancelled presence wait leaves the status
    /// set, because trussed only restores it after a successful touch.
    pub fn reset(&self) {
        self.waiting_for_presence.store(false, Ordering::Relaxed);
    }
}

/// The simulated user and the device's clock.
pub struct SoftUi {
    presence: Presence,
    started: Instant,
    status: Status,
    /// Since when the simulated user has been asked to touch, and when last asked.
    asked: Option<(Instant, Instant)>,
    shared: Arc<UiState>,
}

impl SoftUi {
    pub fn new(presence: Presence, shared: Arc<UiState>) -> Self {
        SoftUi {
            presence,
            started: Instant::now(),
            status: Status::Idle,
            asked: None,
            shared,
        }
    }
}

impl UserInterface for SoftUi {
    fn check_user_presence(&mut self) -> Level {
        let now = Instant::now();
        let since = match self.asked {
            Some((since, last)) if now.duration_since(last) < TOUCH_LATCH => since,
            _ => now,
        };
        self.asked = Some((since, now));
        let present = match self.presence {
            Presence::Auto => true,
            Presence::Deny => false,
            Presence::Delay(delay) => since.elapsed() >= delay,
        };
        if present {
            self.asked = None;
            // Strong satisfies both normal and long-touch (reset) requests.
            Level::Strong
        } else {
            thread::sleep(PRESENCE_POLL);
            Level::None
        }
    }

    fn set_status(&mut self, status: Status) {
        let waiting = status == Status::WaitingForUserPresence;
        self.status = status;
        self.shared
            .waiting_for_presence
            .store(waiting, Ordering::Relaxed);
    }

    fn status(&self) -> Status {
        self.status
    }

    fn uptime(&mut self) -> Duration {
        self.started.elapsed()
    }

    fn reboot(&mut self, to: To) -> ! {
        // A real key resets its MCU here. We have nothing to restart into; exiting lets the
        // supervisor (test, systemd) start us again on the same state.
        eprintln!("ctap-softtoken: the authenticator asked for a reboot ({to:?}); exiting");
        std::process::exit(0)
    }

    fn wink(&mut self, duration: Duration) {
        eprintln!("ctap-softtoken: wink ({} ms)", duration.as_millis());
    }
}

/// A trussed platform: RNG from the OS, the mounted store, the simulated user.
pub struct SoftPlatform<'a> {
    rng: ChaCha8Rng,
    store: Store<'a>,
    ui: SoftUi,
}

impl<'a> SoftPlatform<'a> {
    pub fn new(store: Store<'a>, ui: SoftUi) -> Self {
        SoftPlatform {
            rng: os_seeded_rng(),
            store,
            ui,
        }
    }
}

/// A ChaCha8 DRBG seeded from the operating system's entropy source.
pub fn os_seeded_rng() -> ChaCha8Rng {
    let mut seed = [0u8; 32];
    // getrandom on Linux only fails before the entropy pool is initialised at early boot or
    // on a broken kernel; a key without entropy must not start.
    rand_core::RngCore::fill_bytes(&mut OsRng, &mut seed);
    ChaCha8Rng::from_seed(seed)
}

impl<'a> Platform for SoftPlatform<'a> {
    type R = ChaCha8Rng;
    type S = Store<'a>;
    type UI = SoftUi;

    fn rng(&mut self) -> &mut Self::R {
        &mut self.rng
    }

    fn store(&self) -> Self::S {
        self.store
    }

    fn user_interface(&mut self) -> &mut Self::UI {
        &mut self.ui
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand_core::RngCore;

    #[test]
    fn os_seeded_rngs_differ() {
        assert_ne!(os_seeded_rng().next_u64(), os_seeded_rng().next_u64());
    }

    #[test]
    fn deny_never_presents_and_delay_presents_later() {
        let shared = Arc::new(UiState::default());
        let mut deny = SoftUi::new(Presence::Deny, shared.clone());
        deny.set_status(Status::WaitingForUserPresence);
        assert!(shared.waiting_for_presence());
        assert_eq!(deny.check_user_presence(), Level::None);

        let mut delay = SoftUi::new(Presence::Delay(Duration::from_millis(30)), shared.clone());
        delay.set_status(Status::WaitingForUserPresence);
        assert_eq!(delay.check_user_presence(), Level::None);
        thread::sleep(Duration::from_millis(40));
        assert_eq!(delay.check_user_presence(), Level::Strong);
        delay.set_status(Status::Idle);
        assert!(!shared.waiting_for_presence());
    }

    #[test]
    fn delay_continues_across_asks_in_quick_succession() {
        let shared = Arc::new(UiState::default());
        let mut delay = SoftUi::new(Presence::Delay(Duration::from_millis(60)), shared);
        // Asked, then asked again (a U2F host polling): the delay counts from the first ask.
        assert_eq!(delay.check_user_presence(), Level::None);
        thread::sleep(Duration::from_millis(40));
        delay.set_status(Status::Idle);
        assert_eq!(delay.check_user_presence(), Level::None);
        thread::sleep(Duration::from_millis(30));
        assert_eq!(delay.check_user_presence(), Level::Strong);
        // After the touch, a new request waits the whole delay again.
        assert_eq!(delay.check_user_presence(), Level::None);
        // And an ask long after the last one starts afresh.
        delay.asked = delay
            .asked
            .map(|(_, last)| (last - TOUCH_LATCH, last - TOUCH_LATCH));
        assert_eq!(delay.check_user_presence(), Level::None);
    }
}
