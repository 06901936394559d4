//! `--pin`: set the PIN on first start.

use crate::engine::EngineHandle;
use crate::error::Error;

/// Set `pin` if the key has no PIN yet.
pub fn set_if_unset(_engine: &EngineHandle, _pin: &str) -> Result<(), Error> {
    Err(Error::Pin {
        detail: "--pin is not implemented yet".to_owned(),
    })
}
