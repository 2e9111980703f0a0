//! Reconcile through a deal's life: approval, children, the clock from warm-up to retention,
//! suspension, figures, deletion. The harness is in `common/harness.rs`.

mod common;

use common::harness::*;

#[tokio::test]
async fn an_unapproved_deal_gets_no_children_and_waits_for_approval() {
    let h = Harness::new(unapproved()).await;
    assert_eq!(h.settle().await, Action::await_change());
    let td = h.deal().await;
    assert_eq!(phase(&td), Phase::PendingApproval);
    assert_eq!(condition(&td, "Ready").status, "False");
    assert_eq!(condition(&td, "Ready").reason, "PendingApproval");
    assert!(names::<Deployment>(&h.client).await.is_empty());
    assert!(names::<Service>(&h.client).await.is_empty());
    assert!(names::<ConfigMap>(&h.client).await.is_empty());
    assert!(names::<Ingress>(&h.client).await.is_empty());
    assert!(h.hpa().await.is_none());
    let secrets: Vec<String> = names::<Secret>(&h.client).await;
    assert!(secrets.is_empty(), "{secrets:?}");

    // Approval is a patch away, and builds everything.
    h.edit(json!({"spec": {"approved": true}})).await;
    h.reconcile().await.unwrap();
    assert_eq!(phase(&h.deal().await), Phase::Provisioning);
    assert_eq!(names::<Deployment>(&h.client).await.len(), 1);
    assert_eq!(names::<StatefulSet>(&h.client).await.len(), 1);
}

