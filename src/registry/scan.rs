//! One image's next tag: list, select (pure, `model::tagpolicy`), resolve the digest. And a
//! bounded concurrent scan of many images, where one failing registry never stops the others.

use std::sync::Arc;

use serde::Serialize;

use super::{Client, ImageName, RegistryError};
use crate::model::tagpolicy::{self, BuildTimes, Explanation, Policy, PolicyError, UpdatePolicy};

/// What the policy picks now for an image.
#[derive(Debug, Clone, Serialize)]
pub struct Latest {
    pub tag: String,
    /// The manifest digest of `tag`, from `HEAD`.
    pub digest: String,
    /// How many tags the registry listed.
    pub tags_seen: usize,
    pub explanation: Explanation,
}

/// Why an image has no answer in this scan. Neither kind means "no new tag": the watcher
/// leaves the image as it is and reports the error.
#[derive(Debug, thiserror::Error)]
pub enum ScanError {
    #[error(transparent)]
    Registry(#[from] RegistryError),
    #[error("{error}")]
    Policy {
        error: PolicyError,
        explanation: Box<Explanation>,
        tags_seen: usize,
    },
}

/// How many `created` lookups of one `newestBuild` image run at once.
const BUILD_TIME_CONCURRENCY: usize = 4;

/// Lists `image`'s tags, applies `policy`, and resolves the chosen tag's digest.
pub async fn latest(
    client: &Client,
    image: &ImageName,
    policy: &UpdatePolicy,
) -> Result<Latest, ScanError> {
    lookup(client, image, policy, true).await
}

/// `latest`, with an explanation only when `explain` (or when the policy fails): a scan of
/// many images needs only the choice (`tagpolicy::choose`, no sorting, little memory).
async fn lookup(
    client: &Client,
    image: &ImageName,
    policy: &UpdatePolicy,
    explain: bool,
) -> Result<Latest, ScanError> {
    let tags = client.list_tags(image).await?;
    let mut times = BuildTimes::new();
    if let Policy::NewestBuild { max_candidates } = policy.policy {
        let (cands, _) = tagpolicy::candidates(policy, &tags);
        // Over the cap, `evaluate` reports it without a single request being spent.
        if cands.len() <= max_candidates as usize {
            let sem = Arc::new(tokio::sync::Semaphore::new(BUILD_TIME_CONCURRENCY));
            let mut tasks = tokio::task::JoinSet::new();
            for c in cands {
                let (client, image, sem) = (client.clone(), image.clone(), sem.clone());
                tasks.spawn(async move {
                    let _permit = sem.acquire_owned().await;
                    let t = client.created_time(&image, &c.tag).await;
                    (c.tag, t)
                });
            }
            while let Some(joined) = tasks.join_next().await {
                let (tag, t) = joined.expect("build time task");
                if let Some(t) = t? {
                    times.insert(tag, t);
                }
            }
        }
    }
    let (explanation, chosen) = if explain {
        tagpolicy::evaluate(policy, &tags, &times)
    } else {
        match tagpolicy::choose(policy, &tags, &times) {
            Ok(tag) => (Explanation::default(), Ok(tag)),
            Err(_) => tagpolicy::evaluate(policy, &tags, &times),
        }
    };
    let tag = chosen.map_err(|error| ScanError::Policy {
        error,
        explanation: Box::new(explanation.clone()),
        tags_seen: tags.len(),
    })?;
    let digest = client.resolve_digest(image, &tag).await?;
    Ok(Latest {
        tag,
        digest,
        tags_seen: tags.len(),
        explanation,
    })
}

/// Scans every image with at most `concurrency` at a time; results in input order. Results
/// carry an explanation only for images whose policy failed.
pub async fn scan(
    client: &Client,
    images: &[(ImageName, UpdatePolicy)],
    concurrency: usize,
) -> Vec<Result<Latest, ScanError>> {
    let sem = Arc::new(tokio::sync::Semaphore::new(concurrency.max(1)));
    let mut tasks = tokio::task::JoinSet::new();
    for (i, (image, policy)) in images.iter().enumerate() {
        let (client, image, policy, sem) =
            (client.clone(), image.clone(), policy.clone(), sem.clone());
        tasks.spawn(async move {
            let _permit = sem.acquire_owned().await;
            let deadline = client.lookup_deadline();
            let result = tokio::time::timeout(deadline, lookup(&client, &image, &policy, false))
                .await
                .unwrap_or_else(|_| {
                    Err(ScanError::Registry(RegistryError::Timeout {
                        registry: image.registry.clone(),
                        what: format!("{} (the whole lookup)", image.repository),
                        timeout: deadline,
                    }))
                });
            (i, result)
        });
    }
    let mut out: Vec<Option<Result<Latest, ScanError>>> = images.iter().map(|_| None).collect();
    while let Some(joined) = tasks.join_next().await {
        let (i, result) = joined.expect("scan task");
        out[i] = Some(result);
    }
    out.into_iter()
        .map(|r| r.expect("every task reports"))
        .collect()
}
