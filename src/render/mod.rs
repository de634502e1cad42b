//! Rendering: resolved model + templates -> a sorted map of file path to bytes.
//!
//! Architecture Invariant: rendering is pure. It reads no files and writes none; templates and
//! the list of bootstrapped environments are passed in. The same inputs give the same bytes:
//! every map is a `BTreeMap`, templates see sorted data, and nothing time- or host-dependent is
//! available to them. Before a rendered file is written it goes through `check_output`, so a
//! template that produces broken YAML fails the render instead of reaching `clusters/`.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use minijinja::value::Serde;
use minijinja::{Environment as Jinja, UndefinedBehavior, Value, context};

use crate::model::{Environment, Model};

/// The directory under the root holding the templates.
pub const TEMPLATES_DIR: &str = "templates";
/// The directory under the root holding the rendered output.
pub const CLUSTERS_DIR: &str = "clusters";
/// Owned by `flux bootstrap`: kairo lists it when present and never writes inside it.
pub const FLUX_SYSTEM_DIR: &str = "flux-system";

const NAMESPACE: &str = "namespace.yaml.j2";
const HELM_REPOSITORY: &str = "helmrepository.yaml.j2";
const OCI_REPOSITORY: &str = "ocirepository.yaml.j2";
const HELM_RELEASE: &str = "helmrelease.yaml.j2";
const KUSTOMIZATION: &str = "kustomization.yaml.j2";
/// The templates shipped inside kairo; a repository's `templates/<name>` overrides one.
pub const EMBEDDED: [(&str, &str); 5] = [
    (
        HELM_RELEASE,
        include_str!("../../templates/helmrelease.yaml.j2"),
    ),
    (
        HELM_REPOSITORY,
        include_str!("../../templates/helmrepository.yaml.j2"),
    ),
    (
        KUSTOMIZATION,
        include_str!("../../templates/kustomization.yaml.j2"),
    ),
    (NAMESPACE, include_str!("../../templates/namespace.yaml.j2")),
    (
        OCI_REPOSITORY,
        include_str!("../../templates/ocirepository.yaml.j2"),
    ),
];
/// Every template the renderer needs.
pub const REQUIRED_TEMPLATES: [&str; 5] = [
    HELM_RELEASE,
    HELM_REPOSITORY,
    KUSTOMIZATION,
    NAMESPACE,
    OCI_REPOSITORY,
];

#[derive(Debug, thiserror::Error)]
pub enum RenderError {
    #[error("failed to read `{path}`")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("template `{TEMPLATES_DIR}/{template}` line {line}: {message}{}", context_note(.environment, .object))]
    Template {
        template: String,
        line: usize,
        message: String,
        environment: Option<String>,
        object: Option<String>,
    },
    #[error(
        "template `{TEMPLATES_DIR}/{template}` produced invalid YAML for `{path}` (line {line}, column {column}): {message}"
    )]
    InvalidOutput {
        template: String,
        path: String,
        line: u64,
        column: u64,
        message: String,
    },
}

fn context_note(environment: &Option<String>, object: &Option<String>) -> String {
    match (environment, object) {
        (Some(e), Some(o)) => format!(" (environment `{e}`, `{o}`)"),
        (Some(e), None) => format!(" (environment `{e}`)"),
        _ => String::new(),
    }
}

/// The templates, compiled once.
pub struct Templates {
    jinja: Jinja<'static>,
}

impl Templates {
    /// Reads `<root>/templates/*.j2`; a template not there is the embedded one.
    pub fn load(root: &Path) -> Result<Templates, RenderError> {
        let dir = root.join(TEMPLATES_DIR);
        let mut sources = BTreeMap::new();
        for name in REQUIRED_TEMPLATES {
            let path = dir.join(name);
            match std::fs::read_to_string(&path) {
                Ok(text) => {
                    sources.insert(name.to_string(), text);
                }
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(source) => {
                    return Err(RenderError::Io {
                        path: format!("{TEMPLATES_DIR}/{name}"),
                        source,
                    });
                }
            }
        }
        Templates::from_sources(sources)
    }

