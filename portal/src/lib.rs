//! The rental portal, its own Deployment with its own ServiceAccount: companies sign up (an
//! unapproved Company), sign in, request deals in their own namespace, withdraw pending ones and
//! follow each to its sales report.
//!
//! What it may do in the cluster is only what it calls: create and read Companies, and in each
//! approved company's namespace (through the RoleBinding the operator makes there) create, read
//! and delete TimeDeals. It holds no Secret and creates no Namespace. Accounts, sessions and the
//! limits every replica shares live in the platform PostgreSQL (`accounts`).
//!
//! - `routes::account`: sign-up, sign-in, sign-out, password change, reset links;
//! - `routes::deals`: a company's deals, the request form, a deal's page, withdrawal;
//! - `pages`: the HTML; `form`: the request form's rules; `capacity`: the suggested capacity.

pub mod accounts;
pub mod bookings;
pub mod capacity;
pub mod client;
pub mod coupons;
pub mod error;
pub mod export;
pub mod form;
pub mod history;
pub mod keys;
pub mod pages;
pub mod routes;

use std::{net::SocketAddr, sync::Arc};

use axum::{
    extract::{DefaultBodyLimit, State},
    http::{header, HeaderMap, StatusCode},
    response::{Html, IntoResponse, Redirect, Response},
    routing::{get, post},
    Router,
};
use kube::{api::Api, Client};
use rand::{distributions::Alphanumeric, Rng};
use timedeal_api::{clock::Clock, Company};
use tracing::warn;

use accounts::{Accounts, Session};
use capacity::Limits;
use client::TrustedProxies;
use error::PortalError;
use keys::SigningKey;

/// Largest form body accepted.
pub const BODY_LIMIT: usize = 16 * 1024;
/// The session cookie: a random token and its signature.
pub const SESSION_COOKIE: &str = "timedeal_portal_session";
/// The form token cookie of forms shown before signing in (double submit).
pub const CSRF_COOKIE: &str = "timedeal_portal_csrf";

/// How many of what one client, account or company may do.
#[derive(Debug, Clone, Copy)]
pub struct RateLimits {
    /// Deal requests per client and per company, per minute.
    pub submissions_per_minute: u32,
    /// Sign-in attempts per client per minute.
    pub sign_ins_per_minute: u32,
    /// Sign-ups per client per hour.
    pub sign_ups_per_hour: u32,
}

impl Default for RateLimits {
    fn default() -> Self {
        Self {
            submissions_per_minute: 10,
            sign_ins_per_minute: 20,
            sign_ups_per_hour: 5,
        }
    }
}

pub struct Portal {
    pub client: Client,
    pub accounts: Accounts,
    pub key: SigningKey,
    pub limits: Limits,
    pub rate: RateLimits,
    pub clock: Arc<dyn Clock>,
    /// Whose `X-Forwarded-For` names the client.
    pub proxies: TrustedProxies,
    /// Cookies only over HTTPS (behind a TLS ingress).
    pub secure_cookies: bool,
    /// Storefront replicas the platform can run at once; none: no calendar.
    pub calendar_replicas: Option<i32>,
    /// Which hosts each company's deals may take (the operator checks the same at approval).
    pub hosts: timedeal_api::hosts::HostRules,
    /// Connections logged in as a deal (exports, redemptions) open at once, across companies:
    /// slow downloads never take the platform PostgreSQL's last connections.
    pub deal_connections: Arc<tokio::sync::Semaphore>,
}

/// How many connections as a deal one portal replica opens at once.
pub const DEAL_CONNECTIONS: usize = 8;

/// The portal's routes. Serve with `into_make_service_with_connect_info::<SocketAddr>()`: the
/// per-client limits key on the peer address, or behind a trusted proxy on the client it names.
pub fn router(portal: Arc<Portal>) -> Router {
    use routes::{account, deals};
    Router::new()
        .route("/", get(home))
        .route("/signup", get(account::sign_up_form).post(account::sign_up))
        .route("/signin", get(account::sign_in_form).post(account::sign_in))
        .route("/signout", post(account::sign_out))
        .route(
            "/account/password",
            get(account::password_form).post(account::change_password),
        )
        .route(
            "/reset/{company}/{token}",
            get(account::reset_form).post(account::reset),
        )
        .route("/deals", get(deals::list).post(deals::submit))
        .route("/deals/new", get(deals::new_request))
        .route("/deals/{name}", get(deals::show))
        .route("/deals/{name}/withdraw", post(deals::withdraw))
        .route("/deals/{name}/orders.csv", get(deals::orders))
        .route("/deals/{name}/orders.json", get(deals::orders_json))
        .route("/deals/{name}/coupons/redeem", post(deals::redeem))
        .route("/suggest", get(deals::suggest))
        .route("/calendar", get(deals::day))
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/static/portal.css", get(css))
        .route("/static/portal.js", get(js))
        .fallback(|| async { not_found(None) })
        .layer(DefaultBodyLimit::max(BODY_LIMIT))
        .layer(axum::middleware::from_fn_with_state(
            portal.secure_cookies,
            timedeal_api::web::security_headers,
        ))
        .with_state(portal)
}

async fn home(State(portal): State<Arc<Portal>>, headers: HeaderMap) -> Response {
    match portal.session(&headers).await {
        Ok(Some(_)) => Redirect::to("/deals").into_response(),
        _ => Redirect::to("/signin").into_response(),
    }
}

pub fn new_token() -> String {
    rand::thread_rng()
        .sample_iter(&Alphanumeric)
        .take(32)
        .map(char::from)
        .collect()
}

pub fn cookie(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(key, _)| *key == name)
        .map(|(_, value)| value.to_owned())
}

