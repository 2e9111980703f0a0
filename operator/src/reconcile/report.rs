//! Step 5: the status, the Events and the metrics that say what reconcile saw and did.

use super::*;

/// Events for what the pins did: an upgrade that happened, or one kept for after the sale.
pub(super) async fn announce_pins(
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

/// Writes the status, unless it is what the API server already holds.
pub(super) async fn write_status(
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
pub(super) fn status_patch(old: &TimeDealStatus, new: &TimeDealStatus) -> serde_json::Value {
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
pub(super) async fn announce(
    ctx: &Context,
    td: &TimeDeal,
    old: &TimeDealStatus,
    new: &TimeDealStatus,
) {
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

pub(super) fn condition<'a>(
    status: &'a TimeDealStatus,
    type_: &str,
) -> Option<&'a k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition> {
    status.conditions.iter().find(|c| c.type_ == type_)
}

/// The status of a deal whose children are not built (waiting for approval, or failed before):
/// its phase and health, nothing observed.
pub(super) fn unbuilt(
    td: &TimeDeal,
    old: &TimeDealStatus,
    phase: Phase,
    health: Health<'_>,
    now: DateTime<Utc>,
) -> TimeDealStatus {
    status::next(
        old,
        Seen {
            phase,
            scale: phase::scale_at(&td.spec, now),
            health,
            generation: td.metadata.generation.unwrap_or(0),
            url: None,
            replicas: None,
            figures: None,
            now,
        },
    )
}

/// The deal's phase and health in the metrics, from the status just written.
pub(super) fn record(ctx: &Context, td: &TimeDeal, status: &TimeDealStatus) {
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
    let now = ctx.clock.now();
    let schedule = &td.spec.schedule;
    let ready = condition(status, conditions::READY).is_some_and(|c| c.status == "True");
    let running = status.replicas.as_ref().map_or(0, |r| r.desired);
    ctx.metrics.deal(
        &td.namespace().unwrap_or_default(),
        &td.name_any(),
        crate::metrics::DealHealth {
            degraded,
            live_stock_ratio: stock_left,
            // Only a deal admitted to run: one nobody approved is no page for the on-call.
            unready_after_start: td.spec.approved
                && !matches!(phase, Phase::PendingApproval | Phase::Failed)
                && now >= schedule.start
                && now < schedule.end
                && !ready,
            // Only where the autoscaler had room to grow and used it all.
            at_max_replicas: matches!(phase, Phase::Live | Phase::SoldOut)
                && td.spec.capacity.max_replicas > td.spec.capacity.min_replicas
                && running >= td.spec.capacity.max_replicas,
        },
    );
}

/// Publishes an Event on the deal; a failure to publish is logged, never fatal.
pub(super) async fn publish(
    ctx: &Context,
    td: &TimeDeal,
    type_: EventType,
    reason: &str,
    note: String,
) {
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
pub(super) fn truncate(mut note: String) -> String {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_notes_are_cut_at_a_character_boundary() {
        let note = truncate("é".repeat(800));
        assert!(note.len() <= 1000);
        assert!(note.ends_with("..."));
    }
}
