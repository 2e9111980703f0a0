//! The `Company` custom resource (`timedeal.dev/v1alpha1`, cluster-scoped): a tenant of the
//! platform, the namespace it owns and the most it may rent at once.
//!
//! Sign-up on the rental portal creates one unapproved; a platform admin approves it with
//! `kubectl` (or `kubectl timedeal approve COMPANY`). The operator then creates and keeps the
//! company's namespace, and reconciles TimeDeals only in namespaces an approved Company owns.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::{CustomResource, KubeSchema};
use serde::{Deserialize, Serialize};

/// A company renting deals on the platform.
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    doc = "A company renting flash sales on the platform: who it is, the namespace its deals live in, and how much it may rent at once.",
    group = "timedeal.dev",
    version = "v1alpha1",
    kind = "Company",
    plural = "companies",
    singular = "company",
    shortname = "co",
    category = "timedeal",
    status = "CompanyStatus",
    printcolumn = r#"{"name":"Display name","type":"string","jsonPath":".spec.displayName"}"#,
    printcolumn = r#"{"name":"Approved","type":"boolean","jsonPath":".spec.approved"}"#,
    printcolumn = r#"{"name":"Namespace","type":"string","jsonPath":".spec.namespace"}"#,
    printcolumn = r#"{"name":"Ready","type":"string","jsonPath":".status.conditions[?(@.type==\"Ready\")].status"}"#,
    printcolumn = r#"{"name":"Deals","type":"integer","jsonPath":".status.deals"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#,
    validation = Rule::new(COMPANY_NAME_RULE).message(COMPANY_NAME_MESSAGE),
)]
#[serde(rename_all = "camelCase")]
pub struct CompanySpec {
    /// The company's name as shoppers and admins see it. No control characters: it reaches
    /// terminals and mail.
    #[schemars(length(min = 1, max = 100))]
    #[x_kube(validation = Rule::new("!self.matches('\\\\p{Cc}')")
        .message("displayName must not contain control characters (such as escape sequences or line breaks)"))]
    pub display_name: String,

    /// Where the platform writes to the company: approvals, reports, password resets.
    #[schemars(length(max = 254))]
    #[x_kube(validation = Rule::new("self.matches('^[^@\\\\s]+@[^@\\\\s]+\\\\.[^@\\\\s]+$')")
        .message("contactEmail must be an email address such as sales@example.com"))]
    pub contact_email: String,

    /// The namespace the company's deals live in. The operator creates it on approval; it cannot
    /// change afterwards.
    #[schemars(length(min = 1, max = 63))]
    #[x_kube(
        validation = Rule::new("self.matches('^[a-z0-9]([-a-z0-9]*[a-z0-9])?$')")
            .message("namespace must be a DNS label: lower-case letters, digits and '-', starting and ending with a letter or digit"),
        validation = Rule::new("self == oldSelf")
            .message("namespace cannot change: the company's deals live there"),
    )]
    pub namespace: String,

    /// Whether a platform admin has approved the company. Until then it has no namespace and its
    /// deal requests are refused.
    #[serde(default)]
    pub approved: bool,

    /// The most the company may rent at once.
    #[serde(default)]
    pub quotas: CompanyQuotas,

    /// Storefront hosts an admin gave the company, besides `<company>.<suffix>` when the
    /// platform has a company host suffix: exact hosts (`shop.acme.example`) or every host under
    /// a domain (`*.acme.example`). A deal's `ingress.host` must be one of the company's.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 20))]
    #[x_kube(validation = Rule::new(
        "self.all(h, size(h) <= 253 && h.matches('^(\\*\\.)?[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)+$'))"
    ).message("hosts must be lower-case DNS names of two labels or more, each either exact (shop.acme.example) or a whole domain (*.acme.example)"))]
    pub hosts: Vec<String>,
}

/// Company names become label values and appear in links: DNS labels, as namespaces are.
pub const COMPANY_NAME_RULE: &str =
    "size(self.metadata.name) <= 63 && self.metadata.name.matches('^[a-z0-9]([-a-z0-9]*[a-z0-9])?$')";
pub const COMPANY_NAME_MESSAGE: &str =
    "metadata.name must be a DNS label of at most 63 characters: lower-case letters, digits and '-'";

/// The most a company may rent at once. The namespace's ResourceQuota enforces the first two;
/// the operator refuses deals over the third.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct CompanyQuotas {
    /// TimeDeals the company may have at once, in any phase.
    #[serde(default = "default_max_deals")]
    #[x_kube(validation = Rule::new("self >= 1").message("quotas.maxDeals must be at least 1"))]
    pub max_deals: i32,

    /// Storefront replicas the company's deals may run together at their peak.
    #[serde(default = "default_max_peak_replicas")]
    #[x_kube(validation = Rule::new("self >= 1").message("quotas.maxPeakReplicas must be at least 1"))]
    pub max_peak_replicas: i32,

    /// Units one deal of the company may put on sale.
    #[serde(default = "default_max_stock")]
    #[x_kube(validation = Rule::new("self >= 1").message("quotas.maxStock must be at least 1"))]
    pub max_stock: i64,
}

impl Default for CompanyQuotas {
    fn default() -> Self {
        Self {
            max_deals: default_max_deals(),
            max_peak_replicas: default_max_peak_replicas(),
            max_stock: default_max_stock(),
        }
    }
}

fn default_max_deals() -> i32 {
    5
}
fn default_max_peak_replicas() -> i32 {
    40
}
fn default_max_stock() -> i64 {
    100_000
}

/// What the operator observed of the company.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct CompanyStatus {
    /// Ready (the namespace and its policies are in place), with a reason and a message.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["type"]))]
    pub conditions: Vec<Condition>,

    /// The `metadata.generation` this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,

    /// TimeDeals in the company's namespace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deals: Option<i32>,
}

/// A one-time password-reset token an admin puts on a Company (`kubectl timedeal
/// reset-password`), and when it was made: the portal honours it once, for a day.
pub const RESET_ANNOTATION: &str = "timedeal.dev/password-reset";
pub const RESET_AT_ANNOTATION: &str = "timedeal.dev/password-reset-at";

impl Company {
    /// Whether the company may run deals: approved, and its namespace is the one asked for.
    pub fn owns(&self, namespace: &str) -> bool {
        self.spec.approved && self.spec.namespace == namespace
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_sample_company_reads_as_the_type_and_owns_its_namespace() {
        let text = std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../manifests/companies/acme-audio.yaml"
        ))
        .unwrap();
        let company: Company = serde_yaml::from_str(&text).unwrap();
        assert!(company.owns("acme-audio"));
        assert!(!company.owns("td-acme-audio"));
        assert_eq!(company.spec.quotas, CompanyQuotas::default());
    }

    #[test]
    fn quotas_default_when_left_out() {
        let spec: CompanySpec = serde_json::from_value(serde_json::json!({
            "displayName": "Bolt", "contactEmail": "hello@bolt.example", "namespace": "td-bolt"
        }))
        .unwrap();
        assert!(!spec.approved);
        assert_eq!(spec.quotas.max_deals, 5);
    }
}
