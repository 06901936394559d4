//! Eight authentications of one user at once: all succeed, each with its own counter, and the
//! state left behind is valid and holds the highest one.
#![allow(clippy::unwrap_used)]

mod pam_common;

use pam_common::*;

#[test]
#[ignore = "needs root and pamtester (writes /etc/pam.d): scripts/test runs it as root"]
fn pam_eight_concurrent_authentications_all_succeed() {
    require_root("pam_eight_concurrent_authentications_all_succeed");
    let s = Setup::builder("pam-concurrent").start();
    let runs: Vec<Run> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..8)
            .map(|_| scope.spawn(|| pamtester(&s.service.name, "daemon", "", &[])))
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    for r in &runs {
        assert_eq!(r.result, PamResult::Success, "{r:?}");
    }
    let mut lines = Vec::new();
    while lines.len() < 8 {
        let more = s.fx.log_lines();
        assert!(!more.is_empty(), "only {} lines: {lines:#?}", lines.len());
        lines.extend(more);
    }
    let mut counters: Vec<u64> = lines
        .iter()
        .filter(|l| l.contains("auth ok: "))
        .map(|l| {
            l.split("counter=")
                .nth(1)
                .unwrap()
                .split(' ')
                .next()
                .unwrap()
                .parse()
                .unwrap()
        })
        .collect();
    assert_eq!(counters.len(), 8, "{lines:#?}");
    counters.sort_unstable();
    counters.dedup();
    assert_eq!(
        counters.len(),
        8,
        "every login saw a fresh counter: {counters:?}"
    );

    let text = std::fs::read_to_string(s.state_path("daemon")).unwrap();
    let v: toml::Value = toml::from_str(&text).unwrap();
    let stored = v["credential"][0]["sign_count"].as_integer().unwrap() as u64;
    assert_eq!(
        stored,
        *counters.last().unwrap(),
        "state holds the newest counter"
    );
    // And the state is still good for the next login.
    assert_eq!(s.auth("daemon").result, PamResult::Success);
}
