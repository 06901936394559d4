//! Every error's `Display` is text a person can read (issue 10, item 5): no Rust `Debug`
//! output (`OutOfOrderSequence { expected: 1, got: 2 }`, `Semantic(None, "…")`, `Some(…)`)
//! reaches a user, a syslog line or a CLI message.
#![allow(clippy::unwrap_used)]

use std::io;
use std::path::PathBuf;

use ctap_core::flows::enroll::{EnrollError, EnrollRefusal};
use ctap_core::flows::login::{LoginError, Unusable};
use ctap_core::flows::uv::UvRefusal;
use ctap_core::flows::verify::VerifyError;
use ctap_core::ssh::{BadAssertion, KeyFileError, Malformed, Refusal, SshError, Unsupported};
use ctap_core::store::account::LookupError;
use ctap_core::store::admin::{AdminError, AdminRefusal};
use ctap_core::store::config::{ConfigError, PolicyInvalid};
use ctap_core::store::credential::{Inconsistency, StoreError, Suspension};
use ctap_core::store::fs::FileError;
use ctap_core::transport::ctap1::{Ctap1Error, RegistrationProblem, StatusWord, U2fProblem};
use ctap_core::transport::ctap2::{
    cbor, AuthDataProblem, CborProblem, CoseKeyProblem, CtapError, CtapStatus, DescriptorProblem,
    HmacSecretProblem, Incompatibility, InputProblem, Misbehaviour, PinProtocolProblem,
};
use ctap_core::transport::ctaphid::{CtapHidError, FramingViolation, HidErrorCode};
use ctap_core::transport::device::TransportError;

/// Fragments only `Debug` output (of our enums, of `Option`, of ciborium's errors) contains.
const DEBUG_MARKS: &[&str] = &[
    "{ ",
    " }",
    "Some(",
    "None",
    "Semantic(",
    "Syntax(",
    "Io(",
    "Custom {",
    "kind: ",
    "OutOfOrderSequence",
    "MessageTooLong",
    "UnexpectedCommand",
    "BadChannelAllocated",
    "InitNonceMismatch",
    "Misbehaved(",
    "Transport(",
    "Status(",
    "Unknown(",
];

fn assert_human(what: &str, text: &str) {
    assert!(!text.trim().is_empty(), "{what}: empty message");
    for m in DEBUG_MARKS {
        assert!(!text.contains(m), "{what}: Debug text {m:?} in {text:?}");
    }
}

fn violations() -> Vec<FramingViolation> {
    vec![
        FramingViolation::InitNonceMismatch,
        FramingViolation::ShortInitResponse,
        FramingViolation::BadChannelAllocated(0xffff_ffff),
        FramingViolation::MessageTooLong {
            announced: 65535,
            max: 7609,
        },
        FramingViolation::OutOfOrderSequence {
            expected: 1,
            got: 2,
        },
        FramingViolation::UnexpectedPacket,
        FramingViolation::UnexpectedCommand {
            sent: 0x90,
            got: 0x83,
        },
        FramingViolation::EchoMismatch,
    ]
}

fn transport_errors() -> Vec<TransportError> {
    vec![
        TransportError::NoDevice,
        TransportError::Open {
            path: "/dev/hidraw9".into(),
            source: io::Error::from(io::ErrorKind::PermissionDenied),
        },
        TransportError::Open {
            path: "/dev/hidraw9".into(),
            source: io::Error::other("boom"),
        },
        TransportError::BadUri {
            uri: "usb:x".into(),
            reason: "unknown scheme",
        },
        TransportError::Timeout,
        TransportError::Disconnected,
        TransportError::ShortReport {
            expected: 64,
            got: 20,
        },
        TransportError::Io(io::Error::from_raw_os_error(5)),
    ]
}

fn hid_errors() -> Vec<CtapHidError> {
    let mut v: Vec<CtapHidError> = transport_errors()
        .into_iter()
        .map(CtapHidError::Transport)
        .collect();
    v.extend((0..=255u8).map(|b| CtapHidError::Device(HidErrorCode::from_u8(b))));
    v.extend(violations().into_iter().map(CtapHidError::Misbehaved));
    v.extend([
        CtapHidError::NotCtap2,
        CtapHidError::RequestTooLong {
            len: 9000,
            max: 1024,
        },
        CtapHidError::Timeout,
        CtapHidError::Cancelled,
    ]);
    v
}

