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
    #[error(transparent)]
    Input(#[from] crate::input::InputError),
    #[error("`{path}:{line}:{column}` is not UTF-8 text")]
    NotText {
        path: String,
        line: u64,
        column: u64,
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
        "template `{TEMPLATES_DIR}/{template}`{} produced invalid output for `{path}` (line {line}, column {column}): {message}",
        .template_line.map_or(String::new(), |l| format!(" line {l}"))
    )]
    InvalidOutput {
        template: String,
        /// The template line that most likely wrote the offending output line.
        template_line: Option<usize>,
        path: String,
        line: u64,
        column: u64,
        message: String,
    },
}

impl RenderError {
    /// What the user can do about it, when kairo knows.
    pub fn hint(&self) -> Option<&str> {
        match self {
            RenderError::Input(e) => Some(e.hint()),
            RenderError::NotText { .. } => Some("save the file as UTF-8"),
            _ => None,
        }
    }
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
    /// Whether a release's file can depend on nothing but that release and the environment's
    /// own fields (see [`Templates::release_local`]).
    release_local: bool,
}

impl Templates {
    /// Reads every file under `<root>/templates/` (so `{% include %}` and `{% import %}` find
    /// the same files as in a render of a git tree); a required template not there is the
    /// embedded one. A link is read only when it stays inside the repository.
    pub fn load(root: &Path) -> Result<Templates, RenderError> {
        let dir = root.join(TEMPLATES_DIR);
        let mut sources = BTreeMap::new();
        let walk = walkdir::WalkDir::new(&dir)
            .min_depth(1)
            .follow_links(false)
            .sort_by_file_name();
        for entry in walk {
            let entry = match entry {
                Ok(e) => e,
                Err(e)
                    if e.io_error().map(std::io::Error::kind)
                        == Some(std::io::ErrorKind::NotFound)
                        && e.depth() == 0 =>
                {
                    break;
                }
                Err(e) => {
                    return Err(RenderError::Input(crate::input::InputError::Io {
                        path: TEMPLATES_DIR.to_string(),
                        source: e.into(),
                    }));
                }
            };
            if entry.file_type().is_dir() {
                continue;
            }
            let Ok(name) = entry.path().strip_prefix(&dir) else {
                continue;
            };
            let name = name.to_string_lossy().replace('\\', "/");
            let rel = format!("{TEMPLATES_DIR}/{name}");
            let bytes = crate::input::read(root, &rel)?;
            let text = String::from_utf8(bytes).map_err(|e| {
                let (line, column, _) =
                    crate::input::utf8_position(e.as_bytes(), e.utf8_error().valid_up_to());
                RenderError::NotText {
                    path: rel.clone(),
                    line,
                    column,
                }
            })?;
            sources.insert(name, text);
        }
        Templates::from_sources(sources)
    }

    /// Compiles templates given as name -> source, the embedded ones filling in what is
    /// missing; pure.
    pub fn from_sources(mut sources: BTreeMap<String, String>) -> Result<Templates, RenderError> {
        let mut jinja = Jinja::new();
        jinja.set_undefined_behavior(UndefinedBehavior::Strict);
        // Each render of a template gets this much fuel: a loop that would run for hours
        // stops with an error naming the template.
        jinja.set_fuel(Some(crate::limits::get().template_fuel));
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
        let release_local = jinja.templates().all(|(_, t)| {
            reads_env_by_field_only(t.source())
                && t.undeclared_variables(true)
                    .iter()
                    .all(|v| release_local_variable(v))
        });
        Ok(Templates {
            jinja,
            release_local,
        })
    }

    /// Whether no template can read one release's data while rendering another: every
    /// template (included and imported ones too, as they may run in any release's context)
    /// reads only `release`, `repository`, `resources`, named fields of `env` other than its
    /// `releases` and `addons`, and side-effect-free globals. Decided on the templates' text
    /// by minijinja's static analysis, which names any other use of `env` (passing it whole to
    /// a macro or filter, a computed subscript, `debug()`) as plain `env` or an unknown name,
    /// so any doubt means `false`, and a full render.
    pub fn release_local(&self) -> bool {
        self.release_local
    }
}

