use std::process::ExitCode;

fn main() -> ExitCode {
    ctap_proxy::cli::main()
}
