//! Deliberate misbehaviour (`--fault`), so client code can be tested against a hostile or broken
//! key. Faults hit authenticatorGetAssertion (0x02) only, except `slow-answer`, which delays
//! every CTAP2 command: a key can be enrolled normally, then restarted on the same state with a
//! fault and misbehave at login. The `u2f-*` faults hit CTAP1/U2F (CTAPHID_MSG) only:
//! U2F_AUTHENTICATE that signs (not the check-only probe), except `u2f-other-appid`, which hits
//! U2F_REGISTER. `no-keepalive` changes no answer: it withholds the KEEPALIVEs of every request.

use std::time::Duration;

use ciborium::Value;
use ctap_core::transport::ctap2::cbor;

/// CTAP2 command byte of authenticatorGetAssertion.
const GET_ASSERTION: u8 = 0x02;

/// A way for the key to misbehave.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// Flip a byte of the signature (response member 3); the rest stays valid, canonical CBOR.
    CorruptSignature,
    /// Send the first report of the response cut short, then close the connection.
    TruncateReport,
    /// Answer status 0 followed by bytes that are not well-formed CBOR.
    MalformedCbor,
    /// Send PROCESSING keepalives forever and never answer.
    StallKeepalive,
    /// Close the connection right after reading the request.
    DropConnection,
    /// Answer with an unknown status byte (0xF3) and no data.
    BadStatus,
    /// Answer on a different channel id than the request's.
    WrongChannel,
    /// Timing: answer every CTAP2 command (getInfo, clientPIN, getAssertion) [`SLOW_ANSWER`]
    /// late, with PROCESSING keepalives meanwhile: each answer within any per-command limit.
    SlowAnswer,
    /// Timing: PROCESSING keepalives forever in answer to silent (up = false) probes only.
    ProbeKeepalive,
    /// Timing: PROCESSING keepalives forever in answer to getAssertions that ask for a touch
    /// (up = true); silent probes are answered normally, so the key is found holding the
    /// credential and then hangs at the login's assertion.
    AssertionKeepalive,
    /// Timing: send the response one byte at a time, [`TRICKLE_INTERVAL`] apart.
    Trickle,
    /// Timing: send the first report of the response, then nothing (the connection stays open).
    StallMidMessage,
    /// Timing: answer every getAssertion with CTAPHID ERROR CHANNEL_BUSY.
    BusyForever,
    /// Timing: send no KEEPALIVE at all, for any request (a key that stays silent while it
    /// waits for a touch); answers are otherwise normal.
    NoKeepalive,
    /// Protocol strictness: repeat the signature member (3) after the real one, with junk.
    DuplicateKey,
    /// Protocol strictness: set the AT flag in the assertion's authenticatorData.
    AtFlag,
    /// Protocol strictness: append a byte to the assertion's authenticatorData.
    TrailingAuthdata,
    /// Protocol strictness: answer with a credential descriptor whose type is not "public-key".
    BadDescriptorType,
    /// Protocol strictness: answer with a credential descriptor whose id is text, not bytes.
    BadDescriptorId,
    /// Protocol strictness: drop the hmac-secret input from the request, so the (validly
    /// signed) answer carries no hmac-secret output.
    HmacMissing,
    /// U2F: answer U2F_AUTHENTICATE with flags and counter only, no signature (status 9000).
    U2fShortResponse,
    /// U2F: answer U2F_AUTHENTICATE with its data and the status word 0x9001 (not 0x9000).
    U2fWrongStatus,
    /// U2F: answer U2F_AUTHENTICATE with a signature that is not DER (SEQUENCE tag 0x31).
    U2fBadDerSignature,
    /// U2F: sign U2F_AUTHENTICATE over another challenge than the client's (valid DER, wrong
    /// signed bytes).
    U2fOtherChallenge,
    /// U2F: make U2F_REGISTER's key handle for another appId than the client's; the
    /// registration is signed over that other appId.
    U2fOtherAppId,
}

/// How late `slow-answer` answers each command.
pub const SLOW_ANSWER: Duration = Duration::from_millis(2000);
/// The pause between bytes under `trickle`.
pub const TRICKLE_INTERVAL: Duration = Duration::from_millis(100);

