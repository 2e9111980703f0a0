//! The fault drills: a sale on two replicas of the real storefront, against real Redis,
//! PostgreSQL and an HTTP payment provider, while one thing at a time goes wrong: Redis restarted
//! empty or with its AOF, a replica killed, PostgreSQL stopped or frozen, cancels racing, the
//! payment provider failing, hanging and answering late, clocks skewed. After each, once
//! settled, every promise is checked against the stores (see `settled`).

mod common;

use std::{
    collections::{BTreeMap, BTreeSet},
    ffi::OsString,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use common::{eventually, postgres, DealFile, PaymentProvider, Storefront};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use timedeal_tenant_app::payments::sandbox::Mode;
use timedeal_testkit::{Durability, PostgresServer, RedisServer};

const STOCK: i64 = 40;
const LIMIT: i64 = 2;

fn fault_deal(name: &str) -> DealFile {
    DealFile {
        stock: STOCK,
        limit: LIMIT,
        // Slow enough that the sale is still on when the fault hits.
        rate: 20,
        max_active: 30,
        reservation_ttl: "5s",
        session_ttl: "2m",
        ..DealFile::live(name)
    }
}

/// What the shoppers were told, and by whom.
#[derive(Default, Debug)]
struct Told {
    /// Order id → (shopper session, quantity) for every order answered as placed.
    confirmed: BTreeMap<i64, (String, i64)>,
    /// Orders answered as cancelled.
    cancelled: BTreeSet<i64>,
    /// Answers that said "try again" (503), by code.
    retried: BTreeMap<String, usize>,
    /// The longest any one answer took.
    slowest: Duration,
}

/// A shopper that goes to another replica when theirs stops answering, and retries what the
/// storefront says to retry, with the same idempotency key.
struct Shopper {
    client: reqwest::Client,
    urls: Vec<String>,
    at: Mutex<usize>,
    session: Mutex<Option<String>>,
    told: Arc<Mutex<Told>>,
}

impl Shopper {
    fn new(urls: &[String], first: usize, told: Arc<Mutex<Told>>) -> Self {
        Self {
            client: reqwest::Client::builder()
                .timeout(Duration::from_secs(30))
                .build()
                .unwrap(),
            urls: urls.to_vec(),
            at: Mutex::new(first % urls.len()),
            session: Mutex::new(None),
            told,
        }
    }

    async fn send(&self, method: Method, path: &str, body: Option<Value>) -> (StatusCode, Value) {
        for _ in 0..50 {
            let base = self.urls[*self.at.lock().unwrap()].clone();
            let mut request = self.client.request(method.clone(), format!("{base}{path}"));
            if let Some(session) = self.session.lock().unwrap().clone() {
                request = request.header("x-timedeal-session", session);
            }
            if let Some(body) = &body {
                request = request.json(body);
            }
            let started = Instant::now();
            let response = match request.send().await {
                Ok(response) => response,
                Err(_) => {
                    // That replica is gone: go to the next one.
                    {
                        let mut at = self.at.lock().unwrap();
                        *at = (*at + 1) % self.urls.len();
                    }
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            };
            if let Some(session) = response.headers().get("x-timedeal-session") {
                *self.session.lock().unwrap() = Some(session.to_str().unwrap().to_owned());
            }
            let status = response.status();
            let retry_after = response.headers().contains_key("retry-after");
            let text = response.text().await.unwrap_or_default();
            let elapsed = started.elapsed();
            let json: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
            {
                let mut told = self.told.lock().unwrap();
                told.slowest = told.slowest.max(elapsed);
                if status == StatusCode::SERVICE_UNAVAILABLE {
                    assert!(retry_after, "a 503 without Retry-After: {text}");
                    let code = json["error"]["code"].as_str().unwrap_or("?").to_owned();
                    *told.retried.entry(code).or_default() += 1;
                }
            }
            return (status, json);
        }
        panic!("no replica answered {path}");
    }

    /// Joins and waits to be admitted; `None` once there is nothing to queue for.
    async fn admission(&self, deadline: Instant) -> Option<String> {
        while Instant::now() < deadline {
            let (code, answer) = self.send(Method::POST, "/api/queue", None).await;
            match (code, answer["error"]["code"].as_str()) {
                (StatusCode::OK, _) => {}
                (StatusCode::SERVICE_UNAVAILABLE, _) => {
                    tokio::time::sleep(Duration::from_millis(300)).await;
                    continue;
                }
                (StatusCode::CONFLICT, Some("sold_out" | "over_limit")) => return None,
                other => panic!("unexpected answer to a join: {other:?} {answer}"),
            }
            while Instant::now() < deadline {
                let (code, status) = self.send(Method::GET, "/api/queue", None).await;
                if code != StatusCode::OK {
                    tokio::time::sleep(Duration::from_millis(300)).await;
                    continue;
                }
                match status["state"].as_str() {
                    Some("admitted") => {
                        return status["admissionToken"].as_str().map(str::to_owned)
                    }
                    Some("closed" | "done") => return None,
                    // The line was lost (Redis restarted empty): join again.
                    Some("outside") => break,
                    _ => tokio::time::sleep(Duration::from_millis(200)).await,
                }
            }
        }
        None
    }

    /// Buys one unit at a time until refused for good; cancels the first order when `cancels`.
    async fn shop(&self, name: &str, mut cancels: bool, deadline: Instant) {
        let mut attempt = 0;
        'admission: while let Some(mut token) = self.admission(deadline).await {
            loop {
                attempt += 1;
                let key = format!("{name}-{attempt}");
                // The same order until it is answered for good.
                loop {
                    if Instant::now() > deadline {
                        return;
                    }
                    let body =
                        json!({"quantity": 1, "idempotencyKey": key, "admissionToken": token});
                    let (code, answer) = self.send(Method::POST, "/api/orders", Some(body)).await;
                    let reason = answer["error"]["code"].as_str().unwrap_or("");
                    match (code, reason) {
                        (StatusCode::CREATED | StatusCode::OK, _) => {
                            let id = answer["id"].as_i64().unwrap();
                            let session = self.session.lock().unwrap().clone().unwrap();
                            let previous =
                                self.told.lock().unwrap().confirmed.insert(id, (session, 1));
                            assert!(
                                previous.is_none() || code == StatusCode::OK,
                                "order {id} was placed twice: {answer}"
                            );
                            if cancels {
                                self.cancel(id, deadline).await;
                                cancels = false;
                            }
                            break;
                        }
                        (StatusCode::SERVICE_UNAVAILABLE, "unavailable" | "outcome_unknown")
                        | (StatusCode::CONFLICT, "order_in_progress" | "order_failed") => {
                            tokio::time::sleep(Duration::from_millis(300)).await
                        }
                        (StatusCode::PAYMENT_REQUIRED, _) => break,
                        (StatusCode::FORBIDDEN, "not_admitted") => continue 'admission,
                        (StatusCode::FORBIDDEN, "admission_expired") => continue 'admission,
                        (
                            StatusCode::CONFLICT,
                            "over_limit" | "sold_out" | "insufficient_stock",
                        ) => return,
                        other => panic!("unexpected answer to an order: {other:?} {answer}"),
                    }
                }
                // A fresh token after a cancel or a restore: ask for the place again.
                let (code, status) = self.send(Method::GET, "/api/queue", None).await;
                if code == StatusCode::OK {
                    match status["admissionToken"].as_str() {
                        Some(fresh) => token = fresh.to_owned(),
                        None => continue 'admission,
                    }
                }
            }
        }
    }

    /// Cancels until answered for good; records it when cancelled.
    async fn cancel(&self, id: i64, deadline: Instant) {
        while Instant::now() < deadline {
            let (code, answer) = self
                .send(Method::POST, &format!("/api/orders/{id}/cancel"), None)
                .await;
            match code {
                StatusCode::OK => {
                    self.told.lock().unwrap().cancelled.insert(id);
                    return;
                }
                StatusCode::SERVICE_UNAVAILABLE => {
                    tokio::time::sleep(Duration::from_millis(300)).await
                }
                StatusCode::CONFLICT => {
                    assert_eq!(answer["error"]["code"], "already_cancelled", "{answer}");
                    self.told.lock().unwrap().cancelled.insert(id);
                    return;
                }
                other => panic!("unexpected answer to a cancel: {other} {answer}"),
            }
        }
    }
}

/// A sale on two replicas sharing one Redis, one PostgreSQL and one payment provider, with a
/// crowd of shoppers on it.
struct Drill {
    first: Storefront,
    second: Storefront,
    urls: Vec<String>,
    provider: PaymentProvider,
    told: Arc<Mutex<Told>>,
    db: sqlx::PgPool,
    deal: String,
    shoppers: Vec<tokio::task::JoinHandle<()>>,
    /// Units sold or cancelled when the fault was injected.
    at_fault: Option<i64>,
}

impl Drill {
    /// Starts both replicas with `flags` besides the provider's.
    async fn start(
        redis: &RedisServer,
        postgres_url: &str,
        name: &str,
        provider: PaymentProvider,
        flags: &[&str],
    ) -> Self {
        let mut all = vec![provider.flag()];
        all.extend(flags.iter().map(|f| f.to_string()));
        let all: Vec<&str> = all.iter().map(String::as_str).collect();
        let deal = fault_deal(name);
        let first = Storefront::start(redis, postgres_url, &deal, &all);
        let second = first.replica(redis, &all);
        let db = first.db().await;
        Self {
            urls: vec![first.url(), second.url()],
            first,
            second,
            provider,
            told: Arc::default(),
            db,
            deal: deal.name,
            shoppers: Vec::new(),
            at_fault: None,
        }
    }

    /// Lets `shoppers` loose; every `cancel_every`-th one cancels their first order.
    fn crowd(&mut self, shoppers: usize, cancel_every: usize) {
        let deadline = Instant::now() + Duration::from_secs(90);
        self.shoppers = (0..shoppers)
            .map(|i| {
                let shopper = Shopper::new(&self.urls, i, self.told.clone());
                let cancels = cancel_every > 0 && i % cancel_every == 0;
                tokio::spawn(async move { shopper.shop(&format!("s{i}"), cancels, deadline).await })
            })
            .collect();
    }

    /// Units sold so far, cancelled ones included.
    async fn units(&self) -> i64 {
        sqlx::query_scalar(&format!(
            "SELECT COALESCE(SUM(quantity), 0)::BIGINT FROM {}.orders WHERE status <> 'lapsed'",
            self.first.schema
        ))
        .fetch_one(&self.db)
        .await
        .unwrap_or(0)
    }

    /// Waits until at least `units` are sold, and notes that the fault comes now: the drill
    /// then checks that the sale went on after it.
    async fn sold(&mut self, units: i64) {
        eventually(
            &format!("{units} units sold"),
            Duration::from_secs(60),
            || async { self.units().await >= units },
        )
        .await;
        if self.at_fault.is_none() {
            self.at_fault = Some(self.units().await);
        }
    }

    /// Waits for every shopper to be done, and returns what they were told.
    async fn finish(&mut self) -> Told {
        for shopper in self.shoppers.drain(..) {
            shopper.await.expect("a shopper panicked");
        }
        std::mem::take(&mut *self.told.lock().unwrap())
    }

    /// Waits for the crowd, then checks every promise (see [`settled`]).
    async fn settled(&mut self, redis: &RedisServer) -> Told {
        let told = self.finish().await;
        eprintln!(
            "{}: told {} orders placed, {} cancelled; retried {:?}; slowest answer {:?}",
            self.deal,
            told.confirmed.len(),
            told.cancelled.len(),
            told.retried,
            told.slowest
        );
        if let Some(before) = self.at_fault {
            let after = self.units().await;
            assert!(
                after > before,
                "the sale did not go on after the fault ({before} units before, {after} after)"
            );
        }
        settled(&self.first, &redis.url(), &self.provider, &told, &self.deal).await;
        told
    }
}

/// Waits until nothing is in flight any more, then checks every promise:
/// - confirmed units ≤ stock, and no shopper over the limit;
/// - every order a shopper was told is placed is in PostgreSQL, cancelled exactly when they were
///   told it is;
/// - Redis's figures (sold, reserved, what each shopper holds) equal PostgreSQL's;
/// - every payment the provider took is matched by a committed order or refunded, every
///   cancelled order is refunded, and no order is refunded twice.
async fn settled(
    shop: &Storefront,
    redis_url: &str,
    provider: &PaymentProvider,
    told: &Told,
    deal: &str,
) {
    let db = shop.db().await;
    let schema = &shop.schema;
    let prefix = format!("td:{{{deal}}}:");
    let mut redis = redis::Client::open(redis_url)
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap();
    eventually(
        "reservations, cancellations and restocks to settle",
        Duration::from_secs(60),
        || {
            let (db, mut redis, prefix) = (db.clone(), redis.clone(), prefix.clone());
            async move {
                let reserved: Option<i64> = redis::cmd("GET")
                    .arg(format!("{prefix}reserved"))
                    .query_async(&mut redis)
                    .await
                    .unwrap_or(Some(-1));
                let pending: i64 = sqlx::query_scalar(&format!(
                    "SELECT COUNT(*) FROM {schema}.orders WHERE status = 'cancelling' \
                 OR (status = 'cancelled' AND NOT restocked)"
                ))
                .fetch_one(&db)
                .await
                .unwrap_or(1);
                reserved == Some(0) && pending == 0
            }
        },
    )
    .await;

    // Stock and limits.
    let rows: Vec<(i64, String, i64, String)> = sqlx::query_as(&format!(
        "SELECT id, shopper, quantity::BIGINT, status FROM {schema}.orders WHERE status <> 'lapsed'"
    ))
    .fetch_all(&db)
    .await
    .unwrap();
    let confirmed: BTreeMap<i64, (String, i64)> = rows
        .iter()
        .filter(|(_, _, _, status)| status == "confirmed")
        .map(|(id, shopper, quantity, _)| (*id, (shopper.clone(), *quantity)))
        .collect();
    let sold: i64 = confirmed.values().map(|(_, q)| q).sum();
    assert!(
        sold <= STOCK,
        "oversold: {sold} confirmed units for a stock of {STOCK}"
    );
    let mut owned: BTreeMap<String, i64> = BTreeMap::new();
    for (shopper, quantity) in confirmed.values() {
        *owned.entry(shopper.clone()).or_default() += quantity;
    }
    for (shopper, units) in &owned {
        assert!(
            *units <= LIMIT,
            "shopper {shopper} owns {units}, over the limit of {LIMIT}"
        );
    }

    // What the shoppers were told.
    let status_of: BTreeMap<i64, &str> =
        rows.iter().map(|(id, _, _, s)| (*id, s.as_str())).collect();
    for id in told.confirmed.keys() {
        let expected = if told.cancelled.contains(id) {
            "cancelled"
        } else {
            "confirmed"
        };
        assert_eq!(
            status_of.get(id).copied(),
            Some(expected),
            "order {id}, which a shopper was told is {expected}, is {:?} in PostgreSQL",
            status_of.get(id)
        );
    }

    // Redis equals PostgreSQL.
    let (total, redis_sold): (i64, i64) = redis::cmd("MGET")
        .arg(format!("{prefix}total"))
        .arg(format!("{prefix}sold"))
        .query_async(&mut redis)
        .await
        .unwrap();
    assert_eq!(total, STOCK);
    assert_eq!(
        redis_sold, sold,
        "Redis says {redis_sold} sold, PostgreSQL {sold}"
    );
    let held: BTreeMap<String, i64> = redis::cmd("HGETALL")
        .arg(format!("{prefix}held"))
        .query_async(&mut redis)
        .await
        .unwrap();
    let held: BTreeMap<String, i64> = held.into_iter().filter(|(_, units)| *units != 0).collect();
    let by_shopper: BTreeMap<String, i64> = owned.into_iter().collect();
    // Shoppers are identified by the id inside their session; compare the figures as a whole.
    let mut held_units: Vec<i64> = held.values().copied().collect();
    let mut owned_units: Vec<i64> = by_shopper.values().copied().collect();
    held_units.sort();
    owned_units.sort();
    assert_eq!(
        held_units, owned_units,
        "what each shopper holds in Redis differs from PostgreSQL"
    );
    for (shopper, units) in &held {
        assert_eq!(by_shopper.get(shopper), Some(units), "shopper {shopper}");
    }

    // Money: reconciliation refunds payments without an order after the reservation TTL and a
    // margin; wait for it, then every charge is either a confirmed order's or refunded.
    eventually(
        "every payment matched by an order or a refund",
        Duration::from_secs(90),
        || {
            let charges = provider.ledger.charges(&shop.schema);
            let confirmed = &confirmed;
            async move {
                charges
                    .iter()
                    .all(|c| c.refund.is_some() != confirmed.contains_key(&c.order_id))
            }
        },
    )
    .await;
    let charges = provider.ledger.charges(&shop.schema);
    for id in confirmed.keys() {
        assert!(
            charges
                .iter()
                .any(|c| c.order_id == *id && c.refund.is_none()),
            "confirmed order {id} has no payment standing"
        );
    }
    let refunded: BTreeSet<i64> = charges
        .iter()
        .filter(|c| c.refund.is_some())
        .map(|c| c.order_id)
        .collect();
    for id in &told.cancelled {
        assert!(
            refunded.contains(id),
            "cancelled order {id} was not refunded"
        );
    }
    let refunds: Vec<(i64, i64)> = sqlx::query_as(&format!(
        "SELECT order_id, COUNT(*) FROM {schema}.refunds GROUP BY order_id HAVING COUNT(*) > 1"
    ))
    .fetch_all(&db)
    .await
    .unwrap();
    assert!(
        refunds.is_empty(),
        "orders refunded more than once: {refunds:?}"
    );
}

async fn provider() -> PaymentProvider {
    PaymentProvider::start(Duration::from_millis(20)).await
}

/// Payments slow enough that many orders are between reservation and commit when Redis goes.
async fn slow_provider() -> PaymentProvider {
    PaymentProvider::start(Duration::from_millis(1500)).await
}

/// Redis replaced without its data mid-sale, while many orders are between their reservation
/// and their commit (payments take 1.5 s) and shoppers cancel.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_replaced_empty_mid_sale_loses_nothing() {
    let mut redis = RedisServer::start().unwrap();
    let mut drill = Drill::start(
        &redis,
        &postgres().url(),
        "fault-redis-empty",
        slow_provider().await,
        &[],
    )
    .await;
    drill.crowd(120, 2);
    drill.sold(8).await;
    redis.restart_empty().unwrap();
    let told = drill.settled(&redis).await;
    assert!(!told.cancelled.is_empty(), "the drill cancels orders");
}

