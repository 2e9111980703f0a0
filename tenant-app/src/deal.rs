//! The deal this storefront serves, read from a TimeDeal file (the operator mounts the spec from a
//! ConfigMap; on its own, any TimeDeal YAML or JSON file works).

use std::{
    path::{Path, PathBuf},
    sync::Arc,
    time::Duration,
};

use chrono::{DateTime, Utc};
use serde::Serialize;
use timedeal_api::{validation, Stage, TimeDeal, TimeDealSpec, Timeline};
use tokio::sync::watch;

/// Why the deal file cannot be served.
#[derive(Debug, thiserror::Error)]
pub enum DealError {
    #[error("cannot read the deal file {path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    #[error("the deal file {path} is not a valid TimeDeal; fix these fields:\n{source}")]
    Invalid {
        path: PathBuf,
        #[source]
        source: validation::Error,
    },
}

/// Reads and checks the deal, with the CRD's defaults filled in.
pub fn load(path: &Path) -> Result<TimeDeal, DealError> {
    let text = std::fs::read_to_string(path).map_err(|source| DealError::Read {
        path: path.to_owned(),
        source,
    })?;
    validation::parse(&text).map_err(|source| DealError::Invalid {
        path: path.to_owned(),
        source,
    })
}

/// The deal as the storefront serves it: the spec with its defaults, its name, and its timeline.
#[derive(Debug, Clone)]
pub struct Deal {
    pub name: String,
    pub spec: TimeDealSpec,
    pub timeline: Timeline,
}

impl Deal {
    pub fn new(deal: TimeDeal) -> Result<Self, String> {
        let name = deal
            .metadata
            .name
            .clone()
            .filter(|name| !name.is_empty())
            .ok_or_else(|| "metadata.name is missing; give the deal a name".to_owned())?;
        let timeline = Timeline::of(&deal.spec);
        Ok(Self {
            name,
            spec: deal.spec,
            timeline,
        })
    }

    /// Where the deal stands at `now`, given whether its stock is gone.
    pub fn state_at(&self, now: DateTime<Utc>, sold_out: bool) -> DealState {
        state_at(&self.timeline, &self.spec, now, sold_out)
    }

    /// Whether shoppers may join the queue now (the pre-queue before the start, the line after).
    pub fn queue_open_at(&self, now: DateTime<Utc>) -> bool {
        match self.state_at(now, false) {
            DealState::Upcoming => self.timeline.pre_queue_open_at(now),
            DealState::Live => true,
            _ => false,
        }
    }

    /// The most one shopper may own.
    pub fn per_user_limit(&self) -> u32 {
        self.spec.product.per_user_limit.max(1) as u32
    }
}

/// What a shopper can do with the deal right now.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum DealState {
    /// Before the start: a countdown, and the pre-queue once it opens.
    Upcoming,
    /// Selling: the queue admits shoppers and orders are taken.
    Live,
    /// Every unit is sold; the queue is closed. Orders stay viewable and cancellable.
    SoldOut,
    /// After the end: read-only, orders stay viewable.
    Ended,
    /// Paused by the platform (or not approved yet): no admissions and no new orders.
    Suspended,
}

/// The deal's state from the clock, the spec and the stock. The end wins over everything (the
/// sale is over), a suspension over the schedule, and a sellout only matters while live.
pub fn state_at(
    timeline: &Timeline,
    spec: &TimeDealSpec,
    now: DateTime<Utc>,
    sold_out: bool,
) -> DealState {
    match timeline.stage_at(now) {
        Stage::Ended | Stage::Retired => DealState::Ended,
        _ if spec.suspend || !spec.approved => DealState::Suspended,
        Stage::Upcoming | Stage::WarmingUp => DealState::Upcoming,
        Stage::Live if sold_out => DealState::SoldOut,
        Stage::Live => DealState::Live,
    }
}

