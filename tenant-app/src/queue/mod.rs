//! The fair queue. Redis holds only deal-wide figures: a counter of join numbers, the line's
//! head, the admitted shoppers, and a liveness bitmap per window. Each waiting shopper's place
//! lives in their signed [`ticket`].
//!
//! Before the start, join numbers form the pre-queue; at the start its size is fixed
//! (`open.lua`) and its places are drawn by the committed seed ([`draw`]). After the start,
//! numbers are their own places, first come, first served (`join.lua`). A few times a second each
//! replica reads the figures (`snapshot.lua`), flushes its liveness marks ([`liveness`]), and
//! runs one admission step (`admit.lua`), which moves the head over the next places, admitting
//! those still there at the deal's rate, within `maxActive` and the stock left, and logging each
//! admission in order. Everything a shopper is told comes from [`view`], a pure function of
//! where they stand and the figures.

pub mod arithmetic;
pub mod challenge;
pub mod draw;
pub mod fairness;
pub mod liveness;
pub mod record;
pub mod ticket;

use std::{sync::Arc, time::Duration};

use chrono::{DateTime, Utc};
use redis::aio::ConnectionManager;
use serde::Serialize;

pub use arithmetic::{Figures, Settings};
pub use draw::Draw;
pub use ticket::Ticket;

use crate::{deal::DealState, error::Error, scripts::Scripts};

/// Where one shopper stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Place {
    /// Not in the queue.
    Outside,
    /// In the pre-queue; their place is drawn at the start.
    PreQueue,
    /// In line at `place`, `position` 1 being next.
    Waiting { position: u64, place: u64 },
    /// Admitted: may order until `expires_ms` with the admission of join number `number`.
    Admitted { number: u64, expires_ms: i64 },
}

/// Where a ticket stands by the figures alone, before any Redis call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Standing {
    /// No ticket, or one of an earlier epoch: it holds no place.
    NoPlace,
    PreQueue,
    Waiting {
        position: u64,
        place: u64,
    },
    /// The head has reached the ticket's place: it was admitted or passed over, which only the
    /// admitted set tells.
    Reached,
}

/// Where `ticket` stands given the figures and the pre-queue's draw (present once drawn).
pub fn standing(ticket: Option<&Ticket>, figures: &Figures, draw: Option<&Draw>) -> Standing {
    let Some(ticket) = ticket.filter(|t| t.epoch == figures.epoch) else {
        return Standing::NoPlace;
    };
    let (Some(drawn), Some(draw)) = (figures.drawn, draw) else {
        return Standing::PreQueue;
    };
    let place = if ticket.number <= drawn {
        draw.place_of(ticket.number).unwrap_or(ticket.number)
    } else {
        ticket.number
    };
    if place <= figures.head {
        Standing::Reached
    } else {
        Standing::Waiting {
            position: place - figures.head,
            place,
        }
    }
}

/// The outcome of asking to join.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Joined {
    /// A new join number, in `epoch`; the shopper held or owned `owned` units.
    Placed { number: u64, owned: u32, epoch: i64 },
    /// The shopper already owns (or holds) their limit.
    AtLimit,
    /// The stock figures are being restored after Redis lost them; nobody new is placed.
    Restoring,
}

#[derive(Clone)]
pub struct Queue {
    redis: ConnectionManager,
    scripts: Arc<Scripts>,
    prefix: String,
}

/// What one admission step did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Step {
    pub admitted: u64,
    pub head: u64,
    pub active: u64,
    pub sold_out: bool,
    /// The head had moved since the caller saw it: nothing was done.
    pub stale: bool,
}

/// What an admission step needs besides the clock.
pub struct StepInput<'a> {
    pub settings: Settings,
    pub session_ttl: Duration,
    pub window: Duration,
    pub admitting: bool,
    pub head_seen: u64,
    /// Join numbers at places `head_seen + 1, ...` while in the pre-queue.
    pub numbers: &'a [u64],
}

impl Queue {
    pub fn new(redis: ConnectionManager, scripts: Arc<Scripts>, prefix: String) -> Self {
        Self {
            redis,
            scripts,
            prefix,
        }
    }

    /// Takes a join number for the shopper.
    pub async fn join(&self, shopper: &str, limit: u32) -> Result<Joined, Error> {
        let (state, number, owned, epoch): (String, u64, u32, i64) = self
            .scripts
            .join
            .key(&self.prefix)
            .arg(shopper)
            .arg(limit)
            .invoke_async(&mut self.redis.clone())
            .await?;
        Ok(match state.as_str() {
            "over_limit" => Joined::AtLimit,
            "unavailable" => Joined::Restoring,
            _ => Joined::Placed {
                number,
                owned,
                epoch,
            },
        })
    }

