//! A company's fulfilment of what its shoppers bought: the delivery details and coupon codes in
//! the CSV and JSON exports, and coupons redeemed once, however many redemptions race, against
//! the deal's schema as the storefront's migrations make it.

mod common;

use common::{csrf_of, valid_request, Browser, PortalServer};

/// Requests a coupon deal through the form and gives back its name and the schema its
/// storefront would fill, made by the storefront's own migrations.
async fn coupon_deal(portal: &PortalServer, company: &Browser) -> (String, String) {
    let mut fields = valid_request();
    for (field, value) in fields.iter_mut() {
        match *field {
            "deal_price" => *value = "0".into(),
            "product_name" => *value = "Free espresso".into(),
            _ => {}
        }
    }
    fields.push(("fulfilment", "coupon".into()));
    fields.push(("category", "food-drink".into()));
    let response = company.request(portal, &fields).await;
    assert_eq!(response.status(), 200);
    let name = response
        .url()
        .path()
        .trim_start_matches("/deals/")
        .to_owned();
    let deal = portal
        .deals()
        .await
        .into_iter()
        .find(|d| d.metadata.name.as_deref() == Some(name.as_str()))
        .unwrap();
    assert_eq!(
        deal.spec.product.fulfilment,
        timedeal_api::Fulfilment::Coupon
    );
    assert_eq!(deal.spec.product.category, "food-drink");
    let migrations = [
        include_str!("../../tenant-app/migrations/0001_orders.sql"),
        include_str!("../../tenant-app/migrations/0002_epochs_and_two_phase_cancel.sql"),
        include_str!("../../tenant-app/migrations/0003_draw_seed.sql"),
        include_str!("../../tenant-app/migrations/0004_delivery_and_coupons.sql"),
    ];
    let (schema, _) = portal.deal_schema(&name, &migrations).await;
    (name, schema)
}

/// A portal with the approved company ACME Audio and its coupon deal: the portal, the company's
/// browser, the deal's name and its schema.
async fn acme_with_coupon_deal() -> (PortalServer, Browser, String, String) {
    let portal = PortalServer::start(10).await;
    let acme = portal
        .company("ACME Audio", "sales@acme-audio.example", true)
        .await;
    let (name, schema) = coupon_deal(&portal, &acme).await;
    (portal, acme, name, schema)
}

