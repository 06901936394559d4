//! Unit tests of the glue: code mirror, error mapping, the panic guard, messages.

use std::ffi::c_int;

use ctap_core::credential::StoreError;
use ctap_core::ctap2::{CtapError, CtapStatus};
use ctap_core::ctaphid::CtapHidError;
use ctap_core::device::TransportError;
use ctap_core::fs::FileError;
use ctap_core::login::LoginError;
use ctap_core::verify::VerifyError;
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
        LoginError::NoUsableCredential("none".into()),
        LoginError::WrongKey,
        LoginError::MissingState {
            credential: "k".into(),
        },
        LoginError::UvUnavailable("no pin".into()),
        LoginError::Device(CtapError::Status(CtapStatus::PinBlocked)),
        LoginError::Device(CtapError::Hid(CtapHidError::Transport(
            TransportError::NoDevice,
        ))),
        LoginError::Device(CtapError::Hid(CtapHidError::Timeout)),
        LoginError::Device(CtapError::DeviceMisbehaved("x".into())),
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
