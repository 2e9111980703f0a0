//! The fault drills: a sale on two replicas of the real storefront, sharing a real Redis, a
//! durable PostgreSQL and an HTTP payment provider (the sandbox's ledger, in this process), while
//! one thing goes wrong. Shoppers retry what they are told to retry and some cancel; once the
//! drill has settled, every promise is checked ([`settle::settled`]).
//!
//! The storefront's test suite runs each drill once, small (`tenant-app/tests/faults.rs`);
//! `timedeal-bench chaos` runs them for longer, round after round, and writes what they cost into
//! BENCHMARKS.md.

pub mod explore;
pub mod findings;
mod published;
pub mod settle;
pub mod shopper;

use std::{
    collections::BTreeMap,
    ffi::OsString,
    fmt,
    path::Path,
    sync::Arc,
    time::{Duration, Instant},
};

use rand::Rng;
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use timedeal_tenant_app::payments::sandbox::{self, Ledger, Mode};
use timedeal_testkit::{Durability, PostgresServer, RedisServer, Service};

use crate::{storefront::DealPlan, Error};
use shopper::{Shopper, Told};

/// One thing that goes wrong.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fault {
    /// One replica killed with SIGKILL mid-sale, payments in flight.
    KillReplica,
    /// Redis killed and restarted with its append-only file.
    RedisRestart,
    /// Redis replaced without its data mid-sale, many orders between reservation and commit.
    RedisEmpty,
    /// Redis, run as in a cluster (`appendfsync everysec`), comes back a second behind: its node
    /// was lost with the page cache, and the append-only file on the volume misses what the
    /// last second sold.
    RedisRollback,
    /// Redis away while a shopper cancels, then back without its data.
    RedisAway,
    /// PostgreSQL stopped for 10 s.
    PostgresStop,
    /// PostgreSQL frozen (SIGSTOP) for 15 s.
    PostgresFreeze,
    /// Ten cancels of one order at once, on both replicas.
    ConcurrentCancels,
    /// The payment provider fails, then hangs, then answers late.
    PaymentFaults,
    /// The two replicas' clocks 20 s apart (libfaketime).
    SkewedClocks,
    /// A schedule of faults drawn from a seed by the explorer ([`explore`]); not a drill.
    Explore,
}

impl Fault {
    pub const ALL: [Fault; 10] = [
        Fault::KillReplica,
        Fault::RedisRestart,
        Fault::RedisEmpty,
        Fault::RedisRollback,
        Fault::RedisAway,
        Fault::PostgresStop,
        Fault::PostgresFreeze,
        Fault::ConcurrentCancels,
        Fault::PaymentFaults,
        Fault::SkewedClocks,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Fault::KillReplica => "kill-replica",
            Fault::RedisRestart => "redis-restart",
            Fault::RedisEmpty => "redis-empty",
            Fault::RedisRollback => "redis-rollback",
            Fault::RedisAway => "redis-away",
            Fault::PostgresStop => "postgres-stop",
            Fault::PostgresFreeze => "postgres-freeze",
            Fault::ConcurrentCancels => "concurrent-cancels",
            Fault::PaymentFaults => "payment-faults",
            Fault::SkewedClocks => "skewed-clocks",
            Fault::Explore => "explore",
        }
    }

    /// What the drill does, for the report.
    pub fn describe(self) -> &'static str {
        match self {
            Fault::KillReplica => "one replica killed with SIGKILL mid-sale",
            Fault::RedisRestart => "Redis killed and restarted with its AOF",
            Fault::RedisEmpty => "Redis replaced empty with payments in flight",
            Fault::RedisRollback => "Redis back a second behind (node lost, AOF everysec)",
            Fault::RedisAway => "Redis away during a cancel, back empty",
            Fault::PostgresStop => "PostgreSQL stopped for 10 s",
            Fault::PostgresFreeze => "PostgreSQL frozen (SIGSTOP) for 15 s",
            Fault::ConcurrentCancels => "ten cancels of one order at once",
            Fault::PaymentFaults => "payment provider fails, hangs, answers late",
            Fault::SkewedClocks => "replica clocks 20 s apart",
            Fault::Explore => "faults composed from a seed",
        }
    }
}

impl fmt::Display for Fault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl std::str::FromStr for Fault {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Fault::ALL
            .into_iter()
            .find(|fault| fault.name() == s)
            .ok_or_else(|| {
                let names: Vec<_> = Fault::ALL.iter().map(|f| f.name()).collect();
                format!("no fault named {s:?}; choose from {}", names.join(", "))
            })
    }
}

