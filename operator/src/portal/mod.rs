//! The rental portal, served by the operator on its own port: the request form at `/`, a
//! confirmation page, a status page per request behind an unguessable link, and static assets.
//!
//! A valid request creates the company's namespace (labelled as a Timedeal tenant) if missing and
//! an unapproved TimeDeal in it; approving stays with platform admins and kubectl.

pub mod capacity;
pub mod client;
pub mod form;
pub mod links;
pub mod pages;

use std::{
    collections::HashMap,
    net::{IpAddr, SocketAddr},
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use axum::{
    extract::{ConnectInfo, DefaultBodyLimit, Path, Query, State},
    http::{header, HeaderMap, StatusCode},
    response::{Html, IntoResponse, Redirect, Response},
    routing::{get, post},
    Form, Json, Router,
};
use k8s_openapi::api::core::v1::{Namespace, Secret};
use kube::{
    api::{Api, ObjectMeta, PostParams},
    Client, ResourceExt,
};
use rand::{distributions::Alphanumeric, Rng};
use serde::Deserialize;
use timedeal_api::TimeDeal;
use tracing::{info, warn};

use crate::clock::Clock;
use capacity::Limits;
use client::TrustedProxies;
use form::RequestForm;
use links::LinkKey;

/// The label that marks a namespace as a Timedeal tenant's.
pub const TENANT_LABEL: &str = "timedeal.dev/tenant";
const CSRF_COOKIE: &str = "timedeal_portal_csrf";
/// Largest form body accepted.
pub const BODY_LIMIT: usize = 16 * 1024;

pub struct Portal {
    pub client: Client,
    pub links: LinkKey,
    pub limits: Limits,
    pub clock: Arc<dyn Clock>,
    limiter: Mutex<Limiter>,
    /// Whose `X-Forwarded-For` names the client.
    proxies: TrustedProxies,
}

impl Portal {
    /// `submissions_per_minute`: requests one client may submit per minute.
    pub fn new(
        client: Client,
        links: LinkKey,
        limits: Limits,
        clock: Arc<dyn Clock>,
        submissions_per_minute: u32,
    ) -> Self {
        Self {
            client,
            links,
            limits,
            clock,
            limiter: Mutex::new(Limiter::new(submissions_per_minute)),
            proxies: TrustedProxies::default(),
        }
    }

    /// Believes `X-Forwarded-For` from these proxies (the portal's ingress controller).
    pub fn with_trusted_proxies(mut self, proxies: TrustedProxies) -> Self {
        self.proxies = proxies;
        self
    }
}

/// The portal's routes. Serve with `into_make_service_with_connect_info::<SocketAddr>()`: the
/// per-client limit keys on the peer address, or behind a trusted proxy on the client it names.
pub fn router(portal: Arc<Portal>) -> Router {
    Router::new()
        .route("/", get(new_request))
        .route("/requests", post(submit))
        .route(
            "/confirmation/{namespace}/{name}/{signature}",
            get(confirmation),
        )
        .route("/requests/{namespace}/{name}/{signature}", get(status))
        .route("/suggest", get(suggest))
        .route("/static/portal.css", get(css))
        .route("/static/portal.js", get(js))
        .fallback(|| async { not_found() })
        .layer(DefaultBodyLimit::max(BODY_LIMIT))
        .with_state(portal)
}

fn new_token() -> String {
    rand::thread_rng()
        .sample_iter(&Alphanumeric)
        .take(32)
        .map(char::from)
        .collect()
}

/// The form, with a fresh CSRF token in a cookie and in the form (double submit: another site
/// can make a browser post, but can neither read the cookie nor send it cross-site).
fn form_page(
    status: StatusCode,
    form: &RequestForm,
    errors: &form::FieldErrors,
    portal: &Portal,
) -> Response {
    let token = new_token();
    let cookie = format!("{CSRF_COOKIE}={token}; Path=/; HttpOnly; SameSite=Strict");
    (
        status,
        [
            (header::SET_COOKIE, cookie),
            (header::CACHE_CONTROL, "no-store".into()),
        ],
        Html(pages::request_form(form, errors, &token, portal.limits).into_string()),
    )
        .into_response()
}

async fn new_request(State(portal): State<Arc<Portal>>) -> Response {
    form_page(
        StatusCode::OK,
        &RequestForm::default(),
        &Default::default(),
        &portal,
    )
}

fn cookie(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(key, _)| *key == name)
        .map(|(_, value)| value.to_owned())
}

fn plain(status: StatusCode, text: &'static str) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        text,
    )
        .into_response()
}

