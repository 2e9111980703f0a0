//! The deal directory: one public page, and JSON beside it, listing the live, upcoming and
//! recently ended deals of every company, with a calendar entry per deal. It is what a crowd
//! reloads before a start, so every answer is built from memory and carries an ETag and a
//! short `Cache-Control`, and the directory runs as its own replicas, apart from the storefronts.

pub mod answers;
pub mod http;
pub mod listing;
pub mod page;
pub mod source;

use std::{path::PathBuf, sync::Arc};

use chrono::Duration;
use timedeal_api::clock::Clock;
use tokio::sync::watch;

/// Why the directory cannot do what was asked.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("cannot read the deals at {path}: {message}")]
    Source { path: PathBuf, message: String },
    #[error(
        "cannot list the cluster's TimeDeals ({0}); the directory's ServiceAccount needs \
             list on timedeals.timedeal.dev in every namespace"
    )]
    Cluster(String),
    #[error("cannot serve on {address}: {message}")]
    Listen { address: String, message: String },
}

/// What every request reads.
pub struct Directory {
    pub deals: watch::Receiver<source::Deals>,
    /// How long an ended deal stays listed.
    pub ended_for: Duration,
    pub clock: Arc<dyn Clock>,
    /// Answers built in the last second, shared by the crowd asking the same thing.
    pub answers: answers::Answers,
}

impl Directory {
    pub fn new(
        deals: watch::Receiver<source::Deals>,
        ended_for: Duration,
        clock: Arc<dyn Clock>,
    ) -> Self {
        Self {
            deals,
            ended_for,
            clock,
            answers: Default::default(),
        }
    }
}

pub type Shared = Arc<Directory>;
