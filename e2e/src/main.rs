//! `timedeal-bench`: measures the storefront's hot paths against two reference servers in one
//! invocation, on this machine, and writes BENCHMARKS.md.
//!
//! `timedeal-bench run` starts its own Redis and the reference servers, then measures, round
//! after round so that drift on a shared machine hits every server alike. `timedeal-bench serve`
//! is how it starts a reference server as its own process.

use std::{ffi::OsString, net::SocketAddr, sync::Arc, time::Duration};

use anyhow::Context;
use clap::{Parser, Subcommand};
use timedeal_e2e::{
    load::{self, Load},
    reference::{self, Kind, STOCK_KEY},
    report,
};
use timedeal_testkit::{RedisServer, Service};

#[derive(Parser)]
#[command(
    name = "timedeal-bench",
    about = "Measures Timedeal's storefront against reference servers"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Runs every measurement and prints the figures.
    Run {
        /// Rounds; each measurement is repeated once per round.
        #[arg(long, default_value_t = 3)]
        rounds: usize,
        /// Seconds each measurement runs.
        #[arg(long, default_value_t = 10)]
        seconds: u64,
        /// Keep-alive connections.
        #[arg(long, default_value_t = 64)]
        connections: usize,
    },
    /// Serves a reference server (started by `run`).
    Serve {
        #[arg(value_enum)]
        kind: Kind,
        #[arg(long)]
        listen: SocketAddr,
        #[arg(long)]
        redis_url: String,
    },
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let runtime = tokio::runtime::Runtime::new()?;
    match cli.command {
        Command::Serve {
            kind,
            listen,
            redis_url,
        } => {
            runtime.block_on(reference::serve(kind, listen, &redis_url))?;
        }
        Command::Run {
            rounds,
            seconds,
            connections,
        } => {
            anyhow::ensure!(rounds >= 1, "--rounds must be at least 1");
            anyhow::ensure!(seconds >= 1, "--seconds must be at least 1");
            anyhow::ensure!(connections >= 1, "--connections must be at least 1");
            let load = Load {
                connections,
                duration: Duration::from_secs(seconds),
            };
            runtime.block_on(run(rounds, load))?;
        }
    }
    Ok(())
}

/// A reference server as its own process.
fn start_reference(kind: &str, redis: &RedisServer) -> anyhow::Result<Service> {
    let me = std::env::current_exe()?;
    let args: Vec<OsString> = ["serve", kind, "--redis-url", &redis.url()]
        .iter()
        .map(OsString::from)
        .collect();
    Service::start(&me, &args, &[]).with_context(|| format!("starting the {kind} reference server"))
}

fn address(service: &Service) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], service.port()))
}

async fn run(rounds: usize, load: Load) -> anyhow::Result<()> {
    let redis = RedisServer::start().context("starting Redis")?;
    let bare = start_reference("bare", &redis)?;
    let lock = start_reference("lock", &redis)?;
    let mut store = redis::Client::open(redis.url())?
        .get_multiplexed_async_connection()
        .await?;

    let mut figures: Vec<(&str, Vec<f64>)> = vec![
        ("bare /hello", vec![]),
        ("bare /buy", vec![]),
        ("lock /buy", vec![]),
    ];
    for round in 1..=rounds {
        eprintln!("round {round} of {rounds}");
        let target = address(&bare);
        let outcome = load::run(
            target,
            load,
            "bare /hello",
            Arc::new(move |_, _| load::empty(hyper::Method::GET, target, "/hello")),
        )
        .await?;
        figures[0].1.push(outcome.per_second());

        let _: () = redis::cmd("SET")
            .arg(STOCK_KEY)
            .arg(i64::MAX / 2)
            .query_async(&mut store)
            .await?;
        let outcome = load::run(
            target,
            load,
            "bare /buy",
            Arc::new(move |_, _| load::empty(hyper::Method::POST, target, "/buy")),
        )
        .await?;
        figures[1].1.push(outcome.per_second_with(200));

        let _: () = redis::cmd("SET")
            .arg(STOCK_KEY)
            .arg(i64::MAX / 2)
            .query_async(&mut store)
            .await?;
        let target_lock = address(&lock);
        let outcome = load::run(
            target_lock,
            load,
            "lock /buy",
            Arc::new(move |_, _| load::empty(hyper::Method::POST, target_lock, "/buy")),
        )
        .await?;
        figures[2].1.push(outcome.per_second_with(200));
    }
    for (name, values) in &figures {
        let summary = report::summarise(values).expect("at least one round");
        println!("{name:<12} {} answers/s", report::rate(&summary));
    }
    Ok(())
}
