//! The no-op fast path of `kairo render`: after a clean render (nothing to write, no conflict,
//! no warning, no finding), a stamp in `.git/kairo/render-stamp` records a digest of everything
//! the render read (the kairo build, the options, every file under `environments/`,
//! `templates/` and `policies/`) and the `lstat` of every entry under `clusters/`. When the
//! next render finds the same digest and the same `clusters/` entries, its result is known: the
//! same clean no-op, reported without loading, rendering or checking anything.
//!
//! Architecture Invariant: a stamp only ever skips work whose result it proves. Any difference
//! (a byte of input, a file added, replaced, touched or edited under `clusters/`, another kairo
//! build) means the full render. Racy entries are handled as git handles its index: an entry
//! whose change time is not strictly older than the run's start, read from the filesystem's own
//! clock, is never recorded, so a change made in the same clock tick as the read cannot hide.
//! The same rule covers the inputs: a run records nothing when an input changed after it
//! started (it may have read the old bytes and hashed the new ones). Inputs that are symbolic
//! links, and policies that call a non-deterministic builtin, are never stamped.
//! The stamp is a cache: failing to read or write it is never an error, and it is read and
//! written without following links.

use std::io::Write;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use crate::render::{CLUSTERS_DIR, TEMPLATES_DIR};

const MAGIC: &str = "kairo-render-stamp 1";
const FILE: &str = "render-stamp";
const CLOCK: &str = "render-stamp.clock";

/// What a fresh stamp proves: the render of these environments is a clean no-op.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hit {
    pub environments: Vec<String>,
    pub unchanged: usize,
}

/// One entry under `clusters/`, as `lstat` sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Entry {
    path: String,
    dev: u64,
    ino: u64,
    mode: u32,
    size: u64,
    mtime: (i64, i64),
    ctime: (i64, i64),
}

fn dir(root: &Path) -> Option<PathBuf> {
    crate::policy::default_cache_dir(root)?
        .parent()
        .map(Path::to_path_buf)
}

/// A run of the renderer, started: the filesystem's clock at its start and the inputs' digest.
pub struct Run {
    key: String,
    options: Vec<String>,
    /// Change time of a file written when the run started, on the filesystem's clock.
    started: (i64, i64),
    dir: PathBuf,
}

/// The largest stamp read; a real one is about 100 bytes per generated file.
const MAX_STAMP: u64 = 256 << 20;

/// Starts a run: `None` outside a git repository, or when an input cannot be read (the full
/// render then reports it). `options` are the flags that change a render's result.
pub fn start(root: &Path, options: &[String]) -> Option<Run> {
    let dir = dir(root)?;
    std::fs::create_dir_all(&dir).ok()?;
    let started = {
        let mut f = open_nofollow(&dir.join(CLOCK), true)?;
        f.write_all(b"x").ok()?;
        ctime(&f.metadata().ok()?)
    };
    let (key, _) = key(root, options)?;
    crate::failpoint::hit("stamp-keyed");
    Some(Run {
        key,
        options: options.to_vec(),
        started,
        dir,
    })
}

/// Opens a regular file without following a link (and without blocking on a FIFO).
fn open_nofollow(path: &Path, write: bool) -> Option<std::fs::File> {
    use std::os::unix::fs::OpenOptionsExt;
    let mut options = std::fs::OpenOptions::new();
    if write {
        options.write(true).create(true).truncate(true);
    } else {
        options.read(true);
    }
    options.custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK);
    let file = options.open(path).ok()?;
    file.metadata().ok()?.is_file().then_some(file)
}

fn ctime(m: &std::fs::Metadata) -> (i64, i64) {
    use std::os::unix::fs::MetadataExt;
    (m.ctime(), m.ctime_nsec())
}

/// The digest of the build, the options and every input file, and the newest change time among
/// the inputs. `None` when an input cannot be stamped.
fn key(root: &Path, options: &[String]) -> Option<(String, (i64, i64))> {
    let mut h = Sha256::new();
    let mut newest = (i64::MIN, 0);
    let mut add = |bytes: &[u8]| {
        h.update((bytes.len() as u64).to_le_bytes());
        h.update(bytes);
    };
    add(MAGIC.as_bytes());
    add(crate::policy::build_identity()?.as_bytes());
    for o in options {
        add(o.as_bytes());
    }
    for top in [
        crate::model::ENVIRONMENTS_DIR,
        TEMPLATES_DIR,
        crate::policy::POLICIES_DIR,
    ] {
        add(top.as_bytes());
        let base = root.join(top);
        if std::fs::symlink_metadata(&base).is_err() {
            add(b"absent");
            continue;
        }
        for entry in walkdir::WalkDir::new(&base)
            .follow_links(false)
            .sort_by_file_name()
        {
            let entry = entry.ok()?;
            let rel = entry.path().strip_prefix(root).ok()?;
            add(rel.as_os_str().as_encoded_bytes());
            newest = newest.max(ctime(&entry.metadata().ok()?));
            let t = entry.file_type();
            if t.is_file() {
                add(b"f");
                let bytes = std::fs::read(entry.path()).ok()?;
                if top == crate::policy::POLICIES_DIR
                    && !crate::policy::is_deterministic(&String::from_utf8_lossy(&bytes))
                {
                    return None;
                }
                add(&bytes);
            } else if t.is_dir() {
                add(b"d");
            } else {
                // A link is read through by the render: its target is an input too.
                return None;
            }
        }
    }
    let digest = h.finalize();
    Some((digest.iter().map(|b| format!("{b:02x}")).collect(), newest))
}

