//! What the directory lists, as pure functions of the deals and the clock: each approved deal's
//! entry, its state, and the filters a shopper applies (state, day, category, search).

use chrono::{DateTime, Duration, FixedOffset, NaiveTime, TimeZone, Utc};
use serde::{Deserialize, Serialize};
use timedeal_api::{Phase, TimeDeal};

/// An annotation that sets the storefront's address where the deal's status has none yet (a
/// deal served without a cluster, as in the demo).
pub const STOREFRONT_URL_ANNOTATION: &str = "timedeal.dev/storefront-url";

/// Where a deal stands, as the directory shows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum State {
    Upcoming,
    Live,
    SoldOut,
    Ended,
}

impl State {
    pub fn as_str(self) -> &'static str {
        match self {
            State::Upcoming => "upcoming",
            State::Live => "live",
            State::SoldOut => "sold_out",
            State::Ended => "ended",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        [State::Upcoming, State::Live, State::SoldOut, State::Ended]
            .into_iter()
            .find(|state| state.as_str() == text)
    }
}

/// One deal in the directory.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Entry {
    /// `<namespace>/<name>`: stable, and what the reminder URLs use.
    pub id: String,
    pub company: String,
    pub product: String,
    pub description: String,
    pub image_url: Option<String>,
    pub category: String,
    /// `shipping`, `pickup`, `digital` or `coupon`.
    pub fulfilment: String,
    /// In the currency's smallest unit.
    pub list_price: i64,
    pub deal_price: i64,
    pub currency: String,
    /// Whole percent off the list price.
    pub discount_percent: i64,
    pub stock: i64,
    /// Units left, when the platform has read them from the storefront.
    pub remaining: Option<i64>,
    pub state: State,
    pub starts_at: DateTime<Utc>,
    pub ends_at: DateTime<Utc>,
    /// The deal's storefront, where its countdown and queue are.
    pub storefront_url: String,
}

/// The entry of an approved, unsuspended deal; `None` for a deal not to list.
pub fn entry(deal: &TimeDeal, now: DateTime<Utc>, ended_for: Duration) -> Option<Entry> {
    let spec = &deal.spec;
    if !spec.approved || spec.suspend {
        return None;
    }
    let schedule = &spec.schedule;
    if now >= schedule.end + ended_for {
        return None;
    }
    let status = deal.status.as_ref();
    let sold_out = status.and_then(|s| s.phase) == Some(Phase::SoldOut);
    let state = if now >= schedule.end {
        State::Ended
    } else if now >= schedule.start && sold_out {
        State::SoldOut
    } else if now >= schedule.start {
        State::Live
    } else {
        State::Upcoming
    };
    let namespace = deal.metadata.namespace.as_deref().unwrap_or("default");
    let name = deal.metadata.name.as_deref().unwrap_or_default();
    let storefront_url = status
        .and_then(|s| s.url.clone())
        .or_else(|| {
            deal.metadata
                .annotations
                .as_ref()
                .and_then(|a| a.get(STOREFRONT_URL_ANNOTATION).cloned())
        })
        .unwrap_or_else(|| format!("https://{}/", spec.ingress.host));
    let product = &spec.product;
    Some(Entry {
        id: format!("{namespace}/{name}"),
        company: spec.company.name.clone(),
        product: product.name.clone(),
        description: product.description.clone(),
        image_url: product.image_url.clone(),
        category: product.category.clone(),
        fulfilment: product.fulfilment.as_str().to_owned(),
        list_price: product.list_price,
        deal_price: product.deal_price,
        currency: product.currency.clone(),
        discount_percent: if product.list_price > 0 {
            100 - product.deal_price * 100 / product.list_price
        } else {
            0
        },
        stock: product.stock,
        remaining: status.and_then(|s| s.stock.as_ref()).map(|s| s.remaining),
        state,
        starts_at: schedule.start,
        ends_at: schedule.end,
        storefront_url,
    })
}

