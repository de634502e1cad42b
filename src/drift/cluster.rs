//! The kube client edge of drift and status: connect as kubectl would, and list (never write)
//! the objects one environment's releases own.
//!
//! Configuration is `kube::Config`'s: the kubeconfig (`KUBECONFIG` or `~/.kube/config`; its
//! contexts, tokens, client certificates and exec credential plugins), falling back to the
//! in-cluster service account when there is no kubeconfig, as kubectl does. Every list is paged
//! with `limit` and `continue`; an expired `continue` token (410 Gone) restarts that list once.
//!
//! Architecture Invariant: read-only. The only requests are `list` on helmreleases,
//! deployments, statefulsets and horizontalpodautoscalers, `get` on the Secrets Git renders
//! (by name: kairo never lists Secrets), and API discovery to explain a 404.

use std::collections::BTreeSet;
use std::ffi::{OsStr, OsString};
use std::time::Duration;

use kube::api::{Api, ApiResource, DynamicObject, GroupVersionKind, ListParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use serde_json::Value;

use super::{Desired, Live};

/// How to reach the cluster.
#[derive(Debug, Clone)]
pub struct Connection {
    /// `--context`; the kubeconfig's current context when `None`.
    pub context: Option<String>,
    /// Objects per page (`limit`).
    pub page_size: u32,
    /// The most one request may take, from connecting to the last byte of the answer.
    pub request_timeout: Duration,
    /// The `KUBECONFIG` value (the command layer reads the environment); `None` when unset.
    pub kubeconfig: Option<OsString>,
}

#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    // kube's kubeconfig errors repeat their own cause in their message: keep the message only,
    // so that the cause is not printed twice.
    #[error(
        "no Kubernetes configuration: no usable kubeconfig ({reason}), and not running in a cluster"
    )]
    NoConfig { reason: String },
    #[error("cannot use context `{context}` of the kubeconfig: {reason}")]
    Kubeconfig { context: String, reason: String },
    #[error("cannot build a client for {cluster}")]
    Client {
        cluster: String,
        #[source]
        source: kube::Error,
    },
    #[error(
        "cannot list {resource} in namespace `{namespace}` from the API server of {cluster} (`{server}`)"
    )]
    Unreachable {
        cluster: String,
        server: String,
        resource: String,
        namespace: String,
        #[source]
        source: kube::Error,
    },
    #[error(
        "the API server of {cluster} rejected the credentials (401 Unauthorized) listing {resource} in namespace `{namespace}`"
    )]
    Unauthorized {
        cluster: String,
        resource: String,
        namespace: String,
    },
    #[error(
        "{cluster} may not `{verb}` {resource} in namespace `{namespace}` (403 Forbidden): {message}"
    )]
    Forbidden {
        cluster: String,
        /// `list`, or `get` for a Secret.
        verb: &'static str,
        resource: String,
        namespace: String,
        message: String,
    },
    #[error("the API server of {cluster} returned {kind} `{namespace}/{name}` twice")]
    Duplicate {
        cluster: String,
        kind: String,
        namespace: String,
        name: String,
    },
    #[error(
        "the API server of {cluster} (`{server}`) did not answer listing {resource} in namespace `{namespace}` within {after}"
    )]
    TimedOut {
        cluster: String,
        server: String,
        resource: String,
        namespace: String,
        /// `--request-timeout 30s`, or the like.
        after: String,
    },
    #[error(
        "the API server of {cluster} did not answer before `--timeout {timeout}` passed, with a check still in flight"
    )]
    WaitTimedOut { cluster: String, timeout: String },
    #[error("the API server of {cluster} does not serve {resource} (404 Not Found)")]
    NotServed { cluster: String, resource: String },
    #[error(
        "the API server of {cluster} does not serve the API group `helm.toolkit.fluxcd.io`: the HelmRelease CRD is not installed (404 Not Found)"
    )]
    FluxMissing { cluster: String },
    #[error(
        "the API server of {cluster} serves `helm.toolkit.fluxcd.io` only as {served}, not as `v2`, the HelmRelease version kairo renders (404 Not Found)"
    )]
    FluxTooOld {
        cluster: String,
        /// The versions served, in backticks.
        served: String,
    },
    #[error(
        "namespace `{namespace}` does not exist in {cluster} (404 Not Found listing {resource})"
    )]
    NamespaceMissing {
        cluster: String,
        namespace: String,
        resource: String,
    },
    #[error(
        "the API server of {cluster} answered {code} listing {resource} in namespace `{namespace}`: {message}"
    )]
    Api {
        cluster: String,
        resource: String,
        namespace: String,
        code: u16,
        message: String,
    },
}

