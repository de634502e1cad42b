//! `kairo drift` and `kairo status` through the real kube client against a loopback API server
//! (`kube_support`), and offline from a `kubectl get -o yaml` file.

use serde_json::{Value, json};

use crate::kube_support::{FakeApi, exec_kubeconfig, kubeconfig};
use crate::support::{Output, Repo, commit_all, run_kairo_with_env};

const TOKEN: &str = "kairo-test-token-3f9a";

const CATALOG: &str = r#"apiVersion: kairo.dev/v1alpha1
kind: ServiceCatalog
metadata:
  name: shop
spec:
  sources:
    charts:
      type: helm
      url: https://charts.example.com
  services:
    api:
      chart: {version: "1.2.0", source: charts}
      image: {repository: ghcr.io/acme/api}
      resources:
        requests: {cpu: 250m, memory: 256Mi}
        limits: {cpu: 1000m, memory: 1Gi}
    web:
      chart: {version: ">=2.0.0", source: charts}
      image: {repository: ghcr.io/acme/web}
      resources:
        requests: {cpu: 100m, memory: 128Mi}
      autoscaling: true
"#;

const PRODUCTION: &str = r#"apiVersion: kairo.dev/v1alpha1
kind: Environment
metadata:
  name: production
spec:
  namespace: shop
  branch: main
  cluster: prod-eu
  defaults:
    replicas: 3
    hpa: {minReplicas: 3, maxReplicas: 10}
    pdb: {minAvailable: 1}
  services:
    api:
      image: {tag: "1.4.2"}
    web:
      image: {tag: "2.0.0"}
"#;

/// A committed repository with the `production` environment rendered.
fn repo_with(production: &str) -> Repo {
    let repo = Repo::new();
    repo.write("environments/services.yaml", CATALOG);
    repo.write("environments/production.yaml", production);
    let out = repo.kairo(&["render"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    commit_all(repo.path(), "production", 1_700_000_000);
    repo
}

fn repo() -> Repo {
    repo_with(PRODUCTION)
}

/// A rendered HelmRelease as the API server holds it once Flux applied it and
/// helm-controller installed it: defaulted fields, extra labels, finalizer, Ready status.
fn helm_release(repo: &Repo, name: &str, chart_version: &str) -> Value {
    let text = repo.read(&format!("clusters/production/releases/{name}.yaml"));
    let mut o: Value = kairo::yaml::from_str(&text).unwrap();
    o["metadata"]["labels"]["kustomize.toolkit.fluxcd.io/name"] = json!("flux-system");
    o["metadata"]["labels"]["kustomize.toolkit.fluxcd.io/namespace"] = json!("flux-system");
    o["metadata"]["finalizers"] = json!(["finalizers.fluxcd.io"]);
    o["metadata"]["generation"] = json!(2);
    o["spec"]["chart"]["spec"]["reconcileStrategy"] = json!("ChartVersion");
    o["status"] = json!({
        "observedGeneration": 2,
        "lastAttemptedGeneration": 2,
        "lastAttemptedRevision": chart_version,
        "lastAttemptedConfigDigest": "sha256:0b1c5e3f8a9d",
        "lastAttemptedReleaseAction": "upgrade",
        "conditions": [
            {"type": "Ready", "status": "True", "reason": "UpgradeSucceeded", "observedGeneration": 2,
             "lastTransitionTime": "2026-11-02T09:15:00Z",
             "message": format!("Helm upgrade succeeded for release shop/{name}.v3 with chart {name}@{chart_version}")},
            {"type": "Released", "status": "True", "reason": "UpgradeSucceeded", "observedGeneration": 2,
             "lastTransitionTime": "2026-11-02T09:15:00Z", "message": "Helm upgrade succeeded"}
        ],
        "history": [{
            "name": name, "namespace": "shop", "version": 3, "status": "deployed",
            "chartName": name, "chartVersion": chart_version,
            "appVersion": "1.0", "configDigest": "sha256:0b1c5e3f8a9d",
            "digest": "sha256:77aa", "firstDeployed": "2026-10-01T08:00:00Z",
            "lastDeployed": "2026-11-02T09:15:00Z"
        }],
        "helmChart": format!("shop/shop-{name}"),
        "storageNamespace": "shop"
    });
    o
}

/// A Deployment as a chart renders it and the API server defaults it, rolled out.
fn deployment(name: &str, image: &str, replicas: i64, resources: Value) -> Value {
    json!({
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {
            "name": name, "namespace": "shop", "generation": 4,
            "labels": {"app.kubernetes.io/name": name, "app.kubernetes.io/managed-by": "Helm", "helm.sh/chart": format!("{name}-1.2.0")},
            "annotations": {"deployment.kubernetes.io/revision": "4", "meta.helm.sh/release-name": name, "meta.helm.sh/release-namespace": "shop"}
        },
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app.kubernetes.io/name": name}},
            "progressDeadlineSeconds": 600,
            "revisionHistoryLimit": 10,
            "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": "25%", "maxUnavailable": "25%"}},
            "template": {
                "metadata": {"creationTimestamp": null, "labels": {"app.kubernetes.io/name": name}},
                "spec": {
                    "containers": [
                        {"name": "istio-proxy", "image": "docker.io/istio/proxyv2:1.22.0", "resources": {"requests": {"cpu": "10m"}},
                         "imagePullPolicy": "IfNotPresent", "terminationMessagePath": "/dev/termination-log", "terminationMessagePolicy": "File"},
                        {"name": name, "image": image, "resources": resources,
                         "ports": [{"containerPort": 8080, "name": "http", "protocol": "TCP"}],
                         "imagePullPolicy": "IfNotPresent", "terminationMessagePath": "/dev/termination-log", "terminationMessagePolicy": "File"}
                    ],
                    "dnsPolicy": "ClusterFirst", "restartPolicy": "Always", "schedulerName": "default-scheduler",
                    "securityContext": {}, "terminationGracePeriodSeconds": 30
                }
            }
        },
        "status": {
            "observedGeneration": 4, "replicas": replicas, "updatedReplicas": replicas,
            "readyReplicas": replicas, "availableReplicas": replicas,
            "conditions": [
                {"type": "Available", "status": "True", "reason": "MinimumReplicasAvailable", "message": "Deployment has minimum availability.",
                 "lastTransitionTime": "2026-11-02T09:15:30Z", "lastUpdateTime": "2026-11-02T09:15:30Z"},
                {"type": "Progressing", "status": "True", "reason": "NewReplicaSetAvailable", "message": format!("ReplicaSet \"{name}-7d9f8c6b5\" has successfully progressed."),
                 "lastTransitionTime": "2026-11-02T09:14:07Z", "lastUpdateTime": "2026-11-02T09:15:30Z"}
            ]
        }
    })
}

fn hpa(name: &str, min: i64, max: i64, current: i64) -> Value {
    json!({
        "apiVersion": "autoscaling/v2",
        "kind": "HorizontalPodAutoscaler",
        "metadata": {"name": name, "namespace": "shop",
            "annotations": {"meta.helm.sh/release-name": name, "meta.helm.sh/release-namespace": "shop"}},
        "spec": {
            "minReplicas": min, "maxReplicas": max,
            "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": name},
            "metrics": [{"type": "Resource", "resource": {"name": "cpu", "target": {"type": "Utilization", "averageUtilization": 80}}}]
        },
        "status": {"currentReplicas": current, "desiredReplicas": current,
            "currentMetrics": [{"type": "Resource", "resource": {"name": "cpu", "current": {"averageUtilization": 64, "averageValue": "64m"}}}]}
    })
}

/// Everything of `production` running exactly as Git says; `web` autoscaled to 5 replicas.
fn cluster(repo: &Repo) -> Vec<Value> {
    vec![
        helm_release(repo, "api", "1.2.0"),
        helm_release(repo, "web", "2.3.1"),
        deployment(
            "api",
            "ghcr.io/acme/api:1.4.2",
            3,
            // As written in a chart: `1000m` is `1` to the API server.
            json!({"requests": {"cpu": "250m", "memory": "256Mi"}, "limits": {"cpu": "1", "memory": "1Gi"}}),
        ),
        deployment(
            "web",
            "ghcr.io/acme/web:2.0.0",
            5,
            json!({"requests": {"cpu": "100m", "memory": "128Mi"}}),
        ),
        hpa("web", 3, 10, 5),
        // Not installed by a release of ours.
        deployment(
            "coredns-extra",
            "registry.k8s.io/coredns:1.11",
            1,
            json!({}),
        )
        .as_object()
        .map(|o| {
            let mut o = Value::Object(o.clone());
            o["metadata"]["annotations"]["meta.helm.sh/release-name"] = json!("dns");
            o
        })
        .unwrap(),
    ]
}

fn replace(objects: &mut [Value], kind: &str, name: &str, edit: impl Fn(&mut Value)) {
    let o = objects
        .iter_mut()
        .find(|o| o["kind"] == json!(kind) && o["metadata"]["name"] == json!(name))
        .unwrap_or_else(|| panic!("no {kind} {name}"));
    edit(o);
}

/// Runs kairo with only the given kubeconfig (never the user's ~/.kube).
/// `kairo status --wait` on production, polling as fast as it can: the fake server's
/// scripted flips, not time, decide when it ends.
const WAIT_READY: [&str; 8] = [
    "status",
    "--env",
    "production",
    "--wait",
    "--timeout",
    "10m",
    "--poll-interval",
    "1ms",
];

fn kairo(repo: &Repo, kubeconfig: &std::path::Path, args: &[&str]) -> Output {
    let home = repo.path().join(".home");
    std::fs::create_dir_all(&home).unwrap();
    run_kairo_with_env(
        repo.path(),
        args,
        &[
            ("KUBECONFIG", kubeconfig.to_str().unwrap()),
            ("HOME", home.to_str().unwrap()),
            ("KUBERNETES_SERVICE_HOST", ""),
        ],
    )
}

/// Starts a fake API server with `objects` and runs kairo against it.
fn against(repo: &Repo, objects: Vec<Value>, args: &[&str]) -> (Output, FakeApi) {
    let api = FakeApi::start(TOKEN, objects);
    let dir = tempfile::tempdir().unwrap();
    let config = kubeconfig(dir.path(), &api.url(), TOKEN);
    (kairo(repo, &config, args), api)
}

#[test]
fn no_drift_when_the_cluster_runs_what_git_renders() {
    let repo = repo();
    let (out, api) = against(&repo, cluster(&repo), &["drift", "--env", "production"]);
    assert_eq!(out.code, 0, "{}\n{}", out.stdout, out.stderr);
    assert_eq!(
        out.stdout,
        "production at HEAD -> context `test`: 0 changed, 0 missing, 0 extra (5 objects compared)\n"
    );
    let targets = api.targets();
    assert!(
        targets.iter().any(|t| t
            .starts_with("/apis/helm.toolkit.fluxcd.io/v2/namespaces/shop/helmreleases?")
            && t.contains("limit=500")),
        "{targets:?}"
    );
    for kind in ["deployments", "statefulsets"] {
        assert!(
            targets
                .iter()
                .any(|t| t.starts_with(&format!("/apis/apps/v1/namespaces/shop/{kind}?"))),
            "{targets:?}"
        );
    }
    assert!(
        api.server.requests().iter().all(|r| r.method == "GET"),
        "kairo only reads"
    );
}

