//! PostgreSQL: the deal's orders, payments and refunds, in the deal's own schema. This is the
//! record of what was sold; Redis only holds what is in flight.

use std::{future::Future, str::FromStr, time::Duration};

use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::{
    postgres::{PgConnectOptions, PgPoolOptions},
    PgPool, Row,
};

use crate::{
    error::Error,
    orders::delivery::{Delivery, DeliveryRow},
};

mod lapses;

pub use lapses::{
    fence_unmatched, orders_by_payment, payment_key, record_lapse, record_lapse_refund,
    record_unmatched_payment, Lapse,
};

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations");

/// Connects with the deal's schema first on the search path, creates the schema when missing and
/// runs the migrations (they are recorded inside the schema, so each deal migrates on its own).
pub async fn connect(url: &str, schema: &str) -> Result<PgPool, Error> {
    let options = PgConnectOptions::from_str(url)
        .map_err(|e| Error::Config(format!("--postgres-url is not a PostgreSQL URL: {e}")))?
        .options([
            ("search_path", schema),
            // The server gives up on its side too, so a lock held by a stuck session is let go.
            ("statement_timeout", "5s"),
            ("idle_in_transaction_session_timeout", "10s"),
        ]);
    let pool = PgPoolOptions::new()
        .max_connections(16)
        .acquire_timeout(CALL_TIMEOUT)
        .connect_with(options)
        .await
        .map_err(|e| Error::Database(format!("cannot connect to PostgreSQL: {e}")))?;
    // In a cluster the operator creates the schema, owned by the deal's own role, which may not
    // create schemas (PostgreSQL checks that right even for IF NOT EXISTS): create it only when
    // missing, as on a laptop.
    let exists: bool =
        sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM pg_namespace WHERE nspname = $1)")
            .bind(schema)
            .fetch_one(&pool)
            .await
            .map_err(|e| Error::Database(format!("cannot look for schema {schema}: {e}")))?;
    if !exists {
        // The schema name was checked against a strict pattern, so quoting it is enough.
        sqlx::query(&format!("CREATE SCHEMA IF NOT EXISTS \"{schema}\""))
            .execute(&pool)
            .await
            .map_err(|e| Error::Database(format!("cannot create schema {schema}: {e}")))?;
    }
    MIGRATOR
        .run(&pool)
        .await
        .map_err(|e| Error::Database(format!("cannot migrate schema {schema}: {e}")))?;
    Ok(pool)
}

/// The seed that draws the pre-queue, and the beacon named to key the draw with it (`""` for
/// none): made once by whichever replica comes first, the same for all of them after that,
/// whatever beacon a later replica is configured with.
pub async fn draw_seed(pool: &PgPool, beacon: &str) -> Result<(Vec<u8>, String), Error> {
    let mut fresh = [0u8; 32];
    rand::RngCore::fill_bytes(&mut rand::thread_rng(), &mut fresh);
    sqlx::query("INSERT INTO draw_seed (seed, beacon) VALUES ($1, $2) ON CONFLICT DO NOTHING")
        .bind(&fresh[..])
        .bind(beacon)
        .execute(pool)
        .await
        .map_err(|e| Error::Database(format!("cannot store the draw's seed: {e}")))?;
    sqlx::query_as("SELECT seed, beacon FROM draw_seed")
        .fetch_one(pool)
        .await
        .map_err(|e| Error::Database(format!("cannot read the draw's seed: {e}")))
}

/// The beacon's round as recorded for the draw: `(round, randomness, unavailable, when the
/// pre-queue closed)`.
pub type BeaconDrawn = (Option<i64>, Option<String>, bool, Option<i64>);

/// The beacon's round recorded for the draw, if any yet.
pub async fn beacon_drawn(pool: &PgPool) -> Result<BeaconDrawn, Error> {
    sqlx::query_as(
        "SELECT beacon_round, beacon_randomness, beacon_unavailable, closed_at_ms FROM draw_seed",
    )
    .fetch_one(pool)
    .await
    .map_err(|e| Error::Database(format!("cannot read the draw's beacon round: {e}")))
}

