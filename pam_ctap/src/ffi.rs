//! The `unsafe` of the module's interface: turning what libpam hands an entry point (a handle
//! pointer, `argc`/`argv`) into borrowed Rust values. Everything past this file is safe code over
//! `pam-bindings`' handle API, except `interrupt.rs`'s sigaction calls (the scoped SIGINT
//! handler).

use std::ffi::{c_char, c_int, CStr};

use pam::constants::PamFlag;
use pam::module::PamHandle;

/// Why an invocation could not even be read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InvocationError {
    NullHandle,
    BadArgv,
}

/// One call of a `pam_sm_*` function, borrowed for its duration.
pub struct Invocation<'a> {
    pub pamh: &'a mut PamHandle,
    pub flags: PamFlag,
    pub args: Vec<&'a CStr>,
}

impl<'a> Invocation<'a> {
    /// Borrow the handle and the module arguments libpam passed.
    ///
    /// # Safety
    /// `pamh` must be null or the handle libpam passed to this entry point, and `argv` must be
    /// null (with `argc == 0`) or point to `argc` pointers, each null or a NUL-terminated string;
    /// all of them valid until the entry point returns (`'a` must not outlive it). This is what
    /// libpam guarantees to every `pam_sm_*` call.
    pub unsafe fn from_raw(
        pamh: *mut PamHandle,
        flags: c_int,
        argc: c_int,
        argv: *const *const c_char,
    ) -> Result<Self, InvocationError> {
        // SAFETY: per this function's contract `pamh` is null or the live handle of this call,
        // which nobody else touches until we return (libpam is single-threaded per handle).
        let pamh = unsafe { pamh.as_mut() }.ok_or(InvocationError::NullHandle)?;
        let argc = usize::try_from(argc).map_err(|_| InvocationError::BadArgv)?;
        let mut args = Vec::with_capacity(argc);
        if argc > 0 {
            if argv.is_null() {
                return Err(InvocationError::BadArgv);
            }
            // SAFETY: argv is non-null and, per the contract, points to `argc` pointers that
            // stay valid for `'a`.
            let raw = unsafe { std::slice::from_raw_parts(argv, argc) };
            for &p in raw {
                if p.is_null() {
                    return Err(InvocationError::BadArgv);
                }
                // SAFETY: p is non-null and, per the contract, a NUL-terminated string valid
                // for `'a`; we only read it.
                args.push(unsafe { CStr::from_ptr(p) });
            }
        }
        Ok(Invocation {
            pamh,
            // The flag word is a bit set; reinterpreting its bits as unsigned loses nothing.
            flags: flags as PamFlag,
            args,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn null_handle_and_argv_are_refused() {
        // SAFETY: a null handle is allowed by the contract and must be refused before any use.
        let r = unsafe { Invocation::from_raw(std::ptr::null_mut(), 0, 0, std::ptr::null()) };
        assert_eq!(r.err(), Some(InvocationError::NullHandle));
        let mut fake = [0u8; 8];
        let h = fake.as_mut_ptr().cast::<PamHandle>();
        // SAFETY: argc > 0 with a null argv must be refused before argv or the handle is read.
        let r = unsafe { Invocation::from_raw(h, 0, 2, std::ptr::null()) };
        assert_eq!(r.err(), Some(InvocationError::BadArgv));
        // SAFETY: a negative argc is refused before anything is read.
        let r = unsafe { Invocation::from_raw(h, 0, -1, std::ptr::null()) };
        assert_eq!(r.err(), Some(InvocationError::BadArgv));
        let a = c"nouserok";
        let argv = [a.as_ptr(), std::ptr::null()];
        // SAFETY: argv holds two pointers; the second is null and must be refused.
        let r = unsafe { Invocation::from_raw(h, 0, 2, argv.as_ptr()) };
        assert_eq!(r.err(), Some(InvocationError::BadArgv));
        // SAFETY: argv holds one valid C string; the handle is never dereferenced here.
        let r = unsafe { Invocation::from_raw(h, 0x8000, 1, argv.as_ptr()) };
        let inv = r.ok().unwrap();
        assert_eq!(inv.args, vec![a]);
        assert_eq!(inv.flags, 0x8000);
    }
}
