//! The operator's reconcile against an in-memory Kubernetes API (kube-fake-client, made strict by
//! `strict`), with a hand-moved clock and a storefront stand-in serving `/internal/stats` on
//! loopback. Every write the operator makes goes through interceptors that record it, so
//! "nothing changed, nothing written" is counted.
#![allow(dead_code, unused_imports)]

pub use std::{
    collections::BTreeMap,
    net::SocketAddr,
    sync::{Arc, Mutex},
    time::Duration,
};

pub use axum::{extract::State, http::StatusCode, routing::get, Json, Router};
pub use chrono::{DateTime, Utc};
pub use k8s_openapi::{
    api::{
        apps::v1::{Deployment, StatefulSet},
        autoscaling::v2::HorizontalPodAutoscaler,
        core::v1::{ConfigMap, Secret, Service},
        events::v1::Event,
        networking::v1::{Ingress, NetworkPolicy},
        policy::v1::PodDisruptionBudget,
    },
    ByteString,
};
pub use kube::{
    api::{Api, ListParams, Patch, PatchParams},
    core::DeserializeGuard,
    runtime::{
        controller::Action,
        events::{Recorder, Reporter},
    },
    Client, Resource, ResourceExt,
};
pub use kube_fake_client::{interceptor::Funcs, ClientBuilder};
pub use serde_json::{json, Value};
pub use timedeal_api::{
    validation, OrderFigures, Phase, QueueFigures, StockFigures, StorefrontStats, TimeDeal,
};
pub use timedeal_operator::{
    cache::{self, Cache},
    clock::ManualClock,
    delivery::Pusher,
    figures::FiguresClient,
    metrics::Metrics,
    reconcile::{self, Config, Context, FINALIZER},
    resources::Settings,
};

pub use super::{status_kind, Fault};

/// The operator's context over `client`, as `run` builds it, with the given defaults.
pub fn context(
    client: &Client,
    clock: &Arc<ManualClock>,
    storefront_url: &Arc<Mutex<String>>,
    settings: Settings,
    cache: Cache,
) -> Arc<Context> {
    context_with(client, clock, storefront_url, settings, cache, |_| {})
}

/// The same, with the configuration changed by `configure`.
pub fn context_with(
    client: &Client,
    clock: &Arc<ManualClock>,
    storefront_url: &Arc<Mutex<String>>,
    settings: Settings,
    cache: Cache,
    configure: impl FnOnce(&mut Config),
) -> Arc<Context> {
    let pods = storefront_url.clone();
    let pusher = Pusher::with_urls(
        Duration::from_secs(2),
        Arc::new(move |pod: &k8s_openapi::api::core::v1::Pod| {
            Some(format!(
                "{}/internal/deal?pod={}",
                pods.lock().unwrap(),
                pod.metadata.name.clone().unwrap_or_default()
            ))
        }),
    );
    let url = storefront_url.clone();
    let figures_client = FiguresClient::with_urls(
        Duration::from_secs(2),
        Arc::new(move |_, _| format!("{}/internal/stats", url.lock().unwrap())),
    );
    let mut config = Config {
        settings,
        operator_namespace: "timedeal-system".into(),
        postgres_secret: "timedeal-postgres".into(),
        postgres_secret_key: "url".into(),
        figures_interval: Duration::from_secs(15),
        final_figures_timeout: Duration::from_secs(2),
        api_timeout: Duration::from_secs(2),
        portal_account: Default::default(),
        calendar_replicas: None,
        hosts: timedeal_api::hosts::HostRules {
            company_suffix: Some("companies.example.com".into()),
            reserved: vec!["deals.example.com".into(), "directory.example.com".into()],
        },
        portal_database_role: String::new(),
    };
    configure(&mut config);
    Arc::new(
        Context::new(
            client.clone(),
            config,
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
            cache,
        )
        .with_pusher(pusher),
    )
}

/// One real PostgreSQL per test binary (started on first use, gone with the process), and a
/// database of its own for each harness: the platform database the operator sets deals up in.
pub async fn platform_database() -> String {
    timedeal_testkit::PostgresServer::shared_database("platform").unwrap()
}

pub const NS: &str = "acme-audio";
pub const NAME: &str = "winter-headphones";

/// What the stand-in storefront answers.
#[derive(Clone)]
pub enum Answer {
    Figures(StorefrontStats),
    Unavailable,
}

pub struct Harness {
    pub client: Client,
    pub ctx: Arc<Context>,
    pub faults: Arc<Mutex<Vec<Fault>>>,
    /// The platform PostgreSQL URL (a database of this harness's own).
    pub platform: String,
    pub cache: Cache,
    pub writers: tokio::sync::Mutex<cache::Writers>,
    /// The names of the objects read one by one (GET).
    pub reads: Arc<Mutex<Vec<String>>>,
    pub clock: Arc<ManualClock>,
    pub writes: Arc<Mutex<Vec<String>>>,
    pub answer: Arc<Mutex<Answer>>,
    pub pushes: Arc<Mutex<Pushes>>,
    pub storefront_url: Arc<Mutex<String>>,
    pub deals: Api<TimeDeal>,
}

