//! What production does to a deal, against the strict in-memory API: quantities the API server
//! rewrites, children it refuses, calls it never answers, pods that cannot start or all go, an
//! operator upgrade mid-sale, secrets regenerated or rotated, approval taken back, drains.

mod common;

use common::harness::*;
use k8s_openapi::api::core::v1::Pod;

fn annotation(template: &Option<kube::api::ObjectMeta>, key: &str) -> String {
    template.as_ref().unwrap().annotations.as_ref().unwrap()[key].clone()
}

async fn storefront(h: &Harness) -> Deployment {
    Api::<Deployment>::namespaced(h.client.clone(), NS)
        .get("winter-headphones-storefront")
        .await
        .unwrap()
}

async fn redis(h: &Harness) -> StatefulSet {
    Api::<StatefulSet>::namespaced(h.client.clone(), NS)
        .get("winter-headphones-redis")
        .await
        .unwrap()
}

fn image(deployment: &Deployment) -> String {
    deployment
        .spec
        .clone()
        .unwrap()
        .template
        .spec
        .unwrap()
        .containers[0]
        .image
        .clone()
        .unwrap()
}

async fn pdb(h: &Harness, name: &str) -> Option<PodDisruptionBudget> {
    Api::<PodDisruptionBudget>::namespaced(h.client.clone(), NS)
        .get_opt(name)
        .await
        .unwrap()
}

fn reasons(events: &[(String, String, String)], reason: &str) -> Vec<String> {
    events
        .iter()
        .filter(|(_, r, _)| r == reason)
        .map(|(_, _, note)| note.clone())
        .collect()
}

#[tokio::test]
async fn canonicalised_quantities_leave_a_no_op_reconcile_a_no_op() {
    let mut td = sample();
    let resources = td.spec.capacity.app_resources.as_mut().unwrap();
    resources.requests.as_mut().unwrap().cpu = Some("1.5".into());
    resources.limits.as_mut().unwrap().memory = Some("0.5Gi".into());
    // Within the company's quota at these requests.
    td.spec.capacity.max_replicas = 10;
    let h = Harness::new(td).await;
    h.settle().await;
    h.storefront_ready(2).await;
    h.reconcile().await.unwrap();
    let live = storefront(&h).await;
    let container = &live.spec.unwrap().template.spec.unwrap().containers[0];
    let resources = container.resources.as_ref().unwrap();
    assert_eq!(resources.requests.as_ref().unwrap()["cpu"].0, "1500m");
    assert_eq!(resources.limits.as_ref().unwrap()["memory"].0, "512Mi");
    h.take_writes();
    for _ in 0..3 {
        h.reconcile().await.unwrap();
    }
    assert_eq!(h.take_writes(), Vec::<String>::new());
    assert!(reasons(&h.events().await, "ChildrenUpdated").is_empty());
}

#[tokio::test]
async fn a_refused_child_is_named_and_the_others_still_apply_the_hpa_first() {
    let h = Harness::new(sample()).await;
    h.clock.set(h.at(-10)); // warming up: the floor must rise whatever else fails
    h.faults.lock().unwrap().push(Fault::Refuse {
        path: "/ingresses/",
        code: 422,
        reason: "Invalid",
        message: "Ingress.networking.k8s.io \"winter-headphones-storefront\" is invalid: \
                  spec.ingressClassName: Invalid value: \"nginx\": not found",
    });
    h.reconcile().await.unwrap(); // the finalizer
    let error = h.reconcile().await.unwrap_err();
    assert!(error.to_string().contains("Ingress"), "{error}");
    assert_eq!(h.floor().await, 6, "the HPA went first");
    assert!(Api::<Deployment>::namespaced(h.client.clone(), NS)
        .get_opt("winter-headphones-storefront")
        .await
        .unwrap()
        .is_some());
    let td = h.deal().await;
    let reconciled = condition(&td, "Reconciled");
    assert_eq!(
        (reconciled.status.as_str(), reconciled.reason.as_str()),
        ("False", "ApplyFailed")
    );
    for part in [
        "Ingress acme-audio/winter-headphones-storefront",
        "Invalid (422)",
        "ingressClassName",
    ] {
        assert!(
            reconciled.message.contains(part),
            "{part}: {}",
            reconciled.message
        );
    }
    assert_eq!(condition(&td, "Degraded").reason, "ApplyFailed");
    let events = h.events().await;
    assert!(
        events
            .iter()
            .any(|(t, r, _)| t == "Warning" && r == "ApplyFailed"),
        "{events:?}"
    );

    // Fixed (the class installed): applied, and said so.
    h.faults.lock().unwrap().clear();
    h.reconcile().await.unwrap();
    let td = h.deal().await;
    assert_eq!(condition(&td, "Reconciled").status, "True");
    assert_eq!(condition(&td, "Degraded").status, "False");
}

