//! The OpenAPI document of the JSON API, served at `/openapi.json`.

use axum::{extract::State, Json};
use timedeal_api::Fulfilment;
use utoipa::OpenApi;

use crate::{
    app::SharedApp,
    http::{api, events, head, ops, queue, reminders},
};

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
        queue::status,
        head::head,
        queue::ping,
        queue::join,
        queue::leave,
        queue::join_challenge,
        queue::fairness,
        queue::fairness_log,
        events::stream,
        api::place_order,
        api::my_orders,
        api::my_order,
        api::cancel_order,
        api::last_delivery,
        reminders::sign_up,
        ops::readyz,
        ops::stats,
    ),
    tags(
        (name = "deal", description = "The product, prices, schedule and stock"),
        (name = "queue", description = "The fair queue in front of the checkout"),
        (name = "orders", description = "Placing, listing and cancelling orders"),
        (name = "reminders", description = "Mails before the start, where the platform sends mail"),
        (name = "operations", description = "For the platform, not for shoppers"),
    )
)]
pub struct ApiDoc;

/// The document, with the bounds of this deal: the most one order may ask for is the deal's
/// per-shopper limit, unless the company's sign-in sets each shopper's own.
pub async fn document(State(app): State<SharedApp>) -> Json<utoipa::openapi::OpenApi> {
    let mut doc = ApiDoc::openapi();
    let deal = app.deal();
    let per_shopper = deal
        .spec
        .shopper_auth
        .as_ref()
        .and_then(|auth| auth.jwt.as_ref())
        .and_then(|jwt| jwt.limit_claim.as_ref());
    if per_shopper.is_none() {
        set_maximum(&mut doc, "PlaceOrder", "quantity", deal.per_user_limit());
    }
    // What the deal's fulfilment asks for at checkout, and nothing else.
    match deal.spec.product.fulfilment {
        Fulfilment::Shipping => {
            require(&mut doc, "PlaceOrder", "delivery");
            require(&mut doc, "Delivery", "address");
        }
        Fulfilment::Pickup => remove_property(&mut doc, "Delivery", "address"),
        Fulfilment::Digital | Fulfilment::Coupon => {
            remove_property(&mut doc, "PlaceOrder", "delivery")
        }
    }
    // A storefront without an SMTP server takes no addresses.
    if app.mailer.is_none() {
        doc.paths.paths.remove("/api/reminders");
    }
    // What any call to the shopper API may answer, whatever the operation.
    for (status, description) in [
        (
            "429",
            "rate_limited: too many requests from this client; retry after `Retry-After` seconds",
        ),
        (
            "503",
            "unavailable: a store is away for a moment; retry after `Retry-After` seconds",
        ),
    ] {
        add_response(&mut doc, "/api/", status, description);
    }
    Json(doc)
}

fn add_response(doc: &mut utoipa::openapi::OpenApi, prefix: &str, status: &str, description: &str) {
    use utoipa::openapi::{path::HttpMethod, ContentBuilder, Ref, RefOr, ResponseBuilder};
    for (path, item) in doc.paths.paths.iter_mut() {
        if !path.starts_with(prefix) {
            continue;
        }
        for method in [HttpMethod::Get, HttpMethod::Post, HttpMethod::Delete] {
            let operation = match method {
                HttpMethod::Get => item.get.as_mut(),
                HttpMethod::Post => item.post.as_mut(),
                _ => item.delete.as_mut(),
            };
            let Some(operation) = operation else { continue };
            operation
                .responses
                .responses
                .entry(status.to_owned())
                .or_insert_with(|| {
                    RefOr::T(
                        ResponseBuilder::new()
                            .description(description)
                            .content(
                                "application/json",
                                ContentBuilder::new()
                                    .schema(Some(Ref::from_schema_name("ErrorBody")))
                                    .build(),
                            )
                            .build(),
                    )
                });
        }
    }
}

fn object<'a>(
    doc: &'a mut utoipa::openapi::OpenApi,
    schema: &str,
) -> Option<&'a mut utoipa::openapi::schema::Object> {
    use utoipa::openapi::{schema::Schema, RefOr};
    match doc
        .components
        .as_mut()
        .and_then(|components| components.schemas.get_mut(schema))
    {
        Some(RefOr::T(Schema::Object(object))) => Some(object),
        _ => None,
    }
}

fn require(doc: &mut utoipa::openapi::OpenApi, schema: &str, field: &str) {
    if let Some(object) = object(doc, schema) {
        if !object.required.iter().any(|r| r == field) {
            object.required.push(field.to_owned());
        }
    }
}

fn remove_property(doc: &mut utoipa::openapi::OpenApi, schema: &str, field: &str) {
    if let Some(object) = object(doc, schema) {
        object.properties.remove(field);
        object.required.retain(|r| r != field);
    }
}

fn set_maximum(doc: &mut utoipa::openapi::OpenApi, schema: &str, field: &str, maximum: u32) {
    use utoipa::openapi::{schema::Schema, RefOr};
    let Some(RefOr::T(Schema::Object(object))) = doc
        .components
        .as_mut()
        .and_then(|components| components.schemas.get_mut(schema))
    else {
        return;
    };
    if let Some(RefOr::T(Schema::Object(property))) = object.properties.get_mut(field) {
        property.maximum = Some(utoipa::Number::UInt(maximum as usize));
    }
}
