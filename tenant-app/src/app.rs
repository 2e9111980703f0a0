//! The state every request and background task shares.

use std::sync::Arc;

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
    payments::Payments,
    queue::{Figures, Queue, Settings},
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
    pub writer: Writer,
    pub payments: Payments,
    /// The deal's clock: Redis's, so replicas agree on when things happen.
    pub clock: Clock,
    pub signer: Signer,
    pub identifier: Identifier,
    pub metrics: Metrics,
    /// The latest deal-wide figures, refreshed by the background ticker; live updates wake on it.
    pub figures: watch::Receiver<Figures>,
    /// Prefix of every Redis key of the deal.
    pub prefix: String,
}

pub type SharedApp = Arc<App>;

/// How long Redis remembers an order's idempotency key and state.
pub const IDEMPOTENCY_TTL_MS: i64 = 24 * 3600 * 1000;

impl App {
    pub fn deal(&self) -> Arc<Deal> {
        self.deal.borrow().clone()
    }

    pub fn settings(deal: &Deal) -> Settings {
        Settings {
            admission_rate: deal.spec.queue.admission_rate.max(0) as u32,
            max_active: deal.spec.queue.max_active.max(0) as u32,
        }
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
