//! `timedeal-portal`: the rental portal, run as its own Deployment.

use std::{net::SocketAddr, process::ExitCode, sync::Arc, time::Duration};

use clap::Parser;
use timedeal_api::clock::SystemClock;
use timedeal_portal::{
    accounts::Accounts, capacity::Limits, client::TrustedProxies, keys::SigningKey, router, Portal,
    RateLimits,
};
use tracing::{error, info};

#[derive(Parser)]
#[command(
    name = "timedeal-portal",
    version,
    about = "The rental portal: companies sign up, request deals and follow them"
)]
struct Cli {
    /// Where the portal is served.
    #[arg(long, env = "TIMEDEAL_PORTAL_LISTEN", default_value = "0.0.0.0:8081")]
    listen: SocketAddr,
    /// The platform PostgreSQL, where accounts live (the chart passes the operator's Secret).
    #[arg(long, env = "TIMEDEAL_PORTAL_DATABASE_URL", hide_env_values = true)]
    database_url: String,
    /// The key signing session cookies, at least 32 bytes (the chart passes the Secret
    /// `timedeal-portal`, which the operator generates).
    #[arg(long, env = "TIMEDEAL_PORTAL_SESSION_KEY", hide_env_values = true)]
    session_key: String,
    /// Most storefront replicas a request may get.
    #[arg(long, env = "TIMEDEAL_PORTAL_MAX_REPLICAS", default_value_t = 20, value_parser = clap::value_parser!(i32).range(2..=1000))]
    max_replicas: i32,
    /// Highest admission rate (shoppers per second) a request may get.
    #[arg(long, env = "TIMEDEAL_PORTAL_MAX_ADMISSION_RATE", default_value_t = 1000, value_parser = clap::value_parser!(i32).range(10..=100000))]
    max_admission_rate: i32,
    /// Deal requests one client address, and one company, may submit per minute.
    #[arg(long, env = "TIMEDEAL_PORTAL_SUBMISSIONS_PER_MINUTE", default_value_t = 10, value_parser = clap::value_parser!(u32).range(1..=10000))]
    submissions_per_minute: u32,
    /// Addresses and networks (comma-separated, such as 10.0.0.0/8) of the proxies in front of
    /// the portal, whose `X-Forwarded-For` names the client the limits count; empty counts the
    /// connection's peer.
    #[arg(long, env = "TIMEDEAL_PORTAL_TRUSTED_PROXIES", default_value = "", value_parser = TrustedProxies::parse)]
    trusted_proxies: TrustedProxies,
    /// Storefront replicas the platform can run at once: the request form shows each hour as
    /// free, tight or full, and refuses a request that would overcommit. 0: no calendar.
    #[arg(long, env = "TIMEDEAL_CALENDAR_REPLICAS", default_value_t = 0, value_parser = clap::value_parser!(i32).range(0..=100000))]
    calendar_replicas: i32,
    /// Or the platform's storefront CPU (such as 64), divided by `--storefront-cpu-request`;
    /// used when `--calendar-replicas` is 0. Empty: no calendar.
    #[arg(long, env = "TIMEDEAL_CALENDAR_CPU", default_value = "")]
    calendar_cpu: String,
    /// The CPU each storefront replica requests by default (the operator's
    /// `--storefront-cpu-request`), to turn `--calendar-cpu` into replicas.
    #[arg(long, env = "TIMEDEAL_STOREFRONT_CPU_REQUEST", default_value = "250m")]
    storefront_cpu_request: String,
    /// Every approved company's deals may take `<company>.<suffix>` and the hosts under it
    /// (the operator's `--company-host-suffix`). Empty: only the hosts listed on the Company.
    #[arg(long, env = "TIMEDEAL_COMPANY_HOST_SUFFIX", default_value = "", value_parser = timedeal_api::hosts::parse_suffix)]
    company_host_suffix: String,
    /// Hosts no deal may take, comma-separated: the portal's and the directory's.
    #[arg(long, env = "TIMEDEAL_RESERVED_HOSTS", value_delimiter = ',')]
    reserved_hosts: Vec<String>,
    /// Mark cookies Secure (serve the portal over HTTPS only).
    #[arg(long, env = "TIMEDEAL_PORTAL_SECURE_COOKIES", default_value_t = false, action = clap::ArgAction::Set)]
    secure_cookies: bool,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let _ = rustls::crypto::ring::default_provider().install_default();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "info,kube=warn,sqlx=warn".into()),
        )
        .json()
        .init();
    let runtime = tokio::runtime::Runtime::new().expect("a tokio runtime starts");
    match runtime.block_on(serve(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("timedeal-portal: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn serve(cli: Cli) -> anyhow::Result<()> {
    let calendar_replicas = timedeal_api::calendar::capacity(
        cli.calendar_replicas,
        Some(&cli.calendar_cpu),
        &cli.storefront_cpu_request,
    )
    .map_err(|e| anyhow::anyhow!("{e}"))?;
    let key = SigningKey::new(cli.session_key.into_bytes())
        .map_err(|e| anyhow::anyhow!("--session-key: {e}"))?;
    let client = kube::Client::try_default().await.map_err(|e| {
        anyhow::anyhow!(
            "no Kubernetes configuration found ({e}); set KUBECONFIG, or run in a cluster"
        )
    })?;
    let accounts = Accounts::connect(&cli.database_url).await?;
    let portal = Arc::new(Portal {
        client,
        accounts,
        key,
        limits: Limits {
            max_replicas: cli.max_replicas,
            max_admission_rate: cli.max_admission_rate,
        },
        rate: RateLimits {
            submissions_per_minute: cli.submissions_per_minute,
            ..RateLimits::default()
        },
        clock: Arc::new(SystemClock),
        proxies: cli.trusted_proxies,
        secure_cookies: cli.secure_cookies,
        calendar_replicas,
        hosts: timedeal_api::hosts::HostRules::from_flags(
            cli.company_host_suffix,
            cli.reserved_hosts,
        ),
        deal_connections: std::sync::Arc::new(tokio::sync::Semaphore::new(
            timedeal_portal::DEAL_CONNECTIONS,
        )),
    });
    let sweeper = portal.clone();
    tokio::spawn(async move {
        loop {
            tokio::time::sleep(Duration::from_secs(600)).await;
            if let Err(e) = sweeper.accounts.sweep(chrono::Utc::now()).await {
                error!(error = %e, "cannot drop expired sessions");
            }
            if let Err(e) = sweeper.forget_deleted_companies().await {
                error!(error = %e, "cannot delete the accounts of deleted companies");
            }
        }
    });
    let listener = tokio::net::TcpListener::bind(cli.listen)
        .await
        .map_err(|e| anyhow::anyhow!("cannot listen on {}: {e}", cli.listen))?;
    info!(listen = %cli.listen, "serving the rental portal");
    let app = router(portal).into_make_service_with_connect_info::<SocketAddr>();
    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown_signal())
        .await?;
    Ok(())
}

/// SIGTERM (the kubelet stopping the pod) or Ctrl-C.
async fn shutdown_signal() {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .expect("a SIGTERM handler installs");
    tokio::select! {
        _ = term.recv() => {}
        _ = tokio::signal::ctrl_c() => {}
    }
}
