# Every service of ours (not add-ons: third-party charts size themselves) declares CPU and memory requests and limits, and no limit is below its request
# (the scheduler reserves requests; limits cap the container).
package main

import rego.v1

deny contains msg if {
	input.kind == "HelmRelease"
	not data.kairo.addon
	some section in ["requests", "limits"]
	some resource in ["cpu", "memory"]
	not input.spec.values.resources[section][resource]
	msg := sprintf("%s has no %s %s", [input.metadata.name, resource, trim_suffix(section, "s")])
}

deny contains msg if {
	input.kind == "HelmRelease"
	not data.kairo.addon
	some resource in ["cpu", "memory"]
	request := input.spec.values.resources.requests[resource]
	limit := input.spec.values.resources.limits[resource]
	units.parse(limit) < units.parse(request)
	msg := sprintf("%s: %s limit %v is below its request %v", [input.metadata.name, resource, limit, request])
}
