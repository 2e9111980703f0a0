//! `timedeal-operator run`: connect to the cluster, serve health and metrics, take the leader
//! Lease, and run the controller while holding it.

use std::{net::SocketAddr, sync::Arc, time::Duration};

use axum::{extract::State, http::StatusCode, routing::get, Router};
use futures::StreamExt;
use k8s_openapi::api::{
    apps::v1::{Deployment, StatefulSet},
    autoscaling::v2::HorizontalPodAutoscaler,
    core::v1::{ConfigMap, Service},
    networking::v1::{Ingress, NetworkPolicy},
    policy::v1::PodDisruptionBudget,
};
use kube::{
    api::{Api, ListParams},
    core::DeserializeGuard,
    runtime::{
        events::{Recorder, Reporter},
        predicates, reflector, watcher, Controller, Predicate, WatchStreamExt,
    },
    Client,
};
use timedeal_api::{Company, TimeDeal};
use tracing::{error, info, warn};

use crate::{
    cache,
    clock::SystemClock,
    company,
    figures::FiguresClient,
    leader::{Leadership, Timing},
    metrics::Metrics,
    portal_keys, rbac,
    reconcile::{self, Config, Context},
};

/// Everything `run` is told on its command line.
pub struct Options {
    pub config: Config,
    pub listen: SocketAddr,
    pub leader_election: bool,
    /// This replica's name in the Lease (the pod name in a cluster).
    pub identity: String,
}

/// Why the operator cannot start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(
        "no Kubernetes configuration found ({0}); set KUBECONFIG, or run inside a cluster with a \
         service account"
    )]
    NoConfig(String),
    #[error(
        "cannot reach the Kubernetes API server ({0}); check KUBECONFIG and that the cluster is \
         running"
    )]
    Unreachable(String),
    #[error(
        "the TimeDeal and Company CRDs are not both installed in this cluster; install them with \
         `timedeal-operator crd | kubectl apply -f -`"
    )]
    NoCrd,
    #[error("the API server refused to list TimeDeals or Companies ({0}); see manifests/base/rbac.yaml for the permissions the operator needs")]
    Forbidden(String),
    #[error("cannot listen on {0}: {1}")]
    Listen(SocketAddr, std::io::Error),
    #[error("the rental portal's session key: {0}")]
    Portal(String),
}

/// Connects once, with a deadline, so a wrong KUBECONFIG fails fast with one clear line rather
/// than a stream of retries.
pub async fn connect() -> Result<Client, StartError> {
    let client = Client::try_default()
        .await
        .map_err(|e| StartError::NoConfig(e.to_string()))?;
    match tokio::time::timeout(Duration::from_secs(10), client.apiserver_version()).await {
        Ok(Ok(_)) => {}
        Ok(Err(e)) => return Err(StartError::Unreachable(e.to_string())),
        Err(_) => return Err(StartError::Unreachable("no answer within 10s".into())),
    }
    let deals: Api<TimeDeal> = Api::all(client.clone());
    let companies: Api<Company> = Api::all(client.clone());
    let one = ListParams::default().limit(1);
    let listed = match deals.list(&one).await {
        Ok(_) => companies.list(&one).await.map(|_| ()),
        Err(e) => Err(e),
    };
    match listed {
        Ok(()) => Ok(client),
        Err(kube::Error::Api(e)) if e.code == 404 => Err(StartError::NoCrd),
        Err(kube::Error::Api(e)) if e.code == 403 => Err(StartError::Forbidden(e.message)),
        Err(e) => Err(StartError::Unreachable(e.to_string())),
    }
}

