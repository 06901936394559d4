//! The shipped examples in config/ stay true: the annotated pam_ctap.toml lists every key the
//! library knows, with its real default. (The pam.d snippets' arguments are checked by pam_ctap's
//! own tests, which hold the argument parser.)
#![allow(clippy::unwrap_used)]

use std::path::{Path, PathBuf};

use ctap_core::store::config::Policy;

fn config_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../config")
}

/// The keys `Policy` accepts, as serde lists them when it meets an unknown one.
fn policy_keys() -> Vec<String> {
    let err = Policy::parse(Path::new("probe.toml"), "zz_unknown_key = 1\n")
        .unwrap_err()
        .to_string();
    let list = err
        .split("expected one of")
        .nth(1)
        .unwrap_or_else(|| panic!("{err}"));
    list.split('`')
        .enumerate()
        .filter(|(i, _)| i % 2 == 1)
        .map(|(_, k)| k.to_string())
        .collect()
}

#[test]
fn annotated_config_documents_every_key_with_its_default() {
    let path = config_dir().join("pam_ctap.toml");
    let text = std::fs::read_to_string(&path).unwrap();
    let parsed = Policy::parse(&path, &text).unwrap();
    assert_eq!(parsed, Policy::default(), "the example must change nothing");
    let keys = policy_keys();
    assert!(keys.len() >= 15, "{keys:?}");
    for k in keys {
        let set = text
            .lines()
            .any(|l| l.starts_with(&format!("{k} =")) || l.starts_with(&format!("# {k} =")));
        assert!(set, "config/pam_ctap.toml does not document `{k}`");
    }
}
