//! Email reminders over HTTP: leaving an address, the confirmation link its first mail carries,
//! and the unsubscribe link every mail carries (each a page with one button, so a link scanner
//! that fetches them changes nothing; unsubscribing also takes the one-click POST of RFC 8058
//! that mail programs send).

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

/// Leaves an address to be mailed 12 hours and 1 hour before the start. The address first gets
/// one mail asking to confirm, and is reminded only once its owner does; unconfirmed, it is
/// deleted after a day. Leaving it again changes nothing; each mail carries a link that removes
/// it, and the deal's retention deletes every address.
#[utoipa::path(post, path = "/api/reminders", tag = "reminders", request_body = SignUp,
    responses((status = 202, body = SignedUp),
        (status = 400, body = super::error::ErrorBody, description = "invalid_email"),
        (status = 404, body = super::error::ErrorBody,
            description = "email_reminders_off: this storefront sends no mail"),
        (status = 409, body = super::error::ErrorBody,
            description = "too_late: no reminder is left before the start; reminders_full: the \
                deal keeps as many addresses as it may")))]
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
    match reminders::sign_up(&app.db, &email, now, app.reminder_limit).await? {
        reminders::Kept::Yes => Ok((
            StatusCode::ACCEPTED,
            Json(SignedUp {
                reminders_at,
                confirmation_needed: true,
                confirm_by: now + reminders::CONFIRMATION_WINDOW,
            }),
        )
            .into_response()),
        reminders::Kept::Full => Err(ApiError::conflict(
            "reminders_full",
            "this deal takes no more email reminders; add it to your calendar with /reminder.ics",
        )),
    }
}

#[derive(Deserialize)]
pub struct TokenQuery {
    #[serde(default)]
    token: String,
}

/// The page the confirmation mail's link opens: it names the deal and confirms the address with
/// one button, so a link scanner that fetches the link confirms nothing.
pub async fn confirm_page(
    State(app): State<SharedApp>,
    Query(query): Query<TokenQuery>,
) -> Result<Response, ApiError> {
    let product = app.deal().spec.product.name.clone();
    ask(&app, &query.token, unknown(), |token| {
        html! {
            p { "Get email reminders for " strong { (product) } " 12 hours and 1 hour before it starts?" }
            form method="post" action={"/reminders/confirm?token=" (token)} {
                button #confirm type="submit" { "Yes, remind me" }
            }
        }
    })
    .await
}

/// Confirms the address, from the page's button.
pub async fn confirm(
    State(app): State<SharedApp>,
    Query(query): Query<TokenQuery>,
) -> Result<Response, ApiError> {
    whole(&query.token, "confirmation")?;
    let body = if reminders::confirm(&app.db, &query.token, app.clock.now()).await? {
        let product = app.deal().spec.product.name.clone();
        html! {
            p #confirmed { "Confirmed: this address will be reminded of " strong { (product) } ". Each mail has a link to stop them." }
        }
    } else {
        unknown()
    };
    Ok(page(body))
}

fn unknown() -> Markup {
    html! {
        p #unknown { "This link no longer works: the address was deleted (unconfirmed after a day, unsubscribed, or the deal is over). Leave it again on the deal's page." }
    }
}

/// The page the mail's link opens: it names the deal and removes the address with one button,
/// so a link scanner that fetches the link removes nothing.
pub async fn unsubscribe_page(
    State(app): State<SharedApp>,
    Query(query): Query<TokenQuery>,
) -> Result<Response, ApiError> {
    let product = app.deal().spec.product.name.clone();
    ask(&app, &query.token, gone(&product), |token| {
        html! {
            p { "Stop the reminders for " strong { (product) } "?" }
            form method="post" action={"/reminders/unsubscribe?token=" (token)} {
                button #unsubscribe type="submit" { "Unsubscribe" }
            }
        }
    })
    .await
}

/// Removes the address: from the page's button, or from a mail program's one-click request.
pub async fn unsubscribe(
    State(app): State<SharedApp>,
    Query(query): Query<TokenQuery>,
) -> Result<Response, ApiError> {
    whole(&query.token, "unsubscribe")?;
    reminders::unsubscribe(&app.db, &query.token).await?;
    let product = app.deal().spec.product.name.clone();
    Ok(page(gone(&product)))
}

/// A page that asks before its button acts: `question` for a token that names an address,
/// `otherwise` for one that does not (or never could).
async fn ask(
    app: &SharedApp,
    token: &str,
    otherwise: Markup,
    question: impl FnOnce(&str) -> Markup,
) -> Result<Response, ApiError> {
    let known = reminders::plausible_token(token) && reminders::known_token(&app.db, token).await?;
    Ok(page(if known { question(token) } else { otherwise }))
}

/// Refuses a token no link could carry, naming the link to open again.
fn whole(token: &str, link: &str) -> Result<(), ApiError> {
    if reminders::plausible_token(token) {
        Ok(())
    } else {
        Err(ApiError::bad_request(
            "invalid_token",
            format!("the link is not whole: open the {link} link from the mail as it is"),
        ))
    }
}

fn page(body: Markup) -> Response {
    Html(layout("Reminders", body).into_string()).into_response()
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
