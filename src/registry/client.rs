//! The HTTP side of the registry client: one `reqwest` client (rustls), authentication,
//! budgets, bounded bodies.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::Engine;
use reqwest::header::{ACCEPT, AUTHORIZATION, HeaderMap, WWW_AUTHENTICATE};
use reqwest::{Method, StatusCode};
use serde::Deserialize;
use tokio::time::Instant;

use super::credentials::{Credentials, DockerConfig};
use super::limit::Limiter;
use super::limit::MAX_PAUSE;
pub use super::limit::Rate;
use super::name::ImageName;
use super::{RegistryError, TokenProblem};

/// Manifest media types kairo accepts, so the digest is the one docker would pull.
pub const MANIFEST_ACCEPT: &str = "application/vnd.oci.image.index.v1+json, \
application/vnd.docker.distribution.manifest.list.v2+json, \
application/vnd.oci.image.manifest.v1+json, \
application/vnd.docker.distribution.manifest.v2+json";

/// Tokens without `expires_in` live 60 seconds (the distribution spec's default).
const DEFAULT_TOKEN_LIFETIME: Duration = Duration::from_secs(60);
/// The largest token reply read: a token (a JWT with its claims) is a few kilobytes.
pub const MAX_TOKEN_BODY: usize = 1 << 20;
/// A 429 without `Retry-After` keeps the registry paused this long.
const DEFAULT_RETRY_AFTER: Duration = Duration::from_secs(60);

pub struct ClientConfig {
    /// Whole-request limit (connect, headers and body).
    pub timeout: Duration,
    pub connect_timeout: Duration,
    /// The largest response body read (tag lists, manifests, config blobs, tokens).
    pub max_body: usize,
    /// `n` asked of `tags/list`.
    pub page_size: u32,
    /// Tag-list pages followed at most, so a registry linking in circles ends.
    pub max_pages: usize,
    /// The most one image's lookup (every page, the digest) may take: a registry answering
    /// each page just inside `timeout` must not hold a scan for hours.
    pub lookup_deadline: Duration,
    /// Request budgets by registry host; others get `default_rate` (Docker Hub
    /// `Rate::DOCKER_HUB`).
    pub rates: BTreeMap<String, Rate>,
    pub default_rate: Rate,
    /// Registries spoken to over plain HTTP besides loopback ones.
    pub plain_http: Vec<String>,
    pub docker_config: DockerConfig,
}

impl Default for ClientConfig {
    fn default() -> Self {
        ClientConfig {
            timeout: Duration::from_secs(30),
            connect_timeout: Duration::from_secs(10),
            max_body: 16 << 20,
            page_size: 1000,
            max_pages: 1000,
            lookup_deadline: Duration::from_secs(120),
            rates: BTreeMap::new(),
            default_rate: Rate::DEFAULT,
            plain_http: Vec::new(),
            docker_config: DockerConfig::default(),
        }
    }
}

/// A registry client; cheap to clone, shared by concurrent scans.
#[derive(Clone)]
pub struct Client {
    inner: Arc<Inner>,
}

struct Inner {
    http: reqwest::Client,
    config: ClientConfig,
    limiter: Limiter,
    /// (registry, scope) -> Authorization value and its expiry.
    tokens: Mutex<BTreeMap<(String, String), CachedAuth>>,
    credentials: Mutex<BTreeMap<String, Option<Credentials>>>,
}

/// An `Authorization` value and when it expires (`None`: Basic, never).
type CachedAuth = (String, Option<Instant>);

/// A response whose body was read within the limit.
pub struct Reply {
    pub headers: HeaderMap,
    pub body: Vec<u8>,
}

#[derive(Deserialize)]
struct TagList {
    tags: Option<Vec<String>>,
}

#[derive(Deserialize)]
struct TokenReply {
    token: Option<String>,
    access_token: Option<String>,
    expires_in: Option<u64>,
}

#[derive(Deserialize)]
struct ErrorBody {
    errors: Vec<ErrorEntry>,
}

#[derive(Deserialize)]
struct ErrorEntry {
    code: String,
}

