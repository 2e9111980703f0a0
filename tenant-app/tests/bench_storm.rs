//! The benchmark's storm, small enough for every test run: the load generator's own shoppers
//! (join, wait, order until refused, some cancel, leave) against this binary, then its checks of
//! Redis and PostgreSQL against what the shoppers were told. Its speed is not asserted here; see
//! BENCHMARKS.md.

use std::path::Path;

use timedeal_e2e::{
    storefront::{Storefront, Stores},
    storm::{self, Plan},
    verify::RedisProbe,
};
use timedeal_testkit::{PostgresServer, RedisServer};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_short_storm_sells_the_stock_once_and_loses_no_order() {
    let redis = RedisServer::start().expect("start Redis");
    let postgres = PostgresServer::start().expect("start PostgreSQL");
    let stores = Stores {
        redis_url: redis.url(),
        postgres_url: postgres.url(),
    };
    let plan = Plan {
        shoppers: 400,
        stock: 100,
        limit: 2,
        cancel_every: 10,
        in_flight: 128,
    };
    let front = Storefront::start(
        Path::new(env!("CARGO_BIN_EXE_tenant-app")),
        &stores,
        plan.deal("storm-check"),
    )
    .expect("start the storefront");
    let probe = RedisProbe::connect(&stores.redis_url).await.unwrap();
    let report = match storm::run(&front, &probe, &stores.postgres_url, plan).await {
        Ok(report) => report,
        Err(error) => panic!("{error}\n--- tenant-app log ---\n{}", front.log_tail()),
    };
    // 400 shoppers wanting up to 2 each cannot leave 100 units unsold: the cancelled ones go
    // back on sale and are bought again by shoppers still in line.
    assert!(report.told.cancelled > 0, "{report:?}");
    assert_eq!(
        report.sold + report.left,
        plan.stock,
        "every unit is sold or left: {report:?}"
    );
    assert!(
        report.sold >= plan.stock - report.told.cancelled,
        "{report:?}"
    );
}
