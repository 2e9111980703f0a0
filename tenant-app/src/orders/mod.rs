//! The order path: reserve in Redis (one Lua script), take the payment, commit to PostgreSQL
//! through the group-commit writer, which confirms each committed batch in Redis with one more
//! script call. Every way out of this path either confirms the order or gives its stock back,
//! exactly once; a reservation whose request died half-way lapses after `reservationTtl` (see
//! `ticker`).

pub mod buyers;
mod cancel;
pub mod coupon;
pub mod delivery;
pub mod reservations;

pub use cancel::{cancel, finish_cancel, restock};

use std::time::Duration;

use axum::http::StatusCode;
use serde::Deserialize;

use timedeal_api::Fulfilment;

use crate::{
    app::App,
    commit::{epoch_of, NewOrder, Outcome, Refusal},
    db::{self, Coupon, Lapse, Order},
    deal::DealState,
    http::error::ApiError,
    identity::Shopper,
    payments::{purchase_key, Authorisation, PaymentError},
    tokens::TokenError,
};
use delivery::Delivery;
use reservations::{Request, Reservation, Reserved};

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
        match check_request(&request, shopper, product.fulfilment, app.state_now(now)) {
            Ok(checked) => checked,
            // The same order sent again once the deal sold out or ended: the first order is
            // the answer (one look in Redis, for the key, before saying no).
            Err(refusal) if matches!(refusal.code, "sold_out" | "deal_ended") => {
                let lookup = app
                    .reservations
                    .lookup(&shopper.id, &request.idempotency_key)
                    .await?;
                if lookup.named.is_none() {
                    // A final answer: the admission it was sent with ends, so its place goes
                    // to the next shopper should a unit come back.
                    end_admission(app, shopper, &request.admission_token).await;
                }
                return match lookup.named {
                    Some((id, stored)) => carry_on_late(app, shopper, request, id, stored).await,
                    // Redis is being restored: its keys are not back yet.
                    None if !lookup.restored => Err(restoring()),
                    None => Err(refusal),
                };
            }
            Err(refusal) => return Err(refusal),
        };
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
    let (id, stored, _carrying) = match reserved {
        Reserved::Now { id, stored } => {
            let carrying = app.reservations.carry(id);
            (id, stored, carrying)
        }
        Reserved::Existing { id, stored } => {
            // The same order again. An attempt still open (its payment's answer never came, its
            // commit did not get through) is carried on, with the same payment; otherwise the
            // answer is what became of it.
            if let Some(first) =
                db::order_by_key(&app.db, &shopper.id, &request.idempotency_key).await?
            {
                return Ok(Placed {
                    order: first,
                    repeated: true,
                });
            }
            if !app.reservations.pending(&stored).await? {
                return repeated(app, shopper, id, &request.idempotency_key).await;
            }
            let Some(carrying) = app.reservations.carry(id) else {
                return repeated(app, shopper, id, &request.idempotency_key).await;
            };
            (id, stored, Some(carrying))
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
        Reserved::Held => {
            return Err(ApiError::conflict(
                "units_reserved",
                format!(
                    "fewer units are free than you asked for, and the rest are in other shoppers' \
                     checkouts: those not paid for come back within {}. Your turn is kept: send \
                     the order again then, or ask for fewer",
                    deal.spec.queue.reservation_ttl
                ),
            ))
        }
        Reserved::Insufficient => {
            return Err(ApiError::conflict(
                "insufficient_stock",
                "fewer units are left than you asked for; join the queue again to order fewer",
            ))
        }
    };
    pay_and_commit(app, shopper, &request, quantity, delivery, id, stored).await
}

/// Ends the admission `token` grants, if it is this shopper's for this deal: the shopper was
/// given a final answer. A token that does not check out ends nothing.
pub(crate) async fn end_admission(app: &App, shopper: &Shopper, token: &str) {
    let now_ms = app.clock.now().timestamp_millis();
    let Ok(admission) = app
        .signer
        .check_admission(token, &app.deal().name, &shopper.id, now_ms)
    else {
        return;
    };
    if admission.epoch != app.figures.borrow().epoch {
        return;
    }
    if let Err(error) = app.queue.end_admission(admission.nonce).await {
        // The lease runs out on its own.
        tracing::debug!(%error, "cannot end an admission after a final answer");
    }
}