#[tokio::test]
async fn a_call_the_api_server_never_answers_is_given_up_on_and_said() {
    let h = Harness::new(sample()).await;
    h.reconcile().await.unwrap();
    h.faults.lock().unwrap().push(Fault::Hang {
        path: "/horizontalpodautoscalers/",
    });
    let started = std::time::Instant::now();
    let result = tokio::time::timeout(Duration::from_secs(30), h.reconcile())
        .await
        .expect("reconcile gives up on the hung call");
    assert!(result.is_err());
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "{:?}",
        started.elapsed()
    );
    let td = h.deal().await;
    let reconciled = condition(&td, "Reconciled");
    assert!(
        reconciled.message.contains("HorizontalPodAutoscaler")
            && reconciled.message.contains("did not answer within 2s"),
        "{}",
        reconciled.message
    );
    // Everything after the hung child was still applied.
    assert!(Api::<Ingress>::namespaced(h.client.clone(), NS)
        .get_opt("winter-headphones-storefront")
        .await
        .unwrap()
        .is_some());
}

#[tokio::test]
async fn pod_problems_surface_as_degraded_with_their_reason() {
    let h = Harness::new(sample()).await;
    h.settle().await;
    let pod: Pod = serde_json::from_value(json!({
        "metadata": {"name": "winter-headphones-storefront-7d9f-x2x", "namespace": NS,
            "labels": {"timedeal.dev/deal": NAME, "app.kubernetes.io/component": "storefront"}},
        "spec": {"containers": [{"name": "tenant-app", "image": "registry.example/tenant-app:1.0.0"}]},
        "status": {"containerStatuses": [{"name": "tenant-app", "image": "registry.example/tenant-app:1.0.0",
            "imageID": "", "ready": false, "restartCount": 0,
            "state": {"waiting": {"reason": "ImagePullBackOff",
                "message": "Back-off pulling image \"registry.example/tenant-app:1.0.0\""}}}]}
    }))
    .unwrap();
    Api::<Pod>::namespaced(h.client.clone(), NS)
        .create(&Default::default(), &pod)
        .await
        .unwrap();
    h.take_writes();
    let action = h.reconcile().await.unwrap();
    assert_eq!(
        action,
        Action::requeue(Duration::from_secs(15)),
        "looked at again soon"
    );
    let td = h.deal().await;
    assert_eq!(phase(&td), Phase::Provisioning);
    let degraded = condition(&td, "Degraded");
    assert_eq!(
        (degraded.status.as_str(), degraded.reason.as_str()),
        ("True", "ImagePullBackOff")
    );
    assert!(degraded
        .message
        .contains("winter-headphones-storefront-7d9f-x2x"));
    assert!(
        degraded.message.contains("spec.images"),
        "{}",
        degraded.message
    );
    assert_eq!(
        condition(&td, "Reconciled").status,
        "True",
        "every child applied"
    );
    let events = h.events().await;
    assert!(
        events
            .iter()
            .any(|(t, r, _)| t == "Warning" && r == "ImagePullBackOff"),
        "{events:?}"
    );
}

#[tokio::test]
async fn losing_every_replica_mid_sale_is_an_outage_not_provisioning() {
    let h = Harness::running_at(5, 6).await;
    assert_eq!(phase(&h.deal().await), Phase::Live);
    h.storefront_ready(0).await;
    h.reconcile().await.unwrap();
    let td = h.deal().await;
    assert_eq!(phase(&td), Phase::Live);
    assert_eq!(condition(&td, "Ready").status, "False");
    assert_eq!(condition(&td, "Ready").reason, "Unavailable");
    assert_eq!(condition(&td, "Progressing").status, "False");
    assert_eq!(condition(&td, "Degraded").reason, "NoReadyReplicas");
    h.storefront_ready(6).await;
    h.reconcile().await.unwrap();
    let td = h.deal().await;
    assert_eq!(condition(&td, "Ready").reason, "Live");
    assert_eq!(condition(&td, "Degraded").status, "False");
}

