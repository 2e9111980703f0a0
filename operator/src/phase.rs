//! The deal's phase and its scale, from approval, suspension, the clock and what was observed.
//! Pure: reconcile passes `now` in, so tests move the clock at will.

use chrono::{DateTime, Utc};
use timedeal_api::{Phase, Stage, TimeDealSpec, Timeline};

/// What reconcile saw of the running deal.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Observed {
    /// The storefront has at least one ready replica.
    pub ready: bool,
    /// The storefront reported every unit sold.
    pub sold_out: bool,
    /// The deal has been ready before: losing readiness now is an outage, not provisioning.
    pub provisioned: bool,
    /// Every ready storefront replica serves the current deal document (a suspension is only
    /// reported once they do).
    pub delivered: bool,
}

/// The phase at `now`. `Failed` is not a matter of the clock: reconcile sets it when the deal
/// cannot be built.
pub fn phase_at(spec: &TimeDealSpec, now: DateTime<Utc>, observed: Observed) -> Phase {
    if !spec.approved {
        return Phase::PendingApproval;
    }
    let stage = Timeline::of(spec).stage_at(now);
    match stage {
        Stage::Ended | Stage::Retired => Phase::Ended,
        _ if spec.suspend && observed.delivered => Phase::Suspended,
        _ if !observed.ready && !observed.provisioned => Phase::Provisioning,
        Stage::Upcoming => Phase::Scheduled,
        Stage::WarmingUp => Phase::WarmingUp,
        Stage::Live if observed.sold_out => Phase::SoldOut,
        Stage::Live => Phase::Live,
    }
}

/// Whether the deal warms up or sells at `now`: the window in which nothing may move its pods
/// unasked (no eviction of Redis, no operator upgrade).
pub fn selling(spec: &TimeDealSpec, now: DateTime<Utc>) -> bool {
    matches!(
        Timeline::of(spec).stage_at(now),
        Stage::WarmingUp | Stage::Live
    )
}

/// How many storefront replicas the deal runs at `now`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scale {
    /// Autoscaled between `floor` and `max` replicas.
    Autoscaled { floor: i32, max: i32 },
    /// Scaled to zero after retention; data stays (orders in PostgreSQL).
    Off,
}

/// During warm-up and while live, the floor is the peak capacity, so the spike finds the pods
/// already running; before and after, it is the minimum; after retention, nothing runs.
pub fn scale_at(spec: &TimeDealSpec, now: DateTime<Utc>) -> Scale {
    let capacity = &spec.capacity;
    let floor = match Timeline::of(spec).stage_at(now) {
        Stage::Retired => return Scale::Off,
        Stage::WarmingUp | Stage::Live if !spec.suspend => capacity.peak_replicas,
        _ => capacity.min_replicas,
    };
    Scale::Autoscaled {
        floor: floor.max(1),
        max: capacity.max_replicas.max(floor.max(1)),
    }
}

/// How long until the phase or scale can next change by the clock alone.
pub fn requeue_after(spec: &TimeDealSpec, now: DateTime<Utc>) -> Option<std::time::Duration> {
    Timeline::of(spec)
        .next_change_after(now)
        .and_then(|at| (at - now).to_std().ok())
}

#[cfg(test)]
mod tests {
    use super::*;
    use timedeal_api::validation;

    fn spec() -> TimeDealSpec {
        let text = std::fs::read_to_string(
            std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("../manifests/samples/timedeal.yaml"),
        )
        .unwrap();
        validation::parse(&text).unwrap().spec
    }

    fn at(spec: &TimeDealSpec, minutes: i64) -> DateTime<Utc> {
        spec.schedule.start + chrono::Duration::minutes(minutes)
    }

    const READY: Observed = Observed {
        ready: true,
        sold_out: false,
        provisioned: true,
        delivered: true,
    };

    #[test]
    fn the_phase_follows_the_clock() {
        let spec = spec(); // warm-up 15m, one hour long, retention 7d
        assert_eq!(phase_at(&spec, at(&spec, -60), READY), Phase::Scheduled);
        assert_eq!(phase_at(&spec, at(&spec, -10), READY), Phase::WarmingUp);
        assert_eq!(phase_at(&spec, at(&spec, 0), READY), Phase::Live);
        let sold_out = Observed {
            sold_out: true,
            ..READY
        };
        assert_eq!(phase_at(&spec, at(&spec, 5), sold_out), Phase::SoldOut);
        assert_eq!(phase_at(&spec, at(&spec, 60), READY), Phase::Ended);
        assert_eq!(phase_at(&spec, at(&spec, 60 * 24 * 8), READY), Phase::Ended);
    }

    #[test]
    fn approval_suspension_and_readiness_come_first() {
        let mut spec = spec();
        assert_eq!(
            phase_at(&spec, at(&spec, -60), Observed::default()),
            Phase::Provisioning
        );
        let outage = Observed {
            ready: false,
            ..READY
        };
        assert_eq!(phase_at(&spec, at(&spec, 5), outage), Phase::Live);
        assert!(selling(&spec, at(&spec, -5)) && selling(&spec, at(&spec, 5)));
        assert!(!selling(&spec, at(&spec, -60)) && !selling(&spec, at(&spec, 61)));
        spec.suspend = true;
        assert_eq!(phase_at(&spec, at(&spec, 5), READY), Phase::Suspended);
        let still_selling = Observed {
            delivered: false,
            ..READY
        };
        assert_eq!(
            phase_at(&spec, at(&spec, 5), still_selling),
            Phase::Live,
            "suspended only once the storefronts serve the suspension"
        );
        assert_eq!(phase_at(&spec, at(&spec, 90), READY), Phase::Ended);
        spec.approved = false;
        assert_eq!(phase_at(&spec, at(&spec, 5), READY), Phase::PendingApproval);
    }

    #[test]
    fn the_floor_is_raised_for_the_warm_up_and_dropped_after_the_end() {
        let spec = spec(); // min 2, peak 6, max 20
        let scaled = |floor| Scale::Autoscaled { floor, max: 20 };
        assert_eq!(scale_at(&spec, at(&spec, -60)), scaled(2));
        assert_eq!(scale_at(&spec, at(&spec, -15)), scaled(6));
        assert_eq!(scale_at(&spec, at(&spec, 30)), scaled(6));
        assert_eq!(scale_at(&spec, at(&spec, 61)), scaled(2));
        assert_eq!(scale_at(&spec, at(&spec, 60 + 7 * 24 * 60)), Scale::Off);
        let mut suspended = spec.clone();
        suspended.suspend = true;
        assert_eq!(scale_at(&suspended, at(&spec, 30)), scaled(2));
    }

    #[test]
    fn reconcile_requeues_exactly_at_the_next_boundary() {
        let spec = spec();
        assert_eq!(
            requeue_after(&spec, at(&spec, -20)),
            Some(std::time::Duration::from_secs(5 * 60))
        );
        assert_eq!(
            requeue_after(&spec, at(&spec, -5)),
            Some(std::time::Duration::from_secs(5 * 60))
        );
        assert_eq!(
            requeue_after(&spec, at(&spec, 59)),
            Some(std::time::Duration::from_secs(60))
        );
    }
}
