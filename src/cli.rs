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
  kairo watch --once                one scan of every watched image; bumps committed and pushed
  kairo watch --listen 0.0.0.0:8080 the daemon: scans, webhooks, /metrics, /healthz, /readyz
  kairo diff --base origin/main     what a branch changes, object by object
  kairo diff --base origin/main --output markdown > comment.md
  kairo init --dir my-gitops        a new repository that renders as is
  kairo explain api-server --env production   every value and where it came from
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
    /// Colour: `auto` (when the stream is a terminal and `NO_COLOR` is unset), `always`, `never`.
    #[arg(long, global = true, value_enum, default_value_t = ColorChoice::Auto, value_name = "WHEN")]
    pub color: ColorChoice,
    /// YAML events that aliases (`*name`) may replay in one input file (at least; a larger
    /// file gets four per byte): a guard against alias bombs.
    #[arg(long, global = true, env = "KAIRO_YAML_ALIAS_LIMIT", value_name = "EVENTS", default_value_t = crate::limits::Limits::default().yaml_alias_events)]
    pub yaml_alias_limit: usize,
    /// Fuel for one template render (about one unit per instruction): stops runaway loops.
    #[arg(long, global = true, env = "KAIRO_TEMPLATE_FUEL", value_name = "UNITS", default_value_t = crate::limits::Limits::default().template_fuel)]
    pub template_fuel: u64,
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
    /// Create a new repository: a catalog, one environment, policies, rendered clusters/.
    Init(InitArgs),
    /// Show one release in one environment, each value with the file and line it came from.
    Explain(ExplainArgs),
    /// List a service's candidate tags and which one its update policy picks, and why.
    Tags(TagsArgs),
    /// Compare an environment's live cluster state with what Git renders (read-only).
    Drift(DriftArgs),
    /// Report (or wait for) every release of an environment Ready at the state Git renders.
    Status(StatusArgs),
    /// Watch registries and commit the bumps update policies call for (`--once`, or a daemon).
    Watch(WatchArgs),
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
    #[command(flatten)]
    pub policy: PolicyArgs,
}

#[derive(Debug, Args)]
#[command(after_help = "\
Examples:
  kairo bump api-server 3f9c2e1 --env staging --push
  kairo bump --env staging api-server=3f9c2e1 coordinator-service=3f9c2e1@sha256:... --push
  kairo bump --env staging --all 3f9c2e1 --repository-prefix ghcr.io/kai/ --push
  kairo bump api-server 3f9c2e1 --env staging --push --branch   # review branch")]
