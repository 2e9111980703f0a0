//! The deal this storefront serves, read from a TimeDeal file (the operator mounts the spec from a
//! ConfigMap; on its own, any TimeDeal YAML or JSON file works).

use std::path::{Path, PathBuf};

use timedeal_api::{validation, TimeDeal};

/// Why the deal file cannot be served.
#[derive(Debug, thiserror::Error)]
pub enum DealError {
    #[error("cannot read the deal file {path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    #[error("the deal file {path} is not a valid TimeDeal; fix these fields:\n{source}")]
    Invalid {
        path: PathBuf,
        #[source]
        source: validation::Error,
    },
}

/// Reads and checks the deal, with the CRD's defaults filled in.
pub fn load(path: &Path) -> Result<TimeDeal, DealError> {
    let text = std::fs::read_to_string(path).map_err(|source| DealError::Read {
        path: path.to_owned(),
        source,
    })?;
    validation::parse(&text).map_err(|source| DealError::Invalid {
        path: path.to_owned(),
        source,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_file_names_the_path() {
        let error = load(Path::new("/nonexistent/deal.yaml")).unwrap_err();
        assert!(error
            .to_string()
            .starts_with("cannot read the deal file /nonexistent/deal.yaml"));
    }

    #[test]
    fn an_invalid_deal_names_the_file_and_each_field() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("deal.yaml");
        let sample = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../manifests/samples/invalid/deal-price-above-list-price.yaml");
        std::fs::copy(sample, &path).unwrap();
        let message = load(&path).unwrap_err().to_string();
        assert!(message.contains("is not a valid TimeDeal"), "{message}");
        assert!(
            message.contains("spec.product.dealPrice: product.dealPrice must not be higher than product.listPrice"),
            "{message}"
        );
    }

    #[test]
    fn the_sample_deal_loads_with_defaults() {
        let sample = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../manifests/samples/timedeal-minimal.yaml");
        let deal = load(&sample).unwrap();
        assert_eq!(deal.spec.product.per_user_limit, 1);
        assert_eq!(deal.spec.queue.admission_rate, 50);
    }
}
