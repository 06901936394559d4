//! An agent signature never outlives the agent's timeout, whatever the key does: with
//! `--timeout 3`, each timing fault of the virtual key ends in SSH_AGENT_FAILURE within 3 + 2 s,
//! and the key saw CANCEL where it was working on the abandoned request.
#![allow(clippy::unwrap_used)]

mod sshagent_common;

use std::path::Path;
use std::time::{Duration, Instant};

use ctap_core::ssh::SkAlgorithm;
use ctap_e2e::SoftToken;
use sshagent_common::*;

fn saw_cancel(log: &Path) -> bool {
    !ctap_e2e::wait_for_cancels(log).is_empty()
}

#[test]
fn agent_signature_ends_by_its_timeout_whatever_the_key_does() {
    let dir = temp("agent-bounds");
    let key_state = dir.path().join("key.state");
    let key = SoftToken::start(dir.path(), &key_state, &[]);
    let records = enroll(&key, &[enrollment(SkAlgorithm::EcdsaP256, "e")], None);
    key.stop();
    let home = dir.path().join("home");
    std::fs::create_dir_all(&home).unwrap();
    let credentials = write_credentials(&home, &records);

    // An agent signature sends no silent probe, so probe-keepalive does not apply.
    for (fault, must_cancel) in [
        ("slow-answer", true),
        ("trickle", false),
        ("stall-mid-message", true),
        ("busy-forever", false),
    ] {
        let log = dir.path().join(format!("cancel-{fault}.log"));
        let log_arg = log.display().to_string();
        let key = SoftToken::start(
            dir.path(),
            &key_state,
            &["--fault", fault, "--cancel-log", &log_arg],
        );
        let agent = Agent::start(dir.path(), &key, &credentials, &["--timeout", "3"]);
        let mut client = agent.client();
        let (blob, _) = client.identities().into_iter().next().unwrap();
        let start = Instant::now();
        let reply = client.sign(&blob, b"data to sign");
        let took = start.elapsed();
        println!(
            "agent signature fault={fault}: {took:.2?}, reply type {}",
            reply[0]
        );
        assert_eq!(reply[0], FAILURE, "{fault}");
        assert!(took < Duration::from_secs(3 + 2), "{fault}: took {took:?}");
        if must_cancel {
            assert!(saw_cancel(&log), "{fault}: the key saw no CANCEL");
        }
        drop(client);
        drop(agent);
        key.stop();
    }
}
