//! Raw documents -> resolved model, collecting every problem with its position.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use super::diag::{Diagnostic, Pos, Severity, SourceFile};
use super::names::{
    did_you_mean, digest_problem, dns_label_problem, dns_subdomain_problem, label_key_problem,
    label_value_problem, oci_tag_problem, port_name_problem,
};
use super::quantity::{Decimal, Granularity, Quantity};
use super::raw::{self, API_VERSION, KIND_CATALOG, KIND_ENVIRONMENT, SourceKind};
use super::release::{self as rel, Layer};
use super::{
    AddOn, Autoscaling, ChartRef, Environment, HelmRepository, Image, Model, ModelError,
    OciRepository, Origins, PodDisruptionBudget, Port, QuantityValue, Release, Resources,
    Toleration,
};
use crate::yaml::{self, Bool, Spanned, YamlError};

const DEFAULT_SOURCE_INTERVAL: &str = "1h";

fn pos<T>(s: &Spanned<T>) -> Pos {
    s.referenced.into()
}

fn backticked(items: impl IntoIterator<Item = impl AsRef<str>>) -> String {
    items
        .into_iter()
        .map(|s| format!("`{}`", s.as_ref()))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Collects diagnostics for one file.
struct Diags<'a> {
    file: &'a SourceFile,
    out: &'a mut Vec<Diagnostic>,
}

impl Diags<'_> {
    fn error(&mut self, pos: Pos, message: impl Into<String>) -> &mut Diagnostic {
        self.out.push(self.file.error(pos, message));
        self.out.last_mut().expect("just pushed")
    }

    fn warn(&mut self, pos: Pos, message: impl Into<String>) -> &mut Diagnostic {
        self.out
            .push(self.file.diag(Severity::Warning, pos, message));
        self.out.last_mut().expect("just pushed")
    }

    fn label(&mut self, what: &str, name: &Spanned<String>) -> bool {
        match dns_label_problem(&name.value) {
            None => true,
            Some(problem) => {
                let d = self.error(pos(name), format!("{what} `{}` {problem}", name.value));
                d.hint = Some("names are DNS-1123 labels: lowercase letters, digits and `-`, at most 63 characters".into());
                false
            }
        }
    }

    /// Names Kubernetes allows to contain dots (PriorityClass): a DNS-1123 subdomain.
    fn subdomain(&mut self, what: &str, name: &Spanned<String>) -> bool {
        match dns_subdomain_problem(&name.value) {
            None => true,
            Some(problem) => {
                let d = self.error(pos(name), format!("{what} `{}` {problem}", name.value));
                d.hint = Some("write a DNS-1123 subdomain: lowercase letters, digits, `-` and `.`, at most 253 characters".into());
                false
            }
        }
    }

    fn yaml(&mut self, e: YamlError) {
        let at = Pos {
            line: e.line,
            column: e.column,
        };
        if let Some((key, allowed)) = &e.unknown_key {
            let mut hint = match did_you_mean(key, allowed.iter().copied()) {
                Some(best) => format!("did you mean `{best}`? "),
                None => String::new(),
            };
            hint.push_str(&format!("allowed keys here: {}", backticked(allowed)));
            self.error(at, e.message).hint = Some(hint);
            return;
        }
        self.error(at, e.message).hint = e.hint;
    }
}

struct CatalogService {
    name: String,
    chart: ChartRef,
    oci_url: Option<String>,
    source_interval: String,
    source_url: String,
    repository: String,
    requests: BTreeMap<&'static str, Quantity>,
    limits: BTreeMap<&'static str, Quantity>,
    gpu_count: u32,
    gpu_class: Option<String>,
    autoscaling: bool,
    priority_class: Option<String>,
    ports: Vec<Port>,
    update: Option<super::tagpolicy::UpdateFields>,
}

struct Catalog<'a> {
    file: &'a SourceFile,
    services: BTreeMap<String, CatalogService>,
    /// Declared but invalid: environments naming them get no second, misleading error.
    rejected: BTreeSet<String>,
    spec: &'a raw::CatalogSpec,
    /// The raw entries of valid services, for values, settings and origins.
    raw_services: BTreeMap<&'a str, (&'a Spanned<String>, &'a raw::Service)>,
    addons: BTreeMap<String, CatalogAddOn<'a>>,
}

struct CatalogAddOn<'a> {
    raw: &'a raw::AddOn,
    chart: ChartRef,
    oci_url: Option<String>,
    source_interval: String,
    source_url: String,
}

/// Helm limits release names (and so service names) to 53 characters.
const MAX_SERVICE_NAME: usize = 53;
/// `releases/kustomization.yaml` is kairo's own file.
const RESERVED_SERVICE_NAMES: [&str; 1] = ["kustomization"];

enum Parsed {
    Catalog(Arc<(raw::Metadata, raw::CatalogSpec)>),
    Environment(raw::Metadata, Box<raw::EnvironmentSpec>),
    /// An environment this run does not resolve, known by its head only.
    Elsewhere {
        name: Spanned<String>,
        cluster: Spanned<String>,
        namespace: Spanned<String>,
    },
    Invalid,
}

/// The head of an environment not in `only`, when its file is plainly one; `None` means the
/// file must be parsed in full (a catalog, an environment in `only`, or anything unusual).
fn parse_head(file: &SourceFile, only: &[String]) -> Option<Parsed> {
    let text = raw::head_prefix(&file.text)?;
    let head: raw::Head = yaml::from_str(text).ok()?;
    let spec = head.spec?;
    let name = head.metadata?.name;
    let plain = head.api_version.as_deref() == Some(API_VERSION)
        && head.kind.as_deref() == Some(KIND_ENVIRONMENT)
        && !only.contains(&name.value);
    plain.then_some(())?;
    Some(Parsed::Elsewhere {
        name,
        cluster: spec.cluster?,
        namespace: spec.namespace?,
    })
}

/// The last catalog parsed without a diagnostic, by its path and exact text. One run often
/// loads the same catalog twice (a bump loads the model before and after its edit; the daemon
/// once per scan), and it is the largest input file. The parse is a pure function of the
/// text, so a hit is exactly what parsing again would give.
pub(super) mod memo {
    use std::sync::{Arc, Mutex};

    use super::{SourceFile, raw};

    type Catalog = Arc<(raw::Metadata, raw::CatalogSpec)>;

    static LAST: Mutex<Option<(String, String, Catalog)>> = Mutex::new(None);

    pub(super) fn get(file: &SourceFile) -> Option<Catalog> {
        let last = LAST.lock().ok()?;
        let (path, text, catalog) = last.as_ref()?;
        (*path == file.path && *text == file.text).then(|| catalog.clone())
    }

    pub(in crate::model) fn clear() {
        if let Ok(mut last) = LAST.lock() {
            *last = None;
        }
    }

    pub(super) fn put(file: &SourceFile, catalog: &Catalog) {
        if let Ok(mut last) = LAST.lock() {
            *last = Some((file.path.clone(), file.text.clone(), catalog.clone()));
        }
    }
}

/// An environment as the cross-environment checks see it.
struct EnvEntry<'a> {
    file: &'a SourceFile,
    name: &'a Spanned<String>,
    cluster: &'a Spanned<String>,
    namespace: &'a Spanned<String>,
    /// `None` for an environment known by its head only.
    spec: Option<&'a raw::EnvironmentSpec>,
}

