# Production services that run highly available (2 or more replicas, or an HPA minimum of 2 or
# more) need a PodDisruptionBudget, and its minAvailable must stay below the replica count, or
# every node drain hangs.
package main

import rego.v1

min_replicas := input.spec.values.autoscaling.minReplicas if input.spec.values.autoscaling.enabled

min_replicas := input.spec.values.replicaCount if not input.spec.values.autoscaling.enabled

ha if {
	input.kind == "HelmRelease"
	startswith(data.kairo.environment.name, "prod")
	min_replicas >= 2
}

deny contains msg if {
	ha
	not input.spec.values.podDisruptionBudget.enabled
	msg := sprintf("%s runs %d replicas in production but has no PodDisruptionBudget", [input.metadata.name, min_replicas])
}

deny contains msg if {
	ha
	input.spec.values.podDisruptionBudget.enabled
	input.spec.values.podDisruptionBudget.minAvailable >= min_replicas
	msg := sprintf("%s: PodDisruptionBudget minAvailable %d allows no eviction with %d replicas", [input.metadata.name, input.spec.values.podDisruptionBudget.minAvailable, min_replicas])
}
