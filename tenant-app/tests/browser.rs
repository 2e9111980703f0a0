//! A shopper in a real headless Chromium, driven over WebDriver (chromedriver): the countdown,
//! the pre-queue, their turn, an order, and its cancellation. Screenshots of each step go to
//! `$TIMEDEAL_SCREENSHOTS` (default `target/screenshots`); `make screenshots` refreshes the ones
//! the README shows.

mod common;

use std::{
    net::TcpStream,
    path::PathBuf,
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use common::{postgres, DealFile, Storefront};
use fantoccini::{Client, ClientBuilder, Locator};
use timedeal_testkit::RedisServer;

struct ChromeDriver {
    child: Child,
    port: u16,
}

impl ChromeDriver {
    fn start() -> Self {
        let program = ["/usr/bin/chromedriver", "/usr/lib/chromium/chromedriver"]
            .into_iter()
            .find(|p| std::path::Path::new(p).exists())
            .expect("chromedriver is missing: run `make setup` (apt-get install chromium-driver)");
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let child = Command::new(program)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start chromedriver");
        let deadline = Instant::now() + Duration::from_secs(20);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "chromedriver did not start");
            std::thread::sleep(Duration::from_millis(50));
        }
        Self { child, port }
    }
}

impl Drop for ChromeDriver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn screenshots_dir() -> PathBuf {
    let dir = std::env::var_os("TIMEDEAL_SCREENSHOTS")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/screenshots"));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

async fn browser(driver: &ChromeDriver) -> Client {
    let mut capabilities = serde_json::Map::new();
    capabilities.insert(
        "goog:chromeOptions".into(),
        serde_json::json!({
            "binary": "/usr/bin/chromium",
            "args": [
                "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                "--disable-background-networking", "--disable-extensions", "--no-first-run",
                "--window-size=430,1000"
            ]
        }),
    );
    // chromedriver speaks plain HTTP on loopback.
    ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
        .capabilities(capabilities)
        .connect(&format!("http://127.0.0.1:{}", driver.port))
        .await
        .expect("connect to chromedriver")
}

async fn text(client: &Client, id: &str) -> String {
    client
        .find(Locator::Id(id))
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
}

/// Waits until the element's text satisfies `check`.
async fn wait_text(
    client: &Client,
    id: &str,
    limit: Duration,
    check: impl Fn(&str) -> bool,
) -> String {
    let deadline = Instant::now() + limit;
    loop {
        let current = text(client, id).await;
        if check(&current) {
            return current;
        }
        assert!(Instant::now() < deadline, "#{id} still says {current:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn shot(client: &Client, name: &str) {
    let png = client.screenshot().await.unwrap();
    std::fs::write(screenshots_dir().join(name), png).unwrap();
}

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
    let client = browser(&driver).await;
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

        client
            .find(Locator::Id("join-button"))
            .await
            .unwrap()
            .click()
            .await
            .unwrap();
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

        client
            .find(Locator::Css("#quantity option[value='2']"))
            .await
            .unwrap()
            .click()
            .await
            .unwrap();
        client
            .find(Locator::Id("buy-button"))
            .await
            .unwrap()
            .click()
            .await
            .unwrap();
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

        client
            .find(Locator::Css(".cancel-button"))
            .await
            .unwrap()
            .click()
            .await
            .unwrap();
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
