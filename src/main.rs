// The global allocator is mimalloc, installed by regorus (feature `allocator-memory-limits`):
// its accounting bounds the memory a policy evaluation may use, and a large render, which
// allocates many small values, runs markedly faster on it than on the system allocator (see
// `cargo xtask bench`).

fn main() -> std::process::ExitCode {
    kairo::run(std::env::args_os())
}