/// Runs until a signal arrives or the Lease is lost.
pub async fn run(options: Options) -> anyhow::Result<()> {
    let client = connect().await?;
    let metrics = Arc::new(Metrics::new());
    let listener = tokio::net::TcpListener::bind(options.listen)
        .await
        .map_err(|e| StartError::Listen(options.listen, e))?;
    info!(listen = %options.listen, "serving /metrics, /healthz and /readyz");
    let server = axum::serve(listener, ops_router(metrics.clone()));
    tokio::spawn(async move {
        if let Err(e) = server.await {
            error!(error = %e, "the metrics server stopped");
        }
    });

    // The portal's session key, which its pods read from their environment.
    portal_keys::ensure(&client, &options.config.operator_namespace)
        .await
        .map_err(StartError::Portal)?;

    let (cache, writers) = cache::new();
    let ctx = Arc::new(Context::new(
        client.clone(),
        options.config.clone(),
        Arc::new(SystemClock),
        FiguresClient::in_cluster(Duration::from_secs(5)),
        Recorder::new(
            client.clone(),
            Reporter {
                controller: "timedeal-operator".into(),
                instance: Some(options.identity.clone()),
            },
        ),
        metrics.clone(),
        cache,
    ));

    if !options.leader_election {
        metrics.leader.set(1);
        controller(client, ctx, writers).await;
        return Ok(());
    }
    let leadership = Leadership::new(
        client.clone(),
        &options.config.operator_namespace,
        rbac::NAME,
        &options.identity,
        Timing::DEFAULT,
    );
    tokio::select! {
        _ = leadership.acquire() => {}
        _ = shutdown_signal() => return Ok(()),
    }
    info!(identity = %options.identity, "leading: reconciling TimeDeals");
    metrics.leader.set(1);
    tokio::select! {
        // The controller returns on SIGTERM once its reconciles in flight are done: the Lease is
        // then handed over at once rather than left to expire.
        _ = controller(client, ctx, writers) => {
            metrics.leader.set(0);
            leadership.step_down().await;
            Ok(())
        }
        _ = leadership.hold() => {
            metrics.leader.set(0);
            // Another replica may already reconcile: stop at once; the pod restarts as a standby.
            anyhow::bail!("lost the leader Lease; stopping so that only one replica reconciles")
        }
    }
}

