//! Capacity: does what an environment asks of each node pool fit in what the pool declares?
//!
//! GPU demand (replicas, or the HPA minimum, times GPUs per pod) is compared with supply (pool
//! `nodes` times GPUs per node): over capacity is an error (a warning with
//! `gpuOvercommit: warn`). A pool that declares `nodeSize` gets a warning when the CPU or memory
//! requests placed on it exceed `nodes` times that size. A pool without `nodes` is not checked.
//! Add-ons are not counted: their resources live in third-party chart values kairo does not read.
//! Pure: reads only the resolved releases and the pool declarations.

use super::Release;
use super::diag::{Diagnostic, Pos, Severity, SourceFile};
use super::quantity::Quantity;
use super::raw::{self, Overcommit};

const GI: i128 = 1 << 30;
const NANO: i128 = 1_000_000_000;

/// The replicas a release keeps running at the least: the HPA minimum when autoscaled.
fn floor(r: &Release) -> u32 {
    if r.autoscaling.enabled {
        r.autoscaling.min_replicas
    } else {
        r.replicas
    }
}

fn cpu_text(nanos: i128) -> String {
    if nanos % NANO == 0 {
        format!("{}", nanos / NANO)
    } else {
        format!("{}m", nanos / 1_000_000)
    }
}

fn memory_text(nanos: i128) -> String {
    let bytes = nanos / NANO;
    if bytes % GI == 0 {
        format!("{}Gi", bytes / GI)
    } else {
        format!("{:.1}Gi", bytes as f64 / GI as f64)
    }
}

pub(super) fn check(
    file: &SourceFile,
    env: &str,
    spec: &raw::EnvironmentSpec,
    releases: &[Release],
    out: &mut Vec<Diagnostic>,
) {
    for (pool_name, pool) in &spec.node_pools.0 {
        let Some(nodes) = &pool.nodes else { continue };
        let at: Pos = nodes.referenced.into();
        let members: Vec<&Release> = releases
            .iter()
            .filter(|r| r.pool.as_deref() == Some(pool_name.value.as_str()))
            .collect();

        let per_node = pool.gpu.as_ref().map_or(0, |g| g.count.value);
        let supply = u64::from(nodes.value) * u64::from(per_node);
        let users: Vec<&&Release> = members.iter().filter(|r| r.gpu > 0).collect();
        let demand: u64 = users
            .iter()
            .map(|r| u64::from(floor(r)) * u64::from(r.gpu))
            .sum();
        if demand > supply {
            let warn = pool
                .gpu_overcommit
                .as_ref()
                .is_some_and(|o| o.value == Overcommit::Warn);
            let list = users
                .iter()
                .filter(|r| floor(r) > 0)
                .map(|r| {
                    format!(
                        "`{}` {} ({} × {})",
                        r.name,
                        u64::from(floor(r)) * u64::from(r.gpu),
                        floor(r),
                        r.gpu
                    )
                })
                .collect::<Vec<_>>()
                .join(", ");
            let message = format!(
                "node pool `{}` in environment `{env}` is asked for {demand} GPU(s) but has {supply} ({} node(s) × {per_node} GPU(s) per node): {list}",
                pool_name.value, nodes.value
            );
            let severity = if warn {
                Severity::Warning
            } else {
                Severity::Error
            };
            out.push(file.diag(severity, at, message).with_hint(
                "grow the pool (`nodes`), run fewer replicas (or a lower HPA minimum), or set `gpuOvercommit: warn` on the pool to accept the queueing",
            ));
        }

        let Some(size) = &pool.node_size else {
            continue;
        };
        for (resource, declared) in [("cpu", &size.cpu), ("memory", &size.memory)] {
            let Some(declared) = declared else { continue };
            let per_node = match Quantity::parse(&declared.value.0) {
                Ok(q) => q,
                Err(e) => {
                    out.push(
                        file.error(
                            declared.referenced.into(),
                            format!("invalid {resource} quantity: {e}"),
                        )
                        .with_hint("write a Kubernetes quantity such as `4`, `3500m` or `16Gi`"),
                    );
                    continue;
                }
            };
            let capacity = per_node.nanos() * i128::from(nodes.value);
            let mut total = 0i128;
            let mut parts = Vec::new();
            for r in &members {
                if let Some(q) = r.resources.requests.get(resource) {
                    let n = q.0.nanos() * i128::from(floor(r));
                    if n > 0 {
                        total += n;
                        parts.push((n, r.name.as_str()));
                    }
                }
            }
            if total <= capacity {
                continue;
            }
            parts.sort_by(|a, b| b.cmp(a));
            let text = |n| {
                if resource == "cpu" {
                    cpu_text(n)
                } else {
                    memory_text(n)
                }
            };
            let list = parts
                .iter()
                .map(|(n, name)| format!("`{name}` {}", text(*n)))
                .collect::<Vec<_>>()
                .join(", ");
            out.push(
                file.diag(
                    Severity::Warning,
                    at,
                    format!(
                        "node pool `{}` in environment `{env}`: {resource} requests total {} but {} node(s) of {} hold {}: {list}",
                        pool_name.value,
                        text(total),
                        nodes.value,
                        declared.value.0,
                        text(capacity)
                    ),
                )
                .with_hint("pods beyond that stay Pending: grow the pool, or lower replicas or requests"),
            );
        }
    }
}
