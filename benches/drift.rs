//! `cargo xtask bench drift` (or `cargo bench --bench drift`): 10,000 live objects (2,500
//! HelmReleases, their Deployments and HPAs, and other releases' Deployments) against an
//! environment of 2,500 services. Two figures: the comparison alone (`drift::check`, in
//! process), and `kairo drift --live-file` end to end (render at HEAD, read the listing,
//! compare, print) with its peak RSS. Targets are reported, not asserted.
#![allow(clippy::disallowed_methods)] // a benchmark runs git and kairo: not kairo code

use std::fmt::Write;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use kairo::drift::{self, Live};
use kairo::pipeline::{self, Inputs, Options};
use serde_json::{Value, json};

const SERVICES: usize = 2_500;
const TARGET_S: f64 = 1.0;

fn median(mut runs: Vec<Duration>) -> Duration {
    runs.sort();
    runs[runs.len() / 2]
}

fn write_repository(root: &Path) {
    let mut catalog = String::from(
        "apiVersion: kairo.dev/v1alpha1\nkind: ServiceCatalog\nmetadata:\n  name: bench\nspec:\n  sources:\n    charts:\n      type: helm\n      url: https://charts.example.com\n  services:\n",
    );
    let mut env = String::from(
        "apiVersion: kairo.dev/v1alpha1\nkind: Environment\nmetadata:\n  name: production\nspec:\n  namespace: shop\n  branch: main\n  cluster: prod\n  defaults:\n    replicas: 3\n    hpa: {minReplicas: 3, maxReplicas: 10}\n    pdb: {minAvailable: 1}\n  services:\n",
    );
    for i in 0..SERVICES {
        let _ = write!(
            catalog,
            "    svc-{i:04}:\n      chart: {{version: \"1.{}.0\", source: charts}}\n      image: {{repository: ghcr.io/acme/svc-{i:04}}}\n      resources:\n        requests: {{cpu: 250m, memory: 256Mi}}\n        limits: {{cpu: 1000m, memory: 1Gi}}\n      autoscaling: {}\n",
            i % 7,
            i % 2 == 0
        );
        let _ = write!(
            env,
            "    svc-{i:04}:\n      image: {{tag: \"1.{}.{}\"}}\n",
            i % 13,
            i % 5
        );
    }
    std::fs::create_dir_all(root.join("environments")).unwrap();
    std::fs::write(root.join("environments/catalog.yaml"), catalog).unwrap();
    std::fs::write(root.join("environments/production.yaml"), env).unwrap();
    for args in [
        &["init", "-q"][..],
        &["add", "-A"],
        &[
            "-c",
            "user.name=bench",
            "-c",
            "user.email=bench@kairo.invalid",
            "commit",
            "-qm",
            "bench",
        ],
    ] {
        let ok = Command::new("git")
            .args(args)
            .current_dir(root)
            .env("GIT_CONFIG_GLOBAL", "/dev/null")
            .env("GIT_CONFIG_NOSYSTEM", "1")
            .status()
            .unwrap()
            .success();
        assert!(ok, "git {args:?}");
    }
}

/// What the API server would hold: every release as rendered (plus server fields), its
/// Deployment and HPA, another release's Deployment; 1% of the Deployments scaled by hand.
fn live_objects(desired: &drift::Desired) -> Vec<Value> {
    let mut items = Vec::new();
    for (i, r) in desired.releases.iter().enumerate() {
        let mut hr = r.object.clone();
        hr["metadata"]["uid"] = json!(format!("uid-{i}"));
        hr["metadata"]["resourceVersion"] = json!(format!("{}", 1000 + i));
        hr["metadata"]["generation"] = json!(2);
        hr["metadata"]["managedFields"] = json!([{"manager": "kustomize-controller", "operation": "Apply", "fieldsType": "FieldsV1", "fieldsV1": {"f:spec": {}}}]);
        hr["spec"]["chart"]["spec"]["reconcileStrategy"] = json!("ChartVersion");
        hr["status"] = json!({"observedGeneration": 2, "lastAttemptedRevision": r.chart_version,
            "conditions": [{"type": "Ready", "status": "True", "reason": "UpgradeSucceeded", "message": "Helm upgrade succeeded"}],
            "history": [{"chartVersion": r.chart_version, "status": "deployed"}]});
        items.push(hr);
        let w = r.workload.as_ref().unwrap();
        let annotations =
            json!({"meta.helm.sh/release-name": r.name, "meta.helm.sh/release-namespace": "shop"});
        let replicas = if i % 100 == 1 {
            7
        } else {
            w.replicas.unwrap_or(5)
        };
        items.push(json!({
            "apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": r.name, "namespace": "shop", "generation": 3, "annotations": annotations, "uid": format!("d-{i}")},
            "spec": {"replicas": replicas, "selector": {"matchLabels": {"app": r.name}},
                "template": {"metadata": {"labels": {"app": r.name}}, "spec": {"containers": [
                    {"name": "istio-proxy", "image": "docker.io/istio/proxyv2:1.22.0"},
                    {"name": r.name, "image": w.image(), "imagePullPolicy": "IfNotPresent",
                     "resources": {"requests": {"cpu": "250m", "memory": "256Mi"}, "limits": {"cpu": "1", "memory": "1Gi"}}}]}}},
            "status": {"observedGeneration": 3, "replicas": replicas, "readyReplicas": replicas, "updatedReplicas": replicas}
        }));
        let other = if w.autoscaling.is_some() {
            json!({"apiVersion": "autoscaling/v2", "kind": "HorizontalPodAutoscaler",
                "metadata": {"name": r.name, "namespace": "shop", "annotations": annotations},
                "spec": {"minReplicas": 3, "maxReplicas": 10, "scaleTargetRef": {"kind": "Deployment", "name": r.name}}})
        } else {
            json!({"apiVersion": "apps/v1", "kind": "Deployment",
                "metadata": {"name": format!("{}-redis", r.name), "namespace": "shop",
                    "annotations": {"meta.helm.sh/release-name": format!("{}-redis", r.name), "meta.helm.sh/release-namespace": "shop"}},
                "spec": {"replicas": 1, "template": {"spec": {"containers": [{"name": "redis", "image": "redis:7"}]}}}})
        };
        items.push(other);
        items.push(json!({"apiVersion": "apps/v1", "kind": "StatefulSet",
            "metadata": {"name": format!("{}-db", r.name), "namespace": "shop",
                "annotations": {"meta.helm.sh/release-name": format!("{}-db", r.name), "meta.helm.sh/release-namespace": "shop"}},
            "spec": {"replicas": 1, "template": {"spec": {"containers": [{"name": "pg", "image": "postgres:16"}]}}}}));
    }
    items
}

