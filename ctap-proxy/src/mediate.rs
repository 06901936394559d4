//! Strict mediation of CTAP2 messages: every request is decoded strictly (canonical CBOR, no
//! repeated keys, no tags), checked member by member against the client's policy and
//! re-encoded canonically before it reaches the key; every response is decoded, checked against
//! the request it answers and re-encoded before it reaches the client.
//!
//! The QSB-120 hole: a getAssertion's answer and every getNextAssertion answer must carry the
//! rpIdHash of the RP this client asked for and may use. The proxy tracks the pending
//! getAssertion itself ([`Session`]) and refuses getNextAssertion without one.

use ciborium::Value;
use sha2::{Digest, Sha256};

use ctap_core::transport::ctap2::authdata::{AuthenticatorData, Flags};
use ctap_core::transport::ctap2::cbor;

use crate::policy::{ClientPolicy, Command};

/// CTAP status bytes the proxy answers with.
pub mod status {
    pub const OK: u8 = 0x00;
    pub const INVALID_COMMAND: u8 = 0x01;
    pub const INVALID_LENGTH: u8 = 0x03;
    pub const CBOR_UNEXPECTED_TYPE: u8 = 0x11;
    pub const INVALID_CBOR: u8 = 0x12;
    pub const MISSING_PARAMETER: u8 = 0x14;
    pub const UNSUPPORTED_OPTION: u8 = 0x2B;
    pub const OPERATION_DENIED: u8 = 0x27;
    pub const OTHER: u8 = 0x7F;
}

/// CTAP2 command bytes.
pub mod command {
    pub const MAKE_CREDENTIAL: u8 = 0x01;
    pub const GET_ASSERTION: u8 = 0x02;
    pub const GET_INFO: u8 = 0x04;
    pub const CLIENT_PIN: u8 = 0x06;
    pub const RESET: u8 = 0x07;
    pub const GET_NEXT_ASSERTION: u8 = 0x08;
    pub const BIO_ENROLLMENT: u8 = 0x09;
    pub const CREDENTIAL_MANAGEMENT: u8 = 0x0A;
    pub const SELECTION: u8 = 0x0B;
    pub const LARGE_BLOBS: u8 = 0x0C;
    pub const CONFIG: u8 = 0x0D;
    pub const BIO_ENROLLMENT_PREVIEW: u8 = 0x40;
    pub const CREDENTIAL_MANAGEMENT_PREVIEW: u8 = 0x41;
}

/// clientPIN permissions a client may ask for: makeCredential (0x01) and getAssertion (0x02).
const PERMISSIONS_ALLOWED: u64 = 0x01 | 0x02;

/// Why a message was stopped, as a status for the client and a word for the audit line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Refusal {
    pub status: u8,
    pub reason: &'static str,
}

const fn refuse(status: u8, reason: &'static str) -> Refusal {
    Refusal { status, reason }
}

const DENIED: u8 = status::OPERATION_DENIED;

/// What the answer to a forwarded request must look like.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Expect {
    Info,
    Credential {
        rp_id: String,
    },
    Assertion {
        rp_id: String,
        allow: Vec<Vec<u8>>,
    },
    NextAssertion {
        rp_id: String,
    },
    Pin,
    /// selection: no body.
    Empty,
    /// A command the policy lets through without member checks (reset, credentialManagement,
    /// ...): the answer is still decoded strictly and re-encoded.
    Any,
}

/// A request that may go to the key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Forward {
    pub command: &'static str,
    pub rp_id: Option<String>,
    /// The command byte and its parameters in canonical CBOR.
    pub bytes: Vec<u8>,
    pub expect: Expect,
    /// Whether the key may wait for a touch (a long timeout).
    pub may_wait_for_touch: bool,
}

/// A request that must not reach the key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refused {
    pub command: &'static str,
    pub rp_id: Option<String>,
    pub refusal: Refusal,
}