/// Every entry under `clusters/`, sorted by path.
fn snapshot(root: &Path) -> Option<Vec<Entry>> {
    use std::os::unix::fs::MetadataExt;
    let base = root.join(CLUSTERS_DIR);
    let mut out = Vec::new();
    for entry in walkdir::WalkDir::new(&base)
        .follow_links(false)
        .sort_by_file_name()
    {
        let entry = entry.ok()?;
        let m = entry.metadata().ok()?;
        let path = entry.path().strip_prefix(root).ok()?.to_str()?.to_string();
        if path.contains('\n') {
            return None;
        }
        out.push(Entry {
            path,
            dev: m.dev(),
            ino: m.ino(),
            mode: m.mode(),
            size: m.size(),
            mtime: (m.mtime(), m.mtime_nsec()),
            ctime: (m.ctime(), m.ctime_nsec()),
        });
    }
    Some(out)
}

impl Run {
    /// The clean no-op this run is known to be, when the stamp proves it.
    pub fn fresh(&self, root: &Path) -> Option<Hit> {
        let text = {
            use std::io::Read;
            let mut text = String::new();
            open_nofollow(&self.dir.join(FILE), false)?
                .take(MAX_STAMP)
                .read_to_string(&mut text)
                .ok()?;
            text
        };
        let mut lines = text.lines();
        if lines.next()? != MAGIC || lines.next()?.strip_prefix("key ")? != self.key {
            return None;
        }
        let environments = lines
            .next()?
            .strip_prefix("environments")?
            .split_whitespace()
            .map(str::to_string)
            .collect();
        let unchanged = lines.next()?.strip_prefix("unchanged ")?.parse().ok()?;
        let mut recorded = Vec::new();
        for line in lines {
            recorded.push(parse_entry(line)?);
        }
        (snapshot(root)? == recorded).then_some(Hit {
            environments,
            unchanged,
        })
    }

    /// Records that this run was a clean no-op of `hit`, unless an entry under `clusters/`
    /// changed after the run started (it may have changed after it was compared).
    pub fn record(&self, root: &Path, hit: &Hit) {
        let Some(entries) = snapshot(root) else {
            return;
        };
        if entries.iter().any(|e| e.ctime >= self.started) {
            return;
        }
        // The inputs must be what the run hashed before it read them, untouched since.
        match key(root, &self.options) {
            Some((key, newest)) if key == self.key && newest < self.started => {}
            _ => return,
        }
        let mut text = format!(
            "{MAGIC}\nkey {}\nenvironments {}\nunchanged {}\n",
            self.key,
            hit.environments.join(" "),
            hit.unchanged
        );
        for e in &entries {
            text.push_str(&format!(
                "{} {} {} {} {}.{} {}.{} {}\n",
                e.dev, e.ino, e.mode, e.size, e.mtime.0, e.mtime.1, e.ctime.0, e.ctime.1, e.path
            ));
        }
        let _ = crate::apply::write_atomic(&self.dir.join(FILE), text.as_bytes());
    }
}

fn parse_entry(line: &str) -> Option<Entry> {
    let mut f = line.splitn(7, ' ');
    let mut num = || f.next()?.parse::<u64>().ok();
    let (dev, ino) = (num()?, num()?);
    let mode = u32::try_from(num()?).ok()?;
    let size = num()?;
    let mut time = || {
        let (s, ns) = f.next()?.split_once('.')?;
        Some((s.parse().ok()?, ns.parse().ok()?))
    };
    let (mtime, ctime) = (time()?, time()?);
    Some(Entry {
        path: f.next()?.to_string(),
        dev,
        ino,
        mode,
        size,
        mtime,
        ctime,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_entry_survives_its_text_form() {
        let e = Entry {
            path: "clusters/a b/c.yaml".into(),
            dev: 2049,
            ino: 77,
            mode: 0o100644,
            size: 12,
            mtime: (1_700_000_000, 5),
            ctime: (-1, 999_999_999),
        };
        let line = format!(
            "{} {} {} {} {}.{} {}.{} {}",
            e.dev, e.ino, e.mode, e.size, e.mtime.0, e.mtime.1, e.ctime.0, e.ctime.1, e.path
        );
        assert_eq!(parse_entry(&line), Some(e));
        assert_eq!(parse_entry("1 2 3"), None);
    }
}
