//! `cargo xtask bench`: times the release build of kairo on a synthetic repository of
//! N environments x M services, and compares it with copying the generated tree (`cp -r`).
//! Targets are reported, not asserted: only errors and a no-op render that writes files fail.
//! The repository carries the shipped `policies/`, so renders evaluate them as users' do; it is
//! a git repository from the start, so the policy result cache (`.git/kairo/`) is in play:
//! "cold" runs set the cache aside first, the others find it warm.
//!
//! Trees are never deleted between runs, only renamed into `target/bench/trash/`, which is
//! emptied at the end. On ext4 without a journal, creating files shortly (60 s to 6 min) after
//! deleting many is slow: the inode allocator skips every recently deleted inode, one buffer
//! lookup each (`recently_deleted` in `fs/ext4/ialloc.c`). Deleting the 25,000 files before each
//! run made the next runs several times slower, nearly all of it kernel time. A bench started
//! within a minute or two of the previous one may still pay for that one's clean-up.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::Result;

const FULL_TARGET_S: f64 = 1.5;
const NOOP_TARGET_S: f64 = 0.3;
const CP_RATIO_TARGET: f64 = 3.0;
const DIFF_TARGET_S: f64 = 2.0;
/// `bump --all` of one environment's 500 services, in one commit (issue 7).
const BUMP_ALL_TARGET_S: f64 = 1.0;
const BUMP_TARGET_S: f64 = 0.3;
const CHECK_TARGET_S: f64 = 2.0;

pub struct Options {
    envs: usize,
    services: usize,
}

impl Options {
    pub fn parse(args: &[String]) -> Result<Options> {
        let mut o = Options {
            envs: 50,
            services: 500,
        };
        let mut args = args.iter();
        while let Some(flag) = args.next() {
            let slot = match flag.as_str() {
                "--envs" => &mut o.envs,
                "--services" => &mut o.services,
                other => {
                    return Err(format!(
                        "bench: unknown argument `{other}`; usage: bench [--envs N] [--services M]"
                    ));
                }
            };
            let value = args
                .next()
                .ok_or_else(|| format!("bench: `{flag}` needs a number"))?;
            *slot =
                value.parse().ok().filter(|&n| n > 0).ok_or_else(|| {
                    format!("bench: `{flag}` needs a positive number, not `{value}`")
                })?;
        }
        Ok(o)
    }
}

/// Generates the synthetic repository in `dir` (which must not exist) and commits it, for
/// profiling one command by hand; nothing is measured.
pub fn repo(o: &Options, dir: &str) -> Result {
    let repo = Path::new(dir);
    if repo.exists() {
        return Err(format!("bench repo: {dir} already exists"));
    }
    generate(&crate::root(), repo, o)?;
    git(repo, &["init", "-q"])?;
    eprintln!(
        "generated {} environments x {} services in {dir}; run `kairo render --root {dir}`",
        o.envs, o.services
    );
    Ok(())
}

