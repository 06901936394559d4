use std::fmt;

use crate::transport::device::TransportError;

/// CTAPHID_ERROR codes a device can answer with. `Unknown` keeps any other byte.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HidErrorCode {
    InvalidCmd,
    InvalidPar,
    InvalidLen,
    InvalidSeq,
    MsgTimeout,
    ChannelBusy,
    LockRequired,
    InvalidChannel,
    Other,
    Unknown(u8),
}

impl HidErrorCode {
    pub fn from_u8(b: u8) -> Self {
        match b {
            0x01 => Self::InvalidCmd,
            0x02 => Self::InvalidPar,
            0x03 => Self::InvalidLen,
            0x04 => Self::InvalidSeq,
            0x05 => Self::MsgTimeout,
            0x06 => Self::ChannelBusy,
            0x0A => Self::LockRequired,
            0x0B => Self::InvalidChannel,
            0x7F => Self::Other,
            other => Self::Unknown(other),
        }
    }

    pub(crate) fn as_u8(self) -> u8 {
        match self {
            Self::InvalidCmd => 0x01,
            Self::InvalidPar => 0x02,
            Self::InvalidLen => 0x03,
            Self::InvalidSeq => 0x04,
            Self::MsgTimeout => 0x05,
            Self::ChannelBusy => 0x06,
            Self::LockRequired => 0x0A,
            Self::InvalidChannel => 0x0B,
            Self::Other => 0x7F,
            Self::Unknown(b) => b,
        }
    }
}

/// Ways a device breaks the CTAPHID framing rules. Each is a reason to stop talking to it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FramingViolation {
    /// Only INIT responses carrying other clients' nonces arrived.
    InitNonceMismatch,
    /// The INIT response was shorter than 17 bytes.
    ShortInitResponse,
    /// The device allocated the broadcast or zero channel id.
    BadChannelAllocated(u32),
    /// A response announced more bytes than the device's maxMsgSize.
    MessageTooLong { announced: usize, max: usize },
    /// A continuation packet carried the wrong sequence number.
    OutOfOrderSequence { expected: u8, got: u8 },
    /// A continuation packet arrived where an initialization packet was expected, or the reverse.
    UnexpectedPacket,
    /// The response's command was not the request's (nor KEEPALIVE/ERROR).
    UnexpectedCommand { sent: u8, got: u8 },
    /// A response that should echo the request did not.
    EchoMismatch,
}

impl fmt::Display for FramingViolation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FramingViolation::InitNonceMismatch => {
                write!(f, "its INIT answers never carried our nonce")
            }
            FramingViolation::ShortInitResponse => write!(f, "its INIT answer was too short"),
            FramingViolation::BadChannelAllocated(cid) => {
                write!(f, "it allocated the reserved channel id 0x{cid:08x}")
            }
            FramingViolation::MessageTooLong { announced, max } => write!(
                f,
                "it announced a {announced}-byte answer, more than the {max} bytes it may send"
            ),
            FramingViolation::OutOfOrderSequence { expected, got } => write!(
                f,
                "its answer's packets arrived out of order (packet {got} where {expected} was due)"
            ),
            FramingViolation::UnexpectedPacket => {
                write!(f, "it sent a packet that does not fit its answer so far")
            }
            FramingViolation::UnexpectedCommand { sent, got } => write!(
                f,
                "it answered command 0x{sent:02x} with command 0x{got:02x}"
            ),
            FramingViolation::EchoMismatch => write!(f, "its echo of our request was different"),
        }
    }
}

/// Errors of the CTAPHID layer.
#[derive(Debug)]
pub enum CtapHidError {
    Transport(TransportError),
    /// The device answered CTAPHID_ERROR.
    Device(HidErrorCode),
    /// The device broke the framing rules; nothing it sent can be trusted.
    Misbehaved(FramingViolation),
    /// The device is not a CTAP2 (CBOR-capable) authenticator.
    NotCtap2,
    /// A request was larger than the device accepts.
    RequestTooLong {
        len: usize,
        max: usize,
    },
    /// No answer before the deadline; CANCEL was sent.
    Timeout,
    /// The caller asked to stop waiting; CANCEL was sent.
    Cancelled,
}

impl fmt::Display for CtapHidError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CtapHidError::Transport(e) => e.fmt(f),
            CtapHidError::Device(HidErrorCode::ChannelBusy) => write!(
                f,
                "the security key is busy with another program: try again"
            ),
            CtapHidError::Device(code) => write!(
                f,
                "the security key rejected the request (CTAPHID error 0x{:02x})",
                code.as_u8()
            ),
            CtapHidError::Misbehaved(v) => {
                write!(f, "the security key broke the CTAPHID protocol: {v}")
            }
            CtapHidError::NotCtap2 => write!(
                f,
                "this device is not a FIDO2 security key (it does not speak CTAP2/CBOR)"
            ),
            CtapHidError::RequestTooLong { len, max } => write!(
                f,
                "a request of {len} bytes exceeds the security key's limit of {max} bytes: \
                 remove some credentials of this user or use a key that accepts longer messages"
            ),
            CtapHidError::Timeout => write!(f, "timed out waiting for the security key"),
            CtapHidError::Cancelled => write!(f, "the operation was cancelled"),
        }
    }
}

impl std::error::Error for FramingViolation {}

impl std::error::Error for CtapHidError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            CtapHidError::Transport(e) => Some(e),
            CtapHidError::Misbehaved(v) => Some(v),
            CtapHidError::Device(_)
            | CtapHidError::NotCtap2
            | CtapHidError::RequestTooLong { .. }
            | CtapHidError::Timeout
            | CtapHidError::Cancelled => None,
        }
    }
}

impl From<TransportError> for CtapHidError {
    fn from(e: TransportError) -> Self {
        CtapHidError::Transport(e)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_codes_round_trip_over_every_byte() {
        for b in 0..=255u8 {
            assert_eq!(HidErrorCode::from_u8(b).as_u8(), b);
        }
    }
}
