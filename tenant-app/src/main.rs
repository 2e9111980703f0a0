//! `tenant-app`: the storefront of one time deal.

use std::process::ExitCode;

use chrono::Utc;
use clap::Parser;
use timedeal_tenant_app::{
    config::{Cli, LogFormat},
    deal, describe,
};

// Every request allocates headers, JSON and metric labels; glibc's malloc showed up as the
// largest user-space cost of a sold-out answer (see e2e/FINDINGS.md).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
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
