//! The JSON API. Every answer is JSON; every refusal is an [`ApiError`] with a stable code.

use axum::{
    extract::{FromRequest, Path, Request, State},
    http::{header, HeaderMap, HeaderValue, StatusCode},
    response::{IntoResponse, Response},
    Json,
};
use chrono::{DateTime, Utc};
use serde::{de::DeserializeOwned, Serialize};

use crate::{
    app::{App, SharedApp},
    db::{self, Order},
    deal::DealState,
    http::error::{ApiError, ErrorBody},
    identity::{self, Shopper},
    orders::{self, PlaceOrder},
    queue::{
        self, draw,
        fairness::{self, Fairness, LogSummary},
        liveness,
        ticket::{TICKET_COOKIE, TICKET_HEADER},
        Joined, Place, QueueState, QueueStatus, Standing, Ticket, ViewContext,
    },
    tokens::{Admission, TokenError},
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
    /// The server's clock: countdowns are computed against this, never the device's clock.
    pub server_time: DateTime<Utc>,
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
        server_time: now,
    }
}

/// The deal, its state and its stock.
#[utoipa::path(get, path = "/api/deal", tag = "deal",
    responses((status = 200, body = DealView)))]
pub async fn deal(State(app): State<SharedApp>, shopper: Shopper) -> Json<DealView> {
    Json(deal_view(&app, &shopper, app.clock.now()))
}

/// The ticket a request presents: the `X-Timedeal-Ticket` header (apps) or the `td_ticket`
/// cookie (browsers).
pub fn presented_ticket(headers: &HeaderMap) -> Option<String> {
    headers
        .get(TICKET_HEADER)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
        .or_else(|| identity::cookie(headers, TICKET_COOKIE))
}

fn ticket_error(error: TokenError) -> ApiError {
    let code = match error {
        TokenError::Malformed => "ticket_malformed",
        TokenError::Forged => "ticket_forged",
        TokenError::Expired => "ticket_expired",
        TokenError::Foreign => "ticket_foreign",
        TokenError::OtherDeal => "ticket_other_deal",
    };
    ApiError::new(
        StatusCode::FORBIDDEN,
        code,
        format!("the queue ticket was refused: {error}; join the queue again without it"),
    )
}

/// The presented ticket, checked: `Ok(None)` when there is none, an error when it is not one
/// this deal issued to this shopper.
pub fn checked_ticket(
    app: &App,
    shopper: &Shopper,
    token: Option<&str>,
) -> Result<Option<Ticket>, ApiError> {
    token
        .map(|token| Ticket::open(&app.signer, token, &app.deal().name, &shopper.id))
        .transpose()
        .map_err(ticket_error)
}

/// What the shopper holding `ticket` is told about the queue right now. A waiting shopper's
/// answer costs no Redis call: their place comes from the ticket and the figures this replica
/// reads a few times a second. Only once the line reaches their place (or without a ticket) is
/// Redis asked whether they are admitted and what they own.
pub async fn status_of(
    app: &App,
    shopper: &Shopper,
    ticket: Option<&Ticket>,
    token: Option<&str>,
) -> Result<QueueStatus, ApiError> {
    let now = app.clock.now();
    let now_ms = now.timestamp_millis();
    let deal = app.deal();
    let figures = *app.figures.borrow();
    let draw = app.draw_for(&figures);
    let standing = queue::standing(ticket, &figures, draw.as_deref());
    let (place, owned) = match (standing, ticket) {
        (Standing::PreQueue, Some(ticket)) => (Place::PreQueue, ticket.owned),
        (Standing::Waiting { position, place }, Some(ticket)) => {
            (Place::Waiting { position, place }, ticket.owned)
        }
        (Standing::Reached, Some(ticket)) => {
            match app
                .queue
                .admission(Some(ticket.number), &shopper.id)
                .await?
            {
                (Some(expires_ms), owned) if expires_ms > now_ms => (
                    Place::Admitted {
                        number: ticket.number,
                        expires_ms,
                    },
                    owned,
                ),
                (_, owned) => (Place::Outside, owned),
            }
        }
        _ => (
            Place::Outside,
            app.queue.admission(None, &shopper.id).await?.1,
        ),
    };
    if let (Place::PreQueue | Place::Waiting { .. }, Some(ticket)) = (place, ticket) {
        let window = liveness::window_of(now_ms, App::window(&deal));
        app.marks.mark(window, ticket.number);
    }
    let epoch = figures.epoch;
    let sign = |number: u64, expires_ms: i64| {
        app.signer.admission_token(&Admission {
            deal: deal.name.clone(),
            shopper: shopper.id.clone(),
            epoch,
            nonce: number,
            expires_ms,
        })
    };
    let cx = ViewContext {
        deal: deal.state_at(now, figures.sold_out()),
        settings: App::settings(&deal),
        limit: shopper.limit,
        owned,
        start: deal.timeline.start,
        now,
        poll_gap: liveness::max_poll_gap(App::window(&deal)),
        admission_token: &sign,
    };
    let mut status = queue::view(place, &figures, &cx);
    if !matches!(place, Place::Outside) {
        status.join_number = ticket.map(|t| t.number);
        status.queue_ticket = token.map(str::to_owned);
    }
    status.draw_commitment = app.commitment();
    Ok(status)
}

