//! Several keys at once (issue 16, item 1), through a `device` list of virtual keys: every key
//! holding one of the user's credentials is asked at once (authenticatorSelection), the first
//! touched logs in, the others get CTAPHID_CANCEL (their cancel logs), and a key that errors
//! delays nothing.
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
    assert_eq!(cues.0[0], p.select_prompt, "the choice is announced first");
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
