//! The typed environment model: what runs where, at which image, with which resources.
//!
//! `load` reads `environments/*.yaml` (the only IO here); `Model::from_files` is pure. It turns
//! the raw schema (`raw`) into resolved environments and releases in which every default,
//! multiplier, override and pool placement has been applied, so templates only print values.
//! Every problem in every file is collected before returning, each with file, line and column.

pub mod capacity;
pub mod diag;
pub mod edit;
pub mod names;
pub mod quantity;
mod raw;
mod release;
mod resolve;
pub mod tagpolicy;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Serialize;

pub use diag::{Diagnostic, Severity, SourceFile};
pub use quantity::{Decimal, Granularity, Quantity, QuantityError};
pub use raw::{API_VERSION, IgnoreRule, TaintEffect, ValuesKind};

/// The whole platform: every environment, resolved. Environments are sorted by name.
#[derive(Debug, Clone, Serialize)]
pub struct Model {
    /// The environments resolved: all, or those a load was limited to.
    pub environments: Vec<Environment>,
    /// Every environment defined in the files, sorted, whether resolved or not.
    #[serde(skip)]
    pub defined: Vec<String>,
    /// The file holding the `ServiceCatalog`.
    pub catalog_file: String,
    /// Problems that do not stop rendering (for example a PodDisruptionBudget left out).
    #[serde(skip)]
    pub warnings: Vec<Diagnostic>,
}

/// One environment, ready to render. Field names are what templates see.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Environment {
    pub name: String,
    pub namespace: String,
    pub branch: String,
    pub cluster: String,
    pub resource_multiplier: String,
    /// The input files this environment was built from, relative to the root, sorted.
    pub source_files: Vec<String>,
    /// The environment's own file (where its image tags live).
    pub file: String,
    pub helm_repositories: Vec<HelmRepository>,
    pub oci_repositories: Vec<OciRepository>,
    /// Enabled services only, sorted by name.
    pub releases: Vec<Release>,
    /// Releases of third-party charts (no image of ours), sorted by name. Image bumps,
    /// promotions and registry watching never touch them.
    pub addons: Vec<AddOn>,
    /// `kairo drift` ignore rules (`spec.drift.ignore`), in file order.
    #[serde(skip)]
    pub drift_ignore: Vec<DriftIgnoreRule>,
}

/// One `spec.drift.ignore` rule: JSON pointers ignored in live objects matching the target.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DriftIgnoreRule {
    pub paths: Vec<String>,
    /// `HelmRelease`, `Deployment` or `StatefulSet`; any kind when absent.
    pub kind: Option<String>,
    /// Any name when absent.
    pub name: Option<String>,
}

