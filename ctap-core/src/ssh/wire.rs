//! The SSH wire encoding (RFC 4251 section 5): what agent messages, key blobs and signatures
//! are made of.
//!
//! A reader over a borrowed slice rather than `ssh-encoding`'s `Reader`: every field we parse
//! comes from a peer (an agent client, a key file, a key), and a zero-copy reader whose only
//! operations are "take n bytes or fail" keeps hostile lengths from allocating or panicking in
//! one place that is easy to read and to fuzz.

use super::{Malformed, SshError};

/// Reads fields from the front of a message. Every method fails rather than panics on short
/// input, and a length prefix is checked against what is left before anything is taken.
#[derive(Debug, Clone)]
pub struct Reader<'a> {
    rest: &'a [u8],
}

impl<'a> Reader<'a> {
    pub fn new(bytes: &'a [u8]) -> Self {
        Reader { rest: bytes }
    }

    fn take(&mut self, n: usize, what: &'static str) -> Result<&'a [u8], SshError> {
        if n > self.rest.len() {
            return Err(SshError::malformed(Malformed::Truncated {
                field: what,
                needed: n,
                left: self.rest.len(),
            }));
        }
        let (head, tail) = self.rest.split_at(n);
        self.rest = tail;
        Ok(head)
    }

    pub fn u8(&mut self, what: &'static str) -> Result<u8, SshError> {
        Ok(self.take(1, what)?[0])
    }

    pub fn bool(&mut self, what: &'static str) -> Result<bool, SshError> {
        Ok(self.u8(what)? != 0)
    }

    pub fn u32(&mut self, what: &'static str) -> Result<u32, SshError> {
        let b = self.take(4, what)?;
        Ok(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }

    pub fn u64(&mut self, what: &'static str) -> Result<u64, SshError> {
        let b = self.take(8, what)?;
        let mut a = [0u8; 8];
        a.copy_from_slice(b);
        Ok(u64::from_be_bytes(a))
    }

    /// A `string`: uint32 length, then that many bytes.
    pub fn string(&mut self, what: &'static str) -> Result<&'a [u8], SshError> {
        let n = self.u32(what)?;
        let n = usize::try_from(n)
            .map_err(|_| SshError::malformed(Malformed::TooLong { field: what }))?;
        self.take(n, what)
    }

    /// A `string` that must be UTF-8 text.
    pub fn text(&mut self, what: &'static str) -> Result<&'a str, SshError> {
        std::str::from_utf8(self.string(what)?)
            .map_err(|_| SshError::malformed(Malformed::NotUtf8 { field: what }))
    }

    /// Bytes not yet read.
    pub fn rest(&self) -> &'a [u8] {
        self.rest
    }

    pub fn is_empty(&self) -> bool {
        self.rest.is_empty()
    }

    /// Fail unless everything was read: trailing bytes mean we misread the message.
    pub fn finish(&self, what: &'static str) -> Result<(), SshError> {
        if self.rest.is_empty() {
            Ok(())
        } else {
            Err(SshError::malformed(Malformed::TrailingBytes {
                message: what,
                count: self.rest.len(),
            }))
        }
    }
}

/// Append a `string`. Lengths over 4 GiB cannot occur for anything we build (agent messages are
/// capped far below); such a call writes a truncated length rather than panic.
pub fn put_string(out: &mut Vec<u8>, bytes: &[u8]) {
    put_u32(out, u32::try_from(bytes.len()).unwrap_or(u32::MAX));
    out.extend_from_slice(bytes);
}

pub fn put_u32(out: &mut Vec<u8>, v: u32) {
    out.extend_from_slice(&v.to_be_bytes());
}

/// Append an `mpint` holding the non-negative big-endian integer `magnitude`: leading zeros
/// dropped, and a zero byte prepended when the top bit is set (so it does not read as negative).
pub(crate) fn put_mpint(out: &mut Vec<u8>, magnitude: &[u8]) {
    let first = magnitude
        .iter()
        .position(|&b| b != 0)
        .unwrap_or(magnitude.len());
    let digits = &magnitude[first..];
    if digits.first().is_some_and(|&b| b & 0x80 != 0) {
        put_u32(out, u32::try_from(digits.len() + 1).unwrap_or(u32::MAX));
        out.push(0);
        out.extend_from_slice(digits);
    } else {
        put_string(out, digits);
    }
}

/// Read an `mpint` that must be non-negative and fit in `N` bytes; returns it left-padded.
pub(crate) fn read_unsigned_mpint<const N: usize>(
    r: &mut Reader<'_>,
    what: &'static str,
) -> Result<[u8; N], SshError> {
    let raw = r.string(what)?;
    if raw.first().is_some_and(|&b| b & 0x80 != 0) {
        return Err(SshError::malformed(Malformed::NegativeMpint {
            field: what,
        }));
    }
    let digits = match raw {
        [0, rest @ ..] => rest,
        _ => raw,
    };
    if digits.len() > N {
        return Err(SshError::malformed(Malformed::MpintTooLong {
            field: what,
            max: N,
        }));
    }
    let mut out = [0u8; N];
    out[N - digits.len()..].copy_from_slice(digits);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mpints_follow_rfc4251_examples() {
        let enc = |m: &[u8]| {
            let mut v = Vec::new();
            put_mpint(&mut v, m);
            v
        };
        assert_eq!(enc(&[0]), [0, 0, 0, 0]);
        assert_eq!(enc(&[]), [0, 0, 0, 0]);
        assert_eq!(enc(&[0x00, 0x80]), [0, 0, 0, 2, 0x00, 0x80]);
        assert_eq!(
            enc(&[0x09, 0xa3, 0x78, 0xf9, 0xb2, 0xe3, 0x32, 0xa7]),
            [0, 0, 0, 8, 0x09, 0xa3, 0x78, 0xf9, 0xb2, 0xe3, 0x32, 0xa7]
        );
        let back: [u8; 4] =
            read_unsigned_mpint(&mut Reader::new(&enc(&[0, 0, 0x80, 1])), "x").unwrap();
        assert_eq!(back, [0, 0, 0x80, 1]);
        assert!(read_unsigned_mpint::<1>(&mut Reader::new(&enc(&[1, 2])), "x").is_err());
    }

    #[test]
    fn reader_refuses_lengths_past_the_end() {
        let mut r = Reader::new(&[0, 0, 0, 5, 1, 2]);
        assert!(r.string("s").is_err());
        let mut r = Reader::new(&[0xff, 0xff, 0xff, 0xff]);
        assert!(r.string("s").is_err());
        let mut r = Reader::new(&[0, 0]);
        assert!(r.u32("n").is_err());
        let mut r = Reader::new(&[0, 0, 0, 1, b'a', 9]);
        assert_eq!(r.text("t").unwrap(), "a");
        assert!(r.finish("m").is_err());
    }
}
