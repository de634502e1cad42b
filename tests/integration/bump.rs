//! `kairo bump`: structured edit, re-render, commit, and safe push against a bare remote on
//! disk, including a push storm of concurrent writers.

use std::path::{Path, PathBuf};

use crate::support::{CATALOG, Repo, STAGING, commit_all, git, run_kairo, tree};

const AUTHOR: &str = "CI bot <ci@kairo.invalid>";

/// A catalog of `count` services `svc-000`.. and a staging environment running them all.
fn many(repo: &Repo, count: usize) {
    let head = &CATALOG[..CATALOG.find("  services:\n").unwrap() + "  services:\n".len()];
    let services: String = (0..count)
        .map(|i| format!("    svc-{i:03}:\n      chart: {{name: svc, version: \"1.0.0\", source: charts}}\n      image: {{repository: ghcr.io/acme/svc-{i:03}}}\n"))
        .collect();
    repo.write("environments/services.yaml", &format!("{head}{services}"));
    let env_head = &STAGING[..STAGING.find("  services:\n").unwrap() + "  services:\n".len()];
    let entries: String = (0..count)
        .map(|i| format!("    # service {i}\n    svc-{i:03}: {{image: {{tag: \"0.0.1\"}}}}\n"))
        .collect();
    repo.write("environments/staging.yaml", &format!("{env_head}{entries}"));
}

/// A bare remote holding a rendered repository on `main`, and a function making clones.
struct Remote {
    _dir: tempfile::TempDir,
    path: PathBuf,
}

impl Remote {
    fn new(services: usize) -> Remote {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("remote.git");
        git2::Repository::init_bare(&path).unwrap();
        let seed = Repo::new();
        many(&seed, services);
        seed.write("README.md", "# gitops\n");
        assert_eq!(seed.kairo(&["render"]).code, 0);
        commit_all(seed.path(), "initial", 1_700_000_000);
        let git = git2::Repository::open(seed.path()).unwrap();
        let head = git.head().unwrap().shorthand().unwrap().to_string();
        git.remote("origin", path.to_str().unwrap()).unwrap();
        git.find_remote("origin")
            .unwrap()
            .push(&[format!("refs/heads/{head}:refs/heads/main")], None)
            .unwrap();
        git2::Repository::open_bare(&path)
            .unwrap()
            .set_head("refs/heads/main")
            .unwrap();
        Remote { _dir: dir, path }
    }

    /// A clone with `main` checked out and tracking `origin/main`.
    fn clone(&self) -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        git2::Repository::clone(self.path.to_str().unwrap(), dir.path()).unwrap();
        dir
    }

    fn tip(&self) -> git2::Oid {
        let git = git2::Repository::open_bare(&self.path).unwrap();
        git.find_reference("refs/heads/main")
            .unwrap()
            .peel_to_commit()
            .unwrap()
            .id()
    }

    /// The commit messages on main, newest first, checking that history is linear.
    fn history(&self) -> Vec<String> {
        let git = git2::Repository::open_bare(&self.path).unwrap();
        let mut commit = git
            .find_reference("refs/heads/main")
            .unwrap()
            .peel_to_commit()
            .unwrap();
        let mut out = Vec::new();
        loop {
            out.push(commit.summary().unwrap().unwrap().to_string());
            assert!(commit.parent_count() <= 1, "history must be linear");
            match commit.parent(0) {
                Ok(p) => commit = p,
                Err(_) => return out,
            }
        }
    }
}

fn bump(dir: &Path, args: &[&str]) -> crate::support::Output {
    let mut all = vec!["bump"];
    all.extend_from_slice(args);
    all.extend_from_slice(&["--author", AUTHOR]);
    run_kairo(dir, &all)
}