/// The kinds `kairo drift` compares, which ignore rules may target.
pub const DRIFT_KINDS: [&str; 3] = ["Deployment", "HelmRelease", "StatefulSet"];

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct HelmRepository {
    pub name: String,
    pub url: String,
    pub interval: String,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct OciRepository {
    pub name: String,
    pub url: String,
    pub semver: String,
    pub interval: String,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Release {
    pub name: String,
    pub chart: ChartRef,
    pub image: Image,
    pub pinned: bool,
    /// How the registry watcher picks this image's next tag; `None`: not watched.
    pub update: Option<tagpolicy::UpdatePolicy>,
    pub replicas: u32,
    pub resources: Resources,
    pub autoscaling: Autoscaling,
    pub pod_disruption_budget: PodDisruptionBudget,
    pub pool: Option<String>,
    pub node_selector: BTreeMap<String, String>,
    pub tolerations: Vec<Toleration>,
    pub gpu: u32,
    pub priority_class_name: Option<String>,
    pub ports: Vec<Port>,
    /// Always false: a service of ours (templates share one HelmRelease template).
    pub addon: bool,
    #[serde(flatten)]
    pub helm: HelmSpec,
    /// Where each value of the rendered `spec` came from, by path (`values`, `resources`, ...).
    #[serde(skip)]
    pub origins: Origins,
}

/// A release of a third-party chart in its own namespace: no image, no typed workload fields.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct AddOn {
    pub name: String,
    pub chart: ChartRef,
    /// The namespace the chart installs into (`targetNamespace`).
    pub namespace: String,
    pub create_namespace: bool,
    /// Always true.
    pub addon: bool,
    #[serde(flatten)]
    pub helm: HelmSpec,
    #[serde(skip)]
    pub origins: Origins,
}

/// The HelmRelease settings shared by services and add-ons, resolved.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct HelmSpec {
    /// Free-form chart values, deep-merged (catalog < environment defaults < environment).
    pub values: serde_json::Map<String, serde_json::Value>,
    /// References to ConfigMaps and Secrets, in the order Flux merges them.
    pub values_from: Vec<ValuesFrom>,
    /// Names of releases (HelmRelease objects in the environment's namespace), sorted.
    pub depends_on: Vec<String>,
    pub interval: String,
    pub timeout: Option<String>,
    pub install: Install,
    pub upgrade: Upgrade,
    pub drift_detection: Option<DriftDetection>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ValuesFrom {
    pub kind: ValuesKind,
    pub name: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub values_key: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub target_path: Option<String>,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub optional: bool,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Install {
    pub crds: Option<String>,
    pub retries: i64,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Upgrade {
    pub crds: Option<String>,
    pub retries: i64,
    /// `rollback` or `uninstall`; Flux's default (rollback) when absent.
    pub strategy: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct DriftDetection {
    pub mode: String,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub ignore: Vec<IgnoreRule>,
}

/// Where a value came from: `environments/production.yaml:42 (environment)`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Origin {
    pub file: String,
    pub line: u64,
    /// The layer or rule that set it: `catalog`, `environment defaults`, `catalog × 2`, ...
    pub how: String,
}

/// Origins by path inside a HelmRelease's `spec` (`["values", "image", "tag"]`).
pub type Origins = BTreeMap<Vec<String>, Origin>;

impl Environment {
    /// The add-on named `name`, if it runs here.
    pub fn addon(&self, name: &str) -> Option<&AddOn> {
        self.addons.iter().find(|a| a.name == name)
    }
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ChartRef {
    pub name: String,
    pub version: String,
    /// `HelmRepository` or `OCIRepository`.
    pub source_kind: &'static str,
    pub source_name: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Image {
    pub repository: String,
    pub tag: String,
    pub digest: Option<String>,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct Resources {
    pub requests: BTreeMap<String, QuantityValue>,
    pub limits: BTreeMap<String, QuantityValue>,
}

/// A quantity as templates see it: its canonical string.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QuantityValue(pub Quantity);

impl Serialize for QuantityValue {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(&self.0)
    }
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Autoscaling {
    pub enabled: bool,
    pub min_replicas: u32,
    pub max_replicas: u32,
    #[serde(rename = "targetCPUUtilizationPercentage")]
    pub target_cpu_utilization_percentage: u32,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PodDisruptionBudget {
    pub enabled: bool,
    pub min_available: u32,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Toleration {
    pub key: String,
    pub operator: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub value: Option<String>,
    pub effect: TaintEffect,
}

#[derive(Debug, Clone, Serialize)]
pub struct Port {
    pub name: String,
    pub port: u16,
}

/// Loading failed: the files could not be read, or they are not a valid model.
#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    #[error("failed to read `{path}`")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{} problem(s) in environment files", .0.iter().filter(|d| d.severity == Severity::Error).count())]
    Invalid(Vec<Diagnostic>),
}

/// The directory under the root holding the input files.
pub const ENVIRONMENTS_DIR: &str = "environments";

/// Whether a file name in `environments/` is an input file (`*.yaml`, `*.yml`, not hidden).
pub fn is_input_file(name: &str) -> bool {
    (name.ends_with(".yaml") || name.ends_with(".yml"))
        && !name.starts_with('.')
        && !name.contains('/')
}

/// Reads every `*.yaml`/`*.yml` file in `<root>/environments/` (sorted) and builds the model.
pub fn load(root: &Path) -> Result<Model, ModelError> {
    Model::from_files(&read_sources(root)?)
}

/// Reads the input files of `<root>/environments/`, sorted by path. A file that is not UTF-8,
/// or a link leaving the repository, is an input error with its name (and position).
pub fn read_sources(root: &Path) -> Result<Vec<SourceFile>, ModelError> {
    let dir = root.join(ENVIRONMENTS_DIR);
    let entries = std::fs::read_dir(&dir).map_err(|source| ModelError::Io {
        path: dir.clone(),
        source,
    })?;
    let mut files = Vec::new();
    let mut unreadable = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|source| ModelError::Io {
            path: dir.clone(),
            source,
        })?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if !is_input_file(&name) || entry.file_type().is_ok_and(|t| t.is_dir()) {
            continue;
        }
        let rel = format!("{ENVIRONMENTS_DIR}/{name}");
        let whole_file = |message: String, hint: &str| Diagnostic {
            severity: Severity::Error,
            file: rel.clone(),
            line: 0,
            column: 0,
            message,
            hint: Some(hint.into()),
            snippet: None,
        };
        let bytes = match crate::input::read(root, &rel) {
            Ok(bytes) => bytes,
            Err(crate::input::InputError::Io { source, .. }) => {
                return Err(ModelError::Io {
                    path: entry.path(),
                    source,
                });
            }
            Err(e) => {
                unreadable.push(whole_file(e.to_string(), e.hint()));
                continue;
            }
        };
        match String::from_utf8(bytes) {
            Ok(text) => files.push(SourceFile { path: rel, text }),
            Err(e) => {
                let (line, column, prefix) =
                    crate::input::utf8_position(e.as_bytes(), e.utf8_error().valid_up_to());
                unreadable.push(Diagnostic {
                    line,
                    column,
                    snippet: Some(prefix),
                    ..whole_file(
                        "the file is not UTF-8 text".into(),
                        "save the file as UTF-8",
                    )
                });
            }
        }
    }
    files.sort_by(|a, b| a.path.cmp(&b.path));
    if !unreadable.is_empty() {
        // Report the other files' problems too.
        if let Err(ModelError::Invalid(mut more)) = Model::from_files(&files) {
            unreadable.append(&mut more);
        }
        unreadable.sort_by(|a, b| (&a.file, a.line, a.column).cmp(&(&b.file, b.line, b.column)));
        return Err(ModelError::Invalid(unreadable));
    }
    Ok(files)
}

impl Environment {
    /// A copy without its releases and add-ons: the fields every release's template sees.
    /// The destructuring names every field, so a new one cannot be left out silently.
    pub fn without_releases(&self) -> Environment {
        let Environment {
            name,
            namespace,
            branch,
            cluster,
            resource_multiplier,
            source_files,
            file,
            helm_repositories,
            oci_repositories,
            releases: _,
            addons: _,
            drift_ignore,
        } = self;
        Environment {
            name: name.clone(),
            namespace: namespace.clone(),
            branch: branch.clone(),
            cluster: cluster.clone(),
            resource_multiplier: resource_multiplier.clone(),
            source_files: source_files.clone(),
            file: file.clone(),
            helm_repositories: helm_repositories.clone(),
            oci_repositories: oci_repositories.clone(),
            releases: Vec::new(),
            addons: Vec::new(),
            drift_ignore: drift_ignore.clone(),
        }
    }
}

/// Drops what loading keeps between loads (the last catalog parse), for a daemon handing
/// memory back while it idles.
pub fn forget_parsed() {
    resolve::memo::clear();
}

impl Model {
    /// Builds the model from file contents; pure. Reports every problem found.
    pub fn from_files(files: &[SourceFile]) -> Result<Model, ModelError> {
        resolve::resolve(files, &[])
    }

    /// The model with only the environments in `only` resolved (all when empty); the others
    /// are parsed and checked against each other, and listed in `defined`.
    pub fn from_files_only(files: &[SourceFile], only: &[String]) -> Result<Model, ModelError> {
        resolve::resolve(files, only)
    }

    pub fn environment(&self, name: &str) -> Option<&Environment> {
        self.environments.iter().find(|e| e.name == name)
    }
}
