//! A shopper for the fault drills: goes to another replica when theirs stops answering, retries
//! what the storefront says to retry with the same idempotency key, and records what they were
//! told.

use std::{
    collections::{BTreeMap, BTreeSet},
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

use crate::{
    storefront::{SESSION_HEADER, TICKET_HEADER},
    Error,
};

/// What the shoppers of a drill were told.
#[derive(Default, Debug, Clone)]
pub struct Told {
    /// Order id → the session of the shopper told it is placed.
    pub confirmed: BTreeMap<i64, String>,
    /// Orders a shopper was told are cancelled.
    pub cancelled: BTreeSet<i64>,
    /// Idempotency keys of orders a shopper was told are refused for good (sold out, over the
    /// limit, declined, given up): none may be an order.
    pub refused: BTreeSet<String>,
    /// Answers that said "try again" (503), by code.
    pub retried: BTreeMap<String, usize>,
    /// The longest any one answer took.
    pub slowest: Duration,
}

pub type Shared = Arc<Mutex<Told>>;

/// How one shopper behaves, beyond buying one unit at a time until refused for good.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Habits {
    /// Units per order.
    pub quantity: u32,
    /// Cancels their first order.
    pub cancels: bool,
    /// Cancels it twice, the second time after the first was answered.
    pub cancels_twice: bool,
    /// Sends each placed order again with the same idempotency key, and expects the same order.
    pub repeats: bool,
    /// Leaves the line once admitted, without buying.
    pub leaves: bool,
    /// Sends each order twice at once (a double click): both answers name one order.
    pub doubles: bool,
}

impl Habits {
    /// The fault drills' shopper: one unit at a time, maybe one cancel.
    pub fn plain(cancels: bool) -> Self {
        Self {
            quantity: 1,
            cancels,
            ..Self::default()
        }
    }
}

pub struct Shopper {
    client: reqwest::Client,
    urls: Vec<String>,
    at: Mutex<usize>,
    pub session: Mutex<Option<String>>,
    /// The signed queue ticket from the last join.
    ticket: Mutex<Option<String>>,
    told: Shared,
}

/// Two answers to one order sent twice at once: if both placed it, they name the same order and
/// at most one says it was created. The more telling answer is returned.
fn twins(a: (StatusCode, Value), b: (StatusCode, Value)) -> Result<(StatusCode, Value), Error> {
    let placed =
        |(code, _): &(StatusCode, Value)| *code == StatusCode::CREATED || *code == StatusCode::OK;
    if placed(&a)
        && placed(&b)
        && (a.1["id"] != b.1["id"] || a.0 == b.0 && a.0 == StatusCode::CREATED)
    {
        return Err(Error::Broken(format!(
            "one order sent twice at once was placed twice: {} {} / {} {}",
            a.0, a.1, b.0, b.1
        )));
    }
    Ok(if placed(&b) && !placed(&a) { b } else { a })
}

fn unexpected(what: &str, code: StatusCode, answer: &Value) -> Error {
    Error::Unexpected(format!("{what} answered {code}: {answer}"))
}

impl Shopper {
    pub fn new(urls: &[String], first: usize, told: Shared) -> Self {
        Self {
            client: reqwest::Client::builder()
                .timeout(Duration::from_secs(30))
                .build()
                .expect("a plain HTTP client"),
            urls: urls.to_vec(),
            at: Mutex::new(first % urls.len()),
            session: Mutex::new(None),
            ticket: Mutex::new(None),
            told,
        }
    }

