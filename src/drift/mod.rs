//! Drift: the live cluster against what Git renders, without the noise.
//!
//! [`desired`] turns one environment's pipeline output into the objects and workload fields it
//! asks for; [`check`] compares them with [`Live`] objects (from the API server through
//! `cluster`, or from a `kubectl get -o yaml` file) and returns a [`Report`]; `status` reads the
//! releases' rollout state from the same inputs. All of this is pure: the only IO is in
//! `cluster` (the kube client, read-only) and `command` (the CLI).
//!
//! What is compared (and documented in the README):
//! - `HelmRelease` (helm.toolkit.fluxcd.io/v2): `spec` whole, and the labels kairo sets.
//!   Server-owned fields (status, managedFields, resourceVersion, uid, generation, timestamps,
//!   annotations, finalizers) and the fields the CRD defaults when they hold their default are
//!   stripped first.
//! - Deployments and StatefulSets a service's release owns (Helm's `meta.helm.sh/release-*`
//!   annotations): `spec.replicas` (not when the service has an HPA in the model), and of the
//!   container running the service's image repository (else the one named after the service),
//!   `image` and `resources`. Every owned workload with such a container is compared. They are
//!   shown as a projection holding only those fields, which is also what ignore rules address.
//!   A service release owning no Deployment or StatefulSet is a missing `Deployment`.
//! - HorizontalPodAutoscalers the release owns: `spec.minReplicas`/`spec.maxReplicas`; none
//!   for a service that autoscales in Git is a missing HPA.
//! - Secrets kairo renders (a team's `namespace.yaml.j2` may emit one): `type`, the labels Git
//!   sets, and `data`, compared as bytes (live `data` is base64; Git may write `data` or
//!   `stringData`, which the API server merges into `data`, `stringData` winning).
//!
//! Architecture Invariant: nothing here writes to a cluster, and Secret values never reach a
//! report: they are compared, then every value is replaced by a mask before anything (field
//! changes, diff, JSON, logs) is built from them. Secrets are read by name, only those Git
//! renders; kairo never lists them.

mod cluster;
pub mod command;
pub mod status;

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write;

use serde::Serialize;
use serde_json::{Map, Value, json};

use crate::diff::{FieldChange, compare_values};
use crate::model::{DriftIgnoreRule, Environment, Quantity};
use crate::render::{CLUSTERS_DIR, Rendered};

pub use cluster::{Cluster, ClusterError, Connection, resolve};

/// Helm's ownership annotations on every object a release installs.
pub const RELEASE_NAME: &str = "meta.helm.sh/release-name";
pub const RELEASE_NAMESPACE: &str = "meta.helm.sh/release-namespace";
/// Labels kairo puts on every HelmRelease it renders.
pub const MANAGED_BY: &str = "app.kubernetes.io/managed-by";
pub const ENVIRONMENT_LABEL: &str = "kairo.dev/environment";

#[derive(Debug, thiserror::Error)]
pub enum DriftError {
    #[error("`{path}` rendered for `{environment}` is not a Kubernetes object: {message}")]
    Rendered {
        environment: String,
        path: String,
        message: String,
    },
    #[error("`{path}` is not a `kubectl get -o yaml` listing: {message}")]
    LiveFile { path: String, message: String },
    #[error("`{path}` holds {kind} `{namespace}/{name}` twice")]
    Duplicate {
        path: String,
        kind: String,
        namespace: String,
        name: String,
    },
}

/// The same object (kind, namespace, name) read twice: which copy counts would depend on
/// order, and a drifted copy could hide behind a clean one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Duplicate {
    pub kind: String,
    pub namespace: String,
    pub name: String,
}

/// Objects read from a cluster (or a file), as the API server returned them.
#[derive(Debug, Clone, Default)]
pub struct Live {
    pub helm_releases: Vec<Value>,
    /// Deployments and StatefulSets.
    pub workloads: Vec<Value>,
    pub autoscalers: Vec<Value>,
    /// Secrets (only compared when Git renders one of the same name).
    pub secrets: Vec<Value>,
    /// (kind, namespace, name) of every object kept, to refuse a second copy.
    seen: BTreeSet<(String, String, String)>,
}

