//! The registry client against a real `docker-registry` and a scripted loopback server, and
//! `kairo tags` end to end.

use std::time::Duration;

use kairo::model::tagpolicy::{Order, Policy, Range, UpdatePolicy};
use kairo::registry::{
    self, Client, ClientConfig, DockerConfig, ImageName, RegistryError, ScanError,
};

use crate::registry_support::{Answer, Registry, Scripted, docker_config, json, push};
use crate::support::{Repo, run_kairo_with_env};

fn client() -> Client {
    Client::new(ClientConfig::default()).unwrap()
}

/// A client reading credentials from `config`, the text of a docker `config.json` at `path`.
fn client_with(config: &str, path: std::path::PathBuf) -> Client {
    let cfg = DockerConfig::parse(config, path).unwrap();
    Client::new(ClientConfig {
        docker_config: cfg,
        ..ClientConfig::default()
    })
    .unwrap()
}

/// A client logging in to `host` as `user` with `password`.
fn client_with_login(host: &str, user: &str, password: &str) -> Client {
    client_with(
        &format!(
            r#"{{"auths": {{"{host}": {{"username": "{user}", "password": "{password}"}}}}}}"#
        ),
        "config.json".into(),
    )
}

fn image(host: &str, repo: &str) -> ImageName {
    ImageName::parse(&format!("{host}/{repo}")).unwrap()
}