/// A parsed `WWW-Authenticate` challenge.
#[derive(Debug, PartialEq, Eq)]
enum Challenge {
    Basic,
    Bearer { params: BTreeMap<String, String> },
}

fn parse_challenge(value: &str) -> Option<Challenge> {
    let (scheme, rest) = value.trim().split_once(' ').unwrap_or((value.trim(), ""));
    if scheme.eq_ignore_ascii_case("basic") {
        return Some(Challenge::Basic);
    }
    if !scheme.eq_ignore_ascii_case("bearer") {
        return None;
    }
    let mut params = BTreeMap::new();
    let mut rest = rest.trim();
    while !rest.is_empty() {
        let (key, after) = rest.split_once('=')?;
        let key = key.trim().to_ascii_lowercase();
        let after = after.trim_start();
        let (value, after) = if let Some(quoted) = after.strip_prefix('"') {
            let end = quoted.find('"')?;
            (&quoted[..end], &quoted[end + 1..])
        } else {
            let end = after.find(',').unwrap_or(after.len());
            (after[..end].trim(), &after[end..])
        };
        params.insert(key, value.to_string());
        rest = after.trim_start().trim_start_matches(',').trim_start();
    }
    Some(Challenge::Bearer { params })
}

/// The `rel="next"` target of a `Link` header.
fn next_link(headers: &HeaderMap) -> Option<String> {
    for value in headers.get_all(reqwest::header::LINK) {
        let value = value.to_str().ok()?;
        for link in value.split(',') {
            let (target, params) = link.split_once(';').unwrap_or((link, ""));
            let target = target.trim().strip_prefix('<')?.strip_suffix('>')?;
            let is_next = params.split(';').any(|p| {
                let p = p.trim().replace(' ', "");
                p == "rel=\"next\"" || p == "rel=next"
            });
            if is_next {
                return Some(target.to_string());
            }
        }
    }
    None
}

/// `Retry-After`: seconds or an HTTP date, at most `MAX_PAUSE`.
fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    retry_after_uncapped(headers).map(|d| d.min(MAX_PAUSE))
}

fn retry_after_uncapped(headers: &HeaderMap) -> Option<Duration> {
    let value = headers
        .get(reqwest::header::RETRY_AFTER)?
        .to_str()
        .ok()?
        .trim();
    if let Ok(secs) = value.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let when = jiff::fmt::rfc2822::parse(value).ok()?.timestamp();
    let now = jiff::Timestamp::now();
    Some(Duration::try_from(when.duration_since(now)).unwrap_or(Duration::ZERO))
}

/// `ratelimit-remaining: 0;w=21600` (Docker Hub): the window to wait when nothing remains.
fn exhausted_window(headers: &HeaderMap) -> Option<Duration> {
    let value = headers.get("ratelimit-remaining")?.to_str().ok()?;
    let mut parts = value.split(';');
    let remaining: u64 = parts.next()?.trim().parse().ok()?;
    if remaining > 0 {
        return None;
    }
    let window = parts
        .find_map(|p| p.trim().strip_prefix("w=").and_then(|w| w.parse().ok()))
        .map_or(DEFAULT_RETRY_AFTER, Duration::from_secs);
    Some(window.min(MAX_PAUSE))
}

impl Client {
    pub fn new(config: ClientConfig) -> Result<Client, RegistryError> {
        let http = reqwest::Client::builder()
            .use_rustls_tls()
            .timeout(config.timeout)
            .connect_timeout(config.connect_timeout)
            // reqwest drops `Authorization` when a redirect leaves the host (blob downloads
            // are redirected to storage hosts); at most 5 hops.
            .redirect(reqwest::redirect::Policy::limited(5))
            .user_agent(concat!("kairo/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| RegistryError::Transport {
                registry: String::new(),
                message: e.to_string(),
            })?;
        let rates = config.rates.clone();
        let default_rate = config.default_rate;
        let limiter = Limiter::new(move |registry| {
            rates
                .get(registry)
                .copied()
                .unwrap_or(if registry == super::name::DOCKER_HUB_HOST {
                    Rate::DOCKER_HUB.min_of(default_rate)
                } else {
                    default_rate
                })
        });
        Ok(Client {
            inner: Arc::new(Inner {
                http,
                config,
                limiter,
                tokens: Mutex::new(BTreeMap::new()),
                credentials: Mutex::new(BTreeMap::new()),
            }),
        })
    }

