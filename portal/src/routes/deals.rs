//! A signed-in company's deals: the list, the request form, each deal's page, withdrawal.
//!
//! Every deal is looked up in the signed-in company's own namespace, which comes from its
//! Company, never from the address or the form: whatever a company types, it reaches only its
//! own deals.

use std::{net::SocketAddr, sync::Arc};

use axum::{
    extract::{ConnectInfo, Path, Query, State},
    http::{header, HeaderMap, StatusCode},
    response::{Html, IntoResponse, Redirect, Response},
    Form, Json,
};
use kube::{
    api::{DeleteParams, ListParams, PostParams, Preconditions},
    Api, ResourceExt,
};
use serde::Deserialize;
use timedeal_api::{Company, TimeDeal};
use tracing::info;

use chrono::{NaiveDate, TimeZone, Utc};
use timedeal_api::calendar::{self, Booking};

use crate::{
    accounts::Session,
    bookings, capacity,
    error::{kube, PortalError},
    form::{FieldErrors, RequestForm},
    not_found, pages,
    pages::deals::DayView,
    stale_form, too_many, unavailable, Csrf, Portal,
};

/// The signed-in session and its Company, or where the visitor goes instead.
pub async fn signed_in(
    portal: &Portal,
    headers: &HeaderMap,
) -> Result<(Session, Company), Response> {
    let session = match portal.session(headers).await {
        Ok(Some(session)) => session,
        Ok(None) => return Err(Redirect::to("/signin").into_response()),
        Err(e) => return Err(unavailable(&e)),
    };
    match portal.company(&session.account.company).await {
        Ok(Some(company)) => Ok((session, company)),
        // The Company was deleted: the account has nothing left to see.
        Ok(None) => Err(Redirect::to("/signin").into_response()),
        Err(e) => Err(unavailable(&e)),
    }
}

fn nav<'a>(session: &'a Session, company: &'a Company) -> pages::Nav<'a> {
    pages::Nav {
        company: &company.spec.display_name,
        csrf: &session.csrf,
    }
}

fn deals(portal: &Portal, company: &Company) -> Api<TimeDeal> {
    Api::namespaced(portal.client.clone(), &company.spec.namespace)
}

/// The company's deals; none before approval (the portal may not read its namespace yet).
async fn company_deals(portal: &Portal, company: &Company) -> Result<Vec<TimeDeal>, PortalError> {
    if !company.spec.approved {
        return Ok(Vec::new());
    }
    match deals(portal, company).list(&ListParams::default()).await {
        Ok(list) => Ok(list.items),
        // Approved a moment ago: the operator has not bound the portal there yet.
        Err(kube::Error::Api(e)) if e.code == 403 || e.code == 404 => Ok(Vec::new()),
        Err(e) => Err(kube(format!("listing the deals of {}", company.name_any()))(e)),
    }
}

#[derive(Deserialize, Default)]
#[serde(default)]
pub struct ListQuery {
    withdrawn: Option<String>,
}

pub async fn list(
    State(portal): State<Arc<Portal>>,
    headers: HeaderMap,
    Query(query): Query<ListQuery>,
) -> Response {
    let (session, company) = match signed_in(&portal, &headers).await {
        Ok(found) => found,
        Err(response) => return response,
    };
    let found = match company_deals(&portal, &company).await {
        Ok(found) => found,
        Err(e) => return unavailable(&e),
    };
    let note = query
        .withdrawn
        .map(|name| format!("The request {name} was withdrawn."));
    (
        [(header::CACHE_CONTROL, "no-store")],
        Html(
            pages::deals::list(&found, &nav(&session, &company), &company, note.as_deref())
                .into_string(),
        ),
    )
        .into_response()
}

fn not_approved(session: &Session, company: &Company) -> Response {
    (
        StatusCode::FORBIDDEN,
        Html(
            pages::message(
                "Waiting for approval",
                Some(&nav(session, company)),
                "Your company is not approved yet, so it cannot request deals; nothing was created. A platform admin approves new companies, usually within a working day.",
                ("/deals", "Your deals"),
            )
            .into_string(),
        ),
    )
        .into_response()
}

/// The day the calendar shows: the form's date, or tomorrow.
fn chosen_day(portal: &Portal, date: &str) -> NaiveDate {
    NaiveDate::parse_from_str(date.trim(), "%Y-%m-%d")
        .unwrap_or_else(|_| (portal.clock.now() + chrono::Duration::days(1)).date_naive())
}

