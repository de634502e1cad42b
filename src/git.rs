//! Git access through git2.
//!
//! Architecture Invariant: reading a revision never touches the working tree, the index or refs:
//! files come straight out of the revision's tree objects.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum GitError {
    #[error("`{}` is not inside a git repository", .0.display())]
    NotARepository(PathBuf),
    #[error("unknown revision `{0}`")]
    UnknownRevision(String),
    // Not `#[from]`: that would make git2's error the source too, and it would print twice.
    #[error("git: {0}")]
    Git(git2::Error),
}

impl From<git2::Error> for GitError {
    fn from(e: git2::Error) -> Self {
        GitError::Git(e)
    }
}

impl From<git2::Error> for WriteError {
    fn from(e: git2::Error) -> Self {
        WriteError::Git(e)
    }
}

/// The blobs of revision `rev` under the given top-level directories of the kairo root `root`
/// (which may be a subdirectory of the repository). Keys are paths relative to `root`.
pub fn read_revision(
    root: &Path,
    rev: &str,
    dirs: &[&str],
) -> Result<BTreeMap<String, Vec<u8>>, GitError> {
    let repo = git2::Repository::discover(root)
        .map_err(|_| GitError::NotARepository(root.to_path_buf()))?;
    let prefix = root_prefix(&repo, root)?;
    let tree = repo
        .revparse_single(rev)
        .and_then(|o| o.peel_to_tree())
        .map_err(|_| GitError::UnknownRevision(rev.to_string()))?;
    let mut files = BTreeMap::new();
    for dir in dirs {
        let entry = match tree.get_path(Path::new(&format!("{prefix}{dir}"))) {
            Ok(e) => e,
            Err(e) if e.code() == git2::ErrorCode::NotFound => continue,
            Err(e) => return Err(e.into()),
        };
        let Ok(subtree) = entry.to_object(&repo)?.peel_to_tree() else {
            continue;
        };
        let mut failure = None;
        subtree.walk(git2::TreeWalkMode::PreOrder, |parent, item| {
            if item.kind() != Some(git2::ObjectType::Blob) {
                return git2::TreeWalkResult::Ok;
            }
            let name = item.name().unwrap_or_default();
            match item.to_object(&repo).and_then(|o| o.peel_to_blob()) {
                Ok(blob) => {
                    files.insert(format!("{dir}/{parent}{name}"), blob.content().to_vec());
                    git2::TreeWalkResult::Ok
                }
                Err(e) => {
                    failure = Some(e);
                    git2::TreeWalkResult::Abort
                }
            }
        })?;
        if let Some(e) = failure {
            return Err(e.into());
        }
    }
    Ok(files)
}

/// `root` relative to the repository's working directory, as a tree path prefix (`""` or `a/b/`).
fn root_prefix(repo: &git2::Repository, root: &Path) -> Result<String, GitError> {
    let workdir = repo
        .workdir()
        .ok_or_else(|| GitError::NotARepository(root.to_path_buf()))?;
    let (Ok(workdir), Ok(root_abs)) = (workdir.canonicalize(), root.canonicalize()) else {
        return Err(GitError::NotARepository(root.to_path_buf()));
    };
    let rel = root_abs
        .strip_prefix(&workdir)
        .map_err(|_| GitError::NotARepository(root.to_path_buf()))?;
    let mut prefix = rel.to_string_lossy().replace('\\', "/");
    if !prefix.is_empty() {
        prefix.push('/');
    }
    Ok(prefix)
}

/// The repository holding `root`, and `root`'s path inside it (`""` or `dir/`).
pub fn open(root: &Path) -> Result<(git2::Repository, String), GitError> {
    let repo = git2::Repository::discover(root)
        .map_err(|_| GitError::NotARepository(root.to_path_buf()))?;
    let prefix = root_prefix(&repo, root)?;
    Ok((repo, prefix))
}

/// Refuses staged changes anywhere, and working-tree changes to the paths kairo must write
/// (files, or directories given with a trailing `/`), relative to `prefix`.
pub fn ensure_clean(
    repo: &git2::Repository,
    prefix: &str,
    paths: &[String],
) -> Result<(), WriteError> {
    // Staged changes anywhere: the index's tree is HEAD's tree (cheap with git's tree cache);
    // only when it is not, find a path to name.
    let head_tree = repo.head()?.peel_to_tree()?.id();
    if repo.index()?.write_tree()? == head_tree {
        return check_workdir(repo, prefix, paths);
    }
    let mut staged = git2::StatusOptions::new();
    staged.show(git2::StatusShow::Index);
    if let Some(entry) = repo.statuses(Some(&mut staged))?.iter().next() {
        return Err(WriteError::Staged(
            entry.path().unwrap_or_default().to_string(),
        ));
    }
    check_workdir(repo, prefix, paths)
}

