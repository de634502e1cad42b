//! Rollout status: is every release of an environment Ready at the state Git renders?
//!
//! [`evaluate`] is pure: it reads the HelmReleases' conditions (as `flux get helmreleases` and
//! kstatus do), compares the live spec with the rendered one, checks the chart version Flux last
//! attempted and installed, and counts the owned workloads' updated and ready replicas. The
//! caller (`kairo status --wait`, or the daemon) decides how long to keep asking.

use serde::Serialize;
use serde_json::Value;

use super::{Desired, DesiredRelease, Live, Owners, name, normalize_helm_release};
use crate::model::tagpolicy::{Range, parse_tag};

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Phase {
    /// Ready, at the state Git renders, workloads rolled out.
    Ready,
    /// Not there yet, but nothing has failed: wait.
    Progressing,
    /// Not in the cluster (yet: Flux may not have applied the commit).
    Missing,
    /// `spec.suspend: true`: Flux will not roll it out.
    Suspended,
    /// The last install/upgrade failed and Flux is not retrying.
    Failed,
    /// Flux gave up (`Stalled`, for example retries exhausted).
    Stalled,
}

impl Phase {
    /// Whether waiting longer cannot help.
    pub fn is_terminal(self) -> bool {
        matches!(self, Phase::Suspended | Phase::Failed | Phase::Stalled)
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct WorkloadStatus {
    pub kind: String,
    pub name: String,
    pub replicas: i64,
    pub updated: i64,
    pub ready: i64,
    pub rolled_out: bool,
}

#[derive(Debug, Clone, Serialize)]
pub struct ReleaseStatus {
    pub name: String,
    pub phase: Phase,
    /// The Ready condition's reason and message, when there is one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// The chart version (or range) Git asks for.
    pub chart: String,
    /// `status.lastAttemptedRevision`: the chart version Flux last tried.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub attempted: Option<String>,
    /// Why the release is not yet at the state Git renders (empty when it is).
    pub pending: Vec<String>,
    pub workloads: Vec<WorkloadStatus>,
}

/// The `kairo status --output json` schema.
#[derive(Debug, Clone, Serialize)]
pub struct StatusReport {
    pub environment: String,
    pub revision: String,
    pub cluster: String,
    pub releases: Vec<ReleaseStatus>,
}

impl StatusReport {
    pub fn all_ready(&self) -> bool {
        self.releases.iter().all(|r| r.phase == Phase::Ready)
    }

    pub fn any_terminal(&self) -> bool {
        self.releases.iter().any(|r| r.phase.is_terminal())
    }
}

fn condition<'a>(o: &'a Value, kind: &str) -> Option<&'a Value> {
    o["status"]["conditions"]
        .as_array()?
        .iter()
        .find(|c| c["type"].as_str() == Some(kind))
}

fn is_true(c: Option<&Value>) -> bool {
    c.is_some_and(|c| c["status"].as_str() == Some("True"))
}

/// Whether a live chart version is what Git asks for (an exact version or a range).
fn version_matches(want: &str, got: &str) -> bool {
    if want == got {
        return true;
    }
    match (Range::parse(want), parse_tag(got)) {
        (Ok(range), Some(v)) => range.matches(&v),
        _ => false,
    }
}

fn int(v: &Value) -> i64 {
    v.as_i64().unwrap_or(0)
}

/// The status of every desired release of the environment.
pub fn evaluate(desired: &Desired, live: &Live, cluster: &str) -> StatusReport {
    let owners = live.owners();
    let by_name: std::collections::BTreeMap<&str, &Value> = live
        .helm_releases
        .iter()
        .filter(|o| super::namespace(o) == desired.namespace)
        .map(|o| (name(o), o))
        .collect();
    let releases = desired
        .releases
        .iter()
        .map(|r| release_status(desired, r, by_name.get(r.name.as_str()).copied(), &owners))
        .collect();
    StatusReport {
        environment: desired.environment.clone(),
        revision: desired.revision.clone(),
        cluster: cluster.to_string(),
        releases,
    }
}

