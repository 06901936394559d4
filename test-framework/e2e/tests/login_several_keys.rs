//! Several keys at once (issue 16, item 1), through a `device` list of virtual keys: every key
//! holding one of the user's credentials gets the login's getAssertion at once (one touch), the
//! first touched logs in, the others get CTAPHID_CANCEL (their cancel logs), and a key that
//! errors, hangs or sends no keepalives delays nothing.
#![allow(clippy::unwrap_used)]

use std::path::Path;
use std::time::{Duration, Instant};

use ctap_core::flows::enroll::{enroll, EnrollRequest, UvPreference};
use ctap_core::flows::login::login;
use ctap_core::flows::session::{open_authenticators, Prompter};
use ctap_core::store::account::{Nss, UserResolver};
use ctap_core::store::config::Policy;
use ctap_core::transport::ctap2::pin::Pin;
use ctap_core::transport::device::DeviceUri;
use ctap_e2e::{SoftToken, TempDir};

#[derive(Default)]
struct Cues(Vec<String>);

impl Prompter for Cues {
    fn touch_cue(&mut self, m: &str) {
        self.0.push(m.to_string());
    }
    fn request_pin(&mut self, _: &str) -> Option<Pin> {
        None
    }
    fn info(&mut self, _: &str) {}
}

fn policy(dir: &Path, device: DeviceUri) -> Policy {
    let p = Policy {
        device,
        timeout: 10,
        records_dir: dir.join("users"),
        state_dir: dir.join("state"),
        ..Policy::default()
    };
    for d in [&p.records_dir, &p.state_dir] {
        std::fs::create_dir_all(d).unwrap();
    }
    p
}

fn enroll_on(dir: &Path, key: &SoftToken, name: &str) {
    let p = policy(dir, key.uri().parse().unwrap());
    let mut keys = open_authenticators(&p.device, p.touch_timeout()).unwrap();
    let req = EnrollRequest {
        user: Nss.by_name("daemon").unwrap().unwrap(),
        name: name.into(),
        rp_id: Some("pam://test".into()),
        uv: UvPreference::Discouraged,
        pin_policy: p.pin,
    };
    enroll(&p.store(), &req, &mut keys[0], &mut Cues::default()).unwrap();
}

fn list(keys: &[&SoftToken]) -> DeviceUri {
    let uris: Vec<String> = keys.iter().map(|k| k.uri()).collect();
    DeviceUri::from_list(&uris).unwrap()
}

#[test]
fn the_first_key_touched_logs_in_and_the_others_are_cancelled() {
    let dir = TempDir::new("several");
    let (sa, sb, sc) = (
        dir.path().join("a"),
        dir.path().join("b"),
        dir.path().join("c"),
    );
    let a = SoftToken::start(dir.path(), &sa, &[]);
    let b = SoftToken::start(dir.path(), &sb, &[]);
    enroll_on(dir.path(), &a, "key-a");
    enroll_on(dir.path(), &b, "key-b");
    a.stop();
    b.stop();

    // A is slow to be touched, B quick, C (no credential of the user) breaks every request.
    let (log_a, log_b) = (dir.path().join("a.cancels"), dir.path().join("b.cancels"));
    let a = SoftToken::start(
        dir.path(),
        &sa,
        &[
            "--presence",
            "delay=8000",
            "--cancel-log",
            log_a.to_str().unwrap(),
        ],
    );
    let b = SoftToken::start(
        dir.path(),
        &sb,
        &[
            "--presence",
            "delay=400",
            "--cancel-log",
            log_b.to_str().unwrap(),
        ],
    );
    let c = SoftToken::start(dir.path(), &sc, &["--fault", "drop-connection"]);
    let p = policy(dir.path(), list(&[&a, &b, &c]));
    let mut cues = Cues::default();
    let start = Instant::now();
    let g = login("daemon", "sudo", &p, &mut cues).unwrap();
    let took = start.elapsed();
    println!(
        "logged in with {} after {took:?}; cues {:?}",
        g.credential_name(),
        cues.0
    );
    assert_eq!(g.credential_name(), "key-b");
    assert!(
        took < Duration::from_secs(4),
        "{took:?}: A's 8 s did not hold B up"
    );
    assert_eq!(cues.0, vec![p.cue_prompt.clone()], "one cue, one touch");
    let cancels_a = ctap_e2e::wait_for_cancels(&log_a);
    println!("A's cancels: {cancels_a:?}");
    assert!(
        !cancels_a.trim().is_empty(),
        "the key not touched got CANCEL"
    );

    // Now A is the quick one.
    a.stop();
    b.stop();
    let a = SoftToken::start(dir.path(), &sa, &["--presence", "delay=300"]);
    let b = SoftToken::start(
        dir.path(),
        &sb,
        &[
            "--presence",
            "delay=8000",
            "--cancel-log",
            log_b.to_str().unwrap(),
        ],
    );
    let p = policy(dir.path(), list(&[&a, &b]));
    let g = login("daemon", "sudo", &p, &mut Cues::default()).unwrap();
    assert_eq!(g.credential_name(), "key-a");
    assert!(!std::fs::read_to_string(&log_b)
        .unwrap_or_default()
        .trim()
        .is_empty());
}

