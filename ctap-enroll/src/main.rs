//! `ctap-enroll`: see `ctap-enroll --help`. Everything lives in the library crate.

fn main() -> std::process::ExitCode {
    ctap_enroll::main()
}
