//! A payment provider over HTTP, speaking the sandbox's protocol (see
//! [`super::sandbox::router`]). Every storefront of a deal uses the deal's name as its account.

use super::{
    sandbox::{PaymentAnswer, PaymentRequest},
    Charge, Listing, PaymentError, PaymentProvider, Refund,
};

pub struct HttpProvider {
    client: reqwest::Client,
    base: String,
}

impl HttpProvider {
    /// `url` is the provider's base URL; `account` names this deal there.
    pub fn new(url: &str, account: &str) -> Self {
        Self {
            client: reqwest::Client::new(),
            base: format!("{}/v1/accounts/{account}", url.trim_end_matches('/')),
        }
    }

    async fn post(
        &self,
        what: &str,
        order_id: i64,
        amount: i64,
        currency: &str,
    ) -> Result<Option<String>, PaymentError> {
        let unavailable =
            |e: String| PaymentError::Unavailable(format!("the payment provider: {e}"));
        let response = self
            .client
            .post(format!("{}/{what}", self.base))
            .header("Idempotency-Key", order_id.to_string())
            .json(&PaymentRequest {
                order_id,
                amount,
                currency: currency.to_owned(),
            })
            .send()
            .await
            .map_err(|e| unavailable(e.to_string()))?;
        let status = response.status();
        let answer: PaymentAnswer = response
            .json()
            .await
            .map_err(|e| unavailable(format!("unreadable answer ({status}): {e}")))?;
        match status.as_u16() {
            200 | 201 => Ok(answer.reference),
            402 => Err(PaymentError::Declined(answer.error.unwrap_or_default())),
            _ => Err(unavailable(
                answer.error.unwrap_or_else(|| status.to_string()),
            )),
        }
    }
}

#[async_trait::async_trait]
impl PaymentProvider for HttpProvider {
    fn name(&self) -> &'static str {
        "http"
    }

    async fn charge(
        &self,
        order_id: i64,
        amount: i64,
        currency: &str,
    ) -> Result<String, PaymentError> {
        self.post("charges", order_id, amount, currency)
            .await?
            .ok_or_else(|| {
                PaymentError::Unavailable("the payment provider gave no reference".into())
            })
    }

    async fn refund(
        &self,
        order_id: i64,
        amount: i64,
        currency: &str,
    ) -> Result<Refund, PaymentError> {
        Ok(
            match self.post("refunds", order_id, amount, currency).await? {
                Some(reference) => Refund::Refunded(reference),
                None => Refund::NothingCharged,
            },
        )
    }

    async fn charges(&self) -> Result<Listing, PaymentError> {
        let unavailable =
            |e: String| PaymentError::Unavailable(format!("the payment provider: {e}"));
        let response = self
            .client
            .get(format!("{}/charges", self.base))
            .send()
            .await
            .and_then(|r| r.error_for_status())
            .map_err(|e| unavailable(e.to_string()))?;
        // Charges are aged by the provider's clock: without its time, nothing is judged.
        let now = response
            .headers()
            .get(reqwest::header::DATE)
            .and_then(|date| date.to_str().ok())
            .and_then(|date| chrono::DateTime::parse_from_rfc2822(date).ok())
            .map(|date| date.with_timezone(&chrono::Utc))
            .ok_or_else(|| unavailable("the listing carries no Date header".into()))?;
        let charges: Vec<Charge> = response
            .json()
            .await
            .map_err(|e| unavailable(e.to_string()))?;
        Ok(Listing { now, charges })
    }
}
