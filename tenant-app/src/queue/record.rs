//! The published admission log, kept in PostgreSQL. `admit.lua` stages each admission step in
//! Redis (`log`, one `epoch|entry` line per step); every replica moves staged entries into
//! PostgreSQL a few times a second ([`publish`]), and the fairness record is served from there
//! alone, so an entry once read is never taken back, whatever Redis forgets.
//!
//! An entry is published only if it is of the epoch PostgreSQL is in (a restore voided the
//! admissions of earlier ones, and already moved the line past what was published before it),
//! every place in it goes to the number the draw gives it, and its first place is above the
//! last place published: places grow down the log. A staged entry of the current epoch that
//! does not fit was made by a Redis that went back (it gave places again that the record
//! already gives, or drew the pre-queue anew): it stays unpublished and Redis is doubted, so
//! its figures are restored.

use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use sqlx::PgPool;

use super::{draw::Draw, fairness};
use crate::{db::bounded, error::Error};

/// One staged line, split: the epoch it was made in (absent in lines from before epochs were
/// staged) and the entry as published.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Staged<'a> {
    pub epoch: Option<i64>,
    pub entry: &'a str,
}

impl<'a> Staged<'a> {
    pub fn parse(line: &'a str) -> Self {
        match line.split_once('|') {
            Some((epoch, entry)) => Self {
                epoch: epoch.parse().ok(),
                entry,
            },
            None => Self {
                epoch: None,
                entry: line,
            },
        }
    }
}

/// Every `(place, number)` an entry admits, in order; `None` when it is not an entry.
pub fn admissions(entry: &str) -> Option<Vec<(u64, u64)>> {
    let mut words = entry.split(' ');
    words.next()?.parse::<i64>().ok()?;
    let admitted: Option<Vec<(u64, u64)>> = words
        .map(|admission| {
            let (place, number) = admission.split_once(':')?;
            Some((place.parse().ok()?, number.parse().ok()?))
        })
        .collect();
    admitted.filter(|a| !a.is_empty() && a.windows(2).all(|w| w[0].0 < w[1].0))
}

/// What to do with staged entries, given the last place already published.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Sorted<'a> {
    /// Entries to publish, in order, with their first and last places.
    pub publish: Vec<(&'a str, i64, i64)>,
    /// Entries of the current epoch that contradict the record: a place given again, or to
    /// another number than the draw's.
    pub contradicting: Vec<&'a str>,
    /// Entries of an earlier epoch not yet published: a restore voided their admissions.
    pub outdated: usize,
    /// The newest epoch among them.
    pub outdated_epoch: Option<i64>,
}

/// Sorts staged lines: those of `epoch` whose every place goes to `holder(place)` and whose
/// places are above `last_place` (and above each other) are published in order; the others
/// were published already (`known` says so), are of an earlier epoch, or contradict the record.
pub fn sort<'a>(
    staged: &'a [String],
    epoch: i64,
    mut last_place: i64,
    holder: impl Fn(u64) -> u64,
    known: impl Fn(i64, &str) -> bool,
) -> Sorted<'a> {
    let mut sorted = Sorted::default();
    for line in staged {
        let staged = Staged::parse(line);
        let admitted = admissions(staged.entry);
        let (first, last) = match &admitted {
            Some(a) => (a[0].0 as i64, a[a.len() - 1].0 as i64),
            None => (0, 0),
        };
        if admitted.is_some() && known(first, staged.entry) {
            continue;
        }
        if let Some(older) = staged.epoch.filter(|e| *e != epoch) {
            sorted.outdated += 1;
            sorted.outdated_epoch = sorted.outdated_epoch.max(Some(older));
            continue;
        }
        let drawn = admitted
            .as_ref()
            .is_some_and(|a| a.iter().all(|(place, number)| holder(*place) == *number));
        if drawn && first > last_place {
            sorted.publish.push((staged.entry, first, last));
            last_place = last;
        } else {
            sorted.contradicting.push(staged.entry);
        }
    }
    sorted
}