#[test]
fn kubectl_scale_is_drift_without_an_hpa_and_not_with_one() {
    let repo = repo();
    let mut objects = cluster(&repo);
    replace(&mut objects, "Deployment", "api", |o| {
        o["spec"]["replicas"] = json!(5)
    });
    replace(&mut objects, "Deployment", "web", |o| {
        o["spec"]["replicas"] = json!(9)
    });
    let (out, _api) = against(&repo, objects, &["drift", "--env", "production"]);
    assert_eq!(out.code, 1, "{}\n{}", out.stdout, out.stderr);
    assert!(
        out.stdout
            .contains("~ Deployment shop/api: spec.replicas 3 -> 5\n"),
        "{}",
        out.stdout
    );
    assert!(out.stdout.contains("-  replicas: 3\n"), "{}", out.stdout);
    assert!(out.stdout.contains("+  replicas: 5\n"), "{}", out.stdout);
    assert!(!out.stdout.contains("shop/web"), "{}", out.stdout);
    assert!(
        out.stdout.contains("1 changed, 0 missing, 0 extra"),
        "{}",
        out.stdout
    );
}

#[test]
fn an_image_changed_by_hand_is_drift_and_json_says_so() {
    let repo = repo();
    let mut objects = cluster(&repo);
    replace(&mut objects, "Deployment", "api", |o| {
        o["spec"]["template"]["spec"]["containers"][1]["image"] =
            json!("ghcr.io/acme/api:1.4.3-hotfix")
    });
    let (out, _api) = against(
        &repo,
        objects,
        &["drift", "--env", "production", "--output", "json"],
    );
    assert_eq!(out.code, 1, "{}", out.stderr);
    let report: Value = serde_json::from_str(&out.stdout).unwrap();
    assert_eq!(report["environment"], "production");
    assert_eq!(report["cluster"], "context `test`");
    let objects = report["objects"].as_array().unwrap();
    assert_eq!(objects.len(), 1, "{report:#}");
    assert_eq!(objects[0]["state"], "changed");
    assert_eq!(objects[0]["kind"], "Deployment");
    assert_eq!(objects[0]["release"], "api");
    assert_eq!(
        objects[0]["fields"],
        json!([{"path": "spec.template.spec.containers[0].image",
                "before": "ghcr.io/acme/api:1.4.2", "after": "ghcr.io/acme/api:1.4.3-hotfix"}])
    );
}

#[test]
fn resources_changed_by_hand_are_drift_but_spelling_is_not() {
    let repo = repo();
    let mut objects = cluster(&repo);
    replace(&mut objects, "Deployment", "api", |o| {
        // `0.25` is `250m`; the memory limit really changed.
        o["spec"]["template"]["spec"]["containers"][1]["resources"] = json!(
            {"requests": {"cpu": "0.25", "memory": "256Mi"}, "limits": {"cpu": "1000m", "memory": "2Gi"}}
        )
    });
    let (out, _api) = against(
        &repo,
        objects,
        &["drift", "--env", "production", "--summary"],
    );
    assert_eq!(out.code, 1, "{}", out.stderr);
    assert_eq!(
        out.stdout,
        "production at HEAD -> context `test`: 1 changed, 0 missing, 0 extra (5 objects compared)\n~ Deployment shop/api: spec.template.spec.containers[0].resources.limits.memory 1Gi -> 2Gi\n"
    );
}

#[test]
fn missing_and_extra_releases_and_values_edited_in_the_cluster() {
    let repo = repo();
    let mut objects: Vec<Value> = cluster(&repo)
        .into_iter()
        .filter(|o| !(o["kind"] == json!("HelmRelease") && o["metadata"]["name"] == json!("web")))
        .collect();
    // Left behind by kairo for this environment, no longer in Git.
    let mut legacy = helm_release(&repo, "api", "1.2.0");
    legacy["metadata"]["name"] = json!("legacy");
    objects.push(legacy.clone());
    // Someone else's HelmRelease in the namespace: not ours to report.
    let mut foreign = legacy.clone();
    foreign["metadata"]["name"] = json!("foreign");
    foreign["metadata"]["labels"] = json!({"app.kubernetes.io/managed-by": "team-x"});
    objects.push(foreign);
    replace(&mut objects, "HelmRelease", "api", |o| {
        o["spec"]["values"]["replicaCount"] = json!(6);
        o["spec"]["interval"] = json!("1h");
    });
    let (out, _api) = against(&repo, objects, &["drift", "--env", "production"]);
    assert_eq!(out.code, 1, "{}", out.stderr);
    let lines: Vec<&str> = out
        .stdout
        .lines()
        .filter(|l| !l.starts_with("    "))
        .collect();
    assert_eq!(
        lines,
        [
            "production at HEAD -> context `test`: 1 changed, 1 missing, 1 extra (2 objects compared)",
            "~ HelmRelease shop/api: spec.interval 5m -> 1h; spec.values.replicaCount 3 -> 6",
            "+ HelmRelease shop/legacy: extra in cluster (not in Git)",
            "- HelmRelease shop/web: missing in cluster",
        ],
        "{}",
        out.stdout
    );
    // The Markdown report says the same.
    let api = FakeApi::start(TOKEN, Vec::new());
    let dir = tempfile::tempdir().unwrap();
    let config = kubeconfig(dir.path(), &api.url(), TOKEN);
    let md = kairo(
        &repo,
        &config,
        &["drift", "--env", "production", "--output", "markdown"],
    );
    assert_eq!(md.code, 1);
    assert!(
        md.stdout.starts_with("### kairo drift: `production`"),
        "{}",
        md.stdout
    );
    assert!(
        md.stdout
            .contains("- HelmRelease shop/api: missing in cluster\n"),
        "{}",
        md.stdout
    );
}

#[test]
fn ignore_rules_in_the_environment_silence_chosen_fields() {
    let production = format!(
        "{PRODUCTION}  drift:\n    ignore:\n      - paths: [/spec/values/replicaCount]\n        target: {{kind: HelmRelease, name: api}}\n      - paths: [/spec/replicas, /spec/template/spec/containers/0/resources/limits]\n        target: {{kind: Deployment}}\n"
    );
    let repo = repo_with(&production);
    let mut objects = cluster(&repo);
    replace(&mut objects, "HelmRelease", "api", |o| {
        o["spec"]["values"]["replicaCount"] = json!(6)
    });
    replace(&mut objects, "Deployment", "api", |o| {
        o["spec"]["replicas"] = json!(6);
        o["spec"]["template"]["spec"]["containers"][1]["resources"]["limits"]["memory"] =
            json!("4Gi");
    });
    let (out, _api) = against(&repo, objects.clone(), &["drift", "--env", "production"]);
    assert_eq!(out.code, 0, "{}\n{}", out.stdout, out.stderr);
    // A field no rule names is still drift.
    replace(&mut objects, "Deployment", "api", |o| {
        o["spec"]["template"]["spec"]["containers"][1]["image"] = json!("ghcr.io/acme/api:9")
    });
    let (out, _api) = against(
        &repo,
        objects,
        &["drift", "--env", "production", "--summary"],
    );
    assert_eq!(out.code, 1, "{}", out.stderr);
    assert!(
        out.stdout
            .contains("containers[0].image ghcr.io/acme/api:1.4.2 -> ghcr.io/acme/api:9"),
        "{}",
        out.stdout
    );
}

#[test]
fn bad_ignore_rules_name_the_file_line_and_allowed_keys() {
    let production = format!(
        "{PRODUCTION}  drift:\n    ignore:\n      - paths: [spec/replicas]\n        target: {{kind: Pod}}\n"
    );
    let repo = Repo::new();
    repo.write("environments/services.yaml", CATALOG);
    repo.write("environments/production.yaml", &production);
    commit_all(repo.path(), "bad", 1_700_000_000);
    let out = repo.kairo(&["drift", "--env", "production", "--live-file", "/dev/null"]);
    assert_eq!(out.code, 2, "{}", out.stderr);
    insta::assert_snapshot!("bad_ignore_rules", out.stderr);
    let typo = format!("{PRODUCTION}  drift:\n    ignores: []\n");
    repo.write("environments/production.yaml", &typo);
    commit_all(repo.path(), "typo", 1_700_000_100);
    let out = repo.kairo(&["drift", "--env", "production", "--live-file", "/dev/null"]);
    assert_eq!(out.code, 2, "{}", out.stderr);
    insta::assert_snapshot!("ignore_rules_typo", out.stderr);
}

#[test]
fn drift_against_an_older_revision() {
    let repo = repo();
    let objects = cluster(&repo);
    repo.write(
        "environments/production.yaml",
        &PRODUCTION.replace("tag: \"1.4.2\"", "tag: \"1.5.0\""),
    );
    assert_eq!(repo.kairo(&["render"]).code, 0);
    commit_all(repo.path(), "bump api", 1_700_000_100);
    let (out, _api) = against(
        &repo,
        objects.clone(),
        &["drift", "--env", "production", "--summary"],
    );
    assert_eq!(out.code, 1, "{}", out.stderr);
    assert!(
        out.stdout
            .contains("~ HelmRelease shop/api: spec.values.image.tag 1.5.0 -> 1.4.2"),
        "{}",
        out.stdout
    );
    assert!(out.stdout.contains("~ Deployment shop/api: spec.template.spec.containers[0].image ghcr.io/acme/api:1.5.0 -> ghcr.io/acme/api:1.4.2"), "{}", out.stdout);
    let (out, _api) = against(
        &repo,
        objects,
        &["drift", "--env", "production", "--revision", "HEAD~1"],
    );
    assert_eq!(out.code, 0, "{}\n{}", out.stdout, out.stderr);
    assert!(
        out.stdout.starts_with("production at HEAD~1 -> "),
        "{}",
        out.stdout
    );
}

#[test]
fn pages_are_followed_and_an_expired_continue_token_restarts_the_list() {
    let repo = repo();
    let api = FakeApi::start(TOKEN, cluster(&repo));
    api.state.lock().unwrap().expire_continue = true;
    let dir = tempfile::tempdir().unwrap();
    let config = kubeconfig(dir.path(), &api.url(), TOKEN);
    let out = kairo(
        &repo,
        &config,
        &["drift", "--env", "production", "--page-size", "1"],
    );
    assert_eq!(out.code, 0, "{}\n{}", out.stdout, out.stderr);
    assert!(
        out.stdout.contains("(5 objects compared)"),
        "{}",
        out.stdout
    );
    let hr: Vec<String> = api
        .targets()
        .into_iter()
        .filter(|t| t.contains("/helmreleases?"))
        .collect();
    // Page 1, page 2 answered 410, then the whole list again: page 1 and page 2.
    assert_eq!(hr.len(), 4, "{hr:?}");
    assert!(hr[1].contains("continue=offset-1"), "{hr:?}");
    assert!(!hr[2].contains("continue="), "{hr:?}");
    assert!(hr[3].contains("continue=offset-1"), "{hr:?}");
}

