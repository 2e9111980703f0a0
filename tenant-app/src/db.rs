//! PostgreSQL: the deal's orders, payments and refunds, in the deal's own schema. This is the
//! record of what was sold; Redis only holds what is in flight.

use std::str::FromStr;

use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::{
    postgres::{PgConnectOptions, PgPoolOptions},
    PgPool, Row,
};

use crate::error::Error;

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations");

/// Connects with the deal's schema first on the search path, creates the schema when missing and
/// runs the migrations (they are recorded inside the schema, so each deal migrates on its own).
pub async fn connect(url: &str, schema: &str) -> Result<PgPool, Error> {
    let options = PgConnectOptions::from_str(url)
        .map_err(|e| Error::Config(format!("--postgres-url is not a PostgreSQL URL: {e}")))?
        .options([("search_path", schema)]);
    let pool = PgPoolOptions::new()
        .max_connections(16)
        .acquire_timeout(std::time::Duration::from_secs(3))
        .connect_with(options)
        .await
        .map_err(|e| Error::Database(format!("cannot connect to PostgreSQL: {e}")))?;
    // The schema name was checked against a strict pattern, so quoting it is enough.
    sqlx::query(&format!("CREATE SCHEMA IF NOT EXISTS \"{schema}\""))
        .execute(&pool)
        .await
        .map_err(|e| Error::Database(format!("cannot create schema {schema}: {e}")))?;
    MIGRATOR
        .run(&pool)
        .await
        .map_err(|e| Error::Database(format!("cannot migrate schema {schema}: {e}")))?;
    Ok(pool)
}

/// An order as its shopper sees it.
#[derive(Debug, Clone, Serialize, PartialEq, Eq, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Order {
    pub id: i64,
    pub quantity: i32,
    /// Price of one unit, in the currency's smallest unit.
    pub unit_price: i64,
    /// quantity × unitPrice.
    pub amount: i64,
    pub currency: String,
    /// `confirmed` or `cancelled`.
    pub status: String,
    pub created_at: DateTime<Utc>,
    pub cancelled_at: Option<DateTime<Utc>>,
}

const ORDER_COLUMNS: &str = "id, quantity, unit_price, quantity::BIGINT * unit_price AS amount, \
                             currency, status, created_at, cancelled_at";

fn order_from(row: &sqlx::postgres::PgRow) -> Result<Order, sqlx::Error> {
    Ok(Order {
        id: row.try_get("id")?,
        quantity: row.try_get("quantity")?,
        unit_price: row.try_get("unit_price")?,
        amount: row.try_get("amount")?,
        currency: row.try_get("currency")?,
        status: row.try_get("status")?,
        created_at: row.try_get("created_at")?,
        cancelled_at: row.try_get("cancelled_at")?,
    })
}

fn db_error(what: &str) -> impl FnOnce(sqlx::Error) -> Error + '_ {
    move |e| Error::Database(format!("{what}: {e}"))
}

/// A shopper's orders, newest first (lapsed reservations are not orders and are left out).
pub async fn orders_of(pool: &PgPool, shopper: &str) -> Result<Vec<Order>, Error> {
    let rows = sqlx::query(&format!(
        "SELECT {ORDER_COLUMNS} FROM orders WHERE shopper = $1 AND status <> 'lapsed' ORDER BY id DESC"
    ))
    .bind(shopper)
    .fetch_all(pool)
    .await
    .map_err(db_error("cannot read orders"))?;
    rows.iter()
        .map(order_from)
        .collect::<Result<_, _>>()
        .map_err(db_error("cannot read orders"))
}

/// One of the shopper's orders, if it exists and is theirs.
pub async fn order_of(pool: &PgPool, shopper: &str, id: i64) -> Result<Option<Order>, Error> {
    let query = format!(
        "SELECT {ORDER_COLUMNS} FROM orders WHERE id = $1 AND shopper = $2 AND status <> 'lapsed'"
    );
    one_order(sqlx::query(&query).bind(id).bind(shopper), pool).await
}

/// The order a shopper placed with an idempotency key, if any.
pub async fn order_by_key(pool: &PgPool, shopper: &str, key: &str) -> Result<Option<Order>, Error> {
    let query = format!(
        "SELECT {ORDER_COLUMNS} FROM orders WHERE shopper = $1 AND idempotency_key = $2 AND status <> 'lapsed'"
    );
    one_order(sqlx::query(&query).bind(shopper).bind(key), pool).await
}

async fn one_order(
    query: sqlx::query::Query<'_, sqlx::Postgres, sqlx::postgres::PgArguments>,
    pool: &PgPool,
) -> Result<Option<Order>, Error> {
    let row = query
        .fetch_optional(pool)
        .await
        .map_err(db_error("cannot read the order"))?;
    row.as_ref()
        .map(order_from)
        .transpose()
        .map_err(db_error("cannot read the order"))
}

/// What a cancellation changed.
pub struct Cancelled {
    pub order: Order,
    pub shopper: String,
}

