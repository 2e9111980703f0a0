//! Leader election through a `coordination.k8s.io` Lease (the `kube-leader-election` crate), so
//! two operator replicas never reconcile at once: one waits for the Lease, the holder renews it
//! every third of its lifetime, and a holder that cannot renew in time stops.

use std::time::Duration;

use kube::Client;
use kube_leader_election::{LeaseLock, LeaseLockParams, LeaseLockResult};
use tracing::warn;

pub struct Leadership {
    lock: LeaseLock,
    ttl: Duration,
}

impl Leadership {
    pub fn new(
        client: Client,
        namespace: &str,
        lease: &str,
        identity: &str,
        ttl: Duration,
    ) -> Self {
        let lock = LeaseLock::new(
            client,
            namespace,
            LeaseLockParams {
                lease_name: lease.into(),
                holder_id: identity.into(),
                lease_ttl: ttl,
            },
        );
        Self { lock, ttl }
    }

    /// Tries once; true when this replica now holds the Lease.
    pub async fn try_acquire(&self) -> bool {
        match self.lock.try_acquire_or_renew().await {
            Ok(LeaseLockResult::Acquired(_)) => true,
            Ok(LeaseLockResult::NotAcquired(_)) => false,
            Err(e) => {
                warn!(error = %e, "cannot read the leader Lease; retrying");
                false
            }
        }
    }

    /// Waits until this replica holds the Lease.
    pub async fn acquire(&self) {
        while !self.try_acquire().await {
            tokio::time::sleep(self.ttl / 3).await;
        }
    }

    /// Keeps renewing the Lease; returns when it is lost: another replica took it, or it could
    /// not be renewed before it expired.
    pub async fn hold(&self) {
        let mut renewed = tokio::time::Instant::now();
        loop {
            tokio::time::sleep(self.ttl / 3).await;
            match self.lock.try_acquire_or_renew().await {
                Ok(LeaseLockResult::Acquired(_)) => renewed = tokio::time::Instant::now(),
                Ok(LeaseLockResult::NotAcquired(_)) => return,
                Err(e) if renewed.elapsed() + self.ttl / 3 < self.ttl => {
                    warn!(error = %e, "cannot renew the leader Lease; retrying")
                }
                Err(_) => return,
            }
        }
    }
}
