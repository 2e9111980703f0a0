//! The rental portal over HTTP, against an in-memory Kubernetes API and a real PostgreSQL:
//! sign-up, sign-in, lock-out and reset; requests in the company's own namespace only; what an
//! invalid or forged request does not create; the guards (CSRF, body size, shared rate limits).

mod common;

use common::{valid_request, Browser, PortalServer, PASSWORD};
use kube::{
    api::{Api, Patch, PatchParams},
    ResourceExt,
};
use regex::Regex;
use serde_json::json;
use timedeal_api::{Company, TimeDeal};

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
async fn sign_up_files_an_unapproved_company_which_may_request_nothing_until_approved() {
    let portal = PortalServer::start(10).await;
    let browser = Browser::new();
    let response = browser
        .sign_up(&portal, "ACME Audio", "Sales@ACME-audio.example", PASSWORD)
        .await;
    assert_eq!(response.url().path(), "/signin");
    let companies = portal.companies().await;
    assert_eq!(companies.len(), 1);
    let acme = &companies[0];
    assert_eq!(acme.name_any(), "acme-audio");
    assert_eq!(acme.spec.display_name, "ACME Audio");
    assert_eq!(acme.spec.contact_email, "sales@acme-audio.example");
    assert_eq!(acme.spec.namespace, "td-acme-audio");
    assert!(!acme.spec.approved, "companies arrive unapproved");

    let response = browser
        .sign_in(&portal, "sales@acme-audio.example", PASSWORD)
        .await;
    assert_eq!(response.url().path(), "/deals");
    let page = response.text().await.unwrap();
    assert!(page.contains(r#"id="awaiting-approval""#), "{page}");

    // Before approval the form is refused, and a posted request creates nothing.
    let (status, page) = browser.page(&portal.at("/deals/new")).await;
    assert_eq!(status, 403);
    assert!(page.contains("not approved yet"), "{page}");
    let (_, list) = browser.page(&portal.at("/deals")).await;
    let csrf = common::csrf_of(&list);
    let response = browser
        .post(&portal, "/deals", &with(valid_request(), "csrf", &csrf))
        .await;
    assert_eq!(response.status(), 403);
    assert!(portal.deals().await.is_empty());

    // The same company or email cannot sign up twice; a taken email is answered as a sign-up
    // that worked (so the form tells no one which emails have accounts) and changes nothing.
    let again = Browser::new()
        .sign_up(&portal, "ACME Audio", "other@acme-audio.example", PASSWORD)
        .await;
    assert_eq!(again.status(), 422);
    assert!(again.text().await.unwrap().contains("signed up already"));
    // The same answer with the taken email: it never depends on whether an email has an account.
    let again = Browser::new()
        .sign_up(&portal, "ACME Audio", "sales@acme-audio.example", PASSWORD)
        .await;
    assert_eq!(again.status(), 422);
    assert!(again.text().await.unwrap().contains("signed up already"));
    let again = Browser::new()
        .sign_up(
            &portal,
            "ACME Audio Two",
            "sales@acme-audio.example",
            PASSWORD,
        )
        .await;
    assert_eq!(again.url().path(), "/signin", "as any sign-up");
    let text = again.text().await.unwrap();
    assert!(
        !text.contains("exists") && !text.contains("sign in instead"),
        "{text}"
    );
    assert_eq!(portal.companies().await.len(), 1, "nothing more was filed");
    let owner = Browser::new()
        .sign_in(&portal, "sales@acme-audio.example", PASSWORD)
        .await;
    assert_eq!(
        owner.url().path(),
        "/deals",
        "the owner's password still works"
    );

    // Bad sign-ups say what to fix and file nothing.
    let bad = Browser::new()
        .sign_up(&portal, "", "not-an-email", "short")
        .await;
    assert_eq!(bad.status(), 422);
    let page = bad.text().await.unwrap();
    assert!(page.contains(r#"id="display_name-error""#), "{page}");
    assert!(page.contains(r#"id="email-error""#), "{page}");
    assert!(page.contains("12 to 128 characters"), "{page}");
    assert_eq!(portal.companies().await.len(), 1);
}

#[tokio::test]
async fn a_display_name_with_control_characters_is_refused() {
    let portal = PortalServer::start(10).await;
    let escapes = Browser::new()
        .sign_up(&portal, "Evil\u{1b}[2J Co", "evil@example.com", PASSWORD)
        .await;
    assert_eq!(escapes.status(), 422);
    assert!(escapes
        .text()
        .await
        .unwrap()
        .contains("without control characters"));
    assert!(portal.companies().await.is_empty());
}

#[tokio::test]
async fn an_approved_company_requests_deals_in_its_own_namespace_and_withdraws_a_pending_one() {
    let portal = PortalServer::start(10).await;
    let acme = portal
        .company("ACME Audio", "sales@acme-audio.example", true)
        .await;
    let mut fields = valid_request();
    // Fields the form does not offer are ignored, whatever is posted.
    for (key, value) in [
        ("approved", "true"),
        ("spec.approved", "true"),
        ("images", "evil/image:latest"),
        ("max_replicas", "500"),
        ("namespace", "td-bolt"),
        ("company_name", "Bolt"),
        ("contact_email", "evil@example.com"),
    ] {
        fields.push((key, value.into()));
    }
    let response = acme.request(&portal, &fields).await;
    assert_eq!(response.status(), 200);
    let path = response.url().path().to_owned();
    assert!(path.starts_with("/deals/nc-700-headphones-"), "{path}");
    let page = response.text().await.unwrap();
    assert!(page.contains(r#"id="received""#), "{page}");

    let deals = portal.deals().await;
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
    assert_eq!(
        spec.schedule.start.to_rfc3339(),
        "2026-12-01T03:00:00+00:00"
    );
    assert_eq!(spec.ingress.host, "headphones.deals.example.com");
    assert!(spec.capacity.max_replicas <= 20, "capped by the limit");
    assert_eq!(spec.capacity.peak_replicas, 15);

    // The list shows it, pending; its page offers withdrawal, which deletes it.
    let (_, list) = acme.page(&portal.at("/deals")).await;
    assert!(
        list.contains(&format!(r#"data-deal="{}""#, deal.name_any())),
        "{list}"
    );
    assert!(list.contains(r#"<td class="state">pending</td>"#), "{list}");
    let (_, page) = acme.page(&portal.at(&path)).await;
    assert!(page.contains(r#"id="withdraw""#), "{page}");
    let response = acme
        .post(
            &portal,
            &format!("{path}/withdraw"),
            &[("csrf", common::csrf_of(&page))],
        )
        .await;
    assert_eq!(response.url().path(), "/deals");
    assert!(response.text().await.unwrap().contains("was withdrawn"));
    assert!(portal.deals().await.is_empty());

    // An approved deal is not withdrawn from here.
    let response = acme.request(&portal, &valid_request()).await;
    let path = response.url().path().to_owned();
    let name = path.trim_start_matches("/deals/").to_owned();
    Api::<TimeDeal>::namespaced(portal.client.clone(), "td-acme-audio")
        .patch(
            &name,
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"approved": true}})),
        )
        .await
        .unwrap();
    let (_, page) = acme.page(&portal.at(&path)).await;
    assert!(!page.contains(r#"id="withdraw""#), "{page}");
    let response = acme
        .post(
            &portal,
            &format!("{path}/withdraw"),
            &[("csrf", common::csrf_of(&page))],
        )
        .await;
    assert_eq!(response.status(), 409);
    assert_eq!(portal.deals().await.len(), 1);
}

#[tokio::test]
async fn a_company_never_reaches_another_companys_deals_whatever_it_types() {
    let portal = PortalServer::start(10).await;
    let acme = portal
        .company("ACME Audio", "sales@acme-audio.example", true)
        .await;
    let bolt = portal.company("Bolt", "hello@bolt.example", true).await;
    let response = bolt.request(&portal, &valid_request()).await;
    let bolt_path = response.url().path().to_owned();
    let bolt_deal = bolt_path.trim_start_matches("/deals/").to_owned();

    // By its address, its withdrawal, or names that look like paths: nothing.
    for path in [
        bolt_path.clone(),
        format!("/deals/td-bolt/{bolt_deal}"),
        format!("/deals/..%2Ftd-bolt%2F{bolt_deal}"),
        format!("/deals/{bolt_deal}?namespace=td-bolt"),
    ] {
        let (status, page) = acme.page(&portal.at(&path)).await;
        assert_eq!(status, 404, "{path}");
        assert!(!page.contains("NC-700"), "{path}: {page}");
    }
    let (_, list) = acme.page(&portal.at("/deals")).await;
    assert!(!list.contains(&bolt_deal), "{list}");
    let response = acme
        .post(
            &portal,
            &format!("{bolt_path}/withdraw"),
            &[("csrf", common::csrf_of(&list))],
        )
        .await;
    assert_eq!(response.status(), 404);
    assert_eq!(portal.deals().await.len(), 1, "Bolt's deal stays");

    // A request naming Bolt's namespace lands in ACME's.
    let fields = with(valid_request(), "namespace", "td-bolt");
    acme.request(&portal, &fields).await;
    let in_bolt = Api::<TimeDeal>::namespaced(portal.client.clone(), "td-bolt")
        .list(&Default::default())
        .await
        .unwrap();
    assert_eq!(in_bolt.items.len(), 1, "only Bolt's own");
    assert_eq!(portal.deals().await.len(), 2);
}

#[tokio::test]
async fn requests_signed_out_or_with_a_bad_token_are_refused_and_create_nothing() {
    let portal = PortalServer::start(10).await;
    let acme = portal
        .company("ACME Audio", "sales@acme-audio.example", true)
        .await;
    // Signed out: sent to sign in, nothing created.
    let stranger = Browser::new();
    let response = stranger.post(&portal, "/deals", &valid_request()).await;
    assert_eq!(response.url().path(), "/signin");
    // A forged session cookie is no session.
    let forged = reqwest::Client::new()
        .post(portal.at("/deals"))
        .header("cookie", "timedeal_portal_session=abc.def")
        .form(&valid_request())
        .send()
        .await
        .unwrap();
    assert_eq!(forged.url().path(), "/signin");
    // Signed in, without the form's token or with another session's.
    let missing = acme.post(&portal, "/deals", &valid_request()).await;
    assert_eq!(missing.status(), 403);
    assert!(missing.text().await.unwrap().contains("reload the form"));
    let other = portal.company("Bolt", "hello@bolt.example", true).await;
    let (_, page) = other.page(&portal.at("/deals/new")).await;
    let stolen = common::csrf_of(&page);
    let response = acme
        .post(&portal, "/deals", &with(valid_request(), "csrf", &stolen))
        .await;
    assert_eq!(response.status(), 403);
    assert!(portal.deals().await.is_empty());
}

#[tokio::test]
async fn every_page_carries_the_security_headers_and_hsts_only_over_https() {
    let portal = PortalServer::start(10).await;
    let acme = portal
        .company("ACME Audio", "sales@acme-audio.example", true)
        .await;
    let name = acme
        .request(&portal, &valid_request())
        .await
        .url()
        .path()
        .trim_start_matches("/deals/")
        .to_owned();
    let stranger = Browser::new();
    for (browser, path) in [
        (&stranger, "/".to_owned()),
        (&stranger, "/signin".into()),
        (&stranger, "/signup".into()),
        (&stranger, "/static/portal.js".into()),
        (&stranger, "/static/portal.css".into()),
        (&stranger, "/no-such-page".into()),
        (&acme, "/deals".into()),
        (&acme, "/deals/new".into()),
        (&acme, format!("/deals/{name}")),
        (&acme, format!("/deals/{name}/orders.csv")),
        (&acme, "/account/password".into()),
    ] {
        for https in [false, true] {
            let mut request = browser.http.get(portal.at(&path));
            if https {
                // As the ingress says when it terminated TLS.
                request = request.header("x-forwarded-proto", "https");
            }
            let response = request.send().await.unwrap();
            if let Some(problem) = timedeal_testkit::headers::problem(response.headers(), https) {
                panic!("{path} (https: {https}): {problem}");
            }
        }
    }
}

#[tokio::test]
async fn a_request_may_ask_only_for_a_host_of_its_company_that_is_free() {
    let portal = PortalServer::start(10).await;
    let acme = portal
        .company("ACME Audio", "sales@acme-audio.example", true)
        .await;
    let host_error = Regex::new(r#"id="host-error">([^<]*)<"#).unwrap();
    for (host, says) in [
        ("deals.example.com", "the platform's own"),
        ("directory.example.com", "the platform's own"),
        ("sale.bolt.companies.example.com", "is not the company's"),
        ("shop.example.org", "use a host under"),
    ] {
        let response = acme
            .request(&portal, &with(valid_request(), "host", host))
            .await;
        assert_eq!(response.status(), 422, "{host}");
        let page = response.text().await.unwrap();
        let error = host_error
            .captures(&page)
            .unwrap_or_else(|| panic!("{host}: no error by the host:\n{page}"))[1]
            .to_owned();
        assert!(error.contains(says), "{host}: {error}");
    }
    assert!(portal.deals().await.is_empty(), "nothing was filed");

    // Its own suffix, or a host an admin listed: filed. Held by its own approved deal that has
    // not ended: refused.
    let own = "winter.acme-audio.companies.example.com";
    let response = acme
        .request(&portal, &with(valid_request(), "host", own))
        .await;
    assert_eq!(response.status(), 200);
    let name = response
        .url()
        .path()
        .trim_start_matches("/deals/")
        .to_owned();
    Api::<TimeDeal>::namespaced(portal.client.clone(), "td-acme-audio")
        .patch(
            &name,
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"approved": true}})),
        )
        .await
        .unwrap();
    let response = acme
        .request(&portal, &with(valid_request(), "host", own))
        .await;
    assert_eq!(response.status(), 422);
    assert!(response
        .text()
        .await
        .unwrap()
        .contains("which has not ended"));
    assert_eq!(portal.deals().await.len(), 1);
}

#[tokio::test]
async fn an_invalid_request_creates_nothing_and_shows_each_error_by_its_field() {
    let portal = PortalServer::start(10).await;
    let acme = portal
        .company("ACME Audio", "sales@acme-audio.example", true)
        .await;
    let fields = with(valid_request(), "deal_price", "399.00"); // the CRD's CEL rule
    let fields = with(fields, "host", "Not A Host!"); // the CRD's host rule
    let response = acme.request(&portal, &fields).await;
    assert_eq!(response.status(), 422);
    let page = response.text().await.unwrap();
    for (field, message) in [
        (
            "deal_price",
            "product.dealPrice must not be higher than product.listPrice",
        ),
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
    assert!(page.contains("Over-ear, 30 hours of battery."));
    assert!(portal.deals().await.is_empty());

    // More stock than the company's quota allows.
    let fields = with(valid_request(), "stock", "1000000");
    let page = acme.request(&portal, &fields).await.text().await.unwrap();
    assert!(
        page.contains(r#"id="stock-error">your company may put at most 100000 units"#),
        "{page}"
    );
    // Unreadable numbers and dates are refused before the CRD rules run.
    let fields = with(with(valid_request(), "stock", "lots"), "time", "noon");
    let page = acme.request(&portal, &fields).await.text().await.unwrap();
    assert!(
        page.contains(r#"id="stock-error">enter a whole number"#),
        "{page}"
    );
    assert!(page.contains(r#"id="date-error">enter a date"#), "{page}");
    assert!(portal.deals().await.is_empty());
}

#[tokio::test]
async fn a_deals_page_follows_it_to_its_sales_report() {
    let portal = PortalServer::start(10).await;
    let company = portal
        .company("ACME Audio", "sales@acme-audio.example", true)
        .await;
    let response = company.request(&portal, &valid_request()).await;
    let link = portal.at(response.url().path());
    let deal = portal.deals().await.remove(0);
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
    let live = company.page(&link).await.1;
    assert!(
        live.contains(r#"<strong id="phase">live</strong>"#),
        "{live}"
    );
    assert!(live.contains(r#"id="storefront" href="https://headphones.deals.example.com/""#));
    assert!(live.contains(r#"<dd id="sold">120 of 500</dd>"#), "{live}");
    assert!(live.contains(r#"<dd id="waiting">2400</dd>"#), "{live}");

    // The operator's readings over the sale, for the chart.
    let mut db = <sqlx::PgConnection as sqlx::Connection>::connect(&portal.database)
        .await
        .unwrap();
    sqlx::raw_sql(&format!(
        "INSERT INTO timedeal_platform.figure_samples (uid, at, sold, remaining, waiting, confirmed) \
         SELECT '{}', '2026-12-01T03:00:00Z'::timestamptz + g * interval '15 seconds', \
         g * 2, 500 - g * 2, 9100 - g * 36, g * 2 - g / 10 FROM generate_series(0, 250) g",
        deal.uid().unwrap()
    ))
    .execute(&mut db)
    .await
    .unwrap();
    set_status(json!({"phase": "Ended", "endedAt": "2026-12-01T04:00:00Z",
        "soldOutAt": "2026-12-01T03:41:00Z",
        "stock": {"remaining": 0, "sold": 500, "reserved": 0},
        "queue": {"waiting": 0, "active": 0, "peakWaiting": 9100},
        "orders": {"confirmed": 260, "cancelled": 3}, "revenue": 4950000}))
    .await;
    let report = company.page(&link).await.1;
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
    // The chart: three series over the sale, and the same figures as a table.
    assert!(
        report.contains("The sale from 03:00:00 UTC to 04:02:30 UTC"),
        "{report}"
    );
    for (id, label) in [
        ("chart-orders", "Orders confirmed: now 475, at most 475"),
        ("chart-queue", "Waiting in the queue: now 100, at most 9100"),
        ("chart-stock", "Stock left: now 0, at most 500"),
    ] {
        let pattern = format!(
            r#"id="{id}"[^>]*aria-label="{label}"[^>]*><text[^<]*</text><polyline points="([^"]+)""#
        );
        let points = Regex::new(&pattern)
            .unwrap()
            .captures(&report)
            .unwrap_or_else(|| panic!("no {id}:\n{report}"))[1]
            .split(' ')
            .count();
        assert_eq!(points, 251, "{id}");
    }
    assert!(
        report.contains("<td>03:01:00 UTC</td><td>8</td><td>8956</td><td>492</td>"),
        "{report}"
    );
    assert!(!report.contains(r#"id="waiting""#));
}

#[tokio::test]
async fn no_one_client_can_lock_a_company_out() {
    let portal = PortalServer::start_behind(10, "127.0.0.1/32").await;
    portal
        .company("ACME Audio", "sales@acme-audio.example", true)
        .await;
    // Someone who knows the company's email tries, and fails, again and again.
    let attacker = Browser::at("203.0.113.9");
    for _ in 0..12 {
        let refused = attacker
            .sign_in(&portal, "sales@acme-audio.example", "not the password")
            .await;
        assert_eq!(refused.status(), 401);
    }
    let held = attacker
        .sign_in(&portal, "sales@acme-audio.example", PASSWORD)
        .await;
    assert_eq!(held.status(), 401, "the attacker's address is held back");
    // The company, from its own address, signs in as ever.
    let owner = Browser::at("198.51.100.7")
        .sign_in(&portal, "sales@acme-audio.example", PASSWORD)
        .await;
    assert_eq!(owner.url().path(), "/deals");
}

#[tokio::test]
async fn wrong_passwords_lock_the_account_and_an_admins_reset_link_works_once() {
    let portal = PortalServer::start(10).await;
    portal
        .company("ACME Audio", "sales@acme-audio.example", true)
        .await;
    let browser = Browser::new();
    let wrong = browser
        .sign_in(&portal, "sales@acme-audio.example", "not the password")
        .await;
    assert_eq!(wrong.status(), 401);
    assert!(wrong
        .text()
        .await
        .unwrap()
        .contains("The email or the password is wrong."));
    // An unknown email reads the same.
    let unknown = browser
        .sign_in(&portal, "nobody@example.com", PASSWORD)
        .await;
    assert_eq!(unknown.status(), 401);
    assert!(unknown
        .text()
        .await
        .unwrap()
        .contains("The email or the password is wrong."));

    for _ in 0..4 {
        browser
            .sign_in(&portal, "sales@acme-audio.example", "not the password")
            .await;
    }
    let locked = browser
        .sign_in(&portal, "sales@acme-audio.example", PASSWORD)
        .await;
    assert_eq!(locked.status(), 401, "even the right password waits");
    let page = locked.text().await.unwrap();
    assert!(
        page.contains("Too many failed sign-ins from your address for this email (5 in 15 minutes); try again after 09:15 UTC"),
        "{page}"
    );
    // An email with no account is held back the same way: the hold tells nothing.
    for _ in 0..5 {
        browser
            .sign_in(&portal, "nobody@example.com", "not the password")
            .await;
    }
    let held = browser
        .sign_in(&portal, "nobody@example.com", PASSWORD)
        .await;
    assert!(held
        .text()
        .await
        .unwrap()
        .contains("Too many failed sign-ins from your address for this email"));

    // Once the hold has passed, one more wrong password does not hold it back again.
    portal.clock.advance(chrono::Duration::minutes(16));
    let after = browser
        .sign_in(&portal, "sales@acme-audio.example", "not the password")
        .await;
    let page = after.text().await.unwrap();
    assert!(
        page.contains("The email or the password is wrong."),
        "{page}"
    );
    assert!(!page.contains("Too many"), "{page}");
    portal.clock.set(common::portal_now());

    // The admin's reset: a token on the Company, made now.
    let companies: Api<Company> = Api::all(portal.client.clone());
    let token = "Zq8rT3vW9yB2nM5kL7pX4cV6hJ1gF0dS";
    companies
        .patch(
            "acme-audio",
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"annotations": {
                "timedeal.dev/password-reset": token,
                "timedeal.dev/password-reset-at": "2026-11-21T08:30:00Z"}}})),
        )
        .await
        .unwrap();
    let (status, _) = browser
        .page(&portal.at("/reset/acme-audio/wrong-token"))
        .await;
    assert_eq!(status, 404);
    let link = format!("/reset/acme-audio/{token}");
    let new_password = "a brand new passphrase";
    let response = browser
        .post_form(
            &portal,
            &link,
            &link,
            &[
                ("password", new_password.into()),
                ("confirm", new_password.into()),
            ],
        )
        .await;
    let landed = response.url().path().to_owned();
    assert_eq!(landed, "/signin", "{}", response.text().await.unwrap());
    let signed_in = browser
        .sign_in(&portal, "sales@acme-audio.example", new_password)
        .await;
    assert_eq!(signed_in.url().path(), "/deals", "the lock is cleared too");
    let old = Browser::new()
        .sign_in(&portal, "sales@acme-audio.example", PASSWORD)
        .await;
    assert_eq!(old.status(), 401);
    // Once only.
    let (status, page) = browser.page(&portal.at(&link)).await;
    assert_eq!(status, 404);
    assert!(page.contains("work once"), "{page}");
    // And for a day only.
    companies
        .patch(
            "acme-audio",
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"annotations": {
                "timedeal.dev/password-reset": "AnotherTokenAnotherTokenAnother1",
                "timedeal.dev/password-reset-at": "2026-11-20T08:00:00Z"}}})),
        )
        .await
        .unwrap();
    let (status, _) = browser
        .page(&portal.at("/reset/acme-audio/AnotherTokenAnotherTokenAnother1"))
        .await;
    assert_eq!(status, 404);
}

#[tokio::test]
async fn changing_the_password_signs_out_every_other_session() {
    let portal = PortalServer::start(10).await;
    let first = portal
        .company("ACME Audio", "sales@acme-audio.example", true)
        .await;
    let second = Browser::new();
    second
        .sign_in(&portal, "sales@acme-audio.example", PASSWORD)
        .await;
    let new_password = "another long passphrase";
    let wrong = first
        .post_form(
            &portal,
            "/account/password",
            "/account/password",
            &[
                ("current", "not it at all".into()),
                ("password", new_password.into()),
                ("confirm", new_password.into()),
            ],
        )
        .await;
    assert_eq!(wrong.status(), 422);
    assert!(wrong
        .text()
        .await
        .unwrap()
        .contains("not your current password"));
    let changed = first
        .post_form(
            &portal,
            "/account/password",
            "/account/password",
            &[
                ("current", PASSWORD.into()),
                ("password", new_password.into()),
                ("confirm", new_password.into()),
            ],
        )
        .await;
    assert_eq!(changed.status(), 200);
    assert!(changed.text().await.unwrap().contains(r#"id="changed""#));
    let (status, _) = first.page(&portal.at("/deals")).await;
    assert_eq!(status, 200, "this session goes on");
    let response = second.http.get(portal.at("/deals")).send().await.unwrap();
    assert_eq!(response.url().path(), "/signin", "the other one ended");

    // Signing out ends the session.
    let (_, page) = first.page(&portal.at("/deals")).await;
    first
        .post(&portal, "/signout", &[("csrf", common::csrf_of(&page))])
        .await;
    let response = first.http.get(portal.at("/deals")).send().await.unwrap();
    assert_eq!(response.url().path(), "/signin");
}

#[tokio::test]
async fn oversized_bodies_are_refused_and_limits_hold_across_replicas() {
    let portal = PortalServer::start(3).await;
    let acme = portal
        .company("ACME Audio", "sales@acme-audio.example", true)
        .await;
    let huge = with(valid_request(), "description", &"x".repeat(64 * 1024));
    assert_eq!(acme.request(&portal, &huge).await.status(), 413);

    // Three submissions a minute from one address, counted by every replica together.
    let replica = portal.replica(3).await;
    let invalid = with(valid_request(), "stock", "not a number");
    let mut statuses = Vec::new();
    for i in 0..4 {
        let serving = if i % 2 == 0 { &portal } else { &replica };
        statuses.push(acme.request(serving, &invalid).await.status().as_u16());
    }
    assert_eq!(statuses, [422, 422, 422, 429]);
    assert!(portal.deals().await.is_empty());
}

/// Three invalid submissions (nothing created) and a fourth, each claiming to come from the
/// address `forwarded_for` gives for it; the statuses.
async fn four_from(
    portal: &PortalServer,
    company: &Browser,
    forwarded_for: impl Fn(usize) -> String,
) -> Vec<u16> {
    let mut statuses = Vec::new();
    for i in 0..4 {
        let (_, page) = company.page(&portal.at("/deals/new")).await;
        let fields = with(
            with(valid_request(), "csrf", &common::csrf_of(&page)),
            "stock",
            "x",
        );
        let status = company
            .http
            .post(portal.at("/deals"))
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
    // Behind the ingress controller (here: loopback), each client is counted on its own; the
    // company's own limit is higher than three here, so the client's is what is seen.
    let behind = PortalServer::start_behind(3, "127.0.0.1/32").await;
    let acme = behind
        .company("ACME Audio", "sales@acme-audio.example", true)
        .await;
    let bolt = behind.company("Bolt", "hello@bolt.example", true).await;
    assert_eq!(
        four_from(&behind, &acme, |_| "203.0.113.1".into()).await,
        [422, 422, 422, 429]
    );
    assert_eq!(
        four_from(&behind, &bolt, |_| "203.0.113.2".into()).await,
        [422, 422, 422, 429],
        "another client is not throttled by the first"
    );
    // Trusting no proxy, a changing header changes nothing: the peer is the client.
    let direct = PortalServer::start(3).await;
    let acme = direct
        .company("ACME Audio", "sales@acme-audio.example", true)
        .await;
    assert_eq!(
        four_from(&direct, &acme, |i| format!("198.51.100.{i}")).await,
        [422, 422, 422, 429]
    );
    assert!(behind.deals().await.is_empty());
}

#[tokio::test]
async fn the_suggestion_is_served_and_every_control_has_a_label() {
    let portal = PortalServer::start(10).await;
    let acme = portal
        .company("ACME Audio", "sales@acme-audio.example", true)
        .await;
    let suggestion: serde_json::Value = reqwest::get(portal.at("/suggest?peak_shoppers=30000"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(suggestion["peakReplicas"], 15);
    assert_eq!(suggestion["admissionRate"], 100);
    let (_, page) = acme.page(&portal.at("/deals/new")).await;
    for id in [
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
    assert!(
        !page.contains(r#"name="company_name""#),
        "the company is the signed-in one"
    );
    assert!(page.contains(r#"name="viewport""#));
    let css = reqwest::get(portal.at("/static/portal.css")).await.unwrap();
    assert_eq!(css.headers()["content-type"], "text/css; charset=utf-8");
}

#[tokio::test]
async fn the_calendar_shows_each_hour_and_refuses_an_overcommitting_request_with_the_free_starts() {
    // The platform runs 40 storefront replicas at once; each of these requests books 15 from
    // 02:50 (its warm-up) to 04:00 UTC on 2026-12-01.
    let portal = PortalServer::start(10).await;
    let acme = portal
        .company("ACME Audio", "sales@acme-audio.example", true)
        .await;
    let bolt = portal.company("Bolt", "hello@bolt.example", true).await;
    assert_eq!(acme.request(&portal, &valid_request()).await.status(), 200);
    assert_eq!(bolt.request(&portal, &valid_request()).await.status(), 200);

    let (_, page) = acme.page(&portal.at("/deals/new?date=2026-12-01")).await;
    let hour = |page: &str, h: &str| {
        Regex::new(&format!(r#"<li class="(\w+)" data-hour="{h}""#))
            .unwrap()
            .captures(page)
            .unwrap_or_else(|| panic!("no hour {h}:\n{page}"))[1]
            .to_owned()
    };
    assert_eq!(hour(&page, "01"), "free");
    assert_eq!(hour(&page, "02"), "tight", "30 of 40");
    assert_eq!(hour(&page, "03"), "tight");
    assert_eq!(hour(&page, "04"), "free");
    assert!(
        page.contains("03:00 UTC: 30 of 40 replicas booked, tight"),
        "{page}"
    );

    // A third would need 45: refused on the date, with the nearest starts that fit.
    let response = acme.request(&portal, &valid_request()).await;
    assert_eq!(response.status(), 422);
    let page = response.text().await.unwrap();
    let error = Regex::new(r#"id="date-error">([^<]*)<"#)
        .unwrap()
        .captures(&page)
        .unwrap_or_else(|| panic!("no error on the date:\n{page}"))[1]
        .to_owned();
    assert!(
        error.contains("fully booked at 2026-12-01 02:50 UTC (30 of 40 storefront replicas taken, your deal needs 15)"),
        "{error}"
    );
    assert!(
        error.contains("the nearest starts that fit: 2026-12-01 05:00 UTC, 2026-12-01 01:00 UTC"),
        "{error}"
    );
    assert_eq!(portal.deals().await.len(), 2, "nothing more was created");

    // The suggested start is taken.
    let moved = with(
        with(valid_request(), "time", "14:00"),
        "utc_offset",
        "+09:00",
    );
    assert_eq!(acme.request(&portal, &moved).await.status(), 200);

    // A withdrawn request frees its hours at once.
    let (_, list) = bolt.page(&portal.at("/deals")).await;
    let name = Regex::new(r#"data-deal="([^"]+)""#)
        .unwrap()
        .captures(&list)
        .unwrap()[1]
        .to_owned();
    bolt.post(
        &portal,
        &format!("/deals/{name}/withdraw"),
        &[("csrf", common::csrf_of(&list))],
    )
    .await;
    assert_eq!(acme.request(&portal, &valid_request()).await.status(), 200);
    assert_eq!(portal.deals().await.len(), 3);

    // Requests no admin approves stop holding their hours after three days.
    assert_eq!(acme.request(&portal, &valid_request()).await.status(), 422);
    let mut db = <sqlx::PgConnection as sqlx::Connection>::connect(&portal.database)
        .await
        .unwrap();
    sqlx::query(
        "UPDATE timedeal_platform.bookings SET requested_at = $1 - interval '3 days 1 minute'",
    )
    .bind(common::portal_now())
    .execute(&mut db)
    .await
    .unwrap();
    assert_eq!(acme.request(&portal, &valid_request()).await.status(), 200);
}

#[tokio::test]
async fn a_deals_orders_download_as_a_streamed_csv_and_only_by_its_own_company() {
    let portal = PortalServer::start(10).await;
    let acme = portal
        .company("ACME Audio", "sales@acme-audio.example", true)
        .await;
    let bolt = portal.company("Bolt", "hello@bolt.example", true).await;
    let path = acme
        .request(&portal, &valid_request())
        .await
        .url()
        .path()
        .to_owned();
    let name = path.trim_start_matches("/deals/").to_owned();
    let csv_path = format!("{path}/orders.csv");

    // Before its storefront has taken an order: the header alone.
    let response = acme.http.get(portal.at(&csv_path)).send().await.unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(
        response.text().await.unwrap(),
        timedeal_portal::export::HEADER
    );

    // The storefront's tables in the deal's schema, as its migrations make them, with 100,000
    // orders (one shopper with a name a spreadsheet would run).
    let (schema, mut db) = portal
        .deal_schema(
            &name,
            &[include_str!("../../tenant-app/migrations/0001_orders.sql")],
        )
        .await;
    sqlx::raw_sql(&format!(
        "INSERT INTO \"{schema}\".orders (id, shopper, quantity, unit_price, currency, status, idempotency_key, created_at) \
         SELECT g, 'shopper-' || g, 1 + g % 2, 9900, 'USD', CASE WHEN g % 10 = 0 THEN 'cancelled' ELSE 'confirmed' END, 'k' || g, \
         '2026-12-01T03:00:00Z'::timestamptz + g * interval '10 milliseconds' FROM generate_series(1, 100000) g; \
         UPDATE \"{schema}\".orders SET shopper = '=HYPERLINK(\"evil\")' WHERE id = 7; \
         INSERT INTO \"{schema}\".payments (order_id, provider, reference, amount, currency) VALUES (2, 'sandbox', 'pay_2', 19800, 'USD');"
    ))
    .execute(&mut db)
    .await
    .unwrap();

    let response = acme.http.get(portal.at(&csv_path)).send().await.unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(
        response.headers()["content-type"],
        "text/csv; charset=utf-8"
    );
    assert_eq!(
        response.headers()["content-disposition"],
        format!("attachment; filename=\"{name}-orders.csv\"")
    );
    assert!(
        response.headers().get("content-length").is_none(),
        "streamed as it is read, not built whole"
    );
    let text = response.text().await.unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 100_001, "the header and every order");
    assert_eq!(
        lines[1],
        "1,shopper-1,2,99.00,198.00,USD,confirmed,2026-12-01T03:00:00Z,,,,,,,,,,,,"
    );
    assert_eq!(
        lines[2],
        "2,shopper-2,1,99.00,99.00,USD,confirmed,2026-12-01T03:00:00Z,,pay_2,,,,,,,,,,"
    );
    assert!(
        lines[7].starts_with("7,\"'=HYPERLINK(\"\"evil\"\")\",2,"),
        "{}",
        lines[7]
    );
    assert!(lines[10].contains(",cancelled,"), "{}", lines[10]);
    assert!(lines[100_000].starts_with("100000,shopper-100000,"));

    // Another company, whatever it types, gets nothing.
    for path in [
        csv_path.clone(),
        format!("/deals/td-acme-audio/{name}/orders.csv"),
    ] {
        let response = bolt.http.get(portal.at(&path)).send().await.unwrap();
        assert_eq!(response.status(), 404, "{path}");
        assert!(!response.text().await.unwrap().contains("shopper-1"));
    }
    let stranger = Browser::new();
    let response = stranger
        .http
        .get(portal.at(&csv_path))
        .send()
        .await
        .unwrap();
    assert_eq!(response.url().path(), "/signin");
}

#[tokio::test]
async fn a_deleted_companys_account_is_deleted_with_it() {
    let portal = PortalServer::start(10).await;
    portal
        .company("ACME Audio", "sales@acme-audio.example", true)
        .await;
    portal.company("Bolt", "hello@bolt.example", true).await;
    Api::<Company>::all(portal.client.clone())
        .delete("acme-audio", &Default::default())
        .await
        .unwrap();
    assert_eq!(portal.portal.forget_deleted_companies().await.unwrap(), 1);
    assert_eq!(portal.portal.forget_deleted_companies().await.unwrap(), 0);
    let gone = Browser::new()
        .sign_in(&portal, "sales@acme-audio.example", PASSWORD)
        .await;
    assert_eq!(gone.status(), 401, "the account is gone");
    let kept = Browser::new()
        .sign_in(&portal, "hello@bolt.example", PASSWORD)
        .await;
    assert_eq!(kept.url().path(), "/deals");
}
