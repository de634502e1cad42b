//! Commands: turn CLI arguments into domain calls and print results.
//! stdout carries data (text or JSON); stderr carries diagnostics for people.

use std::io::Write;
use std::path::Path;

use serde::Serialize;

use crate::Outcome;
use crate::apply::{self, Conflict, ConflictReason, Plan};
use crate::cli::{
    BumpArgs, CheckArgs, Cli, Command, DiffArgs, DiffFormat, OutputFormat, PromoteArgs,
    PublishArgs, RenderArgs,
};
use crate::model::{self, Diagnostic, ModelError, Severity};
use crate::policy;
use crate::render::{self, CLUSTERS_DIR, Templates};

pub fn dispatch(cli: Cli) -> Outcome {
    match cli.command {
        Command::Render(args) => render_command(&cli.root, &args),
        Command::Diff(args) => diff_command(&cli.root, &args),
        Command::Check(args) => check_command(&cli.root, &args),
        Command::Bump(args) => bump_command(&cli.root, &args),
        Command::Promote(args) => promote_command(&cli.root, &args),
        Command::Tags(args) => crate::tags::run(&cli.root, &args),
        Command::Completions { shell } => {
            let mut cmd = <Cli as clap::CommandFactory>::command();
            clap_complete::generate(shell, &mut cmd, "kairo", &mut std::io::stdout());
            Outcome::Clean
        }
    }
}

/// Prints an error and its causes once each, uv style, with an optional hint.
fn report(err: &dyn std::error::Error, hint: Option<&str>) {
    let mut text = format!("error: {err}");
    let mut source = err.source();
    while let Some(cause) = source {
        text.push_str(&format!("\n  caused by: {cause}"));
        source = cause.source();
    }
    if let Some(hint) = hint {
        text.push_str(&format!("\n  hint: {hint}"));
    }
    eprintln!("{text}");
}

