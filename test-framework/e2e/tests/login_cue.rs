//! The cue reaches the conversation before the key waits (issue 16, item 3): a prompter that
//! timestamps each message, and a recording relay that timestamps each request the key gets.
//! The touch cue must come before the getAssertion that waits for the touch, the PIN prompt
//! before the cue, and the texts are root's.
#![allow(clippy::unwrap_used)]

use std::path::Path;
use std::time::{Duration, Instant};

use ctap_core::flows::enroll::{enroll, EnrollRequest, UvPreference};
use ctap_core::flows::login::login;
use ctap_core::flows::session::{open_authenticators, Prompter};
use ctap_core::store::account::{Nss, UserResolver};
use ctap_core::store::config::Policy;
use ctap_core::transport::ctap2::pin::Pin;
use ctap_e2e::{Relay, SoftToken, TempDir};

/// Every message, with the time it reached the conversation.
#[derive(Default)]
struct Timestamped {
    pin: Option<String>,
    events: Vec<(Instant, String)>,
}

impl Prompter for Timestamped {
    fn touch_cue(&mut self, m: &str) {
        self.events.push((Instant::now(), format!("cue: {m}")));
    }
    fn request_pin(&mut self, prompt: &str) -> Option<Pin> {
        self.events.push((Instant::now(), format!("pin: {prompt}")));
        self.pin.clone().map(|p| Pin::new(p).unwrap())
    }
    fn info(&mut self, m: &str) {
        self.events.push((Instant::now(), format!("info: {m}")));
    }
}

fn policy(dir: &Path, uri: &str) -> Policy {
    let p = Policy {
        device: uri.parse().unwrap(),
        timeout: 10,
        records_dir: dir.join("users"),
        state_dir: dir.join("state"),
        cue_prompt: "Tap the key for sudo".into(),
        pin_prompt: "Key PIN, please: ".into(),
        ..Policy::default()
    };
    for d in [&p.records_dir, &p.state_dir] {
        std::fs::create_dir_all(d).unwrap();
    }
    p
}

fn enroll_user(p: &Policy, user: &str, uv: UvPreference, pin: Option<&str>) {
    let mut keys = open_authenticators(&p.device, p.touch_timeout()).unwrap();
    if let Some(pin) = pin {
        keys[0].set_pin(&Pin::new(pin.into()).unwrap()).unwrap();
    }
    let req = EnrollRequest {
        user: Nss.by_name(user).unwrap().unwrap(),
        name: "virtual".into(),
        rp_id: Some("pam://test".into()),
        uv,
        pin_policy: p.pin,
    };
    let mut s = Timestamped {
        pin: pin.map(str::to_string),
        ..Default::default()
    };
    enroll(&p.store(), &req, &mut keys[0], &mut s).unwrap();
}

/// The conversation's messages and the key's requests in one timeline.
fn timeline(s: &Timestamped, relay: &Relay, start: Instant) -> Vec<(Duration, String)> {
    let mut all: Vec<(Instant, String)> = s.events.clone();
    all.extend(
        relay
            .take_timed()
            .into_iter()
            .map(|(t, r)| (t, format!("key: {r}"))),
    );
    all.sort_by_key(|(t, _)| *t);
    all.into_iter()
        .map(|(t, e)| (t.duration_since(start), e))
        .collect()
}

fn position(line: &[(Duration, String)], what: impl Fn(&str) -> bool) -> usize {
    line.iter()
        .rposition(|(_, e)| what(e))
        .unwrap_or_else(|| panic!("not in {line:#?}"))
}

#[test]
fn the_cue_comes_before_the_getassertion_that_waits() {
    let dir = TempDir::new("cue-order");
    let key = SoftToken::start(
        dir.path(),
        &dir.path().join("key"),
        &["--presence", "delay=1200"],
    );
    let relay = Relay::start(dir.path(), &key);
    let p = policy(dir.path(), &relay.uri());
    enroll_user(&p, "daemon", UvPreference::Discouraged, None);
    relay.take_timed();

    let mut s = Timestamped::default();
    let start = Instant::now();
    login("daemon", "sudo", &p, &mut s).unwrap();
    let end = start.elapsed();
    let line = timeline(&s, &relay, start);
    for (t, e) in &line {
        println!("{:>6} ms  {e}", t.as_millis());
    }
    let cue = position(&line, |e| e == "cue: Tap the key for sudo");
    let wait = position(&line, |e| e == "key: CBOR 0x02");
    assert!(cue < wait, "the cue before the getAssertion: {line:#?}");
    // The whole touch wait came after the cue.
    assert!(
        end - line[cue].0 >= Duration::from_millis(1100),
        "cue at {:?}, login done at {end:?}",
        line[cue].0
    );
}

#[test]
fn with_a_pin_the_prompt_then_the_cue_then_the_wait() {
    let dir = TempDir::new("cue-pin-order");
    let key = SoftToken::start(
        dir.path(),
        &dir.path().join("key"),
        &["--presence", "delay=1200"],
    );
    let relay = Relay::start(dir.path(), &key);
    let p = policy(dir.path(), &relay.uri());
    enroll_user(&p, "daemon", UvPreference::Required, Some("2468"));
    relay.take_timed();

    let mut s = Timestamped {
        pin: Some("2468".into()),
        ..Default::default()
    };
    let start = Instant::now();
    let g = login("daemon", "sudo", &p, &mut s).unwrap();
    assert!(g.user_verified());
    let end = start.elapsed();
    let line = timeline(&s, &relay, start);
    for (t, e) in &line {
        println!("{:>6} ms  {e}", t.as_millis());
    }
    let pin = position(&line, |e| e == "pin: Key PIN, please: ");
    let cue = position(&line, |e| e == "cue: Tap the key for sudo");
    let wait = position(&line, |e| e == "key: CBOR 0x02");
    assert!(pin < cue && cue < wait, "{line:#?}");
    assert!(end - line[cue].0 >= Duration::from_millis(1100));
    // No other cue: one message asks for the touch.
    assert_eq!(
        line.iter().filter(|(_, e)| e.starts_with("cue:")).count(),
        1,
        "{line:#?}"
    );
}
