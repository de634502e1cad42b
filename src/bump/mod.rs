//! Image changes (`kairo bump`, `kairo promote`, and the daemon's bumps): an intent, planned
//! against a snapshot of the repository, then written to the working tree or committed and
//! pushed.
//!
//! The unit of work is the *intent* (environment + which images), never a textual patch. Each
//! attempt plans it afresh against a base: the working tree (no commit), the local `HEAD`
//! (`--commit`), or the remote branch's freshly fetched tip (`--push`). Planning is the one
//! pipeline plus `model::edit` and `apply::plan_against`, and does no IO but reading its
//! inputs. A rejected push is answered by the retry policy: fetch, plan the same intent on the
//! new tip, commit, push again.
//!
//! Architecture Invariant: with `--commit` or `--push`, nothing is written to the working tree
//! or index except by `git::Writer::fast_forward`, which moves the user's branch only when it
//! was exactly the commit the change was built on and the paths of the change are unmodified.

pub mod retry;

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::time::{Duration, Instant};

use serde::Serialize;

use crate::apply::{self, Base};
use crate::git::writer::{LocalBranch, Pushed};
use crate::git::{self, WriteError, Writer};
use crate::model::edit::{self, EditError, ImageChange};
use crate::model::{self, ENVIRONMENTS_DIR};
use crate::pipeline::{self, Inputs, PipelineError};
use crate::policy;
use crate::render::{CLUSTERS_DIR, TEMPLATES_DIR};

pub use retry::{Decision, RetryPolicy};

/// What to change, in one environment. Planned afresh on every attempt.
#[derive(Debug, Clone)]
pub struct Intent {
    pub environment: String,
    pub change: Change,
    /// Change pinned services too.
    pub force: bool,
    pub check_policies: bool,
    /// Limits and cache of the policy evaluation.
    pub policy: policy::CheckOptions,
}

#[derive(Debug, Clone)]
pub enum Change {
    /// Set these services' images.
    Set(Vec<ImageSpec>),
    /// Set every enabled, unpinned service whose image repository starts with
    /// `repository_prefix` (all services with an image when `None`) to one tag.
    All {
        tag: String,
        digest: Option<String>,
        repository_prefix: Option<String>,
    },
    /// Copy the images of all (or the named) services from environment `from`.
    Promote { from: String, services: Vec<String> },
}

/// One service's requested image.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageSpec {
    pub service: String,
    pub tag: String,
    pub digest: Option<String>,
}

impl ImageSpec {
    /// `SERVICE=TAG` or `SERVICE=TAG@sha256:...`.
    pub fn parse(arg: &str) -> Option<ImageSpec> {
        let (service, image) = arg.split_once('=')?;
        let (tag, digest) = match image.split_once('@') {
            Some((t, d)) => (t, Some(d.to_string())),
            None => (image, None),
        };
        (!service.is_empty()).then(|| ImageSpec {
            service: service.to_string(),
            tag: tag.to_string(),
            digest,
        })
    }
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
    /// `{env}`, `{service}`, `{tag}` and `{from}` are replaced.
    pub message: Option<String>,
    pub retry: RetryPolicy,
}

