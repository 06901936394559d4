//! The agent with several keys attached (issue 16, item 1): the key touched first signs, the
//! other gets CTAPHID_CANCEL.
#![allow(clippy::unwrap_used)]

mod sshagent_common;

use ctap_core::ssh::wire::put_string;
use ctap_core::ssh::{SkAlgorithm, SkKey};
use ctap_e2e::SoftToken;
use sshagent_common::*;

#[test]
fn the_agent_signs_with_the_key_touched_first() {
    let dir = temp("agent-several");
    let sb = dir.path().join("b");
    let b = SoftToken::start(dir.path(), &sb, &[]);
    let records = enroll(&b, &[enrollment(SkAlgorithm::Ed25519, "b")], None);
    b.stop();
    let creds = write_credentials(dir.path(), &records);
    let log_a = dir.path().join("a.cancels");
    let a = SoftToken::start(
        dir.path(),
        &dir.path().join("a"),
        &[
            "--presence",
            "delay=8000",
            "--cancel-log",
            log_a.to_str().unwrap(),
        ],
    );
    let b = SoftToken::start(dir.path(), &sb, &["--presence", "delay=300"]);
    let both = format!("{},{}", a.uri(), b.uri());
    let agent = Agent::start_on(dir.path(), &both, &creds, &[]);
    let sk = SkKey::from_record(&records[0]).unwrap();
    let mut data = b"SSHSIG".to_vec();
    put_string(&mut data, b"file");
    put_string(&mut data, b"");
    put_string(&mut data, b"sha512");
    put_string(&mut data, &[7; 64]);
    let start = std::time::Instant::now();
    let r = agent.client().sign(&sk.public_blob(), &data);
    println!("signed after {:?}: {}", start.elapsed(), agent.log_text());
    assert_eq!(r[0], 14, "{}", agent.log_text());
    assert!(agent
        .log_text()
        .contains("2 security keys are attached: touch the one to use"));
    assert!(!std::fs::read_to_string(&log_a)
        .unwrap_or_default()
        .trim()
        .is_empty());
    drop(a);
}
