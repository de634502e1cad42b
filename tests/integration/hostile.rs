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

/// A template that loops (nearly) forever stops with an error naming it; `--template-fuel`
/// sets the limit.
#[test]
fn runaway_templates_run_out_of_fuel() {
    let repo = Repo::with_staging();
    repo.write(
        "templates/namespace.yaml.j2",
        "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: {{ env.namespace | yaml }}\n{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}\n",
    );
    let stderr = render_fails(&repo, &[]);
    assert!(
        stderr.contains("template `templates/namespace.yaml.j2` line 5: ran out of fuel"),
        "{stderr}"
    );
    assert!(stderr.contains("--template-fuel"), "{stderr}");
    // The shipped templates fit the default comfortably, and not a tiny limit.
    let repo = Repo::with_staging();
    let stderr = render_fails(&repo, &["--template-fuel", "20"]);
    assert!(stderr.contains("ran out of fuel"), "{stderr}");
    render_ok(&repo);
}

/// A "billion laughs" file stops at the alias limit with a message a person can act on;
/// `--yaml-alias-limit` raises it.
#[test]
fn alias_bombs_stop_at_a_limit_that_can_be_raised() {
    // `spec` before `kind` is skipped on the first read: every alias is replayed.
    let mut bomb = String::from(
        "apiVersion: kairo.dev/v1alpha1\nspec:\n  lol0: &l0 [lol, lol, lol, lol, lol, lol, lol, lol, lol, lol]\n",
    );
    for i in 1..=9 {
        let p = i - 1;
        bomb.push_str(&format!("  lol{i}: &l{i} [*l{p}, *l{p}, *l{p}, *l{p}, *l{p}, *l{p}, *l{p}, *l{p}, *l{p}, *l{p}]\n"));
    }
    let small: String = bomb
        .lines()
        .take(7)
        .map(|l| format!("{l}\n"))
        .collect::<String>()
        + "kind: Environment\n";
    let repo = Repo::with_staging();
    repo.write("environments/bomb.yaml", &bomb);
    let stderr = render_fails(&repo, &[]);
    assert!(stderr.contains("environments/bomb.yaml:"), "{stderr}");
    assert!(
        stderr.contains("aliases in this file expand to too much YAML"),
        "{stderr}"
    );
    assert!(stderr.contains("--yaml-alias-limit"), "{stderr}");
    assert!(!stderr.contains("Nodes {"), "{stderr}");
    // Five levels (100,000 values) pass a raised limit, and fail at a shape error instead.
    repo.write("environments/bomb.yaml", &small);
    let stderr = render_fails(&repo, &["--yaml-alias-limit", "50"]);
    assert!(
        stderr.contains("aliases in this file expand to too much YAML"),
        "{stderr}"
    );
    let stderr = render_fails(&repo, &["--yaml-alias-limit", "10000000"]);
    assert!(!stderr.contains("aliases in this file"), "{stderr}");
    assert!(stderr.contains("missing `metadata`"), "{stderr}");
}

/// A realistic large catalog (12,000 services, anchors and merge keys, several MB) is read.
#[test]
fn a_large_catalog_is_within_the_limits() {
    let mut catalog = String::from(
        "apiVersion: kairo.dev/v1alpha1\nkind: ServiceCatalog\nmetadata: {name: big}\nspec:\n  sources:\n    charts: {type: helm, url: https://charts.example.com}\n  services:\n",
    );
    for i in 0..12_000 {
        let (anchor, merge) = if i == 0 {
            (" &base", "")
        } else {
            ("", "      <<: *base\n")
        };
        catalog.push_str(&format!(
            "    service-{i:05}:{anchor}\n{merge}      chart: {{version: \">=1.0.0\", source: charts}}\n      image: {{repository: 123456789012.dkr.ecr.eu-central-1.amazonaws.com/platform-team/kai/service-{i:05}}}\n      resources:\n        requests: {{cpu: 200m, memory: 512Mi}}\n        limits: {{cpu: 1000m, memory: 2Gi}}\n      autoscaling: true\n      priorityClass: interactive\n      ports: [{{name: http, port: 3000}}, {{name: metrics, port: 9090}}]\n",
        ));
    }
    assert!(catalog.len() > 2_300_000, "{}", catalog.len());
    let repo = Repo::new();
    repo.write("environments/services.yaml", &catalog);
    repo.write(
        "environments/staging.yaml",
        &STAGING
            .replace("    web:\n", "    service-00042:\n")
            .replace("    web:", "    service-00042:"),
    );
    render_ok(&repo);
    assert!(repo.exists("clusters/staging/releases/service-00042.yaml"));
}

