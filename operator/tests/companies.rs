//! Companies: approval gives a company its namespace with quota, limits, policies and the portal's
//! binding; deals run only in an approved company's namespace and within its quotas.

mod common;

use common::{company, harness::*};
use k8s_openapi::api::{
    core::v1::{LimitRange, Namespace, ResourceQuota},
    rbac::v1::RoleBinding,
};
use timedeal_api::Company;

const COMPANY_NS: &str = "company-bolt";

fn companies(client: &Client) -> Api<Company> {
    Api::all(client.clone())
}

async fn set_approved(h: &Harness, name: &str, approved: bool) {
    companies(&h.client)
        .patch(
            name,
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"approved": approved}})),
        )
        .await
        .unwrap();
}

fn ready(company: &Company) -> (String, String, String) {
    let c = company
        .status
        .as_ref()
        .and_then(|s| s.conditions.iter().find(|c| c.type_ == "Ready"))
        .expect("a Ready condition");
    (c.status.clone(), c.reason.clone(), c.message.clone())
}

#[tokio::test]
async fn approval_gives_the_company_a_restricted_namespace_with_quota_limits_policy_and_binding() {
    let h = Harness::with_companies(
        sample(),
        vec![
            company("acme", NS, true),
            company("bolt", COMPANY_NS, false),
        ],
    )
    .await;

    // Unapproved: nothing is made, and the status says what to do.
    h.reconcile_company("bolt").await.unwrap();
    let bolt = companies(&h.client).get("bolt").await.unwrap();
    let (status, reason, message) = ready(&bolt);
    assert_eq!(
        (status.as_str(), reason.as_str()),
        ("False", "PendingApproval")
    );
    assert!(
        message.contains("kubectl timedeal approve bolt"),
        "{message}"
    );
    let namespaces: Api<Namespace> = Api::all(h.client.clone());
    assert!(namespaces.get_opt(COMPANY_NS).await.unwrap().is_none());

    set_approved(&h, "bolt", true).await;
    h.reconcile_company("bolt").await.unwrap();

    let namespace = namespaces.get(COMPANY_NS).await.unwrap();
    let labels = namespace.labels();
    assert_eq!(labels["pod-security.kubernetes.io/enforce"], "restricted");
    assert_eq!(labels["timedeal.dev/company"], "bolt");
    assert_eq!(namespace.owner_references()[0].name, "bolt");

    let quota = Api::<ResourceQuota>::namespaced(h.client.clone(), COMPANY_NS)
        .get("timedeal-company")
        .await
        .unwrap();
    let hard = quota.spec.unwrap().hard.unwrap();
    assert_eq!(hard["count/timedeals.timedeal.dev"].0, "5");
    assert_eq!(hard["services.loadbalancers"].0, "0");
    let limits = Api::<LimitRange>::namespaced(h.client.clone(), COMPANY_NS)
        .get("timedeal-company")
        .await
        .unwrap();
    assert_eq!(
        limits.spec.unwrap().limits[0]
            .default_request
            .as_ref()
            .unwrap()["cpu"]
            .0,
        "250m"
    );
    let deny = Api::<NetworkPolicy>::namespaced(h.client.clone(), COMPANY_NS)
        .get("timedeal-company")
        .await
        .unwrap()
        .spec
        .unwrap();
    assert_eq!(deny.pod_selector, Some(Default::default()), "every pod");
    assert_eq!(
        deny.policy_types,
        Some(vec!["Ingress".to_owned(), "Egress".to_owned()])
    );
    assert!(
        deny.ingress.is_none() && deny.egress.is_none(),
        "allows nothing"
    );
    let binding = Api::<RoleBinding>::namespaced(h.client.clone(), COMPANY_NS)
        .get("timedeal-portal")
        .await
        .unwrap();
    assert_eq!(binding.role_ref.name, "timedeal-portal-deals");
    assert_eq!(binding.role_ref.kind, "ClusterRole");
    let subject = &binding.subjects.unwrap()[0];
    assert_eq!(
        (subject.kind.as_str(), subject.name.as_str()),
        ("ServiceAccount", "timedeal-portal")
    );
    assert_eq!(subject.namespace.as_deref(), Some("timedeal-system"));
    // The operator's own writes here come through a binding in this namespace only.
    let own = Api::<RoleBinding>::namespaced(h.client.clone(), COMPANY_NS)
        .get("timedeal-operator")
        .await
        .unwrap();
    assert_eq!(own.role_ref.name, "timedeal-operator-tenant");
    let subject = &own.subjects.unwrap()[0];
    assert_eq!(
        (subject.name.as_str(), subject.namespace.as_deref()),
        ("timedeal-operator", Some("timedeal-system"))
    );

    let bolt = companies(&h.client).get("bolt").await.unwrap();
    let (status, reason, _) = ready(&bolt);
    assert_eq!(
        (status.as_str(), reason.as_str()),
        ("True", "NamespaceReady")
    );
    assert_eq!(bolt.status.unwrap().deals, Some(0));

    // Nothing changed: the namespace's objects are read, not written again.
    h.take_writes();
    h.reconcile_company("bolt").await.unwrap();
    let writes: Vec<String> = h
        .take_writes()
        .into_iter()
        .filter(|w| !w.contains("Namespace"))
        .collect();
    assert!(writes.is_empty(), "{writes:?}");
}

