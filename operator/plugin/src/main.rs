//! `kubectl-timedeal`: installed on the PATH, it is `kubectl timedeal`.

use std::process::ExitCode;

use clap::{Parser, Subcommand};
use kubectl_timedeal::{screens, Plugin};

#[derive(Parser)]
#[command(
    name = "kubectl timedeal",
    bin_name = "kubectl timedeal",
    version,
    about = "Timedeal's companies and deals, as a platform admin asks about them"
)]
struct Cli {
    /// The deal's namespace; the current context's by default.
    #[arg(short, long, global = true)]
    namespace: Option<String>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Phase, conditions, figures, children and recent Events of a deal, on one screen.
    Status { deal: String },
    /// The figures a deal ended with (or has so far).
    Report { deal: String },
    /// Approve a company (its namespace is made) or a requested deal (it is built): NAME, or
    /// company/NAME or deal/NAME when both exist.
    Approve { name: String },
    /// Every company: approval, namespace, readiness, deals and quotas.
    Companies,
    /// Each UTC hour of a day (tomorrow by default): what is booked, by whom, against the
    /// platform's capacity.
    Calendar {
        /// The day, as 2026-12-01.
        day: Option<chrono::NaiveDate>,
        /// Storefront replicas at once; by default the operator's `calendar.replicas`.
        #[arg(long)]
        capacity: Option<i32>,
        /// Where the operator runs.
        #[arg(long, default_value = "timedeal-system")]
        operator_namespace: String,
    },
    /// A one-time link (for a day) with which a company sets a new password.
    ResetPassword {
        company: String,
        /// The portal's address, as companies reach it.
        #[arg(long, env = "TIMEDEAL_PORTAL_URL")]
        portal_url: String,
    },
    /// Stop admitting shoppers and taking orders; the storefront stays up and says so.
    Suspend { deal: String },
    /// Undo `suspend`.
    Resume { deal: String },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let _ = rustls::crypto::ring::default_provider().install_default();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime starts");
    match runtime.block_on(run(cli)) {
        Ok(text) => {
            // Names and messages come from tenants: none may drive the terminal.
            let text = kubectl_timedeal::screens::printable(&text);
            print!("{text}");
            if !text.ends_with('\n') {
                println!();
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            let message = kubectl_timedeal::screens::printable(&format!("{e:#}"));
            eprintln!("kubectl timedeal: {message}");
            ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> anyhow::Result<String> {
    let config = kube::Config::infer()
        .await
        .map_err(|e| anyhow::anyhow!("no Kubernetes configuration found ({e}); set KUBECONFIG"))?;
    let namespace = cli
        .namespace
        .unwrap_or_else(|| config.default_namespace.clone());
    let client = kube::Client::try_from(config)?;
    let plugin = Plugin::new(client, namespace);
    Ok(match cli.command {
        Command::Status { deal } => {
            let seen = plugin.observe(&deal).await?;
            screens::status(&seen.deal, &seen.children, &seen.events, chrono::Utc::now())
        }
        Command::Report { deal } => screens::report(&plugin.deal(&deal).await?),
        Command::Approve { name } => plugin.approve_any(&name).await?,
        Command::Companies => screens::companies(&plugin.companies().await?),
        Command::Calendar {
            day,
            capacity,
            operator_namespace,
        } => {
            let day = day
                .unwrap_or_else(|| (chrono::Utc::now() + chrono::Duration::days(1)).date_naive());
            let capacity = match capacity {
                Some(c) => Some(c),
                None => plugin.calendar_capacity(&operator_namespace).await,
            };
            screens::calendar(day, &plugin.all_deals().await?, capacity)
        }
        Command::ResetPassword {
            company,
            portal_url,
        } => {
            use rand::Rng;
            let token: String = rand::thread_rng()
                .sample_iter(&rand::distributions::Alphanumeric)
                .take(32)
                .map(char::from)
                .collect();
            plugin
                .reset_password(&company, &portal_url, &token, chrono::Utc::now())
                .await?
        }
        Command::Suspend { deal } => plugin.suspend(&deal, true).await?,
        Command::Resume { deal } => plugin.suspend(&deal, false).await?,
    })
}
