//! Admissions as leases, against real storefront processes, Redis and PostgreSQL: admitted
//! shoppers who vanish give their places back after the lease, shoppers who left are never
//! admitted, a momentary sellout pauses the line and a cancel sells its unit to the next shopper
//! still there, and a shopper who reserved and stays counts once. And the admission rate, held
//! at 5,000 a second by the admission script itself.

mod common;

use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use common::{client, postgres, DealFile, PaymentProvider, Shopper, Storefront};
use futures_util::{stream, StreamExt};
use reqwest::StatusCode;
use timedeal_tenant_app::{
    queue::{Joined, Queue, Settings, StepInput},
    scripts::Scripts,
};
use timedeal_testkit::RedisServer;

/// Joins `count` shoppers, 32 at a time, each with their join number, in the line's order.
async fn join_many(client: &reqwest::Client, url: &str, count: usize) -> Vec<(Shopper, u64)> {
    let mut joined: Vec<(Shopper, u64)> = stream::iter(0..count)
        .map(|_| async {
            let shopper = Shopper::new(client, url);
            let (code, status) = shopper.join().await;
            assert_eq!(code, StatusCode::OK, "{status}");
            let number = status["joinNumber"].as_u64().expect("a join number");
            (shopper, number)
        })
        .buffered(32)
        .collect()
        .await;
    joined.sort_by_key(|(_, number)| *number);
    joined
}

