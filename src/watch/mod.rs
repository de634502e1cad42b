//! The registry watcher's core: which images are watched, what a scan of them found, which
//! bumps follow, and writing those bumps through the one write path (`bump::run_push`).
//!
//! Git is the watcher's only state. The watched set is read from the remote branch's freshly
//! fetched tip, and every bump is an intent (`Change::Set`) re-planned on the tip it is pushed
//! onto, so a re-run, a restart or a second replica finds a bump already there and commits
//! nothing. All bumps of one scan become one commit per environment.
//!
//! This module must not choose tags (that is `model::tagpolicy`, pure) nor speak HTTP itself
//! (that is `registry`). Its git work is synchronous and runs wherever the caller puts it: the
//! command's thread for `kairo watch --once`, the daemon's one writer thread otherwise.
//!
//! Architecture Invariant: an image whose registry failed in a scan (or whose policy chose
//! nothing) is never bumped and never reverted in that scan; it is reported as unavailable.

pub mod command;

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use serde::Serialize;

use crate::bump::{self, BumpError, Change, ImageSpec, Intent, Publish, RetryPolicy};
use crate::git::{WriteError, Writer};
use crate::model::tagpolicy::{Policy, UpdatePolicy};
use crate::model::{ENVIRONMENTS_DIR, Model};
use crate::pipeline::{Inputs, PipelineError};
use crate::policy;
use crate::registry::{self, Client, ImageName, Latest, ScanError};

/// One service's image, watched in one environment.
#[derive(Debug, Clone)]
pub struct Watched {
    pub environment: String,
    pub service: String,
    pub image: ImageName,
    pub policy: UpdatePolicy,
    pub current_tag: String,
    pub current_digest: Option<String>,
}

impl Watched {
    /// `staging/api-server`: how logs and reports name it.
    pub fn key(&self) -> String {
        format!("{}/{}", self.environment, self.service)
    }
}

/// A service with an update policy whose repository is not a valid image name.
#[derive(Debug, Clone, Serialize)]
pub struct BadImage {
    pub environment: String,
    pub service: String,
    pub message: String,
}

/// Every enabled, unpinned service with an update policy, in every environment, sorted by
/// environment then service. Pinned services are left out: the watcher never moves them.
pub fn watched(model: &Model) -> (Vec<Watched>, Vec<BadImage>) {
    let mut out = Vec::new();
    let mut bad = Vec::new();
    for env in &model.environments {
        for r in &env.releases {
            let Some(policy) = &r.update else { continue };
            if r.pinned {
                continue;
            }
            match ImageName::parse(&r.image.repository) {
                Ok(image) => out.push(Watched {
                    environment: env.name.clone(),
                    service: r.name.clone(),
                    image,
                    policy: policy.clone(),
                    current_tag: r.image.tag.clone(),
                    current_digest: r.image.digest.clone(),
                }),
                Err(message) => bad.push(BadImage {
                    environment: env.name.clone(),
                    service: r.name.clone(),
                    message,
                }),
            }
        }
    }
    (out, bad)
}

/// The bump `latest` calls for, if any. A `digest` policy always pins the digest; other
/// policies pin it when the environment pins one today (a stale digest would be wrong).
pub fn decide(w: &Watched, latest: &Latest) -> Option<ImageSpec> {
    let pin = matches!(w.policy.policy, Policy::Digest { .. }) || w.current_digest.is_some();
    let due = latest.tag != w.current_tag
        || (pin && w.current_digest.as_deref() != Some(latest.digest.as_str()));
    due.then(|| ImageSpec {
        service: w.service.clone(),
        tag: latest.tag.clone(),
        digest: pin.then(|| latest.digest.clone()),
    })
}