/// Another controller's finalizer, present from the start: kube's finalizer helper adds the first
/// finalizer with a JSON patch testing that the list is absent, which the in-memory API (unlike
/// a real API server) refuses; with a list present it appends, which both accept.
pub const OTHER_FINALIZER: &str = "audit.example.com/keep-record";

pub fn sample() -> TimeDeal {
    let text = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../manifests/samples/timedeal.yaml"
    ))
    .unwrap();
    let mut td = validation::parse(&text).unwrap();
    td.metadata.finalizers = Some(vec![OTHER_FINALIZER.into()]);
    td
}

pub fn figures(sold: i64, state: &str) -> StorefrontStats {
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
pub fn describe(patch: &Value, name: &str) -> String {
    match patch.get("kind").and_then(Value::as_str) {
        Some(kind) => format!("{kind} {name}"),
        None if patch.get("status").is_some() => format!("status {name}"),
        None => format!("patch {name}"),
    }
}

/// The pushes of the deal document the stand-in storefront received, and whether it takes them.
#[derive(Default)]
pub struct Pushes {
    /// Pod, revision, suspended: one entry per push taken.
    pub taken: Vec<(String, i64, bool)>,
    /// Answer 503 instead, as a replica that is busy or unreachable.
    pub refuse: bool,
    /// Pushes answered 503 so far.
    pub refused: usize,
    /// Answer 404, as a replica started without a control key (a release before pushes).
    pub file_only: bool,
}

/// What the stand-in storefront answers with, and what it was told.
type StandIn = (Arc<Mutex<Answer>>, Arc<Mutex<Pushes>>);

pub async fn serve_storefront(
    answer: Arc<Mutex<Answer>>,
    pushes: Arc<Mutex<Pushes>>,
) -> SocketAddr {
    pub async fn stats(
        State((answer, _)): State<StandIn>,
    ) -> Result<Json<StorefrontStats>, StatusCode> {
        match answer.lock().unwrap().clone() {
            Answer::Figures(figures) => Ok(Json(figures)),
            Answer::Unavailable => Err(StatusCode::SERVICE_UNAVAILABLE),
        }
    }
    pub async fn push(
        State((_, pushes)): State<StandIn>,
        axum::extract::Query(query): axum::extract::Query<BTreeMap<String, String>>,
        body: String,
    ) -> Result<Json<timedeal_api::DealServed>, StatusCode> {
        let mut pushes = pushes.lock().unwrap();
        if pushes.refuse {
            pushes.refused += 1;
            return Err(StatusCode::SERVICE_UNAVAILABLE);
        }
        if pushes.file_only {
            return Err(StatusCode::NOT_FOUND);
        }
        let document: Value = serde_yaml::from_str(&body).unwrap();
        let revision: i64 = document["metadata"]["annotations"]["timedeal.dev/revision"]
            .as_str()
            .unwrap()
            .parse()
            .unwrap();
        let suspended = document["spec"]["suspend"].as_bool().unwrap_or(false);
        pushes
            .taken
            .push((query["pod"].clone(), revision, suspended));
        Ok(Json(timedeal_api::DealServed {
            deal: document["metadata"]["name"].as_str().unwrap().to_owned(),
            revision,
            suspended,
        }))
    }
    let router = Router::new()
        .route("/internal/stats", get(stats))
        .route("/internal/deal", axum::routing::put(push))
        .with_state((answer, pushes));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });
    addr
}

impl Harness {
    /// The deal in the namespace of the approved Company `acme`, whose quota holds 100 peak
    /// replicas (room for the deals the tests edit).
    pub async fn new(deal: TimeDeal) -> Self {
        let mut acme = super::company("acme", NS, true);
        acme.spec.quotas.max_peak_replicas = 100;
        Self::with_companies(deal, vec![acme]).await
    }

