//! The storefront under measurement: the real `tenant-app` binary serving a deal written for one
//! scenario, against the benchmark's Redis and PostgreSQL, plus what scenarios need around it: a
//! shopper that sets itself up over the JSON API (join, wait for a turn) and the app's own
//! counters read from `/metrics`.

use std::{
    collections::BTreeMap,
    ffi::OsString,
    net::SocketAddr,
    path::Path,
    time::{Duration, Instant},
};

use chrono::{SecondsFormat, Utc};
use rand::Rng;
use serde_json::{json, Value};
use timedeal_testkit::Service;

use crate::Error;

/// The header that carries an anonymous shopper's session for apps.
pub const SESSION_HEADER: &str = "x-timedeal-session";

/// The deal a scenario sells: a live deal from a second ago for an hour.
#[derive(Clone, Debug)]
pub struct DealPlan {
    pub name: String,
    pub stock: i64,
    pub limit: i64,
    pub admission_rate: i64,
    pub max_active: i64,
    /// How long an admission lasts (the deal's `sessionTtl`).
    pub session_ttl: &'static str,
    /// How long a silent waiting shopper keeps a place (the deal's `idleGrace`).
    pub idle_grace: &'static str,
    /// How long a reservation waits for its payment (the deal's `reservationTtl`).
    pub reservation_ttl: &'static str,
    /// Seconds from now to the start (negative: started that long ago).
    pub starts_in: i64,
}

impl DealPlan {
    pub fn new(name: &str) -> Self {
        Self {
            name: name.into(),
            stock: 100,
            limit: 2,
            admission_rate: 2_000,
            max_active: 500,
            session_ttl: "30m",
            idle_grace: "1h",
            reservation_ttl: "1m",
            starts_in: -1,
        }
    }

    pub fn yaml(&self) -> String {
        let start = Utc::now() + chrono::Duration::seconds(self.starts_in);
        let end = start + chrono::Duration::hours(1);
        let ts = |t: chrono::DateTime<Utc>| t.to_rfc3339_opts(SecondsFormat::Millis, true);
        format!(
            r#"apiVersion: timedeal.dev/v1alpha1
kind: TimeDeal
metadata:
  name: {name}
spec:
  company:
    name: Bench Audio
    contactEmail: bench@example.com
  approved: true
  product:
    name: Bench headphones
    description: Sold by the benchmark.
    listPrice: 29900
    dealPrice: 9900
    currency: USD
    stock: {stock}
    perUserLimit: {limit}
  schedule:
    start: "{start}"
    end: "{end}"
  queue:
    admissionRate: {rate}
    maxActive: {max_active}
    sessionTtl: {session_ttl}
    reservationTtl: {reservation_ttl}
    idleGrace: {idle_grace}
  ingress:
    host: bench.example.com
"#,
            name = self.name,
            stock = self.stock,
            limit = self.limit,
            start = ts(start),
            end = ts(end),
            rate = self.admission_rate,
            max_active = self.max_active,
            session_ttl = self.session_ttl,
            idle_grace = self.idle_grace,
            reservation_ttl = self.reservation_ttl,
        )
    }

    /// The deal's Redis key prefix, as the tenant app builds it.
    pub fn prefix(&self) -> String {
        format!("td:{{{}}}:", self.name)
    }

    /// The deal's PostgreSQL schema, as the tenant app names it by default.
    pub fn schema(&self) -> String {
        format!("deal_{}", self.name.replace('-', "_"))
    }
}

/// Where the storefront keeps its state.
#[derive(Clone, Debug)]
pub struct Stores {
    pub redis_url: String,
    pub postgres_url: String,
}

/// A running tenant app.
pub struct Storefront {
    service: Service,
    pub deal: DealPlan,
    client: reqwest::Client,
    dir: tempfile::TempDir,
    /// The signing secret, shared by its replicas.
    secret: String,
}

