//! The OpenAPI document of the JSON API, served at `/openapi.json`.

use axum::Json;
use utoipa::OpenApi;

use crate::http::{api, events, ops};

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Timedeal storefront API",
        description = "The JSON API of one time deal's storefront: the deal, the fair queue, \
            and the shopper's orders.\n\n\
            Shoppers are identified by a signed session: browsers get it as the `td_session` \
            cookie, apps from the `X-Timedeal-Session` response header and send it back in the \
            same header. Deals that use company sign-in take `Authorization: Bearer <JWT>` \
            instead.\n\n\
            Every error is JSON: `{\"error\": {\"code\": \"...\", \"message\": \"...\"}}`, \
            with a stable code.",
    ),
    paths(
        api::deal,
        api::queue_status,
        api::join,
        api::leave,
        events::stream,
        api::place_order,
        api::my_orders,
        api::my_order,
        api::cancel_order,
        ops::readyz,
        ops::stats,
    ),
    tags(
        (name = "deal", description = "The product, prices, schedule and stock"),
        (name = "queue", description = "The fair queue in front of the checkout"),
        (name = "orders", description = "Placing, listing and cancelling orders"),
        (name = "operations", description = "For the platform, not for shoppers"),
    )
)]
pub struct ApiDoc;

pub async fn document() -> Json<utoipa::openapi::OpenApi> {
    Json(ApiDoc::openapi())
}
