//! `timedeal-operator render DEAL.yaml [--at TIME]`: the children the operator would apply for a
//! deal at a moment, as YAML, for an admin to review (as `helm template` does) and for scanners.
//! Pure but for reading the file: the same builders reconcile uses, with placeholders for the
//! secret values only the cluster holds.

use chrono::{DateTime, Utc};
use serde_json::Value;
use timedeal_api::{validation, TimeDeal};

use crate::{
    phase, pinning,
    resources::{self, Deal, Plan, Secrets, Settings},
};

/// Why a deal cannot be rendered.
#[derive(Debug, thiserror::Error)]
pub enum RenderError {
    #[error("{0}")]
    Invalid(String),
    #[error("the TimeDeal cannot own children: {0}")]
    Build(#[from] resources::BuildError),
}

/// What stands in for a generated or platform secret in rendered output.
pub const PLACEHOLDER: &str = "generated-when-applied";

/// Every child of the deal in `text` at `at`, in the order reconcile applies them.
pub fn render(
    text: &str,
    at: DateTime<Utc>,
    settings: &Settings,
    namespace: &str,
) -> Result<Vec<Value>, RenderError> {
    let mut td: TimeDeal =
        validation::parse(text).map_err(|e| RenderError::Invalid(e.to_string()))?;
    td.metadata
        .namespace
        .get_or_insert_with(|| namespace.to_owned());
    // Children are owned by the deal's uid, which only the API server assigns.
    td.metadata
        .uid
        .get_or_insert_with(|| "00000000-0000-0000-0000-000000000000".into());
    let deal = Deal::new(&td)?;
    let spec = &td.spec;
    let (pinned, _) = pinning::resolve(spec, None, settings, false, false);
    let plan = Plan {
        scale: phase::scale_at(spec, at),
        selling: phase::selling(spec, at),
        pinned,
        revision: td.metadata.generation.unwrap_or(1),
    };
    let secrets = Secrets {
        redis_password: PLACEHOLDER.into(),
        signing_secret: PLACEHOLDER.into(),
        control_key: PLACEHOLDER.into(),
        postgres_url: format!(
            "postgres://{}:{PLACEHOLDER}@postgres:5432/timedeal",
            deal.schema()
        ),
        postgres_password: PLACEHOLDER.into(),
        jwt_key_fingerprint: None,
        smtp_url: None,
    };
    let bundle = resources::bundle(&deal, settings, &secrets, &plan);
    Ok(bundle.objects())
}

/// The objects as one YAML stream.
pub fn yaml(objects: &[Value]) -> String {
    objects
        .iter()
        .map(crate::yaml::document)
        .collect::<Vec<_>>()
        .join("---\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> String {
        std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../manifests/samples/timedeal.yaml"
        ))
        .unwrap()
    }

    fn kinds(objects: &[Value]) -> Vec<String> {
        objects
            .iter()
            .map(|o| {
                format!(
                    "{} {}",
                    o["kind"].as_str().unwrap(),
                    o["metadata"]["name"].as_str().unwrap()
                )
            })
            .collect()
    }

    #[test]
    fn the_render_follows_the_clock() {
        let settings = Settings::with_images("app:1", "redis:7");
        let start: DateTime<Utc> = "2026-12-01T03:00:00Z".parse().unwrap();
        let live = render(&sample(), start, &settings, "default").unwrap();
        assert!(kinds(&live).contains(&"PodDisruptionBudget winter-headphones-redis".to_owned()));
        assert!(kinds(&live)
            .contains(&"HorizontalPodAutoscaler winter-headphones-storefront".to_owned()));
        let retired = render(
            &sample(),
            start + chrono::Duration::days(9),
            &settings,
            "default",
        )
        .unwrap();
        let retired = kinds(&retired);
        assert!(!retired
            .iter()
            .any(|k| k.starts_with("HorizontalPodAutoscaler")));
        assert!(!retired.iter().any(|k| k.starts_with("PodDisruptionBudget")));
        let text = yaml(&live);
        let encoded = serde_json::to_value(k8s_openapi::ByteString(PLACEHOLDER.into())).unwrap();
        assert!(
            text.contains(encoded.as_str().unwrap()),
            "secrets hold placeholders"
        );
        assert!(text.contains("kind: StatefulSet"));
    }

    #[test]
    fn an_invalid_deal_is_refused_with_its_rule() {
        let broken = sample().replace("stock: 1000", "stock: -1");
        let error = render(&broken, Utc::now(), &Settings::with_images("a", "b"), "x").unwrap_err();
        assert!(error.to_string().contains("stock"), "{error}");
    }
}