/// Which days a listing covers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Day {
    /// Deals running at some time today.
    Today,
    /// Deals running at some time from the start of today to seven days later.
    Week,
}

/// A shopper's filters, all optional.
#[derive(Debug, Clone, PartialEq)]
pub struct Filter {
    pub state: Option<State>,
    pub day: Option<Day>,
    pub category: Option<String>,
    /// Words that must all appear in the product's name or description, or the company's name.
    pub search: Vec<String>,
    /// The shopper's offset from UTC, which decides where "today" starts.
    pub offset: FixedOffset,
}

/// The query string of `/` and `/api/deals`.
#[derive(Debug, Clone, Default, Deserialize, utoipa::IntoParams)]
#[serde(default)]
#[into_params(parameter_in = Query)]
pub struct Params {
    /// `upcoming`, `live`, `sold_out` or `ended`.
    pub state: Option<String>,
    /// `today` or `week`.
    pub day: Option<String>,
    /// A category, such as `audio`.
    pub category: Option<String>,
    /// Words to look for in the product, its description and the company.
    pub q: Option<String>,
    /// The shopper's UTC offset for `day`, such as `+09:00` (default UTC).
    pub tz: Option<String>,
}

/// A parameter that cannot work, and what to send instead.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{parameter}: {message}")]
pub struct BadParam {
    pub parameter: &'static str,
    pub message: String,
}

impl Params {
    pub fn filter(&self) -> Result<Filter, BadParam> {
        fn blank(v: &Option<String>) -> Option<&str> {
            v.as_deref().map(str::trim).filter(|v| !v.is_empty())
        }
        let state = match blank(&self.state) {
            None => None,
            Some(text) => Some(State::parse(text).ok_or_else(|| BadParam {
                parameter: "state",
                message: format!("{text:?} is not a state; use upcoming, live, sold_out or ended"),
            })?),
        };
        let day = match blank(&self.day) {
            None => None,
            Some("today") => Some(Day::Today),
            Some("week") => Some(Day::Week),
            Some(text) => {
                return Err(BadParam {
                    parameter: "day",
                    message: format!("{text:?} is not a day; use today or week"),
                })
            }
        };
        let offset = match blank(&self.tz) {
            None => FixedOffset::east_opt(0).expect("UTC is an offset"),
            Some(text) => parse_offset(text).ok_or_else(|| BadParam {
                parameter: "tz",
                message: format!("{text:?} is not a UTC offset; use one such as +09:00 or -05:00"),
            })?,
        };
        let search = blank(&self.q)
            .map(|q| {
                q.split_whitespace()
                    .take(8)
                    .map(str::to_lowercase)
                    .collect()
            })
            .unwrap_or_default();
        Ok(Filter {
            state,
            day,
            category: blank(&self.category).map(str::to_lowercase),
            search,
            offset,
        })
    }
}

fn parse_offset(text: &str) -> Option<FixedOffset> {
    let (sign, rest) = match text.as_bytes().first()? {
        b'+' | b' ' => (1, &text[1..]),
        b'-' => (-1, &text[1..]),
        _ => return None,
    };
    let (hours, minutes) = rest.split_once(':')?;
    let (hours, minutes): (i32, i32) = (hours.parse().ok()?, minutes.parse().ok()?);
    if hours > 14 || minutes > 59 {
        return None;
    }
    FixedOffset::east_opt(sign * (hours * 3600 + minutes * 60))
}

