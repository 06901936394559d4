//! A login never outlives its timeout, whatever the key does, and many credentials log in.
//!
//! Hostile timing comes from the virtual key's timing faults (`--fault slow-answer`, …); each
//! run measures wall time with timeout = 3 s and asserts the login is denied within 3 + 2 s,
//! and, where the client abandons a request the key was working on, that the key saw CANCEL
//! (`--cancel-log`). Many credentials: one real credential plus well-formed fake records with
//! random ids before it, so the real one is in the last allow-list chunk.
#![allow(clippy::unwrap_used)]

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use ctap_core::flows::enroll::{enroll, EnrollRequest, UvPreference};
use ctap_core::flows::login::login;
use ctap_core::flows::session::{open_authenticators, Prompter};
use ctap_core::store::account::{Account, Nss, UserResolver};
use ctap_core::store::config::Policy;
use ctap_core::store::credential::{CredentialRecord, CredentialState};
use ctap_core::transport::ctap2::pin::Pin;
use ctap_e2e::{bin, SoftToken, TempDir};

const TIMEOUT_S: u64 = 3;
/// The fixed margin a login may take beyond its timeout.
const MARGIN: Duration = Duration::from_secs(2);
const PIN: &str = "2468";

struct Quiet(Option<String>);

impl Prompter for Quiet {
    fn touch_cue(&mut self, _: &str) {}
    fn request_pin(&mut self, _: &str) -> Option<Pin> {
        self.0.clone().map(|p| Pin::new(p).unwrap())
    }
    fn info(&mut self, _: &str) {}
}

fn policy(dir: &Path, key: &SoftToken, timeout: u64) -> Policy {
    Policy {
        device: key.uri().parse().unwrap(),
        timeout,
        records_dir: dir.join("users"),
        state_dir: dir.join("state"),
        ..Policy::default()
    }
}

/// The account NSS knows by `name` (tests use system accounts; records live in the test dir).
fn nss(name: &str) -> Account {
    Nss.by_name(name).unwrap().unwrap()
}

fn enroll_user(p: &Policy, user: &str, rp_id: &str, uv: UvPreference, pin: Option<&str>) {
    let mut keys = open_authenticators(&p.device, p.touch_timeout()).unwrap();
    let req = EnrollRequest {
        user: nss(user),
        name: "virtual".into(),
        rp_id: Some(rp_id.into()),
        uv,
        pin_policy: p.pin,
    };
    enroll(
        &p.store(),
        &req,
        &mut keys[0],
        &mut Quiet(pin.map(str::to_string)),
    )
    .unwrap();
}

/// A key enrolled for `daemon` (no UV) and `sys` (UV required, PIN), stopped, so each test can
/// restart it with a fault on the same state.
struct Enrolled {
    dir: TempDir,
    key_state: PathBuf,
}

impl Enrolled {
    fn new(tag: &str) -> Self {
        let dir = TempDir::new(tag);
        let key_state = dir.path().join("key.state");
        let key = SoftToken::start(dir.path(), &key_state, &["--pin", PIN]);
        let p = policy(dir.path(), &key, 20);
        enroll_user(
            &p,
            "daemon",
            "pam://bounds",
            UvPreference::Discouraged,
            None,
        );
        enroll_user(&p, "sys", "pam://bounds", UvPreference::Required, Some(PIN));
        key.stop();
        Enrolled { dir, key_state }
    }

    fn start(&self, fault: &str) -> (SoftToken, PathBuf) {
        let log = self.dir.path().join(format!("cancel-{fault}.log"));
        let _ = std::fs::remove_file(&log);
        let log_arg = log.display().to_string();
        let key = SoftToken::start(
            self.dir.path(),
            &self.key_state,
            &["--fault", fault, "--cancel-log", &log_arg],
        );
        (key, log)
    }
}

/// The key logs a CANCEL just after the client gave up: wait for it (briefly).
fn saw_cancel(log: &Path) -> bool {
    !ctap_e2e::wait_for_cancels(log).is_empty()
}

/// (fault, whether the client abandons a request the key is working on, so must CANCEL it).
/// `trickle` keeps the key busy writing, so it cannot read the CANCEL; `busy-forever` never
/// takes the request.
const FAULTS: &[(&str, bool)] = &[
    ("slow-answer", true),
    ("probe-keepalive", true),
    ("trickle", false),
    ("stall-mid-message", true),
    ("busy-forever", false),
];

