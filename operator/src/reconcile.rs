//! The reconcile loop: one TimeDeal at a time, in steps.
//!
//! 1. validate: the deal can own children and its spec keeps the CRD's rules;
//! 2. build the desired bundle of children for the phase the clock says;
//! 3. apply what differs from what runs (server-side apply, one field manager);
//! 4. observe the storefront (replicas, and its figures at a bounded rate);
//! 5. update the status when it changed, with an Event for every transition.
//!
//! A finalizer records the final sales figures before the deal and its children go.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use chrono::{DateTime, Utc};
use k8s_openapi::api::{
    apps::v1::Deployment,
    autoscaling::v2::HorizontalPodAutoscaler,
    core::v1::{ConfigMap, ObjectReference, Pod, Secret},
    policy::v1::PodDisruptionBudget,
};
use kube::{
    api::{Api, ListParams, Patch, PatchParams},
    core::{error_boundary::InvalidObject, DeserializeGuard},
    runtime::{
        controller::Action,
        events::{Event, EventType, Recorder},
        finalizer::{finalizer, Event as Finalizing},
    },
    Client, Resource, ResourceExt,
};
use rand::{distributions::Alphanumeric, Rng};
use serde_json::json;
use timedeal_api::{validation, Phase, ReplicaFigures, StorefrontStats, TimeDeal, TimeDealStatus};
use tracing::{info, warn};

use crate::{
    apply::{self, Applied},
    cache::{Cache, Cached},
    clock::Clock,
    conditions::{self, Health, Problem},
    database::{self, Database, Ensured, FinalFigures},
    delivery::{Delivery, Pusher},
    error::{kube, Error, Result},
    figures::FiguresClient,
    health,
    metrics::Metrics,
    phase::{self, Observed, Scale},
    pinning::{self, Change},
    resources::{self, Deal, Plan, Secrets, Settings},
    status::{self, Seen},
};

/// Keeps a deal from going before its final figures are recorded.
pub const FINALIZER: &str = "timedeal.dev/final-figures";

/// How the operator is set up.
#[derive(Debug, Clone)]
pub struct Config {
    /// Default images of the children.
    pub settings: Settings,
    /// Where the platform PostgreSQL Secret (and the leader Lease) live.
    pub operator_namespace: String,
    /// The Secret holding the platform PostgreSQL URL, and its key.
    pub postgres_secret: String,
    pub postgres_secret_key: String,
    /// Least time between two readings of a running storefront's figures.
    pub figures_interval: Duration,
    /// How long deletion waits for the final figures.
    pub final_figures_timeout: Duration,
    /// The most one call to the API server may take before reconcile gives up on it.
    pub api_timeout: Duration,
}

/// Everything reconcile needs, shared by all reconciles.
pub struct Context {
    pub client: Client,
    pub config: Config,
    pub clock: Arc<dyn Clock>,
    pub figures: FiguresClient,
    pub recorder: Recorder,
    pub metrics: Arc<Metrics>,
    /// The children as the controller's watches last saw them.
    pub cache: Cache,
    /// The platform PostgreSQL: each deal's role, and deleted deals' final figures.
    pub database: Database,
    /// Pushes new versions of a deal to its storefront replicas.
    pub pusher: Pusher,
    /// Per deal (by uid): the revision every storefront replica was last seen serving.
    delivered: Mutex<HashMap<String, i64>>,
    ensured: Ensured,
    /// Per deal (by uid): when its figures were last asked for, and what went wrong then.
    readings: Mutex<HashMap<String, Reading>>,
    /// Per deal (by uid): reconciles failed in a row, for the backoff.
    failures: Mutex<HashMap<String, u32>>,
}

#[derive(Clone)]
struct Reading {
    at: DateTime<Utc>,
    problem: Option<Problem>,
}

impl Context {
    pub fn new(
        client: Client,
        config: Config,
        clock: Arc<dyn Clock>,
        figures: FiguresClient,
        recorder: Recorder,
        metrics: Arc<Metrics>,
        cache: Cache,
    ) -> Self {
        Self {
            client,
            config,
            clock,
            figures,
            recorder,
            metrics,
            cache,
            database: Database::new(),
            pusher: Pusher::in_cluster(Duration::from_secs(2)),
            delivered: Mutex::default(),
            ensured: Ensured::default(),
            readings: Mutex::default(),
            failures: Mutex::default(),
        }
    }
}

impl Context {
    /// Pushes through `pusher` instead of to the pods' addresses (tests serve them on loopback).
    pub fn with_pusher(mut self, pusher: Pusher) -> Self {
        self.pusher = pusher;
        self
    }
}

/// The controller's reconcile: one deal, as the watcher delivered it.
pub async fn reconcile(
    guard: Arc<DeserializeGuard<TimeDeal>>,
    ctx: Arc<Context>,
) -> Result<Action> {
    let started = Instant::now();
    ctx.metrics.reconciles.inc();
    let result = match &guard.0 {
        // Boxed: the reconcile future is large, and the controller runs many.
        Ok(td) => Box::pin(reconcile_deal(Arc::new(td.clone()), &ctx)).await,
        Err(invalid) => malformed(invalid, &ctx).await,
    };
    ctx.metrics
        .duration
        .observe(started.elapsed().as_secs_f64());
    let uid = uid_of(&guard);
    match &result {
        Ok(_) => {
            ctx.failures.lock().expect("failures lock").remove(&uid);
        }
        Err(error) => {
            ctx.metrics.error(error);
            warn!(deal = %name_of(&guard), error = %error, "reconcile failed");
        }
    }
    result
}

