//! Enrollment and login (ctap-core's `enroll` and `login`, what PAM and `ctap-enroll test` call)
//! against the virtual key, with real record and state files.
#![allow(clippy::unwrap_used)]

use std::path::Path;

use ctap_core::flows::enroll::{enroll, EnrollRequest, UvPreference};
use ctap_core::flows::login::{login, LoginError};
use ctap_core::flows::session::{open_authenticators, Prompter};
use ctap_core::flows::verify::VerifyError;
use ctap_core::store::account::{Nss, UserResolver};
use ctap_core::store::config::{CloneAction, Policy};
use ctap_core::transport::ctap2::pin::Pin;
use ctap_e2e::{SoftToken, TempDir};

#[derive(Default)]
struct Script {
    pin: Option<String>,
    cues: Vec<String>,
    infos: Vec<String>,
}

impl Prompter for Script {
    fn touch_cue(&mut self, m: &str) {
        self.cues.push(m.to_string());
    }
    fn request_pin(&mut self, _: &str) -> Option<Pin> {
        self.pin.clone().map(|p| Pin::new(p).unwrap())
    }
    fn info(&mut self, m: &str) {
        self.infos.push(m.to_string());
    }
}

fn policy(dir: &Path, key: &SoftToken) -> Policy {
    let p = Policy {
        device: key.uri().parse().unwrap(),
        timeout: 10,
        records_dir: dir.join("users"),
        state_dir: dir.join("state"),
        ..Policy::default()
    };
    // As the packages do: login refuses directories that do not exist.
    for d in [&p.records_dir, &p.state_dir] {
        std::fs::create_dir_all(d).unwrap();
    }
    p
}

fn enroll_user(
    p: &Policy,
    user: &str,
    uv: UvPreference,
    prompter: &mut Script,
) -> Result<(), ctap_core::flows::enroll::EnrollError> {
    let mut keys = open_authenticators(&p.device, p.touch_timeout()).unwrap();
    let req = EnrollRequest {
        user: Nss.by_name(user).unwrap().unwrap(),
        name: "virtual".into(),
        rp_id: Some("pam://test".into()),
        uv,
        pin_policy: p.pin,
    };
    enroll(&p.store(), &req, &mut keys[0], prompter).map(|_| ())
}

#[test]
fn enroll_then_login_succeeds_and_advances_the_counter() {
    let dir = TempDir::new("login");
    let key = SoftToken::start(dir.path(), &dir.path().join("key"), &[]);
    let p = policy(dir.path(), &key);
    let mut s = Script::default();
    enroll_user(&p, "daemon", UvPreference::Preferred, &mut s).unwrap();
    let before = p.store().read_state("daemon").unwrap().credentials[0].sign_count;
    let g1 = login("daemon", "sudo", &p, &mut s).unwrap();
    let g2 = login("daemon", "sudo", &p, &mut s).unwrap();
    assert!(g1.sign_count() > before && g2.sign_count() > g1.sign_count());
    assert_eq!(g2.credential_name(), "virtual");
    assert!(
        !g2.user_verified(),
        "preferred without PIN resolves to discouraged"
    );
    assert_eq!(
        p.store().read_state("daemon").unwrap().credentials[0].sign_count,
        g2.sign_count()
    );
    assert!(s.cues.iter().any(|c| c == "Touch your security key"));

    // Enrolling the same key twice is refused by the key itself (excludeList).
    let mut keys = open_authenticators(&p.device, p.touch_timeout()).unwrap();
    let req = EnrollRequest {
        user: Nss.by_name("daemon").unwrap().unwrap(),
        name: "again".into(),
        rp_id: Some("pam://test".into()),
        uv: UvPreference::Discouraged,
        pin_policy: p.pin,
    };
    let err = enroll(&p.store(), &req, &mut keys[0], &mut s)
        .unwrap_err()
        .to_string();
    assert!(err.contains("already enrolled"), "{err}");
}

