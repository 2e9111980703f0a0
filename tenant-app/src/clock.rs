//! The deal's clock. Every replica takes the time from Redis (`TIME`) and keeps its offset from
//! the local clock, so replicas whose clocks drift apart still agree on when the deal opens,
//! how fast the line moves, when a reservation lapses and when the deal ends. Redis is the one
//! place all of them already share; PostgreSQL stamps orders with its own clock.

use std::sync::atomic::{AtomicI64, Ordering};

use chrono::{DateTime, Utc};
use redis::aio::ConnectionManager;

use crate::error::Error;

#[derive(Default)]
pub struct Clock {
    offset_ms: AtomicI64,
}

impl Clock {
    /// Now, by Redis's clock (the local clock until the first reading).
    pub fn now(&self) -> DateTime<Utc> {
        Utc::now() + chrono::Duration::milliseconds(self.offset_ms.load(Ordering::Relaxed))
    }

    /// Reads Redis's clock and takes the offset. A failed reading keeps the previous offset.
    pub async fn sync(&self, redis: &ConnectionManager) -> Result<(), Error> {
        let before = Utc::now().timestamp_micros();
        let (secs, micros): (i64, i64) = redis::cmd("TIME").query_async(&mut redis.clone()).await?;
        let after = Utc::now().timestamp_micros();
        let offset = offset_ms(before, after, secs * 1_000_000 + micros);
        self.offset_ms.store(offset, Ordering::Relaxed);
        Ok(())
    }
}

/// The offset of a reading taken between two local instants (microseconds): Redis's time is
/// taken to be read half-way through the round trip.
pub fn offset_ms(local_before_us: i64, local_after_us: i64, redis_us: i64) -> i64 {
    let local_mid = local_before_us + (local_after_us - local_before_us) / 2;
    (redis_us - local_mid).div_euclid(1000)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_offset_is_taken_at_the_middle_of_the_round_trip() {
        assert_eq!(offset_ms(1_000_000, 1_002_000, 1_001_000), 0);
        // The local clock is 5 s ahead of Redis's.
        assert_eq!(offset_ms(6_000_000, 6_000_400, 1_000_200), -5_000);
        // Behind by 2.5 s.
        assert_eq!(offset_ms(0, 1_000, 2_500_500), 2_500);
    }
}
