//! Lapses, fences and payments: the rows that decide, against a late commit, whether an order
//! or its purchase's payment goes back, and what PostgreSQL says of the provider's payments.

use sqlx::PgPool;

use super::bounded;
use crate::error::Error;

/// What recording a lapse found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lapse {
    /// The lapse is recorded (now or before): no order can commit with this id or this
    /// purchase's payment key any more, so its stock and its payment go back.
    Recorded,
    /// The order was committed under this id first.
    Committed,
    /// The purchase was committed under another id (an attempt of it after Redis lost this
    /// one's key): this reservation goes, the purchase's payment stays.
    CommittedElsewhere,
}

/// Records that a reservation lapsed, unless its order was committed first: a `lapsed` row
/// with its id and its purchase's payment key, which a late commit of either conflicts with.
#[allow(clippy::too_many_arguments)]
pub async fn record_lapse(
    pool: &PgPool,
    id: i64,
    shopper: &str,
    quantity: i32,
    key: &str,
    payment_key: &str,
    unit_price: i64,
    currency: &str,
) -> Result<Lapse, Error> {
    let inserted: Option<i64> = bounded(
        "cannot record a lapsed reservation",
        sqlx::query_scalar(
            "INSERT INTO orders (id, shopper, quantity, unit_price, currency, status, \
                                 idempotency_key, payment_key) \
             VALUES ($1, $2, $3, $4, $5, 'lapsed', $6, $7) ON CONFLICT DO NOTHING RETURNING id",
        )
        .bind(id)
        .bind(shopper)
        .bind(quantity)
        .bind(unit_price)
        .bind(currency)
        .bind(format!("lapsed:{id}:{key}"))
        .bind(payment_key)
        .fetch_optional(pool),
    )
    .await?;
    if inserted.is_some() {
        return Ok(Lapse::Recorded);
    }
    let rows: Vec<(i64, String)> = bounded(
        "cannot read the order",
        sqlx::query_as("SELECT id, status FROM orders WHERE id = $1 OR payment_key = $2")
            .bind(id)
            .bind(payment_key)
            .fetch_all(pool),
    )
    .await?;
    Ok(lapse_from(id, &rows))
}

/// What the rows holding a lapsing reservation's id or payment key say.
fn lapse_from(id: i64, rows: &[(i64, String)]) -> Lapse {
    if rows
        .iter()
        .any(|(row, status)| *row == id && status != "lapsed")
    {
        Lapse::Committed
    } else if rows.iter().any(|(_, status)| status != "lapsed") {
        Lapse::CommittedElsewhere
    } else {
        Lapse::Recorded
    }
}

/// The payment key of an order (its id for orders from before purchase keys).
pub async fn payment_key(pool: &PgPool, id: i64) -> Result<Option<String>, Error> {
    let key: Option<Option<String>> = bounded(
        "cannot read the order's payment",
        sqlx::query_scalar("SELECT payment_key FROM orders WHERE id = $1")
            .bind(id)
            .fetch_optional(pool),
    )
    .await?;
    Ok(key.flatten())
}

/// What PostgreSQL says of the provider's payments, by reference: the status of the order that
/// recorded each (absent: no order did).
pub async fn orders_by_payment(
    pool: &PgPool,
    references: &[String],
) -> Result<std::collections::HashMap<String, String>, Error> {
    let rows: Vec<(String, String)> = bounded(
        "cannot match payments",
        sqlx::query_as(
            "SELECT p.reference, o.status FROM payments p JOIN orders o ON o.id = p.order_id \
             WHERE p.reference = ANY($1)",
        )
        .bind(references)
        .fetch_all(pool),
    )
    .await?;
    Ok(rows.into_iter().collect())
}

/// Fences a purchase before its payment is voided as unmatched: a `lapsed` row with the
/// payment's order id and key, which an order of the purchase committing later conflicts with,
/// so it is never confirmed. True when the purchase is fenced (now or before), false when an
/// order of it committed.
pub async fn fence_unmatched(
    pool: &PgPool,
    id: i64,
    payment_key: &str,
    amount: i64,
    currency: &str,
) -> Result<bool, Error> {
    // The shopper is not known from a payment; the row only holds the id and the key.
    let lapse = record_lapse(
        pool,
        id,
        "",
        1,
        &format!("unmatched:{id}"),
        payment_key,
        amount,
        currency,
    )
    .await?;
    Ok(lapse == Lapse::Recorded)
}

/// Records the refund of a payment whose reservation lapsed (its `lapsed` row exists).
pub async fn record_lapse_refund(
    pool: &PgPool,
    id: i64,
    reference: &str,
    amount: i64,
) -> Result<(), Error> {
    bounded(
        "cannot record a refund",
        sqlx::query(
            "INSERT INTO refunds (order_id, reference, amount) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING",
        )
        .bind(id)
        .bind(reference)
        .bind(amount)
        .execute(pool),
    )
    .await?;
    Ok(())
}

/// Records a payment found without an order, and its refund (or `voided`).
pub async fn record_unmatched_payment(
    pool: &PgPool,
    id: i64,
    reference: &str,
    amount: i64,
    currency: &str,
    refund_reference: &str,
) -> Result<(), Error> {
    bounded(
        "cannot record an unmatched payment",
        sqlx::query(
            "INSERT INTO unmatched_payments (order_id, reference, amount, currency, refund_reference) \
             VALUES ($1, $2, $3, $4, $5) ON CONFLICT DO NOTHING",
        )
        .bind(id)
        .bind(reference)
        .bind(amount)
        .bind(currency)
        .bind(refund_reference)
        .execute(pool),
    )
    .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_lapse_gives_way_to_an_order_of_its_purchase() {
        let rows = |r: &[(i64, &str)]| -> Vec<(i64, String)> {
            r.iter().map(|(id, s)| (*id, s.to_string())).collect()
        };
        assert_eq!(lapse_from(7, &rows(&[(7, "lapsed")])), Lapse::Recorded);
        assert_eq!(lapse_from(7, &rows(&[(7, "confirmed")])), Lapse::Committed);
        assert_eq!(lapse_from(7, &rows(&[(7, "cancelled")])), Lapse::Committed);
        assert_eq!(
            lapse_from(7, &rows(&[(9, "confirmed")])),
            Lapse::CommittedElsewhere
        );
        assert_eq!(
            lapse_from(7, &rows(&[(7, "lapsed"), (9, "confirmed")])),
            Lapse::CommittedElsewhere
        );
        assert_eq!(lapse_from(7, &rows(&[(9, "lapsed")])), Lapse::Recorded);
    }
}