/// What the connection does with a getAssertion request under a fault.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Plan {
    /// Run the request through the authenticator, then pass the response to [`Fault::mangle`].
    Process,
    /// Never answer; keep sending PROCESSING keepalives.
    Stall,
    /// Close the connection without answering.
    Drop,
    /// Hand the request to the authenticator only after this long (keepalives meanwhile).
    Delay(Duration),
    /// Answer CTAPHID ERROR CHANNEL_BUSY.
    Busy,
}

/// How the (possibly mangled) response goes out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Delivery {
    /// Normally, on the request's channel.
    Normal(Vec<u8>),
    /// Only the first `len` bytes of the first report, then close.
    TruncatedThenClose(Vec<u8>, usize),
    /// On another channel id.
    OtherChannel(Vec<u8>),
    /// One byte at a time, this far apart.
    Trickle(Vec<u8>, Duration),
    /// The first report only; the rest never comes.
    FirstReportOnly(Vec<u8>),
}

/// The status byte `bad-status` answers with: not assigned by CTAP 2.1.
pub const BAD_STATUS: u8 = 0xF3;

/// How many bytes of the first report `truncate-report` sends.
pub const TRUNCATED_REPORT_LEN: usize = 20;

/// The status word `u2f-wrong-status` answers with: close to success, but not it.
pub const U2F_WRONG_STATUS: [u8; 2] = [0x90, 0x01];
/// U2F instruction bytes and the check-only control byte.
const U2F_REGISTER: u8 = 0x01;
const U2F_AUTHENTICATE: u8 = 0x02;
const U2F_CHECK_ONLY: u8 = 0x07;