    /// Sends a request to the current replica, moving to the next one while none answers.
    pub async fn send(
        &self,
        method: Method,
        path: &str,
        body: Option<Value>,
    ) -> Result<(StatusCode, Value), Error> {
        for _ in 0..100 {
            let base = self.urls[*self.at.lock().unwrap()].clone();
            let mut request = self.client.request(method.clone(), format!("{base}{path}"));
            if let Some(session) = self.session.lock().unwrap().clone() {
                request = request.header(SESSION_HEADER, session);
            }
            if let Some(ticket) = self.ticket.lock().unwrap().clone() {
                request = request.header(TICKET_HEADER, ticket);
            }
            if let Some(body) = &body {
                request = request.json(body);
            }
            let started = Instant::now();
            let Ok(response) = request.send().await else {
                {
                    let mut at = self.at.lock().unwrap();
                    *at = (*at + 1) % self.urls.len();
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            };
            if let Some(session) = response.headers().get(SESSION_HEADER) {
                *self.session.lock().unwrap() = session.to_str().ok().map(str::to_owned);
            }
            let status = response.status();
            let retry_after = response.headers().contains_key("retry-after");
            let text = response.text().await.unwrap_or_default();
            let json: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
            if let Some(ticket) = json["queueTicket"].as_str() {
                *self.ticket.lock().unwrap() = Some(ticket.to_owned());
            }
            let mut told = self.told.lock().unwrap();
            told.slowest = told.slowest.max(started.elapsed());
            if status == StatusCode::SERVICE_UNAVAILABLE {
                if !retry_after {
                    return Err(Error::Broken(format!("a 503 without Retry-After: {text}")));
                }
                let code = json["error"]["code"].as_str().unwrap_or("?").to_owned();
                *told.retried.entry(code).or_default() += 1;
            }
            return Ok((status, json));
        }
        Err(Error::Unexpected(format!("no replica answered {path}")))
    }

    /// Joins and waits to be admitted; `None` once there is nothing to queue for.
    pub async fn admission(&self, deadline: Instant) -> Result<Option<String>, Error> {
        while Instant::now() < deadline {
            let (code, answer) = self.send(Method::POST, "/api/queue", None).await?;
            match (code, answer["error"]["code"].as_str()) {
                (StatusCode::OK, _) => {}
                (StatusCode::SERVICE_UNAVAILABLE, _) => {
                    tokio::time::sleep(Duration::from_millis(300)).await;
                    continue;
                }
                (StatusCode::CONFLICT, Some("sold_out" | "over_limit")) => return Ok(None),
                _ => return Err(unexpected("a join", code, &answer)),
            }
            while Instant::now() < deadline {
                let (code, status) = self.send(Method::GET, "/api/queue", None).await?;
                if code != StatusCode::OK {
                    tokio::time::sleep(Duration::from_millis(300)).await;
                    continue;
                }
                match (status["state"].as_str(), status["pausedBecause"].as_str()) {
                    (Some("admitted"), _) => {
                        return Ok(status["admissionToken"].as_str().map(str::to_owned))
                    }
                    (Some("closed" | "done"), _)
                    | (Some("paused"), Some("awaiting_cancellations")) => return Ok(None),
                    // The line was lost (Redis came back empty): join again.
                    (Some("outside"), _) => break,
                    _ => tokio::time::sleep(Duration::from_millis(200)).await,
                }
            }
        }
        Ok(None)
    }

    /// Buys one unit at a time until refused for good, cancelling the first order when
    /// `cancels`, then leaves the queue, so that an admission nobody uses never holds a place.
    pub async fn shop(&self, name: &str, cancels: bool, deadline: Instant) -> Result<(), Error> {
        self.shop_with(name, Habits::plain(cancels), deadline).await
    }

    /// Shops as `habits` say, then leaves the queue.
    pub async fn shop_with(
        &self,
        name: &str,
        habits: Habits,
        deadline: Instant,
    ) -> Result<(), Error> {
        let shopped = self.buy(name, habits, deadline).await;
        self.send(Method::DELETE, "/api/queue", None).await?;
        shopped
    }

    async fn buy(&self, name: &str, habits: Habits, deadline: Instant) -> Result<(), Error> {
        let mut attempt = 0;
        let mut cancels = habits.cancels;
        'admission: while let Some(mut token) = self.admission(deadline).await? {
            if habits.leaves {
                return Ok(());
            }
            loop {
                attempt += 1;
                let key = format!("{name}-{attempt}");
                // The same order until it is answered for good.
                loop {
                    if Instant::now() > deadline {
                        return Ok(());
                    }
                    let body = json!({
                        "quantity": habits.quantity.max(1),
                        "idempotencyKey": key,
                        "admissionToken": token
                    });
                    let (code, answer) = if habits.doubles {
                        let (a, b) = tokio::join!(
                            self.send(Method::POST, "/api/orders", Some(body.clone())),
                            self.send(Method::POST, "/api/orders", Some(body.clone()))
                        );
                        twins(a?, b?)?
                    } else {
                        self.send(Method::POST, "/api/orders", Some(body.clone()))
                            .await?
                    };
                    let reason = answer["error"]["code"].as_str().unwrap_or("");
                    match (code, reason) {
                        (StatusCode::CREATED | StatusCode::OK, _) => {
                            let id = answer["id"].as_i64().unwrap_or_default();
                            let session = self.session.lock().unwrap().clone().unwrap_or_default();
                            let again = self.told.lock().unwrap().confirmed.insert(id, session);
                            if again.is_some() && code == StatusCode::CREATED {
                                return Err(Error::Broken(format!(
                                    "order {id} was placed twice: {answer}"
                                )));
                            }
                            if habits.repeats {
                                self.repeat(id, body, deadline).await?;
                            }
                            if cancels {
                                self.cancel(id, deadline).await?;
                                if habits.cancels_twice {
                                    self.cancel(id, deadline).await?;
                                }
                                cancels = false;
                            }
                            break;
                        }
                        (StatusCode::SERVICE_UNAVAILABLE, "unavailable" | "outcome_unknown")
                        | (StatusCode::CONFLICT, "order_in_progress" | "units_reserved") => {
                            tokio::time::sleep(Duration::from_millis(300)).await
                        }
                        // The purchase was given up: the order goes again as a new one.
                        (StatusCode::CONFLICT, "order_failed" | "reservation_lapsed")
                        | (StatusCode::PAYMENT_REQUIRED, _) => {
                            self.told.lock().unwrap().refused.insert(key);
                            break;
                        }
                        (StatusCode::FORBIDDEN, "not_admitted" | "admission_expired") => {
                            continue 'admission
                        }
                        (
                            StatusCode::CONFLICT,
                            "over_limit" | "sold_out" | "insufficient_stock",
                        ) => {
                            self.told.lock().unwrap().refused.insert(key);
                            return Ok(());
                        }
                        _ => return Err(unexpected("an order", code, &answer)),
                    }
                }
                // A fresh token after a cancel or a restore: ask for the place again.
                let (code, status) = self.send(Method::GET, "/api/queue", None).await?;
                if code == StatusCode::OK {
                    match status["admissionToken"].as_str() {
                        Some(fresh) => token = fresh.to_owned(),
                        None => continue 'admission,
                    }
                }
            }
        }
        Ok(())
    }

