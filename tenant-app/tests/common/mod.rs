//! What the tenant app's integration tests share: real Redis and PostgreSQL from the test
//! harness, the `tenant-app` binary started on a deal written for the test, and a shopper that
//! talks to it over HTTP like a mobile app would.
#![allow(dead_code)]

use std::{
    ffi::OsString,
    path::PathBuf,
    sync::OnceLock,
    time::{Duration, Instant},
};

use chrono::{SecondsFormat, Utc};
use reqwest::StatusCode;
use serde_json::{json, Value};
use timedeal_testkit::{Beacon, PostgresServer, RedisServer, Service};

pub const SECRET: &str = "test-signing-secret-0123456789abcdef";

/// One PostgreSQL for the whole test binary; each test uses its own schema.
pub fn postgres() -> &'static PostgresServer {
    static SERVER: OnceLock<PostgresServer> = OnceLock::new();
    SERVER.get_or_init(|| PostgresServer::start().expect("start PostgreSQL"))
}

/// A deal for a test. Times are relative to now, in seconds.
#[derive(Clone)]
pub struct DealFile {
    pub name: String,
    pub starts_in: i64,
    pub lasts: i64,
    pub stock: i64,
    pub limit: i64,
    pub rate: i64,
    pub max_active: i64,
    pub session_ttl: &'static str,
    pub reservation_ttl: &'static str,
    pub idle_grace: &'static str,
    /// `queue.admissionLease`, when not the default.
    pub admission_lease: Option<&'static str>,
    /// `queue.claimsPerUnit`, when not the default.
    pub claims_per_unit: Option<i64>,
    pub pre_queue_opens: &'static str,
    pub suspend: bool,
    /// `queue.joinChallenge.difficulty`, when set.
    pub join_challenge: Option<u32>,
    pub deal_price: i64,
    /// More lines of `spec.product` (`fulfilment: shipping`).
    pub product_extra: Vec<String>,
    /// `schedule.retention`, when set.
    pub retention: Option<&'static str>,
    pub extra_spec: String,
}

impl DealFile {
    pub fn live(name: &str) -> Self {
        Self {
            name: name.into(),
            starts_in: -1,
            lasts: 3600,
            stock: 100,
            limit: 2,
            rate: 1000,
            max_active: 500,
            session_ttl: "5m",
            reservation_ttl: "1m",
            idle_grace: "30s",
            admission_lease: None,
            claims_per_unit: None,
            pre_queue_opens: "30m",
            suspend: false,
            join_challenge: None,
            deal_price: 9900,
            product_extra: Vec::new(),
            retention: None,
            extra_spec: String::new(),
        }
    }

    /// The deal, with `fulfilment` set (`shipping`, `pickup`, `digital` or `coupon`).
    pub fn fulfilment(mut self, fulfilment: &str) -> Self {
        self.product_extra.push(format!("fulfilment: {fulfilment}"));
        self
    }

    pub fn yaml(&self) -> String {
        let start = Utc::now() + chrono::Duration::seconds(self.starts_in);
        let end = start + chrono::Duration::seconds(self.lasts);
        let ts = |t: chrono::DateTime<Utc>| t.to_rfc3339_opts(SecondsFormat::Millis, true);
        format!(
            r#"apiVersion: timedeal.dev/v1alpha1
kind: TimeDeal
metadata:
  name: {name}
spec:
  company:
    name: ACME Audio
    contactEmail: sales@acme-audio.example
  approved: true
  suspend: {suspend}
  product:
    name: ACME NC-700 headphones
    description: Over-ear, 30 hours of battery.
    listPrice: 29900
    dealPrice: {deal_price}
    currency: USD
    stock: {stock}
    perUserLimit: {limit}
{product_extra}  schedule:
    start: "{start}"
    end: "{end}"
{retention}  queue:
    admissionRate: {rate}
    maxActive: {max_active}
    sessionTtl: {session_ttl}
    reservationTtl: {reservation_ttl}
    idleGrace: {idle_grace}
    preQueueOpens: {pre_queue_opens}
{lease}{challenge}  ingress:
    host: deals.example.com
{extra}"#,
            name = self.name,
            suspend = self.suspend,
            stock = self.stock,
            limit = self.limit,
            deal_price = self.deal_price,
            product_extra = self
                .product_extra
                .iter()
                .map(|line| format!("    {line}\n"))
                .collect::<String>(),
            retention = self
                .retention
                .map(|r| format!("    retention: {r}\n"))
                .unwrap_or_default(),
            start = ts(start),
            end = ts(end),
            rate = self.rate,
            max_active = self.max_active,
            session_ttl = self.session_ttl,
            reservation_ttl = self.reservation_ttl,
            idle_grace = self.idle_grace,
            pre_queue_opens = self.pre_queue_opens,
            lease = self
                .admission_lease
                .map(|l| format!("    admissionLease: {l}\n"))
                .into_iter()
                .chain(
                    self.claims_per_unit
                        .map(|k| format!("    claimsPerUnit: {k}\n")),
                )
                .collect::<String>(),
            challenge = self
                .join_challenge
                .map(|bits| format!("    joinChallenge:\n      difficulty: {bits}\n"))
                .unwrap_or_default(),
            extra = self.extra_spec,
        )
    }
}

