//! Sign-up, sign-in, sign-out, password change, and the one-time reset link an admin makes by
//! annotating the company (`kubectl timedeal reset-password COMPANY`).

use std::{net::SocketAddr, sync::Arc};

use axum::{
    extract::{ConnectInfo, Path, Query, State},
    http::{header, HeaderMap, StatusCode},
    response::{Html, IntoResponse, Redirect, Response},
    Form,
};
use chrono::{DateTime, Utc};
use kube::{api::PostParams, Api, ResourceExt};
use serde::Deserialize;
use timedeal_api::{Company, CompanySpec};
use tracing::info;

use crate::{
    accounts::{password_problem, SignInRefused, SignUpRefused},
    form, new_token, not_found, pages, stale_form, too_many, unavailable, Csrf, Portal,
    CSRF_COOKIE, SESSION_COOKIE,
};

use timedeal_api::company::{RESET_ANNOTATION, RESET_AT_ANNOTATION};
/// How long a reset link works.
pub const RESET_TTL: chrono::Duration = chrono::Duration::hours(24);

type Errors = form::FieldErrors;

fn refuse(errors: &mut Errors, field: &'static str, message: impl Into<String>) {
    errors.entry(field).or_default().push(message.into());
}

/// A page with a fresh form token, in a cookie and in the form (double submit: another site can
/// make a browser post, but can neither read the cookie nor send it cross-site).
fn with_form_token(
    portal: &Portal,
    status: StatusCode,
    page: impl FnOnce(&str) -> maud::Markup,
) -> Response {
    let token = new_token();
    (
        status,
        [
            (
                header::SET_COOKIE,
                portal.set_cookie(CSRF_COOKIE, &token, None),
            ),
            (header::CACHE_CONTROL, "no-store".into()),
        ],
        Html(page(&token).into_string()),
    )
        .into_response()
}

fn form_token_matches(portal: &Portal, headers: &HeaderMap, sent: &str) -> bool {
    !sent.is_empty() && portal.cookie(headers, CSRF_COOKIE).as_deref() == Some(sent)
}

#[derive(Deserialize, Default)]
#[serde(default)]
pub struct SignUp {
    csrf: String,
    display_name: String,
    email: String,
    password: String,
    confirm: String,
}

pub async fn sign_up_form(State(portal): State<Arc<Portal>>) -> Response {
    with_form_token(&portal, StatusCode::OK, |token| {
        pages::account::sign_up("", "", &Errors::new(), token)
    })
}

fn looks_like_email(email: &str) -> bool {
    let email = email.trim();
    email.len() <= 254
        && email.split_once('@').is_some_and(|(user, host)| {
            !user.is_empty() && host.contains('.') && !host.ends_with('.')
        })
        && !email.chars().any(char::is_whitespace)
}