/// What one client's getAssertion left pending.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Pending {
    rp_id: String,
    remaining: u64,
}

/// Per-client mediation state.
#[derive(Debug, Default)]
pub struct Session {
    pending: Option<Pending>,
}

impl Session {
    /// A request is about to be forwarded: every command other than getNextAssertion ends the
    /// pending getAssertion (the key's own rule, CTAP 2.1 §6.3).
    pub fn begin(&mut self, f: &Forward) {
        if !matches!(f.expect, Expect::NextAssertion { .. }) {
            self.pending = None;
        }
    }

    /// The request failed or was refused: nothing stays pending.
    pub fn clear(&mut self) {
        self.pending = None;
    }
}

pub fn command_name(byte: u8) -> &'static str {
    match byte {
        command::MAKE_CREDENTIAL => "makeCredential",
        command::GET_ASSERTION => "getAssertion",
        command::GET_INFO => "getInfo",
        command::CLIENT_PIN => "clientPIN",
        command::RESET => "reset",
        command::GET_NEXT_ASSERTION => "getNextAssertion",
        command::BIO_ENROLLMENT | command::BIO_ENROLLMENT_PREVIEW => "bioEnrollment",
        command::CREDENTIAL_MANAGEMENT | command::CREDENTIAL_MANAGEMENT_PREVIEW => {
            "credentialManagement"
        }
        command::SELECTION => "selection",
        command::LARGE_BLOBS => "largeBlobs",
        command::CONFIG => "authenticatorConfig",
        0x42..=0xBF => "vendor",
        _ => "unknown",
    }
}

fn policy_command(byte: u8) -> Option<Command> {
    Some(match byte {
        command::MAKE_CREDENTIAL => Command::MakeCredential,
        command::GET_ASSERTION => Command::GetAssertion,
        command::GET_INFO => Command::GetInfo,
        command::CLIENT_PIN => Command::ClientPin,
        command::RESET => Command::Reset,
        command::GET_NEXT_ASSERTION => Command::GetNextAssertion,
        command::BIO_ENROLLMENT | command::BIO_ENROLLMENT_PREVIEW => Command::BioEnrollment,
        command::CREDENTIAL_MANAGEMENT | command::CREDENTIAL_MANAGEMENT_PREVIEW => {
            Command::CredentialManagement
        }
        command::SELECTION => Command::Selection,
        command::LARGE_BLOBS => Command::LargeBlobs,
        command::CONFIG => Command::AuthenticatorConfig,
        0x42..=0xBF => Command::Vendor,
        _ => return None,
    })
}

// ---- CBOR member access -------------------------------------------------------------------

type Entries = [(Value, Value)];

fn as_map(v: &Value) -> Option<&Entries> {
    match v {
        Value::Map(m) => Some(m),
        _ => None,
    }
}

fn int_key(k: &Value) -> Option<i128> {
    match k {
        Value::Integer(i) => Some(i128::from(*i)),
        _ => None,
    }
}

fn get(m: &Entries, key: i128) -> Option<&Value> {
    m.iter()
        .find_map(|(k, v)| (int_key(k) == Some(key)).then_some(v))
}

fn get_text<'a>(m: &'a Entries, key: &str) -> Option<&'a Value> {
    m.iter()
        .find_map(|(k, v)| matches!(k, Value::Text(t) if t == key).then_some(v))
}

/// Every key an integer in `allowed`.
fn int_keys_in(m: &Entries, allowed: &[i128], unknown: Refusal) -> Result<(), Refusal> {
    if m.iter()
        .all(|(k, _)| int_key(k).is_some_and(|k| allowed.contains(&k)))
    {
        Ok(())
    } else {
        Err(unknown)
    }
}

