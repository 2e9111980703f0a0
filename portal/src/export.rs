//! A deal's orders as CSV (or JSON) for fulfilment, streamed straight from the deal's schema in the
//! platform PostgreSQL: rows go out as they are read, so 100,000 orders never sit in memory.
//!
//! The portal reads the schema as the platform user, which the operator made a member of each
//! deal's role; which deal is the caller's is checked before this is reached.

use axum::body::{Body, Bytes};
use futures::StreamExt;
use sqlx::{PgPool, Row};
use tracing::warn;

/// The header row; one line per order follows. The delivery columns are filled for shipping
/// (all) and pickup (name, phone) deals until the deal's retention ends; the coupon columns for
/// coupon deals.
pub const HEADER: &str = "order_id,shopper,quantity,unit_price,total,currency,status,ordered_at,cancelled_at,payment_reference,\
delivery_name,delivery_phone,address_line1,address_line2,city,postal_code,country,\
coupon_code,coupon_valid_until,coupon_redeemed_at\n";

/// Rows are sent in chunks of about this many bytes.
const CHUNK: usize = 64 * 1024;

/// One CSV field: quoted when it holds a comma, quote or line break; a leading `=`, `+`, `-` or
/// `@` is defused with an apostrophe, so a spreadsheet never runs a shopper-chosen formula.
pub fn field(text: &str) -> String {
    let defused = if text.starts_with(['=', '+', '-', '@']) {
        format!("'{text}")
    } else {
        text.to_owned()
    };
    if defused.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", defused.replace('"', "\"\""))
    } else {
        defused
    }
}

/// An amount in the currency's smallest unit, as a plain decimal (`9900` USD is `99.00`).
pub fn decimal(amount: i64, currency: &str) -> String {
    let digits = timedeal_api::money::minor_digits(currency);
    if digits == 0 {
        return amount.to_string();
    }
    let scale = 10i64.pow(digits);
    let sign = if amount < 0 { "-" } else { "" };
    format!(
        "{sign}{}.{:0width$}",
        (amount / scale).abs(),
        (amount % scale).abs(),
        width = digits as usize
    )
}

/// How the orders are written out.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// A spreadsheet's CSV, amounts as decimals.
    Csv,
    /// A JSON array of objects, amounts in the currency's smallest unit, for the company's own
    /// systems.
    Json,
}

/// One exported order.
#[derive(serde::Serialize, Debug)]
#[serde(rename_all = "camelCase")]
pub struct ExportedOrder {
    pub order_id: i64,
    pub shopper: String,
    pub quantity: i32,
    pub unit_price: i64,
    pub total: i64,
    pub currency: String,
    pub status: String,
    pub ordered_at: chrono::DateTime<chrono::Utc>,
    pub cancelled_at: Option<chrono::DateTime<chrono::Utc>>,
    pub payment_reference: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub delivery: Option<ExportedDelivery>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub coupon: Option<ExportedCoupon>,
}

#[derive(serde::Serialize, Debug)]
#[serde(rename_all = "camelCase")]
pub struct ExportedDelivery {
    pub name: String,
    pub phone: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub address: Option<ExportedAddress>,
}

#[derive(serde::Serialize, Debug)]
#[serde(rename_all = "camelCase")]
pub struct ExportedAddress {
    pub line1: String,
    pub line2: String,
    pub city: String,
    pub postal_code: String,
    pub country: String,
}

#[derive(serde::Serialize, Debug)]
#[serde(rename_all = "camelCase")]
pub struct ExportedCoupon {
    pub code: String,
    pub valid_until: chrono::DateTime<chrono::Utc>,
    pub redeemed_at: Option<chrono::DateTime<chrono::Utc>>,
}

