//! `tenant-app`: the storefront of one time deal.

use std::process::ExitCode;

use chrono::Utc;
use clap::Parser;
use timedeal_tenant_app::{
    config::{Cli, LogFormat},
    deal, describe,
    queue::fairness::{self, Fairness},
};

// Every request allocates headers, JSON and metric labels; glibc's malloc showed up as the
// largest user-space cost of a sold-out answer (see e2e/FINDINGS.md).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    match std::env::args().nth(1).as_deref() {
        Some("verify-draw") => {
            return verify_draw(VerifyDraw::parse_from(std::env::args().skip(1)))
        }
        Some("payment-sandbox") => {
            return payment_sandbox(PaymentSandbox::parse_from(std::env::args().skip(1)))
        }
        _ => {}
    }
    let cli = Cli::parse();
    let loaded = match deal::load(&cli.deal) {
        Ok(loaded) => loaded,
        Err(error) => {
            eprintln!("tenant-app: {error}");
            return ExitCode::from(2);
        }
    };
    if cli.check {
        print!("{}", describe(&loaded, Utc::now()));
        return ExitCode::SUCCESS;
    }
    let deal = match deal::Deal::new(loaded) {
        Ok(deal) => deal,
        Err(error) => {
            eprintln!("tenant-app: the deal file {}: {error}", cli.deal.display());
            return ExitCode::from(2);
        }
    };
    let config = match cli.config(&deal) {
        Ok(config) => config,
        Err(error) => {
            eprintln!("tenant-app: {error}");
            return ExitCode::from(2);
        }
    };
    init_logs(cli.log_format);
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("tenant-app: cannot start the runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(timedeal_tenant_app::serve(deal, cli.deal.clone(), config)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            tracing::error!(%error, "the storefront stopped");
            eprintln!("tenant-app: {error}");
            ExitCode::FAILURE
        }
    }
}

/// `tenant-app payment-sandbox --listen ADDR`: the sandbox payment provider on its own, so
/// replicas, drills, the demo and anyone's load test share one provider.
#[derive(clap::Parser, Debug)]
#[command(
    name = "tenant-app payment-sandbox",
    about = "Serves the sandbox payment provider over HTTP (the protocol `--payment-url` \
        speaks): one ledger of payments per account, keyed by purchase. `PUT /v1/mode` with \
        \"normal\", \"decline\", \"fail\", \"hang\" or \"late\" makes it misbehave."
)]
struct PaymentSandbox {
    /// Where to listen, e.g. 127.0.0.1:8090.
    #[arg(long, value_name = "ADDR")]
    listen: std::net::SocketAddr,
    /// How long every call takes, e.g. 2s.
    #[arg(long, default_value = "0s", value_parser = timedeal_tenant_app::config::parse_duration)]
    delay: std::time::Duration,
    /// The share of authorisations declined at random, from 0 to 1.
    #[arg(long, default_value_t = 0.0)]
    decline_rate: f64,
}

fn payment_sandbox(args: PaymentSandbox) -> ExitCode {
    use timedeal_tenant_app::payments::sandbox::{router, Ledger};
    if !(0.0..=1.0).contains(&args.decline_rate) {
        eprintln!(
            "payment-sandbox: --decline-rate {} must be between 0 and 1",
            args.decline_rate
        );
        return ExitCode::from(2);
    }
    init_logs(LogFormat::Text);
    let served = tokio::runtime::Runtime::new()
        .map_err(|e| format!("cannot start the runtime: {e}"))
        .and_then(|runtime| {
            runtime.block_on(async {
                let listener = tokio::net::TcpListener::bind(args.listen)
                    .await
                    .map_err(|e| format!("cannot listen on {}: {e}", args.listen))?;
                let ledger = std::sync::Arc::new(Ledger::new(args.delay, args.decline_rate));
                tracing::info!(listen = %args.listen, "the payment sandbox is serving");
                axum::serve(listener, router(ledger))
                    .with_graceful_shutdown(async {
                        let _ = tokio::signal::ctrl_c().await;
                    })
                    .await
                    .map_err(|e| format!("serving stopped: {e}"))
            })
        });
    match served {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("payment-sandbox: {error}");
            ExitCode::FAILURE
        }
    }
}

/// `tenant-app verify-draw URL`: anyone's check of a deal's draw and admissions.
#[derive(clap::Parser, Debug)]
#[command(
    name = "tenant-app verify-draw",
    about = "Checks a deal's queue from what its storefront publishes: that the revealed seed \
        matches the commitment published before anyone could join, that every pre-queue place \
        follows from the seed, and that every admission in the log went to the holder of the \
        next place, in order, with the published chain head."
)]
struct VerifyDraw {
    /// The storefront's address, e.g. https://winter-headphones.deals.example.com
    url: String,
    /// Also print the place of every pre-queue join number, one `number place` per line.
    #[arg(long)]
    places: bool,
    /// Print the place the draw gave this join number (the `joinNumber` in your queue status).
    #[arg(long, value_name = "JOIN_NUMBER")]
    number: Option<u64>,
}

