//! kairo: typed environments rendered into a Flux GitOps repository.
//!
//! `run` is the whole program: parse arguments, set up logging, dispatch to a command, map the
//! outcome to an exit code (0 ok, 1 differences found, 2 usage or input error).

pub mod apply;
pub mod bump;
pub mod cli;
mod commands;
mod commands_ext;
pub mod daemon;
pub mod diff;
pub mod drift;
pub mod explain;
pub mod failpoint;
pub mod git;
pub mod init;
pub mod input;
pub mod limits;
pub mod lock;
pub mod model;
pub mod output;
mod par;
pub mod pipeline;
pub mod policy;
pub mod registry;
pub mod render;
pub mod stamp;
mod tags;
pub mod watch;
pub mod yaml;

use std::ffi::OsString;
use std::process::ExitCode;

use clap::Parser;

/// What a command found, as an exit code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Nothing to report: exit 0.
    Clean,
    /// Differences or violations found: exit 1.
    Differences,
    /// Usage or input error, already reported: exit 2.
    Failed,
}

impl From<Outcome> for ExitCode {
    fn from(o: Outcome) -> ExitCode {
        ExitCode::from(match o {
            Outcome::Clean => 0,
            Outcome::Differences => 1,
            Outcome::Failed => 2,
        })
    }
}

pub fn run(args: impl IntoIterator<Item = impl Into<OsString> + Clone>) -> ExitCode {
    let cli = match cli::Cli::try_parse_from(args) {
        Ok(cli) => cli,
        Err(e) => {
            let _ = e.print();
            return ExitCode::from(if e.use_stderr() { 2 } else { 0 });
        }
    };
    output::init(cli.color);
    // libgit2 re-hashes every object it reads back; git itself leaves that to `git fsck`. A
    // write reads the trees and blobs it replaces, so the check doubled a bump's git time.
    git2::opts::strict_hash_verification(false);
    // The daemon reports its work at info level by default; commands stay quiet.
    let daemon = matches!(&cli.command, cli::Command::Watch(w) if w.listen.is_some());
    init_logging(cli.verbose, cli.log_format, daemon);
    limits::set(limits::Limits {
        yaml_alias_events: cli.yaml_alias_limit,
        template_fuel: cli.template_fuel,
    });
    commands::dispatch(cli).into()
}

fn init_logging(verbose: u8, format: cli::LogFormat, daemon: bool) {
    use tracing_subscriber::EnvFilter;
    let default = match verbose {
        0 if daemon => "kairo=info",
        // The kube client logs a failed request at ERROR before returning it; kairo's own
        // message names the context and the cause, so the client's line is only noise.
        0 => "warn,kube_client=off",
        1 => "kairo=debug",
        _ => "kairo=trace",
    };
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        // Styles as for every other line on stderr: none in a pipe, a file or a container
        // log, with `--color never` or `NO_COLOR`.
        .with_ansi(output::stderr_colored())
        .with_target(false);
    let _ = match format {
        cli::LogFormat::Text => builder.try_init(),
        cli::LogFormat::Json => builder.json().try_init(),
    };
}
