//! The records source `directory` (issue 15) against a real OpenLDAP slapd: started here in a
//! temporary directory on an ldapi socket, with a two-line schema for SSSD's `passkey`
//! attribute. Logins go through real Linux-PAM (pamtester) on two "hosts": two state
//! directories, one directory.
//!
//! Needs root, pamtester and slapd + ldap-utils (scripts/install-deps): `#[ignore]`d, and
//! failing, never passing, when run without them.
#![allow(clippy::unwrap_used)]

mod pam_common;

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use ctap_core::store::directory::{self, DirectoryConfig};
use ctap_e2e::{bin, SoftToken, TempDir};
use pam_common::{assert_contains, observing_stack, require_root, Fixture, PamResult, ServiceFile};

const SUFFIX: &str = "dc=example,dc=org";
const PEOPLE: &str = "ou=people,dc=example,dc=org";
const ADMIN: &str = "cn=admin,dc=example,dc=org";
const ADMIN_PW: &str = "secret";
const RP: &str = "example.org";

const SCHEMA: &str = "\
attributetype ( 1.3.6.1.4.1.32473.15.1.1 NAME 'passkey'
  DESC 'SSSD passkey mapping: passkey:<credential id>,<public key>'
  EQUALITY caseExactMatch SUBSTR caseExactSubstringsMatch
  SYNTAX 1.3.6.1.4.1.1466.115.121.1.15 )
objectclass ( 1.3.6.1.4.1.32473.15.2.1 NAME 'passkeyUser'
  DESC 'A user with passkey mappings' SUP top AUXILIARY MAY passkey )
";

fn require_slapd(test: &str) {
    require_root(test);
    for tool in ["/usr/sbin/slapd", "/usr/bin/ldapadd", "/usr/bin/ldapmodify"] {
        assert!(
            Path::new(tool).exists(),
            "{test}: {tool} is missing: apt-get install -y slapd ldap-utils (scripts/install-deps)"
        );
    }
}

/// A slapd of our own: mdb database, ldapi socket, anonymous read (slapd's default access).
struct Slapd {
    dir: TempDir,
    child: Option<Child>,
    socket: PathBuf,
    /// Listeners besides the ldapi socket (`-h`), e.g. `ldaps://127.0.0.1:PORT`.
    listen: Vec<String>,
}

impl Slapd {
    fn start() -> Slapd {
        Slapd::start_with("", Vec::new())
    }

    /// `global`: slapd.conf lines before the database (TLS settings); `listen`: more `-h` URIs.
    fn start_with(global: &str, listen: Vec<String>) -> Slapd {
        let dir = TempDir::new("ldap");
        let d = dir.path();
        std::fs::create_dir(d.join("db")).unwrap();
        std::fs::write(d.join("passkey.schema"), SCHEMA).unwrap();
        std::fs::write(
            d.join("slapd.conf"),
            format!(
                "include /etc/ldap/schema/core.schema\n\
                 include /etc/ldap/schema/cosine.schema\n\
                 include {schema}\n\
                 pidfile {pid}\n\
                 modulepath /usr/lib/ldap\n\
                 moduleload back_mdb\n\
                 sizelimit unlimited\n\
                 {global}\
                 database mdb\n\
                 maxsize 104857600\n\
                 suffix \"{SUFFIX}\"\n\
                 rootdn \"{ADMIN}\"\n\
                 rootpw {ADMIN_PW}\n\
                 directory {db}\n",
                schema = d.join("passkey.schema").display(),
                pid = d.join("slapd.pid").display(),
                db = d.join("db").display(),
            ),
        )
        .unwrap();
        let mut s = Slapd {
            socket: d.join("ldapi"),
            dir,
            child: None,
            listen,
        };
        s.run();
        s.add(&format!(
            "dn: {SUFFIX}\nobjectClass: dcObject\nobjectClass: organization\no: Example\ndc: example\n\n\
             dn: {PEOPLE}\nobjectClass: organizationalUnit\nou: people\n"
        ));
        s
    }

