//! The storm: thousands of shoppers at once, through the queue and the order path over HTTP,
//! against real Redis and PostgreSQL. Exactly the stock is sold, every confirmed order is a row,
//! and nobody gets more than their limit: with one replica, and with two sharing the stores.

mod common;

use std::{sync::Arc, time::Duration};

use common::{client, postgres, DealFile, Shopper, Storefront};
use reqwest::StatusCode;
use timedeal_testkit::RedisServer;
use tokio::sync::Semaphore;

const SHOPPERS: usize = 2_000;
const STOCK: i64 = 100;
const LIMIT: i64 = 2;

/// What the shoppers saw.
#[derive(Default, Debug)]
struct Tally {
    confirmed: i64,
    refused_at_join: usize,
    never_admitted: usize,
    over_limit_quantity_refused: usize,
    /// Coupon deals: the code of every confirmed order.
    codes: Vec<String>,
}

async fn storm(urls: Vec<String>, limit: i64) -> Tally {
    let client = client();
    // Shoppers are all there at once; this only bounds requests in flight (sockets).
    let gate = Arc::new(Semaphore::new(256));
    let mut tasks = Vec::new();
    for i in 0..SHOPPERS {
        let shopper = Shopper::new(&client, &urls[i % urls.len()]);
        let gate = gate.clone();
        tasks.push(tokio::spawn(async move {
            let mut tally = Tally::default();
            let permit = gate.acquire().await.unwrap();
            let (code, answer) = shopper.join().await;
            drop(permit);
            if code != StatusCode::OK {
                assert_eq!(answer["error"]["code"], "sold_out", "{answer}");
                tally.refused_at_join = 1;
                return tally;
            }
            let Some(token) = shopper.wait_for_turn(Duration::from_secs(120)).await else {
                tally.never_admitted = 1;
                return tally;
            };
            let _permit = gate.acquire().await.unwrap();
            if i % 10 == 0 {
                let (code, answer) = shopper.order(limit + 1, &format!("big-{i}"), &token).await;
                assert_eq!(code, StatusCode::BAD_REQUEST, "{answer}");
                assert_eq!(answer["error"]["code"], "invalid_quantity");
                tally.over_limit_quantity_refused = 1;
            }
            // Buy one at a time until refused: the limit, the stock or the admission stops it.
            for attempt in 0.. {
                let key = format!("s{i}-{attempt}");
                let (code, answer) = shopper.order(1, &key, &token).await;
                match code {
                    StatusCode::CREATED => {
                        tally.confirmed += 1;
                        if let Some(coupon) = answer["coupon"]["code"].as_str() {
                            // Sent again, the same request gets the same code, never a second.
                            let (again, repeat) = shopper.order(1, &key, &token).await;
                            assert_eq!(again, StatusCode::OK, "{repeat}");
                            assert_eq!(repeat["coupon"]["code"], coupon);
                            tally.codes.push(coupon.to_owned());
                        }
                    }
                    // Every unit left is in a checkout: the turn is kept, try again.
                    StatusCode::CONFLICT if answer["error"]["code"] == "units_reserved" => {
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    }
                    StatusCode::CONFLICT | StatusCode::FORBIDDEN => {
                        let reason = answer["error"]["code"].as_str().unwrap().to_owned();
                        assert!(
                            [
                                "over_limit",
                                "sold_out",
                                "insufficient_stock",
                                "not_admitted"
                            ]
                            .contains(&reason.as_str()),
                            "unexpected refusal {answer}"
                        );
                        break;
                    }
                    other => panic!("unexpected answer {other}: {answer}"),
                }
                assert!(
                    tally.confirmed <= limit,
                    "a shopper bought more than the limit"
                );
            }
            tally
        }));
    }
    let mut total = Tally::default();
    for task in tasks {
        let tally = task.await.expect("a shopper panicked");
        total.confirmed += tally.confirmed;
        total.refused_at_join += tally.refused_at_join;
        total.never_admitted += tally.never_admitted;
        total.over_limit_quantity_refused += tally.over_limit_quantity_refused;
        total.codes.extend(tally.codes);
    }
    total
}

