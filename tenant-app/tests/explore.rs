//! The fault explorer's short budget: a few seeds, each a schedule of composed faults and
//! shoppers' habits drawn from the seed, run on two replicas of the real storefront with Redis
//! as in a cluster (`appendfsync everysec`), a durable PostgreSQL and an HTTP payment provider,
//! and checked against every promise (`timedeal_e2e::chaos::explore`). `make chaos` runs many
//! more. `TIMEDEAL_EXPLORE_SEEDS=7,8` runs those seeds instead, which is how a failing seed is
//! replayed.

use std::path::Path;

use timedeal_e2e::chaos::{explore, Plan};

/// The seeds of the short budget: fixed, so that the suite is the same run after run; each
/// composes a Redis rollback with other faults (a provider that hangs, PostgreSQL
/// frozen or stopped, Redis replaced empty, a replica killed, clocks apart).
const SEEDS: [u64; 4] = [3, 103, 106, 107];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn composed_faults_break_no_promise() {
    let seeds: Vec<u64> = match std::env::var("TIMEDEAL_EXPLORE_SEEDS") {
        Ok(list) => list
            .split(',')
            .map(|s| {
                s.trim()
                    .parse()
                    .unwrap_or_else(|_| panic!("TIMEDEAL_EXPLORE_SEEDS: {s:?} is not a seed"))
            })
            .collect(),
        Err(_) => SEEDS.to_vec(),
    };
    let binary = Path::new(env!("CARGO_BIN_EXE_tenant-app"));
    let mut broken = Vec::new();
    for seed in seeds {
        match explore::explore(binary, seed, Plan::explorer()).await {
            Ok(report) => eprintln!(
                "seed {seed} held: {} placed, {} cancelled, {:.1} s",
                report.placed,
                report.cancelled,
                report.elapsed.as_secs_f64()
            ),
            Err(error) => broken.push(format!("seed {seed}: {error}")),
        }
    }
    assert!(broken.is_empty(), "{}", broken.join("\n"));
}
