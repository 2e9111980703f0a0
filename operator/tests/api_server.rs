//! What a real API server does that an in-memory one need not: watches whose first listing
//! arrives after the controllers start, immutable fields, and empty lists and maps it drops.

mod common;

use std::time::Duration;

use common::{company, harness::*};
use k8s_openapi::api::{
    apps::v1::StatefulSet, core::v1::Namespace, policy::v1::PodDisruptionBudget,
};
use kube::{
    api::{Patch, PatchParams},
    runtime::controller::Action,
    Api, ResourceExt,
};

/// An operator taking over mid-sale (a `helm upgrade`, a new leader) decides nothing until
/// every store it reads has been listed: an empty Company store would read as "not approved"
/// and suspend the sale, an empty ConfigMap store would reset the delivery revision.
#[tokio::test]
async fn an_operator_taking_over_mid_sale_waits_for_its_caches() {
    let mut h = Harness::running_at(10, 4).await;
    h.reconcile().await.unwrap();
    h.take_writes();
    let pushed = h.pushes.lock().unwrap().taken.len();
    let floor = h.floor().await;

    h.take_over();
    for _ in 0..3 {
        let action = h.reconcile_cached().await.unwrap();
        assert_eq!(action, Action::requeue(Duration::from_secs(1)));
    }
    assert_eq!(h.take_writes(), Vec::<String>::new(), "nothing written");
    assert_eq!(
        h.pushes.lock().unwrap().taken.len(),
        pushed,
        "nothing pushed"
    );

    // The listings arrive: the sale goes on as it was.
    h.fill().await;
    h.reconcile_cached().await.unwrap();
    let suspended: Vec<_> = h.pushes.lock().unwrap().taken[pushed..]
        .iter()
        .filter(|(_, _, suspended)| *suspended)
        .cloned()
        .collect();
    assert!(suspended.is_empty(), "{suspended:?}");
    assert_eq!(h.floor().await, floor);
    assert_eq!(phase(&h.deal().await), timedeal_api::Phase::Live);
    Api::<PodDisruptionBudget>::namespaced(h.client.clone(), NS)
        .get("winter-headphones-storefront")
        .await
        .expect("the storefront's disruption budget stays");
}

/// The Company controller too: before its store is listed it cannot see that an older Company
/// already holds the namespace, so it waits rather than hand the namespace to a newer one.
#[tokio::test]
async fn a_company_waits_for_the_company_store_before_taking_a_namespace() {
    let mut h = Harness::with_companies(sample(), vec![company("acme", "shared", true)]).await;
    // The API server stamps creation to the second: the rival comes a second later.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    Api::<timedeal_api::Company>::all(h.client.clone())
        .create(&Default::default(), &company("rival", "shared", true))
        .await
        .unwrap();
    h.take_over();
    let action = h.reconcile_company_cached("rival").await.unwrap();
    assert_eq!(action, Action::requeue(Duration::from_secs(1)));
    let namespaces: Api<Namespace> = Api::all(h.client.clone());
    assert!(namespaces.get_opt("shared").await.unwrap().is_none());

    h.fill().await;
    h.reconcile_company_cached("rival").await.unwrap();
    let rival = Api::<timedeal_api::Company>::all(h.client.clone())
        .get("rival")
        .await
        .unwrap();
    let ready = rival
        .status
        .and_then(|s| s.conditions.into_iter().find(|c| c.type_ == "Ready"))
        .unwrap();
    assert_eq!(ready.reason, "NamespaceInUse");
    assert!(namespaces
        .get_opt("shared")
        .await
        .unwrap()
        .is_none_or(|ns| !ns.labels().contains_key("timedeal.dev/company")
            || ns.labels()["timedeal.dev/company"] != "rival"));
}

/// A minute of steady state (a reconcile every 15 s) writes nothing and records no Event, with
/// the API server dropping empty lists as it does: `egress: []` is read back as absent.
#[tokio::test]
async fn a_minute_of_steady_state_writes_nothing() {
    let h = Harness::running_at(10, 4).await;
    h.reconcile().await.unwrap();
    h.take_writes();
    let events = h.events().await.len();
    for step in 1..=4 {
        h.clock.set(h.at(10) + chrono::Duration::seconds(15 * step));
        h.reconcile().await.unwrap();
    }
    assert_eq!(h.take_writes(), Vec::<String>::new());
    assert_eq!(h.events().await.len(), events);
}

/// The fake refuses what the API server refuses: a change to a StatefulSet's claim templates.
#[tokio::test]
async fn the_api_refuses_a_change_to_an_immutable_field() {
    let h = Harness::running_at(10, 4).await;
    let redis: Api<StatefulSet> = Api::namespaced(h.client.clone(), NS);
    let refused = redis
        .patch(
            "winter-headphones-redis",
            &PatchParams::apply("someone-else").force(),
            &Patch::Apply(serde_json::json!({
                "apiVersion": "apps/v1", "kind": "StatefulSet",
                "metadata": {"name": "winter-headphones-redis"},
                "spec": {"volumeClaimTemplates": [{"metadata": {"name": "data"},
                    "spec": {"resources": {"requests": {"storage": "5Gi"}}}}]}
            })),
        )
        .await
        .unwrap_err();
    let kube::Error::Api(status) = refused else {
        panic!("{refused}")
    };
    assert_eq!(status.code, 422, "{}", status.message);
    assert!(status.message.contains("volumeClaimTemplates"));
}

/// The chart's default Redis volume changes while deals run: each running deal keeps the claims
/// its StatefulSet was made with, rather than being refused (422) on every reconcile and never
/// changing Redis again.
#[tokio::test]
async fn a_new_default_redis_volume_leaves_running_deals_reconciled() {
    let mut h = Harness::running_at(10, 4).await;
    let mut settings = h.ctx.config.settings.clone();
    settings.redis_storage = timedeal_operator::resources::redis::StorageDefaults {
        size: "5Gi".into(),
        class_name: Some("fast-ssd".into()),
    };
    h.with_settings(settings);
    h.reconcile().await.unwrap();
    h.reconcile().await.unwrap();
    let deal = h.deal().await;
    let reconciled = condition(&deal, "Reconciled");
    assert_eq!(reconciled.status, "True", "{}", reconciled.message);
    let redis = Api::<StatefulSet>::namespaced(h.client.clone(), NS)
        .get("winter-headphones-redis")
        .await
        .unwrap();
    let claim = &redis.spec.unwrap().volume_claim_templates.unwrap()[0];
    let spec = claim.spec.as_ref().unwrap();
    assert_eq!(
        spec.resources.as_ref().unwrap().requests.as_ref().unwrap()["storage"].0,
        "1Gi"
    );
    assert_eq!(spec.storage_class_name, None);
}
