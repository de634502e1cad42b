//! `kairo watch`: `--once` (one scan, its bumps written, a report) or `--listen` (the daemon,
//! `crate::daemon`). Values from the process environment arrive in `Env`, read by the command
//! layer.

use std::io::Write as _;
use std::path::Path;

use serde::Serialize;

use super::{Found, ImageReport, WatchError, WriteSettings, Written};
use crate::Outcome;
use crate::bump::{BumpError, RetryPolicy};
use crate::cli::{OutputFormat, WatchArgs};
use crate::git::writer::LocalBranch;
use crate::git::{WriteError, Writer};
use crate::pipeline::PipelineError;
use crate::registry::{Client, ClientConfig, DockerConfig, Rate};

/// What `kairo watch` needs from the process environment.
pub struct Env {
    pub writer: Result<Writer, WriteError>,
    pub policy: crate::policy::CheckOptions,
    pub pod_namespace: Option<String>,
    /// `POD_NAME`, then `HOSTNAME`.
    pub pod_name: Option<String>,
    /// `KUBECONFIG`, for `--drift-interval`'s client.
    pub kubeconfig: Option<std::ffi::OsString>,
}

fn fail(message: &str, hint: Option<&str>) -> Outcome {
    crate::output::error(message, hint);
    Outcome::Failed
}

/// Reports a failure to read the watched set (exit 2).
pub(crate) fn load_failed(e: &WatchError) -> Outcome {
    match e {
        WatchError::Pipeline(PipelineError::Model { diagnostics, .. }) => {
            for d in diagnostics {
                crate::output::message(&format!("{d}\n"));
            }
            fail(
                &e.to_string(),
                Some("fix the environments on the remote branch; nothing was scanned"),
            )
        }
        WatchError::Write(WriteError::NoIdentity | WriteError::BadIdentity { .. }) => fail(
            &e.to_string(),
            Some(
                "pass `--author \"Name <email>\"`, or set KAIRO_GIT_AUTHOR_NAME and KAIRO_GIT_AUTHOR_EMAIL",
            ),
        ),
        WatchError::Write(WriteError::DetachedHead) => fail(
            &e.to_string(),
            Some("check out a branch that tracks the remote branch, or pass `--branch NAME`"),
        ),
        _ => fail(&e.to_string(), None),
    }
}

pub fn settings(args: &WatchArgs, policy: crate::policy::CheckOptions) -> WriteSettings {
    WriteSettings {
        remote: args.remote.clone(),
        branch: args.branch.clone(),
        check_policies: !args.no_check,
        policy,
        retry: RetryPolicy {
            budget: args.retry_timeout,
            ..RetryPolicy::default()
        },
    }
}

pub fn client(args: &WatchArgs) -> Result<Client, Outcome> {
    let docker_config = DockerConfig::load().map_err(|e| {
        fail(
            &e.to_string(),
            Some("fix docker's config.json (DOCKER_CONFIG)"),
        )
    })?;
    let rates = args
        .registry_rates
        .iter()
        .map(|(host, per_second)| {
            let rate = if per_second.is_infinite() {
                Rate::UNLIMITED
            } else {
                Rate {
                    per_second: *per_second,
                    // A burst of two seconds' worth, at least one request.
                    burst: (per_second * 2.0).ceil().clamp(1.0, f64::from(u32::MAX)) as u32,
                }
            };
            (host.clone(), rate)
        })
        .collect();
    Client::new(ClientConfig {
        docker_config,
        plain_http: args.insecure_registries.clone(),
        rates,
        ..ClientConfig::default()
    })
    .map_err(|e| fail(&e.to_string(), None))
}