impl Fault {
    pub const ALL: &'static [Fault] = &[
        Fault::CorruptSignature,
        Fault::TruncateReport,
        Fault::MalformedCbor,
        Fault::StallKeepalive,
        Fault::DropConnection,
        Fault::BadStatus,
        Fault::WrongChannel,
        Fault::SlowAnswer,
        Fault::ProbeKeepalive,
        Fault::AssertionKeepalive,
        Fault::Trickle,
        Fault::StallMidMessage,
        Fault::BusyForever,
        Fault::NoKeepalive,
        Fault::DuplicateKey,
        Fault::AtFlag,
        Fault::TrailingAuthdata,
        Fault::BadDescriptorType,
        Fault::BadDescriptorId,
        Fault::HmacMissing,
        Fault::U2fShortResponse,
        Fault::U2fWrongStatus,
        Fault::U2fBadDerSignature,
        Fault::U2fOtherChallenge,
        Fault::U2fOtherAppId,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Fault::CorruptSignature => "corrupt-signature",
            Fault::TruncateReport => "truncate-report",
            Fault::MalformedCbor => "malformed-cbor",
            Fault::StallKeepalive => "stall-keepalive",
            Fault::DropConnection => "drop-connection",
            Fault::BadStatus => "bad-status",
            Fault::WrongChannel => "wrong-channel",
            Fault::SlowAnswer => "slow-answer",
            Fault::ProbeKeepalive => "probe-keepalive",
            Fault::AssertionKeepalive => "assertion-keepalive",
            Fault::Trickle => "trickle",
            Fault::StallMidMessage => "stall-mid-message",
            Fault::BusyForever => "busy-forever",
            Fault::NoKeepalive => "no-keepalive",
            Fault::DuplicateKey => "duplicate-key",
            Fault::AtFlag => "at-flag",
            Fault::TrailingAuthdata => "trailing-authdata",
            Fault::BadDescriptorType => "bad-descriptor-type",
            Fault::BadDescriptorId => "bad-descriptor-id",
            Fault::HmacMissing => "hmac-missing",
            Fault::U2fShortResponse => "u2f-short-response",
            Fault::U2fWrongStatus => "u2f-wrong-status",
            Fault::U2fBadDerSignature => "u2f-bad-der-signature",
            Fault::U2fOtherChallenge => "u2f-other-challenge",
            Fault::U2fOtherAppId => "u2f-other-appid",
        }
    }

    pub fn help(self) -> &'static str {
        match self {
            Fault::CorruptSignature => {
                "flip a byte of the assertion signature (member 3); CBOR stays valid and canonical"
            }
            Fault::TruncateReport => {
                "send the first response report cut short, then close the connection"
            }
            Fault::MalformedCbor => "answer status 0 followed by bytes that are not valid CBOR",
            Fault::StallKeepalive => "send PROCESSING keepalives forever, never answer",
            Fault::DropConnection => "close the connection right after reading the request",
            Fault::BadStatus => "answer with the unknown status byte 0xF3",
            Fault::WrongChannel => "answer on a different channel id than the request's",
            Fault::SlowAnswer => {
                "answer every CTAP2 command (getInfo too) 2 s late, with keepalives meanwhile"
            }
            Fault::ProbeKeepalive => {
                "send PROCESSING keepalives forever in answer to silent (up=false) probes"
            }
            Fault::AssertionKeepalive => {
                "send PROCESSING keepalives forever in answer to getAssertions with up=true"
            }
            Fault::Trickle => "send the response one byte every 100 ms",
            Fault::StallMidMessage => "send the first report of the response, then nothing",
            Fault::BusyForever => "answer every getAssertion with CTAPHID CHANNEL_BUSY",
            Fault::NoKeepalive => {
                "send no KEEPALIVE while a request waits (for a touch or otherwise)"
            }
            Fault::DuplicateKey => {
                "repeat the signature member after the real one (junk bytes); CBOR stays sorted"
            }
            Fault::AtFlag => "set the AT (attested data) flag in the assertion's authenticatorData",
            Fault::TrailingAuthdata => "append a byte to the assertion's authenticatorData",
            Fault::BadDescriptorType => {
                "answer with a credential descriptor of type \"secret-key\""
            }
            Fault::BadDescriptorId => "answer with a credential descriptor whose id is text",
            Fault::HmacMissing => {
                "drop the hmac-secret input from the request: a signed answer without the output"
            }
            Fault::U2fShortResponse => {
                "U2F: answer U2F_AUTHENTICATE with flags and counter only, no signature"
            }
            Fault::U2fWrongStatus => "U2F: answer U2F_AUTHENTICATE with status word 0x9001",
            Fault::U2fBadDerSignature => {
                "U2F: answer U2F_AUTHENTICATE with a signature that is not DER"
            }
            Fault::U2fOtherChallenge => {
                "U2F: sign U2F_AUTHENTICATE over another challenge than the client's"
            }
            Fault::U2fOtherAppId => {
                "U2F: make U2F_REGISTER's key handle (and signature) for another appId"
            }
        }
    }

    /// Whether this CBOR request (command byte first) is one the fault applies to.
    pub fn applies_to(request: &[u8]) -> bool {
        request.first() == Some(&GET_ASSERTION)
    }

    /// Whether this fault hits this CBOR request: [`Self::applies_to`] for most, every command
    /// for `slow-answer`, silent probes only for `probe-keepalive`.
    pub fn hits(self, request: &[u8]) -> bool {
        match self {
            _ if self.is_u2f() => false,
            Fault::SlowAnswer => true,
            Fault::ProbeKeepalive => Self::applies_to(request) && is_silent_probe(&request[1..]),
            Fault::AssertionKeepalive => {
                Self::applies_to(request) && !is_silent_probe(&request[1..])
            }
            _ => Self::applies_to(request),
        }
    }

    /// Whether this is one of the `u2f-*` faults, which hit CTAPHID_MSG only.
    pub fn is_u2f(self) -> bool {
        matches!(
            self,
            Fault::U2fShortResponse
                | Fault::U2fWrongStatus
                | Fault::U2fBadDerSignature
                | Fault::U2fOtherChallenge
                | Fault::U2fOtherAppId
        )
    }

    /// Whether this fault hits this U2F request (a command APDU): the `u2f-*` faults only,
    /// U2F_REGISTER for `u2f-other-appid`, a signing U2F_AUTHENTICATE for the others.
    pub fn hits_u2f(self, apdu: &[u8]) -> bool {
        let (ins, p1) = match apdu {
            [_cla, ins, p1, ..] => (*ins, *p1),
            _ => return false,
        };
        match self {
            Fault::U2fOtherAppId => ins == U2F_REGISTER,
            _ if self.is_u2f() => ins == U2F_AUTHENTICATE && p1 != U2F_CHECK_ONLY,
            _ => false,
        }
    }

    pub fn plan(self) -> Plan {
        match self {
            Fault::StallKeepalive | Fault::ProbeKeepalive | Fault::AssertionKeepalive => {
                Plan::Stall
            }
            Fault::DropConnection => Plan::Drop,
            Fault::SlowAnswer => Plan::Delay(SLOW_ANSWER),
            Fault::BusyForever => Plan::Busy,
            Fault::Trickle | Fault::StallMidMessage | Fault::NoKeepalive => Plan::Process,
            Fault::CorruptSignature
            | Fault::TruncateReport
            | Fault::MalformedCbor
            | Fault::BadStatus
            | Fault::WrongChannel
            | Fault::DuplicateKey
            | Fault::AtFlag
            | Fault::TrailingAuthdata
            | Fault::BadDescriptorType
            | Fault::BadDescriptorId
            | Fault::HmacMissing
            | Fault::U2fShortResponse
            | Fault::U2fWrongStatus
            | Fault::U2fBadDerSignature
            | Fault::U2fOtherChallenge
            | Fault::U2fOtherAppId => Plan::Process,
        }
    }

    /// Turn the client's request (command byte first) into the one the authenticator sees.
    pub fn mangle_request(self, request: Vec<u8>) -> Vec<u8> {
        match self {
            Fault::HmacMissing => strip_extensions(request),
            // Both requests start with the challenge (32 bytes), then the appId (32 bytes).
            Fault::U2fOtherChallenge => flip_apdu_data_byte(request, 0),
            Fault::U2fOtherAppId => flip_apdu_data_byte(request, 32),
            Fault::CorruptSignature
            | Fault::TruncateReport
            | Fault::MalformedCbor
            | Fault::StallKeepalive
            | Fault::DropConnection
            | Fault::BadStatus
            | Fault::WrongChannel
            | Fault::DuplicateKey
            | Fault::AtFlag
            | Fault::TrailingAuthdata
            | Fault::BadDescriptorType
            | Fault::BadDescriptorId
            | Fault::SlowAnswer
            | Fault::ProbeKeepalive
            | Fault::AssertionKeepalive
            | Fault::Trickle
            | Fault::StallMidMessage
            | Fault::BusyForever
            | Fault::NoKeepalive
            | Fault::U2fShortResponse
            | Fault::U2fWrongStatus
            | Fault::U2fBadDerSignature => request,
        }
    }

    /// Turn the authenticator's real response (status byte first) into the faulty one.
    pub fn mangle(self, response: Vec<u8>) -> Delivery {
        match self {
            Fault::CorruptSignature => Delivery::Normal(corrupt_signature(response)),
            Fault::TruncateReport => Delivery::TruncatedThenClose(response, TRUNCATED_REPORT_LEN),
            // A map of one entry whose key is a lone "break" code: not well-formed CBOR.
            Fault::MalformedCbor => Delivery::Normal(vec![0x00, 0xA1, 0xFF, 0x01]),
            Fault::BadStatus => Delivery::Normal(vec![BAD_STATUS]),
            Fault::WrongChannel => Delivery::OtherChannel(response),
            Fault::Trickle => Delivery::Trickle(response, TRICKLE_INTERVAL),
            Fault::StallMidMessage => Delivery::FirstReportOnly(response),
            // Delayed, not changed.
            Fault::SlowAnswer => Delivery::Normal(response),
            Fault::DuplicateKey => Delivery::Normal(edit_response(response, duplicate_signature)),
            Fault::AtFlag => Delivery::Normal(edit_response(response, |m| {
                edit_auth_data(m, |ad| {
                    if let Some(flags) = ad.get_mut(32) {
                        *flags |= 0x40;
                    }
                })
            })),
            Fault::TrailingAuthdata => Delivery::Normal(edit_response(response, |m| {
                edit_auth_data(m, |ad| ad.push(0))
            })),
            Fault::BadDescriptorType => Delivery::Normal(edit_response(response, |m| {
                edit_descriptor(m, "type", |_| Value::Text("secret-key".into()))
            })),
            Fault::BadDescriptorId => Delivery::Normal(edit_response(response, |m| {
                edit_descriptor(m, "id", |id| match id {
                    Value::Bytes(b) => Value::Text(b.iter().map(|x| format!("{x:02x}")).collect()),
                    other => other.clone(),
                })
            })),
            Fault::HmacMissing | Fault::NoKeepalive => Delivery::Normal(response),
            Fault::U2fShortResponse => Delivery::Normal(edit_u2f_success(response, |data| {
                data.truncate(5);
            })),
            Fault::U2fWrongStatus => {
                Delivery::Normal(edit_u2f_success(response, |_| {})).map(|mut r| {
                    let n = r.len();
                    if n >= 2 && r[n - 2..] == [0x90, 0x00] {
                        r[n - 2..].copy_from_slice(&U2F_WRONG_STATUS);
                    }
                    r
                })
            }
            Fault::U2fBadDerSignature => Delivery::Normal(edit_u2f_success(response, |data| {
                if let Some(tag) = data.get_mut(5) {
                    *tag ^= 0x01;
                }
            })),
            Fault::U2fOtherChallenge | Fault::U2fOtherAppId => Delivery::Normal(response),
            // Never reached: these plans do not produce a response to mangle.
            Fault::StallKeepalive
            | Fault::DropConnection
            | Fault::ProbeKeepalive
            | Fault::AssertionKeepalive
            | Fault::BusyForever => Delivery::Normal(response),
        }
    }
}

