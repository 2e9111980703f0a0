//! Queue arithmetic: where a shopper stands, how long they will likely wait, whether the stock
//! will likely run out before their turn, and when to ask again. Pure functions of the figures
//! read from Redis in one round trip.

use std::time::Duration;

/// The deal-wide queue figures, as of one moment.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Figures {
    /// Shoppers waiting in line (after the start).
    pub waiting: u64,
    /// Shoppers admitted and not yet done.
    pub active: u64,
    /// Units neither sold nor reserved.
    pub available: i64,
    /// Units reserved by orders in progress.
    pub reserved: i64,
    /// Units sold.
    pub sold: i64,
    /// Admissions during the last `window`.
    pub recent_admissions: u64,
    /// Shoppers in the pre-queue (before the start).
    pub pre_queue: u64,
    /// False while Redis's stock figures are being restored (after it lost its data): the
    /// figures above then mean nothing, and in particular not "sold out".
    pub restored: bool,
}

/// The length of the window over which recent admissions are counted.
pub const WINDOW: Duration = Duration::from_secs(20);

impl Figures {
    /// Nothing left to sell or to come back: the queue is closed.
    pub fn sold_out(&self) -> bool {
        self.restored && self.available <= 0 && self.reserved <= 0
    }
}

/// The queue's settings from the spec.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Settings {
    /// Shoppers admitted per second.
    pub admission_rate: u32,
    /// Most shoppers admitted and not yet done at once.
    pub max_active: u32,
}

/// How long a shopper at `position` (1 is next) will likely wait to be admitted, or `None`
/// when no honest estimate can be given (nobody is leaving and nobody has been admitted lately).
///
/// While there is room to admit, the line moves at the admission rate. When it is full, it moves
/// only as admitted shoppers finish, so the recent admission rate is the better guide.
pub fn estimated_wait(position: u64, figures: &Figures, settings: &Settings) -> Option<Duration> {
    if position == 0 {
        return Some(Duration::ZERO);
    }
    let room = (settings.max_active as i64).min(figures.available) - figures.active as i64;
    let per_second = if room > 0 {
        settings.admission_rate as f64
    } else {
        let observed = figures.recent_admissions as f64 / WINDOW.as_secs_f64();
        observed.min(settings.admission_rate as f64)
    };
    if per_second <= 0.0 {
        return None;
    }
    let seconds = position as f64 / per_second;
    Some(Duration::from_millis((seconds * 1000.0).ceil() as u64))
}

/// True when the shoppers ahead (waiting before this one, plus those admitted now) already
/// number at least the units left: each of them can buy one, so this shopper's turn will likely
/// come after the last unit is gone.
pub fn likely_sold_out(position: u64, figures: &Figures) -> bool {
    let ahead = position.saturating_sub(1) + figures.active;
    figures.available <= 0 || ahead as i64 >= figures.available
}

/// When a waiting shopper should ask again: often when their turn is near, rarely when it is
/// far or unknown, so polling costs little while the answer stays fresh.
pub fn poll_after(wait: Option<Duration>) -> Duration {
    match wait {
        Some(wait) => (wait / 4).clamp(Duration::from_millis(500), Duration::from_secs(5)),
        None => Duration::from_secs(3),
    }
}

/// When a shopper in the pre-queue should ask again: at the latest a little after the start,
/// when the pre-queue is drawn into the line.
pub fn poll_after_pre_queue(until_start: Duration) -> Duration {
    (until_start + Duration::from_millis(200))
        .clamp(Duration::from_millis(250), Duration::from_secs(5))
}

#[cfg(test)]
mod tests {
    use super::*;

    const SETTINGS: Settings = Settings {
        admission_rate: 50,
        max_active: 100,
    };

    fn figures(active: u64, available: i64, recent: u64) -> Figures {
        Figures {
            waiting: 1_000,
            active,
            available,
            reserved: 0,
            sold: 0,
            recent_admissions: recent,
            pre_queue: 0,
            restored: true,
        }
    }

    #[test]
    fn with_room_the_line_moves_at_the_admission_rate() {
        let wait = estimated_wait(100, &figures(10, 500, 0), &SETTINGS);
        assert_eq!(wait, Some(Duration::from_secs(2)));
        assert_eq!(
            estimated_wait(1, &figures(10, 500, 0), &SETTINGS),
            Some(Duration::from_millis(20))
        );
    }

    #[test]
    fn when_full_the_line_moves_at_the_observed_rate() {
        // 100 admitted = max_active: no room; 40 admissions in 20 s = 2 per second.
        let wait = estimated_wait(10, &figures(100, 500, 40), &SETTINGS);
        assert_eq!(wait, Some(Duration::from_secs(5)));
    }

    #[test]
    fn when_full_and_nobody_moved_lately_the_wait_is_unknown() {
        assert_eq!(estimated_wait(10, &figures(100, 500, 0), &SETTINGS), None);
    }

    #[test]
    fn little_stock_left_also_leaves_no_room() {
        // 5 units, 5 admitted: the next admission waits for one of them to finish.
        assert_eq!(estimated_wait(3, &figures(5, 5, 0), &SETTINGS), None);
    }

    #[test]
    fn the_observed_rate_never_exceeds_the_admission_rate() {
        let wait = estimated_wait(50, &figures(100, 500, 100_000), &SETTINGS);
        assert_eq!(wait, Some(Duration::from_secs(1)));
    }

    #[test]
    fn those_behind_as_many_shoppers_as_units_left_will_likely_miss_out() {
        // 10 units; 4 admitted; positions 1..=6 have fewer than 10 ahead.
        let f = figures(4, 10, 0);
        assert!(!likely_sold_out(6, &f));
        assert!(likely_sold_out(7, &f));
        assert!(likely_sold_out(1, &figures(0, 0, 0)));
    }

    #[test]
    fn polls_are_frequent_near_the_front_and_rare_far_back() {
        assert_eq!(
            poll_after(Some(Duration::from_millis(100))),
            Duration::from_millis(500)
        );
        assert_eq!(
            poll_after(Some(Duration::from_secs(8))),
            Duration::from_secs(2)
        );
        assert_eq!(
            poll_after(Some(Duration::from_secs(600))),
            Duration::from_secs(5)
        );
        assert_eq!(poll_after(None), Duration::from_secs(3));
    }

    #[test]
    fn the_pre_queue_polls_again_just_after_the_start() {
        assert_eq!(
            poll_after_pre_queue(Duration::from_secs(2)),
            Duration::from_millis(2_200)
        );
        assert_eq!(
            poll_after_pre_queue(Duration::ZERO),
            Duration::from_millis(250)
        );
        assert_eq!(
            poll_after_pre_queue(Duration::from_secs(60)),
            Duration::from_secs(5)
        );
    }

    #[test]
    fn sold_out_means_nothing_left_and_nothing_held() {
        let mut f = figures(0, 0, 0);
        assert!(f.sold_out());
        f.reserved = 2;
        assert!(!f.sold_out());
    }
}