fn ctap_errors() -> Vec<CtapError> {
    let mut v: Vec<CtapError> = hid_errors().into_iter().map(CtapError::Hid).collect();
    v.extend((0..=255u8).map(|b| CtapError::Status(CtapStatus::from_u8(b))));
    // The decoder's own errors, from bytes a hostile key sends.
    for bad in [
        &[0xA1, 0xFF, 0x01][..],
        &[0xA1],
        &[0x1C],
        &[0x5B, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff],
        &[0x81; 40],
        &[0x00, 0x00],
    ] {
        v.push(cbor::decode_strict(bad).unwrap_err());
    }
    v.extend(misbehaviours().into_iter().map(CtapError::Misbehaved));
    v.extend(
        [
            Incompatibility::NoPinProtocol,
            Incompatibility::PinProtocolNotListed { version: 2 },
            Incompatibility::CoseKeyType { kty: 3, crv: -1 },
            Incompatibility::NoHmacSecret,
            Incompatibility::NoCredProtect {
                needs: "a resident key that requires verification",
            },
            Incompatibility::U2fOnly {
                needs: "an OpenSSH security key",
            },
        ]
        .map(CtapError::DeviceIncompatible),
    );
    v.extend(
        [
            InputProblem::PinTooShort,
            InputProblem::PinShorterThanKeyMinimum { min: 8 },
            InputProblem::PinTooLong,
            InputProblem::PinHasNul,
            InputProblem::NotWholeBlocks { len: 17 },
            InputProblem::AesKeyLength,
            InputProblem::EphemeralKeyNoCoordinates,
        ]
        .map(CtapError::InvalidInput),
    );
    v.extend(
        [
            Ctap1Error::NotU2f,
            Ctap1Error::UnsupportedVersion(b"U2F_V3".to_vec()),
            Ctap1Error::Status(StatusWord::WrongData),
            Ctap1Error::Status(StatusWord::Unknown(0x6f00)),
            Ctap1Error::Misbehaved(U2fProblem::NoStatusWord { len: 1 }),
            Ctap1Error::Misbehaved(U2fProblem::Signature),
            Ctap1Error::Misbehaved(U2fProblem::ReservedFlags(0x80)),
            Ctap1Error::Registration(RegistrationProblem::Signature),
            Ctap1Error::RequestTooLong { len: 300 },
        ]
        .map(CtapError::from),
    );
    v
}

/// One of every kind of misbehaviour, with the data a hostile key could put in it.
fn misbehaviours() -> Vec<Misbehaviour> {
    let mut v: Vec<Misbehaviour> = [
        CborProblem::Truncated,
        CborProblem::NotWellFormed { at: 3 },
        CborProblem::Invalid {
            at: Some(2),
            detail: "integer too large".into(),
        },
        CborProblem::Invalid {
            at: None,
            detail: "expected map".into(),
        },
        CborProblem::TooDeep,
        CborProblem::LengthOutOfRange,
        CborProblem::TrailingBytes,
        CborProblem::NotCanonical,
        CborProblem::RepeatedKey,
        CborProblem::Tag,
    ]
    .into_iter()
    .map(Misbehaviour::Cbor)
    .collect();
    v.extend(
        [
            AuthDataProblem::AttestedInAssertion,
            AuthDataProblem::Truncated,
            AuthDataProblem::CredentialIdTooLong { len: 4000 },
            AuthDataProblem::TrailingBytes,
            AuthDataProblem::NoAttestedCredential,
        ]
        .map(Misbehaviour::AuthData),
    );
    v.extend(
        [
            CoseKeyProblem::P256Algorithm(-8),
            CoseKeyProblem::Ed25519Algorithm(-7),
            CoseKeyProblem::NotOnCurve,
            CoseKeyProblem::InvalidEd25519,
            CoseKeyProblem::ExpectedP256,
            CoseKeyProblem::ExpectedEd25519,
        ]
        .map(Misbehaviour::CoseKey),
    );
    v.extend(
        [
            DescriptorProblem::IdNotBytes,
            DescriptorProblem::MissingId,
            DescriptorProblem::TypeNotPublicKey,
            DescriptorProblem::MissingType,
        ]
        .map(Misbehaviour::Descriptor),
    );
    v.extend(
        [
            PinProtocolProblem::KeyAgreementNotP256,
            PinProtocolProblem::ShorterThanIv,
            PinProtocolProblem::NotWholeBlocks,
            PinProtocolProblem::AesKeyLength,
            PinProtocolProblem::Decrypt,
            PinProtocolProblem::TokenLength(7),
        ]
        .map(Misbehaviour::PinProtocol),
    );
    v.extend(
        [
            HmacSecretProblem::Missing,
            HmacSecretProblem::NotBytes,
            HmacSecretProblem::Length {
                got: 64,
                expected: 32,
            },
        ]
        .map(Misbehaviour::HmacSecret),
    );
    v.extend([
        Misbehaviour::EmptyResponse {
            response: "getInfo response",
        },
        Misbehaviour::NotAMap {
            message: "getInfo response",
        },
        Misbehaviour::RepeatedKey {
            message: "COSE key",
        },
        Misbehaviour::MissingMember {
            message: "getInfo response",
            member: "versions",
        },
        Misbehaviour::WrongType {
            message: "getInfo response",
            member: "aaguid",
            expected: "a byte string",
        },
        Misbehaviour::WrongLength {
            message: "getInfo response",
            member: "aaguid",
            expected: 16,
            got: 3,
        },
        Misbehaviour::ConfirmationSignature,
        Misbehaviour::UvNotReported,
        Misbehaviour::KeyThreadFailed,
    ]);
    v
}