#[tokio::test]
async fn coupons_and_delivery_details_are_exported_and_each_coupon_redeems_once() {
    let portal = PortalServer::start(10).await;
    let acme = portal
        .company("ACME Audio", "sales@acme-audio.example", true)
        .await;
    let bolt = portal.company("Bolt", "hello@bolt.example", true).await;
    let (name, schema) = coupon_deal(&portal, &acme).await;
    let mut db = <sqlx::PgConnection as sqlx::Connection>::connect(&portal.database)
        .await
        .unwrap();
    // Three coupon orders (one cancelled, one expired) and, as a shipping deal's would be, one
    // order's delivery details.
    sqlx::raw_sql(&format!(
        "SET search_path TO \"{schema}\";
         INSERT INTO orders (id, shopper, quantity, unit_price, currency, status, idempotency_key,
                             coupon_code, coupon_valid_until)
         VALUES (1, 'anon-1', 1, 0, 'USD', 'confirmed', 'k1', 'AAAA-BBBB-CCCC-DDDD-EEEE', now() + interval '14 days'),
                (2, 'anon-2', 1, 0, 'USD', 'cancelled', 'k2', 'AAAA-BBBB-CCCC-DDDD-FFFF', now() + interval '14 days'),
                (3, 'anon-3', 1, 0, 'USD', 'confirmed', 'k3', 'AAAA-BBBB-CCCC-DDDD-GGGG', now() - interval '1 day');
         INSERT INTO deliveries (order_id, name, phone, line1, line2, city, postal_code, country)
         VALUES (1, 'Ada Lovelace', '+44 20 7946 0958', '12 St James''s Square', '', 'London', 'SW1Y 4JH', 'GB');"
    ))
    .execute(&mut db)
    .await
    .unwrap();

    let csv = acme
        .page(&portal.at(&format!("/deals/{name}/orders.csv")))
        .await
        .1;
    let lines: Vec<&str> = csv.lines().collect();
    assert!(lines[0].ends_with(
        "delivery_name,delivery_phone,address_line1,address_line2,city,postal_code,country,coupon_code,coupon_valid_until,coupon_redeemed_at"
    ));
    assert!(
        lines[1].contains(",Ada Lovelace,'+44 20 7946 0958,12 St James's Square,,London,SW1Y 4JH,GB,AAAA-BBBB-CCCC-DDDD-EEEE,"),
        "{}",
        lines[1]
    );
    let (status, json) = acme
        .page(&portal.at(&format!("/deals/{name}/orders.json")))
        .await;
    assert_eq!(status, 200);
    let orders: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(orders.as_array().unwrap().len(), 3);
    assert_eq!(orders[0]["delivery"]["address"]["postalCode"], "SW1Y 4JH");
    assert_eq!(orders[0]["coupon"]["code"], "AAAA-BBBB-CCCC-DDDD-EEEE");
    assert!(orders[0]["coupon"]["redeemedAt"].is_null());
    assert!(orders[1].get("delivery").is_none());
    let (status, _) = bolt
        .page(&portal.at(&format!("/deals/{name}/orders.json")))
        .await;
    assert_eq!(status, 404, "another company's deal is not there");

    // Once live, the deal's page offers redemption; eight redemptions of one code race: one wins.
    kube::Api::<timedeal_api::TimeDeal>::namespaced(portal.client.clone(), "td-acme-audio")
        .patch_status(
            &name,
            &kube::api::PatchParams::default(),
            &kube::api::Patch::Merge(
                serde_json::json!({"status": {"phase": "Live", "schema": schema}}),
            ),
        )
        .await
        .unwrap();
    let (_, page) = acme.page(&portal.at(&format!("/deals/{name}"))).await;
    assert!(page.contains("id=\"redeem\""), "the page offers redemption");
    let csrf = csrf_of(&page);
    let redeem = |code: &'static str| {
        let http = acme.http.clone();
        let url = portal.at(&format!("/deals/{name}/coupons/redeem"));
        let csrf = csrf.clone();
        async move {
            let response = http
                .post(url)
                .header("accept", "application/json")
                .form(&[("csrf", csrf), ("code", code.to_owned())])
                .send()
                .await
                .unwrap();
            let status = response.status().as_u16();
            (status, response.json::<serde_json::Value>().await.unwrap())
        }
    };
    // Typed as a person might: lower case, spaces.
    let racing: Vec<_> = (0..8)
        .map(|_| tokio::spawn(redeem("aaaa bbbb cccc dddd eeee")))
        .collect();
    let mut won = Vec::new();
    let mut refused = Vec::new();
    for race in racing {
        let (status, body) = race.await.unwrap();
        if status == 200 {
            won.push(body);
        } else {
            refused.push((status, body));
        }
    }
    assert_eq!(won.len(), 1, "exactly one redemption: {won:?} {refused:?}");
    assert_eq!(won[0]["orderId"], 1);
    let first_at = won[0]["redeemedAt"].as_str().unwrap().to_owned();
    for (status, body) in &refused {
        assert_eq!(*status, 409, "{body}");
        assert_eq!(body["error"]["code"], "already_redeemed");
        let message = body["error"]["message"].as_str().unwrap();
        assert!(message.contains("already redeemed at"), "{message}");
        assert!(
            message.contains(&first_at[..19]),
            "says when: {message} / {first_at}"
        );
    }

    for (code, status, error) in [
        ("AAAA-BBBB-CCCC-DDDD-FFFF", 409, "order_cancelled"),
        ("AAAA-BBBB-CCCC-DDDD-GGGG", 409, "expired"),
        ("AAAA-BBBB-CCCC-DDDD-HHHH", 404, "unknown_code"),
        ("not a code", 400, "invalid_code"),
    ] {
        let (got, body) = redeem(code).await;
        assert_eq!(got, status, "{code}: {body}");
        assert_eq!(body["error"]["code"], error, "{code}");
    }
    let still: Option<chrono::DateTime<chrono::Utc>> = sqlx::query_scalar(&format!(
        "SELECT coupon_redeemed_at FROM \"{schema}\".orders WHERE id = 3"
    ))
    .fetch_one(&mut db)
    .await
    .unwrap();
    assert_eq!(still, None, "refusals change nothing");

    // The page form answers a page, and a stale token redeems nothing.
    let response = acme
        .http
        .post(portal.at(&format!("/deals/{name}/coupons/redeem")))
        .form(&[
            ("csrf", "stale".to_owned()),
            ("code", "AAAA-BBBB-CCCC-DDDD-GGGG".to_owned()),
        ])
        .send()
        .await
        .unwrap();
    assert_ne!(response.status(), 200);
    let response = acme
        .http
        .post(portal.at(&format!("/deals/{name}/coupons/redeem")))
        .form(&[
            ("csrf", csrf.clone()),
            ("code", "AAAA-BBBB-CCCC-DDDD-EEEE".to_owned()),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 409);
    assert!(response
        .text()
        .await
        .unwrap()
        .contains("already redeemed at"));
}