    pub async fn with_companies(deal: TimeDeal, companies: Vec<timedeal_api::Company>) -> Self {
        let writes = Arc::new(Mutex::new(Vec::new()));
        let record = |writes: &Arc<Mutex<Vec<String>>>| writes.clone();
        let (w1, w2, w3, w4, w5) = (
            record(&writes),
            record(&writes),
            record(&writes),
            record(&writes),
            record(&writes),
        );
        let reads = Arc::new(Mutex::new(Vec::new()));
        let r1 = reads.clone();
        let interceptors = Funcs::new()
            .get(move |ctx| {
                r1.lock().unwrap().push(ctx.name.to_owned());
                Ok(None)
            })
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
        let platform = platform_database().await;
        let postgres = Secret {
            metadata: kube::api::ObjectMeta {
                name: Some("timedeal-postgres".into()),
                namespace: Some("timedeal-system".into()),
                ..Default::default()
            },
            data: Some(BTreeMap::from([(
                "url".to_owned(),
                ByteString(platform.clone().into_bytes()),
            )])),
            ..Default::default()
        };
        let client = ClientBuilder::new()
            .with_resource::<TimeDeal>()
            .with_status_subresource::<status_kind::TimeDeal>()
            .with_status_subresource::<Deployment>()
            .with_status_subresource::<StatefulSet>()
            .with_object(postgres)
            .with_object(deal)
            .with_interceptor_funcs(interceptors)
            .build()
            .await
            .unwrap();

        let faults = Arc::new(Mutex::new(Vec::new()));
        let client = super::strict(super::with_namespaces(client), faults.clone());
        let api = Api::<timedeal_api::Company>::all(client.clone());
        for company in companies {
            api.create(&Default::default(), &company).await.unwrap();
        }

        let answer = Arc::new(Mutex::new(Answer::Figures(figures(0, "upcoming"))));
        let pushes = Arc::new(Mutex::new(Pushes::default()));
        let addr = serve_storefront(answer.clone(), pushes.clone()).await;
        let storefront_url = Arc::new(Mutex::new(format!("http://{addr}")));
        let start = sample().spec.schedule.start;
        let clock = Arc::new(ManualClock::at(start - chrono::Duration::hours(2)));
        let (cache, writers) = cache::new();
        let ctx = context(
            &client,
            &clock,
            &storefront_url,
            Settings::with_images(
                "registry.example/tenant-app:1.0.0",
                "registry.example/redis:7.2.5",
            ),
            cache.clone(),
        );
        Self {
            deals: Api::namespaced(client.clone(), NS),
            client,
            ctx,
            faults,
            platform,
            cache,
            writers: tokio::sync::Mutex::new(writers),
            reads,
            clock,
            writes,
            answer,
            pushes,
            storefront_url,
        }
    }

    /// One reconcile of the deal as the API server holds it now, as the watcher would deliver it.
    pub async fn reconcile(&self) -> Result<Action, timedeal_operator::error::Error> {
        // The cache as the controller's watches would have it by now.
        self.fill().await;
        self.reconcile_cached().await
    }

    /// An operator taking over (a restart, a new leader): a new context whose stores stay empty
    /// until their watches' first listings arrive (`fill`).
    pub fn take_over(&mut self) {
        let (cache, writers) = cache::new();
        self.cache = cache.clone();
        self.writers = tokio::sync::Mutex::new(writers);
        self.ctx = context(
            &self.client,
            &self.clock,
            &self.storefront_url,
            self.ctx.config.settings.clone(),
            cache,
        );
    }

    /// The watches' first listings arrive: every store is filled.
    pub async fn fill(&self) {
        self.writers
            .lock()
            .await
            .fill(&self.client, NS)
            .await
            .unwrap();
    }

    /// One reconcile on the stores as they are now, without listing first.
    pub async fn reconcile_cached(&self) -> Result<Action, timedeal_operator::error::Error> {
        let td = self.deals.get(NAME).await.unwrap();
        Box::pin(reconcile::reconcile(
            Arc::new(DeserializeGuard(Ok(td))),
            self.ctx.clone(),
        ))
        .await
    }

    /// One reconcile of a Company on the stores as they are now.
    pub async fn reconcile_company_cached(
        &self,
        name: &str,
    ) -> Result<Action, timedeal_operator::error::Error> {
        let company = Api::<timedeal_api::Company>::all(self.client.clone())
            .get(name)
            .await
            .unwrap();
        timedeal_operator::company::reconcile(Arc::new(company), self.ctx.clone()).await
    }

    /// The operator configured with a capacity calendar of `replicas`.
    pub fn with_calendar(&mut self, replicas: i32) {
        self.ctx = context_with(
            &self.client,
            &self.clock,
            &self.storefront_url,
            self.ctx.config.settings.clone(),
            self.cache.clone(),
            |config| config.calendar_replicas = Some(replicas),
        );
    }

    /// The operator configured to give storefronts the platform's SMTP server: the Secret
    /// `timedeal-smtp` in its namespace holds `smtp_url`.
    pub async fn with_mail(&mut self, from: &str, smtp_url: &str) {
        let secret = Secret {
            metadata: kube::api::ObjectMeta {
                name: Some("timedeal-smtp".into()),
                namespace: Some("timedeal-system".into()),
                ..Default::default()
            },
            data: Some(BTreeMap::from([(
                "url".to_owned(),
                ByteString(smtp_url.as_bytes().to_vec()),
            )])),
            ..Default::default()
        };
        Api::<Secret>::namespaced(self.client.clone(), "timedeal-system")
            .create(&Default::default(), &secret)
            .await
            .unwrap();
        let mut settings = self.ctx.config.settings.clone();
        settings.mail = Some(timedeal_operator::resources::Mail {
            from: from.into(),
            secret: "timedeal-smtp".into(),
            key: "url".into(),
        });
        self.with_settings(settings);
    }

