//! What can go wrong in the portal, each saying what failed and why. Handlers turn these into a
//! page that says nothing was changed and to try again; the details go to the log, never to the
//! visitor.

#[derive(Debug, thiserror::Error)]
pub enum PortalError {
    #[error("the platform PostgreSQL: {0}")]
    Database(#[source] sqlx::Error),

    #[error("migrating the portal's schema in the platform PostgreSQL: {0}")]
    Migration(String),

    #[error("hashing a password: {0}")]
    Hash(String),

    #[error("{action}: {source}")]
    Kube {
        action: String,
        #[source]
        source: Box<kube::Error>,
    },
}

/// Wraps a Kubernetes API error with what was being done.
pub fn kube(action: impl Into<String>) -> impl FnOnce(kube::Error) -> PortalError {
    let action = action.into();
    move |source| PortalError::Kube {
        action,
        source: Box::new(source),
    }
}