/// Creates the account and an unapproved Company whose namespace is `td-<name>`. Nothing is kept
/// when either cannot be made.
pub async fn sign_up(
    State(portal): State<Arc<Portal>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    Form(sent): Form<SignUp>,
) -> Response {
    let client = portal.client_of(peer, &headers);
    if !portal
        .within(
            &format!("signup-client:{client}"),
            portal.rate.sign_ups_per_hour,
            chrono::Duration::hours(1),
        )
        .await
    {
        return too_many("Too many sign-ups from your address; try again in an hour.\n");
    }
    if !form_token_matches(&portal, &headers, &sent.csrf) {
        return stale_form();
    }
    let mut errors = Errors::new();
    let display_name = sent.display_name.trim();
    if display_name.is_empty() || display_name.chars().count() > 100 {
        refuse(
            &mut errors,
            "display_name",
            "enter your company's name (at most 100 characters)",
        );
    } else if display_name.chars().any(char::is_control) {
        refuse(
            &mut errors,
            "display_name",
            "enter your company's name without control characters (escape sequences, tabs, line breaks)",
        );
    }
    if !looks_like_email(&sent.email) {
        refuse(
            &mut errors,
            "email",
            "enter an email address such as sales@example.com",
        );
    }
    if let Some(problem) = password_problem(&sent.password, &sent.email) {
        refuse(&mut errors, "password", problem);
    } else if sent.password != sent.confirm {
        refuse(&mut errors, "confirm", "the two passwords differ");
    }
    let refused = |errors: &Errors| {
        with_form_token(&portal, StatusCode::UNPROCESSABLE_ENTITY, |token| {
            pages::account::sign_up(display_name, &sent.email, errors, token)
        })
    };
    if !errors.is_empty() {
        return refused(&errors);
    }
    let name = form::company_name(display_name);
    let email = sent.email.trim().to_lowercase();
    // A taken company name is said before any email is looked at, so that answer never depends
    // on whether the email has an account.
    match portal.company(&name).await {
        Err(e) => return unavailable(&e),
        Ok(Some(_)) => {
            refuse(&mut errors, "display_name", "a company of this name has signed up already; add something that sets yours apart (a city, a brand)");
            return refused(&errors);
        }
        Ok(None) => {}
    }
    match portal.accounts.create(&email, &name, &sent.password).await {
        Err(e) => return unavailable(&e),
        // Answered as a sign-up that worked, so the form tells no one which emails have
        // accounts; nothing is changed, and the owner signs in as before.
        Ok(Err(SignUpRefused::EmailTaken)) => {
            info!("a sign-up for an email that has an account was answered as any other");
            return Redirect::to("/signin?signed_up=1").into_response();
        }
        Ok(Err(SignUpRefused::CompanyTaken)) => {
            refuse(&mut errors, "display_name", "a company of this name has signed up already; add something that sets yours apart (a city, a brand)");
            return refused(&errors);
        }
        Ok(Ok(())) => {}
    }
    let company = Company::new(
        &name,
        CompanySpec {
            display_name: display_name.to_owned(),
            contact_email: email.clone(),
            namespace: form::namespace_for(&name),
            approved: false,
            quotas: Default::default(),
            hosts: Vec::new(),
        },
    );
    let created = Api::<Company>::all(portal.client.clone())
        .create(&PostParams::default(), &company)
        .await;
    if let Err(e) = created {
        // The account goes too, so the same sign-up can be made again.
        let _ = portal.accounts.forget(&email).await;
        if let kube::Error::Api(status) = &e {
            if status.code == 409 {
                refuse(&mut errors, "display_name", "a company of this name has signed up already; add something that sets yours apart (a city, a brand)");
                return refused(&errors);
            }
        }
        return unavailable(&crate::error::kube(format!("creating Company {name}"))(e));
    }
    info!(company = %name, "a company signed up");
    Redirect::to("/signin?signed_up=1").into_response()
}

#[derive(Deserialize, Default)]
#[serde(default)]
pub struct SignIn {
    csrf: String,
    email: String,
    password: String,
}

#[derive(Deserialize, Default)]
#[serde(default)]
pub struct SignInQuery {
    signed_up: Option<String>,
    reset: Option<String>,
}

pub async fn sign_in_form(
    State(portal): State<Arc<Portal>>,
    Query(query): Query<SignInQuery>,
) -> Response {
    let note = if query.signed_up.is_some() {
        Some("Signed up. A platform admin approves your company; meanwhile you can sign in and look around.")
    } else if query.reset.is_some() {
        Some("Password set. Sign in with it.")
    } else {
        None
    };
    with_form_token(&portal, StatusCode::OK, |token| {
        pages::account::sign_in("", &Errors::new(), token, note)
    })
}

/// Who a failed sign-in is counted against: the client's address, or for IPv6 its /64 (one
/// subscriber's whole network, which it can otherwise walk to make new addresses).
fn holder(client: std::net::IpAddr) -> String {
    match client {
        std::net::IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => v4.to_string(),
            None => {
                let s = v6.segments();
                format!("{:x}:{:x}:{:x}:{:x}::/64", s[0], s[1], s[2], s[3])
            }
        },
        v4 => v4.to_string(),
    }
}

