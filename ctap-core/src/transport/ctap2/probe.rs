//! Silent probes: which of a list of credentials does this key hold? Allow lists are split into
//! chunks that fit the key's getInfo limits (maxCredentialCountInList, maxCredentialIdLength,
//! maxMsgSize), so a user with a thousand credentials under one RP ID is found as surely as one
//! with a single credential. Every probe is bounded by the session's deadline.

use std::time::Instant;

use ciborium::Value;

use super::make_credential::descriptors;
use super::{cbor, Ctap2, CtapError, CtapStatus, GetAssertionRequest, KeepaliveHandler};
use crate::transport::ctaphid::WaitDecision;
use crate::transport::device::Transport;

/// Bytes of a CBOR array header for `n` entries.
fn array_header_len(n: usize) -> usize {
    match n {
        0..=23 => 1,
        24..=0xFF => 2,
        0x100..=0xFFFF => 3,
        0x1_0000..=0xFFFF_FFFF => 5,
        _ => 9,
    }
}

/// The size of a silent probe's request (command byte included) without its allow list: the
/// same members `get_assertion` sends for `up = false` with no token and no extension.
fn probe_base_len(rp_id: &str) -> usize {
    let params = cbor::int_map(vec![
        (1, Some(Value::Text(rp_id.to_string()))),
        (2, Some(Value::Bytes(vec![0; 32]))),
        (5, Some(cbor::text_map(vec![("up", Value::Bool(false))]))),
    ]);
    1 + cbor::encode(&params).len()
}

/// Split `ids` into allow lists a key with these limits accepts, in order.
///
/// Ids longer than `max_id_len` are left out: the key cannot have issued them (CTAP 2.1 §6.2.2
/// tells platforms to exclude them). Each chunk has at most `max_count` entries and its whole
/// request fits in `max_msg` bytes; an id too large to fit even alone is left out too.
pub(crate) fn plan_chunks(
    rp_id: &str,
    ids: &[Vec<u8>],
    max_count: Option<u64>,
    max_id_len: Option<u64>,
    max_msg: usize,
) -> Vec<Vec<Vec<u8>>> {
    let max_count = max_count
        .and_then(|n| usize::try_from(n).ok())
        .filter(|&n| n > 0)
        .unwrap_or(usize::MAX);
    let max_id_len = max_id_len
        .and_then(|n| usize::try_from(n).ok())
        .unwrap_or(usize::MAX);
    // Adding member 3 keeps the request map's header one byte (4 members instead of 3).
    let base = probe_base_len(rp_id) + 1;
    let mut chunks: Vec<Vec<Vec<u8>>> = Vec::new();
    let mut current: Vec<Vec<u8>> = Vec::new();
    let mut current_len = 0usize;
    for id in ids.iter().filter(|id| id.len() <= max_id_len) {
        // One descriptor's encoding: the array of one, minus its one-byte header.
        let item = cbor::encode(&descriptors(std::slice::from_ref(id))).len() - 1;
        let fits = |n: usize, len: usize| base + array_header_len(n) + len <= max_msg;
        if !fits(1, item) {
            continue;
        }
        if !current.is_empty()
            && (current.len() >= max_count || !fits(current.len() + 1, current_len + item))
        {
            chunks.push(std::mem::take(&mut current));
            current_len = 0;
        }
        current.push(id.clone());
        current_len += item;
    }
    if !current.is_empty() {
        chunks.push(current);
    }
    chunks
}

impl<T: Transport> Ctap2<T> {
    /// Bound every later request by `deadline` (see [`crate::transport::ctaphid::CtapHidChannel::set_deadline`]).
    pub fn set_deadline(&mut self, deadline: Option<Instant>) {
        self.hid.set_deadline(deadline);
    }

    pub fn deadline(&self) -> Option<Instant> {
        self.hid.deadline()
    }

