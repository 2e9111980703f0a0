//! The JSON API. Every answer is JSON; every refusal is an [`ApiError`] with a stable code.

use axum::{
    extract::{FromRequest, Path, Request, State},
    http::StatusCode,
    response::{IntoResponse, Response},
    Json,
};
use chrono::{DateTime, Utc};
use serde::{de::DeserializeOwned, Serialize};
use timedeal_api::Fulfilment;

use crate::{
    app::{App, SharedApp},
    db::{self, Order},
    deal::DealState,
    http::error::{ApiError, ErrorBody},
    identity::Shopper,
    orders::{self, delivery::Delivery, PlaceOrder},
};

/// A JSON body whose problems are answered as [`ApiError`]s.
pub struct ApiJson<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for ApiJson<T> {
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &S) -> Result<Self, Self::Rejection> {
        Json::<T>::from_request(request, state)
            .await
            .map(|Json(value)| ApiJson(value))
            .map_err(ApiError::from)
    }
}

/// The deal as shoppers see it.
#[derive(Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct DealView {
    pub name: String,
    pub company: String,
    pub product: ProductView,
    pub state: DealState,
    pub starts_at: DateTime<Utc>,
    pub ends_at: DateTime<Utc>,
    /// When shoppers may start joining the pre-queue.
    pub pre_queue_opens_at: DateTime<Utc>,
    pub stock: StockView,
    /// When present, joining the queue needs a solved puzzle of this many leading zero bits:
    /// see `GET /api/queue/challenge`.
    pub join_challenge: Option<u32>,
    /// The server's clock: countdowns are computed against this, never the device's clock.
    pub server_time: DateTime<Utc>,
    /// Whether this storefront mails reminders before the start (`POST /api/reminders`).
    pub email_reminders: bool,
}

#[derive(Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ProductView {
    pub name: String,
    pub description: String,
    pub image_url: Option<String>,
    /// Prices in the currency's smallest unit (cents for USD).
    pub list_price: i64,
    pub deal_price: i64,
    pub currency: String,
    /// The most this shopper may buy.
    pub limit: u32,
    /// The deal directory's shelf for it, such as `audio`.
    pub category: String,
    /// `shipping` (the order needs `delivery` with name, phone and address), `pickup` (name
    /// and phone), `digital` (nothing) or `coupon` (each order carries a code).
    pub fulfilment: String,
    /// Coupon deals: when their coupons stop being redeemable.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub coupons_valid_until: Option<DateTime<Utc>>,
}

#[derive(Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct StockView {
    pub total: i64,
    /// Units neither sold nor reserved.
    pub remaining: i64,
    pub reserved: i64,
    pub sold: i64,
}

pub fn deal_view(app: &App, shopper: &Shopper, now: DateTime<Utc>) -> DealView {
    let deal = app.deal();
    let figures = *app.figures.borrow();
    let product = &deal.spec.product;
    DealView {
        name: deal.name.clone(),
        company: deal.spec.company.name.clone(),
        product: ProductView {
            name: product.name.clone(),
            description: product.description.clone(),
            image_url: product.image_url.clone(),
            list_price: product.list_price,
            deal_price: product.deal_price,
            currency: product.currency.clone(),
            limit: shopper.limit,
            category: product.category.clone(),
            fulfilment: product.fulfilment.as_str().to_owned(),
            coupons_valid_until: (product.fulfilment == Fulfilment::Coupon)
                .then(|| product.coupons_valid_until(deal.timeline.end)),
        },
        state: app.state_now(now),
        starts_at: deal.timeline.start,
        ends_at: deal.timeline.end,
        pre_queue_opens_at: deal.timeline.pre_queue_from,
        stock: StockView {
            total: product.stock,
            remaining: figures.available.max(0),
            reserved: figures.reserved,
            sold: figures.sold,
        },
        join_challenge: super::queue::join_difficulty(&deal),
        server_time: now,
        email_reminders: app.mailer.is_some(),
    }
}

/// The deal, its state and its stock.
#[utoipa::path(get, path = "/api/deal", tag = "deal",
    responses((status = 200, body = DealView)))]
pub async fn deal(State(app): State<SharedApp>, shopper: Shopper) -> Json<DealView> {
    Json(deal_view(&app, &shopper, app.clock.now()))
}