    /// The operator restarted with other settings (chart values), the same caches.
    pub fn with_settings(&mut self, settings: Settings) {
        self.ctx = context(
            &self.client,
            &self.clock,
            &self.storefront_url,
            settings,
            self.cache.clone(),
        );
    }

    /// What the deal's storefront Secret holds now, by key.
    pub async fn storefront_keys(&self) -> BTreeMap<String, String> {
        Api::<Secret>::namespaced(self.client.clone(), NS)
            .get("winter-headphones-storefront-keys")
            .await
            .unwrap()
            .data
            .unwrap()
            .into_iter()
            .map(|(key, value)| (key, String::from_utf8(value.0).unwrap()))
            .collect()
    }

    /// One reconcile of a Company as the API server holds it now.
    pub async fn reconcile_company(
        &self,
        name: &str,
    ) -> Result<Action, timedeal_operator::error::Error> {
        self.fill().await;
        self.reconcile_company_cached(name).await
    }

    /// Reconciles until the finalizer is on and the children are applied.
    pub async fn settle(&self) -> Action {
        self.reconcile().await.unwrap(); // adds the finalizer
        self.reconcile().await.unwrap()
    }

    pub fn take_writes(&self) -> Vec<String> {
        std::mem::take(&mut *self.writes.lock().unwrap())
    }

    pub async fn deal(&self) -> TimeDeal {
        self.deals.get(NAME).await.unwrap()
    }

    pub fn at(&self, minutes_from_start: i64) -> DateTime<Utc> {
        sample().spec.schedule.start + chrono::Duration::minutes(minutes_from_start)
    }

    /// A settled deal at `minutes_from_start` with `ready` storefront replicas, reconciled once.
    pub async fn running_at(minutes_from_start: i64, ready: i32) -> Self {
        let h = Self::new(sample()).await;
        h.clock.set(h.at(minutes_from_start));
        h.settle().await;
        h.storefront_ready(ready).await;
        h.reconcile().await.unwrap();
        h
    }

    /// Reconciles the deal as `kubectl delete` hands it over: with a deletion timestamp.
    pub async fn reconcile_deletion(&self) {
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
    pub async fn storefront_ready(&self, ready: i32) {
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

    pub async fn hpa(&self) -> Option<HorizontalPodAutoscaler> {
        Api::<HorizontalPodAutoscaler>::namespaced(self.client.clone(), NS)
            .get_opt("winter-headphones-storefront")
            .await
            .unwrap()
    }

    pub async fn floor(&self) -> i32 {
        self.hpa()
            .await
            .unwrap()
            .spec
            .unwrap()
            .min_replicas
            .unwrap()
    }

    pub async fn events(&self) -> Vec<(String, String, String)> {
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

    /// Ready storefront pods, as the kubelet reports them.
    pub async fn storefront_pods(&self, names: &[&str]) {
        let api = Api::<k8s_openapi::api::core::v1::Pod>::namespaced(self.client.clone(), NS);
        for name in names {
            let pod: k8s_openapi::api::core::v1::Pod = serde_json::from_value(json!({
                "metadata": {"name": name, "namespace": NS, "labels": {
                    "timedeal.dev/deal": NAME, "app.kubernetes.io/component": "storefront"}},
                "spec": {"containers": [{"name": "tenant-app"}]},
                "status": {"phase": "Running", "podIP": "127.0.0.1",
                    "conditions": [{"type": "Ready", "status": "True"}]}
            }))
            .unwrap();
            api.create(&Default::default(), &pod).await.unwrap();
        }
        self.take_writes();
    }

    /// The deal as its storefronts read it, from their ConfigMap.
    pub async fn deal_file(&self) -> String {
        let config = Api::<ConfigMap>::namespaced(self.client.clone(), NS)
            .get("winter-headphones-deal")
            .await
            .unwrap();
        config.data.unwrap()["deal.yaml"].clone()
    }

    pub async fn edit(&self, patch: Value) {
        self.deals
            .patch(NAME, &PatchParams::default(), &Patch::Merge(patch))
            .await
            .unwrap();
        self.take_writes();
    }
}

pub fn condition<'a>(
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

pub fn phase(td: &TimeDeal) -> Phase {
    td.status.as_ref().unwrap().phase.unwrap()
}

pub async fn names<K>(client: &Client) -> Vec<String>
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

pub fn unapproved() -> TimeDeal {
    let mut td = sample();
    td.spec.approved = false;
    td
}
