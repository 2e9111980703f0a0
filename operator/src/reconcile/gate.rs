//! Step 1: whether the deal may run. Its spec keeps the CRD's rules; its company is approved,
//! owns the namespace and has room for it (`company::gate`, read from the Company store, which
//! the reconcile waited to be loaded); and, when it is approved before it ever ran, its host is
//! its company's and free, and the capacity calendar has room. A deal refused after it ran is
//! suspended, its data kept.

use super::*;

/// What the gate decided.
pub(super) struct Admission {
    /// The deal got past approval before (it has children and perhaps orders).
    pub(super) ran: bool,
    /// Why it may not run now, if it may not.
    pub(super) refused: Option<Problem>,
    pub(super) approved: bool,
    /// It ran and may no longer: it is suspended rather than torn down.
    pub(super) revoked: bool,
}

impl Admission {
    /// The deal as it is built: itself, or, revoked, approved and suspended; none while it waits
    /// for approval.
    pub(super) fn effective(&self, td: &TimeDeal) -> Option<TimeDeal> {
        if self.approved {
            Some(td.clone())
        } else if self.revoked {
            let mut suspended = td.clone();
            suspended.spec.approved = true;
            suspended.spec.suspend = true;
            Some(suspended)
        } else {
            None
        }
    }
}

pub(super) async fn gate(td: &TimeDeal, ctx: &Context, old: &TimeDealStatus) -> Result<Admission> {
    Deal::new(td)?;
    check_rules(td)?;
    // Taking approval back from a deal that ran suspends it: its children and orders stay.
    let ran = old
        .phase
        .is_some_and(|p| !matches!(p, Phase::PendingApproval));
    // A deal runs only in an approved company's namespace and within its quotas; refused, it is
    // treated as unapproved (one that ran is suspended, its data kept).
    let mut refused = crate::company::gate(&ctx.cache.companies, td);
    // Approving a deal that has not run yet checks it against its company's quota at its
    // maximum, and its host and the capacity calendar against every other deal. A deal that
    // runs is never suspended for these: a sale goes on under the rules it was admitted by.
    if refused.is_none() && td.spec.approved && !ran {
        refused = crate::company::over_budget(&ctx.cache.companies, td, &ctx.config.settings);
    }
    if refused.is_none() && td.spec.approved && !ran {
        // Boxed: only before approval, kept off every reconcile's stack.
        let all = Box::pin(all_deals(ctx)).await?;
        refused = host_taken(ctx, td, &all).or(over_capacity(ctx, td, &all));
    }
    let approved = td.spec.approved && refused.is_none();
    Ok(Admission {
        ran,
        revoked: !approved && ran,
        approved,
        refused,
    })
}

/// A deal waiting for approval (or refused before it ran): its status says why, nothing is built.
pub(super) async fn pending(
    ctx: &Context,
    td: &TimeDeal,
    old: &TimeDealStatus,
    admission: &Admission,
    now: DateTime<Utc>,
) -> Result<Action> {
    let health = Health {
        refused: admission.refused.as_ref(),
        ..Health::default()
    };
    let pending = unbuilt(td, old, Phase::PendingApproval, health, now);
    write_status(ctx, td, old, &pending).await?;
    announce(ctx, td, old, &pending).await;
    record(ctx, td, &pending);
    Ok(Action::await_change())
}

/// Every TimeDeal there is, read from the API server (not a cache): what approval is checked
/// against.
async fn all_deals(ctx: &Context) -> Result<Vec<TimeDeal>> {
    Ok(tokio::time::timeout(
        ctx.config.api_timeout,
        Api::<TimeDeal>::all(ctx.client.clone()).list(&ListParams::default()),
    )
    .await
    .map_err(|_| Error::Timeout(ctx.config.api_timeout))?
    .map_err(crate::error::kube(
        "listing TimeDeals to check a host and the capacity calendar",
    ))?
    .items)
}

/// Why `td` may not take its host, if it may not: not its company's, the platform's own, or
/// another deal's (see `timedeal_api::hosts`).
fn host_taken(ctx: &Context, td: &TimeDeal, all: &[TimeDeal]) -> Option<Problem> {
    let namespace = td.namespace().unwrap_or_default();
    let companies = ctx.cache.companies.state();
    let company = companies.iter().find(|c| c.owns(&namespace))?;
    ctx.config
        .hosts
        .problem(td, company, all)
        .map(|message| Problem {
            reason: "HostNotAllowed",
            message,
        })
}

/// Why approving `td` would overcommit the platform, if it would: its booking against every other
/// approved deal's, with the nearest starts that fit.
fn over_capacity(ctx: &Context, td: &TimeDeal, all: &[TimeDeal]) -> Option<Problem> {
    use timedeal_api::calendar::{self, Booking};
    let capacity = ctx.config.calendar_replicas?;
    let others: Vec<Booking> = all
        .iter()
        .filter(|d| d.spec.approved && d.uid() != td.uid())
        .map(Booking::of)
        .collect();
    let mine = Booking::of(td);
    let Err(over) = calendar::fits(&mine, &others, capacity) else {
        return None;
    };
    let free = calendar::free_starts(td, &others, capacity, ctx.clock.now());
    Some(Problem {
        reason: "OverCapacity",
        message: format!(
            "approving it would book {} storefront replicas at {} when {} of the platform's {} \
             are booked; move it to a start that fits ({}) or lower capacity.peakReplicas",
            mine.replicas,
            over.at.format("%Y-%m-%d %H:%M UTC"),
            over.booked,
            over.capacity,
            free
        ),
    })
}

/// A spec stored before the CRD's current rules is refused here as the API server would.
fn check_rules(td: &TimeDeal) -> Result<()> {
    let mut object = serde_json::to_value(td).expect("a TimeDeal serialises");
    if let Some(map) = object.as_object_mut() {
        map.remove("status");
    }
    validation::validate(&object).map(|_| ()).map_err(|errors| {
        let lines: Vec<String> = errors.iter().map(ToString::to_string).collect();
        Error::InvalidSpec(lines.join("; "))
    })
}
