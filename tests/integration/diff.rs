//! `kairo diff` between real commits of a temporary git repository (hermetic: fixed identity
//! and dates), and against the working tree.

use crate::support::{CATALOG, Repo, STAGING};

/// Commits everything with a fixed identity and time, and tags the commit.
fn commit(repo: &Repo, message: &str, tag: &str, seconds: i64) {
    let id = crate::support::commit_all(repo.path(), message, seconds);
    let git = git2::Repository::open(repo.path()).unwrap();
    git.tag_lightweight(tag, &git.find_object(id, None).unwrap(), false)
        .unwrap();
}

fn render(repo: &Repo) {
    let out = repo.kairo(&["render"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
}

const WORKER: &str = "    worker:\n      image: {tag: \"2.0.0\"}\n      gpu: {count: 0}\n";

/// v1: web and worker in staging and production. v2: `api` added to staging, `worker` removed
/// from production, production's multiplier doubled, and a label added by the template.
fn history() -> Repo {
    let repo = Repo::with_staging();
    let catalog = format!(
        "{CATALOG}    api:\n      chart: {{version: \">=1.0.0\", source: charts}}\n      image: {{repository: ghcr.io/acme/api}}\n"
    );
    repo.write("environments/services.yaml", &catalog);
    repo.write("environments/staging.yaml", &format!("{STAGING}{WORKER}"));
    let production = STAGING
        .replace("name: staging", "name: production")
        .replace("namespace: acme-staging", "namespace: acme");
    repo.write(
        "environments/production.yaml",
        &format!("{production}{WORKER}"),
    );
    render(&repo);
    commit(&repo, "v1", "v1", 1_700_000_000);

    repo.write(
        "environments/staging.yaml",
        &format!("{STAGING}{WORKER}    api:\n      image: {{tag: \"0.1.0\"}}\n"),
    );
    repo.write(
        "environments/production.yaml",
        &production.replace("  defaults:", "  resourceMultiplier: 2\n  defaults:"),
    );
    let template = repo.read("templates/helmrelease.yaml.j2");
    repo.write(
        "templates/helmrelease.yaml.j2",
        &template.replace(
            "    app.kubernetes.io/managed-by: kairo\n",
            "    app.kubernetes.io/managed-by: kairo\n    team: platform\n",
        ),
    );
    render(&repo);
    commit(&repo, "v2", "v2", 1_700_000_100);
    repo
}

#[test]
fn between_two_commits() {
    let repo = history();
    let out = repo.kairo(&["diff", "--base", "v1", "--head", "v2", "--summary"]);
    assert_eq!(out.code, 1, "{}", out.stderr);
    insta::assert_snapshot!("summary_text", out.stdout);

    let out = repo.kairo(&[
        "diff",
        "--base",
        "v1",
        "--head",
        "v2",
        "--env",
        "production",
    ]);
    assert_eq!(out.code, 1);
    insta::assert_snapshot!("production_text", out.stdout);

    let out = repo.kairo(&[
        "diff", "--base", "v1", "--head", "v2", "--output", "markdown",
    ]);
    assert_eq!(out.code, 1);
    insta::assert_snapshot!("markdown", out.stdout);

    let out = repo.kairo(&["diff", "--base", "v1", "--head", "v2", "--output", "json"]);
    let v: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
    let envs = v["environments"].as_array().unwrap();
    assert_eq!(
        envs[0]["name"], "production",
        "production is reported first"
    );
    assert_eq!(
        (
            envs[0]["added"].as_u64(),
            envs[0]["changed"].as_u64(),
            envs[0]["removed"].as_u64()
        ),
        (Some(0), Some(1), Some(1))
    );
    assert_eq!(
        (
            envs[1]["added"].as_u64(),
            envs[1]["changed"].as_u64(),
            envs[1]["removed"].as_u64()
        ),
        (Some(1), Some(2), Some(0))
    );
    let web = &envs[0]["objects"]
        .as_array()
        .unwrap()
        .iter()
        .find(|o| o["name"] == "web")
        .unwrap();
    let fields: Vec<&str> = web["fields"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["path"].as_str().unwrap())
        .collect();
    assert!(fields.contains(&"metadata.labels.team"), "{fields:?}");
    assert!(
        fields.contains(&"spec.values.resources.limits.memory"),
        "{fields:?}"
    );
    assert_eq!(v["stale"], serde_json::json!([]));
}

#[test]
fn no_changes_exit_0_and_the_working_tree_is_untouched() {
    let repo = history();
    let out = repo.kairo(&["diff", "--base", "v2", "--head", "v2"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(out.stdout, "v2 -> v2: 0 added, 0 changed, 0 removed\n");

    // Against the working tree (the default head), after a hand edit of generated output.
    let web = "clusters/staging/releases/web.yaml";
    repo.write(
        web,
        &repo.read(web).replace("replicaCount: 2", "replicaCount: 5"),
    );
    let git = git2::Repository::open(repo.path()).unwrap();
    let index_before = std::fs::read(repo.path().join(".git/index")).unwrap();
    let out = repo.kairo(&["diff", "--base", "v2"]);
    assert_eq!(out.code, 1);
    assert!(out.stdout.contains("working tree: clusters/ is not what its environments render\n  changed clusters/staging/releases/web.yaml\n"), "{}", out.stdout);
    assert_eq!(
        std::fs::read(repo.path().join(".git/index")).unwrap(),
        index_before
    );
    let statuses = git.statuses(None).unwrap();
    assert_eq!(statuses.len(), 1, "only the hand edit is a change");
    assert_eq!(
        git.head()
            .unwrap()
            .peel_to_commit()
            .unwrap()
            .message()
            .unwrap(),
        "v2"
    );
}

#[test]
fn secret_values_are_masked_after_diffing() {
    let repo = history();
    // A team whose namespace template also emits a Secret (by kind, whatever its fields).
    repo.write(
        "templates/namespace.yaml.j2",
        "apiVersion: v1\nkind: Secret\nmetadata:\n  name: git\n  namespace: {{ env.namespace | yaml }}\nstringData:\n  branch: {{ env.branch | yaml }}\n",
    );
    render(&repo);
    commit(&repo, "secret", "s1", 1_700_000_200);
    repo.write(
        "environments/staging.yaml",
        &repo
            .read("environments/staging.yaml")
            .replace("branch: staging", "branch: hunter2"),
    );
    let out = repo.kairo(&["diff", "--base", "s1", "--env", "staging"]);
    assert_eq!(out.code, 1);
    assert!(
        out.stdout
            .contains("~ staging/git Secret: stringData.branch (masked) -> (masked)"),
        "{}",
        out.stdout
    );
    assert!(!out.stdout.contains("hunter2"), "{}", out.stdout);
}

#[test]
fn bad_revisions_and_invalid_sides_are_errors() {
    let repo = history();
    let out = repo.kairo(&["diff", "--base", "nope"]);
    assert_eq!(out.code, 2);
    assert!(
        out.stderr.contains("error: unknown revision `nope`"),
        "{}",
        out.stderr
    );
    repo.write(
        "environments/staging.yaml",
        "apiVersion: kairo.dev/v1alpha1\nkind: Environment\nspec: {}\n",
    );
    let out = repo.kairo(&["diff", "--base", "v2"]);
    assert_eq!(out.code, 2);
    assert!(
        out.stderr
            .contains("error: the environments at working tree are invalid"),
        "{}",
        out.stderr
    );
    let not_a_repo = Repo::with_staging();
    let out = not_a_repo.kairo(&["diff"]);
    assert_eq!(out.code, 2);
    assert!(
        out.stderr.contains("is not inside a git repository"),
        "{}",
        out.stderr
    );
}