/// The calendar for a day, when the platform keeps one. A database failure shows no calendar
/// rather than no form; submitting checks again.
async fn day_view(portal: &Portal, date: NaiveDate) -> Option<DayView> {
    let capacity = portal.calendar_replicas?;
    let midnight = Utc.from_utc_datetime(&date.and_hms_opt(0, 0, 0)?);
    match bookings::after(portal.accounts.pool(), midnight, portal.clock.now()).await {
        Ok(booked) => Some(DayView {
            date,
            hours: calendar::day(date, &booked, capacity),
            capacity,
        }),
        Err(e) => {
            tracing::warn!(error = %e, "cannot read the calendar");
            None
        }
    }
}

async fn form_page(
    portal: &Portal,
    status: StatusCode,
    form: &RequestForm,
    errors: &FieldErrors,
    session: &Session,
    company: &Company,
) -> Response {
    let day = day_view(portal, chosen_day(portal, &form.date)).await;
    (
        status,
        [(header::CACHE_CONTROL, "no-store")],
        Html(
            pages::deals::request_form(
                form,
                errors,
                &nav(session, company),
                company,
                portal.limits,
                day.as_ref(),
            )
            .into_string(),
        ),
    )
        .into_response()
}

#[derive(Deserialize, Default)]
#[serde(default)]
pub struct DayQuery {
    date: String,
}

/// `/calendar?date=YYYY-MM-DD`: a day's hours, as the form shows them, for its script.
pub async fn day(
    State(portal): State<Arc<Portal>>,
    headers: HeaderMap,
    Query(query): Query<DayQuery>,
) -> Response {
    if let Err(response) = signed_in(&portal, &headers).await {
        return response;
    }
    let date = chosen_day(&portal, &query.date);
    match day_view(&portal, date).await {
        Some(view) => (
            [(header::CACHE_CONTROL, "no-store")],
            Html(pages::deals::calendar(&view).into_string()),
        )
            .into_response(),
        None => not_found(None),
    }
}

/// Why a request does not fit the calendar, with the nearest starts that do; `None` when it fits
/// or the platform keeps no calendar.
async fn overbooked(portal: &Portal, deal: &TimeDeal) -> Result<Option<String>, PortalError> {
    let Some(capacity) = portal.calendar_replicas else {
        return Ok(None);
    };
    let now = portal.clock.now();
    let others = bookings::after(portal.accounts.pool(), now, now).await?;
    let mine = Booking::of(deal);
    let Err(over) = calendar::fits(&mine, &others, capacity) else {
        return Ok(None);
    };
    let earliest = now + chrono::Duration::minutes(crate::form::LEAD_TIME_MINUTES);
    let free = calendar::free_starts(deal, &others, capacity, earliest);
    Ok(Some(format!(
        "the platform is fully booked at {} ({} of {} storefront replicas taken, your deal needs {}); the nearest starts that fit: {}",
        over.at.format("%Y-%m-%d %H:%M UTC"),
        over.booked,
        over.capacity,
        mine.replicas,
        free
    )))
}

pub async fn new_request(
    State(portal): State<Arc<Portal>>,
    headers: HeaderMap,
    Query(query): Query<DayQuery>,
) -> Response {
    let (session, company) = match signed_in(&portal, &headers).await {
        Ok(found) => found,
        Err(response) => return response,
    };
    if !company.spec.approved {
        return not_approved(&session, &company);
    }
    let form = RequestForm {
        date: query.date,
        ..RequestForm::default()
    };
    form_page(
        &portal,
        StatusCode::OK,
        &form,
        &FieldErrors::new(),
        &session,
        &company,
    )
    .await
}

/// The form again with `errors` by their fields, and nothing filed.
async fn refused_form(
    portal: &Portal,
    form: &RequestForm,
    errors: &FieldErrors,
    session: &Session,
    company: &Company,
) -> Response {
    form_page(
        portal,
        StatusCode::UNPROCESSABLE_ENTITY,
        form,
        errors,
        session,
        company,
    )
    .await
}

