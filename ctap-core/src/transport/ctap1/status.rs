//! ISO 7816-4 status words as U2F uses them (U2F raw message formats v1.2 §3.3), typed.

use std::fmt;

/// The status word (SW1 SW2) that ends every U2F response.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StatusWord {
    /// 0x9000: the command completed.
    NoError,
    /// 0x6985: user presence is required: the key waits for a touch (or, for a check-only
    /// request, the key handle is one of this key's for this appId).
    ConditionsNotSatisfied,
    /// 0x6A80: the key handle is not this key's, or not for this appId.
    WrongData,
    /// 0x6700: the request length is wrong.
    WrongLength,
    /// 0x6E00: the class byte is not supported.
    ClaNotSupported,
    /// 0x6D00: the instruction is not supported.
    InsNotSupported,
    /// 0x6986: the command is not allowed (CTAP 2.1 alwaysUv turns U2F off).
    CommandNotAllowed,
    /// Any other status word.
    Unknown(u16),
}

impl StatusWord {
    pub fn from_u16(sw: u16) -> Self {
        match sw {
            0x9000 => StatusWord::NoError,
            0x6985 => StatusWord::ConditionsNotSatisfied,
            0x6A80 => StatusWord::WrongData,
            0x6700 => StatusWord::WrongLength,
            0x6E00 => StatusWord::ClaNotSupported,
            0x6D00 => StatusWord::InsNotSupported,
            0x6986 => StatusWord::CommandNotAllowed,
            other => StatusWord::Unknown(other),
        }
    }

    pub fn as_u16(self) -> u16 {
        match self {
            StatusWord::NoError => 0x9000,
            StatusWord::ConditionsNotSatisfied => 0x6985,
            StatusWord::WrongData => 0x6A80,
            StatusWord::WrongLength => 0x6700,
            StatusWord::ClaNotSupported => 0x6E00,
            StatusWord::InsNotSupported => 0x6D00,
            StatusWord::CommandNotAllowed => 0x6986,
            StatusWord::Unknown(other) => other,
        }
    }
}

impl fmt::Display for StatusWord {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let what = match self {
            StatusWord::NoError => "success",
            StatusWord::ConditionsNotSatisfied => "touch needed",
            StatusWord::WrongData => "the key does not hold this credential",
            StatusWord::WrongLength => "wrong request length",
            StatusWord::ClaNotSupported => "class not supported",
            StatusWord::InsNotSupported => "instruction not supported",
            StatusWord::CommandNotAllowed => {
                "command not allowed (the key requires user verification for every use)"
            }
            StatusWord::Unknown(_) => "unknown status",
        };
        write!(f, "{what} (status word 0x{:04x})", self.as_u16())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_words_round_trip_over_every_value() {
        for sw in 0..=u16::MAX {
            assert_eq!(StatusWord::from_u16(sw).as_u16(), sw);
        }
        assert_eq!(StatusWord::from_u16(0x9001), StatusWord::Unknown(0x9001));
    }
}
