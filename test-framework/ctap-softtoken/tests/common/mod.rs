//! Test-only helpers: start the softtoken binary, speak raw 64-byte CTAPHID reports to it.
#![allow(dead_code)] // each test file uses a different subset

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::Duration;

use ciborium::Value;

pub const BROADCAST: u32 = 0xFFFF_FFFF;
pub const CMD_PING: u8 = 0x01;
pub const CMD_MSG: u8 = 0x03;
pub const CMD_INIT: u8 = 0x06;
pub const CMD_WINK: u8 = 0x08;
pub const CMD_CBOR: u8 = 0x10;
pub const CMD_CANCEL: u8 = 0x11;
pub const CMD_KEEPALIVE: u8 = 0x3B;
pub const CMD_ERROR: u8 = 0x3F;

pub const ERR_INVALID_CMD: u8 = 0x01;
pub const ERR_INVALID_SEQ: u8 = 0x04;
pub const ERR_INVALID_CHANNEL: u8 = 0x0B;

/// The virtual key under test, started by the project's one launcher (ctap_e2e::SoftToken) on
/// the binary this package just built.
pub type Softtoken = ctap_e2e::SoftToken;

/// Start `ctap-softtoken serve` on `state` with a fresh socket in `dir`; returns once it accepts.
pub fn start_token(dir: &Path, state: &Path, extra: &[&str]) -> Softtoken {
    Softtoken::start_bin(
        Path::new(env!("CARGO_BIN_EXE_ctap-softtoken")),
        dir,
        state,
        extra,
    )
}

/// One response message, or a CTAPHID ERROR, or a keepalive.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    pub cid: u32,
    pub cmd: u8,
    pub data: Vec<u8>,
}

/// A raw CTAPHID client over the socket.
pub struct Hid {
    pub stream: UnixStream,
    pub cid: u32,
    /// Keepalive statuses seen by the last `call`.
    pub keepalives: Vec<u8>,
}

impl Hid {
    pub fn connect(socket: &Path) -> Hid {
        let stream = UnixStream::connect(socket).expect("connect");
        stream
            .set_read_timeout(Some(Duration::from_secs(20)))
            .expect("timeout");
        Hid {
            stream,
            cid: BROADCAST,
            keepalives: Vec::new(),
        }
    }

    /// Connect and allocate a channel.
    pub fn open(socket: &Path) -> Hid {
        let mut hid = Hid::connect(socket);
        hid.init();
        hid
    }

    pub fn init(&mut self) -> [u8; 17] {
        let nonce: [u8; 8] = rand_nonce();
        self.send(BROADCAST, CMD_INIT, &nonce);
        let reply = self.recv_message();
        assert_eq!(reply.cid, BROADCAST);
        assert_eq!(reply.cmd, CMD_INIT);
        assert_eq!(&reply.data[..8], &nonce);
        self.cid = u32::from_be_bytes(reply.data[8..12].try_into().expect("cid"));
        reply.data[..17].try_into().expect("init response")
    }

    pub fn write_packet(&mut self, packet: &[u8; 64]) {
        self.stream.write_all(packet).expect("write report");
    }

    /// Send a message, fragmented into reports.
    pub fn send(&mut self, cid: u32, cmd: u8, data: &[u8]) {
        let mut packet = [0u8; 64];
        packet[..4].copy_from_slice(&cid.to_be_bytes());
        packet[4] = 0x80 | cmd;
        packet[5..7].copy_from_slice(&(data.len() as u16).to_be_bytes());
        let first = data.len().min(57);
        packet[7..7 + first].copy_from_slice(&data[..first]);
        self.write_packet(&packet);
        for (seq, chunk) in data[first..].chunks(59).enumerate() {
            let mut packet = [0u8; 64];
            packet[..4].copy_from_slice(&cid.to_be_bytes());
            packet[4] = seq as u8;
            packet[5..5 + chunk.len()].copy_from_slice(chunk);
            self.write_packet(&packet);
        }
    }

    pub fn read_packet(&mut self) -> std::io::Result<[u8; 64]> {
        let mut packet = [0u8; 64];
        self.stream.read_exact(&mut packet)?;
        Ok(packet)
    }

    /// Receive one message (a keepalive counts as a message here).
    pub fn try_recv_message(&mut self) -> std::io::Result<Message> {
        let packet = self.read_packet()?;
        let cid = u32::from_be_bytes(packet[..4].try_into().expect("cid"));
        assert!(
            packet[4] & 0x80 != 0,
            "expected an init packet, got {packet:02x?}"
        );
        let cmd = packet[4] & 0x7F;
        let len = u16::from_be_bytes([packet[5], packet[6]]) as usize;
        let mut data = packet[7..7 + len.min(57)].to_vec();
        let mut seq = 0;
        while data.len() < len {
            let packet = self.read_packet()?;
            assert_eq!(
                u32::from_be_bytes(packet[..4].try_into().expect("cid")),
                cid
            );
            assert_eq!(packet[4], seq, "sequence");
            seq += 1;
            let take = (len - data.len()).min(59);
            data.extend_from_slice(&packet[5..5 + take]);
        }
        Ok(Message { cid, cmd, data })
    }

