//! The `TimeDeal` custom resource (`timedeal.dev/v1alpha1`).
//!
//! Every doc comment on a field here becomes its `kubectl explain` text, and every
//! `#[x_kube(validation)]` rule is enforced by the API server on `kubectl apply` and by
//! [`crate::validation`] everywhere else (the rental form, `tenant-app --deal`).

use chrono::{DateTime, Utc};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::duration::Duration;

/// A request to run one flash sale: what is sold, when, how the queue admits shoppers, and how
/// much infrastructure the deal gets.
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    doc = "A flash sale rented on the platform: the deal's product, schedule, queue and capacity, and what the operator observed of it.",
    group = "timedeal.dev",
    version = "v1alpha1",
    kind = "TimeDeal",
    plural = "timedeals",
    singular = "timedeal",
    shortname = "td",
    category = "timedeal",
    namespaced,
    status = "TimeDealStatus",
    printcolumn = r#"{"name":"Phase","type":"string","jsonPath":".status.phase"}"#,
    printcolumn = r#"{"name":"Sold","type":"integer","jsonPath":".status.stock.sold"}"#,
    printcolumn = r#"{"name":"Stock","type":"integer","jsonPath":".spec.product.stock"}"#,
    printcolumn = r#"{"name":"Waiting","type":"integer","jsonPath":".status.queue.waiting"}"#,
    printcolumn = r#"{"name":"URL","type":"string","jsonPath":".status.url"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#,
    validation = Rule::new(PRICE_AND_STOCK_LOCKED_RULE)
        .message(PRICE_AND_STOCK_LOCKED_MESSAGE)
        .reason(Reason::FieldValueForbidden)
        .field_path(".spec.product"),
    validation = Rule::new(NAME_RULE).message(NAME_MESSAGE),
)]
#[serde(rename_all = "camelCase")]
pub struct TimeDealSpec {
    /// The company renting the deal.
    pub company: DealCompany,

    /// Whether a platform admin has approved the deal. Deals created by the rental request form
    /// start unapproved and get no infrastructure until an admin sets this to true.
    #[serde(default)]
    pub approved: bool,

    /// Pauses the deal: the storefront shows that it is paused, admits nobody and takes no new
    /// orders. Infrastructure and data are kept.
    #[serde(default)]
    pub suspend: bool,

    /// What is sold, at which prices, and how many.
    pub product: Product,

    /// When the deal runs and how long the infrastructure stays around it.
    pub schedule: Schedule,

    /// How the waiting room admits shoppers.
    #[serde(default)]
    pub queue: QueueSettings,

    /// How shoppers are identified. Omit for anonymous, signed session cookies.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shopper_auth: Option<ShopperAuth>,

    /// Replicas and resources of the deal's storefront and Redis.
    #[serde(default)]
    pub capacity: Capacity,

    /// How shoppers reach the storefront.
    pub ingress: IngressSettings,

    /// Container images for this deal, overriding the operator's defaults (for example to pull
    /// from an air-gapped registry).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub images: Option<Images>,
}

/// The transition rule that freezes what shoppers were promised. The operator sets
/// `status.startedAt` when it first sees the clock pass `schedule.start`; from then on the API
/// server refuses any change to prices, currency or stock.
pub const PRICE_AND_STOCK_LOCKED_RULE: &str =
    "!has(oldSelf.status) || !has(oldSelf.status.startedAt) || \
(self.spec.product.listPrice == oldSelf.spec.product.listPrice && \
self.spec.product.dealPrice == oldSelf.spec.product.dealPrice && \
self.spec.product.currency == oldSelf.spec.product.currency && \
self.spec.product.stock == oldSelf.spec.product.stock)";

/// The deal's objects are named `<deal>-<part>` and Services need DNS-1035 labels: at most 63
/// characters, starting with a letter. The tightest is Redis's pods' `controller-revision-hash`
/// label, `<deal>-redis-<up to 10 characters>`, which must fit 63 too: so 46.
pub const NAME_RULE: &str =
    "size(self.metadata.name) <= 46 && self.metadata.name.matches('^[a-z]')";
