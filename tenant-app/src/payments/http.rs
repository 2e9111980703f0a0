//! A payment provider over HTTP, speaking the sandbox's protocol (see
//! [`super::sandbox::router`]). Every storefront of a deal uses the deal's schema as its account.

use reqwest::StatusCode;

use super::{
    sandbox::PaymentAnswer, Authorisation, Charge, Listing, PaymentError, PaymentProvider, Refund,
};

pub struct HttpProvider {
    client: reqwest::Client,
    base: String,
}

fn unavailable(e: impl std::fmt::Display) -> PaymentError {
    PaymentError::Unavailable(format!("the payment provider: {e}"))
}

impl HttpProvider {
    /// `url` is the provider's base URL; `account` names this deal there.
    pub fn new(url: &str, account: &str) -> Self {
        Self {
            client: reqwest::Client::new(),
            base: format!(
                "{}/v1/accounts/{account}/payments",
                url.trim_end_matches('/')
            ),
        }
    }

    /// Sends a call and reads its answer: a 2xx is `Ok`, the rest the error it says.
    async fn call(&self, request: reqwest::RequestBuilder) -> Result<PaymentAnswer, PaymentError> {
        let response = request.send().await.map_err(unavailable)?;
        let status = response.status();
        let answer: PaymentAnswer = response
            .json()
            .await
            .map_err(|e| unavailable(format!("unreadable answer ({status}): {e}")))?;
        match status {
            s if s.is_success() => Ok(answer),
            StatusCode::PAYMENT_REQUIRED => {
                Err(PaymentError::Declined(answer.error.unwrap_or_default()))
            }
            StatusCode::GONE => Err(PaymentError::Spent),
            StatusCode::CONFLICT => Err(PaymentError::InProgress),
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

    async fn authorise(&self, request: &Authorisation) -> Result<String, PaymentError> {
        let answer = self
            .call(
                self.client
                    .post(&self.base)
                    .header("Idempotency-Key", &request.key)
                    .json(request),
            )
            .await?;
        answer
            .reference
            .ok_or_else(|| unavailable("the authorisation gave no reference"))
    }

    async fn capture(&self, key: &str) -> Result<(), PaymentError> {
        self.call(self.client.post(format!("{}/{key}/capture", self.base)))
            .await
            .map(drop)
    }

    async fn reverse(&self, key: &str) -> Result<Refund, PaymentError> {
        let answer = self
            .call(self.client.post(format!("{}/{key}/reverse", self.base)))
            .await?;
        match (answer.outcome.as_deref(), answer.reference) {
            (Some("refunded"), Some(reference)) => Ok(Refund::Refunded(reference)),
            (Some("voided"), _) => Ok(Refund::Voided),
            (Some("none"), _) => Ok(Refund::NothingCharged),
            (outcome, _) => Err(unavailable(format!(
                "a reversal answered {outcome:?}, which says nothing"
            ))),
        }
    }

    async fn lookup(&self, key: &str) -> Result<Option<Charge>, PaymentError> {
        let response = self
            .client
            .get(format!("{}/{key}", self.base))
            .send()
            .await
            .map_err(unavailable)?;
        if response.status() == StatusCode::NOT_FOUND {
            return Ok(None);
        }
        let response = response.error_for_status().map_err(unavailable)?;
        response.json().await.map(Some).map_err(unavailable)
    }

    async fn charges(&self) -> Result<Listing, PaymentError> {
        let response = self
            .client
            .get(&self.base)
            .send()
            .await
            .and_then(|r| r.error_for_status())
            .map_err(unavailable)?;
        // Payments are aged by the provider's clock: without its time, nothing is judged.
        let now = response
            .headers()
            .get(reqwest::header::DATE)
            .and_then(|date| date.to_str().ok())
            .and_then(|date| chrono::DateTime::parse_from_rfc2822(date).ok())
            .map(|date| date.with_timezone(&chrono::Utc))
            .ok_or_else(|| unavailable("the listing carries no Date header"))?;
        let charges: Vec<Charge> = response.json().await.map_err(unavailable)?;
        Ok(Listing { now, charges })
    }
}