#[tokio::test]
async fn an_operator_upgrade_waits_for_the_end_of_the_sale() {
    let mut h = Harness::running_at(5, 6).await;
    let before = storefront(&h).await;
    assert_eq!(image(&before), "registry.example/tenant-app:1.0.0");
    let pinned = h.deal().await.status.unwrap().pinned.unwrap();
    assert_eq!(pinned.tenant_app, "registry.example/tenant-app:1.0.0");

    // `helm upgrade` of the operator: new default images.
    h.ctx = context(
        &h.client,
        &h.clock,
        &h.storefront_url,
        Settings::with_images(
            "registry.example/tenant-app:2.0.0",
            "registry.example/redis:7.4.0",
        ),
        h.cache.clone(),
    );
    h.take_writes();
    h.reconcile().await.unwrap();
    h.reconcile().await.unwrap();
    assert_eq!(
        storefront(&h).await,
        before,
        "no pod of the live deal restarts"
    );
    let writes = h.take_writes();
    assert!(
        writes
            .iter()
            .all(|w| w.starts_with("status") || w == "create Event"),
        "{writes:?}"
    );
    let status = h.deal().await.status.unwrap();
    assert_eq!(
        status.pinned.unwrap().tenant_app,
        "registry.example/tenant-app:1.0.0"
    );
    assert_eq!(
        status.pending_upgrade.unwrap().tenant_app,
        "registry.example/tenant-app:2.0.0"
    );
    let deferred = reasons(&h.events().await, "UpgradeDeferred");
    assert_eq!(deferred.len(), 1, "said once: {deferred:?}");
    assert!(
        deferred[0].contains("timedeal.dev/upgrade=now"),
        "{}",
        deferred[0]
    );

    // The sale over, the pods move.
    h.clock.set(h.at(61));
    h.reconcile().await.unwrap();
    assert_eq!(
        image(&storefront(&h).await),
        "registry.example/tenant-app:2.0.0"
    );
    let redis_image = redis(&h)
        .await
        .spec
        .unwrap()
        .template
        .spec
        .unwrap()
        .containers[0]
        .image
        .clone();
    assert_eq!(redis_image.as_deref(), Some("registry.example/redis:7.4.0"));
    let status = h.deal().await.status.unwrap();
    assert_eq!(status.pending_upgrade, None);
    let upgraded = reasons(&h.events().await, "Upgraded");
    assert_eq!(upgraded.len(), 1);
    assert!(upgraded[0].contains("tenant-app:2.0.0"), "{}", upgraded[0]);
}

#[tokio::test]
async fn the_admin_may_upgrade_a_live_deal_at_once() {
    let mut h = Harness::running_at(5, 6).await;
    h.ctx = context(
        &h.client,
        &h.clock,
        &h.storefront_url,
        Settings::with_images(
            "registry.example/tenant-app:2.0.0",
            "registry.example/redis:7.2.5",
        ),
        h.cache.clone(),
    );
    h.edit(json!({"metadata": {"annotations": {"timedeal.dev/upgrade": "now"}}}))
        .await;
    h.reconcile().await.unwrap();
    assert_eq!(
        image(&storefront(&h).await),
        "registry.example/tenant-app:2.0.0"
    );
    assert_eq!(reasons(&h.events().await, "Upgraded").len(), 1);
}

#[tokio::test]
async fn a_regenerated_or_rotated_secret_rolls_the_pods_that_read_it() {
    let h = Harness::new(sample()).await;
    h.settle().await;
    let checksum = "timedeal.dev/secrets-checksum";
    let storefront_before = annotation(
        &storefront(&h).await.spec.unwrap().template.metadata,
        checksum,
    );
    let redis_before = annotation(&redis(&h).await.spec.unwrap().template.metadata, checksum);

    // The platform PostgreSQL moves (another database): the deal is set up there, and its
    // storefronts roll onto the new URL.
    let moved = platform_database().await;
    Api::<Secret>::namespaced(h.client.clone(), "timedeal-system")
        .patch(
            "timedeal-postgres",
            &PatchParams::default(),
            &Patch::Merge(json!({"data": {"url": base64(&moved)}})),
        )
        .await
        .unwrap();
    h.reconcile().await.unwrap();
    let url = h.storefront_keys().await["postgres-url"].clone();
    let database = moved.rsplit('/').next().unwrap();
    assert!(url.ends_with(&format!("/{database}")), "{url}");
    let storefront_after = annotation(
        &storefront(&h).await.spec.unwrap().template.metadata,
        checksum,
    );
    assert_ne!(
        storefront_after, storefront_before,
        "the storefront rolls onto the new URL"
    );
    assert_eq!(
        annotation(&redis(&h).await.spec.unwrap().template.metadata, checksum),
        redis_before,
        "Redis does not read it"
    );

    // Someone deletes the Redis password: a new one is made, and both sides roll onto it.
    Api::<Secret>::namespaced(h.client.clone(), NS)
        .delete("winter-headphones-redis-auth", &Default::default())
        .await
        .unwrap();
    h.reconcile().await.unwrap();
    assert_ne!(
        annotation(&redis(&h).await.spec.unwrap().template.metadata, checksum),
        redis_before
    );
    assert_ne!(
        annotation(
            &storefront(&h).await.spec.unwrap().template.metadata,
            checksum
        ),
        storefront_after
    );
}

