//! Leader election through a `coordination.k8s.io` Lease, so two operator replicas never
//! reconcile at once.
//!
//! - Every write of the Lease is a compare-and-swap on its resource version: two contenders
//!   that both find it free cannot both take it.
//! - A contender judges expiry by its own clock: the Lease is free once its record has not
//!   changed for the Lease's duration since this replica first saw it, whatever the holder's
//!   clock says.
//! - The holder renews every `retry` and stops leading once `renew_deadline` has passed since its
//!   last successful renewal, a hung call included; the deadline is shorter than the Lease's
//!   duration, so the holder stops before anyone else may start.
//! - On shutdown the holder steps down: it empties the Lease so a standby takes over at once.

use std::{
    sync::Mutex,
    time::{Duration, Instant},
};

use k8s_openapi::{
    api::coordination::v1::{Lease, LeaseSpec},
    apimachinery::pkg::apis::meta::v1::MicroTime,
};
use kube::{
    api::{Api, ObjectMeta, PostParams},
    Client,
};
use tracing::{info, warn};

/// How long the Lease lasts, how soon the holder gives up renewing, and how often it tries.
#[derive(Debug, Clone, Copy)]
pub struct Timing {
    pub lease: Duration,
    pub renew_deadline: Duration,
    pub retry: Duration,
}

impl Timing {
    /// Kubernetes' own controllers' proportions: 15 s, 10 s, 2 s.
    pub const DEFAULT: Timing = Timing {
        lease: Duration::from_secs(15),
        renew_deadline: Duration::from_secs(10),
        retry: Duration::from_secs(2),
    };
}

pub struct Leadership {
    api: Api<Lease>,
    name: String,
    identity: String,
    timing: Timing,
    /// The Lease's record as last seen (resource version), and when this replica first saw it.
    observed: Mutex<Option<(String, Instant)>>,
}

/// Why one attempt did not settle who leads.
#[derive(Debug, thiserror::Error)]
enum Attempt {
    #[error("{0}")]
    Api(#[from] kube::Error),
    #[error("no answer within {0:?}")]
    Timeout(Duration),
}

impl Leadership {
    pub fn new(
        client: Client,
        namespace: &str,
        lease: &str,
        identity: &str,
        timing: Timing,
    ) -> Self {
        assert!(
            timing.renew_deadline < timing.lease,
            "the renew deadline must be shorter than the Lease"
        );
        Self {
            api: Api::namespaced(client, namespace),
            name: lease.into(),
            identity: identity.into(),
            timing,
            observed: Mutex::new(None),
        }
    }

    /// Tries once, within the renew deadline; true when this replica now holds the Lease.
    pub async fn try_acquire(&self) -> bool {
        self.attempt(self.timing.renew_deadline)
            .await
            .unwrap_or_else(|e| {
                warn!(error = %e, "cannot read or write the leader Lease; retrying");
                false
            })
    }

    /// Waits until this replica holds the Lease.
    pub async fn acquire(&self) {
        while !self.try_acquire().await {
            tokio::time::sleep(self.timing.retry).await;
        }
    }

    /// Keeps renewing the Lease; returns when this replica must stop leading: another replica
    /// holds it, or no renewal succeeded within the renew deadline.
    pub async fn hold(&self) {
        let mut renewed = Instant::now();
        loop {
            tokio::time::sleep(self.timing.retry).await;
            let left = self.timing.renew_deadline.saturating_sub(renewed.elapsed());
            if left.is_zero() {
                warn!("the leader Lease was not renewed within the renew deadline");
                return;
            }
            match self.attempt(left).await {
                Ok(true) => renewed = Instant::now(),
                Ok(false) => return,
                Err(e) => warn!(error = %e, "cannot renew the leader Lease; retrying"),
            }
        }
    }

    /// Empties the Lease if this replica holds it, so a standby takes over without waiting for
    /// it to expire.
    pub async fn step_down(&self) {
        let released = async {
            let Some(mut lease) = self.api.get_opt(&self.name).await? else {
                return Ok::<_, kube::Error>(false);
            };
            let spec = lease.spec.get_or_insert_with(Default::default);
            if spec.holder_identity.as_deref() != Some(&self.identity) {
                return Ok(false);
            }
            spec.holder_identity = None;
            spec.lease_duration_seconds = Some(1);
            self.api
                .replace(&self.name, &PostParams::default(), &lease)
                .await?;
            Ok(true)
        };
        match tokio::time::timeout(self.timing.renew_deadline, released).await {
            Ok(Ok(true)) => info!("stepped down: the leader Lease is free"),
            Ok(Ok(false)) => {}
            Ok(Err(e)) => warn!(error = %e, "cannot release the leader Lease; it expires"),
            Err(_) => warn!("releasing the leader Lease hung; it expires"),
        }
    }

    async fn attempt(&self, deadline: Duration) -> Result<bool, Attempt> {
        tokio::time::timeout(deadline, self.acquire_or_renew())
            .await
            .map_err(|_| Attempt::Timeout(deadline))?
    }

    async fn acquire_or_renew(&self) -> Result<bool, Attempt> {
        let now = MicroTime(k8s_openapi::jiff::Timestamp::now());
        let lease_seconds = self.timing.lease.as_secs().max(1) as i32;
        let Some(mut lease) = self.api.get_opt(&self.name).await? else {
            let lease = Lease {
                metadata: ObjectMeta {
                    name: Some(self.name.clone()),
                    ..Default::default()
                },
                spec: Some(LeaseSpec {
                    holder_identity: Some(self.identity.clone()),
                    lease_duration_seconds: Some(lease_seconds),
                    acquire_time: Some(now.clone()),
                    renew_time: Some(now),
                    lease_transitions: Some(0),
                    ..Default::default()
                }),
            };
            return match self.api.create(&PostParams::default(), &lease).await {
                Ok(_) => Ok(true),
                Err(kube::Error::Api(e)) if e.code == 409 => Ok(false),
                Err(e) => Err(e.into()),
            };
        };
        let version = lease.metadata.resource_version.clone().unwrap_or_default();
        let spec = lease.spec.get_or_insert_with(Default::default);
        let holder = spec.holder_identity.clone().filter(|h| !h.is_empty());
        let ours = holder.as_deref() == Some(&self.identity);
        if !ours && holder.is_some() && !self.expired(&version, spec) {
            return Ok(false);
        }
        if !ours {
            spec.holder_identity = Some(self.identity.clone());
            spec.acquire_time = Some(now.clone());
            spec.lease_transitions = Some(spec.lease_transitions.unwrap_or(0) + 1);
        }
        spec.renew_time = Some(now);
        spec.lease_duration_seconds = Some(lease_seconds);
        // The resource version read above makes this a compare-and-swap.
        match self
            .api
            .replace(&self.name, &PostParams::default(), &lease)
            .await
        {
            Ok(_) => Ok(true),
            Err(kube::Error::Api(e)) if e.code == 409 => Ok(false),
            Err(e) => Err(e.into()),
        }
    }

    /// Whether another holder's record has stood unchanged for the Lease's duration, by this
    /// replica's clock.
    fn expired(&self, version: &str, spec: &LeaseSpec) -> bool {
        let duration = Duration::from_secs(spec.lease_duration_seconds.unwrap_or(15).max(1) as u64);
        let mut observed = self.observed.lock().expect("observed lock");
        match observed.as_ref() {
            Some((seen, since)) if seen == version => since.elapsed() > duration,
            _ => {
                *observed = Some((version.to_owned(), Instant::now()));
                false
            }
        }
    }
}
