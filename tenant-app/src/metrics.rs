//! Prometheus metrics, served at `/metrics` in the text format.

use std::sync::atomic::AtomicI64;

use prometheus_client::{
    encoding::EncodeLabelSet,
    metrics::{counter::Counter, family::Family, gauge::Gauge, histogram::Histogram},
    registry::Registry,
};

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OutcomeLabel {
    pub outcome: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReasonLabel {
    pub reason: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct LeadLabel {
    /// `12h` or `1h` before the start.
    pub lead: &'static str,
}

impl From<crate::reminders::Lead> for LeadLabel {
    fn from(lead: crate::reminders::Lead) -> Self {
        Self { lead: lead.label() }
    }
}

/// A request's labels. Both names are `'static`, so counting a request allocates nothing: the
/// method is one of HTTP's own or `other`, the route one of the router's, kept once each.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RouteLabels {
    pub method: &'static str,
    pub route: &'static str,
    pub status: u16,
}

impl RouteLabels {
    pub fn method(method: &axum::http::Method) -> &'static str {
        use axum::http::Method;
        match *method {
            Method::GET => "GET",
            Method::POST => "POST",
            Method::PUT => "PUT",
            Method::DELETE => "DELETE",
            Method::HEAD => "HEAD",
            Method::OPTIONS => "OPTIONS",
            Method::PATCH => "PATCH",
            _ => "other",
        }
    }

    /// The route's name, kept for the life of the process: routes are the router's own paths,
    /// a few dozen, so the names kept are bounded.
    pub fn route(path: &str) -> &'static str {
        static ROUTES: std::sync::RwLock<Vec<&'static str>> = std::sync::RwLock::new(Vec::new());
        let find = |routes: &[&'static str]| routes.iter().find(|r| **r == path).copied();
        if let Some(route) = find(&ROUTES.read().unwrap_or_else(|e| e.into_inner())) {
            return route;
        }
        let mut routes = ROUTES.write().unwrap_or_else(|e| e.into_inner());
        find(&routes).unwrap_or_else(|| {
            let route: &'static str = Box::leak(path.to_owned().into_boxed_str());
            routes.push(route);
            route
        })
    }
}

pub struct Metrics {
    registry: Registry,
    pub orders: Family<OutcomeLabel, Counter>,
    pub rejections: Family<ReasonLabel, Counter>,
    pub queue_waiting: Gauge<i64, AtomicI64>,
    pub queue_admitted: Gauge<i64, AtomicI64>,
    pub admissions: Counter,
    pub stock_remaining: Gauge<i64, AtomicI64>,
    pub stock_reserved: Gauge<i64, AtomicI64>,
    pub requests: Family<RouteLabels, Histogram>,
    pub commit_batch_size: Histogram,
    pub reminders_sent: Family<LeadLabel, Counter>,
    pub reminder_confirmations_sent: Counter,
    /// When this replica last rebuilt Redis from PostgreSQL (Unix seconds; 0: never).
    pub redis_restored_at: Gauge<i64, AtomicI64>,
    pub unmatched_payments: Counter,
    pub commit_failures: Counter,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("timedeal");
        let orders = Family::<OutcomeLabel, Counter>::default();
        registry.register(
            "orders",
            "Orders placed, by outcome (confirmed, cancelled, payment_declined, lapsed, failed)",
            orders.clone(),
        );
        let rejections = Family::<ReasonLabel, Counter>::default();
        registry.register(
            "rejections",
            "Requests refused, by the error code returned",
            rejections.clone(),
        );
        let queue_waiting = Gauge::<i64, AtomicI64>::default();
        registry.register(
            "queue_waiting",
            "Shoppers waiting in line",
            queue_waiting.clone(),
        );
        let queue_admitted = Gauge::<i64, AtomicI64>::default();
        registry.register(
            "queue_admitted",
            "Shoppers admitted and not yet done",
            queue_admitted.clone(),
        );
        let reminders_sent = Family::<LeadLabel, Counter>::default();
        registry.register(
            "reminders_sent",
            "Reminder mails this replica handed to the SMTP server, by lead (12h, 1h)",
            reminders_sent.clone(),
        );
        let reminder_confirmations_sent = Counter::default();
        registry.register(
            "reminder_confirmations_sent",
            "Confirmation mails (double opt-in) this replica handed to the SMTP server",
            reminder_confirmations_sent.clone(),
        );
        let admissions = Counter::default();
        registry.register(
            "queue_admissions",
            "Shoppers this replica admitted from the queue",
            admissions.clone(),
        );
        let stock_remaining = Gauge::<i64, AtomicI64>::default();
        registry.register(
            "stock_remaining",
            "Units neither sold nor reserved",
            stock_remaining.clone(),
        );
        let stock_reserved = Gauge::<i64, AtomicI64>::default();
        registry.register(
            "stock_reserved",
            "Units reserved by orders in progress",
            stock_reserved.clone(),
        );
        let requests = Family::<RouteLabels, Histogram>::new_with_constructor(|| {
            Histogram::new([
                0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
            ])
        });
        registry.register(
            "http_request_duration_seconds",
            "HTTP request latency, by method, route and status",
            requests.clone(),
        );
        // A time, not a count: a restore at a pod's start is seen from its first scrape.
        let redis_restored_at = Gauge::<i64, AtomicI64>::default();
        registry.register(
            "redis_last_restore_timestamp_seconds",
            "When this replica last rebuilt the deal's Redis from PostgreSQL (Redis lost, or back behind), in Unix seconds; 0: never",
            redis_restored_at.clone(),
        );
        let unmatched_payments = Counter::default();
        registry.register(
            "unmatched_payments",
            "Payments reconciliation found without an order, and gave back",
            unmatched_payments.clone(),
        );
        let commit_failures = Counter::default();
        registry.register(
            "order_commit_failures",
            "Group-commit batches PostgreSQL did not take (or did not answer for)",
            commit_failures.clone(),
        );
        let commit_batch_size =
            Histogram::new([1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 512.0]);
        registry.register(
            "order_commit_batch_size",
            "Orders per PostgreSQL transaction of the group-commit writer",
            commit_batch_size.clone(),
        );
        Self {
            registry,
            orders,
            rejections,
            queue_waiting,
            queue_admitted,
            admissions,
            stock_remaining,
            stock_reserved,
            requests,
            commit_batch_size,
            reminders_sent,
            reminder_confirmations_sent,
            redis_restored_at,
            unmatched_payments,
            commit_failures,
        }
    }

    pub fn order(&self, outcome: &str) {
        self.orders
            .get_or_create(&OutcomeLabel {
                outcome: outcome.to_owned(),
            })
            .inc();
    }

    pub fn rejection(&self, reason: &'static str) {
        self.rejections.get_or_create(&ReasonLabel { reason }).inc();
    }

    pub fn encode(&self) -> String {
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &self.registry)
            .expect("writing to a String cannot fail");
        text
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metrics_are_named_and_labelled() {
        let metrics = Metrics::new();
        metrics.order("confirmed");
        metrics.rejection("sold_out");
        metrics.rejection("sold_out");
        metrics.queue_waiting.set(12);
        let text = metrics.encode();
        assert!(
            text.contains("timedeal_orders_total{outcome=\"confirmed\"} 1"),
            "{text}"
        );
        assert!(
            text.contains("timedeal_rejections_total{reason=\"sold_out\"} 2"),
            "{text}"
        );
        assert!(text.contains("timedeal_queue_waiting 12"), "{text}");
    }
}
