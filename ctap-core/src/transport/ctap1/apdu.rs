//! ISO 7816-4 command APDUs (short and extended length) and the split of a response APDU into
//! its data and status word.

use super::error::{Ctap1Error, U2fProblem};
use super::status::StatusWord;

/// U2F instruction bytes (U2F raw message formats v1.2 §4.1, §5.1, §6.1).
pub const INS_REGISTER: u8 = 0x01;
pub const INS_AUTHENTICATE: u8 = 0x02;
pub const INS_VERSION: u8 = 0x03;

/// How a command APDU encodes its lengths.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ApduForm {
    /// One-byte Lc and Le (data up to 255 bytes), as some older keys want.
    Short,
    /// A zero byte, then two-byte Lc and Le: what U2F over HID specifies, and what libfido2 and
    /// python-fido2 send.
    Extended,
}

/// Encode a command APDU with CLA 0, P2 0, the data (Lc omitted when empty) and Le asking for
/// the longest answer (0x00 short, 0x0000 extended).
pub fn encode(form: ApduForm, ins: u8, p1: u8, data: &[u8]) -> Result<Vec<u8>, Ctap1Error> {
    let mut apdu = vec![0x00, ins, p1, 0x00];
    match form {
        ApduForm::Short => {
            if !data.is_empty() {
                let lc = u8::try_from(data.len())
                    .map_err(|_| Ctap1Error::RequestTooLong { len: data.len() })?;
                apdu.push(lc);
                apdu.extend_from_slice(data);
            }
            apdu.push(0x00);
        }
        ApduForm::Extended => {
            apdu.push(0x00);
            if !data.is_empty() {
                let lc = u16::try_from(data.len())
                    .map_err(|_| Ctap1Error::RequestTooLong { len: data.len() })?;
                apdu.extend_from_slice(&lc.to_be_bytes());
                apdu.extend_from_slice(data);
            }
            apdu.extend_from_slice(&[0x00, 0x00]);
        }
    }
    Ok(apdu)
}

/// Split a response APDU into its data and status word. A response shorter than a status word,
/// or an error status that carries data, is refused.
pub fn split(response: &[u8]) -> Result<(&[u8], StatusWord), Ctap1Error> {
    let Some((data, sw)) = response.split_last_chunk::<2>() else {
        return Err(U2fProblem::NoStatusWord {
            len: response.len(),
        }
        .into());
    };
    let sw = StatusWord::from_u16(u16::from_be_bytes(*sw));
    if sw != StatusWord::NoError && !data.is_empty() {
        return Err(U2fProblem::DataWithError {
            sw: sw.as_u16(),
            len: data.len(),
        }
        .into());
    }
    Ok((data, sw))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_and_extended_encodings() {
        assert_eq!(
            encode(ApduForm::Short, INS_VERSION, 0, &[]).unwrap(),
            [0, 3, 0, 0, 0]
        );
        assert_eq!(
            encode(ApduForm::Extended, INS_VERSION, 0, &[]).unwrap(),
            [0, 3, 0, 0, 0, 0, 0]
        );
        assert_eq!(
            encode(ApduForm::Short, INS_REGISTER, 3, &[9, 8]).unwrap(),
            [0, 1, 3, 0, 2, 9, 8, 0]
        );
        assert_eq!(
            encode(ApduForm::Extended, INS_AUTHENTICATE, 7, &[9, 8]).unwrap(),
            [0, 2, 7, 0, 0, 0, 2, 9, 8, 0, 0]
        );
        let long = vec![0; 300];
        let extended = encode(ApduForm::Extended, INS_AUTHENTICATE, 3, &long).unwrap();
        assert_eq!(&extended[4..7], &[0, 0x01, 0x2C]);
        assert_eq!(extended.len(), 7 + 300 + 2);
        assert!(matches!(
            encode(ApduForm::Short, INS_AUTHENTICATE, 3, &long),
            Err(Ctap1Error::RequestTooLong { len: 300 })
        ));
    }

    #[test]
    fn split_takes_the_status_word_off() {
        assert_eq!(
            split(&[1, 2, 0x90, 0x00]).unwrap(),
            (&[1u8, 2][..], StatusWord::NoError)
        );
        assert_eq!(
            split(&[0x69, 0x85]).unwrap(),
            (&[][..], StatusWord::ConditionsNotSatisfied)
        );
        assert!(matches!(
            split(&[0x90]),
            Err(Ctap1Error::Misbehaved(U2fProblem::NoStatusWord { len: 1 }))
        ));
        assert!(matches!(
            split(&[1, 0x6A, 0x80]),
            Err(Ctap1Error::Misbehaved(U2fProblem::DataWithError {
                sw: 0x6A80,
                len: 1
            }))
        ));
    }
}
