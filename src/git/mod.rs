//! Git access: reading revisions (here) and writing commits (`writer`).
//!
//! Architecture Invariant: reading a revision never touches the working tree, the index or refs:
//! files come straight out of the revision's tree objects.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

pub mod writer;

pub use writer::{Credentials, Identity, Signing, WriteError, Writer};

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

/// The blobs of revision `rev` under the given top-level directories of the kairo root `root`
/// (which may be a subdirectory of the repository). Keys are paths relative to `root`.
pub fn read_revision(
    root: &Path,
    rev: &str,
    dirs: &[&str],
) -> Result<BTreeMap<String, Vec<u8>>, GitError> {
    let (repo, prefix) = open(root)?;
    let tree = repo
        .revparse_single(rev)
        .and_then(|o| o.peel_to_tree())
        .map_err(|_| GitError::UnknownRevision(rev.to_string()))?;
    Ok(read_tree(&repo, &prefix, &tree, dirs)?.files)
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

/// The blobs under `dirs` (relative to the kairo root, which is `prefix` inside the repository)
/// of `tree`. Symbolic links are not files kairo reads: their paths are returned separately so
/// that a plan touching one can refuse it.
pub fn read_tree(
    repo: &git2::Repository,
    prefix: &str,
    tree: &git2::Tree,
    dirs: &[&str],
) -> Result<TreeFiles, GitError> {
    let mut out = TreeFiles::default();
    for dir in dirs {
        let entry = match tree.get_path(Path::new(&format!("{prefix}{dir}"))) {
            Ok(e) => e,
            Err(e) if e.code() == git2::ErrorCode::NotFound => continue,
            Err(e) => return Err(e.into()),
        };
        let Ok(subtree) = entry.to_object(repo)?.peel_to_tree() else {
            continue;
        };
        let mut failure = None;
        subtree.walk(git2::TreeWalkMode::PreOrder, |parent, item| {
            if item.kind() != Some(git2::ObjectType::Blob) {
                return git2::TreeWalkResult::Ok;
            }
            let path = format!("{dir}/{parent}{}", item.name().unwrap_or_default());
            if item.filemode() == i32::from(git2::FileMode::Link) {
                out.symlinks.insert(path);
                return git2::TreeWalkResult::Ok;
            }
            match repo.find_blob(item.id()) {
                Ok(blob) => {
                    out.files.insert(path, blob.content().to_vec());
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
    Ok(out)
}

/// Files read out of a git tree.
#[derive(Debug, Default, Clone)]
pub struct TreeFiles {
    pub files: BTreeMap<String, Vec<u8>>,
    pub symlinks: std::collections::BTreeSet<String>,
}