/// What a scan found for one watched image.
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "status", rename_all = "camelCase")]
pub enum Found {
    UpToDate {
        tag: String,
        tags_seen: usize,
    },
    Bump {
        from: String,
        to: String,
        #[serde(skip_serializing_if = "Option::is_none")]
        digest: Option<String>,
        tags_seen: usize,
    },
    /// The registry failed: nothing is concluded about this image in this scan.
    Unavailable {
        registry: String,
        code: String,
        message: String,
    },
    /// The policy chose nothing (an empty result is an error, never "no change").
    PolicyError {
        message: String,
        tags_seen: usize,
    },
}

/// One image's result in a scan.
#[derive(Debug, Clone, Serialize)]
pub struct ImageReport {
    pub environment: String,
    pub service: String,
    pub image: String,
    #[serde(flatten)]
    pub found: Found,
}

/// A scan's results and the bumps they call for, by environment.
#[derive(Debug, Default)]
pub struct Scan {
    pub images: Vec<ImageReport>,
    pub bumps: BTreeMap<String, Vec<ImageSpec>>,
}

impl Scan {
    pub fn unavailable(&self) -> usize {
        self.images
            .iter()
            .filter(|i| !matches!(i.found, Found::UpToDate { .. } | Found::Bump { .. }))
            .count()
    }
}

/// Scans `images` (at most `concurrency` at once) and decides their bumps.
pub async fn scan(client: &Client, images: &[Watched], concurrency: usize) -> Scan {
    let pairs: Vec<(ImageName, UpdatePolicy)> = images
        .iter()
        .map(|w| (w.image.clone(), w.policy.clone()))
        .collect();
    let results = registry::scan(client, &pairs, concurrency).await;
    let mut out = Scan::default();
    for (w, result) in images.iter().zip(results) {
        out.images.push(report(w, result, &mut out.bumps));
    }
    out
}

/// One image's report; a due bump is added to `bumps`.
pub fn report(
    w: &Watched,
    result: Result<Latest, ScanError>,
    bumps: &mut BTreeMap<String, Vec<ImageSpec>>,
) -> ImageReport {
    let found = match result {
        Ok(latest) => match decide(w, &latest) {
            Some(spec) => {
                let found = Found::Bump {
                    from: match &w.current_digest {
                        Some(d) => format!("{}@{d}", w.current_tag),
                        None => w.current_tag.clone(),
                    },
                    to: spec.tag.clone(),
                    digest: spec.digest.clone(),
                    tags_seen: latest.tags_seen,
                };
                bumps.entry(w.environment.clone()).or_default().push(spec);
                found
            }
            None => Found::UpToDate {
                tag: latest.tag,
                tags_seen: latest.tags_seen,
            },
        },
        Err(ScanError::Registry(e)) => {
            tracing::warn!(image = %w.image, error = %e, "registry unavailable; image skipped in this scan");
            Found::Unavailable {
                registry: w.image.registry.clone(),
                code: e.code(),
                message: e.to_string(),
            }
        }
        Err(ScanError::Policy {
            error, tags_seen, ..
        }) => {
            tracing::warn!(image = %w.image, error = %error, "update policy chose no tag");
            Found::PolicyError {
                message: error.to_string(),
                tags_seen,
            }
        }
    };
    ImageReport {
        environment: w.environment.clone(),
        service: w.service.clone(),
        image: w.image.to_string(),
        found,
    }
}

/// How bumps are committed and pushed.
#[derive(Debug, Clone)]
pub struct WriteSettings {
    pub remote: String,
    /// The remote branch watched and pushed to; default: the current branch's upstream.
    pub branch: Option<String>,
    pub check_policies: bool,
    pub policy: policy::CheckOptions,
    pub retry: RetryPolicy,
}

