//! The bodies of `kairo drift` and `kairo status`: render the environment at a revision through
//! the one pipeline, read the live objects (API server or `--live-file`), compare, print.
//!
//! The rest of kairo is synchronous; the tokio runtime for the kube client lives here, for the
//! length of one command.

use std::ffi::OsString;
use std::path::Path;
use std::time::{Duration, Instant};

use super::status::{self, StatusReport};
use super::{Cluster, ClusterError, Connection, Desired, DesiredError, Live};
use crate::Outcome;
use crate::cli::{ClusterArgs, DiffFormat, DriftArgs, OutputFormat, StatusArgs};
use crate::commands::{fail, pipeline_failed, usage};
use crate::model::ENVIRONMENTS_DIR;
use crate::output;
use crate::pipeline::Inputs;
use crate::render::{CLUSTERS_DIR, TEMPLATES_DIR};

/// The desired state of `args.env` at `args.revision`, through the one pipeline (no policies).
fn desired(root: &Path, args: &ClusterArgs) -> Result<Desired, Outcome> {
    let files = crate::git::read_revision(
        root,
        &args.revision,
        &[ENVIRONMENTS_DIR, TEMPLATES_DIR, CLUSTERS_DIR],
    )
    .map_err(|e| match e {
        crate::git::GitError::UnknownRevision(_) => fail(
            &e,
            Some("pass a branch, tag or commit that exists here with `--revision`"),
        ),
        crate::git::GitError::NotARepository(_) => fail(
            &e,
            Some("drift and status compare the cluster with a git revision: run kairo in the repository, or pass `--root DIR`"),
        ),
        e => fail(&e, None),
    })?;
    let inputs = Inputs::Files {
        label: args.revision.clone(),
        files,
        bootstrapped: None,
    };
    let mut all = super::render_desired(&inputs, std::slice::from_ref(&args.env), &args.revision)
        .map_err(|e| match e {
        DesiredError::Pipeline(e) => pipeline_failed(&e, false, "nothing was compared"),
        DesiredError::Drift(e) => fail(&e, None),
    })?;
    Ok(all
        .pop()
        .expect("the pipeline checked that the environment exists"))
}

fn runtime() -> Result<tokio::runtime::Runtime, Outcome> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| fail(&e, None))
}

fn cluster_failed(e: &ClusterError) -> Outcome {
    fail(e, e.hint().as_deref())
}

/// Live objects: from `--live-file`, or listed from the cluster. Returns them and their label.
fn read_live_file(path: &Path) -> Result<(Live, String), Outcome> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        usage(
            &format!("cannot read `{}`: {e}", path.display()),
            "pass the output of `kubectl get helmreleases,deploy,sts,hpa -n NAMESPACE -o yaml`",
        )
    })?;
    let label = format!("`{}`", path.display());
    let live = Live::from_yaml(&path.display().to_string(), &text).map_err(|e| {
        let hint = match e {
            super::DriftError::Duplicate { .. } => {
                "keep one copy of each object: list one namespace per `kubectl get`, and do not concatenate listings that overlap"
            }
            _ => {
                "pass the output of `kubectl get helmreleases,deploy,sts,hpa -n NAMESPACE -o yaml`"
            }
        };
        fail(&e, Some(hint))
    })?;
    Ok((live, label))
}

fn connection(args: &ClusterArgs, kubeconfig: Option<&OsString>) -> Connection {
    Connection {
        context: args.context.clone(),
        page_size: args.page_size,
        request_timeout: args.request_timeout,
        kubeconfig: kubeconfig.cloned(),
    }
}

/// `kubeconfig` is the `KUBECONFIG` value, if set.
pub fn drift_command(root: &Path, args: &DriftArgs, kubeconfig: Option<OsString>) -> Outcome {
    run_drift(root, args, kubeconfig.as_ref()).unwrap_or_else(|o| o)
}

fn run_drift(
    root: &Path,
    args: &DriftArgs,
    kubeconfig: Option<&OsString>,
) -> Result<Outcome, Outcome> {
    let desired = desired(root, &args.cluster)?;
    let (live, label) = match &args.cluster.live_file {
        Some(path) => read_live_file(path)?,
        None => {
            let rt = runtime()?;
            rt.block_on(async {
                let cluster = Cluster::connect(&connection(&args.cluster, kubeconfig))
                    .await
                    .map_err(|e| cluster_failed(&e))?;
                let live = cluster
                    .fetch(&desired)
                    .await
                    .map_err(|e| cluster_failed(&e))?;
                Ok::<_, Outcome>((live, cluster.label.clone()))
            })?
        }
    };
    let report = super::check(&desired, &live, &label);
    super::log_report(&report);
    let text = match args.output {
        DiffFormat::Text => super::render_text(&report, args.summary),
        DiffFormat::Markdown => super::render_markdown(&report, args.summary),
        DiffFormat::Json => super::render_json(&report),
    };
    output::data(&text)?;
    Ok(if report.has_drift() {
        Outcome::Differences
    } else {
        Outcome::Clean
    })
}

