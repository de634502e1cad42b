//! The OCI distribution client: tags, digests and build times of watched images.
//!
//! This module owns every request kairo makes to a container registry: the `GET /v2/`
//! challenge, Bearer tokens (cached until `expires_in`) and Basic auth with docker's
//! credentials, `tags/list` paging through `Link: rel="next"`, `HEAD` for digests (a `GET` of a
//! manifest counts against Docker Hub's pull quota), per-registry rate limits, and bounded
//! responses and timeouts. It must not choose tags (that is `model::tagpolicy`, pure) and must
//! not write anything.
//!
//! Architecture Invariant: a failed request (429, 5xx, timeout, a body that is cut short, too
//! large or not what the API promises) is an error for that image, never an empty tag list.
//! Architecture Invariant: no credential, token or `Authorization` value appears in an error or
//! a log line, and `Authorization` is never sent to another host on a redirect.

mod client;
mod credentials;
mod limit;
mod name;
mod scan;

pub use client::{Client, ClientConfig, MAX_TOKEN_BODY, Rate};
pub use credentials::{Credentials, CredentialsError, DockerConfig};
pub use name::{DOCKER_HUB_HOST, ImageName};
pub use scan::{Latest, ScanError, latest, scan};

use std::time::Duration;

/// Why a registry request failed. Messages name the registry and repository, never secrets.
#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    #[error("registry `{registry}` rate-limited kairo (HTTP 429){}", retry_text(.retry_after))]
    RateLimited {
        registry: String,
        retry_after: Option<Duration>,
    },
    /// Not sent: the registry asked kairo to stay away (an earlier 429 or an exhausted
    /// `ratelimit-remaining`) and the pause has `left` to run. The lookup was skipped, not
    /// failed by the registry: metrics count it apart from registry errors.
    #[error("registry `{registry}` is paused after a rate limit for {}s more; not asked", .left.as_secs())]
    Paused { registry: String, left: Duration },
    #[error("registry `{registry}` answered HTTP {status} for `{what}`")]
    Status {
        registry: String,
        what: String,
        status: u16,
        /// The registry's error code (`NAME_UNKNOWN`, `DENIED`...), when it sent one.
        code: Option<String>,
    },
    #[error("registry `{registry}` refused the credentials for `{what}` (HTTP 401)")]
    Unauthorized { registry: String, what: String },
    #[error("request to registry `{registry}` failed: {message}")]
    Transport { registry: String, message: String },
    #[error("registry `{registry}` took longer than {timeout:?} for `{what}`")]
    Timeout {
        registry: String,
        what: String,
        timeout: Duration,
    },
    #[error("the response of registry `{registry}` for `{what}` is larger than {limit} bytes")]
    TooLarge {
        registry: String,
        what: String,
        limit: usize,
    },
    #[error("the response of registry `{registry}` for `{what}` is not valid: {message}")]
    Invalid {
        registry: String,
        what: String,
        message: String,
    },
    /// The Bearer token request (to the challenge's `realm`, often another host) failed: a
    /// kind of its own, so a failing token server is not taken for a failing registry request.
    #[error("registry `{registry}`: the token request to `{realm}` for `{what}` {problem}")]
    Token {
        registry: String,
        /// The token server's host.
        realm: String,
        what: String,
        problem: TokenProblem,
    },
    /// Transparent: the credentials error names the config file or the helper and why.
    #[error(transparent)]
    Credentials(#[from] CredentialsError),
}

/// How a token request failed (`RegistryError::Token`).
#[derive(Debug, thiserror::Error)]
pub enum TokenProblem {
    #[error("was answered with more than {limit} bytes")]
    TooLarge { limit: usize },
    #[error("took longer than {timeout:?}")]
    Timeout { timeout: Duration },
    #[error("failed: {message}")]
    Transport { message: String },
    #[error("was answered with HTTP {status}")]
    Status { status: u16 },
    #[error("was not answered with a token: {message}")]
    Invalid { message: String },
}

impl TokenProblem {
    /// The `code` label: `token_too_large`, `token_timeout`, `token_500`...
    fn code(&self) -> String {
        let kind = match self {
            TokenProblem::TooLarge { .. } => "too_large".to_string(),
            TokenProblem::Timeout { .. } => "timeout".to_string(),
            TokenProblem::Transport { .. } => "transport".to_string(),
            TokenProblem::Status { status } => status.to_string(),
            TokenProblem::Invalid { .. } => "invalid".to_string(),
        };
        format!("token_{kind}")
    }
}

fn retry_text(d: &Option<Duration>) -> String {
    d.map(|d| format!("; retry after {}s", d.as_secs()))
        .unwrap_or_default()
}

impl RegistryError {
    /// A short label for metrics and JSON: `429`, `500`, `timeout`, `invalid`, `paused`...
    pub fn code(&self) -> String {
        match self {
            RegistryError::RateLimited { .. } => "429".into(),
            RegistryError::Paused { .. } => "paused".into(),
            RegistryError::Status { status, .. } => status.to_string(),
            RegistryError::Unauthorized { .. } => "401".into(),
            RegistryError::Transport { .. } => "transport".into(),
            RegistryError::Timeout { .. } => "timeout".into(),
            RegistryError::TooLarge { .. } => "too_large".into(),
            RegistryError::Invalid { .. } => "invalid".into(),
            RegistryError::Token { problem, .. } => problem.code(),
            RegistryError::Credentials(_) => "credentials".into(),
        }
    }

    pub fn hint(&self) -> Option<&'static str> {
        match self {
            RegistryError::RateLimited { .. } | RegistryError::Paused { .. } => Some(
                "kairo retries on the next scan; log in (docker login) for a higher Docker Hub limit",
            ),
            RegistryError::Unauthorized { .. } => Some(
                "check the credentials in docker's config.json (`docker login <registry>`) or DOCKER_CONFIG",
            ),
            RegistryError::Status { status: 404, .. } => {
                Some("check the repository name in the catalog")
            }
            _ => None,
        }
    }
}
