//! CTAP2 status codes (CTAP 2.1 section 8.2), a typed mirror of the byte with human messages.

/// The first byte of every CTAP2 response. `Unknown` keeps bytes the spec does not define.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CtapStatus {
    Ok,
    InvalidCommand,
    InvalidParameter,
    InvalidLength,
    InvalidSeq,
    Timeout,
    ChannelBusy,
    LockRequired,
    InvalidChannel,
    CborUnexpectedType,
    InvalidCbor,
    MissingParameter,
    LimitExceeded,
    FpDatabaseFull,
    LargeBlobStorageFull,
    CredentialExcluded,
    Processing,
    InvalidCredential,
    UserActionPending,
    OperationPending,
    NoOperations,
    UnsupportedAlgorithm,
    OperationDenied,
    KeyStoreFull,
    UnsupportedOption,
    InvalidOption,
    KeepaliveCancel,
    NoCredentials,
    UserActionTimeout,
    NotAllowed,
    PinInvalid,
    PinBlocked,
    PinAuthInvalid,
    PinAuthBlocked,
    PinNotSet,
    PuatRequired,
    PinPolicyViolation,
    RequestTooLarge,
    ActionTimeout,
    UpRequired,
    UvBlocked,
    IntegrityFailure,
    InvalidSubcommand,
    UvInvalid,
    UnauthorizedPermission,
    Other,
    Unknown(u8),
}

/// (status, byte) pairs: one table drives both directions so they cannot drift apart.
const TABLE: &[(CtapStatus, u8)] = &[
    (CtapStatus::Ok, 0x00),
    (CtapStatus::InvalidCommand, 0x01),
    (CtapStatus::InvalidParameter, 0x02),
    (CtapStatus::InvalidLength, 0x03),
    (CtapStatus::InvalidSeq, 0x04),
    (CtapStatus::Timeout, 0x05),
    (CtapStatus::ChannelBusy, 0x06),
    (CtapStatus::LockRequired, 0x0A),
    (CtapStatus::InvalidChannel, 0x0B),
    (CtapStatus::CborUnexpectedType, 0x11),
    (CtapStatus::InvalidCbor, 0x12),
    (CtapStatus::MissingParameter, 0x14),
    (CtapStatus::LimitExceeded, 0x15),
    (CtapStatus::FpDatabaseFull, 0x17),
    (CtapStatus::LargeBlobStorageFull, 0x18),
    (CtapStatus::CredentialExcluded, 0x19),
    (CtapStatus::Processing, 0x21),
    (CtapStatus::InvalidCredential, 0x22),
    (CtapStatus::UserActionPending, 0x23),
    (CtapStatus::OperationPending, 0x24),
    (CtapStatus::NoOperations, 0x25),
    (CtapStatus::UnsupportedAlgorithm, 0x26),
    (CtapStatus::OperationDenied, 0x27),
    (CtapStatus::KeyStoreFull, 0x28),
    (CtapStatus::UnsupportedOption, 0x2B),
    (CtapStatus::InvalidOption, 0x2C),
    (CtapStatus::KeepaliveCancel, 0x2D),
    (CtapStatus::NoCredentials, 0x2E),
    (CtapStatus::UserActionTimeout, 0x2F),
    (CtapStatus::NotAllowed, 0x30),
    (CtapStatus::PinInvalid, 0x31),
    (CtapStatus::PinBlocked, 0x32),
    (CtapStatus::PinAuthInvalid, 0x33),
    (CtapStatus::PinAuthBlocked, 0x34),
    (CtapStatus::PinNotSet, 0x35),
    (CtapStatus::PuatRequired, 0x36),
    (CtapStatus::PinPolicyViolation, 0x37),
    (CtapStatus::RequestTooLarge, 0x39),
    (CtapStatus::ActionTimeout, 0x3A),
    (CtapStatus::UpRequired, 0x3B),
    (CtapStatus::UvBlocked, 0x3C),
    (CtapStatus::IntegrityFailure, 0x3D),
    (CtapStatus::InvalidSubcommand, 0x3E),
    (CtapStatus::UvInvalid, 0x3F),
    (CtapStatus::UnauthorizedPermission, 0x40),
    (CtapStatus::Other, 0x7F),
];

impl CtapStatus {
    pub fn from_u8(b: u8) -> Self {
        TABLE
            .iter()
            .find(|(_, code)| *code == b)
            .map(|(s, _)| *s)
            .unwrap_or(CtapStatus::Unknown(b))
    }

    pub(crate) fn as_u8(self) -> u8 {
        match self {
            CtapStatus::Unknown(b) => b,
            known => TABLE
                .iter()
                .find(|(s, _)| *s == known)
                .map(|(_, code)| *code)
                .unwrap_or(0x7F),
        }
    }

