//! The order path: reserve in Redis (one Lua script), take the payment, commit to PostgreSQL
//! through the group-commit writer, which confirms each committed batch in Redis with one more
//! script call. Every way out of this path either confirms the order or gives its stock back,
//! exactly once; a reservation whose request died half-way lapses after `reservationTtl` (see
//! `ticker`).

pub mod coupon;
pub mod delivery;
pub mod reservations;

use std::time::Duration;

use axum::http::StatusCode;
use serde::Deserialize;

use timedeal_api::Fulfilment;

use crate::{
    app::App,
    commit::{NewOrder, Outcome, Refusal},
    db::{self, CancelStart, Coupon, Order},
    deal::DealState,
    http::error::ApiError,
    identity::Shopper,
    payments::{PaymentError, Refund},
    tokens::TokenError,
};
use delivery::Delivery;
use reservations::{Request, Reserved};

/// The body of `POST /api/orders`.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PlaceOrder {
    /// Units to buy: at least 1, at most the shopper's limit (the document's `maximum` is the
    /// deal's limit; a company's sign-in may set another, up to 10,000).
    #[schema(minimum = 1, maximum = 10000)]
    #[serde(deserialize_with = "whole_number")]
    pub quantity: i64,
    /// Chosen by the client, 1 to 64 letters, digits, `-` or `_`: sending the same order again
    /// with the same key (after a timeout, say) never orders twice.
    #[schema(min_length = 1, max_length = 64, pattern = "^[A-Za-z0-9_-]{1,64}$")]
    pub idempotency_key: String,
    /// The token from the queue status once admitted.
    pub admission_token: String,
    /// Who receives the order: required when the deal ships (name, phone, address) or is
    /// collected (name, phone); refused otherwise. `GET /api/delivery` gives the shopper's last
    /// details to offer again.
    #[serde(default)]
    pub delivery: Option<Delivery>,
}

/// A JSON number with no fraction, as JSON Schema's `integer` (so `2.0` is 2). Fractions and
/// numbers out of range are refused.
fn whole_number<'de, D: serde::Deserializer<'de>>(deserializer: D) -> Result<i64, D::Error> {
    let number = serde_json::Number::deserialize(deserializer)?;
    if let Some(whole) = number.as_i64() {
        return Ok(whole);
    }
    match number.as_f64() {
        Some(x) if x.fract() == 0.0 && x.abs() < 9.0e15 => Ok(x as i64),
        _ => Err(serde::de::Error::custom(format!(
            "{number} is not a whole number in range"
        ))),
    }
}

/// A placed order and whether this request placed it or repeated an earlier one.
pub struct Placed {
    pub order: Order,
    pub repeated: bool,
}