#[tokio::test]
async fn a_namespace_that_is_not_the_companys_is_never_taken() {
    let mut squatter = company("squatter", "timedeal-system", true);
    squatter.metadata.creation_timestamp = None;
    let h = Harness::with_companies(sample(), vec![company("acme", NS, true), squatter]).await;
    // The namespace exists and belongs to nobody's Company (the operator's own, say).
    let namespaces: Api<Namespace> = Api::all(h.client.clone());
    namespaces
        .create(
            &Default::default(),
            &Namespace {
                metadata: kube::api::ObjectMeta {
                    name: Some("timedeal-system".into()),
                    ..Default::default()
                },
                ..Default::default()
            },
        )
        .await
        .unwrap();
    h.take_writes();
    h.reconcile_company("squatter").await.unwrap();
    let (status, reason, message) = ready(&companies(&h.client).get("squatter").await.unwrap());
    assert_eq!(
        (status.as_str(), reason.as_str()),
        ("False", "NamespaceInUse")
    );
    assert!(message.contains("timedeal-system"), "{message}");
    let namespace = namespaces.get("timedeal-system").await.unwrap();
    assert!(namespace.labels().is_empty(), "the namespace is untouched");
    let bindings = Api::<RoleBinding>::namespaced(h.client.clone(), "timedeal-system")
        .list(&Default::default())
        .await
        .unwrap();
    assert!(bindings.items.is_empty(), "no binding for the portal there");
}

