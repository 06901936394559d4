//! The bodies of the fuzz targets in `fuzz/`: each takes arbitrary bytes, feeds them to one of
//! the parsers that read what a key, a file or a peer sends, and panics only when a property the
//! parser promises is broken (a crash is what a fuzzer looks for). Built only for tests and with
//! the `fuzzing` feature, so none of it reaches the PAM module.
//!
//! Three callers share these bodies: cargo-fuzz (`fuzz/fuzz_targets/*.rs`, nightly), a stable
//! replay of the seed corpus (`cargo test` in `fuzz/`), and a proptest here on random input.
#![allow(clippy::panic)]

use std::collections::VecDeque;
use std::path::Path;
use std::time::{Duration, Instant};

use crate::transport::ctap2::authdata::AuthenticatorData;
use crate::transport::ctap2::cbor::{self, CborMap};
use crate::transport::ctap2::cose::CoseKey;
use crate::transport::ctap2::ext::hmac_secret::HmacSalts;
use crate::transport::ctap2::info::AuthenticatorInfo;
use crate::transport::ctap2::pin::{permission, Pin, PinUvProtocol};
use crate::transport::ctap2::{Ctap2, GetAssertionRequest, MakeCredentialRequest};
use crate::transport::ctaphid::{self, cmd, CtapHidChannel, WaitDecision};
use crate::transport::device::{Report, Transport, TransportError, REPORT_SIZE};

/// CTAPHID reassembly: the input is a stream of 64-byte reports from a device (the last one
/// zero-padded), read as the answer to a CBOR request on the first report's channel.
pub fn ctaphid(data: &[u8]) {
    let reports: VecDeque<Report> = data
        .chunks(REPORT_SIZE)
        .map(|c| {
            let mut r = [0u8; REPORT_SIZE];
            r[..c.len()].copy_from_slice(c);
            r
        })
        .collect();
    let Some(first) = reports.front() else {
        return;
    };
    let cid = u32::from_be_bytes([first[0], first[1], first[2], first[3]]);
    let max_len = usize::from(u16::from_be_bytes([first[5], first[6]])) / 2 + 1024;
    let mut t = Replay {
        reports,
        written: 0,
    };
    let deadline = Instant::now() + Duration::from_secs(5);
    if let Ok(msg) = ctaphid::read_message(&mut t, cid, cmd::CBOR, max_len, deadline, &mut |_| {
        WaitDecision::Continue
    }) {
        assert!(
            msg.len() <= max_len,
            "message of {} bytes past the limit {max_len}",
            msg.len()
        );
    }
}

/// The strict CBOR decoder: what it accepts is canonical (re-encodes to the same bytes) and
/// holds no map with a repeated key.
pub fn cbor(data: &[u8]) {
    if let Ok(v) = cbor::decode_strict(data) {
        assert_eq!(
            cbor::encode(&v),
            data,
            "accepted CBOR that is not canonical"
        );
        assert_no_repeated_key(&v);
    }
    if let Ok((v, used)) = cbor::decode_strict_prefix(data) {
        assert_eq!(
            cbor::encode(&v),
            &data[..used],
            "accepted a non-canonical prefix"
        );
    }
}

fn assert_no_repeated_key(v: &ciborium::Value) {
    match v {
        ciborium::Value::Map(entries) => {
            assert!(
                CborMap::new(v, "fuzzed map").is_ok(),
                "accepted a repeated key"
            );
            for (k, v) in entries {
                assert_no_repeated_key(k);
                assert_no_repeated_key(v);
            }
        }
        ciborium::Value::Array(items) => items.iter().for_each(assert_no_repeated_key),
        _ => {}
    }
}

