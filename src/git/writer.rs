//! The git writer: commits built in the object database on a base the caller names, pushed
//! without force, and a user's branch moved only by a fast-forward that cannot lose work.
//!
//! Architecture Invariant: the writer never resets, checks out over or deletes anything in the
//! working tree or the index except the paths of its own commit, and only in
//! [`Writer::fast_forward`], which first proves those paths hold exactly the base's content.
//! Commits are built from trees (`TreeUpdateBuilder`), never from the working tree or the
//! index, so a user's uncommitted and staged work is neither committed nor touched.
//! Architecture Invariant: configuration (identity, signing, credentials) is passed in; nothing
//! here reads the process environment. This is the only module that starts processes (`git`,
//! and the commit signer).

#![allow(clippy::disallowed_methods)] // the one module that starts processes

use std::collections::BTreeMap;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use super::{GitError, TreeFiles};
use crate::failpoint;

/// Inside `.git/`: present while a fast-forward is changing the working tree, naming the branch,
/// both commits and the paths, so that a run killed midway is completed by the next one.
pub const JOURNAL: &str = "kairo-in-progress";

#[derive(Debug, thiserror::Error)]
pub enum WriteError {
    #[error(transparent)]
    Repo(#[from] GitError),
    #[error("`{0}` has uncommitted changes, and kairo must write it")]
    Dirty(String),
    #[error("no commit identity: git config has no `user.name`/`user.email`")]
    NoIdentity,
    #[error("invalid commit author `{value}`: {problem}")]
    BadIdentity { value: String, problem: String },
    #[error("HEAD is not a branch")]
    DetachedHead,
    #[error("the remote `{remote}` has no branch `{branch}`")]
    NoRemoteBranch { remote: String, branch: String },
    #[error("push to `{remote}` was rejected {attempts} time(s) in {seconds} s: {reason}")]
    GaveUp {
        remote: String,
        attempts: u32,
        seconds: u64,
        reason: String,
    },
    #[error("git: {0}")]
    Git(git2::Error),
    #[error("git: {0}")]
    Command(String),
    #[error("failed to write `{}`", .path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("an interrupted kairo run left `{journal}`, and the working tree no longer matches it")]
    Journal { journal: String, detail: String },
}

impl From<git2::Error> for WriteError {
    fn from(e: git2::Error) -> Self {
        WriteError::Git(e)
    }
}

/// Who commits: `Name <email>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    pub name: String,
    pub email: String,
}

impl Identity {
    /// Parses `Name <email>` strictly: a malformed value is an error, never a silent fallback.
    pub fn parse(value: &str) -> Result<Identity, WriteError> {
        let bad = |problem: &str| WriteError::BadIdentity {
            value: value.to_string(),
            problem: problem.to_string(),
        };
        let (name, rest) = value
            .split_once('<')
            .ok_or_else(|| bad("expected `Name <email>`"))?;
        let email = rest
            .strip_suffix('>')
            .ok_or_else(|| bad("expected `Name <email>`"))?;
        Identity::new(name.trim(), email.trim()).map_err(|e| match e {
            WriteError::BadIdentity { problem, .. } => bad(&problem),
            other => other,
        })
    }

    /// A name and an email, both non-empty, neither with `<`, `>` or line breaks.
    pub fn new(name: &str, email: &str) -> Result<Identity, WriteError> {
        let bad = |problem: &str| WriteError::BadIdentity {
            value: format!("{name} <{email}>"),
            problem: problem.to_string(),
        };
        let forbidden = |s: &str| s.contains(['<', '>', '\n', '\r', '\0']);
        if name.trim().is_empty() {
            return Err(bad("the name is empty"));
        }
        if email.trim().is_empty() {
            return Err(bad("the email is empty"));
        }
        if forbidden(name) || forbidden(email) || email.contains(char::is_whitespace) {
            return Err(bad(
                "names and emails cannot contain `<`, `>`, spaces (email) or line breaks",
            ));
        }
        Ok(Identity {
            name: name.to_string(),
            email: email.to_string(),
        })
    }
}

/// HTTPS credentials for pushes and fetches, handed to `git` by a credential helper through
/// its environment: never on a command line, in a config file or in output.
#[derive(Clone, Default)]
pub struct Credentials {
    pub token: Option<String>,
    /// Default `x-access-token`, as GitHub and GitLab accept.
    pub username: Option<String>,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials")
            .field("token", &self.token.as_ref().map(|_| "***"))
            .field("username", &self.username)
            .finish()
    }
}

