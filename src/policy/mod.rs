//! Policy checks: Rego policies in `policies/`, evaluated in-process (regorus) on every rendered
//! object, with conftest's conventions so that teams can bring the policies they already have.
//!
//! - Rules named `deny`, `violation` or `warn`, optionally with a `_suffix` (`deny_tags`), in
//!   `package main` (or the namespaces asked for) produce messages: strings, or objects with a
//!   `msg` key.
//! - `input` is the object as rendered. `data.kairo.environment` and `data.kairo.service` carry
//!   the resolved environment and, for a HelmRelease, the resolved service from the model.
//! - `policies/*.yaml` and `policies/*.json` are data documents, merged into `data`.
//!
//! Each policy file that declares rules is evaluated on its own (together with the files that
//! declare none, which serve as libraries), so a finding names the file it came from.
//!
//! Evaluation fails closed: a builtin error, a rule value that is not a message, a time or
//! memory limit breached is an error naming the policy file and the object, never a silent pass.
//! Results are cached by content (`cache`), and each evaluation runs under `Limits` (`eval`).
//!
//! This module must not write anything but its cache, and must not read the environment.

mod cache;
mod eval;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use serde_json::Value;

pub use cache::build_identity;
pub use cache::default_dir as default_cache_dir;
pub use eval::Limits;

use crate::model::Environment;
use crate::render::{Object, Origin, OriginObject, Want};

/// The directory under the root holding policies.
pub const POLICIES_DIR: &str = "policies";

#[derive(Debug, thiserror::Error)]
pub enum PolicyError {
    #[error("failed to read `{path}`")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("syntax error in policy `{path}`:\n{message}")]
    Syntax { path: String, message: String },
    #[error("data file `{path}` line {line}, column {column}: {message}")]
    Data {
        path: String,
        line: u64,
        column: u64,
        message: String,
    },
    #[error(transparent)]
    Output(#[from] Box<crate::render::RenderError>),
    #[error("cannot read `{path}` as an object: {message}")]
    Object { path: String, message: String },
    #[error("policy `{policy}` failed on `{object}` ({path}): {message}")]
    Eval {
        policy: String,
        object: String,
        path: String,
        message: String,
    },
    #[error(
        "policy `{policy}` ran longer than {} on `{object}` ({path}); evaluation stopped",
        seconds(.limit)
    )]
    TimeLimit {
        policy: String,
        object: String,
        path: String,
        limit: std::time::Duration,
    },
    #[error(
        "policy `{policy}` used more than {} MiB on `{object}` ({path}); evaluation stopped",
        .limit / (1024 * 1024)
    )]
    MemoryLimit {
        policy: String,
        object: String,
        path: String,
        limit: u64,
    },
    #[error(
        "rule `{rule}` in policy `{policy}` returned `{value}` for `{object}` ({path}), which is not a message"
    )]
    NotAMessage {
        policy: String,
        rule: String,
        object: String,
        path: String,
        value: String,
    },
}

fn seconds(d: &std::time::Duration) -> String {
    format!("{}s", d.as_secs_f64())
}

impl PolicyError {
    /// What the user can do about it, for the `hint:` line.
    pub fn hint(&self) -> Option<&'static str> {
        Some(match self {
            PolicyError::TimeLimit { .. } => {
                "a policy runs once per object and should take microseconds; if this one needs longer, raise the limit with `--policy-timeout`"
            }
            PolicyError::MemoryLimit { .. } => {
                "a comprehension over a large range builds it all in memory; if the policy needs more, raise the limit with `--policy-memory` (MiB)"
            }
            PolicyError::NotAMessage { .. } => {
                "conftest rules produce strings, or objects with a string `msg`"
            }
            PolicyError::Eval { .. } => {
                "kairo evaluates as `opa eval --strict-builtin-errors` does: a failing builtin fails the check; guard the call, or fix what it is given"
            }
            _ => return None,
        })
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Deny,
    Warn,
}

/// One message from one rule about one object.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub struct Finding {
    pub severity: Severity,
    pub environment: String,
    /// `HelmRelease kai-system/api-server`
    pub object: String,
    /// The generated file holding the object.
    pub path: String,
    /// The policy file, relative to the root.
    pub policy: String,
    pub rule: String,
    pub message: String,
}

/// A file `policies/` reads: Rego, or a data document.
pub fn is_policy_file(name: &str) -> bool {
    !name.starts_with('.')
        && [".rego", ".yaml", ".yml", ".json"]
            .iter()
            .any(|ext| name.ends_with(ext))
}

