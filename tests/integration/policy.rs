//! `kairo check`: every shipped policy with a passing and a failing case, Rego errors, and the
//! check that `kairo render` runs before writing.

use crate::support::{CATALOG, Repo, STAGING, copy_dir, manifest_dir};

/// A production environment that passes every shipped policy.
const PRODUCTION: &str = r#"apiVersion: kairo.dev/v1alpha1
kind: Environment
metadata:
  name: production
spec:
  namespace: acme
  branch: main
  cluster: acme-production
  defaults:
    replicas: 3
    hpa: {minReplicas: 3, maxReplicas: 6}
    pdb: {minAvailable: 2}
    pool: general
  nodePools:
    general:
      labels: {node-type: general}
    gpu:
      labels: {node-type: gpu}
      taints: [{key: nvidia.com/gpu, effect: NoSchedule}]
      gpu: {class: L40S, count: 4}
  services:
    web:
      image: {tag: "1.0.0"}
    worker:
      image: {tag: "2.0.0"}
      resources:
        limits: {cpu: 1000m, memory: 2Gi}
"#;

fn repo() -> Repo {
    let repo = Repo::new();
    copy_dir(
        &manifest_dir().join("policies"),
        &repo.path().join("policies"),
    );
    repo.write("environments/services.yaml", CATALOG);
    repo.write("environments/production.yaml", PRODUCTION);
    repo
}

