//! HTTP: the storefront pages, the JSON API beside them, and the operational endpoints.

pub mod api;
pub mod control;
pub mod error;
pub mod events;
pub mod head;
pub mod openapi;
pub mod ops;
pub mod pages;
pub mod queue;
pub mod reminders;
pub mod sold_out;

use std::{sync::Arc, time::Instant};

use axum::{
    extract::{DefaultBodyLimit, FromRequestParts, MatchedPath, Request, State},
    http::{header, request::Parts, HeaderValue, StatusCode},
    middleware::{self, Next},
    response::{IntoResponse, Response},
    routing::{get, post},
    Router,
};
use tower_governor::{
    governor::GovernorConfigBuilder, key_extractor::SmartIpKeyExtractor, GovernorLayer,
};

use crate::{
    app::SharedApp,
    identity::{AuthError, Shopper, SESSION_COOKIE, SESSION_HEADER},
    metrics::RouteLabels,
};
use error::{ApiError, RejectionCode};

/// Bodies are a few hundred bytes; anything much larger is refused before it is read.
pub const BODY_LIMIT: usize = 16 * 1024;

pub fn router(app: SharedApp, rate_limit_per_second: u32, burst: u32) -> Router {
    let mut api = Router::new()
        .route("/deal", get(api::deal))
        .route(
            "/queue",
            get(queue::status).post(queue::join).delete(queue::leave),
        )
        .route("/queue/ping", post(queue::ping))
        .route("/events", get(events::stream))
        .route("/queue/challenge", get(queue::join_challenge))
        .route("/fairness", get(queue::fairness))
        .route("/fairness/log", get(queue::fairness_log))
        .route("/orders", get(api::my_orders).post(api::place_order))
        .route("/orders/{id}", get(api::my_order))
        .route("/orders/{id}/cancel", post(api::cancel_order))
        .route("/delivery", get(api::last_delivery))
        .route("/reminders", post(reminders::sign_up))
        .fallback(|| async { ApiError::not_found("no such API endpoint; see /openapi.json") });
    if rate_limit_per_second > 0 {
        let config = Arc::new(
            GovernorConfigBuilder::default()
                .per_nanosecond((1_000_000_000 / rate_limit_per_second as u64).max(1))
                .burst_size(burst)
                .key_extractor(SmartIpKeyExtractor)
                .finish()
                .expect("a positive rate and burst make a valid limiter"),
        );
        let limiter = config.limiter().clone();
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(std::time::Duration::from_secs(60)).await;
                limiter.retain_recent();
            }
        });
        api = api.layer(GovernorLayer::new(config).error_handler(|_| {
            ApiError::new(
                StatusCode::TOO_MANY_REQUESTS,
                "rate_limited",
                "too many requests from this client; slow down and follow pollAfterMs",
            )
            .into_response()
        }));
    }
    let shop = Router::new()
        .route("/", get(pages::storefront))
        .route("/reminder.ics", get(pages::reminder))
        .nest("/api", api)
        .layer(middleware::from_fn_with_state(app.clone(), identify))
        // Before the session is checked: a sold-out answer needs none.
        .layer(middleware::from_fn_with_state(
            app.clone(),
            sold_out::answer,
        ));
    Router::new()
        .merge(shop)
        // Outside the shopper middleware: no session is read or set, so any cache may keep it.
        .route("/api/queue/head", get(head::head))
        .route(
            "/reminders/confirm",
            get(reminders::confirm_page).post(reminders::confirm),
        )
        .route(
            "/reminders/unsubscribe",
            get(reminders::unsubscribe_page).post(reminders::unsubscribe),
        )
        .route("/static/app.js", get(pages::script))
        .route("/static/pow.js", get(pages::solver))
        .route("/static/app.css", get(pages::stylesheet))
        .route("/openapi.json", get(openapi::document))
        .route("/metrics", get(ops::metrics))
        .route("/healthz", get(ops::healthz))
        .route("/readyz", get(ops::readyz))
        .route("/internal/stats", get(ops::stats))
        .route("/internal/deal", get(control::current).put(control::push))
        .layer(DefaultBodyLimit::max(BODY_LIMIT))
        .layer(middleware::from_fn_with_state(
            false,
            timedeal_api::web::security_headers,
        ))
        .layer(middleware::from_fn_with_state(app.clone(), observe))
        .with_state(app)
}

/// The result of identifying the request's shopper, for the [`Shopper`] extractor.
#[derive(Clone)]
struct Identity(Result<Shopper, AuthError>);

/// Identifies the shopper before the handler runs, and hands a newly issued session to the
/// client afterwards (as a cookie, and as a header for apps).
async fn identify(State(app): State<SharedApp>, mut request: Request, next: Next) -> Response {
    let limit = app.deal().per_user_limit();
    let identity = app
        .identifier
        .identify(request.headers(), &app.signer, limit)
        .await;
    let new_session = identity.as_ref().ok().and_then(|s| s.new_session.clone());
    // Behind the TLS-terminating ingress the cookie must never travel in clear.
    let secure = request
        .headers()
        .get("x-forwarded-proto")
        .is_some_and(|proto| proto.as_bytes().eq_ignore_ascii_case(b"https"));
    request.extensions_mut().insert(Identity(identity));
    let mut response = next.run(request).await;
    if let Some(token) = new_session {
        let cookie = format!(
            "{SESSION_COOKIE}={token}; Path=/; HttpOnly; SameSite=Lax; Max-Age=86400{}",
            if secure { "; Secure" } else { "" }
        );
        if let Ok(value) = HeaderValue::from_str(&cookie) {
            response.headers_mut().append(header::SET_COOKIE, value);
        }
        if let Ok(value) = HeaderValue::from_str(&token) {
            response.headers_mut().insert(SESSION_HEADER, value);
        }
    }
    response
}

impl<S: Send + Sync> FromRequestParts<S> for Shopper {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        match parts.extensions.get::<Identity>() {
            Some(Identity(Ok(shopper))) => Ok(shopper.clone()),
            Some(Identity(Err(error))) => Err(ApiError::new(
                StatusCode::UNAUTHORIZED,
                "unauthenticated",
                error.to_string(),
            )),
            None => Err(ApiError::new(
                StatusCode::UNAUTHORIZED,
                "unauthenticated",
                "no shopper identity on this route",
            )),
        }
    }
}

/// Records each request's latency and, for refusals, their code.
async fn observe(State(app): State<SharedApp>, request: Request, next: Next) -> Response {
    let started = Instant::now();
    let method = RouteLabels::method(request.method());
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or("unmatched", |p| RouteLabels::route(p.as_str()));
    let response = next.run(request).await;
    let status = response.status().as_u16();
    if let Some(RejectionCode(code)) = response.extensions().get::<RejectionCode>() {
        app.metrics.rejection(code);
    }
    if route != "/api/events" {
        app.metrics
            .requests
            .get_or_create(&RouteLabels {
                method,
                route,
                status,
            })
            .observe(started.elapsed().as_secs_f64());
    }
    response
}

impl<S: Send + Sync> axum::extract::OptionalFromRequestParts<S> for Shopper {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Option<Self>, Self::Rejection> {
        Ok(match parts.extensions.get::<Identity>() {
            Some(Identity(Ok(shopper))) => Some(shopper.clone()),
            _ => None,
        })
    }
}
