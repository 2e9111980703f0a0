//! Live updates for the storefront page: a server-sent event stream of the shopper's queue
//! status, pushed whenever the deal-wide figures move (so a sellout reaches everyone waiting at
//! once) and at least every few seconds.

use std::{convert::Infallible, time::Duration};

use axum::{
    extract::State,
    response::sse::{Event, KeepAlive, Sse},
};
use futures_util::{stream, Stream};
use tokio::time::Instant;

use axum::http::HeaderMap;

use crate::{
    app::SharedApp,
    http::{
        error::ApiError,
        queue::{checked_ticket, presented_ticket, status_of},
    },
    identity::Shopper,
    queue::Ticket,
};

/// At most this often per connection, however fast the figures move.
const MIN_GAP: Duration = Duration::from_millis(250);
/// At least this often, so the page's clock offset stays fresh.
const MAX_GAP: Duration = Duration::from_secs(5);

/// How long the stream may go without looking at the shopper's status.
fn look_gap(app: &crate::app::App) -> Duration {
    (crate::app::App::settings(&app.deal()).lease / 3).min(MAX_GAP)
}

struct Cursor {
    app: SharedApp,
    shopper: Shopper,
    /// The ticket presented when the stream opened, checked then.
    ticket: Result<Option<Ticket>, ApiError>,
    figures: tokio::sync::watch::Receiver<crate::queue::Figures>,
    deal: tokio::sync::watch::Receiver<std::sync::Arc<crate::deal::Deal>>,
    last: Option<serde_json::Value>,
    last_sent: Instant,
    /// When the status was last looked at.
    last_look: Instant,
    /// The ETag of the last head sent.
    head: Option<String>,
    /// An event to send before looking again.
    pending: Option<Event>,
    /// What was sent is all there is for now: wait for a change before looking again.
    settled: bool,
}

/// `status` events carrying the same JSON as `GET /api/queue`, and `head` events carrying the
/// same JSON as `GET /api/queue/head` whenever the head changes (not when it only ages). The
/// stream follows the queue ticket presented when it opens (cookie or `X-Timedeal-Ticket`):
/// open it again after joining.
#[utoipa::path(get, path = "/api/events", tag = "queue",
    responses((status = 200, content_type = "text/event-stream",
        description = "`status` events, each carrying a QueueStatus as JSON, and `head` events, each carrying a Head")))]
pub async fn stream(
    State(app): State<SharedApp>,
    shopper: Shopper,
    headers: HeaderMap,
) -> Sse<impl Stream<Item = Result<Event, Infallible>>> {
    let token = presented_ticket(&headers);
    let mut cursor = Cursor {
        ticket: checked_ticket(&app, &shopper, token.as_deref()),
        figures: app.figures.clone(),
        deal: app.deal.clone(),
        app,
        shopper,
        last: None,
        last_sent: Instant::now(),
        // The first look goes at once.
        last_look: Instant::now()
            .checked_sub(MIN_GAP)
            .unwrap_or_else(Instant::now),
        head: None,
        pending: None,
        settled: false,
    };
    // The first look reads them as they are now: only later changes wake the stream.
    cursor.figures.borrow_and_update();
    cursor.deal.borrow_and_update();
    let events = stream::unfold(cursor, |mut cursor| async move {
        loop {
            if let Some(event) = cursor.pending.take() {
                return Some((Ok(event), cursor));
            }
            if cursor.settled {
                cursor.settled = false;
                // A watch whose sender is gone errs at once, every time: that branch is then
                // off, and only the timer wakes the stream.
                tokio::select! {
                    Ok(()) = cursor.figures.changed() => {}
                    Ok(()) = cursor.deal.changed() => {}
                    // An admitted shopper's lease is renewed by these looks: three a lease at
                    // least.
                    _ = tokio::time::sleep(look_gap(&cursor.app)) => {}
                }
            }
            // However the last look went, a problem included: never faster than this.
            let since = cursor.last_look.elapsed();
            if since < MIN_GAP {
                tokio::time::sleep(MIN_GAP - since).await;
            }
            cursor.last_look = Instant::now();
            let status = match &cursor.ticket {
                Ok(ticket) => status_of(&cursor.app, &cursor.shopper, ticket.as_ref()).await,
                Err(error) => Err(error.clone()),
            };
            let (kind, mut json) = match status {
                Ok(status) => ("status", serde_json::to_value(&status).unwrap_or_default()),
                Err(error) => (
                    "problem",
                    serde_json::json!({"code": error.code, "message": error.message}),
                ),
            };
            // The server time changes every call; it alone is no reason to send. A problem
            // that stays the same is said once (and again every MAX_GAP).
            let mut compared = json.clone();
            compared["serverTime"] = serde_json::Value::Null;
            compared["event"] = kind.into();
            let event = (cursor.last.as_ref() != Some(&compared)
                || cursor.last_sent.elapsed() >= MAX_GAP)
                .then(|| {
                    cursor.last = Some(compared);
                    Event::default().event(kind).data(json.take().to_string())
                });
            let head = super::head::rendered(&cursor.app);
            let head = (cursor.head.as_deref() != Some(head.etag.as_str())).then(|| {
                cursor.head = Some(head.etag);
                Event::default()
                    .event("head")
                    .data(String::from_utf8_lossy(&head.body))
            });
            cursor.settled = true;
            match (event, head) {
                (Some(event), head) => {
                    cursor.last_sent = Instant::now();
                    cursor.pending = head;
                    return Some((Ok(event), cursor));
                }
                (None, Some(head)) => return Some((Ok(head), cursor)),
                (None, None) => {}
            }
        }
    });
    Sse::new(events).keep_alive(KeepAlive::default())
}
