//! Registry push webhooks: who may send them, and which images they name.
//!
//! Authentication is an HMAC-SHA256 of the raw body (`X-Hub-Signature-256: sha256=<hex>`, as
//! GitHub signs; also accepted as `X-Signature-256`) or a shared token (`Authorization: Bearer
//! <token>`, Harbor's verbatim auth header `Authorization: <token>`, or `?token=` for Docker
//! Hub, which cannot set headers). Both comparisons take constant time. Payloads of Docker Hub,
//! GitHub packages (`registry_package` and `package` events), Harbor (`PUSH_ARTIFACT`) and a
//! generic `{"image": "host/repo"}` are understood. A webhook only triggers a scan of the named
//! images: what is bumped is still decided by the registry and the policy, never by the body.

use hmac::{KeyInit, Mac};
use serde_json::Value;
use subtle::ConstantTimeEq;

use crate::registry::ImageName;

/// The largest webhook body read. Push events are a few kilobytes; GitHub caps its payloads
/// at 25 MB, but a registry push event never comes near this.
pub const MAX_BODY: usize = 1 << 20;
/// How much of an oversized body is read (and discarded) so the sender gets the 413 instead
/// of a connection reset; beyond this the connection is simply closed.
pub const MAX_DRAIN: usize = 16 << 20;

/// Reads a request body of at most [`MAX_BODY`] bytes. `Err(())` when it is larger (or cut
/// short): the rest is read and dropped, up to [`MAX_DRAIN`], so the answer reaches the sender.
pub async fn read_body(mut body: axum::body::Body) -> Result<Vec<u8>, BodyError> {
    use axum::body::HttpBody;
    let mut out = Vec::new();
    let mut seen = 0usize;
    loop {
        let frame = std::future::poll_fn(|cx| std::pin::Pin::new(&mut body).poll_frame(cx)).await;
        match frame {
            None => break,
            Some(Err(_)) => return Err(BodyError::Broken),
            Some(Ok(frame)) => {
                let Ok(data) = frame.into_data() else {
                    continue;
                };
                seen = seen.saturating_add(data.len());
                if seen <= MAX_BODY {
                    out.extend_from_slice(&data);
                } else if seen > MAX_DRAIN {
                    break;
                }
            }
        }
    }
    if seen > MAX_BODY {
        Err(BodyError::TooLarge)
    } else {
        Ok(out)
    }
}

/// Why a webhook body was not read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyError {
    TooLarge,
    Broken,
}

/// The configured webhook credentials; with neither, webhooks are refused.
#[derive(Clone, Default)]
pub struct Auth {
    pub hmac_secret: Option<Vec<u8>>,
    pub token: Option<String>,
}

impl std::fmt::Debug for Auth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print secrets.
        f.debug_struct("Auth")
            .field("hmac", &self.hmac_secret.is_some())
            .field("token", &self.token.is_some())
            .finish()
    }
}

fn hex(s: &str) -> Option<Vec<u8>> {
    if !s.len().is_multiple_of(2) {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok())
        .collect()
}

impl Auth {
    pub fn enabled(&self) -> bool {
        self.hmac_secret.is_some() || self.token.is_some()
    }

    /// Whether the request is authentic. `header` looks a header up case-insensitively.
    pub fn check<'a>(
        &self,
        header: impl Fn(&str) -> Option<&'a str>,
        query: Option<&str>,
        body: &[u8],
    ) -> bool {
        if let Some(secret) = &self.hmac_secret {
            let signature = header("x-hub-signature-256").or_else(|| header("x-signature-256"));
            if let Some(sig) = signature
                .and_then(|s| s.strip_prefix("sha256="))
                .and_then(hex)
            {
                let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(secret)
                    .expect("HMAC takes keys of any length");
                mac.update(body);
                if mac.verify_slice(&sig).is_ok() {
                    return true;
                }
            }
        }
        if let Some(token) = &self.token {
            let mut offered = Vec::new();
            if let Some(a) = header("authorization") {
                offered.push(a.strip_prefix("Bearer ").unwrap_or(a));
            }
            if let Some(q) = query {
                offered.extend(q.split('&').filter_map(|kv| kv.strip_prefix("token=")));
            }
            return offered
                .iter()
                .any(|o| bool::from(o.as_bytes().ct_eq(token.as_bytes())));
        }
        false
    }
}

/// A value from a request, made safe to echo in a reply (or a terminal): control characters
/// (NUL, ESC, newlines) and bidirectional-text controls (U+202E...) are written as Rust's
/// `{:?}` writes them (`\0`, `\u{202e}`); everything else is kept as is.
pub fn escape_echoed(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for c in value.chars() {
        let bidi = matches!(
            c,
            '\u{061c}' | '\u{200e}' | '\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}'
        );
        if c.is_control() || bidi {
            out.extend(c.escape_debug());
        } else {
            out.push(c);
        }
    }
    out
}

/// Strips `:tag` and `@digest` from a reference such as `ghcr.io/acme/api:1.2.3`.
fn repository_of(reference: &str) -> &str {
    let no_digest = reference.split('@').next().unwrap_or(reference);
    match no_digest.rsplit_once(':') {
        // A colon after the last slash is a tag; before it, a port.
        Some((repo, tag)) if !tag.contains('/') => repo,
        _ => no_digest,
    }
}