/// Files an unapproved TimeDeal in the company's namespace.
pub async fn submit(
    State(portal): State<Arc<Portal>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    Form(form): Form<RequestForm>,
) -> Response {
    let client = portal.client_of(peer, &headers);
    let per_minute = portal.rate.submissions_per_minute;
    if !portal
        .within(
            &format!("submit-client:{client}"),
            per_minute,
            chrono::Duration::minutes(1),
        )
        .await
    {
        return too_many("Too many requests from your address; wait a minute and submit again.\n");
    }
    let (session, company) = match signed_in(&portal, &headers).await {
        Ok(found) => found,
        Err(response) => return response,
    };
    if form.csrf.is_empty() || form.csrf != session.csrf {
        return stale_form();
    }
    if !company.spec.approved {
        return not_approved(&session, &company);
    }
    if !portal
        .within(
            &format!("submit-company:{}", company.name_any()),
            per_minute,
            chrono::Duration::minutes(1),
        )
        .await
    {
        return too_many("Too many requests from your company; wait a minute and submit again.\n");
    }
    let accepted = match form.accept(&company, portal.limits, portal.clock.now()) {
        Ok(accepted) => accepted,
        Err(errors) => return refused_form(&portal, &form, &errors, &session, &company).await,
    };
    // The host must be the company's and held by none of its running deals; the operator checks
    // it again, against every company's, at approval.
    match company_deals(&portal, &company).await {
        Err(e) => return unavailable(&e),
        Ok(own) => {
            if let Some(problem) = portal.hosts.problem(&accepted.deal, &company, &own) {
                let errors = FieldErrors::from([("host", vec![problem])]);
                return refused_form(&portal, &form, &errors, &session, &company).await;
            }
        }
    }
    match overbooked(&portal, &accepted.deal).await {
        Err(e) => return unavailable(&e),
        Ok(Some(message)) => {
            let errors = FieldErrors::from([("date", vec![message])]);
            return refused_form(&portal, &form, &errors, &session, &company).await;
        }
        Ok(None) => {}
    }
    match deals(&portal, &company)
        .create(&PostParams::default(), &accepted.deal)
        .await
    {
        Ok(deal) => {
            info!(company = %company.name_any(), deal = %deal.name_any(), "deal requested");
            // Counted at once by the next request; the operator keeps it from here.
            let booking = Booking::of(&deal);
            let namespace = deal.namespace().unwrap_or_default();
            if let Err(e) = bookings::add(
                portal.accounts.pool(),
                &namespace,
                &deal.name_any(),
                &booking,
            )
            .await
            {
                tracing::warn!(error = %e, "cannot book the request in the calendar");
            }
            Redirect::to(&format!("/deals/{}?created=1", deal.name_any())).into_response()
        }
        // The namespace's quota: as many deals as the company may have.
        Err(kube::Error::Api(e)) if e.code == 403 && e.message.contains("exceeded quota") => {
            let mut errors = FieldErrors::new();
            errors.entry("").or_default().push(format!(
                "Your company has {} deals already, the most it may have at once; withdraw a pending one or wait for one to be deleted after it ends.",
                company.spec.quotas.max_deals
            ));
            refused_form(&portal, &form, &errors, &session, &company).await
        }
        Err(e) => unavailable(&kube(format!("creating a deal for {}", company.name_any()))(e)),
    }
}

#[derive(Deserialize, Default)]
#[serde(default)]
pub struct ShowQuery {
    created: Option<String>,
}

/// One of the company's own deals, or nothing.
async fn own_deal(
    portal: &Portal,
    company: &Company,
    name: &str,
) -> Result<Option<TimeDeal>, PortalError> {
    // A name no object can have (`own%23other`, `../x`) is refused before any call.
    if !company.spec.approved || !timedeal_api::is_dns_label(name) {
        return Ok(None);
    }
    match deals(portal, company).get_opt(name).await {
        Ok(found) => Ok(found),
        Err(kube::Error::Api(e)) if e.code == 403 => Ok(None),
        Err(e) => Err(kube(format!("reading deal {name}"))(e)),
    }
}

/// The signed-in company and the deal `name` of its own, or where the visitor goes instead.
async fn signed_in_deal(
    portal: &Portal,
    headers: &HeaderMap,
    name: &str,
) -> Result<(Session, Company, TimeDeal), Response> {
    let (session, company) = signed_in(portal, headers).await?;
    match own_deal(portal, &company, name).await {
        Err(e) => Err(unavailable(&e)),
        Ok(None) => Err(not_found(Some(&nav(&session, &company)))),
        Ok(Some(deal)) => Ok((session, company, deal)),
    }
}