impl ClusterError {
    /// Whether asking again later may succeed: the server unreachable or slow, 429, or a 5xx
    /// (an API server restarting or overloaded). Credentials, permissions and missing types
    /// or namespaces do not fix themselves.
    pub fn is_transient(&self) -> bool {
        match self {
            // A certificate the kubeconfig does not trust stays untrusted.
            ClusterError::Unreachable { source, .. } => !tls_rejected(source),
            ClusterError::TimedOut { .. } => true,
            ClusterError::Api { code, .. } => *code == 429 || *code >= 500,
            _ => false,
        }
    }

    pub fn hint(&self) -> Option<String> {
        Some(match self {
            ClusterError::NoConfig { .. } => "set `KUBECONFIG` or write `~/.kube/config` (as for kubectl), or run kairo in a pod".into(),
            ClusterError::Kubeconfig { .. } => "list the contexts with `kubectl config get-contexts`".into(),
            ClusterError::Unreachable { source, .. } if tls_rejected(source) => "the API server's certificate is not signed by a CA the kubeconfig trusts: check the cluster's `certificate-authority-data` (or `certificate-authority`) and the `server` address".into(),
            ClusterError::Unreachable { .. } => "check that the cluster is up and that `kubectl --context ... get ns` works from here".into(),
            ClusterError::Unauthorized { .. } => "the token or certificate is expired or wrong: log in again (refresh the kubeconfig's credentials)".into(),
            ClusterError::Forbidden { verb: "get", resource, namespace, .. } => format!(
                "grant the identity `get` on the `{resource}` Git renders in namespace `{namespace}` (by `resourceNames`; see the README's RBAC section)"
            ),
            ClusterError::Forbidden { resource, namespace, .. } => format!(
                "grant the identity `get`, `list` and `watch` on `{resource}` in namespace `{namespace}` (see the README's RBAC section)"
            ),
            ClusterError::TimedOut { .. } => "check that the cluster is up and that `kubectl --context ... get ns` answers from here; a slow API server may need a longer `--request-timeout`".into(),
            ClusterError::WaitTimedOut { .. } => "check that the cluster is up and that `kubectl --context ... get ns` answers from here, or wait longer with `--timeout`".into(),
            ClusterError::Duplicate { .. } => "the API server or a proxy in front of it is misbehaving: check with `kubectl get` whether it lists the object twice".into(),
            ClusterError::NotServed { resource, .. } if resource.starts_with("helmreleases") => {
                "install Flux's helm-controller (it serves helm.toolkit.fluxcd.io/v2), or pick the right `--context`".into()
            }
            ClusterError::FluxMissing { .. } => {
                "install Flux (its helm-controller serves helm.toolkit.fluxcd.io/v2), or pick the right `--context`".into()
            }
            ClusterError::FluxTooOld { .. } => {
                "upgrade Flux to v2.3 or later, which serves helm.toolkit.fluxcd.io/v2".into()
            }
            ClusterError::NamespaceMissing { .. } => {
                "check the environment's `spec.namespace` and the `--context`: the environment's `namespace.yaml` may not be applied yet".into()
            }
            _ => return None,
        })
    }
}

/// A connected, read-only client and the name it is known by in messages.
pub struct Cluster {
    client: kube::Client,
    /// `context `prod``, or `in-cluster`.
    pub label: String,
    server: String,
    page_size: u32,
    request_timeout: Duration,
}

