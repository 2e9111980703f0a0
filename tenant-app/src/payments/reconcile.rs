//! Reconciliation: every payment the provider took must be matched by a committed order or by
//! a refund. A payment without either (the replica died between the charge and the commit, the
//! provider answered late, a refund failed) is refunded here, once it is old enough on the
//! provider's clock that its order should have committed, and after a fence in PostgreSQL that
//! an order committing later still loses to; it is recorded in `unmatched_payments`.

use super::{Listing, Refund};
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
    // Older payments have their order committed, or it should never be (see `commit`).
    let settled_before =
        now - chrono::Duration::from_std(app.payments.settled_after()).unwrap_or_default();
    for charge in charges {
        if charge.refund.is_some() || charge.created_at > settled_before {
            continue;
        }
        if db::payment_accounted_for(&app.db, charge.order_id).await? {
            continue;
        }
        // The fence: an order with this id that commits from now on finds it and loses.
        if !db::fence_unmatched(&app.db, charge.order_id, charge.amount, &charge.currency).await? {
            continue;
        }
        match app
            .payments
            .refund(charge.order_id, charge.amount, &charge.currency)
            .await
        {
            Ok(Refund::Refunded(reference)) => {
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
                    "a payment without an order was found and refunded"
                );
            }
            Ok(Refund::NothingCharged) => {}
            Err(error) => {
                tracing::warn!(order = charge.order_id, %error, "cannot refund an unmatched payment yet");
            }
        }
    }
    Ok(())
}
