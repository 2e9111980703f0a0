//! `returns`: a unit that comes back must sell again while anyone still in line wants it. A
//! deal sells out to the first shoppers admitted while a crowd stays in line, polling as told
//! (the line is `paused`, awaiting cancellations); then buyers cancel one order at a time, and
//! each returned unit must be bought by a shopper still in line. What is measured is the time
//! from each cancel's answer to the returned unit's confirmed order.

use std::time::{Duration, Instant};

use serde_json::Value;
use tokio::{sync::mpsc, task::JoinSet};

use crate::{
    storefront::{Shopper, Storefront},
    Error,
};

/// A confirmed order: who bought it (the shopper, to cancel with) and its id, and when.
type Bought = (Shopper, i64, Instant);

/// Polls as the answers say and buys one unit once admitted; gives up at `deadline`. A shopper
/// told `sold_out` at the till is out (their admission ended and joining is refused while
/// sold out); every other answer keeps them in line.
async fn shopper_in_line(
    mut shopper: Shopper,
    i: usize,
    bought: mpsc::UnboundedSender<Bought>,
    deadline: Instant,
) -> Result<(), Error> {
    let (code, answer) = shopper.join().await?;
    if code != 200 {
        return Err(Error::Unexpected(format!(
            "joining answered {code}: {answer}"
        )));
    }
    let mut attempt = 0;
    while Instant::now() < deadline {
        let (code, status) = shopper.status().await?;
        if code != 200 {
            return Err(Error::Unexpected(format!(
                "GET /api/queue answered {code}: {status}"
            )));
        }
        if let (Some("admitted"), Some(token)) =
            (status["state"].as_str(), status["admissionToken"].as_str())
        {
            attempt += 1;
            let (code, order) = shopper.order(1, &format!("r{i}-{attempt}"), token).await?;
            match (code, order["error"]["code"].as_str()) {
                (201, _) => {
                    let id = order["id"].as_i64().unwrap_or_default();
                    let _ = bought.send((shopper, id, Instant::now()));
                    return Ok(());
                }
                (409, Some("units_reserved")) => {}
                (409, Some("sold_out" | "insufficient_stock")) | (403, Some("not_admitted")) => {
                    return Ok(())
                }
                _ => {
                    return Err(Error::Unexpected(format!(
                        "an order answered {code}: {order}"
                    )))
                }
            }
        }
        if matches!(
            status["state"].as_str(),
            Some("closed" | "outside" | "done")
        ) {
            return Ok(());
        }
        let wait = poll_after(&status).clamp(50, 1_000);
        tokio::time::sleep(Duration::from_millis(wait)).await;
    }
    Ok(())
}

fn poll_after(status: &Value) -> u64 {
    status["pollAfterMs"].as_u64().unwrap_or(500)
}

/// Sells `front`'s deal (stock `stock`, limit 1) out to the first of `stock + crowd` shoppers,
/// then cancels `cancels` of the orders one at a time: how long each returned unit took to sell
/// again. An error if one was not sold again within `lease_bound`.
pub async fn return_to_sale(
    front: &Storefront,
    stock: usize,
    crowd: usize,
    cancels: usize,
    lease_bound: Duration,
) -> Result<Vec<Duration>, Error> {
    let deadline = Instant::now() + Duration::from_secs(120) + lease_bound * cancels as u32;
    let (sender, mut bought) = mpsc::unbounded_channel();
    let mut line = JoinSet::new();
    for i in 0..stock + crowd {
        line.spawn(shopper_in_line(
            front.shopper(),
            i,
            sender.clone(),
            deadline,
        ));
    }
    drop(sender);
    let mut buyers = Vec::new();
    while buyers.len() < stock {
        match tokio::time::timeout_at(deadline.into(), bought.recv()).await {
            Ok(Some(sold)) => buyers.push(sold),
            _ => {
                // A shopper's own failure says more than the count.
                line.abort_all();
                while let Some(done) = line.join_next().await {
                    if let Ok(Err(error)) = done {
                        return Err(error);
                    }
                }
                return Err(Error::Unexpected(format!(
                    "only {} of {stock} units sold",
                    buyers.len()
                )));
            }
        }
    }
    let mut took = Vec::new();
    for (mut buyer, id, _) in buyers.into_iter().take(cancels) {
        let (code, answer) = buyer.cancel(id).await?;
        if code != 200 {
            return Err(Error::Unexpected(format!(
                "cancelling order {id} answered {code}: {answer}"
            )));
        }
        let cancelled = Instant::now();
        let (_, _, at) = tokio::time::timeout(lease_bound, bought.recv())
            .await
            .ok()
            .flatten()
            .ok_or_else(|| {
                Error::Unexpected(format!(
                    "the unit of cancelled order {id} was not sold again within {lease_bound:?}, \
                     with a crowd still in line"
                ))
            })?;
        took.push(at.saturating_duration_since(cancelled));
    }
    line.abort_all();
    Ok(took)
}
