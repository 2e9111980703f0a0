//! `GET /api/queue/head`: the line's shared state, the same bytes for every shopper within a
//! second, served with `Cache-Control: public` and an ETag so an ingress, a CDN or a browser
//! answers nearly every look. No session, ticket or cookie is read or set: the route sits
//! outside the shopper middleware.

use axum::{
    body::Body,
    extract::State,
    http::{header, HeaderMap, HeaderValue, StatusCode},
    response::{IntoResponse, Response},
};

use crate::{app::SharedApp, queue::head};

/// The head as last rendered: its second, body, ETag and the headers that go with it.
#[derive(Clone)]
pub struct Rendered {
    second: i64,
    pub body: axum::body::Bytes,
    pub etag: String,
    tag: HeaderValue,
    cache: HeaderValue,
}

/// The line's head, pace, state and the draw's commitment: what every waiting shopper shares.
/// Position = place − head; see the README's queue section for the rest of the rule.
#[utoipa::path(get, path = "/api/queue/head", tag = "queue",
    params(("If-None-Match" = Option<String>, Header, description = "the ETag of a head already held")),
    responses((status = 200, body = head::Head,
        headers(("Cache-Control" = String, description = "public, max-age=<--head-max-age>, stale-while-revalidate"),
            ("ETag" = String, description = "weak; the same for the same line, whatever its age"))),
        (status = 304, description = "the head held is current")))]
pub async fn head(State(app): State<SharedApp>, headers: HeaderMap) -> Response {
    let Rendered {
        body,
        etag,
        tag,
        cache,
        ..
    } = rendered(&app);
    // Compared weakly: a proxy that compresses the body weakens the tag it passes on.
    let bare = |t: &str| t.trim().trim_start_matches("W/").to_owned();
    let matches = headers
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|held| held.trim() == "*" || held.split(',').any(|t| bare(t) == bare(&etag)));
    if matches {
        return (
            StatusCode::NOT_MODIFIED,
            [(header::CACHE_CONTROL, cache), (header::ETAG, tag)],
        )
            .into_response();
    }
    (
        [
            (
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            ),
            (header::CACHE_CONTROL, cache),
            (header::ETAG, tag),
        ],
        Body::from(body),
    )
        .into_response()
}

/// The head's bytes and ETag for the current second: rendered once a second at most, from this
/// replica's memory (no Redis), under the lock, so one replica never serves two heads in a
/// second. The ETag is weak and leaves the clock out: a head that only aged is the same head.
pub fn rendered(app: &SharedApp) -> Rendered {
    let now = app.clock.now();
    let second = now.timestamp();
    let mut cache = app.head_cache.lock().expect("head lock");
    if let Some(held) = cache.as_ref().filter(|held| held.second == second) {
        return held.clone();
    }
    let deal = app.deal();
    let figures = *app.figures.borrow();
    let state = deal.state_at(now, figures.sold_out());
    let beacon = (!app.draw_beacon.is_empty()).then_some(app.draw_beacon.as_str());
    let mut line = head::head(
        &figures,
        &crate::app::App::settings(&deal),
        state,
        deal.timeline.start,
        now,
        &app.draw_commitment,
        beacon,
    );
    let body = axum::body::Bytes::from(serde_json::to_vec(&line).expect("the head serialises"));
    line.server_time = chrono::DateTime::UNIX_EPOCH;
    line.seconds_to_start = 0;
    let unclocked = serde_json::to_vec(&line).expect("the head serialises");
    let etag = format!("W/\"{:016x}\"", timedeal_api::storage::fnv1a(&unclocked));
    let rendered = Rendered {
        second,
        body,
        tag: HeaderValue::from_str(&etag).expect("an ETag is hex in quotes"),
        etag,
        cache: HeaderValue::from_str(&format!(
            "public, max-age={age}, stale-while-revalidate={swr}",
            age = app.head_max_age,
            swr = app.head_max_age * 2
        ))
        .expect("digits make a header"),
    };
    *cache = Some(rendered.clone());
    rendered
}
