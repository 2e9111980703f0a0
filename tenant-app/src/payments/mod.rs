//! Payments. Every charge and refund goes through a [`PaymentProvider`], keyed by the order id:
//! the order id is the provider's idempotency key, so a charge or refund sent twice (a retry, two
//! cancels racing, a sweeper and a request) moves money once.
//!
//! Two providers are built in: the in-process sandbox (the default, for demos and single
//! replicas) and an HTTP client for a provider speaking the sandbox's protocol
//! (`--payment-url`), which is also how several replicas share one ledger. The sandbox can be told
//! to decline, fail, hang or answer late, so tests can put every payment fault to the order path.

pub mod http;
mod reconcile;
pub mod sandbox;

pub use reconcile::reconcile;

use std::time::Duration;

use chrono::{DateTime, Utc};

/// Why a payment or refund did not go through.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PaymentError {
    /// The provider refused: nothing was charged (or refunded).
    #[error("declined: {0}")]
    Declined(String),
    /// No answer, or an answer that says nothing: the charge may or may not have happened.
    #[error("{0}")]
    Unavailable(String),
}

/// What a refund did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refund {
    /// The payment is refunded; the reference is the same however often this is asked.
    Refunded(String),
    /// The provider holds no payment for the order: there is nothing to refund.
    NothingCharged,
}

/// A payment as the provider's ledger holds it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Charge {
    pub order_id: i64,
    pub amount: i64,
    pub currency: String,
    pub reference: String,
    /// The refund's reference, once refunded.
    pub refund: Option<String>,
    pub created_at: DateTime<Utc>,
}

/// The provider's payments, with the provider's own time when it listed them: a charge's age is
/// measured on the provider's clock, never against a replica's, which may be skewed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listing {
    pub now: DateTime<Utc>,
    pub charges: Vec<Charge>,
}

#[async_trait::async_trait]
pub trait PaymentProvider: Send + Sync {
    /// A short name recorded with each payment.
    fn name(&self) -> &'static str;

    /// Charges `amount` (in the currency's smallest unit) for an order and returns the payment's
    /// reference. The order id is the idempotency key: charging an order again charges nothing
    /// and returns the first payment's reference. `Declined` means nothing was charged;
    /// `Unavailable` means the outcome is unknown, and the caller refunds to be sure.
    async fn charge(
        &self,
        order_id: i64,
        amount: i64,
        currency: &str,
    ) -> Result<String, PaymentError>;

    /// Refunds an order's payment in full, once: a repeat returns the first refund's reference.
    /// [`Refund::NothingCharged`] when the provider holds no payment for the order.
    async fn refund(
        &self,
        order_id: i64,
        amount: i64,
        currency: &str,
    ) -> Result<Refund, PaymentError>;

    /// Every payment this storefront took, refunded or not, for reconciliation, and the
    /// provider's time.
    async fn charges(&self) -> Result<Listing, PaymentError>;
}

/// How far the provider's clock may be from the storefront's when reconciliation judges a
/// payment's age.
const CLOCK_ROOM: Duration = Duration::from_secs(6);

/// The provider with a deadline on every call: a provider that hangs costs a request at most
/// `timeout`, and answers `Unavailable` (outcome unknown) after it.
pub struct Payments {
    provider: Box<dyn PaymentProvider>,
    timeout: Duration,
}

impl Payments {
    pub fn new(provider: Box<dyn PaymentProvider>, timeout: Duration) -> Self {
        Self { provider, timeout }
    }

    pub fn name(&self) -> &'static str {
        self.provider.name()
    }

    async fn bounded<T>(
        &self,
        what: &str,
        call: impl std::future::Future<Output = Result<T, PaymentError>>,
    ) -> Result<T, PaymentError> {
        tokio::time::timeout(self.timeout, call)
            .await
            .unwrap_or_else(|_| {
                Err(PaymentError::Unavailable(format!(
                    "the payment provider did not answer the {what} within {} s",
                    self.timeout.as_secs_f64()
                )))
            })
    }

    /// Charges the order. An amount of 0 (a free coupon) is nothing to charge: the provider is
    /// not asked, and the reference is empty.
    pub async fn charge(
        &self,
        order_id: i64,
        amount: i64,
        currency: &str,
    ) -> Result<String, PaymentError> {
        if amount == 0 {
            return Ok(String::new());
        }
        self.bounded("charge", self.provider.charge(order_id, amount, currency))
            .await
    }

    /// Refunds the order. An amount of 0 took no payment: the provider is not asked.
    pub async fn refund(
        &self,
        order_id: i64,
        amount: i64,
        currency: &str,
    ) -> Result<Refund, PaymentError> {
        if amount == 0 {
            return Ok(Refund::NothingCharged);
        }
        self.bounded("refund", self.provider.refund(order_id, amount, currency))
            .await
    }

    pub async fn charges(&self) -> Result<Listing, PaymentError> {
        self.bounded("listing", self.provider.charges()).await
    }

    /// How old, on the provider's clock, a payment is once its order has either committed or
    /// never will: the charge may take the whole timeout, then the order has
    /// [`crate::commit::COMMIT_WINDOW`] to join a batch and the batch
    /// [`crate::commit::BATCH_TIMEOUT`] to commit, plus room for the provider's and PostgreSQL's
    /// clocks to disagree.
    pub fn settled_after(&self) -> Duration {
        self.timeout + crate::commit::COMMIT_WINDOW + crate::commit::BATCH_TIMEOUT + CLOCK_ROOM
    }
}
