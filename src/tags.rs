//! `kairo tags SERVICE --env ENV`: the candidate tags of a service's image and which one its
//! update policy picks, with why the others were not (excluded, filtered out, ignored, ordered
//! lower). Reads the registry; writes nothing.
//!
//! Exit codes: 0 the environment runs the tag (and digest) the policy picks; 1 the policy
//! picks another one (a bump is due); 2 input, registry or policy error.

use std::fmt::Write;
use std::path::Path;

use serde::Serialize;

use crate::Outcome;
use crate::cli::{OutputFormat, TagsArgs};
use crate::model::tagpolicy::Explanation;
use crate::model::{self, ModelError, Severity};
use crate::registry::{self, Client, ClientConfig, DockerConfig, ImageName, ScanError};

/// How many ordered candidates text output shows.
const SHOWN: usize = 10;

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Report<'a> {
    service: &'a str,
    environment: &'a str,
    image: String,
    policy: &'a model::tagpolicy::UpdatePolicy,
    current: Current<'a>,
    tags_seen: usize,
    #[serde(skip_serializing_if = "Option::is_none")]
    selected: Option<Selected>,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<ErrorOut>,
    bump_due: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    explanation: Option<&'a Explanation>,
}

#[derive(Serialize)]
struct Current<'a> {
    tag: &'a str,
    digest: Option<&'a str>,
}

#[derive(Serialize)]
struct Selected {
    tag: String,
    digest: String,
}

#[derive(Serialize)]
struct ErrorOut {
    kind: &'static str,
    code: String,
    message: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    hint: Option<&'static str>,
}

fn fail(message: String, hint: Option<String>) -> Outcome {
    crate::output::error(&message, hint.as_deref());
    Outcome::Failed
}

pub fn run(root: &Path, args: &TagsArgs) -> Outcome {
    let model = match model::load(root) {
        Ok(m) => m,
        Err(ModelError::Invalid(diags)) => {
            for d in &diags {
                crate::output::message(&format!("{d}\n"));
            }
            let n = diags
                .iter()
                .filter(|d| d.severity == Severity::Error)
                .count();
            return fail(format!("{n} problem(s) in environment files"), None);
        }
        Err(e) => {
            return fail(
                e.to_string(),
                Some("run kairo from the repository root, or pass `--root DIR`".into()),
            );
        }
    };
    let Some(env) = model.environment(&args.env) else {
        let names: Vec<String> = model
            .environments
            .iter()
            .map(|e| format!("`{}`", e.name))
            .collect();
        return fail(
            format!("unknown environment `{}`", args.env),
            Some(format!("environments: {}", names.join(", "))),
        );
    };
    let Some(release) = env.releases.iter().find(|r| r.name == args.service) else {
        let names: Vec<String> = env
            .releases
            .iter()
            .map(|r| format!("`{}`", r.name))
            .collect();
        return fail(
            format!(
                "service `{}` does not run in environment `{}`",
                args.service, args.env
            ),
            Some(format!("services here: {}", names.join(", "))),
        );
    };
    let Some(policy) = &release.update else {
        return fail(
            format!(
                "service `{}` has no update policy in environment `{}`",
                args.service, args.env
            ),
            Some("add `update: {policy: {semver: {range: ...}}}` to the service in the catalog or the environment".into()),
        );
    };
    let image = match ImageName::parse(&release.image.repository) {
        Ok(i) => i,
        Err(e) => return fail(e, None),
    };
    let docker_config = match DockerConfig::load() {
        Ok(c) => c,
        Err(e) => return fail(e.to_string(), None),
    };
    let client = match Client::new(ClientConfig {
        docker_config,
        plain_http: args.insecure_registries.clone(),
        ..ClientConfig::default()
    }) {
        Ok(c) => c,
        Err(e) => return fail(e.to_string(), None),
    };
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => return fail(format!("cannot start the async runtime: {e}"), None),
    };
    let result = runtime.block_on(registry::latest(&client, &image, policy));

    let current = Current {
        tag: &release.image.tag,
        digest: release.image.digest.as_deref(),
    };
    let mut report = Report {
        service: &args.service,
        environment: &args.env,
        image: image.to_string(),
        policy,
        current,
        tags_seen: 0,
        selected: None,
        error: None,
        bump_due: false,
        explanation: None,
    };
    let outcome = match &result {
        Ok(latest) => {
            report.tags_seen = latest.tags_seen;
            report.explanation = Some(&latest.explanation);
            let digest_differs = release
                .image
                .digest
                .as_ref()
                .is_some_and(|d| d != &latest.digest);
            report.bump_due = latest.tag != release.image.tag
                || digest_differs
                || (matches!(policy.policy, model::tagpolicy::Policy::Digest { .. })
                    && release.image.digest.is_none());
            report.selected = Some(Selected {
                tag: latest.tag.clone(),
                digest: latest.digest.clone(),
            });
            if report.bump_due {
                Outcome::Differences
            } else {
                Outcome::Clean
            }
        }
        Err(ScanError::Registry(e)) => {
            report.error = Some(ErrorOut {
                kind: "registry",
                code: e.code(),
                message: e.to_string(),
                hint: e.hint(),
            });
            Outcome::Failed
        }
        Err(ScanError::Policy {
            error,
            explanation,
            tags_seen,
        }) => {
            report.tags_seen = *tags_seen;
            report.explanation = Some(explanation);
            report.error = Some(ErrorOut {
                kind: "policy",
                code: "policy".into(),
                message: error.to_string(),
                hint: error.hint(),
            });
            Outcome::Failed
        }
    };
    let written = match args.output {
        OutputFormat::Json => crate::output::json(&report),
        OutputFormat::Text => crate::output::data(&text(&report)),
    };
    if let Err(failed) = written {
        return failed;
    }
    if let Some(e) = &report.error {
        fail(e.message.clone(), e.hint.map(String::from));
    }
    outcome
}

