//! Reconcile against an in-memory Kubernetes API (kube-fake-client), with a hand-moved clock and
//! a storefront stand-in serving `/internal/stats` on loopback. Every write the operator makes
//! goes through interceptors that record it, so "nothing changed, nothing written" is counted.

use std::{
    collections::BTreeMap,
    net::SocketAddr,
    sync::{Arc, Mutex},
    time::Duration,
};

use axum::{extract::State, http::StatusCode, routing::get, Json, Router};
use chrono::{DateTime, Utc};
use k8s_openapi::{
    api::{
        apps::v1::Deployment,
        autoscaling::v2::HorizontalPodAutoscaler,
        core::v1::{ConfigMap, Secret, Service},
        events::v1::Event,
        networking::v1::{Ingress, NetworkPolicy},
        policy::v1::PodDisruptionBudget,
    },
    ByteString,
};
use kube::{
    api::{Api, ListParams, Patch, PatchParams},
    core::DeserializeGuard,
    runtime::{
        controller::Action,
        events::{Recorder, Reporter},
    },
    Client, Resource, ResourceExt,
};
use kube_fake_client::{interceptor::Funcs, ClientBuilder};
use serde_json::{json, Value};
use timedeal_api::{
    validation, OrderFigures, Phase, QueueFigures, StockFigures, StorefrontStats, TimeDeal,
};
use timedeal_operator::{
    clock::ManualClock,
    figures::FiguresClient,
    metrics::Metrics,
    reconcile::{self, Config, Context, FINALIZER},
    resources::Settings,
};

mod common;

use common::status_kind;

const NS: &str = "acme-audio";
const NAME: &str = "winter-headphones";

/// What the stand-in storefront answers.
#[derive(Clone)]
enum Answer {
    Figures(StorefrontStats),
    Unavailable,
}

struct Harness {
    client: Client,
    ctx: Arc<Context>,
    clock: Arc<ManualClock>,
    writes: Arc<Mutex<Vec<String>>>,
    answer: Arc<Mutex<Answer>>,
    storefront_url: Arc<Mutex<String>>,
    deals: Api<TimeDeal>,
}

/// Another controller's finalizer, present from the start: kube's finalizer helper adds the first
/// finalizer with a JSON patch testing that the list is absent, which the in-memory API (unlike
/// a real API server) refuses; with a list present it appends, which both accept.
const OTHER_FINALIZER: &str = "audit.example.com/keep-record";

fn sample() -> TimeDeal {
    let text = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../manifests/samples/timedeal.yaml"
    ))
    .unwrap();
    let mut td = validation::parse(&text).unwrap();
    td.metadata.finalizers = Some(vec![OTHER_FINALIZER.into()]);
    td
}

fn figures(sold: i64, state: &str) -> StorefrontStats {
    StorefrontStats {
        deal: NAME.into(),
        state: state.into(),
        stock: StockFigures {
            remaining: 1000 - sold,
            sold,
            reserved: 0,
        },
        queue: QueueFigures {
            waiting: 40,
            active: 10,
            peak_waiting: 900,
        },
        orders: OrderFigures {
            confirmed: sold / 2,
            cancelled: 1,
        },
        revenue: sold * 9900,
        currency: "USD".into(),
        at: Utc::now(),
    }
}

/// The kind (or "status"/"finalizer") and name of a write.
fn describe(patch: &Value, name: &str) -> String {
    match patch.get("kind").and_then(Value::as_str) {
        Some(kind) => format!("{kind} {name}"),
        None if patch.get("status").is_some() => format!("status {name}"),
        None => format!("patch {name}"),
    }
}

async fn serve_storefront(answer: Arc<Mutex<Answer>>) -> SocketAddr {
    async fn stats(
        State(answer): State<Arc<Mutex<Answer>>>,
    ) -> Result<Json<StorefrontStats>, StatusCode> {
        match answer.lock().unwrap().clone() {
            Answer::Figures(figures) => Ok(Json(figures)),
            Answer::Unavailable => Err(StatusCode::SERVICE_UNAVAILABLE),
        }
    }
    let router = Router::new()
        .route("/internal/stats", get(stats))
        .with_state(answer);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });
    addr
}