/// How commits are signed, as git decides it: `commit.gpgsign`, `gpg.format` (`openpgp` or
/// `ssh`) and `user.signingkey` from git config, or `--sign`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Signing {
    None,
    /// `ssh-keygen -Y sign -n git -f <key>` (the key file, or its public half with an agent).
    Ssh {
        key: PathBuf,
    },
    /// `gpg --detach-sign --armor` with the given key (or gpg's default key).
    Gpg {
        key: Option<String>,
    },
}

impl Signing {
    /// `home` expands a `~/` key path, as git does.
    /// From git's own configuration (`get` answers as `git config --get` does).
    pub fn from_config(
        get: &dyn Fn(&str) -> Option<String>,
        force: bool,
        home: Option<&Path>,
    ) -> Result<Signing, WriteError> {
        let wanted = force || get("commit.gpgsign").is_some_and(|v| v == "true");
        if !wanted {
            return Ok(Signing::None);
        }
        let key = get("user.signingkey");
        match get("gpg.format").as_deref() {
            Some("ssh") => {
                let key = key.ok_or_else(|| {
                    WriteError::Command(
                        "`gpg.format` is `ssh` but `user.signingkey` is not set".into(),
                    )
                })?;
                let key = match (key.strip_prefix("~/"), home) {
                    (Some(rest), Some(home)) => home.join(rest),
                    _ => PathBuf::from(key),
                };
                Ok(Signing::Ssh { key })
            }
            Some("x509") => Err(WriteError::Command(
                "x509 commit signing is not supported; use ssh or openpgp".into(),
            )),
            _ => Ok(Signing::Gpg { key }),
        }
    }

    fn sign(&self, content: &str) -> Result<Option<String>, WriteError> {
        let mut cmd = match self {
            Signing::None => return Ok(None),
            Signing::Ssh { key } => {
                let mut c = Command::new("ssh-keygen");
                c.args(["-Y", "sign", "-n", "git", "-f"]).arg(key);
                c
            }
            Signing::Gpg { key } => {
                let mut c = Command::new("gpg");
                c.args(["--batch", "--detach-sign", "--armor"]);
                if let Some(k) = key {
                    c.args(["--local-user", k]);
                }
                c
            }
        };
        let mut child = cmd
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
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

/// The outcome of one push.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Pushed {
    Ok,
    /// The remote refused the update (someone else pushed first, or a lock was held).
    Rejected(String),
}

/// What became of the user's branch after a commit was made or pushed.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case", tag = "state", content = "detail")]
pub enum LocalBranch {
    /// Fast-forwarded to the new commit; the working tree has kairo's files.
    Moved(String),
    /// Not the branch that was pushed (a review branch, another branch, detached HEAD).
    Untouched,
    /// The branch is not at the commit the change was built on (it is behind or has its own
    /// commits): left alone, `git pull` brings the change.
    Behind(String),
    /// A path of the change has uncommitted changes in the working tree or index: left alone.
    Dirty(String),
    /// Moving it failed (for example git's `index.lock` was held); the next run completes it.
    Failed(String),
}

/// The branch HEAD points at, if any, and its commit (none in an empty repository).
#[derive(Debug, Clone)]
pub struct Head {
    pub branch: Option<String>,
    pub commit: Option<git2::Oid>,
}

/// Writes commits to one repository with one configuration.
pub struct Writer {
    repo: git2::Repository,
    /// The kairo root inside the repository (`""` or `dir/`).
    prefix: String,
    workdir: PathBuf,
    identity: Identity,
    signing: Signing,
    credentials: Credentials,
    /// How long one `git fetch` or `git push` may run before it is stopped.
    network_timeout: Duration,
}

/// [`Writer::with_network_timeout`]'s default: generous for a slow link, but a remote that
/// accepts a connection and never answers cannot hold a run (or the daemon's one writer
/// thread) forever.
pub const DEFAULT_NETWORK_TIMEOUT: Duration = Duration::from_secs(300);

impl Writer {
    /// Opens the repository holding `root`. Without `identity`, git config's `user.name` and
    /// `user.email` are used (an error when unset).
    pub fn open(
        root: &Path,
        identity: Option<Identity>,
        signing_forced: bool,
        home: Option<&Path>,
        credentials: Credentials,
    ) -> Result<Writer, WriteError> {
        let (repo, prefix) = super::open(root)?;
        let workdir = repo
            .workdir()
            .ok_or_else(|| GitError::NotARepository(root.to_path_buf()))?
            .to_path_buf();
        // git's configuration exactly as git resolves it (GIT_CONFIG_GLOBAL, GIT_CONFIG_NOSYSTEM,
        // includes): libgit2 reads other files, and a commit must not go out under an identity
        // or signing setup that `git` itself would not use.
        let get = |key: &str| -> Option<String> {
            let out = Command::new("git")
                .args(["config", "--get"])
                .args((key == "commit.gpgsign").then_some("--type=bool"))
                .arg(key)
                .current_dir(&workdir)
                .stdin(Stdio::null())
                .output()
                .ok()?;
            out.status
                .success()
                .then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
                .filter(|v| !v.is_empty())
        };
        let identity = match identity {
            Some(i) => i,
            None => match (get("user.name"), get("user.email")) {
                (Some(name), Some(email)) => Identity::new(&name, &email)?,
                _ => return Err(WriteError::NoIdentity),
            },
        };
        let signing = Signing::from_config(&get, signing_forced, home)?;
        Ok(Writer {
            repo,
            prefix,
            workdir,
            identity,
            signing,
            credentials,
            network_timeout: DEFAULT_NETWORK_TIMEOUT,
        })
    }

