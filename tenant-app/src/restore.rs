//! Restoring Redis's figures after it lost them (first start, a Redis pod replaced without its
//! data, `FLUSHALL`). Until the figures are back, every script that changes stock refuses and
//! the API answers a retryable `503 unavailable`; once back, they are PostgreSQL's exactly.
//!
//! The steps: one replica takes a short lock in Redis; PostgreSQL moves to the next epoch (which
//! waits for every commit and cancellation under way, and refuses the older epoch's orders from
//! then on) and says what is sold and who owns what; `restore.lua` writes it all at once.

use crate::{app::App, db, error::Error};

/// How long one replica may take over a restore before another may try.
const LOCK_MS: u64 = 15_000;

/// Restores the figures if Redis holds none; true when this call restored them.
pub async fn restore_if_lost(app: &App) -> Result<bool, Error> {
    let mut redis = app.redis.clone();
    let deal_key = format!("{}deal", app.prefix);
    let present: bool = redis::cmd("HEXISTS")
        .arg(&deal_key)
        .arg("epoch")
        .query_async(&mut redis)
        .await?;
    if present {
        return Ok(false);
    }
    let lock = format!("{}restoring", app.prefix);
    let taken: Option<String> = redis::cmd("SET")
        .arg(&lock)
        .arg(std::process::id())
        .arg("NX")
        .arg("PX")
        .arg(LOCK_MS)
        .query_async(&mut redis)
        .await?;
    if taken.is_none() {
        return Ok(false);
    }
    let restored = restore(app, &deal_key).await;
    // Deleting a lock that expired and was taken by another replica is harmless: two restores
    // are safe (each opens its own epoch; the newer one wins), only wasteful.
    let _: Result<i64, _> = redis::cmd("DEL").arg(&lock).query_async(&mut redis).await;
    restored
}

async fn restore(app: &App, deal_key: &str) -> Result<bool, Error> {
    let present: bool = redis::cmd("HEXISTS")
        .arg(deal_key)
        .arg("epoch")
        .query_async(&mut app.redis.clone())
        .await?;
    if present {
        return Ok(false);
    }
    let deal = app.deal();
    let figures = db::begin_epoch(&app.db).await?;
    let mut invocation = app.scripts.restore.key(&app.prefix);
    invocation
        .arg(figures.epoch)
        .arg(deal.spec.product.stock)
        .arg(figures.sold);
    for (shopper, units) in &figures.owned {
        invocation.arg(shopper).arg(units);
    }
    let restored: i64 = invocation.invoke_async(&mut app.redis.clone()).await?;
    if restored == 1 {
        tracing::info!(
            deal = %deal.name,
            epoch = figures.epoch,
            stock = deal.spec.product.stock,
            sold = figures.sold,
            shoppers = figures.owned.len(),
            "stock figures restored in Redis from PostgreSQL"
        );
    }
    Ok(restored == 1)
}