/// Every typed CTAP2 response, through the real client: the input is a list of responses
/// (status byte and CBOR, each after a 2-byte big-endian length) that a scripted key answers
/// requests with, in order: getInfo, then getAssertion (probe), getPINRetries, getKeyAgreement,
/// a PIN token, makeCredential, getAssertion with hmac-secret, getNextAssertion. A short script
/// ends the session early, as an unplugged key would.
pub fn ctap2_responses(data: &[u8]) {
    let mut answers = VecDeque::new();
    let mut rest = data;
    while let [hi, lo, tail @ ..] = rest {
        let len = usize::from(u16::from_be_bytes([*hi, *lo])).min(tail.len());
        answers.push_back(tail[..len].to_vec());
        rest = &tail[len..];
    }
    if let Some(first) = answers.front() {
        // getInfo is also fuzzed on its own, so a script whose first answer is bad still reaches
        // the typed decoder.
        if let Some(body) = first.get(1..) {
            if let Ok(v) = cbor::decode_strict(body) {
                let _ = AuthenticatorInfo::from_value(&v);
            }
        }
    }
    let Ok(hid) = CtapHidChannel::open(ScriptedKey::new(answers)) else {
        return;
    };
    let Ok(mut key) = Ctap2::new(hid) else {
        return;
    };
    key.set_touch_timeout(Duration::from_secs(5));
    let go = &mut |_| WaitDecision::Continue;
    let probe = GetAssertionRequest {
        rp_id: "pam://fuzz".into(),
        client_data_hash: [1; 32],
        allow_list: vec![vec![9; 16], vec![8; 16]],
        user_presence: false,
        user_verification: false,
        hmac_secret: None,
    };
    let _ = key.get_assertion(&probe, None, go);
    let _ = key.pin_retries();
    let protocol = key.pin_protocol().unwrap_or(PinUvProtocol::V2);
    let _ = key.key_agreement(protocol);
    if let Ok(pin) = Pin::new("1234".into()) {
        let _ = key.pin_token(&pin, permission::GET_ASSERTION, Some("pam://fuzz"));
    }
    let make = MakeCredentialRequest {
        client_data_hash: [2; 32],
        rp_id: "pam://fuzz".into(),
        rp_name: None,
        user_id: vec![1],
        user_name: "fuzz".into(),
        user_display_name: None,
        algorithms: vec![crate::transport::ctap2::cose::Algorithm::Es256],
        exclude_list: Vec::new(),
        resident_key: false,
        user_verification: false,
        hmac_secret: true,
        cred_protect: None,
    };
    if let Ok(made) = key.make_credential(&make, None, go) {
        let _ = made.hmac_secret_enabled();
    }
    let login = GetAssertionRequest {
        user_presence: true,
        hmac_secret: Some(HmacSalts {
            salt1: [3; 32],
            salt2: Some([4; 32]),
        }),
        ..probe
    };
    let _ = key.get_assertion(&login, None, go);
    let _ = key.get_next_assertion();
}

/// authenticatorData: a parse that succeeds read every byte, and an assertion never carries
/// attested credential data.
pub fn authenticator_data(data: &[u8]) {
    if let Ok(ad) = AuthenticatorData::parse(data) {
        assert_eq!(ad.raw, data);
        if let Some(att) = &ad.attested {
            let again = CoseKey::from_bytes(&att.public_key.to_bytes());
            assert_eq!(again.ok().as_ref(), Some(&att.public_key));
        }
        if let Some(ext) = &ad.extensions {
            assert_no_repeated_key(ext);
        }
    }
    if let Ok(ad) = AuthenticatorData::parse_assertion(data) {
        assert!(ad.attested.is_none(), "an assertion with attested data");
    }
}

/// COSE keys: one that parses re-encodes to a key that parses the same.
pub fn cose_key(data: &[u8]) {
    if let Ok(key) = CoseKey::from_bytes(data) {
        let again = CoseKey::from_bytes(&key.to_bytes());
        assert_eq!(again.ok(), Some(key.clone()));
        let _ = key.verify(data, data);
    }
}

/// CTAP1/U2F answers as a U2F-only key sends them: the response APDU split into data and
/// status word, then the data read as a registration and as an authentication. What the
/// parsers accept keeps their promises: an error status carries no data; a registration's
/// public key is an uncompressed P-256 point and its key handle is not empty (and checking it
/// never panics); an authentication has no reserved flag bits and one canonical DER signature
/// that ends the response.
pub fn u2f_responses(data: &[u8]) {
    use crate::transport::ctap1::{apdu, verify_registration, StatusWord};
    use crate::transport::ctap1::{AuthenticateResponse, RegisterResponse};
    // The input as a whole response APDU, and as the data a split leaves.
    let mut bodies = vec![data];
    if let Ok((body, sw)) = apdu::split(data) {
        assert_eq!(body.len() + 2, data.len());
        assert!(
            sw == StatusWord::NoError || body.is_empty(),
            "{sw} with data"
        );
        bodies.push(body);
    }
    for body in bodies {
        if let Ok(r) = RegisterResponse::parse(body) {
            assert!(!r.key_handle().is_empty(), "an empty key handle");
            assert_eq!(r.public_key()[0], 0x04);
            assert!(p256::PublicKey::from_sec1_bytes(r.public_key()).is_ok());
            let _ = verify_registration(&r, &[0; 32], &[0; 32]);
        }
        if let Ok(a) = AuthenticateResponse::parse(body) {
            assert_eq!(a.flags & !0x01, 0, "reserved flag bits");
            assert_eq!(
                5 + a.signature.len(),
                body.len(),
                "bytes after the signature"
            );
            let der = p256::ecdsa::Signature::from_der(&a.signature).map(|s| s.to_der());
            assert_eq!(
                der.ok().as_ref().map(|d| d.as_bytes()),
                Some(&a.signature[..])
            );
        }
    }
}