/// Every key a text in `allowed`.
fn text_keys_in(m: &Entries, allowed: &[&str], unknown: Refusal) -> Result<(), Refusal> {
    if m.iter()
        .all(|(k, _)| matches!(k, Value::Text(t) if allowed.contains(&t.as_str())))
    {
        Ok(())
    } else {
        Err(unknown)
    }
}

fn is_bytes(v: &Value) -> bool {
    matches!(v, Value::Bytes(_))
}
fn is_text(v: &Value) -> bool {
    matches!(v, Value::Text(_))
}
fn is_uint(v: &Value) -> bool {
    matches!(v, Value::Integer(i) if i128::from(*i) >= 0)
}
fn as_uint(v: &Value) -> Option<u64> {
    match v {
        Value::Integer(i) => u64::try_from(i128::from(*i)).ok(),
        _ => None,
    }
}

/// Check an optional member with `ok`; a wrong type is `wrong`.
fn opt(m: &Entries, key: i128, ok: fn(&Value) -> bool, wrong: Refusal) -> Result<(), Refusal> {
    match get(m, key) {
        Some(v) if !ok(v) => Err(wrong),
        _ => Ok(()),
    }
}

const BAD_TYPE: Refusal = refuse(status::CBOR_UNEXPECTED_TYPE, "bad-request");
const MISSING: Refusal = refuse(status::MISSING_PARAMETER, "bad-request");
const UNKNOWN_MEMBER: Refusal = refuse(status::INVALID_CBOR, "unknown-member");

/// `{id: bytes, type: text, transports?: [text]}`.
fn is_descriptor(v: &Value) -> bool {
    let Some(m) = as_map(v) else { return false };
    text_keys_in(m, &["id", "type", "transports"], UNKNOWN_MEMBER).is_ok()
        && get_text(m, "id").is_some_and(is_bytes)
        && get_text(m, "type").is_some_and(is_text)
        && get_text(m, "transports")
            .is_none_or(|t| matches!(t, Value::Array(a) if a.iter().all(is_text)))
}

fn descriptor_list(v: &Value) -> Result<Vec<Vec<u8>>, Refusal> {
    let Value::Array(items) = v else {
        return Err(BAD_TYPE);
    };
    items
        .iter()
        .map(|d| {
            if !is_descriptor(d) {
                return Err(BAD_TYPE);
            }
            match as_map(d).and_then(|m| get_text(m, "id")) {
                Some(Value::Bytes(id)) => Ok(id.clone()),
                _ => Err(BAD_TYPE),
            }
        })
        .collect()
}

/// Options map: text keys, boolean values. Returns whether `uv` is true.
fn options_uv(v: &Value, allowed: &[&str]) -> Result<bool, Refusal> {
    let m = as_map(v).ok_or(BAD_TYPE)?;
    text_keys_in(
        m,
        allowed,
        refuse(status::UNSUPPORTED_OPTION, "unknown-option"),
    )?;
    if !m.iter().all(|(_, v)| matches!(v, Value::Bool(_))) {
        return Err(BAD_TYPE);
    }
    Ok(matches!(get_text(m, "uv"), Some(Value::Bool(true))))
}

fn is_entity(v: &Value, members: &[&str], id_bytes: bool) -> bool {
    let Some(m) = as_map(v) else { return false };
    text_keys_in(m, members, UNKNOWN_MEMBER).is_ok()
        && m.iter().all(|(k, v)| match k {
            Value::Text(t) if t == "id" && id_bytes => is_bytes(v),
            _ => is_text(v),
        })
}

/// Whether a request uses a PIN/UV auth token or built-in UV. An empty pinUvAuthParam is
/// CTAP 2.1's "touch to pick this key" probe and carries no token.
fn uses_uv(m: &Entries, param_key: i128, uv_option: bool) -> bool {
    uv_option || matches!(get(m, param_key), Some(Value::Bytes(b)) if !b.is_empty())
}

// ---- requests -------------------------------------------------------------------------------

