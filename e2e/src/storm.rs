//! `storm`: the whole shopper flow at once. N shoppers join, wait their turn, order one unit at a
//! time until refused (the limit, the stock, or the admission stops them), some cancel an order,
//! and all leave. Then the stores are checked against each other and against what the shoppers
//! were told ([`verify::storm_invariants`]); a broken invariant fails the run.

use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use tokio::{sync::Semaphore, task::JoinSet};

use crate::{
    storefront::{self, DealPlan, Storefront},
    verify::{self, RedisProbe, Told},
    Error,
};

/// How big a storm.
#[derive(Clone, Copy, Debug)]
pub struct Plan {
    pub shoppers: usize,
    pub stock: i64,
    pub limit: i64,
    /// Every n-th shopper who bought cancels their first order.
    pub cancel_every: usize,
    /// Requests in flight at most (sockets), not shoppers: every shopper is there at once.
    pub in_flight: usize,
}

impl Plan {
    /// The deal a storm sells: admissions fast enough that the storm is over in seconds.
    pub fn deal(&self, name: &str) -> DealPlan {
        DealPlan {
            stock: self.stock,
            limit: self.limit,
            admission_rate: 2_000,
            max_active: 500,
            ..DealPlan::new(name)
        }
    }
}

/// What a storm did, once its invariants held.
#[derive(Clone, Debug)]
pub struct Report {
    pub elapsed: Duration,
    pub told: Told,
    /// Shoppers refused at the door (sold out before they joined).
    pub refused_at_join: usize,
    /// Units sold at the end, per PostgreSQL.
    pub sold: i64,
    pub left: i64,
}

/// What one shopper was told.
#[derive(Default)]
struct Tally {
    told: Told,
    refused_at_join: usize,
}

/// Runs the storm against `front` (serving `plan.deal(..)`) and checks the stores.
pub async fn run(
    front: &Storefront,
    redis: &RedisProbe,
    postgres_url: &str,
    plan: Plan,
) -> Result<Report, Error> {
    let before = front.counters().await?;
    let gate = Arc::new(Semaphore::new(plan.in_flight));
    let started = Instant::now();
    let mut shoppers = JoinSet::new();
    for i in 0..plan.shoppers {
        let shopper = front.shopper();
        let gate = gate.clone();
        shoppers.spawn(one_shopper(shopper, i, plan, gate));
    }
    let mut tally = Tally::default();
    while let Some(done) = shoppers.join_next().await {
        let one = done.map_err(|e| Error::Load(e.to_string()))??;
        tally.told.confirmed += one.told.confirmed;
        tally.told.cancelled += one.told.cancelled;
        tally.refused_at_join += one.refused_at_join;
    }
    let elapsed = started.elapsed();

    let deal = &front.deal;
    let stock = redis.stock(&deal.prefix()).await?;
    let orders = verify::orders_in_postgres(postgres_url, &deal.schema(), plan.limit).await?;
    verify::storm_invariants(plan.stock, plan.limit, &stock, &orders, &tally.told)?;
    verify::counted(
        front,
        &before,
        &[
            (storefront::orders("confirmed"), tally.told.confirmed as u64),
            (storefront::orders("cancelled"), tally.told.cancelled as u64),
        ],
    )
    .await?;
    Ok(Report {
        elapsed,
        told: tally.told,
        refused_at_join: tally.refused_at_join,
        sold: orders.confirmed_units,
        left: stock.total - stock.sold - stock.reserved,
    })
}

async fn one_shopper(
    mut shopper: storefront::Shopper,
    i: usize,
    plan: Plan,
    gate: Arc<Semaphore>,
) -> Result<Tally, Error> {
    let mut tally = Tally::default();
    let permit = gate.acquire().await;
    let (code, answer) = shopper.join().await?;
    drop(permit);
    match (code, answer["error"]["code"].as_str()) {
        (200, _) => {}
        (409, Some("sold_out")) => {
            tally.refused_at_join = 1;
            return Ok(tally);
        }
        _ => {
            return Err(Error::Unexpected(format!(
                "joining answered {code}: {answer}"
            )))
        }
    }
    let Some(token) = shopper.wait_for_turn(Duration::from_secs(300)).await? else {
        // Told the queue closed (sold out, perhaps only until a cancel returns stock): give the
        // place back, so that nobody is admitted who is no longer there.
        shopper.leave().await?;
        return Ok(tally);
    };
    let _permit = gate.acquire().await;
    let mut first = None;
    for attempt in 0.. {
        let (code, answer) = shopper.order(1, &format!("s{i}-{attempt}"), &token).await?;
        match (code, answer["error"]["code"].as_str()) {
            (201, _) => {
                tally.told.confirmed += 1;
                first = first.or(answer["id"].as_i64());
            }
            // Every unit left is in a checkout: the turn is kept, try again.
            (409, Some("units_reserved")) => {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            (409, Some("over_limit" | "sold_out" | "insufficient_stock"))
            | (403, Some("not_admitted")) => break,
            _ => {
                return Err(Error::Unexpected(format!(
                    "an order answered {code}: {answer}"
                )))
            }
        }
    }
    if let Some(id) = first.filter(|_| i.is_multiple_of(plan.cancel_every)) {
        let (code, answer) = shopper.cancel(id).await?;
        if code != 200 {
            return Err(Error::Unexpected(format!(
                "cancelling order {id} answered {code}: {answer}"
            )));
        }
        tally.told.cancelled += 1;
    }
    let (code, answer) = shopper.leave().await?;
    if code != 204 {
        return Err(Error::Unexpected(format!(
            "leaving the queue answered {code}: {answer}"
        )));
    }
    Ok(tally)
}