    /// What a person should read: what happened and, where there is one, what to do.
    pub fn message(self) -> &'static str {
        match self {
            CtapStatus::Ok => "success",
            CtapStatus::InvalidCommand => "the security key does not support this command",
            CtapStatus::InvalidParameter => "the security key rejected a parameter",
            CtapStatus::InvalidLength => "the security key rejected the request length",
            CtapStatus::InvalidSeq => "the security key saw an invalid message sequence",
            CtapStatus::Timeout => "the security key timed out",
            CtapStatus::ChannelBusy => "the security key is busy with another program: try again",
            CtapStatus::LockRequired => "the security key is locked by another program",
            CtapStatus::InvalidChannel => "the security key rejected the channel",
            CtapStatus::CborUnexpectedType => "the security key could not parse the request",
            CtapStatus::InvalidCbor => {
                "the security key could not parse the request (invalid CBOR)"
            }
            CtapStatus::MissingParameter => "the request lacked a parameter the security key needs",
            CtapStatus::LimitExceeded => "a limit of the security key was exceeded",
            CtapStatus::FpDatabaseFull => "the security key's fingerprint database is full",
            CtapStatus::LargeBlobStorageFull => "the security key's large-blob storage is full",
            CtapStatus::CredentialExcluded => "this security key is already enrolled",
            CtapStatus::Processing => "the security key is still processing",
            CtapStatus::InvalidCredential => "the security key does not recognise this credential",
            CtapStatus::UserActionPending => "the security key is waiting for you",
            CtapStatus::OperationPending => "the security key has an operation pending",
            CtapStatus::NoOperations => "the security key has no pending operation",
            CtapStatus::UnsupportedAlgorithm => {
                "the security key does not support the requested algorithm"
            }
            CtapStatus::OperationDenied => {
                "the security key denied the operation (touch was refused)"
            }
            CtapStatus::KeyStoreFull => "the security key's storage is full",
            CtapStatus::UnsupportedOption => "the security key does not support a requested option",
            CtapStatus::InvalidOption => "the security key rejected an option",
            CtapStatus::KeepaliveCancel => "the operation was cancelled",
            CtapStatus::NoCredentials => {
                "this security key holds no credential for this account: use the key you enrolled"
            }
            CtapStatus::UserActionTimeout => "timed out waiting for a touch of the security key",
            CtapStatus::NotAllowed => "the security key does not allow this operation",
            CtapStatus::PinInvalid => "wrong PIN",
            CtapStatus::PinBlocked => "PIN blocked: reset the security key",
            CtapStatus::PinAuthInvalid => "PIN authentication failed",
            CtapStatus::PinAuthBlocked => {
                "too many wrong PINs: remove and reinsert the security key, then try again"
            }
            CtapStatus::PinNotSet => {
                "the security key has no PIN: set one with `ctap-enroll pin set`"
            }
            CtapStatus::PuatRequired => "the security key requires PIN or user verification",
            CtapStatus::PinPolicyViolation => {
                "the PIN does not meet the security key's policy (length)"
            }
            CtapStatus::RequestTooLarge => "the request is too large for the security key",
            CtapStatus::ActionTimeout => "the security key timed out waiting for an action",
            CtapStatus::UpRequired => "the security key requires a touch",
            CtapStatus::UvBlocked => "built-in user verification is blocked: use the PIN",
            CtapStatus::IntegrityFailure => "the security key reported an integrity failure",
            CtapStatus::InvalidSubcommand => "the security key does not support this subcommand",
            CtapStatus::UvInvalid => "user verification failed (fingerprint not recognised)",
            CtapStatus::UnauthorizedPermission => {
                "the PIN token lacks the permission for this operation"
            }
            CtapStatus::Other => "the security key reported an unspecified error",
            CtapStatus::Unknown(_) => "the security key returned an unknown status",
        }
    }
}

impl std::fmt::Display for CtapStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} (CTAP status 0x{:02x})", self.message(), self.as_u8())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_byte_round_trips() {
        for b in 0..=255u8 {
            assert_eq!(CtapStatus::from_u8(b).as_u8(), b);
        }
        assert_eq!(CtapStatus::from_u8(0x31), CtapStatus::PinInvalid);
        assert_eq!(CtapStatus::from_u8(0xF3), CtapStatus::Unknown(0xF3));
    }

    #[test]
    fn table_has_no_duplicate_codes() {
        for (i, (_, a)) in TABLE.iter().enumerate() {
            assert!(
                TABLE[i + 1..].iter().all(|(_, b)| a != b),
                "duplicate 0x{a:02x}"
            );
        }
    }
}
