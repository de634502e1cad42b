//! A loopback server answering the `coordination.k8s.io/v1` Lease API as the Kubernetes API
//! server does: server-set metadata (uid, resourceVersion, creationTimestamp, managedFields),
//! 404 `NotFound` Status for a missing Lease, 409 `AlreadyExists` on a second create, 409
//! `Conflict` on an update carrying a stale `resourceVersion`. Spoken to through the real kube
//! client with a generated kubeconfig.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use axum::Json;
use axum::Router;
use axum::extract::{Path as UrlPath, State};
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::get;
use serde_json::{Value, json};

#[derive(Default)]
struct Store {
    leases: Mutex<BTreeMap<(String, String), Value>>,
    version: AtomicU64,
    /// The next update finds the Lease changed by another client first.
    interfere: AtomicBool,
    requests: Mutex<Vec<String>>,
    /// Where requests for anything but Leases go (another fake API server), if anywhere.
    fallback: Option<String>,
    /// Lease requests are accepted and never answered (a hung API server).
    stalled: AtomicBool,
}

impl Store {
    /// Never returns while the server is stalled.
    async fn hang_if_stalled(&self) {
        if self.stalled.load(Ordering::SeqCst) {
            std::future::pending::<()>().await;
        }
    }
}

pub struct FakeApi {
    pub addr: SocketAddr,
    store: Arc<Store>,
}

fn status(code: u16, reason: &str, message: String, name: &str) -> (StatusCode, Json<Value>) {
    (
        StatusCode::from_u16(code).unwrap(),
        Json(json!({
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": message,
            "reason": reason,
            "details": {"name": name, "group": "coordination.k8s.io", "kind": "leases"},
            "code": code
        })),
    )
}

fn now() -> String {
    // RFC 3339 with microseconds, as the API server writes MicroTime.
    jiff::Timestamp::now()
        .round(jiff::Unit::Microsecond)
        .unwrap()
        .to_string()
}

/// RFC 3339 in seconds, as the API server writes Time.
fn seconds() -> String {
    jiff::Timestamp::from_second(jiff::Timestamp::now().as_second())
        .unwrap()
        .to_string()
}

impl Store {
    fn next_version(&self) -> String {
        (self.version.fetch_add(1, Ordering::SeqCst) + 1000).to_string()
    }

    /// What the API server adds to a stored object.
    fn stamp(&self, ns: &str, obj: &mut Value, created: Option<(&Value, &Value)>) {
        let meta = obj["metadata"].as_object_mut().unwrap();
        meta.insert("namespace".into(), json!(ns));
        meta.insert("resourceVersion".into(), json!(self.next_version()));
        let (uid, ts) = match created {
            Some((uid, ts)) => (uid.clone(), ts.clone()),
            None => (
                json!(format!(
                    "6f1c2b9e-0000-4000-8000-{:012}",
                    self.version.load(Ordering::SeqCst)
                )),
                json!(seconds()),
            ),
        };
        meta.insert("uid".into(), uid);
        meta.insert("creationTimestamp".into(), ts);
        meta.insert(
            "managedFields".into(),
            json!([{
                "manager": "kairo",
                "operation": "Update",
                "apiVersion": "coordination.k8s.io/v1",
                "time": seconds(),
                "fieldsType": "FieldsV1",
                "fieldsV1": {"f:spec": {"f:acquireTime": {}, "f:holderIdentity": {}, "f:leaseDurationSeconds": {}, "f:leaseTransitions": {}, "f:renewTime": {}}}
            }]),
        );
        obj["apiVersion"] = json!("coordination.k8s.io/v1");
        obj["kind"] = json!("Lease");
    }
}

type Reply = (StatusCode, Json<Value>);

async fn get_lease(
    State(s): State<Arc<Store>>,
    UrlPath((ns, name)): UrlPath<(String, String)>,
) -> Reply {
    s.hang_if_stalled().await;
    s.requests.lock().unwrap().push(format!("GET {ns}/{name}"));
    match s.leases.lock().unwrap().get(&(ns, name.clone())) {
        Some(l) => (StatusCode::OK, Json(l.clone())),
        None => status(
            404,
            "NotFound",
            format!("leases.coordination.k8s.io \"{name}\" not found"),
            &name,
        ),
    }
}

