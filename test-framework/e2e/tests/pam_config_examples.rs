//! The shipped examples in config/ stay true: the annotated pam_ctap.toml lists every key the
//! library knows, with its real default; the pam.d snippets use only valid module arguments.
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

#[test]
fn pam_d_snippets_use_valid_arguments() {
    for name in ["sudo-ctap", "login-ctap"] {
        let text = std::fs::read_to_string(config_dir().join("pam.d").join(name)).unwrap();
        let lines: Vec<&str> = text
            .lines()
            .filter(|l| !l.trim_start().starts_with('#') && l.contains("pam_ctap.so"))
            .collect();
        assert!(!lines.is_empty(), "{name} has no pam_ctap line");
        for l in lines {
            assert!(l.trim_start().starts_with("auth"), "{name}: auth only: {l}");
            let args: Vec<&str> = l
                .split_whitespace()
                .skip_while(|w| !w.ends_with("pam_ctap.so"))
                .skip(1)
                .collect();
            Policy::default()
                .apply_arguments(args.iter().copied())
                .unwrap_or_else(|e| panic!("{name}: {e}"));
        }
    }
}
