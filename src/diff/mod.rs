//! Reviewer diffs: what a change does to the rendered objects, object by object.
//!
//! Both sides are rendered in memory from their inputs (a git revision's tree, or the working
//! tree), paired by (environment, kind, namespace, name), and compared field by field. Nothing is
//! written anywhere. Objects of kind `Secret` have their `data`/`stringData` values masked after
//! comparing, so a change is still reported without showing the values.

pub mod output;

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use serde::Serialize;
use serde_json::Value;

pub use output::{MARKDOWN_LIMIT, render_json, render_markdown, render_text};

use crate::apply::RECORD;
use crate::model::{self, Model};
use crate::pipeline::{self, Inputs, Options, PipelineError};
use crate::policy::POLICIES_DIR;
use crate::render::{self, CLUSTERS_DIR, TEMPLATES_DIR};

const INPUT_DIRS: [&str; 4] = [
    model::ENVIRONMENTS_DIR,
    TEMPLATES_DIR,
    POLICIES_DIR,
    CLUSTERS_DIR,
];

#[derive(Debug, thiserror::Error)]
pub enum DiffError {
    #[error(transparent)]
    Git(#[from] crate::git::GitError),
    #[error(transparent)]
    Pipeline(#[from] PipelineError),
    #[error(transparent)]
    Input(#[from] crate::input::InputError),
    #[error("failed to read `{path}`")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("`{path}` rendered at {side} is not a Kubernetes object: {message}")]
    Object {
        side: String,
        path: String,
        message: String,
    },
}

/// One side of a comparison: every file under environments/, templates/ and clusters/.
pub struct Side {
    /// `HEAD`, `origin/main`, or `working tree`.
    pub label: String,
    files: BTreeMap<String, Vec<u8>>,
}

impl Side {
    pub fn from_revision(root: &Path, rev: &str) -> Result<Side, DiffError> {
        Ok(Side {
            label: rev.to_string(),
            files: crate::git::read_revision(root, rev, &INPUT_DIRS)?,
        })
    }

    pub fn from_worktree(root: &Path) -> Result<Side, DiffError> {
        let mut files = BTreeMap::new();
        for dir in INPUT_DIRS {
            let base = root.join(dir);
            if !base.is_dir() {
                continue;
            }
            for entry in walkdir::WalkDir::new(&base).sort_by_file_name() {
                let entry = entry.map_err(|e| DiffError::Io {
                    path: base.display().to_string(),
                    source: e.into(),
                })?;
                if entry.file_type().is_dir() {
                    continue;
                }
                let rel = entry
                    .path()
                    .strip_prefix(root)
                    .expect("walked below root")
                    .to_string_lossy()
                    .replace('\\', "/");
                // Links are followed only inside the repository, as `render` does.
                let bytes = crate::input::read(root, &rel)?;
                files.insert(rel, bytes);
            }
        }
        Ok(Side {
            label: "working tree".to_string(),
            files,
        })
    }

    /// Renders this side's environments (all, or `only`) in memory, through the one pipeline.
    fn render(&self, only: &[String]) -> Result<(Model, render::Rendered), DiffError> {
        let inputs = Inputs::Files {
            label: self.label.clone(),
            files: self.files.clone(),
            bootstrapped: None,
        };
        let options = Options {
            only: only.to_vec(),
            policies: None,
            check: Default::default(),
            releases: None,
        };
        let out = pipeline::run(&inputs, &options)?;
        Ok((out.model, out.rendered))
    }
}

/// Identifies an object across both sides.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub struct ObjectKey {
    pub environment: String,
    pub kind: String,
    pub namespace: String,
    pub name: String,
}

struct Object {
    path: String,
    /// The file without kairo's header comment.
    yaml: String,
    value: Value,
}

/// The objects in the files of `rendered` whose bytes differ on the other side (`other`):
/// a file that is byte-for-byte the same on both sides holds the same object.
fn objects(
    side: &str,
    rendered: &render::Rendered,
    other: &render::Rendered,
) -> Result<BTreeMap<ObjectKey, Object>, DiffError> {
    let mut out = BTreeMap::new();
    for (path, bytes) in &rendered.files {
        // kustomization.yaml files are build instructions, not objects Flux applies.
        if path.ends_with("/kustomization.yaml") || other.files.get(path) == Some(bytes) {
            continue;
        }
        let text = String::from_utf8_lossy(bytes);
        let yaml = text
            .strip_prefix('#')
            .and_then(|t| t.split_once('\n'))
            .map_or(text.to_string(), |(_, rest)| rest.to_string());
        let bad = |message: String| DiffError::Object {
            side: side.to_string(),
            path: path.clone(),
            message,
        };
        let value: Value = crate::yaml::from_str(&yaml).map_err(|e| bad(e.message))?;
        let field = |v: &Value| v.as_str().unwrap_or_default().to_string();
        let key = ObjectKey {
            environment: path.split('/').nth(1).unwrap_or_default().to_string(),
            kind: field(&value["kind"]),
            namespace: field(&value["metadata"]["namespace"]),
            name: field(&value["metadata"]["name"]),
        };
        if key.kind.is_empty() || key.name.is_empty() {
            return Err(bad("it has no `kind` or `metadata.name`".into()));
        }
        out.insert(
            key,
            Object {
                path: path.clone(),
                yaml,
                value,
            },
        );
    }
    Ok(out)
}

/// One changed field: `before`/`after` absent when the field was added/removed.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FieldChange {
    pub path: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub before: Option<Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub after: Option<Value>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Change {
    Added,
    Removed,
    Changed,
}

#[derive(Debug, Clone, Serialize)]
pub struct ObjectDiff {
    pub change: Change,
    pub kind: String,
    pub namespace: String,
    pub name: String,
    /// The generated file holding the object (head's path; base's when removed).
    pub path: String,
    /// Field-level summary (changed objects only), sorted by path.
    pub fields: Vec<FieldChange>,
    /// Unified diff of the object's YAML.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub diff: String,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct EnvironmentDiff {
    pub name: String,
    pub added: usize,
    pub changed: usize,
    pub removed: usize,
    pub objects: Vec<ObjectDiff>,
}

/// A generated file in the head's `clusters/` that is not what the head's environments render.
#[derive(Debug, Clone, Serialize)]
pub struct StaleFile {
    pub path: String,
    /// `changed` (edited by hand or not re-rendered), `missing`, or `extra` (no longer rendered).
    pub state: &'static str,
}

/// The whole comparison. This is the `--output json` schema (see README).
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub base: String,
    pub head: String,
    /// Environments with changes; production-like ones (`prod*`) first, then by name.
    pub environments: Vec<EnvironmentDiff>,
    pub stale: Vec<StaleFile>,
}

impl Report {
    pub fn has_differences(&self) -> bool {
        !self.environments.is_empty() || !self.stale.is_empty()
    }
}

/// Compares what `base` and `head` render, for all environments or those in `only`.
pub fn diff(base: &Side, head: &Side, only: &[String]) -> Result<Report, DiffError> {
    let (_, base_rendered) = base.render(only)?;
    let (_, head_rendered) = head.render(only)?;
    let before = objects(&base.label, &base_rendered, &head_rendered)?;
    let after = objects(&head.label, &head_rendered, &base_rendered)?;

    let mut envs: BTreeMap<String, EnvironmentDiff> = BTreeMap::new();
    let keys: BTreeSet<&ObjectKey> = before.keys().chain(after.keys()).collect();
    for key in keys {
        let diff = match (before.get(key), after.get(key)) {
            (Some(b), Some(a)) if b.value == a.value => continue,
            (Some(b), Some(a)) => object_diff(Change::Changed, key, &a.path, Some(b), Some(a)),
            (Some(b), None) => object_diff(Change::Removed, key, &b.path, Some(b), None),
            (None, Some(a)) => object_diff(Change::Added, key, &a.path, None, Some(a)),
            (None, None) => unreachable!("key comes from one side"),
        };
        let env = envs
            .entry(key.environment.clone())
            .or_insert_with(|| EnvironmentDiff {
                name: key.environment.clone(),
                ..Default::default()
            });
        match diff.change {
            Change::Added => env.added += 1,
            Change::Changed => env.changed += 1,
            Change::Removed => env.removed += 1,
        }
        env.objects.push(diff);
    }
    let mut environments: Vec<EnvironmentDiff> = envs.into_values().collect();
    environments.sort_by_key(|e| (!e.name.starts_with("prod"), e.name.clone()));

    Ok(Report {
        base: base.label.clone(),
        head: head.label.clone(),
        environments,
        stale: stale_files(head, &head_rendered),
    })
}

/// Files under the head's `clusters/<env>/` that differ from the head's own render.
fn stale_files(head: &Side, rendered: &render::Rendered) -> Vec<StaleFile> {
    let mut stale = Vec::new();
    for (path, bytes) in &rendered.files {
        match head.files.get(path) {
            Some(committed) if committed == bytes => {}
            Some(_) => stale.push(StaleFile {
                path: path.clone(),
                state: "changed",
            }),
            None => stale.push(StaleFile {
                path: path.clone(),
                state: "missing",
            }),
        }
    }
    for env in &rendered.environments {
        let record = format!("{CLUSTERS_DIR}/{env}/{RECORD}");
        let Some(text) = head.files.get(&record) else {
            continue;
        };
        for line in String::from_utf8_lossy(text).lines() {
            if let Some((_, rel)) = line.split_once("  ") {
                let path = format!("{CLUSTERS_DIR}/{env}/{rel}");
                if !rendered.files.contains_key(&path) && head.files.contains_key(&path) {
                    stale.push(StaleFile {
                        path,
                        state: "extra",
                    });
                }
            }
        }
    }
    stale.sort_by(|a, b| a.path.cmp(&b.path));
    stale
}

fn object_diff(
    change: Change,
    key: &ObjectKey,
    path: &str,
    before: Option<&Object>,
    after: Option<&Object>,
) -> ObjectDiff {
    let secret = key.kind == "Secret";
    let mut fields = Vec::new();
    if let (Some(b), Some(a)) = (before, after) {
        compare_values("", &b.value, &a.value, &mut fields);
        if secret {
            for f in &mut fields {
                if f.path.starts_with("data") || f.path.starts_with("stringData") {
                    f.before = f.before.as_ref().map(|_| Value::from("(masked)"));
                    f.after = f.after.as_ref().map(|_| Value::from("(masked)"));
                }
            }
        }
    }
    let text = |o: Option<&Object>| -> String {
        match o {
            None => String::new(),
            Some(o) if secret => {
                let mut v = o.value.clone();
                for section in ["data", "stringData"] {
                    if let Some(Value::Object(map)) = v.get_mut(section) {
                        for value in map.values_mut() {
                            *value = Value::from("(masked)");
                        }
                    }
                }
                crate::yaml::to_string(&v).unwrap_or_default() + "\n"
            }
            Some(o) => o.yaml.clone(),
        }
    };
    let (old, new) = (text(before), text(after));
    let diff = similar::TextDiff::from_lines(&old, &new)
        .unified_diff()
        .context_radius(3)
        .header(
            &before.map_or("/dev/null".to_string(), |o| format!("a/{}", o.path)),
            &after.map_or("/dev/null".to_string(), |o| format!("b/{}", o.path)),
        )
        .to_string();
    ObjectDiff {
        change,
        kind: key.kind.clone(),
        namespace: key.namespace.clone(),
        name: key.name.clone(),
        path: path.to_string(),
        fields,
        diff,
    }
}

fn join_path(parent: &str, key: &str) -> String {
    let plain = !key.is_empty()
        && key
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
    match (parent.is_empty(), plain) {
        (true, true) => key.to_string(),
        (false, true) => format!("{parent}.{key}"),
        (_, false) => format!("{parent}[{}]", Value::from(key)),
    }
}

/// Appends the leaf-level differences between `a` and `b` under `path` (shared with `drift`).
pub fn compare_values(path: &str, a: &Value, b: &Value, out: &mut Vec<FieldChange>) {
    match (a, b) {
        (Value::Object(x), Value::Object(y)) => {
            let keys: BTreeSet<&String> = x.keys().chain(y.keys()).collect();
            for k in keys {
                let p = join_path(path, k);
                match (x.get(k), y.get(k)) {
                    (Some(va), Some(vb)) => compare_values(&p, va, vb, out),
                    (va, vb) => out.push(FieldChange {
                        path: p,
                        before: va.cloned(),
                        after: vb.cloned(),
                    }),
                }
            }
        }
        (Value::Array(x), Value::Array(y)) if x.len() == y.len() => {
            for (i, (va, vb)) in x.iter().zip(y).enumerate() {
                compare_values(&format!("{path}[{i}]"), va, vb, out);
            }
        }
        _ if a != b => out.push(FieldChange {
            path: path.to_string(),
            before: Some(a.clone()),
            after: Some(b.clone()),
        }),
        _ => {}
    }
}