/// Places an order. Stock is reserved, the payment taken and the order recorded before the
/// answer: 201 means confirmed. The same idempotency key again answers 200 with the same order.
#[utoipa::path(post, path = "/api/orders", tag = "orders", request_body = PlaceOrder,
    responses(
        (status = 201, body = Order, description = "confirmed"),
        (status = 200, body = Order, description = "the same idempotency key was used before: the first order"),
        (status = 400, body = ErrorBody, description = "invalid_json, invalid_body, invalid_quantity, invalid_idempotency_key"),
        (status = 402, body = ErrorBody, description = "payment_declined"),
        (status = 403, body = ErrorBody, description = "admission_forged, admission_expired, admission_foreign, admission_other_deal, admission_malformed, not_admitted"),
        (status = 409, body = ErrorBody, description = "sold_out, units_reserved (every unit left is in a checkout: send the same order again shortly; the admission stays), insufficient_stock, over_limit (these three end the admission), deal_not_started, deal_ended, deal_suspended, reservation_lapsed and order_failed (nothing charged; order again with a new idempotencyKey), order_in_progress (ask again)"),
        (status = 413, body = ErrorBody, description = "body_too_large"),
        (status = 415, body = ErrorBody, description = "unsupported_media_type"),
        (status = 503, body = ErrorBody, description = "unavailable: not placed yet; send the same order (same idempotency key) again after `Retry-After` seconds, which carries it on and charges it at most once. outcome_unknown: look for the order in your orders"),
    ))]
pub async fn place_order(
    State(app): State<SharedApp>,
    shopper: Shopper,
    ApiJson(request): ApiJson<PlaceOrder>,
) -> Result<Response, ApiError> {
    let placed = orders::place(&app, &shopper, request).await?;
    let status = if placed.repeated {
        StatusCode::OK
    } else {
        StatusCode::CREATED
    };
    Ok((status, Json(placed.order)).into_response())
}

/// The delivery details of the shopper's latest order that had any, to offer again on the next
/// order; 404 when there are none (or the deal's retention is over and they were deleted).
#[utoipa::path(get, path = "/api/delivery", tag = "orders",
    responses((status = 200, body = Delivery), (status = 404, body = ErrorBody)))]
pub async fn last_delivery(
    State(app): State<SharedApp>,
    shopper: Shopper,
) -> Result<Response, ApiError> {
    if let Some(details) = orders::delivery::last_of(&app.db, &shopper.id).await? {
        return Ok((
            [(axum::http::header::CACHE_CONTROL, "private, no-store")],
            Json(details),
        )
            .into_response());
    }
    Err(ApiError::not_found(
        match orders::delivery::deleted_at(&app.db).await? {
            Some(at) => format!(
                "the deal's retention ended: every delivery detail was deleted at {}",
                at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
            ),
            None => "no delivery details yet: they are kept from your first order that needed \
                     them"
                .to_owned(),
        },
    ))
}

/// The shopper's orders, newest first.
#[utoipa::path(get, path = "/api/orders", tag = "orders",
    responses((status = 200, body = Vec<Order>)))]
pub async fn my_orders(
    State(app): State<SharedApp>,
    shopper: Shopper,
) -> Result<Json<Vec<Order>>, ApiError> {
    Ok(Json(db::orders_of(&app.db, &shopper.id).await?))
}

fn order_id(id: &str) -> Result<i64, ApiError> {
    id.parse::<i64>().ok().filter(|id| *id > 0).ok_or_else(|| {
        ApiError::bad_request(
            "invalid_order_id",
            format!("{id:?} is not an order id; ids are positive whole numbers"),
        )
    })
}

/// One of the shopper's orders.
#[utoipa::path(get, path = "/api/orders/{id}", tag = "orders",
    params(("id" = i64, Path, description = "order id", minimum = 1)),
    responses((status = 200, body = Order), (status = 404, body = ErrorBody),
        (status = 400, body = ErrorBody, description = "invalid_order_id")))]
pub async fn my_order(
    State(app): State<SharedApp>,
    shopper: Shopper,
    Path(id): Path<String>,
) -> Result<Json<Order>, ApiError> {
    let id = order_id(&id)?;
    db::order_of(&app.db, &shopper.id, id)
        .await?
        .map(Json)
        .ok_or_else(|| ApiError::not_found(format!("you have no order {id}")))
}

/// Cancels an order and refunds it, once however often it is asked; its stock goes back on
/// sale. Cancelling again changes nothing (409 `already_cancelled`).
#[utoipa::path(post, path = "/api/orders/{id}/cancel", tag = "orders",
    params(("id" = i64, Path, description = "order id", minimum = 1)),
    responses((status = 200, body = Order), (status = 404, body = ErrorBody),
        (status = 400, body = ErrorBody, description = "invalid_order_id"),
        (status = 409, body = ErrorBody, description = "already_cancelled"),
        (status = 503, body = ErrorBody, description = "unavailable: the order store or the refund is away; a cancellation already recorded completes on its own, and asking again is safe")))]
pub async fn cancel_order(
    State(app): State<SharedApp>,
    shopper: Shopper,
    Path(id): Path<String>,
) -> Result<Json<Order>, ApiError> {
    let id = order_id(&id)?;
    Ok(Json(orders::cancel(&app, &shopper, id).await?))
}
