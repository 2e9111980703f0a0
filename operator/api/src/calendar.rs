//! The capacity calendar: what the platform can host per hour (storefront replicas at their peak),
//! what deals have booked, and whether another fits. Pure: the portal, the operator and
//! `kubectl timedeal calendar` all count the same way.
//!
//! A deal books its peak replicas from the start of its warm-up to its end. An hour's load is the
//! most booked at any moment within it; an hour is free below three quarters of the capacity,
//! tight from there, full when nothing more fits.

use chrono::{DateTime, Duration, NaiveDate, TimeZone, Utc};
use serde::Serialize;

use crate::TimeDeal;

/// The platform's capacity in storefront replicas at once: given as replicas, or as CPU divided
/// by the CPU each storefront replica requests by default. `None`: no calendar. An error says
/// which setting is wrong.
pub fn capacity(
    replicas: i32,
    cpu: Option<&str>,
    storefront_cpu_request: &str,
) -> Result<Option<i32>, String> {
    if replicas > 0 {
        return Ok(Some(replicas));
    }
    let Some(cpu) = cpu.map(str::trim).filter(|c| !c.is_empty()) else {
        return Ok(None);
    };
    let total = crate::quantity::Quantity::parse(cpu)
        .map_err(|e| format!("the calendar's CPU: {e}"))?
        .value();
    let each = crate::quantity::Quantity::parse(storefront_cpu_request)
        .map_err(|e| format!("the storefront's CPU request: {e}"))?
        .value();
    if each <= 0.0 {
        return Err(
            "the storefront's CPU request must be above zero to divide the calendar's CPU by it"
                .into(),
        );
    }
    let replicas = (total / each).floor() as i64;
    if replicas < 1 {
        return Err(format!(
            "the calendar's CPU ({cpu}) is less than one storefront replica's request ({storefront_cpu_request})"
        ));
    }
    Ok(Some(replicas.min(i64::from(i32::MAX)) as i32))
}

/// The table every deal's booking is kept in, in the platform PostgreSQL: the operator writes
/// those of the deals it reconciles, the portal those it files, and the portal's calendar reads
/// them all (it may not list other companies' TimeDeals). Each side creates it when missing.
pub const BOOKINGS_DDL: [&str; 3] = [
    "CREATE SCHEMA IF NOT EXISTS timedeal_platform",
    "CREATE TABLE IF NOT EXISTS timedeal_platform.bookings (\
     uid text PRIMARY KEY, namespace text NOT NULL, name text NOT NULL, \
     starts_at timestamptz NOT NULL, ends_at timestamptz NOT NULL, replicas integer NOT NULL, \
     approved boolean NOT NULL, updated_at timestamptz NOT NULL DEFAULT now())",
    // When the request was first booked; an upsert never moves it (see `PENDING_HOLD`).
    "ALTER TABLE timedeal_platform.bookings \
     ADD COLUMN IF NOT EXISTS requested_at timestamptz NOT NULL DEFAULT now()",
];

/// How long a request no admin has approved holds its hours in the calendar the portal shows and
/// checks: after that it no longer keeps other companies' requests out (approving it still
/// checks the calendar).
pub const PENDING_HOLD: chrono::Duration = chrono::Duration::days(3);

/// One deal's claim on the platform.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Booking {
    /// The deal's uid (or any stable key), so a deal never collides with itself.
    pub key: String,
    pub from: DateTime<Utc>,
    pub until: DateTime<Utc>,
    pub replicas: i32,
    pub approved: bool,
}

impl Booking {
    /// What a deal books: its warm-up to its end, at its peak replicas.
    pub fn of(deal: &TimeDeal) -> Self {
        let spec = &deal.spec;
        Self {
            key: deal.metadata.uid.clone().unwrap_or_default(),
            from: spec.schedule.start - spec.schedule.warm_up.chrono(),
            until: spec.schedule.end,
            replicas: spec.capacity.peak_replicas,
            approved: spec.approved,
        }
    }

    fn overlaps(&self, from: DateTime<Utc>, until: DateTime<Utc>) -> bool {
        self.from < until && from < self.until
    }
}

