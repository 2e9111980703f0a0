//! What the plugin prints, built from what it read. Pure: `now` comes in, so ages are testable.

use std::fmt::Write;

use chrono::{DateTime, Utc};
use k8s_openapi::api::{
    apps::v1::{Deployment, StatefulSet},
    autoscaling::v2::HorizontalPodAutoscaler,
    events::v1::Event,
    networking::v1::Ingress,
    policy::v1::PodDisruptionBudget,
};
use timedeal_api::Company;
use timedeal_api::{money, TimeDeal, TimeDealStatus};

/// One child of a deal, as one line: its kind and name, and how it is doing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Child {
    pub kind: &'static str,
    pub name: String,
    pub state: String,
}

fn name(meta: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta) -> String {
    meta.name.clone().unwrap_or_default()
}

pub fn deployment(d: &Deployment) -> Child {
    let status = d.status.clone().unwrap_or_default();
    Child {
        kind: "Deployment",
        name: name(&d.metadata),
        state: format!(
            "{}/{} ready",
            status.ready_replicas.unwrap_or(0),
            status.replicas.unwrap_or(0)
        ),
    }
}

pub fn stateful_set(s: &StatefulSet) -> Child {
    let status = s.status.clone().unwrap_or_default();
    let wanted = s.spec.as_ref().and_then(|spec| spec.replicas).unwrap_or(0);
    Child {
        kind: "StatefulSet",
        name: name(&s.metadata),
        state: format!("{}/{wanted} ready", status.ready_replicas.unwrap_or(0)),
    }
}

pub fn autoscaler(h: &HorizontalPodAutoscaler) -> Child {
    let spec = h.spec.clone().unwrap_or_default();
    let now = h
        .status
        .as_ref()
        .map_or(0, |status| status.current_replicas.unwrap_or(0));
    Child {
        kind: "HorizontalPodAutoscaler",
        name: name(&h.metadata),
        state: format!(
            "{}–{} replicas, now {now}",
            spec.min_replicas.unwrap_or(1),
            spec.max_replicas
        ),
    }
}

pub fn disruption_budget(p: &PodDisruptionBudget) -> Child {
    let status = p.status.clone().unwrap_or_default();
    Child {
        kind: "PodDisruptionBudget",
        name: name(&p.metadata),
        state: format!("{} disruptions allowed", status.disruptions_allowed),
    }
}

pub fn ingress(i: &Ingress) -> Child {
    let hosts: Vec<String> = i
        .spec
        .iter()
        .flat_map(|spec| spec.rules.iter().flatten())
        .filter_map(|rule| rule.host.clone())
        .collect();
    Child {
        kind: "Ingress",
        name: name(&i.metadata),
        state: hosts.join(", "),
    }
}

/// "3m", "2h", "5d": how long ago.
fn age(then: DateTime<Utc>, now: DateTime<Utc>) -> String {
    let seconds = (now - then).num_seconds().max(0);
    match seconds {
        s if s < 120 => format!("{s}s"),
        s if s < 7200 => format!("{}m", s / 60),
        s if s < 172_800 => format!("{}h", s / 3600),
        s => format!("{}d", s / 86_400),
    }
}

fn time(t: &k8s_openapi::apimachinery::pkg::apis::meta::v1::Time) -> DateTime<Utc> {
    DateTime::from_timestamp(t.0.as_second(), 0).unwrap_or_default()
}

/// The figures, as lines (empty when none was ever read).
fn figures(status: &TimeDealStatus, currency: &str) -> Vec<String> {
    let mut lines = Vec::new();
    if let Some(stock) = &status.stock {
        lines.push(format!(
            "stock     {} sold, {} left, {} reserved",
            stock.sold, stock.remaining, stock.reserved
        ));
    }
    if let Some(queue) = &status.queue {
        lines.push(format!(
            "queue     {} waiting (peak {}), {} admitted",
            queue.waiting, queue.peak_waiting, queue.active
        ));
    }
    if let Some(orders) = &status.orders {
        lines.push(format!(
            "orders    {} confirmed, {} cancelled",
            orders.confirmed, orders.cancelled
        ));
    }
    if let Some(revenue) = status.revenue {
        lines.push(format!("revenue   {}", money::format(revenue, currency)));
    }
    lines
}