/// Whether every `env` in a template's text (comments and strings included) is followed by
/// `.field` naming neither `releases` nor `addons`. minijinja's analysis alone is not enough:
/// it does not see a name rebound to itself (`{% set env = env %}`, `with`, macro defaults)
/// or an `include`/`import` whose name is an expression, so any other `env` means no.
fn reads_env_by_field_only(source: &str) -> bool {
    static ENV: std::sync::LazyLock<regex::Regex> = std::sync::LazyLock::new(|| {
        regex::Regex::new(r"\benv\b(\s*\.\s*([A-Za-z_][A-Za-z0-9_]*))?").expect("a valid pattern")
    });
    ENV.captures_iter(source).all(|c| {
        c.get(2)
            .is_some_and(|field| !matches!(field.as_str(), "releases" | "addons"))
    })
}

/// One name from `undeclared_variables(true)`: `env.namespace`, `release.image.tag`, `range`.
fn release_local_variable(name: &str) -> bool {
    /// Globals that see only their arguments (minijinja's `debug` prints the whole context).
    const PURE_GLOBALS: [&str; 6] = ["range", "dict", "namespace", "lipsum", "cycler", "joiner"];
    let mut parts = name.split('.');
    match (parts.next(), parts.next()) {
        (Some("env"), Some(field)) => !matches!(field, "releases" | "addons"),
        (Some("release" | "repository" | "resources"), _) => true,
        (Some(global), None) => PURE_GLOBALS.contains(&global),
        _ => false,
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
    if e.kind() == minijinja::ErrorKind::OutOfFuel {
        message = format!(
            "ran out of fuel after {} units of work (a loop that does not end?); raise the limit with `{}` (or `KAIRO_TEMPLATE_FUEL`)",
            crate::limits::get().template_fuel,
            crate::limits::TEMPLATE_FUEL_FLAG
        );
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
            template_line: None,
            path: path.to_string(),
            line: e.line,
            column: e.column,
            message: e.message,
        }
    })
}

/// What each template must produce: (apiVersion, whether only its group is fixed, kind).
/// kairo lists these files in its own `kustomization.yaml`s and keys policies and diffs by
/// kind. A HelmRelease's API version is left to the policies (`policies/flux-api.rego` names
/// retired versions); the namespace template may emit another kind of object (only
/// `apiVersion` and `kind` are required), which teams use for namespaced secrets.
fn expected_object(template: &str) -> Option<(&'static str, bool, &'static str)> {
    Some(match template {
        HELM_REPOSITORY => ("source.toolkit.fluxcd.io/v1", true, "HelmRepository"),
        OCI_REPOSITORY => ("source.toolkit.fluxcd.io/v1", true, "OCIRepository"),
        HELM_RELEASE => ("helm.toolkit.fluxcd.io/v2", true, "HelmRelease"),
        KUSTOMIZATION => ("kustomize.config.k8s.io/v1beta1", false, "Kustomization"),
        _ => return None,
    })
}

/// The template line that wrote output line `line`: the n-th output line reading exactly so
/// (or, failing that, starting with the same `key:`) comes from the n-th such template line
/// when both have as many, that is when no loop or branch changed the count. `None` when that
/// cannot be told.
fn template_line(source: &str, output: &str, line: u64) -> Option<usize> {
    let text = output.lines().nth(line.checked_sub(1)? as usize)?.trim();
    let key = match text.split_once(':') {
        Some((k, _)) if !k.is_empty() && !k.contains(['{', '}', ' ']) => Some(format!("{k}:")),
        _ => None,
    };
    let exact = |l: &str| l.trim() == text;
    let same_key = |l: &str| key.as_ref().is_some_and(|k| l.trim_start().starts_with(k));
    let tests: [&dyn Fn(&str) -> bool; 2] = [&exact, &same_key];
    tests.into_iter().find_map(|is_match| {
        let ordinal = output
            .lines()
            .take(line as usize)
            .filter(|l| is_match(l))
            .count();
        let in_output = output.lines().filter(|l| is_match(l)).count();
        let candidates: Vec<usize> = source
            .lines()
            .enumerate()
            .filter(|(_, l)| is_match(l))
            .map(|(i, _)| i + 1)
            .collect();
        (candidates.len() == in_output && ordinal > 0).then(|| candidates[ordinal - 1])
    })
}

