//! `ctap-enroll`, the built binary, against ctap-softtoken: every subcommand's happy path, the
//! refusals (same key twice, tampered state, cloned key, bad files), concurrency and crashes.
//!
//! Runs as root (CI does): records must be root-owned, and one case chowns a state file away.
#![allow(clippy::unwrap_used)]

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, SystemTime};

use ctap_core::store::credential::{b64_encode, StateFile};
use ctap_e2e::{bin, SoftToken, TempDir};

/// A temporary installation: config, records and state directories, and a virtual key.
struct Env {
    dir: TempDir,
    key: Option<SoftToken>,
    key_state: PathBuf,
    config: PathBuf,
}

struct Run {
    code: i32,
    stdout: String,
    stderr: String,
}

impl Run {
    fn from(o: Output) -> Self {
        Run {
            code: o.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&o.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&o.stderr).into_owned(),
        }
    }
    fn all(&self) -> String {
        format!("{}{}", self.stdout, self.stderr)
    }
    #[track_caller]
    fn ok(self) -> Self {
        assert_eq!(
            self.code, 0,
            "stdout:\n{}\nstderr:\n{}",
            self.stdout, self.stderr
        );
        self
    }
    #[track_caller]
    fn code(self, code: i32) -> Self {
        assert_eq!(
            self.code, code,
            "stdout:\n{}\nstderr:\n{}",
            self.stdout, self.stderr
        );
        self
    }
}

impl Env {
    fn new(tag: &str, config_extra: &str, key_args: &[&str]) -> Self {
        let dir = TempDir::new(tag);
        let key_state = dir.path().join("key.state");
        let key = SoftToken::start(dir.path(), &key_state, key_args);
        let config = dir.path().join("pam_ctap.toml");
        let env = Env {
            key: Some(key),
            key_state,
            config,
            dir,
        };
        env.write_config(config_extra);
        env
    }

    fn write_config(&self, extra: &str) {
        let text = format!(
            "records_dir = \"{}\"\nstate_dir = \"{}\"\ntimeout = 20\n{extra}",
            self.records_dir().display(),
            self.state_dir().display()
        );
        std::fs::write(&self.config, text).unwrap();
        std::fs::set_permissions(&self.config, std::fs::Permissions::from_mode(0o644)).unwrap();
    }

    fn records_dir(&self) -> PathBuf {
        self.dir.path().join("users")
    }
    fn state_dir(&self) -> PathBuf {
        self.dir.path().join("state")
    }
    fn records(&self, user: &str) -> PathBuf {
        self.records_dir().join(format!("{user}.toml"))
    }
    fn state(&self, user: &str) -> PathBuf {
        self.state_dir().join(format!("{user}.toml"))
    }

    fn uri(&self) -> String {
        self.key.as_ref().unwrap().uri()
    }

    fn command(&self, args: &[&str]) -> Command {
        let mut c = Command::new(bin("ctap-enroll"));
        c.arg("--config")
            .arg(&self.config)
            .arg("--device")
            .arg(self.uri())
            .args(args)
            .env_remove("SUDO_USER")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        c
    }

    fn run(&self, args: &[&str]) -> Run {
        Run::from(self.command(args).output().unwrap())
    }

    /// Run with `input` on standard input (for --pin-stdin).
    fn run_with_input(&self, args: &[&str], input: &str) -> Run {
        use std::io::Write;
        let mut child = self.command(args).stdin(Stdio::piped()).spawn().unwrap();
        child
            .stdin
            .take()
            .unwrap()
            .write_all(input.as_bytes())
            .unwrap();
        Run::from(child.wait_with_output().unwrap())
    }

    /// Replace the key with one serving `state` (the genuine key's file, or a copy of it).
    fn serve(&mut self, state: &Path) {
        if let Some(k) = self.key.take() {
            k.stop();
        }
        self.key = Some(SoftToken::start(self.dir.path(), state, &[]));
    }

    fn stop_key(&mut self) {
        if let Some(k) = self.key.take() {
            k.stop();
        }
    }

    fn read_state(&self, user: &str) -> StateFile {
        toml::from_str(&std::fs::read_to_string(self.state(user)).unwrap()).unwrap()
    }

    fn enroll(&self, user: &str, extra: &[&str]) -> Run {
        let mut args = vec!["enroll", "--user", user, "--rp-id", "pam://test"];
        args.extend_from_slice(extra);
        self.run(&args)
    }
}

/// The counter a `PASS: … (counter A -> B, …)` line reports.
fn passed_counter(stdout: &str) -> u32 {
    let after = stdout
        .split("-> ")
        .nth(1)
        .unwrap_or_else(|| panic!("{stdout}"));
    after
        .split(|c: char| !c.is_ascii_digit())
        .next()
        .unwrap()
        .parse()
        .unwrap()
}

#[test]
fn help_version_and_usage_errors() {
    let run = |args: &[&str]| {
        Run::from(
            Command::new(bin("ctap-enroll"))
                .args(args)
                .stdin(Stdio::null())
                .output()
                .unwrap(),
        )
    };
    let top = run(&["--help"]).ok();
    assert!(top.stdout.contains("Exit status:"), "{}", top.stdout);
    for code in [
        "0  success",
        "1  the operation failed",
        "2  usage",
        "3  no security key",
    ] {
        assert!(top.stdout.contains(code), "{code}: {}", top.stdout);
    }
    for sub in [
        "devices",
        "enroll",
        "list",
        "remove",
        "rename",
        "unsuspend",
        "test",
        "import-pam-u2f",
        "pin",
        "check-config",
    ] {
        let h = run(&[sub, "--help"]).ok();
        assert!(
            h.stdout.contains("Usage: ctap-enroll"),
            "{sub}: {}",
            h.stdout
        );
    }
    run(&["pin", "set", "--help"]).ok();
    run(&["pin", "change", "--help"]).ok();
    let v = run(&["--version"]).ok();
    assert!(v.stdout.starts_with("ctap-enroll "), "{}", v.stdout);
    run(&["enroll", "--uv", "sometimes"]).code(2);
    run(&["list", "--device", "usb:/x"]).code(2);
    run(&["frobnicate"]).code(2);
    // A config that does not exist gives the defaults; one that names no key finds none.
    let r = run(&["--device", "unix:/nonexistent/key.sock", "devices"]).code(3);
    assert!(r.stderr.starts_with("ctap-enroll: "), "{}", r.stderr);
}