#[derive(Debug, thiserror::Error)]
pub enum BumpError {
    #[error(transparent)]
    Pipeline(#[from] PipelineError),
    #[error(transparent)]
    Edit(#[from] EditError),
    #[error(transparent)]
    Apply(#[from] apply::ApplyError),
    #[error("`{0}` was edited by hand; kairo will not overwrite it in a bump")]
    Conflict(String),
    #[error("policies deny the changed environment")]
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
    #[error("no service of `{environment}` matches{}", .prefix.as_ref().map_or(String::new(), |p| format!(" the repository prefix `{p}`")))]
    NothingSelected {
        environment: String,
        prefix: Option<String>,
    },
    #[error(
        "`{name}` is an add-on (a third-party chart) in `{environment}`; kairo changes only the images of its own services"
    )]
    AddOn { environment: String, name: String },
    #[error("service `{service}` is named twice")]
    Duplicate { service: String },
    #[error(transparent)]
    Write(#[from] WriteError),
    #[error(transparent)]
    Lock(#[from] crate::lock::LockError),
}

impl From<git::GitError> for BumpError {
    fn from(e: git::GitError) -> Self {
        BumpError::Write(WriteError::Repo(e))
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
    /// Services left alone because they are pinned (promotion, `--all`).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub pinned: Vec<String>,
    /// False when the images already were the requested ones: nothing written, no commit.
    pub changed: bool,
    pub files: Vec<String>,
    pub commit: Option<String>,
    /// `origin refs/heads/main`
    pub pushed: Option<String>,
    pub attempts: u32,
    /// What happened to the local branch (commits and pushes only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub local_branch: Option<LocalBranch>,
    /// Things the user should know (an interrupted run completed, ...).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub notes: Vec<String>,
}

/// The intent planned against one snapshot.
#[derive(Debug, Default)]
pub struct Planned {
    pub moves: Vec<Move>,
    pub skipped: Vec<String>,
    pub pinned: Vec<String>,
    /// Root-relative path -> new bytes (`None`: delete): the environment file and the
    /// re-rendered files that change.
    pub changes: BTreeMap<String, Option<Vec<u8>>>,
    /// For writes to disk: the apply plan of the rendered files.
    plan: Option<apply::Plan>,
    env_file: String,
    env_text: Option<String>,
}

/// Which images the intent sets, resolved against the current model.
fn resolve_specs(
    intent: &Intent,
    model: &model::Model,
    env: &model::Environment,
    planned: &mut Planned,
) -> Result<Vec<ImageSpec>, BumpError> {
    // Add-ons have no image of ours: refuse them by name rather than fail to find an image.
    let named: Vec<&String> = match &intent.change {
        Change::Set(specs) => specs.iter().map(|s| &s.service).collect(),
        Change::Promote { services, .. } => services.iter().collect(),
        Change::All { .. } => Vec::new(),
    };
    if let Some(name) = named.into_iter().find(|n| env.addon(n).is_some()) {
        return Err(BumpError::AddOn {
            environment: env.name.clone(),
            name: name.clone(),
        });
    }
    let pinned = |service: &str| env.releases.iter().any(|r| r.name == service && r.pinned);
    Ok(match &intent.change {
        Change::Set(specs) => {
            let mut seen = BTreeSet::new();
            for s in specs {
                if !seen.insert(&s.service) {
                    return Err(BumpError::Duplicate {
                        service: s.service.clone(),
                    });
                }
            }
            specs.clone()
        }
        Change::All {
            tag,
            digest,
            repository_prefix,
        } => {
            let mut out = Vec::new();
            for r in &env.releases {
                if repository_prefix
                    .as_ref()
                    .is_some_and(|p| !r.image.repository.starts_with(p.as_str()))
                {
                    continue;
                }
                if r.pinned && !intent.force {
                    planned.pinned.push(r.name.clone());
                    continue;
                }
                out.push(ImageSpec {
                    service: r.name.clone(),
                    tag: tag.clone(),
                    digest: digest.clone(),
                });
            }
            if repository_prefix.as_deref() == Some("") {
                return Err(BumpError::NothingSelected {
                    environment: intent.environment.clone(),
                    prefix: Some(String::new()),
                });
            }
            if out.is_empty() && planned.pinned.is_empty() {
                return Err(BumpError::NothingSelected {
                    environment: intent.environment.clone(),
                    prefix: repository_prefix.clone(),
                });
            }
            out
        }
        Change::Promote { from, services } => {
            let source =
                model
                    .environment(from)
                    .ok_or_else(|| PipelineError::UnknownEnvironment {
                        name: from.clone(),
                        known: model.defined.clone(),
                    })?;
            let targets: Vec<String> = if services.is_empty() {
                env.releases.iter().map(|r| r.name.clone()).collect()
            } else {
                services.clone()
            };
            planned.skipped = source
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
                // Pinned in the target: skipped with a note, unless named (then `set_image`
                // refuses it without --force).
                if services.is_empty() && !intent.force && pinned(&service) {
                    planned.pinned.push(service);
                    continue;
                }
                if MUTABLE_TAGS.contains(&release.image.tag.to_lowercase().as_str()) {
                    return Err(BumpError::MutableTag {
                        environment: from.clone(),
                        service,
                        tag: release.image.tag.clone(),
                    });
                }
                specs.push(ImageSpec {
                    service,
                    tag: release.image.tag.clone(),
                    digest: release.image.digest.clone(),
                });
            }
            specs
        }
    })
}

/// Plans `intent` against `inputs` (environments, templates, policies) and `base` (the
/// generated files). Pure but for reading them: nothing is written.
pub fn plan(inputs: &Inputs, base: &dyn Base, intent: &Intent) -> Result<Planned, BumpError> {
    let started = Instant::now();
    let sources = inputs.sources()?;
    // Only the environments the change reads are resolved; the others were valid a moment ago
    // and are not touched.
    let mut wanted = vec![intent.environment.clone()];
    if let Change::Promote { from, .. } = &intent.change {
        wanted.push(from.clone());
    }
    let model = inputs.model_from(&sources, &wanted)?;
    tracing::debug!(elapsed = ?started.elapsed(), "model loaded");
    let env = model.environment(&intent.environment).ok_or_else(|| {
        PipelineError::UnknownEnvironment {
            name: intent.environment.clone(),
            known: model.defined.clone(),
        }
    })?;
    let env_file = env.file.clone();
    let text = sources
        .iter()
        .find(|s| s.path == env_file)
        .map(|s| s.text.clone())
        .unwrap_or_default();
    let mut planned = Planned {
        env_file: env_file.clone(),
        ..Default::default()
    };
    let specs = resolve_specs(intent, &model, env, &mut planned)?;
    let changes: Vec<ImageChange> = specs
        .iter()
        .map(|s| ImageChange {
            service: &s.service,
            tag: &s.tag,
            digest: s.digest.as_deref(),
            force: intent.force,
        })
        .collect();
    let names: Vec<&str> = specs.iter().map(|s| s.service.as_str()).collect();
    let befores = edit::current_images(&env_file, &text, &names)?;
    let new_text = edit::set_images(&env_file, &text, &changes)?.unwrap_or_else(|| text.clone());
    for (s, (from, old_digest, _)) in specs.iter().zip(befores) {
        if from == s.tag && old_digest == s.digest {
            continue;
        }
        planned.moves.push(Move {
            service: s.service.clone(),
            from: match &old_digest {
                Some(d) => format!("{from}@{d}"),
                None => from,
            },
            to: s.tag.clone(),
            digest: s.digest.clone(),
        });
    }
    tracing::debug!(elapsed = ?started.elapsed(), services = specs.len(), "edited");

    // The edited environment with the catalog (and, for a promotion, nothing else: the source
    // environment is only read), rendered and checked as the whole repository would be. The
    // other environments are unchanged and were valid a moment ago.
    let mut files: BTreeMap<String, Vec<u8>> = BTreeMap::new();
    for s in &sources {
        if s.path == env_file {
            files.insert(s.path.clone(), new_text.clone().into_bytes());
        } else if s.path == model.catalog_file {
            files.insert(s.path.clone(), s.text.clone().into_bytes());
        }
    }
    let flux_system = format!(
        "{CLUSTERS_DIR}/{}/{}",
        intent.environment,
        crate::render::FLUX_SYSTEM_DIR
    );
    let bootstrapped: BTreeSet<String> = if base.exists(&flux_system) {
        BTreeSet::from([intent.environment.clone()])
    } else {
        BTreeSet::new()
    };
    let edited = Inputs::Files {
        label: "the edited environment".into(),
        files,
        bootstrapped: Some(bootstrapped.clone()),
    };
    let edited_model = edited.model()?;
    tracing::debug!(elapsed = ?started.elapsed(), "edited model loaded");
    // Only the releases the edit changed are rendered again, when the environment's files are
    // exactly what kairo recorded generating: the others stay as they were generated. An edit
    // that changes anything else, or any doubt about the files, renders it all.
    let releases = edited_model
        .environment(&intent.environment)
        .filter(|_| apply::record_matches(base, &intent.environment))
        .and_then(|new| crate::render::changed_releases(env, new));
    tracing::debug!(elapsed = ?started.elapsed(), releases = ?releases.as_ref().map(BTreeSet::len), "compared");
    let options = pipeline::Options {
        only: vec![intent.environment.clone()],
        policies: intent.check_policies.then(|| vec!["main".into()]),
        check: intent.policy.clone(),
        releases,
    };
    let out = pipeline::run_model(inputs, edited_model, &bootstrapped, &options)?;
    if pipeline::denied(&out.findings) {
        return Err(BumpError::Denied(out.findings));
    }
    let rendered = out.rendered;
    let plan = apply::plan_against(base, &rendered, &BTreeSet::new(), false)?;
    if let Some(c) = plan.conflicts.first() {
        return Err(BumpError::Conflict(c.path.clone()));
    }
    tracing::debug!(elapsed = ?started.elapsed(), "rendered and planned");
    if new_text != text {
        planned
            .changes
            .insert(env_file, Some(new_text.clone().into_bytes()));
        planned.env_text = Some(text);
    }
    planned.changes.extend(plan.changeset());
    planned.plan = Some(plan);
    Ok(planned)
}

impl Move {
    /// What the service moves to: `TAG`, or `TAG@DIGEST` when a digest is pinned (`short`:
    /// the digest's first 12 hex digits, for a subject line).
    pub fn target(&self, short: bool) -> String {
        match &self.digest {
            None => self.to.clone(),
            Some(d) if short => {
                let (algorithm, hex) = d.split_once(':').unwrap_or(("", d));
                let hex: String = hex.chars().take(12).collect();
                if algorithm.is_empty() {
                    format!("{}@{hex}", self.to)
                } else {
                    format!("{}@{algorithm}:{hex}", self.to)
                }
            }
            Some(d) => format!("{}@{d}", self.to),
        }
    }
}

fn message(publish: &Publish, intent: &Intent, planned: &Planned) -> String {
    let env = &intent.environment;
    let services: Vec<&str> = planned.moves.iter().map(|m| m.service.as_str()).collect();
    let tags: BTreeSet<&str> = planned.moves.iter().map(|m| m.to.as_str()).collect();
    let tag = tags.iter().copied().collect::<Vec<_>>().join(", ");
    let subject = match (&intent.change, &publish.message) {
        (_, Some(template)) => template
            .replace("{env}", env)
            .replace("{service}", &services.join(", "))
            .replace("{tag}", &tag)
            .replace(
                "{from}",
                match &intent.change {
                    Change::Promote { from, .. } => from.as_str(),
                    _ => planned.moves.first().map_or("", |m| m.from.as_str()),
                },
            ),
        (Change::Promote { from, .. }, None) => format!("chore({env}): promote images from {from}"),
        // A pinned digest is part of what runs: a new digest under the same tag is a change of
        // its own, so the subject names it (short; the body has it whole).
        (_, None) if services.len() == 1 => format!(
            "chore({env}): bump {} to {}",
            services[0],
            planned.moves[0].target(true)
        ),
        (_, None) if tags.len() == 1 => {
            format!("chore({env}): bump {} services to {tag}", services.len())
        }
        (_, None) => format!("chore({env}): bump {} services", services.len()),
    };
    let mut m = subject;
    m.push_str("\n\n");
    for mv in &planned.moves {
        m.push_str(&format!(
            "{} {} -> {}\n",
            mv.service,
            mv.from,
            mv.target(false)
        ));
    }
    m.push_str("\nChanged files:\n");
    for f in planned.changes.keys() {
        m.push_str(&format!("- {f}\n"));
    }
    m
}

/// The deterministic branch for a change pushed for review: `kairo/<env>/<service>-<tag>` for
/// one service, `kairo/<env>/bump-<tag>` for several with one tag, `kairo/<env>/all-<tag>`,
/// `kairo/<env>/promote-from-<env>`.
pub fn review_branch(intent: &Intent) -> String {
    let env = &intent.environment;
    match &intent.change {
        Change::Set(specs) if specs.len() == 1 => {
            format!("kairo/{env}/{}-{}", specs[0].service, specs[0].tag)
        }
        Change::Set(specs) => {
            let tags: BTreeSet<&str> = specs.iter().map(|s| s.tag.as_str()).collect();
            if tags.len() == 1 {
                format!("kairo/{env}/bump-{}", specs[0].tag)
            } else {
                let mut all = String::new();
                for s in specs {
                    all.push_str(&format!("{}={}\n", s.service, s.tag));
                }
                format!(
                    "kairo/{env}/bump-{}",
                    &apply::sha256_hex(all.as_bytes())[..12]
                )
            }
        }
        Change::All { tag, .. } => format!("kairo/{env}/all-{tag}"),
        Change::Promote { from, .. } => format!("kairo/{env}/promote-from-{from}"),
    }
}

fn fill(outcome: &mut Outcome, planned: &Planned) {
    outcome.moves = planned.moves.clone();
    outcome.skipped = planned.skipped.clone();
    outcome.pinned = planned.pinned.clone();
    outcome.files = planned.changes.keys().cloned().collect();
    outcome.changed = !planned.changes.is_empty();
}

/// Applies the intent to the working tree (no commit): edits the environment file and writes
/// the re-rendered files. Nothing is written unless everything succeeded.
pub fn run_worktree(root: &Path, intent: &Intent) -> Result<Outcome, BumpError> {
    let _lock = crate::lock::acquire(root)?;
    let recovered = Writer::recover_at(root)?;
    let inputs = Inputs::Disk(root.to_path_buf());
    let planned = plan(&inputs, &apply::Disk(root), intent)?;
    let mut outcome = Outcome {
        environment: intent.environment.clone(),
        ..Default::default()
    };
    outcome.notes.extend(recovered);
    fill(&mut outcome, &planned);
    let env_edit = match (planned.changes.get(&planned.env_file), &planned.env_text) {
        (Some(Some(bytes)), Some(before)) => Some((bytes, before)),
        _ => None,
    };
    // The environment file must still be what was planned against: another writer's edit in
    // between is a conflict, not overwritten. Checked before anything is written, and again
    // just before it is replaced.
    let unchanged = |before: &String| -> Result<(), BumpError> {
        let now = std::fs::read(root.join(&planned.env_file)).unwrap_or_default();
        if now != before.as_bytes() {
            return Err(apply::ApplyError::Changed {
                path: planned.env_file.clone(),
            }
            .into());
        }
        Ok(())
    };
    if let Some((_, before)) = env_edit {
        unchanged(before)?;
    }
    // The rendered files first, the edit last: a bump that fails or is killed in between
    // leaves the environment file as it was, so running it again redoes all of it (a bump
    // renders only what its edit changes, so an edit already on disk would look like no
    // change).
    if let Some(plan) = &planned.plan
        && plan.needs_apply()
    {
        plan.apply(root)?;
    }
    if let Some((bytes, before)) = env_edit {
        unchanged(before)?;
        apply::write_below(root, &planned.env_file, bytes)?;
    }
    Ok(outcome)
}

/// The directories a plan reads from a commit.
fn snapshot_dirs(intent: &Intent) -> Vec<String> {
    vec![
        ENVIRONMENTS_DIR.to_string(),
        TEMPLATES_DIR.to_string(),
        policy::POLICIES_DIR.to_string(),
        format!("{CLUSTERS_DIR}/{}", intent.environment),
    ]
}

/// Plans the intent on `commit`'s files.
fn plan_at(writer: &Writer, commit: git2::Oid, intent: &Intent) -> Result<Planned, BumpError> {
    let dirs = snapshot_dirs(intent);
    let dirs: Vec<&str> = dirs.iter().map(String::as_str).collect();
    let snapshot = writer.files_at(commit, &dirs)?;
    let inputs = Inputs::Files {
        label: commit.to_string(),
        files: snapshot.files.clone(),
        bootstrapped: None,
    };
    plan(&inputs, &apply::Snapshot(&snapshot), intent)
}

/// Commits the intent on the local branch (`--commit` without `--push`).
pub fn run_commit(
    root: &Path,
    writer: &Writer,
    intent: &Intent,
    publish: &Publish,
) -> Result<Outcome, BumpError> {
    let _lock = crate::lock::acquire(root)?;
    let mut outcome = Outcome {
        environment: intent.environment.clone(),
        attempts: 1,
        ..Default::default()
    };
    outcome.notes.extend(writer.recover()?);
    let head = writer.head()?;
    let (Some(branch), Some(base)) = (head.branch, head.commit) else {
        return Err(WriteError::DetachedHead.into());
    };
    let planned = plan_at(writer, base, intent)?;
    fill(&mut outcome, &planned);
    let paths: Vec<String> = planned.changes.keys().cloned().collect();
    if paths.is_empty() {
        return Ok(outcome);
    }
    if let Some(path) = writer.first_dirty(base, &paths)? {
        return Err(WriteError::Dirty(path).into());
    }
    let Some(commit) =
        writer.commit_on(base, &planned.changes, &message(publish, intent, &planned))?
    else {
        outcome.changed = false;
        return Ok(outcome);
    };
    writer.fast_forward(&branch, base, commit, &paths)?;
    outcome.commit = Some(commit.to_string());
    outcome.local_branch = Some(LocalBranch::Moved(branch));
    Ok(outcome)
}

/// Where a push goes and what it builds on.
struct Target {
    remote: String,
    /// The remote branch pushed to.
    branch: String,
    /// The remote branch to build on when `branch` does not exist there yet (review branches).
    base_branch: String,
    /// The local branch that may follow the push (it tracks `branch`).
    local: Option<String>,
}

fn target(writer: &Writer, intent: &Intent, publish: &Publish) -> Result<Target, BumpError> {
    let head = writer.head()?;
    let upstream = head.branch.as_deref().map(|b| writer.upstream_branch(b));
    let branch = match (publish.branch.as_deref(), &upstream) {
        (Some(""), _) => review_branch(intent),
        (Some(name), _) => name.to_string(),
        (None, Some(up)) => up.clone(),
        (None, None) => return Err(WriteError::DetachedHead.into()),
    };
    let tracks = |local: &str| {
        writer
            .repo()
            .config()
            .ok()
            .and_then(|c| c.get_string(&format!("branch.{local}.remote")).ok())
            .is_none_or(|r| r == publish.remote)
    };
    let local = head
        .branch
        .filter(|b| upstream.as_deref() == Some(branch.as_str()) && tracks(b));
    Ok(Target {
        remote: publish.remote.clone(),
        base_branch: upstream.unwrap_or_else(|| branch.clone()),
        branch,
        local,
    })
}

/// Commits the intent on the remote branch's tip and pushes it, re-planning on every rejection
/// until the retry policy gives up. `sleep` is how the caller waits (the CLI sleeps).
pub fn run_push(
    root: &Path,
    writer: &Writer,
    intent: &Intent,
    publish: &Publish,
    sleep: &mut dyn FnMut(Duration),
) -> Result<Outcome, BumpError> {
    let _lock = crate::lock::acquire(root)?;
    let mut outcome = Outcome {
        environment: intent.environment.clone(),
        ..Default::default()
    };
    outcome.notes.extend(writer.recover()?);
    let target = target(writer, intent, publish)?;
    let started = Instant::now();
    let mut attempt = 0;
    loop {
        attempt += 1;
        outcome.attempts = attempt;
        let tip = match writer.fetch(&target.remote, &target.branch)? {
            Some(tip) => tip,
            None if target.base_branch != target.branch => writer
                .fetch(&target.remote, &target.base_branch)?
                .ok_or_else(|| WriteError::NoRemoteBranch {
                    remote: target.remote.clone(),
                    branch: target.base_branch.clone(),
                })?,
            None => {
                return Err(WriteError::NoRemoteBranch {
                    remote: target.remote.clone(),
                    branch: target.branch.clone(),
                }
                .into());
            }
        };
        let planned = plan_at(writer, tip, intent)?;
        fill(&mut outcome, &planned);
        if planned.changes.is_empty() {
            // Already so on the remote: nothing to commit or push.
            let head = writer.head()?;
            outcome.local_branch = Some(match &target.local {
                Some(local) if head.commit != Some(tip) => LocalBranch::Behind(local.clone()),
                _ => LocalBranch::Untouched,
            });
            return Ok(outcome);
        }
        let msg = message(publish, intent, &planned);
        let Some(commit) = writer.commit_on(tip, &planned.changes, &msg)? else {
            outcome.changed = false;
            return Ok(outcome);
        };
        crate::failpoint::hit("before-push");
        match writer.push(&target.remote, commit, &target.branch)? {
            Pushed::Ok => {
                outcome.commit = Some(commit.to_string());
                outcome.pushed = Some(format!("{} refs/heads/{}", target.remote, target.branch));
                outcome.local_branch = Some(follow(writer, &target, tip, commit, &planned)?);
                return Ok(outcome);
            }
            Pushed::Rejected(reason) => {
                let jitter = fastrand::f64();
                match publish.retry.decide(attempt, started.elapsed(), jitter) {
                    Decision::RetryAfter(delay) => {
                        tracing::info!(attempt, %reason, ?delay, "push rejected; planning the change again on the new remote tip");
                        sleep(delay);
                    }
                    Decision::GiveUp => {
                        return Err(WriteError::GaveUp {
                            remote: target.remote.clone(),
                            attempts: attempt,
                            seconds: started.elapsed().as_secs(),
                            reason,
                        }
                        .into());
                    }
                }
            }
        }
    }
}

/// After a push: fast-forward the local branch that tracks the pushed branch, when it was at
/// the commit the change was built on and the change's paths are unmodified.
fn follow(
    writer: &Writer,
    target: &Target,
    base: git2::Oid,
    commit: git2::Oid,
    planned: &Planned,
) -> Result<LocalBranch, BumpError> {
    let Some(local) = &target.local else {
        return Ok(LocalBranch::Untouched);
    };
    let head = writer.head()?;
    if head.branch.as_deref() != Some(local.as_str()) || head.commit != Some(base) {
        return Ok(LocalBranch::Behind(local.clone()));
    }
    let paths: Vec<String> = planned.changes.keys().cloned().collect();
    if let Some(path) = writer.first_dirty(base, &paths)? {
        return Ok(LocalBranch::Dirty(path));
    }
    // The push has landed: a failure to move the local branch now (a user's `index.lock`, an
    // edit made meanwhile) is reported as such, not as a failed bump. The journal, if any, is
    // completed by the next run.
    match writer.fast_forward(local, base, commit, &paths) {
        Ok(()) => Ok(LocalBranch::Moved(local.clone())),
        Err(WriteError::Dirty(path)) => Ok(LocalBranch::Dirty(path)),
        Err(e) => Ok(LocalBranch::Failed(e.to_string())),
    }
}