impl Harness {
    async fn new(deal: TimeDeal) -> Self {
        let writes = Arc::new(Mutex::new(Vec::new()));
        let record = |writes: &Arc<Mutex<Vec<String>>>| writes.clone();
        let (w1, w2, w3, w4, w5) = (
            record(&writes),
            record(&writes),
            record(&writes),
            record(&writes),
            record(&writes),
        );
        let interceptors = Funcs::new()
            .create(move |ctx| {
                let kind = ctx.object["kind"].as_str().unwrap_or("?").to_owned();
                w1.lock().unwrap().push(format!("create {kind}"));
                Ok(None)
            })
            .patch(move |ctx| {
                w2.lock().unwrap().push(describe(ctx.patch, ctx.name));
                Ok(None)
            })
            .patch_status(move |ctx| {
                w3.lock().unwrap().push(format!("status {}", ctx.name));
                Ok(None)
            })
            .update(move |ctx| {
                let kind = ctx.object["kind"].as_str().unwrap_or("?").to_owned();
                w4.lock().unwrap().push(format!("update {kind}"));
                Ok(None)
            })
            .delete(move |ctx| {
                w5.lock().unwrap().push(format!("delete {}", ctx.name));
                Ok(None)
            });
        let postgres = Secret {
            metadata: kube::api::ObjectMeta {
                name: Some("timedeal-postgres".into()),
                namespace: Some("timedeal-system".into()),
                ..Default::default()
            },
            data: Some(BTreeMap::from([(
                "url".to_owned(),
                ByteString(b"postgres://timedeal:pw@postgres.platform:5432/timedeal".to_vec()),
            )])),
            ..Default::default()
        };
        let client = ClientBuilder::new()
            .with_resource::<TimeDeal>()
            .with_status_subresource::<status_kind::TimeDeal>()
            .with_status_subresource::<Deployment>()
            .with_object(postgres)
            .with_object(deal)
            .with_interceptor_funcs(interceptors)
            .build()
            .await
            .unwrap();

        let answer = Arc::new(Mutex::new(Answer::Figures(figures(0, "upcoming"))));
        let addr = serve_storefront(answer.clone()).await;
        let storefront_url = Arc::new(Mutex::new(format!("http://{addr}")));
        let url = storefront_url.clone();
        let figures_client = FiguresClient::with_urls(
            Duration::from_secs(2),
            Arc::new(move |_, _| format!("{}/internal/stats", url.lock().unwrap())),
        );
        let start = sample().spec.schedule.start;
        let clock = Arc::new(ManualClock::at(start - chrono::Duration::hours(2)));
        let ctx = Arc::new(Context::new(
            client.clone(),
            Config {
                settings: Settings {
                    tenant_image: "registry.example/tenant-app:1.0.0".into(),
                    redis_image: "registry.example/redis:7.2.5".into(),
                },
                operator_namespace: "timedeal-system".into(),
                postgres_secret: "timedeal-postgres".into(),
                postgres_secret_key: "url".into(),
                figures_interval: Duration::from_secs(15),
                final_figures_timeout: Duration::from_secs(2),
            },
            clock.clone(),
            figures_client,
            Recorder::new(
                client.clone(),
                Reporter {
                    controller: "timedeal-operator".into(),
                    instance: Some("test".into()),
                },
            ),
            Arc::new(Metrics::new()),
        ));
        Self {
            deals: Api::namespaced(client.clone(), NS),
            client,
            ctx,
            clock,
            writes,
            answer,
            storefront_url,
        }
    }

    /// One reconcile of the deal as the API server holds it now, as the watcher would deliver it.
    async fn reconcile(&self) -> Result<Action, timedeal_operator::error::Error> {
        let td = self.deals.get(NAME).await.unwrap();
        Box::pin(reconcile::reconcile(
            Arc::new(DeserializeGuard(Ok(td))),
            self.ctx.clone(),
        ))
        .await
    }

    /// Reconciles until the finalizer is on and the children are applied.
    async fn settle(&self) -> Action {
        self.reconcile().await.unwrap(); // adds the finalizer
        self.reconcile().await.unwrap()
    }

    fn take_writes(&self) -> Vec<String> {
        std::mem::take(&mut *self.writes.lock().unwrap())
    }

    async fn deal(&self) -> TimeDeal {
        self.deals.get(NAME).await.unwrap()
    }

    fn at(&self, minutes_from_start: i64) -> DateTime<Utc> {
        sample().spec.schedule.start + chrono::Duration::minutes(minutes_from_start)
    }

    /// A settled deal at `minutes_from_start` with `ready` storefront replicas, reconciled once.
    async fn running_at(minutes_from_start: i64, ready: i32) -> Self {
        let h = Self::new(sample()).await;
        h.clock.set(h.at(minutes_from_start));
        h.settle().await;
        h.storefront_ready(ready).await;
        h.reconcile().await.unwrap();
        h
    }

    /// Reconciles the deal as `kubectl delete` hands it over: with a deletion timestamp.
    async fn reconcile_deletion(&self) {
        let mut deleting = self.deal().await;
        deleting.metadata.deletion_timestamp =
            Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
                k8s_openapi::jiff::Timestamp::now(),
            ));
        reconcile::reconcile(Arc::new(DeserializeGuard(Ok(deleting))), self.ctx.clone())
            .await
            .unwrap();
    }

    /// What the kubelet and the Deployment controller would do: report ready replicas.
    async fn storefront_ready(&self, ready: i32) {
        let api: Api<Deployment> = Api::namespaced(self.client.clone(), NS);
        api.patch_status(
            "winter-headphones-storefront",
            &PatchParams::default(),
            &Patch::Merge(json!({"status": {"replicas": ready, "readyReplicas": ready}})),
        )
        .await
        .unwrap();
        self.take_writes();
    }

    async fn hpa(&self) -> Option<HorizontalPodAutoscaler> {
        Api::<HorizontalPodAutoscaler>::namespaced(self.client.clone(), NS)
            .get_opt("winter-headphones-storefront")
            .await
            .unwrap()
    }

    async fn floor(&self) -> i32 {
        self.hpa()
            .await
            .unwrap()
            .spec
            .unwrap()
            .min_replicas
            .unwrap()
    }

    async fn events(&self) -> Vec<(String, String, String)> {
        let mut events: Vec<Event> = Api::<Event>::namespaced(self.client.clone(), NS)
            .list(&ListParams::default())
            .await
            .unwrap()
            .items;
        events.sort_by_key(|e| e.event_time.as_ref().map(|t| t.0));
        events
            .into_iter()
            .map(|e| {
                (
                    e.type_.unwrap_or_default(),
                    e.reason.unwrap_or_default(),
                    e.note.unwrap_or_default(),
                )
            })
            .collect()
    }

    async fn edit(&self, patch: Value) {
        self.deals
            .patch(NAME, &PatchParams::default(), &Patch::Merge(patch))
            .await
            .unwrap();
        self.take_writes();
    }
}