#[derive(Debug, thiserror::Error)]
pub enum WatchError {
    #[error(transparent)]
    Write(#[from] WriteError),
    #[error(transparent)]
    Pipeline(#[from] PipelineError),
    #[error("the remote `{remote}` has no branch `{branch}`")]
    NoRemoteBranch { remote: String, branch: String },
}

/// The remote branch the watcher reads and writes.
pub fn remote_branch(writer: &Writer, settings: &WriteSettings) -> Result<String, WatchError> {
    if let Some(b) = &settings.branch {
        return Ok(b.clone());
    }
    let head = writer.head()?;
    let branch = head.branch.ok_or(WriteError::DetachedHead)?;
    Ok(writer.upstream_branch(&branch))
}

/// Fetches the remote branch and reads `dirs` at its tip: what Git says now, not what a
/// possibly stale working tree says. Returns the tip too.
pub fn tip_files(
    writer: &Writer,
    settings: &WriteSettings,
    dirs: &[&str],
) -> Result<(git2::Oid, BTreeMap<String, Vec<u8>>), WatchError> {
    let branch = remote_branch(writer, settings)?;
    let tip =
        writer
            .fetch(&settings.remote, &branch)?
            .ok_or_else(|| WatchError::NoRemoteBranch {
                remote: settings.remote.clone(),
                branch: branch.clone(),
            })?;
    Ok((tip, writer.files_at(tip, dirs)?.files))
}

/// Fetches the remote branch and loads the model at its tip (the watched set).
pub fn load(writer: &Writer, settings: &WriteSettings) -> Result<Model, WatchError> {
    let (tip, files) = tip_files(writer, settings, &[ENVIRONMENTS_DIR])?;
    let inputs = Inputs::Files {
        label: tip.to_string(),
        files,
        bootstrapped: None,
    };
    Ok(inputs.model()?)
}

/// Whether a failed write may succeed on a later attempt: a push the remote rejected (someone
/// pushed first), or another kairo holding the repository.
pub fn retryable(e: &crate::bump::BumpError) -> bool {
    matches!(
        e,
        crate::bump::BumpError::Write(crate::git::WriteError::GaveUp { .. })
            | crate::bump::BumpError::Lock(_)
    )
}

/// One environment's write.
#[derive(Debug)]
pub struct Written {
    pub environment: String,
    pub result: Result<bump::Outcome, BumpError>,
    /// Rejected pushes retried (re-planned on the new tip).
    pub retries: u32,
}

/// Commits and pushes each environment's bumps in one commit, through the shared write path
/// (structured edit, re-render, policies, safe push with re-planning on rejection). `sleep`
/// is how a rejected push waits before its next attempt.
pub fn write(
    root: &Path,
    writer: &Writer,
    bumps: &BTreeMap<String, Vec<ImageSpec>>,
    settings: &WriteSettings,
    sleep: &mut dyn FnMut(Duration),
) -> Vec<Written> {
    bumps
        .iter()
        .map(|(environment, specs)| {
            write_env(
                root,
                writer,
                environment,
                specs,
                settings,
                settings.retry,
                0,
                sleep,
            )
        })
        .collect()
}

/// One environment's bumps in one commit, pushed with `retry` deciding about rejections.
/// The daemon passes a single attempt and requeues a rejected one itself, so its writer thread
/// never sleeps on a retry; `earlier_attempts` are the attempts it made before this call, so
/// the log counts them all.
#[allow(clippy::too_many_arguments)]
pub fn write_env(
    root: &Path,
    writer: &Writer,
    environment: &str,
    specs: &[ImageSpec],
    settings: &WriteSettings,
    retry: RetryPolicy,
    earlier_attempts: u32,
    sleep: &mut dyn FnMut(Duration),
) -> Written {
    let intent = Intent {
        environment: environment.to_string(),
        change: Change::Set(specs.to_vec()),
        force: false,
        check_policies: settings.check_policies,
        policy: settings.policy.clone(),
    };
    let publish = Publish {
        commit: true,
        push: true,
        remote: settings.remote.clone(),
        branch: settings.branch.clone(),
        message: None,
        retry,
    };
    let started = std::time::Instant::now();
    let mut retries = 0;
    let result = bump::run_push(root, writer, &intent, &publish, &mut |d| {
        retries += 1;
        sleep(d);
    });
    let elapsed_ms = started.elapsed().as_millis() as u64;
    match &result {
        Ok(o) => tracing::info!(
            environment,
            bumps = specs.len(),
            commit = o.commit.as_deref().unwrap_or("-"),
            changed = o.changed,
            attempts = earlier_attempts + o.attempts,
            elapsed_ms,
            "bumps written"
        ),
        // A lost race is normal and is retried (by the caller's policy): a warning, not an error.
        Err(e) if retryable(e) => {
            tracing::warn!(environment, bumps = specs.len(), attempts = earlier_attempts + retries + 1, elapsed_ms, error = %e, "bumps not written yet")
        }
        Err(e) => {
            tracing::error!(environment, bumps = specs.len(), elapsed_ms, error = %e, "bumps not written")
        }
    }
    Written {
        environment: environment.to_string(),
        result,
        retries,
    }
}

/// The watched images whose repository is `image`.
pub fn matching<'a>(images: &'a [Watched], image: &ImageName) -> Vec<&'a Watched> {
    images.iter().filter(|w| &w.image == image).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::tagpolicy::{Explanation, Range};

