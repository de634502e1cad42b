//! The command line: help, completions, usage errors and exit codes.

use crate::support::{Repo, run_kairo};

#[test]
fn help_shows_examples_and_exit_codes() {
    let out = run_kairo(std::path::Path::new("."), &["--help"]);
    assert_eq!(out.code, 0);
    assert!(
        out.stdout.contains("kairo render --check"),
        "{}",
        out.stdout
    );
    assert!(
        out.stdout.contains(
            "Exit codes: 0 ok, 1 differences or violations found, 2 usage or input error."
        )
    );
}

#[test]
fn usage_errors_exit_2() {
    let out = run_kairo(std::path::Path::new("."), &["render", "--no-such-flag"]);
    assert_eq!(out.code, 2);
    assert!(out.stderr.contains("--no-such-flag"));
    let out = run_kairo(std::path::Path::new("."), &["render", "--output", "xml"]);
    assert_eq!(out.code, 2);
}

#[test]
fn completions_are_printed() {
    let out = run_kairo(std::path::Path::new("."), &["completions", "bash"]);
    assert_eq!(out.code, 0);
    assert!(
        out.stdout.contains("_kairo()"),
        "{}",
        &out.stdout[..200.min(out.stdout.len())]
    );
}

#[test]
fn a_missing_environments_directory_is_an_input_error() {
    let repo = Repo::new();
    std::fs::remove_dir(repo.path().join("environments")).unwrap();
    let out = repo.kairo(&["render"]);
    assert_eq!(out.code, 2);
    assert!(
        out.stderr.contains("error: failed to read `"),
        "{}",
        out.stderr
    );
    assert!(
        out.stderr
            .contains("hint: run kairo from the repository root, or pass `--root DIR`"),
        "{}",
        out.stderr
    );
}

#[test]
fn templates_are_embedded_and_overridden_file_by_file() {
    let repo = Repo::with_staging();
    std::fs::remove_dir_all(repo.path().join("templates")).unwrap();
    let out = repo.kairo(&["render"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let embedded = repo.read("clusters/staging/namespace.yaml");
    assert!(embedded.contains("kind: Namespace"), "{embedded}");
    // One file in templates/ replaces only that template.
    repo.write(
        "templates/namespace.yaml.j2",
        "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: {{ env.namespace | yaml }}\n  labels: {team: platform}\n",
    );
    let out = repo.kairo(&["render"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(
        repo.read("clusters/staging/namespace.yaml")
            .contains("team: platform")
    );
    assert_eq!(
        repo.read("clusters/staging/releases/web.yaml")
            .lines()
            .nth(1),
        Some("apiVersion: helm.toolkit.fluxcd.io/v2")
    );
}

#[test]
fn json_logs_go_to_stderr() {
    let repo = Repo::with_staging();
    let out = repo.kairo(&["render", "-v", "--log-format", "json", "--output", "json"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    serde_json::from_str::<serde_json::Value>(&out.stdout).expect("stdout is only the JSON report");
    let line = out
        .stderr
        .lines()
        .find(|l| l.contains("rendered"))
        .expect("a debug log line");
    let log: serde_json::Value = serde_json::from_str(line).unwrap();
    assert_eq!(log["level"], "DEBUG");
}

/// Text log lines follow the colour choice like every other line on stderr: plain in a pipe
/// (a CI log, a container's log) and with `--color never`, styled only when asked.
#[test]
fn text_logs_are_plain_unless_colour_is_asked_for() {
    let repo = Repo::with_staging();
    for args in [
        &["render", "-v"][..],
        &["render", "-v", "--color", "never"],
        &["render", "-v", "--color", "auto"],
    ] {
        let out = repo.kairo(args);
        assert_eq!(out.code, 0, "{}", out.stderr);
        assert!(out.stderr.contains("DEBUG"), "{args:?}: {}", out.stderr);
        assert!(!out.stderr.contains('\x1b'), "{args:?}: {:?}", out.stderr);
    }
    let out = repo.kairo(&["render", "-v", "--color", "always"]);
    assert!(out.stderr.contains('\x1b'), "{:?}", out.stderr);
}
