//! Companies: the reconcile that gives an approved company its namespace, and the gate that keeps
//! deals from running anywhere else.
//!
//! Reconcile reads as steps: validate (approved, and the namespace is the company's to take),
//! build the namespace's objects (`tenancy`), apply them, update the status.

pub mod budget;
pub mod tenancy;

use std::{sync::Arc, time::Duration};

use k8s_openapi::api::core::v1::Namespace;
use kube::{
    api::{Api, ListParams, Patch, PatchParams},
    runtime::{controller::Action, reflector::Store},
    Resource, ResourceExt,
};
use serde::{de::DeserializeOwned, Serialize};
use serde_json::json;
use timedeal_api::{Company, CompanyStatus, TimeDeal};
use tracing::warn;

use crate::{
    apply::{self, FIELD_MANAGER},
    conditions::{self, Problem},
    error::{kube, Error, Result},
    reconcile::Context,
};

/// Why a deal in `namespace` may not run, if it may not: no approved Company owns the namespace,
/// or the deal asks for more than its company's quotas allow.
pub fn gate(companies: &Store<Company>, td: &TimeDeal) -> Option<Problem> {
    let namespace = td.namespace().unwrap_or_default();
    let all = companies.state();
    // Approved and asking for the namespace is not enough: the namespace must have become the
    // company's (not refused as another's, NamespaceInUse).
    let refused = |c: &Company| {
        c.status.as_ref().is_some_and(|s| {
            s.conditions
                .iter()
                .any(|c| c.type_ == "Ready" && c.status == "False" && c.reason == "NamespaceInUse")
        })
    };
    if let Some(c) = all.iter().find(|c| c.owns(&namespace) && refused(c)) {
        if !all.iter().any(|c| c.owns(&namespace) && !refused(c)) {
            return Some(Problem {
                reason: "NamespaceInUse",
                message: format!(
                    "the Company {} asks for the namespace {namespace}, which is not its own \
                     (see `kubectl get company {} -o yaml`); no deal runs there until it is",
                    c.name_any(),
                    c.name_any()
                ),
            });
        }
    }
    let Some(company) = all.iter().find(|c| c.owns(&namespace) && !refused(c)) else {
        let pending = all.iter().find(|c| c.spec.namespace == namespace);
        return Some(Problem {
            reason: "CompanyNotApproved",
            message: match pending {
                Some(c) => format!(
                    "the namespace {namespace} belongs to the Company {}, which is not approved; \
                     approve it with `kubectl timedeal approve {}`",
                    c.name_any(),
                    c.name_any()
                ),
                None => format!(
                    "no approved Company owns the namespace {namespace}; deals run only in a \
                     company's namespace (see `kubectl get companies`)"
                ),
            },
        });
    };
    let quotas = &company.spec.quotas;
    let product = &td.spec.product;
    if product.stock > quotas.max_stock {
        return Some(Problem {
            reason: "OverQuota",
            message: format!(
                "product.stock is {} but the Company {} may sell at most {} units a deal \
                 (quotas.maxStock)",
                product.stock,
                company.name_any(),
                quotas.max_stock
            ),
        });
    }
    let peak = td.spec.capacity.peak_replicas;
    if peak > quotas.max_peak_replicas {
        return Some(Problem {
            reason: "OverQuota",
            message: format!(
                "capacity.peakReplicas is {peak} but the Company {} may run at most {} \
                 storefront replicas (quotas.maxPeakReplicas)",
                company.name_any(),
                quotas.max_peak_replicas
            ),
        });
    }
    None
}

/// Why a deal about to be approved would not fit its company's quota at its maximum, if it would
/// not (`budget::exceeds`): checked before a deal first runs, never again, so a running sale is
/// not suspended because its company's quota or the operator's defaults changed under it.
pub fn over_budget(
    companies: &Store<Company>,
    td: &TimeDeal,
    settings: &crate::resources::Settings,
) -> Option<Problem> {
    let namespace = td.namespace().unwrap_or_default();
    let company = companies.state().into_iter().find(|c| c.owns(&namespace))?;
    budget::exceeds(&td.spec, &company, settings).map(|why| Problem {
        reason: "OverQuota",
        message: why,
    })
}

/// How often a company's namespace is checked again without a change to the Company: repairs
/// hand edits to its quota, policies and binding.
const RESYNC: Duration = Duration::from_secs(300);

/// The company controller's reconcile.
pub async fn reconcile(company: Arc<Company>, ctx: Arc<Context>) -> Result<Action> {
    // An unloaded Company store would hide the Company that already owns a namespace.
    if let Some(wait) = crate::reconcile::caches_loading(&ctx) {
        return Ok(wait);
    }
    let name = company.name_any();
    let result = reconcile_company(&company, &ctx).await;
    if let Err(error) = &result {
        ctx.metrics.error(error);
        warn!(company = %name, error = %error, "company reconcile failed");
        let problem = Problem {
            reason: error.reason(),
            message: error.to_string(),
        };
        // The status says why; a failure to write it is logged with the first.
        let _ = write_status(&ctx, &company, false, &problem, None).await;
    }
    result
}

pub fn error_policy(_: Arc<Company>, _: &Error, _: Arc<Context>) -> Action {
    Action::requeue(Duration::from_secs(30))
}

