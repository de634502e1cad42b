//! Leader election through the real kube client against `lease_support::FakeApi`: create on
//! 404, renew with the read `resourceVersion`, 409 on stale updates, takeover only after a
//! whole lease duration without renewal (driven by explicit instants, not by waiting), release
//! on shutdown; and two `kairo watch --leader-elect` replicas.

use std::time::{Duration, Instant};

use k8s_openapi::api::coordination::v1::Lease;
use kairo::daemon::lease::Elector;
use kube::Api;
use kube::api::PostParams;

use crate::lease_support::FakeApi;

async fn leases(api: &FakeApi, dir: &std::path::Path) -> Api<Lease> {
    let path = api.kubeconfig(dir);
    let kubeconfig = kube::config::Kubeconfig::read_from(&path).unwrap();
    let config = kube::Config::from_custom_kubeconfig(kubeconfig, &Default::default())
        .await
        .unwrap();
    Api::namespaced(kube::Client::try_from(config).unwrap(), "gitops")
}

fn code(e: &kube::Error) -> (u16, String) {
    match e {
        kube::Error::Api(s) => (s.code, s.reason.clone()),
        other => panic!("not an API error: {other}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_holder_renews_and_another_takes_over_only_after_expiry() {
    let api = FakeApi::start();
    let dir = tempfile::tempdir().unwrap();
    let leases = leases(&api, dir.path()).await;
    let d = Duration::from_secs(10);
    let mut a = Elector::new(leases.clone(), "kairo-watch", "a", d);
    let mut b = Elector::new(leases.clone(), "kairo-watch", "b", d);
    let t0 = Instant::now();
    let at = |s: u64| t0 + Duration::from_secs(s);

    assert!(a.step(at(0)).await.unwrap(), "404, then created");
    assert_eq!(
        api.requests(),
        ["GET gitops/kairo-watch", "POST gitops/kairo-watch"]
    );
    assert!(a.is_leader(at(0)));
    assert!(!b.step(at(0)).await.unwrap());
    assert!(a.step(at(3)).await.unwrap(), "renewed");
    assert!(!b.step(at(4)).await.unwrap(), "b sees a new record at 4");
    // `a` stops renewing. `b` counts from when it saw the last record, by its own clock.
    assert!(!b.step(at(12)).await.unwrap());
    assert!(
        !a.is_leader(at(13)),
        "a leader that cannot renew steps down in time"
    );
    assert!(b.step(at(14)).await.unwrap(), "expired: taken over");
    let lease = api.lease("gitops", "kairo-watch").unwrap();
    assert_eq!(lease["spec"]["holderIdentity"], "b");
    assert_eq!(lease["spec"]["leaseTransitions"], 1);
    assert_eq!(lease["spec"]["leaseDurationSeconds"], 10);
    assert!(!a.step(at(14)).await.unwrap(), "a now follows");

    // An update with a stale resourceVersion is refused, as the API server refuses it.
    let stale = leases.get("kairo-watch").await.unwrap();
    assert!(b.step(at(15)).await.unwrap());
    let e = leases
        .replace("kairo-watch", &PostParams::default(), &stale)
        .await
        .unwrap_err();
    assert_eq!(code(&e), (409, "Conflict".into()));
    let e = leases
        .create(&PostParams::default(), &stale)
        .await
        .unwrap_err();
    assert_eq!(code(&e).0, 409);

    // Another client writes between b's read and b's write: b gets 409 and does not lead.
    api.interfere_next_update();
    assert!(!b.step(at(16)).await.unwrap());
    assert!(!b.is_leader(at(16)));
    assert_eq!(
        api.holder("gitops", "kairo-watch").as_deref(),
        Some("someone-else")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_released_lease_is_taken_at_once() {
    let api = FakeApi::start();
    let dir = tempfile::tempdir().unwrap();
    let leases = leases(&api, dir.path()).await;
    let d = Duration::from_secs(3600);
    let mut a = Elector::new(leases.clone(), "l", "a", d);
    let mut b = Elector::new(leases.clone(), "l", "b", d);
    let t = Instant::now();
    assert!(a.step(t).await.unwrap());
    assert!(!b.step(t).await.unwrap());
    a.release().await.unwrap();
    assert_eq!(api.holder("gitops", "l"), None);
    assert!(b.step(t).await.unwrap(), "free: no need to wait an hour");
}