/// A running tenant app and the deal file it serves.
pub struct Storefront {
    pub service: Service,
    pub deal_path: PathBuf,
    pub schema: String,
    pub postgres_url: String,
    _dir: tempfile::TempDir,
}

/// The randomness beacon every test storefront keys its draw with, a round a second.
pub fn beacon() -> &'static Beacon {
    static BEACON: OnceLock<Beacon> = OnceLock::new();
    BEACON.get_or_init(|| Beacon::start(1).expect("a beacon on loopback"))
}

pub fn binary() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_tenant-app"))
}

impl Storefront {
    pub fn start(redis: &RedisServer, postgres_url: &str, deal: &DealFile, extra: &[&str]) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let deal_path = dir.path().join("deal.yaml");
        std::fs::write(&deal_path, deal.yaml()).unwrap();
        Self::start_on(redis, postgres_url, deal_path, &deal.name, extra, dir)
    }

    /// A second replica of the same deal, sharing Redis, PostgreSQL and the deal file.
    pub fn replica(&self, redis: &RedisServer, extra: &[&str]) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let deal_path = dir.path().join("deal.yaml");
        std::fs::copy(&self.deal_path, &deal_path).unwrap();
        let name = self.schema.trim_start_matches("deal_").replace('_', "-");
        Self::start_on(redis, &self.postgres_url, deal_path, &name, extra, dir)
    }

    fn start_on(
        redis: &RedisServer,
        postgres_url: &str,
        deal_path: PathBuf,
        name: &str,
        extra: &[&str],
        dir: tempfile::TempDir,
    ) -> Self {
        let mut args: Vec<OsString> = vec![
            "--deal".into(),
            deal_path.clone().into(),
            "--redis-url".into(),
            redis.url().into(),
        ];
        if !extra.iter().any(|flag| flag.starts_with("--draw-beacon")) {
            // Every test storefront keys its draw with a beacon, served on loopback.
            args.push(format!("--draw-beacon={}", beacon().url()).into());
        }
        args.extend(extra.iter().map(OsString::from));
        let service = Service::start(
            &binary(),
            &args,
            &[
                ("TIMEDEAL_POSTGRES_URL", postgres_url.into()),
                ("TIMEDEAL_SIGNING_SECRET", SECRET.into()),
                ("RUST_LOG", "info".into()),
                // Thousands of test shoppers share one address; tests that check the limit
                // turn it on with the flag.
                ("TIMEDEAL_RATE_LIMIT", "0".into()),
            ],
        )
        .expect("start tenant-app");
        Self {
            service,
            deal_path,
            schema: format!("deal_{}", name.replace('-', "_")),
            postgres_url: postgres_url.to_owned(),
            _dir: dir,
        }
    }

    pub fn url(&self) -> String {
        self.service.url()
    }

    /// Waits until the queue of a deal that has started is open: numbers taken before that (in
    /// the first tick after the start) belong to the pre-queue and are drawn.
    pub async fn queue_open(&self) {
        eventually("the queue to open", Duration::from_secs(10), || async {
            self.fairness().await["seed"].is_string()
        })
        .await;
    }

    /// `GET /api/fairness`: the draw's commitment, the seed once drawn, the log's summary.
    pub async fn fairness(&self) -> Value {
        reqwest::get(format!("{}/api/fairness", self.url()))
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    }

    /// The admission log as `(place, join number)` pairs, in the order of admission, once the
    /// admissions so far are published (a tick after they happen): two reads agree.
    pub async fn admissions(&self) -> Vec<(u64, u64)> {
        let read = || async {
            reqwest::get(format!("{}/api/fairness/log", self.url()))
                .await
                .unwrap()
                .text()
                .await
                .unwrap()
        };
        let mut log = read().await;
        for _ in 0..20 {
            tokio::time::sleep(Duration::from_millis(300)).await;
            let again = read().await;
            if again == log && !log.is_empty() {
                break;
            }
            log = again;
        }
        log.lines()
            .flat_map(|line| line.split(' ').skip(1))
            .map(|admission| {
                let (place, number) = admission.split_once(':').unwrap();
                (place.parse().unwrap(), number.parse().unwrap())
            })
            .collect()
    }

    /// Rewrites the deal file; the app picks the change up within a couple of seconds.
    pub fn rewrite(&self, deal: &DealFile) {
        std::fs::write(&self.deal_path, deal.yaml()).unwrap();
    }

    pub async fn db(&self) -> sqlx::PgPool {
        sqlx::postgres::PgPoolOptions::new()
            .max_connections(2)
            .connect(&self.postgres_url)
            .await
            .unwrap()
    }

    /// Rows of the deal's orders table by status.
    pub async fn count_orders(&self, status: &str) -> i64 {
        let db = self.db().await;
        sqlx::query_scalar(&format!(
            "SELECT COUNT(*) FROM {}.orders WHERE status = $1",
            self.schema
        ))
        .bind(status)
        .fetch_one(&db)
        .await
        .unwrap()
    }

    /// `/internal/stats`, checked to be readable as the operator reads it.
    pub async fn stats(&self) -> Value {
        let stats: Value = reqwest::get(format!("{}/internal/stats", self.url()))
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        if let Err(e) = serde_json::from_value::<timedeal_api::StorefrontStats>(stats.clone()) {
            panic!("the operator cannot read /internal/stats ({e}): {stats}");
        }
        stats
    }
}