/// How big a drill.
#[derive(Clone, Copy, Debug)]
pub struct Plan {
    pub shoppers: usize,
    pub stock: i64,
    pub limit: i64,
    /// Every n-th shopper cancels their first order.
    pub cancel_every: usize,
    /// Admissions a second: slow enough that the sale is still on when the fault hits.
    pub rate: i64,
}

impl Plan {
    /// The drill the test suite runs: a few seconds of sale.
    pub fn small() -> Self {
        Self {
            shoppers: 120,
            stock: 40,
            limit: 2,
            cancel_every: 4,
            // Slow enough that the fault lands early in the sale, however loaded the machine.
            rate: 5,
        }
    }
}

impl Plan {
    /// The deal of a sale of this size: short reservations and sessions, so that what a fault
    /// leaves behind settles within the drill.
    fn deal(&self, name: &str) -> DealPlan {
        DealPlan {
            stock: self.stock,
            limit: self.limit,
            admission_rate: self.rate,
            max_active: 30,
            session_ttl: "2m",
            idle_grace: "30s",
            reservation_ttl: "5s",
            ..DealPlan::new(name)
        }
    }

    /// The explorer's sale: long enough that a schedule's faults land while it sells.
    pub fn explorer() -> Self {
        Self {
            shoppers: 160,
            stock: 80,
            limit: 2,
            cancel_every: 0,
            rate: 8,
        }
    }
}

/// What a drill cost, once every promise held.
#[derive(Clone, Debug)]
pub struct Report {
    pub fault: Fault,
    pub elapsed: Duration,
    /// Orders shoppers were told are placed, and cancelled.
    pub placed: usize,
    pub cancelled: usize,
    /// Answers that said "try again" (503), by code.
    pub retried: BTreeMap<String, usize>,
    /// The longest any one answer took.
    pub slowest: Duration,
    /// Payments refunded by reconciliation because no order was committed for them.
    pub unmatched: i64,
}

/// The sandbox payment provider over HTTP, served from this process so it outlives any replica.
struct Provider {
    ledger: Arc<Ledger>,
    url: String,
}

impl Provider {
    async fn start(delay: Duration) -> Result<Self, Error> {
        let ledger = Arc::new(Ledger::new(delay, 0.0));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .map_err(Error::io("listen for the payment provider"))?;
        let url = format!(
            "http://{}",
            listener
                .local_addr()
                .map_err(Error::io("listen for the payment provider"))?
        );
        let app = sandbox::router(ledger.clone());
        tokio::spawn(async move { axum::serve(listener, app).await });
        Ok(Self { ledger, url })
    }
}

/// The libfaketime library, which shifts a process's clock.
fn faketime(offset: &str) -> Result<Vec<(&'static str, OsString)>, Error> {
    let library = [
        "/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1",
        "/usr/lib/aarch64-linux-gnu/faketime/libfaketime.so.1",
    ]
    .into_iter()
    .find(|p| Path::new(p).exists())
    .ok_or_else(|| {
        Error::Unexpected(
            "libfaketime is missing: install it with `make setup` (or `apt-get install faketime`)"
                .into(),
        )
    })?;
    Ok(vec![
        ("LD_PRELOAD", library.into()),
        ("FAKETIME", offset.into()),
        ("FAKETIME_DONT_FAKE_MONOTONIC", "1".into()),
    ])
}

/// A sale on two replicas.
struct Sale {
    replicas: Vec<Service>,
    urls: Vec<String>,
    deal: DealPlan,
    provider: Provider,
    told: shopper::Shared,
    db: sqlx::PgPool,
    shoppers: Vec<tokio::task::JoinHandle<Result<(), Error>>>,
    /// Units sold or cancelled when the fault was injected.
    at_fault: Option<i64>,
    /// When the deal starts.
    start_at: Instant,
    /// The admission log as the public saw it.
    published: Option<published::Watcher>,
    _dir: tempfile::TempDir,
}