/// Reads one file; its `kind` selects the schema of `spec`.
fn parse_file(file: &SourceFile, out: &mut Vec<Diagnostic>) -> Parsed {
    let mut d = Diags { file, out };
    let top = Pos { line: 1, column: 1 };
    let parsed: raw::File = match yaml::from_str(&file.text) {
        Ok(f) => f,
        Err(e) => {
            d.yaml(e);
            return Parsed::Invalid;
        }
    };
    match &parsed.api_version {
        None => {
            d.error(top, "missing `apiVersion`").hint =
                Some(format!("start the file with `apiVersion: {API_VERSION}`"));
            return Parsed::Invalid;
        }
        Some(v) if v.value != API_VERSION => {
            d.error(pos(v), format!("unsupported apiVersion `{}`", v.value))
                .hint = Some(format!("this version of kairo reads `{API_VERSION}`"));
            return Parsed::Invalid;
        }
        Some(_) => {}
    }
    let kinds = [KIND_CATALOG, KIND_ENVIRONMENT];
    let kind = match &parsed.kind {
        Some(k) if kinds.contains(&k.value.as_str()) => k.value.as_str(),
        Some(k) => {
            let mut hint = String::new();
            if let Some(best) = did_you_mean(&k.value, kinds) {
                hint = format!("did you mean `{best}`? ");
            }
            hint.push_str(&format!("kinds: {}", backticked(kinds)));
            d.error(pos(k), format!("unknown kind `{}`", k.value)).hint = Some(hint);
            return Parsed::Invalid;
        }
        None => {
            d.error(top, "missing `kind`").hint = Some(format!("kinds: {}", backticked(kinds)));
            return Parsed::Invalid;
        }
    };
    let Some(metadata) = parsed.metadata else {
        d.error(top, "missing `metadata`").hint = Some("add `metadata: {name: ...}`".into());
        return Parsed::Invalid;
    };
    match parsed.spec {
        Some(raw::AnySpec::Catalog(spec)) => Parsed::Catalog(Arc::new((metadata, *spec))),
        Some(raw::AnySpec::Environment(spec)) => Parsed::Environment(metadata, spec),
        Some(raw::AnySpec::Skipped) => {
            // `spec` came before `kind`: read the file again with the schema now known.
            let result = match kind {
                KIND_CATALOG => yaml::from_str::<raw::Document<raw::CatalogSpec>>(&file.text)
                    .map(|doc| Parsed::Catalog(Arc::new((doc.metadata, doc.spec)))),
                _ => yaml::from_str::<raw::Document<raw::EnvironmentSpec>>(&file.text)
                    .map(|doc| Parsed::Environment(doc.metadata, Box::new(doc.spec))),
            };
            result.unwrap_or_else(|e| {
                d.yaml(e);
                Parsed::Invalid
            })
        }
        None => {
            d.error(top, "missing `spec`").hint =
                Some(format!("a `{kind}` file describes itself under `spec:`"));
            Parsed::Invalid
        }
    }
}

/// Resolves the environments named in `only` (all when empty). Every file is still parsed and
/// every cross-environment rule (unique names, placements) still checked; only the per-service
/// resolution of the others is skipped, which is most of a load's work.
pub(super) fn resolve(files: &[SourceFile], only: &[String]) -> Result<Model, ModelError> {
    let mut out = Vec::new();
    let mut catalogs = Vec::new();
    let mut envs = Vec::new();
    let parsed = crate::par::map(files, |file| {
        let mut diags = Vec::new();
        if !only.is_empty()
            && let Some(head) = parse_head(file, only)
        {
            return (head, diags);
        }
        if let Some(catalog) = memo::get(file) {
            return (Parsed::Catalog(catalog), diags);
        }
        let parsed = parse_file(file, &mut diags);
        if let (Parsed::Catalog(catalog), true) = (&parsed, diags.is_empty()) {
            memo::put(file, catalog);
        }
        (parsed, diags)
    });
    for (file, (doc, diags)) in files.iter().zip(&parsed) {
        out.extend(diags.iter().cloned());
        match doc {
            Parsed::Catalog(catalog) => catalogs.push((file, &catalog.0, &catalog.1)),
            Parsed::Environment(metadata, spec) => envs.push(EnvEntry {
                file,
                name: &metadata.name,
                cluster: &spec.cluster,
                namespace: &spec.namespace,
                spec: Some(spec),
            }),
            Parsed::Elsewhere {
                name,
                cluster,
                namespace,
            } => envs.push(EnvEntry {
                file,
                name,
                cluster,
                namespace,
                spec: None,
            }),
            Parsed::Invalid => {}
        }
    }

    let catalog = match catalogs.as_slice() {
        [] => {
            if out.is_empty() {
                out.push(Diagnostic {
                    severity: Severity::Error,
                    file: super::ENVIRONMENTS_DIR.to_string(),
                    line: 0,
                    column: 0,
                    message: "no `ServiceCatalog` found".into(),
                    hint: Some(
                        "describe the services once in a file with `kind: ServiceCatalog`".into(),
                    ),
                    snippet: None,
                });
            }
            None
        }
        [(file, _, spec), rest @ ..] => {
            for (other, metadata, _) in rest {
                Diags {
                    file: other,
                    out: &mut out,
                }
                .error(pos(&metadata.name), "a second `ServiceCatalog`")
                .hint = Some(format!("services are already defined in `{}`", file.path));
            }
            Some(resolve_catalog(file, spec, &mut out))
        }
    };

    let mut seen: BTreeMap<String, &str> = BTreeMap::new();
    let mut unique = Vec::new();
    for entry in envs {
        let mut d = Diags {
            file: entry.file,
            out: &mut out,
        };
        let name = entry.name;
        if !d.label("environment name", name) {
            continue;
        }
        if let Some(first) = seen.insert(name.value.clone(), &entry.file.path) {
            d.error(
                pos(name),
                format!("environment `{}` is defined twice", name.value),
            )
            .hint = Some(format!("it is also defined in `{first}`"));
            continue;
        }
        unique.push(entry);
    }
    // Two environments in one cluster and namespace would render (and Flux would apply) the
    // same objects twice, with different contents.
    let mut placements: BTreeMap<(&str, &str), (&SourceFile, &Spanned<String>)> = BTreeMap::new();
    for e in &unique {
        let (file, name) = (e.file, e.name);
        let key = (e.cluster.value.as_str(), e.namespace.value.as_str());
        let Some((other_file, other)) = placements.insert(key, (file, name)) else {
            continue;
        };
        let (first, (later_file, later)) = if other.value < name.value {
            ((other_file, other), (file, name))
        } else {
            ((file, name), (other_file, other))
        };
        Diags {
            file: later_file,
            out: &mut out,
        }
        .error(
            pos(later),
            format!(
                "environments `{}` and `{}` both render into cluster `{}`, namespace `{}`",
                first.1.value, later.value, key.0, key.1
            ),
        )
        .hint = Some(format!(
            "`{}` is defined in `{}`; give each environment its own cluster or namespace, or remove the copy",
            first.1.value, first.0.path
        ));
    }
    let defined: Vec<String> = {
        let mut names: Vec<String> = unique.iter().map(|e| e.name.value.clone()).collect();
        names.sort();
        names
    };
    let unique: Vec<(&SourceFile, &Spanned<String>, &raw::EnvironmentSpec)> = unique
        .iter()
        .filter(|e| only.is_empty() || only.contains(&e.name.value))
        .filter_map(|e| Some((e.file, e.name, e.spec?)))
        .collect();
    // Environments are independent once the catalog is known.
    let resolved = crate::par::map(&unique, |(file, name, spec)| {
        let mut diags = Vec::new();
        let env = resolve_environment(file, &name.value, spec, catalog.as_ref(), &mut diags);
        (env, diags)
    });
    let mut environments = Vec::new();
    for (env, diags) in resolved {
        out.extend(diags);
        environments.extend(env);
    }
    environments.sort_by(|a, b| a.name.cmp(&b.name));

    // Problems read top to bottom, file by file.
    out.sort_by(|a, b| (&a.file, a.line, a.column).cmp(&(&b.file, b.line, b.column)));
    if out.iter().any(|d| d.severity == Severity::Error) {
        return Err(ModelError::Invalid(out));
    }
    Ok(Model {
        environments,
        defined,
        catalog_file: catalog.map(|c| c.file.path.clone()).unwrap_or_default(),
        warnings: out,
    })
}

