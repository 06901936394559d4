//! CBOR helpers: CTAP2 canonical encoding, strict decoding, and typed access to integer-keyed maps.
//!
//! We use ciborium's `Value` rather than serde structs because CTAP maps are keyed by small
//! integers and responses must be checked member by member; a missing or mistyped member is a
//! misbehaving device, reported by name.

use ciborium::Value;

use super::CtapError;

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
            sorted.sort_by(|a, b| a.0.len().cmp(&b.0.len()).then_with(|| a.0.cmp(&b.0)));
            Value::Map(sorted.into_iter().map(|(_, k, v)| (k, v)).collect())
        }
        Value::Array(items) => Value::Array(items.iter().map(canonical).collect()),
        Value::Tag(t, inner) => Value::Tag(*t, Box::new(canonical(inner))),
        other => other.clone(),
    }
}

/// Decode one CBOR item that must fill `bytes` exactly and be in canonical form: a key that
/// encodes the same data two ways could hide something from one of two parsers.
pub fn decode_strict(bytes: &[u8]) -> Result<Value, CtapError> {
    let (value, used) = decode_prefix(bytes)?;
    if used != bytes.len() {
        return Err(CtapError::misbehaved("trailing bytes after CBOR"));
    }
    if encode(&value) != bytes {
        return Err(CtapError::misbehaved("CBOR is not in canonical form"));
    }
    Ok(value)
}

/// Decode one CBOR item from the start of `bytes`, returning it and how many bytes it used
/// (authenticatorData embeds a COSE key whose length is only known by parsing it).
pub fn decode_prefix(bytes: &[u8]) -> Result<(Value, usize), CtapError> {
    let mut cursor = std::io::Cursor::new(bytes);
    let value: Value = ciborium::de::from_reader_with_recursion_limit(&mut cursor, 16)
        .map_err(|e| CtapError::misbehaved(cbor_error(&e)))?;
    let used = usize::try_from(cursor.position()).unwrap_or(bytes.len());
    Ok((value, used))
}

/// What went wrong, in words: ciborium's `Display` is its `Debug` (`Semantic(None, "…")`).
fn cbor_error(e: &ciborium::de::Error<std::io::Error>) -> String {
    use ciborium::de::Error;
    match e {
        Error::Io(_) => "CBOR that ends in the middle of an item".into(),
        Error::Syntax(at) => format!("CBOR that is not well-formed (at byte {at})"),
        Error::Semantic(Some(at), msg) => format!(
            "CBOR that is not valid (at byte {at}: {})",
            crate::text::printable(msg)
        ),
        Error::Semantic(None, msg) => {
            format!("CBOR that is not valid ({})", crate::text::printable(msg))
        }
        Error::RecursionLimitExceeded => "CBOR nested too deeply".into(),
    }
}

/// A CBOR map with integer or text keys, read member by member.
pub struct CborMap<'a> {
    entries: &'a [(Value, Value)],
    what: &'static str,
}

impl<'a> CborMap<'a> {
    pub fn new(value: &'a Value, what: &'static str) -> Result<Self, CtapError> {
        match value {
            Value::Map(entries) => Ok(CborMap { entries, what }),
            _ => Err(CtapError::misbehaved(format!("{what} is not a CBOR map"))),
        }
    }

    pub fn get(&self, key: i64) -> Option<&'a Value> {
        self.entries.iter().find_map(|(k, v)| match k {
            Value::Integer(i) if i128::from(*i) == i128::from(key) => Some(v),
            _ => None,
        })
    }

    pub fn get_text(&self, key: &str) -> Option<&'a Value> {
        self.entries.iter().find_map(|(k, v)| match k {
            Value::Text(t) if t == key => Some(v),
            _ => None,
        })
    }

    pub fn entries(&self) -> &'a [(Value, Value)] {
        self.entries
    }

    fn missing(&self, member: &str) -> CtapError {
        CtapError::misbehaved(format!("{} lacks {member}", self.what))
    }

    fn wrong(&self, member: &str, expected: &str) -> CtapError {
        CtapError::misbehaved(format!("{} member {member} is not {expected}", self.what))
    }

    pub fn bytes(&self, key: i64, member: &str) -> Result<&'a [u8], CtapError> {
        match self.get(key) {
            Some(Value::Bytes(b)) => Ok(b),
            Some(_) => Err(self.wrong(member, "a byte string")),
            None => Err(self.missing(member)),
        }
    }

    pub fn opt_bytes(&self, key: i64, member: &str) -> Result<Option<&'a [u8]>, CtapError> {
        match self.get(key) {
            None => Ok(None),
            Some(_) => self.bytes(key, member).map(Some),
        }
    }

    pub fn int(&self, key: i64, member: &str) -> Result<i128, CtapError> {
        match self.get(key) {
            Some(v) => as_int(v).ok_or_else(|| self.wrong(member, "an integer")),
            None => Err(self.missing(member)),
        }
    }

    pub fn opt_uint(&self, key: i64, member: &str) -> Result<Option<u64>, CtapError> {
        match self.get(key) {
            None => Ok(None),
            Some(v) => as_int(v)
                .and_then(|i| u64::try_from(i).ok())
                .map(Some)
                .ok_or_else(|| self.wrong(member, "an unsigned integer")),
        }
    }

    pub fn opt_bool(&self, key: i64, member: &str) -> Result<Option<bool>, CtapError> {
        match self.get(key) {
            None => Ok(None),
            Some(Value::Bool(b)) => Ok(Some(*b)),
            Some(_) => Err(self.wrong(member, "a boolean")),
        }
    }

    pub fn opt_text_array(&self, key: i64, member: &str) -> Result<Vec<String>, CtapError> {
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

    pub fn opt_uint_array(&self, key: i64, member: &str) -> Result<Vec<u64>, CtapError> {
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

pub fn as_int(v: &Value) -> Option<i128> {
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

    proptest! {
        #[test]
        fn decoder_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
            let _ = decode_strict(&bytes);
            let _ = decode_prefix(&bytes);
        }
    }
}
