//! `kairo init`: scaffold a repository that renders, checks and passes `render --check` as is.
//!
//! It writes a catalog, one environment and the policies, optionally the templates (which are
//! otherwise embedded in kairo), then renders `clusters/` through the normal pipeline. It never
//! overwrites a file: when any file it would write exists, it writes nothing.

use std::path::{Path, PathBuf};

use crate::{apply, model, render};

/// The files of a new repository: path -> content.
const FILES: [(&str, &str); 10] = [
    (
        "environments/services.yaml",
        include_str!("init/services.yaml"),
    ),
    (
        "environments/staging.yaml",
        include_str!("init/staging.yaml"),
    ),
    ("policies/README.md", include_str!("../policies/README.md")),
    (
        "policies/flux-api.rego",
        include_str!("../policies/flux-api.rego"),
    ),
    ("policies/gpu.rego", include_str!("../policies/gpu.rego")),
    ("policies/ha.rego", include_str!("../policies/ha.rego")),
    (
        "policies/registries.rego",
        include_str!("../policies/registries.rego"),
    ),
    (
        "policies/registries.yaml",
        include_str!("../policies/registries.yaml"),
    ),
    (
        "policies/resources.rego",
        include_str!("../policies/resources.rego"),
    ),
    ("policies/tags.rego", include_str!("../policies/tags.rego")),
];

#[derive(Debug, thiserror::Error)]
pub enum InitError {
    #[error("`{dir}` already has {}", .existing.iter().map(|p| format!("`{p}`")).collect::<Vec<_>>().join(", "))]
    Exists { dir: String, existing: Vec<String> },
    #[error("failed to write `{path}`")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("the scaffolded environments are invalid; this is a kairo bug")]
    Model(#[from] model::ModelError),
    #[error(transparent)]
    Render(#[from] crate::pipeline::PipelineError),
    #[error(transparent)]
    Apply(#[from] apply::ApplyError),
}

/// Writes a new repository into `dir` and renders it. Returns the files written, sorted.
pub fn init(dir: &Path, templates: bool) -> Result<Vec<String>, InitError> {
    let mut files: Vec<(String, &str)> = FILES.iter().map(|(p, t)| (p.to_string(), *t)).collect();
    if templates {
        for (name, text) in render::EMBEDDED {
            files.push((format!("{}/{name}", render::TEMPLATES_DIR), text));
        }
    }
    let existing: Vec<String> = files
        .iter()
        .map(|(p, _)| p.clone())
        .chain([render::CLUSTERS_DIR.to_string()])
        .filter(|p| dir.join(p).symlink_metadata().is_ok())
        .collect();
    if !existing.is_empty() {
        return Err(InitError::Exists {
            dir: dir.display().to_string(),
            existing,
        });
    }
    for (rel, text) in &files {
        let path = dir.join(rel);
        let io = |source| InitError::Io {
            path: path.clone(),
            source,
        };
        std::fs::create_dir_all(path.parent().expect("relative path")).map_err(io)?;
        std::fs::write(&path, text).map_err(io)?;
    }
    let model = model::load(dir)?;
    let inputs = crate::pipeline::Inputs::Disk(dir.to_path_buf());
    let rendered =
        crate::pipeline::run_model(&inputs, model, &Default::default(), &Default::default())?
            .rendered;
    let plan = apply::plan(dir, &rendered, true, false)?;
    plan.apply(dir)?;
    let mut written: Vec<String> = files.into_iter().map(|(p, _)| p).collect();
    written.extend(plan.changes.iter().map(|c| c.path.clone()));
    written.sort();
    Ok(written)
}
