//! CBOR helpers: CTAP2 canonical encoding, strict decoding, and typed access to integer-keyed maps.
//!
//! We use ciborium's `Value` rather than serde structs because CTAP maps are keyed by small
//! integers and responses must be checked member by member; a missing or mistyped member is a
//! misbehaving device, reported by name.

use ciborium::Value;

use super::{CborProblem, CtapError, Misbehaviour};

/// Encode in CTAP2 canonical form (CTAP 2.1 section 8): definite lengths, shortest integers
/// (ciborium always does both), and map keys sorted by the length, then bytes, of their encoding.
pub fn encode(value: &Value) -> Vec<u8> {
    let mut out = Vec::new();
    // Writing into a Vec cannot fail, and canonicalising never produces a value ciborium rejects.
    if ciborium::into_writer(&canonical(value), &mut out).is_err() {
        out.clear();
    }
    out
}

fn canonical(value: &Value) -> Value {
    match value {
        Value::Map(entries) => {
            let mut sorted: Vec<(Vec<u8>, Value, Value)> = entries
                .iter()
                .map(|(k, v)| {
                    let k = canonical(k);
                    let mut kb = Vec::new();
                    let _ = ciborium::into_writer(&k, &mut kb);
                    (kb, k, canonical(v))
                })
                .collect();
            sorted.sort_by(|a, b| canonical_order(&a.0, &b.0));
            Value::Map(sorted.into_iter().map(|(_, k, v)| (k, v)).collect())
        }
        Value::Array(items) => Value::Array(items.iter().map(canonical).collect()),
        Value::Tag(t, inner) => Value::Tag(*t, Box::new(canonical(inner))),
        other => other.clone(),
    }
}

/// How deeply arrays, maps and tags may nest. CTAP messages nest four levels at most (a
/// getAssertion's extensions: map, map, COSE key map, member); the limit is enforced while
/// decoding, so hostile nesting is an error, never a deep recursion.
pub const MAX_DEPTH: usize = 16;

/// Decode one CBOR item that must fill `bytes` exactly and be in CTAP2 canonical form, with no
/// map holding the same key twice and no tags (CTAP 2.1 section 8). A key that encodes the same
/// data two ways, or a map that says two things about one member, could show one thing to us and
/// another to a second parser.
pub fn decode_strict(bytes: &[u8]) -> Result<Value, CtapError> {
    let (value, used) = decode_strict_prefix(bytes)?;
    if used != bytes.len() {
        return Err(CborProblem::TrailingBytes.into());
    }
    Ok(value)
}

/// Decode one CBOR item from the start of `bytes` under the same rules as [`decode_strict`],
/// returning it and how many bytes it used: authenticatorData embeds a COSE key whose length is
/// only known by parsing it. The bytes it used are exactly the canonical encoding of the value.
pub(crate) fn decode_strict_prefix(bytes: &[u8]) -> Result<(Value, usize), CtapError> {
    let mut cursor = std::io::Cursor::new(bytes);
    let value: Value = ciborium::de::from_reader_with_recursion_limit(&mut cursor, MAX_DEPTH)
        .map_err(|e| CtapError::from(cbor_error(&e)))?;
    let used = usize::try_from(cursor.position())
        .ok()
        .filter(|&u| u <= bytes.len())
        .ok_or(CborProblem::LengthOutOfRange)?;
    check_strict(&value)?;
    if encode(&value) != bytes[..used] {
        return Err(CborProblem::NotCanonical.into());
    }
    Ok((value, used))
}

/// What went wrong, as data: ciborium's `Display` is its `Debug` (`Semantic(None, "…")`).
fn cbor_error(e: &ciborium::de::Error<std::io::Error>) -> CborProblem {
    use ciborium::de::Error;
    match e {
        Error::Io(_) => CborProblem::Truncated,
        Error::Syntax(at) => CborProblem::NotWellFormed { at: *at },
        Error::Semantic(at, msg) => CborProblem::Invalid {
            at: *at,
            detail: crate::text::printable(msg),
        },
        Error::RecursionLimitExceeded => CborProblem::TooDeep,
    }
}

