//! Fuzz target bodies, one function per target (`fuzz_targets/<name>.rs` calls `ctap_fuzz::<name>`).
//!
//! The ctap-core targets live in `ctap_core::fuzz_api` (where a proptest also runs them on random
//! input); the agent's message parser and the pam-u2f importer's live here because ctap-core
//! cannot see ctap-sshagent or ctap-enroll.
//! `cargo test` replays `corpus/<name>/` and `regressions/<name>/` through each target on a
//! stable toolchain, so the harness runs even where cargo-fuzz cannot.

pub use ctap_core::fuzz_api::{
    authenticator_data, cbor, cose_key, ctap2_responses, ctaphid, files_toml, ssh_key_files,
    ssh_signed_data, u2f_responses,
};

/// pam-u2f authfile lines (the importer lives in ctap-enroll, its only user).
pub fn pamu2f(data: &[u8]) {
    let _ = ctap_enroll::pamu2f::parse(&String::from_utf8_lossy(data));
}

/// ssh-agent messages (the body after the length) and the session-bind extension's contents.
pub fn agent_messages(data: &[u8]) {
    let _ = ctap_sshagent::protocol::parse(data);
    let _ = ctap_sshagent::protocol::parse_session_bind(data);
}

/// A target's body.
pub type Target = fn(&[u8]);

/// Every target by name, as the replay test walks them.
pub const TARGETS: &[(&str, Target)] = &[
    ("ctaphid", ctaphid),
    ("cbor", cbor),
    ("ctap2_responses", ctap2_responses),
    ("authenticator_data", authenticator_data),
    ("cose_key", cose_key),
    ("u2f_responses", u2f_responses),
    ("files_toml", files_toml),
    ("pamu2f", pamu2f),
    ("ssh_key_files", ssh_key_files),
    ("ssh_signed_data", ssh_signed_data),
    ("agent_messages", agent_messages),
];

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::TARGETS;

    fn files(dir: &Path) -> Vec<std::path::PathBuf> {
        let mut out: Vec<_> = match std::fs::read_dir(dir) {
            Ok(entries) => entries.filter_map(|e| e.ok()).map(|e| e.path()).collect(),
            Err(_) => Vec::new(),
        };
        out.retain(|p| p.is_file());
        out.sort();
        out
    }

    /// Each target's seed corpus (captured from the virtual key, real files) and every crash
    /// ever found (`regressions/<target>/`) run through the target without a panic.
    #[test]
    fn corpus_and_regressions_replay() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR"));
        let mut total = 0;
        for (name, target) in TARGETS {
            let seeds = files(&root.join("corpus").join(name));
            assert!(!seeds.is_empty(), "fuzz/corpus/{name}/ has no seed files");
            let regressions = files(&root.join("regressions").join(name));
            for path in seeds.iter().chain(&regressions) {
                let data =
                    std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
                target(&data);
                total += 1;
            }
            println!(
                "{name}: {} seeds, {} regressions replayed",
                seeds.len(),
                regressions.len()
            );
        }
        println!("{total} inputs replayed");
    }

    /// Every target named in Cargo.toml has a body here and a seed directory, and vice versa.
    #[test]
    fn targets_match_the_binaries() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR"));
        let manifest = std::fs::read_to_string(root.join("Cargo.toml")).unwrap();
        for (name, _) in TARGETS {
            assert!(
                manifest.contains(&format!("path = \"fuzz_targets/{name}.rs\"")),
                "{name} has no [[bin]]"
            );
            assert!(root
                .join("fuzz_targets")
                .join(format!("{name}.rs"))
                .is_file());
        }
        let bins = manifest.matches("[[bin]]").count();
        assert_eq!(bins, TARGETS.len(), "a [[bin]] without an entry in TARGETS");
    }
}
