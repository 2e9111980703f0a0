//! A shopper in a real headless Chromium, driven over WebDriver (chromedriver): the countdown,
//! the pre-queue, their turn, an order, and its cancellation. Screenshots of each step go to
//! `$TIMEDEAL_SCREENSHOTS` (default `target/screenshots`); `make screenshots` refreshes the ones
//! the README shows.

mod common;

use std::time::Duration;

use common::{postgres, DealFile, Storefront};
use fantoccini::Locator;
use timedeal_testkit::{
    browser::{click, shot, text, wait_text, ChromeDriver},
    RedisServer,
};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_shopper_goes_from_countdown_to_cancel_in_chromium() {
    let redis = RedisServer::start().unwrap();
    let deal = DealFile {
        starts_in: 8,
        stock: 5,
        limit: 2,
        rate: 10,
        ..DealFile::live("browser-walk")
    };
    let shop = Storefront::start(&redis, &postgres().url(), &deal, &[]);
    let driver = ChromeDriver::start();
    let client = driver.browser(430, 1000).await;
    let run = async {
        client.goto(&shop.url()).await.unwrap();
        let countdown = wait_text(&client, "countdown", Duration::from_secs(5), |t| {
            t.contains(':')
        })
        .await;
        assert!(countdown.starts_with("00:0"), "{countdown}");
        assert_eq!(text(&client, "state-banner").await, "Starts soon");
        assert!(text(&client, "deal-price").await.contains("99.00 USD"));
        wait_text(&client, "queue-message", Duration::from_secs(5), |t| {
            t.contains("pre-queue is open")
        })
        .await;
        shot(&client, "1-countdown.png").await;

        click(&client, Locator::Id("join-button")).await;
        wait_text(&client, "queue-message", Duration::from_secs(5), |t| {
            t == "You are in the pre-queue."
        })
        .await;
        shot(&client, "2-pre-queue.png").await;

        wait_text(&client, "queue-message", Duration::from_secs(20), |t| {
            t == "It's your turn!"
        })
        .await;
        assert_eq!(text(&client, "state-banner").await, "Live now");
        shot(&client, "3-your-turn.png").await;

        click(&client, Locator::Css("#quantity option[value='2']")).await;
        click(&client, Locator::Id("buy-button")).await;
        let result = wait_text(&client, "order-result", Duration::from_secs(10), |t| {
            t.starts_with("Confirmed")
        })
        .await;
        assert!(result.contains("2 × 99.00 USD"), "{result}");
        wait_text(&client, "orders-list", Duration::from_secs(5), |t| {
            t.contains("confirmed")
        })
        .await;
        wait_text(&client, "stock-remaining", Duration::from_secs(5), |t| {
            t == "3"
        })
        .await;
        wait_text(&client, "queue-message", Duration::from_secs(5), |t| {
            t.contains("bought your limit of 2")
        })
        .await;
        shot(&client, "4-confirmed.png").await;

        click(&client, Locator::Css(".cancel-button")).await;
        wait_text(&client, "order-result", Duration::from_secs(10), |t| {
            t.contains("cancelled and refunded")
        })
        .await;
        wait_text(&client, "orders-list", Duration::from_secs(5), |t| {
            t.contains("cancelled")
        })
        .await;
        wait_text(&client, "stock-remaining", Duration::from_secs(10), |t| {
            t == "5"
        })
        .await;
        shot(&client, "5-cancelled.png").await;
    };
    run.await;
    client.close().await.unwrap();
    assert_eq!(shop.count_orders("cancelled").await, 1);
    assert_eq!(shop.count_orders("confirmed").await, 0);
}

/// With `queue.joinChallenge` on, the page solves the join puzzle in a Web Worker and joins.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_page_solves_the_join_puzzle_in_chromium() {
    let redis = RedisServer::start().unwrap();
    let deal = DealFile {
        join_challenge: Some(16),
        ..DealFile::live("browser-puzzle")
    };
    let shop = Storefront::start(&redis, &postgres().url(), &deal, &[]);
    let driver = ChromeDriver::start();
    let client = driver.browser(430, 1000).await;
    let run = async {
        join_and_wait_for_turn(&client, &shop).await;
        shot(&client, "puzzle-solved.png").await;
    };
    run.await;
    client.close().await.unwrap();
    let admitted = shop.admissions().await;
    assert_eq!(admitted.len(), 1, "one shopper admitted: {admitted:?}");
}

