//! The input schema (`kairo.dev/v1alpha1`) exactly as written in `environments/*.yaml`.
//!
//! These types only describe shape: unknown keys, duplicate keys and wrong types are rejected by
//! serde with a position. Names, quantities, tags and cross references are kept as located
//! strings and checked in `resolve`, which reports every such problem at once.

use std::fmt;

use serde::Deserialize;
use serde::de::{self, MapAccess, Visitor};

use crate::yaml::{Bool, Spanned};

pub const API_VERSION: &str = "kairo.dev/v1alpha1";
pub const KIND_CATALOG: &str = "ServiceCatalog";
pub const KIND_ENVIRONMENT: &str = "Environment";

/// One input file, read in a single pass: `kind` selects the schema of `spec`.
///
/// When `spec` comes before `kind` (legal, if unusual), the spec is skipped here and the caller
/// reads the file a second time as a `Document<S>` of the right type.
pub struct File {
    pub api_version: Option<Spanned<String>>,
    pub kind: Option<Spanned<String>>,
    pub metadata: Option<Metadata>,
    pub spec: Option<AnySpec>,
}

pub enum AnySpec {
    Catalog(Box<CatalogSpec>),
    Environment(Box<EnvironmentSpec>),
    /// Not read: the kind was unknown (or not yet known) when `spec` came.
    Skipped,
}

const FILE_KEYS: &[&str] = &["apiVersion", "kind", "metadata", "spec"];

impl<'de> Deserialize<'de> for File {
    fn deserialize<D: de::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = File;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a mapping with `apiVersion`, `kind`, `metadata` and `spec`")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<File, A::Error> {
                let mut file = File {
                    api_version: None,
                    kind: None,
                    metadata: None,
                    spec: None,
                };
                while let Some(key) = map.next_key::<String>()? {
                    match key.as_str() {
                        "apiVersion" => file.api_version = Some(map.next_value()?),
                        "kind" => file.kind = Some(map.next_value()?),
                        "metadata" => file.metadata = Some(map.next_value()?),
                        "spec" => {
                            let api_ok = file
                                .api_version
                                .as_ref()
                                .is_some_and(|v| v.value == API_VERSION);
                            let kind = file.kind.as_ref().map(|k| k.value.as_str());
                            file.spec = Some(match kind {
                                Some(KIND_CATALOG) if api_ok => AnySpec::Catalog(map.next_value()?),
                                Some(KIND_ENVIRONMENT) if api_ok => {
                                    AnySpec::Environment(map.next_value()?)
                                }
                                _ => {
                                    map.next_value::<de::IgnoredAny>()?;
                                    AnySpec::Skipped
                                }
                            });
                        }
                        other => return Err(de::Error::unknown_field(other, FILE_KEYS)),
                    }
                }
                Ok(file)
            }
        }
        deserializer.deserialize_map(V)
    }
}

/// What a run that does not resolve an environment needs of its file: kind, name and placement.
/// Other keys are skipped unread; a file this cannot describe is parsed in full.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Head {
    pub api_version: Option<String>,
    pub kind: Option<String>,
    pub metadata: Option<HeadMetadata>,
    pub spec: Option<HeadSpec>,
}

#[derive(Deserialize)]
pub struct HeadMetadata {
    pub name: Spanned<String>,
}

#[derive(Deserialize)]
pub struct HeadSpec {
    pub cluster: Option<Spanned<String>>,
    pub namespace: Option<Spanned<String>>,
}