pub fn run(o: &Options) -> Result {
    let root = crate::root();
    let target =
        std::env::var_os("CARGO_TARGET_DIR").map_or_else(|| root.join("target"), PathBuf::from);
    crate::step(
        "build kairo (release)",
        &mut crate::cargo(&["build", "--release", "--bin", "kairo"]),
    )?;
    let kairo = target.join("release/kairo");
    let dir = target.join("bench");
    let repo = dir.join("repo");
    let clusters = repo.join("clusters");
    let copy = dir.join("cp-copy");
    let mut trash = Trash::new(dir.join("trash"));

    eprintln!(
        "==> generate {} environments x {} services in {}",
        o.envs,
        o.services,
        repo.display()
    );
    trash.set_aside(&repo)?;
    generate(&root, &repo, o)?;
    git(&repo, &["init", "-q"])?;
    let policy_cache = repo.join(".git/kairo");
    let render = |extra: &[&str]| {
        let mut cmd = Command::new(&kairo);
        cmd.arg("render").arg("--root").arg(&repo).args(extra);
        cmd
    };

    eprintln!("==> full render into an empty clusters/, policies not cached (3 runs)");
    let mut full = Vec::new();
    let mut created = 0;
    let mut warnings = 0;
    for _ in 0..3 {
        trash.set_aside(&clusters)?;
        trash.set_aside(&policy_cache)?;
        let (took, report) = timed_json(&mut render(&["--output", "json"]))?;
        created = list_len(&report, "changes")?;
        warnings = list_len(&report, "warnings")?;
        full.push(took);
    }
    if warnings > 0 {
        eprintln!("note: the synthetic repository renders with {warnings} warning(s)");
    }

    eprintln!("==> no-op render (5 runs)");
    let mut noop = Vec::new();
    let mut noop_changes = 0;
    for _ in 0..5 {
        let (took, report) = timed_json(&mut render(&["--output", "json"]))?;
        noop_changes = noop_changes.max(list_len(&report, "changes")?);
        noop.push(took);
    }
    if noop_changes > 0 {
        return Err(format!(
            "a no-op render reported {noop_changes} change(s): rendering is not idempotent (see `kairo render --check --root {}`)",
            repo.display()
        ));
    }

    eprintln!("==> no-op render --no-check (5 runs)");
    let noop_unchecked = (0..5)
        .map(|_| timed(&mut render(&["--no-check"])).map(|(took, _)| took))
        .collect::<Result<Vec<_>>>()?;

    eprintln!("==> render --check on an up-to-date tree (5 runs)");
    let check = (0..5)
        .map(|_| timed(&mut render(&["--check"])).map(|(took, _)| took))
        .collect::<Result<Vec<_>>>()?;

    let policy_check = || {
        let mut cmd = Command::new(&kairo);
        cmd.args(["check", "--output", "json", "--root"]).arg(&repo);
        cmd
    };
    eprintln!("==> kairo check of every object, policies not cached (3 runs)");
    let mut check_cold = Vec::new();
    let mut objects = 0;
    for _ in 0..3 {
        trash.set_aside(&policy_cache)?;
        let (took, report) = timed_json(&mut policy_check())?;
        objects = report["objects"].as_u64().unwrap_or(0);
        if report["checked"] != true {
            return Err("kairo check did not evaluate any policy".into());
        }
        check_cold.push(took);
    }
    eprintln!("==> kairo check of every object, cache warm (3 runs)");
    let check_warm = (0..3)
        .map(|_| timed(&mut policy_check()).map(|(took, _)| took))
        .collect::<Result<Vec<_>>>()?;
    eprintln!("==> peak memory of kairo check, policies not cached");
    trash.set_aside(&policy_cache)?;
    let check_rss = peak_rss(policy_check(), &[0])?;

    eprintln!("==> cp -r of the generated tree (3 runs)");
    let mut cp = Vec::new();
    for _ in 0..3 {
        trash.set_aside(&copy)?;
        let (took, _) = timed(Command::new("cp").arg("-r").arg(&clusters).arg(&copy))?;
        cp.push(took);
    }
    trash.set_aside(&copy)?;

    eprintln!("==> peak memory of a full render");
    trash.set_aside(&clusters)?;
    // SAFETY: as in `timed`.
    unsafe { libc::sync() };
    let max_rss = peak_rss(render(&["--output", "json"]), &[0])?;
    let (files, bytes) = tree_size(&clusters)?;

    eprintln!("==> kairo diff of a commit that changes 1% of the services (3 runs)");
    let changed = commit_one_percent(&repo, &kairo)?;
    let diff_cmd = || {
        let mut cmd = Command::new(&kairo);
        cmd.args([
            "diff", "--base", "HEAD~1", "--head", "HEAD", "--output", "json", "--root",
        ])
        .arg(&repo);
        cmd
    };
    // `kairo diff` exits 1 when it finds changes, which is the point here.
    let mut diff_runs = Vec::new();
    let mut report = Value::Null;
    for _ in 0..3 {
        // SAFETY: as in `timed`.
        unsafe { libc::sync() };
        let start = Instant::now();
        let out = diff_cmd()
            .output()
            .map_err(|e| format!("cannot run kairo diff: {e}"))?;
        diff_runs.push(start.elapsed());
        if out.status.code() != Some(1) {
            return Err(format!(
                "kairo diff exited {:?}: {}",
                out.status.code(),
                String::from_utf8_lossy(&out.stderr)
            ));
        }
        report =
            serde_json::from_slice(&out.stdout).map_err(|e| format!("kairo diff JSON: {e}"))?;
    }
    let reported: u64 = report["environments"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|env| env["changed"].as_u64().unwrap_or(0))
        .sum();
    let diff_rss = peak_rss(diff_cmd(), &[1])?;
    let diff_s = median(&diff_runs);

    eprintln!(
        "==> kairo bump --commit, and the text-edit baseline (yq -yi + git commit -am), 3 runs each"
    );
    let mut bump_runs = Vec::new();
    for i in 0..3 {
        let mut cmd = Command::new(&kairo);
        cmd.args([
            "bump",
            "svc-0001",
            &format!("bump{i}"),
            "--env",
            "env-00",
            "--commit",
            "--no-check",
        ])
        .args(["--author", "bench <bench@kairo.invalid>", "--root"])
        .arg(&repo);
        bump_runs.push(timed(&mut cmd)?.0);
    }
    let bump_s = median(&bump_runs);
    eprintln!("==> kairo bump --all (every service of one environment, one commit), 3 runs");
    let mut all_runs = Vec::new();
    for i in 0..3 {
        let mut cmd = Command::new(&kairo);
        cmd.args([
            "bump",
            "--env",
            "env-00",
            "--all",
            &format!("all{i}"),
            "--commit",
            "--no-check",
        ])
        .args(["--author", "bench <bench@kairo.invalid>", "--root"])
        .arg(&repo);
        all_runs.push(timed(&mut cmd)?.0);
    }
    let all_s = median(&all_runs);
    let yq_runs = if Command::new("yq")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success())
    {
        let mut runs = Vec::new();
        for i in 0..3 {
            let script = format!(
                "yq -yi '.spec.values.image.tag = \"yq{i}\"' clusters/env-00/releases/svc-0002.yaml && git -c user.name=bench -c user.email=bench@kairo.invalid commit -qam 'ci: update image tags'"
            );
            let mut cmd = Command::new("sh");
            cmd.args(["-c", &script]).current_dir(&repo);
            runs.push(timed(&mut cmd)?.0);
        }
        Some(runs)
    } else {
        eprintln!("note: yq is not installed (Debian package `yq`); the baseline is skipped");
        None
    };

    let (full_s, noop_s, check_s, cp_s) =
        (median(&full), median(&noop), median(&check), median(&cp));
    let ratio = full_s / cp_s;
    let verdict = |ok: bool| if ok { "ok" } else { "over" };
    // The spread is shown next to the median: on a busy or virtualised disk it can be large.
    let timing = |runs: &[Duration]| {
        let lo = runs.iter().min().expect("at least one run").as_secs_f64();
        let hi = runs.iter().max().expect("at least one run").as_secs_f64();
        format!("{:.3} s ({lo:.2}-{hi:.2})", median(runs))
    };
    let rows = [
        (
            "full render (median of 3)",
            timing(&full),
            format!("<= {FULL_TARGET_S} s"),
            verdict(full_s <= FULL_TARGET_S),
        ),
        (
            "no-op render (median of 5)",
            timing(&noop),
            format!("<= {NOOP_TARGET_S} s"),
            verdict(noop_s <= NOOP_TARGET_S),
        ),
        (
            "no-op render --no-check",
            timing(&noop_unchecked),
            "-".into(),
            "",
        ),
        (
            "no-op files written",
            noop_changes.to_string(),
            "0".into(),
            "ok",
        ),
        (
            "render --check (median of 5)",
            timing(&check),
            format!("<= {NOOP_TARGET_S} s"),
            verdict(check_s <= NOOP_TARGET_S),
        ),
        (
            "check, cold (median of 3)",
            timing(&check_cold),
            format!("<= {CHECK_TARGET_S} s"),
            verdict(median(&check_cold) <= CHECK_TARGET_S),
        ),
        (
            "check, cache warm (median of 3)",
            timing(&check_warm),
            format!("<= {CHECK_TARGET_S} s"),
            verdict(median(&check_warm) <= CHECK_TARGET_S),
        ),
        ("objects checked", objects.to_string(), "-".into(), ""),
        (
            "peak RSS, check cold",
            format!("{:.1} MiB", check_rss as f64 / MIB),
            "-".into(),
            "",
        ),
        (
            "cp -r of the tree (median of 3)",
            timing(&cp),
            "-".into(),
            "",
        ),
        (
            "full render / cp -r",
            format!("{ratio:.1}x"),
            format!("<= {CP_RATIO_TARGET}x"),
            verdict(ratio <= CP_RATIO_TARGET),
        ),
        (
            "peak RSS, full render",
            format!("{:.1} MiB", max_rss as f64 / MIB),
            "-".into(),
            "",
        ),
        (
            "diff, 1% changed (median)",
            timing(&diff_runs),
            format!("<= {DIFF_TARGET_S} s"),
            verdict(diff_s <= DIFF_TARGET_S),
        ),
        (
            "diff: changed objects found",
            reported.to_string(),
            changed.to_string(),
            verdict(reported == changed as u64),
        ),
        (
            "peak RSS, diff",
            format!("{:.1} MiB", diff_rss as f64 / MIB),
            "-".into(),
            "",
        ),
        (
            "bump --all, one environment (median)",
            timing(&all_runs),
            format!("<= {BUMP_ALL_TARGET_S} s"),
            verdict(all_s <= BUMP_ALL_TARGET_S),
        ),
        (
            "bump --commit (median)",
            timing(&bump_runs),
            format!("<= {BUMP_TARGET_S} s"),
            verdict(bump_s <= BUMP_TARGET_S),
        ),
        (
            "baseline: yq -yi + git commit -am",
            yq_runs.as_deref().map_or("not run".into(), timing),
            "-".into(),
            "",
        ),
        ("files generated", files.to_string(), "-".into(), ""),
        (
            "bytes generated",
            format!("{bytes} ({:.1} MiB)", bytes as f64 / MIB),
            "-".into(),
            "",
        ),
    ];
    println!(
        "\n{} environments x {} services = {} HelmReleases ({created} files created per full render)\n",
        o.envs,
        o.services,
        o.envs * o.services
    );
    println!(
        "{:<32} {:>24}  {:>10}  status",
        "metric", "value (min-max)", "target"
    );
    for (metric, value, target, status) in rows {
        println!("{metric:<32} {value:>24}  {target:>10}  {status}");
    }

    let results = json!({
        "environments": o.envs,
        "services": o.services,
        "helmReleases": o.envs * o.services,
        "fullRenderSeconds": {"median": full_s, "runs": secs(&full), "target": FULL_TARGET_S},
        "noopRenderSeconds": {"median": noop_s, "runs": secs(&noop), "target": NOOP_TARGET_S},
        "noopChanges": noop_changes,
        "checkSeconds": {"median": check_s, "runs": secs(&check), "target": NOOP_TARGET_S},
        "noopUncheckedSeconds": {"median": median(&noop_unchecked), "runs": secs(&noop_unchecked)},
        "policyCheckColdSeconds": {"median": median(&check_cold), "runs": secs(&check_cold), "target": CHECK_TARGET_S},
        "policyCheckWarmSeconds": {"median": median(&check_warm), "runs": secs(&check_warm), "target": CHECK_TARGET_S},
        "policyCheckObjects": objects,
        "policyCheckPeakRssBytes": check_rss,
        "cpSeconds": {"median": cp_s, "runs": secs(&cp)},
        "fullOverCp": {"value": ratio, "target": CP_RATIO_TARGET},
        "peakRssBytes": max_rss,
        "diffSeconds": {"median": diff_s, "runs": secs(&diff_runs), "target": DIFF_TARGET_S, "changedObjects": reported},
        "diffPeakRssBytes": diff_rss,
        "bumpCommitSeconds": {"median": bump_s, "runs": secs(&bump_runs), "target": BUMP_TARGET_S},
        "bumpAllSeconds": {"median": all_s, "runs": secs(&all_runs), "target": BUMP_ALL_TARGET_S},
        "yqBaselineSeconds": yq_runs.as_deref().map(|r| json!({"median": median(r), "runs": secs(r)})),
        "files": files,
        "bytes": bytes,
        "warnings": warnings,
    });
    let path = dir.join("results.json");
    let text = serde_json::to_string_pretty(&results).expect("plain JSON values") + "\n";
    std::fs::write(&path, text).map_err(|e| format!("cannot write {}: {e}", path.display()))?;
    println!("\nwritten to {}", path.display());
    eprintln!("==> remove the scratch trees");
    trash.empty()
}