/// Working-tree changes, only below the paths kairo writes. One status walk per path, so each
/// walk starts at that path instead of the repository root.
fn check_workdir(
    repo: &git2::Repository,
    prefix: &str,
    paths: &[String],
) -> Result<(), WriteError> {
    for p in paths {
        let mut touched = git2::StatusOptions::new();
        touched
            .show(git2::StatusShow::Workdir)
            .include_untracked(true)
            .recurse_untracked_dirs(true)
            .pathspec(format!("{prefix}{p}"));
        for entry in repo.statuses(Some(&mut touched))?.iter() {
            let path = entry.path().unwrap_or_default();
            // A temporary file of kairo's own killed write; the next apply removes it.
            let ours = path
                .rsplit('/')
                .next()
                .is_some_and(|n| n.starts_with(".kairo-tmp-"));
            if !(ours && entry.status() == git2::Status::WT_NEW) {
                return Err(WriteError::Dirty(path.to_string()));
            }
        }
    }
    Ok(())
}

#[derive(Debug, thiserror::Error)]
pub enum WriteError {
    #[error("the index has staged changes (`{0}`)")]
    Staged(String),
    #[error("`{0}` has uncommitted changes, and kairo must write it")]
    Dirty(String),
    #[error("no author identity")]
    NoIdentity,
    #[error("HEAD is not a branch")]
    DetachedHead,
    #[error("push to `{remote}` was rejected {attempts} time(s): {reason}")]
    GaveUp {
        remote: String,
        attempts: u32,
        reason: String,
    },
    #[error("git: {0}")]
    Git(git2::Error),
    #[error("git: {0}")]
    Command(String),
}

/// Restores the files `paths` (relative to `prefix`) to HEAD's content, removing those HEAD
/// does not have. Nothing else in the working tree is touched.
pub fn restore_paths(
    repo: &git2::Repository,
    prefix: &str,
    paths: &[String],
) -> Result<(), WriteError> {
    if paths.is_empty() {
        // No pathspec would mean the whole working tree.
        return Ok(());
    }
    let mut checkout = git2::build::CheckoutBuilder::new();
    checkout
        .force()
        .remove_untracked(true)
        .disable_pathspec_match(true);
    for p in paths {
        checkout.path(format!("{prefix}{p}"));
    }
    repo.checkout_head(Some(&mut checkout))?;
    Ok(())
}

/// The commit identity: `--author`, then `KAIRO_GIT_AUTHOR_NAME`/`_EMAIL`, then git config.
pub fn signature(
    repo: &git2::Repository,
    author: Option<&str>,
) -> Result<git2::Signature<'static>, WriteError> {
    if let Some(author) = author
        && let Some((name, email)) = author.trim_end_matches('>').split_once(" <")
    {
        return Ok(git2::Signature::now(name.trim(), email.trim())?);
    }
    if let (Ok(name), Ok(email)) = (
        std::env::var("KAIRO_GIT_AUTHOR_NAME"),
        std::env::var("KAIRO_GIT_AUTHOR_EMAIL"),
    ) {
        return Ok(git2::Signature::now(&name, &email)?);
    }
    repo.signature()
        .map(|s| s.to_owned())
        .map_err(|_| WriteError::NoIdentity)
}

/// How commits are signed, as git decides it: `commit.gpgsign`, `gpg.format` (`openpgp` or
/// `ssh`) and `user.signingkey` from git config, or `--sign`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Signing {
    None,
    /// `ssh-keygen -Y sign -n git -f <key>` (the key file, or its public half with an agent).
    Ssh {
        key: String,
    },
    /// `gpg --detach-sign --armor` with the given key (or gpg's default key).
    Gpg {
        key: Option<String>,
    },
}

impl Signing {
    pub fn from_config(repo: &git2::Repository, force: bool) -> Result<Signing, WriteError> {
        let config = repo.config()?;
        let wanted = force || config.get_bool("commit.gpgsign").unwrap_or(false);
        if !wanted {
            return Ok(Signing::None);
        }
        let key = config.get_string("user.signingkey").ok();
        match config.get_string("gpg.format").as_deref() {
            Ok("ssh") => Ok(Signing::Ssh {
                key: key.ok_or_else(|| {
                    WriteError::Command(
                        "`gpg.format` is `ssh` but `user.signingkey` is not set".into(),
                    )
                })?,
            }),
            Ok("x509") => Err(WriteError::Command(
                "x509 commit signing is not supported; use ssh or openpgp".into(),
            )),
            _ => Ok(Signing::Gpg { key }),
        }
    }

