//! What a deal's pods run, decided once and kept: the images and the version of the operator's
//! templates are recorded in the status, so `helm upgrade` of the operator does not restart
//! every live sale at once. Pure: reconcile passes in what it knows.
//!
//! - A deal's own `spec.images` is the admin's explicit choice and takes effect at once.
//! - A change of the operator's defaults (its images, its templates) reaches a deal outside
//!   WarmingUp and Live, or at once when the deal carries `timedeal.dev/upgrade: now`.

use timedeal_api::{Pinned, TimeDealSpec};

use crate::resources::Settings;

/// The version of the operator's templates: bumped whenever the children it builds for the same
/// deal change (a test fails when they change and it is not).
pub const TEMPLATE_VERSION: &str = "2";

/// The annotation an admin sets to move a deal onto the operator's current images and templates
/// even while it sells.
pub const UPGRADE_ANNOTATION: &str = "timedeal.dev/upgrade";

/// What resolving the pins did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    /// Nothing: the pins are what the operator would choose.
    None,
    /// First reconcile: pinned to the operator's current choice.
    Pinned,
    /// Moved onto the operator's current choice.
    Upgraded { from: Pinned },
    /// The operator would choose differently; kept until the sale is over.
    Deferred { to: Pinned },
}

/// The pins for this reconcile, and what changed.
pub fn resolve(
    spec: &TimeDealSpec,
    old: Option<&Pinned>,
    settings: &Settings,
    selling: bool,
    upgrade_now: bool,
) -> (Pinned, Change) {
    let own = spec.images.as_ref();
    let tenant_override = own.and_then(|i| i.tenant_app.clone());
    let redis_override = own.and_then(|i| i.redis.clone());
    let wanted = Pinned {
        tenant_app: tenant_override
            .clone()
            .unwrap_or_else(|| settings.tenant_image.clone()),
        redis: redis_override
            .clone()
            .unwrap_or_else(|| settings.redis_image.clone()),
        template: TEMPLATE_VERSION.into(),
    };
    let Some(old) = old else {
        return (wanted, Change::Pinned);
    };
    // The deal's own images apply at once, whatever the phase.
    let current = Pinned {
        tenant_app: tenant_override.unwrap_or_else(|| old.tenant_app.clone()),
        redis: redis_override.unwrap_or_else(|| old.redis.clone()),
        template: old.template.clone(),
    };
    if current == wanted {
        let change = if &current == old {
            Change::None
        } else {
            Change::Upgraded { from: old.clone() }
        };
        return (current, change);
    }
    if selling && !upgrade_now {
        return (current, Change::Deferred { to: wanted });
    }
    (wanted, Change::Upgraded { from: old.clone() })
}

/// The template version of releases before pinning: their Redis ran as a Deployment.
pub const LEGACY_TEMPLATE: &str = "1";

/// What a deal built by a release before pinning runs: the images its workloads have (the
/// operator's defaults when they are gone), on the legacy templates, so an upgrade waits for the
/// end of its sale like any other.
pub fn legacy(settings: &Settings, storefront: Option<String>, redis: Option<String>) -> Pinned {
    Pinned {
        tenant_app: storefront.unwrap_or_else(|| settings.tenant_image.clone()),
        redis: redis.unwrap_or_else(|| settings.redis_image.clone()),
        template: LEGACY_TEMPLATE.into(),
    }
}

/// Whether the pins are on another template version than this operator's: the workloads are then
/// left as they run, since rebuilding them would restart every pod.
pub fn stale_template(pinned: &Pinned) -> bool {
    pinned.template != TEMPLATE_VERSION
}

