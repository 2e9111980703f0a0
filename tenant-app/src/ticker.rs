//! The background work every replica does, a few times a second: open the queue at the start,
//! run one admission step, settle lapsed reservations, return the stock of cancelled orders, and
//! publish the deal-wide figures that live updates and metrics read. Every step is safe to run
//! from many replicas at once: the Lua scripts and PostgreSQL's primary keys decide.

use std::{sync::Arc, time::Duration};

use chrono::Utc;
use tokio::sync::watch;

use crate::{app::App, db, deal::DealState, error::Error, orders, queue::Figures};

const TICK: Duration = Duration::from_millis(100);

/// Sets the stock figures in Redis when it has none (first start, or Redis lost its data), from
/// what PostgreSQL knows was sold; keeps the total in step with the spec.
pub async fn init_stock(app: &App) -> Result<(), Error> {
    let deal = app.deal();
    let (sold, last_id) = db::sold_and_last_id(&app.db).await?;
    let fresh: i64 = app
        .scripts
        .init
        .key(&app.prefix)
        .arg(deal.spec.product.stock)
        .arg(sold)
        .arg(last_id)
        .invoke_async(&mut app.redis.clone())
        .await?;
    if fresh == 1 {
        // Redis had nothing: also restore what each shopper owns, so per-user limits hold
        // across a Redis that lost its data.
        let owned = db::owned_by_shopper(&app.db).await?;
        if !owned.is_empty() {
            let mut pipe = redis::pipe();
            for (shopper, units) in &owned {
                pipe.set(format!("{}held:{shopper}", app.prefix), units)
                    .ignore();
            }
            pipe.exec_async(&mut app.redis.clone()).await?;
        }
        tracing::info!(
            deal = %deal.name,
            stock = deal.spec.product.stock,
            sold,
            shoppers = owned.len(),
            "stock figures initialised in Redis"
        );
    }
    Ok(())
}

/// Reads the deal-wide figures now.
pub async fn figures(app: &App) -> Result<Figures, Error> {
    Ok(app.queue.status("", Utc::now().timestamp_millis()).await?.2)
}

pub fn spawn(app: Arc<App>, publish: watch::Sender<Figures>) {
    tokio::spawn(async move {
        let mut ticks: u64 = 0;
        let mut interval = tokio::time::interval(TICK);
        interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            interval.tick().await;
            ticks += 1;
            if let Err(error) = tick(&app, &publish, ticks).await {
                if ticks % 50 == 1 {
                    tracing::warn!(%error, "background step failed; retrying");
                }
            }
        }
    });
}

async fn tick(app: &App, publish: &watch::Sender<Figures>, ticks: u64) -> Result<(), Error> {
    let deal = app.deal();
    let now = Utc::now();
    let now_ms = now.timestamp_millis();
    if ticks.is_multiple_of(20) {
        init_stock(app).await?;
    }
    if now >= deal.timeline.start {
        if let Some(placed) = app.queue.open(rand::random()).await? {
            tracing::info!(
                placed,
                "the deal started: the pre-queue was drawn into the line"
            );
        }
    }
    let admitting = app.state_now(now) == DealState::Live;
    let step = app
        .queue
        .step(
            now_ms,
            &App::settings(&deal),
            deal.spec.queue.session_ttl.std(),
            deal.spec.queue.idle_grace.std(),
            admitting,
        )
        .await?;
    if step.admitted > 0 {
        tracing::debug!(
            admitted = step.admitted,
            waiting = step.waiting,
            "admitted shoppers"
        );
    }
    if ticks.is_multiple_of(5) {
        settle_lapsed(app, now_ms).await?;
    }
    if ticks.is_multiple_of(20) {
        for (id, shopper, quantity) in db::to_restock(&app.db).await? {
            orders::restock(app, id, &shopper, quantity).await;
        }
    }
    let figures = figures(app).await?;
    app.metrics.queue_waiting.set(figures.waiting as i64);
    app.metrics.queue_admitted.set(figures.active as i64);
    app.metrics.stock_remaining.set(figures.available.max(0));
    app.metrics.stock_reserved.set(figures.reserved);
    publish.send_if_modified(|current| {
        let changed = *current != figures;
        *current = figures;
        changed
    });
    Ok(())
}

/// Reservations past their TTL: if their order reached PostgreSQL after all, confirm them;
/// otherwise record the lapse there first (so a late commit cannot also land) and give the
/// stock back.
async fn settle_lapsed(app: &App, now_ms: i64) -> Result<(), Error> {
    let ids: Vec<i64> = redis::cmd("ZRANGEBYSCORE")
        .arg(format!("{}res_expiry", app.prefix))
        .arg("-inf")
        .arg(now_ms)
        .arg("LIMIT")
        .arg(0)
        .arg(100)
        .query_async(&mut app.redis.clone())
        .await?;
    if ids.is_empty() {
        return Ok(());
    }
    let deal = app.deal();
    for id in ids {
        let (shopper, quantity, key): (Option<String>, Option<i32>, Option<String>) =
            redis::cmd("HMGET")
                .arg(format!("{}res:{id}", app.prefix))
                .arg("shopper")
                .arg("qty")
                .arg("key")
                .query_async(&mut app.redis.clone())
                .await?;
        let (Some(shopper), Some(quantity), Some(key)) = (shopper, quantity, key) else {
            // Settled meanwhile by its own request.
            continue;
        };
        let lapsed = db::record_lapse(
            &app.db,
            id,
            &shopper,
            quantity,
            &key,
            deal.spec.product.deal_price,
            &deal.spec.product.currency,
        )
        .await?;
        if lapsed {
            orders::release(app, id, "lapsed").await;
            app.metrics.order("lapsed");
            tracing::info!(order = id, quantity, "reservation lapsed; stock returned");
        } else {
            orders::confirm(app, id).await;
            tracing::info!(order = id, "reservation found committed; confirmed");
        }
    }
    Ok(())
}