/// The sandbox payment provider over HTTP, in the test process: several replicas share its
/// ledger, it survives a replica's death, and the test reads its ledger and tells it to fail.
pub struct PaymentProvider {
    pub ledger: std::sync::Arc<timedeal_tenant_app::payments::sandbox::Ledger>,
    pub url: String,
}

impl PaymentProvider {
    /// Serves a new ledger on a free loopback port, answering after `delay`.
    pub async fn start(delay: Duration) -> Self {
        use timedeal_tenant_app::payments::sandbox::{router, Ledger};
        let ledger = std::sync::Arc::new(Ledger::new(delay, 0.0));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let app = router(ledger.clone());
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        Self { ledger, url }
    }

    pub fn set_mode(&self, mode: timedeal_tenant_app::payments::sandbox::Mode) {
        self.ledger.set_mode(mode);
    }

    /// The storefront flag that makes it use this provider.
    pub fn flag(&self) -> String {
        format!("--payment-url={}", self.url)
    }
}

/// A client shared by many shoppers (each sends its own session header).
pub fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .pool_max_idle_per_host(256)
        .timeout(Duration::from_secs(60))
        .build()
        .unwrap()
}

/// A shopper using the JSON API, as a mobile app would: the session and the queue ticket
/// travel in headers.
/// The body of a GET, as text.
pub async fn get_text(url: &str) -> String {
    client()
        .get(url)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
}