#[test]
fn devices_describes_the_virtual_key() {
    let env = Env::new("devices", "", &[]);
    let r = env.run(&["devices"]).ok();
    assert!(r.stdout.starts_with(&env.uri()), "{}", r.stdout);
    for needle in ["aaguid", "FIDO_2_", "hmac-secret", "not set", "es256"] {
        assert!(r.stdout.contains(needle), "{needle}: {}", r.stdout);
    }
    let j = env.run(&["devices", "--json"]).ok();
    assert!(j.stdout.trim_start().starts_with('['), "{}", j.stdout);
    assert!(j.stdout.contains("\"pin_set\": false"), "{}", j.stdout);
    assert!(j.stdout.contains(&format!("\"uri\": \"{}\"", env.uri())));
}

#[test]
fn enroll_list_test_rename_remove() {
    let env = Env::new("happy", "", &[]);
    let e = env.enroll("daemon", &[]).ok();
    assert!(
        e.stdout.contains("Enrolled \"key-1\" for daemon."),
        "{}",
        e.stdout
    );
    assert!(e.stdout.contains("pam://test") && e.stdout.contains("hmac-secret"));
    assert!(e.stderr.contains("Touch your security key"), "{}", e.stderr);
    assert_eq!(
        std::fs::metadata(env.records("daemon")).unwrap().mode() & 0o777,
        0o644
    );
    assert_eq!(
        std::fs::metadata(env.state("daemon")).unwrap().mode() & 0o777,
        0o600
    );

    let l = env.run(&["list", "--user", "daemon"]).ok();
    assert!(l.stdout.starts_with("NAME"), "{}", l.stdout);
    assert!(
        l.stdout.contains("key-1") && l.stdout.contains("never"),
        "{}",
        l.stdout
    );

    let t = env.run(&["test", "--user", "daemon"]).ok();
    assert!(
        t.stdout.starts_with("PASS: daemon verified with \"key-1\""),
        "{}",
        t.stdout
    );
    let counter = passed_counter(&t.stdout);
    assert_eq!(env.read_state("daemon").credentials[0].sign_count, counter);

    env.run(&["rename", "key-1", "blue", "--user", "daemon"])
        .ok();
    let j = env.run(&["list", "--user", "daemon", "--json"]).ok();
    assert!(j.stdout.contains("\"name\": \"blue\""), "{}", j.stdout);
    assert!(
        j.stdout.contains(&format!("\"sign_count\": {counter}")),
        "{}",
        j.stdout
    );
    assert!(j.stdout.contains("\"suspended\": false"), "{}", j.stdout);
    env.run(&["test", "--user", "daemon"]).ok();

    // Renaming onto an existing name, or an unknown credential, is refused.
    env.enroll("daemon", &["--name", "red"]).code(1); // same key: refused, see below
    let r = env
        .run(&["rename", "nosuch", "x", "--user", "daemon"])
        .code(1);
    assert!(
        r.stderr.contains("no credential named \"nosuch\""),
        "{}",
        r.stderr
    );

    let rm = env.run(&["remove", "blue", "--user", "daemon"]).ok();
    assert!(rm.stdout.contains("Removed \"blue\""), "{}", rm.stdout);
    assert!(env.read_state("daemon").credentials.is_empty());
    let l = env.run(&["list", "--user", "daemon"]).ok();
    assert!(
        l.stdout.contains("No credentials enrolled for daemon"),
        "{}",
        l.stdout
    );
    let t = env.run(&["test", "--user", "daemon"]).code(1);
    assert!(t.stdout.starts_with("FAIL ("), "{}", t.stdout);
    // Without --user, sudo's $SUDO_USER is the user.
    let o = env
        .command(&["list"])
        .env("SUDO_USER", "uucp")
        .output()
        .unwrap();
    let l = Run::from(o).ok();
    assert!(
        l.stdout.contains("No credentials enrolled for uucp"),
        "{}",
        l.stdout
    );
    // A name the password database does not know is a denial of its own, never "no records".
    let t = env.run(&["test", "--user", "nobody-here"]).code(1);
    assert!(t.stdout.starts_with("FAIL (unknown_user)"), "{}", t.stdout);
    let t = env.run(&["test", "--user", "nobody"]).code(1);
    assert!(t.stdout.starts_with("FAIL (no_records)"), "{}", t.stdout);
}

#[test]
fn enrolling_the_same_key_twice_is_refused() {
    let env = Env::new("twice", "", &[]);
    env.enroll("bin", &["--name", "first"]).ok();
    let before = std::fs::read(env.records("bin")).unwrap();
    let r = env.enroll("bin", &["--name", "second"]).code(1);
    assert!(
        r.stderr
            .contains("\nctap-enroll: this security key is already enrolled for bin (RP pam://test): nothing to do"),
        "{}",
        r.stderr
    );
    assert_eq!(std::fs::read(env.records("bin")).unwrap(), before);
    // The same name twice is refused before the key is asked.
    let r = env.enroll("bin", &["--name", "first"]).code(1);
    assert!(
        r.stderr.contains("already has a credential named"),
        "{}",
        r.stderr
    );
}