pub struct BumpArgs {
    /// `SERVICE TAG`, or one or more `SERVICE=TAG[@DIGEST]`.
    #[arg(value_name = "IMAGES", required_unless_present = "all")]
    pub images: Vec<String>,
    /// The environment whose images change.
    #[arg(long)]
    pub env: String,
    /// The new image's digest (`sha256:...`), with `SERVICE TAG` or `--all`; required when a
    /// digest is pinned today.
    #[arg(long)]
    pub digest: Option<String>,
    /// Set this tag on every enabled, unpinned service of the environment (narrowed by
    /// `--repository-prefix`): what one CI build produced.
    #[arg(long, value_name = "TAG", conflicts_with = "images")]
    pub all: Option<String>,
    /// With `--all`: only services whose image repository starts with this.
    #[arg(long, value_name = "PREFIX", requires = "all")]
    pub repository_prefix: Option<String>,
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
    /// Commit author, `Name <email>`. Default: KAIRO_GIT_AUTHOR_NAME and KAIRO_GIT_AUTHOR_EMAIL
    /// (both), then git config.
    #[arg(long)]
    pub author: Option<String>,
    /// Commit message subject; `{env}`, `{service}`, `{tag}`, `{from}` are replaced.
    #[arg(long)]
    pub message: Option<String>,
    /// How long to keep retrying rejected pushes (capped, jittered exponential backoff), e.g.
    /// `2m`, `30s`, `0s` for a single attempt.
    #[arg(long, default_value = "2m", value_name = "DURATION", value_parser = humantime::parse_duration)]
    pub retry_timeout: std::time::Duration,
    /// How long one `git fetch` or `git push` may run before it is stopped (`0s`: no limit).
    #[arg(long, default_value = "5m", value_name = "DURATION", value_parser = humantime::parse_duration)]
    pub git_timeout: std::time::Duration,
    /// Also give up after this many push attempts.
    #[arg(long, value_name = "N")]
    pub max_attempts: Option<u32>,
    /// Sign the commit (as git does: `gpg.format` ssh or openpgp, `user.signingkey`); also on
    /// when git config sets `commit.gpgsign`.
    #[arg(long)]
    pub sign: bool,
    /// Do not evaluate policies/ on the result.
    #[arg(long)]
    pub no_check: bool,
    #[command(flatten)]
    pub policy: PolicyArgs,
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
#[command(after_help = "\
Examples:
  kairo watch --once --author \"kairo <kairo@example.com>\"
  kairo watch --listen 0.0.0.0:8080 --log-format json
  kairo watch --listen 0.0.0.0:8080 --leader-elect --lease-namespace gitops

Exit codes (--once): 0 nothing to do or every bump landed, 1 a registry or image was
unavailable or a push gave up, 2 usage or input error.")]
pub struct WatchArgs {
    /// One scan of every watched image, then exit.
    #[arg(long, conflicts_with = "listen", required_unless_present = "listen")]
    pub once: bool,
    /// Run the daemon, serving /metrics, /healthz, /readyz and /webhook on this address.
    #[arg(long, value_name = "ADDR")]
    pub listen: Option<std::net::SocketAddr>,
    /// Scan every image this often, instead of each policy's `interval` (default 5m).
    #[arg(long, value_name = "DURATION", value_parser = humantime::parse_duration)]
    pub interval: Option<std::time::Duration>,
    /// Daemon: compare the cluster (kubeconfig's current context, or in-cluster) with the
    /// remote tip this often, exporting drift and release readiness metrics. Off by default.
    #[arg(long, requires = "listen", value_name = "DURATION", value_parser = humantime::parse_duration)]
    pub drift_interval: Option<std::time::Duration>,
    /// Daemon: check drift only for this environment (repeatable; every environment when
    /// none): the ones deployed to the cluster the kubeconfig reaches.
    #[arg(long = "drift-env", value_name = "ENV", requires = "drift_interval")]
    pub drift_envs: Vec<String>,
    /// Images looked up at once.
    #[arg(long, default_value_t = 8, value_name = "N", value_parser = clap::value_parser!(u32).range(1..=256))]
    pub concurrency: u32,
    /// Scans (interval or webhook) running at once in the daemon; more are coalesced.
    #[arg(long, default_value_t = 2, value_name = "N", value_parser = clap::value_parser!(u32).range(1..=64))]
    pub max_scans: u32,
    /// The remote read and pushed to.
    #[arg(long, default_value = "origin")]
    pub remote: String,
    /// The remote branch read and pushed to. Default: the current branch's upstream.
    #[arg(long, value_name = "NAME")]
    pub branch: Option<String>,
    /// Commit author, `Name <email>`. Default: KAIRO_GIT_AUTHOR_NAME and KAIRO_GIT_AUTHOR_EMAIL
    /// (both), then git config.
    #[arg(long)]
    pub author: Option<String>,
    /// Sign commits (as git does).
    #[arg(long)]
    pub sign: bool,
    /// How long one environment's push keeps retrying rejections.
    #[arg(long, default_value = "2m", value_name = "DURATION", value_parser = humantime::parse_duration)]
    pub retry_timeout: std::time::Duration,
    /// How long one `git fetch` or `git push` may run before it is stopped (`0s`: no limit).
    #[arg(long, default_value = "5m", value_name = "DURATION", value_parser = humantime::parse_duration)]
    pub git_timeout: std::time::Duration,
    /// Do not evaluate policies/ on the bumped environments.
    #[arg(long)]
    pub no_check: bool,
    #[command(flatten)]
    pub policy: PolicyArgs,
    /// Registries spoken to over plain HTTP (loopback registries always are).
    #[arg(long = "insecure-registry", value_name = "HOST[:PORT]")]
    pub insecure_registries: Vec<String>,
    /// Requests per second to one registry (`unlimited` for none), instead of the default
    /// budget (20/s; Docker Hub 2/s). Repeatable.
    #[arg(long = "registry-rate", value_name = "HOST=RATE", value_parser = parse_registry_rate)]
    pub registry_rates: Vec<(String, f64)>,
    /// Webhooks: the HMAC-SHA256 secret signing request bodies (`X-Hub-Signature-256`).
    #[arg(
        long,
        env = "KAIRO_WEBHOOK_SECRET",
        hide_env_values = true,
        value_name = "SECRET"
    )]
    pub webhook_secret: Option<String>,
    /// Webhooks: a shared token (`Authorization: Bearer`, Harbor's auth header, or `?token=`).
    #[arg(
        long,
        env = "KAIRO_WEBHOOK_TOKEN",
        hide_env_values = true,
        value_name = "TOKEN"
    )]
    pub webhook_token: Option<String>,
    /// Only the holder of a coordination.k8s.io Lease scans and writes.
    #[arg(long, requires = "listen")]
    pub leader_elect: bool,
    /// The Lease's name.
    #[arg(long, default_value = "kairo-watch", value_name = "NAME")]
    pub lease_name: String,
    /// The Lease's namespace. Default: POD_NAMESPACE, then the kubeconfig's namespace.
    #[arg(long, value_name = "NAMESPACE")]
    pub lease_namespace: Option<String>,
    /// This replica's identity in the Lease. Default: POD_NAME, then HOSTNAME.
    #[arg(long, value_name = "ID")]
    pub lease_identity: Option<String>,
    /// How long a Lease holds without renewal before another replica may take it.
    #[arg(long, default_value = "15s", value_name = "DURATION", value_parser = humantime::parse_duration)]
    pub lease_duration: std::time::Duration,
    /// Output format of `--once` on stdout.
    #[arg(long, value_enum, default_value_t = OutputFormat::Text)]
    pub output: OutputFormat,
}

