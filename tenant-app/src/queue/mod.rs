//! The fair queue, kept in Redis so every replica sees one line.
//!
//! Before the start, arrivals wait in a pre-queue; at the start it is drawn into the line in a
//! random order, once (`open.lua`). After the start, tickets are strictly first come, first
//! served (`join.lua`). A few times a second each replica runs one admission step
//! (`admit.lua`), which admits the next shoppers at the deal's rate, within `maxActive` and the
//! stock left. Everything a shopper is told comes from [`view`], a pure function of the figures.

pub mod arithmetic;

use std::{sync::Arc, time::Duration};

use chrono::{DateTime, Utc};
use redis::aio::ConnectionManager;
use serde::Serialize;

pub use arithmetic::{Figures, Settings};

use crate::{deal::DealState, error::Error, scripts::Scripts};

/// Where one shopper stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Place {
    /// Not in the queue.
    Outside,
    /// In the pre-queue; their place is drawn at the start.
    PreQueue,
    /// In line with `ticket`, `position` 1 being next.
    Waiting { position: u64, ticket: u64 },
    /// Admitted: may order until `expires_ms` with the admission `nonce`.
    Admitted { nonce: u64, expires_ms: i64 },
}

/// The outcome of asking to join.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Joined {
    Placed,
    SoldOut,
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
    pub waiting: u64,
    pub active: u64,
    pub sold_out: bool,
}

impl Queue {
    pub fn new(redis: ConnectionManager, scripts: Arc<Scripts>, prefix: String) -> Self {
        Self {
            redis,
            scripts,
            prefix,
        }
    }

    pub async fn join(&self, shopper: &str, limit: u32, now_ms: i64) -> Result<Joined, Error> {
        let (state, _ticket): (String, i64) = self
            .scripts
            .join
            .key(&self.prefix)
            .arg(shopper)
            .arg(now_ms)
            .arg(limit)
            .invoke_async(&mut self.redis.clone())
            .await?;
        Ok(match state.as_str() {
            "sold_out" => Joined::SoldOut,
            "over_limit" => Joined::AtLimit,
            "unavailable" => Joined::Restoring,
            _ => Joined::Placed,
        })
    }

    /// The shopper's place (pass "" for none), the units they hold or own, and the deal-wide
    /// figures.
    pub async fn status(&self, shopper: &str, now_ms: i64) -> Result<(Place, u32, Figures), Error> {
        let n: Vec<i64> = self
            .scripts
            .status
            .key(&self.prefix)
            .arg(shopper)
            .arg(now_ms)
            .arg(arithmetic::WINDOW.as_millis() as i64)
            .invoke_async(&mut self.redis.clone())
            .await?;
        if n.len() < 14 {
            return Err(Error::Redis(format!(
                "status.lua answered {} numbers, expected 14",
                n.len()
            )));
        }
        let (position, nonce, expires_ms) = (n[1] as u64, n[2] as u64, n[3]);
        let owned = n[12].max(0) as u32;
        let place = match n[0] {
            3 => Place::Admitted { nonce, expires_ms },
            2 => Place::Waiting {
                position,
                ticket: nonce,
            },
            1 => Place::PreQueue,
            _ => Place::Outside,
        };
        let figures = Figures {
            waiting: n[4] as u64,
            active: n[5] as u64,
            available: n[6],
            reserved: n[7],
            sold: n[8],
            recent_admissions: n[9] as u64,
            pre_queue: n[10] as u64,
            restored: n[13] == 1,
        };
        Ok((place, owned, figures))
    }

    /// Draws the pre-queue into the line; does nothing when that already happened.
    pub async fn open(&self, seed: u32) -> Result<Option<u64>, Error> {
        let placed: i64 = self
            .scripts
            .open
            .key(&self.prefix)
            .arg(seed)
            .invoke_async(&mut self.redis.clone())
            .await?;
        Ok((placed >= 0).then_some(placed as u64))
    }