/// Cancels a confirmed order and records its refund, in one transaction. Returns `None` when
/// the order is not the shopper's or is not confirmed (already cancelled): the second cancel of
/// an order changes nothing.
pub async fn cancel(
    pool: &PgPool,
    shopper: &str,
    id: i64,
    refund_reference: &str,
) -> Result<Option<Cancelled>, Error> {
    let mut tx = pool.begin().await.map_err(db_error("cannot cancel"))?;
    let row = sqlx::query(&format!(
        "UPDATE orders SET status = 'cancelled', cancelled_at = now() \
         WHERE id = $1 AND shopper = $2 AND status = 'confirmed' RETURNING {ORDER_COLUMNS}"
    ))
    .bind(id)
    .bind(shopper)
    .fetch_optional(&mut *tx)
    .await
    .map_err(db_error("cannot cancel"))?;
    let Some(row) = row else {
        return Ok(None);
    };
    let order = order_from(&row).map_err(db_error("cannot cancel"))?;
    sqlx::query("INSERT INTO refunds (order_id, reference, amount) VALUES ($1, $2, $3)")
        .bind(id)
        .bind(refund_reference)
        .bind(order.amount)
        .execute(&mut *tx)
        .await
        .map_err(db_error("cannot record the refund"))?;
    tx.commit().await.map_err(db_error("cannot cancel"))?;
    Ok(Some(Cancelled {
        order,
        shopper: shopper.to_owned(),
    }))
}

/// Records that a reservation lapsed, unless its order was committed first. Returns true when
/// the lapse was recorded (so the stock may go back), false when the order exists.
pub async fn record_lapse(
    pool: &PgPool,
    id: i64,
    shopper: &str,
    quantity: i32,
    key: &str,
    unit_price: i64,
    currency: &str,
) -> Result<bool, Error> {
    let row = sqlx::query(
        "INSERT INTO orders (id, shopper, quantity, unit_price, currency, status, idempotency_key) \
         VALUES ($1, $2, $3, $4, $5, 'lapsed', $6) ON CONFLICT DO NOTHING RETURNING id",
    )
    .bind(id)
    .bind(shopper)
    .bind(quantity)
    .bind(unit_price)
    .bind(currency)
    .bind(format!("lapsed:{id}:{key}"))
    .fetch_optional(pool)
    .await
    .map_err(db_error("cannot record a lapsed reservation"))?;
    if row.is_some() {
        return Ok(true);
    }
    let status: Option<String> = sqlx::query_scalar("SELECT status FROM orders WHERE id = $1")
        .bind(id)
        .fetch_optional(pool)
        .await
        .map_err(db_error("cannot read the order"))?;
    Ok(status.as_deref() == Some("lapsed"))
}

/// Cancelled orders whose stock is not back in Redis yet.
pub async fn to_restock(pool: &PgPool) -> Result<Vec<(i64, String, i32)>, Error> {
    sqlx::query_as(
        "SELECT id, shopper, quantity FROM orders WHERE status = 'cancelled' AND NOT restocked LIMIT 500",
    )
    .fetch_all(pool)
    .await
    .map_err(db_error("cannot read cancelled orders"))
}

pub async fn mark_restocked(pool: &PgPool, id: i64) -> Result<(), Error> {
    sqlx::query("UPDATE orders SET restocked = true WHERE id = $1")
        .bind(id)
        .execute(pool)
        .await
        .map_err(db_error("cannot mark an order restocked"))?;
    Ok(())
}

/// What PostgreSQL knows of the sale: units sold, and the highest order id used.
pub async fn sold_and_last_id(pool: &PgPool) -> Result<(i64, i64), Error> {
    sqlx::query_as(
        "SELECT COALESCE(SUM(quantity) FILTER (WHERE status = 'confirmed'), 0)::BIGINT, \
                COALESCE(MAX(id), 0)::BIGINT FROM orders",
    )
    .fetch_one(pool)
    .await
    .map_err(db_error("cannot read the units sold"))
}

/// Units each shopper owns (confirmed orders), to rebuild the per-shopper counts in Redis.
pub async fn owned_by_shopper(pool: &PgPool) -> Result<Vec<(String, i64)>, Error> {
    sqlx::query_as(
        "SELECT shopper, SUM(quantity)::BIGINT FROM orders WHERE status = 'confirmed' GROUP BY shopper",
    )
    .fetch_all(pool)
    .await
    .map_err(db_error("cannot read what each shopper owns"))
}

/// Order counts and revenue for the operator's status figures.
#[derive(Debug, Clone, Copy, Default)]
pub struct Sales {
    pub confirmed: i64,
    pub cancelled: i64,
    pub revenue: i64,
}

pub async fn sales(pool: &PgPool) -> Result<Sales, Error> {
    let (confirmed, cancelled, revenue): (i64, i64, i64) = sqlx::query_as(
        "SELECT COUNT(*) FILTER (WHERE status = 'confirmed'), \
                COUNT(*) FILTER (WHERE status = 'cancelled'), \
                COALESCE(SUM(quantity::BIGINT * unit_price) FILTER (WHERE status = 'confirmed'), 0)::BIGINT \
         FROM orders",
    )
    .fetch_one(pool)
    .await
    .map_err(db_error("cannot read the sales figures"))?;
    Ok(Sales {
        confirmed,
        cancelled,
        revenue,
    })
}
