//! Step 4: what runs. The storefront's replicas and pods, its figures at a bounded rate, and the
//! delivery of the deal document to every replica.

use super::*;

#[derive(Clone)]
pub(super) struct Reading {
    pub(super) at: DateTime<Utc>,
    pub(super) problem: Option<Problem>,
}

/// Pushes the deal document to the storefront replicas that do not serve its revision yet. A
/// delivery still behind is pushed again only after its backoff (`delivery::backoff`), however
/// often the deal is reconciled meanwhile.
pub(super) async fn deliver(
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
    let now = ctx.clock.now();
    let waiting = ctx
        .behind
        .lock()
        .expect("behind lock")
        .get(&uid)
        .filter(|behind| behind.revision == revision && now < behind.next)
        .map(|behind| behind.last.clone());
    if let Some(last) = waiting {
        return Ok(last);
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
    let mut behind = ctx.behind.lock().expect("behind lock");
    if delivery == Delivery::Done {
        behind.remove(&uid);
        ctx.delivered
            .lock()
            .expect("delivered lock")
            .insert(uid, revision);
    } else {
        let failures = behind
            .get(&uid)
            .filter(|b| b.revision == revision)
            .map_or(1, |b| b.failures + 1);
        let wait = crate::delivery::backoff(failures);
        behind.insert(
            uid,
            crate::delivery::Behind {
                revision,
                failures,
                next: now + chrono::Duration::from_std(wait).expect("a short wait"),
                last: delivery.clone(),
            },
        );
    }
    Ok(delivery)
}

/// How soon a deal whose delivery is behind should be reconciled again: when its next push may
/// go (at least 1 s from now).
pub(super) fn push_again_in(ctx: &Context, td: &TimeDeal, now: DateTime<Utc>) -> Duration {
    let uid = td.uid().unwrap_or_default();
    ctx.behind
        .lock()
        .expect("behind lock")
        .get(&uid)
        .and_then(|behind| (behind.next - now).to_std().ok())
        .unwrap_or_default()
        .max(Duration::from_secs(1))
}

pub(super) fn replica_figures(deployment: &Deployment) -> ReplicaFigures {
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
pub(super) async fn pod_problem(
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
pub(super) fn figures_interval(ctx: &Context, phase: Phase) -> Duration {
    match phase {
        Phase::Ended | Phase::Suspended => ctx.config.figures_interval * 20,
        _ => ctx.config.figures_interval,
    }
}

/// Reads the figures when the last attempt is older than the interval; otherwise repeats what
/// the last attempt found wrong, so Degraded does not flicker between readings.
pub(super) async fn read_figures_if_due(
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