    fn sign(&self, content: &str) -> Result<Option<String>, WriteError> {
        let mut cmd = match self {
            Signing::None => return Ok(None),
            Signing::Ssh { key } => {
                let key = key.strip_prefix("~/").map_or_else(
                    || key.clone(),
                    |rest| format!("{}/{rest}", std::env::var("HOME").unwrap_or_default()),
                );
                let mut c = std::process::Command::new("ssh-keygen");
                c.args(["-Y", "sign", "-n", "git", "-f", &key]);
                c
            }
            Signing::Gpg { key } => {
                let mut c = std::process::Command::new("gpg");
                c.args(["--batch", "--detach-sign", "--armor"]);
                if let Some(k) = key {
                    c.args(["--local-user", k]);
                }
                c
            }
        };
        use std::io::Write as _;
        let mut child = cmd
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .map_err(|e| WriteError::Command(format!("cannot run the commit signer: {e}")))?;
        child
            .stdin
            .take()
            .expect("piped")
            .write_all(content.as_bytes())
            .map_err(|e| WriteError::Command(format!("commit signer: {e}")))?;
        let out = child
            .wait_with_output()
            .map_err(|e| WriteError::Command(format!("commit signer: {e}")))?;
        if !out.status.success() {
            return Err(WriteError::Command(format!(
                "signing the commit failed: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            )));
        }
        Ok(Some(String::from_utf8_lossy(&out.stdout).into_owned()))
    }
}

/// Commits exactly `paths` (relative to `prefix`) as they are in the working tree on top of
/// HEAD, signed as `signing` says. The index must have been clean (see [`ensure_clean`]).
pub fn commit_paths(
    repo: &git2::Repository,
    prefix: &str,
    paths: &[String],
    message: &str,
    signature: &git2::Signature,
    signing: &Signing,
) -> Result<git2::Oid, WriteError> {
    let workdir = repo
        .workdir()
        .ok_or(WriteError::DetachedHead)?
        .to_path_buf();
    let mut index = repo.index()?;
    index.read(true)?;
    for path in paths {
        let rel = format!("{prefix}{path}");
        if workdir.join(&rel).is_file() {
            index.add_path(Path::new(&rel))?;
        } else {
            index.remove_path(Path::new(&rel))?;
        }
    }
    index.write()?;
    let tree = repo.find_tree(index.write_tree()?)?;
    let parent = repo.head()?.peel_to_commit()?;
    let buffer = repo.commit_create_buffer(signature, signature, message, &tree, &[&parent])?;
    let content = std::str::from_utf8(&buffer)
        .map_err(|_| WriteError::Command("commit is not UTF-8".into()))?;
    let id = match signing.sign(content)? {
        Some(sig) => repo.commit_signed(content, &sig, None)?,
        None => repo.commit(None, signature, signature, message, &tree, &[&parent])?,
    };
    let head = repo.head()?;
    let branch = head
        .name()
        .map_err(|_| WriteError::DetachedHead)?
        .to_string();
    repo.reference_matching(
        &branch,
        id,
        true,
        parent.id(),
        &format!("commit: {}", message.lines().next().unwrap_or_default()),
    )?;
    Ok(id)
}

/// The short name of the branch HEAD points at.
pub fn current_branch(repo: &git2::Repository) -> Result<String, WriteError> {
    let head = repo.head()?;
    if !head.is_branch() {
        return Err(WriteError::DetachedHead);
    }
    Ok(head.shorthand().unwrap_or_default().to_string())
}

/// The remote branch a local branch pushes to: its upstream's name, else its own name.
pub fn upstream_branch(repo: &git2::Repository, branch: &str) -> String {
    repo.config()
        .ok()
        .and_then(|c| c.get_string(&format!("branch.{branch}.merge")).ok())
        .and_then(|m| m.strip_prefix("refs/heads/").map(str::to_string))
        .unwrap_or_else(|| branch.to_string())
}

/// The outcome of one push.
pub enum Pushed {
    Ok,
    /// The remote refused the update (someone else pushed first, or a lock was held).
    Rejected(String),
}

/// Pushes HEAD to `refs/heads/<branch>` on `remote`, never forcing.
///
/// This runs `git push` rather than libgit2: libgit2's local (file) transport updates the
/// remote ref without checking its old value, so two concurrent pushes can silently drop one
/// another's commit. `git push` (receive-pack) updates refs atomically against their old value,
/// and brings git's own SSH, HTTPS and credential handling.
pub fn push_head(
    repo: &git2::Repository,
    remote: &str,
    branch: &str,
) -> Result<Pushed, WriteError> {
    let out = git_command(
        repo,
        &[
            "push",
            "--porcelain",
            remote,
            &format!("HEAD:refs/heads/{branch}"),
        ],
    )?;
    if out.status.success() {
        return Ok(Pushed::Ok);
    }
    let text = redact(&format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    ));
    let lower = text.to_lowercase();
    // Someone else moved the branch (or held its lock) first: retryable, never forced.
    let lost_race = [
        "[rejected]",
        "non-fast-forward",
        "fetch first",
        "cannot lock ref",
        "incorrect old value",
        "failed to update ref",
        "failed to lock",
        "stale info",
    ]
    .iter()
    .any(|m| lower.contains(m));
    let summary = text
        .lines()
        .find(|l| {
            l.contains("rejected")
                || l.contains("declined")
                || l.starts_with("error:")
                || l.starts_with("fatal:")
        })
        .unwrap_or("push failed")
        .trim()
        .to_string();
    // A hook or a protection rule declined the update: retrying cannot help. (A lost lock
    // race also reads `[remote rejected] (failed to update ref)`, and is retried.)
    let declined = lower.contains("declined");
    if lost_race && !declined {
        Ok(Pushed::Rejected(summary))
    } else {
        Err(WriteError::Command(summary))
    }
}

/// Runs `git` in the repository's working directory, without a terminal prompt.
///
/// With `KAIRO_GIT_TOKEN` set, HTTPS remotes authenticate with it (user `KAIRO_GIT_USERNAME`,
/// default `x-access-token`, as GitHub and GitLab accept): a credential helper given through
/// git's environment configuration reads the token from the environment, so it never appears
/// on a command line, in a config file or in output.
fn git_command(repo: &git2::Repository, args: &[&str]) -> Result<std::process::Output, WriteError> {
    let dir = repo.workdir().unwrap_or_else(|| repo.path());
    let mut cmd = std::process::Command::new("git");
    cmd.args(args)
        .current_dir(dir)
        .env("GIT_TERMINAL_PROMPT", "0")
        .stdin(std::process::Stdio::null());
    if std::env::var_os("KAIRO_GIT_TOKEN").is_some() {
        // The empty helper first clears configured helpers, so the token is the one used.
        cmd.env("GIT_CONFIG_COUNT", "2")
            .env("GIT_CONFIG_KEY_0", "credential.helper")
            .env("GIT_CONFIG_VALUE_0", "")
            .env("GIT_CONFIG_KEY_1", "credential.helper")
            .env(
                "GIT_CONFIG_VALUE_1",
                "!f() { test \"$1\" = get || exit 0; echo \"username=${KAIRO_GIT_USERNAME:-x-access-token}\"; echo \"password=$KAIRO_GIT_TOKEN\"; }; f",
            );
    }
    cmd.output()
        .map_err(|e| WriteError::Command(format!("cannot run git: {e}")))
}

/// Removes credentials embedded in URLs (`https://user:token@host`) from git's messages.
pub fn redact(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(i) = rest.find("://") {
        out.push_str(&rest[..i + 3]);
        rest = &rest[i + 3..];
        let end = rest
            .find(|c: char| c.is_whitespace() || c == '/')
            .unwrap_or(rest.len());
        if let Some(at) = rest[..end].rfind('@') {
            out.push_str("***@");
            rest = &rest[at + 1..];
        }
    }
    out.push_str(rest);
    out
}

/// Fetches `branch` from `remote` and resets HEAD, index and working tree to its tip.
pub fn reset_to_remote(
    repo: &git2::Repository,
    remote: &str,
    branch: &str,
) -> Result<git2::Oid, WriteError> {
    let tracking = format!("refs/remotes/{remote}/{branch}");
    let out = git_command(
        repo,
        &[
            "fetch",
            "--quiet",
            remote,
            &format!("+refs/heads/{branch}:{tracking}"),
        ],
    )?;
    if !out.status.success() {
        return Err(WriteError::Command(redact(
            String::from_utf8_lossy(&out.stderr).trim(),
        )));
    }
    let tip = repo.find_reference(&tracking)?.peel_to_commit()?;
    repo.reset(tip.as_object(), git2::ResetType::Hard, None)?;
    Ok(tip.id())
}

#[cfg(test)]
mod tests {
    #[test]
    fn credentials_are_redacted() {
        assert_eq!(
            super::redact("To https://bot:s3cr3t@github.com/acme/gitops.git\n ! [rejected]"),
            "To https://***@github.com/acme/gitops.git\n ! [rejected]"
        );
        assert_eq!(
            super::redact("file:///tmp/remote.git"),
            "file:///tmp/remote.git"
        );
    }
}