fn base64(text: &str) -> String {
    serde_json::to_value(ByteString(text.as_bytes().to_vec()))
        .unwrap()
        .as_str()
        .unwrap()
        .to_owned()
}

#[tokio::test]
async fn revoking_approval_of_a_running_deal_suspends_it() {
    let h = Harness::running_at(5, 6).await;
    h.edit(json!({"spec": {"approved": false}})).await;
    h.reconcile().await.unwrap();
    let td = h.deal().await;
    assert_eq!(phase(&td), Phase::Suspended);
    assert_eq!(condition(&td, "Ready").reason, "ApprovalRevoked");
    assert_eq!(h.floor().await, 2);
    assert!(h.deal_file().await.contains("suspend: true"));

    h.edit(json!({"spec": {"approved": true}})).await;
    h.reconcile().await.unwrap();
    assert_eq!(phase(&h.deal().await), Phase::Live);
    assert_eq!(h.floor().await, 6);
}

#[tokio::test]
async fn redis_may_not_be_evicted_while_the_deal_sells_and_its_claim_outlives_scaling_to_zero() {
    let h = Harness::running_at(5, 6).await;
    let budget = pdb(&h, "winter-headphones-redis")
        .await
        .unwrap()
        .spec
        .unwrap();
    assert_eq!(
        budget.max_unavailable,
        Some(k8s_openapi::apimachinery::pkg::util::intstr::IntOrString::Int(0))
    );
    let storefront_budget = pdb(&h, "winter-headphones-storefront").await.unwrap();
    assert!(storefront_budget.spec.unwrap().min_available.is_none());

    h.clock.set(h.at(61));
    h.reconcile().await.unwrap();
    assert!(
        pdb(&h, "winter-headphones-redis").await.is_none(),
        "drains go ahead after the sale"
    );
    assert!(pdb(&h, "winter-headphones-storefront").await.is_some());

    h.clock.set(h.at(60 + 7 * 24 * 60));
    h.reconcile().await.unwrap();
    assert!(pdb(&h, "winter-headphones-storefront").await.is_none());
    let spec = redis(&h).await.spec.unwrap();
    assert_eq!(spec.replicas, Some(0));
    let retention = spec.persistent_volume_claim_retention_policy.unwrap();
    assert_eq!(retention.when_scaled.as_deref(), Some("Retain"));
    assert_eq!(retention.when_deleted.as_deref(), Some("Delete"));
}

#[tokio::test]
async fn a_redis_deployment_of_an_older_release_is_replaced_by_the_stateful_set() {
    let h = Harness::new(sample()).await;
    let older: Deployment = serde_json::from_value(json!({
        "metadata": {"name": "winter-headphones-redis", "namespace": NS,
            "labels": {"timedeal.dev/deal": NAME, "app.kubernetes.io/managed-by": "timedeal-operator"}},
        "spec": {"replicas": 1,
            "selector": {"matchLabels": {"timedeal.dev/deal": NAME, "app.kubernetes.io/component": "redis"}},
            "template": {"metadata": {"labels": {"timedeal.dev/deal": NAME, "app.kubernetes.io/component": "redis"}},
                "spec": {"containers": [{"name": "redis", "image": "redis:7.2.5-alpine"}]}}}
    }))
    .unwrap();
    Api::<Deployment>::namespaced(h.client.clone(), NS)
        .create(&Default::default(), &older)
        .await
        .unwrap();
    h.settle().await;
    assert!(Api::<Deployment>::namespaced(h.client.clone(), NS)
        .get_opt("winter-headphones-redis")
        .await
        .unwrap()
        .is_none());
    assert_eq!(redis(&h).await.spec.unwrap().replicas, Some(1));
}

/// The PostgreSQL URL a deal's storefronts get.
async fn tenant_url(h: &Harness, namespace: &str, name: &str) -> String {
    let keys = Api::<Secret>::namespaced(h.client.clone(), namespace)
        .get(&format!("{name}-storefront-keys"))
        .await
        .unwrap()
        .data
        .unwrap();
    String::from_utf8(keys["postgres-url"].0.clone()).unwrap()
}