/// Failed reconciles are retried after 5 s, doubling up to 5 minutes.
pub fn error_policy(
    guard: Arc<DeserializeGuard<TimeDeal>>,
    _: &Error,
    ctx: Arc<Context>,
) -> Action {
    let mut failures = ctx.failures.lock().expect("failures lock");
    let count = failures.entry(uid_of(&guard)).or_insert(0);
    *count += 1;
    Action::requeue(backoff(*count))
}

pub fn backoff(failures: u32) -> Duration {
    let seconds = 5u64.saturating_mul(1 << failures.saturating_sub(1).min(16));
    Duration::from_secs(seconds.min(300))
}

async fn reconcile_deal(td: Arc<TimeDeal>, ctx: &Context) -> Result<Action> {
    let namespace = td.namespace().unwrap_or_default();
    let api: Api<TimeDeal> = Api::namespaced(ctx.client.clone(), &namespace);
    let result = finalizer(&api, FINALIZER, td.clone(), |event| async {
        match event {
            Finalizing::Apply(td) => apply_deal(&td, ctx).await,
            Finalizing::Cleanup(td) => cleanup(&td, ctx).await,
        }
    })
    .await
    .map_err(|e| Error::Finalizer(Box::new(e)));
    if let Err(error) = &result {
        publish(
            ctx,
            &td,
            EventType::Warning,
            error.reason(),
            error.to_string(),
        )
        .await;
    }
    result
}

/// Apply, and when the deal itself is at fault, say so in its status before retrying.
async fn apply_deal(td: &TimeDeal, ctx: &Context) -> Result<Action> {
    let now = ctx.clock.now();
    match provision(td, ctx, now).await {
        Err(
            error @ (Error::Build(_)
            | Error::InvalidSpec(_)
            | Error::PostgresSecret { .. }
            | Error::Database(_)),
        ) => {
            let problem = Problem {
                reason: error.reason(),
                message: error.to_string(),
            };
            let old = td.status.clone().unwrap_or_default();
            let failed = status::next(
                &old,
                Seen {
                    phase: Phase::Failed,
                    scale: phase::scale_at(&td.spec, now),
                    health: Health {
                        problem: Some(&problem),
                        ..Health::default()
                    },
                    generation: td.metadata.generation.unwrap_or(0),
                    url: None,
                    replicas: None,
                    figures: None,
                    now,
                },
            );
            write_status(ctx, td, &old, &failed).await?;
            record(ctx, td, &failed);
            Err(error)
        }
        other => other,
    }
}