pub fn run(root: &Path, args: &WatchArgs, env: Env) -> Outcome {
    if args.listen.is_some() {
        return crate::daemon::command(root, args, env);
    }
    let writer = match env.writer {
        Ok(w) => w,
        Err(e) => return load_failed(&WatchError::Write(e)),
    };
    let settings = settings(args, env.policy);
    let model = match super::load(&writer, &settings) {
        Ok(m) => m,
        Err(e) => return load_failed(&e),
    };
    let (watched, bad) = super::watched(&model);
    for b in &bad {
        fail(
            &format!(
                "`{}/{}`: {}; not watched",
                b.environment, b.service, b.message
            ),
            None,
        );
    }
    let client = match client(args) {
        Ok(c) => c,
        Err(o) => return o,
    };
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => return fail(&format!("cannot start the async runtime: {e}"), None),
    };
    let scan = runtime.block_on(super::scan(&client, &watched, args.concurrency as usize));
    drop(runtime);
    let written = super::write(
        root,
        &writer,
        &scan.bumps,
        &settings,
        &mut std::thread::sleep,
    );
    print(args.output, &scan.images, &written);
    let mut failed_writes = false;
    let mut locked = false;
    for w in &written {
        match &w.result {
            Ok(outcome) => crate::commands::report_write_notes(outcome),
            // Another kairo holds the repository: the write path's convention is exit 2,
            // said once (every environment's write meets the same lock).
            Err(BumpError::Lock(e)) => {
                if !locked {
                    fail(&e.to_string(), Some(crate::commands::LOCK_HINT));
                }
                locked = true;
            }
            Err(BumpError::Denied(findings)) => {
                failed_writes = true;
                crate::commands::report_denied(
                    findings,
                    &format!(
                        "policies deny the bumps in `{}`; nothing was written for this environment",
                        w.environment
                    ),
                    "the next scan tries again; fix the image or the policy, or pass `--no-check` to write it anyway",
                );
            }
            Err(e) => {
                failed_writes = true;
                fail(
                    &format!("bumps in `{}` were not written: {e}", w.environment),
                    Some("nothing was changed for this environment; the next scan tries again"),
                );
            }
        }
    }
    for i in &scan.images {
        match &i.found {
            Found::Unavailable { message, .. } => {
                fail(
                    &format!("`{}/{}`: {message}", i.environment, i.service),
                    Some("the image was left as it is; the next scan tries again"),
                );
            }
            Found::PolicyError { message, .. } => {
                fail(
                    &format!("`{}/{}`: {message}", i.environment, i.service),
                    Some("see `kairo tags SERVICE --env ENV` for why"),
                );
            }
            _ => {}
        }
    }
    if !bad.is_empty() || locked {
        Outcome::Failed
    } else if failed_writes || scan.unavailable() > 0 {
        Outcome::Differences
    } else {
        Outcome::Clean
    }
}

#[derive(Serialize)]
struct EnvReport<'a> {
    environment: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    commit: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pushed: Option<&'a str>,
    attempts: u32,
    /// What became of the local branch after the push (as `kairo bump --push` reports it).
    #[serde(skip_serializing_if = "Option::is_none")]
    local_branch: Option<&'a LocalBranch>,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<String>,
    /// What the policies said when they denied the bumps.
    #[serde(skip_serializing_if = "Option::is_none")]
    findings: Option<&'a [crate::policy::Finding]>,
}

fn print(format: OutputFormat, images: &[ImageReport], written: &[Written]) {
    let envs: Vec<EnvReport> = written
        .iter()
        .map(|w| match &w.result {
            Ok(o) => EnvReport {
                environment: &w.environment,
                commit: o.commit.as_deref(),
                pushed: o.pushed.as_deref(),
                attempts: o.attempts,
                local_branch: o.local_branch.as_ref(),
                error: None,
                findings: None,
            },
            Err(e) => EnvReport {
                environment: &w.environment,
                commit: None,
                pushed: None,
                attempts: w.retries + 1,
                local_branch: None,
                error: Some(e.to_string()),
                findings: match e {
                    BumpError::Denied(findings) => Some(findings.as_slice()),
                    _ => None,
                },
            },
        })
        .collect();
    let mut out = std::io::stdout().lock();
    if format == OutputFormat::Json {
        let _ = serde_json::to_writer_pretty(
            &mut out,
            &serde_json::json!({"images": images, "environments": envs}),
        );
        let _ = writeln!(out);
        return;
    }
    for i in images {
        let what = match &i.found {
            Found::UpToDate { tag, .. } => format!("up to date ({tag})"),
            Found::Bump {
                from, to, digest, ..
            } => format!(
                "{from} -> {to}{}",
                digest.as_ref().map(|d| format!("@{d}")).unwrap_or_default()
            ),
            Found::Unavailable { code, .. } => format!("unavailable ({code})"),
            Found::PolicyError { .. } => "no tag chosen (policy error)".into(),
        };
        let _ = writeln!(out, "{}/{} {}: {what}", i.environment, i.service, i.image);
    }
    for e in &envs {
        match (e.commit, e.pushed, &e.error) {
            (Some(c), Some(p), _) => {
                let _ = writeln!(
                    out,
                    "{}: committed {c}, pushed to {p} (attempt {})",
                    e.environment, e.attempts
                );
            }
            (_, _, Some(_)) => {
                let _ = writeln!(out, "{}: not written", e.environment);
            }
            _ => {
                let _ = writeln!(
                    out,
                    "{}: already on the remote; nothing to do",
                    e.environment
                );
            }
        }
    }
}
