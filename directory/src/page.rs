//! The directory page, rendered on the server; `static/directory.js` only ticks the countdowns.
//! Nothing in it depends on the moment it was made (countdowns are computed in the browser), so
//! the same listing always gives the same bytes and the same ETag.

use maud::{html, Markup, DOCTYPE};
use timedeal_api::money::format as money;

use crate::{
    http::Listing,
    listing::{Entry, Params, State},
};

fn state_words(state: State) -> &'static str {
    match state {
        State::Upcoming => "Starts soon",
        State::Live => "Live now",
        State::SoldOut => "Sold out",
        State::Ended => "Ended",
    }
}

fn entry(entry: &Entry) -> Markup {
    let (namespace, name) = entry.id.split_once('/').unwrap_or(("default", &entry.id));
    html! {
        li.deal .(format!("state-{}", entry.state.as_str())) data-id=(entry.id) {
            @if let Some(url) = &entry.image_url {
                img src=(url) alt=(entry.product) loading="lazy";
            }
            div.body {
                p.meta {
                    span.state { (state_words(entry.state)) }
                    " · " span.category { (entry.category) }
                    " · " (entry.company)
                }
                h2 { a.storefront href=(entry.storefront_url) { (entry.product) } }
                p.prices {
                    strong { (money(entry.deal_price, &entry.currency)) }
                    " " s { (money(entry.list_price, &entry.currency)) }
                    " −" (entry.discount_percent) "%"
                    @if entry.fulfilment == "coupon" { " · coupon" }
                }
                p.when {
                    @match entry.state {
                        State::Upcoming => {
                            "Starts in " time.countdown datetime=(entry.starts_at.to_rfc3339()) { (entry.starts_at.format("%Y-%m-%d %H:%M UTC")) }
                        }
                        State::Live => {
                            "Ends in " time.countdown datetime=(entry.ends_at.to_rfc3339()) { (entry.ends_at.format("%Y-%m-%d %H:%M UTC")) }
                        }
                        _ => { "Ended " time datetime=(entry.ends_at.to_rfc3339()) { (entry.ends_at.format("%Y-%m-%d %H:%M UTC")) } }
                    }
                }
                @if entry.state == State::Upcoming {
                    p.remind {
                        a.reminder href=(format!("/deals/{namespace}/{name}/reminder.ics")) download {
                            "Remind me (calendar)"
                        }
                    }
                }
            }
        }
    }
}

/// The page, with the filters as sent and, for a refused filter, what to fix.
pub fn directory(listing: &Listing, params: &Params, problem: Option<&str>) -> Markup {
    let chosen = |value: &Option<String>| value.clone().unwrap_or_default();
    let (state, day, category, q) = (
        chosen(&params.state),
        chosen(&params.day),
        chosen(&params.category),
        chosen(&params.q),
    );
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { "Time deals" }
                style { (maud::PreEscaped(STYLE)) }
            }
            body {
                header { h1 { "Time deals" } p { "Live now, starting soon, and just ended, from every shop." } }
                form #filters method="get" action="/" {
                    input #q type="search" name="q" value=(q) placeholder="Search deals" aria-label="Search deals";
                    select #state name="state" aria-label="State" {
                        @for (value, text) in [("", "Any state"), ("live", "Live now"), ("upcoming", "Starting soon"), ("sold_out", "Sold out"), ("ended", "Just ended")] {
                            option value=(value) selected[value == state] { (text) }
                        }
                    }
                    select #day name="day" aria-label="When" {
                        @for (value, text) in [("", "Any day"), ("today", "Today"), ("week", "This week")] {
                            option value=(value) selected[value == day] { (text) }
                        }
                    }
                    select #category name="category" aria-label="Category" {
                        option value="" { "Every category" }
                        @for c in &listing.categories {
                            option value=(c) selected[*c == category] { (c) }
                        }
                    }
                    input #tz type="hidden" name="tz" value=(chosen(&params.tz));
                    button type="submit" { "Show" }
                }
                @if let Some(problem) = problem {
                    p.problem role="alert" { (problem) }
                }
                @if listing.deals.is_empty() {
                    p #none { "No deal matches. Try another day or category." }
                }
                ul #deals {
                    @for e in &listing.deals { (entry(e)) }
                }
                script src="/static/directory.js" {}
            }
        }
    }
}

const STYLE: &str = "
body { font-family: system-ui, sans-serif; margin: 0 auto; max-width: 60rem; padding: 1rem; color: #101828; }
header h1 { margin-bottom: 0.25rem; }
#filters { display: flex; flex-wrap: wrap; gap: 0.5rem; margin: 1rem 0; }
#filters input[type=search] { flex: 1 1 14rem; padding: 0.5rem; }
#filters select, #filters button { padding: 0.5rem; }
#deals { list-style: none; padding: 0; display: grid; gap: 0.75rem; grid-template-columns: repeat(auto-fill, minmax(17rem, 1fr)); }
.deal { border: 1px solid #d0d5dd; border-radius: 10px; overflow: hidden; background: #fff; }
.deal img { width: 100%; height: 9rem; object-fit: cover; }
.deal .body { padding: 0.75rem 1rem; }
.deal h2 { font-size: 1.1rem; margin: 0.25rem 0; }
.deal .meta { color: #475467; font-size: 0.85rem; margin: 0; }
.state-live .state { color: #067647; font-weight: 700; }
.state-upcoming .state { color: #b54708; font-weight: 700; }
.state-ended, .state-sold_out { opacity: 0.7; }
.prices strong { color: #d92d20; font-size: 1.2rem; }
.problem { color: #b42318; }
";