/// The kinds kairo lists, as the dynamic API addresses them, with their RBAC resource names.
fn resources() -> [(ApiResource, &'static str); 4] {
    let helm = GroupVersionKind::gvk("helm.toolkit.fluxcd.io", "v2", "HelmRelease");
    [
        (
            ApiResource::from_gvk_with_plural(&helm, "helmreleases"),
            "helmreleases.helm.toolkit.fluxcd.io",
        ),
        (
            ApiResource::erase::<k8s_openapi::api::apps::v1::Deployment>(&()),
            "deployments.apps",
        ),
        (
            ApiResource::erase::<k8s_openapi::api::apps::v1::StatefulSet>(&()),
            "statefulsets.apps",
        ),
        (
            ApiResource::erase::<k8s_openapi::api::autoscaling::v2::HorizontalPodAutoscaler>(&()),
            "horizontalpodautoscalers.autoscaling",
        ),
    ]
}

/// The kubeconfig as kubectl loads it. With `KUBECONFIG` set, its files are merged in order
/// (the first to set a value or name wins, kube's `Kubeconfig::merge`), and files that do not
/// exist are skipped as kubectl skips them; `Ok(None)` when none exists. Without it,
/// `~/.kube/config`. A file that exists but cannot be read or parsed is an error.
pub fn read_kubeconfig(list: Option<&OsStr>) -> Result<Option<Kubeconfig>, String> {
    let Some(value) = list.filter(|v| !v.is_empty()) else {
        // `~/.kube/config` (kube finds the home directory as kubectl does).
        return match Kubeconfig::read() {
            Ok(k) => Ok(Some(k)),
            Err(e) => Err(quiet(&e)),
        };
    };
    let mut merged: Option<Kubeconfig> = None;
    for path in std::env::split_paths(value).filter(|p| !p.as_os_str().is_empty()) {
        match std::fs::metadata(&path) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                tracing::debug!(path = %path.display(), "a file in KUBECONFIG does not exist; skipped, as kubectl does");
                continue;
            }
            _ => {}
        }
        let next = Kubeconfig::read_from(&path).map_err(|e| match e {
            // Names the path already.
            kube::config::KubeconfigError::ReadConfig(..) => quiet(&e),
            e => format!("`{}`: {}", path.display(), quiet(&e)),
        })?;
        merged = Some(match merged {
            Some(m) => m
                .merge(next)
                .map_err(|e| format!("`{}`: {}", path.display(), quiet(&e)))?,
            None => next,
        });
    }
    Ok(merged)
}

/// A kubeconfig error's first line only: the YAML parser goes on to quote the lines around the
/// error, and in a kubeconfig those hold tokens and keys.
fn quiet(e: &dyn std::fmt::Display) -> String {
    let text = e.to_string();
    text.lines()
        .next()
        .unwrap_or_default()
        .trim_end()
        .to_string()
}

/// A client configuration and its label (`context `name``, or `in-cluster`): the kubeconfig's
/// `context` (its current context when `None`), else, when no context was asked for and no
/// kubeconfig is usable, the pod's service account, as kubectl falls back.
pub async fn resolve(
    context: Option<&str>,
    kubeconfig: Option<&OsStr>,
) -> Result<(kube::Config, String), ClusterError> {
    let options = KubeConfigOptions {
        context: context.map(str::to_string),
        ..Default::default()
    };
    let reason = match read_kubeconfig(kubeconfig) {
        Ok(Some(kubeconfig)) => {
            let name = context
                .map(str::to_string)
                .or_else(|| kubeconfig.current_context.clone())
                .unwrap_or_default();
            match kube::Config::from_custom_kubeconfig(kubeconfig, &options).await {
                Ok(config) => return Ok((config, format!("context `{name}`"))),
                Err(e) => quiet(&e),
            }
        }
        Ok(None) => format!(
            "none of the files in `KUBECONFIG` exists (`{}`)",
            kubeconfig.unwrap_or_default().to_string_lossy()
        ),
        Err(reason) => reason,
    };
    if let Some(context) = context {
        return Err(ClusterError::Kubeconfig {
            context: context.to_string(),
            reason,
        });
    }
    match kube::Config::incluster() {
        Ok(config) => Ok((config, "in-cluster".to_string())),
        Err(_) => Err(ClusterError::NoConfig { reason }),
    }
}

impl Cluster {
    /// Resolves the configuration as kubectl does and builds a client (no request yet).
    pub async fn connect(c: &Connection) -> Result<Cluster, ClusterError> {
        let (config, label) = resolve(c.context.as_deref(), c.kubeconfig.as_deref()).await?;
        let mut config = config;
        // kube leaves reads unbounded: a server that accepts and never answers would hang
        // kairo. The per-read bound catches silence; `list` bounds each whole request too,
        // which also catches a server trickling a byte at a time.
        // `--request-timeout 0` is kubectl's "no timeout".
        let bound = (!c.request_timeout.is_zero()).then_some(c.request_timeout);
        let timeout = bound.unwrap_or(Duration::MAX);
        config.connect_timeout = bound;
        config.read_timeout = bound;
        config.write_timeout = bound;
        // Count from sending the request, not from when a pooled connection went idle.
        config.reset_reader_on_write = true;
        let server = config.cluster_url.to_string();
        let client = kube::Client::try_from(config).map_err(|source| ClusterError::Client {
            cluster: label.clone(),
            source,
        })?;
        Ok(Cluster {
            client,
            label,
            server,
            page_size: c.page_size.max(1),
            request_timeout: timeout,
        })
    }