#[test]
fn unknown_user_wrong_key_and_tampered_check_fail() {
    let dir = TempDir::new("fail");
    let key = SoftToken::start(dir.path(), &dir.path().join("key"), &[]);
    let other = SoftToken::start(dir.path(), &dir.path().join("other"), &[]);
    let p = policy(dir.path(), &key);
    let mut s = Script::default();
    assert!(matches!(
        login("nobody", "sudo", &p, &mut s),
        Err(LoginError::NoRecords)
    ));
    enroll_user(&p, "daemon", UvPreference::Discouraged, &mut s).unwrap();

    let wrong = policy(dir.path(), &other);
    assert!(matches!(
        login("daemon", "sudo", &wrong, &mut s),
        Err(LoginError::WrongKey)
    ));

    let state_path = p.store().state_path("daemon").unwrap();
    let text = std::fs::read_to_string(&state_path).unwrap();
    let mut state: toml::Value = toml::from_str(&text).unwrap();
    state["credential"][0]["hmac_check"] =
        toml::Value::String(ctap_core::store::credential::b64_encode(&[0u8; 32]));
    std::fs::write(&state_path, toml::to_string(&state).unwrap()).unwrap();
    let err = login("daemon", "sudo", &p, &mut s).unwrap_err();
    assert_eq!(err.kind(), "hmac_mismatch", "{err}");
}

/// Half an hmac-secret check in the state file is a load error naming the file and line, before
/// any key is touched; a round trip through the store leaves an intact file byte for byte.
#[test]
fn half_an_hmac_check_is_a_load_error_with_its_line() {
    let dir = TempDir::new("half");
    let key = SoftToken::start(dir.path(), &dir.path().join("key"), &[]);
    let p = policy(dir.path(), &key);
    let mut s = Script::default();
    enroll_user(&p, "daemon", UvPreference::Discouraged, &mut s).unwrap();
    let store = p.store();
    let state_path = store.state_path("daemon").unwrap();
    let text = std::fs::read_to_string(&state_path).unwrap();
    // Rewriting what was read changes nothing.
    let guard = store
        .lock_state("daemon", std::time::Duration::from_secs(5))
        .unwrap();
    guard.commit().unwrap();
    drop(guard);
    assert_eq!(std::fs::read_to_string(&state_path).unwrap(), text);
    let records_path = store.records_path("daemon").unwrap();
    let records = std::fs::read_to_string(&records_path).unwrap();
    let account = Nss.by_name("daemon").unwrap().unwrap();
    let loaded = store.load_system_records("daemon").unwrap();
    store.save_system_records(&account, &loaded).unwrap();
    assert_eq!(std::fs::read_to_string(&records_path).unwrap(), records);

    let cut: String = text
        .lines()
        .filter(|l| !l.starts_with("hmac_check"))
        .map(|l| format!("{l}\n"))
        .collect();
    assert_ne!(cut, text);
    std::fs::write(&state_path, &cut).unwrap();
    // The error comes from the file, before any key is asked: no touch cue.
    let mut s = Script::default();
    let err = login("daemon", "sudo", &p, &mut s).unwrap_err();
    let msg = err.to_string();
    assert_eq!(err.kind(), "config_error", "{msg}");
    assert!(
        msg.contains(&format!("{}:", state_path.display()))
            && msg.contains("hmac_salt without hmac_check"),
        "{msg}"
    );
    assert!(s.cues.is_empty(), "{:?}", s.cues);
}

#[test]
fn cloned_key_is_detected_and_suspended() {
    let dir = TempDir::new("clone");
    let key_state = dir.path().join("key");
    let key = SoftToken::start(dir.path(), &key_state, &[]);
    let mut p = policy(dir.path(), &key);
    p.clone_action = CloneAction::Suspend;
    let mut s = Script::default();
    enroll_user(&p, "daemon", UvPreference::Discouraged, &mut s).unwrap();
    key.stop();
    let clone_state = dir.path().join("clone");
    std::fs::copy(&key_state, &clone_state).unwrap();

    let key = SoftToken::start(dir.path(), &key_state, &[]);
    let p = Policy {
        device: key.uri().parse().unwrap(),
        ..p
    };
    // The softtoken steps its counter by a random 1..=256 per assertion (two per login: probe
    // and the real one), so the clone's first login reaches at most copy + 512. Log in with the
    // genuine key until the stored counter is past that, so the regression is certain.
    let copied = p.store().read_state("daemon").unwrap().credentials[0].sign_count;
    for _ in 0..600 {
        if p.store().read_state("daemon").unwrap().credentials[0].sign_count > copied + 512 {
            break;
        }
        login("daemon", "sudo", &p, &mut s).unwrap();
    }
    key.stop();

    let clone = SoftToken::start(dir.path(), &clone_state, &[]);
    let pc = Policy {
        device: clone.uri().parse().unwrap(),
        ..p.clone()
    };
    match login("daemon", "sudo", &pc, &mut s) {
        Err(LoginError::Rejected {
            reason: VerifyError::CounterRegression { .. },
            suspended: true,
            ..
        }) => {}
        other => panic!("expected a suspending counter regression, got {other:?}"),
    }
    let st = pc.store().read_state("daemon").unwrap();
    let suspension = st.credentials[0].suspension.as_ref().unwrap();
    assert!(suspension.at.is_some(), "{suspension:?}");
    assert!(
        suspension
            .reason
            .as_deref()
            .is_some_and(|r| r.starts_with("counter regression from ")),
        "{suspension:?}"
    );
    // Suspended: even the genuine key is refused now, until an admin unsuspends.
    clone.stop();
    let key = SoftToken::start(dir.path(), &key_state, &[]);
    let p = Policy {
        device: key.uri().parse().unwrap(),
        ..p
    };
    assert_eq!(
        login("daemon", "sudo", &p, &mut s).unwrap_err().kind(),
        "suspended"
    );
}

