//! Start-up configuration, from flags or environment variables, checked before anything starts:
//! a setting that cannot work stops the app with a message naming it and saying how to fix it.

use std::{net::SocketAddr, path::PathBuf, time::Duration};

use clap::{Parser, ValueEnum};
use timedeal_api::ShopperAuthMode;

use crate::{deal::Deal, error::Error};

#[derive(Parser, Debug, Clone)]
#[command(
    name = "tenant-app",
    version,
    about = "The storefront of one time deal: deal page, fair queue and orders",
    long_about = "The storefront of one time deal: deal page, fair queue and orders.\n\n\
        Serves the deal described by a TimeDeal file, keeping the queue and stock in Redis and \
        the orders in PostgreSQL (one schema per deal). Every setting can also come from the \
        environment variable shown."
)]
pub struct Cli {
    /// TimeDeal YAML or JSON file describing the deal to serve. Changes to the file (suspend,
    /// schedule) are picked up while running.
    #[arg(long, env = "TIMEDEAL_DEAL", value_name = "PATH")]
    pub deal: PathBuf,

    /// Check the deal file, print the deal and its timeline, and exit.
    #[arg(long)]
    pub check: bool,

    /// Address to serve HTTP on.
    #[arg(long, env = "TIMEDEAL_LISTEN", default_value = "127.0.0.1:8080")]
    pub listen: SocketAddr,

