//! Payments. Every purchase has one key at the payment provider, derived from the purchase (the
//! deal, the shopper and the order's idempotency key: [`purchase_key`]), never from an attempt:
//! a retry after an answer that never came, a second replica, the sweeper and reconciliation all
//! ask about the same payment, so a purchase is charged once however often it is tried.
//!
//! Money moves in two steps: the order authorises the amount before it is committed, captures it
//! once PostgreSQL has the order, and voids it when the order will never be (a failed order
//! costs no refund). An authorisation whose outcome is unknown is asked about again with the same
//! key, never given up blindly; one nobody settles is voided by reconciliation after a fence in
//! PostgreSQL that a late commit loses to.
//!
//! Two providers are built in: the in-process sandbox (the default, for demos and single
//! replicas) and an HTTP client for a provider speaking the sandbox's protocol
//! (`--payment-url`; `tenant-app payment-sandbox` serves one), which is also how several
//! replicas share one ledger. The sandbox can be told to decline, fail, hang or answer late, so
//! tests can put every payment fault to the order path.

pub mod http;
mod reconcile;
pub mod sandbox;

pub use reconcile::reconcile;

use std::{sync::Arc, time::Duration};

use chrono::{DateTime, Utc};
use sha2::{Digest, Sha256};
use tokio::sync::{mpsc, Semaphore};

/// The provider's key of a purchase: the same for every attempt of one order (same shopper,
/// same idempotency key), and saying nothing about who the shopper is.
pub fn purchase_key(deal: &str, shopper: &str, idempotency_key: &str) -> String {
    let mut hash = Sha256::new();
    for part in [deal, shopper, idempotency_key] {
        hash.update((part.len() as u64).to_be_bytes());
        hash.update(part.as_bytes());
    }
    hash.finalize()[..20]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Why a payment call did not go through.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PaymentError {
    /// The provider refused: nothing was authorised (or moved).
    #[error("declined: {0}")]
    Declined(String),
    /// The purchase's payment was voided or refunded before: this purchase is over, and an
    /// order sent again needs a new idempotency key.
    #[error("the payment of this purchase was given up earlier")]
    Spent,
    /// A call with the same key is still under way: ask again in a moment.
    #[error("a call with this purchase's key is still under way")]
    InProgress,
    /// No answer, or an answer that says nothing: the call may or may not have happened; ask
    /// again with the same key.
    #[error("{0}")]
    Unavailable(String),
}

/// What reversing a payment did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refund {
    /// A captured payment was refunded; the reference is the same however often this is asked.
    Refunded(String),
    /// An authorisation was voided: no money had moved.
    Voided,
    /// The provider holds no payment under the key: there is nothing to reverse.
    NothingCharged,
}

/// Where a payment stands at the provider.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum State {
    /// Held on the customer's card, not taken.
    Authorised,
    /// Taken.
    Captured,
    /// Released without being taken.
    Voided,
    /// Taken, then given back.
    Refunded,
    /// Refused by the card's issuer: the purchase's key answers so from then on.
    Declined,
}

/// A payment as the provider's ledger holds it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Charge {
    /// The purchase's key ([`purchase_key`]).
    pub key: String,
    /// The order id of the attempt that authorised it (later attempts of the purchase may
    /// commit under another id, with this payment's reference).
    pub order_id: i64,
    pub amount: i64,
    pub currency: String,
    pub reference: String,
    pub state: State,
    /// The refund's reference, once refunded.
    pub refund: Option<String>,
    pub created_at: DateTime<Utc>,
}

impl Charge {
    /// Whether the customer's money is with the deal now.
    pub fn taken(&self) -> bool {
        self.state == State::Captured
    }
}

/// The provider's payments, with the provider's own time when it listed them: a charge's age is
/// measured on the provider's clock, never against a replica's, which may be skewed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listing {
    pub now: DateTime<Utc>,
    pub charges: Vec<Charge>,
}

/// What an authorisation asks for.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Authorisation {
    pub key: String,
    pub order_id: i64,
    pub amount: i64,
    pub currency: String,
}

#[async_trait::async_trait]
pub trait PaymentProvider: Send + Sync {
    /// A short name recorded with each payment.
    fn name(&self) -> &'static str;

    /// Holds the amount for a purchase and returns the payment's reference. Idempotent per key:
    /// asking again returns the same payment; the same key with another amount or currency is
    /// declined; while a call with the key is still running the answer is `InProgress`.
    /// [`PaymentError::Spent`] once the key's payment was voided or refunded.
    async fn authorise(&self, request: &Authorisation) -> Result<String, PaymentError>;

    /// Takes an authorised payment. Taking it again changes nothing.
    async fn capture(&self, key: &str) -> Result<(), PaymentError>;

    /// Voids an authorisation, or refunds a captured payment, once: a repeat answers the same.
    async fn reverse(&self, key: &str) -> Result<Refund, PaymentError>;

    /// The payment under a key, if there is one.
    async fn lookup(&self, key: &str) -> Result<Option<Charge>, PaymentError>;