async fn create_lease(
    State(s): State<Arc<Store>>,
    UrlPath(ns): UrlPath<String>,
    Json(mut body): Json<Value>,
) -> Reply {
    let name = body["metadata"]["name"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    s.hang_if_stalled().await;
    s.requests.lock().unwrap().push(format!("POST {ns}/{name}"));
    let mut leases = s.leases.lock().unwrap();
    if leases.contains_key(&(ns.clone(), name.clone())) {
        return status(
            409,
            "AlreadyExists",
            format!("leases.coordination.k8s.io \"{name}\" already exists"),
            &name,
        );
    }
    s.stamp(&ns, &mut body, None);
    leases.insert((ns, name), body.clone());
    (StatusCode::CREATED, Json(body))
}

async fn replace_lease(
    State(s): State<Arc<Store>>,
    UrlPath((ns, name)): UrlPath<(String, String)>,
    Json(mut body): Json<Value>,
) -> Reply {
    s.hang_if_stalled().await;
    s.requests.lock().unwrap().push(format!("PUT {ns}/{name}"));
    let mut leases = s.leases.lock().unwrap();
    let key = (ns.clone(), name.clone());
    if s.interfere.swap(false, Ordering::SeqCst)
        && let Some(current) = leases.get_mut(&key)
    {
        // Another client renewed it a moment before this request arrived.
        current["spec"]["holderIdentity"] = json!("someone-else");
        current["spec"]["renewTime"] = json!(now());
        current["metadata"]["resourceVersion"] = json!(s.next_version());
    }
    let Some(current) = leases.get(&key) else {
        return status(
            404,
            "NotFound",
            format!("leases.coordination.k8s.io \"{name}\" not found"),
            &name,
        );
    };
    let sent = body["metadata"]["resourceVersion"].as_str();
    if sent.is_some() && sent != current["metadata"]["resourceVersion"].as_str() {
        return status(
            409,
            "Conflict",
            format!(
                "Operation cannot be fulfilled on leases.coordination.k8s.io \"{name}\": the object has been modified; please apply your changes to the latest version and try again"
            ),
            &name,
        );
    }
    let created = (
        current["metadata"]["uid"].clone(),
        current["metadata"]["creationTimestamp"].clone(),
    );
    s.stamp(&ns, &mut body, Some((&created.0, &created.1)));
    leases.insert(key, body.clone());
    (StatusCode::OK, Json(body))
}

/// Forwards a request for anything but Leases to the fallback server, as one API server
/// serves every API group: method, path, query and `Authorization` header.
async fn proxy(State(s): State<Arc<Store>>, request: axum::extract::Request) -> impl IntoResponse {
    let Some(base) = &s.fallback else {
        return (
            StatusCode::NOT_FOUND,
            [("content-type", "text/plain")],
            b"404 page not found\n".to_vec(),
        );
    };
    let target = request
        .uri()
        .path_and_query()
        .map_or("/".to_string(), |p| p.to_string());
    let mut forward =
        reqwest::Client::new().request(request.method().clone(), format!("{base}{target}"));
    if let Some(auth) = request.headers().get("authorization") {
        forward = forward.header("authorization", auth.as_bytes());
    }
    match forward.send().await {
        Ok(answer) => {
            let code = StatusCode::from_u16(answer.status().as_u16()).unwrap();
            let body = answer.bytes().await.unwrap_or_default().to_vec();
            (code, [("content-type", "application/json")], body)
        }
        Err(_) => (
            StatusCode::BAD_GATEWAY,
            [("content-type", "text/plain")],
            Vec::new(),
        ),
    }
}

impl FakeApi {
    pub fn start() -> FakeApi {
        Self::start_with(None)
    }

    /// Leases here; every other request forwarded to the server at `fallback` (`http://...`).
    pub fn start_with(fallback: Option<String>) -> FakeApi {
        let store = Arc::new(Store {
            fallback,
            ..Default::default()
        });
        let app = Router::new()
            .route(
                "/apis/coordination.k8s.io/v1/namespaces/{ns}/leases",
                axum::routing::post(create_lease),
            )
            .route(
                "/apis/coordination.k8s.io/v1/namespaces/{ns}/leases/{name}",
                get(get_lease).put(replace_lease),
            )
            .fallback(proxy)
            .with_state(store.clone());
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        listener.set_nonblocking(true).unwrap();
        std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async move {
                let listener = tokio::net::TcpListener::from_std(listener).unwrap();
                axum::serve(listener, app).await.unwrap();
            });
        });
        FakeApi { addr, store }
    }

    /// A kubeconfig for this server, written into `dir`.
    pub fn kubeconfig(&self, dir: &Path) -> PathBuf {
        self.kubeconfig_with_token(dir, "fake-token")
    }

    /// A kubeconfig for this server authenticating with `token`, written into `dir`.
    pub fn kubeconfig_with_token(&self, dir: &Path, token: &str) -> PathBuf {
        let path = dir.join("kubeconfig");
        std::fs::write(
            &path,
            format!(
                "apiVersion: v1\nkind: Config\nclusters:\n- name: fake\n  cluster:\n    server: http://{}\ncontexts:\n- name: fake\n  context:\n    cluster: fake\n    user: fake\n    namespace: gitops\ncurrent-context: fake\nusers:\n- name: fake\n  user:\n    token: {token}\n",
                self.addr
            ),
        )
        .unwrap();
        path
    }

    pub fn lease(&self, ns: &str, name: &str) -> Option<Value> {
        self.store
            .leases
            .lock()
            .unwrap()
            .get(&(ns.to_string(), name.to_string()))
            .cloned()
    }

    /// From now on, Lease requests are accepted and never answered.
    pub fn stall(&self) {
        self.store.stalled.store(true, Ordering::SeqCst);
    }

    pub fn holder(&self, ns: &str, name: &str) -> Option<String> {
        self.lease(ns, name)
            .and_then(|l| l["spec"]["holderIdentity"].as_str().map(str::to_string))
    }

    /// Another client takes the Lease (as after a network partition): `holder`, renewed now,
    /// for an hour.
    pub fn steal(&self, ns: &str, name: &str, holder: &str) {
        let mut leases = self.store.leases.lock().unwrap();
        let lease = leases
            .get_mut(&(ns.to_string(), name.to_string()))
            .expect("a Lease to steal");
        lease["spec"]["holderIdentity"] = json!(holder);
        lease["spec"]["renewTime"] = json!(now());
        lease["spec"]["leaseDurationSeconds"] = json!(3600);
        lease["metadata"]["resourceVersion"] = json!(self.store.next_version());
    }

    /// Makes the next update meet a Lease another client has just changed.
    pub fn interfere_next_update(&self) {
        self.store.interfere.store(true, Ordering::SeqCst);
    }

    pub fn requests(&self) -> Vec<String> {
        self.store.requests.lock().unwrap().clone()
    }
}