    pub async fn step(
        &self,
        now_ms: i64,
        settings: &Settings,
        session_ttl: Duration,
        idle_grace: Duration,
        admitting: bool,
    ) -> Result<Step, Error> {
        let (admitted, waiting, active, sold_out): (u64, u64, u64, u8) = self
            .scripts
            .admit
            .key(&self.prefix)
            .arg(now_ms)
            .arg(settings.admission_rate)
            .arg(settings.max_active)
            .arg(session_ttl.as_millis() as i64)
            .arg(idle_grace.as_millis() as i64)
            .arg(if admitting { 1 } else { 0 })
            .invoke_async(&mut self.redis.clone())
            .await?;
        Ok(Step {
            admitted,
            waiting,
            active,
            sold_out: sold_out == 1,
        })
    }

    /// Takes the shopper out of the line (or ends their admission) at their request.
    pub async fn leave(&self, shopper: &str) -> Result<(), Error> {
        let p = &self.prefix;
        redis::pipe()
            .atomic()
            .zrem(format!("{p}line"), shopper)
            .zrem(format!("{p}pre"), shopper)
            .zrem(format!("{p}seen"), shopper)
            .zrem(format!("{p}active"), shopper)
            .hdel(format!("{p}adm"), shopper)
            .exec_async(&mut self.redis.clone())
            .await?;
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
    /// 1 is next; present while waiting.
    pub position: Option<u64>,
    /// The shopper's ticket number: lower tickets are admitted first. Present while waiting.
    pub ticket: Option<u64>,
    /// Shoppers waiting in line.
    pub waiting: u64,
    /// Estimated seconds until admission; present when `estimateKnown`.
    pub estimated_wait_seconds: Option<u64>,
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
        waiting: figures.waiting,
        estimated_wait_seconds: None,
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
    };
    if !matches!(cx.deal, DealState::Upcoming | DealState::Live) {
        status.state = QueueState::Closed;
        return status;
    }
    match place {
        Place::Outside if cx.owned >= cx.limit => status.state = QueueState::Done,
        Place::Outside if cx.deal == DealState::Upcoming => {
            status.poll_after_ms = arithmetic::poll_after_pre_queue(until_start).as_millis() as u64;
        }
        Place::Outside => {}
        Place::PreQueue => {
            status.state = QueueState::PreQueue;
            status.likely_sold_out = figures.pre_queue as i64 > figures.available.max(0) * 4;
            status.poll_after_ms = arithmetic::poll_after_pre_queue(until_start).as_millis() as u64;
        }
        Place::Waiting { position, ticket } => {
            let wait = arithmetic::estimated_wait(position, figures, &cx.settings);
            status.state = QueueState::Waiting;
            status.position = Some(position);
            status.ticket = Some(ticket);
            status.estimate_known = wait.is_some();
            status.estimated_wait_seconds = wait.map(|w| w.as_secs_f64().ceil() as u64);
            status.likely_sold_out = arithmetic::likely_sold_out(position, figures);
            status.poll_after_ms = arithmetic::poll_after(wait).as_millis() as u64;
        }
        Place::Admitted { nonce, expires_ms } => {
            status.state = QueueState::Admitted;
            status.estimate_known = true;
            status.estimated_wait_seconds = Some(0);
            status.admission_token = Some((cx.admission_token)(nonce, expires_ms));
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
            recent_admissions: 0,
            pre_queue: 0,
            restored: true,
        }
    }

    #[test]
    fn a_waiting_shopper_sees_position_estimate_and_when_to_poll() {
        let status = view(
            Place::Waiting {
                position: 30,
                ticket: 30,
            },
            &figures(),
            &cx(DealState::Live, 5),
        );
        assert_eq!(status.state, QueueState::Waiting);
        assert_eq!(status.position, Some(30));
        assert_eq!(status.estimated_wait_seconds, Some(3));
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
                ticket: 81,
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
                nonce: 9,
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
                    ticket: 1,
                },
                &figures(),
                &cx(deal, 5),
            );
            assert_eq!(status.state, QueueState::Closed);
            assert_eq!(status.position, None);
        }
    }
}