const MIB: f64 = 1024.0 * 1024.0;

/// Commits the rendered repository, then changes the image tag of 1% of all (environment,
/// service) pairs, re-renders and commits again. Returns how many releases changed.
fn commit_one_percent(repo: &Path, kairo: &Path) -> Result<usize> {
    let git = |args: &[&str]| git(repo, args);
    git(&["add", "-A"])?;
    git(&["commit", "-q", "-m", "base"])?;
    let mut changed = 0;
    let dir = repo.join("environments");
    let mut names: Vec<_> = std::fs::read_dir(&dir)
        .map_err(|e| format!("cannot list {}: {e}", dir.display()))?
        .flatten()
        .map(|e| e.path())
        .filter(|p| {
            p.file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with("env-"))
        })
        .collect();
    names.sort();
    for path in names {
        let text =
            std::fs::read_to_string(&path).map_err(|e| format!("{}: {e}", path.display()))?;
        let total = text.lines().filter(|l| l.starts_with("    svc-")).count();
        let mut budget = total.div_ceil(100);
        let mut out = String::with_capacity(text.len());
        for line in text.lines() {
            if budget > 0 && line.starts_with("    svc-") && line.contains("{image: {tag: \"") {
                let start = line.find("tag: \"").expect("checked") + 6;
                let end = start + line[start..].find('"').expect("closing quote");
                out.push_str(&line[..start]);
                out.push_str("bench01");
                out.push_str(&line[end..]);
                budget -= 1;
                changed += 1;
            } else {
                out.push_str(line);
            }
            out.push('\n');
        }
        std::fs::write(&path, out).map_err(|e| format!("{}: {e}", path.display()))?;
    }
    let status = Command::new(kairo)
        .args(["render", "--root"])
        .arg(repo)
        .stdout(Stdio::null())
        .status()
        .map_err(|e| format!("cannot run kairo: {e}"))?;
    if !status.success() {
        return Err("kairo render of the changed repository failed".into());
    }
    git(&["add", "-A"])?;
    git(&["commit", "-q", "-m", "change 1%"])?;
    Ok(changed)
}