pub const NAME_MESSAGE: &str =
    "metadata.name must start with a letter and be at most 46 characters: the deal's objects and labels are named after it";

pub const PRICE_AND_STOCK_LOCKED_MESSAGE: &str =
    "product.listPrice, product.dealPrice, product.currency and product.stock cannot change once the deal has started";

/// The transition rule that fixes Redis's volume: a StatefulSet's claims cannot change, so
/// neither may what they are made from, including adding or removing it.
pub const REDIS_STORAGE_FIXED_RULE: &str =
    "has(self.redisStorage) == has(oldSelf.redisStorage) && \
(!has(self.redisStorage) || self.redisStorage == oldSelf.redisStorage)";

pub const REDIS_STORAGE_FIXED_MESSAGE: &str =
    "capacity.redisStorage cannot change once set (a StatefulSet's volume claims are fixed): create a new deal for another size or class";

/// The company renting the deal.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct DealCompany {
    /// Display name of the company, shown on the storefront.
    #[schemars(length(min = 1, max = 100))]
    pub name: String,

    /// Where the platform sends news about the deal, such as approval and the sales report.
    #[schemars(length(max = 254))]
    #[x_kube(validation = Rule::new("self.matches('^[^@\\\\s]+@[^@\\\\s]+\\\\.[^@\\\\s]+$')")
        .message("company.contactEmail must be an email address such as sales@example.com"))]
    pub contact_email: String,
}

/// What is sold. Prices are whole numbers in the currency's smallest unit (cents for USD, won
/// for KRW), so no rounding ever happens.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("self.dealPrice <= self.listPrice")
    .message("product.dealPrice must not be higher than product.listPrice")
    .field_path(".dealPrice"))]
#[x_kube(validation = Rule::new("self.dealPrice > 0 || self.fulfilment == 'coupon'")
    .message("product.dealPrice may be 0 only for coupon deals (fulfilment: coupon); give a price of at least 1")
    .field_path(".dealPrice"))]
#[x_kube(validation = Rule::new("!has(self.couponValidity) || self.fulfilment == 'coupon'")
    .message("product.couponValidity applies only to coupon deals (fulfilment: coupon); remove it or set fulfilment to coupon")
    .field_path(".couponValidity"))]
pub struct Product {
    /// Product name shown on the storefront.
    #[schemars(length(min = 1, max = 200))]
    pub name: String,

    /// Longer product description shown on the storefront (plain text).
    #[serde(default)]
    #[schemars(length(max = 5000))]
    pub description: String,

    /// Picture of the product, as an http(s) URL.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 2048))]
    #[x_kube(validation = Rule::new("self.matches('^https?://[^\\\\s]+$')")
        .message("product.imageUrl must be an http:// or https:// URL"))]
    pub image_url: Option<String>,

    /// Regular price, in the currency's smallest unit.
    #[schemars(range(min = 0))]
    pub list_price: i64,

    /// Price during the deal, in the currency's smallest unit; at most `listPrice`.
    #[schemars(range(min = 0))]
    pub deal_price: i64,

    /// ISO 4217 currency code, such as USD, EUR or KRW.
    #[serde(default = "default_currency")]
    #[schemars(length(max = 3))]
    #[x_kube(validation = Rule::new("self.matches('^[A-Z]{3}$')")
        .message("product.currency must be a three-letter ISO 4217 code such as USD or KRW"))]
    pub currency: String,

    /// Units for sale. The storefront never confirms more orders than this.
    #[x_kube(validation = Rule::new("self >= 1").message("product.stock must be at least 1"))]
    pub stock: i64,

    /// Units one shopper may buy in total during the deal.
    #[serde(default = "default_per_user_limit")]
    #[x_kube(validation = Rule::new("self >= 1").message("product.perUserLimit must be at least 1"))]
    pub per_user_limit: i32,

    /// The shelf of the deal directory the deal is listed under: lowercase words joined by
    /// dashes, such as `audio`, `tea` or `home-kitchen`.
    #[serde(default = "default_category")]
    #[schemars(length(min = 1, max = 40))]
    #[x_kube(validation = Rule::new("self.matches('^[a-z][a-z0-9]*(-[a-z0-9]+)*$')")
        .message("product.category must be lowercase letters and digits, words joined by dashes, such as home-kitchen"))]
    pub category: String,

    /// How shoppers get what they bought. `shipping`: the checkout takes a name, phone and
    /// address before the payment. `pickup`: it takes a name and phone. `digital`: it takes
    /// nothing. `coupon`: every confirmed order carries a unique code the company redeems once;
    /// the deal price may then be 0 (no payment step).
    #[serde(default)]
    pub fulfilment: Fulfilment,

    /// Coupon deals only: how long after `schedule.end` a coupon can still be redeemed
    /// (default 30d).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub coupon_validity: Option<Duration>,
}