/// Redis away while a shopper cancels, then back without its data: the cancel is answered at
/// once, and its stock is neither lost nor returned twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cancel_while_redis_is_away_is_answered_and_counted_once() {
    let mut redis = RedisServer::start().unwrap();
    let mut drill = Drill::start(
        &redis,
        &postgres().url(),
        "fault-redis-away",
        provider().await,
        &[],
    )
    .await;
    drill.crowd(120, 4);
    drill.sold(10).await;
    redis.kill();
    let (id, session) = {
        let told = drill.told.lock().unwrap();
        let (id, (session, _)) = told
            .confirmed
            .iter()
            .find(|(id, _)| !told.cancelled.contains(id))
            .expect("an order to cancel");
        (*id, session.clone())
    };
    let canceller = Shopper::new(&drill.urls, 0, drill.told.clone());
    *canceller.session.lock().unwrap() = Some(session);
    let asked = Instant::now();
    let (code, answer) = canceller
        .send(Method::POST, &format!("/api/orders/{id}/cancel"), None)
        .await;
    assert!(
        code == StatusCode::OK || answer["error"]["code"] == "already_cancelled",
        "a cancel while Redis is away: {code} {answer}"
    );
    assert!(
        asked.elapsed() < Duration::from_secs(3),
        "the cancel took {:?}",
        asked.elapsed()
    );
    drill.told.lock().unwrap().cancelled.insert(id);
    tokio::time::sleep(Duration::from_secs(2)).await;
    redis.start_again().unwrap();
    drill.settled(&redis).await;
}