/// How busy an hour is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Load {
    Free,
    Tight,
    Full,
}

/// One hour of a day.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Hour {
    pub start: DateTime<Utc>,
    /// Replicas booked at the busiest moment of the hour.
    pub booked: i32,
    pub load: Load,
}

/// The most replicas booked at once within [from, until).
pub fn booked(bookings: &[Booking], from: DateTime<Utc>, until: DateTime<Utc>) -> i32 {
    // The load only rises at a booking's start: the maximum is at `from` or at one of those.
    let mut moments: Vec<DateTime<Utc>> = bookings
        .iter()
        .map(|b| b.from)
        .filter(|t| *t > from && *t < until)
        .collect();
    moments.push(from);
    moments
        .into_iter()
        .map(|t| {
            bookings
                .iter()
                .filter(|b| b.from <= t && t < b.until)
                .map(|b| b.replicas)
                .sum()
        })
        .max()
        .unwrap_or(0)
}

fn load(booked: i32, capacity: i32) -> Load {
    if booked >= capacity {
        Load::Full
    } else if i64::from(booked) * 4 >= i64::from(capacity) * 3 {
        Load::Tight
    } else {
        Load::Free
    }
}

/// The 24 hours (UTC) of a day.
pub fn day(date: NaiveDate, bookings: &[Booking], capacity: i32) -> Vec<Hour> {
    let midnight = Utc.from_utc_datetime(&date.and_hms_opt(0, 0, 0).expect("midnight exists"));
    (0..24)
        .map(|h| {
            let start = midnight + Duration::hours(h);
            let booked = booked(bookings, start, start + Duration::hours(1));
            Hour {
                start,
                booked,
                load: load(booked, capacity),
            }
        })
        .collect()
}

/// Why a booking does not fit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Overcommit {
    /// The first moment it would not fit.
    pub at: DateTime<Utc>,
    /// Booked by others then.
    pub booked: i32,
    pub capacity: i32,
}

/// Whether `candidate` fits beside `others` (itself left out by key).
pub fn fits(candidate: &Booking, others: &[Booking], capacity: i32) -> Result<(), Overcommit> {
    let others: Vec<Booking> = others
        .iter()
        .filter(|b| b.key != candidate.key && b.overlaps(candidate.from, candidate.until))
        .cloned()
        .collect();
    let mut moments: Vec<DateTime<Utc>> = others
        .iter()
        .map(|b| b.from)
        .filter(|t| *t > candidate.from && *t < candidate.until)
        .collect();
    moments.push(candidate.from);
    moments.sort();
    for at in moments {
        let booked: i32 = others
            .iter()
            .filter(|b| b.from <= at && at < b.until)
            .map(|b| b.replicas)
            .sum();
        if booked + candidate.replicas > capacity {
            return Err(Overcommit {
                at,
                booked,
                capacity,
            });
        }
    }
    Ok(())
}

/// The nearest moves of `candidate` by whole hours (within a week either way, never starting
/// before `earliest`) at which it fits: the `from` of each, nearest first, at most `count`.
pub fn nearest_free(
    candidate: &Booking,
    others: &[Booking],
    capacity: i32,
    earliest: DateTime<Utc>,
    count: usize,
) -> Vec<DateTime<Utc>> {
    let length = candidate.until - candidate.from;
    let mut found = Vec::new();
    for step in 1..=(7 * 24) {
        for shift in [Duration::hours(step), -Duration::hours(step)] {
            let from = candidate.from + shift;
            let moved = Booking {
                from,
                until: from + length,
                ..candidate.clone()
            };
            if from >= earliest && fits(&moved, others, capacity).is_ok() {
                found.push(from);
            }
        }
        if found.len() >= count {
            break;
        }
    }
    found.truncate(count);
    found
}

