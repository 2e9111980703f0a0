//! The group-commit writer: confirmed orders reach PostgreSQL in batches, one transaction per
//! batch, so a burst of orders costs a handful of commits instead of one each, and the batch's
//! reservations are confirmed in Redis with one script call. A request waits for its batch to
//! commit before the shopper is told "confirmed".

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use prometheus_client::metrics::histogram::Histogram;
use sqlx::PgPool;
use tokio::sync::{mpsc, oneshot};

use crate::{
    db::Coupon,
    orders::{delivery::Delivery, reservations::Reservations},
};

/// An order ready to be recorded: its stock is reserved and its payment taken.
#[derive(Debug, Clone)]
pub struct NewOrder {
    pub id: i64,
    pub shopper: String,
    pub quantity: i32,
    pub unit_price: i64,
    pub currency: String,
    pub idempotency_key: String,
    pub payment_provider: String,
    pub payment_reference: String,
    /// The order's reservation in Redis, confirmed once the order is committed.
    pub reservation: String,
    /// Past this, the order is no longer written (see [`COMMIT_WINDOW`]).
    pub not_after: tokio::time::Instant,
    /// Coupon deals: the order's code, committed with it.
    pub coupon: Option<Coupon>,
    /// Shipping and pickup: the details, committed with the order.
    pub delivery: Option<Delivery>,
}

/// How long after its payment an order may still be written. With [`BATCH_TIMEOUT`] it bounds
/// when a paid order can land in PostgreSQL at all, which is what lets reconciliation refund a
/// payment without an order once [`SETTLED_AFTER`] has passed, with no race against a late
/// commit.
pub const COMMIT_WINDOW: std::time::Duration = std::time::Duration::from_secs(5);

/// A payment older than this has either its order in PostgreSQL or never will.
pub const SETTLED_AFTER: std::time::Duration = std::time::Duration::from_secs(15);

/// What became of one order in its batch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// The order is in PostgreSQL, recorded at this time.
    Committed(DateTime<Utc>),
    /// A row for this id, or for this shopper's idempotency key, was there first: the
    /// reservation lapsed, or the same request was committed before.
    Conflict,
    /// Nothing was written (the database could not be reached or refused the batch, or the
    /// order was reserved in an epoch that is over: Redis lost its data since).
    NotWritten(String),
    /// The commit was sent but its answer was lost: the order may or may not be in PostgreSQL.
    Unknown(String),
}

struct Request {
    order: NewOrder,
    reply: oneshot::Sender<Outcome>,
}

/// A handle to the writer; cheap to clone.
#[derive(Clone)]
pub struct Writer {
    tx: mpsc::Sender<Request>,
}

/// Most orders in one transaction.
const MAX_BATCH: usize = 512;

/// Order ids are `<epoch><9-digit sequence>` (see `reserve.lua`).
const IDS_PER_EPOCH: i64 = 1_000_000_000;

/// The epoch an order was reserved in.
pub fn epoch_of(order_id: i64) -> i64 {
    order_id / IDS_PER_EPOCH
}

/// The longest one batch may take. Past it, a batch that had not sent its commit wrote nothing;
/// one that had may or may not have landed.
const BATCH_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(4);

impl Writer {
    /// Starts the writer; `batch_sizes` records how many orders each transaction carried.
    pub fn start(pool: PgPool, batch_sizes: Histogram, reservations: Reservations) -> Self {
        let (tx, rx) = mpsc::channel(4 * MAX_BATCH);
        tokio::spawn(run(pool, rx, batch_sizes, reservations));
        Self { tx }
    }

    /// Records the order, returning once its batch has committed (or failed).
    pub async fn commit(&self, order: NewOrder) -> Outcome {
        let (reply, answer) = oneshot::channel();
        if self.tx.send(Request { order, reply }).await.is_err() {
            return Outcome::NotWritten("the order writer has stopped".into());
        }
        answer
            .await
            .unwrap_or_else(|_| Outcome::Unknown("the order writer stopped mid-batch".into()))
    }
}

