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
//! `provision` below reads as those steps; each step's work is in a module of its own:
//! `children` (3), `observe` (4), `report` (5), `secrets` (what step 2 needs), `deletion`.

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
mod observe;
mod report;
mod secrets;

use children::*;
use deletion::*;
use observe::*;
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
    let ran = old
        .phase
        .is_some_and(|p| !matches!(p, Phase::PendingApproval));
    // A deal runs only in an approved company's namespace and within its quotas; refused, it is
    // treated as unapproved (one that ran is suspended, its data kept).
    let mut refused = crate::company::gate(&ctx.cache.companies, td, &ctx.config.settings);
    // Approving a deal that has not run yet re-checks its host and the capacity calendar
    // against every other deal.
    if refused.is_none() && td.spec.approved && !ran {
        // Boxed: only before approval, kept off every reconcile's stack.
        let all = Box::pin(all_deals(ctx)).await?;
        refused = host_taken(ctx, td, &all).or(over_capacity(ctx, td, &all));
    }
    let approved = td.spec.approved && refused.is_none();
    let revoked = !approved && ran;
    if !approved && !revoked {
        let scale = phase::scale_at(&td.spec, now);
        let pending = status::next(
            &old,
            Seen {
                phase: Phase::PendingApproval,
                scale,
                health: Health {
                    refused: refused.as_ref(),
                    ..Health::default()
                },
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
    // Boxed: reading and setting up the credentials is deep, kept off the reconcile's stack.
    let (secrets, live_secrets) = Box::pin(secrets(ctx, &deal)).await?;
    let platform = live_secrets.platform.clone();
    book(ctx, &deal, &platform).await;
    let upgrade_now = td
        .annotations()
        .get(pinning::UPGRADE_ANNOTATION)
        .is_some_and(|v| v == "now");
    // A deal a release before pinning built runs what its workloads say, on older templates.
    let legacy = match (&old.pinned, ran) {
        (None, true) => Some(pinning::legacy(
            &ctx.config.settings,
            image_of(ctx, &deal, "storefront"),
            image_of(ctx, &deal, "redis"),
        )),
        _ => None,
    };
    let (pinned, change) = pinning::resolve(
        spec,
        old.pinned.as_ref().or(legacy.as_ref()),
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
    if let Some(read) = &figures {
        // The sale's history, for the company's chart; a gap in it holds nothing up.
        let sample = timedeal_api::stats::Sample::from(read);
        let uid = td.uid().unwrap_or_default();
        if let Err(error) = ctx.database.sample(&platform, &uid, &sample).await {
            warn!(deal = %deal.name, %error, "cannot keep a figures sample");
        }
    }
    // 4b. deliver the deal document to every replica now, not when the kubelet gets to it
    let config_failed = outcome.failures.iter().any(|f| f.starts_with("ConfigMap"));
    let delivery = if scale == Scale::Off || config_failed {
        Delivery::Done
    } else {
        Box::pin(deliver(
            ctx,
            &deal,
            &document,
            plan.revision,
            &secrets.control_key,
        ))
        .await?
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
                refused: refused.as_ref(),
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
    next.schema = Some(deal.schema());
    next.personal_data_deleted_at = match old.personal_data_deleted_at.clone() {
        None if scale == Scale::Off => erase_personal_data(ctx, &deal, &platform, now).await,
        kept => kept,
    };
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
    let pushing = (delivery != Delivery::Done).then(|| push_again_in(ctx, td, now));
    // Personal data not yet deleted after retention: try again.
    let erasing =
        (scale == Scale::Off && next.personal_data_deleted_at.is_none()).then_some(ERASE_RETRY);
    Ok(
        match [clock_change, reading, settling, pushing, erasing]
            .into_iter()
            .flatten()
            .min()
        {
            Some(after) => Action::requeue(after),
            None => Action::await_change(),
        },
    )
}

/// Retention is over: the deal's personal data goes, whether or not a storefront runs to do it.
/// A failure is retried on the next reconcile (the status stays without a time).
async fn erase_personal_data(
    ctx: &Context,
    deal: &Deal<'_>,
    platform: &str,
    now: DateTime<Utc>,
) -> Option<k8s_openapi::apimachinery::pkg::apis::meta::v1::Time> {
    // Boxed: a rare step, kept off the stack of every reconcile's future.
    let schema = deal.schema();
    let uid = deal.td.uid().unwrap_or_default();
    let erase = Box::pin(ctx.database.erase_personal_data(platform, &schema, &uid));
    match erase.await {
        Ok(()) => {
            info!(deal = %deal.name, "retention is over: personal data deleted");
            Some(crate::conditions::time(now))
        }
        Err(error) => {
            warn!(deal = %deal.name, %error, "cannot delete the deal's personal data yet");
            None
        }
    }
}

/// The image of the first container of the deal's Deployment `<deal>-<suffix>`, as watched.
fn image_of(ctx: &Context, deal: &Deal<'_>, suffix: &str) -> Option<String> {
    ctx.cache
        .get::<Deployment>(deal.namespace, &deal.child(suffix))?
        .spec
        .as_ref()?
        .template
        .spec
        .as_ref()?
        .containers
        .first()?
        .image
        .clone()
}

/// Every TimeDeal there is, read from the API server (not a cache): what approval is checked
/// against.
async fn all_deals(ctx: &Context) -> Result<Vec<TimeDeal>> {
    Ok(tokio::time::timeout(
        ctx.config.api_timeout,
        Api::<TimeDeal>::all(ctx.client.clone()).list(&ListParams::default()),
    )
    .await
    .map_err(|_| Error::Timeout(ctx.config.api_timeout))?
    .map_err(crate::error::kube(
        "listing TimeDeals to check a host and the capacity calendar",
    ))?
    .items)
}

/// Why `td` may not take its host, if it may not: not its company's, the platform's own, or
/// another deal's (see `timedeal_api::hosts`).
fn host_taken(ctx: &Context, td: &TimeDeal, all: &[TimeDeal]) -> Option<Problem> {
    let namespace = td.namespace().unwrap_or_default();
    let companies = ctx.cache.companies.state();
    let company = companies.iter().find(|c| c.owns(&namespace))?;
    ctx.config
        .hosts
        .problem(td, company, all)
        .map(|message| Problem {
            reason: "HostNotAllowed",
            message,
        })
}

/// Why approving `td` would overcommit the platform, if it would: its booking against every other
/// approved deal's, with the nearest starts that fit.
fn over_capacity(ctx: &Context, td: &TimeDeal, all: &[TimeDeal]) -> Option<Problem> {
    use timedeal_api::calendar::{self, Booking};
    let capacity = ctx.config.calendar_replicas?;
    let others: Vec<Booking> = all
        .iter()
        .filter(|d| d.spec.approved && d.uid() != td.uid())
        .map(Booking::of)
        .collect();
    let mine = Booking::of(td);
    let Err(over) = calendar::fits(&mine, &others, capacity) else {
        return None;
    };
    let free = calendar::free_starts(td, &others, capacity, ctx.clock.now());
    Some(Problem {
        reason: "OverCapacity",
        message: format!(
            "approving it would book {} storefront replicas at {} when {} of the platform's {} \
             are booked; move it to a start that fits ({}) or lower capacity.peakReplicas",
            mine.replicas,
            over.at.format("%Y-%m-%d %H:%M UTC"),
            over.booked,
            over.capacity,
            free
        ),
    })
}

/// Writes the deal's booking for the portal's calendar when it changed; a failure is logged and
/// retried on the next reconcile, never holding the deal up.
async fn book(ctx: &Context, deal: &Deal<'_>, platform: &str) {
    let booking = timedeal_api::calendar::Booking::of(deal.td);
    let fingerprint = resources::fingerprint(&serde_json::json!(booking));
    if ctx.booked.contains(&booking.key, &fingerprint) {
        return;
    }
    match ctx
        .database
        .book(platform, deal.namespace, deal.name, &booking)
        .await
    {
        Ok(()) => ctx.booked.insert(&booking.key, &fingerprint),
        Err(error) => warn!(deal = %deal.name, %error, "cannot record the deal's booking"),
    }
}

/// How soon a deal whose pods are not all ready is looked at again.
const UNSETTLED_RECHECK: Duration = Duration::from_secs(15);

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
