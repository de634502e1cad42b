//! Reading the repository's input files (`environments/`, `templates/`, `policies/`).
//!
//! Inputs arrive through pull requests, and CI runs kairo with deploy credentials in its
//! environment. A file is read only when it resolves to a regular file inside the repository
//! root: a symbolic link to `/proc/self/environ`, `/etc/passwd` or another checkout is refused
//! before a byte of it is read, and so are FIFOs and devices (which could block forever).
//! Links that stay inside the repository are followed.
//!
//! This module must not interpret contents; it only decides what may be read.

use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum InputError {
    #[error("failed to read `{path}`")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("`{path}` is a symbolic link to a file outside the repository; kairo does not read it")]
    Outside { path: String },
    #[error("`{path}` is not a regular file")]
    NotAFile { path: String },
}

impl InputError {
    pub fn path(&self) -> &str {
        match self {
            InputError::Io { path, .. }
            | InputError::Outside { path }
            | InputError::NotAFile { path } => path,
        }
    }

    pub fn hint(&self) -> &'static str {
        match self {
            InputError::Outside { .. } => {
                "replace the link with the file itself, or point it at a file inside the repository"
            }
            InputError::NotAFile { .. } => "inputs must be ordinary files",
            InputError::Io { .. } => "check that the file exists and is readable",
        }
    }
}

/// The repository root, resolved once: `canonicalize` of the root given on the command line.
fn canonical_root(root: &Path, rel: &str) -> Result<PathBuf, InputError> {
    root.canonicalize().map_err(|source| InputError::Io {
        path: rel.to_string(),
        source,
    })
}

/// Checks that `<root>/<rel>` resolves to a regular file inside the root, without reading it.
pub fn check(root: &Path, rel: &str) -> Result<(), InputError> {
    let path = root.join(rel);
    let resolved = path.canonicalize().map_err(|source| {
        // A dangling link reports NotFound; say what it is.
        if std::fs::symlink_metadata(&path).is_ok_and(|m| m.file_type().is_symlink()) {
            InputError::Outside {
                path: rel.to_string(),
            }
        } else {
            InputError::Io {
                path: rel.to_string(),
                source,
            }
        }
    })?;
    if !resolved.starts_with(canonical_root(root, rel)?) {
        return Err(InputError::Outside {
            path: rel.to_string(),
        });
    }
    let meta = std::fs::metadata(&resolved).map_err(|source| InputError::Io {
        path: rel.to_string(),
        source,
    })?;
    if !meta.is_file() {
        return Err(InputError::NotAFile {
            path: rel.to_string(),
        });
    }
    Ok(())
}

/// Reads `<root>/<rel>` (a `/`-separated path relative to the root) after `check`.
pub fn read(root: &Path, rel: &str) -> Result<Vec<u8>, InputError> {
    check(root, rel)?;
    std::fs::read(root.join(rel)).map_err(|source| InputError::Io {
        path: rel.to_string(),
        source,
    })
}

/// The files `policy::Policies::load` reads from `policies/`.
pub const POLICY_FILES: &[&str] = &[".rego", ".yaml", ".yml", ".json"];

/// Checks every entry of `<root>/<dir>` whose name ends with one of `extensions` (a missing
/// directory holds none). Used where another module reads the files itself.
pub fn check_dir(root: &Path, dir: &str, extensions: &[&str]) -> Result<(), InputError> {
    let entries = match std::fs::read_dir(root.join(dir)) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(source) => {
            return Err(InputError::Io {
                path: dir.to_string(),
                source,
            });
        }
    };
    let mut names: Vec<String> = entries
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| extensions.iter().any(|x| n.ends_with(x)))
        .collect();
    names.sort();
    for name in names {
        check(root, &format!("{dir}/{name}"))?;
    }
    Ok(())
}

/// Where the first byte that is not UTF-8 is: (1-based line, 1-based column in characters,
/// the valid text of that line).
pub fn utf8_position(bytes: &[u8], valid_up_to: usize) -> (u64, u64, String) {
    let before = &bytes[..valid_up_to];
    let line_start = before
        .iter()
        .rposition(|b| *b == b'\n')
        .map_or(0, |i| i + 1);
    let line = before.iter().filter(|b| **b == b'\n').count() as u64 + 1;
    // Everything before `valid_up_to` is valid UTF-8.
    let prefix = std::str::from_utf8(&before[line_start..]).unwrap_or_default();
    (line, prefix.chars().count() as u64 + 1, prefix.to_string())
}