pub async fn show(
    State(portal): State<Arc<Portal>>,
    Path(name): Path<String>,
    Query(query): Query<ShowQuery>,
    headers: HeaderMap,
) -> Response {
    let (session, company, deal) = match signed_in_deal(&portal, &headers, &name).await {
        Ok(found) => found,
        Err(response) => return response,
    };
    // The chart is a nicety: without its history the page still says everything.
    let history =
        match crate::history::of(portal.accounts.pool(), &deal.uid().unwrap_or_default()).await {
            Ok(history) => history,
            Err(e) => {
                tracing::warn!(error = %e, "cannot read a sale's history");
                Vec::new()
            }
        };
    (
        [(header::CACHE_CONTROL, "no-store")],
        Html(
            pages::deals::status(
                &deal,
                &nav(&session, &company),
                query.created.is_some(),
                &history,
            )
            .into_string(),
        ),
    )
        .into_response()
}

/// Deletes a request no admin has approved yet; an approved deal stays (its orders matter).
pub async fn withdraw(
    State(portal): State<Arc<Portal>>,
    Path(name): Path<String>,
    headers: HeaderMap,
    Form(sent): Form<Csrf>,
) -> Response {
    let (session, company) = match signed_in(&portal, &headers).await {
        Ok(found) => found,
        Err(response) => return response,
    };
    if sent.csrf != session.csrf {
        return stale_form();
    }
    let deal = match own_deal(&portal, &company, &name).await {
        Err(e) => return unavailable(&e),
        Ok(None) => return not_found(Some(&nav(&session, &company))),
        Ok(Some(deal)) => deal,
    };
    if deal.spec.approved {
        return (
            StatusCode::CONFLICT,
            Html(
                pages::message(
                    "Already approved",
                    Some(&nav(&session, &company)),
                    "This deal is approved, so it can no longer be withdrawn here; nothing was changed. Ask the platform admin to suspend or remove it.",
                    (&format!("/deals/{name}"), "Back to the deal"),
                )
                .into_string(),
            ),
        )
            .into_response();
    }
    // Only the deal that was read: approval between the read and the delete makes it fail.
    let preconditions = Preconditions {
        uid: deal.uid(),
        resource_version: deal.resource_version(),
    };
    let params = DeleteParams {
        preconditions: Some(preconditions),
        ..DeleteParams::default()
    };
    match deals(&portal, &company).delete(&name, &params).await {
        Ok(_) => {
            info!(company = %company.name_any(), deal = %name, "request withdrawn");
            if let Err(e) =
                bookings::remove(portal.accounts.pool(), &deal.uid().unwrap_or_default()).await
            {
                tracing::warn!(error = %e, "cannot free the withdrawn request's booking");
            }
            Redirect::to(&format!("/deals?withdrawn={name}")).into_response()
        }
        Err(kube::Error::Api(e)) if e.code == 409 => {
            Redirect::to(&format!("/deals/{name}")).into_response()
        }
        Err(e) => unavailable(&kube(format!("withdrawing deal {name}"))(e)),
    }
}

/// The deal's orders as JSON, streamed, for the company's own systems (signed in like the
/// pages); only the company's own deals.
pub async fn orders_json(
    State(portal): State<Arc<Portal>>,
    Path(name): Path<String>,
    headers: HeaderMap,
) -> Response {
    export(&portal, &name, &headers, crate::export::Format::Json).await
}

/// The deal's orders as CSV, streamed; only the company's own deals.
pub async fn orders(
    State(portal): State<Arc<Portal>>,
    Path(name): Path<String>,
    headers: HeaderMap,
) -> Response {
    export(&portal, &name, &headers, crate::export::Format::Csv).await
}

async fn export(
    portal: &Portal,
    name: &str,
    headers: &HeaderMap,
    format: crate::export::Format,
) -> Response {
    let (_, company, deal) = match signed_in_deal(portal, headers, name).await {
        Ok(found) => found,
        Err(response) => return response,
    };
    // The fetched deal decides everything from here, never the URL.
    let name = deal.name_any();
    let Some(schema) = timedeal_api::storage::schema_of(&deal) else {
        return not_found(None);
    };
    let uid = deal.uid().unwrap_or_default();
    let accounts = &portal.accounts;
    let Some(permit) = deal_connection(portal).await else {
        return busy();
    };
    let body = match crate::export::orders(
        accounts.pool(),
        accounts.url(),
        &schema,
        &uid,
        format,
        permit,
    )
    .await
    {
        Ok(body) => body,
        Err(e) => {
            tracing::warn!(company = %company.name_any(), deal = %name, error = %e, "cannot export a deal's orders");
            return (
                StatusCode::SERVICE_UNAVAILABLE,
                [
                    (header::CACHE_CONTROL, "no-store"),
                    (header::RETRY_AFTER, "30"),
                ],
                "The deal's orders cannot be read just now; try again in a minute.\n",
            )
                .into_response();
        }
    };
    info!(company = %company.name_any(), deal = %name, ?format, "orders exported");
    let content_type = match format {
        crate::export::Format::Csv => "text/csv; charset=utf-8",
        crate::export::Format::Json => "application/json",
    };
    let mut response = (
        [
            (header::CONTENT_TYPE, content_type),
            (header::CACHE_CONTROL, "no-store"),
        ],
        body,
    )
        .into_response();
    if format == crate::export::Format::Csv {
        if let Ok(value) = format!("attachment; filename=\"{name}-orders.csv\"").parse() {
            response
                .headers_mut()
                .insert(header::CONTENT_DISPOSITION, value);
        }
    }
    response
}