/// Decide on one CTAP2 request (`payload` = command byte and CBOR parameters).
pub fn check_request(
    policy: &ClientPolicy,
    session: &Session,
    payload: &[u8],
) -> Result<Forward, Refused> {
    let Some((&byte, params)) = payload.split_first() else {
        return Err(Refused {
            command: "empty",
            rp_id: None,
            refusal: refuse(status::INVALID_LENGTH, "empty-request"),
        });
    };
    let name = command_name(byte);
    let fail = |rp_id: Option<String>, refusal| Refused {
        command: name,
        rp_id,
        refusal,
    };
    let Some(which) = policy_command(byte) else {
        return Err(fail(
            None,
            refuse(status::INVALID_COMMAND, "unknown-command"),
        ));
    };
    if !policy.allows(which) {
        return Err(fail(None, refuse(DENIED, "command-not-allowed")));
    }
    let value = if params.is_empty() {
        None
    } else {
        Some(
            cbor::decode_strict(params)
                .map_err(|_| fail(None, refuse(status::INVALID_CBOR, "malformed-cbor")))?,
        )
    };
    let bytes = {
        let mut b = vec![byte];
        if let Some(v) = &value {
            b.extend(cbor::encode(v));
        }
        b
    };
    let forward = |rp_id: Option<String>, expect, touch| Forward {
        command: name,
        rp_id,
        bytes: bytes.clone(),
        expect,
        may_wait_for_touch: touch,
    };
    match byte {
        command::GET_INFO | command::SELECTION | command::GET_NEXT_ASSERTION => {
            if value.is_some() {
                return Err(fail(
                    None,
                    refuse(status::INVALID_LENGTH, "unexpected-parameters"),
                ));
            }
            match byte {
                command::GET_INFO => Ok(forward(None, Expect::Info, false)),
                command::SELECTION => Ok(forward(None, Expect::Empty, true)),
                _ => match &session.pending {
                    Some(p) if p.remaining > 0 => Ok(forward(
                        Some(p.rp_id.clone()),
                        Expect::NextAssertion {
                            rp_id: p.rp_id.clone(),
                        },
                        false,
                    )),
                    _ => Err(fail(None, refuse(DENIED, "no-pending-assertion"))),
                },
            }
        }
        command::MAKE_CREDENTIAL => {
            let m = value.as_ref().and_then(as_map).ok_or(fail(None, MISSING))?;
            let rp_id = match get(m, 2).and_then(as_map).and_then(|rp| get_text(rp, "id")) {
                Some(Value::Text(t)) => t.clone(),
                _ => return Err(fail(None, MISSING)),
            };
            let with_rp = |refusal| fail(Some(rp_id.clone()), refusal);
            check_make_credential(policy, m).map_err(with_rp)?;
            Ok(forward(
                Some(rp_id.clone()),
                Expect::Credential { rp_id },
                true,
            ))
        }
        command::GET_ASSERTION => {
            let m = value.as_ref().and_then(as_map).ok_or(fail(None, MISSING))?;
            let rp_id = match get(m, 1) {
                Some(Value::Text(t)) => t.clone(),
                _ => return Err(fail(None, MISSING)),
            };
            let allow =
                check_get_assertion(policy, m, &rp_id).map_err(|r| fail(Some(rp_id.clone()), r))?;
            Ok(forward(
                Some(rp_id.clone()),
                Expect::Assertion { rp_id, allow },
                true,
            ))
        }
        command::CLIENT_PIN => {
            let m = value.as_ref().and_then(as_map).ok_or(fail(None, MISSING))?;
            let rp_id = match get(m, 0x0A) {
                Some(Value::Text(t)) => Some(t.clone()),
                _ => None,
            };
            let touch = check_client_pin(policy, m).map_err(|r| fail(rp_id.clone(), r))?;
            Ok(forward(rp_id, Expect::Pin, touch))
        }
        // Commands only a policy's `commands` list lets through: decoded and re-encoded,
        // not inspected.
        _ => Ok(forward(None, Expect::Any, true)),
    }
}