/// Steps 1 to 5 for a deal that is not being deleted.
async fn provision(td: &TimeDeal, ctx: &Context, now: DateTime<Utc>) -> Result<Action> {
    // 1. validate
    Deal::new(td)?;
    check_rules(td)?;
    let old = td.status.clone().unwrap_or_default();
    let generation = td.metadata.generation.unwrap_or(0);
    // Taking approval back from a deal that ran suspends it: its children and orders stay.
    let revoked = !td.spec.approved && old.pinned.is_some();
    if !td.spec.approved && !revoked {
        let scale = phase::scale_at(&td.spec, now);
        let pending = status::next(
            &old,
            Seen {
                phase: Phase::PendingApproval,
                scale,
                health: Health::default(),
                generation,
                url: None,
                replicas: None,
                figures: None,
                now,
            },
        );
        write_status(ctx, td, &old, &pending).await?;
        announce(ctx, td, &old, &pending).await;
        record(ctx, td, &pending);
        return Ok(Action::await_change());
    }
    let effective = if revoked {
        let mut suspended = td.clone();
        suspended.spec.approved = true;
        suspended.spec.suspend = true;
        suspended
    } else {
        td.clone()
    };
    let deal = Deal::new(&effective)?;
    let spec = &effective.spec;
    let scale = phase::scale_at(spec, now);
    let selling = phase::selling(spec, now);

    // 2. build the desired bundle
    let (secrets, live_secrets) = secrets(ctx, &deal).await?;
    let upgrade_now = td
        .annotations()
        .get(pinning::UPGRADE_ANNOTATION)
        .is_some_and(|v| v == "now");
    let (pinned, change) = pinning::resolve(
        spec,
        old.pinned.as_ref(),
        &ctx.config.settings,
        selling,
        upgrade_now,
    );
    let live_config = ctx
        .cache
        .get::<ConfigMap>(deal.namespace, &deal.child("deal"));
    let plan = Plan {
        scale,
        selling,
        pinned,
        revision: resources::storefront::revision(&deal, live_config.as_deref(), generation),
    };
    let bundle = resources::bundle(&deal, &ctx.config.settings, &secrets, &plan);
    let document = resources::storefront::document(&bundle.deal_config)
        .unwrap_or_default()
        .to_owned();

    // 3. apply what differs, each child on its own
    let leave_workloads = pinning::stale_template(&plan.pinned);
    let moved_from_older =
        old.pinned.as_ref().is_none_or(pinning::stale_template) && !leave_workloads;
    let outcome = apply_bundle(
        ctx,
        &deal,
        bundle,
        live_secrets,
        leave_workloads,
        moved_from_older,
    )
    .await;
    if !outcome.written.is_empty() && old.phase.is_some_and(|p| p != Phase::PendingApproval) {
        let note = format!(
            "updated to match the spec and clock: {}",
            outcome.written.join(", ")
        );
        publish(ctx, td, EventType::Normal, "ChildrenUpdated", note).await;
    }
    let unapplied = outcome.failures.first().map(|failure| Problem {
        reason: "ApplyFailed",
        message: if outcome.failures.len() > 1 {
            format!(
                "{failure} (and {} more: {})",
                outcome.failures.len() - 1,
                outcome.failures[1..].join("; ")
            )
        } else {
            failure.clone()
        },
    });

    // 4. observe
    let storefront = ctx
        .cache
        .get::<Deployment>(deal.namespace, &deal.child("storefront"));
    let replicas = storefront.as_deref().map(replica_figures);
    let ready = replicas.as_ref().is_some_and(|r| r.ready > 0);
    let all_ready = replicas
        .as_ref()
        .is_some_and(|r| r.ready >= r.desired.max(1));
    let pod_problem = if all_ready || scale == Scale::Off {
        None
    } else {
        pod_problem(ctx, &deal, storefront.as_deref()).await?
    };
    let (figures, unreachable) = if ready && scale != Scale::Off {
        read_figures_if_due(ctx, &deal, &old, now).await
    } else {
        (None, None)
    };
    // 4b. deliver the deal document to every replica now, not when the kubelet gets to it
    let config_failed = outcome.failures.iter().any(|f| f.starts_with("ConfigMap"));
    let delivery = if scale == Scale::Off || config_failed {
        Delivery::Done
    } else {
        deliver(ctx, &deal, &document, plan.revision, &secrets.control_key).await?
    };
    let sold_out = match &figures {
        Some(figures) => figures.sold_out(),
        None => old.phase == Some(Phase::SoldOut),
    };
    let provisioned = old.phase.is_some_and(|p| {
        !matches!(
            p,
            Phase::PendingApproval | Phase::Provisioning | Phase::Failed
        )
    });
    let observed = Observed {
        ready,
        sold_out,
        provisioned,
        delivered: delivery == Delivery::Done,
    };
    let phase = phase::phase_at(spec, now, observed);
    let outage = (!ready && provisioned && scale != Scale::Off).then(|| Problem {
        reason: "NoReadyReplicas",
        message: "no storefront replica is ready; shoppers get errors until one is".into(),
    });
    let problem = unapplied.clone().or(pod_problem).or(outage).or(unreachable);

    let delivering = match delivery {
        Delivery::Done => None,
        Delivery::Pending { serving, ready } => Some(format!(
            "{serving} of {ready} storefront replicas serve revision {} of the deal; pushing it \
             to the others",
            plan.revision
        )),
    };

    // 5. update the status
    let mut next = status::next(
        &old,
        Seen {
            phase,
            scale,
            health: Health {
                serving: ready || scale == Scale::Off,
                problem: problem.as_ref(),
                unapplied: unapplied.as_ref(),
                revoked,
                delivering: delivering.as_deref(),
            },
            generation,
            url: Some(resources::ingress::url(&deal)),
            replicas,
            figures: figures.as_ref(),
            now,
        },
    );
    next.pinned = Some(plan.pinned.clone());
    next.pending_upgrade = match &change {
        Change::Deferred { to } => Some(to.clone()),
        _ => None,
    };
    write_status(ctx, td, &old, &next).await?;
    announce(ctx, td, &old, &next).await;
    announce_pins(ctx, td, &old, &plan.pinned, &change).await;
    record(ctx, td, &next);

    if !outcome.failures.is_empty() {
        return Err(Error::Children(outcome.failures.join("; ")));
    }
    let clock_change = phase::requeue_after(spec, now);
    let reading = (ready && scale != Scale::Off).then(|| figures_interval(ctx, phase));
    // While pods are not all ready, look again soon: pod changes do not trigger a reconcile.
    let settling = (!all_ready && scale != Scale::Off).then_some(UNSETTLED_RECHECK);
    let pushing = (delivery != Delivery::Done).then_some(DELIVERY_RETRY);
    Ok(
        match [clock_change, reading, settling, pushing]
            .into_iter()
            .flatten()
            .min()
        {
            Some(after) => Action::requeue(after),
            None => Action::await_change(),
        },
    )
}

/// How soon a push of the deal that did not reach every replica is tried again.
const DELIVERY_RETRY: Duration = Duration::from_secs(1);