fn release_status(
    desired: &Desired,
    r: &DesiredRelease,
    hr: Option<&Value>,
    owners: &Owners,
) -> ReleaseStatus {
    let mut status = ReleaseStatus {
        name: r.name.clone(),
        phase: Phase::Missing,
        reason: None,
        message: None,
        chart: r.chart_version.clone(),
        attempted: None,
        pending: Vec::new(),
        workloads: Vec::new(),
    };
    let Some(hr) = hr else {
        status
            .pending
            .push("the HelmRelease is not in the cluster".into());
        return status;
    };
    let ready = condition(hr, "Ready");
    status.reason = ready.and_then(|c| c["reason"].as_str()).map(str::to_string);
    status.message = ready
        .and_then(|c| c["message"].as_str())
        .map(str::to_string);
    status.attempted = hr["status"]["lastAttemptedRevision"]
        .as_str()
        .map(str::to_string);

    let generation = int(&hr["metadata"]["generation"]);
    let observed = int(&hr["status"]["observedGeneration"]);
    let current = observed >= generation;
    // The spec as drift compares it, the environment's ignore rules applied.
    let mut in_cluster = normalize_helm_release(hr, Some(&r.object));
    let mut in_git = normalize_helm_release(&r.object, Some(&r.object));
    super::ignore(desired, &mut in_cluster);
    super::ignore(desired, &mut in_git);
    let spec_from_git = in_cluster == in_git;
    if !spec_from_git {
        status
            .pending
            .push("the cluster's HelmRelease spec is not what Git renders".into());
    }
    if !current {
        status.pending.push(format!(
            "generation {generation} not yet reconciled (observed {observed})"
        ));
    }
    match &status.attempted {
        Some(v) if !version_matches(&r.chart_version, v) => status.pending.push(format!(
            "chart version `{v}` attempted, Git asks for `{}`",
            r.chart_version
        )),
        None => status.pending.push("no chart version attempted yet".into()),
        _ => {}
    }
    if let Some(latest) = hr["status"]["history"].as_array().and_then(|h| h.first()) {
        if latest["status"].as_str() != Some("deployed") {
            status.pending.push(format!(
                "the latest Helm release is `{}`",
                latest["status"].as_str().unwrap_or("unknown")
            ));
        }
        // Attempted is not installed: a rollback, or history not written yet.
        if let Some(v) = latest["chartVersion"].as_str()
            && !version_matches(&r.chart_version, v)
        {
            status.pending.push(format!(
                "the latest Helm release runs chart version `{v}`, Git asks for `{}`",
                r.chart_version
            ));
        }
    }
    if let Some(w) = &r.workload {
        let workloads = owners.workloads(&r.name, &w.namespace);
        if workloads.is_empty() {
            status.pending.push(format!(
                "no Deployment or StatefulSet of release `{}` in namespace `{}`",
                r.name, w.namespace
            ));
        }
        for o in workloads {
            let replicas = o["spec"].get("replicas").map_or(1, int);
            let updated = int(&o["status"]["updatedReplicas"]);
            let ready = int(&o["status"]["readyReplicas"]);
            let total = int(&o["status"]["replicas"]);
            let seen = int(&o["status"]["observedGeneration"]) >= int(&o["metadata"]["generation"]);
            let rolled_out = seen && updated == replicas && ready == replicas && total == replicas;
            if !rolled_out {
                status.pending.push(format!(
                    "{} `{}`: {ready}/{replicas} ready, {updated} updated",
                    super::kind(o),
                    name(o)
                ));
            }
            status.workloads.push(WorkloadStatus {
                kind: super::kind(o).to_string(),
                name: name(o).to_string(),
                replicas,
                updated,
                ready,
                rolled_out,
            });
        }
        // As drift reports it missing: a service that autoscales in Git but has no HPA runs
        // at a fixed replica count, which is not the state Git renders.
        if w.autoscaling.is_some() && owners.autoscalers(&r.name, &w.namespace).is_empty() {
            status.pending.push(format!(
                "no HorizontalPodAutoscaler of release `{}` in namespace `{}`",
                r.name, w.namespace
            ));
        }
    }

    let suspended = hr["spec"]["suspend"].as_bool() == Some(true);
    let ready_false = ready.is_some_and(|c| c["status"].as_str() == Some("False"));
    // A failure counts only for the spec Git renders: right after a commit, the cluster still
    // holds the old spec and its failure until Flux applies the commit, and waiting helps.
    status.phase = if suspended {
        Phase::Suspended
    } else if spec_from_git && is_true(condition(hr, "Stalled")) {
        Phase::Stalled
    } else if spec_from_git && ready_false && current && !is_true(condition(hr, "Reconciling")) {
        Phase::Failed
    } else if is_true(ready) && status.pending.is_empty() {
        Phase::Ready
    } else {
        Phase::Progressing
    };
    status
}

/// Plain text, one line per release and one per workload.
pub fn render_text(r: &StatusReport) -> String {
    use std::fmt::Write;
    let ready = r
        .releases
        .iter()
        .filter(|x| x.phase == Phase::Ready)
        .count();
    let mut out = format!(
        "{} at {} -> {}: {ready}/{} releases ready\n",
        r.environment,
        r.revision,
        r.cluster,
        r.releases.len()
    );
    for rel in &r.releases {
        let phase = format!("{:?}", rel.phase).to_lowercase();
        let _ = write!(out, "{} {phase} chart {}", rel.name, rel.chart);
        if let Some(a) = &rel.attempted {
            let _ = write!(out, " (attempted {a})");
        }
        if let (Some(reason), Some(message)) = (&rel.reason, &rel.message)
            && rel.phase != Phase::Ready
        {
            let _ = write!(out, ": {reason}: {message}");
        }
        out.push('\n');
        for w in &rel.workloads {
            let _ = writeln!(
                out,
                "    {} {}: {}/{} ready, {} updated",
                w.kind, w.name, w.ready, w.replicas, w.updated
            );
        }
        for p in &rel.pending {
            let _ = writeln!(out, "    pending: {p}");
        }
    }
    out
}

pub fn render_json(r: &StatusReport) -> String {
    serde_json::to_string_pretty(r).expect("a report serializes") + "\n"
}
