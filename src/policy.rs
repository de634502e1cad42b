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

use std::collections::BTreeMap;
use std::path::Path;

use serde::Serialize;
use serde_json::Value;

use crate::model::{Environment, Model};
use crate::render::Rendered;

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
    #[error("evaluating `{path}` on `{object}`: {message}")]
    Eval {
        path: String,
        object: String,
        message: String,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
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

struct PolicyFile {
    path: String,
    text: String,
}

/// The loaded policies; empty when `policies/` holds no `.rego` file.
pub struct Policies {
    /// (file with rules, its sources + library sources)
    files: Vec<PolicyFile>,
    libraries: Vec<PolicyFile>,
    data: Value,
    namespaces: Vec<String>,
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

fn engine() -> regorus::Engine {
    let mut engine = regorus::Engine::new();
    engine.set_strict_builtin_errors(false);
    engine
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
        let mut sources = Vec::new();
        let mut data = serde_json::Map::new();
        for path in paths {
            let name = path
                .file_name()
                .unwrap_or_default()
                .to_string_lossy()
                .into_owned();
            let rel = format!("{POLICIES_DIR}/{name}");
            let is_data =
                name.ends_with(".yaml") || name.ends_with(".yml") || name.ends_with(".json");
            if !(name.ends_with(".rego") || is_data) || !path.is_file() {
                continue;
            }
            let text = std::fs::read_to_string(&path).map_err(|source| PolicyError::Io {
                path: rel.clone(),
                source,
            })?;
            if is_data {
                let doc: Value = crate::yaml::from_str(&text).map_err(|e| PolicyError::Data {
                    path: rel.clone(),
                    line: e.line,
                    column: e.column,
                    message: e.message,
                })?;
                if let Value::Object(map) = doc {
                    data.extend(map);
                }
            } else {
                sources.push(PolicyFile { path: rel, text });
            }
        }
        // Split rule files from libraries, checking syntax on the way.
        let mut files = Vec::new();
        let mut libraries = Vec::new();
        for source in sources {
            let mut e = engine();
            e.add_policy(source.path.clone(), source.text.clone())
                .map_err(|err| PolicyError::Syntax {
                    path: source.path.clone(),
                    message: err.to_string(),
                })?;
            let declares_rules = namespaces.iter().any(|ns| {
                ["deny", "violation", "warn"].iter().any(|rule| {
                    e.has_declared_rule_rooted_at(&source.path, &format!("data.{ns}.{rule}"))
                        .unwrap_or(false)
                }) || e
                    .eval_query(format!("data.{ns}"), false)
                    .ok()
                    .and_then(|r| r.result.into_iter().next())
                    .and_then(|r| serde_json::to_value(&r.expressions.first()?.value).ok())
                    .and_then(|v| {
                        v.as_object()
                            .map(|m| m.keys().any(|k| is_rule(k).is_some()))
                    })
                    .unwrap_or(false)
            });
            if declares_rules {
                files.push(source);
            } else {
                libraries.push(source);
            }
        }
        Ok(Policies {
            files,
            libraries,
            data: Value::Object(data),
            namespaces: namespaces.to_vec(),
        })
    }

    pub fn is_empty(&self) -> bool {
        self.files.is_empty()
    }

    /// Evaluates every policy file on every rendered object of the given environments.
    pub fn check(&self, model: &Model, rendered: &Rendered) -> Result<Vec<Finding>, PolicyError> {
        if self.files.is_empty() {
            return Ok(Vec::new());
        }
        // Convert every object and its context once; each policy file then evaluates them all.
        let mut objects = Vec::new();
        for (path, bytes) in &rendered.files {
            crate::render::check_output(path, bytes).map_err(Box::new)?;
            let env_name = path.split('/').nth(1).unwrap_or_default();
            let Some(env) = model.environment(env_name) else {
                continue;
            };
            let text = String::from_utf8_lossy(bytes);
            let object: Value = crate::yaml::from_str(&text).map_err(|e| PolicyError::Eval {
                path: path.clone(),
                object: path.clone(),
                message: e.message,
            })?;
            objects.push(Prepared::new(path, env, &object, &self.data)?);
        }
        let results = crate::par::map(&self.files, |file| self.check_file(file, &objects));
        let mut findings = Vec::new();
        for r in results {
            findings.extend(r?);
        }
        findings.sort();
        Ok(findings)
    }

    fn check_file(
        &self,
        file: &PolicyFile,
        objects: &[Prepared],
    ) -> Result<Vec<Finding>, PolicyError> {
        let eval_error = |object: &str, e: &dyn std::fmt::Display| PolicyError::Eval {
            path: file.path.clone(),
            object: object.to_string(),
            message: e.to_string(),
        };
        let mut engine = engine();
        for source in self.libraries.iter().chain(std::iter::once(file)) {
            engine
                .add_policy(source.path.clone(), source.text.clone())
                .map_err(|e| eval_error("", &e))?;
        }
        let mut findings = Vec::new();
        for object in objects {
            engine.clear_data();
            engine
                .add_data(object.data.clone())
                .map_err(|e| eval_error(&object.label, &e))?;
            engine.set_input(object.input.clone());
            for ns in &self.namespaces {
                let results = engine
                    .eval_query(format!("data.{ns}"), false)
                    .map_err(|e| eval_error(&object.label, &e))?;
                let Some(value) = results
                    .result
                    .into_iter()
                    .next()
                    .and_then(|r| r.expressions.into_iter().next())
                    .and_then(|e| serde_json::to_value(&e.value).ok())
                else {
                    continue;
                };
                let Value::Object(rules) = value else {
                    continue;
                };
                for (rule, messages) in rules {
                    let Some(severity) = is_rule(&rule) else {
                        continue;
                    };
                    for message in messages_of(&messages) {
                        findings.push(Finding {
                            severity,
                            environment: object.environment.clone(),
                            object: object.label.clone(),
                            path: object.path.clone(),
                            policy: file.path.clone(),
                            rule: rule.clone(),
                            message,
                        });
                    }
                }
            }
        }
        Ok(findings)
    }
}

/// One rendered object, converted for the policy engine.
struct Prepared {
    path: String,
    environment: String,
    /// `HelmRelease kai-system/api-server`
    label: String,
    input: regorus::Value,
    /// The policies' data documents plus `kairo` (environment and service).
    data: regorus::Value,
}

impl Prepared {
    fn new(
        path: &str,
        env: &Environment,
        object: &Value,
        base: &Value,
    ) -> Result<Prepared, PolicyError> {
        let kind = object["kind"].as_str().unwrap_or_default();
        let name = object["metadata"]["name"].as_str().unwrap_or_default();
        let namespace = object["metadata"]["namespace"].as_str().unwrap_or_default();
        let label = if namespace.is_empty() {
            format!("{kind} {name}")
        } else {
            format!("{kind} {namespace}/{name}")
        };
        let service = (kind == "HelmRelease")
            .then(|| env.releases.iter().find(|r| r.name == name))
            .flatten();
        let mut data = base.clone();
        data["kairo"] = serde_json::json!({
            "environment": {
                "name": env.name, "namespace": env.namespace, "branch": env.branch,
                "cluster": env.cluster, "resourceMultiplier": env.resource_multiplier,
            },
            "service": service,
            "addon": kind == "HelmRelease" && env.addon(name).is_some(),
        });
        let convert = |v: &Value| {
            regorus::Value::from_json_str(&v.to_string()).map_err(|e| PolicyError::Eval {
                path: path.to_string(),
                object: label.clone(),
                message: e.to_string(),
            })
        };
        Ok(Prepared {
            path: path.to_string(),
            environment: env.name.clone(),
            input: convert(object)?,
            data: convert(&data)?,
            label,
        })
    }
}

/// conftest accepts a set (or array) of strings, or of objects with a `msg`.
fn messages_of(v: &Value) -> Vec<String> {
    let items: Vec<&Value> = match v {
        Value::Array(a) => a.iter().collect(),
        Value::String(_) | Value::Object(_) => vec![v],
        Value::Bool(true) => return vec!["(no message)".into()],
        _ => return Vec::new(),
    };
    items
        .into_iter()
        .map(|m| match m {
            Value::String(s) => s.clone(),
            Value::Object(o) => o
                .get("msg")
                .and_then(Value::as_str)
                .map_or_else(|| m.to_string(), str::to_string),
            other => other.to_string(),
        })
        .collect()
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
