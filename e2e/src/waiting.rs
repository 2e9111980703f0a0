//! The waiting room's scenarios, run through the storefront's own API with real tickets: a crowd
//! gathered in the pre-queue, drawn at the start and every place checked against the revealed
//! seed; what waiting shoppers cost Redis per minute when they poll as the page does; and how
//! often the real wait fell inside the range the storefront stated.

use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use serde_json::Value;
use timedeal_tenant_app::queue::fairness::{self, Fairness};
use tokio::{sync::Semaphore, task::JoinSet};

use crate::{
    storefront::{Shopper, Storefront},
    verify::RedisProbe,
    Error,
};

/// Waits until the queue of a deal that has started is open (its first tick after the start):
/// numbers taken before belong to the pre-queue.
pub async fn queue_open(front: &Storefront) -> Result<(), Error> {
    revealed(front, Duration::from_secs(10)).await.map(|_| ())
}

/// Joins `count` new shoppers, `parallel` at a time; each keeps their session and ticket. The
/// answers must all be `expected_state`.
pub async fn join_all(
    front: &Storefront,
    count: usize,
    parallel: usize,
    expected_state: &'static str,
) -> Result<Vec<(Shopper, Value)>, Error> {
    let gate = Arc::new(Semaphore::new(parallel));
    let mut tasks = JoinSet::new();
    for _ in 0..count {
        let mut shopper = front.shopper();
        let gate = gate.clone();
        tasks.spawn(async move {
            let _permit = gate.acquire_owned().await;
            let (code, answer) = shopper.join().await?;
            if code != 200 || answer["state"] != expected_state {
                return Err(Error::Unexpected(format!(
                    "a join answered {code}, expected {expected_state}: {answer}"
                )));
            }
            Ok((shopper, answer))
        });
    }
    let mut joined = Vec::with_capacity(count);
    while let Some(done) = tasks.join_next().await {
        joined.push(done.map_err(|e| Error::Load(e.to_string()))??);
    }
    Ok(joined)
}

/// Asks every shopper for their status, `parallel` at a time, in the given order.
async fn statuses(shoppers: Vec<Shopper>, parallel: usize) -> Result<Vec<Value>, Error> {
    let gate = Arc::new(Semaphore::new(parallel));
    let mut tasks = JoinSet::new();
    for (i, mut shopper) in shoppers.into_iter().enumerate() {
        let gate = gate.clone();
        tasks.spawn(async move {
            let _permit = gate.acquire_owned().await;
            let (code, status) = shopper.status().await?;
            if code != 200 {
                return Err(Error::Unexpected(format!(
                    "a poll answered {code}: {status}"
                )));
            }
            Ok((i, status))
        });
    }
    let mut all = vec![Value::Null; tasks.len()];
    while let Some(done) = tasks.join_next().await {
        let (i, status) = done.map_err(|e| Error::Load(e.to_string()))??;
        all[i] = status;
    }
    Ok(all)
}

/// What the crowd scenario found.
#[derive(Clone, Copy, Debug, Default)]
pub struct Crowd {
    /// Shoppers in the pre-queue when it was drawn.
    pub waiting: u64,
    /// Redis memory the gathered crowd took, in bytes.
    pub memory: u64,
    /// Places checked against the revealed seed, and how many of them matched.
    pub checked: u64,
    pub matched: u64,
}

