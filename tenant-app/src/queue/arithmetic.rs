//! Queue arithmetic: where a shopper stands, how long they will likely wait, whether the stock
//! will likely run out before their turn, and when to ask again. Pure functions of the figures
//! read from Redis in one round trip.

use std::time::Duration;

/// The deal-wide queue figures, as of one moment.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Figures {
    /// Places not yet reached: join numbers taken after the line's head (after the start).
    /// Shoppers who left are counted until the head passes them.
    pub waiting: u64,
    /// Shoppers admitted and not yet done.
    pub active: u64,
    /// Units neither sold nor reserved.
    pub available: i64,
    /// Units reserved by orders in progress.
    pub reserved: i64,
    /// Units sold.
    pub sold: i64,
    /// Shoppers in the pre-queue: numbers taken before the start.
    pub pre_queue: u64,
    /// False while Redis's stock figures are being restored (after it lost its data): the
    /// figures above then mean nothing, and in particular not "sold out".
    pub restored: bool,
    /// Redis's epoch (-1 while restoring): tickets of another epoch hold no place.
    pub epoch: i64,
    /// The last place the line has moved past (admitted or passed over).
    pub head: u64,
    /// The pre-queue's size once it is drawn (at the start).
    pub drawn: Option<u64>,
    /// When the pre-queue closed (Unix ms, the deal's clock), once it has.
    pub closed_at: Option<i64>,
    /// Idempotency keys ever given in this epoch: while it stands, no shopper gained an order.
    pub keys: u64,
    /// How fast the head has been moving lately.
    pub pace: Option<Pace>,
}

/// How fast the line's head moved over the last minute, in places per 1,000 seconds: the
/// whole stretch's average, and the slowest and fastest of its five-second spans. Passing over
/// shoppers who left counts, so the pace already reflects how many leave.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Pace {
    pub typical: u64,
    pub slowest: u64,
    pub fastest: u64,
}

/// The stretch over which the pace is observed, and the span of each of its parts.
pub const PACE_STRETCH: Duration = Duration::from_secs(60);
pub const PACE_SPAN: Duration = Duration::from_secs(5);

/// The pace from samples of `(time in ms, head)`, oldest first: `None` until two whole spans
/// were seen.
pub fn pace(samples: &[(i64, u64)]) -> Option<Pace> {
    let (&(last_ms, last_head), rest) = samples.split_last()?;
    let span = PACE_SPAN.as_millis() as i64;
    let stretch_start = last_ms - PACE_STRETCH.as_millis() as i64;
    let in_stretch: Vec<&(i64, u64)> = rest.iter().filter(|(t, _)| *t >= stretch_start).collect();
    let &&(first_ms, first_head) = in_stretch.first()?;
    // Span boundaries walk back from the newest sample; each span uses the sample nearest its
    // start.
    let mut rates = Vec::new();
    let mut end = (last_ms, last_head);
    loop {
        let want = end.0 - span;
        if want < first_ms {
            break;
        }
        let Some(&&start) = in_stretch.iter().rev().find(|(t, _)| *t <= want) else {
            break;
        };
        let elapsed = (end.0 - start.0).max(1) as u64;
        rates.push(end.1.saturating_sub(start.1) * 1_000_000 / elapsed);
        end = start;
    }
    if rates.len() < 2 {
        return None;
    }
    let elapsed = (last_ms - first_ms).max(1) as u64;
    Some(Pace {
        typical: last_head.saturating_sub(first_head) * 1_000_000 / elapsed,
        slowest: *rates.iter().min().expect("two rates"),
        fastest: *rates.iter().max().expect("two rates"),
    })
}

impl Figures {
    /// Shoppers in the queue: the pre-queue before the start, the places not yet reached after.
    pub fn in_line(&self) -> u64 {
        if self.drawn.is_some() {
            self.waiting
        } else {
            self.pre_queue
        }
    }

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
    /// Most live admissions at once.
    pub max_active: u32,
    /// The longest an admission lasts, however often it is renewed.
    pub session_ttl: Duration,
    /// How long an admission lasts without a sign of its shopper.
    pub lease: Duration,
    /// Admitted shoppers without a reservation allowed per unit available.
    pub claims_per_unit: u32,
}

/// The shortest lease: a page's live updates come at least this often.
pub const SHORTEST_LEASE: Duration = Duration::from_secs(5);

impl Settings {
    /// The lease as used: at least [`SHORTEST_LEASE`], at most the session TTL.
    pub fn lease_of(lease: Duration, session_ttl: Duration) -> Duration {
        lease.max(SHORTEST_LEASE).min(session_ttl)
    }
}

