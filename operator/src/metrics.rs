//! Prometheus metrics at `/metrics`: reconciles, errors by kind, durations, deals by phase, and
//! whether this replica leads. Every series exists from the start at zero, so a dashboard can
//! tell "no errors" from "no data".

use std::{
    collections::HashMap,
    sync::{
        atomic::{AtomicI64, AtomicU64},
        Mutex,
    },
};

use prometheus_client::{
    encoding::{text::encode, EncodeLabelSet},
    metrics::{counter::Counter, family::Family, gauge::Gauge, histogram::Histogram},
    registry::Registry,
};
use timedeal_api::Phase;

use crate::error::Error;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct KindLabel {
    pub kind: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct DealLabels {
    pub namespace: String,
    pub deal: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PhaseLabel {
    pub phase: String,
}

pub const PHASES: [Phase; 9] = [
    Phase::PendingApproval,
    Phase::Provisioning,
    Phase::Scheduled,
    Phase::WarmingUp,
    Phase::Live,
    Phase::SoldOut,
    Phase::Ended,
    Phase::Suspended,
    Phase::Failed,
];

pub struct Metrics {
    unready_after_start: Family<DealLabels, Gauge<i64, AtomicI64>>,
    at_max_replicas: Family<DealLabels, Gauge<i64, AtomicI64>>,
    registry: Registry,
    pub reconciles: Counter,
    pub errors: Family<KindLabel, Counter>,
    pub duration: Histogram,
    deals: Family<PhaseLabel, Gauge<i64, AtomicI64>>,
    pub leader: Gauge<i64, AtomicI64>,
    degraded: Family<DealLabels, Gauge<i64, AtomicI64>>,
    live_stock: Family<DealLabels, Gauge<f64, AtomicU64>>,
    /// Each deal's last phase, by uid, from which `deals` is counted.
    phases: Mutex<HashMap<String, Phase>>,
}

/// One deal's health, as the alerts read it.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct DealHealth {
    pub degraded: bool,
    /// The share of stock left, while the deal sells.
    pub live_stock_ratio: Option<f64>,
    /// Its start has passed, its end has not, and it is not Ready.
    pub unready_after_start: bool,
    /// Its storefront runs `capacity.maxReplicas` replicas.
    pub at_max_replicas: bool,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("timedeal_operator");
        let reconciles = Counter::default();
        registry.register("reconciles", "Reconciles run", reconciles.clone());
        let errors = Family::<KindLabel, Counter>::default();
        registry.register(
            "reconcile_errors",
            "Reconciles that failed, by kind",
            errors.clone(),
        );
        for kind in Error::KINDS {
            let _ = errors.get_or_create(&KindLabel { kind: kind.into() });
        }
        let duration = Histogram::new([
            0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
        ]);
        registry.register(
            "reconcile_duration_seconds",
            "Time one reconcile took",
            duration.clone(),
        );
        let deals = Family::<PhaseLabel, Gauge<i64, AtomicI64>>::default();
        registry.register("deals", "TimeDeals by phase", deals.clone());
        for phase in PHASES {
            let _ = deals.get_or_create(&label(phase));
        }
        let leader = Gauge::<i64, AtomicI64>::default();
        registry.register(
            "leader",
            "1 while this replica holds the leader Lease and reconciles",
            leader.clone(),
        );
        let degraded = Family::<DealLabels, Gauge<i64, AtomicI64>>::default();
        registry.register(
            "deal_degraded",
            "1 while a deal's Degraded condition is True",
            degraded.clone(),
        );
        let live_stock = Family::<DealLabels, Gauge<f64, AtomicU64>>::default();
        registry.register(
            "deal_live_stock_ratio",
            "Share of a live deal's stock still unsold (present only while the deal sells)",
            live_stock.clone(),
        );
        let unready_after_start = Family::<DealLabels, Gauge<i64, AtomicI64>>::default();
        registry.register(
            "deal_unready_after_start",
            "1 while a deal's start has passed, its end has not, and it is not Ready",
            unready_after_start.clone(),
        );
        let at_max_replicas = Family::<DealLabels, Gauge<i64, AtomicI64>>::default();
        registry.register(
            "deal_at_max_replicas",
            "1 while a deal's storefront runs as many replicas as capacity.maxReplicas allows",
            at_max_replicas.clone(),
        );
        Self {
            registry,
            unready_after_start,
            at_max_replicas,
            degraded,
            live_stock,
            reconciles,
            errors,
            duration,
            deals,
            leader,
            phases: Mutex::default(),
        }
    }

    pub fn error(&self, error: &Error) {
        self.errors
            .get_or_create(&KindLabel {
                kind: error.kind().into(),
            })
            .inc();
    }

    /// Records a deal's phase, or forgets the deal (`None`) once it is gone.
    pub fn phase(&self, uid: &str, phase: Option<Phase>) {
        let mut phases = self.phases.lock().expect("metrics lock");
        match phase {
            Some(phase) => phases.insert(uid.to_owned(), phase),
            None => phases.remove(uid),
        };
        for each in PHASES {
            let count = phases.values().filter(|p| **p == each).count();
            self.deals.get_or_create(&label(each)).set(count as i64);
        }
    }

    /// Records one deal's health: whether it is Degraded, and while it sells, the share of its
    /// stock left.
    pub fn deal(&self, namespace: &str, deal: &str, health: DealHealth) {
        let DealHealth {
            degraded,
            live_stock_ratio,
            unready_after_start,
            at_max_replicas,
        } = health;
        let labels = DealLabels {
            namespace: namespace.into(),
            deal: deal.into(),
        };
        self.degraded
            .get_or_create(&labels)
            .set(i64::from(degraded));
        self.unready_after_start
            .get_or_create(&labels)
            .set(i64::from(unready_after_start));
        self.at_max_replicas
            .get_or_create(&labels)
            .set(i64::from(at_max_replicas));
        match live_stock_ratio {
            Some(ratio) => {
                self.live_stock.get_or_create(&labels).set(ratio);
            }
            None => {
                self.live_stock.remove(&labels);
            }
        }
    }

    /// Drops a deleted deal's series.
    pub fn forget_deal(&self, namespace: &str, deal: &str) {
        let labels = DealLabels {
            namespace: namespace.into(),
            deal: deal.into(),
        };
        self.degraded.remove(&labels);
        self.live_stock.remove(&labels);
        self.unready_after_start.remove(&labels);
        self.at_max_replicas.remove(&labels);
    }

    pub fn encode(&self) -> String {
        let mut text = String::new();
        encode(&mut text, &self.registry).expect("metrics encode into a String");
        text
    }
}

