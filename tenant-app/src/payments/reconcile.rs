//! Reconciliation: every payment the provider holds must be matched by a committed order, or
//! given back. A committed order's payment still only held (its capture did not get through) is
//! captured. A payment without an order (the replica died between the authorisation and the
//! commit, the provider answered late, nobody sent the order again) is voided or refunded, once
//! it is old enough on the provider's clock that its order should have committed, and after a
//! fence in PostgreSQL that an order of the purchase committing later still loses to; it is
//! recorded in `unmatched_payments`.

use super::{Charge, Listing, Refund, State};
use crate::{app::App, db, error::Error};

/// One replica at a time, every few seconds.
const LOCK_MS: u64 = 9_000;

pub async fn reconcile(app: &App) -> Result<(), Error> {
    let taken: Option<String> = redis::cmd("SET")
        .arg(format!("{}reconciling", app.prefix))
        .arg(std::process::id())
        .arg("NX")
        .arg("PX")
        .arg(LOCK_MS)
        .query_async(&mut app.redis.clone())
        .await?;
    if taken.is_none() {
        return Ok(());
    }
    let Listing { now, charges } = match app.payments.charges().await {
        Ok(listing) => listing,
        Err(error) => {
            tracing::warn!(%error, "cannot list the provider's payments; reconciling later");
            return Ok(());
        }
    };
    let open: Vec<Charge> = charges
        .into_iter()
        .filter(|c| matches!(c.state, State::Authorised | State::Captured))
        .collect();
    if open.is_empty() {
        return Ok(());
    }
    let references: Vec<String> = open.iter().map(|c| c.reference.clone()).collect();
    let orders = db::orders_by_payment(&app.db, &references).await?;
    // An attempt stays open for the same order sent again until its reservation lapses; past
    // that, and the longest path to a commit, its order is committed or never will be.
    let open_for = app.deal().spec.queue.reservation_ttl.std() + app.payments.settled_after();
    let settled_before = now - chrono::Duration::from_std(open_for).unwrap_or_default();
    for charge in open {
        match (
            orders.get(&charge.reference).map(String::as_str),
            charge.state,
        ) {
            // A committed order whose capture did not get through.
            (Some("confirmed"), State::Authorised) => {
                match app.payments.capture(&charge.key, charge.amount).await {
                    Ok(()) => {
                        tracing::info!(order = charge.order_id, "a held payment was captured")
                    }
                    Err(error) => {
                        tracing::warn!(order = charge.order_id, %error, "cannot capture yet")
                    }
                }
            }
            // Its order's (cancellation's) own path settles it.
            (Some(_), _) => {}
            (None, _) if charge.created_at > settled_before => {}
            (None, _) => void_unmatched(app, &charge).await?,
        }
    }
    Ok(())
}

/// A payment no order accounts for, old enough that none should: fenced, then voided (or
/// refunded), and recorded in `unmatched_payments`.
async fn void_unmatched(app: &App, charge: &Charge) -> Result<(), Error> {
    // The fence: an order of this purchase that commits from now on finds it and loses.
    if !db::fence_unmatched(
        &app.db,
        charge.order_id,
        &charge.key,
        charge.amount,
        &charge.currency,
    )
    .await?
    {
        return Ok(());
    }
    let reference = match app.payments.reverse(&charge.key, charge.amount).await {
        Ok(Refund::Refunded(reference)) => reference,
        Ok(Refund::Voided) => "voided".to_owned(),
        Ok(Refund::NothingCharged) => return Ok(()),
        Err(error) => {
            tracing::warn!(order = charge.order_id, %error, "cannot void an unmatched payment yet");
            return Ok(());
        }
    };
    db::record_unmatched_payment(
        &app.db,
        charge.order_id,
        &charge.reference,
        charge.amount,
        &charge.currency,
        &reference,
    )
    .await?;
    tracing::warn!(
        order = charge.order_id,
        amount = charge.amount,
        "a payment without an order was found and given back"
    );
    app.metrics.unmatched_payments.inc();
    Ok(())
}