/// Runs git in `repo` with a fixed identity, output discarded.
fn git(repo: &Path, args: &[&str]) -> Result {
    let status = Command::new("git")
        .args(args)
        .current_dir(repo)
        .env("GIT_AUTHOR_NAME", "bench")
        .env("GIT_AUTHOR_EMAIL", "bench@kairo.invalid")
        .env("GIT_COMMITTER_NAME", "bench")
        .env("GIT_COMMITTER_EMAIL", "bench@kairo.invalid")
        .stdout(Stdio::null())
        .status()
        .map_err(|e| format!("cannot run git: {e}"))?;
    if status.success() {
        Ok(())
    } else {
        Err(format!("git {args:?} failed"))
    }
}

fn median(runs: &[Duration]) -> f64 {
    let mut sorted = runs.to_vec();
    sorted.sort();
    sorted[sorted.len() / 2].as_secs_f64()
}

fn secs(runs: &[Duration]) -> Vec<f64> {
    runs.iter().map(Duration::as_secs_f64).collect()
}

fn describe(cmd: &Command) -> String {
    let mut s = cmd.get_program().to_string_lossy().into_owned();
    for a in cmd.get_args() {
        s.push(' ');
        s.push_str(&a.to_string_lossy());
    }
    s
}

/// Runs `cmd` to completion (output captured) and returns its wall time and stdout.
fn timed(cmd: &mut Command) -> Result<(Duration, Vec<u8>)> {
    // Flush what earlier runs left dirty (tens of MB), so that its writeback is not charged to
    // this run.
    // SAFETY: sync(2) takes no arguments and cannot fail.
    unsafe { libc::sync() };
    let start = Instant::now();
    let out = cmd
        .output()
        .map_err(|e| format!("cannot run `{}`: {e}", describe(cmd)))?;
    let took = start.elapsed();
    if !out.status.success() {
        return Err(format!(
            "`{}` failed ({}):\n{}",
            describe(cmd),
            out.status,
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    Ok((took, out.stdout))
}

fn timed_json(cmd: &mut Command) -> Result<(Duration, Value)> {
    let (took, stdout) = timed(cmd)?;
    let report = serde_json::from_slice(&stdout)
        .map_err(|e| format!("`{}` printed invalid JSON: {e}", describe(cmd)))?;
    Ok((took, report))
}

fn list_len(report: &Value, key: &str) -> Result<usize> {
    report[key]
        .as_array()
        .map(Vec::len)
        .ok_or_else(|| format!("kairo's JSON report has no `{key}` list"))
}

/// Runs `cmd` and returns its peak resident set size in bytes.
///
/// `wait4` gives the resource usage of exactly this child. `getrusage(RUSAGE_CHILDREN)` would
/// report the maximum over every process this one has waited for, which includes the rustc
/// processes of the release build above.
/// Peak RSS of `cmd`, which must exit with one of `ok` (the diff exits 1 when it finds changes).
fn peak_rss(mut cmd: Command, ok: &[i32]) -> Result<u64> {
    // stdout is not read: a pipe could fill up and block kairo before it exits.
    let child = cmd
        .stdout(Stdio::null())
        .spawn()
        .map_err(|e| format!("cannot run `{}`: {e}", describe(&cmd)))?;
    let pid = child.id() as libc::pid_t;
    let mut status = 0;
    // SAFETY: `rusage` is plain old data, so all zeroes is a valid value.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    loop {
        // SAFETY: valid pointers to locals; the child is reaped here and `child` is never waited
        // on (dropping a `Child` neither waits nor kills).
        let r = unsafe { libc::wait4(pid, &mut status, 0, &mut usage) };
        if r == pid {
            break;
        }
        let err = std::io::Error::last_os_error();
        if err.kind() != std::io::ErrorKind::Interrupted {
            return Err(format!("wait4 on `{}`: {err}", describe(&cmd)));
        }
    }
    drop(child);
    if !(libc::WIFEXITED(status) && ok.contains(&libc::WEXITSTATUS(status))) {
        return Err(format!(
            "`{}` failed (wait status {status})",
            describe(&cmd)
        ));
    }
    // Linux reports ru_maxrss in KiB.
    Ok(usage.ru_maxrss as u64 * 1024)
}

/// Number of files and their total size under `dir`, hidden files included.
fn tree_size(dir: &Path) -> Result<(u64, u64)> {
    let (mut files, mut bytes) = (0, 0);
    let entries =
        std::fs::read_dir(dir).map_err(|e| format!("cannot read {}: {e}", dir.display()))?;
    for entry in entries {
        let entry = entry.map_err(|e| format!("cannot read {}: {e}", dir.display()))?;
        let meta = entry
            .metadata()
            .map_err(|e| format!("cannot stat {}: {e}", entry.path().display()))?;
        if meta.is_dir() {
            let (f, b) = tree_size(&entry.path())?;
            files += f;
            bytes += b;
        } else {
            files += 1;
            bytes += meta.len();
        }
    }
    Ok((files, bytes))
}

/// Where trees go instead of being deleted while measuring (see the module comment).
struct Trash {
    dir: PathBuf,
    next: usize,
}

impl Trash {
    fn new(dir: PathBuf) -> Trash {
        Trash { dir, next: 0 }
    }

    /// Moves `path`, if it exists, out of the way; a rename costs nothing to later runs.
    fn set_aside(&mut self, path: &Path) -> Result {
        if !path.exists() {
            return Ok(());
        }
        std::fs::create_dir_all(&self.dir)
            .map_err(|e| format!("cannot create {}: {e}", self.dir.display()))?;
        loop {
            let to = self.dir.join(self.next.to_string());
            self.next += 1;
            if !to.exists() {
                return std::fs::rename(path, &to).map_err(|e| {
                    format!("cannot move {} to {}: {e}", path.display(), to.display())
                });
            }
        }
    }

    fn empty(self) -> Result {
        match std::fs::remove_dir_all(&self.dir) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                Err(format!("cannot remove {}: {e}", self.dir.display()))
            }
            _ => Ok(()),
        }
    }
}

