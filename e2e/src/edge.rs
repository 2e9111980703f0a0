//! `crowd behind the cache`: a waiting crowd on the head-and-ping protocol, behind a caching
//! proxy (Debian's nginx, configured as a deal's head Ingress configures ingress-nginx) in front
//! of two replicas of the deal.
//!
//! The whole crowd holds places in the line. A random sample of it follows the page's protocol
//! in real time for the run's length: the public head once a second through the proxy with no
//! cookie, a ping every `pingAfterMs` (its session and ticket), and its status once when the head
//! reaches its place, then nothing more (it would be shopping). The rest hold their places in
//! silence. What reaches the storefronts is read from their own metrics; the cache's hits from
//! nginx's log.
//!
//! Pings are each shopper's own, so their rate is measured per minute of following (a follower
//! the head reached stops counting then). The head reads that reach the storefronts are shared
//! by the whole crowd, however large: the proxy sends one a second whether a thousand or a
//! million pages ask. Status reads come when the head reaches a place, so they follow the
//! admission rate, not the crowd's size. So the origin's requests per waiting shopper per minute
//! are a follower's pings and status reads per minute followed, plus the storefronts' head reads
//! spread over the crowd; and a crowd's cost a second is its pings, plus the head reads and
//! status reads as measured. One cache sends the storefronts about one head read a second:
//! ingress-nginx keeps one cache per controller pod, so multiply that part by the pods.

use std::{
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc,
    },
    time::{Duration, Instant},
};

use rand::{rngs::StdRng, Rng, SeedableRng};
use tokio::task::JoinSet;

use crate::{
    storefront::{requests, Shopper, Storefront},
    verify::RedisProbe,
    Error,
};

/// What a minute of the crowd cost, and where.
#[derive(Clone, Copy, Debug, Default)]
pub struct Minute {
    /// Shoppers holding places.
    pub crowd: u64,
    /// Shoppers who followed the protocol.
    pub followers: u64,
    pub seconds: f64,
    /// Seconds the followers followed, all together (one stops when the head reaches it).
    pub followed_seconds: f64,
    /// What the followers sent, to the proxy.
    pub head_reads: u64,
    pub pings: u64,
    pub statuses: u64,
    /// Followers the head reached within the run.
    pub reached: u64,
    /// What the storefronts answered themselves.
    pub origin_heads: u64,
    pub origin_pings: u64,
    pub origin_statuses: u64,
    /// Head reads nginx answered from its cache.
    pub hits: u64,
    /// Redis commands over the run, both replicas' background work included.
    pub redis_commands: u64,
}

impl Minute {
    /// Minutes of following, all followers together.
    fn followed_minutes(&self) -> f64 {
        self.followed_seconds.max(1.0) / 60.0
    }

    /// Requests one waiting shopper's page sends a minute.
    pub fn page_per_shopper_per_minute(&self) -> f64 {
        (self.head_reads + self.pings + self.statuses) as f64 / self.followed_minutes()
    }

    /// Requests reaching the storefronts a minute per waiting shopper: a follower's own pings per
    /// minute followed, and the head and status reads spread over the whole crowd (neither grows
    /// with it).
    pub fn origin_per_shopper_per_minute(&self) -> f64 {
        let own = self.origin_pings as f64 / self.followed_minutes();
        let shared = (self.origin_heads + self.origin_statuses) as f64 / self.crowd.max(1) as f64;
        own + shared / (self.seconds.max(1.0) / 60.0)
    }

    /// Requests a second the storefronts answer for a crowd of `shoppers` behind one cache: their
    /// pings, and the head and status reads as measured (neither grows with the crowd).
    pub fn origin_per_second(&self, shoppers: f64) -> f64 {
        let pings = self.origin_pings as f64 / self.followed_seconds.max(1.0) * shoppers;
        pings + (self.origin_heads + self.origin_statuses) as f64 / self.seconds.max(1.0)
    }

    /// The share of head reads the cache answered, in %.
    pub fn hit_percent(&self) -> f64 {
        100.0 * self.hits as f64 / self.head_reads.max(1) as f64
    }
}

#[derive(Default)]
struct Tally {
    heads: AtomicU64,
    pings: AtomicU64,
    statuses: AtomicU64,
    reached: AtomicU64,
}

/// One follower: head reads every second, pings as told, and the status once the head is at
/// its place. Its first head read and first ping fall at random in their periods, as a crowd's
/// do.
async fn follow(
    mut shopper: Shopper,
    place: u64,
    head_url: Arc<str>,
    plain: reqwest::Client,
    until: Instant,
    tally: Arc<Tally>,
) -> Result<Duration, Error> {
    let mut rng = StdRng::from_entropy();
    let start = Instant::now();
    let mut next_head = start + Duration::from_millis(rng.gen_range(0..1_000));
    // The default idleGrace's ping gap, until the first answer says.
    let mut next_ping = start + Duration::from_millis(rng.gen_range(0..10_000));
    loop {
        let next = next_head.min(next_ping);
        if next >= until {
            return Ok(until.saturating_duration_since(start));
        }
        tokio::time::sleep_until(next.into()).await;
        let reached = if next_ping <= next_head {
            let (code, pinged) = shopper
                .send(reqwest::Method::POST, "/api/queue/ping", None)
                .await?;
            tally.pings.fetch_add(1, Ordering::Relaxed);
            if code != 200 {
                return Err(Error::Unexpected(format!(
                    "a ping answered {code}: {pinged}"
                )));
            }
            let gap = pinged["pingAfterMs"].as_u64().unwrap_or(10_000).max(100);
            next_ping += Duration::from_millis(gap);
            pinged["reached"] == true
        } else {
            let what = "GET /api/queue/head";
            let answer = plain
                .get(&*head_url)
                .send()
                .await
                .map_err(Error::http(what))?;
            tally.heads.fetch_add(1, Ordering::Relaxed);
            let code = answer.status().as_u16();
            let head: serde_json::Value = answer.json().await.map_err(Error::http(what))?;
            if code != 200 {
                return Err(Error::Unexpected(format!("{what} answered {code}: {head}")));
            }
            next_head += Duration::from_secs(1);
            head["head"].as_u64().is_some_and(|head| head >= place)
        };
        if reached {
            let (code, status) = shopper.status().await?;
            tally.statuses.fetch_add(1, Ordering::Relaxed);
            tally.reached.fetch_add(1, Ordering::Relaxed);
            if code != 200 {
                return Err(Error::Unexpected(format!(
                    "GET /api/queue answered {code}: {status}"
                )));
            }
            return Ok(start.elapsed());
        }
    }
}

