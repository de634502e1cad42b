# Images come only from the registries listed in registries.yaml (`data.registries.allowed`).
package main

import rego.v1

allowed_image(repository) if {
	some registry in data.registries.allowed
	startswith(repository, concat("", [registry, "/"]))
}

deny contains msg if {
	input.kind == "HelmRelease"
	repository := input.spec.values.image.repository
	not allowed_image(repository)
	msg := sprintf("%s pulls %s, which is not from an allowed registry (%s)", [input.metadata.name, repository, concat(", ", data.registries.allowed)])
}