fn parse_quantities(
    d: &mut Diags,
    list: Option<&raw::ResourceList>,
) -> BTreeMap<&'static str, Quantity> {
    let mut map = BTreeMap::new();
    let Some(list) = list else { return map };
    for (key, value) in [
        ("cpu", &list.cpu),
        ("memory", &list.memory),
        ("ephemeral-storage", &list.ephemeral_storage),
    ] {
        if let Some(v) = value {
            match Quantity::parse(&v.value.0) {
                Ok(q) => {
                    map.insert(key, q);
                }
                Err(e) => {
                    d.error(pos(v), format!("invalid {key} quantity: {e}")).hint = Some(
                        "write a Kubernetes quantity such as `500m`, `2`, `512Mi` or `4Gi`".into(),
                    );
                }
            }
        }
    }
    map
}

fn granularity(resource: &str) -> Granularity {
    if resource == "cpu" {
        Granularity::Milli
    } else {
        Granularity::Unit
    }
}

fn resolve_catalog<'a>(
    file: &'a SourceFile,
    spec: &'a raw::CatalogSpec,
    out: &mut Vec<Diagnostic>,
) -> Catalog<'a> {
    let mut d = Diags { file, out };
    let mut sources = BTreeMap::new();
    for (name, source) in &spec.sources.0 {
        if d.label("source name", name) {
            sources.insert(name.value.clone(), source);
        }
        if let Some(interval) = &source.interval
            && !is_flux_duration(&interval.value)
        {
            d.error(
                pos(interval),
                format!(
                    "interval `{}` is not a duration Flux accepts",
                    interval.value
                ),
            )
            .hint = Some(
                "use Go duration units `h`, `m`, `s` or `ms`, such as `1h`, `10m` or `1h30m`"
                    .into(),
            );
        }
        let url = &source.url.value;
        let scheme_ok = match source.kind {
            SourceKind::Helm => url.starts_with("https://") || url.starts_with("http://"),
            SourceKind::Oci => url.starts_with("oci://"),
        };
        if !scheme_ok {
            let want = match source.kind {
                SourceKind::Helm => "`https://`",
                SourceKind::Oci => "`oci://`",
            };
            d.error(
                pos(&source.url),
                format!("source url `{url}` must start with {want}"),
            );
        }
    }
    let mut services = BTreeMap::new();
    let mut rejected = BTreeSet::new();
    // Source object name -> the service (or `source:<name>`) that defines it.
    let mut source_objects: BTreeMap<String, String> = sources
        .keys()
        .map(|k| (k.clone(), format!("source `{k}`")))
        .collect();
    for (name, svc) in &spec.services.0 {
        let mut valid_name = d.label("service name", name);
        if valid_name && name.value.len() > MAX_SERVICE_NAME {
            d.error(
                pos(name),
                format!("service name `{}` is {} characters long; Helm release names are limited to {MAX_SERVICE_NAME}", name.value, name.value.len()),
            );
            valid_name = false;
        }
        if RESERVED_SERVICE_NAMES.contains(&name.value.as_str()) {
            d.error(
                pos(name),
                format!(
                    "`{}` is reserved for kairo's own files; choose another service name",
                    name.value
                ),
            );
            valid_name = false;
        }
        let chart_name = svc.chart.name.as_ref().unwrap_or(name);
        if let Some(explicit) = &svc.chart.name {
            d.label("chart name", explicit);
        }
        if svc.chart.version.value.trim().is_empty() {
            d.error(pos(&svc.chart.version), "chart version must not be empty")
                .hint = Some("use a semver range such as `>=1.0.0` or an exact version".into());
        }
        let source = sources.get(&svc.chart.source.value).copied();
        if source.is_none() {
            let src = &svc.chart.source;
            let mut hint = match did_you_mean(&src.value, sources.keys().map(String::as_str)) {
                Some(best) => format!("did you mean `{best}`? "),
                None => String::new(),
            };
            hint.push_str(&format!("defined sources: {}", backticked(sources.keys())));
            d.error(
                pos(src),
                format!(
                    "service `{}` uses undefined source `{}`",
                    name.value, src.value
                ),
            )
            .hint = Some(hint);
        }
        let repo = &svc.image.repository;
        if let Some(problem) = repository_problem(&repo.value) {
            d.error(pos(repo), format!("image repository `{}` {problem}", repo.value)).hint =
                Some("write the repository only, such as `ghcr.io/kai/api-server`; tags are set per environment".into());
        }
        let requests = parse_quantities(&mut d, svc.resources.requests.as_ref());
        let limits = parse_quantities(&mut d, svc.resources.limits.as_ref());
        check_limits(
            &mut d,
            &requests,
            &limits,
            Pos::default(),
            &name.value,
            None,
            &svc.resources,
        );
        let mut ports = Vec::new();
        for p in &svc.ports {
            if let Some(problem) = port_name_problem(&p.name.value) {
                d.error(pos(&p.name), format!("port name `{}` {problem}", p.name.value)).hint =
                    Some("Kubernetes port names are up to 15 lowercase letters, digits and `-`, with a letter, such as `http` or `grpc-web`".into());
            }
            if p.port.value == 0 {
                d.error(pos(&p.port), "port must be between 1 and 65535");
            }
            ports.push(Port {
                name: p.name.value.clone(),
                port: p.port.value,
            });
        }
        if let Some(pc) = &svc.priority_class {
            d.subdomain("priority class", pc);
        }
        let layer = Layer {
            file,
            how: "catalog",
            values: svc.values.as_ref(),
            values_from: &svc.values_from,
            release: svc.release.as_ref(),
        };
        rel::check_layer(&layer, true, !svc.ports.is_empty(), d.out);
        let update = svc.update.as_ref().map(|u| check_update(&mut d, u));
        let (Some(source), true) = (source, valid_name) else {
            rejected.insert(name.value.clone());
            continue;
        };
        let chart_name = chart_name.value.clone();
        let (source_kind, source_name, oci_url) = match source.kind {
            SourceKind::Helm => ("HelmRepository", svc.chart.source.value.clone(), None),
            SourceKind::Oci => (
                "OCIRepository",
                // One OCIRepository per service: its `ref.semver` is the service's version range,
                // so two services sharing a chart must not share the object.
                format!("{}-{}", svc.chart.source.value, name.value),
                Some(format!(
                    "{}/{}",
                    source.url.value.trim_end_matches('/'),
                    chart_name
                )),
            ),
        };
        // Source objects share one directory and namespace: their names must not collide.
        if source.kind == SourceKind::Oci
            && let Some(first) =
                source_objects.insert(source_name.clone(), format!("service `{}`", name.value))
        {
            d.error(
                pos(name),
                format!("service `{}` needs the source object `{source_name}`, which {first} already defines", name.value),
            )
            .hint = Some("rename the service or the source".into());
            rejected.insert(name.value.clone());
            continue;
        }
        services.insert(
            name.value.clone(),
            CatalogService {
                name: name.value.clone(),
                chart: ChartRef {
                    name: chart_name,
                    version: svc.chart.version.value.clone(),
                    source_kind,
                    source_name,
                },
                oci_url,
                source_interval: source
                    .interval
                    .as_ref()
                    .map_or(DEFAULT_SOURCE_INTERVAL.to_string(), |i| i.value.clone()),
                source_url: source.url.value.clone(),
                repository: repo.value.clone(),
                requests,
                limits,
                gpu_count: svc.gpu.as_ref().map_or(0, |g| g.count.value),
                gpu_class: svc
                    .gpu
                    .as_ref()
                    .and_then(|g| g.class.as_ref())
                    .map(|c| c.value.clone()),
                autoscaling: svc.autoscaling.0,
                priority_class: svc.priority_class.as_ref().map(|p| p.value.clone()),
                ports,
                update,
            },
        );
    }
    rel::check_layer(
        &Layer::settings(file, "catalog defaults", spec.release.as_ref()),
        false,
        false,
        d.out,
    );
    let raw_services = spec
        .services
        .0
        .iter()
        .filter(|(n, _)| services.contains_key(&n.value))
        .map(|(n, s)| (n.value.as_str(), (n, s)))
        .collect();
    let addons = resolve_addons(&mut d, spec, &sources, &mut source_objects, &services);
    Catalog {
        file,
        services,
        rejected,
        spec,
        raw_services,
        addons,
    }
}

