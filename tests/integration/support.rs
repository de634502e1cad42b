//! A throwaway repository on disk and a way to run the real `kairo` binary against it.

use std::path::{Path, PathBuf};
use std::process::Command;

pub const CATALOG: &str = r#"apiVersion: kairo.dev/v1alpha1
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
      chart: {version: ">=1.0.0", source: charts}
      image: {repository: ghcr.io/acme/web}
      resources:
        requests: {cpu: 200m, memory: 512Mi}
        limits: {cpu: 1000m, memory: 2Gi}
      autoscaling: true
    worker:
      chart: {version: "~2.1", source: charts}
      image: {repository: ghcr.io/acme/worker}
      resources:
        requests: {cpu: 500m, memory: 1Gi}
      gpu: {count: 1, class: L40S}
"#;

pub const STAGING: &str = r#"apiVersion: kairo.dev/v1alpha1
kind: Environment
metadata:
  name: staging
spec:
  namespace: acme-staging
  branch: staging
  cluster: acme-staging
  defaults:
    replicas: 2
    hpa: {minReplicas: 2, maxReplicas: 4}
    pdb: {minAvailable: 1}
  services:
    web:
      image: {tag: "1.0.0"}
"#;

pub struct Repo {
    pub dir: tempfile::TempDir,
}

pub struct Output {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

pub fn manifest_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

impl Repo {
    /// An empty repository with the project's own templates.
    pub fn new() -> Repo {
        let repo = Repo {
            dir: tempfile::tempdir().expect("tempdir"),
        };
        copy_dir(
            &manifest_dir().join("templates"),
            &repo.path().join("templates"),
        );
        std::fs::create_dir_all(repo.path().join("environments")).unwrap();
        repo
    }

    /// The small two-service catalog and a staging environment.
    pub fn with_staging() -> Repo {
        let repo = Repo::new();
        repo.write("environments/services.yaml", CATALOG);
        repo.write("environments/staging.yaml", STAGING);
        repo
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    pub fn write(&self, rel: &str, text: &str) {
        let path = self.path().join(rel);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, text).unwrap();
    }

    pub fn read(&self, rel: &str) -> String {
        std::fs::read_to_string(self.path().join(rel)).unwrap_or_else(|e| panic!("{rel}: {e}"))
    }

    pub fn exists(&self, rel: &str) -> bool {
        self.path().join(rel).exists()
    }

    pub fn kairo(&self, args: &[&str]) -> Output {
        run_kairo(self.path(), args)
    }
}

pub fn run_kairo(root: &Path, args: &[&str]) -> Output {
    run_kairo_with_env(root, args, &[])
}

/// Runs kairo with extra environment variables.
pub fn run_kairo_with_env(root: &Path, args: &[&str], env: &[(&str, &str)]) -> Output {
    let out = Command::new(env!("CARGO_BIN_EXE_kairo"))
        .args(args)
        .arg("--root")
        .arg(root)
        .env_remove("RUST_LOG")
        .env_remove("KAIRO_ROOT")
        .env_remove("KAIRO_GIT_TOKEN")
        .env_remove("KAIRO_GIT_AUTHOR_NAME")
        .env_remove("KAIRO_GIT_AUTHOR_EMAIL")
        .env_remove("KAIRO_FAILPOINT")
        .env_remove("KAIRO_FAILPOINT_RUN")
        .envs(HERMETIC_GIT.iter().copied())
        .envs(env.iter().copied())
        .output()
        .expect("run kairo");
    Output {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8(out.stdout).unwrap(),
        stderr: String::from_utf8(out.stderr).unwrap(),
    }
}

/// No global or system git configuration reaches the tests' `git` and `kairo` processes, and
/// what they put in a temporary directory (kairo's lock outside a repository) stays in cargo's
/// scratch directory for tests, not the machine's `/tmp`.
pub const HERMETIC_GIT: [(&str, &str); 4] = [
    ("GIT_CONFIG_GLOBAL", "/dev/null"),
    ("GIT_CONFIG_NOSYSTEM", "1"),
    ("GIT_TERMINAL_PROMPT", "0"),
    ("TMPDIR", env!("CARGO_TARGET_TMPDIR")),
];

/// Runs kairo with `KAIRO_FAILPOINT=point`: it dies by SIGKILL exactly there. Returns whether
/// it was killed (false: it ran to the end without reaching the point).
pub fn kill_kairo_at(root: &Path, args: &[&str], point: &str) -> bool {
    let out = Command::new(env!("CARGO_BIN_EXE_kairo"))
        .args(args)
        .arg("--root")
        .arg(root)
        .env_remove("RUST_LOG")
        .env_remove("KAIRO_FAILPOINT_RUN")
        .envs(HERMETIC_GIT.iter().copied())
        .env("KAIRO_FAILPOINT", point)
        .output()
        .expect("run kairo");
    use std::os::unix::process::ExitStatusExt;
    out.status.signal() == Some(9)
}

/// Runs `git` hermetically in `dir`; panics on failure. Returns stdout.
pub fn git(dir: &Path, args: &[&str]) -> String {
    let out = Command::new("git")
        .args(args)
        .current_dir(dir)
        .envs(HERMETIC_GIT.iter().copied())
        .output()
        .expect("run git");
    assert!(
        out.status.success(),
        "git {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

pub fn copy_dir(from: &Path, to: &Path) {
    for entry in walkdir::WalkDir::new(from).sort_by_file_name() {
        let entry = entry.unwrap();
        let target = to.join(entry.path().strip_prefix(from).unwrap());
        if entry.file_type().is_dir() {
            std::fs::create_dir_all(&target).unwrap();
        } else {
            std::fs::copy(entry.path(), &target).unwrap();
        }
    }
}

/// Every file under `dir`, as sorted (relative path, bytes).
pub fn tree(dir: &Path) -> Vec<(String, Vec<u8>)> {
    walkdir::WalkDir::new(dir)
        .sort_by_file_name()
        .into_iter()
        .map(|e| e.unwrap())
        .filter(|e| e.file_type().is_file())
        .map(|e| {
            let rel = e
                .path()
                .strip_prefix(dir)
                .unwrap()
                .to_string_lossy()
                .replace('\\', "/");
            (rel, std::fs::read(e.path()).unwrap())
        })
        .collect()
}

/// Stages everything in the repository at `path` (creating it if needed) and commits with a
/// fixed identity and time, so that commit ids are stable.
pub fn commit_all(path: &Path, message: &str, seconds: i64) -> git2::Oid {
    let git = git2::Repository::open(path)
        .or_else(|_| git2::Repository::init(path))
        .unwrap();
    let mut index = git.index().unwrap();
    index
        .add_all(["*"], git2::IndexAddOption::DEFAULT, None)
        .unwrap();
    index.update_all(["*"], None).unwrap();
    index.write().unwrap();
    let tree = git.find_tree(index.write_tree().unwrap()).unwrap();
    let sig = git2::Signature::new(
        "kairo test",
        "test@kairo.invalid",
        &git2::Time::new(seconds, 0),
    )
    .unwrap();
    let parents: Vec<git2::Commit> = git
        .head()
        .ok()
        .and_then(|h| h.peel_to_commit().ok())
        .into_iter()
        .collect();
    let parents: Vec<&git2::Commit> = parents.iter().collect();
    git.commit(Some("HEAD"), &sig, &sig, message, &tree, &parents)
        .unwrap()
}
