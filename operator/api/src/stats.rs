//! The figures a storefront reports at `/internal/stats` and the operator copies into the
//! TimeDeal's status. One type for both ends, so the two cannot drift apart.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::{OrderFigures, QueueFigures, StockFigures};

/// A storefront's figures at one moment.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct StorefrontStats {
    /// The deal's name.
    pub deal: String,
    /// What shoppers can do now: `upcoming`, `live`, `sold_out`, `ended` or `suspended`.
    pub state: String,
    pub stock: StockFigures,
    pub queue: QueueFigures,
    pub orders: OrderFigures,
    /// Confirmed, uncancelled sales, in the currency's smallest unit.
    pub revenue: i64,
    pub currency: String,
    /// When the figures were read.
    pub at: DateTime<Utc>,
}

impl StorefrontStats {
    /// The storefront has sold every unit.
    pub fn sold_out(&self) -> bool {
        self.state == "sold_out"
    }
}

/// Every reading of a deal's figures the operator takes, kept in the platform PostgreSQL so the
/// portal can chart a sale's orders, queue and stock over time. No shopper appears in it.
pub const SAMPLES_DDL: [&str; 2] = [
    "CREATE SCHEMA IF NOT EXISTS timedeal_platform",
    "CREATE TABLE IF NOT EXISTS timedeal_platform.figure_samples (\
     uid text NOT NULL, at timestamptz NOT NULL, sold bigint NOT NULL, remaining bigint NOT NULL, \
     waiting bigint NOT NULL, confirmed bigint NOT NULL, PRIMARY KEY (uid, at))",
];

/// One point of a sale's history, as the portal charts it.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct Sample {
    pub at: DateTime<Utc>,
    pub sold: i64,
    pub remaining: i64,
    pub waiting: i64,
    pub confirmed: i64,
}

impl From<&StorefrontStats> for Sample {
    fn from(stats: &StorefrontStats) -> Self {
        Self {
            at: stats.at,
            sold: stats.stock.sold,
            remaining: stats.stock.remaining,
            waiting: stats.queue.waiting,
            confirmed: stats.orders.confirmed,
        }
    }
}

/// What a storefront replica serves, as it answers `GET` and `PUT /internal/deal`: the operator
/// counts a change as delivered once every ready replica reports its revision.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct DealServed {
    /// The deal's name.
    pub deal: String,
    /// The revision of the deal document served (`timedeal.dev/revision`; 0 without one).
    pub revision: i64,
    /// Whether the replica admits no one (`spec.suspend`, or approval taken back).
    pub suspended: bool,
}
