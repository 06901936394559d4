fn main() -> std::process::ExitCode {
    ctap_softtoken::main()
}
