//! Project automation, run as `cargo xtask <command>` (alias in `.cargo/config.toml`).
//! Plain Rust instead of shell scripts, so it runs wherever cargo does.
#![allow(clippy::disallowed_methods)] // developer tasks run tools and read CARGO: not kairo code

mod bench;

use std::path::PathBuf;
use std::process::{Command, ExitCode, Stdio};

const USAGE: &str = "\
usage: cargo xtask <command>

commands:
  test                             fmt, clippy, tests and `kairo render --check`, as CI runs them
  golden                           rewrite tests/golden/*/expected/ from the current renderer
  bench [--envs N] [--services M]  time kairo on a synthetic repository (default 50 x 500)
  bench registry                   tag selection over 10,000 tags; a scan of 1,000 repositories
                                   on a loopback docker-registry
  bench drift                      10,000 live objects compared with a 2,500-service environment
  bench repo DIR [--envs N] [--services M]
                                   only generate the synthetic repository in DIR, for profiling";

pub type Result<T = (), E = String> = std::result::Result<T, E>;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = match args.first().map(String::as_str) {
        Some("test") if args.len() == 1 => test(),
        Some("golden") if args.len() == 1 => golden(),
        Some("bench") if args.get(1).map(String::as_str) == Some("registry") => bench_registry(),
        Some("bench") if args.get(1).map(String::as_str) == Some("drift") => bench_drift(),
        Some("bench") if args.get(1).map(String::as_str) == Some("repo") => match args.get(2) {
            Some(dir) => bench::Options::parse(&args[3..]).and_then(|o| bench::repo(&o, dir)),
            None => Err("bench repo: name the directory to create".into()),
        },
        Some("bench") => bench::Options::parse(&args[1..])
            .and_then(|o| bench::run(&o))
            .and_then(|()| bench_registry())
            .and_then(|()| bench_drift()),
        Some("help" | "-h" | "--help") => {
            println!("{USAGE}");
            Ok(())
        }
        _ => {
            eprintln!("{USAGE}");
            return ExitCode::from(2);
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("xtask: error: {e}");
            ExitCode::FAILURE
        }
    }
}

/// The workspace root: this crate lives in `<root>/xtask`. `cargo run` names the manifest
/// directory at run time; the compile-time path is only a fallback, because one target
/// directory may serve several checkouts and a binary built in another one would point there.
pub fn root() -> PathBuf {
    let dir = std::env::var_os("CARGO_MANIFEST_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")));
    dir.parent()
        .expect("xtask lives inside the workspace")
        .to_path_buf()
}

/// A cargo command run from the workspace root, with the cargo that started us when known.
pub fn cargo(args: &[&str]) -> Command {
    let mut cmd = Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()));
    cmd.args(args).current_dir(root());
    cmd
}

/// Announces and runs one step with inherited output; an error names the step.
pub fn step(name: &str, cmd: &mut Command) -> Result {
    eprintln!("==> {name}");
    let status = cmd
        .status()
        .map_err(|e| format!("step `{name}`: cannot start {:?}: {e}", cmd.get_program()))?;
    if status.success() {
        Ok(())
    } else {
        Err(format!("step `{name}` failed ({status})"))
    }
}

fn succeeds_quietly(mut cmd: Command) -> bool {
    cmd.stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// What CI runs, in order, stopping at the first failure.
fn test() -> Result {
    if !succeeds_quietly(cargo(&["fmt", "--version"]))
        || !succeeds_quietly(cargo(&["clippy", "--version"]))
    {
        step(
            "install rustfmt and clippy",
            Command::new("rustup").args(["component", "add", "rustfmt", "clippy"]),
        )?;
    }
    // The integration tests drive the real `git` (pushes, a bare remote, `git verify-commit`),
    // `ssh-keygen` (signed commits), `python3` (a git smart-HTTP server on loopback), and
    // Debian's `docker-registry` (distribution 2.8) with `htpasswd` for Basic auth, and
    // `promtool` (Debian's `prometheus`) to check the daemon's `/metrics`, and `openssl` for
    // the registry token server's signing key.
    let tools = [
        ("git", "git"),
        ("ssh-keygen", "openssh-client"),
        ("python3", "python3"),
        ("docker-registry", "docker-registry"),
        ("htpasswd", "apache2-utils"),
        ("promtool", "prometheus"),
        ("openssl", "openssl"),
    ];
    let missing: Vec<&str> = tools
        .iter()
        .filter(|(tool, _)| {
            !succeeds_quietly({
                let mut c = Command::new("sh");
                c.args(["-c", &format!("command -v {tool}")]);
                c
            })
        })
        .map(|(_, package)| *package)
        .collect();
    if !missing.is_empty() {
        step(
            "install test tools: apt-get update",
            Command::new("apt-get").args(["update", "-q"]),
        )?;
        step(
            "install test tools: apt-get install",
            Command::new("apt-get")
                .args(["install", "-y", "-q"])
                .args(&missing),
        )?;
    }
    step(
        "format: cargo fmt --check",
        &mut cargo(&["fmt", "--all", "--", "--check"]),
    )?;
    step(
        "lint: cargo clippy -D warnings",
        &mut cargo(&[
            "clippy",
            "--workspace",
            "--all-targets",
            "--",
            "-D",
            "warnings",
        ]),
    )?;
    step("tests: cargo test", &mut cargo(&["test", "--workspace"]))?;
    step(
        "clusters/ up to date: kairo render --check",
        &mut cargo(&["run", "--quiet", "--", "render", "--check"]),
    )?;
    eprintln!("==> all steps passed");
    Ok(())
}

/// The registry bench (`benches/registry.rs`) needs `docker-registry` like the tests do.
fn bench_registry() -> Result {
    step(
        "bench: tag selection and registry scan (cargo bench --bench registry)",
        &mut cargo(&["bench", "--bench", "registry"]),
    )
}

/// The drift bench (`benches/drift.rs`): `drift::check` and `kairo drift --live-file`.
fn bench_drift() -> Result {
    step(
        "bench: drift over 10,000 live objects (cargo bench --bench drift)",
        &mut cargo(&["bench", "--bench", "drift"]),
    )
}

/// Rewrites the expected trees of the golden tests (the test does it when the variable is set).
fn golden() -> Result {
    step(
        "update golden files: cargo test --test integration golden",
        cargo(&["test", "--test", "integration", "golden"]).env("KAIRO_UPDATE_GOLDEN", "1"),
    )?;
    println!(
        "tests/golden/*/expected/ rewritten: review the changes (`git diff --stat tests/golden`) before committing them"
    );
    Ok(())
}
