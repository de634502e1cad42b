//! Image references as docker resolves them: a registry host, a repository path, Docker Hub's
//! defaults (`docker.io` means `registry-1.docker.io`, one-part names live under `library/`).

use std::fmt;

/// The host docker talks to for Docker Hub.
pub const DOCKER_HUB_HOST: &str = "registry-1.docker.io";
/// The key docker writes for Docker Hub in `config.json`.
pub const DOCKER_HUB_CONFIG_KEY: &str = "https://index.docker.io/v1/";

/// A repository in a registry, without tag or digest.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct ImageName {
    /// The host (and port) requests go to.
    pub registry: String,
    /// The repository path, such as `library/nginx` or `acme/api-server`.
    pub repository: String,
}

impl ImageName {
    /// Parses a repository as written in the catalog (`nginx`, `ghcr.io/acme/api`,
    /// `localhost:5000/app`). A tag or digest is refused.
    pub fn parse(s: &str) -> Result<ImageName, String> {
        if s.is_empty() || s.contains('@') {
            return Err(format!("`{s}` is not an image repository"));
        }
        let (registry, path) = match s.split_once('/') {
            Some((host, rest)) if host.contains(['.', ':']) || host == "localhost" => {
                (host.to_string(), rest.to_string())
            }
            _ => ("docker.io".to_string(), s.to_string()),
        };
        if path
            .rsplit('/')
            .next()
            .is_some_and(|last| last.contains(':'))
        {
            return Err(format!("`{s}` names a tag; write the repository only"));
        }
        if path.is_empty()
            || !path.split('/').all(|c| {
                !c.is_empty()
                    && c.bytes().all(|b| {
                        b.is_ascii_lowercase() || b.is_ascii_digit() || b"._-".contains(&b)
                    })
            })
        {
            return Err(format!("`{s}` is not a valid repository path"));
        }
        let hub = matches!(
            registry.as_str(),
            "docker.io" | "index.docker.io" | "registry-1.docker.io"
        );
        let (registry, repository) = if hub {
            let repo = if path.contains('/') {
                path
            } else {
                format!("library/{path}")
            };
            (DOCKER_HUB_HOST.to_string(), repo)
        } else {
            (registry, path)
        };
        Ok(ImageName {
            registry,
            repository,
        })
    }

    pub fn is_docker_hub(&self) -> bool {
        self.registry == DOCKER_HUB_HOST
    }

    /// Loopback registries are spoken to over plain HTTP, as docker allows by default.
    pub fn is_loopback(&self) -> bool {
        let host = host_only(&self.registry);
        host == "localhost" || host.starts_with("127.") || host == "[::1]"
    }
}

/// The host without its port.
pub fn host_only(registry: &str) -> &str {
    if registry.starts_with('[') {
        return registry
            .split_once(']')
            .map_or(registry, |(h, _)| &registry[..h.len() + 1]);
    }
    registry.split(':').next().unwrap_or(registry)
}

impl fmt::Display for ImageName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.registry, self.repository)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn docker_hub_names() {
        let n = ImageName::parse("nginx").unwrap();
        assert_eq!(
            (n.registry.as_str(), n.repository.as_str()),
            (DOCKER_HUB_HOST, "library/nginx")
        );
        let n = ImageName::parse("docker.io/bitnami/redis").unwrap();
        assert_eq!(n.repository, "bitnami/redis");
        assert!(n.is_docker_hub());
        let n = ImageName::parse("index.docker.io/nginx").unwrap();
        assert_eq!(n.repository, "library/nginx");
        let n = ImageName::parse("acme/api").unwrap();
        assert_eq!(n.to_string(), "registry-1.docker.io/acme/api");
    }

    #[test]
    fn other_registries() {
        let n = ImageName::parse("ghcr.io/acme/api-server").unwrap();
        assert_eq!(n.to_string(), "ghcr.io/acme/api-server");
        assert!(!n.is_loopback());
        let n = ImageName::parse("localhost:5000/app").unwrap();
        assert!(n.is_loopback());
        assert!(
            ImageName::parse("127.0.0.1:41234/a/b")
                .unwrap()
                .is_loopback()
        );
        assert!(ImageName::parse("ghcr.io/acme/api:1.0").is_err());
        assert!(ImageName::parse("ghcr.io/acme/api@sha256:00").is_err());
        assert!(ImageName::parse("ghcr.io/Acme/api").is_err());
    }
}