/// `ctap-enroll enroll` checks the confirming assertion with the shared verifier: a key whose
/// signature does not verify with the public key it just gave enrolls nothing.
#[test]
fn enroll_refuses_a_key_whose_confirmation_does_not_verify() {
    let env = Env::new("tampered", "", &["--fault", "corrupt-signature"]);
    let r = env.enroll("bin", &["--name", "bad"]).code(1);
    println!("{}", r.stderr);
    assert!(
        r.stderr.contains(
            "ctap-enroll: the key's confirming assertion was rejected (signature does not verify with the enrolled public key); nothing was enrolled"
        ),
        "{}",
        r.stderr
    );
    assert!(!env.records("bin").exists());
    assert!(!env.state("bin").exists() || env.read_state("bin").credentials.is_empty());
}

#[test]
fn pin_set_change_and_uv_required_enrollment() {
    let env = Env::new("pin", "", &[]);
    env.run_with_input(&["--pin-stdin", "pin", "set"], "123456\n654321\n")
        .code(1);
    env.run_with_input(&["--pin-stdin", "pin", "set"], "123456\n123456\n")
        .ok();
    let d = env.run(&["devices"]).ok();
    assert!(d.stdout.contains("set, 8 retries left"), "{}", d.stdout);
    let again = env
        .run_with_input(&["--pin-stdin", "pin", "set"], "1111\n1111\n")
        .code(1);
    assert!(again.stderr.contains("pin change"), "{}", again.stderr);

    let e = env.run_with_input(
        &[
            "--pin-stdin",
            "enroll",
            "--user",
            "sys",
            "--rp-id",
            "pam://test",
            "--uv",
            "required",
        ],
        "123456\n",
    );
    let e = e.ok();
    assert!(
        e.stdout.contains("user verification  required"),
        "{}",
        e.stdout
    );
    let t = env
        .run_with_input(&["--pin-stdin", "test", "--user", "sys"], "123456\n")
        .ok();
    assert!(t.stdout.contains("user verified: yes"), "{}", t.stdout);
    let t = env
        .run_with_input(&["--pin-stdin", "test", "--user", "sys"], "999999\n")
        .code(1);
    assert!(t.stdout.starts_with("FAIL (pin_invalid)"), "{}", t.stdout);

    env.run_with_input(
        &["--pin-stdin", "pin", "change"],
        "123456\n24682468\n24682468\n",
    )
    .ok();
    env.run_with_input(&["--pin-stdin", "test", "--user", "sys"], "24682468\n")
        .ok();
    let w = env
        .run_with_input(
            &["--pin-stdin", "pin", "change"],
            "000000\n11112222\n11112222\n",
        )
        .code(1);
    assert!(w.stderr.contains("wrong current PIN"), "{}", w.stderr);
}

#[test]
fn test_fails_after_the_hmac_check_is_altered() {
    let env = Env::new("hmac", "", &[]);
    env.enroll("sync", &[]).ok();
    env.run(&["test", "--user", "sync"]).ok();
    let path = env.state("sync");
    let mut state: toml::Value = toml::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    state["credential"][0]["hmac_check"] = toml::Value::String(b64_encode(&[0u8; 32]));
    std::fs::write(&path, toml::to_string(&state).unwrap()).unwrap();
    let t = env.run(&["test", "--user", "sync"]).code(1);
    assert!(t.stdout.starts_with("FAIL (hmac_mismatch)"), "{}", t.stdout);
}

/// The virtual key (fido-authenticator) keeps one global counter and adds a random 1..=256 at
/// every assertion, and a login makes two (the silent probe, then the real one). So a clone
/// copied at counter `e` answers its `k`-th login with at most `e + 512 * k`: the genuine key is
/// used until the stored counter is past that, and the regression is certain, not likely.
fn advance_past(env: &Env, user: &str, bound: u32) {
    for _ in 0..100 {
        if env.read_state(user).credentials[0].sign_count > bound {
            return;
        }
        env.run(&["test", "--user", user]).ok();
    }
    panic!("the counter never passed {bound}");
}

#[test]
fn cloned_key_fails_and_is_suspended_until_unsuspend() {
    let mut env = Env::new("clone", "clone_action = \"suspend\"\n", &[]);
    env.enroll("games", &[]).ok();
    let enrolled = env.read_state("games").credentials[0].sign_count;
    env.stop_key();
    let clone = env.dir.path().join("clone.state");
    std::fs::copy(&env.key_state, &clone).unwrap();

    let genuine = env.key_state.clone();
    env.serve(&genuine);
    env.run(&["test", "--user", "games"]).ok();
    advance_past(&env, "games", enrolled + 512);

    env.serve(&clone);
    let t = env.run(&["test", "--user", "games"]).code(1);
    assert!(
        t.stdout.starts_with("FAIL (counter_regression)"),
        "{}",
        t.stdout
    );
    assert!(t.stdout.contains("now suspended"), "{}", t.stdout);
    let l = env.run(&["list", "--user", "games"]).ok();
    assert!(
        l.stdout.contains("SUSPENDED: counter regression"),
        "{}",
        l.stdout
    );
    let j = env.run(&["list", "--user", "games", "--json"]).ok();
    assert!(j.stdout.contains("\"suspended\": true"), "{}", j.stdout);
    let c = env.run(&["check-config"]).ok();
    assert!(c.stdout.contains("is suspended"), "{}", c.stdout);

    env.serve(&genuine);
    let t = env.run(&["test", "--user", "games"]).code(1);
    assert!(t.stdout.starts_with("FAIL (suspended)"), "{}", t.stdout);
    assert!(!t.stdout.contains("now suspended"), "{}", t.stdout);
    let u = env.run(&["unsuspend", "key-1", "--user", "games"]).ok();
    assert!(u.stdout.contains("Unsuspended \"key-1\""), "{}", u.stdout);
    env.run(&["test", "--user", "games"]).ok();
    let u = env.run(&["unsuspend", "key-1", "--user", "games"]).ok();
    assert!(u.stdout.contains("not suspended"), "{}", u.stdout);
    // The clone stays refused: its counter is still behind the genuine key's.
    advance_past(&env, "games", enrolled + 2 * 512);
    env.serve(&clone);
    let t = env.run(&["test", "--user", "games"]).code(1);
    assert!(
        t.stdout.starts_with("FAIL (counter_regression)"),
        "{}",
        t.stdout
    );
}