/// How to run a check: the bounds of each evaluation, and where results are cached.
#[derive(Debug, Clone, Default)]
pub struct CheckOptions {
    pub limits: Limits,
    /// `None`: no cache (see `default_cache_dir`).
    pub cache_dir: Option<PathBuf>,
}

struct PolicyFile {
    path: String,
    text: String,
}

/// A file with rules, ready to evaluate.
struct RuleFile {
    path: String,
    /// Rule names relative to their package (`deny`, `warn_tags`), parallel to `prepared.rules`.
    names: Vec<String>,
    prepared: eval::Prepared,
}

/// The loaded policies; empty when `policies/` holds no `.rego` file with rules.
pub struct Policies {
    files: Vec<RuleFile>,
    /// Everything evaluation depends on besides the object, for the cache.
    set: Vec<(String, Vec<u8>)>,
    /// `rand.intn` makes results differ between runs: such a set is never cached.
    deterministic: bool,
}

/// Whether a policy file's results can be reused: one calling `rand.intn` differs between runs.
pub fn is_deterministic(text: &str) -> bool {
    !text.contains("rand.intn")
}

fn is_rule(name: &str) -> Option<Severity> {
    let (head, rest) = name.split_once('_').unwrap_or((name, ""));
    let severity = match head {
        "deny" | "violation" => Severity::Deny,
        "warn" => Severity::Warn,
        _ => return None,
    };
    rest.chars()
        .all(|c| c.is_ascii_alphanumeric() || c == '_')
        .then_some(severity)
}

/// Identifiers in `text` that could name a conftest rule; the parser confirms which do.
fn rule_candidates(text: &str) -> std::collections::BTreeSet<&str> {
    text.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .filter(|w| is_rule(w).is_some())
        .collect()
}

impl Policies {
    /// Reads `<root>/policies/`: `*.rego` policies and `*.yaml`/`*.json` data documents.
    pub fn load(root: &Path, namespaces: &[String]) -> Result<Policies, PolicyError> {
        let dir = root.join(POLICIES_DIR);
        let mut paths: Vec<_> = match std::fs::read_dir(&dir) {
            Ok(entries) => entries.flatten().map(|e| e.path()).collect(),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
            Err(source) => {
                return Err(PolicyError::Io {
                    path: POLICIES_DIR.into(),
                    source,
                });
            }
        };
        paths.sort();
        let mut files = BTreeMap::new();
        for path in paths {
            let name = path
                .file_name()
                .unwrap_or_default()
                .to_string_lossy()
                .into_owned();
            let rel = format!("{POLICIES_DIR}/{name}");
            if !is_policy_file(&name) || !path.is_file() {
                continue;
            }
            let text = std::fs::read_to_string(&path).map_err(|source| PolicyError::Io {
                path: rel.clone(),
                source,
            })?;
            files.insert(rel, text);
        }
        Policies::from_files(&files, namespaces)
    }