    fn watched(policy: Policy, tag: &str, digest: Option<&str>) -> Watched {
        Watched {
            environment: "staging".into(),
            service: "api".into(),
            image: ImageName::parse("ghcr.io/acme/api").unwrap(),
            policy: UpdatePolicy::new(policy),
            current_tag: tag.into(),
            current_digest: digest.map(str::to_string),
        }
    }

    fn latest(tag: &str, digest: &str) -> Latest {
        Latest {
            tag: tag.into(),
            digest: digest.into(),
            tags_seen: 3,
            explanation: Explanation::default(),
        }
    }

    #[test]
    fn decides_bumps_and_pins_digests_only_where_due() {
        let semver = || Policy::Semver(Range::parse("^1.0").unwrap());
        let w = watched(semver(), "1.0.0", None);
        assert_eq!(decide(&w, &latest("1.0.0", "sha256:a")), None);
        let spec = decide(&w, &latest("1.1.0", "sha256:b")).unwrap();
        assert_eq!((spec.tag.as_str(), spec.digest), ("1.1.0", None));
        // A pinned digest is kept current, or the bump would leave a stale one.
        let w = watched(semver(), "1.0.0", Some("sha256:a"));
        assert_eq!(decide(&w, &latest("1.0.0", "sha256:a")), None);
        let spec = decide(&w, &latest("1.0.0", "sha256:c")).unwrap();
        assert_eq!(spec.digest.as_deref(), Some("sha256:c"));
        // `digest` follows a moving tag: a new digest under the same tag is a bump.
        let digest = || Policy::Digest {
            tag: "staging".into(),
        };
        let w = watched(digest(), "staging", None);
        let spec = decide(&w, &latest("staging", "sha256:a")).unwrap();
        assert_eq!(spec.digest.as_deref(), Some("sha256:a"));
        let w = watched(digest(), "staging", Some("sha256:a"));
        assert_eq!(decide(&w, &latest("staging", "sha256:a")), None);
        assert!(decide(&w, &latest("staging", "sha256:b")).is_some());
    }

    #[test]
    fn an_unavailable_image_is_never_a_bump() {
        let w = watched(
            Policy::Alphabetical(crate::model::tagpolicy::Order::Asc),
            "a",
            None,
        );
        let mut bumps = BTreeMap::new();
        let err = ScanError::Registry(crate::registry::RegistryError::Status {
            registry: "ghcr.io".into(),
            what: "tags/list".into(),
            status: 503,
            code: None,
        });
        let r = report(&w, Err(err), &mut bumps);
        assert!(bumps.is_empty());
        assert!(matches!(r.found, Found::Unavailable { ref code, .. } if code == "503"));
    }
}
