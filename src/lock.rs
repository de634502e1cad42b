//! One kairo at a time per repository: an advisory lock for every command that writes
//! (`render`, `bump`, `promote`, the daemon's writer).
//!
//! The lock is `flock(2)` on a file inside `.git/` (outside git: a file in the system's
//! temporary directory named after the root's canonical path, so kairo adds nothing to a
//! directory that is not a repository). The
//! kernel releases it when the process dies, however it dies, so a `kill -9` never leaves a lock
//! that blocks the next run, and there is nothing to clean up. The file holds the owner's pid,
//! only to name it in the error. The file itself is never deleted: deleting a lock file that
//! another process has open and is about to lock would let two processes hold "the" lock.

use std::io::{Read, Seek, Write};
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum LockError {
    #[error("another kairo is running in this repository (pid {pid})")]
    Busy { pid: String, path: PathBuf },
    #[error("cannot lock `{}`", .path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// Held for as long as the value lives.
#[derive(Debug)]
pub struct RepoLock {
    _file: std::fs::File,
}

/// Where the lock of the repository rooted at (or containing) `root` lives.
pub fn lock_path(root: &Path) -> PathBuf {
    match git2::Repository::discover(root) {
        Ok(repo) => repo.path().join("kairo.lock"),
        Err(_) => {
            let canonical = root.canonicalize().unwrap_or_else(|_| root.to_path_buf());
            let hash = crate::apply::sha256_hex(canonical.to_string_lossy().as_bytes());
            std::env::temp_dir().join(format!("kairo-{}.lock", &hash[..16]))
        }
    }
}

/// Takes the repository's lock, or fails at once naming the process that holds it.
pub fn acquire(root: &Path) -> Result<RepoLock, LockError> {
    let path = lock_path(root);
    let io = |source| LockError::Io {
        path: path.clone(),
        source,
    };
    let mut options = std::fs::OpenOptions::new();
    options.read(true).write(true).create(true).truncate(false);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC);
    }
    let mut file = options.open(&path).map_err(io)?;
    #[cfg(unix)]
    {
        use std::os::fd::AsRawFd;
        // SAFETY: flock on a file descriptor we own.
        let r = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
        if r != 0 {
            let err = std::io::Error::last_os_error();
            if err.raw_os_error() == Some(libc::EWOULDBLOCK) {
                let mut pid = String::new();
                let _ = file.read_to_string(&mut pid);
                let pid = pid.trim().to_string();
                return Err(LockError::Busy {
                    pid: if pid.is_empty() {
                        "unknown".into()
                    } else {
                        pid
                    },
                    path,
                });
            }
            return Err(io(err));
        }
    }
    file.set_len(0).map_err(io)?;
    file.rewind().map_err(io)?;
    write!(file, "{}", std::process::id()).map_err(io)?;
    Ok(RepoLock { _file: file })
}