fn exported(row: &sqlx::postgres::PgRow) -> Result<ExportedOrder, sqlx::Error> {
    let quantity: i32 = row.try_get("quantity")?;
    let unit_price: i64 = row.try_get("unit_price")?;
    let text = |column: &str| -> Result<Option<String>, sqlx::Error> { row.try_get(column) };
    let delivery = match text("d_name")? {
        Some(name) => Some(ExportedDelivery {
            name,
            phone: text("d_phone")?.unwrap_or_default(),
            address: match text("d_line1")? {
                Some(line1) => Some(ExportedAddress {
                    line1,
                    line2: text("d_line2")?.unwrap_or_default(),
                    city: text("d_city")?.unwrap_or_default(),
                    postal_code: text("d_postal_code")?.unwrap_or_default(),
                    country: text("d_country")?.unwrap_or_default(),
                }),
                None => None,
            },
        }),
        None => None,
    };
    let coupon = match text("coupon_code")? {
        Some(code) => Some(ExportedCoupon {
            code,
            valid_until: row.try_get("coupon_valid_until")?,
            redeemed_at: row.try_get("coupon_redeemed_at")?,
        }),
        None => None,
    };
    Ok(ExportedOrder {
        order_id: row.try_get("id")?,
        shopper: row.try_get("shopper")?,
        quantity,
        unit_price,
        total: unit_price * i64::from(quantity),
        currency: row.try_get("currency")?,
        status: row.try_get("status")?,
        ordered_at: row.try_get("created_at")?,
        cancelled_at: row.try_get("cancelled_at")?,
        payment_reference: row.try_get("reference")?,
        delivery,
        coupon,
    })
}

/// One CSV line (with its line break) for an order.
pub fn csv_line(order: &ExportedOrder) -> String {
    let time = |t: Option<chrono::DateTime<chrono::Utc>>| {
        t.map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
            .unwrap_or_default()
    };
    let delivery = order.delivery.as_ref();
    let address = delivery.and_then(|d| d.address.as_ref());
    let coupon = order.coupon.as_ref();
    let mut line = [
        order.order_id.to_string(),
        field(&order.shopper),
        order.quantity.to_string(),
        decimal(order.unit_price, &order.currency),
        decimal(order.total, &order.currency),
        field(&order.currency),
        field(&order.status),
        time(Some(order.ordered_at)),
        time(order.cancelled_at),
        field(order.payment_reference.as_deref().unwrap_or_default()),
        field(delivery.map(|d| d.name.as_str()).unwrap_or_default()),
        field(delivery.map(|d| d.phone.as_str()).unwrap_or_default()),
        field(address.map(|a| a.line1.as_str()).unwrap_or_default()),
        field(address.map(|a| a.line2.as_str()).unwrap_or_default()),
        field(address.map(|a| a.city.as_str()).unwrap_or_default()),
        field(address.map(|a| a.postal_code.as_str()).unwrap_or_default()),
        field(address.map(|a| a.country.as_str()).unwrap_or_default()),
        field(coupon.map(|c| c.code.as_str()).unwrap_or_default()),
        time(coupon.map(|c| c.valid_until)),
        time(coupon.and_then(|c| c.redeemed_at)),
    ]
    .join(",");
    line.push('\n');
    line
}

