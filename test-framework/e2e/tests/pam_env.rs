//! The environment of the program calling PAM (the user's, for sudo and su) decides nothing:
//! variables that name another key, another config or other records have no effect.
#![allow(clippy::unwrap_used)]

mod pam_common;

use ctap_core::flows::enroll::UvPreference;
use pam_common::*;

/// Every name a careless module might read, pointed at `device` / `config` / `dir`.
fn hostile_env(device: &str, config: &str, dir: &str) -> Vec<(String, String)> {
    let mut v = Vec::new();
    for k in [
        "CTAP_DEVICE",
        "PAM_CTAP_DEVICE",
        "CTAP_PAM_DEVICE",
        "FIDO_DEVICE",
        "CTAP_SOFTTOKEN_SOCKET",
    ] {
        v.push((k.to_string(), device.to_string()));
    }
    for k in [
        "CTAP_CONFIG",
        "PAM_CTAP_CONFIG",
        "CTAP_PAM_CONFIG",
        "PAM_CTAP_TOML",
    ] {
        v.push((k.to_string(), config.to_string()));
    }
    for k in [
        "HOME",
        "XDG_CONFIG_HOME",
        "CTAP_RECORDS_DIR",
        "CTAP_STATE_DIR",
        "CTAP_HOME",
    ] {
        v.push((k.to_string(), dir.to_string()));
    }
    v.push(("CTAP_NOUSEROK".into(), "1".into()));
    v
}

fn run(service: &str, user: &str, env: &[(String, String)]) -> Run {
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    pamtester(service, user, "", &env)
}

#[test]
#[ignore = "needs root and pamtester (writes /etc/pam.d): scripts/test runs it as root"]
fn pam_environment_names_no_device_config_or_records() {
    require_root("pam_environment_names_no_device_config_or_records");
    let s = Setup::builder("pam-env").start();
    // A rogue world: another key, with lp enrolled in other records, and a permissive
    // config (nouserok, that key, those records) — everything an attacker's variables point at.
    let rogue_fx = Fixture::new("pam-env-rogue");
    let rogue_key = start_key(rogue_fx.path(), &rogue_fx.path().join("rogue.state"), &[]);
    rogue_fx.enroll(&rogue_key, "lp", UvPreference::Discouraged, None);
    rogue_fx.enroll(&rogue_key, "daemon", UvPreference::Discouraged, None);
    let rogue_config = rogue_fx.config("rogue.toml", &rogue_key.uri(), "nouserok = true");
    let env = hostile_env(
        &rogue_key.uri(),
        &rogue_config.display().to_string(),
        &rogue_fx.path().display().to_string(),
    );

    // 1. daemon still authenticates with root's key: the variables did not move the device to
    //    the rogue key (whose daemon credential root's records do not know).
    let r = run(&s.service.name, "daemon", &env);
    assert_eq!(r.result, PamResult::Success, "{r:?}");
    assert_contains(&s.fx.auth_line(), &["auth ok: ", "user=daemon"]);
    assert!(
        rogue_fx.log_lines().is_empty(),
        "the rogue config's log socket was never used"
    );

    // 2. lp, enrolled only in the rogue records, with a rogue nouserok: still AUTH_ERR.
    let r = run(&s.service.name, "lp", &env);
    assert_eq!(r.result, PamResult::AuthErr, "{r:?}");
    assert_contains(&s.fx.auth_line(), &["reason=no_records ", "user=lp"]);

    // 3. Root's config names a missing key; the environment names a working one: no key.
    let missing = s.fx.config(
        "missing.toml",
        &format!("unix:{}", s.fx.path().join("gone.sock").display()),
        "",
    );
    let svc = ServiceFile::new(&observing_stack(&format!("config={}", missing.display())));
    let env = hostile_env(
        &s.key().uri(),
        &s.config.display().to_string(),
        &s.fx.path().display().to_string(),
    );
    let r = run(&svc.name, "daemon", &env);
    assert_eq!(r.result, PamResult::AuthErr, "{r:?}");
    assert_contains(&s.fx.auth_line(), &["reason=no_key ", "user=daemon"]);
}
