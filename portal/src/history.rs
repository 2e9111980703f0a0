//! A sale's history: the readings of its figures the operator keeps in the platform PostgreSQL
//! (`timedeal_platform.figure_samples`, see `timedeal_api::stats`), for the deal page's chart.

use sqlx::{PgPool, Row};
use timedeal_api::stats::Sample;

use crate::error::PortalError;

/// At most this many points are drawn: a long sale is thinned evenly.
pub const MOST_POINTS: usize = 400;

/// The deal's readings in time order, thinned to at most [`MOST_POINTS`].
pub async fn of(pool: &PgPool, uid: &str) -> Result<Vec<Sample>, PortalError> {
    let rows = sqlx::query(
        "SELECT at, sold, remaining, waiting, confirmed FROM timedeal_platform.figure_samples \
         WHERE uid = $1 ORDER BY at",
    )
    .bind(uid)
    .fetch_all(pool)
    .await
    .map_err(PortalError::Database)?;
    let all: Vec<Sample> = rows
        .into_iter()
        .map(|row| Sample {
            at: row.get("at"),
            sold: row.get("sold"),
            remaining: row.get("remaining"),
            waiting: row.get("waiting"),
            confirmed: row.get("confirmed"),
        })
        .collect();
    Ok(thin(all, MOST_POINTS))
}

/// Every n-th sample, and always the last, so at most `most` remain.
pub fn thin(samples: Vec<Sample>, most: usize) -> Vec<Sample> {
    if samples.len() <= most || most < 2 {
        return samples;
    }
    let step = samples.len().div_ceil(most - 1);
    let last = samples.len() - 1;
    samples
        .into_iter()
        .enumerate()
        .filter(|(i, _)| i % step == 0 || *i == last)
        .map(|(_, s)| s)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(minute: i64) -> Sample {
        Sample {
            at: chrono::DateTime::UNIX_EPOCH + chrono::Duration::minutes(minute),
            sold: minute,
            remaining: 1000 - minute,
            waiting: 0,
            confirmed: minute,
        }
    }

    #[test]
    fn a_long_history_is_thinned_keeping_its_ends() {
        let thinned = thin((0..1000).map(sample).collect(), 100);
        assert!(thinned.len() <= 100, "{}", thinned.len());
        assert_eq!(thinned.first().unwrap().sold, 0);
        assert_eq!(thinned.last().unwrap().sold, 999);
        assert_eq!(thin((0..10).map(sample).collect(), 100).len(), 10);
    }
}