/// Pushes the deal document to the storefront replicas that do not serve its revision yet.
async fn deliver(
    ctx: &Context,
    deal: &Deal<'_>,
    document: &str,
    revision: i64,
    key: &str,
) -> Result<Delivery> {
    let uid = deal.td.uid().unwrap_or_default();
    let done = ctx
        .delivered
        .lock()
        .expect("delivered lock")
        .get(&uid)
        .is_some_and(|served| *served >= revision);
    if done {
        return Ok(Delivery::Done);
    }
    let api: Api<Pod> = Api::namespaced(ctx.client.clone(), deal.namespace);
    let selector = resources::storefront::COMPONENT;
    let params = ListParams::default().labels(&format!(
        "timedeal.dev/deal={},app.kubernetes.io/component={selector}",
        deal.name
    ));
    let what = format!(
        "listing the storefront pods of {}/{}",
        deal.namespace, deal.name
    );
    let pods = bounded(ctx.config.api_timeout, async {
        api.list(&params).await.map_err(kube(what))
    })
    .await?;
    let delivery = ctx
        .pusher
        .deliver(&pods.items, document, revision, key)
        .await;
    if delivery == Delivery::Done {
        ctx.delivered
            .lock()
            .expect("delivered lock")
            .insert(uid, revision);
    }
    Ok(delivery)
}

/// How soon a deal whose pods are not all ready is looked at again.
const UNSETTLED_RECHECK: Duration = Duration::from_secs(15);

/// Events for what the pins did: an upgrade that happened, or one kept for after the sale.
async fn announce_pins(
    ctx: &Context,
    td: &TimeDeal,
    old: &TimeDealStatus,
    pinned: &timedeal_api::Pinned,
    change: &Change,
) {
    match change {
        Change::Upgraded { from } => {
            let note = format!(
                "pods move from {} to {}",
                pinning::describe(from),
                pinning::describe(pinned)
            );
            publish(ctx, td, EventType::Normal, "Upgraded", note).await;
        }
        Change::Deferred { to } if old.pending_upgrade.as_ref() != Some(to) => {
            let note = format!(
                "the operator would move the pods to {}; they stay on {} until the deal is out \
                 of WarmingUp and Live (annotate the deal {}=now to move them at once)",
                pinning::describe(to),
                pinning::describe(pinned),
                pinning::UPGRADE_ANNOTATION
            );
            publish(ctx, td, EventType::Normal, "UpgradeDeferred", note).await;
        }
        _ => {}
    }
}

/// A spec stored before the CRD's current rules is refused here as the API server would.
fn check_rules(td: &TimeDeal) -> Result<()> {
    let mut object = serde_json::to_value(td).expect("a TimeDeal serialises");
    if let Some(map) = object.as_object_mut() {
        map.remove("status");
    }
    validation::validate(&object).map(|_| ()).map_err(|errors| {
        let lines: Vec<String> = errors.iter().map(ToString::to_string).collect();
        Error::InvalidSpec(lines.join("; "))
    })
}

/// The platform PostgreSQL URL, from the Secret named in the operator's flags.
async fn platform_url(ctx: &Context) -> Result<String> {
    let config = &ctx.config;
    let platform: Api<Secret> = Api::namespaced(ctx.client.clone(), &config.operator_namespace);
    let missing = |problem| Error::PostgresSecret {
        namespace: config.operator_namespace.clone(),
        name: config.postgres_secret.clone(),
        key: config.postgres_secret_key.clone(),
        problem,
    };
    let postgres = bounded(config.api_timeout, async {
        platform
            .get_opt(&config.postgres_secret)
            .await
            .map_err(kube(format!(
                "reading Secret {}/{}",
                config.operator_namespace, config.postgres_secret
            )))
    })
    .await?
    .ok_or_else(|| missing("does not exist"))?;
    let postgres_url = secret_value(&postgres, &config.postgres_secret_key)
        .ok_or_else(|| missing("has no such key, or its value is empty or not UTF-8"))?;
    Ok(postgres_url)
}

/// The deal's own Secrets as read: the one kind of child the operator may not watch.
#[derive(Default)]
struct LiveSecrets {
    redis: Option<Secret>,
    storefront: Option<Secret>,
}

/// The deal's secret values: read back from its Secrets when they exist, generated otherwise, so
/// a password or signing key never changes under a running storefront.
async fn secrets(ctx: &Context, deal: &Deal<'_>) -> Result<(Secrets, LiveSecrets)> {
    let config = &ctx.config;
    let postgres_url = platform_url(ctx).await?;

    let own: Api<Secret> = Api::namespaced(ctx.client.clone(), deal.namespace);
    let existing = |name: String| {
        let own = own.clone();
        bounded(config.api_timeout, async move {
            own.get_opt(&name)
                .await
                .map_err(kube(format!("reading Secret {}/{name}", deal.namespace)))
        })
    };
    let live = LiveSecrets {
        redis: existing(resources::redis::secret_name(deal)).await?,
        storefront: existing(resources::storefront::secret_name(deal)).await?,
    };
    let redis_password = live
        .redis
        .as_ref()
        .and_then(|s| secret_value(s, resources::redis::PASSWORD_KEY))
        .unwrap_or_else(|| generate(32));
    let stored = |key| live.storefront.as_ref().and_then(|s| secret_value(s, key));
    let signing_secret = stored(resources::storefront::SIGNING_KEY).unwrap_or_else(|| generate(48));
    let control_key = stored(resources::storefront::CONTROL_KEY).unwrap_or_else(|| generate(48));
    let postgres_password =
        stored(resources::storefront::POSTGRES_PASSWORD_KEY).unwrap_or_else(|| generate(32));
    let role = deal.schema();
    let uid = deal.td.uid().unwrap_or_default();
    let setup = resources::fingerprint(&serde_json::json!([postgres_url, postgres_password]));
    if !ctx.ensured.contains(&uid, &setup) {
        match ctx
            .database
            .ensure_tenant(&postgres_url, &role, &postgres_password)
            .await
        {
            Ok(()) => ctx.ensured.insert(&uid, &setup),
            // A running deal keeps the credentials it has; a new one cannot start without them.
            Err(error) if stored("postgres-url").is_some() => {
                warn!(deal = %deal.name, %error, "cannot set up the deal's PostgreSQL role; keeping its credentials");
            }
            Err(error) => return Err(Error::Database(error)),
        }
    }
    let tenant_url =
        database::tenant_url(&postgres_url, &role, &postgres_password).map_err(Error::Database)?;
    let secrets = Secrets {
        redis_password,
        signing_secret,
        control_key,
        postgres_url: tenant_url,
        postgres_password,
    };
    Ok((secrets, live))
}