fn file_errors() -> Vec<FileError> {
    let p = PathBuf::from("/etc/ctap/users/alice.toml");
    vec![
        FileError::NotFound(p.clone()),
        FileError::Insecure {
            path: p.clone(),
            why: "is writable by group".into(),
        },
        FileError::Io {
            path: p.clone(),
            source: io::Error::from_raw_os_error(13),
        },
        FileError::LockTimeout(p),
    ]
}

fn store_errors() -> Vec<StoreError> {
    let mut v: Vec<StoreError> = file_errors().into_iter().map(StoreError::File).collect();
    v.extend([
        StoreError::Parse {
            path: "/x.toml".into(),
            line: Some(3),
            message: "expected `=`".into(),
        },
        StoreError::Parse {
            path: "/x.toml".into(),
            line: None,
            message: "expected `=`".into(),
        },
        StoreError::Invalid {
            path: "/x.toml".into(),
            problem: Inconsistency::NotUtf8,
        },
        StoreError::Invalid {
            path: "/x.toml".into(),
            problem: Inconsistency::StateVersion {
                found: 2,
                expected: 1,
            },
        },
        StoreError::Invalid {
            path: "/x.toml".into(),
            problem: Inconsistency::DuplicateId {
                credential: "blue".into(),
            },
        },
        StoreError::Invalid {
            path: "/x.toml".into(),
            problem: Inconsistency::DuplicateName {
                credential: "blue".into(),
            },
        },
        StoreError::Invalid {
            path: "/x.toml".into(),
            problem: Inconsistency::AlsoInRootRecords {
                credential: "blue".into(),
                id: "AAAA".into(),
            },
        },
        StoreError::Invalid {
            path: "/x.toml".into(),
            problem: Inconsistency::Unwritable {
                toml: "values must be emitted before tables".into(),
            },
        },
        StoreError::BadUserName("../root".into()),
        StoreError::Lookup(lookup_error()),
    ]);
    v
}

fn lookup_error() -> LookupError {
    LookupError {
        what: "user alice".into(),
        errno: nix::errno::Errno::EIO,
    }
}

fn verify_errors() -> Vec<VerifyError> {
    vec![
        VerifyError::UnexpectedCredential,
        VerifyError::RpIdHashMismatch,
        VerifyError::UserNotPresent,
        VerifyError::UserNotVerified,
        VerifyError::BadSignature,
        VerifyError::HmacMissing,
        VerifyError::HmacUvMismatch {
            enrolled_with_uv: true,
        },
        VerifyError::HmacMismatch,
        VerifyError::CounterRegression {
            stored: 9,
            received: 3,
        },
        VerifyError::CounterNotKept,
        VerifyError::HmacUnusable(Misbehaviour::HmacSecret(HmacSecretProblem::Missing)),
        VerifyError::Suspended(Suspension::new(
            "counter regression from 9 to 3".into(),
            std::time::UNIX_EPOCH,
        )),
        VerifyError::Suspended(Suspension {
            reason: None,
            at: None,
        }),
    ]
}

