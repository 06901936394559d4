//! Benchmark of pam_ctap (run through bench/pam-bench.sh, as root): wall time of a pamtester
//! authentication through pam_ctap with the virtual key (presence auto) against a pam_permit
//! stack (the cost of pamtester + libpam alone), their difference (our overhead), and the
//! in-process paths: `login()` without PAM, `verify_assertion` alone, and the silent probes that
//! find a user's credential (one probe; 1,000 credentials under one RP ID, split into allow-list
//! chunks; 400 RP IDs, one probe each: what a login costs before its deadline).
//!
//! Usage: pam_bench [ITERATIONS] (default 50; verify runs 200x as many).
#![allow(clippy::unwrap_used)]

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use ctap_core::flows::enroll::{enroll, EnrollRequest, UvPreference};
use ctap_core::flows::login::login;
use ctap_core::flows::session::{open_authenticators, Prompter};
use ctap_core::flows::verify::{verify_assertion, Challenge, Expectation};
use ctap_core::store::config::{PinPolicy, Policy};
use ctap_core::transport::ctap2::ext::hmac_secret::HmacSalts;
use ctap_core::transport::ctap2::pin::Pin;
use ctap_core::transport::ctap2::GetAssertionRequest;
use ctap_core::transport::ctaphid::WaitDecision;
use ctap_e2e::{bin_dir, SoftToken, TempDir};

struct Quiet;
impl Prompter for Quiet {
    fn touch_cue(&mut self, _: &str) {}
    fn request_pin(&mut self, _: &str) -> Option<Pin> {
        None
    }
    fn info(&mut self, _: &str) {}
}

struct Service(String);
impl Service {
    fn new(content: &str) -> Self {
        let name = format!("ctap-bench-{:08x}", rand::random::<u32>());
        std::fs::write(Path::new("/etc/pam.d").join(&name), content).unwrap();
        Service(name)
    }
}
impl Drop for Service {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(Path::new("/etc/pam.d").join(&self.0));
    }
}

/// The user the benchmark enrolls and logs in: an account NSS knows (login resolves the name),
/// whose records live in the benchmark's own directory.
const BENCH_USER: &str = "daemon";

fn bench_account() -> ctap_core::store::account::Account {
    use ctap_core::store::account::{Nss, UserResolver};
    Nss.by_name(BENCH_USER).unwrap().unwrap()
}

