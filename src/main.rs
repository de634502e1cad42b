fn main() -> std::process::ExitCode {
    kairo::run(std::env::args_os())
}
