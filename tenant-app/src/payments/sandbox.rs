//! The sandbox payment provider: a ledger of payments keyed by account and purchase key,
//! enforcing what real providers enforce (one payment per key, the same key with other
//! parameters refused, a second call while the first runs told to retry, lookup by key), and
//! told how to misbehave.
//!
//! Used in process (the default provider), or served over HTTP by [`router`] (`tenant-app
//! payment-sandbox --listen ADDR`) so several replicas, drills and load tests share one ledger,
//! as they would share a real provider.

use std::{
    collections::{BTreeMap, BTreeSet},
    sync::{Arc, Mutex},
    time::Duration,
};

use axum::{
    extract::{Path, State as Shared},
    http::StatusCode,
    response::{IntoResponse, Response},
    routing::{get, post, put},
    Json, Router,
};
use chrono::Utc;
use rand::Rng;
use serde::{Deserialize, Serialize};

use super::{Authorisation, Charge, Listing, PaymentError, PaymentProvider, Refund, State};

/// How the sandbox behaves.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum Mode {
    /// Payments go through (less the configured share of declined authorisations).
    #[default]
    Normal,
    /// Every authorisation is declined; the rest goes through.
    Decline,
    /// Every call fails with an error that says nothing of the outcome, and does nothing.
    Fail,
    /// Every call hangs (for an hour) and does nothing.
    Hang,
    /// Authorisations fail at once, but the money is held a second later: the outcome the
    /// caller cannot see. The rest goes through.
    Late,
}

type Book = BTreeMap<(String, String), Charge>;

/// The sandbox's ledger. Money moves at most once per purchase key.
pub struct Ledger {
    book: Arc<Mutex<Book>>,
    /// Names this ledger in its references, so that two ledgers never hand out the same one.
    tag: String,
    /// Keys with a call under way.
    running: Mutex<BTreeSet<(String, String)>>,
    mode: Mutex<Mode>,
    delay: Duration,
    decline_rate: f64,
}

/// Ends a key's running call however the call ends.
struct Running<'a> {
    ledger: &'a Ledger,
    slot: (String, String),
}

impl Drop for Running<'_> {
    fn drop(&mut self) {
        self.ledger.running.lock().unwrap().remove(&self.slot);
    }
}

impl Ledger {
    /// A ledger answering after `delay`, declining a `decline_rate` share of authorisations at
    /// random.
    pub fn new(delay: Duration, decline_rate: f64) -> Self {
        Self {
            book: Arc::default(),
            tag: format!("{:06x}", rand::thread_rng().gen_range(0..0x100_0000)),
            running: Mutex::default(),
            mode: Mutex::default(),
            delay,
            decline_rate,
        }
    }

    pub fn set_mode(&self, mode: Mode) {
        *self.mode.lock().unwrap() = mode;
    }

    pub fn mode(&self) -> Mode {
        *self.mode.lock().unwrap()
    }

