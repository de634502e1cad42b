//! Commands: turn CLI arguments into domain calls and print results.
//!
//! This is the only layer that reads the process environment (credentials, identities, `HOME`)
//! and the only one that prints, through `output`: data on stdout, people on stderr.

#![allow(clippy::disallowed_methods)] // the command layer is where the environment is read

use std::path::Path;

use serde::Serialize;

use crate::Outcome;
use crate::apply::{self, Conflict, ConflictReason, Plan};
use crate::bump::{self, BumpError, Change, ImageSpec, Intent, Publish, RetryPolicy};
use crate::cli::{
    BumpArgs, CheckArgs, Cli, Command, DiffArgs, DiffFormat, OutputFormat, PromoteArgs,
    PublishArgs, RenderArgs,
};
use crate::git::writer::LocalBranch;
use crate::git::{Credentials, Identity, WriteError, Writer};
use crate::model::{self, Diagnostic};
use crate::output;
use crate::pipeline::{self, Inputs, Options, PipelineError};
use crate::policy;
use crate::render::CLUSTERS_DIR;

pub fn dispatch(cli: Cli) -> Outcome {
    let result = match cli.command {
        Command::Render(args) => render_command(&cli.root, &args),
        Command::Diff(args) => diff_command(&cli.root, &args),
        Command::Check(args) => check_command(&cli.root, &args),
        Command::Bump(args) => bump_command(&cli.root, &args),
        Command::Promote(args) => promote_command(&cli.root, &args),
        Command::Init(args) => Ok(crate::commands_ext::init_command(&cli.root, &args)),
        Command::Explain(args) => Ok(crate::commands_ext::explain_command(&cli.root, &args)),
        Command::Tags(args) => Ok(crate::tags::run(&cli.root, &args)),
        Command::Drift(args) => Ok(crate::drift::command::drift_command(
            &cli.root,
            &args,
            std::env::var_os("KUBECONFIG"),
        )),
        Command::Status(args) => Ok(crate::drift::command::status_command(
            &cli.root,
            &args,
            std::env::var_os("KUBECONFIG"),
        )),
        Command::Watch(args) => Ok(watch_command(&cli.root, &args)),
        Command::Completions { shell } => {
            let mut cmd = <Cli as clap::CommandFactory>::command();
            let mut buf = Vec::new();
            clap_complete::generate(shell, &mut cmd, "kairo", &mut buf);
            output::data(&String::from_utf8_lossy(&buf)).map(|()| Outcome::Clean)
        }
    };
    result.unwrap_or_else(|outcome| outcome)
}

/// A command's result: `Err` carries an outcome whose problem was already reported.
type Result<T = Outcome> = std::result::Result<T, Outcome>;

/// Prints an error and its causes once each, uv style, with an optional hint.
fn report(err: &dyn std::error::Error, hint: Option<&str>) {
    let mut text = format!(": {}", output::with_causes(err, "\n  caused by: "));
    if let Some(hint) = hint {
        text.push_str(&format!("\n  hint: {hint}"));
    }
    // Causes may quote input (or another tool quoting it): never more than a bounded amount.
    output::message(&format!(
        "{}{}",
        output::error_prefix(),
        model::diag::bounded_lines(&text)
    ));
}

pub(crate) fn fail(err: &dyn std::error::Error, hint: Option<&str>) -> Outcome {
    report(err, hint);
    Outcome::Failed
}

fn print_diagnostics(diags: &[Diagnostic]) {
    for d in diags {
        // As `eprintln!` would: a diagnostic's own trailing newline leaves a blank line.
        output::message(&format!("{d}\n"));
    }
}

pub(crate) fn list(names: &[String]) -> String {
    names
        .iter()
        .map(|k| format!("`{k}`"))
        .collect::<Vec<_>>()
        .join(", ")
}

#[derive(Serialize)]
struct RenderReport<'a> {
    environments: &'a [String],
    check: bool,
    applied: bool,
    changes: &'a [apply::Change],
    conflicts: &'a [Conflict],
    unchanged: usize,
    warnings: &'a [Diagnostic],
}

#[derive(Serialize)]
struct ErrorReport<'a> {
    errors: &'a [Diagnostic],
}

