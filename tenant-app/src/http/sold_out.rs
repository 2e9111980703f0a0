//! The answer to an order once the deal is sold out, for everyone who cannot be owed more: it
//! is decided from the deal's state and the shopper the request names, before the session's
//! signature is checked or the body parsed, and sent as bytes rendered once. Only shoppers
//! holding an idempotency key (`orders::buyers`) take the whole order path, where the same
//! order sent again gets that order back.
//!
//! The body is still read afterwards, for one thing: an admission it carries, checked against
//! the shopper's own session, ends, so its place goes to the next shopper should a unit come
//! back (as the whole path does).

use std::sync::LazyLock;

use axum::{
    body::{Body, Bytes},
    extract::{Request, State},
    http::{header, HeaderValue, Method, StatusCode},
    middleware::Next,
    response::Response,
};
use serde::Deserialize;

use super::{
    error::{ErrorBody, ErrorDetail, RejectionCode},
    BODY_LIMIT,
};
use crate::{app::SharedApp, deal::DealState, identity::Claimed};

/// `409 sold_out`, the same words as the whole path's.
static SOLD_OUT: LazyLock<Bytes> = LazyLock::new(|| {
    let body = ErrorBody {
        error: ErrorDetail {
            code: "sold_out".into(),
            message: "the deal is sold out".into(),
            fields: None,
        },
    };
    Bytes::from(serde_json::to_vec(&body).expect("an error body serialises"))
});

fn sold_out() -> Response {
    let mut response = Response::new(Body::from(SOLD_OUT.clone()));
    *response.status_mut() = StatusCode::CONFLICT;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response.extensions_mut().insert(RejectionCode("sold_out"));
    response
}

/// Answers `POST /api/orders` at once when the deal is sold out and the request's shopper
/// holds no idempotency key; passes everything else on.
pub async fn answer(State(app): State<SharedApp>, request: Request, next: Next) -> Response {
    if request.method() != Method::POST || request.uri().path() != "/api/orders" {
        return next.run(request).await;
    }
    let Some(claimed) = decided(&app, request.headers()) else {
        return next.run(request).await;
    };
    if let Claimed::Shopper(id) = claimed {
        end_admission(&app, &id, request).await;
    }
    sold_out()
}

/// Figures older than this are not trusted to say "sold out" alone: the ticker that reads them
/// every 100 ms is failing (Redis away, a step erring), and a unit may have come back and sold
/// again meanwhile. The whole path then answers, from Redis.
const FRESH_MS: i64 = 500;

/// Who the request names, when its answer is "sold out" whatever its body says.
fn decided(app: &SharedApp, headers: &axum::http::HeaderMap) -> Option<Claimed> {
    let now = app.clock.now();
    let read_ms = app
        .figures_read_ms
        .load(std::sync::atomic::Ordering::Relaxed);
    if now.timestamp_millis() - read_ms > FRESH_MS || app.state_now(now) != DealState::SoldOut {
        return None;
    }
    let buyers = app.buyers.read().ok()?.clone()?;
    if !buyers.is_current(&app.figures.borrow()) {
        return None;
    }
    match app.identifier.claimed(headers)? {
        Claimed::Shopper(id) if buyers.may_hold(&id) => None,
        claimed => Some(claimed),
    }
}

#[derive(Deserialize)]
struct Carried<'a> {
    #[serde(rename = "admissionToken", borrow, default)]
    admission_token: Option<&'a str>,
}

/// Ends the admission the body carries, if it is the shopper's own (their session checked) and
/// of this epoch; anything else in the body is not looked at.
async fn end_admission(app: &SharedApp, claimed: &str, request: Request) {
    let (parts, body) = request.into_parts();
    let Ok(bytes) = axum::body::to_bytes(body, BODY_LIMIT).await else {
        return;
    };
    let Some(token) = serde_json::from_slice::<Carried>(&bytes)
        .ok()
        .and_then(|c| c.admission_token)
    else {
        return;
    };
    if crate::tokens::Signer::unchecked_admission_shopper(token).as_deref() != Some(claimed) {
        // Another shopper's token: it ends nothing (the whole path refuses it as foreign).
        return;
    }
    // The session checked, then the same ending as the whole path's (token, epoch, lease).
    let limit = app.deal().per_user_limit();
    if let Ok(shopper) = app
        .identifier
        .identify(&parts.headers, &app.signer, limit)
        .await
    {
        if shopper.id == claimed {
            crate::orders::end_admission(app, &shopper, token).await;
        }
    }
}
