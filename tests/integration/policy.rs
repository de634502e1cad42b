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

// ---- Failing closed ---------------------------------------------------------------------------

const HEADER: &str = "package main\n\nimport rego.v1\n\n";

#[test]
fn a_builtin_error_is_an_error_naming_the_policy() {
    let repo = repo();
    repo.write(
        "policies/quantity.rego",
        &format!(
            "{HEADER}deny contains msg if {{\n\tinput.kind == \"Namespace\"\n\tunits.parse(\"lots\") > 1\n\tmsg := \"too big\"\n}}\n"
        ),
    );
    let out = repo.kairo(&["check"]);
    assert_eq!(out.code, 2, "{}{}", out.stdout, out.stderr);
    assert!(
        out.stderr.starts_with(
            "error: policy `policies/quantity.rego` failed on `Namespace acme` (clusters/production/namespace.yaml): "
        ),
        "{}",
        out.stderr
    );
    assert!(
        out.stderr
            .contains("\n  hint: kairo evaluates as `opa eval --strict-builtin-errors` does"),
        "{}",
        out.stderr
    );
    assert_eq!(
        out.stdout, "",
        "no verdict is printed when the check could not run"
    );
    // render refuses to write on it too.
    assert_eq!(repo.kairo(&["render"]).code, 2);
    assert!(!repo.exists("clusters"));
}

#[test]
fn a_rule_value_that_is_not_a_message_is_an_error() {
    let repo = repo();
    repo.write(
        "policies/numbers.rego",
        &format!("{HEADER}deny contains 42 if input.kind == \"Namespace\"\n"),
    );
    let out = repo.kairo(&["check"]);
    assert_eq!(out.code, 2, "{}", out.stderr);
    assert!(
        out.stderr.starts_with(
            "error: rule `deny` in policy `policies/numbers.rego` returned `[42]` for `Namespace acme` (clusters/production/namespace.yaml), which is not a message\n  hint: conftest rules produce strings, or objects with a string `msg`"
        ),
        "{}",
        out.stderr
    );
    // An object without a string `msg` is not a message either; one with it is.
    repo.write(
        "policies/numbers.rego",
        &format!("{HEADER}warn contains {{\"text\": \"x\"}} if input.kind == \"Namespace\"\n"),
    );
    assert_eq!(repo.kairo(&["check"]).code, 2);
    repo.write(
        "policies/numbers.rego",
        &format!("{HEADER}warn contains {{\"msg\": \"x\", \"details\": 1}} if input.kind == \"Namespace\"\n"),
    );
    assert_eq!(
        check(&repo, &[]),
        (0, vec![("policies/numbers.rego".into(), "x".into())])
    );
}

#[test]
fn check_without_policies_says_nothing_was_checked() {
    let repo = Repo::new();
    repo.write("environments/services.yaml", CATALOG);
    repo.write("environments/production.yaml", PRODUCTION);
    let note = "note: no policies in policies/: nothing checked (no `deny`, `violation` or `warn` rules in package(s) `main`)\n";
    for setup in [None, Some("# nothing here yet\n")] {
        if let Some(readme) = setup {
            // A policies/ directory with a library only, and a README.
            repo.write("policies/README.md", readme);
            repo.write(
                "policies/lib.rego",
                "package lib\n\nimport rego.v1\n\nprod(env) if startswith(env, \"prod\")\n",
            );
        }
        let out = repo.kairo(&["check"]);
        // Not a failure: a repository may have no policies. But it is said, never a silent pass.
        assert_eq!(
            (out.code, out.stdout.as_str(), out.stderr.as_str()),
            (0, "", note)
        );
        let out = repo.kairo(&["check", "--output", "json"]);
        assert_eq!(out.code, 0);
        let v: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
        assert_eq!(v["checked"], false);
        assert_eq!(v["findings"], serde_json::json!([]));
    }
    // With policies, the report says they ran.
    let repo = self::repo();
    let out = repo.kairo(&["check", "--output", "json"]);
    let v: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
    assert_eq!(v["checked"], true);
}

// ---- Limits -----------------------------------------------------------------------------------

/// Loops over 8e9 combinations and allocates nothing: only the time limit stops it.
const SPIN: &str = "deny contains msg if {\n\tinput.kind == \"Namespace\"\n\tnums := numbers.range(1, 2000)\n\tn := count([x | some x in nums; some y in nums; some z in nums; x == y + z + 100000])\n\tmsg := sprintf(\"%d\", [n])\n}\n";

/// Builds a 3-million-element array (about 100 MB): only the memory limit stops it.
const HOG: &str = "deny contains msg if {\n\tinput.kind == \"Namespace\"\n\tn := count([x | some x in numbers.range(1, 3000000)])\n\tmsg := sprintf(\"%d\", [n])\n}\n";