/// Reports a pipeline failure; `written` says whether anything could have been written.
pub(crate) fn pipeline_failed(e: &PipelineError, json: bool, what_happened: &str) -> Outcome {
    match e {
        PipelineError::Model { diagnostics, .. } => {
            print_diagnostics(diagnostics);
            let errors = diagnostics
                .iter()
                .filter(|d| d.severity == model::Severity::Error)
                .count();
            output::message(&format!(
                "{}: {errors} problem(s) in environment files; {what_happened}",
                output::error_prefix()
            ));
            if json {
                let _ = output::json(&ErrorReport {
                    errors: diagnostics,
                });
            }
            Outcome::Failed
        }
        PipelineError::UnknownEnvironment { known, .. } => {
            fail(e, Some(&format!("environments: {}", list(known))))
        }
        PipelineError::Io { .. } => fail(
            e,
            Some("run kairo from the repository root, or pass `--root DIR`"),
        ),
        PipelineError::Render(r) => fail(e, Some(r.hint().unwrap_or(what_happened))),
        PipelineError::Input(i) => fail(e, Some(i.hint())),
        PipelineError::Policy(p) => fail(e, p.hint()),
        _ => fail(e, None),
    }
}

/// A change that policies deny: which rule of which policy file denied which object, then
/// the error. `bump`, `promote` and `watch --once` say it alike.
pub(crate) fn report_denied(findings: &[policy::Finding], message: &str, hint: &str) {
    print_findings_to_stderr(findings, 0);
    output::error(message, Some(hint));
}

fn print_findings_to_stderr(findings: &[policy::Finding], objects: usize) {
    if !findings.is_empty() {
        output::message(policy::render_text(findings, objects).trim_end());
    }
}

fn check_options(root: &Path, args: &crate::cli::PolicyArgs) -> policy::CheckOptions {
    policy::CheckOptions {
        limits: args.limits(),
        cache_dir: policy::default_cache_dir(root),
    }
}

/// Said when `policies/` has no rules: a check that checked nothing must not look like a pass.
fn no_policies_note(namespaces: &[String]) -> String {
    format!(
        "note: no policies in {}/: nothing checked (no `deny`, `violation` or `warn` rules in package(s) {})",
        policy::POLICIES_DIR,
        list(namespaces)
    )
}

fn check_command(root: &Path, args: &CheckArgs) -> Result {
    let json = args.output == OutputFormat::Json;
    let options = Options {
        only: args.envs.clone(),
        policies: Some(args.namespaces.clone()),
        check: check_options(root, &args.policy),
        releases: None,
    };
    let run = pipeline::run(&Inputs::Disk(root.to_path_buf()), &options)
        .map_err(|e| pipeline_failed(&e, json, "nothing was checked"))?;
    print_diagnostics(&run.model.warnings);
    if !run.policies_found {
        // Not a failure (exit 0): a repository may not use policies. But say so, on stderr and
        // in the JSON report, so CI never mistakes it for a pass.
        output::message(&no_policies_note(&args.namespaces));
    }
    match args.output {
        OutputFormat::Json => output::json(&serde_json::json!({
            "checked": run.policies_found,
            "objects": run.rendered.files.len(),
            "findings": run.findings,
        }))?,
        OutputFormat::Text if run.policies_found => output::data(&policy::render_text(
            &run.findings,
            run.rendered.files.len(),
        ))?,
        OutputFormat::Text => {}
    }
    let fails = run
        .findings
        .iter()
        .any(|f| f.severity == policy::Severity::Deny || args.fail_on_warn);
    Ok(if fails {
        Outcome::Differences
    } else {
        Outcome::Clean
    })
}

