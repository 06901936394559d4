//! Link GCC's unwinder into pam_ctap.so statically instead of depending on libgcc_s.so.1.
//!
//! Why: Rust's standard library needs an unwinder for `catch_unwind` (our panic guard at every
//! PAM entry point, security rule 1), and on linux-gnu it takes libgcc_s.so.1. Most programs
//! that load PAM modules (pamtester, sudo, login) do not have it loaded, so every
//! authentication paid for opening, mapping and relocating one more library: measured side by
//! side (bench/run, no-user path) it was ~0.2 ms, a third of the module's whole cost over
//! pam_permit. `libgcc_eh.a` is the same unwinder as an archive (what `gcc -static-libgcc`
//! links); taken whole it defines every `_Unwind_*` symbol, so the linker (`--as-needed`, which
//! rustc passes) drops libgcc_s from the module's dependencies. The module exports only its
//! `pam_sm_*` symbols (rustc's version script), so this unwinder is private to the module and
//! never interposes on the host's; panics never leave the module, so two unwinders in one
//! process never see each other's frames. The unit tests of the panic guard link it the same
//! way (this script applies to every target of the package).
//!
//! Where the archive is not found (another C toolchain, another libc), nothing changes: the
//! module links libgcc_s as before.
// pam_ctap/clippy.toml forbids reading the environment: that rule is about the module at run
// time. A build script reads Cargo's variables (target, CC) at build time, which is its job.
#![allow(clippy::disallowed_methods)]

use std::path::PathBuf;
use std::process::Command;

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    let target_os = std::env::var("CARGO_CFG_TARGET_OS").unwrap_or_default();
    let target_env = std::env::var("CARGO_CFG_TARGET_ENV").unwrap_or_default();
    if target_os != "linux" || target_env != "gnu" {
        return;
    }
    // The C compiler rustc links with (`cc` unless CC says otherwise) knows where its own
    // libgcc_eh.a is; an unknown file is printed back as the bare name.
    let cc = std::env::var("CC").unwrap_or_else(|_| "cc".into());
    let found = Command::new(&cc)
        .arg("-print-file-name=libgcc_eh.a")
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| PathBuf::from(String::from_utf8_lossy(&o.stdout).trim()))
        .filter(|p| p.is_absolute() && p.is_file());
    let Some(dir) = found.as_deref().and_then(|p| p.parent()) else {
        println!(
            "cargo:warning=libgcc_eh.a not found by `{cc} -print-file-name`: pam_ctap.so will \
             depend on libgcc_s.so.1"
        );
        return;
    };
    println!("cargo:rustc-link-search=native={}", dir.display());
    println!("cargo:rustc-link-lib=static:+whole-archive,-bundle=gcc_eh");
}