/// A redemption of `code` posted as `company` (with the form token of its deal `own`'s page) to
/// the deal path `name`, as JSON.
async fn redeem_through_the_page(
    portal: &PortalServer,
    company: &Browser,
    own: &str,
    name: &str,
    code: &str,
) -> (u16, serde_json::Value) {
    let (_, page) = company.page(&portal.at(&format!("/deals/{own}"))).await;
    let response = company
        .http
        .post(portal.at(&format!("/deals/{name}/coupons/redeem")))
        .header("accept", "application/json")
        .form(&[("csrf", csrf_of(&page)), ("code", code.to_owned())])
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    let text = response.text().await.unwrap();
    (
        status,
        serde_json::from_str(&text).unwrap_or(serde_json::Value::String(text)),
    )
}

#[tokio::test]
async fn code_a_deal_adds_to_its_schema_never_runs_with_the_platforms_rights() {
    let (portal, acme, name, schema) = acme_with_coupon_deal().await;
    let mut db = <sqlx::PgConnection as sqlx::Connection>::connect(&portal.database)
        .await
        .unwrap();
    // What a storefront running a tenant's code could do as the deal's role, which owns its
    // tables: a trigger that tries to shed a SET ROLE and notes who runs it, for the platform's
    // next redemption.
    sqlx::raw_sql(&format!(
        "SET ROLE \"{schema}\"; SET search_path TO \"{schema}\";
         INSERT INTO orders (id, shopper, quantity, unit_price, currency, status, idempotency_key,
                             coupon_code, coupon_valid_until)
         VALUES (1, 'anon-1', 1, 0, 'USD', 'confirmed', 'k1', 'AAAA-BBBB-CCCC-DDDD-EEEE', now() + interval '14 days');
         CREATE TABLE loot (who text, superuser boolean);
         CREATE FUNCTION note() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN
           -- Undoes a SET ROLE, were the platform working as itself behind one.
           PERFORM set_config('role', 'none', true);
           INSERT INTO loot SELECT current_user, rolsuper FROM pg_roles WHERE rolname = current_user;
           RETURN NEW; END $$;
         CREATE TRIGGER note BEFORE UPDATE ON orders FOR EACH ROW EXECUTE FUNCTION note();
         RESET ROLE;"
    ))
    .execute(&mut db)
    .await
    .unwrap();

    kube::Api::<timedeal_api::TimeDeal>::namespaced(portal.client.clone(), "td-acme-audio")
        .patch_status(
            &name,
            &kube::api::PatchParams::default(),
            &kube::api::Patch::Merge(
                serde_json::json!({"status": {"phase": "Live", "schema": schema}}),
            ),
        )
        .await
        .unwrap();
    let code = "AAAA-BBBB-CCCC-DDDD-EEEE";
    let (status, body) = redeem_through_the_page(&portal, &acme, &name, &name, code).await;
    assert_eq!(status, 200, "{body}");
    let export = acme
        .http
        .get(portal.at(&format!("/deals/{name}/orders.csv")))
        .send()
        .await
        .unwrap();
    assert_eq!(export.status(), 200);
    assert!(export.text().await.unwrap().contains("anon-1"));
    let loot: Vec<(String, bool)> =
        sqlx::query_as(&format!("SELECT who, superuser FROM \"{schema}\".loot"))
            .fetch_all(&mut db)
            .await
            .unwrap();
    assert_eq!(
        loot,
        vec![(schema.clone(), false)],
        "the trigger ran once, as the deal's own role and nothing more"
    );
}

