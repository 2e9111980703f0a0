//! Delivering a new version of the deal document to every storefront replica at once. The
//! kubelet copies a changed ConfigMap into the pods a minute or two late, node by node; so the
//! operator also pushes the document to each ready replica (`PUT /internal/deal`, with the
//! deal's control key) and counts the change delivered once every one of them serves its
//! revision. Pods started later read the ConfigMap, already current, when they start; pods
//! started without a control key (by a release before pushes) cannot be pushed to and are not
//! waited for: they follow their file.

use std::{sync::Arc, time::Duration};

use k8s_openapi::api::core::v1::Pod;
use timedeal_api::DealServed;

/// Builds the `/internal/deal` URL of a storefront pod.
pub type PodUrl = Arc<dyn Fn(&Pod) -> Option<String> + Send + Sync>;

/// An HTTP client for pushes.
#[derive(Clone)]
pub struct Pusher {
    http: reqwest::Client,
    url_of: PodUrl,
}

/// How long after `failures` pushes in a row that left replicas behind the next is tried:
/// 1 s, doubling to 30 s. A replica that keeps refusing costs a pod listing and a PUT per replica
/// that often, not every second.
pub fn backoff(failures: u32) -> Duration {
    let seconds = 1u64 << failures.saturating_sub(1).min(5);
    Duration::from_secs(seconds.min(30))
}

/// A delivery that has not reached every replica yet: its revision, the pushes that left
/// replicas behind in a row, and when the next may go.
#[derive(Debug, Clone)]
pub struct Behind {
    pub revision: i64,
    pub failures: u32,
    pub next: chrono::DateTime<chrono::Utc>,
    pub last: Delivery,
}

/// Where a delivery stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Delivery {
    /// Every ready replica serves the revision (or none runs).
    Done,
    /// Some ready replicas do not serve it yet.
    Pending { serving: usize, ready: usize },
}

impl Pusher {
    /// Pushes to `http://<pod IP>:8080/internal/deal`.
    pub fn in_cluster(timeout: Duration) -> Self {
        Self::with_urls(
            timeout,
            Arc::new(|pod: &Pod| {
                let ip = pod.status.as_ref()?.pod_ip.as_ref()?;
                let host = if ip.contains(':') {
                    format!("[{ip}]")
                } else {
                    ip.clone()
                };
                Some(format!(
                    "http://{host}:{}/internal/deal",
                    crate::resources::storefront::PORT
                ))
            }),
        )
    }

    pub fn with_urls(timeout: Duration, url_of: PodUrl) -> Self {
        Self {
            http: crate::figures::http_client(timeout),
            url_of,
        }
    }

    /// Pushes `document` at `revision` to every ready pod that does not serve it yet, and says
    /// how many serve it now.
    pub async fn deliver(
        &self,
        pods: &[Pod],
        document: &str,
        revision: i64,
        key: &str,
    ) -> Delivery {
        let ready: Vec<&Pod> = pods.iter().filter(|pod| is_ready(pod)).collect();
        let pushes = ready.iter().map(|pod| self.push(pod, document, key));
        let pushed = futures::future::join_all(pushes).await;
        let serving = pushed
            .iter()
            .filter(|p| match p {
                Pushed::Served(served) => served.revision >= revision,
                Pushed::FileOnly => true,
                Pushed::Failed => false,
            })
            .count();
        if serving == ready.len() {
            Delivery::Done
        } else {
            Delivery::Pending {
                serving,
                ready: ready.len(),
            }
        }
    }

    async fn push(&self, pod: &Pod, document: &str, key: &str) -> Pushed {
        let Some(url) = (self.url_of)(pod) else {
            return Pushed::Failed;
        };
        let Ok(response) = self
            .http
            .put(&url)
            .bearer_auth(key)
            .body(document.to_owned())
            .send()
            .await
        else {
            return Pushed::Failed;
        };
        let served = match response.status() {
            // Started without a control key (a release before pushes): it follows its file.
            reqwest::StatusCode::NOT_FOUND => return Pushed::FileOnly,
            // Already on a newer revision: read what it serves.
            reqwest::StatusCode::CONFLICT => {
                let Ok(current) = self.http.get(&url).bearer_auth(key).send().await else {
                    return Pushed::Failed;
                };
                current.json().await
            }
            status if status.is_success() => response.json().await,
            _ => return Pushed::Failed,
        };
        served.map_or(Pushed::Failed, Pushed::Served)
    }
}

/// What one push did.
enum Pushed {
    Served(DealServed),
    /// The replica takes edits only from its deal file: nothing more can be done for it.
    FileOnly,
    Failed,
}

/// Running, not being deleted, and reported Ready by the kubelet.
fn is_ready(pod: &Pod) -> bool {
    pod.metadata.deletion_timestamp.is_none()
        && pod.status.as_ref().is_some_and(|status| {
            status.phase.as_deref() == Some("Running")
                && status
                    .conditions
                    .iter()
                    .flatten()
                    .any(|c| c.type_ == "Ready" && c.status == "True")
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_push_left_behind_waits_longer_each_time_up_to_half_a_minute() {
        let waits: Vec<u64> = (1..=8).map(|n| backoff(n).as_secs()).collect();
        assert_eq!(waits, [1, 2, 4, 8, 16, 30, 30, 30]);
        assert_eq!(backoff(0).as_secs(), 1);
        assert_eq!(backoff(u32::MAX).as_secs(), 30);
    }

    fn pod(phase: &str, ready: &str, deleting: bool) -> Pod {
        let mut pod: Pod = serde_json::from_value(json!({
            "metadata": {"name": "p"},
            "status": {"phase": phase, "podIP": "10.0.0.7",
                "conditions": [{"type": "Ready", "status": ready}]}
        }))
        .unwrap();
        if deleting {
            pod.metadata.deletion_timestamp =
                Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
                    k8s_openapi::jiff::Timestamp::now(),
                ));
        }
        pod
    }

    #[test]
    fn only_ready_running_pods_count() {
        assert!(is_ready(&pod("Running", "True", false)));
        assert!(!is_ready(&pod("Running", "False", false)));
        assert!(!is_ready(&pod("Pending", "True", false)));
        assert!(!is_ready(&pod("Running", "True", true)));
    }

    #[test]
    fn pods_are_reached_on_their_ip() {
        let pusher = Pusher::in_cluster(Duration::from_secs(1));
        assert_eq!(
            (pusher.url_of)(&pod("Running", "True", false)).as_deref(),
            Some("http://10.0.0.7:8080/internal/deal")
        );
    }
}