    /// Marks a call with `key` as running; a second one at the same time is told to retry.
    fn start(&self, account: &str, key: &str) -> Result<Running<'_>, PaymentError> {
        let slot = (account.to_owned(), key.to_owned());
        if !self.running.lock().unwrap().insert(slot.clone()) {
            return Err(PaymentError::InProgress);
        }
        Ok(Running { ledger: self, slot })
    }

    async fn misbehave(&self) -> Result<Mode, PaymentError> {
        if !self.delay.is_zero() {
            tokio::time::sleep(self.delay).await;
        }
        match self.mode() {
            Mode::Fail => Err(PaymentError::Unavailable(
                "the sandbox failed on purpose".into(),
            )),
            Mode::Hang => {
                tokio::time::sleep(Duration::from_secs(3600)).await;
                Err(PaymentError::Unavailable(
                    "the sandbox hung on purpose".into(),
                ))
            }
            mode => Ok(mode),
        }
    }

    /// The payment under the key, created in `state` (authorised, or declined) when there is
    /// none.
    fn hold(
        book: &Mutex<Book>,
        tag: &str,
        account: &str,
        request: &Authorisation,
        state: State,
    ) -> Result<String, PaymentError> {
        let mut book = book.lock().unwrap();
        let number = book.len() + 1;
        let charge = book
            .entry((account.to_owned(), request.key.clone()))
            .or_insert_with(|| Charge {
                key: request.key.clone(),
                order_id: request.order_id,
                amount: request.amount,
                currency: request.currency.clone(),
                reference: format!("sandbox-pay-{tag}-{number}"),
                state,
                refund: None,
                created_at: Utc::now(),
            });
        if charge.amount != request.amount || charge.currency != request.currency {
            return Err(PaymentError::Declined(format!(
                "this key was used for {} {}, not {} {}",
                charge.amount, charge.currency, request.amount, request.currency
            )));
        }
        match charge.state {
            State::Authorised | State::Captured => Ok(charge.reference.clone()),
            State::Voided | State::Refunded => Err(PaymentError::Spent),
            State::Declined => Err(PaymentError::Declined(
                "the sandbox declined the card".into(),
            )),
        }
    }

    pub async fn authorise(
        &self,
        account: &str,
        request: &Authorisation,
    ) -> Result<String, PaymentError> {
        let _running = self.start(account, &request.key)?;
        match self.misbehave().await? {
            // A decline is remembered: the purchase's key answers so from then on.
            Mode::Decline => {
                return Self::hold(&self.book, &self.tag, account, request, State::Declined)
            }
            Mode::Late => {
                let (book, tag, account, request) = (
                    self.book.clone(),
                    self.tag.clone(),
                    account.to_owned(),
                    request.clone(),
                );
                tokio::spawn(async move {
                    tokio::time::sleep(Duration::from_secs(1)).await;
                    let _ = Self::hold(&book, &tag, &account, &request, State::Authorised);
                });
                return Err(PaymentError::Unavailable(
                    "the sandbox answered nothing useful (the money is held late)".into(),
                ));
            }
            _ => {}
        }
        let known = self
            .book
            .lock()
            .unwrap()
            .contains_key(&(account.to_owned(), request.key.clone()));
        let state = if !known
            && self.decline_rate > 0.0
            && rand::thread_rng().gen_bool(self.decline_rate.min(1.0))
        {
            State::Declined
        } else {
            State::Authorised
        };
        Self::hold(&self.book, &self.tag, account, request, state)
    }

    pub async fn capture(&self, account: &str, key: &str) -> Result<(), PaymentError> {
        let _running = self.start(account, key)?;
        self.misbehave().await?;
        let mut book = self.book.lock().unwrap();
        let Some(charge) = book.get_mut(&(account.to_owned(), key.to_owned())) else {
            return Err(PaymentError::Declined(
                "no payment was authorised under this key".into(),
            ));
        };
        match charge.state {
            State::Authorised | State::Captured => {
                charge.state = State::Captured;
                Ok(())
            }
            State::Voided | State::Refunded => Err(PaymentError::Spent),
            State::Declined => Err(PaymentError::Declined(
                "the card was declined; there is nothing to capture".into(),
            )),
        }
    }

    pub async fn reverse(&self, account: &str, key: &str) -> Result<Refund, PaymentError> {
        let _running = self.start(account, key)?;
        self.misbehave().await?;
        let mut book = self.book.lock().unwrap();
        let Some(charge) = book.get_mut(&(account.to_owned(), key.to_owned())) else {
            return Ok(Refund::NothingCharged);
        };
        Ok(match charge.state {
            State::Declined => Refund::NothingCharged,
            State::Authorised | State::Voided => {
                charge.state = State::Voided;
                Refund::Voided
            }
            State::Captured | State::Refunded => {
                charge.state = State::Refunded;
                let reference = charge.reference.replacen("-pay-", "-refund-", 1);
                Refund::Refunded(charge.refund.get_or_insert(reference).clone())
            }
        })
    }

    /// The payment under a key.
    pub fn lookup(&self, account: &str, key: &str) -> Option<Charge> {
        self.book
            .lock()
            .unwrap()
            .get(&(account.to_owned(), key.to_owned()))
            .cloned()
    }

    /// Every payment of an account, in key order.
    pub fn charges(&self, account: &str) -> Vec<Charge> {
        self.book
            .lock()
            .unwrap()
            .iter()
            .filter(|((owner, _), _)| owner == account)
            .map(|(_, charge)| charge.clone())
            .collect()
    }
}