/// `kubectl timedeal status DEAL`.
pub fn status(deal: &TimeDeal, children: &[Child], events: &[Event], now: DateTime<Utc>) -> String {
    let status = deal.status.clone().unwrap_or_default();
    let spec = &deal.spec;
    let product = &spec.product;
    let currency = &product.currency;
    let mut out = String::new();
    let phase = status
        .phase
        .map_or("(not reconciled yet)".to_owned(), |p| format!("{p:?}"));
    let _ = writeln!(
        out,
        "TimeDeal {}/{}: {phase}{}",
        deal.metadata.namespace.as_deref().unwrap_or(""),
        deal.metadata.name.as_deref().unwrap_or(""),
        match (spec.approved, spec.suspend) {
            (false, _) => " (not approved)",
            (true, true) => " (suspended by spec.suspend)",
            (true, false) => "",
        }
    );
    let _ = writeln!(
        out,
        "product   {}: {} (list {}), stock {}, at most {} a shopper",
        product.name,
        money::format(product.deal_price, currency),
        money::format(product.list_price, currency),
        product.stock,
        product.per_user_limit
    );
    let _ = writeln!(
        out,
        "schedule  {} → {} (warm-up {}, retention {})",
        spec.schedule.start.format("%Y-%m-%d %H:%M UTC"),
        spec.schedule.end.format("%Y-%m-%d %H:%M UTC"),
        spec.schedule.warm_up,
        spec.schedule.retention
    );
    if let Some(url) = &status.url {
        let _ = writeln!(out, "url       {url}");
    }
    for line in figures(&status, currency) {
        let _ = writeln!(out, "{line}");
    }
    if let Some(at) = &status.figures_updated_at {
        let _ = writeln!(
            out,
            "          (figures last changed {} ago)",
            age(time(at), now)
        );
    }
    if let Some(pinned) = &status.pinned {
        let _ = writeln!(
            out,
            "runs      storefront {}, Redis {}, templates v{}",
            pinned.tenant_app, pinned.redis, pinned.template
        );
    }
    if let Some(pending) = &status.pending_upgrade {
        let _ = writeln!(
            out,
            "upgrade   pending until the sale is over: storefront {}, Redis {}, templates v{} \
             (annotate timedeal.dev/upgrade=now to move at once)",
            pending.tenant_app, pending.redis, pending.template
        );
    }
    if !status.conditions.is_empty() {
        let _ = writeln!(out, "\nconditions");
        for c in &status.conditions {
            let _ = writeln!(
                out,
                "  {:<12} {:<6} {:<22} {}",
                c.type_, c.status, c.reason, c.message
            );
        }
    }
    if !children.is_empty() {
        let _ = writeln!(out, "\nchildren");
        for child in children {
            let _ = writeln!(
                out,
                "  {:<24} {:<36} {}",
                child.kind, child.name, child.state
            );
        }
    }
    let mut recent: Vec<&Event> = events.iter().collect();
    recent.sort_by_key(|e| std::cmp::Reverse(e.event_time.as_ref().map(|t| t.0)));
    if !recent.is_empty() {
        let _ = writeln!(out, "\nrecent events");
        for event in recent.into_iter().take(8) {
            let when = event
                .event_time
                .as_ref()
                .map(|t| {
                    age(
                        DateTime::from_timestamp(t.0.as_second(), 0).unwrap_or_default(),
                        now,
                    )
                })
                .unwrap_or_default();
            let _ = writeln!(
                out,
                "  {:>4} ago  {:<8} {:<18} {}",
                when,
                event.type_.as_deref().unwrap_or(""),
                event.reason.as_deref().unwrap_or(""),
                event.note.as_deref().unwrap_or("")
            );
        }
    }
    out
}

/// `kubectl timedeal report DEAL`: the figures the deal ended with, or has so far.
pub fn report(deal: &TimeDeal) -> String {
    let status = deal.status.clone().unwrap_or_default();
    let currency = &deal.spec.product.currency;
    let name = deal.metadata.name.as_deref().unwrap_or("");
    let mut out = String::new();
    let lines = figures(&status, currency);
    if lines.is_empty() {
        return format!("{name}: no figures were read from its storefront yet\n");
    }
    let so_far = status.ended_at.is_none();
    let _ = writeln!(
        out,
        "{name}: {}",
        if so_far {
            "the figures so far (the deal has not ended)"
        } else {
            "the figures it ended with"
        }
    );
    for line in lines {
        let _ = writeln!(out, "{line}");
    }
    let stamp = |label: &str, t: &Option<k8s_openapi::apimachinery::pkg::apis::meta::v1::Time>| {
        t.as_ref()
            .map(|t| format!("{label} {}", time(t).format("%Y-%m-%d %H:%M:%S UTC")))
    };
    for line in [
        stamp("started  ", &status.started_at),
        stamp("sold out ", &status.sold_out_at),
        stamp("ended    ", &status.ended_at),
    ]
    .into_iter()
    .flatten()
    {
        let _ = writeln!(out, "{line}");
    }
    out
}