/// Records the beacon's round for the draw (`None`: given up on), unless one is recorded
/// already: the first replica's record is everyone's. What is recorded now.
pub async fn record_beacon(
    pool: &PgPool,
    round: Option<(u64, &str)>,
) -> Result<BeaconDrawn, Error> {
    sqlx::query(
        "UPDATE draw_seed SET beacon_round = $1, beacon_randomness = $2, \
             beacon_unavailable = $3 \
         WHERE beacon_randomness IS NULL AND NOT beacon_unavailable",
    )
    .bind(round.map(|(r, _)| r as i64))
    .bind(round.map(|(_, randomness)| randomness))
    .bind(round.is_none())
    .execute(pool)
    .await
    .map_err(|e| Error::Database(format!("cannot record the draw's beacon round: {e}")))?;
    beacon_drawn(pool).await
}

/// The longest one call to PostgreSQL may take. A database that hangs (frozen, partitioned)
/// holds no request longer than this: the request answers a clear, retryable error instead.
pub const CALL_TIMEOUT: Duration = Duration::from_secs(3);

/// Runs one call to PostgreSQL within [`CALL_TIMEOUT`].
pub async fn bounded<T>(
    what: &str,
    call: impl Future<Output = Result<T, sqlx::Error>>,
) -> Result<T, Error> {
    match tokio::time::timeout(CALL_TIMEOUT, call).await {
        Ok(result) => result.map_err(|e| Error::Database(format!("{what}: {e}"))),
        Err(_) => Err(Error::Database(format!(
            "{what}: no answer within {} s",
            CALL_TIMEOUT.as_secs()
        ))),
    }
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
    /// `confirmed`, `cancelling` (the refund is under way) or `cancelled`.
    pub status: String,
    pub created_at: DateTime<Utc>,
    pub cancelled_at: Option<DateTime<Utc>>,
    /// Coupon deals: the code to show the company, which redeems it once.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub coupon: Option<Coupon>,
    /// Shipping and pickup deals: who receives the order and, for shipping, where. Absent once
    /// the deal's retention is over.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub delivery: Option<Delivery>,
}

/// The coupon of an order.
#[derive(Debug, Clone, Serialize, PartialEq, Eq, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Coupon {
    /// Five groups of four letters and digits, unique and unguessable.
    pub code: String,
    /// Redeemable until this time: the deal's end plus its `couponValidity`.
    pub valid_until: DateTime<Utc>,
    /// When the company redeemed it, if it has.
    pub redeemed_at: Option<DateTime<Utc>>,
}

/// The columns of an [`Order`], read from `orders o LEFT JOIN deliveries d`.
const ORDER_COLUMNS: &str = "o.id, o.quantity, o.unit_price, \
     o.quantity::BIGINT * o.unit_price AS amount, o.currency, o.status, o.created_at, \
     o.cancelled_at, o.coupon_code, o.coupon_valid_until, o.coupon_redeemed_at, \
     d.name, d.phone, d.line1, d.line2, d.city, d.postal_code, d.country";

/// Orders with their delivery details.
const ORDERS: &str = "orders o LEFT JOIN deliveries d ON d.order_id = o.id";

fn order_from(row: &sqlx::postgres::PgRow) -> Result<Order, sqlx::Error> {
    let coupon = match row.try_get::<Option<String>, _>("coupon_code")? {
        Some(code) => Some(Coupon {
            code,
            valid_until: row.try_get("coupon_valid_until")?,
            redeemed_at: row.try_get("coupon_redeemed_at")?,
        }),
        None => None,
    };
    let delivery = match row.try_get::<Option<String>, _>("name")? {
        Some(name) => Some(
            DeliveryRow {
                name,
                phone: row.try_get("phone")?,
                line1: row.try_get("line1")?,
                line2: row.try_get("line2")?,
                city: row.try_get("city")?,
                postal_code: row.try_get("postal_code")?,
                country: row.try_get("country")?,
            }
            .into_delivery(),
        ),
        None => None,
    };
    Ok(Order {
        id: row.try_get("id")?,
        quantity: row.try_get("quantity")?,
        unit_price: row.try_get("unit_price")?,
        amount: row.try_get("amount")?,
        currency: row.try_get("currency")?,
        status: row.try_get("status")?,
        created_at: row.try_get("created_at")?,
        cancelled_at: row.try_get("cancelled_at")?,
        coupon,
        delivery,
    })
}