impl Sale {
    #[allow(clippy::too_many_arguments)]
    async fn start(
        binary: &Path,
        redis: &RedisServer,
        postgres_url: &str,
        deal: DealPlan,
        provider: Provider,
        flags: &[&str],
        envs: [Vec<(&'static str, OsString)>; 2],
    ) -> Result<Self, Error> {
        let dir = tempfile::tempdir().map_err(Error::io("create the deal's directory"))?;
        let path = dir.path().join("deal.yaml");
        std::fs::write(&path, deal.yaml()).map_err(Error::io("write the deal file"))?;
        let start_at = Instant::now() + Duration::from_secs(deal.starts_in.max(0) as u64);
        let secret: String = rand::thread_rng()
            .sample_iter(rand::distributions::Alphanumeric)
            .take(48)
            .map(char::from)
            .collect();
        let mut args: Vec<OsString> = vec![
            "--deal".into(),
            path.into(),
            "--redis-url".into(),
            redis.url().into(),
            "--rate-limit-per-second".into(),
            "0".into(),
            format!("--payment-url={}", provider.url).into(),
            format!("--draw-beacon={}", crate::storefront::beacon_url()).into(),
        ];
        args.extend(flags.iter().map(OsString::from));
        let mut replicas = Vec::new();
        for env in envs {
            let mut all: Vec<(&str, OsString)> = vec![
                ("TIMEDEAL_POSTGRES_URL", postgres_url.into()),
                ("TIMEDEAL_SIGNING_SECRET", secret.clone().into()),
                (
                    "RUST_LOG",
                    std::env::var("TIMEDEAL_DRILL_LOG")
                        .unwrap_or_else(|_| "warn".into())
                        .into(),
                ),
            ];
            all.extend(env);
            replicas.push(
                Service::start(binary, &args, &all)
                    .map_err(Error::start(format!("a storefront of {}", deal.name)))?,
            );
        }
        let db = sqlx::postgres::PgPoolOptions::new()
            .max_connections(2)
            .connect(postgres_url)
            .await
            .map_err(Error::postgres("connect to PostgreSQL"))?;
        let urls: Vec<String> = replicas.iter().map(Service::url).collect();
        Ok(Self {
            published: Some(published::Watcher::start(&urls)),
            urls,
            replicas,
            deal,
            provider,
            told: Default::default(),
            db,
            shoppers: Vec::new(),
            at_fault: None,
            start_at,

            _dir: dir,
        })
    }

    fn crowd(&mut self, plan: &Plan) {
        let deadline = Instant::now() + Duration::from_secs(90 + plan.shoppers as u64 / 10);
        self.shoppers = (0..plan.shoppers)
            .map(|i| {
                let shopper = Shopper::new(&self.urls, i, self.told.clone());
                let cancels = plan.cancel_every > 0 && i % plan.cancel_every == 0;
                tokio::spawn(async move { shopper.shop(&format!("s{i}"), cancels, deadline).await })
            })
            .collect();
    }

    /// Units sold so far, cancelled ones included.
    async fn units(&self) -> Result<i64, Error> {
        sqlx::query_scalar(&format!(
            "SELECT COALESCE(SUM(quantity), 0)::BIGINT FROM {}.orders WHERE status <> 'lapsed'",
            self.deal.schema()
        ))
        .fetch_one(&self.db)
        .await
        .map_err(Error::postgres("count the units sold"))
    }

    /// Waits until `units` are sold, and notes that the fault comes now.
    async fn sold(&mut self, units: i64) -> Result<(), Error> {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            // The schema is created by the first replica; until then nothing is sold.
            let now = self.units().await.unwrap_or(0);
            if now >= units {
                self.at_fault = Some(now);
                return Ok(());
            }
            if Instant::now() > deadline {
                return Err(Error::Broken(format!(
                    "only {now} of {units} units sold in 60 s"
                )));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Waits for the crowd, checks every promise, and says what the drill cost.
    async fn settle(
        &mut self,
        fault: Fault,
        started: Instant,
        redis: &RedisServer,
        postgres_url: &str,
        plan: &Plan,
    ) -> Result<Report, Error> {
        for shopper in self.shoppers.drain(..) {
            shopper.await.map_err(|e| Error::Load(e.to_string()))??;
        }
        let told = std::mem::take(&mut *self.told.lock().unwrap());
        if let Some(before) = self.at_fault {
            let after = self.units().await?;
            if after <= before {
                return Err(Error::Broken(format!(
                    "the sale did not go on after the fault ({before} units before, {after} after)"
                )));
            }
        }
        let stores = settle::Stores {
            redis_url: &redis.url(),
            postgres_url,
            prefix: &self.deal.prefix(),
            schema: &self.deal.schema(),
            stock: plan.stock,
            limit: plan.limit,
        };
        settle::settled(&stores, &self.provider.ledger, &told).await?;
        self.published_record_held().await?;
        let unmatched: i64 = sqlx::query_scalar(&format!(
            "SELECT COUNT(*) FROM {}.unmatched_payments",
            self.deal.schema()
        ))
        .fetch_one(&self.db)
        .await
        .map_err(Error::postgres("count unmatched payments"))?;
        Ok(report(fault, started, &told, unmatched))
    }

    /// The admission log never went back while the public watched, and the record checks out.
    async fn published_record_held(&mut self) -> Result<(), Error> {
        match self.published.take() {
            Some(watcher) => watcher.check(&self.urls[0]).await,
            None => Ok(()),
        }
    }

    /// A broken promise with the end of each replica's log, to see why.
    fn with_logs(&self, error: Error) -> Error {
        match error {
            Error::Broken(what) => {
                let logs: Vec<String> = self
                    .replicas
                    .iter()
                    .enumerate()
                    .map(|(i, replica)| format!("replica {} log:\n{}", i + 1, replica.log_tail()))
                    .collect();
                Error::Broken(format!("{what}\n{}", logs.join("\n")))
            }
            other => other,
        }
    }

    fn shopper(&self, first: usize) -> Shopper {
        Shopper::new(&self.urls, first, self.told.clone())
    }
}

fn report(fault: Fault, started: Instant, told: &Told, unmatched: i64) -> Report {
    Report {
        fault,
        elapsed: started.elapsed(),
        placed: told.confirmed.len(),
        cancelled: told.cancelled.len(),
        retried: told.retried.clone(),
        slowest: told.slowest,
        unmatched,
    }
}

fn check(holds: bool, what: impl FnOnce() -> String) -> Result<(), Error> {
    if holds {
        Ok(())
    } else {
        Err(Error::Broken(what()))
    }
}

/// Runs one drill of `fault` with the storefront `binary`, on stores of its own.
pub async fn drill(binary: &Path, fault: Fault, plan: Plan, round: usize) -> Result<Report, Error> {
    if fault == Fault::Explore {
        return Err(Error::Unexpected(
            "the explorer is not a drill: run `explore::explore` with a seed".into(),
        ));
    }
    let started = Instant::now();
    let mut redis = match fault {
        Fault::RedisRestart => RedisServer::start_persistent(),
        Fault::RedisRollback => RedisServer::start_as_in_a_cluster(),
        _ => RedisServer::start(),
    }
    .map_err(Error::start("Redis"))?;
    // Durable commits: a PostgreSQL that acknowledges a commit before flushing it loses
    // confirmed orders when it stops at once.
    let mut postgres =
        PostgresServer::start_with(Durability::Durable).map_err(Error::start("PostgreSQL"))?;
    let postgres_url = postgres.url();
    let payments_take = match fault {
        Fault::RedisEmpty | Fault::RedisRestart => Duration::from_millis(1500),
        Fault::KillReplica => Duration::from_millis(150),
        Fault::RedisRollback => Duration::from_millis(200),
        Fault::ConcurrentCancels => Duration::from_millis(100),
        _ => Duration::from_millis(20),
    };
    let provider = Provider::start(payments_take).await?;
    let mut deal = plan.deal(&format!("chaos-{}-{round}", fault.name()));
    let mut flags: Vec<&str> = Vec::new();
    let mut envs = [Vec::new(), Vec::new()];
    match fault {
        Fault::PaymentFaults => flags.push("--payment-timeout=1s"),
        Fault::SkewedClocks => {
            deal.starts_in = 6;
            deal.admission_rate = 2;
            deal.max_active = 1000;
            deal.stock = plan.stock.max(1000);
            envs = [faketime("+10s")?, faketime("-10s")?];
        }
        _ => {}
    }
    let mut sale = Sale::start(binary, &redis, &postgres_url, deal, provider, &flags, envs).await?;
    let mut plan = plan;
    plan.stock = sale.deal.stock;

    match fault {
        Fault::KillReplica => {
            sale.crowd(&plan);
            sale.sold(plan.stock / 8).await?;
            sale.replicas[1].kill();
        }
        Fault::RedisRestart => {
            sale.crowd(&plan);
            sale.sold(plan.stock / 8).await?;
            redis.restart().map_err(Error::start("Redis again"))?;
        }
        Fault::RedisRollback => {
            sale.crowd(&plan);
            sale.sold(plan.stock / 8).await?;
            let copy = redis.copy_data().map_err(Error::start("a copy of Redis"))?;
            // What the last second sold, reserved and admitted is lost with the node.
            let before = sale.units().await?;
            let deadline = Instant::now() + Duration::from_secs(20);
            while sale.units().await? < before + 2 && Instant::now() < deadline {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
            redis
                .roll_back(&copy)
                .map_err(Error::start("Redis on its older copy"))?;
        }
        Fault::RedisEmpty => {
            sale.crowd(&Plan {
                cancel_every: 2,
                ..plan
            });
            sale.sold(plan.stock / 8).await?;
            redis.restart_empty().map_err(Error::start("Redis again"))?;
            // A cancel while the figures are being restored, besides the crowd's own.
            // Its refund alone takes 1.5 s here.
            let within = Duration::from_secs(5);
            cancel_one(&sale, "while Redis's figures are restored", within).await?;
        }
        Fault::RedisAway => {
            sale.crowd(&plan);
            sale.sold(plan.stock / 8).await?;
            redis.kill();
            cancel_one(&sale, "while Redis is away", Duration::from_secs(3)).await?;
            tokio::time::sleep(Duration::from_secs(2)).await;
            redis.start_again().map_err(Error::start("Redis again"))?;
        }
        Fault::PostgresStop => {
            sale.crowd(&plan);
            sale.sold(plan.stock / 8).await?;
            postgres.stop();
            tokio::time::sleep(Duration::from_secs(10)).await;
            postgres
                .start_again()
                .map_err(Error::start("PostgreSQL again"))?;
        }
        Fault::PostgresFreeze => {
            sale.crowd(&plan);
            sale.sold(plan.stock / 8).await?;
            postgres.freeze();
            tokio::time::sleep(Duration::from_secs(15)).await;
            postgres.thaw();
        }
        Fault::ConcurrentCancels => concurrent_cancels(&sale).await?,
        Fault::PaymentFaults => {
            sale.crowd(&plan);
            sale.sold(plan.stock / 8).await?;
            for mode in [Mode::Fail, Mode::Hang, Mode::Late] {
                sale.provider.ledger.set_mode(mode);
                tokio::time::sleep(Duration::from_secs(3)).await;
            }
            sale.provider.ledger.set_mode(Mode::Normal);
        }
        Fault::SkewedClocks => return skewed_clocks(&sale, started).await,
        Fault::Explore => {}
    }
    let report = sale
        .settle(fault, started, &redis, &postgres_url, &plan)
        .await
        .map_err(|error| sale.with_logs(error))?;
    match fault {
        Fault::PostgresStop | Fault::PaymentFaults => {
            check(report.retried.contains_key("unavailable"), || {
                format!(
                    "no order was refused during the fault: {:?}",
                    report.retried
                )
            })?
        }
        Fault::PostgresFreeze => check(report.slowest < Duration::from_secs(10), || {
            format!(
                "an answer took {:?} while PostgreSQL was frozen",
                report.slowest
            )
        })?,
        _ => {}
    }
    if fault == Fault::PaymentFaults {
        check(report.slowest < Duration::from_secs(5), || {
            format!(
                "an answer took {:?} while the provider hung",
                report.slowest
            )
        })?;
    }
    Ok(report)
}

/// Cancels one order a shopper was told is placed, `when` something is wrong with Redis: it is
/// answered at once, and its stock goes back once Redis has its figures.
async fn cancel_one(sale: &Sale, when: &str, within: Duration) -> Result<(), Error> {
    // An order is in PostgreSQL a moment before its shopper hears so.
    let told_by = Instant::now() + Duration::from_secs(10);
    let (id, session) = loop {
        let found = {
            let told = sale.told.lock().unwrap();
            told.confirmed
                .iter()
                .find(|(id, _)| !told.cancelled.contains(id))
                .map(|(id, session)| (*id, session.clone()))
        };
        match found {
            Some(found) => break found,
            None if Instant::now() > told_by => {
                return Err(Error::Unexpected("no order to cancel".into()))
            }
            None => tokio::time::sleep(Duration::from_millis(50)).await,
        }
    };
    let canceller = sale.shopper(0);
    *canceller.session.lock().unwrap() = Some(session);
    let asked = Instant::now();
    let (code, answer) = canceller
        .send(Method::POST, &format!("/api/orders/{id}/cancel"), None)
        .await?;
    check(
        code == StatusCode::OK || answer["error"]["code"] == "already_cancelled",
        || format!("a cancel {when} answered {code}: {answer}"),
    )?;
    check(asked.elapsed() < within, || {
        format!("a cancel {when} took {:?}", asked.elapsed())
    })?;
    sale.told.lock().unwrap().cancelled.insert(id);
    Ok(())
}

/// Ten cancels of one order at once, on both replicas: one cancels it, one refund is made.
async fn concurrent_cancels(sale: &Sale) -> Result<(), Error> {
    let buyer = sale.shopper(0);
    let token = buyer
        .admission(Instant::now() + Duration::from_secs(30))
        .await?
        .ok_or_else(|| Error::Unexpected("the buyer was not admitted".into()))?;
    let (code, order) = buyer
        .send(
            Method::POST,
            "/api/orders",
            Some(json!({"quantity": 2, "idempotencyKey": "k1", "admissionToken": token})),
        )
        .await?;
    check(code == StatusCode::CREATED, || {
        format!("the order answered {code}: {order}")
    })?;
    let id = order["id"].as_i64().unwrap_or_default();
    let session = buyer.session.lock().unwrap().clone();
    let cancels: Vec<_> = (0..10)
        .map(|i| {
            let tab = sale.shopper(i);
            *tab.session.lock().unwrap() = session.clone();
            tokio::spawn(async move {
                tab.send(Method::POST, &format!("/api/orders/{id}/cancel"), None)
                    .await
            })
        })
        .collect();
    let mut answers: Vec<(StatusCode, Value)> = Vec::new();
    for cancel in cancels {
        answers.push(cancel.await.map_err(|e| Error::Load(e.to_string()))??);
    }
    let ok = answers
        .iter()
        .filter(|(code, _)| *code == StatusCode::OK)
        .count();
    check(ok == 1, || {
        format!("{ok} of ten cancels succeeded: {answers:?}")
    })?;
    for (code, answer) in &answers {
        check(
            *code == StatusCode::OK || answer["error"]["code"] == "already_cancelled",
            || format!("a cancel answered {code}: {answer}"),
        )?;
    }
    let charges = sale.provider.ledger.charges(&sale.deal.schema());
    check(
        charges.len() == 1 && charges[0].state == timedeal_tenant_app::payments::State::Refunded,
        || format!("the ledger holds {charges:?}"),
    )?;
    let mut told = sale.told.lock().unwrap();
    told.confirmed.insert(id, session.unwrap_or_default());
    told.cancelled.insert(id);
    Ok(())
}

/// Replicas 20 s apart: neither opens early, and the line moves at the deal's rate.
async fn skewed_clocks(sale: &Sale, started: Instant) -> Result<Report, Error> {
    let start_at = sale.start_at;
    for (i, url) in sale.urls.iter().enumerate() {
        let shopper = Shopper::new(std::slice::from_ref(url), 0, sale.told.clone());
        let (_, deal) = shopper.send(Method::GET, "/api/deal", None).await?;
        let (code, order) = shopper
            .send(
                Method::POST,
                "/api/orders",
                Some(json!({"quantity": 1, "idempotencyKey": "early", "admissionToken": "x"})),
            )
            .await?;
        if Instant::now() + Duration::from_millis(500) < start_at {
            check(deal["state"] == "upcoming", || {
                format!("replica {i} opened before the start: {deal}")
            })?;
            check(order["error"]["code"] == "deal_not_started", || {
                format!("replica {i} took an order before the start: {code} {order}")
            })?;
        }
    }
    let waiting: Vec<Shopper> = (0..60).map(|i| sale.shopper(i)).collect();
    for shopper in &waiting {
        let (code, answer) = shopper.send(Method::POST, "/api/queue", None).await?;
        check(code == StatusCode::OK, || {
            format!("a join answered {code}: {answer}")
        })?;
    }
    tokio::time::sleep_until((start_at + Duration::from_secs(5)).into()).await;
    let mut admitted = 0;
    for shopper in &waiting {
        let (_, status) = shopper.send(Method::GET, "/api/queue", None).await?;
        if status["state"] == "admitted" {
            admitted += 1;
        }
    }
    let live_for = start_at.elapsed().as_secs_f64();
    // The rate's bucket allows one second's worth of burst.
    let most = (2.0 * (live_for + 1.0)).ceil() as usize + 1;
    check(admitted >= 1, || "the sale never opened".into())?;
    check(admitted <= most, || {
        format!("{admitted} admitted in {live_for:.1} s at 2 a second")
    })?;
    let told = std::mem::take(&mut *sale.told.lock().unwrap());
    Ok(report(Fault::SkewedClocks, started, &told, 0))
}
