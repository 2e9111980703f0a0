//! Checks that make a run's figures believable: the storefront's own metrics agree with what the
//! load generator counted, and after a storm the stores agree with each other and with the
//! shoppers (nothing oversold, no confirmed order lost, nobody over the limit).

use redis::aio::MultiplexedConnection;

use crate::{
    storefront::{Counters, Storefront},
    Error,
};

/// Fails unless each sample moved by exactly the count the load generator saw since `before`.
pub async fn counted(
    front: &Storefront,
    before: &Counters,
    expected: &[(String, u64)],
) -> Result<(), Error> {
    let now = front.counters().await?;
    let wrong: Vec<String> = expected
        .iter()
        .filter(|(sample, count)| now.since(before, sample) != *count)
        .map(|(sample, count)| {
            format!(
                "{sample} moved by {}, the load generator counted {count}",
                now.since(before, sample)
            )
        })
        .collect();
    if wrong.is_empty() {
        Ok(())
    } else {
        Err(Error::Broken(wrong.join("; ")))
    }
}

/// Read-only questions to the benchmark's Redis.
#[derive(Clone)]
pub struct RedisProbe {
    connection: MultiplexedConnection,
}

/// A deal's stock as Redis keeps it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StockInRedis {
    pub total: i64,
    pub sold: i64,
    /// The `reserved` figure.
    pub reserved: i64,
    /// Units held by the reservations actually stored (the members of `res`).
    pub live_reservations: i64,
}

impl RedisProbe {
    pub async fn connect(url: &str) -> Result<Self, Error> {
        let connection = redis::Client::open(url)
            .map_err(Error::redis(format!("open {url}")))?
            .get_multiplexed_async_connection()
            .await
            .map_err(Error::redis(format!("connect to {url}")))?;
        Ok(Self { connection })
    }

    async fn info_field(&self, section: &str, field: &str) -> Result<u64, Error> {
        let info: String = redis::cmd("INFO")
            .arg(section)
            .query_async(&mut self.connection.clone())
            .await
            .map_err(Error::redis(format!("read INFO {section}")))?;
        info.lines()
            .find_map(|line| line.strip_prefix(field)?.strip_prefix(':'))
            .and_then(|value| value.trim().parse().ok())
            .ok_or_else(|| Error::Unexpected(format!("INFO {section} has no {field}")))
    }

    /// Commands Redis has processed since it started.
    pub async fn commands(&self) -> Result<u64, Error> {
        self.info_field("stats", "total_commands_processed").await
    }

    /// Bytes Redis holds for data and its own structures.
    pub async fn used_memory(&self) -> Result<u64, Error> {
        self.info_field("memory", "used_memory").await
    }

    /// Places in a deal's line not yet reached: join numbers taken past the head.
    pub async fn waiting(&self, prefix: &str) -> Result<u64, Error> {
        let (taken, head): (Option<u64>, Option<u64>) = redis::cmd("MGET")
            .arg(format!("{prefix}seq"))
            .arg(format!("{prefix}head"))
            .query_async(&mut self.connection.clone())
            .await
            .map_err(Error::redis("count the line"))?;
        Ok(taken.unwrap_or(0).saturating_sub(head.unwrap_or(0)))
    }

    pub async fn stock(&self, prefix: &str) -> Result<StockInRedis, Error> {
        let mut connection = self.connection.clone();
        let (total, sold, reserved) = stock_figures(&mut connection, prefix).await?;
        // Each reservation is a member of `res`: `<id>|<qty>|...`.
        let stored: Vec<String> = redis::cmd("ZRANGE")
            .arg(format!("{prefix}res"))
            .arg(0)
            .arg(-1)
            .query_async(&mut connection)
            .await
            .map_err(Error::redis("list the reservations"))?;
        let live_reservations = stored
            .iter()
            .filter_map(|r| r.split('|').nth(1)?.parse::<i64>().ok())
            .sum();
        Ok(StockInRedis {
            total: total.unwrap_or(0),
            sold: sold.unwrap_or(0),
            reserved: reserved.unwrap_or(0),
            live_reservations,
        })
    }
}

/// The storefront's stock figures in Redis: total, sold and reserved, from the deal's hash.
pub async fn stock_figures(
    connection: &mut redis::aio::MultiplexedConnection,
    prefix: &str,
) -> Result<(Option<i64>, Option<i64>, Option<i64>), Error> {
    redis::cmd("HMGET")
        .arg(format!("{prefix}deal"))
        .arg("total")
        .arg("sold")
        .arg("reserved")
        .query_async(connection)
        .await
        .map_err(Error::redis("read the stock figures"))
}

/// The units each shopper holds or owns in Redis (the deal hash's `u:<shopper>` fields), left
/// out when zero.
pub async fn units_held(
    connection: &mut redis::aio::MultiplexedConnection,
    prefix: &str,
) -> Result<std::collections::BTreeMap<String, i64>, Error> {
    let fields: std::collections::BTreeMap<String, String> = redis::cmd("HGETALL")
        .arg(format!("{prefix}deal"))
        .query_async(connection)
        .await
        .map_err(Error::redis("read what each shopper holds"))?;
    Ok(fields
        .into_iter()
        .filter_map(|(field, value)| {
            let shopper = field.strip_prefix("u:")?.to_owned();
            let units: i64 = value.parse().ok()?;
            (units != 0).then_some((shopper, units))
        })
        .collect())
}

/// A deal's orders as PostgreSQL keeps them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OrdersInPostgres {
    pub confirmed_rows: i64,
    pub confirmed_units: i64,
    pub cancelled_rows: i64,
    /// Shoppers whose confirmed units exceed `limit`, with those units.
    pub over_limit: Vec<(String, i64)>,
}