fn secret_value(secret: &Secret, key: &str) -> Option<String> {
    let bytes = secret.data.as_ref()?.get(key)?;
    String::from_utf8(bytes.0.clone())
        .ok()
        .filter(|v| !v.is_empty())
}

/// A random secret of letters and digits (URL-safe, so it fits in a Redis URL as is).
fn generate(length: usize) -> String {
    rand::thread_rng()
        .sample_iter(&Alphanumeric)
        .take(length)
        .map(char::from)
        .collect()
}

/// What applying the bundle did: the children written, and those that failed and why.
#[derive(Default)]
struct Outcome {
    written: Vec<String>,
    failures: Vec<String>,
}

impl Outcome {
    fn note(&mut self, what: String, result: Result<Applied>) {
        match result {
            Ok(Applied::Written) => self.written.push(what),
            Ok(Applied::Unchanged) => {}
            Err(error) => {
                warn!(child = %what, error = %error, "cannot apply a child");
                self.failures
                    .push(format!("{what}: {}", api_message(&error)));
            }
        }
    }
}

/// The API server's own words for a failed call: its reason, code and message.
fn api_message(error: &Error) -> String {
    match error {
        Error::Kube { source, .. } => match source.as_ref() {
            kube::Error::Api(status) => {
                format!("{} ({}): {}", status.reason, status.code, status.message)
            }
            other => other.to_string(),
        },
        other => other.to_string(),
    }
}

/// Bounds one call to the API server.
async fn bounded<T>(
    deadline: Duration,
    call: impl std::future::Future<Output = Result<T>>,
) -> Result<T> {
    tokio::time::timeout(deadline, call)
        .await
        .unwrap_or(Err(Error::Timeout(deadline)))
}

/// Applies every child independently, so one the API server refuses (a quota, an invalid
/// Ingress, Pod Security) neither hides the others nor keeps the autoscaler's floor from rising
/// for the warm-up: the HPA goes first. Each call has a deadline. With `leave_workloads` the
/// storefront Deployment and Redis StatefulSet are left as they run (an upgrade deferred).
async fn apply_bundle(
    ctx: &Context,
    deal: &Deal<'_>,
    bundle: resources::Bundle,
    secrets: LiveSecrets,
    leave_workloads: bool,
    moved_from_older: bool,
) -> Outcome {
    let client = &ctx.client;
    let deadline = ctx.config.api_timeout;
    let mut outcome = Outcome::default();
    macro_rules! apply_with {
        ($child:expr, $live:expr) => {
            let child = $child;
            let what = describe(&child);
            let applied = apply::apply(client, child, $live);
            outcome.note(what, bounded(deadline, applied).await);
        };
    }
    macro_rules! apply_each {
        ($($child:expr),* $(,)?) => {$(
            let child = $child;
            let live = cached(ctx, &child);
            apply_with!(child, live.as_deref());
        )*};
    }
    macro_rules! absent {
        ($kind:ty, $name:expr) => {
            let name = $name;
            let what = format!("{} {}/{name}", <$kind>::kind(&()), deal.namespace);
            let exists = ctx.cache.get::<$kind>(deal.namespace, &name).is_some();
            let removal = apply::remove::<$kind>(client, deal.namespace, &name, exists);
            outcome.note(what, bounded(deadline, removal).await);
        };
    }
    match bundle.hpa {
        Some(hpa) => {
            apply_each!(hpa);
        }
        None => {
            absent!(HorizontalPodAutoscaler, deal.child("storefront"));
        }
    }
    // Secrets and config before the pods that read them; Redis before the storefront.
    apply_with!(bundle.redis_secret, secrets.redis.as_ref());
    apply_with!(bundle.storefront_secret, secrets.storefront.as_ref());
    apply_each!(
        bundle.deal_config,
        bundle.redis_policy,
        bundle.storefront_policy
    );
    if !leave_workloads {
        if moved_from_older {
            // Releases before the StatefulSet ran Redis as a Deployment of the same name.
            absent!(Deployment, deal.child("redis"));
        }
        apply_each!(bundle.redis);
    }
    apply_each!(bundle.redis_service);
    if !leave_workloads {
        apply_each!(bundle.storefront);
    }
    apply_each!(bundle.storefront_service);
    match bundle.redis_pdb {
        Some(pdb) => {
            apply_each!(pdb);
        }
        None => {
            absent!(PodDisruptionBudget, deal.child("redis"));
        }
    }
    match bundle.pdb {
        Some(pdb) => {
            apply_each!(pdb);
        }
        None => {
            absent!(PodDisruptionBudget, deal.child("storefront"));
        }
    }
    apply_each!(bundle.ingress);
    outcome
}