    /// Sets how long one `git fetch` or `git push` may run (`Duration::ZERO`: no limit).
    pub fn with_network_timeout(mut self, timeout: Duration) -> Writer {
        self.network_timeout = timeout;
        self
    }

    /// Completes a fast-forward a killed run left in its journal, for commands that write the
    /// working tree without committing (`render`, `bump` without `--commit`): they must not
    /// write over a half-done update. Cheap when there is no journal (one `stat`); needs no
    /// identity. Call with the repository lock held.
    pub fn recover_at(root: &Path) -> Result<Option<String>, WriteError> {
        let Ok((repo, prefix)) = super::open(root) else {
            return Ok(None); // not a git repository: no journal either
        };
        if std::fs::symlink_metadata(repo.path().join(JOURNAL)).is_err() {
            return Ok(None);
        }
        let Some(workdir) = repo.workdir().map(Path::to_path_buf) else {
            return Ok(None);
        };
        Writer {
            repo,
            prefix,
            workdir,
            // Recovery commits nothing and signs nothing.
            identity: Identity {
                name: String::new(),
                email: String::new(),
            },
            signing: Signing::None,
            credentials: Credentials::default(),
            network_timeout: DEFAULT_NETWORK_TIMEOUT,
        }
        .recover()
    }

    pub fn repo(&self) -> &git2::Repository {
        &self.repo
    }

    pub fn head(&self) -> Result<Head, WriteError> {
        let head = match self.repo.head() {
            Ok(h) => h,
            Err(e) if e.code() == git2::ErrorCode::UnbornBranch => {
                let r = self.repo.find_reference("HEAD")?;
                let branch = r
                    .symbolic_target()
                    .ok()
                    .flatten()
                    .and_then(|t| t.strip_prefix("refs/heads/"))
                    .map(str::to_string);
                return Ok(Head {
                    branch,
                    commit: None,
                });
            }
            Err(e) => return Err(e.into()),
        };
        let branch = head
            .is_branch()
            .then(|| head.shorthand().unwrap_or_default().to_string());
        Ok(Head {
            branch,
            commit: head.peel_to_commit().ok().map(|c| c.id()),
        })
    }

    /// The remote branch a local branch pushes to: its upstream's name, else its own name.
    pub fn upstream_branch(&self, branch: &str) -> String {
        self.repo
            .config()
            .ok()
            .and_then(|c| c.get_string(&format!("branch.{branch}.merge")).ok())
            .and_then(|m| m.strip_prefix("refs/heads/").map(str::to_string))
            .unwrap_or_else(|| branch.to_string())
    }