#[tokio::test]
async fn an_approved_deal_gets_every_child_owned_labelled_and_wired() {
    let h = Harness::new(sample()).await;
    h.settle().await;
    let td = h.deal().await;
    let uid = td.uid().unwrap();
    assert!(td.finalizers().contains(&FINALIZER.to_owned()));
    assert_eq!(phase(&td), Phase::Provisioning);
    assert_eq!(condition(&td, "Progressing").status, "True");
    assert_eq!(
        td.status.as_ref().unwrap().url.as_deref(),
        Some("https://headphones.deals.example.com/")
    );

    let mut all: Vec<(String, kube::api::ObjectMeta)> = Vec::new();
    macro_rules! collect {
        ($($kind:ty),*) => {$(
            for o in Api::<$kind>::namespaced(h.client.clone(), NS).list(&ListParams::default()).await.unwrap().items {
                all.push((format!("{} {}", <$kind>::kind(&()), o.name_any()), o.metadata));
            }
        )*};
    }
    collect!(
        Secret,
        ConfigMap,
        Deployment,
        StatefulSet,
        Service,
        HorizontalPodAutoscaler,
        Ingress,
        PodDisruptionBudget,
        NetworkPolicy
    );
    let mut kinds: Vec<&str> = all.iter().map(|(k, _)| k.as_str()).collect();
    kinds.sort();
    assert_eq!(
        kinds,
        [
            "ConfigMap winter-headphones-deal",
            "Deployment winter-headphones-storefront",
            "HorizontalPodAutoscaler winter-headphones-storefront",
            "Ingress winter-headphones-storefront",
            "NetworkPolicy winter-headphones-redis",
            "NetworkPolicy winter-headphones-storefront",
            "PodDisruptionBudget winter-headphones-storefront",
            "Secret winter-headphones-redis-auth",
            "Secret winter-headphones-storefront-keys",
            "Service winter-headphones-redis",
            "Service winter-headphones-storefront",
            "StatefulSet winter-headphones-redis",
        ]
    );
    for (what, meta) in &all {
        let owner = &meta.owner_references.as_ref().unwrap()[0];
        assert_eq!(owner.uid, uid, "{what}");
        assert_eq!(owner.kind, "TimeDeal", "{what}");
        assert_eq!(owner.controller, Some(true), "{what}");
        let labels = meta.labels.as_ref().unwrap();
        assert_eq!(labels["timedeal.dev/deal"], NAME, "{what}");
        assert_eq!(
            labels["app.kubernetes.io/managed-by"], "timedeal-operator",
            "{what}"
        );
        assert_eq!(labels["app.kubernetes.io/instance"], NAME, "{what}");
    }

    // The storefront: image from the flags, env, resources, probes, non-root.
    let storefront = Api::<Deployment>::namespaced(h.client.clone(), NS)
        .get("winter-headphones-storefront")
        .await
        .unwrap();
    let pod = storefront.spec.unwrap().template.spec.unwrap();
    let app = &pod.containers[0];
    assert_eq!(
        app.image.as_deref(),
        Some("registry.example/tenant-app:1.0.0")
    );
    let env: Vec<&str> = app
        .env
        .as_ref()
        .unwrap()
        .iter()
        .map(|e| e.name.as_str())
        .collect();
    for name in [
        "TIMEDEAL_SIGNING_SECRET",
        "TIMEDEAL_POSTGRES_URL",
        "TIMEDEAL_REDIS_URL",
    ] {
        assert!(env.contains(&name), "{name} missing from {env:?}");
    }
    let schema = app
        .env
        .as_ref()
        .unwrap()
        .iter()
        .find(|e| e.name == "TIMEDEAL_POSTGRES_SCHEMA");
    // Each deal gets a schema no other deal can have: from its UID, recorded in its status.
    let td = h.deal().await;
    let own = timedeal_api::storage::schema_for_uid(td.metadata.uid.as_deref().unwrap()).unwrap();
    assert_eq!(schema.and_then(|e| e.value.as_deref()), Some(own.as_str()));
    assert_eq!(td.status.unwrap().schema.as_deref(), Some(own.as_str()));
    assert!(app.readiness_probe.is_some() && app.liveness_probe.is_some());
    let resources = app.resources.as_ref().unwrap();
    assert_eq!(resources.requests.as_ref().unwrap()["cpu"].0, "500m");
    assert_eq!(
        app.security_context.as_ref().unwrap().run_as_non_root,
        Some(true)
    );

    // Secrets were generated; the PostgreSQL URL is the platform's server and database with the
    // deal's own role.
    let secret = |name: &'static str| {
        let api = Api::<Secret>::namespaced(h.client.clone(), NS);
        async move { api.get(name).await.unwrap().data.unwrap() }
    };
    let redis = secret("winter-headphones-redis-auth").await;
    assert_eq!(redis["password"].0.len(), 32);
    let keys = secret("winter-headphones-storefront-keys").await;
    assert_eq!(keys["signing-secret"].0.len(), 48);
    let postgres_url = String::from_utf8(keys["postgres-url"].0.clone()).unwrap();
    let password = String::from_utf8(keys["postgres-password"].0.clone()).unwrap();
    assert_eq!(password.len(), 32);
    assert_eq!(
        postgres_url,
        h.platform
            .replace("postgres@", &format!("{own}:{password}@"))
    );
    let redis_url = String::from_utf8(keys["redis-url"].0.clone()).unwrap();
    assert!(redis_url.contains(std::str::from_utf8(&redis["password"].0).unwrap()));

    // The HPA starts at the minimum, two hours before the start.
    assert_eq!(h.floor().await, 2);
    assert_eq!(h.hpa().await.unwrap().spec.unwrap().max_replicas, 20);

    let events = h.events().await;
    assert!(
        events
            .iter()
            .any(|(t, reason, _)| t == "Normal" && reason == "Provisioning"),
        "{events:?}"
    );
}

#[tokio::test]
async fn a_second_reconcile_with_nothing_changed_writes_nothing() {
    let h = Harness::new(sample()).await;
    h.settle().await;
    h.storefront_ready(2).await;
    h.reconcile().await.unwrap(); // Scheduled, figures read
    assert_eq!(phase(&h.deal().await), Phase::Scheduled);
    let secrets_before = Api::<Secret>::namespaced(h.client.clone(), NS)
        .get("winter-headphones-storefront-keys")
        .await
        .unwrap()
        .data;
    h.take_writes();

    h.reads.lock().unwrap().clear();
    for _ in 0..3 {
        h.reconcile().await.unwrap();
    }
    assert_eq!(h.take_writes(), Vec::<String>::new());
    // Children come from the watch cache; only the Secrets, which the operator may not watch,
    // are read one by one (after the deal itself, as the watcher hands it over).
    let reads = std::mem::take(&mut *h.reads.lock().unwrap());
    assert_eq!(
        reads[..4],
        [
            "winter-headphones",
            "timedeal-postgres",
            "winter-headphones-redis-auth",
            "winter-headphones-storefront-keys"
        ]
    );
    assert_eq!(reads.len(), 12, "{reads:?}");

    // A hand edit of a child is put back; the generated secrets never rotate.
    let hpas = Api::<HorizontalPodAutoscaler>::namespaced(h.client.clone(), NS);
    hpas.patch(
        "winter-headphones-storefront",
        &PatchParams::default(),
        &Patch::Merge(json!({"spec": {"minReplicas": 1}})),
    )
    .await
    .unwrap();
    h.take_writes();
    h.reconcile().await.unwrap();
    assert_eq!(
        h.take_writes(),
        [
            "HorizontalPodAutoscaler winter-headphones-storefront",
            "create Event"
        ]
    );
    assert_eq!(h.floor().await, 2);
    let events = h.events().await;
    let (_, _, note) = events
        .iter()
        .find(|(_, r, _)| r == "ChildrenUpdated")
        .unwrap();
    assert!(
        note.contains("HorizontalPodAutoscaler acme-audio/winter-headphones-storefront"),
        "{note}"
    );
    let secrets_after = Api::<Secret>::namespaced(h.client.clone(), NS)
        .get("winter-headphones-storefront-keys")
        .await
        .unwrap()
        .data;
    assert_eq!(secrets_before, secrets_after);
}