/// `crowd`: `size` shoppers join the pre-queue of a deal that has not started (`front` must be
/// the only tenant of `redis`); Redis memory before and after. Then the deal starts, the seed is
/// revealed, and every shopper's place as the storefront tells it is checked against the places
/// recomputed from the seed, which must match the commitment published before anyone joined.
/// `keep` shoppers, drawn at random, come back with their places, still waiting.
pub async fn crowd(
    front: &mut Storefront,
    redis: &RedisProbe,
    size: usize,
    parallel: usize,
    keep: usize,
) -> Result<(Crowd, Vec<(Shopper, u64)>), Error> {
    let before = redis.used_memory().await?;
    let joined = join_all(front, size, parallel, "pre_queue").await?;
    let memory = redis.used_memory().await?.saturating_sub(before);
    let commitment = joined
        .first()
        .map(|(_, answer)| answer["drawCommitment"].as_str().unwrap_or("").to_owned())
        .unwrap_or_default();
    let numbers: Vec<u64> = joined
        .iter()
        .map(|(_, answer)| answer["joinNumber"].as_u64().unwrap_or(0))
        .collect();

    front.reschedule(0)?;
    let record = revealed(front, Duration::from_secs(60)).await?;
    if record.commitment != commitment {
        return Err(Error::Broken(format!(
            "the commitment changed from {commitment} to {}",
            record.commitment
        )));
    }
    let log = fetch_text(front, "/api/fairness/log").await?;
    let log: Vec<String> = log.lines().map(str::to_owned).collect();
    let verified = fairness::verify(&record, &log)
        .map_err(|e| Error::Broken(format!("the crowd's draw: {e}")))?;

    let shoppers: Vec<Shopper> = joined.into_iter().map(|(shopper, _)| shopper).collect();
    let kept: Vec<usize> = rand::seq::index::sample(
        &mut rand::thread_rng(),
        shoppers.len(),
        keep.min(shoppers.len()),
    )
    .into_vec();
    let kept_shoppers: Vec<Shopper> = kept.iter().map(|&i| shoppers[i].clone()).collect();
    let told = statuses(shoppers, parallel).await?;
    let followers = kept_shoppers
        .into_iter()
        .zip(&kept)
        .filter(|(_, &i)| told[i]["state"] == "waiting")
        .filter_map(|(shopper, &i)| Some((shopper, told[i]["ticket"].as_u64()?)))
        .collect();
    let (mut checked, mut matched) = (0, 0);
    for (status, number) in told.iter().zip(&numbers) {
        if status["state"] != "waiting" {
            continue;
        }
        checked += 1;
        let expected = verified.places.get((*number as usize).wrapping_sub(1));
        if status["ticket"].as_u64() == expected.copied() {
            matched += 1;
        }
    }
    if matched != checked {
        return Err(Error::Broken(format!(
            "{} of {checked} places told by the storefront differ from the draw",
            checked - matched
        )));
    }
    let crowd = Crowd {
        waiting: record.pre_queue_size.unwrap_or(0),
        memory,
        checked,
        matched,
    };
    Ok((crowd, followers))
}

async fn fetch_text(front: &Storefront, path: &str) -> Result<String, Error> {
    let what = format!("GET {path}");
    reqwest::get(format!("{}{path}", front.url()))
        .await
        .map_err(Error::http(what.clone()))?
        .text()
        .await
        .map_err(Error::http(what))
}