    /// The deal-wide figures (without the pace, which the caller observes over time).
    pub async fn snapshot(&self, now_ms: i64) -> Result<Figures, Error> {
        let n: Vec<i64> = self
            .scripts
            .snapshot
            .key(&self.prefix)
            .arg(now_ms)
            .invoke_async(&mut self.redis.clone())
            .await?;
        let [epoch, total, sold, reserved, active, taken, head, drawn] = n[..] else {
            return Err(Error::Redis(format!(
                "snapshot.lua answered {} numbers, expected 8",
                n.len()
            )));
        };
        let (taken, head) = (taken.max(0) as u64, head.max(0) as u64);
        Ok(Figures {
            waiting: if drawn >= 0 {
                taken.saturating_sub(head)
            } else {
                0
            },
            active: active.max(0) as u64,
            available: total - sold - reserved,
            reserved,
            sold,
            pre_queue: if drawn >= 0 { drawn as u64 } else { taken },
            restored: epoch >= 0,
            epoch,
            head,
            drawn: (drawn >= 0).then_some(drawn as u64),
            pace: None,
        })
    }

    /// Whether join number `number` is admitted now (its expiry), and the units `shopper` holds
    /// or owns: asked only once the head has reached the shopper's place, or without a ticket.
    pub async fn admission(
        &self,
        number: Option<u64>,
        shopper: &str,
    ) -> Result<(Option<i64>, u32), Error> {
        let p = &self.prefix;
        let mut pipe = redis::pipe();
        pipe.hget(format!("{p}deal"), format!("u:{shopper}"));
        if let Some(number) = number {
            pipe.zscore(format!("{p}active"), number);
        }
        let (owned, expiry): (Option<u32>, Option<Option<f64>>) = if number.is_some() {
            let (owned, expiry) = pipe.query_async(&mut self.redis.clone()).await?;
            (owned, Some(expiry))
        } else {
            let (owned,): (Option<u32>,) = pipe.query_async(&mut self.redis.clone()).await?;
            (owned, None)
        };
        Ok((expiry.flatten().map(|e| e as i64), owned.unwrap_or(0)))
    }

    /// Fixes the pre-queue's size at the start; `None` when that already happened.
    pub async fn open(&self) -> Result<Option<u64>, Error> {
        let drawn: i64 = self
            .scripts
            .open
            .key(&self.prefix)
            .invoke_async(&mut self.redis.clone())
            .await?;
        Ok((drawn >= 0).then_some(drawn as u64))
    }

    pub async fn step(&self, now_ms: i64, input: &StepInput<'_>) -> Result<Step, Error> {
        let mut call = self.scripts.admit.key(&self.prefix);
        call.arg(now_ms)
            .arg(input.settings.admission_rate)
            .arg(input.settings.max_active)
            .arg(input.session_ttl.as_millis() as i64)
            .arg(if input.admitting { 1 } else { 0 })
            .arg(input.window.as_millis() as i64)
            .arg(input.head_seen);
        for number in input.numbers {
            call.arg(*number);
        }
        let (admitted, head, active, sold_out, stale): (u64, u64, u64, u8, u8) =
            call.invoke_async(&mut self.redis.clone()).await?;
        Ok(Step {
            admitted,
            head,
            active,
            sold_out: sold_out == 1,
            stale: stale == 1,
        })
    }

    /// Writes liveness marks: one `BITFIELD` per window (in chunks), kept for three windows.
    pub async fn flush_marks(
        &self,
        batches: &[(i64, Vec<u64>)],
        window: Duration,
    ) -> Result<(), Error> {
        let mut pipe = redis::pipe();
        for (w, numbers) in batches {
            let key = format!("{}live:{w}", self.prefix);
            for chunk in numbers.chunks(4_096) {
                let mut bits = redis::cmd("BITFIELD");
                bits.arg(&key);
                for number in chunk {
                    bits.arg("SET").arg("u1").arg(*number).arg(1);
                }
                pipe.add_command(bits).ignore();
            }
            pipe.pexpire(&key, 3 * window.as_millis() as i64).ignore();
        }
        pipe.exec_async(&mut self.redis.clone()).await?;
        Ok(())
    }

