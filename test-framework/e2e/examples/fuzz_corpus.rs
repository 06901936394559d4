//! Write the fuzz seed corpus (fuzz/corpus/<target>/) from real exchanges with the virtual key and
//! real files: every response report, CBOR body, authenticatorData and COSE key the key sends in
//! getInfo, makeCredential, getAssertion and clientPIN; the records and state files an enrollment
//! writes; the shipped config; pam-u2f lines and OpenSSH sk key files for the credentials made;
//! agent messages and the data an agent signs.
//!
//!   cargo build --workspace --bins --examples
//!   CTAP_BIN_DIR=$PWD/target/debug target/debug/examples/fuzz_corpus fuzz/corpus
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use ciborium::Value;
use ctap_core::flows::enroll::{enroll, EnrollRequest, UvPreference};
use ctap_core::flows::session::{open_authenticators, Prompter};
use ctap_core::flows::uv::Verification;
use ctap_core::ssh::{self, SkAlgorithm, SkKey, SshEnrollment};
use ctap_core::store::config::Policy;
use ctap_core::transport::ctap2::authdata::AuthenticatorData;
use ctap_core::transport::ctap2::cbor;
use ctap_core::transport::ctap2::cose::Algorithm;
use ctap_core::transport::ctap2::ext::hmac_secret::HmacSalts;
use ctap_core::transport::ctap2::pin::{permission, Pin};
use ctap_core::transport::ctap2::{Ctap2, GetAssertionRequest, MakeCredentialRequest};
use ctap_core::transport::ctaphid::{self, cmd, CtapHidChannel, WaitDecision};
use ctap_core::transport::device::{Report, Transport, TransportError, UnixTransport};
use ctap_e2e::{SoftToken, TempDir};

/// The device's reports for each request, in order, shared with the transport.
type Exchanges = Arc<Mutex<Vec<Vec<Report>>>>;

/// Passes reports through and keeps what the key sends, one list per request.
struct Recording {
    inner: UnixTransport,
    log: Exchanges,
}

impl Transport for Recording {
    fn write_report(&mut self, report: &Report, timeout: Duration) -> Result<(), TransportError> {
        if report[4] & 0x80 != 0 {
            self.log.lock().unwrap().push(Vec::new());
        }
        self.inner.write_report(report, timeout)
    }
    fn read_report(&mut self, timeout: Duration) -> Result<Report, TransportError> {
        let r = self.inner.read_report(timeout)?;
        if let Some(last) = self.log.lock().unwrap().last_mut() {
            last.push(r);
        }
        Ok(r)
    }
    fn describe(&self) -> String {
        self.inner.describe()
    }
}

/// Replays one exchange's reports to reassemble its message.
struct Replay(std::collections::VecDeque<Report>);

impl Transport for Replay {
    fn write_report(&mut self, _: &Report, _timeout: Duration) -> Result<(), TransportError> {
        Ok(())
    }
    fn read_report(&mut self, _: Duration) -> Result<Report, TransportError> {
        self.0.pop_front().ok_or(TransportError::Disconnected)
    }
    fn describe(&self) -> String {
        "replay".into()
    }
}

struct Corpus {
    root: PathBuf,
    counts: BTreeMap<&'static str, usize>,
}

impl Corpus {
    /// Keep the corpus small: a few seeds per target are enough for the fuzzer to start from.
    fn put(&mut self, target: &'static str, name: &str, data: &[u8]) {
        if self.counts.get(target).copied().unwrap_or(0) >= 6 {
            return;
        }
        let dir = self.root.join(target);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join(name), data).unwrap();
        *self.counts.entry(target).or_default() += 1;
    }
}

#[derive(Default)]
struct Quiet;

impl Prompter for Quiet {
    fn touch_cue(&mut self, _: &str) {}
    fn request_pin(&mut self, _: &str) -> Option<Pin> {
        None
    }
    fn info(&mut self, _: &str) {}
}

fn go() -> impl FnMut(ctaphid::KeepaliveStatus) -> WaitDecision {
    |_| WaitDecision::Continue
}

fn ssh_string(out: &mut Vec<u8>, s: &[u8]) {
    out.extend_from_slice(&u32::try_from(s.len()).unwrap().to_be_bytes());
    out.extend_from_slice(s);
}

