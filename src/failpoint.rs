//! Named fail points: places where a test can stop kairo dead, as `kill -9` would, at an exact
//! moment instead of after a guessed delay.
//!
//! `KAIRO_FAILPOINT=name` kills the process the first time it reaches `hit("name")`;
//! `name:N` kills it at the N-th time (for points inside loops, such as one file of many).
//! `KAIRO_FAILPOINT_RUN=name:command` instead runs `sh -c command` there and waits for it
//! (every time the point is reached), so a test can act at an exact moment: push from another
//! clone between kairo's fetch and its push, for example.
//! `KAIRO_FAILPOINT_ERROR=name` makes `error("name")` return an IO error, as a full disk or a
//! failing device would, for the paths that must survive an error rather than a kill.
//! Honoured only in debug builds (what `cargo test` runs) or with the `failpoints` feature; a
//! release build compiles every point to nothing.

#[cfg(any(debug_assertions, feature = "failpoints"))]
pub fn hit(name: &str) {
    use std::sync::OnceLock;
    use std::sync::atomic::{AtomicU32, Ordering};
    static WANTED: OnceLock<Option<(String, u32)>> = OnceLock::new();
    static COUNT: AtomicU32 = AtomicU32::new(0);
    // clippy.toml bans environment reads below the command layer; this is the one exception,
    // compiled only into test builds.
    #[allow(clippy::disallowed_methods)]
    let wanted = WANTED.get_or_init(|| {
        let spec = std::env::var("KAIRO_FAILPOINT").ok()?;
        let (point, nth) = match spec.split_once(':') {
            Some((p, n)) => (p.to_string(), n.parse().ok()?),
            None => (spec, 1),
        };
        Some((point, nth))
    });
    static RUN: OnceLock<Option<(String, String)>> = OnceLock::new();
    #[allow(clippy::disallowed_methods)]
    let run = RUN.get_or_init(|| {
        let spec = std::env::var("KAIRO_FAILPOINT_RUN").ok()?;
        let (point, command) = spec.split_once(':')?;
        Some((point.to_string(), command.to_string()))
    });
    if let Some((point, command)) = run
        && point == name
    {
        #[allow(clippy::disallowed_methods)]
        let _ = std::process::Command::new("sh")
            .args(["-c", command])
            .env_remove("KAIRO_FAILPOINT_RUN")
            .status();
    }
    if let Some((point, nth)) = wanted
        && point == name
        && COUNT.fetch_add(1, Ordering::SeqCst) + 1 == *nth
    {
        // SIGKILL, exactly as `kill -9`: no destructors, no buffered output, no cleanup.
        // SAFETY: getpid and kill have no preconditions.
        unsafe {
            libc::kill(libc::getpid(), libc::SIGKILL);
        }
    }
}

#[cfg(not(any(debug_assertions, feature = "failpoints")))]
#[inline(always)]
pub fn hit(_name: &str) {}

/// An IO error at this point when `KAIRO_FAILPOINT_ERROR` names it; `Ok` otherwise.
#[cfg(any(debug_assertions, feature = "failpoints"))]
pub fn error(name: &str) -> std::io::Result<()> {
    use std::sync::OnceLock;
    static WANTED: OnceLock<Option<String>> = OnceLock::new();
    #[allow(clippy::disallowed_methods)]
    let wanted = WANTED.get_or_init(|| std::env::var("KAIRO_FAILPOINT_ERROR").ok());
    if wanted.as_deref() == Some(name) {
        return Err(std::io::Error::other(format!("fail point `{name}`")));
    }
    Ok(())
}

#[cfg(not(any(debug_assertions, feature = "failpoints")))]
#[inline(always)]
pub fn error(_name: &str) -> std::io::Result<()> {
    Ok(())
}