impl Live {
    /// Reads `kubectl get helmreleases,deploy,sts,hpa -o yaml` output (a `List`, or one
    /// object; JSON works too), or a stream of such documents separated by `---` (listings
    /// concatenated, one namespace each; for JSON, one value after another). Objects of other
    /// kinds are left out.
    pub fn from_yaml(path: &str, text: &str) -> Result<Live, DriftError> {
        // `-o json` output is read as JSON: several times faster than the YAML parser.
        // Several `-o json` outputs one after another are a stream of JSON values.
        let documents: Vec<Value> = if text.trim_start().starts_with('{') {
            serde_json::Deserializer::from_str(text)
                .into_iter::<Value>()
                .collect::<Result<_, _>>()
                .map_err(|e| DriftError::LiveFile {
                    path: path.to_string(),
                    message: format!("{}:{}: {e}", e.line(), e.column()),
                })?
        } else {
            crate::yaml::from_str_all(text).map_err(|e| DriftError::LiveFile {
                path: path.to_string(),
                message: format!("{}:{}: {}", e.line, e.column, e.message),
            })?
        };
        let bad = |message: String| DriftError::LiveFile {
            path: path.to_string(),
            message,
        };
        if documents.is_empty() {
            return Err(bad("it has no `kind`".into()));
        }
        // (item, the kind its list gives items that leave theirs out, the list's apiVersion)
        let mut items: Vec<(Value, Option<String>, Value)> = Vec::new();
        for value in documents {
            let list_kind = match value.get("kind").and_then(Value::as_str) {
                Some(kind) => kind.to_string(),
                None => return Err(bad("it has no `kind`".into())),
            };
            if !list_kind.ends_with("List") {
                items.push((value, None, Value::Null));
                continue;
            }
            let list = match value.get("items") {
                Some(Value::Array(list)) => list.clone(),
                Some(Value::Null) | None => {
                    return Err(bad(format!("its `{list_kind}` has no `items` list")));
                }
                Some(_) => return Err(bad(format!("`items` of its `{list_kind}` is not a list"))),
            };
            // A raw API list (`HelmReleaseList`, from `kubectl get --raw` or `curl`) leaves its
            // items' kind out: it is the list's. A `List` of anything must say.
            let item_kind = list_kind
                .strip_suffix("List")
                .filter(|k| !k.is_empty())
                .map(str::to_string);
            for item in list {
                items.push((item, item_kind.clone(), value["apiVersion"].clone()));
            }
        }
        let mut checked = Vec::with_capacity(items.len());
        for (i, (mut item, item_kind, api_version)) in items.into_iter().enumerate() {
            let Value::Object(map) = &mut item else {
                return Err(bad(format!("item {i} is not a mapping (`{item}`)")));
            };
            if !map.get("kind").is_some_and(Value::is_string) {
                match item_kind {
                    Some(k) => {
                        map.insert("kind".into(), Value::from(k));
                        if !map.contains_key("apiVersion") {
                            map.insert("apiVersion".into(), api_version);
                        }
                    }
                    None => return Err(bad(format!("item {i} has no `kind`"))),
                }
            }
            let kept = matches!(
                kind(&item),
                "HelmRelease" | "Deployment" | "StatefulSet" | "HorizontalPodAutoscaler" | "Secret"
            );
            if kept && item["metadata"]["name"].as_str().is_none_or(str::is_empty) {
                return Err(bad(format!(
                    "item {i} ({}) has no `metadata.name`",
                    kind(&item)
                )));
            }
            checked.push(item);
        }
        let mut live = Live::default();
        for item in checked {
            live.push(item).map_err(|d| DriftError::Duplicate {
                path: path.to_string(),
                kind: d.kind,
                namespace: d.namespace,
                name: d.name,
            })?;
        }
        Ok(live)
    }

    /// Files an object under its kind; other kinds are dropped. A second object of the same
    /// kind, namespace and name is refused.
    pub fn push(&mut self, item: Value) -> Result<(), Duplicate> {
        let list = match kind(&item) {
            "HelmRelease" => &mut self.helm_releases,
            "Deployment" | "StatefulSet" => &mut self.workloads,
            "HorizontalPodAutoscaler" => &mut self.autoscalers,
            "Secret" => &mut self.secrets,
            _ => return Ok(()),
        };
        let key = (
            kind(&item).to_string(),
            namespace(&item).to_string(),
            name(&item).to_string(),
        );
        if self.seen.contains(&key) {
            let (kind, namespace, name) = key;
            return Err(Duplicate {
                kind,
                namespace,
                name,
            });
        }
        self.seen.insert(key);
        list.push(item);
        Ok(())
    }

    /// The objects each Helm release installed, indexed once (a lookup per release would
    /// make a comparison quadratic in the number of releases).
    pub fn owners(&self) -> Owners<'_> {
        Owners {
            workloads: index(&self.workloads),
            autoscalers: index(&self.autoscalers),
        }
    }
}

/// Live objects by the Helm release (name, namespace) that installed them, sorted by kind and
/// name within a release.
pub struct Owners<'a> {
    workloads: ByRelease<'a>,
    autoscalers: ByRelease<'a>,
}

impl<'a> Owners<'a> {
    /// The Deployments and StatefulSets `release` installed into `namespace`.
    pub fn workloads(&self, release: &str, namespace: &str) -> &[&'a Value] {
        lookup(&self.workloads, release, namespace)
    }

    /// The HorizontalPodAutoscalers `release` installed into `namespace`.
    pub fn autoscalers(&self, release: &str, namespace: &str) -> &[&'a Value] {
        lookup(&self.autoscalers, release, namespace)
    }
}

/// Release name -> release namespace -> objects.
type ByRelease<'a> = BTreeMap<&'a str, BTreeMap<&'a str, Vec<&'a Value>>>;

fn lookup<'a, 'm>(map: &'m ByRelease<'a>, release: &str, namespace: &str) -> &'m [&'a Value] {
    map.get(release)
        .and_then(|m| m.get(namespace))
        .map_or(&[], Vec::as_slice)
}

fn index(items: &[Value]) -> ByRelease<'_> {
    let mut out: ByRelease = BTreeMap::new();
    for o in items {
        if let (Some(release), Some(ns)) = (
            annotation(o, RELEASE_NAME),
            annotation(o, RELEASE_NAMESPACE),
        ) {
            out.entry(release)
                .or_default()
                .entry(ns)
                .or_default()
                .push(o);
        }
    }
    for list in out.values_mut().flat_map(|m| m.values_mut()) {
        list.sort_by(|a, b| (kind(a), name(a)).cmp(&(kind(b), name(b))));
    }
    out
}

fn annotation<'a>(o: &'a Value, key: &str) -> Option<&'a str> {
    o["metadata"]["annotations"][key].as_str()
}

