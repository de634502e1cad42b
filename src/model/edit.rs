//! The one write path for image tags and digests in environment files.
//!
//! CI bumps, promotions and (later) the registry daemon change images only through
//! [`set_image`]: it replaces the exact bytes of the `tag` (and `digest`) scalars, located by
//! the parser, and leaves every other byte of the human-written file as it was: comments, key
//! order, quoting style, blank lines, anchors.

use super::names::{digest_problem, oci_tag_problem};
use super::raw::{self, AnySpec};
use crate::yaml::Spanned;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum EditError {
    #[error("`{file}` cannot be read as an environment: {message}")]
    Unreadable { file: String, message: String },
    #[error("service `{service}` is not listed in `{file}`")]
    UnknownService {
        file: String,
        service: String,
        listed: Vec<String>,
    },
    #[error("service `{service}` in `{file}` has no `image:` entry to change")]
    NoImage { file: String, service: String },
    #[error("service `{service}` is pinned in `{file}`")]
    Pinned { file: String, service: String },
    #[error("image tag `{tag}` {problem}")]
    InvalidTag { tag: String, problem: String },
    #[error("image digest `{digest}` {problem}")]
    InvalidDigest { digest: String, problem: String },
    #[error("editing `{file}` did not give the requested image; this is a kairo bug")]
    Internal { file: String },
    #[error(
        "the image of `{service}` in `{file}` comes from a YAML alias or merge key, or is shared through an anchor"
    )]
    Shared { file: String, service: String },
    #[error(
        "service `{service}` in `{file}` pins digest `{digest}`, which belongs to the old image"
    )]
    StaleDigest {
        file: String,
        service: String,
        digest: String,
    },
}

/// What a service's image is set to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageChange<'a> {
    pub service: &'a str,
    pub tag: &'a str,
    pub digest: Option<&'a str>,
    /// Change a pinned service too.
    pub force: bool,
}

/// The service's current image in the file: (tag, digest, pinned).
pub fn current_image(
    path: &str,
    text: &str,
    service: &str,
) -> Result<(String, Option<String>, bool), EditError> {
    Ok(current_images(path, text, &[service])?.remove(0))
}

/// [`current_image`] of several services, reading the file once.
pub fn current_images(
    path: &str,
    text: &str,
    services: &[&str],
) -> Result<Vec<(String, Option<String>, bool)>, EditError> {
    let spec = environment(path, text)?;
    services
        .iter()
        .map(|service| {
            let entry = find(path, &spec, service)?;
            let image = entry.image.as_ref().ok_or_else(|| EditError::NoImage {
                file: path.into(),
                service: (*service).into(),
            })?;
            Ok((
                image.tag.value.clone(),
                image.digest.as_ref().map(|d| d.value.clone()),
                entry.pinned.0,
            ))
        })
        .collect()
}

fn environment(path: &str, text: &str) -> Result<Box<raw::EnvironmentSpec>, EditError> {
    let unreadable = |message: String| EditError::Unreadable {
        file: path.into(),
        message,
    };
    let file: raw::File = crate::yaml::from_str(text).map_err(|e| {
        unreadable(format!(
            "{} (line {}, column {})",
            e.message, e.line, e.column
        ))
    })?;
    match file.spec {
        Some(AnySpec::Environment(spec)) => Ok(spec),
        // `spec` came before `kind`: read the file again with the schema now known.
        Some(AnySpec::Skipped)
            if file
                .kind
                .as_ref()
                .is_some_and(|k| k.value == raw::KIND_ENVIRONMENT) =>
        {
            crate::yaml::from_str::<raw::Document<raw::EnvironmentSpec>>(text)
                .map(|doc| Box::new(doc.spec))
                .map_err(|e| {
                    unreadable(format!(
                        "{} (line {}, column {})",
                        e.message, e.line, e.column
                    ))
                })
        }
        _ => Err(unreadable(
            "it is not a `kind: Environment` file with a `spec`".into(),
        )),
    }
}