#[tokio::test]
async fn each_deals_credentials_reach_its_own_orders_and_nothing_else() {
    let h = Harness::with_companies(
        sample(),
        vec![
            common::company("acme", NS, true),
            common::company("rival", "rival-shop", true),
        ],
    )
    .await;
    h.settle().await;
    // A second company's deal in the same platform database.
    let mut rival = sample();
    rival.metadata.name = Some("rival-sale".into());
    rival.metadata.namespace = Some("rival-shop".into());
    rival.spec.ingress.host = "rival.deals.example.com".into();
    let rivals: Api<TimeDeal> = Api::namespaced(h.client.clone(), "rival-shop");
    rivals.create(&Default::default(), &rival).await.unwrap();
    for _ in 0..2 {
        let td = rivals.get("rival-sale").await.unwrap();
        reconcile::reconcile(Arc::new(DeserializeGuard(Ok(td))), h.ctx.clone())
            .await
            .unwrap();
    }
    let ours = tenant_url(&h, NS, NAME).await;
    let theirs = tenant_url(&h, "rival-shop", "rival-sale").await;
    assert!(!ours.contains("postgres@") && !theirs.contains("postgres@"));

    // Each storefront migrates and works in its own schema with nothing but its own role.
    let schema_of = |td: TimeDeal| td.status.unwrap().schema.unwrap();
    let own_schema = &schema_of(h.deal().await);
    let rival_schema = &schema_of(rivals.get("rival-sale").await.unwrap());
    assert_ne!(own_schema, rival_schema);
    timedeal_tenant_app::db::connect(&ours, own_schema)
        .await
        .unwrap();
    timedeal_tenant_app::db::connect(&theirs, rival_schema)
        .await
        .unwrap();

    let mut as_ours = <sqlx::PgConnection as sqlx::Connection>::connect(&ours)
        .await
        .unwrap();
    let own: i64 = sqlx::query_scalar(&format!("SELECT count(*) FROM {own_schema}.orders"))
        .fetch_one(&mut as_ours)
        .await
        .unwrap();
    assert_eq!(own, 0);
    for sql in [
        format!("SELECT count(*) FROM {rival_schema}.orders"),
        "CREATE SCHEMA elsewhere".to_owned(),
        "CREATE ROLE intruder".to_owned(),
    ] {
        let refused = sqlx::query(&sql).execute(&mut as_ours).await.unwrap_err();
        assert!(
            refused.to_string().contains("permission denied"),
            "{sql}: {refused}"
        );
    }

    // Deleted, the deal's role can no longer log in; its orders stay for the company.
    h.clock.set(h.at(90));
    h.reconcile_deletion().await;
    let refused = <sqlx::PgConnection as sqlx::Connection>::connect(&ours)
        .await
        .unwrap_err();
    assert!(
        refused.to_string().contains("not permitted to log in"),
        "{refused}"
    );
}