fn kind(o: &Value) -> &str {
    o["kind"].as_str().unwrap_or_default()
}

fn name(o: &Value) -> &str {
    o["metadata"]["name"].as_str().unwrap_or_default()
}

fn namespace(o: &Value) -> &str {
    o["metadata"]["namespace"].as_str().unwrap_or_default()
}

/// What Git asks of one environment's cluster.
#[derive(Debug, Clone)]
pub struct Desired {
    pub environment: String,
    /// Where the HelmReleases live.
    pub namespace: String,
    /// The git revision (or `working tree`) this was rendered from.
    pub revision: String,
    /// By release name.
    pub releases: Vec<DesiredRelease>,
    /// Secrets Git renders, by namespace and name.
    pub secrets: Vec<Value>,
    pub ignore: Vec<DriftIgnoreRule>,
}

#[derive(Debug, Clone)]
pub struct DesiredRelease {
    pub name: String,
    /// The generated file holding the HelmRelease.
    pub path: String,
    /// The rendered HelmRelease.
    pub object: Value,
    /// The chart version (or range) the release asks for.
    pub chart_version: String,
    /// The typed workload fields of a service; `None` for an add-on (a third-party chart).
    pub workload: Option<DesiredWorkload>,
}

/// The workload fields kairo renders into a service's chart values, and so can check on the
/// Deployments/StatefulSets the chart creates from them.
#[derive(Debug, Clone)]
pub struct DesiredWorkload {
    /// The service's container name (the service's name, as kairo's charts name it).
    pub container: String,
    /// The namespace the chart installs into (`targetNamespace`).
    pub namespace: String,
    /// `values.image.repository`.
    pub repository: String,
    /// `values.image.tag`.
    pub tag: String,
    /// `values.image.digest`.
    pub digest: Option<String>,
    /// `values.replicaCount`; `None` when an HPA owns the replica count.
    pub replicas: Option<u32>,
    /// `values.autoscaling.{minReplicas,maxReplicas}` when the service autoscales.
    pub autoscaling: Option<(u32, u32)>,
    /// `values.resources`: `{requests, limits}` with canonical quantities (empty ones left out).
    pub resources: Value,
}

impl DesiredWorkload {
    /// The image as a chart writes it: `repository:tag`, or `repository:tag@digest`.
    pub fn image(&self) -> String {
        match &self.digest {
            Some(d) => format!("{}:{}@{d}", self.repository, self.tag),
            None => format!("{}:{}", self.repository, self.tag),
        }
    }

    /// Whether a live `image` is this one: `repo:tag`, or with a digest `repo:tag@digest` or
    /// `repo@digest` (charts that pin by digest often drop the tag).
    pub fn image_matches(&self, live: &str) -> bool {
        match &self.digest {
            Some(d) => live == self.image() || live == format!("{}@{d}", self.repository),
            None => live == self.image(),
        }
    }
}

/// The repository part of an image reference (`host:5000/a/b:tag@sha256:...` → `host:5000/a/b`).
pub fn image_repository(image: &str) -> &str {
    let no_digest = image.split_once('@').map_or(image, |(r, _)| r);
    match no_digest.rfind(':') {
        Some(i) if !no_digest[i..].contains('/') => &no_digest[..i],
        _ => no_digest,
    }
}

/// The desired state of `env` from its rendered files (`rendered` must hold the environment).
pub fn desired(
    env: &Environment,
    rendered: &Rendered,
    revision: &str,
) -> Result<Desired, DriftError> {
    let prefix = format!("{CLUSTERS_DIR}/{}/", env.name);
    let mut releases = Vec::new();
    let mut secrets = Vec::new();
    for (path, bytes) in rendered.files.range(prefix.clone()..) {
        if !path.starts_with(&prefix) {
            break;
        }
        if path.ends_with("/kustomization.yaml") {
            continue;
        }
        let text = String::from_utf8_lossy(bytes);
        let bad = |message: String| DriftError::Rendered {
            environment: env.name.clone(),
            path: path.clone(),
            message,
        };
        let mut object: Value = crate::yaml::from_str(&text).map_err(|e| bad(e.message))?;
        if kind(&object) == "Secret" {
            if name(&object).is_empty() {
                return Err(bad("a `Secret` without `metadata.name`".into()));
            }
            // Without a namespace the object lands in the environment's (where Flux applies
            // the environment's files).
            if namespace(&object).is_empty() {
                object["metadata"]["namespace"] = Value::from(env.namespace.clone());
            }
            secrets.push(object);
            continue;
        }
        if kind(&object) != "HelmRelease" {
            continue;
        }
        let release_name = name(&object).to_string();
        let (chart_version, workload) =
            if let Some(r) = env.releases.iter().find(|r| r.name == release_name) {
                let quantities = |m: &BTreeMap<String, crate::model::QuantityValue>| -> Value {
                    Value::Object(
                        m.iter()
                            .map(|(k, q)| (k.clone(), Value::from(q.0.to_string())))
                            .collect(),
                    )
                };
                let mut resources = Map::new();
                if !r.resources.requests.is_empty() {
                    resources.insert("requests".into(), quantities(&r.resources.requests));
                }
                if !r.resources.limits.is_empty() {
                    resources.insert("limits".into(), quantities(&r.resources.limits));
                }
                let autoscaled = r.autoscaling.enabled;
                (
                    r.chart.version.clone(),
                    Some(DesiredWorkload {
                        container: r.name.clone(),
                        namespace: env.namespace.clone(),
                        repository: r.image.repository.clone(),
                        tag: r.image.tag.clone(),
                        digest: r.image.digest.clone(),
                        replicas: (!autoscaled).then_some(r.replicas),
                        autoscaling: autoscaled
                            .then_some((r.autoscaling.min_replicas, r.autoscaling.max_replicas)),
                        resources: Value::Object(resources),
                    }),
                )
            } else if let Some(a) = env.addon(&release_name) {
                (a.chart.version.clone(), None)
            } else {
                return Err(bad(format!(
                    "no service or add-on `{release_name}` in the environment"
                )));
            };
        releases.push(DesiredRelease {
            name: release_name,
            path: path.clone(),
            object,
            chart_version,
            workload,
        });
    }
    releases.sort_by(|a, b| a.name.cmp(&b.name));
    secrets.sort_by(|a, b| (namespace(a), name(a)).cmp(&(namespace(b), name(b))));
    Ok(Desired {
        environment: env.name.clone(),
        namespace: env.namespace.clone(),
        revision: revision.to_string(),
        releases,
        secrets,
        ignore: env.drift_ignore.clone(),
    })
}