fn db_error(what: &str) -> impl FnOnce(sqlx::Error) -> Error + '_ {
    move |e| Error::Database(format!("{what}: {e}"))
}

/// A shopper's orders, newest first (lapsed reservations are not orders and are left out).
pub async fn orders_of(pool: &PgPool, shopper: &str) -> Result<Vec<Order>, Error> {
    let query = format!(
        "SELECT {ORDER_COLUMNS} FROM {ORDERS} WHERE o.shopper = $1 AND o.status <> 'lapsed' \
         ORDER BY o.id DESC"
    );
    let rows = bounded(
        "cannot read orders",
        sqlx::query(&query).bind(shopper).fetch_all(pool),
    )
    .await?;
    rows.iter()
        .map(order_from)
        .collect::<Result<_, _>>()
        .map_err(db_error("cannot read orders"))
}

/// One of the shopper's orders, if it exists and is theirs.
pub async fn order_of(pool: &PgPool, shopper: &str, id: i64) -> Result<Option<Order>, Error> {
    let query = format!(
        "SELECT {ORDER_COLUMNS} FROM {ORDERS} \
         WHERE o.id = $1 AND o.shopper = $2 AND o.status <> 'lapsed'"
    );
    one_order(sqlx::query(&query).bind(id).bind(shopper), pool).await
}

/// The order a shopper placed with an idempotency key, if any.
pub async fn order_by_key(pool: &PgPool, shopper: &str, key: &str) -> Result<Option<Order>, Error> {
    let query = format!(
        "SELECT {ORDER_COLUMNS} FROM {ORDERS} \
         WHERE o.shopper = $1 AND o.idempotency_key = $2 AND o.status <> 'lapsed'"
    );
    one_order(sqlx::query(&query).bind(shopper).bind(key), pool).await
}

async fn one_order(
    query: sqlx::query::Query<'_, sqlx::Postgres, sqlx::postgres::PgArguments>,
    pool: &PgPool,
) -> Result<Option<Order>, Error> {
    let row = bounded("cannot read the order", query.fetch_optional(pool)).await?;
    row.as_ref()
        .map(order_from)
        .transpose()
        .map_err(db_error("cannot read the order"))
}

/// Where a cancellation stands once it has been asked for.
pub enum CancelStart {
    /// This request marked the order `cancelling`: refund it, then finish.
    Marked(Order),
    /// The order was already `cancelling` (a cancel in progress, or one that failed half-way):
    /// the refund is idempotent per order, so refund and finish again.
    InProgress(Order),
    /// The order is cancelled already.
    AlreadyCancelled(Order),
    /// The order's coupon was redeemed: it was used, so it cannot be refunded.
    Redeemed(Order),
    /// The shopper has no such order.
    NotFound,
}

/// First phase of a cancellation: marks a confirmed order `cancelling`, or says where it is.
pub async fn begin_cancel(pool: &PgPool, shopper: &str, id: i64) -> Result<CancelStart, Error> {
    let marked = bounded(
        "cannot cancel",
        sqlx::query(&format!(
            "WITH o AS (UPDATE orders SET status = 'cancelling', cancel_started_at = now() \
             WHERE id = $1 AND shopper = $2 AND status = 'confirmed' \
               AND coupon_redeemed_at IS NULL RETURNING *) \
             SELECT {ORDER_COLUMNS} FROM o LEFT JOIN deliveries d ON d.order_id = o.id"
        ))
        .bind(id)
        .bind(shopper)
        .fetch_optional(pool),
    )
    .await?;
    if let Some(row) = marked {
        return Ok(CancelStart::Marked(
            order_from(&row).map_err(db_error("cannot cancel"))?,
        ));
    }
    Ok(match order_of(pool, shopper, id).await? {
        None => CancelStart::NotFound,
        Some(order) if order.status == "cancelling" => CancelStart::InProgress(order),
        Some(order) if order.status == "confirmed" => CancelStart::Redeemed(order),
        Some(order) => CancelStart::AlreadyCancelled(order),
    })
}

