//! The directory over HTTP: the page, the JSON listing and its OpenAPI document, and each deal's
//! calendar entry. Answers carry a strong ETag (a hash of the body) and may be cached for a few
//! seconds; a request that names the current ETag gets `304` and no body.

use axum::{
    extract::{Path, Query, RawQuery, State},
    http::{header, HeaderMap, HeaderValue, StatusCode},
    response::{IntoResponse, Response},
    routing::get,
    Json, Router,
};
use serde::Serialize;
use sha2::{Digest, Sha256};
use utoipa::OpenApi;

use crate::{
    answers::Answer,
    listing::{self, Entry, Params},
    page, Shared,
};

/// How long a browser or a proxy may reuse an answer without asking: short, as a countdown's
/// state changes at the start, and the ETag makes asking again cheap.
pub const CACHE_CONTROL: &str = "public, max-age=5, stale-while-revalidate=30";

pub fn router(directory: Shared) -> Router {
    Router::new()
        .route("/", get(home))
        .route("/api/deals", get(deals))
        .route("/deals/{namespace}/{name}/reminder.ics", get(reminder))
        .route("/openapi.json", get(openapi))
        .route("/static/directory.js", get(script))
        .route("/healthz", get(|| async { "ok\n" }))
        // The deals were read before the listener opened.
        .route("/readyz", get(|| async { "ok\n" }))
        .layer(axum::middleware::from_fn_with_state(
            false,
            timedeal_api::web::security_headers,
        ))
        .with_state(directory)
}

/// The ETag of a body: its SHA-256, shortened.
pub fn etag(body: &[u8]) -> String {
    let digest = Sha256::digest(body);
    let hex: String = digest[..12].iter().map(|b| format!("{b:02x}")).collect();
    format!("\"{hex}\"")
}

/// Whether `If-None-Match` names `tag` (or is `*`), weak comparison as RFC 9110 asks for GET.
fn matches(headers: &HeaderMap, tag: &str) -> bool {
    let Some(value) = headers
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
    else {
        return false;
    };
    value
        .split(',')
        .map(|t| t.trim().trim_start_matches("W/"))
        .any(|t| t == "*" || t == tag)
}

/// A cacheable answer: `304` when the client holds it already.
fn cached(headers: &HeaderMap, answer: Answer) -> Response {
    let mut response = if matches(headers, &answer.etag) {
        StatusCode::NOT_MODIFIED.into_response()
    } else {
        ([(header::CONTENT_TYPE, answer.content_type)], answer.body).into_response()
    };
    let headers = response.headers_mut();
    headers.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static(CACHE_CONTROL),
    );
    if let Ok(value) = HeaderValue::from_str(&answer.etag) {
        headers.insert(header::ETAG, value);
    }
    response
}

/// The answer for `key` (the path and query), from the last second's answers or rendered now
/// by `render` from the listing `params` ask for; a refused filter is never kept.
fn shared_answer(
    directory: &Shared,
    key: String,
    params: &Params,
    render: impl FnOnce(&Listing) -> Answer,
) -> Result<Answer, listing::BadParam> {
    let deals = directory.deals.borrow().clone();
    let now = directory.clock.now();
    if let Some(answer) = directory.answers.get(&key, &deals, now) {
        return Ok(answer);
    }
    let answer = render(&listing(directory, &deals, now, params)?);
    let next = listing::next_change(&deals, now, directory.ended_for);
    directory.answers.put(key, answer.clone(), deals, now, next);
    Ok(answer)
}

/// A refusal, as JSON.
#[derive(Serialize, utoipa::ToSchema)]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct ErrorDetail {
    /// `invalid_parameter` or `not_found`.
    pub code: String,
    pub message: String,
}

fn refuse(status: StatusCode, code: &str, message: String) -> Response {
    (
        status,
        Json(ErrorBody {
            error: ErrorDetail {
                code: code.into(),
                message,
            },
        }),
    )
        .into_response()
}

/// The listing.
#[derive(Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Listing {
    pub deals: Vec<Entry>,
    /// Every category with a listed deal, for a filter menu.
    pub categories: Vec<String>,
}

fn listing(
    directory: &Shared,
    deals: &[timedeal_api::TimeDeal],
    now: chrono::DateTime<chrono::Utc>,
    params: &Params,
) -> Result<Listing, listing::BadParam> {
    let filter = params.filter()?;
    Ok(Listing {
        deals: listing::list(deals, &filter, now, directory.ended_for),
        categories: listing::categories(deals, now, directory.ended_for),
    })
}

/// Live, upcoming and recently ended deals, filtered.
#[utoipa::path(get, path = "/api/deals", tag = "directory", params(Params),
    responses(
        (status = 200, body = Listing, description = "with an ETag; cacheable for a few seconds"),
        (status = 304, description = "the ETag in If-None-Match is current"),
        (status = 400, body = ErrorBody, description = "invalid_parameter"),
    ))]