/// The portal's own database user reaches a deal's orders only by logging in as the deal:
/// it cannot read them itself, become the deal's role, read more of the registry than each
/// deal's login, or make roles; its exports and redemptions work all the same.
#[tokio::test]
async fn the_portals_database_user_reaches_a_deal_only_by_logging_in_as_it() {
    let (portal, acme, name, schema) = acme_with_coupon_deal().await;
    let pool = portal.portal.accounts.pool();
    let who: (String, bool, bool) = sqlx::query_as(
        "SELECT current_user::text, rolsuper, rolcreaterole FROM pg_roles \
         WHERE rolname = current_user",
    )
    .fetch_one(pool)
    .await
    .unwrap();
    assert_eq!(who, (common::PORTAL_ROLE.to_owned(), false, false));
    for refused in [
        format!("SELECT count(*) FROM \"{schema}\".orders"),
        format!("SET ROLE \"{schema}\""),
        "SELECT namespace, name FROM timedeal_platform.deal_schemas".to_owned(),
        "UPDATE timedeal_platform.deal_schemas SET password = 'x'".to_owned(),
        "CREATE ROLE intruder LOGIN".to_owned(),
        // No schema of its making can stand on another user's search path.
        "CREATE SCHEMA timedeal".to_owned(),
        format!("CREATE TABLE \"{schema}\".planted (x int)"),
    ] {
        let error = sqlx::query(&refused).execute(pool).await.unwrap_err();
        let code = error.as_database_error().and_then(|e| e.code());
        assert_eq!(code.as_deref(), Some("42501"), "{refused}: {error}");
    }
    // What it needs: each deal's login, the calendar, the history.
    let logins: i64 = sqlx::query_scalar(
        "SELECT count(password) FROM timedeal_platform.deal_schemas WHERE schema = $1",
    )
    .bind(&schema)
    .fetch_one(pool)
    .await
    .unwrap();
    assert_eq!(logins, 1);
    sqlx::query("SELECT count(*) FROM timedeal_platform.figure_samples")
        .execute(pool)
        .await
        .unwrap();
    let export = acme
        .http
        .get(portal.at(&format!("/deals/{name}/orders.csv")))
        .send()
        .await
        .unwrap();
    assert_eq!(export.status(), 200, "the export works as the deal");
}

#[tokio::test]
async fn a_deal_name_that_carries_another_after_a_hash_reaches_only_its_own() {
    let portal = PortalServer::start(10).await;
    let acme = portal
        .company("ACME Audio", "sales@acme-audio.example", true)
        .await;
    let bolt = portal.company("Bolt", "hello@bolt.example", true).await;
    let (victim, schema) = coupon_deal(&portal, &acme).await;
    let mut db = <sqlx::PgConnection as sqlx::Connection>::connect(&portal.database)
        .await
        .unwrap();
    sqlx::raw_sql(&format!(
        "INSERT INTO \"{schema}\".orders (id, shopper, quantity, unit_price, currency, status,
           idempotency_key, coupon_code, coupon_valid_until)
         VALUES (1, 'secret-shopper', 1, 0, 'USD', 'confirmed', 'k1', 'AAAA-BBBB-CCCC-DDDD-EEEE', now() + interval '14 days');
         INSERT INTO \"{schema}\".deliveries (order_id, name, phone, line1, line2, city, postal_code, country)
         VALUES (1, 'Ada Lovelace', '+44 20 7946 0958', '12 St James''s Square', '', 'London', 'SW1Y 4JH', 'GB');"
    ))
    .execute(&mut db)
    .await
    .unwrap();
    let (own, _) = coupon_deal(&portal, &bolt).await;
    for path in [
        format!("/deals/{own}%23{victim}/orders.csv"),
        format!("/deals/{own}%23{victim}/orders.json"),
        format!("/deals/{own}%23td-acme-audio%2F{victim}/orders.csv"),
        format!("/deals/{own}%3F{victim}/orders.csv"),
    ] {
        let response = bolt.http.get(portal.at(&path)).send().await.unwrap();
        assert_eq!(response.status(), 404, "{path}");
        let text = response.text().await.unwrap();
        assert!(
            !text.contains("secret-shopper") && !text.contains("Ada Lovelace"),
            "{path}: {text}"
        );
    }
    let smuggled = format!("{own}%23{victim}");
    let code = "AAAA-BBBB-CCCC-DDDD-EEEE";
    let (status, _) = redeem_through_the_page(&portal, &bolt, &own, &smuggled, code).await;
    assert_eq!(status, 404);
    let redeemed: Option<chrono::DateTime<chrono::Utc>> = sqlx::query_scalar(&format!(
        "SELECT coupon_redeemed_at FROM \"{schema}\".orders WHERE id = 1"
    ))
    .fetch_one(&mut db)
    .await
    .unwrap();
    assert_eq!(redeemed, None, "the other company's coupon is untouched");
}
