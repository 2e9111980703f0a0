//! The fault drills, each once and small: a sale on two replicas of the real storefront, sharing
//! a real Redis, a durable PostgreSQL and an HTTP payment provider, while one thing goes wrong.
//! The drills themselves, and the promises checked once each has settled, are in
//! `timedeal_e2e::chaos` (`timedeal-bench chaos` runs them for longer).

use std::path::Path;

use timedeal_e2e::chaos::{drill, Fault, Plan};

/// One drill at a time: each is a sale whose faults are timed, and two at once on a small machine
/// would be measuring each other.
static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

async fn run(fault: Fault) {
    let _turn = ONE_AT_A_TIME.lock().await;
    let binary = Path::new(env!("CARGO_BIN_EXE_tenant-app"));
    match drill(binary, fault, Plan::small(), 0).await {
        Ok(report) => eprintln!("{fault}: {report:?}"),
        Err(error) => panic!("{fault} ({}): {error}", fault.describe()),
    }
}

/// One replica killed with SIGKILL mid-sale, payments in flight.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_killed_mid_sale_loses_nothing() {
    run(Fault::KillReplica).await;
}

/// Redis killed and restarted with its append-only file.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_restarted_with_its_aof_loses_nothing() {
    run(Fault::RedisRestart).await;
}

/// Redis replaced without its data mid-sale, while many orders are between their reservation
/// and their commit (payments take 1.5 s) and shoppers cancel.
/// Redis back a second behind, as after a node loss with `appendfsync everysec`: PostgreSQL
/// still holds at most the stock and every shopper at most the limit, and Redis's figures are
/// restored from it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_back_a_second_behind_oversells_nothing() {
    run(Fault::RedisRollback).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_replaced_empty_mid_sale_loses_nothing() {
    run(Fault::RedisEmpty).await;
}

/// Redis away while a shopper cancels, then back without its data: the cancel is answered at
/// once, and its stock is neither lost nor returned twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cancel_while_redis_is_away_is_answered_and_counted_once() {
    run(Fault::RedisAway).await;
}

/// PostgreSQL stopped for 10 s mid-sale, then started again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_stopped_for_ten_seconds_loses_nothing() {
    run(Fault::PostgresStop).await;
}

/// PostgreSQL frozen (SIGSTOP) for 15 s: orders answer a retryable error within a few seconds,
/// and the writer recovers when it goes on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_frozen_for_fifteen_seconds_holds_no_one() {
    run(Fault::PostgresFreeze).await;
}

/// Ten cancels of one order at once, on two replicas: one cancels it, one refund is made, and the
/// stock comes back once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_cancels_refund_once() {
    run(Fault::ConcurrentCancels).await;
}

/// The provider fails, then hangs, then answers late; orders are refused meanwhile with a
/// retryable error, nothing stays charged without an order, and sales go on once it recovers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_hanging_and_late_provider_keeps_the_money_right() {
    run(Fault::PaymentFaults).await;
}

/// Two replicas whose clocks are 20 s apart: both follow Redis's clock, so neither opens the sale
/// early, and the admission rate holds.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicas_with_skewed_clocks_keep_one_time() {
    run(Fault::SkewedClocks).await;
}
