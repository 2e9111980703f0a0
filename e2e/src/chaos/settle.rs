//! The promises, checked once a drill has settled: nothing in flight, then the stores compared
//! with each other, with the payment provider's ledger and with what the shoppers were told.

use std::{
    collections::{BTreeMap, BTreeSet},
    time::{Duration, Instant},
};

use timedeal_tenant_app::payments::sandbox::Ledger;

use super::shopper::Told;
use crate::{verify, Error};

/// Where a drill's deal keeps its state.
pub struct Stores<'a> {
    pub redis_url: &'a str,
    pub postgres_url: &'a str,
    /// The deal's Redis key prefix.
    pub prefix: &'a str,
    /// The deal's PostgreSQL schema, also its account with the payment provider.
    pub schema: &'a str,
    pub stock: i64,
    pub limit: i64,
}

/// Polls `check` until it holds, for at most `limit`.
async fn until<F, Fut>(limit: Duration, mut check: F) -> Result<bool, Error>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<bool, Error>>,
{
    let deadline = Instant::now() + limit;
    loop {
        if check().await? {
            return Ok(true);
        }
        if Instant::now() > deadline {
            return Ok(false);
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Waits until nothing is in flight, then checks every promise:
/// - confirmed units ≤ stock, and no shopper over the limit;
/// - every order a shopper was told is placed is in PostgreSQL, cancelled exactly when they were
///   told it is;
/// - Redis's figures (total, sold, reserved, what each shopper holds) equal PostgreSQL's;
/// - every payment in the provider's ledger belongs to a confirmed order or is refunded, every
///   cancelled order is refunded, and none twice.
pub async fn settled(stores: &Stores<'_>, ledger: &Ledger, told: &Told) -> Result<(), Error> {
    let db = sqlx::postgres::PgPoolOptions::new()
        .max_connections(2)
        .connect(stores.postgres_url)
        .await
        .map_err(Error::postgres("connect to PostgreSQL"))?;
    let mut redis = redis::Client::open(stores.redis_url)
        .map_err(Error::redis("open Redis"))?
        .get_multiplexed_async_connection()
        .await
        .map_err(Error::redis("connect to Redis"))?;
    let (schema, prefix) = (stores.schema, stores.prefix);

    let quiet = until(Duration::from_secs(60), || {
        let (db, mut redis) = (db.clone(), redis.clone());
        async move {
            let reserved = verify::stock_figures(&mut redis, prefix)
                .await
                .map(|(_, _, reserved)| reserved)
                .unwrap_or(None);
            let pending: i64 = sqlx::query_scalar(&format!(
                "SELECT COUNT(*) FROM {schema}.orders WHERE status = 'cancelling' \
                 OR (status = 'cancelled' AND NOT restocked)"
            ))
            .fetch_one(&db)
            .await
            .unwrap_or(1);
            Ok(reserved == Some(0) && pending == 0)
        }
    })
    .await?;
    if !quiet {
        return Err(Error::Broken(
            "reservations, cancellations or restocks did not settle within 60 s".into(),
        ));
    }

    let rows: Vec<(i64, String, i64, String)> = sqlx::query_as(&format!(
        "SELECT id, shopper, quantity::BIGINT, status FROM {schema}.orders WHERE status <> 'lapsed'"
    ))
    .fetch_all(&db)
    .await
    .map_err(Error::postgres("read the orders"))?;
    let mut broken = Vec::new();
    let mut owned: BTreeMap<String, i64> = BTreeMap::new();
    let mut confirmed = BTreeSet::new();
    for (id, shopper, quantity, status) in &rows {
        if status == "confirmed" {
            confirmed.insert(*id);
            *owned.entry(shopper.clone()).or_default() += quantity;
        }
    }
    let sold: i64 = owned.values().sum();
    if sold > stores.stock {
        broken.push(format!(
            "oversold: {sold} confirmed units for a stock of {}",
            stores.stock
        ));
    }
    for (shopper, units) in &owned {
        if *units > stores.limit {
            broken.push(format!(
                "shopper {shopper} owns {units}, over the limit of {}",
                stores.limit
            ));
        }
    }

    let status_of: BTreeMap<i64, &str> =
        rows.iter().map(|(id, _, _, s)| (*id, s.as_str())).collect();
    for id in told.confirmed.keys() {
        let expected = if told.cancelled.contains(id) {
            "cancelled"
        } else {
            "confirmed"
        };
        if status_of.get(id).copied() != Some(expected) {
            broken.push(format!(
                "order {id}, which a shopper was told is {expected}, is {:?} in PostgreSQL",
                status_of.get(id)
            ));
        }
    }

    let (total, redis_sold, _) = verify::stock_figures(&mut redis, prefix).await?;
    if total != Some(stores.stock) {
        broken.push(format!(
            "Redis holds a total of {total:?}, the deal {}",
            stores.stock
        ));
    }
    if redis_sold != Some(sold) {
        broken.push(format!("Redis says {redis_sold:?} sold, PostgreSQL {sold}"));
    }
    let held = verify::units_held(&mut redis, prefix).await?;
    if held != owned {
        broken.push(format!(
            "what shoppers hold in Redis ({} shoppers, {} units) differs from what they own in \
             PostgreSQL ({} shoppers, {} units)",
            held.len(),
            held.values().sum::<i64>(),
            owned.len(),
            sold
        ));
    }

    // Reconciliation refunds payments without an order some seconds after they were taken.
    let matched = until(Duration::from_secs(90), || async {
        Ok(ledger
            .charges(schema)
            .iter()
            .all(|c| c.refund.is_some() != confirmed.contains(&c.order_id)))
    })
    .await?;
    let charges = ledger.charges(schema);
    if !matched {
        for charge in charges
            .iter()
            .filter(|c| c.refund.is_some() == confirmed.contains(&c.order_id))
        {
            broken.push(format!(
                "payment {} of order {} is {} but the order is {}",
                charge.reference,
                charge.order_id,
                if charge.refund.is_some() {
                    "refunded"
                } else {
                    "standing"
                },
                status_of
                    .get(&charge.order_id)
                    .copied()
                    .unwrap_or("not in PostgreSQL")
            ));
        }
    }
    for id in &told.cancelled {
        if !charges
            .iter()
            .any(|c| c.order_id == *id && c.refund.is_some())
        {
            broken.push(format!("cancelled order {id} was not refunded"));
        }
    }
    let twice: Vec<(i64, i64)> = sqlx::query_as(&format!(
        "SELECT order_id, COUNT(*) FROM {schema}.refunds GROUP BY order_id HAVING COUNT(*) > 1"
    ))
    .fetch_all(&db)
    .await
    .map_err(Error::postgres("read the refunds"))?;
    if !twice.is_empty() {
        broken.push(format!("orders refunded more than once: {twice:?}"));
    }
    if broken.is_empty() {
        Ok(())
    } else {
        Err(Error::Broken(broken.join("; ")))
    }
}