impl Filter {
    pub fn keeps(&self, entry: &Entry, now: DateTime<Utc>) -> bool {
        if self.state.is_some_and(|state| state != entry.state) {
            return false;
        }
        if let Some(day) = self.day {
            let local = now.with_timezone(&self.offset).date_naive();
            let from = self
                .offset
                .from_local_datetime(&local.and_time(NaiveTime::MIN))
                .single()
                .map(|t| t.with_timezone(&Utc))
                .unwrap_or(now);
            let until = from
                + match day {
                    Day::Today => Duration::days(1),
                    Day::Week => Duration::days(7),
                };
            if !(entry.starts_at < until && entry.ends_at > from) {
                return false;
            }
        }
        if self
            .category
            .as_ref()
            .is_some_and(|category| *category != entry.category)
        {
            return false;
        }
        if !self.search.is_empty() {
            let haystack = format!(
                "{} {} {}",
                entry.product.to_lowercase(),
                entry.description.to_lowercase(),
                entry.company.to_lowercase()
            );
            if !self.search.iter().all(|word| haystack.contains(word)) {
                return false;
            }
        }
        true
    }
}

/// The listing: live deals first (ending soonest first), then upcoming (starting soonest
/// first), then sold out and ended (most recent first).
pub fn list(
    deals: &[TimeDeal],
    filter: &Filter,
    now: DateTime<Utc>,
    ended_for: Duration,
) -> Vec<Entry> {
    let mut entries: Vec<Entry> = deals
        .iter()
        .filter_map(|deal| entry(deal, now, ended_for))
        .filter(|entry| filter.keeps(entry, now))
        .collect();
    entries.sort_by(|a, b| {
        let rank = |e: &Entry| match e.state {
            State::Live => 0,
            State::Upcoming => 1,
            State::SoldOut => 2,
            State::Ended => 3,
        };
        rank(a).cmp(&rank(b)).then_with(|| match a.state {
            State::Live => a.ends_at.cmp(&b.ends_at),
            State::Upcoming => a.starts_at.cmp(&b.starts_at),
            _ => b.ends_at.cmp(&a.ends_at),
        })
    });
    entries
}

/// The categories of the deals listed, each once, sorted.
pub fn categories(deals: &[TimeDeal], now: DateTime<Utc>, ended_for: Duration) -> Vec<String> {
    let mut categories: Vec<String> = deals
        .iter()
        .filter_map(|deal| entry(deal, now, ended_for))
        .map(|entry| entry.category)
        .collect();
    categories.sort();
    categories.dedup();
    categories
}

