//! A loopback Kubernetes API server for drift and status tests, and a kubeconfig pointing at it.
//!
//! It answers list requests the way kube-apiserver does: `{kind}List` objects with
//! `metadata.resourceVersion` and a `continue` token when `limit` cuts the list short, items
//! with server-owned fields (uid, resourceVersion, generation, creationTimestamp, managedFields,
//! status) and without `apiVersion`/`kind` for built-in types (custom resources keep theirs),
//! `Status` objects for 401, 403 and 410, and a plain-text `404 page not found` for an API group
//! it does not serve. Requests need `Authorization: Bearer <token>`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use serde_json::{Value, json};

use crate::registry_support::{Answer, Scripted, Seen, json as json_answer};

/// What the fake API server holds and how it misbehaves.
#[derive(Default)]
pub struct State {
    /// Objects by (API path prefix, namespace, plural), e.g.
    /// (`/apis/apps/v1`, `shop`, `deployments`), each a full object with apiVersion and kind.
    pub objects: BTreeMap<(String, String, String), Vec<Value>>,
    pub token: String,
    /// Further tokens accepted (one per replica, to tell their requests apart).
    pub tokens: Vec<String>,
    /// Plurals whose list answers 403 Forbidden.
    pub forbidden: Vec<String>,
    /// The next request carrying a `continue` token answers 410 Gone (once).
    pub expire_continue: bool,
    /// Whether helm.toolkit.fluxcd.io is served (false: Flux is not installed).
    pub no_flux: bool,
    /// The versions of helm.toolkit.fluxcd.io served when Flux is installed; `v2` when empty
    /// (an old Flux serves `v2beta1`/`v2beta2` only).
    pub flux_versions: Vec<String>,
    /// Namespaces whose requests answer 404 `NotFound` naming the namespace.
    pub missing_namespaces: Vec<String>,
    /// Plurals whose list answers a 404 JSON `Status` from something in front of the API
    /// server (neither the namespace nor the resource type).
    pub other_404: Vec<String>,
    /// HelmRelease lists answered so far.
    pub helmrelease_lists: usize,
    /// After this many HelmRelease lists, these objects replace those of the same name.
    pub flips: Vec<(usize, Value)>,
    /// HelmRelease lists (counted from 1) that answer 500 `etcdserver: request timed out`, as
    /// an overloaded API server does (the kube client retries 429/503/504 itself, not this).
    pub unavailable: Vec<usize>,
    resource_version: u64,
}

pub struct FakeApi {
    pub server: Scripted,
    pub state: Arc<Mutex<State>>,
}

pub fn route(api_version: &str) -> String {
    if api_version.contains('/') {
        format!("/apis/{api_version}")
    } else {
        format!("/api/{api_version}")
    }
}

pub fn plural(kind: &str) -> String {
    match kind {
        "HorizontalPodAutoscaler" => "horizontalpodautoscalers".into(),
        k => format!("{}s", k.to_lowercase()),
    }
}

fn status(code: u16, reason: &str, message: &str, details: Value) -> Answer {
    json_answer(
        code,
        &json!({
            "kind": "Status", "apiVersion": "v1", "metadata": {},
            "status": "Failure", "message": message, "reason": reason,
            "details": details, "code": code,
        })
        .to_string(),
    )
}

fn query(target: &str) -> BTreeMap<String, String> {
    target
        .split_once('?')
        .map(|(_, q)| q)
        .unwrap_or_default()
        .split('&')
        .filter_map(|kv| kv.split_once('='))
        .map(|(k, v)| (k.to_string(), v.replace("%3D", "=")))
        .collect()
}

impl FakeApi {
    pub fn start(token: &str, objects: Vec<Value>) -> FakeApi {
        let state = State::shared(token, objects);
        let shared = state.clone();
        let server = Scripted::start(move |seen| shared.lock().unwrap().answer(seen));
        FakeApi { server, state }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.server.host())
    }

    /// The request targets seen, in order.
    pub fn targets(&self) -> Vec<String> {
        self.server
            .requests()
            .into_iter()
            .map(|s| s.target)
            .collect()
    }
}

