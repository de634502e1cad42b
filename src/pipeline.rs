//! The one pipeline every command runs: inputs -> model -> templates -> render -> policies.
//!
//! `render`, `check`, `bump`, `promote` and `diff` all call [`run`]; what differs is where the
//! inputs come from (the working tree, or a git tree's files) and what happens to the result
//! (`apply::plan` against disk or a tree, a commit, a comparison). A fix to how a render is
//! assembled lands here once.
//!
//! Architecture Invariant: given the same inputs, `run` returns the same bytes. It reads files
//! only through [`Inputs`]; it writes nothing.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;

use crate::model::{self, Diagnostic, Model, ModelError, SourceFile};
use crate::policy::{self, Finding, Policies, PolicyError};
use crate::render::{
    self, CLUSTERS_DIR, FLUX_SYSTEM_DIR, RenderError, Rendered, TEMPLATES_DIR, Templates,
};

/// Where a run's input files come from.
pub enum Inputs {
    /// The working tree below a kairo root.
    Disk(PathBuf),
    /// Files keyed by root-relative path (a git tree's, or the working tree's read eagerly):
    /// `environments/`, `templates/`, `policies/`, and as much of `clusters/` as is needed to
    /// know where Flux is bootstrapped.
    Files {
        label: String,
        files: BTreeMap<String, Vec<u8>>,
        /// Where Flux is bootstrapped, when `files` holds no `clusters/` to tell.
        bootstrapped: Option<BTreeSet<String>>,
    },
}

