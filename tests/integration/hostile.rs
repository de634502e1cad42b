//! Hostile and extreme input: long values, YAML 1.1 spellings, links leaving the repository,
//! runaway templates, huge files. Each test names the defect it guards against.

use crate::support::{CATALOG, Repo, STAGING};

/// Runs `kairo render`, expects exit 2 and an untouched `clusters/`, returns stderr.
fn render_fails(repo: &Repo, args: &[&str]) -> String {
    let mut all = vec!["render"];
    all.extend_from_slice(args);
    let out = repo.kairo(&all);
    assert_eq!(
        out.code, 2,
        "stdout: {}\nstderr: {}",
        out.stdout, out.stderr
    );
    assert!(
        !repo.exists("clusters"),
        "an input error must not write anything"
    );
    out.stderr
}

fn render_ok(repo: &Repo) {
    let out = repo.kairo(&["render"]);
    assert_eq!(
        out.code, 0,
        "stdout: {}\nstderr: {}",
        out.stdout, out.stderr
    );
}

/// Values up to Kubernetes' own limits render: a 128-character tag, a 255-character
/// repository, a long Helm URL and a long chart version range.
#[test]
fn values_up_to_kubernetes_limits_render() {
    let repo = Repo::with_staging();
    let host = "123456789012.dkr.ecr.eu-central-1.amazonaws.com";
    let mut path = String::from("/platform-team/kai/coordinator-service");
    while host.len() + path.len() < 255 {
        path.push_str("/segment");
    }
    let repository = format!("{host}{path}")[..255]
        .trim_end_matches(['/', '-'])
        .to_string();
    let url = format!("https://charts.example.com/{}", "very-long-path/".repeat(6));
    let tag = "v".to_string() + &"1".repeat(127);
    repo.write(
        "environments/services.yaml",
        &CATALOG
            .replace("ghcr.io/acme/web", &repository)
            .replace("https://charts.example.com", &url),
    );
    repo.write(
        "environments/staging.yaml",
        &STAGING.replace("tag: \"1.0.0\"", &format!("tag: \"{tag}\"")),
    );
    render_ok(&repo);
    let web: serde_json::Value =
        serde_saphyr::from_str(&repo.read("clusters/staging/releases/web.yaml")).unwrap();
    assert_eq!(
        web["spec"]["values"]["image"]["repository"],
        repository.as_str()
    );
    assert_eq!(web["spec"]["values"]["image"]["tag"], tag.as_str());
    let source: serde_json::Value =
        serde_saphyr::from_str(&repo.read("clusters/staging/sources/charts.yaml")).unwrap();
    assert_eq!(source["spec"]["url"], url.as_str());
}

/// A long string with spaces, quotes and a newline, printed by the `yaml` filter inside a
/// nested block, reads back exactly.
#[test]
fn the_yaml_filter_keeps_long_and_multi_line_strings_inline() {
    let repo = Repo::with_staging();
    let long = format!(
        "{} \"quoted\" 'single' # not a comment: {}",
        "word ".repeat(40),
        "x".repeat(2048)
    );
    let value = format!("{long}\nsecond line\n");
    repo.write(
        "templates/namespace.yaml.j2",
        &format!(
            "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: {{{{ env.namespace | yaml }}}}\n  annotations:\n    long: {{{{ {:?} | yaml }}}}\n    multi: {{{{ {:?} | yaml }}}}\n",
            long, value
        ),
    );
    render_ok(&repo);
    let ns: serde_json::Value =
        serde_saphyr::from_str(&repo.read("clusters/staging/namespace.yaml")).unwrap();
    assert_eq!(ns["metadata"]["annotations"]["long"], long.as_str());
    assert_eq!(ns["metadata"]["annotations"]["multi"], value.as_str());
}