/// `Kind namespace/name` of a child.
fn describe<K: Resource<DynamicType = ()>>(child: &K) -> String {
    format!(
        "{} {}/{}",
        K::kind(&()),
        child.meta().namespace.as_deref().unwrap_or(""),
        child.meta().name.as_deref().unwrap_or("")
    )
}

/// A child as the controller last watched it.
fn cached<K: Cached>(ctx: &Context, child: &K) -> Option<Arc<K>> {
    let meta = child.meta();
    ctx.cache.get::<K>(
        meta.namespace.as_deref().unwrap_or(""),
        meta.name.as_deref().unwrap_or(""),
    )
}

fn replica_figures(deployment: &Deployment) -> ReplicaFigures {
    let status = deployment.status.clone().unwrap_or_default();
    ReplicaFigures {
        desired: status
            .replicas
            .or_else(|| deployment.spec.as_ref().and_then(|s| s.replicas))
            .unwrap_or(0),
        ready: status.ready_replicas.unwrap_or(0),
    }
}

/// Why the deal's pods are not all ready, from the pods themselves (listed by the deal's label).
async fn pod_problem(
    ctx: &Context,
    deal: &Deal<'_>,
    storefront: Option<&Deployment>,
) -> Result<Option<Problem>> {
    let api: Api<Pod> = Api::namespaced(ctx.client.clone(), deal.namespace);
    let params = ListParams::default().labels(&format!("timedeal.dev/deal={}", deal.name));
    let what = format!("listing the pods of {}/{}", deal.namespace, deal.name);
    let pods = bounded(ctx.config.api_timeout, async {
        api.list(&params).await.map_err(kube(what))
    })
    .await?;
    Ok(health::problem(storefront, &pods.items))
}

/// How often a deal's figures are read: often while shoppers come, rarely once it is over.
fn figures_interval(ctx: &Context, phase: Phase) -> Duration {
    match phase {
        Phase::Ended | Phase::Suspended => ctx.config.figures_interval * 20,
        _ => ctx.config.figures_interval,
    }
}

/// Reads the figures when the last attempt is older than the interval; otherwise repeats what
/// the last attempt found wrong, so Degraded does not flicker between readings.
async fn read_figures_if_due(
    ctx: &Context,
    deal: &Deal<'_>,
    old: &TimeDealStatus,
    now: DateTime<Utc>,
) -> (Option<StorefrontStats>, Option<Problem>) {
    let uid = deal.td.uid().unwrap_or_default();
    let interval = figures_interval(ctx, old.phase.unwrap_or(Phase::Provisioning));
    let last = ctx
        .readings
        .lock()
        .expect("readings lock")
        .get(&uid)
        .cloned();
    if let Some(last) = last {
        let due = last.at + chrono::Duration::from_std(interval).unwrap_or_default();
        if now < due {
            return (None, last.problem);
        }
    }
    let (figures, problem) = match ctx.figures.read(deal).await {
        Ok(figures) => (Some(figures), None),
        Err(unavailable) => (
            None,
            Some(Problem {
                reason: "StorefrontUnreachable",
                message: format!("{unavailable}; retrying every {}s", interval.as_secs()),
            }),
        ),
    };
    ctx.readings.lock().expect("readings lock").insert(
        uid,
        Reading {
            at: now,
            problem: problem.clone(),
        },
    );
    (figures, problem)
}

/// Writes the status, unless it is what the API server already holds.
async fn write_status(
    ctx: &Context,
    td: &TimeDeal,
    old: &TimeDealStatus,
    new: &TimeDealStatus,
) -> Result<()> {
    if td.status.is_some() && old == new {
        return Ok(());
    }
    let namespace = td.namespace().unwrap_or_default();
    let name = td.name_any();
    let api: Api<TimeDeal> = Api::namespaced(ctx.client.clone(), &namespace);
    api.patch_status(
        &name,
        &PatchParams::default(),
        &Patch::Merge(json!({ "status": status_patch(old, new) })),
    )
    .await
    .map_err(kube(format!(
        "writing the status of TimeDeal {namespace}/{name}"
    )))?;
    Ok(())
}

/// The merge patch from `old` to `new`: a field `new` no longer has is removed with `null`
/// (serialisation leaves it out, which a merge patch would read as "keep").
fn status_patch(old: &TimeDealStatus, new: &TimeDealStatus) -> serde_json::Value {
    let mut patch = serde_json::to_value(new).expect("a status serialises");
    if let (Some(patch), serde_json::Value::Object(old)) = (
        patch.as_object_mut(),
        serde_json::to_value(old).expect("a status serialises"),
    ) {
        for key in old.keys() {
            patch.entry(key.clone()).or_insert(serde_json::Value::Null);
        }
    }
    patch
}

