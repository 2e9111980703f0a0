//! The public head of the line: what every waiting shopper shares, the same bytes for all, so an
//! ingress, a CDN or a browser cache can answer nearly every look at the line. A shopper's own
//! standing follows from it and their place (`ticket` in `GET /api/queue`):
//!
//! - position = place − head (1 is next; at 0 or below, the line has reached them and their
//!   admission is fetched from `GET /api/queue`);
//! - the wait is position × 1,000 ÷ pace (places per 1,000 s: `typical`, the shortest at
//!   `max(fastest, typical)`, the longest at `min(slowest, typical)` unless that is 0); no
//!   pace, no honest estimate. Before the line has been seen moving, the pace is the one the
//!   admission rate guarantees while there is room, as `GET /api/queue` estimates it;
//! - likely sold out when stockRemaining ≤ 0 or position − 1 + active ≥ stockRemaining.

use chrono::{DateTime, Utc};
use serde::Serialize;

use super::{
    arithmetic::{Figures, Settings},
    pause_reason, PauseReason,
};
use crate::deal::DealState;

/// The line's shared state at one second.
#[derive(Debug, Clone, Serialize, PartialEq, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Head {
    /// The last place the line has moved past: a shopper whose place is `p` stands at
    /// `p - head` (1 is next).
    pub head: u64,
    /// Redis's epoch: a ticket of another epoch holds no place (-1 while restoring).
    pub epoch: i64,
    /// The deal's state.
    pub deal: DealState,
    /// Why the line cannot move now, while it cannot (see `GET /api/queue`).
    pub paused_because: Option<PauseReason>,
    /// Places not yet reached by the line (after the start).
    pub waiting: u64,
    /// Shoppers admitted now: each may buy before anyone still waiting.
    pub active: u64,
    /// Units neither sold nor reserved: a shopper at a position at least this is likely to
    /// find the deal sold out.
    pub stock_remaining: i64,
    /// The pre-queue's size once drawn at the start: numbers up to it have drawn places.
    pub drawn: Option<u64>,
    /// How fast the head moves, in places per 1,000 seconds: as observed over the last minute,
    /// or, before that, what the admission rate guarantees while there is room; absent when no
    /// honest estimate can be given.
    pub pace: Option<HeadPace>,
    /// Seconds until the start (0 once started).
    pub seconds_to_start: u64,
    /// The server's clock, to the second: countdowns are computed against it. (It is left out
    /// of the ETag: a head that only aged is the same head.)
    pub server_time: DateTime<Utc>,
    /// SHA-256 of the seed that draws the pre-queue (see `/api/fairness`).
    pub draw_commitment: String,
    /// The randomness beacon named in the commitment, if any.
    pub draw_beacon: Option<String>,
}

/// The head's pace: places per 1,000 seconds.
#[derive(Debug, Clone, Copy, Serialize, PartialEq, Eq, utoipa::ToSchema)]
pub struct HeadPace {
    pub typical: u64,
    pub slowest: u64,
    pub fastest: u64,
}

/// The head at `now` (truncated to the second, so everyone asking within it gets the same bytes).
pub fn head(
    figures: &Figures,
    settings: &Settings,
    deal: DealState,
    start: DateTime<Utc>,
    now: DateTime<Utc>,
    draw_commitment: &str,
    draw_beacon: Option<&str>,
) -> Head {
    let second = DateTime::from_timestamp(now.timestamp(), 0).unwrap_or(now);
    let observed = figures.pace.filter(|p| p.typical > 0).map(|p| HeadPace {
        typical: p.typical,
        slowest: p.slowest,
        fastest: p.fastest,
    });
    // As `arithmetic::estimated_wait` falls back: the rate gives the longest wait, and the
    // shortest is half of it.
    let room = (settings.max_active as i64).min(figures.available) - figures.active as i64;
    let guaranteed = (room > 0 && settings.admission_rate > 0).then(|| {
        let rate = settings.admission_rate as u64 * 1000;
        HeadPace {
            typical: rate,
            slowest: rate,
            fastest: rate * 2,
        }
    });
    Head {
        head: figures.head,
        epoch: figures.epoch,
        deal,
        paused_because: pause_reason(deal, figures),
        waiting: figures.waiting,
        active: figures.active,
        stock_remaining: figures.available.max(0),
        drawn: figures.drawn,
        pace: observed.or(guaranteed),
        seconds_to_start: (start - second).num_seconds().max(0) as u64,
        server_time: second,
        draw_commitment: draw_commitment.to_owned(),
        draw_beacon: draw_beacon.map(str::to_owned),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_head_is_the_same_within_a_second() {
        let figures = Figures {
            head: 40,
            waiting: 300,
            available: 12,
            epoch: 3,
            ..Figures::default()
        };
        let start: DateTime<Utc> = "2026-12-24T18:00:00Z".parse().unwrap();
        let at = |ms: i64| start + chrono::Duration::milliseconds(ms);
        let settings = Settings {
            admission_rate: 2,
            max_active: 1,
            session_ttl: std::time::Duration::from_secs(300),
            lease: std::time::Duration::from_secs(45),
            claims_per_unit: 2,
        };
        let first = head(
            &figures,
            &settings,
            DealState::Live,
            start,
            at(10_100),
            "c",
            None,
        );
        let later = head(
            &figures,
            &settings,
            DealState::Live,
            start,
            at(10_900),
            "c",
            None,
        );
        assert_eq!(first, later);
        assert_eq!(first.server_time, at(10_000));
        assert_eq!(first.stock_remaining, 12);
        let before = head(
            &figures,
            &settings,
            DealState::Upcoming,
            start,
            at(-1_500),
            "c",
            None,
        );
        assert_eq!(before.seconds_to_start, 2);
        // Not seen moving yet, with room to admit: the admission rate's pace, as the status
        // estimates it.
        assert_eq!(
            first.pace,
            Some(HeadPace {
                typical: 2_000,
                slowest: 2_000,
                fastest: 4_000
            })
        );
    }
}