/// Each problem is reported once, where it is written.
#[test]
fn problems_point_at_what_is_wrong() {
    // defaults.hpa with min > max: once, at the defaults (line 12), not at each service.
    let repo = Repo::with_staging();
    repo.write(
        "environments/staging.yaml",
        &format!(
            "{}    other:\n      image: {{tag: \"1.0.0\"}}\n",
            STAGING.replace(
                "hpa: {minReplicas: 2, maxReplicas: 4}",
                "hpa: {minReplicas: 5, maxReplicas: 4}"
            )
        ),
    );
    repo.write(
        "environments/services.yaml",
        &format!("{CATALOG}    other:\n      chart: {{version: \"1\", source: charts}}\n      image: {{repository: ghcr.io/acme/other}}\n      autoscaling: true\n"),
    );
    let stderr = render_fails(&repo, &[]);
    assert_eq!(stderr.matches("error:").count(), 2, "{stderr}");
    assert!(
        stderr.contains("environments/staging.yaml:11:24"),
        "{stderr}"
    );
    assert!(
        stderr.contains("minReplicas 5 is greater than maxReplicas 4"),
        "{stderr}"
    );

    // A resource multiplier too large for any quantity: one error, at the multiplier.
    let repo = Repo::with_staging();
    repo.write(
        "environments/staging.yaml",
        &STAGING.replace("  defaults:\n", "  resourceMultiplier: 1e30\n  defaults:\n"),
    );
    let stderr = render_fails(&repo, &[]);
    assert_eq!(stderr.matches("error:").count(), 2, "{stderr}");
    assert!(
        stderr.contains("environments/staging.yaml:9:23"),
        "{stderr}"
    );

    // An invalid label value: at the value.
    let repo = Repo::with_staging();
    repo.write(
        "environments/staging.yaml",
        &STAGING.replace(
            "  services:\n",
            "  nodePools:\n    general:\n      labels: {node-type: \"bad value!\"}\n  services:\n",
        ),
    );
    let stderr = render_fails(&repo, &[]);
    assert!(
        stderr.contains("environments/staging.yaml:15:27"),
        "{stderr}"
    );
    assert!(stderr.contains("value `bad value!`"), "{stderr}");

    // A tab in the indentation: on its own line.
    let repo = Repo::with_staging();
    repo.write(
        "environments/staging.yaml",
        &STAGING.replace("kind: Environment\n", "\tkind: Environment\n"),
    );
    let stderr = render_fails(&repo, &[]);
    assert!(stderr.contains("environments/staging.yaml:2:1"), "{stderr}");
    assert!(stderr.contains("tab"), "{stderr}");
}

/// A file that cannot be written (immutable, read-only file system) is found before the
/// first write: exit 2 and nothing written.
#[test]
fn unwritable_targets_are_found_before_writing() {
    let repo = Repo::with_staging();
    render_ok(&repo);
    let web = repo.path().join("clusters/staging/releases/web.yaml");
    repo.write(
        "environments/staging.yaml",
        &STAGING
            .replace("1.0.0", "1.0.1")
            .replace("replicas: 2", "replicas: 3"),
    );
    let chattr = |flag: &str| {
        std::process::Command::new("chattr")
            .arg(flag)
            .arg(&web)
            .status()
            .is_ok_and(|s| s.success())
    };
    if !chattr("+i") {
        eprintln!("note: chattr +i is not available here; the fail point test covers the rest");
        return;
    }
    let before = crate::support::tree(repo.path());
    let out = repo.kairo(&["render"]);
    chattr("-i");
    assert_eq!(out.code, 2, "{}", out.stderr);
    assert!(out.stderr.contains("nothing was written"), "{}", out.stderr);
    assert!(out.stderr.contains("releases/web.yaml"), "{}", out.stderr);
    assert_eq!(crate::support::tree(repo.path()), before);
    render_ok(&repo);
}

/// A write that fails midway (fail point) says what was written and that a re-run
/// completes the render; the re-run does.
#[test]
fn a_write_failing_midway_says_what_was_written() {
    let repo = Repo::with_staging();
    let fresh = Repo::with_staging();
    render_ok(&fresh);
    let out = crate::support::run_kairo_with_env(
        repo.path(),
        &["render"],
        &[("KAIRO_FAILPOINT_ERROR", "apply-write")],
    );
    assert_eq!(out.code, 2, "{}", out.stderr);
    assert!(
        out.stderr.contains("writing stopped after"),
        "{}",
        out.stderr
    );
    assert!(
        out.stderr
            .contains("written before the failure: `clusters/staging/"),
        "{}",
        out.stderr
    );
    assert!(
        out.stderr
            .contains("run `kairo render` again to complete the render"),
        "{}",
        out.stderr
    );
    render_ok(&repo);
    assert_eq!(
        crate::support::tree(&repo.path().join("clusters")),
        crate::support::tree(&fresh.path().join("clusters"))
    );
}
