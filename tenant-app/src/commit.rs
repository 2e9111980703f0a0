//! The group-commit writer: confirmed orders reach PostgreSQL in batches, one transaction per
//! batch, so a burst of orders costs a handful of commits instead of one each. A request waits
//! for its batch to commit before the shopper is told "confirmed".

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use prometheus_client::metrics::histogram::Histogram;
use sqlx::PgPool;
use tokio::sync::{mpsc, oneshot};

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
}

/// What became of one order in its batch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// The order is in PostgreSQL, recorded at this time.
    Committed(DateTime<Utc>),
    /// A row for this id, or for this shopper's idempotency key, was there first: the
    /// reservation lapsed, or the same request was committed before.
    Conflict,
    /// Nothing was written (the database could not be reached or refused the batch).
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

impl Writer {
    /// Starts the writer; `batch_sizes` records how many orders each transaction carried.
    pub fn start(pool: PgPool, batch_sizes: Histogram) -> Self {
        let (tx, rx) = mpsc::channel(4 * MAX_BATCH);
        tokio::spawn(run(pool, rx, batch_sizes));
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

async fn run(pool: PgPool, mut rx: mpsc::Receiver<Request>, batch_sizes: Histogram) {
    let mut batch = Vec::with_capacity(MAX_BATCH);
    // Whatever queued up while the previous batch was committing forms the next batch: no
    // artificial delay, so a lone order commits at once.
    while rx.recv_many(&mut batch, MAX_BATCH).await > 0 {
        batch_sizes.observe(batch.len() as f64);
        let orders: Vec<&NewOrder> = batch.iter().map(|r| &r.order).collect();
        let outcomes = write_batch(&pool, &orders).await;
        for (request, outcome) in batch.drain(..).zip(outcomes) {
            let _ = request.reply.send(outcome);
        }
    }
}

async fn write_batch(pool: &PgPool, orders: &[&NewOrder]) -> Vec<Outcome> {
    let all = |outcome: Outcome| vec![outcome; orders.len()];
    let mut tx = match pool.begin().await {
        Ok(tx) => tx,
        Err(e) => return all(Outcome::NotWritten(format!("cannot reach PostgreSQL: {e}"))),
    };
    let inserted: HashMap<i64, DateTime<Utc>> = match sqlx::query_as::<_, (i64, DateTime<Utc>)>(
        "INSERT INTO orders (id, shopper, quantity, unit_price, currency, status, idempotency_key) \
         SELECT id, shopper, quantity, unit_price, currency, 'confirmed', key \
         FROM UNNEST($1::BIGINT[], $2::TEXT[], $3::INT[], $4::BIGINT[], $5::TEXT[], $6::TEXT[]) \
              AS o(id, shopper, quantity, unit_price, currency, key) \
         ON CONFLICT DO NOTHING RETURNING id, created_at",
    )
    .bind(orders.iter().map(|o| o.id).collect::<Vec<_>>())
    .bind(orders.iter().map(|o| o.shopper.clone()).collect::<Vec<_>>())
    .bind(orders.iter().map(|o| o.quantity).collect::<Vec<_>>())
    .bind(orders.iter().map(|o| o.unit_price).collect::<Vec<_>>())
    .bind(orders.iter().map(|o| o.currency.clone()).collect::<Vec<_>>())
    .bind(orders.iter().map(|o| o.idempotency_key.clone()).collect::<Vec<_>>())
    .fetch_all(&mut *tx)
    .await
    {
        Ok(rows) => rows.into_iter().collect(),
        Err(e) => return all(Outcome::NotWritten(format!("cannot insert orders: {e}"))),
    };
    let written: Vec<&&NewOrder> = orders
        .iter()
        .filter(|o| inserted.contains_key(&o.id))
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
    if let Err(e) = tx.commit().await {
        return all(Outcome::Unknown(format!(
            "the commit's answer was lost: {e}"
        )));
    }
    orders
        .iter()
        .map(|o| match inserted.get(&o.id) {
            Some(at) => Outcome::Committed(*at),
            None => Outcome::Conflict,
        })
        .collect()
}