impl State {
    /// The server's state at start: `objects` stored, requests authorized by `token`.
    fn shared(token: &str, objects: Vec<Value>) -> Arc<Mutex<State>> {
        let mut state = State {
            token: token.to_string(),
            resource_version: 1000,
            ..Default::default()
        };
        for o in objects {
            state.add(o);
        }
        Arc::new(Mutex::new(state))
    }

    pub fn add(&mut self, mut o: Value) {
        self.resource_version += 1;
        let rv = self.resource_version;
        let ns = o["metadata"]["namespace"].as_str().unwrap().to_string();
        let name = o["metadata"]["name"].as_str().unwrap().to_string();
        let api_version = o["apiVersion"].clone();
        let meta = o["metadata"].as_object_mut().unwrap();
        meta.entry("uid")
            .or_insert(json!(format!("6f1c2a{rv:06}-0c1d-4e7a-9f00-{rv:012}")));
        meta.insert("resourceVersion".into(), json!(rv.to_string()));
        meta.entry("generation").or_insert(json!(1));
        meta.entry("creationTimestamp")
            .or_insert(json!("2026-11-02T09:14:07Z"));
        meta.entry("managedFields").or_insert(json!([{
            "manager": "kustomize-controller", "operation": "Apply",
            "apiVersion": api_version, "time": "2026-11-02T09:14:07Z",
            "fieldsType": "FieldsV1", "fieldsV1": {"f:spec": {}}
        }]));
        let key = (
            route(o["apiVersion"].as_str().unwrap()),
            ns,
            plural(o["kind"].as_str().unwrap()),
        );
        let list = self.objects.entry(key).or_default();
        list.retain(|x| x["metadata"]["name"] != json!(name));
        list.push(o);
        list.sort_by(|a, b| {
            a["metadata"]["name"]
                .as_str()
                .cmp(&b["metadata"]["name"].as_str())
        });
    }