fn valid_key(key: &str) -> bool {
    (1..=64).contains(&key.len())
        && key
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// What a checked request asks for.
#[derive(Debug, PartialEq, Eq)]
pub struct Checked {
    pub quantity: u32,
    pub delivery: Option<Delivery>,
}

/// Checks what can be checked without touching storage: the request itself first (a bad request
/// is a bad request whatever the deal's state), then whether the deal takes orders.
pub fn check_request(
    request: &PlaceOrder,
    shopper: &Shopper,
    fulfilment: Fulfilment,
    deal: DealState,
) -> Result<Checked, ApiError> {
    if request.quantity < 1 || request.quantity > shopper.limit as i64 {
        return Err(ApiError::bad_request(
            "invalid_quantity",
            format!(
                "quantity must be a whole number from 1 to {} (your limit for this deal)",
                shopper.limit
            ),
        ));
    }
    if !valid_key(&request.idempotency_key) {
        return Err(ApiError::bad_request(
            "invalid_idempotency_key",
            "idempotencyKey must be 1 to 64 letters, digits, '-' or '_' (a UUID works)",
        ));
    }
    let delivery = delivery::check(fulfilment, request.delivery.as_ref()).map_err(|fields| {
        let names: Vec<&str> = fields.keys().map(String::as_str).collect();
        ApiError::bad_request(
            "invalid_delivery",
            format!(
                "the delivery details need fixing ({}); nothing was reserved or charged",
                names.join(", ")
            ),
        )
        .with_fields(fields)
    })?;
    match deal {
        DealState::Live => {}
        DealState::Upcoming => {
            return Err(ApiError::conflict(
                "deal_not_started",
                "the deal has not started yet; join the queue and wait for your turn",
            ))
        }
        DealState::SoldOut => return Err(ApiError::conflict("sold_out", "the deal is sold out")),
        DealState::Ended => {
            return Err(ApiError::conflict(
                "deal_ended",
                "the deal has ended; your orders stay viewable",
            ))
        }
        DealState::Suspended => {
            return Err(ApiError::conflict(
                "deal_suspended",
                "the deal is paused and takes no orders right now",
            ))
        }
    }
    Ok(Checked {
        quantity: request.quantity as u32,
        delivery,
    })
}

fn token_error(error: TokenError) -> ApiError {
    let code = match error {
        TokenError::Malformed => "admission_malformed",
        TokenError::Forged => "admission_forged",
        TokenError::Expired => "admission_expired",
        TokenError::Foreign => "admission_foreign",
        TokenError::OtherDeal => "admission_other_deal",
        TokenError::Unsolved => "admission_malformed",
    };
    ApiError::new(
        StatusCode::FORBIDDEN,
        code,
        format!("{error}; wait for your turn in the queue to get a valid admission"),
    )
}

pub async fn place(app: &App, shopper: &Shopper, request: PlaceOrder) -> Result<Placed, ApiError> {
    let now = app.clock.now();
    let deal = app.deal();
    let product = &deal.spec.product;
    let Checked { quantity, delivery } =
        check_request(&request, shopper, product.fulfilment, app.state_now(now))?;
    let admission = app
        .signer
        .check_admission(
            &request.admission_token,
            &deal.name,
            &shopper.id,
            now.timestamp_millis(),
        )
        .map_err(token_error)?;

    let reserved = app
        .reservations
        .reserve(&Request {
            shopper: &shopper.id,
            admission: admission.nonce,
            admission_epoch: admission.epoch,
            quantity,
            limit: shopper.limit,
            key: &request.idempotency_key,
            now_ms: now.timestamp_millis(),
            ttl_ms: deal.spec.queue.reservation_ttl.std().as_millis() as i64,
        })
        .await?;
    if matches!(reserved, Reserved::NotAdmitted | Reserved::OverLimit) {
        // The same order sent again after Redis's figures were restored (its idempotency keys
        // went with the old epoch) or after its admission ended: the first order is the answer.
        if let Some(first) =
            db::order_by_key(&app.db, &shopper.id, &request.idempotency_key).await?
        {
            return Ok(Placed {
                order: first,
                repeated: true,
            });
        }
    }
    let (id, stored) = match reserved {
        Reserved::Now { id, stored } => (id, stored),
        Reserved::Existing(id) => {
            return repeated(app, shopper, id, &request.idempotency_key).await
        }
        Reserved::Unavailable => return Err(restoring()),
        Reserved::NotAdmitted => {
            return Err(ApiError::new(
                StatusCode::FORBIDDEN,
                "not_admitted",
                "this admission is no longer valid (it ended, or you reached your limit); join the queue again",
            ))
        }
        Reserved::OverLimit => {
            return Err(ApiError::conflict(
                "over_limit",
                format!("that would take you over your limit of {} for this deal", shopper.limit),
            ))
        }
        Reserved::SoldOut => return Err(ApiError::conflict("sold_out", "the deal is sold out")),
        Reserved::Insufficient => {
            return Err(ApiError::conflict(
                "insufficient_stock",
                "fewer units are left than you asked for; try a smaller quantity",
            ))
        }
    };

    let amount = product.deal_price * quantity as i64;
    // A free deal (a coupon at price 0) charges nothing: `Payments` does not ask the provider.
    let payment = match app.payments.charge(id, amount, &product.currency).await {
        Ok(reference) => reference,
        Err(PaymentError::Declined(reason)) => {
            app.reservations.release(&stored).await;
            app.metrics.order("payment_declined");
            return Err(ApiError::new(
                StatusCode::PAYMENT_REQUIRED,
                "payment_declined",
                format!("the payment did not go through ({reason}); nothing was charged"),
            ));
        }
        Err(PaymentError::Unavailable(reason)) => {
            // The charge may have gone through: refunding by the order id undoes it if it did
            // (and reconciliation catches one that lands later still).
            tracing::warn!(order = id, %reason, "payment outcome unknown; refunding to be sure");
            refund(app, id, amount, &product.currency).await;
            app.reservations.release(&stored).await;
            app.metrics.order("failed");
            return Err(ApiError::unavailable(
                "the payment provider did not answer, so the order was not placed and anything \
                 charged is refunded; send the same order again in a moment",
            ));
        }
    };

    let coupon = (product.fulfilment == Fulfilment::Coupon).then(|| Coupon {
        code: coupon::new_code(),
        valid_until: product.coupons_valid_until(deal.timeline.end),
        redeemed_at: None,
    });
    let new = NewOrder {
        id,
        shopper: shopper.id.clone(),
        quantity: quantity as i32,
        unit_price: product.deal_price,
        currency: product.currency.clone(),
        idempotency_key: request.idempotency_key.clone(),
        payment_provider: app.payments.name().to_owned(),
        payment_reference: payment,
        reservation: stored.clone(),
        stock: product.stock,
        limit: shopper.limit as i64,
        not_after: tokio::time::Instant::now() + crate::commit::COMMIT_WINDOW,
        coupon: coupon.clone(),
        delivery: delivery.clone(),
    };
    match app.writer.commit(new).await {
        Outcome::Committed(created_at) => {
            // The writer has confirmed the batch's reservations in Redis.
            app.metrics.order("confirmed");
            // Everything the shopper sees is known here: no read back from PostgreSQL.
            Ok(Placed {
                order: Order {
                    id,
                    quantity: quantity as i32,
                    unit_price: product.deal_price,
                    amount,
                    currency: product.currency.clone(),
                    status: "confirmed".into(),
                    created_at,
                    cancelled_at: None,
                    coupon,
                    delivery,
                },
                repeated: false,
            })
        }
        Outcome::Conflict => {
            refund(app, id, amount, &product.currency).await;
            // The idempotency key was used before, and Redis forgot it (it lost its data):
            // the first order is the answer.
            if let Some(first) =
                db::order_by_key(&app.db, &shopper.id, &request.idempotency_key).await?
            {
                app.reservations.release(&stored).await;
                return Ok(Placed {
                    order: first,
                    repeated: true,
                });
            }
            // Otherwise the reservation lapsed before the commit (the sweeper recorded it first).
            app.reservations.release(&stored).await;
            app.metrics.order("lapsed");
            Err(ApiError::conflict(
                "reservation_lapsed",
                "your reservation ran out before the payment completed; nothing was charged",
            ))
        }
        Outcome::Refused(refusal) => {
            // Redis reserved what PostgreSQL's record says is not there: Redis is behind, and
            // its figures are restored. The shopper keeps their money.
            app.reservations
                .doubt("PostgreSQL refused an order Redis had reserved");
            refund(app, id, amount, &product.currency).await;
            app.reservations.release(&stored).await;
            app.metrics.order("refused");
            Err(match refusal {
                Refusal::SoldOut => ApiError::conflict(
                    "sold_out",
                    "the last units sold while your order was being recorded; your payment is refunded",
                ),
                Refusal::OverLimit => ApiError::conflict(
                    "over_limit",
                    format!(
                        "your orders already reach your limit of {} for this deal; your payment is refunded",
                        shopper.limit
                    ),
                ),
            })
        }
        Outcome::NotWritten(reason) => {
            tracing::warn!(order = id, %reason, "order not written; giving its stock back");
            refund(app, id, amount, &product.currency).await;
            app.reservations.release(&stored).await;
            app.metrics.order("failed");
            Err(ApiError::unavailable(
                "the order could not be recorded, so it was not placed, any payment is refunded and the stock is back; send the same order again in a moment",
            ))
        }
        Outcome::Unknown(reason) => {
            // Maybe committed: the reservation stays until the sweeper finds out which.
            tracing::warn!(order = id, %reason, "order outcome unknown; the sweeper will settle it");
            app.metrics.order("unknown");
            Err(ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "outcome_unknown",
                format!(
                    "order {id} may or may not have been recorded; check your orders in a minute"
                ),
            ))
        }
    }
}

