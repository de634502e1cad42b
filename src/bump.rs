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

/// Inside `.git/`: present while kairo has written files it has not committed yet, so that a
/// re-run after a kill knows the uncommitted changes are its own.
const JOURNAL: &str = "kairo-in-progress";

/// What to change, in one environment. Re-applied as a whole on every push attempt.
#[derive(Debug, Clone)]
pub struct Intent {
    pub environment: String,
    pub change: Change,
    pub force: bool,
    pub check_policies: bool,
}

#[derive(Debug, Clone)]
pub enum Change {
    /// Set one service's image.
    Bump {
        service: String,
        tag: String,
        digest: Option<String>,
    },
    /// Copy the images of all (or the named) services from environment `from`.
    Promote { from: String, services: Vec<String> },
}

/// Tags that CI moves; never promoted (they would not pin what was tested).
pub const MUTABLE_TAGS: [&str; 10] = [
    "",
    "latest",
    "staging",
    "production",
    "main",
    "master",
    "dev",
    "develop",
    "stable",
    "edge",
];

/// One service's image change.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Move {
    pub service: String,
    pub from: String,
    pub to: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub digest: Option<String>,
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
    /// Sign commits even when git config does not ask for it (`commit.gpgsign`).
    pub sign: bool,
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
    #[error(
        "`{service}` runs the mutable tag `{tag}` in `{environment}`; promote an immutable tag"
    )]
    MutableTag {
        environment: String,
        service: String,
        tag: String,
    },
    #[error("service `{service}` does not run in `{environment}`")]
    NotInSource {
        environment: String,
        service: String,
    },
    #[error(
        "`{name}` is an add-on (a third-party chart) in `{environment}`; kairo changes only the images of its own services"
    )]
    AddOn { environment: String, name: String },
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

/// What a bump or promotion did; `--output json` prints this.
#[derive(Debug, Default, Serialize)]
pub struct Outcome {
    pub environment: String,
    /// The images that changed (empty for a no-op).
    pub moves: Vec<Move>,
    /// Promotion: services of the source environment that the target does not run.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub skipped: Vec<String>,
    /// False when the images already were the requested ones: nothing written, no commit.
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
    journal: Option<&Path>,
) -> Result<Vec<String>, BumpError> {
    let started = std::time::Instant::now();
    let model = model::load(root)?;
    tracing::debug!(elapsed = ?started.elapsed(), "model loaded");
    let known: Vec<String> = model.environments.iter().map(|e| e.name.clone()).collect();
    let env =
        model
            .environment(&intent.environment)
            .ok_or_else(|| BumpError::UnknownEnvironment {
                name: intent.environment.clone(),
                known,
            })?;
    let env_file = env.file.clone();
    // Add-ons have no image of ours: refuse them by name rather than fail to find an image.
    let named: Vec<&String> = match &intent.change {
        Change::Bump { service, .. } => vec![service],
        Change::Promote { services, .. } => services.iter().collect(),
    };
    if let Some(name) = named.into_iter().find(|n| env.addon(n).is_some()) {
        return Err(BumpError::AddOn {
            environment: env.name.clone(),
            name: name.clone(),
        });
    }
    let text = read(root, &env_file)?;
    let specs: Vec<(String, String, Option<String>)> = match &intent.change {
        Change::Bump {
            service,
            tag,
            digest,
        } => vec![(service.clone(), tag.clone(), digest.clone())],
        Change::Promote { from, services } => {
            let source = model
                .environment(from)
                .ok_or_else(|| BumpError::UnknownEnvironment {
                    name: from.clone(),
                    known: model.environments.iter().map(|e| e.name.clone()).collect(),
                })?;
            let targets: Vec<String> = if services.is_empty() {
                env.releases.iter().map(|r| r.name.clone()).collect()
            } else {
                services.clone()
            };
            outcome.skipped = source
                .releases
                .iter()
                .filter(|r| env.releases.iter().all(|t| t.name != r.name))
                .map(|r| r.name.clone())
                .collect();
            let mut specs = Vec::new();
            for service in targets {
                let Some(release) = source.releases.iter().find(|r| r.name == service) else {
                    if services.is_empty() {
                        continue; // runs in the target only: nothing to promote
                    }
                    return Err(BumpError::NotInSource {
                        environment: from.clone(),
                        service,
                    });
                };
                if MUTABLE_TAGS.contains(&release.image.tag.to_lowercase().as_str()) {
                    return Err(BumpError::MutableTag {
                        environment: from.clone(),
                        service,
                        tag: release.image.tag.clone(),
                    });
                }
                specs.push((
                    service,
                    release.image.tag.clone(),
                    release.image.digest.clone(),
                ));
            }
            specs
        }
    };
    let mut new_text = text.clone();
    outcome.moves.clear();
    for (service, tag, digest) in &specs {
        let (from, old_digest, _) = edit::current_image(&env_file, &new_text, service)?;
        let change = ImageChange {
            service,
            tag,
            digest: digest.as_deref(),
            force: intent.force,
        };
        // Promotion copies the digest too, or drops a stale one by taking the source's.
        if let Some(edited) = edit::set_image(&env_file, &new_text, &change)? {
            new_text = edited;
            outcome.moves.push(Move {
                service: service.clone(),
                from: match &old_digest {
                    Some(d) => format!("{from}@{d}"),
                    None => from,
                },
                to: tag.clone(),
                digest: digest.clone(),
            });
        }
    }
    if new_text == text {
        return Ok(Vec::new());
    }

    // The edited environment with the catalog, so nothing invalid is ever written. (The other
    // environments are unchanged and were valid a moment ago.)
    let catalog = SourceFile {
        path: model.catalog_file.clone(),
        text: read(root, &model.catalog_file)?,
    };
    let files = vec![
        catalog,
        SourceFile {
            path: env_file.clone(),
            text: new_text.clone(),
        },
    ];
    let model = Model::from_files(&files)?;
    tracing::debug!(elapsed = ?started.elapsed(), "edited model validated");
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
    tracing::debug!(elapsed = ?started.elapsed(), "rendered and planned");
    let mut changed: Vec<String> = std::iter::once(env_file.clone())
        .chain(plan.changes.iter().map(|c| c.path.clone()))
        .collect();
    changed.sort();
    if let Some(journal) = journal {
        // Exactly the files about to be written: a re-run after a kill restores these, and
        // nothing else.
        write_journal(journal, &changed)?;
    }
    apply::write_atomic(&root.join(&env_file), new_text.as_bytes())?;
    plan.apply(root)?;
    tracing::debug!(elapsed = ?started.elapsed(), "written");
    Ok(changed)
}

