//! Payments. Every charge and refund goes through a [`PaymentProvider`]; the built-in sandbox
//! provider stands in for a real one, with a configurable delay and failure rate so tests and
//! demos can exercise slow and failing payments.

use std::time::Duration;

use rand::Rng;

/// Why a payment or refund did not go through.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct PaymentError(pub String);

#[async_trait::async_trait]
pub trait PaymentProvider: Send + Sync {
    /// A short name recorded with each payment.
    fn name(&self) -> &'static str;

    /// Charges `amount` (in the currency's smallest unit) for an order; returns the provider's
    /// reference for the payment.
    async fn charge(
        &self,
        order_id: i64,
        amount: i64,
        currency: &str,
    ) -> Result<String, PaymentError>;

    /// Refunds a payment in full; returns the provider's reference for the refund.
    async fn refund(
        &self,
        order_id: i64,
        amount: i64,
        currency: &str,
    ) -> Result<String, PaymentError>;
}

/// Accepts every payment after `delay`, except a random `failure_rate` share of charges, which
/// it declines. Refunds always succeed.
pub struct Sandbox {
    pub delay: Duration,
    pub failure_rate: f64,
}

#[async_trait::async_trait]
impl PaymentProvider for Sandbox {
    fn name(&self) -> &'static str {
        "sandbox"
    }

    async fn charge(
        &self,
        order_id: i64,
        _amount: i64,
        _currency: &str,
    ) -> Result<String, PaymentError> {
        if !self.delay.is_zero() {
            tokio::time::sleep(self.delay).await;
        }
        if self.failure_rate > 0.0 && rand::thread_rng().gen_bool(self.failure_rate.min(1.0)) {
            return Err(PaymentError("the sandbox declined the card".into()));
        }
        Ok(format!("sandbox-pay-{order_id}"))
    }

    async fn refund(
        &self,
        order_id: i64,
        _amount: i64,
        _currency: &str,
    ) -> Result<String, PaymentError> {
        if !self.delay.is_zero() {
            tokio::time::sleep(self.delay).await;
        }
        Ok(format!("sandbox-refund-{order_id}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_sandbox_accepts_or_declines_as_configured() {
        let always = Sandbox {
            delay: Duration::ZERO,
            failure_rate: 0.0,
        };
        assert_eq!(always.charge(7, 100, "USD").await.unwrap(), "sandbox-pay-7");
        let never = Sandbox {
            delay: Duration::ZERO,
            failure_rate: 1.0,
        };
        assert!(never.charge(7, 100, "USD").await.is_err());
        assert_eq!(
            never.refund(7, 100, "USD").await.unwrap(),
            "sandbox-refund-7"
        );
    }
}