pub fn plain(status: StatusCode, text: &'static str) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        text,
    )
        .into_response()
}

pub fn not_found(nav: Option<&pages::Nav>) -> Response {
    (
        StatusCode::NOT_FOUND,
        Html(pages::not_found(nav).into_string()),
    )
        .into_response()
}

/// Nothing was changed, and the visitor may try again; the cause goes to the log only.
pub fn unavailable(error: &PortalError) -> Response {
    warn!(error = %error, "the portal cannot answer");
    plain(
        StatusCode::SERVICE_UNAVAILABLE,
        "The portal cannot do that just now; nothing was changed. Please try again in a minute.\n",
    )
}

/// A form whose token is missing or not this session's: refused, nothing changed.
pub fn stale_form() -> Response {
    plain(
        StatusCode::FORBIDDEN,
        "This form's security token is missing or out of date; reload the form and submit again.\n",
    )
}

/// A form that carries only its token.
#[derive(serde::Deserialize, Default)]
#[serde(default)]
pub struct Csrf {
    pub csrf: String,
}

pub fn too_many(text: &'static str) -> Response {
    plain(StatusCode::TOO_MANY_REQUESTS, text)
}

impl Portal {
    /// `Set-Cookie` for a cookie the page's scripts never read.
    /// A cookie's name as sent: over HTTPS with the `__Host-` prefix, which a browser takes
    /// only from this very host (never set by a storefront under the same domain, which could
    /// otherwise plant its own session or form token here).
    pub fn cookie_name(&self, name: &str) -> String {
        if self.secure_cookies {
            format!("__Host-{name}")
        } else {
            name.to_owned()
        }
    }

    /// The cookie `name` (see `cookie_name`) the request carries.
    pub fn cookie(&self, headers: &HeaderMap, name: &str) -> Option<String> {
        cookie(headers, &self.cookie_name(name))
    }

    pub fn set_cookie(&self, name: &str, value: &str, max_age: Option<i64>) -> String {
        let name = self.cookie_name(name);
        let mut cookie = format!("{name}={value}; Path=/; HttpOnly; SameSite=Lax");
        if let Some(seconds) = max_age {
            cookie.push_str(&format!("; Max-Age={seconds}"));
        }
        if self.secure_cookies {
            cookie.push_str("; Secure");
        }
        cookie
    }

    /// The session cookie's value for a token.
    pub fn session_cookie(&self, token: &str) -> String {
        format!("{token}.{}", self.key.sign(&["session", token]))
    }

    /// The signed-in session, if the cookie is genuine and the session current.
    pub async fn session(&self, headers: &HeaderMap) -> Result<Option<Session>, PortalError> {
        let Some(value) = self.cookie(headers, SESSION_COOKIE) else {
            return Ok(None);
        };
        let Some((token, signature)) = value.split_once('.') else {
            return Ok(None);
        };
        if !self.key.verify(&["session", token], signature) {
            return Ok(None);
        }
        self.accounts.session(token, self.clock.now()).await
    }

    /// The session's token, from a genuine cookie.
    pub fn session_token(&self, headers: &HeaderMap) -> Option<String> {
        let value = self.cookie(headers, SESSION_COOKIE)?;
        let (token, signature) = value.split_once('.')?;
        self.key
            .verify(&["session", token], signature)
            .then(|| token.to_owned())
    }

    /// The Company an account belongs to, as the API server holds it.
    pub async fn company(&self, name: &str) -> Result<Option<Company>, PortalError> {
        // No Company can have a name that is not a label; such a name reaches no call.
        if !timedeal_api::is_dns_label(name) {
            return Ok(None);
        }
        Api::<Company>::all(self.client.clone())
            .get_opt(name)
            .await
            .map_err(error::kube(format!("reading Company {name}")))
    }

    /// Counts one event against a shared limit; a database failure lets it through (the other
    /// limits and the lock-out still hold) rather than locking every company out.
    pub async fn within(&self, key: &str, limit: u32, window: chrono::Duration) -> bool {
        match self
            .accounts
            .within_limit(key, limit, window, self.clock.now())
            .await
        {
            Ok(within) => within,
            Err(e) => {
                warn!(error = %e, "cannot count against a limit");
                true
            }
        }
    }

    /// Deletes the accounts (and sessions) of companies that no longer exist: an account's email
    /// is kept as long as its Company, no longer. Returns how many went.
    pub async fn forget_deleted_companies(&self) -> Result<usize, PortalError> {
        let mut forgotten = 0;
        for company in self.accounts.companies().await? {
            if self.company(&company).await?.is_none() {
                self.accounts.forget_company(&company).await?;
                tracing::info!(company = %company, "deleted the account of a deleted company");
                forgotten += 1;
            }
        }
        Ok(forgotten)
    }

    /// The client a request comes from (see `client`).
    pub fn client_of(&self, peer: SocketAddr, headers: &HeaderMap) -> std::net::IpAddr {
        self.proxies.client(peer.ip(), headers)
    }
}

async fn css() -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "text/css; charset=utf-8")],
        include_str!("../static/portal.css"),
    )
}

async fn js() -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "text/javascript; charset=utf-8")],
        include_str!("../static/portal.js"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cookie_is_found_among_others() {
        let mut headers = HeaderMap::new();
        headers.insert(
            header::COOKIE,
            "a=1; timedeal_portal_csrf=xyz; b=2".parse().unwrap(),
        );
        assert_eq!(cookie(&headers, CSRF_COOKIE).as_deref(), Some("xyz"));
        assert_eq!(cookie(&HeaderMap::new(), CSRF_COOKIE), None);
    }
}