fn check_make_credential(policy: &ClientPolicy, m: &Entries) -> Result<(), Refusal> {
    int_keys_in(m, &[1, 2, 3, 4, 5, 6, 7, 8, 9, 0x0A, 0x0B], UNKNOWN_MEMBER)?;
    if !policy.make_credential {
        return Err(refuse(DENIED, "make-credential-not-allowed"));
    }
    match get(m, 1) {
        Some(Value::Bytes(b)) if b.len() == 32 => {}
        Some(_) => return Err(BAD_TYPE),
        None => return Err(MISSING),
    }
    if !get(m, 2).is_some_and(|v| is_entity(v, &["id", "name", "icon"], false)) {
        return Err(BAD_TYPE);
    }
    let rp_id = match get(m, 2).and_then(as_map).and_then(|rp| get_text(rp, "id")) {
        Some(Value::Text(t)) => t,
        _ => return Err(MISSING),
    };
    if !get(m, 3).is_some_and(|v| is_entity(v, &["id", "name", "displayName", "icon"], true))
        || !get(m, 3)
            .and_then(as_map)
            .and_then(|u| get_text(u, "id"))
            .is_some_and(is_bytes)
    {
        return Err(BAD_TYPE);
    }
    match get(m, 4) {
        Some(Value::Array(params)) if params.iter().all(|p| as_map(p).is_some()) => {}
        Some(_) => return Err(BAD_TYPE),
        None => return Err(MISSING),
    }
    if let Some(v) = get(m, 5) {
        descriptor_list(v)?;
    }
    opt(m, 6, |v| as_map(v).is_some(), BAD_TYPE)?;
    let uv_option = match get(m, 7) {
        Some(v) => options_uv(v, &["rk", "uv", "up"])?,
        None => false,
    };
    opt(m, 8, is_bytes, BAD_TYPE)?;
    opt(m, 9, is_uint, BAD_TYPE)?;
    if get(m, 0x0A).is_some() {
        return Err(refuse(DENIED, "enterprise-attestation"));
    }
    if !policy.rp_allowed(rp_id) {
        return Err(refuse(DENIED, "rp-not-allowed"));
    }
    if uses_uv(m, 8, uv_option) && !policy.user_verification {
        return Err(refuse(DENIED, "uv-not-allowed"));
    }
    Ok(())
}

fn check_get_assertion(
    policy: &ClientPolicy,
    m: &Entries,
    rp_id: &str,
) -> Result<Vec<Vec<u8>>, Refusal> {
    int_keys_in(m, &[1, 2, 3, 4, 5, 6, 7], UNKNOWN_MEMBER)?;
    match get(m, 2) {
        Some(Value::Bytes(b)) if b.len() == 32 => {}
        Some(_) => return Err(BAD_TYPE),
        None => return Err(MISSING),
    }
    let allow = match get(m, 3) {
        Some(v) => descriptor_list(v)?,
        None => Vec::new(),
    };
    opt(m, 4, |v| as_map(v).is_some(), BAD_TYPE)?;
    let uv_option = match get(m, 5) {
        Some(v) => options_uv(v, &["up", "uv", "rk"])?,
        None => false,
    };
    opt(m, 6, is_bytes, BAD_TYPE)?;
    opt(m, 7, is_uint, BAD_TYPE)?;
    if !policy.rp_allowed(rp_id) {
        return Err(refuse(DENIED, "rp-not-allowed"));
    }
    if uses_uv(m, 6, uv_option) && !policy.user_verification {
        return Err(refuse(DENIED, "uv-not-allowed"));
    }
    Ok(allow)
}

