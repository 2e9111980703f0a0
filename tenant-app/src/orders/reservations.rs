//! Reservations in Redis: the order ids, and the three scripts that reserve stock, confirm a
//! committed batch and give stock back. A reservation is one member of the sorted set `res`,
//! scored by its expiry and carrying everything confirming or releasing it needs (see
//! `reserve.lua`), so an order costs Redis a handful of commands and no key of its own.

use std::{
    collections::HashSet,
    sync::{
        atomic::{AtomicI64, Ordering},
        Arc, Mutex,
    },
};

use redis::aio::ConnectionManager;
use sqlx::PgPool;

use crate::{db, error::Error, scripts::Scripts};

/// Order ids are `<epoch><9 digits>`: a block of a million per replica (`<block, 3 digits><6
/// digits>`), taken from Redis once per million orders.
const IDS_PER_BLOCK: i64 = 1_000_000;
const IDS_PER_EPOCH: i64 = 1_000_000_000;

/// A reservation as stored: `<id>|<qty>|<limit>|<units held after it>|<admission>|<key>|<shopper>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reservation {
    pub id: i64,
    pub quantity: i32,
    pub key: String,
    pub shopper: String,
}

impl Reservation {
    /// Reads a stored reservation; `None` when it is not one.
    pub fn parse(stored: &str) -> Option<Self> {
        let mut fields = stored.splitn(7, '|');
        let id = fields.next()?.parse().ok()?;
        let quantity = fields.next()?.parse().ok()?;
        let _limit = fields.next()?;
        let _held = fields.next()?;
        let _admission = fields.next()?;
        let key = fields.next()?.to_owned();
        let shopper = fields.next()?.to_owned();
        Some(Self {
            id,
            quantity,
            key,
            shopper,
        })
    }

    /// What an idempotency key holds for an order PostgreSQL has (written by a restore): it
    /// names the order, and no reservation in `res` is ever equal to it (limit, units held
    /// and admission are 0), so nothing confirms or releases it.
    pub fn committed(id: i64, quantity: i32, key: &str, shopper: &str) -> String {
        format!("{id}|{quantity}|0|0|0|{key}|{shopper}")
    }
}

/// No epoch doubted.
const NO_DOUBT: i64 = i64::MIN;

/// What an idempotency key names in Redis.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lookup {
    /// False while Redis has no figures (being restored).
    pub restored: bool,
    /// The order id and the reservation the key holds.
    pub named: Option<(i64, String)>,
}

/// What reserving answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reserved {
    /// Reserved under `id`; `stored` is the reservation to confirm or release.
    Now {
        id: i64,
        stored: String,
    },
    /// The idempotency key was used before, for order `id` with reservation `stored` (which may
    /// be pending still, or confirmed or released since).
    Existing {
        id: i64,
        stored: String,
    },
    NotAdmitted,
    OverLimit,
    SoldOut,
    /// Nothing is available, but units are reserved by orders in progress and may come back:
    /// the admission stays.
    Held,
    Insufficient,
    /// The stock figures are being restored, or this epoch's ids are spent.
    Unavailable,
}

/// A reservation request.
pub struct Request<'a> {
    pub shopper: &'a str,
    pub admission: u64,
    pub admission_epoch: i64,
    pub quantity: u32,
    pub limit: u32,
    pub key: &'a str,
    pub now_ms: i64,
    pub ttl_ms: i64,
}

#[derive(Debug, Clone, Copy)]
struct Block {
    epoch: i64,
    block: i64,
    next: i64,
}

/// The deal's reservations; cheap to clone (the id block is shared).
#[derive(Clone)]
pub struct Reservations {
    redis: ConnectionManager,
    db: PgPool,
    scripts: Arc<Scripts>,
    prefix: String,
    block: Arc<Mutex<Option<Block>>>,
    /// Set when Redis was caught disagreeing with PostgreSQL (an id block handed out twice, an
    /// order PostgreSQL refused): the figures are restored into a new epoch.
    doubted: Arc<AtomicI64>,
    /// Attempts a request of this replica is carrying now.
    carried: Arc<Mutex<HashSet<i64>>>,
}

/// An attempt a request is carrying; let go when dropped.
pub struct Carrying {
    carried: Arc<Mutex<HashSet<i64>>>,
    id: i64,
}

impl Drop for Carrying {
    fn drop(&mut self) {
        self.carried
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&self.id);
    }
}

impl Reservations {
    pub fn new(
        redis: ConnectionManager,
        db: PgPool,
        scripts: Arc<Scripts>,
        prefix: String,
    ) -> Self {
        Self {
            redis,
            db,
            scripts,
            prefix,
            block: Arc::default(),
            doubted: Arc::new(AtomicI64::new(NO_DOUBT)),
            carried: Arc::default(),
        }
    }