fn main() {
    let root = PathBuf::from(std::env::args().nth(1).expect("usage: fuzz_corpus DIR"));
    let mut corpus = Corpus {
        root,
        counts: BTreeMap::new(),
    };
    let dir = TempDir::new("fuzz-corpus");
    let key = SoftToken::start(dir.path(), &dir.path().join("key.state"), &[]);
    let log: Exchanges = Arc::default();
    let transport = Recording {
        inner: UnixTransport::connect(&key.socket).unwrap(),
        log: log.clone(),
    };
    let mut c = Ctap2::new(CtapHidChannel::open(transport).unwrap()).unwrap();
    let rp = "pam://fuzz";

    // makeCredential: both algorithms, with hmac-secret.
    let mut creds = Vec::new();
    for alg in [Algorithm::Es256, Algorithm::EdDsa] {
        let made = c
            .make_credential(
                &MakeCredentialRequest {
                    client_data_hash: [1; 32],
                    rp_id: rp.into(),
                    rp_name: None,
                    user_id: vec![1, 2, 3],
                    user_name: "alice".into(),
                    user_display_name: None,
                    algorithms: vec![alg],
                    exclude_list: Vec::new(),
                    resident_key: false,
                    user_verification: false,
                    hmac_secret: true,
                    cred_protect: None,
                },
                None,
                &mut go(),
            )
            .unwrap();
        creds.push(made.credential().clone());
    }
    let ids: Vec<Vec<u8>> = creds.iter().map(|c| c.credential_id.clone()).collect();
    let assertion = |up: bool, allow: Vec<Vec<u8>>, salts: Option<HmacSalts>| GetAssertionRequest {
        rp_id: rp.into(),
        client_data_hash: [2; 32],
        allow_list: allow,
        user_presence: up,
        user_verification: false,
        hmac_secret: salts,
    };
    // Probe, an unknown credential (error status), logins with one and two salts.
    c.get_assertion(&assertion(false, ids.clone(), None), None, &mut go())
        .unwrap();
    let _ = c.get_assertion(&assertion(false, vec![vec![0; 16]], None), None, &mut go());
    for id in &ids {
        let salts = HmacSalts {
            salt1: [3; 32],
            salt2: Some([4; 32]),
        };
        c.get_assertion(
            &assertion(true, vec![id.clone()], Some(salts)),
            None,
            &mut go(),
        )
        .unwrap();
    }
    // clientPIN: retries, set a PIN, then a token and a login with it.
    c.pin_retries().unwrap();
    c.set_pin(&Pin::new("4321".into()).unwrap()).unwrap();
    let token = c
        .pin_token(
            &Pin::new("4321".into()).unwrap(),
            permission::GET_ASSERTION,
            Some(rp),
        )
        .unwrap();
    c.get_assertion(
        &assertion(true, vec![ids[0].clone()], None),
        Some(&token),
        &mut go(),
    )
    .unwrap();
    let _ = c.pin_token(
        &Pin::new("0000".into()).unwrap(),
        permission::GET_ASSERTION,
        Some(rp),
    );

    // SSH: an sk key on the same key, and a signature over a userauth request.
    let mc_token = c
        .pin_token(
            &Pin::new("4321".into()).unwrap(),
            permission::MAKE_CREDENTIAL,
            Some("ssh:"),
        )
        .unwrap();
    let record = ssh::enroll_ssh_credential(
        &mut c,
        &SshEnrollment {
            application: "ssh:".into(),
            algorithm: SkAlgorithm::EcdsaP256,
            no_touch_required: false,
            verify_required: false,
            resident: false,
            user: String::new(),
            name: "fuzz".into(),
        },
        &Verification::ByToken(mc_token),
        &mut go(),
    )
    .unwrap();
    let sk = SkKey::from_record(&record).unwrap();
    let mut userauth = Vec::new();
    ssh_string(&mut userauth, &[0x5A; 32]);
    userauth.push(50);
    ssh_string(&mut userauth, b"alice");
    ssh_string(&mut userauth, b"ssh-connection");
    ssh_string(&mut userauth, b"publickey");
    userauth.push(1);
    ssh_string(&mut userauth, sk.algorithm().ssh_name().as_bytes());
    ssh_string(&mut userauth, &sk.public_blob());
    let pin = Pin::new("4321".into()).unwrap();
    let token = c
        .pin_token(&pin, permission::GET_ASSERTION, Some(&sk.application))
        .unwrap();
    let sig = ssh::sign(
        &mut c,
        &sk,
        &userauth,
        &Verification::ByToken(token),
        &mut go(),
    )
    .unwrap();

    // The key's side of every exchange: raw reports, messages, their parts.
    let exchanges = log.lock().unwrap().clone();
    let mut script = Vec::new();
    for (i, reports) in exchanges.iter().enumerate() {
        if reports.is_empty() {
            continue;
        }
        corpus.put("ctaphid", &format!("exchange-{i:02}"), &reports.concat());
        let cid = u32::from_be_bytes([reports[0][0], reports[0][1], reports[0][2], reports[0][3]]);
        if reports[0][4] != 0x80 | cmd::CBOR {
            continue;
        }
        let msg = ctaphid::read_message(
            &mut Replay(reports.iter().copied().collect()),
            cid,
            cmd::CBOR,
            ctaphid::MAX_MESSAGE,
            Instant::now() + Duration::from_secs(1),
            &mut go(),
        )
        .unwrap();
        script.extend_from_slice(&u16::try_from(msg.len()).unwrap().to_be_bytes());
        script.extend_from_slice(&msg);
        let Some(body) = msg.get(1..).filter(|b| !b.is_empty()) else {
            continue;
        };
        corpus.put("cbor", &format!("response-{i:02}"), body);
        let v = cbor::decode_strict(body).unwrap();
        let Value::Map(members) = &v else { continue };
        for (k, m) in members {
            match (k.as_integer().map(i128::from), m) {
                // makeCredential and getAssertion authData.
                (Some(2), Value::Bytes(ad)) => {
                    corpus.put("authenticator_data", &format!("authdata-{i:02}"), ad);
                    if let Ok(parsed) = AuthenticatorData::parse(ad) {
                        if let Some(att) = parsed.attested {
                            corpus.put(
                                "cose_key",
                                &format!("credential-{i:02}"),
                                &att.public_key.to_bytes(),
                            );
                        }
                    }
                }
                // clientPIN getKeyAgreement.
                (Some(1), Value::Map(key))
                    if key.iter().any(|(k, _)| k.as_integer() == Some(1.into())) =>
                {
                    corpus.put("cose_key", &format!("agreement-{i:02}"), &cbor::encode(m));
                }
                _ => {}
            }
        }
    }
    corpus.put("ctap2_responses", "session", &script);
    // Shorter scripts: getInfo then each single later answer, so each decoder is a few steps away.
    let mut answers = Vec::new();
    let mut rest = script.as_slice();
    while let [hi, lo, tail @ ..] = rest {
        let len = usize::from(u16::from_be_bytes([*hi, *lo]));
        answers.push(&rest[..2 + len]);
        rest = &tail[len..];
    }
    for (i, a) in answers.iter().enumerate().skip(1).take(8) {
        corpus.put(
            "ctap2_responses",
            &format!("info-then-{i:02}"),
            &[answers[0], a].concat(),
        );
    }

    // SSH formats.
    let openssh = sk.to_openssh_private().unwrap();
    corpus.put("ssh_key_files", "id_ecdsa_sk", openssh.as_bytes());
    corpus.put("ssh_key_files", "public-blob", &sk.public_blob());
    corpus.put("ssh_key_files", "private-fields", &sk.private_fields());
    corpus.put(
        "ssh_key_files",
        "authorized_keys",
        sk.authorized_keys_line().as_bytes(),
    );
    corpus.put("ssh_signed_data", "userauth", &userauth);
    corpus.put("ssh_signed_data", "signature", &sig.encoded);
    let mut sshsig = b"SSHSIG".to_vec();
    ssh_string(&mut sshsig, b"file");
    ssh_string(&mut sshsig, b"");
    ssh_string(&mut sshsig, b"sha512");
    ssh_string(&mut sshsig, &[0x11; 64]);
    corpus.put("ssh_signed_data", "sshsig", &sshsig);
    let mut sign_req = vec![13];
    ssh_string(&mut sign_req, &sk.public_blob());
    ssh_string(&mut sign_req, &userauth);
    sign_req.extend_from_slice(&0u32.to_be_bytes());
    corpus.put("agent_messages", "sign-request", &sign_req);
    corpus.put("agent_messages", "request-identities", &[11]);
    let mut add = vec![25];
    add.extend_from_slice(&sk.private_fields());
    ssh_string(&mut add, b"fuzz@host");
    add.push(1); // lifetime
    add.extend_from_slice(&600u32.to_be_bytes());
    add.push(255); // extension: sk-provider
    ssh_string(&mut add, b"sk-provider@openssh.com");
    ssh_string(&mut add, b"internal");
    corpus.put("agent_messages", "add-constrained", &add);
    let mut bind = vec![27];
    ssh_string(&mut bind, b"session-bind@openssh.com");
    ssh_string(&mut bind, &sk.public_blob());
    ssh_string(&mut bind, &[0x5A; 32]);
    ssh_string(&mut bind, &sig.encoded);
    bind.push(0);
    corpus.put("agent_messages", "session-bind", &bind);
    let mut lock = vec![22];
    ssh_string(&mut lock, b"passphrase");
    corpus.put("agent_messages", "lock", &lock);

    // pam-u2f lines for the credentials made (current format) and one old-format line.
    let b64 = ctap_core::store::credential::b64_encode;
    let mut lines = String::from("alice");
    for cred in &creds {
        let (pk, kind) = match &cred.public_key {
            ctap_core::transport::ctap2::cose::CoseKey::Es256 { x, y, .. } => {
                ([&x[..], &y[..]].concat(), "es256")
            }
            ctap_core::transport::ctap2::cose::CoseKey::EdDsa { x } => (x.to_vec(), "eddsa"),
        };
        lines.push_str(&format!(
            ":{},{},{kind},+presence",
            b64(&cred.credential_id),
            b64(&pk)
        ));
    }
    lines.push('\n');
    corpus.put("pamu2f", "current", lines.as_bytes());
    if let ctap_core::transport::ctap2::cose::CoseKey::Es256 { x, y, .. } = &creds[0].public_key {
        let point: String = [&[4u8][..], x, y]
            .concat()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        let handle = b64(&creds[0].credential_id)
            .replace('+', "-")
            .replace('/', "_");
        corpus.put(
            "pamu2f",
            "old",
            format!("bob:{handle},{point}\n").as_bytes(),
        );
    }
    key.stop();

    // Records and state as an enrollment writes them, and the shipped config.
    let key = SoftToken::start(dir.path(), &dir.path().join("key2.state"), &[]);
    let p = Policy {
        device: key.uri().parse().unwrap(),
        timeout: 10,
        records_dir: dir.path().join("users"),
        state_dir: dir.path().join("state"),
        ..Policy::default()
    };
    let mut keys = open_authenticators(&p.device, p.touch_timeout()).unwrap();
    enroll(
        &p.store(),
        &EnrollRequest {
            user: ctap_core::store::account::UserResolver::by_name(
                &ctap_core::store::account::Nss,
                "daemon",
            )
            .unwrap()
            .unwrap(),
            name: "virtual".into(),
            rp_id: Some(rp.into()),
            uv: UvPreference::Discouraged,
            pin_policy: p.pin,
        },
        &mut keys[0],
        &mut Quiet,
    )
    .unwrap();
    drop(keys);
    key.stop();
    let records = p.store().records_path("daemon").unwrap();
    let state = p.store().state_path("daemon").unwrap();
    corpus.put("files_toml", "records", &std::fs::read(records).unwrap());
    corpus.put("files_toml", "state", &std::fs::read(state).unwrap());
    let config = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../config/pam_ctap.toml");
    corpus.put(
        "files_toml",
        "pam_ctap.toml",
        &std::fs::read(config).unwrap(),
    );

    u2f_seeds(&mut corpus, dir.path());

    for (target, n) in &corpus.counts {
        println!("{target}: {n} files");
    }
}

