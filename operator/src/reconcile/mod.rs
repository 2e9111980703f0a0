//! The reconcile loop: one TimeDeal at a time, in steps.
//!
//! 1. validate: the deal can own children and its spec keeps the CRD's rules;
//! 2. build the desired bundle of children for the phase the clock says;
//! 3. apply what differs from what runs (server-side apply, one field manager);
//! 4. observe the storefront (replicas, and its figures at a bounded rate);
//! 5. update the status when it changed, with an Event for every transition.
//!
//! A finalizer records the final sales figures before the deal and its children go.
//!
//! `provision` reads as those steps, as named stages (gate, database, pins, children, observe,
//! delivery, status) in the order the races between them need; each step's work is in a module
//! of its own: `gate` (1), `secrets` (what step 2 needs), `children` (3), `observe` (4),
//! `report` (5), `deletion`.

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

mod children;
mod deletion;
mod gate;
mod observe;
mod provision;
mod report;
mod secrets;

use children::*;
use deletion::*;
use gate::*;
use observe::*;
use provision::*;
use report::*;
use secrets::*;

/// How soon a failed deletion of personal data after retention is tried again.
const ERASE_RETRY: Duration = Duration::from_secs(60);

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
    /// The portal's ServiceAccount, bound in every company's namespace.
    pub portal_account: crate::company::tenancy::PortalAccount,
    /// Storefront replicas the platform can run at once (the capacity calendar); none: no limit.
    pub calendar_replicas: Option<i32>,
    /// Which hosts each company's deals may take.
    pub hosts: timedeal_api::hosts::HostRules,
    /// The rental portal's own PostgreSQL role, granted what it needs in the platform's tables;
    /// empty: none (the portal then shares the platform's user).
    pub portal_database_role: String,
}

/// How soon the platform's tables and the portal's grants are tried again after a failure (the
/// portal's calendar waits for them).
const PREPARE_RETRY: Duration = Duration::from_secs(10);

/// Makes the platform's own tables and grants the portal's database user its rights, once the
/// operator leads; tried again every 10 s until it works (PostgreSQL down, its Secret not made
/// yet, the portal's role not created yet), saying why once.
pub async fn prepare_platform(ctx: Arc<Context>) {
    let mut said = false;
    loop {
        let prepared = async {
            let url = platform_url(&ctx).await?;
            ctx.database
                .prepare_platform(&url, &ctx.config.portal_database_role)
                .await?;
            Ok::<_, Error>(())
        };
        match Box::pin(prepared).await {
            Ok(()) => {
                info!(
                    portal_role = %ctx.config.portal_database_role,
                    "the platform's tables are ready"
                );
                return;
            }
            Err(error) => {
                if !said {
                    warn!(%error, "cannot prepare the platform's tables yet; retrying every 10 s");
                    said = true;
                }
                tokio::time::sleep(PREPARE_RETRY).await;
            }
        }
    }
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
    /// Per deal (by uid): a delivery still behind, and when to push again.
    behind: Mutex<HashMap<String, crate::delivery::Behind>>,
    ensured: Ensured,
    /// Per deal (by uid): the booking last written to the calendar.
    booked: Ensured,
    /// Per deal (by uid): when its figures were last asked for, and what went wrong then.
    readings: Mutex<HashMap<String, Reading>>,
    /// Per deal (by uid): reconciles failed in a row, for the backoff.
    failures: Mutex<HashMap<String, u32>>,
    /// Since when reconciles wait for the caches to load, and whether that was said.
    loading_since: Mutex<Option<(Instant, bool)>>,
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
            behind: Mutex::default(),
            ensured: Ensured::default(),
            booked: Ensured::default(),
            readings: Mutex::default(),
            failures: Mutex::default(),
            loading_since: Mutex::default(),
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
    // A malformed object needs no cache: only its finalizer is released.
    if guard.0.is_ok() {
        if let Some(wait) = caches_loading(&ctx) {
            return Ok(wait);
        }
    }
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

/// How often a reconcile looks again while the caches load.
const CACHE_WAIT: Duration = Duration::from_secs(1);

/// A requeue while any store the reconciles read still waits for its first listing: an empty
/// store would read as "no Company" or "no child", and a decision on it would suspend live
/// sales. Said once when the wait passes 30 s (a watch the operator may not make, say).
pub fn caches_loading(ctx: &Context) -> Option<Action> {
    let loading = ctx.cache.loading();
    let mut since = ctx.loading_since.lock().expect("loading lock");
    if loading.is_empty() {
        *since = None;
        return None;
    }
    let (started, said) = since.get_or_insert((Instant::now(), false));
    if !*said && started.elapsed() > Duration::from_secs(30) {
        warn!(
            ?loading,
            "still waiting for the first listing of these kinds; reconciles wait meanwhile"
        );
        *said = true;
    }
    Some(Action::requeue(CACHE_WAIT))
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
    // Boxed: the whole walk through the steps lives on the heap, not on the caller's stack.
    match Box::pin(provision(td, ctx, now)).await {
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
            let health = Health {
                problem: Some(&problem),
                ..Health::default()
            };
            let failed = unbuilt(td, &old, Phase::Failed, health, now);
            write_status(ctx, td, &old, &failed).await?;
            record(ctx, td, &failed);
            Err(error)
        }
        other => other,
    }
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
}