/// A shopper waiting behind another follows the line on the new protocol: the page reads the
/// public head, computes its own position and pings to keep its place; when the one ahead
/// leaves, the head reaches it and the page gets its turn.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_waiting_page_follows_the_public_head_and_pings_until_its_turn() {
    let redis = RedisServer::start().unwrap();
    let deal = DealFile {
        rate: 100,
        max_active: 1,
        ..DealFile::live("browser-head")
    };
    let shop = Storefront::start(&redis, &postgres().url(), &deal, &[]);
    shop.queue_open().await;
    // Someone ahead holds the one admission.
    let ahead = common::Shopper::new(&common::client(), &shop.url());
    ahead.join().await;
    ahead.wait_for_turn(Duration::from_secs(10)).await.unwrap();
    let driver = ChromeDriver::start();
    let client = driver.browser(430, 1000).await;
    let run = async {
        client.goto(&shop.url()).await.unwrap();
        wait_text(&client, "queue-message", Duration::from_secs(5), |t| {
            t == "Join the queue to buy."
        })
        .await;
        click(&client, Locator::Id("join-button")).await;
        wait_text(&client, "queue-message", Duration::from_secs(10), |t| {
            t.starts_with("You are number 1 in line")
        })
        .await;
        // A few seconds on the head and pings, while the one ahead keeps its turn.
        for _ in 0..8 {
            ahead.status().await;
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        let served = |route: &str| {
            let route = route.to_owned();
            let url = format!("{}/metrics", shop.url());
            async move {
                let text = common::get_text(&url).await;
                text.lines()
                    .filter(|l| l.starts_with("timedeal_http_request_duration_seconds_count"))
                    .filter(|l| l.contains(&format!("route=\"{route}\"")))
                    .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
                    .sum::<u64>()
            }
        };
        assert!(
            served("/api/queue/head").await >= 3,
            "the page reads the head"
        );
        assert!(served("/api/queue/ping").await >= 1, "the page pings");
        assert_eq!(
            text(&client, "queue-message").await,
            "You are number 1 in line (1 waiting).",
            "computed from its place and the head"
        );
        let (code, _) = ahead
            .send(reqwest::Method::DELETE, "/api/queue", None)
            .await;
        assert_eq!(code, reqwest::StatusCode::NO_CONTENT);
        wait_text(&client, "queue-message", Duration::from_secs(15), |t| {
            t == "It's your turn!"
        })
        .await;
        shot(&client, "queue-head.png").await;
    };
    run.await;
    client.close().await.unwrap();
}

/// Opens a live deal's page, joins the queue and waits for the shopper's turn.
async fn join_and_wait_for_turn(client: &fantoccini::Client, shop: &Storefront) {
    client.goto(&shop.url()).await.unwrap();
    wait_text(client, "queue-message", Duration::from_secs(5), |t| {
        t == "Join the queue to buy."
    })
    .await;
    click(client, Locator::Id("join-button")).await;
    wait_text(client, "queue-message", Duration::from_secs(30), |t| {
        t == "It's your turn!"
    })
    .await;
}

/// Types `value` into the input named by its request path (`delivery.name`).
async fn fill(client: &fantoccini::Client, path: &str, value: &str) {
    let input = client
        .find(Locator::Css(&format!("[name='{path}']")))
        .await
        .unwrap_or_else(|e| panic!("no input {path}: {e}"));
    input.clear().await.unwrap();
    input.send_keys(value).await.unwrap();
}

async fn value_of(client: &fantoccini::Client, path: &str) -> String {
    client
        .find(Locator::Css(&format!("[name='{path}']")))
        .await
        .unwrap()
        .prop("value")
        .await
        .unwrap()
        .unwrap_or_default()
}