    /// Gives up a place at the shopper's request: ends the admission, and clears the liveness
    /// marks so the head passes over the place at once.
    pub async fn leave(&self, number: u64, window: i64) -> Result<(), Error> {
        let p = &self.prefix;
        redis::pipe()
            .zrem(format!("{p}active"), number)
            .setbit(format!("{p}live:{window}"), number as usize, false)
            .setbit(format!("{p}live:{}", window - 1), number as usize, false)
            .exec_async(&mut self.redis.clone())
            .await?;
        Ok(())
    }

    /// The admission log's lines staged in Redis and not yet published, oldest first (at
    /// most `limit`).
    pub async fn staged(&self, limit: usize) -> Result<Vec<String>, Error> {
        Ok(redis::cmd("LRANGE")
            .arg(format!("{}log", self.prefix))
            .arg(0)
            .arg(limit.saturating_sub(1))
            .query_async(&mut self.redis.clone())
            .await?)
    }

    /// How many lines of the admission log wait to be published.
    pub async fn staged_count(&self) -> Result<u64, Error> {
        Ok(redis::cmd("LLEN")
            .arg(format!("{}log", self.prefix))
            .query_async(&mut self.redis.clone())
            .await?)
    }

    /// Drops staged lines once they are published (or judged): see `published.lua`.
    pub async fn drop_staged(&self, lines: &[String]) -> Result<(), Error> {
        let mut call = self.scripts.published.key(&self.prefix);
        for line in lines {
            call.arg(line);
        }
        let _: i64 = call.invoke_async(&mut self.redis.clone()).await?;
        Ok(())
    }
}

/// What a shopper is told about the queue: the JSON answer of `GET /api/queue` and the payload
/// of the live updates. Built to be used as is by a mobile app.
#[derive(Debug, Clone, Serialize, PartialEq, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct QueueStatus {
    /// `outside` (not in the queue), `pre_queue`, `waiting`, `admitted`, `done` (owns their
    /// limit), or `closed` (the deal is not taking anyone: see `deal`).
    pub state: QueueState,
    /// The deal's state.
    pub deal: DealState,
    /// 1 is next; present while waiting. Shoppers ahead who left are counted until the line
    /// passes over them, so the position only ever improves faster than it says.
    pub position: Option<u64>,
    /// The shopper's place in line: lower places are admitted first. Present while waiting.
    /// For the pre-queue it is the drawn place (see `/api/fairness`).
    pub ticket: Option<u64>,
    /// The number taken when joining, which the pre-queue's draw turns into a place. Present
    /// while the shopper holds a ticket.
    pub join_number: Option<u64>,
    /// Places not yet reached by the line (after the start).
    pub waiting: u64,
    /// Estimated seconds until admission; present when `estimateKnown`.
    pub estimated_wait_seconds: Option<u64>,
    /// The wait will likely be at least this many seconds; present when `estimateKnown`.
    pub estimated_wait_low_seconds: Option<u64>,
    /// The wait will likely be at most this many seconds; absent when the line stood still
    /// lately, so no upper bound is honest.
    pub estimated_wait_high_seconds: Option<u64>,
    /// False when no honest estimate can be given yet (the pre-queue before its draw, or a
    /// line that has not moved lately).
    pub estimate_known: bool,
    /// True when the shoppers ahead already number at least the units left.
    pub likely_sold_out: bool,
    /// When to ask again, in milliseconds.
    pub poll_after_ms: u64,
    /// Units this shopper holds or has bought.
    pub owned: u32,
    /// The most this shopper may own.
    pub limit: u32,
    /// Units neither sold nor reserved.
    pub stock_remaining: i64,
    /// Present once admitted: send it with each order.
    pub admission_token: Option<String>,
    /// When the admission ends.
    pub admission_expires_at: Option<DateTime<Utc>>,
    /// Seconds until the start (0 once started).
    pub seconds_to_start: u64,
    /// The server's clock: countdowns are computed against this, never the device's clock.
    pub server_time: DateTime<Utc>,
    /// The signed ticket holding the shopper's place, in the answer to joining: apps send it
    /// back in the `X-Timedeal-Ticket` header (browsers keep it in a cookie).
    pub queue_ticket: Option<String>,
    /// SHA-256 of the seed that draws the pre-queue, published before anyone can join; the seed
    /// is revealed at `/api/fairness` after the start.
    pub draw_commitment: String,
}

