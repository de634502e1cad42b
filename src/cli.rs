//! Command-line arguments (clap). These are not domain types: `lib::run` converts them.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

const EXAMPLES: &str = "\
Examples:
  kairo render                      render environments/ into clusters/<env>/
  kairo render --check              exit 1 and list files that are out of date (CI)
  kairo render --env staging        render one environment
  kairo render --output json        machine-readable summary on stdout
  kairo check                       evaluate policies/ (Rego) on the rendered objects
  kairo bump api-server 1a2b3c4 --env staging --push   CI: bump, commit, push safely
  kairo promote --from staging --to production --commit
  kairo tags api-server --env staging   which tag the update policy picks, and why
  kairo diff --base origin/main     what a branch changes, object by object
  kairo diff --base origin/main --output markdown > comment.md
  kairo completions bash > /etc/bash_completion.d/kairo

Exit codes: 0 ok, 1 differences or violations found, 2 usage or input error.";

#[derive(Debug, Parser)]
#[command(name = "kairo", version, about = "Typed environments rendered into a Flux GitOps repository", after_help = EXAMPLES)]
pub struct Cli {
    /// Repository root holding environments/, templates/ and clusters/.
    #[arg(
        long,
        global = true,
        default_value = ".",
        env = "KAIRO_ROOT",
        value_name = "DIR"
    )]
    pub root: PathBuf,
    /// More logging on stderr (-v debug, -vv trace); RUST_LOG overrides.
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,
    /// Log line format on stderr.
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Render environments/ through templates/ into clusters/<env>/.
    Render(RenderArgs),
    /// Set one service's image in one environment, re-render it, optionally commit and push.
    Bump(BumpArgs),
    /// Copy tested image tags from one environment to another, in one commit.
    Promote(PromoteArgs),
    /// Evaluate the Rego policies in policies/ on every rendered object.
    Check(CheckArgs),
    /// Show what a change does to the rendered objects (renders both sides in memory).
    Diff(DiffArgs),
    /// List a service's candidate tags and which one its update policy picks, and why.
    Tags(TagsArgs),
    /// Print a shell completion script.
    Completions {
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
}

#[derive(Debug, Args)]
pub struct RenderArgs {
    /// Only this environment (repeatable). Default: all.
    #[arg(long = "env", value_name = "NAME")]
    pub envs: Vec<String>,
    /// Write nothing; exit 1 and list the files that are out of date.
    #[arg(long)]
    pub check: bool,
    /// Overwrite generated files that were edited by hand, and files kairo did not generate.
    #[arg(long)]
    pub force: bool,
    /// Output format on stdout.
    #[arg(long, value_enum, default_value_t = OutputFormat::Text)]
    pub output: OutputFormat,
    /// Do not evaluate policies/ before writing.
    #[arg(long)]
    pub no_check: bool,
}

#[derive(Debug, Args)]
pub struct BumpArgs {
    /// The service to bump.
    pub service: String,
    /// The new image tag.
    pub tag: String,
    /// The environment whose image changes.
    #[arg(long)]
    pub env: String,
    /// The new image's digest (`sha256:...`); required when a digest is pinned today.
    #[arg(long)]
    pub digest: Option<String>,
    #[command(flatten)]
    pub publish: PublishArgs,
}

#[derive(Debug, Args)]
pub struct PromoteArgs {
    /// The environment whose images are promoted (e.g. staging).
    #[arg(long)]
    pub from: String,
    /// The environment that receives them (e.g. production).
    #[arg(long)]
    pub to: String,
    /// Only this service (repeatable). Default: every service that runs in both.
    #[arg(long = "service", value_name = "NAME")]
    pub services: Vec<String>,
    #[command(flatten)]
    pub publish: PublishArgs,
}

/// How an image change is recorded: shared by `bump` and `promote`.
#[derive(Debug, Args)]
pub struct PublishArgs {
    /// Change pinned services too.
    #[arg(long)]
    pub force: bool,
    /// Commit the change (the environment file and the re-rendered files).
    #[arg(long)]
    pub commit: bool,
    /// Commit and push; on rejection, re-apply the change on the remote tip and retry.
    #[arg(long)]
    pub push: bool,
    /// The remote to push to.
    #[arg(long, default_value = "origin")]
    pub remote: String,
    /// The remote branch to push to. Default: the current branch's upstream. Without a value:
    /// a bump branch named after the change, `kairo/<env>/<service>-<tag>`.
    #[arg(long, num_args = 0..=1, default_missing_value = "", value_name = "NAME")]
    pub branch: Option<String>,
    /// Commit author, `Name <email>`. Default: KAIRO_GIT_AUTHOR_NAME/_EMAIL, then git config.
    #[arg(long)]
    pub author: Option<String>,
    /// Commit message subject; `{env}`, `{service}`, `{tag}`, `{from}` are replaced.
    #[arg(long)]
    pub message: Option<String>,
    /// Push attempts before giving up.
    #[arg(long, default_value_t = 10)]
    pub max_attempts: u32,
    /// Sign the commit (as git does: `gpg.format` ssh or openpgp, `user.signingkey`); also on
    /// when git config sets `commit.gpgsign`.
    #[arg(long)]
    pub sign: bool,
    /// Do not evaluate policies/ on the result.
    #[arg(long)]
    pub no_check: bool,
    /// Output format on stdout.
    #[arg(long, value_enum, default_value_t = OutputFormat::Text)]
    pub output: OutputFormat,
}

#[derive(Debug, Args)]
pub struct TagsArgs {
    /// The service whose image is looked up.
    pub service: String,
    /// The environment whose update policy applies.
    #[arg(long)]
    pub env: String,
    /// Registries spoken to over plain HTTP (loopback registries always are).
    #[arg(long = "insecure-registry", value_name = "HOST[:PORT]")]
    pub insecure_registries: Vec<String>,
    /// Output format on stdout.
    #[arg(long, value_enum, default_value_t = OutputFormat::Text)]
    pub output: OutputFormat,
}

#[derive(Debug, Args)]
pub struct CheckArgs {
    /// Only this environment (repeatable). Default: all.
    #[arg(long = "env", value_name = "NAME")]
    pub envs: Vec<String>,
    /// Rego package(s) whose deny/violation/warn rules are evaluated (conftest's --namespace).
    #[arg(long = "namespace", value_name = "PACKAGE", default_value = "main")]
    pub namespaces: Vec<String>,
    /// Exit 1 on warnings too.
    #[arg(long)]
    pub fail_on_warn: bool,
    /// Output format on stdout.
    #[arg(long, value_enum, default_value_t = OutputFormat::Text)]
    pub output: OutputFormat,
}

#[derive(Debug, Args)]
pub struct DiffArgs {
    /// The revision to compare against (branch, tag, commit).
    #[arg(long, default_value = "HEAD", value_name = "REV")]
    pub base: String,
    /// The revision with the change. Default: the working tree.
    #[arg(long, value_name = "REV")]
    pub head: Option<String>,
    /// Only this environment (repeatable). Default: all.
    #[arg(long = "env", value_name = "NAME")]
    pub envs: Vec<String>,
    /// Field-level summaries only, no unified diffs.
    #[arg(long)]
    pub summary: bool,
    /// Output format on stdout.
    #[arg(long, value_enum, default_value_t = DiffFormat::Text)]
    pub output: DiffFormat,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum DiffFormat {
    Text,
    Markdown,
    Json,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum OutputFormat {
    Text,
    Json,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}