/// Follows the deal file: the operator updates the mounted spec when an admin edits the
/// TimeDeal (suspend, schedule moves). A change that does not validate, or renames the deal, is
/// logged and ignored: the storefront keeps serving the last good spec.
pub fn watch_file(path: PathBuf, initial: Arc<Deal>) -> watch::Receiver<Arc<Deal>> {
    let (tx, rx) = watch::channel(initial);
    tokio::spawn(async move {
        let mut last_text = std::fs::read_to_string(&path).unwrap_or_default();
        loop {
            tokio::time::sleep(Duration::from_secs(1)).await;
            if tx.is_closed() {
                return;
            }
            let Ok(text) = tokio::fs::read_to_string(&path).await else {
                continue;
            };
            if text == last_text {
                continue;
            }
            last_text = text.clone();
            let current = tx.borrow().name.clone();
            match validation::parse(&text)
                .map_err(|e| e.to_string())
                .and_then(Deal::new)
            {
                Ok(deal) if deal.name == current => {
                    tracing::info!(deal = %deal.name, "the deal file changed; serving the new spec");
                    tx.send_replace(Arc::new(deal));
                }
                Ok(deal) => tracing::error!(
                    serving = %current,
                    file = %deal.name,
                    "the deal file now names another deal; ignoring it"
                ),
                Err(error) => {
                    tracing::error!(%error, "the deal file changed but is invalid; keeping the last good spec")
                }
            }
        }
    });
    rx
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Deal {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../manifests/samples/timedeal.yaml");
        Deal::new(load(&path).unwrap()).unwrap()
    }

    fn at(deal: &Deal, offset_secs: i64) -> DateTime<Utc> {
        deal.timeline.start + chrono::Duration::seconds(offset_secs)
    }

    #[test]
    fn the_state_follows_the_clock() {
        let deal = sample();
        assert_eq!(deal.state_at(at(&deal, -1), false), DealState::Upcoming);
        assert_eq!(deal.state_at(at(&deal, 0), false), DealState::Live);
        assert_eq!(deal.state_at(at(&deal, 0), true), DealState::SoldOut);
        assert_eq!(deal.state_at(at(&deal, 3600), false), DealState::Ended);
        assert_eq!(deal.state_at(at(&deal, 3600), true), DealState::Ended);
    }

    #[test]
    fn a_suspended_or_unapproved_deal_takes_no_one_until_it_ends() {
        let mut deal = sample();
        deal.spec.suspend = true;
        assert_eq!(deal.state_at(at(&deal, 10), false), DealState::Suspended);
        assert_eq!(deal.state_at(at(&deal, -10), false), DealState::Suspended);
        assert_eq!(deal.state_at(at(&deal, 7200), false), DealState::Ended);
        deal.spec.suspend = false;
        deal.spec.approved = false;
        assert_eq!(deal.state_at(at(&deal, 10), false), DealState::Suspended);
    }

    #[test]
    fn the_queue_opens_with_the_pre_queue_and_closes_at_the_end() {
        let deal = sample();
        // The sample opens its pre-queue 30 minutes before the start.
        assert!(!deal.queue_open_at(at(&deal, -31 * 60)));
        assert!(deal.queue_open_at(at(&deal, -29 * 60)));
        assert!(deal.queue_open_at(at(&deal, 60)));
        assert!(!deal.queue_open_at(at(&deal, 3600)));
    }

    #[test]
    fn a_missing_file_names_the_path() {
        let error = load(Path::new("/nonexistent/deal.yaml")).unwrap_err();
        assert!(error
            .to_string()
            .starts_with("cannot read the deal file /nonexistent/deal.yaml"));
    }

    #[test]
    fn an_invalid_deal_names_the_file_and_each_field() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("deal.yaml");
        let sample = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../manifests/samples/invalid/deal-price-above-list-price.yaml");
        std::fs::copy(sample, &path).unwrap();
        let message = load(&path).unwrap_err().to_string();
        assert!(message.contains("is not a valid TimeDeal"), "{message}");
        assert!(
            message.contains("spec.product.dealPrice: product.dealPrice must not be higher than product.listPrice"),
            "{message}"
        );
    }

    #[test]
    fn the_sample_deal_loads_with_defaults() {
        let sample = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../manifests/samples/timedeal-minimal.yaml");
        let deal = load(&sample).unwrap();
        assert_eq!(deal.spec.product.per_user_limit, 1);
        assert_eq!(deal.spec.queue.admission_rate, 50);
    }
}
