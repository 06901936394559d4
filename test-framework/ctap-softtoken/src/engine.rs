//! The authenticator: fido-authenticator on trussed, on one thread, one transaction at a time.
//!
//! Connections hand CTAPHID CBOR messages to the engine as [`Job`]s through a FIFO queue
//! and wait for the reply, sending keepalives meanwhile. Each job carries its connection's
//! [`Wake`]: the engine calls it once the reply is there (or the job is dropped unanswered), so a
//! connection sleeps until then instead of polling. A real key is a single
//! microcontroller: it also serves one transaction at a time, and a host talking to it while it
//! is busy waits. Serialising here keeps the authenticator's state (PIN token, counters, the
//! getNextAssertion cursor) coherent without any locking inside it; the price is that a request
//! waiting for a touch holds up the others, which see PROCESSING keepalives until their turn.
//!
//! trussed normally runs its service on another core (or, in `trussed::virt`, on a polling
//! thread, while the client spins on the reply). Our [`InlineSyscall`] runs the service
//! synchronously inside the client's syscall instead: no polling, no spinning, no second thread.

use std::cell::RefCell;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, Sender, TryRecvError};
use std::sync::{Arc, Mutex};
use std::thread;

use ctaphid_dispatch::app::{App, Command as AppCommand, Error as AppError};
use fido_authenticator::{Authenticator, Config, Conforming, FirmwareVersion};
use heapless_bytes::Bytes;
use littlefs2::path;
use trussed::backend::BackendId;
use trussed::pipe::{ServiceEndpoint, TrussedChannel};
use trussed::types::CoreContext;
use trussed::virt::{StorageConfig, Store};
use trussed::{ClientImplementation, Service};
use trussed_core::InterruptFlag;
use trussed_staging::virt::{BackendIds, Dispatcher};
use trussed_staging::StagingContext;

use crate::cli::Presence;
use crate::ctaphid_device::{ERR_INVALID_CMD, ERR_INVALID_LEN, ERR_OTHER};
use crate::error::Error;
use crate::platform::{SoftPlatform, SoftUi, UiState};
use crate::state_file::StateFile;

/// Largest CTAPHID message we accept and advertise (getInfo maxMsgSize). Same as the
/// Nitrokey 3 (usbd-ctaphid's buffer), so the softtoken behaves like the hardware it models.
pub const MAX_MESSAGE_SIZE: usize = 3072;

/// Largest response the authenticator may write (the most CTAPHID can carry in one message).
const RESPONSE_CAPACITY: usize = ctaphid_dispatch::DEFAULT_MESSAGE_SIZE;

/// CTAP2_ERR_KEEPALIVE_CANCEL: the answer to a request cancelled before it ran.
pub const STATUS_KEEPALIVE_CANCEL: u8 = 0x2D;

/// Cancels the presence wait of the running transaction (trussed checks it in its consent
/// loop, and fido-authenticator turns it into CTAP2_ERR_KEEPALIVE_CANCEL). A static because
/// trussed wants `&'static`; there is exactly one authenticator per process.
static INTERRUPT: InterruptFlag = InterruptFlag::new();

/// The trussed backends our client may use, in order: staging (hkdf, fs-info), then core.
static BACKENDS: [BackendId<BackendIds>; 2] = [
    BackendId::Custom(BackendIds::StagingBackend),
    BackendId::Core,
];

/// The authenticator's answer to one message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reply {
    /// Response payload (for CBOR: status byte, then CBOR).
    Data(Vec<u8>),
    /// The app refused the message at the CTAPHID level: send ERROR with this code.
    HidError(u8),
}

/// Which CTAPHID command carries a message to the authenticator.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// CTAPHID_CBOR: a CTAP2 command byte, then CBOR.
    Cbor,
    /// CTAPHID_MSG: a CTAP1/U2F request, an ISO 7816-4 command APDU.
    Msg,
}

/// How the engine tells a connection that its reply is ready: called once per job, after the
/// reply is sent, or when the job is dropped without one (the engine stopping).
pub type Wake = Arc<dyn Fn() + Send + Sync>;

/// One message queued for the authenticator.
struct Job {
    id: u64,
    kind: Kind,
    payload: Vec<u8>,
    cancelled: Arc<AtomicBool>,
    reply: Sender<Reply>,
    wake: Wake,
}

impl Drop for Job {
    /// Answered or not, the job is over: wake its connection to collect the reply (or to find
    /// the engine gone).
    fn drop(&mut self) {
        (self.wake)();
    }
}

/// What connections share about the engine.
struct Shared {
    /// Id of the job the authenticator is running; 0 when idle.
    current: AtomicU64,
    next_id: AtomicU64,
    ui: Arc<UiState>,
    /// Held while a transaction runs, so shutdown can wait for the state to settle.
    transaction: Mutex<()>,
}

