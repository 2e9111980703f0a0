//! A company in a real headless Chromium (chromedriver): signs up, signs in once approved,
//! fills the rental form, lands on its deal's page, sees it in its list, follows it to the
//! report; then submits bad values and sees each error by its field. Screenshots go to `$TIMEDEAL_SCREENSHOTS` (default `target/screenshots`); `make
//! screenshots` refreshes the ones the README shows.

mod common;

use std::time::Duration;

use common::{valid_request, PortalServer, PASSWORD};
use fantoccini::{Client, Locator};
use kube::api::{Api, ListParams, Patch, PatchParams};
use serde_json::json;
use timedeal_api::TimeDeal;
use timedeal_testkit::browser::{click, shot, text, wait_text, ChromeDriver};

/// Types into a field as a person would; date and time inputs take their value directly, since
/// what their keyboard entry expects depends on the browser's locale.
async fn fill(client: &Client, id: &str, value: &str) {
    let element = client.find(Locator::Id(id)).await.unwrap();
    match element.attr("type").await.unwrap().as_deref() {
        Some("date") | Some("time") => {
            client
                .execute(
                    "document.getElementById(arguments[0]).value = arguments[1];",
                    vec![id.into(), value.into()],
                )
                .await
                .unwrap();
        }
        _ if element.tag_name().await.unwrap() == "select" => {
            element.select_by_value(value).await.unwrap();
        }
        _ => {
            element.clear().await.unwrap();
            element.send_keys(value).await.unwrap();
        }
    }
}