fn semver(range: &str) -> UpdatePolicy {
    UpdatePolicy::new(Policy::Semver(Range::parse(range).unwrap()))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn anonymous_registry_tags_digests_and_build_times() {
    let reg = Registry::start(None);
    let mut digests = Vec::new();
    for (i, tag) in ["1.0.0", "1.1.0", "2.0.0-rc.1", "staging"]
        .iter()
        .enumerate()
    {
        let created = format!("2026-01-0{}T00:00:00Z", i + 1);
        digests.push(push(&reg.host, None, "acme/api", tag, &created, tag).await);
    }
    let sig = format!("sha256-{}.sig", &digests[0][7..]);
    push(
        &reg.host,
        None,
        "acme/api",
        &sig,
        "2026-02-01T00:00:00Z",
        "sig",
    )
    .await;

    let c = client();
    let img = image(&reg.host, "acme/api");
    let mut tags = c.list_tags(&img).await.unwrap();
    tags.sort();
    assert_eq!(tags.len(), 5);
    assert_eq!(c.resolve_digest(&img, "1.1.0").await.unwrap(), digests[1]);

    let latest = registry::latest(&c, &img, &semver("^1.0")).await.unwrap();
    assert_eq!(
        (latest.tag.as_str(), latest.digest.as_str()),
        ("1.1.0", digests[1].as_str())
    );
    assert_eq!(
        latest.explanation.excluded.len(),
        1,
        "the cosign tag is excluded"
    );

    // newestBuild reads each candidate's config `created`: the signature is excluded, so the
    // newest build is `staging`.
    let newest = UpdatePolicy::new(Policy::NewestBuild { max_candidates: 10 });
    let latest = registry::latest(&c, &img, &newest).await.unwrap();
    assert_eq!(latest.tag, "staging");

    // digest: following `staging`, then a re-push under the same tag is a new digest.
    let follow = UpdatePolicy::new(Policy::Digest {
        tag: "staging".into(),
    });
    let before = registry::latest(&c, &img, &follow).await.unwrap();
    assert_eq!(before.digest, digests[3]);
    let again = push(
        &reg.host,
        None,
        "acme/api",
        "staging",
        "2026-03-01T00:00:00Z",
        "new",
    )
    .await;
    let after = registry::latest(&c, &img, &follow).await.unwrap();
    assert_eq!(after.digest, again);
    assert_ne!(after.digest, before.digest);

    // A repository that does not exist is an error, not an empty list.
    let missing = c
        .list_tags(&image(&reg.host, "acme/none"))
        .await
        .unwrap_err();
    assert!(
        matches!(missing, RegistryError::Status { status: 404, .. }),
        "{missing}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn htpasswd_registry_uses_docker_credentials() {
    let reg = Registry::start(Some(("ci", "s3cret-pw")));
    push(
        &reg.host,
        Some(("ci", "s3cret-pw")),
        "acme/web",
        "1.2.3",
        "2026-01-01T00:00:00Z",
        "w",
    )
    .await;
    let img = image(&reg.host, "acme/web");

    let anonymous = client().list_tags(&img).await.unwrap_err();
    assert!(
        matches!(anonymous, RegistryError::Unauthorized { .. }),
        "{anonymous}"
    );

    let dir = tempfile::tempdir().unwrap();
    docker_config(dir.path(), &reg.host, "ci", "wrong-pw");
    let config = dir.path().join("config.json");
    let wrong = client_with(&std::fs::read_to_string(&config).unwrap(), config);
    let err = wrong.list_tags(&img).await.unwrap_err();
    assert!(matches!(err, RegistryError::Unauthorized { .. }), "{err}");
    assert!(!format!("{err} {err:?}").contains("wrong-pw"));

    docker_config(dir.path(), &reg.host, "ci", "s3cret-pw");
    let config = dir.path().join("config.json");
    let right = client_with(&std::fs::read_to_string(&config).unwrap(), config);
    assert_eq!(right.list_tags(&img).await.unwrap(), ["1.2.3"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bearer_token_flow_and_cache() {
    // A token server and a registry that wants its tokens, both scripted on loopback.
    let tokens = Scripted::start(|req| {
        let ok = req.header("authorization") == Some("Basic Ym90OnB3");
        let scoped = req.target.contains("scope=repository%3Aacme%2Fapp%3Apull")
            && req.target.contains("service=test-registry");
        if ok && scoped {
            json(200, r#"{"token": "tok-123", "expires_in": 300}"#)
        } else {
            json(401, "{}")
        }
    });
    let realm = format!("http://{}/token", tokens.host());
    let reg = Scripted::start(move |req| {
        if req.header("authorization") == Some("Bearer tok-123") {
            return json(200, r#"{"name": "acme/app", "tags": ["1.0.0", "1.0.1"]}"#);
        }
        Answer::Full(
            401,
            vec![(
                "www-authenticate".into(),
                format!(
                    r#"Bearer realm="{realm}",service="test-registry",scope="repository:acme/app:pull""#
                ),
            )],
            br#"{"errors":[{"code":"UNAUTHORIZED"}]}"#.to_vec(),
        )
    });
    let c = client_with_login(&reg.host(), "bot", "pw");
    let img = image(&reg.host(), "acme/app");
    for _ in 0..3 {
        assert_eq!(c.list_tags(&img).await.unwrap(), ["1.0.0", "1.0.1"]);
    }
    // One token for three listings: cached until `expires_in`.
    assert_eq!(tokens.requests().len(), 1);
    assert_eq!(reg.requests().len(), 4);
}

/// A token server that answers with a huge body (claimed, or streamed without a length), an
/// error status or garbage is named as the token request, with a `token_*` code (the
/// `kairo_registry_errors_total` label), never as a failure of the `tags/list` it was for.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_token_server_is_a_token_error_not_a_tags_list_failure() {
    let tokens = Scripted::start(|req| {
        if req.target.contains("service=claims-a-gib") {
            // Claims 1 GiB and sends a few bytes: refused on the header, nothing buffered.
            return Answer::Raw(
                b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 1073741824\r\n\r\n{\"token\": \"".to_vec(),
            );
        }
        if req.target.contains("service=streams") {
            // No length: chunks until the bound is passed.
            let mut raw = b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ntransfer-encoding: chunked\r\n\r\n".to_vec();
            for _ in 0..8 {
                raw.extend_from_slice(b"200\r\n");
                raw.extend_from_slice(&[b'x'; 0x200]);
                raw.extend_from_slice(b"\r\n");
            }
            raw.extend_from_slice(b"0\r\n\r\n");
            return Answer::Raw(raw);
        }
        if req.target.contains("service=broken") {
            return json(500, "{}");
        }
        json(200, "<html>login</html>")
    });
    let realm = format!("http://{}/token", tokens.host());
    let reg = Scripted::start(move |req| {
        let service = req.target.split('/').nth(3).unwrap_or("");
        Answer::Full(
            401,
            vec![(
                "www-authenticate".into(),
                format!(r#"Bearer realm="{realm}",service="{service}""#),
            )],
            br#"{"errors":[{"code":"UNAUTHORIZED"}]}"#.to_vec(),
        )
    });
    let c = Client::new(ClientConfig {
        max_body: 1024,
        ..ClientConfig::default()
    })
    .unwrap();
    let token_host = tokens.host();
    for (repo, code, said) in [
        (
            "acme/claims-a-gib",
            "token_too_large",
            "was answered with more than 1024 bytes",
        ),
        (
            "acme/streams",
            "token_too_large",
            "was answered with more than 1024 bytes",
        ),
        ("acme/broken", "token_500", "was answered with HTTP 500"),
        (
            "acme/garbage",
            "token_invalid",
            "was not answered with a token",
        ),
    ] {
        let err = c.list_tags(&image(&reg.host(), repo)).await.unwrap_err();
        assert_eq!(err.code(), code, "{repo}: {err}");
        let text = err.to_string();
        assert!(
            text.contains(&format!(
                "the token request to `{token_host}` for `tags/list` {said}"
            )),
            "{repo}: {text}"
        );
    }
    // Only the first request of each listing reached the registry: tags/list itself was never
    // asked with a token.
    assert_eq!(reg.requests().len(), 4);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tag_pages_follow_link_next() {
    let server = Scripted::start(|req| {
        let (tags, next) = if req.target.contains("last=b") {
            (r#"["c"]"#, None)
        } else if req.target.contains("last=a") {
            (
                r#"["b"]"#,
                Some("</v2/acme/paged/tags/list?n=1&last=b>; rel=\"next\""),
            )
        } else {
            (
                r#"["a"]"#,
                Some("</v2/acme/paged/tags/list?n=1&last=a>; rel=\"next\""),
            )
        };
        let mut headers = vec![("content-type".to_string(), "application/json".to_string())];
        if let Some(link) = next {
            headers.push(("link".into(), link.into()));
        }
        Answer::Full(200, headers, format!(r#"{{"tags": {tags}}}"#).into_bytes())
    });
    let tags = client()
        .list_tags(&image(&server.host(), "acme/paged"))
        .await
        .unwrap();
    assert_eq!(tags, ["a", "b", "c"]);
    assert!(server.requests()[0].target.contains("n=1000"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn faults_are_errors_never_empty_lists() {
    let server = Scripted::start(|req| {
        let repo = req.target.split('/').nth(2).unwrap_or("");
        match repo {
            "limited" => Answer::Full(429, vec![("retry-after".into(), "120".into())], vec![]),
            "broken" => json(500, r#"{"errors":[{"code":"UNKNOWN"}]}"#),
            "cut" => Answer::Raw(
                b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 100\r\n\r\n{\"tags\": [\"1.0".to_vec(),
            ),
            "huge" => json(200, &format!(r#"{{"tags": ["{}"]}}"#, "x".repeat(4096))),
            "garbage" => json(200, "<html>maintenance</html>"),
            "slow" => Answer::Stall,
            _ => json(200, r#"{"tags": ["1.0.0"]}"#),
        }
    });
    let c = Client::new(ClientConfig {
        max_body: 1024,
        timeout: Duration::from_millis(500),
        ..ClientConfig::default()
    })
    .unwrap();
    let host = server.host();
    let err = |repo: &'static str| {
        let c = c.clone();
        let img = image(&host, &format!("acme/{repo}").replace("acme/", ""));
        async move { c.list_tags(&img).await.unwrap_err() }
    };
    assert!(matches!(
        err("broken").await,
        RegistryError::Status { status: 500, .. }
    ));
    assert!(matches!(
        err("cut").await,
        RegistryError::Transport { .. } | RegistryError::Invalid { .. }
    ));
    assert!(matches!(
        err("huge").await,
        RegistryError::TooLarge { limit: 1024, .. }
    ));
    assert!(matches!(
        err("garbage").await,
        RegistryError::Invalid { .. }
    ));
    assert!(matches!(err("slow").await, RegistryError::Timeout { .. }));
    // 429: the registry is paused; the next request fails without being sent.
    let first = err("limited").await;
    assert!(
        matches!(first, RegistryError::RateLimited { retry_after: Some(d), .. } if d == Duration::from_secs(120)),
        "{first}"
    );
    let sent = server.requests().len();
    let second = err("fine").await;
    assert!(
        matches!(second, RegistryError::Paused { left, .. } if left <= Duration::from_secs(120)),
        "{second}"
    );
    assert_eq!(server.requests().len(), sent);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn authorization_never_follows_a_redirect_to_another_host() {
    let elsewhere = Scripted::start(|_| json(200, r#"{"created": "2026-01-01T00:00:00Z"}"#));
    // `localhost` and `127.0.0.1` are different hosts to an HTTP client.
    let target = format!("http://localhost:{}/blob", elsewhere.addr.port());
    let reg = Scripted::start(move |req| {
        if req.header("authorization").is_none() {
            return Answer::Full(
                401,
                vec![("www-authenticate".into(), "Basic realm=\"r\"".into())],
                vec![],
            );
        }
        if req.target.contains("/blobs/") {
            return Answer::Full(307, vec![("location".into(), target.clone())], vec![]);
        }
        json(
            200,
            r#"{"schemaVersion":2,"config":{"digest":"sha256:00"}}"#,
        )
    });
    let c = client_with_login(&reg.host(), "u", "p");
    let created = c
        .created_time(&image(&reg.host(), "acme/r"), "1.0.0")
        .await
        .unwrap();
    assert!(created.is_some());
    let blob = &elsewhere.requests()[0];
    assert_eq!(blob.header("authorization"), None, "{blob:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_failing_registry_does_not_stop_the_scan() {
    let good = Scripted::start(|req| {
        if req.method == "HEAD" {
            return Answer::Full(
                200,
                vec![(
                    "docker-content-digest".into(),
                    format!("sha256:{}", "a".repeat(64)),
                )],
                vec![],
            );
        }
        json(200, r#"{"tags": ["1", "2", "3"]}"#)
    });
    let bad = Scripted::start(|_| json(503, "{}"));
    let numerical = UpdatePolicy::new(Policy::Numerical(Order::Asc));
    let images = vec![
        (image(&bad.host(), "a/x"), numerical.clone()),
        (image(&good.host(), "a/y"), numerical.clone()),
    ];
    let results = registry::scan(&client(), &images, 4).await;
    assert!(matches!(
        &results[0],
        Err(ScanError::Registry(RegistryError::Status {
            status: 503,
            ..
        }))
    ));
    assert_eq!(results[1].as_ref().unwrap().tag, "3");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lookup_that_outlives_its_deadline_is_a_timeout_and_the_scan_goes_on() {
    // The first page answers at once and links to a second page that never comes: each
    // request is well inside the request timeout (an hour here), only the lookup's deadline
    // can end it.
    let stalling = Scripted::start(|req| {
        if req.target.contains("last=") {
            return Answer::Stall;
        }
        Answer::Full(
            200,
            vec![(
                "link".into(),
                "</v2/a/slow/tags/list?n=1000&last=1>; rel=\"next\"".into(),
            )],
            br#"{"tags": ["1"]}"#.to_vec(),
        )
    });
    let good = Scripted::start(|req| {
        if req.method == "HEAD" {
            return Answer::Full(
                200,
                vec![(
                    "docker-content-digest".into(),
                    format!("sha256:{}", "b".repeat(64)),
                )],
                vec![],
            );
        }
        json(200, r#"{"tags": ["1", "2"]}"#)
    });
    let deadline = Duration::from_millis(300);
    let c = Client::new(ClientConfig {
        timeout: Duration::from_secs(3600),
        lookup_deadline: deadline,
        ..ClientConfig::default()
    })
    .unwrap();
    assert_eq!(c.lookup_deadline(), deadline);
    let numerical = UpdatePolicy::new(Policy::Numerical(Order::Asc));
    let images = vec![
        (image(&stalling.host(), "a/slow"), numerical.clone()),
        (image(&good.host(), "a/fine"), numerical),
    ];
    let results = registry::scan(&c, &images, 2).await;
    match &results[0] {
        Err(ScanError::Registry(RegistryError::Timeout { what, timeout, .. })) => {
            assert_eq!(*timeout, deadline);
            assert!(what.contains("the whole lookup"), "{what}");
        }
        other => panic!("expected the lookup deadline, got {other:?}"),
    }
    assert!(
        stalling
            .requests()
            .iter()
            .any(|r| r.target.contains("last=1")),
        "the second page was asked for"
    );
    assert_eq!(results[1].as_ref().unwrap().tag, "2");
}

const CATALOG: &str = r#"apiVersion: kairo.dev/v1alpha1
kind: ServiceCatalog
metadata:
  name: test
spec:
  sources:
    charts:
      type: helm
      url: https://charts.example.com
  services:
    api:
      chart: {version: ">=1.0.0", source: charts}
      image: {repository: HOST/acme/api}
      update:
        policy: {semver: {range: "^1.0"}}
        exclusionList: ['^.*\.sig$', '^.*-cache$']
"#;

const STAGING: &str = r#"apiVersion: kairo.dev/v1alpha1
kind: Environment
metadata:
  name: staging
spec:
  namespace: acme-staging
  branch: staging
  cluster: acme-staging
  defaults:
    replicas: 1
    hpa: {}
    pdb: {}
  services:
    api:
      image: {tag: "TAG"}
"#;

#[test]
fn kairo_tags_explains_the_choice() {
    let reg = Registry::start(None);
    let rt = tokio::runtime::Runtime::new().unwrap();
    let d110 = rt.block_on(async {
        for tag in ["1.0.0", "2.0.0", "main-cache"] {
            push(
                &reg.host,
                None,
                "acme/api",
                tag,
                "2026-01-01T00:00:00Z",
                tag,
            )
            .await;
        }
        push(
            &reg.host,
            None,
            "acme/api",
            "1.1.0",
            "2026-01-02T00:00:00Z",
            "1.1.0",
        )
        .await
    });
    let repo = Repo::new();
    repo.write(
        "environments/services.yaml",
        &CATALOG.replace("HOST", &reg.host),
    );
    repo.write(
        "environments/staging.yaml",
        &STAGING.replace("TAG", "1.0.0"),
    );
    let out = run_kairo_with_env(
        repo.path(),
        &["tags", "api", "--env", "staging", "--output", "json"],
        &[],
    );
    assert_eq!(out.code, 1, "a newer tag is a bump due: {}", out.stderr);
    let report: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
    assert_eq!(report["selected"]["tag"], "1.1.0");
    assert_eq!(report["selected"]["digest"], d110.as_str());
    assert_eq!(report["explanation"]["excluded"][0]["tag"], "main-cache");
    assert_eq!(report["explanation"]["ignored"][0]["tag"], "2.0.0");

    repo.write(
        "environments/staging.yaml",
        &STAGING.replace("TAG", "1.1.0"),
    );
    let out = run_kairo_with_env(repo.path(), &["tags", "api", "--env", "staging"], &[]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(out.stdout.contains("selected: 1.1.0@"), "{}", out.stdout);
    assert!(out.stdout.contains("(up to date)"), "{}", out.stdout);

    // Registry gone: an error (exit 2), never "up to date".
    drop(reg);
    let out = run_kairo_with_env(repo.path(), &["tags", "api", "--env", "staging"], &[]);
    assert_eq!(out.code, 2, "{}", out.stdout);
    assert!(
        out.stderr.contains("error: request to registry"),
        "{}",
        out.stderr
    );
    // Nothing was listed: stdout does not say "0 listed".
    assert!(out.stdout.contains("image:"), "{}", out.stdout);
    assert!(!out.stdout.contains("tags:"), "{}", out.stdout);
}

#[test]
fn update_policy_errors_point_at_the_value() {
    let repo = Repo::new();
    let catalog = CATALOG
        .replace("HOST", "ghcr.io")
        .replace(
            r#"{semver: {range: "^1.0"}}"#,
            r#"{semver: {range: "1.0.0p"}}"#,
        )
        .replace(r#"'^.*-cache$'"#, r#"'(unclosed'"#);
    repo.write("environments/services.yaml", &catalog);
    repo.write(
        "environments/staging.yaml",
        &STAGING.replace("TAG", "1.0.0"),
    );
    let out = repo.kairo(&["tags", "api", "--env", "staging"]);
    assert_eq!(out.code, 2);
    assert!(
        out.stderr.contains("environments/services.yaml:15:"),
        "{}",
        out.stderr
    );
    assert!(
        out.stderr.contains("invalid semver range `1.0.0p`"),
        "{}",
        out.stderr
    );
    assert!(
        out.stderr
            .contains("invalid exclusionList entry `(unclosed`"),
        "{}",
        out.stderr
    );
}

/// Found by attacking the watcher: a page linking to itself ends at once, and a `Retry-After`
/// no clock can add (or a date decades away) neither panics nor poisons the limiter for the
/// other registries.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_pages_and_retry_after_are_errors_not_hangs_or_panics() {
    let server = Scripted::start(|req| {
        if req.target.contains("/circle/") {
            return Answer::Full(
                200,
                vec![
                    ("content-type".into(), "application/json".into()),
                    (
                        "link".into(),
                        "</v2/acme/circle/tags/list?n=1000>; rel=\"next\"".into(),
                    ),
                ],
                br#"{"tags": ["a"]}"#.to_vec(),
            );
        }
        if req.target.contains("/forever/") {
            return Answer::Full(
                429,
                vec![("retry-after".into(), "18446744073709551615".into())],
                vec![],
            );
        }
        json(200, r#"{"tags": ["1.0.0"]}"#)
    });
    let c = client();
    let err = c
        .list_tags(&image(&server.host(), "acme/circle"))
        .await
        .unwrap_err();
    assert!(err.to_string().contains("link in a circle"), "{err}");
    assert!(server.requests().len() <= 2, "{}", server.requests().len());

    let err = c
        .list_tags(&image(&server.host(), "acme/forever"))
        .await
        .unwrap_err();
    assert!(err.to_string().contains("429"), "{err}");
    // The limiter still works: another registry (the same server under another name) answers.
    let other = server.host().replace("127.0.0.1", "localhost");
    assert_eq!(
        c.list_tags(&image(&other, "acme/fine")).await.unwrap(),
        ["1.0.0"]
    );
}

/// `newestBuild` against a real registry: the newest image config `created` wins whatever the
/// tags' lexical order (SHA tags have none), cosign tags are not candidates; over the cap, the
/// policy fails before a single manifest or config is fetched.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn newest_build_orders_by_config_created_within_the_inspection_cap() {
    let reg = Registry::start(None);
    let sha = |c: char| c.to_string().repeat(40);
    // Lexically f > c > a; by build time a is the newest, then c, then f.
    for (tag, created) in [
        (sha('f'), "2026-01-01T00:00:00Z"),
        (sha('a'), "2026-01-03T00:00:00Z"),
        (sha('c'), "2026-01-02T23:00:00-02:00"),
    ] {
        push(&reg.host, None, "acme/api", &tag, created, &tag).await;
    }
    // The newest push of all is a signature: excluded by default, never inspected.
    let d = push(
        &reg.host,
        None,
        "acme/api",
        &format!("sha256-{}.sig", "0".repeat(64)),
        "2026-02-01T00:00:00Z",
        "sig",
    )
    .await;
    assert!(d.starts_with("sha256:"));
    let c = client();
    let img = image(&reg.host, "acme/api");
    let newest = |max| {
        UpdatePolicy::new(Policy::NewestBuild {
            max_candidates: max,
        })
    };
    // Three candidates, a cap of three: every one inspected.
    let latest = registry::latest(&c, &img, &newest(3)).await.unwrap();
    // 2026-01-02T23:00-02:00 is 2026-01-03T01:00Z: `c` was built last.
    let order: Vec<&str> = latest
        .explanation
        .ordered
        .iter()
        .map(|o| o.tag.as_str())
        .collect();
    assert_eq!(order, [sha('c'), sha('a'), sha('f')]);
    assert_eq!(latest.tag, sha('c'));

    // Over the cap: a policy error naming the count, and only the tag list was asked for.
    let server = Scripted::start(|_| json(200, r#"{"tags": ["a", "b", "c", "d", "e"]}"#));
    let err = registry::latest(&c, &image(&server.host(), "acme/many"), &newest(3))
        .await
        .unwrap_err();
    assert!(
        matches!(
            &err,
            ScanError::Policy {
                error: kairo::model::tagpolicy::PolicyError::TooManyCandidates { count: 5, max: 3 },
                ..
            }
        ),
        "{err}"
    );
    let asked: Vec<String> = server.requests().iter().map(|r| r.target.clone()).collect();
    assert_eq!(asked.len(), 1, "{asked:?}");
    assert!(asked[0].contains("/tags/list"), "{asked:?}");
}

/// Writes `docker-credential-<name>`, a helper speaking docker's `get` protocol: it records
/// each host asked on a line of `log` and answers `user`/`secret` for `host`, "credentials not
/// found" for any other.
fn credential_helper(dir: &std::path::Path, name: &str, host: &str, user: &str, secret: &str) {
    use std::os::unix::fs::PermissionsExt;
    let log = dir.join(format!("{name}.log"));
    let script = format!(
        "#!/bin/sh\n[ \"$1\" = get ] || exit 3\nread -r asked\necho \"$asked\" >> '{}'\nif [ \"$asked\" = '{host}' ]; then\n  printf '{{\"ServerURL\":\"%s\",\"Username\":\"{user}\",\"Secret\":\"{secret}\"}}' \"$asked\"\nelse\n  echo 'credentials not found in native keychain'\n  exit 1\nfi\n",
        log.display()
    );
    let path = dir.join(format!("docker-credential-{name}"));
    std::fs::write(&path, script).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
}

/// Credentials through docker's credential helpers, found on `PATH` as docker finds them:
/// `credHelpers[host]` wins over `credsStore`, which serves hosts without a helper of their
/// own; the secret appears in no output.
#[test]
fn credential_helpers_from_path_as_docker_runs_them() {
    let reg = Registry::start(Some(("ci", "h3lper-pw")));
    let rt = tokio::runtime::Runtime::new().unwrap();
    let d = rt.block_on(push(
        &reg.host,
        Some(("ci", "h3lper-pw")),
        "acme/api",
        "1.1.0",
        "2026-01-01T00:00:00Z",
        "1.1.0",
    ));
    let repo = Repo::new();
    repo.write(
        "environments/services.yaml",
        &CATALOG.replace("HOST", &reg.host),
    );
    repo.write(
        "environments/staging.yaml",
        &STAGING.replace("TAG", "1.0.0"),
    );
    let bin = tempfile::tempdir().unwrap();
    credential_helper(bin.path(), "kairotest", &reg.host, "ci", "h3lper-pw");
    credential_helper(bin.path(), "other", "elsewhere.example", "x", "y");
    let path = format!(
        "{}:{}",
        bin.path().display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let docker = tempfile::tempdir().unwrap();
    let tags = |config: &str| {
        std::fs::write(docker.path().join("config.json"), config).unwrap();
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_kairo"))
            .args(["--root"])
            .arg(repo.path())
            .args(["tags", "api", "--env", "staging", "--output", "json"])
            .env_remove("DOCKER_AUTH_CONFIG")
            .env_remove("RUST_LOG")
            .env("DOCKER_CONFIG", docker.path())
            .env("PATH", &path)
            .output()
            .unwrap();
        let (stdout, stderr) = (
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        );
        assert!(!stdout.contains("h3lper-pw") && !stderr.contains("h3lper-pw"));
        (out.status.code(), stdout, stderr)
    };
    let asked = |name: &str| {
        std::fs::read_to_string(bin.path().join(format!("{name}.log"))).unwrap_or_default()
    };

    // `credHelpers` for this host; `credsStore` would send it to `other`, which knows nothing.
    let (code, stdout, stderr) = tags(&format!(
        r#"{{"credsStore": "other", "credHelpers": {{"{}": "kairotest"}}}}"#,
        reg.host
    ));
    assert_eq!(code, Some(1), "a bump is due: {stderr}");
    let report: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(report["selected"]["tag"], "1.1.0");
    assert_eq!(report["selected"]["digest"], d.as_str());
    assert_eq!(asked("kairotest"), format!("{}\n", reg.host));
    assert_eq!(asked("other"), "", "credHelpers wins over credsStore");

    // `credsStore` alone serves every host.
    let (code, stdout, stderr) = tags(r#"{"credsStore": "kairotest"}"#);
    assert_eq!(code, Some(1), "{stderr}");
    assert!(stdout.contains(&d), "{stdout}");
    assert_eq!(asked("kairotest").lines().count(), 2);

    // A helper without credentials for the host: anonymous, as docker does; the registry
    // refuses, and the error says so (exit 2, never "up to date").
    let (code, _, stderr) = tags(r#"{"credsStore": "other"}"#);
    assert_eq!(code, Some(2), "{stderr}");
    assert!(stderr.contains("refused the credentials"), "{stderr}");
    assert_eq!(asked("other"), format!("{}\n", reg.host));
}

/// A credential helper that never answers costs its own registry a `credentials` error after
/// the deadline, and nothing else: on the daemon's single-thread runtime, another registry's
/// lookup completes while the helper still runs.
#[tokio::test(flavor = "current_thread")]
async fn a_hanging_credential_helper_blocks_only_its_registry() {
    use std::os::unix::fs::PermissionsExt;
    use tokio::io::AsyncReadExt;

    let guarded = Scripted::start(|req| {
        if req.header("authorization").is_some() {
            return json(200, r#"{"tags": ["1.0.0"]}"#);
        }
        Answer::Full(
            401,
            vec![("www-authenticate".into(), r#"Basic realm="kairo""#.into())],
            br#"{"errors":[{"code":"UNAUTHORIZED"}]}"#.to_vec(),
        )
    });
    let open = Scripted::start(|_| json(200, r#"{"tags": ["2.0.0"]}"#));
    let bin = tempfile::tempdir().unwrap();
    let started = bin.path().join("started");
    let made = std::process::Command::new("mkfifo")
        .arg(&started)
        .status()
        .unwrap();
    assert!(made.success());
    // It says it has started (through the FIFO the test reads), then hangs for good.
    let helper = bin.path().join("docker-credential-hangs");
    std::fs::write(
        &helper,
        format!(
            "#!/bin/sh\nread -r host\necho started > '{}'\nexec tail -f /dev/null\n",
            started.display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(&helper, std::fs::Permissions::from_mode(0o755)).unwrap();
    let client = |timeout: Duration| {
        let cfg = DockerConfig::parse(
            &format!(r#"{{"credHelpers": {{"{}": "hangs"}}}}"#, guarded.host()),
            "config.json".into(),
        )
        .unwrap()
        .with_helper_timeout(timeout)
        .with_helper_path(format!("{}:/usr/bin:/bin", bin.path().display()));
        Client::new(ClientConfig {
            docker_config: cfg,
            ..ClientConfig::default()
        })
        .unwrap()
    };

    // The helper runs (it said so) and the same thread still serves another registry.
    let c = client(Duration::from_secs(3600));
    let stuck = tokio::spawn({
        let c = c.clone();
        let img = image(&guarded.host(), "acme/api");
        async move { c.list_tags(&img).await }
    });
    let mut said = String::new();
    tokio::net::unix::pipe::OpenOptions::new()
        .open_receiver(&started)
        .unwrap()
        .read_to_string(&mut said)
        .await
        .unwrap();
    assert_eq!(said, "started\n");
    let other = c.list_tags(&image(&open.host(), "acme/web")).await.unwrap();
    assert_eq!(other, ["2.0.0"]);
    assert!(!stuck.is_finished(), "the helper never answers");
    // Dropping the lookup takes the helper with it (`kill_on_drop`).
    stuck.abort();

    // With a short deadline, the helper is stopped and the registry's lookup fails with a
    // `credentials` error that names the helper and the reason.
    // (No reader on the FIFO now: the helper hangs opening it.)
    let c = client(Duration::from_millis(200));
    let err = c
        .list_tags(&image(&guarded.host(), "acme/api"))
        .await
        .unwrap_err();
    assert_eq!(err.code(), "credentials", "{err}");
    let text = err.to_string();
    assert!(text.contains("docker-credential-hangs"), "{text}");
    assert!(text.contains("did not answer within 200ms"), "{text}");
}

/// A registry on loopback naming a plain-HTTP token realm on another host: the Basic
/// credentials are not sent there (nothing is), and the error says why.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plain_http_realm_off_loopback_gets_no_credentials() {
    // The realm is a loopback server reached through a name that is not loopback: were kairo
    // to go there, `kairo-realm.invalid` would fail to resolve, a different error.
    let reg = Scripted::start(|_| {
        Answer::Full(
            401,
            vec![(
                "www-authenticate".into(),
                r#"Bearer realm="http://127.0.0.1@kairo-realm.invalid/token",service="x""#.into(),
            )],
            br#"{"errors":[{"code":"UNAUTHORIZED"}]}"#.to_vec(),
        )
    });
    let c = client_with_login(&reg.host(), "bot", "pw-cleartext");
    let err = c
        .list_tags(&image(&reg.host(), "acme/app"))
        .await
        .unwrap_err();
    assert!(matches!(err, RegistryError::Invalid { .. }), "{err:?}");
    assert!(err.to_string().contains("not an HTTPS URL"), "{err}");
    assert_eq!(reg.requests().len(), 1, "only the challenge");
}
