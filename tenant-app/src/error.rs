//! The tenant app's errors: what went wrong at start-up or in the storage behind a request.
//! Shopper-facing errors, with their stable codes, are `http::error::ApiError`.

use crate::deal::DealError;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The configuration cannot work; the message names the setting and the fix.
    #[error("{0}")]
    Config(String),

    #[error(transparent)]
    Deal(#[from] DealError),

    #[error("PostgreSQL: {0}")]
    Database(String),

    #[error("Redis: {0}")]
    Redis(String),

    /// The SMTP server refused or did not answer a reminder.
    #[error("SMTP: {0}")]
    Mail(String),

    /// The SMTP server refused one mail for good (a 5xx reply), or the mail cannot be written
    /// to its address: sending it again would fail again.
    #[error("SMTP refused the mail for good: {0}")]
    MailRefused(String),

    /// The randomness beacon could not be read, or answered nonsense.
    #[error("beacon: {0}")]
    Beacon(String),

    /// A published draw or admission log does not check out: what and where.
    #[error("the draw does not check out: {0}")]
    Unfair(String),

    #[error("cannot listen on {addr}: {source}")]
    Listen {
        addr: std::net::SocketAddr,
        #[source]
        source: std::io::Error,
    },
}

impl From<redis::RedisError> for Error {
    fn from(e: redis::RedisError) -> Self {
        Error::Redis(e.to_string())
    }
}