    /// The most one image's lookup may take (`ClientConfig::lookup_deadline`).
    pub fn lookup_deadline(&self) -> Duration {
        self.inner.config.lookup_deadline
    }

    fn base(&self, image: &ImageName) -> String {
        let plain = image.is_loopback()
            || self
                .inner
                .config
                .plain_http
                .iter()
                .any(|r| r == &image.registry);
        let scheme = if plain { "http" } else { "https" };
        format!("{scheme}://{}", image.registry)
    }

    /// Every tag of the repository, following `Link: rel="next"` pages.
    pub async fn list_tags(&self, image: &ImageName) -> Result<Vec<String>, RegistryError> {
        let base = self.base(image);
        let mut url = format!(
            "{base}/v2/{}/tags/list?n={}",
            image.repository, self.inner.config.page_size
        );
        let mut tags = Vec::new();
        let mut fetched = std::collections::BTreeSet::new();
        for _ in 0..self.inner.config.max_pages {
            if !fetched.insert(url.clone()) {
                return Err(RegistryError::Invalid {
                    registry: image.registry.clone(),
                    what: format!("{}/tags/list", image.repository),
                    message: "the pages link in a circle (`Link: rel=\"next\"` names a page already read)".into(),
                });
            }
            let reply = self
                .send(image, Method::GET, &url, "application/json", "tags/list")
                .await?;
            let page: TagList =
                serde_json::from_slice(&reply.body).map_err(|e| RegistryError::Invalid {
                    registry: image.registry.clone(),
                    what: format!("{}/tags/list", image.repository),
                    message: e.to_string(),
                })?;
            tags.extend(page.tags.unwrap_or_default());
            match next_link(&reply.headers) {
                None => return Ok(tags),
                Some(next) => {
                    url = if next.starts_with('/') {
                        format!("{base}{next}")
                    } else if next.starts_with(&format!("{base}/")) {
                        next
                    } else {
                        return Err(RegistryError::Invalid {
                            registry: image.registry.clone(),
                            what: format!("{}/tags/list", image.repository),
                            message: "the next page is on another host".into(),
                        });
                    };
                }
            }
        }
        Err(RegistryError::Invalid {
            registry: image.registry.clone(),
            what: format!("{}/tags/list", image.repository),
            message: format!("more than {} pages", self.inner.config.max_pages),
        })
    }

    /// The manifest digest of `reference` (a tag), by `HEAD`; a `GET` only when the registry
    /// sends no `Docker-Content-Digest`.
    pub async fn resolve_digest(
        &self,
        image: &ImageName,
        reference: &str,
    ) -> Result<String, RegistryError> {
        let url = format!(
            "{}/v2/{}/manifests/{reference}",
            self.base(image),
            image.repository
        );
        let what = format!("{}:{reference}", image.repository);
        let invalid = |message: String| RegistryError::Invalid {
            registry: image.registry.clone(),
            what: what.clone(),
            message,
        };
        let reply = self
            .send(image, Method::HEAD, &url, MANIFEST_ACCEPT, &what)
            .await?;
        let digest = match reply.headers.get("docker-content-digest") {
            Some(v) => v
                .to_str()
                .map_err(|_| invalid("Docker-Content-Digest is not text".into()))?
                .to_string(),
            None => {
                let reply = self
                    .send(image, Method::GET, &url, MANIFEST_ACCEPT, &what)
                    .await?;
                format!("sha256:{}", crate::apply::sha256_hex(&reply.body))
            }
        };
        if let Some(problem) = crate::model::names::digest_problem(&digest) {
            return Err(invalid(format!("digest `{digest}` {problem}")));
        }
        Ok(digest)
    }

