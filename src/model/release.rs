//! The parts of a HelmRelease beyond the typed workload: free-form chart values, `valuesFrom`,
//! `dependsOn` and the Flux release settings, each resolved from layers with its origin.
//!
//! Layers apply in a fixed order, later winning: catalog defaults < catalog entry < environment
//! defaults < environment entry. In `values`, maps merge key by key, lists replace, and `null`
//! deletes the key. `check_layer` validates one layer where it is written (so a problem in the
//! catalog is reported once, not once per environment); `build` only merges checked layers.
//! Nothing here reads a ConfigMap or a Secret: `valuesFrom` holds references only.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::{Map, Value};

use super::diag::{Diagnostic, Pos, SourceFile};
use super::names::{did_you_mean, dns_label_problem};
use super::raw::{self, ReleaseSettings, Scalar, Tree, ValuesReference};
use super::{DriftDetection, HelmSpec, Install, Origin, Origins, Release, Upgrade, ValuesFrom};
use crate::yaml::Spanned;

/// Defaults that match what the operators' HelmReleases set by hand.
pub(super) const DEFAULT_INTERVAL: &str = "5m";
pub(super) const DEFAULT_RETRIES: i64 = 3;

/// Chart values that kairo sets from typed fields, and the field to use instead.
pub(super) const OWNED_KEYS: [(&str, &str); 8] = [
    (
        "replicaCount",
        "`replicas` (environment defaults or service)",
    ),
    (
        "image",
        "`image.repository` in the catalog and `image.tag` in the environment",
    ),
    (
        "resources",
        "`resources` (catalog, or the environment's service)",
    ),
    (
        "autoscaling",
        "`autoscaling` in the catalog and `hpa` in the environment",
    ),
    ("podDisruptionBudget", "`pdb` in the environment"),
    ("nodeSelector", "`pool` and the environment's `nodePools`"),
    (
        "tolerations",
        "`pool` and the environment's `nodePools` taints",
    ),
    ("priorityClassName", "`priorityClass`"),
];

const CRDS: [&str; 3] = ["Skip", "Create", "CreateReplace"];
const STRATEGIES: [&str; 2] = ["rollback", "uninstall"];
const DRIFT_MODES: [&str; 3] = ["enabled", "warn", "disabled"];

fn pos<T>(s: &Spanned<T>) -> Pos {
    s.referenced.into()
}

fn path(prefix: &[String], key: &str) -> Vec<String> {
    let mut p = prefix.to_vec();
    p.push(key.to_string());
    p
}