/// The nearest starts (as the deal's `schedule.start`, not its warm-up) at which a deal fits, as
/// people read them: "2026-12-01 05:00 UTC, 2026-12-01 01:00 UTC", or "none within a week".
pub fn free_starts(
    deal: &TimeDeal,
    others: &[Booking],
    capacity: i32,
    earliest_start: DateTime<Utc>,
) -> String {
    let warm_up = deal.spec.schedule.warm_up.chrono();
    let free: Vec<String> = nearest_free(
        &Booking::of(deal),
        others,
        capacity,
        earliest_start - warm_up,
        3,
    )
    .into_iter()
    .map(|from| (from + warm_up).format("%Y-%m-%d %H:%M UTC").to_string())
    .collect();
    if free.is_empty() {
        "none within a week".to_owned()
    } else {
        free.join(", ")
    }
}

/// Records a booking (the same row from the operator and the portal).
pub const UPSERT_BOOKING: &str = "INSERT INTO timedeal_platform.bookings \
     (uid, namespace, name, starts_at, ends_at, replicas, approved) \
     VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (uid) DO UPDATE SET \
     starts_at = EXCLUDED.starts_at, ends_at = EXCLUDED.ends_at, \
     replicas = EXCLUDED.replicas, approved = EXCLUDED.approved, updated_at = now()";

#[cfg(test)]
mod tests {
    use super::*;

    fn at(hour: i64) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 12, 1, 0, 0, 0).unwrap() + Duration::hours(hour)
    }

    fn booking(key: &str, from: i64, until: i64, replicas: i32) -> Booking {
        Booking {
            key: key.into(),
            from: at(from),
            until: at(until),
            replicas,
            approved: true,
        }
    }

    #[test]
    fn capacity_is_replicas_or_cpu_over_the_storefront_request() {
        assert_eq!(capacity(40, Some("100"), "250m"), Ok(Some(40)));
        assert_eq!(capacity(0, Some("10"), "250m"), Ok(Some(40)));
        assert_eq!(capacity(0, Some("10500m"), "1"), Ok(Some(10)));
        assert_eq!(capacity(0, None, "250m"), Ok(None));
        assert_eq!(capacity(0, Some(""), "250m"), Ok(None));
        assert!(capacity(0, Some("lots"), "250m")
            .unwrap_err()
            .contains("the calendar's CPU"));
        assert!(capacity(0, Some("100m"), "250m")
            .unwrap_err()
            .contains("less than one"));
    }

    #[test]
    fn an_hour_counts_the_busiest_moment_within_it() {
        let bookings = [booking("a", 10, 12, 30), booking("b", 11, 13, 50)];
        let date = at(0).date_naive();
        let hours = day(date, &bookings, 100);
        assert_eq!(hours.len(), 24);
        assert_eq!(hours[9].booked, 0);
        assert_eq!((hours[10].booked, hours[10].load), (30, Load::Free));
        assert_eq!((hours[11].booked, hours[11].load), (80, Load::Tight));
        assert_eq!((hours[12].booked, hours[12].load), (50, Load::Free));
        let hours = day(date, &bookings, 80);
        assert_eq!(hours[11].load, Load::Full);
    }

    #[test]
    fn a_booking_fits_until_the_capacity_and_not_beyond() {
        let others = [booking("a", 10, 12, 60)];
        assert!(fits(&booking("new", 11, 12, 40), &others, 100).is_ok());
        let refused = fits(&booking("new", 9, 12, 41), &others, 100).unwrap_err();
        assert_eq!(refused.at, at(10));
        assert_eq!(refused.booked, 60);
        // A deal never collides with itself (re-checked on approval).
        assert!(fits(&booking("a", 10, 12, 60), &others, 100).is_ok());
        // Back to back is not overlapping.
        assert!(fits(&booking("new", 12, 13, 100), &others, 100).is_ok());
    }

    #[test]
    fn the_nearest_free_starts_skip_the_busy_hours_and_the_past() {
        let others = [booking("a", 10, 14, 80)];
        let candidate = booking("new", 11, 12, 30);
        let free = nearest_free(&candidate, &others, 100, at(0), 3);
        // Two hours earlier, then three later or earlier: later first on a tie.
        assert_eq!(free, [at(9), at(14), at(8)]);
        let not_before_noon = nearest_free(&candidate, &others, 100, at(12), 2);
        assert_eq!(not_before_noon, [at(14), at(15)]);
    }
}
