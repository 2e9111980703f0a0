//! Cancelling a confirmed order: marked `cancelling`, refunded under its purchase key, recorded
//! with its refund, and its stock returned to Redis, each step safe to repeat.

use std::time::Duration;

use crate::{
    app::App,
    db::{self, CancelStart, Order},
    http::error::ApiError,
    identity::Shopper,
    payments::Refund,
};

/// Cancels a confirmed order in three steps, each safe to repeat: mark it `cancelling` in
/// PostgreSQL, refund it (the purchase's key is the provider's idempotency key, so two cancels
/// racing, or a cancel retried after a failure, refund once), then record the cancellation with
/// its refund and return the stock. A cancellation left half-way is finished by the sweeper.
pub async fn cancel(app: &App, shopper: &Shopper, id: i64) -> Result<Order, ApiError> {
    let order = match db::begin_cancel(&app.db, &shopper.id, id).await? {
        CancelStart::NotFound => {
            return Err(ApiError::not_found(format!("you have no order {id}")))
        }
        CancelStart::AlreadyCancelled(_) => return Err(already_cancelled(id)),
        CancelStart::Redeemed(order) => {
            let at = order
                .coupon
                .and_then(|c| c.redeemed_at)
                .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
                .unwrap_or_default();
            return Err(ApiError::conflict(
                "coupon_redeemed",
                format!(
                    "order {id}'s coupon was redeemed at {at}; a used coupon cannot be cancelled"
                ),
            ));
        }
        CancelStart::Marked(order) | CancelStart::InProgress(order) => order,
    };
    finish_cancel(app, id, order.amount)
        .await?
        .ok_or_else(|| already_cancelled(id))
}

fn already_cancelled(id: i64) -> ApiError {
    ApiError::conflict(
        "already_cancelled",
        format!("order {id} is already cancelled"),
    )
}

/// The refund and the record of a cancellation marked before. `None` when another cancel of
/// the same order finished first.
pub async fn finish_cancel(app: &App, id: i64, amount: i64) -> Result<Option<Order>, ApiError> {
    let key = db::payment_key(&app.db, id)
        .await?
        .unwrap_or_else(|| id.to_string());
    let reference = match app.payments.reverse(&key, amount).await {
        Ok(Refund::Refunded(reference)) => Some(reference),
        // Held and not taken yet (its capture had not got through): released.
        Ok(Refund::Voided) => None,
        // A free order (a coupon at price 0) took no payment.
        Ok(Refund::NothingCharged) if amount == 0 => None,
        Ok(Refund::NothingCharged) => {
            tracing::warn!(
                order = id,
                "the provider holds no payment for a confirmed order"
            );
            None
        }
        Err(error) => {
            return Err(ApiError::unavailable(format!(
                "the refund did not go through yet ({error}); the cancellation is recorded and \
                 completes on its own within a minute"
            )))
        }
    };
    let Some((order, shopper, epoch)) =
        db::finish_cancel(&app.db, id, reference.as_deref()).await?
    else {
        return Ok(None);
    };
    app.metrics.order("cancelled");
    // Redis being away must not hold the answer: the sweeper returns the stock later.
    let restocking = restock(app, id, &shopper, order.quantity, epoch);
    if tokio::time::timeout(Duration::from_millis(500), restocking)
        .await
        .is_err()
    {
        tracing::warn!(order = id, "Redis is slow; the stock goes back later");
    }
    Ok(Some(order))
}

/// Returns a cancelled order's stock and records that it did. `epoch` is the one the
/// cancellation was recorded in: a cancellation from before Redis lost its data was already
/// left out of the restored figures.
pub async fn restock(app: &App, id: i64, shopper: &str, quantity: i32, epoch: i64) {
    let result: Result<i64, _> = app
        .scripts
        .restock
        .key(&app.prefix)
        .arg(id)
        .arg(shopper)
        .arg(quantity)
        .arg(epoch)
        .invoke_async(&mut app.redis.clone())
        .await;
    match result {
        Ok(-2) => tracing::debug!(order = id, "stock figures being restored; will retry"),
        Ok(_) => {
            if let Err(error) = db::mark_restocked(&app.db, id).await {
                tracing::warn!(order = id, %error, "stock returned; marking it will be retried");
            }
        }
        Err(error) => tracing::warn!(order = id, %error, "cannot return stock now; will retry"),
    }
}