    fn answer(&mut self, seen: &Seen) -> Answer {
        if seen.method != "GET" {
            return status(405, "MethodNotAllowed", "kairo must not write", json!({}));
        }
        let bearer = seen
            .header("authorization")
            .and_then(|h| h.strip_prefix("Bearer "));
        let by_certificate = seen.header(CLIENT_CERT_HEADER) == Some("verified");
        if !by_certificate
            && !bearer.is_some_and(|t| t == self.token || self.tokens.iter().any(|x| x == t))
        {
            return status(401, "Unauthorized", "Unauthorized", json!({}));
        }
        let path = seen.target.split('?').next().unwrap_or_default();
        let flux_versions = if self.flux_versions.is_empty() {
            vec!["v2".to_string()]
        } else {
            self.flux_versions.clone()
        };
        if path == "/apis" {
            // Discovery (APIGroupList), as `kubectl api-versions` reads it.
            let group = |name: &str, versions: &[String]| {
                let vs: Vec<Value> = versions
                    .iter()
                    .map(|v| json!({"groupVersion": format!("{name}/{v}"), "version": v}))
                    .collect();
                json!({"name": name, "versions": vs, "preferredVersion": vs[0]})
            };
            let mut groups = vec![
                group("apps", &["v1".into()]),
                group("autoscaling", &["v2".into(), "v1".into()]),
            ];
            if !self.no_flux {
                groups.push(group("helm.toolkit.fluxcd.io", &flux_versions));
            }
            return json_answer(
                200,
                &json!({"kind": "APIGroupList", "apiVersion": "v1", "groups": groups}).to_string(),
            );
        }
        // /apis/<group>/<version>/namespaces/<ns>/<plural> or /api/v1/namespaces/<ns>/<plural>
        let parts: Vec<&str> = path.trim_start_matches('/').split('/').collect();
        let (prefix, ns, plural, one) = match parts.as_slice() {
            ["apis", g, v, "namespaces", ns, p] => (format!("/apis/{g}/{v}"), *ns, *p, None),
            ["api", v, "namespaces", ns, p] => (format!("/api/{v}"), *ns, *p, None),
            ["apis", g, v, "namespaces", ns, p, n] => (format!("/apis/{g}/{v}"), *ns, *p, Some(*n)),
            ["api", v, "namespaces", ns, p, n] => (format!("/api/{v}"), *ns, *p, Some(*n)),
            _ => return Answer::Full(404, vec![], b"404 page not found\n".to_vec()),
        };
        let flux_route = prefix
            .strip_prefix("/apis/helm.toolkit.fluxcd.io/")
            .map(|v| !self.no_flux && flux_versions.iter().any(|f| f == v));
        if flux_route == Some(false) {
            return Answer::Full(
                404,
                vec![("content-type".into(), "text/plain; charset=utf-8".into())],
                b"404 page not found\n".to_vec(),
            );
        }
        let group = prefix
            .strip_prefix("/apis/")
            .and_then(|g| g.split_once('/'))
            .map_or("", |(g, _)| g);
        let verb = if one.is_some() { "get" } else { "list" };
        if self.forbidden.iter().any(|f| f == plural) {
            return status(
                403,
                "Forbidden",
                &format!(
                    "{plural}{} is forbidden: User \"system:serviceaccount:ci:kairo\" cannot {verb} resource \"{plural}\" in API group \"{group}\" in the namespace \"{ns}\"",
                    if group.is_empty() {
                        String::new()
                    } else {
                        format!(".{group}")
                    }
                ),
                json!({"group": group, "kind": plural}),
            );
        }
        if self.missing_namespaces.iter().any(|m| m == ns) {
            return status(
                404,
                "NotFound",
                &format!("namespaces \"{ns}\" not found"),
                json!({"name": ns, "kind": "namespaces"}),
            );
        }
        if self.other_404.iter().any(|p| p == plural) {
            return status(
                404,
                "NotFound",
                &format!("{plural} \"shop-gateway\" not found"),
                json!({"name": "shop-gateway", "group": group, "kind": plural}),
            );
        }
        if let Some(name) = one {
            // A `get`: the object whole (apiVersion and kind included), or 404 naming it.
            let found = self
                .objects
                .get(&(prefix.clone(), ns.to_string(), plural.to_string()))
                .and_then(|list| list.iter().find(|o| o["metadata"]["name"] == json!(name)));
            return match found {
                Some(o) => json_answer(200, &o.to_string()),
                None => status(
                    404,
                    "NotFound",
                    &format!("{plural} \"{name}\" not found"),
                    json!({"name": name, "kind": plural}),
                ),
            };
        }
        let q = query(&seen.target);
        if plural == "helmreleases" {
            self.helmrelease_lists += 1;
            if self.unavailable.contains(&self.helmrelease_lists) {
                return status(
                    500,
                    "InternalError",
                    "etcdserver: request timed out",
                    json!({}),
                );
            }
            let due: Vec<Value> = self
                .flips
                .iter()
                .filter(|(n, _)| *n <= self.helmrelease_lists)
                .map(|(_, o)| o.clone())
                .collect();
            self.flips.retain(|(n, _)| *n > self.helmrelease_lists);
            for o in due {
                self.add(o);
            }
        }
        let start: usize = match q.get("continue") {
            Some(token) if self.expire_continue => {
                let _ = token;
                self.expire_continue = false;
                return status(
                    410,
                    "Expired",
                    "The provided continue parameter is too old to display a consistent list result. You can start a new list without the continue parameter, or use the continue token in this response to retrieve the remainder of the results. Continuing with the provided token results in an inconsistent list - objects that were created, modified, or deleted between the time the first chunk was returned and now may show up in the list.",
                    json!({}),
                );
            }
            Some(token) => token
                .strip_prefix("offset-")
                .and_then(|n| n.parse().ok())
                .unwrap_or(0),
            None => 0,
        };
        let all = self
            .objects
            .get(&(prefix.clone(), ns.to_string(), plural.to_string()))
            .cloned()
            .unwrap_or_default();
        let limit: usize = q
            .get("limit")
            .and_then(|l| l.parse().ok())
            .unwrap_or(usize::MAX);
        let end = start.saturating_add(limit).min(all.len());
        let custom = prefix.starts_with("/apis/helm.toolkit");
        let items: Vec<Value> = all[start.min(all.len())..end]
            .iter()
            .map(|o| {
                let mut o = o.clone();
                if !custom {
                    let m = o.as_object_mut().unwrap();
                    m.remove("apiVersion");
                    m.remove("kind");
                }
                o
            })
            .collect();
        let kind = match plural {
            "helmreleases" => "HelmReleaseList",
            "deployments" => "DeploymentList",
            "statefulsets" => "StatefulSetList",
            "horizontalpodautoscalers" => "HorizontalPodAutoscalerList",
            "secrets" => "SecretList",
            _ => "List",
        };
        let mut metadata = json!({"resourceVersion": self.resource_version.to_string()});
        if end < all.len() {
            metadata["continue"] = json!(format!("offset-{end}"));
            metadata["remainingItemCount"] = json!(all.len() - end);
        }
        let api_version = prefix
            .trim_start_matches("/apis/")
            .trim_start_matches("/api/");
        json_answer(
            200,
            &json!({"apiVersion": api_version, "kind": kind, "metadata": metadata, "items": items})
                .to_string(),
        )
    }
}

