//! `kairo watch`: `--once` end to end (a loopback `docker-registry`, a bare remote on disk, the
//! real binary) and the daemon (readiness, webhooks, `/metrics` checked by `promtool`, registry
//! failures, SIGTERM during a push).

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use hmac::{KeyInit, Mac};

use crate::registry_support::{Answer, Registry, Scripted, json, push};
use crate::support::{HERMETIC_GIT, Repo, commit_all, git};

const AUTHOR: &str = "kairo bot <bot@kairo.invalid>";

/// `web` follows semver `^1.0`; `worker` follows the digest of `staging`. Each repository
/// lives on its own registry host so that one can fail alone.
fn catalog(web_host: &str, worker_host: &str) -> String {
    format!(
        r#"apiVersion: kairo.dev/v1alpha1
kind: ServiceCatalog
metadata:
  name: test
spec:
  sources:
    charts:
      type: helm
      url: https://charts.example.com
  services:
    web:
      chart: {{version: ">=1.0.0", source: charts}}
      image: {{repository: {web_host}/acme/web}}
      update:
        policy: {{semver: {{range: "^1.0"}}}}
    worker:
      chart: {{version: ">=1.0.0", source: charts}}
      image: {{repository: {worker_host}/acme/worker}}
      update:
        policy: {{digest: {{tag: staging}}}}
"#
    )
}

fn staging(worker_digest: &str) -> String {
    format!(
        r#"apiVersion: kairo.dev/v1alpha1
kind: Environment
metadata:
  name: staging
spec:
  namespace: acme-staging
  branch: staging
  cluster: acme-staging
  defaults:
    replicas: 1
    hpa: {{}}
    pdb: {{}}
  services:
    web:
      image: {{tag: "1.0.0"}}
    worker:
      image: {{tag: staging, digest: "{worker_digest}"}}
"#
    )
}

/// A bare remote with the rendered repository on `main`, and a clone of it.
struct Remote {
    _dir: tempfile::TempDir,
    path: PathBuf,
    clone: tempfile::TempDir,
}

impl Remote {
    fn new(web_host: &str, worker_host: &str, worker_digest: &str) -> Remote {
        Remote::with(web_host, worker_host, worker_digest, &[])
    }

    /// As `new`, with `extra` files (path, content) in the first commit.
    fn with(
        web_host: &str,
        worker_host: &str,
        worker_digest: &str,
        extra: &[(&str, &str)],
    ) -> Remote {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("remote.git");
        git2::Repository::init_bare(&path).unwrap();
        let seed = Repo::new();
        seed.write(
            "environments/services.yaml",
            &catalog(web_host, worker_host),
        );
        seed.write("environments/staging.yaml", &staging(worker_digest));
        for (file, text) in extra {
            seed.write(file, text);
        }
        let out = seed.kairo(&["render"]);
        assert_eq!(out.code, 0, "{}", out.stderr);
        commit_all(seed.path(), "initial", 1_700_000_000);
        git(
            seed.path(),
            &[
                "push",
                "--quiet",
                path.to_str().unwrap(),
                "HEAD:refs/heads/main",
            ],
        );
        git2::Repository::open_bare(&path)
            .unwrap()
            .set_head("refs/heads/main")
            .unwrap();
        let clone = tempfile::tempdir().unwrap();
        git2::Repository::clone(path.to_str().unwrap(), clone.path()).unwrap();
        Remote {
            _dir: dir,
            path,
            clone,
        }
    }

    fn commits(&self) -> usize {
        let repo = git2::Repository::open_bare(&self.path).unwrap();
        let mut walk = repo.revwalk().unwrap();
        walk.push_ref("refs/heads/main").unwrap();
        walk.count()
    }

    /// Every file under `clusters/staging/` on the remote's `main`, concatenated.
    fn rendered(&self) -> String {
        let repo = git2::Repository::open_bare(&self.path).unwrap();
        let tree = repo
            .find_reference("refs/heads/main")
            .unwrap()
            .peel_to_tree()
            .unwrap();
        let mut out = String::new();
        tree.walk(git2::TreeWalkMode::PreOrder, |dir, entry| {
            if dir.starts_with("clusters/staging/")
                && let Ok(blob) = entry.to_object(&repo).and_then(|o| o.peel_to_blob())
            {
                out.push_str(&String::from_utf8_lossy(blob.content()));
            }
            git2::TreeWalkResult::Ok
        })
        .unwrap();
        out
    }

    /// The message of the commit at the tip of the remote's `main`.
    fn tip_message(&self) -> String {
        let repo = git2::Repository::open_bare(&self.path).unwrap();
        let commit = repo
            .find_reference("refs/heads/main")
            .unwrap()
            .peel_to_commit()
            .unwrap();
        commit.message().unwrap().to_string()
    }

    fn file(&self, path: &str) -> String {
        let repo = git2::Repository::open_bare(&self.path).unwrap();
        let tree = repo
            .find_reference("refs/heads/main")
            .unwrap()
            .peel_to_tree()
            .unwrap();
        let entry = tree.get_path(Path::new(path)).unwrap();
        let blob = repo.find_blob(entry.id()).unwrap();
        String::from_utf8(blob.content().to_vec()).unwrap()
    }
}

fn kairo(dir: &Path) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_kairo"));
    cmd.arg("--root")
        .arg(dir)
        .env_remove("RUST_LOG")
        .env_remove("KAIRO_ROOT")
        .env_remove("KAIRO_GIT_TOKEN")
        .env_remove("KAIRO_GIT_AUTHOR_NAME")
        .env_remove("KAIRO_GIT_AUTHOR_EMAIL")
        .env_remove("KAIRO_FAILPOINT")
        .env_remove("KAIRO_FAILPOINT_RUN")
        .env_remove("KAIRO_WEBHOOK_SECRET")
        .env_remove("KAIRO_WEBHOOK_TOKEN")
        // Registry credentials only from a docker config the test writes (none by default).
        .env("DOCKER_CONFIG", dir.join(".docker-test"))
        .envs(HERMETIC_GIT.iter().copied());
    cmd
}

fn once(dir: &Path) -> crate::support::Output {
    let out = kairo(dir)
        .args(["watch", "--once", "--author", AUTHOR])
        .output()
        .unwrap();
    crate::support::Output {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8(out.stdout).unwrap(),
        stderr: String::from_utf8(out.stderr).unwrap(),
    }
}

/// A loopback registry holding `acme/web` at each (tag, created, content) of `web` and
/// `acme/worker:staging`, and a remote whose environments watch both there.
fn watched(web: &[(&str, &str, &str)]) -> (Registry, Remote) {
    let reg = Registry::start(None);
    let d1 = rt().block_on(async {
        for &(tag, created, content) in web {
            push(&reg.host, None, "acme/web", tag, created, content).await;
        }
        push(
            &reg.host,
            None,
            "acme/worker",
            "staging",
            "2026-01-01T00:00:00Z",
            "a",
        )
        .await
    });
    let remote = Remote::new(&reg.host, &reg.host, &d1);
    (reg, remote)
}

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

