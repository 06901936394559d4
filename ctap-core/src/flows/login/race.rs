//! Several attached keys hold one of the user's credentials and none needs user verification:
//! the login's own getAssertion goes to all of them at once, so the user touches once (issue
//! 16, item 1). Each key gets its own request (its own challenge, its credential's hmac-secret
//! salt) on its own thread; the first answer that is the enrolled credential's signature over
//! that key's challenge wins, the others are cancelled (CTAPHID_CANCEL on their channel, at
//! their next keepalive or, for a key that sends none, within one poll slice). Only the
//! winner's answer is kept: it alone is settled (counter, hmac-secret check, suspension); a
//! loser's late answer is dropped unread, and could not pass for the winner's anyway, since
//! each key signed a challenge of its own.
//!
//! The first answer "wins" when the verifier accepts it, or refuses it for a counter
//! regression (a touched key presenting the enrolled credential's valid signature: a clone
//! that must be settled as one). Any other answer (a CTAP error such as OPERATION_DENIED, a
//! signature that does not verify, a broken message) takes that key out of the race and
//! leaves the others waiting: a broken or hostile key can fail only its own request.
//!
//! Not raced, and chosen by touch first instead (`select_by_touch`): credentials that need user
//! verification. A PIN goes only to the one key the user picked among those that answered the
//! probe with the enrolled AAGUID (one PIN entry must never reach, and cost retries on, several
//! keys); built-in UV is a wait of its own before the assertion.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use super::{
    assertion_request, effective_record, first_hmac_salt, record_hmac_check, settle, touch_pending,
    usable_state, LoginContext, LoginError, LoginGranted,
};
use crate::flows::session::{Authenticator, Prompter};
use crate::flows::uv::Verification;
use crate::flows::verify::{verify_assertion, Challenge, Expectation, VerifyError};
use crate::store::account::Account;
use crate::store::config::Policy;
use crate::store::credential::{CredentialRecord, StateFile, UvRequirement};
use crate::store::directory::DirectoryNote;
use crate::transport::ctap2::{CtapError, CtapStatus, GetAssertionResponse, Misbehaviour};
use crate::transport::ctaphid::{CtapHidError, WaitDecision};

/// How often the waiting thread asks the prompter whether the user cancelled (Ctrl-C).
const CANCEL_POLL: Duration = Duration::from_millis(20);

/// Whether the login can ask every key in `found` at once: several keys, each credential with
/// usable state and no user verification to obtain first (module doc).
pub(super) fn raceable(found: &[(usize, &CredentialRecord)], state: &StateFile) -> bool {
    found.len() > 1
        && found.iter().all(|(_, r)| {
            usable_state(r, state)
                .map(|s| effective_record(r, &s).user_verification != UvRequirement::Required)
                .unwrap_or(false)
        })
}

/// What the race needs of the login.
pub(super) struct Race<'a> {
    pub account: &'a Account,
    pub service: &'a str,
    pub policy: &'a Policy,
    pub context: &'a LoginContext<'a>,
    pub from_directory: Option<DirectoryNote>,
    /// The login's one deadline (also every key channel's).
    pub deadline: std::time::Instant,
}

/// One key's entry: its request and what its answer is checked against.
struct Entry {
    index: usize,
    record: CredentialRecord,
    state: crate::store::credential::CredentialState,
    challenge: Challenge,
    request: crate::transport::ctap2::GetAssertionRequest,
    first_check: Option<[u8; 32]>,
}

/// The winner's answer and the verifier's verdict on it.
type Won = (
    GetAssertionResponse,
    Result<crate::flows::verify::VerifiedAssertion, VerifyError>,
);

/// What one key's thread ended with.
enum Outcome {
    /// This key won: its answer and the verifier's verdict on it.
    Won(Box<Won>),
    /// Out of the race: its error (a verifier refusal is a `Rejected`).
    Lost(LoginError),
    /// Cancelled because another key won or the user cancelled; or answered after the winner.
    Stopped,
}

/// Log in with whichever of `found` (indices into `keys`, several) the user touches first.
pub(super) fn login(
    keys: &mut [Authenticator],
    found: &[(usize, &CredentialRecord)],
    race: Race<'_>,
    prompter: &mut dyn Prompter,
) -> Result<LoginGranted, LoginError> {
    let policy = race.policy;
    let user = race.account.name();
    let store = policy.store();
    // No PIN is asked, so the lock is taken at once, and held until the winner is settled.
    let mut guard = store.lock_state(
        user,
        race.deadline
            .saturating_duration_since(std::time::Instant::now()),
    )?;
    let mut entries = Vec::with_capacity(found.len());
    for (index, record) in found {
        let state = usable_state(record, &guard.state)?;
        let record = effective_record(record, &state);
        let challenge = Challenge::new(race.service, user);
        // `raceable` saw that none needs verification; under the lock, `assertion_request`
        // refuses a credential whose state changed to need it.
        let mut request =
            assertion_request(&record, &state, &Verification::NotRequired, &challenge)?;
        let first_check =
            first_hmac_salt(&race.from_directory, &state, &keys[*index], &mut request);
        entries.push(Entry {
            index: *index,
            record,
            state,
            challenge,
            request,
            first_check,
        });
    }

    if policy.cue {
        prompter.touch_cue(&policy.cue_prompt);
    }
    let (outcomes, user_cancelled) = {
        // The file and the command announce the wait; the guard ends both in every outcome.
        let _pending = touch_pending(policy, race.context, race.service, race.account);
        run(keys, &entries, policy, prompter)
    };

    let mut won = None;
    let mut failure: Option<LoginError> = None;
    for (entry, outcome) in entries.iter().zip(outcomes) {
        match outcome {
            Outcome::Won(w) => {
                let (response, verified) = *w;
                won = Some((entry, response, verified));
            }
            Outcome::Lost(e) => failure = Some(worse(failure, e)),
            Outcome::Stopped => {}
        }
    }
    let Some((entry, response, verified)) = won else {
        if user_cancelled {
            return Err(LoginError::Device(CtapError::Hid(CtapHidError::Cancelled)));
        }
        return Err(failure.unwrap_or(LoginError::WrongKey));
    };
    if let (Some(salt), Ok(v)) = (entry.first_check, &verified) {
        record_hmac_check(&mut guard.state, v, salt, &response);
    }
    settle(&mut guard, race.account, &entry.record, policy, verified).map(|mut granted| {
        granted.directory = race.from_directory;
        granted
    })
}