#[test]
fn uv_required_asks_for_the_pin() {
    let dir = TempDir::new("pinlogin");
    let key = SoftToken::start(dir.path(), &dir.path().join("key"), &[]);
    let p = policy(dir.path(), &key);
    {
        let mut keys = open_authenticators(&p.device, p.touch_timeout()).unwrap();
        keys[0].set_pin(&Pin::new("2468".into()).unwrap()).unwrap();
    }
    let mut s = Script {
        pin: Some("2468".into()),
        ..Default::default()
    };
    enroll_user(&p, "sys", UvPreference::Preferred, &mut s).unwrap();
    let g = login("sys", "login", &p, &mut s).unwrap();
    assert!(g.user_verified());

    let mut wrong = Script {
        pin: Some("1111".into()),
        ..Default::default()
    };
    assert_eq!(
        login("sys", "login", &p, &mut wrong).unwrap_err().kind(),
        "pin_invalid"
    );
    assert!(
        wrong.infos.iter().any(|m| m.contains("tries left")),
        "{:?}",
        wrong.infos
    );
    let mut none = Script::default();
    assert_eq!(
        login("sys", "login", &p, &mut none).unwrap_err().kind(),
        "uv_unavailable"
    );
}

#[test]
fn presence_denied_fails_without_touching_state() {
    let dir = TempDir::new("deny");
    let state = dir.path().join("key");
    let key = SoftToken::start(dir.path(), &state, &[]);
    let p = policy(dir.path(), &key);
    let mut s = Script::default();
    enroll_user(&p, "sync", UvPreference::Discouraged, &mut s).unwrap();
    key.stop();
    let before = std::fs::read(p.store().state_path("sync").unwrap()).unwrap();
    let key = SoftToken::start(dir.path(), &state, &["--presence", "deny"]);
    let p = Policy {
        device: key.uri().parse().unwrap(),
        ..p
    };
    let err = login("sync", "sudo", &p, &mut s).unwrap_err();
    assert!(matches!(err.kind(), "presence_denied" | "timeout"), "{err}");
    assert_eq!(
        std::fs::read(p.store().state_path("sync").unwrap()).unwrap(),
        before
    );
}

/// A name service that answers case-insensitively with the canonical lower-case name, as SSSD
/// (case_sensitive = false) does: `ALICE` is alice.
struct CaseInsensitive(Vec<ctap_core::store::account::Account>);

impl UserResolver for CaseInsensitive {
    fn by_name(
        &self,
        name: &str,
    ) -> Result<Option<ctap_core::store::account::Account>, ctap_core::store::account::LookupError>
    {
        let wanted = name.to_lowercase();
        Ok(self.0.iter().find(|a| a.name() == wanted).cloned())
    }
    fn by_uid(
        &self,
        uid: u32,
    ) -> Result<Option<ctap_core::store::account::Account>, ctap_core::store::account::LookupError>
    {
        Ok(self.0.iter().find(|a| a.uid() == uid).cloned())
    }
}

fn fake_account(name: &str, uid: u32) -> ctap_core::store::account::Account {
    ctap_core::store::account::Account::from_passwd(name.into(), uid, uid, "/nonexistent".into())
}

