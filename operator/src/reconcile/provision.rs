//! Steps 1 to 5 for a deal that is not being deleted, as named stages in the order the races
//! between them need:
//!
//! - **gate** (`gate.rs`): reads the Company store, which the reconcile waited to be loaded, so
//!   an operator that just took over never takes a live deal's company for unapproved;
//! - **database**: the deal's role and its password exist before the Secret that carries them;
//! - **pins**: the images and templates are chosen before the children they are built from;
//! - **children**: applied each on its own, the autoscaler first;
//! - **observe**: the storefront's replicas, pods and figures, as watched;
//! - **delivery**: the deal document pushed to every replica only after its ConfigMap is
//!   applied, at the revision the watched ConfigMap carries (never one lower);
//! - **status**: written last, from everything seen, with an Event for each transition.

use super::*;

/// The deal, as the stages after the gate build and watch it.
pub(super) async fn provision(td: &TimeDeal, ctx: &Context, now: DateTime<Utc>) -> Result<Action> {
    let old = td.status.clone().unwrap_or_default();
    let admission = Box::pin(gate(td, ctx, &old)).await?;
    let Some(effective) = admission.effective(td) else {
        return pending(ctx, td, &old, &admission, now).await;
    };
    let deal = Deal::new(&effective)?;
    let spec = &effective.spec;
    let scale = phase::scale_at(spec, now);
    let selling = phase::selling(spec, now);

    let (secrets, live_secrets) = Box::pin(database(ctx, &deal)).await?;
    let platform = live_secrets.platform.clone();
    let (pinned, change) = pins(ctx, td, &deal, &old, admission.ran, selling);
    let generation = td.metadata.generation.unwrap_or(0);
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
    let applied = Box::pin(children(ctx, td, &deal, &old, &plan, bundle, live_secrets)).await;
    let seen = Box::pin(observe_storefront(
        ctx, td, &deal, &old, scale, &platform, now,
    ))
    .await?;
    // The ConfigMap was refused: there is no new revision to push.
    let config_failed = applied.failures.iter().any(|f| f.starts_with("ConfigMap"));
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
    Box::pin(update_status(
        ctx,
        td,
        &deal,
        Stages {
            old: &old,
            admission: &admission,
            plan: &plan,
            change: &change,
            applied: &applied,
            seen: &seen,
            delivery: &delivery,
            platform: &platform,
        },
        now,
    ))
    .await
}

/// The deal's database role and every secret value its children carry; the calendar's
/// booking, which a failure never holds up.
async fn database(ctx: &Context, deal: &Deal<'_>) -> Result<(Secrets, LiveSecrets)> {
    let (secrets, live_secrets) = secrets(ctx, deal).await?;
    book(ctx, deal, &live_secrets.platform).await;
    Ok((secrets, live_secrets))
}

/// The images and templates the deal runs: kept during a sale, moved after it or when the admin
/// says now (`pinning`).
fn pins(
    ctx: &Context,
    td: &TimeDeal,
    deal: &Deal<'_>,
    old: &TimeDealStatus,
    ran: bool,
    selling: bool,
) -> (timedeal_api::Pinned, Change) {
    let upgrade_now = td
        .annotations()
        .get(pinning::UPGRADE_ANNOTATION)
        .is_some_and(|v| v == "now");
    // A deal a release before pinning built runs what its workloads say, on older templates.
    let legacy = match (&old.pinned, ran) {
        (None, true) => Some(pinning::legacy(
            &ctx.config.settings,
            image_of(ctx, deal, "storefront"),
            image_of(ctx, deal, "redis"),
        )),
        _ => None,
    };
    pinning::resolve(
        &deal.td.spec,
        old.pinned.as_ref().or(legacy.as_ref()),
        &ctx.config.settings,
        selling,
        upgrade_now,
    )
}

/// What applying the children did.
pub(super) struct Applied {
    pub(super) failures: Vec<String>,
    /// The first refusal, as the status says it.
    pub(super) problem: Option<Problem>,
}

