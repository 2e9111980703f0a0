//! A company from sign-up to its first deal, across the portal and the operator, against one
//! in-memory Kubernetes API and one real PostgreSQL: the sign-up files an unapproved Company; the
//! admin approves it with `kubectl timedeal approve`; the operator's company reconcile makes the
//! namespace with its quota, limits, policy and the portal's binding; the company's request lands
//! there, and the operator's gate lets it through.

mod common;

use std::{sync::Arc, time::Duration};

use common::{valid_request, Browser, PortalServer, PASSWORD};
use k8s_openapi::api::{
    core::v1::{LimitRange, Namespace, ResourceQuota},
    networking::v1::NetworkPolicy,
    rbac::v1::RoleBinding,
};
use kube::{
    runtime::events::{Recorder, Reporter},
    Api, ResourceExt,
};
use timedeal_api::Company;
use timedeal_operator::{
    cache,
    company::{self, tenancy::PortalAccount},
    figures::FiguresClient,
    metrics::Metrics,
    reconcile::{Config, Context},
    resources::Settings,
};

/// The operator, its caches loaded as its watches would load them.
async fn operator(portal: &PortalServer) -> Arc<Context> {
    let (cache, mut writers) = cache::new();
    writers.fill(&portal.client, "td-acme-audio").await.unwrap();
    Arc::new(Context::new(
        portal.client.clone(),
        Config {
            settings: Settings::with_images("registry.example/tenant-app:1", "redis:7"),
            operator_namespace: "timedeal-system".into(),
            postgres_secret: "timedeal-postgres".into(),
            postgres_secret_key: "url".into(),
            figures_interval: Duration::from_secs(15),
            final_figures_timeout: Duration::from_secs(2),
            api_timeout: Duration::from_secs(2),
            portal_account: PortalAccount::default(),
            calendar_replicas: None,
            hosts: Default::default(),
            portal_database_role: String::new(),
        },
        portal.clock.clone(),
        FiguresClient::in_cluster(Duration::from_secs(1)),
        Recorder::new(
            portal.client.clone(),
            Reporter {
                controller: "timedeal-operator".into(),
                instance: Some("test".into()),
            },
        ),
        Arc::new(Metrics::new()),
        cache,
    ))
}

#[tokio::test]
async fn a_company_signs_up_is_approved_gets_its_namespace_and_files_a_deal_there() {
    let portal = PortalServer::start(10).await;
    let browser = Browser::new();
    browser
        .sign_up(&portal, "ACME Audio", "sales@acme-audio.example", PASSWORD)
        .await;

    // The admin approves the company, as `kubectl timedeal approve acme-audio` does.
    let admin = kubectl_timedeal::Plugin::new(portal.client.clone(), "default");
    let said = admin.approve_any("acme-audio").await.unwrap();
    assert!(said.contains("company acme-audio approved"), "{said}");

    // The operator's company reconcile.
    let companies: Api<Company> = Api::all(portal.client.clone());
    let acme = companies.get("acme-audio").await.unwrap();
    company::reconcile(Arc::new(acme), operator(&portal).await)
        .await
        .unwrap();
    let namespace = Api::<Namespace>::all(portal.client.clone())
        .get("td-acme-audio")
        .await
        .unwrap();
    assert_eq!(
        namespace.labels()["pod-security.kubernetes.io/enforce"],
        "restricted"
    );
    let client = portal.client.clone();
    let quota = Api::<ResourceQuota>::namespaced(client.clone(), "td-acme-audio")
        .get("timedeal-company")
        .await
        .unwrap();
    assert_eq!(
        quota.spec.unwrap().hard.unwrap()["count/timedeals.timedeal.dev"].0,
        "5"
    );
    Api::<LimitRange>::namespaced(client.clone(), "td-acme-audio")
        .get("timedeal-company")
        .await
        .unwrap();
    Api::<NetworkPolicy>::namespaced(client.clone(), "td-acme-audio")
        .get("timedeal-company")
        .await
        .unwrap();
    let binding = Api::<RoleBinding>::namespaced(client.clone(), "td-acme-audio")
        .get("timedeal-portal")
        .await
        .unwrap();
    assert_eq!(binding.subjects.unwrap()[0].name, "timedeal-portal");
    let acme = companies.get("acme-audio").await.unwrap();
    let ready = &acme.status.unwrap().conditions[0];
    assert_eq!(
        (ready.type_.as_str(), ready.status.as_str()),
        ("Ready", "True")
    );

    // The company signs in and files a deal: it lands in its namespace, which an approved Company
    // owns, so the operator's gate lets it through.
    let signed_in = browser
        .sign_in(&portal, "sales@acme-audio.example", PASSWORD)
        .await;
    assert_eq!(signed_in.url().path(), "/deals");
    // Its host falls under the suffix the platform gives every company.
    let mut request = valid_request();
    for (field, value) in request.iter_mut() {
        if *field == "host" {
            *value = "winter.acme-audio.companies.example.com".into();
        }
    }
    assert_eq!(browser.request(&portal, &request).await.status(), 200);
    let deals = portal.deals().await;
    assert_eq!(deals.len(), 1);
    assert_eq!(deals[0].namespace().as_deref(), Some("td-acme-audio"));
    let (cache, mut writers) = cache::new();
    writers.fill(&portal.client, "td-acme-audio").await.unwrap();
    assert_eq!(company::gate(&cache.companies, &deals[0]), None);
    // Within its company's quota too, at the operator's default sizes.
    let settings = Settings::with_images("registry.example/tenant-app:1", "redis:7");
    assert_eq!(
        company::over_budget(&cache.companies, &deals[0], &settings),
        None
    );
}