    /// Every payment this storefront took, for reconciliation, and the provider's time.
    async fn charges(&self) -> Result<Listing, PaymentError>;
}

/// Captures of committed orders, made off the order path: the shopper hears "confirmed" once
/// PostgreSQL has the order, and the money is taken a moment later. One that does not get
/// through is captured by reconciliation, which finds a confirmed order's payment only held.
#[derive(Clone)]
pub struct Captures {
    tx: mpsc::UnboundedSender<(i64, String, i64)>,
}

/// Most captures under way at once.
const CAPTURES_AT_ONCE: usize = 64;

impl Captures {
    pub fn start(payments: Arc<Payments>) -> Self {
        let (tx, mut rx) = mpsc::unbounded_channel::<(i64, String, i64)>();
        let slots = Arc::new(Semaphore::new(CAPTURES_AT_ONCE));
        tokio::spawn(async move {
            while let Some((id, key, amount)) = rx.recv().await {
                let Ok(slot) = slots.clone().acquire_owned().await else {
                    return;
                };
                let payments = payments.clone();
                tokio::spawn(async move {
                    if let Err(error) = payments.capture(&key, amount).await {
                        tracing::warn!(order = id, %error, "capture failed; reconciliation captures it");
                    }
                    drop(slot);
                });
            }
        });
        Self { tx }
    }

    /// Takes the payment of committed order `id` soon.
    pub fn capture(&self, id: i64, key: String, amount: i64) {
        if amount > 0 {
            let _ = self.tx.send((id, key, amount));
        }
    }
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

    /// Runs a call within the timeout, asking again while another call with the same key is
    /// under way (two cancels of one order, a retry while the first attempt still waits).
    async fn bounded<T, F, Fut>(&self, what: &str, call: F) -> Result<T, PaymentError>
    where
        F: Fn() -> Fut,
        Fut: std::future::Future<Output = Result<T, PaymentError>>,
    {
        let asking = async {
            loop {
                match call().await {
                    Err(PaymentError::InProgress) => {
                        tokio::time::sleep(Duration::from_millis(25)).await
                    }
                    done => return done,
                }
            }
        };
        tokio::time::timeout(self.timeout, asking)
            .await
            .unwrap_or_else(|_| {
                Err(PaymentError::Unavailable(format!(
                    "the payment provider did not answer the {what} within {} s",
                    self.timeout.as_secs_f64()
                )))
            })
    }

    /// Authorises a purchase. An amount of 0 (a free coupon) is nothing to pay: the provider
    /// is not asked, and the reference is empty.
    pub async fn authorise(&self, request: &Authorisation) -> Result<String, PaymentError> {
        if request.amount == 0 {
            return Ok(String::new());
        }
        self.bounded("authorisation", || self.provider.authorise(request))
            .await
    }

    /// Takes an authorised payment (nothing for a free order).
    pub async fn capture(&self, key: &str, amount: i64) -> Result<(), PaymentError> {
        if amount == 0 {
            return Ok(());
        }
        self.bounded("capture", || self.provider.capture(key)).await
    }

    /// Voids or refunds a purchase's payment. A free order took none: the provider is not asked.
    pub async fn reverse(&self, key: &str, amount: i64) -> Result<Refund, PaymentError> {
        if amount == 0 {
            return Ok(Refund::NothingCharged);
        }
        self.bounded("reversal", || self.provider.reverse(key))
            .await
    }

    pub async fn lookup(&self, key: &str) -> Result<Option<Charge>, PaymentError> {
        self.bounded("lookup", || self.provider.lookup(key)).await
    }

    pub async fn charges(&self) -> Result<Listing, PaymentError> {
        self.bounded("listing", || self.provider.charges()).await
    }

    /// How old, on the provider's clock, a payment is once its order has either committed or
    /// never will: the authorisation may take the whole timeout, then the order has
    /// [`crate::commit::COMMIT_WINDOW`] to join a batch and the batch
    /// [`crate::commit::BATCH_TIMEOUT`] to commit, plus room for the provider's and PostgreSQL's
    /// clocks to disagree.
    pub fn settled_after(&self) -> Duration {
        self.timeout + crate::commit::COMMIT_WINDOW + crate::commit::BATCH_TIMEOUT + CLOCK_ROOM
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_purchase_has_one_key_whatever_the_attempt() {
        let key = purchase_key("deal", "anon-1", "k-1");
        assert_eq!(key, purchase_key("deal", "anon-1", "k-1"));
        assert_eq!(key.len(), 40);
        assert_ne!(key, purchase_key("deal", "anon-1", "k-2"));
        assert_ne!(key, purchase_key("deal", "anon-2", "k-1"));
        assert_ne!(key, purchase_key("other", "anon-1", "k-1"));
        // Lengths are part of the hash: moving a character between parts changes the key.
        assert_ne!(
            purchase_key("deal", "anon-1k", "-1"),
            purchase_key("deal", "anon-1", "k-1")
        );
        assert!(!key.contains("anon"), "the key names nobody");
    }
}