#[tokio::test]
async fn a_suspension_reaches_every_replica_at_once_and_is_reported_only_then() {
    let h = Harness::running_at(5, 3).await;
    h.storefront_pods(&["sf-a", "sf-b", "sf-c"]).await;
    h.reconcile().await.unwrap();
    h.pushes.lock().unwrap().taken.clear();

    // The replicas do not take the push yet (busy, or a network blip).
    h.pushes.lock().unwrap().refuse = true;
    h.edit(json!({"spec": {"suspend": true}})).await;
    let action = h.reconcile().await.unwrap();
    assert_eq!(
        action,
        Action::requeue(Duration::from_secs(1)),
        "pushed again soon"
    );
    let td = h.deal().await;
    assert_eq!(phase(&td), Phase::Live, "the storefronts still sell");
    let progressing = condition(&td, "Progressing");
    assert_eq!(
        (progressing.status.as_str(), progressing.reason.as_str()),
        ("True", "Delivering")
    );
    assert!(
        progressing.message.contains("0 of 3"),
        "{}",
        progressing.message
    );
    assert!(
        h.deal_file().await.contains("suspend: true"),
        "the file is written meanwhile"
    );

    // Each push that leaves replicas behind waits longer for the next (1 s, 2 s, 4 s, up to
    // 30 s), however often the deal is reconciled meanwhile.
    let refused = || h.pushes.lock().unwrap().refused;
    assert_eq!(refused(), 3, "one push to each replica");
    h.reconcile().await.unwrap();
    assert_eq!(refused(), 3, "not again within the second");
    let mut at = timedeal_api::clock::Clock::now(&*h.clock);
    for wait in [1, 2, 4] {
        at += chrono::Duration::seconds(wait);
        h.clock.set(at);
        let action = h.reconcile().await.unwrap();
        assert_eq!(
            action,
            Action::requeue(Duration::from_secs(wait as u64 * 2))
        );
    }
    assert_eq!(refused(), 3 * 4);

    // They take it: every replica is told within the reconcile, and only then is it Suspended.
    h.pushes.lock().unwrap().refuse = false;
    h.clock.set(at + chrono::Duration::seconds(8));
    h.reconcile().await.unwrap();
    let taken = std::mem::take(&mut h.pushes.lock().unwrap().taken);
    let mut pods: Vec<&str> = taken.iter().map(|(pod, _, _)| pod.as_str()).collect();
    pods.sort();
    assert_eq!(pods, ["sf-a", "sf-b", "sf-c"]);
    assert!(taken.iter().all(|(_, _, suspended)| *suspended));
    let revision = taken[0].1;
    assert!(h
        .deal_file()
        .await
        .contains(&format!("timedeal.dev/revision: '{revision}'")));
    let td = h.deal().await;
    assert_eq!(phase(&td), Phase::Suspended);
    assert_eq!(condition(&td, "Progressing").status, "False");

    // Delivered: a reconcile with nothing new pushes nothing.
    h.reconcile().await.unwrap();
    assert!(h.pushes.lock().unwrap().taken.is_empty());

    // Resuming goes the same way, with a higher revision.
    h.edit(json!({"spec": {"suspend": false}})).await;
    h.reconcile().await.unwrap();
    let taken = std::mem::take(&mut h.pushes.lock().unwrap().taken);
    assert_eq!(taken.len(), 3);
    assert!(taken
        .iter()
        .all(|(_, r, suspended)| *r > revision && !suspended));
    assert_eq!(phase(&h.deal().await), Phase::Live);
}

#[tokio::test]
async fn replicas_that_only_follow_their_file_do_not_hold_a_suspension_up() {
    let h = Harness::running_at(5, 2).await;
    h.storefront_pods(&["sf-old-a", "sf-old-b"]).await;
    h.pushes.lock().unwrap().file_only = true;
    h.edit(json!({"spec": {"suspend": true}})).await;
    let action = h.reconcile().await.unwrap();
    assert_ne!(
        action,
        Action::requeue(Duration::from_secs(1)),
        "not pushed again and again"
    );
    assert_eq!(phase(&h.deal().await), Phase::Suspended);
    assert!(
        h.deal_file().await.contains("suspend: true"),
        "they read it from there"
    );
}

#[tokio::test]
async fn a_live_deal_built_before_pinning_keeps_its_pods_through_an_upgrade() {
    let h = Harness::new(sample()).await;
    h.clock.set(h.at(5));
    // As a release before pinning left it: Live, no pins, Redis as a Deployment.
    h.deals
        .patch_status(
            NAME,
            &PatchParams::default(),
            &Patch::Merge(json!({"status": {"phase": "Live"}})),
        )
        .await
        .unwrap();
    let labels = |component: &str| {
        json!({"timedeal.dev/deal": NAME, "app.kubernetes.io/component": component,
            "app.kubernetes.io/managed-by": "timedeal-operator"})
    };
    for (suffix, image) in [
        ("storefront", "registry.example/tenant-app:0.9.0"),
        ("redis", "redis:7.2.4-alpine"),
    ] {
        let older: Deployment = serde_json::from_value(json!({
            "metadata": {"name": format!("{NAME}-{suffix}"), "namespace": NS, "labels": labels(suffix)},
            "spec": {"replicas": 1, "selector": {"matchLabels": labels(suffix)},
                "template": {"metadata": {"labels": labels(suffix)},
                    "spec": {"containers": [{"name": suffix, "image": image}]}}}
        }))
        .unwrap();
        Api::<Deployment>::namespaced(h.client.clone(), NS)
            .create(&Default::default(), &older)
            .await
            .unwrap();
    }
    h.storefront_ready(2).await;
    h.settle().await;
    let deployments = Api::<Deployment>::namespaced(h.client.clone(), NS);
    assert!(deployments
        .get_opt(&format!("{NAME}-redis"))
        .await
        .unwrap()
        .is_some());
    assert!(
        Api::<StatefulSet>::namespaced(h.client.clone(), NS)
            .get_opt(&format!("{NAME}-redis"))
            .await
            .unwrap()
            .is_none(),
        "Redis is not moved mid-sale"
    );
    assert_eq!(
        image(&storefront(&h).await),
        "registry.example/tenant-app:0.9.0"
    );
    let status = h.deal().await.status.unwrap();
    let pinned = status.pinned.unwrap();
    assert_eq!(
        (
            pinned.tenant_app.as_str(),
            pinned.redis.as_str(),
            pinned.template.as_str()
        ),
        (
            "registry.example/tenant-app:0.9.0",
            "redis:7.2.4-alpine",
            "1"
        )
    );
    assert!(status.pending_upgrade.is_some());
    assert_eq!(reasons(&h.events().await, "UpgradeDeferred").len(), 1);

    // The sale over, it moves: Redis to the StatefulSet, the storefront to the new image.
    h.clock.set(h.at(61));
    h.reconcile().await.unwrap();
    assert!(deployments
        .get_opt(&format!("{NAME}-redis"))
        .await
        .unwrap()
        .is_none());
    assert_eq!(redis(&h).await.spec.unwrap().replicas, Some(1));
    assert_eq!(
        image(&storefront(&h).await),
        "registry.example/tenant-app:1.0.0"
    );
}

