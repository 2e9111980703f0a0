//! Two operator replicas contend for one Lease on the in-memory API: a holder whose renewals hang
//! stops leading before the other may start, and one that steps down hands over at once.

mod common;

use std::{
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use common::Fault;
use k8s_openapi::api::coordination::v1::Lease;
use kube::{
    api::{Api, Patch, PatchParams},
    Client,
};
use kube_fake_client::ClientBuilder;
use serde_json::json;
use timedeal_operator::leader::{Leadership, Timing};

const NS: &str = "timedeal-system";

const FAST: Timing = Timing {
    lease: Duration::from_millis(3000),
    renew_deadline: Duration::from_millis(2000),
    retry: Duration::from_millis(200),
};

/// One fake API, and a client per replica, each with faults of its own.
async fn replicas() -> (Client, [(Client, Arc<Mutex<Vec<Fault>>>); 2]) {
    let api = ClientBuilder::new().build().await.unwrap();
    let client = || {
        let faults = Arc::new(Mutex::new(Vec::new()));
        (common::strict(api.clone(), faults.clone()), faults)
    };
    (api.clone(), [client(), client()])
}

fn holder(lease: &Lease) -> Option<String> {
    lease.spec.as_ref()?.holder_identity.clone()
}

#[tokio::test]
async fn a_holder_whose_renewals_hang_stops_before_the_other_starts() {
    let (api, [(a_client, a_faults), (b_client, _)]) = replicas().await;
    let a = Leadership::new(a_client, NS, "timedeal-operator", "a", FAST);
    let b = Leadership::new(b_client, NS, "timedeal-operator", "b", FAST);
    assert!(a.try_acquire().await);
    assert!(!b.try_acquire().await, "held by a");

    let a_stopped: Arc<Mutex<Option<Instant>>> = Arc::default();
    let stopped = a_stopped.clone();
    let holding = tokio::spawn(async move {
        a.hold().await;
        *stopped.lock().unwrap() = Some(Instant::now());
    });
    // a renews for a while; b keeps trying and never gets it.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert!(!b.try_acquire().await);
    // Then every write of a hangs (an API server that stops answering it).
    a_faults
        .lock()
        .unwrap()
        .push(Fault::Hang { path: "/leases/" });
    let hung_at = Instant::now();
    b.acquire().await;
    let b_started = Instant::now();
    let a_stopped_at = a_stopped
        .lock()
        .unwrap()
        .expect("a stopped leading before b acquired");
    assert!(a_stopped_at < b_started, "never two leaders");
    assert!(
        a_stopped_at.duration_since(hung_at) <= FAST.renew_deadline + FAST.retry * 2,
        "a gave up by its renew deadline, not when its call returned"
    );
    holding.await.unwrap();
    let lease = Api::<Lease>::namespaced(api, NS)
        .get("timedeal-operator")
        .await
        .unwrap();
    assert_eq!(holder(&lease).as_deref(), Some("b"));
    assert_eq!(lease.spec.unwrap().lease_transitions, Some(1));
}

#[tokio::test]
async fn a_replica_that_loses_the_lease_stops_and_an_expired_lease_is_taken() {
    let (api, [(a_client, _), (b_client, _)]) = replicas().await;
    let a = Leadership::new(a_client, NS, "timedeal-operator", "a", FAST);
    let b = Leadership::new(b_client, NS, "timedeal-operator", "b", FAST);
    assert!(
        a.try_acquire().await,
        "the first replica takes the free Lease"
    );
    assert!(!b.try_acquire().await, "the second waits while it is held");
    assert!(a.try_acquire().await, "the holder renews");
    let holding = tokio::spawn(async move { a.hold().await });
    tokio::time::sleep(FAST.lease + Duration::from_secs(1)).await;
    assert!(!b.try_acquire().await, "renewed, so never expired");
    assert!(!holding.is_finished());

    // Someone else takes the Lease (as after a network partition): `a` notices and stops.
    let leases: Api<Lease> = Api::namespaced(api, NS);
    leases
        .patch(
            "timedeal-operator",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"holderIdentity": "c"}})),
        )
        .await
        .unwrap();
    tokio::time::timeout(FAST.lease, holding)
        .await
        .expect("the replica that lost the Lease stops holding")
        .unwrap();

    // `c` never renews; once its record has stood for the Lease's duration, the standby takes it.
    tokio::time::timeout(FAST.lease * 3, b.acquire())
        .await
        .expect("the standby takes the expired Lease");
    let lease = leases.get("timedeal-operator").await.unwrap();
    assert_eq!(holder(&lease).as_deref(), Some("b"));
}

#[tokio::test]
async fn a_holder_that_steps_down_hands_over_at_once() {
    let (_, [(a_client, _), (b_client, _)]) = replicas().await;
    let a = Leadership::new(a_client, NS, "timedeal-operator", "a", FAST);
    let b = Leadership::new(b_client, NS, "timedeal-operator", "b", FAST);
    assert!(a.try_acquire().await);
    assert!(!b.try_acquire().await);
    a.step_down().await;
    let started = Instant::now();
    assert!(
        b.try_acquire().await,
        "free at once, not after the Lease's duration"
    );
    assert!(started.elapsed() < FAST.lease);
    // a's next renewal finds b there and stops.
    let held = tokio::time::timeout(FAST.lease, a.hold()).await;
    assert!(held.is_ok(), "a knows it lost");
}

#[tokio::test]
async fn two_contenders_for_a_free_lease_never_both_win() {
    let (_, [(a_client, _), (b_client, _)]) = replicas().await;
    let a = Leadership::new(a_client, NS, "timedeal-operator", "a", FAST);
    let b = Leadership::new(b_client, NS, "timedeal-operator", "b", FAST);
    for _ in 0..20 {
        let (won_a, won_b) = tokio::join!(a.try_acquire(), b.try_acquire());
        assert!(!(won_a && won_b), "both took the Lease");
        if won_a {
            a.step_down().await;
        }
        if won_b {
            b.step_down().await;
        }
    }
}