/// An order sent again once the deal sold out or ended: an attempt still open from before
/// (its payment's answer never came, its commit did not get through) is carried on, as it
/// would have been a moment earlier; otherwise the answer is what became of it.
async fn carry_on_late(
    app: &App,
    shopper: &Shopper,
    request: PlaceOrder,
    id: i64,
    stored: String,
) -> Result<Placed, ApiError> {
    if let Some(first) = db::order_by_key(&app.db, &shopper.id, &request.idempotency_key).await? {
        return Ok(Placed {
            order: first,
            repeated: true,
        });
    }
    let fulfilment = app.deal().spec.product.fulfilment;
    let checked = check_request(&request, shopper, fulfilment, DealState::Live);
    // Only while its reservation holds: one past its time waits for the sweeper's verdict.
    let now_ms = app.clock.now().timestamp_millis();
    let open = app
        .reservations
        .holds_until(&stored)
        .await?
        .is_some_and(|until| until > now_ms);
    match (checked, open) {
        (Ok(Checked { quantity, delivery }), true) => {
            let Some(_carrying) = app.reservations.carry(id) else {
                return repeated(app, shopper, id, &request.idempotency_key).await;
            };
            pay_and_commit(app, shopper, &request, quantity, delivery, id, stored).await
        }
        _ => repeated(app, shopper, id, &request.idempotency_key).await,
    }
}