#[tokio::test]
async fn taking_approval_back_from_a_deal_built_before_pinning_suspends_it_too() {
    let h = Harness::running_at(5, 6).await;
    // As a release before pinning left it: no pins in the status.
    h.deals
        .patch_status(
            NAME,
            &PatchParams::default(),
            &Patch::Merge(json!({"status": {"pinned": null}})),
        )
        .await
        .unwrap();
    h.edit(json!({"spec": {"approved": false}})).await;
    h.reconcile().await.unwrap();
    let td = h.deal().await;
    assert_eq!(phase(&td), Phase::Suspended);
    assert_eq!(condition(&td, "Ready").reason, "ApprovalRevoked");
}

#[tokio::test]
async fn deals_whose_names_collide_never_share_a_schema_or_a_role() {
    // `acme-audio`/`winter-headphones` and `acme`/`audio-winter-headphones` were both
    // `td_acme_audio_winter_headphones`.
    let legacy = timedeal_api::storage::schema_name(NS, NAME);
    assert_eq!(
        legacy,
        timedeal_api::storage::schema_name("acme", "audio-winter-headphones")
    );
    let h = Harness::with_companies(
        sample(),
        vec![
            common::company("acme-audio", NS, true),
            common::company("acme", "acme", true),
        ],
    )
    .await;
    h.settle().await;
    let mut rival = sample();
    rival.metadata.name = Some("audio-winter-headphones".into());
    rival.metadata.namespace = Some("acme".into());
    rival.spec.ingress.host = "rival.deals.example.com".into();
    let rivals: Api<TimeDeal> = Api::namespaced(h.client.clone(), "acme");
    rivals.create(&Default::default(), &rival).await.unwrap();
    let reconcile_rival = || async {
        let td = rivals.get("audio-winter-headphones").await.unwrap();
        reconcile::reconcile(Arc::new(DeserializeGuard(Ok(td))), h.ctx.clone()).await
    };
    for _ in 0..2 {
        reconcile_rival().await.unwrap();
    }
    let own = h.deal().await.status.unwrap().schema.unwrap();
    let theirs = rivals
        .get("audio-winter-headphones")
        .await
        .unwrap()
        .status
        .unwrap()
        .schema
        .unwrap();
    assert_ne!(own, theirs);
    assert_ne!(
        tenant_url(&h, NS, NAME).await,
        tenant_url(&h, "acme", "audio-winter-headphones").await
    );

    // A deal set up by an older release keeps its name, and the registry gives it to one deal
    // only: the other is refused, and says whose it is, rather than resetting its password.
    let mut db = <sqlx::PgConnection as sqlx::Connection>::connect(&h.platform)
        .await
        .unwrap();
    let own_uid = h.deal().await.metadata.uid.unwrap();
    sqlx::query(
        "INSERT INTO timedeal_platform.deal_schemas (schema, uid, namespace, name) \
         VALUES ($1, $2, $3, $4)",
    )
    .bind(&legacy)
    .bind(&own_uid)
    .bind(NS)
    .bind(NAME)
    .execute(&mut db)
    .await
    .unwrap();
    rivals
        .patch_status(
            "audio-winter-headphones",
            &Default::default(),
            &Patch::Merge(json!({"status": {"schema": null, "observedGeneration": 1}})),
        )
        .await
        .unwrap();
    let refused = reconcile_rival().await.unwrap_err().to_string();
    assert!(
        refused.contains(&legacy) && refused.contains(&format!("{NS}/{NAME}")),
        "{refused}"
    );
    assert!(
        tenant_url(&h, "acme", "audio-winter-headphones")
            .await
            .contains(&format!("//{theirs}:")),
        "its storefronts keep their own role, never the taken one"
    );
}