/// A `Set-Cookie` for the ticket; an empty token clears it.
fn ticket_cookie(headers: &HeaderMap, token: &str) -> HeaderValue {
    let secure = headers
        .get("x-forwarded-proto")
        .is_some_and(|proto| proto.as_bytes().eq_ignore_ascii_case(b"https"));
    let age = if token.is_empty() { 0 } else { 86_400 };
    HeaderValue::from_str(&format!(
        "{TICKET_COOKIE}={token}; Path=/; HttpOnly; SameSite=Lax; Max-Age={age}{}",
        if secure { "; Secure" } else { "" }
    ))
    .expect("a ticket is base64url and a dot")
}

/// A refused ticket also clears the cookie, so the next join starts afresh.
fn refuse_ticket(headers: &HeaderMap, error: ApiError) -> Response {
    let mut response = error.into_response();
    response
        .headers_mut()
        .append(header::SET_COOKIE, ticket_cookie(headers, ""));
    response
}

/// The shopper's place in the queue, the estimated wait and when to ask again. Once admitted,
/// the answer carries the admission token to send with orders. A waiting shopper's poll is
/// answered from their ticket, without Redis.
#[utoipa::path(get, path = "/api/queue", tag = "queue",
    params(("X-Timedeal-Ticket" = Option<String>, Header, description = "the queue ticket from joining (browsers send the `td_ticket` cookie instead)")),
    responses((status = 200, body = QueueStatus), (status = 503, body = ErrorBody),
        (status = 403, body = ErrorBody, description = "ticket_forged, ticket_foreign, ticket_other_deal, ticket_malformed: join again without the ticket")))]
pub async fn queue_status(
    State(app): State<SharedApp>,
    shopper: Shopper,
    headers: HeaderMap,
) -> Response {
    let token = presented_ticket(&headers);
    let ticket = match checked_ticket(&app, &shopper, token.as_deref()) {
        Ok(ticket) => ticket,
        Err(error) => return refuse_ticket(&headers, error),
    };
    match status_of(&app, &shopper, ticket.as_ref(), token.as_deref()).await {
        Ok(status) => Json(status).into_response(),
        Err(error) => error.into_response(),
    }
}

/// Joins the queue (the pre-queue before the start) and hands back a signed ticket, as the
/// `td_ticket` cookie and as `queueTicket`. Joining again with a ticket that still holds a
/// place changes nothing.
#[utoipa::path(post, path = "/api/queue", tag = "queue",
    params(("X-Timedeal-Ticket" = Option<String>, Header, description = "a ticket from an earlier join: its place is kept")),
    responses((status = 200, body = QueueStatus), (status = 409, body = ErrorBody,
        description = "queue_not_open, sold_out, over_limit, deal_ended or deal_suspended"),
        (status = 403, body = ErrorBody, description = "ticket_forged, ticket_foreign, ticket_other_deal, ticket_malformed: join again without the ticket"),
        (status = 503, body = ErrorBody)))]
pub async fn join(State(app): State<SharedApp>, shopper: Shopper, headers: HeaderMap) -> Response {
    match join_queue(&app, &shopper, &headers).await {
        Ok((status, Some(token))) => {
            let mut response = Json(status).into_response();
            response
                .headers_mut()
                .append(header::SET_COOKIE, ticket_cookie(&headers, &token));
            response
        }
        Ok((status, None)) => Json(status).into_response(),
        Err(error) if error.code.starts_with("ticket_") => refuse_ticket(&headers, error),
        Err(error) => error.into_response(),
    }
}