/// The next time any deal's state changes (a start, an end, the end of its listing), so a
/// cached listing knows how long it stays right.
pub fn next_change(
    deals: &[TimeDeal],
    now: DateTime<Utc>,
    ended_for: Duration,
) -> Option<DateTime<Utc>> {
    deals
        .iter()
        .flat_map(|deal| {
            let s = &deal.spec.schedule;
            [s.start, s.end, s.end + ended_for]
        })
        .filter(|t| *t > now)
        .min()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn deal(name: &str, category: &str, start: &str, hours: i64, approved: bool) -> TimeDeal {
        let start: DateTime<Utc> = start.parse().unwrap();
        let end = start + Duration::hours(hours);
        timedeal_api::validation::parse(&format!(
            r#"apiVersion: timedeal.dev/v1alpha1
kind: TimeDeal
metadata: {{ name: {name}, namespace: shop }}
spec:
  company: {{ name: ACME Audio, contactEmail: sales@acme.example }}
  approved: {approved}
  product:
    name: "{name} headphones"
    description: Noise-cancelling, over-ear.
    listPrice: 20000
    dealPrice: 5000
    stock: 10
    category: {category}
  schedule: {{ start: "{start}", end: "{end}" }}
  ingress: {{ host: {name}.deals.example.com }}
"#,
            start = start.to_rfc3339(),
            end = end.to_rfc3339()
        ))
        .unwrap()
    }

    fn now() -> DateTime<Utc> {
        "2026-12-01T10:00:00Z".parse().unwrap()
    }

    fn deals() -> Vec<TimeDeal> {
        vec![
            deal("later", "audio", "2026-12-03T10:00:00Z", 1, true),
            deal("live", "audio", "2026-12-01T09:30:00Z", 1, true),
            deal("soon", "tea", "2026-12-01T12:00:00Z", 1, true),
            deal("ended", "tea", "2026-12-01T07:00:00Z", 1, true),
            deal("long-ago", "tea", "2026-11-20T07:00:00Z", 1, true),
            deal("unapproved", "audio", "2026-12-01T12:00:00Z", 1, false),
            deal("next-month", "audio", "2027-01-05T12:00:00Z", 1, true),
        ]
    }

    fn names(entries: &[Entry]) -> Vec<&str> {
        entries
            .iter()
            .map(|e| e.id.trim_start_matches("shop/"))
            .collect()
    }

    fn listing(params: Params) -> Vec<Entry> {
        list(
            &deals(),
            &params.filter().unwrap(),
            now(),
            Duration::days(1),
        )
    }

    #[test]
    fn live_first_then_upcoming_then_recently_ended_and_nothing_unapproved_or_long_gone() {
        assert_eq!(
            names(&listing(Params::default())),
            ["live", "soon", "later", "next-month", "ended"]
        );
    }

    #[test]
    fn the_states_filter() {
        let state = |s: &str| Params {
            state: Some(s.into()),
            ..Params::default()
        };
        assert_eq!(names(&listing(state("live"))), ["live"]);
        assert_eq!(names(&listing(state("ended"))), ["ended"]);
        assert_eq!(
            names(&listing(state("upcoming"))),
            ["soon", "later", "next-month"]
        );
        assert_eq!(
            state("over").filter().unwrap_err().parameter,
            "state",
            "an unknown state is refused, not ignored"
        );
    }

    #[test]
    fn today_and_this_week_follow_the_shoppers_offset() {
        let day = |d: &str, tz: &str| Params {
            day: Some(d.into()),
            tz: Some(tz.into()),
            ..Params::default()
        };
        assert_eq!(
            names(&listing(day("today", "+00:00"))),
            ["live", "soon", "ended"]
        );
        assert_eq!(
            names(&listing(day("week", "+00:00"))),
            ["live", "soon", "later", "ended"]
        );
        // At 10:00 UTC it is midnight going into 2 December at +14:00: "today" there starts at
        // 10:00 UTC, after the deal that ended at 08:00.
        assert_eq!(names(&listing(day("today", "+14:00"))), ["live", "soon"]);
        assert!(day("today", "Seoul").filter().is_err());
    }

    #[test]
    fn category_and_search_narrow_it() {
        let found = listing(Params {
            category: Some("tea".into()),
            ..Params::default()
        });
        assert_eq!(names(&found), ["soon", "ended"]);
        let found = listing(Params {
            q: Some("  LIVE   Noise ".into()),
            ..Params::default()
        });
        assert_eq!(names(&found), ["live"]);
        let found = listing(Params {
            q: Some("acme".into()),
            category: Some("audio".into()),
            ..Params::default()
        });
        assert_eq!(names(&found), ["live", "later", "next-month"]);
    }

    #[test]
    fn a_sold_out_deal_says_so_and_the_storefront_comes_from_the_status() {
        let mut sold = deal("sold", "audio", "2026-12-01T09:30:00Z", 1, true);
        sold.status = Some(timedeal_api::TimeDealStatus {
            phase: Some(Phase::SoldOut),
            url: Some("https://sold.example.com/".into()),
            ..Default::default()
        });
        let entry = entry(&sold, now(), Duration::days(1)).unwrap();
        assert_eq!(entry.state, State::SoldOut);
        assert_eq!(entry.storefront_url, "https://sold.example.com/");
        assert_eq!(entry.discount_percent, 75);
    }

    #[test]
    fn the_next_change_is_the_nearest_start_or_end() {
        assert_eq!(
            next_change(&deals(), now(), Duration::days(1)),
            Some("2026-12-01T10:30:00Z".parse().unwrap())
        );
    }
}
