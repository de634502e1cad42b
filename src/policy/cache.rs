//! A content-addressed cache of policy results, so that re-checking objects that did not change
//! (a no-op `kairo render`, a `kairo check` after editing one environment) costs a hash, not an
//! evaluation.
//!
//! A key is the SHA-256 of everything an evaluation depends on: the policy set (kairo's build,
//! the regorus version, every `.rego` and data file's path and bytes, the namespaces), the
//! object's rendered bytes and the `data.kairo` context passed with it, and the template that
//! rendered the object (an entry also proves the object passed the render's output check). Any change to any of
//! them is a miss. Only successful evaluations are stored; errors and limit breaches never are.
//! A policy set that calls a non-deterministic builtin (`rand.intn`) is never cached.
//!
//! The cache lives in the repository's git directory (`.git/kairo/policy-cache/`), never in the
//! working tree; a repository without one is not cached. One file per policy set holds every
//! result, ends with its own SHA-256, and is replaced atomically (temporary file, then rename),
//! so concurrent runs see an old or a new file, never a torn one; a file that fails to parse or
//! verify is a miss. The cache must never make a result wrong: when in doubt, it misses.

use std::collections::BTreeMap;
use std::io::Write as _;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use super::Severity;

const MAGIC: &str = "kairo-policy-cache 1";
/// Files of other policy sets kept besides the current one (other branches, other namespaces).
const KEEP_OTHER_SETS: usize = 3;
/// Entries from earlier runs beyond this many are dropped when a file is rewritten.
const MAX_ENTRIES: usize = 200_000;

pub type Key = [u8; 32];

/// What the policies said about one object.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Entry {
    /// `HelmRelease ns/name`
    pub label: String,
    pub findings: Vec<Cached>,
}

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Cached {
    pub severity: Severity,
    pub policy: String,
    pub rule: String,
    pub message: String,
}

/// `.git/kairo/policy-cache` of the repository at `root`, when `root` is a git work tree
/// (a `.git` directory, or a `.git` file pointing at a worktree's git directory).
pub fn default_dir(root: &Path) -> Option<PathBuf> {
    let dot_git = root.join(".git");
    let meta = std::fs::symlink_metadata(&dot_git).ok()?;
    let git_dir = if meta.is_dir() {
        dot_git
    } else if meta.is_file() {
        let text = std::fs::read_to_string(&dot_git).ok()?;
        let target = text.strip_prefix("gitdir:")?.trim();
        let target = Path::new(target);
        if target.is_absolute() {
            target.to_path_buf()
        } else {
            root.join(target)
        }
    } else {
        return None;
    };
    git_dir
        .is_dir()
        .then(|| git_dir.join("kairo").join("policy-cache"))
}

/// Identifies the kairo build: its version, and the executable's size and modification time, so
/// that a rebuilt kairo (whose evaluation may differ) never reads an older build's results.
pub fn build_identity() -> Option<String> {
    let exe = std::env::current_exe().ok()?;
    let meta = std::fs::metadata(&exe).ok()?;
    let mtime = meta
        .modified()
        .ok()?
        .duration_since(std::time::UNIX_EPOCH)
        .ok()?;
    Some(format!(
        "kairo {} regorus {} exe {} {} {}",
        env!("CARGO_PKG_VERSION"),
        REGORUS_VERSION,
        exe.display(),
        meta.len(),
        mtime.as_nanos()
    ))
}

/// Kept in step with Cargo.lock by `tests::regorus_version_matches_the_lock_file`.
pub const REGORUS_VERSION: &str = "0.14.1";

/// The digest of a policy set: `parts` are (name, bytes) pairs, in a fixed order.
pub fn set_digest<'a>(parts: impl IntoIterator<Item = (&'a str, &'a [u8])>) -> Option<Key> {
    let mut h = Sha256::new();
    let identity = build_identity()?;
    let mut add = |name: &str, bytes: &[u8]| {
        h.update((name.len() as u64).to_le_bytes());
        h.update(name.as_bytes());
        h.update((bytes.len() as u64).to_le_bytes());
        h.update(bytes);
    };
    add(MAGIC, identity.as_bytes());
    for (name, bytes) in parts {
        add(name, bytes);
    }
    Some(h.finalize().into())
}

