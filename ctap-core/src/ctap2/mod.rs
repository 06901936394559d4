//! CTAP2 commands.