fn pamtester(service: &str, user: &str) -> Duration {
    let t = Instant::now();
    let st = Command::new("pamtester")
        .args([service, user, "authenticate"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .unwrap();
    let d = t.elapsed();
    assert!(st.success(), "pamtester {service} failed");
    d
}

fn stats(mut v: Vec<Duration>) -> (Duration, Duration) {
    v.sort_unstable();
    let median = v[v.len() / 2];
    let p99 = v[((v.len() * 99).div_ceil(100))
        .saturating_sub(1)
        .min(v.len() - 1)];
    (median, p99)
}

fn ms(d: Duration) -> String {
    format!("{:8.2} ms", d.as_secs_f64() * 1e3)
}

fn main() {
    let n: usize = std::env::args()
        .nth(1)
        .map(|s| s.parse().unwrap())
        .unwrap_or(50);
    let dir = TempDir::new("pam-bench");
    let key = SoftToken::start(dir.path(), &dir.path().join("key.state"), &[]);
    while std::os::unix::net::UnixStream::connect(&key.socket).is_err() {
        std::thread::sleep(Duration::from_millis(10));
    }
    let policy = Policy {
        device: key.uri().parse().unwrap(),
        records_dir: dir.path().join("users"),
        state_dir: dir.path().join("state"),
        log_socket: dir.path().join("no-syslog.sock"),
        cue: false,
        ..Policy::default()
    };
    {
        let mut keys = open_authenticators(&policy.device, policy.touch_timeout()).unwrap();
        let req = EnrollRequest {
            user: bench_account(),
            name: "virtual".into(),
            rp_id: Some("pam://bench".into()),
            uv: UvPreference::Discouraged,
            pin_policy: PinPolicy::Prompt,
        };
        enroll(&policy.store(), &req, &mut keys[0], &mut Quiet).unwrap();
    }
    let config = dir.path().join("pam_ctap.toml");
    std::fs::write(
        &config,
        format!(
            "device = \"{}\"\nrecords_dir = {:?}\nstate_dir = {:?}\nlog_socket = {:?}\ncue = false\n",
            key.uri(),
            policy.records_dir,
            policy.state_dir,
            policy.log_socket
        ),
    )
    .unwrap();
    let module = std::fs::canonicalize(bin_dir().join("libpam_ctap.so")).unwrap();
    let ctap = Service::new(&format!(
        "auth required {} config={}\n",
        module.display(),
        config.display()
    ));
    let permit = Service::new("auth required pam_permit.so\n");

    // Warm up (page cache, dynamic loader), then interleave so drift hits both alike.
    for _ in 0..3 {
        pamtester(&ctap.0, BENCH_USER);
        pamtester(&permit.0, BENCH_USER);
    }
    let (mut with, mut base) = (Vec::with_capacity(n), Vec::with_capacity(n));
    for _ in 0..n {
        with.push(pamtester(&ctap.0, BENCH_USER));
        base.push(pamtester(&permit.0, BENCH_USER));
    }
    let (wm, wp) = stats(with);
    let (bm, bp) = stats(base);

    // In process: the whole login (open key, probe, assertion, verify, state write).
    let mut logins = Vec::with_capacity(n);
    for _ in 0..n {
        let t = Instant::now();
        login(BENCH_USER, "bench", &policy, &mut Quiet).unwrap();
        logins.push(t.elapsed());
    }
    let (lm, lp) = stats(logins);

    // In process: verify_assertion alone, over one real assertion.
    let store = policy.store();
    let record = store
        .load_records(&bench_account())
        .unwrap()
        .file
        .credentials
        .remove(0);
    let state = store.read_state(BENCH_USER).unwrap().credentials.remove(0);
    let challenge = Challenge::new("bench", BENCH_USER);
    let request = GetAssertionRequest {
        rp_id: record.rp_id.to_string(),
        client_data_hash: challenge.client_data_hash(),
        allow_list: vec![record.credential_id.clone()],
        user_presence: true,
        user_verification: false,
        hmac_secret: state.hmac.as_ref().map(|h| HmacSalts {
            salt1: h.salt,
            salt2: None,
        }),
    };
    let mut keys = open_authenticators(&policy.device, policy.touch_timeout()).unwrap();
    let response = keys[0]
        .get_assertion(&request, None, &mut |_| WaitDecision::Continue)
        .unwrap();
    let asked = [&record];
    let expect = Expectation {
        challenge: &challenge,
        asked: &asked,
        counter_policy: policy.counter,
    };
    let iterations = n * 200;
    let mut verifies = Vec::with_capacity(iterations);
    for _ in 0..iterations {
        let t = Instant::now();
        let v = verify_assertion(&expect, &response, &state);
        verifies.push(t.elapsed());
        assert!(v.is_ok());
    }
    let (vm, vp) = stats(verifies);

    // Silent probes: credentials the key does not hold (random ids of a real id's length).
    let fake = |n: usize| -> Vec<Vec<u8>> {
        (0..n)
            .map(|_| {
                (0..record.credential_id.len())
                    .map(|_| rand::random::<u8>())
                    .collect()
            })
            .collect()
    };
    let key = &mut keys[0];
    let mut probes = Vec::with_capacity(n);
    for _ in 0..n {
        let ids = fake(1);
        let t = Instant::now();
        assert_eq!(
            key.probe_credentials(record.rp_id.as_str(), &ids).unwrap(),
            None
        );
        probes.push(t.elapsed());
    }
    let (pm, pp) = stats(probes);
    let runs = n.div_ceil(10);
    let mut many = fake(999);
    many.push(record.credential_id.clone());
    let chunks = key.allow_list_chunks(record.rp_id.as_str(), &many).len();
    let mut thousand = Vec::with_capacity(runs);
    for _ in 0..runs {
        let t = Instant::now();
        let found = key.probe_credentials(record.rp_id.as_str(), &many).unwrap();
        thousand.push(t.elapsed());
        assert_eq!(found.as_ref(), Some(&record.credential_id));
    }
    let (tm, tp) = stats(thousand);
    let rps: Vec<(String, Vec<Vec<u8>>)> = (0..400)
        .map(|i| (format!("pam://bench-rp-{i}"), fake(1)))
        .collect();
    let mut four_hundred = Vec::with_capacity(runs);
    for _ in 0..runs {
        let t = Instant::now();
        for (rp, ids) in &rps {
            assert_eq!(key.probe_credentials(rp, ids).unwrap(), None);
        }
        four_hundred.push(t.elapsed());
    }
    let (rm, rp99) = stats(four_hundred);

    println!(
        "pam_ctap benchmark: {n} runs each (verify: {iterations}), virtual key, presence auto"
    );
    println!("{:<54} {:>11} {:>11}", "", "median", "p99");
    println!("{:<54} {} {}", "pamtester, pam_ctap stack", ms(wm), ms(wp));
    println!(
        "{:<54} {} {}",
        "pamtester, pam_permit stack (baseline)",
        ms(bm),
        ms(bp)
    );
    println!(
        "{:<54} {} {}",
        "overhead of pam_ctap (difference)",
        ms(wm.saturating_sub(bm)),
        ms(wp.saturating_sub(bp))
    );
    println!(
        "{:<54} {} {}",
        "in-process login() (no PAM, no process)",
        ms(lm),
        ms(lp)
    );
    println!(
        "{:<54} {:8.1} us {:8.1} us",
        "in-process verify_assertion",
        vm.as_secs_f64() * 1e6,
        vp.as_secs_f64() * 1e6
    );
    println!(
        "{:<54} {} {}",
        "one silent probe (credential not on key)",
        ms(pm),
        ms(pp)
    );
    println!(
        "{:<54} {} {}",
        format!("1,000 credentials, one RP ID ({chunks} probes, {runs} runs)"),
        ms(tm),
        ms(tp)
    );
    println!(
        "{:<54} {} {}",
        format!("400 RP IDs, none on the key (400 probes, {runs} runs)"),
        ms(rm),
        ms(rp99)
    );
    println!(
        "A login probes the most recently used credential first, then one probe per RP ID (in \
         chunks of maxCredentialCountInList); all of it ends by the configured timeout."
    );
}