fn read(root: &Path, rel: &str) -> Result<String, BumpError> {
    std::fs::read_to_string(root.join(rel)).map_err(|source| BumpError::Io {
        path: rel.to_string(),
        source,
    })
}

fn message(publish: &Publish, intent: &Intent, outcome: &Outcome, files: &[String]) -> String {
    let env = &intent.environment;
    let mut m = match (&intent.change, &publish.message) {
        (Change::Bump { service, tag, .. }, Some(template)) => template
            .replace("{env}", env)
            .replace("{service}", service)
            .replace("{tag}", tag)
            .replace(
                "{from}",
                outcome.moves.first().map_or("", |m| m.from.as_str()),
            ),
        (Change::Promote { from, .. }, Some(template)) => {
            template.replace("{env}", env).replace("{from}", from)
        }
        (Change::Bump { service, tag, .. }, None) => {
            format!("chore({env}): bump {service} to {tag}")
        }
        (Change::Promote { from, .. }, None) => format!("chore({env}): promote images from {from}"),
    };
    m.push_str("\n\n");
    for mv in &outcome.moves {
        m.push_str(&format!("{} {} -> {}\n", mv.service, mv.from, mv.to));
    }
    m.push_str("\nChanged files:\n");
    for f in files {
        m.push_str(&format!("- {f}\n"));
    }
    m
}

/// Records this process and the files it is about to write.
fn write_journal(journal: &Path, files: &[String]) -> Result<(), BumpError> {
    let record = format!(
        "pid {}\n{}",
        std::process::id(),
        files.iter().map(|f| format!("{f}\n")).collect::<String>()
    );
    std::fs::write(journal, record).map_err(|source| BumpError::Io {
        path: journal.display().to_string(),
        source,
    })
}

/// The files an interrupted run was writing.
fn journal_files(journal: &Path) -> Vec<String> {
    std::fs::read_to_string(journal)
        .unwrap_or_default()
        .lines()
        .skip(1)
        .filter(|l| !l.is_empty())
        .map(str::to_string)
        .collect()
}