fn render_command(root: &Path, args: &RenderArgs) -> Result {
    let started = std::time::Instant::now();
    let json = args.output == OutputFormat::Json;
    // `--check` only reads; writing renders take the repository lock for their whole run.
    let _lock = if args.check {
        None
    } else {
        Some(crate::lock::acquire(root).map_err(|e| fail(&e, Some(LOCK_HINT)))?)
    };
    if !args.check {
        // A render must not write over an update a killed kairo left half done.
        let note = Writer::recover_at(root).map_err(|e| fail(&e, Some("nothing was written")))?;
        if let Some(note) = note {
            output::message(&format!("note: {note}"));
        }
    }
    let options = Options {
        only: args.envs.clone(),
        policies: (!args.no_check).then(|| vec!["main".to_string()]),
        check: check_options(root, &args.policy),
        releases: None,
    };
    // A clean no-op proven by the stamp of an earlier one is reported without rendering.
    let stamp = if args.force {
        None
    } else {
        crate::stamp::start(
            root,
            &[
                format!("{:?}", options.only),
                format!("{:?}", options.policies),
                format!("{:?}", options.check.limits),
                format!("{:?}", crate::limits::get()),
            ],
        )
    };
    if let Some(hit) = stamp.as_ref().and_then(|s| s.fresh(root)) {
        tracing::debug!(elapsed = ?started.elapsed(), "clean, as the render stamp proves");
        let mut plan = Plan::default();
        plan.unchanged = hit.unchanged;
        match args.output {
            OutputFormat::Json => output::json(&RenderReport {
                environments: &hit.environments,
                check: args.check,
                applied: false,
                changes: &[],
                conflicts: &[],
                unchanged: hit.unchanged,
                warnings: &[],
            })?,
            OutputFormat::Text => {
                output::data(&plan_text(&plan, &hit.environments, args.check, false))?
            }
        }
        return Ok(Outcome::Clean);
    }
    let run = pipeline::run(&Inputs::Disk(root.to_path_buf()), &options)
        .map_err(|e| pipeline_failed(&e, json, "nothing was written"))?;
    print_diagnostics(&run.model.warnings);
    print_findings_to_stderr(&run.findings, run.rendered.files.len());
    if pipeline::denied(&run.findings) {
        output::message(&format!(
            "{}: policies in `{}/` deny this render; nothing was written\n  hint: fix the environments, or pass `--no-check` to render anyway",
            output::error_prefix(),
            policy::POLICIES_DIR
        ));
        return Ok(Outcome::Differences);
    }

    let plan = apply::plan(root, &run.rendered, args.envs.is_empty(), args.force)
        .map_err(|e| fail(&e, Some("nothing was written")))?;
    tracing::debug!(changes = plan.changes.len(), elapsed = ?started.elapsed(), "planned");

    let refuse = !args.check && !plan.conflicts.is_empty();
    let mut applied = false;
    if !args.check && !refuse && plan.needs_apply() {
        plan.apply(root).map_err(|e| {
            let hint = match &e {
                apply::ApplyError::Partial { written, .. } => format!(
                    "fix the cause and run `kairo render` again to complete the render; written before the failure: {}{}",
                    written
                        .iter()
                        .take(10)
                        .map(|p| format!("`{p}`"))
                        .collect::<Vec<_>>()
                        .join(", "),
                    if written.len() > 10 {
                        format!(" and {} more", written.len() - 10)
                    } else {
                        String::new()
                    }
                ),
                _ => "nothing was written; fix the cause and run `kairo render` again".into(),
            };
            fail(&e, Some(&hint))
        })?;
        applied = true;
    }
    if let Some(stamp) = &stamp
        && plan.is_clean()
        && run.model.warnings.is_empty()
        && run.findings.is_empty()
    {
        stamp.record(
            root,
            &crate::stamp::Hit {
                environments: run.rendered.environments.clone(),
                unchanged: plan.unchanged,
            },
        );
    }
    tracing::debug!(elapsed = ?started.elapsed(), "done");

    match args.output {
        OutputFormat::Json => output::json(&RenderReport {
            environments: &run.rendered.environments,
            check: args.check,
            applied,
            changes: &plan.changes,
            conflicts: &plan.conflicts,
            unchanged: plan.unchanged,
            warnings: &run.model.warnings,
        })?,
        OutputFormat::Text => output::data(&plan_text(
            &plan,
            &run.rendered.environments,
            args.check,
            applied,
        ))?,
    }
    if refuse {
        let mut text = String::new();
        for c in &plan.conflicts {
            let why = conflict_text(c.reason);
            text.push_str(&format!(
                "{}: refusing to overwrite `{}`: {why}\n",
                output::error_prefix(),
                c.path
            ));
        }
        text.push_str(
            "  hint: move your change into environments/ or templates/, or pass `--force` to overwrite",
        );
        output::message(&text);
        return Ok(Outcome::Failed);
    }
    // The process is about to exit: freeing tens of thousands of rendered files one by one
    // would only add to the wall time.
    std::mem::forget(run);
    if args.check && !plan.is_clean() {
        output::message(&format!(
            "{}: {} file(s) in {CLUSTERS_DIR}/ are out of date\n  hint: run `kairo render` and commit the result",
            output::error_prefix(),
            plan.changes.len() + plan.conflicts.len()
        ));
        return Ok(Outcome::Differences);
    }
    Ok(Outcome::Clean)
}

