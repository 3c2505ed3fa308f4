//! The `flowgate` binary. Kept minimal: everything lives in the library so tests can call it.

/// mimalloc instead of the system allocator: the request path allocates many small, short-lived
/// buffers across threads, which glibc's malloc serves slowly (a quarter of the proxy's CPU time
/// under load went to it).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    flowgate::main()
}
