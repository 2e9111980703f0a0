//! The fair queue, against real Redis: FIFO under concurrency, the pre-queue drawn once at the
//! start, a refresh keeping one's place, admission tokens that cannot be forged, reused or
//! shared, and a sellout that reaches everyone waiting at once.

mod common;

use std::{collections::HashSet, time::Duration};

use base64::{engine::general_purpose::URL_SAFE_NO_PAD as B64, Engine};
use common::{client, eventually, postgres, DealFile, Shopper, Storefront, SECRET};
use futures_util::StreamExt;
use reqwest::StatusCode;
use timedeal_tenant_app::tokens::{Admission, Signer};
use timedeal_testkit::RedisServer;

/// The join number inside an admission token.
fn nonce(token: &str) -> u64 {
    let body = B64.decode(token.split('.').next().unwrap()).unwrap();
    let body = String::from_utf8(body).unwrap();
    body.rsplit('|').nth(1).unwrap().parse().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn arrivals_are_admitted_first_come_first_served() {
    let redis = RedisServer::start().unwrap();
    let deal = DealFile {
        rate: 20,
        stock: 1000,
        ..DealFile::live("fifo")
    };
    let shop = Storefront::start(&redis, &postgres().url(), &deal, &[]);
    shop.queue_open().await;
    let client = client();
    let joins = (0..60).map(|_| {
        let shopper = Shopper::new(&client, &shop.url());
        async move {
            let (code, status) = shopper.join().await;
            assert_eq!(code, StatusCode::OK, "{status}");
            (shopper, status)
        }
    });
    let joined = futures_util::future::join_all(joins).await;
    let mut tickets: Vec<u64> = Vec::new();
    let mut shoppers = Vec::new();
    for (shopper, status) in joined {
        // Anyone admitted straight away had the lowest tickets; the rest carry theirs.
        if let Some(ticket) = status["ticket"].as_u64() {
            tickets.push(ticket);
            shoppers.push((ticket, shopper));
        }
    }
    let unique: HashSet<u64> = tickets.iter().copied().collect();
    assert_eq!(unique.len(), tickets.len(), "two shoppers share a ticket");
    assert!(tickets.len() >= 40, "most shoppers should still be waiting");

    let waits = shoppers.into_iter().map(|(_, shopper)| async move {
        shopper
            .wait_for_turn(Duration::from_secs(30))
            .await
            .expect("admitted");
    });
    futures_util::future::join_all(waits).await;
    // The admission log records who was admitted, step by step: every ticket, in its order.
    let log: Vec<u64> = shop
        .admissions()
        .await
        .into_iter()
        .map(|(place, _)| place)
        .collect();
    assert!(
        log.windows(2).all(|pair| pair[0] < pair[1]),
        "admitted out of order: {log:?}"
    );
    tickets.sort();
    let admitted_waiting: Vec<u64> = log
        .iter()
        .copied()
        .filter(|place| unique.contains(place))
        .collect();
    assert_eq!(
        admitted_waiting, tickets,
        "a waiting shopper was passed over"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_pre_queue_is_drawn_at_random_once_at_the_start() {
    let redis = RedisServer::start().unwrap();
    let deal = DealFile {
        starts_in: 4,
        rate: 1,
        max_active: 1,
        ..DealFile::live("pre-queue")
    };
    let shop = Storefront::start(&redis, &postgres().url(), &deal, &[]);
    let client = client();
    let mut early = Vec::new();
    for _ in 0..30 {
        let shopper = Shopper::new(&client, &shop.url());
        let (code, status) = shopper.join().await;
        assert_eq!(code, StatusCode::OK, "{status}");
        assert_eq!(status["state"], "pre_queue");
        assert_eq!(status["estimateKnown"], false);
        early.push(shopper);
    }
    // Refreshing before the start changes nothing.
    let (_, again) = early[0].join().await;
    assert_eq!(again["state"], "pre_queue");

    eventually("the start", Duration::from_secs(10), || async {
        early[1].status().await["deal"] == "live"
    })
    .await;
    // The draw waits for the beacon's first round after the start; then the first place is
    // admitted.
    eventually("the first admission", Duration::from_secs(10), || async {
        for shopper in &early {
            if shopper.status().await["state"] == "admitted" {
                return true;
            }
        }
        false
    })
    .await;
    let late = Shopper::new(&client, &shop.url());
    let (_, late_status) = late.join().await;

    let mut tickets = Vec::new();
    for shopper in early.iter() {
        let status = shopper.status().await;
        match status["state"].as_str().unwrap() {
            "waiting" => tickets.push(status["ticket"].as_u64().unwrap()),
            "admitted" => tickets.push(0),
            other => panic!("unexpected state {other}: {status}"),
        }
    }
    let mut sorted = tickets.clone();
    sorted.sort();
    // One shopper was admitted at once (ticket 1, shown as 0); the others hold 2..=30.
    let expected: Vec<u64> = std::iter::once(0).chain(2..=30).collect();
    assert_eq!(sorted, expected);
    let joined_in_order: Vec<u64> = (1..=30).collect();
    assert_ne!(
        tickets
            .iter()
            .map(|t| if *t == 0 { 1 } else { *t })
            .collect::<Vec<_>>(),
        joined_in_order,
        "the pre-queue kept its arrival order"
    );
    // After the start, arrivals queue behind the whole pre-queue.
    assert_eq!(late_status["ticket"], 31, "{late_status}");

    // Drawn once: asking again, and refreshing, keeps every ticket.
    for (shopper, ticket) in early.iter().zip(&tickets) {
        if *ticket == 0 {
            continue;
        }
        let (_, status) = shopper.join().await;
        assert_eq!(status["ticket"].as_u64(), Some(*ticket));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refresh_or_second_tab_keeps_the_place() {
    let redis = RedisServer::start().unwrap();
    let deal = DealFile {
        rate: 1,
        max_active: 1,
        ..DealFile::live("refresh")
    };
    let shop = Storefront::start(&redis, &postgres().url(), &deal, &[]);
    shop.queue_open().await;
    let client = client();
    let first = Shopper::new(&client, &shop.url());
    first.join().await;
    let shopper = Shopper::new(&client, &shop.url());
    let (_, joined) = shopper.join().await;
    assert_eq!(joined["state"], "waiting", "{joined}");
    let ticket = joined["ticket"].clone();

    let (_, refreshed) = shopper.join().await;
    assert_eq!(refreshed["ticket"], ticket);
    // A second tab carries the same cookies: the session and the ticket.
    let tab = shopper.tab();
    assert_eq!(tab.status().await["ticket"], ticket);
    assert_eq!(tab.join().await.1["ticket"], ticket);

    let newcomer = Shopper::new(&client, &shop.url());
    let (_, behind) = newcomer.join().await;
    assert!(behind["ticket"].as_u64() > ticket.as_u64(), "{behind}");
    assert!(behind["position"].as_u64() > joined["position"].as_u64());
    assert!(behind["pollAfterMs"].as_u64().unwrap() >= 500);
}

/// The public head: the same bytes for every shopper (no session read or set), cacheable with
/// an ETag, and a waiting shopper's position is their place less the head.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_public_head_is_the_same_for_everyone_cacheable_and_gives_each_position() {
    let redis = RedisServer::start().unwrap();
    let deal = DealFile {
        rate: 1,
        max_active: 1,
        ..DealFile::live("public-head")
    };
    let shop = Storefront::start(&redis, &postgres().url(), &deal, &[]);
    shop.queue_open().await;
    let client = client();
    let first = Shopper::new(&client, &shop.url());
    first.join().await;
    let waiting = Shopper::new(&client, &shop.url());
    let (_, joined) = waiting.join().await;
    assert_eq!(joined["state"], "waiting", "{joined}");

    let url = format!("{}/api/queue/head", shop.url());
    // Two shoppers' browsers and a bare client, within one second: the same bytes.
    let (bodies, answers) = loop {
        let mut bodies = Vec::new();
        let mut answers = Vec::new();
        for asker in [reqwest::Client::new(), client.clone(), common::client()] {
            let answer = asker.get(&url).send().await.unwrap();
            assert_eq!(answer.status(), StatusCode::OK);
            answers.push(answer.headers().clone());
            bodies.push(answer.bytes().await.unwrap());
        }
        if bodies.iter().all(|b| *b == bodies[0]) {
            break (bodies, answers);
        }
        // A second turned between the asks: ask again.
    };
    let headers = &answers[0];
    assert_eq!(
        headers["cache-control"],
        "public, max-age=1, stale-while-revalidate=2"
    );
    assert!(headers.get("set-cookie").is_none(), "no session is set");
    let etag = headers["etag"].to_str().unwrap().to_owned();
    assert!(answers.iter().all(|h| h["etag"] == etag.as_str()));
    let head: serde_json::Value = serde_json::from_slice(&bodies[0]).unwrap();
    for field in [
        "head",
        "epoch",
        "deal",
        "waiting",
        "stockRemaining",
        "serverTime",
        "drawCommitment",
    ] {
        assert!(!head[field].is_null(), "{field} in {head}");
    }

    // A shopper computes their own position from their place and the head.
    let status = waiting.status().await;
    let place = status["ticket"].as_u64().unwrap();
    let fresh: serde_json::Value = client.get(&url).send().await.unwrap().json().await.unwrap();
    assert_eq!(
        place - fresh["head"].as_u64().unwrap(),
        status["position"].as_u64().unwrap(),
        "position = place - head: {fresh} {status}"
    );

    // A cache revalidating with the (weak) ETag it holds gets 304 while the line is the same,
    // a second later too, and whether or not a proxy weakened the tag; a 200 comes only with a
    // new tag (the line moved).
    assert!(etag.starts_with("W/\""), "{etag}");
    let mut not_modified = 0;
    for _ in 0..5 {
        let held = reqwest::Client::new()
            .get(&url)
            .send()
            .await
            .unwrap()
            .headers()["etag"]
            .to_str()
            .unwrap()
            .to_owned();
        tokio::time::sleep(Duration::from_millis(1100)).await;
        for tag in [held.clone(), held.trim_start_matches("W/").to_owned()] {
            let revalidated = reqwest::Client::new()
                .get(&url)
                .header("if-none-match", &tag)
                .send()
                .await
                .unwrap();
            if revalidated.status() == StatusCode::NOT_MODIFIED {
                assert_eq!(revalidated.headers()["etag"], held.as_str());
                not_modified += 1;
            } else {
                assert_ne!(
                    revalidated.headers()["etag"],
                    held.as_str(),
                    "200 with the same tag"
                );
            }
        }
        if not_modified >= 2 {
            break;
        }
    }
    assert!(not_modified >= 2, "a still line revalidates as 304");

    // The event stream carries the same head, as `head` events.
    let mut events = client
        .get(format!("{}/api/events", shop.url()))
        .header("x-timedeal-session", waiting.session().unwrap())
        .header("x-timedeal-ticket", waiting.ticket().unwrap())
        .send()
        .await
        .unwrap()
        .bytes_stream();
    let streamed = tokio::time::timeout(Duration::from_secs(5), async {
        let mut text = String::new();
        while let Some(chunk) = events.next().await {
            text.push_str(&String::from_utf8_lossy(&chunk.unwrap()));
            if let Some(at) = text.find("event: head\ndata: ") {
                let rest = &text[at + "event: head\ndata: ".len()..];
                if let Some(end) = rest.find('\n') {
                    return serde_json::from_str::<serde_json::Value>(&rest[..end]).unwrap();
                }
            }
        }
        panic!("the event stream ended");
    })
    .await
    .expect("a head event within seconds");
    let asked: serde_json::Value = client.get(&url).send().await.unwrap().json().await.unwrap();
    for field in ["head", "epoch", "deal", "drawCommitment"] {
        assert_eq!(streamed[field], asked[field], "{field}: {streamed} {asked}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forged_expired_replayed_and_foreign_tokens_are_refused() {
    let redis = RedisServer::start().unwrap();
    let deal = DealFile {
        limit: 1,
        session_ttl: "3s",
        ..DealFile::live("tokens")
    };
    let shop = Storefront::start(&redis, &postgres().url(), &deal, &[]);
    shop.queue_open().await;
    let client = client();
    let alice = Shopper::new(&client, &shop.url());
    alice.join().await;
    let token = alice.wait_for_turn(Duration::from_secs(10)).await.unwrap();
    let bob = Shopper::new(&client, &shop.url());
    bob.join().await;
    let bob_token = bob.wait_for_turn(Duration::from_secs(10)).await.unwrap();

    let refused = |answer: &serde_json::Value, code: &str| {
        assert_eq!(answer["error"]["code"], code, "{answer}");
    };
    // Made up.
    let (code, answer) = alice.order(1, "forged-1", "bm90.YSB0b2tlbg").await;
    assert_eq!(code, StatusCode::FORBIDDEN);
    refused(&answer, "admission_forged");
    let (code, answer) = alice.order(1, "forged-2", "garbage").await;
    assert_eq!(code, StatusCode::FORBIDDEN);
    refused(&answer, "admission_malformed");
    // Signed with another secret, with a far expiry.
    let alice_id = alice_id(&token);
    let forged = Signer::new(b"not-the-deal-secret-not-the-deal!").admission_token(&Admission {
        deal: "tokens".into(),
        shopper: alice_id.clone(),
        epoch: 1,
        nonce: nonce(&token),
        expires_ms: i64::MAX / 2,
    });
    refused(
        &alice.order(1, "forged-3", &forged).await.1,
        "admission_forged",
    );
    // Another deal's token (same platform secret).
    let elsewhere = Signer::new(SECRET.as_bytes()).admission_token(&Admission {
        deal: "another-deal".into(),
        shopper: alice_id,
        epoch: 1,
        nonce: nonce(&token),
        expires_ms: i64::MAX / 2,
    });
    refused(
        &alice.order(1, "other-deal", &elsewhere).await.1,
        "admission_other_deal",
    );
    // Bob's token in Alice's hands.
    refused(
        &alice.order(1, "foreign", &bob_token).await.1,
        "admission_foreign",
    );

    // Used up: after buying her limit, Alice's admission ends and the token is spent.
    let (code, order) = alice.order(1, "real", &token).await;
    assert_eq!(code, StatusCode::CREATED, "{order}");
    let (code, answer) = alice.order(1, "replay", &token).await;
    assert_eq!(code, StatusCode::FORBIDDEN, "{answer}");
    refused(&answer, "not_admitted");

    // Expired: Bob waits past the session TTL.
    tokio::time::sleep(Duration::from_millis(3200)).await;
    let (code, answer) = bob.order(1, "too-late", &bob_token).await;
    assert_eq!(code, StatusCode::FORBIDDEN);
    refused(&answer, "admission_expired");

    assert_eq!(shop.count_orders("confirmed").await, 1);
    assert_eq!(shop.stats().await["stock"]["sold"], 1);
}

fn alice_id(token: &str) -> String {
    let body = String::from_utf8(B64.decode(token.split('.').next().unwrap()).unwrap()).unwrap();
    let mut parts = body.splitn(2, '|');
    parts.next();
    let rest = parts.next().unwrap();
    let mut tail = rest.rsplitn(4, '|');
    tail.next();
    tail.next();
    tail.next();
    tail.next().unwrap().to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sellout_pauses_everyone_waiting_at_once() {
    let redis = RedisServer::start().unwrap();
    let deal = DealFile {
        stock: 3,
        limit: 1,
        rate: 3,
        max_active: 3,
        ..DealFile::live("sellout")
    };
    let shop = Storefront::start(&redis, &postgres().url(), &deal, &[]);
    shop.queue_open().await;
    let client = client();
    let mut buyers = Vec::new();
    for _ in 0..3 {
        let shopper = Shopper::new(&client, &shop.url());
        shopper.join().await;
        buyers.push(shopper);
    }
    let mut waiting = Vec::new();
    for _ in 0..20 {
        let shopper = Shopper::new(&client, &shop.url());
        let (_, status) = shopper.join().await;
        assert_eq!(status["state"], "waiting", "{status}");
        waiting.push(shopper);
    }
    // Everyone behind the first three is told they will likely miss out.
    assert_eq!(waiting[19].status().await["likelySoldOut"], true);

    // One waiting shopper follows the live updates.
    let mut events = client
        .get(format!("{}/api/events", shop.url()))
        .header("x-timedeal-session", waiting[10].session().unwrap())
        .header("x-timedeal-ticket", waiting[10].ticket().unwrap())
        .send()
        .await
        .unwrap()
        .bytes_stream();
    let first = events.next().await.unwrap().unwrap();
    assert!(String::from_utf8_lossy(&first).contains("\"state\":\"waiting\""));

    for (i, buyer) in buyers.iter().enumerate() {
        let token = buyer.wait_for_turn(Duration::from_secs(10)).await.unwrap();
        let (code, order) = buyer.order(1, &format!("buy-{i}"), &token).await;
        assert_eq!(code, StatusCode::CREATED, "{order}");
    }

    let told = tokio::time::timeout(Duration::from_secs(3), async {
        while let Some(chunk) = events.next().await {
            let text = String::from_utf8_lossy(&chunk.unwrap()).to_string();
            if text.contains("\"deal\":\"sold_out\"") {
                return text;
            }
        }
        panic!("the event stream ended");
    })
    .await
    .expect("the live update announces the sellout");
    // Units can still come back through cancellations: everyone keeps their place, told why
    // the line stands still.
    assert!(told.contains("\"state\":\"paused\""), "{told}");
    assert!(
        told.contains("\"pausedBecause\":\"awaiting_cancellations\""),
        "{told}"
    );
    for (i, shopper) in waiting.iter().enumerate() {
        let status = shopper.status().await;
        assert_eq!(status["state"], "paused", "{status}");
        assert_eq!(status["deal"], "sold_out");
        assert_eq!(status["position"], i as u64 + 1, "{status}");
    }
    let latecomer = Shopper::new(&client, &shop.url());
    let (code, answer) = latecomer.join().await;
    assert_eq!(code, StatusCode::CONFLICT);
    assert_eq!(answer["error"]["code"], "sold_out");
}

/// A Redis that gives a published place again (as one that came back behind does) is caught by
/// the publication of the admission log: the entry never joins the log, whose served entries
/// stay as they were, and Redis's figures are restored into a new epoch.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_place_given_again_never_joins_the_log_and_redis_is_restored() {
    let redis = RedisServer::start().unwrap();
    let deal = DealFile::live("regiven");
    let shop = Storefront::start(&redis, &postgres().url(), &deal, &[]);
    for _ in 0..2 {
        common::admitted(&shop).await;
    }
    let before = shop.admissions().await;
    assert_eq!(before.len(), 2, "{before:?}");

    let mut connection = redis::Client::open(redis.url())
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap();
    let prefix = timedeal_tenant_app::app::key_prefix("regiven");
    let (reader, deal_key) = (connection.clone(), format!("{prefix}deal"));
    let epoch = move || {
        let (mut connection, key) = (reader.clone(), deal_key.clone());
        async move {
            redis::cmd("HGET")
                .arg(key)
                .arg("epoch")
                .query_async::<Option<i64>>(&mut connection)
                .await
                .unwrap()
        }
    };
    let first = epoch().await.expect("figures restored at the start");
    // The first place, given to another number in the current epoch.
    let (place, number) = before[0];
    let _: () = redis::cmd("RPUSH")
        .arg(format!("{prefix}log"))
        .arg(format!("{first}|{} {place}:{}", 1_000, number + 1000))
        .query_async(&mut connection)
        .await
        .unwrap();

    eventually(
        "Redis's figures restored",
        Duration::from_secs(10),
        || async { epoch().await.is_some_and(|now| now > first) },
    )
    .await;
    let after = shop.admissions().await;
    assert_eq!(
        after, before,
        "the log kept what it served, and nothing else"
    );
    let staged: i64 = redis::cmd("LLEN")
        .arg(format!("{prefix}log"))
        .query_async(&mut connection)
        .await
        .unwrap();
    assert_eq!(staged, 0, "the judged line left Redis");
}