#[test]
fn an_exec_credential_plugin_provides_the_token() {
    let repo = repo();
    let api = FakeApi::start(TOKEN, cluster(&repo));
    let dir = tempfile::tempdir().unwrap();
    let config = exec_kubeconfig(dir.path(), &api.url(), TOKEN);
    let out = kairo(&repo, &config, &["drift", "--env", "production"]);
    assert_eq!(out.code, 0, "{}\n{}", out.stdout, out.stderr);
    assert!(out.stdout.contains("-> context `cloud`"), "{}", out.stdout);
    assert!(
        api.server
            .requests()
            .iter()
            .all(|r| r.header("authorization") == Some(&format!("Bearer {TOKEN}"))),
    );
}

#[test]
fn api_errors_name_the_context_and_the_missing_permission() {
    let repo = repo();
    // 401: the token is wrong.
    let api = FakeApi::start(TOKEN, cluster(&repo));
    let dir = tempfile::tempdir().unwrap();
    let config = kubeconfig(dir.path(), &api.url(), "expired-token");
    let out = kairo(&repo, &config, &["drift", "--env", "production"]);
    assert_eq!(out.code, 2, "{}", out.stderr);
    assert_eq!(out.stdout, "");
    assert!(
        out.stderr.contains("error: the API server of context `test` rejected the credentials (401 Unauthorized) listing helmreleases.helm.toolkit.fluxcd.io in namespace `shop`"),
        "{}",
        out.stderr
    );
    assert!(
        out.stderr
            .contains("hint: the token or certificate is expired"),
        "{}",
        out.stderr
    );
    assert!(
        !out.stderr.contains("expired-token"),
        "no secrets in output: {}",
        out.stderr
    );

    // 403: no `list` on deployments.
    api.state.lock().unwrap().forbidden = vec!["deployments".into()];
    let config = kubeconfig(dir.path(), &api.url(), TOKEN);
    let out = kairo(&repo, &config, &["status", "--env", "production"]);
    assert_eq!(out.code, 2, "{}", out.stderr);
    assert!(
        out.stderr.contains("error: context `test` may not `list` deployments.apps in namespace `shop` (403 Forbidden)"),
        "{}",
        out.stderr
    );
    assert!(
        out.stderr.contains("hint: grant the identity `get`, `list` and `watch` on `deployments.apps` in namespace `shop`"),
        "{}",
        out.stderr
    );

    // 404: Flux is not installed.
    {
        let mut s = api.state.lock().unwrap();
        s.forbidden.clear();
        s.no_flux = true;
    }
    let out = kairo(&repo, &config, &["drift", "--env", "production"]);
    assert_eq!(out.code, 2, "{}", out.stderr);
    assert!(
        out.stderr.contains("error: the API server of context `test` does not serve the API group `helm.toolkit.fluxcd.io`: the HelmRelease CRD is not installed (404 Not Found)"),
        "{}",
        out.stderr
    );
    assert!(out.stderr.contains("hint: install Flux"), "{}", out.stderr);

    // 404: a Flux too old to serve helm.toolkit.fluxcd.io/v2.
    {
        let mut s = api.state.lock().unwrap();
        s.no_flux = false;
        s.flux_versions = vec!["v2beta2".into(), "v2beta1".into()];
    }
    let out = kairo(&repo, &config, &["status", "--env", "production"]);
    assert_eq!(out.code, 2, "{}", out.stderr);
    assert!(
        out.stderr
            .contains("serves `helm.toolkit.fluxcd.io` only as `v2beta2`, `v2beta1`, not as `v2`"),
        "{}",
        out.stderr
    );
    assert!(
        out.stderr.contains("hint: upgrade Flux to v2.3"),
        "{}",
        out.stderr
    );

    // 404: the namespace does not exist.
    {
        let mut s = api.state.lock().unwrap();
        s.flux_versions.clear();
        s.missing_namespaces = vec!["shop".into()];
    }
    let out = kairo(&repo, &config, &["drift", "--env", "production"]);
    assert_eq!(out.code, 2, "{}", out.stderr);
    assert!(
        out.stderr.contains("error: namespace `shop` does not exist in context `test` (404 Not Found listing helmreleases.helm.toolkit.fluxcd.io)"),
        "{}",
        out.stderr
    );
    assert!(!out.stderr.contains("Flux"), "{}", out.stderr);

    // Any other 404 says what the server answered, not that Flux is missing.
    {
        let mut s = api.state.lock().unwrap();
        s.missing_namespaces.clear();
        s.other_404 = vec!["statefulsets".into()];
    }
    let out = kairo(&repo, &config, &["drift", "--env", "production"]);
    assert_eq!(out.code, 2, "{}", out.stderr);
    assert!(
        out.stderr.contains("answered 404 listing statefulsets.apps in namespace `shop`: statefulsets \"shop-gateway\" not found"),
        "{}",
        out.stderr
    );
    assert!(!out.stderr.contains("Flux"), "{}", out.stderr);
    api.state.lock().unwrap().other_404.clear();

    // Nothing listens: unreachable.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", closed.local_addr().unwrap());
    drop(closed);
    let config = kubeconfig(dir.path(), &url, TOKEN);
    let out = kairo(&repo, &config, &["drift", "--env", "production"]);
    assert_eq!(out.code, 2, "{}", out.stderr);
    assert!(
        out.stderr.contains("from the API server of context `test`"),
        "{}",
        out.stderr
    );
    // kairo's message, with its causes, and not the kube client's own log line before it.
    assert!(
        out.stderr.starts_with("error: cannot list") && !out.stderr.contains("ERROR"),
        "{}",
        out.stderr
    );

    // No kubeconfig, and not in a pod.
    let out = kairo(
        &repo,
        &dir.path().join("missing"),
        &["drift", "--env", "production"],
    );
    assert_eq!(out.code, 2, "{}", out.stderr);
    assert!(
        out.stderr
            .contains("error: no Kubernetes configuration: no usable kubeconfig"),
        "{}",
        out.stderr
    );
    // kubectl skips files of the list that do not exist; none existing is no kubeconfig.
    assert!(
        out.stderr.contains(&format!(
            "none of the files in `KUBECONFIG` exists (`{}`)",
            dir.path().join("missing").display()
        )),
        "{}",
        out.stderr
    );

    // An unknown context.
    let out = kairo(
        &repo,
        &config,
        &["drift", "--env", "production", "--context", "nope"],
    );
    assert_eq!(out.code, 2, "{}", out.stderr);
    assert!(
        out.stderr
            .contains("cannot use context `nope` of the kubeconfig"),
        "{}",
        out.stderr
    );
}

/// `KUBECONFIG` as a list, as kubectl reads it: files that do not exist are skipped, the rest
/// merged with the first file to name a context, cluster or user winning.
#[test]
fn a_kubeconfig_list_skips_missing_files_and_the_first_file_wins() {
    let repo = repo();
    let api = FakeApi::start(TOKEN, cluster(&repo));
    let (good, bad) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let first = kubeconfig(good.path(), &api.url(), TOKEN);
    // Names the same context, cluster and user, with a wrong token: it must lose.
    let second = kubeconfig(bad.path(), &api.url(), "wrong-token");
    let missing = good.path().join("gone");
    let list = std::env::join_paths([&missing, &first, &second]).unwrap();
    let home = repo.path().join(".home");
    std::fs::create_dir_all(&home).unwrap();
    let out = run_kairo_with_env(
        repo.path(),
        &["drift", "--env", "production"],
        &[
            ("KUBECONFIG", list.to_str().unwrap()),
            ("HOME", home.to_str().unwrap()),
            ("KUBERNETES_SERVICE_HOST", ""),
        ],
    );
    assert_eq!(out.code, 0, "{}\n{}", out.stdout, out.stderr);
    assert!(
        out.stdout.contains("-> context `test`: 0 changed"),
        "{}",
        out.stdout
    );
    // A file that exists but is not a kubeconfig is still an error, naming it.
    let broken = bad.path().join("broken");
    std::fs::write(&broken, "clusters: [[[\n").unwrap();
    let list = std::env::join_paths([&missing, &broken, &first]).unwrap();
    let out = run_kairo_with_env(
        repo.path(),
        &["drift", "--env", "production", "--context", "test"],
        &[
            ("KUBECONFIG", list.to_str().unwrap()),
            ("HOME", home.to_str().unwrap()),
            ("KUBERNETES_SERVICE_HOST", ""),
        ],
    );
    assert_eq!(out.code, 2, "{}", out.stderr);
    assert!(
        out.stderr.contains(&format!(
            "cannot use context `test` of the kubeconfig: `{}`:",
            broken.display()
        )),
        "{}",
        out.stderr
    );
}

#[test]
fn status_is_ready_when_every_release_rolled_out() {
    let repo = repo();
    let (out, _api) = against(&repo, cluster(&repo), &["status", "--env", "production"]);
    assert_eq!(out.code, 0, "{}\n{}", out.stdout, out.stderr);
    assert_eq!(
        out.stdout,
        "production at HEAD -> context `test`: 2/2 releases ready\napi ready chart 1.2.0 (attempted 1.2.0)\n    Deployment api: 3/3 ready, 3 updated\nweb ready chart >=2.0.0 (attempted 2.3.1)\n    Deployment web: 5/5 ready, 5 updated\n"
    );
}

#[test]
fn a_suspended_or_failed_release_fails_status() {
    let repo = repo();
    let mut objects = cluster(&repo);
    replace(&mut objects, "HelmRelease", "web", |o| {
        o["spec"]["suspend"] = json!(true)
    });
    let (out, _api) = against(&repo, objects, &["status", "--env", "production", "--wait"]);
    assert_eq!(out.code, 1, "{}", out.stderr);
    assert!(out.stdout.contains("web suspended chart"), "{}", out.stdout);
    assert!(
        out.stderr
            .contains("error: failed: 1 of 2 release(s) not ready at HEAD: `web` (suspended)"),
        "{}",
        out.stderr
    );

    let mut objects = cluster(&repo);
    replace(&mut objects, "HelmRelease", "api", |o| {
        o["status"]["conditions"] = json!([
            {"type": "Ready", "status": "False", "reason": "UpgradeFailed", "observedGeneration": 2,
             "lastTransitionTime": "2026-11-02T09:20:00Z",
             "message": "Helm upgrade failed for release shop/api with chart api@1.2.0: context deadline exceeded"},
            {"type": "Released", "status": "False", "reason": "UpgradeFailed", "observedGeneration": 2,
             "lastTransitionTime": "2026-11-02T09:20:00Z", "message": "Helm upgrade failed"}
        ]);
        o["status"]["history"][0]["status"] = json!("failed");
    });
    let (out, api) = against(
        &repo,
        objects,
        &[
            "status",
            "--env",
            "production",
            "--wait",
            "--timeout",
            "10m",
            "--output",
            "json",
        ],
    );
    assert_eq!(out.code, 1, "{}", out.stderr);
    // A failure ends the wait at once.
    assert_eq!(api.state.lock().unwrap().helmrelease_lists, 1);
    let report: Value = serde_json::from_str(&out.stdout).unwrap();
    assert_eq!(report["releases"][0]["name"], "api");
    assert_eq!(report["releases"][0]["phase"], "failed");
    assert_eq!(report["releases"][0]["reason"], "UpgradeFailed");
    assert_eq!(report["releases"][1]["phase"], "ready");
}