#[test]
fn every_library_error_displays_as_human_text() {
    for v in violations() {
        assert_human("FramingViolation", &v.to_string());
    }
    for e in transport_errors() {
        assert_human("TransportError", &e.to_string());
    }
    for e in hid_errors() {
        assert_human("CtapHidError", &e.to_string());
    }
    for e in ctap_errors() {
        assert_human("CtapError", &e.to_string());
    }
    for e in file_errors() {
        assert_human("FileError", &e.to_string());
    }
    for e in store_errors() {
        assert_human("StoreError", &e.to_string());
    }
    for e in verify_errors() {
        assert_human("VerifyError", &e.to_string());
    }
    let mut config: Vec<ConfigError> = file_errors().into_iter().map(ConfigError::File).collect();
    config.extend([
        ConfigError::Parse {
            path: "/etc/ctap/pam_ctap.toml".into(),
            line: Some(2),
            message: "invalid type".into(),
        },
        ConfigError::Invalid {
            path: "/etc/ctap/pam_ctap.toml".into(),
            problem: PolicyInvalid::Timeout(0),
        },
        ConfigError::Invalid {
            path: "/etc/ctap/pam_ctap.toml".into(),
            problem: PolicyInvalid::EmptyRpId,
        },
        ConfigError::Invalid {
            path: "/etc/ctap/pam_ctap.toml".into(),
            problem: PolicyInvalid::NotAbsolute("state_dir"),
        },
    ]);
    for e in config {
        assert_human("ConfigError", &e.to_string());
    }
    let mut ssh: Vec<SshError> = ctap_errors().into_iter().map(SshError::Ctap).collect();
    ssh.extend(
        [
            Malformed::Truncated {
                field: "key type",
                needed: 4,
                left: 1,
            },
            Malformed::TooLong { field: "string" },
            Malformed::NotUtf8 { field: "comment" },
            Malformed::TrailingBytes {
                message: "signature",
                count: 3,
            },
            Malformed::NegativeMpint { field: "r" },
            Malformed::MpintTooLong {
                field: "s",
                max: 32,
            },
            Malformed::EmptyApplication,
            Malformed::EmptyKeyHandle,
            Malformed::Curve {
                curve: "nistp384\u{1b}[31m".into(),
            },
            Malformed::PointNotUncompressed,
            Malformed::PointNotOnCurve,
            Malformed::Ed25519Length { len: 31 },
            Malformed::Ed25519Invalid,
            Malformed::SignatureType {
                got: "ssh-rsa".into(),
                key: "sk-ssh-ed25519@openssh.com",
            },
            Malformed::SignatureScalars,
            Malformed::KeyFile {
                parser: "PEM error".into(),
            },
            Malformed::KeyPair {
                parser: "length invalid".into(),
            },
            Malformed::Encoding {
                parser: "length invalid".into(),
            },
            Malformed::HostKey {
                parser: "unknown algorithm".into(),
            },
            Malformed::HostKeySignature {
                parser: "length invalid".into(),
            },
        ]
        .map(SshError::Malformed),
    );
    ssh.extend(
        [
            Unsupported::KeyAgreementKey,
            Unsupported::EncryptedKeyFile,
            Unsupported::NotSecurityKey {
                algorithm: "ssh-rsa".into(),
            },
            Unsupported::KeyType {
                name: "ssh-rsa".into(),
            },
            Unsupported::HostKeyAlgorithm {
                algorithm: "ssh-rsa".into(),
            },
            Unsupported::ConstraintExtension {
                name: "x@example.com".into(),
            },
            Unsupported::Constraint { code: 7 },
        ]
        .map(SshError::Unsupported),
    );
    ssh.extend(
        [
            Refusal::NotSshApplication {
                application: "pam://host".into(),
            },
            Refusal::EmptyName,
            Refusal::HostSignature,
        ]
        .map(SshError::Refused),
    );
    ssh.extend(
        [
            BadAssertion::AuthDataExtensions,
            BadAssertion::OtherAlgorithm,
            BadAssertion::SignatureNotDer,
            BadAssertion::Ed25519SignatureLength { len: 63 },
            BadAssertion::SignatureDoesNotVerify,
        ]
        .map(SshError::BadAssertion),
    );
    ssh.extend(verify_errors().into_iter().map(SshError::Rejected));
    for e in ssh {
        let text = e.to_string();
        assert_human("SshError", &text);
        // A peer's names are quoted, never written raw to a terminal.
        assert!(!text.contains('\u{1b}'), "{text:?}");
        // Data, not prose: the inner error is the source, and says the same words.
        if !matches!(e, SshError::Ctap(_) | SshError::Rejected(_)) {
            let inner = std::error::Error::source(&e).unwrap().to_string();
            assert!(text.ends_with(&inner), "{text:?} / {inner:?}");
        }
    }
    for e in [
        KeyFileError::Encode(SshError::Refused(Refusal::EmptyName)),
        KeyFileError::Io {
            path: "/home/alice/.ssh/id_ecdsa_sk".into(),
            source: io::Error::from(io::ErrorKind::AlreadyExists),
        },
    ] {
        assert_human("KeyFileError", &e.to_string());
        assert!(std::error::Error::source(&e).is_some());
    }
    let mut enroll: Vec<EnrollError> = store_errors().into_iter().map(EnrollError::Store).collect();
    enroll.extend(ctap_errors().into_iter().map(EnrollError::Device));
    enroll.extend(verify_errors().into_iter().map(EnrollError::Rejected));
    enroll.extend(
        [
            EnrollRefusal::UidMismatch {
                user: "alice".into(),
                recorded: 1000,
                actual: 1001,
            },
            EnrollRefusal::EmptyName,
            EnrollRefusal::NameTaken {
                user: "alice".into(),
                name: "key-1".into(),
            },
            EnrollRefusal::NoHmacSecret,
            EnrollRefusal::Uv(UvRefusal::NoPin),
            EnrollRefusal::Uv(UvRefusal::PinEntryDisabled),
            EnrollRefusal::Uv(UvRefusal::NoPinEntered),
            EnrollRefusal::Uv(UvRefusal::LastRetry),
            EnrollRefusal::AlreadyEnrolled {
                user: "alice".into(),
                rp_id: "pam://host".into(),
            },
            EnrollRefusal::HmacNotEnabled,
            EnrollRefusal::UnusableAlgorithm,
            EnrollRefusal::NoHmacOutput,
            EnrollRefusal::U2fNoUv,
        ]
        .map(EnrollError::Refused),
    );
    for e in enroll {
        assert_human("EnrollError", &e.to_string());
    }
    let mut admin: Vec<AdminError> = store_errors().into_iter().map(AdminError::Store).collect();
    admin.push(AdminError::NotFound {
        user: "alice".into(),
        name: "key-9".into(),
        path: "/etc/ctap/users/alice.toml".into(),
        known: vec!["key-1".into()],
    });
    admin.extend(
        [
            AdminRefusal::EmptyName,
            AdminRefusal::NameTaken {
                user: "alice".into(),
                name: "blue".into(),
            },
            AdminRefusal::NoState {
                credential: "blue".into(),
                path: PathBuf::from("/var/lib/ctap/alice.toml"),
            },
        ]
        .map(AdminError::Refused),
    );
    for e in admin {
        assert_human("AdminError", &e.to_string());
    }
}