#[test]
fn an_sssd_like_resolver_finds_the_canonical_account_for_any_spelling() {
    use ctap_core::flows::login::login_with;
    let dir = TempDir::new("resolver");
    let key = SoftToken::start(dir.path(), &dir.path().join("key"), &[]);
    let other = SoftToken::start(dir.path(), &dir.path().join("other"), &[]);
    let p = policy(dir.path(), &key);
    let alice = fake_account("alice", 61001);
    let nss = CaseInsensitive(vec![alice.clone(), fake_account("bob", 61002)]);
    let mut s = Script::default();
    {
        let mut keys = open_authenticators(&p.device, p.touch_timeout()).unwrap();
        let req = EnrollRequest {
            user: alice.clone(),
            name: "virtual".into(),
            rp_id: Some("pam://test".into()),
            uv: UvPreference::Discouraged,
            pin_policy: p.pin,
        };
        enroll(&p.store(), &req, &mut keys[0], &mut s).unwrap();
    }
    let records = std::fs::read_to_string(p.store().records_path("alice").unwrap()).unwrap();
    assert!(records.starts_with("uid = 61001\n"), "{records}");

    // Any spelling is alice: her key logs in, another key is refused. Never "no records".
    for typed in ["alice", "ALICE", "Alice"] {
        let g = login_with(&nss, typed, "sudo", &p, &mut s).unwrap();
        assert_eq!(g.credential_name(), "virtual");
        let wrong = policy(dir.path(), &other);
        let err = login_with(&nss, typed, "sudo", &wrong, &mut s).unwrap_err();
        assert_eq!(err.kind(), "wrong_key", "{typed}: {err}");
    }
    // A name the resolver does not know is a denial of its own.
    let err = login_with(&nss, "mallory", "sudo", &p, &mut s).unwrap_err();
    assert_eq!(err.kind(), "unknown_user", "{err}");
    // bob, known and not enrolled: the one case nouserok may skip.
    let err = login_with(&nss, "BOB", "sudo", &p, &mut s).unwrap_err();
    assert_eq!(err.kind(), "no_records", "{err}");

    // Records an earlier release wrote under the typed spelling (no uid in them) are found as
    // another name of the same account: denied, not skipped.
    let store = p.store();
    let legacy = records
        .lines()
        .skip_while(|l| !l.starts_with("[[credential]]"))
        .collect::<Vec<_>>()
        .join("\n");
    std::fs::remove_file(store.records_path("alice").unwrap()).unwrap();
    std::fs::rename(
        store.state_path("alice").unwrap(),
        store.state_path("ALICE").unwrap(),
    )
    .unwrap();
    std::fs::write(store.records_path("ALICE").unwrap(), &legacy).unwrap();
    let err = login_with(&nss, "Alice", "sudo", &p, &mut s).unwrap_err();
    assert_eq!(err.kind(), "alias_enrolled", "{err}");
    assert!(err.to_string().contains("\"ALICE\""), "{err}");

    // The name reused for another uid: the records (written for 61001) are refused.
    std::fs::remove_file(store.records_path("ALICE").unwrap()).unwrap();
    std::fs::rename(
        store.state_path("ALICE").unwrap(),
        store.state_path("alice").unwrap(),
    )
    .unwrap();
    std::fs::write(store.records_path("alice").unwrap(), &records).unwrap();
    let reused = CaseInsensitive(vec![fake_account("alice", 61003)]);
    let err = login_with(&reused, "alice", "sudo", &p, &mut s).unwrap_err();
    assert_eq!(err.kind(), "uid_mismatch", "{err}");
    assert!(err.to_string().contains("uid 61001"), "{err}");
}