#[test]
fn a_runaway_policy_stops_at_the_time_limit() {
    let repo = repo();
    repo.write("policies/spin.rego", &format!("{HEADER}{SPIN}"));
    for command in ["check", "render"] {
        let out = repo.kairo(&[command, "--policy-timeout", "200ms"]);
        assert_eq!(out.code, 2, "{command}: {}", out.stderr);
        assert!(
            out.stderr.starts_with(
                "error: policy `policies/spin.rego` ran longer than 0.2s on `Namespace acme` (clusters/production/namespace.yaml); evaluation stopped\n  hint: a policy runs once per object and should take microseconds; if this one needs longer, raise the limit with `--policy-timeout`"
            ),
            "{command}: {}",
            out.stderr
        );
    }
    assert!(!repo.exists("clusters"));
}

#[test]
fn a_policy_that_allocates_without_bound_stops_at_the_memory_limit() {
    let repo = repo();
    repo.write("policies/hog.rego", &format!("{HEADER}{HOG}"));
    let out = repo.kairo(&["check", "--policy-memory", "16", "--policy-timeout", "10m"]);
    assert_eq!(out.code, 2, "{}", out.stderr);
    assert!(
        out.stderr.starts_with(
            "error: policy `policies/hog.rego` used more than 16 MiB on `Namespace acme` (clusters/production/namespace.yaml); evaluation stopped\n  hint: "
        ),
        "{}",
        out.stderr
    );
    assert!(
        out.stderr.contains("`--policy-memory` (MiB)"),
        "{}",
        out.stderr
    );
    // Raised, the same policy completes.
    let out = repo.kairo(&[
        "check",
        "--policy-memory",
        "4096",
        "--policy-timeout",
        "10m",
    ]);
    assert_eq!(out.code, 1, "{}", out.stderr);
    assert!(out.stdout.contains(": 3000000\n"), "{}", out.stdout);
}

#[test]
fn policies_using_with_work_and_are_bounded() {
    // `with` (common in conftest policies) changes what the evaluation sees; the limits hold
    // inside it.
    let repo = repo();
    repo.write(
        "policies/with.rego",
        &format!("{HEADER}is_ns if input.kind == \"Namespace\"\n\nwarn contains \"namespace\" if is_ns with input.kind as input.kind\n"),
    );
    assert_eq!(
        check(&repo, &[]),
        (0, vec![("policies/with.rego".into(), "namespace".into())])
    );
    repo.write(
        "policies/with.rego",
        &format!(
            "{HEADER}is_ns if input.kind == \"Namespace\"\n\n{}",
            SPIN.replace(
                "input.kind == \"Namespace\"",
                "is_ns with input.kind as input.kind"
            )
        ),
    );
    let out = repo.kairo(&["check", "--policy-timeout", "200ms"]);
    assert_eq!(out.code, 2, "{}", out.stderr);
    assert!(
        out.stderr.starts_with(
            "error: policy `policies/with.rego` ran longer than 0.2s on `Namespace acme`"
        ),
        "{}",
        out.stderr
    );
}

#[test]
fn limit_flags_are_validated() {
    let repo = repo();
    for args in [
        ["check", "--policy-timeout", "soon"],
        ["check", "--policy-memory", "0"],
        ["render", "--policy-memory", "-1"],
    ] {
        let out = repo.kairo(&args);
        assert_eq!(out.code, 2, "{args:?}: {}", out.stderr);
    }
}

// ---- Result cache -----------------------------------------------------------------------------

/// `kairo check` with JSON logs: (exit code, findings as (policy, message), objects from cache).
fn check_cached(repo: &Repo) -> (i32, Vec<(String, String)>, u64) {
    let out = repo.kairo(&["check", "--output", "json", "-v", "--log-format", "json"]);
    let v: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
    let findings = v["findings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| {
            (
                f["policy"].as_str().unwrap().into(),
                f["message"].as_str().unwrap().into(),
            )
        })
        .collect();
    let cached = out
        .stderr
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .find(|l| l["fields"]["message"] == "policies checked")
        .and_then(|l| l["fields"]["cached"].as_u64())
        .unwrap_or_else(|| panic!("a `policies checked` log line in:\n{}", out.stderr));
    (out.code, findings, cached)
}