/// Redis killed and restarted with its append-only file.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_restarted_with_its_aof_loses_nothing() {
    let mut redis = RedisServer::start_persistent().unwrap();
    let mut drill = Drill::start(
        &redis,
        &postgres().url(),
        "fault-redis-aof",
        slow_provider().await,
        &[],
    )
    .await;
    drill.crowd(120, 5);
    drill.sold(10).await;
    redis.restart().unwrap();
    drill.settled(&redis).await;
}

/// One replica killed with SIGKILL mid-sale, payments in flight.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_killed_mid_sale_loses_nothing() {
    let redis = RedisServer::start().unwrap();
    let provider = PaymentProvider::start(Duration::from_millis(150)).await;
    let mut drill = Drill::start(&redis, &postgres().url(), "fault-kill", provider, &[]).await;
    drill.crowd(120, 6);
    drill.sold(10).await;
    drill.second.service.kill();
    drill.settled(&redis).await;
}

/// PostgreSQL stopped for 10 s mid-sale, then started again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_stopped_for_ten_seconds_loses_nothing() {
    // Commits must be durable here: a PostgreSQL that acknowledges a commit before flushing it
    // (synchronous_commit off) loses confirmed orders when it stops at once.
    let mut pg = PostgresServer::start_with(Durability::Durable).unwrap();
    let redis = RedisServer::start().unwrap();
    let mut drill = Drill::start(&redis, &pg.url(), "fault-pg-stop", provider().await, &[]).await;
    drill.crowd(120, 6);
    drill.sold(10).await;
    pg.stop();
    tokio::time::sleep(Duration::from_secs(10)).await;
    pg.start_again().unwrap();
    let told = drill.settled(&redis).await;
    assert!(
        told.retried.contains_key("unavailable"),
        "orders were refused while PostgreSQL was down: {:?}",
        told.retried
    );
}