/// The process id recorded in an interrupted run's journal.
fn journal_owner(journal: &Path) -> Option<i32> {
    let text = std::fs::read_to_string(journal).ok()?;
    text.lines().next()?.strip_prefix("pid ")?.parse().ok()
}

fn process_alive(pid: i32) -> bool {
    // SAFETY: signal 0 only checks that the process exists; it sends nothing.
    let r = unsafe { libc::kill(pid, 0) };
    r == 0 || std::io::Error::last_os_error().raw_os_error() != Some(libc::ESRCH)
}

/// The deterministic branch for a change pushed for review: `kairo/<env>/<service>-<tag>`
/// (`kairo/<env>/promote-from-<env>` for a promotion).
pub fn bump_branch(intent: &Intent) -> String {
    match &intent.change {
        Change::Bump { service, tag, .. } => {
            format!("kairo/{}/{service}-{tag}", intent.environment)
        }
        Change::Promote { from, .. } => format!("kairo/{}/promote-from-{from}", intent.environment),
    }
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
        ..Default::default()
    };
    if !publish.commit && !publish.push {
        let files = apply_to_worktree(root, intent, &mut outcome, None)?;
        outcome.changed = !files.is_empty();
        outcome.files = files;
        return Ok(outcome);
    }
    let (repo, prefix) = git::open(root)?;
    let (remote_branch, touched) = {
        let branch = git::current_branch(&repo)?;
        let remote_branch = match publish.branch.as_deref() {
            Some("") => bump_branch(intent),
            Some(name) => name.to_string(),
            None => git::upstream_branch(&repo, &branch),
        };
        let env_dir = format!("{CLUSTERS_DIR}/{}/", intent.environment);
        (
            remote_branch,
            vec![env_dir, model::ENVIRONMENTS_DIR.to_string() + "/"],
        )
    };
    let signature = git::signature(&repo, publish.author.as_deref())?;
    let signing = git::Signing::from_config(&repo, publish.sign)?;
    let mut last_rejection = String::new();
    let attempts = publish.max_attempts.max(1);
    let journal = repo.path().join(JOURNAL);
    if let Some(pid) = journal_owner(&journal)
        && !process_alive(pid)
    {
        // The run that wrote the journal died; a lock it held on the index is stale.
        let lock = repo.path().join("index.lock");
        if lock.exists() {
            tracing::info!(
                pid,
                "removing the index lock left by an interrupted kairo run"
            );
            let _ = std::fs::remove_file(lock);
        }
    }
    for attempt in 1..=attempts {
        outcome.attempts = attempt;
        let started = std::time::Instant::now();
        match git::ensure_clean(&repo, &prefix, &touched) {
            Err(WriteError::Dirty(_) | WriteError::Staged(_)) if journal.exists() => {
                // A previous run was killed between writing files and committing them: the
                // files it listed are its own. Put them back as HEAD has them, start over.
                let written = journal_files(&journal);
                tracing::info!(files = written.len(), "completing an interrupted run");
                git::restore_paths(&repo, &prefix, &written)?;
                let _ = std::fs::remove_file(&journal);
                git::ensure_clean(&repo, &prefix, &touched)?;
            }
            other => other?,
        }
        tracing::debug!(elapsed = ?started.elapsed(), "working tree checked");
        let files = apply_to_worktree(root, intent, &mut outcome, Some(&journal))?;
        if files.is_empty() {
            let _ = std::fs::remove_file(&journal);
        }
        if files.is_empty() && attempt == 1 {
            // Already at that image: no commit. (With --push, a previous run may have
            // committed without pushing; pushing HEAD below completes it.)
            if !publish.push {
                return Ok(outcome);
            }
        } else if !files.is_empty() {
            let msg = message(publish, intent, &outcome, &files);
            let started = std::time::Instant::now();
            let id = git::commit_paths(&repo, &prefix, &files, &msg, &signature, &signing)?;
            tracing::debug!(elapsed = ?started.elapsed(), "committed");
            let _ = std::fs::remove_file(&journal);
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
                    // A kill during the reset must not leave a lock a re-run cannot clear.
                    write_journal(&journal, &[])?;
                    git::reset_to_remote(&repo, &publish.remote, &remote_branch)?;
                    let _ = std::fs::remove_file(&journal);
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