/// A shipping checkout: the details are refused field by field, accepted once right, shown on
/// the order, and offered again on the next visit.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_shipping_checkout_marks_each_wrong_field_and_offers_the_details_again() {
    let redis = RedisServer::start().unwrap();
    let deal = DealFile {
        stock: 5,
        limit: 2,
        ..DealFile::live("browser-shipping")
    }
    .fulfilment("shipping");
    let shop = Storefront::start(&redis, &postgres().url(), &deal, &[]);
    shop.queue_open().await;
    let driver = ChromeDriver::start();
    let client = driver.browser(430, 1300).await;
    let run = async {
        join_and_wait_for_turn(&client, &shop).await;
        fill(&client, "delivery.name", "Ada Lovelace").await;
        fill(&client, "delivery.phone", "12").await;
        fill(&client, "delivery.address.line1", "12 St James's Square").await;
        fill(&client, "delivery.address.postalCode", "SW1Y 4JH").await;
        fill(&client, "delivery.address.country", "Britain").await;
        click(&client, Locator::Id("buy-button")).await;
        wait_text(&client, "order-result", Duration::from_secs(10), |t| {
            t.contains("delivery details need fixing")
        })
        .await;
        for (id, says) in [
            ("delivery-phone-error", "7 to 15 digits"),
            ("delivery-address-city-error", "give the city"),
            ("delivery-address-country-error", "two-letter"),
        ] {
            let shown = text(&client, id).await;
            assert!(shown.contains(says), "{id}: {shown:?}");
        }
        assert_eq!(text(&client, "delivery-name-error").await, "");
        shot(&client, "checkout-1-fields.png").await;

        fill(&client, "delivery.phone", "+44 20 7946 0958").await;
        fill(&client, "delivery.address.city", "London").await;
        fill(&client, "delivery.address.country", "gb").await;
        click(&client, Locator::Id("buy-button")).await;
        wait_text(&client, "order-result", Duration::from_secs(10), |t| {
            t.starts_with("Confirmed")
        })
        .await;
        wait_text(&client, "orders-list", Duration::from_secs(5), |t| {
            t.contains("to Ada Lovelace, London")
        })
        .await;
        shot(&client, "checkout-2-confirmed.png").await;

        // The next visit offers the same details.
        client.refresh().await.unwrap();
        wait_text(&client, "orders-list", Duration::from_secs(5), |t| {
            t.contains("confirmed")
        })
        .await;
        let mut offered = String::new();
        for _ in 0..50 {
            offered = value_of(&client, "delivery.address.postalCode").await;
            if !offered.is_empty() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert_eq!(offered, "SW1Y 4JH");
        assert_eq!(value_of(&client, "delivery.name").await, "Ada Lovelace");
    };
    run.await;
    client.close().await.unwrap();
    assert_eq!(shop.count_orders("confirmed").await, 1);
}

/// A free coupon deal: no payment, and the code on the order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_coupon_deal_shows_the_code_on_the_order_in_chromium() {
    let redis = RedisServer::start().unwrap();
    let deal = DealFile {
        deal_price: 0,
        stock: 10,
        limit: 1,
        ..DealFile::live("browser-coupon")
    }
    .fulfilment("coupon");
    let shop = Storefront::start(&redis, &postgres().url(), &deal, &[]);
    shop.queue_open().await;
    let driver = ChromeDriver::start();
    let client = driver.browser(430, 1000).await;
    let run = async {
        join_and_wait_for_turn(&client, &shop).await;
        assert!(text(&client, "coupon-hint").await.contains("valid until"));
        assert_eq!(text(&client, "buy-button").await, "Get it free");
        click(&client, Locator::Id("buy-button")).await;
        let result = wait_text(&client, "order-result", Duration::from_secs(10), |t| {
            t.starts_with("Confirmed")
        })
        .await;
        let code = result
            .split("Your coupon: ")
            .nth(1)
            .expect("the code is shown")
            .trim_end_matches('.')
            .to_owned();
        assert_eq!(
            timedeal_api::coupon::normalize(&code).as_deref(),
            Some(code.as_str())
        );
        wait_text(&client, "orders-list", Duration::from_secs(5), |t| {
            t.contains(&code)
        })
        .await;
        shot(&client, "coupon-confirmed.png").await;
    };
    run.await;
    client.close().await.unwrap();
    assert_eq!(shop.count_orders("confirmed").await, 1);
}