/// U2F answers of a U2F-only key (`--ctap1-only`): version, register, check-only (held and
/// not), authenticate, each as the whole response APDU (the target splits off the status word
/// itself).
fn u2f_seeds(corpus: &mut Corpus, dir: &Path) {
    use ctap_core::transport::ctap1::Ctap1;
    use sha2::{Digest, Sha256};
    let key = SoftToken::start(dir, &dir.join("key-u2f.state"), &["--ctap1-only"]);
    let log: Exchanges = Arc::default();
    let transport = Recording {
        inner: UnixTransport::connect(&key.socket).unwrap(),
        log: log.clone(),
    };
    let mut u2f = Ctap1::open_until(transport, None).unwrap();
    let app: [u8; 32] = Sha256::digest(b"pam://fuzz").into();
    let reg = u2f.register(&app, &[0x11; 32], &mut go()).unwrap();
    let handle = reg.key_handle().to_vec();
    assert!(u2f.check_only(&app, &handle).unwrap());
    let mut other = handle.clone();
    other[0] ^= 1;
    assert!(!u2f.check_only(&app, &other).unwrap());
    u2f.authenticate(&app, &[0x22; 32], &handle, &mut go())
        .unwrap();
    drop(u2f);
    key.stop();
    let exchanges = log.lock().unwrap().clone();
    let mut n = 0;
    for reports in exchanges.iter().filter(|r| !r.is_empty()) {
        let cid = u32::from_be_bytes([reports[0][0], reports[0][1], reports[0][2], reports[0][3]]);
        if reports[0][4] != 0x80 | cmd::MSG {
            continue;
        }
        let msg = ctaphid::read_message(
            &mut Replay(reports.iter().copied().collect()),
            cid,
            cmd::MSG,
            ctaphid::MAX_MESSAGE,
            Instant::now() + Duration::from_secs(1),
            &mut go(),
        )
        .unwrap();
        corpus.put("u2f_responses", &format!("response-{n:02}"), &msg);
        n += 1;
    }
}