fn copy_dir(from: &Path, to: &Path) -> Result {
    std::fs::create_dir_all(to).map_err(|e| format!("cannot create {}: {e}", to.display()))?;
    let entries =
        std::fs::read_dir(from).map_err(|e| format!("cannot read {}: {e}", from.display()))?;
    for entry in entries {
        let entry = entry.map_err(|e| format!("cannot read {}: {e}", from.display()))?;
        let dest = to.join(entry.file_name());
        if entry.path().is_dir() {
            copy_dir(&entry.path(), &dest)?;
        } else {
            std::fs::copy(entry.path(), &dest)
                .map_err(|e| format!("cannot copy {}: {e}", entry.path().display()))?;
        }
    }
    Ok(())
}

// ---- Synthetic repository ------------------------------------------------------------------

/// Deterministic commit-like image tag: the same options always give the same repository.
fn tag(env: usize, svc: usize) -> String {
    // splitmix64 finaliser
    let mut x = ((env as u64) << 32 | svc as u64).wrapping_add(0x9e37_79b9_7f4a_7c15);
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^= x >> 31;
    format!("{:07x}", x & 0xfff_ffff)
}

fn is_gpu(svc: usize) -> bool {
    svc % 10 == 7
}

/// Writes a new `<repo>/{templates,policies,environments}`: the real templates and policies, a
/// catalog and N environments.
fn generate(root: &Path, repo: &Path, o: &Options) -> Result {
    copy_dir(&root.join("templates"), &repo.join("templates"))?;
    copy_dir(&root.join("policies"), &repo.join("policies"))?;
    let env_dir = repo.join("environments");
    std::fs::create_dir_all(&env_dir)
        .map_err(|e| format!("cannot create {}: {e}", env_dir.display()))?;
    let svc_width = o.services.saturating_sub(1).to_string().len().max(4);
    let env_width = o.envs.saturating_sub(1).to_string().len().max(2);
    let services: Vec<String> = (0..o.services)
        .map(|i| format!("svc-{i:0svc_width$}"))
        .collect();

    let write = |name: String, text: String| {
        let path = env_dir.join(name);
        std::fs::write(&path, text).map_err(|e| format!("cannot write {}: {e}", path.display()))
    };
    write("services.yaml".into(), catalog(&services))?;
    for e in 0..o.envs {
        write(
            format!("env-{e:0env_width$}.yaml"),
            environment(e, &format!("env-{e:0env_width$}"), &services),
        )?;
    }
    Ok(())
}