#[test]
fn every_login_error_displays_as_human_text_with_a_reason_word() {
    let mut all: Vec<LoginError> = vec![
        LoginError::NoRecords,
        LoginError::NoUsableCredential(Unusable::FilteredOut {
            enrolled: 2,
            rp_id: Some("pam://host".into()),
        }),
        LoginError::NoUsableCredential(Unusable::FilteredOut {
            enrolled: 1,
            rp_id: None,
        }),
        LoginError::NoUsableCredential(Unusable::ChangedWhileWaiting {
            credential: "blue".into(),
        }),
        LoginError::NoUsableCredential(Unusable::HmacSecretRequired { refused: 1 }),
        LoginError::Lookup(lookup_error()),
        LoginError::WrongKey,
        LoginError::MissingState {
            credential: "key-1".into(),
        },
        LoginError::UvUnavailable(UvRefusal::NoPin),
        LoginError::UvUnavailable(UvRefusal::PinEntryDisabled),
        LoginError::UvUnavailable(UvRefusal::NoPinEntered),
        LoginError::UvUnavailable(UvRefusal::LastRetry),
    ];
    all.extend(store_errors().into_iter().map(LoginError::Store));
    all.extend(ctap_errors().into_iter().map(LoginError::Device));
    for (reason, suspended) in verify_errors()
        .into_iter()
        .zip([true, false].iter().cycle())
    {
        all.push(LoginError::Rejected {
            credential: "key-1".into(),
            reason,
            suspended: *suspended,
        });
    }
    // pam_ctap(8) lists every reason word, with what the admin should check; the module itself
    // adds bad_argument and no_user (before there is a LoginError).
    let man = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../packaging/man/pam_ctap.8"),
    )
    .unwrap();
    let reasons = &man[man.find(".SH REASONS").expect("a REASONS section")..];
    let mut words: Vec<&str> = all.iter().map(LoginError::kind).collect();
    words.extend(["busy", "bad_argument", "no_user"]);
    for w in words {
        assert!(
            reasons.contains(&format!("\n.B {w}\n")),
            "pam_ctap(8) REASONS lacks {w}"
        );
    }
    for e in &all {
        let text = e.to_string();
        assert_human(e.kind(), &text);
        assert!(
            e.kind().chars().all(|c| c.is_ascii_lowercase() || c == '_'),
            "reason word {:?}",
            e.kind()
        );
    }
    let busy = LoginError::Store(StoreError::File(FileError::LockTimeout(
        "/s/.alice.lock".into(),
    )));
    assert_eq!(busy.kind(), "busy");
    assert!(busy.to_string().contains("try again"), "{busy}");
    let parse = LoginError::Store(StoreError::BadUserName("x".into()));
    assert_eq!(parse.kind(), "config_error");
}