/// Why a sign-in waits; the same whether or not the email has an account.
fn held_message(refused: &SignInRefused) -> String {
    match refused {
        SignInRefused::Wrong => "The email or the password is wrong.".to_owned(),
        SignInRefused::Locked { until } => format!(
            "Too many failed sign-ins from your address for this email ({} in {} minutes); try again after {}, or ask the platform admin for a reset link.",
            crate::accounts::LOCK_AFTER,
            crate::accounts::LOCK_FOR.num_minutes(),
            until.format("%H:%M UTC")
        ),
        SignInRefused::LockedEverywhere { until } => format!(
            "Too many failed sign-ins for this email from many addresses; try again after {}, or ask the platform admin for a reset link.",
            until.format("%H:%M UTC")
        ),
    }
}

pub async fn sign_in(
    State(portal): State<Arc<Portal>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    Form(sent): Form<SignIn>,
) -> Response {
    let client = portal.client_of(peer, &headers);
    if !portal
        .within(
            &format!("signin-client:{client}"),
            portal.rate.sign_ins_per_minute,
            chrono::Duration::minutes(1),
        )
        .await
    {
        return too_many("Too many sign-in attempts from your address; wait a minute.\n");
    }
    if !form_token_matches(&portal, &headers, &sent.csrf) {
        return stale_form();
    }
    let email = sent.email.trim().to_lowercase();
    let now = portal.clock.now();
    let mut errors = Errors::new();
    match portal
        .accounts
        .sign_in(&email, &sent.password, &holder(client), now)
        .await
    {
        Err(e) => unavailable(&e),
        Ok(Err(refused)) => {
            refuse(&mut errors, "", held_message(&refused));
            with_form_token(&portal, StatusCode::UNAUTHORIZED, |token| {
                pages::account::sign_in(&sent.email, &errors, token, None)
            })
        }
        Ok(Ok(account)) => match portal.accounts.start_session(&account, now).await {
            Err(e) => unavailable(&e),
            Ok((token, _)) => (
                [(
                    header::SET_COOKIE,
                    portal.set_cookie(
                        SESSION_COOKIE,
                        &portal.session_cookie(&token),
                        Some(crate::accounts::SESSION_TTL.num_seconds()),
                    ),
                )],
                Redirect::to("/deals"),
            )
                .into_response(),
        },
    }
}

pub async fn sign_out(
    State(portal): State<Arc<Portal>>,
    headers: HeaderMap,
    Form(sent): Form<Csrf>,
) -> Response {
    match portal.session(&headers).await {
        Ok(Some(session)) if session.csrf == sent.csrf => {}
        Ok(Some(_)) => return stale_form(),
        Ok(None) => return Redirect::to("/signin").into_response(),
        Err(e) => return unavailable(&e),
    }
    if let Some(token) = portal.session_token(&headers) {
        if let Err(e) = portal.accounts.end_session(&token).await {
            return unavailable(&e);
        }
    }
    (
        [(
            header::SET_COOKIE,
            portal.set_cookie(SESSION_COOKIE, "", Some(0)),
        )],
        Redirect::to("/signin"),
    )
        .into_response()
}

#[derive(Deserialize, Default)]
#[serde(default)]
pub struct ChangePassword {
    csrf: String,
    current: String,
    password: String,
    confirm: String,
}

pub async fn password_form(State(portal): State<Arc<Portal>>, headers: HeaderMap) -> Response {
    let session = match portal.session(&headers).await {
        Ok(Some(session)) => session,
        Ok(None) => return Redirect::to("/signin").into_response(),
        Err(e) => return unavailable(&e),
    };
    let display = display_name(&portal, &session.account.company).await;
    let nav = pages::Nav {
        company: &display,
        csrf: &session.csrf,
    };
    Html(pages::account::change_password(&nav, &Errors::new(), false).into_string()).into_response()
}