    /// Fetches `branch` from `remote` into `refs/remotes/<remote>/<branch>` and returns its tip,
    /// or `None` when the remote has no such branch.
    pub fn fetch(&self, remote: &str, branch: &str) -> Result<Option<git2::Oid>, WriteError> {
        let tracking = format!("refs/remotes/{remote}/{branch}");
        let args = [
            "fetch",
            "--quiet",
            "--no-tags",
            remote,
            &format!("+refs/heads/{branch}:{tracking}"),
        ];
        let mut out = self.git_network(&args, None)?;
        // A `git` left running by a killed kairo (its push updating the same tracking ref) can
        // hold the local ref lock for a moment: wait for it rather than fail.
        for wait in 1..=20u64 {
            let text = String::from_utf8_lossy(&out.stderr);
            if out.status.success() || !text.contains("cannot lock ref") {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(50 * wait));
            out = self.git_network(&args, None)?;
        }
        if !out.status.success() {
            let text = redact(String::from_utf8_lossy(&out.stderr).trim());
            if text.contains("couldn't find remote ref") {
                return Ok(None);
            }
            return Err(WriteError::Command(text));
        }
        Ok(Some(
            self.repo.find_reference(&tracking)?.peel_to_commit()?.id(),
        ))
    }

    /// The files under `dirs` (relative to the kairo root) at `commit`.
    pub fn files_at(&self, commit: git2::Oid, dirs: &[&str]) -> Result<TreeFiles, WriteError> {
        let tree = self.repo.find_commit(commit)?.tree()?;
        Ok(super::read_tree(&self.repo, &self.prefix, &tree, dirs)?)
    }

    /// A commit on `parent` whose tree is `parent`'s with `changes` (kairo-root-relative path ->
    /// new bytes, or `None` to delete). Only the object database changes: no ref, no index, no
    /// working tree. `None` when the tree would not change (never an empty commit).
    pub fn commit_on(
        &self,
        parent: git2::Oid,
        changes: &BTreeMap<String, Option<Vec<u8>>>,
        message: &str,
    ) -> Result<Option<git2::Oid>, WriteError> {
        let parent = self.repo.find_commit(parent)?;
        let base = parent.tree()?;
        let mut update = git2::build::TreeUpdateBuilder::new();
        for (path, content) in changes {
            let full = format!("{}{path}", self.prefix);
            match content {
                Some(bytes) => {
                    let blob = self.repo.blob(bytes)?;
                    update.upsert(full, blob, git2::FileMode::Blob);
                }
                None => {
                    update.remove(full);
                }
            }
        }
        let tree_id = update.create_updated(&self.repo, &base)?;
        if tree_id == base.id() {
            return Ok(None);
        }
        let tree = self.repo.find_tree(tree_id)?;
        let signature = git2::Signature::now(&self.identity.name, &self.identity.email)?;
        let buffer =
            self.repo
                .commit_create_buffer(&signature, &signature, message, &tree, &[&parent])?;
        let content = std::str::from_utf8(&buffer)
            .map_err(|_| WriteError::Command("commit is not UTF-8".into()))?;
        let id = match self.signing.sign(content)? {
            Some(sig) => self.repo.commit_signed(content, &sig, None)?,
            None => self
                .repo
                .commit(None, &signature, &signature, message, &tree, &[&parent])?,
        };
        failpoint::hit("after-commit");
        Ok(Some(id))
    }

    /// Pushes `commit` to `refs/heads/<branch>` on `remote`, never forcing.
    ///
    /// This runs `git push` rather than libgit2: libgit2's local (file) transport updates the
    /// remote ref without checking its old value, so two concurrent pushes can silently drop one
    /// another's commit. `git push` (receive-pack) updates refs atomically against their old
    /// value, and brings git's own SSH, HTTPS and credential handling.
    pub fn push(
        &self,
        remote: &str,
        commit: git2::Oid,
        branch: &str,
    ) -> Result<Pushed, WriteError> {
        let out = self.git_network(
            &[
                "push",
                "--porcelain",
                remote,
                &format!("{commit}:refs/heads/{branch}"),
            ],
            Some("push-started"),
        )?;
        failpoint::hit("after-push");
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
        if lost_race && !lower.contains("declined") {
            Ok(Pushed::Rejected(summary))
        } else {
            Err(WriteError::Command(summary))
        }
    }