/// A release mid-upgrade: the new generation not yet reconciled, pods rolling.
fn progressing(o: &mut Value) {
    o["metadata"]["generation"] = json!(3);
    o["status"]["conditions"] = json!([
        {"type": "Reconciling", "status": "True", "reason": "Progressing", "observedGeneration": 3,
         "lastTransitionTime": "2026-11-02T09:20:00Z", "message": "Running 'upgrade' action with timeout of 5m0s"},
        {"type": "Ready", "status": "Unknown", "reason": "Progressing", "observedGeneration": 3,
         "lastTransitionTime": "2026-11-02T09:20:00Z", "message": "Running 'upgrade' action with timeout of 5m0s"}
    ]);
}

#[test]
fn wait_succeeds_once_the_server_reports_the_release_ready() {
    let repo = repo();
    let mut objects = cluster(&repo);
    let mut ready = objects
        .iter()
        .find(|o| o["metadata"]["name"] == json!("api") && o["kind"] == json!("HelmRelease"))
        .unwrap()
        .clone();
    ready["metadata"]["generation"] = json!(3);
    ready["status"]["observedGeneration"] = json!(3);
    replace(&mut objects, "HelmRelease", "api", progressing);
    let api = FakeApi::start(TOKEN, objects);
    // The third look at the HelmReleases finds it Ready.
    api.state.lock().unwrap().flips.push((3, ready));
    let dir = tempfile::tempdir().unwrap();
    let config = kubeconfig(dir.path(), &api.url(), TOKEN);
    let out = kairo(&repo, &config, &WAIT_READY);
    assert_eq!(out.code, 0, "{}\n{}", out.stdout, out.stderr);
    assert_eq!(api.state.lock().unwrap().helmrelease_lists, 3);
    assert!(out.stdout.contains("2/2 releases ready"), "{}", out.stdout);
}

#[test]
fn wait_gives_up_at_the_timeout_and_without_wait_not_ready_is_exit_1() {
    let repo = repo();
    let mut objects = cluster(&repo);
    replace(&mut objects, "HelmRelease", "api", progressing);
    let (out, api) = against(
        &repo,
        objects.clone(),
        &["status", "--env", "production", "--wait", "--timeout", "0s"],
    );
    assert_eq!(out.code, 1, "{}", out.stderr);
    assert_eq!(api.state.lock().unwrap().helmrelease_lists, 1);
    assert!(
        out.stdout.contains("api progressing chart 1.2.0"),
        "{}",
        out.stdout
    );
    assert!(
        out.stdout
            .contains("pending: generation 3 not yet reconciled (observed 2)"),
        "{}",
        out.stdout
    );
    assert!(
        out.stderr
            .contains("error: timed out: 1 of 2 release(s) not ready"),
        "{}",
        out.stderr
    );
    // Several checks, then the timeout: not ready (exit 1) with the last check's report,
    // not an error, whether the timeout falls in a pause or in a check.
    let (out, api) = against(
        &repo,
        objects.clone(),
        &[
            "status",
            "--env",
            "production",
            "--wait",
            "--timeout",
            "2s",
            "--poll-interval",
            "500ms",
        ],
    );
    assert_eq!(out.code, 1, "{}\n{}", out.stdout, out.stderr);
    assert!(api.state.lock().unwrap().helmrelease_lists >= 2);
    assert!(
        out.stdout.contains("api progressing chart 1.2.0"),
        "{}",
        out.stdout
    );
    assert!(
        out.stderr
            .contains("error: timed out: 1 of 2 release(s) not ready"),
        "{}",
        out.stderr
    );
    let (out, _api) = against(&repo, objects, &["status", "--env", "production"]);
    assert_eq!(out.code, 1, "{}", out.stderr);
    assert!(out.stderr.contains("error: not ready: "), "{}", out.stderr);
}

#[test]
fn a_live_file_round_trip() {
    let repo = repo();
    // What `kubectl get helmreleases,deploy,sts,hpa -n shop -o yaml` prints: a List, every
    // item with its apiVersion and kind; a Secret in it is left out.
    let mut items = cluster(&repo);
    items.push(json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "db", "namespace": "shop"}, "data": {"password": "aHVudGVyMg=="}}));
    let list = json!({"apiVersion": "v1", "kind": "List", "metadata": {"resourceVersion": ""}, "items": items});
    let path = repo.path().join(".live.yaml");
    std::fs::write(&path, kairo::yaml::to_string(&list).unwrap()).unwrap();
    let out = repo.kairo(&[
        "drift",
        "--env",
        "production",
        "--live-file",
        path.to_str().unwrap(),
    ]);
    assert_eq!(out.code, 0, "{}\n{}", out.stdout, out.stderr);
    assert!(
        out.stdout.contains("(5 objects compared)"),
        "{}",
        out.stdout
    );
    let out = repo.kairo(&[
        "status",
        "--env",
        "production",
        "--live-file",
        path.to_str().unwrap(),
    ]);
    assert_eq!(out.code, 0, "{}\n{}", out.stdout, out.stderr);

    let mut items = cluster(&repo);
    replace(&mut items, "Deployment", "api", |o| {
        o["spec"]["replicas"] = json!(1)
    });
    let list = json!({"apiVersion": "v1", "kind": "List", "items": items});
    std::fs::write(&path, serde_json::to_string(&list).unwrap()).unwrap();
    let out = repo.kairo(&[
        "drift",
        "--env",
        "production",
        "--live-file",
        path.to_str().unwrap(),
        "--summary",
    ]);
    assert_eq!(out.code, 1, "{}", out.stderr);
    assert!(
        out.stdout
            .contains(&format!("-> `{}`: 1 changed", path.display())),
        "{}",
        out.stdout
    );
    assert!(
        out.stdout
            .contains("~ Deployment shop/api: spec.replicas 3 -> 1"),
        "{}",
        out.stdout
    );
    assert!(!out.stdout.contains("aHVudGVyMg"), "{}", out.stdout);

    std::fs::write(&path, "items: [").unwrap();
    let out = repo.kairo(&[
        "drift",
        "--env",
        "production",
        "--live-file",
        path.to_str().unwrap(),
    ]);
    assert_eq!(out.code, 2, "{}", out.stderr);
    assert!(
        out.stderr
            .contains("is not a `kubectl get -o yaml` listing"),
        "{}",
        out.stderr
    );
}

#[test]
fn a_duplicated_object_is_an_input_error_not_a_coin_toss() {
    let repo = repo();
    // A clean copy of `api` and a drifted one: which one counts must not depend on order.
    let mut items = cluster(&repo);
    let mut drifted = items
        .iter()
        .find(|o| o["kind"] == json!("Deployment") && o["metadata"]["name"] == json!("api"))
        .unwrap()
        .clone();
    drifted["spec"]["replicas"] = json!(1);
    items.insert(0, drifted.clone());
    let list = json!({"apiVersion": "v1", "kind": "List", "items": items});
    let path = repo.path().join(".live.yaml");
    std::fs::write(&path, kairo::yaml::to_string(&list).unwrap()).unwrap();
    let out = repo.kairo(&[
        "drift",
        "--env",
        "production",
        "--live-file",
        path.to_str().unwrap(),
    ]);
    assert_eq!(out.code, 2, "{}\n{}", out.stdout, out.stderr);
    assert!(
        out.stderr.contains("holds Deployment `shop/api` twice"),
        "{}",
        out.stderr
    );
    assert!(out.stdout.is_empty(), "{}", out.stdout);

    // The same from the API server.
    let api = FakeApi::start(TOKEN, cluster(&repo));
    {
        let mut state = api.state.lock().unwrap();
        let key = (
            "/apis/apps/v1".to_string(),
            "shop".to_string(),
            "deployments".to_string(),
        );
        state.objects.get_mut(&key).unwrap().push(drifted);
    }
    let dir = tempfile::tempdir().unwrap();
    let config = kubeconfig(dir.path(), &api.url(), TOKEN);
    let out = kairo(&repo, &config, &["drift", "--env", "production"]);
    assert_eq!(out.code, 2, "{}\n{}", out.stdout, out.stderr);
    assert!(
        out.stderr
            .contains("the API server of context `test` returned Deployment `shop/api` twice"),
        "{}",
        out.stderr
    );
}

/// A kubeconfig for an API server that accepts connections and never answers.
fn silent_api(dir: &std::path::Path) -> (crate::registry_support::Scripted, std::path::PathBuf) {
    use crate::registry_support::{Answer, Scripted};
    let server = Scripted::start(|_| Answer::Stall);
    let config = kubeconfig(dir, &format!("http://{}", server.host()), TOKEN);
    (server, config)
}

#[test]
fn a_silent_api_server_is_an_error_naming_the_context_not_a_hang() {
    let repo = repo();
    let dir = tempfile::tempdir().unwrap();
    let (server, config) = silent_api(dir.path());
    let out = kairo(
        &repo,
        &config,
        &["drift", "--env", "production", "--request-timeout", "1s"],
    );
    assert_eq!(out.code, 2, "{}\n{}", out.stdout, out.stderr);
    assert!(
        out.stderr.contains("error: the API server of context `test` (`http://")
            && out.stderr.contains(
                "did not answer listing helmreleases.helm.toolkit.fluxcd.io in namespace `shop` within `--request-timeout 1s`"
            ),
        "{}",
        out.stderr
    );
    assert!(out.stderr.contains("hint: "), "{}", out.stderr);
    assert!(!server.requests().is_empty());

    // `--wait --timeout` bounds the whole wait, a request in flight included, whatever the
    // (default, 30 s) request timeout.
    let out = kairo(
        &repo,
        &config,
        &["status", "--env", "production", "--wait", "--timeout", "1s"],
    );
    assert_eq!(out.code, 2, "{}\n{}", out.stdout, out.stderr);
    assert!(
        out.stderr.contains(
            "error: the API server of context `test` did not answer before `--timeout 1s` passed"
        ),
        "{}",
        out.stderr
    );
}