#[test]
fn library_login_ends_by_its_timeout_whatever_the_key_does() {
    let e = Enrolled::new("bounds-lib");
    for &(fault, must_cancel) in FAULTS {
        for (user, pin) in [("daemon", None), ("sys", Some(PIN))] {
            let (key, log) = e.start(fault);
            let p = policy(e.dir.path(), &key, TIMEOUT_S);
            let start = Instant::now();
            let r = login(user, "sudo", &p, &mut Quiet(pin.map(str::to_string)));
            let took = start.elapsed();
            let kind = r.as_ref().err().map(|e| e.kind());
            println!("library login {user} fault={fault}: {took:.2?}, denied: {kind:?}");
            if fault == "probe-keepalive" && pin.is_none() {
                // One key, one credential, no PIN: the login sends no silent probe (its
                // getAssertion is the probe), so a key that stalls only probes never gets to.
                assert!(r.is_ok(), "{fault} {user}: {kind:?}");
                key.stop();
                continue;
            }
            assert!(r.is_err(), "{fault} {user}: granted");
            assert!(
                took < Duration::from_secs(TIMEOUT_S) + MARGIN,
                "{fault} {user}: took {took:?}"
            );
            if must_cancel {
                assert!(saw_cancel(&log), "{fault} {user}: the key saw no CANCEL");
            }
            key.stop();
        }
    }
    // The same key, well-behaved, still logs in.
    let key = SoftToken::start(e.dir.path(), &e.key_state, &[]);
    let p = policy(e.dir.path(), &key, TIMEOUT_S);
    login("daemon", "sudo", &p, &mut Quiet(None)).unwrap();
}

#[test]
fn enroll_test_ends_by_its_timeout_whatever_the_key_does() {
    let e = Enrolled::new("bounds-cli");
    let config = e.dir.path().join("pam_ctap.toml");
    std::fs::write(
        &config,
        format!(
            "records_dir = {:?}\nstate_dir = {:?}\ntimeout = {TIMEOUT_S}\n",
            e.dir.path().join("users"),
            e.dir.path().join("state"),
        ),
    )
    .unwrap();
    for &(fault, must_cancel) in FAULTS {
        let (key, log) = e.start(fault);
        let start = Instant::now();
        let out = Command::new(bin("ctap-enroll"))
            .arg("--config")
            .arg(&config)
            .args(["--device", &key.uri(), "test", "--user", "daemon"])
            .env_remove("SUDO_USER")
            .stdin(Stdio::null())
            .output()
            .unwrap();
        let took = start.elapsed();
        let text = String::from_utf8_lossy(&out.stderr).into_owned()
            + &String::from_utf8_lossy(&out.stdout);
        println!(
            "ctap-enroll test fault={fault}: {took:.2?}, exit {:?}: {}",
            out.status.code(),
            text.trim()
        );
        assert!(
            took < Duration::from_secs(TIMEOUT_S) + MARGIN,
            "{fault}: took {took:?}"
        );
        if fault == "probe-keepalive" {
            // daemon has one credential and no PIN: no silent probe is sent at all.
            assert!(out.status.success(), "{fault}: {text}");
            key.stop();
            continue;
        }
        assert!(!out.status.success(), "{fault}: {text}");
        if must_cancel {
            assert!(saw_cancel(&log), "{fault}: the key saw no CANCEL");
        }
        key.stop();
    }
}

/// Replace `user`'s records with `fakes` well-formed records (random ids, the real key's
/// public key) under the RP IDs `rp_of(i)`, followed by the one real credential.
fn pad_records(p: &Policy, user: &str, fakes: usize, rp_of: impl Fn(usize) -> String) {
    let store = p.store();
    let mut file = store.load_system_records(user).unwrap();
    let real: CredentialRecord = file.credentials.pop().unwrap();
    let mut all = Vec::with_capacity(fakes + 1);
    for i in 0..fakes {
        let mut fake = real.clone();
        fake.name = format!("fake-{i}");
        fake.rp_id = ctap_core::store::credential::RpId::parse(&rp_of(i)).unwrap();
        fake.credential_id = (0..real.credential_id.len())
            .map(|_| rand::random::<u8>())
            .collect();
        all.push(fake);
    }
    all.push(real);
    file.credentials = all;
    store.save_system_records(&nss(user), &file).unwrap();
}

