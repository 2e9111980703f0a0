//! A company's deal pages: its list, the request form, and each deal's status and report.

use maud::{html, Markup};
use timedeal_api::{
    calendar::{Hour, Load},
    money,
    stats::Sample,
    Company, Phase, TimeDeal,
};

use super::{field, layout, select, textarea, Nav};
use crate::{
    capacity::{Limits, Suggestion},
    form::{self, FieldErrors, RequestForm},
};

fn suggestion_text(suggestion: Option<Suggestion>) -> String {
    match suggestion {
        Some(s) => format!(
            "{} to {} storefront replicas ({} from the warm-up), admitting {} shoppers a second, {} shopping at once",
            s.min_replicas, s.max_replicas, s.peak_replicas, s.admission_rate, s.max_active
        ),
        None => "enter the expected peak to see the suggested capacity".into(),
    }
}

/// The request form, filled with what was typed and its errors.
/// The chosen day's hours, as the form shows them: free, tight or full.
pub struct DayView {
    pub date: chrono::NaiveDate,
    pub hours: Vec<Hour>,
    pub capacity: i32,
}

/// The capacity calendar for a day (UTC hours).
pub fn calendar(view: &DayView) -> Markup {
    html! {
        section.calendar id="calendar" data-date=(view.date) aria-label="Booked capacity by hour" {
            p.hint { "Booked capacity on " strong { (view.date.format("%A, %B %-d")) } " (UTC hours): "
                span.key.free { "free" } " " span.key.tight { "tight" } " " span.key.full { "full" } }
            ol {
                @for hour in &view.hours {
                    @let word = match hour.load { Load::Free => "free", Load::Tight => "tight", Load::Full => "full" };
                    li class=(word) data-hour=(hour.start.format("%H")) title=(format!("{} UTC: {} of {} replicas booked, {word}", hour.start.format("%H:00"), hour.booked, view.capacity)) {
                        (hour.start.format("%H"))
                    }
                }
            }
        }
    }
}

pub fn request_form(
    form: &RequestForm,
    errors: &FieldErrors,
    nav: &Nav,
    company: &Company,
    limits: Limits,
    day: Option<&DayView>,
) -> Markup {
    let csrf = nav.csrf;
    let quotas = &company.spec.quotas;
    let fulfilments: Vec<(String, String)> = [
        ("shipping", "Shipped (asks for an address)"),
        ("pickup", "Picked up (asks for a name and phone)"),
        ("digital", "Digital (asks nothing)"),
        ("coupon", "Coupon (a code per order; price may be 0)"),
    ]
    .iter()
    .map(|(value, text)| (value.to_string(), text.to_string()))
    .collect();
    let currency = if form.currency.is_empty() {
        "USD"
    } else {
        &form.currency
    };
    let offset = if form.utc_offset.is_empty() {
        "+00:00"
    } else {
        &form.utc_offset
    };
    let duration = if form.duration_minutes.is_empty() {
        "60"
    } else {
        &form.duration_minutes
    };
    let currencies: Vec<(String, String)> = form::CURRENCIES
        .iter()
        .map(|c| (c.to_string(), c.to_string()))
        .collect();
    let offsets: Vec<(String, String)> = form::utc_offsets()
        .into_iter()
        .map(|o| (o.clone(), format!("UTC{o}")))
        .collect();
    let durations: Vec<(String, String)> = form::DURATIONS
        .iter()
        .map(|m| {
            let text = if m % 60 == 0 {
                format!("{} hour{}", m / 60, if *m == 60 { "" } else { "s" })
            } else {
                format!("{m} minutes")
            };
            (m.to_string(), text)
        })
        .collect();
    let general = errors.get("").cloned().unwrap_or_default();
    let e = errors;
    layout(
        "Rent a time deal",
        Some(nav),
        html! {
            h1 { "Rent a time deal" }
            p.lead { "Tell us what you sell and when. We run the storefront, the queue and the spike; a platform admin reviews every request before it is scheduled." }
            p.hint { "For " strong { (company.spec.display_name) } ": at most " (quotas.max_stock) " units a deal, " (quotas.max_deals) " deals at once." }
            @if !errors.is_empty() {
                div.alert role="alert" id="form-errors" {
                    "Some fields need attention; they are marked below."
                    @for problem in &general { p { (problem) } }
                }
            }
            form method="post" action="/deals" novalidate {
                input type="hidden" name="csrf" value=(csrf);
                fieldset {
                    legend { "Product" }
                    (field("product_name", "Product name", &form.product_name, "text", None, e))
                    (textarea("description", "Description", &form.description, e))
                    (field("image_url", "Image URL (optional)", &form.image_url, "url", Some("https://…"), e))
                    div.row {
                        (field("list_price", "List price", &form.list_price, "text", Some("e.g. 299.00"), e))
                        (field("deal_price", "Deal price", &form.deal_price, "text", Some("at most the list price"), e))
                        (select("currency", "Currency", currency, &currencies, e))
                    }
                    div.row {
                        (field("stock", "Stock", &form.stock, "number", Some("units on sale"), e))
                        (field("per_user_limit", "Per shopper", &form.per_user_limit, "number", Some("most units one shopper may buy"), e))
                    }
                    div.row {
                        (field("category", "Category", &form.category, "text", Some("e.g. audio, home-kitchen"), e))
                        (select("fulfilment", "Delivery", if form.fulfilment.is_empty() { "digital" } else { &form.fulfilment }, &fulfilments, e))
                    }
                }
                fieldset {
                    legend { "Time slot" }
                    div.row {
                        (field("date", "Date", &form.date, "date", None, e))
                        (field("time", "Start time", &form.time, "time", None, e))
                        (select("utc_offset", "Time zone", offset, &offsets, e))
                    }
                    (select("duration_minutes", "Duration", duration, &durations, e))
                    @if let Some(day) = day { (calendar(day)) }
                }
                fieldset {
                    legend { "Traffic and address" }
                    (field("peak_shoppers", "Expected peak shoppers", &form.peak_shoppers, "number", Some("how many people you expect at the start"), e))
                    p.suggestion {
                        "Suggested capacity: "
                        output id="suggestion" for="peak_shoppers" aria-live="polite" { (suggestion_text(form.suggestion(limits))) }
                    }
                    (field("host", "Storefront host name", &form.host, "text", Some("e.g. deal.your-shop.com; point it at the address we send you"), e))
                }
                button type="submit" { "Request this deal" }
            }
            script src="/static/portal.js" {}
        },
    )
}