/// `kubectl timedeal calendar [DAY]`: each UTC hour of a day, what is booked in it and by whom.
pub fn calendar(date: chrono::NaiveDate, deals: &[TimeDeal], capacity: Option<i32>) -> String {
    use timedeal_api::calendar::{self as cal, Booking, Load};
    let bookings: Vec<(Booking, String)> = deals
        .iter()
        .map(|d| {
            (
                Booking::of(d),
                format!(
                    "{}/{}{}",
                    d.metadata.namespace.as_deref().unwrap_or(""),
                    d.metadata.name.as_deref().unwrap_or(""),
                    if d.spec.approved { "" } else { " (pending)" }
                ),
            )
        })
        .collect();
    let only: Vec<Booking> = bookings.iter().map(|(b, _)| b.clone()).collect();
    let hours = cal::day(date, &only, capacity.unwrap_or(i32::MAX));
    let mut out = match capacity {
        Some(c) => format!("{date} (UTC hours), {c} storefront replicas at once\n"),
        None => format!(
            "{date} (UTC hours); the platform keeps no calendar (calendar.replicas is 0), so only what is booked\n"
        ),
    };
    for hour in hours {
        let end = hour.start + chrono::Duration::hours(1);
        let who: Vec<String> = bookings
            .iter()
            .filter(|(b, _)| b.from < end && hour.start < b.until)
            .map(|(b, name)| format!("{name} {}", b.replicas))
            .collect();
        let load = match (capacity, hour.load) {
            (None, _) => "",
            (_, Load::Free) => "free ",
            (_, Load::Tight) => "tight",
            (_, Load::Full) => "FULL ",
        };
        let booked = match capacity {
            Some(c) => format!("{:>4}/{c}", hour.booked),
            None => format!("{:>4}", hour.booked),
        };
        let _ = writeln!(
            out,
            "{}  {load} {booked}  {}",
            hour.start.format("%H:00"),
            who.join(", ")
        );
    }
    out
}

/// `text` as a terminal may show it: control characters (an escape sequence in a display name
/// could clear the screen, move the cursor or retitle the window) and bidirectional overrides
/// are written out as `\u{..}`; line breaks stay.
pub fn printable(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        let bidi = matches!(c, '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}');
        if (c.is_control() && c != '\n') || bidi {
            let _ = write!(out, "\\u{{{:x}}}", c as u32);
        } else {
            out.push(c);
        }
    }
    out
}

/// `kubectl timedeal companies`: every company, waiting ones first.
pub fn companies(companies: &[Company]) -> String {
    if companies.is_empty() {
        return "no companies yet: they sign up on the rental portal\n".into();
    }
    let mut sorted: Vec<&Company> = companies.iter().collect();
    sorted.sort_by_key(|c| (c.spec.approved, c.metadata.name.clone()));
    let mut out = format!(
        "{:<20} {:<24} {:<9} {:<22} {:<6} {:<6} {}\n",
        "NAME", "DISPLAY NAME", "APPROVED", "NAMESPACE", "READY", "DEALS", "QUOTAS"
    );
    for company in sorted {
        let status = company.status.clone().unwrap_or_default();
        let ready = status
            .conditions
            .iter()
            .find(|c| c.type_ == "Ready")
            .map_or("-".to_owned(), |c| c.status.clone());
        let quotas = &company.spec.quotas;
        let _ = writeln!(
            out,
            "{:<20} {:<24} {:<9} {:<22} {:<6} {:<6} {} deals, {} replicas, {} units",
            company.metadata.name.as_deref().unwrap_or(""),
            printable(&company.spec.display_name),
            if company.spec.approved { "yes" } else { "no" },
            company.spec.namespace,
            ready,
            status.deals.map_or("-".to_owned(), |d| d.to_string()),
            quotas.max_deals,
            quotas.max_peak_replicas,
            quotas.max_stock
        );
    }
    let waiting = companies.iter().filter(|c| !c.spec.approved).count();
    if waiting > 0 {
        let _ = writeln!(
            out,
            "\n{waiting} waiting for approval: `kubectl timedeal approve NAME`"
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_characters_reach_no_terminal() {
        assert_eq!(
            printable("Acme\u{1b}[2J\u{1b}]0;pwned\u{7}\tCo\u{202e}\nnext"),
            "Acme\\u{1b}[2J\\u{1b}]0;pwned\\u{7}\\u{9}Co\\u{202e}\nnext"
        );
        let mut company: Company =
            serde_yaml::from_str(include_str!("../../../manifests/companies/acme-audio.yaml"))
                .unwrap();
        company.spec.display_name = "Evil\u{1b}[2J\u{1b}[1;1H".into();
        let screen = companies(&[company]);
        assert!(!screen.contains('\u{1b}'), "{screen:?}");
        assert!(screen.contains("Evil\\u{1b}[2J"), "{screen}");
    }

    #[test]
    fn ages_read_as_people_say_them() {
        let now = DateTime::from_timestamp(1_800_000_000, 0).unwrap();
        let ago = |s| age(now - chrono::Duration::seconds(s), now);
        assert_eq!(ago(5), "5s");
        assert_eq!(ago(600), "10m");
        assert_eq!(ago(3 * 3600), "3h");
        assert_eq!(ago(5 * 86_400), "5d");
        assert_eq!(ago(-5), "0s");
    }
}