async fn run(
    pool: PgPool,
    mut rx: mpsc::Receiver<Request>,
    batch_sizes: Histogram,
    reservations: Reservations,
) {
    let mut batch = Vec::with_capacity(MAX_BATCH);
    // Whatever queued up while the previous batch was committing forms the next batch: no
    // artificial delay, so a lone order commits at once.
    while rx.recv_many(&mut batch, MAX_BATCH).await > 0 {
        let now = tokio::time::Instant::now();
        for late in batch.extract_if(.., |request| request.order.not_after <= now) {
            let _ = late.reply.send(Outcome::NotWritten(
                "the database was too slow to take the order in time".into(),
            ));
        }
        if batch.is_empty() {
            continue;
        }
        batch_sizes.observe(batch.len() as f64);
        let orders: Vec<&NewOrder> = batch.iter().map(|r| &r.order).collect();
        let committing = std::sync::atomic::AtomicBool::new(false);
        let outcomes =
            match tokio::time::timeout(BATCH_TIMEOUT, write_batch(&pool, &orders, &committing))
                .await
            {
                Ok(outcomes) => outcomes,
                Err(_) => {
                    let reason = format!(
                        "PostgreSQL did not answer within {} s",
                        BATCH_TIMEOUT.as_secs()
                    );
                    let outcome = if committing.load(std::sync::atomic::Ordering::SeqCst) {
                        Outcome::Unknown(reason)
                    } else {
                        Outcome::NotWritten(reason)
                    };
                    vec![outcome; orders.len()]
                }
            };
        let committed: Vec<String> = batch
            .iter()
            .zip(&outcomes)
            .filter(|(_, outcome)| matches!(outcome, Outcome::Committed(_)))
            .map(|(request, _)| request.order.reservation.clone())
            .collect();
        reservations.confirm(&committed).await;
        for (request, outcome) in batch.drain(..).zip(outcomes) {
            let _ = request.reply.send(outcome);
        }
    }
}

async fn write_batch(
    pool: &PgPool,
    all_orders: &[&NewOrder],
    committing: &std::sync::atomic::AtomicBool,
) -> Vec<Outcome> {
    let all = |outcome: Outcome| vec![outcome; all_orders.len()];
    let mut tx = match pool.begin().await {
        Ok(tx) => tx,
        Err(e) => return all(Outcome::NotWritten(format!("cannot reach PostgreSQL: {e}"))),
    };
    // Held shared until the commit: a restore of Redis's figures waits for this batch, and no
    // order of an epoch that ended lands after it.
    let epoch: i64 = match sqlx::query_scalar("SELECT epoch FROM redis_epoch FOR SHARE")
        .fetch_one(&mut *tx)
        .await
    {
        Ok(epoch) => epoch,
        Err(e) => return all(Outcome::NotWritten(format!("cannot read the epoch: {e}"))),
    };
    let orders: Vec<&NewOrder> = all_orders
        .iter()
        .copied()
        .filter(|o| epoch_of(o.id) == epoch)
        .collect();
    let inserted: HashMap<i64, DateTime<Utc>> = match sqlx::query_as::<_, (i64, DateTime<Utc>)>(
        "INSERT INTO orders (id, shopper, quantity, unit_price, currency, status, idempotency_key, \
                             coupon_code, coupon_valid_until) \
         SELECT id, shopper, quantity, unit_price, currency, 'confirmed', key, code, until \
         FROM UNNEST($1::BIGINT[], $2::TEXT[], $3::INT[], $4::BIGINT[], $5::TEXT[], $6::TEXT[], \
                     $7::TEXT[], $8::TIMESTAMPTZ[]) \
              AS o(id, shopper, quantity, unit_price, currency, key, code, until) \
         ON CONFLICT DO NOTHING RETURNING id, created_at",
    )
    .bind(orders.iter().map(|o| o.id).collect::<Vec<_>>())
    .bind(orders.iter().map(|o| o.shopper.clone()).collect::<Vec<_>>())
    .bind(orders.iter().map(|o| o.quantity).collect::<Vec<_>>())
    .bind(orders.iter().map(|o| o.unit_price).collect::<Vec<_>>())
    .bind(orders.iter().map(|o| o.currency.clone()).collect::<Vec<_>>())
    .bind(orders.iter().map(|o| o.idempotency_key.clone()).collect::<Vec<_>>())
    .bind(
        orders
            .iter()
            .map(|o| o.coupon.as_ref().map(|c| c.code.clone()))
            .collect::<Vec<_>>(),
    )
    .bind(
        orders
            .iter()
            .map(|o| o.coupon.as_ref().map(|c| c.valid_until))
            .collect::<Vec<_>>(),
    )
    .fetch_all(&mut *tx)
    .await
    {
        Ok(rows) => rows.into_iter().collect(),
        Err(e) => return all(Outcome::NotWritten(format!("cannot insert orders: {e}"))),
    };
    if let Err(e) = write_deliveries(&mut tx, &orders, &inserted).await {
        return all(Outcome::NotWritten(format!(
            "cannot insert delivery details: {e}"
        )));
    }
    // A free order (a coupon at price 0) took no payment.
    let written: Vec<&&NewOrder> = orders
        .iter()
        .filter(|o| inserted.contains_key(&o.id) && o.unit_price > 0)
        .collect();
    if let Err(e) = sqlx::query(
        "INSERT INTO payments (order_id, provider, reference, amount, currency) \
         SELECT * FROM UNNEST($1::BIGINT[], $2::TEXT[], $3::TEXT[], $4::BIGINT[], $5::TEXT[])",
    )
    .bind(written.iter().map(|o| o.id).collect::<Vec<_>>())
    .bind(
        written
            .iter()
            .map(|o| o.payment_provider.clone())
            .collect::<Vec<_>>(),
    )
    .bind(
        written
            .iter()
            .map(|o| o.payment_reference.clone())
            .collect::<Vec<_>>(),
    )
    .bind(
        written
            .iter()
            .map(|o| o.quantity as i64 * o.unit_price)
            .collect::<Vec<_>>(),
    )
    .bind(
        written
            .iter()
            .map(|o| o.currency.clone())
            .collect::<Vec<_>>(),
    )
    .execute(&mut *tx)
    .await
    {
        return all(Outcome::NotWritten(format!("cannot insert payments: {e}")));
    }
    committing.store(true, std::sync::atomic::Ordering::SeqCst);
    if let Err(e) = tx.commit().await {
        return all(Outcome::Unknown(format!(
            "the commit's answer was lost: {e}"
        )));
    }
    all_orders
        .iter()
        .map(|o| match inserted.get(&o.id) {
            Some(at) => Outcome::Committed(*at),
            None if epoch_of(o.id) != epoch => Outcome::NotWritten(
                "the order was reserved before Redis lost its data; it was not recorded".into(),
            ),
            None => Outcome::Conflict,
        })
        .collect()
}