#[tokio::test]
async fn a_spec_change_rewrites_only_the_child_it_affects() {
    let h = Harness::new(sample()).await;
    h.settle().await;
    h.storefront_ready(2).await;
    h.reconcile().await.unwrap();
    let generation = h.deal().await.metadata.generation;
    h.edit(json!({"spec": {"capacity": {"maxReplicas": 30}}}))
        .await;
    let edited = h.deal().await;
    assert_ne!(
        edited.metadata.generation, generation,
        "a spec edit bumps the generation"
    );

    h.reconcile().await.unwrap();
    let writes = h.take_writes();
    let children: Vec<&String> = writes
        .iter()
        .filter(|w| !w.starts_with("status") && !w.starts_with("create Event"))
        .collect();
    assert_eq!(
        children,
        ["HorizontalPodAutoscaler winter-headphones-storefront"]
    );
    assert!(writes.contains(&format!("status {NAME}")), "{writes:?}");
    assert_eq!(h.hpa().await.unwrap().spec.unwrap().max_replicas, 30);
    let td = h.deal().await;
    assert_eq!(
        td.status.as_ref().unwrap().observed_generation,
        edited.metadata.generation
    );
    assert_eq!(
        condition(&td, "Ready").observed_generation,
        edited.metadata.generation
    );
}

