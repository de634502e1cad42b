//! Every kind of input error, with its exact message (snapshots), all reported at once.

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

/// The staging environment with its `services:` section replaced by `rest`.
fn env_with(rest: &str) -> String {
    let head = &STAGING[..STAGING
        .find("  services:\n")
        .expect("STAGING lists services")];
    format!("{head}{rest}")
}

/// The errors of a staging environment whose `services:` section is `rest`.
fn staging_errors(rest: &str) -> String {
    let repo = Repo::with_staging();
    repo.write("environments/staging.yaml", &env_with(rest));
    errors(&repo)
}

#[test]
fn unknown_key_names_the_allowed_keys() {
    insta::assert_snapshot!(staging_errors(
        "  services:\n    web:\n      image: {tag: \"1.0.0\"}\n      replcas: 3\n"
    ));
}

#[test]
fn duplicate_key() {
    insta::assert_snapshot!(staging_errors(
        "  services:\n    web:\n      image: {tag: \"1.0.0\"}\n    web:\n      image: {tag: \"1.0.1\"}\n"
    ));
}

#[test]
fn wrong_type() {
    insta::assert_snapshot!(staging_errors(
        "  services:\n    web:\n      image: {tag: \"1.0.0\"}\n      replicas: three\n"
    ));
}

#[test]
fn header_problems() {
    let repo = Repo::with_staging();
    repo.write("environments/a.yaml", "kind: Environment\n");
    repo.write(
        "environments/b.yaml",
        "apiVersion: kairo.dev/v1\nkind: Environment\n",
    );
    repo.write(
        "environments/c.yaml",
        "apiVersion: kairo.dev/v1alpha1\nkind: Enviroment\n",
    );
    repo.write(
        "environments/d.yaml",
        "apiVersion: kairo.dev/v1alpha1\nkind: [oops\n",
    );
    insta::assert_snapshot!(errors(&repo));
}

#[test]
fn bad_names() {
    let repo = Repo::with_staging();
    for (file, name) in [("a", "../x"), ("b", "Staging"), ("c", &"x".repeat(64))] {
        repo.write(
            &format!("environments/{file}.yaml"),
            &env_with("").replace("name: staging", &format!("name: {name:?}")),
        );
    }
    insta::assert_snapshot!(errors(&repo));
}

/// One environment with many independent mistakes: every one is reported in one run.
#[test]
fn every_semantic_problem_at_once() {
    let repo = Repo::with_staging();
    repo.write(
        "environments/staging.yaml",
        &env_with(
            r#"    pool: genral
  resourceMultiplier: -1
  nodePools:
    general:
      labels: {node-type: general}
  services:
    wbe:
      image: {tag: "1.0.0"}
    web:
      image: {tag: "v1:2", digest: "sha256:abc"}
      hpa: {minReplicas: 5, maxReplicas: 3}
      resources:
        requests: {cpu: 12 cores, memory: 4Gi}
        limits: {memory: 2Gi}
    worker:
      image: {tag: "2.0.0"}
"#,
        )
        .replace("namespace: acme-staging", "namespace: ../x"),
    );
    insta::assert_snapshot!(errors(&repo));
}

#[test]
fn gpu_service_on_a_pool_without_that_gpu() {
    let repo = Repo::with_staging();
    repo.write(
        "environments/staging.yaml",
        &env_with(
            r#"  nodePools:
    general:
      labels: {node-type: general}
    h100:
      labels: {node-type: h100}
      gpu: {class: H100, count: 8}
  services:
    worker:
      image: {tag: "2.0.0"}
      pool: general
"#,
        ),
    );
    let first = errors(&repo);
    // Without an explicit pool, kairo looks for a pool of the right class and finds none.
    repo.write(
        "environments/staging.yaml",
        &env_with(
            r#"  nodePools:
    h100:
      labels: {node-type: h100}
      gpu: {class: H100, count: 8}
  services:
    worker:
      image: {tag: "2.0.0"}
"#,
        ),
    );
    insta::assert_snapshot!(format!("{first}---\n{}", errors(&repo)));
}

#[test]
fn problems_in_several_files_are_reported_together() {
    let repo = Repo::with_staging();
    repo.write(
        "environments/services.yaml",
        &CATALOG.replace("autoscaling: true", "autoscale: true"),
    );
    repo.write(
        "environments/production.yaml",
        &STAGING
            .replace("name: staging", "name: production")
            .replace("cluster: acme-staging", "cluster: acme-production")
            .replace("tag: \"1.0.0\"", "tag: \"\""),
    );
    let stderr = errors(&repo);
    assert!(stderr.contains("environments/services.yaml:"), "{stderr}");
    assert!(stderr.contains("environments/production.yaml:"), "{stderr}");
    insta::assert_snapshot!(stderr);
}

