//! A deal's orders as CSV for fulfilment, streamed straight from the deal's schema in the
//! platform PostgreSQL: rows go out as they are read, so 100,000 orders never sit in memory.
//!
//! The portal reads the schema as the platform user, which the operator made a member of each
//! deal's role; which deal is the caller's is checked before this is reached.

use axum::body::{Body, Bytes};
use futures::StreamExt;
use sqlx::{PgPool, Row};
use timedeal_api::storage::schema_name;
use tracing::warn;

/// The header row; one line per order follows.
pub const HEADER: &str =
    "order_id,shopper,quantity,unit_price,total,currency,status,ordered_at,cancelled_at,payment_reference\n";

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

/// The orders of the deal `namespace/name`, as a streamed CSV body. A deal that has taken no
/// order yet (its schema or table not made yet) gives the header alone.
pub fn orders_csv(pool: PgPool, namespace: &str, name: &str) -> Body {
    let schema = schema_name(namespace, name);
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<Bytes, std::io::Error>>(8);
    tokio::spawn(async move {
        let table = format!("\"{schema}\".orders");
        let exists: Option<String> = match sqlx::query_scalar("SELECT to_regclass($1)::text")
            .bind(&table)
            .fetch_one(&pool)
            .await
        {
            Ok(found) => found,
            Err(e) => {
                let _ = tx.send(Err(std::io::Error::other(e))).await;
                return;
            }
        };
        let mut buffer = String::with_capacity(CHUNK + 512);
        buffer.push_str(HEADER);
        if exists.is_some() {
            let sql = format!(
                "SELECT o.id, o.shopper, o.quantity, o.unit_price, o.currency, o.status, \
                 o.created_at, o.cancelled_at, p.reference \
                 FROM \"{schema}\".orders o LEFT JOIN \"{schema}\".payments p ON p.order_id = o.id \
                 ORDER BY o.id"
            );
            let mut rows = sqlx::query(&sql).fetch(&pool);
            while let Some(row) = rows.next().await {
                let row = match row {
                    Ok(row) => row,
                    Err(e) => {
                        warn!(error = %e, "an order export stopped");
                        let _ = tx.send(Err(std::io::Error::other(e))).await;
                        return;
                    }
                };
                let currency: String = row.get("currency");
                let quantity: i32 = row.get("quantity");
                let unit: i64 = row.get("unit_price");
                let at = |column: &str| {
                    row.get::<Option<chrono::DateTime<chrono::Utc>>, _>(column)
                        .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
                        .unwrap_or_default()
                };
                let line = [
                    row.get::<i64, _>("id").to_string(),
                    field(row.get::<&str, _>("shopper")),
                    quantity.to_string(),
                    decimal(unit, &currency),
                    decimal(unit * i64::from(quantity), &currency),
                    field(&currency),
                    field(row.get::<&str, _>("status")),
                    at("created_at"),
                    at("cancelled_at"),
                    field(row.get::<Option<&str>, _>("reference").unwrap_or_default()),
                ]
                .join(",");
                buffer.push_str(&line);
                buffer.push('\n');
                if buffer.len() >= CHUNK {
                    let chunk = Bytes::from(std::mem::take(&mut buffer));
                    if tx.send(Ok(chunk)).await.is_err() {
                        return; // the download was abandoned
                    }
                    buffer.reserve(CHUNK + 512);
                }
            }
        }
        if !buffer.is_empty() {
            let _ = tx.send(Ok(Bytes::from(buffer))).await;
        }
    });
    Body::from_stream(futures::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|item| (item, rx))
    }))
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
