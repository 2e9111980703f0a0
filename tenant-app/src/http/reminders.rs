//! Email reminders over HTTP: leaving an address, and the unsubscribe link every mail carries
//! (a page with one button, and the one-click POST of RFC 8058 that mail programs send).

use axum::{
    extract::{Query, State},
    http::StatusCode,
    response::{Html, IntoResponse, Response},
    Json,
};
use maud::{html, Markup, DOCTYPE};
use serde::Deserialize;

use super::{api::ApiJson, error::ApiError};
use crate::{
    app::SharedApp,
    reminders::{self, SignUp, SignedUp},
};

/// Leaves an address to be mailed 12 hours and 1 hour before the start. Leaving it again
/// changes nothing; each mail carries a link that removes it, and the deal's retention deletes
/// every address.
#[utoipa::path(post, path = "/api/reminders", tag = "reminders", request_body = SignUp,
    responses((status = 202, body = SignedUp),
        (status = 400, body = super::error::ErrorBody, description = "invalid_email"),
        (status = 404, body = super::error::ErrorBody,
            description = "email_reminders_off: this storefront sends no mail"),
        (status = 409, body = super::error::ErrorBody,
            description = "too_late: no reminder is left before the start")))]
pub async fn sign_up(
    State(app): State<SharedApp>,
    ApiJson(request): ApiJson<SignUp>,
) -> Result<Response, ApiError> {
    if app.mailer.is_none() {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "email_reminders_off",
            "this storefront sends no mail; add the deal to your calendar with /reminder.ics",
        ));
    }
    let email = reminders::check_email(&request.email).map_err(|problem| {
        ApiError::bad_request("invalid_email", problem.clone())
            .with_fields([("email".to_owned(), problem)].into())
    })?;
    let now = app.clock.now();
    let reminders_at = reminders::ahead_of(app.deal().timeline.start, now);
    if reminders_at.is_empty() {
        return Err(ApiError::conflict(
            "too_late",
            "the deal starts within the hour (or has started): no reminder would come in time",
        ));
    }
    reminders::sign_up(&app.db, &email, now).await?;
    Ok((StatusCode::ACCEPTED, Json(SignedUp { reminders_at })).into_response())
}

#[derive(Deserialize)]
pub struct TokenQuery {
    #[serde(default)]
    token: String,
}

/// The page the mail's link opens: it names the deal and removes the address with one button,
/// so a link scanner that fetches the link removes nothing.
pub async fn unsubscribe_page(
    State(app): State<SharedApp>,
    Query(query): Query<TokenQuery>,
) -> Result<Response, ApiError> {
    let product = app.deal().spec.product.name.clone();
    let known = reminders::plausible_token(&query.token)
        && reminders::known_token(&app.db, &query.token).await?;
    let body = if known {
        html! {
            p { "Stop the reminders for " strong { (product) } "?" }
            form method="post" action={"/reminders/unsubscribe?token=" (query.token)} {
                button #unsubscribe type="submit" { "Unsubscribe" }
            }
        }
    } else {
        gone(&product)
    };
    Ok(Html(layout("Reminders", body).into_string()).into_response())
}

/// Removes the address: from the page's button, or from a mail program's one-click request.
pub async fn unsubscribe(
    State(app): State<SharedApp>,
    Query(query): Query<TokenQuery>,
) -> Result<Response, ApiError> {
    if !reminders::plausible_token(&query.token) {
        return Err(ApiError::bad_request(
            "invalid_token",
            "the link is not whole: open the unsubscribe link from the mail as it is",
        ));
    }
    reminders::unsubscribe(&app.db, &query.token).await?;
    let product = app.deal().spec.product.name.clone();
    Ok(Html(layout("Reminders", gone(&product)).into_string()).into_response())
}

fn gone(product: &str) -> Markup {
    html! {
        p #unsubscribed { "No more reminders for " strong { (product) } " will be sent to this address. It is deleted." }
    }
}

fn layout(title: &str, body: Markup) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            (super::pages::head(title))
            body { main.notice-page { (body) p { a href="/" { "Back to the deal" } } } }
        }
    }
}
