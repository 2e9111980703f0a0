//! The controller's view of every child it owns: reflector stores fed by its watches (labelled
//! `app.kubernetes.io/managed-by=timedeal-operator`), so a reconcile compares against what it
//! already knows instead of GETting each child. Secrets are the exception: the operator may read
//! only those it names, never list or watch them, so they are still read one by one.
//!
//! A store can lag a write by the watch's latency; a reconcile that sees the older object applies
//! again, which server-side apply makes harmless. A store that has not had its watch's first full
//! listing reads as empty, which is not the same: "no Company" suspends a live sale, "no
//! ConfigMap" resets a delivery revision. Reconciles therefore wait until every store is loaded
//! (`Cache::loading`), as after each start and each change of leader.

use std::sync::Arc;

use k8s_openapi::api::{
    apps::v1::{Deployment, StatefulSet},
    autoscaling::v2::HorizontalPodAutoscaler,
    core::v1::{ConfigMap, Service},
    networking::v1::{Ingress, NetworkPolicy},
    policy::v1::PodDisruptionBudget,
};
use kube::runtime::reflector::{self, ObjectRef, Store};
use timedeal_api::Company;

/// A child kind the controller watches.
pub trait Cached: kube::Resource<DynamicType = ()> + Clone + 'static {
    fn store(cache: &Cache) -> &Store<Self>;
}

macro_rules! cache {
    ($($field:ident: $kind:ty),* $(,)?) => {
        /// The stores the reconciles read.
        #[derive(Clone)]
        pub struct Cache {
            $(pub $field: Store<$kind>,)*
            /// Every Company (cluster-scoped): which namespaces may hold running deals.
            pub companies: Store<Company>,
        }

        /// Their writers, which the controller's watches (or a test) feed.
        pub struct Writers {
            $(pub $field: reflector::store::Writer<$kind>,)*
            pub companies: reflector::store::Writer<Company>,
        }

        /// Empty stores and their writers.
        pub fn new() -> (Cache, Writers) {
            $(let $field = reflector::store::<$kind>();)*
            let companies = reflector::store::<Company>();
            (
                Cache { $($field: $field.0,)* companies: companies.0 },
                Writers { $($field: $field.1,)* companies: companies.1 },
            )
        }

        impl Writers {
            /// Fills every store from one listing of `namespace` (and of every Company), as a
            /// watch's initial listing does.
            pub async fn fill(
                &mut self,
                client: &kube::Client,
                namespace: &str,
            ) -> Result<(), kube::Error> {
                use kube::runtime::watcher::Event;
                $(
                    let listed = kube::Api::<$kind>::namespaced(client.clone(), namespace)
                        .list(&Default::default())
                        .await?
                        .items;
                    self.$field.apply_watcher_event(&Event::Init);
                    for object in listed {
                        self.$field.apply_watcher_event(&Event::InitApply(object));
                    }
                    self.$field.apply_watcher_event(&Event::InitDone);
                )*
                let listed = kube::Api::<Company>::all(client.clone())
                    .list(&Default::default())
                    .await?
                    .items;
                self.companies.apply_watcher_event(&Event::Init);
                for company in listed {
                    self.companies.apply_watcher_event(&Event::InitApply(company));
                }
                self.companies.apply_watcher_event(&Event::InitDone);
                Ok(())
            }
        }

        impl Cache {
            /// The kinds whose stores still wait for their watch's first full listing.
            pub fn loading(&self) -> Vec<&'static str> {
                use futures::FutureExt;
                let ready = |done: Option<Result<(), reflector::store::WriterDropped>>| {
                    matches!(done, Some(Ok(())))
                };
                let mut loading = Vec::new();
                $(
                    if !ready(self.$field.wait_until_ready().now_or_never()) {
                        loading.push(stringify!($kind));
                    }
                )*
                if !ready(self.companies.wait_until_ready().now_or_never()) {
                    loading.push("Company");
                }
                loading
            }
        }

        $(impl Cached for $kind {
            fn store(cache: &Cache) -> &Store<Self> {
                &cache.$field
            }
        })*
    };
}

cache!(
    deployments: Deployment,
    stateful_sets: StatefulSet,
    services: Service,
    autoscalers: HorizontalPodAutoscaler,
    ingresses: Ingress,
    disruption_budgets: PodDisruptionBudget,
    network_policies: NetworkPolicy,
    config_maps: ConfigMap,
);

impl Cache {
    /// The child as last watched.
    pub fn get<K: Cached>(&self, namespace: &str, name: &str) -> Option<Arc<K>> {
        K::store(self).get(&ObjectRef::new(name).within(namespace))
    }
}
