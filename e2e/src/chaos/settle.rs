//! The promises, checked once a drill has settled: nothing in flight, then the stores compared
//! with each other, with the payment provider's ledger and with what the shoppers were told.

use std::{
    collections::{BTreeMap, BTreeSet},
    time::{Duration, Instant},
};

use timedeal_tenant_app::payments::{sandbox::Ledger, Charge, State};

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
/// - confirmed units ≤ stock, and no shopper over the limit; PostgreSQL's stock ledger and
///   holdings agree with its orders;
/// - every order a shopper was told is placed is in PostgreSQL, cancelled exactly when they were
///   told it is, and no order was made under a key whose shopper was told it is refused;
/// - Redis's figures (total, sold, reserved, what each shopper holds) equal PostgreSQL's;
/// - every payment in the provider's ledger is taken exactly when its order is confirmed (one
///   payment per purchase, the rest voided or refunded), every cancelled order is refunded, and
///   none twice.
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

    // A refusal is final: no order was made under its key after all.
    let refused: Vec<String> = told.refused.iter().cloned().collect();
    let made: Vec<(i64, String)> = sqlx::query_as(&format!(
        "SELECT id, idempotency_key FROM {schema}.orders \
         WHERE status <> 'lapsed' AND idempotency_key = ANY($1)"
    ))
    .bind(&refused)
    .fetch_all(&db)
    .await
    .map_err(Error::postgres("look for orders of refused keys"))?;
    for (id, key) in made {
        broken.push(format!(
            "order {id} was made under key {key}, whose shopper was told it is refused"
        ));
    }

    // PostgreSQL's own figures, which decide every commit, agree with its orders.
    let ledger_sold: i64 = sqlx::query_scalar(&format!("SELECT sold FROM {schema}.stock_ledger"))
        .fetch_one(&db)
        .await
        .map_err(Error::postgres("read the stock ledger"))?;
    if ledger_sold != sold {
        broken.push(format!(
            "the stock ledger says {ledger_sold} sold, the orders {sold}"
        ));
    }
    let holdings: BTreeMap<String, i64> = sqlx::query_as::<_, (String, i64)>(&format!(
        "SELECT shopper, units FROM {schema}.holdings WHERE units <> 0"
    ))
    .fetch_all(&db)
    .await
    .map_err(Error::postgres("read the holdings"))?
    .into_iter()
    .collect();
    if holdings != owned {
        broken.push(format!(
            "the holdings ({} shoppers, {} units) differ from the orders ({} shoppers, {} units)",
            holdings.len(),
            holdings.values().sum::<i64>(),
            owned.len(),
            sold
        ));
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

    // Every payment the provider holds belongs to one purchase (its key). The payment of a
    // confirmed order is taken; any other is given back (voided or refunded), by the order
    // path at once or by reconciliation once it is old enough.
    let recorded: Vec<(String, i64, String)> = sqlx::query_as(&format!(
        "SELECT p.reference, o.id, o.status FROM {schema}.payments p \
         JOIN {schema}.orders o ON o.id = p.order_id"
    ))
    .fetch_all(&db)
    .await
    .map_err(Error::postgres("read the payments"))?;
    let order_of: BTreeMap<String, (i64, String)> = recorded
        .into_iter()
        .map(|(reference, id, status)| (reference, (id, status)))
        .collect();
    let wrong = |charges: &[Charge]| -> Vec<String> {
        charges
            .iter()
            .filter_map(|charge| {
                let order = order_of.get(&charge.reference);
                let confirmed = order.is_some_and(|(_, status)| status == "confirmed");
                // Taken for a confirmed order; otherwise given back, or never held.
                let settled = if confirmed {
                    charge.taken()
                } else {
                    matches!(
                        charge.state,
                        State::Voided | State::Refunded | State::Declined
                    )
                };
                (!settled).then(|| {
                    format!(
                        "payment {} (purchase {}, first order id {}) is {:?} but its order is {}",
                        charge.reference,
                        charge.key,
                        charge.order_id,
                        charge.state,
                        order.map_or("not in PostgreSQL".to_owned(), |(id, status)| {
                            format!("{id}, {status}")
                        })
                    )
                })
            })
            .collect()
    };
    let matched = until(Duration::from_secs(90), || async {
        Ok(wrong(&ledger.charges(schema)).is_empty())
    })
    .await?;
    let charges = ledger.charges(schema);
    if !matched {
        broken.extend(wrong(&charges));
    }
    let paid: BTreeSet<i64> = order_of.values().map(|(id, _)| *id).collect();
    let taken = charges.iter().filter(|c| c.taken()).count();
    let paid_confirmed = confirmed.iter().filter(|id| paid.contains(id)).count();
    if taken != paid_confirmed {
        broken.push(format!(
            "{taken} payments are taken for {paid_confirmed} confirmed paid orders"
        ));
    }
    for id in &told.cancelled {
        let given_back = order_of
            .iter()
            .find(|(_, (order, _))| order == id)
            .is_none_or(|(reference, _)| {
                charges
                    .iter()
                    .any(|c| &c.reference == reference && !c.taken())
            });
        if !given_back {
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
