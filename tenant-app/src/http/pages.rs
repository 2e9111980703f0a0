//! The storefront page, rendered on the server, with a small plain script (`static/app.js`)
//! that keeps it live through server-sent events.

use axum::{
    extract::State,
    http::header,
    response::{Html, IntoResponse, Response},
};
use maud::{html, Markup, DOCTYPE};

use crate::{
    app::SharedApp,
    deal::DealState,
    http::api::{deal_view, DealView},
    identity::Shopper,
};

pub async fn script() -> Response {
    (
        [(header::CONTENT_TYPE, "text/javascript; charset=utf-8")],
        include_str!("../../static/app.js"),
    )
        .into_response()
}

/// The join puzzle's solver, run by the page in a Web Worker.
pub async fn solver() -> Response {
    (
        [(header::CONTENT_TYPE, "text/javascript; charset=utf-8")],
        include_str!("../../static/pow.js"),
    )
        .into_response()
}

pub async fn stylesheet() -> Response {
    (
        [(header::CONTENT_TYPE, "text/css; charset=utf-8")],
        include_str!("../../static/app.css"),
    )
        .into_response()
}

pub use timedeal_api::money::format as money;

/// The deal as a calendar entry with reminders 12 hours and 1 hour before the start: "remind
/// me" with nothing stored about the shopper.
pub async fn reminder(State(app): State<SharedApp>, headers: axum::http::HeaderMap) -> Response {
    let deal = app.deal();
    let product = &deal.spec.product;
    // The address the shopper reached this storefront by, so the entry leads back here.
    let host = headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .unwrap_or(&deal.spec.ingress.host);
    let scheme = headers
        .get("x-forwarded-proto")
        .and_then(|h| h.to_str().ok())
        .unwrap_or("http");
    let url = format!("{scheme}://{host}/");
    let ics = timedeal_api::ics::calendar(&timedeal_api::ics::Reminder {
        uid: &format!("{}@timedeal", deal.name),
        summary: &format!("{} by {}", product.name, deal.spec.company.name),
        description: &format!(
            "{} instead of {}. Join the queue at {url}",
            money(product.deal_price, &product.currency),
            money(product.list_price, &product.currency)
        ),
        url: &url,
        start: deal.timeline.start,
        end: deal.timeline.end,
        now: deal.timeline.start,
    });
    (
        [
            (header::CONTENT_TYPE, "text/calendar; charset=utf-8"),
            (
                header::CONTENT_DISPOSITION,
                "attachment; filename=\"deal.ics\"",
            ),
        ],
        ics,
    )
        .into_response()
}

fn banner(state: DealState) -> &'static str {
    match state {
        DealState::Upcoming => "Starts soon",
        DealState::Live => "Live now",
        DealState::SoldOut => "Sold out",
        DealState::Ended => "This deal has ended",
        DealState::Suspended => "Paused",
    }
}

pub async fn storefront(State(app): State<SharedApp>, shopper: Option<Shopper>) -> Html<String> {
    let view = shopper
        .as_ref()
        .map(|s| deal_view(&app, s, app.clock.now()))
        .unwrap_or_else(|| {
            deal_view(
                &app,
                &Shopper {
                    id: String::new(),
                    limit: app.deal().per_user_limit(),
                    new_session: None,
                },
                app.clock.now(),
            )
        });
    Html(page(&view, shopper.is_some()).into_string())
}

/// One labelled input with the place its error is shown; `path` is the field's path in the
/// order request (`delivery.address.city`), as refusals name it.
fn input(path: &str, label: &str, autocomplete: &str, required: bool) -> Markup {
    let id = path.replace('.', "-");
    html! {
        div.field {
            label for=(id) { (label) @if !required { " (optional)" } }
            input #(id) name=(path) autocomplete=(autocomplete) required[required]
                aria-describedby=(format!("{id}-error"));
            span.field-error #(format!("{id}-error")) data-field=(path) {}
        }
    }
}

/// What the checkout asks before the payment: who receives the order and, for shipping, where.
fn delivery_fields(shipping: bool) -> Markup {
    html! {
        fieldset #delivery {
            legend { @if shipping { "Ship to" } @else { "Collected by" } }
            span.field-error data-field="delivery" {}
            (input("delivery.name", "Full name", "name", true))
            (input("delivery.phone", "Phone", "tel", true))
            @if shipping {
                (input("delivery.address.line1", "Street and number", "address-line1", true))
                (input("delivery.address.line2", "Flat, floor, building", "address-line2", false))
                div.row {
                    (input("delivery.address.city", "City", "address-level2", true))
                    (input("delivery.address.postalCode", "Postal code", "postal-code", true))
                    (input("delivery.address.country", "Country (2 letters)", "country", true))
                }
            }
        }
    }
}

