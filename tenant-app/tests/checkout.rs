//! Checkout with delivery details and coupon deals, against real Redis and PostgreSQL: details
//! are checked field by field before anything is reserved, kept with the order, offered again,
//! kept out of logs and metrics, and deleted when the retention ends; a coupon deal at price 0
//! takes no payment and gives each order a unique code.

mod common;

use std::{collections::HashSet, time::Duration};

use common::{admitted, client, eventually, postgres, DealFile, Shopper, Storefront};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use timedeal_testkit::RedisServer;

async fn order_with(
    shopper: &Shopper,
    key: &str,
    token: &str,
    delivery: Option<Value>,
) -> (StatusCode, Value) {
    let mut body = json!({"quantity": 1, "idempotencyKey": key, "admissionToken": token});
    if let Some(delivery) = delivery {
        body["delivery"] = delivery;
    }
    shopper.send(Method::POST, "/api/orders", Some(body)).await
}

/// Details no log line or metric may ever show.
const NAME: &str = "Grace Brewster Hopper";
const PHONE: &str = "+1 212 555 0147";
const STREET: &str = "1 Naval Observatory Circle";

fn details() -> Value {
    json!({
        "name": NAME,
        "phone": PHONE,
        "address": {"line1": STREET, "city": "Arlington", "postalCode": "QZ7-XK9", "country": "us"}
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_shipping_checkout_takes_checked_details_and_keeps_them_out_of_logs() {
    let redis = RedisServer::start().unwrap();
    let deal = DealFile {
        stock: 5,
        ..DealFile::live("shipping-checkout")
    }
    .fulfilment("shipping");
    let shop = Storefront::start(&redis, &postgres().url(), &deal, &[]);
    shop.queue_open().await;
    let (shopper, token) = admitted(&shop).await;

    let (code, deal_view) = shopper.send(Method::GET, "/api/deal", None).await;
    assert_eq!(code, StatusCode::OK);
    assert_eq!(deal_view["product"]["fulfilment"], "shipping");

    // Nothing given, then everything wrong: each refusal names the fields and reserves nothing.
    let (code, refused) = order_with(&shopper, "k-1", &token, None).await;
    assert_eq!(code, StatusCode::BAD_REQUEST, "{refused}");
    assert_eq!(refused["error"]["code"], "invalid_delivery");
    assert!(
        refused["error"]["fields"]["delivery"].is_string(),
        "{refused}"
    );
    let wrong = json!({
        "name": "",
        "phone": "call me",
        "address": {"line1": STREET, "city": "", "postalCode": "!", "country": "USA"}
    });
    let (code, refused) = order_with(&shopper, "k-1", &token, Some(wrong)).await;
    assert_eq!(code, StatusCode::BAD_REQUEST, "{refused}");
    let fields: Vec<&str> = refused["error"]["fields"]
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    assert_eq!(
        fields,
        [
            "delivery.address.city",
            "delivery.address.country",
            "delivery.address.postalCode",
            "delivery.name",
            "delivery.phone"
        ]
    );
    let stats = shop.stats().await;
    assert_eq!(stats["stock"]["reserved"], 0, "{stats}");
    assert_eq!(stats["stock"]["sold"], 0, "{stats}");
    let (code, _) = shopper.send(Method::GET, "/api/delivery", None).await;
    assert_eq!(
        code,
        StatusCode::NOT_FOUND,
        "no details are kept from refused orders"
    );

    // Right details: the order carries them, tidied, and the next order is offered them.
    let (code, order) = order_with(&shopper, "k-1", &token, Some(details())).await;
    assert_eq!(code, StatusCode::CREATED, "{order}");
    assert_eq!(order["delivery"]["name"], NAME);
    assert_eq!(order["delivery"]["address"]["country"], "US");
    let (code, last) = shopper.send(Method::GET, "/api/delivery", None).await;
    assert_eq!(code, StatusCode::OK, "{last}");
    assert_eq!(last["phone"], PHONE);
    assert_eq!(last["address"]["line1"], STREET);
    let listed = shopper.orders().await;
    assert_eq!(listed[0]["delivery"]["address"]["city"], "Arlington");

    // Another shopper is offered nothing.
    let stranger = Shopper::new(&client(), &shop.url());
    let (code, _) = stranger.send(Method::GET, "/api/delivery", None).await;
    assert_eq!(code, StatusCode::NOT_FOUND);

    // Neither the log nor the metrics hold any of it.
    let metrics = common::get_text(&format!("{}/metrics", shop.url())).await;
    let log = shop.service.log();
    assert!(
        log.contains("listening") || !log.is_empty(),
        "the log is captured"
    );
    for secret in [NAME, PHONE, STREET, "Arlington", "QZ7-XK9"] {
        assert!(!log.contains(secret), "the log shows {secret:?}");
        assert!(!metrics.contains(secret), "the metrics show {secret:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pickup_takes_a_name_and_phone_and_digital_takes_nothing() {
    let redis = RedisServer::start().unwrap();
    let pickup = DealFile::live("pickup-checkout").fulfilment("pickup");
    let shop = Storefront::start(&redis, &postgres().url(), &pickup, &[]);
    shop.queue_open().await;
    let (shopper, token) = admitted(&shop).await;
    let (code, refused) = order_with(&shopper, "k-1", &token, Some(details())).await;
    assert_eq!(code, StatusCode::BAD_REQUEST, "{refused}");
    assert!(refused["error"]["fields"]["delivery.address"].is_string());
    let (code, order) = order_with(
        &shopper,
        "k-1",
        &token,
        Some(json!({"name": NAME, "phone": PHONE})),
    )
    .await;
    assert_eq!(code, StatusCode::CREATED, "{order}");
    assert!(order["delivery"]["address"].is_null());

    let digital = DealFile::live("digital-checkout").fulfilment("digital");
    let shop = Storefront::start(&redis, &postgres().url(), &digital, &[]);
    shop.queue_open().await;
    let (shopper, token) = admitted(&shop).await;
    let (code, refused) = order_with(&shopper, "k-1", &token, Some(details())).await;
    assert_eq!(code, StatusCode::BAD_REQUEST, "{refused}");
    assert_eq!(refused["error"]["code"], "invalid_delivery");
    let (code, order) = order_with(&shopper, "k-1", &token, None).await;
    assert_eq!(code, StatusCode::CREATED, "{order}");
    assert!(order.get("delivery").is_none(), "{order}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delivery_details_are_deleted_when_the_retention_ends() {
    let redis = RedisServer::start().unwrap();
    let deal = DealFile {
        lasts: 12,
        retention: Some("3s"),
        ..DealFile::live("retained-details")
    }
    .fulfilment("shipping");
    let shop = Storefront::start(&redis, &postgres().url(), &deal, &[]);
    shop.queue_open().await;
    let (shopper, token) = admitted(&shop).await;
    let (code, order) = order_with(&shopper, "k-1", &token, Some(details())).await;
    assert_eq!(code, StatusCode::CREATED, "{order}");
    let id = order["id"].as_i64().unwrap();
    let db = shop.db().await;
    let rows = format!("SELECT COUNT(*) FROM {}.deliveries", shop.schema);
    let count: i64 = sqlx::query_scalar(&rows).fetch_one(&db).await.unwrap();
    assert_eq!(count, 1);

    // The deal ends 12 s after its start and its retention 3 s later.
    eventually(
        "the details to be deleted",
        Duration::from_secs(30),
        || async {
            let count: i64 = sqlx::query_scalar(&rows).fetch_one(&db).await.unwrap();
            count == 0
        },
    )
    .await;
    let listed = shopper.orders().await;
    assert_eq!(listed[0]["id"], id, "the order itself stays");
    assert_eq!(listed[0]["status"], "confirmed");
    assert!(listed[0].get("delivery").is_none(), "{}", listed[0]);
    let (code, answer) = shopper.send(Method::GET, "/api/delivery", None).await;
    assert_eq!(code, StatusCode::NOT_FOUND);
    let message = answer["error"]["message"].as_str().unwrap();
    assert!(message.contains("retention ended"), "{message}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_free_coupon_deal_takes_no_payment_and_gives_each_order_its_own_code() {
    let redis = RedisServer::start().unwrap();
    let deal = DealFile {
        deal_price: 0,
        stock: 3,
        limit: 1,
        ..DealFile::live("free-coupons")
    }
    .fulfilment("coupon");
    let shop = Storefront::start(&redis, &postgres().url(), &deal, &[]);
    shop.queue_open().await;
    let mut codes = HashSet::new();
    let mut buyers = Vec::new();
    for i in 0..3 {
        let (shopper, token) = admitted(&shop).await;
        let (code, order) = order_with(&shopper, &format!("k-{i}"), &token, None).await;
        assert_eq!(code, StatusCode::CREATED, "{order}");
        assert_eq!(order["amount"], 0);
        let coupon = &order["coupon"];
        assert!(codes.insert(coupon["code"].as_str().unwrap().to_owned()));
        assert!(coupon["validUntil"].is_string());
        assert!(coupon["redeemedAt"].is_null());
        // The same request again gives the same code, never a second one.
        let (code, again) = order_with(&shopper, &format!("k-{i}"), &token, None).await;
        assert_eq!(code, StatusCode::OK, "{again}");
        assert_eq!(again["coupon"]["code"], coupon["code"]);
        buyers.push((shopper, order["id"].as_i64().unwrap()));
    }
    assert_eq!(codes.len(), 3);
    eventually("the deal to sell out", Duration::from_secs(5), || async {
        let (_, deal_view) = buyers[0].0.send(Method::GET, "/api/deal", None).await;
        deal_view["state"] == "sold_out"
    })
    .await;
    let db = shop.db().await;
    let payments: i64 =
        sqlx::query_scalar(&format!("SELECT COUNT(*) FROM {}.payments", shop.schema))
            .fetch_one(&db)
            .await
            .unwrap();
    assert_eq!(payments, 0, "nothing was paid");

    // An unredeemed coupon can be cancelled (nothing to refund); a redeemed one cannot.
    let (shopper, id) = &buyers[0];
    let (code, cancelled) = shopper.cancel(*id).await;
    assert_eq!(code, StatusCode::OK, "{cancelled}");
    assert_eq!(cancelled["status"], "cancelled");
    let (shopper, id) = &buyers[1];
    sqlx::query(&format!(
        "UPDATE {}.orders SET coupon_redeemed_at = now() WHERE id = $1",
        shop.schema
    ))
    .bind(id)
    .execute(&db)
    .await
    .unwrap();
    let (code, refused) = shopper.cancel(*id).await;
    assert_eq!(code, StatusCode::CONFLICT, "{refused}");
    assert_eq!(refused["error"]["code"], "coupon_redeemed");
    assert_eq!(shopper.orders().await[0]["status"], "confirmed");
    let (code, deal_view) = shopper.send(Method::GET, "/api/deal", None).await;
    assert_eq!(code, StatusCode::OK);
    assert_eq!(deal_view["product"]["fulfilment"], "coupon");
    assert!(deal_view["product"]["couponsValidUntil"].is_string());
}