/// Second phase: records the refund and the cancellation, in one transaction, in the current
/// epoch (returned, for `restock.lua`). `None` when another cancel finished it first.
pub async fn finish_cancel(
    pool: &PgPool,
    id: i64,
    refund_reference: Option<&str>,
) -> Result<Option<(Order, String, i64)>, Error> {
    bounded("cannot finish the cancellation", async {
        let mut tx = pool.begin().await?;
        let epoch: i64 = sqlx::query_scalar("SELECT epoch FROM redis_epoch FOR SHARE")
            .fetch_one(&mut *tx)
            .await?;
        let Some(row) = sqlx::query(&format!(
            "WITH o AS (UPDATE orders SET status = 'cancelled', cancelled_at = now(), \
             cancel_epoch = $2 WHERE id = $1 AND status = 'cancelling' RETURNING *) \
             SELECT o.shopper, {ORDER_COLUMNS} FROM o LEFT JOIN deliveries d ON d.order_id = o.id"
        ))
        .bind(id)
        .bind(epoch)
        .fetch_optional(&mut *tx)
        .await?
        else {
            return Ok(None);
        };
        let order = order_from(&row)?;
        let shopper: String = row.try_get("shopper")?;
        // The units are no longer sold: the record moves in the same transaction.
        sqlx::query("UPDATE stock_ledger SET sold = sold - $1")
            .bind(order.quantity as i64)
            .execute(&mut *tx)
            .await?;
        sqlx::query("UPDATE holdings SET units = units - $2 WHERE shopper = $1")
            .bind(&shopper)
            .bind(order.quantity as i64)
            .execute(&mut *tx)
            .await?;
        if let Some(reference) = refund_reference {
            sqlx::query(
                "INSERT INTO refunds (order_id, reference, amount) VALUES ($1, $2, $3) \
                 ON CONFLICT DO NOTHING",
            )
            .bind(id)
            .bind(reference)
            .bind(order.amount)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(Some((order, shopper, epoch)))
    })
    .await
}

/// Cancellations marked more than `older_than_secs` ago and never finished (the replica died,
/// the refund failed): the sweeper refunds and finishes them.
pub async fn stalled_cancellations(
    pool: &PgPool,
    older_than_secs: i64,
) -> Result<Vec<(i64, i64)>, Error> {
    bounded(
        "cannot read stalled cancellations",
        sqlx::query_as(
            "SELECT id, quantity::BIGINT * unit_price FROM orders \
             WHERE status = 'cancelling' AND cancel_started_at < now() - make_interval(secs => $1) \
             LIMIT 100",
        )
        .bind(older_than_secs as f64)
        .fetch_all(pool),
    )
    .await
}

/// Cancelled orders whose stock is not back in Redis yet, with the epoch of their cancellation.
pub async fn to_restock(pool: &PgPool) -> Result<Vec<(i64, String, i32, i64)>, Error> {
    bounded(
        "cannot read cancelled orders",
        sqlx::query_as(
            "SELECT id, shopper, quantity, COALESCE(cancel_epoch, 0) FROM orders \
             WHERE status = 'cancelled' AND NOT restocked LIMIT 500",
        )
        .fetch_all(pool),
    )
    .await
}

pub async fn mark_restocked(pool: &PgPool, id: i64) -> Result<(), Error> {
    bounded(
        "cannot mark an order restocked",
        sqlx::query("UPDATE orders SET restocked = true WHERE id = $1")
            .bind(id)
            .execute(pool),
    )
    .await?;
    Ok(())
}

/// What Redis's figures are restored from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Restore {
    /// The new epoch: orders of earlier epochs can no longer commit.
    pub epoch: i64,
    /// Units sold: confirmed orders and those whose cancellation is not finished.
    pub sold: i64,
    /// The same, per shopper.
    pub owned: Vec<(String, i64)>,
    /// Every order's purchase (not given up) as `(shopper, idempotency key, id, quantity)`:
    /// Redis learns the keys again, so the same order sent again is answered with its order
    /// rather than "sold out".
    pub purchases: Vec<(String, String, i64, i32)>,
    /// The pre-queue's size, once recorded.
    pub pre_queue: Option<u64>,
    /// The last place the published admission log gives (0: none).
    pub last_place: u64,
}

