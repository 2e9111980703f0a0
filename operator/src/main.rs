//! `timedeal-operator`: the Timedeal operator binary.

use std::{path::PathBuf, process::ExitCode};

use clap::{Parser, Subcommand};

mod check;

#[derive(Parser)]
#[command(
    name = "timedeal-operator",
    version,
    about = "Rents out flash-sale infrastructure, one TimeDeal at a time"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Print the TimeDeal CustomResourceDefinition as YAML (pipe it to `kubectl apply -f -`).
    Crd,
    /// Check TimeDeal files against every rule of the CRD, as `kubectl apply` would, without a
    /// cluster. Exits non-zero when any file is invalid.
    Check {
        /// TimeDeal YAML or JSON files, or directories of them.
        #[arg(required = true)]
        paths: Vec<PathBuf>,
    },
}

fn main() -> ExitCode {
    match Cli::parse().command {
        Command::Crd => {
            print!("{}", timedeal_api::crd_yaml());
            ExitCode::SUCCESS
        }
        Command::Check { paths } => check::run(&paths),
    }
}