#[test]
fn a_malformed_live_file_is_an_input_error_naming_the_item() {
    let repo = repo();
    let path = repo.path().join(".live.yaml");
    let drift = |text: &str| {
        std::fs::write(&path, text).unwrap();
        repo.kairo(&[
            "drift",
            "--env",
            "production",
            "--live-file",
            path.to_str().unwrap(),
        ])
    };
    let release = serde_json::to_string(&helm_release(&repo, "api", "1.2.0")).unwrap();
    let mut nameless = helm_release(&repo, "web", "2.3.1");
    nameless["metadata"].as_object_mut().unwrap().remove("name");
    let nameless = serde_json::to_string(&nameless).unwrap();
    for (text, message) in [
        (
            r#"{"apiVersion": "v1", "kind": "List", "items": {"a": 1}}"#.to_string(),
            "`items` of its `List` is not a list".to_string(),
        ),
        (
            r#"{"apiVersion": "v1", "kind": "List"}"#.to_string(),
            "its `List` has no `items` list".to_string(),
        ),
        (
            format!(r#"{{"apiVersion": "v1", "kind": "List", "items": [{release}, 42]}}"#),
            "item 1 is not a mapping (`42`)".to_string(),
        ),
        (
            r#"{"apiVersion": "v1", "kind": "List", "items": [null]}"#.to_string(),
            "item 0 is not a mapping (`null`)".to_string(),
        ),
        (
            "apiVersion: v1\nkind: List\nitems:\n- str\n".to_string(),
            "item 0 is not a mapping (`\"str\"`)".to_string(),
        ),
        (
            format!(r#"{{"apiVersion": "v1", "kind": "List", "items": [{release}, {nameless}]}}"#),
            "item 1 (HelmRelease) has no `metadata.name`".to_string(),
        ),
        (
            r#"{"apiVersion": "v1", "kind": "List", "items": [{"metadata": {"name": "api"}}]}"#
                .to_string(),
            "item 0 has no `kind`".to_string(),
        ),
    ] {
        let out = drift(&text);
        assert_eq!(out.code, 2, "{text}\n{}\n{}", out.stdout, out.stderr);
        assert!(
            out.stderr.contains(&format!(
                "is not a `kubectl get -o yaml` listing: {message}\n"
            )),
            "{text}\n{}",
            out.stderr
        );
    }

    // A raw API list (`kubectl get --raw .../helmreleases`) leaves the items' kind out: it is
    // the list's. Here only the HelmReleases are listed, both as Git renders them.
    let mut items = vec![
        helm_release(&repo, "api", "1.2.0"),
        helm_release(&repo, "web", "2.3.1"),
    ];
    for o in &mut items {
        let m = o.as_object_mut().unwrap();
        m.remove("kind");
        m.remove("apiVersion");
    }
    let list = json!({"apiVersion": "helm.toolkit.fluxcd.io/v2", "kind": "HelmReleaseList", "metadata": {}, "items": items});
    let out = drift(&list.to_string());
    assert_ne!(out.code, 2, "{}", out.stderr);
    assert!(
        out.stdout.starts_with("production at HEAD -> `") && !out.stdout.contains("HelmRelease"),
        "{}\n{}",
        out.stdout,
        out.stderr
    );
}

#[test]
fn missing_workloads_and_autoscalers_are_drift_and_not_ready() {
    let repo = repo();
    // `web` autoscales in Git, but its HPA was deleted; `api`'s Deployment is gone.
    let objects: Vec<Value> = cluster(&repo)
        .into_iter()
        .filter(|o| {
            o["kind"] != json!("HorizontalPodAutoscaler")
                && !(o["kind"] == json!("Deployment") && o["metadata"]["name"] == json!("api"))
        })
        .collect();
    let (out, _api) = against(&repo, objects.clone(), &["drift", "--env", "production"]);
    assert_eq!(out.code, 1, "{}\n{}", out.stdout, out.stderr);
    assert!(
        out.stdout
            .contains("- Deployment shop/api: missing in cluster\n"),
        "{}",
        out.stdout
    );
    assert!(
        out.stdout
            .contains("- HorizontalPodAutoscaler shop/web: missing in cluster\n"),
        "{}",
        out.stdout
    );
    assert!(
        out.stdout.contains("0 changed, 2 missing, 0 extra"),
        "{}",
        out.stdout
    );

    let (out, _api) = against(&repo, objects, &["status", "--env", "production"]);
    assert_eq!(out.code, 1, "{}\n{}", out.stdout, out.stderr);
    assert!(
        out.stdout.contains("api progressing chart 1.2.0"),
        "{}",
        out.stdout
    );
    assert!(
        out.stdout
            .contains("pending: no Deployment or StatefulSet of release `api` in namespace `shop`"),
        "{}",
        out.stdout
    );
}

/// An HPA the model declares but the cluster lacks keeps the release from Ready in `status`,
/// as drift reports it missing.
#[test]
fn a_missing_autoscaler_is_not_ready_in_status() {
    let repo = repo();
    let objects: Vec<Value> = cluster(&repo)
        .into_iter()
        .filter(|o| o["kind"] != json!("HorizontalPodAutoscaler"))
        .collect();
    let (out, _api) = against(&repo, objects.clone(), &["status", "--env", "production"]);
    assert_eq!(out.code, 1, "{}\n{}", out.stdout, out.stderr);
    assert!(
        out.stdout.contains("api ready chart 1.2.0"),
        "{}",
        out.stdout
    );
    assert!(
        out.stdout.contains("web progressing chart >=2.0.0"),
        "{}",
        out.stdout
    );
    assert!(
        out.stdout
            .contains("pending: no HorizontalPodAutoscaler of release `web` in namespace `shop`"),
        "{}",
        out.stdout
    );
    assert!(
        out.stderr.contains("1 of 2 release(s) not ready"),
        "{}",
        out.stderr
    );
    let (out, _api) = against(&repo, objects, &["drift", "--env", "production"]);
    assert_eq!(out.code, 1, "{}", out.stdout);
    assert!(
        out.stdout
            .contains("- HorizontalPodAutoscaler shop/web: missing in cluster\n"),
        "{}",
        out.stdout
    );
}

#[test]
fn every_workload_of_a_release_running_the_service_is_compared() {
    let repo = repo();
    let mut objects = cluster(&repo);
    let resources = json!({"requests": {"cpu": "250m", "memory": "256Mi"}, "limits": {"cpu": "1", "memory": "1Gi"}});
    let owned_by_api = |mut o: Value| {
        o["metadata"]["annotations"]["meta.helm.sh/release-name"] = json!("api");
        o
    };
    // A second Deployment running an older tag of the service's image.
    objects.push(owned_by_api(deployment(
        "api-canary",
        "ghcr.io/acme/api:1.4.1",
        3,
        resources.clone(),
    )));
    // A third whose service container (named `api`) was pointed at another repository.
    let mut swapped = owned_by_api(deployment(
        "api-worker",
        "ghcr.io/evil/api:6.6.6",
        3,
        resources,
    ));
    swapped["spec"]["template"]["spec"]["containers"][1]["name"] = json!("api");
    objects.push(swapped);
    let (out, _api) = against(
        &repo,
        objects,
        &["drift", "--env", "production", "--summary"],
    );
    assert_eq!(out.code, 1, "{}\n{}", out.stdout, out.stderr);
    assert!(
        out.stdout.contains(
            "~ Deployment shop/api-canary: spec.template.spec.containers[0].image ghcr.io/acme/api:1.4.2 -> ghcr.io/acme/api:1.4.1\n"
        ),
        "{}",
        out.stdout
    );
    assert!(
        out.stdout.contains(
            "~ Deployment shop/api-worker: spec.template.spec.containers[0].image ghcr.io/acme/api:1.4.2 -> ghcr.io/evil/api:6.6.6\n"
        ),
        "{}",
        out.stdout
    );
    assert!(!out.stdout.contains("shop/api:"), "{}", out.stdout);
    assert!(
        out.stdout.contains("2 changed, 0 missing, 0 extra"),
        "{}",
        out.stdout
    );
}

/// Pushes `repo` to a bare remote and starts `kairo watch --drift-interval 1s` in a clone of
/// it, against `api`. Returns the daemon and the directories it lives in: (bare remote, ...).
fn drift_daemon(
    repo: &Repo,
    api: &FakeApi,
    extra: &[&str],
) -> (crate::watch::Daemon, Vec<tempfile::TempDir>) {
    let kube = tempfile::tempdir().unwrap();
    let config = kubeconfig(kube.path(), &api.url(), TOKEN);
    let (d, mut dirs) = daemon_with(repo, &config, extra);
    dirs.push(kube);
    (d, dirs)
}

/// As [`drift_daemon`], with the kubeconfig given.
fn daemon_with(
    repo: &Repo,
    config: &std::path::Path,
    extra: &[&str],
) -> (crate::watch::Daemon, Vec<tempfile::TempDir>) {
    let remote = tempfile::tempdir().unwrap();
    let bare = remote.path().join("remote.git");
    git2::Repository::init_bare(&bare).unwrap();
    crate::support::git(
        repo.path(),
        &[
            "push",
            "--quiet",
            bare.to_str().unwrap(),
            "HEAD:refs/heads/main",
        ],
    );
    git2::Repository::open_bare(&bare)
        .unwrap()
        .set_head("refs/heads/main")
        .unwrap();
    let clone = tempfile::tempdir().unwrap();
    git2::Repository::clone(bare.to_str().unwrap(), clone.path()).unwrap();
    let home = clone.path().join(".git/home");
    std::fs::create_dir_all(&home).unwrap();
    let mut args = vec!["--drift-interval", "1s"];
    args.extend(extra);
    let d = crate::watch::Daemon::start(
        clone.path(),
        &args,
        &[
            ("KUBECONFIG", config.to_str().unwrap()),
            ("HOME", home.to_str().unwrap()),
            ("KUBERNETES_SERVICE_HOST", ""),
        ],
    );
    (d, vec![remote, clone])
}

/// `kairo watch --listen --drift-interval`: the daemon renders the remote tip, lists the
/// cluster and exports what drifted and which releases are ready. No timing is asserted:
/// `/metrics` is polled until the first check has been exported.
#[test]
fn the_daemon_exports_drift_and_readiness_metrics() {
    let repo = repo();
    let mut objects = cluster(&repo);
    replace(&mut objects, "Deployment", "api", |o| {
        o["spec"]["replicas"] = json!(5)
    });
    let api = FakeApi::start(TOKEN, objects);
    let (d, _dirs) = drift_daemon(&repo, &api, &[]);
    // The timestamp is exported last: once it is there, the whole check is.
    crate::watch::wait_for("a drift check is exported", || {
        d.metrics()
            .contains("kairo_drift_last_check_timestamp_seconds{")
    });
    let metrics = d.metrics();
    let lines: Vec<&str> = metrics.lines().collect();
    assert!(
        lines.contains(&r#"kairo_drift_objects{env="production",kind="Deployment"} 1"#),
        "{metrics}"
    );
    assert!(
        lines.contains(&r#"kairo_drift_objects{env="production",kind="HelmRelease"} 0"#),
        "{metrics}"
    );
    assert!(
        lines.contains(&r#"kairo_release_ready{env="production",release="web"} 1"#),
        "{metrics}"
    );
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with(r#"kairo_release_ready{env="production",release="api"} "#)),
        "{metrics}"
    );
    assert!(
        lines.iter().any(
            |l| l.starts_with(r#"kairo_drift_last_check_timestamp_seconds{env="production"} "#)
        ),
        "{metrics}"
    );
    assert!(!metrics.contains("kairo_drift_errors_total{"), "{metrics}");
    crate::watch::promtool_check(&metrics);
    assert!(
        api.server.requests().iter().all(|r| r.method == "GET"),
        "drift only reads"
    );

    // The API server starts refusing: the check fails, is counted, and the daemon lives on.
    api.state
        .lock()
        .unwrap()
        .forbidden
        .push("deployments".into());
    crate::watch::wait_for("a failed drift check is counted", || {
        d.sample(r#"kairo_drift_errors_total{env="production"} "#) >= 1.0
    });
    assert_eq!(
        crate::watch::http(&d.addr, "GET", "/healthz", &[], b"").0,
        200
    );
    crate::watch::promtool_check(&d.metrics());
    assert_eq!(d.terminate(), 0);
}

/// A release removed from Git loses its `kairo_release_ready` series at the next check (a
/// release still in Git but gone from the cluster stays exported, as not ready).
#[test]
fn the_daemon_drops_readiness_series_of_releases_gone_from_git() {
    let repo = repo();
    let api = FakeApi::start(TOKEN, cluster(&repo));
    let (d, dirs) = drift_daemon(&repo, &api, &[]);
    let ready =
        |release: &str| format!(r#"kairo_release_ready{{env="production",release="{release}"}} "#);
    crate::watch::wait_for("web is ready", || {
        d.metrics().contains(&ready("web")) && d.sample(&ready("web")) == 1.0
    });

    // Gone from the cluster, still in Git: exported as not ready.
    let web = |o: &Value| o["metadata"]["name"] == json!("web");
    api.state
        .lock()
        .unwrap()
        .objects
        .values_mut()
        .for_each(|list| list.retain(|o| !(o["kind"] == json!("HelmRelease") && web(o))));
    crate::watch::wait_for("web is not ready", || d.sample(&ready("web")) == 0.0);

    // Gone from Git: the series goes at the next check; api's stays.
    repo.write(
        "environments/production.yaml",
        &PRODUCTION.replace("    web:\n      image: {tag: \"2.0.0\"}\n", ""),
    );
    let out = repo.kairo(&["render"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    commit_all(repo.path(), "web retired", 1_700_000_100);
    let bare = dirs[0].path().join("remote.git");
    crate::support::git(
        repo.path(),
        &[
            "push",
            "--quiet",
            bare.to_str().unwrap(),
            "HEAD:refs/heads/main",
        ],
    );
    crate::watch::wait_for("web's series is dropped", || {
        !d.metrics().contains(r#"release="web""#)
    });
    let metrics = d.metrics();
    assert!(metrics.contains(&ready("api")), "{metrics}");
    crate::watch::promtool_check(&metrics);
    assert_eq!(d.terminate(), 0);
}

/// With `--leader-elect`, only the Lease holder checks drift and exports drift metrics: a
/// follower sends the API server no drift request and exports no drift series (so Prometheus
/// scraping every replica sees each series once); it starts when it takes the Lease over.
#[test]
fn with_leader_election_only_the_holder_checks_drift() {
    let repo = repo();
    let api = FakeApi::start("replica-a", cluster(&repo));
    api.state.lock().unwrap().tokens = vec!["replica-b".into()];
    // One API server for Leases and everything else, as a cluster has.
    let leases = crate::lease_support::FakeApi::start_with(Some(api.url()));
    let (ka, kb) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let replica = |id: &str, dir: &tempfile::TempDir| {
        let config = leases.kubeconfig_with_token(dir.path(), &format!("replica-{id}"));
        daemon_with(
            &repo,
            &config,
            &[
                "--leader-elect",
                "--lease-duration",
                "2s",
                "--lease-identity",
                id,
            ],
        )
    };
    // Drift requests (HelmRelease lists) sent with a replica's token.
    let checks = |token: &str| {
        api.server
            .requests()
            .iter()
            .filter(|r| {
                r.target.contains("/helmreleases")
                    && r.header("authorization") == Some(&format!("Bearer {token}"))
            })
            .count()
    };
    let (a, _a_dirs) = replica("a", &ka);
    crate::watch::wait_for("a leads", || a.sample("kairo_leader ") == 1.0);
    let (b, _b_dirs) = replica("b", &kb);
    crate::watch::wait_for("b is up", || b.metrics().contains("kairo_leader 0"));
    // Three of a's checks after b came up: b has had as many drift ticks, all skipped.
    let seen = checks("replica-a");
    crate::watch::wait_for("a checks drift", || checks("replica-a") >= seen + 3);
    assert_eq!(leases.holder("gitops", "kairo-watch").as_deref(), Some("a"));
    assert_eq!(checks("replica-b"), 0);
    let metrics = b.metrics();
    assert!(!metrics.contains("kairo_release_ready{"), "{metrics}");
    assert!(
        !metrics.contains("kairo_drift_last_check_timestamp_seconds{"),
        "{metrics}"
    );
    assert!(
        a.metrics()
            .contains(r#"kairo_release_ready{env="production",release="web"} 1"#),
        "{}",
        a.metrics()
    );

    // `a` dies without giving the Lease up: `b` takes over, and checks drift.
    drop(a);
    crate::watch::wait_for("b leads", || b.sample("kairo_leader ") == 1.0);
    crate::watch::wait_for("b checks drift", || {
        b.metrics()
            .contains(r#"kairo_release_ready{env="production",release="web"} 1"#)
    });
    assert!(checks("replica-b") >= 1);

    // Another replica takes the Lease while `b` lives: `b` stops exporting drift at once.
    leases.steal("gitops", "kairo-watch", "c");
    crate::watch::wait_for("b follows", || b.sample("kairo_leader ") == 0.0);
    crate::watch::wait_for("b drops its drift series", || {
        let metrics = b.metrics();
        !metrics.contains("kairo_release_ready{") && !metrics.contains("kairo_drift_objects{")
    });
    assert_eq!(b.terminate(), 0);
}

/// A team's namespace template emitting a Secret, as `kairo diff` masks it: `stringData` and
/// `data` (base64) both.
const SECRET_TEMPLATE: &str = "apiVersion: v1\nkind: Secret\nmetadata:\n  name: git\n  namespace: {{ env.namespace | yaml }}\n  labels:\n    app.kubernetes.io/managed-by: kairo\ntype: Opaque\nstringData:\n  branch: {{ env.branch | yaml }}\n  token: s3cr3t-from-git\ndata:\n  ca.crt: Q0EtQllURVMtZnJvbS1naXQ=\n";

/// The Secret as the API server holds it once applied: everything in `data`, base64.
fn live_secret(token: &str) -> Value {
    use base64::Engine;
    let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
    json!({
        "apiVersion": "v1", "kind": "Secret",
        "metadata": {"name": "git", "namespace": "shop",
            "labels": {"app.kubernetes.io/managed-by": "kairo", "kustomize.toolkit.fluxcd.io/name": "flux-system"}},
        "type": "Opaque",
        "data": {"branch": b64("main"), "token": b64(token), "ca.crt": b64("CA-BYTES-from-git")},
    })
}

fn secret_repo() -> Repo {
    let repo = Repo::new();
    repo.write("environments/services.yaml", CATALOG);
    repo.write("environments/production.yaml", PRODUCTION);
    repo.write("templates/namespace.yaml.j2", SECRET_TEMPLATE);
    let out = repo.kairo(&["render"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    commit_all(repo.path(), "production with a secret", 1_700_000_000);
    repo
}

/// No byte of a Secret value, plain or base64, in `text`.
fn assert_no_secret_bytes(text: &str) {
    for leak in [
        "hunter2",
        "aHVudGVyMi",
        "s3cr3t",
        "czNjcjN0",
        "CA-BYTES",
        "Q0EtQllURV",
    ] {
        assert!(!text.contains(leak), "`{leak}` leaked: {text}");
    }
}

/// Secrets kairo renders are compared (live `data` base64 against Git's `stringData` and
/// `data`) and reported by key, with masked values, in every output and in the logs.
#[test]
fn rendered_secrets_are_compared_and_masked_everywhere() {
    let repo = secret_repo();
    let mut objects = cluster(&repo);
    objects.push(live_secret("s3cr3t-from-git"));
    let (out, api) = against(&repo, objects.clone(), &["drift", "--env", "production"]);
    assert_eq!(out.code, 0, "{}\n{}", out.stdout, out.stderr);
    assert!(
        out.stdout.contains("(6 objects compared)"),
        "{}",
        out.stdout
    );
    // Read by name, never listed.
    let targets = api.targets();
    assert!(
        targets.contains(&"/api/v1/namespaces/shop/secrets/git".to_string()),
        "{targets:?}"
    );
    assert!(
        !targets
            .iter()
            .any(|t| t.starts_with("/api/v1/namespaces/shop/secrets?")),
        "{targets:?}"
    );

    // Changed by hand in the cluster.
    *objects.last_mut().unwrap() = live_secret("hunter2");
    let home = repo.path().join(".home");
    for output in ["text", "markdown", "json"] {
        let api = FakeApi::start(TOKEN, objects.clone());
        let dir = tempfile::tempdir().unwrap();
        let config = kubeconfig(dir.path(), &api.url(), TOKEN);
        std::fs::create_dir_all(&home).unwrap();
        let out = run_kairo_with_env(
            repo.path(),
            &["drift", "--env", "production", "--output", output],
            &[
                ("KUBECONFIG", config.to_str().unwrap()),
                ("HOME", home.to_str().unwrap()),
                ("KUBERNETES_SERVICE_HOST", ""),
                ("RUST_LOG", "trace"),
            ],
        );
        assert_eq!(out.code, 1, "{output}: {}\n{}", out.stdout, out.stderr);
        assert_no_secret_bytes(&out.stdout);
        assert_no_secret_bytes(&out.stderr);
        match output {
            "text" => {
                assert!(
                    out.stdout
                        .contains("~ Secret shop/git: data.token (masked) -> (masked)\n"),
                    "{}",
                    out.stdout
                );
                // The diff shows which key changed, not how.
                assert!(
                    out.stdout.contains("-  token: (masked)\n"),
                    "{}",
                    out.stdout
                );
                assert!(
                    out.stdout.contains("+  token: (masked, changed)\n"),
                    "{}",
                    out.stdout
                );
                assert!(
                    out.stdout.contains("   branch: (masked)\n"),
                    "{}",
                    out.stdout
                );
            }
            "markdown" => assert!(
                out.stdout
                    .contains("Secret shop/git: data.token (masked) → (masked)"),
                "{}",
                out.stdout
            ),
            _ => {
                let report: Value = serde_json::from_str(&out.stdout).unwrap();
                let secret = &report["objects"][0];
                assert_eq!(secret["kind"], "Secret");
                assert_eq!(secret["state"], "changed");
                assert_eq!(
                    secret["fields"],
                    json!([{"path": "data.token", "before": "(masked)", "after": "(masked)"}])
                );
                assert!(secret.get("release").is_none(), "{secret}");
            }
        }
    }

    // Missing in the cluster; a key added there and the type changed.
    objects.pop();
    let (out, _api) = against(&repo, objects.clone(), &["drift", "--env", "production"]);
    assert_eq!(out.code, 1, "{}", out.stderr);
    assert!(
        out.stdout
            .contains("- Secret shop/git: missing in cluster\n"),
        "{}",
        out.stdout
    );
    assert_no_secret_bytes(&out.stdout);
    let mut extra = live_secret("s3cr3t-from-git");
    extra["data"]["password"] = json!("aHVudGVyMg==");
    extra["type"] = json!("kubernetes.io/basic-auth");
    objects.push(extra);
    let (out, _api) = against(&repo, objects.clone(), &["drift", "--env", "production"]);
    assert_eq!(out.code, 1, "{}", out.stderr);
    assert!(
        out.stdout.contains(
            "~ Secret shop/git: data.password (none) -> (masked); type Opaque -> kubernetes.io/basic-auth\n"
        ),
        "{}",
        out.stdout
    );
    assert_no_secret_bytes(&out.stdout);

    // A live file holding the Secret (`kubectl get ... secret/git -o yaml`): the same report.
    objects.pop();
    objects.push(live_secret("hunter2"));
    let list = json!({"apiVersion": "v1", "kind": "List", "items": objects});
    let path = repo.path().join(".home/live.yaml");
    std::fs::write(&path, kairo::yaml::to_string(&list).unwrap()).unwrap();
    let out = repo.kairo(&[
        "drift",
        "--env",
        "production",
        "--live-file",
        path.to_str().unwrap(),
    ]);
    assert_eq!(out.code, 1, "{}", out.stderr);
    assert!(
        out.stdout
            .contains("~ Secret shop/git: data.token (masked) -> (masked)\n"),
        "{}",
        out.stdout
    );
    assert_no_secret_bytes(&out.stdout);

    // 403 on the Secret: the verb is `get`, the hint names it.
    let (out, _api) = {
        let api = FakeApi::start(TOKEN, objects);
        api.state.lock().unwrap().forbidden = vec!["secrets".into()];
        let dir = tempfile::tempdir().unwrap();
        let config = kubeconfig(dir.path(), &api.url(), TOKEN);
        (
            kairo(&repo, &config, &["drift", "--env", "production"]),
            api,
        )
    };
    assert_eq!(out.code, 2, "{}", out.stderr);
    assert!(
        out.stderr
            .contains("context `test` may not `get` secrets in namespace `shop` (403 Forbidden)"),
        "{}",
        out.stderr
    );
    assert!(
        out.stderr
            .contains("hint: grant the identity `get` on the `secrets` Git renders"),
        "{}",
        out.stderr
    );
}

/// An API server that sends its headers, then dribbles the body and never finishes: every byte
/// resets a read timeout, but `--request-timeout` bounds the whole request. Exit 2, naming the
/// context; no sleep in the test, the server simply never ends its answer.
#[test]
fn a_trickling_api_server_hits_the_request_timeout() {
    let repo = repo();
    let server = crate::kube_support::Trickle::start();
    let dir = tempfile::tempdir().unwrap();
    let config = kubeconfig(dir.path(), &format!("http://{}", server.addr), TOKEN);
    for command in ["drift", "status"] {
        let out = kairo(
            &repo,
            &config,
            &[command, "--env", "production", "--request-timeout", "2s"],
        );
        assert_eq!(out.code, 2, "{}\n{}", out.stdout, out.stderr);
        assert!(
            out.stderr.contains(&format!(
                "error: the API server of context `test` (`http://{}/`) did not answer listing helmreleases.helm.toolkit.fluxcd.io in namespace `shop` within `--request-timeout 2s`",
                server.addr
            )),
            "{}",
            out.stderr
        );
        assert!(out.stderr.contains("hint: "), "{}", out.stderr);
    }
    assert!(server.requests.load(std::sync::atomic::Ordering::SeqCst) >= 2);
}

/// HTTPS with the CA from the kubeconfig's `certificate-authority-data`, authenticating by
/// token and by client certificate; a CA that did not sign the server's certificate is an
/// error naming the context.
#[test]
fn a_tls_api_server_with_the_kubeconfig_ca_and_a_client_certificate() {
    let repo = repo();
    let pki_dir = tempfile::tempdir().unwrap();
    let pki = crate::kube_support::Pki::new(pki_dir.path());
    let dir = tempfile::tempdir().unwrap();

    let api = FakeApi::start_tls(TOKEN, cluster(&repo), &pki, false);
    let url = format!("https://{}", api.server.addr);
    let config = crate::kube_support::tls_kubeconfig(dir.path(), &url, &pki, Some(TOKEN));
    let out = kairo(&repo, &config, &["drift", "--env", "production"]);
    assert_eq!(out.code, 0, "{}\n{}", out.stdout, out.stderr);
    assert!(
        out.stdout
            .contains("-> context `secure`: 0 changed, 0 missing, 0 extra"),
        "{}",
        out.stdout
    );
    assert!(!api.targets().is_empty());

    // A client certificate the server's CA signed, no token.
    let api = FakeApi::start_tls(TOKEN, cluster(&repo), &pki, true);
    let url = format!("https://{}", api.server.addr);
    let config = crate::kube_support::tls_kubeconfig(dir.path(), &url, &pki, None);
    let out = kairo(&repo, &config, &["status", "--env", "production"]);
    assert_eq!(out.code, 0, "{}\n{}", out.stdout, out.stderr);
    assert!(
        api.server
            .requests()
            .iter()
            .all(|r| r.header("authorization").is_none()),
        "authenticated by the certificate alone"
    );

    // A kubeconfig trusting another CA: the handshake fails; nothing is listed.
    let other_dir = tempfile::tempdir().unwrap();
    let other = crate::kube_support::Pki::new(other_dir.path());
    let config = crate::kube_support::tls_kubeconfig(dir.path(), &url, &other, Some(TOKEN));
    let seen = api.server.requests().len();
    let out = kairo(&repo, &config, &["drift", "--env", "production"]);
    assert_eq!(out.code, 2, "{}\n{}", out.stdout, out.stderr);
    assert!(
        out.stderr.contains(&format!(
            "error: cannot list helmreleases.helm.toolkit.fluxcd.io in namespace `shop` from the API server of context `secure` (`{url}/`)"
        )),
        "{}",
        out.stderr
    );
    assert!(
        out.stderr.contains("invalid peer certificate"),
        "{}",
        out.stderr
    );
    assert!(
        out.stderr.contains(
            "hint: the API server's certificate is not signed by a CA the kubeconfig trusts"
        ),
        "{}",
        out.stderr
    );
    // A certificate the kubeconfig does not trust is not transient: `--wait` does not ask again.
    let out = kairo(
        &repo,
        &config,
        &[
            "status",
            "--env",
            "production",
            "--wait",
            "--timeout",
            "2s",
            "--poll-interval",
            "10ms",
        ],
    );
    assert_eq!(out.code, 2, "{}\n{}", out.stdout, out.stderr);
    assert!(!out.stderr.contains("asking again"), "{}", out.stderr);
    assert_eq!(api.server.requests().len(), seen);
}

/// A kubeconfig that does not parse is an input error naming the file and the line, but never
/// quoting it: the lines around a YAML syntax error are where the tokens and keys are.
#[test]
fn a_malformed_kubeconfig_is_named_but_its_credentials_are_not_printed() {
    let repo = repo();
    let dir = tempfile::tempdir().unwrap();
    let leaky = [
        "apiVersion: v1\nkind: Config\nusers:\n- name: u\n  user:\n    token: hunter2-token\n    client-key-data: aHVudGVyMi1rZXk=\n  - oops\n",
        "apiVersion: v1\nkind: Config\nusers:\n- name: u\n  user:\n    token: [hunter2-token]\n",
    ];
    for (i, text) in leaky.iter().enumerate() {
        let path = dir.path().join(format!("config-{i}"));
        std::fs::write(&path, text).unwrap();
        for context in [None, Some("test")] {
            let mut args = vec!["drift", "--env", "production"];
            args.extend(context.iter().flat_map(|c| ["--context", c]));
            let out = kairo(&repo, &path, &args);
            assert_eq!(out.code, 2, "{}", out.stderr);
            assert!(
                out.stderr.contains(&format!("`{}`", path.display())),
                "{}",
                out.stderr
            );
            assert!(out.stderr.contains(" line "), "{}", out.stderr);
            for leak in ["hunter2", "aHVudGVyMi"] {
                assert!(
                    !out.stderr.contains(leak),
                    "`{leak}` leaked: {}",
                    out.stderr
                );
            }
        }
    }
}

/// The CI gate right after a commit that fixes a failed release: until Flux applies the commit,
/// the cluster still holds the old spec and its failure. That failure is not of what Git
/// renders, so `--wait` keeps waiting (and reports progressing, not failed) until Flux has
/// applied the new spec; a failure of Git's own spec still ends the wait at once.
#[test]
fn a_failure_of_the_spec_before_the_commit_does_not_end_the_wait() {
    let repo = repo();
    let mut objects = cluster(&repo);
    let mut fixed = objects
        .iter()
        .find(|o| o["metadata"]["name"] == json!("api") && o["kind"] == json!("HelmRelease"))
        .unwrap()
        .clone();
    fixed["metadata"]["generation"] = json!(3);
    fixed["status"]["observedGeneration"] = json!(3);
    replace(&mut objects, "HelmRelease", "api", |o| {
        // The broken version the commit replaces, failed and reconciled.
        o["spec"]["chart"]["spec"]["version"] = json!("1.1.9");
        o["status"]["lastAttemptedRevision"] = json!("1.1.9");
        o["status"]["history"][0]["chartVersion"] = json!("1.1.9");
        o["status"]["history"][0]["status"] = json!("failed");
        o["status"]["conditions"] = json!([
            {"type": "Ready", "status": "False", "reason": "UpgradeFailed", "observedGeneration": 2,
             "lastTransitionTime": "2026-11-02T09:20:00Z",
             "message": "Helm upgrade failed for release shop/api with chart api@1.1.9: image pull"}
        ]);
    });
    let (out, _api) = against(&repo, objects.clone(), &["status", "--env", "production"]);
    assert_eq!(out.code, 1, "{}", out.stderr);
    assert!(
        out.stdout.contains("api progressing chart 1.2.0"),
        "{}",
        out.stdout
    );
    assert!(
        out.stderr
            .contains("error: not ready: 1 of 2 release(s) not ready"),
        "{}",
        out.stderr
    );

    let api = FakeApi::start(TOKEN, objects);
    // Flux applies the commit; the third look finds the release Ready at Git's spec.
    api.state.lock().unwrap().flips.push((3, fixed));
    let dir = tempfile::tempdir().unwrap();
    let config = kubeconfig(dir.path(), &api.url(), TOKEN);
    let out = kairo(&repo, &config, &WAIT_READY);
    assert_eq!(out.code, 0, "{}\n{}", out.stdout, out.stderr);
    assert_eq!(api.state.lock().unwrap().helmrelease_lists, 3);
}

/// Flux attempted Git's chart version, but the latest Helm release is still another one (a
/// rollback, or history not yet written): not ready, whatever the Ready condition says.
#[test]
fn a_release_whose_history_lags_the_attempted_version_is_not_ready() {
    let repo = repo();
    let mut objects = cluster(&repo);
    replace(&mut objects, "HelmRelease", "api", |o| {
        o["status"]["history"][0]["chartVersion"] = json!("1.1.9");
    });
    let (out, _api) = against(&repo, objects, &["status", "--env", "production"]);
    assert_eq!(out.code, 1, "{}\n{}", out.stdout, out.stderr);
    assert!(
        out.stdout
            .contains("api progressing chart 1.2.0 (attempted 1.2.0)"),
        "{}",
        out.stdout
    );
    assert!(
        out.stdout.contains(
            "    pending: the latest Helm release runs chart version `1.1.9`, Git asks for `1.2.0`\n"
        ),
        "{}",
        out.stdout
    );
}

/// Environments run in different clusters (`spec.cluster`), and the daemon's kubeconfig reaches
/// one: `--drift-env` names the environments this daemon checks, and the others are never
/// listed against the wrong cluster (no request, no series, no error counted for them).
#[test]
fn the_daemon_checks_only_the_environments_named_by_drift_env() {
    let repo = repo();
    add_staging(&repo);
    let api = FakeApi::start(TOKEN, cluster(&repo));
    let (d, _dirs) = drift_daemon(&repo, &api, &["--drift-env", "production"]);
    let lists = || {
        api.server
            .requests()
            .iter()
            .filter(|r| r.target.contains("/helmreleases"))
            .count()
    };
    crate::watch::wait_for("three drift checks", || lists() >= 3);
    crate::watch::wait_for("production is exported", || {
        d.metrics()
            .contains(r#"kairo_release_ready{env="production",release="web"} 1"#)
    });
    let metrics = d.metrics();
    assert!(!metrics.contains(r#"env="staging""#), "{metrics}");
    assert!(!metrics.contains("kairo_drift_errors_total{"), "{metrics}");
    assert!(
        !api.server
            .requests()
            .iter()
            .any(|r| r.target.contains("/namespaces/shop-staging/")),
        "staging was listed against production's cluster"
    );
    assert_eq!(d.terminate(), 0);
}

/// Listings concatenated into one YAML stream (`kubectl get ... -o yaml; echo ---; kubectl get
/// ... -o yaml`), and a raw API list among them: read as one set of live objects. An object
/// listed in two documents is still refused.
#[test]
fn a_live_file_may_be_a_stream_of_listings() {
    let repo = repo();
    let items = cluster(&repo);
    let (releases, rest): (Vec<Value>, Vec<Value>) = items
        .into_iter()
        .partition(|o| o["kind"] == json!("HelmRelease"));
    let (deployments, autoscalers): (Vec<Value>, Vec<Value>) = rest
        .into_iter()
        .partition(|o| o["kind"] == json!("Deployment"));
    let deployments: Vec<Value> = deployments
        .into_iter()
        .map(|mut o| {
            o.as_object_mut().unwrap().remove("kind");
            o
        })
        .collect();
    let docs = [
        json!({"apiVersion": "v1", "kind": "List", "items": releases}),
        json!({"apiVersion": "apps/v1", "kind": "DeploymentList", "items": deployments}),
        autoscalers[0].clone(),
    ];
    let text = docs
        .iter()
        .map(|d| kairo::yaml::to_string(d).unwrap())
        .collect::<Vec<_>>()
        .join("\n---\n");
    let path = repo.path().join(".live.yaml");
    std::fs::write(&path, format!("---\n{text}\n---\n")).unwrap();
    let live = |command: &str| {
        repo.kairo(&[
            command,
            "--env",
            "production",
            "--live-file",
            path.to_str().unwrap(),
        ])
    };
    let out = live("drift");
    assert_eq!(out.code, 0, "{}\n{}", out.stdout, out.stderr);
    assert!(
        out.stdout.contains("(5 objects compared)"),
        "{}",
        out.stdout
    );
    let out = live("status");
    assert_eq!(out.code, 0, "{}\n{}", out.stdout, out.stderr);
    // `-o json` outputs one after another.
    let json_text = docs
        .iter()
        .map(|d| serde_json::to_string_pretty(d).unwrap())
        .collect::<Vec<_>>()
        .join("\n");
    std::fs::write(&path, json_text).unwrap();
    let out = live("drift");
    assert_eq!(out.code, 0, "{}\n{}", out.stdout, out.stderr);
    assert!(
        out.stdout.contains("(5 objects compared)"),
        "{}",
        out.stdout
    );

    // The same HPA in two documents.
    let again = kairo::yaml::to_string(&autoscalers[0]).unwrap();
    std::fs::write(&path, format!("{text}\n---\n{again}")).unwrap();
    let out = live("drift");
    assert_eq!(out.code, 2, "{}", out.stderr);
    assert!(
        out.stderr
            .contains("holds HorizontalPodAutoscaler `shop/web` twice"),
        "{}",
        out.stderr
    );
}

/// `kairo status` reads no Secret: its verdict does not depend on them, and a CI identity
/// allowed to read releases and workloads but not Secrets must be able to gate on it.
#[test]
fn status_reads_no_secret() {
    let repo = secret_repo();
    let mut objects = cluster(&repo);
    objects.push(live_secret("s3cr3t-from-git"));
    let api = FakeApi::start(TOKEN, objects);
    api.state.lock().unwrap().forbidden = vec!["secrets".into()];
    let dir = tempfile::tempdir().unwrap();
    let config = kubeconfig(dir.path(), &api.url(), TOKEN);
    let out = kairo(&repo, &config, &["status", "--env", "production"]);
    assert_eq!(out.code, 0, "{}\n{}", out.stdout, out.stderr);
    assert!(
        !api.targets().iter().any(|t| t.contains("/secrets")),
        "{:?}",
        api.targets()
    );
}

/// Adds (and commits) a `staging` environment in namespace `shop-staging`, cluster `staging-eu`.
fn add_staging(repo: &Repo) {
    let staging = PRODUCTION
        .replace("name: production", "name: staging")
        .replace("namespace: shop", "namespace: shop-staging")
        .replace("cluster: prod-eu", "cluster: staging-eu");
    repo.write("environments/staging.yaml", &staging);
    let out = repo.kairo(&["render"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    commit_all(repo.path(), "staging", 1_700_000_100);
}

/// An environment removed from Git loses all its drift series at the next check, not only its
/// readiness ones: a stale `kairo_drift_objects` would keep an alert firing, and a stale
/// last-check timestamp would age into a "drift checks stopped" alert, for an environment that
/// no longer exists.
#[test]
fn the_daemon_drops_every_drift_series_of_an_environment_gone_from_git() {
    let repo = repo();
    add_staging(&repo);
    let api = FakeApi::start(TOKEN, cluster(&repo));
    let (d, dirs) = drift_daemon(&repo, &api, &[]);
    crate::watch::wait_for("staging is exported", || {
        let metrics = d.metrics();
        metrics.contains(r#"kairo_drift_last_check_timestamp_seconds{env="staging"}"#)
            && metrics.contains(r#"kairo_drift_objects{env="staging",kind="HelmRelease"} 2"#)
    });

    std::fs::remove_file(repo.path().join("environments/staging.yaml")).unwrap();
    std::fs::remove_dir_all(repo.path().join("clusters/staging")).unwrap();
    let out = repo.kairo(&["render"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    commit_all(repo.path(), "staging retired", 1_700_000_200);
    let bare = dirs[0].path().join("remote.git");
    crate::support::git(
        repo.path(),
        &[
            "push",
            "--quiet",
            bare.to_str().unwrap(),
            "HEAD:refs/heads/main",
        ],
    );
    crate::watch::wait_for("staging's series are dropped", || {
        !d.metrics().contains(r#"env="staging""#)
    });
    let metrics = d.metrics();
    assert!(
        metrics.contains(r#"kairo_drift_last_check_timestamp_seconds{env="production"}"#),
        "{metrics}"
    );
    crate::watch::promtool_check(&metrics);
    assert_eq!(d.terminate(), 0);
}

/// `--request-timeout 0` means no timeout, as kubectl's does, not "time out at once".
#[test]
fn a_zero_request_timeout_is_no_timeout_as_in_kubectl() {
    let repo = repo();
    for command in ["drift", "status"] {
        let (out, _api) = against(
            &repo,
            cluster(&repo),
            &[command, "--env", "production", "--request-timeout", "0"],
        );
        assert_eq!(out.code, 0, "{command}: {}\n{}", out.stdout, out.stderr);
    }
}

/// A CI gate waits minutes through a rollout; an API server that answers 500 once (etcd
/// overloaded) must not end the wait: `--wait` asks again at the next poll. A check that keeps
/// failing until the timeout is still an error (exit 2), and a permanent refusal (403) ends the
/// wait at once.
#[test]
fn wait_rides_out_a_transient_api_error() {
    let repo = repo();
    let mut objects = cluster(&repo);
    let mut ready = objects
        .iter()
        .find(|o| o["metadata"]["name"] == json!("api") && o["kind"] == json!("HelmRelease"))
        .unwrap()
        .clone();
    ready["metadata"]["generation"] = json!(3);
    ready["status"]["observedGeneration"] = json!(3);
    replace(&mut objects, "HelmRelease", "api", progressing);
    let api = FakeApi::start(TOKEN, objects.clone());
    {
        let mut state = api.state.lock().unwrap();
        state.unavailable = vec![2];
        state.flips.push((3, ready));
    }
    let dir = tempfile::tempdir().unwrap();
    let config = kubeconfig(dir.path(), &api.url(), TOKEN);
    let out = kairo(&repo, &config, &WAIT_READY);
    assert_eq!(out.code, 0, "{}\n{}", out.stdout, out.stderr);
    assert_eq!(api.state.lock().unwrap().helmrelease_lists, 3);

    // Failing from the first check to the end: an error naming the context.
    let api = FakeApi::start(TOKEN, objects.clone());
    api.state.lock().unwrap().unavailable = (1..10_000).collect();
    let config = kubeconfig(dir.path(), &api.url(), TOKEN);
    let out = kairo(
        &repo,
        &config,
        &[
            "status",
            "--env",
            "production",
            "--wait",
            "--timeout",
            "1s",
            "--poll-interval",
            "100ms",
        ],
    );
    assert_eq!(out.code, 2, "{}\n{}", out.stdout, out.stderr);
    assert!(
        out.stderr.contains("context `test`") && out.stderr.contains("etcdserver"),
        "{}",
        out.stderr
    );

    // 403 is not transient.
    let api = FakeApi::start(TOKEN, objects);
    api.state.lock().unwrap().forbidden = vec!["helmreleases".into()];
    let config = kubeconfig(dir.path(), &api.url(), TOKEN);
    let out = kairo(&repo, &config, &WAIT_READY);
    assert_eq!(out.code, 2, "{}", out.stderr);
    assert!(out.stderr.contains("403 Forbidden"), "{}", out.stderr);
}