fn label(phase: Phase) -> PhaseLabel {
    PhaseLabel {
        phase: format!("{phase:?}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_series_starts_at_zero() {
        let text = Metrics::new().encode();
        assert!(
            text.contains("timedeal_operator_reconciles_total 0"),
            "{text}"
        );
        for kind in Error::KINDS {
            assert!(
                text.contains(&format!(
                    "timedeal_operator_reconcile_errors_total{{kind=\"{kind}\"}} 0"
                )),
                "{text}"
            );
        }
        assert!(
            text.contains("timedeal_operator_deals{phase=\"Live\"} 0"),
            "{text}"
        );
    }

    #[test]
    fn deals_are_counted_by_their_latest_phase() {
        let metrics = Metrics::new();
        metrics.phase("a", Some(Phase::Scheduled));
        metrics.phase("b", Some(Phase::Scheduled));
        metrics.phase("a", Some(Phase::Live));
        let text = metrics.encode();
        assert!(
            text.contains("timedeal_operator_deals{phase=\"Scheduled\"} 1"),
            "{text}"
        );
        assert!(
            text.contains("timedeal_operator_deals{phase=\"Live\"} 1"),
            "{text}"
        );
        metrics.phase("a", None);
        assert!(metrics
            .encode()
            .contains("timedeal_operator_deals{phase=\"Live\"} 0"));
    }
}
