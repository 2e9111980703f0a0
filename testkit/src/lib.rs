//! Real servers for tests: `redis-server`, PostgreSQL and nginx from the machine's packages, an SMTP
//! server (aiosmtpd), and a randomness beacon answering as drand's HTTP API does, started on
//! free loopback ports, each in its own temporary directory,
//! stopped when dropped.
//!
//! A missing program is an error that says how to install it; nothing here ever skips a test.
//!
//! ```no_run
//! let redis = timedeal_testkit::RedisServer::start().expect("redis-server");
//! let postgres = timedeal_testkit::PostgresServer::start().expect("PostgreSQL");
//! println!("{} {}", redis.url(), postgres.url());
//! ```
//!
//! Servers are children of the test process and are killed with it even when it dies without
//! unwinding (see [`process`]); directories left by such a death are removed by the next run.

mod beacon;
#[cfg(feature = "browser")]
pub mod browser;
#[cfg(feature = "headers")]
pub mod headers;
#[cfg(feature = "ics")]
pub mod ics;
#[cfg(feature = "kube-api")]
pub mod kube_api;
mod nginx;
mod postgres;
mod process;
mod redis;
pub mod schemas;
mod service;
mod smtp;

pub use beacon::Beacon;
pub use nginx::{CachingProxy, ProxyConfig};
pub use postgres::{as_role, Durability, PostgresServer};
pub use redis::{RedisCopy, RedisServer};
pub use service::Service;
pub use smtp::{Mail, SmtpServer};

/// Why a server could not be started.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{program} was not found ({looked}); install it with `make setup` (or `{install}`)")]
    Missing {
        program: &'static str,
        looked: String,
        install: &'static str,
    },

    #[error("{what} failed: {detail}")]
    Failed { what: String, detail: String },

    #[error("{what}: {source}")]
    Io {
        what: String,
        #[source]
        source: std::io::Error,
    },
}

impl Error {
    fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> Error {
        let what = what.into();
        move |source| Error::Io { what, source }
    }
}
