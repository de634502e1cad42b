//! `kairo explain`: one release in one environment as Flux will get it, each value annotated
//! with where it came from (catalog, environment defaults, multiplier, override, template).
//!
//! It renders the environment in memory through the same templates as `kairo render`, so what
//! it shows is exactly what is written; it writes nothing. Origins come from the model; a value
//! without one was set by the template itself.

use std::path::Path;

use serde::Serialize;
use serde_json::Value;

use crate::model::{self, Origin, Origins};
use crate::render;

#[derive(Debug, thiserror::Error)]
pub enum ExplainError {
    #[error("unknown environment `{name}`")]
    UnknownEnvironment { name: String, known: Vec<String> },
    #[error("`{name}` does not run in environment `{environment}`")]
    UnknownRelease {
        name: String,
        environment: String,
        known: Vec<String>,
    },
    #[error("the environments are invalid")]
    Model(Vec<model::Diagnostic>),
    #[error("failed to read the environments")]
    Load(#[source] model::ModelError),
    #[error(transparent)]
    Render(#[from] crate::pipeline::PipelineError),
    #[error("the rendered release `{path}` is not YAML: {message}")]
    Output { path: String, message: String },
}

/// One leaf of the release's `spec`.
#[derive(Debug, Serialize)]
pub struct Entry {
    /// Dotted path inside `spec` (`values.resources.requests.cpu`).
    pub path: String,
    pub value: Value,
    /// `file:line`, or empty when the template set it.
    pub origin: String,
    pub how: String,
}

#[derive(Debug, Serialize)]
pub struct Explained {
    pub environment: String,
    pub release: String,
    pub addon: bool,
    /// The rendered `spec`.
    #[serde(skip)]
    pub spec: Value,
    #[serde(skip)]
    pub origins: Origins,
    pub entries: Vec<Entry>,
}

pub fn explain(root: &Path, service: &str, environment: &str) -> Result<Explained, ExplainError> {
    let model = model::load(root).map_err(|e| match e {
        model::ModelError::Invalid(d) => ExplainError::Model(d),
        other => ExplainError::Load(other),
    })?;
    let Some(env) = model.environment(environment) else {
        return Err(ExplainError::UnknownEnvironment {
            name: environment.to_string(),
            known: model.environments.iter().map(|e| e.name.clone()).collect(),
        });
    };
    let (origins, addon) = match (
        env.releases.iter().find(|r| r.name == service),
        env.addon(service),
    ) {
        (Some(r), _) => (r.origins.clone(), false),
        (None, Some(a)) => (a.origins.clone(), true),
        (None, None) => {
            return Err(ExplainError::UnknownRelease {
                name: service.to_string(),
                environment: environment.to_string(),
                known: env
                    .releases
                    .iter()
                    .map(|r| r.name.clone())
                    .chain(env.addons.iter().map(|a| a.name.clone()))
                    .collect(),
            });
        }
    };
    let options = crate::pipeline::Options {
        only: vec![environment.to_string()],
        ..Default::default()
    };
    let inputs = crate::pipeline::Inputs::Disk(root.to_path_buf());
    let rendered =
        crate::pipeline::run_model(&inputs, model, &Default::default(), &options)?.rendered;
    let path = format!(
        "{}/{environment}/releases/{service}.yaml",
        render::CLUSTERS_DIR
    );
    let text = String::from_utf8_lossy(&rendered.files[&path]).into_owned();
    let object: Value = crate::yaml::from_str(&text).map_err(|e| ExplainError::Output {
        path: path.clone(),
        message: e.message,
    })?;
    let spec = object.get("spec").cloned().unwrap_or(Value::Null);
    let mut entries = Vec::new();
    collect(&spec, &mut Vec::new(), &origins, &mut entries);
    Ok(Explained {
        environment: environment.to_string(),
        release: service.to_string(),
        addon,
        spec,
        origins,
        entries,
    })
}

/// The origin of `path`: its own, or that of the nearest ancestor (a list replaced whole).
fn origin_of<'o>(origins: &'o Origins, path: &[String]) -> Option<&'o Origin> {
    (0..=path.len()).rev().find_map(|n| origins.get(&path[..n]))
}

fn describe(o: Option<&Origin>) -> (String, String) {
    match o {
        Some(o) if o.file.is_empty() => (String::new(), o.how.clone()),
        Some(o) if o.line == 0 => (o.file.clone(), o.how.clone()),
        Some(o) => (format!("{}:{}", o.file, o.line), o.how.clone()),
        None => (String::new(), "template".to_string()),
    }
}

fn is_leaf(v: &Value) -> bool {
    match v {
        Value::Object(m) => m.is_empty(),
        Value::Array(a) => a.is_empty(),
        _ => true,
    }
}

fn collect(v: &Value, path: &mut Vec<String>, origins: &Origins, out: &mut Vec<Entry>) {
    if is_leaf(v) {
        let (origin, how) = describe(origin_of(origins, path));
        out.push(Entry {
            path: path.join("."),
            value: v.clone(),
            origin,
            how,
        });
        return;
    }
    let children: Vec<(String, &Value)> = match v {
        Value::Object(m) => m.iter().map(|(k, c)| (k.clone(), c)).collect(),
        Value::Array(a) => a
            .iter()
            .enumerate()
            .map(|(i, c)| (i.to_string(), c))
            .collect(),
        _ => unreachable!("leaves are handled above"),
    };
    for (k, c) in children {
        path.push(k);
        collect(c, path, origins, out);
        path.pop();
    }
}

/// The spec as YAML, each leaf followed by `# file:line (how)`.
pub fn to_yaml(e: &Explained) -> String {
    let mut out = format!(
        "# {} `{}` in environment `{}`: every value and where it came from\nspec:\n",
        if e.addon { "add-on" } else { "release" },
        e.release,
        e.environment
    );
    write(&e.spec, &mut Vec::new(), &e.origins, 1, &mut out);
    out
}

fn scalar(v: &Value) -> String {
    crate::yaml::to_string(v).unwrap_or_else(|_| v.to_string())
}

fn comment(origins: &Origins, path: &[String]) -> String {
    match describe(origin_of(origins, path)) {
        (o, how) if o.is_empty() => format!("  # {how}"),
        (o, how) => format!("  # {o} ({how})"),
    }
}

fn write(v: &Value, path: &mut Vec<String>, origins: &Origins, depth: usize, out: &mut String) {
    let pad = "  ".repeat(depth);
    match v {
        Value::Object(m) => {
            for (k, c) in m {
                path.push(k.clone());
                let key = scalar(&Value::String(k.clone()));
                if is_leaf(c) {
                    out.push_str(&format!(
                        "{pad}{key}: {}{}\n",
                        scalar(c),
                        comment(origins, path)
                    ));
                } else {
                    out.push_str(&format!("{pad}{key}:\n"));
                    write(c, path, origins, depth + 1, out);
                }
                path.pop();
            }
        }
        Value::Array(a) => {
            for (i, c) in a.iter().enumerate() {
                path.push(i.to_string());
                if is_leaf(c) {
                    out.push_str(&format!("{pad}- {}{}\n", scalar(c), comment(origins, path)));
                } else {
                    out.push_str(&format!("{pad}-\n"));
                    write(c, path, origins, depth + 1, out);
                }
                path.pop();
            }
        }
        _ => out.push_str(&format!("{pad}{}{}\n", scalar(v), comment(origins, path))),
    }
}