/// How shoppers get what they bought (see `Product::fulfilment`).
#[derive(JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default)]
#[serde(rename_all = "lowercase")]
pub enum Fulfilment {
    Shipping,
    Pickup,
    #[default]
    Digital,
    Coupon,
}

impl Fulfilment {
    pub fn as_str(self) -> &'static str {
        match self {
            Fulfilment::Shipping => "shipping",
            Fulfilment::Pickup => "pickup",
            Fulfilment::Digital => "digital",
            Fulfilment::Coupon => "coupon",
        }
    }
}

/// How long a coupon stays redeemable after the deal's end when the deal does not say.
pub const DEFAULT_COUPON_VALIDITY: std::time::Duration =
    std::time::Duration::from_secs(30 * 24 * 3600);

impl Product {
    /// When this deal's coupons stop being redeemable.
    pub fn coupons_valid_until(&self, end: DateTime<Utc>) -> DateTime<Utc> {
        let validity = self
            .coupon_validity
            .map(|d| d.std())
            .unwrap_or(DEFAULT_COUPON_VALIDITY);
        end + chrono::Duration::from_std(validity).unwrap_or(chrono::Duration::MAX)
    }
}

/// When the deal runs.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("self.end > self.start")
    .message("schedule.end must be after schedule.start")
    .field_path(".end"))]
pub struct Schedule {
    /// When the sale opens, as an RFC 3339 timestamp with a time zone (2026-12-01T12:00:00+09:00).
    #[schemars(schema_with = "date_time_schema")]
    pub start: DateTime<Utc>,

    /// When the sale closes, as an RFC 3339 timestamp; after `start`.
    #[schemars(schema_with = "date_time_schema")]
    pub end: DateTime<Utc>,

    /// How long before `start` the storefront is scaled up to `capacity.peakReplicas`.
    #[serde(default = "default_warm_up")]
    pub warm_up: Duration,

    /// How long the storefront stays up read-only after `end`, so shoppers can see their orders.
    /// After that it scales to zero; orders stay in the database.
    #[serde(default = "default_retention")]
    pub retention: Duration,
}