#[test]
fn once_commits_all_bumps_of_a_scan_in_one_commit_and_never_twice() {
    let reg = Registry::start(None);
    let rt = rt();
    let (d1, _) = rt.block_on(async {
        let d1 = push(
            &reg.host,
            None,
            "acme/worker",
            "staging",
            "2026-01-01T00:00:00Z",
            "a",
        )
        .await;
        let w = push(
            &reg.host,
            None,
            "acme/web",
            "1.0.0",
            "2026-01-01T00:00:00Z",
            "1.0.0",
        )
        .await;
        (d1, w)
    });
    let remote = Remote::new(&reg.host, &reg.host, &d1);
    let clone = remote.clone.path();

    let out = once(clone);
    assert_eq!(out.code, 0, "{}\n{}", out.stdout, out.stderr);
    assert!(out.stdout.contains("staging/web"), "{}", out.stdout);
    assert_eq!(remote.commits(), 1, "nothing new: no commit");

    // CI pushes a release and re-pushes `staging` with new content.
    let (d110, d2) = rt.block_on(async {
        let w = push(
            &reg.host,
            None,
            "acme/web",
            "1.1.0",
            "2026-01-02T00:00:00Z",
            "1.1.0",
        )
        .await;
        push(
            &reg.host,
            None,
            "acme/web",
            "2.0.0",
            "2026-01-03T00:00:00Z",
            "2.0.0",
        )
        .await;
        let d2 = push(
            &reg.host,
            None,
            "acme/worker",
            "staging",
            "2026-01-02T00:00:00Z",
            "b",
        )
        .await;
        (w, d2)
    });
    assert_ne!(d1, d2);
    // The user's uncommitted edit of the very file the bump changes.
    let env_file = clone.join("environments/staging.yaml");
    let mine = format!("{}# my note\n", std::fs::read_to_string(&env_file).unwrap());
    std::fs::write(&env_file, &mine).unwrap();
    let head = git(clone, &["rev-parse", "HEAD"]);

    let out = once(clone);
    assert_eq!(out.code, 0, "{}\n{}", out.stdout, out.stderr);
    assert_eq!(
        remote.commits(),
        2,
        "one commit for both bumps: {}",
        out.stdout
    );
    let env = remote.file("environments/staging.yaml");
    assert!(env.contains("tag: \"1.1.0\""), "{env}");
    assert!(env.contains(&d2), "{env}");
    assert!(!env.contains(&d1), "{env}");
    let rendered = remote.rendered();
    assert!(rendered.contains("1.1.0"), "{rendered}");
    assert!(rendered.contains(&d2), "{rendered}");
    assert!(!rendered.contains("2.0.0"), "outside the range");
    let _ = d110;
    // Said as `kairo bump --push` says it: the local branch was left alone, and why.
    assert!(
        out.stderr.contains(
            "note: your local branch was left as it is: `environments/staging.yaml` has uncommitted changes"
        ),
        "{}",
        out.stderr
    );
    // The user's work and branch are as they were.
    assert_eq!(std::fs::read_to_string(&env_file).unwrap(), mine);
    assert_eq!(git(clone, &["rev-parse", "HEAD"]), head);

    // Git is the state: a second run (or a second replica) finds the bumps there.
    let out = once(clone);
    assert_eq!(out.code, 0, "{}\n{}", out.stdout, out.stderr);
    assert_eq!(remote.commits(), 2);
    let fresh = tempfile::tempdir().unwrap();
    git2::Repository::clone(remote.path.to_str().unwrap(), fresh.path()).unwrap();
    let out = once(fresh.path());
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(remote.commits(), 2);
}