/// The catalog's add-ons: third-party charts with their own source and namespace.
fn resolve_addons<'a>(
    d: &mut Diags,
    spec: &'a raw::CatalogSpec,
    sources: &BTreeMap<String, &raw::Source>,
    source_objects: &mut BTreeMap<String, String>,
    services: &BTreeMap<String, CatalogService>,
) -> BTreeMap<String, CatalogAddOn<'a>> {
    let mut addons = BTreeMap::new();
    for (name, addon) in &spec.addons.0 {
        let mut valid = d.label("add-on name", name);
        if valid && name.value.len() > MAX_SERVICE_NAME {
            d.error(
                pos(name),
                format!("add-on name `{}` is {} characters long; Helm release names are limited to {MAX_SERVICE_NAME}", name.value, name.value.len()),
            );
            valid = false;
        }
        if RESERVED_SERVICE_NAMES.contains(&name.value.as_str())
            || services.contains_key(&name.value)
            || addons.contains_key(&name.value)
        {
            d.error(
                pos(name),
                format!("add-on name `{}` is already taken", name.value),
            )
            .hint =
                Some("services and add-ons share `releases/`: each name may be used once".into());
            valid = false;
        }
        d.label("add-on namespace", &addon.namespace);
        let chart_name = addon.chart.name.as_ref().unwrap_or(name);
        if let Some(explicit) = &addon.chart.name {
            d.label("chart name", explicit);
        }
        if addon.chart.version.value.trim().is_empty() {
            d.error(pos(&addon.chart.version), "chart version must not be empty")
                .hint = Some("use the chart's version or a range such as `1.11.x`".into());
        }
        rel::check_layer(
            &Layer {
                file: d.file,
                how: "catalog",
                values: addon.values.as_ref(),
                values_from: &addon.values_from,
                release: addon.release.as_ref(),
            },
            false,
            false,
            d.out,
        );
        let src = &addon.chart.source;
        let Some(source) = sources.get(&src.value).copied() else {
            let mut hint = match did_you_mean(&src.value, sources.keys().map(String::as_str)) {
                Some(best) => format!("did you mean `{best}`? "),
                None => String::new(),
            };
            hint.push_str(&format!("defined sources: {}", backticked(sources.keys())));
            d.error(
                pos(src),
                format!(
                    "add-on `{}` uses undefined source `{}`",
                    name.value, src.value
                ),
            )
            .hint = Some(hint);
            continue;
        };
        if !valid {
            continue;
        }
        let (source_kind, source_name, oci_url) = match source.kind {
            SourceKind::Helm => ("HelmRepository", src.value.clone(), None),
            SourceKind::Oci => (
                "OCIRepository",
                format!("{}-{}", src.value, name.value),
                Some(format!(
                    "{}/{}",
                    source.url.value.trim_end_matches('/'),
                    chart_name.value
                )),
            ),
        };
        if source.kind == SourceKind::Oci
            && let Some(first) =
                source_objects.insert(source_name.clone(), format!("add-on `{}`", name.value))
        {
            d.error(
                pos(name),
                format!("add-on `{}` needs the source object `{source_name}`, which {first} already defines", name.value),
            )
            .hint = Some("rename the add-on or the source".into());
            continue;
        }
        addons.insert(
            name.value.clone(),
            CatalogAddOn {
                raw: addon,
                chart: ChartRef {
                    name: chart_name.value.clone(),
                    version: addon.chart.version.value.clone(),
                    source_kind,
                    source_name,
                },
                oci_url,
                source_interval: source
                    .interval
                    .as_ref()
                    .map_or(DEFAULT_SOURCE_INTERVAL.to_string(), |i| i.value.clone()),
                source_url: source.url.value.clone(),
            },
        );
    }
    addons
}

/// Validates an `update:` block, reporting its problems in this file.
fn check_update(
    d: &mut Diags,
    raw: &super::tagpolicy::RawUpdate,
) -> super::tagpolicy::UpdateFields {
    let mut problems = Vec::new();
    let fields = super::tagpolicy::check(raw, &mut problems);
    for p in problems {
        d.error(p.at, p.message).hint = p.hint;
    }
    fields
}

/// Flux's interval pattern: `^([0-9]+(\.[0-9]+)?(ms|s|m|h))+$`.
pub(super) fn is_flux_duration(s: &str) -> bool {
    let mut rest = s;
    if rest.is_empty() {
        return false;
    }
    while !rest.is_empty() {
        let int = rest.bytes().take_while(u8::is_ascii_digit).count();
        if int == 0 {
            return false;
        }
        rest = &rest[int..];
        if let Some(after) = rest.strip_prefix('.') {
            let frac = after.bytes().take_while(u8::is_ascii_digit).count();
            if frac == 0 {
                return false;
            }
            rest = &after[frac..];
        }
        rest = match ["ms", "s", "m", "h"]
            .iter()
            .find_map(|u| rest.strip_prefix(u))
        {
            Some(r) => r,
            None => return false,
        };
    }
    true
}

/// The reason `s` is not an image repository without tag or digest.
fn repository_problem(s: &str) -> Option<&'static str> {
    if s.is_empty() {
        return Some("must not be empty");
    }
    if s.contains('@') {
        return Some("must not contain a digest");
    }
    let last = s.rsplit('/').next().unwrap_or(s);
    if last.contains(':') {
        return Some("must not contain a tag");
    }
    // The first component may be a registry host (with port, any case); the path is lowercase.
    let path = match s.split_once('/') {
        Some((host, rest)) if host.contains(['.', ':']) || host == "localhost" => rest,
        _ => s,
    };
    if !path.bytes().all(|b| {
        b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'/' | b'.' | b'_' | b'-')
    }) {
        return Some("must be lowercase letters, digits, `/`, `.`, `_` and `-`");
    }
    None
}

fn check_limits(
    d: &mut Diags,
    requests: &BTreeMap<&'static str, Quantity>,
    limits: &BTreeMap<&'static str, Quantity>,
    at: Pos,
    service: &str,
    env: Option<&str>,
    raw: &raw::Resources,
) {
    for (key, request) in requests {
        if let Some(limit) = limits.get(key)
            && request > limit
        {
            let where_ = env.map_or(String::new(), |e| format!(" in environment `{e}`"));
            let at = raw
                .requests
                .as_ref()
                .and_then(|r| match *key {
                    "cpu" => r.cpu.as_ref().map(pos),
                    "memory" => r.memory.as_ref().map(pos),
                    _ => r.ephemeral_storage.as_ref().map(pos),
                })
                .unwrap_or(at);
            d.error(
                    at,
                    format!("service `{service}`{where_}: {key} request {request} is greater than its limit {limit}"),
                )
                .hint = Some("Kubernetes rejects a container whose request exceeds its limit".into());
        }
    }
}