/// How the waiting room admits shoppers.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct QueueSettings {
    /// Shoppers admitted from the queue per second.
    #[serde(default = "default_admission_rate")]
    #[x_kube(validation = Rule::new("self > 0")
        .message("queue.admissionRate must be greater than 0 shoppers per second"))]
    pub admission_rate: i32,

    /// Most shoppers admitted and still shopping at once.
    #[serde(default = "default_max_active")]
    #[schemars(range(min = 1))]
    pub max_active: i32,

    /// The longest an admission lasts, counted from the moment of admission, however often it
    /// is renewed.
    #[serde(default = "default_session_ttl")]
    pub session_ttl: Duration,

    /// How long an admission lasts without a sign of the shopper (default 45s). Each poll or
    /// live update of the admitted page renews it, up to `sessionTtl` from the admission; a
    /// shopper who closed the page gives the place back this long after their last sign. It
    /// ends at once on leaving, on an order that fills the shopper's limit, and on a final
    /// refusal (`sold_out`, `insufficient_stock`, `over_limit`).
    /// Leases shorter than 5s are taken as 5s, so a page's live updates can renew them.
    #[serde(default = "default_admission_lease")]
    pub admission_lease: Duration,

    /// Admitted shoppers without a reservation allowed per unit available (default 2). Capacity
    /// (`admissionRate`, `maxActive`) sets the pace; this keeps a handful of units from drawing
    /// a crowd that can only be told "sold out". Reserving still decides who gets a unit.
    #[serde(default = "default_claims_per_unit")]
    #[x_kube(validation = Rule::new("self >= 1 && self <= 100")
        .message("queue.claimsPerUnit must be from 1 to 100"))]
    pub claims_per_unit: i32,

    /// Time to pay for a reserved order before its stock returns (default 45s). A storefront
    /// that dies after reserving holds the unit, the shopper's allowance and the idempotency key
    /// this long. Short is safe: a lapse is recorded in PostgreSQL before the stock returns, and
    /// an order whose commit comes later loses to it and is refunded.
    #[serde(default = "default_reservation_ttl")]
    pub reservation_ttl: Duration,

    /// How long before `schedule.start` shoppers can join the pre-queue. Pre-queue order is
    /// shuffled at the start, so joining early gives no edge.
    #[serde(default = "default_pre_queue_opens")]
    pub pre_queue_opens: Duration,

    /// How long a waiting shopper who stopped polling keeps a place in the queue.
    #[serde(default = "default_idle_grace")]
    pub idle_grace: Duration,

    /// A proof-of-work puzzle every shopper solves before joining, to make joining in bulk
    /// costly for bots. Off when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub join_challenge: Option<JoinChallenge>,
}

/// The join puzzle: find a string `s` such that SHA-256 of the challenge, `:` and `s` starts with
/// `difficulty` zero bits. Each extra bit doubles the work; 16 takes about a second on a phone.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct JoinChallenge {
    /// Leading zero bits the solution's hash needs, from 1 to 28.
    #[x_kube(validation = Rule::new("self >= 1 && self <= 28")
        .message("queue.joinChallenge.difficulty must be from 1 to 28 bits"))]
    pub difficulty: i32,
}

impl Default for QueueSettings {
    fn default() -> Self {
        Self {
            admission_rate: default_admission_rate(),
            max_active: default_max_active(),
            session_ttl: default_session_ttl(),
            admission_lease: default_admission_lease(),
            claims_per_unit: default_claims_per_unit(),
            reservation_ttl: default_reservation_ttl(),
            pre_queue_opens: default_pre_queue_opens(),
            idle_grace: default_idle_grace(),
            join_challenge: None,
        }
    }
}

/// How shoppers are identified.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("self.mode != 'Jwt' || has(self.jwt)")
    .message("shopperAuth.jwt is required when shopperAuth.mode is Jwt"))]
pub struct ShopperAuth {
    /// `Anonymous`: a signed session cookie per browser. `Jwt`: a token issued by the company
    /// names the shopper, so per-user limits hold across devices.
    #[serde(default)]
    pub mode: ShopperAuthMode,

    /// How to verify company-issued tokens; required when `mode` is `Jwt`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jwt: Option<JwtAuth>,
}

/// How shoppers are identified.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum ShopperAuthMode {
    #[default]
    Anonymous,
    Jwt,
}

/// Verification of company-issued shopper tokens.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("has(self.jwksUrl) != has(self.keySecretRef)")
    .message("shopperAuth.jwt needs exactly one of jwksUrl or keySecretRef"))]
#[x_kube(validation = Rule::new("self.algorithm != 'HS256' || has(self.keySecretRef)")
    .message("shopperAuth.jwt with algorithm HS256 needs keySecretRef holding the shared secret"))]
pub struct JwtAuth {
    /// Expected `iss` claim.
    #[schemars(length(min = 1))]
    pub issuer: String,