    pub fn recv_message(&mut self) -> Message {
        self.try_recv_message().expect("receive")
    }

    /// Send a request on our channel and wait for the answer, skipping (and recording)
    /// keepalives.
    pub fn call(&mut self, cmd: u8, data: &[u8]) -> Message {
        self.keepalives.clear();
        let cid = self.cid;
        self.send(cid, cmd, data);
        loop {
            let message = self.recv_message();
            if message.cmd == CMD_KEEPALIVE {
                self.keepalives.push(message.data[0]);
                continue;
            }
            return message;
        }
    }

    /// A CTAP2 command: returns (status, CBOR body).
    pub fn cbor(&mut self, command: u8, params: Option<&Value>) -> (u8, Vec<u8>) {
        let mut request = vec![command];
        if let Some(params) = params {
            ciborium::into_writer(params, &mut request).expect("encode");
        }
        let reply = self.call(CMD_CBOR, &request);
        assert_eq!(
            reply.cmd, CMD_CBOR,
            "expected a CBOR answer, got {reply:02x?}"
        );
        assert_eq!(reply.cid, self.cid);
        (reply.data[0], reply.data[1..].to_vec())
    }
}

pub fn rand_nonce() -> [u8; 8] {
    let mut nonce = [0u8; 8];
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_nanos();
    nonce.copy_from_slice(&(t as u64).to_le_bytes());
    nonce
}

pub fn decode(body: &[u8]) -> Value {
    ciborium::from_reader(body).expect("valid CBOR")
}

/// Member `key` of a CBOR map with integer keys.
pub fn member(map: &Value, key: i64) -> &Value {
    map.as_map()
        .expect("map")
        .iter()
        .find(|(k, _)| k.as_integer() == Some(key.into()))
        .map(|(_, v)| v)
        .unwrap_or_else(|| panic!("member {key} missing in {map:?}"))
}

pub fn text(key: &str) -> Value {
    Value::Text(key.to_owned())
}

pub const RP_ID: &str = "pam://softtoken-test";

/// A minimal makeCredential request (ES256, non-resident).
pub fn make_credential_request(client_data_hash: [u8; 32]) -> Value {
    Value::Map(vec![
        (Value::from(1), Value::Bytes(client_data_hash.to_vec())),
        (Value::from(2), Value::Map(vec![(text("id"), text(RP_ID))])),
        (
            Value::from(3),
            Value::Map(vec![
                (text("id"), Value::Bytes(b"user-1".to_vec())),
                (text("name"), text("alice")),
            ]),
        ),
        (
            Value::from(4),
            Value::Array(vec![Value::Map(vec![
                (text("alg"), Value::from(-7)),
                (text("type"), text("public-key")),
            ])]),
        ),
    ])
}

pub fn get_assertion_request(client_data_hash: [u8; 32], credential_id: &[u8]) -> Value {
    Value::Map(vec![
        (Value::from(1), text(RP_ID)),
        (Value::from(2), Value::Bytes(client_data_hash.to_vec())),
        (
            Value::from(3),
            Value::Array(vec![Value::Map(vec![
                (text("id"), Value::Bytes(credential_id.to_vec())),
                (text("type"), text("public-key")),
            ])]),
        ),
    ])
}

/// What makeCredential returned that the tests care about.
pub struct Credential {
    pub id: Vec<u8>,
    pub public_key: Vec<u8>,
}

/// Parse attested credential data out of a makeCredential response body.
pub fn parse_credential(body: &[u8]) -> Credential {
    let response = decode(body);
    let auth_data = member(&response, 2)
        .as_bytes()
        .expect("authData bytes")
        .clone();
    // rpIdHash(32) flags(1) signCount(4) aaguid(16) credIdLen(2) credId credPubKey
    assert!(auth_data[32] & 0x40 != 0, "AT flag must be set");
    let id_len = u16::from_be_bytes([auth_data[53], auth_data[54]]) as usize;
    let id = auth_data[55..55 + id_len].to_vec();
    let public_key = auth_data[55 + id_len..].to_vec();
    Credential { id, public_key }
}

/// The signature counter from a getAssertion response body.
pub fn assertion_counter(body: &[u8]) -> u32 {
    let response = decode(body);
    let auth_data = member(&response, 2).as_bytes().expect("authData");
    u32::from_be_bytes(auth_data[33..37].try_into().expect("counter"))
}

/// Enroll a credential on a running softtoken.
pub fn enroll(token: &Softtoken) -> Credential {
    let mut hid = Hid::connect(&token.socket);
    hid.init();
    let (status, body) = hid.cbor(0x01, Some(&make_credential_request([1; 32])));
    assert_eq!(status, 0, "makeCredential failed");
    parse_credential(&body)
}

/// A getAssertion for `credential`: (status, body).
pub fn assert_with(token: &Softtoken, credential: &Credential) -> (u8, Vec<u8>) {
    let mut hid = Hid::connect(&token.socket);
    hid.init();
    hid.cbor(0x02, Some(&get_assertion_request([2; 32], &credential.id)))
}