fn find<'a>(
    path: &str,
    spec: &'a raw::EnvironmentSpec,
    service: &str,
) -> Result<&'a raw::EnvService, EditError> {
    spec.services
        .0
        .iter()
        .find(|(name, _)| name.value == service)
        .map(|(_, entry)| entry)
        .ok_or_else(|| EditError::UnknownService {
            file: path.into(),
            service: service.into(),
            listed: spec
                .services
                .0
                .iter()
                .map(|(n, _)| n.value.clone())
                .collect(),
        })
}

fn byte_range<T>(s: &Spanned<T>) -> (usize, usize) {
    let span = s.referenced.span();
    let start = span.byte_offset().expect("parsed from a string") as usize;
    (
        start,
        start + span.byte_len().expect("parsed from a string") as usize,
    )
}

/// `value` written as the scalar at `old` was: same quotes if it was quoted, quoted only when
/// YAML would otherwise read it as something else (`1.0`, `true`) if it was plain.
fn scalar_like(old: &str, value: &str) -> String {
    match old.as_bytes().first() {
        Some(b'"') => format!("\"{value}\""),
        Some(b'\'') => format!("'{value}'"),
        _ => match crate::yaml::to_string(&value) {
            Ok(s) if s.starts_with('"') || s.starts_with('\'') => format!("\"{value}\""),
            _ => value.to_string(),
        },
    }
}

/// Sets the image of one service in an environment file's text. Returns the new text, or
/// `None` when the image is already exactly that (a no-op).
pub fn set_image(
    path: &str,
    text: &str,
    change: &ImageChange,
) -> Result<Option<String>, EditError> {
    set_images(path, text, std::slice::from_ref(change))
}

/// Sets the images of several services in one pass: the file is parsed once, every scalar is
/// replaced, and the result is parsed once more to check that each named service reads back
/// as requested and no other service changed. `None` when nothing changes.
pub fn set_images(
    path: &str,
    text: &str,
    changes: &[ImageChange],
) -> Result<Option<String>, EditError> {
    for change in changes {
        if let Some(problem) = oci_tag_problem(change.tag) {
            return Err(EditError::InvalidTag {
                tag: change.tag.into(),
                problem,
            });
        }
        if let Some(digest) = change.digest
            && let Some(problem) = digest_problem(digest)
        {
            return Err(EditError::InvalidDigest {
                digest: digest.into(),
                problem,
            });
        }
    }
    let spec = environment(path, text)?;
    // Replacements as (start, end, new bytes), applied from the end so offsets stay valid.
    let mut edits: Vec<(usize, usize, String)> = Vec::new();
    let mut changed: Vec<&ImageChange> = Vec::new();
    for change in changes {
        let before = edits.len();
        edits_for(path, text, &spec, change, &mut edits)?;
        if edits.len() > before {
            changed.push(change);
        }
    }
    if edits.is_empty() {
        return Ok(None);
    }
    edits.sort_by_key(|e| std::cmp::Reverse(e.0));
    let mut out = text.to_string();
    for (start, end, new) in edits {
        out.replace_range(start..end, &new);
    }
    // The edit must read back as exactly the requested images, and change no other service
    // (an anchored tag is shared with every alias of it).
    let edited = environment(path, &out)?;
    type Images = Vec<(String, Option<(String, Option<String>)>)>;
    let images = |spec: &raw::EnvironmentSpec, wanted: bool| -> Images {
        spec.services
            .0
            .iter()
            .filter(|(name, _)| changed.iter().any(|c| c.service == name.value) == wanted)
            .map(|(name, e)| {
                let image = e.image.as_ref().map(|i| {
                    (
                        i.tag.value.clone(),
                        i.digest.as_ref().map(|d| d.value.clone()),
                    )
                });
                (name.value.clone(), image)
            })
            .collect()
    };
    for (name, image) in images(&edited, true) {
        let change = changed
            .iter()
            .find(|c| c.service == name)
            .expect("filtered to changed services");
        let want = Some((change.tag.to_string(), change.digest.map(str::to_string)));
        if image != want {
            return Err(EditError::Internal { file: path.into() });
        }
    }
    if images(&spec, false) != images(&edited, false) {
        return Err(EditError::Shared {
            file: path.into(),
            service: changed
                .first()
                .map_or_else(String::new, |c| c.service.to_string()),
        });
    }
    Ok(Some(out))
}

