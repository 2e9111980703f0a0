//! The state every request and background task shares.

use std::{
    collections::VecDeque,
    sync::{Arc, Mutex},
    time::Duration,
};

use chrono::{DateTime, Utc};
use redis::aio::ConnectionManager;
use sqlx::PgPool;
use tokio::sync::watch;

use crate::{
    clock::Clock,
    commit::Writer,
    deal::{Deal, DealState},
    identity::Identifier,
    metrics::Metrics,
    orders::reservations::Reservations,
    payments::Payments,
    queue::{liveness::Marks, Draw, Figures, Queue, Settings},
    scripts::Scripts,
    tokens::Signer,
};

pub struct App {
    pub deal: watch::Receiver<Arc<Deal>>,
    /// Where new versions of the deal come in (the file, the operator's push).
    pub deal_source: crate::deal::DealSource,
    /// The key the operator presents to push a new version of the deal; none: no pushes.
    pub control_key: Option<String>,
    pub redis: ConnectionManager,
    pub db: PgPool,
    pub scripts: Arc<Scripts>,
    pub queue: Queue,
    pub reservations: Reservations,
    pub writer: Writer,
    pub payments: Arc<Payments>,
    /// Captures of committed orders, off the order path.
    pub captures: crate::payments::Captures,
    /// The deal's clock: Redis's, so replicas agree on when things happen.
    pub clock: Clock,
    pub signer: Signer,
    pub identifier: Identifier,
    pub metrics: Metrics,
    /// The latest deal-wide figures, refreshed by the background ticker; live updates wake on it.
    pub figures: watch::Receiver<Figures>,
    /// Prefix of every Redis key of the deal.
    pub prefix: String,
    /// The seed that draws the pre-queue (secret until the start; its hash is published).
    pub draw_seed: Vec<u8>,
    /// The beacon whose round after the start keys the draw with the seed; `""` for none.
    pub draw_beacon: String,
    /// The published commitment to the seed and the beacon: `SHA-256(seed || beacon)`, hex.
    pub draw_commitment: String,
    /// The draw's key once the beacon's round is recorded (`queue::beacon`).
    pub draw_key: Mutex<Option<Vec<u8>>>,
    /// How long after its round is due the beacon is waited for.
    pub beacon_patience: Duration,
    /// The draw of the current epoch's pre-queue, made once its size is known.
    pub draw: Mutex<Option<(i64, Arc<Draw>)>>,
    /// The published admission log, as this replica last read it from PostgreSQL.
    pub published: crate::queue::record::Cache,
    /// Liveness marks of the shoppers who polled this replica, waiting to be flushed.
    pub marks: Marks,
    /// Recent `(time in ms, head)` samples, from which the line's pace is read.
    pub head_samples: Mutex<VecDeque<(i64, u64)>>,
    /// The SMTP server email reminders go through; none: calendar reminders only.
    pub mailer: Option<Arc<crate::reminders::Mailer>>,
    /// The storefront's address as shoppers reach it (no trailing slash), for links in mails.
    pub public_url: String,
    /// The most reminder addresses this deal keeps.
    pub reminder_limit: u32,
    /// The public head as last rendered (see `http::head`).
    pub head_cache: std::sync::Mutex<Option<crate::http::head::Rendered>>,
    /// The shoppers holding idempotency keys, listed while the deal is sold out (see
    /// `orders::buyers`): everyone else's order is answered at once.
    pub buyers: std::sync::RwLock<Option<Arc<crate::orders::buyers::Buyers>>>,
    /// When `figures` were last read whole (ms, the deal's clock): answers that trust them
    /// alone, such as the sold-out answer, trust only fresh ones.
    pub figures_read_ms: std::sync::atomic::AtomicI64,
    /// Seconds a cache may keep the public head.
    pub head_max_age: u32,
}

pub type SharedApp = Arc<App>;

impl App {
    pub fn deal(&self) -> Arc<Deal> {
        self.deal.borrow().clone()
    }

    /// The link in a confirmation mail that makes its address receive reminders.
    pub fn confirm_url(&self, token: &str) -> String {
        format!("{}/reminders/confirm?token={token}", self.public_url)
    }

    /// The link in a reminder mail that removes its address.
    pub fn unsubscribe_url(&self, token: &str) -> String {
        format!("{}/reminders/unsubscribe?token={token}", self.public_url)
    }

    pub fn settings(deal: &Deal) -> Settings {
        Settings {
            admission_rate: deal.spec.queue.admission_rate.max(0) as u32,
            max_active: deal.spec.queue.max_active.max(0) as u32,
            session_ttl: deal.spec.queue.session_ttl.std(),
            lease: Settings::lease_of(
                deal.spec.queue.admission_lease.std(),
                deal.spec.queue.session_ttl.std(),
            ),
            claims_per_unit: deal.spec.queue.claims_per_unit.clamp(1, 100) as u32,
        }
    }

    /// The draw's key: the seed alone without a beacon, else known once the beacon's round after
    /// the start is recorded.
    pub fn draw_key(&self) -> Option<Vec<u8>> {
        if self.draw_beacon.is_empty() {
            return Some(self.draw_seed.clone());
        }
        self.draw_key
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// The pre-queue's draw, once `figures` say how large it is and its key is known.
    pub fn draw_for(&self, figures: &Figures) -> Option<Arc<Draw>> {
        let n = figures.drawn?;
        let mut cached = self.draw.lock().unwrap_or_else(|e| e.into_inner());
        match cached.as_ref() {
            Some((epoch, draw)) if *epoch == figures.epoch && draw.len() == n => Some(draw.clone()),
            _ => {
                // An empty pre-queue places nobody: it needs no key.
                let key = if n == 0 {
                    self.draw_seed.clone()
                } else {
                    self.draw_key()?
                };
                let draw = Arc::new(Draw::new(&key, n));
                *cached = Some((figures.epoch, draw.clone()));
                Some(draw)
            }
        }
    }

    /// The deal's liveness window.
    pub fn window(deal: &Deal) -> Duration {
        crate::queue::liveness::window(deal.spec.queue.idle_grace.std())
    }

    /// The deal's state now, from the clock, the spec and the latest figures.
    pub fn state_now(&self, now: DateTime<Utc>) -> DealState {
        let sold_out = self.figures.borrow().sold_out();
        self.deal().state_at(now, sold_out)
    }
}

/// The Redis key prefix of a deal. The braces make it a hash tag, so all of a deal's keys stay
/// in one slot should the Redis ever be a cluster.
pub fn key_prefix(deal: &str) -> String {
    format!("td:{{{deal}}}:")
}
