//! The group-commit writer: confirmed orders reach PostgreSQL in batches, one transaction per
//! batch, so a burst of orders costs a handful of commits instead of one each, and the batch's
//! reservations are confirmed in Redis with one script call. A request waits for its batch to
//! commit before the shopper is told "confirmed".
//!
//! PostgreSQL decides what is sold: each batch moves the deal's sold units and each shopper's
//! holdings in the transaction that writes its orders, and refuses an order that would pass
//! the stock or the shopper's limit ([`allot`]), whatever Redis believed when it reserved.

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
    /// The purchase's key at the payment provider: a purchase given up earlier holds it in a
    /// `lapsed` row, and this order then conflicts with it.
    pub payment_key: String,
    pub payment_provider: String,
    pub payment_reference: String,
    /// The order's reservation in Redis, confirmed once the order is committed.
    pub reservation: String,
    /// The deal's stock, and the shopper's limit: PostgreSQL refuses the order beyond either.
    pub stock: i64,
    pub limit: i64,
    /// Past this, the order is no longer written (see [`COMMIT_WINDOW`]).
    pub not_after: tokio::time::Instant,
    /// Coupon deals: the order's code, committed with it.
    pub coupon: Option<Coupon>,
    /// Shipping and pickup: the details, committed with the order.
    pub delivery: Option<Delivery>,
}

/// How long after its payment an order may still be written. With [`BATCH_TIMEOUT`] it bounds
/// when a paid order can land in PostgreSQL at all, which is what lets reconciliation refund a
/// payment without an order once it is old enough (see `Payments::settled_after`); its fence in
/// PostgreSQL makes a commit later still lose.
pub const COMMIT_WINDOW: std::time::Duration = std::time::Duration::from_secs(5);

/// What became of one order in its batch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// The order is in PostgreSQL, recorded at this time.
    Committed(DateTime<Utc>),
    /// A row for this id, or for this shopper's idempotency key, was there first: the
    /// reservation lapsed, or the same request was committed before.
    Conflict,
    /// PostgreSQL refused the order: Redis reserved stock or allowance that its record says
    /// is not there (Redis came back behind). Nothing was written.
    Refused(Refusal),
    /// Nothing was written (the database could not be reached or refused the batch, or the
    /// order was reserved in an epoch that is over: Redis lost its data since).
    NotWritten(String),
    /// The commit was sent but its answer was lost: the order may or may not be in PostgreSQL.
    Unknown(String),
}

/// Why PostgreSQL refused an order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// Fewer units are left than the order asks for.
    SoldOut,
    /// The order would take the shopper past their limit.
    OverLimit,
}

/// One order as [`allot`] weighs it.
#[derive(Debug, Clone, Copy)]
pub struct Claim<'a> {
    pub shopper: &'a str,
    pub quantity: i64,
    pub limit: i64,
}