#[tokio::test]
async fn the_deal_follows_the_clock_from_warm_up_to_retention() {
    let h = Harness::new(sample()).await;
    h.settle().await;
    h.storefront_ready(2).await;

    // Two hours before: Scheduled at the minimum, next change at the warm-up (15 min before).
    h.reconcile().await.unwrap();
    let td = h.deal().await;
    assert_eq!(phase(&td), Phase::Scheduled);
    assert_eq!(h.floor().await, 2);
    let ready_since = condition(&td, "Ready").last_transition_time.clone();

    // Warm-up: the floor goes up to peakReplicas.
    h.clock.set(h.at(-15));
    h.reconcile().await.unwrap();
    assert_eq!(phase(&h.deal().await), Phase::WarmingUp);
    assert_eq!(h.floor().await, 6);
    assert_eq!(
        condition(&h.deal().await, "Ready").last_transition_time,
        ready_since,
        "Ready stayed True, so its transition time stays"
    );

    // Start: Live, the start recorded.
    *h.answer.lock().unwrap() = Answer::Figures(figures(120, "live"));
    h.clock.set(h.at(0));
    h.reconcile().await.unwrap();
    let td = h.deal().await;
    assert_eq!(phase(&td), Phase::Live);
    let status = td.status.clone().unwrap();
    assert_eq!(status.stock.as_ref().unwrap().sold, 120);
    assert_eq!(status.queue.as_ref().unwrap().waiting, 40);
    assert_eq!(status.revenue, Some(120 * 9900));
    assert!(status.started_at.is_some());
    assert_eq!(h.floor().await, 6);

    // Figures are read at most once per interval.
    *h.answer.lock().unwrap() = Answer::Figures(figures(130, "live"));
    h.clock.advance(chrono::Duration::seconds(5));
    h.reconcile().await.unwrap();
    assert_eq!(h.deal().await.status.unwrap().stock.unwrap().sold, 120);
    h.clock.advance(chrono::Duration::seconds(15));
    h.reconcile().await.unwrap();
    assert_eq!(h.deal().await.status.unwrap().stock.unwrap().sold, 130);

    // Sellout.
    *h.answer.lock().unwrap() = Answer::Figures(figures(1000, "sold_out"));
    h.clock.set(h.at(30));
    h.reconcile().await.unwrap();
    let td = h.deal().await;
    assert_eq!(phase(&td), Phase::SoldOut);
    assert!(td.status.unwrap().sold_out_at.is_some());

    // End: the floor drops back to the minimum.
    h.clock.set(h.at(60));
    h.reconcile().await.unwrap();
    let td = h.deal().await;
    assert_eq!(phase(&td), Phase::Ended);
    assert!(td.status.as_ref().unwrap().ended_at.is_some());
    assert_eq!(h.floor().await, 2);
    assert_eq!(condition(&td, "Ready").status, "True");

    // Retention (7 days) over: scaled to zero, the HPA gone, the Ready condition says why.
    h.clock.set(h.at(60 + 7 * 24 * 60));
    h.take_writes();
    let action = h.reconcile().await.unwrap();
    assert!(h.hpa().await.is_none());
    let storefront = Api::<Deployment>::namespaced(h.client.clone(), NS)
        .get("winter-headphones-storefront")
        .await
        .unwrap();
    assert_eq!(storefront.spec.unwrap().replicas, Some(0));
    let redis = Api::<StatefulSet>::namespaced(h.client.clone(), NS)
        .get("winter-headphones-redis")
        .await
        .unwrap();
    assert_eq!(
        redis.spec.unwrap().replicas,
        Some(0),
        "the claim stays with it"
    );
    let td = h.deal().await;
    assert_eq!(phase(&td), Phase::Ended);
    assert_eq!(condition(&td, "Ready").reason, "ScaledToZero");
    assert_eq!(action, Action::await_change(), "nothing left to wait for");
    assert_eq!(names::<Secret>(&h.client).await.len(), 2, "secrets stay");
    assert_eq!(names::<Service>(&h.client).await.len(), 2);

    let reasons: Vec<String> = h.events().await.into_iter().map(|e| e.1).collect();
    for reason in ["Scheduled", "WarmingUp", "Live", "SoldOut", "Ended"] {
        assert!(
            reasons.contains(&reason.to_owned()),
            "{reason} not in {reasons:?}"
        );
    }
}

#[tokio::test]
async fn reconcile_requeues_exactly_at_the_next_boundary() {
    let h = Harness::new(sample()).await;
    h.clock.set(h.at(-20));
    // Not ready yet: looked at again in 15 s, since pod changes trigger no reconcile.
    assert_eq!(h.settle().await, Action::requeue(Duration::from_secs(15)));
    h.storefront_ready(2).await;
    // Ready: the figures are read every 15 s until then.
    assert_eq!(
        h.reconcile().await.unwrap(),
        Action::requeue(Duration::from_secs(15))
    );
    // Ended, the figures are read every 5 minutes; two minutes before retention ends, the end
    // comes first.
    h.clock.set(h.at(60 * 24 * 7 + 58));
    assert_eq!(
        h.reconcile().await.unwrap(),
        Action::requeue(Duration::from_secs(2 * 60))
    );
}

#[tokio::test]
async fn suspend_lowers_the_floor_and_resume_restores_it() {
    let h = Harness::running_at(5, 6).await;
    assert_eq!(phase(&h.deal().await), Phase::Live);
    assert_eq!(h.floor().await, 6);

    h.edit(json!({"spec": {"suspend": true}})).await;
    h.reconcile().await.unwrap();
    let td = h.deal().await;
    assert_eq!(phase(&td), Phase::Suspended);
    assert_eq!(condition(&td, "Ready").reason, "Suspended");
    assert_eq!(h.floor().await, 2);
    // The storefront reads the suspension from its deal file.
    assert!(h.deal_file().await.contains("suspend: true"));
    // Its data stays.
    assert_eq!(names::<StatefulSet>(&h.client).await.len(), 1);

    h.edit(json!({"spec": {"suspend": false}})).await;
    h.reconcile().await.unwrap();
    assert_eq!(phase(&h.deal().await), Phase::Live);
    assert_eq!(h.floor().await, 6);
}

