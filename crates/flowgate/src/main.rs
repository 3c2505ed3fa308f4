//! The `flowgate` binary. Kept minimal: everything lives in the library so tests can call it.

fn main() -> std::process::ExitCode {
    flowgate::main()
}
