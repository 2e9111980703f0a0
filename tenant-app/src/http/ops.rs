//! Operational endpoints: metrics, health, readiness, and the figures the operator copies into
//! the TimeDeal's status.

use axum::{
    extract::State,
    http::{header, StatusCode},
    response::{IntoResponse, Response},
    Json,
};
use serde::Serialize;
use timedeal_api::{OrderFigures, QueueFigures, StockFigures, StorefrontStats};

use crate::{app::SharedApp, db, http::error::ApiError};

pub async fn metrics(State(app): State<SharedApp>) -> Response {
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        app.metrics.encode(),
    )
        .into_response()
}

/// The process is up.
pub async fn healthz() -> &'static str {
    "ok\n"
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct Readiness {
    pub redis: String,
    pub postgres: String,
}

/// Ready when Redis and PostgreSQL both answer (migrations run before the app listens).
#[utoipa::path(get, path = "/readyz", tag = "operations",
    responses((status = 200, body = Readiness), (status = 503, body = Readiness)))]
pub async fn readyz(State(app): State<SharedApp>) -> Response {
    let redis = match redis::cmd("PING")
        .query_async::<String>(&mut app.redis.clone())
        .await
    {
        Ok(_) => "ok".to_owned(),
        Err(e) => format!("unreachable: {e}"),
    };
    let postgres = match sqlx::query("SELECT 1").execute(&app.db).await {
        Ok(_) => "ok".to_owned(),
        Err(e) => format!("unreachable: {e}"),
    };
    let status = if redis == "ok" && postgres == "ok" {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, Json(Readiness { redis, postgres })).into_response()
}

#[utoipa::path(get, path = "/internal/stats", tag = "operations",
    responses((status = 200, description = "the figures the operator copies into the TimeDeal's status (`timedeal_api::StorefrontStats`)", body = Object), (status = 503)))]
pub async fn stats(State(app): State<SharedApp>) -> Result<Json<StorefrontStats>, ApiError> {
    let now = app.clock.now();
    let figures = crate::ticker::figures(&app).await?;
    let sales = db::sales(&app.db).await?;
    let peak: Option<i64> = redis::cmd("ZSCORE")
        .arg(format!("{}peak", app.prefix))
        .arg("waiting")
        .query_async(&mut app.redis.clone())
        .await
        .map_err(crate::error::Error::from)?;
    let deal = app.deal();
    let state = serde_json::to_value(deal.state_at(now, figures.sold_out()))
        .ok()
        .and_then(|v| v.as_str().map(str::to_owned))
        .unwrap_or_default();
    Ok(Json(StorefrontStats {
        deal: deal.name.clone(),
        state,
        stock: StockFigures {
            remaining: figures.available.max(0),
            sold: figures.sold,
            reserved: figures.reserved,
        },
        queue: QueueFigures {
            waiting: figures.in_line() as i64,
            active: figures.active as i64,
            peak_waiting: peak.unwrap_or(0).max(figures.in_line() as i64),
        },
        orders: OrderFigures {
            confirmed: sales.confirmed,
            cancelled: sales.cancelled,
        },
        revenue: sales.revenue,
        currency: deal.spec.product.currency.clone(),
        at: now,
    }))
}