pub async fn orders_in_postgres(
    url: &str,
    schema: &str,
    limit: i64,
) -> Result<OrdersInPostgres, Error> {
    let pool = sqlx::postgres::PgPoolOptions::new()
        .max_connections(1)
        .connect(url)
        .await
        .map_err(Error::postgres("connect to PostgreSQL"))?;
    let (confirmed_rows, confirmed_units, cancelled_rows): (i64, i64, i64) =
        sqlx::query_as(&format!(
            "SELECT COUNT(*) FILTER (WHERE status = 'confirmed'), \
                COALESCE(SUM(quantity) FILTER (WHERE status = 'confirmed'), 0)::BIGINT, \
                COUNT(*) FILTER (WHERE status = 'cancelled') \
         FROM {schema}.orders"
        ))
        .fetch_one(&pool)
        .await
        .map_err(Error::postgres("count the orders"))?;
    let over_limit: Vec<(String, i64)> = sqlx::query_as(&format!(
        "SELECT shopper, SUM(quantity)::BIGINT FROM {schema}.orders \
         WHERE status = 'confirmed' GROUP BY shopper HAVING SUM(quantity) > $1"
    ))
    .bind(limit)
    .fetch_all(&pool)
    .await
    .map_err(Error::postgres("sum the orders by shopper"))?;
    pool.close().await;
    Ok(OrdersInPostgres {
        confirmed_rows,
        confirmed_units,
        cancelled_rows,
        over_limit,
    })
}

/// What the shoppers of a storm were told.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Told {
    /// 201 answers to orders (quantity one each).
    pub confirmed: i64,
    /// 200 answers to cancellations.
    pub cancelled: i64,
}

/// The storm's invariants, each named in the error when broken:
/// - Redis's `reserved` figure is the sum of the reservations it stores;
/// - stock left + live reservations + sold = the initial stock, and nothing is left below zero;
/// - PostgreSQL's confirmed units are Redis's sold units;
/// - every confirmation a shopper was told is a row (confirmed, or cancelled when they were
///   told that too), and no row exists that no shopper was told of;
/// - no shopper owns more than the limit.
pub fn storm_invariants(
    initial: i64,
    limit: i64,
    redis: &StockInRedis,
    postgres: &OrdersInPostgres,
    told: &Told,
) -> Result<(), Error> {
    let left = redis.total - redis.sold - redis.reserved;
    let mut broken = Vec::new();
    if redis.total != initial {
        broken.push(format!(
            "Redis holds a total of {}, the deal {initial}",
            redis.total
        ));
    }
    if redis.reserved != redis.live_reservations {
        broken.push(format!(
            "Redis says {} units are reserved but its reservations hold {}",
            redis.reserved, redis.live_reservations
        ));
    }
    if left < 0 {
        broken.push(format!("oversold: {} units below zero", -left));
    }
    if left + redis.live_reservations + postgres.confirmed_units != initial {
        broken.push(format!(
            "left {left} + reserved {} + sold {} (PostgreSQL) ≠ {initial}",
            redis.live_reservations, postgres.confirmed_units
        ));
    }
    if postgres.confirmed_units != redis.sold {
        broken.push(format!(
            "PostgreSQL has {} confirmed units, Redis counts {} sold",
            postgres.confirmed_units, redis.sold
        ));
    }
    if postgres.confirmed_rows != told.confirmed - told.cancelled {
        broken.push(format!(
            "shoppers were told of {} confirmed orders and {} cancellations, PostgreSQL holds \
             {} confirmed rows",
            told.confirmed, told.cancelled, postgres.confirmed_rows
        ));
    }
    if postgres.cancelled_rows != told.cancelled {
        broken.push(format!(
            "shoppers cancelled {} orders, PostgreSQL holds {} cancelled rows",
            told.cancelled, postgres.cancelled_rows
        ));
    }
    for (shopper, units) in &postgres.over_limit {
        broken.push(format!(
            "{shopper} owns {units} units, over the limit of {limit}"
        ));
    }
    if broken.is_empty() {
        Ok(())
    } else {
        Err(Error::Broken(broken.join("; ")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn consistent() -> (StockInRedis, OrdersInPostgres, Told) {
        (
            StockInRedis {
                total: 100,
                sold: 90,
                reserved: 2,
                live_reservations: 2,
            },
            OrdersInPostgres {
                confirmed_rows: 90,
                confirmed_units: 90,
                cancelled_rows: 5,
                over_limit: vec![],
            },
            Told {
                confirmed: 95,
                cancelled: 5,
            },
        )
    }

    #[test]
    fn consistent_stores_pass() {
        let (redis, postgres, told) = consistent();
        storm_invariants(100, 2, &redis, &postgres, &told).unwrap();
    }

    #[test]
    fn each_broken_invariant_is_named() {
        let broken = |change: &dyn Fn(&mut StockInRedis, &mut OrdersInPostgres, &mut Told)| {
            let (mut redis, mut postgres, mut told) = consistent();
            change(&mut redis, &mut postgres, &mut told);
            storm_invariants(100, 2, &redis, &postgres, &told)
                .unwrap_err()
                .to_string()
        };
        assert!(broken(&|r, p, _| {
            r.sold = 110;
            p.confirmed_units = 110;
        })
        .contains("oversold"));
        assert!(broken(&|r, _, _| r.live_reservations = 0).contains("reservations hold 0"));
        assert!(broken(&|_, p, _| p.confirmed_rows = 89).contains("told of 95"));
        assert!(broken(&|_, _, t| t.cancelled = 4).contains("cancelled 4"));
        assert!(broken(&|_, p, _| p.confirmed_units = 91).contains("Redis counts 90"));
        assert!(broken(&|_, p, _| p.over_limit = vec![("anon-1".into(), 3)])
            .contains("over the limit of 2"));
    }
}