/// Bytes (or link target), mode, owner and modification time of a file, if it exists.
type FileSnapshot = Option<(Vec<u8>, u32, u32, SystemTime)>;

/// Each file's snapshot, to prove nothing was written.
fn snapshot(paths: &[PathBuf]) -> Vec<FileSnapshot> {
    paths
        .iter()
        .map(|p| {
            let m = std::fs::symlink_metadata(p).ok()?;
            let bytes = if m.file_type().is_symlink() {
                std::fs::read_link(p)
                    .unwrap()
                    .into_os_string()
                    .into_encoded_bytes()
            } else {
                std::fs::read(p).unwrap()
            };
            Some((bytes, m.mode(), m.uid(), m.modified().unwrap()))
        })
        .collect()
}

#[test]
fn bad_files_are_refused_naming_the_file_and_nothing_changes() {
    let env = Env::new("badfiles", "", &[]);
    env.enroll("man", &[]).ok();
    let records = env.records("man");
    let state = env.state("man");
    let good_records = std::fs::read_to_string(&records).unwrap();
    let good_state = std::fs::read_to_string(&state).unwrap();
    let elsewhere = env.dir.path().join("elsewhere.toml");

    type Corrupt = Box<dyn Fn()>;
    let write_records = |text: String| {
        let r = records.clone();
        Box::new(move || std::fs::write(&r, &text).unwrap()) as Corrupt
    };
    let cases: Vec<(&str, Corrupt, &Path, Option<usize>)> = vec![
        (
            "malformed TOML",
            write_records(format!("{good_records}\n[[credential]\nname = \n")),
            &records,
            Some(good_records.lines().count() + 2),
        ),
        (
            "unknown field",
            write_records(good_records.replacen("name = ", "colour = \"blue\"\nname = ", 1)),
            &records,
            // After `uid = …`, a blank line and `[[credential]]`.
            Some(4),
        ),
        (
            "wrong type",
            write_records(good_records.replace("hmac_secret = true", "hmac_secret = \"yes\"")),
            &records,
            Some(
                good_records
                    .lines()
                    .position(|l| l.starts_with("hmac_secret"))
                    .unwrap()
                    + 1,
            ),
        ),
        (
            "symlinked records file",
            Box::new({
                let (r, e, t) = (records.clone(), elsewhere.clone(), good_records.clone());
                move || {
                    std::fs::write(&e, &t).unwrap();
                    std::fs::remove_file(&r).unwrap();
                    std::os::unix::fs::symlink(&e, &r).unwrap();
                }
            }),
            &records,
            None,
        ),
        (
            "world-writable records file",
            Box::new({
                let r = records.clone();
                move || {
                    std::fs::set_permissions(&r, std::fs::Permissions::from_mode(0o666)).unwrap()
                }
            }),
            &records,
            None,
        ),
        (
            "state file owned by nobody",
            Box::new({
                let s = state.clone();
                move || std::os::unix::fs::chown(&s, Some(65534), Some(65534)).unwrap()
            }),
            &state,
            None,
        ),
        (
            "state file with an unknown field",
            Box::new({
                let (s, t) = (state.clone(), good_state.clone());
                move || std::fs::write(&s, format!("{t}surprise = 1\n")).unwrap()
            }),
            &state,
            Some(good_state.lines().count() + 1),
        ),
    ];

    for (what, corrupt, named, line) in &cases {
        // Start from the good files each time.
        let _ = std::fs::remove_file(&records);
        std::fs::write(&records, &good_records).unwrap();
        std::fs::set_permissions(&records, std::fs::Permissions::from_mode(0o644)).unwrap();
        std::fs::write(&state, &good_state).unwrap();
        std::os::unix::fs::chown(&state, Some(0), Some(0)).unwrap();
        std::fs::set_permissions(&state, std::fs::Permissions::from_mode(0o600)).unwrap();
        corrupt();
        let watched = [records.clone(), state.clone(), elsewhere.clone()];
        let before = snapshot(&watched);
        std::thread::sleep(Duration::from_millis(20));

        let expect_named = |r: &Run, cmd: &str| {
            let all = r.all();
            let needle = match line {
                Some(l) => format!("{}:{l}:", named.display()),
                None => format!("{}:", named.display()),
            };
            assert!(
                all.contains(&needle),
                "{what}: {cmd}: wanted {needle:?} in:\n{all}"
            );
        };
        for args in [
            vec!["list", "--user", "man"],
            vec!["remove", "key-1", "--user", "man"],
            vec!["rename", "key-1", "other", "--user", "man"],
            vec!["unsuspend", "key-1", "--user", "man"],
            vec!["enroll", "--user", "man", "--name", "again"],
        ] {
            let r = env.run(&args).code(2);
            assert!(
                r.stderr.starts_with("ctap-enroll: "),
                "{what}: {}",
                r.stderr
            );
            assert!(
                r.stderr.trim_end().ends_with("; nothing was changed"),
                "{what}: {}",
                r.stderr
            );
            expect_named(&r, args[0]);
        }
        let t = env.run(&["test", "--user", "man"]).code(1);
        assert!(
            t.stdout.starts_with("FAIL (config_error)"),
            "{what}: {}",
            t.stdout
        );
        expect_named(&t, "test");
        let c = env.run(&["check-config"]).code(1);
        expect_named(&c, "check-config");

        assert_eq!(snapshot(&watched), before, "{what}: a file was modified");
    }
}

