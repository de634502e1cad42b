# No retired Flux API versions, and none of the fields the current APIs removed.
package main

import rego.v1

retired_apis := {
	"helm.toolkit.fluxcd.io/v2beta1",
	"helm.toolkit.fluxcd.io/v2beta2",
	"source.toolkit.fluxcd.io/v1beta1",
	"source.toolkit.fluxcd.io/v1beta2",
	"kustomize.toolkit.fluxcd.io/v1beta1",
	"kustomize.toolkit.fluxcd.io/v1beta2",
}

deny contains msg if {
	retired_apis[input.apiVersion]
	msg := sprintf("%s %s uses the retired API %s", [input.kind, input.metadata.name, input.apiVersion])
}

removed_fields := {
	"HelmRelease": [["spec", "valuesFile"], ["spec", "chart", "spec", "valuesFile"], ["spec", "postRenderers", "kustomize", "patchesJson6902"], ["spec", "postRenderers", "kustomize", "patchesStrategicMerge"]],
	"Kustomization": [["spec", "patchesJson6902"], ["spec", "patchesStrategicMerge"], ["patchesJson6902"], ["patchesStrategicMerge"]],
}

deny contains msg if {
	some path in removed_fields[input.kind]
	object.get(input, path, null) != null
	msg := sprintf("%s %s sets %s, which Flux no longer supports", [input.kind, object.get(input, ["metadata", "name"], "(kustomization.yaml)"), concat(".", path)])
}