/// Why [`render_desired`] failed: the pipeline (model, templates), or a rendered file.
#[derive(Debug, thiserror::Error)]
pub enum DesiredError {
    #[error(transparent)]
    Pipeline(#[from] crate::pipeline::PipelineError),
    #[error(transparent)]
    Drift(#[from] DriftError),
}

/// Renders `inputs` through the one pipeline (policies off) and returns the desired state of
/// each environment in `only` (every environment when empty), in model order. `revision` labels
/// the reports. Shared by `kairo drift`/`kairo status` and the daemon's periodic check.
pub fn render_desired(
    inputs: &crate::pipeline::Inputs,
    only: &[String],
    revision: &str,
) -> Result<Vec<Desired>, DesiredError> {
    let options = crate::pipeline::Options {
        only: only.to_vec(),
        policies: None,
        check: Default::default(),
        releases: None,
    };
    let out = crate::pipeline::run(inputs, &options)?;
    let mut all = Vec::new();
    for env in &out.model.environments {
        if only.is_empty() || only.contains(&env.name) {
            all.push(desired(env, &out.rendered, revision)?);
        }
    }
    Ok(all)
}

/// One `info` line per drifted object (the CLI and the daemon log the same way).
pub fn log_report(report: &Report) {
    for o in &report.objects {
        tracing::info!(environment = %report.environment, kind = %o.kind, namespace = %o.namespace, name = %o.name, state = ?o.state, "drift");
    }
}

/// Whether a live HelmRelease was put there by kairo for this environment.
pub fn kairo_release(o: &Value, environment: &str) -> bool {
    let labels = &o["metadata"]["labels"];
    labels[MANAGED_BY].as_str() == Some("kairo")
        && labels[ENVIRONMENT_LABEL].as_str() == Some(environment)
}

// ---- normalization --------------------------------------------------------------------------

/// Fields the HelmRelease CRD (helm.toolkit.fluxcd.io/v2) defaults, with their defaults: the
/// API server writes them into every object, so a live object holding exactly the default is
/// not drift.
const HELMRELEASE_DEFAULTS: [(&str, &str); 4] = [
    ("/spec/chart/spec/reconcileStrategy", "ChartVersion"),
    ("/spec/chart/spec/version", "*"),
    ("/spec/chart/spec/verify/provider", "cosign"),
    ("/spec/uninstall/deletionPropagation", "background"),
];

/// A HelmRelease as compared: `apiVersion`, `kind`, `metadata.{name,namespace}`, the labels
/// `desired` sets (others are the business of whoever set them), and `spec` without the
/// fields that hold the CRD's default when `desired` does not set them.
pub fn normalize_helm_release(o: &Value, desired: Option<&Value>) -> Value {
    let mut labels = Map::new();
    let wanted = desired.map(|d| &d["metadata"]["labels"]);
    if let Some(Value::Object(live)) = o["metadata"].get("labels") {
        for (k, v) in live {
            if wanted.is_none_or(|w| w.get(k).is_some()) {
                labels.insert(k.clone(), v.clone());
            }
        }
    }
    let mut metadata = Map::new();
    metadata.insert("name".into(), o["metadata"]["name"].clone());
    metadata.insert("namespace".into(), o["metadata"]["namespace"].clone());
    if !labels.is_empty() {
        metadata.insert("labels".into(), Value::Object(labels));
    }
    let mut out = json!({
        "apiVersion": o["apiVersion"],
        "kind": o["kind"],
        "metadata": metadata,
    });
    if let Some(spec) = o.get("spec") {
        out["spec"] = spec.clone();
    }
    for (pointer, default) in HELMRELEASE_DEFAULTS {
        let set_in_git = desired.is_some_and(|d| d.pointer(pointer).is_some());
        if !set_in_git && out.pointer(pointer).and_then(Value::as_str) == Some(default) {
            remove_pointer(&mut out, pointer);
        }
    }
    prune_empty(&mut out["spec"]);
    out
}

/// Drops objects left empty after stripping (`verify: {}` once `provider` went).
fn prune_empty(v: &mut Value) {
    if let Value::Object(map) = v {
        for child in map.values_mut() {
            prune_empty(child);
        }
        map.retain(|_, c| !matches!(c, Value::Object(m) if m.is_empty()));
    }
}

/// Removes the value at a JSON pointer (RFC 6901), if there is one.
pub fn remove_pointer(v: &mut Value, pointer: &str) {
    let Some((parent, last)) = pointer.rsplit_once('/') else {
        return;
    };
    let last = last.replace("~1", "/").replace("~0", "~");
    let target = if parent.is_empty() {
        Some(v)
    } else {
        v.pointer_mut(parent)
    };
    match target {
        Some(Value::Object(map)) => {
            map.remove(&last);
        }
        Some(Value::Array(items)) => {
            if let Ok(i) = last.parse::<usize>()
                && i < items.len()
            {
                items.remove(i);
            }
        }
        _ => {}
    }
}

/// A workload as compared: only the fields kairo renders values for. The container is the one
/// running the service's image repository, else the one named after the service (its image
/// was changed), else the first.
pub fn project_workload(o: &Value, want: &DesiredWorkload) -> Value {
    let containers: &[Value] = o["spec"]["template"]["spec"]["containers"]
        .as_array()
        .map_or(&[], Vec::as_slice);
    let main = containers
        .iter()
        .find(|c| image_repository(c["image"].as_str().unwrap_or_default()) == want.repository)
        .or_else(|| {
            containers
                .iter()
                .find(|c| c["name"].as_str() == Some(want.container.as_str()))
        })
        .or(containers.first());
    let container = main.map_or_else(
        || json!({}),
        |c| {
            let mut image = c["image"].clone();
            // The same image written another way (`repo@digest`) is not drift.
            if image.as_str().is_some_and(|i| want.image_matches(i)) {
                image = Value::from(want.image());
            }
            json!({
                "name": c["name"],
                "image": image,
                "resources": canonical_resources(&c["resources"]),
            })
        },
    );
    let mut spec = Map::new();
    if want.replicas.is_some() {
        // The API server defaults an absent replica count to 1.
        spec.insert(
            "replicas".into(),
            o["spec"].get("replicas").cloned().unwrap_or(json!(1)),
        );
    }
    spec.insert(
        "template".into(),
        json!({"spec": {"containers": [container]}}),
    );
    json!({
        "apiVersion": o["apiVersion"],
        "kind": o["kind"],
        "metadata": {"name": o["metadata"]["name"], "namespace": o["metadata"]["namespace"]},
        "spec": spec,
    })
}

/// What `want` asks of a workload named like `live`, in [`project_workload`]'s shape.
pub fn desired_workload(live: &Value, want: &DesiredWorkload) -> Value {
    let mut out = project_workload(live, want);
    if let Some(r) = want.replicas {
        out["spec"]["replicas"] = json!(r);
    }
    let container = &mut out["spec"]["template"]["spec"]["containers"][0];
    container["image"] = Value::from(want.image());
    container["resources"] = want.resources.clone();
    out
}

/// `{requests, limits}` with quantities printed as the API server does; other keys (claims)
/// and empty sections left out.
fn canonical_resources(r: &Value) -> Value {
    let mut out = Map::new();
    for section in ["requests", "limits"] {
        if let Some(Value::Object(m)) = r.get(section)
            && !m.is_empty()
        {
            let canon = m
                .iter()
                .map(|(k, v)| {
                    let text = match v {
                        Value::String(s) => s.clone(),
                        other => other.to_string(),
                    };
                    let canonical = Quantity::parse(&text).map_or(text, |q| q.to_string());
                    (k.clone(), Value::from(canonical))
                })
                .collect();
            out.insert(section.into(), Value::Object(canon));
        }
    }
    Value::Object(out)
}

fn project_autoscaler(o: &Value) -> Value {
    json!({
        "apiVersion": o["apiVersion"],
        "kind": o["kind"],
        "metadata": {"name": o["metadata"]["name"], "namespace": o["metadata"]["namespace"]},
        "spec": {"minReplicas": o["spec"].get("minReplicas").cloned().unwrap_or(json!(1)), "maxReplicas": o["spec"]["maxReplicas"]},
    })
}

// ---- the comparison -------------------------------------------------------------------------

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum State {
    /// In Git, not in the cluster.
    Missing,
    /// Labelled by kairo for this environment in the cluster, not in Git.
    Extra,
    /// In both, with different compared fields.
    Changed,
}

/// One object that differs.
#[derive(Debug, Clone, Serialize)]
pub struct ObjectDrift {
    pub state: State,
    pub kind: String,
    pub namespace: String,
    pub name: String,
    /// The release it belongs to (empty for a Secret, which belongs to the environment).
    #[serde(skip_serializing_if = "String::is_empty")]
    pub release: String,
    /// Leaf-level changes from Git (`before`) to the cluster (`after`), sorted by path.
    pub fields: Vec<FieldChange>,
    /// Unified diff of the compared fields, Git → cluster.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub diff: String,
}

/// The whole comparison: the `kairo drift --output json` schema.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub environment: String,
    /// The git revision the desired state was rendered from.
    pub revision: String,
    /// `context <name>`, `in-cluster`, or the live file.
    pub cluster: String,
    /// Sorted by kind, namespace, name.
    pub objects: Vec<ObjectDrift>,
    /// Objects compared (HelmReleases, workloads, autoscalers found on both sides).
    pub compared: usize,
}

impl Report {
    pub fn has_drift(&self) -> bool {
        !self.objects.is_empty()
    }

