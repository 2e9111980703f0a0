//! The two reference servers the benchmark measures the storefront against. They are part of the
//! benchmark, never of the product, and run as their own processes (`timedeal-bench serve ...`)
//! against the same Redis as the storefront.
//!
//! - `bare`: the machine's ceiling. `/hello` answers a constant; `/buy` runs one Lua decrement
//!   (`lua/buy.lua`) and nothing else.
//! - `lock`: the reference systems' design. `/buy` takes a Redisson-style lock (`SET NX PX` with
//!   a random token, retried while another holder has it), reads the stock, writes it back one
//!   lower, and unlocks with a compare-and-delete (`lua/unlock.lua`).

use std::{net::SocketAddr, sync::Arc, time::Duration};

use axum::{
    extract::State,
    http::StatusCode,
    routing::{get, post},
    Router,
};
use redis::{aio::MultiplexedConnection, AsyncCommands, Script};

/// The Redis key both servers sell from; the benchmark sets it before each run.
pub const STOCK_KEY: &str = "bench:stock";
const LOCK_KEY: &str = "bench:lock";
/// A lock lease long enough for one read and one write, short enough that a crashed holder
/// does not stall the run.
const LEASE_MS: u64 = 3_000;
/// How long a buyer waits before trying a held lock again.
const RETRY: Duration = Duration::from_micros(500);

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Kind {
    Bare,
    Lock,
}

#[derive(Clone)]
struct Shared {
    redis: MultiplexedConnection,
    buy: Arc<Script>,
    unlock: Arc<Script>,
}

/// Serves `kind` on `listen` until the process ends.
pub async fn serve(kind: Kind, listen: SocketAddr, redis_url: &str) -> Result<(), crate::Error> {
    let client =
        redis::Client::open(redis_url).map_err(crate::Error::redis("open the Redis URL"))?;
    let redis = client
        .get_multiplexed_async_connection()
        .await
        .map_err(crate::Error::redis("connect to Redis"))?;
    let shared = Shared {
        redis,
        buy: Arc::new(Script::new(include_str!("../lua/buy.lua"))),
        unlock: Arc::new(Script::new(include_str!("../lua/unlock.lua"))),
    };
    let buy = match kind {
        Kind::Bare => post(buy_bare),
        Kind::Lock => post(buy_locked),
    };
    let router = Router::new()
        .route("/hello", get(|| async { "hello" }))
        .route("/buy", buy)
        .route("/readyz", get(|| async { "ready" }))
        .with_state(shared);
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .map_err(crate::Error::io(format!("listen on {listen}")))?;
    axum::serve(listener, router)
        .await
        .map_err(crate::Error::io("serve"))
}

/// 200 `bought` or 409 `sold out`, as the storefront answers 201 or 409.
fn answer(bought: bool) -> (StatusCode, &'static str) {
    if bought {
        (StatusCode::OK, "bought")
    } else {
        (StatusCode::CONFLICT, "sold out")
    }
}

async fn buy_bare(State(shared): State<Shared>) -> (StatusCode, &'static str) {
    let mut redis = shared.redis.clone();
    match shared
        .buy
        .key(STOCK_KEY)
        .invoke_async::<i64>(&mut redis)
        .await
    {
        Ok(left) => answer(left >= 0),
        Err(_) => (StatusCode::SERVICE_UNAVAILABLE, "redis"),
    }
}

async fn buy_locked(State(shared): State<Shared>) -> (StatusCode, &'static str) {
    let mut redis = shared.redis.clone();
    let token: u64 = rand::random();
    // Lock: retried while another buyer holds it, as Redisson's tryLock waits for the release.
    loop {
        let taken: Option<String> = match redis::cmd("SET")
            .arg(LOCK_KEY)
            .arg(token)
            .arg("NX")
            .arg("PX")
            .arg(LEASE_MS)
            .query_async(&mut redis)
            .await
        {
            Ok(taken) => taken,
            Err(_) => return (StatusCode::SERVICE_UNAVAILABLE, "redis"),
        };
        if taken.is_some() {
            break;
        }
        tokio::time::sleep(RETRY).await;
    }
    // Read, then write: safe only because of the lock.
    let outcome = async {
        let stock: i64 = redis.get::<_, Option<i64>>(STOCK_KEY).await?.unwrap_or(0);
        if stock <= 0 {
            return Ok::<bool, redis::RedisError>(false);
        }
        let _: () = redis.set(STOCK_KEY, stock - 1).await?;
        Ok(true)
    }
    .await;
    let unlocked = shared
        .unlock
        .key(LOCK_KEY)
        .arg(token)
        .invoke_async::<i64>(&mut redis)
        .await;
    match (outcome, unlocked) {
        (Ok(bought), Ok(_)) => answer(bought),
        _ => (StatusCode::SERVICE_UNAVAILABLE, "redis"),
    }
}