/// No tags, and in every map the keys' encodings strictly increase in canonical order: that
/// rules out both unsorted and repeated keys. The value came from a depth-limited decode, so
/// this recursion is bounded by [`MAX_DEPTH`].
fn check_strict(value: &Value) -> Result<(), CtapError> {
    match value {
        Value::Map(entries) => {
            let mut previous: Option<Vec<u8>> = None;
            for (k, v) in entries {
                check_strict(k)?;
                check_strict(v)?;
                let key = encode(k);
                if let Some(p) = &previous {
                    match canonical_order(p, &key) {
                        std::cmp::Ordering::Less => {}
                        std::cmp::Ordering::Equal => return Err(CborProblem::RepeatedKey.into()),
                        std::cmp::Ordering::Greater => return Err(CborProblem::NotCanonical.into()),
                    }
                }
                previous = Some(key);
            }
            Ok(())
        }
        Value::Array(items) => items.iter().try_for_each(check_strict),
        Value::Tag(..) => Err(CborProblem::Tag.into()),
        _ => Ok(()),
    }
}

/// CTAP2 canonical key order: shorter encodings first, then bytewise.
fn canonical_order(a: &[u8], b: &[u8]) -> std::cmp::Ordering {
    a.len().cmp(&b.len()).then_with(|| a.cmp(b))
}

/// A CBOR map with integer or text keys, read member by member.
pub struct CborMap<'a> {
    entries: &'a [(Value, Value)],
    what: &'static str,
}

impl<'a> CborMap<'a> {
    /// Read `value` as a map. A map with a repeated key is refused here too, whoever built it:
    /// [`CborMap::get`] could only pick one of the two answers.
    pub fn new(value: &'a Value, what: &'static str) -> Result<Self, CtapError> {
        match value {
            Value::Map(entries) => {
                let mut keys: Vec<Vec<u8>> = entries.iter().map(|(k, _)| encode(k)).collect();
                keys.sort_unstable();
                if keys.windows(2).any(|w| w[0] == w[1]) {
                    return Err(Misbehaviour::RepeatedKey { message: what }.into());
                }
                Ok(CborMap { entries, what })
            }
            _ => Err(Misbehaviour::NotAMap { message: what }.into()),
        }
    }

    pub fn get(&self, key: i64) -> Option<&'a Value> {
        self.entries.iter().find_map(|(k, v)| match k {
            Value::Integer(i) if i128::from(*i) == i128::from(key) => Some(v),
            _ => None,
        })
    }

    pub(crate) fn get_text(&self, key: &str) -> Option<&'a Value> {
        self.entries.iter().find_map(|(k, v)| match k {
            Value::Text(t) if t == key => Some(v),
            _ => None,
        })
    }

    pub fn entries(&self) -> &'a [(Value, Value)] {
        self.entries
    }

    /// The error for a required member that is absent.
    pub fn missing(&self, member: &'static str) -> CtapError {
        Misbehaviour::MissingMember {
            message: self.what,
            member,
        }
        .into()
    }

    /// The error for a member of the wrong type.
    pub fn wrong(&self, member: &'static str, expected: &'static str) -> CtapError {
        Misbehaviour::WrongType {
            message: self.what,
            member,
            expected,
        }
        .into()
    }

    /// The error for a byte string member of the wrong length.
    pub(crate) fn wrong_length(
        &self,
        member: &'static str,
        expected: usize,
        got: usize,
    ) -> CtapError {
        Misbehaviour::WrongLength {
            message: self.what,
            member,
            expected,
            got,
        }
        .into()
    }

    pub fn bytes(&self, key: i64, member: &'static str) -> Result<&'a [u8], CtapError> {
        match self.get(key) {
            Some(Value::Bytes(b)) => Ok(b),
            Some(_) => Err(self.wrong(member, "a byte string")),
            None => Err(self.missing(member)),
        }
    }

    pub(crate) fn int(&self, key: i64, member: &'static str) -> Result<i128, CtapError> {
        match self.get(key) {
            Some(v) => as_int(v).ok_or_else(|| self.wrong(member, "an integer")),
            None => Err(self.missing(member)),
        }
    }

    pub(crate) fn opt_uint(
        &self,
        key: i64,
        member: &'static str,
    ) -> Result<Option<u64>, CtapError> {
        match self.get(key) {
            None => Ok(None),
            Some(v) => as_int(v)
                .and_then(|i| u64::try_from(i).ok())
                .map(Some)
                .ok_or_else(|| self.wrong(member, "an unsigned integer")),
        }
    }

    pub(crate) fn opt_bool(
        &self,
        key: i64,
        member: &'static str,
    ) -> Result<Option<bool>, CtapError> {
        match self.get(key) {
            None => Ok(None),
            Some(Value::Bool(b)) => Ok(Some(*b)),
            Some(_) => Err(self.wrong(member, "a boolean")),
        }
    }

    pub(crate) fn opt_text_array(
        &self,
        key: i64,
        member: &'static str,
    ) -> Result<Vec<String>, CtapError> {
        match self.get(key) {
            None => Ok(Vec::new()),
            Some(Value::Array(items)) => items
                .iter()
                .map(|i| match i {
                    Value::Text(t) => Ok(t.clone()),
                    _ => Err(self.wrong(member, "an array of text")),
                })
                .collect(),
            Some(_) => Err(self.wrong(member, "an array")),
        }
    }

    pub(crate) fn opt_uint_array(
        &self,
        key: i64,
        member: &'static str,
    ) -> Result<Vec<u64>, CtapError> {
        match self.get(key) {
            None => Ok(Vec::new()),
            Some(Value::Array(items)) => items
                .iter()
                .map(|i| {
                    as_int(i)
                        .and_then(|n| u64::try_from(n).ok())
                        .ok_or_else(|| self.wrong(member, "an array of unsigned integers"))
                })
                .collect(),
            Some(_) => Err(self.wrong(member, "an array")),
        }
    }
}