/// YAML 1.1 spellings (`yes`, `n`, `off`), quoted booleans and other capitalisations are
/// errors at their position: `enabled: n` must not silently delete a release.
#[test]
fn booleans_are_true_or_false_only() {
    for spelling in [
        "n",
        "no",
        "off",
        "\"false\"",
        "FALSE",
        "yes",
        "\"yes\"",
        "On",
        "1",
    ] {
        let repo = Repo::with_staging();
        repo.write(
            "environments/staging.yaml",
            &format!("{STAGING}      enabled: {spelling}\n"),
        );
        let stderr = render_fails(&repo, &[]);
        assert!(
            stderr.contains("environments/staging.yaml:16:16"),
            "{spelling}: {stderr}"
        );
        assert!(
            stderr.contains("hint: write `true` or `false`"),
            "{spelling}: {stderr}"
        );
    }
    for (field, spelling) in [("pinned", "yes"), ("autoscaling", "on")] {
        let repo = Repo::with_staging();
        if field == "pinned" {
            repo.write(
                "environments/staging.yaml",
                &format!("{STAGING}      pinned: {spelling}\n"),
            );
        } else {
            repo.write(
                "environments/services.yaml",
                &CATALOG.replace("autoscaling: true", &format!("autoscaling: {spelling}")),
            );
        }
        let stderr = render_fails(&repo, &[]);
        assert!(
            stderr.contains("hint: write `true` or `false`"),
            "{field}: {stderr}"
        );
    }
    let repo = Repo::with_staging();
    repo.write(
        "environments/staging.yaml",
        &format!("{STAGING}      enabled: true\n      pinned: false\n"),
    );
    render_ok(&repo);
}

/// `priorityClass` is a name wherever it is written: catalog, environment defaults, and
/// per-service overrides.
#[test]
fn priority_class_is_validated_everywhere() {
    let repo = Repo::with_staging();
    repo.write(
        "environments/staging.yaml",
        &STAGING
            .replace(
                "    pdb: {minAvailable: 1}\n",
                "    pdb: {minAvailable: 1}\n    priorityClass: Medium_Priority\n",
            )
            .replace(
                "      image: {tag: \"1.0.0\"}\n",
                "      image: {tag: \"1.0.0\"}\n      priorityClass: \"Bad Class!\"\n",
            ),
    );
    let stderr = render_fails(&repo, &[]);
    assert!(
        stderr.contains("priority class `Medium_Priority`"),
        "{stderr}"
    );
    assert!(
        stderr.contains("environments/staging.yaml:13:20"),
        "{stderr}"
    );
    assert!(stderr.contains("priority class `Bad Class!`"), "{stderr}");
    assert!(
        stderr.contains("environments/staging.yaml:17:22"),
        "{stderr}"
    );
}

/// Two environments that would render the same objects into the same cluster and namespace.
#[test]
fn two_environments_owning_the_same_objects_collide() {
    let repo = Repo::with_staging();
    repo.write(
        "environments/staging-copy.yaml",
        &STAGING
            .replace("name: staging", "name: staging-copy")
            .replace("\"1.0.0\"", "\"2.0.0\""),
    );
    let stderr = render_fails(&repo, &[]);
    assert!(
        stderr.contains("environments `staging` and `staging-copy` both render into cluster `acme-staging`, namespace `acme-staging`"),
        "{stderr}"
    );
    assert!(
        stderr.contains("environments/staging-copy.yaml:4:9"),
        "{stderr}"
    );
    assert!(stderr.contains("environments/staging.yaml"), "{stderr}");
}

