//! `kairo bump`: set one service's image in one environment, re-render that environment, and
//! optionally commit and push it safely.
//!
//! The unit of work is the *intent* (service, environment, tag, digest), never a textual patch:
//! when a push is rejected because someone else pushed first, kairo fetches, resets to the
//! remote tip, applies the intent again on top of it, re-renders, commits and retries with
//! jittered backoff. It never force-pushes.

use std::path::Path;
use std::time::Duration;

use serde::Serialize;

use crate::apply::{self, Plan};
use crate::git::{self, Pushed, WriteError};
use crate::model::edit::{self, EditError, ImageChange};
use crate::model::{self, Model, ModelError, SourceFile};
use crate::policy;
use crate::render::{self, CLUSTERS_DIR, Templates};

/// What to change.
#[derive(Debug, Clone)]
pub struct Intent {
    pub environment: String,
    pub service: String,
    pub tag: String,
    pub digest: Option<String>,
    pub force: bool,
    pub check_policies: bool,
}

/// How to record and publish the change.
#[derive(Debug, Clone, Default)]
pub struct Publish {
    pub commit: bool,
    pub push: bool,
    pub remote: String,
    /// The remote branch; default: the current branch's upstream.
    pub branch: Option<String>,
    pub author: Option<String>,
    /// `{env}`, `{service}`, `{tag}` and `{from}` are replaced.
    pub message: Option<String>,
    pub max_attempts: u32,
}