fn text(r: &Report) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "image:    {}", r.image);
    let _ = writeln!(out, "policy:   {}", r.policy.policy);
    let _ = writeln!(
        out,
        "current:  {}{}",
        r.current.tag,
        r.current
            .digest
            .map(|d| format!("@{d}"))
            .unwrap_or_default()
    );
    if let Some(s) = &r.selected {
        let verdict = if r.bump_due { "bump due" } else { "up to date" };
        let _ = writeln!(out, "selected: {}@{} ({verdict})", s.tag, s.digest);
    }
    // A listing that failed counted nothing: no "0 listed" beside the error.
    let listed = r.error.as_ref().is_none_or(|e| e.kind != "registry");
    if listed {
        let _ = writeln!(out, "tags:     {} listed", r.tags_seen);
    }
    let Some(e) = r.explanation else { return out };
    if !e.ordered.is_empty() {
        let _ = writeln!(out, "ordered (best first):");
        for (i, c) in e.ordered.iter().take(SHOWN).enumerate() {
            let value = if c.value != c.tag {
                format!("  (compared as {})", c.value)
            } else {
                String::new()
            };
            let mark = if i == 0 { "*" } else { " " };
            let _ = writeln!(out, "  {mark} {}{value}", c.tag);
        }
        if e.ordered.len() > SHOWN {
            let _ = writeln!(out, "    ... {} more", e.ordered.len() - SHOWN);
        }
    }
    for (title, items) in [
        (
            "excluded",
            e.excluded
                .iter()
                .map(|x| format!("{}  (exclusionList `{}`)", x.tag, x.rule))
                .collect::<Vec<_>>(),
        ),
        (
            "filtered out",
            e.filtered_out.iter().map(|t| t.to_string()).collect(),
        ),
        (
            "ignored",
            e.ignored
                .iter()
                .map(|x| format!("{}  ({})", x.tag, x.reason))
                .collect(),
        ),
    ] {
        if items.is_empty() {
            continue;
        }
        let _ = writeln!(out, "{title} ({}):", items.len());
        for item in items.iter().take(SHOWN) {
            let _ = writeln!(out, "    {item}");
        }
        if items.len() > SHOWN {
            let _ = writeln!(out, "    ... {} more", items.len() - SHOWN);
        }
    }
    out
}