    /// The allow lists [`Self::probe_credentials`] sends for `ids`, sized by this key's getInfo.
    pub fn allow_list_chunks(&self, rp_id: &str, ids: &[Vec<u8>]) -> Vec<Vec<Vec<u8>>> {
        plan_chunks(
            rp_id,
            ids,
            self.info.max_credential_count_in_list,
            self.info.max_credential_id_length,
            self.hid.max_msg_size(),
        )
    }

    /// Which of `ids` (credentials under `rp_id`) this key holds, by silent (up = false)
    /// getAssertion probes, one per chunk of the allow list. Returns the credential id the key
    /// answered with (the caller checks it is one of `ids`), or `None` when it holds none.
    pub fn probe_credentials(
        &mut self,
        rp_id: &str,
        ids: &[Vec<u8>],
    ) -> Result<Option<Vec<u8>>, CtapError> {
        self.probe_credentials_with(rp_id, ids, &mut |_| WaitDecision::Continue)
    }

    /// [`Ctap2::probe_credentials`] whose waits `on_keepalive` may cancel (another key already
    /// answered: a key that keeps a probe waiting must not hold up the login).
    pub fn probe_credentials_with(
        &mut self,
        rp_id: &str,
        ids: &[Vec<u8>],
        on_keepalive: KeepaliveHandler<'_>,
    ) -> Result<Option<Vec<u8>>, CtapError> {
        for chunk in self.allow_list_chunks(rp_id, ids) {
            let probe = GetAssertionRequest {
                rp_id: rp_id.to_string(),
                client_data_hash: rand::random(),
                allow_list: chunk,
                user_presence: false,
                user_verification: false,
                hmac_secret: None,
            };
            match self.get_assertion(&probe, None, &mut *on_keepalive) {
                Ok(resp) => return Ok(Some(resp.credential_id)),
                Err(CtapError::Status(
                    CtapStatus::NoCredentials | CtapStatus::InvalidCredential,
                )) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(None)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use super::*;
    use crate::transport::ctap2::command;
    use crate::transport::ctaphid::{cmd, CtapHidChannel};
    use crate::transport::device::mock::{self, frames, MockTransport};

    const CID: u32 = 0x7777_0001;
    const RP: &str = "pam://host";

    fn info(max_count: Option<u64>, max_id: Option<u64>, max_msg: u64) -> Value {
        cbor::int_map(vec![
            (1, Some(Value::Array(vec![Value::Text("FIDO_2_1".into())]))),
            (3, Some(Value::Bytes(vec![0xAA; 16]))),
            (5, Some(Value::Integer(max_msg.into()))),
            (7, max_count.map(|n| Value::Integer(n.into()))),
            (8, max_id.map(|n| Value::Integer(n.into()))),
        ])
    }

    fn assertion(id: &[u8]) -> Vec<u8> {
        let mut ad = vec![0u8; 32];
        ad.extend_from_slice(&[0x00, 0, 0, 0, 1]);
        let v = cbor::int_map(vec![
            (
                1,
                Some(descriptors(&[id.to_vec()]).as_array().unwrap()[0].clone()),
            ),
            (2, Some(Value::Bytes(ad))),
            (3, Some(Value::Bytes(vec![1, 2, 3]))),
        ]);
        [vec![0], cbor::encode(&v)].concat()
    }

    /// A key holding `held` that, like the softtoken, answers LIMIT_EXCEEDED to allow lists
    /// longer than its maxCredentialCountInList. Records the length of every allow list.
    fn key(
        held: Vec<u8>,
        max_count: Option<u64>,
        max_id: Option<u64>,
        max_msg: u64,
        seen: Arc<Mutex<Vec<(usize, usize)>>>,
    ) -> Ctap2<MockTransport> {
        let dev = mock::device(CID, move |_, data| {
            let body = match data.first() {
                Some(&command::GET_INFO) => {
                    [vec![0], cbor::encode(&info(max_count, max_id, max_msg))].concat()
                }
                Some(&command::GET_ASSERTION) => {
                    let req = cbor::decode_strict(&data[1..]).unwrap();
                    let m = CborMap::new(&req, "req").unwrap();
                    let list: Vec<Vec<u8>> = match m.get(3) {
                        Some(Value::Array(a)) => a
                            .iter()
                            .map(|d| {
                                CborMap::new(d, "d")
                                    .unwrap()
                                    .get_text("id")
                                    .and_then(|v| v.as_bytes().cloned())
                                    .unwrap()
                            })
                            .collect(),
                        _ => Vec::new(),
                    };
                    seen.lock().unwrap().push((list.len(), data.len()));
                    if max_count.is_some_and(|n| list.len() as u64 > n) {
                        vec![0x15]
                    } else if list.contains(&held) {
                        assertion(&held)
                    } else {
                        vec![0x2E]
                    }
                }
                _ => vec![0x01],
            };
            frames(CID, cmd::CBOR, &body)
        });
        Ctap2::new(CtapHidChannel::open(dev).unwrap()).unwrap()
    }

    use crate::transport::ctap2::cbor::CborMap;

    fn ids(n: usize, len: usize) -> Vec<Vec<u8>> {
        (0..n)
            .map(|i| {
                let mut id = vec![0x5A; len];
                id[..8].copy_from_slice(&(i as u64).to_be_bytes());
                id
            })
            .collect()
    }

    #[test]
    fn chunks_respect_count_id_length_and_message_size() {
        let all = ids(1000, 64);
        let chunks = plan_chunks(RP, &all, Some(10), Some(128), 3072);
        assert_eq!(chunks.len(), 100);
        assert!(chunks.iter().all(|c| c.len() == 10));
        assert_eq!(chunks.concat(), all, "every id, once, in order");

        // No count limit: the message size decides, and each request fits exactly.
        let chunks = plan_chunks(RP, &all, None, None, 1024);
        assert!(chunks.len() > 1);
        assert_eq!(chunks.concat(), all);
        for c in &chunks {
            let req = cbor::int_map(vec![
                (1, Some(Value::Text(RP.into()))),
                (2, Some(Value::Bytes(vec![0; 32]))),
                (3, Some(descriptors(c))),
                (5, Some(cbor::text_map(vec![("up", Value::Bool(false))]))),
            ]);
            assert!(
                cbor::encode(&req).len() < 1024,
                "command byte + request fit"
            );
        }

        // Ids longer than the key's maxCredentialIdLength cannot be its own: left out.
        let mut mixed = ids(3, 64);
        mixed.push(vec![1; 200]);
        let chunks = plan_chunks(RP, &mixed, Some(10), Some(128), 3072);
        assert_eq!(chunks, vec![ids(3, 64)]);
        // An id too large for any request is left out too, not sent to fail.
        let chunks = plan_chunks(RP, &[vec![1; 2000]], None, None, 1024);
        assert!(chunks.is_empty());
    }

    #[test]
    fn a_credential_in_the_last_chunk_is_found_for_11_100_and_1000_credentials() {
        for n in [11usize, 100, 1000] {
            let all = ids(n, 64);
            let held = all[n - 1].clone();
            let seen = Arc::new(Mutex::new(Vec::new()));
            let mut k = key(held.clone(), Some(10), Some(128), 3072, seen.clone());
            assert_eq!(k.probe_credentials(RP, &all).unwrap(), Some(held), "{n}");
            let seen = seen.lock().unwrap();
            assert_eq!(seen.len(), n.div_ceil(10), "{n}: one probe per chunk");
            assert!(seen.iter().all(|&(count, len)| count <= 10 && len <= 3072));
        }
    }

    #[test]
    fn a_key_without_a_count_limit_gets_lists_sized_by_its_message_limit() {
        let all = ids(1000, 64);
        let held = all[999].clone();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let mut k = key(held.clone(), None, None, 1200, seen.clone());
        assert_eq!(k.probe_credentials(RP, &all).unwrap(), Some(held));
        assert!(seen.lock().unwrap().iter().all(|&(_, len)| len <= 1200));
    }

    #[test]
    fn a_key_holding_none_says_none() {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let mut k = key(vec![9; 64], Some(10), None, 3072, seen);
        assert_eq!(k.probe_credentials(RP, &ids(25, 64)).unwrap(), None);
    }
}