async fn submit(
    State(portal): State<Arc<Portal>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    Form(form): Form<RequestForm>,
) -> Response {
    if !portal
        .limiter
        .lock()
        .expect("limiter lock")
        .allow(portal.proxies.client(peer.ip(), &headers), Instant::now())
    {
        return plain(
            StatusCode::TOO_MANY_REQUESTS,
            "Too many requests from your address; wait a minute and submit again.\n",
        );
    }
    let expected = cookie(&headers, CSRF_COOKIE);
    if form.csrf.is_empty() || expected.as_deref() != Some(form.csrf.as_str()) {
        return plain(
            StatusCode::FORBIDDEN,
            "This form's security token is missing or out of date; reload the form and submit again.\n",
        );
    }
    let accepted = match form.accept(portal.limits, portal.clock.now()) {
        Ok(accepted) => accepted,
        Err(errors) => return form_page(StatusCode::UNPROCESSABLE_ENTITY, &form, &errors, &portal),
    };
    match create(&portal.client, accepted.deal).await {
        Ok(deal) => {
            let (namespace, name) = (deal.namespace().unwrap_or_default(), deal.name_any());
            info!(%namespace, %name, company = %deal.spec.company.name, "rental request received");
            let signature = portal
                .links
                .sign(&namespace, &name, &deal.uid().unwrap_or_default());
            Redirect::to(&format!("/confirmation/{namespace}/{name}/{signature}")).into_response()
        }
        Err(e) => {
            warn!(error = %e, "cannot store a rental request");
            plain(
                StatusCode::SERVICE_UNAVAILABLE,
                "Your request could not be stored just now; nothing was created. Please submit again in a minute.\n",
            )
        }
    }
}

/// Creates the namespace unless it exists, then the TimeDeal. Creating and accepting "already
/// exists" is one call, and safe when two requests of one company race.
async fn create(client: &Client, deal: TimeDeal) -> Result<TimeDeal, kube::Error> {
    let namespace = deal.namespace().unwrap_or_default();
    let namespaces: Api<Namespace> = Api::all(client.clone());
    let object = Namespace {
        metadata: ObjectMeta {
            name: Some(namespace.clone()),
            labels: Some(
                [
                    (TENANT_LABEL.to_owned(), "true".to_owned()),
                    (
                        "app.kubernetes.io/managed-by".to_owned(),
                        "timedeal-operator".to_owned(),
                    ),
                ]
                .into(),
            ),
            ..Default::default()
        },
        ..Default::default()
    };
    match namespaces.create(&PostParams::default(), &object).await {
        Ok(_) => info!(%namespace, "created the company's namespace"),
        Err(kube::Error::Api(e)) if e.code == 409 => {}
        Err(e) => return Err(e),
    }
    Api::<TimeDeal>::namespaced(client.clone(), &namespace)
        .create(&PostParams::default(), &deal)
        .await
}

/// Finds the deal a link names, or nothing when the signature does not match.
async fn linked(portal: &Portal, namespace: &str, name: &str, signature: &str) -> Option<TimeDeal> {
    let deal = Api::<TimeDeal>::namespaced(portal.client.clone(), namespace)
        .get_opt(name)
        .await
        .ok()
        .flatten()?;
    let uid = deal.uid().unwrap_or_default();
    portal
        .links
        .verify(namespace, name, &uid, signature)
        .then_some(deal)
}

fn not_found() -> Response {
    (
        StatusCode::NOT_FOUND,
        Html(pages::not_found().into_string()),
    )
        .into_response()
}

async fn confirmation(
    State(portal): State<Arc<Portal>>,
    Path((namespace, name, signature)): Path<(String, String, String)>,
) -> Response {
    match linked(&portal, &namespace, &name, &signature).await {
        Some(deal) => Html(
            pages::confirmation(&deal, &format!("/requests/{namespace}/{name}/{signature}"))
                .into_string(),
        )
        .into_response(),
        None => not_found(),
    }
}

async fn status(
    State(portal): State<Arc<Portal>>,
    Path((namespace, name, signature)): Path<(String, String, String)>,
) -> Response {
    match linked(&portal, &namespace, &name, &signature).await {
        Some(deal) => (
            [(header::CACHE_CONTROL, "no-store")],
            Html(pages::status(&deal).into_string()),
        )
            .into_response(),
        None => not_found(),
    }
}

#[derive(Deserialize)]
struct SuggestQuery {
    peak_shoppers: i64,
}

async fn suggest(
    State(portal): State<Arc<Portal>>,
    Query(query): Query<SuggestQuery>,
) -> Json<capacity::Suggestion> {
    Json(capacity::suggest(query.peak_shoppers, portal.limits))
}