/// Runs `kairo check --output json` and returns (exit code, [(policy, message)]).
fn check(repo: &Repo, extra: &[&str]) -> (i32, Vec<(String, String)>) {
    let mut args = vec!["check", "--output", "json"];
    args.extend_from_slice(extra);
    let out = repo.kairo(&args);
    assert!(out.code != 2, "{}", out.stderr);
    let v: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
    let findings = v["findings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| {
            (
                f["policy"].as_str().unwrap().to_string(),
                f["message"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    (out.code, findings)
}

fn set_production(repo: &Repo, from: &str, to: &str) {
    assert!(PRODUCTION.contains(from), "{from}");
    repo.write(
        "environments/production.yaml",
        &PRODUCTION.replace(from, to),
    );
}

#[test]
fn the_passing_case_passes() {
    let repo = repo();
    assert_eq!(check(&repo, &[]), (0, vec![]));
    let out = repo.kairo(&["check"]);
    assert_eq!(out.stdout, "0 denied, 0 warning(s) on 7 object(s)\n");
}

#[test]
fn the_repository_itself_passes() {
    let out = crate::support::run_kairo(&manifest_dir(), &["check"]);
    assert_eq!(out.code, 0, "{}{}", out.stdout, out.stderr);
}

#[test]
fn ha_needs_a_budget_that_allows_evictions() {
    let repo = repo();
    set_production(
        &repo,
        "    web:\n      image: {tag: \"1.0.0\"}\n",
        "    web:\n      image: {tag: \"1.0.0\"}\n      pdb: {enabled: false}\n",
    );
    assert_eq!(
        check(&repo, &[]),
        (
            1,
            vec![(
                "policies/ha.rego".into(),
                "web runs 3 replicas in production but has no PodDisruptionBudget".into()
            )]
        )
    );
    // Staging is not production: the same budget is fine there.
    repo.write(
        "environments/production.yaml",
        &PRODUCTION
            .replace("name: production", "name: staging")
            .replace("pdb: {minAvailable: 2}", "pdb: {enabled: false}"),
    );
    assert_eq!(check(&repo, &[]).0, 0);
}

#[test]
fn no_mutable_tags_in_production() {
    let repo = repo();
    set_production(&repo, "tag: \"1.0.0\"", "tag: latest");
    assert_eq!(
        check(&repo, &[]),
        (1, vec![("policies/tags.rego".into(), "web uses the mutable image tag \"latest\" in production; use a commit or release tag".into())])
    );
}

#[test]
fn requests_and_limits_are_required_and_ordered() {
    let repo = repo();
    // worker's catalog entry has no limits; production gives it some: without them it fails.
    set_production(
        &repo,
        "      resources:\n        limits: {cpu: 1000m, memory: 2Gi}\n",
        "",
    );
    let (code, findings) = check(&repo, &[]);
    assert_eq!(code, 1);
    assert_eq!(
        findings,
        vec![
            (
                "policies/resources.rego".into(),
                "worker has no cpu limit".into()
            ),
            (
                "policies/resources.rego".into(),
                "worker has no memory limit".into()
            ),
        ]
    );
    // kairo's model already rejects a request above its limit; a template can still produce one.
    let repo = self::repo();
    let template = repo.read("templates/helmrelease.yaml.j2");
    repo.write(
        "templates/helmrelease.yaml.j2",
        &template.replace(
            "{{ release.resources.limits | yaml | indent(8) }}",
            "cpu: 100m\n        memory: 2Gi",
        ),
    );
    let (code, findings) = check(&repo, &[]);
    assert_eq!(code, 1);
    assert!(
        findings.contains(&(
            "policies/resources.rego".into(),
            "web: cpu limit 100m is below its request 200m".into()
        )),
        "{findings:?}"
    );
}

#[test]
fn gpu_services_run_on_a_tainted_gpu_pool() {
    let repo = repo();
    set_production(
        &repo,
        "      taints: [{key: nvidia.com/gpu, effect: NoSchedule}]\n",
        "",
    );
    assert_eq!(
        check(&repo, &[]),
        (
            1,
            vec![(
                "policies/gpu.rego".into(),
                "worker requests GPUs but tolerates no taint; GPU pools are tainted".into()
            )]
        )
    );
    let repo = self::repo();
    let template = repo.read("templates/helmrelease.yaml.j2");
    repo.write(
        "templates/helmrelease.yaml.j2",
        &template.replace(
            "{{ release.resources.limits | yaml | indent(8) }}",
            "cpu: \"1\"\n        memory: 2Gi",
        ),
    );
    let (_, findings) = check(&repo, &["--env", "production"]);
    assert!(
        findings.contains(&(
            "policies/gpu.rego".into(),
            "worker needs 1 GPU(s) but requests no `nvidia.com/gpu`".into()
        )),
        "{findings:?}"
    );
    // And a GPU request without a node selector.
    repo.write(
        "templates/helmrelease.yaml.j2",
        &template.replace("{%- if release.nodeSelector %}", "{%- if false %}"),
    );
    let (_, findings) = check(&repo, &[]);
    assert!(
        findings.contains(&(
            "policies/gpu.rego".into(),
            "worker requests GPUs but selects no node pool".into()
        )),
        "{findings:?}"
    );
}

#[test]
fn images_come_from_allowed_registries() {
    let repo = repo();
    repo.write(
        "environments/services.yaml",
        &CATALOG.replace("ghcr.io/acme/web", "docker.io/acme/web"),
    );
    assert_eq!(
        check(&repo, &[]),
        (
            1,
            vec![(
                "policies/registries.rego".into(),
                "web pulls docker.io/acme/web, which is not from an allowed registry (ghcr.io)"
                    .into()
            )]
        )
    );
    // The list is data: allowing docker.io makes it pass.
    repo.write(
        "policies/registries.yaml",
        "registries:\n  allowed: [ghcr.io, docker.io]\n",
    );
    assert_eq!(check(&repo, &[]).0, 0);
}

#[test]
fn retired_flux_apis_and_removed_fields_are_denied() {
    let repo = repo();
    let template = repo.read("templates/helmrelease.yaml.j2");
    repo.write(
        "templates/helmrelease.yaml.j2",
        &template
            .replace(
                "helm.toolkit.fluxcd.io/v2",
                "helm.toolkit.fluxcd.io/v2beta1",
            )
            .replace(
                "  releaseName:",
                "  valuesFile: values.yaml\n  releaseName:",
            ),
    );
    let (code, findings) = check(&repo, &[]);
    assert_eq!(code, 1);
    let flux: Vec<&String> = findings
        .iter()
        .filter(|(p, _)| p == "policies/flux-api.rego")
        .map(|(_, m)| m)
        .collect();
    assert_eq!(
        flux,
        [
            "HelmRelease web sets spec.valuesFile, which Flux no longer supports",
            "HelmRelease web uses the retired API helm.toolkit.fluxcd.io/v2beta1",
            "HelmRelease worker sets spec.valuesFile, which Flux no longer supports",
            "HelmRelease worker uses the retired API helm.toolkit.fluxcd.io/v2beta1",
        ]
    );
}

#[test]
fn warnings_pass_unless_asked_and_other_namespaces() {
    let repo = repo();
    repo.write(
        "policies/labels.rego",
        "package main\n\nimport rego.v1\n\nwarn_team contains msg if {\n\tinput.kind == \"Namespace\"\n\tnot input.metadata.labels.team\n\tmsg := \"namespace has no team label\"\n}\n",
    );
    repo.write("policies/other.rego", "package other\n\nimport rego.v1\n\nviolation contains {\"msg\": \"always\"} if input.kind == \"Namespace\"\n");
    let out = repo.kairo(&["check"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(
        out.stdout,
        "warn: production: Namespace acme: namespace has no team label\n  --> policies/labels.rego (rule `warn_team`), clusters/production/namespace.yaml\n0 denied, 1 warning(s) on 7 object(s)\n"
    );
    assert_eq!(repo.kairo(&["check", "--fail-on-warn"]).code, 1);
    let (code, findings) = check(&repo, &["--namespace", "other"]);
    assert_eq!(
        (code, findings),
        (1, vec![("policies/other.rego".into(), "always".into())])
    );
}

#[test]
fn a_rego_syntax_error_names_the_file_and_line() {
    let repo = repo();
    repo.write(
        "policies/broken.rego",
        "package main\n\nimport rego.v1\n\ndeny contains msg if {\n\tmsg := \n}\n",
    );
    let out = repo.kairo(&["check"]);
    assert_eq!(out.code, 2);
    assert!(
        out.stderr
            .starts_with("error: syntax error in policy `policies/broken.rego`:\n"),
        "{}",
        out.stderr
    );
    assert!(
        out.stderr.contains("policies/broken.rego:6:"),
        "{}",
        out.stderr
    );
}

#[test]
fn render_checks_before_writing() {
    let repo = repo();
    set_production(&repo, "tag: \"1.0.0\"", "tag: latest");
    let out = repo.kairo(&["render"]);
    assert_eq!(out.code, 1);
    assert!(
        out.stderr
            .contains("deny: production: HelmRelease acme/web: web uses the mutable image tag"),
        "{}",
        out.stderr
    );
    assert!(
        out.stderr
            .contains("error: policies in `policies/` deny this render; nothing was written"),
        "{}",
        out.stderr
    );
    assert!(!repo.exists("clusters"));
    assert_eq!(repo.kairo(&["render", "--no-check"]).code, 0);
    assert!(repo.exists("clusters/production/releases/web.yaml"));
    let _ = STAGING;
}