/// The key of one object rendered by `template` and evaluated under policy set `set` with
/// `context` as `data.kairo`. The template is part of the key because an entry also vouches for
/// the render's output check, which depends on it (see `Checker`).
pub fn key(set: &Key, template: &str, object: &[u8], context: &[u8]) -> Key {
    let mut h = Sha256::new();
    h.update(set);
    h.update((template.len() as u64).to_le_bytes());
    h.update(template.as_bytes());
    h.update((object.len() as u64).to_le_bytes());
    h.update(object);
    h.update((context.len() as u64).to_le_bytes());
    h.update(context);
    h.finalize().into()
}

/// The results stored for one policy set.
pub struct Cache {
    dir: PathBuf,
    set: Key,
    entries: BTreeMap<Key, Entry>,
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn unhex(text: &str) -> Option<Key> {
    if text.len() != 64 {
        return None;
    }
    let mut key = [0u8; 32];
    for (i, byte) in key.iter_mut().enumerate() {
        *byte = u8::from_str_radix(text.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    Some(key)
}

impl Cache {
    fn file(&self) -> PathBuf {
        self.dir.join(format!("{}.results", hex(&self.set)))
    }

    /// Reads the results of policy set `set` from `dir`; anything unreadable is an empty cache.
    pub fn open(dir: PathBuf, set: Key) -> Cache {
        let mut cache = Cache {
            dir,
            set,
            entries: BTreeMap::new(),
        };
        match std::fs::read_to_string(cache.file()) {
            Ok(text) => match parse(&text) {
                Some(entries) => cache.entries = entries,
                None => {
                    tracing::debug!(file = %cache.file().display(), "policy cache file is corrupt; ignored")
                }
            },
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => tracing::debug!(error = %e, "policy cache unreadable; ignored"),
        }
        cache
    }

    pub fn get(&self, key: &Key) -> Option<&Entry> {
        self.entries.get(key)
    }

    /// Adds `new` entries and rewrites the file atomically. Failing to write is not an error:
    /// the next run evaluates again.
    pub fn store(mut self, new: Vec<(Key, Entry)>) {
        if new.is_empty() {
            return;
        }
        // This run's results first: when trimming, they are the ones worth keeping.
        let mut entries = BTreeMap::new();
        for (k, e) in new {
            entries.insert(k, e);
        }
        for (k, e) in std::mem::take(&mut self.entries) {
            if entries.len() >= MAX_ENTRIES {
                break;
            }
            entries.entry(k).or_insert(e);
        }
        if let Err(e) = self.write(&entries) {
            tracing::debug!(error = %e, "policy cache not written");
        }
    }

    fn write(&self, entries: &BTreeMap<Key, Entry>) -> std::io::Result<()> {
        std::fs::create_dir_all(&self.dir)?;
        let mut body = String::with_capacity(entries.len() * 96);
        body.push_str(MAGIC);
        body.push('\n');
        for (k, e) in entries {
            body.push_str(&hex(k));
            body.push(' ');
            body.push_str(&serde_json::to_string(e).map_err(std::io::Error::other)?);
            body.push('\n');
        }
        let sum = hex(&Sha256::digest(body.as_bytes()));
        body.push_str(&sum);
        body.push('\n');
        let mut tmp = tempfile::Builder::new()
            .prefix(".tmp-")
            .tempfile_in(&self.dir)?;
        tmp.write_all(body.as_bytes())?;
        tmp.persist(self.file()).map_err(|e| e.error)?;
        self.prune();
        Ok(())
    }

    /// Removes the files of all but the most recent other policy sets.
    fn prune(&self) {
        let Ok(list) = std::fs::read_dir(&self.dir) else {
            return;
        };
        let own = self.file();
        let mut others: Vec<(std::time::SystemTime, PathBuf)> = list
            .flatten()
            .map(|e| e.path())
            .filter(|p| p != &own && p.extension().is_some_and(|x| x == "results"))
            .filter_map(|p| Some((std::fs::metadata(&p).ok()?.modified().ok()?, p)))
            .collect();
        others.sort();
        others.reverse();
        for (_, path) in others.into_iter().skip(KEEP_OTHER_SETS) {
            let _ = std::fs::remove_file(path);
        }
    }
}

/// `None` when the text is not exactly what `write` produces.
fn parse(text: &str) -> Option<BTreeMap<Key, Entry>> {
    let body_end = text.strip_suffix('\n')?.rfind('\n')? + 1;
    let (body, sum) = text.split_at(body_end);
    if hex(&Sha256::digest(body.as_bytes())) != sum.trim_end() {
        return None;
    }
    let mut lines = body.lines();
    if lines.next()? != MAGIC {
        return None;
    }
    let mut entries = BTreeMap::new();
    for line in lines {
        let (k, json) = line.split_once(' ')?;
        entries.insert(unhex(k)?, serde_json::from_str(json).ok()?);
    }
    Some(entries)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(message: &str) -> Entry {
        Entry {
            label: "HelmRelease a/b".into(),
            findings: vec![Cached {
                severity: Severity::Deny,
                policy: "policies/x.rego".into(),
                rule: "deny".into(),
                message: message.into(),
            }],
        }
    }

    #[test]
    fn stored_entries_read_back_and_corruption_is_a_miss() {
        let dir = tempfile::tempdir().unwrap();
        let set = [7u8; 32];
        let k1 = key(&set, "t.j2", b"object", b"{}");
        let k2 = key(&set, "t.j2", b"object", b"{\"x\":1}");
        assert_ne!(k1, k2, "the context is part of the key");
        assert_ne!(
            k1,
            key(&set, "u.j2", b"object", b"{}"),
            "so is the template"
        );
        Cache::open(dir.path().into(), set).store(vec![(k1, entry("one"))]);
        Cache::open(dir.path().into(), set).store(vec![(k2, entry("two"))]);
        let cache = Cache::open(dir.path().into(), set);
        assert_eq!(cache.get(&k1), Some(&entry("one")));
        assert_eq!(cache.get(&k2), Some(&entry("two")));
        // Another policy set sees nothing.
        assert_eq!(Cache::open(dir.path().into(), [8u8; 32]).get(&k1), None);

        // Flip one byte of a message: the checksum no longer matches, everything misses.
        let file = cache.file();
        let text = std::fs::read_to_string(&file).unwrap();
        std::fs::write(&file, text.replacen("one", "onf", 1)).unwrap();
        assert_eq!(Cache::open(dir.path().into(), set).get(&k1), None);
        // Truncated, empty, garbage.
        for bad in [&text[..text.len() / 2], "", "\n\n\n", "not a cache\nabc\n"] {
            std::fs::write(&file, bad).unwrap();
            assert_eq!(
                Cache::open(dir.path().into(), set).get(&k1),
                None,
                "{bad:?}"
            );
        }
    }

    #[test]
    fn regorus_version_matches_the_lock_file() {
        let lock =
            std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/Cargo.lock")).unwrap();
        let expected = format!("name = \"regorus\"\nversion = \"{REGORUS_VERSION}\"\n");
        assert!(
            lock.contains(&expected),
            "update policy::cache::REGORUS_VERSION to the regorus version in Cargo.lock"
        );
    }

    #[test]
    fn a_worktree_git_file_is_followed() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(default_dir(dir.path()), None);
        std::fs::create_dir_all(dir.path().join("gitdir")).unwrap();
        std::fs::write(dir.path().join(".git"), "gitdir: gitdir\n").unwrap();
        assert_eq!(
            default_dir(dir.path()),
            Some(dir.path().join("gitdir/kairo/policy-cache"))
        );
    }
}