fn conflict_text(reason: ConflictReason) -> &'static str {
    match reason {
        ConflictReason::HandEdited => "it was edited by hand after kairo generated it",
        ConflictReason::NotGenerated => "it exists but kairo did not generate it",
        ConflictReason::RemovedEnvironment => {
            "its environment is no longer defined, but Flux is bootstrapped there (flux-system/); removing its releases would make Flux delete every workload"
        }
    }
}

fn plan_text(plan: &Plan, environments: &[String], check: bool, applied: bool) -> String {
    let mut out = String::new();
    for c in &plan.changes {
        out.push_str(&format!("{:<8} {}\n", c.action.to_string(), c.path));
    }
    for c in &plan.conflicts {
        out.push_str(&format!(
            "{:<8} {} ({})\n",
            "conflict",
            c.path,
            conflict_text(c.reason)
        ));
    }
    if check {
        return out;
    }
    let count = |a| plan.changes.iter().filter(|c| c.action == a).count();
    let verb = if applied || plan.changes.is_empty() {
        "rendered"
    } else {
        "did not render"
    };
    out.push_str(&format!(
        "{verb} {} environment(s): {} created, {} changed, {} deleted, {} unchanged\n",
        environments.len(),
        count(apply::Action::Create),
        count(apply::Action::Update),
        count(apply::Action::Delete),
        plan.unchanged
    ));
    out
}

fn diff_command(root: &Path, args: &DiffArgs) -> Result {
    use crate::diff::{self, DiffError, Side};
    let sides = Side::from_revision(root, &args.base).and_then(|base| {
        let head = match &args.head {
            Some(rev) => Side::from_revision(root, rev)?,
            None => Side::from_worktree(root)?,
        };
        Ok((base, head))
    });
    let result = match sides.and_then(|(base, head)| diff::diff(&base, &head, &args.envs)) {
        Ok(r) => r,
        Err(DiffError::Pipeline(PipelineError::Model {
            label, diagnostics, ..
        })) => {
            print_diagnostics(&diagnostics);
            output::message(&format!(
                "{}: the environments at {} are invalid; nothing to compare",
                output::error_prefix(),
                label.unwrap_or_default()
            ));
            return Err(Outcome::Failed);
        }
        Err(e @ DiffError::Git(crate::git::GitError::UnknownRevision(_))) => {
            return Err(fail(
                &e,
                Some(
                    "pass a branch, tag or commit that exists here, e.g. `--base origin/main` after `git fetch`",
                ),
            ));
        }
        Err(e) => return Err(fail(&e, None)),
    };
    let text = match args.output {
        DiffFormat::Text => diff::render_text(&result, args.summary, output::stdout_colored()),
        DiffFormat::Markdown => diff::render_markdown(&result, args.summary),
        DiffFormat::Json => diff::render_json(&result),
    };
    output::data(&text)?;
    Ok(if result.has_differences() {
        Outcome::Differences
    } else {
        Outcome::Clean
    })
}

pub(crate) fn usage(message: &str, hint: &str) -> Outcome {
    output::message(&format!(
        "{}: {message}\n  hint: {hint}",
        output::error_prefix()
    ));
    Outcome::Failed
}

fn bump_command(root: &Path, args: &BumpArgs) -> Result {
    let change = if let Some(tag) = &args.all {
        Change::All {
            tag: tag.clone(),
            digest: args.digest.clone(),
            repository_prefix: args.repository_prefix.clone(),
        }
    } else if args.images.len() == 2 && !args.images.iter().any(|i| i.contains('=')) {
        Change::Set(vec![ImageSpec {
            service: args.images[0].clone(),
            tag: args.images[1].clone(),
            digest: args.digest.clone(),
        }])
    } else {
        let mut specs = Vec::new();
        for arg in &args.images {
            let Some(spec) = ImageSpec::parse(arg) else {
                return Err(usage(
                    &format!("`{arg}` is not `SERVICE=TAG[@DIGEST]`"),
                    "pass `SERVICE TAG`, or one or more `SERVICE=TAG[@DIGEST]`",
                ));
            };
            specs.push(spec);
        }
        if args.digest.is_some() {
            return Err(usage(
                "`--digest` goes with `SERVICE TAG` or `--all`",
                "write each digest as `SERVICE=TAG@sha256:...`",
            ));
        }
        Change::Set(specs)
    };
    image_change(root, &args.env, change, &args.publish)
}

