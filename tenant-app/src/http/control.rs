//! `/internal/deal`: what this replica serves, and the operator's push of a new version of the
//! deal, so a suspension or a schedule edit reaches every replica within a second instead of when
//! the kubelet next copies the ConfigMap. Guarded by the control key the operator gave the
//! replica; off without one.

use axum::{
    extract::State,
    http::{header, HeaderMap, StatusCode},
    Json,
};
use timedeal_api::DealServed;

use crate::{
    app::SharedApp,
    deal::{Deal, Refused},
    http::error::ApiError,
};

fn served(deal: &Deal) -> DealServed {
    DealServed {
        deal: deal.name.clone(),
        revision: deal.revision,
        suspended: deal.spec.suspend || !deal.spec.approved,
    }
}

/// Compares in time that does not depend on where the strings differ.
fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

fn authorise(app: &SharedApp, headers: &HeaderMap) -> Result<(), ApiError> {
    let Some(key) = &app.control_key else {
        return Err(ApiError::not_found(
            "pushes are off on this replica: it was started without a control key",
        ));
    };
    let presented = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or("");
    if same(presented.as_bytes(), key.as_bytes()) {
        Ok(())
    } else {
        Err(ApiError::new(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "present the control key as `Authorization: Bearer <key>`",
        ))
    }
}

pub async fn current(
    State(app): State<SharedApp>,
    headers: HeaderMap,
) -> Result<Json<DealServed>, ApiError> {
    authorise(&app, &headers)?;
    Ok(Json(served(&app.deal_source.current())))
}

/// Takes the body (the deal document, YAML or JSON) as the deal from now on.
pub async fn push(
    State(app): State<SharedApp>,
    headers: HeaderMap,
    body: String,
) -> Result<Json<DealServed>, ApiError> {
    authorise(&app, &headers)?;
    match app.deal_source.offer(&body) {
        Ok(deal) => Ok(Json(served(&deal))),
        Err(refused @ Refused::Invalid(_)) => Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_deal",
            refused.to_string(),
        )),
        Err(refused @ Refused::OtherDeal { .. }) => {
            Err(ApiError::conflict("other_deal", refused.to_string()))
        }
        Err(refused @ Refused::Older { .. }) => {
            Err(ApiError::conflict("older_revision", refused.to_string()))
        }
    }
}
