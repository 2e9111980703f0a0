//! What the operator does with shoppers' personal data: it hands storefronts the platform's
//! SMTP server for email reminders, and once a deal's retention is over it deletes the delivery
//! details and reminder addresses itself, since it scales the storefront that would have done
//! so to zero at that very moment. Against the in-memory API and a real PostgreSQL.

mod common;

use common::harness::*;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use sqlx::{Connection, PgConnection};

/// The deal's schema as its storefront's own migrations build it, connected as the deal's role
/// as the storefront is, with one order, its delivery details and one reminder address.
async fn storefront_schema_with_personal_data(h: &Harness) -> (String, PgConnection) {
    let schema = h.deal().await.status.unwrap().schema.unwrap();
    let mut db = PgConnection::connect(&h.platform).await.unwrap();
    sqlx::raw_sql(&format!("SET ROLE {schema}; SET search_path TO {schema}"))
        .execute(&mut db)
        .await
        .unwrap();
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../tenant-app/migrations");
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .collect();
    files.sort();
    for file in files {
        sqlx::raw_sql(&std::fs::read_to_string(&file).unwrap())
            .execute(&mut db)
            .await
            .unwrap_or_else(|e| panic!("{}: {e}", file.display()));
    }
    sqlx::raw_sql(
        "INSERT INTO orders (id, shopper, quantity, unit_price, currency, status, idempotency_key) \
         VALUES (1, 's-1', 1, 9900, 'USD', 'confirmed', 'k-1'); \
         INSERT INTO deliveries (order_id, name, phone, line1, city, postal_code, country) \
         VALUES (1, 'Ana Lima', '+1 212 555 0147', '1 Main St', 'Springfield', '12345', 'US'); \
         INSERT INTO reminders (email, token, created_at) \
         VALUES ('ana@example.com', '0123456789abcdef0123456789abcdef', now())",
    )
    .execute(&mut db)
    .await
    .unwrap();
    (schema, db)
}

async fn count(db: &mut PgConnection, table: &str) -> i64 {
    sqlx::query_scalar(&format!("SELECT count(*) FROM {table}"))
        .fetch_one(db)
        .await
        .unwrap()
}

#[tokio::test]
async fn retention_deletes_personal_data_though_the_storefront_is_scaled_to_zero() {
    let h = Harness::new(sample()).await;
    h.settle().await;
    h.storefront_ready(2).await;
    let (_, mut db) = storefront_schema_with_personal_data(&h).await;

    // Ended, retention not over yet: everything stays.
    h.clock.set(h.at(61));
    h.reconcile().await.unwrap();
    assert_eq!(count(&mut db, "deliveries").await, 1);
    assert_eq!(count(&mut db, "reminders").await, 1);
    assert!(h
        .deal()
        .await
        .status
        .unwrap()
        .personal_data_deleted_at
        .is_none());

    // Retention (7 days) over: scaled to zero, and the operator deletes the personal data.
    h.clock.set(h.at(60 + 7 * 24 * 60));
    h.reconcile().await.unwrap();
    let storefront = Api::<Deployment>::namespaced(h.client.clone(), NS)
        .get("winter-headphones-storefront")
        .await
        .unwrap();
    assert_eq!(storefront.spec.unwrap().replicas, Some(0));
    assert_eq!(count(&mut db, "deliveries").await, 0);
    assert_eq!(count(&mut db, "reminders").await, 0);
    assert_eq!(count(&mut db, "orders").await, 1, "the orders stay");
    assert_eq!(count(&mut db, "personal_data_deleted").await, 1);
    let deleted_at = h.deal().await.status.unwrap().personal_data_deleted_at;
    assert_eq!(
        deleted_at,
        Some(timedeal_operator::conditions::time(h.at(60 + 7 * 24 * 60)))
    );

    // Once is enough: later reconciles keep the time and touch nothing.
    h.clock.advance(chrono::Duration::hours(1));
    h.reconcile().await.unwrap();
    assert_eq!(
        h.deal().await.status.unwrap().personal_data_deleted_at,
        deleted_at
    );
}

