//! Unit tests of the glue: code mirror, error mapping, the panic guard, messages.

use std::ffi::c_int;

use ctap_core::flows::login::LoginError;
use ctap_core::flows::verify::VerifyError;
use ctap_core::store::credential::StoreError;
use ctap_core::store::fs::FileError;
use ctap_core::transport::ctap2::{CborProblem, CtapError, CtapStatus, Misbehaviour};
use ctap_core::transport::ctaphid::CtapHidError;
use ctap_core::transport::device::TransportError;
use pam::constants::PamResultCode;
use pam::module::PamHandle;

use crate::{run_guarded, to_pam, Verdict};

const SUCCESS: c_int = 0;
const SYSTEM_ERR: c_int = 4;
const AUTH_ERR: c_int = 7;
const IGNORE: c_int = 25;

/// Rule 5: the typed mirror of PAM codes round-trips, and unknown values stay unknown.
#[test]
fn pam_codes_round_trip() {
    for raw in -100..100 {
        match PamResultCode::try_from(raw) {
            Ok(code) => assert_eq!(code as c_int, raw),
            Err(back) => {
                assert_eq!(back, raw);
                assert!(!(0..=31).contains(&raw), "{raw} should be known");
            }
        }
    }
    // The values our tests and stacks rely on, as Linux-PAM's _pam_types.h defines them.
    assert_eq!(PamResultCode::PAM_SUCCESS as c_int, SUCCESS);
    assert_eq!(PamResultCode::PAM_SYSTEM_ERR as c_int, SYSTEM_ERR);
    assert_eq!(PamResultCode::PAM_AUTH_ERR as c_int, AUTH_ERR);
    assert_eq!(PamResultCode::PAM_IGNORE as c_int, IGNORE);
}

fn every_error() -> Vec<LoginError> {
    vec![
        LoginError::NoRecords,
        LoginError::Store(StoreError::File(FileError::NotFound("/x".into()))),
        LoginError::Store(StoreError::File(FileError::Insecure {
            path: "/x".into(),
            why: "mode".into(),
        })),
        LoginError::NoUsableCredential(ctap_core::flows::login::Unusable::FilteredOut {
            enrolled: 1,
            rp_id: None,
        }),
        LoginError::WrongKey,
        LoginError::MissingState {
            credential: "k".into(),
        },
        LoginError::UvUnavailable(ctap_core::flows::uv::UvRefusal::NoPinEntered),
        LoginError::Device(CtapError::Status(CtapStatus::PinBlocked)),
        LoginError::Device(CtapError::Hid(CtapHidError::Transport(
            TransportError::NoDevice,
        ))),
        LoginError::Device(CtapError::Hid(CtapHidError::Timeout)),
        LoginError::Device(CtapError::Misbehaved(Misbehaviour::Cbor(
            CborProblem::Truncated,
        ))),
        LoginError::Rejected {
            credential: "k".into(),
            reason: VerifyError::CounterRegression {
                stored: 9,
                received: 3,
            },
            suspended: true,
        },
        LoginError::Rejected {
            credential: "k".into(),
            reason: VerifyError::BadSignature,
            suspended: false,
        },
    ]
}

/// Fail closed: every error denies; only an absent records file under nouserok is ignored —
/// a store error that merely *says* "not found" (say, the state file) is still a denial.
#[test]
fn every_error_denies_and_only_no_records_may_be_ignored() {
    for e in every_error() {
        assert_eq!(to_pam(&e, false).code(), AUTH_ERR, "{e:?}");
        let with = to_pam(&e, true).code();
        if matches!(e, LoginError::NoRecords) {
            assert_eq!(with, IGNORE);
        } else {
            assert_eq!(with, AUTH_ERR, "{e:?} under nouserok");
        }
    }
}

#[test]
fn panics_and_broken_invocations_never_succeed() {
    // SAFETY: a null handle is refused before use; the closure is never reached.
    let code = unsafe {
        run_guarded(std::ptr::null_mut(), 0, 0, std::ptr::null(), |_| {
            Verdict(PamResultCode::PAM_SUCCESS)
        })
    };
    assert_eq!(code, SYSTEM_ERR);

    let mut fake = [0u8; 8];
    let h = fake.as_mut_ptr().cast::<PamHandle>();
    // SAFETY: the closure never touches the (fake) handle; it only panics.
    let code = unsafe {
        run_guarded(h, 0, 0, std::ptr::null(), |_| -> Verdict {
            std::panic::panic_any("boom")
        })
    };
    assert_eq!(code, AUTH_ERR);

    // A payload whose drop panics again must not unwind out either.
    struct Bomb;
    impl Drop for Bomb {
        fn drop(&mut self) {
            std::panic::panic_any(1u8);
        }
    }
    // SAFETY: as above.
    let code = unsafe {
        run_guarded(h, 0, 0, std::ptr::null(), |_| -> Verdict {
            std::panic::panic_any(Bomb)
        })
    };
    assert_eq!(code, AUTH_ERR);
}

