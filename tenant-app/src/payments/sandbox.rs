//! The sandbox payment provider: a ledger of charges and refunds keyed by account and order id,
//! enforcing the idempotency every real provider offers, and told how to misbehave.
//!
//! Used in process (the default provider), or served over HTTP by [`router`] so several
//! replicas share one ledger, as they would share a real provider.

use std::{
    collections::BTreeMap,
    sync::{Arc, Mutex},
    time::Duration,
};

use axum::{
    extract::{Path, State},
    http::StatusCode,
    response::{IntoResponse, Response},
    routing::{post, put},
    Json, Router,
};
use chrono::Utc;
use rand::Rng;
use serde::{Deserialize, Serialize};

use super::{Charge, Listing, PaymentError, PaymentProvider, Refund};

/// How the sandbox behaves.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum Mode {
    /// Charges and refunds go through (less the configured share of declined charges).
    #[default]
    Normal,
    /// Every charge is declined; refunds go through.
    Decline,
    /// Every call fails with an error that says nothing of the outcome, and does nothing.
    Fail,
    /// Every call hangs (for an hour) and does nothing.
    Hang,
    /// Charges fail at once, but the money is taken a second later: the outcome the caller
    /// cannot see. Refunds go through.
    Late,
}

#[derive(Debug, Clone)]
struct Entry {
    amount: i64,
    currency: String,
    reference: String,
    refund: Option<String>,
    created_at: chrono::DateTime<Utc>,
}

type Book = BTreeMap<(String, i64), Entry>;

/// The sandbox's ledger. Money moves at most once per order: a second charge of an order
/// returns the first payment, a second refund the first refund.
pub struct Ledger {
    book: Arc<Mutex<Book>>,
    mode: Mutex<Mode>,
    delay: Duration,
    decline_rate: f64,
}

impl Ledger {
    /// A ledger answering after `delay`, declining a `decline_rate` share of charges at random.
    pub fn new(delay: Duration, decline_rate: f64) -> Self {
        Self {
            book: Arc::default(),
            mode: Mutex::default(),
            delay,
            decline_rate,
        }
    }

    pub fn set_mode(&self, mode: Mode) {
        *self.mode.lock().unwrap() = mode;
    }