#[test]
fn sixteen_concurrent_tests_leave_the_highest_counter() {
    let env = Env::new("concurrent", "", &[]);
    env.enroll("lp", &[]).ok();
    let children: Vec<_> = (0..16)
        .map(|_| env.command(&["test", "--user", "lp"]).spawn().unwrap())
        .collect();
    let mut counters = Vec::new();
    for c in children {
        let r = Run::from(c.wait_with_output().unwrap()).ok();
        counters.push(passed_counter(&r.stdout));
    }
    counters.sort();
    counters.dedup();
    assert_eq!(
        counters.len(),
        16,
        "each login saw its own counter: {counters:?}"
    );
    let state = env.read_state("lp");
    assert_eq!(state.credentials[0].sign_count, *counters.last().unwrap());
}

#[test]
fn sigkill_mid_update_leaves_the_old_or_the_new_state() {
    let env = Env::new("sigkill", "", &[]);
    env.enroll("mail", &[]).ok();
    let mut last = env.read_state("mail").credentials[0].sign_count;
    let mut killed = 0;
    for i in 0..50u64 {
        let mut child = env.command(&["test", "--user", "mail"]).spawn().unwrap();
        // Spread the kills over the whole run: config, lock, key, write.
        let delay = (i * 7 + rand::random::<u64>() % 11) % 160;
        std::thread::sleep(Duration::from_millis(delay));
        if child.try_wait().unwrap().is_none() {
            child.kill().unwrap();
            killed += 1;
        }
        child.wait().unwrap();
        let text = std::fs::read_to_string(env.state("mail")).unwrap();
        let state: StateFile = toml::from_str(&text)
            .unwrap_or_else(|e| panic!("iteration {i}: broken state file: {e}\n{text}"));
        let now = state.credentials[0].sign_count;
        assert!(
            now >= last,
            "iteration {i}: counter went back from {last} to {now}"
        );
        assert!(state.credentials[0].suspension.is_none());
        last = now;
    }
    assert!(killed > 10, "only {killed} of 50 runs were killed mid-way");
    // Whatever the kills left (temporary files, a key counter ahead of the state), login works.
    let t = env.run(&["test", "--user", "mail"]).ok();
    assert!(passed_counter(&t.stdout) > last);
    let c = env.run(&["check-config"]).ok();
    assert!(c.stdout.contains("OK: no problems"), "{}", c.stdout);
}

#[test]
fn check_config_is_clean_then_names_each_problem() {
    let env = Env::new("check", "", &[]);
    env.enroll("news", &[]).ok();
    let c = env.run(&["check-config"]).ok();
    assert!(c.stdout.contains("OK: no problems"), "{}", c.stdout);

    std::fs::set_permissions(env.state("news"), std::fs::Permissions::from_mode(0o644)).unwrap();
    let c = env.run(&["check-config"]).code(1);
    let want = format!("{}: state file has mode 0644", env.state("news").display());
    assert!(c.stdout.contains(&want), "{}", c.stdout);
    assert!(c.stdout.contains("chmod 600"), "{}", c.stdout);
    std::fs::set_permissions(env.state("news"), std::fs::Permissions::from_mode(0o600)).unwrap();

    env.write_config("rp_id = \"pam://elsewhere\"\n");
    let c = env.run(&["check-config"]).code(1);
    assert!(c.stdout.contains("cannot log in"), "{}", c.stdout);

    env.write_config("bogus = 1\n");
    let c = env.run(&["check-config"]).code(1);
    let want = format!("{}:4: unknown field `bogus`", env.config.display());
    assert!(c.stdout.contains(&want), "{}", c.stdout);
    let l = env.run(&["list", "--user", "news"]).code(2);
    assert!(l.stderr.contains(&want), "{}", l.stderr);
}

/// Standard base64 with padding, as pamu2fcfg prints.
fn std_b64(bytes: &[u8]) -> String {
    let mut s = b64_encode(bytes).replace('-', "+").replace('_', "/");
    while s.len() % 4 != 0 {
        s.push('=');
    }
    s
}

/// A credential made on the key the way pamu2fcfg makes one (no hmac-secret, no credProtect).
fn pamu2fcfg(
    key: &SoftToken,
    rp: &str,
    user: &str,
    alg: ctap_core::transport::ctap2::cose::Algorithm,
) -> (Vec<u8>, ctap_core::transport::ctap2::cose::CoseKey) {
    let mut c = key.connect();
    let req = ctap_core::transport::ctap2::MakeCredentialRequest {
        client_data_hash: rand::random(),
        rp_id: rp.into(),
        rp_name: None,
        user_id: rand::random::<[u8; 32]>().to_vec(),
        user_name: user.into(),
        user_display_name: None,
        algorithms: vec![alg],
        exclude_list: vec![],
        resident_key: false,
        user_verification: false,
        hmac_secret: false,
        cred_protect: None,
    };
    let made = c
        .make_credential(&req, None, &mut |_| {
            ctap_core::transport::ctaphid::WaitDecision::Continue
        })
        .unwrap();
    let cred = made.credential();
    (cred.credential_id.clone(), cred.public_key.clone())
}