    fn run(&mut self) {
        let d = self.dir.path();
        let child = Command::new("/usr/sbin/slapd")
            .arg("-f")
            .arg(d.join("slapd.conf"))
            .arg("-h")
            .arg([vec![self.uri()], self.listen.clone()].concat().join(" "))
            // Any -d keeps slapd in the foreground, our child.
            .args(["-d", "0"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(20);
        while std::os::unix::net::UnixStream::connect(&self.socket).is_err() {
            assert!(Instant::now() < deadline, "slapd did not start");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn uri(&self) -> String {
        let path = self.socket.display().to_string().replace('/', "%2F");
        format!("ldapi://{path}")
    }

    fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = nix_kill(c.id());
            let _ = c.wait();
        }
        let _ = std::fs::remove_file(&self.socket);
    }

    fn ldap_tool(&self, tool: &str, ldif: &str) {
        use std::io::Write;
        let mut child = Command::new(tool)
            .args(["-x", "-D", ADMIN, "-w", ADMIN_PW, "-H", &self.uri()])
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        child
            .stdin
            .take()
            .unwrap()
            .write_all(ldif.as_bytes())
            .unwrap();
        let out = child.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "{tool} failed: {}\n{ldif}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    fn add(&self, ldif: &str) {
        self.ldap_tool("ldapadd", ldif);
    }

    fn modify(&self, ldif: &str) {
        self.ldap_tool("ldapmodify", ldif);
    }

    /// A user entry with these mapping values.
    fn add_user(&self, uid: &str, values: &[&str]) {
        let mut ldif = format!(
            "dn: uid={uid},{PEOPLE}\nobjectClass: account\nobjectClass: passkeyUser\nuid: {uid}\n"
        );
        for v in values {
            ldif.push_str(&format!("passkey: {v}\n"));
        }
        self.add(&ldif);
    }

    fn config(&self, extra: &str) -> String {
        format!(
            "[directory]\nuri = {:?}\nbase_dn = {PEOPLE:?}\n\
             filter = \"(&(objectClass=passkeyUser)(uid={{user}}))\"\n\
             sasl_external = true\nrp_id = {RP:?}\nuser_verification = \"discouraged\"\n\
             query_timeout = 3\nquery_helper = {:?}\n{extra}",
            self.uri(),
            ctap_e2e::bin("ctap-directory-query"),
        )
    }

    fn directory_config(&self) -> DirectoryConfig {
        toml::from_str::<toml::Value>(&self.config(""))
            .unwrap()
            .get("directory")
            .unwrap()
            .clone()
            .try_into()
            .unwrap()
    }
}

fn nix_kill(pid: u32) -> std::io::Result<()> {
    let st = Command::new("kill").arg(pid.to_string()).status()?;
    if st.success() {
        Ok(())
    } else {
        Err(std::io::Error::other("kill failed"))
    }
}

impl Drop for Slapd {
    fn drop(&mut self) {
        self.stop();
    }
}

/// One "host": its own records and state directories and syslog socket, one service file,
/// the shared key and directory.
struct Host {
    fx: Fixture,
    config: PathBuf,
    service: ServiceFile,
}

impl Host {
    fn new(tag: &str, key: &str, directory: &str) -> Host {
        let fx = Fixture::new(tag);
        let config = fx.config("pam_ctap.toml", key, directory);
        let service = ServiceFile::new(&observing_stack(&format!("config={}", config.display())));
        Host {
            fx,
            config,
            service,
        }
    }

    fn auth(&self, user: &str) -> (PamResult, String) {
        let run = pam_common::pamtester(&self.service.name, user, "", &[]);
        (run.result, self.fx.auth_line())
    }

    fn counter(&self, user: &str) -> u32 {
        let stem = ctap_core::store::account::file_stem(user).unwrap();
        let text =
            std::fs::read_to_string(self.fx.state_dir().join(format!("{stem}.toml"))).unwrap();
        let v: toml::Value = toml::from_str(&text).unwrap();
        v["credential"][0]["sign_count"]
            .as_integer()
            .map(|n| n as u32)
            .unwrap()
    }

    fn cache(&self, user: &str) -> PathBuf {
        let stem = ctap_core::store::account::file_stem(user).unwrap();
        self.fx.state_dir().join(format!("{stem}.directory"))
    }

    fn set_config(&self, from: &str, to: &str) {
        let text = std::fs::read_to_string(&self.config).unwrap();
        assert!(text.contains(from), "{from} not in the config");
        std::fs::write(&self.config, text.replace(from, to)).unwrap();
    }
}

/// The key on a fixed socket, so it can be stopped and restarted (or cloned) in place.
struct Key {
    dir: TempDir,
    token: Option<SoftToken>,
}

impl Key {
    fn start() -> Key {
        let dir = TempDir::new("dkey");
        let token = SoftToken::start_on(
            &bin("ctap-softtoken"),
            &dir.path().join("key.sock"),
            &dir.path().join("key.state"),
            &[],
        );
        Key {
            dir,
            token: Some(token),
        }
    }

    fn uri(&self) -> String {
        format!("unix:{}", self.dir.path().join("key.sock").display())
    }

    fn state(&self) -> PathBuf {
        self.dir.path().join("key.state")
    }

    /// Restart from `state` (another file: a clone of the key as it was then).
    fn restart_from(&mut self, state: &Path) {
        if let Some(t) = self.token.take() {
            t.stop();
        }
        self.token = Some(SoftToken::start_on(
            &bin("ctap-softtoken"),
            &self.dir.path().join("key.sock"),
            state,
            &[],
        ));
    }

    fn copy_state(&mut self, to: &Path) {
        let state = self.state();
        if let Some(t) = self.token.take() {
            t.stop();
        }
        std::fs::copy(&state, to).unwrap();
        self.restart_from(&state);
    }
}

/// `ctap-enroll enroll --directory` on an enrolling host, its LDIF applied with ldapmodify.
fn enroll_to_directory(slapd: &Slapd, key: &Key, user: &str) -> String {
    let host = Fixture::new("denroll");
    let config = host.config("pam_ctap.toml", &key.uri(), &slapd.config(""));
    let out = Command::new(bin("ctap-enroll"))
        .arg("--config")
        .arg(&config)
        .args([
            "enroll",
            "--user",
            user,
            "--uv",
            "discouraged",
            "--rp-id",
            RP,
            "--directory",
        ])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "enroll: {stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let at = stdout.find("# Apply with").expect("LDIF in the output");
    let ldif = stdout[at..].to_string();
    assert_contains(
        &ldif,
        &[
            &format!("dn: uid={user},{PEOPLE}"),
            "changetype: modify",
            "add: passkey",
            "passkey: passkey:",
        ],
    );
    slapd.modify(&ldif);
    ldif
}

#[test]
#[ignore = "needs root, pamtester and slapd (scripts/install-deps)"]
fn directory_enroll_then_two_hosts_count_independently() {
    require_slapd("directory_enroll_then_two_hosts_count_independently");
    let slapd = Slapd::start();
    slapd.add_user("daemon", &[]);
    let key = Key::start();
    enroll_to_directory(&slapd, &key, "daemon");

    let a = Host::new("dhosta", &key.uri(), &slapd.config(""));
    let b = Host::new("dhostb", &key.uri(), &slapd.config(""));
    for _ in 0..3 {
        let (r, line) = a.auth("daemon");
        assert_eq!(r, PamResult::Success, "{line}");
        assert_contains(
            &line,
            &["auth ok:", "records=directory", "credential=\"directory:"],
        );
    }
    let (r, line) = b.auth("daemon");
    assert_eq!(r, PamResult::Success, "{line}");
    let (ca, cb) = (a.counter("daemon"), b.counter("daemon"));
    println!("host A counter {ca}, host B counter {cb}");
    assert!(
        ca > 0 && cb > ca,
        "each host keeps its own counter: A {ca}, B {cb}"
    );
    // The first directory answer is cached root-only.
    let mode = std::fs::metadata(a.cache("daemon"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600, "cache mode {mode:o}");
    // No records file on either host: the credentials came from the directory.
    assert!(std::fs::read_dir(a.fx.records_dir())
        .unwrap()
        .next()
        .is_none());
    // check-config knows the offline copy and state without records under [directory].
    let out = Command::new(bin("ctap-enroll"))
        .arg("--config")
        .arg(&a.config)
        .arg("check-config")
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    println!("check-config: {text}");
    assert!(out.status.success(), "check-config: {text}");
    assert!(
        !text.contains(".directory") && !text.contains("no records file"),
        "{text}"
    );
}

#[test]
#[ignore = "needs root, pamtester and slapd (scripts/install-deps)"]
fn directory_clone_is_detected_per_host() {
    require_slapd("directory_clone_is_detected_per_host");
    let slapd = Slapd::start();
    slapd.add_user("daemon", &[]);
    let mut key = Key::start();
    enroll_to_directory(&slapd, &key, "daemon");
    let clone = key.dir.path().join("clone.state");
    key.copy_state(&clone);

    let a = Host::new("dclonea", &key.uri(), &slapd.config(""));
    let b = Host::new("dcloneb", &key.uri(), &slapd.config(""));
    for _ in 0..3 {
        assert_eq!(a.auth("daemon").0, PamResult::Success);
    }
    // The clone, as the key was before those logins: host A has seen higher counters.
    key.restart_from(&clone);
    let (r, line) = a.auth("daemon");
    assert_eq!(r, PamResult::AuthErr, "{line}");
    assert_contains(&line, &["reason=counter_regression", "suspended=yes"]);
    // Host B has seen nothing of this key: its counters are its own (per host, by design).
    let (r, line) = b.auth("daemon");
    assert_eq!(r, PamResult::Success, "{line}");
    // And host A keeps the suspension, even for the genuine key.
    let state = key.state();
    key.restart_from(&state);
    let (r, line) = a.auth("daemon");
    assert_eq!(r, PamResult::AuthErr, "{line}");
    assert_contains(&line, &["reason=suspended"]);
}

#[test]
#[ignore = "needs root, pamtester and slapd (scripts/install-deps)"]
fn directory_down_uses_the_cache_within_its_age_then_denies() {
    require_slapd("directory_down_uses_the_cache_within_its_age_then_denies");
    let mut slapd = Slapd::start();
    slapd.add_user("daemon", &[]);
    slapd.add_user("bin", &[]);
    let key = Key::start();
    enroll_to_directory(&slapd, &key, "daemon");
    let host = Host::new(
        "doffline",
        &key.uri(),
        &slapd.config("offline_max_age = 3600\n"),
    );
    let (r, line) = host.auth("daemon");
    assert_eq!(r, PamResult::Success, "{line}");
    assert!(host.cache("daemon").exists());

    slapd.stop();
    let (r, line) = host.auth("daemon");
    assert_eq!(r, PamResult::Success, "{line}");
    assert_contains(&line, &["auth ok:", "records=offline_cache", "cache_age="]);
    println!("{line}");
    // A user never seen on this host has no copy.
    let (r, line) = host.auth("bin");
    assert_eq!(r, PamResult::AuthErr, "{line}");
    assert_contains(&line, &["reason=directory_unreachable", "no offline copy"]);

    host.set_config("offline_max_age = 3600", "offline_max_age = 1");
    std::thread::sleep(Duration::from_millis(2100));
    let (r, line) = host.auth("daemon");
    assert_eq!(r, PamResult::AuthErr, "{line}");
    assert_contains(
        &line,
        &["reason=directory_unreachable", "older than offline_max_age"],
    );
    println!("{line}");

    // Back up, the mapping removed: the answer without a mapping removes the copy.
    slapd.run();
    slapd.modify(&format!(
        "dn: uid=daemon,{PEOPLE}\nchangetype: modify\ndelete: passkey\n-\n"
    ));
    let (r, line) = host.auth("daemon");
    assert_eq!(r, PamResult::AuthErr, "{line}");
    assert_contains(&line, &["reason=no_records"]);
    assert!(!host.cache("daemon").exists(), "the cache must be gone");
}

#[test]
#[ignore = "needs root, pamtester and slapd (scripts/install-deps)"]
fn directory_filter_injection_finds_nothing() {
    require_slapd("directory_filter_injection_finds_nothing");
    let slapd = Slapd::start();
    slapd.add_user("daemon", &[]);
    let key = Key::start();
    enroll_to_directory(&slapd, &key, "daemon");
    let cfg = slapd.directory_config();
    assert!(directory::fetch(&cfg, "daemon").unwrap().is_some());
    // Each of these, unescaped, would match daemon's entry (or every entry).
    for name in [
        "*",
        "*)(uid=daemon",
        "dae*",
        "dae\\6don",
        "dae\0mon",
        "(daemon)",
        "daemon\\",
    ] {
        assert_eq!(
            directory::fetch(&cfg, name).unwrap(),
            None,
            "{name:?} must find nothing"
        );
    }
    // Through PAM: an account whose name is an injection, holding daemon's key, gets nothing.
    let evil = pam_common::TestUser::named("*)(uid=daemon", &[]);
    let host = Host::new("dinject", &key.uri(), &slapd.config(""));
    let (r, line) = host.auth(&evil.name);
    assert_eq!(r, PamResult::AuthErr, "{line}");
    assert_contains(&line, &["reason=no_records"]);
    println!("{line}");
}

#[test]
#[ignore = "needs root, pamtester and slapd (scripts/install-deps)"]
fn directory_malformed_mapping_is_skipped_and_never_grants() {
    require_slapd("directory_malformed_mapping_is_skipped_and_never_grants");
    let slapd = Slapd::start();
    slapd.add_user("daemon", &["passkey:not-base64!,AAAA"]);
    // A well-formed mapping of the right shape but whose key is not a key.
    slapd.add_user("bin", &["passkey:AAAA,AAAA", "junk"]);
    let key = Key::start();
    enroll_to_directory(&slapd, &key, "daemon");
    let host = Host::new("dbadmap", &key.uri(), &slapd.config(""));
    let (r, line) = host.auth("daemon");
    assert_eq!(r, PamResult::Success, "{line}");
    assert_contains(&line, &["auth ok:", "bad_mapping=1"]);
    let (r, line) = host.auth("bin");
    assert_eq!(r, PamResult::AuthErr, "{line}");
    assert_contains(&line, &["reason=bad_mapping", "2 malformed"]);
    println!("{line}");
}

#[test]
#[ignore = "needs root, pamtester and slapd (scripts/install-deps)"]
fn directory_with_a_thousand_users() {
    require_slapd("directory_with_a_thousand_users");
    let slapd = Slapd::start();
    let mut ldif = String::new();
    for i in 0..1000 {
        ldif.push_str(&format!(
            "dn: uid=user{i:04},{PEOPLE}\nobjectClass: account\nobjectClass: passkeyUser\nuid: user{i:04}\n\
             passkey: passkey:dXNlcnt7aX0=,MCowBQYDK2VwAyEAGb9ECWmEzf6FQbrBZ9w7lshQhqowtrbLDFw4rXAxZuE=\n\n"
        ));
    }
    slapd.add(&ldif);
    slapd.add_user("daemon", &[]);
    let key = Key::start();
    enroll_to_directory(&slapd, &key, "daemon");
    let host = Host::new("dthousand", &key.uri(), &slapd.config(""));
    let start = Instant::now();
    let (r, line) = host.auth("daemon");
    assert_eq!(r, PamResult::Success, "{line}");
    println!("login among 1,001 directory users: {:?}", start.elapsed());
}

/// `export-sssd` prints a host's records as SSSD mapping strings (and converts a pam-u2f
/// authfile, raw x||y ES256 key included, to the same strings); `import-sssd` on another host
/// makes them records there, and the key logs in.
#[test]
#[ignore = "needs root and pamtester (writes root's records, /etc/pam.d)"]
fn sssd_export_and_import_round_trip() {
    use base64::Engine as _;
    use ctap_core::store::credential::load_credential_file;
    use ctap_core::store::fs::Ownership;
    use ctap_core::transport::ctap2::cose::CoseKey;
    require_root("sssd_export_and_import_round_trip");
    let key = Key::start();
    let source = Fixture::new("dsssda");
    let token = key.token.as_ref().unwrap();
    source.enroll(
        token,
        "daemon",
        ctap_core::flows::enroll::UvPreference::Discouraged,
        None,
    );
    let config = source.config("pam_ctap.toml", &key.uri(), "");
    let run = |config: &Path, args: &[&str]| {
        let out = Command::new(bin("ctap-enroll"))
            .arg("--config")
            .arg(config)
            .args(args)
            .stdin(Stdio::null())
            .output()
            .unwrap();
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(out.status.success(), "ctap-enroll {args:?}: {text}");
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let exported = run(&config, &["export-sssd", "--user", "daemon"]);
    let lines: Vec<&str> = exported.lines().collect();
    assert_eq!(lines.len(), 1, "{exported}");
    println!("export-sssd: {}", lines[0]);
    let records = load_credential_file(
        &source.records_dir().join("daemon.toml"),
        Ownership { uid: 0 },
    )
    .unwrap();
    let record = &records.credentials[0];
    let parsed = directory::mapping::parse(lines[0]).unwrap().unwrap();
    assert_eq!(parsed.credential_id, record.credential_id);
    assert_eq!(parsed.key.cose(), record.public_key.cose());

    // A pam-u2f es256 line (raw x||y, as pamu2fcfg writes it) converts to the SPKI mapping.
    let sk = p256::SecretKey::from_slice(&[7u8; 32]).unwrap();
    let point =
        p256::elliptic_curve::sec1::ToEncodedPoint::to_encoded_point(&sk.public_key(), false);
    let (x, y): ([u8; 32], [u8; 32]) = (
        point.x().unwrap().as_slice().try_into().unwrap(),
        point.y().unwrap().as_slice().try_into().unwrap(),
    );
    let b64 = base64::engine::general_purpose::STANDARD;
    let authfile = source.path().join("u2f_keys");
    std::fs::write(
        &authfile,
        format!(
            "daemon:{},{},es256,+presence\n",
            b64.encode(b"pam-u2f-key-handle"),
            b64.encode([&x[..], &y[..]].concat())
        ),
    )
    .unwrap();
    let converted = run(
        &config,
        &["export-sssd", "--pam-u2f", authfile.to_str().unwrap()],
    );
    let expected =
        directory::mapping::format(b"pam-u2f-key-handle", &CoseKey::Es256 { x, y, alg: -7 })
            .unwrap();
    assert_eq!(converted.trim(), format!("daemon:{expected}"));
    // DER SubjectPublicKeyInfo of a P-256 key, as SSSD stores it.
    let der = b64.decode(expected.rsplit(',').next().unwrap()).unwrap();
    assert_eq!(der.len(), 91);
    println!("export-sssd --pam-u2f: {}", converted.trim());

    // Another host imports the strings and the key logs in there.
    let target = Host::new("dsssdb", &key.uri(), "");
    let file = target.fx.path().join("mappings.txt");
    std::fs::write(&file, &exported).unwrap();
    let out = run(
        &target.config,
        &[
            "import-sssd",
            file.to_str().unwrap(),
            "--user",
            "daemon",
            "--rp-id",
            pam_common::RP_ID,
            "--uv",
            "discouraged",
        ],
    );
    assert_contains(&out, &["1 imported, 0 not imported."]);
    let (r, line) = target.auth("daemon");
    assert_eq!(r, PamResult::Success, "{line}");
    assert_contains(&line, &["credential=\"sssd-1\""]);
}

/// A simple bind with a root-only password file; a wrong password is the directory's error,
/// a password file others can read is refused before any bind, and neither grants.
#[test]
#[ignore = "needs root, pamtester and slapd (scripts/install-deps)"]
fn directory_simple_bind_with_a_root_only_password_file() {
    require_slapd("directory_simple_bind_with_a_root_only_password_file");
    let slapd = Slapd::start();
    slapd.add_user("daemon", &[]);
    let key = Key::start();
    enroll_to_directory(&slapd, &key, "daemon");
    let secret = slapd.dir.path().join("bind.secret");
    std::fs::write(&secret, format!("{ADMIN_PW}\n")).unwrap();
    std::fs::set_permissions(&secret, std::fs::Permissions::from_mode(0o600)).unwrap();
    let bind = slapd.config("").replace(
        "sasl_external = true\n",
        &format!("bind_dn = {ADMIN:?}\nbind_password_file = {:?}\n", secret),
    );
    let host = Host::new("dbind", &key.uri(), &bind);
    let (r, line) = host.auth("daemon");
    assert_eq!(r, PamResult::Success, "{line}");

    std::fs::write(&secret, "wrong\n").unwrap();
    let (r, line) = host.auth("daemon");
    assert_eq!(r, PamResult::AuthErr, "{line}");
    assert_contains(&line, &["reason=directory_error"]);
    println!("{line}");

    std::fs::write(&secret, format!("{ADMIN_PW}\n")).unwrap();
    std::fs::set_permissions(&secret, std::fs::Permissions::from_mode(0o644)).unwrap();
    let (r, line) = host.auth("daemon");
    assert_eq!(r, PamResult::AuthErr, "{line}");
    assert_contains(&line, &["reason=directory_error", "bind_password_file"]);
    println!("{line}");
}

/// The first login on a host records the credential's hmac-secret check there (trust on first
/// use per host); from then on it is enforced: a wrong check denies with hmac_mismatch.
#[test]
#[ignore = "needs root, pamtester and slapd (scripts/install-deps)"]
fn directory_first_login_records_the_hmac_check_per_host() {
    require_slapd("directory_first_login_records_the_hmac_check_per_host");
    let slapd = Slapd::start();
    slapd.add_user("daemon", &[]);
    let key = Key::start();
    enroll_to_directory(&slapd, &key, "daemon");
    let host = Host::new("dhmac", &key.uri(), &slapd.config(""));
    let state_path = host.fx.state_dir().join("daemon.toml");
    let (r, line) = host.auth("daemon");
    assert_eq!(r, PamResult::Success, "{line}");
    let state: toml::Value =
        toml::from_str(&std::fs::read_to_string(&state_path).unwrap()).unwrap();
    let cred = &state["credential"][0];
    let check = cred
        .get("hmac_check")
        .and_then(|v| v.as_str())
        .map(str::to_string);
    assert!(
        check.is_some() && cred.get("hmac_salt").is_some(),
        "the first login records the check: {state}"
    );
    let (r, line) = host.auth("daemon");
    assert_eq!(r, PamResult::Success, "the recorded check holds: {line}");
    // Another check than the key's: enforced from now on.
    let text = std::fs::read_to_string(&state_path).unwrap();
    let forged = ctap_core::store::credential::b64_encode(&[0x55u8; 32]);
    std::fs::write(
        &state_path,
        text.replace(check.as_deref().unwrap(), &forged),
    )
    .unwrap();
    let (r, line) = host.auth("daemon");
    assert_eq!(r, PamResult::AuthErr, "{line}");
    assert_contains(&line, &["reason=hmac_mismatch"]);
    println!("{line}");
}

/// The query runs in `ctap-directory-query` (the module links no LDAP or TLS): the program is
/// trusted only root-owned and unwritable by others, its run is bounded by `query_timeout`
/// (killed after, no process left behind), and an answer that is not one is an error, never a
/// grant. A hung program is an unreachable directory: the offline copy answers within its age.
#[test]
#[ignore = "needs root, pamtester and slapd (scripts/install-deps)"]
fn directory_query_program_is_trusted_bounded_and_checked() {
    require_slapd("directory_query_program_is_trusted_bounded_and_checked");
    let slapd = Slapd::start();
    slapd.add_user("daemon", &[]);
    let key = Key::start();
    enroll_to_directory(&slapd, &key, "daemon");
    let host = Host::new("dhelper", &key.uri(), &slapd.config(""));
    let programs = host.fx.path().join("programs");
    std::fs::create_dir(&programs).unwrap();
    std::fs::set_permissions(&programs, std::fs::Permissions::from_mode(0o755)).unwrap();
    let program = |name: &str, body: &str, mode: u32| {
        let p = programs.join(name);
        std::fs::write(&p, format!("#!/bin/sh\n{body}\n")).unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(mode)).unwrap();
        p
    };
    let use_program = |p: &Path| {
        let text = std::fs::read_to_string(&host.config).unwrap();
        let line = text
            .lines()
            .find(|l| l.starts_with("query_helper = "))
            .unwrap()
            .to_owned();
        host.set_config(&line, &format!("query_helper = {p:?}"));
    };

    // Untrusted programs: group-writable, owned by another user, a symbolic link.
    let copy = programs.join("writable");
    std::fs::copy(bin("ctap-directory-query"), &copy).unwrap();
    std::fs::set_permissions(&copy, std::fs::Permissions::from_mode(0o775)).unwrap();
    let other = program("other-owner", "exec true", 0o755);
    std::os::unix::fs::chown(&other, Some(1), None).unwrap();
    let link = programs.join("link");
    std::os::unix::fs::symlink(bin("ctap-directory-query"), &link).unwrap();
    for (p, why) in [
        (&copy, "group- or world-writable"),
        (&other, "not root"),
        (&link, "not a regular file"),
    ] {
        use_program(p);
        let (r, line) = host.auth("daemon");
        assert_eq!(r, PamResult::AuthErr, "{line}");
        assert_contains(&line, &["reason=directory_error", "query_helper", why]);
        println!("{line}");
        // check-config says the same, before any login has to.
        let out = Command::new(bin("ctap-enroll"))
            .arg("--config")
            .arg(&host.config)
            .arg("check-config")
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        assert!(!out.status.success(), "check-config passed: {text}");
        assert_contains(&text, &[&p.display().to_string(), why]);
    }

    // Answers that are not answers.
    for (name, body, says) in [
        ("garbage", "echo hello; exit 0", "gave no valid answer"),
        ("crash", "kill -SEGV $$", "gave no valid answer"),
        (
            "granted",
            "echo 'outcome = \"granted\"'",
            "gave no valid answer",
        ),
        (
            "flood",
            "head -c 2000000 /dev/zero | tr '\\0' a",
            "more than",
        ),
    ] {
        use_program(&program(name, body, 0o755));
        let (r, line) = host.auth("daemon");
        assert_eq!(r, PamResult::AuthErr, "{name}: {line}");
        assert_contains(&line, &["reason=directory_error", says]);
        println!("{line}");
    }

    // A program that never answers: stopped at query_timeout (3 s), the directory counts as
    // unreachable, and there is no offline copy yet.
    let hung = program("hung", "exec sleep 47", 0o755);
    use_program(&hung);
    let start = Instant::now();
    let (r, line) = host.auth("daemon");
    let took = start.elapsed();
    assert_eq!(r, PamResult::AuthErr, "{line}");
    assert_contains(
        &line,
        &[
            "reason=directory_unreachable",
            "no answer within query_timeout",
        ],
    );
    assert!(took < Duration::from_secs(3 + 3), "{took:?}");
    println!("{line} ({took:?})");
    let left = Command::new("pgrep")
        .args(["-f", "sleep 47"])
        .output()
        .unwrap();
    assert!(
        left.stdout.is_empty(),
        "the hung program was left running: {}",
        String::from_utf8_lossy(&left.stdout)
    );

    // The real program: a login, which leaves an offline copy; then the hung one again is an
    // unreachable directory answered from that copy.
    use_program(&bin("ctap-directory-query"));
    let (r, line) = host.auth("daemon");
    assert_eq!(r, PamResult::Success, "{line}");
    use_program(&hung);
    let (r, line) = host.auth("daemon");
    assert_eq!(r, PamResult::Success, "{line}");
    assert_contains(&line, &["auth ok:", "records=offline_cache"]);
    println!("{line}");
}

/// `enroll --directory --write` adds the mapping itself, bound as an admin whose password sits
/// in a root-only file, through the same query program the module runs; the next login on any
/// host finds it. A refused bind or an unsafe password file fails the command, says why and
/// gives the LDIF to apply by hand; the key stays enrolled on this host.
#[test]
#[ignore = "needs root, pamtester and slapd (scripts/install-deps)"]
fn directory_enroll_writes_the_mapping_with_an_admin_bind() {
    require_slapd("directory_enroll_writes_the_mapping_with_an_admin_bind");
    let slapd = Slapd::start();
    slapd.add_user("daemon", &[]);
    slapd.add_user("bin", &[]);
    let key = Key::start();
    let admin = Fixture::new("dwrite");
    let config = admin.config("pam_ctap.toml", &key.uri(), &slapd.config(""));
    let secret = admin.path().join("admin.secret");
    let enroll = |user: &str, password: &str, mode: u32| {
        std::fs::write(&secret, password).unwrap();
        std::fs::set_permissions(&secret, std::fs::Permissions::from_mode(mode)).unwrap();
        let out = Command::new(bin("ctap-enroll"))
            .arg("--config")
            .arg(&config)
            .args(["enroll", "--user", user, "--uv", "discouraged"])
            .args(["--rp-id", RP, "--directory", "--write", "--admin-dn", ADMIN])
            .arg("--admin-password-file")
            .arg(&secret)
            .stdin(Stdio::null())
            .output()
            .unwrap();
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        println!("{text}");
        (out.status.code(), text)
    };

    // A password file others can read: refused before the key is touched, nothing enrolled.
    let (code, text) = enroll("daemon", &format!("{ADMIN_PW}\n"), 0o644);
    assert_eq!(code, Some(2), "{text}");
    assert_contains(&text, &["--admin-password-file", "readable"]);
    assert!(!text.contains("Touch your security key"), "{text}");
    // A wrong password: the key is enrolled here, the directory refuses, the LDIF is given.
    let (code, text) = enroll("daemon", "wrong\n", 0o600);
    assert_eq!(code, Some(1), "{text}");
    assert_contains(
        &text,
        &[
            "directory refused the mapping",
            "invalidCredentials",
            "changetype: modify",
        ],
    );
    let host = Host::new("dwritehost", &key.uri(), &slapd.config(""));
    let (r, line) = host.auth("daemon");
    assert_eq!(r, PamResult::AuthErr, "nothing was written: {line}");
    assert_contains(&line, &["reason=no_records"]);

    // The right one: written, and the next login on another host finds it.
    let (code, text) = enroll("bin", &format!("{ADMIN_PW}\n"), 0o600);
    assert_eq!(code, Some(0), "{text}");
    assert_contains(&text, &[&format!("Added to uid=bin,{PEOPLE}")]);
    assert!(!text.contains("changetype"), "no LDIF to apply: {text}");
    let (r, line) = host.auth("bin");
    assert_eq!(r, PamResult::Success, "{line}");
    assert_contains(&line, &["auth ok:", "records=directory"]);
    println!("{line}");
}

/// A throwaway CA and, signed by it, a server certificate for `localhost` only (no IP address
/// in it), made with the openssl CLI.
struct Pki {
    dir: TempDir,
}

impl Pki {
    fn new(tag: &str) -> Pki {
        let pki = Pki {
            dir: TempDir::new(tag),
        };
        let d = pki.dir.path();
        let ec = [
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
        ];
        openssl(
            d,
            &[
                &["req", "-x509"],
                &ec[..],
                &["-keyout", "ca.key", "-out", "ca.pem"],
            ]
            .concat(),
            &format!("/CN=ctap test CA {tag}"),
        );
        openssl(
            d,
            &[
                &["req"],
                &ec[..],
                &["-keyout", "server.key", "-out", "server.csr"],
            ]
            .concat(),
            "/CN=localhost",
        );
        std::fs::write(
            d.join("server.ext"),
            "basicConstraints = critical, CA:FALSE\nkeyUsage = critical, digitalSignature\n\
             extendedKeyUsage = serverAuth\nsubjectAltName = DNS:localhost\n",
        )
        .unwrap();
        let out = Command::new("openssl")
            .current_dir(d)
            .args(["x509", "-req", "-in", "server.csr", "-CA", "ca.pem"])
            .args(["-CAkey", "ca.key", "-CAcreateserial", "-days", "2"])
            .args(["-extfile", "server.ext", "-out", "server.pem"])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "openssl x509: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        for f in ["ca.key", "server.key"] {
            std::fs::set_permissions(d.join(f), std::fs::Permissions::from_mode(0o600)).unwrap();
        }
        pki
    }

    fn ca(&self) -> PathBuf {
        self.dir.path().join("ca.pem")
    }

    /// slapd.conf's TLS lines: this CA's server certificate and key.
    fn slapd_conf(&self) -> String {
        let d = self.dir.path();
        format!(
            "TLSCACertificateFile {}\nTLSCertificateFile {}\nTLSCertificateKeyFile {}\n",
            self.ca().display(),
            d.join("server.pem").display(),
            d.join("server.key").display()
        )
    }
}

/// `openssl ARGS -subj SUBJECT -days 2` in `dir`, which must succeed.
fn openssl(dir: &Path, args: &[&str], subject: &str) {
    let out = Command::new("openssl")
        .current_dir(dir)
        .args(args)
        .args(["-subj", subject, "-days", "2"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn require_tls_tools(test: &str) {
    require_slapd(test);
    assert!(
        Command::new("openssl").arg("version").output().is_ok(),
        "{test}: the openssl CLI is missing: apt-get install -y openssl (scripts/install-deps)"
    );
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// slapd with `pki`'s certificate, listening on `ldap://127.0.0.1:PORT` (StartTLS) and
/// `ldaps://127.0.0.1:PORT2` besides its ldapi socket. Returns the two ports.
fn start_tls_slapd(pki: &Pki) -> (Slapd, u16, u16) {
    let (ldap, ldaps) = (free_port(), free_port());
    let slapd = Slapd::start_with(
        &pki.slapd_conf(),
        vec![
            format!("ldap://127.0.0.1:{ldap}/"),
            format!("ldaps://127.0.0.1:{ldaps}/"),
        ],
    );
    for port in [ldap, ldaps] {
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "slapd does not listen on {port}");
            std::thread::sleep(Duration::from_millis(20));
        }
    }
    (slapd, ldap, ldaps)
}

/// `[directory]` for `uri`, with `bind` instead of SASL EXTERNAL (ldapi only) and `extra`.
fn tls_config(slapd: &Slapd, uri: &str, bind: &str, extra: &str) -> String {
    let text = slapd
        .config(extra)
        .replace(
            &format!("uri = {:?}\n", slapd.uri()),
            &format!("uri = {uri:?}\n"),
        )
        .replace("sasl_external = true\n", bind);
    assert!(text.contains(uri), "{text}");
    text
}

/// The directory over TLS, `ldaps://` and StartTLS, with `ca_file` pinning a throwaway CA:
/// logins succeed (a simple bind over ldaps included). A certificate that does not chain to
/// `ca_file` (another CA, or no `ca_file`: the system's store does not know the test CA) or
/// that does not name the host is `directory_error`, never `directory_unreachable`: the
/// offline copy left by the earlier logins must not answer for a server that failed TLS.
#[test]
#[ignore = "needs root, pamtester, slapd and openssl (scripts/install-deps)"]
fn directory_over_tls_pins_the_ca_file_and_the_host_name() {
    require_tls_tools("directory_over_tls_pins_the_ca_file_and_the_host_name");
    let pki = Pki::new("dpki");
    let other = Pki::new("dpkiother");
    let (slapd, ldap, ldaps) = start_tls_slapd(&pki);
    slapd.add_user("daemon", &[]);
    let key = Key::start();
    enroll_to_directory(&slapd, &key, "daemon");
    let secret = slapd.dir.path().join("bind.secret");
    std::fs::write(&secret, format!("{ADMIN_PW}\n")).unwrap();
    std::fs::set_permissions(&secret, std::fs::Permissions::from_mode(0o600)).unwrap();
    let simple = format!("bind_dn = {ADMIN:?}\nbind_password_file = {secret:?}\n");
    let ca_line = |p: &Path| format!("ca_file = {:?}\n", p);
    let ldaps_uri = format!("ldaps://localhost:{ldaps}");
    let host = Host::new(
        "dtls",
        &key.uri(),
        &tls_config(&slapd, &ldaps_uri, &simple, &ca_line(&pki.ca())),
    );
    let uri_line = |u: &str| format!("uri = {u:?}\n");

    // (a) ldaps://, the test CA pinned, a simple bind.
    let (r, line) = host.auth("daemon");
    assert_eq!(r, PamResult::Success, "{line}");
    assert_contains(&line, &["auth ok:", "records=directory"]);
    println!("ldaps + ca_file: {line}");
    assert!(host.cache("daemon").exists(), "an offline copy now exists");

    // (b) ldap:// with StartTLS, anonymous.
    let starttls_uri = format!("ldap://localhost:{ldap}");
    host.set_config(&uri_line(&ldaps_uri), &uri_line(&starttls_uri));
    host.set_config(&simple, "");
    let (r, line) = host.auth("daemon");
    assert_eq!(r, PamResult::Success, "{line}");
    assert_contains(&line, &["auth ok:", "records=directory"]);
    println!("StartTLS + ca_file: {line}");

    // (c) Another CA pinned: both ways to TLS are refused, and the offline copy stays unused.
    host.set_config(&ca_line(&pki.ca()), &ca_line(&other.ca()));
    for uri in [&starttls_uri, &ldaps_uri] {
        let now = std::fs::read_to_string(&host.config).unwrap();
        let current = now.lines().find(|l| l.starts_with("uri = ")).unwrap();
        host.set_config(&format!("{current}\n"), &uri_line(uri));
        let (r, line) = host.auth("daemon");
        assert_eq!(r, PamResult::AuthErr, "{uri}: {line}");
        assert_contains(
            &line,
            &["reason=directory_error", "TLS", "certificate verify failed"],
        );
        assert!(!line.contains("offline"), "{line}");
        println!("{uri} + another CA: {line}");
    }

    // (d) The right CA, but the URI names a host the certificate does not (127.0.0.1: the
    // certificate is for localhost only): refused.
    host.set_config(&ca_line(&other.ca()), &ca_line(&pki.ca()));
    for uri in [
        format!("ldaps://127.0.0.1:{ldaps}"),
        format!("ldap://127.0.0.1:{ldap}"),
    ] {
        let now = std::fs::read_to_string(&host.config).unwrap();
        let current = now.lines().find(|l| l.starts_with("uri = ")).unwrap();
        host.set_config(&format!("{current}\n"), &uri_line(&uri));
        let (r, line) = host.auth("daemon");
        assert_eq!(r, PamResult::AuthErr, "{uri}: {line}");
        assert_contains(&line, &["reason=directory_error", "TLS"]);
        println!("{uri} (certificate for localhost): {line}");
    }

    // (e) No ca_file: the system's trust store, which does not know the test CA.
    let now = std::fs::read_to_string(&host.config).unwrap();
    let current = now.lines().find(|l| l.starts_with("uri = ")).unwrap();
    host.set_config(&format!("{current}\n"), &uri_line(&ldaps_uri));
    host.set_config(&ca_line(&pki.ca()), "");
    let (r, line) = host.auth("daemon");
    assert_eq!(r, PamResult::AuthErr, "{line}");
    assert_contains(
        &line,
        &["reason=directory_error", "certificate verify failed"],
    );
    println!("ldaps without ca_file: {line}");

    // The pinned CA again: the same host logs in (the state is intact).
    host.set_config(
        &uri_line(&ldaps_uri),
        &format!("{}{}", uri_line(&ldaps_uri), ca_line(&pki.ca())),
    );
    let (r, line) = host.auth("daemon");
    assert_eq!(r, PamResult::Success, "{line}");
}

/// A `ca_file` that cannot be used (missing, writable by others, not certificates) denies
/// with `directory_error` naming the file (never the system's store instead, never the
/// offline copy), and `ctap-enroll check-config` reports it before any login has to.
#[test]
#[ignore = "needs root, pamtester, slapd and openssl (scripts/install-deps)"]
fn directory_ca_file_that_cannot_be_used_denies_and_check_config_says_why() {
    require_tls_tools("directory_ca_file_that_cannot_be_used_denies_and_check_config_says_why");
    let pki = Pki::new("dpkibad");
    let (slapd, _, ldaps) = start_tls_slapd(&pki);
    slapd.add_user("daemon", &[]);
    let key = Key::start();
    enroll_to_directory(&slapd, &key, "daemon");
    let ca = slapd.dir.path().join("ca.pem");
    std::fs::copy(pki.ca(), &ca).unwrap();
    let host = Host::new(
        "dtlsbad",
        &key.uri(),
        &tls_config(
            &slapd,
            &format!("ldaps://localhost:{ldaps}"),
            "",
            &format!("ca_file = {ca:?}\n"),
        ),
    );
    let check_config = || {
        let out = Command::new(bin("ctap-enroll"))
            .arg("--config")
            .arg(&host.config)
            .arg("check-config")
            .output()
            .unwrap();
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
        )
    };
    let (r, line) = host.auth("daemon");
    assert_eq!(r, PamResult::Success, "{line}");
    let (ok, text) = check_config();
    assert!(ok, "check-config: {text}");

    let ca_name = ca.display().to_string();
    let cases: [(&str, &dyn Fn(), &str); 3] = [
        (
            "missing",
            &|| std::fs::remove_file(&ca).unwrap(),
            "no such file",
        ),
        (
            "group-writable",
            &|| {
                std::fs::copy(pki.ca(), &ca).unwrap();
                std::fs::set_permissions(&ca, std::fs::Permissions::from_mode(0o664)).unwrap();
            },
            "writable",
        ),
        (
            "not certificates",
            &|| {
                std::fs::remove_file(&ca).unwrap();
                std::fs::copy(pki.dir.path().join("server.csr"), &ca).unwrap();
                std::fs::set_permissions(&ca, std::fs::Permissions::from_mode(0o644)).unwrap();
            },
            "no certificate",
        ),
    ];
    for (what, make, says) in cases {
        make();
        let (r, line) = host.auth("daemon");
        assert_eq!(r, PamResult::AuthErr, "{what}: {line}");
        assert_contains(
            &line,
            &["reason=directory_error", "ca_file", &ca_name, says],
        );
        println!("ca_file {what}: {line}");
        let (ok, text) = check_config();
        assert!(!ok, "check-config passed with a {what} ca_file: {text}");
        assert_contains(&text, &[&ca_name, says]);
        println!("check-config: {}", text.trim());
    }
}