impl Delivery {
    /// Change the bytes of a normal delivery; other deliveries pass unchanged.
    fn map(self, f: impl FnOnce(Vec<u8>) -> Vec<u8>) -> Delivery {
        match self {
            Delivery::Normal(data) => Delivery::Normal(f(data)),
            other => other,
        }
    }
}

/// Where the data of a command APDU lies (ISO 7816-4: short Lc of one byte, or extended:
/// a zero byte then two), if it has data.
pub fn apdu_data(apdu: &[u8]) -> Option<std::ops::Range<usize>> {
    let (start, len) = match apdu.get(4..)? {
        [] => return None,
        [0, hi, lo, ..] => (7, usize::from(u16::from_be_bytes([*hi, *lo]))),
        [lc, ..] => (5, usize::from(*lc)),
    };
    let end = start + len;
    (len > 0 && end <= apdu.len()).then_some(start..end)
}

/// Flip one byte of a command APDU's data (at `offset` into the data), if there is one.
fn flip_apdu_data_byte(mut apdu: Vec<u8>, offset: usize) -> Vec<u8> {
    if let Some(range) = apdu_data(&apdu) {
        if let Some(byte) = apdu
            .get_mut(range.start + offset)
            .filter(|_| offset < range.len())
        {
            *byte ^= 0x01;
        }
    }
    apdu
}