    /// Lists what `desired`'s releases could own: HelmReleases in the environment's
    /// namespace; Deployments, StatefulSets and HPAs in the namespaces services install into.
    #[tracing::instrument(skip_all, fields(cluster = %self.label, environment = %desired.environment))]
    pub async fn fetch(&self, desired: &Desired) -> Result<Live, ClusterError> {
        let [helm, deployments, statefulsets, hpas] = resources();
        let mut live = Live::default();
        for item in self.list(&helm, &desired.namespace).await? {
            live.push(item).map_err(|d| self.duplicate(d))?;
        }
        let namespaces: BTreeSet<&str> = desired
            .releases
            .iter()
            .filter_map(|r| r.workload.as_ref().map(|w| w.namespace.as_str()))
            .collect();
        for ns in namespaces {
            for resource in [&deployments, &statefulsets, &hpas] {
                for item in self.list(resource, ns).await? {
                    // Only what a Helm release installed can be one of ours.
                    if item["metadata"]["annotations"][super::RELEASE_NAME].is_string() {
                        live.push(item).map_err(|d| self.duplicate(d))?;
                    }
                }
            }
        }
        for want in &desired.secrets {
            let (ns, name) = (super::namespace(want), super::name(want));
            if let Some(secret) = self.get_secret(ns, name).await? {
                live.push(secret).map_err(|d| self.duplicate(d))?;
            }
        }
        Ok(live)
    }

    /// One Secret by name (`None` when there is none), never a list: kairo reads only the
    /// Secrets Git renders.
    async fn get_secret(&self, namespace: &str, name: &str) -> Result<Option<Value>, ClusterError> {
        let resource = ApiResource::erase::<k8s_openapi::api::core::v1::Secret>(&());
        let api: Api<DynamicObject> =
            Api::namespaced_with(self.client.clone(), namespace, &resource);
        let answer = tokio::time::timeout(self.request_timeout, api.get_opt(name))
            .await
            .map_err(|_| self.timed_out("secrets", namespace))?;
        match answer {
            Ok(Some(secret)) => {
                let mut v = serde_json::to_value(&secret).unwrap_or_default();
                v["apiVersion"] = Value::from("v1");
                v["kind"] = Value::from("Secret");
                Ok(Some(v))
            }
            Ok(None) => Ok(None),
            Err(e) => Err(self.error(e, "secrets", namespace, "get")),
        }
    }

    /// Every object of one kind in one namespace, page by page.
    async fn list(
        &self,
        (resource, rbac_name): &(ApiResource, &'static str),
        namespace: &str,
    ) -> Result<Vec<Value>, ClusterError> {
        let api: Api<DynamicObject> =
            Api::namespaced_with(self.client.clone(), namespace, resource);
        let mut restarted = false;
        'restart: loop {
            let mut out = Vec::new();
            let mut params = ListParams::default().limit(self.page_size);
            loop {
                let answer = tokio::time::timeout(self.request_timeout, api.list(&params))
                    .await
                    .map_err(|_| self.timed_out(rbac_name, namespace))?;
                let page = match answer {
                    Ok(page) => page,
                    Err(kube::Error::Api(status))
                        if status.code == 410 && params.continue_token.is_some() && !restarted =>
                    {
                        // The continue token expired (etcd compacted): start over, once.
                        tracing::debug!(
                            resource = rbac_name,
                            namespace,
                            "continue token expired; listing again"
                        );
                        restarted = true;
                        continue 'restart;
                    }
                    Err(kube::Error::Api(status)) if status.code == 404 => {
                        return Err(self.not_found(&status, rbac_name, namespace).await);
                    }
                    Err(e) => return Err(self.error(e, rbac_name, namespace, "list")),
                };
                tracing::debug!(
                    resource = rbac_name,
                    namespace,
                    items = page.items.len(),
                    "listed a page"
                );
                for item in page.items {
                    let mut v = serde_json::to_value(&item).unwrap_or_default();
                    // List items carry no apiVersion/kind for built-in types.
                    v["apiVersion"] = Value::from(resource.api_version.clone());
                    v["kind"] = Value::from(resource.kind.clone());
                    out.push(v);
                }
                match page.metadata.continue_ {
                    Some(token) if !token.is_empty() => {
                        params = params.continue_token(&token);
                    }
                    _ => return Ok(out),
                }
            }
        }
    }

