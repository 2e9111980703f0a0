//! End-to-end suites of Timedeal and its benchmark.
//!
//! - `tests/cluster.rs` checks the CRD and the sample deals against a real API server, and
//!   `tests/flow.rs` installs the chart and runs a deal from approval to deletion, whenever
//!   `KUBECONFIG` reaches a cluster (see `e2e/README.md`). They share [`cluster`].
//! - `timedeal-bench` (src/main.rs) measures the storefront ([`storefront`]) in five
//!   [`scenarios`] against two reference servers ([`reference`]) with the load engine
//!   ([`load`]), checks what it counted against the stores and the app's metrics ([`verify`]),
//!   and writes BENCHMARKS.md ([`report`], [`machine`]); `timedeal-bench chaos` runs the fault
//!   drills ([`chaos`]) that the storefront's test suite runs small. It measures the deal
//!   directory ([`directory`]) too.

pub mod chaos;
pub mod cluster;
pub mod directory;
pub mod edge;
pub mod load;
pub mod machine;
pub mod reference;
pub mod report;
pub mod returns;
pub mod scenarios;
pub mod storefront;
pub mod storm;
pub mod verify;
pub mod waiting;

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
    #[error("cannot {what}: {source}")]
    Http {
        what: String,
        source: reqwest::Error,
    },
    #[error("cannot {what}: {source}")]
    Postgres { what: String, source: sqlx::Error },
    #[error("the storefront answered what no shopper should see: {0}")]
    Unexpected(String),
    /// A check of the stores or the metrics against what the load generator counted failed.
    #[error("broken invariant: {0}")]
    Broken(String),
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

    pub fn http(what: impl Into<String>) -> impl FnOnce(reqwest::Error) -> Self {
        let what = what.into();
        move |source| Self::Http { what, source }
    }

    pub fn postgres(what: impl Into<String>) -> impl FnOnce(sqlx::Error) -> Self {
        let what = what.into();
        move |source| Self::Postgres { what, source }
    }

    pub fn start(what: impl Into<String>) -> impl FnOnce(timedeal_testkit::Error) -> Self {
        let what = what.into();
        move |source| Self::Start { what, source }
    }
}