fn promote_command(root: &Path, args: &PromoteArgs) -> Result {
    if args.from == args.to {
        return Err(usage(
            &format!("`--from` and `--to` are both `{}`", args.to),
            "promote copies images from one environment to another: name two environments",
        ));
    }
    let change = Change::Promote {
        from: args.from.clone(),
        services: args.services.clone(),
    };
    image_change(root, &args.to, change, &args.publish)
}

pub(crate) const LOCK_HINT: &str =
    "wait for it to finish; the lock is released when that process exits, however it exits";

/// The commit identity: `--author`, then `KAIRO_GIT_AUTHOR_NAME` + `KAIRO_GIT_AUTHOR_EMAIL`
/// (both, non-empty), then git config (`None` here).
fn identity(author: Option<&str>) -> std::result::Result<Option<Identity>, WriteError> {
    if let Some(author) = author {
        return Identity::parse(author).map(Some);
    }
    let name = std::env::var("KAIRO_GIT_AUTHOR_NAME").ok();
    let email = std::env::var("KAIRO_GIT_AUTHOR_EMAIL").ok();
    match (name, email) {
        (None, None) => Ok(None),
        (Some(name), Some(email)) => Identity::new(&name, &email).map(Some),
        (name, email) => Err(WriteError::BadIdentity {
            value: format!(
                "KAIRO_GIT_AUTHOR_NAME={} KAIRO_GIT_AUTHOR_EMAIL={}",
                name.unwrap_or_default(),
                email.unwrap_or_default()
            ),
            problem: "set both variables, or neither".into(),
        }),
    }
}

fn writer(root: &Path, args: &PublishArgs) -> std::result::Result<Writer, WriteError> {
    let credentials = Credentials {
        token: std::env::var("KAIRO_GIT_TOKEN")
            .ok()
            .filter(|t| !t.is_empty()),
        username: std::env::var("KAIRO_GIT_USERNAME")
            .ok()
            .filter(|u| !u.is_empty()),
    };
    let home = std::env::var_os("HOME").map(std::path::PathBuf::from);
    Writer::open(
        root,
        identity(args.author.as_deref())?,
        args.sign,
        home.as_deref(),
        credentials,
    )
    .map(|w| w.with_network_timeout(args.git_timeout))
}

/// `kairo watch`: what it needs from the environment, read here, then `watch::command`.
fn watch_command(root: &Path, args: &crate::cli::WatchArgs) -> Outcome {
    let credentials = Credentials {
        token: std::env::var("KAIRO_GIT_TOKEN")
            .ok()
            .filter(|t| !t.is_empty()),
        username: std::env::var("KAIRO_GIT_USERNAME")
            .ok()
            .filter(|u| !u.is_empty()),
    };
    let home = std::env::var_os("HOME").map(std::path::PathBuf::from);
    let writer = identity(args.author.as_deref())
        .and_then(|id| Writer::open(root, id, args.sign, home.as_deref(), credentials))
        .map(|w| w.with_network_timeout(args.git_timeout));
    let nonempty = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
    let env = crate::watch::command::Env {
        writer,
        policy: check_options(root, &args.policy),
        pod_namespace: nonempty("POD_NAMESPACE"),
        pod_name: nonempty("POD_NAME").or_else(|| nonempty("HOSTNAME")),
        kubeconfig: std::env::var_os("KUBECONFIG"),
    };
    crate::watch::command::run(root, args, env)
}

/// Runs a bump or a promotion and prints what it did.
fn image_change(root: &Path, environment: &str, change: Change, args: &PublishArgs) -> Result {
    let intent = Intent {
        environment: environment.to_string(),
        change,
        force: args.force,
        check_policies: !args.no_check,
        policy: check_options(root, &args.policy),
    };
    let publish = Publish {
        commit: args.commit || args.push,
        push: args.push,
        remote: args.remote.clone(),
        branch: args.branch.clone(),
        message: args.message.clone(),
        retry: RetryPolicy {
            budget: args.retry_timeout,
            max_attempts: args.max_attempts,
            ..RetryPolicy::default()
        },
    };
    let result = if publish.commit {
        writer(root, args).map_err(BumpError::from).and_then(|w| {
            if publish.push {
                bump::run_push(root, &w, &intent, &publish, &mut std::thread::sleep)
            } else {
                bump::run_commit(root, &w, &intent, &publish)
            }
        })
    } else {
        bump::run_worktree(root, &intent)
    };
    let result = result.map_err(|e| bump_failed(e, args.output == OutputFormat::Json))?;
    match args.output {
        OutputFormat::Json => output::json(&result)?,
        OutputFormat::Text => output::data(&bump_text(&result))?,
    }
    report_write_notes(&result);
    Ok(Outcome::Clean)
}