/// The company's display name for the navigation, or its name when it cannot be read.
pub async fn display_name(portal: &Portal, company: &str) -> String {
    match portal.company(company).await {
        Ok(Some(c)) => c.spec.display_name,
        _ => company.to_owned(),
    }
}

pub async fn change_password(
    State(portal): State<Arc<Portal>>,
    headers: HeaderMap,
    Form(sent): Form<ChangePassword>,
) -> Response {
    let session = match portal.session(&headers).await {
        Ok(Some(session)) => session,
        Ok(None) => return Redirect::to("/signin").into_response(),
        Err(e) => return unavailable(&e),
    };
    if session.csrf != sent.csrf {
        return stale_form();
    }
    let display = display_name(&portal, &session.account.company).await;
    let nav = pages::Nav {
        company: &display,
        csrf: &session.csrf,
    };
    let email = &session.account.email;
    let mut errors = Errors::new();
    match portal
        .accounts
        // Counted apart from sign-ins: a signed-in session checking its own password.
        .sign_in(email, &sent.current, "signed-in", portal.clock.now())
        .await
    {
        Err(e) => return unavailable(&e),
        Ok(Err(SignInRefused::Wrong)) => {
            refuse(&mut errors, "current", "this is not your current password")
        }
        Ok(Err(held)) => refuse(&mut errors, "", held_message(&held)),
        Ok(Ok(_)) => {}
    }
    if let Some(problem) = password_problem(&sent.password, email) {
        refuse(&mut errors, "password", problem);
    } else if sent.password != sent.confirm {
        refuse(&mut errors, "confirm", "the two passwords differ");
    }
    if !errors.is_empty() {
        return (
            StatusCode::UNPROCESSABLE_ENTITY,
            Html(pages::account::change_password(&nav, &errors, false).into_string()),
        )
            .into_response();
    }
    if let Err(e) = portal.accounts.set_password(email, &sent.password).await {
        return unavailable(&e);
    }
    // Every session ended with the change; this one goes on under a new token.
    let account = session.account.clone();
    match portal
        .accounts
        .start_session(&account, portal.clock.now())
        .await
    {
        Err(e) => unavailable(&e),
        Ok((token, csrf)) => {
            let nav = pages::Nav {
                company: &display,
                csrf: &csrf,
            };
            (
                [(
                    header::SET_COOKIE,
                    portal.set_cookie(
                        SESSION_COOKIE,
                        &portal.session_cookie(&token),
                        Some(crate::accounts::SESSION_TTL.num_seconds()),
                    ),
                )],
                Html(pages::account::change_password(&nav, &Errors::new(), true).into_string()),
            )
                .into_response()
        }
    }
}

/// The company a reset link names, when the link is current: the token is the one on the
/// Company, made less than a day ago, and not used yet.
async fn reset_target(
    portal: &Portal,
    company: &str,
    token: &str,
) -> Result<Option<Company>, crate::error::PortalError> {
    if !timedeal_api::is_dns_label(company) {
        return Ok(None);
    }
    let Some(found) = portal.company(company).await? else {
        return Ok(None);
    };
    let annotations = found.annotations();
    let matches = annotations
        .get(RESET_ANNOTATION)
        .is_some_and(|t| !t.is_empty() && constant_eq(t, token));
    let fresh = annotations
        .get(RESET_AT_ANNOTATION)
        .and_then(|at| DateTime::parse_from_rfc3339(at).ok())
        .is_some_and(|at| portal.clock.now() - at.with_timezone(&Utc) < RESET_TTL);
    if !(matches && fresh) || portal.accounts.reset_used(token).await? {
        return Ok(None);
    }
    Ok(Some(found))
}

fn constant_eq(a: &str, b: &str) -> bool {
    a.len() == b.len()
        && a.bytes()
            .zip(b.bytes())
            .fold(0u8, |acc, (x, y)| acc | (x ^ y))
            == 0
}

