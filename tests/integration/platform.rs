//! Chart values, valuesFrom, dependsOn, add-ons, release settings, capacity, `kairo init` and
//! `kairo explain`: every new input error as a snapshot, and the commands end to end.

use crate::support::{CATALOG, Repo, STAGING};

/// Renders and returns stderr, asserting exit code 2 and that nothing was written.
fn errors(repo: &Repo) -> String {
    let out = repo.kairo(&["render"]);
    assert_eq!(out.code, 2, "stderr: {}", out.stderr);
    assert!(
        !repo.exists("clusters"),
        "an input error must not write anything"
    );
    out.stderr
}

/// The test catalog with `extra` appended under `spec:` and `services.web` extended by `web`.
fn catalog(web: &str, extra: &str) -> String {
    let with_web = CATALOG.replace(
        "      autoscaling: true\n    worker:",
        &format!("      autoscaling: true\n{web}    worker:"),
    );
    format!("{with_web}{extra}")
}

/// The staging environment with `web`'s entry extended by `web` and `extra` appended to `spec:`.
fn staging(web: &str, extra: &str) -> String {
    format!("{STAGING}{web}{extra}")
}

#[test]
fn owned_keys_in_free_values_name_the_typed_field() {
    let repo = Repo::with_staging();
    repo.write(
        "environments/services.yaml",
        &catalog(
            "      ports: [{name: http, port: 80}]\n      values:\n        replicaCount: 3\n        service: {ports: [{port: 80}]}\n",
            "",
        ),
    );
    repo.write(
        "environments/staging.yaml",
        &staging(
            "      values:\n        image: {tag: x}\n        nodeSelector: {a: b}\n",
            "",
        )
        .replace(
            "    pdb: {minAvailable: 1}\n",
            "    pdb: {minAvailable: 1}\n    values: [not, a, map]\n",
        ),
    );
    insta::assert_snapshot!(errors(&repo));
}

#[test]
fn values_from_and_release_settings_are_validated() {
    let repo = Repo::with_staging();
    repo.write(
        "environments/services.yaml",
        &catalog(
            "      valuesFrom:\n        - {kind: Secret, name: Bad_Name}\n        - {kind: ConfigMap, name: ok, valuesKey: \"a b\", targetPath: \"x[abc]\"}\n      release:\n        interval: 5 minutes\n        upgrade: {crds: CreateReplaced, remediation: {strategy: rollforward}}\n        driftDetection: {mode: on, ignore: [{paths: [spec/replicas]}]}\n",
            "  release:\n    timeout: 1d\n",
        ),
    );
    repo.write(
        "environments/staging.yaml",
        &staging(
            "      valuesFrom:\n        - {kind: Secrets, name: x}\n",
            "",
        ),
    );
    insta::assert_snapshot!(errors(&repo));
}

#[test]
fn install_remediation_has_no_strategy() {
    let repo = Repo::with_staging();
    repo.write(
        "environments/staging.yaml",
        &staging(
            "      release: {install: {remediation: {retries: 1, strategy: rollback}}}\n",
            "",
        ),
    );
    insta::assert_snapshot!(errors(&repo));
}

#[test]
fn depends_on_targets_must_run_and_cycles_are_named() {
    let repo = Repo::with_staging();
    repo.write(
        "environments/services.yaml",
        &catalog("      dependsOn: [worker]\n", "").replace(
            "      gpu: {count: 1, class: L40S}\n",
            "      dependsOn: [web]\n",
        ),
    );
    repo.write(
        "environments/staging.yaml",
        &staging(
            "      dependsOn: [databse]\n    worker:\n      image: {tag: \"1.0.0\"}\n",
            "",
        ),
    );
    insta::assert_snapshot!(errors(&repo));
}

#[test]
fn add_on_problems() {
    let repo = Repo::with_staging();
    repo.write(
        "environments/services.yaml",
        &catalog(
            "",
            "  addons:\n    web:\n      chart: {version: \"1.0.0\", source: charts}\n      namespace: web\n    cert-manager:\n      chart: {version: \"1.11.x\", source: jetstak}\n      namespace: Cert_Manager\n    ingress:\n      chart: {version: \"4.x\", source: charts}\n      namespace: ingress\n",
        ),
    );
    repo.write(
        "environments/staging.yaml",
        &staging("", "  addons:\n    ingres: {}\n    worker: {}\n"),
    );
    insta::assert_snapshot!(errors(&repo));
}