fn when(time: Option<&k8s_openapi::apimachinery::pkg::apis::meta::v1::Time>) -> String {
    time.map(|t| t.0.strftime("%Y-%m-%d %H:%M UTC").to_string())
        .unwrap_or_default()
}

/// A deal's status: phase, timeline, the storefront once it runs, figures, and the report.
/// `created`: just requested, so the page says it was received.
pub fn status(deal: &TimeDeal, nav: &Nav, created: bool, history: &[Sample]) -> Markup {
    let status = deal.status.clone().unwrap_or_default();
    let phase = status.phase.unwrap_or(Phase::PendingApproval);
    let spec = &deal.spec;
    let currency = &spec.product.currency;
    let utc = |t: chrono::DateTime<chrono::Utc>| t.format("%Y-%m-%d %H:%M UTC").to_string();
    let live_or_after = matches!(phase, Phase::Live | Phase::SoldOut | Phase::Ended);
    let ended = phase == Phase::Ended;
    let steps = [
        (
            "Requested",
            true,
            when(deal.metadata.creation_timestamp.as_ref()),
        ),
        ("Approved", spec.approved, String::new()),
        (
            "Scheduled",
            matches!(phase, Phase::Scheduled | Phase::WarmingUp) || live_or_after,
            utc(spec.schedule.start),
        ),
        ("Live", live_or_after, when(status.started_at.as_ref())),
        ("Ended", ended, when(status.ended_at.as_ref()).to_string()),
    ];
    let provisioned = !matches!(
        phase,
        Phase::PendingApproval | Phase::Provisioning | Phase::Failed
    );
    let name = deal.metadata.name.clone().unwrap_or_default();
    layout(
        &format!("{} · status", spec.product.name),
        Some(nav),
        html! {
            @if created {
                div.notice role="status" id="received" { "Request received. A platform admin reviews it; this page follows it from here." }
            }
            h1 { (spec.product.name) }
            p.lead { (spec.company.name) " · " (utc(spec.schedule.start)) " to " (utc(spec.schedule.end)) }
            p.phase { "Status: " strong id="phase" { (phase_words(phase)) } }
            @if phase == Phase::PendingApproval && !spec.approved {
                p.hint { "A platform admin reviews every request. This page follows it from here: the storefront's address once it is set up, live figures during the deal, and the sales report afterwards." }
                form method="post" action=(format!("/deals/{name}/withdraw")) {
                    input type="hidden" name="csrf" value=(nav.csrf);
                    button.secondary type="submit" id="withdraw" { "Withdraw this request" }
                }
            }
            ol.timeline {
                @for (step, done, at) in &steps {
                    li.done[*done] { span.step { (step) } @if *done && !at.is_empty() { " " time { (at) } } }
                }
            }
            @if provisioned {
                @if let Some(url) = &status.url {
                    p { "Storefront: " a id="storefront" href=(url) { (url) } }
                }
                p {
                    a.download id="orders-csv" href=(format!("/deals/{name}/orders.csv")) download { "Download the orders (CSV)" }
                    " · "
                    a id="orders-json" href=(format!("/deals/{name}/orders.json")) { "as JSON" }
                }
                @if spec.product.fulfilment == timedeal_api::Fulfilment::Coupon {
                    form.redeem id="redeem" method="post" action=(format!("/deals/{name}/coupons/redeem")) {
                        input type="hidden" name="csrf" value=(nav.csrf);
                        label for="coupon-code" { "Redeem a coupon" }
                        input id="coupon-code" name="code" required autocomplete="off" placeholder="7K2M-QX9P-0RTD-V4HN-C8ZE";
                        button type="submit" { "Redeem" }
                        p.hint { "Coupons are valid until " (utc(spec.product.coupons_valid_until(spec.schedule.end))) "; each redeems once." }
                    }
                }
            }
            @if live_or_after || phase == Phase::Suspended {
                @if let Some(stock) = &status.stock {
                    section.figures {
                        h2 { @if ended { "Sales report" } @else { "Right now" } }
                        dl {
                            dt { "Sold" } dd id="sold" { (stock.sold) " of " (spec.product.stock) }
                            @if !ended {
                                dt { "Waiting in the queue" } dd id="waiting" { (status.queue.as_ref().map_or(0, |q| q.waiting)) }
                            }
                            @if let Some(orders) = &status.orders {
                                dt { "Orders" } dd id="orders" { (orders.confirmed) " confirmed, " (orders.cancelled) " cancelled" }
                            }
                            @if let Some(revenue) = status.revenue {
                                dt { "Revenue" } dd id="revenue" { (money::format(revenue, currency)) }
                            }
                            @if let Some(at) = &status.sold_out_at {
                                dt { "Sold out at" } dd id="sold-out-at" { (when(Some(at))) }
                            }
                            @if let Some(queue) = &status.queue {
                                dt { "Peak queue" } dd id="peak-queue" { (queue.peak_waiting) }
                            }
                        }
                        @if let Some(at) = &status.figures_updated_at {
                            p.hint { "Figures last changed " (when(Some(at))) "." }
                        }
                        (super::chart::sale(history))
                    }
                }
            }
        },
    )
}