#[test]
fn import_pam_u2f_lines_then_test_passes() {
    use ctap_core::transport::ctap2::cose::{Algorithm, CoseKey};
    let env = Env::new("pamu2f", "", &[]);
    let key = env.key.as_ref().unwrap();
    let (a_id, a_key) = pamu2fcfg(key, "pam://test", "daemon", Algorithm::Es256);
    let (b_id, b_key) = pamu2fcfg(key, "pam://test", "bin", Algorithm::EdDsa);
    let (c_id, c_key) = pamu2fcfg(key, "pam://legacy", "sys", Algorithm::Es256);
    let (
        CoseKey::Es256 { x: ax, y: ay, .. },
        CoseKey::EdDsa { x: bx },
        CoseKey::Es256 { x: cx, y: cy, .. },
    ) = (a_key, b_key, c_key)
    else {
        panic!("unexpected key types");
    };
    let a_pk = std_b64(&[ax.as_slice(), &ay].concat());
    // Old format: web-safe base64 key handle, hex of the uncompressed point.
    let c_hex: String = [&[4u8][..], &cx, &cy]
        .concat()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    let authfile = env.dir.path().join("u2f_mappings");
    let text = format!(
        "daemon:{},{a_pk},es256,+presence\n\
         bin:{},{},eddsa,+presence\n\
         sys:{},{c_hex}\n\
         sync:*,{a_pk},es256,+presence\n\
         games:{},{a_pk},rs256,+presence\n\
         man:not*base64,{a_pk},es256,+presence\n\
         lp\n",
        std_b64(&a_id),
        std_b64(&b_id),
        std_b64(&bx),
        b64_encode(&c_id),
        std_b64(&[1, 2, 3]),
    );
    std::fs::write(&authfile, text).unwrap();
    let file = authfile.to_str().unwrap();
    let r = env
        .run(&[
            "import-pam-u2f",
            file,
            "--rp-id",
            "pam://test",
            "--appid",
            "pam://legacy",
        ])
        .code(1);
    for (line, what) in [
        (
            1,
            "imported credential 1 of daemon as \"pam-u2f-1\" (es256, RP ID pam://test",
        ),
        (2, "imported credential 1 of bin as \"pam-u2f-1\" (eddsa"),
        (
            3,
            "imported credential 1 of sys as \"pam-u2f-1\" (es256, RP ID pam://legacy",
        ),
        (4, "credential 1 of sync not imported: resident credential"),
        (
            5,
            "credential 1 of games not imported: rs256 keys are not supported",
        ),
        (
            6,
            "credential 1 of man not imported: key handle is not valid base64",
        ),
        (7, "line of lp not imported: no credentials"),
    ] {
        let want = format!("{file}:{line}: {what}");
        assert!(
            r.stdout.contains(&want),
            "wanted {want:?} in:\n{}",
            r.stdout
        );
    }
    assert!(
        r.stdout.contains("3 imported, 4 not imported."),
        "{}",
        r.stdout
    );

    for user in ["daemon", "bin", "sys"] {
        let t = env.run(&["test", "--user", user]).ok();
        assert!(
            t.stdout.contains("verified with \"pam-u2f-1\""),
            "{user}: {}",
            t.stdout
        );
        let s = env.read_state(user);
        assert!(s.credentials[0].hmac.is_none());
    }
    let l = env.run(&["list", "--user", "daemon", "--json"]).ok();
    assert!(l.stdout.contains("\"hmac_secret\": false"), "{}", l.stdout);

    // Importing again adds nothing; --user limits the import to one user.
    let r = env
        .run(&[
            "import-pam-u2f",
            file,
            "--user",
            "daemon",
            "--rp-id",
            "pam://test",
        ])
        .code(1);
    assert!(
        r.stdout
            .contains("already enrolled for daemon as \"pam-u2f-1\""),
        "{}",
        r.stdout
    );
    assert!(
        r.stdout
            .contains("belongs to user bin, and --user daemon was given"),
        "{}",
        r.stdout
    );
    assert!(r.stdout.contains("0 imported"), "{}", r.stdout);
    // A clean file exits 0.
    let only_alice = env.dir.path().join("alice_keys");
    std::fs::write(
        &only_alice,
        format!("uucp:{},{a_pk},es256,+presence+pin\n", std_b64(&a_id)),
    )
    .unwrap();
    let r = env
        .run(&[
            "import-pam-u2f",
            only_alice.to_str().unwrap(),
            "--rp-id",
            "pam://test",
        ])
        .ok();
    assert!(
        r.stdout.contains("user verification required"),
        "{}",
        r.stdout
    );
}

#[test]
fn pin_prompt_reads_the_terminal_with_echo_off() {
    use std::io::{Read, Write};
    use std::sync::{Arc, Mutex};
    // util-linux's script(1) gives the command a pseudo-terminal (Debian: bsdutils, Essential).
    if !Path::new("/usr/bin/script").exists() {
        eprintln!("skipped: /usr/bin/script is not installed");
        return;
    }
    let env = Env::new("tty", "", &["--pin", "135790"]);
    env.run_with_input(
        &[
            "--pin-stdin",
            "enroll",
            "--user",
            "proxy",
            "--uv",
            "required",
        ],
        "135790\n",
    )
    .ok();
    let inner = format!(
        "{} --config {} --device {} test --user proxy",
        bin("ctap-enroll").display(),
        env.config.display(),
        env.uri()
    );
    let mut child = Command::new("/usr/bin/script")
        .args(["-qec", &inner, "/dev/null"])
        .env_remove("SUDO_USER")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let mut out = child.stdout.take().unwrap();
    let reader = {
        let seen = seen.clone();
        std::thread::spawn(move || {
            let mut buf = [0u8; 256];
            while let Ok(n) = out.read(&mut buf) {
                if n == 0 {
                    break;
                }
                seen.lock().unwrap().extend_from_slice(&buf[..n]);
            }
        })
    };
    // Type the PIN only once the prompt is up (echo is off by then), as a person would.
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while !String::from_utf8_lossy(&seen.lock().unwrap()).contains("Security key PIN: ") {
        assert!(std::time::Instant::now() < deadline, "no PIN prompt");
        std::thread::sleep(Duration::from_millis(20));
    }
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(b"135790\n").unwrap();
    let status = child.wait().unwrap();
    drop(stdin);
    reader.join().unwrap();
    let text = String::from_utf8_lossy(&seen.lock().unwrap()).into_owned();
    assert!(status.success(), "{text}");
    assert!(text.contains("PASS: proxy verified"), "{text}");
    assert!(text.contains("user verified: yes"), "{text}");
    assert!(!text.contains("135790"), "the PIN was echoed: {text}");
}