/// The fairness record's stored half.
#[derive(Debug, Clone, Default)]
pub struct Published {
    pub pre_queue: Option<u64>,
    pub log: Arc<Vec<String>>,
    /// The log's hash chain head (`fairness::chain` from the commitment).
    pub head: String,
    /// Shoppers the log admits.
    pub admitted: u64,
}

/// How stale a replica's copy of the record may be served: publication runs every tick.
const FRESH: Duration = Duration::from_millis(100);

/// The published record as this replica last read it. It only grows (entries are numbered
/// 1, 2, ... and never change), so a read asks PostgreSQL only for the entries after those
/// already here and extends the chain over them, at most once per [`FRESH`], however many
/// ask at once.
#[derive(Default)]
pub struct Cache {
    known: tokio::sync::Mutex<Option<(Published, Instant)>>,
}

impl Cache {
    /// The record as PostgreSQL had it a moment ago; the chain starts at `commitment`.
    pub async fn read(&self, db: &PgPool, commitment: &str) -> Result<Published, Error> {
        let mut guard = self.known.lock().await;
        if let Some((known, at)) = guard.as_ref() {
            if at.elapsed() < FRESH {
                return Ok(known.clone());
            }
        }
        let (known, at) = guard.get_or_insert_with(|| {
            let fresh = Published {
                head: commitment.to_owned(),
                ..Published::default()
            };
            (fresh, Instant::now())
        });
        let after = known.log.len() as i64;
        let (pre_queue, lines) = bounded("cannot read the admission log", async {
            let pre_queue: Option<i64> = match known.pre_queue {
                Some(size) => Some(size as i64),
                None => sqlx::query_scalar("SELECT pre_queue FROM draw_seed")
                    .fetch_optional(db)
                    .await?
                    .flatten(),
            };
            let lines: Vec<String> = sqlx::query_scalar(
                "SELECT line FROM admission_log WHERE entry > $1 ORDER BY entry",
            )
            .bind(after)
            .fetch_all(db)
            .await?;
            Ok((pre_queue, lines))
        })
        .await?;
        known.pre_queue = pre_queue.map(|n| n as u64);
        if !lines.is_empty() {
            // The chain from the last head over the new entries is the chain over them all.
            known.head = fairness::chain(&known.head, &lines);
            known.admitted += fairness::admitted(&lines);
            Arc::make_mut(&mut known.log).extend(lines);
        }
        *at = Instant::now();
        Ok(known.clone())
    }
}

/// Records the pre-queue's size, fixed at the start, and when it closed (`closed_at_ms`, the
/// deal's start), unless recorded before; returns the size recorded.
pub async fn record_pre_queue(db: &PgPool, size: u64, closed_at_ms: i64) -> Result<u64, Error> {
    let kept: Option<i64> = bounded(
        "cannot record the pre-queue's size",
        sqlx::query_scalar(
            "UPDATE draw_seed SET pre_queue = COALESCE(pre_queue, $1), \
                 closed_at_ms = COALESCE(closed_at_ms, $2) RETURNING pre_queue",
        )
        .bind(size as i64)
        .bind(closed_at_ms)
        .fetch_optional(db),
    )
    .await?
    .flatten();
    Ok(kept.map_or(size, |kept| kept as u64))
}

/// What a publication did with the staged lines.
#[derive(Debug, Default)]
pub struct Publication {
    /// Lines now in the record, already there, or judged: to drop from Redis.
    pub handled: bool,
    /// PostgreSQL's epoch: the one lines were published in.
    pub epoch: i64,
    pub published: usize,
    pub outdated: usize,
    /// The newest epoch of the lines left out as outdated.
    pub outdated_epoch: Option<i64>,
    /// Entries of the current epoch that contradict the record.
    pub contradicting: Vec<String>,
}