    /// The image config's `created` time of `reference`. For an index, the `linux/amd64`
    /// image (else the first). Costs two or three `GET`s: Docker Hub counts them as pulls.
    pub async fn created_time(
        &self,
        image: &ImageName,
        reference: &str,
    ) -> Result<Option<jiff::Timestamp>, RegistryError> {
        let what = format!("{}:{reference}", image.repository);
        let invalid = |message: String| RegistryError::Invalid {
            registry: image.registry.clone(),
            what: what.clone(),
            message,
        };
        let base = self.base(image);
        let mut manifest = self
            .get_json(
                image,
                &format!("{base}/v2/{}/manifests/{reference}", image.repository),
                MANIFEST_ACCEPT,
                &what,
            )
            .await?;
        if let Some(list) = manifest.get("manifests").and_then(|m| m.as_array()) {
            let pick = list
                .iter()
                .find(|m| {
                    m.pointer("/platform/os").and_then(|v| v.as_str()) == Some("linux")
                        && m.pointer("/platform/architecture").and_then(|v| v.as_str())
                            == Some("amd64")
                })
                .or(list.first())
                .and_then(|m| m.get("digest"))
                .and_then(|d| d.as_str())
                .ok_or_else(|| invalid("an index without manifests".into()))?
                .to_string();
            manifest = self
                .get_json(
                    image,
                    &format!("{base}/v2/{}/manifests/{pick}", image.repository),
                    MANIFEST_ACCEPT,
                    &what,
                )
                .await?;
        }
        let config = manifest
            .pointer("/config/digest")
            .and_then(|d| d.as_str())
            .ok_or_else(|| invalid("the manifest has no config".into()))?
            .to_string();
        let blob = self
            .get_json(
                image,
                &format!("{base}/v2/{}/blobs/{config}", image.repository),
                "application/json, */*",
                &what,
            )
            .await?;
        match blob.get("created").and_then(|c| c.as_str()) {
            None => Ok(None),
            Some(text) => text
                .parse::<jiff::Timestamp>()
                .map(Some)
                .map_err(|_| invalid(format!("`created` is not an RFC 3339 time: `{text}`"))),
        }
    }

    async fn get_json(
        &self,
        image: &ImageName,
        url: &str,
        accept: &str,
        what: &str,
    ) -> Result<serde_json::Value, RegistryError> {
        let reply = self.send(image, Method::GET, url, accept, what).await?;
        serde_json::from_slice(&reply.body).map_err(|e| RegistryError::Invalid {
            registry: image.registry.clone(),
            what: what.to_string(),
            message: e.to_string(),
        })
    }

    /// Docker's credentials for `registry`, found once. A credential helper runs as an
    /// async child process: while it runs, the lock is not held and the thread is free.
    async fn credentials(&self, registry: &str) -> Result<Option<Credentials>, RegistryError> {
        let cached = self
            .inner
            .credentials
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get(registry)
            .cloned();
        if let Some(c) = cached {
            return Ok(c);
        }
        let found = self
            .inner
            .config
            .docker_config
            .credentials_for(registry)
            .await?;
        self.inner
            .credentials
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .insert(registry.to_string(), found.clone());
        Ok(found)
    }

    fn cached_auth(&self, registry: &str, scope: &str) -> Option<String> {
        let mut tokens = self
            .inner
            .tokens
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let key = (registry.to_string(), scope.to_string());
        match tokens.get(&key) {
            Some((value, None)) => Some(value.clone()),
            Some((value, Some(expiry))) if Instant::now() < *expiry => Some(value.clone()),
            Some(_) => {
                tokens.remove(&key);
                None
            }
            None => None,
        }
    }