#[tokio::test]
async fn a_namespace_from_before_companies_goes_only_to_the_company_an_admin_names_by_uid() {
    // The namespace an older release's portal made for ACME's deals, owned by nobody; then a
    // Company signs up under the same name (sign-up verifies neither who it is nor its email)
    // and an admin approves it.
    let h = Harness::with_companies(sample(), vec![company("acme", NS, true)]).await;
    let namespaces: Api<Namespace> = Api::all(h.client.clone());
    namespaces
        .create(
            &Default::default(),
            &Namespace {
                metadata: kube::api::ObjectMeta {
                    name: Some(NS.into()),
                    labels: Some([("timedeal.dev/tenant".into(), "true".into())].into()),
                    ..Default::default()
                },
                ..Default::default()
            },
        )
        .await
        .unwrap();
    h.reconcile_company("acme").await.unwrap();
    let (status, reason, _) = ready(&companies(&h.client).get("acme").await.unwrap());
    assert_eq!(
        (status.as_str(), reason.as_str()),
        ("False", "NamespaceInUse")
    );
    let namespace = namespaces.get(NS).await.unwrap();
    assert!(namespace.owner_references().is_empty(), "not adopted");
    assert!(!namespace.labels().contains_key("timedeal.dev/company"));

    // The deal already in it does not run for the squatter.
    h.settle().await;
    let td = h.deal().await;
    assert_eq!(phase(&td), Phase::PendingApproval);
    assert_eq!(condition(&td, "Ready").reason, "NamespaceInUse");
    assert!(names::<Deployment>(&h.client).await.is_empty());
    assert!(names::<Secret>(&h.client).await.is_empty());

    // An admin hands the namespace to this Company by its UID: then it is the company's.
    let uid = companies(&h.client)
        .get("acme")
        .await
        .unwrap()
        .uid()
        .unwrap();
    namespaces
        .patch(
            NS,
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"annotations": {
                "timedeal.dev/adopt-by-company-uid": uid}}})),
        )
        .await
        .unwrap();
    h.reconcile_company("acme").await.unwrap();
    let (status, reason, message) = ready(&companies(&h.client).get("acme").await.unwrap());
    assert_eq!(status, "True", "{reason}: {message}");
    h.reconcile().await.unwrap();
    assert_eq!(phase(&h.deal().await), Phase::Provisioning);
    assert_eq!(names::<Deployment>(&h.client).await.len(), 1);
}

#[tokio::test]
async fn a_deal_gets_only_a_host_of_its_company_that_no_one_else_holds() {
    // Bolt's deal holds a host under *.deals.example.com, which an admin gave both companies; the
    // platform gives each company `<company>.companies.example.com` and keeps deals.example.com
    // (the portal) and directory.example.com.
    let h = Harness::with_companies(
        sample(),
        vec![company("acme", NS, true), company("bolt", COMPANY_NS, true)],
    )
    .await;
    let mut rival = sample();
    rival.metadata.namespace = Some(COMPANY_NS.into());
    rival.metadata.name = Some("rival-sale".into());
    rival.spec.ingress.host = "rival.deals.example.com".into();
    Api::<TimeDeal>::namespaced(h.client.clone(), COMPANY_NS)
        .create(&Default::default(), &rival)
        .await
        .unwrap();
    for (host, says) in [
        ("deals.example.com", "the platform's own"),
        ("rival.deals.example.com", "another company's"),
        ("sale.evil.example", "not the company's"),
    ] {
        h.edit(json!({"spec": {"ingress": {"host": host}}})).await;
        h.settle().await;
        let td = h.deal().await;
        assert_eq!(phase(&td), Phase::PendingApproval, "{host}");
        let ready = condition(&td, "Ready");
        assert_eq!(ready.reason, "HostNotAllowed", "{host}");
        assert!(ready.message.contains(says), "{host}: {}", ready.message);
        assert!(names::<Deployment>(&h.client).await.is_empty(), "{host}");
        assert!(names::<Ingress>(&h.client).await.is_empty(), "{host}");
    }
    // Under the company's own suffix: built.
    h.edit(json!({"spec": {"ingress": {"host": "winter.acme.companies.example.com"}}}))
        .await;
    h.settle().await;
    assert_eq!(phase(&h.deal().await), Phase::Provisioning);
    assert_eq!(names::<Ingress>(&h.client).await.len(), 1);
}

#[tokio::test]
async fn a_deal_outside_an_approved_companys_namespace_is_refused_with_a_reason() {
    // The namespace's company is not approved: the deal, approved itself, gets nothing.
    let h = Harness::with_companies(sample(), vec![company("acme", NS, false)]).await;
    h.settle().await;
    let td = h.deal().await;
    assert_eq!(phase(&td), Phase::PendingApproval);
    let ready = condition(&td, "Ready");
    assert_eq!(ready.status, "False");
    assert_eq!(ready.reason, "CompanyNotApproved");
    assert!(
        ready.message.contains("kubectl timedeal approve acme"),
        "{}",
        ready.message
    );
    assert!(names::<Deployment>(&h.client).await.is_empty());
    assert!(names::<StatefulSet>(&h.client).await.is_empty());
    assert!(names::<Secret>(&h.client).await.is_empty());

    // Approving the company releases the deal.
    set_approved(&h, "acme", true).await;
    h.reconcile().await.unwrap();
    assert_eq!(phase(&h.deal().await), Phase::Provisioning);
    assert_eq!(names::<Deployment>(&h.client).await.len(), 1);
}