/// A cheap, cloneable way to submit work to the engine.
#[derive(Clone)]
pub struct EngineHandle {
    jobs: Sender<Job>,
    shared: Arc<Shared>,
}

/// A submitted job, from the connection's side.
pub struct Ticket {
    id: u64,
    cancelled: Arc<AtomicBool>,
    reply: Receiver<Reply>,
    shared: Arc<Shared>,
}

/// The engine stopped (it only does when the process is exiting).
#[derive(Debug)]
pub struct EngineGone;

impl EngineHandle {
    /// Queue a CTAPHID_CBOR message for the authenticator; `wake` is called when its reply is
    /// ready for [`Ticket::try_reply`].
    pub fn submit(&self, payload: Vec<u8>, wake: Wake) -> Result<Ticket, EngineGone> {
        self.submit_kind(Kind::Cbor, payload, wake)
    }

    /// Queue a message of either kind (CTAPHID_CBOR or CTAPHID_MSG) for the authenticator;
    /// `wake` is called when its reply is ready for [`Ticket::try_reply`].
    pub fn submit_kind(
        &self,
        kind: Kind,
        payload: Vec<u8>,
        wake: Wake,
    ) -> Result<Ticket, EngineGone> {
        let id = self.shared.next_id.fetch_add(1, Ordering::SeqCst);
        let cancelled = Arc::new(AtomicBool::new(false));
        let (reply, reply_rx) = mpsc::channel();
        self.jobs
            .send(Job {
                id,
                kind,
                payload,
                cancelled: cancelled.clone(),
                reply,
                wake,
            })
            .map_err(|_| EngineGone)?;
        Ok(Ticket {
            id,
            cancelled,
            reply: reply_rx,
            shared: self.shared.clone(),
        })
    }

    /// Run `f` when no transaction is in flight, waiting at most `timeout` for one to end.
    pub fn when_idle<T>(&self, timeout: std::time::Duration, f: impl FnOnce() -> T) -> T {
        let deadline = std::time::Instant::now() + timeout;
        loop {
            match self.shared.transaction.try_lock() {
                Ok(_guard) => return f(),
                Err(std::sync::TryLockError::Poisoned(_)) => return f(),
                Err(std::sync::TryLockError::WouldBlock) => {
                    if std::time::Instant::now() >= deadline {
                        return f();
                    }
                    std::thread::sleep(std::time::Duration::from_millis(10));
                }
            }
        }
    }
}

impl Ticket {
    /// The reply, if it is there yet. `Err` if the engine went away.
    pub fn try_reply(&self) -> Result<Option<Reply>, EngineGone> {
        match self.reply.try_recv() {
            Ok(reply) => Ok(Some(reply)),
            Err(TryRecvError::Empty) => Ok(None),
            Err(TryRecvError::Disconnected) => Err(EngineGone),
        }
    }

    /// True while the authenticator runs this job and waits for a touch.
    pub fn waiting_for_presence(&self) -> bool {
        self.shared.current.load(Ordering::SeqCst) == self.id
            && self.shared.ui.waiting_for_presence()
    }

    /// CTAPHID CANCEL: a queued job is answered KEEPALIVE_CANCEL without running; a running
    /// one has its presence wait interrupted (best effort: a running job that is not waiting
    /// for a touch completes normally, as the spec allows).
    pub fn cancel(&self) {
        self.cancelled.store(true, Ordering::SeqCst);
        if self.shared.current.load(Ordering::SeqCst) == self.id {
            INTERRUPT.interrupt();
        }
    }
}

impl Drop for Ticket {
    /// A connection that goes away cancels its job, so a dead client does not keep the
    /// authenticator waiting for a touch nobody asked for any more.
    fn drop(&mut self) {
        self.cancel();
    }
}

/// Options for the authenticator.
pub struct EngineConfig {
    pub presence: Presence,
}

impl EngineConfig {
    /// The presence timeout fido-authenticator uses. Its default is 30 s; `deny` uses a short
    /// one so that a refused touch is a quick USER_ACTION_TIMEOUT, never a hang, and `delay`
    /// always leaves room for the delayed touch.
    fn up_timeout_ms(&self) -> u32 {
        const DEFAULT_MS: u32 = 30_000;
        const DENY_MS: u32 = 200;
        match self.presence {
            Presence::Auto => DEFAULT_MS,
            Presence::Deny => DENY_MS,
            Presence::Delay(delay) => {
                let wanted = delay.as_millis().saturating_add(10_000);
                u32::try_from(wanted).unwrap_or(u32::MAX).max(DEFAULT_MS)
            }
        }
    }

