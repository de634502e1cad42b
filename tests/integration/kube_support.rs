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
        let mut state = State {
            token: token.to_string(),
            resource_version: 1000,
            ..Default::default()
        };
        for o in objects {
            state.add(o);
        }
        let state = Arc::new(Mutex::new(state));
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
        if !bearer.is_some_and(|t| t == self.token || self.tokens.iter().any(|x| x == t)) {
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