/// The start of `text` through the line where the last of the head's five values ends
/// (`apiVersion`, `kind`, `metadata.name`, `spec.cluster`, `spec.namespace`), or `None` when
/// they are not all there or the text does not parse that far. A `Head` read from the prefix
/// has the same values and positions as one read from the whole file, and the rest of the
/// file (a large environment's services) is never read. A prefix cut inside something the
/// parser needs whole fails to read, and the caller then reads the whole file.
pub fn head_prefix(text: &str) -> Option<&str> {
    use serde_saphyr::granit_parser::{Event, Parser};
    enum Frame {
        /// The key whose value comes next; `None` while a key is expected.
        Map(Option<String>),
        Seq,
    }
    let mut stack: Vec<Frame> = Vec::new();
    let mut found = 0;
    let mut last_line = 0;
    for event in Parser::new_from_str(text) {
        let (event, span) = event.ok()?;
        let is_value = match &event {
            Event::MappingStart(..) | Event::SequenceStart(..) => {
                let is_key = matches!(stack.last(), Some(Frame::Map(None)));
                if is_key {
                    return None; // a complex key: leave it to the full reader
                }
                stack.push(match event {
                    Event::MappingStart(..) => Frame::Map(None),
                    _ => Frame::Seq,
                });
                false
            }
            Event::MappingEnd | Event::SequenceEnd => {
                stack.pop();
                true
            }
            Event::Scalar(value, ..) => {
                if let Some(Frame::Map(key @ None)) = stack.last_mut() {
                    *key = Some(value.to_string());
                    false
                } else {
                    let at = |depth: usize| match stack.get(depth) {
                        Some(Frame::Map(Some(k))) => k.as_str(),
                        _ => "",
                    };
                    let wanted = matches!(
                        (stack.len(), at(0), at(1)),
                        (1, "apiVersion" | "kind", _)
                            | (2, "metadata", "name")
                            | (2, "spec", "cluster" | "namespace")
                    );
                    if wanted {
                        found += 1;
                        last_line = last_line.max(span.end.line());
                        if found == 5 {
                            let end = text
                                .match_indices('\n')
                                .nth(last_line.saturating_sub(1))
                                .map_or(text.len(), |(i, _)| i + 1);
                            return Some(&text[..end]);
                        }
                    }
                    true
                }
            }
            Event::Alias(..) => true,
            _ => false,
        };
        // A completed value: the map it belongs to expects a key again.
        if is_value && let Some(Frame::Map(key)) = stack.last_mut() {
            *key = None;
        }
    }
    None
}

/// A whole file of a known kind; used only when `spec` precedes `kind`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Document<S> {
    #[allow(dead_code)]
    pub api_version: String,
    #[allow(dead_code)]
    pub kind: String,
    pub metadata: Metadata,
    pub spec: S,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Metadata {
    pub name: Spanned<String>,
}

/// A mapping whose keys are names, kept in file order with their positions.
pub struct NamedMap<T>(pub Vec<(Spanned<String>, T)>);

impl<T> Default for NamedMap<T> {
    fn default() -> Self {
        NamedMap(Vec::new())
    }
}

impl<'de, T: Deserialize<'de>> Deserialize<'de> for NamedMap<T> {
    fn deserialize<D: de::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct V<T>(std::marker::PhantomData<T>);
        impl<'de, T: Deserialize<'de>> Visitor<'de> for V<T> {
            type Value = NamedMap<T>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a mapping of names")
            }
            fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
                Ok(NamedMap::default())
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
                let mut entries = Vec::new();
                while let Some(key) = map.next_key::<Spanned<String>>()? {
                    entries.push((key, map.next_value::<T>()?));
                }
                Ok(NamedMap(entries))
            }
        }
        deserializer.deserialize_map(V(std::marker::PhantomData))
    }
}

/// A scalar written as a number or a string (`2`, `1.5`, `500m`), kept as its text.
#[derive(Clone, Debug)]
pub struct Scalar(pub String);

impl<'de> Deserialize<'de> for Scalar {
    fn deserialize<D: de::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = Scalar;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a number or a quantity such as `500m` or `2Gi`")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Scalar, E> {
                Ok(Scalar(v.to_string()))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Scalar, E> {
                Ok(Scalar(v.to_string()))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Scalar, E> {
                Ok(Scalar(v.to_string()))
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<Scalar, E> {
                Ok(Scalar(v.to_string()))
            }
        }
        // Asking for a string gets the scalar's text as written (`0x10`, `2e3`, `1_000` stay
        // themselves), so a quantity is parsed by Kubernetes' rules, never YAML's number rules.
        deserializer.deserialize_string(V)
    }
}