/// Issue 9 item 4: a per-user copy of a credential that says `user_verification =
/// "discouraged"` does not drop the PIN: root-written state (enrolled with UV) decides.
#[test]
fn a_per_user_record_cannot_drop_user_verification() {
    use ctap_core::flows::login::login_with;
    use std::os::unix::fs::{chown, PermissionsExt};
    let dir = TempDir::new("peruser-uv");
    let key = SoftToken::start(dir.path(), &dir.path().join("key"), &[]);
    let mut p = policy(dir.path(), &key);
    {
        let mut keys = open_authenticators(&p.device, p.touch_timeout()).unwrap();
        keys[0].set_pin(&Pin::new("2468".into()).unwrap()).unwrap();
    }
    let uid = 61010;
    let home = dir.path().join("home");
    let alice =
        ctap_core::store::account::Account::from_passwd("alice".into(), uid, uid, home.clone());
    let nss = CaseInsensitive(vec![alice.clone()]);
    let mut s = Script {
        pin: Some("2468".into()),
        ..Default::default()
    };
    {
        let mut keys = open_authenticators(&p.device, p.touch_timeout()).unwrap();
        let req = EnrollRequest {
            user: alice.clone(),
            name: "virtual".into(),
            rp_id: Some("pam://test".into()),
            uv: UvPreference::Preferred,
            pin_policy: p.pin,
        };
        enroll(&p.store(), &req, &mut keys[0], &mut s).unwrap();
    }
    // Move the credential into alice's own file, claiming no user verification.
    let root_path = p.store().records_path("alice").unwrap();
    let text = std::fs::read_to_string(&root_path).unwrap();
    assert!(text.contains("user_verification = \"required\""), "{text}");
    std::fs::remove_file(&root_path).unwrap();
    let own_dir = home.join(".config/ctap");
    std::fs::create_dir_all(&own_dir).unwrap();
    for d in [
        dir.path().to_path_buf(),
        home.clone(),
        home.join(".config"),
        own_dir.clone(),
    ] {
        std::fs::set_permissions(&d, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    for d in [home.clone(), home.join(".config"), own_dir.clone()] {
        chown(&d, Some(uid), Some(uid)).unwrap();
    }
    let own = own_dir.join("credentials.toml");
    let credential = &text[text.find("[[credential]]").unwrap()..];
    std::fs::write(
        &own,
        credential.replace(
            "user_verification = \"required\"",
            "user_verification = \"discouraged\"",
        ),
    )
    .unwrap();
    chown(&own, Some(uid), Some(uid)).unwrap();
    p.per_user_records = true;

    // Still asks for the PIN: without one, no login.
    let mut none = Script::default();
    let err = login_with(&nss, "alice", "sudo", &p, &mut none).unwrap_err();
    assert_eq!(err.kind(), "uv_unavailable", "{err}");
    // With it, the login verifies the user, as enrolled.
    let g = login_with(&nss, "alice", "sudo", &p, &mut s).unwrap();
    assert!(g.user_verified());
}

/// Several keys attached: the one the user touches is chosen (authenticatorSelection) before
/// any PIN goes anywhere; a key that is not touched is cancelled, and one that refuses does not
/// end the choice.
#[test]
fn with_several_keys_a_touch_chooses_the_key() {
    use ctap_core::flows::login::select_by_touch;
    use std::time::{Duration, Instant};
    let dir = TempDir::new("select");
    let slow = SoftToken::start(
        dir.path(),
        &dir.path().join("a"),
        &["--presence", "delay=4000"],
    );
    let touched = SoftToken::start(dir.path(), &dir.path().join("b"), &[]);
    let refusing = SoftToken::start(dir.path(), &dir.path().join("c"), &["--presence", "deny"]);
    let open = |k: &SoftToken| {
        let uri = k.uri().parse().unwrap();
        open_authenticators(&uri, Duration::from_secs(10))
            .unwrap()
            .remove(0)
    };
    let mut keys = vec![open(&slow), open(&touched), open(&refusing)];
    let start = Instant::now();
    assert_eq!(select_by_touch(&mut keys, &[0, 1, 2]).unwrap(), 1);
    assert!(
        start.elapsed() < Duration::from_secs(3),
        "the untouched key was cancelled, not waited for: {:?}",
        start.elapsed()
    );
    // Only candidates blink: without the touched key, the slow one wins after its delay. The
    // same connections: the cancelled requests' late answers are read away, not taken for the
    // new requests' answers.
    assert_eq!(select_by_touch(&mut keys, &[0, 2]).unwrap(), 0);
    // No key touched: an error, never a choice.
    let err = select_by_touch(&mut keys, &[2]).unwrap_err();
    assert!(matches!(err, LoginError::Device(_)), "{err}");
}

/// Enrollment's confirming assertion goes through the shared verifier: a key whose signature
/// does not verify with the public key it just gave enrolls nothing.
#[test]
fn enrollment_rejects_a_tampered_confirmation() {
    let dir = TempDir::new("enroll-tampered");
    let key = SoftToken::start(
        dir.path(),
        &dir.path().join("key"),
        &["--fault", "corrupt-signature"],
    );
    let p = policy(dir.path(), &key);
    let mut s = Script::default();
    let err = enroll_user(&p, "daemon", UvPreference::Discouraged, &mut s).unwrap_err();
    println!("{err}");
    assert!(
        matches!(
            err,
            ctap_core::flows::enroll::EnrollError::Rejected(VerifyError::BadSignature)
        ),
        "{err:?}"
    );
    assert!(err.to_string().contains("nothing was enrolled"), "{err}");
    // Neither records nor state were written.
    assert!(!p.store().records_path("daemon").unwrap().exists());
    assert!(p
        .store()
        .read_state("daemon")
        .unwrap()
        .credentials
        .is_empty());
}
