//! The queue's JSON API: joining with a signed ticket (and the join puzzle when the deal asks
//! for one), the shopper's status, presence pings, leaving, and the public fairness record.

use axum::{
    extract::State,
    http::{header, HeaderMap, HeaderValue, StatusCode},
    response::{IntoResponse, Response},
    Json,
};
use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::{
    app::{App, SharedApp},
    db,
    deal::{Deal, DealState},
    http::error::{ApiError, ErrorBody},
    identity::{self, Shopper},
    queue::{
        self,
        beacon::BeaconRecord,
        challenge, draw,
        fairness::{self, Fairness, LogSummary},
        liveness,
        ticket::{TICKET_COOKIE, TICKET_HEADER},
        Joined, Place, QueueState, QueueStatus, Standing, Ticket, ViewContext,
    },
    tokens::{Admission, TokenError},
};

/// The join puzzle's difficulty, when the deal asks for one.
pub fn join_difficulty(deal: &Deal) -> Option<u32> {
    deal.spec
        .queue
        .join_challenge
        .as_ref()
        .map(|c| c.difficulty.clamp(1, 28) as u32)
}

fn challenge_error(error: TokenError) -> ApiError {
    let (code, message) = match error {
        TokenError::Expired => (
            "challenge_expired",
            "the join challenge has expired; fetch a new one from GET /api/queue/challenge",
        ),
        TokenError::Unsolved => (
            "challenge_failed",
            "the solution does not solve the join challenge: SHA-256 of the challenge, ':' and \
             the solution (decimal digits) must start with the difficulty's zero bits",
        ),
        TokenError::Foreign => (
            "challenge_foreign",
            "the join challenge was issued to another shopper; fetch your own",
        ),
        _ => (
            "challenge_forged",
            "the join challenge was not issued by this deal; fetch one from GET /api/queue/challenge",
        ),
    };
    ApiError::new(StatusCode::FORBIDDEN, code, message)
}

/// Checks the join puzzle when the deal asks for one.
fn check_challenge(app: &App, shopper: &Shopper, headers: &HeaderMap) -> Result<(), ApiError> {
    let deal = app.deal();
    let Some(difficulty) = join_difficulty(&deal) else {
        return Ok(());
    };
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    let (Some(challenge_token), Some(solution)) = (
        header(challenge::CHALLENGE_HEADER),
        header(challenge::SOLUTION_HEADER),
    ) else {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "challenge_required",
            format!(
                "this deal asks for a solved join challenge ({difficulty} bits): fetch one from \
                 GET /api/queue/challenge and send it with its solution in the \
                 X-Timedeal-Challenge and X-Timedeal-Solution headers"
            ),
        ));
    };
    challenge::check(
        &app.signer,
        challenge_token,
        solution,
        &deal.name,
        &shopper.id,
        difficulty,
        app.clock.now().timestamp_millis(),
    )
    .map_err(challenge_error)
}

/// A join challenge: a puzzle the shopper solves before joining.
#[derive(Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct JoinChallengeView {
    /// False when the deal asks for no puzzle: join straight away.
    pub required: bool,
    /// Send it back in `X-Timedeal-Challenge` when joining.
    pub challenge: Option<String>,
    /// Find decimal digits `s` (at most 20) such that SHA-256 of `challenge + ":" + s` starts
    /// with this many zero bits, and send `s` in `X-Timedeal-Solution`.
    pub difficulty: Option<u32>,
    /// After this the challenge no longer passes.
    pub expires_at: Option<DateTime<Utc>>,
}

/// A fresh join challenge for this shopper (when the deal's `queue.joinChallenge` is on). The
/// puzzle is checked without any state on the server; the storefront's page solves it in a Web
/// Worker.
#[utoipa::path(get, path = "/api/queue/challenge", tag = "queue",
    responses((status = 200, body = JoinChallengeView)))]
