//! Registry credentials as docker resolves them: `$DOCKER_CONFIG/config.json` (default
//! `~/.docker/config.json`), or the whole file's content in `DOCKER_AUTH_CONFIG` (as CI
//! runners pass it). For a host, `credHelpers[host]` wins, then `credsStore`, then `auths`;
//! helpers are `docker-credential-<name>` programs speaking docker's `get` protocol.
//!
//! Secrets never reach a log or an error: `Credentials`' `Debug` prints only the user name.

use std::collections::BTreeMap;
use std::fmt;
use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Stdio};

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

/// The docker configuration, read once.
#[derive(Debug, Default)]
pub struct DockerConfig {
    file: ConfigFile,
    path: PathBuf,
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
        Ok(DockerConfig { file, path })
    }

    /// The credentials for a registry host, as docker would find them.
    pub fn credentials_for(&self, registry: &str) -> Result<Option<Credentials>, CredentialsError> {
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
            return run_helper(helper, helper_key);
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

/// `docker-credential-<helper> get`, host on stdin, JSON on stdout.
// Docker's credential helpers are programs: the one process kairo starts outside the git writer.
#[allow(clippy::disallowed_methods)]
fn run_helper(helper: &str, host: &str) -> Result<Option<Credentials>, CredentialsError> {
    let fail = |message: String| CredentialsError::Helper {
        helper: helper.to_string(),
        host: host.to_string(),
        message,
    };
    let mut child = Command::new(format!("docker-credential-{helper}"))
        .arg("get")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| fail(format!("cannot start it: {e}")))?;
    if let Some(mut stdin) = child.stdin.take() {
        let _ = stdin.write_all(host.as_bytes());
    }
    let out = child.wait_with_output().map_err(|e| fail(e.to_string()))?;
    if !out.status.success() {
        let said = String::from_utf8_lossy(&out.stdout).to_string()
            + &String::from_utf8_lossy(&out.stderr);
        // docker treats "credentials not found" as anonymous access.
        if said.contains("credentials not found") {
            return Ok(None);
        }
        return Err(fail(format!("exit status {}", out.status)));
    }
    let reply: HelperReply = serde_json::from_slice(&out.stdout)
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

    #[test]
    fn auths_by_hostname() {
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
            c.credentials_for(DOCKER_HUB_HOST).unwrap(),
            basic("user", "pass")
        );
        assert_eq!(c.credentials_for("ghcr.io").unwrap(), basic("bot", "pw"));
        assert!(matches!(
            c.credentials_for("quay.io").unwrap(),
            Some(Credentials::IdentityToken { .. })
        ));
        assert_eq!(c.credentials_for("example.com").unwrap(), None);
    }

    #[test]
    fn secrets_are_not_printed() {
        let c = Credentials::Basic {
            username: "bot".into(),
            password: "hunter2".into(),
        };
        assert!(!format!("{c:?}").contains("hunter2"));
        let bad = config(r#"{"auths": {"ghcr.io": {"auth": "not base64 hunter2"}}}"#);
        let err = bad.credentials_for("ghcr.io").unwrap_err().to_string();
        assert!(!err.contains("hunter2"), "{err}");
    }

    #[test]
    fn missing_helper_is_an_error_naming_it() {
        let c = config(r#"{"credHelpers": {"ghcr.io": "kairo-test-missing"}}"#);
        let err = c.credentials_for("ghcr.io").unwrap_err().to_string();
        assert!(
            err.contains("docker-credential-kairo-test-missing"),
            "{err}"
        );
    }
}