    /// Expected `aud` claim.
    #[schemars(length(min = 1))]
    pub audience: String,

    /// Signature algorithm of the tokens.
    #[serde(default)]
    pub algorithm: JwtAlgorithm,

    /// URL of the company's JSON Web Key Set, for RS256.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 2048))]
    #[x_kube(validation = Rule::new("self.startsWith('https://')")
        .message("shopperAuth.jwt.jwksUrl must be an https:// URL"))]
    pub jwks_url: Option<String>,

    /// Secret in the deal's namespace holding the verification key: the shared secret for HS256,
    /// or a PEM public key for RS256.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key_secret_ref: Option<SecretKeyRef>,

    /// Claim that identifies the shopper.
    #[serde(default = "default_user_claim")]
    #[schemars(length(min = 1, max = 253))]
    pub user_claim: String,

    /// Optional claim carrying a per-shopper purchase limit that replaces `product.perUserLimit`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit_claim: Option<String>,
}

/// Signature algorithm of company-issued tokens.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum JwtAlgorithm {
    #[default]
    RS256,
    HS256,
}

/// One key of a Secret in the deal's namespace.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct SecretKeyRef {
    /// Name of the Secret.
    #[schemars(length(min = 1, max = 253))]
    pub name: String,

    /// Key inside the Secret.
    #[schemars(length(min = 1, max = 253))]
    pub key: String,
}

/// Replicas and resources of the deal's infrastructure.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("self.minReplicas <= self.peakReplicas && self.peakReplicas <= self.maxReplicas")
    .message("capacity must satisfy minReplicas <= peakReplicas <= maxReplicas")
    .field_path(".peakReplicas"))]
#[x_kube(validation = Rule::new(REDIS_STORAGE_FIXED_RULE)
    .message(REDIS_STORAGE_FIXED_MESSAGE)
    .reason(Reason::FieldValueForbidden)
    .field_path(".redisStorage"))]
pub struct Capacity {
    /// Storefront replicas outside the warm-up and live windows.
    #[serde(default = "default_min_replicas")]
    #[schemars(range(min = 1))]
    pub min_replicas: i32,

    /// Floor of storefront replicas from `start - warmUp` until `end`, so the spike meets
    /// capacity that is already running.
    #[serde(default = "default_peak_replicas")]
    #[schemars(range(min = 1))]
    pub peak_replicas: i32,

    /// Ceiling the autoscaler may reach.
    #[serde(default = "default_max_replicas")]
    #[schemars(range(min = 1))]
    pub max_replicas: i32,

    /// Average CPU utilisation, in percent of requests, that the autoscaler aims for.
    #[serde(default = "default_target_cpu")]
    #[schemars(range(min = 1, max = 100))]
    pub target_cpu_utilization: i32,

    /// CPU and memory of each storefront replica. Omit for the operator's defaults.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub app_resources: Option<ComputeResources>,

    /// CPU and memory of the deal's Redis. Omit for the operator's defaults (requests equal to
    /// limits, so Redis is the last pod a node under pressure evicts).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub redis_resources: Option<ComputeResources>,

    /// The volume that keeps Redis's append-only file across restarts and node drains. Omit for
    /// the operator's defaults (a running deal keeps the defaults it was made with). Fixed once
    /// the deal is created: a StatefulSet's volume claims cannot change.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub redis_storage: Option<RedisStorage>,
}

/// The PersistentVolumeClaim of the deal's Redis.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct RedisStorage {
    /// Size of the volume, such as 1Gi. Omit for the operator's default.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = QUANTITY_PATTERN))]
    pub size: Option<String>,

    /// StorageClass of the volume. Omit for the operator's default (or the cluster's default
    /// class when the operator sets none).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 253))]
    pub storage_class_name: Option<String>,
}