async fn css() -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "text/css; charset=utf-8")],
        include_str!("../../static/portal.css"),
    )
}

async fn js() -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "text/javascript; charset=utf-8")],
        include_str!("../../static/portal.js"),
    )
}

/// The status link key: from the flag when given, else from the Secret `timedeal-portal` in the
/// operator's namespace, which is made with a generated key the first time.
pub async fn link_key(
    client: &Client,
    namespace: &str,
    from_flag: Option<String>,
) -> Result<LinkKey, String> {
    if let Some(key) = from_flag {
        return LinkKey::new(key.into_bytes()).map_err(|e| format!("--portal-link-key: {e}"));
    }
    let secrets: Api<Secret> = Api::namespaced(client.clone(), namespace);
    let read = |secret: &Secret| {
        secret
            .data
            .as_ref()
            .and_then(|d| d.get(LINK_KEY))
            .map(|v| v.0.clone())
    };
    let what = format!("the Secret {namespace}/{LINK_SECRET}");
    match secrets.get_opt(LINK_SECRET).await {
        Ok(Some(secret)) => {
            let key = read(&secret).ok_or_else(|| format!("{what} has no key `{LINK_KEY}`"))?;
            LinkKey::new(key).map_err(|e| format!("{what}: {e}"))
        }
        Ok(None) => {
            let key = new_token() + &new_token();
            let secret = Secret {
                metadata: ObjectMeta {
                    name: Some(LINK_SECRET.into()),
                    namespace: Some(namespace.into()),
                    ..Default::default()
                },
                data: Some(
                    [(
                        LINK_KEY.to_owned(),
                        k8s_openapi::ByteString(key.clone().into_bytes()),
                    )]
                    .into(),
                ),
                ..Default::default()
            };
            match secrets.create(&PostParams::default(), &secret).await {
                Ok(_) => LinkKey::new(key.into_bytes()),
                // Another replica made it first: use theirs.
                Err(kube::Error::Api(e)) if e.code == 409 => {
                    let secret = secrets
                        .get(LINK_SECRET)
                        .await
                        .map_err(|e| format!("reading {what}: {e}"))?;
                    LinkKey::new(read(&secret).unwrap_or_default())
                }
                Err(e) => Err(format!("cannot create {what}: {e}")),
            }
        }
        Err(e) => Err(format!("cannot read {what}: {e}")),
    }
}

/// The Secret and key holding the status link key.
pub const LINK_SECRET: &str = "timedeal-portal";
pub const LINK_KEY: &str = "link-key";

/// Submissions per client per minute: a token bucket per address, refilled continuously.
struct Limiter {
    per_minute: u32,
    buckets: HashMap<IpAddr, (f64, Instant)>,
}

impl Limiter {
    fn new(per_minute: u32) -> Self {
        Self {
            per_minute: per_minute.max(1),
            buckets: HashMap::new(),
        }
    }

    fn allow(&mut self, client: IpAddr, now: Instant) -> bool {
        let capacity = f64::from(self.per_minute);
        // Forget clients quiet for long enough to have a full bucket again.
        if self.buckets.len() > 10_000 {
            self.buckets
                .retain(|_, (_, at)| now.duration_since(*at) < Duration::from_secs(60));
        }
        let (tokens, at) = self.buckets.entry(client).or_insert((capacity, now));
        let refill = now.duration_since(*at).as_secs_f64() * capacity / 60.0;
        *tokens = (*tokens + refill).min(capacity);
        *at = now;
        if *tokens >= 1.0 {
            *tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_client_gets_its_own_budget_refilled_over_a_minute() {
        let mut limiter = Limiter::new(3);
        let (a, b): (IpAddr, IpAddr) = ("10.0.0.1".parse().unwrap(), "10.0.0.2".parse().unwrap());
        let t0 = Instant::now();
        assert!((0..3).all(|_| limiter.allow(a, t0)));
        assert!(!limiter.allow(a, t0));
        assert!(limiter.allow(b, t0), "another client is not affected");
        assert!(!limiter.allow(a, t0 + Duration::from_secs(10)));
        assert!(
            limiter.allow(a, t0 + Duration::from_secs(21)),
            "one back after 20 s"
        );
    }

    #[test]
    fn the_csrf_cookie_is_found_among_others() {
        let mut headers = HeaderMap::new();
        headers.insert(
            header::COOKIE,
            "a=1; timedeal_portal_csrf=xyz; b=2".parse().unwrap(),
        );
        assert_eq!(cookie(&headers, CSRF_COOKIE).as_deref(), Some("xyz"));
        assert_eq!(cookie(&HeaderMap::new(), CSRF_COOKIE), None);
    }
}
