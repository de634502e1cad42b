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
    #[error("git: {0}")]
    Git(#[from] git2::Error),
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
