//! The deal's conditions — Ready, Progressing, Degraded, Reconciled — from its phase and what
//! reconcile saw.
//! Pure: `merge` keeps each condition's `lastTransitionTime` unless its status flips, and stamps
//! every condition with the generation it describes, so `kubectl wait --for=condition=Ready`
//! cannot pass on a spec the operator has not reconciled yet.

use chrono::{DateTime, Utc};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use timedeal_api::Phase;

use crate::phase::Scale;

pub const READY: &str = "Ready";
pub const PROGRESSING: &str = "Progressing";
pub const DEGRADED: &str = "Degraded";
pub const RECONCILED: &str = "Reconciled";

/// One condition as reconcile wants it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Wanted {
    pub type_: &'static str,
    pub status: bool,
    pub reason: &'static str,
    pub message: String,
}

fn wanted(
    type_: &'static str,
    status: bool,
    reason: &'static str,
    message: impl Into<String>,
) -> Wanted {
    Wanted {
        type_,
        status,
        reason,
        message: message.into(),
    }
}

/// A problem a human should see: a short CamelCase reason and a message saying what and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub reason: &'static str,
    pub message: String,
}

/// What reconcile saw of the deal's health, besides its phase.
#[derive(Debug, Clone, Copy, Default)]
pub struct Health<'a> {
    /// At least one storefront replica is ready.
    pub serving: bool,
    /// What a human should fix, shown in Degraded.
    pub problem: Option<&'a Problem>,
    /// The first child that could not be applied, shown in Reconciled.
    pub unapplied: Option<&'a Problem>,
    /// The deal was approved, ran, and its approval was taken back: it is suspended.
    pub revoked: bool,
    /// Why the deal may not run whatever its own approval says: its namespace belongs to no
    /// approved Company, or it asks for more than the company's quotas.
    pub refused: Option<&'a Problem>,
    /// A new version of the deal is still on its way to some storefront replicas.
    pub delivering: Option<&'a str>,
}

/// What the conditions say for a phase, the scale, and what reconcile saw.
pub fn for_phase(phase: Phase, scale: Scale, health: Health) -> Vec<Wanted> {
    let problem = health.problem;
    let (ready, progressing) = match phase {
        Phase::PendingApproval | Phase::Suspended if health.refused.is_some() => {
            let refused = health.refused.expect("matched");
            (
                wanted(READY, false, refused.reason, refused.message.clone()),
                wanted(
                    PROGRESSING,
                    false,
                    refused.reason,
                    "nothing new is built until what the Ready condition says is resolved",
                ),
            )
        }
        Phase::PendingApproval => (
            wanted(
                READY,
                false,
                "PendingApproval",
                "waiting for an admin to set spec.approved: true",
            ),
            wanted(
                PROGRESSING,
                false,
                "PendingApproval",
                "nothing is built before approval",
            ),
        ),
        Phase::Provisioning => (
            wanted(
                READY,
                false,
                "Provisioning",
                "the storefront has no ready replica yet",
            ),
            wanted(
                PROGRESSING,
                true,
                "Provisioning",
                "creating the deal's Redis, storefront, autoscaler and ingress",
            ),
        ),
        Phase::Failed => (
            wanted(
                READY,
                false,
                "Failed",
                "the deal cannot be built; see the Degraded condition",
            ),
            wanted(
                PROGRESSING,
                false,
                "Failed",
                "reconcile stopped on an error",
            ),
        ),
        Phase::Ended if scale == Scale::Off => (
            wanted(
                READY,
                false,
                "ScaledToZero",
                "retention is over: nothing runs; the orders stay in PostgreSQL",
            ),
            wanted(
                PROGRESSING,
                false,
                "Reconciled",
                "the deal is as its spec and clock ask",
            ),
        ),
        Phase::Suspended if health.revoked => (
            wanted(
                READY,
                true,
                "ApprovalRevoked",
                "spec.approved was set to false: no admissions, no new orders; set it back to \
                 true to resume",
            ),
            wanted(
                PROGRESSING,
                false,
                "Reconciled",
                "the deal is as its spec and clock ask",
            ),
        ),
        // Once it has served, a deal without a ready replica is an outage, not a start.
        _ if !health.serving => (
            wanted(
                READY,
                false,
                "Unavailable",
                "no storefront replica is ready; see the Degraded condition",
            ),
            wanted(
                PROGRESSING,
                false,
                "Reconciled",
                "the deal is as its spec and clock ask",
            ),
        ),
        other => (
            wanted(READY, true, phase_reason(other), ready_message(other)),
            wanted(
                PROGRESSING,
                false,
                "Reconciled",
                "the deal is as its spec and clock ask",
            ),
        ),
    };
    let progressing = match health.delivering {
        Some(message) => wanted(PROGRESSING, true, "Delivering", message),
        None => progressing,
    };
    let degraded = match problem {
        Some(problem) => wanted(DEGRADED, true, problem.reason, problem.message.clone()),
        None => wanted(DEGRADED, false, "AsExpected", "no problem seen"),
    };
    let reconciled = match (health.unapplied, phase) {
        (Some(failed), _) => wanted(RECONCILED, false, failed.reason, failed.message.clone()),
        (None, Phase::Failed) => wanted(
            RECONCILED,
            false,
            "Failed",
            "reconcile stopped before applying; see the Degraded condition",
        ),
        (None, Phase::PendingApproval) => wanted(
            RECONCILED,
            true,
            "NothingToApply",
            "nothing is built before approval",
        ),
        (None, _) => wanted(
            RECONCILED,
            true,
            "Applied",
            "every child is as the spec and clock ask",
        ),
    };
    vec![ready, progressing, degraded, reconciled]
}