/// The steps after the reservation: authorise the payment, commit (PostgreSQL re-checks the
/// stock and the limit), then capture; every way out confirms the reservation or gives it back.
async fn pay_and_commit(
    app: &App,
    shopper: &Shopper,
    request: &PlaceOrder,
    quantity: u32,
    delivery: Option<Delivery>,
    id: i64,
    stored: String,
) -> Result<Placed, ApiError> {
    let deal = app.deal();
    let product = &deal.spec.product;
    // A carried-on attempt keeps what it reserved.
    let quantity = Reservation::parse(&stored).map_or(quantity, |r| r.quantity as u32);
    let amount = product.deal_price * quantity as i64;
    let key = purchase_key(&deal.name, &shopper.id, &request.idempotency_key);

    // Authorise: the money is held, not taken, until PostgreSQL has the order.
    let authorisation = Authorisation {
        key: key.clone(),
        order_id: id,
        amount,
        currency: product.currency.clone(),
    };
    let payment = match app.payments.authorise(&authorisation).await {
        Ok(reference) => reference,
        Err(PaymentError::Declined(reason)) => {
            app.reservations.release(&stored).await;
            // The provider also refuses a purchase's key sent with another amount: the same
            // order sent again with another quantity, its first order the answer.
            if let Some(first) = first_order(app, shopper, &request.idempotency_key, id).await? {
                return Ok(first);
            }
            app.metrics.order("payment_declined");
            return Err(ApiError::new(
                StatusCode::PAYMENT_REQUIRED,
                "payment_declined",
                format!("the payment did not go through ({reason}); nothing was charged"),
            ));
        }
        Err(PaymentError::Spent) => {
            app.reservations.release(&stored).await;
            return Err(given_up());
        }
        Err(reason @ (PaymentError::Unavailable(_) | PaymentError::InProgress)) => {
            // The money may be held: the reservation and the key stay, so the same order sent
            // again asks the provider about the same payment (never a second one). Nobody
            // asking, the reservation lapses and the payment is voided.
            tracing::warn!(order = id, %reason, "payment outcome unknown; kept for a retry");
            app.metrics.order("failed");
            return Err(ApiError::unavailable(
                "the payment provider did not answer; send the same order again (the same \
                 idempotency key) in a moment: it is charged at most once",
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
        payment_key: key.clone(),
        payment_provider: app.payments.name().to_owned(),
        payment_reference: payment,
        reservation: stored.clone(),
        stock: product.stock,
        limit: shopper.limit as i64,
        not_after: tokio::time::Instant::now() + crate::commit::COMMIT_WINDOW,
        coupon: coupon.clone(),
        delivery: delivery.clone(),
    };
    // Commit (PostgreSQL re-checks the stock and the limit), then capture.
    match app.writer.commit(new).await {
        Outcome::Committed(created_at) => {
            // The writer has confirmed the batch's reservations in Redis; the money is taken
            // a moment later.
            app.captures.capture(id, key, amount);
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
        Outcome::Refused(refusal) => {
            // Redis reserved what PostgreSQL's record says is not there (the writer has asked
            // for its figures to be restored). The purchase is fenced, so no copy of this
            // attempt can commit later, and the shopper keeps their money; unless a copy
            // committed first, which is then the answer.
            let fenced = db::record_lapse(
                &app.db,
                id,
                &shopper.id,
                quantity as i32,
                &request.idempotency_key,
                &key,
                product.deal_price,
                &product.currency,
            )
            .await?;
            if fenced == Lapse::Committed {
                app.reservations
                    .confirm(std::slice::from_ref(&stored))
                    .await;
            } else {
                app.reservations.release(&stored).await;
            }
            if fenced != Lapse::Recorded {
                if let Some(first) = first_order(app, shopper, &request.idempotency_key, id).await?
                {
                    return Ok(first);
                }
            }
            reverse(app, id, &key, amount).await;
            app.metrics.order("refused");
            end_admission(app, shopper, &request.admission_token).await;
            Err(match refusal {
                Refusal::SoldOut => ApiError::conflict(
                    "sold_out",
                    "the last units sold while your order was being recorded; nothing was charged",
                ),
                Refusal::OverLimit => ApiError::conflict(
                    "over_limit",
                    format!(
                        "your orders already reach your limit of {} for this deal; nothing was charged",
                        shopper.limit
                    ),
                ),
            })
        }
        Outcome::Conflict => {
            // The same purchase committed before: by a twin of this very attempt (its
            // reservation is confirmed, here too in case the twin's confirm has not run yet), or
            // by an earlier attempt Redis forgot (this reservation goes). That order, and its
            // payment, which is this one, are the answer.
            if let Some(first) =
                db::order_by_key(&app.db, &shopper.id, &request.idempotency_key).await?
            {
                if first.id == id {
                    app.reservations
                        .confirm(std::slice::from_ref(&stored))
                        .await;
                } else {
                    app.reservations.release(&stored).await;
                    app.reservations
                        .remember(
                            &shopper.id,
                            &request.idempotency_key,
                            first.id,
                            first.quantity,
                        )
                        .await;
                }
                return Ok(Placed {
                    order: first,
                    repeated: true,
                });
            }
            app.reservations.release(&stored).await;
            // Otherwise the purchase was given up first (its reservation lapsed, or
            // reconciliation fenced it): its key can never commit, so its payment goes back.
            reverse(app, id, &key, amount).await;
            app.metrics.order("lapsed");
            Err(ApiError::conflict(
                "reservation_lapsed",
                "your reservation ran out before the payment completed; nothing was charged; \
                 order again with a new idempotency key",
            ))
        }
        Outcome::NotWritten(reason) => {
            // Nothing written: the reservation and the payment's hold stay for the same order
            // sent again. One of an epoch that is over can never commit; it goes now, and the
            // retry reserves anew under the same payment.
            tracing::warn!(order = id, %reason, "order not written; kept for a retry");
            if epoch_of(id) != app.figures.borrow().epoch {
                app.reservations.release(&stored).await;
            }
            app.metrics.order("failed");
            Err(ApiError::unavailable(
                "the order could not be recorded yet; send the same order again (the same \
                 idempotency key) in a moment: it is charged at most once",
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

/// The purchase's order in PostgreSQL, if any, as the answer to its attempt `id`. When the
/// order is another attempt's, this one's reservation has freed the key in Redis: it is written
/// back, so the same order sent again finds it there.
async fn first_order(
    app: &App,
    shopper: &Shopper,
    key: &str,
    id: i64,
) -> Result<Option<Placed>, ApiError> {
    let Some(first) = db::order_by_key(&app.db, &shopper.id, key).await? else {
        return Ok(None);
    };
    if first.id != id {
        app.reservations
            .remember(&shopper.id, key, first.id, first.quantity)
            .await;
    }
    Ok(Some(Placed {
        order: first,
        repeated: true,
    }))
}

/// The answer to an order whose purchase was given up before.
fn given_up() -> ApiError {
    ApiError::conflict(
        "order_failed",
        "this order was given up earlier and nothing is charged for it; send it with a new \
         idempotency key to order again",
    )
}

/// Voids (or refunds) a purchase's payment that will never be an order.
async fn reverse(app: &App, id: i64, key: &str, amount: i64) {
    if let Err(error) = app.payments.reverse(key, amount).await {
        // Reconciliation finds the payment and voids it.
        tracing::error!(order = id, %error, "voiding an unrecorded order's payment failed");
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
            return from_postgres().await?.ok_or_else(given_up);
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    Err(ApiError::conflict(
        "order_in_progress",
        "an order with this idempotency key is still being processed; ask again shortly",
    ))
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