/// The byte replacements that set one service's image; none when it already is that image.
fn edits_for(
    path: &str,
    text: &str,
    spec: &raw::EnvironmentSpec,
    change: &ImageChange,
    edits: &mut Vec<(usize, usize, String)>,
) -> Result<(), EditError> {
    let entry = find(path, spec, change.service)?;
    let image = entry.image.as_ref().ok_or_else(|| EditError::NoImage {
        file: path.into(),
        service: change.service.into(),
    })?;
    let same_digest = image.digest.as_ref().map(|d| d.value.as_str()) == change.digest
        || change.digest.is_none() && image.digest.is_none();
    if image.tag.value == change.tag && same_digest {
        return Ok(());
    }
    if entry.pinned.0 && !change.force {
        return Err(EditError::Pinned {
            file: path.into(),
            service: change.service.into(),
        });
    }
    // Only a literal written for this service is edited: a value reached through an alias or
    // `<<:` merge lives elsewhere, and editing it would change other services (or the anchor).
    let shared = || EditError::Shared {
        file: path.into(),
        service: change.service.into(),
    };
    let literal = |s: &Spanned<String>| s.referenced == s.defined;
    if !literal(&image.tag) || image.digest.as_ref().is_some_and(|d| !literal(d)) {
        return Err(shared());
    }
    let (tag_start, tag_end) = byte_range(&image.tag);
    edits.push((
        tag_start,
        tag_end,
        scalar_like(&text[tag_start..tag_end], change.tag),
    ));
    match (&image.digest, change.digest) {
        (Some(old), Some(new)) => {
            let (start, end) = byte_range(old);
            edits.push((start, end, scalar_like(&text[start..end], new)));
        }
        (None, Some(new)) => {
            // Insert `digest:` next to `tag:`, in the same style (flow `{...}` or block).
            let after = text[tag_end..].trim_start_matches([' ', '\t']);
            if after.starts_with([',', '}']) {
                edits.push((tag_end, tag_end, format!(", digest: {new}")));
            } else {
                let line_start = text[..tag_start].rfind('\n').map_or(0, |i| i + 1);
                let indent: String = text[line_start..]
                    .chars()
                    .take_while(|c| *c == ' ')
                    .collect();
                let line_end = text[tag_end..]
                    .find('\n')
                    .map_or(text.len(), |i| tag_end + i);
                edits.push((line_end, line_end, format!("\n{indent}digest: {new}")));
            }
        }
        (Some(old), None) => {
            return Err(EditError::StaleDigest {
                file: path.into(),
                service: change.service.into(),
                digest: old.value.clone(),
            });
        }
        (None, None) => {}
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const ENV: &str = r#"# Staging: hand-written, with comments.
apiVersion: kairo.dev/v1alpha1
kind: Environment
metadata:
  name: staging
spec:
  namespace: ns
  branch: staging
  cluster: c
  defaults: &defaults
    replicas: 1
    hpa: {}
    pdb: {}

  services:
    # the API
    api:   {image: {tag: "1.0"},   replicas: 2}   # odd spacing stays
    web:
      image:
        tag: 'v1.2.3'   # quoted with single quotes
        digest: sha256:1111111111111111111111111111111111111111111111111111111111111111
    worker:
      image:
        tag: abc1234
      pinned: true
"#;

    fn change<'a>(service: &'a str, tag: &'a str, digest: Option<&'a str>) -> ImageChange<'a> {
        ImageChange {
            service,
            tag,
            digest,
            force: false,
        }
    }

    fn diff_lines(a: &str, b: &str) -> Vec<(String, String)> {
        a.lines()
            .zip(b.lines())
            .filter(|(x, y)| x != y)
            .map(|(x, y)| (x.to_string(), y.to_string()))
            .collect()
    }

    #[test]
    fn only_the_tag_changes() {
        let out = set_image("e.yaml", ENV, &change("api", "1.1", None))
            .unwrap()
            .unwrap();
        assert_eq!(out.lines().count(), ENV.lines().count());
        assert_eq!(
            diff_lines(ENV, &out),
            [(
                "    api:   {image: {tag: \"1.0\"},   replicas: 2}   # odd spacing stays".into(),
                "    api:   {image: {tag: \"1.1\"},   replicas: 2}   # odd spacing stays".into()
            )]
        );
    }

    #[test]
    fn quoting_style_is_kept_or_added_when_needed() {
        let digest = format!("sha256:{}", "2".repeat(64));
        let out = set_image("e.yaml", ENV, &change("web", "v1.3.0", Some(&digest)))
            .unwrap()
            .unwrap();
        assert_eq!(
            diff_lines(ENV, &out),
            [
                (
                    "        tag: 'v1.2.3'   # quoted with single quotes".into(),
                    "        tag: 'v1.3.0'   # quoted with single quotes".into()
                ),
                (
                    format!("        digest: sha256:{}", "1".repeat(64)),
                    format!("        digest: {digest}")
                ),
            ]
        );
        // A plain scalar that would read as a number gets quotes.
        let forced = ImageChange {
            force: true,
            ..change("worker", "1.0", None)
        };
        let out = set_image("e.yaml", ENV, &forced).unwrap().unwrap();
        assert!(out.contains("        tag: \"1.0\"\n"), "{out}");
    }

    #[test]
    fn a_digest_is_inserted_in_the_style_of_the_mapping() {
        let digest = format!("sha256:{}", "3".repeat(64));
        let out = set_image("e.yaml", ENV, &change("api", "1.1", Some(&digest)))
            .unwrap()
            .unwrap();
        assert!(
            out.contains(&format!(
                "    api:   {{image: {{tag: \"1.1\", digest: {digest}}},   replicas: 2}}"
            )),
            "{out}"
        );
        let forced = ImageChange {
            force: true,
            ..change("worker", "def5678", Some(&digest))
        };
        let out = set_image("e.yaml", ENV, &forced).unwrap().unwrap();
        assert!(
            out.contains(&format!(
                "        tag: def5678\n        digest: {digest}\n      pinned: true\n"
            )),
            "{out}"
        );
    }

    #[test]
    fn aliases_anchors_and_merges_are_refused_not_corrupted() {
        let anchored = ENV.replace(
            "    api:   {image: {tag: \"1.0\"},   replicas: 2}   # odd spacing stays\n",
            "    api:   {image: {tag: &shared \"1.0\"}}\n    other: {image: {tag: *shared}}\n",
        );
        // Editing the anchored literal would also change `other`.
        let r = set_image("e.yaml", &anchored, &change("api", "1.1", None));
        assert!(matches!(r, Err(EditError::Shared { .. })), "{r:?}");
        // The alias itself is not a literal of its own.
        assert!(matches!(
            set_image("e.yaml", &anchored, &change("other", "1.1", None)),
            Err(EditError::Shared { .. })
        ));
        let merged = ENV.replace(
            "    api:   {image: {tag: \"1.0\"},   replicas: 2}   # odd spacing stays\n",
            "    base: &base\n      image: {tag: \"1.0\"}\n    api:\n      <<: *base\n      replicas: 2\n",
        );
        assert!(matches!(
            set_image("e.yaml", &merged, &change("api", "1.1", None)),
            Err(EditError::Shared { .. })
        ));
    }

    #[test]
    fn no_ops_pins_and_bad_input() {
        assert_eq!(
            set_image("e.yaml", ENV, &change("api", "1.0", None)),
            Ok(None)
        );
        assert!(matches!(
            set_image("e.yaml", ENV, &change("worker", "x", None)),
            Err(EditError::Pinned { .. })
        ));
        assert!(matches!(
            set_image("e.yaml", ENV, &change("web", "v2", None)),
            Err(EditError::StaleDigest { .. })
        ));
        assert!(matches!(
            set_image("e.yaml", ENV, &change("nope", "v2", None)),
            Err(EditError::UnknownService { .. })
        ));
        assert!(matches!(
            set_image("e.yaml", ENV, &change("api", "a:b", None)),
            Err(EditError::InvalidTag { .. })
        ));
        assert!(matches!(
            set_image("e.yaml", ENV, &change("api", "1", Some("md5:x"))),
            Err(EditError::InvalidDigest { .. })
        ));
    }
}