// ---- ServiceCatalog ------------------------------------------------------------------------

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct CatalogSpec {
    #[serde(default)]
    pub sources: NamedMap<Source>,
    #[serde(default)]
    pub services: NamedMap<Service>,
    /// Third-party charts (cert-manager, ingress-nginx, ...): no image of ours.
    #[serde(default)]
    pub addons: NamedMap<AddOn>,
    /// Release settings for every release, below each release's own.
    pub release: Option<ReleaseSettings>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SourceKind {
    /// A classic Helm repository (`index.yaml` over HTTPS): a Flux `HelmRepository`.
    Helm,
    /// Charts stored as OCI artifacts: one Flux `OCIRepository` per chart.
    Oci,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Source {
    #[serde(rename = "type")]
    pub kind: SourceKind,
    pub url: Spanned<String>,
    pub interval: Option<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Service {
    pub chart: Chart,
    pub image: ImageRepository,
    #[serde(default)]
    pub resources: Resources,
    pub gpu: Option<Gpu>,
    #[serde(default)]
    pub autoscaling: Bool,
    pub priority_class: Option<Spanned<String>>,
    #[serde(default)]
    pub ports: Vec<Port>,
    pub values: Option<Spanned<Tree>>,
    #[serde(default)]
    pub values_from: Vec<ValuesReference>,
    #[serde(default)]
    pub depends_on: Vec<Spanned<String>>,
    pub release: Option<ReleaseSettings>,
    /// How the registry watcher picks new tags (`super::tagpolicy`).
    pub update: Option<super::tagpolicy::RawUpdate>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Chart {
    pub name: Option<Spanned<String>>,
    pub version: Spanned<String>,
    pub source: Spanned<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ImageRepository {
    pub repository: Spanned<String>,
}

#[derive(Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Resources {
    pub requests: Option<ResourceList>,
    pub limits: Option<ResourceList>,
}

#[derive(Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ResourceList {
    pub cpu: Option<Spanned<Scalar>>,
    pub memory: Option<Spanned<Scalar>>,
    #[serde(rename = "ephemeral-storage")]
    pub ephemeral_storage: Option<Spanned<Scalar>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Gpu {
    pub count: Spanned<u32>,
    /// GPU class such as `L40S` or `H100`; any GPU pool matches when absent.
    pub class: Option<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Port {
    pub name: Spanned<String>,
    pub port: Spanned<u16>,
}

// ---- Environment ---------------------------------------------------------------------------

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct EnvironmentSpec {
    pub namespace: Spanned<String>,
    pub branch: Spanned<String>,
    pub cluster: Spanned<String>,
    pub resource_multiplier: Option<Spanned<Scalar>>,
    pub defaults: Defaults,
    #[serde(default)]
    pub node_pools: NamedMap<Pool>,
    #[serde(default)]
    pub services: NamedMap<EnvService>,
    /// The catalog's add-ons that run here.
    #[serde(default)]
    pub addons: NamedMap<EnvAddOn>,
    /// What `kairo drift` ignores in this environment's live objects.
    pub drift: Option<DriftConfig>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct DriftConfig {
    #[serde(default)]
    pub ignore: Vec<DriftIgnore>,
}

/// Flux-style: JSON pointers into the live object, for objects matching `target`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct DriftIgnore {
    pub paths: Spanned<Vec<Spanned<String>>>,
    pub target: Option<DriftTarget>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct DriftTarget {
    pub kind: Option<Spanned<String>>,
    pub name: Option<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Defaults {
    pub replicas: Spanned<u32>,
    pub hpa: Hpa,
    pub pdb: Pdb,
    pub pool: Option<Spanned<String>>,
    pub priority_class: Option<Spanned<String>>,
    /// Chart values for every service (not add-ons) of the environment.
    pub values: Option<Spanned<Tree>>,
    #[serde(default)]
    pub values_from: Vec<ValuesReference>,
    pub release: Option<ReleaseSettings>,
}

#[derive(Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Hpa {
    pub enabled: Option<Bool>,
    pub min_replicas: Option<Spanned<u32>>,
    pub max_replicas: Option<Spanned<u32>>,
    #[serde(rename = "targetCPUUtilizationPercentage")]
    pub target_cpu: Option<Spanned<u32>>,
}

#[derive(Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Pdb {
    pub enabled: Option<Bool>,
    pub min_available: Option<Spanned<u32>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Pool {
    #[serde(default)]
    pub labels: NamedMap<Spanned<String>>,
    #[serde(default)]
    pub taints: Vec<Taint>,
    pub gpu: Option<PoolGpu>,
    /// Node count, for the capacity check; not rendered. A pool without it is not checked.
    pub nodes: Option<Spanned<u32>>,
    /// What one node offers to pods (CPU, memory), for the capacity warning.
    pub node_size: Option<NodeSize>,
    /// GPU demand above supply is an error unless this says `warn`.
    pub gpu_overcommit: Option<Spanned<Overcommit>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct NodeSize {
    pub cpu: Option<Spanned<Scalar>>,
    pub memory: Option<Spanned<Scalar>>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Overcommit {
    Error,
    Warn,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct PoolGpu {
    pub class: Spanned<String>,
    /// GPUs per node.
    pub count: Spanned<u32>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, serde::Serialize)]
pub enum TaintEffect {
    NoSchedule,
    PreferNoSchedule,
    NoExecute,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Taint {
    pub key: Spanned<String>,
    pub value: Option<Spanned<String>>,
    pub effect: TaintEffect,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct EnvService {
    pub enabled: Option<Bool>,
    pub image: Option<ImageRef>,
    #[serde(default)]
    pub pinned: Bool,
    pub replicas: Option<Spanned<u32>>,
    pub resources: Option<Resources>,
    pub hpa: Option<Hpa>,
    pub pdb: Option<Pdb>,
    pub pool: Option<Spanned<String>>,
    pub gpu: Option<GpuOverride>,
    pub priority_class: Option<Spanned<String>>,
    pub chart: Option<ChartOverride>,
    pub values: Option<Spanned<Tree>>,
    #[serde(default)]
    pub values_from: Vec<ValuesReference>,
    #[serde(default)]
    pub depends_on: Vec<Spanned<String>>,
    pub release: Option<ReleaseSettings>,
    /// Overrides the catalog's update policy, field by field.
    pub update: Option<super::tagpolicy::RawUpdate>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ImageRef {
    pub tag: Spanned<String>,
    pub digest: Option<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct GpuOverride {
    pub count: Spanned<u32>,
}

// ---- Chart values, add-ons and release settings ---------------------------------------------

/// Free-form YAML (chart values), with the position of every key and value.
pub enum Tree {
    Null,
    Bool(bool),
    Int(i64),
    UInt(u64),
    Float(f64),
    String(String),
    List(Vec<Spanned<Tree>>),
    Map(Vec<(Spanned<String>, Spanned<Tree>)>),
}

impl<'de> Deserialize<'de> for Tree {
    fn deserialize<D: de::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Tree;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a YAML value")
            }
            fn visit_unit<E: de::Error>(self) -> Result<Tree, E> {
                Ok(Tree::Null)
            }
            fn visit_none<E: de::Error>(self) -> Result<Tree, E> {
                Ok(Tree::Null)
            }
            fn visit_some<D: de::Deserializer<'de>>(self, d: D) -> Result<Tree, D::Error> {
                Tree::deserialize(d)
            }
            fn visit_bool<E: de::Error>(self, v: bool) -> Result<Tree, E> {
                Ok(Tree::Bool(v))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Tree, E> {
                Ok(Tree::Int(v))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Tree, E> {
                Ok(Tree::UInt(v))
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<Tree, E> {
                // A plain scalar such as `5e57483` (a git hash) overflows to infinity; Helm reads
                // it as text, JSON cannot carry it, and guessing is worse than asking.
                if !v.is_finite() {
                    return Err(E::custom(
                        "a number out of range; quote it if it is text (such as a git hash)",
                    ));
                }
                Ok(Tree::Float(v))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Tree, E> {
                Ok(Tree::String(v.to_string()))
            }
            fn visit_string<E: de::Error>(self, v: String) -> Result<Tree, E> {
                Ok(Tree::String(v))
            }
            fn visit_seq<A: de::SeqAccess<'de>>(self, mut seq: A) -> Result<Tree, A::Error> {
                let mut items = Vec::new();
                while let Some(item) = seq.next_element::<Spanned<Tree>>()? {
                    items.push(item);
                }
                Ok(Tree::List(items))
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Tree, A::Error> {
                let mut entries = Vec::new();
                while let Some(key) = map.next_key::<Spanned<String>>()? {
                    entries.push((key, map.next_value::<Spanned<Tree>>()?));
                }
                Ok(Tree::Map(entries))
            }
        }
        deserializer.deserialize_any(V)
    }
}

/// A Flux `valuesFrom` entry: a reference to a ConfigMap or Secret, never its content.
#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ValuesReference {
    pub kind: Spanned<ValuesKind>,
    pub name: Spanned<String>,
    pub values_key: Option<Spanned<String>>,
    pub target_path: Option<Spanned<String>>,
    #[serde(default)]
    pub optional: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Deserialize, serde::Serialize)]
pub enum ValuesKind {
    ConfigMap,
    Secret,
}

/// A release of a third-party chart: its own namespace, no image of ours.
#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct AddOn {
    pub chart: Chart,
    /// The namespace the chart installs into.
    pub namespace: Spanned<String>,
    /// Let Helm create the namespace (Flux `install.createNamespace`); otherwise it must exist.
    #[serde(default)]
    pub create_namespace: bool,
    pub values: Option<Spanned<Tree>>,
    #[serde(default)]
    pub values_from: Vec<ValuesReference>,
    #[serde(default)]
    pub depends_on: Vec<Spanned<String>>,
    pub release: Option<ReleaseSettings>,
}

/// An add-on in one environment: listed means it runs.
#[derive(Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct EnvAddOn {
    pub enabled: Option<bool>,
    pub chart: Option<ChartOverride>,
    pub values: Option<Spanned<Tree>>,
    #[serde(default)]
    pub values_from: Vec<ValuesReference>,
    #[serde(default)]
    pub depends_on: Vec<Spanned<String>>,
    pub release: Option<ReleaseSettings>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ChartOverride {
    pub version: Spanned<String>,
}

/// The `helm.toolkit.fluxcd.io/v2` HelmRelease fields kairo lets a repository set.
#[derive(Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ReleaseSettings {
    pub interval: Option<Spanned<String>>,
    pub timeout: Option<Spanned<String>>,
    pub install: Option<InstallSettings>,
    pub upgrade: Option<UpgradeSettings>,
    pub drift_detection: Option<DriftSettings>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct InstallSettings {
    pub crds: Option<Spanned<String>>,
    pub remediation: Option<InstallRemediation>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct InstallRemediation {
    pub retries: Option<Spanned<i64>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct UpgradeSettings {
    pub crds: Option<Spanned<String>>,
    pub remediation: Option<UpgradeRemediation>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct UpgradeRemediation {
    pub retries: Option<Spanned<i64>>,
    pub strategy: Option<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct DriftSettings {
    pub mode: Option<Spanned<String>>,
    pub ignore: Option<Spanned<Vec<IgnoreRule>>>,
}

#[derive(Clone, Debug, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct IgnoreRule {
    pub paths: Vec<Spanned<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub target: Option<IgnoreTarget>,
}

#[derive(Clone, Debug, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct IgnoreTarget {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub group: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub annotation_selector: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub label_selector: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn head(text: &str) -> Option<(String, String, String, String, String, u32)> {
        let h: Head = crate::yaml::from_str(text).ok()?;
        let spec = h.spec?;
        let name = h.metadata?.name;
        let cluster = spec.cluster?;
        Some((
            h.api_version?,
            h.kind?,
            name.value,
            cluster.value,
            spec.namespace?.value,
            cluster.referenced.line() as u32,
        ))
    }

    #[test]
    fn the_head_prefix_reads_as_the_whole_file_and_stops_after_the_head() {
        let file = "# c\napiVersion: kairo.dev/v1alpha1\nkind: Environment\nmetadata:\n  name: prod\nspec:\n  namespace: kai\n  branch: main\n  cluster: kai-prod\n  defaults: {replicas: 3}\n  services:\n    api: {image: {tag: x}}\n";
        let prefix = head_prefix(file).expect("a plain head");
        assert!(prefix.ends_with("  cluster: kai-prod\n"), "{prefix:?}");
        assert_eq!(head(prefix), head(file));
        assert!(head(file).is_some());
        // Order does not matter; a value folded over two lines is taken whole.
        let file = "spec:\n  cluster: a\n    b\n  namespace: n\nmetadata: {name: e}\nkind: Environment\napiVersion: v\nrest: [1, 2]\n";
        let prefix = head_prefix(file).expect("all five are there");
        assert!(prefix.ends_with("apiVersion: v\n"), "{prefix:?}");
        assert_eq!(head(prefix), head(file));
        assert_eq!(head(file).map(|h| h.3), Some("a b".to_string()));
    }

    #[test]
    fn a_head_that_is_not_all_there_is_not_cut() {
        assert_eq!(
            head_prefix(
                "apiVersion: v\nkind: Environment\nmetadata:\n  name: e\nspec:\n  namespace: n\n"
            ),
            None
        );
        assert_eq!(head_prefix("apiVersion: v\nkind: [\n"), None);
        // Nested keys of the same names do not count.
        assert_eq!(
            head_prefix(
                "apiVersion: v\nkind: K\nmetadata:\n  x: {name: e}\nspec:\n  s: {cluster: c, namespace: n}\n"
            ),
            None
        );
    }
}
