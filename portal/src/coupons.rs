//! Redeeming a coupon deal's codes, in the deal's schema of the platform PostgreSQL, read and
//! written on a connection logged in as the deal's own role; which deal is the caller's is
//! checked before this is reached.
//!
//! Redemption is one conditional UPDATE of the order's row: it takes effect only while the
//! order is confirmed, the code unredeemed and still valid. Two redemptions racing, or a
//! redemption racing the shopper's cancel (which changes the same row only while the code is
//! unredeemed), are serialised on that row's lock, so exactly one of them wins.

use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::PgPool;

/// A code redeemed just now.
#[derive(Debug, Clone, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Redeemed {
    pub code: String,
    pub order_id: i64,
    pub quantity: i32,
    pub redeemed_at: DateTime<Utc>,
}

/// Why a code was not redeemed.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum Refusal {
    #[error("{0:?} is not a coupon code: codes are 20 letters and digits, such as 7K2M-QX9P-0RTD-V4HN-C8ZE")]
    Malformed(String),
    #[error("no order of this deal has the coupon {0}; check the code")]
    Unknown(String),
    #[error("coupon {code} was already redeemed at {at} (order {order_id}); nothing was changed")]
    AlreadyRedeemed {
        code: String,
        order_id: i64,
        at: String,
    },
    #[error("coupon {code} expired at {until}; nothing was changed")]
    Expired { code: String, until: String },
    #[error(
        "coupon {code} belongs to order {order_id}, which was cancelled; it cannot be redeemed"
    )]
    Cancelled { code: String, order_id: i64 },
    #[error(
        "the deal's orders cannot be reached just now; nothing was changed. Try again in a minute"
    )]
    Database(String),
}

/// An order's id, status, redemption time and validity.
type CouponRow = (i64, String, Option<DateTime<Utc>>, DateTime<Utc>);

fn at(time: DateTime<Utc>) -> String {
    time.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

/// Redeems `typed` (as a person typed it) in the deal `uid` whose schema is `schema`, once, on a
/// connection of its own logged in as the deal (`timedeal_api::storage::connect_as_deal`).
pub async fn redeem(
    platform: &PgPool,
    platform_url: &str,
    schema: &str,
    uid: &str,
    typed: &str,
) -> Result<Redeemed, Refusal> {
    use timedeal_api::storage::{connect_as_deal, Bounds};
    let code = timedeal_api::coupon::normalize(typed)
        .ok_or_else(|| Refusal::Malformed(typed.chars().take(40).collect()))?;
    let database = |e: sqlx::Error| Refusal::Database(e.to_string());
    let bounds = Bounds {
        lock_timeout: std::time::Duration::from_secs(5),
        statement_timeout: std::time::Duration::from_secs(10),
    };
    let mut tx = match connect_as_deal(platform, platform_url, schema, uid, bounds).await {
        Ok(Some(db)) => db,
        // A deal never set up took no order: no code is its.
        Ok(None) => return Err(Refusal::Unknown(code)),
        Err(e) => return Err(Refusal::Database(e.to_string())),
    };
    let redeemed: Option<(i64, i32, DateTime<Utc>)> = match sqlx::query_as(&format!(
        "UPDATE \"{schema}\".orders SET coupon_redeemed_at = now() \
         WHERE coupon_code = $1 AND status = 'confirmed' AND coupon_redeemed_at IS NULL \
           AND coupon_valid_until > now() \
         RETURNING id, quantity, coupon_redeemed_at"
    ))
    .bind(&code)
    .fetch_optional(&mut tx)
    .await
    {
        Ok(found) => found,
        // A deal that never took an order has no table yet: no code is its.
        Err(sqlx::Error::Database(e)) if e.code().as_deref() == Some("42P01") => {
            return Err(Refusal::Unknown(code))
        }
        Err(e) => return Err(database(e)),
    };
    if let Some((order_id, quantity, redeemed_at)) = redeemed {
        return Ok(Redeemed {
            code,
            order_id,
            quantity,
            redeemed_at,
        });
    }
    // Not redeemed: say why.
    let found: Option<CouponRow> = sqlx::query_as(&format!(
        "SELECT id, status, coupon_redeemed_at, coupon_valid_until FROM \"{schema}\".orders \
             WHERE coupon_code = $1"
    ))
    .bind(&code)
    .fetch_optional(&mut tx)
    .await
    .map_err(database)?;
    Err(match found {
        None => Refusal::Unknown(code),
        Some((order_id, _, Some(redeemed), _)) => Refusal::AlreadyRedeemed {
            code,
            order_id,
            at: at(redeemed),
        },
        Some((order_id, status, None, _)) if status != "confirmed" => {
            Refusal::Cancelled { code, order_id }
        }
        Some((_, _, None, until)) => Refusal::Expired {
            code,
            until: at(until),
        },
    })
}

impl Refusal {
    /// A stable code for programs.
    pub fn code(&self) -> &'static str {
        match self {
            Refusal::Malformed(_) => "invalid_code",
            Refusal::Unknown(_) => "unknown_code",
            Refusal::AlreadyRedeemed { .. } => "already_redeemed",
            Refusal::Expired { .. } => "expired",
            Refusal::Cancelled { .. } => "order_cancelled",
            Refusal::Database(_) => "unavailable",
        }
    }

    /// The HTTP status that goes with it.
    pub fn status(&self) -> u16 {
        match self {
            Refusal::Malformed(_) => 400,
            Refusal::Unknown(_) => 404,
            Refusal::AlreadyRedeemed { .. }
            | Refusal::Expired { .. }
            | Refusal::Cancelled { .. } => 409,
            Refusal::Database(_) => 503,
        }
    }
}