/// Checks a rendered file: one YAML document, a mapping without duplicate keys, of the kind
/// its template must produce. Runs on every rendered file, before anything is compared or
/// written, so no command (`--no-check` included) sees output kairo itself would reject.
/// With `build`, also returns the object as a value, from the same parse (see
/// `yaml::read_object`).
fn check_rendered(
    template: &str,
    source: &str,
    path: &str,
    bytes: &[u8],
    build: bool,
) -> Result<Option<regorus::Value>, RenderError> {
    let text = std::str::from_utf8(bytes).unwrap_or_default();
    let invalid = |line: u64, column: u64, message: String| RenderError::InvalidOutput {
        template: template.to_string(),
        // Output line 1 is kairo's header.
        template_line: line
            .checked_sub(1)
            .and_then(|l| template_line(source, text.split_once('\n')?.1, l)),
        path: path.to_string(),
        line,
        column,
        message,
    };
    let (head, value) =
        crate::yaml::read_object(text, build).map_err(|e| invalid(e.line, e.column, e.message))?;
    let (want_api, group_only, want_kind) = expected_object(template).unwrap_or(("", true, ""));
    let group = |api: &str| api.rsplit_once('/').map_or("", |(g, _)| g).to_string();
    for (key, found, want, same) in [
        (
            "apiVersion",
            &head.api_version,
            want_api,
            &(|v: &str| v == want_api || (group_only && group(v) == group(want_api)))
                as &dyn Fn(&str) -> bool,
        ),
        ("kind", &head.kind, want_kind, &|v: &str| v == want_kind),
    ] {
        match found {
            Some((value, _)) if want.is_empty() && !value.is_empty() => {}
            Some((value, _)) if !want.is_empty() && same(value) => {}
            Some((value, line)) if !want.is_empty() => {
                return Err(invalid(
                    *line,
                    1,
                    format!("`{key}: {value}`; expected `{want}`"),
                ));
            }
            _ if want.is_empty() => {
                return Err(invalid(
                    1,
                    1,
                    format!("no `{key}` (a string) in the object"),
                ));
            }
            _ => return Err(invalid(1, 1, format!("no `{key}`; expected `{want}`"))),
        }
    }
    Ok(value)
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
    /// Where each file of `files` came from, by the same path.
    pub origins: BTreeMap<String, Origin>,
    /// `files` holds only some releases of `environments` (see [`render_releases`]); every
    /// other file there stays as the environment's record says it was generated.
    pub partial: bool,
}

/// What a rendered file was made from, so later stages never read it back out of the text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Origin {
    /// The template, relative to `templates/`.
    pub template: &'static str,
    /// The model object it was rendered for, if any.
    pub object: Option<OriginObject>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OriginObject {
    /// A service's release, by name (an entry of `Environment::releases`).
    Service(String),
    /// An add-on's release, by name (an entry of `Environment::addons`).
    AddOn(String),
    /// A Helm or OCI chart source, by name.
    Source(String),
}

/// What a render does with each object as soon as it is checked, on the thread that rendered
/// it (the policy check). An object is parsed once: the output check builds the value the
/// inspector asks for, so no stage parses the text again, and no more than one object's value
/// is held at a time.
pub trait Inspect: Sync {
    /// What the inspection of one environment's objects accumulates.
    type State: Send;
    fn start(&self) -> Self::State;
    /// What `object` needs from the output check; asked before it is parsed.
    fn wants(&self, state: &mut Self::State, object: &Object) -> Want;
    /// `object`, checked. `value` is its value when it was wanted, unless the object uses YAML
    /// the check's parse leaves to the serde reader (then `yaml::object_value` reads it).
    fn inspect(&self, state: &mut Self::State, object: &Object, value: Option<regorus::Value>);
}

/// What an inspector needs from the output check of one object.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Want {
    /// The check only.
    Check,
    /// The check, and the object's value from the same parse.
    Value,
    /// Nothing: the inspector proves these exact bytes, from this template, passed the check
    /// of this kairo build before (the policy cache stores only results of objects that did),
    /// so the check's result is known.
    Vouched,
}

/// One rendered and checked object.
pub struct Object<'a> {
    pub environment: &'a Environment,
    pub path: &'a str,
    pub bytes: &'a [u8],
    pub origin: &'a Origin,
}

