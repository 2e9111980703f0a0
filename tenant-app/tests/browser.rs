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
        client.goto(&shop.url()).await.unwrap();
        wait_text(&client, "queue-message", Duration::from_secs(5), |t| {
            t == "Join the queue to buy."
        })
        .await;
        click(&client, Locator::Id("join-button")).await;
        wait_text(&client, "queue-message", Duration::from_secs(30), |t| {
            t == "It's your turn!"
        })
        .await;
        shot(&client, "puzzle-solved.png").await;
    };
    run.await;
    client.close().await.unwrap();
    let admitted = shop.admissions().await;
    assert_eq!(admitted.len(), 1, "one shopper admitted: {admitted:?}");
}
