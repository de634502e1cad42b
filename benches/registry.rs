//! `cargo xtask bench registry` (or `cargo bench --bench registry`): tag selection over 10,000
//! tags (the size of `library/node`) and one scan of 1,000 repositories on a loopback
//! `docker-registry`. Targets are reported, not asserted.
#![allow(clippy::disallowed_methods)] // a benchmark starts a real registry: not kairo code

use std::net::{TcpListener, TcpStream};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use kairo::model::tagpolicy::{
    BuildTimes, Order, Policy, Range, TagFilter, UpdatePolicy, choose, evaluate,
};
use kairo::registry::{self, Client, ClientConfig, ImageName, Rate};
use sha2::Digest;

const SELECT_TARGET_MS: f64 = 2.0;
const SCAN_TARGET_S: f64 = 2.0;
const REPOSITORIES: usize = 1000;
const RSS_TARGET_MB: f64 = 30.0;

fn sha256(bytes: &[u8]) -> String {
    let mut s = String::from("sha256:");
    for b in sha2::Sha256::digest(bytes).iter() {
        s.push_str(&format!("{b:02x}"));
    }
    s
}

fn median(mut runs: Vec<Duration>) -> Duration {
    runs.sort();
    runs[runs.len() / 2]
}

fn tags(n: usize) -> Vec<String> {
    // Releases, prereleases, commit SHAs, moving tags, cache and signature tags.
    (0..n)
        .map(|i| match i % 5 {
            0 => format!("{}.{}.{}", i % 23, i % 17, i % 11),
            1 => format!("v{}.{}.{}-rc.{}", i % 19, i % 13, i % 7, i % 5),
            2 => format!("{:040x}", (i as u128) * 0x9e37_79b9_7f4a_7c15),
            3 => format!("main-{i}-{}", 1_700_000_000 + i),
            _ => format!("sha256-{:064x}.sig", i),
        })
        .collect()
}

fn bench_selection() -> Vec<(String, f64)> {
    let list = tags(10_000);
    let mut numbered = UpdatePolicy::new(Policy::Numerical(Order::Asc));
    numbered.filter = Some(TagFilter {
        pattern: regex::Regex::new(r"^main-[0-9]+-(?P<ts>[0-9]+)$").unwrap(),
        extract: "$ts".into(),
    });
    let cases = [
        (
            "semver ^1.0",
            UpdatePolicy::new(Policy::Semver(Range::parse("^1.0").unwrap())),
        ),
        (
            "semver >=0.0.0-0 (all prereleases)",
            UpdatePolicy::new(Policy::Semver(Range::parse(">=0.0.0-0").unwrap())),
        ),
        (
            "alphabetical",
            UpdatePolicy::new(Policy::Alphabetical(Order::Asc)),
        ),
        ("numerical with filter+extract", numbered),
    ];
    let mut out = Vec::new();
    let none = BuildTimes::new();
    for (name, policy) in cases {
        let chosen = choose(&policy, &list, &none).expect("a choice");
        assert_eq!(Ok(chosen), evaluate(&policy, &list, &none).1);
        let time = |f: &dyn Fn()| {
            let runs = (0..31)
                .map(|_| {
                    let t = Instant::now();
                    f();
                    t.elapsed()
                })
                .collect();
            median(runs).as_secs_f64() * 1000.0
        };
        // What a scan runs: the choice only.
        let ms = time(&|| {
            std::hint::black_box(choose(&policy, &list, &none).unwrap());
        });
        out.push((format!("{name}: choose"), ms));
        // What `kairo tags` runs: the choice and why (every tag sorted and explained).
        let ms = time(&|| {
            let _ = std::hint::black_box(evaluate(&policy, &list, &none));
        });
        out.push((format!("{name}: evaluate (explained)"), ms));
    }
    out
}