    fn mode(&self) -> Mode {
        *self.mode.lock().unwrap()
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

    fn record(
        book: &Mutex<Book>,
        account: &str,
        order_id: i64,
        amount: i64,
        currency: &str,
    ) -> String {
        book.lock()
            .unwrap()
            .entry((account.to_owned(), order_id))
            .or_insert_with(|| Entry {
                amount,
                currency: currency.to_owned(),
                reference: format!("sandbox-pay-{order_id}"),
                refund: None,
                created_at: Utc::now(),
            })
            .reference
            .clone()
    }

    pub async fn charge(
        &self,
        account: &str,
        order_id: i64,
        amount: i64,
        currency: &str,
    ) -> Result<String, PaymentError> {
        match self.misbehave().await? {
            Mode::Decline => {
                return Err(PaymentError::Declined(
                    "the sandbox declined the card".into(),
                ))
            }
            Mode::Late => {
                let (book, account, currency) =
                    (self.book.clone(), account.to_owned(), currency.to_owned());
                tokio::spawn(async move {
                    tokio::time::sleep(Duration::from_secs(1)).await;
                    Self::record(&book, &account, order_id, amount, &currency);
                });
                return Err(PaymentError::Unavailable(
                    "the sandbox answered nothing useful (the charge lands late)".into(),
                ));
            }
            _ => {}
        }
        let known = self
            .book
            .lock()
            .unwrap()
            .contains_key(&(account.to_owned(), order_id));
        if !known
            && self.decline_rate > 0.0
            && rand::thread_rng().gen_bool(self.decline_rate.min(1.0))
        {
            return Err(PaymentError::Declined(
                "the sandbox declined the card".into(),
            ));
        }
        Ok(Self::record(
            &self.book, account, order_id, amount, currency,
        ))
    }

    pub async fn refund(&self, account: &str, order_id: i64) -> Result<Refund, PaymentError> {
        self.misbehave().await?;
        let mut book = self.book.lock().unwrap();
        let Some(entry) = book.get_mut(&(account.to_owned(), order_id)) else {
            return Ok(Refund::NothingCharged);
        };
        let reference = entry
            .refund
            .get_or_insert_with(|| format!("sandbox-refund-{order_id}"))
            .clone();
        Ok(Refund::Refunded(reference))
    }

    /// Every charge of an account, refunded or not, in order id order.
    pub fn charges(&self, account: &str) -> Vec<Charge> {
        self.book
            .lock()
            .unwrap()
            .iter()
            .filter(|((owner, _), _)| owner == account)
            .map(|((_, order_id), entry)| Charge {
                order_id: *order_id,
                amount: entry.amount,
                currency: entry.currency.clone(),
                reference: entry.reference.clone(),
                refund: entry.refund.clone(),
                created_at: entry.created_at,
            })
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

    async fn charge(
        &self,
        order_id: i64,
        amount: i64,
        currency: &str,
    ) -> Result<String, PaymentError> {
        self.ledger
            .charge(&self.account, order_id, amount, currency)
            .await
    }

    async fn refund(
        &self,
        order_id: i64,
        _amount: i64,
        _currency: &str,
    ) -> Result<Refund, PaymentError> {
        self.ledger.refund(&self.account, order_id).await
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

/// The body of a charge or refund request over HTTP.
#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PaymentRequest {
    pub order_id: i64,
    pub amount: i64,
    pub currency: String,
}

/// The answer to a charge or refund over HTTP.
#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PaymentAnswer {
    /// The payment's or refund's reference; absent when there was nothing to refund.
    pub reference: Option<String>,
    /// Why it was declined or failed.
    pub error: Option<String>,
}

fn answer(result: Result<Option<String>, PaymentError>, ok: StatusCode) -> Response {
    let (status, body) = match result {
        Ok(reference) => (
            ok,
            PaymentAnswer {
                reference,
                error: None,
            },
        ),
        Err(PaymentError::Declined(e)) => (
            StatusCode::PAYMENT_REQUIRED,
            PaymentAnswer {
                reference: None,
                error: Some(e),
            },
        ),
        Err(PaymentError::Unavailable(e)) => (
            StatusCode::SERVICE_UNAVAILABLE,
            PaymentAnswer {
                reference: None,
                error: Some(e),
            },
        ),
    };
    (status, Json(body)).into_response()
}

/// The sandbox over HTTP, the protocol [`super::http::HttpProvider`] speaks:
///
/// - `POST /v1/accounts/{account}/charges` `{orderId, amount, currency}`: `201 {reference}`,
///   `402` declined, `503` outcome unknown;
/// - `POST /v1/accounts/{account}/refunds` (same body): `200 {reference}`, or
///   `200 {reference: null}` when nothing was charged;
/// - `GET /v1/accounts/{account}/charges`: every charge, with its refund (the `Date` header
///   gives the provider's time, by which reconciliation judges a charge's age);
/// - `PUT /v1/mode` `"normal" | "decline" | "fail" | "hang" | "late"`: how to behave.
pub fn router(ledger: Arc<Ledger>) -> Router {
    Router::new()
        .route(
            "/v1/accounts/{account}/charges",
            post(charge).get(list_charges),
        )
        .route("/v1/accounts/{account}/refunds", post(refund))
        .route("/v1/mode", put(set_mode))
        .with_state(ledger)
}

async fn charge(
    State(ledger): State<Arc<Ledger>>,
    Path(account): Path<String>,
    Json(request): Json<PaymentRequest>,
) -> Response {
    let result = ledger
        .charge(
            &account,
            request.order_id,
            request.amount,
            &request.currency,
        )
        .await;
    answer(result.map(Some), StatusCode::CREATED)
}

async fn refund(
    State(ledger): State<Arc<Ledger>>,
    Path(account): Path<String>,
    Json(request): Json<PaymentRequest>,
) -> Response {
    let result = ledger
        .refund(&account, request.order_id)
        .await
        .map(|refund| match refund {
            Refund::Refunded(reference) => Some(reference),
            Refund::NothingCharged => None,
        });
    answer(result, StatusCode::OK)
}

async fn list_charges(
    State(ledger): State<Arc<Ledger>>,
    Path(account): Path<String>,
) -> Json<Vec<Charge>> {
    Json(ledger.charges(&account))
}

async fn set_mode(State(ledger): State<Arc<Ledger>>, Json(mode): Json<Mode>) -> StatusCode {
    ledger.set_mode(mode);
    StatusCode::NO_CONTENT
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn money_moves_once_per_order() {
        let ledger = Ledger::new(Duration::ZERO, 0.0);
        let first = ledger.charge("a", 7, 100, "USD").await.unwrap();
        assert_eq!(ledger.charge("a", 7, 100, "USD").await.unwrap(), first);
        assert_eq!(ledger.charges("a").len(), 1);
        assert_eq!(ledger.refund("a", 8).await.unwrap(), Refund::NothingCharged);
        let refund = ledger.refund("a", 7).await.unwrap();
        assert_eq!(ledger.refund("a", 7).await.unwrap(), refund);
        assert_eq!(
            ledger.charges("a")[0].refund.as_deref(),
            Some("sandbox-refund-7")
        );
        assert!(ledger.charges("b").is_empty(), "accounts are apart");
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
        assert_eq!(payments.charge(1, 0, "USD").await.unwrap(), "");
        assert_eq!(
            payments.refund(1, 0, "USD").await.unwrap(),
            Refund::NothingCharged
        );
        assert!(payments.charge(2, 100, "USD").await.is_err());
        ledger.set_mode(Mode::Normal);
        assert!(ledger.charges("a").is_empty());
    }

    #[tokio::test]
    async fn the_sandbox_misbehaves_as_told() {
        let ledger = Ledger::new(Duration::ZERO, 0.0);
        ledger.set_mode(Mode::Decline);
        assert!(matches!(
            ledger.charge("a", 1, 100, "USD").await,
            Err(PaymentError::Declined(_))
        ));
        ledger.set_mode(Mode::Fail);
        assert!(matches!(
            ledger.charge("a", 1, 100, "USD").await,
            Err(PaymentError::Unavailable(_))
        ));
        assert!(ledger.charges("a").is_empty(), "a failed call does nothing");
        ledger.set_mode(Mode::Late);
        assert!(matches!(
            ledger.charge("a", 2, 100, "USD").await,
            Err(PaymentError::Unavailable(_))
        ));
        assert!(ledger.charges("a").is_empty());
        tokio::time::sleep(Duration::from_millis(1500)).await;
        assert_eq!(ledger.charges("a").len(), 1, "the late charge landed");
        ledger.set_mode(Mode::Hang);
        let hung =
            tokio::time::timeout(Duration::from_millis(200), ledger.charge("a", 3, 1, "USD")).await;
        assert!(hung.is_err());
    }
}