/// Ask every entry's key at once; the first answer that wins (module doc) stops the others.
/// Returns each entry's outcome, in `entries` order, and whether the user cancelled.
fn run(
    keys: &mut [Authenticator],
    entries: &[Entry],
    policy: &Policy,
    prompter: &mut dyn Prompter,
) -> (Vec<Outcome>, bool) {
    const NONE: usize = usize::MAX;
    let winner = AtomicUsize::new(NONE);
    let stop = AtomicBool::new(false);
    let cancelled = AtomicBool::new(false);
    let mut user_cancelled = false;
    let outcomes = std::thread::scope(|scope| {
        let mut by_index: Vec<Option<&mut Authenticator>> = keys.iter_mut().map(Some).collect();
        let handles: Vec<_> = entries
            .iter()
            .enumerate()
            .map(|(slot, entry)| {
                let key = by_index.get_mut(entry.index).and_then(Option::take);
                let (winner, stop) = (&winner, &stop);
                scope.spawn(move || {
                    let Some(key) = key else {
                        return Outcome::Lost(thread_failed());
                    };
                    one_key(key, entry, policy, slot, winner, stop)
                })
            })
            .collect();
        // The prompter is not shared with the key threads: this thread asks it whether the
        // user cancelled (Ctrl-C) and tells the threads.
        while !handles.iter().all(|h| h.is_finished()) {
            if !cancelled.load(Ordering::SeqCst) && prompter.cancelled() {
                cancelled.store(true, Ordering::SeqCst);
                stop.store(true, Ordering::SeqCst);
            }
            std::thread::sleep(CANCEL_POLL);
        }
        handles
            .into_iter()
            .map(|h| h.join().unwrap_or(Outcome::Lost(thread_failed())))
            .collect::<Vec<_>>()
    });
    if cancelled.load(Ordering::SeqCst) && winner.load(Ordering::SeqCst) == NONE {
        user_cancelled = true;
    }
    (outcomes, user_cancelled)
}

/// One key's getAssertion, verified here (the verifier only reads), claiming the win if it is
/// the first to win.
fn one_key(
    key: &mut Authenticator,
    entry: &Entry,
    policy: &Policy,
    slot: usize,
    winner: &AtomicUsize,
    stop: &AtomicBool,
) -> Outcome {
    let mut ka = |_| {
        if stop.load(Ordering::SeqCst) {
            WaitDecision::Cancel
        } else {
            WaitDecision::Continue
        }
    };
    let response = match key.get_assertion(&entry.request, None, &mut ka) {
        Ok(r) => r,
        Err(_) if stop.load(Ordering::SeqCst) => return Outcome::Stopped,
        Err(CtapError::Status(CtapStatus::NoCredentials | CtapStatus::InvalidCredential)) => {
            return Outcome::Lost(LoginError::WrongKey)
        }
        Err(e) => return Outcome::Lost(e.into()),
    };
    let asked = [&entry.record];
    let expect = Expectation {
        challenge: &entry.challenge,
        asked: &asked,
        counter_policy: policy.counter,
    };
    let verified = verify_assertion(&expect, &response, &entry.state);
    match verified {
        Ok(_) | Err(VerifyError::CounterRegression { .. }) => {}
        Err(reason) => {
            return Outcome::Lost(LoginError::Rejected {
                credential: entry.record.name.clone(),
                reason,
                suspended: false,
            })
        }
    }
    const NONE: usize = usize::MAX;
    if winner
        .compare_exchange(NONE, slot, Ordering::SeqCst, Ordering::SeqCst)
        .is_err()
    {
        // Another key won first: this answer is dropped unused.
        return Outcome::Stopped;
    }
    stop.store(true, Ordering::SeqCst);
    Outcome::Won(Box::new((response, verified)))
}

/// Of two keys' failures, the one that says more: a verifier's refusal, then the time being up,
/// then any other device error, then "does not hold it".
fn worse(a: Option<LoginError>, b: LoginError) -> LoginError {
    fn rank(e: &LoginError) -> u8 {
        match e {
            LoginError::Rejected { .. } => 4,
            LoginError::Device(CtapError::Hid(CtapHidError::Timeout)) => 3,
            LoginError::WrongKey => 1,
            _ => 2,
        }
    }
    match a {
        Some(a) if rank(&a) >= rank(&b) => a,
        _ => b,
    }
}

/// A key's thread ended without an outcome (it panicked): that key's failure, nothing more.
fn thread_failed() -> LoginError {
    LoginError::Device(CtapError::Misbehaved(Misbehaviour::KeyThreadFailed))
}
