//! Real parts for registry tests: Debian's `docker-registry` on a loopback port, images pushed
//! through its HTTP API, and a scripted loopback HTTP server for what that registry never does
//! (pages, 429, 500, truncated, oversized and stalled answers, foreign redirects).

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};

use sha2::Digest;

pub fn sha256(bytes: &[u8]) -> String {
    let d = sha2::Sha256::digest(bytes);
    let mut s = String::from("sha256:");
    for b in d.iter() {
        s.push_str(&format!("{b:02x}"));
    }
    s
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A `docker-registry` process we started; killed (by its own pid) when dropped.
pub struct Registry {
    child: Child,
    pub host: String,
    _dir: tempfile::TempDir,
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Registry {
    /// Anonymous, or Basic auth with one htpasswd user.
    pub fn start(user: Option<(&str, &str)>) -> Registry {
        let which = Command::new("sh")
            .args(["-c", "command -v docker-registry"])
            .output()
            .unwrap();
        assert!(
            which.status.success(),
            "`docker-registry` is not installed: run `cargo xtask test`, which installs Debian's `docker-registry` package"
        );
        let dir = tempfile::tempdir().unwrap();
        let mut auth = String::new();
        if let Some((name, password)) = user {
            let out = Command::new("htpasswd")
                .args(["-Bbn", name, password])
                .output()
                .expect("htpasswd (apache2-utils) is needed; `cargo xtask test` installs it");
            assert!(out.status.success());
            std::fs::write(dir.path().join("htpasswd"), out.stdout).unwrap();
            auth = format!(
                "auth:\n  htpasswd:\n    realm: kairo-test\n    path: {}\n",
                dir.path().join("htpasswd").display()
            );
        }
        Registry::spawn(dir, &auth)
    }

    /// The same storage served again, on a new port, with `auth` (a YAML `auth:` block).
    pub fn restart_with_auth(mut self, auth: &str) -> Registry {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let dir = std::mem::replace(&mut self._dir, tempfile::tempdir().unwrap());
        Registry::spawn(dir, auth)
    }

    fn spawn(dir: tempfile::TempDir, auth: &str) -> Registry {
        let port = free_port();
        let config = format!(
            "version: 0.1\nlog:\n  level: error\n  accesslog:\n    disabled: true\nstorage:\n  filesystem:\n    rootdirectory: {}\n  delete:\n    enabled: true\nhttp:\n  addr: 127.0.0.1:{port}\n{auth}",
            dir.path().join("data").display()
        );
        let path = dir.path().join("config.yml");
        std::fs::write(&path, config).unwrap();
        let child = Command::new("docker-registry")
            .arg("serve")
            .arg(&path)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let registry = Registry {
            child,
            host: format!("127.0.0.1:{port}"),
            _dir: dir,
        };
        registry.wait_ready();
        registry
    }

    /// Waits until the registry accepts connections (readiness, not a timed assertion).
    fn wait_ready(&self) {
        for _ in 0..600 {
            if TcpStream::connect(&self.host).is_ok() {
                return;
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        panic!("docker-registry did not start on {}", self.host);
    }
}

/// Pushes a one-layer image under `tag`; returns the manifest digest.
pub async fn push(
    host: &str,
    auth: Option<(&str, &str)>,
    repo: &str,
    tag: &str,
    created: &str,
    salt: &str,
) -> String {
    let http = reqwest::Client::new();
    let with_auth = |r: reqwest::RequestBuilder| match auth {
        Some((u, p)) => r.basic_auth(u, Some(p)),
        None => r,
    };
    let config = format!(
        r#"{{"architecture":"amd64","os":"linux","created":"{created}","config":{{"Labels":{{"salt":"{salt}"}}}},"rootfs":{{"type":"layers","diff_ids":[]}}}}"#
    );
    let layer = format!("layer {salt}").into_bytes();
    for blob in [config.as_bytes(), &layer] {
        let digest = sha256(blob);
        // distribution 2.8 has no monolithic POST: start an upload, then PUT the bytes.
        let start = with_auth(http.post(format!("http://{host}/v2/{repo}/blobs/uploads/")))
            .send()
            .await
            .unwrap();
        assert_eq!(start.status().as_u16(), 202, "blob upload start");
        let location = start.headers()["location"].to_str().unwrap().to_string();
        let location = if location.starts_with('/') {
            format!("http://{host}{location}")
        } else {
            location
        };
        let sep = if location.contains('?') { '&' } else { '?' };
        let resp = with_auth(http.put(format!("{location}{sep}digest={digest}")))
            .header("content-type", "application/octet-stream")
            .body(blob.to_vec())
            .send()
            .await
            .unwrap();
        assert_eq!(
            resp.status().as_u16(),
            201,
            "blob upload: {}",
            resp.text().await.unwrap()
        );
    }
    let manifest = format!(
        r#"{{"schemaVersion":2,"mediaType":"application/vnd.docker.distribution.manifest.v2+json","config":{{"mediaType":"application/vnd.docker.container.image.v1+json","size":{},"digest":"{}"}},"layers":[{{"mediaType":"application/vnd.docker.image.rootfs.diff.tar.gzip","size":{},"digest":"{}"}}]}}"#,
        config.len(),
        sha256(config.as_bytes()),
        layer.len(),
        sha256(&layer)
    );
    let resp = with_auth(http.put(format!("http://{host}/v2/{repo}/manifests/{tag}")))
        .header(
            "content-type",
            "application/vnd.docker.distribution.manifest.v2+json",
        )
        .body(manifest.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(
        resp.status().as_u16(),
        201,
        "manifest put: {}",
        resp.text().await.unwrap()
    );
    sha256(manifest.as_bytes())
}

/// One request as the scripted server saw it.
#[derive(Clone, Debug)]
pub struct Seen {
    pub method: String,
    pub target: String,
    pub headers: Vec<(String, String)>,
}

impl Seen {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

pub enum Answer {
    /// Status, headers, body; `Content-Length` is added.
    Full(u16, Vec<(String, String)>, Vec<u8>),
    /// These bytes exactly, then the connection is closed.
    Raw(Vec<u8>),
    /// Nothing, until the client gives up.
    Stall,
}

pub fn json(status: u16, body: &str) -> Answer {
    Answer::Full(
        status,
        vec![("content-type".into(), "application/json".into())],
        body.as_bytes().to_vec(),
    )
}

type Handler = dyn Fn(&Seen) -> Answer + Send + Sync;

/// A loopback HTTP/1.1 server answering by script, one connection per request.
pub struct Scripted {
    pub addr: SocketAddr,
    pub seen: Arc<Mutex<Vec<Seen>>>,
}

impl Scripted {
    pub fn start(handler: impl Fn(&Seen) -> Answer + Send + Sync + 'static) -> Scripted {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let handler: Arc<Handler> = Arc::new(handler);
        let log = seen.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(stream) = stream else { continue };
                let (handler, log) = (handler.clone(), log.clone());
                std::thread::spawn(move || serve(stream, &*handler, &log));
            }
        });
        Scripted { addr, seen }
    }

    pub fn host(&self) -> String {
        self.addr.to_string()
    }

    pub fn requests(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }
}

fn serve(stream: TcpStream, handler: &Handler, log: &Mutex<Vec<Seen>>) {
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    let mut line = String::new();
    if reader.read_line(&mut line).unwrap_or(0) == 0 {
        return;
    }
    let mut parts = line.split_whitespace();
    let method = parts.next().unwrap_or("").to_string();
    let target = parts.next().unwrap_or("").to_string();
    let mut headers = Vec::new();
    let mut length = 0usize;
    loop {
        let mut h = String::new();
        if reader.read_line(&mut h).unwrap_or(0) == 0 || h == "\r\n" {
            break;
        }
        if let Some((k, v)) = h.trim_end().split_once(':') {
            if k.eq_ignore_ascii_case("content-length") {
                length = v.trim().parse().unwrap_or(0);
            }
            headers.push((k.trim().to_string(), v.trim().to_string()));
        }
    }
    let mut body = vec![0; length];
    let _ = reader.read_exact(&mut body);
    let seen = Seen {
        method,
        target,
        headers,
    };
    log.lock().unwrap().push(seen.clone());
    let mut stream = stream;
    match handler(&seen) {
        Answer::Full(status, headers, body) => {
            let mut head = format!("HTTP/1.1 {status} X\r\nconnection: close\r\n");
            for (k, v) in headers {
                head.push_str(&format!("{k}: {v}\r\n"));
            }
            head.push_str(&format!("content-length: {}\r\n\r\n", body.len()));
            let _ = stream.write_all(head.as_bytes());
            if seen.method != "HEAD" {
                let _ = stream.write_all(&body);
            }
        }
        Answer::Raw(bytes) => {
            let _ = stream.write_all(&bytes);
        }
        Answer::Stall => {
            // Hold the connection until the client closes it.
            let mut sink = [0u8; 64];
            while matches!(reader.read(&mut sink), Ok(n) if n > 0) {}
        }
    }
    let _ = stream.flush();
}

/// A docker `config.json` directory for the given registry credentials.
pub fn docker_config(dir: &Path, host: &str, user: &str, password: &str) {
    use base64::Engine;
    let auth = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
    std::fs::create_dir_all(dir).unwrap();
    std::fs::write(
        dir.join("config.json"),
        format!(r#"{{"auths": {{"{host}": {{"auth": "{auth}"}}}}}}"#),
    )
    .unwrap();
}