    /// One request with authentication, budget and limits. Non-2xx answers are errors.
    pub async fn send(
        &self,
        image: &ImageName,
        method: Method,
        url: &str,
        accept: &str,
        what: &str,
    ) -> Result<Reply, RegistryError> {
        let registry = &image.registry;
        let scope = format!("repository:{}:pull", image.repository);
        let mut auth = self.cached_auth(registry, &scope);
        let mut challenged = false;
        loop {
            if let Err(left) = self.inner.limiter.acquire(registry).await {
                return Err(RegistryError::Paused {
                    registry: registry.clone(),
                    left,
                });
            }
            let mut request = self
                .inner
                .http
                .request(method.clone(), url)
                .header(ACCEPT, accept);
            if let Some(a) = &auth {
                request = request.header(AUTHORIZATION, a);
            }
            let response = request
                .send()
                .await
                .map_err(|e| self.transport(registry, what, &e))?;
            let status = response.status();
            let headers = response.headers().clone();
            if let Some(window) = exhausted_window(&headers) {
                self.inner.limiter.pause(registry, window);
            }
            if status == StatusCode::UNAUTHORIZED && !challenged {
                challenged = true;
                let challenge = headers
                    .get(WWW_AUTHENTICATE)
                    .and_then(|v| v.to_str().ok())
                    .and_then(parse_challenge);
                auth = match challenge {
                    Some(Challenge::Bearer { params }) => {
                        Some(self.fetch_token(image, &params, &scope, what).await?)
                    }
                    Some(Challenge::Basic) => match self.credentials(registry).await? {
                        Some(Credentials::Basic { username, password }) => {
                            let raw = format!("{username}:{password}");
                            let value = format!(
                                "Basic {}",
                                base64::engine::general_purpose::STANDARD.encode(raw)
                            );
                            self.inner
                                .tokens
                                .lock()
                                .expect("token lock")
                                .insert((registry.clone(), scope.clone()), (value.clone(), None));
                            Some(value)
                        }
                        _ => None,
                    },
                    None => None,
                };
                if auth.is_none() {
                    return Err(RegistryError::Unauthorized {
                        registry: registry.clone(),
                        what: what.to_string(),
                    });
                }
                continue;
            }
            if status == StatusCode::UNAUTHORIZED {
                return Err(RegistryError::Unauthorized {
                    registry: registry.clone(),
                    what: what.to_string(),
                });
            }
            if status == StatusCode::TOO_MANY_REQUESTS {
                let wait = retry_after(&headers).unwrap_or(DEFAULT_RETRY_AFTER);
                self.inner.limiter.pause(registry, wait);
                return Err(RegistryError::RateLimited {
                    registry: registry.clone(),
                    retry_after: Some(wait),
                });
            }
            let limit = self.inner.config.max_body;
            let body = self.read_body(response, registry, what, limit).await;
            if !status.is_success() {
                let code = body
                    .ok()
                    .and_then(|b| serde_json::from_slice::<ErrorBody>(&b).ok())
                    .and_then(|e| e.errors.into_iter().next())
                    .map(|e| e.code);
                return Err(RegistryError::Status {
                    registry: registry.clone(),
                    what: what.to_string(),
                    status: status.as_u16(),
                    code,
                });
            }
            return Ok(Reply {
                headers,
                body: body?,
            });
        }
    }

    async fn read_body(
        &self,
        mut response: reqwest::Response,
        registry: &str,
        what: &str,
        limit: usize,
    ) -> Result<Vec<u8>, RegistryError> {
        let too_large = || RegistryError::TooLarge {
            registry: registry.to_string(),
            what: what.to_string(),
            limit,
        };
        if response.content_length().is_some_and(|n| n > limit as u64) {
            return Err(too_large());
        }
        let mut body = Vec::new();
        while let Some(chunk) = response
            .chunk()
            .await
            .map_err(|e| self.transport(registry, what, &e))?
        {
            if body.len() + chunk.len() > limit {
                return Err(too_large());
            }
            body.extend_from_slice(&chunk);
        }
        Ok(body)
    }

    fn transport(&self, registry: &str, what: &str, e: &reqwest::Error) -> RegistryError {
        if e.is_timeout() {
            return RegistryError::Timeout {
                registry: registry.to_string(),
                what: what.to_string(),
                timeout: self.inner.config.timeout,
            };
        }
        // The chain of causes says what failed (refused, reset, cut short); URLs never carry
        // credentials, but the message is built without them anyway.
        let message = crate::output::with_causes(e, ": ");
        let message = match e.url() {
            Some(url) => message.replace(&format!(" ({url})"), ""),
            None => message,
        };
        RegistryError::Transport {
            registry: registry.to_string(),
            message,
        }
    }

