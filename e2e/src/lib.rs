//! End-to-end suites of Timedeal and its benchmark.
//!
//! - `tests/cluster.rs` checks the CRD and the sample deals against a real API server, and
//!   `tests/flow.rs` installs the chart and runs a deal from approval to deletion, whenever
//!   `KUBECONFIG` reaches a cluster (see `e2e/README.md`). They share [`cluster`].
//! - `timedeal-bench` (src/main.rs) measures the storefront against two reference servers
//!   ([`reference`]) with the load engine ([`load`]) and writes BENCHMARKS.md ([`report`]).

pub mod cluster;
pub mod load;
pub mod reference;
pub mod report;

pub use cluster::{helm, kubectl, must, repo, run};

/// What can stop a benchmark.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("cannot {what}: {source}")]
    Io {
        what: String,
        source: std::io::Error,
    },
    #[error("cannot {what}: {source}")]
    Redis {
        what: String,
        source: redis::RedisError,
    },
    #[error("cannot start {what}: {source}")]
    Start {
        what: String,
        source: timedeal_testkit::Error,
    },
    #[error("the load run failed: {0}")]
    Load(String),
}

impl Error {
    pub fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> Self {
        let what = what.into();
        move |source| Self::Io { what, source }
    }

    pub fn redis(what: impl Into<String>) -> impl FnOnce(redis::RedisError) -> Self {
        let what = what.into();
        move |source| Self::Redis { what, source }
    }

    pub fn start(what: impl Into<String>) -> impl FnOnce(timedeal_testkit::Error) -> Self {
        let what = what.into();
        move |source| Self::Start { what, source }
    }
}