/// The fairness record once the seed is revealed and the draw keyed (its beacon round recorded).
async fn revealed(front: &Storefront, limit: Duration) -> Result<Fairness, Error> {
    let deadline = Instant::now() + limit;
    loop {
        let text = fetch_text(front, "/api/fairness").await?;
        let record: Fairness = serde_json::from_str(&text).map_err(|e| {
            Error::Unexpected(format!("/api/fairness is not a record ({e}): {text}"))
        })?;
        let keyed = record
            .beacon
            .as_ref()
            .is_none_or(|b| b.randomness.is_some() || b.unavailable);
        if record.seed.is_some() && keyed {
            return Ok(record);
        }
        if Instant::now() > deadline {
            return Err(Error::Unexpected(format!(
                "the queue did not open (the seed was not revealed) within {limit:?} of the start"
            )));
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// `waiting cost`: every shopper of `crowd` polls as the page does (again after `pollAfterMs`)
/// for `period`; Redis commands per shopper per minute, over the storefront's background work
/// measured while nobody polled.
pub async fn waiting_cost(
    redis: &RedisProbe,
    crowd: &[Shopper],
    period: Duration,
) -> Result<f64, Error> {
    let quiet = Duration::from_secs(5);
    let calls = redis.commands().await?;
    tokio::time::sleep(quiet).await;
    let background = (redis.commands().await? - calls) as f64 / quiet.as_secs_f64();

    let calls = redis.commands().await?;
    let started = Instant::now();
    let mut tasks = JoinSet::new();
    for shopper in crowd {
        let mut shopper = shopper.clone();
        tasks.spawn(async move {
            while started.elapsed() < period {
                let (code, status) = shopper.status().await?;
                if code == 200 && matches!(status["state"].as_str(), Some("admitted" | "outside")) {
                    // Their turn came (the line admits one a second), or it passed them over
                    // while they were silent: nothing more to wait for.
                    break;
                }
                if code != 200 || status["state"] != "waiting" {
                    return Err(Error::Unexpected(format!(
                        "a waiting shopper's poll answered {code}: {status}"
                    )));
                }
                let after = status["pollAfterMs"].as_u64().unwrap_or(1_000);
                tokio::time::sleep(Duration::from_millis(after)).await;
            }
            Ok::<_, Error>(())
        });
    }
    while let Some(done) = tasks.join_next().await {
        done.map_err(|e| Error::Load(e.to_string()))??;
    }
    let elapsed = started.elapsed().as_secs_f64();
    let commands = (redis.commands().await? - calls) as f64 - background * elapsed;
    Ok(commands.max(0.0) / crowd.len().max(1) as f64 / (elapsed / 60.0))
}

/// What the estimate scenario found.
#[derive(Clone, Copy, Debug, Default)]
pub struct Coverage {
    /// Shoppers admitted whose join answer stated a range.
    pub admitted: u64,
    /// Of those, how many were admitted within it.
    pub inside: u64,
}

/// `estimates`: two waves of shoppers join a live line (the second once the line's pace has
/// been observed); one in ten leaves at once. Every stayer notes the range stated when they
/// joined and polls until admitted; the real wait is checked against the range (its upper end
/// rounded up to the whole second it was stated in).
pub async fn estimates(front: &Storefront, waves: [usize; 2]) -> Result<Coverage, Error> {
    queue_open(front).await?;
    let mut tasks = JoinSet::new();
    for (wave, count) in waves.into_iter().enumerate() {
        if wave > 0 {
            tokio::time::sleep(Duration::from_secs(20)).await;
        }
        for (i, (shopper, answer)) in join_all(front, count, 64, "waiting")
            .await?
            .into_iter()
            .enumerate()
        {
            if i % 10 == 9 {
                continue; // left
            }
            let joined = Instant::now();
            tasks.spawn(wait_out(shopper, answer, joined));
        }
    }
    let mut coverage = Coverage::default();
    while let Some(done) = tasks.join_next().await {
        if let Some(inside) = done.map_err(|e| Error::Load(e.to_string()))?? {
            coverage.admitted += 1;
            coverage.inside += u64::from(inside);
        }
    }
    Ok(coverage)
}

/// Polls until admitted; whether the wait fell inside the range stated at the join (`None`
/// when no range was stated).
async fn wait_out(
    mut shopper: Shopper,
    answer: Value,
    joined: Instant,
) -> Result<Option<bool>, Error> {
    let low = answer["estimatedWaitLowSeconds"].as_u64();
    let high = answer["estimatedWaitHighSeconds"].as_u64();
    loop {
        let (code, status) = shopper.status().await?;
        if code != 200 {
            return Err(Error::Unexpected(format!(
                "a poll answered {code}: {status}"
            )));
        }
        match status["state"].as_str() {
            Some("admitted") => break,
            Some("waiting") => {}
            _ => {
                return Err(Error::Unexpected(format!(
                    "a waiting shopper was not admitted: {status}"
                )))
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let waited = joined.elapsed().as_secs_f64();
    let Some(low) = low else {
        return Ok(None);
    };
    let above = waited + 0.2 >= low as f64;
    let below = high.is_none_or(|high| waited <= high as f64 + 1.0);
    Ok(Some(above && below))
}
