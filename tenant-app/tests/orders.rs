//! The order path's promises, against real Redis and PostgreSQL: lapsed reservations give their
//! stock back, a cancel returns stock exactly once, an idempotency key orders once, and a
//! PostgreSQL outage confirms nothing and loses no stock.

mod common;

use std::time::Duration;

use common::{admitted, client, eventually, postgres, DealFile, Shopper, Storefront};
use reqwest::StatusCode;
use timedeal_tenant_app::payments::State;
use timedeal_testkit::{PostgresServer, RedisServer};

fn small(name: &str) -> DealFile {
    DealFile {
        stock: 5,
        limit: 2,
        ..DealFile::live(name)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unpaid_reservation_lapses_and_its_stock_returns() {
    let redis = RedisServer::start().unwrap();
    let deal = DealFile {
        reservation_ttl: "1s",
        ..small("lapsing")
    };
    // Payments take longer than a reservation lives.
    let shop = Storefront::start(&redis, &postgres().url(), &deal, &["--payment-delay", "4s"]);
    let (shopper, token) = admitted(&shop).await;
    let order = tokio::spawn(async move { shopper.order(2, "slow-payer", &token).await });

    eventually(
        "the reservation to hold stock",
        Duration::from_secs(3),
        || async { shop.stats().await["stock"]["reserved"] == 2 },
    )
    .await;
    eventually(
        "the reservation to lapse",
        Duration::from_secs(5),
        || async {
            let stats = shop.stats().await;
            stats["stock"]["reserved"] == 0 && stats["stock"]["remaining"] == 5
        },
    )
    .await;

    let (code, answer) = order.await.unwrap();
    assert_eq!(code, StatusCode::CONFLICT, "{answer}");
    assert_eq!(answer["error"]["code"], "reservation_lapsed");
    assert_eq!(shop.count_orders("confirmed").await, 0);
    assert_eq!(shop.count_orders("lapsed").await, 1);
    let stats = shop.stats().await;
    assert_eq!(stats["stock"]["remaining"], 5, "{stats}");
    assert_eq!(stats["stock"]["sold"], 0, "{stats}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_cancel_changes_nothing() {
    let redis = RedisServer::start().unwrap();
    let shop = Storefront::start(&redis, &postgres().url(), &small("cancelling"), &[]);
    let (shopper, token) = admitted(&shop).await;
    let (code, order) = shopper.order(2, "buy-two", &token).await;
    assert_eq!(code, StatusCode::CREATED, "{order}");
    assert_eq!(order["status"], "confirmed");
    assert_eq!(order["amount"], 2 * 9900);
    let id = order["id"].as_i64().unwrap();
    assert_eq!(shop.stats().await["stock"]["remaining"], 3);
    // Owning the limit ends the admission: nothing left to queue for.
    let status = shopper.status().await;
    assert_eq!(status["state"], "done", "{status}");
    assert_eq!(status["owned"], 2);
    let (code, answer) = shopper.join().await;
    assert_eq!(code, StatusCode::CONFLICT);
    assert_eq!(answer["error"]["code"], "over_limit");

    let (code, cancelled) = shopper.cancel(id).await;
    assert_eq!(code, StatusCode::OK, "{cancelled}");
    assert_eq!(cancelled["status"], "cancelled");
    eventually("the stock to return", Duration::from_secs(3), || async {
        shop.stats().await["stock"]["remaining"] == 5
    })
    .await;

    let (code, again) = shopper.cancel(id).await;
    assert_eq!(code, StatusCode::CONFLICT, "{again}");
    assert_eq!(again["error"]["code"], "already_cancelled");
    // Give a wrongly repeated restock every chance to show.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let stats = shop.stats().await;
    assert_eq!(stats["stock"]["remaining"], 5, "{stats}");
    assert_eq!(stats["stock"]["sold"], 0, "{stats}");
    assert_eq!(stats["orders"]["cancelled"], 1, "{stats}");
    let db = shop.db().await;
    let refunds: i64 = sqlx::query_scalar(&format!("SELECT COUNT(*) FROM {}.refunds", shop.schema))
        .fetch_one(&db)
        .await
        .unwrap();
    assert_eq!(refunds, 1);
    assert_eq!(shopper.orders().await[0]["status"], "cancelled");
    // The cancelled units no longer count against the limit.
    assert_eq!(shopper.status().await["owned"], 0);

    // Someone else's order is not found, and cannot be cancelled.
    let stranger = Shopper::new(&client(), &shop.url());
    let (code, answer) = stranger.cancel(id).await;
    assert_eq!(code, StatusCode::NOT_FOUND, "{answer}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_same_idempotency_key_gives_one_order() {
    let redis = RedisServer::start().unwrap();
    let shop = Storefront::start(&redis, &postgres().url(), &small("idempotent"), &[]);
    let (shopper, token) = admitted(&shop).await;

    let (code, first) = shopper.order(1, "key-1", &token).await;
    assert_eq!(code, StatusCode::CREATED, "{first}");
    let (code, again) = shopper.order(1, "key-1", &token).await;
    assert_eq!(code, StatusCode::OK, "{again}");
    assert_eq!(again["id"], first["id"]);

    // The same key sent twice at once (a double click) still orders once.
    let twin = Shopper::with_session(&shopper.client, &shopper.base, shopper.session());
    let twin_token = token.clone();
    let (a, b) = tokio::join!(
        shopper.order(1, "key-2", &token),
        twin.order(1, "key-2", &twin_token)
    );
    let mut codes = [a.0, b.0];
    codes.sort();
    assert_eq!(
        codes,
        [StatusCode::OK, StatusCode::CREATED],
        "{} / {}",
        a.1,
        b.1
    );
    assert_eq!(a.1["id"], b.1["id"]);

    assert_eq!(shop.count_orders("confirmed").await, 2);
    assert_eq!(shop.stats().await["stock"]["sold"], 2);
    // Each commit is counted by how many orders its transaction carried.
    let metrics = common::get_text(&format!("{}/metrics", shop.url())).await;
    assert!(
        metrics.contains("timedeal_order_commit_batch_size_count 2"),
        "{metrics}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_commit_failure_confirms_nothing_and_loses_no_stock() {
    let redis = RedisServer::start().unwrap();
    let own_postgres = PostgresServer::start().unwrap();
    let shop = Storefront::start(&redis, &own_postgres.url(), &small("outage"), &[]);
    let (shopper, token) = admitted(&shop).await;
    assert_eq!(shopper.status().await["stockRemaining"], 5);

    drop(own_postgres);
    let (code, answer) = shopper.order(2, "during-outage", &token).await;
    assert_eq!(code, StatusCode::SERVICE_UNAVAILABLE, "{answer}");
    assert_eq!(answer["error"]["code"], "unavailable");

    // Redis holds no sale and no reservation: every unit is still for sale.
    let mut redis_conn = redis::Client::open(redis.url())
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap();
    let (sold, reserved): (i64, i64) = redis::cmd("HMGET")
        .arg("td:{outage}:deal")
        .arg("sold")
        .arg("reserved")
        .query_async(&mut redis_conn)
        .await
        .unwrap();
    assert_eq!((sold, reserved), (0, 0));
    // Statuses read the figures each replica refreshes a few times a second.
    eventually("the figures refreshed", Duration::from_secs(2), || async {
        shopper.status().await["stockRemaining"] == 5
    })
    .await;
    let readyz = reqwest::get(format!("{}/readyz", shop.url()))
        .await
        .unwrap();
    assert_eq!(readyz.status(), StatusCode::SERVICE_UNAVAILABLE);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redis_that_lost_its_data_is_rebuilt_from_postgres() {
    let redis = RedisServer::start().unwrap();
    let shop = Storefront::start(&redis, &postgres().url(), &small("amnesia"), &[]);
    let (shopper, token) = admitted(&shop).await;
    let (code, first) = shopper.order(2, "before-the-loss", &token).await;
    assert_eq!(code, StatusCode::CREATED, "{first}");

    let mut conn = redis::Client::open(redis.url())
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap();
    redis::cmd("FLUSHALL").exec_async(&mut conn).await.unwrap();

    eventually(
        "the figures to be rebuilt",
        Duration::from_secs(5),
        || async { shopper.status().await["stockRemaining"] == 3 },
    )
    .await;
    let stats = shop.stats().await;
    assert_eq!(stats["stock"]["sold"], 2, "{stats}");
    // The shopper still owns their limit, so they cannot queue to buy more.
    assert_eq!(shopper.status().await["owned"], 2);
    let (code, answer) = shopper.join().await;
    assert_eq!(code, StatusCode::CONFLICT, "{answer}");
    assert_eq!(answer["error"]["code"], "over_limit");

    // Another shopper buys, with new order ids that do not collide with the stored ones.
    let (other, token) = admitted(&shop).await;
    let (code, order) = other.order(1, "after-the-loss", &token).await;
    assert_eq!(code, StatusCode::CREATED, "{order}");
    assert!(order["id"].as_i64() > first["id"].as_i64());
    assert_eq!(shop.count_orders("confirmed").await, 2);
    assert_eq!(shop.stats().await["stock"]["remaining"], 2);
}

/// A replica that dies between its commit and telling Redis leaves the order's reservation in
/// Redis: the same request again is answered from PostgreSQL at once, not with
/// `order_in_progress` for as long as the reservation lives.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_repeat_after_a_crash_between_commit_and_confirm_finds_the_order() {
    let redis = RedisServer::start().unwrap();
    let deal = small("crash-after-commit");
    let shop = Storefront::start(&redis, &postgres().url(), &deal, &[]);
    let (shopper, token) = admitted(&shop).await;
    let (code, first) = shopper.order(1, "once", &token).await;
    assert_eq!(code, StatusCode::CREATED, "{first}");
    let id = first["id"].as_i64().unwrap();
    // What Redis holds when the replica died right after the commit: the reservation, as
    // `reserve.lua` stores it (`<id>|<qty>|<limit>|<held after>|<admission>|<key>|<shopper>`).
    let mut connection = redis::Client::open(redis.url())
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap();
    let body = String::from_utf8(
        base64::Engine::decode(
            &base64::engine::general_purpose::URL_SAFE_NO_PAD,
            token.split('.').next().unwrap(),
        )
        .unwrap(),
    )
    .unwrap();
    let fields: Vec<&str> = body.split('|').collect();
    let (shopper_id, admission) = (fields[1], fields[3]);
    let stored = format!("{id}|1|{}|1|{admission}|once|{shopper_id}", deal.limit);
    let _: () = redis::cmd("ZADD")
        .arg(format!("td:{{{}}}:res", deal.name))
        .arg(i64::MAX / 2)
        .arg(&stored)
        .query_async(&mut connection)
        .await
        .unwrap();
    let asked = std::time::Instant::now();
    let (code, again) = shopper.order(1, "once", &token).await;
    assert_eq!(code, StatusCode::OK, "{again}");
    assert_eq!(again["id"], id);
    assert!(
        asked.elapsed() < Duration::from_secs(2),
        "answered after {:?}",
        asked.elapsed()
    );
}

/// A `503 unavailable` wrote nothing: the same request, with the same idempotency key, may be
/// sent again as it is and places the order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_order_refused_with_503_can_be_sent_again_with_its_key() {
    use timedeal_tenant_app::payments::sandbox::Mode;
    let redis = RedisServer::start().unwrap();
    let provider = common::PaymentProvider::start(Duration::ZERO).await;
    let shop = Storefront::start(
        &redis,
        &postgres().url(),
        &small("retry-same-key"),
        &[&provider.flag()],
    );
    let (shopper, token) = admitted(&shop).await;
    provider.set_mode(Mode::Fail);
    let (code, refused) = shopper.order(1, "same-key", &token).await;
    assert_eq!(code, StatusCode::SERVICE_UNAVAILABLE, "{refused}");
    assert_eq!(refused["error"]["code"], "unavailable");
    provider.set_mode(Mode::Normal);
    let (code, placed) = shopper.order(1, "same-key", &token).await;
    assert_eq!(code, StatusCode::CREATED, "{placed}");
    assert_eq!(shop.stats().await["stock"]["sold"], 1);
    let charges = provider.ledger.charges(&shop.schema);
    assert_eq!(
        charges.len(),
        1,
        "only the placed order is charged: {charges:?}"
    );
}

/// Redis believing stock is left that is not (its `sold` figure wrong, as after it came back
/// behind): PostgreSQL, which decides, refuses the order, its payment is voided (never taken),
/// and Redis's figures are restored from PostgreSQL.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redis_that_forgot_sales_cannot_oversell() {
    let redis = RedisServer::start().unwrap();
    let provider = common::PaymentProvider::start(Duration::ZERO).await;
    let deal = DealFile {
        stock: 3,
        limit: 2,
        ..DealFile::live("forgetful")
    };
    let shop = Storefront::start(&redis, &postgres().url(), &deal, &[&provider.flag()]);
    let mut buyers = Vec::new();
    for (quantity, key) in [(2, "first-two"), (1, "last-one")] {
        let (shopper, token) = admitted(&shop).await;
        let (code, order) = shopper.order(quantity, key, &token).await;
        assert_eq!(code, StatusCode::CREATED, "{order}");
        buyers.push((shopper, token, key, order["id"].clone()));
    }
    assert_eq!(shop.stats().await["stock"]["remaining"], 0);

    // Redis forgets every sale.
    let mut connection = redis::Client::open(redis.url())
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap();
    let deal_key = format!("{}deal", timedeal_tenant_app::app::key_prefix("forgetful"));
    let _: () = redis::cmd("HSET")
        .arg(&deal_key)
        .arg("sold")
        .arg(0)
        .query_async(&mut connection)
        .await
        .unwrap();
    assert_eq!(shop.stats().await["stock"]["remaining"], 3);

    let (late, token) = admitted(&shop).await;
    let (code, answer) = late.order(1, "one-too-many", &token).await;
    assert_eq!(code, StatusCode::CONFLICT, "{answer}");
    assert_eq!(answer["error"]["code"], "sold_out", "{answer}");
    assert!(
        answer["error"]["message"]
            .as_str()
            .unwrap()
            .contains("nothing was charged"),
        "{answer}"
    );

    let db = shop.db().await;
    let sold: i64 = sqlx::query_scalar(&format!(
        "SELECT COALESCE(SUM(quantity), 0)::BIGINT FROM {}.orders WHERE status = 'confirmed'",
        shop.schema
    ))
    .fetch_one(&db)
    .await
    .unwrap();
    assert_eq!(sold, 3, "PostgreSQL holds the stock and no more");
    let charges = provider.ledger.charges(&shop.schema);
    assert_eq!(charges.len(), 3, "{charges:?}");
    assert_eq!(
        charges.iter().filter(|c| c.taken()).count(),
        2,
        "the two orders are paid: {charges:?}"
    );
    assert!(
        charges.iter().any(|c| c.state == State::Voided),
        "the refused order's payment is voided, never taken: {charges:?}"
    );
    eventually(
        "Redis's figures to be restored from PostgreSQL",
        Duration::from_secs(5),
        || async {
            let stats = shop.stats().await;
            stats["stock"]["sold"] == 3 && stats["stock"]["remaining"] == 0
        },
    )
    .await;

    // The restore gave the figures a new epoch; the same orders sent again, even with another
    // quantity, are still answered with the first orders, not "sold out".
    for (shopper, token, key, id) in &buyers {
        for quantity in [1, 2] {
            let (code, answer) = shopper.order(quantity, key, token).await;
            assert_eq!(code, StatusCode::OK, "{key} x{quantity}: {answer}");
            assert_eq!(&answer["id"], id, "{key} x{quantity}: {answer}");
        }
    }
    assert_eq!(provider.ledger.charges(&shop.schema).len(), 3);
}

/// Once the deal is sold out, an order from anyone holding no order is answered before its
/// session or body is looked at (a body that is not even JSON gets `sold_out`, and no session
/// is issued); an admission it carries still ends; a buyer's same order sent again still gets
/// that order back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sold_out_answer_is_decided_first_for_all_but_buyers() {
    let redis = RedisServer::start().unwrap();
    let deal = DealFile {
        stock: 1,
        limit: 1,
        ..DealFile::live("sold-out-first")
    };
    let shop = Storefront::start(&redis, &postgres().url(), &deal, &[]);
    // Two claims on the one unit: both admitted before it sells.
    let (buyer, buyer_token) = admitted(&shop).await;
    let (late, late_token) = admitted(&shop).await;
    let (code, order) = buyer.order(1, "mine", &buyer_token).await;
    assert_eq!(code, StatusCode::CREATED, "{order}");

    let raw = client();
    eventually(
        "a body that is not JSON to be answered sold_out",
        Duration::from_secs(5),
        || async {
            let response = raw
                .post(format!("{}/api/orders", shop.url()))
                .body("not json")
                .send()
                .await
                .unwrap();
            let decided = response.status() == StatusCode::CONFLICT;
            if decided {
                assert!(
                    response.headers().get("set-cookie").is_none()
                        && response.headers().get("x-timedeal-session").is_none(),
                    "no session is issued with a sold-out answer"
                );
                let body: serde_json::Value = response.json().await.unwrap();
                assert_eq!(body["error"]["code"], "sold_out", "{body}");
            }
            decided
        },
    )
    .await;

    let (code, answer) = late.order(1, "too-late", &late_token).await;
    assert_eq!(code, StatusCode::CONFLICT, "{answer}");
    assert_eq!(answer["error"]["code"], "sold_out", "{answer}");
    let status = late.status().await;
    assert_ne!(
        status["state"], "admitted",
        "the admission sent with a sold-out order ends: {status}"
    );

    let (code, again) = buyer.order(1, "mine", &buyer_token).await;
    assert_eq!(
        code,
        StatusCode::OK,
        "the buyer's order comes back: {again}"
    );
    assert_eq!(again["id"], order["id"], "{again}");
    let (code, more) = buyer.order(1, "another", &buyer_token).await;
    assert_eq!(code, StatusCode::CONFLICT, "{more}");
    assert_eq!(more["error"]["code"], "sold_out", "{more}");
    assert_eq!(shop.count_orders("confirmed").await, 1);
}