async fn reconcile_company(company: &Company, ctx: &Context) -> Result<Action> {
    let namespace = &company.spec.namespace;
    // 1. validate
    if !company.spec.approved {
        let problem = Problem {
            reason: "PendingApproval",
            message: format!(
                "waiting for an admin: `kubectl timedeal approve {}`; until then it has no \
                 namespace and its deal requests are refused",
                company.name_any()
            ),
        };
        write_status(ctx, company, false, &problem, None).await?;
        return Ok(Action::await_change());
    }
    let namespaces: Api<Namespace> = Api::all(ctx.client.clone());
    let live = bounded(ctx, namespaces.get_opt(namespace))
        .await?
        .map_err(kube(format!("reading the namespace {namespace}")))?;
    if !tenancy::may_take(live.as_ref(), company) {
        let problem = Problem {
            reason: "NamespaceInUse",
            message: format!(
                "the namespace {namespace} exists and is not this company's; choose another \
                 spec.namespace (a new Company) or remove the namespace"
            ),
        };
        write_status(ctx, company, false, &problem, None).await?;
        return Ok(Action::requeue(RESYNC));
    }
    let taken_by = ctx.cache.companies.state().into_iter().find(|other| {
        other.spec.approved
            && other.spec.namespace == *namespace
            && other.uid() != company.uid()
            && other.creation_timestamp() < company.creation_timestamp()
    });
    if let Some(other) = taken_by {
        let problem = Problem {
            reason: "NamespaceInUse",
            message: format!(
                "the Company {} already owns the namespace {namespace}",
                other.name_any()
            ),
        };
        write_status(ctx, company, false, &problem, None).await?;
        return Ok(Action::requeue(RESYNC));
    }

    // 2. build, 3. apply
    let settings = &ctx.config.settings;
    bounded(
        ctx,
        namespaces.patch(
            namespace,
            &PatchParams::apply(FIELD_MANAGER).force(),
            &Patch::Apply(&tenancy::namespace(company)),
        ),
    )
    .await?
    .map_err(kube(format!("applying the namespace {namespace}")))?;
    // First the operator's own rights here: everything after is written through them.
    let operator = tenancy::PortalAccount {
        namespace: ctx.config.operator_namespace.clone(),
        name: crate::rbac::NAME.into(),
    };
    keep(ctx, tenancy::operator_binding(company, &operator)).await?;
    keep(ctx, tenancy::resource_quota(company, settings)).await?;
    keep(ctx, tenancy::limit_range(company, settings)).await?;
    keep(ctx, tenancy::default_deny(company)).await?;
    keep(
        ctx,
        tenancy::portal_binding(company, &ctx.config.portal_account),
    )
    .await?;

    // 4. update the status
    let deals = bounded(
        ctx,
        Api::<TimeDeal>::namespaced(ctx.client.clone(), namespace).list(&ListParams::default()),
    )
    .await?
    .map_err(kube(format!("listing the deals in {namespace}")))?
    .items
    .len();
    let ready = Problem {
        reason: "NamespaceReady",
        message: format!(
            "the namespace {namespace} has its quota, limits, policies and portal binding"
        ),
    };
    write_status(ctx, company, true, &ready, Some(deals as i32)).await?;
    Ok(Action::requeue(RESYNC))
}

/// Applies one namespaced object unless it already is as built.
async fn keep<K>(ctx: &Context, desired: K) -> Result<()>
where
    K: Resource<DynamicType = (), Scope = k8s_openapi::NamespaceResourceScope>
        + Serialize
        + DeserializeOwned
        + Clone
        + std::fmt::Debug,
{
    let (namespace, name) = (
        desired.meta().namespace.clone().unwrap_or_default(),
        desired.name_any(),
    );
    let api: Api<K> = Api::namespaced(ctx.client.clone(), &namespace);
    let live = bounded(ctx, api.get_opt(&name))
        .await?
        .map_err(kube(format!("reading {} {namespace}/{name}", K::kind(&()))))?;
    bounded(ctx, apply::apply(&ctx.client, desired, live.as_ref())).await??;
    Ok(())
}

async fn bounded<T>(ctx: &Context, call: impl std::future::Future<Output = T>) -> Result<T> {
    tokio::time::timeout(ctx.config.api_timeout, call)
        .await
        .map_err(|_| Error::Timeout(ctx.config.api_timeout))
}

/// Writes Ready (and the deal count) when they changed.
async fn write_status(
    ctx: &Context,
    company: &Company,
    ready: bool,
    why: &Problem,
    deals: Option<i32>,
) -> Result<()> {
    let old = company.status.clone().unwrap_or_default();
    let wanted = conditions::Wanted {
        type_: conditions::READY,
        status: ready,
        reason: why.reason,
        message: why.message.clone(),
    };
    let generation = company.metadata.generation.unwrap_or(0);
    let next = CompanyStatus {
        conditions: conditions::merge(&old.conditions, &[wanted], generation, ctx.clock.now()),
        observed_generation: Some(generation),
        deals: deals.or(old.deals),
    };
    if next == old {
        return Ok(());
    }
    let api: Api<Company> = Api::all(ctx.client.clone());
    bounded(
        ctx,
        api.patch_status(
            &company.name_any(),
            &PatchParams::default(),
            &Patch::Merge(json!({ "status": next })),
        ),
    )
    .await?
    .map_err(kube(format!(
        "writing the status of Company {}",
        company.name_any()
    )))?;
    Ok(())
}
