//! Step 3: applying the bundle, each child on its own, against the watch cache.

use super::*;

/// What applying the bundle did: the children written, and those that failed and why.
#[derive(Default)]
pub(super) struct Outcome {
    pub(super) written: Vec<String>,
    pub(super) failures: Vec<String>,
}

impl Outcome {
    fn note(&mut self, what: String, result: Result<Applied>) {
        match result {
            Ok(Applied::Written) => self.written.push(what),
            Ok(Applied::Unchanged) => {}
            Err(error) => {
                warn!(child = %what, error = %error, "cannot apply a child");
                self.failures
                    .push(format!("{what}: {}", api_message(&error)));
            }
        }
    }
}

/// The API server's own words for a failed call: its reason, code and message.
pub(super) fn api_message(error: &Error) -> String {
    match error {
        Error::Kube { source, .. } => match source.as_ref() {
            kube::Error::Api(status) => {
                format!("{} ({}): {}", status.reason, status.code, status.message)
            }
            other => other.to_string(),
        },
        other => other.to_string(),
    }
}

/// Bounds one call to the API server.
pub(super) async fn bounded<T>(
    deadline: Duration,
    call: impl std::future::Future<Output = Result<T>>,
) -> Result<T> {
    tokio::time::timeout(deadline, call)
        .await
        .unwrap_or(Err(Error::Timeout(deadline)))
}

/// Applies every child independently, so one the API server refuses (a quota, an invalid
/// Ingress, Pod Security) neither hides the others nor keeps the autoscaler's floor from rising
/// for the warm-up: the HPA goes first. Each call has a deadline. With `leave_workloads` the
/// storefront Deployment and Redis StatefulSet are left as they run (an upgrade deferred).
pub(super) async fn apply_bundle(
    ctx: &Context,
    deal: &Deal<'_>,
    bundle: resources::Bundle,
    secrets: LiveSecrets,
    leave_workloads: bool,
    moved_from_older: bool,
) -> Outcome {
    let client = &ctx.client;
    let deadline = ctx.config.api_timeout;
    let mut outcome = Outcome::default();
    macro_rules! apply_with {
        ($child:expr, $live:expr) => {
            let child = $child;
            let what = describe(&child);
            let applied = apply::apply(client, child, $live);
            outcome.note(what, bounded(deadline, applied).await);
        };
    }
    macro_rules! apply_each {
        ($($child:expr),* $(,)?) => {$(
            let child = $child;
            let live = cached(ctx, &child);
            apply_with!(child, live.as_deref());
        )*};
    }
    macro_rules! absent {
        ($kind:ty, $name:expr) => {
            let name = $name;
            let what = format!("{} {}/{name}", <$kind>::kind(&()), deal.namespace);
            let exists = ctx.cache.get::<$kind>(deal.namespace, &name).is_some();
            let removal = apply::remove::<$kind>(client, deal.namespace, &name, exists);
            outcome.note(what, bounded(deadline, removal).await);
        };
    }
    match bundle.hpa {
        Some(hpa) => {
            apply_each!(hpa);
        }
        None => {
            absent!(HorizontalPodAutoscaler, deal.child("storefront"));
        }
    }
    // Secrets and config before the pods that read them; Redis before the storefront.
    apply_with!(bundle.redis_secret, secrets.redis.as_ref());
    apply_with!(bundle.storefront_secret, secrets.storefront.as_ref());
    apply_each!(
        bundle.deal_config,
        bundle.redis_policy,
        bundle.storefront_policy
    );
    if !leave_workloads {
        if moved_from_older {
            // Releases before the StatefulSet ran Redis as a Deployment of the same name.
            absent!(Deployment, deal.child("redis"));
        }
        let mut redis = bundle.redis;
        let live = cached(ctx, &redis);
        if resources::redis::keep_claims(&mut redis, live.as_deref()) {
            tracing::debug!(deal = %deal.name, "Redis keeps the volume claims it was made with");
        }
        apply_with!(redis, live.as_deref());
    }
    apply_each!(bundle.redis_service);
    if !leave_workloads {
        apply_each!(bundle.storefront);
    }
    apply_each!(bundle.storefront_service);
    match bundle.redis_pdb {
        Some(pdb) => {
            apply_each!(pdb);
        }
        None => {
            absent!(PodDisruptionBudget, deal.child("redis"));
        }
    }
    match bundle.pdb {
        Some(pdb) => {
            apply_each!(pdb);
        }
        None => {
            absent!(PodDisruptionBudget, deal.child("storefront"));
        }
    }
    apply_each!(bundle.ingress);
    match bundle.head_ingress {
        Some(head) => {
            apply_each!(head);
        }
        None => {
            absent!(
                k8s_openapi::api::networking::v1::Ingress,
                deal.child("head")
            );
        }
    }
    outcome
}

/// `Kind namespace/name` of a child.
pub(super) fn describe<K: Resource<DynamicType = ()>>(child: &K) -> String {
    format!(
        "{} {}/{}",
        K::kind(&()),
        child.meta().namespace.as_deref().unwrap_or(""),
        child.meta().name.as_deref().unwrap_or("")
    )
}

/// A child as the controller last watched it.
pub(super) fn cached<K: Cached>(ctx: &Context, child: &K) -> Option<Arc<K>> {
    let meta = child.meta();
    ctx.cache.get::<K>(
        meta.namespace.as_deref().unwrap_or(""),
        meta.name.as_deref().unwrap_or(""),
    )
}
