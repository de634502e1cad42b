//! Golden directories: `tests/golden/<case>/{environments,templates?,expected}`.
//! `expected/` mirrors `clusters/`; update it only with `cargo xtask golden`.

use crate::support::{Repo, copy_dir, manifest_dir, run_kairo, tree};

#[test]
fn golden() {
    let update = std::env::var_os("KAIRO_UPDATE_GOLDEN").is_some();
    let root = manifest_dir().join("tests/golden");
    let mut cases: Vec<_> = std::fs::read_dir(&root)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    cases.sort();
    assert!(!cases.is_empty());
    let mut failures = Vec::new();
    for case in cases {
        let name = case.file_name().unwrap().to_string_lossy().into_owned();
        let repo = Repo::new();
        copy_dir(
            &case.join("environments"),
            &repo.path().join("environments"),
        );
        if case.join("templates").is_dir() {
            std::fs::remove_dir_all(repo.path().join("templates")).unwrap();
            copy_dir(&case.join("templates"), &repo.path().join("templates"));
        }
        let out = run_kairo(repo.path(), &["render"]);
        assert_eq!(out.code, 0, "case {name}: {}", out.stderr);
        let expected_dir = case.join("expected");
        let actual = tree(&repo.path().join("clusters"));
        if update {
            let _ = std::fs::remove_dir_all(&expected_dir);
            copy_dir(&repo.path().join("clusters"), &expected_dir);
            continue;
        }
        let expected = tree(&expected_dir);
        if actual != expected {
            let names =
                |t: &[(String, Vec<u8>)]| t.iter().map(|(p, _)| p.clone()).collect::<Vec<_>>();
            let mut detail = format!("case `{name}` differs from {}\n", expected_dir.display());
            if names(&actual) != names(&expected) {
                detail.push_str(&format!(
                    "  files: {:?}\n  expected: {:?}\n",
                    names(&actual),
                    names(&expected)
                ));
            }
            for ((path, a), (_, e)) in actual.iter().zip(&expected) {
                if a != e {
                    detail.push_str(&format!("  {path} differs\n"));
                }
            }
            failures.push(detail);
        }
    }
    assert!(
        failures.is_empty(),
        "{}\nrun `cargo xtask golden` if the change is intended",
        failures.join("")
    );
}
