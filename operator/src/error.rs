//! Everything that can stop a reconcile. Each error says what failed and why; `kind` labels the
//! `timedeal_operator_reconcile_errors_total` metric.

use crate::resources::BuildError;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("the TimeDeal cannot own children: {0}")]
    Build(#[from] BuildError),

    #[error("the spec breaks the CRD's rules (it was stored before they applied): {0}")]
    InvalidSpec(String),

    #[error(
        "the platform PostgreSQL Secret {namespace}/{name} {problem}; create it with the \
         database URL under the key `{key}` (see the operator's --postgres-secret flag)"
    )]
    PostgresSecret {
        namespace: String,
        name: String,
        key: String,
        problem: &'static str,
    },

    #[error("{action}: {source}")]
    Kube {
        action: String,
        // Boxed: kube's error is large, and every Result in reconcile would carry its size.
        #[source]
        source: Box<kube::Error>,
    },

    #[error("the platform PostgreSQL: {0}")]
    Database(#[from] crate::database::DatabaseError),

    #[error("the API server did not answer within {}s", .0.as_secs())]
    Timeout(std::time::Duration),

    #[error("children the API server refused: {0}")]
    Children(String),

    #[error("the finalizer failed: {0}")]
    Finalizer(#[source] Box<kube::runtime::finalizer::Error<Error>>),
}

impl Error {
    /// Every kind, so the error counter starts at zero for each.
    pub const KINDS: [&'static str; 8] = [
        "build",
        "invalid_spec",
        "postgres_secret",
        "database",
        "kube_api",
        "timeout",
        "children",
        "finalizer",
    ];

    pub fn kind(&self) -> &'static str {
        match self {
            Error::Build(_) => "build",
            Error::InvalidSpec(_) => "invalid_spec",
            Error::PostgresSecret { .. } => "postgres_secret",
            Error::Database(_) => "database",
            Error::Kube { .. } => "kube_api",
            Error::Timeout(_) => "timeout",
            Error::Children(_) => "children",
            Error::Finalizer(inner) => match inner.as_ref() {
                kube::runtime::finalizer::Error::ApplyFailed(e)
                | kube::runtime::finalizer::Error::CleanupFailed(e) => e.kind(),
                _ => "finalizer",
            },
        }
    }

    /// A short CamelCase reason for Events and the Degraded condition.
    pub fn reason(&self) -> &'static str {
        match self {
            Error::Build(_) => "CannotBuild",
            Error::InvalidSpec(_) => "InvalidSpec",
            Error::PostgresSecret { .. } => "PostgresSecretMissing",
            Error::Database(_) => "DatabaseUnavailable",
            Error::Kube { .. } => "KubernetesApiError",
            Error::Timeout(_) => "KubernetesApiTimeout",
            Error::Children(_) => "ApplyFailed",
            Error::Finalizer(inner) => match inner.as_ref() {
                kube::runtime::finalizer::Error::ApplyFailed(e)
                | kube::runtime::finalizer::Error::CleanupFailed(e) => e.reason(),
                _ => "FinalizerFailed",
            },
        }
    }
}

/// Wraps a kube error with what was being done.
pub(crate) fn kube(action: impl Into<String>) -> impl FnOnce(kube::Error) -> Error {
    let action = action.into();
    move |source| Error::Kube {
        action,
        source: Box::new(source),
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
