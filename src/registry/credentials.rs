//! Registry credentials as docker resolves them: `$DOCKER_CONFIG/config.json` (default
//! `~/.docker/config.json`), or the whole file's content in `DOCKER_AUTH_CONFIG` (as CI
//! runners pass it). For a host, `credHelpers[host]` wins, then `credsStore`, then `auths`;
//! helpers are `docker-credential-<name>` programs speaking docker's `get` protocol.
//!
//! Secrets never reach a log or an error: `Credentials`' `Debug` prints only the user name.
//!
//! Architecture Invariant: a helper runs under a deadline (`DEFAULT_HELPER_TIMEOUT`) with its
//! output capped (`MAX_HELPER_OUTPUT`), as an async child process: a helper that hangs or
//! floods costs its registry one `credentials` error, never the caller's thread (the daemon
//! serves `/healthz`, webhooks and SIGTERM on the same single-thread runtime).

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::fmt;
use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};

use base64::Engine;
use serde::Deserialize;

use super::name::{DOCKER_HUB_CONFIG_KEY, DOCKER_HUB_HOST};

#[derive(Clone, PartialEq, Eq)]
pub enum Credentials {
    Basic {
        username: String,
        password: String,
    },
    /// An OAuth2 refresh token (`identitytoken`), exchanged at the token endpoint.
    IdentityToken {
        token: String,
    },
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Credentials::Basic { username, .. } => write!(f, "Basic({username}, <redacted>)"),
            Credentials::IdentityToken { .. } => f.write_str("IdentityToken(<redacted>)"),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum CredentialsError {
    #[error("failed to read docker config `{path}`")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("docker config `{path}` is not valid: {message}")]
    Invalid { path: PathBuf, message: String },
    #[error("credential helper `docker-credential-{helper}` failed for `{host}`: {message}")]
    Helper {
        helper: String,
        host: String,
        message: String,
    },
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct ConfigFile {
    #[serde(default)]
    auths: BTreeMap<String, AuthEntry>,
    #[serde(default)]
    cred_helpers: BTreeMap<String, String>,
    creds_store: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
struct AuthEntry {
    auth: Option<String>,
    username: Option<String>,
    password: Option<String>,
    identitytoken: Option<String>,
}

/// How long a credential helper may take before it is killed.
pub const DEFAULT_HELPER_TIMEOUT: Duration = Duration::from_secs(10);
/// The most a credential helper may write on stdout (or stderr): a reply is a few hundred
/// bytes; more is an error, not read on.
pub const MAX_HELPER_OUTPUT: usize = 1 << 20;

/// The docker configuration, read once.
#[derive(Debug)]
pub struct DockerConfig {
    file: ConfigFile,
    path: PathBuf,
    helper_timeout: Duration,
    /// The `PATH` helpers are looked up in; `None`: the process's own.
    helper_path: Option<OsString>,
}

impl Default for DockerConfig {
    fn default() -> Self {
        DockerConfig {
            file: ConfigFile::default(),
            path: PathBuf::new(),
            helper_timeout: DEFAULT_HELPER_TIMEOUT,
            helper_path: None,
        }
    }
}

/// docker's `ConvertToHostname`: `https://host/v1/` -> `host`.
fn hostname(key: &str) -> &str {
    let rest = key
        .strip_prefix("https://")
        .or_else(|| key.strip_prefix("http://"))
        .unwrap_or(key);
    rest.split('/').next().unwrap_or(rest)
}

impl DockerConfig {
    /// Reads the configuration docker would use; no file means no credentials.
    // Docker's own resolution reads DOCKER_AUTH_CONFIG, DOCKER_CONFIG and HOME: the one
    // sanctioned exception to "environment only in the command layer" (see clippy.toml).
    #[allow(clippy::disallowed_methods)]
    pub fn load() -> Result<DockerConfig, CredentialsError> {
        if let Some(text) = std::env::var_os("DOCKER_AUTH_CONFIG") {
            let path = PathBuf::from("$DOCKER_AUTH_CONFIG");
            return Self::parse(&text.to_string_lossy(), path);
        }
        let dir = match std::env::var_os("DOCKER_CONFIG") {
            Some(dir) => PathBuf::from(dir),
            None => match std::env::var_os("HOME") {
                Some(home) => PathBuf::from(home).join(".docker"),
                None => return Ok(DockerConfig::default()),
            },
        };
        let path = dir.join("config.json");
        match std::fs::read_to_string(&path) {
            Ok(text) => Self::parse(&text, path),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(DockerConfig::default()),
            Err(source) => Err(CredentialsError::Read { path, source }),
        }
    }

    pub fn parse(text: &str, path: PathBuf) -> Result<DockerConfig, CredentialsError> {
        let file = serde_json::from_str(text).map_err(|e| CredentialsError::Invalid {
            path: path.clone(),
            // serde_json's message names the position, never the content.
            message: e.to_string(),
        })?;
        Ok(DockerConfig {
            file,
            path,
            ..DockerConfig::default()
        })
    }

    /// How long a credential helper may run before it is killed (default 10 s).
    pub fn with_helper_timeout(mut self, timeout: Duration) -> DockerConfig {
        self.helper_timeout = timeout;
        self
    }

    /// The `PATH` to find `docker-credential-*` programs in, instead of the process's.
    pub fn with_helper_path(mut self, path: impl Into<OsString>) -> DockerConfig {
        self.helper_path = Some(path.into());
        self
    }

    /// The credentials for a registry host, as docker would find them. A helper runs as an
    /// async child process under the deadline: awaiting this never blocks the thread.
    pub async fn credentials_for(
        &self,
        registry: &str,
    ) -> Result<Option<Credentials>, CredentialsError> {
        // Docker Hub's entries are keyed by its legacy index URL.
        let wanted = if registry == DOCKER_HUB_HOST {
            hostname(DOCKER_HUB_CONFIG_KEY)
        } else {
            registry
        };
        let helper_key = if registry == DOCKER_HUB_HOST {
            DOCKER_HUB_CONFIG_KEY
        } else {
            registry
        };
        let helper = self
            .file
            .cred_helpers
            .iter()
            .find(|(k, _)| hostname(k) == wanted)
            .map(|(_, v)| v)
            .or(self.file.creds_store.as_ref());
        if let Some(helper) = helper {
            return run_helper(
                helper,
                helper_key,
                self.helper_timeout,
                self.helper_path.as_ref(),
            )
            .await;
        }
        let Some(entry) = self
            .file
            .auths
            .iter()
            .find(|(k, _)| hostname(k) == wanted)
            .map(|(_, v)| v)
        else {
            return Ok(None);
        };
        if let Some(token) = entry.identitytoken.as_ref().filter(|t| !t.is_empty()) {
            return Ok(Some(Credentials::IdentityToken {
                token: token.clone(),
            }));
        }
        if let Some(auth) = entry.auth.as_ref().filter(|a| !a.is_empty()) {
            let invalid = || CredentialsError::Invalid {
                path: self.path.clone(),
                message: format!("the `auth` of `{registry}` is not base64 `user:password`"),
            };
            let bytes = base64::engine::general_purpose::STANDARD
                .decode(auth.trim())
                .map_err(|_| invalid())?;
            let text = String::from_utf8(bytes).map_err(|_| invalid())?;
            let (username, password) = text.split_once(':').ok_or_else(invalid)?;
            return Ok(Some(Credentials::Basic {
                username: username.to_string(),
                password: password.to_string(),
            }));
        }
        match (&entry.username, &entry.password) {
            (Some(u), Some(p)) => Ok(Some(Credentials::Basic {
                username: u.clone(),
                password: p.clone(),
            })),
            _ => Ok(None),
        }
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct HelperReply {
    username: String,
    secret: String,
}

/// What a helper left behind when it ended within the deadline.
enum Ran {
    Done {
        status: std::process::ExitStatus,
        stdout: Vec<u8>,
        stderr: Vec<u8>,
    },
    /// It wrote more than `MAX_HELPER_OUTPUT` on a stream.
    Overflow,
}

/// Reads `from` to its end, or stops at `MAX_HELPER_OUTPUT` (`None`).
async fn read_capped(from: Option<impl AsyncRead + Unpin>) -> std::io::Result<Option<Vec<u8>>> {
    let mut out = Vec::new();
    if let Some(from) = from {
        from.take(MAX_HELPER_OUTPUT as u64 + 1)
            .read_to_end(&mut out)
            .await?;
    }
    Ok((out.len() <= MAX_HELPER_OUTPUT).then_some(out))
}

/// `docker-credential-<helper> get`, host on stdin, JSON on stdout, within `timeout`. On
/// expiry or overflow the helper is killed and reaped. Errors say why (exit status, timeout,
/// size, not JSON), never what it wrote: its output may hold the secret.
// Docker's credential helpers are programs: the one process kairo starts outside the git writer.
#[allow(clippy::disallowed_methods)]
async fn run_helper(
    helper: &str,
    host: &str,
    timeout: Duration,
    path: Option<&OsString>,
) -> Result<Option<Credentials>, CredentialsError> {
    let fail = |message: String| CredentialsError::Helper {
        helper: helper.to_string(),
        host: host.to_string(),
        message,
    };
    let mut command = tokio::process::Command::new(format!("docker-credential-{helper}"));
    command
        .arg("get")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        // A lookup dropped (a lookup deadline, shutdown) takes its helper with it.
        .kill_on_drop(true);
    if let Some(path) = path {
        command.env("PATH", path);
    }
    let mut child = command
        .spawn()
        .map_err(|e| fail(format!("cannot start it: {e}")))?;
    let (stdin, stdout, stderr) = (child.stdin.take(), child.stdout.take(), child.stderr.take());
    let ran = tokio::time::timeout(timeout, async {
        if let Some(mut stdin) = stdin {
            // A helper that exits without reading stdin closes the pipe: not an error here,
            // its exit status says what happened.
            let _ = stdin.write_all(host.as_bytes()).await;
        }
        let (stdout, stderr) = tokio::join!(read_capped(stdout), read_capped(stderr));
        let (Some(stdout), Some(stderr)) = (stdout?, stderr?) else {
            return Ok(Ran::Overflow);
        };
        let status = child.wait().await?;
        Ok::<_, std::io::Error>(Ran::Done {
            status,
            stdout,
            stderr,
        })
    })
    .await;
    let (status, stdout, stderr) = match ran {
        Ok(Ok(Ran::Done {
            status,
            stdout,
            stderr,
        })) => (status, stdout, stderr),
        Ok(Ok(Ran::Overflow)) => {
            let _ = child.kill().await;
            return Err(fail(format!(
                "it wrote more than {MAX_HELPER_OUTPUT} bytes; it was stopped"
            )));
        }
        Ok(Err(e)) => {
            let _ = child.kill().await;
            return Err(fail(format!("cannot read its answer: {e}")));
        }
        Err(_) => {
            // `kill` also reaps it.
            let _ = child.kill().await;
            return Err(fail(format!(
                "it did not answer within {timeout:?}; it was stopped"
            )));
        }
    };
    if !status.success() {
        let said = String::from_utf8_lossy(&stdout).to_string() + &String::from_utf8_lossy(&stderr);
        // docker treats "credentials not found" as anonymous access.
        if said.contains("credentials not found") {
            return Ok(None);
        }
        return Err(fail(format!("exit status {status}")));
    }
    let reply: HelperReply = serde_json::from_slice(&stdout)
        .map_err(|_| fail("its output is not the credential JSON docker expects".into()))?;
    Ok(Some(if reply.username == "<token>" {
        Credentials::IdentityToken {
            token: reply.secret,
        }
    } else {
        Credentials::Basic {
            username: reply.username,
            password: reply.secret,
        }
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(json: &str) -> DockerConfig {
        DockerConfig::parse(json, PathBuf::from("config.json")).unwrap()
    }

    #[tokio::test]
    async fn auths_by_hostname() {
        let c = config(
            r#"{"auths": {
                "https://index.docker.io/v1/": {"auth": "dXNlcjpwYXNz"},
                "http://ghcr.io/v2/": {"username": "bot", "password": "pw"},
                "quay.io": {"identitytoken": "refresh"}
            }}"#,
        );
        let basic = |u: &str, p: &str| {
            Some(Credentials::Basic {
                username: u.into(),
                password: p.into(),
            })
        };
        assert_eq!(
            c.credentials_for(DOCKER_HUB_HOST).await.unwrap(),
            basic("user", "pass")
        );
        assert_eq!(
            c.credentials_for("ghcr.io").await.unwrap(),
            basic("bot", "pw")
        );
        assert!(matches!(
            c.credentials_for("quay.io").await.unwrap(),
            Some(Credentials::IdentityToken { .. })
        ));
        assert_eq!(c.credentials_for("example.com").await.unwrap(), None);
    }

    #[tokio::test]
    async fn secrets_are_not_printed() {
        let c = Credentials::Basic {
            username: "bot".into(),
            password: "hunter2".into(),
        };
        assert!(!format!("{c:?}").contains("hunter2"));
        let bad = config(r#"{"auths": {"ghcr.io": {"auth": "not base64 hunter2"}}}"#);
        let err = bad
            .credentials_for("ghcr.io")
            .await
            .unwrap_err()
            .to_string();
        assert!(!err.contains("hunter2"), "{err}");
    }

    #[tokio::test]
    async fn missing_helper_is_an_error_naming_it() {
        let c = config(r#"{"credHelpers": {"ghcr.io": "kairo-test-missing"}}"#);
        let err = c.credentials_for("ghcr.io").await.unwrap_err().to_string();
        assert!(
            err.contains("docker-credential-kairo-test-missing"),
            "{err}"
        );
    }

    /// Writes `docker-credential-kairotest` running `body` (sh) into a new directory, and a
    /// config using it for `ghcr.io` with `timeout`, found only there.
    fn helper(body: &str, timeout: Duration) -> (tempfile::TempDir, DockerConfig) {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("docker-credential-kairotest");
        std::fs::write(&path, format!("#!/bin/sh\n{body}\n")).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
        let c = config(r#"{"credHelpers": {"ghcr.io": "kairotest"}}"#)
            .with_helper_timeout(timeout)
            .with_helper_path(format!("{}:/usr/bin:/bin", dir.path().display()));
        (dir, c)
    }

    #[tokio::test]
    async fn a_helper_that_hangs_is_stopped_at_the_deadline() {
        // `exec`: the helper itself blocks forever (no grandchild keeps the pipes open).
        let (_dir, c) = helper(
            "read -r host; echo 'hunter2-partial'; exec tail -f /dev/null",
            Duration::from_millis(300),
        );
        let err = c.credentials_for("ghcr.io").await.unwrap_err().to_string();
        assert!(err.contains("docker-credential-kairotest"), "{err}");
        assert!(err.contains("did not answer within 300ms"), "{err}");
        assert!(!err.contains("hunter2"), "{err}");
    }

    #[tokio::test]
    async fn a_helper_that_floods_stdout_is_an_error() {
        // Endless output: read up to the cap, then the helper is stopped. The deadline is
        // long so that only the cap can end this test.
        let (_dir, c) = helper("exec yes hunter2hunter2hunter2", Duration::from_secs(600));
        let err = c.credentials_for("ghcr.io").await.unwrap_err().to_string();
        assert!(err.contains("more than 1048576 bytes"), "{err}");
        assert!(!err.contains("hunter2"), "{err}");
    }

    #[tokio::test]
    async fn helper_errors_name_the_reason_not_the_output() {
        let (_dir, c) = helper(
            "echo 'secret hunter2'; echo 'hunter2 again' >&2; exit 7",
            Duration::from_secs(600),
        );
        let err = c.credentials_for("ghcr.io").await.unwrap_err().to_string();
        assert!(err.contains("exit status: 7"), "{err}");
        assert!(!err.contains("hunter2"), "{err}");
        let (_dir, c) = helper("echo '{\"Secret\": \"hunter2'", Duration::from_secs(600));
        let err = c.credentials_for("ghcr.io").await.unwrap_err().to_string();
        assert!(err.contains("not the credential JSON"), "{err}");
        assert!(!err.contains("hunter2"), "{err}");
        let (_dir, c) = helper(
            r#"read -r host; printf '{"ServerURL":"%s","Username":"bot","Secret":"pw"}' "$host""#,
            Duration::from_secs(600),
        );
        assert_eq!(
            c.credentials_for("ghcr.io").await.unwrap(),
            Some(Credentials::Basic {
                username: "bot".into(),
                password: "pw".into()
            })
        );
    }
}