#[test]
fn stale_temp_files_go_with_the_next_write_and_are_reported_until_then() {
    let env = Env::new("staletmp", "", &[]);
    env.enroll("daemon", &[]).ok();
    env.enroll("bin", &[]).ok();
    // What writes killed between creating their temp file and the rename leave behind.
    let stale = |dir: PathBuf, user: &str| -> Vec<PathBuf> {
        (0..3)
            .map(|i| {
                let p = dir.join(format!(
                    ".{user}.toml.tmp.{}.{:08x}",
                    90000 + i,
                    0xdead_0000u32 + i
                ));
                std::fs::write(&p, "partial").unwrap();
                p
            })
            .collect()
    };
    let daemon_records = stale(env.records_dir(), "daemon");
    let daemon_state = stale(env.state_dir(), "daemon");
    let bin_records = stale(env.records_dir(), "bin");
    let c = env.run(&["check-config"]).ok();
    assert_eq!(
        c.stdout.matches("interrupted write").count(),
        9,
        "{}",
        c.stdout
    );

    // A records write for daemon (under daemon's lock) removes daemon's records leftovers only.
    env.run(&["rename", "key-1", "blue", "--user", "daemon"])
        .ok();
    assert!(daemon_records.iter().all(|p| !p.exists()));
    assert!(daemon_state.iter().chain(&bin_records).all(|p| p.exists()));
    // A state write (a login) removes daemon's state leftovers.
    env.run(&["test", "--user", "daemon"]).ok();
    assert!(daemon_state.iter().all(|p| !p.exists()));
    // bin's remain, and check-config still names each.
    let c = env.run(&["check-config"]).ok();
    assert_eq!(
        c.stdout.matches("interrupted write").count(),
        3,
        "{}",
        c.stdout
    );
    for p in &bin_records {
        assert!(c.stdout.contains(&p.display().to_string()), "{}", c.stdout);
    }
}

/// Issue 9 item 6: pam-u2f used only the authenticating user's own line of a home-directory
/// authfile, so a file not owned by root may only import its owner's keys.
#[test]
fn import_of_a_user_owned_authfile_grants_only_its_owner() {
    use ctap_core::transport::ctap2::cose::{Algorithm, CoseKey};
    use std::os::unix::fs::chown;
    let env = Env::new("pamu2f-owner", "", &[]);
    let key = env.key.as_ref().unwrap();
    let mut lines = String::new();
    for user in ["daemon", "bin", "no-such-user-ctap"] {
        let (id, pk) = pamu2fcfg(key, "pam://test", user, Algorithm::Es256);
        let CoseKey::Es256 { x, y, .. } = pk else {
            panic!("es256 expected")
        };
        lines.push_str(&format!(
            "{user}:{},{},es256,+presence\n",
            std_b64(&id),
            std_b64(&[x.as_slice(), &y].concat())
        ));
    }
    // daemon's own authfile (uid 1), naming bin's key too.
    let authfile = env.dir.path().join("u2f_keys");
    std::fs::write(&authfile, &lines).unwrap();
    chown(&authfile, Some(1), Some(1)).unwrap();
    std::fs::set_permissions(&authfile, std::fs::Permissions::from_mode(0o644)).unwrap();
    let import = |path: &Path| {
        env.run(&[
            "import-pam-u2f",
            path.to_str().unwrap(),
            "--rp-id",
            "pam://test",
        ])
    };
    let r = import(&authfile).code(1);
    let out = &r.stdout;
    assert!(
        out.contains("owned by daemon (uid 1), not root: only daemon's keys are imported"),
        "{out}"
    );
    assert!(out.contains(":1: imported credential 1 of daemon"), "{out}");
    assert!(
        out.contains(":2: credential 1 of bin not imported: the file is owned by uid 1, not root"),
        "{out}"
    );
    assert!(out.contains("1 imported, 2 not imported."), "{out}");
    assert!(!env.records("bin").exists());
    env.run(&["test", "--user", "daemon"]).ok();

    // The trusted-open rules: no symlink, not writable by others.
    let link = env.dir.path().join("u2f_link");
    std::os::unix::fs::symlink(&authfile, &link).unwrap();
    let r = import(&link).code(2);
    assert!(r.stderr.contains("symbolic link"), "{}", r.stderr);
    std::fs::set_permissions(&authfile, std::fs::Permissions::from_mode(0o664)).unwrap();
    let r = import(&authfile).code(2);
    assert!(
        r.stderr.contains("group- or world-writable"),
        "{}",
        r.stderr
    );

    // Root's own file vouches for every user NSS knows; unknown names are listed.
    chown(&authfile, Some(0), Some(0)).unwrap();
    std::fs::set_permissions(&authfile, std::fs::Permissions::from_mode(0o644)).unwrap();
    let r = import(&authfile).code(1);
    let out = &r.stdout;
    assert!(out.contains("owned by root"), "{out}");
    assert!(out.contains(":2: imported credential 1 of bin"), "{out}");
    assert!(
        out.contains("\"no-such-user-ctap\" is not a user the password database (NSS) knows"),
        "{out}"
    );
}