    /// Compiles policies given as `policies/<name>` -> text (`*.rego` policies, `*.yaml`,
    /// `*.yml` and `*.json` data documents; other names are ignored); pure.
    pub fn from_files(
        files: &BTreeMap<String, String>,
        namespaces: &[String],
    ) -> Result<Policies, PolicyError> {
        let mut sources = Vec::new();
        let mut data = serde_json::Map::new();
        let mut set = vec![("namespaces".to_string(), namespaces.join("\n").into_bytes())];
        for (rel, text) in files {
            let name = rel.rsplit('/').next().unwrap_or_default();
            if !is_policy_file(name) {
                continue;
            }
            set.push((rel.clone(), text.clone().into_bytes()));
            if !name.ends_with(".rego") {
                let doc: Value = crate::yaml::from_str(text).map_err(|e| PolicyError::Data {
                    path: rel.clone(),
                    line: e.line,
                    column: e.column,
                    message: e.message,
                })?;
                if let Value::Object(map) = doc {
                    data.extend(map);
                }
            } else {
                sources.push(PolicyFile {
                    path: rel.clone(),
                    text: text.clone(),
                });
            }
        }
        if sources.is_empty() {
            return Ok(Policies {
                files: Vec::new(),
                set,
                deterministic: true,
            });
        }
        // One engine with every source: checks syntax, and tells which file declares which
        // conftest rule, without evaluating anything.
        let engine = || {
            eval::engine().map_err(|message| PolicyError::Syntax {
                path: eval::CONTEXT_PATH.into(),
                message,
            })
        };
        let mut all = engine()?;
        let mut packages = Vec::new();
        for source in &sources {
            let package = all
                .add_policy(source.path.clone(), source.text.clone())
                .map_err(|err| PolicyError::Syntax {
                    path: source.path.clone(),
                    message: err.to_string(),
                })?;
            packages.push(package);
        }
        let mut declared: Vec<Vec<(String, String)>> = Vec::new();
        for (source, package) in sources.iter().zip(&packages) {
            let mut rules = Vec::new();
            if namespaces.iter().any(|ns| *package == format!("data.{ns}")) {
                // Rule roots are relative to the file's package.
                for name in rule_candidates(&source.text) {
                    if all
                        .has_declared_rule_rooted_at(&source.path, name)
                        .unwrap_or(false)
                    {
                        rules.push((name.to_string(), format!("{package}.{name}")));
                    }
                }
            }
            declared.push(rules);
        }
        let (with_rules, libraries): (Vec<_>, Vec<_>) = sources
            .iter()
            .zip(declared)
            .partition(|(_, rules)| !rules.is_empty());
        let data =
            regorus::Value::from_json_str(&Value::Object(data).to_string()).map_err(|e| {
                PolicyError::Object {
                    path: POLICIES_DIR.into(),
                    message: e.to_string(),
                }
            })?;
        let mut files = Vec::new();
        for (source, rules) in with_rules {
            let mut engine = engine()?;
            engine
                .add_data(data.clone())
                .map_err(|e| PolicyError::Data {
                    path: POLICIES_DIR.into(),
                    line: 0,
                    column: 0,
                    message: e.to_string(),
                })?;
            for s in libraries.iter().map(|(s, _)| *s).chain([source]) {
                engine
                    .add_policy(s.path.clone(), s.text.clone())
                    .map_err(|err| PolicyError::Syntax {
                        path: s.path.clone(),
                        message: err.to_string(),
                    })?;
            }
            let (names, paths): (Vec<String>, Vec<String>) = rules.into_iter().unzip();
            let prepared =
                eval::Prepared::new(engine, paths).map_err(|message| PolicyError::Eval {
                    policy: source.path.clone(),
                    object: "(no object)".into(),
                    path: source.path.clone(),
                    message,
                })?;
            files.push(RuleFile {
                path: source.path.clone(),
                names,
                prepared,
            });
        }
        Ok(Policies {
            files,
            deterministic: sources.iter().all(|s| is_deterministic(&s.text)),
            set,
        })
    }

    /// No file declares a rule: nothing would be checked.
    pub fn is_empty(&self) -> bool {
        self.files.is_empty()
    }

    /// The files with rules, relative to the root.
    pub fn files(&self) -> Vec<String> {
        self.files.iter().map(|f| f.path.clone()).collect()
    }

    /// A check of the objects a render hands it (see `render::Inspect`): every policy file is
    /// evaluated on each object, or its result taken from the cache. [`Checker::finish`] gives
    /// the findings. Evaluation is bounded in memory (`Limits::memory` per rendering thread,
    /// beyond what kairo holds when an object's evaluation starts) until the checker is dropped.
    pub fn checker<'p>(&'p self, options: &CheckOptions) -> Checker<'p> {
        let cache = self
            .deterministic
            .then_some(options.cache_dir.as_ref())
            .flatten()
            .and_then(|dir| {
                let digest = cache::set_digest(
                    self.set
                        .iter()
                        .map(|(name, bytes)| (name.as_str(), bytes.as_slice())),
                )?;
                Some((digest, cache::Cache::open(dir.clone(), digest)))
            });
        let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
        Checker {
            policies: self,
            limits: options.limits,
            cache,
            ceiling: eval::Ceiling::set(options.limits.memory, threads),
        }
    }
}

/// The policy check of a render, object by object; see [`Policies::checker`].
pub struct Checker<'p> {
    policies: &'p Policies,
    limits: Limits,
    cache: Option<(cache::Key, cache::Cache)>,
    ceiling: eval::Ceiling,
}

/// What the check of one environment's objects found.
pub struct Part {
    evaluators: Vec<eval::Evaluator>,
    /// The object between `wants` and `inspect`, when it must be evaluated.
    pending: Option<Pending>,
    findings: Vec<Finding>,
    /// Results to store in the cache.
    new: Vec<(cache::Key, cache::Entry)>,
    hits: usize,
    objects: usize,
    /// The first failure; the environment's other objects are not evaluated.
    error: Option<PolicyError>,
}

struct Pending {
    key: Option<cache::Key>,
    context: Value,
}