/// An upcoming deal on a storefront that mails: the shopper leaves an address (a wrong one is
/// marked first), confirms it from the mail sent to it, the 12 h reminder arrives at a real SMTP
/// server, and its link's page removes the address with one button.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_shopper_is_reminded_by_mail_and_unsubscribes_in_chromium() {
    let smtp = timedeal_testkit::SmtpServer::start().unwrap();
    let redis = RedisServer::start().unwrap();
    let mut deal = DealFile {
        starts_in: 13 * 3600,
        ..DealFile::live("browser-reminder")
    };
    let smtp_url = smtp.url();
    let flags = [
        "--smtp-url",
        &smtp_url,
        "--mail-from",
        "Timedeal <deals@timedeal.test>",
    ];
    let shop = Storefront::start(&redis, &postgres().url(), &deal, &flags);
    let driver = ChromeDriver::start();
    let client = driver.browser(430, 1000).await;
    let run = async {
        client.goto(&shop.url()).await.unwrap();
        fill(&client, "email", "ana@").await;
        click(&client, Locator::Id("reminder-button")).await;
        wait_text(
            &client,
            "reminder-email-error",
            Duration::from_secs(5),
            |t| t.contains("not an email address"),
        )
        .await;
        fill(&client, "email", "ana@example.com").await;
        click(&client, Locator::Id("reminder-button")).await;
        wait_text(&client, "reminder-result", Duration::from_secs(5), |t| {
            t.starts_with("Check your inbox: confirm with the link we sent")
        })
        .await;
        assert_eq!(text(&client, "reminder-email-error").await, "");
        shot(&client, "reminder-1-signed-up.png").await;

        // The confirmation mail's link opens a page whose button confirms the address.
        let mut asked = None;
        for _ in 0..60 {
            asked = smtp.mails().unwrap().into_iter().next();
            if asked.is_some() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        let asked = asked.expect("the confirmation mail arrives");
        assert!(asked
            .header("subject")
            .unwrap()
            .starts_with("Confirm your reminders"));
        let text_of = asked.text();
        let confirm = text_of
            .split_whitespace()
            .find(|w| w.starts_with("https://deals.example.com/reminders/confirm?token="))
            .expect("a confirmation link")
            .trim_start_matches("https://deals.example.com")
            .to_owned();
        client
            .goto(&format!("{}{confirm}", shop.url()))
            .await
            .unwrap();
        click(&client, Locator::Id("confirm")).await;
        wait_text(&client, "confirmed", Duration::from_secs(5), |t| {
            t.starts_with("Confirmed")
        })
        .await;
        shot(&client, "reminder-confirmed.png").await;

        // Twelve hours and a few seconds before the start, the first mail goes.
        deal.starts_in = 12 * 3600 + 3;
        shop.rewrite(&deal);
        let mut mail = None;
        for _ in 0..60 {
            mail = smtp.mails().unwrap().into_iter().find(|m| {
                m.header("subject")
                    .is_some_and(|s| s.starts_with("Starts in 12 hours"))
            });
            if mail.is_some() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        let mail = mail.expect("the 12 h reminder arrives");
        assert_eq!(mail.to(), "ana@example.com");
        let link = mail.header("list-unsubscribe").unwrap();
        let path = link
            .trim_start_matches("<https://deals.example.com")
            .trim_end_matches('>')
            .to_owned();
        client.goto(&format!("{}{path}", shop.url())).await.unwrap();
        click(&client, Locator::Id("unsubscribe")).await;
        wait_text(&client, "unsubscribed", Duration::from_secs(5), |t| {
            t.starts_with("No more reminders")
        })
        .await;
        shot(&client, "reminder-2-unsubscribed.png").await;
    };
    run.await;
    client.close().await.unwrap();
    let db = shop.db().await;
    let left: i64 = sqlx::query_scalar(&format!("SELECT count(*) FROM {}.reminders", shop.schema))
        .fetch_one(&db)
        .await
        .unwrap();
    assert_eq!(left, 0);
}