/// The randomness beacon every storefront started here keys its draw with: served on loopback,
/// a round a second, as drand's HTTP API answers.
pub fn beacon_url() -> String {
    static BEACON: std::sync::OnceLock<timedeal_testkit::Beacon> = std::sync::OnceLock::new();
    BEACON
        .get_or_init(|| timedeal_testkit::Beacon::start(1).expect("a beacon on loopback"))
        .url()
}

impl Storefront {
    /// Starts `binary` on `deal`, with a generated signing secret and the per-client rate limit
    /// off (every benchmark shopper shares one address).
    pub fn start(binary: &Path, stores: &Stores, deal: DealPlan) -> Result<Self, Error> {
        let secret: String = rand::thread_rng()
            .sample_iter(rand::distributions::Alphanumeric)
            .take(48)
            .map(char::from)
            .collect();
        Self::start_with(binary, stores, deal, &DealPlan::yaml, secret)
    }

    /// Another replica of this storefront's deal: the same deal file, stores and secret.
    pub fn replica(&self, binary: &Path, stores: &Stores) -> Result<Self, Error> {
        let text = std::fs::read_to_string(self.dir.path().join("deal.yaml"))
            .map_err(Error::io("read the deal file"))?;
        Self::start_with(
            binary,
            stores,
            self.deal.clone(),
            &|_| text.clone(),
            self.secret.clone(),
        )
    }

    fn start_with(
        binary: &Path,
        stores: &Stores,
        deal: DealPlan,
        text: &dyn Fn(&DealPlan) -> String,
        secret: String,
    ) -> Result<Self, Error> {
        let dir = tempfile::tempdir().map_err(Error::io("create the deal's directory"))?;
        let path = dir.path().join("deal.yaml");
        std::fs::write(&path, text(&deal)).map_err(Error::io("write the deal file"))?;
        let args: Vec<OsString> = vec![
            "--deal".into(),
            path.into(),
            "--redis-url".into(),
            stores.redis_url.clone().into(),
            "--rate-limit-per-second".into(),
            "0".into(),
            format!("--draw-beacon={}", beacon_url()).into(),
        ];
        let service = Service::start(
            binary,
            &args,
            &[
                ("TIMEDEAL_POSTGRES_URL", stores.postgres_url.clone().into()),
                ("TIMEDEAL_SIGNING_SECRET", secret.clone().into()),
                ("RUST_LOG", "warn".into()),
            ],
        )
        .map_err(Error::start(format!("the storefront of {}", deal.name)))?;
        Ok(Self {
            service,
            deal,
            client: client(),
            dir,
            secret,
        })
    }

    /// Moves the deal's start to `starts_in` seconds from now, through its file (the app picks
    /// the change up within a couple of seconds).
    pub fn reschedule(&mut self, starts_in: i64) -> Result<(), Error> {
        self.deal.starts_in = starts_in;
        std::fs::write(self.dir.path().join("deal.yaml"), self.deal.yaml())
            .map_err(Error::io("rewrite the deal file"))
    }

    /// Changes how long a silent waiting shopper keeps a place, keeping the schedule as it is.
    pub fn set_idle_grace(&mut self, idle_grace: &'static str) -> Result<(), Error> {
        let path = self.dir.path().join("deal.yaml");
        let text = std::fs::read_to_string(&path).map_err(Error::io("read the deal file"))?;
        let old = format!("idleGrace: {}", self.deal.idle_grace);
        self.deal.idle_grace = idle_grace;
        std::fs::write(
            &path,
            text.replace(&old, &format!("idleGrace: {idle_grace}")),
        )
        .map_err(Error::io("rewrite the deal file"))
    }

    pub fn address(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.service.port()))
    }

    pub fn url(&self) -> String {
        self.service.url()
    }

    /// The last lines of the app's log, for error reports.
    pub fn log_tail(&self) -> String {
        self.service.log_tail()
    }

    /// A new shopper with no session yet.
    pub fn shopper(&self) -> Shopper {
        Shopper {
            client: self.client.clone(),
            base: self.url(),
            session: None,
            ticket: None,
        }
    }

    /// The app's counters and histogram counts, read from `/metrics`.
    pub async fn counters(&self) -> Result<Counters, Error> {
        let text = self
            .client
            .get(format!("{}/metrics", self.url()))
            .send()
            .await
            .and_then(|r| r.error_for_status())
            .map_err(Error::http("read the storefront's /metrics"))?
            .text()
            .await
            .map_err(Error::http("read the storefront's /metrics"))?;
        Ok(Counters::parse(&text))
    }
}