#[tokio::test]
async fn an_unreachable_storefront_degrades_the_deal_and_is_retried() {
    let h = Harness::new(sample()).await;
    h.clock.set(h.at(5));
    h.settle().await;
    h.storefront_ready(2).await;
    // A port nothing listens on.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let working = std::mem::replace(
        &mut *h.storefront_url.lock().unwrap(),
        format!("http://{}", closed.local_addr().unwrap()),
    );
    drop(closed);

    let action = h.reconcile().await.unwrap();
    assert_eq!(
        action,
        Action::requeue(Duration::from_secs(15)),
        "retried, not in a tight loop"
    );
    let td = h.deal().await;
    let degraded = condition(&td, "Degraded");
    assert_eq!(degraded.status, "True");
    assert_eq!(degraded.reason, "StorefrontUnreachable");
    assert!(
        degraded.message.contains("cannot connect"),
        "{}",
        degraded.message
    );
    assert_eq!(phase(&td), Phase::Live, "the deal still sells");
    let events = h.events().await;
    assert!(
        events
            .iter()
            .any(|(t, r, _)| t == "Warning" && r == "StorefrontUnreachable"),
        "{events:?}"
    );

    // Within the interval, nothing is retried and the condition does not flicker.
    h.take_writes();
    h.reconcile().await.unwrap();
    assert_eq!(h.take_writes(), Vec::<String>::new());

    // Back after the interval: Degraded clears.
    *h.storefront_url.lock().unwrap() = working;
    *h.answer.lock().unwrap() = Answer::Figures(figures(10, "live"));
    h.clock.advance(chrono::Duration::seconds(15));
    h.reconcile().await.unwrap();
    let td = h.deal().await;
    assert_eq!(condition(&td, "Degraded").status, "False");
    assert_eq!(td.status.unwrap().stock.unwrap().sold, 10);
    assert!(h.events().await.iter().any(|(_, r, _)| r == "Recovered"));

    // A storefront answering 503 is degraded too.
    *h.answer.lock().unwrap() = Answer::Unavailable;
    h.clock.advance(chrono::Duration::seconds(15));
    h.reconcile().await.unwrap();
    let td = h.deal().await;
    assert!(condition(&td, "Degraded").message.contains("503"));
}

#[tokio::test]
async fn deletion_records_the_final_figures_then_lets_go() {
    let h = Harness::running_at(30, 2).await;
    *h.answer.lock().unwrap() = Answer::Figures(figures(640, "live"));

    h.reconcile_deletion().await;

    let td = h.deal().await;
    assert_eq!(td.finalizers(), [OTHER_FINALIZER], "the finalizer lets go");
    let status = td.status.unwrap();
    assert_eq!(status.stock.unwrap().sold, 640);
    assert_eq!(status.revenue, Some(640 * 9900));
    let events = h.events().await;
    let last = events
        .iter()
        .find(|(_, r, _)| r == "FinalFigures")
        .unwrap_or_else(|| panic!("no FinalFigures event in {events:?}"));
    assert!(last.2.contains("640 sold"), "{}", last.2);
    // Kept in PostgreSQL too, where they outlive the Event.
    let kept = h
        .ctx
        .database
        .final_figures(&h.platform, &td.metadata.uid.clone().unwrap())
        .await
        .unwrap()
        .expect("the final figures are in PostgreSQL");
    assert_eq!(kept.name, NAME);
    assert_eq!(kept.figures["stock"]["sold"], 640);
    assert_eq!(kept.figures["revenue"], 640 * 9900);
}

#[tokio::test]
async fn deletion_does_not_wait_forever_for_a_silent_storefront() {
    let h = Harness::running_at(30, 2).await;
    // Accepts connections, never answers.
    let silent = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    *h.storefront_url.lock().unwrap() = format!("http://{}", silent.local_addr().unwrap());

    h.reconcile_deletion().await;
    assert!(!h.deal().await.finalizers().contains(&FINALIZER.to_owned()));
    let events = h.events().await;
    let warning = events
        .iter()
        .find(|(_, r, _)| r == "FinalFiguresUnavailable")
        .unwrap_or_else(|| panic!("{events:?}"));
    assert!(
        warning
            .2
            .contains("keeping the figures as they last changed"),
        "{}",
        warning.2
    );
    assert!(warning.2.contains("0 sold"), "{}", warning.2);
    drop(silent);
}