struct PoolInfo<'a> {
    raw: &'a raw::Pool,
    gpu_class: Option<&'a str>,
    gpus_per_node: u32,
}

fn resolve_environment(
    file: &SourceFile,
    name: &str,
    spec: &raw::EnvironmentSpec,
    catalog: Option<&Catalog>,
    out: &mut Vec<Diagnostic>,
) -> Option<Environment> {
    let errors_before = out.iter().filter(|d| d.severity == Severity::Error).count();
    let mut d = Diags { file, out };
    d.label("namespace", &spec.namespace);
    d.label("cluster name", &spec.cluster);
    let branch = &spec.branch;
    if branch.value.is_empty()
        || branch.value.contains("..")
        || branch.value.starts_with(['/', '-'])
        || branch.value.ends_with(['/', '.'])
        || branch
            .value
            .chars()
            .any(|c| c.is_whitespace() || c.is_control() || "~^:?*[\\".contains(c))
    {
        d.error(
            pos(branch),
            format!("`{}` is not a valid git branch name", branch.value),
        );
    }
    let multiplier = match &spec.resource_multiplier {
        None => Decimal::ONE,
        Some(m) => match Decimal::parse(&m.value.0) {
            Ok(v) => v,
            Err(e) => {
                d.error(pos(m), format!("invalid resource multiplier: {e}"))
                    .hint = Some("write a positive decimal such as `1`, `2` or `1.5`".into());
                Decimal::ONE
            }
        },
    };

    let mut pools: BTreeMap<&str, PoolInfo> = BTreeMap::new();
    for (pool_name, pool) in &spec.node_pools.0 {
        d.label("node pool name", pool_name);
        let labels = pool.labels.0.iter().map(|(k, v)| ("label", k, Some(v)));
        let taints = pool
            .taints
            .iter()
            .map(|t| ("taint", &t.key, t.value.as_ref()));
        for (what, key, value) in labels.chain(taints) {
            // Reported where the bad text is: the key, or else the value.
            let problem = label_key_problem(&key.value)
                .map(|p| (pos(key), format!("key `{}` {p}", key.value)))
                .or_else(|| {
                    value.and_then(|v| {
                        label_value_problem(&v.value)
                            .map(|p| (pos(v), format!("value `{}` {p}", v.value)))
                    })
                });
            if let Some((at, problem)) = problem {
                d.error(
                    at,
                    format!("node pool `{}`: {what} {problem}", pool_name.value),
                )
                .hint = Some("Kubernetes label and taint keys look like `node-type` or `nvidia.com/gpu`; values are up to 63 letters, digits, `-`, `_` and `.`".into());
            }
        }
        if let Some(gpu) = &pool.gpu
            && gpu.count.value == 0
        {
            d.error(
                pos(&gpu.count),
                "a GPU pool needs at least one GPU per node",
            );
        }
        pools.insert(
            &pool_name.value,
            PoolInfo {
                raw: pool,
                gpu_class: pool.gpu.as_ref().map(|g| g.class.value.as_str()),
                gpus_per_node: pool.gpu.as_ref().map_or(0, |g| g.count.value),
            },
        );
    }
    let pool_list = || backticked(pools.keys());
    let check_pool_ref = |d: &mut Diags, r: &Spanned<String>| -> bool {
        if pools.contains_key(r.value.as_str()) {
            return true;
        }
        let mut hint = match did_you_mean(&r.value, pools.keys().copied()) {
            Some(best) => format!("did you mean `{best}`? "),
            None => String::new(),
        };
        hint.push_str(&format!(
            "node pools in environment `{name}`: {}",
            pool_list()
        ));
        d.error(pos(r), format!("undefined node pool `{}`", r.value))
            .hint = Some(hint);
        false
    };

    let defaults = &spec.defaults;
    if let Some(p) = &defaults.pool {
        check_pool_ref(&mut d, p);
    }
    if let Some(pc) = &defaults.priority_class {
        d.subdomain("priority class", pc);
    }
    let default_hpa_min = defaults.hpa.min_replicas.as_ref().map_or(1, |v| v.value);
    let default_hpa_max = defaults
        .hpa
        .max_replicas
        .as_ref()
        .map_or(default_hpa_min, |v| v.value);
    let default_target = defaults.hpa.target_cpu.as_ref().map_or(80, |v| v.value);
    // The defaults are checked once, here; a service is checked only for what it overrides.
    let hpa_at = |v: Option<&Spanned<u32>>| v.map_or(Pos::default(), pos);
    if default_hpa_min > default_hpa_max {
        d.error(
            hpa_at(defaults.hpa.min_replicas.as_ref()),
            format!("environment `{name}`: default HPA minReplicas {default_hpa_min} is greater than maxReplicas {default_hpa_max}"),
        )
        .hint = Some("lower `defaults.hpa.minReplicas` or raise `maxReplicas`".into());
    }
    if default_hpa_min == 0 {
        d.error(
            hpa_at(defaults.hpa.min_replicas.as_ref()),
            format!("environment `{name}`: default HPA minReplicas must be at least 1"),
        );
    }
    if !(1..=100).contains(&default_target) {
        d.error(
            hpa_at(defaults.hpa.target_cpu.as_ref()),
            format!("environment `{name}`: default targetCPUUtilizationPercentage must be 1-100"),
        );
    }
    // A multiplier too large for a quantity is reported once, at the multiplier.
    let mut multiplier_reported = false;
    let default_pdb = defaults.pdb.min_available.as_ref().map_or(0, |v| v.value);
    let defaults_layer = Layer {
        file,
        how: "environment defaults",
        values: defaults.values.as_ref(),
        values_from: &defaults.values_from,
        release: defaults.release.as_ref(),
    };
    rel::check_layer(&defaults_layer, true, false, d.out);
    let mut edges: Vec<rel::Edge> = Vec::new();

    let mut releases = Vec::new();
    let mut helm_repos: BTreeMap<String, HelmRepository> = BTreeMap::new();
    let mut oci_repos: BTreeMap<String, OciRepository> = BTreeMap::new();
    let mut pdb_skipped = Vec::new();
    for (svc_name, over) in &spec.services.0 {
        if let Some(p) = &over.pool {
            check_pool_ref(&mut d, p);
        }
        if let Some(pc) = &over.priority_class {
            d.subdomain("priority class", pc);
        }
        if let Some(image) = &over.image {
            if let Some(problem) = oci_tag_problem(&image.tag.value) {
                d.error(pos(&image.tag), format!("image tag `{}` {problem}", image.tag.value)).hint =
                    Some("an OCI tag is up to 128 letters, digits, `_`, `.` and `-`, not starting with `.` or `-`".into());
            }
            if let Some(digest) = &image.digest
                && let Some(problem) = digest_problem(&digest.value)
            {
                d.error(
                    pos(digest),
                    format!("image digest `{}` {problem}", digest.value),
                );
            }
        }
        let env_layer = Layer {
            file,
            how: "environment",
            values: over.values.as_ref(),
            values_from: &over.values_from,
            release: over.release.as_ref(),
        };
        let has_ports = catalog
            .and_then(|c| c.raw_services.get(svc_name.value.as_str()))
            .is_some_and(|(_, s)| !s.ports.is_empty());
        rel::check_layer(&env_layer, true, has_ports, d.out);
        if let Some(v) = over.chart.as_ref().map(|c| &c.version)
            && v.value.trim().is_empty()
        {
            d.error(pos(v), "chart version must not be empty");
        }
        let update_override = over.update.as_ref().map(|u| check_update(&mut d, u));
        // Without a valid catalog, only what this file says on its own can be checked.
        let Some(catalog) = catalog else { continue };
        if catalog.rejected.contains(&svc_name.value) {
            continue; // already reported where it is declared
        }
        let Some(svc) = catalog.services.get(&svc_name.value) else {
            let mut hint =
                match did_you_mean(&svc_name.value, catalog.services.keys().map(String::as_str)) {
                    Some(best) => format!("did you mean `{best}`? "),
                    None => String::new(),
                };
            hint.push_str(&format!("services are defined in `{}`", catalog.file.path));
            d.error(
                pos(svc_name),
                format!("undefined service `{}`", svc_name.value),
            )
            .hint = Some(hint);
            continue;
        };
        if over.enabled == Some(Bool(false)) {
            continue;
        }
        let Some(image) = &over.image else {
            d.error(
                pos(svc_name),
                format!(
                    "service `{}` has no image tag in environment `{name}`",
                    svc.name
                ),
            )
            .hint = Some(
                "add `image: {tag: ...}`, or `enabled: false` to leave the service out".into(),
            );
            continue;
        };

        // Resources: base x multiplier, then explicit per-environment values as written.
        let mut resources = Resources::default();
        for (base, target) in [
            (&svc.requests, &mut resources.requests),
            (&svc.limits, &mut resources.limits),
        ] {
            for (key, q) in base {
                // At 1x the values stay exactly as written (no rounding).
                let scaled = if multiplier == Decimal::ONE {
                    Ok(*q)
                } else {
                    q.mul(multiplier, granularity(key))
                };
                match scaled {
                    Ok(v) => {
                        target.insert(key.to_string(), QuantityValue(v));
                    }
                    Err(e) => match &spec.resource_multiplier {
                        Some(m) if !multiplier_reported => {
                            multiplier_reported = true;
                            d.error(
                                pos(m),
                                format!("resource multiplier `{}` makes service `{}`'s {key} too large: {e}", m.value.0, svc.name),
                            )
                            .hint = Some("use a multiplier that keeps quantities within Kubernetes' range, such as `2` or `0.5`".into());
                        }
                        Some(_) => {}
                        None => {
                            d.error(pos(svc_name), format!("service `{}`: {e}", svc.name));
                        }
                    },
                }
            }
        }
        if let Some(r) = &over.resources {
            let requests = parse_quantities(&mut d, r.requests.as_ref());
            let limits = parse_quantities(&mut d, r.limits.as_ref());
            for (k, q) in requests {
                resources.requests.insert(k.to_string(), QuantityValue(q));
            }
            for (k, q) in limits {
                resources.limits.insert(k.to_string(), QuantityValue(q));
            }
            let req: BTreeMap<&'static str, Quantity> = ["cpu", "memory", "ephemeral-storage"]
                .into_iter()
                .filter_map(|k| resources.requests.get(k).map(|q| (k, q.0)))
                .collect();
            let lim: BTreeMap<&'static str, Quantity> = ["cpu", "memory", "ephemeral-storage"]
                .into_iter()
                .filter_map(|k| resources.limits.get(k).map(|q| (k, q.0)))
                .collect();
            check_limits(&mut d, &req, &lim, pos(svc_name), &svc.name, Some(name), r);
        }

        // GPU and placement.
        let gpu = over.gpu.as_ref().map_or(svc.gpu_count, |g| g.count.value);
        let explicit_pool = over.pool.as_ref().or(if gpu > 0 {
            None
        } else {
            defaults.pool.as_ref()
        });
        let mut pool_name = explicit_pool.map(|p| p.value.clone());
        if gpu > 0 {
            let class = svc.gpu_class.as_deref();
            // A pod's GPUs all come from one node.
            let fits = |p: &PoolInfo| {
                p.gpus_per_node >= gpu
                    && match (p.gpu_class, class) {
                        (Some(have), Some(want)) => have == want,
                        (Some(_), None) => true,
                        (None, _) => false,
                    }
            };
            let want = match class {
                Some(c) => format!("{gpu} GPU(s) of class `{c}` on one node"),
                None => format!("{gpu} GPU(s) on one node"),
            };
            match explicit_pool {
                Some(p) => {
                    if let Some(info) = pools.get(p.value.as_str())
                        && !fits(info)
                    {
                        d.error(
                                pos(p),
                                format!(
                                    "service `{}` needs {want} but node pool `{}` in environment `{name}` has {}",
                                    svc.name,
                                    p.value,
                                    info.gpu_class.map_or("no GPUs".to_string(), |c| format!("{} `{c}` GPU(s) per node", info.gpus_per_node))
                                ),
                            );
                    }
                }
                None => match pools.iter().find(|(_, p)| fits(p)) {
                    Some((n, _)) => pool_name = Some(n.to_string()),
                    None => {
                        d.error(
                            pos(svc_name),
                            format!(
                                "service `{}` needs {want} but environment `{name}` has no node pool that provides them",
                                svc.name
                            ),
                        )
                        .hint = Some(format!(
                            "add a node pool with `gpu: {{class: {}, count: ...}}`, set `gpu: {{count: 0}}` for this service, or `enabled: false` (pools here: {})",
                            class.unwrap_or("..."),
                            if pools.is_empty() { "none".to_string() } else { pool_list() }
                        ));
                    }
                },
            }
            resources.limits.insert(
                "nvidia.com/gpu".into(),
                QuantityValue(Quantity::parse(&gpu.to_string()).expect("integer")),
            );
        }
        let mut node_selector = BTreeMap::new();
        let mut tolerations = Vec::new();
        if let Some(info) = pool_name.as_deref().and_then(|p| pools.get(p)) {
            node_selector = (info.raw.labels.0.iter())
                .map(|(k, v)| (k.value.clone(), v.value.clone()))
                .collect();
            for t in &info.raw.taints {
                tolerations.push(Toleration {
                    key: t.key.value.clone(),
                    operator: if t.value.is_some() { "Equal" } else { "Exists" },
                    value: t.value.as_ref().map(|v| v.value.clone()),
                    effect: t.effect,
                });
            }
        }

        // Replicas, autoscaling and disruption budget.
        let replicas = over
            .replicas
            .as_ref()
            .map_or(defaults.replicas.value, |r| r.value);
        let hpa = over.hpa.as_ref();
        let autoscaling = Autoscaling {
            enabled: hpa
                .and_then(|h| h.enabled.map(|b| b.0))
                .or(defaults.hpa.enabled.map(|b| b.0).filter(|on| !on))
                .unwrap_or(svc.autoscaling),
            min_replicas: hpa
                .and_then(|h| h.min_replicas.as_ref())
                .map_or(default_hpa_min, |v| v.value),
            max_replicas: hpa
                .and_then(|h| h.max_replicas.as_ref())
                .map_or(default_hpa_max, |v| v.value),
            target_cpu_utilization_percentage: hpa
                .and_then(|h| h.target_cpu.as_ref())
                .map_or(default_target, |v| v.value),
        };
        let over_min = hpa.and_then(|h| h.min_replicas.as_ref());
        let over_max = hpa.and_then(|h| h.max_replicas.as_ref());
        let over_target = hpa.and_then(|h| h.target_cpu.as_ref());
        if autoscaling.enabled {
            let at = over_min.or(over_max).map_or(pos(svc_name), pos);
            if autoscaling.min_replicas > autoscaling.max_replicas
                && (over_min.is_some() || over_max.is_some())
            {
                d.error(
                    at,
                    format!(
                        "service `{}` in environment `{name}`: HPA minReplicas {} is greater than maxReplicas {}",
                        svc.name, autoscaling.min_replicas, autoscaling.max_replicas
                    ),
                );
            }
            if autoscaling.min_replicas == 0 && over_min.is_some() {
                d.error(
                    at,
                    format!("service `{}`: HPA minReplicas must be at least 1", svc.name),
                );
            }
            if !(1..=100).contains(&autoscaling.target_cpu_utilization_percentage)
                && let Some(target) = over_target
            {
                d.error(
                    pos(target),
                    format!(
                        "service `{}`: targetCPUUtilizationPercentage must be 1-100",
                        svc.name
                    ),
                );
            }
        }
        let pdb = over.pdb.as_ref();
        let min_available = pdb
            .and_then(|p| p.min_available.as_ref())
            .map_or(default_pdb, |v| v.value);
        let mut pdb_enabled = pdb
            .and_then(|p| p.enabled.map(|b| b.0))
            .or(defaults.pdb.enabled.map(|b| b.0))
            .unwrap_or(min_available > 0);
        let floor = if autoscaling.enabled {
            autoscaling.min_replicas
        } else {
            replicas
        };
        if pdb_enabled && min_available >= floor {
            // A budget that allows no eviction makes every node drain hang: leave it out.
            pdb_enabled = false;
            match pdb.and_then(|p| p.min_available.as_ref()) {
                Some(explicit) => {
                    d.warn(
                        pos(explicit),
                        format!(
                            "service `{}` in environment `{name}`: no PodDisruptionBudget rendered, minAvailable {min_available} would block every eviction with {floor} replica(s)",
                            svc.name
                        ),
                    )
                    .hint = Some("run more replicas, or lower `pdb.minAvailable` below the replica count".into());
                }
                None => pdb_skipped.push(svc.name.clone()),
            }
        }

        match svc.chart.source_kind {
            "HelmRepository" => {
                helm_repos
                    .entry(svc.chart.source_name.clone())
                    .or_insert_with(|| HelmRepository {
                        name: svc.chart.source_name.clone(),
                        url: svc.source_url.clone(),
                        interval: svc.source_interval.clone(),
                    });
            }
            _ => {
                oci_repos.insert(
                    svc.chart.source_name.clone(),
                    OciRepository {
                        name: svc.chart.source_name.clone(),
                        url: svc.oci_url.clone().unwrap_or_default(),
                        semver: over
                            .chart
                            .as_ref()
                            .map_or(svc.chart.version.clone(), |c| c.version.value.clone()),
                        interval: svc.source_interval.clone(),
                    },
                );
            }
        }
        let update = match super::tagpolicy::merge(svc.update.as_ref(), update_override.as_ref()) {
            Ok(u) => u,
            Err(super::tagpolicy::NoPolicyKind) => {
                d.error(
                    pos(svc_name),
                    format!(
                        "service `{}` in environment `{name}` has an update block but no update policy",
                        svc.name
                    ),
                )
                .hint = Some("add `update: {policy: {semver: {range: ...}}}` here or in the catalog (kinds: `semver`, `alphabetical`, `numerical`, `digest`, `newestBuild`)".into());
                None
            }
        };
        let priority = over
            .priority_class
            .as_ref()
            .map(|p| p.value.clone())
            .or_else(|| svc.priority_class.clone())
            .or_else(|| defaults.priority_class.as_ref().map(|p| p.value.clone()));
        let (raw_name, raw_svc) = catalog.raw_services[svc.name.as_str()];
        let mut origins = Origins::new();
        let layers = [
            Layer::settings(
                catalog.file,
                "catalog defaults",
                catalog.spec.release.as_ref(),
            ),
            Layer {
                file: catalog.file,
                how: "catalog",
                values: raw_svc.values.as_ref(),
                values_from: &raw_svc.values_from,
                release: raw_svc.release.as_ref(),
            },
            defaults_layer,
            env_layer,
        ];
        let mut helm = rel::build(&layers, &mut origins);
        if !svc.ports.is_empty() {
            // Free values may configure the chart's Service; its ports come from the catalog.
            let service = helm
                .values
                .entry("service")
                .or_insert_with(|| serde_json::Value::Object(Default::default()));
            if !service.is_object() {
                *service = serde_json::Value::Object(Default::default());
            }
            service["ports"] = serde_json::to_value(&svc.ports).expect("ports serialize");
        }
        rel::Edge::extend(
            &mut edges,
            &svc.name,
            [
                (&raw_svc.depends_on, catalog.file),
                (&over.depends_on, file),
            ],
        );
        let mut chart = svc.chart.clone();
        if let Some(c) = &over.chart {
            chart.version = c.version.value.clone();
        }
        let pool_origin = match (&over.pool, explicit_pool) {
            (Some(p), _) => Some((pos(p), "environment")),
            (None, Some(p)) => Some((pos(p), "environment defaults")),
            (None, None) => spec
                .node_pools
                .0
                .iter()
                .find(|(n, _)| Some(&n.value) == pool_name.as_ref())
                .map(|(n, _)| (pos(n), "GPU placement")),
        };
        let typed = rel::Typed {
            env: file,
            catalog: catalog.file,
            name: raw_name,
            env_key: pos(svc_name),
            svc: raw_svc,
            over,
            defaults,
            multiplier: spec
                .resource_multiplier
                .as_ref()
                .filter(|_| multiplier != Decimal::ONE),
            pool: pool_origin,
        };
        releases.push(Release {
            name: svc.name.clone(),
            chart,
            image: Image {
                repository: svc.repository.clone(),
                tag: image.tag.value.clone(),
                digest: image.digest.as_ref().map(|d| d.value.clone()),
            },
            pinned: over.pinned.0,
            update,
            replicas,
            resources,
            autoscaling,
            pod_disruption_budget: PodDisruptionBudget {
                enabled: pdb_enabled,
                min_available,
            },
            pool: pool_name,
            node_selector,
            tolerations,
            gpu,
            priority_class_name: priority,
            ports: svc.ports.clone(),
            addon: false,
            helm,
            origins,
        });
        let release = releases.last_mut().expect("just pushed");
        let mut origins = std::mem::take(&mut release.origins);
        rel::typed_origins(&typed, release, &mut origins);
        release.origins = origins;
    }
    let addons = resolve_env_addons(
        &mut d,
        file,
        name,
        spec,
        catalog,
        &defaults_layer,
        &mut edges,
        &mut helm_repos,
        &mut oci_repos,
    );
    let running: BTreeSet<String> = releases
        .iter()
        .map(|r| r.name.clone())
        .chain(addons.iter().map(|a| a.name.clone()))
        .collect();
    let mut order = rel::resolve_order(name, &running, &edges, d.out);
    let origin_of_edge = |from: &str, to: &str| {
        edges
            .iter()
            .find(|e| e.from == from && e.to.value == to)
            .map(|e| super::Origin {
                file: e.file.path.clone(),
                line: pos(e.to).line,
                how: "dependsOn".into(),
            })
    };
    for r in &mut releases {
        r.helm.depends_on = order.remove(&r.name).unwrap_or_default();
        for (i, to) in r.helm.depends_on.iter().enumerate() {
            if let Some(o) = origin_of_edge(&r.name, to) {
                r.origins.insert(vec!["dependsOn".into(), i.to_string()], o);
            }
        }
    }
    let mut addons = addons;
    for a in &mut addons {
        a.helm.depends_on = order.remove(&a.name).unwrap_or_default();
        for (i, to) in a.helm.depends_on.iter().enumerate() {
            if let Some(o) = origin_of_edge(&a.name, to) {
                a.origins.insert(vec!["dependsOn".into(), i.to_string()], o);
            }
        }
    }
    super::capacity::check(file, name, spec, &releases, d.out);
    if !pdb_skipped.is_empty() {
        let at = defaults
            .pdb
            .min_available
            .as_ref()
            .map_or(Pos::default(), pos);
        d.warn(
            at,
            format!(
                "environment `{name}`: no PodDisruptionBudget rendered for {}: minAvailable {default_pdb} would block every eviction at their replica count",
                backticked(&pdb_skipped)
            ),
        )
        .hint = Some("a budget needs minAvailable below the (minimum) replica count; set `pdb: {enabled: false}` on a service to say so explicitly".into());
    }
    let drift_ignore = drift_rules(&mut d, spec);
    let errors_after = d
        .out
        .iter()
        .filter(|d| d.severity == Severity::Error)
        .count();
    if errors_after > errors_before {
        return None;
    }
    releases.sort_by(|a, b| a.name.cmp(&b.name));
    let catalog = catalog?;
    let mut source_files = vec![file.path.clone(), catalog.file.path.clone()];
    source_files.sort();
    Some(Environment {
        file: file.path.clone(),
        name: name.to_string(),
        namespace: spec.namespace.value.clone(),
        branch: spec.branch.value.clone(),
        cluster: spec.cluster.value.clone(),
        resource_multiplier: multiplier.to_string(),
        source_files,
        helm_repositories: helm_repos.into_values().collect(),
        oci_repositories: oci_repos.into_values().collect(),
        releases,
        addons,
        drift_ignore,
    })
}