impl Default for Capacity {
    fn default() -> Self {
        Self {
            min_replicas: default_min_replicas(),
            peak_replicas: default_peak_replicas(),
            max_replicas: default_max_replicas(),
            target_cpu_utilization: default_target_cpu(),
            app_resources: None,
            redis_resources: None,
            redis_storage: None,
        }
    }
}

/// CPU and memory of one container.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct ComputeResources {
    /// What the scheduler reserves for the container.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub requests: Option<ResourceAmounts>,

    /// The most the container may use.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limits: Option<ResourceAmounts>,
}

/// Amounts of CPU and memory, as Kubernetes quantities.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct ResourceAmounts {
    /// CPU, such as 250m (a quarter of a core) or 2.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = QUANTITY_PATTERN))]
    pub cpu: Option<String>,

    /// Memory, such as 128Mi or 1Gi.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = QUANTITY_PATTERN))]
    pub memory: Option<String>,
}

/// A Kubernetes resource quantity (`250m`, `1.5`, `128Mi`, `1e3`), as the API server parses it.
pub const QUANTITY_PATTERN: &str = r"^(\+|-)?(([0-9]+(\.[0-9]*)?)|(\.[0-9]+))(([KMGTPE]i)|[numkMGTPE]|([eE](\+|-)?(([0-9]+(\.[0-9]*)?)|(\.[0-9]+))))?$";

/// How shoppers reach the storefront.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct IngressSettings {
    /// Host name of the storefront, a DNS name such as deal.example.com.
    #[schemars(length(max = 253))]
    #[x_kube(validation = Rule::new(
        "self.matches('^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$')"
    ).message("ingress.host must be a lower-case DNS name such as deal.example.com"))]
    pub host: String,

    /// IngressClass to use. Omit for the cluster's default class.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub class_name: Option<String>,

    /// Secret with the TLS certificate for `host`. Omit to serve plain HTTP.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls_secret_name: Option<String>,

    /// Requests per second one client address may make before the ingress answers 503.
    #[serde(default = "default_rate_limit")]
    #[schemars(range(min = 1))]
    pub rate_limit_per_second: i32,
}

/// Container images that replace the operator's defaults for this deal.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct Images {
    /// Image of the storefront (tenant app).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tenant_app: Option<String>,

    /// Image of Redis.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub redis: Option<String>,
}

/// What the operator last observed of the deal.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct TimeDealStatus {
    /// Where the deal is in its life.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<Phase>,

    /// Ready, Progressing and Degraded, each with a reason and a message.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["type"]))]
    pub conditions: Vec<Condition>,

    /// The `metadata.generation` this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,

    /// Where shoppers find the storefront.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,

    /// Storefront replicas.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replicas: Option<ReplicaFigures>,

    /// Stock figures reported by the storefront.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stock: Option<StockFigures>,

    /// Queue figures reported by the storefront.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub queue: Option<QueueFigures>,

    /// Order figures reported by the storefront.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub orders: Option<OrderFigures>,

    /// Revenue of confirmed, uncancelled orders, in the currency's smallest unit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revenue: Option<i64>,

    /// When the operator first saw the deal live. From then on prices and stock are frozen.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started_at: Option<Time>,

    /// When the last unit sold, if it did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sold_out_at: Option<Time>,

    /// When the deal ended.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ended_at: Option<Time>,

    /// When the figures last changed, as read from the storefront (read every
    /// `figuresInterval`; a reading that changes nothing leaves this as it is).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub figures_updated_at: Option<Time>,

    /// When the deal's personal data (delivery details, addresses left for email reminders) was
    /// deleted, once retention was over. The orders stay.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub personal_data_deleted_at: Option<Time>,

    /// What the deal's pods run, resolved once: an operator upgrade changes it only outside
    /// WarmingUp and Live, or when the deal carries the annotation `timedeal.dev/upgrade: now`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pinned: Option<Pinned>,

    /// What an operator upgrade will move the pods to once the deal is out of WarmingUp and
    /// Live; empty when the pods run the operator's current choice.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pending_upgrade: Option<Pinned>,

    /// The PostgreSQL schema holding the deal's orders, and the login role of the same name
    /// that owns it. Chosen once, from the deal's UID, so no two deals ever share one; deals
    /// set up by an older release keep the name they have.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schema: Option<String>,
}

