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
        let set = text.lines().any(|l| {
            l.starts_with(&format!("{k} ="))
                || l.starts_with(&format!("# {k} ="))
                || l.starts_with(&format!("# [{k}]"))
        });
        assert!(set, "config/pam_ctap.toml does not document `{k}`");
    }
}

/// The commented `[directory]` example, uncommented, is a valid section naming every key.
#[test]
fn annotated_directory_example_parses_and_names_every_key() {
    let text = std::fs::read_to_string(config_dir().join("pam_ctap.toml")).unwrap();
    let start = text
        .lines()
        .position(|l| l == "# [directory]")
        .expect("a commented [directory] example");
    let section: String = text
        .lines()
        .skip(start)
        .take_while(|l| l.starts_with("# "))
        .map(|l| format!("{}\n", &l[2..]))
        .collect();
    // The example binds both ways to show both; drop one to make it valid.
    let valid = section.replace("sasl_external = false", "");
    let policy = Policy::parse(Path::new("example.toml"), &valid).unwrap();
    let dir = policy.directory.unwrap();
    assert_eq!(dir.rp_id, "example.org");
    // Every key: an unknown one lists them.
    let err = Policy::parse(Path::new("x.toml"), &format!("{valid}zz_unknown = 1\n"))
        .unwrap_err()
        .to_string();
    let list = err
        .split("expected one of")
        .nth(1)
        .unwrap_or_else(|| panic!("{err}"));
    for k in list
        .split('`')
        .enumerate()
        .filter(|(i, _)| i % 2 == 1)
        .map(|(_, k)| k)
    {
        assert!(
            section.lines().any(|l| l.starts_with(&format!("{k} ="))),
            "the [directory] example does not document `{k}`"
        );
    }
}