    /// The Bearer token flow: ask the challenge's realm for `scope`, with credentials when
    /// docker has some for this registry.
    async fn fetch_token(
        &self,
        image: &ImageName,
        params: &BTreeMap<String, String>,
        scope: &str,
        what: &str,
    ) -> Result<String, RegistryError> {
        let registry = &image.registry;
        let invalid = |message: &str| RegistryError::Invalid {
            registry: registry.clone(),
            what: format!("token for {what}"),
            message: message.to_string(),
        };
        let realm = params
            .get("realm")
            .ok_or_else(|| invalid("the Bearer challenge has no realm"))?;
        // Credentials go to the realm: plain HTTP only when the realm itself is on this
        // machine, whatever host the registry is on.
        if !realm_allowed(realm) {
            return Err(invalid(
                "the token realm is not an HTTPS URL (plain HTTP is allowed only for a loopback realm)",
            ));
        }
        let mut query: Vec<(&str, &str)> = Vec::new();
        if let Some(service) = params.get("service") {
            query.push(("service", service));
        }
        query.push(("scope", scope));
        let credentials = self.credentials(registry).await?;
        let request = match &credentials {
            Some(Credentials::IdentityToken { token }) => {
                let mut form = query.clone();
                form.extend([
                    ("grant_type", "refresh_token"),
                    ("refresh_token", token.as_str()),
                    ("client_id", "kairo"),
                ]);
                self.inner.http.post(realm).form(&form)
            }
            Some(Credentials::Basic { username, password }) => self
                .inner
                .http
                .get(realm)
                .query(&query)
                .basic_auth(username, Some(password)),
            None => self.inner.http.get(realm).query(&query),
        };
        // Every failure of the token request itself is a `Token` error: the `what` request
        // was never sent with it, and a failing token server must say so (and be counted as
        // such), not pass for a failing registry.
        let realm_host = reqwest::Url::parse(realm)
            .ok()
            .and_then(|u| {
                u.host_str()
                    .map(|h| u.port().map_or(h.to_string(), |p| format!("{h}:{p}")))
            })
            .unwrap_or_default();
        let failed = |problem: TokenProblem| RegistryError::Token {
            registry: registry.clone(),
            realm: realm_host.clone(),
            what: what.to_string(),
            problem,
        };
        let from_read = |e: RegistryError| match e {
            RegistryError::TooLarge { limit, .. } => failed(TokenProblem::TooLarge { limit }),
            RegistryError::Timeout { timeout, .. } => failed(TokenProblem::Timeout { timeout }),
            RegistryError::Transport { message, .. } => failed(TokenProblem::Transport { message }),
            e => e,
        };
        let response = request
            .send()
            .await
            .map_err(|e| from_read(self.transport(registry, what, &e)))?;
        let status = response.status();
        if status == StatusCode::UNAUTHORIZED || status == StatusCode::FORBIDDEN {
            return Err(RegistryError::Unauthorized {
                registry: registry.clone(),
                what: what.to_string(),
            });
        }
        if status == StatusCode::TOO_MANY_REQUESTS {
            let wait = retry_after(response.headers()).unwrap_or(DEFAULT_RETRY_AFTER);
            self.inner.limiter.pause(registry, wait);
            return Err(RegistryError::RateLimited {
                registry: registry.clone(),
                retry_after: Some(wait),
            });
        }
        if !status.is_success() {
            // The body of a failed token request is not needed: not read at all.
            return Err(failed(TokenProblem::Status {
                status: status.as_u16(),
            }));
        }
        let limit = self.inner.config.max_body.min(MAX_TOKEN_BODY);
        let body = self
            .read_body(response, registry, what, limit)
            .await
            .map_err(from_read)?;
        let not_a_token = |message: &str| {
            failed(TokenProblem::Invalid {
                message: message.to_string(),
            })
        };
        let reply: TokenReply = serde_json::from_slice(&body)
            .map_err(|_| not_a_token("the reply is not the JSON of a token"))?;
        let token = reply
            .token
            .or(reply.access_token)
            .filter(|t| !t.is_empty())
            .ok_or_else(|| not_a_token("the reply has no `token` or `access_token`"))?;
        let lifetime = reply
            .expires_in
            .filter(|s| *s > 0)
            .map_or(DEFAULT_TOKEN_LIFETIME, Duration::from_secs);
        // Renew a little early so a token does not expire between check and use.
        let expiry = Instant::now()
            + lifetime
                .saturating_sub(Duration::from_secs(5))
                .max(Duration::from_secs(1));
        let value = format!("Bearer {token}");
        self.inner
            .tokens
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .insert(
                (registry.clone(), scope.to_string()),
                (value.clone(), Some(expiry)),
            );
        Ok(value)
    }
}

