// The global allocator is mimalloc, installed by regorus (feature `allocator-memory-limits`):
// its accounting bounds the memory a policy evaluation may use, and a large render, which
// allocates many small values, runs markedly faster on it than on the system allocator (see
// `cargo xtask bench`).

#[allow(clippy::disallowed_methods)] // before anything else runs; see below
fn main() -> std::process::ExitCode {
    // regorus builds `anyhow` errors as part of ordinary evaluation; with `RUST_BACKTRACE=1`
    // (common in CI) each one would capture a backtrace, which made `kairo check` about 1.5
    // times slower. Panics still print backtraces: this only turns off library captures, and
    // only when the user has not chosen.
    if std::env::var_os("RUST_LIB_BACKTRACE").is_none() {
        // SAFETY: the first statement of `main`, before any other thread exists.
        unsafe { std::env::set_var("RUST_LIB_BACKTRACE", "0") };
    }
    kairo::run(std::env::args_os())
}