    pub fn count(&self, state: State) -> usize {
        self.objects.iter().filter(|o| o.state == state).count()
    }

    /// Drifted objects per kind (for `kairo_drift_objects{env,kind}`).
    pub fn by_kind(&self) -> BTreeMap<String, usize> {
        let mut out = BTreeMap::new();
        for o in &self.objects {
            *out.entry(o.kind.clone()).or_default() += 1;
        }
        out
    }
}

/// Compares `desired` with `live`; `cluster` labels the live side in the report.
pub fn check(desired: &Desired, live: &Live, cluster: &str) -> Report {
    let mut objects = Vec::new();
    let mut compared = 0;
    let ours: BTreeMap<(&str, &str), &Value> = live
        .helm_releases
        .iter()
        .filter(|o| namespace(o) == desired.namespace)
        .map(|o| ((namespace(o), name(o)), o))
        .collect();
    let wanted: BTreeSet<&str> = desired.releases.iter().map(|r| r.name.as_str()).collect();
    let owners = live.owners();

    for r in &desired.releases {
        let Some(live_hr) = ours.get(&(desired.namespace.as_str(), r.name.as_str())) else {
            objects.push(drift_of(
                desired,
                State::Missing,
                &r.name,
                Some(&r.object),
                None,
            ));
            continue;
        };
        compared += 1;
        let before = normalize_helm_release(&r.object, Some(&r.object));
        let after = normalize_helm_release(live_hr, Some(&r.object));
        if let Some(d) = changed(desired, &r.name, before, after) {
            objects.push(d);
        }
        let Some(want) = &r.workload else { continue };
        let workloads = owners.workloads(&r.name, &want.namespace);
        if workloads.is_empty() {
            // The chart's workload, named after the release as charts name it.
            let stand_in = json!({
                "apiVersion": "apps/v1", "kind": "Deployment",
                "metadata": {"name": r.name, "namespace": want.namespace},
                "spec": {"template": {"spec": {"containers": [{"name": want.container, "image": want.image()}]}}},
            });
            let mut before = desired_workload(&stand_in, want);
            ignore(desired, &mut before);
            objects.push(drift_of(
                desired,
                State::Missing,
                &r.name,
                Some(&before),
                None,
            ));
        }
        // The workloads running the service's image, or a container named after the service
        // (whose image was changed); if none does, the first one.
        let mut running: Vec<&Value> = workloads
            .iter()
            .copied()
            .filter(|w| runs(w, want))
            .collect();
        if running.is_empty() {
            running.extend(workloads.first());
        }
        for w in running {
            compared += 1;
            let before = desired_workload(w, want);
            let after = project_workload(w, want);
            if let Some(d) = changed(desired, &r.name, before, after) {
                objects.push(d);
            }
        }
        if let Some((min, max)) = want.autoscaling {
            let autoscalers = owners.autoscalers(&r.name, &want.namespace);
            if autoscalers.is_empty() {
                let before = json!({
                    "apiVersion": "autoscaling/v2", "kind": "HorizontalPodAutoscaler",
                    "metadata": {"name": r.name, "namespace": want.namespace},
                    "spec": {"minReplicas": min, "maxReplicas": max},
                });
                objects.push(drift_of(
                    desired,
                    State::Missing,
                    &r.name,
                    Some(&before),
                    None,
                ));
            }
            for h in autoscalers {
                compared += 1;
                let after = project_autoscaler(h);
                let mut before = after.clone();
                before["spec"] = json!({"minReplicas": min, "maxReplicas": max});
                if let Some(d) = changed(desired, &r.name, before, after) {
                    objects.push(d);
                }
            }
        }
    }
    let secrets: BTreeMap<(&str, &str), &Value> = live
        .secrets
        .iter()
        .map(|o| ((namespace(o), name(o)), o))
        .collect();
    for want in &desired.secrets {
        let found = secrets.get(&(namespace(want), name(want))).copied();
        compared += usize::from(found.is_some());
        if let Some(d) = secret_drift(desired, want, found) {
            objects.push(d);
        }
    }
    for ((_, n), o) in &ours {
        if !wanted.contains(n) && kairo_release(o, &desired.environment) {
            let after = normalize_helm_release(o, None);
            objects.push(drift_of(desired, State::Extra, n, None, Some(&after)));
        }
    }
    objects.sort_by(|a, b| {
        (&a.kind, &a.namespace, &a.name, a.state).cmp(&(&b.kind, &b.namespace, &b.name, b.state))
    });
    Report {
        environment: desired.environment.clone(),
        revision: desired.revision.clone(),
        cluster: cluster.to_string(),
        objects,
        compared,
    }
}

/// Whether a workload runs the service: a container with its image repository, or named
/// after it.
fn runs(workload: &Value, want: &DesiredWorkload) -> bool {
    workload["spec"]["template"]["spec"]["containers"]
        .as_array()
        .is_some_and(|cs| {
            cs.iter().any(|c| {
                image_repository(c["image"].as_str().unwrap_or_default()) == want.repository
                    || c["name"].as_str() == Some(want.container.as_str())
            })
        })
}

/// Applies the ignore rules matching the object to both sides (Flux-style: the paths are
/// removed before comparing).
fn ignore(desired: &Desired, value: &mut Value) {
    let (k, n) = (kind(value).to_string(), name(value).to_string());
    for rule in &desired.ignore {
        if rule.kind.as_ref().is_some_and(|rk| *rk != k)
            || rule.name.as_ref().is_some_and(|rn| *rn != n)
        {
            continue;
        }
        for p in &rule.paths {
            remove_pointer(value, p);
        }
    }
}

fn changed(
    desired: &Desired,
    release: &str,
    mut before: Value,
    mut after: Value,
) -> Option<ObjectDrift> {
    ignore(desired, &mut before);
    ignore(desired, &mut after);
    if before == after {
        return None;
    }
    Some(drift_of(
        desired,
        State::Changed,
        release,
        Some(&before),
        Some(&after),
    ))
}

fn drift_of(
    desired: &Desired,
    state: State,
    release: &str,
    before: Option<&Value>,
    after: Option<&Value>,
) -> ObjectDrift {
    let object = after.or(before).expect("one side exists");
    let mut fields = Vec::new();
    if let (Some(b), Some(a)) = (before, after) {
        compare_values("", b, a, &mut fields);
    }
    let text = |v: Option<&Value>| {
        v.map_or_else(String::new, |v| {
            crate::yaml::to_string(v).unwrap_or_default() + "\n"
        })
    };
    let id = format!("{}/{}/{}", kind(object), namespace(object), name(object));
    let (old, new) = (text(before), text(after));
    let diff = similar::TextDiff::from_lines(old.as_str(), new.as_str())
        .unified_diff()
        .context_radius(3)
        .header(
            &before.map_or("/dev/null".into(), |_| {
                format!("git {}: {id}", desired.revision)
            }),
            &after.map_or("/dev/null".into(), |_| format!("cluster: {id}")),
        )
        .to_string();
    ObjectDrift {
        state,
        kind: kind(object).to_string(),
        namespace: namespace(object).to_string(),
        name: name(object).to_string(),
        release: release.to_string(),
        fields,
        diff,
    }
}

// ---- secrets --------------------------------------------------------------------------------

/// What a masked Secret value reads as.
pub const MASK: &str = "(masked)";
/// What a masked Secret value reads as on the cluster side when it differs from Git's.
pub const MASK_CHANGED: &str = "(masked, changed)";

/// A Secret as compared: `type` (`Opaque` when unset, as the API server defaults it), the
/// labels Git sets, and `data` as base64 of the bytes, `stringData` merged in as the API server
/// does. A value that is not base64 is kept as written, so it differs from any live value.
fn normalize_secret(o: &Value, desired: &Value) -> Value {
    use base64::Engine;
    let b64 = base64::engine::general_purpose::STANDARD;
    let mut data = Map::new();
    if let Some(Value::Object(m)) = o.get("data") {
        for (k, v) in m {
            let text = v.as_str().unwrap_or_default();
            let compact: String = text.split_whitespace().collect();
            let canonical = b64
                .decode(compact.as_bytes())
                .map_or_else(|_| format!("not base64: {text}"), |bytes| b64.encode(bytes));
            data.insert(k.clone(), Value::from(canonical));
        }
    }
    if let Some(Value::Object(m)) = o.get("stringData") {
        for (k, v) in m {
            let text = match v {
                Value::String(s) => s.clone(),
                other => other.to_string(),
            };
            data.insert(k.clone(), Value::from(b64.encode(text.as_bytes())));
        }
    }
    let mut labels = Map::new();
    if let Some(Value::Object(live)) = o["metadata"].get("labels") {
        for (k, v) in live {
            if desired["metadata"]["labels"].get(k).is_some() {
                labels.insert(k.clone(), v.clone());
            }
        }
    }
    let mut metadata =
        json!({"name": o["metadata"]["name"], "namespace": o["metadata"]["namespace"]});
    if !labels.is_empty() {
        metadata["labels"] = Value::Object(labels);
    }
    json!({
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": metadata,
        "type": o.get("type").cloned().unwrap_or_else(|| Value::from("Opaque")),
        "data": data,
    })
}

/// Replaces every `data` value by [`MASK`], or by [`MASK_CHANGED`] where `other` (the other
/// side) holds a different value under the same key, so a diff still shows which keys changed.
fn mask_secret(v: &Value, other: Option<&Value>) -> Value {
    let mut out = v.clone();
    if let Some(Value::Object(data)) = out.get_mut("data") {
        for (k, value) in data.iter_mut() {
            let changed = other
                .and_then(|o| o["data"].get(k))
                .is_some_and(|theirs| theirs != value);
            *value = Value::from(if changed { MASK_CHANGED } else { MASK });
        }
    }
    out
}

/// A Secret Git renders against the live one: compared on the real bytes, reported masked.
fn secret_drift(desired: &Desired, want: &Value, live: Option<&Value>) -> Option<ObjectDrift> {
    let mut before = normalize_secret(want, want);
    ignore(desired, &mut before);
    let Some(live) = live else {
        let masked = mask_secret(&before, None);
        return Some(drift_of(desired, State::Missing, "", Some(&masked), None));
    };
    let mut after = normalize_secret(live, want);
    ignore(desired, &mut after);
    if before == after {
        return None;
    }
    let mut fields = Vec::new();
    compare_values("", &before, &after, &mut fields);
    for f in &mut fields {
        if f.path.starts_with("data") {
            f.before = f.before.as_ref().map(|_| Value::from(MASK));
            f.after = f.after.as_ref().map(|_| Value::from(MASK));
        }
    }
    // Only masked values from here on.
    let (before, after) = (
        mask_secret(&before, None),
        mask_secret(&after, Some(&before)),
    );
    let mut d = drift_of(desired, State::Changed, "", Some(&before), Some(&after));
    d.fields = fields;
    Some(d)
}

// ---- output ---------------------------------------------------------------------------------

fn summary(o: &ObjectDrift, arrow: &str) -> String {
    crate::diff::output::field_summary(&o.fields, arrow)
}

fn title(o: &ObjectDrift, arrow: &str) -> String {
    match o.state {
        State::Missing => format!(
            "- {} {}/{}: missing in cluster",
            o.kind, o.namespace, o.name
        ),
        State::Extra => format!(
            "+ {} {}/{}: extra in cluster (not in Git)",
            o.kind, o.namespace, o.name
        ),
        State::Changed => format!(
            "~ {} {}/{}: {}",
            o.kind,
            o.namespace,
            o.name,
            summary(o, arrow)
        ),
    }
}

fn headline(r: &Report) -> String {
    format!(
        "{} at {} -> {}: {} changed, {} missing, {} extra ({} objects compared)",
        r.environment,
        r.revision,
        r.cluster,
        r.count(State::Changed),
        r.count(State::Missing),
        r.count(State::Extra),
        r.compared
    )
}

/// Plain text: a headline, then per object a line and (unless `summary_only`) its diff.
pub fn render_text(r: &Report, summary_only: bool) -> String {
    let mut out = headline(r) + "\n";
    for o in &r.objects {
        let _ = writeln!(out, "{}", title(o, "->"));
        if !summary_only && o.state == State::Changed {
            for l in o.diff.lines() {
                let _ = writeln!(out, "    {l}");
            }
        }
    }
    out
}

/// Markdown for an issue or a chat message, within [`crate::diff::MARKDOWN_LIMIT`].
pub fn render_markdown(r: &Report, summary_only: bool) -> String {
    let mut out = format!(
        "### kairo drift: `{}`\n\n{}\n\n",
        r.environment,
        headline(r)
    );
    if !r.has_drift() {
        out.push_str("No drift.\n");
        return out;
    }
    let mut omitted = 0;
    for o in &r.objects {
        let title = title(o, "→");
        let block = if summary_only || o.state != State::Changed {
            format!("- {}\n", title[2..].replace('<', "&lt;"))
        } else {
            format!(
                "<details><summary>{}</summary>\n\n```diff\n{}```\n\n</details>\n",
                title
                    .replace('&', "&amp;")
                    .replace('<', "&lt;")
                    .replace('>', "&gt;"),
                o.diff.replace("```", "` ` `")
            )
        };
        if out.len() + block.len() > crate::diff::MARKDOWN_LIMIT - 200 {
            omitted += 1;
            continue;
        }
        out.push_str(&block);
    }
    if omitted > 0 {
        let _ = writeln!(
            out,
            "\n_{omitted} more object(s) not shown; run `kairo drift --env {}` for everything._",
            r.environment
        );
    }
    out
}

pub fn render_json(r: &Report) -> String {
    serde_json::to_string_pretty(r).expect("a report serializes") + "\n"
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn image_repositories_keep_registry_ports() {
        assert_eq!(image_repository("ghcr.io/acme/api:1.2"), "ghcr.io/acme/api");
        assert_eq!(
            image_repository("localhost:5000/acme/api:1.2@sha256:ab"),
            "localhost:5000/acme/api"
        );
        assert_eq!(
            image_repository("localhost:5000/acme/api"),
            "localhost:5000/acme/api"
        );
        assert_eq!(image_repository("redis@sha256:ab"), "redis");
    }

    #[test]
    fn pointers_are_unescaped_and_missing_ones_are_ignored() {
        let mut v = json!({"metadata": {"annotations": {"a/b": 1, "c~d": 2}}, "items": [1, 2, 3]});
        remove_pointer(&mut v, "/metadata/annotations/a~1b");
        remove_pointer(&mut v, "/metadata/annotations/c~0d");
        remove_pointer(&mut v, "/items/1");
        remove_pointer(&mut v, "/items/9");
        remove_pointer(&mut v, "/nothing/here");
        assert_eq!(v, json!({"metadata": {"annotations": {}}, "items": [1, 3]}));
    }

    #[test]
    fn a_crd_default_is_drift_only_when_it_differs_from_the_default() {
        let desired = json!({"apiVersion": "helm.toolkit.fluxcd.io/v2", "kind": "HelmRelease",
            "metadata": {"name": "a", "namespace": "n", "labels": {"x": "1"}},
            "spec": {"chart": {"spec": {"chart": "a"}}}});
        let mut live = desired.clone();
        live["spec"]["chart"]["spec"]["reconcileStrategy"] = json!("ChartVersion");
        live["metadata"]["labels"]["kustomize.toolkit.fluxcd.io/name"] = json!("flux-system");
        live["metadata"]["uid"] = json!("u");
        live["status"] = json!({"observedGeneration": 1});
        let norm = |o: &Value| normalize_helm_release(o, Some(&desired));
        assert_eq!(norm(&live), norm(&desired));
        live["spec"]["chart"]["spec"]["reconcileStrategy"] = json!("Revision");
        assert_ne!(norm(&live), norm(&desired));
    }

    #[test]
    fn a_digest_pinned_image_matches_either_spelling() {
        let w = DesiredWorkload {
            container: "a".into(),
            namespace: "n".into(),
            repository: "ghcr.io/a".into(),
            tag: "1.0".into(),
            digest: Some("sha256:ab".into()),
            replicas: None,
            autoscaling: None,
            resources: json!({}),
        };
        assert!(w.image_matches("ghcr.io/a:1.0@sha256:ab"));
        assert!(w.image_matches("ghcr.io/a@sha256:ab"));
        assert!(!w.image_matches("ghcr.io/a:1.0"));
    }
}