/// Apply `edit` to the data of a successful U2F response (status word 9000 last); any other
/// response passes unchanged.
fn edit_u2f_success(response: Vec<u8>, edit: impl FnOnce(&mut Vec<u8>)) -> Vec<u8> {
    match response.split_last_chunk::<2>() {
        Some((data, [0x90, 0x00])) => {
            let mut data = data.to_vec();
            edit(&mut data);
            data.extend_from_slice(&[0x90, 0x00]);
            data
        }
        _ => response,
    }
}

/// Whether getAssertion parameters (CBOR, after the command byte) ask for no user presence:
/// options (member 5) with `"up": false`.
fn is_silent_probe(params: &[u8]) -> bool {
    let Ok(Value::Map(members)) = ciborium::from_reader::<Value, _>(params) else {
        return false;
    };
    members.iter().any(|(k, v)| {
        k.as_integer() == Some(5.into())
            && v.as_map().is_some_and(|opts| {
                opts.iter()
                    .any(|(k, v)| k.as_text() == Some("up") && v.as_bool() == Some(false))
            })
    })
}

type Members = Vec<(Value, Value)>;

/// Apply `edit` to the members of a successful response and re-encode with ctap-core's
/// canonical encoder (a stable sort: repeated keys stay, in order). An error response, or one
/// that does not parse, goes out unchanged.
fn edit_response(response: Vec<u8>, edit: impl FnOnce(&mut Members)) -> Vec<u8> {
    let Some((&0x00, body)) = response.split_first() else {
        return response;
    };
    let Ok(Value::Map(mut entries)) = ciborium::from_reader::<Value, _>(body) else {
        return response;
    };
    edit(&mut entries);
    let body = cbor::encode(&Value::Map(entries));
    if body.is_empty() {
        return response;
    }
    [&[0x00][..], &body].concat()
}