/// clientPIN: retries and key agreement always; tokens only with UV allowed, permissions
/// within mc/ga and an RP ID the client may use; setPIN, changePIN and the rest never.
/// Returns whether the key may wait for the user (built-in UV).
fn check_client_pin(policy: &ClientPolicy, m: &Entries) -> Result<bool, Refusal> {
    int_keys_in(m, &[1, 2, 3, 4, 5, 6, 9, 0x0A], UNKNOWN_MEMBER)?;
    opt(m, 1, is_uint, BAD_TYPE)?;
    opt(m, 3, |v| as_map(v).is_some(), BAD_TYPE)?;
    for k in [4, 5, 6] {
        opt(m, k, is_bytes, BAD_TYPE)?;
    }
    opt(m, 9, is_uint, BAD_TYPE)?;
    opt(m, 0x0A, is_text, BAD_TYPE)?;
    let sub = get(m, 2)
        .ok_or(MISSING)
        .and_then(|v| as_uint(v).ok_or(BAD_TYPE))?;
    match sub {
        // getPINRetries, getKeyAgreement, getUVRetries.
        0x01 | 0x02 | 0x07 => Ok(false),
        // setPIN, changePIN.
        0x03 | 0x04 => Err(refuse(DENIED, "pin-change")),
        // getPinToken (CTAP 2.0): no permissions or RP ID, but every request it authorises
        // comes through this mediation again.
        0x05 => {
            if !policy.user_verification {
                return Err(refuse(DENIED, "uv-not-allowed"));
            }
            Ok(false)
        }
        // getPinUvAuthTokenUsingUvWithPermissions, ...UsingPinWithPermissions.
        0x06 | 0x09 => {
            if !policy.user_verification {
                return Err(refuse(DENIED, "uv-not-allowed"));
            }
            let permissions = get(m, 9).and_then(as_uint).ok_or(MISSING)?;
            if permissions == 0 || permissions & !PERMISSIONS_ALLOWED != 0 {
                return Err(refuse(DENIED, "permissions"));
            }
            if permissions & 0x01 != 0
                && !(policy.make_credential && policy.allows(Command::MakeCredential))
            {
                return Err(refuse(DENIED, "permissions"));
            }
            match get(m, 0x0A) {
                Some(Value::Text(rp)) if policy.rp_allowed(rp) => Ok(sub == 0x06),
                Some(_) => Err(refuse(DENIED, "rp-not-allowed")),
                None => Err(refuse(DENIED, "permissions-without-rp-id")),
            }
        }
        _ => Err(refuse(DENIED, "pin-subcommand")),
    }
}

// ---- responses ------------------------------------------------------------------------------

const KEY_BAD: Refusal = refuse(status::OTHER, "key-bad-response");

/// Check the key's answer to `f` and re-encode it for the client. A non-zero status passes as
/// the status alone; a body that is not what `f` expects is refused with CTAP1_ERR_OTHER.
pub fn check_response(
    f: &Forward,
    session: &mut Session,
    response: &[u8],
) -> Result<Vec<u8>, Refusal> {
    let result = check_response_inner(f, session, response);
    if result.is_err() {
        session.clear();
    }
    result
}