/// A U2F key's failures read like a CTAP2 key's: by structure, not by protocol.
#[test]
fn u2f_failures_get_the_ctap2_reason_words() {
    let word = |e: CtapError| LoginError::Device(e).kind();
    assert_eq!(
        word(Ctap1Error::Status(StatusWord::WrongData).into()),
        "wrong_key"
    );
    assert_eq!(
        word(Ctap1Error::Hid(CtapHidError::Timeout).into()),
        "timeout"
    );
    assert_eq!(
        word(Ctap1Error::Hid(CtapHidError::Cancelled).into()),
        "cancelled"
    );
    assert_eq!(
        word(Ctap1Error::Misbehaved(U2fProblem::Signature).into()),
        word(CtapError::Misbehaved(Misbehaviour::ConfirmationSignature))
    );
    assert_eq!(
        word(Ctap1Error::Registration(RegistrationProblem::Signature).into()),
        "device_error"
    );
    assert_eq!(
        LoginError::NoUsableCredential(Unusable::HmacSecretRequired { refused: 2 }).kind(),
        "hmac_secret_required"
    );
}

#[test]
fn a_hostile_keys_cbor_is_described_in_words() {
    // A map whose key is a lone "break": what the virtual key's malformed-cbor fault sends.
    let e = cbor::decode_strict(&[0xA1, 0xFF, 0x01])
        .unwrap_err()
        .to_string();
    assert!(e.contains("CBOR that is not"), "{e}");
    let e = CtapHidError::Misbehaved(FramingViolation::OutOfOrderSequence {
        expected: 1,
        got: 2,
    })
    .to_string();
    assert!(e.contains("out of order (packet 2 where 1 was due)"), "{e}");
}