fn allowed(items: &[&str]) -> String {
    items
        .iter()
        .map(|s| format!("`{s}`"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// One layer of settings for one release, as written in one file.
#[derive(Clone, Copy)]
pub(super) struct Layer<'a> {
    pub file: &'a SourceFile,
    /// Shown in origins: `catalog`, `environment defaults`, `environment`.
    pub how: &'static str,
    pub values: Option<&'a Spanned<Tree>>,
    pub values_from: &'a [ValuesReference],
    pub release: Option<&'a ReleaseSettings>,
}

impl<'a> Layer<'a> {
    pub fn settings(
        file: &'a SourceFile,
        how: &'static str,
        r: Option<&'a ReleaseSettings>,
    ) -> Self {
        Layer {
            file,
            how,
            values: None,
            values_from: &[],
            release: r,
        }
    }

    fn origin(&self, at: Pos) -> Origin {
        Origin {
            file: self.file.path.clone(),
            line: at.line,
            how: self.how.to_string(),
        }
    }
}

/// Reports every problem in one layer. `service` is set for our own services, whose typed
/// fields own some chart values; add-ons (third-party charts) own none.
pub(super) fn check_layer(layer: &Layer, owned: bool, has_ports: bool, out: &mut Vec<Diagnostic>) {
    let f = layer.file;
    if let Some(values) = layer.values {
        match &values.value {
            Tree::Map(entries) => {
                if owned {
                    for (key, value) in entries {
                        if let Some((_, instead)) = OWNED_KEYS.iter().find(|(k, _)| *k == key.value)
                        {
                            out.push(f.error(
                                pos(key),
                                format!(
                                    "chart value `{}` is set by kairo from a typed field",
                                    key.value
                                ),
                            ).with_hint(format!("use {instead} instead; free values are for everything else the chart reads")));
                        }
                        if key.value == "service"
                            && has_ports
                            && let Tree::Map(inner) = &value.value
                            && let Some((k, _)) = inner.iter().find(|(k, _)| k.value == "ports")
                        {
                            out.push(f.error(
                                pos(k),
                                "chart value `service.ports` is set by kairo from the catalog's `ports`",
                            ).with_hint("list the ports once, under the service's `ports` in the catalog"));
                        }
                    }
                }
            }
            Tree::Null => {}
            _ => out.push(
                f.error(pos(values), "`values` must be a mapping of chart values")
                    .with_hint("write `values: {key: value, ...}`, as in the chart's values.yaml"),
            ),
        }
    }
    for r in layer.values_from {
        let name = &r.name.value;
        if let Some(problem) = subdomain_problem(name) {
            out.push(
                f.error(pos(&r.name), format!("valuesFrom name `{name}` {problem}"))
                    .with_hint("ConfigMap and Secret names are DNS subdomains: lowercase letters, digits, `-` and `.`"),
            );
        }
        if let Some(key) = &r.values_key
            && (key.value.is_empty()
                || key.value.len() > 253
                || !key
                    .value
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_')))
        {
            out.push(
                f.error(pos(key), format!("valuesKey `{}` is not a data key Flux accepts", key.value))
                    .with_hint("a key of the ConfigMap or Secret: letters, digits, `-`, `.` and `_`, such as `values.yaml`"),
            );
        }
        if let Some(target) = &r.target_path
            && let Some(problem) = target_path_problem(&target.value)
        {
            out.push(
                f.error(pos(target), format!("targetPath `{}` {problem}", target.value))
                    .with_hint("a dotted path into the values, such as `global.redis.password` or `env[0].value`"),
            );
        }
    }
    if let Some(r) = layer.release {
        check_settings(f, r, out);
    }
}

fn subdomain_problem(name: &str) -> Option<String> {
    if name.is_empty() {
        return Some("must not be empty".into());
    }
    if name.len() > 253 {
        return Some(format!(
            "is {} characters long; the limit is 253",
            name.len()
        ));
    }
    name.split('.')
        .find_map(dns_label_problem)
        .map(|p| format!("is not a DNS subdomain: a part {p}"))
}

/// Flux's pattern: `^([a-zA-Z0-9_\-.\\\/]|\[[0-9]{1,5}\])+$`, at most 250 characters.
fn target_path_problem(p: &str) -> Option<&'static str> {
    if p.is_empty() {
        return Some("must not be empty");
    }
    if p.len() > 250 {
        return Some("is longer than 250 characters");
    }
    let b = p.as_bytes();
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'[' {
            let digits = b[i + 1..].iter().take_while(|c| c.is_ascii_digit()).count();
            if !(1..=5).contains(&digits) || b.get(i + 1 + digits) != Some(&b']') {
                return Some("has an index that is not `[0]` to `[99999]`");
            }
            i += digits + 2;
        } else if b[i].is_ascii_alphanumeric() || b"_-.\\/".contains(&b[i]) {
            i += 1;
        } else {
            return Some("may hold only letters, digits, `_`, `-`, `.`, `/`, `\\` and `[N]`");
        }
    }
    None
}

fn check_enum(
    f: &SourceFile,
    field: &str,
    v: &Spanned<String>,
    values: &[&str],
    out: &mut Vec<Diagnostic>,
) {
    if values.contains(&v.value.as_str()) {
        return;
    }
    let mut hint = match did_you_mean(&v.value, values.iter().copied()) {
        Some(best) => format!("did you mean `{best}`? "),
        None => String::new(),
    };
    hint.push_str(&format!("allowed values: {}", allowed(values)));
    out.push(
        f.error(
            pos(v),
            format!("`{}` is not a value Flux accepts for `{field}`", v.value),
        )
        .with_hint(hint),
    );
}

fn check_settings(f: &SourceFile, r: &ReleaseSettings, out: &mut Vec<Diagnostic>) {
    for (field, v) in [("interval", &r.interval), ("timeout", &r.timeout)] {
        if let Some(v) = v
            && !super::resolve::is_flux_duration(&v.value)
        {
            out.push(
                f.error(
                    pos(v),
                    format!("{field} `{}` is not a duration Flux accepts", v.value),
                )
                .with_hint(
                    "use Go duration units `h`, `m`, `s` or `ms`, such as `5m`, `10m` or `1h30m`",
                ),
            );
        }
    }
    if let Some(i) = &r.install
        && let Some(c) = &i.crds
    {
        check_enum(f, "install.crds", c, &CRDS, out);
    }
    if let Some(u) = &r.upgrade {
        if let Some(c) = &u.crds {
            check_enum(f, "upgrade.crds", c, &CRDS, out);
        }
        if let Some(s) = u.remediation.as_ref().and_then(|r| r.strategy.as_ref()) {
            check_enum(f, "upgrade.remediation.strategy", s, &STRATEGIES, out);
        }
    }
    if let Some(d) = &r.drift_detection {
        if let Some(m) = &d.mode {
            check_enum(f, "driftDetection.mode", m, &DRIFT_MODES, out);
        }
        for rule in d.ignore.iter().flat_map(|i| &i.value) {
            if rule.paths.is_empty() {
                out.push(
                    f.error(
                        d.ignore.as_ref().map_or(Pos::default(), pos),
                        "a driftDetection ignore rule needs at least one path",
                    )
                    .with_hint("paths are JSON pointers such as `/spec/replicas`"),
                );
            }
            for p in &rule.paths {
                if !p.value.starts_with('/') {
                    out.push(
                        f.error(
                            pos(p),
                            format!("ignore path `{}` is not a JSON pointer", p.value),
                        )
                        .with_hint("start it with `/`, such as `/spec/replicas`"),
                    );
                }
            }
        }
    }
}

fn to_json(t: &Tree) -> Value {
    match t {
        Tree::Null => Value::Null,
        Tree::Bool(b) => Value::Bool(*b),
        Tree::Int(i) => Value::from(*i),
        Tree::UInt(u) => Value::from(*u),
        Tree::Float(f) => serde_json::Number::from_f64(*f).map_or(Value::Null, Value::Number),
        Tree::String(s) => Value::String(s.clone()),
        Tree::List(items) => Value::Array(items.iter().map(|i| to_json(&i.value)).collect()),
        Tree::Map(entries) => Value::Object(
            entries
                .iter()
                .map(|(k, v)| (k.value.clone(), to_json(&v.value)))
                .collect(),
        ),
    }
}

fn forget_under(origins: &mut Origins, prefix: &[String]) {
    origins.retain(|k, _| !k.starts_with(prefix));
}

/// Deep-merges one layer's map into `target`: maps merge, everything else replaces, `null`
/// deletes.
fn merge(
    target: &mut Map<String, Value>,
    entries: &[(Spanned<String>, Spanned<Tree>)],
    prefix: &[String],
    layer: &Layer,
    origins: &mut Origins,
) {
    for (key, value) in entries {
        let here = path(prefix, &key.value);
        match &value.value {
            Tree::Null => {
                target.remove(&key.value);
                forget_under(origins, &here);
            }
            Tree::Map(inner) => {
                let slot = target
                    .entry(key.value.clone())
                    .or_insert_with(|| Value::Object(Map::new()));
                if !slot.is_object() {
                    *slot = Value::Object(Map::new());
                    forget_under(origins, &here);
                }
                if inner.is_empty() {
                    origins.insert(here.clone(), layer.origin(pos(value)));
                }
                if let Value::Object(m) = slot {
                    merge(m, inner, &here, layer, origins);
                }
            }
            other => {
                target.insert(key.value.clone(), to_json(other));
                forget_under(origins, &here);
                origins.insert(here, layer.origin(pos(value)));
            }
        }
    }
}

/// Merges checked layers (first lowest) into the release's settings. `values_prefix` is where
/// values live in the rendered spec, for origins.
pub(super) fn build(layers: &[Layer], origins: &mut Origins) -> HelmSpec {
    let values_path = vec!["values".to_string()];
    let mut values = Map::new();
    let mut values_from: Vec<(ValuesFrom, Origin)> = Vec::new();
    let mut spec = HelmSpec {
        values: Map::new(),
        values_from: Vec::new(),
        depends_on: Vec::new(),
        interval: DEFAULT_INTERVAL.to_string(),
        timeout: None,
        install: Install {
            crds: None,
            retries: DEFAULT_RETRIES,
        },
        upgrade: Upgrade {
            crds: None,
            retries: DEFAULT_RETRIES,
            strategy: None,
        },
        drift_detection: None,
    };
    for p in [
        &["interval"][..],
        &["install", "remediation", "retries"],
        &["upgrade", "remediation", "retries"],
    ] {
        origins.insert(
            p.iter().map(|s| s.to_string()).collect(),
            Origin {
                file: String::new(),
                line: 0,
                how: "kairo default".into(),
            },
        );
    }
    let set = |origins: &mut Origins, layer: &Layer, at: Pos, p: &[&str]| {
        origins.insert(p.iter().map(|s| s.to_string()).collect(), layer.origin(at));
    };
    for layer in layers {
        if let Some(v) = layer.values
            && let Tree::Map(entries) = &v.value
        {
            merge(&mut values, entries, &values_path, layer, origins);
        }
        for r in layer.values_from {
            let entry = ValuesFrom {
                kind: r.kind.value,
                name: r.name.value.clone(),
                values_key: r.values_key.as_ref().map(|k| k.value.clone()),
                target_path: r.target_path.as_ref().map(|k| k.value.clone()),
                optional: r.optional,
            };
            // The same reference again moves it later (Flux merges in list order).
            values_from.retain(|(e, _)| {
                (e.kind, &e.name, &e.values_key, &e.target_path)
                    != (
                        entry.kind,
                        &entry.name,
                        &entry.values_key,
                        &entry.target_path,
                    )
            });
            values_from.push((entry, layer.origin(pos(&r.name))));
        }
        let Some(r) = layer.release else { continue };
        if let Some(v) = &r.interval {
            spec.interval = v.value.clone();
            set(origins, layer, pos(v), &["interval"]);
        }
        if let Some(v) = &r.timeout {
            spec.timeout = Some(v.value.clone());
            set(origins, layer, pos(v), &["timeout"]);
        }
        if let Some(i) = &r.install {
            if let Some(c) = &i.crds {
                spec.install.crds = Some(c.value.clone());
                set(origins, layer, pos(c), &["install", "crds"]);
            }
            if let Some(n) = i.remediation.as_ref().and_then(|r| r.retries.as_ref()) {
                spec.install.retries = n.value;
                set(
                    origins,
                    layer,
                    pos(n),
                    &["install", "remediation", "retries"],
                );
            }
        }
        if let Some(u) = &r.upgrade {
            if let Some(c) = &u.crds {
                spec.upgrade.crds = Some(c.value.clone());
                set(origins, layer, pos(c), &["upgrade", "crds"]);
            }
            if let Some(rem) = &u.remediation {
                if let Some(n) = &rem.retries {
                    spec.upgrade.retries = n.value;
                    set(
                        origins,
                        layer,
                        pos(n),
                        &["upgrade", "remediation", "retries"],
                    );
                }
                if let Some(s) = &rem.strategy {
                    spec.upgrade.strategy = Some(s.value.clone());
                    set(
                        origins,
                        layer,
                        pos(s),
                        &["upgrade", "remediation", "strategy"],
                    );
                }
            }
        }
        if let Some(d) = &r.drift_detection {
            let drift = spec.drift_detection.get_or_insert_with(|| DriftDetection {
                mode: "disabled".to_string(),
                ignore: Vec::new(),
            });
            if let Some(m) = &d.mode {
                drift.mode = m.value.clone();
                set(origins, layer, pos(m), &["driftDetection", "mode"]);
            }
            if let Some(ignore) = &d.ignore {
                drift.ignore = ignore.value.clone();
                forget_under(
                    origins,
                    &["driftDetection".to_string(), "ignore".to_string()],
                );
                set(origins, layer, pos(ignore), &["driftDetection", "ignore"]);
            }
        }
    }
    for (i, (entry, origin)) in values_from.into_iter().enumerate() {
        origins.insert(vec!["valuesFrom".to_string(), i.to_string()], origin);
        spec.values_from.push(entry);
    }
    spec.values = values;
    spec
}

/// What decided the typed fields of one service in one environment.
pub(super) struct Typed<'a> {
    pub env: &'a SourceFile,
    pub catalog: &'a SourceFile,
    pub name: &'a Spanned<String>,
    /// The service's key in the environment file.
    pub env_key: Pos,
    pub svc: &'a raw::Service,
    pub over: &'a raw::EnvService,
    pub defaults: &'a raw::Defaults,
    /// The environment's multiplier, when it is not 1.
    pub multiplier: Option<&'a Spanned<Scalar>>,
    /// Where the node pool was chosen.
    pub pool: Option<(Pos, &'static str)>,
}

/// Records where each typed value of a rendered service came from.
pub(super) fn typed_origins(t: &Typed, r: &Release, origins: &mut Origins) {
    let env = |at: Pos, how: &str| Origin {
        file: t.env.path.clone(),
        line: at.line,
        how: how.to_string(),
    };
    let cat = |at: Pos, how: &str| Origin {
        file: t.catalog.path.clone(),
        line: at.line,
        how: how.to_string(),
    };
    let kairo = |what: &str| Origin {
        file: String::new(),
        line: 0,
        how: format!("kairo default{what}"),
    };
    let mut put = |p: &[&str], o: Origin| {
        origins.insert(p.iter().map(|s| s.to_string()).collect(), o);
    };
    let (o, d) = (t.over, t.defaults);
    put(
        &["chart", "spec", "version"],
        match &o.chart {
            Some(c) => env(pos(&c.version), "environment"),
            None => cat(pos(&t.svc.chart.version), "catalog"),
        },
    );
    put(
        &["values", "replicaCount"],
        match &o.replicas {
            Some(v) => env(pos(v), "environment"),
            None => env(pos(&d.replicas), "environment defaults"),
        },
    );
    put(
        &["values", "image", "repository"],
        cat(pos(&t.svc.image.repository), "catalog"),
    );
    if let Some(image) = &o.image {
        put(
            &["values", "image", "tag"],
            env(pos(&image.tag), "environment"),
        );
        if let Some(digest) = &image.digest {
            put(
                &["values", "image", "digest"],
                env(pos(digest), "environment"),
            );
        }
    }
    let scaled = match t.multiplier {
        Some(m) => format!(
            "catalog × {} ({}:{})",
            m.value.0,
            t.env.path,
            m.referenced.line()
        ),
        None => "catalog".to_string(),
    };
    let key = |l: &raw::ResourceList, k: &str| match k {
        "cpu" => l.cpu.as_ref().map(pos),
        "memory" => l.memory.as_ref().map(pos),
        "ephemeral-storage" => l.ephemeral_storage.as_ref().map(pos),
        _ => None,
    };
    for (section, resolved) in [
        ("requests", &r.resources.requests),
        ("limits", &r.resources.limits),
    ] {
        fn pick<'r>(res: &'r raw::Resources, section: &str) -> Option<&'r raw::ResourceList> {
            match section {
                "requests" => res.requests.as_ref(),
                _ => res.limits.as_ref(),
            }
        }
        for k in resolved.keys() {
            let p = ["values", "resources", section, k.as_str()];
            if k == "nvidia.com/gpu" {
                let o = match (&o.gpu, &t.svc.gpu) {
                    (Some(g), _) => env(pos(&g.count), "environment `gpu`"),
                    (None, Some(g)) => cat(pos(&g.count), "catalog `gpu`"),
                    (None, None) => kairo(""),
                };
                put(&p, o);
            } else if let Some(at) = o
                .resources
                .as_ref()
                .and_then(|r| pick(r, section))
                .and_then(|l| key(l, k))
            {
                put(&p, env(at, "environment"));
            } else if let Some(at) = pick(&t.svc.resources, section).and_then(|l| key(l, k)) {
                put(&p, cat(at, &scaled));
            }
        }
    }
    let hpa = o.hpa.as_ref();
    put(
        &["values", "autoscaling", "enabled"],
        match (hpa.and_then(|h| h.enabled), d.hpa.enabled) {
            (Some(_), _) => env(t.env_key, "environment `hpa.enabled`"),
            (None, Some(crate::yaml::Bool(false))) => {
                env(Pos::default(), "environment defaults `hpa.enabled`")
            }
            _ => cat(pos(t.name), "catalog `autoscaling`"),
        },
    );
    for (field, own, default) in [
        (
            "minReplicas",
            hpa.and_then(|h| h.min_replicas.as_ref()),
            d.hpa.min_replicas.as_ref(),
        ),
        (
            "maxReplicas",
            hpa.and_then(|h| h.max_replicas.as_ref()),
            d.hpa.max_replicas.as_ref(),
        ),
        (
            "targetCPUUtilizationPercentage",
            hpa.and_then(|h| h.target_cpu.as_ref()),
            d.hpa.target_cpu.as_ref(),
        ),
    ] {
        let o = match (own, default) {
            (Some(v), _) => env(pos(v), "environment"),
            (None, Some(v)) => env(pos(v), "environment defaults"),
            (None, None) => kairo(""),
        };
        put(&["values", "autoscaling", field], o);
    }
    let pdb = o.pdb.as_ref();
    let min = match (
        pdb.and_then(|p| p.min_available.as_ref()),
        d.pdb.min_available.as_ref(),
    ) {
        (Some(v), _) => env(pos(v), "environment"),
        (None, Some(v)) => env(pos(v), "environment defaults"),
        (None, None) => kairo(""),
    };
    put(
        &["values", "podDisruptionBudget", "minAvailable"],
        min.clone(),
    );
    put(
        &["values", "podDisruptionBudget", "enabled"],
        if r.pod_disruption_budget.enabled {
            min
        } else {
            Origin {
                how: format!(
                    "{}; off: disabled or it would block every eviction",
                    min.how
                ),
                ..min
            }
        },
    );
    if let Some((at, how)) = t.pool {
        put(&["values", "nodeSelector"], env(at, how));
        put(&["values", "tolerations"], env(at, how));
    }
    let priority = match (&o.priority_class, &t.svc.priority_class, &d.priority_class) {
        (Some(p), _, _) => Some(env(pos(p), "environment")),
        (None, Some(p), _) => Some(cat(pos(p), "catalog")),
        (None, None, Some(p)) => Some(env(pos(p), "environment defaults")),
        _ => None,
    };
    if let Some(p) = priority {
        put(&["values", "priorityClassName"], p);
    }
    if !r.ports.is_empty() {
        put(
            &["values", "service", "ports"],
            cat(pos(t.name), "catalog `ports`"),
        );
    }
}