#[test]
fn users_read_clear_messages() {
    let msg = |e: LoginError| crate::auth::user_message_for_test(&e);
    assert_eq!(
        msg(LoginError::Device(CtapError::Hid(CtapHidError::Transport(
            TransportError::NoDevice
        )))),
        "No security key found"
    );
    assert_eq!(
        msg(LoginError::Device(CtapError::Status(
            CtapStatus::PinBlocked
        ))),
        "PIN blocked: reset the key"
    );
    assert_eq!(
        msg(LoginError::Device(CtapError::Status(
            CtapStatus::PinInvalid
        ))),
        "Wrong PIN"
    );
}

#[test]
fn failure_lines_name_reason_and_credential() {
    let e = &every_error()[11];
    let line = crate::auth::failed_line_for_test(e);
    assert!(
        line.starts_with(
            "auth failed: reason=counter_regression service=sudo user=alice credential=\"k\" suspended=yes detail="
        ),
        "{line}"
    );
    assert!(line.contains("from 9 to 3"), "{line}");
}

/// `policy_from` reports a typed `ModuleError`: the reason word comes from its variant, the
/// fields name the argument, and a wrapped config error is its `source()`.
#[test]
fn module_errors_are_typed_with_reason_and_source() {
    use crate::arguments::ArgumentError;
    use crate::auth::{policy_from, ModuleError};
    use std::error::Error;
    use std::ffi::CString;

    let refused = |args: &[&[u8]]| -> ModuleError {
        let owned: Vec<CString> = args.iter().map(|a| CString::new(*a).unwrap()).collect();
        let refs: Vec<&std::ffi::CStr> = owned.iter().map(|c| c.as_c_str()).collect();
        match policy_from(&refs) {
            Ok(_) => panic!("{args:?} was accepted"),
            Err(p) => p.error,
        }
    };

    let e = refused(&[b"debug\xff"]);
    assert!(
        matches!(e, ModuleError::BadArgument(ArgumentError::NotUtf8 { .. })),
        "{e:?}"
    );
    assert_eq!(e.reason(), "bad_argument");
    assert!(e.fields().starts_with("argument=\"debug"), "{}", e.fields());
    assert!(
        e.fields().contains("detail=\"not UTF-8\""),
        "{}",
        e.fields()
    );
    assert!(e.source().is_some());

    let e = refused(&[b"config=etc/pam_ctap.toml"]);
    assert!(
        matches!(
            e,
            ModuleError::BadArgument(ArgumentError::ConfigNotAbsolute { .. })
        ),
        "{e:?}"
    );
    assert_eq!(e.reason(), "bad_argument");
    assert!(
        e.fields().contains("config=etc/pam_ctap.toml"),
        "{}",
        e.fields()
    );

    let e = refused(&[b"config=/nonexistent/h8-typo.toml"]);
    assert!(matches!(e, ModuleError::ConfigMissing(_)), "{e:?}");
    assert_eq!(e.reason(), "config_missing");
    assert!(e.source().is_some());
    assert!(e.fields().starts_with("detail="), "{}", e.fields());
}

/// The module's messages for device failures follow the error's structure (`DeviceFailure`),
/// and the reason word is the same classification's word.
#[test]
fn device_failures_are_classified_by_structure() {
    use ctap_core::flows::login::DeviceFailure;
    use ctap_core::transport::ctap2::HmacSecretProblem;
    let cases = [
        (
            CtapError::Hid(CtapHidError::Transport(TransportError::NoDevice)),
            DeviceFailure::NoKey,
        ),
        (
            CtapError::Status(CtapStatus::PinAuthBlocked),
            DeviceFailure::PinBlocked,
        ),
        (
            CtapError::Status(CtapStatus::OperationDenied),
            DeviceFailure::PresenceDenied,
        ),
        (
            CtapError::Hid(CtapHidError::Timeout),
            DeviceFailure::Timeout,
        ),
        (
            CtapError::Status(CtapStatus::KeepaliveCancel),
            DeviceFailure::Cancelled,
        ),
        (
            CtapError::Misbehaved(Misbehaviour::HmacSecret(HmacSecretProblem::Missing)),
            DeviceFailure::Other,
        ),
    ];
    for (e, want) in cases {
        assert_eq!(DeviceFailure::of(&e), want, "{e}");
        let login = LoginError::Device(e);
        assert_eq!(login.kind(), want.word());
    }
    let msg = |e: LoginError| crate::auth::user_message_for_test(&e);
    assert_eq!(
        msg(LoginError::Device(CtapError::Status(
            CtapStatus::OperationDenied
        ))),
        "The security key request was denied"
    );
    assert_eq!(
        msg(LoginError::Device(CtapError::Misbehaved(
            Misbehaviour::Cbor(CborProblem::NotCanonical)
        ))),
        "The security key did not answer correctly: re-insert it and try again"
    );
    let busy = LoginError::Store(StoreError::File(FileError::LockTimeout("/x".into())));
    assert!(busy.is_busy());
    assert_eq!(busy.kind(), "busy");
    assert_eq!(
        msg(busy),
        "Another login of yours is using your security key: try again"
    );
}