/// An inspector that may be absent: `None` inspects nothing (the check still runs).
impl<I: Inspect> Inspect for Option<I> {
    type State = Option<I::State>;
    fn start(&self) -> Self::State {
        self.as_ref().map(I::start)
    }
    fn wants(&self, state: &mut Self::State, object: &Object) -> Want {
        match (self, state) {
            (Some(inspector), Some(state)) => inspector.wants(state, object),
            _ => Want::Check,
        }
    }
    fn inspect(&self, state: &mut Self::State, object: &Object, value: Option<regorus::Value>) {
        if let (Some(inspector), Some(state)) = (self, state) {
            inspector.inspect(state, object, value);
        }
    }
}

/// Renders the given environments (all when `only` is empty), handing each object to
/// `inspect`; returns the rendered files and what each environment's inspection accumulated,
/// in the order of `Rendered::environments`. A render error is returned whatever the
/// inspection found. `bootstrapped` names the environments whose `clusters/<env>/flux-system/`
/// exists.
pub fn render<I: Inspect>(
    model: &Model,
    templates: &Templates,
    only: &[String],
    bootstrapped: &BTreeSet<String>,
    inspect: &I,
) -> Result<(Rendered, Vec<I::State>), RenderError> {
    let envs: Vec<&Environment> = model
        .environments
        .iter()
        .filter(|e| only.is_empty() || only.contains(&e.name))
        .collect();
    // Environments are independent: render them on all cores, then merge in sorted order.
    let results = crate::par::map(&envs, |env| {
        let mut out = (BTreeMap::new(), BTreeMap::new());
        let mut state = inspect.start();
        render_environment(
            env,
            templates,
            bootstrapped.contains(&env.name),
            None,
            &mut out,
            (inspect, &mut state),
        )?;
        Ok::<_, RenderError>((out, state))
    });
    let mut rendered = Rendered {
        environments: envs.iter().map(|e| e.name.clone()).collect(),
        ..Rendered::default()
    };
    let mut states = Vec::new();
    for r in results {
        let ((files, origins), state) = r?;
        rendered.files.extend(files);
        rendered.origins.extend(origins);
        states.push(state);
    }
    Ok((rendered, states))
}

/// The files of the releases named in `only`, of the one environment `env`: the part of a
/// render that an edit of those releases changes, when the templates are release-local
/// ([`Templates::release_local`]) and nothing else of the environment changed (see
/// [`changed_releases`]). The result is `partial`.
pub fn render_releases<I: Inspect>(
    env: &Environment,
    templates: &Templates,
    only: &BTreeSet<String>,
    inspect: &I,
) -> Result<(Rendered, Vec<I::State>), RenderError> {
    let mut out = (BTreeMap::new(), BTreeMap::new());
    let mut state = inspect.start();
    render_environment(
        env,
        templates,
        false,
        Some(only),
        &mut out,
        (inspect, &mut state),
    )?;
    let rendered = Rendered {
        environments: vec![env.name.clone()],
        files: out.0,
        origins: out.1,
        partial: true,
    };
    Ok((rendered, vec![state]))
}

/// The releases (services and add-ons) whose template data differs between two versions of
/// one environment, when that is all that differs: the same environment fields and the same
/// releases by name, in order. `None` when anything else changed (a field of the environment,
/// a release added, removed or renamed, a source), which needs a full render.
pub fn changed_releases(old: &Environment, new: &Environment) -> Option<BTreeSet<String>> {
    // What templates see is the serde form of the environment (`Serde(env)` below), so that
    // form is what is compared: the environment's own fields (all but the two lists, as
    // `Environment::without_releases` keeps them, checked at compile time), then each release.
    fn same<T: serde::Serialize>(a: &T, b: &T) -> Option<bool> {
        Some(serde_json::to_vec(a).ok()? == serde_json::to_vec(b).ok()?)
    }
    if !same(&old.without_releases(), &new.without_releases())?
        || old.releases.len() != new.releases.len()
        || old.addons.len() != new.addons.len()
    {
        return None;
    }
    // Services and add-ons alike: the same names in the same order, each compared whole.
    fn changed<'a, T: serde::Serialize>(
        old: &'a [T],
        new: &'a [T],
        name: impl Fn(&T) -> &str,
        out: &mut BTreeSet<String>,
    ) -> Option<()> {
        for (a, b) in old.iter().zip(new) {
            if name(a) != name(b) {
                return None;
            }
            if !same(a, b)? {
                out.insert(name(a).to_string());
            }
        }
        Some(())
    }
    let mut out = BTreeSet::new();
    changed(&old.releases, &new.releases, |r| &r.name, &mut out)?;
    changed(&old.addons, &new.addons, |a| &a.name, &mut out)?;
    Some(out)
}