    /// Redis holding the deal's queue and stock.
    #[arg(
        long,
        env = "TIMEDEAL_REDIS_URL",
        default_value = "redis://127.0.0.1:6379"
    )]
    pub redis_url: String,

    /// PostgreSQL holding the orders, e.g. postgres://user:password@host:5432/db.
    #[arg(long, env = "TIMEDEAL_POSTGRES_URL", hide_env_values = true)]
    pub postgres_url: Option<String>,

    /// Schema for this deal's tables; created when missing. Defaults to `deal_` followed by the
    /// deal's name with dashes as underscores.
    #[arg(long, env = "TIMEDEAL_POSTGRES_SCHEMA")]
    pub postgres_schema: Option<String>,

    /// Secret that signs session and admission tokens: at least 32 characters, the same on
    /// every replica of the deal. Prefer --signing-secret-file or the environment variable.
    #[arg(long, env = "TIMEDEAL_SIGNING_SECRET", hide_env_values = true)]
    pub signing_secret: Option<String>,

    /// Key the operator presents on `PUT /internal/deal` to push a new version of the deal to
    /// this replica at once (at least 32 characters). Without it the endpoint is off, and edits
    /// arrive only through the deal file.
    #[arg(long, env = "TIMEDEAL_CONTROL_KEY", hide_env_values = true)]
    pub control_key: Option<String>,

    /// File holding the signing secret (trailing newline ignored).
    #[arg(long, env = "TIMEDEAL_SIGNING_SECRET_FILE", value_name = "PATH")]
    pub signing_secret_file: Option<PathBuf>,

    /// Key for shopper JWTs when the deal sets `shopperAuth.jwt.keySecretRef`: the shared secret
    /// for HS256, or the PEM public key for RS256.
    #[arg(long, env = "TIMEDEAL_JWT_KEY_FILE", value_name = "PATH")]
    pub jwt_key_file: Option<PathBuf>,

    /// Sandbox payments: how long each payment takes (e.g. 0s, 200ms, 2s).
    #[arg(long, env = "TIMEDEAL_PAYMENT_DELAY", default_value = "0s", value_parser = parse_duration)]
    pub payment_delay: Duration,

    /// Sandbox payments: share of payments declined, from 0 to 1.
    #[arg(long, env = "TIMEDEAL_PAYMENT_FAILURE_RATE", default_value_t = 0.0)]
    pub payment_failure_rate: f64,

    /// A payment provider speaking the sandbox's HTTP protocol (e.g. http://payments:8090);
    /// without it, the built-in sandbox takes payments in process.
    #[arg(long, env = "TIMEDEAL_PAYMENT_URL", value_name = "URL")]
    pub payment_url: Option<String>,

    /// The longest a payment call may take; after it the outcome counts as unknown, and the
    /// attempt stays open for the same order sent again (charged at most once).
    #[arg(long, env = "TIMEDEAL_PAYMENT_TIMEOUT", default_value = "10s", value_parser = parse_duration)]
    pub payment_timeout: Duration,

    /// Requests per second allowed to one client (by address, or X-Forwarded-For behind a
    /// proxy) on the API; 0 turns the limit off.
    #[arg(long, env = "TIMEDEAL_RATE_LIMIT", default_value_t = 20)]
    pub rate_limit_per_second: u32,

    /// Requests one client may make in a burst above the rate.
    #[arg(long, env = "TIMEDEAL_RATE_LIMIT_BURST", default_value_t = 40)]
    pub rate_limit_burst: u32,

    /// SMTP server for email reminders: smtp://[user:password@]host[:port] (add
    /// ?tls=required for STARTTLS) or smtps://host:465. Without it the storefront offers
    /// calendar reminders only.
    #[arg(
        long,
        env = "TIMEDEAL_SMTP_URL",
        hide_env_values = true,
        value_name = "URL"
    )]
    pub smtp_url: Option<String>,

    /// The sender of reminder mails, e.g. "Timedeal <deals@example.com>"; required with
    /// --smtp-url.
    #[arg(long, env = "TIMEDEAL_MAIL_FROM", value_name = "MAILBOX")]
    pub mail_from: Option<String>,

    /// The most reminder addresses this deal keeps, confirmed or waiting for confirmation; a
    /// sign-up beyond it is refused.
    #[arg(long, env = "TIMEDEAL_REMINDER_LIMIT", default_value_t = crate::reminders::DEFAULT_LIMIT,
        value_parser = clap::value_parser!(u32).range(1..=10_000_000))]
    pub reminder_limit: u32,

    /// Seconds an ingress, a CDN or a browser may keep the public head of the line
    /// (`GET /api/queue/head`); it may serve it stale for twice as long while it asks anew.
    #[arg(long, env = "TIMEDEAL_HEAD_MAX_AGE", default_value_t = 1,
        value_parser = clap::value_parser!(u32).range(0..=60))]
    pub head_max_age: u32,

    /// The address shoppers reach this storefront at, for the links in mails. Defaults to
    /// https:// and the deal's `ingress.host`.
    #[arg(long, env = "TIMEDEAL_PUBLIC_URL", value_name = "URL")]
    pub public_url: Option<String>,

    /// The randomness beacon that keys the pre-queue's draw together with the seed (a drand
    /// chain's URL: `<url>/info` and `<url>/public/<round>`), so that nobody who can read the seed
    /// before the start can predict places; `none` for deals without outbound network, whose
    /// draw is keyed by the seed alone. Fixed, with the seed, by the deal's first replica.
    #[arg(long, env = "TIMEDEAL_DRAW_BEACON", value_name = "URL", default_value = crate::queue::beacon::DRAND_QUICKNET)]
    pub draw_beacon: String,

    /// How long after the start the line waits for the beacon's round before drawing with the
    /// seed alone (and saying so in the fairness record): a sale never waits longer on a third
    /// party.
    #[arg(long, env = "TIMEDEAL_DRAW_BEACON_PATIENCE", default_value = "60s", value_parser = parse_duration)]
    pub draw_beacon_patience: Duration,

    /// Log format.
    #[arg(long, env = "TIMEDEAL_LOG_FORMAT", value_enum, default_value = "text")]
    pub log_format: LogFormat,
}

#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum LogFormat {
    Text,
    Json,
}

/// A duration such as `500ms`, `2s` or `1m`.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    s.parse::<timedeal_api::Duration>()
        .map(|d| d.std())
        .map_err(|e| e.to_string())
}

/// The checked configuration.
#[derive(Clone)]
pub struct Config {
    pub listen: SocketAddr,
    pub redis_url: String,
    pub postgres_url: String,
    pub postgres_schema: String,
    pub signing_secret: Vec<u8>,
    pub control_key: Option<String>,
    pub jwt_key: Option<Vec<u8>>,
    pub payment_delay: Duration,
    pub payment_failure_rate: f64,
    pub payment_url: Option<String>,
    pub payment_timeout: Duration,
    pub rate_limit_per_second: u32,
    pub rate_limit_burst: u32,
    /// Where reminder mails go out, and who they come from; none: no email reminders.
    pub mail: Option<MailConfig>,
    /// The most reminder addresses this deal keeps.
    pub reminder_limit: u32,
    /// Seconds a cache may keep the public head.
    pub head_max_age: u32,
    /// The storefront's address as shoppers reach it, without a trailing slash.
    pub public_url: String,
    /// The beacon keying the draw, or `""` for none.
    pub draw_beacon: String,
    /// How long after its round is due the beacon is waited for.
    pub draw_beacon_patience: Duration,
}