#[tokio::test]
async fn a_trigger_the_deal_adds_runs_with_its_rights_alone_and_cannot_fake_an_erasure() {
    let h = Harness::new(sample()).await;
    h.settle().await;
    h.storefront_ready(2).await;
    let (schema, mut db) = storefront_schema_with_personal_data(&h).await;
    // The deal's role owns its tables, so code it runs can add a trigger for the erasure: first
    // one that keeps the rows.
    sqlx::raw_sql(
        "CREATE TABLE loot (who text, superuser boolean); \
         CREATE FUNCTION keep() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN \
           INSERT INTO loot SELECT current_user, rolsuper FROM pg_roles \
             WHERE rolname = current_user; \
           RETURN NULL; END $$; \
         CREATE TRIGGER keep BEFORE DELETE ON deliveries FOR EACH ROW EXECUTE FUNCTION keep();",
    )
    .execute(&mut db)
    .await
    .unwrap();

    h.clock.set(h.at(60 + 7 * 24 * 60));
    h.reconcile().await.unwrap();
    assert_eq!(count(&mut db, "deliveries").await, 1, "kept by the trigger");
    assert!(
        h.deal()
            .await
            .status
            .unwrap()
            .personal_data_deleted_at
            .is_none(),
        "an erase that left rows is not reported as done"
    );
    // Let through, the erasure goes through; the trigger, trying to shed a SET ROLE, ran as the
    // deal's own role and nothing more.
    sqlx::raw_sql(
        "CREATE OR REPLACE FUNCTION keep() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN \
           PERFORM set_config('role', 'none', true); \
           INSERT INTO loot SELECT current_user, rolsuper FROM pg_roles \
             WHERE rolname = current_user; \
           RETURN OLD; END $$;",
    )
    .execute(&mut db)
    .await
    .unwrap();
    h.clock.advance(chrono::Duration::minutes(1));
    h.reconcile().await.unwrap();
    assert_eq!(count(&mut db, "deliveries").await, 0);
    assert_eq!(count(&mut db, "reminders").await, 0);
    assert!(h
        .deal()
        .await
        .status
        .unwrap()
        .personal_data_deleted_at
        .is_some());
    let who: Vec<(String, bool)> = sqlx::query_as("SELECT who, superuser FROM loot")
        .fetch_all(&mut db)
        .await
        .unwrap();
    assert_eq!(who, vec![(schema, false)]);
}

#[tokio::test]
async fn storefronts_get_the_platforms_smtp_server_for_email_reminders() {
    let mut h = Harness::new(sample()).await;
    h.settle().await;
    let deployments = Api::<Deployment>::namespaced(h.client.clone(), NS);
    let storefront = || async {
        deployments
            .get("winter-headphones-storefront")
            .await
            .unwrap()
    };
    let env_names = |d: Deployment| -> Vec<String> {
        d.spec.unwrap().template.spec.unwrap().containers[0]
            .env
            .clone()
            .unwrap_or_default()
            .into_iter()
            .map(|e| e.name)
            .collect()
    };
    assert!(!env_names(storefront().await).contains(&"TIMEDEAL_SMTP_URL".to_owned()));
    let checksum_before = storefront()
        .await
        .spec
        .unwrap()
        .template
        .metadata
        .unwrap()
        .annotations;

    h.with_mail(
        "Timedeal <deals@example.com>",
        "smtp://mailer:s3cret@mail.example.com:587?tls=required",
    )
    .await;
    h.reconcile().await.unwrap();

    // The URL travels in the deal's own Secret, never in the pod spec.
    assert_eq!(
        h.storefront_keys().await["smtp-url"],
        "smtp://mailer:s3cret@mail.example.com:587?tls=required"
    );
    let deployment = storefront().await;
    let pod = deployment.spec.clone().unwrap().template;
    assert_ne!(
        pod.metadata.unwrap().annotations,
        checksum_before,
        "the new secret rolls the pods"
    );
    let env = pod.spec.unwrap().containers[0].env.clone().unwrap();
    let smtp = env.iter().find(|e| e.name == "TIMEDEAL_SMTP_URL").unwrap();
    assert!(smtp.value.is_none());
    let reference = smtp
        .value_from
        .as_ref()
        .unwrap()
        .secret_key_ref
        .as_ref()
        .unwrap();
    assert_eq!(
        (reference.name.as_str(), reference.key.as_str()),
        ("winter-headphones-storefront-keys", "smtp-url")
    );
    let from = env.iter().find(|e| e.name == "TIMEDEAL_MAIL_FROM").unwrap();
    assert_eq!(from.value.as_deref(), Some("Timedeal <deals@example.com>"));
    // The storefront may reach the SMTP server's port, and no other new one.
    let policy = Api::<NetworkPolicy>::namespaced(h.client.clone(), NS)
        .get("winter-headphones-storefront")
        .await
        .unwrap();
    let ports: Vec<_> = policy
        .spec
        .unwrap()
        .egress
        .unwrap()
        .iter()
        .flat_map(|rule| rule.ports.clone().unwrap_or_default())
        .filter_map(|p| p.port)
        .collect();
    assert!(ports.contains(&IntOrString::Int(587)), "{ports:?}");
}