/// The in-process sandbox: one ledger, one account.
pub struct Sandbox {
    pub ledger: Arc<Ledger>,
    pub account: String,
}

#[async_trait::async_trait]
impl PaymentProvider for Sandbox {
    fn name(&self) -> &'static str {
        "sandbox"
    }

    async fn authorise(&self, request: &Authorisation) -> Result<String, PaymentError> {
        self.ledger.authorise(&self.account, request).await
    }

    async fn capture(&self, key: &str) -> Result<(), PaymentError> {
        self.ledger.capture(&self.account, key).await
    }

    async fn reverse(&self, key: &str) -> Result<Refund, PaymentError> {
        self.ledger.reverse(&self.account, key).await
    }

    async fn lookup(&self, key: &str) -> Result<Option<Charge>, PaymentError> {
        self.ledger.misbehave().await?;
        Ok(self.ledger.lookup(&self.account, key))
    }

    async fn charges(&self) -> Result<Listing, PaymentError> {
        if self.ledger.mode() == Mode::Fail {
            return Err(PaymentError::Unavailable(
                "the sandbox failed on purpose".into(),
            ));
        }
        Ok(Listing {
            now: Utc::now(),
            charges: self.ledger.charges(&self.account),
        })
    }
}

/// The answer to a payment call over HTTP.
#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PaymentAnswer {
    /// The payment's reference (authorise), or the refund's (reverse, when one was made).
    pub reference: Option<String>,
    /// What a reversal did: `voided`, `refunded` or `none`.
    pub outcome: Option<String>,
    /// Why it was declined or failed: `spent` when the key's payment was given up before.
    pub error: Option<String>,
}

fn answer(
    result: Result<(Option<String>, Option<&str>), PaymentError>,
    ok: StatusCode,
) -> Response {
    let failed = |status, error: String| {
        (
            status,
            Json(PaymentAnswer {
                reference: None,
                outcome: None,
                error: Some(error),
            }),
        )
    };
    match result {
        Ok((reference, outcome)) => (
            ok,
            Json(PaymentAnswer {
                reference,
                outcome: outcome.map(str::to_owned),
                error: None,
            }),
        ),
        Err(PaymentError::Declined(e)) => failed(StatusCode::PAYMENT_REQUIRED, e),
        Err(PaymentError::Spent) => failed(StatusCode::GONE, "spent".into()),
        Err(PaymentError::InProgress) => failed(StatusCode::CONFLICT, "in_progress".into()),
        Err(PaymentError::Unavailable(e)) => failed(StatusCode::SERVICE_UNAVAILABLE, e),
    }
    .into_response()
}

/// The sandbox over HTTP, the protocol [`super::http::HttpProvider`] speaks:
///
/// - `POST /v1/accounts/{account}/payments` `{key, orderId, amount, currency}`: authorises,
///   `201 {reference}`; `402` declined (also the same key with another amount), `409` a call
///   with the key is still under way, `410` the key's payment was voided or refunded before,
///   `503` outcome unknown: ask again with the same key;
/// - `POST /v1/accounts/{account}/payments/{key}/capture`: `200`;
/// - `POST /v1/accounts/{account}/payments/{key}/reverse`: voids or refunds, `200 {outcome,
///   reference}` with `outcome` `voided`, `refunded` (the refund's reference) or `none`;
/// - `GET /v1/accounts/{account}/payments/{key}`: the payment, `404` when none;
/// - `GET /v1/accounts/{account}/payments`: every payment (the `Date` header gives the
///   provider's time, by which reconciliation judges a payment's age);
/// - `PUT /v1/mode` `"normal" | "decline" | "fail" | "hang" | "late"`: how to behave, and
///   `GET /v1/mode`; `GET /readyz` answers once it serves.
pub fn router(ledger: Arc<Ledger>) -> Router {
    Router::new()
        .route(
            "/v1/accounts/{account}/payments",
            post(authorise).get(list_charges),
        )
        .route("/v1/accounts/{account}/payments/{key}", get(lookup))
        .route(
            "/v1/accounts/{account}/payments/{key}/capture",
            post(capture),
        )
        .route(
            "/v1/accounts/{account}/payments/{key}/reverse",
            post(reverse),
        )
        .route("/v1/mode", put(set_mode).get(mode))
        .route("/readyz", get(|| async { "ready" }))
        .with_state(ledger)
}