/// `spec.drift.ignore`, validated: at least one path each, every path a JSON pointer, a kind
/// that `kairo drift` compares.
fn drift_rules(d: &mut Diags, spec: &raw::EnvironmentSpec) -> Vec<super::DriftIgnoreRule> {
    let mut rules = Vec::new();
    for rule in spec.drift.iter().flat_map(|c| &c.ignore) {
        if rule.paths.value.is_empty() {
            d.error(
                pos(&rule.paths),
                "a drift ignore rule needs at least one path",
            )
            .hint = Some("paths are JSON pointers such as `/spec/replicas`".into());
        }
        for p in &rule.paths.value {
            if !p.value.starts_with('/') {
                d.error(
                    pos(p),
                    format!("ignore path `{}` is not a JSON pointer", p.value),
                )
                .hint = Some("start it with `/`, such as `/spec/replicas`".into());
            }
        }
        let target = rule.target.as_ref();
        if let Some(kind) = target.and_then(|t| t.kind.as_ref())
            && !super::DRIFT_KINDS.contains(&kind.value.as_str())
        {
            d.error(
                pos(kind),
                format!("`{}` is not a kind that drift compares", kind.value),
            )
            .hint = Some(format!("kinds: {}", backticked(super::DRIFT_KINDS)));
        }
        rules.push(super::DriftIgnoreRule {
            paths: rule.paths.value.iter().map(|p| p.value.clone()).collect(),
            kind: target
                .and_then(|t| t.kind.as_ref())
                .map(|k| k.value.clone()),
            name: target
                .and_then(|t| t.name.as_ref())
                .map(|n| n.value.clone()),
        });
    }
    rules
}

