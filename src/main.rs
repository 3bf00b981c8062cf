fn main() -> std::process::ExitCode {
    portsim::cli::main()
}
