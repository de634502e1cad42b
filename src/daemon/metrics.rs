//! The daemon's Prometheus metrics (prometheus-client), rendered as the text exposition format
//! on `/metrics`. Label values are registry hosts, images, environments and error codes: never
//! credentials.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;
use std::collections::BTreeSet;
use std::sync::Mutex;
use std::sync::atomic::AtomicU64;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ScanLabels {
    /// `tick` or `webhook`.
    pub trigger: String,
    /// `ok` (every image answered), `partial` (some were unavailable), `error` (no scan).
    pub result: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RegistryLabels {
    pub registry: String,
    pub code: String,
}

/// A lookup not sent to a registry, and why (`rate_limit_pause`: an earlier 429 or an
/// exhausted `ratelimit-remaining` asked kairo to stay away). Not a registry error.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct SkippedLabels {
    pub registry: String,
    pub reason: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct EnvLabels {
    pub environment: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ImageLabels {
    pub image: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct WebhookLabels {
    /// `accepted` (a scan follows), `ignored` (answered 202, nothing to scan) or `rejected`.
    pub result: String,
    /// `scan` when accepted; `unwatched` when ignored; `auth`, `too_large`, `too_slow`,
    /// `malformed`, `disabled`, `not_leader` or `shutting_down` when rejected.
    pub reason: String,
}

/// A connection the HTTP server closed without serving it.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ConnectionLabels {
    /// `header_timeout` (no complete request arrived within the deadline) or `over_limit`
    /// (the bound on open connections was reached).
    pub reason: String,
}

/// Drift metrics use `env`, as `kairo_drift_objects{env,kind}` is documented.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct DriftEnvLabels {
    pub env: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct DriftKindLabels {
    pub env: String,
    pub kind: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReleaseLabels {
    pub env: String,
    pub release: String,
}

pub struct Metrics {
    registry: Registry,
    pub scans: Family<ScanLabels, Counter>,
    pub tags_seen: Counter,
    pub bumps_committed: Family<EnvLabels, Counter>,
    pub push_retries: Counter,
    pub push_failures: Family<EnvLabels, Counter>,
    pub registry_errors: Family<RegistryLabels, Counter>,
    pub registry_skipped: Family<SkippedLabels, Counter>,
    pub scan_duration: Histogram,
    pub last_success: Family<ImageLabels, Gauge<f64, AtomicU64>>,
    pub webhooks: Family<WebhookLabels, Counter>,
    pub connections_closed: Family<ConnectionLabels, Counter>,
    pub leader: Gauge,
    pub watched: Gauge,
    pub drift_objects: Family<DriftKindLabels, Gauge>,
    pub release_ready: Family<ReleaseLabels, Gauge>,
    pub drift_last_check: Family<DriftEnvLabels, Gauge<f64, AtomicU64>>,
    pub drift_errors: Family<DriftEnvLabels, Counter>,
    /// The (env, release) series of `release_ready` the last drift check exported.
    ready_series: Mutex<BTreeSet<(String, String)>>,
    /// The (env, kind) series of `drift_objects` exported so far.
    drift_series: Mutex<BTreeSet<(String, String)>>,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Metrics {
        let mut registry = Registry::with_prefix("kairo");
        let m = Metrics {
            scans: Family::default(),
            tags_seen: Counter::default(),
            bumps_committed: Family::default(),
            push_retries: Counter::default(),
            push_failures: Family::default(),
            registry_errors: Family::default(),
            registry_skipped: Family::default(),
            scan_duration: Histogram::new([
                0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0,
            ]),
            last_success: Family::default(),
            webhooks: Family::default(),
            connections_closed: Family::default(),
            leader: Gauge::default(),
            watched: Gauge::default(),
            drift_objects: Family::default(),
            release_ready: Family::default(),
            drift_last_check: Family::default(),
            drift_errors: Family::default(),
            ready_series: Mutex::default(),
            drift_series: Mutex::default(),
            registry: Registry::default(),
        };
        registry.register("scans", "Scans run, by trigger and result", m.scans.clone());
        registry.register(
            "tags_seen",
            "Tags listed by registries across all scans",
            m.tags_seen.clone(),
        );
        registry.register(
            "bumps_committed",
            "Image bumps committed and pushed, by environment",
            m.bumps_committed.clone(),
        );
        registry.register(
            "push_retries",
            "Rejected pushes planned again on the new remote tip",
            m.push_retries.clone(),
        );
        registry.register(
            "push_failures",
            "Environments whose bumps could not be written in a scan",
            m.push_failures.clone(),
        );
        registry.register(
            "registry_errors",
            "Failed image lookups, by registry and error code",
            m.registry_errors.clone(),
        );
        registry.register(
            "registry_skipped",
            "Image lookups not sent to a registry, by registry and reason (not registry errors)",
            m.registry_skipped.clone(),
        );
        registry.register(
            "scan_duration_seconds",
            "Duration of a scan: reading the watched set, registry lookups and writes",
            m.scan_duration.clone(),
        );
        registry.register(
            "image_last_success_timestamp_seconds",
            "When the image was last looked up successfully (Unix time)",
            m.last_success.clone(),
        );
        registry.register(
            "webhooks",
            "Webhook requests, by result and reason",
            m.webhooks.clone(),
        );
        registry.register(
            "http_connections_closed",
            "HTTP connections closed unserved, by reason (header_timeout, over_limit)",
            m.connections_closed.clone(),
        );
        registry.register(
            "leader",
            "1 when this replica may scan and write (always 1 without leader election)",
            m.leader.clone(),
        );
        registry.register(
            "watched_images",
            "Images with an update policy, over all environments",
            m.watched.clone(),
        );
        registry.register(
            "drift_objects",
            "Objects whose live state differs from Git at the last drift check, by kind",
            m.drift_objects.clone(),
        );
        registry.register(
            "release_ready",
            "1 when the release was Ready at the last drift check, else 0",
            m.release_ready.clone(),
        );
        registry.register(
            "drift_last_check_timestamp_seconds",
            "When the environment's last successful drift check ended (Unix time)",
            m.drift_last_check.clone(),
        );
        registry.register(
            "drift_errors",
            "Drift checks that failed (rendering, or the Kubernetes API), by environment",
            m.drift_errors.clone(),
        );
        Metrics { registry, ..m }
    }

    /// Drops the `release_ready` series the latest drift check did not produce: releases no
    /// longer in Git, and environments no longer in Git. `produced` is what the check set;
    /// series of environments in `kept` (whose check failed this time) stay as they were.
    pub fn retain_release_ready(
        &self,
        produced: BTreeSet<(String, String)>,
        kept: &BTreeSet<String>,
    ) {
        let mut last = self.ready_series.lock().unwrap_or_else(|e| e.into_inner());
        let mut next = produced;
        for (env, release) in std::mem::take(&mut *last) {
            if kept.contains(&env) {
                next.insert((env, release));
            } else if !next.contains(&(env.clone(), release.clone())) {
                self.release_ready.remove(&ReleaseLabels { env, release });
            }
        }
        *last = next;
    }

    /// Sets `drift_objects{env,kind}`, remembering the series for [`Self::retain_drift_envs`].
    pub fn set_drift_objects(&self, env: &str, kind: &str, n: i64) {
        let labels = DriftKindLabels {
            env: env.to_string(),
            kind: kind.to_string(),
        };
        self.drift_objects.get_or_create(&labels).set(n);
        self.drift_series
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert((labels.env, labels.kind));
    }

    /// Drops the `drift_objects` and last-check series of environments not in `envs` (the
    /// environments Git holds now, checked or failed): one gone from Git must not keep an
    /// alert firing or its timestamp aging.
    pub fn retain_drift_envs(&self, envs: &BTreeSet<String>) {
        let mut series = self.drift_series.lock().unwrap_or_else(|e| e.into_inner());
        series.retain(|(env, kind)| {
            if envs.contains(env) {
                return true;
            }
            self.drift_objects.remove(&DriftKindLabels {
                env: env.clone(),
                kind: kind.clone(),
            });
            self.drift_last_check
                .remove(&DriftEnvLabels { env: env.clone() });
            false
        });
    }

    /// Drops every drift and readiness gauge (a replica that stopped leading exports none).
    pub fn clear_drift(&self) {
        self.drift_series
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clear();
        self.drift_objects.clear();
        self.release_ready.clear();
        self.drift_last_check.clear();
        self.ready_series
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clear();
    }

    /// The Prometheus text exposition format (0.0.4), which `promtool check metrics` reads.
    pub fn render(&self) -> String {
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::prometheus_text::encode(&mut out, &self.registry);
        out
    }
}