fn render_environment<I: Inspect>(
    env: &Environment,
    templates: &Templates,
    bootstrapped: bool,
    only_releases: Option<&BTreeSet<String>>,
    (files, origins): &mut (BTreeMap<String, Vec<u8>>, BTreeMap<String, Origin>),
    (inspect, state): (&I, &mut I::State),
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
                    origin: Option<OriginObject>|
     -> Result<(), RenderError> {
        let object = origin.as_ref().map(|o| match o {
            OriginObject::Service(n) | OriginObject::AddOn(n) | OriginObject::Source(n) => {
                n.as_str()
            }
        });
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
        let origin = Origin {
            template,
            object: origin,
        };
        let object = Object {
            environment: env,
            path: &path,
            bytes: &out,
            origin: &origin,
        };
        let value = match inspect.wants(state, &object) {
            Want::Vouched => None,
            want => check_rendered(template, tmpl.source(), &path, &out, want == Want::Value)?,
        };
        inspect.inspect(state, &object, value);
        origins.insert(path.clone(), origin);
        files.insert(path, out);
        Ok(())
    };

    if only_releases.is_none() {
        emit(
            NAMESPACE,
            format!("{base}/namespace.yaml"),
            context! { env => env_value.clone() },
            None,
        )?;
    }

    // (template, list in `env`, context name, directory, object names, origin) for each kind
    // of object.
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
    for (template, list, var, dir, names, origin) in [
        (
            HELM_REPOSITORY,
            "helmRepositories",
            "repository",
            "sources",
            &helm,
            OriginObject::Source as fn(String) -> OriginObject,
        ),
        (
            OCI_REPOSITORY,
            "ociRepositories",
            "repository",
            "sources",
            &oci,
            OriginObject::Source,
        ),
        (
            HELM_RELEASE,
            "releases",
            "release",
            "releases",
            &releases,
            OriginObject::Service,
        ),
        (
            HELM_RELEASE,
            "addons",
            "release",
            "releases",
            &addons,
            OriginObject::AddOn,
        ),
    ] {
        for (i, name) in names.iter().enumerate() {
            let file = format!("{name}.yaml");
            if let Some(only) = only_releases
                && (template != HELM_RELEASE || !only.contains(*name))
            {
                continue;
            }
            let ctx = Value::from(BTreeMap::from([
                ("env", env_value.clone()),
                (var, item(list, i)?),
            ]));
            emit(
                template,
                format!("{base}/{dir}/{file}"),
                ctx,
                Some(origin(name.to_string())),
            )?;
            listed.entry(dir).or_default().push(file);
        }
    }
    if only_releases.is_some() {
        return Ok(());
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

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::Templates;

    /// Only templates that cannot read one release while rendering another are release-local.
    #[test]
    fn release_locality_is_decided_on_every_template_conservatively() {
        let local = |extra: &str| {
            let sources = BTreeMap::from([("extra.j2".to_string(), extra.to_string())]);
            Templates::from_sources(sources).unwrap().release_local()
        };
        assert!(local(
            "{{ env.namespace }} {{ release.image.tag }} {{ range(3) }}"
        ));
        for template in [
            "{{ env.releases | length }}",
            "{{ env.addons }}",
            "{{ env }}",
            "{{ env | tojson }}",
            "{% set e = env %}{{ e.namespace }}",
            "{{ env[key] }}",
            "{{ debug() }}",
            "{% macro m(e) %}{{ e.releases }}{% endmacro %}{{ m(env) }}",
            "{{ somethingelse }}",
            // minijinja's analysis misses these; the text check does not.
            "{% set env = env %}{{ env.releases }}",
            "{% with env = env %}{{ env.releases }}{% endwith %}",
            "{% macro tags(env=env) %}{{ env.releases }}{% endmacro %}{{ tags() }}",
            "{% include ('a' if env.releases else 'b') %}",
            "{% for e in [env] %}{{ e.addons }}{% endfor %}",
            "{{ env . releases }}",
        ] {
            assert!(!local(template), "{template}");
        }
        assert!(
            Templates::from_sources(BTreeMap::new())
                .unwrap()
                .release_local(),
            "the shipped templates"
        );
    }
}