/// The delivery details of the orders just inserted, in the same transaction.
async fn write_deliveries(
    tx: &mut sqlx::PgConnection,
    orders: &[&NewOrder],
    inserted: &HashMap<i64, DateTime<Utc>>,
) -> Result<(), sqlx::Error> {
    let with: Vec<(i64, &Delivery)> = orders
        .iter()
        .filter(|o| inserted.contains_key(&o.id))
        .filter_map(|o| o.delivery.as_ref().map(|d| (o.id, d)))
        .collect();
    if with.is_empty() {
        return Ok(());
    }
    let address = |pick: fn(&crate::orders::delivery::Address) -> &String| {
        with.iter()
            .map(|(_, d)| d.address.as_ref().map(|a| pick(a).clone()))
            .collect::<Vec<_>>()
    };
    sqlx::query(
        "INSERT INTO deliveries (order_id, name, phone, line1, line2, city, postal_code, country) \
         SELECT * FROM UNNEST($1::BIGINT[], $2::TEXT[], $3::TEXT[], $4::TEXT[], $5::TEXT[], \
                              $6::TEXT[], $7::TEXT[], $8::TEXT[])",
    )
    .bind(with.iter().map(|(id, _)| *id).collect::<Vec<_>>())
    .bind(with.iter().map(|(_, d)| d.name.clone()).collect::<Vec<_>>())
    .bind(
        with.iter()
            .map(|(_, d)| d.phone.clone())
            .collect::<Vec<_>>(),
    )
    .bind(address(|a| &a.line1))
    .bind(address(|a| &a.line2))
    .bind(address(|a| &a.city))
    .bind(address(|a| &a.postal_code))
    .bind(address(|a| &a.country))
    .execute(tx)
    .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_order_id_carries_its_epoch() {
        assert_eq!(epoch_of(1_000_000_001), 1);
        assert_eq!(epoch_of(12_999_999_999), 12);
        assert_eq!(epoch_of(42), 0, "ids from before epochs belong to none");
    }
}