/// One line for an Event: what the pods run.
pub fn describe(pinned: &Pinned) -> String {
    format!(
        "storefront {}, Redis {}, templates v{}",
        pinned.tenant_app, pinned.redis, pinned.template
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resources::testing;

    fn spec() -> TimeDealSpec {
        testing::sample().spec
    }

    fn settings(tenant: &str) -> Settings {
        Settings::with_images(tenant, "redis:7.2.5")
    }

    #[test]
    fn the_first_reconcile_pins_the_operators_choice() {
        let (pinned, change) = resolve(&spec(), None, &settings("app:1"), true, false);
        assert_eq!(change, Change::Pinned);
        assert_eq!(pinned.tenant_app, "app:1");
        assert_eq!(pinned.template, TEMPLATE_VERSION);
    }

    #[test]
    fn an_operator_upgrade_waits_for_the_end_of_the_sale() {
        let (old, _) = resolve(&spec(), None, &settings("app:1"), false, false);
        let (kept, change) = resolve(&spec(), Some(&old), &settings("app:2"), true, false);
        assert_eq!(kept, old);
        match change {
            Change::Deferred { to } => assert_eq!(to.tenant_app, "app:2"),
            other => panic!("{other:?}"),
        }
        let (moved, change) = resolve(&spec(), Some(&old), &settings("app:2"), false, false);
        assert_eq!(moved.tenant_app, "app:2");
        assert_eq!(change, Change::Upgraded { from: old.clone() });
        let (asked, _) = resolve(&spec(), Some(&old), &settings("app:2"), true, true);
        assert_eq!(asked.tenant_app, "app:2", "the annotation moves it at once");
    }

    #[test]
    fn a_new_template_version_is_deferred_too() {
        let old = Pinned {
            tenant_app: "app:1".into(),
            redis: "redis:7.2.5".into(),
            template: "1".into(),
        };
        let (kept, change) = resolve(&spec(), Some(&old), &settings("app:1"), true, false);
        assert!(stale_template(&kept));
        assert!(matches!(change, Change::Deferred { .. }));
        let (moved, _) = resolve(&spec(), Some(&old), &settings("app:1"), false, false);
        assert!(!stale_template(&moved));
    }

    #[test]
    fn the_deals_own_image_applies_at_once() {
        let (old, _) = resolve(&spec(), None, &settings("app:1"), false, false);
        let mut edited = spec();
        edited.images = Some(timedeal_api::Images {
            tenant_app: Some("registry.internal/app:hotfix".into()),
            redis: None,
        });
        let (pinned, change) = resolve(&edited, Some(&old), &settings("app:1"), true, false);
        assert_eq!(pinned.tenant_app, "registry.internal/app:hotfix");
        assert_eq!(change, Change::Upgraded { from: old });
    }

    /// The workloads' templates for the sample deal, with fixed images and secrets. When this
    /// changes, running deals would restart on an operator upgrade: bump TEMPLATE_VERSION (so the
    /// restart waits for the end of each sale) and record the new fingerprint here.
    #[test]
    fn the_template_version_follows_the_templates() {
        use crate::{phase::Scale, resources};
        const RECORDED: (&str, &str) = ("2", "73cd9f4588305855");
        let mut td = testing::sample();
        // A running deal keeps the schema it was set up with; only the templates count here.
        td.status = Some(timedeal_api::TimeDealStatus {
            schema: Some("td_acme_audio_winter_headphones".into()),
            ..Default::default()
        });
        let deal = resources::Deal::new(&td).unwrap();
        let (pinned, _) = resolve(&td.spec, None, &testing::settings(), false, false);
        let plan = resources::Plan {
            scale: Scale::Autoscaled { floor: 2, max: 20 },
            selling: false,
            pinned,
            revision: 1,
        };
        let bundle = resources::bundle(&deal, &testing::settings(), &testing::secrets(), &plan);
        let mut templates = serde_json::json!([
            bundle.storefront.spec.unwrap().template,
            bundle.redis.spec.unwrap().template,
        ]);
        // The secrets' checksum follows the secrets, not the templates.
        for template in templates.as_array_mut().unwrap() {
            template["metadata"]["annotations"]
                .as_object_mut()
                .unwrap()
                .remove(crate::resources::CHECKSUM_ANNOTATION);
        }
        assert_eq!(
            (
                TEMPLATE_VERSION,
                resources::fingerprint(&templates).as_str()
            ),
            RECORDED,
            "the pod templates changed: bump TEMPLATE_VERSION and record the new fingerprint"
        );
    }
}