    /// Compiles templates given as name -> source, the embedded ones filling in what is
    /// missing; pure.
    pub fn from_sources(mut sources: BTreeMap<String, String>) -> Result<Templates, RenderError> {
        let mut jinja = Jinja::new();
        jinja.set_undefined_behavior(UndefinedBehavior::Strict);
        jinja.add_filter("yaml", yaml_filter);
        for (name, text) in EMBEDDED {
            sources
                .entry(name.to_string())
                .or_insert_with(|| text.to_string());
        }
        for (name, source) in sources {
            jinja
                .add_template_owned(name, source)
                .map_err(|e| template_error(e, None, None))?;
        }
        Ok(Templates { jinja })
    }
}

/// `{{ value | yaml }}`: the value as YAML. Scalars come out inline and quoted when YAML would
/// otherwise read them as another type (`"1.0"`, `"true"`); mappings and sequences come out as
/// block YAML, to be placed with `indent`.
fn yaml_filter(value: Value) -> Result<String, minijinja::Error> {
    crate::yaml::to_string(&value)
        .map_err(|e| minijinja::Error::new(minijinja::ErrorKind::InvalidOperation, e))
}

fn template_error(
    e: minijinja::Error,
    environment: Option<&str>,
    object: Option<&str>,
) -> RenderError {
    let mut message = e
        .detail()
        .map_or_else(|| e.kind().to_string(), str::to_string);
    if e.detail().is_some() {
        message = format!("{}: {message}", e.kind());
    }
    RenderError::Template {
        template: e.name().unwrap_or("?").to_string(),
        line: e.line().unwrap_or(0),
        message,
        environment: environment.map(str::to_string),
        object: object.map(str::to_string),
    }
}

/// Checks that a rendered file is well-formed YAML. Called for every file about to be written
/// (not for files whose bytes are already on disk: those were checked when written), which keeps
/// a no-op render of a large repository from re-parsing everything.
pub fn check_output(path: &str, bytes: &[u8]) -> Result<(), RenderError> {
    let text = String::from_utf8_lossy(bytes);
    crate::yaml::check_syntax(&text).map_err(|e| {
        // The header names the template last: `... templates/<name>; do not edit`.
        let first = text.lines().next().unwrap_or_default();
        let template = first
            .strip_suffix("; do not edit")
            .and_then(|l| l.rsplit(", ").next())
            .and_then(|t| t.strip_prefix(&format!("{TEMPLATES_DIR}/")))
            .unwrap_or("?")
            .to_string();
        RenderError::InvalidOutput {
            template,
            path: path.to_string(),
            line: e.line,
            column: e.column,
            message: e.message,
        }
    })
}

/// The environments among `names` whose `clusters/<env>/flux-system/` exists under `root`.
pub fn bootstrapped(root: &Path, names: &[String]) -> BTreeSet<String> {
    names
        .iter()
        .filter(|e| {
            root.join(CLUSTERS_DIR)
                .join(e)
                .join(FLUX_SYSTEM_DIR)
                .is_dir()
        })
        .cloned()
        .collect()
}

/// What one render produced: repository-relative path -> file bytes, sorted.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Rendered {
    /// The environments rendered; their `clusters/<env>/` trees are complete in `files`.
    pub environments: Vec<String>,
    pub files: BTreeMap<String, Vec<u8>>,
}

/// Renders the given environments (all when `only` is empty).
/// `bootstrapped` names the environments whose `clusters/<env>/flux-system/` exists.
pub fn render(
    model: &Model,
    templates: &Templates,
    only: &[String],
    bootstrapped: &BTreeSet<String>,
) -> Result<Rendered, RenderError> {
    let envs: Vec<&Environment> = model
        .environments
        .iter()
        .filter(|e| only.is_empty() || only.contains(&e.name))
        .collect();
    // Environments are independent: render them on all cores, then merge in sorted order.
    let results = crate::par::map(&envs, |env| {
        let mut files = BTreeMap::new();
        render_environment(env, templates, bootstrapped.contains(&env.name), &mut files)?;
        Ok::<_, RenderError>(files)
    });
    let mut rendered = Rendered {
        environments: envs.iter().map(|e| e.name.clone()).collect(),
        files: BTreeMap::new(),
    };
    for r in results {
        rendered.files.extend(r?);
    }
    Ok(rendered)
}