/// `kubeconfig` is the `KUBECONFIG` value, if set.
pub fn status_command(root: &Path, args: &StatusArgs, kubeconfig: Option<OsString>) -> Outcome {
    run_status(root, args, kubeconfig.as_ref()).unwrap_or_else(|o| o)
}

fn print_status(report: &StatusReport, format: OutputFormat) -> Result<(), Outcome> {
    output::data(&match format {
        OutputFormat::Text => status::render_text(report),
        OutputFormat::Json => status::render_json(report),
    })
}

fn run_status(
    root: &Path,
    args: &StatusArgs,
    kubeconfig: Option<&OsString>,
) -> Result<Outcome, Outcome> {
    if args.wait && args.cluster.live_file.is_some() {
        return Err(usage(
            "`--wait` needs a cluster to ask again; a live file does not change",
            "drop `--wait`, or drop `--live-file`",
        ));
    }
    let mut desired = desired(root, &args.cluster)?;
    // Readiness does not depend on Secrets: status never asks for them (and so needs no
    // `get` on them).
    desired.secrets.clear();
    let report = match &args.cluster.live_file {
        Some(path) => {
            let (live, label) = read_live_file(path)?;
            status::evaluate(&desired, &live, &label)
        }
        None => {
            let rt = runtime()?;
            rt.block_on(wait(&desired, args, kubeconfig))?
        }
    };
    print_status(&report, args.output)?;
    if report.all_ready() {
        return Ok(Outcome::Clean);
    }
    let not_ready: Vec<String> = report
        .releases
        .iter()
        .filter(|r| r.phase != status::Phase::Ready)
        .map(|r| format!("`{}` ({:?})", r.name, r.phase).to_lowercase())
        .collect();
    let why = if report.any_terminal() {
        "failed"
    } else if args.wait {
        "timed out"
    } else {
        "not ready"
    };
    output::message(&format!(
        "{}: {why}: {} of {} release(s) not ready at {}: {}",
        output::error_prefix(),
        not_ready.len(),
        report.releases.len(),
        args.cluster.revision,
        not_ready.join(", ")
    ));
    Ok(Outcome::Differences)
}

/// One check, or (with `--wait`) checks every `--poll-interval` until every release is ready,
/// one failed for good, or `--timeout` passed. At least one check always runs.
async fn wait(
    desired: &Desired,
    args: &StatusArgs,
    kubeconfig: Option<&OsString>,
) -> Result<StatusReport, Outcome> {
    let cluster = Cluster::connect(&connection(&args.cluster, kubeconfig))
        .await
        .map_err(|e| cluster_failed(&e))?;
    let deadline = Instant::now() + args.timeout;
    let mut first = true;
    // The last complete check: what a timeout reports (exit 1), once there is one.
    let mut last: Option<StatusReport> = None;
    loop {
        let fetch = cluster.fetch(desired);
        let left = deadline.saturating_duration_since(Instant::now());
        // `--timeout` bounds the whole wait, a request in flight included; with `--timeout 0s`
        // the one check still runs, bounded by `--request-timeout` only.
        let live = if args.wait && !(first && left.is_zero()) {
            match tokio::time::timeout(left, fetch).await {
                Ok(live) => live,
                Err(_) => {
                    if let Some(report) = last {
                        return Ok(report);
                    }
                    return Err(cluster_failed(&ClusterError::WaitTimedOut {
                        cluster: cluster.label.clone(),
                        timeout: humantime::format_duration(args.timeout).to_string(),
                    }));
                }
            }
        } else {
            fetch.await
        };
        first = false;
        let live = match live {
            Ok(live) => live,
            // A CI gate waits through a rollout: a control-plane blip is asked again at the
            // next poll, while time is left.
            Err(e) if args.wait && e.is_transient() => {
                let left = deadline.saturating_duration_since(Instant::now());
                if left.is_zero() {
                    return match last {
                        Some(report) => Ok(report),
                        None => Err(cluster_failed(&e)),
                    };
                }
                tracing::warn!(error = %e, "a check failed; asking again");
                tokio::time::sleep(args.poll_interval.min(left).max(Duration::from_millis(1)))
                    .await;
                if Instant::now() >= deadline {
                    return match last {
                        Some(report) => Ok(report),
                        None => Err(cluster_failed(&e)),
                    };
                }
                continue;
            }
            Err(e) => return Err(cluster_failed(&e)),
        };
        let report = status::evaluate(desired, &live, &cluster.label);
        if !args.wait || report.all_ready() || report.any_terminal() {
            return Ok(report);
        }
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Ok(report);
        }
        let pending = report
            .releases
            .iter()
            .filter(|r| r.phase != status::Phase::Ready)
            .count();
        tracing::info!(pending, "waiting for releases to become ready");
        tokio::time::sleep(args.poll_interval.min(left).max(Duration::from_millis(1))).await;
        if Instant::now() >= deadline {
            // The last sleep ran into the deadline: no time left for another check.
            return Ok(report);
        }
        last = Some(report);
    }
}