pub async fn join_challenge(
    State(app): State<SharedApp>,
    shopper: Shopper,
) -> Json<JoinChallengeView> {
    let deal = app.deal();
    let Some(difficulty) = join_difficulty(&deal) else {
        return Json(JoinChallengeView {
            required: false,
            challenge: None,
            difficulty: None,
            expires_at: None,
        });
    };
    let (token, expires_ms) = challenge::issue(
        &app.signer,
        &deal.name,
        &shopper.id,
        difficulty,
        app.clock.now().timestamp_millis(),
    );
    Json(JoinChallengeView {
        required: true,
        challenge: Some(token),
        difficulty: Some(difficulty),
        expires_at: DateTime::from_timestamp_millis(expires_ms),
    })
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
        TokenError::Unsolved => "ticket_malformed",
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
/// Redis asked whether they are admitted and what they own. A shopper who holds a place is
/// marked as still there (see [`liveness`]).
pub async fn status_of(
    app: &App,
    shopper: &Shopper,
    ticket: Option<&Ticket>,
) -> Result<QueueStatus, ApiError> {
    status_marking(app, shopper, ticket, true).await
}

/// [`status_of`], marking the shopper as still there when `mark` (a number just taken needs no
/// mark: admission presumes it present until its first poll is due).
async fn status_marking(
    app: &App,
    shopper: &Shopper,
    ticket: Option<&Ticket>,
    mark: bool,
) -> Result<QueueStatus, ApiError> {
    let now = app.clock.now();
    let now_ms = now.timestamp_millis();
    let deal = app.deal();
    let figures = *app.figures.borrow();
    let draw = app.draw_for(&figures);
    let standing = queue::standing(ticket, &figures, draw.as_deref());
    let settings = App::settings(&deal);
    let (place, owned) = match (standing, ticket) {
        (Standing::PreQueue, Some(ticket)) => (Place::PreQueue, ticket.owned),
        (Standing::Waiting { position, place }, Some(ticket)) => {
            (Place::Waiting { position, place }, ticket.owned)
        }
        (Standing::Reached, Some(ticket)) => {
            // The shopper is there: their poll renews the lease.
            let lease = app
                .queue
                .lease(Some(ticket.number), &shopper.id, now_ms, settings.lease)
                .await?;
            match lease.admitted {
                Some(admitted) => (
                    Place::Admitted {
                        number: ticket.number,
                        until_ms: admitted.until_ms,
                        cap_ms: admitted.cap_ms,
                    },
                    lease.owned,
                ),
                None => (Place::Outside, lease.owned),
            }
        }
        _ => (
            Place::Outside,
            app.queue
                .lease(None, &shopper.id, now_ms, settings.lease)
                .await?
                .owned,
        ),
    };
    if let (Place::PreQueue | Place::Waiting { .. }, Some(ticket), true) = (place, ticket, mark) {
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
        settings,
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
    }
    status.draw_commitment = app.draw_commitment.clone();
    status.draw_beacon = (!app.draw_beacon.is_empty()).then(|| app.draw_beacon.clone());
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
pub async fn status(
    State(app): State<SharedApp>,
    shopper: Shopper,
    headers: HeaderMap,
) -> Response {
    let token = presented_ticket(&headers);
    let ticket = match checked_ticket(&app, &shopper, token.as_deref()) {
        Ok(ticket) => ticket,
        Err(error) => return refuse_ticket(&headers, error),
    };
    match status_of(&app, &shopper, ticket.as_ref()).await {
        Ok(status) => Json(status).into_response(),
        Err(error) => error.into_response(),
    }
}

/// What a presence ping answers.
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Pinged {
    /// True once the line has come to the ticket's place (admitted, or passed over while
    /// silent): ask `GET /api/queue`, which says which.
    pub reached: bool,
    /// When to ping again, in milliseconds: often enough to be seen in every liveness window.
    pub ping_after_ms: u64,
}

/// A waiting shopper's proof of presence: keeps their place, as a poll of `GET /api/queue`
/// does, at a fraction of its cost (no status is built, nothing is signed, Redis is not asked).
/// A shopper who follows the public head (`GET /api/queue/head`) pings every `pingAfterMs` and
/// asks for their status only once the head reaches their place.
#[utoipa::path(post, path = "/api/queue/ping", tag = "queue",
    params(("X-Timedeal-Ticket" = Option<String>, Header, description = "the queue ticket from joining (browsers send the `td_ticket` cookie instead)")),
    responses((status = 200, body = Pinged),
        (status = 409, body = ErrorBody, description = "no_place: the ticket holds no place now (no ticket, or one of another epoch): ask GET /api/queue or join again. A ticket the line has passed (admitted or passed over) answers 200 with reached: true"),
        (status = 403, body = ErrorBody, description = "ticket_forged, ticket_foreign, ticket_other_deal, ticket_malformed: join again without the ticket")))]