#[test]
fn bump_edits_one_line_and_re_renders() {
    let repo = Repo::new();
    many(&repo, 3);
    assert_eq!(repo.kairo(&["render"]).code, 0);
    let before = repo.read("environments/staging.yaml");
    let out = repo.kairo(&["bump", "svc-001", "1a2b3c4", "--env", "staging"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(
        out.stdout,
        "svc-001 in staging: 0.0.1 -> 1a2b3c4\n  changed clusters/staging/.kairo-generated.sha256\n  changed clusters/staging/releases/svc-001.yaml\n  changed environments/staging.yaml\n"
    );
    let after = repo.read("environments/staging.yaml");
    let changed: Vec<(&str, &str)> = before
        .lines()
        .zip(after.lines())
        .filter(|(a, b)| a != b)
        .collect();
    assert_eq!(
        changed,
        [(
            "    svc-001: {image: {tag: \"0.0.1\"}}",
            "    svc-001: {image: {tag: \"1a2b3c4\"}}"
        )]
    );
    assert!(
        repo.read("clusters/staging/releases/svc-001.yaml")
            .contains("tag: 1a2b3c4\n")
    );
    assert_eq!(repo.kairo(&["render", "--check"]).code, 0);

    let again = repo.kairo(&[
        "bump", "svc-001", "1a2b3c4", "--env", "staging", "--output", "json",
    ]);
    assert_eq!(again.code, 0);
    let v: serde_json::Value = serde_json::from_str(&again.stdout).unwrap();
    assert_eq!(v["changed"], false);
}

#[test]
fn bad_bumps_name_the_valid_choices() {
    let repo = Repo::with_staging();
    let out = repo.kairo(&["bump", "web", "1.1", "--env", "prod"]);
    assert_eq!(out.code, 2);
    assert!(
        out.stderr
            .contains("error: unknown environment `prod`\n  hint: environments: `staging`"),
        "{}",
        out.stderr
    );
    let out = repo.kairo(&["bump", "wbe", "1.1", "--env", "staging"]);
    assert_eq!(out.code, 2);
    assert!(out.stderr.contains("error: service `wbe` is not listed in `environments/staging.yaml`\n  hint: services in this environment: `web`"), "{}", out.stderr);
    let out = repo.kairo(&["bump", "web", "bad:tag", "--env", "staging"]);
    assert_eq!(out.code, 2);
    assert!(
        out.stderr
            .contains("error: image tag `bad:tag` contains `:`"),
        "{}",
        out.stderr
    );
    repo.write(
        "environments/staging.yaml",
        &STAGING.replace(
            "image: {tag: \"1.0.0\"}",
            "image: {tag: \"1.0.0\"}\n      pinned: true",
        ),
    );
    let out = repo.kairo(&["bump", "web", "1.1", "--env", "staging"]);
    assert_eq!(out.code, 2);
    assert!(
        out.stderr.contains(
            "error: service `web` is pinned in `environments/staging.yaml`\n  hint: pass `--force`"
        ),
        "{}",
        out.stderr
    );
    assert_eq!(
        repo.kairo(&["bump", "web", "1.1", "--env", "staging", "--force"])
            .code,
        0
    );
}

#[test]
fn commit_and_push() {
    let remote = Remote::new(3);
    let clone = remote.clone();
    let out = bump(
        clone.path(),
        &[
            "svc-002", "v2", "--env", "staging", "--push", "--output", "json",
        ],
    );
    assert_eq!(out.code, 0, "{}", out.stderr);
    let v: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
    assert_eq!(v["pushed"], "origin refs/heads/main");
    assert_eq!(v["attempts"], 1);
    assert_eq!(
        remote.history(),
        ["chore(staging): bump svc-002 to v2", "initial"]
    );
    let git = git2::Repository::open_bare(&remote.path).unwrap();
    let commit = git.find_commit(remote.tip()).unwrap();
    assert_eq!(commit.author().name().unwrap(), "CI bot");
    assert_eq!(
        commit.message().unwrap(),
        "chore(staging): bump svc-002 to v2\n\nsvc-002 0.0.1 -> v2\n\nChanged files:\n- clusters/staging/.kairo-generated.sha256\n- clusters/staging/releases/svc-002.yaml\n- environments/staging.yaml\n"
    );
    // A no-op bump makes no commit.
    let out = bump(
        clone.path(),
        &["svc-002", "v2", "--env", "staging", "--push"],
    );
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(remote.history().len(), 2);
    // The remote's tip is exactly what its environments render.
    let fresh = remote.clone();
    assert_eq!(run_kairo(fresh.path(), &["render", "--check"]).code, 0);
}

#[test]
fn a_rejected_push_re_applies_the_bump_or_gives_up() {
    let remote = Remote::new(3);
    let (a, b) = (remote.clone(), remote.clone());
    // Between b's fetch and b's push, a pushes: b's first push is rejected, every time.
    let a_pushes = format!(
        "before-push:{} bump svc-000 a1 --env staging --push --author 'A <a@kairo.invalid>' --root {} >/dev/null 2>&1",
        env!("CARGO_BIN_EXE_kairo"),
        a.path().display()
    );
    let args = [
        "bump", "svc-001", "b1", "--env", "staging", "--push", "--author", AUTHOR,
    ];
    let mut once = args.to_vec();
    once.extend(["--retry-timeout", "0s"]);
    let out = crate::support::run_kairo_with_env(
        b.path(),
        &once,
        &[("KAIRO_FAILPOINT_RUN", a_pushes.as_str())],
    );
    assert_eq!(out.code, 2);
    assert!(
        out.stderr
            .contains("error: push to `origin` was rejected 1 time(s)"),
        "{}",
        out.stderr
    );
    assert!(out.stderr.contains("hint: nothing was changed locally"));
    assert_eq!(remote.history().len(), 2);
    assert_eq!(git(b.path(), &["status", "--porcelain"]), "");
    // With retries it fetches, plans the bump again on the new tip, and pushes. (a runs again
    // at the second attempt's point too: a no-op, nothing more to push.)
    let out = crate::support::run_kairo_with_env(
        b.path(),
        &args,
        &[("KAIRO_FAILPOINT_RUN", a_pushes.as_str())],
    );
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(out.stdout.contains("(attempt 1)"), "{}", out.stdout);
    let out = bump(b.path(), &["svc-002", "b2", "--env", "staging", "--push"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(
        remote.history(),
        [
            "chore(staging): bump svc-002 to b2",
            "chore(staging): bump svc-001 to b1",
            "chore(staging): bump svc-000 to a1",
            "initial"
        ]
    );
    let fresh = remote.clone();
    let env = std::fs::read_to_string(fresh.path().join("environments/staging.yaml")).unwrap();
    assert!(
        env.contains("svc-000: {image: {tag: \"a1\"}}")
            && env.contains("svc-001: {image: {tag: \"b1\"}}"),
        "{env}"
    );
}

/// The reported bug: a rejected push used to reset the working tree hard and lose a user's
/// uncommitted edit. Now nothing but kairo's own paths is ever touched, on every path.
#[test]
fn uncommitted_work_survives_a_rejected_push() {
    let remote = Remote::new(3);
    let (a, b) = (remote.clone(), remote.clone());
    assert_eq!(
        bump(a.path(), &["svc-000", "a1", "--env", "staging", "--push"]).code,
        0
    );
    let readme = b.path().join("README.md");
    std::fs::write(&readme, "my notes, not committed\n").unwrap();
    std::fs::write(b.path().join("environments/notes.txt"), "untracked\n").unwrap();
    let before = git(b.path(), &["rev-parse", "HEAD"]);
    let out = bump(
        b.path(),
        &["svc-001", "bbb2222", "--env", "staging", "--push"],
    );
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(
        std::fs::read_to_string(&readme).unwrap(),
        "my notes, not committed\n"
    );
    assert_eq!(
        std::fs::read_to_string(b.path().join("environments/notes.txt")).unwrap(),
        "untracked\n"
    );
    // b was behind the remote: its branch stays where it was, and says how to catch up.
    assert_eq!(git(b.path(), &["rev-parse", "HEAD"]), before);
    assert!(out.stderr.contains("git pull"), "{}", out.stderr);
    assert_eq!(
        git(b.path(), &["status", "--porcelain"]),
        " M README.md\n?? environments/notes.txt\n"
    );
    assert_eq!(
        remote.history(),
        [
            "chore(staging): bump svc-001 to bbb2222",
            "chore(staging): bump svc-000 to a1",
            "initial"
        ]
    );
    // Once b is up to date, its branch follows its own pushes; the edit still survives.
    git(b.path(), &["pull", "--ff-only", "--quiet"]);
    let out = bump(b.path(), &["svc-002", "c3", "--env", "staging", "--push"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(
        git(b.path(), &["rev-parse", "HEAD"]).trim(),
        remote.tip().to_string()
    );
    assert_eq!(
        git(b.path(), &["status", "--porcelain"]),
        " M README.md\n?? environments/notes.txt\n"
    );
    assert_eq!(run_kairo(b.path(), &["render", "--check"]).code, 0);
    // An uncommitted edit to a file the bump writes is never overwritten: the push goes out
    // (it is built on the remote tip), the local branch stays, the edit stays.
    let env = b.path().join("environments/staging.yaml");
    let edited = std::fs::read_to_string(&env).unwrap() + "# my edit\n";
    std::fs::write(&env, &edited).unwrap();
    let out = bump(b.path(), &["svc-000", "d4", "--env", "staging", "--push"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(std::fs::read_to_string(&env).unwrap(), edited);
    assert!(
        out.stderr.contains("has uncommitted changes"),
        "{}",
        out.stderr
    );
}

/// The reported bug: `--branch` used to leave its commit on the local branch, and the next
/// plain bump pushed it to main without review.
#[test]
fn a_review_branch_never_lands_on_the_local_branch() {
    let remote = Remote::new(3);
    let clone = remote.clone();
    let head = git(clone.path(), &["rev-parse", "HEAD"]);
    let out = bump(
        clone.path(),
        &[
            "svc-000", "rev9999", "--env", "staging", "--push", "--branch",
        ],
    );
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(git(clone.path(), &["rev-parse", "HEAD"]), head);
    assert_eq!(git(clone.path(), &["status", "--porcelain"]), "");
    assert_eq!(git(clone.path(), &["branch", "--list"]), "* main\n");
    let out = bump(
        clone.path(),
        &["svc-001", "ccc3333", "--env", "staging", "--push"],
    );
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(
        remote.history(),
        ["chore(staging): bump svc-001 to ccc3333", "initial"]
    );
    let fresh = remote.clone();
    let env = std::fs::read_to_string(fresh.path().join("environments/staging.yaml")).unwrap();
    assert!(!env.contains("rev9999"), "{env}");
}

/// Several services in one commit, and `--all` for every image one build produced.
#[test]
fn several_services_in_one_commit() {
    let digest_b = format!("sha256:{}", "b".repeat(64));
    let remote = Remote::new(4);
    let clone = remote.clone();
    let out = bump(
        clone.path(),
        &[
            "--env",
            "staging",
            "svc-000=3f9c2e1",
            &format!("svc-001=3f9c2e1@sha256:{}", "a".repeat(64)),
            "--push",
        ],
    );
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(
        remote.history(),
        ["chore(staging): bump 2 services to 3f9c2e1", "initial"]
    );
    let out = bump(
        clone.path(),
        &[
            "--env", "staging", "--all", "4a5b6c7", "--digest", &digest_b, "--push", "--output",
            "json",
        ],
    );
    assert_eq!(out.code, 0, "{}", out.stderr);
    let v: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
    assert_eq!(v["moves"].as_array().unwrap().len(), 4, "{v}");
    assert_eq!(
        remote.history()[0],
        "chore(staging): bump 4 services to 4a5b6c7"
    );
    let fresh = remote.clone();
    let env = std::fs::read_to_string(fresh.path().join("environments/staging.yaml")).unwrap();
    assert!(
        env.contains(&format!(
            "svc-000: {{image: {{tag: \"4a5b6c7\", digest: {digest_b}}}}}"
        )),
        "{env}"
    );
    assert_eq!(run_kairo(fresh.path(), &["render", "--check"]).code, 0);
    // A prefix that matches nothing, a duplicate, a malformed argument: exit 2.
    for args in [
        vec![
            "--env",
            "staging",
            "--all",
            "x1",
            "--repository-prefix",
            "quay.io/",
        ],
        vec!["--env", "staging", "svc-000=a", "svc-000=b"],
        vec!["--env", "staging", "svc-000=a", "svc-001"],
    ] {
        let out = bump(clone.path(), &args);
        assert_eq!(out.code, 2, "{args:?}: {}", out.stderr);
    }
}

#[test]
fn refuses_uncommitted_changes_to_what_it_writes() {
    let remote = Remote::new(2);
    let clone = remote.clone();
    let env = clone.path().join("environments/staging.yaml");
    let text = std::fs::read_to_string(&env).unwrap();
    std::fs::write(&env, text.replace("# service 0", "# edited")).unwrap();
    let out = bump(
        clone.path(),
        &["svc-001", "x1", "--env", "staging", "--commit"],
    );
    assert_eq!(out.code, 2);
    assert!(
        out.stderr.contains(
            "error: `environments/staging.yaml` has uncommitted changes, and kairo must write it"
        ),
        "{}",
        out.stderr
    );
    assert!(
        std::fs::read_to_string(&env).unwrap().contains("# edited"),
        "nothing was touched"
    );
}

/// 8 writers in separate processes, 25 bumps each, all pushing to one remote at once: every
/// bump lands exactly once, history is linear, and the tip renders to what is committed.
#[test]
fn push_storm() {
    const WRITERS: usize = 8;
    const BUMPS: usize = 25;
    let remote = Remote::new(WRITERS * BUMPS);
    let clones: Vec<tempfile::TempDir> = (0..WRITERS).map(|_| remote.clone()).collect();
    std::thread::scope(|s| {
        for (w, clone) in clones.iter().enumerate() {
            s.spawn(move || {
                for b in 0..BUMPS {
                    let service = format!("svc-{:03}", w * BUMPS + b);
                    let tag = format!("w{w}-b{b}");
                    let out = bump(
                        clone.path(),
                        &[
                            &service,
                            &tag,
                            "--env",
                            "staging",
                            "--push",
                            "--retry-timeout",
                            "10m",
                        ],
                    );
                    assert_eq!(out.code, 0, "{service}: {}", out.stderr);
                }
            });
        }
    });
    let history = remote.history();
    assert_eq!(history.len(), WRITERS * BUMPS + 1);
    let mut subjects: Vec<&String> = history.iter().filter(|m| m.starts_with("chore(")).collect();
    subjects.sort();
    subjects.dedup();
    assert_eq!(subjects.len(), WRITERS * BUMPS, "every bump exactly once");
    let fresh = remote.clone();
    let env = std::fs::read_to_string(fresh.path().join("environments/staging.yaml")).unwrap();
    for w in 0..WRITERS {
        for b in 0..BUMPS {
            assert!(env.contains(&format!(
                "svc-{:03}: {{image: {{tag: \"w{w}-b{b}\"}}}}",
                w * BUMPS + b
            )));
        }
    }
    assert_eq!(run_kairo(fresh.path(), &["render", "--check"]).code, 0);
    let _ = tree;
}

#[test]
fn promote_copies_tested_images_in_one_commit() {
    let remote = Remote::new(4);
    let clone = remote.clone();
    // production runs svc-000..svc-002 (one pinned at a digest), staging runs all four.
    let staging = std::fs::read_to_string(clone.path().join("environments/staging.yaml")).unwrap();
    let production = staging
        .replace("name: staging", "name: production")
        .replace("namespace: acme-staging", "namespace: acme")
        .replace(
            "    # service 3\n    svc-003: {image: {tag: \"0.0.1\"}}\n",
            "",
        );
    std::fs::write(
        clone.path().join("environments/production.yaml"),
        &production,
    )
    .unwrap();
    assert_eq!(run_kairo(clone.path(), &["render"]).code, 0);
    commit_all(clone.path(), "add production", 1_700_000_050);
    git(clone.path(), &["push", "--quiet", "origin", "HEAD:main"]);
    for (service, tag) in [("svc-000", "1.4.3"), ("svc-001", "2.0.0")] {
        assert_eq!(
            bump(clone.path(), &[service, tag, "--env", "staging", "--push"]).code,
            0
        );
    }
    let promote = || {
        let args = [
            "promote",
            "--from",
            "staging",
            "--to",
            "production",
            "--push",
            "--author",
            AUTHOR,
        ];
        run_kairo(clone.path(), &args)
    };
    let out = promote();
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(
        out.stdout.contains(
            "svc-000 in production: 0.0.1 -> 1.4.3\nsvc-001 in production: 0.0.1 -> 2.0.0\n"
        ),
        "{}",
        out.stdout
    );
    assert!(
        out.stdout
            .contains("note: `svc-003` does not run in production; skipped\n"),
        "{}",
        out.stdout
    );
    let git = git2::Repository::open_bare(&remote.path).unwrap();
    let message = git
        .find_commit(remote.tip())
        .unwrap()
        .message()
        .unwrap()
        .to_string();
    assert!(message.starts_with("chore(production): promote images from staging\n\nsvc-000 0.0.1 -> 1.4.3\nsvc-001 0.0.1 -> 2.0.0\n\nChanged files:\n"), "{message}");
    // Promoting again changes nothing and commits nothing.
    let before = remote.history().len();
    let out = promote();
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(remote.history().len(), before);
    // A mutable tag is never promoted.
    assert_eq!(
        bump(
            clone.path(),
            &["svc-002", "latest", "--env", "staging", "--commit"]
        )
        .code,
        0
    );
    let out = run_kairo(
        clone.path(),
        &[
            "promote",
            "--from",
            "staging",
            "--to",
            "production",
            "--service",
            "svc-002",
        ],
    );
    assert_eq!(out.code, 2);
    assert!(
        out.stderr.contains(
            "error: `svc-002` runs the mutable tag `latest` in `staging`; promote an immutable tag"
        ),
        "{}",
        out.stderr
    );
}

#[test]
fn a_bump_branch_for_review() {
    let remote = Remote::new(2);
    let clone = remote.clone();
    let out = bump(
        clone.path(),
        &[
            "svc-001", "v9", "--env", "staging", "--push", "--branch", "--output", "json",
        ],
    );
    assert_eq!(out.code, 0, "{}", out.stderr);
    let v: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
    assert_eq!(v["pushed"], "origin refs/heads/kairo/staging/svc-001-v9");
    assert_eq!(remote.history(), ["initial"], "main is untouched");
    let git = git2::Repository::open_bare(&remote.path).unwrap();
    let commit = git
        .find_reference("refs/heads/kairo/staging/svc-001-v9")
        .unwrap()
        .peel_to_commit()
        .unwrap();
    assert_eq!(
        commit.summary().unwrap(),
        Some("chore(staging): bump svc-001 to v9")
    );
}

/// Kills `kairo bump` (with `--push`, and with `--commit`) at every named point of the write
/// path; re-running the same command completes the bump: exactly one commit for it, the user's
/// uncommitted edit intact, nothing else changed in the working tree.
#[test]
fn an_interrupted_bump_is_completed_by_a_re_run() {
    let remote = Remote::new(30);
    let points = [
        "after-commit",
        "before-push",
        "push-started",
        "after-push",
        "ff-journal",
        "ff-write:1",
        "ff-write:2",
        "ff-index",
        "ff-ref",
    ];
    for (i, point) in points.iter().enumerate() {
        for push in [true, false] {
            let clone = remote.clone();
            std::fs::write(clone.path().join("README.md"), "uncommitted\n").unwrap();
            let tag = format!("k{i}{}", if push { "p" } else { "c" });
            let mode = if push { "--push" } else { "--commit" };
            let args = [
                "bump", "svc-015", &tag, "--env", "staging", mode, "--author", AUTHOR,
            ];
            let reached = crate::support::kill_kairo_at(clone.path(), &args, point);
            let remote_only = ["before-push", "push-started", "after-push"].contains(point);
            assert!(
                reached || (!push && remote_only),
                "{mode} never reached {point}"
            );
            let out = run_kairo(clone.path(), &args);
            assert_eq!(out.code, 0, "killed at {point} ({mode}): {}", out.stderr);
            let subject = format!("chore(staging): bump svc-015 to {tag}");
            let log = if push {
                remote.history()
            } else {
                git(clone.path(), &["log", "--format=%s"])
                    .lines()
                    .map(str::to_string)
                    .collect()
            };
            let count = log.iter().filter(|m| **m == subject).count();
            assert_eq!(count, 1, "killed at {point} ({mode})");
            assert!(!clone.path().join(".git/kairo-in-progress").exists());
            assert!(!clone.path().join(".git/index.lock").exists());
            assert_eq!(
                std::fs::read_to_string(clone.path().join("README.md")).unwrap(),
                "uncommitted\n"
            );
            let status = git(clone.path(), &["status", "--porcelain"]);
            assert_eq!(status, " M README.md\n", "killed at {point} ({mode})");
            if !push {
                assert_eq!(run_kairo(clone.path(), &["render", "--check"]).code, 0);
            }
        }
    }
    let fresh = remote.clone();
    assert_eq!(run_kairo(fresh.path(), &["render", "--check"]).code, 0);
}

/// A second kairo in the same repository is refused at once, naming the first.
#[test]
fn one_kairo_at_a_time() {
    let remote = Remote::new(2);
    let clone = remote.clone();
    let hold = format!(
        "before-push:{} bump svc-001 x2 --env staging --push --author 'A <a@kairo.invalid>' --root {} 2>&1 | grep -q 'another kairo is running in this repository (pid [0-9]*)' && touch {}/refused",
        env!("CARGO_BIN_EXE_kairo"),
        clone.path().display(),
        clone.path().display()
    );
    let out = crate::support::run_kairo_with_env(
        clone.path(),
        &[
            "bump", "svc-000", "x1", "--env", "staging", "--push", "--author", AUTHOR,
        ],
        &[("KAIRO_FAILPOINT_RUN", hold.as_str())],
    );
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(
        clone.path().join("refused").exists(),
        "the second run was not refused"
    );
    assert_eq!(remote.history().len(), 2);
}

#[test]
fn commits_are_signed_with_ssh_as_git_would() {
    let remote = Remote::new(2);
    let clone = remote.clone();
    let keys = tempfile::tempdir().unwrap();
    let key = keys.path().join("id_ed25519");
    let status = std::process::Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-C", "ci", "-f"])
        .arg(&key)
        .status()
        .unwrap();
    assert!(status.success());
    let git = git2::Repository::open(clone.path()).unwrap();
    let mut config = git.config().unwrap();
    config.set_str("gpg.format", "ssh").unwrap();
    config
        .set_str("user.signingkey", key.to_str().unwrap())
        .unwrap();
    config.set_bool("commit.gpgsign", true).unwrap();
    let out = bump(
        clone.path(),
        &["svc-001", "signed1", "--env", "staging", "--commit"],
    );
    assert_eq!(out.code, 0, "{}", out.stderr);
    let public = std::fs::read_to_string(keys.path().join("id_ed25519.pub")).unwrap();
    let allowed = keys.path().join("allowed_signers");
    std::fs::write(
        &allowed,
        format!("ci@kairo.invalid namespaces=\"git\" {public}"),
    )
    .unwrap();
    let verify = std::process::Command::new("git")
        .args([
            "-c",
            &format!("gpg.ssh.allowedSignersFile={}", allowed.display()),
            "verify-commit",
            "HEAD",
        ])
        .current_dir(clone.path())
        .output()
        .unwrap();
    assert!(
        verify.status.success(),
        "{}",
        String::from_utf8_lossy(&verify.stderr)
    );
    assert!(
        String::from_utf8_lossy(&verify.stderr)
            .contains("Good \"git\" signature for ci@kairo.invalid")
    );
}

#[test]
fn a_declined_push_fails_at_once_with_the_remote_message() {
    let remote = Remote::new(2);
    let hook = remote.path.join("hooks/pre-receive");
    std::fs::write(
        &hook,
        "#!/bin/sh\necho 'main is frozen for the release' >&2\nexit 1\n",
    )
    .unwrap();
    std::fs::set_permissions(&hook, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let clone = remote.clone();
    let started = std::time::Instant::now();
    let out = bump(
        clone.path(),
        &["svc-001", "v2", "--env", "staging", "--push"],
    );
    assert_eq!(out.code, 2);
    assert!(out.stderr.contains("declined"), "{}", out.stderr);
    assert!(
        started.elapsed() < std::time::Duration::from_secs(5),
        "no retries with backoff"
    );
    assert_eq!(remote.history(), ["initial"]);
}

/// A git smart-HTTP server with Basic auth on loopback (tests/integration/fixtures).
struct HttpServer(std::process::Child, u16);

impl HttpServer {
    fn start(root: &Path, user: &str, password: &str) -> HttpServer {
        use std::io::BufRead;
        let script =
            crate::support::manifest_dir().join("tests/integration/fixtures/git_http_server.py");
        let mut child = std::process::Command::new("python3")
            .arg(script)
            .arg(root)
            .args([user, password])
            .stdout(std::process::Stdio::piped())
            .spawn()
            .expect("python3 runs the test git server");
        let mut line = String::new();
        std::io::BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        HttpServer(
            child,
            line.trim().parse().expect("the server prints its port"),
        )
    }
}

impl Drop for HttpServer {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn pushes_over_http_with_a_token_from_the_environment() {
    let remote = Remote::new(2);
    let server = HttpServer::start(remote.path.parent().unwrap(), "ci", "s3cr3t-token");
    let clone = remote.clone();
    let git = git2::Repository::open(clone.path()).unwrap();
    git.remote_set_url(
        "origin",
        &format!("http://127.0.0.1:{}/remote.git", server.1),
    )
    .unwrap();
    let args = [
        "bump", "svc-001", "h1", "--env", "staging", "--push", "--author", AUTHOR,
    ];

    // Without the token git cannot authenticate, and kairo does not hang on a prompt.
    let out = crate::support::run_kairo_with_env(clone.path(), &args, &[]);
    assert_eq!(out.code, 2, "{}", out.stderr);
    assert_eq!(remote.history(), ["initial"]);

    let env = [
        ("KAIRO_GIT_TOKEN", "s3cr3t-token"),
        ("KAIRO_GIT_USERNAME", "ci"),
    ];
    let out = crate::support::run_kairo_with_env(clone.path(), &args, &env);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(
        remote.history(),
        ["chore(staging): bump svc-001 to h1", "initial"]
    );
    assert!(!out.stdout.contains("s3cr3t") && !out.stderr.contains("s3cr3t"));
    let config = std::fs::read_to_string(clone.path().join(".git/config")).unwrap();
    assert!(
        !config.contains("s3cr3t"),
        "the token is never written to disk"
    );
}

/// Found by attacking the writer: a change staged after a kill, and a mode change, are the
/// user's work too, and survive the re-run and the bump.
#[test]
fn staged_changes_and_modes_survive() {
    let remote = Remote::new(3);
    let clone = remote.clone();
    let args = [
        "bump", "svc-000", "s1", "--env", "staging", "--commit", "--author", AUTHOR,
    ];
    assert!(crate::support::kill_kairo_at(
        clone.path(),
        &args,
        "ff-journal"
    ));
    // Stage an edit to the file kairo was writing, and put the working copy back.
    let env = clone.path().join("environments/staging.yaml");
    let original = git(clone.path(), &["show", "HEAD:environments/staging.yaml"]);
    std::fs::write(&env, original.clone() + "# staged by the user\n").unwrap();
    git(clone.path(), &["add", "environments/staging.yaml"]);
    std::fs::write(&env, &original).unwrap();
    let staged = git(clone.path(), &["rev-parse", ":environments/staging.yaml"]);
    let out = run_kairo(clone.path(), &args);
    assert_eq!(
        git(clone.path(), &["rev-parse", ":environments/staging.yaml"]),
        staged,
        "the staged blob was replaced: {}",
        out.stderr
    );
    // A mode change on a file the bump writes: refused, the mode stays.
    let clone = remote.clone();
    git(
        clone.path(),
        &["update-index", "--chmod=+x", "environments/staging.yaml"],
    );
    let out = run_kairo(clone.path(), &args);
    assert_eq!(out.code, 2, "{}", out.stderr);
    assert!(
        git(
            clone.path(),
            &["ls-files", "-s", "environments/staging.yaml"]
        )
        .starts_with("100755")
    );
}

/// A killed fast-forward is completed by the next command that writes the working tree, not
/// only by the next commit: `render` and a bump without `--commit` first finish it, so they
/// never write over a half-done update.
#[test]
fn render_and_a_worktree_bump_complete_an_interrupted_fast_forward() {
    let remote = Remote::new(3);
    for next in [
        &["render"][..],
        &["bump", "svc-001", "w1", "--env", "staging"][..],
    ] {
        let clone = remote.clone();
        std::fs::write(clone.path().join("README.md"), "uncommitted\n").unwrap();
        let args = [
            "bump", "svc-000", "f1", "--env", "staging", "--commit", "--author", AUTHOR,
        ];
        assert!(crate::support::kill_kairo_at(
            clone.path(),
            &args,
            "ff-write:1"
        ));
        assert!(clone.path().join(".git/kairo-in-progress").exists());
        let out = run_kairo(clone.path(), next);
        assert_eq!(out.code, 0, "{next:?}: {}", out.stderr);
        assert!(
            out.stderr
                .contains("completed an interrupted update of `main`")
                || out
                    .stdout
                    .contains("completed an interrupted update of `main`"),
            "{next:?}: {}{}",
            out.stdout,
            out.stderr
        );
        assert!(!clone.path().join(".git/kairo-in-progress").exists());
        assert_eq!(
            std::fs::read_to_string(clone.path().join("README.md")).unwrap(),
            "uncommitted\n"
        );
        // The killed bump's commit is what HEAD holds, its files are on disk and staged.
        assert_eq!(
            git(clone.path(), &["log", "-1", "--format=%s"]).trim(),
            "chore(staging): bump svc-000 to f1"
        );
        let status = git(clone.path(), &["status", "--porcelain"]);
        let expected = if next[0] == "render" {
            " M README.md\n".to_string()
        } else {
            " M README.md\n M clusters/staging/.kairo-generated.sha256\n M clusters/staging/releases/svc-001.yaml\n M environments/staging.yaml\n".to_string()
        };
        assert_eq!(status, expected, "{next:?}");
    }
}

/// Promoting an environment onto itself is a usage error, not a silent no-op.
#[test]
fn promote_to_the_same_environment_is_refused() {
    let remote = Remote::new(2);
    let clone = remote.clone();
    let head = git(clone.path(), &["rev-parse", "HEAD"]);
    let out = run_kairo(
        clone.path(),
        &[
            "promote", "--from", "staging", "--to", "staging", "--commit",
        ],
    );
    assert_eq!(out.code, 2, "{}", out.stderr);
    assert!(
        out.stderr
            .contains("`--from` and `--to` are both `staging`"),
        "{}",
        out.stderr
    );
    assert_eq!(git(clone.path(), &["rev-parse", "HEAD"]), head);
}

/// YAML allows `spec` before `kind`; render reads such a file, so bump must too.
#[test]
fn a_bump_reads_an_environment_whose_spec_comes_first() {
    let repo = Repo::with_staging();
    let (head, spec) = STAGING.split_at(STAGING.find("spec:").unwrap());
    repo.write("environments/staging.yaml", &format!("{spec}{head}"));
    assert_eq!(repo.kairo(&["render"]).code, 0);
    let out = repo.kairo(&["bump", "web", "2.0.0", "--env", "staging"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(
        repo.read("environments/staging.yaml")
            .contains("tag: \"2.0.0\"")
    );
    assert!(
        repo.read("clusters/staging/releases/web.yaml")
            .contains("2.0.0")
    );
    assert_eq!(repo.kairo(&["render", "--check"]).code, 0);
}

/// A bump renders again only the releases its edit changed, unless a template can read other
/// releases: then every release is rendered, and the tree stays what a full render gives.
#[test]
fn a_template_reading_other_releases_makes_a_bump_render_them_all() {
    let source = std::fs::read_to_string(
        crate::support::manifest_dir().join("templates/helmrelease.yaml.j2"),
    )
    .unwrap();
    let marker = "  labels:\n";
    // Each release names the tag of the environment's first service, in three spellings
    // minijinja's analysis must all see through.
    for (i, read) in [
        "env.releases[0].image.tag",
        "(env | attr(\"releases\"))[0].image.tag",
        "env[\"rel\" ~ \"eases\"][0].image.tag",
    ]
    .into_iter()
    .enumerate()
    {
        let repo = Repo::new();
        many(&repo, 3);
        let template = source.replacen(
            marker,
            &format!(
                "  annotations:\n    example.com/first-tag: {{{{ {read} | yaml }}}}\n{marker}"
            ),
            1,
        );
        repo.write("templates/helmrelease.yaml.j2", &template);
        let out = repo.kairo(&["render"]);
        assert_eq!(out.code, 0, "{i}: {}", out.stderr);
        let first_tag = |repo: &Repo| {
            repo.read("clusters/staging/releases/svc-002.yaml")
                .lines()
                .find_map(|l| l.trim().strip_prefix("example.com/first-tag: "))
                .map(|t| t.trim_matches('"').to_string())
        };
        assert_eq!(first_tag(&repo).as_deref(), Some("0.0.1"), "{i}");
        let out = repo.kairo(&["bump", "svc-000", "1a2b3c4", "--env", "staging"]);
        assert_eq!(out.code, 0, "{i}: {}", out.stderr);
        assert_eq!(
            first_tag(&repo).as_deref(),
            Some("1a2b3c4"),
            "{i}: svc-002 was not rendered again"
        );
        assert_eq!(repo.kairo(&["render", "--check"]).code, 0, "{i}");
    }
}

/// A bump renders only what its edit changed when the environment is exactly as recorded;
/// anything else (a hand edit, a first render killed before its files) renders all of it, so
/// a hand edit still blocks the bump and a killed render is finished by it.
#[test]
fn a_bump_renders_in_full_unless_the_environment_is_as_recorded() {
    let repo = Repo::new();
    many(&repo, 3);
    assert_eq!(repo.kairo(&["render"]).code, 0);
    let other = "clusters/staging/releases/svc-002.yaml";
    let generated = repo.read(other);
    repo.write(other, &generated.replace("interval: ", "interval:  "));
    let out = repo.kairo(&["bump", "svc-001", "1a2b3c4", "--env", "staging"]);
    assert_ne!(
        out.code, 0,
        "a hand edit in the environment must block the bump"
    );
    assert!(out.stderr.contains("svc-002.yaml"), "{}", out.stderr);
    repo.write(other, &generated);

    // The first render of an environment, killed after its record listed the new files but
    // before it wrote them: one hash per file, and no file.
    let fresh = Repo::new();
    many(&fresh, 3);
    assert!(crate::support::kill_kairo_at(
        fresh.path(),
        &["render"],
        "apply-interim"
    ));
    let out = fresh.kairo(&["bump", "svc-001", "1a2b3c4", "--env", "staging"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(fresh.kairo(&["render", "--check"]).code, 0);
}

/// A working-tree bump that fails while writing leaves the environment file as it was, so
/// running it again does all of it.
#[test]
fn a_failed_working_tree_bump_can_be_run_again() {
    let repo = Repo::new();
    many(&repo, 3);
    assert_eq!(repo.kairo(&["render"]).code, 0);
    let env = repo.read("environments/staging.yaml");
    let args = [
        "bump", "svc-001", "1a2b3c4", "--env", "staging", "--author", AUTHOR,
    ];
    let out = crate::support::run_kairo_with_env(
        repo.path(),
        &args,
        &[("KAIRO_FAILPOINT_ERROR", "apply-preflight")],
    );
    assert_eq!(out.code, 2, "{}", out.stderr);
    assert_eq!(repo.read("environments/staging.yaml"), env);
    let out = repo.kairo(&args);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(
        out.stdout
            .contains("changed clusters/staging/releases/svc-001.yaml")
    );
    assert_eq!(repo.kairo(&["render", "--check"]).code, 0);
}

/// A remote that accepts the connection and never answers stops the push at `--git-timeout`,
/// with an error saying so, instead of holding kairo forever; nothing local changes.
#[test]
fn a_remote_that_never_answers_is_stopped_at_the_git_timeout() {
    let remote = Remote::new(2);
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    // Accepts every connection and holds it open without a byte in reply.
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for stream in listener.incoming() {
            held.push(stream);
        }
    });
    let clone = remote.clone();
    let git = git2::Repository::open(clone.path()).unwrap();
    git.remote_set_url("origin", &format!("http://127.0.0.1:{port}/remote.git"))
        .unwrap();
    let head = git.head().unwrap().target().unwrap();
    let env_file = clone.path().join("environments/staging.yaml");
    let env = std::fs::read_to_string(&env_file).unwrap();
    let out = bump(
        clone.path(),
        &[
            "svc-001",
            "h1",
            "--env",
            "staging",
            "--push",
            "--git-timeout",
            "1s",
        ],
    );
    assert_eq!(out.code, 2, "{}", out.stderr);
    assert!(
        out.stderr.contains("did not finish within 1s"),
        "{}",
        out.stderr
    );
    assert_eq!(git.head().unwrap().target().unwrap(), head);
    assert_eq!(std::fs::read_to_string(&env_file).unwrap(), env);
}