/// A wrapping error names what it wraps (`source()`), and the misbehaviour is data a caller can
/// match on, not a sentence to search.
#[test]
fn ctap_errors_expose_their_cause() {
    use std::error::Error;
    let e = cbor::decode_strict(&[0xA2, 0x01, 0x01, 0x01, 0x02]).unwrap_err();
    assert!(
        matches!(
            e,
            CtapError::Misbehaved(Misbehaviour::Cbor(CborProblem::RepeatedKey))
        ),
        "{e:?}"
    );
    let source = e.source().expect("a misbehaviour is the source");
    assert_eq!(source.to_string(), "CBOR map repeats a key");
    let e = cbor::decode_strict(&[0x00, 0x00]).unwrap_err();
    assert!(matches!(
        e,
        CtapError::Misbehaved(Misbehaviour::Cbor(CborProblem::TrailingBytes))
    ));
    let hid = CtapError::Hid(CtapHidError::Timeout);
    assert!(hid.source().is_some());
    assert!(CtapError::Status(CtapStatus::PinInvalid).source().is_none());
}

/// Every error that wraps another hands it out through `source()`, down to the I/O error.
#[test]
fn wrapping_errors_expose_the_chain() {
    use std::error::Error;
    fn chain(e: &dyn Error) -> Vec<String> {
        let mut out = vec![e.to_string()];
        let mut next = e.source();
        while let Some(s) = next {
            out.push(s.to_string());
            next = s.source();
        }
        out
    }
    let io = || FileError::Io {
        path: "/etc/ctap/users/alice.toml".into(),
        source: io::Error::from_raw_os_error(13),
    };
    let io_text = io::Error::from_raw_os_error(13).to_string();
    let login = LoginError::Store(StoreError::File(io()));
    assert_eq!(chain(&login).len(), 4, "{:?}", chain(&login));
    assert_eq!(chain(&login).last().unwrap(), &io_text);
    assert_eq!(chain(&ConfigError::File(io())).len(), 3);
    assert_eq!(chain(&AdminError::Store(StoreError::File(io()))).len(), 4);
    let hid = CtapError::Hid(CtapHidError::Misbehaved(FramingViolation::EchoMismatch));
    assert_eq!(chain(&SshError::Ctap(hid)).len(), 4);
    let rejected = LoginError::Rejected {
        credential: "key-1".into(),
        reason: VerifyError::BadSignature,
        suspended: false,
    };
    assert_eq!(
        chain(&rejected).last().unwrap(),
        &VerifyError::BadSignature.to_string()
    );
    assert!(LoginError::WrongKey.source().is_none());
}

/// A record or state row that cannot be a working value is refused at load with words that
/// name the credential and say what to do (issue 11 item 2).
#[test]
fn unusable_records_and_state_rows_read_as_sentences() {
    use ctap_core::store::credential::record::{KeyError, RecordError, RpIdError};
    use ctap_core::transport::ctap2::cose::Algorithm;
    for e in [
        RecordError::EmptyName,
        RecordError::EmptyCredentialId {
            name: "blue".into(),
        },
        RecordError::RpId {
            name: "blue".into(),
            error: RpIdError::Empty,
        },
        RecordError::RpId {
            name: "blue".into(),
            error: RpIdError::BadCharacter { at: 3 },
        },
        RecordError::Key {
            name: "blue".into(),
            error: KeyError::Unparsable {
                parser: "truncated CBOR".into(),
            },
        },
        RecordError::Key {
            name: "blue".into(),
            error: KeyError::NotASigningKey,
        },
        RecordError::Key {
            name: "blue".into(),
            error: KeyError::AlgorithmMismatch {
                stored: Algorithm::EdDsa,
                key: Algorithm::Es256,
            },
        },
    ] {
        assert_human("RecordError", &e.to_string());
    }
    let state = |extra: &str| {
        format!("version = 1\n\n[[credential]]\ncredential_id = \"AAAA\"\nsign_count = 1\n{extra}")
    };
    let salt = "hmac_salt = \"AQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQE\"\n";
    let check = "hmac_check = \"AQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQE\"\n";
    for (extra, words) in [
        (salt.to_string(), "enroll the key again"),
        (check.to_string(), "enroll the key again"),
        ("hmac_uv = true\n".to_string(), "enroll the key again"),
        (
            "suspended_reason = \"x\"\n".to_string(),
            "set suspended = true",
        ),
    ] {
        let err =
            toml::from_str::<ctap_core::store::credential::StateFile>(&state(&extra)).unwrap_err();
        assert_human("state row", err.message());
        assert!(err.message().contains(words), "{}", err.message());
    }
}