/// A link in a pull request that points at the process environment (or any file outside the
/// repository) is refused, for every command that reads inputs, and its content never reaches
/// the output.
#[test]
fn links_leaving_the_repository_are_not_read() {
    let secret = "ghp_s3cr3t-token-value";
    let outside = tempfile::tempdir().unwrap();
    std::fs::write(
        outside.path().join("secret.yaml"),
        format!("apiVersion: kairo.dev/v1alpha1\nkind: Environment\nsecret: {secret}\n"),
    )
    .unwrap();
    let targets = [
        std::path::PathBuf::from("/proc/self/environ"),
        std::path::PathBuf::from("/etc/passwd"),
        outside.path().join("secret.yaml"),
    ];
    let env = [("KAIRO_GIT_TOKEN", secret)];
    for target in &targets {
        for (link, args) in [
            ("environments/leak.yaml", &["render"][..]),
            ("environments/leak.yaml", &["render", "--check"]),
            ("environments/leak.yaml", &["check"]),
            (
                "environments/leak.yaml",
                &["bump", "web", "1.0.1", "--env", "staging"],
            ),
            ("templates/namespace.yaml.j2", &["render"]),
            ("policies/leak.rego", &["check"]),
            ("policies/leak.yaml", &["render"]),
        ] {
            let repo = Repo::with_staging();
            let path = repo.path().join(link);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            let _ = std::fs::remove_file(&path);
            std::os::unix::fs::symlink(target, &path).unwrap();
            let out = crate::support::run_kairo_with_env(repo.path(), args, &env);
            let what = format!("{link} -> {} with {args:?}", target.display());
            assert_eq!(out.code, 2, "{what}: {}", out.stderr);
            assert!(
                !out.stderr.contains(secret) && !out.stdout.contains(secret),
                "{what}: {}",
                out.stderr
            );
            assert!(!out.stderr.contains("root:x:0"), "{what}: {}", out.stderr);
            assert!(
                out.stderr.contains(&format!(
                    "`{link}` is a symbolic link to a file outside the repository"
                )),
                "{what}: {}",
                out.stderr
            );
            assert!(!repo.exists("clusters"), "{what}");
        }
    }
}

/// A link that stays inside the repository is read like the file it points to.
#[test]
fn links_inside_the_repository_are_followed() {
    let repo = Repo::with_staging();
    repo.write("shared/staging.yaml", STAGING);
    std::fs::remove_file(repo.path().join("environments/staging.yaml")).unwrap();
    std::os::unix::fs::symlink(
        "../shared/staging.yaml",
        repo.path().join("environments/staging.yaml"),
    )
    .unwrap();
    render_ok(&repo);
    assert!(repo.exists("clusters/staging/releases/web.yaml"));
}

/// An error on a huge one-line file prints one bounded line, and control characters in the
/// input (terminal escapes) are printed escaped.
#[test]
fn error_snippets_are_bounded_and_escaped() {
    let repo = Repo::with_staging();
    let long = format!("\x1b[2J\x1b]0;pwned\x07{}", "x".repeat(5_000_000));
    repo.write(
        "environments/staging.yaml",
        &format!("{STAGING}      replicas: {long}\n"),
    );
    let out = repo.kairo(&["render"]);
    assert_eq!(out.code, 2);
    assert!(
        out.stderr.len() < 4_000,
        "{} bytes on stderr",
        out.stderr.len()
    );
    assert!(
        !out.stderr.contains('\x1b') && !out.stderr.contains('\x07'),
        "{:?}",
        out.stderr
    );
    assert!(out.stderr.contains("\\u{1b}[2J"), "{}", out.stderr);
    assert!(
        out.stderr.contains("environments/staging.yaml:16:17"),
        "{}",
        out.stderr
    );
    // The same in JSON output.
    let out = repo.kairo(&["render", "--output", "json"]);
    assert!(
        out.stdout.len() < 4_000,
        "{} bytes on stdout",
        out.stdout.len()
    );
}

/// Bytes that are not UTF-8 are reported at their line and column.
#[test]
fn non_utf8_is_reported_at_its_position() {
    let repo = Repo::with_staging();
    let mut bytes = STAGING.as_bytes().to_vec();
    bytes.extend_from_slice(b"      replicas: 3 # caf\xe9\n");
    std::fs::write(repo.path().join("environments/staging.yaml"), bytes).unwrap();
    let stderr = render_fails(&repo, &[]);
    assert!(
        stderr.contains("environments/staging.yaml:16:24"),
        "{stderr}"
    );
    assert!(stderr.contains("hint: save the file as UTF-8"), "{stderr}");
    // Templates too.
    let repo = Repo::with_staging();
    std::fs::write(
        repo.path().join("templates/namespace.yaml.j2"),
        b"apiVersion: v1\nkind: \xff\n",
    )
    .unwrap();
    let stderr = render_fails(&repo, &[]);
    assert!(
        stderr.contains("templates/namespace.yaml.j2:2:7"),
        "{stderr}"
    );
}