/// PostgreSQL frozen (SIGSTOP) for 15 s: orders answer a retryable error within a few seconds,
/// and the writer recovers when it goes on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_frozen_for_fifteen_seconds_holds_no_one() {
    let pg = PostgresServer::start_with(Durability::Durable).unwrap();
    let redis = RedisServer::start().unwrap();
    let mut drill = Drill::start(&redis, &pg.url(), "fault-pg-freeze", provider().await, &[]).await;
    drill.crowd(120, 6);
    drill.sold(10).await;
    pg.freeze();
    tokio::time::sleep(Duration::from_secs(15)).await;
    pg.thaw();
    let told = drill.settled(&redis).await;
    assert!(
        told.slowest < Duration::from_secs(10),
        "an answer took {:?} while PostgreSQL was frozen",
        told.slowest
    );
    assert!(
        told.retried.values().sum::<usize>() > 0,
        "orders were refused while PostgreSQL was frozen"
    );
}

/// Ten cancels of one order at once, on two replicas: one cancels it, one refund is made, and the
/// stock comes back once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_cancels_refund_once() {
    let redis = RedisServer::start().unwrap();
    let provider = PaymentProvider::start(Duration::from_millis(100)).await;
    let mut drill = Drill::start(&redis, &postgres().url(), "fault-cancels", provider, &[]).await;
    let buyer = Shopper::new(&drill.urls, 0, drill.told.clone());
    let token = buyer
        .admission(Instant::now() + Duration::from_secs(30))
        .await
        .unwrap();
    let (code, order) = buyer
        .send(
            Method::POST,
            "/api/orders",
            Some(json!({"quantity": 2, "idempotencyKey": "k1", "admissionToken": token})),
        )
        .await;
    assert_eq!(code, StatusCode::CREATED, "{order}");
    let id = order["id"].as_i64().unwrap();
    let session = buyer.session.lock().unwrap().clone();
    let cancels: Vec<_> = (0..10)
        .map(|i| {
            let tab = Shopper::new(&drill.urls, i, drill.told.clone());
            *tab.session.lock().unwrap() = session.clone();
            tokio::spawn(async move {
                tab.send(Method::POST, &format!("/api/orders/{id}/cancel"), None)
                    .await
            })
        })
        .collect();
    let mut answers = Vec::new();
    for cancel in cancels {
        answers.push(cancel.await.unwrap());
    }
    let ok = answers
        .iter()
        .filter(|(code, _)| *code == StatusCode::OK)
        .count();
    assert_eq!(ok, 1, "exactly one cancel succeeds: {answers:?}");
    for (code, answer) in &answers {
        assert!(
            *code == StatusCode::OK || answer["error"]["code"] == "already_cancelled",
            "{code} {answer}"
        );
    }
    let charges = drill.provider.ledger.charges(&drill.first.schema);
    assert_eq!(charges.len(), 1);
    assert_eq!(
        charges[0].refund.as_deref(),
        Some(format!("sandbox-refund-{id}").as_str())
    );
    {
        let mut told = drill.told.lock().unwrap();
        told.confirmed.insert(id, (String::new(), 2));
        told.cancelled.insert(id);
    }
    drill.settled(&redis).await;
}