/// An estimated wait and the range it will likely fall in. `longest` is `None` when the line
/// stood still for a while lately: then no upper bound is honest.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Estimate {
    pub typical: Duration,
    pub shortest: Duration,
    pub longest: Option<Duration>,
}

fn seconds_at(places: u64, per_1000_seconds: u64) -> Option<Duration> {
    (per_1000_seconds > 0).then(|| Duration::from_millis(places * 1_000_000 / per_1000_seconds))
}

/// How long a shopper at `position` (1 is next) will likely wait to be admitted, or `None` when
/// no honest estimate can be given (the line has not been seen moving and cannot move now).
///
/// Once the line has been observed for a while, the estimate follows the head's pace, whose
/// slowest and fastest spans bound it. Before that, while there is room to admit, the line moves
/// at least at the admission rate (faster when it passes over shoppers who left): the rate gives
/// the longest wait, and the shortest is taken as half of it.
pub fn estimated_wait(position: u64, figures: &Figures, settings: &Settings) -> Option<Estimate> {
    if position == 0 {
        return Some(Estimate {
            typical: Duration::ZERO,
            shortest: Duration::ZERO,
            longest: Some(Duration::ZERO),
        });
    }
    if let Some(pace) = figures.pace.filter(|p| p.typical > 0) {
        return Some(Estimate {
            typical: seconds_at(position, pace.typical)?,
            shortest: seconds_at(position, pace.fastest.max(pace.typical))?,
            longest: seconds_at(position, pace.slowest.min(pace.typical)),
        });
    }
    let room = (settings.max_active as i64).min(figures.available) - figures.active as i64;
    if room <= 0 || settings.admission_rate == 0 {
        return None;
    }
    let longest = seconds_at(position, settings.admission_rate as u64 * 1000)?;
    Some(Estimate {
        typical: longest,
        shortest: longest / 2,
        longest: Some(longest),
    })
}

/// True when the shoppers ahead (waiting before this one, plus those admitted now) already
/// number at least the units left: each of them can buy one, so this shopper's turn will likely
/// come after the last unit is gone.
pub fn likely_sold_out(position: u64, figures: &Figures) -> bool {
    let ahead = position.saturating_sub(1) + figures.active;
    figures.available <= 0 || ahead as i64 >= figures.available
}

/// When a waiting shopper should ask again: often when their turn is near, rarely when it is
/// far or unknown, and never less than twice per liveness window (`at_most`), so the shopper is
/// seen in every window. Polls cost no Redis, so this only keeps the storefronts' load down.
pub fn poll_after(wait: Option<Duration>, at_most: Duration) -> Duration {
    let at_most = at_most.max(Duration::from_millis(500));
    match wait {
        Some(wait) => (wait / 4).clamp(Duration::from_millis(500), Duration::from_secs(5)),
        None => Duration::from_secs(3),
    }
    .min(at_most)
}

/// When a shopper in the pre-queue should ask again: at the latest a little after the start,
/// when the pre-queue is drawn into the line.
pub fn poll_after_pre_queue(until_start: Duration, at_most: Duration) -> Duration {
    (until_start + Duration::from_millis(200))
        .clamp(Duration::from_millis(250), Duration::from_secs(5))
        .min(at_most.max(Duration::from_millis(250)))
}

#[cfg(test)]
mod tests {
    use super::*;

    const SETTINGS: Settings = Settings {
        admission_rate: 50,
        max_active: 100,
        session_ttl: Duration::from_secs(300),
        lease: Duration::from_secs(45),
        claims_per_unit: 2,
    };

    #[test]
    fn a_lease_is_at_least_five_seconds_and_at_most_the_session() {
        let s = Duration::from_secs;
        assert_eq!(Settings::lease_of(s(45), s(300)), s(45));
        assert_eq!(Settings::lease_of(s(1), s(300)), s(5));
        assert_eq!(Settings::lease_of(s(45), s(30)), s(30));
    }
    const FIVE: Duration = Duration::from_secs(5);

    fn figures(active: u64, available: i64, pace: Option<Pace>) -> Figures {
        Figures {
            waiting: 1_000,
            active,
            available,
            restored: true,
            pace,
            ..Figures::default()
        }
    }