/// A client for set-up calls and the storm; many shoppers share it, each with its own session.
pub fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .pool_max_idle_per_host(512)
        .timeout(Duration::from_secs(60))
        .build()
        .expect("a default HTTP client")
}

/// Samples of the Prometheus text format by their full name with labels, e.g.
/// `timedeal_orders_total{outcome="confirmed"}`.
#[derive(Clone, Debug, Default)]
pub struct Counters(BTreeMap<String, f64>);

impl Counters {
    pub fn parse(text: &str) -> Self {
        Self(
            text.lines()
                .filter(|line| !line.starts_with('#'))
                .filter_map(|line| {
                    let (name, value) = line.rsplit_once(' ')?;
                    Some((name.to_owned(), value.parse().ok()?))
                })
                .collect(),
        )
    }

    /// A sample's value; 0 for one not exported yet (a counter that never moved).
    pub fn get(&self, sample: &str) -> u64 {
        self.0.get(sample).copied().unwrap_or(0.0) as u64
    }

    /// How far `sample` moved since `before`.
    pub fn since(&self, before: &Counters, sample: &str) -> u64 {
        self.get(sample).saturating_sub(before.get(sample))
    }
}

/// The count of requests the app recorded for one route and status.
pub fn requests(method: &str, route: &str, status: u16) -> String {
    format!(
        "timedeal_http_request_duration_seconds_count{{method=\"{method}\",route=\"{route}\",status=\"{status}\"}}"
    )
}

/// Orders counted by outcome.
pub fn orders(outcome: &str) -> String {
    format!("timedeal_orders_total{{outcome=\"{outcome}\"}}")
}

/// Refusals counted by their error code.
pub fn rejections(code: &str) -> String {
    format!("timedeal_rejections_total{{reason=\"{code}\"}}")
}

/// The header that carries a queue ticket for apps.
pub const TICKET_HEADER: &str = "x-timedeal-ticket";

/// A shopper talking to the JSON API as a mobile app does: the session and the queue ticket
/// travel in headers.
#[derive(Clone)]
pub struct Shopper {
    client: reqwest::Client,
    base: String,
    pub session: Option<String>,
    /// The signed queue ticket from the last join (`queueTicket`).
    pub ticket: Option<String>,
}

/// An answer: its status and its JSON body (`null` when empty).
pub type Answer = (u16, Value);