fn verify_draw(args: VerifyDraw) -> ExitCode {
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("verify-draw: cannot start the runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    let base = args.url.trim_end_matches('/').to_owned();
    let fetched = runtime.block_on(async {
        let client = reqwest::Client::builder()
            .timeout(std::time::Duration::from_secs(60))
            .build()
            .map_err(|e| format!("cannot build an HTTP client: {e}"))?;
        let record: Fairness = fetch_json(&client, &format!("{base}/api/fairness")).await?;
        let log = client
            .get(format!("{base}/api/fairness/log"))
            .send()
            .await
            .and_then(|r| r.error_for_status())
            .map_err(|e| format!("cannot fetch {base}/api/fairness/log: {e}"))?
            .text()
            .await
            .map_err(|e| format!("cannot read {base}/api/fairness/log: {e}"))?;
        let beacon = match &record.beacon {
            Some(beacon) => {
                let deal: serde_json::Value =
                    fetch_json(&client, &format!("{base}/api/deal")).await?;
                let starts_at = deal["startsAt"]
                    .as_str()
                    .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
                    .ok_or_else(|| format!("{base}/api/deal has no startsAt"))?;
                Some(check_beacon(beacon, starts_at.timestamp_millis()).await?)
            }
            None => None,
        };
        Ok::<_, String>((
            record,
            log.lines().map(str::to_owned).collect::<Vec<_>>(),
            beacon,
        ))
    });
    let (record, log, beacon) = match fetched {
        Ok(fetched) => fetched,
        Err(error) => {
            eprintln!("verify-draw: {error}");
            return ExitCode::FAILURE;
        }
    };
    match fairness::verify(&record, &log) {
        Ok(verified) => {
            println!(
                "seed matches the commitment {} (SHA-256)",
                record.commitment
            );
            if let Some(beacon) = beacon {
                println!("{beacon}");
            } else {
                println!("no beacon: the draw is keyed by the seed alone");
            }
            println!(
                "pre-queue of {} drawn from the seed: every place recomputed",
                verified.places.len()
            );
            println!(
                "admission log: {} entries, {} admissions, each to the holder of the next place; chain head {}{}",
                log.len(),
                verified.admitted,
                verified.log_head,
                if record.admission_log.complete { " (final)" } else { "" }
            );
            if let Some(number) = args.number {
                match verified.places.get((number as usize).wrapping_sub(1)) {
                    Some(place) => println!("join number {number}: place {place}"),
                    None => println!(
                        "join number {number}: after the pre-queue, so its own place {number}"
                    ),
                }
            }
            if args.places {
                for (i, place) in verified.places.iter().enumerate() {
                    println!("{} {place}", i + 1);
                }
            }
            ExitCode::SUCCESS
        }
        Err(error) => {
            eprintln!("verify-draw: {error}");
            ExitCode::from(1)
        }
    }
}

/// How long after the start the pre-queue may close: a tick, or a restore in progress.
const CLOSE_SLACK_MS: i64 = 15_000;

/// `GET url`, read as JSON of type `T`.
async fn fetch_json<T: serde::de::DeserializeOwned>(
    client: &reqwest::Client,
    url: &str,
) -> Result<T, String> {
    client
        .get(url)
        .send()
        .await
        .and_then(|r| r.error_for_status())
        .map_err(|e| format!("cannot fetch {url}: {e}"))?
        .json()
        .await
        .map_err(|e| format!("{url} is not what was expected: {e}"))
}

/// Checks the beacon round the record names against the beacon itself: it is the first round
/// emitted after the pre-queue closed, which was not before the deal's start, and its
/// randomness is the beacon's. What was checked.
async fn check_beacon(
    beacon: &timedeal_tenant_app::queue::beacon::BeaconRecord,
    starts_at_ms: i64,
) -> Result<String, String> {
    use timedeal_tenant_app::queue::beacon::BeaconClient;
    if beacon.after < starts_at_ms {
        return Err(format!(
            "the record says the pre-queue closed at {} ms, before the deal's start at {} ms: \
             an earlier round could have been known while shoppers still joined",
            beacon.after, starts_at_ms
        ));
    }
    if beacon.after - starts_at_ms > CLOSE_SLACK_MS {
        return Err(format!(
            "the record says the pre-queue closed {:.1} s after the deal's start: the pre-queue \
             closes within a tick of the start, and a later close could pick among rounds",
            (beacon.after - starts_at_ms) as f64 / 1_000.0
        ));
    }
    let client = BeaconClient::default();
    let chain = client.chain(&beacon.source).await;
    let round = match (beacon.round, beacon.unavailable) {
        (Some(round), _) => round,
        (None, true) => {
            return Ok(format!(
                "warning: the storefront recorded the beacon {} as unavailable, so the draw is \
                 keyed by the seed alone; {}",
                beacon.source,
                match chain {
                    Ok(chain) => format!(
                        "round {} was the one due, and the beacon answers here",
                        chain.round_after(beacon.after)
                    ),
                    Err(error) => format!("it cannot be reached from here either ({error})"),
                }
            ))
        }
        (None, false) => {
            return Ok(format!(
                "beacon {}: its round is not drawn yet",
                beacon.source
            ))
        }
    };
    let expected = chain.map_err(|e| e.to_string())?.round_after(beacon.after);
    if round != expected {
        return Err(format!(
            "the record keys the draw with round {round} of {}, but the first round after the \
             pre-queue closed is {expected}",
            beacon.source
        ));
    }
    let served = client
        .round(&beacon.source, round)
        .await
        .map_err(|e| e.to_string())?
        .ok_or_else(|| format!("{} has no round {round}", beacon.source))?;
    if Some(served.as_str()) != beacon.randomness.as_deref() {
        return Err(format!(
            "the record's randomness for round {round} is not what {} serves ({served})",
            beacon.source
        ));
    }
    Ok(format!(
        "beacon {}: round {round}, the first after the pre-queue closed, and its randomness \
         matches the beacon's",
        beacon.source
    ))
}

fn init_logs(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Json => builder.json().init(),
        LogFormat::Text => builder.init(),
    }
}