    #[test]
    fn unobserved_with_room_the_rate_bounds_the_wait() {
        let wait = estimated_wait(100, &figures(10, 500, None), &SETTINGS).unwrap();
        assert_eq!(wait.typical, Duration::from_secs(2));
        assert_eq!(wait.longest, Some(Duration::from_secs(2)));
        assert_eq!(wait.shortest, Duration::from_secs(1));
    }

    #[test]
    fn unobserved_and_full_the_wait_is_unknown() {
        assert_eq!(
            estimated_wait(10, &figures(100, 500, None), &SETTINGS),
            None
        );
        // 5 units, 5 admitted: the next admission waits for one of them to finish.
        assert_eq!(estimated_wait(3, &figures(5, 5, None), &SETTINGS), None);
    }

    #[test]
    fn observed_the_pace_gives_the_wait_and_its_range() {
        let pace = Pace {
            typical: 2_000,
            slowest: 1_000,
            fastest: 4_000,
        };
        let wait = estimated_wait(10, &figures(100, 500, Some(pace)), &SETTINGS).unwrap();
        assert_eq!(wait.typical, Duration::from_secs(5));
        assert_eq!(wait.shortest, Duration::from_millis(2_500));
        assert_eq!(wait.longest, Some(Duration::from_secs(10)));
        let stalled = Pace { slowest: 0, ..pace };
        let wait = estimated_wait(10, &figures(100, 500, Some(stalled)), &SETTINGS).unwrap();
        assert_eq!(
            wait.longest, None,
            "a line that stood still has no honest upper bound"
        );
    }

    #[test]
    fn the_pace_is_read_from_the_heads_samples() {
        // The head moved 10 places a second for 10 s, then 30 a second for 10 s.
        let mut samples: Vec<(i64, u64)> = (0..=10).map(|s| (s * 1_000, s as u64 * 10)).collect();
        samples.extend((11..=20).map(|s| (s * 1_000, 100 + (s as u64 - 10) * 30)));
        let pace = pace(&samples).unwrap();
        assert_eq!(pace.typical, 20_000);
        assert_eq!(pace.slowest, 10_000);
        assert_eq!(pace.fastest, 30_000);
        assert_eq!(super::pace(&samples[..7]), None, "under two whole spans");
        assert_eq!(super::pace(&[]), None);
    }

    #[test]
    fn samples_older_than_the_stretch_are_left_out() {
        let mut samples = vec![(0, 0)];
        samples.extend((100..=120).map(|s| (s * 1_000, 5_000 + (s as u64 - 100) * 10)));
        assert_eq!(pace(&samples).unwrap().typical, 10_000);
    }

    #[test]
    fn those_behind_as_many_shoppers_as_units_left_will_likely_miss_out() {
        // 10 units; 4 admitted; positions 1..=6 have fewer than 10 ahead.
        let f = figures(4, 10, None);
        assert!(!likely_sold_out(6, &f));
        assert!(likely_sold_out(7, &f));
        assert!(likely_sold_out(1, &figures(0, 0, None)));
    }

    #[test]
    fn polls_are_frequent_near_the_front_and_rare_far_back() {
        assert_eq!(
            poll_after(Some(Duration::from_millis(100)), FIVE),
            Duration::from_millis(500)
        );
        assert_eq!(
            poll_after(Some(Duration::from_secs(8)), FIVE),
            Duration::from_secs(2)
        );
        assert_eq!(
            poll_after(Some(Duration::from_secs(600)), FIVE),
            Duration::from_secs(5)
        );
        assert_eq!(poll_after(None, FIVE), Duration::from_secs(3));
    }

    #[test]
    fn polls_come_at_least_twice_a_liveness_window() {
        let gap = Duration::from_secs(2);
        assert_eq!(poll_after(Some(Duration::from_secs(600)), gap), gap);
        assert_eq!(poll_after(None, gap), gap);
        assert_eq!(poll_after_pre_queue(Duration::from_secs(60), gap), gap);
    }

    #[test]
    fn the_pre_queue_polls_again_just_after_the_start() {
        assert_eq!(
            poll_after_pre_queue(Duration::from_secs(2), FIVE),
            Duration::from_millis(2_200)
        );
        assert_eq!(
            poll_after_pre_queue(Duration::ZERO, FIVE),
            Duration::from_millis(250)
        );
        assert_eq!(
            poll_after_pre_queue(Duration::from_secs(60), FIVE),
            Duration::from_secs(5)
        );
    }

    #[test]
    fn sold_out_means_nothing_left_and_nothing_held() {
        let mut f = figures(0, 0, None);
        assert!(f.sold_out());
        f.reserved = 2;
        assert!(!f.sold_out());
    }
}