struct Registry(std::process::Child);

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn start_registry(dir: &std::path::Path) -> (Registry, String) {
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let config = format!(
        "version: 0.1\nlog:\n  level: error\n  accesslog:\n    disabled: true\nstorage:\n  filesystem:\n    rootdirectory: {}\nhttp:\n  addr: 127.0.0.1:{port}\n",
        dir.join("data").display()
    );
    std::fs::write(dir.join("config.yml"), config).unwrap();
    let child = Command::new("docker-registry")
        .arg("serve")
        .arg(dir.join("config.yml"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("docker-registry (Debian package `docker-registry`) must be installed");
    let host = format!("127.0.0.1:{port}");
    let registry = Registry(child);
    for _ in 0..600 {
        if TcpStream::connect(&host).is_ok() {
            return (registry, host);
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("docker-registry did not start");
}

async fn upload(http: &reqwest::Client, host: &str, repo: &str, blob: &[u8], from: Option<&str>) {
    let digest = sha256(blob);
    let mut url = format!("http://{host}/v2/{repo}/blobs/uploads/");
    if let Some(from) = from {
        url.push_str(&format!("?mount={digest}&from={from}"));
    }
    let start = http.post(url).send().await.unwrap();
    if start.status().as_u16() == 201 {
        return; // mounted from the first repository
    }
    let location = start.headers()["location"].to_str().unwrap().to_string();
    let location = if location.starts_with('/') {
        format!("http://{host}{location}")
    } else {
        location
    };
    let sep = if location.contains('?') { '&' } else { '?' };
    let put = http
        .put(format!("{location}{sep}digest={digest}"))
        .body(blob.to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(put.status().as_u16(), 201);
}

async fn populate(host: &str) {
    let http = reqwest::Client::new();
    let config = br#"{"architecture":"amd64","os":"linux","created":"2026-01-01T00:00:00Z","rootfs":{"type":"layers","diff_ids":[]}}"#;
    let layer = b"bench layer";
    let manifest = format!(
        r#"{{"schemaVersion":2,"mediaType":"application/vnd.docker.distribution.manifest.v2+json","config":{{"mediaType":"application/vnd.docker.container.image.v1+json","size":{},"digest":"{}"}},"layers":[{{"mediaType":"application/vnd.docker.image.rootfs.diff.tar.gzip","size":{},"digest":"{}"}}]}}"#,
        config.len(),
        sha256(config),
        layer.len(),
        sha256(layer)
    );
    let sem = std::sync::Arc::new(tokio::sync::Semaphore::new(32));
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..REPOSITORIES {
        let (http, host, manifest, sem) = (
            http.clone(),
            host.to_string(),
            manifest.clone(),
            sem.clone(),
        );
        let from = (i > 0).then(|| "bench/r0".to_string());
        if i == 1 {
            while let Some(r) = tasks.join_next().await {
                r.unwrap();
            }
        }
        tasks.spawn(async move {
            let _p = sem.acquire_owned().await;
            let repo = format!("bench/r{i}");
            upload(&http, &host, &repo, config, from.as_deref()).await;
            upload(&http, &host, &repo, layer, from.as_deref()).await;
            for tag in ["1.0.0", "1.1.0", "2.0.0", "latest"] {
                let r = http
                    .put(format!("http://{host}/v2/{repo}/manifests/{tag}"))
                    .header(
                        "content-type",
                        "application/vnd.docker.distribution.manifest.v2+json",
                    )
                    .body(manifest.clone())
                    .send()
                    .await
                    .unwrap();
                assert_eq!(r.status().as_u16(), 201);
            }
        });
    }
    while let Some(r) = tasks.join_next().await {
        r.unwrap();
    }
}

/// A GitOps repository watching `bench/r0..r999` on `host` (all at 1.0.0), pushed to a bare
/// remote; returns the clone the daemon works in.
fn watched_repository(host: &str, dir: &std::path::Path) -> std::path::PathBuf {
    let git = |cwd: &std::path::Path, args: &[&str]| {
        let out = Command::new("git")
            .args(args)
            .current_dir(cwd)
            .env("GIT_CONFIG_GLOBAL", "/dev/null")
            .env("GIT_CONFIG_NOSYSTEM", "1")
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "git {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    let seed = dir.join("seed");
    std::fs::create_dir_all(seed.join("environments")).unwrap();
    let mut catalog = String::from(
        "apiVersion: kairo.dev/v1alpha1\nkind: ServiceCatalog\nmetadata:\n  name: bench\nspec:\n  sources:\n    charts:\n      type: helm\n      url: https://charts.example.com\n  services:\n",
    );
    let mut env = String::from(
        "apiVersion: kairo.dev/v1alpha1\nkind: Environment\nmetadata:\n  name: staging\nspec:\n  namespace: bench\n  branch: staging\n  cluster: bench\n  defaults:\n    replicas: 1\n    hpa: {}\n    pdb: {}\n  services:\n",
    );
    for i in 0..REPOSITORIES {
        catalog.push_str(&format!(
            "    r{i}:\n      chart: {{name: svc, version: \"1.0.0\", source: charts}}\n      image: {{repository: {host}/bench/r{i}}}\n      update: {{policy: {{semver: {{range: \"^1.0\"}}}}}}\n"
        ));
        env.push_str(&format!("    r{i}: {{image: {{tag: \"1.0.0\"}}}}\n"));
    }
    std::fs::write(seed.join("environments/services.yaml"), catalog).unwrap();
    std::fs::write(seed.join("environments/staging.yaml"), env).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_kairo"))
        .args(["render", "--root"])
        .arg(&seed)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    git(&seed, &["init", "-q", "-b", "main"]);
    git(&seed, &["add", "-A"]);
    git(
        &seed,
        &[
            "-c",
            "user.name=b",
            "-c",
            "user.email=b@b",
            "commit",
            "-qm",
            "seed",
        ],
    );
    let remote = dir.join("remote.git");
    git(
        dir,
        &[
            "init",
            "-q",
            "--bare",
            "-b",
            "main",
            remote.to_str().unwrap(),
        ],
    );
    git(&seed, &["push", "-q", remote.to_str().unwrap(), "main"]);
    let clone = dir.join("clone");
    git(
        dir,
        &[
            "clone",
            "-q",
            remote.to_str().unwrap(),
            clone.to_str().unwrap(),
        ],
    );
    clone
}

fn http_get(addr: &str, path: &str) -> Option<String> {
    use std::io::{Read, Write};
    let mut s = TcpStream::connect(addr).ok()?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nhost: {addr}\r\nconnection: close\r\n\r\n"
    )
    .ok()?;
    let mut out = String::new();
    s.read_to_string(&mut out).ok()?;
    Some(out)
}

/// `kairo watch --listen` scanning every repository once (and committing 1,000 bumps in one
/// commit); its resident memory afterwards, and at its peak.
fn bench_daemon_rss(host: &str) -> (f64, f64, f64) {
    let dir = tempfile::tempdir().unwrap();
    let clone = watched_repository(host, dir.path());
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let addr = format!("127.0.0.1:{port}");
    // `KAIRO_BENCH_DAEMON_LOG=FILE`: the daemon's debug log (memory at each phase, each write's
    // attempts and time) goes there.
    let log_file = std::env::var_os("KAIRO_BENCH_DAEMON_LOG");
    let log = match &log_file {
        Some(path) => Stdio::from(std::fs::File::create(path).unwrap()),
        None => Stdio::null(),
    };
    let mut child = Command::new(env!("CARGO_BIN_EXE_kairo"))
        .args(log_file.is_some().then_some("-v"))
        .args([
            "watch",
            "--listen",
            &addr,
            "--interval",
            "1h",
            "--concurrency",
            "32",
            // As the scan above: kairo's own speed, not the default budget of 20 requests/s
            // per registry (which alone makes 2,000 requests take 100 s).
            "--registry-rate",
            &format!("{host}=unlimited"),
        ])
        .args(["--author", "bench <bench@kairo.invalid>", "--root"])
        .arg(&clone)
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("DOCKER_CONFIG", dir.path().join("docker"))
        .env_remove("RUST_LOG")
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .unwrap();
    let t = Instant::now();
    let mut scanned = None;
    for _ in 0..6000 {
        if let Some(m) = http_get(&addr, "/metrics")
            && let Some(line) = m
                .lines()
                .find(|l| l.starts_with("kairo_scans_total{trigger=\"tick\""))
        {
            scanned = Some(line.to_string());
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let elapsed = t.elapsed().as_secs_f64();
    let status = std::fs::read_to_string(format!("/proc/{}/status", child.id())).unwrap();
    let _ = child.kill();
    let _ = child.wait();
    let scanned = scanned.expect("the daemon's first scan did not finish");
    assert!(
        scanned.contains("result=\"ok\""),
        "the scan failed: {scanned}"
    );
    let kb = |key: &str| -> f64 {
        status
            .lines()
            .find_map(|l| l.strip_prefix(key))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse().ok())
            .unwrap_or(0.0)
    };
    (kb("VmRSS:") / 1024.0, kb("VmHWM:") / 1024.0, elapsed)
}

fn main() {
    // `cargo bench` passes `--bench`; `select` runs the selection part only.
    let only_select = std::env::args().any(|a| a == "select");
    // `daemon` runs the registry setup and the daemon's memory part only.
    let only_daemon = std::env::args().any(|a| a == "daemon");
    println!("== tag selection over 10,000 tags (median of 31, target <= {SELECT_TARGET_MS} ms)");
    let selection = if only_daemon {
        Vec::new()
    } else {
        bench_selection()
    };
    for (name, ms) in selection {
        let verdict = if name.ends_with("(explained)") {
            "(not the target: kairo tags only)"
        } else if ms <= SELECT_TARGET_MS {
            "ok"
        } else {
            "OVER TARGET"
        };
        println!("   {name:<62} {ms:>8.3} ms  {verdict}");
    }
    if only_select {
        return;
    }

    let dir = tempfile::tempdir().unwrap();
    let (_registry, host) = start_registry(dir.path());
    let rt = tokio::runtime::Runtime::new().unwrap();
    let t = Instant::now();
    rt.block_on(populate(&host));
    println!(
        "== pushed {REPOSITORIES} repositories x 4 tags in {:.1} s (setup, not measured)",
        t.elapsed().as_secs_f64()
    );
    let policy = UpdatePolicy::new(Policy::Semver(Range::parse("^1.0").unwrap()));
    let images: Vec<_> = (0..REPOSITORIES)
        .map(|i| {
            (
                ImageName::parse(&format!("{host}/bench/r{i}")).unwrap(),
                policy.clone(),
            )
        })
        .collect();
    let mut rates = std::collections::BTreeMap::new();
    rates.insert(host.clone(), Rate::UNLIMITED);
    let mut runs = Vec::new();
    for _ in 0..if only_daemon { 0 } else { 5 } {
        // A fresh client per run: no connection or token reuse across runs.
        let client = Client::new(ClientConfig {
            rates: rates.clone(),
            ..ClientConfig::default()
        })
        .unwrap();
        let t = Instant::now();
        let results = rt.block_on(registry::scan(&client, &images, 32));
        runs.push(t.elapsed());
        let ok = results
            .iter()
            .filter(|r| matches!(r, Ok(l) if l.tag == "1.1.0"))
            .count();
        assert_eq!(ok, REPOSITORIES, "every repository scanned");
    }
    if only_daemon {
        let (rss, peak, seconds) = bench_daemon_rss(&host);
        println!(
            "== kairo watch --listen after scanning {REPOSITORIES} repositories and committing their bumps ({seconds:.1} s): RSS {rss:.1} MB (peak {peak:.1} MB), target <= {RSS_TARGET_MB} MB"
        );
        return;
    }
    let s = median(runs.clone()).as_secs_f64();
    let verdict = if s <= SCAN_TARGET_S {
        "ok"
    } else {
        "OVER TARGET"
    };
    println!(
        "== scan of {REPOSITORIES} repositories (tags/list + HEAD each, 32 at a time): median {s:.3} s of {:?}, target <= {SCAN_TARGET_S} s  {verdict}",
        runs.iter()
            .map(|r| format!("{:.3}", r.as_secs_f64()))
            .collect::<Vec<_>>()
    );

    let (rss, peak, seconds) = bench_daemon_rss(&host);
    let verdict = if rss <= RSS_TARGET_MB {
        "ok"
    } else {
        "OVER TARGET"
    };
    println!(
        "== kairo watch --listen after scanning {REPOSITORIES} repositories and committing their bumps ({seconds:.1} s): RSS {rss:.1} MB (peak {peak:.1} MB), target <= {RSS_TARGET_MB} MB  {verdict}"
    );
}