pub(crate) fn as_int(v: &Value) -> Option<i128> {
    match v {
        Value::Integer(i) => Some(i128::from(*i)),
        _ => None,
    }
}

/// Build an integer-keyed map, leaving out absent members.
pub fn int_map(members: Vec<(i64, Option<Value>)>) -> Value {
    Value::Map(
        members
            .into_iter()
            .filter_map(|(k, v)| v.map(|v| (Value::Integer(k.into()), v)))
            .collect(),
    )
}

pub fn text_map(members: Vec<(&str, Value)>) -> Value {
    Value::Map(
        members
            .into_iter()
            .map(|(k, v)| (Value::Text(k.to_string()), v))
            .collect(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn canonical_order_is_length_first() {
        let v = text_map(vec![
            ("rk", Value::Bool(true)),
            ("up", Value::Bool(false)),
            ("a", Value::Bool(true)),
        ]);
        let bytes = encode(&v);
        // {"a": true, "rk": true, "up": false}
        assert_eq!(hex::encode(&bytes), "a36161f562726bf5627570f4");
        let m = int_map(vec![
            (10, Some(Value::Integer(1.into()))),
            (1, Some(Value::Integer(2.into()))),
            (-1, Some(Value::Integer(3.into()))),
        ]);
        assert_eq!(hex::encode(encode(&m)), "a301020a012003");
    }

    #[test]
    fn strict_decoding_rejects_non_canonical_trailing_and_invalid() {
        assert!(decode_strict(&hex::decode("a2016162026161").unwrap()).is_ok());
        // Keys out of order.
        assert!(decode_strict(&hex::decode("a202010101").unwrap()).is_err());
        // Integer 1 written in two bytes.
        assert!(decode_strict(&hex::decode("1801").unwrap()).is_err());
        // Indefinite-length array.
        assert!(decode_strict(&hex::decode("9f01ff").unwrap()).is_err());
        assert!(decode_strict(&hex::decode("0102").unwrap()).is_err());
        assert!(decode_strict(&[0xA5, 0x01]).is_err());
        assert!(decode_strict(&[]).is_err());
        assert!(decode_strict(&[0xFF]).is_err());
    }

    #[test]
    fn deep_nesting_is_an_error_not_a_stack_overflow() {
        let bytes = vec![0x81u8; 100_000];
        assert!(decode_strict(&bytes).is_err());
    }

    #[test]
    fn repeated_keys_are_refused_at_every_level() {
        // {1: 2, 1: 3}: sorted, so the old re-encoding check let it through.
        for hex_in in [
            "a201020103",
            // {"a": 1, "a": 1}
            "a2616101616101",
            // [{1: 2, 1: 2}]
            "81a201020102",
            // {1: {"x": 1, "x": 2}}
            "a101a2617801617802",
        ] {
            let err = decode_strict(&hex::decode(hex_in).unwrap()).unwrap_err();
            assert!(err.to_string().contains("repeats a key"), "{hex_in}: {err}");
        }
        // The same through the prefix decoder authenticatorData uses.
        assert!(decode_strict_prefix(&hex::decode("a20102010300").unwrap()).is_err());
        // And in values built by hand (CborMap is the only reader).
        let v = Value::Map(vec![
            (Value::Integer(1.into()), Value::Bool(true)),
            (Value::Integer(1.into()), Value::Bool(false)),
        ]);
        assert!(CborMap::new(&v, "test map").is_err());
    }

    #[test]
    fn tags_and_non_canonical_prefixes_are_refused() {
        // Tag 1 (epoch time) around 0.
        assert!(decode_strict(&hex::decode("c100").unwrap()).is_err());
        // A prefix in canonical form, then anything: the prefix decoder reports its length.
        let (v, used) = decode_strict_prefix(&hex::decode("a1010200ff").unwrap()).unwrap();
        assert_eq!(used, 3);
        assert_eq!(encode(&v), hex::decode("a10102").unwrap());
        // A non-canonical prefix (keys out of order) is refused even though more bytes follow.
        assert!(decode_strict_prefix(&hex::decode("a202010101ff").unwrap()).is_err());
    }

    #[test]
    fn nesting_limit_is_exact() {
        let nested = |depth: usize| {
            let mut b = vec![0x81u8; depth];
            b.push(0x00);
            b
        };
        assert!(decode_strict(&nested(MAX_DEPTH - 1)).is_ok());
        let err = decode_strict(&nested(MAX_DEPTH + 1)).unwrap_err();
        assert!(err.to_string().contains("nested too deeply"), "{err}");
    }

    /// Arbitrary CBOR values, maps included (with arbitrary, possibly repeated, keys).
    fn any_value() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            any::<i64>().prop_map(|i| Value::Integer(i.into())),
            any::<bool>().prop_map(Value::Bool),
            proptest::collection::vec(any::<u8>(), 0..8).prop_map(Value::Bytes),
            "[a-z]{0,4}".prop_map(Value::Text),
            Just(Value::Null),
        ];
        leaf.prop_recursive(4, 32, 4, |inner| {
            prop_oneof![
                proptest::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
                proptest::collection::vec((inner.clone(), inner), 0..4).prop_map(Value::Map),
            ]
        })
    }

    fn has_repeated_key(v: &Value) -> bool {
        match v {
            Value::Map(entries) => {
                let mut keys: Vec<Vec<u8>> = entries.iter().map(|(k, _)| encode(k)).collect();
                keys.sort();
                let before = keys.len();
                keys.dedup();
                keys.len() != before
                    || entries
                        .iter()
                        .any(|(k, v)| has_repeated_key(k) || has_repeated_key(v))
            }
            Value::Array(items) => items.iter().any(has_repeated_key),
            _ => false,
        }
    }

    proptest! {
        /// Whatever the decoder accepts is exactly the canonical encoding of what it returns.
        #[test]
        fn accepted_input_re_encodes_to_the_same_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..256)) {
            if let Ok(v) = decode_strict(&bytes) {
                prop_assert_eq!(encode(&v), bytes.clone());
            }
            if let Ok((v, used)) = decode_strict_prefix(&bytes) {
                prop_assert_eq!(encode(&v), bytes[..used].to_vec());
            }
        }

        /// The same for near-canonical input: a generated value's encoding with one byte changed
        /// (random bytes are rarely CBOR at all).
        #[test]
        fn accepted_mutants_re_encode_to_the_same_bytes(v in any_value(), at in any::<usize>(), x in 1u8..=255) {
            let mut bytes = encode(&v);
            if !bytes.is_empty() {
                let i = at % bytes.len();
                bytes[i] ^= x;
            }
            if let Ok(d) = decode_strict(&bytes) {
                prop_assert_eq!(encode(&d), bytes.clone());
                prop_assert!(!has_repeated_key(&d));
            }
        }

        /// Canonical encodings of generated values: accepted exactly when no map repeats a key.
        #[test]
        fn values_with_a_repeated_key_are_refused(v in any_value()) {
            let bytes = encode(&v);
            let decoded = decode_strict(&bytes);
            if has_repeated_key(&v) {
                prop_assert!(decoded.is_err());
            } else {
                prop_assert_eq!(decoded.ok(), Some(canonical(&v)));
            }
        }

        /// Nesting past the limit, of arrays, maps and tags mixed, is an error, not a stack
        /// overflow, however deep.
        #[test]
        fn deep_nesting_is_refused(kinds in proptest::collection::vec(0u8..3, MAX_DEPTH + 1..20_000)) {
            let mut bytes = Vec::new();
            for k in &kinds {
                match k {
                    0 => bytes.push(0x81),       // array of one
                    1 => bytes.extend([0xA1, 0x00]), // map {0: ...}
                    _ => bytes.push(0xC1),       // tag 1
                }
            }
            bytes.push(0x00);
            prop_assert!(decode_strict(&bytes).is_err());
            prop_assert!(decode_strict_prefix(&bytes).is_err());
        }

        #[test]
        fn decoder_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
            let _ = decode_strict(&bytes);
            let _ = decode_strict_prefix(&bytes);
        }
    }
}