impl Shopper {
    pub async fn send(
        &mut self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> Result<Answer, Error> {
        let what = format!("{method} {path}");
        let mut request = self.client.request(method, format!("{}{path}", self.base));
        if let Some(session) = &self.session {
            request = request.header(SESSION_HEADER, session);
        }
        if let Some(ticket) = &self.ticket {
            request = request.header(TICKET_HEADER, ticket);
        }
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.map_err(Error::http(what.clone()))?;
        if let Some(session) = response.headers().get(SESSION_HEADER) {
            self.session = session.to_str().ok().map(str::to_owned);
        }
        let status = response.status().as_u16();
        let text = response.text().await.map_err(Error::http(what.clone()))?;
        let json = if text.is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text).map_err(|_| {
                Error::Unexpected(format!("{what} answered {status}, not JSON: {text}"))
            })?
        };
        if let Some(ticket) = json["queueTicket"].as_str() {
            self.ticket = Some(ticket.to_owned());
        }
        Ok((status, json))
    }

    /// The same shopper, talking to `base` (a proxy in front of the storefronts).
    pub fn via(mut self, base: &str) -> Self {
        self.base = base.trim_end_matches('/').to_owned();
        self
    }

    pub async fn join(&mut self) -> Result<Answer, Error> {
        self.send(reqwest::Method::POST, "/api/queue", None).await
    }

    /// Polls as the answers say until admitted: `Some(token)`, or `None` when the queue has
    /// nothing more for this shopper (sold out, closed, or done).
    pub async fn wait_for_turn(&mut self, limit: Duration) -> Result<Option<String>, Error> {
        let deadline = Instant::now() + limit;
        loop {
            let (code, status) = self.send(reqwest::Method::GET, "/api/queue", None).await?;
            if code != 200 {
                return Err(Error::Unexpected(format!(
                    "GET /api/queue answered {code}: {status}"
                )));
            }
            match (status["state"].as_str(), status["pausedBecause"].as_str()) {
                (Some("admitted"), _) => {
                    return Ok(status["admissionToken"].as_str().map(str::to_owned))
                }
                // Told the deal sold out, this shopper gives up rather than wait for a cancel.
                (Some("closed" | "done" | "outside"), _)
                | (Some("paused"), Some("awaiting_cancellations")) => return Ok(None),
                _ => {}
            }
            if Instant::now() > deadline {
                return Err(Error::Unexpected(format!(
                    "a shopper was not admitted within {limit:?}: {status}"
                )));
            }
            let wait = status["pollAfterMs"].as_u64().unwrap_or(200).clamp(20, 500);
            tokio::time::sleep(Duration::from_millis(wait)).await;
        }
    }

    pub async fn order(&mut self, quantity: i64, key: &str, token: &str) -> Result<Answer, Error> {
        let body = json!({"quantity": quantity, "idempotencyKey": key, "admissionToken": token});
        self.send(reqwest::Method::POST, "/api/orders", Some(body))
            .await
    }

    pub async fn cancel(&mut self, id: i64) -> Result<Answer, Error> {
        self.send(
            reqwest::Method::POST,
            &format!("/api/orders/{id}/cancel"),
            None,
        )
        .await
    }

    /// Where the shopper stands: `GET /api/queue`.
    pub async fn status(&mut self) -> Result<Answer, Error> {
        self.send(reqwest::Method::GET, "/api/queue", None).await
    }

    /// Gives the admission back so the next shopper in line is let in.
    pub async fn leave(&mut self) -> Result<Answer, Error> {
        self.send(reqwest::Method::DELETE, "/api/queue", None).await
    }

    /// Joins and waits to be admitted; the admission token.
    pub async fn admitted(&mut self) -> Result<String, Error> {
        let (code, answer) = self.join().await?;
        if code != 200 {
            return Err(Error::Unexpected(format!(
                "joining the queue answered {code}: {answer}"
            )));
        }
        self.wait_for_turn(Duration::from_secs(60))
            .await?
            .ok_or_else(|| Error::Unexpected("the queue closed before admitting a shopper".into()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_are_read_from_the_text_format() {
        let text = "# HELP timedeal_orders Orders\n\
                    timedeal_orders_total{outcome=\"confirmed\"} 12\n\
                    timedeal_http_request_duration_seconds_count{method=\"POST\",route=\"/api/orders\",status=\"201\"} 7\n";
        let now = Counters::parse(text);
        assert_eq!(now.get(&orders("confirmed")), 12);
        assert_eq!(now.get(&requests("POST", "/api/orders", 201)), 7);
        assert_eq!(now.get(&orders("cancelled")), 0);
        let before = Counters::parse("timedeal_orders_total{outcome=\"confirmed\"} 5\n");
        assert_eq!(now.since(&before, &orders("confirmed")), 7);
    }

    #[test]
    fn the_deal_file_names_what_the_app_derives() {
        let plan = DealPlan::new("bench-orders-1");
        assert_eq!(plan.prefix(), "td:{bench-orders-1}:");
        assert_eq!(plan.schema(), "deal_bench_orders_1");
        let yaml: serde_yaml::Value = serde_yaml::from_str(&plan.yaml()).unwrap();
        assert_eq!(yaml["spec"]["product"]["perUserLimit"], 2);
        assert_eq!(yaml["spec"]["queue"]["idleGrace"], "1h");
    }
}
