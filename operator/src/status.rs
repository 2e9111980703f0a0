//! The TimeDeal's next status, from the last one and what this reconcile saw. Pure: no clock
//! reads, no I/O, so every transition is unit-tested.

use chrono::{DateTime, Utc};
use timedeal_api::{Phase, ReplicaFigures, StorefrontStats, TimeDealStatus};

use crate::{
    conditions::{self, Health},
    phase::Scale,
};

/// What one reconcile saw and decided.
pub struct Seen<'a> {
    pub phase: Phase,
    pub scale: Scale,
    pub health: Health<'a>,
    pub generation: i64,
    pub url: Option<String>,
    pub replicas: Option<ReplicaFigures>,
    /// Figures read just now, if they were due and the storefront answered.
    pub figures: Option<&'a StorefrontStats>,
    pub now: DateTime<Utc>,
}

pub fn next(old: &TimeDealStatus, seen: Seen) -> TimeDealStatus {
    let mut status = old.clone();
    status.phase = Some(seen.phase);
    status.conditions = conditions::merge(
        &old.conditions,
        &conditions::for_phase(seen.phase, seen.scale, seen.health),
        seen.generation,
        seen.now,
    );
    status.observed_generation = Some(seen.generation);
    status.url = seen.url.or(status.url);
    status.replicas = seen.replicas.or(status.replicas);
    if let Some(figures) = seen.figures {
        copy_figures(&mut status, figures, seen.now);
    }
    let first = |at: &mut Option<_>, reached: bool| {
        if reached && at.is_none() {
            *at = Some(conditions::time(seen.now));
        }
    };
    first(
        &mut status.started_at,
        matches!(seen.phase, Phase::Live | Phase::SoldOut),
    );
    first(&mut status.sold_out_at, seen.phase == Phase::SoldOut);
    first(&mut status.ended_at, seen.phase == Phase::Ended);
    status
}

/// Copies a storefront's figures into the status. `figuresUpdatedAt` moves only when a figure
/// did, so a quiet deal's status is not written on every reading.
pub fn copy_figures(status: &mut TimeDealStatus, figures: &StorefrontStats, now: DateTime<Utc>) {
    let before = (
        status.stock.clone(),
        status.queue.clone(),
        status.orders.clone(),
        status.revenue,
    );
    status.stock = Some(figures.stock.clone());
    let peak = status.queue.as_ref().map_or(0, |q| q.peak_waiting);
    let mut queue = figures.queue.clone();
    queue.peak_waiting = queue.peak_waiting.max(peak);
    status.queue = Some(queue);
    status.orders = Some(figures.orders.clone());
    status.revenue = Some(figures.revenue);
    let after = (
        status.stock.clone(),
        status.queue.clone(),
        status.orders.clone(),
        status.revenue,
    );
    if before != after || status.figures_updated_at.is_none() {
        status.figures_updated_at = Some(conditions::time(now));
    }
}

/// One line for the Event that records a deal's final figures.
pub fn final_figures_note(status: &TimeDealStatus, currency: &str) -> String {
    match (&status.stock, &status.orders) {
        (Some(stock), Some(orders)) => format!(
            "final figures: {} sold, {} left, {} orders confirmed, {} cancelled, revenue {} {currency} \
             (smallest unit), peak queue {}",
            stock.sold,
            stock.remaining,
            orders.confirmed,
            orders.cancelled,
            status.revenue.unwrap_or(0),
            status.queue.as_ref().map_or(0, |q| q.peak_waiting),
        ),
        _ => "no figures were ever read from the storefront".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use timedeal_api::{OrderFigures, QueueFigures, StockFigures};

    fn at(seconds: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_800_000_000 + seconds, 0).unwrap()
    }

    fn seen(phase: Phase, now: DateTime<Utc>) -> Seen<'static> {
        Seen {
            phase,
            scale: Scale::Autoscaled { floor: 2, max: 10 },
            health: Health {
                serving: true,
                ..Health::default()
            },
            generation: 3,
            url: Some("https://deal.example/".into()),
            replicas: Some(ReplicaFigures {
                desired: 2,
                ready: 2,
            }),
            figures: None,
            now,
        }
    }

    fn stats(sold: i64, waiting: i64, peak: i64) -> StorefrontStats {
        StorefrontStats {
            deal: "d".into(),
            state: "live".into(),
            stock: StockFigures {
                remaining: 100 - sold,
                sold,
                reserved: 0,
            },
            queue: QueueFigures {
                waiting,
                active: 1,
                peak_waiting: peak,
            },
            orders: OrderFigures {
                confirmed: sold,
                cancelled: 0,
            },
            revenue: sold * 500,
            currency: "USD".into(),
            at: at(0),
        }
    }

    #[test]
    fn milestones_are_stamped_once() {
        let live = next(&TimeDealStatus::default(), seen(Phase::Live, at(0)));
        assert_eq!(live.started_at, Some(conditions::time(at(0))));
        assert_eq!(live.observed_generation, Some(3));
        let later = next(&live, seen(Phase::SoldOut, at(60)));
        assert_eq!(later.started_at, Some(conditions::time(at(0))));
        assert_eq!(later.sold_out_at, Some(conditions::time(at(60))));
        assert_eq!(later.ended_at, None);
        let ended = next(&later, seen(Phase::Ended, at(120)));
        assert_eq!(ended.ended_at, Some(conditions::time(at(120))));
    }

    #[test]
    fn figures_are_copied_and_kept_when_not_read() {
        let figures = stats(40, 10, 10);
        let first = next(
            &TimeDealStatus::default(),
            Seen {
                figures: Some(&figures),
                ..seen(Phase::Live, at(0))
            },
        );
        assert_eq!(first.stock.as_ref().unwrap().sold, 40);
        assert_eq!(first.revenue, Some(20_000));
        assert_eq!(first.figures_updated_at, Some(conditions::time(at(0))));
        let unchanged = next(&first, seen(Phase::Live, at(5)));
        assert_eq!(unchanged, first, "nothing new seen, nothing changes");
    }

    #[test]
    fn the_peak_queue_never_goes_down() {
        let mut status = TimeDealStatus::default();
        copy_figures(&mut status, &stats(0, 900, 900), at(0));
        copy_figures(&mut status, &stats(50, 10, 0), at(1));
        assert_eq!(status.queue.as_ref().unwrap().peak_waiting, 900);
        assert_eq!(status.queue.as_ref().unwrap().waiting, 10);
    }

    #[test]
    fn the_final_note_names_the_figures() {
        let mut status = TimeDealStatus::default();
        assert!(final_figures_note(&status, "USD").contains("no figures"));
        copy_figures(&mut status, &stats(100, 0, 700), at(0));
        let note = final_figures_note(&status, "USD");
        assert!(note.contains("100 sold"), "{note}");
        assert!(note.contains("revenue 50000 USD"), "{note}");
        assert!(note.contains("peak queue 700"), "{note}");
    }
}
