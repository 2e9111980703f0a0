//! The plugin's commands against an in-memory Kubernetes API holding a live deal, its children
//! and its Events.

use chrono::{DateTime, Utc};
use kube::{api::Api, Client};
use kube_fake_client::ClientBuilder;
use kubectl_timedeal::{screens, Plugin, PluginError};
use serde_json::json;
use timedeal_api::{Company, CompanySpec, TimeDeal};

const NS: &str = "acme-audio";

fn now() -> DateTime<Utc> {
    "2026-12-01T03:10:00Z".parse().unwrap()
}

fn deal(approved: bool, ended: bool) -> serde_json::Value {
    let text = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../manifests/samples/timedeal.yaml"
    ))
    .unwrap();
    let mut td = serde_json::to_value(timedeal_api::validation::parse(&text).unwrap()).unwrap();
    td["spec"]["approved"] = json!(approved);
    td["status"] = json!({
        "phase": if ended { "Ended" } else { "Live" },
        "url": "https://headphones.deals.example.com/",
        "stock": {"remaining": 880, "sold": 120, "reserved": 4},
        "queue": {"waiting": 40, "active": 10, "peakWaiting": 900},
        "orders": {"confirmed": 60, "cancelled": 1},
        "revenue": 1188000,
        "startedAt": "2026-12-01T03:00:00Z",
        "figuresUpdatedAt": "2026-12-01T03:09:30Z",
        "pinned": {"tenantApp": "ghcr.io/timedeal/tenant-app:0.1.0", "redis": "redis:7.2.5-alpine", "template": "2"},
        "pendingUpgrade": {"tenantApp": "ghcr.io/timedeal/tenant-app:0.2.0", "redis": "redis:7.2.5-alpine", "template": "2"},
        "conditions": [
            {"type": "Ready", "status": "True", "reason": "Live", "message": "selling",
             "lastTransitionTime": "2026-12-01T03:00:00Z"},
            {"type": "Reconciled", "status": "False", "reason": "ApplyFailed",
             "message": "Ingress acme-audio/winter-headphones-storefront: Invalid (422): host",
             "lastTransitionTime": "2026-12-01T03:05:00Z"}
        ]
    });
    if ended {
        td["status"]["endedAt"] = json!("2026-12-01T04:00:00Z");
    }
    td
}

async fn api(approved: bool, ended: bool) -> Client {
    let labels = json!({"timedeal.dev/deal": "winter-headphones"});
    ClientBuilder::new()
        .with_resource::<TimeDeal>()
        .with_runtime_objects(vec![
            deal(approved, ended),
            json!({"apiVersion": "apps/v1", "kind": "Deployment",
                "metadata": {"name": "winter-headphones-storefront", "namespace": NS, "labels": labels},
                "spec": {"selector": {}, "template": {}},
                "status": {"replicas": 6, "readyReplicas": 5}}),
            json!({"apiVersion": "apps/v1", "kind": "StatefulSet",
                "metadata": {"name": "winter-headphones-redis", "namespace": NS, "labels": labels},
                "spec": {"replicas": 1, "selector": {}, "serviceName": "x", "template": {}},
                "status": {"replicas": 1, "readyReplicas": 1}}),
            json!({"apiVersion": "autoscaling/v2", "kind": "HorizontalPodAutoscaler",
                "metadata": {"name": "winter-headphones-storefront", "namespace": NS, "labels": labels},
                "spec": {"minReplicas": 6, "maxReplicas": 20,
                    "scaleTargetRef": {"kind": "Deployment", "name": "winter-headphones-storefront"}},
                "status": {"currentReplicas": 6, "desiredReplicas": 6}}),
            json!({"apiVersion": "events.k8s.io/v1", "kind": "Event",
                "metadata": {"name": "winter-headphones.1", "namespace": NS},
                "eventTime": "2026-12-01T03:00:01.000000Z", "type": "Normal", "reason": "Live",
                "note": "WarmingUp → Live: selling", "reportingController": "timedeal-operator",
                "reportingInstance": "x", "action": "Reconcile",
                "regarding": {"kind": "TimeDeal", "name": "winter-headphones", "namespace": NS}}),
            json!({"apiVersion": "events.k8s.io/v1", "kind": "Event",
                "metadata": {"name": "other.1", "namespace": NS},
                "eventTime": "2026-12-01T03:00:02.000000Z", "type": "Normal", "reason": "Live",
                "note": "another deal's", "reportingController": "timedeal-operator",
                "reportingInstance": "x", "action": "Reconcile",
                "regarding": {"kind": "TimeDeal", "name": "other", "namespace": NS}}),
        ])
        .build()
        .await
        .unwrap()
}