/// The notes of a write (an interrupted run completed, ...) and what became of the user's
/// local branch after a push, on stderr: `bump`, `promote` and `watch --once` say it alike.
pub(crate) fn report_write_notes(result: &bump::Outcome) {
    for note in &result.notes {
        output::message(&format!("note: {note}"));
    }
    match &result.local_branch {
        Some(LocalBranch::Behind(b)) => output::message(&format!(
            "note: your branch `{b}` was not at the commit the change was built on, so it was left as it is\n  hint: `git pull` brings the change"
        )),
        Some(LocalBranch::Failed(why)) => output::message(&format!(
            "warning: the change was pushed, but your local branch could not be updated: {why}\n  hint: run the same command again to complete it, or `git pull`"
        )),
        Some(LocalBranch::Dirty(p)) => output::message(&format!(
            "note: your local branch was left as it is: `{p}` has uncommitted changes\n  hint: commit or stash them, then `git pull`"
        )),
        _ => {}
    }
}

fn bump_failed(e: BumpError, json: bool) -> Outcome {
    match e {
        BumpError::Pipeline(p) => pipeline_failed(&p, json, "nothing was changed"),
        BumpError::Denied(findings) => {
            report_denied(
                &findings,
                "policies deny this change; nothing was changed",
                "pass `--no-check` to change it anyway",
            );
            Outcome::Differences
        }
        BumpError::Edit(e) => {
            let hint = match &e {
                model::edit::EditError::UnknownService { listed, .. } => {
                    format!("services in this environment: {}", list(listed))
                }
                model::edit::EditError::Pinned { .. } => {
                    "pass `--force` to change a pinned service".into()
                }
                model::edit::EditError::StaleDigest { .. } => {
                    "pass `--digest` with the new image's digest".into()
                }
                _ => String::new(),
            };
            fail(&e, (!hint.is_empty()).then_some(hint.as_str()))
        }
        e @ BumpError::Write(WriteError::GaveUp { .. }) => fail(
            &e,
            Some(
                "nothing was changed locally; run the same command again (or raise `--retry-timeout`)",
            ),
        ),
        e @ BumpError::Write(WriteError::Dirty(_)) => fail(
            &e,
            Some("commit or stash your changes first; kairo commits only what it writes"),
        ),
        e @ BumpError::Write(WriteError::BadIdentity { .. } | WriteError::NoIdentity) => fail(
            &e,
            Some(
                "pass `--author \"Name <email>\"`, or set KAIRO_GIT_AUTHOR_NAME and KAIRO_GIT_AUTHOR_EMAIL",
            ),
        ),
        e @ BumpError::Write(WriteError::Journal { .. }) => fail(
            &e,
            Some(
                "check `git status`; remove the journal file once the working tree is as you want it",
            ),
        ),
        e @ BumpError::Lock(_) => fail(&e, Some(LOCK_HINT)),
        e => fail(&e, None),
    }
}

fn bump_text(result: &bump::Outcome) -> String {
    let mut out = String::new();
    if !result.changed {
        out.push_str(&format!(
            "{}: images are already as requested; nothing to do\n",
            result.environment
        ));
    }
    for m in &result.moves {
        out.push_str(&format!(
            "{} in {}: {} -> {}\n",
            m.service,
            result.environment,
            m.from,
            m.target(false)
        ));
    }
    for f in &result.files {
        out.push_str(&format!("  changed {f}\n"));
    }
    for s in &result.skipped {
        out.push_str(&format!(
            "note: `{s}` does not run in {}; skipped\n",
            result.environment
        ));
    }
    for s in &result.pinned {
        out.push_str(&format!(
            "note: `{s}` is pinned in {}; skipped (name it with `--force` to change it)\n",
            result.environment
        ));
    }
    if let Some(c) = &result.commit {
        out.push_str(&format!("committed {c}\n"));
    }
    if let Some(p) = &result.pushed {
        out.push_str(&format!("pushed to {p} (attempt {})\n", result.attempts));
    }
    out
}