/// The publisher's draw, made again only when the pre-queue's size changes.
#[derive(Default)]
pub struct Drawn(Option<Draw>);

impl Drawn {
    fn of(&mut self, seed: &[u8], n: u64) -> &Draw {
        if self.0.as_ref().is_none_or(|draw| draw.len() != n) {
            self.0 = Some(Draw::new(seed, n));
        }
        self.0.as_ref().expect("just made")
    }
}

/// Publishes what of `staged` fits the record, in one transaction. Nothing is judged before
/// the pre-queue's size is in PostgreSQL (`drawn`, Redis's, is recorded when it is not).
pub async fn publish(
    db: &PgPool,
    staged: &[String],
    seed: &[u8],
    drawn: Option<u64>,
    draws: &mut Drawn,
) -> Result<Publication, Error> {
    bounded("cannot publish the admission log", async {
        let mut tx = db.begin().await?;
        // A publisher stuck holding the lock holds up the others for this long only.
        sqlx::query("SET LOCAL lock_timeout = '500ms'")
            .execute(&mut *tx)
            .await?;
        // One publisher at a time; readers go on. A restore waits for it (SHARE).
        sqlx::query("LOCK TABLE admission_log IN EXCLUSIVE MODE")
            .execute(&mut *tx)
            .await?;
        let epoch: i64 = sqlx::query_scalar("SELECT epoch FROM redis_epoch")
            .fetch_one(&mut *tx)
            .await?;
        let recorded: Option<i64> = sqlx::query_scalar("SELECT pre_queue FROM draw_seed")
            .fetch_optional(&mut *tx)
            .await?
            .flatten();
        let n = match (recorded, drawn) {
            (Some(n), _) => n as u64,
            (None, Some(n)) => {
                let kept: Option<i64> = sqlx::query_scalar(
                    "UPDATE draw_seed SET pre_queue = COALESCE(pre_queue, $1) RETURNING pre_queue",
                )
                .bind(n as i64)
                .fetch_optional(&mut *tx)
                .await?
                .flatten();
                kept.map_or(n, |kept| kept as u64)
            }
            (None, None) => return Ok(Publication::default()),
        };
        let (entries, last_place): (i64, i64) = sqlx::query_as(
            "SELECT entry, last_place FROM admission_log ORDER BY entry DESC LIMIT 1",
        )
        .fetch_optional(&mut *tx)
        .await?
        .unwrap_or((0, 0));
        // Lines at or below the last place: which of them are already in the record.
        let firsts: Vec<i64> = staged
            .iter()
            .filter_map(|line| admissions(Staged::parse(line).entry))
            .map(|admitted| admitted[0].0 as i64)
            .filter(|first| *first <= last_place)
            .collect();
        let known: Vec<(i64, String)> = if firsts.is_empty() {
            Vec::new()
        } else {
            sqlx::query_as(
                "SELECT first_place, line FROM admission_log WHERE first_place = ANY($1)",
            )
            .bind(&firsts)
            .fetch_all(&mut *tx)
            .await?
        };
        let draw = draws.of(seed, n);
        let holder = |place: u64| draw.number_at(place).unwrap_or(place);
        let sorted = sort(staged, epoch, last_place, holder, |first, entry| {
            known.iter().any(|(f, line)| *f == first && line == entry)
        });
        for (i, (entry, first, last)) in sorted.publish.iter().enumerate() {
            sqlx::query(
                "INSERT INTO admission_log (entry, first_place, last_place, line) \
                 VALUES ($1, $2, $3, $4)",
            )
            .bind(entries + 1 + i as i64)
            .bind(first)
            .bind(last)
            .bind(entry)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(Publication {
            handled: true,
            epoch,
            published: sorted.publish.len(),
            outdated: sorted.outdated,
            outdated_epoch: sorted.outdated_epoch,
            contradicting: sorted
                .contradicting
                .into_iter()
                .map(str::to_owned)
                .collect(),
        })
    })
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn staged(lines: &[&str]) -> Vec<String> {
        lines.iter().map(|l| l.to_string()).collect()
    }

    /// No pre-queue: every number is its own place.
    fn own(place: u64) -> u64 {
        place
    }

    #[test]
    fn a_staged_line_names_its_epoch_and_admissions() {
        assert_eq!(
            Staged::parse("3|1200 4:7 5:9"),
            Staged {
                epoch: Some(3),
                entry: "1200 4:7 5:9"
            }
        );
        assert_eq!(Staged::parse("1200 4:7").epoch, None);
        assert_eq!(admissions("1200 4:7 5:9"), Some(vec![(4, 7), (5, 9)]));
        assert_eq!(admissions("1200"), None);
        assert_eq!(admissions("1200 x:1"), None);
        assert_eq!(
            admissions("1200 5:1 4:2"),
            None,
            "places grow within an entry"
        );
    }

    #[test]
    fn entries_above_the_record_are_published_in_order() {
        let lines = staged(&["1|100 1:1 2:2", "1|200 3:3", "1|300 5:5"]);
        let sorted = sort(&lines, 1, 0, own, |_, _| false);
        assert_eq!(
            sorted.publish,
            vec![("100 1:1 2:2", 1, 2), ("200 3:3", 3, 3), ("300 5:5", 5, 5)]
        );
        assert!(sorted.contradicting.is_empty());
    }

    #[test]
    fn entries_published_before_are_left_alone() {
        let lines = staged(&["1|100 1:1 2:2", "1|200 3:3"]);
        let sorted = sort(&lines, 1, 2, own, |first, entry| {
            first == 1 && entry == "100 1:1 2:2"
        });
        assert_eq!(sorted.publish, vec![("200 3:3", 3, 3)]);
        assert!(sorted.contradicting.is_empty());
    }

    #[test]
    fn a_redis_that_went_back_cannot_rewrite_the_record() {
        // Places 1 to 5 are published; a Redis a second behind gives places 4 and 5 again,
        // then goes on to 6.
        let lines = staged(&["2|900 4:4 5:5", "2|1000 6:6"]);
        let sorted = sort(&lines, 2, 5, own, |_, _| false);
        assert_eq!(sorted.publish, vec![("1000 6:6", 6, 6)]);
        assert_eq!(sorted.contradicting, vec!["900 4:4 5:5"]);
    }

    #[test]
    fn a_place_given_to_another_number_than_the_draws_is_never_published() {
        // The draw gives place 1 to number 2 and place 2 to number 1; a Redis that drew the
        // pre-queue anew gives place 1 to number 1.
        let draw = |place: u64| match place {
            1 => 2,
            2 => 1,
            p => p,
        };
        let lines = staged(&["1|100 1:1", "1|200 1:2 2:1"]);
        let sorted = sort(&lines, 1, 0, draw, |_, _| false);
        assert_eq!(sorted.contradicting, vec!["100 1:1"]);
        assert_eq!(sorted.publish, vec![("200 1:2 2:1", 1, 2)]);
    }

    #[test]
    fn entries_of_an_earlier_epoch_are_dropped_unpublished() {
        // A restore moved the line past what was published when it ran; the earlier epoch's
        // admissions staged after that are void.
        let lines = staged(&["1|900 6:6", "2|1000 9:9"]);
        let sorted = sort(&lines, 2, 5, own, |_, _| false);
        assert_eq!(sorted.outdated, 1);
        assert_eq!(sorted.publish, vec![("1000 9:9", 9, 9)]);
        assert!(sorted.contradicting.is_empty());
    }

    #[test]
    fn an_unreadable_line_is_never_published() {
        let lines = staged(&["1|garbage"]);
        let sorted = sort(&lines, 1, 0, own, |_, _| false);
        assert!(sorted.publish.is_empty());
        assert_eq!(sorted.contradicting.len(), 1);
    }
}