const GPU_STAGING: &str = "  nodePools:\n    gpu:\n      labels: {node-type: gpu}\n      gpu: {class: L40S, count: 1}\n      nodes: 2\n    general:\n      labels: {node-type: general}\n      nodes: 1\n      nodeSize: {cpu: 300m, memory: 2Gi}\n";

fn capacity_repo(overcommit: &str) -> Repo {
    let repo = Repo::with_staging();
    let env = staging(
        "      pool: general\n    worker:\n      image: {tag: \"1.0.0\"}\n      replicas: 3\n",
        "",
    )
    .replace(
        "  services:\n",
        &format!("{GPU_STAGING}{overcommit}  services:\n"),
    );
    repo.write("environments/staging.yaml", &env);
    repo
}

#[test]
fn gpu_demand_over_supply_is_an_error_naming_the_pool_and_services() {
    insta::assert_snapshot!(errors(&capacity_repo("")));
}

#[test]
fn gpu_overcommit_can_be_lowered_to_a_warning() {
    let repo = capacity_repo("");
    let env = repo.read("environments/staging.yaml").replace(
        "      nodes: 2\n",
        "      nodes: 2\n      gpuOvercommit: warn\n",
    );
    repo.write("environments/staging.yaml", &env);
    let out = repo.kairo(&["render"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    insta::assert_snapshot!(out.stderr);
}

#[test]
fn a_pool_without_nodes_is_not_checked() {
    let repo = capacity_repo("");
    let env = repo
        .read("environments/staging.yaml")
        .replace("      nodes: 2\n", "");
    repo.write("environments/staging.yaml", &env);
    let out = repo.kairo(&["render"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(!out.stderr.contains("GPU(s)"), "{}", out.stderr);
}

#[test]
fn init_then_render_check_and_render_check() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("my-gitops");
    let out = crate::support::run_kairo(dir.path(), &["init", "--dir", root.to_str().unwrap()]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(
        out.stdout
            .contains("created  clusters/staging/releases/hello.yaml")
    );
    assert!(!root.join("templates").exists(), "templates are embedded");
    for args in [
        &["render", "--check"][..],
        &["check"],
        &["render"],
        &["render", "--check"],
    ] {
        let out = crate::support::run_kairo(&root, args);
        assert_eq!(out.code, 0, "{args:?}: {}{}", out.stdout, out.stderr);
    }
    // A second init writes nothing and names what is in the way.
    let before = crate::support::tree(&root);
    let out = crate::support::run_kairo(&root, &["init"]);
    assert_eq!(out.code, 2);
    assert!(
        out.stderr.contains("`environments/services.yaml`"),
        "{}",
        out.stderr
    );
    assert_eq!(crate::support::tree(&root), before);
}

#[test]
fn init_with_templates_renders_the_same_bytes() {
    let a = tempfile::tempdir().unwrap();
    let b = tempfile::tempdir().unwrap();
    assert_eq!(crate::support::run_kairo(a.path(), &["init"]).code, 0);
    let out = crate::support::run_kairo(b.path(), &["init", "--templates"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(b.path().join("templates/helmrelease.yaml.j2").is_file());
    assert_eq!(
        crate::support::tree(&a.path().join("clusters")),
        crate::support::tree(&b.path().join("clusters"))
    );
    assert_eq!(
        crate::support::run_kairo(b.path(), &["render", "--check"]).code,
        0
    );
}

#[test]
fn explain_names_the_origin_of_every_value() {
    let repo = Repo::with_staging();
    repo.write(
        "environments/services.yaml",
        &catalog(
            "      values:\n        ingress: {enabled: true, host: a.example.com}\n",
            "",
        ),
    );
    repo.write(
        "environments/staging.yaml",
        &staging(
            "      replicas: 3\n      values:\n        ingress: {host: b.example.com}\n",
            "",
        )
        .replace("spec:\n", "spec:\n  resourceMultiplier: 2\n"),
    );
    let out = repo.kairo(&["explain", "web", "--env", "staging"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    insta::assert_snapshot!(out.stdout);
    let json = repo.kairo(&["explain", "web", "--env", "staging", "--output", "json"]);
    let v: serde_json::Value = serde_json::from_str(&json.stdout).unwrap();
    let host = v["entries"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["path"] == "values.ingress.host")
        .unwrap();
    assert_eq!(host["origin"], "environments/staging.yaml:19");
    let out = repo.kairo(&["explain", "nope", "--env", "staging"]);
    assert_eq!(out.code, 2);
    assert!(
        out.stderr.contains("releases there: `web`"),
        "{}",
        out.stderr
    );
}

/// The test repository with a `cert-manager` add-on in the catalog, run in staging.
fn with_cert_manager() -> Repo {
    let repo = Repo::with_staging();
    repo.write(
        "environments/services.yaml",
        &catalog(
            "",
            "  addons:\n    cert-manager:\n      chart: {version: \"1.11.x\", source: charts}\n      namespace: cert-manager\n",
        ),
    );
    repo.write(
        "environments/staging.yaml",
        &staging("", "  addons:\n    cert-manager: {}\n"),
    );
    repo
}

#[test]
fn bump_and_promote_refuse_add_ons() {
    let repo = with_cert_manager();
    assert_eq!(repo.kairo(&["render"]).code, 0);
    let before = repo.read("environments/staging.yaml");
    let out = repo.kairo(&["bump", "cert-manager", "1.12.0", "--env", "staging"]);
    assert_eq!(out.code, 2);
    assert!(
        out.stderr
            .contains("`cert-manager` is an add-on (a third-party chart) in `staging`"),
        "{}",
        out.stderr
    );
    assert_eq!(repo.read("environments/staging.yaml"), before);
    // The add-on renders without an image and policies leave it alone.
    let addon = repo.read("clusters/staging/releases/cert-manager.yaml");
    assert!(addon.contains("targetNamespace: cert-manager"), "{addon}");
    assert!(!addon.contains("image"), "{addon}");
    assert_eq!(repo.kairo(&["check"]).code, 0);
}

/// `data.kairo` comes from what each file was rendered for, never from reading the file back:
/// a service's release gets its service, an add-on's release `addon: true`, anything else
/// neither; a template that renames the object changes nothing.
#[test]
fn policies_see_the_model_object_each_file_was_rendered_for() {
    let repo = with_cert_manager();
    repo.write(
        "policies/context.rego",
        "package main\n\nimport rego.v1\n\nwarn contains msg if {\n\tmsg := sprintf(\"%s %s service=%v addon=%v env=%s\", [input.kind, object.get(input, [\"metadata\", \"name\"], \"-\"), object.get(data.kairo, [\"service\", \"name\"], \"-\"), data.kairo.addon, data.kairo.environment.name])\n}\n",
    );
    let template_dir = crate::support::manifest_dir().join("templates");
    let release = std::fs::read_to_string(template_dir.join("helmrelease.yaml.j2")).unwrap();
    let renamed = release.replacen(
        "  name: {{ release.name | yaml }}\n",
        "  name: renamed-{{ release.name }}\n",
        1,
    );
    assert_ne!(renamed, release, "the template names the release");
    repo.write("templates/helmrelease.yaml.j2", &renamed);
    let out = repo.kairo(&["check", "--output", "json"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let v: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
    let mut messages: Vec<&str> = v["findings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["message"].as_str().unwrap())
        .filter(|m| m.starts_with("HelmRelease") || m.starts_with("Namespace"))
        .collect();
    messages.sort();
    assert_eq!(
        messages,
        [
            "HelmRelease renamed-cert-manager service=- addon=true env=staging",
            "HelmRelease renamed-web service=web addon=false env=staging",
            "Namespace acme-staging service=- addon=false env=staging",
        ],
        "{}",
        out.stdout
    );
}