/// The status after joining, and the new ticket when one was issued.
async fn join_queue(
    app: &App,
    shopper: &Shopper,
    headers: &HeaderMap,
) -> Result<(QueueStatus, Option<String>), ApiError> {
    let now = app.clock.now();
    let deal = app.deal();
    match app.state_now(now) {
        DealState::Upcoming if !deal.timeline.pre_queue_open_at(now) => {
            return Err(ApiError::conflict(
                "queue_not_open",
                format!(
                    "the queue opens at {}",
                    deal.timeline.pre_queue_from.to_rfc3339()
                ),
            ))
        }
        DealState::SoldOut => return Err(ApiError::conflict("sold_out", "the deal is sold out")),
        DealState::Ended => return Err(ApiError::conflict("deal_ended", "the deal has ended")),
        DealState::Suspended => {
            return Err(ApiError::conflict(
                "deal_suspended",
                "the deal is paused; the queue takes no one right now",
            ))
        }
        DealState::Upcoming | DealState::Live => {}
    }
    let presented = presented_ticket(headers);
    if let Some(ticket) = checked_ticket(app, shopper, presented.as_deref())? {
        let status = status_of(app, shopper, Some(&ticket), presented.as_deref()).await?;
        if matches!(
            status.state,
            QueueState::PreQueue | QueueState::Waiting | QueueState::Admitted
        ) {
            return Ok((status, None));
        }
    }
    let (number, owned, epoch) = match app.queue.join(&shopper.id, shopper.limit).await? {
        Joined::AtLimit => {
            return Err(ApiError::conflict(
                "over_limit",
                format!(
                    "you already own your limit of {} for this deal",
                    shopper.limit
                ),
            ))
        }
        Joined::Restoring => {
            return Err(ApiError::unavailable(
                "the queue is being restored after an interruption; join again in a moment",
            ))
        }
        Joined::Placed {
            number,
            owned,
            epoch,
        } => (number, owned, epoch),
    };
    let ticket = Ticket {
        deal: deal.name.clone(),
        shopper: shopper.id.clone(),
        epoch,
        number,
        owned,
        issued_ms: now.timestamp_millis(),
    };
    let token = ticket.sign(&app.signer);
    let status = status_of(app, shopper, Some(&ticket), Some(&token)).await?;
    Ok((status, Some(token)))
}

/// Leaves the queue, or ends the admission, giving the place to the next shopper.
#[utoipa::path(delete, path = "/api/queue", tag = "queue", responses((status = 204)))]
pub async fn leave(
    State(app): State<SharedApp>,
    shopper: Shopper,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let token = presented_ticket(&headers);
    if let Ok(Some(ticket)) = checked_ticket(&app, &shopper, token.as_deref()) {
        let now_ms = app.clock.now().timestamp_millis();
        let window = liveness::window_of(now_ms, App::window(&app.deal()));
        app.queue.leave(ticket.number, window).await?;
    }
    let mut response = StatusCode::NO_CONTENT.into_response();
    response
        .headers_mut()
        .append(header::SET_COOKIE, ticket_cookie(&headers, ""));
    Ok(response)
}

/// The queue's fairness record: the commitment to the draw's seed (published before anyone
/// could join), the seed and the pre-queue's size once drawn at the start, and the head of the
/// admission log's hash chain. `tenant-app verify-draw URL` checks it all.
#[utoipa::path(get, path = "/api/fairness", tag = "queue",
    responses((status = 200, body = Fairness), (status = 503, body = ErrorBody)))]
pub async fn fairness(State(app): State<SharedApp>) -> Result<Json<Fairness>, ApiError> {
    let figures = *app.figures.borrow();
    let log = app.queue.log(0).await?;
    let commitment = app.commitment();
    let deal = app.deal();
    Ok(Json(Fairness {
        deal: deal.name.clone(),
        seed: figures.drawn.map(|_| draw::hex(&app.draw_seed)),
        pre_queue_size: figures.drawn,
        algorithm: fairness::ALGORITHM.into(),
        admission_log: LogSummary {
            entries: log.len() as u64,
            admitted: fairness::admitted(&log),
            head: fairness::chain(&commitment, &log),
            complete: app.clock.now() >= deal.timeline.end,
        },
        commitment,
    }))
}

/// The admission log: one line per admission step, the time in milliseconds, then
/// `place:number` for each shopper admitted, in order.
#[utoipa::path(get, path = "/api/fairness/log", tag = "queue",
    responses((status = 200, content_type = "text/plain", body = String)))]
pub async fn fairness_log(State(app): State<SharedApp>) -> Result<Response, ApiError> {
    let mut log = app.queue.log(0).await?.join("\n");
    if !log.is_empty() {
        log.push('\n');
    }
    Ok(([(header::CONTENT_TYPE, "text/plain; charset=utf-8")], log).into_response())
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
        (status = 409, body = ErrorBody, description = "sold_out, insufficient_stock, over_limit, deal_not_started, deal_ended, deal_suspended, reservation_lapsed, order_in_progress (ask again), order_failed (send it again)"),
        (status = 413, body = ErrorBody, description = "body_too_large"),
        (status = 415, body = ErrorBody, description = "unsupported_media_type"),
        (status = 503, body = ErrorBody, description = "unavailable: nothing was placed and nothing stays charged; send the same order (same idempotency key) again after `Retry-After` seconds. outcome_unknown: look for the order in your orders"),
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