/// Staging-like (1x) base resources: (cpu request, memory request, cpu limit, memory limit).
const PROFILES: [(&str, &str, &str, &str); 4] = [
    ("100m", "256Mi", "500m", "512Mi"),
    ("200m", "512Mi", "1000m", "2Gi"),
    ("250m", "512Mi", "1000m", "1Gi"),
    ("500m", "1Gi", "2000m", "4Gi"),
];

fn catalog(services: &[String]) -> String {
    let mut s = String::from(
        "# Generated by `cargo xtask bench`.\n\
         apiVersion: kairo.dev/v1alpha1\n\
         kind: ServiceCatalog\n\
         metadata:\n  name: bench\n\
         spec:\n  sources:\n    bench-charts:\n      type: helm\n      \
         url: https://charts.bench.example.com\n      interval: 1h\n\n  services:\n",
    );
    for (i, name) in services.iter().enumerate() {
        let gpu = is_gpu(i);
        let (rc, rm, lc, lm) = if gpu {
            ("500m", "2Gi", "2000m", "8Gi")
        } else {
            PROFILES[i % PROFILES.len()]
        };
        let _ = writeln!(s, "    {name}:");
        let _ = writeln!(
            s,
            "      chart: {{version: \">=1.0.0\", source: bench-charts}}"
        );
        let _ = writeln!(s, "      image: {{repository: ghcr.io/bench/{name}}}");
        let _ = writeln!(
            s,
            "      resources:\n        requests: {{cpu: {rc}, memory: {rm}}}"
        );
        let _ = writeln!(s, "        limits: {{cpu: {lc}, memory: {lm}}}");
        if gpu {
            s.push_str(
                "      gpu: {count: 1, class: L40S}\n      priorityClass: high-priority-batch\n",
            );
        } else if i % 3 == 1 {
            s.push_str("      autoscaling: true\n      priorityClass: interactive\n");
        }
        if !gpu {
            s.push_str("      ports:\n        - {name: http, port: 8080}\n");
            if i % 4 == 0 {
                s.push_str("        - {name: metrics, port: 9090}\n");
            }
        }
    }
    s
}