fn member(entries: &mut Members, key: i64) -> Option<&mut Value> {
    entries
        .iter_mut()
        .find(|(k, _)| k.as_integer() == Some(key.into()))
        .map(|(_, v)| v)
}

/// A second signature member after the real one: a parser that reads the first member finds a
/// good signature, one that reads the last finds junk.
fn duplicate_signature(entries: &mut Members) {
    if member(entries, 3).is_some() {
        entries.push((Value::from(3), Value::Bytes(vec![0x30, 0x00])));
    }
}

fn edit_auth_data(entries: &mut Members, edit: impl FnOnce(&mut Vec<u8>)) {
    if let Some(Value::Bytes(ad)) = member(entries, 2) {
        edit(ad);
    }
}

/// Change one member of the credential descriptor (response member 1).
fn edit_descriptor(entries: &mut Members, name: &str, edit: impl Fn(&Value) -> Value) {
    if let Some(Value::Map(desc)) = member(entries, 1) {
        for (k, v) in desc.iter_mut() {
            if k.as_text() == Some(name) {
                *v = edit(v);
            }
        }
    }
}

/// Remove the extensions (member 4) from a getAssertion request.
fn strip_extensions(request: Vec<u8>) -> Vec<u8> {
    let Some((&command, body)) = request.split_first() else {
        return request;
    };
    let Ok(Value::Map(mut entries)) = ciborium::from_reader::<Value, _>(body) else {
        return request;
    };
    entries.retain(|(k, _)| k.as_integer() != Some(4.into()));
    [vec![command], cbor::encode(&Value::Map(entries))].concat()
}