/// SIGTERM (the kubelet stopping the pod) or Ctrl-C.
async fn shutdown_signal() {
    #[cfg(unix)]
    {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .expect("a SIGTERM handler installs");
        tokio::select! {
            _ = term.recv() => {}
            _ = tokio::signal::ctrl_c() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = tokio::signal::ctrl_c().await;
}

/// What of a deal starts a reconcile: its spec (the generation, which deletion bumps too), its
/// labels, annotations and finalizers. Not its status: the operator's own status writes would
/// otherwise start the next reconcile.
pub fn deal_changes(deal: &DeserializeGuard<TimeDeal>) -> Option<u64> {
    predicates::generation
        .combine(predicates::labels)
        .combine(predicates::annotations)
        .combine(predicates::finalizers)
        .hash_property(deal)
}

/// The controller: TimeDeals (read through `DeserializeGuard`, so one malformed object cannot
/// stop the watch) and the children they own, each kept in the cache reconciles read.
async fn controller(client: Client, ctx: Arc<Context>, writers: cache::Writers) {
    tokio::spawn(crate::reconcile::prepare_platform(ctx.clone()));
    let (deals, deal_writer) = reflector::store();
    let deal_stream = reflector(
        deal_writer,
        watcher(
            Api::<DeserializeGuard<TimeDeal>>::all(client.clone()),
            watcher::Config::default().any_semantic(),
        ),
    )
    .default_backoff()
    .applied_objects()
    .predicate_filter(deal_changes, Default::default());
    let owned = watcher::Config::default().labels("app.kubernetes.io/managed-by=timedeal-operator");
    macro_rules! watch {
        ($writer:expr, $kind:ty) => {
            reflector(
                $writer,
                watcher(Api::<$kind>::all(client.clone()), owned.clone()),
            )
            .default_backoff()
            .touched_objects()
        };
    }
    let cache::Writers {
        deployments,
        stateful_sets,
        services,
        autoscalers,
        ingresses,
        disruption_budgets,
        network_policies,
        config_maps,
        companies,
    } = writers;
    // Companies feed the store the deal gate reads and, when one changes, wake every deal in its
    // namespace (approving a company releases its waiting deals). The company controller keeps
    // its own watch.
    let company_events = reflector(
        companies,
        watcher(Api::<Company>::all(client.clone()), Default::default()),
    )
    .default_backoff()
    .touched_objects()
    .predicate_filter(company_changes, Default::default());
    let companies_controller = Controller::new(
        Api::<Company>::all(client.clone()),
        watcher::Config::default(),
    )
    .shutdown_on_signal()
    .run(company::reconcile, company::error_policy, ctx.clone())
    .for_each(|result| async move {
        if let Err(e) = result {
            warn!(error = %e, "company controller");
        }
    });
    let deal_store = deals.clone();
    let deals_controller = Controller::for_stream(deal_stream, deals)
        .owns_stream(watch!(deployments, Deployment))
        .owns_stream(watch!(stateful_sets, StatefulSet))
        .owns_stream(watch!(services, Service))
        .owns_stream(watch!(autoscalers, HorizontalPodAutoscaler))
        .owns_stream(watch!(ingresses, Ingress))
        .owns_stream(watch!(disruption_budgets, PodDisruptionBudget))
        .owns_stream(watch!(network_policies, NetworkPolicy))
        .owns_stream(watch!(config_maps, ConfigMap))
        .watches_stream(company_events, move |company: Company| {
            deals_in(&deal_store, &company.spec.namespace)
        })
        .shutdown_on_signal()
        .run(reconcile::reconcile, reconcile::error_policy, ctx)
        .for_each(|result| async move {
            if let Err(e) = result {
                // Reconcile errors are logged and counted in reconcile; these are the
                // controller's own (a watch that broke, an object gone meanwhile).
                warn!(error = %e, "controller");
            }
        });
    tokio::join!(deals_controller, companies_controller);
}

/// What of a Company starts a reconcile: its spec and labels, not the operator's status writes.
fn company_changes(company: &Company) -> Option<u64> {
    predicates::generation
        .combine(predicates::labels)
        .hash_property(company)
}

/// Every deal in `namespace`, as the deal controller's store holds them.
fn deals_in(
    store: &reflector::Store<DeserializeGuard<TimeDeal>>,
    namespace: &str,
) -> Vec<reflector::ObjectRef<DeserializeGuard<TimeDeal>>> {
    store
        .state()
        .iter()
        .filter_map(|deal| {
            let meta = match &deal.0 {
                Ok(td) => &td.metadata,
                Err(invalid) => &invalid.metadata,
            };
            (meta.namespace.as_deref() == Some(namespace)).then(|| {
                reflector::ObjectRef::new(meta.name.as_deref().unwrap_or_default())
                    .within(namespace)
            })
        })
        .collect()
}

pub fn ops_router(metrics: Arc<Metrics>) -> Router {
    Router::new()
        .route("/metrics", get(render_metrics))
        .route("/healthz", get(|| async { "ok\n" }))
        // Ready once connected to the API server, which `run` checked before serving; a
        // standby replica is ready too (it takes over when the Lease frees).
        .route("/readyz", get(|| async { "ready\n" }))
        .with_state(metrics)
}

async fn render_metrics(
    State(metrics): State<Arc<Metrics>>,
) -> (StatusCode, [(&'static str, &'static str); 1], String) {
    (
        StatusCode::OK,
        [(
            "content-type",
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        metrics.encode(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn deal() -> TimeDeal {
        let text = std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../manifests/samples/timedeal.yaml"
        ))
        .unwrap();
        let mut td = timedeal_api::validation::parse(&text).unwrap();
        td.metadata.generation = Some(1);
        td
    }

    fn changes(td: &TimeDeal) -> Option<u64> {
        deal_changes(&DeserializeGuard(Ok(td.clone())))
    }

    #[test]
    fn the_operators_own_status_writes_start_no_reconcile() {
        let before = deal();
        let mut status_written = before.clone();
        status_written.status = Some(timedeal_api::TimeDealStatus {
            phase: Some(timedeal_api::Phase::Live),
            ..Default::default()
        });
        status_written.metadata.resource_version = Some("42".into());
        assert_eq!(changes(&before), changes(&status_written));

        let mut edited = before.clone();
        edited.metadata.generation = Some(2);
        assert_ne!(changes(&before), changes(&edited), "a spec edit");
        let mut annotated = before.clone();
        annotated
            .metadata
            .annotations
            .get_or_insert_with(Default::default)
            .insert("timedeal.dev/upgrade".into(), "now".into());
        assert_ne!(changes(&before), changes(&annotated), "an annotation");
        let mut finalized = before.clone();
        finalized.metadata.finalizers = Some(vec!["x".into()]);
        assert_ne!(changes(&before), changes(&finalized), "a finalizer");
    }
}