/// A kubeconfig with one context `test` (current) authenticating with `token`, and a context
/// `other` for a cluster that does not exist.
pub fn kubeconfig(dir: &Path, server: &str, token: &str) -> PathBuf {
    let path = dir.join("kubeconfig");
    std::fs::write(
        &path,
        format!(
            "apiVersion: v1\nkind: Config\ncurrent-context: test\nclusters:\n- name: test\n  cluster:\n    server: {server}\ncontexts:\n- name: test\n  context:\n    cluster: test\n    user: ci\n    namespace: default\nusers:\n- name: ci\n  user:\n    token: {token}\n"
        ),
    )
    .unwrap();
    path
}

/// A kubeconfig whose user runs an exec credential plugin (a shell script printing an
/// `ExecCredential` with `token`), as cloud providers' kubeconfigs do.
pub fn exec_kubeconfig(dir: &Path, server: &str, token: &str) -> PathBuf {
    let plugin = dir.join("credential-plugin.sh");
    std::fs::write(
        &plugin,
        format!(
            "#!/bin/sh\n# prints an ExecCredential, as `aws eks get-token` or `gke-gcloud-auth-plugin` do\ncat <<EOF\n{{\"apiVersion\":\"client.authentication.k8s.io/v1\",\"kind\":\"ExecCredential\",\"status\":{{\"token\":\"{token}\"}}}}\nEOF\n"
        ),
    )
    .unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&plugin, std::fs::Permissions::from_mode(0o755)).unwrap();
    let path = dir.join("kubeconfig-exec");
    std::fs::write(
        &path,
        format!(
            "apiVersion: v1\nkind: Config\ncurrent-context: cloud\nclusters:\n- name: cloud\n  cluster:\n    server: {server}\ncontexts:\n- name: cloud\n  context:\n    cluster: cloud\n    user: sso\nusers:\n- name: sso\n  user:\n    exec:\n      apiVersion: client.authentication.k8s.io/v1\n      command: {}\n      interactiveMode: Never\n",
            plugin.display()
        ),
    )
    .unwrap();
    path
}

/// A server that answers every request with a `200 OK` head announcing a large JSON body,
/// then dribbles that body one byte at a time (a byte every 100 ms) and never finishes, as a
/// stuck proxy or an overloaded API server can. Each byte resets a per-read timeout: only a
/// bound on the whole request ends it. Requests seen are counted.
pub struct Trickle {
    pub addr: std::net::SocketAddr,
    pub requests: Arc<std::sync::atomic::AtomicUsize>,
}

impl Trickle {
    pub fn start() -> Trickle {
        use std::io::{BufRead, BufReader, Write};
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let requests = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let count = requests.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(mut stream) = stream else { continue };
                let count = count.clone();
                std::thread::spawn(move || {
                    let mut reader = BufReader::new(stream.try_clone().unwrap());
                    let mut line = String::new();
                    while reader.read_line(&mut line).unwrap_or(0) > 0 && line != "\r\n" {
                        line.clear();
                    }
                    count.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                    let head = "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 1000000\r\n\r\n";
                    if stream.write_all(head.as_bytes()).is_err() {
                        return;
                    }
                    let body = br#"{"apiVersion":"helm.toolkit.fluxcd.io/v2","kind":"HelmReleaseList","metadata":{},"items":["#;
                    // Until the client hangs up (a write then fails).
                    for byte in body.iter().chain(std::iter::repeat(&b' ')) {
                        if stream
                            .write_all(&[*byte])
                            .and_then(|_| stream.flush())
                            .is_err()
                        {
                            return;
                        }
                        std::thread::sleep(std::time::Duration::from_millis(100));
                    }
                });
            }
        });
        Trickle { addr, requests }
    }
}