pub async fn deals(
    State(directory): State<Shared>,
    RawQuery(query): RawQuery,
    Query(params): Query<Params>,
    headers: HeaderMap,
) -> Response {
    let key = format!("/api/deals?{}", query.unwrap_or_default());
    let answer = shared_answer(&directory, key, &params, |listing| {
        Answer::new(
            "application/json",
            serde_json::to_vec(listing).expect("a listing serialises"),
        )
    });
    match answer {
        Ok(answer) => cached(&headers, answer),
        Err(bad) => refuse(
            StatusCode::BAD_REQUEST,
            "invalid_parameter",
            bad.to_string(),
        ),
    }
}

async fn home(
    State(directory): State<Shared>,
    RawQuery(query): RawQuery,
    Query(params): Query<Params>,
    headers: HeaderMap,
) -> Response {
    let key = format!("/?{}", query.unwrap_or_default());
    let answer = shared_answer(&directory, key, &params, |listing| {
        Answer::new(
            "text/html; charset=utf-8",
            page::directory(listing, &params, None)
                .into_string()
                .into_bytes(),
        )
    });
    match answer {
        Ok(answer) => cached(&headers, answer),
        Err(bad) => {
            let empty = Listing {
                deals: Vec::new(),
                categories: Vec::new(),
            };
            (
                StatusCode::BAD_REQUEST,
                axum::response::Html(
                    page::directory(&empty, &Params::default(), Some(&bad.to_string()))
                        .into_string(),
                ),
            )
                .into_response()
        }
    }
}

/// A calendar entry for the deal, with reminders 12 hours and 1 hour before its start.
#[utoipa::path(get, path = "/deals/{namespace}/{name}/reminder.ics", tag = "directory",
    params(("namespace" = String, Path), ("name" = String, Path)),
    responses(
        (status = 200, content_type = "text/calendar", description = "an iCalendar (RFC 5545) entry"),
        (status = 404, body = ErrorBody, description = "no such deal is listed"),
    ))]
pub async fn reminder(
    State(directory): State<Shared>,
    Path((namespace, name)): Path<(String, String)>,
    headers: HeaderMap,
) -> Response {
    let id = format!("{namespace}/{name}");
    let deals = directory.deals.borrow().clone();
    let now = directory.clock.now();
    let Some(entry) = deals
        .iter()
        .filter_map(|deal| listing::entry(deal, now, directory.ended_for))
        .find(|entry| entry.id == id)
    else {
        return refuse(
            StatusCode::NOT_FOUND,
            "not_found",
            format!("no deal {id} is listed"),
        );
    };
    let price = timedeal_api::money::format(entry.deal_price, &entry.currency);
    let ics = timedeal_api::ics::calendar(&timedeal_api::ics::Reminder {
        uid: &format!("{id}@timedeal"),
        summary: &format!("{} by {}", entry.product, entry.company),
        description: &format!(
            "{price} ({}% off), {} in stock. Join the queue at {}",
            entry.discount_percent, entry.stock, entry.storefront_url
        ),
        url: &entry.storefront_url,
        start: entry.starts_at,
        end: entry.ends_at,
        // The deal's start, not the download's time, so the entry (and its ETag) stays the same.
        now: entry.starts_at,
    });
    let mut response = cached(
        &headers,
        Answer::new("text/calendar; charset=utf-8", ics.into_bytes()),
    );
    if let Ok(value) = format!("attachment; filename=\"{name}.ics\"").parse() {
        response
            .headers_mut()
            .insert(header::CONTENT_DISPOSITION, value);
    }
    response
}

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Timedeal deal directory",
        description = "Live, upcoming and recently ended time deals across companies. Every \
            answer carries an ETag and may be cached for a few seconds; send it back in \
            If-None-Match to get 304 while nothing changed."
    ),
    paths(deals, reminder),
    tags((name = "directory", description = "Finding deals and being reminded of them"))
)]
pub struct ApiDoc;

async fn openapi() -> Json<utoipa::openapi::OpenApi> {
    Json(ApiDoc::openapi())
}

async fn script() -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/javascript; charset=utf-8"),
            (header::CACHE_CONTROL, "public, max-age=300"),
        ],
        include_str!("../static/directory.js"),
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn if_none_match_takes_lists_weak_tags_and_star() {
        let tag = etag(b"body");
        let with = |value: &str| {
            let mut headers = HeaderMap::new();
            headers.insert(header::IF_NONE_MATCH, value.parse().unwrap());
            headers
        };
        assert!(matches(&with(&tag), &tag));
        assert!(matches(&with(&format!("\"other\", W/{tag}")), &tag));
        assert!(matches(&with("*"), &tag));
        assert!(!matches(&with("\"other\""), &tag));
        assert!(!matches(&HeaderMap::new(), &tag));
        assert_ne!(etag(b"body"), etag(b"body2"));
    }
}
