//! The capacity calendar's bookings, read from and written to the platform PostgreSQL
//! (`timedeal_platform.bookings`, see `timedeal_api::calendar`). The operator keeps every deal's
//! there; the portal adds a request the moment it files it (so the next request already counts
//! it) and frees it when the request is withdrawn. A request no admin approves stops holding its
//! hours after `timedeal_api::calendar::PENDING_HOLD`.

use chrono::{DateTime, Utc};
use sqlx::{PgPool, Row};
use timedeal_api::calendar::{Booking, UPSERT_BOOKING};

use crate::error::PortalError;

/// Every booking that ends after `from` and holds its hours at `now`: approved, or requested
/// within `PENDING_HOLD`.
pub async fn after(
    pool: &PgPool,
    from: DateTime<Utc>,
    now: DateTime<Utc>,
) -> Result<Vec<Booking>, PortalError> {
    let rows = sqlx::query(
        "SELECT uid, starts_at, ends_at, replicas, approved FROM timedeal_platform.bookings \
         WHERE ends_at > $1 AND (approved OR requested_at > $2 - $3)",
    )
    .bind(from)
    .bind(now)
    .bind(timedeal_api::calendar::PENDING_HOLD)
    .fetch_all(pool)
    .await
    .map_err(PortalError::Database)?;
    Ok(rows
        .into_iter()
        .map(|row| Booking {
            key: row.get("uid"),
            from: row.get("starts_at"),
            until: row.get("ends_at"),
            replicas: row.get("replicas"),
            approved: row.get("approved"),
        })
        .collect())
}

/// Adds (or refreshes) a request's booking.
pub async fn add(
    pool: &PgPool,
    namespace: &str,
    name: &str,
    booking: &Booking,
) -> Result<(), PortalError> {
    sqlx::query(UPSERT_BOOKING)
        .bind(&booking.key)
        .bind(namespace)
        .bind(name)
        .bind(booking.from)
        .bind(booking.until)
        .bind(booking.replicas)
        .bind(booking.approved)
        .execute(pool)
        .await
        .map_err(PortalError::Database)?;
    Ok(())
}

/// Frees a withdrawn request's booking.
pub async fn remove(pool: &PgPool, uid: &str) -> Result<(), PortalError> {
    sqlx::query("DELETE FROM timedeal_platform.bookings WHERE uid = $1")
        .bind(uid)
        .execute(pool)
        .await
        .map_err(PortalError::Database)?;
    Ok(())
}