/// The body of a GET, as JSON.
pub async fn get_json(url: &str) -> Value {
    client()
        .get(url)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

pub struct Shopper {
    pub client: reqwest::Client,
    pub base: String,
    session: std::sync::Mutex<Option<String>>,
    ticket: std::sync::Mutex<Option<String>>,
}

impl Shopper {
    pub fn new(client: &reqwest::Client, base: &str) -> Self {
        Self::with_session(client, base, None)
    }

    /// Another tab or device of the same shopper.
    pub fn with_session(client: &reqwest::Client, base: &str, session: Option<String>) -> Self {
        Self {
            client: client.clone(),
            base: base.to_owned(),
            session: std::sync::Mutex::new(session),
            ticket: std::sync::Mutex::new(None),
        }
    }

    /// Another tab of the same browser: the same session and ticket.
    pub fn tab(&self) -> Self {
        let tab = Self::with_session(&self.client, &self.base, self.session());
        tab.set_ticket(self.ticket());
        tab
    }

    pub fn session(&self) -> Option<String> {
        self.session.lock().unwrap().clone()
    }

    /// The queue ticket from the last join.
    pub fn ticket(&self) -> Option<String> {
        self.ticket.lock().unwrap().clone()
    }

    pub fn set_ticket(&self, ticket: Option<String>) {
        *self.ticket.lock().unwrap() = ticket;
    }

    pub async fn send(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        let mut request = self.client.request(method, format!("{}{path}", self.base));
        if let Some(session) = self.session() {
            request = request.header("x-timedeal-session", session);
        }
        if let Some(ticket) = self.ticket() {
            request = request.header("x-timedeal-ticket", ticket);
        }
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.expect("the storefront answers");
        if let Some(session) = response.headers().get("x-timedeal-session") {
            *self.session.lock().unwrap() = Some(session.to_str().unwrap().to_owned());
        }
        let status = response.status();
        let text = response.text().await.unwrap();
        let json = if text.is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text).unwrap_or_else(|_| panic!("not JSON ({status}): {text}"))
        };
        if let Some(ticket) = json["queueTicket"].as_str() {
            self.set_ticket(Some(ticket.to_owned()));
        }
        (status, json)
    }

    pub async fn join(&self) -> (StatusCode, Value) {
        self.send(reqwest::Method::POST, "/api/queue", None).await
    }

    pub async fn status(&self) -> Value {
        let (code, status) = self.send(reqwest::Method::GET, "/api/queue", None).await;
        assert_eq!(code, StatusCode::OK, "{status}");
        status
    }

    /// Polls as told until admitted; `None` when the queue closes first, when told the deal
    /// sold out (the shopper gives up rather than wait for a cancellation), or when time runs
    /// out.
    pub async fn wait_for_turn(&self, limit: Duration) -> Option<String> {
        let deadline = Instant::now() + limit;
        while Instant::now() < deadline {
            let status = self.status().await;
            match (status["state"].as_str(), status["pausedBecause"].as_str()) {
                (Some("admitted"), _) => {
                    return status["admissionToken"].as_str().map(str::to_owned)
                }
                (Some("closed"), _) | (Some("paused"), Some("awaiting_cancellations")) => {
                    return None
                }
                _ => {}
            }
            let wait = status["pollAfterMs"].as_u64().unwrap_or(500).min(500);
            tokio::time::sleep(Duration::from_millis(wait)).await;
        }
        None
    }

    pub async fn order(&self, quantity: i64, key: &str, token: &str) -> (StatusCode, Value) {
        self.send(
            reqwest::Method::POST,
            "/api/orders",
            Some(json!({"quantity": quantity, "idempotencyKey": key, "admissionToken": token})),
        )
        .await
    }

    pub async fn orders(&self) -> Vec<Value> {
        let (code, orders) = self.send(reqwest::Method::GET, "/api/orders", None).await;
        assert_eq!(code, StatusCode::OK, "{orders}");
        orders.as_array().unwrap().clone()
    }

    pub async fn cancel(&self, id: i64) -> (StatusCode, Value) {
        self.send(
            reqwest::Method::POST,
            &format!("/api/orders/{id}/cancel"),
            None,
        )
        .await
    }
}

/// A new shopper who joined the queue and was admitted, with their admission token.
pub async fn admitted(shop: &Storefront) -> (Shopper, String) {
    let shopper = Shopper::new(&client(), &shop.url());
    let (code, answer) = shopper.join().await;
    assert_eq!(code, StatusCode::OK, "{answer}");
    let token = shopper
        .wait_for_turn(Duration::from_secs(20))
        .await
        .expect("admitted");
    (shopper, token)
}

/// Waits until `check` holds, polling; panics with `what` after `limit`.
pub async fn eventually<F, Fut>(what: &str, limit: Duration, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + limit;
    while !check().await {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

impl Drop for Storefront {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!(
                "--- tenant-app log ({}) ---\n{}",
                self.url(),
                self.service.log_tail()
            );
        }
    }
}