fn condition<'a>(
    td: &'a TimeDeal,
    type_: &str,
) -> &'a k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition {
    td.status
        .as_ref()
        .unwrap()
        .conditions
        .iter()
        .find(|c| c.type_ == type_)
        .unwrap_or_else(|| panic!("no {type_} condition"))
}

fn phase(td: &TimeDeal) -> Phase {
    td.status.as_ref().unwrap().phase.unwrap()
}

async fn names<K>(client: &Client) -> Vec<String>
where
    K: Resource<DynamicType = (), Scope = k8s_openapi::NamespaceResourceScope>
        + Clone
        + serde::de::DeserializeOwned
        + std::fmt::Debug,
{
    Api::<K>::namespaced(client.clone(), NS)
        .list(&ListParams::default())
        .await
        .unwrap()
        .items
        .iter()
        .map(|o| o.name_any())
        .collect()
}

fn unapproved() -> TimeDeal {
    let mut td = sample();
    td.spec.approved = false;
    td
}

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
    assert_eq!(names::<Deployment>(&h.client).await.len(), 2);
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
            "Deployment winter-headphones-redis",
            "Deployment winter-headphones-storefront",
            "HorizontalPodAutoscaler winter-headphones-storefront",
            "Ingress winter-headphones-storefront",
            "NetworkPolicy winter-headphones-redis",
            "PodDisruptionBudget winter-headphones-storefront",
            "Secret winter-headphones-redis-auth",
            "Secret winter-headphones-storefront-keys",
            "Service winter-headphones-redis",
            "Service winter-headphones-storefront",
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
    assert_eq!(
        schema.and_then(|e| e.value.as_deref()),
        Some("td_acme_audio_winter_headphones"),
        "each deal gets its own schema"
    );
    assert!(app.readiness_probe.is_some() && app.liveness_probe.is_some());
    let resources = app.resources.as_ref().unwrap();
    assert_eq!(resources.requests.as_ref().unwrap()["cpu"].0, "500m");
    assert_eq!(
        app.security_context.as_ref().unwrap().run_as_non_root,
        Some(true)
    );

    // Secrets were generated, and the PostgreSQL URL came from the platform Secret.
    let secret = |name: &'static str| {
        let api = Api::<Secret>::namespaced(h.client.clone(), NS);
        async move { api.get(name).await.unwrap().data.unwrap() }
    };
    let redis = secret("winter-headphones-redis-auth").await;
    assert_eq!(redis["password"].0.len(), 32);
    let keys = secret("winter-headphones-storefront-keys").await;
    assert_eq!(keys["signing-secret"].0.len(), 48);
    assert_eq!(
        String::from_utf8(keys["postgres-url"].0.clone()).unwrap(),
        "postgres://timedeal:pw@postgres.platform:5432/timedeal"
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

    for _ in 0..3 {
        h.reconcile().await.unwrap();
    }
    assert_eq!(h.take_writes(), Vec::<String>::new());

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
        note.contains("HorizontalPodAutoscaler winter-headphones-storefront"),
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
    let deployments = Api::<Deployment>::namespaced(h.client.clone(), NS);
    for name in ["winter-headphones-storefront", "winter-headphones-redis"] {
        let replicas = deployments.get(name).await.unwrap().spec.unwrap().replicas;
        assert_eq!(replicas, Some(0), "{name}");
    }
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
    // Not ready yet, so no figures to read: the only wake-up is the warm-up, 5 minutes away.
    assert_eq!(
        h.settle().await,
        Action::requeue(Duration::from_secs(5 * 60))
    );
    h.storefront_ready(2).await;
    // Ready: the figures are read every 15 s until then.
    assert_eq!(
        h.reconcile().await.unwrap(),
        Action::requeue(Duration::from_secs(15))
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
    let config = Api::<ConfigMap>::namespaced(h.client.clone(), NS)
        .get("winter-headphones-deal")
        .await
        .unwrap();
    assert!(config.data.unwrap()["deal.yaml"].contains("suspend: true"));
    // Its data stays.
    assert_eq!(names::<Deployment>(&h.client).await.len(), 2);

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
        warning.2.contains("keeping the figures last read"),
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
