//! The portal's pages, rendered on the server (maud). Every control has a label; errors sit next
//! to their field and are tied to it with `aria-describedby`.

use maud::{html, Markup, DOCTYPE};
use timedeal_api::{money, Phase, TimeDeal};

use super::{
    capacity::{Limits, Suggestion},
    form::{self, FieldErrors, RequestForm},
};

fn layout(title: &str, body: Markup) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { (title) " · Timedeal" }
                link rel="stylesheet" href="/static/portal.css";
            }
            body {
                header { a.brand href="/" { "Timedeal" } span { "flash-sale infrastructure, by the deal" } }
                main { (body) }
            }
        }
    }
}

/// One form control in its frame: label, hint, the control, and its errors, tied to the control
/// for screen readers. `control` gets the id of the error text when there is one.
fn labelled(
    name: &str,
    label: &str,
    hint: Option<&str>,
    errors: &FieldErrors,
    control: impl FnOnce(Option<&str>) -> Markup,
) -> Markup {
    let problems = errors.get(name).map(|p| p.join("; "));
    let error_id = format!("{name}-error");
    let described_by = problems.as_ref().map(|_| error_id.as_str());
    html! {
        div.field.invalid[problems.is_some()] {
            label for=(name) { (label) }
            @if let Some(hint) = hint { small.hint { (hint) } }
            (control(described_by))
            @if let Some(problems) = &problems {
                p.error id=(error_id) { (problems) }
            }
        }
    }
}

/// One labelled input with its errors.
fn field(
    name: &str,
    label: &str,
    value: &str,
    kind: &str,
    hint: Option<&str>,
    errors: &FieldErrors,
) -> Markup {
    labelled(name, label, hint, errors, |described_by| {
        html! {
            input type=(kind) id=(name) name=(name) value=(value)
                aria-invalid=[described_by.map(|_| "true")]
                aria-describedby=[described_by];
        }
    })
}

fn select(
    name: &str,
    label: &str,
    value: &str,
    options: &[(String, String)],
    errors: &FieldErrors,
) -> Markup {
    labelled(name, label, None, errors, |described_by| {
        html! {
            select id=(name) name=(name)
                aria-invalid=[described_by.map(|_| "true")]
                aria-describedby=[described_by] {
                @for (option, text) in options {
                    option value=(option) selected[option == value] { (text) }
                }
            }
        }
    })
}

fn textarea(name: &str, label: &str, value: &str, errors: &FieldErrors) -> Markup {
    labelled(name, label, None, errors, |described_by| {
        html! {
            textarea id=(name) name=(name) rows="3"
                aria-invalid=[described_by.map(|_| "true")]
                aria-describedby=[described_by] { (value) }
        }
    })
}

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
pub fn request_form(
    form: &RequestForm,
    errors: &FieldErrors,
    csrf: &str,
    limits: Limits,
) -> Markup {
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
        html! {
            h1 { "Rent a time deal" }
            p.lead { "Tell us what you sell and when. We run the storefront, the queue and the spike; a platform admin reviews every request before it is scheduled." }
            @if !errors.is_empty() {
                div.alert role="alert" id="form-errors" {
                    "Some fields need attention; they are marked below."
                    @for problem in &general { p { (problem) } }
                }
            }
            form method="post" action="/requests" novalidate {
                input type="hidden" name="csrf" value=(csrf);
                fieldset {
                    legend { "Company" }
                    (field("company_name", "Company name", &form.company_name, "text", None, e))
                    (field("contact_email", "Contact email", &form.contact_email, "email", Some("We write here when the request is approved."), e))
                }
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
                }
                fieldset {
                    legend { "Time slot" }
                    div.row {
                        (field("date", "Date", &form.date, "date", None, e))
                        (field("time", "Start time", &form.time, "time", None, e))
                        (select("utc_offset", "Time zone", offset, &offsets, e))
                    }
                    (select("duration_minutes", "Duration", duration, &durations, e))
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

/// After a request was stored.
pub fn confirmation(deal: &TimeDeal, link: &str) -> Markup {
    layout(
        "Request received",
        html! {
            h1 { "Request received" }
            p.lead { "Thank you. A platform admin reviews " strong { (deal.spec.product.name) } " and approves it; the page below follows it from here." }
            p { "Keep this link: it is the only way to your request's status and, afterwards, its sales report." }
            p.link { a id="status-link" href=(link) { (link) } }
        },
    )
}

fn when(time: Option<&k8s_openapi::apimachinery::pkg::apis::meta::v1::Time>) -> String {
    time.map(|t| t.0.strftime("%Y-%m-%d %H:%M UTC").to_string())
        .unwrap_or_default()
}

/// A request's status: phase, timeline, the storefront once it runs, figures, and the report.
pub fn status(deal: &TimeDeal) -> Markup {
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
    layout(
        &format!("{} · status", spec.product.name),
        html! {
            h1 { (spec.product.name) }
            p.lead { (spec.company.name) " · " (utc(spec.schedule.start)) " to " (utc(spec.schedule.end)) }
            p.phase { "Status: " strong id="phase" { (phase_words(phase)) } }
            @if phase == Phase::PendingApproval {
                p.hint { "A platform admin reviews every request. This page follows it from here: the storefront's address once it is set up, live figures during the deal, and the sales report afterwards." }
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
                            p.hint { "Figures as of " (when(Some(at))) "." }
                        }
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

/// The page for a link that opens nothing.
pub fn not_found() -> Markup {
    layout(
        "Not found",
        html! { h1 { "Not found" } p { "There is nothing at this address." } },
    )
}