/// Polls until admitted, as the page does; the admission token, or `None` after `limit`.
async fn admitted_within(shopper: &Shopper, limit: Duration) -> Option<String> {
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        let status = shopper.status().await;
        if status["state"] == "admitted" {
            return status["admissionToken"].as_str().map(str::to_owned);
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    None
}

/// Waits until each of `shoppers` is admitted (they are at the front of the line); their
/// admission tokens.
async fn admit_all(shoppers: &[(Shopper, u64)]) -> Vec<String> {
    let mut tokens = Vec::new();
    for (shopper, _) in shoppers {
        tokens.push(
            admitted_within(shopper, Duration::from_secs(10))
                .await
                .expect("admitted at the front of the line"),
        );
    }
    tokens
}

/// Checks the published admission log gave no place to any of `leavers`; the join numbers it
/// admitted.
async fn never_admitted(shop: &Storefront, leavers: &[(Shopper, u64)]) -> Vec<u64> {
    let admitted: Vec<u64> = shop
        .admissions()
        .await
        .into_iter()
        .map(|(_, number)| number)
        .collect();
    for (_, number) in leavers {
        assert!(
            !admitted.contains(number),
            "{number} left, yet was admitted: {admitted:?}"
        );
    }
    admitted
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admitted_shoppers_who_vanish_give_their_places_back_after_the_lease() {
    let redis = RedisServer::start().unwrap();
    let deal = DealFile {
        stock: 100,
        limit: 1,
        rate: 1000,
        max_active: 60,
        session_ttl: "5m",
        admission_lease: Some("5s"),
        ..DealFile::live("vanish")
    };
    let shop = Storefront::start(&redis, &postgres().url(), &deal, &[]);
    shop.queue_open().await;
    let client = client();

    // Sixty are admitted and vanish: no order, no poll, no leave.
    let vanished = join_many(&client, &shop.url(), 60).await;
    admit_all(&vanished).await;
    let gone = Instant::now();

    // A crowd behind them keeps polling; the line is full until the leases run out.
    let crowd = join_many(&client, &shop.url(), 30).await;
    let bought = stream::iter(crowd.iter().enumerate())
        .map(|(i, (shopper, _))| async move {
            let token = admitted_within(shopper, Duration::from_secs(30)).await?;
            let (code, answer) = shopper.order(1, &format!("crowd-{i}"), &token).await;
            assert_eq!(code, StatusCode::CREATED, "{answer}");
            Some(gone.elapsed())
        })
        .buffer_unordered(30)
        .collect::<Vec<_>>()
        .await;
    let waits: Vec<Duration> = bought.into_iter().flatten().collect();
    assert_eq!(
        waits.len(),
        30,
        "everyone in the crowd bought once the vanished shoppers' leases ran out"
    );
    let longest = waits.iter().max().unwrap();
    assert!(
        *longest < Duration::from_secs(15),
        "the crowd waited {longest:?}: about the 5 s lease, never the 5 min session"
    );
    assert_eq!(shop.count_orders("confirmed").await, 30);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shoppers_who_left_are_never_admitted_even_when_they_poll_again() {
    let redis = RedisServer::start().unwrap();
    let deal = DealFile {
        stock: 100,
        limit: 1,
        rate: 100,
        max_active: 5,
        // One liveness window covers the whole test: nobody is passed over for silence, so
        // only a recorded leave can keep a number out.
        idle_grace: "20m",
        ..DealFile::live("left")
    };
    let shop = Storefront::start(&redis, &postgres().url(), &deal, &[]);
    shop.queue_open().await;
    let client = client();

    // Five hold every admission while the others join behind them.
    let holders = join_many(&client, &shop.url(), 5).await;
    let tokens = admit_all(&holders).await;
    let behind = join_many(&client, &shop.url(), 10).await;
    let (leavers, stayers) = behind.split_at(6);
    for (shopper, _) in leavers {
        let ticket = shopper.ticket();
        let (code, _) = shopper
            .send(reqwest::Method::DELETE, "/api/queue", None)
            .await;
        assert_eq!(code, StatusCode::NO_CONTENT);
        // The page in another tab still holds the old ticket and polls with it: its marks
        // arrive after the leave, and must not bring the place back.
        shopper.set_ticket(ticket);
        shopper.status().await;
    }

    // The holders buy their limit, which ends their admissions: five places open.
    for (i, ((shopper, _), token)) in holders.iter().zip(&tokens).enumerate() {
        let (code, answer) = shopper.order(1, &format!("hold-{i}"), token).await;
        assert_eq!(code, StatusCode::CREATED, "{answer}");
    }
    for (shopper, _) in stayers {
        admitted_within(shopper, Duration::from_secs(10))
            .await
            .expect("every stayer is admitted, passing over those who left");
    }
    let admitted = never_admitted(&shop, leavers).await;
    for (_, number) in stayers {
        assert!(admitted.contains(number), "{number} stayed: {admitted:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_momentary_sellout_pauses_the_line_and_a_cancel_sells_to_the_next_still_there() {
    let redis = RedisServer::start().unwrap();
    let deal = DealFile {
        stock: 3,
        limit: 1,
        rate: 100,
        max_active: 3,
        admission_lease: Some("5s"),
        ..DealFile::live("momentary")
    };
    let provider = PaymentProvider::start(Duration::from_secs(1)).await;
    let shop = Storefront::start(&redis, &postgres().url(), &deal, &[&provider.flag()]);
    shop.queue_open().await;
    let client = client();

    let buyers = join_many(&client, &shop.url(), 3).await;
    let waiters = join_many(&client, &shop.url(), 10).await;
    let tokens = admit_all(&buyers).await;
    // All three reserve at once and pay for a second: nothing is free meanwhile, so nobody
    // else is admitted before the sellout.
    let orders: Vec<i64> =
        futures_util::future::join_all(buyers.iter().zip(&tokens).enumerate().map(
            |(i, ((shopper, _), token))| async move {
                let (code, order) = shopper.order(1, &format!("buy-{i}"), token).await;
                assert_eq!(code, StatusCode::CREATED, "{order}");
                order["id"].as_i64().unwrap()
            },
        ))
        .await;

    // Sold out, for now: the line keeps its places and says why it stands still.
    common::eventually("the line pauses", Duration::from_secs(5), || async {
        waiters[9].0.status().await["pausedBecause"] == "awaiting_cancellations"
    })
    .await;
    for (i, (shopper, _)) in waiters.iter().enumerate() {
        let status = shopper.status().await;
        assert_eq!(status["state"], "paused", "{status}");
        assert_eq!(
            status["pausedBecause"], "awaiting_cancellations",
            "{status}"
        );
        assert_eq!(status["position"], i as u64 + 1, "{status}");
    }
    // Joining again with the ticket keeps the place; nobody new joins a sold-out deal.
    let (code, again) = waiters[6].0.join().await;
    assert_eq!(code, StatusCode::OK, "{again}");
    assert_eq!(
        (again["state"].as_str(), again["joinNumber"].as_u64()),
        (Some("paused"), Some(waiters[6].1)),
        "{again}"
    );
    let (code, late) = Shopper::new(&client, &shop.url()).join().await;
    assert_eq!(code, StatusCode::CONFLICT, "{late}");
    assert_eq!(late["error"]["code"], "sold_out");
    // The first five give up and leave; the others keep the page open.
    let (leavers, stayers) = waiters.split_at(5);
    for (shopper, _) in leavers {
        let (code, _) = shopper
            .send(reqwest::Method::DELETE, "/api/queue", None)
            .await;
        assert_eq!(code, StatusCode::NO_CONTENT);
    }

    // A buyer cancels: the unit comes back and goes to the first waiter still there.
    let cancelled = Instant::now();
    let (code, answer) = buyers[0].0.cancel(orders[0]).await;
    assert_eq!(code, StatusCode::OK, "{answer}");
    let first = &stayers[0].0;
    let token = admitted_within(first, Duration::from_secs(10))
        .await
        .expect("the unit that came back goes to the first shopper still in line");
    let (code, order) = first.order(1, "after-cancel", &token).await;
    assert_eq!(code, StatusCode::CREATED, "{order}");
    let sold_again = cancelled.elapsed();
    assert!(
        sold_again < Duration::from_secs(8),
        "the returned unit took {sold_again:?} to sell"
    );
    never_admitted(&shop, leavers).await;
    assert_eq!(shop.count_orders("confirmed").await, 3);
    // Sold out again: the rest still hold their places.
    common::eventually("the line pauses again", Duration::from_secs(5), || async {
        stayers[1].0.status().await["state"] == "paused"
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_shopper_who_reserved_and_stays_counts_once() {
    let redis = RedisServer::start().unwrap();
    // Payments take six seconds: long enough to see who is admitted meanwhile.
    let provider = PaymentProvider::start(Duration::from_secs(6)).await;
    let deal = DealFile {
        stock: 2,
        limit: 1,
        rate: 100,
        max_active: 2,
        // One claim per unit: only counting the reservation once leaves room for the next.
        claims_per_unit: Some(1),
        ..DealFile::live("stays")
    };
    let shop = Storefront::start(&redis, &postgres().url(), &deal, &[&provider.flag()]);
    shop.queue_open().await;
    let client = client();

    let (first, token) = common::admitted(&shop).await;
    // The first shopper reserves a unit and stays on the page while the payment runs.
    let ordering = tokio::spawn(async move { first.order(1, "paying", &token).await });
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(!ordering.is_finished(), "the payment is still running");
    let second = join_many(&client, &shop.url(), 1).await.remove(0).0;

    // One unit is left and nobody else claims it: the next shopper is admitted now, not when
    // the first one's order is done.
    let token = admitted_within(&second, Duration::from_secs(3))
        .await
        .expect("a shopper with a reservation counts once, so the free unit admits the next");
    assert!(
        !ordering.is_finished(),
        "admitted while the first order is still being paid for"
    );
    let (code, answer) = second.order(1, "second", &token).await;
    assert_eq!(code, StatusCode::CREATED, "{answer}");
    let (code, answer) = ordering.await.unwrap();
    assert_eq!(code, StatusCode::CREATED, "{answer}");
    assert_eq!(shop.count_orders("confirmed").await, 2);
}

/// The rate is kept by the admission script's clock, whatever the step: here steps a
/// millisecond apart, each admitting at most seven (the live admissions end after each step),
/// a count that costs 1.4 ms of the clock at 5,000 a second. The bucket starts full, as at a
/// deal's start, and the rate is measured once its second of credit is spent (within 2.5 s):
/// charged a whole millisecond per step, the bucket would never drain and seven a millisecond
/// would go on for good.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_admission_rate_holds_at_five_thousand_a_second() {
    const RATE: u32 = 5_000;
    const SECONDS: i64 = 8;
    const DRAINED_MS: i64 = 4_000;
    let redis = RedisServer::start().unwrap();
    let client = redis::Client::open(redis.url()).unwrap();
    let mut connection = redis::aio::ConnectionManager::new(client).await.unwrap();
    let prefix = "td:{rate}:".to_owned();
    let _: () = redis::pipe()
        .hset_multiple(
            format!("{prefix}deal"),
            &[
                ("epoch", "1"),
                ("total", "1000000000"),
                ("sold", "0"),
                ("reserved", "0"),
            ],
        )
        .set(format!("{prefix}pre_count"), 0)
        .query_async(&mut connection)
        .await
        .unwrap();
    let queue = Queue::new(
        connection.clone(),
        Arc::new(Scripts::load()),
        prefix.clone(),
    );
    let window = Duration::from_secs(3_600);
    // The whole test runs within one liveness window.
    let start = 1_800_000_000_000_i64 / 3_600_000 * 3_600_000 + 1_000;

    let joiners = (SECONDS + DRAINED_MS / 1_000) as usize * RATE as usize * 7 / 5;
    let mut numbers = Vec::with_capacity(joiners);
    for _ in 0..joiners {
        match queue.join("s", 1).await.unwrap() {
            Joined::Placed { number, .. } => numbers.push(number),
            other => panic!("{other:?}"),
        }
    }
    // Everyone is there: seen in the window the whole test runs in.
    queue
        .flush_marks(&[(start / window.as_millis() as i64, numbers)], window)
        .await
        .unwrap();
    let settings = Settings {
        admission_rate: RATE,
        max_active: 7,
        session_ttl: Duration::from_secs(300),
        lease: Duration::from_secs(45),
        claims_per_unit: 2,
    };
    let mut head = 0;
    let mut measured = 0;
    for ms in 1..=DRAINED_MS + SECONDS * 1_000 {
        let step = queue
            .step(
                start + ms,
                &StepInput {
                    settings,
                    window,
                    admitting: true,
                    head_seen: head,
                    numbers: &[],
                },
            )
            .await
            .unwrap();
        head = step.head;
        if ms > DRAINED_MS {
            measured += step.admitted;
        }
        let _: () = redis::cmd("DEL")
            .arg(format!("{prefix}active"))
            .query_async(&mut connection)
            .await
            .unwrap();
    }
    let expected = RATE as u64 * SECONDS as u64;
    let off = (measured as f64 - expected as f64).abs() / expected as f64;
    assert!(
        off <= 0.02,
        "admitted {measured} in {SECONDS} s at {RATE}/s: {:.1} % off",
        off * 100.0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_buyer_who_stays_for_more_does_not_hold_back_the_last_unit() {
    let redis = RedisServer::start().unwrap();
    let deal = DealFile {
        stock: 2,
        limit: 2,
        rate: 100,
        max_active: 10,
        claims_per_unit: Some(1),
        ..DealFile::live("served")
    };
    let shop = Storefront::start(&redis, &postgres().url(), &deal, &[]);
    shop.queue_open().await;
    let client = client();

    // The first shopper buys one of their two and keeps the page open, renewing the admission.
    let (first, token) = common::admitted(&shop).await;
    let (code, order) = first.order(1, "one-of-two", &token).await;
    assert_eq!(code, StatusCode::CREATED, "{order}");
    let second = join_many(&client, &shop.url(), 1).await.remove(0).0;
    let staying = async {
        loop {
            assert_eq!(first.status().await["state"], "admitted");
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
    };
    // One unit left and one claim a unit: a served shopper is no claim, so the next comes in.
    let token = tokio::select! {
        _ = staying => unreachable!(),
        token = admitted_within(&second, Duration::from_secs(5)) => token,
    }
    .expect("the last unit admits the next shopper while the first one stays");
    let (code, order) = second.order(1, "the-last", &token).await;
    assert_eq!(code, StatusCode::CREATED, "{order}");
}