#[derive(Debug, Clone, Copy, Serialize, PartialEq, Eq, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum QueueState {
    Outside,
    /// The shopper owns their limit: nothing left to queue for.
    Done,
    PreQueue,
    Waiting,
    Admitted,
    Closed,
}

/// Everything [`view`] needs besides the place and figures.
pub struct ViewContext<'a> {
    pub deal: DealState,
    pub settings: Settings,
    /// The shopper's limit and what they hold or own already.
    pub limit: u32,
    pub owned: u32,
    pub start: DateTime<Utc>,
    pub now: DateTime<Utc>,
    /// The longest a waiting shopper may go between polls (half a liveness window).
    pub poll_gap: Duration,
    /// Signs the admission token when the shopper is admitted.
    pub admission_token: &'a dyn Fn(u64, i64) -> String,
}

/// What to tell the shopper, from where they stand and the deal-wide figures.
pub fn view(place: Place, figures: &Figures, cx: &ViewContext<'_>) -> QueueStatus {
    let until_start = (cx.start - cx.now).to_std().unwrap_or_default();
    let mut status = QueueStatus {
        state: QueueState::Outside,
        deal: cx.deal,
        position: None,
        ticket: None,
        join_number: None,
        waiting: figures.waiting,
        estimated_wait_seconds: None,
        estimated_wait_low_seconds: None,
        estimated_wait_high_seconds: None,
        estimate_known: false,
        likely_sold_out: figures.available <= 0,
        poll_after_ms: 5_000,
        owned: cx.owned,
        limit: cx.limit,
        stock_remaining: figures.available.max(0),
        admission_token: None,
        admission_expires_at: None,
        seconds_to_start: until_start.as_secs_f64().ceil() as u64,
        server_time: cx.now,
        queue_ticket: None,
        draw_commitment: String::new(),
    };
    let seconds = |d: Duration| d.as_secs_f64().ceil() as u64;
    if !matches!(cx.deal, DealState::Upcoming | DealState::Live) {
        status.state = QueueState::Closed;
        return status;
    }
    match place {
        Place::Outside if cx.owned >= cx.limit => status.state = QueueState::Done,
        Place::Outside if cx.deal == DealState::Upcoming => {
            status.poll_after_ms =
                arithmetic::poll_after_pre_queue(until_start, cx.poll_gap).as_millis() as u64;
        }
        Place::Outside => {}
        Place::PreQueue => {
            status.state = QueueState::PreQueue;
            status.likely_sold_out = figures.pre_queue as i64 > figures.available.max(0) * 4;
            status.poll_after_ms =
                arithmetic::poll_after_pre_queue(until_start, cx.poll_gap).as_millis() as u64;
        }
        Place::Waiting { position, place } => {
            let wait = arithmetic::estimated_wait(position, figures, &cx.settings);
            status.state = QueueState::Waiting;
            status.position = Some(position);
            status.ticket = Some(place);
            status.estimate_known = wait.is_some();
            status.estimated_wait_seconds = wait.map(|w| seconds(w.typical));
            status.estimated_wait_low_seconds = wait.map(|w| w.shortest.as_secs());
            status.estimated_wait_high_seconds = wait.and_then(|w| w.longest).map(seconds);
            status.likely_sold_out = arithmetic::likely_sold_out(position, figures);
            status.poll_after_ms =
                arithmetic::poll_after(wait.map(|w| w.typical), cx.poll_gap).as_millis() as u64;
        }
        Place::Admitted { number, expires_ms } => {
            status.state = QueueState::Admitted;
            status.estimate_known = true;
            status.estimated_wait_seconds = Some(0);
            status.estimated_wait_low_seconds = Some(0);
            status.estimated_wait_high_seconds = Some(0);
            status.admission_token = Some((cx.admission_token)(number, expires_ms));
            status.admission_expires_at = DateTime::from_timestamp_millis(expires_ms);
        }
    }
    status
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cx(deal: DealState, now_offset_secs: i64) -> ViewContext<'static> {
        let start = DateTime::from_timestamp(1_800_000_000, 0).unwrap();
        ViewContext {
            deal,
            settings: Settings {
                admission_rate: 10,
                max_active: 50,
            },
            limit: 2,
            owned: 0,
            start,
            now: start + chrono::Duration::seconds(now_offset_secs),
            poll_gap: Duration::from_secs(5),
            admission_token: &|nonce, expires| format!("token-{nonce}-{expires}"),
        }
    }

    fn figures() -> Figures {
        Figures {
            waiting: 300,
            active: 20,
            available: 100,
            reserved: 3,
            sold: 10,
            restored: true,
            ..Figures::default()
        }
    }

    fn ticket(number: u64) -> Ticket {
        Ticket {
            deal: "d".into(),
            shopper: "s".into(),
            epoch: 1,
            number,
            owned: 0,
            issued_ms: 0,
        }
    }

    #[test]
    fn a_ticket_stands_by_the_draw_and_the_head() {
        let draw = Draw::new(b"seed", 100);
        let mut f = Figures {
            epoch: 1,
            ..figures()
        };
        assert_eq!(standing(None, &f, None), Standing::NoPlace);
        assert_eq!(standing(Some(&ticket(5)), &f, None), Standing::PreQueue);
        f.drawn = Some(100);
        f.head = 20;
        let place = draw.place_of(5).unwrap();
        let expected = if place <= 20 {
            Standing::Reached
        } else {
            Standing::Waiting {
                position: place - 20,
                place,
            }
        };
        assert_eq!(standing(Some(&ticket(5),), &f, Some(&draw)), expected);
        assert_eq!(
            standing(Some(&ticket(150)), &f, Some(&draw)),
            Standing::Waiting {
                position: 130,
                place: 150
            },
            "after the pre-queue a number is its own place"
        );
        f.head = 150;
        assert_eq!(
            standing(Some(&ticket(150)), &f, Some(&draw)),
            Standing::Reached
        );
        f.epoch = 2;
        assert_eq!(
            standing(Some(&ticket(150)), &f, Some(&draw)),
            Standing::NoPlace,
            "numbers of an earlier epoch hold no place"
        );
    }

    #[test]
    fn a_waiting_shopper_sees_position_estimate_and_when_to_poll() {
        let status = view(
            Place::Waiting {
                position: 30,
                place: 30,
            },
            &figures(),
            &cx(DealState::Live, 5),
        );
        assert_eq!(status.state, QueueState::Waiting);
        assert_eq!(status.position, Some(30));
        assert_eq!(status.estimated_wait_seconds, Some(3));
        assert_eq!(status.estimated_wait_low_seconds, Some(1));
        assert_eq!(status.estimated_wait_high_seconds, Some(3));
        assert!(status.estimate_known);
        assert!(!status.likely_sold_out);
        assert_eq!(status.poll_after_ms, 750);
        assert_eq!(status.seconds_to_start, 0);
        assert_eq!(status.admission_token, None);
    }

    #[test]
    fn far_back_is_told_the_stock_will_likely_run_out() {
        let status = view(
            Place::Waiting {
                position: 81,
                place: 81,
            },
            &figures(),
            &cx(DealState::Live, 5),
        );
        assert!(status.likely_sold_out);
    }

    #[test]
    fn the_admitted_get_their_token() {
        let status = view(
            Place::Admitted {
                number: 9,
                expires_ms: 1_800_000_300_000,
            },
            &figures(),
            &cx(DealState::Live, 5),
        );
        assert_eq!(status.state, QueueState::Admitted);
        assert_eq!(
            status.admission_token.as_deref(),
            Some("token-9-1800000300000")
        );
        assert_eq!(
            status.admission_expires_at,
            DateTime::from_timestamp(1_800_000_300, 0)
        );
    }

    #[test]
    fn the_pre_queue_has_no_estimate_and_polls_at_the_start() {
        let status = view(Place::PreQueue, &figures(), &cx(DealState::Upcoming, -3));
        assert_eq!(status.state, QueueState::PreQueue);
        assert!(!status.estimate_known);
        assert_eq!(status.seconds_to_start, 3);
        assert_eq!(status.poll_after_ms, 3_200);
    }

    #[test]
    fn a_shopper_who_owns_their_limit_is_done() {
        let mut context = cx(DealState::Live, 5);
        context.owned = 2;
        let status = view(Place::Outside, &figures(), &context);
        assert_eq!(status.state, QueueState::Done);
        assert_eq!((status.owned, status.limit), (2, 2));
    }

    #[test]
    fn a_deal_not_taking_anyone_closes_the_queue() {
        for deal in [DealState::SoldOut, DealState::Ended, DealState::Suspended] {
            let status = view(
                Place::Waiting {
                    position: 1,
                    place: 1,
                },
                &figures(),
                &cx(deal, 5),
            );
            assert_eq!(status.state, QueueState::Closed);
            assert_eq!(status.position, None);
        }
    }
}