/// The provider fails, then hangs, then answers late; orders are refused meanwhile with a
/// retryable error, nothing stays charged without an order, and sales go on once it recovers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_hanging_and_late_provider_keeps_the_money_right() {
    let redis = RedisServer::start().unwrap();
    let mut drill = Drill::start(
        &redis,
        &postgres().url(),
        "fault-payments",
        provider().await,
        &["--payment-timeout=1s"],
    )
    .await;
    drill.crowd(80, 5);
    drill.sold(6).await;
    for mode in [Mode::Fail, Mode::Hang, Mode::Late] {
        drill.provider.set_mode(mode);
        tokio::time::sleep(Duration::from_secs(3)).await;
    }
    drill.provider.set_mode(Mode::Normal);
    let told = drill.settled(&redis).await;
    assert!(
        told.retried.contains_key("unavailable"),
        "{:?}",
        told.retried
    );
    assert!(
        told.slowest < Duration::from_secs(5),
        "an answer took {:?} while the provider hung",
        told.slowest
    );
    let unmatched: i64 = sqlx::query_scalar(&format!(
        "SELECT COUNT(*) FROM {}.unmatched_payments",
        drill.first.schema
    ))
    .fetch_one(&drill.db)
    .await
    .unwrap();
    assert!(
        unmatched > 0,
        "the late charges were found and refunded by reconciliation"
    );
}