#[test]
fn once_reports_the_local_branch_and_another_kairo_holding_the_lock_as_bump_does() {
    let (_reg, remote) = watched(&[
        ("1.0.0", "2026-01-01T00:00:00Z", "1.0.0"),
        ("1.1.0", "2026-01-02T00:00:00Z", "1.1.0"),
    ]);
    let clone = remote.clone.path();

    // Another kairo holds the repository's lock (here: this test, by its pid).
    let lock_path = clone.join(".git/kairo.lock");
    let mut lock = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(true)
        .open(&lock_path)
        .unwrap();
    write!(lock, "{}", std::process::id()).unwrap();
    {
        use std::os::fd::AsRawFd;
        // SAFETY: flock on a file descriptor this test owns.
        let r = unsafe { libc::flock(lock.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
        assert_eq!(r, 0);
    }
    let out = once(clone);
    assert_eq!(out.code, 2, "{}\n{}", out.stdout, out.stderr);
    assert!(
        out.stderr.contains(&format!(
            "another kairo is running in this repository (pid {})",
            std::process::id()
        )),
        "{}",
        out.stderr
    );
    assert!(out.stderr.contains("hint: wait for it"), "{}", out.stderr);
    assert_eq!(remote.commits(), 1, "nothing written");
    drop(lock);

    // Lock free, local branch clean and at the remote tip: it follows the push, as after
    // `kairo bump --push`, and the JSON report says so.
    let out = kairo(clone)
        .args(["watch", "--once", "--author", AUTHOR, "--output", "json"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        report["environments"][0]["local_branch"],
        serde_json::json!({"state": "moved", "detail": "main"}),
        "{report}"
    );
    assert_eq!(remote.commits(), 2);
    assert_eq!(
        git(clone, &["rev-parse", "HEAD"]),
        git(remote.path.as_path(), &["rev-parse", "main"])
    );
}

#[test]
fn a_failing_registry_is_unavailable_never_a_bump_and_the_others_continue() {
    let reg = Registry::start(None);
    let broken = Scripted::start(|_| json(500, r#"{"errors":[{"code":"UNKNOWN"}]}"#));
    let rt = rt();
    rt.block_on(async {
        push(
            &reg.host,
            None,
            "acme/web",
            "1.0.0",
            "2026-01-01T00:00:00Z",
            "1",
        )
        .await;
        push(
            &reg.host,
            None,
            "acme/web",
            "1.2.0",
            "2026-01-02T00:00:00Z",
            "2",
        )
        .await;
    });
    let d = format!("sha256:{}", "a".repeat(64));
    let remote = Remote::new(&reg.host, &broken.host(), &d);
    let out = once(remote.clone.path());
    assert_eq!(out.code, 1, "{}\n{}", out.stdout, out.stderr);
    assert!(out.stdout.contains("unavailable (500)"), "{}", out.stdout);
    assert!(out.stderr.contains("left as it is"), "{}", out.stderr);
    assert_eq!(remote.commits(), 2, "web is still bumped");
    let env = remote.file("environments/staging.yaml");
    assert!(env.contains("tag: \"1.2.0\""), "{env}");
    assert!(env.contains(&d), "worker untouched: {env}");

    // Every registry down: no commit, exit 1.
    drop(reg);
    let out = once(remote.clone.path());
    assert_eq!(out.code, 1, "{}\n{}", out.stdout, out.stderr);
    assert_eq!(remote.commits(), 2);
}

// ---- the daemon ------------------------------------------------------------------------

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A plain HTTP/1.1 request; (status, body).
pub(crate) fn http(
    addr: &str,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> (u16, String) {
    let Ok(mut s) = TcpStream::connect(addr) else {
        return (0, String::new());
    };
    let mut req = format!(
        "{method} {path} HTTP/1.1\r\nhost: {addr}\r\nconnection: close\r\ncontent-length: {}\r\n",
        body.len()
    );
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    let _ = s.write_all(req.as_bytes());
    let _ = s.write_all(body);
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    let text = String::from_utf8_lossy(&out).to_string();
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    (status, body)
}

/// Polls `check` until it holds: a readiness signal, never a timed assertion. The bound only
/// turns a hang into a failure.
pub(crate) fn wait_for(what: &str, mut check: impl FnMut() -> bool) {
    for _ in 0..1200 {
        if check() {
            return;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    panic!("never happened: {what}");
}

/// A `kairo watch --listen` we started; killed by its pid if a test fails midway.
pub(crate) struct Daemon {
    child: Child,
    pub(crate) addr: String,
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Daemon {
    pub(crate) fn start(dir: &Path, extra: &[&str], env: &[(&str, &str)]) -> Daemon {
        Daemon::spawn(dir, extra, env, Stdio::null())
    }

    /// As `start`, with the daemon's log (stderr) written to `log`.
    pub(crate) fn start_logged(
        dir: &Path,
        extra: &[&str],
        env: &[(&str, &str)],
        log: &Path,
    ) -> Daemon {
        let file = std::fs::File::create(log).unwrap();
        Daemon::spawn(dir, extra, env, Stdio::from(file))
    }

    fn spawn(dir: &Path, extra: &[&str], env: &[(&str, &str)], stderr: Stdio) -> Daemon {
        let addr = format!("127.0.0.1:{}", free_port());
        let child = kairo(dir)
            .args([
                "watch",
                "--listen",
                &addr,
                "--interval",
                "1h",
                "--author",
                AUTHOR,
            ])
            .args(extra)
            .envs(env.iter().copied())
            .stdout(Stdio::null())
            .stderr(stderr)
            .spawn()
            .unwrap();
        let d = Daemon { child, addr };
        wait_for("/readyz answers 200", || {
            http(&d.addr, "GET", "/readyz", &[], b"").0 == 200
        });
        d
    }

    pub(crate) fn metrics(&self) -> String {
        http(&self.addr, "GET", "/metrics", &[], b"").1
    }

    /// The value of one sample line (`name{labels}`), 0 when absent.
    pub(crate) fn sample(&self, series: &str) -> f64 {
        self.metrics()
            .lines()
            .find_map(|l| l.strip_prefix(series).and_then(|v| v.trim().parse().ok()))
            .unwrap_or(0.0)
    }

    pub(crate) fn terminate(mut self) -> i32 {
        // SAFETY: kill(2) on the pid of a child we started and have not reaped.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        let status = self.child.wait().unwrap();
        status.code().unwrap_or(-1)
    }
}

fn sign(secret: &str, body: &[u8]) -> String {
    let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(body);
    let hex: String = mac
        .finalize()
        .into_bytes()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    format!("sha256={hex}")
}

pub(crate) fn promtool_check(text: &str) {
    let mut child = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("`promtool` is needed: `cargo xtask test` installs Debian's `prometheus` package");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "promtool check metrics:\n{}{}\n{text}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn daemon_webhooks_metrics_and_a_registry_going_down() {
    let rt = rt();
    let (reg, remote) = watched(&[("1.0.0", "2026-01-01T00:00:00Z", "1")]);
    let daemon = Daemon::start(
        remote.clone.path(),
        &[],
        &[("KAIRO_WEBHOOK_SECRET", "s3cret")],
    );
    let tick_ok = r#"kairo_scans_total{trigger="tick",result="ok"}"#;
    wait_for("the first scan", || daemon.sample(tick_ok) == 1.0);
    assert_eq!(remote.commits(), 1);
    assert_eq!(http(&daemon.addr, "GET", "/healthz", &[], b"").0, 200);

    rt.block_on(push(
        &reg.host,
        None,
        "acme/web",
        "1.1.0",
        "2026-01-02T00:00:00Z",
        "2",
    ));
    let body = format!(r#"{{"image": "{}/acme/web:1.1.0"}}"#, reg.host);
    let bad = sign("wrong", body.as_bytes());
    let (status, _) = http(
        &daemon.addr,
        "POST",
        "/webhook",
        &[("x-hub-signature-256", &bad)],
        body.as_bytes(),
    );
    assert_eq!(status, 401);
    let (status, _) = http(&daemon.addr, "POST", "/webhook", &[], body.as_bytes());
    assert_eq!(status, 401, "unsigned");
    let good = sign("s3cret", body.as_bytes());
    let (status, text) = http(
        &daemon.addr,
        "POST",
        "/webhook",
        &[("x-hub-signature-256", &good)],
        body.as_bytes(),
    );
    assert_eq!(status, 202, "{text}");
    let webhook_ok = r#"kairo_scans_total{trigger="webhook",result="ok"}"#;
    wait_for("the webhook's scan", || daemon.sample(webhook_ok) >= 1.0);
    let metrics = daemon.metrics();
    assert_eq!(
        daemon.sample(webhook_ok),
        1.0,
        "one scan: the unauthorized webhooks scanned nothing\n{metrics}"
    );
    assert_eq!(remote.commits(), 2);
    assert!(
        remote
            .file("environments/staging.yaml")
            .contains("tag: \"1.1.0\"")
    );
    assert_eq!(
        daemon.sample(r#"kairo_bumps_committed_total{environment="staging"}"#),
        1.0,
        "{metrics}"
    );
    assert_eq!(
        daemon.sample(r#"kairo_webhooks_total{result="rejected",reason="auth"}"#),
        2.0,
        "{metrics}"
    );
    assert!(
        metrics.contains(&format!(
            r#"kairo_image_last_success_timestamp_seconds{{image="{}/acme/web"}}"#,
            reg.host
        )),
        "{metrics}"
    );
    assert!(
        metrics.contains("kairo_scan_duration_seconds_bucket"),
        "{metrics}"
    );
    promtool_check(&metrics);

    // The registry goes away: the daemon keeps running and says so.
    let host = reg.host.clone();
    drop(reg);
    let (status, _) = http(
        &daemon.addr,
        "POST",
        "/webhook",
        &[("x-hub-signature-256", &good)],
        body.as_bytes(),
    );
    assert_eq!(status, 202);
    let partial = r#"kairo_scans_total{trigger="webhook",result="partial"}"#;
    wait_for("the failing scan", || daemon.sample(partial) == 1.0);
    let metrics = daemon.metrics();
    let errors = format!(r#"kairo_registry_errors_total{{registry="{host}",code="transport"}}"#);
    assert_eq!(daemon.sample(&errors), 1.0, "{metrics}");
    assert_eq!(remote.commits(), 2, "no commit, no revert");
    assert_eq!(http(&daemon.addr, "GET", "/healthz", &[], b"").0, 200);
    promtool_check(&metrics);
    assert_eq!(daemon.terminate(), 0);
}

#[test]
fn webhooks_that_scan_nothing_are_counted_by_reason_not_as_scans() {
    let (reg, remote) = watched(&[("1.0.0", "2026-01-01T00:00:00Z", "1")]);
    let daemon = Daemon::start(
        remote.clone.path(),
        &[],
        &[("KAIRO_WEBHOOK_SECRET", "s3cret")],
    );
    wait_for("the first scan", || {
        daemon.sample(r#"kairo_scans_total{trigger="tick",result="ok"}"#) == 1.0
    });
    let post = |body: &[u8]| {
        let sig = sign("s3cret", body);
        http(
            &daemon.addr,
            "POST",
            "/webhook",
            &[("x-hub-signature-256", &sig)],
            body,
        )
    };
    let webhooks = |result: &str, reason: &str| {
        daemon.sample(&format!(
            r#"kairo_webhooks_total{{result="{result}",reason="{reason}"}}"#
        ))
    };

    // An image no service watches: answered, counted as ignored, and no scan.
    let (status, text) = post(format!(r#"{{"image": "{}/acme/other:1.0"}}"#, reg.host).as_bytes());
    assert_eq!(status, 202, "{text}");
    assert!(
        text.contains("ignored") && text.contains("acme/other"),
        "{text}"
    );
    assert_eq!(
        webhooks("ignored", "unwatched"),
        1.0,
        "{}",
        daemon.metrics()
    );

    // An oversized body: a 413 the sender can read, counted.
    let (status, text) = post(&vec![b' '; (1 << 20) + 1]);
    assert_eq!(status, 413, "{text}");
    assert_eq!(
        webhooks("rejected", "too_large"),
        1.0,
        "{}",
        daemon.metrics()
    );

    // A signed body that is no push event.
    let (status, _) = post(b"not json");
    assert_eq!(status, 400);
    assert_eq!(
        webhooks("rejected", "malformed"),
        1.0,
        "{}",
        daemon.metrics()
    );

    // A watched image still scans; only that webhook became a scan.
    let (status, text) = post(format!(r#"{{"image": "{}/acme/web:1.0.0"}}"#, reg.host).as_bytes());
    assert_eq!(status, 202, "{text}");
    assert_eq!(webhooks("accepted", "scan"), 1.0);
    let webhook_scans = r#"kairo_scans_total{trigger="webhook",result="ok"}"#;
    wait_for("the webhook's scan", || daemon.sample(webhook_scans) >= 1.0);
    let metrics = daemon.metrics();
    assert_eq!(daemon.sample(webhook_scans), 1.0, "{metrics}");
    promtool_check(&metrics);
    assert_eq!(daemon.terminate(), 0);
}

#[test]
fn lookups_skipped_during_a_rate_limit_pause_are_not_registry_errors() {
    // Every request is refused with a long Retry-After; one lookup at a time, so the first
    // gets the 429 and the second finds the registry paused and sends nothing.
    let limited = Scripted::start(|_| {
        Answer::Full(429, vec![("retry-after".into(), "3600".into())], Vec::new())
    });
    let host = limited.host();
    let d = format!("sha256:{}", "a".repeat(64));
    let remote = Remote::new(&host, &host, &d);
    let daemon = Daemon::start(remote.clone.path(), &["--concurrency", "1"], &[]);
    wait_for("the first scan", || {
        daemon.sample(r#"kairo_scans_total{trigger="tick",result="partial"}"#) == 1.0
    });
    let metrics = daemon.metrics();
    assert_eq!(limited.requests().len(), 1, "{metrics}");
    assert_eq!(
        daemon.sample(&format!(
            r#"kairo_registry_errors_total{{registry="{host}",code="429"}}"#
        )),
        1.0,
        "{metrics}"
    );
    assert_eq!(
        daemon.sample(&format!(
            r#"kairo_registry_skipped_total{{registry="{host}",reason="rate_limit_pause"}}"#
        )),
        1.0,
        "{metrics}"
    );
    assert!(!metrics.contains(r#"code="paused""#), "{metrics}");
    promtool_check(&metrics);
    assert_eq!(daemon.terminate(), 0);
}

#[test]
fn sigterm_during_a_push_finishes_the_push() {
    let reg = Registry::start(None);
    let rt = rt();
    let d1 = rt.block_on(async {
        push(
            &reg.host,
            None,
            "acme/worker",
            "staging",
            "2026-01-01T00:00:00Z",
            "a",
        )
        .await;
        push(
            &reg.host,
            None,
            "acme/web",
            "1.0.0",
            "2026-01-01T00:00:00Z",
            "1",
        )
        .await;
        push(
            &reg.host,
            None,
            "acme/web",
            "1.3.0",
            "2026-01-02T00:00:00Z",
            "3",
        )
        .await;
        push(
            &reg.host,
            None,
            "acme/worker",
            "staging",
            "2026-01-01T00:00:00Z",
            "a",
        )
        .await
    });
    let remote = Remote::new(&reg.host, &reg.host, &d1);
    // SIGTERM reaches kairo between its commit and its push (`$PPID` of the fail point's
    // shell is kairo): the push must still happen, then kairo exits 0.
    let out = kairo(remote.clone.path())
        .args([
            "watch",
            "--listen",
            &format!("127.0.0.1:{}", free_port()),
            "--interval",
            "1h",
            "--author",
            AUTHOR,
        ])
        .env("KAIRO_FAILPOINT_RUN", "before-push:kill -TERM $PPID")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert!(stderr.contains("shutting down"), "{stderr}");
    assert_eq!(remote.commits(), 2, "{stderr}");
    assert!(
        remote
            .file("environments/staging.yaml")
            .contains("tag: \"1.3.0\"")
    );
}

#[test]
fn a_rejected_push_is_requeued_so_sigterm_is_not_stuck_behind_retries() {
    let (_reg, remote) = watched(&[
        ("1.0.0", "2026-01-01T00:00:00Z", "1.0.0"),
        ("1.3.0", "2026-01-02T00:00:00Z", "1.3.0"),
    ]);
    // Before each of kairo's pushes, another writer lands a commit first, so every push is
    // rejected; at the second, kairo (`$PPID` of the fail point's shell) gets SIGTERM. With a
    // retry budget of an hour, a writer sleeping through its retries would not stop.
    let other = tempfile::tempdir().unwrap();
    git2::Repository::clone(remote.path.to_str().unwrap(), other.path()).unwrap();
    let count = other.path().join("count");
    let metrics = other.path().join("metrics");
    let port = free_port();
    // At the second push, after one requeue, the retry is already counted in /metrics.
    let script = format!(
        "cd '{dir}' && git -c user.name=o -c user.email=o@o commit -q --allow-empty -m race && git push -q origin HEAD:main && n=$(($(cat '{count}' 2>/dev/null || echo 0) + 1)) && echo $n > '{count}' && if [ $n -eq 2 ]; then python3 -c 'import urllib.request,sys; sys.stdout.write(urllib.request.urlopen(\"http://127.0.0.1:{port}/metrics\").read().decode())' > '{metrics}'; kill -TERM $PPID; fi",
        dir = other.path().display(),
        count = count.display(),
        metrics = metrics.display(),
    );
    let mut child = kairo(remote.clone.path())
        .args([
            "watch",
            "--listen",
            &format!("127.0.0.1:{port}"),
            "--interval",
            "1h",
            "--retry-timeout",
            "1h",
            "--author",
            AUTHOR,
        ])
        .env("KAIRO_FAILPOINT_RUN", format!("before-push:{script}"))
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut status = None;
    wait_for("kairo exits after SIGTERM", || {
        status = child.try_wait().unwrap();
        status.is_some()
    });
    let mut stderr = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut stderr)
        .unwrap();
    assert_eq!(status.unwrap().code(), Some(0), "{stderr}");
    assert!(stderr.contains("write requeued"), "{stderr}");
    assert!(stderr.contains("shutting down"), "{stderr}");
    // A lost race is a warning while it is retried, and counted as it happens.
    assert!(stderr.contains("bumps not written yet"), "{stderr}");
    assert!(!stderr.contains("ERROR"), "{stderr}");
    let scraped = std::fs::read_to_string(&metrics).expect("scraped while retrying");
    assert!(
        scraped.contains("kairo_push_retries_total 1\n"),
        "{scraped}"
    );
    // Nothing of kairo's landed: the requeued write was left to the next run.
    assert!(
        remote
            .file("environments/staging.yaml")
            .contains("tag: \"1.0.0\""),
        "{stderr}"
    );
}

#[test]
fn with_leader_election_only_the_holder_scans_and_a_follower_takes_over() {
    let rt = rt();
    let (reg, remote) = watched(&[("1.0.0", "2026-01-01T00:00:00Z", "1")]);
    let second = tempfile::tempdir().unwrap();
    git2::Repository::clone(remote.path.to_str().unwrap(), second.path()).unwrap();
    let api = crate::lease_support::FakeApi::start();
    let kube_dir = tempfile::tempdir().unwrap();
    let kubeconfig = api.kubeconfig(kube_dir.path());
    let kubeconfig = kubeconfig.to_str().unwrap();
    let replica = |dir: &Path, id: &str| {
        Daemon::start(
            dir,
            &[
                "--leader-elect",
                "--lease-duration",
                "2s",
                "--lease-identity",
                id,
            ],
            &[("KUBECONFIG", kubeconfig), ("KAIRO_WEBHOOK_TOKEN", "tok")],
        )
    };
    let a = replica(remote.clone.path(), "a");
    wait_for("a leads", || a.sample("kairo_leader ") == 1.0);
    let b = replica(second.path(), "b");
    assert_eq!(api.holder("gitops", "kairo-watch").as_deref(), Some("a"));
    wait_for("a scans", || {
        a.sample(r#"kairo_scans_total{trigger="tick",result="ok"}"#) >= 1.0
    });
    // A follower answers webhooks with 503 and scans nothing.
    let body = format!(r#"{{"image": "{}/acme/web"}}"#, reg.host);
    let (status, _) = http(
        &b.addr,
        "POST",
        "/webhook",
        &[("authorization", "Bearer tok")],
        body.as_bytes(),
    );
    assert_eq!(status, 503);
    assert_eq!(b.sample("kairo_leader "), 0.0);
    assert!(
        !b.metrics().contains("kairo_scans_total{"),
        "{}",
        b.metrics()
    );

    // `a` dies without giving the Lease up: `b` takes over once it has seen no renewal for a
    // whole lease duration.
    drop(a);
    wait_for("b leads", || b.sample("kairo_leader ") == 1.0);
    assert_eq!(api.holder("gitops", "kairo-watch").as_deref(), Some("b"));
    rt.block_on(push(
        &reg.host,
        None,
        "acme/web",
        "1.1.0",
        "2026-01-02T00:00:00Z",
        "2",
    ));
    let (status, _) = http(
        &b.addr,
        "POST",
        "/webhook",
        &[("authorization", "Bearer tok")],
        body.as_bytes(),
    );
    assert_eq!(status, 202);
    wait_for("b's webhook scan", || {
        b.sample(r#"kairo_scans_total{trigger="webhook",result="ok"}"#) == 1.0
    });
    assert_eq!(remote.commits(), 2);
    // SIGTERM gives the Lease up for the next replica.
    assert_eq!(b.terminate(), 0);
    assert_eq!(api.holder("gitops", "kairo-watch"), None);
}

/// `--leader-elect` resolves `KUBECONFIG` as `kairo drift` and kubectl do: a file of the list
/// that does not exist is skipped, not fatal.
#[test]
fn leader_election_skips_a_missing_kubeconfig_file_as_kubectl_does() {
    let (_reg, remote) = watched(&[("1.0.0", "2026-01-01T00:00:00Z", "1")]);
    let api = crate::lease_support::FakeApi::start();
    let kube_dir = tempfile::tempdir().unwrap();
    let real = api.kubeconfig(kube_dir.path());
    let missing = kube_dir.path().join("gone");
    let list = std::env::join_paths([missing.as_path(), real.as_path()]).unwrap();
    let daemon = Daemon::start(
        remote.clone.path(),
        &["--leader-elect", "--lease-identity", "a"],
        &[("KUBECONFIG", list.to_str().unwrap())],
    );
    wait_for("a leads", || daemon.sample("kairo_leader ") == 1.0);
    assert_eq!(api.holder("gitops", "kairo-watch").as_deref(), Some("a"));
    assert_eq!(daemon.terminate(), 0);
}

/// A leader whose API server stops answering (accepts, never replies) steps down once it has
/// not renewed for a lease duration, as a follower may take over by then; SIGTERM still ends
/// it (giving the Lease up is bounded too).
#[test]
fn a_leader_whose_api_server_hangs_steps_down_in_time() {
    let (_reg, remote) = watched(&[("1.0.0", "2026-01-01T00:00:00Z", "1")]);
    let api = crate::lease_support::FakeApi::start();
    let kube_dir = tempfile::tempdir().unwrap();
    let kubeconfig = api.kubeconfig(kube_dir.path());
    let daemon = Daemon::start(
        remote.clone.path(),
        &[
            "--leader-elect",
            "--lease-duration",
            "2s",
            "--lease-identity",
            "a",
        ],
        &[("KUBECONFIG", kubeconfig.to_str().unwrap())],
    );
    wait_for("a leads", || daemon.sample("kairo_leader ") == 1.0);
    api.stall();
    wait_for("a steps down", || daemon.sample("kairo_leader ") == 0.0);
    assert_eq!(daemon.terminate(), 0);
}

/// A `--drift-env` that names no environment is a usage error at start (exit 2, the
/// environments listed), as `kairo drift --env` says it, not an error counted at every check.
#[test]
fn an_unknown_drift_env_is_refused_at_start() {
    let (_reg, remote) = watched(&[("1.0.0", "2026-01-01T00:00:00Z", "1")]);
    let api = crate::lease_support::FakeApi::start();
    let kube_dir = tempfile::tempdir().unwrap();
    let kubeconfig = api.kubeconfig(kube_dir.path());
    let child = kairo(remote.clone.path())
        .args([
            "watch",
            "--listen",
            &format!("127.0.0.1:{}", free_port()),
            "--interval",
            "1h",
            "--author",
            AUTHOR,
            "--drift-interval",
            "1h",
            "--drift-env",
            "staging",
            "--drift-env",
            "prod",
        ])
        .env("KUBECONFIG", &kubeconfig)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut daemon = Daemon {
        child,
        addr: String::new(),
    };
    let mut status = None;
    wait_for("kairo exits", || {
        status = daemon.child.try_wait().unwrap();
        status.is_some()
    });
    let mut stderr = String::new();
    daemon
        .child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut stderr)
        .unwrap();
    assert_eq!(status.unwrap().code(), Some(2), "{stderr}");
    assert!(
        stderr.contains(
            "error: `--drift-env`: unknown environment `prod`\n  hint: environments: `staging`"
        ),
        "{stderr}"
    );
    assert_eq!(remote.commits(), 1);
}

/// The manifests in deploy/ are valid YAML, each object has what the API server requires, and
/// the only cluster permission is the Lease.
#[test]
fn deploy_manifests_parse() {
    let dir = crate::support::manifest_dir().join("deploy");
    let mut kinds = Vec::new();
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_none_or(|e| e != "yaml") {
            continue;
        }
        let text = std::fs::read_to_string(&path).unwrap();
        let docs: Vec<serde_json::Value> = serde_saphyr::from_multiple(&text)
            .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        for d in docs {
            let kind = d["kind"]
                .as_str()
                .unwrap_or_else(|| panic!("{}: no kind", path.display()));
            assert!(d["apiVersion"].is_string(), "{}", path.display());
            if kind != "Kustomization" {
                assert!(d["metadata"]["name"].is_string(), "{}", path.display());
            }
            if kind == "Role" {
                for rule in d["rules"].as_array().unwrap() {
                    assert_eq!(
                        rule["apiGroups"],
                        serde_json::json!(["coordination.k8s.io"])
                    );
                    assert_eq!(rule["resources"], serde_json::json!(["leases"]));
                }
            }
            // The optional read access for `--drift-interval`: read verbs only, on what
            // `kairo drift` lists, bound to the daemon's ServiceAccount.
            if kind == "ClusterRole" {
                let mut read = Vec::new();
                for rule in d["rules"].as_array().unwrap() {
                    assert_eq!(
                        rule["verbs"],
                        serde_json::json!(["get", "list", "watch"]),
                        "{}",
                        path.display()
                    );
                    for r in rule["resources"].as_array().unwrap() {
                        read.push(format!(
                            "{}.{}",
                            r.as_str().unwrap(),
                            rule["apiGroups"][0].as_str().unwrap()
                        ));
                    }
                }
                read.sort();
                assert_eq!(
                    read,
                    [
                        "deployments.apps",
                        "helmreleases.helm.toolkit.fluxcd.io",
                        "horizontalpodautoscalers.autoscaling",
                        "statefulsets.apps"
                    ]
                );
            }
            if kind == "ClusterRoleBinding" {
                assert_eq!(d["roleRef"]["name"], "kairo-watch-drift-read");
                assert_eq!(
                    d["subjects"],
                    serde_json::json!([{"kind": "ServiceAccount", "name": "kairo-watch", "namespace": "gitops"}])
                );
            }
            kinds.push(kind.to_string());
        }
    }
    kinds.sort();
    assert_eq!(
        kinds,
        [
            "ClusterRole",
            "ClusterRoleBinding",
            "Deployment",
            "Kustomization",
            "Role",
            "RoleBinding",
            "Service",
            "ServiceAccount"
        ]
    );
    // The drift read access is opt-in: `kubectl apply -k deploy/` does not grant it.
    let kustomization = std::fs::read_to_string(dir.join("kustomization.yaml")).unwrap();
    assert!(
        !kustomization.contains("drift-rbac.yaml"),
        "{kustomization}"
    );
}

/// A token server for `docker-registry`'s `auth: token`: it checks docker's Basic credentials
/// and answers with an RS256 JWT signed by a key whose certificate the registry trusts
/// (`rootcertbundle`), carrying the certificate in `x5c` as the registry expects.
struct TokenServer {
    server: Scripted,
    _dir: tempfile::TempDir,
    cert: PathBuf,
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && let Some(Ok(b)) = s.get(i + 1..i + 3).map(|h| u8::from_str_radix(h, 16))
        {
            out.push(b);
            i += 3;
            continue;
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8(out).unwrap()
}

impl TokenServer {
    fn start(user: &'static str, password: &'static str) -> TokenServer {
        use base64::Engine;
        let dir = tempfile::tempdir().unwrap();
        let (key, cert) = (dir.path().join("key.pem"), dir.path().join("cert.pem"));
        let out = Command::new("openssl")
            .args([
                "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
            ])
            .args(["-subj", "/CN=kairo-test-token-issuer", "-keyout"])
            .arg(&key)
            .arg("-out")
            .arg(&cert)
            .output()
            .expect("openssl");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let der = Command::new("openssl")
            .args(["x509", "-outform", "DER", "-in"])
            .arg(&cert)
            .output()
            .unwrap()
            .stdout;
        let x5c = base64::engine::general_purpose::STANDARD.encode(der);
        let basic = format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"))
        );
        let server = Scripted::start(move |seen| {
            if seen.header("authorization") != Some(basic.as_str()) {
                return json(401, r#"{"errors":[{"code":"UNAUTHORIZED"}]}"#);
            }
            let query = seen.target.split_once('?').map_or("", |(_, q)| q);
            let access: Vec<serde_json::Value> = query
                .split('&')
                .filter_map(|kv| kv.strip_prefix("scope="))
                .map(percent_decode)
                .filter_map(|scope| {
                    let mut parts = scope.splitn(3, ':');
                    let (t, name, actions) = (parts.next()?, parts.next()?, parts.next()?);
                    Some(serde_json::json!({"type": t, "name": name, "actions": actions.split(',').collect::<Vec<_>>()}))
                })
                .collect();
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_secs();
            let b64 = |v: &serde_json::Value| {
                base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v.to_string())
            };
            let header = serde_json::json!({"typ": "JWT", "alg": "RS256", "x5c": [x5c]});
            let claims = serde_json::json!({
                "iss": "kairo-test-issuer", "sub": user, "aud": "kairo-test",
                "exp": now + 300, "nbf": now - 10, "iat": now, "jti": format!("{now}-{}", access.len()),
                "access": access,
            });
            let input = format!("{}.{}", b64(&header), b64(&claims));
            let mut sign = Command::new("openssl")
                .args(["dgst", "-sha256", "-sign"])
                .arg(&key)
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .spawn()
                .unwrap();
            sign.stdin
                .take()
                .unwrap()
                .write_all(input.as_bytes())
                .unwrap();
            let signature = sign.wait_with_output().unwrap().stdout;
            let jwt = format!(
                "{input}.{}",
                base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(signature)
            );
            json(
                200,
                &serde_json::json!({"token": jwt, "expires_in": 300}).to_string(),
            )
        });
        TokenServer {
            server,
            _dir: dir,
            cert,
        }
    }

    fn auth_yaml(&self) -> String {
        format!(
            "auth:\n  token:\n    realm: http://{}/token\n    service: kairo-test\n    issuer: kairo-test-issuer\n    rootcertbundle: {}\n",
            self.server.host(),
            self.cert.display()
        )
    }
}

#[test]
fn once_through_bearer_token_auth_of_a_real_registry() {
    let reg = Registry::start(None);
    let rt = rt();
    let d1 = rt.block_on(async {
        push(
            &reg.host,
            None,
            "acme/web",
            "1.0.0",
            "2026-01-01T00:00:00Z",
            "1",
        )
        .await;
        push(
            &reg.host,
            None,
            "acme/web",
            "1.4.0",
            "2026-01-02T00:00:00Z",
            "4",
        )
        .await;
        push(
            &reg.host,
            None,
            "acme/worker",
            "staging",
            "2026-01-01T00:00:00Z",
            "a",
        )
        .await
    });
    // The same images, now behind token auth.
    let tokens = TokenServer::start("bot", "pa55");
    let reg = reg.restart_with_auth(&tokens.auth_yaml());
    let remote = Remote::new(&reg.host, &reg.host, &d1);
    let clone = remote.clone.path();
    // Without credentials: the registry refuses, the image is unavailable, nothing changes.
    let out = once(clone);
    assert_eq!(out.code, 1, "{}\n{}", out.stdout, out.stderr);
    assert_eq!(remote.commits(), 1);
    crate::registry_support::docker_config(&clone.join(".docker-test"), &reg.host, "bot", "pa55");
    let out = once(clone);
    assert_eq!(out.code, 0, "{}\n{}", out.stdout, out.stderr);
    assert_eq!(remote.commits(), 2);
    assert!(
        remote
            .file("environments/staging.yaml")
            .contains("tag: \"1.4.0\"")
    );
    let asked: Vec<String> = tokens
        .server
        .requests()
        .iter()
        .map(|r| r.target.clone())
        .collect();
    assert!(
        asked
            .iter()
            .any(|t| percent_decode(t).contains("scope=repository:acme/web:pull")),
        "{asked:?}"
    );
}

/// A client that opens a connection and never finishes its request (slowloris) is cut off:
/// headers that never end close the connection, a body that never ends is answered 408, and
/// the daemon keeps answering everyone else throughout. This one runs the binary with its real
/// 10 s deadlines; the daemon's unit tests drive the same server with short ones (and the
/// bound on connections).
#[test]
fn requests_that_never_finish_are_cut_off() {
    let (_reg, remote) = watched(&[("1.0.0", "2026-01-01T00:00:00Z", "1")]);
    let daemon = Daemon::start(
        remote.clone.path(),
        &[],
        &[("KAIRO_WEBHOOK_SECRET", "s3cret")],
    );
    assert_eq!(http(&daemon.addr, "GET", "/healthz", &[], b"").0, 200);
    let open = |first: &[u8]| {
        let mut c = TcpStream::connect(&daemon.addr).unwrap();
        // Only so that a server that never cuts the client off fails the test instead of
        // hanging it; the server's own deadline is far shorter.
        c.set_read_timeout(Some(std::time::Duration::from_secs(120)))
            .unwrap();
        c.write_all(first).unwrap();
        c
    };
    let answer = |mut c: TcpStream| {
        let mut buf = Vec::new();
        let read = c.read_to_end(&mut buf);
        assert!(read.is_ok(), "the server closed the connection: {read:?}");
        String::from_utf8_lossy(&buf).into_owned()
    };
    let headers = open(b"POST /webhook HTTP/1.1\r\nHost: x\r\nX-Slow: ");
    let body = open(b"POST /webhook HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\n{");
    // Meanwhile, everyone else is answered.
    assert_eq!(http(&daemon.addr, "GET", "/healthz", &[], b"").0, 200);
    let text = answer(body);
    assert!(text.starts_with("HTTP/1.1 408"), "{text}");
    answer(headers);
    assert_eq!(
        daemon.sample(r#"kairo_webhooks_total{result="rejected",reason="too_slow"}"#),
        1.0
    );
    wait_for("the cut-off headers counted", || {
        daemon.sample(r#"kairo_http_connections_closed_total{reason="header_timeout"}"#) == 1.0
    });
    assert_eq!(http(&daemon.addr, "GET", "/healthz", &[], b"").0, 200);
    promtool_check(&daemon.metrics());
}

/// A policy in `policies/` that refuses one release of `web`.
const RECALL: &str = r#"package main

import rego.v1

deny contains msg if {
	input.kind == "HelmRelease"
	input.spec.values.image.tag == "1.1.0"
	msg := sprintf("%s runs 1.1.0, which is recalled", [input.metadata.name])
}
"#;

/// A bump that a policy denies names the rule, the policy file and the object it denied, in
/// `watch --once`'s report (as `kairo bump` reports it) and in the daemon's log; nothing is
/// written.
#[test]
fn a_policy_denial_names_the_rule_the_policy_file_and_the_object() {
    let reg = Registry::start(None);
    let d1 = rt().block_on(async {
        for (tag, created) in [
            ("1.0.0", "2026-01-01T00:00:00Z"),
            ("1.1.0", "2026-01-02T00:00:00Z"),
        ] {
            push(&reg.host, None, "acme/web", tag, created, tag).await;
        }
        push(
            &reg.host,
            None,
            "acme/worker",
            "staging",
            "2026-01-01T00:00:00Z",
            "a",
        )
        .await
    });
    let remote = Remote::with(
        &reg.host,
        &reg.host,
        &d1,
        &[("policies/recall.rego", RECALL)],
    );
    let clone = remote.clone.path();
    let out = once(clone);
    assert_eq!(out.code, 1, "{}\n{}", out.stdout, out.stderr);
    assert!(
        out.stderr.contains(
            "deny: staging: HelmRelease acme-staging/web: web runs 1.1.0, which is recalled\n  --> policies/recall.rego (rule `deny`), clusters/staging/"
        ),
        "{}",
        out.stderr
    );
    assert!(
        out.stderr
            .contains("error: policies deny the bumps in `staging`; nothing was written"),
        "{}",
        out.stderr
    );
    assert!(
        out.stdout.contains("staging: not written"),
        "{}",
        out.stdout
    );
    assert_eq!(remote.commits(), 1);

    let json = kairo(clone)
        .args(["watch", "--once", "--author", AUTHOR, "--output", "json"])
        .output()
        .unwrap();
    assert_eq!(json.status.code(), Some(1));
    let report: serde_json::Value = serde_json::from_slice(&json.stdout).unwrap();
    let finding = &report["environments"][0]["findings"][0];
    assert_eq!(finding["policy"], "policies/recall.rego", "{report}");
    assert_eq!(finding["rule"], "deny", "{report}");
    assert_eq!(
        finding["object"], "HelmRelease acme-staging/web",
        "{report}"
    );

    let log = tempfile::tempdir().unwrap();
    let log = log.path().join("daemon.log");
    let daemon = Daemon::start_logged(clone, &["--log-format", "json"], &[], &log);
    wait_for("the denied scan", || {
        daemon.sample(r#"kairo_push_failures_total{environment="staging"}"#) == 1.0
    });
    assert_eq!(daemon.terminate(), 0);
    let text = std::fs::read_to_string(&log).unwrap();
    let denial = text
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .find(|l| l["fields"]["message"] == "a policy denies the bumps")
        .unwrap_or_else(|| panic!("no denial in the log:\n{text}"));
    let fields = &denial["fields"];
    assert_eq!(fields["rule"], "deny", "{denial}");
    assert_eq!(fields["policy"], "policies/recall.rego", "{denial}");
    assert_eq!(fields["object"], "HelmRelease acme-staging/web", "{denial}");
    assert_eq!(fields["environment"], "staging", "{denial}");
    assert_eq!(
        fields["reason"], "web runs 1.1.0, which is recalled",
        "{denial}"
    );
    assert_eq!(remote.commits(), 1);
}

/// A digest bump (a new digest under the followed tag) names tag and digest in its commit
/// (short in the subject, whole in the body, as `kairo bump SVC=TAG@DIGEST` writes them) and
/// in `watch --once`'s report.
#[test]
fn a_digest_bump_names_tag_and_digest_in_its_commit_and_report() {
    let (reg, remote) = watched(&[("1.0.0", "2026-01-01T00:00:00Z", "1.0.0")]);
    let d1 = remote
        .file("environments/staging.yaml")
        .split("digest: \"")
        .nth(1)
        .and_then(|r| r.split('"').next())
        .unwrap()
        .to_string();
    let d2 = rt().block_on(push(
        &reg.host,
        None,
        "acme/worker",
        "staging",
        "2026-01-02T00:00:00Z",
        "b",
    ));
    assert_ne!(d1, d2);
    let out = once(remote.clone.path());
    assert_eq!(out.code, 0, "{}\n{}", out.stdout, out.stderr);
    assert!(
        out.stdout.contains(&format!(
            "staging/worker {}/acme/worker: staging@{d1} -> staging@{d2}",
            reg.host
        )),
        "{}",
        out.stdout
    );
    assert_eq!(remote.commits(), 2);
    let message = remote.tip_message();
    let (subject, body) = message.split_once("\n\n").unwrap();
    assert_eq!(
        subject,
        format!("chore(staging): bump worker to staging@{}", &d2[..19])
    );
    assert!(
        body.starts_with(&format!("worker staging@{d1} -> staging@{d2}\n")),
        "{message}"
    );

    // `kairo bump` writes the same message for the same change.
    let d3 = format!("sha256:{}", "c".repeat(64));
    let out = kairo(remote.clone.path())
        .args(["bump", "--env", "staging", "--push", "--author", AUTHOR])
        .arg(format!("worker=staging@{d3}"))
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let message = remote.tip_message();
    assert!(
        message.starts_with(&format!(
            "chore(staging): bump worker to staging@sha256:cccccccccccc\n\nworker staging@{d2} -> staging@{d3}\n"
        )),
        "{message}"
    );
}

/// A write requeued after a rejected push and then pushed: the daemon's "bumps written" log
/// counts every attempt (2), not only the last one.
#[test]
fn the_daemon_logs_every_attempt_of_a_requeued_write() {
    let (_reg, remote) = watched(&[
        ("1.0.0", "2026-01-01T00:00:00Z", "1.0.0"),
        ("1.3.0", "2026-01-02T00:00:00Z", "1.3.0"),
    ]);
    // Before kairo's first push only, another writer lands a commit: that push is rejected.
    let other = tempfile::tempdir().unwrap();
    git2::Repository::clone(remote.path.to_str().unwrap(), other.path()).unwrap();
    let count = other.path().join("count");
    let script = format!(
        "n=$(($(cat '{count}' 2>/dev/null || echo 0) + 1)) && echo $n > '{count}' && if [ $n -eq 1 ]; then cd '{dir}' && git -c user.name=o -c user.email=o@o commit -q --allow-empty -m race && git push -q origin HEAD:main; fi",
        dir = other.path().display(),
        count = count.display(),
    );
    let log = other.path().join("kairo.log");
    let _d = Daemon::start_logged(
        remote.clone.path(),
        &["--retry-timeout", "1h"],
        &[("KAIRO_FAILPOINT_RUN", &format!("before-push:{script}"))],
        &log,
    );
    wait_for("the bumps are written", || {
        std::fs::read_to_string(&log).is_ok_and(|l| l.contains("bumps written"))
    });
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(text.contains("write requeued"), "{text}");
    let line = text.lines().find(|l| l.contains("bumps written")).unwrap();
    assert!(line.contains("attempts=2"), "{line}");
}
