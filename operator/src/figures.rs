//! Reading a storefront's live figures from its `/internal/stats`. Inside the cluster that is the
//! storefront's Service; the address is a function so the operator's tests can serve the figures
//! from loopback.

use std::{sync::Arc, time::Duration};

use timedeal_api::StorefrontStats;

use crate::resources::Deal;

/// Builds the stats URL of a deal's storefront.
pub type UrlOf = Arc<dyn Fn(&str, &str) -> String + Send + Sync>;

/// An HTTP client for storefront figures.
#[derive(Clone)]
pub struct FiguresClient {
    http: reqwest::Client,
    url_of: UrlOf,
}

/// Why figures could not be read; the message goes into the Degraded condition.
#[derive(Debug, thiserror::Error)]
#[error("the storefront did not give its figures at {url}: {reason}")]
pub struct Unavailable {
    pub url: String,
    pub reason: String,
}

impl FiguresClient {
    /// Reads from `http://<deal>-storefront.<namespace>.svc/internal/stats`.
    pub fn in_cluster(timeout: Duration) -> Self {
        Self::with_urls(
            timeout,
            Arc::new(|namespace, name| {
                format!("http://{name}-storefront.{namespace}.svc/internal/stats")
            }),
        )
    }

    pub fn with_urls(timeout: Duration, url_of: UrlOf) -> Self {
        Self {
            http: http_client(timeout),
            url_of,
        }
    }

    pub async fn read(&self, deal: &Deal<'_>) -> Result<StorefrontStats, Unavailable> {
        let url = (self.url_of)(deal.namespace, deal.name);
        let unavailable = |reason: String| Unavailable {
            url: url.clone(),
            reason,
        };
        let response = self
            .http
            .get(&url)
            .send()
            .await
            .map_err(|e| unavailable(describe(&e)))?;
        if !response.status().is_success() {
            return Err(unavailable(format!("it answered {}", response.status())));
        }
        response
            .json()
            .await
            .map_err(|e| unavailable(format!("its answer is not readable: {e}")))
    }
}

/// A client for storefronts, whose every call ends within `timeout`.
pub(crate) fn http_client(timeout: Duration) -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(timeout)
        .connect_timeout(timeout)
        .build()
        .expect("an HTTP client with default TLS settings builds")
}

fn describe(error: &reqwest::Error) -> String {
    if error.is_timeout() {
        "no answer in time".into()
    } else if error.is_connect() {
        "cannot connect".into()
    } else {
        error.to_string()
    }
}