/// The libfaketime library, which shifts a process's clock.
fn faketime(offset: &str) -> Vec<(&'static str, OsString)> {
    let library = [
        "/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1",
        "/usr/lib/aarch64-linux-gnu/faketime/libfaketime.so.1",
    ]
    .into_iter()
    .find(|p| std::path::Path::new(p).exists())
    .expect("libfaketime is missing: install it with `make setup` (or `apt-get install faketime`)");
    vec![
        ("LD_PRELOAD", library.into()),
        ("FAKETIME", offset.into()),
        ("FAKETIME_DONT_FAKE_MONOTONIC", "1".into()),
    ]
}

/// Two replicas whose clocks are 20 s apart: both follow Redis's clock, so neither opens the sale
/// early, and the admission rate holds.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicas_with_skewed_clocks_keep_one_time() {
    let redis = RedisServer::start().unwrap();
    let deal = DealFile {
        starts_in: 6,
        rate: 2,
        max_active: 1000,
        stock: 1000,
        ..fault_deal("fault-clocks")
    };
    let start_at = Instant::now() + Duration::from_secs(6);
    let ahead =
        Storefront::start_with_env(&redis, &postgres().url(), &deal, &[], &faketime("+10s"));
    let behind = ahead.replica_with_env(&redis, &[], &faketime("-10s"));
    let urls = vec![ahead.url(), behind.url()];
    let told = Arc::new(Mutex::new(Told::default()));
    // Before the start, neither takes orders: the one ahead does not think the deal is live.
    for url in &urls {
        let deal: Value = reqwest::get(format!("{url}/api/deal"))
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(deal["state"], "upcoming", "{url}: {deal}");
        let shopper = Shopper::new(std::slice::from_ref(url), 0, told.clone());
        let (code, answer) = shopper
            .send(
                Method::POST,
                "/api/orders",
                Some(json!({"quantity": 1, "idempotencyKey": "early", "admissionToken": "x"})),
            )
            .await;
        assert_eq!(
            (code, answer["error"]["code"].as_str()),
            (StatusCode::CONFLICT, Some("deal_not_started")),
            "{answer}"
        );
    }
    // 60 shoppers wait from before the start; after it, the line moves at 2 a second, whatever
    // either replica believes.
    let waiting: Vec<Shopper> = (0..60)
        .map(|i| Shopper::new(&urls, i, told.clone()))
        .collect();
    for shopper in &waiting {
        let (code, answer) = shopper.send(Method::POST, "/api/queue", None).await;
        assert_eq!(code, StatusCode::OK, "{answer}");
    }
    tokio::time::sleep_until((start_at + Duration::from_secs(5)).into()).await;
    let mut admitted = 0;
    for shopper in &waiting {
        let (_, status) = shopper.send(Method::GET, "/api/queue", None).await;
        if status["state"] == "admitted" {
            admitted += 1;
        }
    }
    let live_for = start_at.elapsed().as_secs_f64();
    // The rate's bucket allows one second's worth of burst.
    let most = (2.0 * (live_for + 1.0)).ceil() as usize + 1;
    assert!(admitted >= 1, "the sale opened");
    assert!(
        admitted <= most,
        "{admitted} admitted in {live_for:.1} s at 2 a second"
    );
}