    /// The first of `paths` whose working-tree file or index entry differs from `base`'s
    /// content (a path absent from `base` must be absent from both).
    pub fn first_dirty(
        &self,
        base: git2::Oid,
        paths: &[String],
    ) -> Result<Option<String>, WriteError> {
        let mut tree = Entries::new(&self.repo, self.repo.find_commit(base)?.tree()?);
        let index = self.repo.index()?;
        for path in paths {
            let full = format!("{}{path}", self.prefix);
            let entry = tree
                .get(&full)?
                .filter(|e| e.kind == Some(git2::ObjectType::Blob));
            let blob = entry.as_ref().map(|e| e.id);
            let mode = entry.as_ref().map(|e| e.mode as u32);
            let staged = index.get_path(Path::new(&full), 0);
            // Content and mode: a staged or on-disk `chmod +x` is the user's work too.
            if staged.as_ref().map(|e| e.id) != blob || staged.as_ref().map(|e| e.mode) != mode {
                return Ok(Some(path.clone()));
            }
            if let Some(mode) = mode {
                use std::os::unix::fs::PermissionsExt;
                let executable = std::fs::symlink_metadata(self.workdir.join(&full))
                    .is_ok_and(|m| m.permissions().mode() & 0o111 != 0);
                if executable != (mode == 0o100755) {
                    return Ok(Some(path.clone()));
                }
            }
            if !holds(&read_nofollow(&self.workdir.join(&full))?, blob)? {
                return Ok(Some(path.clone()));
            }
        }
        Ok(None)
    }

    /// Moves `branch` from `old` to `new` (a descendant whose tree differs from `old`'s only in
    /// `paths`), writing those paths into the working tree and index. Callers check
    /// [`Writer::first_dirty`] first; a kill midway is completed by [`Writer::recover`].
    pub fn fast_forward(
        &self,
        branch: &str,
        old: git2::Oid,
        new: git2::Oid,
        paths: &[String],
    ) -> Result<(), WriteError> {
        let journal = self.repo.path().join(JOURNAL);
        let mut record = format!("fast-forward refs/heads/{branch} {old} {new}\n");
        for p in paths {
            record.push_str(p);
            record.push('\n');
        }
        write_file_atomic(&journal, record.as_bytes())?;
        failpoint::hit("ff-journal");
        self.write_paths(new, paths, Some(old))?;
        failpoint::hit("ff-index");
        self.repo.reference_matching(
            &format!("refs/heads/{branch}"),
            new,
            true,
            old,
            "kairo: fast-forward",
        )?;
        failpoint::hit("ff-ref");
        remove_if_exists(&journal)?;
        Ok(())
    }