#[test]
fn a_device_list_in_the_config_file() {
    let p = Policy::parse(
        Path::new("/etc/x.toml"),
        "device = [\"unix:/run/a.sock\", \"unix:/run/b.sock\"]\n",
    )
    .unwrap();
    assert_eq!(p.device.each().len(), 2);
    assert!(Policy::parse(Path::new("/x"), "device = [\"auto\", \"unix:/a\"]\n").is_err());
}

/// A key that keeps every probe waiting (keepalives, never an answer) does not hold up a login
/// that another key can make: once one key answered, the others' probes are cancelled shortly
/// after, not at the deadline.
#[test]
fn a_key_that_keeps_probes_waiting_does_not_hold_up_the_login() {
    let dir = TempDir::new("several-hung");
    let sa = dir.path().join("a");
    let a = SoftToken::start(dir.path(), &sa, &[]);
    enroll_on(dir.path(), &a, "key-a");
    let log_h = dir.path().join("h.cancels");
    let hung = SoftToken::start(
        dir.path(),
        &dir.path().join("h"),
        &[
            "--fault",
            "probe-keepalive",
            "--cancel-log",
            log_h.to_str().unwrap(),
        ],
    );
    // A second credential, so the login probes (one key and one credential would not).
    let b = SoftToken::start(dir.path(), &dir.path().join("b"), &[]);
    enroll_on(dir.path(), &b, "key-b");
    b.stop();
    let p = policy(dir.path(), list(&[&hung, &a]));
    let start = Instant::now();
    let g = login("daemon", "sudo", &p, &mut Cues::default()).unwrap();
    let took = start.elapsed();
    println!(
        "logged in with {} after {took:?} beside a hung key",
        g.credential_name()
    );
    assert_eq!(g.credential_name(), "key-a");
    assert!(took < Duration::from_secs(3), "{took:?}, timeout is 10 s");
    assert!(!std::fs::read_to_string(&log_h)
        .unwrap_or_default()
        .trim()
        .is_empty());
}

/// The credential id of each of `names` in the user's records, and the user's state.
fn state_of(p: &Policy, names: &[&str]) -> Vec<ctap_core::store::credential::CredentialState> {
    let account = Nss.by_name("daemon").unwrap().unwrap();
    let records = p.store().load_records(&account).unwrap().file;
    let state = p.store().read_state("daemon").unwrap();
    names
        .iter()
        .map(|n| {
            let r = records.credentials.iter().find(|c| c.name == *n).unwrap();
            state.get(&r.credential_id).unwrap().clone()
        })
        .collect()
}