/// The answer while Redis's figures are being restored.
fn restoring() -> ApiError {
    ApiError::unavailable(
        "the stock figures are being restored after an interruption; nothing was reserved or \
         charged; send the same order again in a moment",
    )
}

/// The same idempotency key again: answer with what became of the first request, waiting for it
/// while it is in flight, and answering from PostgreSQL as soon as the order is there (even if
/// Redis never hears of its commit, say because the replica that took it died). An attempt that
/// was given up (payment refused, not recorded, lapsed) has freed its key in Redis meanwhile.
async fn repeated(app: &App, shopper: &Shopper, id: i64, key: &str) -> Result<Placed, ApiError> {
    let from_postgres = || async {
        db::order_by_key(&app.db, &shopper.id, key)
            .await
            .map(|order| {
                order.map(|order| Placed {
                    order,
                    repeated: true,
                })
            })
    };
    for attempt in 0..250 {
        if attempt % 10 == 0 {
            if let Some(placed) = from_postgres().await? {
                return Ok(placed);
            }
        }
        if !app.reservations.key_names(&shopper.id, key, id).await? {
            // Given up just now, or committed just now: PostgreSQL says which.
            return from_postgres().await?.ok_or_else(|| {
                ApiError::conflict(
                    "order_failed",
                    "this order was not placed (nothing was charged); send it again to retry",
                )
            });
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    Err(ApiError::conflict(
        "order_in_progress",
        "an order with this idempotency key is still being processed; ask again shortly",
    ))
}

async fn refund(app: &App, id: i64, amount: i64, currency: &str) {
    if let Err(error) = app.payments.refund(id, amount, currency).await {
        // Reconciliation finds the payment and refunds it.
        tracing::error!(order = id, %error, "refund of an unrecorded order failed");
    }
}

/// Cancels a confirmed order in three steps, each safe to repeat: mark it `cancelling` in
/// PostgreSQL, refund it (the order id is the provider's idempotency key, so two cancels racing,
/// or a cancel retried after a failure, refund once), then record the cancellation with its
/// refund and return the stock. A cancellation left half-way is finished by the sweeper.
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
    finish_cancel(app, id, order.amount, &order.currency)
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
pub async fn finish_cancel(
    app: &App,
    id: i64,
    amount: i64,
    currency: &str,
) -> Result<Option<Order>, ApiError> {
    let reference = match app.payments.refund(id, amount, currency).await {
        Ok(Refund::Refunded(reference)) => Some(reference),
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

#[cfg(test)]
mod tests {
    use super::*;

    fn shopper() -> Shopper {
        Shopper {
            id: "anon-1".into(),
            limit: 2,
            new_session: None,
        }
    }

    fn request(quantity: i64, key: &str) -> PlaceOrder {
        PlaceOrder {
            quantity,
            idempotency_key: key.into(),
            admission_token: "t".into(),
            delivery: None,
        }
    }

    fn check(request: &PlaceOrder, state: DealState) -> Result<Checked, ApiError> {
        check_request(request, &shopper(), Fulfilment::Digital, state)
    }

    #[test]
    fn quantities_are_whole_and_within_the_limit() {
        assert_eq!(
            check(&request(2, "k-1"), DealState::Live),
            Ok(Checked {
                quantity: 2,
                delivery: None
            })
        );
        for quantity in [0, -1, 3, i64::MAX] {
            let error = check(&request(quantity, "k-1"), DealState::Live).unwrap_err();
            assert_eq!(error.code, "invalid_quantity");
        }
    }

    #[test]
    fn quantities_are_whole_numbers_however_written() {
        let parse = |body: &str| serde_json::from_str::<PlaceOrder>(body).map(|o| o.quantity);
        let body = |q: &str| {
            format!(r#"{{"quantity": {q}, "idempotencyKey": "k", "admissionToken": "t"}}"#)
        };
        assert_eq!(parse(&body("2")).unwrap(), 2);
        assert_eq!(parse(&body("2.0")).unwrap(), 2);
        assert_eq!(
            parse(&body("-1")).unwrap(),
            -1,
            "range is checked later, with a clear code"
        );
        for bad in ["1.5", "1e300", "\"2\"", "null"] {
            assert!(parse(&body(bad)).is_err(), "{bad}");
        }
    }

    #[test]
    fn idempotency_keys_are_short_and_plain() {
        for key in ["", "with space", "ü", &"k".repeat(65)] {
            let error = check(&request(1, key), DealState::Live).unwrap_err();
            assert_eq!(error.code, "invalid_idempotency_key", "{key:?}");
        }
    }

    #[test]
    fn missing_delivery_details_are_refused_field_by_field_before_the_deal_state() {
        let error = check_request(
            &request(1, "k"),
            &shopper(),
            Fulfilment::Shipping,
            DealState::Upcoming,
        )
        .unwrap_err();
        assert_eq!(error.code, "invalid_delivery");
        assert!(error.fields.unwrap().contains_key("delivery"));
    }

    #[test]
    fn only_a_live_deal_takes_orders() {
        for (state, code) in [
            (DealState::Upcoming, "deal_not_started"),
            (DealState::SoldOut, "sold_out"),
            (DealState::Ended, "deal_ended"),
            (DealState::Suspended, "deal_suspended"),
        ] {
            let error = check(&request(1, "k"), state).unwrap_err();
            assert_eq!(error.code, code);
        }
    }
}
