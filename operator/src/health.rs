//! Why a deal's pods are not serving, read from what the kubelet and the controllers report: the
//! first problem a human must fix, with the reason Kubernetes gives and the object to look at.
//! Pure: reconcile lists the pods and hands them in.

use k8s_openapi::api::{apps::v1::Deployment, core::v1::Pod};

use crate::conditions::Problem;

/// Container waiting reasons that do not pass by themselves.
const STUCK: [&str; 7] = [
    "ImagePullBackOff",
    "ErrImagePull",
    "InvalidImageName",
    "CrashLoopBackOff",
    "CreateContainerConfigError",
    "CreateContainerError",
    "RunContainerError",
];

/// The first problem of the deal's pods, or of the storefront Deployment when it cannot create
/// them (a quota, Pod Security admission).
pub fn problem(storefront: Option<&Deployment>, pods: &[Pod]) -> Option<Problem> {
    for pod in pods {
        let name = pod.metadata.name.as_deref().unwrap_or("?");
        let Some(status) = &pod.status else { continue };
        let containers = status
            .init_container_statuses
            .iter()
            .flatten()
            .chain(status.container_statuses.iter().flatten());
        for container in containers {
            let waiting = container.state.as_ref().and_then(|s| s.waiting.as_ref());
            if let Some(waiting) = waiting {
                let reason = waiting.reason.as_deref().unwrap_or("");
                if let Some(known) = STUCK.iter().find(|s| **s == reason) {
                    return Some(Problem {
                        reason: known,
                        message: format!(
                            "pod {name}, container {}: {reason}: {}{}",
                            container.name,
                            waiting.message.as_deref().unwrap_or("no message"),
                            advice(reason)
                        ),
                    });
                }
            }
            if let Some(terminated) = container
                .last_state
                .as_ref()
                .and_then(|s| s.terminated.as_ref())
                .filter(|t| t.reason.as_deref() == Some("OOMKilled"))
            {
                return Some(Problem {
                    reason: "OOMKilled",
                    message: format!(
                        "pod {name}, container {} was killed for using more memory than its \
                         limit (exit {}); raise spec.capacity's memory limit",
                        container.name, terminated.exit_code
                    ),
                });
            }
        }
        let unschedulable = status.conditions.iter().flatten().find(|c| {
            c.type_ == "PodScheduled"
                && c.status == "False"
                && c.reason.as_deref() == Some("Unschedulable")
        });
        if let Some(condition) = unschedulable {
            return Some(Problem {
                reason: "Unschedulable",
                message: format!(
                    "pod {name} cannot be scheduled: {}; lower spec.capacity's requests or add \
                     nodes",
                    condition.message.as_deref().unwrap_or("no message")
                ),
            });
        }
    }
    let conditions = storefront
        .and_then(|d| d.status.as_ref())
        .and_then(|s| s.conditions.as_ref());
    for condition in conditions.iter().copied().flatten() {
        let failed_create = condition.type_ == "ReplicaFailure" && condition.status == "True";
        let deadline = condition.type_ == "Progressing"
            && condition.status == "False"
            && condition.reason.as_deref() == Some("ProgressDeadlineExceeded");
        if failed_create || deadline {
            return Some(Problem {
                reason: if failed_create {
                    "PodsNotCreated"
                } else {
                    "RolloutStuck"
                },
                message: format!(
                    "Deployment {}: {}: {}",
                    storefront
                        .and_then(|d| d.metadata.name.as_deref())
                        .unwrap_or("?"),
                    condition.reason.as_deref().unwrap_or(""),
                    condition.message.as_deref().unwrap_or("no message")
                ),
            });
        }
    }
    None
}

fn advice(reason: &str) -> &'static str {
    match reason {
        "ImagePullBackOff" | "ErrImagePull" | "InvalidImageName" => {
            "; check spec.images (or the operator's image flags) and the registry's pull secret"
        }
        "CrashLoopBackOff" => "; see `kubectl logs --previous` of the pod",
        "CreateContainerConfigError" => "; a Secret or ConfigMap the pod reads is missing",
        _ => "",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pod(status: serde_json::Value) -> Pod {
        serde_json::from_value(json!({
            "metadata": {"name": "deal-storefront-abc"},
            "status": status,
        }))
        .unwrap()
    }

    #[test]
    fn a_pull_failure_names_the_pod_the_image_and_the_fix() {
        let pods = [pod(json!({"containerStatuses": [{
            "name": "tenant-app", "image": "ghcr.io/x:9", "imageID": "", "ready": false,
            "restartCount": 0,
            "state": {"waiting": {"reason": "ImagePullBackOff",
                "message": "Back-off pulling image \"ghcr.io/x:9\""}}}]}))];
        let problem = problem(None, &pods).unwrap();
        assert_eq!(problem.reason, "ImagePullBackOff");
        assert!(
            problem.message.contains("deal-storefront-abc"),
            "{}",
            problem.message
        );
        assert!(
            problem.message.contains("ghcr.io/x:9"),
            "{}",
            problem.message
        );
        assert!(
            problem.message.contains("spec.images"),
            "{}",
            problem.message
        );
    }

    #[test]
    fn crash_loops_oom_kills_and_unschedulable_pods_are_named() {
        let crash = pod(
            json!({"containerStatuses": [{"name": "tenant-app", "image": "i",
            "imageID": "", "ready": false, "restartCount": 5,
            "state": {"waiting": {"reason": "CrashLoopBackOff", "message": "back-off 5m0s"}}}]}),
        );
        assert_eq!(problem(None, &[crash]).unwrap().reason, "CrashLoopBackOff");
        let oom = pod(json!({"containerStatuses": [{"name": "redis", "image": "i",
            "imageID": "", "ready": true, "restartCount": 1, "state": {"running": {}},
            "lastState": {"terminated": {"reason": "OOMKilled", "exitCode": 137}}}]}));
        assert_eq!(problem(None, &[oom]).unwrap().reason, "OOMKilled");
        let pending = pod(
            json!({"conditions": [{"type": "PodScheduled", "status": "False",
            "reason": "Unschedulable", "message": "0/3 nodes are available: 3 Insufficient cpu."}]}),
        );
        let p = problem(None, &[pending]).unwrap();
        assert_eq!(p.reason, "Unschedulable");
        assert!(p.message.contains("Insufficient cpu"));
    }

    #[test]
    fn pods_the_deployment_cannot_create_are_named_too() {
        let deployment: Deployment = serde_json::from_value(json!({
            "metadata": {"name": "deal-storefront"},
            "status": {"conditions": [{"type": "ReplicaFailure", "status": "True",
                "reason": "FailedCreate",
                "message": "pods \"deal-storefront-1\" is forbidden: exceeded quota: compute"}]}
        }))
        .unwrap();
        let p = problem(Some(&deployment), &[]).unwrap();
        assert_eq!(p.reason, "PodsNotCreated");
        assert!(p.message.contains("exceeded quota"), "{}", p.message);
    }

    #[test]
    fn starting_pods_are_no_problem() {
        let starting = pod(
            json!({"containerStatuses": [{"name": "tenant-app", "image": "i",
            "imageID": "", "ready": false, "restartCount": 0,
            "state": {"waiting": {"reason": "ContainerCreating"}}}]}),
        );
        assert_eq!(problem(None, &[starting]), None);
    }
}