#[test]
fn many_credentials_under_one_rp_id_log_in() {
    let dir = TempDir::new("many-creds");
    let key = SoftToken::start(dir.path(), &dir.path().join("key.state"), &[]);
    let p = policy(dir.path(), &key, 10);
    enroll_user(&p, "daemon", "pam://many", UvPreference::Discouraged, None);
    for n in [11usize, 100, 1000] {
        pad_records(&p, "daemon", n - 1, |_| "pam://many".into());
        add_state(&p, "daemon");
        let start = Instant::now();
        let r = login("daemon", "sudo", &p, &mut Quiet(None));
        println!(
            "{n} credentials under one RP ID: {:.2?}, {:?}",
            start.elapsed(),
            r.as_ref()
                .map(|g| g.credential_name())
                .map_err(|e| e.kind())
        );
        assert_eq!(r.unwrap().credential_name(), "virtual", "{n} credentials");
    }
}

/// Give every credential of `user` a login state, none of them used yet (as enrollment leaves
/// them), so the probes go in enrollment order.
fn add_state(p: &Policy, user: &str) {
    let store = p.store();
    let file = store.load_system_records(user).unwrap();
    let mut guard = store.lock_state(user, Duration::from_secs(5)).unwrap();
    for c in &file.credentials {
        if guard.state.get(&c.credential_id).is_none() {
            guard
                .state
                .credentials
                .push(CredentialState::new(c.credential_id.clone(), 0));
        }
    }
    for s in &mut guard.state.credentials {
        s.last_used = None;
    }
    guard.commit().unwrap();
}

#[test]
fn many_rp_ids_log_in_within_the_timeout() {
    let dir = TempDir::new("many-rps");
    let key = SoftToken::start(dir.path(), &dir.path().join("key.state"), &[]);
    let slow = policy(dir.path(), &key, 60);
    let p = policy(dir.path(), &key, TIMEOUT_S);
    enroll_user(
        &p,
        "daemon",
        "pam://many-rps",
        UvPreference::Discouraged,
        None,
    );
    // 399 other credentials, each under its own RP ID and with login state, all enrolled before
    // the real one: a probe per RP ID in enrollment order reaches it last.
    pad_records(&p, "daemon", 399, |i| format!("pam://rp-{i}"));
    add_state(&p, "daemon");
    let start = Instant::now();
    let first = login("daemon", "sudo", &slow, &mut Quiet(None));
    println!(
        "400 RP IDs, never used: {:.2?} (one probe per RP ID), {:?}",
        start.elapsed(),
        first
            .as_ref()
            .map(|g| g.credential_name())
            .map_err(|e| e.kind())
    );
    assert_eq!(first.unwrap().credential_name(), "virtual");
    // Once used, that credential is probed first: the next login is quick.
    let start = Instant::now();
    let r = login("daemon", "sudo", &p, &mut Quiet(None));
    let took = start.elapsed();
    println!(
        "400 RP IDs, last used first: {took:.2?}, {:?}",
        r.as_ref()
            .map(|g| g.credential_name())
            .map_err(|e| e.kind())
    );
    assert_eq!(r.unwrap().credential_name(), "virtual");
    assert!(took < Duration::from_secs(TIMEOUT_S), "took {took:?}");

    // 2,000 RP IDs (the records file's 1 MiB limit allows about 2,500) none of which is on this key (today about a minute holding the user's
    // lock): the login is denied when its time is up.
    let mut file = p.store().load_system_records("daemon").unwrap();
    file.credentials.clear();
    p.store()
        .save_system_records(&nss("daemon"), &file)
        .unwrap();
    enroll_user(&p, "daemon", "pam://other", UvPreference::Discouraged, None);
    pad_records(&p, "daemon", 2_000, |i| format!("pam://rp-{i}"));
    let mut file = p.store().load_system_records("daemon").unwrap();
    // Drop the real credential: no key holds any of these.
    file.credentials.pop();
    p.store()
        .save_system_records(&nss("daemon"), &file)
        .unwrap();
    let start = Instant::now();
    let r = login("daemon", "sudo", &p, &mut Quiet(None));
    let took = start.elapsed();
    println!(
        "2000 RP IDs, none on the key: {took:.2?}, {:?}",
        r.as_ref()
            .map(|g| g.credential_name())
            .map_err(|e| e.kind())
    );
    // Denied either way: `timeout` when the probes outlast the deadline (a loaded machine, a
    // slow key), `wrong_key` when all 2,000 were answered in time. What must not happen is a
    // login that runs past its timeout.
    let kind = r.unwrap_err().kind();
    assert!(matches!(kind, "timeout" | "wrong_key"), "{kind}");
    assert!(
        took < Duration::from_secs(TIMEOUT_S) + MARGIN,
        "took {took:?}"
    );
}