fn phase_reason(phase: Phase) -> &'static str {
    match phase {
        Phase::PendingApproval => "PendingApproval",
        Phase::Provisioning => "Provisioning",
        Phase::Scheduled => "Scheduled",
        Phase::WarmingUp => "WarmingUp",
        Phase::Live => "Live",
        Phase::SoldOut => "SoldOut",
        Phase::Ended => "Ended",
        Phase::Suspended => "Suspended",
        Phase::Failed => "Failed",
    }
}

fn ready_message(phase: Phase) -> &'static str {
    match phase {
        Phase::Scheduled => "the storefront is up and counting down to the start",
        Phase::WarmingUp => "scaled to peak capacity ahead of the start",
        Phase::Live => "selling",
        Phase::SoldOut => "every unit is sold; orders stay viewable",
        Phase::Ended => "the deal has ended; the storefront is read-only until retention is over",
        Phase::Suspended => "paused by spec.suspend: no admissions, no new orders",
        _ => "",
    }
}

/// A Kubernetes timestamp, to the second as the API server stores it.
pub fn time(at: DateTime<Utc>) -> Time {
    Time(
        k8s_openapi::jiff::Timestamp::from_second(at.timestamp())
            .expect("a chrono timestamp is within jiff's range"),
    )
}

/// The conditions to write: each wanted condition, keeping the existing `lastTransitionTime`
/// when its status did not change.
pub fn merge(
    existing: &[Condition],
    wanted: &[Wanted],
    generation: i64,
    now: DateTime<Utc>,
) -> Vec<Condition> {
    wanted
        .iter()
        .map(|want| {
            let status = if want.status { "True" } else { "False" };
            let since = existing
                .iter()
                .find(|c| c.type_ == want.type_ && c.status == status)
                .map(|c| c.last_transition_time.clone())
                .unwrap_or_else(|| time(now));
            Condition {
                type_: want.type_.to_owned(),
                status: status.to_owned(),
                reason: want.reason.to_owned(),
                message: want.message.clone(),
                observed_generation: Some(generation),
                last_transition_time: since,
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const RUNNING: Scale = Scale::Autoscaled { floor: 2, max: 10 };
    const SERVING: Health = Health {
        serving: true,
        problem: None,
        unapplied: None,
        revoked: false,
        refused: None,
        delivering: None,
    };

    fn at(seconds: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_800_000_000 + seconds, 0).unwrap()
    }

    fn status_of<'a>(conditions: &'a [Condition], type_: &str) -> &'a Condition {
        conditions.iter().find(|c| c.type_ == type_).unwrap()
    }

    #[test]
    fn a_live_deal_is_ready_and_not_progressing() {
        let conditions = merge(&[], &for_phase(Phase::Live, RUNNING, SERVING), 3, at(0));
        let ready = status_of(&conditions, READY);
        assert_eq!(
            (ready.status.as_str(), ready.reason.as_str()),
            ("True", "Live")
        );
        assert_eq!(ready.observed_generation, Some(3));
        assert_eq!(status_of(&conditions, PROGRESSING).status, "False");
        assert_eq!(status_of(&conditions, DEGRADED).status, "False");
    }

    #[test]
    fn the_transition_time_only_moves_when_the_status_flips() {
        let first = merge(
            &[],
            &for_phase(Phase::Provisioning, RUNNING, Health::default()),
            1,
            at(0),
        );
        let still = merge(
            &first,
            &for_phase(Phase::Provisioning, RUNNING, Health::default()),
            2,
            at(60),
        );
        assert_eq!(status_of(&still, READY).last_transition_time, time(at(0)));
        assert_eq!(status_of(&still, READY).observed_generation, Some(2));
        let ready = merge(
            &still,
            &for_phase(Phase::Scheduled, RUNNING, SERVING),
            2,
            at(120),
        );
        assert_eq!(status_of(&ready, READY).last_transition_time, time(at(120)));
        // Scheduled → WarmingUp changes the reason, not the status: the time stays.
        let warming = merge(
            &ready,
            &for_phase(Phase::WarmingUp, RUNNING, SERVING),
            2,
            at(180),
        );
        assert_eq!(
            status_of(&warming, READY).last_transition_time,
            time(at(120))
        );
        assert_eq!(status_of(&warming, READY).reason, "WarmingUp");
    }

    #[test]
    fn a_problem_degrades_the_deal_with_its_reason() {
        let problem = Problem {
            reason: "TenantUnreachable",
            message: "GET /internal/stats: connection refused; retrying".into(),
        };
        let conditions = merge(
            &[],
            &for_phase(
                Phase::Live,
                RUNNING,
                Health {
                    problem: Some(&problem),
                    ..SERVING
                },
            ),
            1,
            at(0),
        );
        let degraded = status_of(&conditions, DEGRADED);
        assert_eq!(degraded.status, "True");
        assert_eq!(degraded.reason, "TenantUnreachable");
        assert!(degraded.message.contains("connection refused"));
    }

    #[test]
    fn unapproved_and_retired_deals_are_not_ready() {
        let pending = for_phase(Phase::PendingApproval, RUNNING, Health::default());
        assert!(!pending[0].status);
        assert_eq!(pending[0].reason, "PendingApproval");
        let retired = for_phase(Phase::Ended, Scale::Off, Health::default());
        assert!(!retired[0].status);
        assert_eq!(retired[0].reason, "ScaledToZero");
        let ended = for_phase(Phase::Ended, RUNNING, SERVING);
        assert!(ended[0].status);
    }

    #[test]
    fn losing_every_replica_mid_sale_is_an_outage_not_a_start() {
        let problem = Problem {
            reason: "CrashLoopBackOff",
            message: "pod x: CrashLoopBackOff".into(),
        };
        let wanted = for_phase(
            Phase::Live,
            RUNNING,
            Health {
                serving: false,
                problem: Some(&problem),
                ..SERVING
            },
        );
        assert_eq!((wanted[0].status, wanted[0].reason), (false, "Unavailable"));
        assert!(!wanted[1].status, "not Progressing");
        assert_eq!(
            (wanted[2].status, wanted[2].reason),
            (true, "CrashLoopBackOff")
        );
    }

    #[test]
    fn reconciled_names_the_child_that_failed() {
        let failed = Problem {
            reason: "ApplyFailed",
            message: "Ingress shop/deal-storefront: Invalid (422): host is invalid".into(),
        };
        let wanted = for_phase(
            Phase::Provisioning,
            RUNNING,
            Health {
                unapplied: Some(&failed),
                ..Health::default()
            },
        );
        let reconciled = wanted.iter().find(|w| w.type_ == RECONCILED).unwrap();
        assert_eq!(
            (reconciled.status, reconciled.reason),
            (false, "ApplyFailed")
        );
        assert!(reconciled.message.contains("Ingress shop/deal-storefront"));
        let fine = for_phase(Phase::Live, RUNNING, SERVING);
        assert!(fine.iter().find(|w| w.type_ == RECONCILED).unwrap().status);
    }

    #[test]
    fn a_revoked_approval_reads_as_such() {
        let wanted = for_phase(
            Phase::Suspended,
            RUNNING,
            Health {
                revoked: true,
                ..SERVING
            },
        );
        assert_eq!(wanted[0].reason, "ApprovalRevoked");
    }
}