/// The same API with Companies (cluster-scoped, served beside the in-memory API).
async fn with_companies(approved: bool, ended: bool, companies: &[Company]) -> Client {
    let client = timedeal_testkit::kube_api::with_cluster_scoped(api(approved, ended).await);
    let api: Api<Company> = Api::all(client.clone());
    for company in companies {
        api.create(&Default::default(), company).await.unwrap();
    }
    client
}

fn company(name: &str, namespace: &str, approved: bool) -> Company {
    Company::new(
        name,
        CompanySpec {
            display_name: format!("{name} Inc."),
            contact_email: format!("sales@{name}.test"),
            namespace: namespace.into(),
            approved,
            quotas: Default::default(),
            hosts: Vec::new(),
        },
    )
}

#[tokio::test]
async fn status_shows_the_deal_its_children_and_its_events_on_one_screen() {
    let plugin = Plugin::new(api(true, false).await, NS);
    let seen = plugin.observe("winter-headphones").await.unwrap();
    let screen = screens::status(&seen.deal, &seen.children, &seen.events, now());
    for expected in [
        "TimeDeal acme-audio/winter-headphones: Live",
        "99.00 USD (list 299.00 USD), stock 1000",
        "120 sold, 880 left, 4 reserved",
        "40 waiting (peak 900), 10 admitted",
        "60 confirmed, 1 cancelled",
        "revenue   11,880.00 USD",
        "(figures last changed 30s ago)",
        "templates v2",
        "upgrade   pending until the sale is over: storefront ghcr.io/timedeal/tenant-app:0.2.0",
        "Reconciled   False  ApplyFailed",
        "Ingress acme-audio/winter-headphones-storefront: Invalid (422)",
        "Deployment               winter-headphones-storefront         5/6 ready",
        "StatefulSet              winter-headphones-redis              1/1 ready",
        "6–20 replicas, now 6",
        "WarmingUp → Live: selling",
    ] {
        assert!(
            screen.contains(expected),
            "{expected:?} missing from:\n{screen}"
        );
    }
    assert!(!screen.contains("another deal's"), "{screen}");
}

#[tokio::test]
async fn approve_suspend_and_resume_edit_the_spec_and_say_what_follows() {
    let client = api(false, false).await;
    let plugin = Plugin::new(client.clone(), NS);
    let deals: Api<TimeDeal> = Api::namespaced(client, NS);
    let said = plugin.approve("winter-headphones").await.unwrap();
    assert!(said.contains("approved"), "{said}");
    assert!(deals.get("winter-headphones").await.unwrap().spec.approved);
    assert!(plugin
        .approve("winter-headphones")
        .await
        .unwrap()
        .contains("already approved"));

    let said = plugin.suspend("winter-headphones", true).await.unwrap();
    assert!(said.contains("Suspended once every replica has"), "{said}");
    assert!(deals.get("winter-headphones").await.unwrap().spec.suspend);
    assert!(plugin
        .suspend("winter-headphones", true)
        .await
        .unwrap()
        .contains("already suspended"));
    plugin.suspend("winter-headphones", false).await.unwrap();
    assert!(!deals.get("winter-headphones").await.unwrap().spec.suspend);
}

#[tokio::test]
async fn report_says_whether_the_figures_are_final() {
    let live = Plugin::new(api(true, false).await, NS)
        .deal("winter-headphones")
        .await
        .unwrap();
    let text = screens::report(&live);
    assert!(text.contains("so far"), "{text}");
    assert!(text.contains("revenue   11,880.00 USD"), "{text}");
    let ended = Plugin::new(api(true, true).await, NS)
        .deal("winter-headphones")
        .await
        .unwrap();
    let text = screens::report(&ended);
    assert!(text.contains("the figures it ended with"), "{text}");
    assert!(text.contains("ended     2026-12-01 04:00:00 UTC"), "{text}");
}

#[tokio::test]
async fn a_deal_that_is_not_there_is_named_with_where_to_look() {
    let plugin = Plugin::new(api(true, false).await, NS);
    let error = plugin.suspend("no-such-deal", true).await.unwrap_err();
    assert!(matches!(error, PluginError::NotFound { .. }));
    assert!(error.to_string().contains("kubectl get td -A"), "{error}");
}