    /// Names what a 404 says is missing: the namespace (a `Status` whose details name it), the
    /// resource type (the API server's plain `404 page not found` for a group/version it does
    /// not serve, or `NotFound` without details for a resource unknown in a served group:
    /// for HelmReleases, discovery then tells a missing Flux from one too old to serve `v2`),
    /// or else whatever the answer says.
    async fn not_found(
        &self,
        status: &kube::core::Status,
        resource: &str,
        namespace: &str,
    ) -> ClusterError {
        let cluster = self.label.clone();
        let details = status.details.as_ref();
        if details.is_some_and(|d| d.kind == "namespaces" && d.name == namespace) {
            return ClusterError::NamespaceMissing {
                cluster,
                namespace: namespace.to_string(),
                resource: resource.to_string(),
            };
        }
        let route_missing = status.message.trim() == "404 page not found"
            || (status.reason == "NotFound" && details.is_none_or(|d| d.name.is_empty()));
        if !route_missing {
            return ClusterError::Api {
                cluster,
                resource: resource.to_string(),
                namespace: namespace.to_string(),
                code: 404,
                message: status.message.chars().take(300).collect(),
            };
        }
        if resource.starts_with("helmreleases") {
            let groups = tokio::time::timeout(self.request_timeout, self.client.list_api_groups());
            if let Ok(Ok(groups)) = groups.await {
                return match groups
                    .groups
                    .iter()
                    .find(|g| g.name == "helm.toolkit.fluxcd.io")
                {
                    None => ClusterError::FluxMissing { cluster },
                    Some(g) if !g.versions.iter().any(|v| v.version == "v2") => {
                        ClusterError::FluxTooOld {
                            cluster,
                            served: g
                                .versions
                                .iter()
                                .map(|v| format!("`{}`", v.version))
                                .collect::<Vec<_>>()
                                .join(", "),
                        }
                    }
                    // Served after all (the CRD was being installed): say what was answered.
                    Some(_) => ClusterError::NotServed {
                        cluster,
                        resource: resource.to_string(),
                    },
                };
            }
        }
        ClusterError::NotServed {
            cluster,
            resource: resource.to_string(),
        }
    }

    fn timed_out(&self, resource: &str, namespace: &str) -> ClusterError {
        ClusterError::TimedOut {
            cluster: self.label.clone(),
            server: self.server.clone(),
            resource: resource.to_string(),
            namespace: namespace.to_string(),
            after: if self.request_timeout == Duration::MAX {
                "the system's own connection timeouts (`--request-timeout 0`)".to_string()
            } else {
                format!(
                    "`--request-timeout {}`",
                    humantime::format_duration(self.request_timeout)
                )
            },
        }
    }

    fn duplicate(&self, d: super::Duplicate) -> ClusterError {
        ClusterError::Duplicate {
            cluster: self.label.clone(),
            kind: d.kind,
            namespace: d.namespace,
            name: d.name,
        }
    }

    fn error(
        &self,
        e: kube::Error,
        resource: &str,
        namespace: &str,
        verb: &'static str,
    ) -> ClusterError {
        let cluster = self.label.clone();
        let (resource, namespace) = (resource.to_string(), namespace.to_string());
        match e {
            kube::Error::Api(status) => match status.code {
                401 => ClusterError::Unauthorized {
                    cluster,
                    resource,
                    namespace,
                },
                403 => ClusterError::Forbidden {
                    cluster,
                    verb,
                    resource,
                    namespace,
                    message: status.message.clone(),
                },
                404 => ClusterError::NotServed { cluster, resource },
                code => ClusterError::Api {
                    cluster,
                    resource,
                    namespace,
                    code,
                    message: status.message.clone(),
                },
            },
            source if timed_out(&source) => self.timed_out(&resource, &namespace),
            source => ClusterError::Unreachable {
                cluster,
                server: self.server.clone(),
                resource,
                namespace,
                source,
            },
        }
    }
}

/// Whether the TLS handshake failed on the server's certificate (rustls' `invalid peer
/// certificate` somewhere in the causes).
fn tls_rejected(e: &kube::Error) -> bool {
    causes(e).any(|c| c.to_string().starts_with("invalid peer certificate"))
}

/// Whether a transport error is a connect or read timeout (an `io::Error` of kind `TimedOut`
/// somewhere in its causes).
fn timed_out(e: &kube::Error) -> bool {
    causes(e).any(|c| {
        c.downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::TimedOut)
    })
}

/// `e` and each of its causes, outermost first.
fn causes(e: &kube::Error) -> impl Iterator<Item = &(dyn std::error::Error + 'static)> {
    std::iter::successors(Some(e as &(dyn std::error::Error + 'static)), |c| {
        c.source()
    })
}