/// The orders of the deal `uid` whose schema is `schema`, as a streamed body in `format`, read
/// on a connection of its own logged in as the deal (`timedeal_api::storage::connect_as_deal`),
/// so nothing the deal defined runs with more rights and a deal stalling its own tables stalls
/// only this. A deal that has taken no order yet (not set up, or its table not made yet) gives
/// the header (or `[]`) alone.
pub async fn orders(
    platform: &PgPool,
    platform_url: &str,
    schema: &str,
    uid: &str,
    format: Format,
    // Held until the last byte is sent, so the connection counts while it is open.
    permit: tokio::sync::OwnedSemaphorePermit,
) -> Result<Body, timedeal_api::storage::DealConnectionError> {
    use timedeal_api::storage::{connect_as_deal, Bounds};
    let bounds = Bounds {
        lock_timeout: std::time::Duration::from_secs(5),
        // A download read slowly may take a while; it holds only its own connection.
        statement_timeout: std::time::Duration::from_secs(600),
    };
    let mut db = connect_as_deal(platform, platform_url, schema, uid, bounds).await?;
    let (orders, deliveries) = match db.as_mut() {
        None => (false, false),
        Some(db) => {
            let exists = |table: &str| {
                sqlx::query_scalar::<_, Option<String>>("SELECT to_regclass($1)::text")
                    .bind(format!("\"{schema}\".{table}"))
            };
            let orders = exists("orders").fetch_one(&mut *db).await?.is_some();
            let deliveries = exists("deliveries").fetch_one(&mut *db).await?.is_some();
            (orders, deliveries)
        }
    };
    let schema = schema.to_owned();
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<Bytes, std::io::Error>>(8);
    tokio::spawn(async move {
        let _permit = permit;
        let mut buffer = String::with_capacity(CHUNK + 512);
        let mut first = true;
        buffer.push_str(match format {
            Format::Csv => HEADER,
            Format::Json => "[",
        });
        if let (true, Some(db)) = (orders, db.as_mut()) {
            // A schema from before delivery details and coupons has neither.
            let extra = if deliveries {
                "d.name AS d_name, d.phone AS d_phone, d.line1 AS d_line1, d.line2 AS d_line2, \
                 d.city AS d_city, d.postal_code AS d_postal_code, d.country AS d_country, \
                 o.coupon_code, o.coupon_valid_until, o.coupon_redeemed_at"
                    .to_owned()
            } else {
                "NULL::text AS d_name, NULL::text AS d_phone, NULL::text AS d_line1, \
                 NULL::text AS d_line2, NULL::text AS d_city, NULL::text AS d_postal_code, \
                 NULL::text AS d_country, NULL::text AS coupon_code, \
                 NULL::timestamptz AS coupon_valid_until, NULL::timestamptz AS coupon_redeemed_at"
                    .to_owned()
            };
            let join = if deliveries {
                format!("LEFT JOIN \"{schema}\".deliveries d ON d.order_id = o.id")
            } else {
                String::new()
            };
            let sql = format!(
                "SELECT o.id, o.shopper, o.quantity, o.unit_price, o.currency, o.status, \
                 o.created_at, o.cancelled_at, p.reference, {extra} \
                 FROM \"{schema}\".orders o \
                 LEFT JOIN \"{schema}\".payments p ON p.order_id = o.id {join} \
                 ORDER BY o.id"
            );
            let mut rows = sqlx::query(&sql).fetch(&mut *db);
            while let Some(row) = rows.next().await {
                let order = match row.and_then(|row| exported(&row)) {
                    Ok(order) => order,
                    Err(e) => {
                        warn!(error = %e, "an order export stopped");
                        let _ = tx.send(Err(std::io::Error::other(e))).await;
                        return;
                    }
                };
                match format {
                    Format::Csv => buffer.push_str(&csv_line(&order)),
                    Format::Json => {
                        if !first {
                            buffer.push(',');
                        }
                        buffer.push('\n');
                        buffer
                            .push_str(&serde_json::to_string(&order).expect("an order serialises"));
                    }
                }
                first = false;
                if buffer.len() >= CHUNK {
                    let chunk = Bytes::from(std::mem::take(&mut buffer));
                    if tx.send(Ok(chunk)).await.is_err() {
                        return; // the download was abandoned
                    }
                    buffer.reserve(CHUNK + 512);
                }
            }
        }
        if format == Format::Json {
            buffer.push_str("\n]\n");
        }
        if !buffer.is_empty() {
            let _ = tx.send(Ok(Bytes::from(buffer))).await;
        }
    });
    Ok(Body::from_stream(futures::stream::unfold(
        rx,
        |mut rx| async move { rx.recv().await.map(|item| (item, rx)) },
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_are_quoted_and_formulas_defused() {
        assert_eq!(field("plain"), "plain");
        assert_eq!(field("a,b"), "\"a,b\"");
        assert_eq!(field("say \"hi\""), "\"say \"\"hi\"\"\"");
        assert_eq!(field("=HYPERLINK(\"x\")"), "\"'=HYPERLINK(\"\"x\"\")\"");
        assert_eq!(field("-1"), "'-1");
    }

    #[test]
    fn amounts_are_plain_decimals_in_the_currency() {
        assert_eq!(decimal(9900, "USD"), "99.00");
        assert_eq!(decimal(5, "EUR"), "0.05");
        assert_eq!(decimal(9900, "KRW"), "9900");
        assert_eq!(decimal(-150, "USD"), "-1.50");
    }
}