fn environment(e: usize, name: &str, services: &[String]) -> String {
    let multiplier = ["1", "1.5", "2"][e % 3];
    let mut s = format!(
        "# Generated by `cargo xtask bench`.\n\
         apiVersion: kairo.dev/v1alpha1\n\
         kind: Environment\n\
         metadata:\n  name: {name}\n\
         spec:\n  namespace: bench-{name}\n  branch: {name}\n  cluster: bench-{name}\n  \
         resourceMultiplier: {multiplier}\n  \
         defaults:\n    replicas: 3\n    \
         hpa: {{minReplicas: 2, maxReplicas: 10, targetCPUUtilizationPercentage: 80}}\n    \
         pdb: {{minAvailable: 1}}\n    pool: orchestration\n    priorityClass: medium-priority-batch\n\n  \
         nodePools:\n    orchestration:\n      labels: {{node-type: orchestration}}\n      nodes: 3\n    \
         gpu-optimized:\n      labels: {{node-type: gpu-optimized}}\n      taints:\n        \
         - {{key: nvidia.com/gpu, value: \"true\", effect: NoSchedule}}\n      \
         gpu: {{class: L40S, count: 1}}\n      nodes: 200\n\n  services:\n"
    );
    for (i, svc) in services.iter().enumerate() {
        // Quoted: unquoted, a short SHA such as `5e57483` is a YAML float (here an infinite one,
        // which kairo rejects), and the generator cannot tell which tags are safe.
        let tag = format!("\"{}\"", tag(e, i));
        // Overrides vary with the environment so that every file differs; replica overrides stay
        // above minAvailable so no budget is dropped with a warning.
        let replicas = (i + e).is_multiple_of(7);
        let resources = (i + e).is_multiple_of(11);
        if !replicas && !resources {
            let _ = writeln!(s, "    {svc}: {{image: {{tag: {tag}}}}}");
            continue;
        }
        let _ = writeln!(s, "    {svc}:\n      image: {{tag: {tag}}}");
        if replicas {
            let _ = writeln!(s, "      replicas: {}", 2 + i % 4);
        }
        if resources {
            s.push_str(
                "      resources:\n        requests: {cpu: 750m, memory: 1Gi}\n        \
                 limits: {cpu: 3000m, memory: 6Gi}\n",
            );
        }
    }
    s
}
