//! pam_ctap: a PAM second factor with a FIDO2 security key.
//!
//! Thin glue (docs/ARCHITECTURE.md §8): read the invocation, run `ctap_core::flows::login::login`
//! (§4, the only place a login is verified), map its outcome to a PAM code, log one line.
//!
//! Why success is a value and not the absence of an error (rustls, `manual/implvulns.rs`: "the
//! *lack* of an error … is a poor indicator that the signature was valid"): authentication
//! returns PAM_SUCCESS only from [`grant`], which demands a `LoginGranted`, which only `login`
//! builds, after verification and after the new counter was written. Everything else — an
//! error, a panic, a broken invocation — fails closed, and PAM_IGNORE comes only from
//! [`to_pam`]'s `NoRecords` arm under `nouserok` and from `remote = "skip"` for a login with
//! PAM_RHOST set (`Verdict::ignore_remote`, before any key is asked).
//!
//! Exported: `pam_sm_authenticate` and `pam_sm_setcred`. The account, session and password
//! entry points are deliberately absent: this module has nothing to say there, and a stack that
//! lists it under `account`/`session`/`password` anyway gets libpam's own failure for a missing
//! symbol (PAM_MODULE_UNKNOWN, logged by libpam) rather than a silent PAM_IGNORE we chose.
//! (`config/pam.d/*` use it under `auth` only.)
// clippy.toml forbids reading the environment (std::env::var and friends) in this crate; the
// rule covers what ships, and test builds may use temp_dir and child-process variables.
#![cfg_attr(test, allow(clippy::disallowed_methods))]

mod arguments;
mod auth;
mod conv;
mod ffi;
mod interrupt;
mod syslog;
#[cfg(test)]
mod tests;

use std::ffi::{c_char, c_int};
use std::panic::{catch_unwind, AssertUnwindSafe};

use ctap_core::flows::login::{LoginError, LoginGranted, Unusable};
use pam::constants::PamResultCode;
use pam::module::PamHandle;

use crate::ffi::Invocation;

/// A PAM result this module decided on. The field is private: see the module docs.
#[derive(Debug, PartialEq, Eq)]
pub struct Verdict(PamResultCode);

impl Verdict {
    /// Authentication failed (any error, any doubt).
    fn deny() -> Self {
        Verdict(PamResultCode::PAM_AUTH_ERR)
    }

    /// libpam called us with something we cannot read (null handle, broken argv).
    fn system_error() -> Self {
        Verdict(PamResultCode::PAM_SYSTEM_ERR)
    }

    /// `remote = "skip"` and PAM_RHOST is set: the rest of the stack decides (auth.rs).
    fn ignore_remote() -> Self {
        Verdict(PamResultCode::PAM_IGNORE)
    }

    fn is_ignore(&self) -> bool {
        self.0 == PamResultCode::PAM_IGNORE
    }

    fn code(self) -> c_int {
        self.0 as c_int
    }
}

/// The one place authentication succeeds: it takes the proof that `login` verified an assertion
/// and wrote the advanced counter.
fn grant(_proof: LoginGranted) -> Verdict {
    Verdict(PamResultCode::PAM_SUCCESS)
}

/// Every login error is a denial, except that `nouserok` skips a user whose records file is
/// truly absent (not unreadable, not malformed: CVE-2020-24612). No wildcard arm: a new error
/// variant must be classified here before the module compiles.
fn to_pam(e: &LoginError, nouserok: bool) -> Verdict {
    match e {
        LoginError::NoRecords if nouserok => Verdict(PamResultCode::PAM_IGNORE),
        LoginError::NoRecords => Verdict::deny(),
        LoginError::UnknownUser(_) => Verdict::deny(),
        LoginError::Lookup(_) => Verdict::deny(),
        LoginError::UidMismatch { .. } => Verdict::deny(),
        LoginError::RecordsMissing => Verdict::deny(),
        LoginError::EnrolledAsOtherName { .. } => Verdict::deny(),
        LoginError::Store(_) => Verdict::deny(),
        // require_hmac_secret refused the user's U2F (or hmac-less) credentials: PAM_AUTH_ERR.
        LoginError::NoUsableCredential(Unusable::HmacSecretRequired { .. }) => Verdict::deny(),
        LoginError::NoUsableCredential(_) => Verdict::deny(),
        LoginError::WrongKey => Verdict::deny(),
        LoginError::MissingState { .. } => Verdict::deny(),
        LoginError::UvUnavailable(_) => Verdict::deny(),
        LoginError::Device(_) => Verdict::deny(),
        LoginError::Rejected { .. } => Verdict::deny(),
        LoginError::Place(_) => Verdict::deny(),
        LoginError::PinLastRetry => Verdict::deny(),
        LoginError::DeviceNotEnrolled { .. } => Verdict::deny(),
        LoginError::Directory(_) => Verdict::deny(),
    }
}

/// Run one entry point: read the invocation, call `f`, and turn anything but a verdict (a
/// broken invocation, a panic) into a failure. No unwind crosses into libpam.
///
/// # Safety
/// The arguments must be those libpam passed to the calling `pam_sm_*` function.
unsafe fn run_guarded(
    pamh: *mut PamHandle,
    flags: c_int,
    argc: c_int,
    argv: *const *const c_char,
    f: impl FnOnce(&mut Invocation<'_>) -> Verdict,
) -> c_int {
    let result = catch_unwind(AssertUnwindSafe(|| {
        // SAFETY: forwarded unchanged from libpam's call, per this function's contract.
        match unsafe { Invocation::from_raw(pamh, flags, argc, argv) } {
            Ok(mut inv) => f(&mut inv),
            Err(_) => Verdict::system_error(),
        }
    }));
    match result {
        Ok(verdict) => verdict.code(),
        Err(payload) => {
            // Dropping a panic payload can itself panic; never let that unwind either.
            let _ = catch_unwind(AssertUnwindSafe(|| drop(payload))).map_err(std::mem::forget);
            Verdict::deny().code()
        }
    }
}

/// # Safety
/// Called by libpam only, with its handle and the module arguments from the stack.
#[no_mangle]
pub unsafe extern "C" fn pam_sm_authenticate(
    pamh: *mut PamHandle,
    flags: c_int,
    argc: c_int,
    argv: *const *const c_char,
) -> c_int {
    // SAFETY: our own arguments, as libpam passed them.
    unsafe { run_guarded(pamh, flags, argc, argv, auth::authenticate) }
}

/// There are no credentials to establish: the second factor leaves nothing behind. This is the
/// only other PAM_SUCCESS in the module, and it grants nothing: libpam calls setcred only after
/// the auth stack as a whole has succeeded.
///
/// # Safety
/// Called by libpam only, with its handle and the module arguments from the stack.
#[no_mangle]
pub unsafe extern "C" fn pam_sm_setcred(
    pamh: *mut PamHandle,
    flags: c_int,
    argc: c_int,
    argv: *const *const c_char,
) -> c_int {
    // SAFETY: our own arguments, as libpam passed them.
    unsafe {
        run_guarded(pamh, flags, argc, argv, |_| {
            Verdict(PamResultCode::PAM_SUCCESS)
        })
    }
}