/// Errors of other parsers (a Rego syntax error quotes its line) are bounded too.
#[test]
fn policy_errors_are_bounded_and_escaped() {
    let repo = Repo::with_staging();
    repo.write(
        "policies/bad.rego",
        &format!(
            "package main\n\ndeny[msg] {{ \x1b[2J {} \n",
            "x ".repeat(20_000)
        ),
    );
    let out = repo.kairo(&["check"]);
    assert_eq!(out.code, 2, "{}", &out.stderr[..out.stderr.len().min(2000)]);
    assert!(
        out.stderr.len() < 10_000,
        "{} bytes on stderr",
        out.stderr.len()
    );
    assert!(!out.stderr.contains('\x1b'), "{:?}", out.stderr);
    assert!(out.stderr.contains("policies/bad.rego"), "{}", out.stderr);
}

/// `kairo diff` reads the working tree under the same rule.
#[test]
fn diff_does_not_read_links_leaving_the_repository() {
    let repo = Repo::with_staging();
    crate::support::commit_all(repo.path(), "init", 1_700_000_000);
    std::os::unix::fs::symlink("/etc/passwd", repo.path().join("environments/leak.yaml")).unwrap();
    let out = repo.kairo(&["diff"]);
    assert_eq!(out.code, 2, "{}", out.stderr);
    assert!(!out.stderr.contains("root:x:0") && !out.stdout.contains("root:x:0"));
    assert!(
        out.stderr.contains(
            "`environments/leak.yaml` is a symbolic link to a file outside the repository"
        ),
        "{}",
        out.stderr
    );
}

/// Output validation belongs to rendering: a template that emits a duplicate key, a second
/// document or another kind of object fails `render` (also with `--no-check`), `render
/// --check`, `check` and `diff`, naming the template and its line; nothing is written.
#[test]
fn invalid_template_output_fails_every_command() {
    let release = std::fs::read_to_string(
        crate::support::manifest_dir().join("templates/helmrelease.yaml.j2"),
    )
    .unwrap();
    let template_line =
        |needle: &str| release.lines().position(|l| l.starts_with(needle)).unwrap() + 1;
    for (broken, message, line) in [
        (
            release.replacen(
                "kind: HelmRelease\n",
                "kind: HelmRelease\nkind: HelmRelease\n",
                1,
            ),
            "duplicate key `kind`",
            template_line("kind: HelmRelease") + 1,
        ),
        (
            format!("{release}\n---\napiVersion: v1\nkind: ConfigMap\n"),
            "more than one YAML document",
            0,
        ),
        (
            release.replacen("helm.toolkit.fluxcd.io/v2\n", "apps/v1\n", 1),
            "`apiVersion: apps/v1`; expected `helm.toolkit.fluxcd.io/v2`",
            template_line("apiVersion:"),
        ),
        (
            release.replacen("kind: HelmRelease\n", "kind: Deployment\n", 1),
            "`kind: Deployment`; expected `HelmRelease`",
            template_line("kind:"),
        ),
    ] {
        let repo = Repo::with_staging();
        repo.write("templates/helmrelease.yaml.j2", &broken);
        for args in [
            &["render", "--no-check"][..],
            &["render", "--check"],
            &["check"],
        ] {
            let out = repo.kairo(args);
            assert_eq!(out.code, 2, "{message} {args:?}: {}", out.stderr);
            assert!(out.stderr.contains(message), "{args:?}: {}", out.stderr);
            assert!(
                out.stderr.contains("clusters/staging/releases/web.yaml"),
                "{args:?}: {}",
                out.stderr
            );
            let named = if line > 0 {
                format!("template `templates/helmrelease.yaml.j2` line {line}")
            } else {
                "template `templates/helmrelease.yaml.j2`".to_string()
            };
            assert!(
                out.stderr.contains(&named),
                "{args:?}: {named}: {}",
                out.stderr
            );
            assert!(!repo.exists("clusters"), "{args:?}");
        }
    }
}