/// Events for a new phase, and for Degraded turning on or off.
async fn announce(ctx: &Context, td: &TimeDeal, old: &TimeDealStatus, new: &TimeDealStatus) {
    if old.phase != new.phase {
        let phase = new.phase.unwrap_or(Phase::Provisioning);
        let ready = condition(new, conditions::READY);
        let note = match old.phase {
            Some(before) => format!(
                "{before:?} → {phase:?}: {}",
                ready.map_or("", |c| &c.message)
            ),
            None => format!("{phase:?}: {}", ready.map_or("", |c| &c.message)),
        };
        info!(deal = %td.name_any(), namespace = %td.namespace().unwrap_or_default(), %note, "phase changed");
        publish(ctx, td, EventType::Normal, &format!("{phase:?}"), note).await;
    }
    let degraded =
        |s: &TimeDealStatus| condition(s, conditions::DEGRADED).is_some_and(|c| c.status == "True");
    if let Some(now) = condition(new, conditions::DEGRADED) {
        if degraded(new) && !degraded(old) {
            publish(
                ctx,
                td,
                EventType::Warning,
                &now.reason,
                now.message.clone(),
            )
            .await;
        } else if !degraded(new) && degraded(old) {
            publish(
                ctx,
                td,
                EventType::Normal,
                "Recovered",
                "no problem seen any more".into(),
            )
            .await;
        }
    }
}

fn condition<'a>(
    status: &'a TimeDealStatus,
    type_: &str,
) -> Option<&'a k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition> {
    status.conditions.iter().find(|c| c.type_ == type_)
}

/// The deal's phase and health in the metrics, from the status just written.
fn record(ctx: &Context, td: &TimeDeal, status: &TimeDealStatus) {
    let phase = status.phase.unwrap_or(Phase::Provisioning);
    ctx.metrics
        .phase(&td.uid().unwrap_or_default(), Some(phase));
    let degraded = condition(status, conditions::DEGRADED).is_some_and(|c| c.status == "True");
    let stock_left = match (phase, &status.stock) {
        (Phase::Live | Phase::SoldOut, Some(stock)) if td.spec.product.stock > 0 => {
            Some(stock.remaining as f64 / td.spec.product.stock as f64)
        }
        _ => None,
    };
    ctx.metrics.deal(
        &td.namespace().unwrap_or_default(),
        &td.name_any(),
        degraded,
        stock_left,
    );
}

/// The deal is going: read its figures one last time (bounded in time), keep them in the
/// status and an Event, then let the children go with it.
async fn cleanup(td: &TimeDeal, ctx: &Context) -> Result<Action> {
    ctx.metrics.phase(&td.uid().unwrap_or_default(), None);
    ctx.metrics
        .forget_deal(&td.namespace().unwrap_or_default(), &td.name_any());
    let old = td.status.clone().unwrap_or_default();
    if matches!(old.phase, None | Some(Phase::PendingApproval)) {
        return Ok(Action::await_change());
    }
    let deal = Deal::new(td)?;
    let currency = &td.spec.product.currency;
    let timeout = ctx.config.final_figures_timeout;
    let reading = match tokio::time::timeout(timeout, ctx.figures.read(&deal)).await {
        Ok(reading) => reading.map_err(|e| e.to_string()),
        Err(_) => Err(format!(
            "the storefront did not answer within {}s",
            timeout.as_secs()
        )),
    };
    let last = match reading {
        Ok(figures) => {
            let mut last = old.clone();
            status::copy_figures(&mut last, &figures, ctx.clock.now());
            write_status(ctx, td, &old, &last).await?;
            let note = status::final_figures_note(&last, currency);
            info!(deal = %td.name_any(), %note, "deal deleted");
            publish(ctx, td, EventType::Normal, "FinalFigures", note).await;
            last
        }
        Err(why) => {
            let note = format!(
                "{why}; keeping the figures last read{}: {}",
                old.figures_updated_at
                    .as_ref()
                    .map(|t| format!(" at {}", t.0))
                    .unwrap_or_default(),
                status::final_figures_note(&old, currency)
            );
            publish(ctx, td, EventType::Warning, "FinalFiguresUnavailable", note).await;
            old
        }
    };
    // The Event lasts an hour; PostgreSQL keeps the figures. Until they are there, the deal stays.
    let platform = platform_url(ctx).await?;
    let record = FinalFigures {
        namespace: deal.namespace.to_owned(),
        name: deal.name.to_owned(),
        uid: td.uid().unwrap_or_default(),
        figures: json!({
            "stock": last.stock,
            "orders": last.orders,
            "queue": last.queue,
            "revenue": last.revenue,
            "currency": currency,
            "startedAt": last.started_at,
            "soldOutAt": last.sold_out_at,
            "endedAt": last.ended_at,
            "figuresUpdatedAt": last.figures_updated_at,
        }),
    };
    if let Err(error) = ctx.database.record_final_figures(&platform, &record).await {
        let note = format!("cannot keep the final figures in PostgreSQL, retrying: {error}");
        publish(ctx, td, EventType::Warning, "FinalFiguresNotRecorded", note).await;
        return Err(Error::Database(error));
    }
    // Its storefronts are going; their credentials stop working. The orders stay.
    if let Err(error) = ctx.database.retire_tenant(&platform, &deal.schema()).await {
        warn!(deal = %deal.name, %error, "cannot retire the deal's PostgreSQL role");
    }
    ctx.ensured.forget(&record.uid);
    Ok(Action::await_change())
}