/// Enroll `key-a` and `key-b` on two keys in `dir`; returns their state files.
fn two_enrolled(dir: &Path) -> (std::path::PathBuf, std::path::PathBuf) {
    let (sa, sb) = (dir.join("a"), dir.join("b"));
    let a = SoftToken::start(dir, &sa, &[]);
    let b = SoftToken::start(dir, &sb, &[]);
    enroll_on(dir, &a, "key-a");
    enroll_on(dir, &b, "key-b");
    a.stop();
    b.stop();
    (sa, sb)
}

/// Two keys hold a credential of the user; B is touched first. The user touches once: B's
/// 1.5 s wait is the whole login (a selection touch first would double it), the one cue is the
/// touch cue, A gets CANCEL, and only B's credential's state changes.
#[test]
fn two_keys_one_touch_the_first_touched_wins() {
    let dir = TempDir::new("several-one-touch");
    let (sa, sb) = two_enrolled(dir.path());
    let log_a = dir.path().join("a.cancels");
    let log_b = dir.path().join("b.cancels");
    let a = SoftToken::start(
        dir.path(),
        &sa,
        &[
            "--presence",
            "delay=8000",
            "--cancel-log",
            log_a.to_str().unwrap(),
        ],
    );
    let b = SoftToken::start(
        dir.path(),
        &sb,
        &[
            "--presence",
            "delay=1500",
            "--cancel-log",
            log_b.to_str().unwrap(),
        ],
    );
    let p = policy(dir.path(), list(&[&a, &b]));
    let before = state_of(&p, &["key-a", "key-b"]);
    let mut cues = Cues::default();
    let start = Instant::now();
    let g = login("daemon", "sudo", &p, &mut cues).unwrap();
    let took = start.elapsed();
    println!(
        "logged in with {} after {took:?}; cues {:?}",
        g.credential_name(),
        cues.0
    );
    assert_eq!(g.credential_name(), "key-b");
    assert_eq!(cues.0, vec![p.cue_prompt.clone()], "one cue: the touch cue");
    assert!(
        took >= Duration::from_millis(1400) && took < Duration::from_millis(2800),
        "{took:?}: one 1.5 s touch, not two"
    );
    let cancels_a = ctap_e2e::wait_for_cancels(&log_a);
    println!("A's cancels: {cancels_a:?}");
    assert!(
        cancels_a.contains("busy=true"),
        "A was cancelled mid-request"
    );
    assert!(
        std::fs::read_to_string(&log_b)
            .unwrap_or_default()
            .is_empty(),
        "the winner was not cancelled"
    );
    let after = state_of(&p, &["key-a", "key-b"]);
    println!(
        "state before {:?} / after {:?}",
        before
            .iter()
            .map(|s| (s.sign_count, s.last_used.clone()))
            .collect::<Vec<_>>(),
        after
            .iter()
            .map(|s| (s.sign_count, s.last_used.clone()))
            .collect::<Vec<_>>()
    );
    assert_eq!(after[0], before[0], "A's state is untouched");
    assert!(after[1].last_used.is_some() && after[1].last_used != before[1].last_used);
    assert_eq!(after[1].sign_count, g.sign_count());
}