/// The `<head>` every storefront page shares.
pub fn head(title: &str) -> Markup {
    html! {
        head {
            meta charset="utf-8";
            meta name="viewport" content="width=device-width, initial-scale=1";
            title { (title) }
            link rel="stylesheet" href="/static/app.css";
        }
    }
}

fn page(deal: &DealView, signed_in: bool) -> Markup {
    let product = &deal.product;
    let discount = if product.list_price > 0 {
        100 - (product.deal_price * 100 / product.list_price)
    } else {
        0
    };
    html! {
        (DOCTYPE)
        html lang="en" {
            (head(&format!("{} · {}", product.name, deal.company)))
            body data-starts-at=(deal.starts_at.to_rfc3339())
                 data-ends-at=(deal.ends_at.to_rfc3339())
                 data-pre-queue-at=(deal.pre_queue_opens_at.to_rfc3339())
                 data-server-time=(deal.server_time.to_rfc3339())
                 data-currency=(product.currency)
                 data-limit=(product.limit)
                 data-join-challenge=(deal.join_challenge.unwrap_or(0))
                 data-fulfilment=(product.fulfilment)
                 data-state=(serde_json::to_value(deal.state).ok().and_then(|v| v.as_str().map(str::to_owned)).unwrap_or_default()) {
                header {
                    span.company { (deal.company) }
                    span #state-banner .(format!("state-{}", serde_json::to_value(deal.state).ok().and_then(|v| v.as_str().map(str::to_owned)).unwrap_or_default())) { (banner(deal.state)) }
                }
                main {
                    section.product {
                        @if let Some(url) = &product.image_url {
                            img src=(url) alt=(product.name);
                        }
                        h1 { (product.name) }
                        p.description { (product.description) }
                        p.prices {
                            span.deal-price #deal-price { (money(product.deal_price, &product.currency)) }
                            " "
                            s.list-price { (money(product.list_price, &product.currency)) }
                            " "
                            span.discount { "−" (discount) "%" }
                        }
                        p.stock {
                            span #stock-remaining { (deal.stock.remaining) }
                            " of " (deal.stock.total) " left · at most " (product.limit) " per shopper"
                        }
                        p #countdown-line hidden[deal.state != DealState::Upcoming] {
                            "Starts in " strong #countdown { "…" }
                            " · " a #remind-me href="/reminder.ics" download { "Remind me (calendar)" }
                        }
                        @if deal.email_reminders && deal.state == DealState::Upcoming {
                            form #reminder-form novalidate {
                                label for="reminder-email" { "Or get an email 12 hours and 1 hour before the start" }
                                div.row {
                                    input #reminder-email name="email" type="email" autocomplete="email"
                                        placeholder="you@example.com" aria-describedby="reminder-email-error";
                                    button #reminder-button type="submit" { "Email me" }
                                }
                                span.field-error #reminder-email-error data-field="email" {}
                                p #reminder-result role="status" {}
                            }
                        }
                    }
                    section.queue #queue-panel {
                        @if !signed_in {
                            p.notice #sign-in { "Sign in with your " (deal.company) " account to take part in this deal." }
                        }
                        p #queue-message { "Connecting…" }
                        p #queue-detail {}
                        button #join-button type="button" hidden { "Join the queue" }
                    }
                    section.order #order-panel hidden {
                        h2 { "Your turn" }
                        p #admission-left {}
                        form #order-form novalidate {
                            label for="quantity" { "Quantity" }
                            select #quantity name="quantity" {
                                @for n in 1..=product.limit {
                                    option value=(n) { (n) }
                                }
                            }
                            @if product.fulfilment == "shipping" || product.fulfilment == "pickup" {
                                (delivery_fields(product.fulfilment == "shipping"))
                            }
                            @if product.fulfilment == "coupon" {
                                p.hint #coupon-hint {
                                    "Each order carries a coupon code to show " (deal.company)
                                    @if let Some(until) = product.coupons_valid_until {
                                        ", valid until " (until.format("%Y-%m-%d %H:%M UTC"))
                                    }
                                    "."
                                }
                            }
                            button #buy-button type="submit" {
                                @if product.deal_price == 0 { "Get it free" } @else { "Buy now" }
                            }
                        }
                    }
                    p #order-result role="status" {}
                    section.orders {
                        h2 { "My orders" }
                        ul #orders-list {}
                        p #orders-empty { "No orders yet." }
                    }
                }
                footer { "All times are the server's. Prices in " (product.currency) "." }
                script src="/static/app.js" {}
            }
        }
    }
}