/// Flip the first byte of the signature in a successful getAssertion response and re-encode.
///
/// An error response, or one we cannot parse, is returned unchanged: there is no signature to
/// corrupt. The re-encoding is ctap-core's CTAP2 canonical encoder, the one clients check
/// responses against; the authenticator's own output is canonical, so the result differs from
/// the original in exactly one signature byte and nothing but the signature check fails.
pub fn corrupt_signature(response: Vec<u8>) -> Vec<u8> {
    let Some((&0x00, body)) = response.split_first() else {
        return response;
    };
    let Ok(Value::Map(mut entries)) = ciborium::from_reader::<Value, _>(body) else {
        return response;
    };
    let mut flipped = false;
    for (key, value) in entries.iter_mut() {
        if key.as_integer() == Some(3.into()) {
            if let Value::Bytes(signature) = value {
                if let Some(byte) = signature.first_mut() {
                    *byte ^= 0x01;
                    flipped = true;
                }
            }
        }
    }
    if !flipped {
        return response;
    }
    let body = cbor::encode(&Value::Map(entries));
    if body.is_empty() {
        return response;
    }
    [&[0x00][..], &body].concat()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn encode(value: &Value) -> Vec<u8> {
        let mut out = vec![0x00];
        ciborium::into_writer(value, &mut out).expect("encode");
        out
    }

    #[test]
    fn corrupt_signature_flips_exactly_one_byte() {
        let response = encode(&Value::Map(vec![
            (Value::from(1), Value::Map(vec![])),
            (Value::from(2), Value::Bytes(vec![7; 37])),
            (Value::from(3), Value::Bytes(vec![0x30, 0x44, 0x02])),
        ]));
        let corrupted = corrupt_signature(response.clone());
        assert_eq!(corrupted.len(), response.len());
        let diffs: Vec<_> = response
            .iter()
            .zip(&corrupted)
            .filter(|(a, b)| a != b)
            .collect();
        assert_eq!(diffs.len(), 1);
    }

    #[test]
    fn corrupt_signature_leaves_errors_and_garbage_alone() {
        assert_eq!(corrupt_signature(vec![0x2E]), vec![0x2E]);
        assert_eq!(corrupt_signature(vec![0x00, 0xFF]), vec![0x00, 0xFF]);
        assert_eq!(corrupt_signature(vec![]), Vec::<u8>::new());
    }

    #[test]
    fn malformed_cbor_is_not_cbor() {
        let Delivery::Normal(bytes) = Fault::MalformedCbor.mangle(vec![0x00]) else {
            panic!("expected a normal delivery");
        };
        assert_eq!(bytes[0], 0x00);
        assert!(ciborium::from_reader::<Value, _>(&bytes[1..]).is_err());
    }

    fn members(delivery: Delivery) -> Vec<(Value, Value)> {
        let Delivery::Normal(bytes) = delivery else {
            panic!("expected a normal delivery");
        };
        assert_eq!(bytes[0], 0x00);
        match ciborium::from_reader::<Value, _>(&bytes[1..]).expect("CBOR") {
            Value::Map(m) => m,
            other => panic!("not a map: {other:?}"),
        }
    }

    fn assertion() -> Vec<u8> {
        encode(&Value::Map(vec![
            (
                Value::from(1),
                Value::Map(vec![
                    (Value::from("id"), Value::Bytes(vec![1, 2])),
                    (Value::from("type"), Value::from("public-key")),
                ]),
            ),
            (Value::from(2), Value::Bytes(vec![7; 37])),
            (Value::from(3), Value::Bytes(vec![0x30, 0x44, 0x02])),
        ]))
    }

    #[test]
    fn strictness_faults_change_what_they_name() {
        let m = members(Fault::DuplicateKey.mangle(assertion()));
        let sigs: Vec<_> = m.iter().filter(|(k, _)| k == &Value::from(3)).collect();
        assert_eq!(sigs.len(), 2);
        assert_eq!(
            sigs[0].1,
            Value::Bytes(vec![0x30, 0x44, 0x02]),
            "real one first"
        );

        let m = members(Fault::AtFlag.mangle(assertion()));
        assert_eq!(m[1].1.as_bytes().unwrap()[32], 7 | 0x40);
        let m = members(Fault::TrailingAuthdata.mangle(assertion()));
        assert_eq!(m[1].1.as_bytes().unwrap().len(), 38);

        let m = members(Fault::BadDescriptorType.mangle(assertion()));
        assert_eq!(m[0].1.as_map().unwrap()[1].1, Value::from("secret-key"));
        let m = members(Fault::BadDescriptorId.mangle(assertion()));
        assert_eq!(m[0].1.as_map().unwrap()[0].1, Value::from("0102"));

        // Errors pass unchanged.
        assert_eq!(
            Fault::AtFlag.mangle(vec![0x2E]),
            Delivery::Normal(vec![0x2E])
        );
    }

    #[test]
    fn hmac_missing_drops_the_extensions_from_the_request() {
        let req = Value::Map(vec![
            (Value::from(1), Value::from("pam://x")),
            (Value::from(4), Value::Map(vec![])),
        ]);
        let mut bytes = vec![GET_ASSERTION];
        ciborium::into_writer(&req, &mut bytes).unwrap();
        let out = Fault::HmacMissing.mangle_request(bytes.clone());
        assert_eq!(out[0], GET_ASSERTION);
        let v: Value = ciborium::from_reader(&out[1..]).unwrap();
        assert_eq!(v.as_map().unwrap().len(), 1);
        assert_eq!(Fault::AtFlag.mangle_request(bytes.clone()), bytes);
    }

    #[test]
    fn apdu_data_reads_short_and_extended_lengths() {
        assert_eq!(apdu_data(&[0, 1, 0, 0, 2, 9, 9, 0]), Some(5..7));
        assert_eq!(apdu_data(&[0, 1, 0, 0, 0, 0, 2, 9, 9, 0, 0]), Some(7..9));
        assert_eq!(apdu_data(&[0, 3, 0, 0]), None, "no body");
        assert_eq!(apdu_data(&[0, 3, 0, 0, 0, 0, 0]), None, "extended Le only");
        assert_eq!(apdu_data(&[0, 1, 0, 0, 5, 9]), None, "Lc beyond the end");
        assert_eq!(apdu_data(&[0, 1]), None);
    }

    #[test]
    fn u2f_faults_hit_u2f_only() {
        let authenticate = [0, U2F_AUTHENTICATE, 0x03, 0];
        let check_only = [0, U2F_AUTHENTICATE, U2F_CHECK_ONLY, 0];
        let register = [0, U2F_REGISTER, 0x03, 0];
        for fault in Fault::ALL.iter().copied().filter(|f| f.is_u2f()) {
            assert!(!fault.hits(&[GET_ASSERTION, 0xA0]), "{fault:?} on CBOR");
            assert!(
                !fault.hits_u2f(&check_only),
                "{fault:?} on a check-only probe"
            );
            let (hits, misses) = if fault == Fault::U2fOtherAppId {
                (register, authenticate)
            } else {
                (authenticate, register)
            };
            assert!(fault.hits_u2f(&hits), "{fault:?}");
            assert!(!fault.hits_u2f(&misses), "{fault:?}");
        }
        assert!(!Fault::CorruptSignature.hits_u2f(&authenticate));
        assert!(!Fault::SlowAnswer.hits_u2f(&authenticate));
    }

    #[test]
    fn u2f_faults_change_what_they_name() {
        let response = [&[0x01, 0, 0, 0, 9][..], &[0x30, 0x44, 0x02], &[0x90, 0x00]].concat();
        let normal = |d: Delivery| match d {
            Delivery::Normal(bytes) => bytes,
            other => panic!("{other:?}"),
        };
        let short = normal(Fault::U2fShortResponse.mangle(response.clone()));
        assert_eq!(short, vec![0x01, 0, 0, 0, 9, 0x90, 0x00]);
        let wrong = normal(Fault::U2fWrongStatus.mangle(response.clone()));
        assert_eq!(wrong[..wrong.len() - 2], response[..response.len() - 2]);
        assert_eq!(wrong[wrong.len() - 2..], U2F_WRONG_STATUS);
        let bad = normal(Fault::U2fBadDerSignature.mangle(response.clone()));
        assert_eq!(bad[5], 0x31);
        // An error status passes unchanged.
        let error = vec![0x69, 0x85];
        assert_eq!(normal(Fault::U2fShortResponse.mangle(error.clone())), error);

        let apdu = [&[0, U2F_REGISTER, 0, 0, 64][..], &[0u8; 64], &[0]].concat();
        let other = Fault::U2fOtherAppId.mangle_request(apdu.clone());
        let diff: Vec<_> = (0..apdu.len()).filter(|&i| apdu[i] != other[i]).collect();
        assert_eq!(diff, vec![5 + 32], "the first appId byte");
        let other = Fault::U2fOtherChallenge.mangle_request(apdu.clone());
        let diff: Vec<_> = (0..apdu.len()).filter(|&i| apdu[i] != other[i]).collect();
        assert_eq!(diff, vec![5], "the first challenge byte");
    }

    #[test]
    fn faults_apply_to_get_assertion_only() {
        assert!(Fault::applies_to(&[0x02, 0xA0]));
        assert!(!Fault::applies_to(&[0x01, 0xA0]));
        assert!(!Fault::applies_to(&[]));
    }

    #[test]
    fn probe_keepalive_hits_silent_probes_only() {
        let probe = cbor::encode(&cbor::int_map(vec![
            (1, Some(Value::Text("rp".into()))),
            (5, Some(cbor::text_map(vec![("up", Value::Bool(false))]))),
        ]));
        let touch = cbor::encode(&cbor::int_map(vec![(1, Some(Value::Text("rp".into())))]));
        assert!(Fault::ProbeKeepalive.hits(&[[GET_ASSERTION].as_slice(), &probe].concat()));
        assert!(!Fault::ProbeKeepalive.hits(&[[GET_ASSERTION].as_slice(), &touch].concat()));
        assert!(Fault::SlowAnswer.hits(&[0x04]));
        assert!(!Fault::BusyForever.hits(&[0x04]));
    }
}