fn parse_registry_rate(s: &str) -> Result<(String, f64), String> {
    let (host, rate) = s
        .split_once('=')
        .ok_or_else(|| format!("`{s}` is not `HOST=RATE`"))?;
    let rate = match rate {
        "unlimited" => f64::INFINITY,
        r => r
            .parse::<f64>()
            .ok()
            .filter(|r| *r > 0.0 && r.is_finite())
            .ok_or_else(|| {
                format!("`{r}` is not a positive number of requests per second, or `unlimited`")
            })?,
    };
    Ok((host.to_string(), rate))
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
    #[command(flatten)]
    pub policy: PolicyArgs,
    /// Output format on stdout.
    #[arg(long, value_enum, default_value_t = OutputFormat::Text)]
    pub output: OutputFormat,
}

/// Bounds on each policy evaluation (one rule of one policy file on one object); exceeding one
/// is an error naming the file.
#[derive(Debug, Clone, Args)]
pub struct PolicyArgs {
    /// Longest one policy rule may run on one object (`500ms`, `2s`, `1m`).
    #[arg(long, value_name = "DURATION", default_value = "2s", value_parser = humantime::parse_duration)]
    pub policy_timeout: std::time::Duration,
    /// Most memory one policy file may allocate on one object, in MiB.
    #[arg(long, value_name = "MIB", default_value_t = 512, value_parser = clap::value_parser!(u64).range(1..=1 << 20))]
    pub policy_memory: u64,
}

impl PolicyArgs {
    pub fn limits(&self) -> crate::policy::Limits {
        crate::policy::Limits {
            timeout: self.policy_timeout,
            memory: self.policy_memory * 1024 * 1024,
        }
    }
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
pub enum ColorChoice {
    Auto,
    Always,
    Never,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Args)]
pub struct InitArgs {
    /// The directory to create the repository in. Default: `--root`.
    #[arg(long, value_name = "DIR")]
    pub dir: Option<PathBuf>,
    /// Also write kairo's templates into templates/, for customising (otherwise embedded).
    #[arg(long)]
    pub templates: bool,
}

#[derive(Debug, Args)]
pub struct ExplainArgs {
    /// The service or add-on.
    pub service: String,
    /// The environment.
    #[arg(long)]
    pub env: String,
    /// Output format on stdout: annotated YAML, or JSON entries.
    #[arg(long, value_enum, default_value_t = ExplainFormat::Yaml)]
    pub output: ExplainFormat,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ExplainFormat {
    Yaml,
    Json,
}

/// Where `drift` and `status` find the desired and the live state.
#[derive(Debug, Args)]
pub struct ClusterArgs {
    /// The environment to check.
    #[arg(long = "env", value_name = "NAME")]
    pub env: String,
    /// The git revision whose render is the desired state.
    #[arg(long, default_value = "HEAD", value_name = "REV")]
    pub revision: String,
    /// The kubeconfig context. Default: the current context, as kubectl resolves it.
    #[arg(long, value_name = "NAME", conflicts_with = "live_file")]
    pub context: Option<String>,
    /// Read live objects from this file (`kubectl get helmreleases,deploy,sts,hpa -n NS -o yaml`)
    /// instead of the cluster.
    #[arg(long, value_name = "FILE")]
    pub live_file: Option<std::path::PathBuf>,
    /// Objects per page when listing (`limit`; pages are followed with `continue`).
    #[arg(long, default_value_t = 500, value_name = "N", hide = true)]
    pub page_size: u32,
    /// How long one request to the API server may take, connecting included (as kubectl's
    /// `--request-timeout`; 0 means no timeout).
    #[arg(long, default_value = "30s", value_name = "DURATION", value_parser = humantime::parse_duration)]
    pub request_timeout: std::time::Duration,
}

#[derive(Debug, Args)]
pub struct DriftArgs {
    #[command(flatten)]
    pub cluster: ClusterArgs,
    /// Field-level summaries only, no unified diffs.
    #[arg(long)]
    pub summary: bool,
    /// Output format on stdout.
    #[arg(long, value_enum, default_value_t = DiffFormat::Text)]
    pub output: DiffFormat,
}

#[derive(Debug, Args)]
pub struct StatusArgs {
    #[command(flatten)]
    pub cluster: ClusterArgs,
    /// Ask again until every release is ready, one fails, or `--timeout` passes.
    #[arg(long)]
    pub wait: bool,
    /// How long `--wait` waits.
    #[arg(long, default_value = "5m", value_name = "DURATION", value_parser = humantime::parse_duration)]
    pub timeout: std::time::Duration,
    /// How long `--wait` pauses between checks.
    #[arg(long, default_value = "5s", value_name = "DURATION", value_parser = humantime::parse_duration)]
    pub poll_interval: std::time::Duration,
    /// Output format on stdout.
    #[arg(long, value_enum, default_value_t = OutputFormat::Text)]
    pub output: OutputFormat,
}