/// Records, state and config files (TOML), read as the store and the policy read them,
/// including the error messages that quote the offending line.
pub fn files_toml(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let path = Path::new("/fuzz/file.toml");
    match toml::from_str::<crate::store::credential::CredentialFile>(text) {
        Ok(file) => {
            // Keys were parsed while loading; what is left is the file-wide check.
            let _ = file.validate();
        }
        Err(e) => {
            let _ = crate::store::credential::StoreError::parse(path, text, &e).to_string();
        }
    }
    match toml::from_str::<crate::store::credential::StateFile>(text) {
        Ok(state) => {
            let _ = toml::to_string(&state);
        }
        Err(e) => {
            let _ = crate::store::credential::StoreError::parse(path, text, &e).to_string();
        }
    }
    if let Ok(policy) = crate::store::config::Policy::parse(path, text) {
        let _ = policy.touch_timeout();
    }
}

#[cfg(feature = "ssh")]
/// OpenSSH sk key files, public key blobs, certificates and the agent's private-key fields.
pub fn ssh_key_files(data: &[u8]) {
    if let Ok(k) = crate::ssh::SkKey::from_openssh_private(&String::from_utf8_lossy(data)) {
        let _ = k.authorized_keys_line();
        let _ = k.to_openssh_private();
    }
    if let Ok((key, _)) = crate::ssh::SkKey::parse_public_blob(data) {
        let _ = key.to_bytes();
    }
    let _ = crate::ssh::SkKey::read_private(&mut crate::ssh::wire::Reader::new(data));
    if let Ok(c) = crate::ssh::SkCertificate::from_blob(data) {
        let _ = (c.key_fingerprint(), c.validity_at(0));
    }
    let _ = crate::ssh::SkCertificate::read_private(&mut crate::ssh::wire::Reader::new(data));
}

#[cfg(feature = "ssh")]
/// What an agent client asks an sk key to sign (userauth requests, SSHSIG blobs), sk signatures
/// and host-key signatures over a session id.
pub fn ssh_signed_data(data: &[u8]) {
    let key = fixed_sk_key();
    let blob = key.public_blob();
    let _ = crate::ssh::request::classify(&blob, crate::ssh::key::SK_ED25519, data).is_ssh();
    let _ = crate::ssh::verify_sk_signature(&key, b"data", data);
    let third = data.len() / 3;
    let (a, rest) = data.split_at(third);
    let (b, c) = rest.split_at(third);
    let _ = crate::ssh::verify_host_signature(a, b, c);
}

#[cfg(feature = "ssh")]
fn fixed_sk_key() -> crate::ssh::SkKey {
    let sk = ed25519_dalek::SigningKey::from_bytes(&[9; 32]);
    let key = CoseKey::EdDsa {
        x: sk.verifying_key().to_bytes(),
    };
    match crate::ssh::SkKey::new(key, "ssh:".into(), 0x01, vec![7; 32], String::new()) {
        Ok(k) => k,
        Err(e) => panic!("fixed fuzz key: {e}"),
    }
}

/// Reports handed out in order; nothing after them but a closed connection.
struct Replay {
    reports: VecDeque<Report>,
    written: usize,
}

impl Transport for Replay {
    fn write_report(&mut self, _report: &Report, _timeout: Duration) -> Result<(), TransportError> {
        self.written += 1;
        Ok(())
    }
    fn read_report(&mut self, _timeout: Duration) -> Result<Report, TransportError> {
        self.reports.pop_front().ok_or(TransportError::Disconnected)
    }
    fn describe(&self) -> String {
        "fuzz replay".into()
    }
}

/// A key that frames its answers correctly (INIT echoes the nonce) and answers each CBOR
/// request with the next scripted response.
struct ScriptedKey {
    answers: VecDeque<Vec<u8>>,
    pending: VecDeque<Report>,
    request: Option<(u8, usize, usize)>,
}

const FUZZ_CID: u32 = 0x0102_0304;

