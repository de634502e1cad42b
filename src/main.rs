// Rendering a large repository allocates many small values; mimalloc does that markedly
// faster than the system allocator (see `cargo xtask bench`).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    kairo::run(std::env::args_os())
}
