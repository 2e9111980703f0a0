//! The storefront of one time deal: the deal page, the fair queue and the order path, on Redis
//! and PostgreSQL. One process serves one deal; any number of replicas share its Redis and its
//! PostgreSQL schema.
//!
//! Where things are: the queue in [`queue`] (signed tickets, the pre-queue's draw and its
//! public record, liveness windows, the arithmetic of positions and estimates), the order path in
//! [`orders`], the group commit in [`commit`], the atomic Redis steps in `lua/`, the background
//! work in [`ticker`], Redis's figures restored from PostgreSQL after a loss in [`restore`], the
//! clock every replica shares in [`clock`], email reminders in [`reminders`], payments, the sandbox provider and reconciliation in
//! [`payments`], and the HTTP surface in [`http`].

pub mod app;
pub mod clock;
pub mod commit;
pub mod config;
pub mod db;
pub mod deal;
pub mod error;
pub mod http;
pub mod identity;
pub mod metrics;
pub mod orders;
pub mod payments;
pub mod queue;
pub mod reminders;
pub mod restore;
pub mod scripts;
pub mod ticker;
pub mod tokens;

use std::{sync::Arc, time::Duration};

use chrono::{DateTime, Utc};
use timedeal_api::{Stage, Timeline};
use tokio::sync::watch;

use crate::{
    app::App,
    clock::Clock,
    config::Config,
    deal::Deal,
    error::Error,
    identity::Identifier,
    orders::reservations::Reservations,
    payments::{
        http::HttpProvider,
        sandbox::{Ledger, Sandbox},
        Payments,
    },
    queue::Queue,
    scripts::Scripts,
    tokens::Signer,
};

/// Connects to Redis and PostgreSQL, migrates, and serves until SIGTERM or Ctrl-C.
pub async fn serve(deal: Deal, deal_path: std::path::PathBuf, config: Config) -> Result<(), Error> {
    let client = redis::Client::open(config.redis_url.as_str())
        .map_err(|e| Error::Config(format!("--redis-url is not a Redis URL: {e}")))?;
    let redis = tokio::time::timeout(
        Duration::from_secs(10),
        redis::aio::ConnectionManager::new_with_config(client, redis_config()),
    )
    .await
    .map_err(|_| {
        Error::Redis(format!(
            "no answer from {} within 10 s",
            redact(&config.redis_url)
        ))
    })?
    .map_err(|e| {
        Error::Redis(format!(
            "cannot connect to {}: {e}",
            redact(&config.redis_url)
        ))
    })?;
    let db = db::connect(&config.postgres_url, &config.postgres_schema).await?;
    let (draw_seed, draw_beacon) = db::draw_seed(&db, &config.draw_beacon).await?;
    let identifier = Identifier::new(deal.spec.shopper_auth.as_ref(), config.jwt_key.as_deref())?;
    let scripts = Arc::new(Scripts::load());
    let prefix = app::key_prefix(&deal.name);
    let name = deal.name.clone();
    let (deal_source, deal_rx) = deal::DealSource::new(Arc::new(deal));
    deal::watch_file(deal_path, deal_source.clone());
    let (figures_tx, figures_rx) = watch::channel(queue::Figures::default());
    let metrics = metrics::Metrics::new();
    let reservations =
        Reservations::new(redis.clone(), db.clone(), scripts.clone(), prefix.clone());
    let payments = Arc::new(Payments::new(
        match &config.payment_url {
            Some(url) => Box::new(HttpProvider::new(url, &config.postgres_schema)),
            None => Box::new(Sandbox {
                ledger: Arc::new(Ledger::new(
                    config.payment_delay,
                    config.payment_failure_rate,
                )),
                account: config.postgres_schema.clone(),
            }),
        },
        config.payment_timeout,
    ));
    let app = Arc::new(App {
        deal: deal_rx,
        deal_source,
        control_key: config.control_key.clone(),
        queue: Queue::new(redis.clone(), scripts.clone(), prefix.clone()),
        writer: commit::Writer::start(
            db.clone(),
            metrics.commit_batch_size.clone(),
            metrics.commit_failures.clone(),
            reservations.clone(),
        ),
        reservations,
        redis,
        db,
        scripts,
        captures: payments::Captures::start(payments.clone()),
        payments,
        clock: Clock::default(),
        signer: Signer::new(&config.signing_secret),
        identifier,
        metrics,
        figures: figures_rx,
        prefix,
        draw_commitment: queue::draw::commitment(&draw_seed, &draw_beacon),
        draw_key: Default::default(),
        beacon_patience: config.draw_beacon_patience,
        draw_seed,
        draw_beacon,
        draw: Default::default(),
        published: Default::default(),
        marks: Default::default(),
        head_samples: Default::default(),
        mailer: match &config.mail {
            Some(mail) => Some(Arc::new(reminders::Mailer::new(
                &mail.smtp_url,
                &mail.from,
            )?)),
            None => None,
        },
        public_url: config.public_url.clone(),
        reminder_limit: config.reminder_limit,
        head_cache: Default::default(),
        buyers: Default::default(),
        figures_read_ms: Default::default(),
        head_max_age: config.head_max_age,
    });
    app.clock.sync(&app.redis).await?;
    restore::restore_if_lost(&app).await?;
    figures_tx.send_replace(ticker::figures(&app).await?);
    tracing::info!(commitment = %app.draw_commitment, "the pre-queue's draw is committed");
    ticker::spawn(app.clone(), figures_tx);

    let router = http::router(app, config.rate_limit_per_second, config.rate_limit_burst);
    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .map_err(|source| Error::Listen {
            addr: config.listen,
            source,
        })?;
    let addr = listener.local_addr().map_err(|source| Error::Listen {
        addr: config.listen,
        source,
    })?;
    tracing::info!(deal = %name, schema = %config.postgres_schema, "storefront listening on http://{addr}/");
    axum::serve(
        listener,
        router.into_make_service_with_connect_info::<std::net::SocketAddr>(),
    )
    .with_graceful_shutdown(shutdown())
    .await
    .map_err(|source| Error::Listen {
        addr: config.listen,
        source,
    })
}

