# GPU services request `nvidia.com/gpu` and run on a GPU pool: they select the pool by node label
# and tolerate its taint.
package main

import rego.v1

gpu_limit := object.get(input.spec.values, ["resources", "limits", "nvidia.com/gpu"], null)

deny contains msg if {
	input.kind == "HelmRelease"
	object.get(data.kairo, ["service", "gpu"], 0) > 0
	gpu_limit == null
	msg := sprintf("%s needs %d GPU(s) but requests no `nvidia.com/gpu`", [input.metadata.name, data.kairo.service.gpu])
}

deny contains msg if {
	input.kind == "HelmRelease"
	gpu_limit != null
	count(object.get(input.spec.values, "nodeSelector", {})) == 0
	msg := sprintf("%s requests GPUs but selects no node pool", [input.metadata.name])
}

deny contains msg if {
	input.kind == "HelmRelease"
	gpu_limit != null
	count(object.get(input.spec.values, "tolerations", [])) == 0
	msg := sprintf("%s requests GPUs but tolerates no taint; GPU pools are tainted", [input.metadata.name])
}