fn render_environment(
    env: &Environment,
    templates: &Templates,
    bootstrapped: bool,
    files: &mut BTreeMap<String, Vec<u8>>,
) -> Result<(), RenderError> {
    let base = format!("{CLUSTERS_DIR}/{}", env.name);
    // The environment is converted to a template value once; each release and repository is
    // then a cheap handle into it rather than a second conversion.
    let env_value = Value::from(Serde(env));
    let item = |list: &str, i: usize| -> Result<Value, RenderError> {
        env_value
            .get_attr(list)
            .and_then(|l| l.get_item(&Value::from(i)))
            .map_err(|e| template_error(e, Some(&env.name), None))
    };
    let mut emit = |template: &'static str,
                    path: String,
                    ctx: Value,
                    object: Option<&str>|
     -> Result<(), RenderError> {
        let tmpl = templates
            .jinja
            .get_template(template)
            .map_err(|e| template_error(e, Some(&env.name), object))?;
        let mut out = Vec::with_capacity(2048);
        out.extend_from_slice(b"# generated by kairo from ");
        for f in &env.source_files {
            out.extend_from_slice(f.as_bytes());
            out.extend_from_slice(b", ");
        }
        out.extend_from_slice(TEMPLATES_DIR.as_bytes());
        out.push(b'/');
        out.extend_from_slice(template.as_bytes());
        out.extend_from_slice(b"; do not edit\n");
        let body = tmpl
            .render(ctx)
            .map_err(|e| template_error(e, Some(&env.name), object))?;
        out.extend_from_slice(body.trim_start_matches('\n').as_bytes());
        if !out.ends_with(b"\n") {
            out.push(b'\n');
        }
        files.insert(path, out);
        Ok(())
    };

    emit(
        NAMESPACE,
        format!("{base}/namespace.yaml"),
        context! { env => env_value.clone() },
        None,
    )?;

    // (template, list in `env`, context name, directory, object names) for each kind of object.
    let helm: Vec<&str> = env
        .helm_repositories
        .iter()
        .map(|r| r.name.as_str())
        .collect();
    let oci: Vec<&str> = env
        .oci_repositories
        .iter()
        .map(|r| r.name.as_str())
        .collect();
    let releases: Vec<&str> = env.releases.iter().map(|r| r.name.as_str()).collect();
    let addons: Vec<&str> = env.addons.iter().map(|r| r.name.as_str()).collect();
    let mut listed: BTreeMap<&str, Vec<String>> = BTreeMap::new();
    for (template, list, var, dir, names) in [
        (
            HELM_REPOSITORY,
            "helmRepositories",
            "repository",
            "sources",
            &helm,
        ),
        (
            OCI_REPOSITORY,
            "ociRepositories",
            "repository",
            "sources",
            &oci,
        ),
        (HELM_RELEASE, "releases", "release", "releases", &releases),
        (HELM_RELEASE, "addons", "release", "releases", &addons),
    ] {
        for (i, name) in names.iter().enumerate() {
            let file = format!("{name}.yaml");
            let ctx = Value::from(BTreeMap::from([
                ("env", env_value.clone()),
                (var, item(list, i)?),
            ]));
            emit(template, format!("{base}/{dir}/{file}"), ctx, Some(name))?;
            listed.entry(dir).or_default().push(file);
        }
    }
    let mut source_files = listed.remove("sources").unwrap_or_default();
    source_files.sort();
    let mut release_files = listed.remove("releases").unwrap_or_default();
    // Services and add-ons in one list, by release name (as before add-ons existed).
    release_files.sort_by(|a, b| a.trim_end_matches(".yaml").cmp(b.trim_end_matches(".yaml")));

    let mut root = Vec::new();
    if bootstrapped {
        root.push(FLUX_SYSTEM_DIR.to_string());
    }
    root.extend(["namespace.yaml", "sources", "releases"].map(String::from));
    for (path, resources) in [
        (format!("{base}/kustomization.yaml"), root),
        (format!("{base}/sources/kustomization.yaml"), source_files),
        (format!("{base}/releases/kustomization.yaml"), release_files),
    ] {
        emit(
            KUSTOMIZATION,
            path,
            context! { env => env_value.clone(), resources => resources },
            None,
        )?;
    }
    Ok(())
}