fn check_response_inner(
    f: &Forward,
    session: &mut Session,
    response: &[u8],
) -> Result<Vec<u8>, Refusal> {
    let (&code, body) = response.split_first().ok_or(KEY_BAD)?;
    if code != status::OK {
        session.clear();
        return Ok(vec![code]);
    }
    if body.is_empty() {
        return match f.expect {
            Expect::Empty | Expect::Any => Ok(vec![status::OK]),
            _ => Err(KEY_BAD),
        };
    }
    let value =
        cbor::decode_strict(body).map_err(|_| refuse(status::OTHER, "key-malformed-cbor"))?;
    let m = as_map(&value).ok_or(KEY_BAD)?;
    if !matches!(f.expect, Expect::Any) && !m.iter().all(|(k, _)| int_key(k).is_some()) {
        return Err(KEY_BAD);
    }
    match &f.expect {
        Expect::Empty => return Err(KEY_BAD),
        Expect::Info | Expect::Any | Expect::Pin => {}
        Expect::Credential { rp_id } => {
            int_keys_in(m, &[1, 2, 3, 4, 5, 6], KEY_BAD)?;
            let att_stmt_is_map = get(m, 3).is_some_and(|v| as_map(v).is_some());
            if !get(m, 1).is_some_and(is_text) || !att_stmt_is_map {
                return Err(KEY_BAD);
            }
            let Some(Value::Bytes(raw)) = get(m, 2) else {
                return Err(KEY_BAD);
            };
            let ad = AuthenticatorData::parse(raw).map_err(|_| KEY_BAD)?;
            if ad.rp_id_hash != rp_hash(rp_id) {
                return Err(refuse(status::OTHER, "key-rp-mismatch"));
            }
            if ad.attested.is_none() {
                return Err(KEY_BAD);
            }
        }
        Expect::Assertion { rp_id, allow } => {
            let n = check_assertion(m, rp_id, allow)?;
            session.pending = n.filter(|&n| n > 1).map(|n| Pending {
                rp_id: rp_id.clone(),
                remaining: n - 1,
            });
        }
        Expect::NextAssertion { rp_id } => {
            check_assertion(m, rp_id, &[])?;
            match &mut session.pending {
                Some(p) if p.remaining > 1 => p.remaining -= 1,
                _ => session.pending = None,
            }
        }
    }
    let mut out = vec![status::OK];
    out.extend(cbor::encode(&value));
    Ok(out)
}

fn rp_hash(rp_id: &str) -> [u8; 32] {
    Sha256::digest(rp_id.as_bytes()).into()
}

/// A getAssertion or getNextAssertion answer: for `rp_id`, a credential from `allow` (when
/// the request named any), no attested credential data. Returns numberOfCredentials.
fn check_assertion(m: &Entries, rp_id: &str, allow: &[Vec<u8>]) -> Result<Option<u64>, Refusal> {
    int_keys_in(m, &[1, 2, 3, 4, 5, 6, 7, 8], KEY_BAD)?;
    let Some(Value::Bytes(raw)) = get(m, 2) else {
        return Err(KEY_BAD);
    };
    if !get(m, 3).is_some_and(is_bytes) {
        return Err(KEY_BAD);
    }
    let ad = AuthenticatorData::parse(raw).map_err(|_| KEY_BAD)?;
    if ad.rp_id_hash != rp_hash(rp_id) {
        return Err(refuse(status::OTHER, "key-rp-mismatch"));
    }
    if ad.flags.0 & Flags::AT != 0 || ad.attested.is_some() {
        return Err(KEY_BAD);
    }
    let credential = match get(m, 1) {
        Some(d) if is_descriptor(d) => match as_map(d).and_then(|d| get_text(d, "id")) {
            Some(Value::Bytes(id)) => Some(id.clone()),
            _ => return Err(KEY_BAD),
        },
        Some(_) => return Err(KEY_BAD),
        None if allow.len() == 1 => Some(allow[0].clone()),
        None => return Err(KEY_BAD),
    };
    if !allow.is_empty() && !credential.is_some_and(|c| allow.contains(&c)) {
        return Err(refuse(status::OTHER, "key-credential-not-asked-for"));
    }
    if let Some(u) = get(m, 4) {
        if !is_entity(u, &["id", "name", "displayName", "icon"], true) {
            return Err(KEY_BAD);
        }
    }
    let n = match get(m, 5) {
        Some(v) => Some(as_uint(v).ok_or(KEY_BAD)?),
        None => None,
    };
    if !matches!(get(m, 6), None | Some(Value::Bool(_))) || !get(m, 7).is_none_or(is_bytes) {
        return Err(KEY_BAD);
    }
    Ok(n)
}

#[cfg(test)]
#[path = "mediate_tests.rs"]
mod tests;