/// One declared dependency: `from` waits for `to`, as written at `at` in `file`.
pub(super) struct Edge<'a> {
    pub from: String,
    pub to: &'a Spanned<String>,
    pub file: &'a SourceFile,
}

impl<'a> Edge<'a> {
    /// `from`'s `dependsOn` edges from each layer (the catalog's, the environment's), each
    /// with the file that declares it.
    pub(super) fn extend(
        edges: &mut Vec<Edge<'a>>,
        from: &str,
        layers: [(&'a [Spanned<String>], &'a SourceFile); 2],
    ) {
        for (targets, file) in layers {
            edges.extend(targets.iter().map(|to| Edge {
                from: from.to_string(),
                to,
                file,
            }));
        }
    }
}

/// Validates an environment's `dependsOn` edges against the releases that run there and finds
/// cycles. Returns each release's sorted, de-duplicated dependencies.
pub(super) fn resolve_order(
    env: &str,
    running: &BTreeSet<String>,
    edges: &[Edge],
    out: &mut Vec<Diagnostic>,
) -> BTreeMap<String, Vec<String>> {
    let mut graph: BTreeMap<&str, BTreeSet<&str>> = BTreeMap::new();
    let mut first_at: BTreeMap<(&str, &str), &Edge> = BTreeMap::new();
    for e in edges {
        let to = e.to.value.as_str();
        if !running.contains(to) {
            let mut hint = match did_you_mean(to, running.iter().map(String::as_str)) {
                Some(best) => format!("did you mean `{best}`? "),
                None => String::new(),
            };
            hint.push_str(
                "a release can wait only for a service or add-on that runs in the same environment",
            );
            out.push(
                e.file
                    .error(
                        pos(e.to),
                        format!(
                            "`{}` depends on `{to}`, which does not run in environment `{env}`",
                            e.from
                        ),
                    )
                    .with_hint(hint),
            );
            continue;
        }
        graph.entry(&e.from).or_default().insert(to);
        first_at.entry((&e.from, to)).or_insert(e);
    }
    // Depth-first search; a back edge closes a cycle, reported once per set of members.
    let mut state: BTreeMap<&str, u8> = BTreeMap::new(); // 1 = on the stack, 2 = done
    let mut reported: BTreeSet<Vec<&str>> = BTreeSet::new();
    fn visit<'g>(
        node: &'g str,
        graph: &BTreeMap<&'g str, BTreeSet<&'g str>>,
        state: &mut BTreeMap<&'g str, u8>,
        stack: &mut Vec<&'g str>,
        cycles: &mut Vec<Vec<&'g str>>,
    ) {
        state.insert(node, 1);
        stack.push(node);
        for &next in graph.get(node).into_iter().flatten() {
            match state.get(next) {
                Some(1) => {
                    let start = stack.iter().position(|n| *n == next).expect("on stack");
                    let mut cycle = stack[start..].to_vec();
                    cycle.push(next);
                    cycles.push(cycle);
                }
                Some(_) => {}
                None => visit(next, graph, state, stack, cycles),
            }
        }
        stack.pop();
        state.insert(node, 2);
    }
    let mut cycles = Vec::new();
    for &node in graph.keys() {
        if !state.contains_key(node) {
            visit(node, &graph, &mut state, &mut Vec::new(), &mut cycles);
        }
    }
    for cycle in cycles {
        let mut members = cycle[..cycle.len() - 1].to_vec();
        members.sort();
        if !reported.insert(members) {
            continue;
        }
        let e = first_at[&(cycle[0], cycle[1])];
        out.push(
            e.file
                .error(
                    pos(e.to),
                    format!(
                        "dependency cycle in environment `{env}`: {}",
                        cycle
                            .iter()
                            .map(|n| format!("`{n}`"))
                            .collect::<Vec<_>>()
                            .join(" -> ")
                    ),
                )
                .with_hint("Flux would wait forever: remove one of these `dependsOn` entries"),
        );
    }
    graph
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.into_iter().map(str::to_string).collect()))
        .collect()
}

#[cfg(test)]
mod tests {
    #[test]
    fn target_paths() {
        for ok in ["a.b", "env[0].value", "a\\.b", "x/y"] {
            assert!(super::target_path_problem(ok).is_none(), "{ok}");
        }
        for bad in ["", "a b", "a[]", "a[123456]", "a[x]"] {
            assert!(super::target_path_problem(bad).is_some(), "{bad}");
        }
    }
}
