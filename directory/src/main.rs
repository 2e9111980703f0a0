use std::{path::PathBuf, sync::Arc, time::Duration};

use anyhow::Context;
use clap::Parser;
use timedeal_directory::{http, source, Directory, Error};

#[derive(Parser, Debug)]
#[command(
    name = "timedeal-directory",
    version,
    about = "The deal directory: live, upcoming and recently ended deals across companies",
    long_about = "The deal directory: live, upcoming and recently ended deals across companies, \
        as a page and as JSON (/api/deals, described at /openapi.json), with a calendar entry \
        per deal. Every setting can also come from the environment variable shown."
)]
struct Cli {
    /// A folder of TimeDeal files (YAML or JSON) to list, read again when one changes. Without
    /// it, the directory lists the TimeDeals of the cluster it runs in (or that the kubeconfig
    /// names).
    #[arg(long, env = "TIMEDEAL_DIRECTORY_DEALS", value_name = "DIR")]
    deals: Option<PathBuf>,

    /// How often the cluster's TimeDeals are listed again, such as 5s.
    #[arg(long, env = "TIMEDEAL_DIRECTORY_REFRESH", default_value = "5s")]
    refresh: timedeal_api::Duration,

    /// Address to serve HTTP on.
    #[arg(
        long,
        env = "TIMEDEAL_DIRECTORY_LISTEN",
        default_value = "127.0.0.1:8090"
    )]
    listen: String,

    /// How long an ended deal stays listed, such as 1d or 6h.
    #[arg(long, env = "TIMEDEAL_DIRECTORY_ENDED_FOR", default_value = "1d")]
    ended_for: timedeal_api::Duration,

    /// Log as JSON lines instead of text.
    #[arg(long, env = "TIMEDEAL_LOG_JSON")]
    log_json: bool,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    if cli.log_json {
        tracing_subscriber::fmt()
            .json()
            .with_env_filter(filter)
            .init();
    } else {
        tracing_subscriber::fmt().with_env_filter(filter).init();
    }
    let deals = match &cli.deals {
        Some(folder) => source::follow_folder(folder.clone(), Duration::from_secs(2))?,
        None => {
            let _ = rustls::crypto::ring::default_provider().install_default();
            let client = kube::Client::try_default().await.context(
                "no cluster to list TimeDeals from: run in a pod with a ServiceAccount, set \
                 KUBECONFIG, or give --deals DIR",
            )?;
            source::follow_cluster(client, cli.refresh.std().max(Duration::from_secs(1))).await?
        }
    };
    let directory = Arc::new(Directory::new(
        deals,
        cli.ended_for.chrono(),
        Arc::new(timedeal_api::clock::SystemClock),
    ));
    let listener = tokio::net::TcpListener::bind(&cli.listen)
        .await
        .map_err(|e| Error::Listen {
            address: cli.listen.clone(),
            message: e.to_string(),
        })?;
    tracing::info!(address = %listener.local_addr().context("the bound address")?, "listening");
    axum::serve(listener, http::router(directory))
        .with_graceful_shutdown(async {
            let _ = tokio::signal::ctrl_c().await;
        })
        .await
        .context("serving")?;
    Ok(())
}