#[tokio::test]
async fn a_deal_in_a_namespace_no_company_owns_is_refused() {
    let h = Harness::with_companies(sample(), vec![company("bolt", COMPANY_NS, true)]).await;
    h.settle().await;
    let td = h.deal().await;
    let ready = condition(&td, "Ready");
    assert_eq!(ready.reason, "CompanyNotApproved");
    assert!(
        ready
            .message
            .contains("no approved Company owns the namespace acme-audio"),
        "{}",
        ready.message
    );
    assert!(names::<Deployment>(&h.client).await.is_empty());
}

#[tokio::test]
async fn a_deal_over_its_companys_quotas_is_refused_and_names_the_quota() {
    let mut small = company("acme", NS, true);
    small.spec.quotas.max_stock = 10;
    let h = Harness::with_companies(sample(), vec![small]).await;
    h.settle().await;
    let td = h.deal().await;
    let ready = condition(&td, "Ready");
    assert_eq!(ready.reason, "OverQuota");
    assert!(
        ready.message.contains("quotas.maxStock"),
        "{}",
        ready.message
    );
    assert!(names::<Deployment>(&h.client).await.is_empty());
}

/// The gate and the namespace's quota come from one budget: a deal whose autoscaler could
/// reach more pods or compute than the quota holds (at its own requests, with a pod of surge
/// and its Redis) is refused at approval, not approved and then refused pods at its spike.
#[tokio::test]
async fn a_deal_the_quota_could_not_run_at_its_maximum_is_refused_at_approval() {
    // The default quota: 40 peak replicas at 250m. The sample's peak (6) fits; its maximum of
    // 60 replicas at 500m each does not.
    let mut td = sample();
    td.spec.capacity.max_replicas = 60;
    let h = Harness::with_companies(td, vec![company("acme", NS, true)]).await;
    h.settle().await;
    let ready = condition(&h.deal().await, "Ready").clone();
    assert_eq!(ready.reason, "OverQuota");
    assert!(
        ready.message.contains("capacity.maxReplicas (60)")
            && ready.message.contains("quota holds"),
        "{}",
        ready.message
    );
    assert!(names::<Deployment>(&h.client).await.is_empty());
}

/// A sale goes on under the budget it was admitted by: a quota lowered (or an operator upgraded)
/// mid-sale never suspends it.
#[tokio::test]
async fn a_running_deal_is_never_suspended_for_a_budget_it_no_longer_fits() {
    let h = Harness::running_at(10, 2).await;
    assert_eq!(phase(&h.deal().await), Phase::Live);
    companies(&h.client)
        .patch(
            "acme",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"quotas": {"maxPeakReplicas": 10, "maxDeals": 1}}})),
        )
        .await
        .unwrap();
    h.reconcile().await.unwrap();
    let td = h.deal().await;
    assert_eq!(phase(&td), Phase::Live);
    assert_ne!(condition(&td, "Ready").reason, "OverQuota");
    assert!(h
        .pushes
        .lock()
        .unwrap()
        .taken
        .iter()
        .all(|(_, _, suspended)| !suspended));
}

#[tokio::test]
async fn a_running_deal_whose_company_loses_approval_is_suspended_and_keeps_its_data() {
    let h = Harness::running_at(10, 2).await;
    assert_eq!(phase(&h.deal().await), Phase::Live);
    set_approved(&h, "acme", false).await;
    h.reconcile().await.unwrap();
    let td = h.deal().await;
    assert_eq!(phase(&td), Phase::Suspended);
    assert_eq!(condition(&td, "Ready").reason, "CompanyNotApproved");
    assert_eq!(
        names::<StatefulSet>(&h.client).await.len(),
        1,
        "Redis stays"
    );
    assert_eq!(names::<Deployment>(&h.client).await.len(), 1);
}

