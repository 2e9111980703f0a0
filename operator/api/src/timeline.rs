//! Where a deal stands on its schedule at a given instant: the clock half of the deal's phase,
//! shared by the operator (scaling, requeue times) and the tenant app (countdown, pre-queue).
//! Approval, suspension and stock are the other half and live with their owners.

use chrono::{DateTime, Utc};

use crate::types::TimeDealSpec;

/// The instants at which a deal changes stage, all derived from its spec.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Timeline {
    /// `start - warmUp`: capacity is raised to `peakReplicas` from here.
    pub warm_up_from: DateTime<Utc>,
    /// `start - preQueueOpens`: shoppers may join the pre-queue from here.
    pub pre_queue_from: DateTime<Utc>,
    pub start: DateTime<Utc>,
    pub end: DateTime<Utc>,
    /// `end + retention`: the storefront scales to zero from here.
    pub retire_at: DateTime<Utc>,
}

/// The stage of a deal on its schedule.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Stage {
    /// Before the warm-up window.
    Upcoming,
    /// In the warm-up window before the start.
    WarmingUp,
    /// Between start and end.
    Live,
    /// After the end, within retention: read-only.
    Ended,
    /// After retention: scaled to zero, data kept.
    Retired,
}

impl Timeline {
    pub fn of(spec: &TimeDealSpec) -> Self {
        let schedule = &spec.schedule;
        Self {
            warm_up_from: schedule.start - schedule.warm_up.chrono(),
            pre_queue_from: schedule.start - spec.queue.pre_queue_opens.chrono(),
            start: schedule.start,
            end: schedule.end,
            retire_at: schedule.end + schedule.retention.chrono(),
        }
    }

    pub fn stage_at(&self, now: DateTime<Utc>) -> Stage {
        if now >= self.retire_at {
            Stage::Retired
        } else if now >= self.end {
            Stage::Ended
        } else if now >= self.start {
            Stage::Live
        } else if now >= self.warm_up_from {
            Stage::WarmingUp
        } else {
            Stage::Upcoming
        }
    }

    /// Whether shoppers arriving now join the pre-queue (shuffled at the start).
    pub fn pre_queue_open_at(&self, now: DateTime<Utc>) -> bool {
        now >= self.pre_queue_from && now < self.start
    }

    /// The first instant after `now` at which the stage or the pre-queue changes, if any:
    /// the time to look at the deal again.
    pub fn next_change_after(&self, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
        [
            self.warm_up_from,
            self.pre_queue_from,
            self.start,
            self.end,
            self.retire_at,
        ]
        .into_iter()
        .filter(|instant| *instant > now)
        .min()
    }
}

#[cfg(test)]
mod tests {
    use chrono::Duration;

    use super::*;
    use crate::validation::parse;

    fn timeline() -> Timeline {
        let deal = parse(
            r#"
apiVersion: timedeal.dev/v1alpha1
kind: TimeDeal
metadata: { name: tea }
spec:
  company: { name: Tea, contactEmail: a@tea.example }
  product: { name: Tea, listPrice: 100, dealPrice: 50, stock: 10 }
  schedule: { start: "2027-03-01T10:00:00Z", end: "2027-03-01T11:00:00Z", warmUp: 10m, retention: 1d }
  queue: { preQueueOpens: 30m }
  ingress: { host: tea.example.com }
"#,
        )
        .unwrap();
        Timeline::of(&deal.spec)
    }

    fn at(text: &str) -> DateTime<Utc> {
        text.parse().unwrap()
    }

    #[test]
    fn boundaries_come_from_the_spec() {
        let t = timeline();
        assert_eq!(t.warm_up_from, at("2027-03-01T09:50:00Z"));
        assert_eq!(t.pre_queue_from, at("2027-03-01T09:30:00Z"));
        assert_eq!(t.retire_at, at("2027-03-02T11:00:00Z"));
    }

    #[test]
    fn stage_changes_exactly_at_each_boundary() {
        let t = timeline();
        let tick = Duration::milliseconds(1);
        for (instant, before, after) in [
            (t.warm_up_from, Stage::Upcoming, Stage::WarmingUp),
            (t.start, Stage::WarmingUp, Stage::Live),
            (t.end, Stage::Live, Stage::Ended),
            (t.retire_at, Stage::Ended, Stage::Retired),
        ] {
            assert_eq!(t.stage_at(instant - tick), before, "just before {instant}");
            assert_eq!(t.stage_at(instant), after, "at {instant}");
        }
    }

    #[test]
    fn pre_queue_is_open_only_before_the_start() {
        let t = timeline();
        assert!(!t.pre_queue_open_at(at("2027-03-01T09:29:59Z")));
        assert!(t.pre_queue_open_at(at("2027-03-01T09:30:00Z")));
        assert!(t.pre_queue_open_at(at("2027-03-01T09:59:59Z")));
        assert!(!t.pre_queue_open_at(at("2027-03-01T10:00:00Z")));
    }

    #[test]
    fn next_change_is_the_nearest_future_boundary() {
        let t = timeline();
        assert_eq!(
            t.next_change_after(at("2027-01-01T00:00:00Z")),
            Some(t.pre_queue_from)
        );
        assert_eq!(t.next_change_after(t.pre_queue_from), Some(t.warm_up_from));
        assert_eq!(t.next_change_after(t.warm_up_from), Some(t.start));
        assert_eq!(t.next_change_after(at("2027-03-01T10:30:00Z")), Some(t.end));
        assert_eq!(t.next_change_after(t.end), Some(t.retire_at));
        assert_eq!(t.next_change_after(t.retire_at), None);
    }
}
