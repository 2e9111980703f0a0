//! The rental portal over HTTP, against an in-memory Kubernetes API: what a valid request
//! creates, what an invalid one does not, and the guards (CSRF, signed links, body size, rate).

mod common;

use common::{valid_request, PortalServer};
use k8s_openapi::api::core::v1::Namespace;
use kube::{
    api::{Api, ListParams, Patch, PatchParams},
    ResourceExt,
};
use regex::Regex;
use serde_json::json;
use timedeal_api::TimeDeal;

fn session() -> reqwest::Client {
    reqwest::Client::builder()
        .cookie_store(true)
        .build()
        .unwrap()
}

/// Opens the form and returns its CSRF token (the cookie stays in the session).
async fn open_form(client: &reqwest::Client, portal: &PortalServer) -> String {
    let page = client
        .get(format!("{}/", portal.url))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    Regex::new(r#"name="csrf" value="([A-Za-z0-9]+)""#)
        .unwrap()
        .captures(&page)
        .expect("the form carries a CSRF token")[1]
        .to_owned()
}

async fn submit(
    client: &reqwest::Client,
    portal: &PortalServer,
    fields: &[(&str, String)],
) -> reqwest::Response {
    client
        .post(format!("{}/requests", portal.url))
        .form(fields)
        .send()
        .await
        .unwrap()
}

async fn page_text(client: &reqwest::Client, url: &str) -> String {
    client.get(url).send().await.unwrap().text().await.unwrap()
}

async fn all_deals(portal: &PortalServer) -> Vec<TimeDeal> {
    Api::<TimeDeal>::all(portal.client.clone())
        .list(&ListParams::default())
        .await
        .unwrap()
        .items
}

fn with(
    mut fields: Vec<(&'static str, String)>,
    key: &'static str,
    value: &str,
) -> Vec<(&'static str, String)> {
    fields.retain(|(k, _)| *k != key);
    fields.push((key, value.to_owned()));
    fields
}

#[tokio::test]
async fn a_valid_request_creates_exactly_one_unapproved_deal_with_the_submitted_values() {
    let portal = PortalServer::start(10).await;
    let client = session();
    let csrf = open_form(&client, &portal).await;
    let mut fields = with(valid_request(), "csrf", &csrf);
    // Fields the form does not offer are ignored, whatever is posted.
    fields.push(("approved", "true".into()));
    fields.push(("spec.approved", "true".into()));
    fields.push(("images", "evil/image:latest".into()));
    fields.push(("max_replicas", "500".into()));
    let response = submit(&client, &portal, &fields).await;
    assert_eq!(response.status(), 200);
    assert!(response
        .url()
        .path()
        .starts_with("/confirmation/td-acme-audio/"));
    let page = response.text().await.unwrap();
    assert!(page.contains("Request received"), "{page}");

    let deals = all_deals(&portal).await;
    assert_eq!(deals.len(), 1);
    let deal = &deals[0];
    assert_eq!(deal.namespace().as_deref(), Some("td-acme-audio"));
    let spec = &deal.spec;
    assert!(!spec.approved, "requests arrive unapproved");
    assert_eq!(spec.images, None);
    assert_eq!(spec.company.name, "ACME Audio");
    assert_eq!(spec.company.contact_email, "sales@acme-audio.example");
    assert_eq!(spec.product.name, "NC-700 headphones");
    assert_eq!(spec.product.list_price, 29900);
    assert_eq!(spec.product.deal_price, 9900);
    assert_eq!(spec.product.stock, 500);
    assert_eq!(spec.product.per_user_limit, 2);
    assert_eq!(
        spec.schedule.start.to_rfc3339(),
        "2026-12-01T03:00:00+00:00"
    );
    assert_eq!(spec.schedule.end.to_rfc3339(), "2026-12-01T04:00:00+00:00");
    assert_eq!(spec.ingress.host, "headphones.deals.example.com");
    assert!(
        spec.capacity.max_replicas <= 20,
        "capped by the operator's limit"
    );
    assert_eq!(spec.capacity.peak_replicas, 15);

    let namespace = Api::<Namespace>::all(portal.client.clone())
        .list(&ListParams::default())
        .await
        .unwrap()
        .items
        .into_iter()
        .find(|n| n.name_any() == "td-acme-audio")
        .expect("the company's namespace");
    assert_eq!(namespace.labels()["timedeal.dev/tenant"], "true");

    // The confirmation's link opens the status page.
    let link = Regex::new(r#"id="status-link" href="([^"]+)""#)
        .unwrap()
        .captures(&page)
        .unwrap()[1]
        .to_owned();
    let status = client
        .get(format!("{}{link}", portal.url))
        .send()
        .await
        .unwrap();
    assert_eq!(status.status(), 200);
    let text = status.text().await.unwrap();
    assert!(text.contains("waiting for approval"), "{text}");

    // A second request of the same company goes into the same namespace.
    let csrf = open_form(&client, &portal).await;
    let again = submit(&client, &portal, &with(valid_request(), "csrf", &csrf)).await;
    assert_eq!(again.status(), 200);
    let deals = all_deals(&portal).await;
    assert_eq!(deals.len(), 2);
    assert_ne!(deals[0].name_any(), deals[1].name_any());
}

#[tokio::test]
async fn an_invalid_request_creates_nothing_and_shows_each_error_by_its_field() {
    let portal = PortalServer::start(10).await;
    let client = session();
    let csrf = open_form(&client, &portal).await;
    let mut fields = with(valid_request(), "csrf", &csrf);
    fields = with(fields, "deal_price", "399.00"); // above the list price: the CRD's CEL rule
    fields = with(fields, "contact_email", "sales-at-acme"); // the CRD's email format
    fields = with(fields, "host", "Not A Host!"); // the CRD's host rule
    let response = submit(&client, &portal, &fields).await;
    assert_eq!(response.status(), 422);
    let page = response.text().await.unwrap();
    for (field, message) in [
        (
            "deal_price",
            "product.dealPrice must not be higher than product.listPrice",
        ),
        ("contact_email", "email"),
        ("host", "DNS name"),
    ] {
        let pattern = format!(
            r#"(?s)id="{field}"[^>]*aria-describedby="{field}-error"[^>]*>\s*<p class="error" id="{field}-error">([^<]*)</p>"#
        );
        let found = Regex::new(&pattern).unwrap().captures(&page);
        let found = found.unwrap_or_else(|| panic!("no error next to {field}:\n{page}"));
        assert!(found[1].contains(message), "{field}: {}", &found[1]);
    }
    assert!(page.contains(r#"value="399.00""#), "what was typed is kept");
    assert!(page.contains(r#"value="NC-700 headphones""#));
    assert!(page.contains("Over-ear, 30 hours of battery."));
    assert!(all_deals(&portal).await.is_empty());
    let namespaces = Api::<Namespace>::all(portal.client.clone())
        .list(&ListParams::default())
        .await
        .unwrap();
    assert!(namespaces.items.is_empty(), "not even the namespace");

    // Unreadable numbers and dates are refused before the CRD rules run.
    let csrf = Regex::new(r#"name="csrf" value="([A-Za-z0-9]+)""#)
        .unwrap()
        .captures(&page)
        .unwrap()[1]
        .to_owned();
    let fields = with(with(valid_request(), "csrf", &csrf), "stock", "lots");
    let fields = with(fields, "time", "noon");
    let page = submit(&client, &portal, &fields)
        .await
        .text()
        .await
        .unwrap();
    assert!(
        page.contains(r#"id="stock-error">enter a whole number"#),
        "{page}"
    );
    assert!(page.contains(r#"id="date-error">enter a date"#), "{page}");
    assert!(all_deals(&portal).await.is_empty());
}

#[tokio::test]
async fn a_request_without_the_forms_token_is_refused() {
    let portal = PortalServer::start(10).await;
    let client = session();
    let missing = submit(&client, &portal, &valid_request()).await;
    assert_eq!(missing.status(), 403);
    assert!(missing.text().await.unwrap().contains("reload the form"));
    // A token from another session (the cookie does not match) is refused too.
    let other = session();
    let stolen = open_form(&other, &portal).await;
    let _ = open_form(&client, &portal).await;
    let forged = submit(&client, &portal, &with(valid_request(), "csrf", &stolen)).await;
    assert_eq!(forged.status(), 403);
    assert!(all_deals(&portal).await.is_empty());
}

#[tokio::test]
async fn status_links_that_were_not_issued_are_plain_404s() {
    let portal = PortalServer::start(10).await;
    let client = session();
    let csrf = open_form(&client, &portal).await;
    let response = submit(&client, &portal, &with(valid_request(), "csrf", &csrf)).await;
    let path = response
        .url()
        .path()
        .replace("/confirmation/", "/requests/");
    let deal = all_deals(&portal).await.remove(0);
    let name = deal.name_any();
    let signature = path.rsplit('/').next().unwrap().to_owned();
    let mut flipped = signature.clone();
    flipped.replace_range(..1, if signature.starts_with('A') { "B" } else { "A" });
    for bad in [
        format!("/requests/td-acme-audio/{name}/{flipped}"),
        format!("/requests/td-acme-audio/{name}/"),
        format!("/requests/td-acme-audio/{name}x/{signature}"),
        format!("/requests/td-other/{name}/{signature}"),
        format!("/confirmation/td-acme-audio/{name}/{flipped}"),
        "/requests/td-acme-audio/nothing/abc".to_owned(),
    ] {
        let response = client
            .get(format!("{}{bad}", portal.url))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 404, "{bad}");
        let text = response.text().await.unwrap();
        assert!(
            !text.contains(&deal.spec.product.name),
            "{bad} leaks the deal"
        );
    }
    let good = client
        .get(format!("{}{path}", portal.url))
        .send()
        .await
        .unwrap();
    assert_eq!(good.status(), 200);
}

#[tokio::test]
async fn the_status_page_follows_the_deal_to_its_sales_report() {
    let portal = PortalServer::start(10).await;
    let client = session();
    let csrf = open_form(&client, &portal).await;
    let response = submit(&client, &portal, &with(valid_request(), "csrf", &csrf)).await;
    let link = format!(
        "{}{}",
        portal.url,
        response
            .url()
            .path()
            .replace("/confirmation/", "/requests/")
    );
    let deal = all_deals(&portal).await.remove(0);
    let deals: Api<TimeDeal> = Api::namespaced(portal.client.clone(), "td-acme-audio");
    let set_status = |status: serde_json::Value| {
        let deals = deals.clone();
        let name = deal.name_any();
        async move {
            deals
                .patch_status(
                    &name,
                    &PatchParams::default(),
                    &Patch::Merge(json!({"status": status})),
                )
                .await
                .unwrap();
        }
    };
    deals
        .patch(
            &deal.name_any(),
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"approved": true}})),
        )
        .await
        .unwrap();

    set_status(
        json!({"phase": "Live", "url": "https://headphones.deals.example.com/",
        "startedAt": "2026-12-01T03:00:00Z",
        "stock": {"remaining": 380, "sold": 120, "reserved": 0},
        "queue": {"waiting": 2400, "active": 300, "peakWaiting": 2400},
        "orders": {"confirmed": 70, "cancelled": 1}, "revenue": 1188000,
        "figuresUpdatedAt": "2026-12-01T03:05:00Z"}),
    )
    .await;
    let live = page_text(&client, &link).await;
    assert!(
        live.contains(r#"<strong id="phase">live</strong>"#),
        "{live}"
    );
    assert!(live.contains(r#"id="storefront" href="https://headphones.deals.example.com/""#));
    assert!(live.contains(r#"<dd id="sold">120 of 500</dd>"#), "{live}");
    assert!(live.contains(r#"<dd id="waiting">2400</dd>"#), "{live}");

    set_status(json!({"phase": "Ended", "endedAt": "2026-12-01T04:00:00Z",
        "soldOutAt": "2026-12-01T03:41:00Z",
        "stock": {"remaining": 0, "sold": 500, "reserved": 0},
        "queue": {"waiting": 0, "active": 0, "peakWaiting": 9100},
        "orders": {"confirmed": 260, "cancelled": 3}, "revenue": 4950000}))
    .await;
    let report = page_text(&client, &link).await;
    assert!(report.contains("Sales report"), "{report}");
    assert!(
        report.contains(r#"<dd id="sold">500 of 500</dd>"#),
        "{report}"
    );
    assert!(
        report.contains(r#"<dd id="orders">260 confirmed, 3 cancelled</dd>"#),
        "{report}"
    );
    assert!(
        report.contains(r#"<dd id="revenue">49,500.00 USD</dd>"#),
        "{report}"
    );
    assert!(
        report.contains(r#"<dd id="sold-out-at">2026-12-01 03:41 UTC</dd>"#),
        "{report}"
    );
    assert!(
        report.contains(r#"<dd id="peak-queue">9100</dd>"#),
        "{report}"
    );
    assert!(!report.contains(r#"id="waiting""#));
}

#[tokio::test]
async fn oversized_bodies_and_floods_are_refused() {
    let portal = PortalServer::start(3).await;
    let client = session();
    let csrf = open_form(&client, &portal).await;
    let huge = with(
        with(valid_request(), "csrf", &csrf),
        "description",
        &"x".repeat(64 * 1024),
    );
    assert_eq!(submit(&client, &portal, &huge).await.status(), 413);

    // Three submissions a minute from one address; the fourth waits.
    let mut statuses = Vec::new();
    for _ in 0..4 {
        let csrf = open_form(&client, &portal).await;
        let fields = with(
            with(valid_request(), "csrf", &csrf),
            "stock",
            "not a number",
        );
        statuses.push(submit(&client, &portal, &fields).await.status().as_u16());
    }
    assert_eq!(statuses, [422, 422, 422, 429]);
    assert!(all_deals(&portal).await.is_empty());
}

/// Three invalid submissions (nothing created) and a fourth, each claiming to come from the
/// address `forwarded_for` gives for it; the statuses.
async fn four_from(portal: &PortalServer, forwarded_for: impl Fn(usize) -> String) -> Vec<u16> {
    let client = session();
    let mut statuses = Vec::new();
    for i in 0..4 {
        let csrf = open_form(&client, portal).await;
        let fields = with(with(valid_request(), "csrf", &csrf), "stock", "x");
        let status = client
            .post(format!("{}/requests", portal.url))
            .header("x-forwarded-for", forwarded_for(i))
            .form(&fields)
            .send()
            .await
            .unwrap()
            .status();
        statuses.push(status.as_u16());
    }
    statuses
}

#[tokio::test]
async fn behind_a_trusted_proxy_each_client_has_its_own_limit_and_nobody_else_may_pick_one() {
    // Behind the ingress controller (here: loopback), each client is counted on its own.
    let behind = PortalServer::start_behind(3, "127.0.0.1/32").await;
    assert_eq!(
        four_from(&behind, |_| "203.0.113.1".into()).await,
        [422, 422, 422, 429]
    );
    assert_eq!(
        four_from(&behind, |_| "203.0.113.2".into()).await,
        [422, 422, 422, 429],
        "another client is not throttled by the first"
    );
    // A client that writes its own header is counted by what the proxy appended.
    assert_eq!(
        four_from(&behind, |i| format!("198.51.100.{i}, 203.0.113.3")).await,
        [422, 422, 422, 429]
    );
    // Trusting no proxy, a changing header changes nothing: the peer is the client.
    let direct = PortalServer::start(3).await;
    assert_eq!(
        four_from(&direct, |i| format!("198.51.100.{i}")).await,
        [422, 422, 422, 429]
    );
    assert!(all_deals(&behind).await.is_empty());
}

#[tokio::test]
async fn the_suggestion_is_served_for_the_page_to_show() {
    let portal = PortalServer::start(10).await;
    let suggestion: serde_json::Value =
        reqwest::get(format!("{}/suggest?peak_shoppers=30000", portal.url))
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
    assert_eq!(suggestion["peakReplicas"], 15);
    assert_eq!(suggestion["admissionRate"], 100);
    let page = reqwest::get(format!("{}/", portal.url))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    for id in [
        "company_name",
        "contact_email",
        "product_name",
        "list_price",
        "deal_price",
        "currency",
        "stock",
        "per_user_limit",
        "date",
        "time",
        "utc_offset",
        "duration_minutes",
        "peak_shoppers",
        "host",
    ] {
        assert!(
            page.contains(&format!(r#"<label for="{id}">"#)),
            "{id} has no label"
        );
    }
    assert!(page.contains(r#"name="viewport""#));
    let css = reqwest::get(format!("{}/static/portal.css", portal.url))
        .await
        .unwrap();
    assert_eq!(css.headers()["content-type"], "text/css; charset=utf-8");
}