/// Decides, in batch order, which orders fit: each takes its units from what is left of `stock`
/// and from its shopper's allowance (`limit` less what `held` says they own, less what earlier
/// orders of the batch took). Returns the verdict of each order and the units taken in all.
pub fn allot(
    stock: i64,
    sold: i64,
    held: &HashMap<String, i64>,
    claims: &[Claim<'_>],
) -> (Vec<Result<(), Refusal>>, i64) {
    let mut taken = 0;
    let mut owns: HashMap<&str, i64> = HashMap::new();
    let verdicts = claims
        .iter()
        .map(|claim| {
            let owned = owns
                .entry(claim.shopper)
                .or_insert_with(|| held.get(claim.shopper).copied().unwrap_or(0));
            if *owned + claim.quantity > claim.limit {
                return Err(Refusal::OverLimit);
            }
            if sold + taken + claim.quantity > stock {
                return Err(Refusal::SoldOut);
            }
            *owned += claim.quantity;
            taken += claim.quantity;
            Ok(())
        })
        .collect();
    (verdicts, taken)
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
pub const BATCH_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(4);

impl Writer {
    /// Starts the writer; `batch_sizes` records how many orders each transaction carried, and
    /// `failures` counts the batches PostgreSQL did not take.
    pub fn start(
        pool: PgPool,
        batch_sizes: Histogram,
        failures: prometheus_client::metrics::counter::Counter,
        reservations: Reservations,
    ) -> Self {
        let (tx, rx) = mpsc::channel(4 * MAX_BATCH);
        tokio::spawn(run(pool, rx, batch_sizes, failures, reservations));
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
    failures: prometheus_client::metrics::counter::Counter,
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
        // One attempt carried on by two requests at once (a double click): it is written once,
        // and the twins answer as repeats of it.
        let mut ids = std::collections::HashSet::new();
        let twins: Vec<Request> = batch.extract_if(.., |r| !ids.insert(r.order.id)).collect();
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
        if outcomes
            .iter()
            .any(|o| matches!(o, Outcome::NotWritten(_) | Outcome::Unknown(_)))
        {
            failures.inc();
        }
        let committed: Vec<String> = batch
            .iter()
            .zip(&outcomes)
            .filter(|(_, outcome)| matches!(outcome, Outcome::Committed(_)))
            .map(|(request, _)| request.order.reservation.clone())
            .collect();
        reservations.confirm(&committed).await;
        let refused_in = batch
            .iter()
            .zip(&outcomes)
            .filter(|(_, outcome)| matches!(outcome, Outcome::Refused(_)))
            .map(|(request, _)| epoch_of(request.order.id))
            .max();
        if let Some(epoch) = refused_in {
            // Here rather than in the request, which may be gone by now.
            reservations.doubt(epoch, "PostgreSQL refused an order Redis had reserved");
        }
        let of_twin: HashMap<i64, Outcome> = batch
            .iter()
            .zip(&outcomes)
            .map(|(request, outcome)| (request.order.id, twin_outcome(outcome)))
            .collect();
        for twin in twins {
            let outcome = of_twin.get(&twin.order.id).cloned();
            let _ = twin.reply.send(outcome.unwrap_or(Outcome::Conflict));
        }
        for (request, outcome) in batch.drain(..).zip(outcomes) {
            let _ = request.reply.send(outcome);
        }
    }
}

/// What a twin of an order in the batch hears: a committed order is there first (so the twin
/// answers as a repeat of it); otherwise what the order heard.
fn twin_outcome(outcome: &Outcome) -> Outcome {
    match outcome {
        Outcome::Committed(_) => Outcome::Conflict,
        other => other.clone(),
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
    // Taken before the orders are written, so batches of every replica weigh their orders one
    // after the other against the same figures.
    let sold: i64 = match sqlx::query_scalar("SELECT sold FROM stock_ledger FOR UPDATE")
        .fetch_one(&mut *tx)
        .await
    {
        Ok(sold) => sold,
        Err(e) => {
            return all(Outcome::NotWritten(format!(
                "cannot read what is sold: {e}"
            )))
        }
    };
    let mut inserted: HashMap<i64, DateTime<Utc>> = match sqlx::query_as::<_, (i64, DateTime<Utc>)>(
        "INSERT INTO orders (id, shopper, quantity, unit_price, currency, status, idempotency_key, \
                             coupon_code, coupon_valid_until, payment_key) \
         SELECT id, shopper, quantity, unit_price, currency, 'confirmed', key, code, until, pay \
         FROM UNNEST($1::BIGINT[], $2::TEXT[], $3::INT[], $4::BIGINT[], $5::TEXT[], $6::TEXT[], \
                     $7::TEXT[], $8::TIMESTAMPTZ[], $9::TEXT[]) \
              AS o(id, shopper, quantity, unit_price, currency, key, code, until, pay) \
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
    .bind(orders.iter().map(|o| o.payment_key.clone()).collect::<Vec<_>>())
    .fetch_all(&mut *tx)
    .await
    {
        Ok(rows) => rows.into_iter().collect(),
        Err(e) => return all(Outcome::NotWritten(format!("cannot insert orders: {e}"))),
    };
    let refused = match weigh(&mut tx, &orders, &mut inserted, sold).await {
        Ok(refused) => refused,
        Err(e) => {
            return all(Outcome::NotWritten(format!(
                "cannot check the stock and limits: {e}"
            )))
        }
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
            None if refused.contains_key(&o.id) => Outcome::Refused(refused[&o.id]),
            None if epoch_of(o.id) != epoch => Outcome::NotWritten(
                "the order was reserved before Redis lost its data; it was not recorded".into(),
            ),
            None => Outcome::Conflict,
        })
        .collect()
}

/// Weighs the orders just inserted against the stock and each shopper's limit ([`allot`]):
/// deletes the rows of those refused (they leave `inserted`), and moves the sold units and
/// holdings by the rest. Returns the refused orders.
async fn weigh(
    tx: &mut sqlx::PgConnection,
    orders: &[&NewOrder],
    inserted: &mut HashMap<i64, DateTime<Utc>>,
    sold: i64,
) -> Result<HashMap<i64, Refusal>, sqlx::Error> {
    let written: Vec<&NewOrder> = orders
        .iter()
        .copied()
        .filter(|o| inserted.contains_key(&o.id))
        .collect();
    if written.is_empty() {
        return Ok(HashMap::new());
    }
    let mut shoppers: Vec<String> = written.iter().map(|o| o.shopper.clone()).collect();
    shoppers.sort();
    shoppers.dedup();
    let held: HashMap<String, i64> = sqlx::query_as::<_, (String, i64)>(
        "SELECT shopper, units FROM holdings WHERE shopper = ANY($1) ORDER BY shopper FOR UPDATE",
    )
    .bind(&shoppers)
    .fetch_all(&mut *tx)
    .await?
    .into_iter()
    .collect();
    let claims: Vec<Claim> = written
        .iter()
        .map(|o| Claim {
            shopper: &o.shopper,
            quantity: o.quantity as i64,
            limit: o.limit,
        })
        .collect();
    // Every order of a batch is for the same deal; its stock is the latest the replica read.
    let stock = written.iter().map(|o| o.stock).min().unwrap_or(0);
    let (verdicts, taken) = allot(stock, sold, &held, &claims);
    let mut refused = HashMap::new();
    let mut gained: HashMap<&str, i64> = HashMap::new();
    for (order, verdict) in written.iter().zip(verdicts) {
        match verdict {
            Ok(()) => *gained.entry(&order.shopper).or_default() += order.quantity as i64,
            Err(refusal) => {
                refused.insert(order.id, refusal);
            }
        }
    }
    if !refused.is_empty() {
        let ids: Vec<i64> = refused.keys().copied().collect();
        sqlx::query("DELETE FROM orders WHERE id = ANY($1)")
            .bind(&ids)
            .execute(&mut *tx)
            .await?;
        for id in &ids {
            inserted.remove(id);
        }
    }
    if taken > 0 {
        sqlx::query("UPDATE stock_ledger SET sold = sold + $1")
            .bind(taken)
            .execute(&mut *tx)
            .await?;
        let (who, units): (Vec<&str>, Vec<i64>) = gained.into_iter().unzip();
        sqlx::query(
            "INSERT INTO holdings (shopper, units) SELECT * FROM UNNEST($1::TEXT[], $2::BIGINT[]) \
             ON CONFLICT (shopper) DO UPDATE SET units = holdings.units + EXCLUDED.units",
        )
        .bind(&who)
        .bind(&units)
        .execute(&mut *tx)
        .await?;
    }
    Ok(refused)
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

    fn claim(shopper: &str, quantity: i64) -> Claim<'_> {
        Claim {
            shopper,
            quantity,
            limit: 2,
        }
    }

    #[test]
    fn orders_past_the_stock_are_refused_in_batch_order() {
        let (verdicts, taken) = allot(
            10,
            8,
            &HashMap::new(),
            &[claim("a", 1), claim("b", 2), claim("c", 1), claim("d", 1)],
        );
        assert_eq!(
            verdicts,
            vec![Ok(()), Err(Refusal::SoldOut), Ok(()), Err(Refusal::SoldOut)]
        );
        assert_eq!(taken, 2);
    }

    #[test]
    fn a_shopper_past_the_limit_is_refused_counting_what_they_own_and_the_batch() {
        let held = HashMap::from([("a".to_string(), 1)]);
        let (verdicts, taken) = allot(
            100,
            0,
            &held,
            &[claim("a", 1), claim("a", 1), claim("b", 2), claim("b", 1)],
        );
        assert_eq!(
            verdicts,
            vec![
                Ok(()),
                Err(Refusal::OverLimit),
                Ok(()),
                Err(Refusal::OverLimit)
            ]
        );
        assert_eq!(taken, 3);
    }

    #[test]
    fn nothing_fits_when_the_record_is_already_past_the_stock() {
        let (verdicts, taken) = allot(5, 7, &HashMap::new(), &[claim("a", 1)]);
        assert_eq!(verdicts, vec![Err(Refusal::SoldOut)]);
        assert_eq!(taken, 0);
    }

    #[test]
    fn an_order_id_carries_its_epoch() {
        assert_eq!(epoch_of(1_000_000_001), 1);
        assert_eq!(epoch_of(12_999_999_999), 12);
        assert_eq!(epoch_of(42), 0, "ids from before epochs belong to none");
    }
}