/// The images a push event names.
pub fn images(body: &[u8]) -> Result<Vec<ImageName>, String> {
    let v: Value =
        serde_json::from_slice(body).map_err(|e| format!("the body is not JSON: {e}"))?;
    let s = |v: &Value, path: &[&str]| -> Option<String> {
        let mut cur = v;
        for p in path {
            cur = cur.get(p)?;
        }
        cur.as_str().map(str::to_string)
    };
    let mut refs: Vec<String> = Vec::new();
    // Docker Hub: {"push_data": {...}, "repository": {"repo_name": "org/app"}}
    if v.get("push_data").is_some()
        && let Some(name) = s(&v, &["repository", "repo_name"])
    {
        refs.push(name);
    }
    // GitHub packages: `registry_package` and `package` events.
    for key in ["registry_package", "package"] {
        if let Some(p) = v.get(key) {
            if let Some(url) = s(p, &["package_version", "package_url"]) {
                refs.push(repository_of(&url).to_string());
            } else if let (Some(ns), Some(name)) = (
                s(p, &["namespace"]).or_else(|| s(p, &["owner", "login"])),
                s(p, &["name"]),
            ) {
                refs.push(format!("ghcr.io/{}/{name}", ns.to_lowercase()));
            }
        }
    }
    // Harbor: {"type": "PUSH_ARTIFACT", "event_data": {"resources": [{"resource_url": ...}]}}
    if let Some(resources) = v
        .get("event_data")
        .and_then(|e| e.get("resources"))
        .and_then(Value::as_array)
    {
        for r in resources {
            if let Some(url) = s(r, &["resource_url"]) {
                refs.push(repository_of(&url).to_string());
            }
        }
    }
    // Generic: {"image": "host/repo[:tag]"} or {"images": [...]}
    if let Some(i) = s(&v, &["image"]) {
        refs.push(repository_of(&i).to_string());
    }
    if let Some(list) = v.get("images").and_then(Value::as_array) {
        refs.extend(
            list.iter()
                .filter_map(Value::as_str)
                .map(|i| repository_of(i).to_string()),
        );
    }
    if refs.is_empty() {
        return Err(
            "no image in the payload (expected Docker Hub, GitHub packages, Harbor, or `{\"image\": \"host/repository\"}`)"
                .into(),
        );
    }
    let mut out = Vec::new();
    for r in refs {
        let name = ImageName::parse(&r)?;
        if !out.contains(&name) {
            out.push(name);
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(body: &str) -> Vec<String> {
        images(body.as_bytes())
            .unwrap()
            .iter()
            .map(|i| i.to_string())
            .collect()
    }

    #[test]
    fn payload_shapes() {
        assert_eq!(
            names(r#"{"push_data":{"tag":"v1"},"repository":{"repo_name":"acme/api"}}"#),
            ["registry-1.docker.io/acme/api"]
        );
        assert_eq!(
            names(
                r#"{"action":"published","registry_package":{"name":"api","namespace":"Acme","package_type":"CONTAINER","package_version":{"package_url":"ghcr.io/acme/api:1.2.3"}}}"#
            ),
            ["ghcr.io/acme/api"]
        );
        assert_eq!(
            names(
                r#"{"action":"published","package":{"name":"api","namespace":"Acme","package_type":"container"}}"#
            ),
            ["ghcr.io/acme/api"]
        );
        assert_eq!(
            names(
                r#"{"type":"PUSH_ARTIFACT","event_data":{"resources":[{"tag":"1.0","resource_url":"harbor.example.com:8443/proj/api:1.0"}],"repository":{"repo_full_name":"proj/api"}}}"#
            ),
            ["harbor.example.com:8443/proj/api"]
        );
        assert_eq!(
            names(r#"{"image":"127.0.0.1:5000/acme/api@sha256:00"}"#),
            ["127.0.0.1:5000/acme/api"]
        );
        assert!(images(br#"{"hello":1}"#).is_err());
        assert!(images(b"not json").is_err());
    }

    #[test]
    fn hmac_and_token() {
        let auth = Auth {
            hmac_secret: Some(b"s3cret".to_vec()),
            token: Some("tok".into()),
        };
        let body = b"{}";
        let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(b"s3cret").unwrap();
        mac.update(body);
        let sig: String = mac
            .finalize()
            .into_bytes()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        let good = format!("sha256={sig}");
        assert!(auth.check(
            |h| (h == "x-hub-signature-256").then_some(good.as_str()),
            None,
            body
        ));
        assert!(!auth.check(
            |h| (h == "x-hub-signature-256").then_some(good.as_str()),
            None,
            b"{ }"
        ));
        assert!(auth.check(
            |h| (h == "authorization").then_some("Bearer tok"),
            None,
            body
        ));
        assert!(auth.check(|h| (h == "authorization").then_some("tok"), None, body));
        assert!(auth.check(|_| None, Some("a=b&token=tok"), body));
        assert!(!auth.check(|_| None, Some("token=tak"), body));
        assert!(!Auth::default().check(|_| Some("tok"), Some("token=tok"), body));
    }
}