    /// Marks attempt `id` as carried by the calling request; `None` while another request of
    /// this replica carries it (the same order sent twice at once), which then waits for it
    /// instead of carrying it a second time.
    pub fn carry(&self, id: i64) -> Option<Carrying> {
        let fresh = self
            .carried
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(id);
        fresh.then(|| Carrying {
            carried: self.carried.clone(),
            id,
        })
    }

    /// Redis, in `epoch`, said something PostgreSQL's record contradicts: its figures are
    /// restored, unless they were restored into a newer epoch meanwhile.
    pub fn doubt(&self, epoch: i64, why: &str) {
        if self.doubted.fetch_max(epoch, Ordering::SeqCst) < epoch {
            tracing::warn!(
                epoch,
                why,
                "Redis disagrees with PostgreSQL; restoring its figures"
            );
        }
    }

    /// The newest epoch doubted since the last call (which clears it).
    pub fn take_doubt(&self) -> Option<i64> {
        let epoch = self.doubted.swap(NO_DOUBT, Ordering::SeqCst);
        (epoch != NO_DOUBT).then_some(epoch)
    }

    /// The next order id, from this replica's block; a new block when it is spent (or none
    /// could be had: `None`, while the figures are being restored or the epoch's ids are spent).
    async fn next_id(&self) -> Result<Option<i64>, Error> {
        if let Some(id) = self.take_id() {
            return Ok(Some(id));
        }
        let (epoch, block): (i64, i64) = self
            .scripts
            .next_block
            .key(&self.prefix)
            .invoke_async(&mut self.redis.clone())
            .await?;
        if block == 0 {
            return Ok(None);
        }
        // Redis hands each block out once per epoch, unless it came back behind and hands it
        // out again: PostgreSQL remembers, and the second taker uses none of its ids.
        if !db::take_id_block(&self.db, epoch, block).await? {
            self.doubt(epoch, "a block of order ids was handed out twice");
            return Ok(None);
        }
        *self.block.lock().unwrap_or_else(|e| e.into_inner()) = Some(Block {
            epoch,
            block,
            next: 0,
        });
        Ok(self.take_id())
    }

    fn take_id(&self) -> Option<i64> {
        let mut current = self.block.lock().unwrap_or_else(|e| e.into_inner());
        let block = current.as_mut().filter(|b| b.next < IDS_PER_BLOCK)?;
        let id = block.epoch * IDS_PER_EPOCH + block.block * IDS_PER_BLOCK + block.next;
        block.next += 1;
        Some(id)
    }

    /// Reserves stock (`reserve.lua`). An id of an epoch that is over (Redis lost its data
    /// since this replica took its block) is refused by the script; the block is dropped and
    /// the reservation tried once more with a new one.
    pub async fn reserve(&self, request: &Request<'_>) -> Result<Reserved, Error> {
        for _ in 0..2 {
            let Some(id) = self.next_id().await? else {
                return Ok(Reserved::Unavailable);
            };
            let (outcome, id, stored): (String, i64, String) = self
                .scripts
                .reserve
                .key(&self.prefix)
                .arg(request.shopper)
                .arg(request.admission)
                .arg(request.admission_epoch)
                .arg(request.quantity)
                .arg(request.limit)
                .arg(request.key)
                .arg(request.now_ms)
                .arg(request.ttl_ms)
                .arg(id)
                .invoke_async(&mut self.redis.clone())
                .await?;
            return Ok(match outcome.as_str() {
                "reserved" => Reserved::Now { id, stored },
                "existing" => Reserved::Existing { id, stored },
                "not_admitted" => Reserved::NotAdmitted,
                "over_limit" => Reserved::OverLimit,
                "sold_out" => Reserved::SoldOut,
                "held" => Reserved::Held,
                "insufficient" => Reserved::Insufficient,
                "stale_id" => {
                    *self.block.lock().unwrap_or_else(|e| e.into_inner()) = None;
                    continue;
                }
                _ => Reserved::Unavailable,
            });
        }
        Ok(Reserved::Unavailable)
    }

    /// Confirms the reservations of committed orders, all in one call (`confirm.lua`).
    pub async fn confirm(&self, stored: &[String]) {
        if stored.is_empty() {
            return;
        }
        let mut call = self.scripts.confirm.key(&self.prefix);
        for reservation in stored {
            call.arg(reservation);
        }
        let result: Result<i64, _> = call.invoke_async(&mut self.redis.clone()).await;
        if let Err(error) = result {
            // The orders are safe in PostgreSQL; the sweeper confirms each reservation when it
            // lapses.
            tracing::warn!(orders = stored.len(), %error, "cannot confirm reservations in Redis");
        }
    }