/// Applies what differs, each child on its own; an Event names what was rewritten.
async fn children(
    ctx: &Context,
    td: &TimeDeal,
    deal: &Deal<'_>,
    old: &TimeDealStatus,
    plan: &Plan,
    bundle: resources::Bundle,
    live_secrets: LiveSecrets,
) -> Applied {
    let leave_workloads = pinning::stale_template(&plan.pinned);
    let moved_from_older =
        old.pinned.as_ref().is_none_or(pinning::stale_template) && !leave_workloads;
    let outcome = apply_bundle(
        ctx,
        deal,
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
    let problem = outcome.failures.first().map(|failure| Problem {
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
    Applied {
        failures: outcome.failures,
        problem,
    }
}

/// What the storefront looks like now.
pub(super) struct Observation {
    pub(super) replicas: Option<ReplicaFigures>,
    pub(super) ready: bool,
    pub(super) all_ready: bool,
    pub(super) pod_problem: Option<Problem>,
    pub(super) figures: Option<StorefrontStats>,
    pub(super) unreachable: Option<Problem>,
}

/// The storefront's replicas and pods as watched, and its figures at a bounded rate (each
/// reading also goes to the sale's history).
async fn observe_storefront(
    ctx: &Context,
    td: &TimeDeal,
    deal: &Deal<'_>,
    old: &TimeDealStatus,
    scale: Scale,
    platform: &str,
    now: DateTime<Utc>,
) -> Result<Observation> {
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
        pod_problem(ctx, deal, storefront.as_deref()).await?
    };
    let (figures, unreachable) = if ready && scale != Scale::Off {
        read_figures_if_due(ctx, deal, old, now).await
    } else {
        (None, None)
    };
    if let Some(read) = &figures {
        // The sale's history, for the company's chart; a gap in it holds nothing up.
        let sample = timedeal_api::stats::Sample::from(read);
        let uid = td.uid().unwrap_or_default();
        if let Err(error) = ctx.database.sample(platform, &uid, &sample).await {
            warn!(deal = %deal.name, %error, "cannot keep a figures sample");
        }
    }
    Ok(Observation {
        replicas,
        ready,
        all_ready,
        pod_problem,
        figures,
        unreachable,
    })
}

/// What the stages before the status found.
struct Stages<'a> {
    old: &'a TimeDealStatus,
    admission: &'a Admission,
    plan: &'a Plan,
    change: &'a Change,
    applied: &'a Applied,
    seen: &'a Observation,
    delivery: &'a Delivery,
    platform: &'a str,
}

/// The phase and conditions from everything seen, written when they changed; personal data
/// erased once retention is over; the next look scheduled.
async fn update_status(
    ctx: &Context,
    td: &TimeDeal,
    deal: &Deal<'_>,
    stages: Stages<'_>,
    now: DateTime<Utc>,
) -> Result<Action> {
    let Stages {
        old,
        admission,
        plan,
        change,
        applied,
        seen,
        delivery,
        platform,
    } = stages;
    let spec = &deal.td.spec;
    let scale = plan.scale;
    let sold_out = match &seen.figures {
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
        ready: seen.ready,
        sold_out,
        provisioned,
        delivered: *delivery == Delivery::Done,
    };
    let phase = phase::phase_at(spec, now, observed);
    let outage = (!seen.ready && provisioned && scale != Scale::Off).then(|| Problem {
        reason: "NoReadyReplicas",
        message: "no storefront replica is ready; shoppers get errors until one is".into(),
    });
    let problem = applied
        .problem
        .clone()
        .or(seen.pod_problem.clone())
        .or(outage)
        .or(seen.unreachable.clone());
    let delivering = match delivery {
        Delivery::Done => None,
        Delivery::Pending { serving, ready } => Some(format!(
            "{serving} of {ready} storefront replicas serve revision {} of the deal; pushing it \
             to the others",
            plan.revision
        )),
    };
    let mut next = status::next(
        old,
        Seen {
            phase,
            scale,
            health: Health {
                serving: seen.ready || scale == Scale::Off,
                problem: problem.as_ref(),
                unapplied: applied.problem.as_ref(),
                revoked: admission.revoked,
                refused: admission.refused.as_ref(),
                delivering: delivering.as_deref(),
            },
            generation: td.metadata.generation.unwrap_or(0),
            url: Some(resources::ingress::url(deal)),
            replicas: seen.replicas.clone(),
            figures: seen.figures.as_ref(),
            now,
        },
    );
    next.pinned = Some(plan.pinned.clone());
    next.schema = Some(deal.schema());
    next.personal_data_deleted_at = match old.personal_data_deleted_at.clone() {
        None if scale == Scale::Off => erase_personal_data(ctx, deal, platform, now).await,
        kept => kept,
    };
    next.pending_upgrade = match change {
        Change::Deferred { to } => Some(to.clone()),
        _ => None,
    };
    write_status(ctx, td, old, &next).await?;
    announce(ctx, td, old, &next).await;
    announce_pins(ctx, td, old, &plan.pinned, change).await;
    record(ctx, td, &next);

    if !applied.failures.is_empty() {
        return Err(Error::Children(applied.failures.join("; ")));
    }
    let clock_change = phase::requeue_after(spec, now);
    let reading = (seen.ready && scale != Scale::Off).then(|| figures_interval(ctx, phase));
    // While pods are not all ready, look again soon: pod changes do not trigger a reconcile.
    let settling = (!seen.all_ready && scale != Scale::Off).then_some(UNSETTLED_RECHECK);
    let pushing = (*delivery != Delivery::Done).then(|| push_again_in(ctx, td, now));
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

/// How soon a deal whose pods are not all ready is looked at again.
const UNSETTLED_RECHECK: Duration = Duration::from_secs(15);

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