#[tokio::test]
async fn the_trial_platform_user_is_no_superuser_and_still_sets_up_serves_and_retires_deals() {
    use timedeal_operator::database::{tenant_url, Database, Owner};
    let h = Harness::new(sample()).await;
    // The chart's trial PostgreSQL makes its platform and portal users with this, as the
    // superuser: run by psql itself, as the chart's init script runs it.
    let (server, _) = h.platform.rsplit_once('/').unwrap();
    let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../charts/timedeal-operator/files/platform-user.psql");
    let ran = std::process::Command::new(timedeal_testkit::PostgresServer::psql().unwrap())
        .args(["-v", "ON_ERROR_STOP=1", "-d", &format!("{server}/postgres")])
        .args([
            "-v",
            "password=trial-password",
            "-v",
            "portal_role=timedeal_portal",
        ])
        .args(["-v", "portal_password=portal-password", "-f"])
        .arg(&script)
        .output()
        .unwrap();
    assert!(
        ran.status.success(),
        "{}",
        String::from_utf8_lossy(&ran.stderr)
    );
    let platform = server.replacen("//postgres@", "//timedeal:trial-password@", 1) + "/timedeal";
    let mut as_platform = <sqlx::PgConnection as sqlx::Connection>::connect(&platform)
        .await
        .unwrap();
    let superuser: bool =
        sqlx::query_scalar("SELECT rolsuper FROM pg_roles WHERE rolname = current_user")
            .fetch_one(&mut as_platform)
            .await
            .unwrap();
    assert!(!superuser);

    // Everything the operator does with it works without one, and it grants the portal's user
    // (made by the same script) its rights.
    let database = Database::new();
    database
        .prepare_platform(&platform, "timedeal_portal")
        .await
        .unwrap();
    let portal =
        server.replacen("//postgres@", "//timedeal_portal:portal-password@", 1) + "/timedeal";
    let mut as_portal = <sqlx::PgConnection as sqlx::Connection>::connect(&portal)
        .await
        .unwrap();
    let portal_may: (bool, String, bool, bool) = sqlx::query_as(
        "SELECT has_database_privilege('timedeal', 'CREATE'), \
         pg_get_userbyid(nspowner)::text, \
         has_column_privilege('timedeal_platform.deal_schemas', 'password', 'SELECT'), \
         has_column_privilege('timedeal_platform.deal_schemas', 'namespace', 'SELECT') \
         FROM pg_namespace WHERE nspname = 'timedeal_portal'",
    )
    .fetch_one(&mut as_portal)
    .await
    .unwrap();
    assert_eq!(
        portal_may,
        (false, "timedeal_portal".to_owned(), true, false),
        "it owns its schema, may make no other, and reads each deal's login alone"
    );
    // Never granted to the platform's own user, a superuser, PUBLIC or a deal's role.
    for wrong in ["timedeal", "postgres", "public", "td_0123"] {
        let refused = database.prepare_platform(&platform, wrong).await;
        assert!(refused.is_err(), "{wrong} was granted");
    }
    let schema =
        timedeal_api::storage::schema_for_uid("7d3c52e1-0b4e-4f0e-9a55-3c1f2a7e9d10").unwrap();
    let owner = Owner {
        uid: "7d3c52e1-0b4e-4f0e-9a55-3c1f2a7e9d10",
        namespace: NS,
        name: NAME,
    };
    database
        .ensure_tenant(&platform, &schema, "deal-password", owner)
        .await
        .unwrap();
    let deal_url = tenant_url(&platform, &schema, "deal-password").unwrap();
    timedeal_tenant_app::db::connect(&deal_url, &schema)
        .await
        .unwrap();
    database
        .ensure_tenant(&platform, &schema, "rotated-password", owner)
        .await
        .unwrap();
    database
        .erase_personal_data(&platform, &schema, owner.uid)
        .await
        .unwrap();
    let erased: i64 = sqlx::query_scalar(&format!(
        "SELECT count(*) FROM \"{schema}\".personal_data_deleted"
    ))
    .fetch_one(&mut as_platform)
    .await
    .unwrap();
    assert_eq!(erased, 1);
    database
        .retire_tenant(&platform, &schema, owner.uid)
        .await
        .unwrap();
}