#[derive(Debug, thiserror::Error)]
pub enum PipelineError {
    #[error("{} problem(s) in environment files{}", count_errors(.diagnostics), at(.label))]
    Model {
        label: Option<String>,
        diagnostics: Vec<Diagnostic>,
    },
    #[error("failed to read `{}`", .path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("`{path}`{} is not UTF-8 text", at(.label))]
    NotText { label: Option<String>, path: String },
    #[error("unknown environment `{name}`")]
    UnknownEnvironment { name: String, known: Vec<String> },
    #[error(transparent)]
    Render(#[from] RenderError),
    #[error(transparent)]
    Policy(#[from] PolicyError),
    #[error(transparent)]
    Input(#[from] crate::input::InputError),
}

fn count_errors(diags: &[Diagnostic]) -> usize {
    diags
        .iter()
        .filter(|d| d.severity == model::Severity::Error)
        .count()
}

fn at(label: &Option<String>) -> String {
    label
        .as_ref()
        .map_or_else(String::new, |l| format!(" at {l}"))
}

/// What to run.
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// Render only these environments (all when empty); each must exist.
    pub only: Vec<String>,
    /// Evaluate the policies of these Rego packages; `None` skips policies.
    pub policies: Option<Vec<String>>,
    /// Limits and cache of the policy evaluation.
    pub check: policy::CheckOptions,
    /// With one environment in `only` whose last render is recorded: render only these of
    /// its releases, leaving the rest as generated (an edit that changed only them, see
    /// `render::changed_releases`). Honoured only when the templates are release-local;
    /// otherwise the environment is rendered in full.
    pub releases: Option<BTreeSet<String>>,
}

/// The result of a run.
pub struct Output {
    pub model: Model,
    pub rendered: Rendered,
    /// Policy findings (empty when policies were skipped).
    pub findings: Vec<Finding>,
    /// Whether any policy file with rules was found (false: nothing was checked).
    pub policies_found: bool,
}

impl Inputs {
    fn label(&self) -> Option<String> {
        match self {
            Inputs::Disk(_) => None,
            Inputs::Files { label, .. } => Some(label.clone()),
        }
    }

    fn text(&self, path: &str, bytes: &[u8]) -> Result<String, PipelineError> {
        String::from_utf8(bytes.to_vec()).map_err(|_| PipelineError::NotText {
            label: self.label(),
            path: path.to_string(),
        })
    }

    /// The environment files, catalog included, sorted by path.
    pub fn sources(&self) -> Result<Vec<SourceFile>, PipelineError> {
        match self {
            Inputs::Disk(root) => model::read_sources(root).map_err(|e| self.model_error(e)),
            Inputs::Files { files, .. } => {
                let mut sources = Vec::new();
                let dir = format!("{}/", model::ENVIRONMENTS_DIR);
                for (path, bytes) in files.range(dir.clone()..) {
                    let Some(name) = path.strip_prefix(&dir) else {
                        break;
                    };
                    if model::is_input_file(name) {
                        sources.push(SourceFile {
                            path: path.clone(),
                            text: self.text(path, bytes)?,
                        });
                    }
                }
                Ok(sources)
            }
        }
    }

    fn model_error(&self, e: ModelError) -> PipelineError {
        match e {
            ModelError::Invalid(diagnostics) => PipelineError::Model {
                label: self.label(),
                diagnostics,
            },
            ModelError::Io { path, source } => PipelineError::Io { path, source },
        }
    }

    /// The model of these inputs.
    pub fn model(&self) -> Result<Model, PipelineError> {
        self.model_only(&[])
    }

    /// The model of these inputs with only the environments in `only` resolved (all when
    /// empty); `Model::defined` lists every one.
    pub fn model_only(&self, only: &[String]) -> Result<Model, PipelineError> {
        self.model_from(&self.sources()?, only)
    }

    /// [`Inputs::model_only`] of sources already read with [`Inputs::sources`].
    pub fn model_from(
        &self,
        sources: &[SourceFile],
        only: &[String],
    ) -> Result<Model, PipelineError> {
        Model::from_files_only(sources, only).map_err(|e| self.model_error(e))
    }

    /// The templates of these inputs: every file under `templates/`, so that `{% include %}`
    /// resolves the same way whatever the inputs are.
    pub fn templates(&self) -> Result<Templates, PipelineError> {
        Ok(match self {
            Inputs::Disk(root) => Templates::load(root)?,
            Inputs::Files { files, .. } => {
                let dir = format!("{TEMPLATES_DIR}/");
                let mut sources = BTreeMap::new();
                for (path, bytes) in files.range(dir.clone()..) {
                    let Some(name) = path.strip_prefix(&dir) else {
                        break;
                    };
                    sources.insert(name.to_string(), self.text(path, bytes)?);
                }
                Templates::from_sources(sources)?
            }
        })
    }

    pub fn policies(&self, namespaces: &[String]) -> Result<Policies, PipelineError> {
        Ok(match self {
            Inputs::Disk(root) => {
                // policy.rs reads the files itself; refuse links leaving the repository first.
                crate::input::check_dir(root, policy::POLICIES_DIR, crate::input::POLICY_FILES)?;
                Policies::load(root, namespaces)?
            }
            Inputs::Files { files, .. } => {
                let dir = format!("{}/", policy::POLICIES_DIR);
                let mut sources = BTreeMap::new();
                for (path, bytes) in files.range(dir.clone()..) {
                    let Some(name) = path.strip_prefix(&dir) else {
                        break;
                    };
                    if !name.contains('/') && policy::is_policy_file(name) {
                        sources.insert(path.clone(), self.text(path, bytes)?);
                    }
                }
                Policies::from_files(&sources, namespaces)?
            }
        })
    }

    /// The environments among `names` whose `clusters/<env>/flux-system/` exists.
    fn bootstrapped(&self, names: &[String]) -> BTreeSet<String> {
        match self {
            Inputs::Disk(root) => render::bootstrapped(root, names),
            Inputs::Files {
                bootstrapped: Some(known),
                ..
            } => names
                .iter()
                .filter(|n| known.contains(*n))
                .cloned()
                .collect(),
            Inputs::Files { files, .. } => names
                .iter()
                .filter(|e| {
                    let dir = format!("{CLUSTERS_DIR}/{e}/{FLUX_SYSTEM_DIR}/");
                    files
                        .range(dir.clone()..)
                        .next()
                        .is_some_and(|(p, _)| p.starts_with(&dir))
                })
                .cloned()
                .collect(),
        }
    }
}

/// Loads, renders and (when asked) checks.
pub fn run(inputs: &Inputs, options: &Options) -> Result<Output, PipelineError> {
    let started = std::time::Instant::now();
    let model = inputs.model_only(&options.only)?;
    tracing::debug!(environments = model.environments.len(), elapsed = ?started.elapsed(), "model loaded");
    if let Some(name) = options.only.iter().find(|e| !model.defined.contains(e)) {
        return Err(PipelineError::UnknownEnvironment {
            name: name.clone(),
            known: model.defined.clone(),
        });
    }
    let bootstrapped = inputs.bootstrapped(&model.defined);
    run_model(inputs, model, &bootstrapped, options)
}

/// Renders `model` with the templates of `inputs` and (when asked) checks the result with its
/// policies: [`run`] after loading, for a caller that builds the model its own way (a bump
/// edits an environment's text first; `explain` and `init` report model errors their own
/// way). `bootstrapped` names the environments whose `clusters/<env>/flux-system/` exists.
pub fn run_model(
    inputs: &Inputs,
    model: Model,
    bootstrapped: &BTreeSet<String>,
    options: &Options,
) -> Result<Output, PipelineError> {
    let started = std::time::Instant::now();
    let templates = inputs.templates()?;
    let partial = match (&options.releases, options.only.as_slice()) {
        (Some(releases), [only]) if templates.release_local() => {
            model.environment(only).map(|env| (env, releases))
        }
        _ => None,
    };
    // The policies are loaded first, so that each object is checked as soon as it is rendered
    // (parsed once, see `render::Inspect`); a render error is still reported before a policy's.
    let loaded = options
        .policies
        .as_ref()
        .map(|namespaces| inputs.policies(namespaces));
    let checker = match &loaded {
        Some(Ok(policies)) if !policies.is_empty() => Some(policies.checker(&options.check)),
        _ => None,
    };
    #[allow(clippy::disallowed_methods)] // this is the one place that renders
    let (rendered, parts) = match partial {
        Some((env, releases)) => render::render_releases(env, &templates, releases, &checker)?,
        None => render::render(&model, &templates, &options.only, bootstrapped, &checker)?,
    };
    tracing::debug!(files = rendered.files.len(), elapsed = ?started.elapsed(), "rendered");
    let findings = checker.map(|checker| checker.finish(parts.into_iter().flatten().collect()));
    let (findings, policies_found) = match loaded {
        None => (Vec::new(), false),
        Some(loaded) => {
            let policies_found = !loaded?.is_empty();
            (findings.transpose()?.unwrap_or_default(), policies_found)
        }
    };
    Ok(Output {
        model,
        rendered,
        findings,
        policies_found,
    })
}

/// Whether a deny rule fired.
pub fn denied(findings: &[Finding]) -> bool {
    findings
        .iter()
        .any(|f| f.severity == policy::Severity::Deny)
}