/// Certificates made with `openssl` for a TLS API server on 127.0.0.1: a CA, a server
/// certificate it signed (SAN `IP:127.0.0.1`), and a client certificate it signed (CN
/// `kairo-ci`, O `system:masters`), PEM files in `dir`.
pub struct Pki {
    pub dir: PathBuf,
}

impl Pki {
    pub fn new(dir: &Path) -> Pki {
        let run = |args: &[&str]| {
            let out = std::process::Command::new("openssl")
                .args(args)
                .current_dir(dir)
                .output()
                .expect("openssl (installed by `cargo xtask test`)");
            assert!(
                out.status.success(),
                "openssl {args:?}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        };
        let ec = [
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
        ];
        let mut ca = vec![
            "req",
            "-x509",
            "-days",
            "2",
            "-subj",
            "/CN=kairo-test-ca",
            "-keyout",
            "ca.key",
            "-out",
            "ca.crt",
        ];
        ca.extend(ec);
        ca.extend([
            "-addext",
            "basicConstraints=critical,CA:TRUE",
            "-addext",
            "keyUsage=critical,keyCertSign,cRLSign",
        ]);
        run(&ca);
        for (name, subject, ext) in [
            (
                "server",
                "/CN=kube-apiserver",
                "subjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth\nbasicConstraints=CA:FALSE\n",
            ),
            (
                "client",
                "/O=system:masters/CN=kairo-ci",
                "extendedKeyUsage=clientAuth\nbasicConstraints=CA:FALSE\n",
            ),
        ] {
            let mut req = vec!["req", "-subj", subject, "-keyout"];
            let (key, csr, crt, extfile) = (
                format!("{name}.key"),
                format!("{name}.csr"),
                format!("{name}.crt"),
                format!("{name}.ext"),
            );
            std::fs::write(dir.join(&extfile), ext).unwrap();
            req.extend([key.as_str(), "-out", csr.as_str()]);
            req.extend(ec);
            run(&req);
            run(&[
                "x509",
                "-req",
                "-in",
                &csr,
                "-CA",
                "ca.crt",
                "-CAkey",
                "ca.key",
                "-CAcreateserial",
                "-days",
                "2",
                "-extfile",
                &extfile,
                "-out",
                &crt,
            ]);
        }
        Pki {
            dir: dir.to_path_buf(),
        }
    }

    /// A PEM file, base64-encoded as a kubeconfig's `*-data` fields hold it.
    pub fn data(&self, file: &str) -> String {
        use base64::Engine;
        base64::engine::general_purpose::STANDARD
            .encode(std::fs::read(self.dir.join(file)).unwrap())
    }
}

impl FakeApi {
    /// The same API server over HTTPS with `pki`'s server certificate. With `client_certs`,
    /// it also asks for a client certificate and takes one its CA signed as authentication
    /// (as kube-apiserver's `--client-ca-file`), in place of a token.
    pub fn start_tls(token: &str, objects: Vec<Value>, pki: &Pki, client_certs: bool) -> FakeApi {
        use std::sync::Arc as StdArc;
        use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
        use tokio_rustls::rustls::{self, pki_types::pem::PemObject};

        let provider = StdArc::new(rustls::crypto::ring::default_provider());
        let chain = vec![
            rustls::pki_types::CertificateDer::from_pem_file(pki.dir.join("server.crt")).unwrap(),
        ];
        let key =
            rustls::pki_types::PrivateKeyDer::from_pem_file(pki.dir.join("server.key")).unwrap();
        let builder = rustls::ServerConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .unwrap();
        let config = if client_certs {
            let mut roots = rustls::RootCertStore::empty();
            roots
                .add(
                    rustls::pki_types::CertificateDer::from_pem_file(pki.dir.join("ca.crt"))
                        .unwrap(),
                )
                .unwrap();
            let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
                StdArc::new(roots),
                provider,
            )
            .allow_unauthenticated()
            .build()
            .unwrap();
            builder.with_client_cert_verifier(verifier)
        } else {
            builder.with_no_client_auth()
        }
        .with_single_cert(chain, key)
        .unwrap();
        let acceptor = tokio_rustls::TlsAcceptor::from(StdArc::new(config));

        let state = State::shared(token, objects);
        let seen = Arc::new(Mutex::new(Vec::new()));
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        listener.set_nonblocking(true).unwrap();
        let (shared, log) = (state.clone(), seen.clone());
        std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async move {
                let listener = tokio::net::TcpListener::from_std(listener).unwrap();
                loop {
                    let Ok((tcp, _)) = listener.accept().await else {
                        continue;
                    };
                    let (acceptor, shared, log) = (acceptor.clone(), shared.clone(), log.clone());
                    tokio::spawn(async move {
                        // A failed handshake (an untrusting client) just ends the connection.
                        let Ok(tls) = acceptor.accept(tcp).await else {
                            return;
                        };
                        let client_cert = tls
                            .get_ref()
                            .1
                            .peer_certificates()
                            .is_some_and(|c| !c.is_empty());
                        let mut stream = BufReader::new(tls);
                        let mut line = String::new();
                        if stream.read_line(&mut line).await.unwrap_or(0) == 0 {
                            return;
                        }
                        let mut parts = line.split_whitespace();
                        let method = parts.next().unwrap_or("").to_string();
                        let target = parts.next().unwrap_or("").to_string();
                        let mut headers = Vec::new();
                        loop {
                            let mut h = String::new();
                            if stream.read_line(&mut h).await.unwrap_or(0) == 0 || h == "\r\n" {
                                break;
                            }
                            if let Some((k, v)) = h.trim_end().split_once(':')
                                && !k.eq_ignore_ascii_case(CLIENT_CERT_HEADER)
                            {
                                headers.push((k.trim().to_string(), v.trim().to_string()));
                            }
                        }
                        if client_cert {
                            // Verified by the handshake against the CA.
                            headers.push((CLIENT_CERT_HEADER.to_string(), "verified".to_string()));
                        }
                        let request = Seen {
                            method,
                            target,
                            headers,
                        };
                        log.lock().unwrap().push(request.clone());
                        let answer = shared.lock().unwrap().answer(&request);
                        if let Answer::Full(status, headers, body) = answer {
                            let mut head = format!("HTTP/1.1 {status} X\r\nconnection: close\r\n");
                            for (k, v) in headers {
                                head.push_str(&format!("{k}: {v}\r\n"));
                            }
                            head.push_str(&format!("content-length: {}\r\n\r\n", body.len()));
                            let tls = stream.get_mut();
                            let _ = tls.write_all(head.as_bytes()).await;
                            let _ = tls.write_all(&body).await;
                            let _ = tls.shutdown().await;
                        }
                    });
                }
            });
        });
        FakeApi {
            server: Scripted { addr, seen },
            state,
        }
    }
}

/// Set by the TLS server (never taken from a client) when the client's certificate verified.
const CLIENT_CERT_HEADER: &str = "x-fake-api-client-cert";

/// A kubeconfig for the TLS server: the CA as `certificate-authority-data`, and either a
/// token or `pki`'s client certificate and key as `client-certificate-data`/`client-key-data`.
pub fn tls_kubeconfig(dir: &Path, server: &str, pki: &Pki, token: Option<&str>) -> PathBuf {
    let path = dir.join("kubeconfig-tls");
    let user = match token {
        Some(t) => format!("    token: {t}\n"),
        None => format!(
            "    client-certificate-data: {}\n    client-key-data: {}\n",
            pki.data("client.crt"),
            pki.data("client.key")
        ),
    };
    std::fs::write(
        &path,
        format!(
            "apiVersion: v1\nkind: Config\ncurrent-context: secure\nclusters:\n- name: secure\n  cluster:\n    server: {server}\n    certificate-authority-data: {}\ncontexts:\n- name: secure\n  context:\n    cluster: secure\n    user: ci\nusers:\n- name: ci\n  user:\n{user}",
            pki.data("ca.crt")
        ),
    )
    .unwrap();
    path
}