impl crate::render::Inspect for Checker<'_> {
    type State = Part;

    fn start(&self) -> Part {
        Part {
            evaluators: self
                .policies
                .files
                .iter()
                .map(|f| f.prepared.evaluator(self.limits))
                .collect(),
            pending: None,
            findings: Vec::new(),
            new: Vec::new(),
            hits: 0,
            objects: 0,
            error: None,
        }
    }

    fn wants(&self, part: &mut Part, object: &Object) -> Want {
        part.pending = None;
        if part.error.is_some() || self.policies.files.is_empty() {
            return Want::Check;
        }
        let context = context(object.environment, object.origin);
        let key = self.cache.as_ref().map(|(set, _)| {
            let context_json = serde_json::to_vec(&context).expect("plain JSON values");
            cache::key(set, object.origin.template, object.bytes, &context_json)
        });
        let hit = self
            .cache
            .as_ref()
            .zip(key.as_ref())
            .and_then(|((_, c), k)| c.get(k));
        if let Some(entry) = hit {
            // Stored only after the object passed the render's output check (`inspect` runs
            // after it), under a key covering the kairo build, the template and the bytes.
            part.hits += 1;
            part.record(object, entry.clone());
            return Want::Vouched;
        }
        part.pending = Some(Pending { key, context });
        Want::Value
    }

    fn inspect(&self, part: &mut Part, object: &Object, value: Option<regorus::Value>) {
        part.objects += 1;
        let Some(pending) = part.pending.take() else {
            return;
        };
        match self.evaluate(&mut part.evaluators, object, value, &pending.context) {
            Ok(entry) => {
                if let Some(key) = pending.key {
                    part.new.push((key, entry.clone()));
                }
                part.record(object, entry);
            }
            Err(e) => part.error = Some(e),
        }
    }
}

impl Part {
    fn record(&mut self, object: &Object, entry: cache::Entry) {
        self.findings
            .extend(entry.findings.into_iter().map(|c| Finding {
                severity: c.severity,
                environment: object.environment.name.clone(),
                object: entry.label.clone(),
                path: object.path.to_string(),
                policy: c.policy,
                rule: c.rule,
                message: c.message,
            }));
    }
}

impl Checker<'_> {
    /// The findings of the parts of one render (all its environments'), sorted; the first
    /// failure, in the order of the environments, is the error. Stores new results in the
    /// cache when there is none.
    pub fn finish(self, parts: Vec<Part>) -> Result<Vec<Finding>, PolicyError> {
        let (mut findings, mut new, mut hits, mut objects) = (Vec::new(), Vec::new(), 0, 0);
        for part in parts {
            if let Some(e) = part.error {
                return Err(e);
            }
            findings.extend(part.findings);
            new.extend(part.new);
            hits += part.hits;
            objects += part.objects;
        }
        tracing::debug!(objects, cached = hits, "policies checked");
        if let Some((_, cache)) = self.cache {
            cache.store(new);
        }
        findings.sort();
        Ok(findings)
    }

    /// Evaluates every file on one object; `value` is the object as the render's check read
    /// it, when it could.
    fn evaluate(
        &self,
        evaluators: &mut [eval::Evaluator],
        object: &Object,
        value: Option<regorus::Value>,
        context: &Value,
    ) -> Result<cache::Entry, PolicyError> {
        let (path, bytes, limits) = (object.path, object.bytes, self.limits);
        // Rendering goes on around evaluation (this environment's next objects, other
        // environments on other threads): the ceiling is what kairo holds now plus each
        // thread's budget, so rendered output never eats into what a policy may use.
        self.ceiling.refresh();
        let input = match value {
            Some(value) => value,
            None => crate::yaml::object_value(&String::from_utf8_lossy(bytes)).map_err(|e| {
                // The renderer's check names the template that produced broken YAML; it
                // parses again, so it runs only when parsing failed.
                match crate::render::check_output(path, bytes) {
                    Err(output) => PolicyError::Output(Box::new(output)),
                    Ok(()) => PolicyError::Object {
                        path: path.to_string(),
                        message: e.message,
                    },
                }
            })?,
        };
        let label = label(&input);
        let kairo = regorus::Value::deserialize(context).map_err(|e| PolicyError::Object {
            path: path.to_string(),
            message: e.to_string(),
        })?;
        let mut findings = Vec::new();
        for (file, evaluator) in self.policies.files.iter().zip(evaluators.iter_mut()) {
            let values = evaluator
                .eval(&file.prepared.rules, &input, &kairo)
                .map_err(|failure| {
                    let (policy, object, path) =
                        (file.path.clone(), label.clone(), path.to_string());
                    match failure {
                        eval::Failure::Time => PolicyError::TimeLimit {
                            policy,
                            object,
                            path,
                            limit: limits.timeout,
                        },
                        eval::Failure::Memory => PolicyError::MemoryLimit {
                            policy,
                            object,
                            path,
                            limit: limits.memory,
                        },
                        eval::Failure::Error(message) => PolicyError::Eval {
                            policy,
                            object,
                            path,
                            message,
                        },
                    }
                })?;
            for (i, value) in values {
                let rule = &file.names[i];
                let severity = is_rule(rule).expect("only conftest rules are evaluated");
                let messages = messages_of(&value).ok_or_else(|| PolicyError::NotAMessage {
                    policy: file.path.clone(),
                    rule: rule.clone(),
                    object: label.clone(),
                    path: path.to_string(),
                    value: value.to_string(),
                })?;
                findings.extend(messages.into_iter().map(|message| cache::Cached {
                    severity,
                    policy: file.path.clone(),
                    rule: rule.clone(),
                    message,
                }));
            }
        }
        Ok(cache::Entry { label, findings })
    }
}