#[test]
fn results_are_cached_in_the_git_directory_and_any_change_misses() {
    let repo = repo();
    crate::support::commit_all(repo.path(), "base", 1_700_000_000);
    let clean = (0, vec![], 0);
    assert_eq!(check_cached(&repo), clean);
    // Every object now comes from the cache, with the same verdict.
    assert_eq!(check_cached(&repo), (0, vec![], 7));
    let dir = repo.path().join(".git/kairo/policy-cache");
    let files: Vec<_> = std::fs::read_dir(&dir).unwrap().flatten().collect();
    assert_eq!(files.len(), 1, "one file per policy set");
    let status = git2::Repository::open(repo.path())
        .unwrap()
        .statuses(None)
        .unwrap()
        .len();
    assert_eq!(status, 0, "the cache never shows in the working tree");

    // A policy data file changes: nothing may come from the old results.
    let registries = repo.read("policies/registries.yaml");
    repo.write(
        "policies/registries.yaml",
        "registries:\n  allowed: [docker.io]\n",
    );
    let (code, findings, cached) = check_cached(&repo);
    assert_eq!((code, cached), (1, 0));
    assert_eq!(findings.len(), 2, "{findings:?}");
    repo.write("policies/registries.yaml", &registries);
    // Back to the first set: its results are still there.
    assert_eq!(check_cached(&repo), (0, vec![], 7));

    // One environment file changes one object: only that one is evaluated again.
    set_production(&repo, "tag: \"1.0.0\"", "tag: latest");
    let (code, findings, cached) = check_cached(&repo);
    assert_eq!((code, findings.len(), cached), (1, 1, 6));
    assert_eq!(findings[0].0, "policies/tags.rego");

    // A corrupt cache file is a miss, not an error and not a wrong answer.
    for f in std::fs::read_dir(&dir).unwrap().flatten() {
        std::fs::write(f.path(), "kairo-policy-cache 1\nzz {}\n").unwrap();
    }
    let (code, findings, cached) = check_cached(&repo);
    assert_eq!((code, findings.len(), cached), (1, 1, 0));
    assert_eq!(check_cached(&repo).2, 7);
}

#[test]
fn errors_are_never_cached() {
    let repo = repo();
    crate::support::commit_all(repo.path(), "base", 1_700_000_000);
    repo.write("policies/spin.rego", &format!("{HEADER}{SPIN}"));
    for _ in 0..2 {
        let out = repo.kairo(&["check", "--policy-timeout", "100ms"]);
        assert_eq!(out.code, 2, "{}", out.stderr);
        assert!(
            out.stderr.contains("ran longer than 0.1s"),
            "{}",
            out.stderr
        );
    }
}

/// A cache hit also stands for the render's output check (`render::Want::Vouched`): the key
/// covers the kairo build, the template and the bytes, and only objects that passed the check
/// are stored. So a warm cache never lets through output the check rejects.
#[test]
fn a_warm_cache_never_lets_output_the_render_rejects_through() {
    let repo = repo();
    crate::support::commit_all(repo.path(), "base", 1_700_000_000);
    assert_eq!(check_cached(&repo), (0, vec![], 0));
    assert_eq!(check_cached(&repo), (0, vec![], 7), "warm");
    let release =
        std::fs::read_to_string(manifest_dir().join("templates/helmrelease.yaml.j2")).unwrap();
    for (broken, message) in [
        (
            release.replacen(
                "kind: HelmRelease\n",
                "kind: HelmRelease\nkind: HelmRelease\n",
                1,
            ),
            "duplicate key `kind`",
        ),
        (
            release.replacen("kind: HelmRelease\n", "kind: Deployment\n", 1),
            "`kind: Deployment`; expected `HelmRelease`",
        ),
    ] {
        repo.write("templates/helmrelease.yaml.j2", &broken);
        for args in [&["check"][..], &["render", "--check"]] {
            let out = repo.kairo(args);
            assert_eq!(out.code, 2, "{message} {args:?}: {}", out.stderr);
            assert!(out.stderr.contains(message), "{args:?}: {}", out.stderr);
        }
    }
    // The template as shipped again: every object from the cache, none of them re-parsed.
    repo.write("templates/helmrelease.yaml.j2", &release);
    assert_eq!(check_cached(&repo), (0, vec![], 7));
}

/// `--policy-memory` bounds what a policy evaluation may add: the render going on around the
/// check (a large environment's template values, its files so far, the other thread's
/// environments) never uses it up. With a ceiling set once per environment, this 1 MiB budget
/// failed on the first object.
#[test]
fn rendering_never_uses_up_the_policy_memory_budget() {
    let repo = Repo::new();
    copy_dir(
        &manifest_dir().join("policies"),
        &repo.path().join("policies"),
    );
    let (mut catalog, mut staging) = (CATALOG.to_string(), STAGING.to_string());
    for i in 0..400 {
        catalog.push_str(&format!(
            "    svc-{i:04}:\n      chart: {{version: \">=1.0.0\", source: charts}}\n      image: {{repository: ghcr.io/acme/svc-{i:04}}}\n      resources:\n        requests: {{cpu: 100m, memory: 256Mi}}\n        limits: {{cpu: 500m, memory: 512Mi}}\n"
        ));
        staging.push_str(&format!(
            "    svc-{i:04}: {{image: {{tag: \"1.0.{i}\"}}}}\n"
        ));
    }
    repo.write("environments/services.yaml", &catalog);
    repo.write("environments/staging.yaml", &staging);
    let out = repo.kairo(&["check", "--policy-memory", "1"]);
    assert_eq!(out.code, 0, "{}\n{}", out.stdout, out.stderr);
    assert!(out.stdout.contains("on 406 object(s)"), "{}", out.stdout);
}
