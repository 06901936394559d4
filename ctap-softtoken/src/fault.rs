//! Deliberate misbehaviour (`--fault`), so client code can be tested against a hostile or broken
//! key. Faults hit authenticatorGetAssertion (0x02) only: a key can be enrolled normally, then
//! restarted on the same state with a fault and misbehave at login.

use ciborium::Value;
use ctap_core::ctap2::cbor;

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
}

/// What the connection does with a getAssertion request under a fault.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Plan {
    /// Run the request through the authenticator, then pass the response to [`Fault::mangle`].
    Process,
    /// Never answer; keep sending PROCESSING keepalives.
    Stall,
    /// Close the connection without answering.
    Drop,
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
}

/// The status byte `bad-status` answers with: not assigned by CTAP 2.1.
pub const BAD_STATUS: u8 = 0xF3;

/// How many bytes of the first report `truncate-report` sends.
pub const TRUNCATED_REPORT_LEN: usize = 20;

impl Fault {
    pub const ALL: &'static [Fault] = &[
        Fault::CorruptSignature,
        Fault::TruncateReport,
        Fault::MalformedCbor,
        Fault::StallKeepalive,
        Fault::DropConnection,
        Fault::BadStatus,
        Fault::WrongChannel,
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
        }
    }

    /// Whether this CBOR request (command byte first) is one the fault applies to.
    pub fn applies_to(request: &[u8]) -> bool {
        request.first() == Some(&GET_ASSERTION)
    }

    pub fn plan(self) -> Plan {
        match self {
            Fault::StallKeepalive => Plan::Stall,
            Fault::DropConnection => Plan::Drop,
            Fault::CorruptSignature
            | Fault::TruncateReport
            | Fault::MalformedCbor
            | Fault::BadStatus
            | Fault::WrongChannel => Plan::Process,
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
            // Never reached: these plans do not produce a response to mangle.
            Fault::StallKeepalive | Fault::DropConnection => Delivery::Normal(response),
        }
    }
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

    #[test]
    fn faults_apply_to_get_assertion_only() {
        assert!(Fault::applies_to(&[0x02, 0xA0]));
        assert!(!Fault::applies_to(&[0x01, 0xA0]));
        assert!(!Fault::applies_to(&[]));
    }
}