async fn deals(portal: &PortalServer) -> Vec<TimeDeal> {
    Api::<TimeDeal>::all(portal.client.clone())
        .list(&ListParams::default())
        .await
        .unwrap()
        .items
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_company_signs_up_requests_a_deal_and_follows_it_in_chromium() {
    let portal = PortalServer::start(20).await;
    let driver = ChromeDriver::start();
    let client = driver.browser(430, 1400).await;
    let run = async {
        // Sign up.
        client.goto(&portal.at("/signup")).await.unwrap();
        fill(&client, "display_name", "ACME Audio").await;
        fill(&client, "email", "sales@acme-audio.example").await;
        fill(&client, "password", PASSWORD).await;
        fill(&client, "confirm", PASSWORD).await;
        shot(&client, "portal-1-signup.png").await;
        click(
            &client,
            Locator::Css("form[action='/signup'] button[type=submit]"),
        )
        .await;
        wait_text(&client, "email", Duration::from_secs(5), |_| true).await;
        assert_eq!(client.current_url().await.unwrap().path(), "/signin");

        // An admin approves the company (`kubectl timedeal approve acme-audio`); sign in.
        portal.approve("acme-audio").await;
        fill(&client, "email", "sales@acme-audio.example").await;
        fill(&client, "password", PASSWORD).await;
        click(
            &client,
            Locator::Css("form[action='/signin'] button[type=submit]"),
        )
        .await;
        wait_text(&client, "no-deals", Duration::from_secs(5), |t| {
            t.contains("No deals yet")
        })
        .await;

        // Request a deal.
        client.goto(&portal.at("/deals/new")).await.unwrap();
        for (id, value) in valid_request() {
            fill(&client, id, &value).await;
        }
        // The suggestion follows the expected peak as it is typed.
        wait_text(&client, "suggestion", Duration::from_secs(5), |t| {
            t.contains("15 from the warm-up") && t.contains("admitting 100 shoppers a second")
        })
        .await;
        shot(&client, "portal-2-form.png").await;
        click(
            &client,
            Locator::Css("form[action='/deals'] button[type=submit]"),
        )
        .await;
        wait_text(&client, "phase", Duration::from_secs(5), |t| {
            t == "waiting for approval"
        })
        .await;
        assert!(text(&client, "received").await.contains("Request received"));
        shot(&client, "portal-3-status.png").await;
        let created = deals(&portal).await;
        assert_eq!(created.len(), 1);
        assert!(!created[0].spec.approved);
        assert_eq!(
            created[0].metadata.namespace.as_deref(),
            Some("td-acme-audio")
        );

        // The company's list.
        client.goto(&portal.at("/deals")).await.unwrap();
        wait_text(&client, "deals", Duration::from_secs(5), |t| {
            t.contains("NC-700 headphones") && t.contains("pending")
        })
        .await;
        shot(&client, "portal-4-deals.png").await;
        client
            .goto(&portal.at(&format!(
                "/deals/{}",
                created[0].metadata.name.clone().unwrap()
            )))
            .await
            .unwrap();

        // What the operator writes once the deal has run; the same link now shows the report.
        let name = created[0].metadata.name.clone().unwrap();
        let api: Api<TimeDeal> = Api::namespaced(portal.client.clone(), "td-acme-audio");
        api.patch(
            &name,
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"approved": true}})),
        )
        .await
        .unwrap();
        api.patch_status(
            &name,
            &PatchParams::default(),
            &Patch::Merge(json!({"status": {
            "phase": "Ended", "url": "https://headphones.deals.example.com/",
            "startedAt": "2026-12-01T03:00:00Z", "soldOutAt": "2026-12-01T03:41:00Z",
            "endedAt": "2026-12-01T04:00:00Z",
            "stock": {"remaining": 0, "sold": 500, "reserved": 0},
            "queue": {"waiting": 0, "active": 0, "peakWaiting": 9100},
            "orders": {"confirmed": 260, "cancelled": 3}, "revenue": 4950000,
            "figuresUpdatedAt": "2026-12-01T04:00:00Z"}})),
        )
        .await
        .unwrap();
        // What the operator read over the sale, and what the storefront sold: the chart and
        // the orders to ship.
        let (_, mut db) = portal
            .deal_schema(
                &name,
                &[include_str!("../../tenant-app/migrations/0001_orders.sql")],
            )
            .await;
        sqlx::raw_sql(&format!(
            "INSERT INTO orders (id, shopper, quantity, unit_price, currency, status, idempotency_key) \
             SELECT g, 'shopper-' || g, 1, 9900, 'USD', 'confirmed', 'k' || g FROM generate_series(1, 260) g; \
             RESET ROLE; \
             INSERT INTO timedeal_platform.figure_samples (uid, at, sold, remaining, waiting, confirmed) \
             SELECT '{}', '2026-12-01T03:00:00Z'::timestamptz + g * interval '15 seconds', \
             least(500, g * 4), greatest(0, 500 - g * 4), greatest(0, 9100 - g * 90), least(260, g * 2) \
             FROM generate_series(0, 240) g;",
            created[0].metadata.uid.clone().unwrap(),
        ))
        .execute(&mut db)
        .await
        .unwrap();
        client.refresh().await.unwrap();
        wait_text(&client, "phase", Duration::from_secs(5), |t| t == "ended").await;
        assert_eq!(text(&client, "revenue").await, "49,500.00 USD");
        assert_eq!(text(&client, "sold").await, "500 of 500");
        client
            .find(Locator::Id("sale-chart"))
            .await
            .expect("the chart of the sale");
        shot(&client, "portal-5-report.png").await;

        // The CSV download, as the browser fetches it with its session.
        let csv = client
            .execute(
                "return fetch(document.getElementById('orders-csv').href).then(r => r.text());",
                vec![],
            )
            .await
            .unwrap();
        let csv = csv.as_str().unwrap();
        assert!(csv.starts_with("order_id,shopper,quantity"), "{csv}");
        assert_eq!(csv.lines().count(), 261, "the header and every order");

        // A second request with mistakes: each is shown by its field, nothing is created.
        client.goto(&portal.at("/deals/new")).await.unwrap();
        for (id, value) in valid_request() {
            let value = match id {
                "deal_price" => "399.00".to_owned(),
                "stock" => "500".to_owned(),
                "host" => "my shop".to_owned(),
                _ => value,
            };
            fill(&client, id, &value).await;
        }
        click(
            &client,
            Locator::Css("form[action='/deals'] button[type=submit]"),
        )
        .await;
        let price_error = wait_text(&client, "deal_price-error", Duration::from_secs(5), |t| {
            !t.is_empty()
        })
        .await;
        assert!(price_error.contains("must not be higher"), "{price_error}");
        assert!(text(&client, "host-error").await.contains("DNS name"));
        let typed = client
            .find(Locator::Id("deal_price"))
            .await
            .unwrap()
            .prop("value")
            .await
            .unwrap();
        assert_eq!(typed.as_deref(), Some("399.00"), "what was typed is kept");
        shot(&client, "portal-6-errors.png").await;
        assert_eq!(deals(&portal).await.len(), 1);
    };
    run.await;
    client.close().await.unwrap();
}
