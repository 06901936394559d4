fn main() {
    std::process::exit(ctap_sshagent::main());
}