/// A turn to open a connection as a deal, waited for a little: every turn taken means every
/// such connection is busy.
async fn deal_connection(portal: &Portal) -> Option<tokio::sync::OwnedSemaphorePermit> {
    tokio::time::timeout(
        std::time::Duration::from_secs(5),
        portal.deal_connections.clone().acquire_owned(),
    )
    .await
    .ok()?
    .ok()
}

fn busy() -> Response {
    (
        StatusCode::SERVICE_UNAVAILABLE,
        [
            (header::CACHE_CONTROL, "no-store"),
            (header::RETRY_AFTER, "10"),
        ],
        "Every connection to the orders is busy with other downloads; try again in a few seconds.\n",
    )
        .into_response()
}

#[derive(Deserialize)]
pub struct RedeemForm {
    csrf: String,
    code: String,
}

/// Redeems one of a coupon deal's codes, once. Answers JSON when asked for
/// (`Accept: application/json`), a page otherwise.
pub async fn redeem(
    State(portal): State<Arc<Portal>>,
    Path(name): Path<String>,
    headers: HeaderMap,
    Form(sent): Form<RedeemForm>,
) -> Response {
    let (session, company, deal) = match signed_in_deal(&portal, &headers, &name).await {
        Ok(found) => found,
        Err(response) => return response,
    };
    if sent.csrf != session.csrf {
        return stale_form();
    }
    let wants_json = headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|accept| accept.contains("application/json"));
    // The fetched deal decides everything from here, never the URL.
    let name = deal.name_any();
    let Some(schema) = timedeal_api::storage::schema_of(&deal) else {
        return not_found(Some(&nav(&session, &company)));
    };
    let uid = deal.uid().unwrap_or_default();
    let accounts = &portal.accounts;
    let Some(permit) = deal_connection(&portal).await else {
        return busy();
    };
    let outcome =
        crate::coupons::redeem(accounts.pool(), accounts.url(), &schema, &uid, &sent.code).await;
    drop(permit);
    let back = (format!("/deals/{name}"), "Back to the deal");
    match outcome {
        Ok(redeemed) => {
            // The code is the company's to log; the shopper behind it is not named.
            info!(company = %company.name_any(), deal = %name, order = redeemed.order_id, "coupon redeemed");
            if wants_json {
                return Json(redeemed).into_response();
            }
            Html(
                pages::message(
                    "Coupon redeemed",
                    Some(&nav(&session, &company)),
                    &format!(
                        "{} is redeemed: order {}, {} unit(s). It cannot be redeemed again.",
                        redeemed.code, redeemed.order_id, redeemed.quantity
                    ),
                    (&back.0, back.1),
                )
                .into_string(),
            )
            .into_response()
        }
        Err(refusal) => {
            let status =
                StatusCode::from_u16(refusal.status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
            if let crate::coupons::Refusal::Database(e) = &refusal {
                tracing::warn!(error = %e, "cannot redeem a coupon");
            }
            if wants_json {
                return (
                    status,
                    Json(serde_json::json!({
                        "error": {"code": refusal.code(), "message": refusal.to_string()}
                    })),
                )
                    .into_response();
            }
            (
                status,
                Html(
                    pages::message(
                        "Not redeemed",
                        Some(&nav(&session, &company)),
                        &refusal.to_string(),
                        (&back.0, back.1),
                    )
                    .into_string(),
                ),
            )
                .into_response()
        }
    }
}

#[derive(Deserialize)]
pub struct SuggestQuery {
    peak_shoppers: i64,
}

pub async fn suggest(
    State(portal): State<Arc<Portal>>,
    Query(query): Query<SuggestQuery>,
) -> Json<capacity::Suggestion> {
    Json(capacity::suggest(query.peak_shoppers, portal.limits))
}