#[tokio::test]
async fn a_missing_postgres_secret_fails_the_deal_with_a_reason_and_backs_off() {
    let h = Harness::new(sample()).await;
    Api::<Secret>::namespaced(h.client.clone(), "timedeal-system")
        .delete("timedeal-postgres", &Default::default())
        .await
        .unwrap();
    h.reconcile().await.unwrap(); // finalizer
    let error = h.reconcile().await.unwrap_err();
    assert_eq!(error.kind(), "postgres_secret");
    let td = h.deal().await;
    assert_eq!(phase(&td), Phase::Failed);
    let degraded = condition(&td, "Degraded");
    assert_eq!(degraded.status, "True");
    assert_eq!(degraded.reason, "PostgresSecretMissing");
    assert!(
        degraded
            .message
            .contains("timedeal-system/timedeal-postgres"),
        "{}",
        degraded.message
    );
    assert!(
        names::<Deployment>(&h.client).await.is_empty(),
        "nothing half-built"
    );
    assert!(h
        .events()
        .await
        .iter()
        .any(|(t, r, _)| t == "Warning" && r == "PostgresSecretMissing"));
    let td = Arc::new(DeserializeGuard(Ok(td)));
    let first = reconcile::error_policy(td.clone(), &error, h.ctx.clone());
    let second = reconcile::error_policy(td, &error, h.ctx.clone());
    assert_eq!(first, Action::requeue(Duration::from_secs(5)));
    assert_eq!(second, Action::requeue(Duration::from_secs(10)));
    let metrics = h.ctx.metrics.encode();
    assert!(
        metrics.contains("timedeal_operator_reconcile_errors_total{kind=\"postgres_secret\"} 1"),
        "{metrics}"
    );
}

#[tokio::test]
async fn a_malformed_object_is_reported_and_does_not_stop_anything() {
    let h = Harness::new(sample()).await;
    let broken: DeserializeGuard<TimeDeal> = serde_json::from_value(json!({
        "apiVersion": "timedeal.dev/v1alpha1",
        "kind": "TimeDeal",
        "metadata": {"name": "broken", "namespace": NS, "uid": "u-1"},
        "spec": {"product": "not an object"}
    }))
    .unwrap();
    assert!(broken.0.is_err());
    let action = reconcile::reconcile(Arc::new(broken), h.ctx.clone())
        .await
        .unwrap();
    assert_eq!(action, Action::await_change());
    let events = h.events().await;
    assert!(
        events
            .iter()
            .any(|(t, r, _)| t == "Warning" && r == "Malformed"),
        "{events:?}"
    );
    // The good deal next to it is reconciled as usual.
    h.settle().await;
    assert_eq!(phase(&h.deal().await), Phase::Provisioning);
}

#[tokio::test]
async fn a_malformed_deal_carrying_the_finalizer_can_still_be_deleted() {
    // As `kubectl delete` leaves it: marked for deletion, held by its finalizers.
    let client = ClientBuilder::new()
        .with_resource::<TimeDeal>()
        .with_runtime_objects(vec![json!({
            "apiVersion": "timedeal.dev/v1alpha1",
            "kind": "TimeDeal",
            "metadata": {"name": "broken", "namespace": NS, "uid": "u-1",
                "deletionTimestamp": "2026-11-23T10:00:00Z",
                "finalizers": [FINALIZER, "audit.example.com/keep-record"]},
            "spec": {"product": "not an object"}
        })])
        .build()
        .await
        .unwrap();
    let clock = Arc::new(ManualClock::at(Utc::now()));
    let url = Arc::new(Mutex::new("http://127.0.0.1:9".to_owned()));
    let ctx = context(
        &client,
        &clock,
        &url,
        Settings::with_images("a", "b"),
        cache::new().0,
    );
    let deals: Api<DeserializeGuard<TimeDeal>> = Api::namespaced(client.clone(), NS);
    let deleting = deals.get("broken").await.unwrap();
    assert!(
        deleting.0.is_err(),
        "the object does not read as a TimeDeal"
    );
    reconcile::reconcile(Arc::new(deleting), ctx).await.unwrap();
    let left = deals.get("broken").await.unwrap();
    let Err(invalid) = &left.0 else { panic!() };
    assert_eq!(
        invalid.metadata.finalizers,
        Some(vec!["audit.example.com/keep-record".to_owned()]),
        "only the operator's own finalizer goes"
    );
}