#[tokio::test]
async fn approving_a_deal_that_would_overcommit_the_calendar_is_refused_with_the_free_starts() {
    // Another company's approved deal books 15 of 20 replicas over the same hour.
    let mut h = Harness::with_companies(
        sample(),
        vec![company("acme", NS, true), company("bolt", COMPANY_NS, true)],
    )
    .await;
    let mut rival = sample();
    rival.metadata.namespace = Some(COMPANY_NS.into());
    rival.metadata.name = Some("rival-sale".into());
    rival.metadata.uid = Some("uid-rival".into());
    rival.spec.ingress.host = "rival.deals.example.com".into();
    rival.spec.capacity.peak_replicas = 15;
    Api::<TimeDeal>::namespaced(h.client.clone(), COMPANY_NS)
        .create(&Default::default(), &rival)
        .await
        .unwrap();
    h.with_calendar(20);
    h.settle().await;
    let td = h.deal().await;
    assert_eq!(phase(&td), Phase::PendingApproval);
    let ready = condition(&td, "Ready");
    assert_eq!(ready.reason, "OverCapacity");
    // The sample books 6 replicas from 02:45 to 04:00 UTC; the rival 15 from 02:45 to 04:00.
    assert!(
        ready
            .message
            .contains("at 2026-12-01 02:45 UTC when 15 of the platform's 20"),
        "{}",
        ready.message
    );
    // The nearest starts that fit: an hour and more later, or earlier.
    assert!(
        ready.message.contains("2026-12-01 05:00 UTC"),
        "{}",
        ready.message
    );
    assert!(names::<Deployment>(&h.client).await.is_empty());

    // With room for both, the deal is built, and its booking kept for the portal's calendar.
    h.with_calendar(21);
    h.reconcile().await.unwrap();
    assert_eq!(phase(&h.deal().await), Phase::Provisioning);
    let mut db = <sqlx::PgConnection as sqlx::Connection>::connect(&h.platform)
        .await
        .unwrap();
    let (replicas, approved): (i32, bool) =
        sqlx::query_as("SELECT replicas, approved FROM timedeal_platform.bookings WHERE name = $1")
            .bind(NAME)
            .fetch_one(&mut db)
            .await
            .unwrap();
    assert_eq!((replicas, approved), (6, true));
    // A deal that runs is not re-checked: a smaller calendar later does not stop it.
    h.with_calendar(1);
    h.reconcile().await.unwrap();
    assert_eq!(phase(&h.deal().await), Phase::Provisioning);

    // Deleted, its booking is freed.
    h.reconcile_deletion().await;
    let left: i64 = sqlx::query_scalar("SELECT count(*) FROM timedeal_platform.bookings")
        .fetch_one(&mut db)
        .await
        .unwrap();
    assert_eq!(left, 0);
}

#[tokio::test]
async fn each_reading_of_a_sales_figures_is_kept_for_the_companys_chart() {
    let h = Harness::running_at(10, 2).await;
    *h.answer.lock().unwrap() = Answer::Figures(figures(120, "live"));
    h.clock.set(h.at(11));
    h.reconcile().await.unwrap();
    let mut db = <sqlx::PgConnection as sqlx::Connection>::connect(&h.platform)
        .await
        .unwrap();
    let uid = h.deal().await.metadata.uid.unwrap();
    let samples: Vec<(i64, i64, i64)> = sqlx::query_as(
        "SELECT sold, waiting, confirmed FROM timedeal_platform.figure_samples \
         WHERE uid = $1 ORDER BY at",
    )
    .bind(&uid)
    .fetch_all(&mut db)
    .await
    .unwrap();
    assert!(samples.len() >= 2, "{samples:?}");
    assert_eq!(samples.last(), Some(&(120, 40, 60)));
}