/// What the storefronts answered of the protocol's three requests: head reads (200 and 304),
/// pings, status reads.
async fn origin(fronts: &[&Storefront]) -> Result<[u64; 3], Error> {
    let mut counts = [0; 3];
    for front in fronts {
        let now = front.counters().await?;
        counts[0] += now.get(&requests("GET", "/api/queue/head", 200))
            + now.get(&requests("GET", "/api/queue/head", 304));
        counts[1] += now.get(&requests("POST", "/api/queue/ping", 200));
        counts[2] += now.get(&requests("GET", "/api/queue", 200));
    }
    Ok(counts)
}

/// Runs `followers` (each with their place, talking to the proxy) for `length`, in a crowd of
/// `crowd` holding places.
pub async fn minute(
    fronts: &[&Storefront],
    proxy: &timedeal_testkit::CachingProxy,
    redis: &RedisProbe,
    followers: Vec<(Shopper, u64)>,
    crowd: u64,
    length: Duration,
) -> Result<Minute, Error> {
    let count = followers.len() as u64;
    let plain = reqwest::Client::builder()
        .pool_max_idle_per_host(4_096)
        .build()
        .map_err(Error::http("build a client"))?;
    let head_url: Arc<str> = format!("{}/api/queue/head", proxy.url()).into();
    let tally = Arc::new(Tally::default());
    let hits_before = proxy.cache_statuses().get("HIT").copied().unwrap_or(0);
    let before = origin(fronts).await?;
    let commands = redis.commands().await?;
    let started = Instant::now();
    let until = started + length;
    let mut tasks = JoinSet::new();
    for (shopper, place) in followers {
        tasks.spawn(follow(
            shopper,
            place,
            head_url.clone(),
            plain.clone(),
            until,
            tally.clone(),
        ));
    }
    let mut followed = Duration::ZERO;
    while let Some(done) = tasks.join_next().await {
        followed += done.map_err(|e| Error::Load(e.to_string()))??;
    }
    let seconds = started.elapsed().as_secs_f64();
    let redis_commands = redis.commands().await?.saturating_sub(commands);
    let after = origin(fronts).await?;
    // nginx writes its log a tenth of a second behind.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let hits = proxy.cache_statuses().get("HIT").copied().unwrap_or(0) - hits_before;
    Ok(Minute {
        crowd,
        followers: count,
        seconds,
        followed_seconds: followed.as_secs_f64(),
        head_reads: tally.heads.load(Ordering::Relaxed),
        pings: tally.pings.load(Ordering::Relaxed),
        statuses: tally.statuses.load(Ordering::Relaxed),
        reached: tally.reached.load(Ordering::Relaxed),
        origin_heads: after[0] - before[0],
        origin_pings: after[1] - before[1],
        origin_statuses: after[2] - before[2],
        hits,
        redis_commands,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_heads_a_crowd_shares_are_spread_over_it_and_its_own_requests_are_not() {
        let minute = Minute {
            crowd: 1_000_000,
            followers: 1_000,
            seconds: 60.0,
            followed_seconds: 60_000.0,
            head_reads: 60_000,
            pings: 6_000,
            statuses: 10,
            reached: 10,
            origin_heads: 60,
            origin_pings: 6_000,
            origin_statuses: 10,
            hits: 59_940,
            redis_commands: 0,
        };
        assert!((minute.page_per_shopper_per_minute() - 66.01).abs() < 1e-9);
        // 6 pings a follower, and 60 head reads and 10 status reads over a million.
        assert!((minute.origin_per_shopper_per_minute() - 6.00007).abs() < 1e-9);
        // The two figures agree: a million shoppers' share a minute is the cost a second × 60.
        assert!(
            (minute.origin_per_shopper_per_minute() * 1e6 / 60.0
                - minute.origin_per_second(1_000_000.0))
            .abs()
                < 1e-6
        );
        // A million pinging every 10 s, plus the heads and statuses as they came.
        assert!((minute.origin_per_second(1_000_000.0) - 100_001.167).abs() < 0.01);
        // A follower the head reached half-way counts half a minute.
        let reached = Minute {
            followed_seconds: 30_000.0,
            ..minute
        };
        assert!((reached.page_per_shopper_per_minute() - 132.02).abs() < 1e-9);
        assert!((minute.hit_percent() - 99.9).abs() < 1e-9);
    }
}