#[tokio::test]
async fn companies_lists_waiting_ones_first_and_approve_lets_a_company_in() {
    let client = with_companies(
        true,
        false,
        &[
            company("acme", NS, true),
            company("bolt", "company-bolt", false),
        ],
    )
    .await;
    let plugin = Plugin::new(client.clone(), NS);
    let screen = screens::companies(&plugin.companies().await.unwrap());
    let lines: Vec<&str> = screen.lines().collect();
    assert!(lines[0].starts_with("NAME"), "{screen}");
    assert!(
        lines[1].starts_with("bolt") && lines[1].contains(" no "),
        "{screen}"
    );
    assert!(
        lines[2].starts_with("acme") && lines[2].contains(" yes "),
        "{screen}"
    );
    assert!(
        screen.contains("5 deals, 40 replicas, 100000 units"),
        "{screen}"
    );
    assert!(screen.contains("1 waiting for approval"), "{screen}");

    let said = plugin.approve_any("bolt").await.unwrap();
    assert!(said.contains("company bolt approved"), "{said}");
    assert!(said.contains("company-bolt"), "{said}");
    let companies: Api<Company> = Api::all(client.clone());
    assert!(companies.get("bolt").await.unwrap().spec.approved);
    assert!(plugin
        .approve_any("company/bolt")
        .await
        .unwrap()
        .contains("already approved"));
    // A bare name only a deal has approves the deal.
    let said = plugin.approve_any("winter-headphones").await.unwrap();
    assert!(said.contains("already approved"), "{said}");
}

#[tokio::test]
async fn approve_asks_which_when_a_company_and_a_deal_share_a_name() {
    let client = with_companies(false, false, &[company("winter-headphones", "x", false)]).await;
    let plugin = Plugin::new(client.clone(), NS);
    let error = plugin.approve_any("winter-headphones").await.unwrap_err();
    assert!(matches!(error, PluginError::Ambiguous { .. }));
    assert!(
        error.to_string().contains("deal/winter-headphones"),
        "{error}"
    );
    let deals: Api<TimeDeal> = Api::namespaced(client.clone(), NS);
    assert!(
        !deals.get("winter-headphones").await.unwrap().spec.approved,
        "nothing changed"
    );
    plugin.approve_any("deal/winter-headphones").await.unwrap();
    assert!(deals.get("winter-headphones").await.unwrap().spec.approved);
    let companies: Api<Company> = Api::all(client);
    assert!(
        !companies
            .get("winter-headphones")
            .await
            .unwrap()
            .spec
            .approved
    );
    let error = plugin.approve_any("nobody").await.unwrap_err();
    assert!(matches!(error, PluginError::NothingNamed { .. }), "{error}");
}

#[tokio::test]
async fn calendar_shows_each_hour_against_the_capacity_and_who_booked_it() {
    let plugin = Plugin::new(api(false, false).await, NS);
    let deals = plugin.all_deals().await.unwrap();
    // The sample: 6 replicas from 02:45 (warm-up) to 04:00 UTC on 2026-12-01, not approved yet.
    let day = "2026-12-01".parse().unwrap();
    let screen = screens::calendar(day, &deals, Some(8));
    let lines: Vec<&str> = screen.lines().collect();
    assert!(
        lines[0].contains("8 storefront replicas at once"),
        "{screen}"
    );
    assert!(lines[2].starts_with("01:00  free     0/8"), "{screen}");
    assert!(
        lines[3].starts_with("02:00  tight    6/8  acme-audio/winter-headphones (pending) 6"),
        "{screen}"
    );
    assert!(lines[4].starts_with("03:00  tight    6/8"), "{screen}");
    assert!(lines[5].starts_with("04:00  free     0/8"), "{screen}");
    let full = screens::calendar(day, &deals, Some(6));
    assert!(full.contains("03:00  FULL     6/6"), "{full}");
    let unknown = screens::calendar(day, &deals, None);
    assert!(unknown.contains("keeps no calendar"), "{unknown}");
}

#[tokio::test]
async fn reset_password_puts_a_one_time_token_on_the_company_and_gives_the_link() {
    let client = with_companies(true, false, &[company("acme-audio", NS, true)]).await;
    let plugin = Plugin::new(client.clone(), NS);
    let now: DateTime<Utc> = "2026-11-21T09:00:00Z".parse().unwrap();
    let said = plugin
        .reset_password("acme-audio", "https://deals.example.com/", "TOKEN123", now)
        .await
        .unwrap();
    assert!(
        said.starts_with("https://deals.example.com/reset/acme-audio/TOKEN123\n"),
        "{said}"
    );
    let stored = Api::<Company>::all(client).get("acme-audio").await.unwrap();
    let annotations = stored.metadata.annotations.unwrap();
    assert_eq!(annotations["timedeal.dev/password-reset"], "TOKEN123");
    assert_eq!(
        annotations["timedeal.dev/password-reset-at"],
        "2026-11-21T09:00:00Z"
    );
    let error = plugin
        .reset_password("nobody", "https://x", "T", now)
        .await
        .unwrap_err();
    assert!(matches!(error, PluginError::NothingNamed { .. }));
}