/// The images and the template version a deal's pods are built from.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Default)]
#[serde(rename_all = "camelCase")]
pub struct Pinned {
    /// Image of the storefront.
    pub tenant_app: String,

    /// Image of Redis.
    pub redis: String,

    /// Version of the operator's templates for the deal's children.
    pub template: String,
}

/// Where a deal is in its life: PendingApproval (waiting for an admin), Provisioning (children
/// being created), Scheduled (ready, before the warm-up), WarmingUp (scaled to peak ahead of the
/// start), Live (selling), SoldOut, Ended (read-only, then scaled to zero after retention),
/// Suspended (paused by `spec.suspend`) or Failed (cannot be built; see the Degraded condition).
#[derive(JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Phase {
    /// Waiting for a platform admin to set `spec.approved`.
    PendingApproval,
    /// Children are being created.
    Provisioning,
    /// Ready, waiting for the warm-up window.
    Scheduled,
    /// Scaled to peak capacity ahead of the start.
    WarmingUp,
    /// Selling.
    Live,
    /// Every unit is sold.
    SoldOut,
    /// Past the end; read-only, then scaled to zero after retention.
    Ended,
    /// Paused by `spec.suspend`.
    Suspended,
    /// Cannot be built; see the Degraded condition.
    Failed,
}

/// Storefront replicas.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct ReplicaFigures {
    /// Replicas the Deployment wants.
    pub desired: i32,
    /// Replicas ready to serve.
    pub ready: i32,
}

/// Stock figures.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct StockFigures {
    /// Units neither sold nor reserved.
    pub remaining: i64,
    /// Units in confirmed orders.
    pub sold: i64,
    /// Units reserved by shoppers who have not paid yet.
    #[serde(default)]
    pub reserved: i64,
}

/// Queue figures.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct QueueFigures {
    /// Shoppers waiting now.
    pub waiting: i64,
    /// Shoppers admitted and still shopping now.
    #[serde(default)]
    pub active: i64,
    /// Most shoppers ever waiting at once.
    #[serde(default)]
    pub peak_waiting: i64,
}

/// Order figures.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct OrderFigures {
    /// Orders confirmed and committed.
    pub confirmed: i64,
    /// Orders cancelled or refunded.
    #[serde(default)]
    pub cancelled: i64,
}

fn date_time_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
    schemars::json_schema!({ "type": "string", "format": "date-time" })
}

fn default_currency() -> String {
    "USD".into()
}
fn default_category() -> String {
    "general".into()
}
fn default_per_user_limit() -> i32 {
    1
}
fn default_warm_up() -> Duration {
    Duration::from_secs(10 * 60)
}
fn default_retention() -> Duration {
    Duration::from_secs(24 * 3600)
}
fn default_admission_rate() -> i32 {
    50
}
fn default_max_active() -> i32 {
    500
}
fn default_session_ttl() -> Duration {
    Duration::from_secs(5 * 60)
}
fn default_admission_lease() -> Duration {
    Duration::from_secs(45)
}
fn default_claims_per_unit() -> i32 {
    2
}
fn default_reservation_ttl() -> Duration {
    // Above the longest payment and commit (10 s + 5 s + 4 s), with room for a slow provider.
    Duration::from_secs(45)
}
fn default_pre_queue_opens() -> Duration {
    Duration::from_secs(30 * 60)
}
fn default_idle_grace() -> Duration {
    Duration::from_secs(30)
}
fn default_user_claim() -> String {
    "sub".into()
}
fn default_min_replicas() -> i32 {
    2
}
fn default_peak_replicas() -> i32 {
    4
}
fn default_max_replicas() -> i32 {
    10
}
fn default_target_cpu() -> i32 {
    70
}
fn default_rate_limit() -> i32 {
    20
}
