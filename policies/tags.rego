# Production runs immutable images: a tag that CI moves (`latest`, `staging`, a branch name)
# makes rollbacks and audits meaningless.
package main

import rego.v1

mutable_tags := {"", "latest", "staging", "production", "main", "master", "dev", "develop", "stable", "edge"}

deny contains msg if {
	input.kind == "HelmRelease"
	not data.kairo.addon
	startswith(data.kairo.environment.name, "prod")
	tag := object.get(input.spec.values, ["image", "tag"], "")
	mutable_tags[lower(tag)]
	msg := sprintf("%s uses the mutable image tag %q in production; use a commit or release tag", [input.metadata.name, tag])
}
