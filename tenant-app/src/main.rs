//! `tenant-app`: the storefront of one time deal.

use std::{path::PathBuf, process::ExitCode};

use chrono::{DateTime, Utc};
use clap::Parser;
use timedeal_api::{Stage, TimeDeal, Timeline};

mod deal;

#[derive(Parser)]
#[command(
    name = "tenant-app",
    version,
    about = "The storefront of one time deal"
)]
struct Cli {
    /// TimeDeal YAML or JSON file describing the deal to serve.
    #[arg(long, env = "TIMEDEAL_DEAL", value_name = "PATH")]
    deal: PathBuf,

    /// Check the deal file, print the deal and its timeline, and exit.
    #[arg(long)]
    check: bool,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let deal = match deal::load(&cli.deal) {
        Ok(deal) => deal,
        Err(error) => {
            eprintln!("tenant-app: {error}");
            return ExitCode::from(2);
        }
    };
    print!("{}", describe(&deal, Utc::now()));
    if cli.check {
        return ExitCode::SUCCESS;
    }
    eprintln!(
        "tenant-app: serving the storefront is not available in this version; run with --check"
    );
    ExitCode::from(2)
}

/// A short, human summary of the deal and where it stands now.
fn describe(deal: &TimeDeal, now: DateTime<Utc>) -> String {
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