/// The add-ons listed in an environment, resolved; their sources join the environment's.
#[allow(clippy::too_many_arguments)]
fn resolve_env_addons<'a>(
    d: &mut Diags,
    file: &'a SourceFile,
    env: &str,
    spec: &'a raw::EnvironmentSpec,
    catalog: Option<&Catalog<'a>>,
    defaults: &Layer<'a>,
    edges: &mut Vec<rel::Edge<'a>>,
    helm_repos: &mut BTreeMap<String, HelmRepository>,
    oci_repos: &mut BTreeMap<String, OciRepository>,
) -> Vec<AddOn> {
    let mut addons = Vec::new();
    for (addon_name, over) in &spec.addons.0 {
        let env_layer = Layer {
            file,
            how: "environment",
            values: over.values.as_ref(),
            values_from: &over.values_from,
            release: over.release.as_ref(),
        };
        rel::check_layer(&env_layer, false, false, d.out);
        let Some(catalog) = catalog else { continue };
        let Some(addon) = catalog.addons.get(&addon_name.value) else {
            if catalog.services.contains_key(&addon_name.value) {
                d.error(
                    pos(addon_name),
                    format!("`{}` is a service, not an add-on", addon_name.value),
                )
                .hint = Some("list it under `services:`".into());
                continue;
            }
            let known = catalog.spec.addons.0.iter().map(|(n, _)| n.value.as_str());
            let mut hint = match did_you_mean(&addon_name.value, known) {
                Some(best) => format!("did you mean `{best}`? "),
                None => String::new(),
            };
            hint.push_str(&format!(
                "add-ons are defined under `addons:` in `{}`",
                catalog.file.path
            ));
            d.error(
                pos(addon_name),
                format!(
                    "undefined add-on `{}` in environment `{env}`",
                    addon_name.value
                ),
            )
            .hint = Some(hint);
            continue;
        };
        if over.enabled == Some(false) {
            continue;
        }
        let raw = addon.raw;
        let mut origins = Origins::new();
        let layers = [
            Layer::settings(
                catalog.file,
                "catalog defaults",
                catalog.spec.release.as_ref(),
            ),
            Layer {
                file: catalog.file,
                how: "catalog",
                values: raw.values.as_ref(),
                values_from: &raw.values_from,
                release: raw.release.as_ref(),
            },
            // Environment-wide values are for our services; settings apply to every release.
            Layer::settings(defaults.file, defaults.how, defaults.release),
            env_layer,
        ];
        let helm = rel::build(&layers, &mut origins);
        rel::Edge::extend(
            edges,
            &addon_name.value,
            [(&raw.depends_on, catalog.file), (&over.depends_on, file)],
        );
        let mut chart = addon.chart.clone();
        origins.insert(
            vec!["chart".into(), "spec".into(), "version".into()],
            super::Origin {
                file: catalog.file.path.clone(),
                line: pos(&raw.chart.version).line,
                how: "catalog".into(),
            },
        );
        if let Some(c) = &over.chart {
            if c.version.value.trim().is_empty() {
                d.error(pos(&c.version), "chart version must not be empty");
            }
            chart.version = c.version.value.clone();
            origins.insert(
                vec!["chart".into(), "spec".into(), "version".into()],
                super::Origin {
                    file: d.file.path.clone(),
                    line: pos(&c.version).line,
                    how: "environment".into(),
                },
            );
        }
        match chart.source_kind {
            "HelmRepository" => {
                helm_repos
                    .entry(chart.source_name.clone())
                    .or_insert_with(|| HelmRepository {
                        name: chart.source_name.clone(),
                        url: addon.source_url.clone(),
                        interval: addon.source_interval.clone(),
                    });
            }
            _ => {
                oci_repos.insert(
                    chart.source_name.clone(),
                    OciRepository {
                        name: chart.source_name.clone(),
                        url: addon.oci_url.clone().unwrap_or_default(),
                        semver: chart.version.clone(),
                        interval: addon.source_interval.clone(),
                    },
                );
            }
        }
        addons.push(AddOn {
            name: addon_name.value.clone(),
            chart,
            namespace: raw.namespace.value.clone(),
            create_namespace: raw.create_namespace,
            addon: true,
            helm,
            origins,
        });
    }
    addons.sort_by(|a, b| a.name.cmp(&b.name));
    addons
}

#[cfg(test)]
mod tests {
    #[test]
    fn flux_durations() {
        for ok in ["1h", "10m", "1h30m", "1.5h", "500ms", "30s"] {
            assert!(super::is_flux_duration(ok), "{ok}");
        }
        for bad in ["", "1d", "90", "h", "1.h", "1 h", "-1h"] {
            assert!(!super::is_flux_duration(bad), "{bad}");
        }
    }
}