#[derive(Debug, thiserror::Error)]
pub enum BumpError {
    #[error("unknown environment `{name}`")]
    UnknownEnvironment { name: String, known: Vec<String> },
    #[error(transparent)]
    Edit(#[from] EditError),
    #[error("the environments are invalid")]
    Model(Vec<model::Diagnostic>),
    #[error("failed to read `{path}`")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Render(#[from] render::RenderError),
    #[error(transparent)]
    Apply(#[from] apply::ApplyError),
    #[error("`{0}` was edited by hand; kairo will not overwrite it in a bump")]
    Conflict(String),
    #[error(transparent)]
    Policy(#[from] policy::PolicyError),
    #[error("policies deny the bumped environment")]
    Denied(Vec<policy::Finding>),
    #[error(transparent)]
    Git(#[from] git::GitError),
    #[error(transparent)]
    Write(#[from] WriteError),
}

impl From<ModelError> for BumpError {
    fn from(e: ModelError) -> Self {
        match e {
            ModelError::Invalid(d) => BumpError::Model(d),
            ModelError::Io { path, source } => BumpError::Io {
                path: path.display().to_string(),
                source,
            },
        }
    }
}

/// What a bump did; `--output json` prints this.
#[derive(Debug, Default, Serialize)]
pub struct Outcome {
    pub environment: String,
    pub service: String,
    pub from: String,
    pub to: String,
    /// False when the image already was the requested one: nothing written, no commit.
    pub changed: bool,
    pub files: Vec<String>,
    pub commit: Option<String>,
    /// `origin refs/heads/main`
    pub pushed: Option<String>,
    pub attempts: u32,
}

/// Applies the intent to the working tree: edits the environment file and re-renders that
/// environment. Nothing is written unless everything (model, render, policies, plan) succeeds.
fn apply_to_worktree(
    root: &Path,
    intent: &Intent,
    outcome: &mut Outcome,
) -> Result<Vec<String>, BumpError> {
    let model = model::load(root)?;
    let known: Vec<String> = model.environments.iter().map(|e| e.name.clone()).collect();
    let env =
        model
            .environment(&intent.environment)
            .ok_or_else(|| BumpError::UnknownEnvironment {
                name: intent.environment.clone(),
                known,
            })?;
    let env_file = env.file.clone();
    let text = read(root, &env_file)?;
    let (from, _, _) = edit::current_image(&env_file, &text, &intent.service)?;
    outcome.from = from;
    let change = ImageChange {
        service: &intent.service,
        tag: &intent.tag,
        digest: intent.digest.as_deref(),
        force: intent.force,
    };
    let Some(new_text) = edit::set_image(&env_file, &text, &change)? else {
        return Ok(Vec::new());
    };

    // The whole model again, with the edited file, so nothing invalid is ever written.
    let mut files = Vec::new();
    for f in model::read_sources(root)? {
        let text = if f.path == env_file {
            new_text.clone()
        } else {
            f.text
        };
        files.push(SourceFile { path: f.path, text });
    }
    let model = Model::from_files(&files)?;
    let templates = Templates::load(root)?;
    let only = [intent.environment.clone()];
    let bootstrapped = render::bootstrapped(root, &only);
    let rendered = render::render(&model, &templates, &only, &bootstrapped)?;
    if intent.check_policies {
        let findings = policy::Policies::load(root, &["main".into()])?.check(&model, &rendered)?;
        if findings
            .iter()
            .any(|f| f.severity == policy::Severity::Deny)
        {
            return Err(BumpError::Denied(findings));
        }
    }
    let plan: Plan = apply::plan(root, &rendered, false, false)?;
    if let Some(c) = plan.conflicts.first() {
        return Err(BumpError::Conflict(c.path.clone()));
    }
    apply::write_atomic(&root.join(&env_file), new_text.as_bytes())?;
    plan.apply(root)?;
    let mut changed: Vec<String> = std::iter::once(env_file)
        .chain(plan.changes.iter().map(|c| c.path.clone()))
        .collect();
    changed.sort();
    Ok(changed)
}

fn read(root: &Path, rel: &str) -> Result<String, BumpError> {
    std::fs::read_to_string(root.join(rel)).map_err(|source| BumpError::Io {
        path: rel.to_string(),
        source,
    })
}

fn message(publish: &Publish, intent: &Intent, outcome: &Outcome, files: &[String]) -> String {
    let template = publish
        .message
        .as_deref()
        .unwrap_or("chore({env}): bump {service} to {tag}");
    let mut m = template
        .replace("{env}", &intent.environment)
        .replace("{service}", &intent.service)
        .replace("{tag}", &intent.tag)
        .replace("{from}", &outcome.from);
    m.push_str("\n\n");
    m.push_str(&format!(
        "{} {} -> {}\n\nChanged files:\n",
        intent.service, outcome.from, intent.tag
    ));
    for f in files {
        m.push_str(&format!("- {f}\n"));
    }
    m
}

/// Jittered exponential backoff: 50 ms, 100 ms, ... capped at 2 s, times 0.5-1.5.
fn backoff(attempt: u32) -> Duration {
    let base = 50u64.saturating_mul(1 << attempt.min(6)).min(2_000);
    // Jitter from the clock's low bits: enough to spread concurrent writers apart.
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos() as u64);
    let factor = 500 + (nanos ^ u64::from(std::process::id())) % 1000;
    Duration::from_millis(base * factor / 1000)
}

/// Runs a bump: edit, render, and (as asked) commit and push with retries.
pub fn run(root: &Path, intent: &Intent, publish: &Publish) -> Result<Outcome, BumpError> {
    let mut outcome = Outcome {
        environment: intent.environment.clone(),
        service: intent.service.clone(),
        to: intent.tag.clone(),
        ..Default::default()
    };
    if !publish.commit && !publish.push {
        let files = apply_to_worktree(root, intent, &mut outcome)?;
        outcome.changed = !files.is_empty();
        outcome.files = files;
        return Ok(outcome);
    }
    let (repo, prefix) = git::open(root)?;
    let (remote_branch, touched) = {
        let branch = git::current_branch(&repo)?;
        let remote_branch = publish
            .branch
            .clone()
            .unwrap_or_else(|| git::upstream_branch(&repo, &branch));
        let env_dir = format!("{CLUSTERS_DIR}/{}/", intent.environment);
        (
            remote_branch,
            vec![env_dir, model::ENVIRONMENTS_DIR.to_string() + "/"],
        )
    };
    let signature = git::signature(&repo, publish.author.as_deref())?;
    let mut last_rejection = String::new();
    let attempts = publish.max_attempts.max(1);
    for attempt in 1..=attempts {
        outcome.attempts = attempt;
        git::ensure_clean(&repo, &prefix, &touched)?;
        let files = apply_to_worktree(root, intent, &mut outcome)?;
        if files.is_empty() && attempt == 1 {
            // Already at that image: no commit. (With --push, a previous run may have
            // committed without pushing; pushing HEAD below completes it.)
            if !publish.push {
                return Ok(outcome);
            }
        } else if !files.is_empty() {
            let msg = message(publish, intent, &outcome, &files);
            let id = git::commit_paths(&repo, &prefix, &files, &msg, &signature)?;
            outcome.commit = Some(id.to_string());
            outcome.changed = true;
            outcome.files = files;
        }
        if !publish.push {
            return Ok(outcome);
        }
        match git::push_head(&repo, &publish.remote, &remote_branch)? {
            Pushed::Ok => {
                outcome.pushed = Some(format!("{} refs/heads/{remote_branch}", publish.remote));
                return Ok(outcome);
            }
            Pushed::Rejected(reason) => {
                tracing::info!(attempt, %reason, "push rejected; re-applying the bump on the remote tip");
                last_rejection = reason;
                if attempt < attempts {
                    std::thread::sleep(backoff(attempt));
                    git::reset_to_remote(&repo, &publish.remote, &remote_branch)?;
                    outcome.commit = None;
                    outcome.changed = false;
                }
            }
        }
    }
    Err(WriteError::GaveUp {
        remote: publish.remote.clone(),
        attempts,
        reason: last_rejection,
    }
    .into())
}