pub async fn ping(State(app): State<SharedApp>, shopper: Shopper, headers: HeaderMap) -> Response {
    let token = presented_ticket(&headers);
    let ticket = match checked_ticket(&app, &shopper, token.as_deref()) {
        Ok(ticket) => ticket,
        Err(error) => return refuse_ticket(&headers, error),
    };
    let deal = app.deal();
    let figures = *app.figures.borrow();
    let draw = app.draw_for(&figures);
    let window = App::window(&deal);
    let ping_after_ms = liveness::ping_gap(window).as_millis() as u64;
    match (
        queue::standing(ticket.as_ref(), &figures, draw.as_deref()),
        ticket,
    ) {
        (Standing::PreQueue | Standing::Waiting { .. }, Some(ticket)) => {
            let now_ms = app.clock.now().timestamp_millis();
            app.marks
                .mark(liveness::window_of(now_ms, window), ticket.number);
            Json(Pinged {
                reached: false,
                ping_after_ms,
            })
            .into_response()
        }
        (Standing::Reached, Some(_)) => Json(Pinged {
            reached: true,
            ping_after_ms,
        })
        .into_response(),
        _ => ApiError::conflict(
            "no_place",
            "this ticket holds no place in the line now: ask GET /api/queue, or join again",
        )
        .into_response(),
    }
}

/// Joins the queue (the pre-queue before the start) and hands back a signed ticket, as the
/// `td_ticket` cookie and as `queueTicket`. Joining again with a ticket that still holds a
/// place changes nothing.
#[utoipa::path(post, path = "/api/queue", tag = "queue",
    params(("X-Timedeal-Ticket" = Option<String>, Header, description = "a ticket from an earlier join: its place is kept"),
        ("X-Timedeal-Challenge" = Option<String>, Header, description = "when the deal asks for a join challenge: the challenge from GET /api/queue/challenge"),
        ("X-Timedeal-Solution" = Option<String>, Header, description = "when the deal asks for a join challenge: its solution")),
    responses((status = 200, body = QueueStatus), (status = 409, body = ErrorBody,
        description = "queue_not_open, sold_out, over_limit, deal_ended or deal_suspended"),
        (status = 403, body = ErrorBody, description = "ticket_forged, ticket_foreign, ticket_other_deal, ticket_malformed: join again without the ticket. challenge_required, challenge_failed, challenge_expired, challenge_foreign, challenge_forged: solve a fresh join challenge"),
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
        // A shopper already in line keeps their place (below); nobody new joins.
        DealState::SoldOut => {}
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
        let mut status = status_of(app, shopper, Some(&ticket)).await?;
        if matches!(
            status.state,
            QueueState::PreQueue | QueueState::Waiting | QueueState::Admitted | QueueState::Paused
        ) {
            status.queue_ticket = presented;
            return Ok((status, None));
        }
    }
    if app.state_now(now) == DealState::SoldOut {
        return Err(ApiError::conflict(
            "sold_out",
            "the deal is sold out; units that come back from cancellations go to the shoppers \
             already in line",
        ));
    }
    check_challenge(app, shopper, headers)?;
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
    let mut status = status_marking(app, shopper, Some(&ticket), false).await?;
    status.queue_ticket = Some(token.clone());
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
        app.queue.leave(ticket.number, ticket.epoch).await?;
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
    let deal = app.deal();
    // Final once the deal ended and nothing waits to be published (asked first: nothing is
    // staged after the end, so a log read after it is whole).
    let complete = app.clock.now() >= deal.timeline.end && app.queue.staged_count().await? == 0;
    let commitment = app.draw_commitment.clone();
    let published = app.published.read(&app.db, &commitment).await?;
    let drawn = published.pre_queue;
    let beacon = if app.draw_beacon.is_empty() {
        None
    } else {
        let (round, randomness, unavailable, closed_at) = db::beacon_drawn(&app.db).await?;
        Some(BeaconRecord {
            source: app.draw_beacon.clone(),
            round: round.map(|r| r as u64),
            randomness,
            after: closed_at.unwrap_or_else(|| deal.timeline.start.timestamp_millis()),
            unavailable,
        })
    };
    Ok(Json(Fairness {
        deal: deal.name.clone(),
        seed: drawn.map(|_| draw::hex(&app.draw_seed)),
        pre_queue_size: drawn,
        algorithm: fairness::ALGORITHM.into(),
        admission_log: LogSummary {
            entries: published.log.len() as u64,
            admitted: published.admitted,
            head: published.head,
            complete,
        },
        commitment,
        beacon,
    }))
}

/// The admission log: one line per admission step, the time in milliseconds, then
/// `place:number` for each shopper admitted, in order. Served from PostgreSQL, a moment behind
/// the admissions: a line once served is never taken back.
#[utoipa::path(get, path = "/api/fairness/log", tag = "queue",
    responses((status = 200, content_type = "text/plain", body = String),
        (status = 503, body = ErrorBody)))]
pub async fn fairness_log(State(app): State<SharedApp>) -> Result<Response, ApiError> {
    let mut log = app
        .published
        .read(&app.db, &app.draw_commitment)
        .await?
        .log
        .join("\n");
    if !log.is_empty() {
        log.push('\n');
    }
    Ok(([(header::CONTENT_TYPE, "text/plain; charset=utf-8")], log).into_response())
}