async fn authorise(
    Shared(ledger): Shared<Arc<Ledger>>,
    Path(account): Path<String>,
    Json(request): Json<Authorisation>,
) -> Response {
    let result = ledger.authorise(&account, &request).await;
    answer(result.map(|r| (Some(r), None)), StatusCode::CREATED)
}

async fn capture(
    Shared(ledger): Shared<Arc<Ledger>>,
    Path((account, key)): Path<(String, String)>,
) -> Response {
    let result = ledger.capture(&account, &key).await;
    answer(result.map(|()| (None, None)), StatusCode::OK)
}

async fn reverse(
    Shared(ledger): Shared<Arc<Ledger>>,
    Path((account, key)): Path<(String, String)>,
) -> Response {
    let result = ledger
        .reverse(&account, &key)
        .await
        .map(|refund| match refund {
            Refund::Refunded(reference) => (Some(reference), Some("refunded")),
            Refund::Voided => (None, Some("voided")),
            Refund::NothingCharged => (None, Some("none")),
        });
    answer(result, StatusCode::OK)
}

async fn lookup(
    Shared(ledger): Shared<Arc<Ledger>>,
    Path((account, key)): Path<(String, String)>,
) -> Response {
    match ledger.lookup(&account, &key) {
        Some(charge) => Json(charge).into_response(),
        None => StatusCode::NOT_FOUND.into_response(),
    }
}

async fn list_charges(
    Shared(ledger): Shared<Arc<Ledger>>,
    Path(account): Path<String>,
) -> Json<Vec<Charge>> {
    Json(ledger.charges(&account))
}

async fn set_mode(Shared(ledger): Shared<Arc<Ledger>>, Json(mode): Json<Mode>) -> StatusCode {
    ledger.set_mode(mode);
    StatusCode::NO_CONTENT
}