    /// Writes `paths` as `commit` has them into the working tree (without following links),
    /// then into the index through `git update-index`, which takes and releases git's own
    /// index lock: kairo never holds `index.lock` itself, so a kill never leaves one behind.
    fn write_paths(
        &self,
        commit: git2::Oid,
        paths: &[String],
        unchanged_since: Option<git2::Oid>,
    ) -> Result<(), WriteError> {
        let mut tree = Entries::new(&self.repo, self.repo.find_commit(commit)?.tree()?);
        let mut before = match unchanged_since {
            Some(c) => Some(Entries::new(&self.repo, self.repo.find_commit(c)?.tree()?)),
            None => None,
        };
        for path in paths {
            let full = format!("{}{path}", self.prefix);
            if let Some(before) = &mut before {
                // Just before replacing it: the file must still be what was checked (an edit
                // made since is the user's, and stops the update; the journal lets the next
                // run sort it out).
                let blob = before.get(&full)?.map(|e| e.id);
                if !holds(&read_nofollow(&self.workdir.join(&full))?, blob)? {
                    return Err(WriteError::Dirty(path.clone()));
                }
            }
            match tree.get(&full)? {
                Some(e) => {
                    let blob = self.repo.find_blob(e.id)?;
                    crate::apply::write_below(&self.workdir, &full, blob.content())
                        .map_err(|e| WriteError::Command(format!("{e}")))?;
                }
                None => {
                    let target = self.workdir.join(&full);
                    if let Err(e) = std::fs::remove_file(&target)
                        && e.kind() != std::io::ErrorKind::NotFound
                    {
                        return Err(WriteError::Io {
                            path: target,
                            source: e,
                        });
                    }
                }
            }
            failpoint::hit("ff-write");
        }
        let mut list = Vec::new();
        for path in paths {
            list.extend_from_slice(self.prefix.as_bytes());
            list.extend_from_slice(path.as_bytes());
            list.push(0);
        }
        let out = self.git_stdin(
            &["update-index", "--add", "--remove", "-z", "--stdin"],
            &list,
        )?;
        if !out.status.success() {
            return Err(WriteError::Command(format!(
                "updating the index: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            )));
        }
        Ok(())
    }

    /// Completes (or, when the user changed things since, backs out of) a fast-forward that a
    /// killed run left in its journal. Call with the repository lock held. Returns a note for
    /// the user when there was something to do.
    pub fn recover(&self) -> Result<Option<String>, WriteError> {
        let journal = self.repo.path().join(JOURNAL);
        let Ok(text) = std::fs::read_to_string(&journal) else {
            return Ok(None);
        };
        let journal_name = ".git/".to_string() + JOURNAL;
        let broken = |detail: &str| WriteError::Journal {
            journal: journal_name.clone(),
            detail: detail.to_string(),
        };
        let mut lines = text.lines();
        let header = lines.next().unwrap_or_default();
        let parts: Vec<&str> = header.split(' ').collect();
        let [kind, reference, old, new] = parts[..] else {
            // An older kairo's journal (pid + files) or a damaged one: the lock proves its
            // writer is gone, and nothing below may be guessed. Name it and stop.
            return Err(broken("it is not a journal this kairo understands"));
        };
        if kind != "fast-forward" {
            return Err(broken("unknown journal entry"));
        }
        let (Ok(old), Ok(new)) = (git2::Oid::from_str(old), git2::Oid::from_str(new)) else {
            return Err(broken("unreadable commit ids"));
        };
        let paths: Vec<String> = lines
            .filter(|l| !l.is_empty())
            .map(str::to_string)
            .collect();
        let current = self.repo.refname_to_id(reference).ok();
        let branch = reference.trim_start_matches("refs/heads/");
        // Which paths still hold bytes that are either side's (kairo's), and which the user
        // changed since.
        let mut new_tree = Entries::new(&self.repo, self.repo.find_commit(new)?.tree()?);
        let mut old_tree = Entries::new(&self.repo, self.repo.find_commit(old)?.tree()?);
        let index = self.repo.index()?;
        let mut foreign = Vec::new();
        for path in &paths {
            let full = format!("{}{path}", self.prefix);
            let disk = read_nofollow(&self.workdir.join(&full))?;
            let in_new = new_tree.get(&full)?.map(|e| e.id);
            let in_old = old_tree.get(&full)?.map(|e| e.id);
            // The index too: a change staged since the kill is the user's.
            let staged = index.get_path(Path::new(&full), 0).map(|e| e.id);
            let index_ours = staged == in_new || staged == in_old;
            if !index_ours || (!holds(&disk, in_new)? && !holds(&disk, in_old)?) {
                foreign.push(path.clone());
            }
        }
        let note = if current == Some(old) && foreign.is_empty() {
            self.write_paths(new, &paths, None)?;
            self.repo.reference_matching(
                reference,
                new,
                true,
                old,
                "kairo: complete an interrupted fast-forward",
            )?;
            format!(
                "completed an interrupted update of `{branch}` ({} file(s))",
                paths.len()
            )
        } else if current == Some(new) && foreign.is_empty() {
            self.write_paths(new, &paths, None)?;
            format!("completed an interrupted update of `{branch}`")
        } else {
            // The branch moved elsewhere, or files were edited since: put back only the paths
            // that still hold kairo's new bytes where the branch does not have them.
            let keep = current.unwrap_or(old);
            let kairos: Vec<String> = paths
                .iter()
                .filter(|p| !foreign.contains(p))
                .cloned()
                .collect();
            if current != Some(new) && !kairos.is_empty() {
                self.write_paths(keep, &kairos, None)?;
            }
            format!(
                "an interrupted update of `{branch}` was abandoned; {} file(s) with your changes were left as they are",
                foreign.len()
            )
        };
        remove_if_exists(&journal)?;
        Ok(Some(note))
    }

    /// Runs a `git` command that talks to a remote, in the working directory, without a
    /// terminal prompt; `failpoint` names a point hit while the child runs (a kill there leaves
    /// the child to finish on its own). It runs in its own process group, and the group is
    /// killed when it runs longer than the network timeout (a remote that accepts connections
    /// and never answers). A push stopped that way may or may not have landed; the next
    /// attempt's fetch tells.
    fn git_network(
        &self,
        args: &[&str],
        failpoint: Option<&str>,
    ) -> Result<std::process::Output, WriteError> {
        use std::io::Read;
        use std::os::unix::process::CommandExt;
        use wait_timeout::ChildExt;
        let mut child = self
            .command(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .process_group(0)
            .spawn()
            .map_err(|e| WriteError::Command(format!("cannot run git: {e}")))?;
        if let Some(point) = failpoint {
            failpoint::hit(point);
        }
        // Both pipes are drained while waiting, so a chatty git never blocks on a full pipe.
        let drain = |pipe: Option<Box<dyn Read + Send>>| {
            std::thread::spawn(move || {
                let mut bytes = Vec::new();
                if let Some(mut pipe) = pipe {
                    let _ = pipe.read_to_end(&mut bytes);
                }
                bytes
            })
        };
        let stdout = drain(child.stdout.take().map(|p| Box::new(p) as _));
        let stderr = drain(child.stderr.take().map(|p| Box::new(p) as _));
        let failed = |e: std::io::Error| WriteError::Command(format!("git: {e}"));
        let status = if self.network_timeout.is_zero() {
            child.wait().map_err(failed)?
        } else {
            match child.wait_timeout(self.network_timeout).map_err(failed)? {
                Some(status) => status,
                None => {
                    // The whole group: `git` and the transport helpers it started.
                    let group = child.id() as libc::pid_t;
                    // SAFETY: `kill` has no memory-safety preconditions; the group is the
                    // child's own (`process_group(0)`), which has not been reaped yet.
                    unsafe { libc::kill(-group, libc::SIGKILL) };
                    let _ = child.wait();
                    return Err(WriteError::Command(format!(
                        "`git {}` did not finish within {}; the remote accepted the connection but did not answer in time (raise the limit with `--git-timeout`)",
                        args.first().copied().unwrap_or_default(),
                        humantime::format_duration(self.network_timeout)
                    )));
                }
            }
        };
        let join = |h: std::thread::JoinHandle<Vec<u8>>| h.join().unwrap_or_default();
        Ok(std::process::Output {
            status,
            stdout: join(stdout),
            stderr: join(stderr),
        })
    }

    fn git_stdin(&self, args: &[&str], input: &[u8]) -> Result<std::process::Output, WriteError> {
        let mut child = self
            .command(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| WriteError::Command(format!("cannot run git: {e}")))?;
        child
            .stdin
            .take()
            .expect("piped")
            .write_all(input)
            .map_err(|e| WriteError::Command(format!("git: {e}")))?;
        child
            .wait_with_output()
            .map_err(|e| WriteError::Command(format!("git: {e}")))
    }

    /// With a token, HTTPS remotes authenticate with it: a credential helper given through
    /// git's environment configuration reads it from the child's environment.
    fn command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new("git");
        cmd.args(args)
            .current_dir(&self.workdir)
            .env("GIT_TERMINAL_PROMPT", "0");
        if let Some(token) = &self.credentials.token {
            // The empty helper first clears configured helpers, so the token is the one used.
            cmd.env("KAIRO_GIT_TOKEN", token)
                .env(
                    "KAIRO_GIT_USERNAME",
                    self.credentials
                        .username
                        .as_deref()
                        .unwrap_or("x-access-token"),
                )
                .env("GIT_CONFIG_COUNT", "2")
                .env("GIT_CONFIG_KEY_0", "credential.helper")
                .env("GIT_CONFIG_VALUE_0", "")
                .env("GIT_CONFIG_KEY_1", "credential.helper")
                .env(
                    "GIT_CONFIG_VALUE_1",
                    "!f() { test \"$1\" = get || exit 0; echo \"username=$KAIRO_GIT_USERNAME\"; echo \"password=$KAIRO_GIT_TOKEN\"; }; f",
                );
        }
        cmd
    }
}

enum Disk {
    Missing,
    File(Vec<u8>),
    /// A link, directory or other non-file: never kairo's.
    Other,
}

fn read_nofollow(path: &Path) -> Result<Disk, WriteError> {
    match std::fs::symlink_metadata(path) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Disk::Missing),
        Err(e) if e.raw_os_error() == Some(libc::ENOTDIR) => Ok(Disk::Other),
        Err(source) => Err(WriteError::Io {
            path: path.to_path_buf(),
            source,
        }),
        Ok(m) if !m.file_type().is_file() => Ok(Disk::Other),
        Ok(_) => std::fs::read(path)
            .map(Disk::File)
            .map_err(|source| WriteError::Io {
                path: path.to_path_buf(),
                source,
            }),
    }
}

/// Whether what is on disk is exactly `blob` (`None`: the path must be absent).
fn holds(disk: &Disk, blob: Option<git2::Oid>) -> Result<bool, WriteError> {
    Ok(match (blob, disk) {
        (None, Disk::Missing) => true,
        (Some(id), Disk::File(bytes)) => {
            git2::Oid::hash_object(git2::ObjectType::Blob, bytes)? == id
        }
        _ => false,
    })
}

fn write_file_atomic(path: &Path, bytes: &[u8]) -> Result<(), WriteError> {
    crate::apply::write_atomic(path, bytes).map_err(|e| WriteError::Command(e.to_string()))
}

fn remove_if_exists(path: &Path) -> Result<(), WriteError> {
    match std::fs::remove_file(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(source) => Err(WriteError::Io {
            path: path.to_path_buf(),
            source,
        }),
    }
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

/// One tree entry: what [`Entries::get`] returns.
struct Entry {
    id: git2::Oid,
    kind: Option<git2::ObjectType>,
    mode: i32,
}

/// Entries of one tree by path, reading each directory's tree once: writing 500 files of one
/// directory walks down from the root once, not 500 times.
struct Entries<'r> {
    repo: &'r git2::Repository,
    root: git2::Tree<'r>,
    /// Directory path -> its tree (`None`: no such directory).
    dirs: std::collections::BTreeMap<String, Option<git2::Tree<'r>>>,
}

impl<'r> Entries<'r> {
    fn new(repo: &'r git2::Repository, root: git2::Tree<'r>) -> Entries<'r> {
        Entries {
            repo,
            root,
            dirs: std::collections::BTreeMap::new(),
        }
    }

