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

/// The annotation numbering the operator's versions of the deal document: a storefront never
/// goes back to a lower one, however late an older copy reaches it.
pub const REVISION_ANNOTATION: &str = "timedeal.dev/revision";

/// The deal as the storefront serves it: the spec with its defaults, its name, its timeline, and
/// the revision of the document it came from (0 when the document has none).
#[derive(Debug, Clone)]
pub struct Deal {
    pub name: String,
    pub spec: TimeDealSpec,
    pub timeline: Timeline,
    pub revision: i64,
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
        let revision = match deal
            .metadata
            .annotations
            .as_ref()
            .and_then(|a| a.get(REVISION_ANNOTATION))
        {
            Some(text) => text.parse().map_err(|_| {
                format!(
                    "the annotation {REVISION_ANNOTATION} is {text:?}; it must be a whole number"
                )
            })?,
            None => 0,
        };
        Ok(Self {
            name,
            spec: deal.spec,
            timeline,
            revision,
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

/// Why a new version of the deal was not taken.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refused {
    #[error("not a valid TimeDeal: {0}")]
    Invalid(String),
    #[error("the document names the deal {offered}, but this storefront serves {serving}")]
    OtherDeal { serving: String, offered: String },
    #[error("revision {offered} is older than revision {serving}, which this storefront serves")]
    Older { serving: i64, offered: i64 },
}

/// Where new versions of the deal come in: the mounted file (the kubelet copies the ConfigMap,
/// up to a minute or two late) and the operator's push to each replica (within a second). Both go
/// through [`DealSource::offer`], so whichever arrives first wins and a late copy of an older
/// revision changes nothing.
#[derive(Clone)]
pub struct DealSource {
    tx: Arc<watch::Sender<Arc<Deal>>>,
}

impl DealSource {
    pub fn new(initial: Arc<Deal>) -> (Self, watch::Receiver<Arc<Deal>>) {
        let (tx, rx) = watch::channel(initial);
        (Self { tx: Arc::new(tx) }, rx)
    }

    /// Takes `text` as the deal from now on, unless it is invalid, names another deal, or is an
    /// older revision than the one served. An equal revision with the same spec changes nothing.
    pub fn offer(&self, text: &str) -> Result<Arc<Deal>, Refused> {
        let deal = validation::parse(text)
            .map_err(|e| e.to_string())
            .and_then(Deal::new)
            .map_err(Refused::Invalid)?;
        let current = self.tx.borrow().clone();
        if deal.name != current.name {
            return Err(Refused::OtherDeal {
                serving: current.name.clone(),
                offered: deal.name,
            });
        }
        if deal.revision < current.revision {
            return Err(Refused::Older {
                serving: current.revision,
                offered: deal.revision,
            });
        }
        if deal.revision == current.revision && deal.spec == current.spec {
            return Ok(current);
        }
        let deal = Arc::new(deal);
        tracing::info!(deal = %deal.name, revision = deal.revision, "serving a new version of the deal");
        self.tx.send_replace(deal.clone());
        Ok(deal)
    }

    pub fn current(&self) -> Arc<Deal> {
        self.tx.borrow().clone()
    }
}

/// Follows the deal file: the operator updates the mounted spec when an admin edits the
/// TimeDeal (suspend, schedule moves). A change that does not validate, renames the deal or is an
/// older revision is logged and ignored: the storefront keeps serving what it has.
pub fn watch_file(path: PathBuf, source: DealSource) {
    tokio::spawn(async move {
        let mut last_text = std::fs::read_to_string(&path).unwrap_or_default();
        loop {
            tokio::time::sleep(Duration::from_secs(1)).await;
            if source.tx.is_closed() {
                return;
            }
            let Ok(text) = tokio::fs::read_to_string(&path).await else {
                continue;
            };
            if text == last_text {
                continue;
            }
            last_text = text.clone();
            match source.offer(&text) {
                Ok(_) => {}
                Err(Refused::Older { serving, offered }) => tracing::info!(
                    serving,
                    file = offered,
                    "the deal file holds an older revision than the one pushed; ignoring it"
                ),
                Err(error) => {
                    tracing::error!(%error, "the deal file changed but cannot be served; keeping the last good spec")
                }
            }
        }
    });
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

    fn document(suspend: bool, revision: Option<i64>) -> String {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../manifests/samples/timedeal.yaml");
        let mut td = load(&path).unwrap();
        td.spec.suspend = suspend;
        if let Some(revision) = revision {
            td.metadata.annotations = Some(
                [(REVISION_ANNOTATION.to_owned(), revision.to_string())]
                    .into_iter()
                    .collect(),
            );
        }
        serde_json::to_string(&td).unwrap()
    }

    #[test]
    fn a_newer_revision_is_taken_and_an_older_one_never() {
        let (source, rx) = DealSource::new(Arc::new(sample()));
        let taken = source.offer(&document(true, Some(7))).unwrap();
        assert!(taken.spec.suspend && taken.revision == 7);
        assert!(rx.borrow().spec.suspend);
        // A late copy of revision 6 (the kubelet's) changes nothing.
        assert_eq!(
            source.offer(&document(false, Some(6))).unwrap_err(),
            Refused::Older {
                serving: 7,
                offered: 6
            }
        );
        assert!(source.current().spec.suspend);
        // The same revision again is fine, and a newer one resumes.
        source.offer(&document(true, Some(7))).unwrap();
        assert!(
            !source
                .offer(&document(false, Some(8)))
                .unwrap()
                .spec
                .suspend
        );
    }

    #[test]
    fn another_deal_or_an_invalid_document_is_refused() {
        let (source, _rx) = DealSource::new(Arc::new(sample()));
        let other = document(false, Some(1)).replace("winter-headphones", "other-deal");
        assert!(matches!(
            source.offer(&other),
            Err(Refused::OtherDeal { .. })
        ));
        assert!(matches!(
            source.offer("kind: nonsense"),
            Err(Refused::Invalid(_))
        ));
        let bad_revision = document(false, None).replace(
            "\"metadata\":{",
            "\"metadata\":{\"annotations\":{\"timedeal.dev/revision\":\"soon\"},",
        );
        assert!(matches!(
            source.offer(&bad_revision),
            Err(Refused::Invalid(message)) if message.contains("whole number")
        ));
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