/// A token realm credentials may be sent to: `https://`, or `http://` on a loopback host
/// (parsed as a URL: `http://127.0.0.1@example.com/` is `example.com`).
fn realm_allowed(realm: &str) -> bool {
    let Ok(url) = reqwest::Url::parse(realm) else {
        return false;
    };
    match url.scheme() {
        "https" => true,
        "http" => url.host_str().is_some_and(|host| {
            host.eq_ignore_ascii_case("localhost")
                || host
                    .trim_start_matches('[')
                    .trim_end_matches(']')
                    .parse::<std::net::IpAddr>()
                    .is_ok_and(|ip| ip.is_loopback())
        }),
        _ => false,
    }
}

impl Rate {
    fn min_of(self, other: Rate) -> Rate {
        if other.per_second < self.per_second {
            other
        } else {
            self
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn challenges() {
        assert_eq!(parse_challenge("Basic realm=\"x\""), Some(Challenge::Basic));
        let Some(Challenge::Bearer { params }) = parse_challenge(
            r#"Bearer realm="https://auth.docker.io/token",service="registry.docker.io",scope="repository:library/nginx:pull""#,
        ) else {
            panic!("bearer");
        };
        assert_eq!(params["realm"], "https://auth.docker.io/token");
        assert_eq!(params["service"], "registry.docker.io");
        assert_eq!(params["scope"], "repository:library/nginx:pull");
        assert_eq!(parse_challenge("Negotiate abc"), None);
    }

    #[test]
    fn plain_http_realms_only_on_loopback() {
        for ok in [
            "https://auth.example.com/token",
            "http://127.0.0.1:5000/token",
            "http://localhost/token",
            "http://[::1]:8080/token",
        ] {
            assert!(realm_allowed(ok), "{ok}");
        }
        for bad in [
            "http://auth.example.com/token",
            "http://127.0.0.1@auth.example.com/token",
            "http://localhost.example.com/token",
            "http://10.0.0.1/token",
            "ftp://127.0.0.1/token",
            "not a url",
        ] {
            assert!(!realm_allowed(bad), "{bad}");
        }
    }

    #[test]
    fn links_and_limits() {
        let mut h = HeaderMap::new();
        h.insert(
            "link",
            "</v2/a/tags/list?n=2&last=b>; rel=\"next\""
                .parse()
                .unwrap(),
        );
        assert_eq!(next_link(&h).as_deref(), Some("/v2/a/tags/list?n=2&last=b"));
        h.insert("retry-after", "120".parse().unwrap());
        assert_eq!(retry_after(&h), Some(Duration::from_secs(120)));
        h.insert(
            "retry-after",
            "Wed, 21 Oct 2015 07:28:00 GMT".parse().unwrap(),
        );
        assert_eq!(retry_after(&h), Some(Duration::ZERO));
        h.insert("ratelimit-remaining", "0;w=600".parse().unwrap());
        assert_eq!(exhausted_window(&h), Some(Duration::from_secs(600)));
        // Longer asks are capped: one pause is at most 15 minutes.
        h.insert("ratelimit-remaining", "0;w=21600".parse().unwrap());
        assert_eq!(exhausted_window(&h), Some(MAX_PAUSE));
        h.insert("retry-after", "99999".parse().unwrap());
        assert_eq!(retry_after(&h), Some(MAX_PAUSE));
        h.insert(
            "retry-after",
            "Fri, 01 Jan 2100 00:00:00 GMT".parse().unwrap(),
        );
        assert_eq!(retry_after(&h), Some(MAX_PAUSE));
        h.insert("ratelimit-remaining", "76;w=21600".parse().unwrap());
        assert_eq!(exhausted_window(&h), None);
    }
}