    fn authenticator_config(&self) -> Config {
        let mut config = Config::new(MAX_MESSAGE_SIZE);
        config.fido2_up_timeout = Some(self.up_timeout_ms());
        config.firmware_version = Some(FirmwareVersion::new(firmware_version()));
        // No hardware button to hold down: a normal (simulated) touch resets the key.
        config.long_touch_for_reset = false;
        config
    }
}

/// Our package version as one number (0.1.0 -> 100), for getInfo firmwareVersion.
fn firmware_version() -> usize {
    let part = |s: &str| s.parse::<usize>().unwrap_or(0);
    part(env!("CARGO_PKG_VERSION_MAJOR")) * 10_000
        + part(env!("CARGO_PKG_VERSION_MINOR")) * 100
        + part(env!("CARGO_PKG_VERSION_PATCH"))
}

/// Mount the state, start the authenticator, and serve jobs on this thread until every handle
/// is dropped. `on_ready` gets the first handle, on a thread of its own.
pub fn run<F>(state: &StateFile, config: EngineConfig, on_ready: F) -> Result<(), Error>
where
    F: FnOnce(EngineHandle) -> Result<(), Error> + Send,
{
    let corrupt = |what: &str, e: littlefs2::io::Error| Error::StateCorrupt {
        path: state.path().to_owned(),
        detail: format!("{what}: {e:?}"),
    };
    let mut internal = state.storage_config()?;
    let mut external = StorageConfig::ram();
    let mut volatile = StorageConfig::ram();
    internal
        .with_fs(|internal| {
            external
                .with_fs(|external| {
                    volatile
                        .with_fs(|volatile| {
                            let store = Store {
                                internal,
                                external,
                                volatile,
                            };
                            serve(store, &config, on_ready)
                        })
                        .map_err(|e| corrupt("volatile storage", e))
                        .and_then(|served| served)
                })
                .map_err(|e| corrupt("external storage", e))
                .and_then(|served| served)
        })
        .map_err(|e| corrupt("internal storage", e))
        .and_then(|served| served)
}

/// The trussed service together with its one endpoint, run inline by [`InlineSyscall`].
struct InlineService<'a> {
    service: Service<SoftPlatform<'a>, Dispatcher>,
    endpoints: [ServiceEndpoint<'a, BackendIds, StagingContext>; 1],
}

/// A trussed syscall that processes the request right away, on the caller's thread.
struct InlineSyscall<'s, 'a>(&'s RefCell<InlineService<'a>>);

impl trussed::platform::Syscall for InlineSyscall<'_, '_> {
    fn syscall(&mut self) {
        let mut inline = self.0.borrow_mut();
        let InlineService { service, endpoints } = &mut *inline;
        service.process(endpoints);
    }
}