pub async fn reset_form(
    State(portal): State<Arc<Portal>>,
    Path((company, token)): Path<(String, String)>,
) -> Response {
    match reset_target(&portal, &company, &token).await {
        Err(e) => unavailable(&e),
        Ok(None) => expired_link(),
        Ok(Some(found)) => with_form_token(&portal, StatusCode::OK, |csrf| {
            pages::account::reset(
                &found.spec.display_name,
                &format!("/reset/{company}/{token}"),
                &Errors::new(),
                csrf,
            )
        }),
    }
}

fn expired_link() -> Response {
    (
        StatusCode::NOT_FOUND,
        Html(
            pages::message(
                "This link does not work",
                None,
                "Reset links work once and for a day. Ask the platform admin for a new one.",
                ("/signin", "Sign in"),
            )
            .into_string(),
        ),
    )
        .into_response()
}

#[derive(Deserialize, Default)]
#[serde(default)]
pub struct Reset {
    csrf: String,
    password: String,
    confirm: String,
}

pub async fn reset(
    State(portal): State<Arc<Portal>>,
    Path((company, token)): Path<(String, String)>,
    headers: HeaderMap,
    Form(sent): Form<Reset>,
) -> Response {
    if !form_token_matches(&portal, &headers, &sent.csrf) {
        return stale_form();
    }
    let found = match reset_target(&portal, &company, &token).await {
        Err(e) => return unavailable(&e),
        Ok(None) => return expired_link(),
        Ok(Some(found)) => found,
    };
    let account = match portal.accounts.of_company(&company).await {
        Err(e) => return unavailable(&e),
        Ok(None) => return not_found(None),
        Ok(Some(account)) => account,
    };
    let mut errors = Errors::new();
    if let Some(problem) = password_problem(&sent.password, &account.email) {
        refuse(&mut errors, "password", problem);
    } else if sent.password != sent.confirm {
        refuse(&mut errors, "confirm", "the two passwords differ");
    }
    if !errors.is_empty() {
        return with_form_token(&portal, StatusCode::UNPROCESSABLE_ENTITY, |csrf| {
            pages::account::reset(
                &found.spec.display_name,
                &format!("/reset/{company}/{token}"),
                &errors,
                csrf,
            )
        });
    }
    // Claim the token first: of two submissions racing, one sets the password.
    match portal.accounts.use_reset(&token, &company).await {
        Err(e) => return unavailable(&e),
        Ok(false) => return expired_link(),
        Ok(true) => {}
    }
    if let Err(e) = portal
        .accounts
        .set_password(&account.email, &sent.password)
        .await
    {
        return unavailable(&e);
    }
    info!(company = %company, "a password was reset");
    Redirect::to("/signin?reset=1").into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failures_are_held_against_an_address_or_a_whole_ipv6_network() {
        let ip = |s: &str| s.parse::<std::net::IpAddr>().unwrap();
        assert_eq!(holder(ip("203.0.113.9")), "203.0.113.9");
        assert_eq!(holder(ip("::ffff:203.0.113.9")), "203.0.113.9");
        assert_eq!(
            holder(ip("2001:db8:1:2:aaaa::1")),
            holder(ip("2001:db8:1:2:ffff::9"))
        );
        assert_ne!(holder(ip("2001:db8:1:2::1")), holder(ip("2001:db8:1:3::1")));
    }

    #[test]
    fn emails_are_checked_for_their_shape() {
        assert!(looks_like_email("sales@acme.example"));
        assert!(!looks_like_email("sales@acme"));
        assert!(!looks_like_email("@acme.example"));
        assert!(!looks_like_email("sa les@acme.example"));
    }

    #[test]
    fn tokens_compare_whole() {
        assert!(constant_eq("abc", "abc"));
        assert!(!constant_eq("abc", "abd"));
        assert!(!constant_eq("abc", "ab"));
    }
}