impl ScriptedKey {
    fn new(answers: VecDeque<Vec<u8>>) -> Self {
        ScriptedKey {
            answers,
            pending: VecDeque::new(),
            request: None,
        }
    }

    fn answer(&mut self, cid: u32, command: u8, payload: &[u8]) {
        let mut frames = Framer(Vec::new());
        if ctaphid::write_message(
            &mut frames,
            cid,
            command,
            payload,
            std::time::Instant::now() + Duration::from_secs(1),
        )
        .is_ok()
        {
            self.pending.extend(frames.0);
        }
    }
}

/// Collects the reports `write_message` makes.
struct Framer(Vec<Report>);

impl Transport for Framer {
    fn write_report(&mut self, report: &Report, _timeout: Duration) -> Result<(), TransportError> {
        self.0.push(*report);
        Ok(())
    }
    fn read_report(&mut self, _timeout: Duration) -> Result<Report, TransportError> {
        Err(TransportError::Disconnected)
    }
    fn describe(&self) -> String {
        "framer".into()
    }
}

impl Transport for ScriptedKey {
    fn write_report(&mut self, r: &Report, _timeout: Duration) -> Result<(), TransportError> {
        if r[4] == 0x80 | cmd::INIT {
            let mut payload = r[7..15].to_vec();
            payload.extend_from_slice(&FUZZ_CID.to_be_bytes());
            payload.extend_from_slice(&[2, 5, 4, 3, 0x05]);
            self.answer(0xFFFF_FFFF, cmd::INIT, &payload);
            return Ok(());
        }
        // Count the request's bytes, to answer once it is whole; the content does not matter.
        if r[4] & 0x80 != 0 {
            let len = usize::from(u16::from_be_bytes([r[5], r[6]]));
            self.request = Some((r[4] & 0x7F, len, len.min(57)));
        } else if let Some((_, _, got)) = self.request.as_mut() {
            *got += 59;
        }
        if let Some((command, len, got)) = self.request {
            if got >= len {
                self.request = None;
                if command == cmd::CBOR {
                    let answer = self.answers.pop_front();
                    if let Some(a) = answer {
                        self.answer(FUZZ_CID, cmd::CBOR, &a);
                    }
                }
            }
        }
        Ok(())
    }
    fn read_report(&mut self, _timeout: Duration) -> Result<Report, TransportError> {
        self.pending.pop_front().ok_or(TransportError::Disconnected)
    }
    fn describe(&self) -> String {
        "fuzz scripted key".into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        /// Every fuzz target's body on random input: the harness runs in every `cargo test`,
        /// whether or not a nightly toolchain is there for cargo-fuzz.
        #[test]
        fn fuzz_targets_hold_on_random_input(data in proptest::collection::vec(any::<u8>(), 0..700)) {
            ctaphid(&data);
            cbor(&data);
            ctap2_responses(&data);
            authenticator_data(&data);
            cose_key(&data);
            u2f_responses(&data);
            files_toml(&data);
            #[cfg(feature = "ssh")]
            ssh_key_files(&data);
            #[cfg(feature = "ssh")]
            ssh_signed_data(&data);
        }
    }

    /// A well-formed script reaches the typed decoders (not only the framing): getInfo parses
    /// and the probe's answer comes back.
    #[test]
    fn a_scripted_session_reaches_the_typed_decoders() {
        let info = cbor::int_map(vec![
            (
                1,
                Some(ciborium::Value::Array(vec![ciborium::Value::Text(
                    "FIDO_2_0".into(),
                )])),
            ),
            (3, Some(ciborium::Value::Bytes(vec![0xAA; 16]))),
        ]);
        let info = [vec![0], cbor::encode(&info)].concat();
        let hid = CtapHidChannel::open(ScriptedKey::new(
            vec![info, vec![0x2E]].into_iter().collect(),
        ))
        .unwrap();
        let mut key = Ctap2::new(hid).unwrap();
        assert_eq!(key.info().versions, vec!["FIDO_2_0"]);
        let probe = GetAssertionRequest {
            rp_id: "pam://fuzz".into(),
            client_data_hash: [1; 32],
            allow_list: vec![vec![9; 16]],
            user_presence: false,
            user_verification: false,
            hmac_secret: None,
        };
        let err = key
            .get_assertion(&probe, None, &mut |_| WaitDecision::Continue)
            .err()
            .unwrap();
        assert!(
            err.to_string().to_lowercase().contains("credential"),
            "{err}"
        );
    }
}