fn phase_words(phase: Phase) -> &'static str {
    match phase {
        Phase::PendingApproval => "waiting for approval",
        Phase::Provisioning => "approved; the storefront is being set up",
        Phase::Scheduled => "scheduled",
        Phase::WarmingUp => "warming up for the start",
        Phase::Live => "live",
        Phase::SoldOut => "sold out",
        Phase::Ended => "ended",
        Phase::Suspended => "paused by the platform",
        Phase::Failed => "on hold: the platform team is looking into it",
    }
}

/// Where a deal is, in a word or two, for the list.
pub fn phase_of(deal: &TimeDeal) -> &'static str {
    let phase = deal.status.as_ref().and_then(|s| s.phase);
    match phase {
        None | Some(Phase::PendingApproval) if !deal.spec.approved => "pending",
        None | Some(Phase::PendingApproval) | Some(Phase::Provisioning) => "approved",
        Some(Phase::Scheduled) | Some(Phase::WarmingUp) => "scheduled",
        Some(Phase::Live) | Some(Phase::SoldOut) | Some(Phase::Suspended) => "live",
        Some(Phase::Ended) => "ended",
        Some(Phase::Failed) => "on hold",
    }
}

/// All of a company's deals, newest start first, with live figures.
pub fn list(deals: &[TimeDeal], nav: &Nav, company: &Company, note: Option<&str>) -> Markup {
    let mut sorted: Vec<&TimeDeal> = deals.iter().collect();
    sorted.sort_by_key(|d| std::cmp::Reverse(d.spec.schedule.start));
    let utc = |t: chrono::DateTime<chrono::Utc>| t.format("%b %-d, %H:%M UTC").to_string();
    layout(
        "Your deals",
        Some(nav),
        html! {
            h1 { "Your deals" }
            @if let Some(note) = note { div.notice role="status" { (note) } }
            @if !company.spec.approved {
                p.hint id="awaiting-approval" { "Your company is waiting for a platform admin's approval. You can request deals once it is approved." }
            }
            @if sorted.is_empty() {
                p id="no-deals" { "No deals yet. " a href="/deals/new" { "Request your first one." } }
            } @else {
                div.scroll { table.deals id="deals" {
                    thead { tr { th { "Product" } th { "State" } th { "Starts" } th { "Sold" } th { "Waiting" } th { "Revenue" } } }
                    tbody {
                        @for deal in sorted {
                            @let status = deal.status.clone().unwrap_or_default();
                            @let name = deal.metadata.name.clone().unwrap_or_default();
                            tr data-deal=(name) {
                                td { a href=(format!("/deals/{name}")) { (deal.spec.product.name) } }
                                td.state { (phase_of(deal)) }
                                td { (utc(deal.spec.schedule.start)) }
                                td { (status.stock.as_ref().map_or(0, |s| s.sold)) " / " (deal.spec.product.stock) }
                                td { (status.queue.as_ref().map_or(0, |q| q.waiting)) }
                                td { (status.revenue.map(|r| money::format(r, &deal.spec.product.currency)).unwrap_or_default()) }
                            }
                        }
                    }
                } }
            }
        },
    )
}