    /// Sends a placed order again with its idempotency key: the answer is the same order, never
    /// a second one.
    async fn repeat(&self, id: i64, body: Value, deadline: Instant) -> Result<(), Error> {
        while Instant::now() < deadline {
            let (code, answer) = self
                .send(Method::POST, "/api/orders", Some(body.clone()))
                .await?;
            match code {
                StatusCode::OK | StatusCode::CREATED => {
                    return if answer["id"].as_i64() == Some(id) && code == StatusCode::OK {
                        Ok(())
                    } else {
                        Err(Error::Broken(format!(
                            "order {id} sent again with its key answered {code}: {answer}"
                        )))
                    };
                }
                StatusCode::SERVICE_UNAVAILABLE => {
                    tokio::time::sleep(Duration::from_millis(300)).await
                }
                StatusCode::CONFLICT if answer["error"]["code"] == "order_in_progress" => {
                    tokio::time::sleep(Duration::from_millis(300)).await
                }
                _ => {
                    return Err(Error::Broken(format!(
                        "order {id} sent again with its key answered {code}: {answer}"
                    )))
                }
            }
        }
        Ok(())
    }

    /// Cancels until answered for good, and records it.
    pub async fn cancel(&self, id: i64, deadline: Instant) -> Result<(), Error> {
        while Instant::now() < deadline {
            let (code, answer) = self
                .send(Method::POST, &format!("/api/orders/{id}/cancel"), None)
                .await?;
            match code {
                StatusCode::OK => {
                    self.told.lock().unwrap().cancelled.insert(id);
                    return Ok(());
                }
                StatusCode::SERVICE_UNAVAILABLE => {
                    tokio::time::sleep(Duration::from_millis(300)).await
                }
                StatusCode::CONFLICT if answer["error"]["code"] == "already_cancelled" => {
                    self.told.lock().unwrap().cancelled.insert(id);
                    return Ok(());
                }
                _ => return Err(unexpected("a cancel", code, &answer)),
            }
        }
        Ok(())
    }
}