/// Three keys hold a credential: A is touched after 0.5 s, B would be after 8 s, H found the
/// credential and then hangs at the login's assertion (keepalives forever). The login ends
/// with A, on time, and both others are cancelled.
#[test]
fn three_keys_one_hung_the_touched_key_logs_in_on_time() {
    let dir = TempDir::new("several-three");
    let (sa, sb) = two_enrolled(dir.path());
    let sh = dir.path().join("h");
    let h = SoftToken::start(dir.path(), &sh, &[]);
    enroll_on(dir.path(), &h, "key-h");
    h.stop();
    let (log_b, log_h) = (dir.path().join("b.cancels"), dir.path().join("h.cancels"));
    let a = SoftToken::start(dir.path(), &sa, &["--presence", "delay=500"]);
    let b = SoftToken::start(
        dir.path(),
        &sb,
        &[
            "--presence",
            "delay=8000",
            "--cancel-log",
            log_b.to_str().unwrap(),
        ],
    );
    let h = SoftToken::start(
        dir.path(),
        &sh,
        &[
            "--fault",
            "assertion-keepalive",
            "--cancel-log",
            log_h.to_str().unwrap(),
        ],
    );
    let p = policy(dir.path(), list(&[&h, &b, &a]));
    let start = Instant::now();
    let g = login("daemon", "sudo", &p, &mut Cues::default()).unwrap();
    let took = start.elapsed();
    println!(
        "logged in with {} after {took:?} beside a hung key",
        g.credential_name()
    );
    assert_eq!(g.credential_name(), "key-a");
    assert!(took < Duration::from_secs(2), "{took:?}, timeout is 10 s");
    let (cb, ch) = (
        ctap_e2e::wait_for_cancels(&log_b),
        ctap_e2e::wait_for_cancels(&log_h),
    );
    println!("B's cancels: {cb:?}; H's cancels: {ch:?}");
    assert!(cb.contains("busy=true") && ch.contains("busy=true"));
}

/// A key that sends no keepalives while it waits for a touch is cancelled as soon as another
/// key wins, not when its own touch (2.5 s) or the login's deadline comes.
#[test]
fn a_key_without_keepalives_is_cancelled_when_another_wins() {
    let dir = TempDir::new("several-silent");
    let (sa, sb) = two_enrolled(dir.path());
    let log_b = dir.path().join("b.cancels");
    let a = SoftToken::start(dir.path(), &sa, &["--presence", "delay=400"]);
    let b = SoftToken::start(
        dir.path(),
        &sb,
        &[
            "--fault",
            "no-keepalive",
            "--presence",
            "delay=2500",
            "--cancel-log",
            log_b.to_str().unwrap(),
        ],
    );
    let p = policy(dir.path(), list(&[&b, &a]));
    let start = Instant::now();
    let g = login("daemon", "sudo", &p, &mut Cues::default()).unwrap();
    let took = start.elapsed();
    let cancels = ctap_e2e::wait_for_cancels(&log_b);
    let cancelled_after = start.elapsed();
    println!(
        "logged in with {} after {took:?}; the silent key's cancels (seen by {cancelled_after:?}): {cancels:?}",
        g.credential_name()
    );
    assert_eq!(g.credential_name(), "key-a");
    assert!(cancels.contains("busy=true"), "the silent key got CANCEL");
    assert!(
        took < Duration::from_millis(1500),
        "{took:?}: the silent key's 2.5 s did not hold the login"
    );
}

/// The first answer does not win by being first: a key that answers at once with a signature
/// that does not verify drops out, and the key the user touches after it logs in. Nothing of
/// the broken answer is written.
#[test]
fn a_key_answering_first_with_a_bad_signature_does_not_win() {
    let dir = TempDir::new("several-bad-first");
    let (sa, sb) = two_enrolled(dir.path());
    let a = SoftToken::start(dir.path(), &sa, &["--presence", "delay=600"]);
    let b = SoftToken::start(dir.path(), &sb, &["--fault", "corrupt-signature"]);
    let p = policy(dir.path(), list(&[&b, &a]));
    let before = state_of(&p, &["key-a", "key-b"]);
    let start = Instant::now();
    let g = login("daemon", "sudo", &p, &mut Cues::default()).unwrap();
    println!(
        "logged in with {} after {:?} beside a key that signs wrongly",
        g.credential_name(),
        start.elapsed()
    );
    assert_eq!(g.credential_name(), "key-a");
    let after = state_of(&p, &["key-a", "key-b"]);
    assert_eq!(after[1], before[1], "the broken key's state is untouched");
    assert_eq!(after[0].sign_count, g.sign_count());
}