    /// The entry at `path` (repository-relative, `/`-separated), as `Tree::get_path` finds it.
    fn get(&mut self, path: &str) -> Result<Option<Entry>, git2::Error> {
        let (dir, name) = path.rsplit_once('/').unwrap_or(("", path));
        if !self.dirs.contains_key(dir) {
            let tree = if dir.is_empty() {
                Some(self.root.clone())
            } else {
                match self.root.get_path(Path::new(dir)) {
                    Ok(e) if e.kind() == Some(git2::ObjectType::Tree) => {
                        Some(self.repo.find_tree(e.id())?)
                    }
                    _ => None,
                }
            };
            self.dirs.insert(dir.to_string(), tree);
        }
        Ok(self.dirs[dir]
            .as_ref()
            .and_then(|t| t.get_name(name))
            .map(|e| Entry {
                id: e.id(),
                kind: e.kind(),
                mode: e.filemode(),
            }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_are_redacted() {
        assert_eq!(
            redact("To https://bot:s3cr3t@github.com/acme/gitops.git\n ! [rejected]"),
            "To https://***@github.com/acme/gitops.git\n ! [rejected]"
        );
        assert_eq!(redact("file:///tmp/remote.git"), "file:///tmp/remote.git");
        let c = Credentials {
            token: Some("s3cr3t".into()),
            username: None,
        };
        assert!(!format!("{c:?}").contains("s3cr3t"));
    }

    #[test]
    fn identities_are_parsed_strictly() {
        assert_eq!(
            Identity::parse("CI bot <ci@example.com>").unwrap(),
            Identity {
                name: "CI bot".into(),
                email: "ci@example.com".into()
            }
        );
        for bad in [
            "no email",
            "<a@b>",
            "Name <>",
            "Name <a b@c>",
            "Name <a@b",
            "A <a@b> x",
        ] {
            assert!(
                matches!(Identity::parse(bad), Err(WriteError::BadIdentity { .. })),
                "{bad}"
            );
        }
    }
}
