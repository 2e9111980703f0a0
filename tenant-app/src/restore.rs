//! Restoring Redis's figures from PostgreSQL whenever Redis may have lost any of its history:
//! it has none (first start, a pod replaced without its data, `FLUSHALL`), it is not the
//! instance the figures were restored into (it restarted, maybe from an append-only file up to
//! a second old after its node was lost, or another instance took over), or it said something
//! PostgreSQL's record contradicts (an order refused at commit, an id block handed out twice).
//! Until the figures are back, every script that changes stock refuses and the API answers a
//! retryable `503 unavailable`; once back, they are PostgreSQL's exactly.
//!
//! The steps: one replica takes a short lock in Redis; PostgreSQL moves to the next epoch (which
//! waits for every commit and cancellation under way, and refuses the older epoch's orders from
//! then on) and says what is sold and who owns what; `restore.lua` writes it all at once, with
//! the instance's `run_id`.

use crate::{app::App, db, error::Error, orders::reservations::Reservation};

/// How long one replica may take over a restore before another may try.
const LOCK_MS: u64 = 15_000;

/// Why Redis's figures need restoring.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cause {
    /// Redis holds no figures.
    Lost,
    /// Redis is another instance than the one they were restored into (it restarted).
    Restarted,
    /// Redis contradicted PostgreSQL.
    Doubted,
}

/// Whether the figures need restoring: `epoch` and `run` as the deal's hash holds them,
/// `run_id` the server's own.
pub fn cause(epoch: Option<&str>, run: Option<&str>, run_id: &str, doubted: bool) -> Option<Cause> {
    match (epoch, run) {
        (None, _) => Some(Cause::Lost),
        (Some(_), run) if run != Some(run_id) => Some(Cause::Restarted),
        _ if doubted => Some(Cause::Doubted),
        _ => None,
    }
}

/// The server's `run_id`, a random id it takes at every start.
async fn run_id(app: &App) -> Result<String, Error> {
    let info: String = redis::cmd("INFO")
        .arg("server")
        .query_async(&mut app.redis.clone())
        .await?;
    info.lines()
        .find_map(|line| line.strip_prefix("run_id:"))
        .map(|id| id.trim().to_owned())
        .ok_or_else(|| Error::Redis("INFO server gave no run_id".into()))
}

/// Restores the figures if Redis may have lost any of its history; true when this call
/// restored them.
pub async fn restore_if_lost(app: &App) -> Result<bool, Error> {
    let mut redis = app.redis.clone();
    let deal_key = format!("{}deal", app.prefix);
    let run_id = run_id(app).await?;
    let (epoch, run): (Option<String>, Option<String>) = redis::cmd("HMGET")
        .arg(&deal_key)
        .arg("epoch")
        .arg("run")
        .query_async(&mut redis)
        .await?;
    let current = epoch.as_deref().and_then(|e| e.parse::<i64>().ok());
    // A doubt about an epoch Redis has since left behind was answered by that restore.
    let doubted_in = app.reservations.take_doubt();
    let doubted = doubted_in.is_some_and(|d| current.is_none_or(|c| c <= d));
    let Some(cause) = cause(epoch.as_deref(), run.as_deref(), &run_id, doubted) else {
        return Ok(false);
    };
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
    let restored = restore(app, cause, &run_id, epoch.as_deref()).await;
    // Deleting a lock that expired and was taken by another replica is harmless: two restores
    // are safe (each opens its own epoch; the newer one wins), only wasteful.
    let _: Result<i64, _> = redis::cmd("DEL").arg(&lock).query_async(&mut redis).await;
    if let (Err(_), Cause::Doubted, Some(epoch)) = (&restored, cause, doubted_in) {
        app.reservations
            .doubt(epoch, "the restore failed; trying again");
    }
    if matches!(restored, Ok(true)) {
        app.metrics
            .redis_restored_at
            .set(chrono::Utc::now().timestamp());
    }
    restored
}

async fn restore(app: &App, cause: Cause, run_id: &str, seen: Option<&str>) -> Result<bool, Error> {
    // Another replica may have restored since this one looked.
    let epoch: Option<String> = redis::cmd("HGET")
        .arg(format!("{}deal", app.prefix))
        .arg("epoch")
        .query_async(&mut app.redis.clone())
        .await?;
    if epoch.as_deref() != seen {
        return Ok(false);
    }
    let deal = app.deal();
    let figures = db::begin_epoch(&app.db).await?;
    let mut invocation = app.scripts.restore.key(&app.prefix);
    invocation
        .arg(figures.epoch)
        .arg(deal.spec.product.stock)
        .arg(figures.sold)
        .arg(run_id)
        .arg(figures.last_place)
        .arg(figures.pre_queue.map(|n| n.to_string()).unwrap_or_default());
    for (shopper, units) in &figures.owned {
        invocation.arg(format!("u:{shopper}")).arg(units);
    }
    for (shopper, key, id, quantity) in &figures.purchases {
        invocation
            .arg(format!("k:{shopper}:{key}"))
            .arg(Reservation::committed(*id, *quantity, key, shopper));
    }
    let restored: i64 = invocation.invoke_async(&mut app.redis.clone()).await?;
    if restored == 1 {
        tracing::info!(
            deal = %deal.name,
            ?cause,
            epoch = figures.epoch,
            stock = deal.spec.product.stock,
            sold = figures.sold,
            shoppers = figures.owned.len(),
            "stock figures restored in Redis from PostgreSQL"
        );
    }
    Ok(restored == 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_redis_without_figures_is_restored() {
        assert_eq!(cause(None, None, "r1", false), Some(Cause::Lost));
        assert_eq!(cause(None, Some("r1"), "r1", false), Some(Cause::Lost));
    }

    #[test]
    fn a_redis_that_restarted_is_restored_even_with_its_figures() {
        assert_eq!(
            cause(Some("3"), Some("r1"), "r2", false),
            Some(Cause::Restarted)
        );
        assert_eq!(
            cause(Some("3"), None, "r2", false),
            Some(Cause::Restarted),
            "figures from before the instance was recorded"
        );
    }

    #[test]
    fn the_same_instance_is_trusted_unless_doubted() {
        assert_eq!(cause(Some("3"), Some("r1"), "r1", false), None);
        assert_eq!(
            cause(Some("3"), Some("r1"), "r1", true),
            Some(Cause::Doubted)
        );
    }
}