    /// Gives a reservation's stock back (`release.lua`).
    pub async fn release(&self, stored: &str) {
        let result: Result<i64, _> = self
            .scripts
            .release
            .key(&self.prefix)
            .arg(stored)
            .invoke_async(&mut self.redis.clone())
            .await;
        if let Err(error) = result {
            tracing::warn!(%error, "cannot release the reservation; it will lapse");
        }
    }

    /// The order id a shopper's idempotency key names in Redis (an attempt in flight or
    /// confirmed in this epoch), if any.
    pub async fn attempt(&self, shopper: &str, key: &str) -> Result<Option<i64>, Error> {
        Ok(self.lookup(shopper, key).await?.named.map(|(id, _)| id))
    }

    /// What a shopper's idempotency key names in Redis, and whether Redis has its figures
    /// (without them, a key not found says nothing).
    pub async fn lookup(&self, shopper: &str, key: &str) -> Result<Lookup, Error> {
        let (named, epoch): (Option<String>, Option<String>) = redis::cmd("HMGET")
            .arg(format!("{}deal", self.prefix))
            .arg(format!("k:{shopper}:{key}"))
            .arg("epoch")
            .query_async(&mut self.redis.clone())
            .await?;
        Ok(Lookup {
            restored: epoch.is_some(),
            named: named.and_then(|stored| Reservation::parse(&stored).map(|r| (r.id, stored))),
        })
    }

    /// Writes the key of an order PostgreSQL has back into Redis, after an attempt of the same
    /// purchase gave its own up: the same order sent again then finds it at once. The deal's
    /// `keys` count rises with it, so replicas list its shopper among the buyers again.
    pub async fn remember(&self, shopper: &str, key: &str, id: i64, quantity: i32) {
        let stored = Reservation::committed(id, quantity, key, shopper);
        let deal = format!("{}deal", self.prefix);
        let written: Result<(i64, i64), _> = redis::pipe()
            .atomic()
            .hset(&deal, format!("k:{shopper}:{key}"), stored)
            .hincr(&deal, "keys", 1)
            .query_async(&mut self.redis.clone())
            .await;
        if let Err(error) = written {
            // The order is still found in PostgreSQL by the paths that look there.
            tracing::debug!(%error, "cannot write an order's key back into Redis");
        }
    }

    /// Until when a reservation holds (ms), while it waits for its order.
    pub async fn holds_until(&self, stored: &str) -> Result<Option<i64>, Error> {
        let score: Option<f64> = redis::cmd("ZSCORE")
            .arg(format!("{}res", self.prefix))
            .arg(stored)
            .query_async(&mut self.redis.clone())
            .await?;
        Ok(score.map(|s| s as i64))
    }

    /// Whether the idempotency key still names `id` (an attempt in flight or confirmed); it is
    /// gone once the attempt was given up.
    pub async fn key_names(&self, shopper: &str, key: &str, id: i64) -> Result<bool, Error> {
        Ok(self.attempt(shopper, key).await? == Some(id))
    }

    /// Whether a reservation is still waiting for its order (neither confirmed nor released).
    pub async fn pending(&self, stored: &str) -> Result<bool, Error> {
        let score: Option<f64> = redis::cmd("ZSCORE")
            .arg(format!("{}res", self.prefix))
            .arg(stored)
            .query_async(&mut self.redis.clone())
            .await?;
        Ok(score.is_some())
    }

    /// Reservations whose time ran out, at most `limit`.
    pub async fn lapsed(&self, now_ms: i64, limit: usize) -> Result<Vec<String>, Error> {
        Ok(redis::cmd("ZRANGEBYSCORE")
            .arg(format!("{}res", self.prefix))
            .arg("-inf")
            .arg(now_ms)
            .arg("LIMIT")
            .arg(0)
            .arg(limit)
            .query_async(&mut self.redis.clone())
            .await?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stored_reservation_reads_back() {
        let stored = "3000001007|2|4|2|17|key-1|jwt-a|b";
        assert_eq!(
            Reservation::parse(stored),
            Some(Reservation {
                id: 3_000_001_007,
                quantity: 2,
                key: "key-1".into(),
                shopper: "jwt-a|b".into(),
            })
        );
        assert_eq!(Reservation::parse("3000001007|2"), None);
        assert_eq!(Reservation::parse("x|2|4|2|17|k|s"), None);
    }
}
