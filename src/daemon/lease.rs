//! Leader election with a `coordination.k8s.io/v1` Lease, as client-go's `leaderelection`
//! does it: the holder renews `renewTime`; another replica takes the Lease over only when it
//! has seen the same Lease record (same `resourceVersion`) for a whole `leaseDurationSeconds`
//! by its own clock, so clocks that disagree between nodes never matter. Every write carries
//! the `resourceVersion` it read: a replica that lost a race gets 409 Conflict and stays a
//! follower.
//!
//! This module owns the Lease and nothing else; it must not scan or write Git. `step` takes
//! `now` so a test can drive time.

use std::time::{Duration, Instant};

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use kube::Api;
use kube::api::PostParams;

/// One replica's view of one Lease.
pub struct Elector {
    api: Api<Lease>,
    name: String,
    identity: String,
    duration: Duration,
    /// The last Lease record seen (`resourceVersion`) and when this replica first saw it.
    observed: Option<(String, Instant)>,
    /// When this replica last wrote the Lease as its holder.
    renewed: Option<Instant>,
}

fn conflict(e: &kube::Error) -> bool {
    matches!(e, kube::Error::Api(s) if s.code == 409)
}

fn micro_now() -> MicroTime {
    MicroTime(k8s_openapi::jiff::Timestamp::now())
}

impl Elector {
    pub fn new(api: Api<Lease>, name: &str, identity: &str, duration: Duration) -> Elector {
        Elector {
            api,
            name: name.to_string(),
            identity: identity.to_string(),
            duration,
            observed: None,
            renewed: None,
        }
    }

    pub fn duration(&self) -> Duration {
        self.duration
    }

    pub fn identity(&self) -> &str {
        &self.identity
    }

    /// Whether this replica may act as the leader at `now`: it renewed the Lease less than a
    /// lease duration ago. A failing API server therefore demotes the leader in time, before
    /// a follower can take over.
    pub fn is_leader(&self, now: Instant) -> bool {
        self.renewed
            .is_some_and(|at| now.saturating_duration_since(at) < self.duration)
    }

    /// One round: acquire the Lease if it is free, expired or ours, renew it if held. Returns
    /// whether this replica holds it now.
    pub async fn step(&mut self, now: Instant) -> Result<bool, kube::Error> {
        let Some(lease) = self.api.get_opt(&self.name).await? else {
            return self.create(now).await;
        };
        let version = lease.metadata.resource_version.clone().unwrap_or_default();
        if self.observed.as_ref().map(|(v, _)| v) != Some(&version) {
            self.observed = Some((version, now));
        }
        let seen_at = self.observed.as_ref().map_or(now, |(_, at)| *at);
        let spec = lease.spec.clone().unwrap_or_default();
        let holder = spec.holder_identity.clone().unwrap_or_default();
        let duration = spec
            .lease_duration_seconds
            .and_then(|s| u64::try_from(s).ok())
            .map_or(self.duration, Duration::from_secs);
        let mine = holder == self.identity;
        let expired = now.saturating_duration_since(seen_at) >= duration;
        if !(mine || holder.is_empty() || expired) {
            self.renewed = None;
            return Ok(false);
        }
        let mut next = lease.clone();
        let transitions = spec.lease_transitions.unwrap_or(0);
        next.spec = Some(LeaseSpec {
            holder_identity: Some(self.identity.clone()),
            lease_duration_seconds: Some(self.duration_secs()),
            renew_time: Some(micro_now()),
            acquire_time: if mine {
                spec.acquire_time.clone()
            } else {
                Some(micro_now())
            },
            lease_transitions: Some(if mine { transitions } else { transitions + 1 }),
            ..spec
        });
        match self
            .api
            .replace(&self.name, &PostParams::default(), &next)
            .await
        {
            Ok(written) => {
                if !mine {
                    tracing::info!(lease = %self.name, identity = %self.identity, previous = %holder, "acquired the lease");
                }
                self.wrote(&written, now);
                Ok(true)
            }
            Err(e) if conflict(&e) => {
                self.renewed = None;
                Ok(false)
            }
            Err(e) => Err(e),
        }
    }

    async fn create(&mut self, now: Instant) -> Result<bool, kube::Error> {
        let lease = Lease {
            metadata: ObjectMeta {
                name: Some(self.name.clone()),
                ..ObjectMeta::default()
            },
            spec: Some(LeaseSpec {
                holder_identity: Some(self.identity.clone()),
                lease_duration_seconds: Some(self.duration_secs()),
                acquire_time: Some(micro_now()),
                renew_time: Some(micro_now()),
                lease_transitions: Some(0),
                ..LeaseSpec::default()
            }),
        };
        match self.api.create(&PostParams::default(), &lease).await {
            Ok(written) => {
                tracing::info!(lease = %self.name, identity = %self.identity, "created and acquired the lease");
                self.wrote(&written, now);
                Ok(true)
            }
            // Another replica created it first.
            Err(e) if conflict(&e) => Ok(false),
            Err(e) => Err(e),
        }
    }

    fn wrote(&mut self, lease: &Lease, now: Instant) {
        self.observed = Some((
            lease.metadata.resource_version.clone().unwrap_or_default(),
            now,
        ));
        self.renewed = Some(now);
    }

    fn duration_secs(&self) -> i32 {
        i32::try_from(self.duration.as_secs().max(1)).unwrap_or(i32::MAX)
    }

    /// On shutdown: give the Lease up (empty holder) so another replica takes over at once.
    pub async fn release(&mut self) -> Result<(), kube::Error> {
        if self.renewed.is_none() {
            return Ok(());
        }
        let Some(mut lease) = self.api.get_opt(&self.name).await? else {
            return Ok(());
        };
        let Some(spec) = lease.spec.as_mut() else {
            return Ok(());
        };
        if spec.holder_identity.as_deref() != Some(self.identity.as_str()) {
            return Ok(());
        }
        spec.holder_identity = None;
        spec.renew_time = Some(micro_now());
        match self
            .api
            .replace(&self.name, &PostParams::default(), &lease)
            .await
        {
            Ok(_) => {
                self.renewed = None;
                Ok(())
            }
            Err(e) if conflict(&e) => Ok(()),
            Err(e) => Err(e),
        }
    }
}