fn print_diagnostics(diags: &[Diagnostic]) {
    let mut err = std::io::stderr().lock();
    for d in diags {
        let _ = writeln!(err, "{d}");
    }
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

fn emit_json<T: Serialize>(value: &T) {
    let mut out = std::io::stdout().lock();
    let _ = serde_json::to_writer_pretty(&mut out, value);
    let _ = writeln!(out);
}

/// Loads the model and templates from disk and renders `envs` (all when empty). Problems are
/// printed here; `Err` carries the outcome to return.
fn load_and_render(
    root: &Path,
    envs: &[String],
    json: bool,
) -> Result<(model::Model, render::Rendered), Outcome> {
    let started = std::time::Instant::now();
    let model = match model::load(root) {
        Ok(m) => m,
        Err(ModelError::Invalid(diags)) => {
            print_diagnostics(&diags);
            let errors = diags
                .iter()
                .filter(|d| d.severity == Severity::Error)
                .count();
            eprintln!("error: {errors} problem(s) in environment files; nothing was written");
            if json {
                emit_json(&ErrorReport { errors: &diags });
            }
            return Err(Outcome::Failed);
        }
        Err(e) => {
            report(
                &e,
                Some("run kairo from the repository root, or pass `--root DIR`"),
            );
            return Err(Outcome::Failed);
        }
    };
    print_diagnostics(&model.warnings);
    tracing::debug!(environments = model.environments.len(), elapsed = ?started.elapsed(), "model loaded");

    let known: Vec<&str> = model.environments.iter().map(|e| e.name.as_str()).collect();
    for env in envs {
        if !known.contains(&env.as_str()) {
            eprintln!(
                "error: unknown environment `{env}`\n  hint: environments: {}",
                known
                    .iter()
                    .map(|k| format!("`{k}`"))
                    .collect::<Vec<_>>()
                    .join(", ")
            );
            return Err(Outcome::Failed);
        }
    }

    let templates = match Templates::load(root) {
        Ok(t) => t,
        Err(e) => {
            report(&e, None);
            return Err(Outcome::Failed);
        }
    };
    let names: Vec<String> = known.iter().map(|k| k.to_string()).collect();
    let bootstrapped = render::bootstrapped(root, &names);
    let rendered = match render::render(&model, &templates, envs, &bootstrapped) {
        Ok(r) => r,
        Err(e) => {
            report(&e, Some("nothing was written"));
            return Err(Outcome::Failed);
        }
    };
    tracing::debug!(files = rendered.files.len(), elapsed = ?started.elapsed(), "rendered");
    Ok((model, rendered))
}

/// Runs the policies on a render; prints findings (text on stderr when `quiet_stdout`).
/// `Ok(true)` when a deny fired (or a warning, with `fail_on_warn`).
fn run_policies(
    root: &Path,
    model: &model::Model,
    rendered: &render::Rendered,
    namespaces: &[String],
) -> Result<Vec<policy::Finding>, Outcome> {
    let policies = match policy::Policies::load(root, namespaces) {
        Ok(p) => p,
        Err(e) => {
            report(&e, None);
            return Err(Outcome::Failed);
        }
    };
    policies.check(model, rendered).map_err(|e| {
        report(&e, None);
        Outcome::Failed
    })
}

fn check_command(root: &Path, args: &CheckArgs) -> Outcome {
    let (model, rendered) =
        match load_and_render(root, &args.envs, args.output == OutputFormat::Json) {
            Ok(r) => r,
            Err(outcome) => return outcome,
        };
    let findings = match run_policies(root, &model, &rendered, &args.namespaces) {
        Ok(f) => f,
        Err(outcome) => return outcome,
    };
    match args.output {
        OutputFormat::Json => emit_json(&serde_json::json!({
            "objects": rendered.files.len(),
            "findings": findings,
        })),
        OutputFormat::Text => {
            let _ = std::io::stdout()
                .lock()
                .write_all(policy::render_text(&findings, rendered.files.len()).as_bytes());
        }
    }
    let fails = findings
        .iter()
        .any(|f| f.severity == policy::Severity::Deny || args.fail_on_warn);
    if fails {
        Outcome::Differences
    } else {
        Outcome::Clean
    }
}

fn render_command(root: &Path, args: &RenderArgs) -> Outcome {
    let started = std::time::Instant::now();
    let (model, rendered) =
        match load_and_render(root, &args.envs, args.output == OutputFormat::Json) {
            Ok(r) => r,
            Err(outcome) => return outcome,
        };
    if !args.no_check {
        let findings = match run_policies(root, &model, &rendered, &["main".to_string()]) {
            Ok(f) => f,
            Err(outcome) => return outcome,
        };
        if !findings.is_empty() {
            eprint!("{}", policy::render_text(&findings, rendered.files.len()));
        }
        if findings
            .iter()
            .any(|f| f.severity == policy::Severity::Deny)
        {
            eprintln!(
                "error: policies in `{}/` deny this render; nothing was written\n  hint: fix the environments, or pass `--no-check` to render anyway",
                policy::POLICIES_DIR
            );
            return Outcome::Differences;
        }
    }

    let plan = match apply::plan(root, &rendered, args.envs.is_empty(), args.force) {
        Ok(p) => p,
        Err(e) => {
            report(&e, None);
            return Outcome::Failed;
        }
    };
    tracing::debug!(changes = plan.changes.len(), elapsed = ?started.elapsed(), "planned");

    let refuse = !args.check && !plan.conflicts.is_empty();
    let mut applied = false;
    if !args.check && !refuse && plan.needs_apply() {
        if let Err(e) = plan.apply(root) {
            report(
                &e,
                Some("run `kairo render` again to complete the remaining files"),
            );
            return Outcome::Failed;
        }
        applied = true;
    }
    tracing::debug!(elapsed = ?started.elapsed(), "done");

    match args.output {
        OutputFormat::Json => emit_json(&RenderReport {
            environments: &rendered.environments,
            check: args.check,
            applied,
            changes: &plan.changes,
            conflicts: &plan.conflicts,
            unchanged: plan.unchanged,
            warnings: &model.warnings,
        }),
        OutputFormat::Text => print_text(&plan, &rendered.environments, args.check, applied),
    }
    if refuse {
        for c in &plan.conflicts {
            let why = conflict_text(c.reason);
            eprintln!("error: refusing to overwrite `{}`: {why}", c.path);
        }
        eprintln!(
            "  hint: move your change into environments/ or templates/, or pass `--force` to overwrite"
        );
        return Outcome::Failed;
    }
    // The process is about to exit: freeing tens of thousands of rendered files one by one
    // would only add to the wall time.
    std::mem::forget(rendered);
    std::mem::forget(model);
    if args.check && !plan.is_clean() {
        eprintln!(
            "error: {} file(s) in {CLUSTERS_DIR}/ are out of date\n  hint: run `kairo render` and commit the result",
            plan.changes.len() + plan.conflicts.len()
        );
        return Outcome::Differences;
    }
    Outcome::Clean
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

fn print_text(plan: &Plan, environments: &[String], check: bool, applied: bool) {
    let mut out = std::io::stdout().lock();
    for c in &plan.changes {
        let _ = writeln!(out, "{:<8} {}", c.action.to_string(), c.path);
    }
    for c in &plan.conflicts {
        let _ = writeln!(
            out,
            "{:<8} {} ({})",
            "conflict",
            c.path,
            conflict_text(c.reason)
        );
    }
    if check {
        return;
    }
    let count = |a| plan.changes.iter().filter(|c| c.action == a).count();
    let verb = if applied || plan.changes.is_empty() {
        "rendered"
    } else {
        "did not render"
    };
    let _ = writeln!(
        out,
        "{verb} {} environment(s): {} created, {} changed, {} deleted, {} unchanged",
        environments.len(),
        count(apply::Action::Create),
        count(apply::Action::Update),
        count(apply::Action::Delete),
        plan.unchanged
    );
}

fn diff_command(root: &Path, args: &DiffArgs) -> Outcome {
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
        Err(DiffError::Model { side, diagnostics }) => {
            print_diagnostics(&diagnostics);
            eprintln!("error: the environments at {side} are invalid; nothing to compare");
            return Outcome::Failed;
        }
        Err(e @ DiffError::Git(crate::git::GitError::UnknownRevision(_))) => {
            report(
                &e,
                Some(
                    "pass a branch, tag or commit that exists here, e.g. `--base origin/main` after `git fetch`",
                ),
            );
            return Outcome::Failed;
        }
        Err(e) => {
            report(&e, None);
            return Outcome::Failed;
        }
    };
    let text = match args.output {
        DiffFormat::Text => {
            use std::io::IsTerminal;
            let color = std::io::stdout().is_terminal() && std::env::var_os("NO_COLOR").is_none();
            diff::render_text(&result, args.summary, color)
        }
        DiffFormat::Markdown => diff::render_markdown(&result, args.summary),
        DiffFormat::Json => diff::render_json(&result),
    };
    let _ = std::io::stdout().lock().write_all(text.as_bytes());
    if result.has_differences() {
        Outcome::Differences
    } else {
        Outcome::Clean
    }
}

fn bump_command(root: &Path, args: &BumpArgs) -> Outcome {
    let change = crate::bump::Change::Bump {
        service: args.service.clone(),
        tag: args.tag.clone(),
        digest: args.digest.clone(),
    };
    image_change(root, &args.env, change, &args.publish)
}

fn promote_command(root: &Path, args: &PromoteArgs) -> Outcome {
    let change = crate::bump::Change::Promote {
        from: args.from.clone(),
        services: args.services.clone(),
    };
    image_change(root, &args.to, change, &args.publish)
}

/// Runs a bump or a promotion and prints what it did.
fn image_change(
    root: &Path,
    environment: &str,
    change: crate::bump::Change,
    args: &PublishArgs,
) -> Outcome {
    use crate::bump::{self, BumpError, Intent, Publish};
    let intent = Intent {
        environment: environment.to_string(),
        change,
        force: args.force,
        check_policies: !args.no_check,
    };
    let publish = Publish {
        commit: args.commit || args.push,
        push: args.push,
        remote: args.remote.clone(),
        branch: args.branch.clone(),
        author: args.author.clone(),
        message: args.message.clone(),
        max_attempts: args.max_attempts,
        sign: args.sign,
    };
    let list = |names: &[String]| {
        names
            .iter()
            .map(|k| format!("`{k}`"))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let result = match bump::run(root, &intent, &publish) {
        Ok(r) => r,
        Err(BumpError::Model(diags)) => {
            print_diagnostics(&diags);
            eprintln!("error: the environments are invalid; nothing was changed");
            return Outcome::Failed;
        }
        Err(BumpError::Denied(findings)) => {
            eprint!("{}", policy::render_text(&findings, 0));
            eprintln!(
                "error: policies deny this change; nothing was changed\n  hint: pass `--no-check` to change it anyway"
            );
            return Outcome::Differences;
        }
        Err(e @ BumpError::UnknownEnvironment { .. }) => {
            let BumpError::UnknownEnvironment { known, .. } = &e else {
                unreachable!()
            };
            report(&e, Some(&format!("environments: {}", list(known))));
            return Outcome::Failed;
        }
        Err(BumpError::Edit(e)) => {
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
            report(&e, (!hint.is_empty()).then_some(hint.as_str()));
            return Outcome::Failed;
        }
        Err(e @ BumpError::Write(crate::git::WriteError::GaveUp { .. })) => {
            report(
                &e,
                Some(
                    "the change is committed locally on top of the last fetched remote tip; run the same command again to retry",
                ),
            );
            return Outcome::Failed;
        }
        Err(
            e @ BumpError::Write(
                crate::git::WriteError::Staged(_) | crate::git::WriteError::Dirty(_),
            ),
        ) => {
            report(
                &e,
                Some("commit or stash your changes first; kairo commits only what it writes"),
            );
            return Outcome::Failed;
        }
        Err(e) => {
            report(&e, None);
            return Outcome::Failed;
        }
    };
    match args.output {
        OutputFormat::Json => emit_json(&result),
        OutputFormat::Text => {
            let mut out = std::io::stdout().lock();
            if !result.changed {
                let _ = writeln!(
                    out,
                    "{}: images are already as requested; nothing to do",
                    result.environment
                );
            }
            for m in &result.moves {
                let _ = writeln!(
                    out,
                    "{} in {}: {} -> {}",
                    m.service, result.environment, m.from, m.to
                );
            }
            for f in &result.files {
                let _ = writeln!(out, "  changed {f}");
            }
            for s in &result.skipped {
                let _ = writeln!(
                    out,
                    "note: `{s}` does not run in {}; skipped",
                    result.environment
                );
            }
            if let Some(c) = &result.commit {
                let _ = writeln!(out, "committed {c}");
            }
            if let Some(p) = &result.pushed {
                let _ = writeln!(out, "pushed to {p} (attempt {})", result.attempts);
            }
        }
    }
    Outcome::Clean
}