/// An object the watcher could not read as a TimeDeal: say so on it, and leave it alone.
async fn malformed(invalid: &InvalidObject, ctx: &Context) -> Result<Action> {
    let meta = &invalid.metadata;
    warn!(
        deal = meta.name.as_deref().unwrap_or(""),
        namespace = meta.namespace.as_deref().unwrap_or(""),
        error = %invalid.error,
        "cannot read TimeDeal"
    );
    let reference = ObjectReference {
        api_version: Some(TimeDeal::api_version(&()).into()),
        kind: Some(TimeDeal::kind(&()).into()),
        name: meta.name.clone(),
        namespace: meta.namespace.clone(),
        uid: meta.uid.clone(),
        ..Default::default()
    };
    let event = Event {
        type_: EventType::Warning,
        reason: "Malformed".into(),
        note: Some(truncate(format!(
            "the object cannot be read as a TimeDeal and is left alone: {}",
            invalid.error
        ))),
        action: "Reconcile".into(),
        secondary: None,
    };
    if let Err(e) = ctx.recorder.publish(&event, &reference).await {
        warn!(error = %e, "cannot publish an Event");
    }
    if meta.deletion_timestamp.is_some() {
        release_malformed(invalid, ctx).await?;
    }
    Ok(Action::await_change())
}

/// A deal being deleted that cannot be read has no figures to keep: the finalizer goes, so
/// `kubectl delete` completes rather than hanging on an object nobody can fix.
async fn release_malformed(invalid: &InvalidObject, ctx: &Context) -> Result<()> {
    let meta = &invalid.metadata;
    let finalizers = meta.finalizers.clone().unwrap_or_default();
    if !finalizers.iter().any(|f| f == FINALIZER) {
        return Ok(());
    }
    let (Some(name), Some(namespace)) = (&meta.name, &meta.namespace) else {
        return Ok(());
    };
    let rest: Vec<&String> = finalizers.iter().filter(|f| *f != FINALIZER).collect();
    let api: Api<DeserializeGuard<TimeDeal>> = Api::namespaced(ctx.client.clone(), namespace);
    // The resource version makes this a compare-and-swap: a finalizer added meanwhile stays.
    let patch = json!({"metadata": {
        "finalizers": rest,
        "resourceVersion": meta.resource_version,
    }});
    api.patch(name, &PatchParams::default(), &Patch::Merge(patch))
        .await
        .map_err(kube(format!(
            "removing the finalizer of the unreadable TimeDeal {namespace}/{name}"
        )))?;
    info!(deal = %name, %namespace, "unreadable deal released for deletion");
    Ok(())
}

/// Publishes an Event on the deal; a failure to publish is logged, never fatal.
async fn publish(ctx: &Context, td: &TimeDeal, type_: EventType, reason: &str, note: String) {
    let event = Event {
        type_,
        reason: reason.into(),
        note: Some(truncate(note)),
        action: "Reconcile".into(),
        secondary: None,
    };
    if let Err(e) = ctx.recorder.publish(&event, &td.object_ref(&())).await {
        warn!(error = %e, "cannot publish an Event");
    }
}

/// Event notes are limited to 1 kB.
fn truncate(mut note: String) -> String {
    if note.len() > 1000 {
        let mut end = 997;
        while !note.is_char_boundary(end) {
            end -= 1;
        }
        note.truncate(end);
        note.push_str("...");
    }
    note
}

fn uid_of(guard: &DeserializeGuard<TimeDeal>) -> String {
    match &guard.0 {
        Ok(td) => td.uid(),
        Err(invalid) => invalid.metadata.uid.clone(),
    }
    .unwrap_or_default()
}

fn name_of(guard: &DeserializeGuard<TimeDeal>) -> String {
    match &guard.0 {
        Ok(td) => td.name_any(),
        Err(invalid) => invalid.metadata.name.clone().unwrap_or_default(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failures_back_off_to_five_minutes() {
        let waits: Vec<u64> = (1..=8).map(|n| backoff(n).as_secs()).collect();
        assert_eq!(waits, [5, 10, 20, 40, 80, 160, 300, 300]);
        assert_eq!(backoff(u32::MAX).as_secs(), 300);
    }

    #[test]
    fn generated_secrets_are_long_and_distinct() {
        let (a, b) = (generate(48), generate(48));
        assert_eq!(a.len(), 48);
        assert!(a.chars().all(|c| c.is_ascii_alphanumeric()));
        assert_ne!(a, b);
    }

    #[test]
    fn long_notes_are_cut_at_a_character_boundary() {
        let note = truncate("é".repeat(800));
        assert!(note.len() <= 1000);
        assert!(note.ends_with("..."));
    }
}