async fn assert_sold_exactly_the_stock(shop: &Storefront, tally: &Tally) {
    assert_eq!(tally.confirmed, STOCK, "{tally:?}");
    assert_eq!(shop.count_orders("confirmed").await, STOCK);
    let db = shop.db().await;
    let (rows, units, most): (i64, i64, i64) = sqlx::query_as(&format!(
        "SELECT COUNT(*), COALESCE(SUM(quantity), 0)::BIGINT, \
                COALESCE(MAX(per_shopper), 0)::BIGINT \
         FROM {s}.orders, LATERAL (SELECT SUM(quantity) AS per_shopper FROM {s}.orders o \
                                   WHERE o.shopper = orders.shopper AND o.status = 'confirmed') p \
         WHERE status = 'confirmed'",
        s = shop.schema
    ))
    .fetch_one(&db)
    .await
    .unwrap();
    assert_eq!((rows, units), (STOCK, STOCK));
    assert!(
        most <= LIMIT,
        "a shopper owns {most} units, over the limit of {LIMIT}"
    );
    let payments: i64 =
        sqlx::query_scalar(&format!("SELECT COUNT(*) FROM {}.payments", shop.schema))
            .fetch_one(&db)
            .await
            .unwrap();
    assert_eq!(payments, STOCK);
    let stats = shop.stats().await;
    assert_eq!(stats["stock"]["remaining"], 0, "{stats}");
    assert_eq!(stats["stock"]["sold"], STOCK, "{stats}");
    assert_eq!(stats["stock"]["reserved"], 0, "{stats}");
    assert_eq!(stats["orders"]["confirmed"], STOCK, "{stats}");
    assert_eq!(stats["state"], "sold_out", "{stats}");
    assert!(tally.over_limit_quantity_refused > 0);
}

fn storm_deal(name: &str) -> DealFile {
    DealFile {
        stock: STOCK,
        limit: LIMIT,
        rate: 200,
        max_active: 150,
        ..DealFile::live(name)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_thousand_shoppers_buy_exactly_the_stock() {
    let redis = RedisServer::start().unwrap();
    let shop = Storefront::start(&redis, &postgres().url(), &storm_deal("storm-one"), &[]);
    let tally = storm(vec![shop.url()], LIMIT).await;
    assert_sold_exactly_the_stock(&shop, &tally).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_replicas_sharing_redis_and_postgres_sell_exactly_the_stock() {
    let redis = RedisServer::start().unwrap();
    let first = Storefront::start(&redis, &postgres().url(), &storm_deal("storm-two"), &[]);
    let second = first.replica(&redis, &[]);
    let tally = storm(vec![first.url(), second.url()], LIMIT).await;
    assert_sold_exactly_the_stock(&first, &tally).await;
    assert_eq!(second.stats().await["stock"]["sold"], STOCK);
}

/// 2,000 shoppers on 100 free coupons, over two replicas: 100 orders, 100 unique codes, none
/// paid for, and each code redeems once (through the portal's own redemption).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_thousand_shoppers_on_a_hundred_coupons_get_a_hundred_unique_codes() {
    let redis = RedisServer::start().unwrap();
    let deal = DealFile {
        deal_price: 0,
        limit: 1,
        ..storm_deal("storm-coupons")
    }
    .fulfilment("coupon");
    // The schema and role the platform gives a deal, where the portal redeems its codes; the
    // storefront connects as the deal, as in a cluster.
    let uid = "5e2a91c0-1d3b-4c8e-b7a2-9f0e6d4c3b21";
    let schema = timedeal_api::storage::schema_for_uid(uid).unwrap();
    let platform = sqlx::PgPool::connect(&postgres().url()).await.unwrap();
    sqlx::raw_sql(&timedeal_testkit::PostgresServer::deal_schema_sql(&schema))
        .execute(&platform)
        .await
        .unwrap();
    for sql in timedeal_api::storage::REGISTRY_DDL {
        sqlx::query(sql).execute(&platform).await.unwrap();
    }
    sqlx::query(
        "INSERT INTO timedeal_platform.deal_schemas (schema, uid, namespace, name, password) \
         VALUES ($1, $2, 'bean-there', 'storm-coupons', 'deal-password')",
    )
    .bind(&schema)
    .bind(uid)
    .execute(&platform)
    .await
    .unwrap();
    let flags = ["--postgres-schema", schema.as_str()];
    let url = timedeal_testkit::as_role(&postgres().url(), &schema);
    let mut first = Storefront::start(&redis, &url, &deal, &flags);
    first.schema = schema.clone();
    let second = first.replica(&redis, &flags);
    let tally = storm(vec![first.url(), second.url()], 1).await;

    assert_eq!(tally.confirmed, STOCK, "{tally:?}");
    let unique: std::collections::HashSet<&String> = tally.codes.iter().collect();
    assert_eq!(unique.len(), STOCK as usize, "every code differs");
    let db = first.db().await;
    let (rows, codes, payments): (i64, i64, i64) = sqlx::query_as(&format!(
        "SELECT COUNT(*), COUNT(DISTINCT coupon_code), (SELECT COUNT(*) FROM {schema}.payments) \
         FROM {schema}.orders WHERE status = 'confirmed'"
    ))
    .fetch_one(&db)
    .await
    .unwrap();
    assert_eq!((rows, codes, payments), (STOCK, STOCK, 0));

    for code in &tally.codes {
        let redeemed =
            timedeal_portal::coupons::redeem(&platform, &postgres().url(), &schema, uid, code)
                .await
                .unwrap_or_else(|e| panic!("{code}: {e}"));
        assert_eq!(&redeemed.code, code);
        let again =
            timedeal_portal::coupons::redeem(&platform, &postgres().url(), &schema, uid, code)
                .await
                .unwrap_err();
        assert_eq!(again.code(), "already_redeemed", "{again}");
    }
}