async fn mode(Shared(ledger): Shared<Arc<Ledger>>) -> Json<Mode> {
    Json(ledger.mode())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ask(key: &str, amount: i64) -> Authorisation {
        Authorisation {
            key: key.into(),
            order_id: 7,
            amount,
            currency: "USD".into(),
        }
    }

    #[tokio::test]
    async fn money_moves_once_per_key() {
        let ledger = Ledger::new(Duration::ZERO, 0.0);
        let first = ledger.authorise("a", &ask("k", 100)).await.unwrap();
        assert_eq!(ledger.authorise("a", &ask("k", 100)).await.unwrap(), first);
        assert!(
            matches!(
                ledger.authorise("a", &ask("k", 200)).await,
                Err(PaymentError::Declined(_))
            ),
            "the same key with another amount is refused"
        );
        ledger.capture("a", "k").await.unwrap();
        ledger.capture("a", "k").await.unwrap();
        assert_eq!(ledger.charges("a").len(), 1);
        assert_eq!(ledger.lookup("a", "k").unwrap().state, State::Captured);
        assert_eq!(
            ledger.reverse("a", "other").await.unwrap(),
            Refund::NothingCharged
        );
        let refund = ledger.reverse("a", "k").await.unwrap();
        assert!(matches!(refund, Refund::Refunded(_)));
        assert_eq!(ledger.reverse("a", "k").await.unwrap(), refund);
        assert_eq!(
            ledger.authorise("a", &ask("k", 100)).await,
            Err(PaymentError::Spent),
            "a refunded purchase is over"
        );
        assert!(ledger.charges("b").is_empty(), "accounts are apart");
    }

    #[tokio::test]
    async fn a_voided_authorisation_took_nothing() {
        let ledger = Ledger::new(Duration::ZERO, 0.0);
        ledger.authorise("a", &ask("k", 100)).await.unwrap();
        assert_eq!(ledger.reverse("a", "k").await.unwrap(), Refund::Voided);
        assert_eq!(ledger.reverse("a", "k").await.unwrap(), Refund::Voided);
        assert_eq!(ledger.capture("a", "k").await, Err(PaymentError::Spent));
        let charge = ledger.lookup("a", "k").unwrap();
        assert_eq!((charge.state, charge.refund), (State::Voided, None));
    }

    #[tokio::test]
    async fn a_second_call_with_a_key_under_way_is_told_to_ask_again() {
        let ledger = Arc::new(Ledger::new(Duration::from_millis(300), 0.0));
        let first = tokio::spawn({
            let ledger = ledger.clone();
            async move { ledger.authorise("a", &ask("k", 100)).await }
        });
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert_eq!(
            ledger.authorise("a", &ask("k", 100)).await,
            Err(PaymentError::InProgress)
        );
        let reference = first.await.unwrap().unwrap();
        assert_eq!(
            ledger.authorise("a", &ask("k", 100)).await.unwrap(),
            reference
        );
    }

    #[tokio::test]
    async fn a_free_order_never_reaches_the_provider() {
        let ledger = Arc::new(Ledger::new(Duration::ZERO, 0.0));
        // A provider that fails every call: a free order must not notice.
        ledger.set_mode(Mode::Fail);
        let payments = crate::payments::Payments::new(
            Box::new(Sandbox {
                ledger: ledger.clone(),
                account: "a".into(),
            }),
            Duration::from_secs(1),
        );
        assert_eq!(payments.authorise(&ask("k", 0)).await.unwrap(), "");
        payments.capture("k", 0).await.unwrap();
        assert_eq!(
            payments.reverse("k", 0).await.unwrap(),
            Refund::NothingCharged
        );
        assert!(payments.authorise(&ask("k2", 100)).await.is_err());
        ledger.set_mode(Mode::Normal);
        assert!(ledger.charges("a").is_empty());
    }

    #[tokio::test]
    async fn the_sandbox_misbehaves_as_told() {
        let ledger = Ledger::new(Duration::ZERO, 0.0);
        ledger.set_mode(Mode::Decline);
        assert!(matches!(
            ledger.authorise("a", &ask("k1", 100)).await,
            Err(PaymentError::Declined(_))
        ));
        ledger.set_mode(Mode::Normal);
        assert!(
            matches!(
                ledger.authorise("a", &ask("k1", 100)).await,
                Err(PaymentError::Declined(_))
            ),
            "a declined purchase stays declined"
        );
        assert_eq!(ledger.charges("a")[0].state, State::Declined);
        ledger.set_mode(Mode::Fail);
        assert!(matches!(
            ledger.authorise("a", &ask("k0", 100)).await,
            Err(PaymentError::Unavailable(_))
        ));
        assert_eq!(ledger.charges("a").len(), 1, "a failed call does nothing");
        ledger.set_mode(Mode::Late);
        assert!(matches!(
            ledger.authorise("a", &ask("k2", 100)).await,
            Err(PaymentError::Unavailable(_))
        ));
        assert_eq!(ledger.charges("a").len(), 1);
        tokio::time::sleep(Duration::from_millis(1500)).await;
        assert_eq!(
            ledger.charges("a").len(),
            2,
            "the late authorisation landed"
        );
        ledger.set_mode(Mode::Normal);
        let late = ledger.lookup("a", "k2").unwrap().reference;
        assert_eq!(
            ledger.authorise("a", &ask("k2", 100)).await.unwrap(),
            late,
            "asked again with its key, the late payment is the answer"
        );
        ledger.set_mode(Mode::Hang);
        let hung = tokio::time::timeout(
            Duration::from_millis(200),
            ledger.authorise("a", &ask("k3", 1)),
        )
        .await;
        assert!(hung.is_err());
    }
}