/// Redis answers in well under a millisecond; the generous response timeout only covers a
/// replica starved of CPU at the peak, where failing fast would turn a slow answer into an error.
fn redis_config() -> redis::aio::ConnectionManagerConfig {
    redis::aio::ConnectionManagerConfig::new()
        .set_connection_timeout(Some(Duration::from_secs(5)))
        .set_response_timeout(Some(Duration::from_secs(5)))
}

async fn shutdown() {
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending().await,
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = terminate => {}
    }
    tracing::info!("shutting down: finishing requests in flight");
}

/// The URL without its password, for messages.
fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            format!("{}://…@{}", &url[..scheme], &url[at + 1..])
        }
        _ => url.to_owned(),
    }
}

/// A short, human summary of the deal and where it stands now.
pub fn describe(deal: &timedeal_api::TimeDeal, now: DateTime<Utc>) -> String {
    let spec = &deal.spec;
    let product = &spec.product;
    let timeline = Timeline::of(spec);
    let stage = match timeline.stage_at(now) {
        Stage::Upcoming | Stage::WarmingUp if timeline.pre_queue_open_at(now) => "pre-queue open",
        Stage::Upcoming | Stage::WarmingUp => "upcoming",
        Stage::Live => "live",
        Stage::Ended => "ended (read-only)",
        Stage::Retired => "retired",
    };
    format!(
        "{name}: {product} by {company}\n  \
         {stock} in stock at {deal_price} {currency} (list {list_price}), at most {limit} per shopper\n  \
         pre-queue {pre_queue}, start {start}, end {end}\n  \
         now {stage}\n",
        name = deal.metadata.name.as_deref().unwrap_or("?"),
        product = product.name,
        company = spec.company.name,
        stock = product.stock,
        deal_price = product.deal_price,
        currency = product.currency,
        list_price = product.list_price,
        limit = product.per_user_limit,
        pre_queue = timeline.pre_queue_from,
        start = timeline.start,
        end = timeline.end,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_stay_out_of_messages() {
        assert_eq!(
            redact("redis://:s3cret@10.0.0.1:6379"),
            "redis://…@10.0.0.1:6379"
        );
        assert_eq!(redact("redis://127.0.0.1:6379"), "redis://127.0.0.1:6379");
    }

    #[test]
    fn describes_the_stage_by_the_given_clock() {
        let sample = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../manifests/samples/timedeal-minimal.yaml");
        let deal = deal::load(&sample).unwrap();
        let at = |t: &str| t.parse::<DateTime<Utc>>().unwrap();
        assert!(describe(&deal, at("2027-01-01T00:00:00Z")).contains("now upcoming"));
        assert!(describe(&deal, at("2027-03-01T09:45:00Z")).contains("now pre-queue open"));
        assert!(describe(&deal, at("2027-03-01T10:10:00Z")).contains("now live"));
        assert!(describe(&deal, at("2027-03-01T10:30:00Z")).contains("now ended (read-only)"));
        let text = describe(&deal, at("2027-03-01T10:10:00Z"));
        assert!(
            text.contains("300 in stock at 9000 KRW (list 18000), at most 1 per shopper"),
            "{text}"
        );
    }
}
