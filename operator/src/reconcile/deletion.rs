//! The deal going: its final figures kept, its PostgreSQL role retired; and objects that cannot
//! be read as a TimeDeal.

use super::*;

/// The deal is going: read its figures one last time (bounded in time), keep them in the
/// status and an Event, then let the children go with it.
pub(super) async fn cleanup(td: &TimeDeal, ctx: &Context) -> Result<Action> {
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
                "{why}; keeping the figures as they last changed{}: {}",
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
    if let Err(error) = ctx
        .database
        .retire_tenant(&platform, &deal.schema(), &record.uid)
        .await
    {
        warn!(deal = %deal.name, %error, "cannot retire the deal's PostgreSQL role");
    }
    if let Err(error) = ctx.database.unbook(&platform, &record.uid).await {
        warn!(deal = %deal.name, %error, "cannot free the deal's booking");
    }
    ctx.ensured.forget(&record.uid);
    ctx.booked.forget(&record.uid);
    ctx.delivered
        .lock()
        .expect("delivered lock")
        .remove(&record.uid);
    ctx.behind.lock().expect("behind lock").remove(&record.uid);
    ctx.readings
        .lock()
        .expect("readings lock")
        .remove(&record.uid);
    Ok(Action::await_change())
}

/// An object the watcher could not read as a TimeDeal: say so on it, and leave it alone.
pub(super) async fn malformed(invalid: &InvalidObject, ctx: &Context) -> Result<Action> {
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
pub(super) async fn release_malformed(invalid: &InvalidObject, ctx: &Context) -> Result<()> {
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