/// `HelmRelease kai-system/api-server`
fn label(object: &regorus::Value) -> String {
    let text = |v: &regorus::Value| v.as_string().map(|s| s.to_string()).unwrap_or_default();
    let kind = text(&object["kind"]);
    let name = text(&object["metadata"]["name"]);
    let namespace = text(&object["metadata"]["namespace"]);
    if namespace.is_empty() {
        format!("{kind} {name}")
    } else {
        format!("{kind} {namespace}/{name}")
    }
}

/// `data.kairo`: the environment, and for a HelmRelease the resolved service.
fn context(env: &Environment, origin: &Origin) -> Value {
    let (service, addon) = match &origin.object {
        Some(OriginObject::Service(name)) => (
            env.releases
                .binary_search_by(|r| r.name.as_str().cmp(name))
                .ok()
                .map(|i| &env.releases[i]),
            false,
        ),
        Some(OriginObject::AddOn(_)) => (None, true),
        _ => (None, false),
    };
    serde_json::json!({
        "environment": {
            "name": env.name, "namespace": env.namespace, "branch": env.branch,
            "cluster": env.cluster, "resourceMultiplier": env.resource_multiplier,
        },
        "service": service,
        "addon": addon,
    })
}

/// conftest accepts a set (or array) of strings, or of objects with a string `msg`; a boolean
/// rule that is true is a finding without a message. Anything else is `None`.
fn messages_of(v: &regorus::Value) -> Option<Vec<String>> {
    use regorus::Value as V;
    let one = |m: &V| match m {
        V::String(s) => Some(s.to_string()),
        V::Object(o) => match o.get(&V::from("msg")) {
            Some(V::String(s)) => Some(s.to_string()),
            _ => None,
        },
        _ => None,
    };
    match v {
        V::Set(items) => items.iter().map(one).collect(),
        V::Array(items) => items.iter().map(one).collect(),
        V::String(_) | V::Object(_) => one(v).map(|m| vec![m]),
        V::Bool(true) => Some(vec!["(no message)".into()]),
        V::Bool(false) => Some(Vec::new()),
        _ => None,
    }
}

/// Findings as text: one block per finding, then a count line.
pub fn render_text(findings: &[Finding], objects: usize) -> String {
    let mut out = String::new();
    let mut by_severity: BTreeMap<Severity, usize> = BTreeMap::new();
    for f in findings {
        *by_severity.entry(f.severity).or_default() += 1;
        let label = match f.severity {
            Severity::Deny => "deny",
            Severity::Warn => "warn",
        };
        out.push_str(&format!(
            "{label}: {}: {}: {}\n  --> {} (rule `{}`), {}\n",
            f.environment, f.object, f.message, f.policy, f.rule, f.path
        ));
    }
    out.push_str(&format!(
        "{} denied, {} warning(s) on {objects} object(s)\n",
        by_severity.get(&Severity::Deny).copied().unwrap_or(0),
        by_severity.get(&Severity::Warn).copied().unwrap_or(0),
    ));
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn an_object_is_exactly_one_document_without_duplicate_keys() {
        let parse = |text: &str| crate::yaml::from_str::<regorus::Value>(text);
        assert!(parse("kind: A\nmetadata: {name: a}\n").is_ok());
        assert!(
            parse("kind: A\n---\nkind: B\n").is_err(),
            "a second document"
        );
        assert!(parse("kind: A\nkind: B\n").is_err(), "a duplicate key");
    }

    #[test]
    fn rule_names_follow_conftest() {
        for name in ["deny", "violation", "warn", "deny_tags", "warn_x_1"] {
            assert!(super::is_rule(name).is_some(), "{name}");
        }
        for name in ["denied", "allow", "deny-x", "warnings"] {
            assert!(super::is_rule(name).is_none(), "{name}");
        }
    }
}
