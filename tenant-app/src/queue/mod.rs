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
pub mod beacon;
pub mod challenge;
pub mod draw;
pub mod fairness;
pub mod head;
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
    /// Admitted with the admission of join number `number`: its lease runs until `until_ms`
    /// unless renewed, and never past `cap_ms`.
    Admitted {
        number: u64,
        until_ms: i64,
        cap_ms: i64,
    },
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

/// What a lease renewal found: the admission (when the shopper holds one) and the units the
/// shopper holds or owns.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Lease {
    pub admitted: Option<Admitted>,
    pub owned: u32,
}

/// A live admission: renewed until `until_ms`, and never past `cap_ms`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Admitted {
    pub until_ms: i64,
    pub cap_ms: i64,
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
        let [epoch, total, sold, reserved, active, taken, head, drawn, closed_at, keys] = n[..]
        else {
            return Err(Error::Redis(format!(
                "snapshot.lua answered {} numbers, expected 10",
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
            closed_at: (closed_at >= 0).then_some(closed_at),
            keys: keys.max(0) as u64,
            pace: None,
        })
    }

    /// Whether join number `number` is admitted now, renewing its lease (see `lease.lua`), and
    /// the units `shopper` holds or owns: asked only once the head has reached the shopper's
    /// place, or without a ticket.
    pub async fn lease(
        &self,
        number: Option<u64>,
        shopper: &str,
        now_ms: i64,
        lease: Duration,
    ) -> Result<Lease, Error> {
        let (until_ms, cap_ms, owned): (i64, i64, u32) = self
            .scripts
            .lease
            .key(&self.prefix)
            .arg(number.map(|n| n.to_string()).unwrap_or_default())
            .arg(shopper)
            .arg(now_ms)
            .arg(lease.as_millis() as i64)
            .invoke_async(&mut self.redis.clone())
            .await?;
        Ok(Lease {
            admitted: (until_ms > now_ms).then_some(Admitted {
                until_ms,
                cap_ms: if cap_ms > 0 { cap_ms } else { until_ms },
            }),
            owned,
        })
    }

    /// Ends an admission at once: its shopper got a final answer and has nothing left to try
    /// with it. The place goes to the next shopper with the next admission step.
    pub async fn end_admission(&self, number: u64) -> Result<(), Error> {
        let _: i64 = redis::cmd("ZREM")
            .arg(format!("{}active", self.prefix))
            .arg(number)
            .query_async(&mut self.redis.clone())
            .await?;
        Ok(())
    }

    /// Fixes the pre-queue's size at the start, closing it at `now_ms`; `None` when that
    /// already happened.
    pub async fn open(&self, now_ms: i64) -> Result<Option<u64>, Error> {
        let drawn: i64 = self
            .scripts
            .open
            .key(&self.prefix)
            .arg(now_ms)
            .invoke_async(&mut self.redis.clone())
            .await?;
        Ok((drawn >= 0).then_some(drawn as u64))
    }

    pub async fn step(&self, now_ms: i64, input: &StepInput<'_>) -> Result<Step, Error> {
        let mut call = self.scripts.admit.key(&self.prefix);
        call.arg(now_ms)
            .arg(input.settings.admission_rate)
            .arg(input.settings.max_active)
            .arg(input.settings.session_ttl.as_millis() as i64)
            .arg(if input.admitting { 1 } else { 0 })
            .arg(input.window.as_millis() as i64)
            .arg(input.head_seen)
            .arg(input.settings.lease.as_millis() as i64)
            .arg(input.settings.claims_per_unit);
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

    /// Gives up a place at the shopper's request (see `leave.lua`): ends the admission, and
    /// records the leave where admission reads it, for good. A ticket of another epoch leaves
    /// nothing: its number may be someone else's now.
    pub async fn leave(&self, number: u64, epoch: i64) -> Result<(), Error> {
        let _: i64 = self
            .scripts
            .leave
            .key(&self.prefix)
            .arg(number)
            .arg(epoch)
            .invoke_async(&mut self.redis.clone())
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
    /// `outside` (not in the queue), `pre_queue`, `waiting`, `admitted`, `paused` (the line
    /// keeps the shopper's place but cannot move now: see `pausedBecause`), `done` (owns their
    /// limit), or `closed` (the deal has ended: nothing can come back).
    pub state: QueueState,
    /// Why the line is paused: `units_reserved` (every unit left is in someone's checkout;
    /// those not paid for return within the reservation time), `awaiting_cancellations` (every
    /// unit is sold; a cancelled order's units go to the line, in order) or `suspended` (the
    /// platform paused the deal). Present while `state` is `paused`.
    pub paused_because: Option<PauseReason>,
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
    /// The latest the admission can last (`sessionTtl` after it began), however often it is
    /// renewed.
    pub admission_expires_at: Option<DateTime<Utc>>,
    /// When the admission ends unless renewed: each poll or live update renews it (up to
    /// `admissionExpiresAt`), so a shopper who closes the page gives the place back soon.
    pub lease_expires_at: Option<DateTime<Utc>>,
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
    /// The randomness beacon named in the commitment: the draw is keyed by the seed and the
    /// first round it emits after the start. Absent for a deal without one.
    pub draw_beacon: Option<String>,
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
    /// The line holds the shopper's place but cannot move now; see `pausedBecause`.
    Paused,
    Closed,
}

/// Why a line that keeps its places cannot move now.
#[derive(Debug, Clone, Copy, Serialize, PartialEq, Eq, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum PauseReason {
    /// Every unit left is reserved by an order in progress; those not paid for come back.
    UnitsReserved,
    /// Every unit is sold; units of a cancelled order come back to the line.
    AwaitingCancellations,
    /// The platform suspended the deal.
    Suspended,
}

/// Why the line cannot move though the deal may still sell, if so: a pure function of the
/// deal's state and the figures.
pub fn pause_reason(deal: DealState, figures: &Figures) -> Option<PauseReason> {
    match deal {
        DealState::Suspended => Some(PauseReason::Suspended),
        DealState::SoldOut => Some(PauseReason::AwaitingCancellations),
        DealState::Live if figures.restored && figures.available <= 0 => {
            Some(if figures.reserved > 0 {
                PauseReason::UnitsReserved
            } else {
                PauseReason::AwaitingCancellations
            })
        }
        _ => None,
    }
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
    /// Signs the admission token (join number, valid until) when the shopper is admitted.
    pub admission_token: &'a dyn Fn(u64, i64) -> String,
}

/// Places at the front of a paused line, which ask again every second: a unit that comes back
/// goes to one of them.
const PAUSED_FRONT: u64 = 20;

/// How often an admitted shopper asks again: three times a lease, so one lost answer never
/// costs the admission.
fn lease_poll(lease: Duration) -> u64 {
    (lease / 3)
        .clamp(Duration::from_secs(1), Duration::from_secs(5))
        .as_millis() as u64
}

/// What to tell the shopper, from where they stand and the deal-wide figures.
pub fn view(place: Place, figures: &Figures, cx: &ViewContext<'_>) -> QueueStatus {
    let until_start = (cx.start - cx.now).to_std().unwrap_or_default();
    let mut status = QueueStatus {
        state: QueueState::Outside,
        paused_because: None,
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
        lease_expires_at: None,
        seconds_to_start: until_start.as_secs_f64().ceil() as u64,
        server_time: cx.now,
        queue_ticket: None,
        draw_commitment: String::new(),
        draw_beacon: None,
    };
    let seconds = |d: Duration| d.as_secs_f64().ceil() as u64;
    let paused = pause_reason(cx.deal, figures);
    let holds_place = matches!(
        place,
        Place::PreQueue | Place::Waiting { .. } | Place::Admitted { .. }
    );
    if paused.is_some() && holds_place {
        // The place is kept: the shopper is told why nothing moves, and polls as they would
        // while waiting (a unit can come back at any moment).
        status.state = QueueState::Paused;
        status.paused_because = paused;
        if let Place::Waiting { position, place } = place {
            status.position = Some(position);
            status.ticket = Some(place);
            status.likely_sold_out = true;
        }
        status.poll_after_ms = cx.poll_gap.min(Duration::from_secs(5)).as_millis() as u64;
        if status.position.is_some_and(|p| p <= PAUSED_FRONT) {
            // The front of the line is next for any unit that comes back: it looks often.
            status.poll_after_ms = status.poll_after_ms.min(1_000);
        }
        if let Place::Admitted { until_ms, .. } = place {
            // The lease goes on being renewed; poll often enough to keep it.
            status.poll_after_ms = status.poll_after_ms.min(lease_poll(cx.settings.lease));
            status.lease_expires_at = DateTime::from_timestamp_millis(until_ms);
        }
        return status;
    }
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
            status.poll_after_ms = if cx.deal == DealState::Live {
                // Started, and the draw waits for its beacon round: a second or so.
                1_000
            } else {
                arithmetic::poll_after_pre_queue(until_start, cx.poll_gap).as_millis() as u64
            };
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
        Place::Admitted {
            number,
            until_ms,
            cap_ms,
        } => {
            status.state = QueueState::Admitted;
            status.estimate_known = true;
            status.estimated_wait_seconds = Some(0);
            status.estimated_wait_low_seconds = Some(0);
            status.estimated_wait_high_seconds = Some(0);
            status.admission_token = Some((cx.admission_token)(number, cap_ms));
            status.admission_expires_at = DateTime::from_timestamp_millis(cap_ms);
            status.lease_expires_at = DateTime::from_timestamp_millis(until_ms);
            status.poll_after_ms = lease_poll(cx.settings.lease);
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
                session_ttl: Duration::from_secs(300),
                lease: Duration::from_secs(45),
                claims_per_unit: 2,
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
                until_ms: 1_800_000_045_000,
                cap_ms: 1_800_000_300_000,
            },
            &figures(),
            &cx(DealState::Live, 5),
        );
        assert_eq!(status.state, QueueState::Admitted);
        assert_eq!(
            status.admission_token.as_deref(),
            Some("token-9-1800000300000"),
            "the token lasts to the cap: the lease in Redis decides before that"
        );
        assert_eq!(
            status.admission_expires_at,
            DateTime::from_timestamp(1_800_000_300, 0)
        );
        assert_eq!(
            status.lease_expires_at,
            DateTime::from_timestamp(1_800_000_045, 0)
        );
        assert_eq!(status.poll_after_ms, 5_000, "three polls a 45 s lease");
    }

    #[test]
    fn a_line_that_cannot_move_now_is_paused_and_keeps_its_places() {
        let waiting = Place::Waiting {
            position: 7,
            place: 27,
        };
        let reserved = Figures {
            available: 0,
            reserved: 4,
            ..figures()
        };
        let status = view(waiting, &reserved, &cx(DealState::Live, 5));
        assert_eq!(status.state, QueueState::Paused);
        assert_eq!(status.paused_because, Some(PauseReason::UnitsReserved));
        assert_eq!((status.position, status.ticket), (Some(7), Some(27)));
        assert_eq!(status.poll_after_ms, 1_000, "the front looks often");

        let sold = Figures {
            available: 0,
            reserved: 0,
            ..figures()
        };
        let status = view(waiting, &sold, &cx(DealState::SoldOut, 5));
        assert_eq!(status.state, QueueState::Paused);
        assert_eq!(
            status.paused_because,
            Some(PauseReason::AwaitingCancellations)
        );
        let status = view(waiting, &figures(), &cx(DealState::Suspended, 5));
        assert_eq!(status.paused_because, Some(PauseReason::Suspended));
        assert_eq!(status.position, Some(7));

        // Without a place there is nothing to keep: the shopper is told where the deal is.
        let status = view(Place::Outside, &sold, &cx(DealState::SoldOut, 5));
        assert_eq!(status.state, QueueState::Closed);
        assert_eq!(status.paused_because, None);
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
    fn an_ended_deal_closes_the_queue() {
        let status = view(
            Place::Waiting {
                position: 1,
                place: 1,
            },
            &figures(),
            &cx(DealState::Ended, 5),
        );
        assert_eq!(status.state, QueueState::Closed);
        assert_eq!(status.position, None);
        assert_eq!(status.paused_because, None);
    }
}