fn main() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    write_repository(root);
    let out = pipeline::run(
        &Inputs::Disk(root.to_path_buf()),
        &Options {
            only: vec!["production".into()],
            ..Default::default()
        },
    )
    .unwrap_or_else(|e| panic!("render: {e}"));
    let env = out.model.environment("production").unwrap();
    let desired = drift::desired(env, &out.rendered, "HEAD").unwrap();
    let items = live_objects(&desired);
    assert_eq!(items.len(), 10_000);
    let mut live = Live::default();
    for o in items.iter().cloned() {
        live.push(o).expect("no object twice");
    }

    // The comparison alone, in process.
    let mut runs = Vec::new();
    let mut report = None;
    for _ in 0..5 {
        let started = Instant::now();
        report = Some(drift::check(&desired, &live, "bench"));
        runs.push(started.elapsed());
    }
    let report = report.unwrap();
    assert_eq!(report.count(drift::State::Changed), SERVICES / 100);
    let check = median(runs).as_secs_f64();

    // `kairo drift --live-file` end to end, with its peak RSS.
    let list = json!({"apiVersion": "v1", "kind": "List", "items": items});
    let file = root.join("live.yaml");
    std::fs::write(&file, kairo::yaml::to_string(&list).unwrap()).unwrap();
    let size = std::fs::metadata(&file).unwrap().len();
    // The phases of the command, in process: render at HEAD, read the listing.
    let started = Instant::now();
    let files = kairo::git::read_revision(root, "HEAD", &["environments", "templates", "clusters"])
        .unwrap();
    let inputs = Inputs::Files {
        label: "HEAD".into(),
        files,
        bootstrapped: None,
    };
    let options = Options {
        only: vec!["production".into()],
        ..Default::default()
    };
    pipeline::run(&inputs, &options).unwrap();
    let render = started.elapsed().as_secs_f64();
    let started = Instant::now();
    let text = std::fs::read_to_string(&file).unwrap();
    let parsed = Live::from_yaml("live.yaml", &text).unwrap();
    let parse = started.elapsed().as_secs_f64();
    assert_eq!(parsed.helm_releases.len(), SERVICES);
    let json_text = serde_json::to_string(&list).unwrap();
    let started = Instant::now();
    let parsed = Live::from_yaml("live.json", &json_text).unwrap();
    let parse_json = started.elapsed().as_secs_f64();
    assert_eq!(parsed.helm_releases.len(), SERVICES);
    let mut runs = Vec::new();
    let mut rss = 0;
    for _ in 0..3 {
        let started = Instant::now();
        let child = Command::new(env!("CARGO_BIN_EXE_kairo"))
            .args(["drift", "--env", "production", "--summary", "--live-file"])
            .arg(&file)
            .arg("--root")
            .arg(root)
            .env("GIT_CONFIG_GLOBAL", "/dev/null")
            .env("GIT_CONFIG_NOSYSTEM", "1")
            .stdout(Stdio::null())
            .spawn()
            .unwrap();
        let pid = child.id() as libc::pid_t;
        let mut status = 0;
        // SAFETY: `rusage` is plain old data; all zeroes is valid.
        let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
        // SAFETY: valid pointers to locals; the child is reaped here, never waited on again.
        let r = unsafe { libc::wait4(pid, &mut status, 0, &mut usage) };
        assert_eq!(r, pid);
        runs.push(started.elapsed());
        drop(child);
        assert!(
            libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 1,
            "kairo drift: wait status {status}"
        );
        rss = rss.max(usage.ru_maxrss as u64 * 1024);
    }
    let end_to_end = median(runs).as_secs_f64();
    let verdict = |s: f64| if s <= TARGET_S { "ok" } else { "OVER TARGET" };
    println!("drift: 10,000 live objects against {SERVICES} services");
    println!(
        "  drift::check (compare only)     {:>8.1} ms   target <= {TARGET_S} s: {}",
        check * 1000.0,
        verdict(check)
    );
    println!(
        "  render at HEAD (2,500 releases)  {:>8.1} ms; read the listing: YAML {:.1} ms, JSON {:.1} ms",
        render * 1000.0,
        parse * 1000.0,
        parse_json * 1000.0
    );
    println!(
        "  kairo drift --live-file ({:.1} MiB listing; render + parse + compare + print)  {:>8.1} ms   target <= {TARGET_S} s: {}",
        size as f64 / (1024.0 * 1024.0),
        end_to_end * 1000.0,
        verdict(end_to_end)
    );
    println!(
        "  peak RSS of kairo drift          {:>8.1} MiB",
        rss as f64 / (1024.0 * 1024.0)
    );
}