/// Issue 9 item 1: records store the account's uid; older records gain it at their next write,
/// and check-config names those without it, and those written for another uid.
#[test]
fn records_carry_the_uid_and_check_config_names_those_without_it() {
    let env = Env::new("stamp", "", &[]);
    env.enroll("daemon", &[]).ok();
    let path = env.records("daemon");
    let written = std::fs::read_to_string(&path).unwrap();
    assert!(written.starts_with("uid = 1\n"), "{written}");
    let c = env.run(&["check-config"]).ok();
    assert!(
        !c.stdout.contains("store the account's uid"),
        "{}",
        c.stdout
    );

    // As an earlier release wrote it: no uid. Login still works by the name alone.
    let legacy = written.replacen("uid = 1\n", "", 1);
    std::fs::write(&path, &legacy).unwrap();
    let c = env.run(&["check-config"]).ok();
    assert!(
        c.stdout
            .contains("records of daemon do not store the account's uid (1)"),
        "{}",
        c.stdout
    );
    env.run(&["test", "--user", "daemon"]).ok();
    // The next write adds it.
    env.run(&["rename", "key-1", "key-1", "--user", "daemon"])
        .ok();
    assert!(std::fs::read_to_string(&path)
        .unwrap()
        .starts_with("uid = 1\n"));
    let c = env.run(&["check-config"]).ok();
    assert!(
        !c.stdout.contains("store the account's uid"),
        "{}",
        c.stdout
    );

    // Written for another uid (the name reused): login refuses, check-config says why.
    std::fs::write(&path, written.replacen("uid = 1\n", "uid = 4242\n", 1)).unwrap();
    let t = env.run(&["test", "--user", "daemon"]).code(1);
    assert!(t.stdout.starts_with("FAIL (uid_mismatch)"), "{}", t.stdout);
    let c = env.run(&["check-config"]).code(1);
    assert!(
        c.stdout
            .contains("written for uid 4242, but user daemon has uid 1"),
        "{}",
        c.stdout
    );
    // enroll refuses to add to them.
    let e = env.enroll("daemon", &["--name", "second"]).code(1);
    assert!(e.all().contains("written for uid 4242"), "{}", e.all());
}

#[test]
fn user_controlled_names_reach_the_terminal_escaped() {
    let env = Env::new("escape", "", &[]);
    env.enroll("daemon", &[]).ok();
    // A name with a terminal escape and a newline, as a user could write in a per-user file.
    let text = std::fs::read_to_string(env.records("daemon")).unwrap();
    assert!(text.contains("name = \"key-1\""), "{text}");
    let text = text.replace(
        "name = \"key-1\"",
        "name = \"evil\\u001b[31m\\nfake row\\u202e\"",
    );
    std::fs::write(env.records("daemon"), text).unwrap();

    for args in [
        &["list", "--user", "daemon"][..],
        &["test", "--user", "daemon"][..],
        &["check-config"][..],
        &[
            "rename",
            "--user",
            "daemon",
            "evil\u{1b}[31m\nfake row\u{202e}",
            "x\u{1b}]0;t\u{7}",
        ][..],
        &["list", "--user", "daemon"][..],
    ] {
        let r = env.run(args);
        let all = r.all();
        println!("{args:?}:\n{all}");
        assert!(!all.contains('\u{1b}'), "raw ESC from {args:?}: {all:?}");
        assert!(!all.contains('\u{7}'), "raw BEL from {args:?}: {all:?}");
        assert!(
            !all.contains('\u{202e}'),
            "raw bidi override from {args:?}: {all:?}"
        );
        assert!(
            !all.contains("\nfake row"),
            "forged line from {args:?}: {all:?}"
        );
    }
    let l = env.run(&["list", "--user", "daemon"]).ok();
    assert_eq!(
        l.stdout.lines().count(),
        2,
        "header and one row: {}",
        l.stdout
    );
    assert!(l.stdout.contains("x\\u{1b}]0;t\\u{7}"), "{}", l.stdout);
    // --json escapes as JSON does, unchanged.
    let j = env.run(&["list", "--user", "daemon", "--json"]).ok();
    assert!(j.stdout.contains("x\\u001b]0;t\\u0007"), "{}", j.stdout);
}

#[test]
fn a_hostile_key_gets_human_text_from_ctap_enroll_test() {
    // Enrolled on a sound key; the same key restarted with a fault meets `test`.
    for (fault, says) in [
        ("malformed-cbor", "CBOR that is not"),
        ("truncate-report", "incomplete report"),
        ("bad-status", "unknown status"),
    ] {
        let mut env = Env::new("hostile", "", &[]);
        env.enroll("daemon", &[]).ok();
        env.stop_key();
        env.key = Some(SoftToken::start(
            env.dir.path(),
            &env.key_state,
            &["--fault", fault],
        ));
        let r = env.run(&["test", "--user", "daemon"]).code(1);
        let all = r.all();
        println!("{fault}: {}", all.trim());
        assert!(all.contains("FAIL (device_error): "), "{fault}: {all}");
        assert!(all.contains(says), "{fault}: {all}");
        assert!(
            all.contains("re-insert the key and try again"),
            "{fault}: {all}"
        );
        for bad in [
            "{ ",
            " }",
            "Some(",
            "None",
            "Semantic(",
            "Misbehaved(",
            "ShortReport",
        ] {
            assert!(!all.contains(bad), "{fault}: Debug text {bad:?} in {all}");
        }
    }
}