/// The SMTP settings, checked.
#[derive(Clone)]
pub struct MailConfig {
    pub smtp_url: String,
    pub from: String,
}

/// The shortest signing secret accepted.
pub const MIN_SECRET_LEN: usize = 32;

impl Cli {
    /// Checks every setting against the deal, naming the first one that cannot work.
    pub fn config(&self, deal: &Deal) -> Result<Config, Error> {
        let postgres_url = self.postgres_url.clone().ok_or_else(|| {
            Error::Config(
                "--postgres-url (TIMEDEAL_POSTGRES_URL) is required: give the PostgreSQL URL \
                 that holds the orders, e.g. postgres://user:password@127.0.0.1:5432/timedeal"
                    .into(),
            )
        })?;
        if !(postgres_url.starts_with("postgres://") || postgres_url.starts_with("postgresql://")) {
            return Err(Error::Config(
                "--postgres-url must start with postgres:// or postgresql://".into(),
            ));
        }
        if !(self.redis_url.starts_with("redis://") || self.redis_url.starts_with("rediss://")) {
            return Err(Error::Config(format!(
                "--redis-url {:?} must start with redis:// or rediss://",
                self.redis_url
            )));
        }
        let postgres_schema = match &self.postgres_schema {
            Some(schema) => schema.clone(),
            None => default_schema(&deal.name),
        };
        if !valid_schema(&postgres_schema) {
            return Err(Error::Config(format!(
                "--postgres-schema {postgres_schema:?} is not a plain schema name: use lowercase \
                 letters, digits and underscores, starting with a letter or underscore, at most 63"
            )));
        }
        let signing_secret = match (&self.signing_secret, &self.signing_secret_file) {
            (Some(_), Some(_)) => return Err(Error::Config(
                "give the signing secret once: --signing-secret or --signing-secret-file, not both"
                    .into(),
            )),
            (Some(secret), None) => secret.clone().into_bytes(),
            (None, Some(path)) => std::fs::read_to_string(path)
                .map_err(|e| {
                    Error::Config(format!(
                        "--signing-secret-file {}: cannot read it: {e}",
                        path.display()
                    ))
                })?
                .trim_end_matches(['\r', '\n'])
                .as_bytes()
                .to_vec(),
            (None, None) => {
                return Err(Error::Config(
                    "a signing secret is required: set TIMEDEAL_SIGNING_SECRET or \
                     --signing-secret-file to at least 32 random characters, the same on every \
                     replica (e.g. `openssl rand -hex 32`)"
                        .into(),
                ))
            }
        };
        if signing_secret.len() < MIN_SECRET_LEN {
            return Err(Error::Config(format!(
                "the signing secret is {} characters long; use at least {MIN_SECRET_LEN} random \
                 characters (e.g. `openssl rand -hex 32`)",
                signing_secret.len()
            )));
        }
        if !(0.0..=1.0).contains(&self.payment_failure_rate) {
            return Err(Error::Config(format!(
                "--payment-failure-rate {} must be between 0 and 1",
                self.payment_failure_rate
            )));
        }
        if let Some(url) = &self.payment_url {
            if !(url.starts_with("http://") || url.starts_with("https://")) {
                return Err(Error::Config(format!(
                    "--payment-url {url} must be an http:// or https:// URL"
                )));
            }
        }
        if self.payment_timeout.is_zero() {
            return Err(Error::Config(
                "--payment-timeout must be longer than 0s, e.g. 10s".into(),
            ));
        }
        if self.rate_limit_per_second > 0 && self.rate_limit_burst == 0 {
            return Err(Error::Config(
                "--rate-limit-burst must be at least 1 while --rate-limit-per-second is on".into(),
            ));
        }
        let jwt = deal
            .spec
            .shopper_auth
            .as_ref()
            .filter(|auth| auth.mode == ShopperAuthMode::Jwt)
            .and_then(|auth| auth.jwt.as_ref());
        let jwt_key =
            match (jwt, &self.jwt_key_file) {
                (Some(jwt), None) if jwt.key_secret_ref.is_some() => return Err(Error::Config(
                    "the deal verifies shopper JWTs with a key (shopperAuth.jwt.keySecretRef): \
                     give it with --jwt-key-file (TIMEDEAL_JWT_KEY_FILE)"
                        .into(),
                )),
                (Some(jwt), Some(path)) if jwt.key_secret_ref.is_some() => {
                    Some(std::fs::read(path).map_err(|e| {
                        Error::Config(format!(
                            "--jwt-key-file {}: cannot read it: {e}",
                            path.display()
                        ))
                    })?)
                }
                _ => None,
            };
        if let Some(key) = &self.control_key {
            if key.len() < MIN_SECRET_LEN {
                return Err(Error::Config(format!(
                    "the control key is {} characters long; use at least {MIN_SECRET_LEN} random \
                     characters",
                    key.len()
                )));
            }
        }
        let mail =
            match (&self.smtp_url, &self.mail_from) {
                (None, None) => None,
                (Some(_), None) => return Err(Error::Config(
                    "--smtp-url needs --mail-from (TIMEDEAL_MAIL_FROM): the sender of reminder \
                     mails, e.g. \"Timedeal <deals@example.com>\""
                        .into(),
                )),
                (None, Some(_)) => {
                    return Err(Error::Config(
                        "--mail-from is set but --smtp-url (TIMEDEAL_SMTP_URL) is not: give the \
                     SMTP server reminders go through, or drop --mail-from"
                            .into(),
                    ))
                }
                (Some(url), Some(from)) => {
                    // Fails here, at start-up, on a URL or sender that cannot work.
                    crate::reminders::Mailer::check(url, from)?;
                    Some(MailConfig {
                        smtp_url: url.clone(),
                        from: from.clone(),
                    })
                }
            };
        let public_url = match &self.public_url {
            Some(url) if url.starts_with("http://") || url.starts_with("https://") => {
                url.trim_end_matches('/').to_owned()
            }
            Some(url) => {
                return Err(Error::Config(format!(
                    "--public-url {url:?} must be an http:// or https:// URL, such as \
                     https://deals.example.com"
                )))
            }
            None => format!("https://{}", deal.spec.ingress.host),
        };
        if self.draw_beacon_patience < Duration::from_secs(1) {
            return Err(Error::Config(
                "--draw-beacon-patience must be at least 1s: the beacon's round is due a few \
                 seconds after the start, e.g. 60s"
                    .into(),
            ));
        }
        let draw_beacon = match self.draw_beacon.trim() {
            "none" => String::new(),
            url if url.starts_with("http://") || url.starts_with("https://") => {
                url.trim_end_matches('/').to_owned()
            }
            other => {
                return Err(Error::Config(format!(
                    "--draw-beacon {other:?} must be a beacon's http:// or https:// URL (a drand \
                     chain, e.g. {}) or none",
                    crate::queue::beacon::DRAND_QUICKNET
                )))
            }
        };
        Ok(Config {
            mail,
            public_url,
            reminder_limit: self.reminder_limit,
            head_max_age: self.head_max_age,
            draw_beacon,
            draw_beacon_patience: self.draw_beacon_patience,
            listen: self.listen,
            control_key: self.control_key.clone(),
            redis_url: self.redis_url.clone(),
            postgres_url,
            postgres_schema,
            signing_secret,
            jwt_key,
            payment_delay: self.payment_delay,
            payment_failure_rate: self.payment_failure_rate,
            payment_url: self.payment_url.clone(),
            payment_timeout: self.payment_timeout,
            rate_limit_per_second: self.rate_limit_per_second,
            rate_limit_burst: self.rate_limit_burst,
        })
    }
}

/// `deal_` and the deal's name, dashes and dots as underscores.
pub fn default_schema(deal: &str) -> String {
    let name: String = deal
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '_'
            }
        })
        .collect();
    let mut schema = format!("deal_{name}");
    schema.truncate(63);
    schema
}

fn valid_schema(schema: &str) -> bool {
    let mut chars = schema.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_lowercase() || c == '_')
        && schema.len() <= 63
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
        && !schema.starts_with("pg_")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_schema_follows_the_deal_name() {
        assert_eq!(
            default_schema("winter-headphones"),
            "deal_winter_headphones"
        );
        assert!(valid_schema(&default_schema("winter-headphones")));
    }

    #[test]
    fn schema_names_are_plain() {
        assert!(valid_schema("deal_1"));
        assert!(!valid_schema("Deal"));
        assert!(!valid_schema("1deal"));
        assert!(!valid_schema("deal\"; DROP"));
        assert!(!valid_schema("pg_catalog"));
        assert!(!valid_schema(&"a".repeat(64)));
    }
}