/// Records that a block of order ids was handed out in an epoch. False when it had been
/// before: the Redis that handed it out again came back behind.
pub async fn take_id_block(pool: &PgPool, epoch: i64, block: i64) -> Result<bool, Error> {
    let taken: Option<i64> = bounded(
        "cannot record a block of order ids",
        sqlx::query_scalar(
            "INSERT INTO id_blocks (epoch, block) VALUES ($1, $2) ON CONFLICT DO NOTHING \
             RETURNING block",
        )
        .bind(epoch)
        .bind(block)
        .fetch_optional(pool),
    )
    .await?;
    Ok(taken.is_some())
}

/// Opens the next epoch and reads what was sold, in one transaction. Taking the epoch row's
/// lock waits for every order commit and cancellation under way (they hold it shared), and
/// none of the previous epoch can land after it: what is read here is complete.
pub async fn begin_epoch(pool: &PgPool) -> Result<Restore, Error> {
    let mut restore = bounded("cannot restore the stock figures", async {
        let mut tx = pool.begin().await?;
        // What the published admission log fixes, read under its lock: a publication under way
        // is waited for, and any later one finds the new epoch and publishes nothing of the
        // earlier. Taken first, so commits never wait on it behind the epoch's row lock; a
        // publisher stuck holding it fails this restore fast, and the next tick tries again.
        sqlx::query("SET LOCAL lock_timeout = '1s'")
            .execute(&mut *tx)
            .await?;
        sqlx::query("LOCK TABLE admission_log IN SHARE MODE")
            .execute(&mut *tx)
            .await?;
        sqlx::query("SET LOCAL lock_timeout = 0")
            .execute(&mut *tx)
            .await?;
        let epoch: i64 =
            sqlx::query_scalar("UPDATE redis_epoch SET epoch = epoch + 1 RETURNING epoch")
                .fetch_one(&mut *tx)
                .await?;
        let pre_queue: Option<i64> = sqlx::query_scalar("SELECT pre_queue FROM draw_seed")
            .fetch_optional(&mut *tx)
            .await?
            .flatten();
        let last_place: i64 = sqlx::query_scalar(
            "SELECT COALESCE((SELECT last_place FROM admission_log ORDER BY entry DESC LIMIT 1), 0)",
        )
        .fetch_one(&mut *tx)
        .await?;
        let sold: i64 = sqlx::query_scalar("SELECT sold FROM stock_ledger")
            .fetch_one(&mut *tx)
            .await?;
        let owned: Vec<(String, i64)> =
            sqlx::query_as("SELECT shopper, units FROM holdings WHERE units > 0")
                .fetch_all(&mut *tx)
                .await?;
        tx.commit().await?;
        Ok(Restore {
            epoch,
            sold,
            owned,
            purchases: Vec::new(),
            pre_queue: pre_queue.map(|n| n as u64),
            last_place: last_place.max(0) as u64,
        })
    })
    .await?;
    // Read once the new epoch is in place, without holding its lock (commits wait on it): no
    // order of the earlier epoch can commit any more, and none of the new one before Redis
    // has its figures, so the list is complete.
    restore.purchases = bounded(
        "cannot read the orders' idempotency keys",
        sqlx::query_as(
            "SELECT shopper, idempotency_key, id, quantity FROM orders \
             WHERE status IN ('confirmed', 'cancelling', 'cancelled')",
        )
        .fetch_all(pool),
    )
    .await?;
    Ok(restore)
}

/// Order counts and revenue for the operator's status figures.
#[derive(Debug, Clone, Copy, Default)]
pub struct Sales {
    pub confirmed: i64,
    pub cancelled: i64,
    pub revenue: i64,
}

pub async fn sales(pool: &PgPool) -> Result<Sales, Error> {
    // An order whose cancellation is under way still counts as sold until its refund is made.
    let (confirmed, cancelled, revenue): (i64, i64, i64) = bounded(
        "cannot read the sales figures",
        sqlx::query_as(
            "SELECT COUNT(*) FILTER (WHERE status IN ('confirmed', 'cancelling')), \
                    COUNT(*) FILTER (WHERE status = 'cancelled'), \
                    COALESCE(SUM(quantity::BIGINT * unit_price) \
                             FILTER (WHERE status IN ('confirmed', 'cancelling')), 0)::BIGINT \
             FROM orders",
        )
        .fetch_one(pool),
    )
    .await?;
    Ok(Sales {
        confirmed,
        cancelled,
        revenue,
    })
}