fn serve<F>(store: Store<'_>, config: &EngineConfig, on_ready: F) -> Result<(), Error>
where
    F: FnOnce(EngineHandle) -> Result<(), Error> + Send,
{
    if crate::attestation::ensure(store)? {
        eprintln!("ctap-softtoken: made a U2F attestation key and self-signed batch certificate");
    }
    let ui_state = Arc::new(UiState::default());
    let platform = SoftPlatform::new(store, SoftUi::new(config.presence, ui_state.clone()));

    let channel = TrussedChannel::new();
    let Some((requester, responder)) = channel.split() else {
        // A fresh channel always splits; this is unreachable.
        return Err(Error::Runtime {
            what: "splitting the trussed channel",
            source: std::io::Error::other("channel already split"),
        });
    };
    let context = CoreContext::with_interrupt(path!("fido").into(), Some(&INTERRUPT));
    let inline = RefCell::new(InlineService {
        service: Service::with_dispatch(platform, Dispatcher::default()),
        endpoints: [ServiceEndpoint::new(responder, context, &BACKENDS)],
    });
    let client: ClientImplementation<'_, InlineSyscall<'_, '_>, Dispatcher> =
        ClientImplementation::new(requester, InlineSyscall(&inline), Some(&INTERRUPT));
    let mut authenticator =
        Authenticator::new(client, Conforming {}, config.authenticator_config());

    let (jobs, jobs_rx) = mpsc::channel::<Job>();
    let shared = Arc::new(Shared {
        current: AtomicU64::new(0),
        next_id: AtomicU64::new(1),
        ui: ui_state,
        transaction: Mutex::new(()),
    });
    let handle = EngineHandle {
        jobs,
        shared: shared.clone(),
    };
    // `on_ready` runs beside the job loop because it may already need the authenticator
    // (setting the PIN). If it fails it drops its handle, the loop ends once no handle is left,
    // and its error is ours.
    thread::scope(|scope| {
        let starter = thread::Builder::new()
            .name("startup".to_owned())
            .spawn_scoped(scope, move || on_ready(handle))
            .map_err(|source| Error::Runtime {
                what: "spawning the startup thread",
                source,
            })?;
        work(&mut authenticator, jobs_rx, &shared);
        starter.join().unwrap_or_else(|_| {
            Err(Error::Runtime {
                what: "starting up",
                source: std::io::Error::other("the startup thread panicked"),
            })
        })
    })
}

/// Run queued jobs, one at a time, until every [`EngineHandle`] is gone.
fn work(app: &mut dyn App<'static>, jobs: Receiver<Job>, shared: &Shared) {
    for job in jobs {
        let reply = {
            let _transaction = shared.transaction.lock();
            shared.current.store(job.id, Ordering::SeqCst);
            INTERRUPT.set_working();
            let reply = match (job.kind, job.cancelled.load(Ordering::SeqCst)) {
                (Kind::Cbor, true) => Reply::Data(vec![STATUS_KEEPALIVE_CANCEL]),
                // U2F has no CANCEL of its own: a cancelled request was not carried out, which
                // is what "conditions of use not satisfied" (no touch) tells a U2F client.
                (Kind::Msg, true) => Reply::Data(SW_CONDITIONS_NOT_SATISFIED.to_vec()),
                (kind, false) => call(app, kind, &job.payload),
            };
            INTERRUPT.set_idle();
            shared.ui.reset();
            shared.current.store(0, Ordering::SeqCst);
            reply
        };
        // The connection may have gone away meanwhile; nothing to do then. Dropping the job
        // right after wakes the connection.
        let _ = job.reply.send(reply);
    }
}

/// U2F status word: user presence required (also our answer to a cancelled U2F request).
pub const SW_CONDITIONS_NOT_SATISFIED: [u8; 2] = [0x69, 0x85];

/// One CBOR or U2F message through the authenticator's CTAPHID app interface.
fn call(app: &mut dyn App<'static>, kind: Kind, payload: &[u8]) -> Reply {
    let command = match kind {
        Kind::Cbor => AppCommand::Cbor,
        Kind::Msg => AppCommand::Msg,
    };
    let mut response = Bytes::<RESPONSE_CAPACITY>::new();
    // fido-authenticator is firmware code: it should not panic on any input, but if it does,
    // one request fails and the key keeps serving, as a hardware key would after a watchdog
    // reset. The default panic hook has already printed the message to stderr.
    let result = catch_unwind(AssertUnwindSafe(|| {
        app.call(command, payload, response.as_mut_view())
    }));
    match result {
        Ok(Ok(())) => Reply::Data(response.to_vec()),
        Ok(Err(AppError::InvalidCommand)) => Reply::HidError(ERR_INVALID_CMD),
        Ok(Err(AppError::InvalidLength)) => Reply::HidError(ERR_INVALID_LEN),
        Ok(Err(AppError::NoResponse)) => Reply::HidError(ERR_OTHER),
        Err(_) => {
            eprintln!(
                "ctap-softtoken: the authenticator panicked on a request; answering ERR_OTHER"
            );
            Reply::HidError(ERR_OTHER)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn up_timeouts() {
        let cfg = |presence| EngineConfig { presence }.up_timeout_ms();
        assert_eq!(cfg(Presence::Auto), 30_000);
        assert!(cfg(Presence::Deny) < 1_000);
        assert_eq!(cfg(Presence::Delay(Duration::from_millis(100))), 30_000);
        assert_eq!(cfg(Presence::Delay(Duration::from_secs(60))), 70_000);
    }

    /// The engine rings the submitter when the reply is there, so a connection can sleep
    /// until then instead of polling for it (issue 12).
    #[test]
    fn submit_wakes_the_submitter_when_the_reply_is_ready() {
        let dir = tempfile::tempdir().unwrap();
        let state = StateFile::open(&dir.path().join("key.state")).unwrap();
        let config = EngineConfig {
            presence: Presence::Auto,
        };
        run(&state, config, |engine| {
            let (rang, bell) = mpsc::channel();
            let wake: Wake = Arc::new(move || {
                let _ = rang.send(());
            });
            // authenticatorGetInfo
            let ticket = engine.submit(vec![0x04], wake).unwrap();
            bell.recv_timeout(Duration::from_secs(30))
                .expect("the engine never woke the submitter");
            match ticket.try_reply().unwrap() {
                Some(Reply::Data(data)) => assert_eq!(data.first(), Some(&0x00), "{data:?}"),
                other => panic!("no getInfo reply after the wake-up: {other:?}"),
            }
            // Exactly one wake-up per job.
            assert!(bell.try_recv().is_err());
            Ok(())
        })
        .unwrap();
    }

    #[test]
    fn firmware_version_is_a_number() {
        assert!(firmware_version() > 0);
    }
}