#[test]
fn json_output_carries_positions() {
    let repo = Repo::with_staging();
    repo.write(
        "environments/staging.yaml",
        &env_with("  services:\n    web:\n      image: {tag: \"bad tag\"}\n"),
    );
    let out = repo.kairo(&["render", "--output", "json"]);
    assert_eq!(out.code, 2);
    let v: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
    let e = &v["errors"][0];
    assert_eq!(e["file"], "environments/staging.yaml");
    assert_eq!(e["line"], 15);
    assert_eq!(e["column"], 20);
    assert_eq!(e["severity"], "error");
}

#[test]
fn catalog_problems() {
    let repo = Repo::with_staging();
    repo.write(
        "environments/services.yaml",
        &CATALOG
            .replace(
                "url: https://charts.example.com",
                "url: charts.example.com\n      interval: 1d",
            )
            .replace(
                "source: charts}\n      image: {repository: ghcr.io/acme/worker}",
                "source: chrats}\n      image: {repository: ghcr.io/acme/Worker:2}",
            ),
    );
    insta::assert_snapshot!(errors(&repo));
}

#[test]
fn spec_before_kind_is_read_and_top_level_typos_are_named() {
    let repo = Repo::with_staging();
    // Same file with `spec` first: still read (with the schema chosen afterwards).
    let (head, spec) = STAGING.split_at(STAGING.find("spec:").unwrap());
    repo.write("environments/staging.yaml", &format!("{spec}{head}"));
    let out = repo.kairo(&["render"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(
        repo.read("clusters/staging/releases/web.yaml")
            .contains("tag: \"1.0.0\"")
    );

    let repo = Repo::with_staging();
    repo.write(
        "environments/staging.yaml",
        &STAGING.replace("metadata:", "metdata:"),
    );
    let stderr = errors(&repo);
    assert!(stderr.contains("error: unknown key `metdata`"), "{stderr}");
    assert!(
        stderr.contains(
            "did you mean `metadata`? allowed keys here: `apiVersion`, `kind`, `metadata`, `spec`"
        ),
        "{stderr}"
    );
}

#[test]
fn names_sources_pools_and_numbers() {
    let repo = Repo::with_staging();
    let long = "x".repeat(60);
    repo.write(
        "environments/services.yaml",
        &format!(
            "{}    kustomization:\n      chart: {{version: \"1\", source: charts}}\n      image: {{repository: ghcr.io/acme/k}}\n    {long}:\n      chart: {{version: \"1\", source: charts}}\n      image: {{repository: ghcr.io/acme/l}}\n    api:\n      chart: {{version: \"1\", source: lab}}\n      image: {{repository: ghcr.io/acme/api}}\n      resources:\n        requests: {{memory: 0x10}}\n",
            CATALOG.replace(
                "  services:\n",
                "    lab: {type: oci, url: \"oci://ghcr.io/acme/charts\"}\n    lab-api: {type: helm, url: \"https://lab.example.com\"}\n  services:\n"
            )
        ),
    );
    repo.write(
        "environments/staging.yaml",
        &env_with(
            r#"  nodePools:
    gpu:
      labels: {"Node Type": gpu}
      taints: [{key: nvidia.com/gpu, value: "yes please", effect: NoSchedule}]
      gpu: {class: L40S, count: 1}
  services:
    worker:
      image: {tag: "2.0.0"}
      gpu: {count: 2}
    kustomization:
      image: {tag: "1"}
"#,
        ),
    );
    repo.write(
        "environments/extra.yaml",
        "apiVersion: kairo.dev/v1alpha1\nkind: Environment\n---\nkind: Environment\n",
    );
    repo.write("environments/latin1.yaml", "");
    std::fs::write(
        repo.path().join("environments/latin1.yaml"),
        b"name: caf\xe9\n",
    )
    .unwrap();
    insta::assert_snapshot!(errors(&repo));
}

#[test]
fn defaults_can_switch_autoscaling_and_budgets_off() {
    let repo = Repo::with_staging();
    repo.write(
        "environments/staging.yaml",
        &STAGING
            .replace(
                "hpa: {minReplicas: 2, maxReplicas: 4}",
                "hpa: {enabled: false, minReplicas: 2, maxReplicas: 4}",
            )
            .replace(
                "pdb: {minAvailable: 1}",
                "pdb: {enabled: false, minAvailable: 1}",
            ),
    );
    assert_eq!(repo.kairo(&["render"]).code, 0);
    let web = repo.read("clusters/staging/releases/web.yaml");
    assert!(
        web.contains("    autoscaling:\n      enabled: false\n"),
        "{web}"
    );
    assert!(
        web.contains("    podDisruptionBudget:\n      enabled: false\n"),
        "{web}"
    );
}
